//! Following one new deployment of `handover` to its end, as ECS records it: its service
//! deployment (`DescribeServiceDeployments`), or where that may not be read its `rolloutState`;
//! handed over only once every task runs the tag's real digest and the load balancer finds the
//! targets healthy; a rollback, a stop or the deadline an error saying what runs and why.

use std::time::Duration;

use anyhow::{Result, bail};
use tokio::time::Instant;

use crate::base::image_ref;
use crate::base::service::Service;
use crate::clients::aws::service_call_failed;
use crate::clients::deployments::{self, ServiceDeployment};
use crate::clients::registry::Registry;
use crate::clients::services::{self, Holds, Standing};

/// How often a deployment being followed is looked at.
const POLL: Duration = Duration::from_secs(2);

/// How one new deployment is followed: its settings, and the clients it needs.
pub(super) struct Follow<'a> {
    pub(super) ecs: aws_sdk_ecs::Client,
    pub(super) elbv2: aws_sdk_elasticloadbalancingv2::Client,
    pub(super) registry: &'a Registry,
    pub(super) timeout: Duration,
    pub(super) stop_on_timeout: bool,
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
    pub(super) async fn hand_over(&self, standing: &Standing) -> Result<String> {
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
