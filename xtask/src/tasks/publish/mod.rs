//! `cargo xtask publish --containers a,b`: provision each ECR repository, then push the placeholder
//! at `:latest` and the tags the definitions name (a manifest list over every platform), never over
//! a real image. The flow is one value per stage, each from a file of its own: what was asked
//! (`request.rs`), the plan (`plan.rs`: sources read, repositories, recipes, tags), what was read
//! (`look.rs`, while `build.rs` builds the images), what is to be done (`look.rs` again, against
//! the images), what was done (`push.rs`, or the dry run), and the report (`report.rs`).

mod build;
mod look;
mod place;
mod plan;
mod push;
mod report;
mod request;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::clients::aws;
use crate::clients::follow;
use crate::clients::replicate;
pub use crate::tasks::OutputFormat;
use plan::Planned;
use report::Done;
use request::Request;

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
    let request = Request::new(&args)?;
    let planned = plan::plan(&args, &request, &mut timings).await?;
    // A target that cannot be reached is reported at once, not after the build.
    let (read, built) = tokio::try_join!(
        look::read(&args.aws, &request, &planned.targets),
        build::build(request.platforms.clone(), &planned.targets)
    )?;
    timings.add("connect (credentials, GetAuthorizationToken)", read.connected);
    timings.add("read each repository (describe, lifecycle, tag digests)", read.looked);
    timings.add("server build (cargo's check)", built.cargo);
    timings.add("layers, configs and manifests (in-process)", built.layers);
    built.say(&planned.targets, &request.platforms);

    let started = Instant::now();
    let todo = look::resolve_all(read, &planned.targets, &built, request.concurrency).await;
    timings.add("read tags holding something else (labels)", started.elapsed());
    let mut done = match request.dry_run {
        true => look::dry_run(todo, &planned.targets, request.force),
        false => push::act_all(todo, &planned, &built, &request, &mut timings).await?,
    };
    done.unreachable_rows();
    let replication = replicate(&done, &planned, &request).await;
    report::report(&done, &replication, &built, &planned, &request)?;
    let failed = done.failed(&replication);
    timings.print();
    if let (Some(timeout), false, false) = (request.wait, request.dry_run, failed) {
        let config = &done.destinations.first().context("no target to follow the services in")?.aws.config;
        return Ok(match follow::follow(&planned.services, config, timeout, &done.interrupted).await? {
            follow::Ended::Steady => ExitCode::SUCCESS,
            follow::Ended::NotSteady => ExitCode::FAILURE,
            follow::Ended::Interrupted => ExitCode::from(130),
        });
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// `--replicate`: ECR's own fan-out from the first target to the others, for the repositories of
/// the plan (read-only in a dry run).
async fn replicate(done: &Done, planned: &Planned, request: &Request) -> Vec<replicate::Change> {
    if !request.replicate {
        return Vec::new();
    }
    let others: Vec<&aws::Target> = done.destinations.iter().skip(1).collect();
    let names: Vec<String> = planned.targets.iter().map(|t| t.name.clone()).collect();
    replicate::configure(&done.destinations[0], &others, &names, &request.settings, request.dry_run).await
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
