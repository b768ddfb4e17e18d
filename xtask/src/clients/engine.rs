//! Connecting to the Docker engine: `DOCKER_HOST` or the default socket, API version negotiated
//! so Docker 20.10 (API 1.41) works as well as current Docker Desktop.

use anyhow::{Context, Result, anyhow};
use bollard::Docker;

pub struct Engine {
    pub docker: Docker,
    /// The engine host's CPU architecture as `docker info` reports it, e.g. `x86_64`.
    pub arch: String,
}

pub async fn connect() -> Result<Engine> {
    let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
    let unreachable = |e: &dyn std::fmt::Display| {
        anyhow!(
            "cannot reach the Docker engine at {host} ({e}): start Docker, or point DOCKER_HOST at a running engine"
        )
    };
    let docker = Docker::connect_with_defaults().map_err(|e| unreachable(&e))?;
    let docker = docker.negotiate_version().await.map_err(|e| unreachable(&e))?;
    let info = docker.info().await.map_err(|e| unreachable(&e))?;
    let arch = info.architecture.context("the Docker engine did not report its architecture")?;
    Ok(Engine { docker, arch })
}

/// The engine if one answers within a few seconds; otherwise why not, for tasks that can do
/// without one.
pub async fn optional() -> std::result::Result<Engine, String> {
    match tokio::time::timeout(std::time::Duration::from_secs(5), connect()).await {
        Ok(Ok(engine)) => Ok(engine),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err("the Docker engine did not answer within 5 s".to_owned()),
    }
}

/// Says plainly when a Docker API call failed because the engine went away, not because of what
/// was asked of it.
pub fn call_failed(what: &str, error: bollard::errors::Error) -> anyhow::Error {
    use bollard::errors::Error::*;
    match &error {
        HyperLegacyError { .. } | IOError { .. } | RequestTimeoutError | SocketNotFoundError(_) => {
            anyhow!("{what}: lost the connection to the Docker engine ({})", crate::base::root_cause(&error))
        }
        _ => anyhow!("{what}: {error}"),
    }
}
