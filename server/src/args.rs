//! Settings for both modes of the binary, from flags and environment variables.
//!
//! Hand-written rather than clap: every byte of this binary ships in every image.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::ports;
use server::baked;
pub use server::baked::BakedPorts;

pub const USAGE: &str = "\
usage: server [--port N] [--root DIR] [--strict] [--access-log] [--max-connections N]
       server --probe [--port N] [--path /healthcheck.html] [--timeout SECONDS]

Serves the files under DIR from memory; `--probe` checks a running server instead.

  --port N             listen on port N only (default: the ports below)
  --root DIR           document root (env DOCUMENT_ROOT, default /public_html)
  --strict             404 for missing files, 400 for bad paths (env PLACEHOLDER_STRICT=1);
                       by default every GET and HEAD gets a page, the index page if nothing else
  --access-log         log one line per request (env ACCESS_LOG=1)
  --max-connections N  open connections at once (env MAX_CONNECTIONS, default 10000)
  --probe              GET http://127.0.0.1:PORT/PATH; exit 0 on 2xx, 1 otherwise
                       (port: --port, env PORT, else PLACEHOLDER_PORTS, the ports
                       listening here, 80: the first that answers)
  --path PATH          path to probe (default /healthcheck.html)
  --timeout SECONDS    probe timeout (default 2)
  -h, --help           this text
  -V, --version        the version

Without --port it listens on env PORT (and SERVER_PORT, ASPNETCORE_URLS...), on the container's
ports from ECS task metadata (ECS_CONTAINER_METADATA_URI_V4), and when the metadata names none, on
env PLACEHOLDER_PORTS (comma-separated; NAME:PORT only for the container NAME, by the metadata's
name); else on what the task's other containers leave free (the ports web frameworks default to,
and 80, when it is alone or beside known agents or other placeholders), or 80 with no
metadata. A health check naming a port on localhost has it opened. Arguments meant for the real
image are logged and ignored, but for a port they name (--bind 0.0.0.0:8001, --port 3000).
PLACEHOLDER_STATUS=302 answers load-balancer health checks (User-Agent ELB-HealthChecker)
with that status instead of 200, for target groups that accept nothing else.

Under another name it stands in for that program: as sh/bash/ash/dash, curl or wget it runs
health-check commands against this server; as anything else (node, npm, java...) it checks
this server's health, as a health-check command naming that program would. As a container's
main process (PID 1, or the child of an init) it always serves, under any name, adding a
`--port N` among its arguments to the ports.";

pub const DEFAULT_PORT: u16 = 80;
pub const DEFAULT_ROOT: &str = "/public_html";
pub const DEFAULT_PROBE_PATH: &str = "/healthcheck.html";
/// A connection waiting for a request costs about 1.1 KiB (measured: `server/tests/flood.rs`), so
/// 10,000 of them stay under 16 MiB resident.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

#[derive(Debug, PartialEq)]
pub enum Mode {
    Serve(ServeConfig),
    Probe(ProbeConfig),
    Help,
    Version,
}

#[derive(Debug, PartialEq)]
pub struct ServeConfig {
    /// `--port`: this port and no other.
    pub port: Option<u16>,
    pub ports: PortSources,
    pub root: PathBuf,
    pub strict: bool,
    /// `PLACEHOLDER_STATUS`: the status a load balancer's health checks get instead of 200, for
    /// target groups whose matcher accepts only redirects or errors (baked in at publish).
    pub balancer_status: Option<u16>,
    pub access_log: bool,
    pub max_connections: usize,
    /// A client must send a whole request head within this time.
    pub header_timeout: Duration,
    /// A connection with no bytes moving either way for this long is closed. Longer than an
    /// ALB's default 60 s idle timeout, so the load balancer always closes first.
    pub idle_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Arguments and settings that were ignored, one line each, for the start-up log.
    pub ignored: Vec<String>,
}

/// Where the ports come from when `--port` does not name one.
#[derive(Debug, Default, PartialEq)]
pub struct PortSources {
    /// Env `PORT` and the variables frameworks take their port from (`SERVER_PORT`,
    /// `ASPNETCORE_URLS`...), and the ports a stand-in's arguments name (`--port 3000`,
    /// `-b 0.0.0.0:8000`): bound at once.
    pub given: Vec<u16>,
    /// `ECS_CONTAINER_METADATA_URI_V4`: the container's port mappings are asked for there.
    pub metadata_uri: Option<String>,
    /// Env `PLACEHOLDER_PORTS` (baked in at publish): used when there is no metadata or it names
    /// no port.
    pub baked: BakedPorts,
}

#[derive(Debug, PartialEq)]
pub struct ProbeConfig {
    /// `--port` or env `PORT`; without either, the ports the server is likely to listen on.
    pub port: Option<u16>,
    pub path: String,
    pub timeout: Duration,
}

/// A bad flag or value for `--probe`. It exits 1, as Docker reserves exit code 2.
#[derive(Debug, PartialEq)]
pub struct UsageError {
    pub message: String,
}

/// Parses the arguments of the `server` program (without the program name); `env` looks up
/// environment variables. Only `--probe` is strict: serving must start whatever the arguments.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Mode, UsageError> {
    let args: Vec<OsString> = args.into_iter().collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Mode::Help);
    }
    if args.iter().any(|a| a == "-V" || a == "--version") {
        return Ok(Mode::Version);
    }
    if args.iter().any(|a| a == "--probe") {
        return parse_probe(args, env).map(Mode::Probe);
    }
    let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    Ok(Mode::Serve(serve_config(&args, true, env)))
}

/// Serve settings. With `own_flags` the arguments are the `server` program's flags; without, they
/// belong to the program this one stands in for. Either way, arguments meant for the real image
/// are ignored but for the ports they name (`--port 3000`, `--bind 0.0.0.0:8001`): a definition's
/// `command` is appended to the image's entry point, `/server`, and on Fargate it can be all that
/// names the service's port.
pub fn serve_config(args: &[String], own_flags: bool, env: impl Fn(&str) -> Option<OsString>) -> ServeConfig {
    let mut ignored = Vec::new();
    let mut foreign = Vec::new();
    let mut port = None;
    let mut root = None;
    let mut strict = false;
    let mut access_log = false;
    let mut max_connections = None;

    if own_flags {
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
                _ => (arg.as_str(), None),
            };
            let mut value = || inline.clone().or_else(|| rest.next().cloned());
            match flag {
                "--port" => match value().map(|v| parse_port(&v, "--port")) {
                    Some(Ok(p)) => port = Some(p),
                    Some(Err(e)) => ignored.push(format!("ignoring {e}")),
                    None => ignored.push("ignoring --port: it needs a value".into()),
                },
                "--root" => match value() {
                    Some(dir) => root = Some(PathBuf::from(dir)),
                    None => ignored.push("ignoring --root: it needs a value".into()),
                },
                "--max-connections" => match value().map(|v| parse_count(&v, "--max-connections")) {
                    Some(Ok(n)) => max_connections = Some(n),
                    Some(Err(e)) => ignored.push(format!("ignoring {e}")),
                    None => ignored.push("ignoring --max-connections: it needs a value".into()),
                },
                "--access-log" if inline.is_none() => access_log = true,
                "--strict" if inline.is_none() => strict = true,
                _ => foreign.push(arg.clone()),
            }
        }
    } else {
        foreign = args.to_vec();
    }
    let mut given = foreign_ports(&foreign);
    if !foreign.is_empty() {
        ignored.push(format!("ignoring arguments meant for the real image: {}", foreign.join(" ")));
    }

    let env_string = |name: &str| env(name).map(|v| v.to_string_lossy().trim().to_owned()).filter(|v| !v.is_empty());
    if let Some(value) = env_string("PORT") {
        match parse_port(&value, "PORT") {
            Ok(0) => ignored.push("ignoring PORT=0: it names no port".into()),
            Ok(p) if !given.contains(&p) => given.insert(0, p),
            Ok(_) => {}
            Err(e) => ignored.push(format!("ignoring {e}")),
        }
    }
    for name in ports::OWN_PORT_VARIABLES {
        for port in env_string(name).map(|value| ports::ports_in_value(&value)).unwrap_or_default() {
            if !given.contains(&port) {
                given.push(port);
            }
        }
    }
    let mut baked = BakedPorts::default();
    if let Some(list) = env_string(baked::PORTS) {
        match BakedPorts::parse(&list) {
            Ok(ports) => baked = ports,
            Err(e) => ignored.push(e),
        }
    }
    let ports = PortSources { given, metadata_uri: env_string("ECS_CONTAINER_METADATA_URI_V4"), baked };

    let root = root.unwrap_or_else(|| PathBuf::from(env_string("DOCUMENT_ROOT").as_deref().unwrap_or(DEFAULT_ROOT)));
    let mut switch = |name: &str| match env_string(name).as_deref() {
        None | Some("0" | "false" | "no" | "off") => false,
        Some("1" | "true" | "yes" | "on") => true,
        Some(other) => {
            ignored.push(format!("ignoring {name}={other:?}: use 1 or 0"));
            false
        }
    };
    let strict = strict || switch("PLACEHOLDER_STRICT");
    let access_log = access_log || switch("ACCESS_LOG");
    let balancer_status = env_string(baked::STATUS).and_then(|value| match value.parse::<u16>() {
        Ok(code @ 200..=599) => Some(code),
        _ => {
            ignored.push(format!("ignoring {}={value:?}: use an HTTP status such as 302", baked::STATUS));
            None
        }
    });
    let max_connections = max_connections.unwrap_or_else(|| match env_string("MAX_CONNECTIONS") {
        Some(v) => parse_count(&v, "MAX_CONNECTIONS").unwrap_or_else(|e| {
            ignored.push(format!("ignoring {e}"));
            DEFAULT_MAX_CONNECTIONS
        }),
        None => DEFAULT_MAX_CONNECTIONS,
    });
    ServeConfig {
        port,
        ports,
        root,
        strict,
        balancer_status,
        access_log,
        max_connections,
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(75),
        shutdown_grace: Duration::from_secs(5),
        ignored,
    }
}

/// Ports a stand-in's arguments name, also inside a quoted command such as
/// `sh -c "npm start -- --port 3000"`: `--port N` and `-p N` (Node, Rails, Puma, `http-server`),
/// `--server.port=N` and `-Dserver.port=N` (Spring), `--http-port N`, an address after `--bind`,
/// `-b`, `--listen`, `--urls` or `--address` (Gunicorn, ASP.NET Core, Go servers), and a bare
/// `0.0.0.0:8000` (`manage.py runserver 0.0.0.0:8000`).
fn foreign_ports(args: &[String]) -> Vec<u16> {
    let words: Vec<&str> =
        args.iter().flat_map(|a| a.split_whitespace()).map(|w| w.trim_matches(|c| c == '"' || c == '\'')).collect();
    let mut ports = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) if flag.starts_with('-') => (flag, Some(value)),
            _ => (*word, None),
        };
        let value = || inline.or_else(|| words.get(i + 1).copied());
        let found = match flag {
            "--port" | "-p" | "--http-port" | "--server.port" | "-Dserver.port" | "--listen-port" => {
                value().and_then(|v| v.parse::<u16>().ok())
            }
            "--bind" | "-b" | "--listen" | "--urls" | "--address" | "--addr" | "--http" => {
                value().and_then(|v| ports::ports_in_value(v).first().copied())
            }
            _ if inline.is_none() && is_local_address(word) => ports::ports_in_value(word).first().copied(),
            _ => None,
        };
        if let Some(port) = found.filter(|p| *p != 0 && !ports.contains(p)) {
            ports.push(port);
        }
    }
    ports
}

/// `0.0.0.0:8000`, `[::]:8000`, `127.0.0.1:8000`, `localhost:8000`, `:8000`, `http://0.0.0.0:8000`:
/// an address this container listens on, not another host's.
fn is_local_address(word: &str) -> bool {
    let address = word.split_once("://").map_or(word, |(_, rest)| rest).trim_end_matches('/');
    let Some((host, port)) = address.rsplit_once(':') else { return false };
    matches!(host, "" | "0.0.0.0" | "[::]" | "127.0.0.1" | "localhost" | "*" | "+") && port.parse::<u16>().is_ok()
}

/// `PLACEHOLDER_PORTS`, every port once: `NAME:PORT` and `PORT/tcp` are read as PORT, `PORT/udp`
/// is skipped.
pub fn parse_port_list(list: &str) -> Result<Vec<u16>, String> {
    Ok(BakedPorts::parse(list)?.all())
}

fn parse_probe(args: Vec<OsString>, env: impl Fn(&str) -> Option<OsString>) -> Result<ProbeConfig, UsageError> {
    let fail = |message: String| UsageError { message };
    let mut port = None;
    let mut path = None;
    let mut timeout = None;

    let mut rest = args.into_iter();
    while let Some(arg) = rest.next() {
        let arg = arg.into_string().map_err(|a| fail(format!("argument {a:?} is not valid UTF-8")))?;
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.to_owned())),
            _ => (arg, None),
        };
        let mut value = |name: &str| -> Result<String, UsageError> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => {
                    rest.next().and_then(|v| v.into_string().ok()).ok_or_else(|| fail(format!("{name} needs a value")))
                }
            }
        };
        match flag.as_str() {
            "--probe" => {}
            "--port" => port = Some(Some(parse_probe_port(&value("--port")?, "--port").map_err(fail)?)),
            "--path" => path = Some(parse_probe_path(&value("--path")?).map_err(fail)?),
            "--timeout" => timeout = Some(parse_seconds(&value("--timeout")?, "--timeout").map_err(fail)?),
            "--root" | "--access-log" | "--max-connections" | "--strict" => {
                return Err(fail(format!("{flag} is not valid with --probe")));
            }
            other => return Err(fail(format!("unknown argument {other:?}"))),
        }
    }

    let port = match port {
        Some(p) => p,
        None => match env("PORT").map(|v| v.into_string()) {
            Some(Err(_)) => return Err(fail("PORT is not valid UTF-8".into())),
            Some(Ok(v)) if !v.is_empty() => Some(parse_probe_port(&v, "PORT").map_err(fail)?),
            _ => None,
        },
    };
    Ok(ProbeConfig {
        port,
        path: path.unwrap_or_else(|| DEFAULT_PROBE_PATH.to_owned()),
        timeout: timeout.unwrap_or(Duration::from_secs(2)),
    })
}

fn parse_probe_port(value: &str, name: &str) -> Result<u16, String> {
    match parse_port(value, name)? {
        0 => Err(format!("{name}=0 cannot be probed: give the server's port (1-65535)")),
        port => Ok(port),
    }
}

fn parse_port(value: &str, name: &str) -> Result<u16, String> {
    value.trim().parse::<u16>().map_err(|_| format!("invalid {name} value {value:?}: expected a port number 0-65535"))
}

fn parse_count(value: &str, name: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("invalid {name} value {value:?}: expected a positive whole number")),
    }
}

fn parse_seconds(value: &str, name: &str) -> Result<Duration, String> {
    match value.trim().parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 3600.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("invalid {name} value {value:?}: expected seconds, e.g. 2 or 0.5")),
    }
}

fn parse_probe_path(value: &str) -> Result<String, String> {
    if value.starts_with('/') && !value.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        Ok(value.to_owned())
    } else {
        Err(format!("invalid --path {value:?}: expected an absolute path such as /healthcheck.html"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(env: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| OsString::from(v))
    }

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Mode, UsageError> {
        parse(args.iter().map(OsString::from), env_of(env))
    }

    fn serve(args: &[&str], env: &[(&str, &str)]) -> ServeConfig {
        match run(args, env) {
            Ok(Mode::Serve(c)) => c,
            other => panic!("expected serve mode, got {other:?}"),
        }
    }

    fn stand_in(args: &[&str], env: &[(&str, &str)]) -> ServeConfig {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        serve_config(&args, false, env_of(env))
    }

    #[test]
    fn defaults() {
        let c = serve(&[], &[]);
        assert_eq!(
            (c.port, c.root.to_str(), c.access_log, c.max_connections, c.strict),
            (None, Some("/public_html"), false, DEFAULT_MAX_CONNECTIONS, false)
        );
        assert_eq!(c.ports, PortSources { given: vec![], metadata_uri: None, baked: BakedPorts::default() });
        assert!(c.ignored.is_empty());
    }

    #[test]
    fn flags_beat_environment() {
        let c = serve(&["--port=8080", "--root", "/srv"], &[("PORT", "9000"), ("DOCUMENT_ROOT", "/x")]);
        assert_eq!((c.port, c.root.to_str()), (Some(8080), Some("/srv")));
        let c = serve(
            &[],
            &[("PORT", "9000"), ("DOCUMENT_ROOT", "/x"), ("ACCESS_LOG", "1"), ("PLACEHOLDER_STRICT", "yes")],
        );
        assert_eq!(
            (c.port, c.ports.given, c.root.to_str(), c.access_log, c.strict),
            (None, vec![9000], Some("/x"), true, true)
        );
        assert!(serve(&["--strict"], &[]).strict);
    }

    #[test]
    fn port_sources_from_the_environment() {
        let c = serve(
            &[],
            &[
                ("PLACEHOLDER_PORTS", "api:8080, 9090/tcp,53/udp,8080"),
                ("ECS_CONTAINER_METADATA_URI_V4", "http://169.254.170.2/v4/x"),
            ],
        );
        assert_eq!(c.ports.baked.all(), vec![8080, 9090]);
        assert_eq!(c.ports.metadata_uri.as_deref(), Some("http://169.254.170.2/v4/x"));
        let c = serve(&[], &[("PLACEHOLDER_PORTS", "eighty"), ("PORT", "0")]);
        assert_eq!((c.ports.baked.all(), c.ports.given), (vec![], vec![]));
        assert_eq!(c.ignored.len(), 2, "{:?}", c.ignored);
    }

    #[test]
    fn ports_baked_for_one_container_are_that_containers_alone() {
        let baked = BakedPorts::parse("frontend:3000,backend:8080,backend:5432,9100").unwrap();
        assert_eq!(baked.all(), vec![3000, 8080, 5432, 9100]);
        assert_eq!(baked.for_container(Some("frontend")), vec![3000, 9100]);
        assert_eq!(baked.for_container(Some("backend")), vec![8080, 5432, 9100]);
        // Another container of the same image: only the ports for every container.
        assert_eq!(baked.for_container(Some("worker")), vec![9100]);
        assert_eq!(BakedPorts::parse("web:8080").unwrap().for_container(Some("worker")), Vec::<u16>::new());
        // No name known (no metadata): every port.
        assert_eq!(baked.for_container(None), baked.all());
        assert_eq!(BakedPorts::parse(":8080,3000").unwrap().for_container(Some("web")), vec![8080, 3000]);
        // An address or a host port before the colon names no container.
        for written in ["0.0.0.0:8080", "localhost:8080", "9090:8080", "[::]:8080"] {
            assert_eq!(BakedPorts::parse(written).unwrap().for_container(Some("web")), vec![8080], "{written}");
        }
    }

    #[test]
    fn serving_starts_whatever_the_arguments() {
        let c = serve(&["npm", "start"], &[]);
        assert_eq!(c.ignored, vec!["ignoring arguments meant for the real image: npm start".to_string()]);
        let c = serve(
            &["--port", "http", "--verbose", "--max-connections", "0", "--path", "/x"],
            &[("PORT", "eighty"), ("ACCESS_LOG", "maybe")],
        );
        assert_eq!(
            (c.port, c.max_connections, c.ports.given.len()),
            (None, DEFAULT_MAX_CONNECTIONS, 0),
            "a bad --port must not bind a random port"
        );
        assert!(c.ignored.iter().any(|l| l.contains("--port value \"http\"")), "{:?}", c.ignored);
        assert!(c.ignored.iter().any(|l| l.contains("--verbose --path /x")), "{:?}", c.ignored);
        assert!(c.ignored.iter().any(|l| l.contains("PORT value \"eighty\"")), "{:?}", c.ignored);
        assert!(c.ignored.iter().any(|l| l.contains("ACCESS_LOG")), "{:?}", c.ignored);
        assert_eq!(serve(&["--port"], &[]).port, None);
    }

    #[test]
    fn a_command_appended_to_the_server_names_its_port() {
        // ECS appends a definition's `command` to the image's entry point: on Fargate, with no
        // ports in the task metadata, the port it names may be the only one anything names.
        let c = serve(&["gunicorn", "hello_django.wsgi:application", "--bind", "0.0.0.0:8001"], &[]);
        assert_eq!((c.port, c.ports.given), (None, vec![8001]));
        assert_eq!(c.ignored, vec!["ignoring arguments meant for the real image: gunicorn hello_django.wsgi:application --bind 0.0.0.0:8001".to_string()]);
        assert_eq!(
            serve(&["sh", "-c", "gunicorn app:app --bind 0.0.0.0:8001"], &[("PORT", "9000")]).ports.given,
            vec![9000, 8001]
        );
        assert_eq!(serve(&["python", "manage.py", "runserver", "0.0.0.0:8000"], &[]).ports.given, vec![8000]);
    }

    #[test]
    fn a_stand_in_takes_only_a_port_from_its_arguments() {
        let c = stand_in(&["-D", "FOREGROUND"], &[]);
        assert_eq!((c.port, c.ports.given.clone(), c.ignored.len()), (None, vec![], 1));
        assert_eq!(stand_in(&["server.js", "--port", "3000", "--root", "/x"], &[]).ports.given, vec![3000]);
        assert_eq!(stand_in(&["--port=3001"], &[("PORT", "8080")]).ports.given, vec![8080, 3001]);
        assert_eq!(stand_in(&["-c", "npm start -- --port 3002"], &[]).ports.given, vec![3002]);
        assert_eq!(stand_in(&["--port", "x", "--port=0", "--port"], &[]).ports.given, Vec::<u16>::new());
        assert_eq!(stand_in(&["--root", "/srv"], &[]).root.to_str(), Some("/public_html"));
    }

    #[test]
    fn a_stand_in_finds_ports_the_way_real_launchers_take_them() {
        for (args, port) in [
            (&["server", "-p", "3000"][..], 3000),
            (&["-Dserver.port=8081", "-jar", "app.jar"][..], 8081),
            (&["-jar", "app.jar", "--server.port=8082"][..], 8082),
            (&["app.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3"][..], 8000),
            (&["-b", ":8083"][..], 8083),
            (&["--urls", "http://+:5000"][..], 5000),
            (&["manage.py", "runserver", "0.0.0.0:8001"][..], 8001),
            (&["-c", "exec gunicorn -b '[::]:8002' app:app"][..], 8002),
            (&["main:app", "--host", "0.0.0.0", "--port", "8004"][..], 8004),
        ] {
            assert_eq!(stand_in(args, &[]).ports.given, vec![port], "{args:?}");
        }
        for args in
            [&["-p", "print(1)"][..], &["--workers", "3"][..], &["postgres://db:5432/app"][..], &["redis:6379"][..]]
        {
            assert_eq!(stand_in(args, &[]).ports.given, Vec::<u16>::new(), "{args:?}");
        }
    }

    #[test]
    fn framework_port_variables_are_given_ports() {
        let c = serve(
            &[],
            &[("SERVER_PORT", "8080"), ("ASPNETCORE_URLS", "http://+:5000"), ("PORT", "3000"), ("DB_PORT", "5432")],
        );
        assert_eq!(c.ports.given, vec![3000, 8080, 5000]);
    }

    #[test]
    fn help_and_version_anywhere() {
        assert_eq!(run(&["npm", "--help"], &[]), Ok(Mode::Help));
        assert_eq!(run(&["-V"], &[]), Ok(Mode::Version));
    }

    #[test]
    fn probe_settings() {
        match run(&["--probe", "--path", "/index.html", "--timeout", "0.5"], &[("PORT", "81")]) {
            Ok(Mode::Probe(p)) => assert_eq!(
                p,
                ProbeConfig { port: Some(81), path: "/index.html".into(), timeout: Duration::from_millis(500) }
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn probe_stays_strict() {
        let e = run(&["--probe"], &[("PORT", "70000")]).unwrap_err();
        assert!(e.message.contains("PORT") && e.message.contains("70000"), "{e:?}");
        assert!(run(&["--probe", "--bogus"], &[]).unwrap_err().message.contains("--bogus"));
        assert!(run(&["--probe", "--port"], &[]).unwrap_err().message.contains("needs a value"));
        assert!(run(&["--probe", "--root", "/x"], &[]).unwrap_err().message.contains("not valid with --probe"));
        assert!(run(&["--probe", "--path", "x"], &[]).is_err());
        assert!(run(&["--probe", "--timeout", "0"], &[]).is_err());
        assert!(run(&["--probe", "--port", "0"], &[]).is_err());
    }
}
