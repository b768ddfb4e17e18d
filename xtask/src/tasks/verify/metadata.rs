//! What the stand-in ECS agent serves (the container and task documents, sidecars listed), the
//! ports a sidecar's own program opens, and what only a definition can fix.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::json;

use crate::base::image_ref;
use crate::sources::taskdef::{Container, Matcher, Sidecar};
use server::sidecars::Neighbour;

use super::Checks;

/// Whether an image is one publish fills: an ECR repository, or a template that stands for one.
pub(super) fn stands_for_ecr(image: &str) -> bool {
    image_ref::ecr_repository(image).is_some() || image_ref::is_template(image) || image.trim().is_empty()
}

/// The ports a sidecar's own program would listen on: its TCP mappings, else those its image is
/// known to open (a FireLens log router maps none); a proxy's first, as its default config has it.
/// A known port that a container of the task maps (`claimed`) is left to that container: the
/// definition says who listens there (a Datadog agent's expvar 5000 beside an API on 5000 only
/// logs that it could not have it).
pub(super) fn sidecar_ports(sidecar: &Sidecar, claimed: &[u16]) -> Vec<u16> {
    if !sidecar.ports.is_empty() {
        return sidecar.ports.clone();
    }
    let known: Vec<u16> = match server::sidecars::classify(&sidecar.name, &sidecar.image, "NORMAL") {
        Neighbour::Agent { ports, .. } => ports.to_vec(),
        Neighbour::Proxy { ports, .. } => ports.iter().take(1).copied().collect(),
        Neighbour::Ecs | Neighbour::Unknown { .. } | Neighbour::Placeholder { .. } => Vec::new(),
    };
    known.into_iter().filter(|port| !claimed.contains(port)).collect()
}

/// What would let a container start that did not (the engine's `message`): an entry point or
/// user the image lacks, which publishing from the definition adds.
pub(super) fn start_fix(container: &Container, checks: &Checks, message: &str) -> &'static str {
    let named_user = container
        .user
        .as_deref()
        .and_then(|u| u.split(':').next())
        .is_some_and(|u| !u.is_empty() && !u.bytes().all(|b| b.is_ascii_digit()));
    let missing = [
        "no such file or directory",
        "executable file not found",
        "unable to find user",
        "no matching entries in passwd",
    ]
    .iter()
    .any(|says| message.to_ascii_lowercase().contains(says));
    if checks.published || !missing || (container.entry_point.is_none() && !named_user) {
        return "";
    }
    ". Only the definition can fix this: the plain image lacks what its entryPoint or user names; publish from the \
     definition (--task-definition FILE, --from STACK) adds it to this repository's placeholder"
}

/// What would make a failed load-balancer check pass, where only something publish bakes in can:
/// the port (nothing the placeholder sees at run time names it), or a matcher that refuses 200.
pub(super) fn fix_for(container: &Container, port: u16, status: u16, matcher: &Matcher, checks: &Checks) -> String {
    if status != 0 && !matcher.accepts_ok() {
        return format!(
            ". Only the definition can fix this: the target group accepts only {matcher}, which `cargo xtask publish --task-definition FILE` \
             (or --from) bakes into this repository's placeholder"
        );
    }
    if status != 0 || checks.published {
        return String::new();
    }
    if port == 443 {
        return ". Port 443 is HTTPS's: a target group that checks over HTTPS gets no answer from any placeholder (it has no \
                certificate); for one that checks over HTTP, bake the port in: `cargo xtask publish --containers NAME:443`"
            .to_owned();
    }
    let metadata =
        if checks.metadata_ports { "the task metadata lists none" } else { "Fargate's task metadata lists no ports" };
    let defaults = if container.sidecars.is_empty() {
        "and no web framework defaults to it"
    } else {
        "and beside the task's other containers it takes a framework's default port only when they are all known agents"
    };
    format!(
        ". Only the definition can fix this: nothing container {} has at run time names port {port} ({metadata}, no PORT, command or \
         health check names it, {defaults}): bake it in with `cargo xtask publish --containers NAME:{port}`, or publish from \
         the definition (--task-definition FILE, --from STACK)",
        container.name
    )
}

/// The documents the ECS agent serves for this container and its task, as files for the pause
/// container's server: `/v4/ID` (the container) and `/v4/ID/task`. With `list_ports`, Ports are
/// filled the way older EC2 agents fill them in awsvpc mode (the definition's mappings, host port
/// equal to container port); without, they are left out, as current agents and Fargate do.
pub(super) fn metadata_archive(
    container: &Container,
    path_id: &str,
    docker_id: &str,
    image: &str,
    list_ports: bool,
) -> Result<Vec<u8>> {
    let ports: Vec<_> = container
        .ports
        .iter()
        .filter(|_| list_ports)
        .map(|p| json!({ "ContainerPort": p, "Protocol": "tcp", "HostPort": p, "HostIp": "" }))
        .collect();
    let mut document = json!({
        "DockerId": docker_id,
        "Name": container.name,
        "DockerName": format!("ecs-verify-{}", container.name),
        "Image": image,
        "Labels": { "com.amazonaws.ecs.container-name": container.name, "com.amazonaws.ecs.task-definition-family": "verify" },
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Type": "NORMAL",
        "Networks": [{ "NetworkMode": "awsvpc", "IPv4Addresses": ["127.0.0.1"] }],
    });
    if !ports.is_empty() {
        document["Ports"] = json!(ports);
    }
    // The task's other containers are listed before they run, as ECS lists them.
    let mut containers = vec![document.clone()];
    for sidecar in &container.sidecars {
        let mut listed = json!({
            "DockerId": "",
            "Name": sidecar.name,
            "DockerName": format!("ecs-verify-{}", sidecar.name),
            "Image": sidecar.image,
            "Labels": { "com.amazonaws.ecs.container-name": sidecar.name, "com.amazonaws.ecs.task-definition-family": "verify" },
            "DesiredStatus": "RUNNING",
            "KnownStatus": "PENDING",
            "Type": "NORMAL",
            "Networks": [{ "NetworkMode": "awsvpc", "IPv4Addresses": ["127.0.0.1"] }],
        });
        if list_ports && !sidecar.ports.is_empty() {
            listed["Ports"] = json!(
                sidecar
                    .ports
                    .iter()
                    .map(|p| json!({ "ContainerPort": p, "Protocol": "tcp", "HostPort": p }))
                    .collect::<Vec<_>>()
            );
        }
        containers.push(listed);
    }
    let task = json!({
        "Cluster": "verify",
        "TaskARN": "arn:aws:ecs:eu-west-1:123456789012:task/verify/0",
        "Family": "verify",
        "Revision": "1",
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "LaunchType": if list_ports { "EC2" } else { "FARGATE" },
        "Containers": containers,
    });
    let files = BTreeMap::from([
        ("ecs-metadata/index.html".to_owned(), b"ECS task metadata stand-in\n".to_vec()),
        (format!("ecs-metadata/v4/{path_id}/index.html"), serde_json::to_vec(&document)?),
        (format!("ecs-metadata/v4/{path_id}/task"), serde_json::to_vec(&task)?),
    ]);
    let mut tar = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        tar.append_data(&mut header, path, &bytes[..])?;
    }
    Ok(tar.into_inner()?)
}
