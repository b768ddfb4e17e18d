//! The binary as `sh`, `curl` and `wget`: real health-check commands from task definitions, and
//! malformed ones, against a real server. Exit 0 or 1 (never 2), within bounded time, never a
//! server left running.

mod common;

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Runs `program args` with only `env`, and returns its output and how long it took.
fn run(program: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> (Output, Duration) {
    let started = Instant::now();
    let output = Command::new(program)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .expect("run check");
    (output, started.elapsed())
}

struct Bed {
    names: Names,
    _fixture: Fixture,
    lenient: Server,
    strict: Server,
    /// A port nothing listens on.
    closed: ClosedPort,
}

impl Bed {
    fn new() -> Bed {
        let fixture = Fixture::new();
        let lenient = Server::start(&fixture.root());
        let strict = Server::start_with(&fixture.root(), &["--strict"], &[]);
        Bed { names: Names::new(), _fixture: fixture, lenient, strict, closed: closed_port() }
    }

    /// `$PORT` is the lenient server's port (as in a task definition that sets PORT), `$STRICT`
    /// the strict one's, `$CLOSED` a port nobody listens on.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PORT", self.lenient.port.to_string()),
            ("STRICT", self.strict.port.to_string()),
            ("CLOSED", self.closed.port.to_string()),
        ]
    }

    /// `sh -c script`: returns exit code, stdout, stderr.
    fn sh(&self, script: &str) -> (i32, String, String) {
        let (output, took) = run(&self.names.path("sh"), &["-c", script], &self.env());
        assert!(took < Duration::from_secs(10), "{script:?} took {took:?}");
        let code = output.status.code().unwrap_or_else(|| panic!("{script:?} died of a signal: {output:?}"));
        assert!(code == 0 || code == 1, "{script:?} exited {code}: never 2, nor anything but 0 or 1");
        (
            code,
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

#[test]
fn real_health_checks_pass_against_the_placeholder() {
    let bed = Bed::new();
    for script in [
        "curl -f http://localhost:$PORT/_healthcheck || exit 1",
        "wget --quiet --spider --tries=1 http://localhost:$PORT/health || exit 1",
        "curl -f http://localhost:$PORT || exit 1",
        "curl -f http://localhost:${PORT}/api/health || exit 1",
        "curl --fail --silent http://127.0.0.1:${PORT:-3000}/api/health",
        "curl -sf localhost:$PORT/actuator/health",
        "curl -fsSL http://0.0.0.0:$PORT/health >/dev/null 2>&1 || exit 1",
        "curl -f http://[::1]:$PORT/health || exit 1",
        "wget -q -O /dev/null http://localhost:$PORT/ && echo ok",
        "wget -nv -T 3 -t 2 -O- http://127.0.0.1:$PORT/health",
        "set -e; curl -sSf http://localhost:$PORT/health > /proc/1/fd/1",
        "curl -f -H 'Accept: application/json' -A probe -m 5 --connect-timeout 2 --retry 2 -k http://localhost:$PORT/health",
        "curl -f \"http://localhost:$PORT/health?check=1\" && exit 0 || exit 1",
        "exit 0",
        "true",
        ":",
        "echo healthy",
    ] {
        let (code, _, stderr) = bed.sh(script);
        assert_eq!(code, 0, "{script:?}: {stderr}");
    }
}

#[test]
fn verdicts_like_the_real_tools() {
    let bed = Bed::new();
    for (script, expected) in [
        // A status decides: curl passes on any answer unless -f, wget fails on >= 400.
        ("curl -f http://localhost:$STRICT/missing", 1),
        ("curl -sf localhost:$STRICT/missing || exit 1", 1),
        ("curl http://localhost:$STRICT/missing", 0),
        ("curl --fail-with-body localhost:$STRICT/missing", 1),
        ("wget -q http://localhost:$STRICT/missing", 1),
        ("wget --spider -q http://localhost:$STRICT/healthcheck.html", 0),
        ("curl -f -X POST localhost:$PORT/health", 1),
        // Plain shell.
        ("exit 1", 1),
        ("exit 2", 1),
        ("exit 255", 1),
        ("exit nope", 1),
        ("false", 1),
        ("false || true", 0),
        ("true && false", 1),
        ("false; true", 0),
        ("set -e; false; true", 1),
        ("set -e; false || true; true", 0),
        ("exit 1 && exit 0", 1),
        ("false && exit 0; exit $?", 1),
        ("A=1; [ \"$A\" = 1 ]", 0),
        ("curl -f http://localhost:${PORT:?}/x", 0),
    ] {
        let (code, _, stderr) = bed.sh(script);
        assert_eq!(code, expected, "{script:?}: {stderr}");
    }
    let (_, stdout, _) = bed.sh("curl -s -o /dev/null -w '%{http_code}' http://localhost:$STRICT/missing");
    assert_eq!(stdout, "404");
    let (_, stdout, _) = bed.sh("curl -s -o /dev/null -w '%{http_code}\\n' http://localhost:$PORT/");
    assert_eq!(stdout, "200\n");
    let (_, stdout, _) = bed.sh("wget -qO- http://localhost:$PORT/healthcheck.html");
    assert_eq!(stdout, "OK\n");
    let (_, stdout, _) = bed.sh("curl -s localhost:$PORT/healthcheck >/dev/null; echo done $?");
    assert_eq!(stdout, "done 0\n");
    let (_, stdout, _) = bed.sh("curl -sI localhost:$PORT/");
    assert!(stdout.starts_with("HTTP/1.1 200 OK\r\n") && stdout.contains("content-length: 15"), "{stdout:?}");
}

#[test]
fn what_it_cannot_run_is_answered_by_its_own_health() {
    let bed = Bed::new();
    for (script, says) in [
        ("nc -z localhost 8080", "\"nc -z localhost 8080\": cannot run that here"),
        ("curl -s localhost:$PORT/health | grep UP", "pipes are not run here"),
        ("node healthcheck.js || exit 1", "cannot run that here"),
        ("curl -f https://localhost/health || exit 1", "only plain http://"),
        ("curl -f http://example.com/health", "only this container"),
        ("curl -f http://localhost:$CLOSED/health || exit 1", "nothing listens on localhost:"),
        ("wget -q --spider localhost:$CLOSED", "nothing listens on"),
        ("curl -f http://localhost:${APP_PORT}/health", "nothing listens on localhost:"),
        ("curl -d x localhost:$PORT", "option -d"),
        ("curl -f http://localhost:$PORT/$(cat path)", "command substitution"),
        ("if curl -f localhost:$PORT; then exit 0; fi", "`if`"),
        ("echo 'unterminated", "unterminated"),
        ("curl -f localhost:$PORT ||", "ends with"),
        ("|| true", "a command is missing"),
        ("curl -f http://localhost:${NOPE:?unset}/x", "is not set here"),
    ] {
        let (code, _, stderr) = bed.sh(script);
        assert_eq!(code, 0, "{script:?}: {stderr}");
        assert!(stderr.contains(says), "{script:?}: {stderr:?}");
        assert!(
            stderr.contains("checked the placeholder's own health instead: healthy (127.0.0.1:"),
            "{script:?}: {stderr:?}"
        );
        assert!(stderr.lines().count() <= 2, "{script:?}: {stderr:?}");
    }
}

#[test]
fn malformed_huge_and_hostile_scripts_end_quickly_with_0_or_1() {
    let bed = Bed::new();
    let many = format!("{}true", "true && ".repeat(15_000));
    let long_echo = format!("echo {}", "x".repeat(100_000));
    let deep_params = format!("echo {}x{}", "${A:-".repeat(1000), "}".repeat(1000));
    let deep_parens = format!("{}true{}", "(".repeat(10_000), ")".repeat(10_000));
    let many_checks = "curl -sf localhost:$CLOSED/x || ".repeat(200) + "exit 1";
    for script in [
        "",
        " ",
        "\n\n",
        ";",
        "&&",
        "||",
        "|",
        "&",
        ";;",
        "exit",
        "exit 1 2",
        "'",
        "\"",
        "\\",
        "$",
        "${",
        "${}",
        "$(",
        "`",
        "$((1+1))",
        "echo \\0 \u{1} \u{7f} é 𝄞",
        "echo $'\\x41'",
        ">",
        "2>",
        "<<EOF",
        ">&",
        "curl",
        "curl -f",
        "wget",
        "curl --",
        "curl -o",
        "curl -m 0 localhost:$PORT",
        "curl -m 1e400 localhost:$PORT",
        "curl http://[::1",
        "curl http://localhost:99999/",
        "curl 'http://localhost:$PORT/a b'",
        "wget -O",
        "wget --header",
        "curl -H \"$(printf '\\r\\n')\" localhost",
        "exec",
        "exec curl -f localhost:$PORT",
        "exit -1",
        "exit 99999999999",
        &many,
        &long_echo,
        &deep_params,
        &deep_parens,
        &many_checks,
    ] {
        let (_, stdout, stderr) = bed.sh(script);
        assert!(stdout.len() <= 4096 && stderr.len() <= 8192, "{:.40}: output too long", script);
    }
}

#[test]
fn arguments_and_environment_that_are_not_utf8_do_not_crash_it() {
    use std::os::unix::ffi::OsStrExt;
    let bed = Bed::new();
    let odd = std::ffi::OsStr::from_bytes(b"\xff\xfe");
    for program in ["sh", "curl", "wget"] {
        let output = Command::new(bed.names.path(program))
            .args([std::ffi::OsStr::new("-c"), odd])
            .env_clear()
            .env("PORT", bed.lenient.port.to_string())
            .env(odd, odd)
            .output()
            .unwrap();
        assert!(matches!(output.status.code(), Some(0 | 1)), "{program}: {output:?}");
    }
}

#[test]
fn shell_invocations_docker_and_ecs_use() {
    let bed = Bed::new();
    let env = bed.env();
    let sh = bed.names.path("sh");
    let check = "curl -f http://localhost:$PORT/health";
    for args in [
        vec!["-c", check],
        vec!["-ec", check],
        vec!["-xc", check],
        vec!["-lc", check],
        vec!["-e", "-c", check],
        vec!["-o", "pipefail", "-c", check],
        vec!["-c", "exit $1", "name", "0"],
    ] {
        let (output, _) = run(&sh, &args, &env);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {output:?}");
    }
    let (output, _) = run(&bed.names.path("bash"), &["-c", "exit $1", "name", "1"], &env);
    assert_eq!(output.status.code(), Some(1));
    // Without -c there is no script to run: its own health answers, and it never serves.
    for args in [vec![], vec!["script.sh"], vec!["-c"]] {
        let (output, took) = run(&sh, &args, &env);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {output:?}");
        assert!(took < Duration::from_secs(5));
    }
}

#[test]
fn curl_and_wget_run_directly_as_exec_form_checks() {
    let bed = Bed::new();
    let env = bed.env();
    let (port, strict) = (bed.lenient.port, bed.strict.port);
    let curl = bed.names.path("curl");
    let wget = bed.names.path("wget");
    for (program, args, expected) in [
        (&curl, vec!["-f".to_string(), format!("http://localhost:{port}/health")], 0),
        (&curl, vec!["-fsS".to_string(), format!("localhost:{strict}/missing")], 1),
        (&curl, vec![format!("localhost:{strict}/missing")], 0),
        (&wget, vec!["--spider".to_string(), format!("http://localhost:{port}/")], 0),
        (&wget, vec!["-q".to_string(), format!("http://localhost:{strict}/missing")], 1),
        (&curl, vec![], 0),
        (&wget, vec!["-q".to_string(), format!("http://localhost:{}/", bed.closed.port)], 0),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (output, took) = run(program, &args, &env);
        assert_eq!(output.status.code(), Some(expected), "{program:?} {args:?}: {output:?}");
        assert!(took < Duration::from_secs(5));
    }
    let (output, _) = run(&curl, &["-s", &format!("http://localhost:{port}/healthcheck.html")], &env);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "OK\n");
}

#[test]
fn a_check_against_a_server_that_never_answers_times_out() {
    let bed = Bed::new();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let holder = thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(2).collect();
        thread::sleep(Duration::from_secs(4));
        drop(held);
    });
    for script in [format!("curl -sf -m 1 http://localhost:{port}/"), format!("wget -q -T 1 http://localhost:{port}/")]
    {
        let started = Instant::now();
        let (code, _, _) = bed.sh(&script);
        assert_eq!(code, 1, "{script}");
        assert!(started.elapsed() < Duration::from_millis(2500), "{script}: {:?}", started.elapsed());
    }
    holder.join().unwrap();
}
