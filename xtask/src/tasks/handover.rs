//! `cargo xtask handover`: the real image takes over. ECS resolves a tag to a digest once per
//! deployment, so a service keeps running the placeholder after the pipeline pushes its real
//! image at the same tag. For each service still running a placeholder whose tag now holds a real
//! image, this starts a new deployment (`UpdateService` with `forceNewDeployment`) and follows that
//! service deployment as ECS records it (`DescribeServiceDeployments`), every service at once, until
//! its tasks run the tag's real digest and the load balancer finds them healthy; a rollback, or a
//! deployment the circuit breaker stopped, is a failure saying what the service runs now and why.
//! A service on a real image is never touched; one that CodeDeploy or an external controller
//! deploys, or that is being deleted, is not deployed here, and the line says what to do instead.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;
use tokio::time::Instant;

use crate::base::Usage;
use crate::base::image_ref;
use crate::base::service::Service;
use crate::clients::aws::{self, service_call_failed};
use crate::clients::deployments::{self, ServiceDeployment};
use crate::clients::registry::Registry;
use crate::clients::services::{self, Holds, Next, Standing, Where};
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

/// How one new deployment is followed: its settings, and the clients it needs.
struct Follow<'a> {
    ecs: aws_sdk_ecs::Client,
    elbv2: aws_sdk_elasticloadbalancingv2::Client,
    registry: &'a Registry,
    timeout: Duration,
    stop_on_timeout: bool,
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
    let read = services::read(&ecs, &services).await?;
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
            let after = services::read(&ecs, std::slice::from_ref(&standing.service)).await?;
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

/// Where one followed deployment stands at a look.
enum Look {
    /// Still going: what to say.
    Going(String),
    Done(String),
}

impl Follow<'_> {
    /// Starts a new deployment of `standing` and follows it to its end; a rollback, a stop, or
    /// the deadline is an error saying what runs and why.
    async fn hand_over(&self, standing: &Standing) -> Result<String> {
        let service = &standing.service;
        // ECS's clock, not ours, stamps the deployment: a margin keeps ours from missing it.
        let asked_at =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()) - 60.0;
        let updated = self
            .ecs
            .update_service()
            .cluster(&service.cluster)
            .service(&service.name)
            .force_new_deployment(true)
            .send()
            .await
            .map_err(|e| service_call_failed("ECS", "UpdateService", e))?;
        let updated = updated.service();
        let ours = updated
            .and_then(|s| s.deployments().iter().find(|d| d.status() == Some("PRIMARY")))
            .and_then(|d| d.id())
            .unwrap_or_default()
            .to_owned();
        // The service deployment ECS records for it: the service names it (once it names another
        // than before), or it is the newest.
        let before = standing.records.as_ref().ok().and_then(|r| r.current.as_ref()).map(|c| c.arn.as_str());
        let named = updated.and_then(|s| s.current_service_deployment()).filter(|arn| Some(*arn) != before);
        let record = match named {
            Some(arn) => Ok(arn.to_owned()),
            None => deployments::newest(&self.ecs, &service.cluster, &service.name, Some(asked_at), None)
                .await
                .and_then(|arn| arn.ok_or_else(|| anyhow::anyhow!("no service deployment is listed for it"))),
        };
        let mut record = match record {
            Ok(arn) => Some(arn),
            Err(e) => {
                eprintln!(
                    "[{}] ECS's service deployment records cannot be read ({e:#}): following deployment {ours} by its rollout state",
                    service.label()
                );
                None
            }
        };
        eprintln!(
            "[{}] new {} deployment {} started, following it (at most {})",
            service.label(),
            standing.strategy.to_lowercase().replace('_', "/"),
            record.as_deref().unwrap_or(&ours),
            humantime::format_duration(self.timeout)
        );
        let deadline = Instant::now() + self.timeout;
        let mut said = String::new();
        loop {
            let look = match &record {
                Some(arn) => match self.look_at_record(standing, arn, &ours).await {
                    Err(e) if deployments::not_allowed(&e) => {
                        eprintln!("[{}] {e:#}: following deployment {ours} by its rollout state", service.label());
                        record = None;
                        continue;
                    }
                    look => look?,
                },
                None => self.look_at_rollout(standing, &ours).await?,
            };
            let line = match look {
                Look::Done(detail) => return Ok(detail),
                Look::Going(line) => line,
            };
            if line != said {
                eprintln!("[{}] {line}", service.label());
                said = line;
            }
            if Instant::now() >= deadline {
                return Err(self.out_of_time(standing, record.as_deref(), &ours, &said).await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// One look at the service deployment ECS records for the new deployment.
    async fn look_at_record(&self, standing: &Standing, arn: &str, ours: &str) -> Result<Look> {
        let Some(record) = deployments::describe(&self.ecs, &[arn.to_owned()]).await?.into_iter().next() else {
            bail!("ECS no longer knows service deployment {arn}");
        };
        let progress = format!(
            "{}/{} tasks of the new revision running; service deployment {}",
            record.running,
            record.requested,
            record.says()
        );
        match record.status.as_str() {
            "SUCCESSFUL" => {
                let revision = deployments::revisions(&self.ecs, std::slice::from_ref(&record.target)).await?;
                self.confirm(standing, revision.first().map(|r| r.images.as_slice()), &progress).await
            }
            _ if record.rolled_back() && record.finished() => Err(self.rolled_back(standing, &record, ours).await),
            "STOPPED" => Err(self.stopped(standing, &record, ours).await),
            _ => Ok(Look::Going(progress)),
        }
    }

    /// One look at the new deployment in `DescribeServices`, where the records cannot be read.
    async fn look_at_rollout(&self, standing: &Standing, ours: &str) -> Result<Look> {
        let service = &standing.service;
        let now = services::read(&self.ecs, std::slice::from_ref(service)).await?;
        let Some(now) = now.standings.first() else { bail!("service {} is gone", service.label()) };
        let Some(mine) = now.deployments.iter().find(|d| d.id == ours) else {
            let primary = now.deployments.iter().find(|d| d.status == "PRIMARY").map_or("another", |d| d.id.as_str());
            bail!(
                "deployment {ours} is no longer listed, and deployment {primary} is the service's now (someone else deployed, \
                 or it rolled back): {}",
                self.what_runs(now).await
            );
        };
        let progress = format!(
            "{}/{} running; deployment {}",
            now.running,
            now.desired,
            mine.rollout.to_lowercase().replace('_', " ")
        );
        if mine.rollout == "FAILED" {
            let why = self.why_stopped(service, ours).await?;
            bail!(
                "the real image's deployment {ours} failed ({} failed tasks; {}): {}; {why}{}",
                mine.failed_tasks,
                mine.reason,
                self.what_runs(now).await,
                self.target_health(now).await
            );
        }
        if mine.rollout == "COMPLETED" && now.deployments.len() == 1 {
            return self.confirm(now, None, &progress).await;
        }
        Ok(Look::Going(progress))
    }

    /// After ECS says the deployment succeeded: handed over only once every task runs the digest
    /// the tag's real image has (and the revision resolved, where its record is read), and the
    /// load balancer finds every target healthy.
    async fn confirm(
        &self,
        standing: &Standing,
        resolved: Option<&[(String, String, Option<String>)]>,
        progress: &str,
    ) -> Result<Look> {
        let service = &standing.service;
        let now = services::read(&self.ecs, std::slice::from_ref(service)).await?;
        let Some(now) = now.standings.first() else { bail!("service {} is gone", service.label()) };
        let mut runs = Vec::new();
        for (container, image) in now.containers.iter().filter(|(_, image)| image_ref::ecr_repository(image).is_some())
        {
            let tag = match image_ref::image_tag(image) {
                image_ref::TagRef::Tag(tag) | image_ref::TagRef::Unknown(tag) | image_ref::TagRef::Digest(tag) => tag,
            };
            let real = match services::holds(self.registry, image, &tag).await {
                Holds::Real(digest) => digest,
                other => bail!("deployment succeeded, but :{tag} of container {container} now holds {}", other.word()),
            };
            let revision_digest = resolved
                .and_then(|images| images.iter().find(|(name, _, _)| name == container))
                .and_then(|(_, _, digest)| digest.clone());
            if let Some(digest) = revision_digest.filter(|d| *d != real) {
                bail!(
                    "deployment succeeded, but it resolved :{tag} of container {container} to {digest}, not the real image now \
                     there ({real}): the tag moved during the deployment; run handover again"
                );
            }
            let tasks: Vec<&services::Task> = now.tasks.iter().filter(|t| !t.starting()).collect();
            let on_real = tasks
                .iter()
                .filter(|t| t.containers.iter().any(|(name, _, d)| name == container && d.as_deref() == Some(&real)))
                .count();
            if on_real < tasks.len()
                || (now.running as usize) < now.desired as usize
                || tasks.len() < now.desired as usize
            {
                return Ok(Look::Going(format!(
                    "{progress}; {on_real}/{} tasks run the real image {real}",
                    now.desired
                )));
            }
            runs.push(format!("{container} runs the real image {real}"));
        }
        let unhealthy = self.target_health(now).await;
        if !unhealthy.is_empty() {
            return Ok(Look::Going(format!("{progress}; waiting for the load balancer{unhealthy}")));
        }
        let healthy = if now.target_groups.is_empty() { "" } else { ", its targets healthy" };
        Ok(Look::Done(format!(
            "deployment rolled out, {}/{} running{healthy}: {}",
            now.running,
            now.desired,
            runs.join(", ")
        )))
    }

    /// The error for a deployment ECS rolled back: which revision the service is back on, and
    /// whether that runs the placeholder, with why the new tasks stopped.
    async fn rolled_back(&self, standing: &Standing, record: &ServiceDeployment, ours: &str) -> anyhow::Error {
        let (revision, reason) = record.rolled_back_to.clone().unwrap_or_default();
        let back = match deployments::revisions(&self.ecs, std::slice::from_ref(&revision)).await {
            Ok(found) => self.revision_runs(found.first().map(|r| r.images.as_slice()).unwrap_or_default()).await,
            Err(e) => format!("what it runs could not be read ({e:#})"),
        };
        let why = self.why_stopped(&standing.service, ours).await.unwrap_or_else(|e| format!("{e:#}"));
        let health = self.target_health(standing).await;
        anyhow::anyhow!(
            "the real image's deployment {} failed and rolled back ({}; {}): the service is back on revision {}, {back}; {why}{health}",
            record.arn,
            record.status,
            if reason.is_empty() { &record.reason } else { &reason },
            revision.rsplit('/').next().unwrap_or_default()
        )
    }

    /// The error for a deployment that stopped without a rollback.
    async fn stopped(&self, standing: &Standing, record: &ServiceDeployment, ours: &str) -> anyhow::Error {
        let now = services::read(&self.ecs, std::slice::from_ref(&standing.service)).await;
        let runs = match now.as_ref().ok().and_then(|r| r.standings.first()) {
            Some(now) => self.what_runs(now).await,
            None => "what it runs could not be read".to_owned(),
        };
        let why = self.why_stopped(&standing.service, ours).await.unwrap_or_else(|e| format!("{e:#}"));
        anyhow::anyhow!(
            "the real image's deployment {} stopped ({}) and was not rolled back (the circuit breaker's rollback is off): \
             the service stays on its FAILED deployment, and {runs}; {why}. Fix the image and run handover again, or turn \
             the circuit breaker's rollback on",
            record.arn,
            record.reason
        )
    }

    /// The error at the deadline: the deployment stopped and rolled back when asked to, else how
    /// to stop it.
    async fn out_of_time(&self, standing: &Standing, record: Option<&str>, ours: &str, said: &str) -> anyhow::Error {
        let took = humantime::format_duration(self.timeout);
        let why = self.why_stopped(&standing.service, ours).await.unwrap_or_else(|e| format!("{e:#}"));
        let health = self.target_health(standing).await;
        let Some(arn) = record else {
            return anyhow::anyhow!("deployment {ours} had not rolled out within {took}: {said}; {why}{health}");
        };
        if !self.stop_on_timeout {
            return anyhow::anyhow!(
                "service deployment {arn} had not finished within {took} ({said}) and goes on unwatched: stop it and roll \
                 back with `aws ecs stop-service-deployment --service-deployment-arn {arn} --stop-type ROLLBACK`, or run \
                 handover with --stop-on-timeout; {why}{health}"
            );
        }
        match self
            .ecs
            .stop_service_deployment()
            .service_deployment_arn(arn)
            .stop_type(aws_sdk_ecs::types::StopServiceDeploymentStopType::Rollback)
            .send()
            .await
        {
            Ok(_) => anyhow::anyhow!(
                "service deployment {arn} had not finished within {took} ({said}): stopped it (StopServiceDeployment, \
                 ROLLBACK), and ECS rolls the service back to its last good revision; {why}{health}"
            ),
            Err(e) => anyhow::anyhow!(
                "service deployment {arn} had not finished within {took} ({said}), and stopping it failed: {:#}; {why}{health}",
                service_call_failed("ECS", "StopServiceDeployment", e)
            ),
        }
    }

    /// What a revision's images are: `runs the placeholder sha256:...`, per ECR container.
    async fn revision_runs(&self, images: &[(String, String, Option<String>)]) -> String {
        let mut said = Vec::new();
        for (container, image, digest) in images {
            let Some(digest) = digest.as_deref().filter(|_| image_ref::ecr_repository(image).is_some()) else {
                continue;
            };
            let holds = services::holds(self.registry, image, digest).await;
            said.push(format!("where {container} runs the {} {digest}", holds.word()));
        }
        match said.is_empty() {
            true => "whose images are not in this account's ECR".to_owned(),
            false => said.join(", "),
        }
    }

    /// What the service's running tasks run now, per ECR container.
    async fn what_runs(&self, standing: &Standing) -> String {
        let mut said = Vec::new();
        for (container, _) in standing.containers.iter().filter(|(_, i)| image_ref::ecr_repository(i).is_some()) {
            let runs = services::running(self.registry, standing, container).await;
            let on = match &runs {
                Holds::Placeholder(d) => format!("runs the placeholder {d}"),
                Holds::Real(d) => format!("runs a real image {d}"),
                Holds::Unknown(why) => format!("runs what cannot be told ({why})"),
                other => format!("is {}", other.word()),
            };
            said.push(format!("{container} {on}"));
        }
        match said.is_empty() {
            true => "nothing from this account's ECR runs".to_owned(),
            false => said.join(", "),
        }
    }

    /// Why the tasks of deployment `id` stopped: each distinct reason, newest first.
    async fn why_stopped(&self, service: &Service, id: &str) -> Result<String> {
        let stopped = services::tasks(&self.ecs, service, aws_sdk_ecs::types::DesiredStatus::Stopped).await?;
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
    async fn target_health(&self, standing: &Standing) -> String {
        let mut said = Vec::new();
        for group in &standing.target_groups {
            let health = match self.elbv2.describe_target_health().target_group_arn(group).send().await {
                Ok(health) => health,
                Err(e) => {
                    said.push(format!("{:#}", service_call_failed("ELBv2", "DescribeTargetHealth", e)));
                    continue;
                }
            };
            for target in health.target_health_descriptions() {
                let Some(state) = target.target_health() else { continue };
                if state.state().is_some_and(|s| s.as_str() != "healthy") {
                    let what = [
                        state.state().map(|s| s.as_str().to_owned()),
                        state.reason().map(|r| r.as_str().to_owned()),
                        state.description().map(str::to_owned),
                    ];
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
}
