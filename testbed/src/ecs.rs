//! ECS's scheduler, as far as the tests need it, in front of moto's ECS: moto stores clusters,
//! services and task definitions, but never starts a task (its services stay at 0 running), knows
//! no image digests, and has none of the service-deployment calls. This proxy adds what the real
//! service does with a deployment, after AWS's documentation:
//! - "Software version consistency" (ECS developer guide, "Container image resolution"): when a
//!   deployment starts, each container's image tag is resolved to a digest, once; its tasks run
//!   that digest, and `DescribeTasks` reports it as the container's `imageDigest`. A tag that does
//!   not resolve yet is tried again with each task ECS launches, as it retries the pull.
//! - "Task lifecycle": a task a deployment launches is PENDING (no `imageDigest` yet) for
//!   `PENDING_FOR` before it is RUNNING; the service counts it in `pendingCount`.
//! - A task whose image cannot be pulled stops with `CannotPullContainerError: pull image manifest
//!   has been retried 5 time(s): failed to resolve ref ...: not found`; one whose image has no
//!   entry point or command stops with `CannotStartContainerError` ("Stopped tasks errors").
//!   Whether a started image passes its health checks is not judged here: `verify` runs images
//!   under their definitions for that.
//! - The deployment circuit breaker ("Deployment circuit breaker"): a deployment fails after
//!   max(3, min(200, ceil(desired / 2))) failed tasks. With `rollback`, the last COMPLETED
//!   deployment becomes PRIMARY again and IN_PROGRESS ("rolling back to deploymentId ...") with
//!   that deployment's task definition and digests, beside the FAILED one, until it is COMPLETED
//!   alone. A rolling update keeps the old deployment's tasks running until the new one has its own.
//! - "Service deployments" and "Service revisions" (ECS developer guide; the API reference's
//!   `ListServiceDeployments`, `DescribeServiceDeployments`, `DescribeServiceRevisions`,
//!   `StopServiceDeployment`): each deployment is one service deployment moving a service from its
//!   source revisions to a target revision; each revision records the digest each container's
//!   image resolved to (`containerImages[].imageDigest`). "Amazon ECS doesn't create a new service
//!   revision for a rollback": the failed service deployment itself goes ROLLBACK_IN_PROGRESS,
//!   then ROLLBACK_SUCCESSFUL, with `rollback.serviceRevisionArn` the revision it returned to. One
//!   the circuit breaker fails with rollback off is STOPPED (the API names no other status for it),
//!   and the service stays on the FAILED deployment. `StopServiceDeployment` (ROLLBACK) rolls an
//!   IN_PROGRESS one back the same way; a finished one answers `ConflictException`. The service
//!   names its `currentServiceDeployment` and `currentServiceRevisions`. The order
//!   `ListServiceDeployments` lists in is not documented: newest first here.
//! - Deployment controllers and strategies (`UpdateService`, "Amazon ECS blue/green
//!   deployments"): a `CODE_DEPLOY` or `EXTERNAL` service refuses `forceNewDeployment` and a new
//!   task definition with `InvalidParameterException` (CodeDeploy's message as AWS sends it; the
//!   EXTERNAL wording is not documented and follows it). An ECS `BLUE_GREEN` deployment, once its
//!   tasks run, shifts traffic and then keeps both revisions running through `bakeTimeInMinutes`
//!   (lifecycle stage BAKE_TIME) before CLEAN_UP stops the old tasks. A minute of bake time lasts
//!   `MINUTE` here.
//! - `DeleteService`: the service is DRAINING while its tasks stop, then INACTIVE ("DeleteService");
//!   `UpdateService` on either answers `ServiceNotActiveException: Service was not ACTIVE.`
//! - `DescribeServices` gives `runningCount`, `pendingCount`, `deployments` (PRIMARY and ACTIVE,
//!   each with its `rolloutState`) and `events` with ECS's wording; `UpdateService` with
//!   `forceNewDeployment` or a new task definition starts a deployment; `ListTasks` and
//!   `DescribeTasks` list a service's tasks, running and stopped. A service is named within its
//!   cluster (`cluster`, `default` when not given).
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
use crate::pages::{self, Refused};

const TARGET: &str = "AmazonEC2ContainerServiceV20141113.";
/// How often a deployment that cannot start its tasks launches another.
const RETRY: Duration = Duration::from_millis(700);
/// How long a launched task is PENDING before it runs, unless a test sets it (`slow_pulls`).
const PENDING_FOR: Duration = Duration::from_millis(500);
/// How long a minute of blue/green bake time lasts in the test bed.
const MINUTE: Duration = Duration::from_secs(1);
/// How long a deleted service is DRAINING before it is INACTIVE.
const DRAINING_FOR: Duration = Duration::from_secs(2);

/// moto's ECS with the scheduler on top; every other call passes through unchanged.
pub struct Scheduler {
    proxy: HttpProxy,
    state: Arc<Mutex<State>>,
}

struct State {
    services: HashMap<String, Service>,
    next: u64,
    /// Every ECS operation asked, in order.
    operations: Vec<String>,
    /// How long tasks launched from now on are PENDING.
    pending_for: Duration,
    /// The names of services ECS has purged: gone from every answer.
    purged: Vec<String>,
}

struct Service {
    arn: String,
    name: String,
    cluster: String,
    desired: i64,
    circuit_breaker: bool,
    rollback: bool,
    /// `deploymentController.type`: ECS, CODE_DEPLOY or EXTERNAL.
    controller: String,
    /// `deploymentConfiguration.strategy`: ROLLING or BLUE_GREEN.
    strategy: String,
    bake_minutes: u32,
    /// ACTIVE, DRAINING or INACTIVE, and when it was deleted.
    status: &'static str,
    deleted: Option<Instant>,
    /// As `DescribeServices` lists them: PRIMARY first.
    deployments: Vec<Deployment>,
    /// Every service deployment, oldest first.
    records: Vec<Record>,
    /// Every service revision, oldest first.
    revisions: Vec<Revision>,
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
    /// Its service deployment and the service revision it deploys.
    record: String,
    revision: String,
    /// When a blue/green deployment's bake time began.
    baking: Option<Instant>,
}

#[derive(Clone)]
struct Container {
    name: String,
    image: String,
    essential: bool,
}

/// A service revision: what one deployment runs, and the digests its images resolved to.
struct Revision {
    arn: String,
    task_definition: String,
    created: f64,
    /// (container name, image, digest once resolved)
    images: Vec<(String, String, Option<String>)>,
}

/// A service deployment, as `DescribeServiceDeployments` gives it.
struct Record {
    arn: String,
    status: &'static str,
    reason: String,
    target: String,
    sources: Vec<String>,
    created: f64,
    finished: Option<f64>,
    /// (reason, started, the revision it returns to)
    rollback: Option<(String, f64, String)>,
    /// The blue/green lifecycle stage; None for a rolling one.
    stage: Option<&'static str>,
    failures: i64,
    threshold: i64,
}

struct Task {
    arn: String,
    deployment: String,
    task_definition: String,
    /// (name, image, digest)
    containers: Vec<(String, String, Option<String>)>,
    stopped: Option<(f64, String)>,
    started: f64,
    /// When it runs; before that it is PENDING.
    runs_from: Instant,
    /// The container that could not start, and why.
    failed: Option<(String, String)>,
}

impl Task {
    fn pending(&self) -> bool {
        self.stopped.is_none() && Instant::now() < self.runs_from
    }

    fn running(&self) -> bool {
        self.stopped.is_none() && !self.pending()
    }
}

impl Scheduler {
    /// In front of moto on `moto_port`, judging images in the registry on `registry_port` with the
    /// registry's `user` and `password`.
    pub fn start(moto_port: u16, registry_port: u16, user: &str, password: &str) -> Result<Scheduler> {
        let state = Arc::new(Mutex::new(State {
            services: HashMap::new(),
            next: 0,
            operations: Vec::new(),
            pending_for: PENDING_FOR,
            purged: Vec::new(),
        }));
        let shared = state.clone();
        let auth = crate::basic_auth(user, password);
        let proxy = HttpProxy::start(moto_port, move |request| {
            let Some(operation) =
                request.header("x-amz-target").and_then(|t| t.strip_prefix(TARGET)).map(str::to_owned)
            else {
                return Verdict::Forward;
            };
            shared.lock().unwrap().operations.push(operation.clone());
            let answer = |status: u16, body: Vec<u8>| Verdict::Respond {
                status,
                headers: vec![
                    ("Content-Type".into(), "application/x-amz-json-1.1".into()),
                    ("x-amzn-RequestId".into(), "scheduler".into()),
                ],
                body,
            };
            match handle(&shared, moto_port, registry_port, &auth, &operation, request) {
                Ok(Some((status, body))) => answer(status, body),
                Ok(None) => Verdict::Forward,
                Err(error) => answer(
                    500,
                    json!({ "__type": "ServerException", "message": format!("testbed scheduler: {error:#}") })
                        .to_string()
                        .into_bytes(),
                ),
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

    /// The digest each task of `service` that is not stopped runs for `container`.
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

    /// Tasks launched from now on stay PENDING for `pending` (a slow image pull, a large image).
    pub fn slow_pulls(&self, pending: Duration) {
        self.state.lock().unwrap().pending_for = pending;
    }

    /// ECS purges `service` (by name), as it may an INACTIVE one ("DeleteService": "INACTIVE
    /// services may be cleaned up and purged"): `DescribeServices` answers it MISSING in
    /// `failures`, and `ListServices` no longer lists it. What a stack or a user still names then
    /// does not exist.
    pub fn purge(&self, service: &str) {
        let mut state = self.state.lock().unwrap();
        state.services.retain(|_, s| s.name != service);
        state.purged.push(service.to_owned());
    }

    /// The status of each service deployment of `service`, oldest first.
    pub fn deployment_statuses(&self, service: &str) -> Vec<String> {
        let state = self.state.lock().unwrap();
        let Some(service) = state.services.values().find(|s| s.name == service) else { return Vec::new() };
        service.records.iter().map(|r| r.status.to_owned()).collect()
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

fn error(status: u16, kind: &str, message: &str) -> Refused {
    (status, json!({ "__type": kind, "message": message }))
}

fn answer(result: std::result::Result<Value, Refused>) -> Result<Option<(u16, Vec<u8>)>> {
    let (status, body) = result.map(|body| (200, body)).unwrap_or_else(|refused| refused);
    Ok(Some((status, serde_json::to_vec(&body)?)))
}

/// Whether `service` is the one `input` names (`service` or `serviceName`, by name or ARN) in
/// the cluster it names (by name or ARN; `default` when it names none).
fn named(service: &Service, input: &Value, field: &str) -> bool {
    let Some(wanted) = input[field].as_str() else { return false };
    let cluster = input["cluster"].as_str().unwrap_or("default");
    let cluster_name = service.cluster.rsplit('/').next().unwrap_or_default();
    (service.name == wanted || service.arn == wanted) && (cluster == service.cluster || cluster == cluster_name)
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
    if let Err(refused) = pages::within_limits(operation, &input) {
        return answer(Err(refused));
    }
    // ECS goes on whoever asks: every call sees what it has done by now.
    {
        let mut state = state.lock().unwrap();
        let State { services, next, pending_for, .. } = &mut *state;
        for service in services.values_mut() {
            service.tick(registry, auth, next, *pending_for);
        }
    }
    if let Some((field, default)) = pages::paged(operation) {
        let own = own_list(&state.lock().unwrap(), operation, &input);
        let (status, mut output) = match own {
            Some(Ok(output)) => (200, output),
            Some(Err(refused)) => return answer(Err(refused)),
            None => upstream(moto, request)?,
        };
        if status != 200 {
            return Ok(Some((status, serde_json::to_vec(&output)?)));
        }
        let mut items = output[field].as_array_mut().map(std::mem::take).unwrap_or_default();
        let purged = state.lock().unwrap().purged.clone();
        items.retain(|item| !item.as_str().is_some_and(|arn| is_purged(&purged, arn)));
        pages::order(operation, &input, &mut items);
        let (page, next) = match pages::page(items, &input, default) {
            Ok(paged) => paged,
            Err(refused) => return answer(Err(refused)),
        };
        output[field] = Value::Array(page);
        match next {
            Some(token) => output["nextToken"] = token.into(),
            None => _ = output.as_object_mut().map(|o| o.remove("nextToken")),
        }
        return Ok(Some((200, serde_json::to_vec(&output)?)));
    }
    match operation {
        "UpdateService" => {
            if let Some(refused) = refuse_update(&state.lock().unwrap(), &input) {
                return answer(Err(refused));
            }
            services_answer(state, moto, registry, auth, operation, request, &input)
        }
        "CreateService" | "DescribeServices" => {
            services_answer(state, moto, registry, auth, operation, request, &input)
        }
        "DeleteService" => {
            let (status, output) = upstream(moto, request)?;
            if status == 200 {
                let mut state = state.lock().unwrap();
                let arn = output["service"]["serviceArn"].as_str().unwrap_or_default();
                if let Some(service) = state.services.get_mut(arn) {
                    service.delete();
                }
            }
            Ok(Some((status, serde_json::to_vec(&output)?)))
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
            answer(Ok(json!({ "tasks": tasks, "failures": [] })))
        }
        "DescribeServiceDeployments" => answer(Ok(describe_by_arn(
            &state.lock().unwrap(),
            &input["serviceDeploymentArns"],
            "serviceDeployments",
            |service, arn| service.records.iter().find(|r| r.arn == arn).map(|r| r.describe(service)),
        ))),
        "DescribeServiceRevisions" => answer(Ok(describe_by_arn(
            &state.lock().unwrap(),
            &input["serviceRevisionArns"],
            "serviceRevisions",
            |service, arn| service.revisions.iter().find(|r| r.arn == arn).map(|r| r.describe(service)),
        ))),
        "StopServiceDeployment" => {
            let mut state = state.lock().unwrap();
            let arn = input["serviceDeploymentArn"].as_str().unwrap_or_default().to_owned();
            let Some(service) = state.services.values_mut().find(|s| s.records.iter().any(|r| r.arn == arn)) else {
                return answer(Err(error(400, "ServiceDeploymentNotFoundException", "Service deployment not found.")));
            };
            answer(
                service
                    .stop(&arn, input["stopType"].as_str().unwrap_or("ROLLBACK"))
                    .map(|()| json!({ "serviceDeploymentArn": arn })),
            )
        }
        _ => Ok(None),
    }
}

/// A Describe call's answer for `arns`: under `field` what `find` finds in some service, and a
/// MISSING failure for each ARN it does not.
fn describe_by_arn(state: &State, arns: &Value, field: &str, find: impl Fn(&Service, &str) -> Option<Value>) -> Value {
    let (mut found, mut failures) = (Vec::new(), Vec::new());
    for arn in arns.as_array().into_iter().flatten().filter_map(Value::as_str) {
        match state.services.values().find_map(|service| find(service, arn)) {
            Some(described) => found.push(described),
            None => failures.push(json!({ "arn": arn, "reason": "MISSING" })),
        }
    }
    json!({ field: found, "failures": failures })
}

/// `UpdateService` refused as AWS refuses it: on a service that is not ACTIVE, and a new
/// deployment of a service whose deployments are CodeDeploy's or an external controller's.
fn refuse_update(state: &State, input: &Value) -> Option<Refused> {
    let service = state.services.values().find(|s| named(s, input, "service"))?;
    if service.status != "ACTIVE" {
        return Some(error(400, "ServiceNotActiveException", "Service was not ACTIVE."));
    }
    let deploys = input["forceNewDeployment"].as_bool() == Some(true) || input["taskDefinition"].is_string();
    match service.controller.as_str() {
        "CODE_DEPLOY" if deploys => Some(error(
            400,
            "InvalidParameterException",
            "Unable to update task definition on services with a CODE_DEPLOY deployment controller. Use AWS CodeDeploy to trigger a new deployment.",
        )),
        "EXTERNAL" if deploys => Some(error(
            400,
            "InvalidParameterException",
            "Unable to update task definition on services with an EXTERNAL deployment controller. Use task sets to deploy a new task definition.",
        )),
        _ => None,
    }
}

/// `CreateService`, `UpdateService` and `DescribeServices`: moto's answer, with what the scheduler
/// knows of each service put in.
fn services_answer(
    state: &Mutex<State>,
    moto: u16,
    registry: u16,
    auth: &str,
    operation: &str,
    request: &Request,
    input: &Value,
) -> Result<Option<(u16, Vec<u8>)>> {
    let (status, mut output) = upstream(moto, request)?;
    if status != 200 {
        return Ok(Some((status, serde_json::to_vec(&output)?)));
    }
    let mut state = state.lock().unwrap();
    let State { services, next, pending_for, purged, .. } = &mut *state;
    let mut list = if operation == "DescribeServices" {
        output["services"].as_array_mut().map(std::mem::take).unwrap_or_default()
    } else {
        vec![output["service"].take()]
    };
    if operation == "DescribeServices" {
        let gone: Vec<Value> = list
            .iter()
            .filter_map(|s| s["serviceArn"].as_str())
            .filter(|arn| is_purged(purged, arn))
            .map(|arn| json!({ "arn": arn, "reason": "MISSING" }))
            .collect();
        list.retain(|s| !s["serviceArn"].as_str().is_some_and(|arn| is_purged(purged, arn)));
        if let Some(failures) = output["failures"].as_array_mut() {
            failures.extend(gone);
        } else {
            output["failures"] = Value::Array(gone);
        }
    }
    let mut answered = Vec::new();
    for mut service in list {
        let arn = service["serviceArn"].as_str().unwrap_or_default().to_owned();
        if !services.contains_key(&arn) {
            let first = new_deployment(next, moto, request, service["taskDefinition"].as_str().unwrap_or_default())?;
            services.insert(arn.clone(), Service::new(&service, input, first, next));
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
                known.start(deployment, next);
            }
        }
        known.tick(registry, auth, next, *pending_for);
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

/// Whether the service `arn` names is one ECS purged.
fn is_purged(purged: &[String], arn: &str) -> bool {
    arn.contains(":service/") && purged.iter().any(|name| arn.rsplit('/').next() == Some(name.as_str()))
}

/// The list calls the scheduler answers itself: `ListTasks` of a service it runs, and
/// `ListServiceDeployments`; `None` for the rest, which moto answers.
fn own_list(state: &State, operation: &str, input: &Value) -> Option<std::result::Result<Value, Refused>> {
    match operation {
        "ListTasks" => {
            input["serviceName"].as_str()?;
            let service = state.services.values().find(|s| named(s, input, "serviceName"))?;
            let stopped = input["desiredStatus"].as_str() == Some("STOPPED");
            let arns: Vec<&str> =
                service.tasks.iter().filter(|t| t.stopped.is_some() == stopped).map(|t| t.arn.as_str()).collect();
            Some(Ok(json!({ "taskArns": arns })))
        }
        "ListServiceDeployments" => {
            let Some(service) = state.services.values().find(|s| named(s, input, "service")) else {
                return Some(Err(error(400, "ServiceNotFoundException", "Service not found.")));
            };
            let statuses: Vec<&str> =
                input["status"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let (after, before) = (input["createdAt"]["after"].as_f64(), input["createdAt"]["before"].as_f64());
            let briefs: Vec<Value> = service
                .records
                .iter()
                .rev()
                .filter(|r| statuses.is_empty() || statuses.contains(&r.status))
                .filter(|r| after.is_none_or(|t| r.created >= t) && before.is_none_or(|t| r.created <= t))
                .map(|r| r.brief(service))
                .collect();
            Some(Ok(json!({ "serviceDeployments": briefs })))
        }
        _ => None,
    }
}

/// moto's answer to `request`, as JSON.
fn upstream(moto: u16, request: &Request) -> Result<(u16, Value)> {
    let answer = exchange(moto, request)?;
    let (status, body) = parse_answer(&answer).context("moto's answer is not HTTP")?;
    Ok((status, serde_json::from_slice(&body).unwrap_or_default()))
}

/// A deployment of `definition`, its containers read from moto.
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
        record: String::new(),
        revision: String::new(),
        baking: None,
    })
}

impl Service {
    fn new(service: &Value, input: &Value, first: Deployment, next: &mut u64) -> Service {
        let name = service["serviceName"].as_str().unwrap_or_default().to_owned();
        let mut created = Service {
            arn: service["serviceArn"].as_str().unwrap_or_default().to_owned(),
            cluster: service["clusterArn"].as_str().unwrap_or_default().to_owned(),
            desired: service["desiredCount"].as_i64().unwrap_or(1),
            circuit_breaker: false,
            rollback: false,
            controller: input["deploymentController"]["type"].as_str().unwrap_or("ECS").to_owned(),
            strategy: "ROLLING".to_owned(),
            bake_minutes: 0,
            status: "ACTIVE",
            deleted: None,
            events: Vec::new(),
            name,
            deployments: Vec::new(),
            records: Vec::new(),
            revisions: Vec::new(),
            tasks: Vec::new(),
        };
        // What the service was created with, where moto's answer does not echo it.
        created.configure(&service["deploymentConfiguration"]);
        created.configure(&input["deploymentConfiguration"]);
        created.start(first, next);
        created
    }

    fn configure(&mut self, configuration: &Value) {
        let breaker = &configuration["deploymentCircuitBreaker"];
        if let Some(enable) = breaker["enable"].as_bool() {
            self.circuit_breaker = enable;
            self.rollback = breaker["rollback"].as_bool().unwrap_or(false);
        }
        if let Some(strategy) = configuration["strategy"].as_str() {
            self.strategy = strategy.to_owned();
        }
        if let Some(minutes) = configuration["bakeTimeInMinutes"].as_u64() {
            self.bake_minutes = minutes as u32;
        }
    }

    /// A new deployment: its service revision and its service deployment, from the revisions
    /// that run now to it.
    fn start(&mut self, mut deployment: Deployment, next: &mut u64) {
        let cluster = self.cluster.rsplit('/').next().unwrap_or_default().to_owned();
        let base = self.arn.split(":service/").next().unwrap_or_default().to_owned();
        *next += 1;
        let revision =
            format!("{base}:service-revision/{cluster}/{}/{:019}", self.name, 4_000_000_000_000_000_000 + *next);
        let record = format!("{base}:service-deployment/{cluster}/{}/{}", self.name, deployment_id(*next));
        self.revisions.push(Revision {
            arn: revision.clone(),
            task_definition: deployment.task_definition.clone(),
            created: now(),
            images: deployment.containers.iter().map(|c| (c.name.clone(), c.image.clone(), None)).collect(),
        });
        let sources: Vec<String> = self.current_revisions().into_iter().map(|(arn, ..)| arn).collect();
        for older in self.records.iter_mut().filter(|r| matches!(r.status, "PENDING" | "IN_PROGRESS")) {
            older.status = "STOPPED";
            older.reason = "Stopped: a newer service deployment replaced it.".to_owned();
            older.finished = Some(now());
        }
        self.records.push(Record {
            arn: record.clone(),
            status: "IN_PROGRESS",
            reason: String::new(),
            target: revision.clone(),
            sources,
            created: now(),
            finished: None,
            rollback: None,
            stage: (self.strategy == "BLUE_GREEN").then_some("SCALE_UP"),
            failures: 0,
            threshold: ((self.desired + 1) / 2).clamp(3, 200),
        });
        deployment.record = record;
        deployment.revision = revision;
        self.deployments.insert(0, deployment);
    }

    fn record(&mut self, arn: &str) -> Option<&mut Record> {
        self.records.iter_mut().find(|r| r.arn == arn)
    }

    /// The revisions that run tasks or are being deployed: (arn, requested, running, pending).
    fn current_revisions(&self) -> Vec<(String, i64, i64, i64)> {
        let mut current: Vec<(String, i64, i64, i64)> = Vec::new();
        for (n, deployment) in self.deployments.iter().enumerate() {
            let tasks = self.tasks.iter().filter(|t| t.deployment == deployment.id);
            let running = tasks.clone().filter(|t| t.running()).count() as i64;
            let pending = tasks.filter(|t| t.pending()).count() as i64;
            if (n == 0 || running + pending > 0) && !current.iter().any(|(arn, ..)| *arn == deployment.revision) {
                let requested = if n == 0 { self.desired } else { running + pending };
                current.push((deployment.revision.clone(), requested, running, pending));
            }
        }
        current
    }

    fn delete(&mut self) {
        self.status = "DRAINING";
        self.deleted = Some(Instant::now());
        self.desired = 0;
        for task in self.tasks.iter_mut().filter(|t| t.stopped.is_none()) {
            task.stopped = Some((now(), "Service deleted".to_owned()));
        }
        self.events.push((now(), format!("(service {}) has begun draining connections on 1 tasks.", self.name)));
    }

    /// `StopServiceDeployment`: an unfinished one rolls back to the last successful revision (or,
    /// with ABORT or none to return to, stops where it is); a finished one is a conflict.
    fn stop(&mut self, arn: &str, stop_type: &str) -> std::result::Result<(), Refused> {
        let status = self.records.iter().find(|r| r.arn == arn).map(|r| r.status).unwrap_or_default();
        match status {
            "PENDING" | "IN_PROGRESS" => {}
            "STOP_REQUESTED" | "ROLLBACK_REQUESTED" | "ROLLBACK_IN_PROGRESS" => return Ok(()),
            _ => {
                return Err(error(
                    400,
                    "ConflictException",
                    &format!("The service deployment {arn} is {status} and cannot be stopped."),
                ));
            }
        }
        let Some(position) = self.deployments.iter().position(|d| d.record == arn) else { return Ok(()) };
        let mut deployment = self.deployments.remove(position);
        deployment.rollout = "FAILED";
        deployment.reason = "ECS deployment stopped by a StopServiceDeployment request.".to_owned();
        if stop_type == "ROLLBACK" && self.roll_back(deployment.clone(), "Stopped by a StopServiceDeployment request.")
        {
            return Ok(());
        }
        if let Some(record) = self.record(arn) {
            record.status = "STOPPED";
            record.reason = "Stopped by a StopServiceDeployment request.".to_owned();
            record.finished = Some(now());
        }
        self.deployments.insert(position, deployment);
        Ok(())
    }

    /// Puts the last COMPLETED deployment back as PRIMARY, IN_PROGRESS, beside `failed`; false
    /// when there is none to return to.
    fn roll_back(&mut self, failed: Deployment, why: &str) -> bool {
        let Some(earlier) = self.deployments.iter().find(|d| d.rollout == "COMPLETED").cloned() else {
            return false;
        };
        let mut back = earlier.clone();
        back.rollout = "IN_PROGRESS";
        back.reason = format!("ECS deployment circuit breaker: rolling back to deploymentId {}.", earlier.id);
        back.last_try = None;
        back.rolls_back = Some(earlier.id.clone());
        back.record = failed.record.clone();
        if let Some(record) = self.record(&failed.record) {
            record.status = "ROLLBACK_IN_PROGRESS";
            record.reason = why.to_owned();
            record.rollback = Some((why.to_owned(), now(), earlier.revision.clone()));
        }
        self.events.push((now(), format!("(service {}) rolling back to deployment {}.", self.name, earlier.id)));
        self.deployments = vec![back, failed];
        true
    }

    /// What ECS would have done by now: the primary deployment launches tasks, which start,
    /// run or stop; a blue/green one bakes before the old tasks go.
    fn tick(&mut self, registry: u16, auth: &str, next: &mut u64, pending_for: Duration) {
        if self.status == "DRAINING" && self.deleted.is_some_and(|at| at.elapsed() >= DRAINING_FOR) {
            self.status = "INACTIVE";
        }
        if self.status != "ACTIVE" {
            return;
        }
        let Some(primary) = self.deployments.first().cloned() else { return };
        if primary.rollout == "COMPLETED" {
            self.scale(&primary, next, pending_for);
        }
        if primary.rollout != "IN_PROGRESS" {
            return;
        }
        let mut deployment = primary;
        let launched: Vec<&Task> =
            self.tasks.iter().filter(|t| t.stopped.is_none() && t.deployment == deployment.id).collect();
        if (launched.len() as i64 >= self.desired && self.desired > 0)
            || (self.desired == 0 && deployment.digests.is_some())
        {
            if launched.iter().any(|t| t.pending()) {
                return;
            }
            if self.strategy == "BLUE_GREEN" && deployment.rolls_back.is_none() {
                let baking = *deployment.baking.get_or_insert_with(Instant::now);
                if let Some(record) = self.record(&deployment.record) {
                    record.stage = Some("BAKE_TIME");
                }
                self.deployments[0].baking = Some(baking);
                if baking.elapsed() < MINUTE * self.bake_minutes {
                    return;
                }
            }
            self.complete(deployment);
            return;
        }
        if deployment.last_try.is_some_and(|t| t.elapsed() < RETRY) {
            return;
        }
        deployment.last_try = Some(Instant::now());
        // A rollback runs the digests its target resolved; a new deployment resolves them now.
        if deployment.digests.is_none() {
            match resolve(&deployment, registry, auth) {
                Ok(digests) => {
                    let revision = deployment.revision.clone();
                    if let Some(revision) = self.revisions.iter_mut().find(|r| r.arn == revision) {
                        for ((_, _, digest), resolved) in revision.images.iter_mut().zip(&digests) {
                            digest.clone_from(resolved);
                        }
                    }
                    deployment.digests = Some(digests);
                }
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
        // Its tasks start, PENDING at first; the old deployments' tasks run until they do.
        let have = launched.len() as i64;
        self.launch(&deployment, self.desired - have, next, pending_for);
        self.events.push((now(), format!("(service {}) has started {} tasks.", self.name, self.desired - have)));
        self.deployments[0] = deployment;
    }

    /// A steady service whose desired count changed: tasks stop, or start from the digests its
    /// deployment resolved (not the tag's digest now).
    fn scale(&mut self, deployment: &Deployment, next: &mut u64, pending_for: Duration) {
        let live: Vec<usize> = (0..self.tasks.len()).filter(|&n| self.tasks[n].stopped.is_none()).collect();
        for &n in live.iter().skip(self.desired.max(0) as usize) {
            self.tasks[n].stopped =
                Some((now(), format!("Scaling activity initiated by (deployment {})", deployment.id)));
        }
        self.launch(deployment, self.desired - live.len() as i64, next, pending_for);
    }

    /// `count` tasks of `deployment`, PENDING for `pending_for`, running the digests it resolved.
    fn launch(&mut self, deployment: &Deployment, count: i64, next: &mut u64, pending_for: Duration) {
        let digests = deployment.digests.clone().unwrap_or_default();
        for _ in 0..count {
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
                runs_from: Instant::now() + pending_for,
                failed: None,
            });
        }
    }

    /// The primary deployment's tasks all run (and a blue/green one has baked): the old tasks stop
    /// and the old deployments go.
    fn complete(&mut self, mut deployment: Deployment) {
        for task in self.tasks.iter_mut().filter(|t| t.stopped.is_none() && t.deployment != deployment.id) {
            task.stopped = Some((now(), format!("Scaling activity initiated by (deployment {})", deployment.id)));
        }
        deployment.rollout = "COMPLETED";
        deployment.reason = format!("ECS deployment {} completed.", deployment.id);
        let rolled_back = deployment.rolls_back.take().is_some();
        if let Some(record) = self.record(&deployment.record) {
            record.status = if rolled_back { "ROLLBACK_SUCCESSFUL" } else { "SUCCESSFUL" };
            record.finished = Some(now());
            record.stage = record.stage.map(|_| "CLEAN_UP");
        }
        self.events
            .push((now(), format!("(service {}) (deployment {}) deployment completed.", self.name, deployment.id)));
        self.events.push((now(), format!("(service {}) has reached a steady state.", self.name)));
        self.deployments = vec![deployment];
    }

    /// One task of `deployment` stopped before it ran.
    fn fail_task(&mut self, deployment: &mut Deployment, next: &mut u64, container: &str, why: &str) {
        *next += 1;
        deployment.failed_tasks += 1;
        let failed = deployment.failed_tasks;
        if let Some(record) = self.record(&deployment.record) {
            record.failures = failed;
        }
        self.tasks.push(Task {
            arn: format!("{}/{:032x}", self.cluster.replace(":cluster/", ":task/"), *next),
            deployment: deployment.id.clone(),
            task_definition: deployment.task_definition.clone(),
            containers: deployment.containers.iter().map(|c| (c.name.clone(), c.image.clone(), None)).collect(),
            stopped: Some((now(), why.to_owned())),
            started: now(),
            runs_from: Instant::now(),
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
        if !(self.circuit_breaker && deployment.failed_tasks >= threshold) {
            self.deployments[0] = deployment;
            return;
        }
        deployment.rollout = "FAILED";
        deployment.reason = "ECS deployment circuit breaker: tasks failed to start.".to_owned();
        self.events.push((
            now(),
            format!("(service {}) (deployment {}) deployment failed: tasks failed to start.", self.name, deployment.id),
        ));
        if self.rollback && self.roll_back(deployment.clone(), "ECS deployment circuit breaker: tasks failed to start.")
        {
            return;
        }
        if let Some(record) = self.record(&deployment.record) {
            record.status = "STOPPED";
            record.reason = "ECS deployment circuit breaker: tasks failed to start.".to_owned();
            record.finished = Some(now());
        }
        self.deployments[0] = deployment;
    }

    /// Puts what the scheduler knows into moto's service document.
    fn describe(&self, service: &mut Value) {
        let count = |id: &str, pending: bool| {
            self.tasks.iter().filter(|t| t.deployment == id && if pending { t.pending() } else { t.running() }).count()
                as i64
        };
        let deployments: Vec<Value> = self
            .deployments
            .iter()
            .enumerate()
            .map(|(n, d)| {
                let (running, pending) = (count(&d.id, false), count(&d.id, true));
                json!({
                    "id": d.id, "status": if n == 0 { "PRIMARY" } else { "ACTIVE" }, "taskDefinition": d.task_definition,
                    "desiredCount": if n == 0 { self.desired } else { running + pending }, "runningCount": running,
                    "pendingCount": pending, "failedTasks": d.failed_tasks, "rolloutState": d.rollout,
                    "rolloutStateReason": d.reason, "createdAt": d.created, "updatedAt": now(),
                    "launchType": service["launchType"],
                })
            })
            .collect();
        let running = self.tasks.iter().filter(|t| t.running()).count() as i64;
        let pending = self.tasks.iter().filter(|t| t.pending()).count() as i64;
        service["status"] = json!(self.status);
        service["runningCount"] = json!(running);
        service["pendingCount"] = json!(pending);
        service["desiredCount"] = json!(self.desired);
        if let Some(primary) = self.deployments.first() {
            service["taskDefinition"] = json!(primary.task_definition);
        }
        service["deploymentController"] = json!({ "type": self.controller });
        service["deploymentConfiguration"]["strategy"] = json!(self.strategy);
        if self.strategy == "BLUE_GREEN" {
            service["deploymentConfiguration"]["bakeTimeInMinutes"] = json!(self.bake_minutes);
        }
        service["deploymentConfiguration"]["deploymentCircuitBreaker"] =
            json!({ "enable": self.circuit_breaker, "rollback": self.rollback });
        if let Some(current) = self.records.last() {
            service["currentServiceDeployment"] = json!(current.arn);
        }
        service["currentServiceRevisions"] = Value::Array(
            self.current_revisions()
                .into_iter()
                .map(|(arn, requested, running, pending)| {
                    json!({ "arn": arn, "requestedTaskCount": requested, "runningTaskCount": running, "pendingTaskCount": pending })
                })
                .collect(),
        );
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

/// A service deployment's id: 21 URL-safe characters, as AWS's examples have them.
fn deployment_id(n: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut value = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66_D1CE_4E5B;
    (0..21)
        .map(|_| {
            let c = ALPHABET[(value % 64) as usize] as char;
            value = value.rotate_right(6) ^ n;
            c
        })
        .collect()
}

impl Record {
    fn brief(&self, service: &Service) -> Value {
        let mut brief = json!({
            "serviceDeploymentArn": self.arn, "serviceArn": service.arn, "clusterArn": service.cluster,
            "createdAt": self.created, "startedAt": self.created, "targetServiceRevisionArn": self.target,
            "status": self.status,
        });
        if !self.reason.is_empty() {
            brief["statusReason"] = json!(self.reason);
        }
        if let Some(finished) = self.finished {
            brief["finishedAt"] = json!(finished);
        }
        brief
    }

    fn describe(&self, service: &Service) -> Value {
        let counts = |arn: &str| {
            let ids: Vec<&str> =
                service.deployments.iter().filter(|d| d.revision == arn).map(|d| d.id.as_str()).collect();
            let tasks = service.tasks.iter().filter(|t| ids.contains(&t.deployment.as_str()));
            (tasks.clone().filter(|t| t.running()).count(), tasks.filter(|t| t.pending()).count())
        };
        let revision = |arn: &String, requested: i64| {
            let (running, pending) = counts(arn);
            json!({ "arn": arn, "requestedTaskCount": requested, "runningTaskCount": running, "pendingTaskCount": pending })
        };
        let finished = self.finished.is_some();
        let mut record = self.brief(service);
        record["updatedAt"] = json!(now());
        record["targetServiceRevision"] = revision(&self.target, if finished { 0 } else { service.desired });
        record["sourceServiceRevisions"] = Value::Array(self.sources.iter().map(|arn| revision(arn, 0)).collect());
        let breaker = if !service.circuit_breaker {
            "DISABLED"
        } else if self.failures >= self.threshold {
            "TRIGGERED"
        } else if finished {
            "MONITORING_COMPLETE"
        } else {
            "MONITORING"
        };
        record["deploymentCircuitBreaker"] =
            json!({ "status": breaker, "failureCount": self.failures, "threshold": self.threshold });
        record["alarms"] = json!({ "status": "DISABLED" });
        record["deploymentConfiguration"] = json!({
            "strategy": service.strategy,
            "deploymentCircuitBreaker": { "enable": service.circuit_breaker, "rollback": service.rollback },
        });
        if let Some(stage) = self.stage {
            record["lifecycleStage"] = json!(stage);
        }
        if let Some((reason, started, revision)) = &self.rollback {
            record["rollback"] = json!({ "reason": reason, "startedAt": started, "serviceRevisionArn": revision });
        }
        record
    }
}

impl Revision {
    fn describe(&self, service: &Service) -> Value {
        let images: Vec<Value> = self
            .images
            .iter()
            .map(|(name, image, digest)| {
                let mut entry = json!({ "containerName": name, "image": image });
                if let Some(digest) = digest {
                    entry["imageDigest"] = json!(digest);
                }
                entry
            })
            .collect();
        json!({
            "serviceRevisionArn": self.arn, "serviceArn": service.arn, "clusterArn": service.cluster,
            "taskDefinition": self.task_definition, "containerImages": images, "createdAt": self.created,
        })
    }
}

impl Task {
    fn describe(&self, service: &Service) -> Value {
        let status = match (&self.stopped, self.pending()) {
            (Some(_), _) => "STOPPED",
            (None, true) => "PENDING",
            (None, false) => "RUNNING",
        };
        let containers: Vec<Value> = self
            .containers
            .iter()
            .map(|(name, image, digest)| {
                let mut container = json!({ "name": name, "image": image, "lastStatus": status });
                // A container reports the digest it runs once its image is pulled.
                if let Some(digest) = digest.as_ref().filter(|_| status != "PENDING") {
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
            "lastStatus": status,
            "desiredStatus": if self.stopped.is_some() { "STOPPED" } else { "RUNNING" },
            "createdAt": self.started, "containers": containers,
        });
        if let Some((at, why)) = &self.stopped {
            task["stoppedAt"] = json!(at);
            task["stoppedReason"] = json!(why);
            task["stopCode"] =
                json!(if self.failed.is_some() { "TaskFailedToStart" } else { "ServiceSchedulerInitiated" });
        } else if status == "RUNNING" {
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
