//! ECS's scheduler, as far as the tests need it, in front of moto's ECS: moto stores clusters,
//! services and task definitions, but never starts a task (its services stay at 0 running) and
//! knows no image digests. This proxy adds what the real service does with a deployment, after
//! AWS's documentation:
//! - "Software version consistency" (ECS developer guide, "Container image resolution"): when a
//!   deployment starts, each container's image tag is resolved to a digest, once; its tasks run
//!   that digest, and `DescribeTasks` reports it as the container's `imageDigest`. A tag that does
//!   not resolve yet is tried again with each task ECS launches, as it retries the pull.
//! - A task whose image cannot be pulled stops with `CannotPullContainerError: pull image manifest
//!   has been retried 5 time(s): failed to resolve ref ...: not found`; one whose image has no
//!   entry point or command stops with `CannotStartContainerError` ("Stopped tasks errors").
//!   Whether a started image passes its health checks is not judged here: `verify` runs images
//!   under their definitions for that.
//! - The deployment circuit breaker ("Deployment circuit breaker"): a deployment fails after
//!   max(3, min(200, ceil(desired / 2))) failed tasks, and with `rollback` the service goes back
//!   to its last COMPLETED deployment, with that deployment's task definition and digests. A
//!   rolling update keeps the old deployment's tasks running until the new one has its own.
//! - `DescribeServices` gives `runningCount`, `deployments` (PRIMARY and ACTIVE, each with its
//!   `rolloutState`) and `events` with ECS's wording; `UpdateService` with `forceNewDeployment`
//!   or a new task definition starts a deployment; `ListTasks` and `DescribeTasks` list the
//!   service's tasks, running and stopped.
//! - Every list call paged, and the Describe calls' limits, as `pages.rs` says.
//!
//! Images are judged from the test registry: the manifest (or the index's entry for the task's
//! platform) and its config's entry point and command. Images from other registries (Docker Hub)
//! are taken as pulled, which the real service would do over the Internet.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::faults::{HttpProxy, Request, Verdict, exchange, parse_answer};
use crate::pages;

const TARGET: &str = "AmazonEC2ContainerServiceV20141113.";
/// How often a deployment that cannot start its tasks launches another.
const RETRY: Duration = Duration::from_millis(700);

/// moto's ECS with the scheduler on top; every other call passes through unchanged.
pub struct Scheduler {
    proxy: HttpProxy,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    services: HashMap<String, Service>,
    next: u64,
    /// Every ECS operation asked, in order.
    operations: Vec<String>,
}

struct Service {
    arn: String,
    name: String,
    cluster: String,
    desired: i64,
    circuit_breaker: bool,
    rollback: bool,
    deployments: Vec<Deployment>,
    /// Newest last: (epoch seconds, message).
    events: Vec<(f64, String)>,
    tasks: Vec<Task>,
}

#[derive(Clone)]
struct Deployment {
    id: String,
    task_definition: String,
    containers: Vec<Container>,
    platform: String,
    created: f64,
    /// Each container's digest, once every ECR image's tag resolved (None for other registries).
    digests: Option<Vec<Option<String>>>,
    /// Why its tasks cannot start, once known.
    broken: Option<String>,
    rollout: &'static str,
    reason: String,
    failed_tasks: i64,
    last_try: Option<Instant>,
    /// The deployment it rolls back to, for a rollback.
    rolls_back: Option<String>,
}

#[derive(Clone)]
struct Container {
    name: String,
    image: String,
    essential: bool,
}

struct Task {
    arn: String,
    deployment: String,
    task_definition: String,
    /// (name, image, digest)
    containers: Vec<(String, String, Option<String>)>,
    stopped: Option<(f64, String)>,
    started: f64,
    /// The container that could not start, and why.
    failed: Option<(String, String)>,
}

impl Scheduler {
    /// In front of moto on `moto_port`, judging images in the registry on `registry_port` with the
    /// registry's `user` and `password`.
    pub fn start(moto_port: u16, registry_port: u16, user: &str, password: &str) -> Result<Scheduler> {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let auth = crate::basic_auth(user, password);
        let proxy = HttpProxy::start(moto_port, move |request| {
            let Some(operation) =
                request.header("x-amz-target").and_then(|t| t.strip_prefix(TARGET)).map(str::to_owned)
            else {
                return Verdict::Forward;
            };
            shared.lock().unwrap().operations.push(operation.clone());
            match handle(&shared, moto_port, registry_port, &auth, &operation, request) {
                Ok(Some((status, body))) => Verdict::Respond {
                    status,
                    headers: vec![
                        ("Content-Type".into(), "application/x-amz-json-1.1".into()),
                        ("x-amzn-RequestId".into(), "scheduler".into()),
                    ],
                    body,
                },
                Ok(None) => Verdict::Forward,
                Err(error) => Verdict::Respond {
                    status: 500,
                    headers: vec![("Content-Type".into(), "application/x-amz-json-1.1".into())],
                    body: json!({ "__type": "ServerException", "message": format!("testbed scheduler: {error:#}") })
                        .to_string()
                        .into_bytes(),
                },
            }
        })?;
        Ok(Scheduler { proxy, state })
    }

    /// The value for `AWS_ENDPOINT_URL`: moto behind the scheduler.
    pub fn endpoint(&self) -> String {
        self.proxy.endpoint()
    }

    /// Its port, for a proxy in front of it (injected faults).
    pub fn port(&self) -> u16 {
        self.proxy.port
    }

    /// Every request seen so far, as `METHOD target` and, for ECS, its operation.
    pub fn operations(&self) -> Vec<String> {
        self.state.lock().unwrap().operations.clone()
    }

    /// The digest each running task of `service` runs for `container`, as `DescribeTasks` says.
    pub fn running_digests(&self, service: &str, container: &str) -> Vec<Option<String>> {
        let state = self.state.lock().unwrap();
        let Some(service) = state.services.values().find(|s| s.name == service) else { return Vec::new() };
        service
            .tasks
            .iter()
            .filter(|t| t.stopped.is_none())
            .flat_map(|t| {
                t.containers.iter().filter(|(name, _, _)| name == container).map(|(_, _, digest)| digest.clone())
            })
            .collect()
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

/// Answers `operation` itself, or `None` to pass it to moto unchanged.
fn handle(
    state: &Mutex<State>,
    moto: u16,
    registry: u16,
    auth: &str,
    operation: &str,
    request: &mut Request,
) -> Result<Option<(u16, Vec<u8>)>> {
    let input: Value = serde_json::from_slice(&request.body).unwrap_or_default();
    if let Err((status, body)) = pages::within_limits(operation, &input) {
        return Ok(Some((status, serde_json::to_vec(&body)?)));
    }
    if let Some((field, default)) = pages::paged(operation) {
        let (status, mut output) = match own_tasks(&state.lock().unwrap(), operation, &input) {
            Some(output) => (200, output),
            None => upstream(moto, request)?,
        };
        if status != 200 {
            return Ok(Some((status, serde_json::to_vec(&output)?)));
        }
        let mut items = output[field].as_array_mut().map(std::mem::take).unwrap_or_default();
        pages::order(operation, &input, &mut items);
        let (page, next) = match pages::page(items, &input, default) {
            Ok(paged) => paged,
            Err((status, body)) => return Ok(Some((status, serde_json::to_vec(&body)?))),
        };
        output[field] = Value::Array(page);
        match next {
            Some(token) => output["nextToken"] = token.into(),
            None => _ = output.as_object_mut().map(|o| o.remove("nextToken")),
        }
        return Ok(Some((200, serde_json::to_vec(&output)?)));
    }
    match operation {
        "CreateService" | "UpdateService" | "DescribeServices" => {
            let (status, mut output) = upstream(moto, request)?;
            if status != 200 {
                return Ok(Some((status, serde_json::to_vec(&output)?)));
            }
            let mut state = state.lock().unwrap();
            let State { services, next, .. } = &mut *state;
            let list = if operation == "DescribeServices" {
                output["services"].as_array_mut().map(std::mem::take).unwrap_or_default()
            } else {
                vec![output["service"].take()]
            };
            let mut answered = Vec::new();
            for mut service in list {
                let arn = service["serviceArn"].as_str().unwrap_or_default().to_owned();
                if !services.contains_key(&arn) {
                    let first =
                        new_deployment(next, moto, request, service["taskDefinition"].as_str().unwrap_or_default())?;
                    services.insert(arn.clone(), Service::new(&service, &input, first));
                }
                let known = services.get_mut(&arn).expect("inserted above");
                if operation == "UpdateService" {
                    known.desired = service["desiredCount"].as_i64().unwrap_or(known.desired);
                    known.configure(&input["deploymentConfiguration"]);
                    let primary = known.deployments.first().map(|d| d.task_definition.clone()).unwrap_or_default();
                    let definition = service["taskDefinition"].as_str().unwrap_or_default().to_owned();
                    if input["forceNewDeployment"].as_bool() == Some(true)
                        || (input["taskDefinition"].is_string() && definition != primary)
                    {
                        let deployment = new_deployment(next, moto, request, &definition)?;
                        known.deployments.insert(0, deployment);
                    }
                }
                known.tick(registry, auth, next);
                known.describe(&mut service);
                answered.push(service);
            }
            if operation == "DescribeServices" {
                output["services"] = Value::Array(answered);
            } else {
                output["service"] = answered.pop().unwrap_or_default();
            }
            Ok(Some((200, serde_json::to_vec(&output)?)))
        }
        "DescribeTasks" => {
            let state = state.lock().unwrap();
            let wanted: Vec<&str> = input["tasks"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let ours: Vec<(&Service, &Task)> = state
                .services
                .values()
                .flat_map(|s| s.tasks.iter().map(move |t| (s, t)))
                .filter(|(_, t)| wanted.contains(&t.arn.as_str()))
                .collect();
            if ours.is_empty() {
                return Ok(None);
            }
            let tasks: Vec<Value> = ours.iter().map(|(service, task)| task.describe(service)).collect();
            Ok(Some((200, serde_json::to_vec(&json!({ "tasks": tasks, "failures": [] }))?)))
        }
        _ => Ok(None),
    }
}

/// `ListTasks` of a service the scheduler runs: its tasks, running or (`desiredStatus` STOPPED)
/// stopped; `None` for any other call.
fn own_tasks(state: &State, operation: &str, input: &Value) -> Option<Value> {
    if operation != "ListTasks" {
        return None;
    }
    let name = input["serviceName"].as_str()?;
    let service = state.services.values().find(|s| s.name == name || s.arn == name)?;
    let stopped = input["desiredStatus"].as_str() == Some("STOPPED");
    let arns: Vec<&str> =
        service.tasks.iter().filter(|t| t.stopped.is_some() == stopped).map(|t| t.arn.as_str()).collect();
    Some(json!({ "taskArns": arns }))
}

/// moto's answer to `request`, as JSON.
fn upstream(moto: u16, request: &Request) -> Result<(u16, Value)> {
    let answer = exchange(moto, request)?;
    let (status, body) = parse_answer(&answer).context("moto's answer is not HTTP")?;
    Ok((status, serde_json::from_slice(&body).unwrap_or_default()))
}

/// A deployment of `definition` for `service`, its containers read from moto.
fn new_deployment(next: &mut u64, moto: u16, request: &Request, definition: &str) -> Result<Deployment> {
    let mut describe = Request {
        method: "POST".into(),
        target: "/".into(),
        headers: request
            .headers
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("x-amz-target:"))
            .map(|l| format!("{l}\r\n"))
            .collect::<String>()
            + &format!("X-Amz-Target: {TARGET}DescribeTaskDefinition\r\n"),
        body: Vec::new(),
    };
    describe.body = json!({ "taskDefinition": definition }).to_string().into_bytes();
    let (_, task) = upstream(moto, &describe)?;
    let task = &task["taskDefinition"];
    let containers = task["containerDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| Container {
            name: c["name"].as_str().unwrap_or_default().to_owned(),
            image: c["image"].as_str().unwrap_or_default().to_owned(),
            essential: c["essential"].as_bool().unwrap_or(true),
        })
        .collect();
    let platform = match task["runtimePlatform"]["cpuArchitecture"].as_str() {
        Some("ARM64") => "arm64",
        _ => "amd64",
    };
    *next += 1;
    Ok(Deployment {
        id: format!("ecs-svc/{:019}", 1_000_000_000_000 + *next),
        task_definition: task["taskDefinitionArn"].as_str().unwrap_or(definition).to_owned(),
        containers,
        platform: platform.to_owned(),
        created: now(),
        digests: None,
        broken: None,
        rollout: "IN_PROGRESS",
        reason: "ECS deployment in progress.".to_owned(),
        failed_tasks: 0,
        last_try: None,
        rolls_back: None,
    })
}

impl Service {
    fn new(service: &Value, input: &Value, first: Deployment) -> Service {
        let name = service["serviceName"].as_str().unwrap_or_default().to_owned();
        let mut created = Service {
            arn: service["serviceArn"].as_str().unwrap_or_default().to_owned(),
            cluster: service["clusterArn"].as_str().unwrap_or_default().to_owned(),
            desired: service["desiredCount"].as_i64().unwrap_or(1),
            circuit_breaker: false,
            rollback: false,
            events: Vec::new(),
            name,
            deployments: vec![first],
            tasks: Vec::new(),
        };
        // What the service was created with, where moto's answer does not echo it.
        created.configure(&service["deploymentConfiguration"]);
        created.configure(&input["deploymentConfiguration"]);
        created
    }

    fn configure(&mut self, configuration: &Value) {
        let breaker = &configuration["deploymentCircuitBreaker"];
        if let Some(enable) = breaker["enable"].as_bool() {
            self.circuit_breaker = enable;
            self.rollback = breaker["rollback"].as_bool().unwrap_or(false);
        }
    }

    /// What ECS would have done by now: the primary deployment launches tasks, which run or stop.
    fn tick(&mut self, registry: u16, auth: &str, next: &mut u64) {
        let Some(primary) = self.deployments.first().cloned() else { return };
        if primary.rollout != "IN_PROGRESS" {
            return;
        }
        if primary.last_try.is_some_and(|t| t.elapsed() < RETRY) {
            return;
        }
        let mut deployment = primary;
        deployment.last_try = Some(Instant::now());
        // A rollback runs the digests its target resolved; a new deployment resolves them now.
        if deployment.digests.is_none() {
            match resolve(&deployment, registry, auth) {
                Ok(digests) => deployment.digests = Some(digests),
                Err((container, why)) => {
                    self.fail_task(&mut deployment, next, &container, &why);
                    self.settle(deployment);
                    return;
                }
            }
        }
        if deployment.broken.is_none() {
            deployment.broken = startable(&deployment, registry, auth).err();
        }
        if let Some((container, why)) = deployment.broken.clone().map(|why| split_reason(&why)) {
            self.fail_task(&mut deployment, next, &container, &why);
            self.settle(deployment);
            return;
        }
        // Its tasks run: the old deployments' tasks are stopped and they go.
        let digests = deployment.digests.clone().unwrap_or_default();
        for task in self.tasks.iter_mut().filter(|t| t.stopped.is_none()) {
            task.stopped = Some((now(), format!("Scaling activity initiated by (deployment {})", deployment.id)));
        }
        for _ in 0..self.desired {
            *next += 1;
            self.tasks.push(Task {
                arn: format!("{}/{:032x}", self.cluster.replace(":cluster/", ":task/"), *next),
                deployment: deployment.id.clone(),
                task_definition: deployment.task_definition.clone(),
                containers: deployment
                    .containers
                    .iter()
                    .zip(&digests)
                    .map(|(c, d)| (c.name.clone(), c.image.clone(), d.clone()))
                    .collect(),
                stopped: None,
                started: now(),
                failed: None,
            });
        }
        deployment.rollout = "COMPLETED";
        deployment.reason = format!("ECS deployment {} completed.", deployment.id);
        self.events
            .push((now(), format!("(service {}) (deployment {}) deployment completed.", self.name, deployment.id)));
        self.events.push((now(), format!("(service {}) has reached a steady state.", self.name)));
        self.deployments = vec![deployment];
    }

    /// One task of `deployment` stopped before it ran.
    fn fail_task(&mut self, deployment: &mut Deployment, next: &mut u64, container: &str, why: &str) {
        *next += 1;
        deployment.failed_tasks += 1;
        self.tasks.push(Task {
            arn: format!("{}/{:032x}", self.cluster.replace(":cluster/", ":task/"), *next),
            deployment: deployment.id.clone(),
            task_definition: deployment.task_definition.clone(),
            containers: deployment.containers.iter().map(|c| (c.name.clone(), c.image.clone(), None)).collect(),
            stopped: Some((now(), why.to_owned())),
            started: now(),
            failed: Some((container.to_owned(), why.to_owned())),
        });
        // ECS keeps stopped tasks for about an hour; the newest few are what anyone reads.
        let stopped = self.tasks.iter().filter(|t| t.stopped.is_some()).count();
        if stopped > 20 {
            let oldest = self.tasks.iter().position(|t| t.stopped.is_some()).unwrap_or(0);
            self.tasks.remove(oldest);
        }
        self.events.push((
            now(),
            format!(
                "(service {}) has started 1 tasks: (task {}).",
                self.name,
                self.tasks.last().map(|t| t.arn.as_str()).unwrap_or_default()
            ),
        ));
    }

    /// After a failed task: the circuit breaker fails the deployment once enough have failed, and
    /// with rollback the last COMPLETED deployment comes back.
    fn settle(&mut self, mut deployment: Deployment) {
        let threshold = ((self.desired + 1) / 2).clamp(3, 200);
        if self.circuit_breaker && deployment.failed_tasks >= threshold {
            deployment.rollout = "FAILED";
            deployment.reason = "ECS deployment circuit breaker: tasks failed to start.".to_owned();
            self.events.push((
                now(),
                format!(
                    "(service {}) (deployment {}) deployment failed: tasks failed to start.",
                    self.name, deployment.id
                ),
            ));
            let earlier = self.deployments.iter().skip(1).find(|d| d.rollout == "COMPLETED").cloned();
            if let (true, Some(earlier)) = (self.rollback, earlier) {
                let mut back = earlier.clone();
                back.id = format!("{}-rollback", deployment.id);
                back.rollout = "IN_PROGRESS";
                back.reason = format!("ECS deployment circuit breaker: rolling back to deployment {}.", earlier.id);
                back.created = now();
                back.last_try = None;
                back.rolls_back = Some(earlier.id.clone());
                self.events
                    .push((now(), format!("(service {}) rolling back to deployment {}.", self.name, earlier.id)));
                self.deployments = vec![back, earlier];
                return;
            }
        }
        self.deployments[0] = deployment;
    }

    /// Puts what the scheduler knows into moto's service document.
    fn describe(&self, service: &mut Value) {
        let running = |id: &str| self.tasks.iter().filter(|t| t.stopped.is_none() && t.deployment == id).count() as i64;
        let deployments: Vec<Value> = self
            .deployments
            .iter()
            .enumerate()
            .map(|(n, d)| {
                json!({
                    "id": d.id, "status": if n == 0 { "PRIMARY" } else { "ACTIVE" }, "taskDefinition": d.task_definition,
                    "desiredCount": if n == 0 { self.desired } else { running(&d.id) }, "runningCount": running(&d.id),
                    "pendingCount": if n == 0 { (self.desired - running(&d.id)).max(0) } else { 0 },
                    "failedTasks": d.failed_tasks, "rolloutState": d.rollout, "rolloutStateReason": d.reason,
                    "createdAt": d.created, "updatedAt": now(), "launchType": service["launchType"],
                })
            })
            .collect();
        let total: i64 = self.tasks.iter().filter(|t| t.stopped.is_none()).count() as i64;
        service["runningCount"] = json!(total);
        service["pendingCount"] = json!((self.desired - total).max(0));
        service["desiredCount"] = json!(self.desired);
        if let Some(primary) = self.deployments.first() {
            service["taskDefinition"] = json!(primary.task_definition);
        }
        service["deployments"] = Value::Array(deployments);
        service["events"] = Value::Array(
            self.events
                .iter()
                .rev()
                .take(100)
                .enumerate()
                .map(|(n, (at, message))| json!({ "id": format!("event-{n}"), "createdAt": at, "message": message }))
                .collect(),
        );
    }
}

impl Task {
    fn describe(&self, service: &Service) -> Value {
        let containers: Vec<Value> = self
            .containers
            .iter()
            .map(|(name, image, digest)| {
                let mut container = json!({ "name": name, "image": image, "lastStatus": if self.stopped.is_some() { "STOPPED" } else { "RUNNING" } });
                if let Some(digest) = digest {
                    container["imageDigest"] = json!(digest);
                }
                if let Some((failed, why)) = &self.failed
                    && failed == name
                {
                    container["reason"] = json!(why);
                }
                container
            })
            .collect();
        let mut task = json!({
            "taskArn": self.arn, "clusterArn": service.cluster, "taskDefinitionArn": self.task_definition,
            "group": format!("service:{}", service.name), "startedBy": self.deployment,
            "lastStatus": if self.stopped.is_some() { "STOPPED" } else { "RUNNING" },
            "desiredStatus": if self.stopped.is_some() { "STOPPED" } else { "RUNNING" },
            "createdAt": self.started, "containers": containers,
        });
        if let Some((at, why)) = &self.stopped {
            task["stoppedAt"] = json!(at);
            task["stoppedReason"] = json!(why);
            task["stopCode"] =
                json!(if self.failed.is_some() { "TaskFailedToStart" } else { "ServiceSchedulerInitiated" });
        } else {
            task["startedAt"] = json!(self.started);
        }
        task
    }
}

/// `container: why` back into its parts.
fn split_reason(text: &str) -> (String, String) {
    match text.split_once('\u{1f}') {
        Some((container, why)) => (container.to_owned(), why.to_owned()),
        None => (String::new(), text.to_owned()),
    }
}

/// The repository and tag (or digest) of an image in this account's ECR, or None for another
/// registry's image.
fn ecr_reference(image: &str) -> Option<(String, String)> {
    let (host, rest) = image.split_once('/')?;
    if !host.contains(".dkr.ecr.") {
        return None;
    }
    if let Some((repository, digest)) = rest.split_once('@') {
        return Some((repository.to_owned(), digest.to_owned()));
    }
    match rest.rsplit_once(':') {
        Some((repository, tag)) => Some((repository.to_owned(), tag.to_owned())),
        None => Some((rest.to_owned(), "latest".to_owned())),
    }
}

/// Each container's digest, or the first that does not resolve and ECS's stopped reason for it.
fn resolve(deployment: &Deployment, registry: u16, auth: &str) -> Result<Vec<Option<String>>, (String, String)> {
    let mut digests = Vec::new();
    for container in &deployment.containers {
        let Some((repository, reference)) = ecr_reference(&container.image) else {
            digests.push(None);
            continue;
        };
        match get(registry, &format!("/v2/{repository}/manifests/{reference}"), auth) {
            Some((200, digest, _)) => digests.push(Some(digest)),
            _ => {
                let why = format!(
                    "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref {}: not found",
                    container.image
                );
                if container.essential {
                    return Err((container.name.clone(), why));
                }
                digests.push(None);
            }
        }
    }
    Ok(digests)
}

/// Whether every essential container's image can start on the deployment's platform: the
/// platform is in its index, and its config has an entry point or a command.
fn startable(deployment: &Deployment, registry: u16, auth: &str) -> Result<(), String> {
    let digests = deployment.digests.clone().unwrap_or_default();
    for (container, digest) in deployment.containers.iter().zip(digests) {
        let (Some(digest), Some((repository, _))) = (digest, ecr_reference(&container.image)) else { continue };
        if !container.essential {
            continue;
        }
        let fail = |why: String| Err(format!("{}\u{1f}{why}", container.name));
        let Some((_, _, manifest)) = get(registry, &format!("/v2/{repository}/manifests/{digest}"), auth) else {
            return fail(format!("CannotPullContainerError: {} could not be read", container.image));
        };
        let manifest: Value = serde_json::from_slice(&manifest).unwrap_or_default();
        let manifest = match manifest["manifests"].as_array() {
            Some(entries) => {
                let Some(entry) =
                    entries.iter().find(|m| m["platform"]["architecture"] == deployment.platform.as_str())
                else {
                    return fail(format!(
                        "CannotPullContainerError: image Manifest does not contain descriptor matching platform 'linux/{}'",
                        deployment.platform
                    ));
                };
                let child = entry["digest"].as_str().unwrap_or_default();
                match get(registry, &format!("/v2/{repository}/manifests/{child}"), auth) {
                    Some((200, _, body)) => serde_json::from_slice(&body).unwrap_or_default(),
                    _ => return fail(format!("CannotPullContainerError: {} could not be read", container.image)),
                }
            }
            None => manifest,
        };
        let config = manifest["config"]["digest"].as_str().unwrap_or_default();
        let Some((200, _, config)) = get(registry, &format!("/v2/{repository}/blobs/{config}"), auth) else {
            return fail(format!("CannotPullContainerError: {} has no config", container.image));
        };
        let config: Value = serde_json::from_slice(&config).unwrap_or_default();
        let runs = |key: &str| config["config"][key].as_array().is_some_and(|a| !a.is_empty());
        if !runs("Entrypoint") && !runs("Cmd") {
            return fail("CannotStartContainerError: Error response from daemon: no command specified".to_owned());
        }
    }
    Ok(())
}

/// GET from the test registry: status, `Docker-Content-Digest`, body.
fn get(port: u16, path: &str, auth: &str) -> Option<(u16, String, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
                  application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {auth}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let (status, body) = parse_answer(&answer)?;
    let digest = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case("docker-content-digest"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    Some((status, digest, body))
}
