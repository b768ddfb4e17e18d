//! `server --probe`: the health-check client for images that have no shell and no curl.
//!
//! Always 127.0.0.1, never `localhost`: on musl `localhost` resolves to `::1` first.

use std::net::{Ipv4Addr, SocketAddr};

use hyper::Method;

use crate::args::ProbeConfig;
use tokio::time::Instant;

use crate::client::{self, Failure};
use crate::health;

/// Returns a one-line verdict: `Ok` for a 2xx answer, `Err` with the reason otherwise. Without a
/// port it tries the server's likely ports (baked, then listening, then 80) until one answers 2xx:
/// under ECS task metadata the server may listen only where the task maps it.
pub async fn run(config: &ProbeConfig) -> Result<String, String> {
    if let Some(port) = config.port {
        return run_on(config, port).await;
    }
    let deadline = Instant::now() + config.timeout;
    let mut verdict = Err("unhealthy: no port to probe".to_owned());
    for port in health::likely_ports() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        verdict = run_on(&ProbeConfig { port: Some(port), path: config.path.clone(), timeout: remaining }, port).await;
        if verdict.is_ok() {
            break;
        }
    }
    verdict
}

async fn run_on(config: &ProbeConfig, port: u16) -> Result<String, String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let url = format!("http://{address}{}", config.path);
    let deadline = Instant::now() + config.timeout;
    match client::request(address, Method::GET, &address.to_string(), &config.path, &[], 0, deadline).await {
        Err(Failure::TimedOut) => Err(format!("unhealthy: no answer from {url} within {:?}", config.timeout)),
        Err(reason) => Err(format!("unhealthy: {url}: {reason}")),
        Ok(answer) if answer.status.is_success() => Ok(format!("healthy: {url} answered {}", answer.status)),
        Ok(answer) => Err(format!("unhealthy: {url} answered {}", answer.status)),
    }
}
