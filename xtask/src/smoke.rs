//! The smoke test: run an image with no network and wait for Docker's own HEALTHCHECK (the image's
//! `/server --probe`) to call it healthy.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bollard::models::{ContainerCreateBody, HealthConfig, HealthStatusEnum, HealthcheckResult, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;
use futures_util::TryStreamExt;

use crate::platform::Platform;

pub const HEALTHY_WITHIN: Duration = Duration::from_secs(20);

pub enum Outcome {
    Healthy { after: Duration },
    /// The engine's host cannot run this architecture (no binfmt emulation): not a verdict.
    CannotRun,
}

pub async fn run(docker: &Docker, image: &str, platform: Platform) -> Result<Outcome> {
    let options = CreateContainerOptionsBuilder::new().platform(platform.docker()).build();
    let config = ContainerCreateBody {
        image: Some(image.to_owned()),
        // Keep the image's test command, check often so the wait is short.
        healthcheck: Some(HealthConfig {
            interval: Some(Duration::from_millis(100).as_nanos() as i64),
            timeout: Some(Duration::from_secs(3).as_nanos() as i64),
            retries: Some(3),
            ..Default::default()
        }),
        host_config: Some(HostConfig { network_mode: Some("none".into()), ..Default::default() }),
        ..Default::default()
    };
    let container = docker
        .create_container(Some(options), config)
        .await
        .with_context(|| format!("creating a {platform} container from {image}"))?
        .id;
    let outcome = watch(docker, &container, platform).await;
    let _ = docker
        .remove_container(&container, Some(RemoveContainerOptionsBuilder::new().force(true).build()))
        .await;
    outcome
}

async fn watch(docker: &Docker, container: &str, platform: Platform) -> Result<Outcome> {
    if let Err(e) = docker.start_container(container, None).await {
        if e.to_string().contains("exec format error") {
            return Ok(Outcome::CannotRun);
        }
        return Err(anyhow!("starting the {platform} container: {e}"));
    }
    let started = Instant::now();
    loop {
        let inspect = docker.inspect_container(container, None).await?;
        let state = inspect.state.unwrap_or_default();
        let health = state.health.unwrap_or_default();
        let why = match health.status {
            Some(HealthStatusEnum::HEALTHY) => return Ok(Outcome::Healthy { after: started.elapsed() }),
            Some(HealthStatusEnum::UNHEALTHY) => "turned unhealthy".to_owned(),
            _ if state.running == Some(false) => format!("exited with code {}", state.exit_code.unwrap_or(-1)),
            _ if started.elapsed() > HEALTHY_WITHIN => format!("was not healthy within {HEALTHY_WITHIN:?}"),
            _ => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let logs = logs(docker, container).await;
        if logs.contains("exec format error") {
            return Ok(Outcome::CannotRun);
        }
        bail!(failure(platform, &why, &health.log, &logs));
    }
}

fn failure(platform: Platform, why: &str, checks: &Option<Vec<HealthcheckResult>>, logs: &str) -> String {
    let last_check = checks
        .as_ref()
        .and_then(|log| log.last())
        .map(|check| format!("exit {} {:?}", check.exit_code.unwrap_or(-1), check.output.as_deref().unwrap_or("").trim()))
        .unwrap_or_else(|| "none ran".to_owned());
    format!("the {platform} placeholder {why}; last health check: {last_check}; container log:\n{logs}")
}

async fn logs(docker: &Docker, container: &str) -> String {
    let options = LogsOptionsBuilder::new().stdout(true).stderr(true).tail("20").build();
    match docker.logs(container, Some(options)).try_collect::<Vec<_>>().await {
        Ok(chunks) => chunks.iter().map(|c| c.to_string()).collect(),
        Err(e) => format!("(no log: {e})"),
    }
}
