//! Opening a port when the container's own health check names it. A check such as
//! `curl -f http://localhost:3000/health` runs inside the container as this binary, and the port it
//! names on localhost is the service's own port; when nothing listens there yet (Fargate's task
//! metadata names no ports), the check asks the running server to listen on it, then probes it.
//! From then on the load balancer's checks on that port pass too.
//!
//! The request travels over an abstract Unix socket: it lives in the network namespace, so it
//! needs no file in a read-only root, and its name carries the PID namespace, which a health check
//! shares with the server (Docker runs it inside the container) and a sidecar does not. The server
//! also refuses a peer it cannot see in its own PID namespace.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// One line asks, one line answers; anything longer is not ours.
const MAX_LINE: usize = 64;
/// A peer that sends nothing is dropped after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// Ports to listen on, from a health check (with a reply) or from task metadata (without).
pub struct Open {
    pub ports: Vec<u16>,
    /// For each port, `Ok` once it listens (now or before), or why it cannot.
    pub reply: Option<oneshot::Sender<Vec<Result<(), String>>>>,
}

/// The socket's name: per PID namespace, so a health check finds its own container's server.
/// `PLACEHOLDER_CONTROL_SOCKET` names it outright, for servers that share a PID namespace (tests).
fn name() -> String {
    if let Some(name) = std::env::var("PLACEHOLDER_CONTROL_SOCKET").ok().filter(|n| !n.is_empty()) {
        return name;
    }
    let namespace =
        std::fs::read_link("/proc/self/ns/pid").map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    format!("ecs-minimal-container/open/{namespace}")
}

fn address() -> io::Result<std::os::unix::net::SocketAddr> {
    std::os::unix::net::SocketAddr::from_abstract_name(name().as_bytes())
}

/// Starts answering requests to open ports, sending each to the accept loop through `requests`.
pub fn serve(requests: mpsc::UnboundedSender<Open>) -> io::Result<()> {
    let listener = std::os::unix::net::UnixListener::bind_addr(&address()?)?;
    listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(listener)?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            tokio::spawn(answer(stream, requests.clone()));
        }
    });
    Ok(())
}

async fn answer(stream: UnixStream, requests: mpsc::UnboundedSender<Open>) {
    // A process in another PID namespace (a sidecar) shows as PID 0, or not at all.
    if !stream.peer_cred().is_ok_and(|cred| cred.pid().is_some_and(|pid| pid > 0)) {
        return;
    }
    let Ok(Ok(line)) = tokio::time::timeout(REQUEST_TIMEOUT, read_line(&stream)).await else { return };
    let reply = match parse(&line) {
        Ok(port) => {
            let (tx, rx) = oneshot::channel();
            let sent = requests.send(Open { ports: vec![port], reply: Some(tx) });
            match (sent, rx.await) {
                (Ok(()), Ok(results)) => match results.into_iter().next() {
                    Some(Ok(())) => "ok\n".to_owned(),
                    Some(Err(why)) => format!("no {why}\n"),
                    None => "no answer\n".to_owned(),
                },
                _ => "no the server is stopping\n".to_owned(),
            }
        }
        Err(why) => format!("no {why}\n"),
    };
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, write_all(&stream, reply.as_bytes())).await;
}

/// One line of at most `MAX_LINE` bytes (the rest is never read).
async fn read_line(stream: &UnixStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut buffer = [0u8; MAX_LINE];
    while !line.contains(&b'\n') && line.len() < MAX_LINE {
        stream.readable().await?;
        match stream.try_read(&mut buffer[..MAX_LINE - line.len()]) {
            Ok(0) => break,
            Ok(n) => line.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Without tokio's io-util: the lines are short, and every byte of this binary ships.
async fn write_all(stream: &UnixStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `open 3000` -> 3000.
pub(crate) fn parse(line: &str) -> Result<u16, String> {
    match line.trim().split_once(' ') {
        Some(("open", port)) => match port.trim().parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(format!("{:?} is not a port", port.trim())),
        },
        _ => Err("expected `open PORT`".to_owned()),
    }
}

/// Asks this container's server to listen on `port`: `Ok` once it does, `Err` when no server
/// answers or it cannot listen there (a sidecar holds the port, or it is privileged).
pub async fn open(port: u16, deadline: Instant) -> Result<(), String> {
    #[cfg(any(test, feature = "fuzzing"))]
    if let Some(opened) = crate::sandbox::open(port) {
        return opened;
    }
    let ask = async {
        let stream = std::os::unix::net::UnixStream::connect_addr(&address().map_err(|e| e.to_string())?)
            .map_err(|_| "no placeholder server runs in this container".to_owned())?;
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        let stream = UnixStream::from_std(stream).map_err(|e| e.to_string())?;
        write_all(&stream, format!("open {port}\n").as_bytes()).await.map_err(|e| e.to_string())?;
        let reply = read_line(&stream).await.map_err(|e| e.to_string())?;
        match reply.trim_end().split_once(' ').unwrap_or((reply.trim_end(), "")) {
            ("ok", _) => Ok(()),
            ("no", why) => Err(why.to_owned()),
            _ => Err("the server gave no answer".to_owned()),
        }
    };
    tokio::time::timeout_at(deadline, ask).await.unwrap_or_else(|_| Err("the server did not answer in time".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(parse("open 3000\n"), Ok(3000));
        assert_eq!(parse("open  8080 "), Ok(8080));
        for bad in ["", "open", "open 0", "open 70000", "open x", "close 80", "open3000"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_name_carries_the_pid_namespace() {
        if std::env::var_os("PLACEHOLDER_CONTROL_SOCKET").is_none() {
            assert!(name().starts_with("ecs-minimal-container/open/pid:["), "{}", name());
        }
    }
}
