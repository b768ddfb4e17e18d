//! `cargo xtask handover`: the real image takes over. ECS resolves a tag to a digest once per
//! deployment, so a service keeps running the placeholder after the pipeline pushes its real
//! image at the same tag. For each service still running a placeholder whose tag now holds a real
//! image, this starts a new deployment (`UpdateService` with `forceNewDeployment`) and follows that
//! service deployment as ECS records it (`DescribeServiceDeployments`), every service at once, until
//! its tasks run the tag's real digest and the load balancer finds them healthy; a rollback, or a
//! deployment the circuit breaker stopped, is a failure saying what the service runs now and why.
//! A service on a real image is never touched; one that CodeDeploy or an external controller
//! deploys, or that is being deleted, is not deployed here, and the line says what to do instead.
//! `follow.rs` follows each new deployment.

mod follow;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::base::Usage;
use crate::clients::aws;
use crate::clients::services::{self, Next, Standing, Where};
use crate::sources::from;
use crate::tasks::OutputFormat;

use follow::Follow;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The services: a deployed stack's (`stack:NAME`) or a cluster's (`ecs:CLUSTER[/SERVICE,...]`)
    /// [default: every service of every cluster in the region].
    #[arg(long, value_name = "SOURCE", num_args = 1..)]
    pub from: Vec<String>,
    /// Say which services would get a new deployment, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long the new deployments are followed.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = humantime::parse_duration)]
    pub wait_timeout: Duration,
    /// At the timeout, stop a deployment still under way and let ECS roll it back
    /// (`StopServiceDeployment`), instead of leaving it running unwatched.
    #[arg(long)]
    pub stop_on_timeout: bool,
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
    /// Its deployments are not ECS's to start: the line says whose.
    Refused,
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
    let read = services::read_with_records(&ecs, &services).await?;
    let mut outcomes: Vec<Outcome> = read
        .missing
        .iter()
        .map(|service| Outcome {
            service: service.label(),
            action: Action::Failed,
            detail: format!(
                "ECS has no such service (DescribeServices answers MISSING): check the name and cluster \
                 ({}), or the stack that should have made it",
                service.cluster
            ),
            containers: Vec::new(),
        })
        .collect();
    for standing in &read.standings {
        let containers = services::judge(&registry, std::slice::from_ref(standing)).await;
        let (action, detail) = decide(standing, &containers);
        outcomes.push(Outcome { service: standing.service.label(), action, detail, containers });
    }
    let follow = Follow {
        ecs: ecs.clone(),
        elbv2: aws_sdk_elasticloadbalancingv2::Client::new(&target.config),
        registry: &registry,
        timeout: args.wait_timeout,
        stop_on_timeout: args.stop_on_timeout,
    };
    if !args.dry_run {
        let handing: Vec<(usize, &Standing)> = read
            .standings
            .iter()
            .enumerate()
            .map(|(n, standing)| (n + read.missing.len(), standing))
            .filter(|(n, _)| outcomes[*n].action == Action::WouldHandOver)
            .collect();
        let results =
            futures_util::future::join_all(handing.iter().map(|(_, standing)| follow.hand_over(standing))).await;
        for ((n, standing), result) in handing.into_iter().zip(results) {
            let outcome = &mut outcomes[n];
            (outcome.action, outcome.detail) = match result {
                Ok(detail) => (Action::HandedOver, detail),
                Err(error) => (Action::Failed, format!("{error:#}")),
            };
            // What runs now, after the new deployment.
            let after = services::read_with_records(&ecs, std::slice::from_ref(&standing.service)).await?;
            outcome.containers = services::judge(&registry, &after.standings).await;
        }
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
    let failed = outcomes.iter().any(|o| matches!(o.action, Action::Failed | Action::Refused));
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// What to do with a service: nothing unless it is ACTIVE; then, from where its ECR containers
/// stand, a new deployment only when one runs the placeholder while its tag holds a real image,
/// none is unreadable, no deployment is under way, and ECS is the one to deploy it.
fn decide(standing: &Standing, containers: &[Where]) -> (Action, String) {
    match standing.status.as_str() {
        "ACTIVE" => {}
        "DRAINING" => {
            return (Action::Skipped, "DRAINING: the service is being deleted, so nothing is handed over".into());
        }
        status => return (Action::Skipped, format!("{status}: the service is deleted, so nothing is handed over")),
    }
    let (action, detail) = from_containers(containers);
    if action != Action::WouldHandOver {
        return (action, detail);
    }
    match standing.controller.as_str() {
        "CODE_DEPLOY" => {
            return (
                Action::Refused,
                "CodeDeploy deploys this service (deploymentController CODE_DEPLOY), and ECS refuses to start its \
                 deployments: start one in CodeDeploy with the same task definition (aws deploy create-deployment \
                 --application-name APP --deployment-group-name GROUP ...), whose new tasks pull the real image at the tag"
                    .into(),
            );
        }
        "EXTERNAL" => {
            return (
                Action::Refused,
                format!(
                    "an external controller deploys this service (deploymentController EXTERNAL), through task sets: \
                     create a task set of the same task definition (aws ecs create-task-set --cluster {} --service {} \
                     --task-definition ...) and shift traffic to it; its tasks pull the real image at the tag",
                    standing.service.cluster, standing.service.name
                ),
            );
        }
        _ => {}
    }
    let current = standing.records.as_ref().ok().and_then(|r| r.current.as_ref());
    if let Some(current) = current.filter(|c| !c.finished()) {
        return (
            Action::Skipped,
            format!("service deployment {} is {}: run handover once it ends", current.arn, current.says()),
        );
    }
    // Where ECS's records cannot be read: someone else's deployment (the pipeline's own) is under
    // way while more than one is listed.
    if standing.deployments.len() > 1 {
        return (
            Action::Skipped,
            format!("{} deployments are under way: run handover once they end", standing.deployments.len()),
        );
    }
    (action, detail)
}

/// The same from the containers alone.
fn from_containers(containers: &[Where]) -> (Action, String) {
    if containers.is_empty() {
        return (Action::Skipped, "no container from this account's ECR".to_owned());
    }
    let each = |next: Next| containers.iter().filter(move |w| w.next == next);
    // A new deployment re-resolves every container's tag: one that cannot be pulled, or cannot be
    // read, would take the service down with it.
    if let Some(stuck) = containers
        .iter()
        .find(|w| matches!(w.next, Next::Unknown | Next::Publish | Next::Starting | Next::ScaledToZero | Next::Pinned))
    {
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
