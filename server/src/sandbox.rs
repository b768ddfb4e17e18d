//! What the fuzz targets and their replay (`fuzzing.rs`) put in place of this container's sockets
//! and terminal, so that health-check commands run without reaching anything real: no server on
//! loopback (another test's, or a developer's), no placeholder's control socket, no output.
//!
//! A stand-in placeholder answers instead, in memory: through the real client (`client.rs`) and
//! a real hyper server on the other end of an in-memory pipe, on the ports it listens on. Paths
//! choose the answer: `/status/404` that status, `/hang` none at all (the caller's timeout ends
//! it), `/big` a body longer than curl and wget keep; anything else `200 OK`.
//!
//! Only the thread that entered it is sandboxed, and only builds for tests or with the `fuzzing`
//! feature have the calls into it (`#[cfg(any(test, feature = "fuzzing"))]`); release builds
//! have neither.

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::TcpStream;

struct Surroundings {
    /// The ports the stand-in listens on.
    listening: Vec<u16>,
    /// What the shell sees as its environment.
    environment: HashMap<String, String>,
}

thread_local! {
    /// `None` outside the sandbox.
    static SANDBOX: RefCell<Option<Surroundings>> = const { RefCell::new(None) };
}

/// Leaves the sandbox when dropped.
pub struct Sandbox(());

impl Drop for Sandbox {
    fn drop(&mut self) {
        SANDBOX.with(|sandbox| sandbox.borrow_mut().take());
    }
}

/// Sandboxes this thread until the guard is dropped: the stand-in listens on `ports`, and the
/// shell's environment is `environment`. Requests are answered by tasks it spawns: enter it
/// inside a tokio runtime, and drop the runtime after.
// The binary compiles the sandbox under `--features fuzzing` for its hooks, and never enters it.
#[allow(dead_code)]
pub fn enter(ports: &[u16], environment: HashMap<String, String>) -> Sandbox {
    SANDBOX.with(|sandbox| *sandbox.borrow_mut() = Some(Surroundings { listening: ports.to_vec(), environment }));
    Sandbox(())
}

pub fn active() -> bool {
    SANDBOX.with(|sandbox| sandbox.borrow().is_some())
}

/// The ports the stand-in listens on, in place of `/proc/net/tcp`.
pub fn listening() -> Option<Vec<u16>> {
    SANDBOX.with(|sandbox| sandbox.borrow().as_ref().map(|s| s.listening.clone()))
}

/// The environment, in place of this process's.
pub fn environment() -> Option<HashMap<String, String>> {
    SANDBOX.with(|sandbox| sandbox.borrow().as_ref().map(|s| s.environment.clone()))
}

/// A connection to the stand-in at `address`, in place of `TcpStream::connect`; `None` outside
/// the sandbox.
pub fn connect(address: SocketAddr) -> Option<std::io::Result<Stream>> {
    let listening = listening()?;
    // What every caller promises: curl, wget and the placeholder's own health reach this
    // container only, never another host.
    assert!(address.ip().is_loopback(), "a check reached for another host: {address}");
    if !listening.contains(&address.port()) {
        return Some(Err(std::io::ErrorKind::ConnectionRefused.into()));
    }
    let (client, server) = tokio::io::duplex(64 * 1024);
    let service = hyper::service::service_fn(answer);
    tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), service));
    Some(Ok(Stream::StandIn(client)))
}

/// Asks the stand-in to listen on `port`, in place of the control socket; `None` outside the
/// sandbox. Like a server that does not run as root, it cannot take the other privileged ports.
pub fn open(port: u16) -> Option<Result<(), String>> {
    SANDBOX.with(|sandbox| {
        let mut sandbox = sandbox.borrow_mut();
        let listening = &mut sandbox.as_mut()?.listening;
        if port < 1024 && port != 80 {
            return Some(Err(format!("cannot listen on port {port}: Permission denied (os error 13)")));
        }
        if !listening.contains(&port) {
            listening.push(port);
        }
        Some(Ok(()))
    })
}

/// What the client talks HTTP over: a socket, or in the sandbox the stand-in's pipe.
pub enum Stream {
    Tcp(TcpStream),
    StandIn(DuplexStream),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::StandIn(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_write(cx, data),
            Stream::StandIn(stream) => Pin::new(stream).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Stream::StandIn(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::StandIn(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    if path.starts_with("/hang") {
        std::future::pending::<()>().await;
    }
    let status = path
        .strip_prefix("/status/")
        .and_then(|code| code.parse().ok())
        .and_then(|code| StatusCode::from_u16(code).ok());
    let body = if path.starts_with("/big") { Bytes::from(vec![b'x'; 20 * 1024]) } else { Bytes::from_static(b"OK\n") };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status.unwrap_or(StatusCode::OK);
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    Ok(response)
}
