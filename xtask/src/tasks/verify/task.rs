//! One container definition run as ECS runs a task: the pause container holding the network
//! namespace and serving the task metadata, the container, its health check, the sidecars beside
//! it, and the load balancer's GET.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HealthConfig, HealthStatusEnum, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::{StreamExt, TryStreamExt};

use crate::clients::engine::{self, Engine};
use crate::sources::taskdef::{self, Container, Matcher};

use super::metadata::{fix_for, metadata_archive, sidecar_ports, start_fix};
use super::{CHECK_INTERVAL, Checks, ELB_USER_AGENT, METADATA_PORT};

/// One container definition run as a one-container task: the pause container and the container.
pub(super) struct Task<'a> {
    pub(super) docker: &'a Docker,
    pub(super) image: &'a str,
    pub(super) container: &'a Container,
    /// Names for the two Docker containers, unique to this run.
    pub(super) prefix: String,
    pub(super) pause: Option<String>,
    pub(super) app: Option<String>,
    /// Stand-ins for the task's other containers: (sidecar, port, Docker container).
    pub(super) sidecars: Vec<(String, u16, String)>,
}

impl<'a> Task<'a> {
    pub(super) fn new(engine: &'a Engine, image: &'a str, container: &'a Container, n: usize) -> Task<'a> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let prefix = format!("ecs-verify-{}-{n}-{nanos}", std::process::id());
        Task { docker: &engine.docker, image, container, prefix, pause: None, app: None, sidecars: Vec::new() }
    }

    pub(super) async fn verify(&mut self, checks: &Checks) -> Result<String> {
        let container = self.container;
        let pause = self.create_pause().await?;
        let app = self.create_app(&pause).await?;
        self.docker
            .upload_to_container(
                &pause,
                Some(UploadToContainerOptionsBuilder::new().path("/").build()),
                bollard::body_full(
                    metadata_archive(container, &self.prefix, &app, self.image, checks.metadata_ports)?.into(),
                ),
            )
            .await
            .context("putting the task metadata into the pause container")?;
        self.docker.start_container(&pause, None).await.context("starting the pause container")?;
        self.wait_for_metadata(&pause).await?;
        self.docker.start_container(&app, None).await.map_err(|e| {
            let message = engine_message(&e);
            anyhow!("the container did not start: {message}{}", start_fix(container, checks, &message))
        })?;
        let started = Instant::now();
        let mut said = Vec::new();
        // Sidecars start when they start, often after the app (`dependsOn`): the worst case is
        // after the placeholder has taken every port it takes at start-up.
        if !container.sidecars.is_empty() {
            self.wait_for_start_up(&app).await?;
            self.start_sidecars(&pause).await?;
        }

        if let Some(check) = &container.health_check {
            self.wait_healthy(&app, check).await?;
            // From the container's start: with sidecars the wait began after they were up.
            let after = started.elapsed();
            said.push(format!(
                "its health check {:?} passed {:.1} s after the container started",
                check.command.join(" "),
                after.as_secs_f64()
            ));
        }

        if !self.sidecars.is_empty() {
            said.push(self.sidecars_serve(&pause).await?);
        }

        let file_check = container.load_balancer.clone().unwrap_or_default();
        let path = checks.health_path.clone().or(file_check.path).unwrap_or_else(|| "/".to_owned());
        let matcher = match (&checks.matcher, &file_check.matcher) {
            (Some(m), _) => m.clone(),
            (None, Some(text)) => {
                Matcher::parse(text).with_context(|| format!("the file's matcher for {}", container.name))?
            }
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
    pub(super) async fn create_pause(&mut self) -> Result<String> {
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

    pub(super) async fn create_app(&mut self, pause: &str) -> Result<String> {
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

    pub(super) async fn wait_for_metadata(&self, pause: &str) -> Result<()> {
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

    /// Waits for Docker to call the container healthy, within the check's own limits from now
    /// (the sidecars' start-up before it is not the check's time).
    pub(super) async fn wait_healthy(&self, app: &str, check: &taskdef::HealthCheck) -> Result<()> {
        let started = Instant::now();
        let timeout = Duration::from_secs(check.timeout.unwrap_or(5));
        let retries = check.retries.unwrap_or(3) as u32;
        let limit = Duration::from_secs(check.start_period.unwrap_or(0))
            + (CHECK_INTERVAL + timeout) * (retries + 1)
            + Duration::from_secs(10);
        loop {
            let state = self
                .docker
                .inspect_container(app, None)
                .await
                .context("inspecting the container")?
                .state
                .unwrap_or_default();
            let health = state.health.unwrap_or_default();
            let last = health
                .log
                .as_ref()
                .and_then(|log| log.last())
                .map(|r| format!("exit {} {:?}", r.exit_code.unwrap_or(-1), r.output.as_deref().unwrap_or("").trim()))
                .unwrap_or_else(|| "none ran".to_owned());
            match health.status {
                Some(HealthStatusEnum::HEALTHY) => return Ok(()),
                _ if state.running == Some(false) => {
                    bail!(
                        "the container exited with code {} before its health check passed; {}",
                        state.exit_code.unwrap_or(-1),
                        self.log_tail(app).await
                    )
                }
                Some(HealthStatusEnum::UNHEALTHY) => {
                    bail!("its health check {:?} failed: last check {last}", check.command.join(" "))
                }
                _ if started.elapsed() > limit => bail!(
                    "its health check {:?} did not pass within {limit:?}: last check {last}",
                    check.command.join(" ")
                ),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Waits for the placeholder's start-up line: by then it listens wherever it listens at first.
    pub(super) async fn wait_for_start_up(&self, app: &str) -> Result<()> {
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
    pub(super) async fn start_sidecars(&mut self, pause: &str) -> Result<()> {
        let claimed: Vec<u16> =
            self.container.ports.iter().chain(self.container.sidecars.iter().flat_map(|s| &s.ports)).copied().collect();
        for sidecar in &self.container.sidecars {
            for port in sidecar_ports(sidecar, &claimed) {
                let config = ContainerCreateBody {
                    image: Some(self.image.to_owned()),
                    entrypoint: Some(vec!["/server".into()]),
                    cmd: Some(vec!["--port".into(), port.to_string()]),
                    healthcheck: Some(HealthConfig { test: Some(vec!["NONE".into()]), ..Default::default() }),
                    labels: Some(labels()),
                    host_config: Some(HostConfig {
                        network_mode: Some(format!("container:{pause}")),
                        ..Default::default()
                    }),
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
                self.docker
                    .start_container(&id, None)
                    .await
                    .map_err(|e| engine::call_failed("starting a sidecar's stand-in", e))?;
            }
        }
        Ok(())
    }

    /// Every sidecar stand-in still runs and answers on its port: the placeholder left it free.
    pub(super) async fn sidecars_serve(&self, pause: &str) -> Result<String> {
        let mut serving = Vec::new();
        for (name, port, id) in &self.sidecars {
            let url = format!("http://127.0.0.1:{port}/healthcheck.html");
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let state = self
                    .docker
                    .inspect_container(id, None)
                    .await
                    .context("inspecting a sidecar")?
                    .state
                    .unwrap_or_default();
                if state.running != Some(true) {
                    bail!(
                        "sidecar {name} could not listen on its port {port}, so it exited (code {}): {}",
                        state.exit_code.unwrap_or(-1),
                        self.log_tail(id).await
                    );
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
    pub(super) async fn load_balancer_get(
        &self,
        pause: &str,
        app: &str,
        port: u16,
        path: &str,
        matcher: &Matcher,
        checks: &Checks,
    ) -> Result<u16> {
        let url = format!("http://127.0.0.1:{port}{path}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, output) = exec(
                self.docker,
                pause,
                &["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-A", ELB_USER_AGENT, "-m", "5", &url],
            )
            .await?;
            let status = output.trim().parse::<u16>().unwrap_or(0);
            if status != 0 && matcher.accepts(status) {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let why = if status == 0 { format!("no answer ({})", output.trim()) } else { format!("{status}") };
                let fix = fix_for(self.container, port, status, matcher, checks);
                bail!(
                    "the load balancer's GET :{port}{path} got {why}, and the matcher is {matcher}; {}{fix}",
                    self.log_tail(app).await
                );
            }
            self.still_running(app).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(super) async fn still_running(&self, app: &str) -> Result<()> {
        let state = self
            .docker
            .inspect_container(app, None)
            .await
            .context("inspecting the container")?
            .state
            .unwrap_or_default();
        if state.running != Some(true) {
            bail!("the container exited with code {}; {}", state.exit_code.unwrap_or(-1), self.log_tail(app).await);
        }
        Ok(())
    }

    pub(super) async fn log_tail(&self, container: &str) -> String {
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).tail("5").build();
        match self.docker.logs(container, Some(options)).try_collect::<Vec<_>>().await {
            Ok(chunks) => {
                let text: String = chunks.iter().map(|c| c.to_string()).collect();
                format!("its log: {:?}", text.trim())
            }
            Err(e) => format!("(no log: {e})"),
        }
    }

    pub(super) async fn remove(&self) {
        let sidecars = self.sidecars.iter().map(|(_, _, id)| id);
        for id in sidecars.chain([&self.app, &self.pause].into_iter().flatten()) {
            let _ =
                self.docker.remove_container(id, Some(RemoveContainerOptionsBuilder::new().force(true).build())).await;
        }
    }
}

pub(super) fn labels() -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([("ecs-minimal-container.verify".to_owned(), "true".to_owned())])
}

/// The engine's own words for a refused create or start (e.g. a missing entry point).
pub(super) fn engine_message(error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Runs `command` in `container` and returns its exit code and output.
pub(super) async fn exec(docker: &Docker, container: &str, command: &[&str]) -> Result<(i64, String)> {
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(command.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
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
