//! One HTTP/1.1 request over a fresh connection: for `--probe`, curl/wget health checks, the
//! placeholder's own health, and ECS task metadata.
//!
//! Callers pass a socket address, never a host name: on musl `localhost` resolves to `::1` first.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::header::{CONNECTION, HOST, HeaderName, HeaderValue, USER_AGENT};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

pub const USER_AGENT_VALUE: &str = concat!("ecs-placeholder-probe/", env!("CARGO_PKG_VERSION"));

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// At most the `body_limit` the caller asked for; the rest is never read.
    pub body: Bytes,
}

pub enum Failure {
    /// Nothing listens there: the one failure a health check may reasonably blame on a wrong port.
    Refused,
    Connect(io::Error),
    BadAnswer(String),
    TimedOut,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused => write!(f, "cannot connect: {}", io::Error::from(io::ErrorKind::ConnectionRefused)),
            Failure::Connect(e) => write!(f, "cannot connect: {e}"),
            Failure::BadAnswer(reason) => write!(f, "bad answer: {reason}"),
            Failure::TimedOut => write!(f, "no answer in time"),
        }
    }
}

/// Sends `method target` to `address` with `Connection: close`; `headers` override the defaults.
/// Gives up at `deadline`. (The one place that times out a request, so the request's state
/// machine is compiled into the binary once.)
pub async fn request(
    address: SocketAddr,
    method: Method,
    host: &str,
    target: &str,
    headers: &[(String, String)],
    body_limit: usize,
    deadline: Instant,
) -> Result<Answer, Failure> {
    let exchange = exchange(address, method, host, target, headers, body_limit);
    tokio::time::timeout_at(deadline, exchange).await.unwrap_or(Err(Failure::TimedOut))
}

async fn exchange(
    address: SocketAddr,
    method: Method,
    host: &str,
    target: &str,
    headers: &[(String, String)],
    body_limit: usize,
) -> Result<Answer, Failure> {
    let failed = |e: io::Error| match e.kind() {
        io::ErrorKind::ConnectionRefused => Failure::Refused,
        _ => Failure::Connect(e),
    };
    #[cfg(not(any(test, feature = "fuzzing")))]
    let stream = TcpStream::connect(address).await.map_err(failed)?;
    // The stand-in placeholder's end of an in-memory pipe, in the sandbox (`sandbox.rs`).
    #[cfg(any(test, feature = "fuzzing"))]
    let stream = match crate::sandbox::connect(address) {
        Some(stream) => stream.map_err(failed)?,
        None => crate::sandbox::Stream::Tcp(TcpStream::connect(address).await.map_err(failed)?),
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failure::BadAnswer(e.to_string()))?;
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(target)
        .body(Empty::<Bytes>::new())
        .map_err(|e| Failure::BadAnswer(e.to_string()))?;
    let defaults = request.headers_mut();
    defaults.insert(HOST, HeaderValue::from_str(host).unwrap_or(HeaderValue::from_static("localhost")));
    defaults.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    defaults.insert(CONNECTION, HeaderValue::from_static("close"));
    for (name, value) in headers {
        // A header the user wrote that HTTP cannot carry is dropped, as a typo'd one would be ignored.
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            defaults.insert(name, value);
        }
    }
    let response = sender.send_request(request).await.map_err(|e| Failure::BadAnswer(e.to_string()))?;
    let (parts, mut body) = response.into_parts();
    let mut kept = BytesMut::new();
    while kept.len() < body_limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = body_limit - kept.len();
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Some(Err(e)) => return Err(Failure::BadAnswer(e.to_string())),
            None => break,
        }
    }
    Ok(Answer { status: parts.status, headers: parts.headers, body: kept.freeze() })
}
