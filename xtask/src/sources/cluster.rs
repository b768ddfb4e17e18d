//! `--from ecs:CLUSTER[/SERVICE,...]`: the services of a cluster as ECS runs them, whatever made
//! them (Terraform, the console, Copilot, a stack file nobody has at hand): each service's task
//! definition (`DescribeServices`, `DescribeTaskDefinition`) and what its target groups check
//! (`DescribeTargetGroups`): path, port, matcher.

use std::collections::HashMap;

use anyhow::{Result, bail};

use crate::base::Usage;
use crate::base::service::{SERVICES_PER_CALL, Service};
use crate::clients::aws::{error_code, service_call_failed};
use crate::sources::stack::Found;
use crate::sources::taskdef::{self, Container, LoadBalancerCheck};
use crate::sources::{balancer, registered};

/// The containers of `services` in `cluster` (every service of the cluster when none is named),
/// and the services themselves.
pub async fn load(
    cluster: &str,
    services: &[String],
    config: &aws_config::SdkConfig,
) -> Result<(Vec<Found>, Vec<Service>)> {
    let ecs = aws_sdk_ecs::Client::new(config);
    let region = config.region().map(|r| r.to_string()).unwrap_or_default();
    let no_cluster = || {
        anyhow::Error::new(Usage(format!(
            "--from ecs:{cluster}: there is no cluster {cluster} in {region}: check the name (`aws ecs list-clusters`) and --region"
        )))
    };
    let mut names = services.to_vec();
    if names.is_empty() {
        let mut pages = ecs.list_services().cluster(cluster).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                if error_code(&e) == Some("ClusterNotFoundException") {
                    no_cluster()
                } else {
                    service_call_failed("ECS", "ListServices", e)
                }
            })?;
            names.extend(page.service_arns().iter().cloned());
        }
        if names.is_empty() {
            bail!(Usage(format!(
                "--from ecs:{cluster}: cluster {cluster} has no services: name a cluster that runs the stuck service, or give the stack (--from stack:NAME)"
            )));
        }
    }

    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(config);
    let mut found = Vec::new();
    let mut followed = Vec::new();
    for chunk in names.chunks(SERVICES_PER_CALL) {
        let described =
            ecs.describe_services().cluster(cluster).set_services(Some(chunk.to_vec())).send().await.map_err(|e| {
                if error_code(&e) == Some("ClusterNotFoundException") {
                    no_cluster()
                } else {
                    service_call_failed("ECS", "DescribeServices", e)
                }
            })?;
        if let Some(failure) = described.failures().first() {
            let what = failure.arn().unwrap_or("?");
            let why = failure.reason().unwrap_or("not found");
            bail!(Usage(format!(
                "--from ecs:{cluster}: service {what}: {why}: check the name (`aws ecs list-services --cluster {cluster}`)"
            )));
        }
        for service in described.services() {
            let name = service.service_name().unwrap_or_default().to_owned();
            // The definition being rolled out: the PRIMARY deployment's, else the service's.
            let primary =
                service.deployments().iter().find(|d| d.status() == Some("PRIMARY")).and_then(|d| d.task_definition());
            let Some(definition) = primary.or(service.task_definition()) else { continue };
            let task = ecs
                .describe_task_definition()
                .task_definition(definition)
                .send()
                .await
                .map_err(|e| service_call_failed("ECS", "DescribeTaskDefinition", e))?;
            let Some(task) = task.task_definition() else { continue };
            let family = format!("{}:{}", task.family().unwrap_or_default(), task.revision());
            let checks = target_group_checks(&elbv2, service.load_balancers()).await?;
            let mut containers: Vec<Container> =
                task.container_definitions().iter().map(registered::container).collect();
            for container in &mut containers {
                container.task = Some(format!("{cluster}/{name}"));
            }
            taskdef::link(&mut containers);
            for mut container in containers {
                let https = match checks.get(&container.name) {
                    Some((check, https)) => {
                        container.load_balancer = Some(check.clone());
                        *https
                    }
                    None => false,
                };
                let image = container.image.clone().unwrap_or_default();
                found.push(Found {
                    location: format!("ecs:{cluster}/{name} (task definition {family}, container {})", container.name),
                    kind: registered::classify_in(task, &image),
                    image,
                    https,
                    container,
                });
            }
            followed.push(Service { cluster: cluster.to_owned(), name });
        }
    }
    Ok((found, followed))
}

/// What each load-balanced container's target group checks, by container name, and whether it
/// checks over HTTPS.
pub async fn target_group_checks(
    elbv2: &aws_sdk_elasticloadbalancingv2::Client,
    balancers: &[aws_sdk_ecs::types::LoadBalancer],
) -> Result<HashMap<String, (LoadBalancerCheck, bool)>> {
    let mut checks = HashMap::new();
    let arns: Vec<String> = balancers.iter().filter_map(|b| b.target_group_arn().map(str::to_owned)).collect();
    if arns.is_empty() {
        return Ok(checks);
    }
    let groups = elbv2
        .describe_target_groups()
        .set_target_group_arns(Some(arns))
        .send()
        .await
        .map_err(|e| service_call_failed("ELBv2", "DescribeTargetGroups", e))?;
    for balancer in balancers {
        let (Some(arn), Some(name)) = (balancer.target_group_arn(), balancer.container_name()) else { continue };
        let Some(group) = groups.target_groups().iter().find(|g| g.target_group_arn() == Some(arn)) else { continue };
        let group = balancer::group_of(group);
        let mut check = group.check;
        // `traffic-port`: the container port the service registers.
        check.port = check.port.or_else(|| balancer.container_port().and_then(|p| u16::try_from(p).ok()));
        checks.insert(name.to_owned(), (check, group.https));
    }
    Ok(checks)
}
