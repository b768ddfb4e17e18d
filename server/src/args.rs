//! Settings for both modes of the binary, from flags and environment variables.
//!
//! Hand-written rather than clap: every byte of this binary ships in every image.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
usage: server [--port N] [--root DIR] [--access-log] [--max-connections N]
       server --probe [--port N] [--path /healthcheck.html] [--timeout SECONDS]

Serves the files under DIR from memory; `--probe` checks a running server instead.

  --port N             port to listen on / to probe (env PORT, default 80)
  --root DIR           document root (env DOCUMENT_ROOT, default /public_html)
  --access-log         log one line per request (env ACCESS_LOG=1)
  --max-connections N  open connections at once (env MAX_CONNECTIONS, default 1024)
  --probe              GET http://127.0.0.1:PORT/PATH; exit 0 on 2xx, 1 otherwise
  --path PATH          path to probe (default /healthcheck.html)
  --timeout SECONDS    probe timeout (default 2)
  -h, --help           this text
  -V, --version        the version";

pub const DEFAULT_PORT: u16 = 80;
pub const DEFAULT_ROOT: &str = "/public_html";
pub const DEFAULT_PROBE_PATH: &str = "/healthcheck.html";

#[derive(Debug, PartialEq)]
pub enum Mode {
    Serve(ServeConfig),
    Probe(ProbeConfig),
    Help,
    Version,
}

#[derive(Debug, PartialEq)]
pub struct ServeConfig {
    pub port: u16,
    pub root: PathBuf,
    pub access_log: bool,
    pub max_connections: usize,
    /// A client must send a whole request head within this time.
    pub header_timeout: Duration,
    /// A connection with no bytes moving either way for this long is closed. Longer than an
    /// ALB's default 60 s idle timeout, so the load balancer always closes first.
    pub idle_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
}

#[derive(Debug, PartialEq)]
pub struct ProbeConfig {
    pub port: u16,
    pub path: String,
    pub timeout: Duration,
}

/// A bad flag or value. In probe mode it still exits 1, as Docker reserves exit code 2.
#[derive(Debug, PartialEq)]
pub struct UsageError {
    pub message: String,
    pub probe: bool,
}

/// Parses `args` (without the program name); `env` looks up environment variables.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Mode, UsageError> {
    let args: Vec<OsString> = args.into_iter().collect();
    let probe = args.iter().any(|a| a == "--probe");
    let fail = |message: String| UsageError { message, probe };

    let mut port = None;
    let mut root = None;
    let mut access_log = None;
    let mut max_connections = None;
    let mut path = None;
    let mut timeout = None;

    let mut rest = args.into_iter();
    while let Some(arg) = rest.next() {
        let arg = arg
            .into_string()
            .map_err(|a| fail(format!("argument {a:?} is not valid UTF-8")))?;
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.to_owned())),
            _ => (arg, None),
        };
        let mut value = |name: &str| -> Result<String, UsageError> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => rest
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| fail(format!("{name} needs a value"))),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Mode::Help),
            "-V" | "--version" => return Ok(Mode::Version),
            "--probe" => {}
            "--port" => port = Some(parse_port(&value("--port")?, "--port", probe).map_err(fail)?),
            "--root" if !probe => root = Some(PathBuf::from(value("--root")?)),
            "--access-log" if !probe && inline.is_none() => access_log = Some(true),
            "--max-connections" if !probe => {
                max_connections = Some(parse_count(&value("--max-connections")?, "--max-connections").map_err(fail)?)
            }
            "--path" if probe => path = Some(parse_probe_path(&value("--path")?).map_err(fail)?),
            "--timeout" if probe => timeout = Some(parse_seconds(&value("--timeout")?, "--timeout").map_err(fail)?),
            "--root" | "--access-log" | "--max-connections" | "--path" | "--timeout" => {
                let needs = if probe { "is not valid with --probe" } else { "is only valid with --probe" };
                return Err(fail(format!("{flag} {needs}")));
            }
            other => return Err(fail(format!("unknown argument {other:?}"))),
        }
    }

    let env_string = |name: &str| -> Result<Option<String>, UsageError> {
        env(name)
            .map(|v| v.into_string().map_err(|_| fail(format!("{name} is not valid UTF-8"))))
            .transpose()
    };
    let port = match port {
        Some(p) => p,
        None => match env_string("PORT")? {
            Some(v) if !v.is_empty() => parse_port(&v, "PORT", probe).map_err(fail)?,
            _ => DEFAULT_PORT,
        },
    };

    if probe {
        return Ok(Mode::Probe(ProbeConfig {
            port,
            path: path.unwrap_or_else(|| DEFAULT_PROBE_PATH.to_owned()),
            timeout: timeout.unwrap_or(Duration::from_secs(2)),
        }));
    }

    let root = match root {
        Some(r) => r,
        None => env(
            "DOCUMENT_ROOT",
        )
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT)),
    };
    let access_log = match access_log {
        Some(on) => on,
        None => match env_string("ACCESS_LOG")?.as_deref() {
            None | Some("" | "0" | "false" | "no" | "off") => false,
            Some("1" | "true" | "yes" | "on") => true,
            Some(other) => return Err(fail(format!("ACCESS_LOG={other:?}: use 1 or 0"))),
        },
    };
    let max_connections = match max_connections {
        Some(n) => n,
        None => match env_string("MAX_CONNECTIONS")? {
            Some(v) if !v.is_empty() => parse_count(&v, "MAX_CONNECTIONS").map_err(fail)?,
            _ => 1024,
        },
    };
    Ok(Mode::Serve(ServeConfig {
        port,
        root,
        access_log,
        max_connections,
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(75),
        shutdown_grace: Duration::from_secs(5),
    }))
}

fn parse_port(value: &str, name: &str, probe: bool) -> Result<u16, String> {
    match value.trim().parse::<u16>() {
        Ok(0) if probe => Err(format!("{name}=0 cannot be probed: give the server's port (1-65535)")),
        Ok(port) => Ok(port),
        Err(_) => Err(format!("invalid {name} value {value:?}: expected a port number 0-65535")),
    }
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

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Mode, UsageError> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse(args.iter().map(OsString::from), move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| OsString::from(v))
        })
    }

    fn serve(args: &[&str], env: &[(&str, &str)]) -> ServeConfig {
        match run(args, env) {
            Ok(Mode::Serve(c)) => c,
            other => panic!("expected serve mode, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = serve(&[], &[]);
        assert_eq!((c.port, c.root.to_str(), c.access_log, c.max_connections), (80, Some("/public_html"), false, 1024));
    }

    #[test]
    fn flags_beat_environment() {
        let c = serve(&["--port=8080", "--root", "/srv"], &[("PORT", "9000"), ("DOCUMENT_ROOT", "/x")]);
        assert_eq!((c.port, c.root.to_str()), (8080, Some("/srv")));
        let c = serve(&[], &[("PORT", "9000"), ("DOCUMENT_ROOT", "/x"), ("ACCESS_LOG", "1")]);
        assert_eq!((c.port, c.root.to_str(), c.access_log), (9000, Some("/x"), true));
    }

    #[test]
    fn probe_settings() {
        match run(&["--probe", "--path", "/index.html", "--timeout", "0.5"], &[("PORT", "81")]) {
            Ok(Mode::Probe(p)) => assert_eq!(p, ProbeConfig { port: 81, path: "/index.html".into(), timeout: Duration::from_millis(500) }),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_values_name_the_problem() {
        let e = run(&[], &[("PORT", "eighty")]).unwrap_err();
        assert!(e.message.contains("PORT") && e.message.contains("eighty") && !e.probe, "{e:?}");
        let e = run(&["--probe"], &[("PORT", "70000")]).unwrap_err();
        assert!(e.probe, "probe-mode errors must be flagged so they exit 1, not 2");
        assert!(run(&["--bogus"], &[]).unwrap_err().message.contains("--bogus"));
        assert!(run(&["--port"], &[]).unwrap_err().message.contains("needs a value"));
        assert!(run(&["--path", "/x"], &[]).unwrap_err().message.contains("only valid with --probe"));
        assert!(run(&["--probe", "--path", "x"], &[]).is_err());
        assert!(run(&["--probe", "--timeout", "0"], &[]).is_err());
        assert!(run(&["--probe", "--port", "0"], &[]).is_err());
        assert!(run(&[], &[("ACCESS_LOG", "maybe")]).is_err());
    }
}
