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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HealthConfig, HealthStatusEnum, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, CreateImageOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder};
use bollard::Docker;
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::json;

use crate::clients::engine::{self, Engine};
use crate::image::{self, Plan};
use crate::proof;
use crate::image::oci::{self, Recipe};
use crate::base::platform::Platform;
use crate::tasks::OutputFormat;
use crate::sources::taskdef::{self, Container, Matcher, Sidecar};
use server::sidecars::Neighbour;
use crate::clients::aws;
use crate::sources::from;
use crate::sources::stack;
use crate::base::Usage;

/// Where the stand-in metadata endpoint listens inside the task's namespace.
const METADATA_PORT: u16 = 51679;
/// The health check interval verify uses, whatever the definition says.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
const ELB_USER_AGENT: &str = "ELB-HealthChecker/2.0";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// ECS task definition JSON (RegisterTaskDefinition input or DescribeTaskDefinition output),
    /// container definitions, or one container definition per line.
    #[arg(long = "task-definition", value_name = "FILE", required_unless_present = "from", num_args = 1..)]
    pub task_definitions: Vec<PathBuf>,
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
        && !path.starts_with('/') {
            bail!(Usage(format!("--health-path {path:?}: give an absolute path such as /health")));
        }
    let matcher = args.matcher.as_deref().map(Matcher::parse).transpose().map_err(|e| Usage(e.to_string()))?;
    let mut containers = Vec::new();
    for file in &args.task_definitions {
        for container in taskdef::load(file).map_err(|e| Usage(format!("{e:#}")))? {
            // In a task of several containers, one from another registry (a log router, an agent,
            // a proxy) is not the placeholder's to stand in for: it runs beside the others.
            match container.image.as_deref() {
                Some(image) if !container.sidecars.is_empty() && !stands_for_ecr(image) => {
                    eprintln!("{}: container {} uses {image}: not an ECR image, so it runs beside the others as a sidecar", file.display(), container.name);
                }
                _ => containers.push(container),
            }
        }
    }
    // Each container's repository and the tag its service pulls.
    let reference = |repository: Option<String>, image: &str| {
        let tag = match taskdef::image_tag(image) {
            taskdef::TagRef::Tag(tag) => tag,
            _ => "latest".to_owned(),
        };
        repository.map(|r| (r, tag))
    };
    let mut repositories: Vec<Option<(String, String)>> = containers
        .iter()
        .map(|c| reference(c.image.as_deref().and_then(taskdef::ecr_repository), c.image.as_deref().unwrap_or_default()))
        .collect();
    for found in from::load(&args.from, &args.aws).await?.found {
        match &found.kind {
            stack::Kind::Ecr(name) | stack::Kind::Deployed { repository: name, .. } => repositories.push(reference(Some(name.clone()), &found.image)),
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
                bail!(Usage(format!("--published: container {} has no ECR image to take the published placeholder from", container.name)));
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
        _ if published.is_some() => "each repository's :latest".to_owned(),
        Some(image) => {
            ensure_image(&engine.docker, image, &args.aws).await?;
            image.clone()
        }
        None => {
            let plan = Plan::project(vec![Platform::native()]);
            let set = oci::build(&image::sources(&plan)?, &Recipe::default())?;
            proof::load(&engine, &set, &plan).await?;
            plan.tag_for(Platform::native())
        }
    };

    let checks = Checks { health_path: args.health_path.clone(), matcher, metadata_ports: !args.no_metadata_ports, published: args.published };
    let images = published.unwrap_or_else(|| vec![image.clone(); containers.len()]);
    // CDK names every service's container `web`: each line must say which.
    let names = taskdef::unique_names(&containers);
    let verdicts: Vec<Verdict> = futures_util::stream::iter(containers.iter().zip(&images).zip(names).enumerate())
        .map(|(n, ((container, image), name))| verify_one(&engine, image, container, name, &checks, n))
        .buffered(args.concurrency as usize)
        .collect()
        .await;
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&json!({ "image": image, "containers": verdicts }))?),
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
struct Checks {
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
    let remote = from.contains('/') && from.split('/').next().is_some_and(|host| host.contains('.') || host.contains(':'));
    let local = docker.inspect_image(image).await.is_ok();
    if !remote {
        if local {
            return Ok(());
        }
        bail!("the engine has no image {image}: run `cargo xtask image` first, or pass --image REGISTRY/REPOSITORY:TAG");
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

async fn verify_one(engine: &Engine, image: &str, container: &Container, name: String, checks: &Checks, n: usize) -> Verdict {
    let mut run = Task::new(engine, image, container, n);
    let result = run.verify(checks).await;
    run.remove().await;
    match result {
        Ok(detail) => Verdict { container: name, task: container.task.clone(), healthy: true, detail },
        Err(why) => Verdict { container: name, task: container.task.clone(), healthy: false, detail: format!("{why:#}") },
    }
}

/// One container definition run as a one-container task: the pause container and the container.
struct Task<'a> {
    docker: &'a Docker,
    image: &'a str,
    container: &'a Container,
    /// Names for the two Docker containers, unique to this run.
    prefix: String,
    pause: Option<String>,
    app: Option<String>,
    /// Stand-ins for the task's other containers: (sidecar, port, Docker container).
    sidecars: Vec<(String, u16, String)>,
}

impl<'a> Task<'a> {
    fn new(engine: &'a Engine, image: &'a str, container: &'a Container, n: usize) -> Task<'a> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let prefix = format!("ecs-verify-{}-{n}-{nanos}", std::process::id());
        Task { docker: &engine.docker, image, container, prefix, pause: None, app: None, sidecars: Vec::new() }
    }

    async fn verify(&mut self, checks: &Checks) -> Result<String> {
        let container = self.container;
        let pause = self.create_pause().await?;
        let app = self.create_app(&pause).await?;
        self.docker
            .upload_to_container(&pause, Some(UploadToContainerOptionsBuilder::new().path("/").build()), bollard::body_full(metadata_archive(container, &self.prefix, &app, self.image, checks.metadata_ports)?.into()))
            .await
            .context("putting the task metadata into the pause container")?;
        self.docker.start_container(&pause, None).await.context("starting the pause container")?;
        self.wait_for_metadata(&pause).await?;
        self.docker
            .start_container(&app, None)
            .await
            .map_err(|e| anyhow!("the container did not start: {}", engine_message(&e)))?;
        let started = Instant::now();
        let mut said = Vec::new();
        // Sidecars start when they start, often after the app (`dependsOn`): the worst case is
        // after the placeholder has taken every port it takes at start-up.
        if !container.sidecars.is_empty() {
            self.wait_for_start_up(&app).await?;
            self.start_sidecars(&pause).await?;
        }

        if let Some(check) = &container.health_check {
            let after = self.wait_healthy(&app, check).await?;
            said.push(format!("its health check {:?} passed after {:.1} s", check.command.join(" "), after.as_secs_f64()));
        }

        if !self.sidecars.is_empty() {
            said.push(self.sidecars_serve(&pause).await?);
        }

        let file_check = container.load_balancer.clone().unwrap_or_default();
        let path = checks.health_path.clone().or(file_check.path).unwrap_or_else(|| "/".to_owned());
        let matcher = match (&checks.matcher, &file_check.matcher) {
            (Some(m), _) => m.clone(),
            (None, Some(text)) => Matcher::parse(text).with_context(|| format!("the file's matcher for {}", container.name))?,
            (None, None) => Matcher::parse("200").expect("a valid matcher"),
        };
        match file_check.port.or(container.ports.first().copied()) {
            Some(port) => {
                let status = self.load_balancer_get(&pause, &app, port, &path, &matcher, checks).await?;
                said.push(format!("the load balancer's GET :{port}{path} got {status} (matcher {matcher})"));
            }
            None => said.push("no port to check from a load balancer".to_owned()),
        }

        // The main process must keep serving, not exit once a check has run.
        self.still_running(&app).await.with_context(|| format!("after {:.1} s", started.elapsed().as_secs_f64()))?;
        Ok(said.join("; "))
    }

    /// The placeholder itself serves the metadata documents, from files put in before it starts.
    async fn create_pause(&mut self) -> Result<String> {
        let config = ContainerCreateBody {
            image: Some(self.image.to_owned()),
            entrypoint: Some(vec!["/server".into()]),
            cmd: Some(vec!["--port".into(), METADATA_PORT.to_string(), "--root".into(), "/ecs-metadata".into()]),
            healthcheck: Some(HealthConfig { test: Some(vec!["NONE".into()]), ..Default::default() }),
            labels: Some(labels()),
            host_config: Some(HostConfig { network_mode: Some("none".into()), ..Default::default() }),
            ..Default::default()
        };
        let name = format!("{}-pause", self.prefix);
        let id = self
            .docker
            .create_container(Some(CreateContainerOptionsBuilder::new().name(&name).build()), config)
            .await
            .map_err(|e| engine::call_failed(&format!("creating the pause container from {}", self.image), e))?
            .id;
        self.pause = Some(id.clone());
        Ok(id)
    }

    async fn create_app(&mut self, pause: &str) -> Result<String> {
        let c = self.container;
        let mut env: Vec<String> = c.environment.iter().map(|(k, v)| format!("{k}={v}")).collect();
        // What the ECS agent adds to every container; the URI is only known once the container is.
        let metadata = format!("http://127.0.0.1:{METADATA_PORT}/v4/{}", self.prefix);
        env.push(format!("ECS_CONTAINER_METADATA_URI_V4={metadata}"));
        env.push(format!("ECS_CONTAINER_METADATA_URI={metadata}"));
        env.push("AWS_EXECUTION_ENV=AWS_ECS_FARGATE".to_owned());
        let healthcheck = match &c.health_check {
            Some(check) => {
                let kind = check.command.first().map(String::as_str);
                if !matches!(kind, Some("CMD" | "CMD-SHELL" | "NONE")) {
                    bail!("healthCheck.command must start with CMD or CMD-SHELL (ECS refuses {:?})", check.command);
                }
                let seconds = |s: u64| Some(Duration::from_secs(s).as_nanos() as i64);
                HealthConfig {
                    test: Some(check.command.clone()),
                    interval: Some(CHECK_INTERVAL.as_nanos() as i64),
                    timeout: seconds(check.timeout.unwrap_or(5)),
                    retries: Some(check.retries.unwrap_or(3) as i64),
                    start_period: seconds(check.start_period.unwrap_or(0)),
                    ..Default::default()
                }
            }
            // ECS runs no check but the definition's: the image's own HEALTHCHECK is not used.
            None => HealthConfig { test: Some(vec!["NONE".into()]), ..Default::default() },
        };
        let config = ContainerCreateBody {
            image: Some(self.image.to_owned()),
            entrypoint: c.entry_point.clone(),
            cmd: c.command.clone(),
            env: Some(env),
            user: c.user.clone(),
            working_dir: c.working_directory.clone(),
            healthcheck: Some(healthcheck),
            labels: Some(labels()),
            host_config: Some(HostConfig {
                network_mode: Some(format!("container:{pause}")),
                readonly_rootfs: Some(c.readonly_root),
                init: Some(c.init_process),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!("{}-app", self.prefix);
        let id = self
            .docker
            .create_container(Some(CreateContainerOptionsBuilder::new().name(&name).build()), config)
            .await
            .map_err(|e| anyhow!("the container could not be created: {}", engine_message(&e)))?
            .id;
        self.app = Some(id.clone());
        Ok(id)
    }

    async fn wait_for_metadata(&self, pause: &str) -> Result<()> {
        let url = format!("http://127.0.0.1:{METADATA_PORT}/v4/{}/task", self.prefix);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (code, output) = exec(self.docker, pause, &["curl", "-sf", "-o", "/dev/null", &url]).await?;
            if code == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the stand-in metadata endpoint did not answer in the pause container: {}", output.trim());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_healthy(&self, app: &str, check: &taskdef::HealthCheck) -> Result<Duration> {
        let started = Instant::now();
        let timeout = Duration::from_secs(check.timeout.unwrap_or(5));
        let retries = check.retries.unwrap_or(3) as u32;
        let limit = Duration::from_secs(check.start_period.unwrap_or(0)) + (CHECK_INTERVAL + timeout) * (retries + 1) + Duration::from_secs(10);
        loop {
            let state = self.docker.inspect_container(app, None).await.context("inspecting the container")?.state.unwrap_or_default();
            let health = state.health.unwrap_or_default();
            let last = health
                .log
                .as_ref()
                .and_then(|log| log.last())
                .map(|r| format!("exit {} {:?}", r.exit_code.unwrap_or(-1), r.output.as_deref().unwrap_or("").trim()))
                .unwrap_or_else(|| "none ran".to_owned());
            match health.status {
                Some(HealthStatusEnum::HEALTHY) => return Ok(started.elapsed()),
                _ if state.running == Some(false) => {
                    bail!("the container exited with code {} before its health check passed; {}", state.exit_code.unwrap_or(-1), self.log_tail(app).await)
                }
                Some(HealthStatusEnum::UNHEALTHY) => bail!("its health check {:?} failed: last check {last}", check.command.join(" ")),
                _ if started.elapsed() > limit => bail!("its health check {:?} did not pass within {limit:?}: last check {last}", check.command.join(" ")),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Waits for the placeholder's start-up line: by then it listens wherever it listens at first.
    async fn wait_for_start_up(&self, app: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log_tail(app).await.contains(" listening on ") {
            self.still_running(app).await?;
            if Instant::now() > deadline {
                bail!("the container printed no start-up line within 10 s; {}", self.log_tail(app).await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// One stand-in per port of each other container of the task, in its network namespace: the
    /// placeholder binary serving exactly that port (`--port` exits when it cannot bind), as the
    /// sidecar's own program would. Ports are the sidecar's mappings, or where none are mapped
    /// (a FireLens log router) the ports its image is known to open.
    async fn start_sidecars(&mut self, pause: &str) -> Result<()> {
        for sidecar in &self.container.sidecars {
            for port in sidecar_ports(sidecar) {
                let config = ContainerCreateBody {
                    image: Some(self.image.to_owned()),
                    entrypoint: Some(vec!["/server".into()]),
                    cmd: Some(vec!["--port".into(), port.to_string()]),
                    healthcheck: Some(HealthConfig { test: Some(vec!["NONE".into()]), ..Default::default() }),
                    labels: Some(labels()),
                    host_config: Some(HostConfig { network_mode: Some(format!("container:{pause}")), ..Default::default() }),
                    ..Default::default()
                };
                let name = format!("{}-sidecar-{}", self.prefix, self.sidecars.len());
                let id = self
                    .docker
                    .create_container(Some(CreateContainerOptionsBuilder::new().name(&name).build()), config)
                    .await
                    .map_err(|e| engine::call_failed("creating a sidecar's stand-in", e))?
                    .id;
                self.sidecars.push((sidecar.name.clone(), port, id.clone()));
                self.docker.start_container(&id, None).await.map_err(|e| engine::call_failed("starting a sidecar's stand-in", e))?;
            }
        }
        Ok(())
    }

    /// Every sidecar stand-in still runs and answers on its port: the placeholder left it free.
    async fn sidecars_serve(&self, pause: &str) -> Result<String> {
        let mut serving = Vec::new();
        for (name, port, id) in &self.sidecars {
            let url = format!("http://127.0.0.1:{port}/healthcheck.html");
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let state = self.docker.inspect_container(id, None).await.context("inspecting a sidecar")?.state.unwrap_or_default();
                if state.running != Some(true) {
                    bail!("sidecar {name} could not listen on its port {port}, so it exited (code {}): {}", state.exit_code.unwrap_or(-1), self.log_tail(id).await);
                }
                let (code, _) = exec(self.docker, pause, &["curl", "-sf", "-o", "/dev/null", "-m", "2", &url]).await?;
                if code == 0 {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("sidecar {name} does not answer on its port {port}: {}", self.log_tail(id).await);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            serving.push(format!("{name} :{port}"));
        }
        Ok(format!("sidecars started after it serve on their ports ({})", serving.join(", ")))
    }

    /// A GET as the load balancer sends it, from inside the task's namespace, until it answers.
    async fn load_balancer_get(&self, pause: &str, app: &str, port: u16, path: &str, matcher: &Matcher, checks: &Checks) -> Result<u16> {
        let url = format!("http://127.0.0.1:{port}{path}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, output) = exec(self.docker, pause, &["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-A", ELB_USER_AGENT, "-m", "5", &url]).await?;
            let status = output.trim().parse::<u16>().unwrap_or(0);
            if status != 0 && matcher.accepts(status) {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let why = if status == 0 { format!("no answer ({})", output.trim()) } else { format!("{status}") };
                let fix = fix_for(self.container, port, status, matcher, checks);
                bail!("the load balancer's GET :{port}{path} got {why}, and the matcher is {matcher}; {}{fix}", self.log_tail(app).await);
            }
            self.still_running(app).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn still_running(&self, app: &str) -> Result<()> {
        let state = self.docker.inspect_container(app, None).await.context("inspecting the container")?.state.unwrap_or_default();
        if state.running != Some(true) {
            bail!("the container exited with code {}; {}", state.exit_code.unwrap_or(-1), self.log_tail(app).await);
        }
        Ok(())
    }

    async fn log_tail(&self, container: &str) -> String {
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).tail("5").build();
        match self.docker.logs(container, Some(options)).try_collect::<Vec<_>>().await {
            Ok(chunks) => {
                let text: String = chunks.iter().map(|c| c.to_string()).collect();
                format!("its log: {:?}", text.trim())
            }
            Err(e) => format!("(no log: {e})"),
        }
    }

    async fn remove(&self) {
        let sidecars = self.sidecars.iter().map(|(_, _, id)| id);
        for id in sidecars.chain([&self.app, &self.pause].into_iter().flatten()) {
            let _ = self.docker.remove_container(id, Some(RemoveContainerOptionsBuilder::new().force(true).build())).await;
        }
    }
}

fn labels() -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([("ecs-minimal-container.verify".to_owned(), "true".to_owned())])
}

/// The engine's own words for a refused create or start (e.g. a missing entry point).
fn engine_message(error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Runs `command` in `container` and returns its exit code and output.
async fn exec(docker: &Docker, container: &str, command: &[&str]) -> Result<(i64, String)> {
    let created = docker
        .create_exec(
            container,
            CreateExecOptions { cmd: Some(command.to_vec()), attach_stdout: Some(true), attach_stderr: Some(true), ..Default::default() },
        )
        .await
        .map_err(|e| engine::call_failed("running a check in the task", e))?;
    let mut output = String::new();
    if let StartExecResults::Attached { output: mut stream, .. } =
        docker.start_exec(&created.id, None).await.map_err(|e| engine::call_failed("running a check in the task", e))?
    {
        while let Some(Ok(chunk)) = stream.next().await {
            output.push_str(&chunk.to_string());
        }
    }
    let code = docker.inspect_exec(&created.id).await.ok().and_then(|i| i.exit_code).unwrap_or(-1);
    Ok((code, output))
}

/// Whether an image is one publish fills: an ECR repository, or a template that stands for one.
fn stands_for_ecr(image: &str) -> bool {
    taskdef::ecr_repository(image).is_some() || image.contains("${") || image.contains("{{") || image.trim().is_empty()
}

/// The ports a sidecar's own program would listen on: its TCP mappings, else those its image is
/// known to open (a FireLens log router maps none); a proxy's first, as its default config has it.
fn sidecar_ports(sidecar: &Sidecar) -> Vec<u16> {
    if !sidecar.ports.is_empty() {
        return sidecar.ports.clone();
    }
    match server::sidecars::classify(&sidecar.name, &sidecar.image, "NORMAL") {
        Neighbour::Agent { ports, .. } => ports.to_vec(),
        Neighbour::Proxy { ports, .. } => ports.iter().take(1).copied().collect(),
        Neighbour::Ecs | Neighbour::Unknown { .. } => Vec::new(),
    }
}

/// What would make a failed load-balancer check pass, where only something publish bakes in can:
/// the port (nothing the placeholder sees at run time names it), or a matcher that refuses 200.
fn fix_for(container: &Container, port: u16, status: u16, matcher: &Matcher, checks: &Checks) -> String {
    if status != 0 && !matcher.accepts_ok() {
        return format!(
            ". Only the definition can fix this: the target group accepts only {matcher}, which `cargo xtask publish --task-definition FILE` \
             (or --from) bakes into this repository's placeholder"
        );
    }
    if status != 0 || checks.published {
        return String::new();
    }
    if port == 443 {
        return ". Port 443 is HTTPS's: a target group that checks over HTTPS gets no answer from any placeholder (it has no \
                certificate); for one that checks over HTTP, bake the port in: `cargo xtask publish --containers NAME:443`"
            .to_owned();
    }
    let metadata = if checks.metadata_ports { "the task metadata lists none" } else { "Fargate's task metadata lists no ports" };
    let defaults = if container.sidecars.is_empty() {
        "and no web framework defaults to it"
    } else {
        "and beside the task's other containers it takes a framework's default port only when they are all known agents"
    };
    format!(
        ". Only the definition can fix this: nothing container {} has at run time names port {port} ({metadata}, no PORT or \
         health check names it, {defaults}): bake it in with `cargo xtask publish --containers NAME:{port}`, or publish from \
         the definition (--task-definition FILE, --from STACK)",
        container.name
    )
}

/// The documents the ECS agent serves for this container and its task, as files for the pause
/// container's server: `/v4/ID` (the container) and `/v4/ID/task`. With `list_ports`, Ports are
/// filled the way older EC2 agents fill them in awsvpc mode (the definition's mappings, host port
/// equal to container port); without, they are left out, as current agents and Fargate do.
fn metadata_archive(container: &Container, path_id: &str, docker_id: &str, image: &str, list_ports: bool) -> Result<Vec<u8>> {
    let ports: Vec<_> = container.ports.iter().filter(|_| list_ports).map(|p| json!({ "ContainerPort": p, "Protocol": "tcp", "HostPort": p, "HostIp": "" })).collect();
    let mut document = json!({
        "DockerId": docker_id,
        "Name": container.name,
        "DockerName": format!("ecs-verify-{}", container.name),
        "Image": image,
        "Labels": { "com.amazonaws.ecs.container-name": container.name, "com.amazonaws.ecs.task-definition-family": "verify" },
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Type": "NORMAL",
        "Networks": [{ "NetworkMode": "awsvpc", "IPv4Addresses": ["127.0.0.1"] }],
    });
    if !ports.is_empty() {
        document["Ports"] = json!(ports);
    }
    // The task's other containers are listed before they run, as ECS lists them.
    let mut containers = vec![document.clone()];
    for sidecar in &container.sidecars {
        let mut listed = json!({
            "DockerId": "",
            "Name": sidecar.name,
            "DockerName": format!("ecs-verify-{}", sidecar.name),
            "Image": sidecar.image,
            "Labels": { "com.amazonaws.ecs.container-name": sidecar.name, "com.amazonaws.ecs.task-definition-family": "verify" },
            "DesiredStatus": "RUNNING",
            "KnownStatus": "PENDING",
            "Type": "NORMAL",
            "Networks": [{ "NetworkMode": "awsvpc", "IPv4Addresses": ["127.0.0.1"] }],
        });
        if list_ports && !sidecar.ports.is_empty() {
            listed["Ports"] = json!(sidecar.ports.iter().map(|p| json!({ "ContainerPort": p, "Protocol": "tcp", "HostPort": p })).collect::<Vec<_>>());
        }
        containers.push(listed);
    }
    let task = json!({
        "Cluster": "verify",
        "TaskARN": "arn:aws:ecs:eu-west-1:123456789012:task/verify/0",
        "Family": "verify",
        "Revision": "1",
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "LaunchType": if list_ports { "EC2" } else { "FARGATE" },
        "Containers": containers,
    });
    let files = BTreeMap::from([
        ("ecs-metadata/index.html".to_owned(), b"ECS task metadata stand-in\n".to_vec()),
        (format!("ecs-metadata/v4/{path_id}/index.html"), serde_json::to_vec(&document)?),
        (format!("ecs-metadata/v4/{path_id}/task"), serde_json::to_vec(&task)?),
    ]);
    let mut tar = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        tar.append_data(&mut header, path, &bytes[..])?;
    }
    Ok(tar.into_inner()?)
}
