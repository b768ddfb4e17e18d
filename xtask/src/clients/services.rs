//! ECS services as they stand: their status and deployment controller, their deployments, the
//! task definition each rolls out, what their tasks run (`DescribeTasks` gives each container's
//! `imageDigest`: since software version consistency, July 2024, the digest the deployment resolved
//! its tag to), and what ECS records of their deployments and revisions (`deployments.rs`), each
//! image told apart as the placeholder or a real one through the registry. For `status`,
//! `handover` and `teardown --images`.

use std::collections::BTreeMap;

use anyhow::Result;
use aws_sdk_ecs::types::DesiredStatus;

use crate::base::image_ref;
use crate::base::service::{SERVICES_PER_CALL, Service};
use crate::clients::aws::{error_code, service_call_failed};
use crate::clients::deployments::{self, Records};
use crate::clients::registry::Registry;

/// DescribeTasks takes at most this many a call.
const TASKS_PER_CALL: usize = 100;

/// One service as it stands.
#[derive(Clone, Debug)]
pub struct Standing {
    pub service: Service,
    /// `ACTIVE`, `DRAINING` (being deleted) or `INACTIVE` (deleted).
    pub status: String,
    /// Who deploys it: `ECS`, `CODE_DEPLOY` or `EXTERNAL`.
    pub controller: String,
    /// `ROLLING`, `BLUE_GREEN`, ...
    pub strategy: String,
    pub desired: i32,
    pub running: i32,
    /// PRIMARY first.
    pub deployments: Vec<Deployment>,
    /// The containers of the PRIMARY deployment's task definition: (name, image).
    pub containers: Vec<(String, String)>,
    /// Its tasks that are not stopped: running, and starting (PROVISIONING, PENDING, ACTIVATING).
    pub tasks: Vec<Task>,
    /// The load balancer's target groups.
    pub target_groups: Vec<String>,
    /// The service deployment and revisions it names as its current ones.
    current_deployment: Option<String>,
    current_revisions: Vec<String>,
    /// What ECS records of its deployments and revisions, or why they could not be read (or
    /// that they were not asked for: `read_with_records`).
    pub records: std::result::Result<Records, String>,
}

/// The services asked for: those ECS knows, and those it answered MISSING.
#[derive(Clone, Debug, Default)]
pub struct Read {
    pub standings: Vec<Standing>,
    pub missing: Vec<Service>,
}

#[derive(Clone, Debug)]
pub struct Deployment {
    pub id: String,
    pub status: String,
    pub rollout: String,
    pub reason: String,
    pub task_definition: String,
    pub failed_tasks: i32,
}

#[derive(Clone, Debug)]
pub struct Task {
    /// The deployment that started it (`ecs-svc/...`).
    pub started_by: String,
    /// `RUNNING`, `PENDING`, `STOPPED`, ...
    pub last_status: String,
    /// (container name, image, digest it runs)
    pub containers: Vec<(String, String, Option<String>)>,
    /// Why it stopped: its own reason, and each container's reason or exit code.
    pub stopped_reason: Option<String>,
    /// When it stopped, in seconds since the epoch.
    pub stopped_at: Option<i64>,
}

impl Task {
    /// Not running yet: provisioning, pending or activating, with no `imageDigest` to read.
    pub fn starting(&self) -> bool {
        matches!(self.last_status.as_str(), "PROVISIONING" | "PENDING" | "ACTIVATING")
    }
}

/// What an image in a task or at a tag is.
#[derive(Clone, Debug, PartialEq)]
pub enum Holds {
    Placeholder(String),
    Real(String),
    Missing,
    /// Tasks are starting and none runs yet: what they will run is not reported until they do.
    Starting,
    /// Not in this account's ECR (another registry), or not readable.
    Unknown(String),
}

impl Holds {
    pub fn word(&self) -> &'static str {
        match self {
            Holds::Placeholder(_) => "placeholder",
            Holds::Real(_) => "real image",
            Holds::Missing => "missing",
            Holds::Starting => "starting",
            Holds::Unknown(_) => "unknown",
        }
    }

    pub fn digest(&self) -> Option<&str> {
        match self {
            Holds::Placeholder(d) | Holds::Real(d) => Some(d),
            _ => None,
        }
    }
}

/// Every service of every cluster in the region (for `teardown --images`, which must know every
/// task that may run an image before removing it).
pub async fn everywhere(ecs: &aws_sdk_ecs::Client) -> Result<Vec<Service>> {
    let mut services = Vec::new();
    let mut clusters = ecs.list_clusters().into_paginator().send();
    while let Some(page) = clusters.next().await {
        let page = page.map_err(|e| service_call_failed("ECS", "ListClusters", e))?;
        for cluster in page.cluster_arns() {
            let name = cluster.rsplit('/').next().unwrap_or(cluster).to_owned();
            let mut pages = ecs.list_services().cluster(cluster).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| service_call_failed("ECS", "ListServices", e))?;
                for arn in page.service_arns() {
                    services.push(Service {
                        cluster: name.clone(),
                        name: arn.rsplit('/').next().unwrap_or(arn).to_owned(),
                    });
                }
            }
        }
    }
    Ok(services)
}

/// Each of `services` as it stands, and those ECS answers MISSING.
pub async fn read(ecs: &aws_sdk_ecs::Client, services: &[Service]) -> Result<Read> {
    let mut by_cluster: BTreeMap<&str, Vec<&Service>> = BTreeMap::new();
    for service in services {
        by_cluster.entry(service.cluster.as_str()).or_default().push(service);
    }
    let mut read = Read::default();
    let mut definitions: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (cluster, wanted) in by_cluster {
        for chunk in wanted.chunks(SERVICES_PER_CALL) {
            let described = ecs
                .describe_services()
                .cluster(cluster)
                .set_services(Some(chunk.iter().map(|s| s.name.clone()).collect()))
                .send()
                .await
                .map_err(|e| service_call_failed("ECS", "DescribeServices", e))?;
            for failure in described.failures() {
                let arn = failure.arn().unwrap_or_default();
                let name = arn.rsplit('/').next().unwrap_or(arn);
                if let Some(service) = chunk.iter().find(|s| s.name == name) {
                    read.missing.push((*service).clone());
                }
            }
            for found in described.services() {
                let name = found.service_name().unwrap_or_default().to_owned();
                let deployments: Vec<Deployment> = found
                    .deployments()
                    .iter()
                    .map(|d| Deployment {
                        id: d.id().unwrap_or_default().to_owned(),
                        status: d.status().unwrap_or_default().to_owned(),
                        rollout: d.rollout_state().map(|r| r.as_str().to_owned()).unwrap_or_default(),
                        reason: d.rollout_state_reason().unwrap_or_default().to_owned(),
                        task_definition: d.task_definition().unwrap_or_default().to_owned(),
                        failed_tasks: d.failed_tasks(),
                    })
                    .collect();
                let primary = deployments.iter().find(|d| d.status == "PRIMARY").map(|d| d.task_definition.clone());
                let definition = primary.or(found.task_definition().map(str::to_owned)).unwrap_or_default();
                if !definitions.contains_key(&definition) && !definition.is_empty() {
                    let task = ecs
                        .describe_task_definition()
                        .task_definition(&definition)
                        .send()
                        .await
                        .map_err(|e| service_call_failed("ECS", "DescribeTaskDefinition", e))?;
                    let containers = task
                        .task_definition()
                        .map(|t| {
                            t.container_definitions()
                                .iter()
                                .map(|c| {
                                    (c.name().unwrap_or_default().to_owned(), c.image().unwrap_or_default().to_owned())
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    definitions.insert(definition.clone(), containers);
                }
                let service = Service { cluster: cluster.to_owned(), name };
                let status = found.status().unwrap_or("ACTIVE").to_owned();
                let active = status == "ACTIVE";
                let tasks = if active { tasks(ecs, &service, DesiredStatus::Running).await? } else { Vec::new() };
                read.standings.push(Standing {
                    status,
                    controller: found
                        .deployment_controller()
                        .map_or("ECS".to_owned(), |c| c.r#type().as_str().to_owned()),
                    strategy: found
                        .deployment_configuration()
                        .and_then(|c| c.strategy())
                        .map_or("ROLLING".to_owned(), |s| s.as_str().to_owned()),
                    desired: found.desired_count(),
                    running: found.running_count(),
                    deployments,
                    containers: definitions.get(&definition).cloned().unwrap_or_default(),
                    tasks,
                    target_groups: found
                        .load_balancers()
                        .iter()
                        .filter_map(|b| b.target_group_arn().map(str::to_owned))
                        .collect(),
                    current_deployment: found.current_service_deployment().map(str::to_owned),
                    current_revisions: found
                        .current_service_revisions()
                        .iter()
                        .filter_map(|r| r.arn().map(str::to_owned))
                        .collect(),
                    // A service being deleted starts no task: nothing of it to read.
                    records: match active {
                        true => Err("its deployment records were not read".to_owned()),
                        false => Ok(Records::default()),
                    },
                    service,
                });
            }
        }
    }
    Ok(read)
}

/// The same, with what ECS records of each ACTIVE service's deployments and revisions: for what
/// decides on a service (`status`, `handover`, `teardown --images`), not for following one.
pub async fn read_with_records(ecs: &aws_sdk_ecs::Client, services: &[Service]) -> Result<Read> {
    let mut read = read(ecs, services).await?;
    for standing in read.standings.iter_mut().filter(|s| s.status == "ACTIVE") {
        let service = &standing.service;
        standing.records = deployments::records(
            ecs,
            &service.cluster,
            &service.name,
            standing.current_deployment.as_deref(),
            &standing.current_revisions,
        )
        .await
        .map_err(|e| format!("{e:#}"));
    }
    Ok(read)
}

/// The service's tasks that ECS wants `status` (running, or stopped).
pub async fn tasks(ecs: &aws_sdk_ecs::Client, service: &Service, status: DesiredStatus) -> Result<Vec<Task>> {
    let mut arns = Vec::new();
    let mut pages = ecs
        .list_tasks()
        .cluster(&service.cluster)
        .service_name(&service.name)
        .desired_status(status)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            if error_code(&e) == Some("ServiceNotFoundException") {
                anyhow::anyhow!("service {} is gone", service.label())
            } else {
                service_call_failed("ECS", "ListTasks", e)
            }
        })?;
        arns.extend(page.task_arns().iter().cloned());
    }
    let mut tasks = Vec::new();
    for chunk in arns.chunks(TASKS_PER_CALL) {
        let described = ecs
            .describe_tasks()
            .cluster(&service.cluster)
            .set_tasks(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| service_call_failed("ECS", "DescribeTasks", e))?;
        for task in described.tasks() {
            let mut reasons = vec![];
            if let Some(reason) = task.stopped_reason() {
                reasons.push(reason.to_owned());
            }
            for container in task.containers() {
                let name = container.name().unwrap_or("container");
                if let Some(reason) = container.reason().filter(|r| !reasons.iter().any(|known| known == r)) {
                    reasons.push(format!("{name}: {reason}"));
                } else if let Some(code) = container.exit_code().filter(|c| *c != 0 && task.stopped_at().is_some()) {
                    reasons.push(format!("{name} exited {code}"));
                }
            }
            tasks.push(Task {
                started_by: task.started_by().unwrap_or_default().to_owned(),
                last_status: task.last_status().unwrap_or_default().to_owned(),
                containers: task
                    .containers()
                    .iter()
                    .map(|c| {
                        (
                            c.name().unwrap_or_default().to_owned(),
                            c.image().unwrap_or_default().to_owned(),
                            c.image_digest().map(str::to_owned),
                        )
                    })
                    .collect(),
                stopped_reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
                stopped_at: task.stopped_at().map(|t| t.secs()),
            });
        }
    }
    Ok(tasks)
}

/// What `image` (an ECR reference) holds at `reference` (its tag, or a task's digest): the
/// placeholder, a real image, or nothing.
pub async fn holds(registry: &Registry, image: &str, reference: &str) -> Holds {
    let Some(repository) = image_ref::ecr_repository(image) else { return Holds::Unknown("not in ECR".to_owned()) };
    match registry.inspect(&repository, reference).await {
        Ok(None) => Holds::Missing,
        Ok(Some(found)) if found.placeholder => Holds::Placeholder(found.digest),
        Ok(Some(found)) => Holds::Real(found.digest),
        Err(e) => Holds::Unknown(format!("{e:#}")),
    }
}

/// What a service's running tasks run for `container`: the placeholder, a real image, starting
/// (tasks start and none runs yet), or (none running) missing. A running task whose container
/// reports no `imageDigest` (`versionConsistency: disabled`, an older agent) cannot be told apart
/// by its tag, which may have moved since it started: unknown.
pub async fn running(registry: &Registry, standing: &Standing, container: &str) -> Holds {
    let mut verdict = Holds::Missing;
    for task in &standing.tasks {
        for (_, image, digest) in task.containers.iter().filter(|(name, _, _)| name == container) {
            if task.starting() {
                if verdict == Holds::Missing {
                    verdict = Holds::Starting;
                }
                continue;
            }
            let Some(digest) = digest else {
                return Holds::Unknown("a task reports no imageDigest, so what it runs cannot be told".to_owned());
            };
            match holds(registry, image, digest).await {
                // One task on a placeholder is enough to say the service still serves it.
                found @ Holds::Placeholder(_) => return found,
                found @ Holds::Real(_) => verdict = found,
                found if matches!(verdict, Holds::Missing | Holds::Starting) => verdict = found,
                _ => {}
            }
        }
    }
    verdict
}

/// Where one ECR container of a service stands, and the one thing to do next.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Where {
    /// `cluster/service`.
    pub service: String,
    pub container: String,
    pub image: String,
    /// The tag its definition pulls.
    pub tag: String,
    /// What its running tasks run: `placeholder`, `real image`, `missing` (none running).
    pub running: &'static str,
    pub running_digest: Option<String>,
    /// What the tag holds now.
    pub at_tag: &'static str,
    pub tag_digest: Option<String>,
    pub next: Next,
    /// The service's current deployment rolled back, as ECS records it: which, to what, and why.
    pub rolled_back: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Next {
    /// Runs the placeholder, and the tag holds a real image: a new deployment picks it up.
    Handover,
    /// Runs the placeholder, the tag still holds it: the pipeline has not pushed yet.
    WaitForPipeline,
    /// The tag is empty: tasks cannot pull it.
    Publish,
    /// Runs a real image: nothing to do.
    Done,
    /// No task runs yet, and the tag holds an image: the deployment is under way.
    Starting,
    /// Its desired count is 0: no task starts, whatever the tag holds.
    ScaledToZero,
    /// The service is being deleted (DRAINING) or is deleted (INACTIVE).
    Deleted,
    /// The definition names a digest, not a tag: no push changes what it runs.
    Pinned,
    /// What runs or what the tag holds cannot be read.
    Unknown,
}

impl Next {
    pub fn says(self, tag: &str) -> String {
        match self {
            Next::Handover => format!(
                "hand over: the real image is at :{tag}, but the tasks still run the placeholder (ECS resolved the tag when their \
                 deployment started): cargo xtask handover starts a new deployment and follows it"
            ),
            Next::WaitForPipeline => {
                format!("wait for the pipeline: :{tag} still holds the placeholder, which the tasks run")
            }
            Next::Publish => {
                format!("publish: :{tag} holds nothing, so new tasks cannot pull it (cargo xtask publish --from ...)")
            }
            Next::Done => {
                "nothing: the tasks run a real image (`cargo xtask teardown --images` removes the placeholder's images)"
                    .to_owned()
            }
            Next::Starting => format!("wait: its tasks are starting, and :{tag} holds an image"),
            Next::ScaledToZero => format!(
                "scale it up: its desired count is 0, so no task starts whatever :{tag} holds (aws ecs update-service \
                 --desired-count N; a deployment then pulls the tag)"
            ),
            Next::Deleted => "nothing: the service is being deleted or is deleted, so it starts no task".to_owned(),
            Next::Pinned => format!(
                "register a new revision: the definition pins {tag}, and a push never changes a pinned digest; name the \
                 tag (or the real image's digest) in a new revision of the task definition and deploy it"
            ),
            Next::Unknown => "look: what runs or what the tag holds could not be read".to_owned(),
        }
    }
}

/// The service's current deployment, where ECS records that it rolled back: which, to which
/// revision, and why.
fn rollback_record(standing: &Standing) -> Option<String> {
    let current = standing.records.as_ref().ok()?.current.as_ref().filter(|c| c.rolled_back())?;
    let (revision, why) = current.rolled_back_to.clone().unwrap_or_default();
    Some(format!(
        "service deployment {} is {}, back to revision {}: {}",
        current.arn,
        current.status,
        revision.rsplit('/').next().unwrap_or_default(),
        if why.is_empty() { &current.reason } else { &why }
    ))
}

/// Where each ECR container of each service stands.
pub async fn judge(registry: &Registry, standings: &[Standing]) -> Vec<Where> {
    let mut all = Vec::new();
    for standing in standings {
        for (container, image) in &standing.containers {
            if image_ref::ecr_repository(image).is_none() {
                continue;
            }
            let tag = match image_ref::image_tag(image) {
                image_ref::TagRef::Tag(tag) | image_ref::TagRef::Unknown(tag) | image_ref::TagRef::Digest(tag) => tag,
            };
            let pinned = matches!(image_ref::image_tag(image), image_ref::TagRef::Digest(_));
            let running = running(registry, standing, container).await;
            let at_tag = holds(registry, image, &tag).await;
            let next = match (&running, &at_tag) {
                _ if standing.status != "ACTIVE" => Next::Deleted,
                _ if standing.desired == 0 => Next::ScaledToZero,
                (Holds::Unknown(_), _) | (_, Holds::Unknown(_)) => Next::Unknown,
                (Holds::Real(_), _) => Next::Done,
                _ if pinned => Next::Pinned,
                (_, Holds::Missing) => Next::Publish,
                (Holds::Placeholder(_), Holds::Real(_)) => Next::Handover,
                (Holds::Placeholder(_), Holds::Placeholder(_)) => Next::WaitForPipeline,
                // Nothing runs yet (at_tag is never `Starting`: that is only said of tasks).
                _ => Next::Starting,
            };
            all.push(Where {
                service: standing.service.label(),
                container: container.clone(),
                image: image.clone(),
                tag,
                running: running.word(),
                running_digest: running.digest().map(str::to_owned),
                at_tag: at_tag.word(),
                tag_digest: at_tag.digest().map(str::to_owned),
                next,
                rolled_back: rollback_record(standing),
            });
        }
    }
    all
}
