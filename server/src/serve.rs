//! The HTTP/1.1 server: listening socket, bounded connections, responses, and graceful shutdown.

use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, USER_AGENT};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::args::ServeConfig;
use crate::site::{Miss, Site};

/// Largest request head accepted; beyond it hyper answers 431. It also caps each connection's read
/// buffer, so it decides what an idle or slow connection costs. 8 KiB is hyper's minimum.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Binds `[::]:port` dual-stack, or `0.0.0.0:port` where the kernel has IPv6 switched off.
pub fn bind(port: u16) -> io::Result<TcpListener> {
    let dual_stack = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    match listen(dual_stack, true) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse || e.kind() == io::ErrorKind::PermissionDenied => Err(e),
        Err(_) => listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), false),
        ok => ok,
    }
}

fn listen(addr: SocketAddr, dual_stack: bool) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// SIGTERM and SIGINT handlers. PID 1 only receives the signals it has handlers for, and any other
/// process dies of them until it has some, so they are installed before anything else happens.
pub struct StopSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl StopSignals {
    pub fn install() -> io::Result<StopSignals> {
        Ok(StopSignals { terminate: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
    }

    /// Waits for either signal and names it.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

/// Listeners that come later: the ports ECS task metadata names once it answers.
pub type Later = Pin<Box<dyn Future<Output = Vec<TcpListener>>>>;

/// Serves on `listeners`, and on those `later` delivers, until SIGTERM or SIGINT; then lets
/// in-flight requests finish within the grace period.
pub async fn run(
    config: ServeConfig,
    site: Site,
    mut listeners: Vec<TcpListener>,
    mut later: Option<Later>,
    mut stop: StopSignals,
) -> io::Result<()> {
    let site = Arc::new(site);
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    // hyper restarts its header-read timer as soon as a response is written, so it bounds idle
    // keep-alive time too; give it the long idle value, and hold slow request heads to the short
    // one ourselves (`close_when_stalled`).
    http.timer(TokioTimer::new())
        .header_read_timeout(config.idle_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let timeouts = Timeouts { header: config.header_timeout, idle: config.idle_timeout };
    // Where the next accept looks first, so a flood on one port cannot starve the others.
    let mut first = 0;

    let signal_name = loop {
        // Take a connection slot before accepting: when all are in use, new connections wait in
        // the kernel's backlog for one to free (slow clients are cut after the header timeout)
        // instead of being dropped, which would fail a health check arriving during a flood.
        let event = tokio::select! {
            name = stop.recv() => Event::Stop(name),
            more = async {
                match later.as_mut() {
                    Some(more) => more.await,
                    None => std::future::pending().await,
                }
            }, if later.is_some() => Event::Added(more),
            (slot, accepted) = async {
                let slot = slots.clone().acquire_owned().await.expect("the semaphore is never closed");
                (slot, accept_any(&listeners, first).await)
            } => Event::Accepted(slot, accepted),
        };
        let (slot, (stream, peer)) = match event {
            Event::Stop(name) => break name,
            Event::Added(more) => {
                listeners.extend(more);
                later = None; // done: a finished future must not be polled again
                continue;
            }
            Event::Accepted(slot, Ok((accepted, index))) => {
                first = index + 1;
                (slot, accepted)
            }
            Event::Accepted(_, Err(e)) => {
                // Usually EMFILE: back off instead of spinning; open connections keep working.
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let site = site.clone();
        let (access_log, strict, balancer_status) = (config.access_log, config.strict, config.balancer_status);
        let service = service_fn(move |request| {
            let response = respond(&site, &request, strict, balancer_status);
            if access_log {
                log_access(peer, &request, &response);
            }
            async move { Ok::<_, Infallible>(response) }
        });
        let (io, activity) = ActivityIo::new(stream);
        let connection = graceful.watch(http.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            let _slot = slot;
            close_when_stalled(connection, &activity, timeouts).await;
        });
    };

    drop(listeners); // new connections are refused from here on
    let open = config.max_connections - slots.available_permits();
    println!("{signal_name}: stopping, {open} connection(s) open");
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown()).await.is_err() {
        eprintln!("requests still running after {:?}, closing them", config.shutdown_grace);
    }
    Ok(())
}

enum Event {
    Stop(&'static str),
    Added(Vec<TcpListener>),
    Accepted(OwnedSemaphorePermit, io::Result<((TcpStream, SocketAddr), usize)>),
}

/// Accepts the next connection on any of `listeners`, trying them from `first` round-robin;
/// returns it with its listener's index.
async fn accept_any(listeners: &[TcpListener], first: usize) -> io::Result<((TcpStream, SocketAddr), usize)> {
    std::future::poll_fn(|cx| {
        for offset in 0..listeners.len() {
            let index = (first + offset) % listeners.len();
            if let Poll::Ready(accepted) = listeners[index].poll_accept(cx) {
                return Poll::Ready(accepted.map(|a| (a, index)));
            }
        }
        Poll::Pending
    })
    .await
}

/// Drives a connection until it ends, a request has taken longer than `header_timeout` from its
/// first byte to our answer (slowloris), or nothing has moved either way for `idle_timeout`.
async fn close_when_stalled<F: Future>(connection: F, activity: &Activity, config: Timeouts) {
    let mut connection = pin!(connection);
    loop {
        let deadline = activity.deadline(config);
        tokio::select! {
            _ = &mut connection => return,
            _ = activity.request_started.notified() => {} // re-arm with the header deadline
            _ = tokio::time::sleep_until(deadline) => {
                if activity.deadline(config) <= Instant::now() {
                    return; // dropping the connection closes the socket
                }
            }
        }
    }
}

/// Strict mode answers 400 for targets that name no file and 404 for missing files; the default
/// answers every GET and HEAD with a page, because the placeholder cannot know which path the real
/// service's load balancer and health checks will ask for.
fn respond(site: &Site, request: &Request<hyper::body::Incoming>, strict: bool, balancer_status: Option<u16>) -> Response<Full<Bytes>> {
    let uri = request.uri();
    // Only the target group's checker gets the status its matcher wants: a browser following a
    // redirect to itself would loop, and the container's own health checks want 200.
    let from_balancer = || {
        request.headers().get(USER_AGENT).and_then(|v| v.to_str().ok()).is_some_and(|agent| agent.starts_with("ELB-HealthChecker"))
    };
    if let Some(status) = balancer_status.and_then(|code| StatusCode::from_u16(code).ok()).filter(|_| from_balancer()) {
        let mut response = plain(status);
        if status.is_redirection() {
            response.headers_mut().insert(LOCATION, HeaderValue::from_static("/"));
        }
        return response;
    }
    // Only origin-form targets name a file here; absolute-form asks us to be a proxy, and
    // authority-form (CONNECT) or `*` name no file at all.
    if strict && (uri.scheme().is_some() || uri.authority().is_some() || !uri.path().starts_with('/')) {
        return plain(StatusCode::BAD_REQUEST);
    }
    let head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED);
            response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
    };
    let asset = match site.resolve(uri.path()) {
        Ok(asset) => asset,
        Err(_) if !strict => site.resolve_leniently(uri.path()),
        Err(Miss::BadPath) => return plain(StatusCode::BAD_REQUEST),
        Err(Miss::NotFound) => return plain(StatusCode::NOT_FOUND),
    };
    let body = if head { Bytes::new() } else { asset.body.clone() };
    let mut response = Response::new(Full::new(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(asset.body.len()));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A short text response carrying the status line's reason, e.g. "404 Not Found".
fn plain(status: StatusCode) -> Response<Full<Bytes>> {
    let text = format!("{} {}\n", status.as_u16(), status.canonical_reason().unwrap_or(""));
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn log_access<B>(peer: SocketAddr, request: &Request<B>, response: &Response<Full<Bytes>>) {
    let length = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| hyper::body::Body::size_hint(response.body()).exact().unwrap_or(0).to_string());
    // The http crate refuses control characters in methods and targets, so a line cannot be forged.
    println!(
        "{} \"{} {} {:?}\" {} {length}",
        SocketAddr::new(peer.ip().to_canonical(), peer.port()),
        request.method(),
        request.uri(),
        request.version(),
        response.status().as_u16()
    );
}

#[derive(Clone, Copy)]
struct Timeouts {
    header: Duration,
    idle: Duration,
}

/// What a connection's I/O wrapper has seen, for its timer. Times are milliseconds since `start`;
/// `waiting_since` is 0 when no request is waiting for an answer, else its first byte's time + 1.
struct Activity {
    start: Instant,
    last: AtomicU64,
    waiting_since: AtomicU64,
    request_started: Notify,
}

impl Activity {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn on_read(&self) {
        let now = self.now();
        self.last.store(now, Ordering::Relaxed);
        if self.waiting_since.compare_exchange(0, now + 1, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.request_started.notify_one();
        }
    }

    fn on_write(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
        self.waiting_since.store(0, Ordering::Relaxed);
    }

    fn deadline(&self, timeouts: Timeouts) -> Instant {
        let at = |millis: u64| self.start + Duration::from_millis(millis);
        let idle = at(self.last.load(Ordering::Relaxed)) + timeouts.idle;
        match self.waiting_since.load(Ordering::Relaxed) {
            0 => idle,
            since => idle.min(at(since - 1) + timeouts.header),
        }
    }
}

/// A TCP stream that records when bytes last moved, for the idle timeout.
struct ActivityIo {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl ActivityIo {
    fn new(stream: TcpStream) -> (Self, Arc<Activity>) {
        let activity = Arc::new(Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            waiting_since: AtomicU64::new(0),
            request_started: Notify::new(),
        });
        (ActivityIo { stream, activity: activity.clone() }, activity)
    }
}

impl AsyncRead for ActivityIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.on_read();
        }
        result
    }
}

impl AsyncWrite for ActivityIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
