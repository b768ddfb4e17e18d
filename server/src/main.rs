//! The placeholder image's only program, under many names: a static file server (`/server`, and
//! hard links named after the real image's launchers such as `node` or `apache2`), its own
//! health check (`--probe`), and the `sh`, `curl` and `wget` that health checks call.

mod args;
mod client;
mod conns;
mod control;
mod fetch;
#[cfg(test)]
mod fuzzing;
mod health;
mod json;
mod metadata;
mod notice;
mod ports;
mod probe;
#[cfg(any(test, feature = "fuzzing"))]
mod sandbox;
mod serve;
mod shell;
mod site;
mod wire;

use std::ffi::{OsStr, OsString};
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use args::{Mode, ServeConfig, UsageError};
use fetch::{Outcome, Streams, Tool};
use server::sidecars::Neighbour;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The longest a health-check command may run, whatever it asks for; Docker's own timeout
/// (ECS default 5 s) usually ends it sooner.
const CHECK_CAP: Duration = Duration::from_secs(30);

/// What the binary is, by the name it was started under (the basename of argv[0]).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Program {
    Shell,
    Curl,
    Wget,
    Server,
    /// Any other name: a launcher of the real image (`node`, `npm`, `/usr/sbin/apache2`...).
    StandIn,
}

/// The basename of argv[0].
fn program_name(argv0: &OsStr) -> String {
    argv0.to_string_lossy().rsplit('/').next().unwrap_or_default().to_owned()
}

impl Program {
    fn named(argv0: &OsStr) -> Program {
        match program_name(argv0).as_str() {
            "sh" | "bash" | "ash" | "dash" => Program::Shell,
            "curl" => Program::Curl,
            "wget" => Program::Wget,
            "server" => Program::Server,
            _ => Program::StandIn,
        }
    }
}

/// Whether this process is the container's main process, which must serve whatever its name and
/// arguments: PID 1, or the child of an init at PID 1 (`initProcessEnabled`, `docker run --init`).
/// Docker starts health checks from outside the container's PID namespace, so they see parent
/// PID 0 and are never taken for the main process.
fn is_main_process(pid: u32, parent_pid: u32) -> bool {
    pid == 1 || parent_pid == 1
}

fn main() -> ExitCode {
    let mut argv = std::env::args_os();
    let argv0 = argv.next().unwrap_or_default();
    let program = Program::named(&argv0);
    let args: Vec<OsString> = argv.collect();
    let text_args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let env = |name: &str| std::env::var_os(name);
    // One thread is plenty for static files from memory, and starts fastest.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let main_process = is_main_process(std::process::id(), std::os::unix::process::parent_id());
    let mode = match program {
        _ if main_process => Mode::Serve(args::serve_config(&text_args, program == Program::Server, env)),
        Program::Server => match args::parse(args, env) {
            Ok(mode) => mode,
            Err(UsageError { message }) => {
                // Docker reserves exit code 2 for health checks: a probe always fails with 1.
                eprintln!("server: {message}\n\n{}", args::USAGE);
                return ExitCode::FAILURE;
            }
        },
        // A launcher's name outside the main process (`CMD node healthcheck.js`, `CMD-SHELL npm run
        // health`) is a health check, never a second server: it asks whether the service is up,
        // and here that is the placeholder.
        Program::StandIn | Program::Shell | Program::Curl | Program::Wget => {
            let deadline = Instant::now() + CHECK_CAP;
            let command: Pin<Box<dyn Future<Output = i32>>> = match program {
                Program::Shell => Box::pin(shell::run(&text_args, deadline)),
                Program::Curl => Box::pin(fetch_alone(Tool::Curl, &text_args, deadline)),
                Program::Wget => Box::pin(fetch_alone(Tool::Wget, &text_args, deadline)),
                _ => {
                    let command = format!("{} {}", program_name(&argv0), text_args.join(" "));
                    Box::pin(async move {
                        health::instead(command.trim_end(), "a launcher of the real image, run as a check", deadline)
                            .await
                    })
                }
            };
            return check_exit(&runtime, command, deadline);
        }
    };
    match mode {
        Mode::Help => {
            println!("{}", args::USAGE);
            ExitCode::SUCCESS
        }
        Mode::Version => {
            println!("server {VERSION}");
            ExitCode::SUCCESS
        }
        Mode::Probe(config) => match runtime.block_on(probe::run(&config)) {
            Ok(verdict) => {
                println!("{verdict}");
                ExitCode::SUCCESS
            }
            Err(verdict) => {
                eprintln!("{verdict}");
                ExitCode::FAILURE
            }
        },
        Mode::Serve(config) => match runtime.block_on(serve(config)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("server: {message}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Runs a health-check command that honours `deadline`; exits 0 or 1, never 2.
fn check_exit(
    runtime: &tokio::runtime::Runtime,
    command: Pin<Box<dyn Future<Output = i32> + '_>>,
    deadline: Instant,
) -> ExitCode {
    let status = runtime.block_on(async {
        // A little past the deadline the commands themselves honour, as a last resort.
        match tokio::time::timeout_at(deadline + Duration::from_millis(500), command).await {
            Ok(status) => status,
            Err(_) => {
                eprintln!("placeholder: the check did not finish within {CHECK_CAP:?}");
                1
            }
        }
    });
    ExitCode::from(u8::from(status != 0))
}

/// `curl ...` or `wget ...` run directly, as in an exec-form `CMD` health check.
async fn fetch_alone(tool: Tool, args: &[String], deadline: Instant) -> i32 {
    match fetch::run(tool, args, Streams::TERMINAL, deadline).await {
        Outcome::Status(status) => i32::from(status != 0),
        Outcome::Instead(why) => {
            let name = if tool == Tool::Curl { "curl" } else { "wget" };
            health::instead(&format!("{name} {}", args.join(" ")), &why, deadline).await
        }
    }
}

async fn serve(config: ServeConfig) -> Result<(), String> {
    let stop = serve::StopSignals::install().map_err(|e| format!("cannot handle signals: {e}"))?;
    for line in &config.ignored {
        eprintln!("server: {line}");
    }
    let site = site::Site::load(&config.root)?;

    let (opener, requests) = mpsc::unbounded_channel();
    // The container's name, once a metadata lookup has it; none is made for `--port` or without
    // metadata.
    let (named, name) = watch::channel(None);
    let looks_up = config.port.is_none() && config.ports.metadata_uri.is_some();
    let mut listeners = Vec::new();
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    let mut held_by_placeholders = false;
    if let Some(port) = config.port {
        // Exactly this port: no other is ever opened, not even for a health check.
        listeners.push(serve::bind(port).map_err(|e| serve::bind_error(port, &e))?);
    } else {
        let sources = &config.ports;
        listeners = bind_each(&sources.given, &mut failures, None);
        match &sources.metadata_uri {
            None => {
                let fallback = if sources.baked.is_empty() { vec![args::DEFAULT_PORT] } else { sources.baked.all() };
                listeners.extend(bind_each(&fallback, &mut failures, None));
            }
            // Nothing to serve on yet: waiting for the metadata costs nothing.
            Some(uri) if listeners.is_empty() => {
                let (ports, note, shared) = ports_from_metadata(uri, &sources.baked, true, &named).await;
                notes.extend(note);
                listeners.extend(bind_each(&ports, &mut failures, shared.then_some(&mut notes)));
                held_by_placeholders = shared && listeners.is_empty() && failures.is_empty() && !ports.is_empty();
            }
            Some(uri) => {
                let (uri, baked, opener, named) = (uri.clone(), sources.baked.clone(), opener.clone(), named.clone());
                tokio::spawn(async move {
                    let (ports, note, _) = ports_from_metadata(&uri, &baked, false, &named).await;
                    if let Some(note) = note {
                        eprintln!("server: {note}");
                    }
                    let _ = opener.send(control::Open { ports, reply: None });
                });
            }
        }
    }
    let can_open = config.port.is_none()
        && match control::serve(opener) {
            Ok(()) => true,
            // Another placeholder in this PID namespace answers them (`pidMode: task`).
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => false,
            Err(e) => {
                eprintln!("server: health checks cannot ask for ports: {e}");
                false
            }
        };
    // Waiting with no port is only for when none was known to try, or the defaults tried were all
    // held (by another placeholder of the task); a port that was named and could not be had is an
    // error the task must show.
    if listeners.is_empty() && (!failures.is_empty() || (!can_open && !held_by_placeholders)) {
        return Err(format!("cannot listen on any port: {}", failures.join("; ")));
    }

    let addresses: Vec<String> = listeners.iter().filter_map(|l| l.local_addr().ok()).map(|a| a.to_string()).collect();
    let listening = if addresses.is_empty() { "no port yet".to_owned() } else { addresses.join(", ") };
    println!("server {VERSION} listening on {listening}, serving {} files from {}", site.len(), config.root.display());
    for note in &notes {
        eprintln!("server: {note}");
    }
    for failure in &failures {
        eprintln!("server: skipped: {failure}");
    }
    if !site.contains(args::DEFAULT_PROBE_PATH) {
        eprintln!("warning: {} has no healthcheck.html, so the default --probe will fail", config.root.display());
    }
    let every = std::env::var("PLACEHOLDER_NOTICE_SECONDS").ok().and_then(|v| v.parse().ok()).map(Duration::from_secs);
    tokio::spawn(notice::keep_saying(looks_up.then_some(name), every));
    serve::run(config, site, listeners, requests, stop).await.map_err(|e| e.to_string())
}

/// The ports to listen on from ECS task metadata, a line for the log when they are not the
/// container's own mappings, and whether they are guesses shared with other placeholders of the
/// task. When the metadata names none: the baked ports; else, when `guess` (nothing else names a
/// port), what the container's surroundings allow (`ports.rs`).
async fn ports_from_metadata(
    uri: &str,
    baked: &args::BakedPorts,
    guess: bool,
    named: &watch::Sender<Option<String>>,
) -> (Vec<u16>, Option<String>, bool) {
    let found = metadata::look(uri).await;
    // The notice names the container as the metadata does, from this one lookup.
    named.send_replace(Some(found.as_ref().ok().and_then(|f| f.name.clone()).unwrap_or_default()));
    let (why, name) = match &found {
        Ok(found) if !found.ports.is_empty() => return (found.ports.clone(), None, false),
        Ok(found) => (found.why_none(), found.name.as_deref()),
        Err(why) => (why.clone(), None),
    };
    let ports = baked.for_container(name);
    if !ports.is_empty() {
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        return (ports, Some(format!("ECS task metadata {why}; listening on {} instead", list.join(", "))), false);
    }
    if !guess {
        return (Vec::new(), None, false);
    }
    let around = found.map(|found| found.around).unwrap_or_default();
    let environment: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .collect();
    let mut guessed = ports::guess(&around, &environment);
    // Ports baked for the image's other containers are theirs, whichever of them starts first.
    let theirs = baked.all();
    guessed.ports.retain(|port| !theirs.contains(port));
    let shared = around.neighbours.iter().flatten().any(|n| matches!(n, Neighbour::Placeholder { .. }));
    (
        guessed.ports,
        Some(format!("nothing names this container's port (ECS task metadata {why}): {}", guessed.why)),
        shared,
    )
}

/// Binds each port once. A port that cannot be bound (a sidecar holds it, or 80 without root) is
/// noted in `failures` and skipped: serving on the others still helps. With `held`, a port
/// already in use is noted there instead: for defaults another placeholder of the task may hold,
/// which answers there, in the task's one network namespace.
fn bind_each(ports: &[u16], failures: &mut Vec<String>, mut held: Option<&mut Vec<String>>) -> Vec<TcpListener> {
    let mut listeners: Vec<TcpListener> = Vec::new();
    for &port in ports {
        if listeners.iter().any(|l| l.local_addr().is_ok_and(|a| a.port() == port)) {
            continue;
        }
        match (serve::bind(port), held.as_deref_mut()) {
            (Ok(listener), _) => listeners.push(listener),
            (Err(e), Some(held)) if e.kind() == std::io::ErrorKind::AddrInUse => {
                held.push(format!("skipped: {}", serve::bind_error(port, &e)))
            }
            (Err(e), _) => failures.push(serve::bind_error(port, &e)),
        }
    }
    listeners
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_main_process_is_pid_1_or_the_child_of_an_init() {
        assert!(is_main_process(1, 0)); // docker run: the entry point is PID 1
        assert!(is_main_process(7, 1)); // initProcessEnabled / --init: docker-init is PID 1
        assert!(!is_main_process(12, 0)); // docker exec, so every health check
        assert!(!is_main_process(4242, 4100)); // a shell on a developer's machine, or a test
    }

    #[test]
    fn programs_by_name() {
        for (argv0, program) in [
            ("/bin/sh", Program::Shell),
            ("bash", Program::Shell),
            ("/bin/ash", Program::Shell),
            ("dash", Program::Shell),
            ("/usr/bin/curl", Program::Curl),
            ("wget", Program::Wget),
            ("/server", Program::Server),
            ("./target/release/server", Program::Server),
            ("/usr/local/bin/node", Program::StandIn),
            ("/usr/sbin/apache2", Program::StandIn),
            ("server-old", Program::StandIn),
            ("", Program::StandIn),
            ("/", Program::StandIn),
        ] {
            assert_eq!(Program::named(OsStr::new(argv0)), program, "{argv0}");
        }
    }
}
