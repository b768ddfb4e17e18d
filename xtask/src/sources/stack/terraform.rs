//! A Terraform plan (`terraform show -json`): its `aws_ecs_task_definition` containers, the ECR
//! repositories the plan itself creates, and the target groups its services sit behind.

use std::collections::{HashMap, HashSet};

use anyhow::{Result, bail};
use serde_json::Value;

use super::cloudformation::Unknowns;
use super::{Created, Found, Kind, classify, link_task};
use crate::sources::taskdef::{self, Container, LoadBalancerCheck};

/// One resource of a plan: its planned values and its configuration (for references, which a
/// plan keeps there because ARNs are unknown until apply).
struct Planned<'a> {
    address: String,
    kind: &'a str,
    values: &'a Value,
}

pub(super) fn terraform(file: &str, plan: &Value, created: &mut Created) -> Result<Vec<Found>> {
    let root = plan.get("planned_values").or_else(|| plan.get("values")).and_then(|v| v.get("root_module"));
    let Some(root) = root else {
        bail!("{file} is Terraform JSON without planned_values: give `terraform show -json PLANFILE`")
    };
    let mut resources = Vec::new();
    let mut modules = vec![root];
    while let Some(module) = modules.pop() {
        for r in module["resources"].as_array().into_iter().flatten() {
            if r["mode"] == "managed" || r.get("mode").is_none() {
                resources.push(Planned {
                    address: r["address"].as_str().unwrap_or_default().to_owned(),
                    kind: r["type"].as_str().unwrap_or_default(),
                    values: &r["values"],
                });
            }
        }
        modules.extend(module["child_modules"].as_array().into_iter().flatten());
    }
    let mut expressions: HashMap<String, &Value> = HashMap::new();
    let mut configs = vec![(String::new(), plan.get("configuration").and_then(|c| c.get("root_module")))];
    while let Some((prefix, Some(module))) = configs.pop() {
        for r in module["resources"].as_array().into_iter().flatten() {
            expressions.insert(format!("{prefix}{}", r["address"].as_str().unwrap_or_default()), &r["expressions"]);
        }
        for (name, call) in module["module_calls"].as_object().into_iter().flatten() {
            configs.push((format!("{prefix}module.{name}."), call.get("module")));
        }
    }
    let unknown_after: HashSet<String> = plan["resource_changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["change"]["after_unknown"]["container_definitions"] == true)
        .filter_map(|c| c["address"].as_str().map(str::to_owned))
        .collect();

    for r in resources.iter().filter(|r| r.kind == "aws_ecr_repository") {
        if let Some(name) = r.values["name"].as_str() {
            created.0.insert(name.to_owned(), format!("{file}: {}", r.address));
        }
    }
    // A reference (`aws_lb_target_group.app.arn`) from a resource in a module to a planned resource.
    let target = |from: &str, expression: &Value, kind: &str| -> Option<usize> {
        let prefix = module_prefix(from);
        expression["references"].as_array()?.iter().filter_map(Value::as_str).find_map(|reference| {
            resources.iter().position(|r| r.kind == kind && unindexed(&r.address) == format!("{prefix}{reference}"))
        })
    };
    let mut checks: HashMap<(usize, String), (LoadBalancerCheck, bool)> = HashMap::new();
    for service in resources.iter().filter(|r| r.kind == "aws_ecs_service") {
        let Some(config) = expressions.get(&unindexed(&service.address)) else { continue };
        let Some(task) = target(&service.address, &config["task_definition"], "aws_ecs_task_definition") else {
            continue;
        };
        for (n, binding) in service.values["load_balancer"].as_array().into_iter().flatten().enumerate() {
            let Some(group) =
                target(&service.address, &config["load_balancer"][n]["target_group_arn"], "aws_lb_target_group")
                    .or_else(|| {
                        target(
                            &service.address,
                            &config["load_balancer"][n]["target_group_arn"],
                            "aws_alb_target_group",
                        )
                    })
            else {
                continue;
            };
            let Some(name) = binding["container_name"].as_str() else { continue };
            let group = resources[group].values;
            let health = &group["health_check"][0];
            let protocol = health["protocol"].as_str().or(group["protocol"].as_str()).unwrap_or_default();
            let port = health["port"].as_str().filter(|p| *p != "traffic-port").and_then(|p| p.parse().ok());
            let check = LoadBalancerCheck {
                path: Some(health["path"].as_str().filter(|p| !p.is_empty()).unwrap_or("/").to_owned()),
                port: port.or_else(|| binding["container_port"].as_u64().and_then(|p| u16::try_from(p).ok())),
                matcher: Some(health["matcher"].as_str().filter(|m| !m.is_empty()).unwrap_or("200").to_owned()),
            };
            checks.insert((task, name.to_owned()), (check, protocol.eq_ignore_ascii_case("HTTPS")));
        }
    }

    let mut found = Vec::new();
    for (i, task) in resources.iter().enumerate().filter(|(_, r)| r.kind == "aws_ecs_task_definition") {
        let at = format!("{file}: {}.container_definitions", task.address);
        let definitions = match task.values["container_definitions"].as_str().map(serde_json::from_str::<Value>) {
            Some(Ok(Value::Array(definitions))) => definitions,
            Some(Ok(_)) | Some(Err(_)) => bail!("{at} is not a JSON list of container definitions"),
            None => {
                let references: Vec<&str> = expressions
                    .get(&unindexed(&task.address))
                    .and_then(|e| e["container_definitions"]["references"].as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let prefix = module_prefix(&task.address);
                let created_here = references.iter().find_map(|reference| {
                    let r = resources.iter().find(|r| {
                        r.kind == "aws_ecr_repository"
                            && format!("{prefix}{reference}").starts_with(&format!("{}.", unindexed(&r.address)))
                    })?;
                    r.values["name"].as_str()
                });
                let why = if unknown_after.contains(&task.address) {
                    let refers = if references.is_empty() {
                        String::new()
                    } else {
                        format!(" (it refers to {})", references.join(", "))
                    };
                    let created = created_here.map_or(String::new(), |name| format!(
                        "; the plan creates repository {name} itself, so it cannot hold a placeholder before the plan is applied: run \
                         publish in the apply, between the task definition and the service (terraform_data with `publish --task-definition \
                         <its ARN>`, docs/recipes.md)"
                    ));
                    format!("known only after apply{refers}{created}")
                } else {
                    "not in the plan".to_owned()
                };
                let container = Container { name: task.address.clone(), ..Default::default() };
                found.push(Found {
                    container,
                    location: at,
                    image: "(unknown)".into(),
                    kind: Kind::Unresolved(format!("container_definitions is {why}")),
                    https: false,
                });
                continue;
            }
        };
        let first = found.len();
        for (n, definition) in definitions.iter().enumerate() {
            let mut container = taskdef::container(definition);
            container.task = Some(task.address.clone());
            if container.name.is_empty() {
                container.name = format!("{}[{n}]", task.address);
            }
            let https = match checks.get(&(i, container.name.clone())) {
                Some((check, https)) => {
                    container.load_balancer = Some(check.clone());
                    *https
                }
                None => false,
            };
            let image = container.image.clone().unwrap_or_default();
            let kind = classify(&image, &Unknowns::default());
            found.push(Found { container, location: format!("{at}[{n}].image"), image, kind, https });
        }
        link_task(&mut found[first..]);
    }
    Ok(found)
}

/// The module part of a resource address: `module.a.module.b.` of `module.a.module.b.aws_x.y`.
pub(super) fn module_prefix(address: &str) -> String {
    let address = unindexed(address);
    let parts: Vec<&str> = address.split('.').collect();
    let mut prefix = String::new();
    let mut i = 0;
    while i + 1 < parts.len() && parts[i] == "module" {
        prefix.push_str(&format!("module.{}.", parts[i + 1]));
        i += 2;
    }
    prefix
}

/// A resource address without its instance keys: `module.a["x"].aws_ecs_service.b[0]` is
/// `module.a.aws_ecs_service.b`, as the configuration names it.
pub(super) fn unindexed(address: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    let mut quoted = false;
    for c in address.chars() {
        match c {
            '"' if depth > 0 => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}
