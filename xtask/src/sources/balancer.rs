//! A target group's health check and the container it checks: `--target-group` values read from
//! AWS (`registered.rs`), put on the containers of the task definitions given.

use std::collections::BTreeSet;

use anyhow::{Result, bail};

use crate::base::Usage;
use crate::base::image_ref;
use crate::sources::taskdef::{Container, LoadBalancerCheck};

/// A target group, as its health check meets the container it checks.
#[derive(Clone, Debug)]
pub struct Group {
    pub name: String,
    /// Where the service registers its targets unless it says otherwise: the container port.
    pub port: Option<u16>,
    /// Path, matcher, and the check's port where it is not `traffic-port`.
    pub check: LoadBalancerCheck,
    pub https: bool,
}

/// Puts each `--target-group` check on the container it is for: the one it names, else the ones
/// that map the group's port (the port an ECS service registers is the container's). A group that
/// fits no container is bad input.
pub fn attach<'a>(
    containers: impl IntoIterator<Item = (&'a mut Container, &'a mut bool)>,
    groups: &[(Option<String>, Group)],
) -> Result<()> {
    let mut containers: Vec<(&mut Container, &mut bool)> = containers.into_iter().collect();
    for (named, group) in groups {
        let mut fitted = false;
        for (container, https) in containers.iter_mut() {
            let fits = match named {
                Some(name) => container.name == *name,
                None => group.port.is_some_and(|port| container.ports.contains(&port)),
            };
            if fits {
                // `traffic-port` stays unnamed: it is the container port the service registers.
                container.load_balancer = Some(group.check.clone());
                **https = group.https;
                fitted = true;
            }
        }
        // A group's own port is only where targets go by default: an ECS service registers the
        // container port its load balancer block names, which may be another. With one ECR
        // container that maps a port, that is the one the group checks.
        let ours: Vec<usize> = (0..containers.len())
            .filter(|&i| {
                let container = &containers[i].0;
                !container.ports.is_empty() && container.image.as_deref().and_then(image_ref::ecr_repository).is_some()
            })
            .collect();
        if !fitted && named.is_none() && ours.len() == 1 {
            let (container, https) = &mut containers[ours[0]];
            eprintln!(
                "note: --target-group {}: its port {} is no container's, so its check is put on {}, the one ECR container \
                 that maps a port (name it to be sure: --target-group {}={})",
                group.name,
                group.port.map_or("none".to_owned(), |p| p.to_string()),
                container.name,
                container.name,
                group.name
            );
            container.load_balancer = Some(group.check.clone());
            **https = group.https;
            fitted = true;
        }
        if !fitted {
            let names: BTreeSet<&str> = containers.iter().map(|(c, _)| c.name.as_str()).collect();
            let what = match named {
                Some(name) => format!("names container {name}"),
                None => format!("has port {}", group.port.map_or("none".to_owned(), |p| p.to_string())),
            };
            bail!(Usage(format!(
                "--target-group {}: it {what}, which no container of the task definitions given maps ({}): name the container it \
                 checks, --target-group CONTAINER={}",
                group.name,
                names.into_iter().collect::<Vec<_>>().join(", "),
                group.name
            )));
        }
    }
    Ok(())
}

/// What a target group's health check asks of the container it checks.
pub fn group_of(group: &aws_sdk_elasticloadbalancingv2::types::TargetGroup) -> Group {
    let protocol =
        group.health_check_protocol().or(group.protocol()).map(|p| p.as_str().to_owned()).unwrap_or_default();
    Group {
        name: group.target_group_name().unwrap_or_default().to_owned(),
        port: group.port().and_then(|p| u16::try_from(p).ok()),
        check: LoadBalancerCheck {
            path: Some(group.health_check_path().unwrap_or("/").to_owned()),
            port: group.health_check_port().filter(|p| *p != "traffic-port").and_then(|p| p.parse().ok()),
            matcher: Some(group.matcher().and_then(|m| m.http_code()).unwrap_or("200").to_owned()),
        },
        https: protocol.eq_ignore_ascii_case("HTTPS"),
    }
}
