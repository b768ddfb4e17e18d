//! `cargo xtask handover`: the real image takes over. ECS resolves a tag to a digest once per
//! deployment, so a service keeps running the placeholder after the pipeline pushes its real
//! image at the same tag. For each service still running a placeholder whose tag now holds a real
//! image, this starts a new deployment (`UpdateService` with `forceNewDeployment`) and follows it
//! until the real image runs, or says why it does not: a rollback to the placeholder is a failure,
//! with the reason its tasks stopped. A service already on a real image is never touched.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;
use tokio::time::Instant;

use crate::base::Usage;
use crate::base::service::Service;
use crate::clients::aws::{self, service_call_failed};
use crate::clients::services::{self, Next, Standing, Where};
use crate::sources::from;
use crate::tasks::OutputFormat;

/// How often a deployment being followed is looked at.
const POLL: Duration = Duration::from_secs(2);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The services: a deployed stack's (`stack:NAME`) or a cluster's (`ecs:CLUSTER[/SERVICE,...]`)
    /// [default: every service of every cluster in the region].
    #[arg(long, value_name = "SOURCE", num_args = 1..)]
    pub from: Vec<String>,
    /// Say which services would get a new deployment, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long each new deployment is followed.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = humantime::parse_duration)]
    pub wait_timeout: Duration,
    #[command(flatten)]
    pub aws: aws::AwsArgs,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum Action {
    HandedOver,
    WouldHandOver,
    /// Already on a real image: not touched.
    OnRealImage,
    /// Its tag still holds the placeholder: the pipeline has not pushed.
    Waiting,
    /// Nothing to hand over to, or nothing can be said.
    Skipped,
    Failed,
}

#[derive(Serialize, Debug)]
struct Outcome {
    service: String,
    action: Action,
    detail: String,
    containers: Vec<Where>,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    args.aws.check()?;
    let loaded = from::load(&args.from, &args.aws).await?;
    if !args.from.is_empty() && loaded.services.is_empty() {
        bail!(Usage(format!(
            "--from {}: names no ECS service; give a deployed stack (stack:NAME) or a cluster (ecs:CLUSTER)",
            args.from.join(" ")
        )));
    }
    let (target, registry) = args.aws.connect().await?;
    let ecs = aws_sdk_ecs::Client::new(&target.config);
    let services = match loaded.services.is_empty() {
        true => services::everywhere(&ecs).await?,
        false => loaded.services,
    };
    let standings = services::read(&ecs, &services).await?;
    let mut outcomes = Vec::new();
    for standing in &standings {
        let containers = services::judge(&registry, std::slice::from_ref(standing)).await;
        let (mut action, mut detail) = decide(&containers);
        // Someone else's deployment (the pipeline's own) is under way: not ours to race.
        if action == Action::WouldHandOver && standing.deployments.len() > 1 {
            (action, detail) = (
                Action::Skipped,
                format!("{} deployments are under way: run handover once they end", standing.deployments.len()),
            );
        }
        let mut outcome = Outcome { service: standing.service.label(), action, detail, containers };
        if outcome.action == Action::WouldHandOver && !args.dry_run {
            match hand_over(&target.config, &registry, standing, args.wait_timeout).await {
                Ok(detail) => (outcome.action, outcome.detail) = (Action::HandedOver, detail),
                Err(error) => (outcome.action, outcome.detail) = (Action::Failed, format!("{error:#}")),
            }
            // What runs now, after the new deployment.
            let after = services::read(&ecs, std::slice::from_ref(&standing.service)).await?;
            outcome.containers = services::judge(&registry, &after).await;
        }
        outcomes.push(outcome);
    }
    match args.output {
        OutputFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "services": outcomes }))?)
        }
        OutputFormat::Text => {
            for o in &outcomes {
                let action = serde_json::to_value(o.action)?;
                println!("{}: {}: {}", o.service, action.as_str().unwrap_or_default(), o.detail);
            }
            if outcomes.is_empty() {
                println!("No ECS service found: nothing to hand over.");
            }
            if args.dry_run {
                println!("Dry run: no deployment was started.");
            }
        }
    }
    let failed = outcomes.iter().any(|o| o.action == Action::Failed);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// What to do with a service, from where its ECR containers stand: a new deployment only when
/// one runs the placeholder while its tag holds a real image and none is unreadable.
fn decide(containers: &[Where]) -> (Action, String) {
    if containers.is_empty() {
        return (Action::Skipped, "no container from this account's ECR".to_owned());
    }
    let each = |next: Next| containers.iter().filter(move |w| w.next == next);
    // A new deployment re-resolves every container's tag: one that cannot be pulled, or cannot be
    // read, would take the service down with it.
    if let Some(stuck) = containers.iter().find(|w| matches!(w.next, Next::Unknown | Next::Publish | Next::Starting)) {
        return (Action::Skipped, format!("container {}: {}", stuck.container, stuck.next.says(&stuck.tag)));
    }
    let ready: Vec<String> = each(Next::Handover)
        .map(|w| format!("{} (:{} now {})", w.container, w.tag, w.tag_digest.as_deref().unwrap_or("?")))
        .collect();
    if !ready.is_empty() {
        return (
            Action::WouldHandOver,
            format!(
                "runs the placeholder while the real image is at its tag: a new deployment for {}",
                ready.join(", ")
            ),
        );
    }
    if containers.iter().all(|w| w.next == Next::Done) {
        return (Action::OnRealImage, "its tasks run a real image: not touched".to_owned());
    }
    if let Some(waiting) = each(Next::WaitForPipeline).next() {
        return (Action::Waiting, format!("container {}: {}", waiting.container, waiting.next.says(&waiting.tag)));
    }
    let first = &containers[0];
    (Action::Skipped, format!("container {}: {}", first.container, first.next.says(&first.tag)))
}

/// Starts a new deployment of `standing` and follows it until its own tasks run and it is the
/// only deployment left; a rollback, or the circuit breaker failing it, is an error saying why.
async fn hand_over(
    config: &aws_config::SdkConfig,
    registry: &crate::clients::registry::Registry,
    standing: &Standing,
    timeout: Duration,
) -> Result<String> {
    let ecs = &aws_sdk_ecs::Client::new(config);
    let service = &standing.service;
    let updated = ecs
        .update_service()
        .cluster(&service.cluster)
        .service(&service.name)
        .force_new_deployment(true)
        .send()
        .await
        .map_err(|e| service_call_failed("ECS", "UpdateService", e))?;
    let ours = updated
        .service()
        .and_then(|s| s.deployments().iter().find(|d| d.status() == Some("PRIMARY")))
        .and_then(|d| d.id())
        .unwrap_or_default()
        .to_owned();
    eprintln!(
        "[{}] new deployment {ours} started, following it (at most {})",
        service.label(),
        humantime::format_duration(timeout)
    );
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(config);
    let deadline = Instant::now() + timeout;
    let mut said = String::new();
    loop {
        let now = services::read(ecs, std::slice::from_ref(service)).await?;
        let Some(now) = now.first() else { bail!("service {} is gone", service.label()) };
        let mine = now.deployments.iter().find(|d| d.id == ours);
        let line = match mine {
            Some(d) => format!(
                "{}/{} running; deployment {}",
                now.running,
                now.desired,
                d.rollout.to_lowercase().replace('_', " ")
            ),
            None => format!("{}/{} running; deployment {ours} is gone", now.running, now.desired),
        };
        if line != said {
            eprintln!("[{}] {line}", service.label());
            said = line;
        }
        let back = now.events.iter().any(|e| e.contains("rolling back to deployment"));
        if mine.is_none() && !back {
            let primary = now.deployments.iter().find(|d| d.status == "PRIMARY").map_or("another", |d| d.id.as_str());
            bail!(
                "deployment {ours} was replaced by deployment {primary} before it rolled out (someone else deployed): not followed further"
            );
        }
        let rolled_back = mine.is_none() || mine.is_some_and(|d| d.rollout == "FAILED");
        if rolled_back {
            let why = why_stopped(ecs, service, &ours).await?;
            let health = target_health(&elbv2, now).await;
            let failed = mine.map(|d| format!(" ({} failed tasks; {})", d.failed_tasks, d.reason)).unwrap_or_default();
            let back = now
                .events
                .iter()
                .find(|e| e.contains("rolling back to deployment"))
                .map(|e| format!("; {e}"))
                .unwrap_or_default();
            bail!(
                "the real image's deployment {ours} failed{failed} and the service is back on the placeholder{back}: {why}{health}"
            );
        }
        let done =
            mine.is_some_and(|d| d.rollout == "COMPLETED") && now.deployments.len() == 1 && now.running == now.desired;
        if done {
            let digests: Vec<String> = services::judge(registry, std::slice::from_ref(now))
                .await
                .into_iter()
                .map(|w| {
                    format!("{} runs the {} {}", w.container, w.running, w.running_digest.as_deref().unwrap_or("?"))
                })
                .collect();
            return Ok(format!(
                "deployment {ours} rolled out, {}/{} running: {}",
                now.running,
                now.desired,
                digests.join(", ")
            ));
        }
        if Instant::now() >= deadline {
            let why = why_stopped(ecs, service, &ours).await?;
            let health = target_health(&elbv2, now).await;
            bail!(
                "deployment {ours} had not rolled out within {}: {said}; {why}{health}",
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Why the tasks of deployment `id` stopped: each distinct reason, newest first.
async fn why_stopped(ecs: &aws_sdk_ecs::Client, service: &Service, id: &str) -> Result<String> {
    let stopped = services::tasks(ecs, service, aws_sdk_ecs::types::DesiredStatus::Stopped).await?;
    let mut reasons: Vec<String> = Vec::new();
    for task in stopped.iter().rev().filter(|t| t.started_by == id) {
        if let Some(reason) = &task.stopped_reason
            && !reasons.contains(reason)
        {
            reasons.push(reason.clone());
        }
    }
    Ok(match reasons.is_empty() {
        true => "no stopped task of it says why (look at its events and the target group's health)".to_owned(),
        false => format!("its tasks stopped: {}", reasons.join(" | ")),
    })
}

/// The load balancer's word on the service's targets that are not healthy, where it has any.
async fn target_health(elbv2: &aws_sdk_elasticloadbalancingv2::Client, standing: &Standing) -> String {
    let mut said = Vec::new();
    for group in &standing.target_groups {
        let Ok(health) = elbv2.describe_target_health().target_group_arn(group).send().await else { continue };
        for target in health.target_health_descriptions() {
            let Some(state) = target.target_health() else { continue };
            if state.state().is_some_and(|s| s.as_str() != "healthy") {
                let what = [state.reason().map(|r| r.as_str().to_owned()), state.description().map(str::to_owned)];
                said.push(what.into_iter().flatten().collect::<Vec<_>>().join(": "));
            }
        }
    }
    said.dedup();
    match said.is_empty() {
        true => String::new(),
        false => format!("; the load balancer: {}", said.join(" | ")),
    }
}
