//! What ECS records of a service's deployments (`DescribeServiceDeployments`,
//! `ListServiceDeployments`) and of the revisions they deploy (`DescribeServiceRevisions`: the
//! digest each container's image resolved to when the deployment started). These records, not
//! event text or tag names, say whether a deployment succeeded or rolled back, and which digests
//! a service can still start tasks from: its current revisions, the one a rollback would return
//! to, and what its current deployment moves between.

use anyhow::{Result, bail};
use aws_sdk_ecs::types::ServiceDeploymentStatus;

use crate::clients::aws::{error_code, service_call_failed};

/// DescribeServiceDeployments and DescribeServiceRevisions take at most this many ARNs a call.
const ARNS_PER_CALL: usize = 20;

/// A call the identity may not make, or the region does not offer: the records are unread, and
/// the caller falls back to what `DescribeServices` says.
#[derive(Debug)]
pub struct NotAllowed(pub String);

impl std::fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotAllowed {}

/// Whether `error` is a `NotAllowed`.
pub fn not_allowed(error: &anyhow::Error) -> bool {
    error.downcast_ref::<NotAllowed>().is_some()
}

fn failed<E, R>(call: &str, error: aws_sdk_ecs::error::SdkError<E, R>) -> anyhow::Error
where
    E: aws_sdk_ecs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let refused = matches!(error_code(&error), Some("AccessDeniedException" | "UnsupportedFeatureException"));
    let error = service_call_failed("ECS", call, error);
    match refused {
        true => NotAllowed(format!("{error:#}")).into(),
        false => error,
    }
}

/// One service deployment as ECS records it.
#[derive(Clone, Debug)]
pub struct ServiceDeployment {
    pub arn: String,
    /// `SUCCESSFUL`, `IN_PROGRESS`, `ROLLBACK_SUCCESSFUL`, `STOPPED`, ...
    pub status: String,
    pub reason: String,
    /// The revision it deploys, and the tasks of it requested and running.
    pub target: String,
    pub requested: i32,
    pub running: i32,
    /// The revisions it moves the service from.
    pub sources: Vec<String>,
    /// The revision a rollback returned (or returns) the service to, and why it rolled back.
    pub rolled_back_to: Option<(String, String)>,
    /// Where a blue/green deployment is (`BAKE_TIME`, ...); none for a rolling one.
    pub stage: Option<String>,
}

impl ServiceDeployment {
    pub fn finished(&self) -> bool {
        !matches!(
            self.status.as_str(),
            "PENDING" | "IN_PROGRESS" | "STOP_REQUESTED" | "ROLLBACK_REQUESTED" | "ROLLBACK_IN_PROGRESS"
        )
    }

    pub fn rolled_back(&self) -> bool {
        self.status.starts_with("ROLLBACK_")
    }

    /// Its status in words, with the blue/green stage it waits in.
    pub fn says(&self) -> String {
        let status = self.status.to_lowercase().replace('_', " ");
        match &self.stage {
            Some(stage) if !self.finished() => format!("{status}, in stage {stage}"),
            _ => status,
        }
    }
}

/// One service revision: what each container's image resolved to.
#[derive(Clone, Debug)]
pub struct Revision {
    /// (container name, image, digest it resolved to)
    pub images: Vec<(String, String, Option<String>)>,
}

/// The service deployments named, as ECS records them; those it does not know are left out.
pub async fn describe(ecs: &aws_sdk_ecs::Client, arns: &[String]) -> Result<Vec<ServiceDeployment>> {
    let mut found = Vec::new();
    for chunk in arns.chunks(ARNS_PER_CALL) {
        let described = ecs
            .describe_service_deployments()
            .set_service_deployment_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| failed("DescribeServiceDeployments", e))?;
        for d in described.service_deployments() {
            let target = d.target_service_revision();
            found.push(ServiceDeployment {
                arn: d.service_deployment_arn().unwrap_or_default().to_owned(),
                status: d.status().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                reason: d.status_reason().unwrap_or_default().to_owned(),
                target: target.and_then(|t| t.arn()).unwrap_or_default().to_owned(),
                requested: target.map_or(0, |t| t.requested_task_count()),
                running: target.map_or(0, |t| t.running_task_count()),
                sources: d.source_service_revisions().iter().filter_map(|s| s.arn().map(str::to_owned)).collect(),
                rolled_back_to: d.rollback().map(|r| {
                    (r.service_revision_arn().unwrap_or_default().to_owned(), r.reason().unwrap_or_default().to_owned())
                }),
                stage: d.lifecycle_stage().map(|s| s.as_str().to_owned()),
            });
        }
    }
    Ok(found)
}

/// The newest service deployment of `service` made at or after `after` (seconds since the epoch),
/// or of any time: ECS does not say in which order it lists them, so every page is read.
pub async fn newest(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    service: &str,
    after: Option<f64>,
    status: Option<ServiceDeploymentStatus>,
) -> Result<Option<String>> {
    let mut newest: Option<(f64, String)> = None;
    let mut token = None;
    // A bound, not a limit anyone meets: 20 pages of 100 deployments.
    for _ in 0..20 {
        let mut call = ecs.list_service_deployments().cluster(cluster).service(service).max_results(100);
        if let Some(after) = after {
            call = call.created_at(
                aws_sdk_ecs::types::CreatedAt::builder()
                    .after(aws_sdk_ecs::primitives::DateTime::from_secs_f64(after))
                    .build(),
            );
        }
        if let Some(status) = &status {
            call = call.status(status.clone());
        }
        let page = call.set_next_token(token).send().await.map_err(|e| failed("ListServiceDeployments", e))?;
        for brief in page.service_deployments() {
            let created = brief.created_at().map_or(0.0, |t| t.as_secs_f64());
            if newest.as_ref().is_none_or(|(at, _)| created > *at) {
                newest = Some((created, brief.service_deployment_arn().unwrap_or_default().to_owned()));
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    Ok(newest.map(|(_, arn)| arn))
}

/// The revisions named, with the digests they resolved.
pub async fn revisions(ecs: &aws_sdk_ecs::Client, arns: &[String]) -> Result<Vec<Revision>> {
    let mut found = Vec::new();
    for chunk in arns.chunks(ARNS_PER_CALL) {
        let described = ecs
            .describe_service_revisions()
            .set_service_revision_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| failed("DescribeServiceRevisions", e))?;
        if let Some(missing) = described.failures().first() {
            bail!(
                "DescribeServiceRevisions: {} is {}",
                missing.arn().unwrap_or("a revision"),
                missing.reason().unwrap_or("missing")
            );
        }
        for r in described.service_revisions() {
            found.push(Revision {
                images: r
                    .container_images()
                    .iter()
                    .map(|c| {
                        (
                            c.container_name().unwrap_or_default().to_owned(),
                            c.image().unwrap_or_default().to_owned(),
                            c.image_digest().map(str::to_owned),
                        )
                    })
                    .collect(),
            });
        }
    }
    Ok(found)
}

/// What a service's records say: its current deployment, and every revision it can still start
/// tasks from (those it runs, its current deployment's target, what an unfinished one moves from,
/// what a rollback returned to, and the last one deployed successfully, which a rollback of the
/// current one would return to).
#[derive(Clone, Debug, Default)]
pub struct Records {
    pub current: Option<ServiceDeployment>,
    pub revisions: Vec<Revision>,
}

/// A service's records, from its `currentServiceDeployment` and `currentServiceRevisions`.
pub async fn records(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    service: &str,
    current_deployment: Option<&str>,
    current_revisions: &[String],
) -> Result<Records> {
    let current = match current_deployment {
        Some(arn) => describe(ecs, &[arn.to_owned()]).await?.into_iter().next(),
        None => None,
    };
    let mut wanted: Vec<String> = current_revisions.to_vec();
    if let Some(current) = &current {
        wanted.push(current.target.clone());
        wanted.extend(current.rolled_back_to.iter().map(|(arn, _)| arn.clone()));
        // Until it ends, a rollback returns the service to what it moves from; once it has, those
        // revisions are scaled to nothing and nothing returns to them.
        if !current.finished() {
            wanted.extend(current.sources.iter().cloned());
        }
    }
    // The current deployment may have replaced the last good one; a rollback returns to that.
    if current.as_ref().is_none_or(|c| c.status != "SUCCESSFUL")
        && let Some(last) = newest(ecs, cluster, service, None, Some(ServiceDeploymentStatus::Successful)).await?
        && let Some(last) = describe(ecs, &[last]).await?.into_iter().next()
    {
        wanted.push(last.target);
    }
    wanted.retain(|arn| !arn.is_empty());
    wanted.sort();
    wanted.dedup();
    Ok(Records { current, revisions: revisions(ecs, &wanted).await? })
}
