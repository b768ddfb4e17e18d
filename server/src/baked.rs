//! What publish bakes into an image's environment and the server reads back, written and read
//! here only, so the two cannot drift: `PLACEHOLDER_PORTS` (the ports, each for every container
//! that runs the image or for one container by name) and `PLACEHOLDER_STATUS` (the status a
//! load balancer's matcher wants instead of 200).

use std::fmt;

use crate::sidecars;

/// The environment variable publish bakes the ports into.
pub const PORTS: &str = "PLACEHOLDER_PORTS";
/// The environment variable publish bakes the load balancer's status into.
pub const STATUS: &str = "PLACEHOLDER_STATUS";

/// `PLACEHOLDER_PORTS` as publish bakes it: `8080,9090` for every container that runs the image,
/// and `frontend:3000,backend:8080` where one repository's tags serve containers on different
/// ports in one task (on Fargate they share one network namespace, so each must keep to its own).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BakedPorts {
    entries: Vec<(Option<String>, u16)>,
}

impl BakedPorts {
    /// From (container, port) entries, in order: `None` for every container.
    pub fn new(entries: Vec<(Option<String>, u16)>) -> BakedPorts {
        BakedPorts { entries }
    }

    pub fn parse(list: &str) -> Result<BakedPorts, String> {
        let mut entries = Vec::new();
        for entry in list.split([',', ' ']).map(str::trim).filter(|e| !e.is_empty()) {
            let (name, port) = match entry.rsplit_once(':') {
                // `0.0.0.0:8080`, `localhost:8080` and compose's `9090:8080` name no container.
                Some((name, port)) => {
                    (Some(name.to_owned()).filter(|n| sidecars::is_container_name(n) && n != "localhost"), port)
                }
                None => (None, entry),
            };
            let (number, protocol) = port.split_once('/').unwrap_or((port, "tcp"));
            if !protocol.eq_ignore_ascii_case("tcp") {
                continue;
            }
            match number.parse::<u16>() {
                Ok(port) if port > 0 => entries.push((name, port)),
                _ => return Err(format!("ignoring {PORTS}={list:?}: expected ports such as 8080,9090")),
            }
        }
        Ok(BakedPorts { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every port, each once: for a container whose name is not known.
    pub fn all(&self) -> Vec<u16> {
        once(self.entries.iter().map(|(_, port)| *port))
    }

    /// The ports of the container named `name`: those for every container and its own. Where
    /// entries name containers and not this one (a worker with no port beside the web container
    /// of the same image), only those for every container, which may be none: the ports named
    /// for its neighbours are theirs. Without a name, all of them.
    pub fn for_container(&self, name: Option<&str>) -> Vec<u16> {
        match name {
            Some(name) if self.entries.iter().any(|(n, _)| n.is_some()) => once(
                self.entries.iter().filter(|(n, _)| n.is_none() || n.as_deref() == Some(name)).map(|(_, port)| *port),
            ),
            _ => self.all(),
        }
    }
}

/// What publish writes: `3000,frontend:8080`.
impl fmt::Display for BakedPorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, (name, port)) in self.entries.iter().enumerate() {
            let comma = if n == 0 { "" } else { "," };
            match name {
                Some(name) => write!(f, "{comma}{name}:{port}")?,
                None => write!(f, "{comma}{port}")?,
            }
        }
        Ok(())
    }
}

/// Each port once, in order.
fn once(ports: impl Iterator<Item = u16>) -> Vec<u16> {
    let mut kept = Vec::new();
    for port in ports {
        if !kept.contains(&port) {
            kept.push(port);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_publish_writes_the_server_reads_back() {
        for entries in [
            vec![(None, 8080)],
            vec![(None, 3000), (None, 9090)],
            vec![(Some("frontend".to_owned()), 3000), (Some("backend".to_owned()), 8080), (None, 9100)],
            vec![(Some("web_1".to_owned()), 80), (Some("web-2".to_owned()), 80)],
        ] {
            let baked = BakedPorts::new(entries.clone());
            let written = baked.to_string();
            assert_eq!(BakedPorts::parse(&written), Ok(baked), "{written}");
        }
        assert_eq!(
            BakedPorts::new(vec![(Some("frontend".into()), 3000), (None, 9100)]).to_string(),
            "frontend:3000,9100"
        );
    }

    #[test]
    fn written_by_hand() {
        let baked = BakedPorts::parse("0.0.0.0:8080, 9090:9091 localhost:7000 53/udp 443/tcp").unwrap();
        assert_eq!(baked.all(), [8080, 9091, 7000, 443]);
        assert!(BakedPorts::parse("http").is_err() && BakedPorts::parse("0").is_err());
        let named = BakedPorts::parse("frontend:3000,backend:8080,9100").unwrap();
        assert_eq!(named.for_container(Some("frontend")), [3000, 9100]);
        assert_eq!(named.for_container(Some("worker")), [9100]);
        assert_eq!(named.for_container(None), [3000, 8080, 9100]);
    }
}
