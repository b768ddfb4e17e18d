//! `server --probe`: the health-check client for images that have no shell and no curl.
//!
//! Always 127.0.0.1, never `localhost`: on musl `localhost` resolves to `::1` first.

use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::args::ProbeConfig;

/// Returns a one-line verdict: `Ok` for a 2xx answer, `Err` with the reason otherwise.
pub async fn run(config: &ProbeConfig) -> Result<String, String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, config.port));
    let url = format!("http://{address}{}", config.path);
    match tokio::time::timeout(config.timeout, get(address, &config.path)).await {
        Err(_) => Err(format!("unhealthy: no answer from {url} within {:?}", config.timeout)),
        Ok(Err(reason)) => Err(format!("unhealthy: {url}: {reason}")),
        Ok(Ok(status)) if status.is_success() => Ok(format!("healthy: {url} answered {status}")),
        Ok(Ok(status)) => Err(format!("unhealthy: {url} answered {status}")),
    }
}

async fn get(address: SocketAddr, path: &str) -> Result<hyper::StatusCode, String> {
    let stream = TcpStream::connect(address).await.map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header(HOST, address.to_string())
        .header(USER_AGENT, concat!("ecs-placeholder-probe/", env!("CARGO_PKG_VERSION")))
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| format!("bad answer: {e}"))?;
    Ok(response.status())
}
