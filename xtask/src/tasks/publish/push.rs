//! The writes, each repository whole or not at all: create it, put its lifecycle policy, push
//! the blobs (mounted across repositories of the run), the manifests, and each tag; proven first.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Result, bail};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use super::Timings;
use super::build::Built;
use super::look::{Look, TagState, ToDo};
use super::place::Place;
use super::plan::Planned;
use super::report::{Action, Done, Outcome};
use super::request::Request;
use crate::base::progress;
use crate::clients::ecr::{self, Settings};
use crate::clients::registry::Pushed;
use crate::image::Plan;
use crate::image::oci::{Blob, ImageSet, Recipe};
use crate::proof;
use crate::tasks::OutputFormat;

/// A blob in one registry (the `destination`th target's).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct BlobAt {
    pub(super) destination: usize,
    pub(super) digest: String,
}

/// Everything the pushes of one run share.
pub(super) struct Job {
    pub(super) settings: Settings,
    /// Per registry and blob, the first repository of this run known to hold it: later ones in
    /// the same registry mount from it, so each blob is uploaded once per registry.
    pub(super) homes: HashMap<BlobAt, OnceCell<String>>,
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

/// What was done: the images proven first (a broken image is never pushed), then every
/// (target, repository) pair worked under the one `--concurrency` limit.
pub(super) async fn act_all(
    todo: ToDo,
    planned: &Planned,
    built: &Built,
    request: &Request,
    timings: &mut Timings,
) -> Result<Done> {
    let ToDo { destinations, unreachable, work } = todo;
    let targets = &planned.targets;
    let pushed: BTreeSet<&Recipe> = work
        .iter()
        .filter(|w| w.known.as_ref().is_ok_and(|look| !look.step(request.force).push.is_empty()))
        .map(|w| &targets[w.target].recipe)
        .collect();
    // From here on a first Ctrl-C finishes the steps in progress and starts nothing new.
    let interrupted = on_interrupt();
    let mut proofs = Vec::new();
    if !pushed.is_empty() && !request.no_smoke {
        let started = Instant::now();
        let sets = pushed.into_iter().map(|recipe| &built.sets[recipe]).collect();
        proofs = proof::prove_all(sets, &Plan::project(request.platforms.clone())).await?;
        timings.add("smoke test", started.elapsed());
    }
    let started = Instant::now();
    let blobs: BTreeSet<&str> = built.sets.values().flat_map(ImageSet::blobs).map(|b| b.digest.as_str()).collect();
    let per_target = destinations
        .iter()
        .enumerate()
        .map(|(d, t)| (t.aws.region.clone(), work.iter().filter(|w| w.destination == d).count() as u64))
        .collect();
    let job = Job {
        settings: request.settings.clone(),
        homes: (0..destinations.len())
            .flat_map(|d| {
                blobs.iter().map(move |digest| (BlobAt { destination: d, digest: digest.to_string() }, OnceCell::new()))
            })
            .collect(),
        interrupted: interrupted.clone(),
        labels: destinations.iter().map(|d| format!("{} {}", d.account, d.aws.region)).collect(),
        tally: progress::Tally::new(
            "publishing",
            per_target,
            request.output == OutputFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ),
    };
    let places = &destinations;
    let outcomes = futures_util::stream::iter(work)
        .map(|w| {
            let target = &targets[w.target];
            let job = &job;
            async move {
                let outcome =
                    act(job, Place::at(places, w.destination), &target.name, built.of(target), w.known, request.force)
                        .await;
                outcome.of(target, &places[w.destination])
            }
        })
        .buffered(request.concurrency)
        .collect()
        .await;
    drop(job);
    timings.add("writes: repositories, lifecycle policies, blobs, manifests", started.elapsed());
    Ok(Done { destinations, unreachable, outcomes, proofs, interrupted })
}

/// The first Ctrl-C lets the steps in progress finish (a repository always gets its lifecycle
/// policy, `:latest` is put whole or not at all) and starts nothing new; a second aborts.
fn on_interrupt() -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
            eprintln!("interrupted: finishing the steps in progress, undoing nothing; Ctrl-C again to abort at once");
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    interrupted
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
    let home = &job.homes[&BlobAt { destination: place.destination, digest: blob.digest.clone() }];
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
