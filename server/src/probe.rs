//! `server --probe`: the health-check client for images that have no shell and no curl.
//!
//! Always 127.0.0.1, never `localhost`: on musl `localhost` resolves to `::1` first.

use std::net::{Ipv4Addr, SocketAddr};

use hyper::Method;

use crate::args::ProbeConfig;
use tokio::time::Instant;

use crate::client::{self, Failure};
use crate::{control, health};

/// Returns a one-line verdict: `Ok` for a 2xx answer, `Err` with the reason otherwise. Without a
/// port it tries the server's likely ports (baked, then listening, then 80) until one answers 2xx:
/// under ECS task metadata the server may listen only where the task maps it.
pub async fn run(config: &ProbeConfig) -> Result<String, String> {
    if let Some(port) = config.port {
        return run_on(config, port, true).await;
    }
    let deadline = Instant::now() + config.timeout;
    let mut verdict = Err("unhealthy: no port to probe".to_owned());
    for port in health::likely_ports() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        verdict =
            run_on(&ProbeConfig { port: Some(port), path: config.path.clone(), timeout: remaining }, port, false).await;
        if verdict.is_ok() {
            break;
        }
    }
    verdict
}

/// With `named`, the port is the one the check names, which the server is asked to open.
async fn run_on(config: &ProbeConfig, port: u16, named: bool) -> Result<String, String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let url = format!("http://{address}{}", config.path);
    let deadline = Instant::now() + config.timeout;
    let host = address.to_string();
    let request = || client::request(address, Method::GET, &host, &config.path, &[], 0, deadline);
    let mut result = request().await;
    // `--port` names the service's port: when nothing listens there yet, the server is asked to.
    if matches!(result, Err(Failure::Refused)) && named && control::open(port, deadline).await.is_ok() {
        result = request().await;
    }
    match result {
        Err(Failure::TimedOut) => Err(format!("unhealthy: no answer from {url} within {:?}", config.timeout)),
        Err(reason) => Err(format!("unhealthy: {url}: {reason}")),
        Ok(answer) if answer.status.is_success() => Ok(format!("healthy: {url} answered {}", answer.status)),
        Ok(answer) => Err(format!("unhealthy: {url} answered {}", answer.status)),
    }
}
