//! The HTTP/1.1 server: listening sockets, the accept loop, each connection's life, responses, and
//! graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, LOCATION, USER_AGENT,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

use crate::args::ServeConfig;
use crate::conns::{self, Lease, Phase, Table, Timeouts};
use crate::control::Open;
use crate::notice;
use crate::site::{Miss, Site};
use crate::wire::{self, MAX_HEAD_BYTES, Next, Peeked, Wire};

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
    socket.listen(4096)?; // the kernel caps it at net.core.somaxconn
    TcpListener::from_std(socket.into())
}

/// One line saying why `port` cannot be listened on, and what to do.
pub fn bind_error(port: u16, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => format!("port {port} is already in use: stop the other server or set PORT"),
        io::ErrorKind::PermissionDenied => {
            format!("no permission to listen on port {port}: use a port above 1023 or run as root")
        }
        _ => format!("cannot listen on port {port}: {e}"),
    }
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

    /// Either signal, by name. (Polled by hand here and below rather than with `tokio::select!`,
    /// whose feature brings a proc-macro and its parser into the image's build.)
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<&'static str> {
        if self.terminate.poll_recv(cx).is_ready() {
            return Poll::Ready("SIGTERM");
        }
        if self.interrupt.poll_recv(cx).is_ready() {
            return Poll::Ready("SIGINT");
        }
        Poll::Pending
    }
}

/// How long a closing connection reads on for what the client still sends.
const LINGER: Duration = Duration::from_secs(1);

/// What every connection's task shares.
struct Shared {
    site: Site,
    http: http1::Builder,
    access_log: bool,
    strict: bool,
    balancer_status: Option<u16>,
}

/// Serves on `listeners`, and on the ports `opens` asks for (task metadata that answers late, a
/// health check naming its port), until SIGTERM or SIGINT; then lets in-flight requests finish
/// within the grace period.
pub async fn run(
    config: ServeConfig,
    site: Site,
    mut listeners: Vec<TcpListener>,
    mut opens: mpsc::UnboundedReceiver<Open>,
    mut stop: StopSignals,
) -> io::Result<()> {
    let fits = conns::raise_open_file_limit();
    if fits < config.max_connections {
        eprintln!("server: the open-file limit leaves room for {fits} connections, not {}", config.max_connections);
    }
    let timeouts = Timeouts { header: config.header_timeout, idle: config.idle_timeout };
    let table = Table::new(config.max_connections.min(fits), timeouts);
    tokio::spawn(table.clone().report_shedding());
    tokio::spawn(table.clone().reap());
    let mut http = http1::Builder::new();
    // Half-closed clients still get their answer; and hyper must not read while it answers, or the
    // end of a read budget (`wire.rs`) would look like the client leaving mid-request.
    http.half_close(true).max_buf_size(MAX_HEAD_BYTES);
    let shared = Arc::new(Shared {
        site,
        http,
        access_log: config.access_log,
        strict: config.strict,
        balancer_status: config.balancer_status,
    });
    // Where the next accept looks first, so a flood on one port cannot starve the others.
    let mut first = 0;

    let signal_name = 'serving: loop {
        let event = std::future::poll_fn(|cx| {
            if let Poll::Ready(name) = stop.poll_recv(cx) {
                return Poll::Ready(Event::Stop(name));
            }
            if let Poll::Ready(Some(open)) = opens.poll_recv(cx) {
                return Poll::Ready(Event::Open(open));
            }
            poll_accept_any(&listeners, first, cx).map(Event::Accepted)
        })
        .await;
        let (stream, peer) = match event {
            Event::Stop(name) => break name,
            Event::Open(open) => {
                open_ports(&mut listeners, open);
                continue;
            }
            Event::Accepted(Ok((accepted, index))) => {
                first = index + 1;
                accepted
            }
            Event::Accepted(Err(e)) => {
                // Usually EMFILE: back off instead of spinning; open connections keep working.
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let loopback = peer.ip().to_canonical().is_loopback();
        loop {
            if table.make_room(loopback) {
                break;
            }
            // Nothing to evict: every slot is answering a request or connected within the last
            // second. Wait for one, as the kernel's backlog did.
            let (mut freed, mut nap) = (pin!(table.slot_freed()), pin!(tokio::time::sleep(Duration::from_millis(100))));
            let stopped = std::future::poll_fn(|cx| match stop.poll_recv(cx) {
                Poll::Ready(name) => Poll::Ready(Some(name)),
                Poll::Pending if freed.as_mut().poll(cx).is_ready() || nap.as_mut().poll(cx).is_ready() => {
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            })
            .await;
            if let Some(name) = stopped {
                break 'serving name;
            }
        }
        tokio::spawn(connection(table.admit(stream), peer, shared.clone()));
    };

    drop(listeners); // new connections are refused from here on
    println!("{signal_name}: stopping, {} connection(s) open", table.open());
    table.stop_all();
    if tokio::time::timeout(config.shutdown_grace, table.until_empty()).await.is_err() {
        eprintln!("requests still running after {:?}, closing them", config.shutdown_grace);
    }
    Ok(())
}

enum Event {
    Stop(&'static str),
    Open(Open),
    Accepted(io::Result<((TcpStream, SocketAddr), usize)>),
}

/// Listens on each port asked for that is not listened on yet, and answers the asker (a health
/// check), or logs what could not be opened (ports from task metadata).
fn open_ports(listeners: &mut Vec<TcpListener>, open: Open) {
    let mut results = Vec::new();
    for &port in &open.ports {
        if listeners.iter().any(|l| l.local_addr().is_ok_and(|a| a.port() == port)) {
            results.push(Ok(()));
            continue;
        }
        match bind(port) {
            Ok(listener) => {
                if let Ok(address) = listener.local_addr() {
                    let asked = if open.reply.is_some() { " (its health check names it)" } else { "" };
                    println!("also listening on {address}{asked}");
                }
                listeners.push(listener);
                results.push(Ok(()));
            }
            Err(e) => {
                let why = bind_error(port, &e);
                if open.reply.is_none() {
                    eprintln!("server: skipped: {why}");
                }
                results.push(Err(why));
            }
        }
    }
    if let Some(reply) = open.reply {
        let _ = reply.send(results);
    }
}

/// The next connection on any of `listeners`, trying them from `first` round-robin, with its
/// listener's index.
fn poll_accept_any(
    listeners: &[TcpListener],
    first: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<((TcpStream, SocketAddr), usize)>> {
    for offset in 0..listeners.len() {
        let index = (first + offset) % listeners.len();
        if let Poll::Ready(accepted) = listeners[index].poll_accept(cx) {
            return Poll::Ready(accepted.map(|a| (a, index)));
        }
    }
    Poll::Pending
}

/// One connection, request after request: it waits at the gate (no buffers) for a whole head,
/// hyper answers that one request, and it waits again. It ends when the client closes, or when the
/// table shuts its socket (timeout, eviction, a client not taking its answers, shutdown).
async fn connection(mut lease: Lease, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = lease.stream.set_nodelay(true);
    loop {
        let Some(next) = wait_for_head(&lease).await else { return };
        lease.enter(Phase::Serving);
        let closing = AtomicBool::new(false);
        let service = service_fn(|request| {
            let mut response = respond(&shared.site, &request, shared.strict, shared.balancer_status);
            if closing.load(Ordering::Relaxed) {
                // hyper read on past this request: the connection cannot return to the gate.
                response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
            }
            if shared.access_log {
                log_access(peer, &request, &response);
            }
            async move { Ok::<_, Infallible>(response) }
        });
        let (stream, entry) = lease.socket_and_entry();
        let io = TokioIo::new(Wire::new(stream, entry, next, &closing));
        // Boxed: hyper's state exists only while a request is answered, not in every waiting task.
        let answered = Box::pin(shared.http.serve_connection(io, service).without_shutdown()).await;
        let keep_alive = answered.is_ok_and(|parts| parts.io.inner().budget_spent);
        if lease.removed() {
            return;
        }
        if !keep_alive {
            return linger(&lease).await;
        }
        if lease.stopping() {
            return;
        }
        lease.enter(Phase::Idle);
        lease.watch_answer();
    }
}

/// Closes after hyper has answered and chosen to close: sends FIN, then reads and drops what the
/// client still sends (a body, pipelined requests) for a moment. Closing a socket with unread bytes
/// sends a reset, which can destroy the answer before the client has read it.
async fn linger(lease: &Lease) {
    lease.close_within(LINGER);
    let stream = &lease.stream;
    if socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write).is_err() {
        return;
    }
    let mut sink = vec![0u8; 4096]; // allocated here: a waiting connection's task stays small
    while !lease.removed() && wire::readable(stream).await.is_ok() {
        match stream.try_read(&mut sink) {
            Ok(0) => return,
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return,
            _ => {}
        }
    }
}

/// Waits until a whole request head has arrived, without reading it; `None` to close: the client
/// left, or the table shut the socket (timeout, eviction, a slow reader, shutdown).
async fn wait_for_head(lease: &Lease) -> Option<Next> {
    let stream = &lease.stream;
    let mut head_started = false;
    // Bytes seen at the last look, and whether the socket has said it is readable since.
    let (mut seen, mut woken) = (0, false);
    loop {
        if lease.removed() {
            return None;
        }
        // Forget, then look: bytes that arrive in between make the socket readable again.
        wire::forget_readiness(stream);
        match wire::peek(stream) {
            Peeked::Ready(next) => return Some(next),
            Peeked::Closed => return None,
            // Readable with nothing new: the client shut its side (or reset), and what it sent is
            // all there will be. tokio never forgets that, so waiting again would spin.
            Peeked::Partial(n) if woken && n == seen && wire::peer_finished(stream) => return None,
            Peeked::Partial(n) => {
                seen = n;
                if !head_started {
                    head_started = true;
                    lease.enter(Phase::Head);
                }
            }
            Peeked::Nothing => {}
        }
        wire::readable(stream).await.ok()?;
        woken = true;
    }
}

/// Strict mode answers 400 for targets that name no file and 404 for missing files; the default
/// answers every GET and HEAD with a page, because the placeholder cannot know which path the real
/// service's load balancer and health checks will ask for.
fn respond(
    site: &Site,
    request: &Request<hyper::body::Incoming>,
    strict: bool,
    balancer_status: Option<u16>,
) -> Response<Full<Bytes>> {
    let uri = request.uri();
    // Only the target group's checker gets the status its matcher wants: a browser following a
    // redirect to itself would loop, and the container's own health checks want 200.
    let from_balancer = || {
        request
            .headers()
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|agent| agent.starts_with("ELB-HealthChecker"))
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
    headers.insert(CONTENT_LENGTH, asset.content_length.clone());
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(HeaderName::from_static(notice::HEADER), HeaderValue::from_static(notice::HEADER_VALUE));
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
    headers.insert(HeaderName::from_static(notice::HEADER), HeaderValue::from_static(notice::HEADER_VALUE));
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
