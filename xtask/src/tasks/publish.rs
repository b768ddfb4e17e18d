//! `cargo xtask publish --containers a,b`: provision each ECR repository, then push the placeholder
//! as `:latest` (a manifest list over every platform), never over a real image.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::clients::replicate;
use crate::clients::ecr::{self, Encryption, Lifecycle, Settings};
use crate::image::{self, Plan};
use crate::proof;
use crate::image::oci::{self, Blob, ImageSet, Recipe};
use crate::base::platform;
use crate::clients::registry::{Pushed, Registry};
use crate::proof::smoke::Proof;
use crate::sources::taskdef::TagRef;
#[cfg(feature = "stacks")]
use crate::clients::follow;
use crate::clients::aws;
use crate::clients::engine;
use crate::sources::from;
use crate::base::names;
use crate::base::progress;
use crate::proof::kept;
use crate::sources::stack;
use crate::sources::taskdef;
use crate::base::Usage;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container names, comma-separated: one ECR repository each. `name:8080` bakes a default
    /// port into that repository's image for tasks with no metadata to name it.
    #[arg(long, env = "ECS_PLACEHOLDER_CONTAINERS", value_name = "NAMES")]
    pub containers: Option<String>,
    /// ECS task definition JSON: each container whose image is in ECR names a repository to
    /// publish, and its image gets the container's ports, entry point and user.
    #[arg(long = "task-definition", value_name = "FILE", num_args = 1..)]
    pub task_definitions: Vec<PathBuf>,
    /// The stack the containers are in: a CloudFormation template (JSON or YAML), a CDK cdk.out
    /// directory, a `terraform show -json` plan, ECS task definition JSON, a deployed or deploying
    /// stack (`stack:NAME`), or a cluster's services (`ecs:CLUSTER[/SERVICE,...]`). Each container
    /// whose image is in ECR names a repository, baked as with --task-definition.
    #[arg(long, value_name = "SOURCE", num_args = 1..)]
    pub from: Vec<String>,
    #[command(flatten)]
    pub aws: aws::AwsArgs,
    /// Encryption for repositories this run creates (fixed at creation).
    #[arg(long, value_enum, default_value_t = EncryptionArg::Kms)]
    pub encryption: EncryptionArg,
    /// A customer-managed KMS key for new repositories [default: the AWS-managed key].
    #[arg(long, value_name = "ARN")]
    pub kms_key: Option<String>,
    /// Turn on basic scanning on push for new repositories.
    #[arg(long)]
    pub scan_on_push: bool,
    /// How many images the lifecycle policy keeps.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub keep: u32,
    /// Replace a `:latest` that is not a placeholder (a real image).
    #[arg(long)]
    pub force: bool,
    /// Print what would be done and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Platforms in the manifest list, comma-separated.
    #[arg(long, default_value = "linux/amd64,linux/arm64")]
    pub platform: String,
    /// Repositories worked on at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Push without proving the image healthy first.
    #[arg(long)]
    pub no_smoke: bool,
    /// Put the placeholder only at the tags the definitions name, not also at :latest.
    #[arg(long)]
    pub no_latest: bool,
    /// After pushing, follow the services `--from stack:NAME` or `--from ecs:CLUSTER` names until
    /// they are steady, or say why not.
    #[arg(long)]
    pub wait: bool,
    /// Print where the run's time went, phase by phase, on stderr at the end.
    #[arg(long)]
    pub timings: bool,
    /// How long --wait follows the services.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = humantime::parse_duration)]
    pub wait_timeout: std::time::Duration,
    /// Push to the first target only, and write ECR replication (rule, registry policy, creation
    /// templates) so ECR copies the placeholder to the other targets.
    #[arg(long)]
    pub replicate: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum EncryptionArg {
    Kms,
    Aes256,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Created,
    Updated,
    UpToDate,
    Skipped,
    Failed,
    WouldCreate,
    WouldUpdate,
    WouldSkip,
}

impl Action {
    fn text(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::UpToDate => "up to date",
            Action::Skipped => "skipped",
            Action::Failed => "failed",
            Action::WouldCreate => "would create",
            Action::WouldUpdate => "would update",
            Action::WouldSkip => "would skip",
        }
    }
}

#[derive(Serialize, Debug)]
pub struct Outcome {
    pub container: String,
    /// The AWS account and region of the target, where known.
    pub account: Option<String>,
    pub region: Option<String>,
    pub repository_uri: Option<String>,
    pub action: Action,
    pub digest: Option<String>,
    /// The ports baked into this repository's placeholder; empty when none was given.
    pub ports: Vec<u16>,
    /// The tags the placeholder is put at.
    pub tags: Vec<String>,
    pub reason: Option<String>,
    pub warnings: Vec<String>,
}

impl Outcome {
    /// Failed until a step says otherwise, so an early return can never report success.
    fn new(container: &str) -> Outcome {
        Outcome {
            container: container.to_owned(),
            account: None,
            region: None,
            repository_uri: None,
            action: Action::Failed,
            digest: None,
            ports: Vec::new(),
            tags: Vec::new(),
            reason: None,
            warnings: Vec::new(),
        }
    }
}

/// Splits the comma-separated list: spaces trimmed, empty entries and duplicates dropped, and
/// every name checked before anything is changed. A name may carry ports (`api:8080:9090`).
pub fn parse_containers(list: &str) -> Result<Vec<String>> {
    Ok(container_specs(list)?.into_iter().map(|(name, _)| name).collect())
}

/// Each container's name and the ports given with it.
fn container_specs(list: &str) -> Result<Vec<(String, Vec<u16>)>> {
    let mut specs: Vec<(String, Vec<u16>)> = Vec::new();
    for spec in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let mut parts = spec.split(':');
        let name = parts.next().unwrap_or_default();
        names::check_repository(name).map_err(|e| Usage(format!("{e}")))?;
        let ports = parts
            .map(|p| match p.trim().parse::<u16>() {
                Ok(port) if port > 0 => Ok(port),
                _ => Err(Usage(format!("--containers {spec:?}: {p:?} is not a port; use name:8080"))),
            })
            .collect::<Result<Vec<u16>, Usage>>()?;
        match specs.iter_mut().find(|(n, _)| n == name) {
            Some((_, known)) => known.extend(ports.into_iter().filter(|p| !known.contains(p)).collect::<Vec<_>>()),
            None => specs.push((name.to_owned(), ports)),
        }
    }
    if specs.is_empty() {
        bail!(Usage("no container names: pass --containers my-svc-staging,my-svc-prod".into()));
    }
    Ok(specs)
}

/// A repository to publish and what its image must carry.
struct Target {
    name: String,
    recipe: Recipe,
    /// What the task definitions ask that no image can give, said once per repository.
    notes: Vec<String>,
    /// The tags the placeholder is put at: those the definitions name, and `latest`.
    tags: Vec<String>,
    /// The deployed stack that owns the repository, where one does.
    owner: Option<String>,
}

/// The repositories to publish: `--containers`, and the ECR repositories of every container in
/// `--task-definition` files and `--from` stacks, each with the recipe its definitions need.
fn targets(args: &Args, found: &[stack::Found]) -> Result<Vec<Target>> {
    let mut targets: Vec<Target> = Vec::new();
    let entry = |targets: &mut Vec<Target>, name: &str| -> usize {
        match targets.iter().position(|t| t.name == name) {
            Some(i) => i,
            None => {
                targets.push(Target { name: name.to_owned(), recipe: Recipe::default(), notes: Vec::new(), tags: Vec::new(), owner: None });
                targets.len() - 1
            }
        }
    };
    if let Some(list) = &args.containers {
        for (name, ports) in container_specs(list)? {
            let i = entry(&mut targets, &name);
            targets[i].recipe.ports.extend(ports);
        }
    }
    for file in &args.task_definitions {
        for container in taskdef::load(file).map_err(|e| Usage(format!("{e:#}")))? {
            let Some(repository) = container.image.as_deref().and_then(taskdef::ecr_repository) else {
                eprintln!(
                    "{}: container {} uses {}: not an ECR repository, left alone",
                    file.display(),
                    container.name,
                    container.image.as_deref().unwrap_or("no image")
                );
                continue;
            };
            let Some(tag) = tag_for(&container.name, container.image.as_deref().unwrap_or_default()) else { continue };
            let i = entry(&mut targets, &repository);
            bake(&mut targets[i], &container);
            targets[i].tags.extend(tag);
        }
    }
    for found in found {
        match found.repository() {
            Some(repository) => {
                let Some(tag) = tag_for(&found.container.name, &found.image) else { continue };
                let i = entry(&mut targets, repository);
                bake(&mut targets[i], &found.container);
                targets[i].tags.extend(tag);
                if let Some(owner) = found.owner() {
                    targets[i].owner = Some(owner);
                }
            }
            // A dry run's table says it on stdout.
            None if !(args.dry_run && args.output == OutputFormat::Text) => eprintln!("{}", found.left_alone().unwrap_or_default()),
            None => {}
        }
    }
    if targets.is_empty() {
        bail!(Usage("no container names: pass --containers my-svc-staging,my-svc-prod, --task-definition FILE or --from PATH".into()));
    }
    for target in &mut targets {
        let mut seen = Vec::new();
        target.recipe.ports.retain(|p| {
            let new = !seen.contains(p);
            seen.push(*p);
            new
        });
        if !args.no_latest || target.tags.is_empty() {
            target.tags.push("latest".to_owned());
        }
        let mut seen = Vec::new();
        target.tags.retain(|tag| {
            let new = !seen.contains(tag);
            seen.push(tag.clone());
            new
        });
    }
    Ok(targets)
}

/// The tag a container's image names, to put the placeholder at: `Some(None)` when it names none
/// that can be known now (`:latest` stands in), `None` for a digest, which no placeholder can be.
fn tag_for(container: &str, image: &str) -> Option<Option<String>> {
    match taskdef::image_tag(image) {
        TagRef::Tag(tag) => Some(Some(tag)),
        TagRef::Digest(digest) => {
            eprintln!("container {container}: its image {image} pins the digest {digest}, which cannot be a placeholder: nothing is pushed for it");
            None
        }
        TagRef::Unknown(tag) => {
            eprintln!(
                "container {container}: the tag {tag:?} of {image} is known only when the stack is deployed: the placeholder goes to :latest; \
                 --from stack:NAME reads the deployed stack's own value"
            );
            Some(None)
        }
    }
}

/// Adds to `target`'s recipe what `container` needs to boot the placeholder, and notes what no
/// image can give.
fn bake(target: &mut Target, container: &taskdef::Container) {
    let recipe = &mut target.recipe;
    recipe.ports.extend(&container.ports);
    if let Some(port) = container.load_balancer.as_ref().and_then(|lb| lb.port) {
        recipe.ports.push(port);
    }
    // Docker runs an entry point by path, or by name on the image's PATH.
    let programs = [container.entry_point.as_deref(), container.health_check.as_ref().filter(|h| h.command.first().is_some_and(|c| c == "CMD")).map(|h| &h.command[1..])];
    for program in programs.into_iter().flatten().filter_map(|argv| argv.first()) {
        let path = if program.starts_with('/') {
            program.clone()
        } else if program.contains('/') {
            let dir = container.working_directory.as_deref().unwrap_or("/");
            format!("{}/{}", dir.trim_end_matches('/'), program.trim_start_matches("./"))
        } else {
            format!("/usr/local/bin/{program}")
        };
        if !oci::PROGRAMS.contains(&path.as_str()) && path != oci::SERVER_PATH {
            recipe.programs.insert(path);
        }
    }
    if let Some(user) = &container.user {
        let name = user.split(':').next().unwrap_or_default();
        if !name.is_empty() && !name.bytes().all(|b| b.is_ascii_digit()) {
            recipe.users.insert(name.to_owned());
        }
    }
    if let Some(text) = container.load_balancer.as_ref().and_then(|lb| lb.matcher.as_deref()) {
        match taskdef::Matcher::parse(text) {
            Ok(matcher) if !matcher.accepts_ok() => {
                recipe.status = Some(matcher.lowest());
                target.notes.push(format!(
                    "the target group accepts only {matcher}: the placeholder answers its checks (User-Agent ELB-HealthChecker) with {} instead of 200",
                    matcher.lowest()
                ));
            }
            Ok(_) => {}
            Err(e) => target.notes.push(format!("container {}: {e}", container.name)),
        }
    }
    if container.ports.contains(&443) {
        target.notes.push(format!(
            "container {} listens on 443: if its target group speaks HTTPS, its checks fail against the placeholder, \
             which answers plain HTTP (no certificate to present); use an HTTP target group or the container's own port",
            container.name
        ));
    }
}

/// What one repository is before anything is changed, from read-only calls.
struct Look {
    name: String,
    /// `None` when the repository does not exist.
    uri: Option<String>,
    lifecycle: Option<Lifecycle>,
    /// Each tag the placeholder is to be at, and what is there now.
    tags: Vec<(String, TagState)>,
    /// The repository's tags are immutable: a tag that exists can never be moved.
    immutable: bool,
    /// The stack that owns the repository (`--from stack:NAME`), which publish never creates,
    /// tags or gives a lifecycle policy.
    owner: Option<String>,
    warnings: Vec<String>,
}

enum TagState {
    Absent,
    /// Exactly the image this run would push.
    Ours,
    /// An older or different placeholder.
    Placeholder(String),
    /// Somebody's real image.
    Real(String),
}

/// What to do with one repository.
struct Step {
    create: bool,
    /// Tags to put the placeholder at.
    push: Vec<String>,
    /// Tags left alone, and why.
    skipped: Vec<(String, String)>,
    /// Only the lifecycle policy needs putting back.
    fix_lifecycle: bool,
    /// Nothing can be done, and why.
    blocked: Option<String>,
}

impl Look {
    fn step(&self, force: bool) -> Step {
        let mut step = Step { create: false, push: Vec::new(), skipped: Vec::new(), fix_lifecycle: false, blocked: None };
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
        for (tag, state) in &self.tags {
            match state {
                TagState::Ours => {}
                TagState::Absent => step.push.push(tag.clone()),
                TagState::Placeholder(digest) if self.immutable => step.skipped.push((
                    tag.clone(),
                    format!(":{tag} already holds another placeholder ({digest}), and the repository's tags are immutable: it stays"),
                )),
                TagState::Real(digest) if self.immutable => step.skipped.push((
                    tag.clone(),
                    format!(":{tag} ({digest}) is a real image, and the repository's tags are immutable: it stays"),
                )),
                TagState::Real(digest) if !force => step
                    .skipped
                    .push((tag.clone(), format!(":{tag} ({digest}) is not a placeholder, so it was left untouched; --force replaces it"))),
                TagState::Placeholder(_) | TagState::Real(_) => step.push.push(tag.clone()),
            }
        }
        step.fix_lifecycle = self.owner.is_none() && self.lifecycle != Some(Lifecycle::Expected);
        step
    }

    /// Some tag already holds this placeholder.
    fn any_ours(&self) -> bool {
        self.tags.iter().any(|(_, state)| matches!(state, TagState::Ours))
    }
}

/// Everything the pushes of one run share.
struct Job {
    settings: Settings,
    /// Per registry (target) and blob, the first repository of this run known to hold it: later
    /// ones in the same registry mount from it, so each blob is uploaded once per registry.
    homes: HashMap<(usize, String), OnceCell<String>>,
    interrupted: Arc<AtomicBool>,
    /// Each target's `ACCOUNT REGION`, where there are several: lines name the target too.
    labels: Vec<String>,
    tally: progress::Tally,
}

impl Job {
    /// `[repository]`, or `[ACCOUNT REGION repository]` when the run has several targets.
    fn who(&self, destination: usize, name: &str) -> String {
        match self.labels.get(destination) {
            Some(label) if self.labels.len() > 1 => format!("[{label} {name}]"),
            _ => format!("[{name}]"),
        }
    }
}

/// One repository in one target.
struct Place<'a> {
    destination: usize,
    ecr: &'a aws_sdk_ecr::Client,
    registry: &'a Registry,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let mut timings = Timings::new(args.timings);
    let started = Instant::now();
    let loaded = from::load_waiting(&args.from, &args.aws, args.wait.then_some(args.wait_timeout)).await?;
    if !args.from.is_empty() {
        timings.add("read the --from sources", started.elapsed());
    }
    let found = loaded.found;
    if args.wait && loaded.services.is_empty() {
        bail!(Usage("--wait follows ECS services: name them with --from stack:NAME or --from ecs:CLUSTER[/SERVICE,...]".into()));
    }
    if args.dry_run && args.output == OutputFormat::Text && !found.is_empty() {
        stack::print_table(&found);
    }
    let targets = targets(&args, &found)?;
    let platforms = platform::parse_list(&args.platform).map_err(|e| Usage(e.to_string()))?;
    let encryption = match (args.encryption, &args.kms_key) {
        (EncryptionArg::Aes256, Some(_)) => bail!(Usage("--kms-key needs --encryption kms, not aes256".into())),
        (EncryptionArg::Aes256, None) => Encryption::Aes256,
        (EncryptionArg::Kms, key) => Encryption::Kms(key.clone()),
    };
    args.aws.check()?;
    let settings = Settings { encryption, scan_on_push: args.scan_on_push, keep: args.keep };
    let specs = args.aws.specs()?;
    if args.replicate && specs.len() < 2 {
        bail!(Usage("--replicate needs at least two targets: the first is the source, e.g. --region eu-west-1,us-east-1".into()));
    }
    // The images are built (cargo's check of the server build, then the layers in-process) while
    // the targets connect and their repositories are read: neither waits for the other.
    let recipes: Vec<Recipe> = targets.iter().map(|t| t.recipe.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let build = tokio::task::spawn_blocking({
        let platforms = platforms.clone();
        move || -> Result<(BTreeMap<Recipe, ImageSet>, Duration, Duration)> {
            let started = Instant::now();
            let sources = image::sources(&Plan::project(platforms))?;
            let cargo = started.elapsed();
            let sets = recipes.into_iter().map(|recipe| Ok((recipe.clone(), oci::build(&sources, &recipe)?))).collect::<Result<_>>()?;
            Ok((sets, cargo, started.elapsed() - cargo))
        }
    });
    let read = async {
        let started = Instant::now();
        let (destinations, unreachable) = connect_targets(&args.aws).await?;
        let connected = started.elapsed();
        if args.replicate && unreachable.iter().any(|(spec, _)| *spec == specs[0]) {
            bail!("--replicate: the source target ({}) cannot be reached; nothing was changed", specs[0].label());
        }
        let source_only = if args.replicate { 1 } else { destinations.len() };
        let work: Vec<(usize, usize)> = (0..source_only).flat_map(|d| (0..targets.len()).map(move |t| (d, t))).collect();
        let place = |d: usize| Place { destination: d, ecr: &destinations[d].aws.ecr, registry: &destinations[d].registry };
        let raws: Vec<Result<Raw>> = futures_util::stream::iter(&work)
            .map(|&(d, t)| look_raw(place(d), &targets[t], &settings))
            .buffered(args.concurrency as usize)
            .collect()
            .await;
        let looked = started.elapsed() - connected;
        Ok((destinations, unreachable, work, raws, connected, looked))
    };
    // A target that cannot be reached is reported at once, not after the build.
    let built = async { build.await.context("the image build stopped")? };
    let ((destinations, unreachable, work, raws, connected, looked), (sets, cargo, layers)) = tokio::try_join!(read, built)?;
    timings.add("connect (credentials, GetAuthorizationToken)", connected);
    timings.add("read each repository (describe, lifecycle, tag digests)", looked);
    timings.add("server build (cargo's check)", cargo);
    timings.add("layers, configs and manifests (in-process)", layers);
    let plan = Plan::project(platforms);
    for target in &targets {
        let set = &sets[&target.recipe];
        if target.recipe != Recipe::default() {
            eprintln!("[{}] its own placeholder {} ({})", target.name, set.index.digest, describe(&target.recipe));
        }
        for note in &target.notes {
            eprintln!("[{}] note: {note}", target.name);
        }
    }
    if let Some(set) = sets.get(&Recipe::default()) {
        eprintln!("placeholder {} for {}", set.index.digest, platform::names(&plan.platforms));
    }

    // Every (target, repository) pair, worked under the one --concurrency limit.
    let work: Vec<(usize, &Target)> = work.into_iter().map(|(d, t)| (d, &targets[t])).collect();
    let place = |d: usize| Place { destination: d, ecr: &destinations[d].aws.ecr, registry: &destinations[d].registry };
    let started = Instant::now();
    let sets_ref = &sets;
    let looks: Vec<Result<Look>> = futures_util::stream::iter(work.iter().zip(raws))
        .map(|(&(d, target), raw)| async move {
            match raw {
                Ok(raw) => resolve(place(d), raw, &sets_ref[&target.recipe]).await,
                Err(error) => Err(error),
            }
        })
        .buffered(args.concurrency as usize)
        .collect()
        .await;
    timings.add("read tags holding something else (labels)", started.elapsed());

    let mut proofs = Vec::new();
    let interrupted = if args.dry_run { Arc::new(AtomicBool::new(false)) } else { on_interrupt() };
    let mut outcomes: Vec<Outcome> = if args.dry_run {
        work.iter().zip(looks).map(|(&(_, target), look)| planned(&target.name, look, args.force)).collect()
    } else {
        let pushed: BTreeSet<&Recipe> = work
            .iter()
            .map(|(_, target)| target)
            .zip(&looks)
            .filter(|(_, look)| look.as_ref().is_ok_and(|look| !look.step(args.force).push.is_empty()))
            .map(|(target, _)| &target.recipe)
            .collect();
        if !pushed.is_empty() && !args.no_smoke {
            // Proven before anything changes in AWS: a broken image is never pushed.
            let started = Instant::now();
            proofs = prove(pushed.into_iter().map(|recipe| &sets[recipe]).collect(), &plan).await?;
            timings.add("smoke test", started.elapsed());
        }
        let started = Instant::now();
        let blobs: BTreeSet<&str> = sets.values().flat_map(ImageSet::blobs).map(|b| b.digest.as_str()).collect();
        let job = Job {
            settings: settings.clone(),
            homes: (0..destinations.len())
                .flat_map(|d| blobs.iter().map(move |digest| ((d, digest.to_string()), OnceCell::new())))
                .collect(),
            interrupted: interrupted.clone(),
            labels: destinations.iter().map(|d| format!("{} {}", d.account, d.aws.region)).collect(),
            tally: progress::Tally::new(
                "publishing",
                destinations.iter().enumerate().map(|(d, t)| (t.aws.region.clone(), work.iter().filter(|(w, _)| *w == d).count() as u64)).collect(),
                args.output == OutputFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            ),
        };
        let outcomes = futures_util::stream::iter(work.iter().zip(looks))
            .map(|(&(d, target), look)| act(&job, place(d), &target.name, &sets[&target.recipe], look, args.force))
            .buffered(args.concurrency as usize)
            .collect()
            .await;
        timings.add("writes: repositories, lifecycle policies, blobs, manifests", started.elapsed());
        outcomes
    };
    for (outcome, &(d, target)) in outcomes.iter_mut().zip(&work) {
        outcome.ports = target.recipe.ports.clone();
        outcome.tags = target.tags.clone();
        outcome.warnings.extend(target.notes.iter().cloned());
        outcome.account = Some(destinations[d].account.clone());
        outcome.region = Some(destinations[d].aws.region.clone());
    }
    for (spec, error) in &unreachable {
        let mut outcome = Outcome::new("*");
        outcome.region = spec.region.clone();
        outcome.reason = Some(format!("{error:#}"));
        outcomes.push(outcome);
    }
    let replication = match args.replicate {
        true => {
            let others: Vec<&aws::Target> = destinations.iter().skip(1).collect();
            let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
            replicate::configure(&destinations[0], &others, &names, &settings, args.dry_run).await
        }
        false => Vec::new(),
    };
    let images = sets.get(&Recipe::default()).or_else(|| sets.values().next()).expect("at least one target");

    match args.output {
        OutputFormat::Json => print_json(&outcomes, &destinations, &unreachable, &replication, images, &proofs, &found)?,
        OutputFormat::Text => {
            print_replication(&replication);
            print_text(&outcomes, args.dry_run);
        }
    }
    let failed = outcomes.iter().any(|o| o.action == Action::Failed) || replication.iter().any(|c| c.result == "failed");
    timings.print();
    #[cfg(feature = "stacks")]
    if args.wait && !args.dry_run && !failed {
        let config = &destinations.first().context("no target to follow the services in")?.aws.config;
        return Ok(match follow::follow(&loaded.services, config, args.wait_timeout, &interrupted).await? {
            follow::Ended::Steady => ExitCode::SUCCESS,
            follow::Ended::NotSteady => ExitCode::FAILURE,
            follow::Ended::Interrupted => ExitCode::from(130),
        });
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// `--timings`: where publish's own time goes, phase by phase. Phases that overlap (the image
/// build runs while the targets connect and are read) are each timed whole.
struct Timings {
    enabled: bool,
    started: Instant,
    phases: Vec<(&'static str, Duration)>,
}

impl Timings {
    fn new(enabled: bool) -> Timings {
        Timings { enabled, started: Instant::now(), phases: Vec::new() }
    }

    fn add(&mut self, phase: &'static str, took: Duration) {
        self.phases.push((phase, took));
    }

    fn print(&self) {
        if !self.enabled {
            return;
        }
        for (phase, took) in &self.phases {
            eprintln!("timing: {:>8.1} ms  {phase}", took.as_secs_f64() * 1000.0);
        }
        eprintln!("timing: {:>8.1} ms  in all, from the start of the task", self.started.elapsed().as_secs_f64() * 1000.0);
    }
}

/// Connects every target. With one target its failure is the run's error (exit 2 for bad
/// credentials or region); with several, a failed target is reported and the others go on.
pub async fn connect_targets(aws_args: &aws::AwsArgs) -> Result<(Vec<aws::Target>, Vec<(aws::TargetSpec, anyhow::Error)>)> {
    let connected = aws_args.connect_all().await?;
    let single = connected.len() == 1;
    let mut destinations = Vec::new();
    let mut unreachable = Vec::new();
    for (spec, result) in connected {
        match result {
            Ok(target) => destinations.push(target),
            Err(error) if single => return Err(error),
            Err(error) => {
                eprintln!("[{}] failed: {error:#}", spec.label());
                unreachable.push((spec, error));
            }
        }
    }
    Ok((destinations, unreachable))
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

/// Smoke-tests the images through the engine when one answers, else straight from the layers. A
/// set an earlier run proved (the same index digest) is not run again; each new proof is kept.
async fn prove(sets: Vec<&ImageSet>, plan: &Plan) -> Result<Vec<Proof>> {
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
        let proven = proof::prove(set, engine.as_ref(), plan).await?;
        kept::keep(set, &proven);
        proofs.extend(proven);
    }
    Ok(proofs)
}

/// What a recipe adds, for the progress lines.
fn describe(recipe: &Recipe) -> String {
    let mut parts = Vec::new();
    if !recipe.ports.is_empty() {
        parts.push(format!("default ports {:?}", recipe.ports));
    }
    if !recipe.programs.is_empty() {
        parts.push(format!("programs {}", recipe.programs.iter().cloned().collect::<Vec<_>>().join(" ")));
    }
    if !recipe.users.is_empty() {
        parts.push(format!("users {}", recipe.users.iter().cloned().collect::<Vec<_>>().join(" ")));
    }
    if let Some(status) = recipe.status {
        parts.push(format!("answers {status}"));
    }
    parts.join(", ")
}

/// What one repository holds, read before the images are built: whether it exists, its
/// settings and lifecycle policy, and the manifest digest at each tag.
struct Raw {
    name: String,
    uri: Option<String>,
    lifecycle: Option<Lifecycle>,
    tags: Vec<(String, Option<String>)>,
    immutable: bool,
    owner: Option<String>,
    warnings: Vec<String>,
}

/// Reads one repository with read-only calls; needs nothing of this run's images.
async fn look_raw(place: Place<'_>, target: &Target, settings: &Settings) -> Result<Raw> {
    let (ecr_client, registry, name) = (place.ecr, place.registry, target.name.as_str());
    let mut raw = Raw {
        name: name.to_owned(),
        uri: None,
        lifecycle: None,
        tags: target.tags.iter().map(|tag| (tag.clone(), None)).collect(),
        immutable: false,
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
    raw.immutable = existing.image_tag_mutability().is_some_and(|m| m.as_str().starts_with("IMMUTABLE"));
    Ok(raw)
}

/// What each tag is, against the images this run built: the digest alone answers the common case
/// (this very placeholder); only a tag holding something else is read for its labels.
async fn resolve(place: Place<'_>, raw: Raw, images: &ImageSet) -> Result<Look> {
    let mut tags = Vec::new();
    for (tag, digest) in raw.tags {
        let state = match digest {
            None => TagState::Absent,
            Some(digest) if digest == images.index.digest => TagState::Ours,
            Some(_) => match place.registry.inspect(&raw.name, &tag).await.with_context(|| format!("reading :{tag}"))? {
                None => TagState::Absent,
                Some(image) if image.placeholder => TagState::Placeholder(image.digest),
                Some(image) => TagState::Real(image.digest),
            },
        };
        tags.push((tag, state));
    }
    Ok(Look {
        name: raw.name,
        uri: raw.uri,
        lifecycle: raw.lifecycle,
        tags,
        immutable: raw.immutable,
        owner: raw.owner,
        warnings: raw.warnings,
    })
}

/// `--dry-run`: the step each repository would get.
fn planned(name: &str, look: Result<Look>, force: bool) -> Outcome {
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
    (outcome.action, outcome.reason) = if let Some(why) = step.blocked {
        (Action::WouldSkip, Some(why))
    } else if step.create {
        (Action::WouldCreate, Some(format!("repository missing: would create it, put the lifecycle policy, push {}", tags(&step.push))))
    } else if !step.push.is_empty() {
        let mut said = vec![format!("would push {}", tags(&step.push))];
        for (tag, state) in &look.tags {
            match state {
                TagState::Placeholder(digest) if step.push.contains(tag) => said.push(format!("an older placeholder ({digest}) is :{tag}")),
                TagState::Real(digest) if step.push.contains(tag) => said.push(format!(":{tag} ({digest}) is a real image: --force replaces it")),
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

async fn act(job: &Job, place: Place<'_>, name: &str, images: &ImageSet, look: Result<Look>, force: bool) -> Outcome {
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

async fn act_steps(job: &Job, place: &Place<'_>, images: &ImageSet, look: Look, force: bool, outcome: &mut Outcome) -> Result<()> {
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
            progress::say(format!("{} lifecycle policy put back (keep {}); the tags already held this placeholder", job.who(place.destination, name), job.settings.keep));
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
async fn push(job: &Job, place: &Place<'_>, images: &ImageSet, name: &str, fresh: bool, tags: &[String]) -> Result<()> {
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
    progress::say(format!("{} blobs: {uploaded} uploaded, {mounted} mounted from another repository", job.who(place.destination, name)));
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
async fn push_blob(job: &Job, place: &Place<'_>, name: &str, blob: &Blob) -> Result<Pushed> {
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

/// What the placeholder does where no port was given at publish, and how to give one.
pub fn unknown_port_advice(example: &str) -> String {
    format!(
        "PORTS ? means no port was given. Where the task metadata lists none (Fargate, awsvpc on current EC2 agents), the \
         placeholder listens on PORT and the port variables frameworks read (SERVER_PORT, ASPNETCORE_URLS...), opens the port \
         the container's own health check names when it runs, and, when it is alone in its task (or beside known agents such \
         as FireLens, Datadog, ADOT), on the ports web frameworks default to (3000, 8080, 8000, 5000, 8501, 4000, ...) and 80; \
         beside a proxy or an unknown container it takes no port unasked. To be sure of the load balancer's port, give it: \
         --containers {example}:8080, or publish from the definition (--task-definition FILE, --from STACK)."
    )
}

/// What to tell users about health checks: the task definition stays the real service's.
pub const HEALTH_CHECK_ADVICE: &str = "Keep the task definition written for the real image: its port, its own healthCheck \
(CMD-SHELL with curl or wget: the placeholder answers it), its load balancer path, command and entryPoint. Only where a \
container has no healthCheck and you want one, use [\"CMD-SHELL\", \"curl -f http://localhost:PORT/ || exit 1\"], which \
works with the placeholder and most real images alike; [\"CMD\", \"/server\", \"--probe\"] works only with the \
placeholder and breaks the real image the day it is deployed.";

pub const VERIFY_ADVICE: &str = "Check a task definition before deploying the stack: cargo xtask verify --task-definition FILE (or --from PATH)";

pub const DIGEST_PINNING: &str = "ECS resolves :latest to a digest when a deployment starts: once the pipeline \
pushes the real image, the service needs a new deployment (e.g. aws ecs update-service --force-new-deployment).";

fn print_text(outcomes: &[Outcome], dry_run: bool) {
    let width = outcomes.iter().map(|o| o.container.len()).max().unwrap_or(9).max(9);
    let uri_width = outcomes.iter().filter_map(|o| o.repository_uri.as_ref().map(String::len)).max().unwrap_or(14).max(14);
    let region_width = outcomes.iter().filter_map(|o| o.region.as_ref().map(String::len)).max().unwrap_or(6).max(6);
    let ports_of = |o: &Outcome| if o.ports.is_empty() { "?".to_owned() } else { o.ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",") };
    let ports_width = outcomes.iter().map(|o| ports_of(o).len()).max().unwrap_or(5).max(5);
    let tags_of = |o: &Outcome| if o.tags.is_empty() { "-".to_owned() } else { o.tags.join(",") };
    let tags_width = outcomes.iter().map(|o| tags_of(o).len()).max().unwrap_or(4).max(4);
    println!(
        "{:<width$}  {:<12}  {:<region_width$}  {:<uri_width$}  {:<ports_width$}  {:<tags_width$}  {:<12}  DIGEST",
        "CONTAINER", "ACCOUNT", "REGION", "REPOSITORY URI", "PORTS", "TAGS", "ACTION"
    );
    for o in outcomes {
        println!(
            "{:<width$}  {:<12}  {:<region_width$}  {:<uri_width$}  {:<ports_width$}  {:<tags_width$}  {:<12}  {}",
            o.container,
            o.account.as_deref().unwrap_or("?"),
            o.region.as_deref().unwrap_or("?"),
            o.repository_uri.as_deref().unwrap_or("-"),
            ports_of(o),
            tags_of(o),
            o.action.text(),
            o.digest.as_deref().unwrap_or("-")
        );
    }
    let nothing_changed = !dry_run && !outcomes.is_empty() && outcomes.iter().all(|o| o.action == Action::UpToDate);
    let unknown: BTreeSet<&str> = outcomes.iter().filter(|o| o.ports.is_empty() && o.container != "*").map(|o| o.container.as_str()).collect();
    if !unknown.is_empty() && !nothing_changed {
        let names: Vec<&str> = unknown.into_iter().collect();
        println!("\n{}: {}", names.join(", "), unknown_port_advice(names[0]));
    }
    let many_targets = outcomes.iter().map(|o| (&o.account, &o.region)).collect::<BTreeSet<_>>().len() > 1;
    for o in outcomes.iter().filter(|o| o.reason.is_some()) {
        let place = match (many_targets, &o.account, &o.region) {
            (false, _, _) => String::new(),
            (true, account, region) => format!("[{} {}] ", account.as_deref().unwrap_or("?"), region.as_deref().unwrap_or("?")),
        };
        println!("{}: {place}{}", o.container, o.reason.as_deref().unwrap_or(""));
    }
    if dry_run {
        println!("\nDry run: nothing was changed.");
        return;
    }
    let ready: Vec<&Outcome> =
        outcomes.iter().filter(|o| matches!(o.action, Action::Created | Action::Updated | Action::UpToDate)).collect();
    if ready.is_empty() {
        return;
    }
    // A re-run that changed nothing needs no advice: the table and one line say it all.
    if nothing_changed {
        println!("\nNothing changed: {} repositor{} already up to date.", outcomes.len(), if outcomes.len() == 1 { "y" } else { "ies" });
        return;
    }
    println!("\nIn each task definition's container definition:");
    for o in ready {
        let tag = o.tags.first().map_or("latest", String::as_str);
        println!("  Image: {}:{tag}", o.repository_uri.as_deref().unwrap_or(&o.container));
    }
    println!("{HEALTH_CHECK_ADVICE}");
    println!("{VERIFY_ADVICE}");
    println!("{DIGEST_PINNING}");
}

/// What `--replicate` wrote, one line per registry and thing, on stderr with the progress.
fn print_replication(changes: &[replicate::Change]) {
    for c in changes {
        eprintln!("[{} {}] replication: {}: {}: {}", c.account, c.region, c.what, c.result, c.detail);
    }
}

fn print_json(
    outcomes: &[Outcome],
    destinations: &[aws::Target],
    unreachable: &[(aws::TargetSpec, anyhow::Error)],
    replication: &[replicate::Change],
    images: &ImageSet,
    proofs: &[Proof],
    found: &[stack::Found],
) -> Result<()> {
    let proofs: Vec<serde_json::Value> =
        proofs.iter().map(|p| serde_json::json!({ "platform": p.platform.docker(), "proof": p.describe() })).collect();
    let mut targets: Vec<serde_json::Value> = destinations
        .iter()
        .map(|d| serde_json::json!({ "profile": d.spec.profile, "account": d.account, "region": d.aws.region, "error": null }))
        .collect();
    targets.extend(unreachable.iter().map(|(spec, error)| {
        serde_json::json!({ "profile": spec.profile, "account": null, "region": spec.region, "error": format!("{error:#}") })
    }));
    let mut document = serde_json::json!({
        "region": destinations.first().map(|d| d.aws.region.as_str()),
        "targets": targets,
        "replication": replication,
        "placeholder": images.index.digest,
        "smoke_test": proofs,
        "containers": outcomes,
        "health_check": HEALTH_CHECK_ADVICE,
        "verify": VERIFY_ADVICE,
        "note": DIGEST_PINNING,
    });
    if !found.is_empty() {
        document["from"] = stack::to_json(found);
    }
    println!("{}", serde_json::to_string_pretty(&document)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_lists() {
        assert_eq!(parse_containers(" a1 , b2,a1,, ").unwrap(), ["a1", "b2"]);
        for bad in ["", " , ", "Upper", "x", "a//b", "-ab"] {
            let error = parse_containers(bad).unwrap_err();
            assert!(error.downcast_ref::<Usage>().is_some(), "{bad}: {error}");
        }
        let long = "a".repeat(257);
        assert!(parse_containers(&format!("ok1,{long}")).unwrap_err().to_string().contains("257 characters"));
    }
}
