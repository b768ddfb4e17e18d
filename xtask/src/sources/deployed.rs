//! `--from stack:NAME`: a stack CloudFormation has deployed or is deploying right now (CDK stacks
//! too), read through its API: the processed template, the parameter values it was given, its
//! resources' physical ids (so a repository the stack created, even one CloudFormation named, is
//! known by name), its nested stacks, and the region's exports. The template is then evaluated
//! like a file, with those values.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use aws_sdk_cloudformation::types::TemplateStage;
use serde_json::Value;
use tokio::time::Instant;

use crate::base::Usage;
use crate::base::service::Service;
use crate::clients::aws::{error_code, service_call_failed};
use crate::sources::stack::{self, Deployment, Found};

/// What a deployed stack holds: its containers, and its ECS services (for `--wait`).
pub struct Loaded {
    pub found: Vec<Found>,
    pub services: Vec<Service>,
    /// `CREATE_IN_PROGRESS`, `UPDATE_COMPLETE`...
    pub status: String,
    /// Repositories the template declares that CloudFormation has not created yet.
    pub pending: Vec<String>,
}

/// How often a stack that is not there yet, or has not created its repositories yet, is looked at.
const POLL: Duration = Duration::from_secs(5);

/// Reads stack `name` (and its nested stacks) in `config`'s region and account. With `wait`, a
/// stack that does not exist yet (`cdk deploy` is still uploading assets), or has not yet created
/// every repository its template declares, is looked at again until it has, for at most `wait`.
pub async fn load(name: &str, config: &aws_config::SdkConfig, wait: Option<Duration>) -> Result<Loaded> {
    let deadline = wait.map(|wait| Instant::now() + wait);
    let mut said = false;
    loop {
        let waiting = deadline.is_some_and(|d| Instant::now() + POLL < d);
        let why = match read(name, config).await {
            // A change set created and not executed yet (`cdk deploy` between the two steps): the
            // stack has an id but no template or resources ("Stack status codes": REVIEW_IN_PROGRESS).
            Ok(loaded) if loaded.status == "REVIEW_IN_PROGRESS" && waiting => {
                "has a change set not executed yet (REVIEW_IN_PROGRESS)".to_owned()
            }
            Ok(loaded) if loaded.status == "REVIEW_IN_PROGRESS" => bail!(Usage(format!(
                "stack {name} is REVIEW_IN_PROGRESS: its change set has not been executed, so it has no template or \
                 resources yet; run publish once the deploy executes it, or add --wait to wait for that"
            ))),
            Ok(loaded) if loaded.pending.is_empty() || !waiting => return Ok(loaded),
            Ok(loaded) => format!("has not created repository {} yet", loaded.pending.join(", ")),
            Err(e) if waiting && e.downcast_ref::<Usage>().is_some() => "does not exist yet".to_owned(),
            Err(e) => return Err(e),
        };
        if !said {
            eprintln!("stack {name} {why}: looking again every {}s", POLL.as_secs());
            said = true;
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn read(name: &str, config: &aws_config::SdkConfig) -> Result<Loaded> {
    let client = aws_sdk_cloudformation::Client::new(config);
    let region = config.region().map(|r| r.to_string()).unwrap_or_default();
    let exports = exports(&client).await?;

    let mut pending = vec![name.to_owned()];
    let mut stacks: Vec<(Value, Deployment)> = Vec::new();
    let mut status = String::new();
    while let Some(id) = pending.pop() {
        let described = client.describe_stacks().stack_name(&id).send().await.map_err(|e| {
            if error_code(&e) == Some("ValidationError") && stacks.is_empty() {
                anyhow::Error::new(Usage(format!(
                    "--from stack:{name}: there is no stack {name} in {region}: check the name (`aws cloudformation list-stacks`) and --region"
                )))
            } else {
                service_call_failed("CloudFormation", "DescribeStacks", e)
            }
        })?;
        let Some(stack) = described.stacks().first() else {
            bail!(Usage(format!(
                "--from stack:{name}: there is no stack {name} in {region}: check the name and --region"
            )));
        };
        if stacks.is_empty() {
            status = stack.stack_status().map(|s| s.as_str().to_owned()).unwrap_or_default();
        }
        let mut deployment = Deployment {
            name: stack.stack_name().unwrap_or(&id).to_owned(),
            stack_id: stack.stack_id().unwrap_or_default().to_owned(),
            exports: exports.clone(),
            ..Default::default()
        };
        for parameter in stack.parameters() {
            // An SSM parameter's value is what it resolved to; a NoEcho one is masked, so unknown.
            let value = parameter.resolved_value().or(parameter.parameter_value());
            if let (Some(key), Some(value)) = (parameter.parameter_key(), value)
                && value != "****"
            {
                deployment.parameters.insert(key.to_owned(), value.to_owned());
            }
        }
        let mut resources = client.list_stack_resources().stack_name(&deployment.stack_id).into_paginator().send();
        while let Some(page) = resources.next().await {
            let page = page.map_err(|e| service_call_failed("CloudFormation", "ListStackResources", e))?;
            for resource in page.stack_resource_summaries() {
                let (Some(logical), Some(kind)) = (resource.logical_resource_id(), resource.resource_type()) else {
                    continue;
                };
                let Some(physical) = resource.physical_resource_id().filter(|p| !p.is_empty()) else { continue };
                if kind == "AWS::CloudFormation::Stack" {
                    pending.push(physical.to_owned());
                }
                deployment.resources.insert(logical.to_owned(), (kind.to_owned(), physical.to_owned()));
            }
        }
        let template = template(&client, &deployment.stack_id).await?;
        stacks.push((template, deployment));
    }

    let account = stacks.first().and_then(|(_, d)| d.stack_id.split(':').nth(4)).map(str::to_owned);
    let context = stack::Context { account, region: Some(region) };
    // Repositories any of the stacks created, by name: the stack's, never publish's.
    let mut created = HashMap::new();
    let mut services = Vec::new();
    for (_, deployment) in &stacks {
        for (logical, (kind, physical)) in &deployment.resources {
            match kind.as_str() {
                "AWS::ECR::Repository" => {
                    created.insert(physical.clone(), format!("stack {} (Resources.{logical})", deployment.name));
                }
                "AWS::ECS::Service" => services.extend(Service::from_arn(physical)),
                _ => {}
            }
        }
    }
    let mut found = Vec::new();
    let mut pending = Vec::new();
    for (template, deployment) in &stacks {
        found.extend(stack::deployed(template, &context, deployment, &created));
        let declared = template.get("Resources").and_then(Value::as_object).into_iter().flatten();
        for (logical, _) in declared.filter(|(_, r)| r["Type"] == "AWS::ECR::Repository") {
            if !deployment.resources.contains_key(logical) {
                pending.push(format!("{} (Resources.{logical})", deployment.name));
            }
        }
    }
    Ok(Loaded { found, services, status, pending })
}

/// The template CloudFormation holds for the stack, after transforms (SAM, CDK's are none).
async fn template(client: &aws_sdk_cloudformation::Client, stack_id: &str) -> Result<Value> {
    let processed = client.get_template().stack_name(stack_id).template_stage(TemplateStage::Processed).send().await;
    let output = match processed {
        Ok(output) => output,
        Err(_) => client
            .get_template()
            .stack_name(stack_id)
            .send()
            .await
            .map_err(|e| service_call_failed("CloudFormation", "GetTemplate", e))?,
    };
    let body = output.template_body().context("CloudFormation returned no template body")?;
    match serde_json::from_str::<Value>(body) {
        Ok(json) => Ok(json),
        Err(_) => stack::yaml(body).context("the stack's template is neither JSON nor YAML"),
    }
}

/// Every export in the region, by name.
async fn exports(client: &aws_sdk_cloudformation::Client) -> Result<HashMap<String, String>> {
    let mut exports = HashMap::new();
    let mut pages = client.list_exports().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| service_call_failed("CloudFormation", "ListExports", e))?;
        for export in page.exports() {
            if let (Some(name), Some(value)) = (export.name(), export.value()) {
                exports.insert(name.to_owned(), value.to_owned());
            }
        }
    }
    Ok(exports)
}
