//! The writes, each repository whole or not at all: create it, put its lifecycle policy, push
//! the blobs (mounted across repositories of the run), the manifests, and each tag; proven first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::collections::HashMap;

use anyhow::{Result, bail};
use tokio::sync::OnceCell;

use crate::base::progress;
use crate::clients::ecr::{self, Settings};
use crate::clients::engine;
use crate::clients::registry::{Pushed, Registry};
use crate::image::Plan;
use crate::image::oci::{Blob, ImageSet};
use crate::proof;
use crate::proof::kept;
use crate::proof::smoke::Proof;

use super::look::{Look, TagState};
use super::report::{Action, Outcome};

/// Everything the pushes of one run share.
pub(super) struct Job {
    pub(super) settings: Settings,
    /// Per registry (target) and blob, the first repository of this run known to hold it: later
    /// ones in the same registry mount from it, so each blob is uploaded once per registry.
    pub(super) homes: HashMap<(usize, String), OnceCell<String>>,
    pub(super) interrupted: Arc<AtomicBool>,
    /// Each target's `ACCOUNT REGION`, where there are several: lines name the target too.
    pub(super) labels: Vec<String>,
    pub(super) tally: progress::Tally,
}

impl Job {
    /// `[repository]`, or `[ACCOUNT REGION repository]` when the run has several targets.
    pub(super) fn who(&self, destination: usize, name: &str) -> String {
        match self.labels.get(destination) {
            Some(label) if self.labels.len() > 1 => format!("[{label} {name}]"),
            _ => format!("[{name}]"),
        }
    }
}

/// One repository in one target.
pub(super) struct Place<'a> {
    pub(super) destination: usize,
    pub(super) ecr: &'a aws_sdk_ecr::Client,
    pub(super) registry: &'a Registry,
}

/// Smoke-tests the images through the engine when one answers, else straight from the layers. A
/// set an earlier run proved (the same index digest) is not run again; each new proof is kept.
pub(super) async fn prove(sets: Vec<&ImageSet>, plan: &Plan) -> Result<Vec<Proof>> {
    let mut proofs = Vec::new();
    let mut unproven = Vec::new();
    for set in sets {
        match kept::earlier(set) {
            Some(earlier) => {
                eprintln!("{}: proven healthy by an earlier run for this same digest; not run again", set.index.digest);
                proofs.extend(earlier);
            }
            None => unproven.push(set),
        }
    }
    if unproven.is_empty() {
        return Ok(proofs);
    }
    let engine = match engine::optional().await {
        Ok(engine) => Some(engine),
        Err(why) => {
            eprintln!("no Docker engine ({why}); proving the image by running it straight from its layers");
            None
        }
    };
    for set in unproven {
        if let Some(engine) = &engine {
            proof::load(engine, set, plan).await?;
        }
        let proven = proof::prove(set, engine.as_ref()).await?;
        kept::keep(set, &proven);
        proofs.extend(proven);
    }
    Ok(proofs)
}

pub(super) async fn act(
    job: &Job,
    place: Place<'_>,
    name: &str,
    images: &ImageSet,
    look: Result<Look>,
    force: bool,
) -> Outcome {
    let mut outcome = Outcome::new(name);
    let result = match look {
        Ok(look) => act_steps(job, &place, images, look, force, &mut outcome).await,
        Err(error) => Err(error),
    };
    job.tally.tick(place.destination);
    if let Err(error) = result {
        outcome.action = Action::Failed;
        outcome.reason = Some(format!("{error:#}"));
        progress::say(format!("{} failed: {error:#}", job.who(place.destination, name)));
    }
    outcome
}

pub(super) async fn act_steps(
    job: &Job,
    place: &Place<'_>,
    images: &ImageSet,
    look: Look,
    force: bool,
    outcome: &mut Outcome,
) -> Result<()> {
    let name = look.name.as_str();
    outcome.repository_uri = look.uri.clone();
    for warning in &look.warnings {
        progress::say(format!("{} warning: {warning}", job.who(place.destination, name)));
    }
    outcome.warnings = look.warnings.clone();
    let step = look.step(force);
    if let Some(why) = step.blocked {
        bail!(why);
    }
    let skipped: Vec<String> = step.skipped.iter().map(|(_, why)| why.clone()).collect();
    for why in &skipped {
        progress::say(format!("{} warning: skipped: {why}", job.who(place.destination, name)));
    }
    outcome.reason = (!skipped.is_empty()).then(|| skipped.join("; "));
    outcome.unfilled = step.skipped.iter().map(|(tag, _)| tag.clone()).collect();
    outcome.left_empty = step.left_empty.clone();
    if step.push.is_empty() {
        // Every tag left alone: the repository is somebody else's to set up.
        if !skipped.is_empty() && !look.any_ours() {
            outcome.action = Action::Skipped;
            outcome.digest = look.tags.iter().find_map(|(_, state)| match state {
                TagState::Real(digest) | TagState::Placeholder(digest) => Some(digest.clone()),
                _ => None,
            });
            return Ok(());
        }
        if step.fix_lifecycle {
            ecr::put_lifecycle(place.ecr, name, job.settings.keep).await?;
            progress::say(format!(
                "{} lifecycle policy put back (keep {}); the tags already held this placeholder",
                job.who(place.destination, name),
                job.settings.keep
            ));
            outcome.action = Action::Updated;
            outcome.reason = Some("lifecycle policy put back; the tags already held this placeholder".to_owned());
        } else {
            outcome.action = Action::UpToDate;
        }
        outcome.digest = Some(images.index.digest.clone());
        return Ok(());
    }
    if job.interrupted.load(Ordering::SeqCst) {
        bail!("interrupted before it started");
    }
    if step.create {
        let uri = ecr::create(place.ecr, name, &job.settings).await?;
        progress::say(format!("{} repository created: {uri}", job.who(place.destination, name)));
        outcome.repository_uri = Some(uri);
    }
    // Every push puts the policy, so a repository never stays without one after a failed run.
    if step.create || step.fix_lifecycle {
        ecr::put_lifecycle(place.ecr, name, job.settings.keep).await?;
    }
    push(job, place, images, name, step.create, &step.push).await?;
    let tags: Vec<String> = step.push.iter().map(|t| format!(":{t}")).collect();
    progress::say(format!("{} {} now {}", job.who(place.destination, name), tags.join(", "), images.index.digest));
    outcome.action = if step.create { Action::Created } else { Action::Updated };
    outcome.digest = Some(images.index.digest.clone());
    Ok(())
}

/// Blobs first (each only where missing), then each platform's manifest by digest, untagged,
/// and last the index at each tag: a tag never points at anything the repository lacks.
pub(super) async fn push(
    job: &Job,
    place: &Place<'_>,
    images: &ImageSet,
    name: &str,
    fresh: bool,
    tags: &[String],
) -> Result<()> {
    progress::say(format!("{} pushing {}", job.who(place.destination, name), images.index.digest));
    // The blobs at once (each platform's layer and config), then the manifests naming them.
    let pushed = futures_util::future::try_join_all(images.blobs().map(|blob| async move {
        if job.interrupted.load(Ordering::SeqCst) {
            bail!("interrupted before any tag was changed");
        }
        // A repository created by this run holds nothing yet: no need to ask.
        if !fresh && place.registry.has_blob(name, &blob.digest).await? {
            return Ok(None);
        }
        push_blob(job, place, name, blob).await.map(Some)
    }))
    .await?;
    let mounted = pushed.iter().filter(|p| matches!(p, Some(Pushed::Mounted))).count();
    let uploaded = pushed.iter().filter(|p| matches!(p, Some(Pushed::Uploaded))).count();
    progress::say(format!(
        "{} blobs: {uploaded} uploaded, {mounted} mounted from another repository",
        job.who(place.destination, name)
    ));
    futures_util::future::try_join_all(
        images.images.iter().map(|image| place.registry.put_manifest(name, &image.manifest.digest, &image.manifest)),
    )
    .await?;
    for tag in tags {
        if job.interrupted.load(Ordering::SeqCst) {
            bail!("interrupted before :{tag} was changed");
        }
        place.registry.put_manifest(name, tag, &images.index).await?;
    }
    Ok(())
}

/// The first repository to need a blob uploads it; the others wait for that and mount it from
/// there (uploading after all where the registry refuses mounts). If the first upload fails, the
/// next waiter uploads instead.
pub(super) async fn push_blob(job: &Job, place: &Place<'_>, name: &str, blob: &Blob) -> Result<Pushed> {
    let home = &job.homes[&(place.destination, blob.digest.clone())];
    let mut uploaded_here = false;
    let from = home
        .get_or_try_init(|| async {
            place.registry.push_blob(name, blob, None).await?;
            uploaded_here = true;
            Ok::<_, anyhow::Error>(name.to_owned())
        })
        .await?;
    if uploaded_here {
        return Ok(Pushed::Uploaded);
    }
    place.registry.push_blob(name, blob, Some(from)).await
}
