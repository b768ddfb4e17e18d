//! The read-only look at each repository before anything changes: does it exist, its settings,
//! and what each tag holds (`read`, while the images build; then `resolve`, against them); and
//! the step that follows from it (`--dry-run` prints that).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;

use crate::clients::ecr::{self, Lifecycle, Mutability, Settings};
use crate::image::oci::ImageSet;

use super::build::Built;
use super::plan::Target;
use super::report::{Action, Done, Outcome};
use super::request::Request;
use crate::clients::aws;

use super::place::Place;

/// What one repository is before anything is changed, from read-only calls.
pub(super) struct Look {
    pub(super) name: String,
    /// `None` when the repository does not exist.
    pub(super) uri: Option<String>,
    pub(super) lifecycle: Option<Lifecycle>,
    /// Each tag the placeholder is to be at, and what is there now.
    pub(super) tags: Vec<(String, TagState)>,
    /// Which of the repository's tags, once they hold an image, can never be moved.
    pub(super) mutability: Mutability,
    /// Immutable tags `--fill-immutable` names: the pipeline never pushes there.
    pub(super) fill_immutable: Vec<String>,
    /// A real image the repository holds at another tag (`:v1.4.2 (sha256:...)`), where one of
    /// the tags to fill is empty: the repository is a live service's.
    pub(super) real_elsewhere: Option<String>,
    /// The stack that owns the repository (`--from stack:NAME`), which publish never creates,
    /// tags or gives a lifecycle policy.
    pub(super) owner: Option<String>,
    pub(super) warnings: Vec<String>,
}

pub(super) enum TagState {
    Absent,
    /// Exactly the image this run would push.
    Ours,
    /// An older or different placeholder.
    Placeholder(String),
    /// Somebody's real image.
    Real(String),
}

/// What to do with one repository.
pub(super) struct Step {
    pub(super) create: bool,
    /// Tags to put the placeholder at.
    pub(super) push: Vec<String>,
    /// Tags left alone, and why.
    pub(super) skipped: Vec<(String, String)>,
    /// Tags left with no image at all (immutable ones): a service pulling them cannot start.
    pub(super) left_empty: Vec<String>,
    /// Only the lifecycle policy needs putting back.
    pub(super) fix_lifecycle: bool,
    /// Nothing can be done, and why.
    pub(super) blocked: Option<String>,
}

impl Look {
    pub(super) fn step(&self, force: bool) -> Step {
        let mut step = Step {
            create: false,
            push: Vec::new(),
            skipped: Vec::new(),
            left_empty: Vec::new(),
            fix_lifecycle: false,
            blocked: None,
        };
        if self.uri.is_none() {
            match &self.owner {
                Some(owner) => {
                    step.blocked = Some(format!(
                        "{owner} has not created repository {} yet: publish never creates a stack's repository; run it again once \
                         CloudFormation has (the repository is among the first resources it creates)",
                        self.name
                    ))
                }
                None => {
                    step.create = true;
                    step.push = self.tags.iter().map(|(tag, _)| tag.clone()).collect();
                }
            }
            return step;
        }
        // The empty tags a placeholder would block the pipeline's push at, with one way out for all.
        let frozen_empty: Vec<&str> = self
            .tags
            .iter()
            .filter(|(tag, state)| matches!(state, TagState::Absent) && self.frozen(tag))
            .map(|(tag, _)| tag.as_str())
            .collect();
        for (tag, state) in &self.tags {
            let frozen = self.mutability.immutable(tag);
            match state {
                TagState::Ours => {}
                TagState::Absent if self.frozen(tag) => {
                    step.skipped.push((tag.clone(), self.frozen_tag(tag, &frozen_empty)));
                    step.left_empty.push(tag.clone());
                }
                // A placeholder at a new tag of a live repository would be deployed over the real
                // service by a deployment that comes before the pipeline's push.
                TagState::Absent if !force && self.real_elsewhere.is_some() => step.skipped.push((
                    tag.clone(),
                    format!(
                        ":{tag} is empty, but the repository already holds a real image ({}): a placeholder at :{tag} would be \
                         deployed over the running service if a deployment pulled :{tag} before the pipeline pushes it, so none \
                         was put there; --force puts it there",
                        self.real_elsewhere.as_deref().unwrap_or_default()
                    ),
                )),
                TagState::Absent => step.push.push(tag.clone()),
                TagState::Placeholder(digest) if frozen => step.skipped.push((
                    tag.clone(),
                    format!(
                        ":{tag} already holds another placeholder ({digest}), and the tag is immutable ({}): it stays",
                        self.mutability.describe()
                    ),
                )),
                TagState::Real(digest) if frozen => step.skipped.push((
                    tag.clone(),
                    format!(
                        ":{tag} ({digest}) is a real image, and the tag is immutable ({}): it stays",
                        self.mutability.describe()
                    ),
                )),
                TagState::Real(digest) if !force => step.skipped.push((
                    tag.clone(),
                    format!(":{tag} ({digest}) is not a placeholder, so it was left untouched; --force replaces it"),
                )),
                TagState::Placeholder(_) | TagState::Real(_) => step.push.push(tag.clone()),
            }
        }
        step.fix_lifecycle = self.owner.is_none() && self.lifecycle != Some(Lifecycle::Expected);
        step
    }

    /// An empty tag that is immutable here, and not named by `--fill-immutable`.
    fn frozen(&self, tag: &str) -> bool {
        self.mutability.immutable(tag) && !self.fill_immutable.iter().any(|t| t == tag)
    }

    /// Why an empty immutable tag gets no placeholder, and the ways out (one for all of `frozen`).
    fn frozen_tag(&self, tag: &str, frozen: &[&str]) -> String {
        let latest =
            if tag == "latest" { " (or, where no definition pulls :latest, leave it out: --no-latest)" } else { "" };
        format!(
            ":{tag} is immutable in this repository ({}): a placeholder there would make the pipeline's push of its real image at \
             :{tag} fail (ImageTagAlreadyExistsException), so none was put there, and a service pulling :{tag} cannot start yet. \
             Exclude the tag from immutability and publish again: {}; or, for a tag the pipeline never pushes, --fill-immutable \
             {tag}{latest}. While no task runs it, `cargo xtask teardown --images --containers {}` takes a placeholder off again",
            self.mutability.describe(),
            self.mutability.way_out(&self.name, frozen),
            self.name
        )
    }

    /// Some tag already holds this placeholder.
    pub(super) fn any_ours(&self) -> bool {
        self.tags.iter().any(|(_, state)| matches!(state, TagState::Ours))
    }
}

/// What one repository holds, read before the images are built: whether it exists, its
/// settings and lifecycle policy, and the manifest digest at each tag.
pub(super) struct Raw {
    pub(super) name: String,
    pub(super) uri: Option<String>,
    pub(super) lifecycle: Option<Lifecycle>,
    pub(super) tags: Vec<(String, Option<String>)>,
    pub(super) mutability: Mutability,
    pub(super) fill_immutable: Vec<String>,
    pub(super) owner: Option<String>,
    pub(super) warnings: Vec<String>,
}

/// Reads one repository with read-only calls; needs nothing of this run's images.
pub(super) async fn look_raw(
    place: Place<'_>,
    target: &Target,
    settings: &Settings,
    fill_immutable: &[String],
) -> Result<Raw> {
    let (ecr_client, registry, name) = (place.ecr, place.registry, target.name.as_str());
    let mut raw = Raw {
        name: name.to_owned(),
        uri: None,
        lifecycle: None,
        tags: target.tags.iter().map(|tag| (tag.clone(), None)).collect(),
        mutability: Mutability::default(),
        fill_immutable: fill_immutable.to_vec(),
        owner: target.owner.clone(),
        warnings: Vec::new(),
    };
    let Some(existing) = ecr::describe(ecr_client, name).await? else { return Ok(raw) };
    // A stack's repository keeps the stack's own policy and settings.
    if target.owner.is_none() {
        raw.lifecycle = Some(ecr::lifecycle(ecr_client, name, settings.keep).await?);
        raw.warnings = ecr::differences(&existing, settings);
    }
    for (tag, digest) in &mut raw.tags {
        *digest = registry.manifest(name, tag).await.with_context(|| format!("reading :{tag}"))?.map(|m| m.digest);
    }
    raw.uri = existing.repository_uri().map(str::to_owned);
    raw.mutability = Mutability::of(&existing);
    Ok(raw)
}

/// What each tag is, against the images this run built: the digest alone answers the common case
/// (this very placeholder); only a tag holding something else is read for its labels.
pub(super) async fn resolve(place: Place<'_>, raw: Raw, images: &ImageSet) -> Result<Look> {
    let mut tags = Vec::new();
    for (tag, digest) in raw.tags {
        let state = match digest {
            None => TagState::Absent,
            Some(digest) if digest == images.index.digest => TagState::Ours,
            Some(_) => {
                match place.registry.inspect(&raw.name, &tag).await.with_context(|| format!("reading :{tag}"))? {
                    None => TagState::Absent,
                    Some(image) if image.placeholder => TagState::Placeholder(image.digest),
                    Some(image) => TagState::Real(image.digest),
                }
            }
        };
        tags.push((tag, state));
    }
    let mut real_elsewhere = tags.iter().find_map(|(tag, state)| match state {
        TagState::Real(digest) => Some(format!(":{tag} ({digest})")),
        _ => None,
    });
    // Only where a tag is to be filled in a repository that exists is its other tags' content
    // worth the reads.
    let empty = tags.iter().any(|(_, state)| matches!(state, TagState::Absent));
    if real_elsewhere.is_none() && empty && raw.uri.is_some() {
        real_elsewhere = real_at_another_tag(&place, &raw.name, &tags).await?;
    }
    Ok(Look {
        name: raw.name,
        uri: raw.uri,
        lifecycle: raw.lifecycle,
        tags,
        mutability: raw.mutability,
        fill_immutable: raw.fill_immutable,
        real_elsewhere,
        owner: raw.owner,
        warnings: raw.warnings,
    })
}

/// At most this many of a repository's other tags are read for a real image.
const OTHER_TAGS: usize = 10;

/// A real image at one of the repository's other tags, if any (`:v1.4.2 (sha256:...)`).
async fn real_at_another_tag(place: &Place<'_>, name: &str, ours: &[(String, TagState)]) -> Result<Option<String>> {
    let others = place.registry.tags(name).await.with_context(|| format!("listing the tags of {name}"))?;
    for tag in others.iter().filter(|t| !ours.iter().any(|(o, _)| o == *t)).take(OTHER_TAGS) {
        if let Some(image) = place.registry.inspect(name, tag).await.with_context(|| format!("reading :{tag}"))?
            && !image.placeholder
        {
            return Ok(Some(format!(":{tag} ({})", image.digest)));
        }
    }
    Ok(None)
}

/// `--dry-run`: the step each repository would get.
pub(super) fn planned(name: &str, look: Result<Look>, force: bool) -> Outcome {
    let mut outcome = Outcome::new(name);
    let look = match look {
        Ok(look) => look,
        Err(error) => {
            outcome.reason = Some(format!("{error:#}"));
            return outcome;
        }
    };
    outcome.repository_uri = look.uri.clone();
    let step = look.step(force);
    let tags = |tags: &[String]| tags.iter().map(|t| format!(":{t}")).collect::<Vec<_>>().join(", ");
    let skipped: Vec<String> = step.skipped.iter().map(|(_, why)| why.clone()).collect();
    outcome.unfilled = step.skipped.iter().map(|(tag, _)| tag.clone()).collect();
    outcome.left_empty = step.left_empty.clone();
    (outcome.action, outcome.reason) = if let Some(why) = step.blocked {
        (Action::WouldSkip, Some(why))
    } else if step.create {
        (
            Action::WouldCreate,
            Some(format!("repository missing: would create it, put the lifecycle policy, push {}", tags(&step.push))),
        )
    } else if !step.push.is_empty() {
        let mut said = vec![format!("would push {}", tags(&step.push))];
        for (tag, state) in &look.tags {
            match state {
                TagState::Placeholder(digest) if step.push.contains(tag) => {
                    said.push(format!("an older placeholder ({digest}) is :{tag}"))
                }
                TagState::Real(digest) if step.push.contains(tag) => {
                    said.push(format!(":{tag} ({digest}) is a real image: --force replaces it"))
                }
                _ => {}
            }
        }
        said.extend(skipped);
        (Action::WouldUpdate, Some(said.join("; ")))
    } else if !skipped.is_empty() && !look.any_ours() {
        (Action::WouldSkip, Some(skipped.join("; ")))
    } else if step.fix_lifecycle {
        (Action::WouldUpdate, Some("would put the lifecycle policy back".to_owned()))
    } else {
        (Action::UpToDate, (!skipped.is_empty()).then(|| skipped.join("; ")))
    };
    outcome
}

/// What was read: the reachable targets, those that are not, and each (target, repository) pair
/// as its read-only calls found it.
pub(super) struct Read {
    pub(super) destinations: Vec<aws::Target>,
    pub(super) unreachable: Vec<(aws::TargetSpec, anyhow::Error)>,
    pub(super) work: Vec<Work<Raw>>,
    /// Connecting (credentials, GetAuthorizationToken), and reading the repositories.
    pub(super) connected: Duration,
    pub(super) looked: Duration,
}

/// One repository (the plan's `target`th) in one reachable target (the `destination`th), and
/// what is known of it so far.
pub(super) struct Work<T> {
    pub(super) destination: usize,
    pub(super) target: usize,
    pub(super) known: Result<T>,
}

/// Connects every target and reads each repository of the plan in each, `concurrency` at once;
/// with `--replicate`, only in the first (the others are ECR's to fill).
pub(super) async fn read(aws_args: &aws::AwsArgs, request: &Request, targets: &[Target]) -> Result<Read> {
    let started = Instant::now();
    let (destinations, unreachable) = aws::connect_reachable(aws_args).await?;
    let connected = started.elapsed();
    let source = &request.specs[0];
    if request.replicate && unreachable.iter().any(|(spec, _)| spec == source) {
        bail!("--replicate: the source target ({}) cannot be reached; nothing was changed", source.label());
    }
    let reached = if request.replicate { 1.min(destinations.len()) } else { destinations.len() };
    let pairs: Vec<(usize, usize)> = (0..reached).flat_map(|d| (0..targets.len()).map(move |t| (d, t))).collect();
    let raws: Vec<Result<Raw>> = futures_util::stream::iter(&pairs)
        .map(|&(d, t)| look_raw(Place::at(&destinations, d), &targets[t], &request.settings, &request.fill_immutable))
        .buffered(request.concurrency)
        .collect()
        .await;
    let work =
        pairs.into_iter().zip(raws).map(|((destination, target), known)| Work { destination, target, known }).collect();
    Ok(Read { destinations, unreachable, work, connected, looked: started.elapsed() - connected })
}

/// What is to be done: each pair's look, resolved against the images built.
pub(super) struct ToDo {
    pub(super) destinations: Vec<aws::Target>,
    pub(super) unreachable: Vec<(aws::TargetSpec, anyhow::Error)>,
    pub(super) work: Vec<Work<Look>>,
}

/// Tells each tag's digest apart against the images this run built: only a tag holding something
/// else is read for its labels.
pub(super) async fn resolve_all(read: Read, targets: &[Target], built: &Built, concurrency: usize) -> ToDo {
    let Read { destinations, unreachable, work, .. } = read;
    let places = &destinations;
    let work: Vec<Work<Look>> = futures_util::stream::iter(work)
        .map(|w| async move {
            let known = match w.known {
                Ok(raw) => resolve(Place::at(places, w.destination), raw, built.of(&targets[w.target])).await,
                Err(error) => Err(error),
            };
            Work { destination: w.destination, target: w.target, known }
        })
        .buffered(concurrency)
        .collect()
        .await;
    ToDo { destinations, unreachable, work }
}

/// `--dry-run`: the step each pair would get, and nothing done.
pub(super) fn dry_run(todo: ToDo, targets: &[Target], force: bool) -> Done {
    let ToDo { destinations, unreachable, work } = todo;
    let outcomes = work
        .into_iter()
        .map(|w| planned(&targets[w.target].name, w.known, force).of(&targets[w.target], &destinations[w.destination]))
        .collect();
    Done { destinations, unreachable, outcomes, proofs: Vec::new(), interrupted: Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(mode: &str, filters: &[&str], fill: &[&str], tags: Vec<(&str, TagState)>) -> Look {
        Look {
            name: "api".into(),
            uri: Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com/api".into()),
            lifecycle: Some(Lifecycle::Expected),
            tags: tags.into_iter().map(|(tag, state)| (tag.to_owned(), state)).collect(),
            mutability: Mutability { mode: mode.into(), filters: filters.iter().map(|f| f.to_string()).collect() },
            fill_immutable: fill.iter().map(|t| t.to_string()).collect(),
            real_elsewhere: None,
            owner: None,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn an_empty_immutable_tag_gets_no_placeholder_unless_asked() {
        let step =
            look("IMMUTABLE", &[], &[], vec![("v1", TagState::Absent), ("latest", TagState::Absent)]).step(false);
        assert!(step.push.is_empty() && step.left_empty == ["v1", "latest"]);
        assert!(
            step.skipped[0].1.contains("filterType=WILDCARD,filter=v1")
                && step.skipped[0].1.contains("--fill-immutable v1")
        );
        let asked =
            look("IMMUTABLE", &[], &["v1"], vec![("v1", TagState::Absent), ("latest", TagState::Absent)]).step(false);
        assert_eq!((asked.push, asked.left_empty), (vec!["v1".to_owned()], vec!["latest".to_owned()]));
        // An exclusion makes the tag mutable: filled as usual, and the pipeline may overwrite it.
        let excluded = look("IMMUTABLE_WITH_EXCLUSION", &["v*"], &[], vec![("v1", TagState::Absent)]).step(false);
        assert_eq!(excluded.push, ["v1"]);
        // Whatever an immutable tag holds stays; a mutable one is replaced only when a placeholder.
        let held = look(
            "MUTABLE_WITH_EXCLUSION",
            &["release-*"],
            &[],
            vec![
                ("release-1", TagState::Placeholder("sha256:a".into())),
                ("latest", TagState::Placeholder("sha256:a".into())),
            ],
        )
        .step(false);
        assert_eq!((held.push, held.skipped.len(), held.left_empty.len()), (vec!["latest".to_owned()], 1, 0));
        let real = look("MUTABLE", &[], &[], vec![("latest", TagState::Real("sha256:b".into()))]);
        assert!(real.step(false).push.is_empty() && real.step(true).push == ["latest"]);
    }

    #[test]
    fn a_new_tag_of_a_live_repository_gets_no_placeholder_unless_forced() {
        let mut live = look("MUTABLE", &[], &[], vec![("v1.5.0", TagState::Absent)]);
        live.real_elsewhere = Some(":v1.4.2 (sha256:c)".into());
        let step = live.step(false);
        assert!(step.push.is_empty() && step.left_empty.is_empty(), "the real image is the pipeline's to push");
        assert!(step.skipped[0].1.contains("already holds a real image (:v1.4.2 (sha256:c))"), "{:?}", step.skipped);
        assert_eq!(live.step(true).push, ["v1.5.0"]);
    }
}
