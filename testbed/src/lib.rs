//! The real services tests run against: the Docker engine, a registry with htpasswd auth, moto's
//! ECR API, and arm64 emulation. Each service is checked or started here and stopped when its
//! handle drops; a service that cannot be had is an error, never a silent skip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;

mod ecs;
mod faults;
mod pages;
mod rules;
mod terraform;
pub use ecs::Scheduler;
pub use faults::{CutProxy, Endpoint, Fault, FaultyEcr, HttpProxy, Request, Verdict};
pub use rules::EcrRules;
pub use terraform::Terraform;

/// The registry user and password that moto's GetAuthorizationToken hands out for its default
/// account, so a push with moto's token is accepted by the test registry.
pub const ECR_USER: &str = "AWS";
pub const MOTO_PASSWORD: &str = "123456789012-auth-token";
pub const MOTO_ACCOUNT: &str = "123456789012";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

// ---------------------------------------------------------------- Docker engine

static DOCKERD: Mutex<()> = Mutex::new(());

/// Makes sure a Docker engine answers: `DOCKER_HOST` if set, else the default socket, starting
/// `dockerd` (no bridge, no iptables: containers use network `none` or `host`) when none does.
/// A dockerd started here keeps running for later tests, as a system service would.
pub fn docker_engine() -> Result<()> {
    let _once = DOCKERD.lock().unwrap_or_else(|e| e.into_inner());
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        if engine_answers(&host) {
            return Ok(());
        }
        bail!("DOCKER_HOST={host} does not answer: start that engine or unset DOCKER_HOST");
    }
    let default = "unix:///var/run/docker.sock";
    if engine_answers(default) {
        return Ok(());
    }
    let log_path = std::env::temp_dir().join("testbed-dockerd.log");
    let log = std::fs::File::create(&log_path)?;
    let mut command = Command::new("dockerd");
    command
        .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own session, so it outlives this test process like a system service.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    command
        .spawn()
        .context("no Docker engine answers and `dockerd` could not be started (run `bash .ci/install` as root)")?;
    wait_for(Duration::from_secs(60), || engine_answers(default))
        .with_context(|| format!("dockerd did not answer within 60 s; its log is {}", log_path.display()))
}

fn engine_answers(host: &str) -> bool {
    let request = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";
    let mut reply = String::new();
    let ok = if let Some(path) = host.strip_prefix("unix://") {
        UnixStream::connect(path).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(request)?;
            s.read_to_string(&mut reply)
        })
    } else if let Some(address) = host.strip_prefix("tcp://") {
        TcpStream::connect(address).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(request)?;
            s.read_to_string(&mut reply)
        })
    } else {
        return false;
    };
    ok.is_ok() && reply.starts_with("HTTP/1.") && reply.contains(" 200 ")
}

// ---------------------------------------------------------------- arm64 emulation

/// Makes sure the kernel runs arm64 binaries through qemu with the F (fix binary) flag, which
/// `FROM scratch` containers need: they have no interpreter inside.
pub fn arm64_emulation() -> Result<()> {
    let entry = Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64");
    let ready = || {
        std::fs::read_to_string(entry)
            .map(|text| text.starts_with("enabled") && text.lines().any(|l| l.starts_with("flags:") && l.contains('F')))
            .unwrap_or(false)
    };
    if ready() {
        return Ok(());
    }
    if !Path::new("/proc/sys/fs/binfmt_misc/register").exists() {
        let _ = Command::new("mount").args(["-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"]).status();
    }
    let _ = Command::new("update-binfmts").args(["--enable", "qemu-aarch64"]).status();
    if ready() {
        return Ok(());
    }
    bail!("arm64 emulation is not available: install qemu-user-static and binfmt-support (`bash .ci/install`)")
}

// ---------------------------------------------------------------- helpers

/// A loopback port nothing listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
    bail!("not ready within {limit:?}")
}

/// Spawns a service that dies with the thread that started it, even if the test aborts. Start
/// services on the test's own thread (not `spawn_blocking`, whose threads come and go).
fn spawn_service(command: &mut Command, log: &Path) -> Result<Child> {
    let file = std::fs::File::create(log)?;
    command.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Ok(command.spawn()?)
}

/// Sends one HTTP/1.0 request to `127.0.0.1:port` and returns the status code.
pub fn http_status(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    let text = String::from_utf8_lossy(&head);
    text.get(9..12).and_then(|s| s.parse().ok()).with_context(|| format!("not an HTTP answer: {text:?}"))
}

pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// A service process and its scratch directory; both go when this drops.
struct Service {
    child: Child,
    dir: tempfile::TempDir,
}

impl Service {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `make(dir, port)` on a free port until `ready(port)`. A service that exits at once has
/// probably lost its port to another process between our probe and its bind: try another.
fn start_service(
    name: &str,
    limit: Duration,
    mut make: impl FnMut(&Path, u16) -> Result<Command>,
    ready: impl Fn(u16) -> bool,
) -> Result<(Service, u16)> {
    let mut last_log = String::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let child = spawn_service(&mut make(dir.path(), port)?, &dir.path().join("log"))
            .with_context(|| format!("starting {name}"))?;
        let mut service = Service { child, dir };
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && !service.exited() {
            if ready(port) {
                return Ok((service, port));
            }
            thread::sleep(Duration::from_millis(50));
        }
        last_log = service.log();
        if !service.exited() {
            bail!("{name} did not become ready on port {port} within {limit:?}; its log:\n{last_log}");
        }
    }
    bail!("{name} exited at start three times; its last log:\n{last_log}")
}

// ---------------------------------------------------------------- registry

/// Debian's `docker-registry` (CNCF distribution) on a loopback port, with htpasswd auth for user
/// `AWS` and the given password. The engine treats 127.0.0.0/8 registries as insecure, so plain
/// HTTP pushes work.
pub struct Registry {
    service: Service,
    pub port: u16,
}

impl Registry {
    pub fn start(password: &str) -> Result<Registry> {
        let (service, port) = start_service(
            "docker-registry",
            Duration::from_secs(15),
            |dir, port| {
                let htpasswd = htpasswd(ECR_USER, password)?;
                std::fs::write(dir.join("htpasswd"), htpasswd)?;
                let config = format!(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: testbed-upload-state\nauth:\n  htpasswd:\n    realm: testbed\n    path: {htpasswd}\n",
                    data = dir.join("data").display(),
                    htpasswd = dir.join("htpasswd").display(),
                );
                std::fs::write(dir.join("config.yml"), config)?;
                Ok(registry_command(dir))
            },
            registry_ready,
        )?;
        Ok(Registry { service, port })
    }

    /// `127.0.0.1:PORT`, the registry host part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the registry (to test faults); `start_again` brings it back on the same port.
    pub fn stop(&mut self) {
        self.service.stop();
    }

    pub fn start_again(&mut self) -> Result<()> {
        self.service.child =
            spawn_service(&mut registry_command(self.service.dir.path()), &self.service.dir.path().join("log"))?;
        let port = self.port;
        wait_for(Duration::from_secs(15), || registry_ready(port)).context("the registry did not come back")
    }
}

fn registry_command(dir: &Path) -> Command {
    let mut command = Command::new("docker-registry");
    command.arg("serve").arg(dir.join("config.yml"));
    command
}

/// Up, and asking for credentials.
fn registry_ready(port: u16) -> bool {
    http_status(port, "GET", "/v2/", &[]).map(|s| s == 401).unwrap_or(false)
}

fn htpasswd(user: &str, password: &str) -> Result<String> {
    let mut child = Command::new("htpasswd")
        .args(["-iBn", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("htpasswd not found (apache2-utils; `bash .ci/install`)")?;
    child.stdin.take().unwrap().write_all(password.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("htpasswd failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8(output.stdout)?)
}

// ---------------------------------------------------------------- moto

/// moto's server, from the project's virtualenv, speaking the ECR API on a loopback port.
pub struct Moto {
    _running: Service, // dropping it stops moto
    pub port: u16,
}

impl Moto {
    pub fn start() -> Result<Moto> {
        let binary = workspace().join(".venv/bin/moto_server");
        if !binary.exists() {
            bail!("{} not found: run `bash .ci/install` to create the venv with moto[server]", binary.display());
        }
        let (service, port) = start_service(
            "moto_server",
            Duration::from_secs(60),
            |_, port| {
                let mut command = Command::new(&binary);
                command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                Ok(command)
            },
            |port| http_status(port, "GET", "/moto-api/", &[]).map(|s| s == 200).unwrap_or(false),
        )?;
        Ok(Moto { _running: service, port })
    }

    /// The value for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Registers `count` task definition families nobody publishes to (`service-0000`, ...: one
    /// container pulling its own repository's tag), as an account that runs many services has
    /// them. Straight to moto, eight at a time, signed only as far as moto reads a signature (the
    /// default account's access key and the region).
    pub fn crowd(&self, count: usize) -> Result<()> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed = std::sync::Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    loop {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if n >= count {
                            break;
                        }
                        if let Err(e) = self.register_crowd_member(n) {
                            *failed.lock().unwrap() = Some(e);
                            break;
                        }
                    }
                });
            }
        });
        match failed.into_inner().unwrap() {
            Some(e) => Err(e.context(format!("registering {count} task definition families in moto"))),
            None => Ok(()),
        }
    }

    fn register_crowd_member(&self, n: usize) -> Result<()> {
        let body = serde_json::json!({
            "family": format!("service-{n:04}"),
            "containerDefinitions": [{
                "name": "app", "memory": 256, "portMappings": [{ "containerPort": 3000 }],
                "image": format!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/service-{n:04}:1.0.{n}"),
            }],
        })
        .to_string();
        let request = faults::Request {
            method: "POST".into(),
            target: "/".into(),
            headers: "Host: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.1\r\n\
                      X-Amz-Target: AmazonEC2ContainerServiceV20141113.RegisterTaskDefinition\r\n\
                      Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/eu-west-1/ecs/aws4_request, \
                      SignedHeaders=host, Signature=0\r\n"
                .into(),
            body: body.into_bytes(),
        };
        let answer = faults::exchange(self.port, &request)?;
        match faults::parse_answer(&answer) {
            Some((200, _)) => Ok(()),
            Some((status, body)) => bail!("RegisterTaskDefinition: {status} {}", String::from_utf8_lossy(&body)),
            None => bail!("RegisterTaskDefinition: moto's answer is not HTTP"),
        }
    }

    /// Environment for a process that talks to this moto: endpoint, region and dummy credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", "eu-west-1".to_owned()),
            ("AWS_DEFAULT_REGION", "eu-west-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }
}

// ---------------------------------------------------------------- the whole bed

/// moto and a registry that accepts moto's token, on a running engine with arm64 emulation: what
/// `cargo xtask publish` needs, and the environment that points it there.
pub struct Bed {
    pub moto: Moto,
    pub registry: Registry,
    /// publish's cache of builds and proofs, empty: every bed starts as a fresh checkout would.
    pub cache: tempfile::TempDir,
}

impl Bed {
    pub fn start() -> Result<Bed> {
        docker_engine()?;
        arm64_emulation()?;
        Ok(Bed { moto: Moto::start()?, registry: Registry::start(MOTO_PASSWORD)?, cache: tempfile::tempdir()? })
    }

    /// ECS's scheduler in front of this bed's moto, judging images in its registry: put its
    /// `endpoint()` in `AWS_ENDPOINT_URL` for services that run their tasks.
    pub fn scheduler(&self) -> Result<Scheduler> {
        Scheduler::start(self.moto.port, self.registry.port, ECR_USER, MOTO_PASSWORD)
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = self.moto.env();
        env.push(("ECR_REGISTRY_ENDPOINT", format!("http://{}", self.registry.host())));
        env.push(("ECS_PLACEHOLDER_CACHE", self.cache.path().display().to_string()));
        env
    }
}

// ---------------------------------------------------------------- several accounts and regions

/// moto for every region, other accounts reached through STS AssumeRole from profiles in an AWS
/// config of its own (`[profile NAME]` with `role_arn` and `source_profile = base`), and a
/// registry per (account, region) target that accepts that account's moto token.
pub struct Accounts {
    pub moto: Moto,
    /// Per (account, region).
    pub registries: Vec<((String, String), Registry)>,
    home: tempfile::TempDir,
}

impl Accounts {
    /// `profiles`: (profile name, account, ECR API endpoint or `None` for moto itself);
    /// `targets`: the (account, region) pairs that need a registry.
    pub fn start(moto: Moto, profiles: &[(&str, &str, Option<String>)], targets: &[(&str, &str)]) -> Result<Accounts> {
        docker_engine()?;
        let mut registries = Vec::new();
        for (account, region) in targets {
            // moto's token for an account is `AWS:<account>-auth-token`.
            registries
                .push(((account.to_string(), region.to_string()), Registry::start(&format!("{account}-auth-token"))?));
        }
        let home = tempfile::tempdir()?;
        let aws = home.path().join(".aws");
        std::fs::create_dir(&aws)?;
        let moto_url = moto.endpoint();
        let mut config = format!("[profile base]\nregion = eu-west-1\nendpoint_url = {moto_url}\n");
        for (name, account, endpoint) in profiles {
            let endpoint = endpoint.clone().unwrap_or_else(|| moto_url.clone());
            config.push_str(&format!(
                "\n[profile {name}]\nrole_arn = arn:aws:iam::{account}:role/deploy\nsource_profile = base\nregion = eu-west-1\nendpoint_url = {endpoint}\n"
            ));
        }
        config.push_str(&format!("\n[profile nocreds]\nregion = eu-west-1\nendpoint_url = {moto_url}\n"));
        std::fs::write(aws.join("config"), config)?;
        std::fs::write(
            aws.join("credentials"),
            "[base]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
        )?;
        Ok(Accounts { moto, registries, home })
    }

    /// A directory for files the caller writes beside the AWS config (targets files).
    pub fn dir(&self) -> &Path {
        self.home.path()
    }

    /// Applies this world's AWS configuration to `command`: profiles only, no credentials or
    /// endpoint in the environment, a registry per target.
    pub fn configure(&self, command: &mut Command) {
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT_URL",
        ] {
            command.env_remove(name);
        }
        let endpoints: Vec<String> = self
            .registries
            .iter()
            .map(|((account, region), registry)| format!("{account}/{region}=http://{}", registry.host()))
            .collect();
        command
            .env("AWS_CONFIG_FILE", self.home.path().join(".aws/config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.home.path().join(".aws/credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("ECR_REGISTRY_ENDPOINT", endpoints.join(","))
            // publish's cache of builds and proofs starts empty, as in a fresh checkout.
            .env("ECS_PLACEHOLDER_CACHE", self.home.path().join("cache"));
    }
}
