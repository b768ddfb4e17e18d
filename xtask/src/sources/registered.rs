//! `--task-definition FAMILY[:REVISION]` (or its ARN) and `--target-group NAME|ARN`: a task
//! definition as ECS holds it once registered, which Terraform and every deploy tool do before
//! they create the service that runs it, and the target group that service will sit behind.

use anyhow::{Result, bail};
use aws_sdk_ecs::types::ContainerDefinition;

use crate::base::Usage;
use crate::clients::aws::{error_code, service_call_failed};
use crate::sources::balancer::{Group, group_of};
use crate::sources::stack::{self, Found};
use crate::sources::taskdef::{self, Container, HealthCheck};

/// The containers of the registered task definition `name` (an ARN, `FAMILY:REVISION`, or
/// `FAMILY` for its latest ACTIVE revision).
pub async fn load(name: &str, config: &aws_config::SdkConfig) -> Result<Vec<Found>> {
    let ecs = aws_sdk_ecs::Client::new(config);
    let region = config.region().map(|r| r.to_string()).unwrap_or_default();
    let described = ecs.describe_task_definition().task_definition(name).send().await.map_err(|e| {
        if matches!(error_code(&e), Some("ClientException" | "InvalidParameterException")) {
            anyhow::Error::new(Usage(format!(
                "--task-definition {name}: no such file, and no task definition {name} is registered in {region}: give a file, or a \
                 registered family[:revision] or ARN (`aws ecs list-task-definition-families`), and check --region"
            )))
        } else {
            service_call_failed("ECS", "DescribeTaskDefinition", e)
        }
    })?;
    let Some(task) = described.task_definition() else {
        bail!(Usage(format!("--task-definition {name}: ECS returned no task definition for it")));
    };
    Ok(found_in(task, "registered"))
}

/// Each container of a registered task definition, as a stack's would be found.
pub fn found_in(task: &aws_sdk_ecs::types::TaskDefinition, how: &str) -> Vec<Found> {
    let family = format!("{}:{}", task.family().unwrap_or_default(), task.revision());
    let mut containers: Vec<Container> = task.container_definitions().iter().map(container).collect();
    for container in &mut containers {
        container.task = Some(task.family().unwrap_or_default().to_owned());
    }
    taskdef::link(&mut containers);
    containers
        .into_iter()
        .map(|container| {
            let image = container.image.clone().unwrap_or_default();
            Found {
                location: format!("task definition {family} ({how}), container {}", container.name),
                kind: classify_in(task, &image),
                image,
                https: false,
                container,
            }
        })
        .collect()
}

/// What an image of a registered task definition is: an image in another account's ECR (a shared
/// registry) is that account's, not a repository of the same name in the account that registered
/// the definition.
pub fn classify_in(task: &aws_sdk_ecs::types::TaskDefinition, image: &str) -> stack::Kind {
    let account = task.task_definition_arn().and_then(|arn| arn.split(':').nth(4)).unwrap_or_default();
    let host_account = image.split('.').next().unwrap_or_default();
    let elsewhere = !account.is_empty() && host_account.bytes().all(|b| b.is_ascii_digit()) && host_account != account;
    if elsewhere { stack::Kind::Other } else { stack::classify_image(image) }
}

/// `--target-group [CONTAINER=]NAME|ARN`: the groups, each with the container it is for when the
/// value names one.
pub async fn target_groups(values: &[String], config: &aws_config::SdkConfig) -> Result<Vec<(Option<String>, Group)>> {
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(config);
    let mut groups = Vec::new();
    for value in values {
        let (container, group) = match value.split_once('=') {
            Some((container, group)) => (Some(container.trim().to_owned()), group.trim()),
            None => (None, value.trim()),
        };
        let request = elbv2.describe_target_groups();
        let request = if group.starts_with("arn:") { request.target_group_arns(group) } else { request.names(group) };
        let described = request.send().await.map_err(|e| {
            if error_code(&e) == Some("TargetGroupNotFound") {
                anyhow::Error::new(Usage(format!(
                    "--target-group {group}: there is no such target group: give its name or ARN (`aws elbv2 describe-target-groups`), and check --region"
                )))
            } else {
                service_call_failed("ELBv2", "DescribeTargetGroups", e)
            }
        })?;
        let Some(found) = described.target_groups().first() else {
            bail!(Usage(format!(
                "--target-group {group}: there is no such target group: give its name or ARN, and check --region"
            )));
        };
        groups.push((container, group_of(found)));
    }
    Ok(groups)
}

/// A container definition as ECS holds it, as the placeholder must meet it.
pub fn container(definition: &ContainerDefinition) -> Container {
    let list = |items: &[String]| (!items.is_empty()).then(|| items.to_vec());
    let mut ports = Vec::new();
    for mapping in definition.port_mappings() {
        let tcp = mapping.protocol().is_none_or(|p| p.as_str().eq_ignore_ascii_case("tcp"));
        if let Some(port) = mapping.container_port().and_then(|p| u16::try_from(p).ok()).filter(|_| tcp)
            && !ports.contains(&port)
        {
            ports.push(port);
        }
    }
    let seconds = |s: Option<i32>| s.and_then(|s| u64::try_from(s).ok());
    Container {
        name: definition.name().unwrap_or_default().to_owned(),
        image: definition.image().map(str::to_owned),
        ports,
        health_check: definition.health_check().map(|h| HealthCheck {
            command: h.command().to_vec(),
            interval: seconds(h.interval()),
            timeout: seconds(h.timeout()),
            retries: seconds(h.retries()),
            start_period: seconds(h.start_period()),
        }),
        command: list(definition.command()),
        entry_point: list(definition.entry_point()),
        environment: definition
            .environment()
            .iter()
            .filter_map(|pair| Some((pair.name()?.to_owned(), pair.value().unwrap_or_default().to_owned())))
            .collect(),
        user: definition.user().map(str::to_owned),
        readonly_root: definition.readonly_root_filesystem().unwrap_or(false),
        working_directory: definition.working_directory().map(str::to_owned),
        init_process: definition.linux_parameters().and_then(|l| l.init_process_enabled()).unwrap_or(false),
        load_balancer: None,
        sidecars: Vec::new(),
        task: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_in_another_accounts_ecr_is_that_accounts() {
        let task = aws_sdk_ecs::types::TaskDefinition::builder()
            .task_definition_arn("arn:aws:ecs:eu-west-1:111111111111:task-definition/api:3")
            .build();
        let kind = |image: &str| classify_in(&task, image);
        assert_eq!(kind("111111111111.dkr.ecr.eu-west-1.amazonaws.com/api:1"), stack::Kind::Ecr("api".into()));
        assert_eq!(kind("222222222222.dkr.ecr.eu-west-1.amazonaws.com/api:1"), stack::Kind::Other);
        assert_eq!(kind("${AWS_ACCOUNT_ID}.dkr.ecr.eu-west-1.amazonaws.com/api:1"), stack::Kind::Ecr("api".into()));
        assert_eq!(kind("nginx:1.27"), stack::Kind::Other);
    }
}
