//! Routes, methods, headers, traversal attempts and limits, against the real binary over TCP.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn serves_routes_with_type_length_and_no_store() {
    let fixture = Fixture::new();
    let server = Server::start(&fixture.root());
    for (path, body, content_type) in [
        ("/", "<h1>index</h1>\n", "text/html; charset=utf-8"),
        ("/index.html", "<h1>index</h1>\n", "text/html; charset=utf-8"),
        ("/healthcheck.html", "OK\n", "text/html; charset=utf-8"),
        ("/style.css", "body{}\n", "text/css; charset=utf-8"),
        ("/docs/", "docs\n", "text/html; charset=utf-8"),
        ("/docs/index.html", "docs\n", "text/html; charset=utf-8"),
        ("/healthcheck.html?from=elb", "OK\n", "text/html; charset=utf-8"),
    ] {
        let reply = get(server.addr(), path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.text(), body, "{path}");
        assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
        assert_eq!(reply.header("content-length"), Some(body.len().to_string().as_str()), "{path}");
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{path}");
    }
}

#[test]
fn load_balancer_style_request_with_bare_ip_host() {
    let fixture = Fixture::new();
    let server = Server::start(&fixture.root());
    let reply = send(
        server.addr(),
        b"GET / HTTP/1.1\r\nHost: 10.0.3.7\r\nUser-Agent: ELB-HealthChecker/2.0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(reply.status, 200);
}

#[test]
fn head_has_get_headers_and_no_body() {
    let fixture = Fixture::new();
    let server = Server::start(&fixture.root());
    let reply = send(server.addr(), b"HEAD /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), Some("15"));
    assert_eq!(reply.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(reply.body.is_empty(), "HEAD got a body: {:?}", reply.text());
}

#[test]
fn other_methods_get_405_with_allow() {
    let fixture = Fixture::new();
    let server = Server::start(&fixture.root());
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"] {
        let reply = send(
            server.addr(),
            format!("{method} /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{method}");
    }
}

#[test]
fn unknown_paths_get_404_when_strict() {
    let fixture = Fixture::new();
    for strict in [
        Server::start_with(&fixture.root(), &["--strict"], &[]),
        Server::start_with(&fixture.root(), &[], &[("PLACEHOLDER_STRICT", "1")]),
    ] {
        for path in ["/nope.html", "/docs", "/index.html/", "/INDEX.HTML", "/secret.txt", "/healthcheck"] {
            assert_eq!(get(strict.addr(), path).status, 404, "{path}");
        }
    }
}

#[test]
fn every_path_gets_a_page_by_default() {
    let fixture = Fixture::new();
    let server = Server::start(&fixture.root());
    for (path, body) in [
        ("/healthcheck", "OK\n"),
        ("/healthcheck?from=elb", "OK\n"),
        ("/docs", "docs\n"),
        ("/health", "<h1>index</h1>\n"),
        ("/api/health", "<h1>index</h1>\n"),
        ("/actuator/health?x=1", "<h1>index</h1>\n"),
        ("/_healthcheck", "<h1>index</h1>\n"),
        ("/nope.html", "<h1>index</h1>\n"),
        ("/index.html/", "<h1>index</h1>\n"),
        ("/INDEX.HTML", "<h1>index</h1>\n"),
        ("/secret.txt", "<h1>index</h1>\n"),
    ] {
        let reply = get(server.addr(), path);
        assert_eq!((reply.status, reply.text().as_str()), (200, body), "{path}");
        assert_eq!(reply.header("content-type"), Some("text/html; charset=utf-8"), "{path}");
    }
    let reply = send(server.addr(), b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!((reply.status, reply.header("content-length"), reply.body.len()), (200, Some("15"), 0));
}

/// Targets that try to leave the document root, in every spelling the tests know.
const ESCAPES: [&str; 19] = [
    "/../secret.txt",
    "/docs/../../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E%2Fsecret.txt",
    "/..%2fsecret.txt",
    "/.%2e/secret.txt",
    "/docs%2f..%2f..%2fsecret.txt",
    "/..\\secret.txt",
    "/%5c..%5csecret.txt",
    "/..%5csecret.txt",
    "/index.html%00.txt",
    "/%00",
    "/%c0%ae%c0%ae/secret.txt",
    "/%252e%252e/secret.txt",
    "//secret.txt",
    "/./index.html",
    "/%",
    "/%zz",
    "/%ff",
];

#[test]
fn nothing_outside_the_root_is_ever_served() {
    let fixture = Fixture::new();
    let server = Server::start_with(&fixture.root(), &["--strict"], &[]);
    for target in ESCAPES {
        let reply =
            send(server.addr(), format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
        assert!(matches!(reply.status, 400 | 404), "{target} answered {}", reply.status);
        assert!(!reply.text().contains(SECRET), "{target} leaked the secret");
    }
    let absolute_and_authority: [&[u8]; 5] = [
        b"GET http://127.0.0.1/index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        b"GET http://127.0.0.1/../secret.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        b"GET file:///etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ];
    for request in absolute_and_authority {
        let bytes = raw(server.addr(), request);
        let text = String::from_utf8_lossy(&bytes);
        // hyper may refuse some forms by closing the connection; anything it answers must be 4xx.
        if !bytes.is_empty() {
            let reply = parse(&bytes).unwrap_or_else(|| panic!("garbage reply {text:?}"));
            assert!(
                matches!(reply.status, 400 | 404 | 405),
                "{:?} answered {}",
                String::from_utf8_lossy(request),
                reply.status
            );
        }
        assert!(!text.contains(SECRET) && !text.contains("root:"), "leak for {:?}", String::from_utf8_lossy(request));
    }
}

#[test]
fn escapes_get_the_index_page_by_default_and_never_the_secret() {
    let fixture = Fixture::new();
    let server = Server::start(&fixture.root());
    for target in ESCAPES {
        let reply =
            send(server.addr(), format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
        assert_eq!(reply.status, 200, "{target}");
        assert!(!reply.text().contains(SECRET), "{target} leaked the secret");
        assert_eq!(reply.text(), "<h1>index</h1>\n", "{target}");
    }
    for (request, status) in [
        // hyper itself refuses a target without an authority, such as file:///.
        (
            &b"GET http://127.0.0.1/../secret.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"[..],
            &[200][..],
        ),
        (b"GET file:///etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &[200, 400]),
        (b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n", &[405]),
        (b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &[405]),
    ] {
        let bytes = raw(server.addr(), request);
        let text = String::from_utf8_lossy(&bytes);
        if !bytes.is_empty() {
            let reply = parse(&bytes).unwrap_or_else(|| panic!("garbage reply {text:?}"));
            assert!(status.contains(&reply.status), "{:?} answered {}", String::from_utf8_lossy(request), reply.status);
        }
        assert!(!text.contains(SECRET) && !text.contains("root:"), "leak for {:?}", String::from_utf8_lossy(request));
    }
}

#[test]
fn oversize_request_head_gets_431() {
    let fixture = Fixture::new();
    let server = Server::start(&fixture.root());
    let big = "a".repeat(20 * 1024);
    let bytes = raw(server.addr(), format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let reply = parse(&bytes).expect("an answer, not a silent close");
    assert_eq!(reply.status, 431);
    // and the server is still fine
    assert_eq!(get(server.addr(), "/healthcheck.html").status, 200);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let fixture = Fixture::new();
    let server = Server::start(&fixture.root());
    let mut stream = connect(server.addr());
    let request = b"GET /healthcheck.html HTTP/1.1\r\nHost: x\r\n\r\n";
    for _ in 0..3 {
        stream.write_all(request).unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).unwrap();
        let reply = parse(&buf[..n]).expect("reply");
        assert_eq!((reply.status, reply.text().as_str()), (200, "OK\n"));
    }
}

#[test]
fn a_kept_alive_request_split_across_packets_is_answered_and_the_connection_kept() {
    let fixture = Fixture::new();
    let server = Server::start(&fixture.root());
    let mut stream = connect(server.addr());
    let request = b"GET /healthcheck.html HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = [0u8; 1024];
    for pause in [Duration::ZERO, Duration::from_millis(5), Duration::from_millis(50), Duration::ZERO] {
        // The head in two writes with a pause between them, as a slow network delivers it; then
        // two requests in one write, the second of them cut short.
        stream.write_all(&request[..20]).unwrap();
        thread::sleep(pause);
        stream.write_all(&request[20..]).unwrap();
        let n = stream.read(&mut buf).unwrap();
        let reply = parse(&buf[..n]).expect("reply");
        assert_eq!((reply.status, reply.text().as_str()), (200, "OK\n"), "after a pause of {pause:?}");
        assert!(!String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase().contains("connection: close"));
    }
    stream.write_all(&[&request[..], &request[..10]].concat()).unwrap();
    let n = stream.read(&mut buf).unwrap();
    assert_eq!(parse(&buf[..n]).expect("reply").status, 200);
    thread::sleep(Duration::from_millis(30));
    stream.write_all(&request[10..]).unwrap();
    let n = stream.read(&mut buf).unwrap();
    assert_eq!(parse(&buf[..n]).expect("reply").status, 200, "the request finished after a pause");
}

#[test]
fn a_slow_head_after_a_first_request_is_cut_off_like_any_slow_head() {
    let fixture = Fixture::new();
    let server = Server::start(&fixture.root());
    let mut stream = connect(server.addr());
    stream.write_all(b"GET /healthcheck.html HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).unwrap();
    assert_eq!(parse(&buf[..n]).expect("reply").status, 200);
    // One header byte a second: the head never ends, and the head timeout (10 s) cuts it.
    stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    loop {
        assert!(started.elapsed() < Duration::from_secs(13), "a slow second head was never cut off");
        if stream.write_all(b"X").is_err() {
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) if started.elapsed() > Duration::from_secs(9) => break,
            Ok(0) => panic!("cut off after {:?}, before the head timeout", started.elapsed()),
            Ok(n) => panic!("answered a head that never ended: {}", String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
    }
}

#[test]
fn slow_client_does_not_delay_health_check_and_is_cut_off() {
    let fixture = Fixture::new();
    let server = Server::start(&fixture.root());
    let mut slow = connect(server.addr());
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let addr = server.addr();
    let dripping = thread::spawn(move || {
        // One header byte a second: never a complete head.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if slow.write_all(b"X").is_err() {
                return started.elapsed();
            }
            let mut buf = [0u8; 64];
            slow.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            if let Ok(0) = slow.read(&mut buf) {
                return started.elapsed();
            }
        }
        panic!("slow client was never cut off");
    });
    thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(get(addr, "/healthcheck.html").status, 200);
    assert!(started.elapsed() < Duration::from_secs(1), "health check waited {:?}", started.elapsed());
    let cut_after = dripping.join().unwrap();
    assert!(cut_after < Duration::from_secs(13), "cut off only after {cut_after:?}");
}

#[test]
fn start_up_line_names_version_address_and_file_count() {
    let fixture = Fixture::new();
    let mut child = Command::new(BIN)
        .args(["--port", "0", "--root"])
        .arg(fixture.root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut byte = [0u8; 1];
    let stdout = child.stdout.as_mut().unwrap();
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0] as char);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(line.starts_with(&format!("server {} listening on ", env!("CARGO_PKG_VERSION"))), "{line}");
    assert!(line.contains("serving 4 files"), "{line}");
}

#[test]
fn access_log_is_off_by_default_and_on_by_flag_or_env() {
    let fixture = Fixture::new();
    let quiet = Server::start(&fixture.root());
    get(quiet.addr(), "/");
    assert_eq!(quiet.next_line(Duration::from_millis(300)), None);

    for (args, env) in [(&["--access-log"][..], &[][..]), (&[][..], &[("ACCESS_LOG", "1")][..])] {
        let server = Server::start_with(&fixture.root(), args, env);
        get(server.addr(), "/healthcheck.html");
        let line = server.next_line(Duration::from_secs(5)).expect("an access log line");
        assert!(line.contains("\"GET /healthcheck.html HTTP/1.1\" 200 3"), "{line}");
        assert!(line.starts_with("127.0.0.1:"), "{line}");
    }
}

fn start_up_failure(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let output = Command::new(BIN).args(args).env_clear().envs(env.iter().copied()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().expect("exit code, not a signal"), stderr)
}

#[test]
fn start_up_errors_are_one_clear_line() {
    let fixture = Fixture::new();
    let root = fixture.root();
    let root = root.to_str().unwrap();

    let (code, err) = start_up_failure(&["--port", "0", "--root", "/no/such/dir"], &[]);
    assert_eq!(code, 1);
    assert!(err.starts_with("server: document root /no/such/dir:") && err.lines().count() == 1, "{err}");

    let empty = tempfile::tempdir().unwrap();
    let (code, err) = start_up_failure(&["--port", "0", "--root", empty.path().to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("has no files to serve"), "{err}");

    let busy = std::net::TcpListener::bind("[::]:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let (code, err) = start_up_failure(&["--root", root, "--port", &port], &[]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("port {port} is already in use")) && err.lines().count() == 1, "{err}");

    // Every port it would listen on is taken: one line naming them all.
    let busy2 = std::net::TcpListener::bind("[::]:0").unwrap();
    let port2 = busy2.local_addr().unwrap().port().to_string();
    let (code, err) =
        start_up_failure(&["--root", root], &[("PORT", &port), ("PLACEHOLDER_PORTS", &format!("{port2},{port}"))]);
    assert_eq!(code, 1);
    assert!(err.starts_with("server: cannot listen on any port:") && err.lines().count() == 1, "{err}");
    assert!(
        err.contains(&format!("port {port} is already in use")) && err.contains(&format!("port {port2} is")),
        "{err}"
    );
}

#[test]
fn bad_settings_and_unknown_arguments_are_logged_and_ignored() {
    let fixture = Fixture::new();
    let root = fixture.root();
    let port = free_port().to_string();
    let server = Server::spawn(
        std::path::Path::new(BIN),
        &["--root", root.to_str().unwrap(), "--max-connections", "lots", "npm", "start", "--verbose"],
        &[("PORT", "http"), ("PLACEHOLDER_PORTS", &port), ("ACCESS_LOG", "maybe")],
    );
    assert_eq!(server.port.to_string(), port, "a bad PORT must not stop it, nor bind another port");
    assert_eq!(get(server.addr(), "/").status, 200);
    let errors = server.error_lines(Duration::from_millis(300)).join("\n");
    assert!(errors.contains("ignoring arguments meant for the real image: npm start --verbose"), "{errors}");
    assert!(errors.contains("ignoring invalid PORT value \"http\""), "{errors}");
    assert!(errors.contains("--max-connections") && errors.contains("ACCESS_LOG"), "{errors}");
}

#[test]
fn missing_healthcheck_is_warned_about_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "x").unwrap();
    let output = Command::new("timeout")
        .args(["--preserve-status", "-s", "TERM", "0.5", BIN, "--port", "0", "--root"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no healthcheck.html"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "SIGTERM from timeout should end it cleanly");
}

#[test]
fn help_and_version() {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success() && text.contains("--probe") && text.contains("--strict"), "{text}");
    let version = Command::new(BIN).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("server {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn placeholder_status_goes_to_the_load_balancers_checks_only() {
    let fixture = Fixture::new();
    let server = Server::start_with(&fixture.root(), &[], &[("PLACEHOLDER_STATUS", "302")]);
    let from_balancer = send(
        server.addr(),
        b"GET / HTTP/1.1\r\nHost: 10.0.3.7\r\nUser-Agent: ELB-HealthChecker/2.0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(from_balancer.status, 302);
    assert_eq!(from_balancer.header("location"), Some("/"));
    // A browser that followed the redirect, and the container's own checks, get the page.
    let browser = get(server.addr(), "/");
    assert_eq!((browser.status, browser.text().as_str()), (200, "<h1>index</h1>\n"));

    let server = Server::start_with(&fixture.root(), &[], &[("PLACEHOLDER_STATUS", "401")]);
    let reply = send(
        server.addr(),
        b"GET /health HTTP/1.1\r\nHost: x\r\nUser-Agent: ELB-HealthChecker/2.0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((reply.status, reply.header("location")), (401, None));

    let server = Server::start_with(&fixture.root(), &[], &[("PLACEHOLDER_STATUS", "teapot")]);
    let errors = server.error_lines(Duration::from_millis(300)).join("\n");
    assert!(errors.contains("ignoring PLACEHOLDER_STATUS=\"teapot\""), "{errors}");
    let reply = send(
        server.addr(),
        b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: ELB-HealthChecker/2.0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(reply.status, 200);
}

#[test]
fn it_says_it_is_a_placeholder_in_every_answer_and_in_its_log() {
    let fixture = Fixture::new();
    let server = Server::start_with(&fixture.root(), &[], &[("PLACEHOLDER_NOTICE_SECONDS", "1")]);
    for path in ["/", "/healthcheck.html", "/missing/path"] {
        let reply = get(server.addr(), path);
        assert_eq!(
            reply.header("x-placeholder"),
            Some("ecs-minimal-container: the real image has not been deployed"),
            "{path}"
        );
    }
    // At start, and again while it serves (every second here; every 15 minutes by default).
    let first = server.next_notice(Duration::from_secs(5)).expect("a notice at start");
    assert!(
        first.starts_with("placeholder for this container since 20")
            && first.ends_with("Z: the real image has not been deployed"),
        "{first}"
    );
    let again = server.next_notice(Duration::from_secs(5)).expect("the notice again");
    assert_eq!(again, first);
}
