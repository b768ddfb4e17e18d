//! Hostile input against the real binary over raw TCP: malformed and oversize requests, floods,
//! pipelining, resets, slowloris and connection churn. The server must answer each with a sensible
//! status or close the connection, never crash, and keep answering health checks.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// The first status code in `bytes`, if they start with an HTTP response.
fn status_of(bytes: &[u8]) -> Option<u16> {
    parse(bytes).map(|r| r.status)
}

fn still_healthy(server: &mut Server) {
    assert!(server.child.try_wait().unwrap().is_none(), "the server died");
    assert_eq!(get(server.addr(), "/healthcheck.html").status, 200, "the server stopped answering");
}

#[test]
fn malformed_requests_get_4xx_or_a_closed_connection() {
    let fixture = Fixture::new();
    // Strict: the default answers a well-formed request for a bad path with the index page.
    let mut server = Server::start_with(&fixture.root(), &["--strict"], &[]);
    let mut lenient = Server::start(&fixture.root());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\x00\x01\x02\x03garbage\r\n\r\n".to_vec()),
        ("no version", b"GET /\r\n\r\n".to_vec()),
        ("bad version", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n".to_vec()),
        ("lowercase method", b"get / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("method with junk", b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("huge method", format!("{} / HTTP/1.1\r\nHost: x\r\n\r\n", "A".repeat(20_000)).into_bytes()),
        ("space in target", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("invalid utf-8 target", b"GET /\xff\xfe.html HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("bad percent", b"GET /%G1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec()),
        ("header without colon", b"GET / HTTP/1.1\r\nHost x\r\n\r\n".to_vec()),
        ("header with NUL", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n".to_vec()),
        ("obsolete folding", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n".to_vec()),
        ("bare LF", b"GET / HTTP/1.1\nHost: x\n\n".to_vec()),
        (
            "conflicting lengths",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
        ),
        ("bad chunking", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec()),
        ("CONNECT", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n".to_vec()),
        (
            "absolute-form",
            b"GET http://evil.example/index.html HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".to_vec(),
        ),
    ];
    for (name, request) in cases {
        let reply = raw(server.addr(), &request);
        if let Some(status) = status_of(&reply) {
            assert!((400..500).contains(&status) || (name == "bare LF" && status == 200), "{name}: answered {status}");
        }
        still_healthy(&mut server);
        // These are answered alike in both modes, on a kept-alive connection that `raw` waits
        // out: asking twice would only double the wait.
        if matches!(name, "lowercase method" | "bare LF" | "CONNECT") {
            continue;
        }
        let reply = raw(lenient.addr(), &request);
        if let Some(status) = status_of(&reply) {
            let page = matches!(name, "bare LF" | "bad percent" | "absolute-form");
            assert!((400..500).contains(&status) || (page && status == 200), "lenient {name}: answered {status}");
        }
        still_healthy(&mut lenient);
    }
}

#[test]
fn a_request_with_both_lengths_smuggles_nothing() {
    let fixture = Fixture::new();
    let mut server = Server::start(&fixture.root());
    // Transfer-Encoding wins (RFC 9112 6.1); the rest must not be answered as a second request.
    let reply = raw(
        server.addr(),
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&reply);
    assert!(text.matches("HTTP/1.1 ").count() <= 1, "a smuggled request was answered: {text}");
    if let Some(status) = status_of(&reply) {
        assert!(status == 200 || (400..500).contains(&status), "{text}");
    }
    still_healthy(&mut server);
}

#[test]
fn header_floods_and_endless_headers_are_cut_off() {
    let fixture = Fixture::new();
    let mut server = Server::start(&fixture.root());
    // Too many headers, each small.
    let mut flood = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..500 {
        flood.push_str(&format!("X-{i}: y\r\n"));
    }
    flood.push_str("\r\n");
    assert_eq!(status_of(&raw(server.addr(), flood.as_bytes())), Some(431));
    // A header that never ends: the server stops reading at its limit and answers or closes.
    let mut stream = connect(server.addr());
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ").unwrap();
    let chunk = vec![b'a'; 4096];
    for _ in 0..256 {
        if stream.write_all(&chunk).is_err() {
            break; // already closed on us
        }
    }
    // Loopback buffers can swallow all of it unread: what matters is the answer.
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    assert!(reply.is_empty() || status_of(&reply) == Some(431), "{:?}", String::from_utf8_lossy(&reply));
    still_healthy(&mut server);
}

#[test]
fn a_thousand_pipelined_requests_on_one_connection() {
    let fixture = Fixture::new();
    let server = Server::start(&fixture.root());
    let mut stream = connect(server.addr());
    let request = b"GET /healthcheck.html HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut batch = request.repeat(999);
    batch.extend_from_slice(b"GET /healthcheck.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        thread::spawn(move || stream.write_all(&batch))
    };
    let mut replies = Vec::new();
    stream.read_to_end(&mut replies).unwrap();
    writer.join().unwrap().unwrap();
    let text = String::from_utf8_lossy(&replies);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 1000);
}

#[test]
fn bodies_on_get_http10_without_host_and_abrupt_resets() {
    let fixture = Fixture::new();
    let mut server = Server::start(&fixture.root());
    // A body on GET is read past (or the connection closed), never taken as the next request.
    let mut stream = connect(server.addr());
    stream
        .write_all(b"GET /healthcheck.html HTTP/1.1\r\nHost: x\r\nContent-Length: 28\r\n\r\nGET /secret.txt HTTP/1.1\r\n\r\nGET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut replies = Vec::new();
    stream.read_to_end(&mut replies).unwrap();
    let text = String::from_utf8_lossy(&replies);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(!text.contains(SECRET) && !text.contains("404"), "the body was taken as a request: {text}");

    // HTTP/1.0 without Host is valid HTTP/1.0.
    let reply = send(server.addr(), b"GET /healthcheck.html HTTP/1.0\r\n\r\n");
    assert_eq!((reply.status, reply.text().as_str()), (200, "OK\n"));

    // Resets mid-request and mid-response.
    for _ in 0..50 {
        let stream = connect(server.addr());
        let _ = (&stream).write_all(b"GET / HTTP/1.1\r\nHo");
        reset(stream);
    }
    for _ in 0..50 {
        let stream = connect(server.addr());
        let _ = (&stream).write_all(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
        reset(stream);
    }
    still_healthy(&mut server);
}

/// Closes with RST instead of FIN (SO_LINGER 0).
fn reset(stream: TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    unsafe {
        use std::os::fd::AsRawFd;
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as u32,
        );
    }
    drop(stream);
}

/// Times one health check on a fresh connection.
fn timed_health_check(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    assert_eq!(get(addr, "/healthcheck.html").status, 200);
    started.elapsed()
}

#[test]
fn slowloris_and_connection_churn_do_not_starve_health_checks_or_leak() {
    let fixture = Fixture::new();
    let server = Server::start_binary(&shipping_binary(), &fixture.root(), &[], &[]);
    let addr = server.addr();
    let pid = server.child.id();
    timed_health_check(addr);
    let idle_fds = open_fds(pid);

    // 500 connections that each send part of a request head and then dribble.
    let mut slow: Vec<TcpStream> = (0..500)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    // 10,000 short connections from two threads, half of them reset.
    let churn: Vec<_> = (0..2)
        .map(|t| {
            thread::spawn(move || {
                for i in 0..5_000 {
                    if let Ok(stream) = TcpStream::connect(addr) {
                        let _ = (&stream)
                            .write_all(b"GET /healthcheck.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                        if (i + t) % 2 == 0 {
                            reset(stream);
                        } else {
                            let _ = stream.shutdown(Shutdown::Write);
                        }
                    }
                }
            })
        })
        .collect();

    let mut worst = Duration::ZERO;
    let mut peak_kib = 0;
    while churn.iter().any(|h| !h.is_finished()) {
        for s in slow.iter_mut() {
            let _ = s.write_all(b"X");
        }
        worst = worst.max(timed_health_check(addr));
        peak_kib = peak_kib.max(resident_kib(pid));
        thread::sleep(Duration::from_millis(20));
    }
    for h in churn {
        h.join().unwrap();
    }
    eprintln!("under attack: slowest health check {worst:?}, peak resident {peak_kib} KiB");
    // The goal is 100 ms; the bound here only separates "answered" from "queued behind the attack"
    // (which would take the 10 s header timeout) on a loaded test machine.
    assert!(worst < Duration::from_secs(1), "a health check took {worst:?} under attack");
    assert!(peak_kib < 16 * 1024, "resident memory reached {peak_kib} KiB");

    drop(slow);
    let fds = fds_return_to(pid, idle_fds, Duration::from_secs(5));
    assert!(fds <= idle_fds + 5, "file descriptors stayed open: {fds} vs {idle_fds} idle");
    let after = resident_kib(pid);
    assert!(after < 4 * 1024, "memory stayed at {after} KiB after the attack");
    timed_health_check(addr);
}

#[test]
fn sigterm_under_load_finishes_in_flight_requests_and_exits_0() {
    let fixture = Fixture::new();
    let big: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    fixture.write("big.bin", &big);
    let mut server = Server::start(&fixture.root());
    let addr = server.addr();
    // Clients that each start a large download and read it slowly.
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let mut stream = connect(addr);
            stream.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
            let mut first = vec![0u8; 1024];
            stream.read_exact(&mut first).unwrap();
            thread::spawn(move || {
                let mut rest = Vec::new();
                let mut buf = [0u8; 64 * 1024];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => rest.extend_from_slice(&buf[..n]),
                        Err(e) => panic!("download cut short: {e}"),
                    }
                    thread::sleep(Duration::from_millis(1));
                }
                first.extend(rest);
                first
            })
        })
        .collect();
    server.signal(libc::SIGTERM);
    let sent = Instant::now();
    for client in clients {
        let reply = parse(&client.join().unwrap()).expect("a whole response");
        assert_eq!(reply.status, 200);
        assert!(reply.body == big, "a download was truncated or corrupted");
    }
    assert!(TcpStream::connect(addr).is_err(), "new connections accepted after SIGTERM");
    assert_eq!(server.wait(Duration::from_secs(6)).code(), Some(0));
    assert!(sent.elapsed() < Duration::from_secs(6));
}
