//! `publish --wait`: after pushing, follows each service until it is steady, or says why not.
//! One line per service whenever what it says changes: tasks running of desired, the deployment's
//! rollout, the last stopped task's reason (an image not found, a health check failed, an
//! essential container exited), and the load balancer's view of its targets. Bounded by a
//! timeout; Ctrl-C stops the watching and undoes nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use aws_sdk_ecs::types::{DesiredStatus, Service as EcsService};
use tokio::time::Instant;

use crate::base::service::{SERVICES_PER_CALL, Service};
use crate::clients::aws::service_call_failed;
use crate::clients::services;

/// How often ECS is asked once the deployment has had time; its own events come no faster. The
/// first looks come sooner (1 s, 2 s, 4 s): a service that is steady at once is said at once.
const POLL: Duration = Duration::from_secs(5);

/// How the watching ended.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Steady,
    NotSteady,
    Interrupted,
}

/// What a service says at one look.
#[derive(Clone, Debug, Default, PartialEq)]
struct Look {
    steady: bool,
    said: String,
}

/// Follows `services` until every one is steady, `timeout` passes, or `interrupted` is set.
pub async fn follow(
    services: &[Service],
    config: &aws_config::SdkConfig,
    timeout: Duration,
    interrupted: &AtomicBool,
) -> Result<Ended> {
    let ecs = aws_sdk_ecs::Client::new(config);
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(config);
    let deadline = Instant::now() + timeout;
    let mut poll = Duration::from_secs(1);
    let mut last: Vec<Look> = vec![Look::default(); services.len()];
    eprintln!(
        "waiting for {} service(s) to be steady (at most {}; Ctrl-C stops waiting and undoes nothing)",
        services.len(),
        humantime::format_duration(timeout)
    );
    loop {
        let looks = look_all(&ecs, &elbv2, services).await?;
        for ((service, look), before) in services.iter().zip(&looks).zip(&mut last) {
            if look != before {
                eprintln!("[{}] {}", service.label(), look.said);
                *before = look.clone();
            }
        }
        let done = looks.iter().all(|l| l.steady);
        if done || Instant::now() >= deadline || interrupted.load(Ordering::SeqCst) {
            for (service, look) in services.iter().zip(&looks) {
                let verdict = if look.steady { "steady" } else { "NOT STEADY" };
                println!("{}: {verdict}: {}", service.label(), look.said);
            }
            return Ok(match (done, interrupted.load(Ordering::SeqCst)) {
                (true, _) => Ended::Steady,
                (false, true) => {
                    eprintln!("stopped waiting; nothing was undone");
                    Ended::Interrupted
                }
                (false, false) => {
                    eprintln!("not every service was steady within {}", humantime::format_duration(timeout));
                    Ended::NotSteady
                }
            });
        }
        // Sleep in short steps, so Ctrl-C is answered at once.
        let wake = (Instant::now() + poll).min(deadline);
        poll = (poll * 2).min(POLL);
        while Instant::now() < wake && !interrupted.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// One look at every service, in order.
async fn look_all(
    ecs: &aws_sdk_ecs::Client,
    elbv2: &aws_sdk_elasticloadbalancingv2::Client,
    services: &[Service],
) -> Result<Vec<Look>> {
    let mut looks = vec![Look { steady: false, said: "not found in its cluster".to_owned() }; services.len()];
    let clusters: std::collections::BTreeSet<&str> = services.iter().map(|s| s.cluster.as_str()).collect();
    for cluster in clusters {
        let names: Vec<(usize, &Service)> = services.iter().enumerate().filter(|(_, s)| s.cluster == cluster).collect();
        for chunk in names.chunks(SERVICES_PER_CALL) {
            let described = ecs
                .describe_services()
                .cluster(cluster)
                .set_services(Some(chunk.iter().map(|(_, s)| s.name.clone()).collect()))
                .send()
                .await
                .map_err(|e| service_call_failed("ECS", "DescribeServices", e))?;
            for (index, wanted) in chunk {
                if let Some(service) =
                    described.services().iter().find(|s| s.service_name() == Some(wanted.name.as_str()))
                {
                    let stopped = last_stopped(ecs, cluster, &wanted.name).await?;
                    let targets = target_health(elbv2, service).await?;
                    looks[*index] = describe(service, stopped, targets);
                }
            }
        }
    }
    Ok(looks)
}

/// Why the service's most recently stopped task stopped: its reason and its containers' own.
async fn last_stopped(ecs: &aws_sdk_ecs::Client, cluster: &str, service: &str) -> Result<Option<String>> {
    let service = Service { cluster: cluster.to_owned(), name: service.to_owned() };
    let stopped = services::tasks(ecs, &service, DesiredStatus::Stopped).await?;
    let newest = stopped.into_iter().max_by_key(|t| t.stopped_at.unwrap_or(0));
    Ok(newest.map(|task| task.stopped_reason.unwrap_or_else(|| "stopped".to_owned())))
}

/// The load balancer's view: `1 healthy, 1 unhealthy (Target.FailedHealthChecks)`.
async fn target_health(elbv2: &aws_sdk_elasticloadbalancingv2::Client, service: &EcsService) -> Result<Option<String>> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    for balancer in service.load_balancers() {
        let Some(arn) = balancer.target_group_arn() else { continue };
        let health = elbv2
            .describe_target_health()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(|e| service_call_failed("ELBv2", "DescribeTargetHealth", e))?;
        for target in health.target_health_descriptions() {
            let Some(state) = target.target_health() else { continue };
            let name = state.state().map(|s| s.as_str().to_owned()).unwrap_or_else(|| "unknown".to_owned());
            match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, count)) => *count += 1,
                None => counts.push((name, 1)),
            }
            if let Some(reason) = state.reason().map(|r| r.as_str().to_owned())
                && !reasons.contains(&reason)
            {
                reasons.push(reason);
            }
        }
    }
    if counts.is_empty() {
        return Ok(None);
    }
    let counts: Vec<String> = counts.iter().map(|(state, n)| format!("{n} {state}")).collect();
    let reasons = if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) };
    Ok(Some(format!("{}{reasons}", counts.join(", "))))
}

/// One line for a service, and whether it is steady: as many running as desired, and one
/// deployment, rolled out.
fn describe(service: &EcsService, stopped: Option<String>, targets: Option<String>) -> Look {
    let (running, desired) = (service.running_count(), service.desired_count());
    let deployments = service.deployments();
    let primary = deployments.iter().find(|d| d.status() == Some("PRIMARY"));
    let rollout = primary.and_then(|d| d.rollout_state()).map(|s| s.as_str().to_owned());
    let rolled_out = deployments.len() <= 1 && rollout.as_deref().is_none_or(|s| s == "COMPLETED");
    let steady = running == desired && rolled_out;
    let mut said = vec![format!("{running}/{desired} running")];
    if let Some(rollout) = rollout {
        said.push(format!("deployment {}", rollout.to_lowercase().replace('_', " ")));
    }
    if deployments.len() > 1 {
        said.push(format!("{} deployments", deployments.len()));
    }
    if let Some(stopped) = stopped.filter(|_| !steady) {
        said.push(format!("last stopped task: {stopped}"));
    }
    if let Some(targets) = targets {
        said.push(format!("targets: {targets}"));
    }
    if !steady && let Some(event) = service.events().first().and_then(|e| e.message()) {
        said.push(format!("latest event: {event}"));
    }
    Look { steady, said: said.join("; ") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, ServiceEvent};

    #[test]
    fn services_from_stack_physical_ids() {
        assert_eq!(
            Service::from_arn("arn:aws:ecs:eu-west-1:123456789012:service/shop/api"),
            Some(Service { cluster: "shop".into(), name: "api".into() })
        );
        assert_eq!(
            Service::from_arn("arn:aws:ecs:eu-west-1:123456789012:service/legacy"),
            Some(Service { cluster: "default".into(), name: "legacy".into() })
        );
        assert_eq!(Service::from_arn("arn:aws:ecs:eu-west-1:123456789012:task/shop/1"), None);
        assert_eq!(Service::from_arn("api"), None);
    }

    fn service(running: i32, desired: i32, rollouts: &[DeploymentRolloutState]) -> EcsService {
        let mut builder = EcsService::builder().running_count(running).desired_count(desired);
        for (n, state) in rollouts.iter().enumerate() {
            let status = if n == 0 { "PRIMARY" } else { "ACTIVE" };
            builder = builder.deployments(Deployment::builder().status(status).rollout_state(state.clone()).build());
        }
        builder.events(ServiceEvent::builder().message("(service api) has started 1 tasks").build()).build()
    }

    #[test]
    fn steady_means_all_running_and_one_deployment_rolled_out() {
        assert!(describe(&service(1, 1, &[DeploymentRolloutState::Completed]), None, None).steady);
        assert!(describe(&service(0, 0, &[]), None, None).steady);
        let stuck = describe(
            &service(0, 1, &[DeploymentRolloutState::InProgress]),
            Some("CannotPullContainerError: api:1.0.0 not found".into()),
            Some("1 unhealthy (Target.FailedHealthChecks)".into()),
        );
        assert!(!stuck.steady);
        for part in ["0/1 running", "deployment in progress", "CannotPullContainerError", "1 unhealthy", "latest event"]
        {
            assert!(stuck.said.contains(part), "{part}: {}", stuck.said);
        }
        let replacing = describe(
            &service(2, 2, &[DeploymentRolloutState::InProgress, DeploymentRolloutState::Completed]),
            None,
            None,
        );
        assert!(!replacing.steady && replacing.said.contains("2 deployments"), "{}", replacing.said);
    }
}
