//! `cargo xtask publish --containers a,b`: provision each ECR repository, then push the placeholder
//! at `:latest` and the tags the definitions name (a manifest list over every platform), never over
//! a real image. The flow, one file each: the plan (`plan.rs`: repositories, recipes, tags), a
//! read-only look at each repository (`look.rs`), the writes (`push.rs`), and the report
//! (`report.rs`).

mod look;
mod plan;
mod push;
mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use crate::base::Usage;
use crate::base::platform;
use crate::base::progress;
use crate::clients::aws;
use crate::clients::ecr::{Encryption, Settings};
use crate::clients::follow;
use crate::clients::replicate;
use crate::image::oci::{self, ImageSet, Recipe};
use crate::image::{self, Plan};
use crate::sources::from;
use crate::sources::stack;

pub use crate::tasks::OutputFormat;
use look::{Look, Raw, look_raw, planned, resolve};
use plan::{Target, describe, targets};
use push::{Job, Place, act, prove};
use report::{Action, Outcome, print_json, print_replication, print_text};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container names, comma-separated: one ECR repository each. `name:8080` bakes a default
    /// port into that repository's image for tasks with no metadata to name it.
    #[arg(long, env = "ECS_PLACEHOLDER_CONTAINERS", value_name = "NAMES")]
    pub containers: Option<String>,
    /// ECS task definition JSON, or a registered task definition (`FAMILY`, `FAMILY:REVISION` or
    /// its ARN, read with DescribeTaskDefinition): each container whose image is in ECR names a
    /// repository to publish at the tag it pulls, and its image gets the container's ports, entry
    /// point and user.
    #[arg(long = "task-definition", value_name = "FILE|FAMILY[:REV]|ARN", num_args = 1..)]
    pub task_definitions: Vec<PathBuf>,
    /// The target group the service will put a container behind (name or ARN, read with
    /// DescribeTargetGroups): its health check's path, port and matcher are baked in for the
    /// container that maps the group's port, or for `CONTAINER=GROUP`.
    #[arg(long = "target-group", value_name = "[CONTAINER=]NAME|ARN", num_args = 1..)]
    pub target_groups: Vec<String>,
    /// Do not look for registered task definitions that pull the --containers repositories.
    #[arg(long)]
    pub no_lookup: bool,
    /// Put the placeholder at these tags even where the repository makes them immutable (only
    /// for tags the pipeline never pushes: it could not push its image there after).
    #[arg(long, value_name = "TAGS", num_args = 1..)]
    pub fill_immutable: Vec<String>,
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

pub async fn run(args: Args) -> Result<ExitCode> {
    let mut timings = Timings::new(args.timings);
    let started = Instant::now();
    let asked = asked(&args)?;
    let mut loaded = from::load_asked(&asked, &args.aws, args.wait.then_some(args.wait_timeout)).await?;
    if asked.names_aws() || !args.from.is_empty() {
        timings.add("read the --from sources, registered definitions and target groups", started.elapsed());
    }
    let mut found = std::mem::take(&mut loaded.found);
    if args.wait && loaded.services.is_empty() {
        bail!(Usage(
            "--wait follows ECS services: name them with --from stack:NAME or --from ecs:CLUSTER[/SERVICE,...]".into()
        ));
    }
    if args.dry_run && args.output == OutputFormat::Text && !found.is_empty() {
        stack::print_table(&found);
    }
    let mut targets = targets(&args, &mut found, &loaded.groups)?;
    for (repository, why) in &loaded.not_found {
        if let Some(target) = targets.iter_mut().find(|t| &t.name == repository && t.pulled_by.is_empty()) {
            target.notes.push(why.clone());
        }
    }
    let platforms = platform::parse_list(&args.platform).map_err(|e| Usage(e.to_string()))?;
    let encryption = match (args.encryption, &args.kms_key) {
        (EncryptionArg::Aes256, Some(_)) => bail!(Usage("--kms-key needs --encryption kms, not aes256".into())),
        (EncryptionArg::Aes256, None) => Encryption::Aes256,
        (EncryptionArg::Kms, key) => Encryption::Kms(key.clone()),
    };
    args.aws.check()?;
    let settings = Settings { encryption, scan_on_push: args.scan_on_push, keep: args.keep };
    let fill_immutable: Vec<String> = args
        .fill_immutable
        .iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let specs = args.aws.specs()?;
    if args.replicate && specs.len() < 2 {
        bail!(Usage(
            "--replicate needs at least two targets: the first is the source, e.g. --region eu-west-1,us-east-1".into()
        ));
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
            let sets = recipes
                .into_iter()
                .map(|recipe| Ok((recipe.clone(), oci::build(&sources, &recipe)?)))
                .collect::<Result<_>>()?;
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
        let work: Vec<(usize, usize)> =
            (0..source_only).flat_map(|d| (0..targets.len()).map(move |t| (d, t))).collect();
        let place =
            |d: usize| Place { destination: d, ecr: &destinations[d].aws.ecr, registry: &destinations[d].registry };
        let raws: Vec<Result<Raw>> = futures_util::stream::iter(&work)
            .map(|&(d, t)| look_raw(place(d), &targets[t], &settings, &fill_immutable))
            .buffered(args.concurrency as usize)
            .collect()
            .await;
        let looked = started.elapsed() - connected;
        Ok((destinations, unreachable, work, raws, connected, looked))
    };
    // A target that cannot be reached is reported at once, not after the build.
    let built = async { build.await.context("the image build stopped")? };
    let ((destinations, unreachable, work, raws, connected, looked), (sets, cargo, layers)) =
        tokio::try_join!(read, built)?;
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
                destinations
                    .iter()
                    .enumerate()
                    .map(|(d, t)| (t.aws.region.clone(), work.iter().filter(|(w, _)| *w == d).count() as u64))
                    .collect(),
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
        outcome.pulled_by = target.pulled_by.clone();
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
        OutputFormat::Json => {
            print_json(&outcomes, &destinations, &unreachable, &replication, images, &proofs, &found)?
        }
        OutputFormat::Text => {
            print_replication(&replication);
            print_text(&outcomes, args.dry_run);
        }
    }
    // A tag left empty is a service that cannot start: never a success.
    let failed = outcomes.iter().any(|o| o.action == Action::Failed || !o.left_empty.is_empty())
        || replication.iter().any(|c| c.result == "failed");
    timings.print();
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

/// What publish reads beyond the files it is given: `--from`, registered task definitions, target
/// groups, and the registered definitions that pull the `--containers` repositories (unless
/// `--no-lookup`, or a definition given already names the repository).
pub(crate) fn asked(args: &Args) -> Result<from::Asked<'_>> {
    let registered: Vec<String> = args
        .task_definitions
        .iter()
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| from::is_registered(t))
        .collect();
    let mut lookup = Vec::new();
    if let Some(list) = args.containers.as_deref().filter(|_| !args.no_lookup) {
        let in_files: BTreeSet<String> = args
            .task_definitions
            .iter()
            .filter(|t| !from::is_registered(&t.to_string_lossy()))
            .filter_map(|file| crate::sources::taskdef::load(file).ok())
            .flatten()
            .filter_map(|c| c.image.as_deref().and_then(crate::base::image_ref::ecr_repository))
            .collect();
        lookup = crate::sources::containers::parse_containers(list)?
            .into_iter()
            .filter(|name| !in_files.contains(name))
            .collect();
    }
    Ok(from::Asked { from: &args.from, registered, target_groups: &args.target_groups, lookup })
}

/// `--timings`: where publish's own time goes, phase by phase. Phases that overlap (the image
/// build runs while the targets connect and are read) are each timed whole.
pub(super) struct Timings {
    pub(super) enabled: bool,
    pub(super) started: Instant,
    pub(super) phases: Vec<(&'static str, Duration)>,
}

impl Timings {
    pub(super) fn new(enabled: bool) -> Timings {
        Timings { enabled, started: Instant::now(), phases: Vec::new() }
    }

    pub(super) fn add(&mut self, phase: &'static str, took: Duration) {
        self.phases.push((phase, took));
    }

    pub(super) fn print(&self) {
        if !self.enabled {
            return;
        }
        for (phase, took) in &self.phases {
            eprintln!("timing: {:>8.1} ms  {phase}", took.as_secs_f64() * 1000.0);
        }
        eprintln!(
            "timing: {:>8.1} ms  in all, from the start of the task",
            self.started.elapsed().as_secs_f64() * 1000.0
        );
    }
}

/// Connects every target. With one target its failure is the run's error (exit 2 for bad
/// credentials or region); with several, a failed target is reported and the others go on.
pub async fn connect_targets(
    aws_args: &aws::AwsArgs,
) -> Result<(Vec<aws::Target>, Vec<(aws::TargetSpec, anyhow::Error)>)> {
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
