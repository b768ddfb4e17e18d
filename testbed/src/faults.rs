//! Faults on demand: an HTTP proxy that records requests and fails, rewrites or cuts chosen ones
//! (the ECR API failing calls, a registry refusing mounts or tokens), and connections that die at a
//! chosen moment. All are proxies in front of the real services, so everything else stays real.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::Result;

/// One HTTP request passing through an `HttpProxy`, which a rule may rewrite.
pub struct Request {
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// The header lines, each ending in CRLF.
    pub headers: String,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// What an `HttpProxy` does with a request.
pub enum Verdict {
    /// Send it (as the rule may have rewritten it) to the upstream service.
    Forward,
    /// Answer it here with this status, extra headers and body.
    Respond { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// Close the client's connection without an answer: the service died mid-request.
    Cut,
}

type Rule = dyn Fn(&mut Request) -> Verdict + Send + Sync;

/// An HTTP/1.1 proxy on a free loopback port in front of `127.0.0.1:upstream` that records every
/// request (`METHOD target`) and lets a rule rewrite, answer or cut each one.
pub struct HttpProxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
}

impl HttpProxy {
    pub fn start(upstream: u16, rule: impl Fn(&mut Request) -> Verdict + Send + Sync + 'static) -> Result<HttpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let rule: Arc<Rule> = Arc::new(rule);
        let (stop_flag, requests) = (stop.clone(), log.clone());
        thread::spawn(move || {
            while !stop_flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (rule, requests) = (rule.clone(), requests.clone());
                        thread::spawn(move || {
                            let _ = client.set_nonblocking(false);
                            let _ = serve(client, upstream, &*rule, &requests);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(HttpProxy { port, stop, log })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request seen so far, as `METHOD target`.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for HttpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Reads one HTTP request (head and Content-Length body); `None` at end of stream.
fn read_request(stream: &mut TcpStream) -> Result<Option<Request>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let (line, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
    let headers = headers.trim_end_matches("\r\n").to_owned() + "\r\n";
    // A streamed body (Docker's blob uploads) is read whole, and sent on with a length.
    if header(&headers, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                if stream.read(&mut byte)? == 0 {
                    return Ok(None);
                }
                line.push(byte[0]);
            }
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&line).trim().split(';').next().unwrap_or("0"), 16)
                    .unwrap_or(0);
            let mut chunk = vec![0u8; size + 2];
            stream.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
        let headers = headers
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("transfer-encoding:"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        return Ok(Some(Request { method, target, headers, body }));
    }
    let length = header(&headers, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok(Some(Request { method, target, headers, body }))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn serve(mut client: TcpStream, upstream: u16, rule: &Rule, log: &Mutex<Vec<String>>) -> Result<()> {
    while let Some(mut request) = read_request(&mut client)? {
        log.lock().unwrap().push(format!("{} {}", request.method, request.target));
        // A client that asks to close (another proxy's `exchange`) reads the answer to the end.
        let last = request.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        match rule(&mut request) {
            Verdict::Cut => {
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
            Verdict::Respond { status, headers, body } => {
                let mut answer = format!("HTTP/1.1 {status} Injected\r\nContent-Length: {}\r\n", body.len());
                for (name, value) in headers {
                    answer.push_str(&format!("{name}: {value}\r\n"));
                }
                answer.push_str("\r\n");
                client.write_all(answer.as_bytes())?;
                client.write_all(&body)?;
            }
            Verdict::Forward => client.write_all(&exchange(upstream, &request)?)?,
        }
        if last {
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
    Ok(())
}

/// Sends `request` to `127.0.0.1:upstream` and returns the whole answer, head and body.
pub(crate) fn exchange(upstream: u16, request: &Request) -> Result<Vec<u8>> {
    // `Connection: close` upstream, so the whole answer is what it sends before closing.
    let mut upstream = TcpStream::connect(("127.0.0.1", upstream))?;
    let headers: String = request
        .headers
        .lines()
        .filter(|l| {
            !l.to_ascii_lowercase().starts_with("connection:") && !l.to_ascii_lowercase().starts_with("content-length:")
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    write!(
        upstream,
        "{} {} HTTP/1.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        request.method,
        request.target,
        request.body.len()
    )?;
    upstream.write_all(&request.body)?;
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer)?;
    Ok(answer)
}

/// An HTTP answer's status, and its body with chunked transfer decoded.
pub(crate) fn parse_answer(answer: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let mut body = answer[split + 4..].to_vec();
    if header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut decoded = Vec::new();
        let mut rest = &body[..];
        while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..line_end]).trim(), 16).ok()?;
            if size == 0 {
                break;
            }
            decoded.extend_from_slice(rest.get(line_end + 2..line_end + 2 + size)?);
            rest = rest.get(line_end + 4 + size..)?;
        }
        body = decoded;
    }
    Some((status, body))
}

/// One injected ECR error: calls of `operation` (e.g. `CreateRepository`), for `repository` if
/// given, answer `status` with `error_type` and `message`; only the first `times` such calls when
/// `times` is given (to test retries).
#[derive(Clone)]
pub struct Fault {
    pub operation: &'static str,
    pub repository: Option<String>,
    pub status: u16,
    pub error_type: &'static str,
    pub message: &'static str,
    pub times: Option<usize>,
}

/// An ECR API endpoint in front of moto that answers matching calls with injected errors.
pub struct FaultyEcr {
    proxy: HttpProxy,
    /// How many calls got an injected error.
    pub injected: Arc<AtomicUsize>,
}

impl FaultyEcr {
    pub fn start(moto_port: u16, faults: Vec<Fault>) -> Result<FaultyEcr> {
        let injected = Arc::new(AtomicUsize::new(0));
        let count = injected.clone();
        let faults = Mutex::new(faults);
        let proxy = HttpProxy::start(moto_port, move |request| {
            let operation = request.header("x-amz-target").and_then(|t| t.rsplit('.').next()).unwrap_or("").to_owned();
            let json: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
            let repository = json["repositoryName"].as_str().or_else(|| json["repositoryNames"][0].as_str());
            let mut faults = faults.lock().unwrap();
            let hit = faults.iter_mut().find(|f| {
                f.operation == operation
                    && f.times != Some(0)
                    && f.repository.as_deref().is_none_or(|r| Some(r) == repository)
            });
            let Some(fault) = hit else { return Verdict::Forward };
            if let Some(times) = fault.times.as_mut() {
                *times -= 1;
            }
            count.fetch_add(1, Ordering::SeqCst);
            Verdict::Respond {
                status: fault.status,
                headers: vec![
                    ("Content-Type".into(), "application/x-amz-json-1.1".into()),
                    ("x-amzn-ErrorType".into(), fault.error_type.into()),
                    ("x-amzn-RequestId".into(), "injected".into()),
                ],
                body: serde_json::json!({ "__type": fault.error_type, "message": fault.message })
                    .to_string()
                    .into_bytes(),
            }
        })?;
        Ok(FaultyEcr { proxy, injected })
    }

    pub fn endpoint(&self) -> String {
        self.proxy.endpoint()
    }
}

/// Where a `CutProxy` listens and forwards.
pub enum Endpoint {
    Tcp(u16),
    Unix(PathBuf),
}

/// Forwards bytes both ways until a client sends `trigger`; then every connection it carries is
/// cut and new ones are refused: a service dying at a chosen moment.
pub struct CutProxy {
    pub listen: Endpoint,
    cut: Arc<AtomicBool>,
    _dir: Option<tempfile::TempDir>,
}

trait Stream: Read + Write + Send + 'static {
    fn split(&self) -> std::io::Result<Box<dyn Stream>>;
    fn close(&self);
}

impl Stream for TcpStream {
    fn split(&self) -> std::io::Result<Box<dyn Stream>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn close(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

impl Stream for UnixStream {
    fn split(&self) -> std::io::Result<Box<dyn Stream>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn close(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

impl CutProxy {
    /// A TCP proxy on a free loopback port in front of `127.0.0.1:upstream`.
    pub fn tcp(upstream: u16, trigger: &str) -> Result<CutProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let cut = Arc::new(AtomicBool::new(false));
        spawn_proxy(
            move || listener.accept().map(|(s, _)| Box::new(s) as Box<dyn Stream>),
            move || TcpStream::connect(("127.0.0.1", upstream)).map(|s| Box::new(s) as Box<dyn Stream>),
            trigger.as_bytes().to_vec(),
            cut.clone(),
        );
        Ok(CutProxy { listen: Endpoint::Tcp(port), cut, _dir: None })
    }

    /// A Unix-socket proxy in front of the socket at `upstream` (e.g. the Docker engine's).
    pub fn unix(upstream: &Path, trigger: &str) -> Result<CutProxy> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("proxy.sock");
        let listener = UnixListener::bind(&path)?;
        let cut = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_path_buf();
        spawn_proxy(
            move || listener.accept().map(|(s, _)| Box::new(s) as Box<dyn Stream>),
            move || UnixStream::connect(&upstream).map(|s| Box::new(s) as Box<dyn Stream>),
            trigger.as_bytes().to_vec(),
            cut.clone(),
        );
        Ok(CutProxy { listen: Endpoint::Unix(path), cut, _dir: Some(dir) })
    }

    pub fn was_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

fn spawn_proxy(
    accept: impl Fn() -> std::io::Result<Box<dyn Stream>> + Send + 'static,
    connect: impl Fn() -> std::io::Result<Box<dyn Stream>> + Send + Sync + 'static,
    trigger: Vec<u8>,
    cut: Arc<AtomicBool>,
) {
    let open: Arc<Mutex<Vec<Box<dyn Stream>>>> = Arc::new(Mutex::new(Vec::new()));
    let connect = Arc::new(connect);
    thread::spawn(move || {
        while let Ok(client) = accept() {
            if cut.load(Ordering::SeqCst) {
                client.close();
                continue; // refused, as far as the client can tell
            }
            let Ok(upstream) = connect() else {
                client.close();
                continue;
            };
            let (Ok(client_reader), Ok(upstream_writer), Ok(upstream_reader), Ok(client_writer)) =
                (client.split(), upstream.split(), upstream.split(), client.split())
            else {
                continue;
            };
            {
                let mut open = open.lock().unwrap();
                open.push(client);
                open.push(upstream);
            }
            thread::spawn(move || pump(upstream_reader, client_writer, None));
            let (cut, open, trigger) = (cut.clone(), open.clone(), trigger.clone());
            thread::spawn(move || pump(client_reader, upstream_writer, Some((&trigger, &cut, &open))));
        }
    });
}

type Trigger<'a> = (&'a [u8], &'a AtomicBool, &'a Mutex<Vec<Box<dyn Stream>>>);

fn pump(mut from: Box<dyn Stream>, mut to: Box<dyn Stream>, trigger: Option<Trigger<'_>>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((pattern, cut, open)) = trigger
            && (cut.load(Ordering::SeqCst) || buf[..n].windows(pattern.len()).any(|w| w == pattern))
        {
            cut.store(true, Ordering::SeqCst);
            for stream in open.lock().unwrap().iter() {
                stream.close();
            }
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    to.close();
}
