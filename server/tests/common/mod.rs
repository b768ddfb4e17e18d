//! Shared helpers: spawn the real server binary on a free loopback port and talk raw HTTP to it.
#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_server");

/// A document root in a temp dir, with a secret file beside it that no request may reach.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

pub const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-ROOT";

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("public_html");
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::write(root.join("index.html"), "<h1>index</h1>\n").unwrap();
        std::fs::write(root.join("healthcheck.html"), "OK\n").unwrap();
        std::fs::write(root.join("style.css"), "body{}\n").unwrap();
        std::fs::write(root.join("docs/index.html"), "docs\n").unwrap();
        std::fs::write(dir.path().join("secret.txt"), SECRET).unwrap();
        Fixture { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("public_html")
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) {
        std::fs::write(self.root().join(name), contents).unwrap();
    }
}

/// A running server; killed on drop if the test did not stop it.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub started: Instant,
    /// The whole start-up line.
    pub first_line: String,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    /// The placeholder's notice lines ("placeholder for ... since ..."), kept apart from stderr's
    /// other lines, which tests read as warnings.
    notices: mpsc::Receiver<String>,
}

impl Server {
    pub fn start(root: &Path) -> Server {
        Server::start_with(root, &[], &[])
    }

    /// Spawns with `--port 0` and learns the port from the start-up line, so no port is raced for.
    pub fn start_with(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_binary(Path::new(BIN), root, args, env)
    }

    pub fn start_binary(binary: &Path, root: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let root = root.to_str().unwrap();
        let args: Vec<&str> = ["--port", "0", "--root", root].iter().chain(args).copied().collect();
        Server::spawn(binary, &args, env)
    }

    /// Spawns `binary ARGS` with only `env` (and no PORT or ECS metadata from the test's own
    /// environment), and learns its first port from the start-up line.
    pub fn spawn(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let started = Instant::now();
        let mut child = Command::new(binary)
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let (stdout, _) = lines(child.stdout.take().unwrap(), false);
        let (stderr, notices) = lines(child.stderr.take().unwrap(), true);
        let first = stdout.recv_timeout(Duration::from_secs(10)).expect("server printed no start-up line");
        // A server waiting for its health check to name a port listens on none yet: port 0.
        let port = first
            .split("]:")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|p| p.parse().ok())
            .or_else(|| first.contains("listening on no port yet").then_some(0))
            .unwrap_or_else(|| panic!("no port in start-up line {first:?}"));
        Server { child, port, started, first_line: first, stdout, stderr, notices }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The next line the server prints on stdout (access log, shutdown message).
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.stdout.recv_timeout(timeout).ok()
    }

    /// The next line the server prints on stderr (warnings, ignored arguments, skipped ports).
    pub fn next_error_line(&self, timeout: Duration) -> Option<String> {
        self.stderr.recv_timeout(timeout).ok()
    }

    /// The next notice the placeholder logs about itself.
    pub fn next_notice(&self, timeout: Duration) -> Option<String> {
        self.notices.recv_timeout(timeout).ok()
    }

    /// Every stderr line until `quiet` passes without one.
    pub fn error_lines(&self, quiet: Duration) -> Vec<String> {
        std::iter::from_fn(|| self.next_error_line(quiet)).collect()
    }

    pub fn signal(&self, signal: libc::c_int) {
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, signal) }, 0);
    }

    /// Waits for exit, failing the test after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit within {timeout:?}");
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards each line of a child's output, the placeholder's notices apart; stderr lines are also
/// echoed, for failing tests.
fn lines(output: impl Read + Send + 'static, echo: bool) -> (mpsc::Receiver<String>, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let (notice_tx, notice_rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if echo {
                eprintln!("server stderr: {line}");
            }
            // Keep reading after the test stops listening: never block the child.
            let _ = if line.starts_with("placeholder for ") { notice_tx.send(line) } else { tx.send(line) };
        }
    });
    (rx, notice_rx)
}

/// A port nothing listens on right now (bound and released, so rarely raced for).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("[::]:0").unwrap().local_addr().unwrap().port()
}

/// A port that stays closed while this lives: bound but never listening, so a connection to it is
/// refused and neither another test's server nor the kernel's choice of a free port can take it
/// (a port bound and released, as `free_port` gives, sometimes was, and a probe of it passed).
pub struct ClosedPort {
    pub port: u16,
    _socket: tokio::net::TcpSocket,
}

pub fn closed_port() -> ClosedPort {
    let socket = tokio::net::TcpSocket::new_v6().unwrap();
    // Dual-stack on Linux: 127.0.0.1 and ::1 both refused.
    socket.bind("[::]:0".parse().unwrap()).unwrap();
    ClosedPort { port: socket.local_addr().unwrap().port(), _socket: socket }
}

/// `CARGO_BIN_EXE_server` under another name (a symlink in a temp dir), as the image's hard
/// links to it for /bin/sh, /usr/bin/curl, node... are.
pub struct Names {
    dir: tempfile::TempDir,
}

impl Names {
    pub fn new() -> Names {
        let dir = tempfile::tempdir().unwrap();
        for name in ["sh", "bash", "curl", "wget", "node", "apache2"] {
            std::os::unix::fs::symlink(BIN, dir.path().join(name)).unwrap();
        }
        Names { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The binary that ships in the image: the release build for this machine's musl target. Its
/// allocator (musl's) decides what memory figures mean, so memory is measured on it.
pub fn shipping_binary() -> PathBuf {
    let target = if cfg!(target_arch = "aarch64") { "aarch64-unknown-linux-musl" } else { "x86_64-unknown-linux-musl" };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace)
        .args(["build", "--release", "-p", "server", "--target", target])
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "building the shipping server failed (is the {target} target installed? `bash .ci/install`)"
    );
    // Where that build put it: a relative CARGO_TARGET_DIR is taken from the workspace, as cargo does here.
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), |dir| workspace.join(dir));
    target_dir.join(target).join("release/server")
}

/// Resident memory of a process, in KiB.
pub fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// Waits up to `within` for a process's descriptors to fall back to `idle` (give or take a few).
pub fn fds_return_to(pid: u32, idle: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    while open_fds(pid) > idle + 5 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    open_fds(pid)
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    stream
}

/// Sends `request` as raw bytes and reads until the server closes the connection.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// Sends raw bytes and parses the one response; the body is everything after the head.
pub fn send(addr: SocketAddr, request: &[u8]) -> Reply {
    let bytes = raw(addr, request);
    parse(&bytes).unwrap_or_else(|| {
        panic!("unparseable response to {:?}: {:?}", String::from_utf8_lossy(request), String::from_utf8_lossy(&bytes))
    })
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes())
}

/// Parses the response at the start of `bytes`; its body is everything after the head.
pub fn parse(bytes: &[u8]) -> Option<Reply> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let text = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect();
    Some(Reply { status, headers, body: bytes[end + 4..].to_vec() })
}

/// Runs `server --probe` with `args`, returning its output and how long it took.
pub fn probe(args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let started = Instant::now();
    let output = Command::new(BIN)
        .arg("--probe")
        .args(args)
        .env_remove("PORT")
        .envs(env.iter().copied())
        .output()
        .expect("run probe");
    (output, started.elapsed())
}
