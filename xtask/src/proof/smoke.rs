//! The smoke test, with or without an engine: run an image until Docker's own HEALTHCHECK (the
//! image's `/server --probe`) calls it healthy, or run the server straight from the built layer
//! (the other architecture under qemu-user) and probe it with the same binary.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HealthConfig, HealthStatusEnum, HealthcheckResult, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder};
use futures_util::TryStreamExt;
use tokio::io::AsyncReadExt;

use crate::base::platform::Platform;
use crate::clients::engine::Engine;
use crate::image::oci::PlatformImage;

pub const HEALTHY_WITHIN: Duration = Duration::from_secs(20);

/// What the smoke test showed for one platform, and how.
pub struct Proof {
    pub platform: Platform,
    pub verdict: Verdict,
}

pub enum Verdict {
    Healthy {
        after: Duration,
        how: &'static str,
    },
    /// An earlier run proved this very image set (the same index digest) healthy.
    Earlier {
        proven_at: String,
        how: String,
    },
    /// Nothing here can run this architecture: not a verdict on the image.
    CannotRun(String),
}

impl Proof {
    pub fn describe(&self) -> String {
        match &self.verdict {
            Verdict::Healthy { after, how } => format!("healthy after {:.2} s ({how})", after.as_secs_f64()),
            Verdict::Earlier { proven_at, how } => {
                format!("healthy: proven at {proven_at} for this same digest ({how}), so not run again")
            }
            Verdict::CannotRun(why) => format!("not smoke-tested: {why}"),
        }
    }
}

/// Runs the loaded image `image` with no network until its HEALTHCHECK says healthy.
pub async fn in_engine(engine: &Engine, image: &str, platform: Platform) -> Result<Proof> {
    let docker = &engine.docker;
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
    let verdict = watch(docker, &container, platform).await;
    let _ = docker.remove_container(&container, Some(RemoveContainerOptionsBuilder::new().force(true).build())).await;
    let verdict = match verdict? {
        Some(after) => Verdict::Healthy { after, how: "Docker HEALTHCHECK in the engine" },
        None => Verdict::CannotRun(format!(
            "the engine's {} host cannot run {} (install qemu-user-static and binfmt-support there)",
            engine.arch,
            platform.arch()
        )),
    };
    Ok(Proof { platform, verdict })
}

/// The time to healthy, or `None` when the engine's host cannot run the architecture.
async fn watch(docker: &Docker, container: &str, platform: Platform) -> Result<Option<Duration>> {
    if let Err(e) = docker.start_container(container, None).await {
        if e.to_string().contains("exec format error") {
            return Ok(None);
        }
        return Err(anyhow!("starting the {platform} container: {e}"));
    }
    let started = Instant::now();
    loop {
        let inspect = docker.inspect_container(container, None).await?;
        let state = inspect.state.unwrap_or_default();
        let health = state.health.unwrap_or_default();
        // Docker marks a container that exits unhealthy too: the exit is what to report.
        let why = match health.status {
            Some(HealthStatusEnum::HEALTHY) => return Ok(Some(started.elapsed())),
            _ if state.running == Some(false) => format!("exited with code {}", state.exit_code.unwrap_or(-1)),
            Some(HealthStatusEnum::UNHEALTHY) => "turned unhealthy".to_owned(),
            _ if started.elapsed() > HEALTHY_WITHIN => format!("was not healthy within {HEALTHY_WITHIN:?}"),
            _ => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let logs = logs(docker, container).await;
        if logs.contains("exec format error") {
            return Ok(None);
        }
        bail!(failure(platform, &why, &last_check(&health.log), &logs));
    }
}

fn last_check(checks: &Option<Vec<HealthcheckResult>>) -> String {
    checks
        .as_ref()
        .and_then(|log| log.last())
        .map(|check| {
            format!("exit {} {:?}", check.exit_code.unwrap_or(-1), check.output.as_deref().unwrap_or("").trim())
        })
        .unwrap_or_else(|| "none ran".to_owned())
}

fn failure(platform: Platform, why: &str, last_check: &str, logs: &str) -> String {
    format!("the {platform} placeholder {why}; last health check: {last_check}; its log:\n{logs}")
}

async fn logs(docker: &Docker, container: &str) -> String {
    let options = LogsOptionsBuilder::new().stdout(true).stderr(true).tail("20").build();
    match docker.logs(container, Some(options)).try_collect::<Vec<_>>().await {
        Ok(chunks) => chunks.iter().map(|c| c.to_string()).collect(),
        Err(e) => format!("(no log: {e})"),
    }
}

/// Unpacks the layer, runs its `/server` on a free loopback port and probes it with its own
/// `/server --probe` until healthy: the image's files and health check, without an engine.
pub async fn direct(image: &PlatformImage) -> Result<Proof> {
    let platform = image.platform;
    let (runner, how) = match runner_for(platform) {
        Ok(found) => found,
        Err(why) => return Ok(Proof { platform, verdict: Verdict::CannotRun(why) }),
    };
    let root = tempfile::tempdir()?;
    tar::Archive::new(&image.layer_tar[..]).unpack(root.path()).context("unpacking the layer")?;
    let server = root.path().join("server");
    let port = testbed::free_port()?.to_string();
    let command = |args: &[&str]| {
        let mut command = match &runner {
            Some(qemu) => {
                let mut c = tokio::process::Command::new(qemu);
                c.arg(&server);
                c
            }
            None => tokio::process::Command::new(&server),
        };
        command.args(args).env_clear().stdin(Stdio::null()).kill_on_drop(true);
        command
    };
    let public_html = root.path().join("public_html");
    let mut serving = command(&["--port", &port, "--root", public_html.to_str().context("temp dir is not UTF-8")?])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running the {platform} server from the layer"))?;
    let started = Instant::now();
    let mut last = String::new();
    loop {
        if let Some(status) = serving.try_wait()? {
            bail!(failure(platform, &format!("exited with {status}"), &last, &output_of(&mut serving).await));
        }
        let probe = command(&["--probe", "--port", &port]).output().await?;
        if probe.status.success() {
            let _ = serving.kill().await;
            return Ok(Proof { platform, verdict: Verdict::Healthy { after: started.elapsed(), how } });
        }
        last =
            format!("exit {} {:?}", probe.status.code().unwrap_or(-1), String::from_utf8_lossy(&probe.stderr).trim());
        if started.elapsed() > HEALTHY_WITHIN {
            let _ = serving.kill().await;
            bail!(failure(
                platform,
                &format!("was not healthy within {HEALTHY_WITHIN:?}"),
                &last,
                &output_of(&mut serving).await
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn output_of(child: &mut tokio::process::Child) -> String {
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut text).await;
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text).await;
    }
    text
}

/// How this machine runs `platform`'s binaries: natively, through binfmt's registered qemu, or
/// through a qemu-user binary on PATH. `Err` says why it cannot.
fn runner_for(platform: Platform) -> std::result::Result<(Option<PathBuf>, &'static str), String> {
    if platform == Platform::native() {
        return Ok((None, "server run from the built layer and probed, natively"));
    }
    let qemu = match platform {
        Platform::Amd64 => "qemu-x86_64",
        Platform::Arm64 => "qemu-aarch64",
    };
    let registered = std::fs::read_to_string(Path::new("/proc/sys/fs/binfmt_misc").join(qemu))
        .is_ok_and(|entry| entry.starts_with("enabled"));
    if registered {
        return Ok((None, "server run from the built layer and probed, under qemu-user (binfmt)"));
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .flat_map(|dir| [dir.join(format!("{qemu}-static")), dir.join(qemu)])
            .find(|p| p.is_file())
    });
    match on_path {
        Some(binary) => Ok((Some(binary), "server run from the built layer and probed, under qemu-user")),
        None => Err(format!(
            "this {} machine has no {} emulation and no engine (install qemu-user-static, or run with a Docker engine)",
            Platform::native().arch(),
            platform.arch()
        )),
    }
}
