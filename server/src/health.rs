//! The placeholder's own health, for health-check commands it cannot run as written: a check
//! that names `nc`, a pipe or a port nobody listens on asks "is this service up?", and here the
//! service is the placeholder.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hyper::Method;
use tokio::time::Instant;

use crate::args::{self, DEFAULT_PORT, DEFAULT_PROBE_PATH};
use crate::client::{self, Failure};
use crate::control;
use crate::fetch::{Sink, Streams};

/// Each port gets this long to answer; the placeholder answers from memory in microseconds.
const PER_PORT: Duration = Duration::from_secs(2);
/// A namespace shared with sidecars can have many listeners; the placeholder's are among the first.
const MAX_PORTS: usize = 16;

/// Answers for a check command that cannot run as written: says so on stderr in one line and
/// returns the placeholder's own health as an exit status (0 or 1). A port the command names on
/// localhost (`nc -z localhost 3000`, `node -e "http.get('http://localhost:3000')"`) is the
/// service's own: the server is asked to listen there first, and it is checked first.
pub async fn instead(command: &str, why: &str, deadline: Instant) -> i32 {
    let named = ports_named(command);
    for &port in &named {
        let _ = control::open(port, deadline).await;
    }
    let verdict = check(&named, deadline).await;
    let (status, verdict) = match &verdict {
        Ok(how) => (0, format!("healthy ({how})")),
        Err(why) => (1, format!("unhealthy ({why})")),
    };
    let shown: String = command.chars().take(100).collect();
    let shown = if shown.len() < command.len() { format!("{shown}...") } else { shown };
    let line = format!("placeholder: {shown:?}: {why}; checked the placeholder's own health instead: {verdict}\n");
    Streams::write(Sink::Stderr, line.as_bytes());
    status
}

/// `Ok("127.0.0.1:8080 answered 200")` when the placeholder answers 2xx on one of `first` or its
/// likely ports, `Err` naming the ports tried otherwise. Gives up at `deadline`.
pub async fn check(first: &[u16], deadline: Instant) -> Result<String, String> {
    let mut ports = first.to_vec();
    ports.extend(likely_ports().into_iter().filter(|p| !first.contains(p)));
    for &port in &ports {
        for ip in [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)] {
            let address = SocketAddr::new(ip, port);
            let give_up = deadline.min(Instant::now() + PER_PORT);
            match client::request(address, Method::GET, &address.to_string(), DEFAULT_PROBE_PATH, &[], 0, give_up).await
            {
                Ok(answer) if answer.status.is_success() => {
                    return Ok(format!("{address} answered {}", answer.status.as_u16()));
                }
                // Only when IPv4 finds nobody is IPv6 worth a try.
                Err(Failure::Refused) => continue,
                _ => break,
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    let tried: Vec<String> = ports.iter().map(u16::to_string).collect();
    Err(format!("nothing answered {DEFAULT_PROBE_PATH} with 2xx on port(s) {}", tried.join(", ")))
}

/// Ports a command names on this container: `localhost:3000`, `127.0.0.1:8080/health`,
/// `[::1]:80`, and `localhost 3000` as `nc` takes them.
fn ports_named(command: &str) -> Vec<u16> {
    const LOCAL: [&str; 5] = ["localhost", "127.0.0.1", "0.0.0.0", "[::1]", "::1"];
    let words: Vec<&str> =
        command.split(|c: char| c.is_whitespace() || "'\"`(),;".contains(c)).filter(|w| !w.is_empty()).collect();
    let mut ports = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let address = word.split_once("://").map_or(*word, |(_, rest)| rest);
        let address = address.split('/').next().unwrap_or_default();
        let port = match LOCAL.iter().find(|host| address.starts_with(**host)) {
            Some(host) => match address[host.len()..].strip_prefix(':') {
                Some(port) => port.parse::<u16>().ok(),
                None if address.len() == host.len() => words.get(i + 1).and_then(|next| next.parse::<u16>().ok()),
                None => None,
            },
            None => None,
        };
        if let Some(port) = port.filter(|p| *p != 0 && !ports.contains(p) && ports.len() < MAX_PORTS) {
            ports.push(port);
        }
    }
    ports
}

/// Where the placeholder probably listens, most likely first.
pub fn likely_ports() -> Vec<u16> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    #[cfg(any(test, feature = "fuzzing"))]
    if let (Some(listening), Some(environment)) = (crate::sandbox::listening(), crate::sandbox::environment()) {
        let env = |name: &str| environment.get(name).filter(|v| !v.trim().is_empty()).cloned();
        return candidate_ports(env("PORT").as_deref(), env(server::baked::PORTS).as_deref(), listening);
    }
    let listening = ["/proc/net/tcp6", "/proc/net/tcp"]
        .iter()
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .flat_map(|table| listening_ports(&table))
        .collect();
    candidate_ports(env("PORT").as_deref(), env(server::baked::PORTS).as_deref(), listening)
}

/// In order: `PORT`, `PLACEHOLDER_PORTS`, the ports listening here, 80; each once.
fn candidate_ports(port: Option<&str>, placeholder_ports: Option<&str>, listening: Vec<u16>) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::new();
    let named = port.and_then(|p| p.trim().parse().ok());
    let baked = placeholder_ports.and_then(|list| args::parse_port_list(list).ok()).unwrap_or_default();
    for port in named.into_iter().chain(baked).chain(listening).chain([DEFAULT_PORT]) {
        if port != 0 && !ports.contains(&port) && ports.len() < MAX_PORTS {
            ports.push(port);
        }
    }
    ports
}

/// Local ports in state LISTEN (0A) in a `/proc/net/tcp` or `/proc/net/tcp6` table.
fn listening_ports(table: &str) -> Vec<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            let port = local.rsplit(':').next()?;
            (state == "0A").then(|| u16::from_str_radix(port, 16).ok()).flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listening_sockets_from_proc() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0BB8 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
   3: garbage";
        assert_eq!(listening_ports(tcp), vec![8080, 80]);
        let tcp6 = "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000";
        assert_eq!(listening_ports(tcp6), vec![3000]);
        assert_eq!(listening_ports(""), Vec::<u16>::new());
        assert_eq!(listening_ports("header\n 0: x:ZZZZ y 0A"), Vec::<u16>::new());
    }

    #[test]
    fn ports_a_command_names_on_this_container() {
        assert_eq!(ports_named("nc -z localhost 3000"), vec![3000]);
        assert_eq!(
            ports_named(
                "node -e \"require('http').get('http://localhost:8080/health', r => process.exit(r.statusCode == 200 ? 0 : 1))\""
            ),
            vec![8080]
        );
        assert_eq!(ports_named("curl -fk https://127.0.0.1:8443/health | grep ok"), vec![8443]);
        assert_eq!(
            ports_named("python3 -c 'import urllib.request; urllib.request.urlopen(\"http://[::1]:5000\")'"),
            vec![5000]
        );
        assert_eq!(ports_named("pg_isready -h db.internal -p 5432 && curl http://example.com:81"), Vec::<u16>::new());
        assert_eq!(ports_named("nc -z localhost"), Vec::<u16>::new());
    }

    #[test]
    fn candidates_in_order_without_repeats() {
        assert_eq!(candidate_ports(Some("8080"), Some("9090,8080"), vec![3000, 9090, 80]), vec![8080, 9090, 3000, 80]);
        assert_eq!(candidate_ports(Some("x"), Some("junk"), vec![]), vec![80]);
        assert_eq!(candidate_ports(None, None, (1..100).collect()).len(), MAX_PORTS);
    }
}
