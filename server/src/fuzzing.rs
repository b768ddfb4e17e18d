//! The fuzz targets' bodies: one function for each hand-written parser of what reaches the
//! placeholder from outside, each checking what must hold of its answer beyond not panicking.
//! `fuzz/fuzz_targets/NAME.rs` runs `NAME` under libFuzzer (`cargo xtask fuzz`); the tests below
//! replay every input kept in `fuzz/seeds/NAME/` and `fuzz/corpus/NAME/` through the same
//! functions, so an input that once failed fails `cargo test` again.
//!
//! Why it matters: the released binary aborts on a panic (`panic = "abort"`), and the task with it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

use crate::args::{Mode, ServeConfig};
use crate::fetch::{Outcome, Streams, Tool};
use crate::json::Json;
use crate::site::Site;
use crate::wire::{MAX_HEAD_BYTES, Next, Peeked, Split};
use server::sidecars::Neighbour;

/// A fuzz target's body: it panics when something that must hold does not.
pub type Target = fn(&[u8]);

/// Every target, by the name of its file in `fuzz/fuzz_targets/` and of its input folders.
pub const TARGETS: &[(&str, Target)] = &[
    ("wire", wire),
    ("path", path),
    ("json", json),
    ("metadata", metadata),
    ("shell", shell),
    ("fetch", fetch),
    ("args", args),
];

/// How long a health-check command may run, as `main.rs` gives it.
const CHECK_CAP: Duration = Duration::from_secs(30);

/// Where the stand-in placeholder of the `shell` and `fetch` targets listens at first.
const STAND_IN_PORTS: &[u16] = &[80, 3000, 8080];

/// What a peer sent, as the request-head gate judges it (`wire::judge`) and as the bytes hyper
/// read straight are followed (`wire::split_requests`).
pub fn wire(bytes: &[u8]) {
    let judged = crate::wire::judge(bytes);
    match judged {
        Peeked::Partial(seen) => {
            assert!(seen == bytes.len() && seen <= MAX_HEAD_BYTES, "{judged:?} of {} bytes", bytes.len())
        }
        Peeked::Ready(Next::OneRequest(length)) => {
            assert!(
                length > 0 && length <= bytes.len() && length <= MAX_HEAD_BYTES,
                "{judged:?} of {} bytes",
                bytes.len()
            );
            let head = &bytes[..length];
            assert!(head.ends_with(b"\n"), "a head that does not end a line: {judged:?}");
            // The same whatever follows the head, and not ready a byte sooner.
            assert_eq!(crate::wire::judge(head), judged);
            assert_eq!(crate::wire::judge(&head[..length - 1]), Peeked::Partial(length - 1));
            agrees_with_hyper(head);
        }
        Peeked::Ready(Next::Rest) => {}
        Peeked::Nothing | Peeked::Closed => panic!("bytes judged as a socket's state: {judged:?}"),
    }
    match crate::wire::split_requests(bytes) {
        Split::Whole => {
            let mut at = 0;
            while at < bytes.len() {
                match crate::wire::judge(&bytes[at..]) {
                    Peeked::Ready(Next::OneRequest(length)) => at += length,
                    other => panic!("whole requests, but {other:?} at {at}"),
                }
            }
            assert_eq!(at, bytes.len());
        }
        Split::Partial(at) => {
            assert!(at < bytes.len(), "a partial head past the end: {at} of {}", bytes.len());
            assert_eq!(crate::wire::split_requests(&bytes[..at]), Split::Whole);
            assert_eq!(crate::wire::judge(&bytes[at..]), Peeked::Partial(bytes.len() - at));
        }
        Split::Rest => {}
    }
}

/// hyper is handed a head the gate judged whole and bodiless as exactly one request: its parser
/// must find that head ends where the gate said, and that no body follows it.
fn agrees_with_hyper(head: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; 100]; // hyper's default limit
    let mut request = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(length)) = request.parse(head) else { return };
    assert_eq!(length, head.len(), "hyper's head ends elsewhere: {:?}", String::from_utf8_lossy(head));
    for header in request.headers.iter() {
        let framing = ["content-length", "transfer-encoding"].iter().any(|name| header.name.eq_ignore_ascii_case(name));
        // hyper refuses a blank length or coding (400) rather than read a body.
        let blank = header.value.iter().all(u8::is_ascii_whitespace);
        assert!(
            !framing || blank,
            "hyper reads a body after a head handed over as bodiless: {:?}",
            String::from_utf8_lossy(head)
        );
    }
}

/// A request path, as `Site` maps it to a file (strict and lenient), raw and as hyper parses a
/// request target into one (`serve::respond`).
pub fn path(bytes: &[u8]) {
    let raw = String::from_utf8_lossy(bytes);
    check_path(&raw);
    if let Ok(uri) = raw.parse::<hyper::Uri>() {
        check_path(uri.path());
    }
}

fn check_path(raw: &str) {
    let site = site();
    let normalised = crate::site::normalise(raw);
    if let Ok(path) = &normalised {
        // Never outside the root, and nothing that a file system reads as more than names in it.
        let mut components = Path::new(path.as_ref()).components();
        assert_eq!(components.next(), Some(Component::RootDir), "{raw:?} -> {path:?}");
        assert!(components.all(|c| matches!(c, Component::Normal(_))), "{raw:?} -> {path:?}");
        assert!(path[1..].split('/').all(|segment| !matches!(segment, "" | "." | "..")), "{raw:?} -> {path:?}");
        assert!(!path.contains('\\') && !path.chars().any(char::is_control), "{raw:?} -> {path:?}");
    }
    // The shortcut for plain paths takes them as decoding would.
    if crate::site::is_plain(raw) {
        assert_eq!(crate::site::decode(raw).as_deref(), Ok(raw));
    }
    let found = site.resolve(raw);
    assert_eq!(found.is_ok(), normalised.as_ref().is_ok_and(|path| site.contains(path)), "{raw:?}");
    let _ = site.resolve_leniently(raw);
}

/// A small document root, loaded once through `Site::load` and then removed: a site is served
/// from memory.
fn site() -> &'static Site {
    static SITE: OnceLock<Site> = OnceLock::new();
    SITE.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("server-fuzz-site-{}", std::process::id()));
        for (file, text) in [
            ("index.html", "index"),
            ("healthcheck.html", "OK"),
            ("docs/index.html", "docs"),
            ("my page.html", "space"),
            ("é.html", "accent"),
            ("100%.txt", "percent"),
            ("assets/css/app.css", "css"),
        ] {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let site = Site::load(&root).unwrap();
        let _ = std::fs::remove_dir_all(&root);
        site
    })
}

/// A document as the task metadata endpoint answers it (`json::parse`): what it reads, written
/// out again, reads the same.
pub fn json(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes); // as metadata.rs reads a body
    if let Some(value) = crate::json::parse(&text) {
        let mut written = String::new();
        write_json(&value, &mut written);
        assert_eq!(crate::json::parse(&written).as_ref(), Some(&value), "{written}");
    }
}

fn write_json(value: &Json, out: &mut String) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // Rust prints the shortest text that reads back as the same number.
        Json::Number(n) => out.push_str(&format!("{n:?}")),
        Json::String(s) => write_string(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Json::Object(members) => {
            out.push('{');
            for (i, (key, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_json(item, out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// This container's metadata document and, after a NUL, its task's (`metadata::read`), and the
/// ports guessed from them when they name none (`ports::guess`).
pub fn metadata(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let (container, task) = text.split_once('\0').map_or((&*text, None), |(container, task)| (container, Some(task)));
    let Some(container) = crate::json::parse(container) else { return };
    let task = task.and_then(crate::json::parse);
    let found = crate::metadata::read(&container, task.as_ref());
    assert_ports(&found.ports, "the container's ports");
    assert!(found.name.as_ref().is_none_or(|name| !name.is_empty()));
    assert_eq!(found.around.neighbours.is_some(), task.is_some());
    for neighbour in found.around.neighbours.iter().flatten() {
        if let Neighbour::Placeholder { ports, .. } = neighbour {
            assert_ports(ports, "another placeholder's ports");
        }
        let _ = (neighbour.describe(), neighbour.ports(), neighbour.serves());
    }
    let _ = found.why_none();
    let environment: Vec<(String, String)> = [("SERVER_PORT", "8080"), ("GRPC_PORT", "50051"), ("HOME", "/root")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let guess = crate::ports::guess(&found.around, &environment);
    assert_ports(&guess.ports, "guessed ports");
    // Where the task shares one network namespace, a guess never takes a port a neighbour serves.
    if !matches!(found.around.network_mode.as_deref(), Some("host" | "bridge")) {
        for neighbour in found.around.neighbours.iter().flatten() {
            let taken: Vec<&u16> = guess.ports.iter().filter(|port| neighbour.serves().contains(port)).collect();
            assert!(taken.is_empty(), "guessed {taken:?}, which {} serves", neighbour.describe());
        }
    }
}

fn assert_ports(ports: &[u16], what: &str) {
    for (i, port) in ports.iter().enumerate() {
        assert!(*port != 0 && !ports[..i].contains(port), "{what}: {ports:?}");
    }
}

/// A `CMD-SHELL` health check, `sh -c SCRIPT` (or NUL-separated `sh` arguments), read and run
/// (`shell::run`) against a stand-in placeholder with a paused clock: it ends with 0 or 1,
/// within its time.
pub fn shell(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let args: Vec<String> = if text.contains('\0') {
        text.split('\0').map(str::to_owned).collect()
    } else {
        vec!["-c".to_owned(), text.into_owned()]
    };
    let vars: HashMap<String, String> = [
        ("PORT", "8080"),
        ("HOSTNAME", "ip-10-0-1-23.ec2.internal"),
        ("ECS_CONTAINER_METADATA_URI_V4", "http://169.254.170.2/v4/0123456789abcdef-1234567890"),
        ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    sandboxed(vars, async {
        let deadline = Instant::now() + CHECK_CAP;
        let status = crate::shell::run(&args, deadline).await;
        assert!(status == 0 || status == 1, "exit status {status}");
        assert!(Instant::now() <= deadline, "ran past its deadline");
    });
}

/// `curl` or `wget` (the first of NUL-separated words; any other word is curl) and its arguments
/// (`fetch::run`), against a stand-in placeholder with a paused clock: the real tool's exit
/// statuses only, within its time.
pub fn fetch(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let mut words = text.split('\0');
    let tool = if words.next() == Some("wget") { Tool::Wget } else { Tool::Curl };
    let args: Vec<String> = words.map(str::to_owned).collect();
    sandboxed(HashMap::new(), async {
        let deadline = Instant::now() + CHECK_CAP;
        match crate::fetch::run(tool, &args, Streams::TERMINAL, deadline).await {
            Outcome::Status(status) => {
                assert!([0, 4, 8, 22, 28, 56].contains(&status), "{tool:?} exit status {status}")
            }
            Outcome::Instead(why) => assert!(!why.is_empty()),
        }
        assert!(Instant::now() <= deadline, "ran past its deadline");
    });
}

/// Runs `future` on a fresh runtime whose clock is paused (it jumps to the next timer whenever
/// nothing else can run), with this thread's sockets, output and environment sandboxed. Only
/// its timers are enabled: a socket that slipped past the sandbox panics for want of a reactor.
fn sandboxed(environment: HashMap<String, String>, future: impl Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    runtime.block_on(async {
        let _sandbox = crate::sandbox::enter(STAND_IN_PORTS, environment);
        future.await;
    });
}

/// The server's arguments, then after an empty one `NAME=VALUE` environment variables, all
/// NUL-separated: as the `server` program (`args::parse`), as a container's main process under
/// another name (`args::serve_config`), and what else reads those words (`PLACEHOLDER_PORTS`,
/// the metadata endpoint, the control socket's `open PORT`).
pub fn args(bytes: &[u8]) {
    let mut pieces = bytes.split(|&b| b == 0);
    let args: Vec<OsString> =
        pieces.by_ref().take_while(|piece| !piece.is_empty()).map(|piece| OsString::from_vec(piece.to_vec())).collect();
    let env: Vec<(String, OsString)> = pieces
        .filter_map(|piece| {
            let equals = piece.iter().position(|&b| b == b'=')?;
            Some((
                String::from_utf8_lossy(&piece[..equals]).into_owned(),
                OsString::from_vec(piece[equals + 1..].to_vec()),
            ))
        })
        .collect();
    let lookup = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, value)| value.clone());

    match crate::args::parse(args.clone(), lookup) {
        Ok(Mode::Probe(probe)) => {
            assert!(probe.port != Some(0), "{probe:?}");
            assert!(
                probe.path.starts_with('/') && !probe.path.bytes().any(|b| b.is_ascii_control() || b == b' '),
                "{probe:?}"
            );
            assert!(probe.timeout <= Duration::from_secs(3600), "{probe:?}");
        }
        Ok(Mode::Serve(config)) => check_serve(&config),
        Ok(Mode::Help | Mode::Version) | Err(_) => {}
    }
    let words: Vec<String> = args.iter().map(|arg| arg.to_string_lossy().into_owned()).collect();
    let config = crate::args::serve_config(&words, false, lookup);
    assert_eq!(config.port, None, "a stand-in's arguments are never the server's flags");
    check_serve(&config);

    if let Some(uri) = &config.ports.metadata_uri {
        let _ = crate::metadata::Endpoint::parse(uri);
    }
    for word in &words {
        if let Ok(port) = crate::control::parse(word) {
            assert!(port != 0, "{word:?}");
        }
    }
    for (_, value) in &env {
        let value = value.to_string_lossy();
        assert_ports(&crate::ports::ports_in_value(&value), "ports in a value");
        if let Ok(baked) = crate::args::BakedPorts::parse(&value) {
            let all = baked.all();
            assert_ports(&all, "baked ports");
            for name in [None, Some("web"), Some("worker")] {
                let own = baked.for_container(name);
                assert!(own.iter().all(|port| all.contains(port)), "{own:?} of {all:?}");
            }
        }
    }
}

fn check_serve(config: &ServeConfig) {
    assert_ports(&config.ports.given, "given ports");
    assert_ports(&config.ports.baked.all(), "baked ports");
    assert!(config.max_connections > 0);
    assert!(config.balancer_status.is_none_or(|status| (200..=599).contains(&status)), "{:?}", config.balancer_status);
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use super::*;

    fn fuzz_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
    }

    /// Runs the target on every input kept for it, and names the one that fails.
    fn replay(name: &str) {
        let (_, target) = TARGETS.iter().find(|(n, _)| *n == name).expect("a target of that name");
        let seeds = fuzz_dir().join("seeds").join(name);
        let mut inputs: Vec<PathBuf> = Vec::new();
        for dir in [seeds.clone(), fuzz_dir().join("corpus").join(name)] {
            if let Ok(entries) = fs::read_dir(&dir) {
                inputs.extend(entries.map(|entry| entry.unwrap().path()));
            }
        }
        assert!(inputs.iter().any(|input| input.starts_with(&seeds)), "no seeds in {}", seeds.display());
        inputs.sort();
        for input in &inputs {
            let data = fs::read(input).unwrap();
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                panic!("{}: the fuzz input fails (above)", input.display());
            }
        }
    }

    #[test]
    fn every_fuzz_target_is_replayed() {
        let mut files: Vec<String> = fs::read_dir(fuzz_dir().join("fuzz_targets"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().trim_end_matches(".rs").to_owned())
            .collect();
        files.sort();
        let mut names: Vec<String> = TARGETS.iter().map(|(name, _)| name.to_string()).collect();
        names.sort();
        assert_eq!(files, names);
    }

    #[test]
    fn every_kept_wire_input_passes() {
        replay("wire");
    }

    #[test]
    fn every_kept_path_input_passes() {
        replay("path");
    }

    #[test]
    fn every_kept_json_input_passes() {
        replay("json");
    }

    #[test]
    fn every_kept_metadata_input_passes() {
        replay("metadata");
    }

    #[test]
    fn every_kept_shell_input_passes() {
        replay("shell");
    }

    #[test]
    fn every_kept_fetch_input_passes() {
        replay("fetch");
    }

    #[test]
    fn every_kept_args_input_passes() {
        replay("args");
    }
}
