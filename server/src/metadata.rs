//! The container's own ports, from ECS task metadata v4, so the placeholder listens where the
//! real service would without being told.
//!
//! What the ECS agent puts there (aws/amazon-ecs-agent):
//! - `GET ${ECS_CONTAINER_METADATA_URI_V4}` is this container's document, `/task` the task's with
//!   `Containers: [...]`; each container has `DockerId`, `Name`, `Networks[].NetworkMode` and
//!   `Ports: [{ContainerPort, Protocol, HostPort, HostIp}]`, every field `omitempty`, `Protocol`
//!   lower-case "tcp"/"udp" (ecs-agent/tmds/handlers/response/response.go `PortResponse`;
//!   agent/handlers/v4/response.go wraps agent/handlers/v2/response.go `NewContainerResponse`).
//! - v4 `Ports` come only from `container.GetKnownPortBindings()` (agent/handlers/v2/response.go):
//!   the bindings Docker reports, recorded once the agent has inspected the started container
//!   (agent/engine/docker_task_engine.go, "Set port mappings"; amazon-ecs-agent#2476/PR #2495).
//!   So in bridge mode they appear shortly after start, with the dynamic `HostPort`. In awsvpc
//!   mode the containers join the pause container's network namespace, where Docker publishes no
//!   ports, so `Ports` is absent (HostPort would equal ContainerPort); a maintainer confirms it for
//!   Fargate in amazon-ecs-agent#4291, and AWS's Fargate v4 example has no `Ports`. Host mode
//!   publishes none either. The fallback to the task definition's mappings when Docker reports
//!   none (`NewPortBindingsResponse`, agent/handlers/v1/response.go) serves only the v1
//!   introspection API, not v4.
//! - The same port can be listed twice (an IPv4 and an IPv6 binding, amazon-ecs-agent#3096).
//!
//! - `/task` lists every container of the task with `Name`, `Image` and `Type` (`NORMAL` for the
//!   task definition's own; `CNI_PAUSE`, `NAMESPACE_PAUSE`... for those ECS adds), before they run
//!   and on Fargate too (agent/handlers/v2/response.go `NewTaskResponse`; Fargate's v4 examples).
//!
//! Hence: retry briefly for bridge mode, give up at once when the document says awsvpc or host,
//! and let the caller fall back to `PLACEHOLDER_PORTS` (baked in at publish), or guess from the
//! task's other containers (`ports.rs`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hyper::{Method, StatusCode};
use tokio::time::Instant;

use crate::client;
use crate::json::{self, Json};
use crate::ports::Surroundings;
use server::sidecars::{self, Neighbour};

/// Each metadata request; the endpoint is local, so a slower answer means it is not there.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pauses between attempts, for bridge mode's ports to be recorded after the container starts.
const BACKOFF: [Duration; 2] = [Duration::from_millis(500), Duration::from_millis(1000)];
/// All attempts together: the fallback ports wait at most this long.
const GIVE_UP_AFTER: Duration = Duration::from_secs(3);
/// A task document lists every container with its labels and networks; this is plenty.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// What the metadata says: this container's TCP ports (empty when it names none) and its
/// surroundings. Retries for bridge mode's ports; returns at once in awsvpc and host mode.
pub async fn look(uri: &str) -> Result<Found, String> {
    let endpoint = Endpoint::parse(uri).ok_or_else(|| format!("cannot use ECS_CONTAINER_METADATA_URI_V4={uri:?}"))?;
    let deadline = Instant::now() + GIVE_UP_AFTER;
    let mut last = Err(String::new());
    for pause in BACKOFF.iter().map(Some).chain([None]) {
        match lookup(&endpoint, deadline).await {
            Ok(found) if !found.ports.is_empty() => return Ok(found),
            Ok(found) if matches!(found.around.network_mode.as_deref(), Some("awsvpc" | "host")) => return Ok(found),
            other => last = other,
        }
        match pause {
            Some(pause) if Instant::now() + *pause < deadline => tokio::time::sleep(*pause).await,
            _ => break,
        }
    }
    last
}

pub struct Found {
    pub ports: Vec<u16>,
    /// The container's name in its task definition, which ports baked for it are keyed by.
    pub name: Option<String>,
    pub around: Surroundings,
}

impl Found {
    /// Why no port was found, for the log: `names no ports for this container (awsvpc network mode)`.
    pub fn why_none(&self) -> String {
        match &self.around.network_mode {
            Some(mode) => format!("names no ports for this container ({mode} network mode)"),
            None => "names no ports for this container".to_owned(),
        }
    }
}

async fn lookup(endpoint: &Endpoint, deadline: Instant) -> Result<Found, String> {
    let container = endpoint.get("", deadline).await?;
    let task = endpoint.get("/task", deadline).await.ok();
    Ok(read(&container, task.as_ref()))
}

/// What this container's document and its task's (when that could be had) say.
pub(crate) fn read(container: &Json, task: Option<&Json>) -> Found {
    let network_mode = container
        .get("Networks")
        .and_then(|n| n.as_array().first())
        .and_then(|n| n.get("NetworkMode"))
        .and_then(Json::as_str)
        .map(str::to_owned);
    let mut ports = tcp_ports(container);
    let me = task.and_then(|task| find_container(task, container));
    // The task document is built from the same state, but may be the one an agent fills.
    if ports.is_empty()
        && let Some(me) = me
    {
        ports = tcp_ports(me);
    }
    let neighbours = task.map(|task| neighbours(task, me.unwrap_or(container)));
    let name = container.get("Name").and_then(Json::as_str).filter(|n| !n.is_empty()).map(str::to_owned);
    Found { ports, name, around: Surroundings { network_mode, neighbours } }
}

/// Every container of the task but `me` (the same `DockerId` or `Name`: names are unique in a
/// task), as the placeholder sees it. One with this container's `ImageID` (known once its image
/// is pulled) runs the placeholder too, whatever its repository is called.
fn neighbours(task: &Json, me: &Json) -> Vec<Neighbour> {
    let text = |c: &Json, key: &str| c.get(key).and_then(Json::as_str).unwrap_or_default().to_owned();
    let is_me =
        |c: &Json| ["DockerId", "Name"].iter().any(|key| !text(me, key).is_empty() && text(me, key) == text(c, key));
    let my_image = text(me, "ImageID");
    let containers = task.get("Containers").map(Json::as_array).unwrap_or_default();
    containers
        .iter()
        .filter(|c| !is_me(c))
        .map(|c| {
            let defined = matches!(text(c, "Type").as_str(), "" | "NORMAL");
            if defined && !my_image.is_empty() && text(c, "ImageID") == my_image {
                Neighbour::Placeholder { name: text(c, "Name"), ports: tcp_ports(c) }
            } else {
                sidecars::classify(&text(c, "Name"), &text(c, "Image"), &text(c, "Type"))
            }
        })
        .collect()
}

/// This container in a task document: by `DockerId`, else by `Name`.
fn find_container<'a>(task: &'a Json, me: &Json) -> Option<&'a Json> {
    let containers = task.get("Containers").map(Json::as_array).unwrap_or_default();
    let field = |c: &'a Json, key: &str| c.get(key).and_then(Json::as_str).filter(|v| !v.is_empty());
    let same = |key: &str| {
        let mine = me.get(key).and_then(Json::as_str).filter(|v| !v.is_empty())?;
        containers.iter().find(|c| field(c, key) == Some(mine))
    };
    same("DockerId").or_else(|| same("Name"))
}

/// `ContainerPort` of each TCP mapping (`Protocol` missing means TCP), without repeats.
fn tcp_ports(container: &Json) -> Vec<u16> {
    let mut ports = Vec::new();
    for mapping in container.get("Ports").map(Json::as_array).unwrap_or_default() {
        let tcp = mapping.get("Protocol").and_then(Json::as_str).is_none_or(|p| p.eq_ignore_ascii_case("tcp"));
        let port = mapping
            .get("ContainerPort")
            .and_then(Json::as_f64)
            .filter(|p| p.fract() == 0.0 && (1.0..=65535.0).contains(p));
        if let (true, Some(port)) = (tcp, port) {
            let port = port as u16;
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
    }
    ports
}

/// `http://IP[:PORT]/PATH`: ECS uses a link-local address, so a host name is never looked up.
pub(crate) struct Endpoint {
    address: SocketAddr,
    authority: String,
    path: String,
}

impl Endpoint {
    pub(crate) fn parse(uri: &str) -> Option<Endpoint> {
        let rest = uri.strip_prefix("http://")?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let address = match authority.parse::<SocketAddr>() {
            Ok(address) => address,
            Err(_) => {
                SocketAddr::new(authority.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok()?, 80)
            }
        };
        let path = path.trim_end_matches('/');
        Some(Endpoint { address, authority: authority.to_owned(), path: path.to_owned() })
    }

    async fn get(&self, suffix: &str, deadline: Instant) -> Result<Json, String> {
        let target = format!("{}{suffix}", self.path);
        let target = if target.is_empty() { "/".to_owned() } else { target };
        let give_up = deadline.min(Instant::now() + ATTEMPT_TIMEOUT);
        let answer =
            client::request(self.address, Method::GET, &self.authority, &target, &[], MAX_DOCUMENT_BYTES, give_up)
                .await
                .map_err(|e| e.to_string())?;
        if answer.status != StatusCode::OK {
            return Err(format!("answered {}", answer.status));
        }
        json::parse(&String::from_utf8_lossy(&answer.body)).ok_or_else(|| "sent a document that is not JSON".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_of_tcp_mappings_only_once_each() {
        let doc = json::parse(
            r#"{"Ports":[{"ContainerPort":8080,"Protocol":"tcp","HostPort":32768},{"ContainerPort":8080,"Protocol":"tcp","HostPort":32769},
                {"ContainerPort":53,"Protocol":"udp"},{"ContainerPort":9090},{"ContainerPort":0},{"ContainerPort":70000},
                {"ContainerPort":1.5},{"ContainerPort":"81"},{"Protocol":"tcp"},"junk",{"ContainerPort":3000,"Protocol":"TCP"}]}"#,
        )
        .unwrap();
        assert_eq!(tcp_ports(&doc), vec![8080, 9090, 3000]);
        assert_eq!(tcp_ports(&json::parse(r#"{"Ports":null}"#).unwrap()), Vec::<u16>::new());
        assert_eq!(tcp_ports(&json::parse("[]").unwrap()), Vec::<u16>::new());
    }

    #[test]
    fn finds_this_container_in_the_task_by_docker_id_then_name() {
        let task = json::parse(
            r#"{"Containers":[{"DockerId":"aaa","Name":"sidecar","Ports":[{"ContainerPort":9000}]},
                {"DockerId":"bbb","Name":"web","Ports":[{"ContainerPort":3000}]},{"Name":"","DockerId":""}]}"#,
        )
        .unwrap();
        let by_id = json::parse(r#"{"DockerId":"bbb","Name":"sidecar"}"#).unwrap();
        assert_eq!(find_container(&task, &by_id).map(tcp_ports), Some(vec![3000]));
        let by_name = json::parse(r#"{"DockerId":"zzz","Name":"web"}"#).unwrap();
        assert_eq!(find_container(&task, &by_name).map(tcp_ports), Some(vec![3000]));
        let nameless = json::parse(r#"{"DockerId":"","Name":""}"#).unwrap();
        assert!(find_container(&task, &nameless).is_none());
        assert!(find_container(&json::parse("{}").unwrap(), &by_id).is_none());
    }

    #[test]
    fn neighbours_are_every_other_container() {
        let task = json::parse(
            r#"{"Containers":[{"DockerId":"aaa","Name":"web","Image":"1.dkr.ecr.eu-west-1.amazonaws.com/web:1","Type":"NORMAL"},
                {"DockerId":"bbb","Name":"log_router","Image":"public.ecr.aws/aws-observability/aws-for-fluent-bit:stable","Type":"NORMAL"},
                {"Name":"~internal~ecs~pause","Image":"amazon/amazon-ecs-pause:0.1.0","Type":"CNI_PAUSE"},
                {"Name":"proxy","Image":"nginx","KnownStatus":"PENDING"}]}"#,
        )
        .unwrap();
        let me = json::parse(r#"{"DockerId":"aaa","Name":"web"}"#).unwrap();
        let found = neighbours(&task, &me);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(matches!(&found[0], Neighbour::Agent { name, .. } if name.starts_with("log_router")));
        assert_eq!(found[1], Neighbour::Ecs);
        assert!(matches!(&found[2], Neighbour::Proxy { .. }), "a container with no Type is the definition's own");
        let by_name = json::parse(r#"{"Name":"web"}"#).unwrap();
        assert_eq!(neighbours(&task, &by_name).len(), 3);
    }

    #[test]
    fn a_container_of_the_same_image_is_another_placeholder() {
        let task = json::parse(
            r#"{"Containers":[{"Name":"web","Image":"1.dkr.ecr.eu-west-1.amazonaws.com/web:1","ImageID":"sha256:aa","Type":"NORMAL"},
                {"Name":"nginx","Image":"1.dkr.ecr.eu-west-1.amazonaws.com/web-nginx:1","ImageID":"sha256:aa","Type":"NORMAL","Ports":[{"ContainerPort":80}]},
                {"Name":"real-nginx","Image":"1.dkr.ecr.eu-west-1.amazonaws.com/nginx:1","ImageID":"sha256:bb","Type":"NORMAL"},
                {"Name":"later","Image":"1.dkr.ecr.eu-west-1.amazonaws.com/worker:1","KnownStatus":"PENDING"}]}"#,
        )
        .unwrap();
        let me = json::parse(r#"{"Name":"web","ImageID":"sha256:aa"}"#).unwrap();
        let found = neighbours(&task, &me);
        assert_eq!(
            found[0],
            Neighbour::Placeholder { name: "nginx".into(), ports: vec![80] },
            "its mapped ports are its own"
        );
        assert!(matches!(&found[1], Neighbour::Proxy { .. }), "another image is what its name says: {found:?}");
        assert!(
            matches!(&found[2], Neighbour::Unknown { .. }),
            "an image not pulled yet is not known to be ours: {found:?}"
        );
        // Without its own ImageID nothing is taken for a placeholder.
        let unknown_me = json::parse(r#"{"Name":"web"}"#).unwrap();
        assert!(matches!(&neighbours(&task, &unknown_me)[0], Neighbour::Proxy { .. }));
    }

    #[test]
    fn endpoints_are_ip_literals() {
        let e = Endpoint::parse("http://169.254.170.2/v4/abc-123").unwrap();
        assert_eq!(
            (e.address.to_string(), e.authority.as_str(), e.path.as_str()),
            ("169.254.170.2:80".into(), "169.254.170.2", "/v4/abc-123")
        );
        let e = Endpoint::parse("http://127.0.0.1:51679/v4/x/").unwrap();
        assert_eq!((e.address.port(), e.path.as_str()), (51679, "/v4/x"));
        assert_eq!(Endpoint::parse("http://[::1]/v4").unwrap().address.to_string(), "[::1]:80");
        for bad in ["", "https://169.254.170.2/v4", "http://metadata.local/v4", "169.254.170.2/v4", "http://1.2.3.4:x/"]
        {
            assert!(Endpoint::parse(bad).is_none(), "{bad}");
        }
    }
}
