//! PID 1 behaviour: SIGTERM and SIGINT stop the server promptly and cleanly, letting in-flight
//! requests finish and refusing new connections.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn sigterm_when_idle_exits_0_promptly() {
    let fixture = Fixture::new();
    let mut server = Server::start(&fixture.root());
    assert_eq!(get(server.addr(), "/healthcheck.html").status, 200);
    let sent = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.wait(Duration::from_secs(2));
    // The goal is well under 100 ms; the bound here leaves room for a loaded CI machine.
    assert!(sent.elapsed() < Duration::from_secs(1), "took {:?}", sent.elapsed());
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_signal_right_after_the_start_up_line_is_handled() {
    // The start-up line means ready: the handlers must already be installed by then, or a signal
    // in between kills the process instead of stopping it cleanly.
    let fixture = Fixture::new();
    for (round, signal) in [libc::SIGINT, libc::SIGTERM].into_iter().cycle().take(20).enumerate() {
        let mut server = Server::start(&fixture.root());
        server.signal(signal);
        assert_eq!(server.wait(Duration::from_secs(2)).code(), Some(0), "round {round}");
    }
}

#[test]
fn idle_keep_alive_connection_does_not_hold_up_shutdown() {
    let fixture = Fixture::new();
    let mut server = Server::start(&fixture.root());
    let mut idle = connect(server.addr());
    idle.write_all(b"GET /healthcheck.html HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 512];
    assert!(idle.read(&mut buf).unwrap() > 0);
    let sent = Instant::now();
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait(Duration::from_secs(3)).code(), Some(0));
    assert!(sent.elapsed() < Duration::from_secs(1), "took {:?}", sent.elapsed());
}

#[test]
fn sigterm_during_a_request_lets_it_finish_and_refuses_new_connections() {
    let fixture = Fixture::new();
    // Big enough that the response cannot sit in socket buffers while the client is not reading.
    let big: Vec<u8> = (0..32 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    fixture.write("big.bin", &big);
    let mut server = Server::start(&fixture.root());

    let mut client = connect(server.addr());
    client.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut received = vec![0u8; 64 * 1024];
    client.read_exact(&mut received).unwrap();

    server.signal(libc::SIGTERM);
    // Refused once the server has handled the signal (give it a moment to do so).
    let deadline = Instant::now() + Duration::from_secs(2);
    while TcpStream::connect(server.addr()).is_ok() {
        assert!(Instant::now() < deadline, "new connections still accepted after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(server.child.try_wait().unwrap().is_none(), "exited with a request in flight");

    client.read_to_end(&mut received).unwrap();
    let reply = parse(&received).expect("a whole response");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), big.len());
    assert!(reply.body == big, "body corrupted");
    assert_eq!(server.wait(Duration::from_secs(5)).code(), Some(0));
}
