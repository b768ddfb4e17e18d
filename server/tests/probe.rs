//! `server --probe` against a healthy server, a closed port, a 404, a server that never answers,
//! and garbage: exit 0 only for a 2xx, exit 1 otherwise, never 2.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use common::*;

fn code_and_stderr(output: &std::process::Output) -> (i32, String) {
    (output.status.code().expect("exit code"), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn healthy_server_exits_0() {
    let fixture = Fixture::new();
    let server = Server::start(&fixture.root());
    let port = server.port.to_string();
    let (output, _) = probe(&["--port", &port], &[]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("http://127.0.0.1:{port}/healthcheck.html answered 200")), "{stdout}");
    // PORT is honoured the same way as by the server
    let (output, _) = probe(&[], &[("PORT", &port)]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let (output, _) = probe(&["--port", &port, "--path", "/"], &[]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
}

#[test]
fn closed_port_exits_1() {
    let closed = closed_port();
    let (output, _) = probe(&["--port", &closed.port.to_string()], &[]);
    let (code, stderr) = code_and_stderr(&output);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot connect") && stderr.lines().count() == 1, "{stderr}");
}

#[test]
fn missing_path_exits_1() {
    let fixture = Fixture::new();
    // Only a strict server answers 404; by default every path gets a page.
    let server = Server::start_with(&fixture.root(), &["--strict"], &[]);
    let (output, _) = probe(&["--port", &server.port.to_string(), "--path", "/missing.html"], &[]);
    let (code, stderr) = code_and_stderr(&output);
    assert_eq!(code, 1);
    assert!(stderr.contains("answered 404"), "{stderr}");
}

/// A port that accepts one connection and then says nothing for `hold`.
fn silent_server(hold: Duration) -> (String, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let holder = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        thread::sleep(hold);
        drop(stream);
    });
    (port, holder)
}

#[test]
fn server_that_never_answers_exits_1_within_timeout() {
    let (port, holder) = silent_server(Duration::from_secs(3));
    let (output, took) = probe(&["--port", &port, "--timeout", "0.5"], &[]);
    let (code, stderr) = code_and_stderr(&output);
    assert_eq!(code, 1);
    assert!(stderr.contains("no answer") && stderr.contains("within 500ms"), "{stderr}");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    holder.join().unwrap();
}

#[test]
fn default_timeout_is_two_seconds() {
    let (port, holder) = silent_server(Duration::from_secs(4));
    let (output, took) = probe(&["--port", &port], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_millis(3900), "took {took:?}");
    holder.join().unwrap();
}

#[test]
fn garbage_answer_exits_1() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let liar = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n");
    });
    let (output, _) = probe(&["--port", &port], &[]);
    let (code, stderr) = code_and_stderr(&output);
    assert_eq!(code, 1);
    assert!(stderr.contains("bad answer"), "{stderr}");
    liar.join().unwrap();
}

#[test]
fn probe_usage_errors_exit_1_never_2() {
    for (args, env) in [
        (&["--port", "x"][..], &[][..]),
        (&["--bogus"][..], &[][..]),
        (&["--path", "nope"][..], &[][..]),
        (&["--root", "/x"][..], &[][..]),
        (&[][..], &[("PORT", "99999")][..]),
    ] {
        let (output, _) = probe(args, env);
        assert_eq!(output.status.code(), Some(1), "{args:?} {env:?}: {output:?}");
    }
}
