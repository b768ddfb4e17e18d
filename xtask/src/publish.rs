//! `cargo xtask publish --containers a,b`: provision each ECR repository, then push the placeholder
//! as `:latest` (a manifest list over every platform), never over a real image.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{PushImageOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder};
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::ecr::{self, Encryption, Settings};
use crate::image::{self, Plan, Proven};
use crate::platform::{self, Platform};
use crate::registry::{Latest, Manifest, Registry, MANIFEST_V2};
use crate::{aws, engine, names, Usage};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container names, comma-separated: one ECR repository each.
    #[arg(long, env = "ECS_PLACEHOLDER_CONTAINERS", value_name = "NAMES")]
    pub containers: String,
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
    pub repository_uri: Option<String>,
    pub action: Action,
    pub digest: Option<String>,
    pub reason: Option<String>,
    pub warnings: Vec<String>,
}

impl Outcome {
    /// Failed until a step says otherwise, so an early return can never report success.
    fn new(container: &str) -> Outcome {
        Outcome {
            container: container.to_owned(),
            repository_uri: None,
            action: Action::Failed,
            digest: None,
            reason: None,
            warnings: Vec::new(),
        }
    }
}

/// Splits the comma-separated list: spaces trimmed, empty entries and duplicates dropped, and
/// every name checked before anything is changed.
pub fn parse_containers(list: &str) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        names::check_repository(name).map_err(|e| Usage(format!("{e}")))?;
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    if names.is_empty() {
        bail!(Usage("no container names: pass --containers my-svc-staging,my-svc-prod".into()));
    }
    Ok(names)
}

struct Job {
    settings: Settings,
    force: bool,
    registry: Registry,
    docker: bollard::Docker,
    images: Vec<Proven>,
    interrupted: Arc<AtomicBool>,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let containers = parse_containers(&args.containers)?;
    let platforms = platform::parse_list(&args.platform).map_err(|e| Usage(e.to_string()))?;
    let encryption = match (args.encryption, &args.kms_key) {
        (EncryptionArg::Aes256, Some(_)) => bail!(Usage("--kms-key needs --encryption kms, not aes256".into())),
        (EncryptionArg::Aes256, None) => Encryption::Aes256,
        (EncryptionArg::Kms, key) => Encryption::Kms(key.clone()),
    };
    args.aws.check()?;
    let settings = Settings { encryption, scan_on_push: args.scan_on_push, keep: args.keep };
    let (aws, registry) = args.aws.connect().await?;

    let outcomes = if args.dry_run {
        futures_util::stream::iter(&containers)
            .map(|name| plan_one(&aws.ecr, &registry, name, args.force))
            .buffered(args.concurrency as usize)
            .collect::<Vec<_>>()
            .await
    } else {
        // Everything local first: a build or smoke-test failure changes nothing in AWS.
        let engine = engine::connect().await?;
        let plan = Plan::project(platforms, true);
        let images = image::build_and_prove(&engine, &plan).await?;
        let job = Job { settings, force: args.force, registry, docker: engine.docker, images, interrupted: on_interrupt() };
        futures_util::stream::iter(&containers)
            .map(|name| publish_one(&aws.ecr, &job, name))
            .buffered(args.concurrency as usize)
            .collect::<Vec<_>>()
            .await
    };

    match args.output {
        OutputFormat::Json => print_json(&outcomes, &aws.region)?,
        OutputFormat::Text => print_text(&outcomes, args.dry_run),
    }
    let failed = outcomes.iter().any(|o| o.action == Action::Failed);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The first Ctrl-C lets the steps in progress finish (a repository always gets its lifecycle
/// policy, a manifest list is put whole or not at all) and starts nothing new; a second aborts.
fn on_interrupt() -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
            eprintln!("interrupted: finishing the steps in progress; Ctrl-C again to abort at once");
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    interrupted
}

async fn publish_one(ecr_client: &aws_sdk_ecr::Client, job: &Job, name: &str) -> Outcome {
    let mut outcome = Outcome::new(name);
    if let Err(error) = publish_steps(ecr_client, job, name, &mut outcome).await {
        outcome.action = Action::Failed;
        outcome.reason = Some(format!("{error:#}"));
        eprintln!("[{name}] failed: {error:#}");
    }
    outcome
}

async fn publish_steps(ecr_client: &aws_sdk_ecr::Client, job: &Job, name: &str, outcome: &mut Outcome) -> Result<()> {
    if job.interrupted.load(Ordering::SeqCst) {
        bail!("interrupted before it started");
    }
    let repository = ecr::ensure(ecr_client, name, &job.settings).await?;
    eprintln!(
        "[{name}] repository {} ({} lifecycle: keep {})",
        if repository.created { "created" } else { "exists" },
        repository.uri,
        job.settings.keep
    );
    for warning in &repository.warnings {
        eprintln!("[{name}] warning: {warning}");
    }
    outcome.repository_uri = Some(repository.uri.clone());
    outcome.warnings = repository.warnings;

    let ours: BTreeMap<String, String> =
        job.images.iter().map(|i| (i.built.platform.arch().to_owned(), i.built.id.clone())).collect();
    match job.registry.latest(name).await.context("reading :latest")? {
        Latest::Placeholder { digest, configs } if configs == ours => {
            eprintln!("[{name}] :latest is already this placeholder");
            outcome.action = Action::UpToDate;
            outcome.digest = Some(digest);
            return Ok(());
        }
        Latest::Other { digest, .. } if !job.force => {
            let why = format!(":latest ({digest}) is not a placeholder, so it was left untouched; --force replaces it");
            eprintln!("[{name}] warning: skipped: {why}");
            outcome.action = Action::Skipped;
            outcome.digest = Some(digest);
            outcome.reason = Some(why);
            return Ok(());
        }
        _ => {}
    }

    let mut children = Vec::new();
    for image in &job.images {
        if job.interrupted.load(Ordering::SeqCst) {
            bail!("interrupted before :latest was changed");
        }
        eprintln!("[{name}] pushing {}", image.built.platform);
        children.push((image.built.platform, push_platform(job, name, image).await?));
    }
    if job.interrupted.load(Ordering::SeqCst) {
        bail!("interrupted before :latest was changed");
    }
    let digest = job.registry.put_manifest_list(name, "latest", &children).await?;
    eprintln!("[{name}] :latest is now {digest}");
    outcome.action = if repository.created { Action::Created } else { Action::Updated };
    outcome.digest = Some(digest);
    Ok(())
}

/// The tag each platform's image is pushed under: the Docker engine can only push by tag.
pub fn platform_tag(platform: Platform) -> String {
    format!("placeholder-{}", platform.arch())
}

/// Pushes one platform's image through the engine, with the ECR credentials passed on this
/// request only (nothing in ~/.docker), and returns the manifest the registry now holds for it.
async fn push_platform(job: &Job, name: &str, image: &Proven) -> Result<Manifest> {
    let platform = image.built.platform;
    let repository = format!("{}/{name}", job.registry.host());
    let tag = platform_tag(platform);
    job.docker
        .tag_image(&image.built.id, Some(TagImageOptionsBuilder::new().repo(&repository).tag(&tag).build()))
        .await
        .map_err(|e| engine::call_failed(&format!("tagging the {platform} image"), e))?;
    let credentials = DockerCredentials {
        username: Some(job.registry.credentials().user.clone()),
        password: Some(job.registry.credentials().password.clone()),
        serveraddress: Some(job.registry.host().to_owned()),
        ..Default::default()
    };
    let pushed = job
        .docker
        .push_image(&repository, Some(PushImageOptionsBuilder::new().tag(&tag).build()), Some(credentials))
        .try_collect::<Vec<_>>()
        .await;
    // The local tag was only a vehicle for the push; remove it unless it has become the image's
    // last tag (a build from other sources moved the project tag meanwhile), as removing the last
    // tag would delete an image another run may still be pushing.
    let tags = job.docker.inspect_image(&image.built.id).await.ok().and_then(|i| i.repo_tags).unwrap_or_default();
    if tags.len() > 1 {
        let _ = job
            .docker
            .remove_image(&format!("{repository}:{tag}"), Some(RemoveImageOptionsBuilder::new().noprune(true).build()), None)
            .await;
    }
    pushed.map_err(|e| engine::call_failed(&format!("pushing the {platform} image"), e))?;

    let manifest = job
        .registry
        .manifest(name, &tag)
        .await?
        .with_context(|| format!("the registry has no {name}:{tag} after the push"))?;
    if manifest.media_type != MANIFEST_V2 {
        bail!("the engine pushed a {} manifest for {platform}; expected {MANIFEST_V2}", manifest.media_type);
    }
    if manifest.json["config"]["digest"].as_str() != Some(image.built.id.as_str()) {
        bail!("{name}:{tag} changed under us while pushing (another publish running?)");
    }
    Ok(manifest)
}

/// `--dry-run`: what would happen, from read-only calls.
async fn plan_one(ecr_client: &aws_sdk_ecr::Client, registry: &Registry, name: &str, force: bool) -> Outcome {
    let mut outcome = Outcome::new(name);
    let planned: Result<()> = async {
        match ecr::describe(ecr_client, name).await? {
            None => {
                outcome.action = Action::WouldCreate;
                outcome.reason = Some("repository missing: would create it, put the lifecycle policy, push".into());
            }
            Some(existing) => {
                outcome.repository_uri = existing.repository_uri().map(str::to_owned);
                match registry.latest(name).await? {
                    Latest::Other { digest, .. } if !force => {
                        outcome.action = Action::WouldSkip;
                        outcome.reason = Some(format!(":latest ({digest}) is not a placeholder"));
                        outcome.digest = Some(digest);
                    }
                    latest => {
                        outcome.action = Action::WouldUpdate;
                        outcome.reason = Some(
                            match latest {
                                Latest::Missing => "no :latest: would push",
                                Latest::Placeholder { .. } => "a placeholder is :latest: would push if this build differs",
                                Latest::Other { .. } => ":latest is a real image: --force would replace it",
                            }
                            .into(),
                        );
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(error) = planned {
        outcome.action = Action::Failed;
        outcome.reason = Some(format!("{error:#}"));
    }
    outcome
}

pub const HEALTH_CHECK: &str = r#"HealthCheck:
  Command: ["CMD", "/server", "--probe"]
  Interval: 10
  Timeout: 5
  Retries: 3
  StartPeriod: 5"#;

pub const DIGEST_PINNING: &str = "ECS resolves :latest to a digest when a deployment starts: once the pipeline \
pushes the real image, the service needs a new deployment (e.g. aws ecs update-service --force-new-deployment).";

fn print_text(outcomes: &[Outcome], dry_run: bool) {
    let width = outcomes.iter().map(|o| o.container.len()).max().unwrap_or(9).max(9);
    let uri_width = outcomes.iter().filter_map(|o| o.repository_uri.as_ref().map(String::len)).max().unwrap_or(14).max(14);
    println!("{:<width$}  {:<uri_width$}  {:<12}  DIGEST", "CONTAINER", "REPOSITORY URI", "ACTION");
    for o in outcomes {
        println!(
            "{:<width$}  {:<uri_width$}  {:<12}  {}",
            o.container,
            o.repository_uri.as_deref().unwrap_or("-"),
            o.action.text(),
            o.digest.as_deref().unwrap_or("-")
        );
    }
    for o in outcomes.iter().filter(|o| o.reason.is_some()) {
        println!("{}: {}", o.container, o.reason.as_deref().unwrap_or(""));
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
    println!("\nIn each task definition's container definition:");
    for o in ready {
        println!("  Image: {}:latest", o.repository_uri.as_deref().unwrap_or(&o.container));
    }
    println!("{}", HEALTH_CHECK.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n"));
    println!("{DIGEST_PINNING}");
}

fn print_json(outcomes: &[Outcome], region: &str) -> Result<()> {
    let document = serde_json::json!({
        "region": region,
        "containers": outcomes,
        "health_check": {
            "Command": ["CMD", "/server", "--probe"],
            "Interval": 10, "Timeout": 5, "Retries": 3, "StartPeriod": 5
        },
        "note": DIGEST_PINNING,
    });
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
