//! `cargo xtask verify --task-definition FILE`: runs the placeholder under each container
//! definition through the Docker engine the way ECS runs a task, and says for each whether it
//! boots healthy: before a stack is deployed, not after it hangs.
//!
//! What ECS does, and what is done here: a pause container holds the task's private network
//! namespace (network `none`); the task metadata endpoint answers inside it before the container
//! starts (`ECS_CONTAINER_METADATA_URI_V4`, here on 127.0.0.1:51679 instead of 169.254.170.2); the
//! container joins that namespace with the definition's `entryPoint`, `command`, `environment`,
//! `user`, `readonlyRootFilesystem`, `workingDirectory` and `initProcessEnabled`, and its
//! `healthCheck` exactly as written (only the interval is shortened to 1 s, so a verdict takes
//! seconds); then a load-balancer GET on the container port and path, judged by the matcher.
//!
//! `task.rs` runs one definition as a task (the pause container, the placeholder, the sidecars
//! beside it); `metadata.rs` is what the stand-in task metadata and the verdicts say.

mod metadata;
mod task;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::json;

use crate::base::Usage;
use crate::base::image_ref;
use crate::base::platform::Platform;
use crate::clients::aws;
use crate::clients::engine::{self, Engine};
use crate::image::oci::{self, Recipe};
use crate::image::{self, Plan};
use crate::proof;
use crate::sources::from::{self, InFile};
use crate::sources::stack;
use crate::sources::taskdef::{self, Container, Matcher};
use crate::tasks::OutputFormat;

use metadata::stands_for_ecr;
use task::Task;

/// Where the stand-in metadata endpoint listens inside the task's namespace.
pub(super) const METADATA_PORT: u16 = 51679;
/// The health check interval verify uses, whatever the definition says.
pub(super) const CHECK_INTERVAL: Duration = Duration::from_secs(1);
pub(super) const ELB_USER_AGENT: &str = "ELB-HealthChecker/2.0";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// ECS task definition JSON (RegisterTaskDefinition input or DescribeTaskDefinition output),
    /// container definitions, or one container definition per line; or a registered task
    /// definition (`FAMILY`, `FAMILY:REVISION` or its ARN).
    #[arg(long = "task-definition", value_name = "FILE|FAMILY[:REV]|ARN", required_unless_present = "from", num_args = 1..)]
    pub task_definitions: Vec<PathBuf>,
    /// The target group that checks a container (name or ARN): its path, port and matcher are
    /// what the load balancer's GET must meet, for the container mapping its port or `CONTAINER=GROUP`.
    #[arg(long = "target-group", value_name = "[CONTAINER=]NAME|ARN", num_args = 1..)]
    pub target_groups: Vec<String>,
    /// The stack the containers are in (a CloudFormation template, a CDK cdk.out directory, a
    /// `terraform show -json` plan, a deployed stack `stack:NAME`, a cluster's services
    /// `ecs:CLUSTER[/SERVICE,...]`): its ECR containers, each with its target group's check.
    #[arg(long, value_name = "SOURCE", num_args = 1..)]
    pub from: Vec<String>,
    /// Run each container under the image its ECR repository holds at the tag its definition
    /// names (what publish pushed, with what it baked in), pulled with ECR credentials from the
    /// AWS chain.
    #[arg(long, conflicts_with = "image")]
    pub published: bool,
    /// The load balancer's health check path [default: the file's, else /].
    #[arg(long, value_name = "PATH")]
    pub health_path: Option<String>,
    /// The target group's success codes, e.g. 200, 200-299 or 200,302 [default: the file's, else 200].
    #[arg(long, value_name = "CODES")]
    pub matcher: Option<String>,
    /// The image to run, e.g. a published repository's `:latest`, pulled (with ECR credentials from
    /// the AWS chain where needed) when the engine lacks it [default: the placeholder `publish
    /// --containers` would push, built now and loaded as ecs-minimal-container:ARCH].
    #[arg(long, value_name = "REFERENCE")]
    pub image: Option<String>,
    /// Serve task metadata without `Ports`, as current ECS agents do in awsvpc mode and Fargate
    /// does: proves the image boots on `PORT` and the ports baked in at publish alone. By default
    /// `Ports` lists the definition's mappings, as older EC2 agents and the ECS docs have it.
    #[arg(long)]
    pub no_metadata_ports: bool,
    /// Containers verified at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub concurrency: u16,
    #[command(flatten)]
    pub aws: aws::AwsArgs,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Serialize, Debug)]
pub struct Verdict {
    /// Unique in the run: the container's name, qualified by its task definition where another
    /// container has the same name (`Api/web`).
    pub container: String,
    /// The task definition it is in, where the file names one.
    pub task: Option<String>,
    pub healthy: bool,
    pub detail: String,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    if let Some(path) = &args.health_path
        && !path.starts_with('/')
    {
        bail!(Usage(format!("--health-path {path:?}: give an absolute path such as /health")));
    }
    let matcher = args.matcher.as_deref().map(Matcher::parse).transpose().map_err(|e| Usage(e.to_string()))?;
    let registered = from::registered(&args.task_definitions);
    let asked = from::Asked { from: &args.from, registered, target_groups: &args.target_groups, lookup: Vec::new() };
    let mut loaded = from::load_asked(&asked, &args.aws, None).await?;
    let mut files = from::definition_files(&args.task_definitions)?;
    from::attach_groups(&mut files, &mut loaded.found, &loaded.groups)?;
    let mut containers = Vec::new();
    for InFile { file, container, .. } in files {
        {
            // In a task of several containers, one from another registry (a log router, an agent,
            // a proxy) is not the placeholder's to stand in for: it runs beside the others.
            match container.image.as_deref() {
                Some(image) if !container.sidecars.is_empty() && !stands_for_ecr(image) => {
                    eprintln!(
                        "{}: container {} uses {image}: {}, so it runs beside the others as a sidecar",
                        file.display(),
                        container.name,
                        image_ref::not_ours(image)
                    );
                }
                _ => containers.push(container),
            }
        }
    }
    // Each container's repository and the tag its service pulls.
    let reference = |repository: Option<String>, image: &str| {
        let tag = match image_ref::image_tag(image) {
            image_ref::TagRef::Tag(tag) => tag,
            _ => "latest".to_owned(),
        };
        repository.map(|r| (r, tag))
    };
    let mut repositories: Vec<Option<(String, String)>> = containers
        .iter()
        .map(|c| {
            reference(c.image.as_deref().and_then(image_ref::ecr_repository), c.image.as_deref().unwrap_or_default())
        })
        .collect();
    for found in loaded.found {
        match &found.kind {
            stack::Kind::Ecr(name) | stack::Kind::Deployed { repository: name, .. } => {
                repositories.push(reference(Some(name.clone()), &found.image))
            }
            // The definition can still be run under the placeholder; only nothing is published there.
            stack::Kind::Owned { .. } if !args.published => repositories.push(None),
            _ => {
                eprintln!("{}", found.left_alone().unwrap_or_default());
                continue;
            }
        }
        containers.push(found.container);
    }
    let engine = engine::connect().await?;
    let published = if args.published {
        let (_, registry) = args.aws.connect().await?;
        let mut images = Vec::new();
        for (container, repository) in containers.iter().zip(&repositories) {
            let Some((repository, tag)) = repository else {
                bail!(Usage(format!(
                    "--published: container {} has no ECR image to take the published placeholder from",
                    container.name
                )));
            };
            let image = format!("{}/{repository}:{tag}", registry.host());
            if !images.contains(&image) {
                ensure_image(&engine.docker, &image, &args.aws).await?;
            }
            images.push(image);
        }
        Some(images)
    } else {
        None
    };
    let image = match &args.image {
        _ if published.is_some() => "what each repository holds at the tag its definition names".to_owned(),
        Some(image) => {
            ensure_image(&engine.docker, image, &args.aws).await?;
            image.clone()
        }
        None => {
            let plan = Plan::project(vec![Platform::native()]);
            let set = oci::build(&image::sources(&plan)?, &Recipe::default())?;
            proof::load(&engine, &set, &plan).await?;
            // Run by its ID: another run may be loading another recipe under the same tag.
            set.images[0].config.digest.clone()
        }
    };

    let checks = Checks {
        health_path: args.health_path.clone(),
        matcher,
        metadata_ports: !args.no_metadata_ports,
        published: args.published,
    };
    let images = published.unwrap_or_else(|| vec![image.clone(); containers.len()]);
    // CDK names every service's container `web`: each line must say which.
    let names = taskdef::unique_names(&containers);
    let verdicts: Vec<Verdict> = futures_util::stream::iter(containers.iter().zip(&images).zip(names).enumerate())
        .map(|(n, ((container, image), name))| verify_one(&engine, image, container, name, &checks, n))
        .buffered(args.concurrency as usize)
        .collect()
        .await;
    match args.output {
        OutputFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&json!({ "image": image, "containers": verdicts }))?)
        }
        OutputFormat::Text => {
            for verdict in &verdicts {
                let word = if verdict.healthy { "healthy" } else { "NOT HEALTHY" };
                println!("{}: {word}: {}", verdict.container, verdict.detail);
            }
            let healthy = verdicts.iter().filter(|v| v.healthy).count();
            println!("{healthy} of {} container(s) came up healthy under {image}", verdicts.len());
        }
    }
    Ok(if verdicts.iter().all(|v| v.healthy) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The load balancer check as flags give it, before each file's own.
pub(super) struct Checks {
    health_path: Option<String>,
    matcher: Option<Matcher>,
    /// Whether the stand-in task metadata lists the container's ports.
    metadata_ports: bool,
    /// Whether each container runs under what publish baked for it, rather than one image for all.
    published: bool,
}

/// Makes sure the engine has `image`. A reference that names a registry is pulled every time (with
/// the ECR registry's credentials where an anonymous pull is refused), as `:latest` moves on each
/// publish; a local copy is used only when the pull fails.
async fn ensure_image(docker: &Docker, image: &str, aws_args: &aws::AwsArgs) -> Result<()> {
    let (from, tag) = match image.rsplit_once(':') {
        Some((from, tag)) if !tag.contains('/') => (from, tag),
        _ => (image, "latest"),
    };
    let remote =
        from.contains('/') && from.split('/').next().is_some_and(|host| host.contains('.') || host.contains(':'));
    let local = docker.inspect_image(image).await.is_ok();
    if !remote {
        if local {
            return Ok(());
        }
        bail!(
            "the engine has no image {image}: run `cargo xtask image` first, or pass --image REGISTRY/REPOSITORY:TAG"
        );
    }
    let pull = |credentials| {
        docker
            .create_image(Some(CreateImageOptionsBuilder::new().from_image(from).tag(tag).build()), None, credentials)
            .try_collect::<Vec<_>>()
    };
    let Err(anonymous) = pull(None).await else { return Ok(()) };
    let with_credentials = match aws_args.connect().await {
        Ok((_, registry)) => pull(Some(registry.docker_credentials())).await.map(|_| ()).map_err(|e| anyhow!("{e}")),
        Err(e) => Err(e.context(format!("anonymous pull refused ({anonymous})"))),
    };
    match with_credentials {
        Ok(()) => Ok(()),
        Err(e) if local => {
            eprintln!("warning: cannot pull {image} ({e:#}); verifying the engine's older copy");
            Ok(())
        }
        Err(e) => Err(e.context(format!("pulling {image}"))),
    }
}

async fn verify_one(
    engine: &Engine,
    image: &str,
    container: &Container,
    name: String,
    checks: &Checks,
    n: usize,
) -> Verdict {
    let mut run = Task::new(engine, image, container, n);
    let result = run.verify(checks).await;
    run.remove().await;
    match result {
        Ok(detail) => Verdict { container: name, task: container.task.clone(), healthy: true, detail },
        Err(why) => {
            Verdict { container: name, task: container.task.clone(), healthy: false, detail: format!("{why:#}") }
        }
    }
}
