//! `handover`, `status` and `teardown --images` read ECS as it records itself: service deployments
//! and the digests their revisions resolved, the deployment controller and strategy, the service's
//! own status; never event text or tag names. Against moto with ECS's scheduler in front (testbed
//! `Scheduler`: service deployments and revisions, rollbacks recorded on the deployment that
//! failed, PENDING tasks, CodeDeploy and external controllers, blue/green bake time, DRAINING and
//! purged services), the test registry, and real images pushed through the Docker engine.

mod common;

use std::time::Duration;

use aws_sdk_ecs::types::{
    DeploymentCircuitBreaker, DeploymentConfiguration, DeploymentController, DeploymentControllerType,
    DeploymentStrategy,
};
use common::*;

/// How a test service is made.
struct Made {
    count: i32,
    rollback: bool,
    controller: Option<DeploymentControllerType>,
    /// Blue/green with this bake time, in minutes (a minute lasts a second in the test bed).
    bake: Option<i32>,
    /// The image as the definition names it, when not `repository:v1`.
    image: Option<String>,
}

impl Default for Made {
    fn default() -> Made {
        Made { count: 1, rollback: true, controller: None, bake: None, image: None }
    }
}

/// A service `name` in `cluster` whose one container `name` pulls `name:v1` from ECR, with the
/// circuit breaker on, made through the scheduler as Terraform or the console would.
async fn service(endpoint: &str, cluster: &str, name: &str, made: Made) {
    let ecs = aws_sdk_ecs::Client::new(&aws_at(endpoint).await);
    let _ = ecs.create_cluster().cluster_name(cluster).send().await;
    let image = made.image.unwrap_or_else(|| format!("{ECR}/{name}:v1"));
    ecs.register_task_definition()
        .family(name)
        .container_definitions(web(name, &image, 8080).build())
        .send()
        .await
        .unwrap();
    let breaker = DeploymentCircuitBreaker::builder().enable(true).rollback(made.rollback).build();
    let mut configuration = DeploymentConfiguration::builder().deployment_circuit_breaker(breaker);
    if let Some(minutes) = made.bake {
        configuration = configuration.strategy(DeploymentStrategy::BlueGreen).bake_time_in_minutes(minutes);
    }
    let mut create = ecs
        .create_service()
        .cluster(cluster)
        .service_name(name)
        .task_definition(name)
        .desired_count(made.count)
        .deployment_configuration(configuration.build());
    if let Some(controller) = made.controller {
        create = create.deployment_controller(DeploymentController::builder().r#type(controller).build().unwrap());
    }
    create.send().await.unwrap();
}

async fn ecs(endpoint: &str) -> aws_sdk_ecs::Client {
    aws_sdk_ecs::Client::new(&aws_at(endpoint).await)
}

/// The line an outcome of `handover` or `status` starts with.
fn line<'a>(stdout: &'a str, start: &str) -> &'a str {
    stdout.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("no line starting {start:?}:\n{stdout}"))
}

fn updates(scheduler: &testbed::Scheduler) -> usize {
    scheduler.operations().iter().filter(|o| *o == "UpdateService").count()
}

/// Pushes a real image at `repository:v1` (one that starts, or one that cannot), and returns
/// its digest.
async fn push_real(bed: &Bed, repository: &str, runs: bool) -> String {
    let docker = docker().await;
    let (pushed, _cleanup) =
        push_image(&docker, &bed.registry.host(), bed.registry_credentials(), repository, "v1", runs).await;
    pushed.unwrap();
    bed.registry_json(&format!("{repository}/manifests/v1")).await.unwrap().1
}

/// Asks ECS until `service` runs `count` tasks (each call lets the scheduler go on).
async fn until_running(endpoint: &str, cluster: &str, service: &str, count: i32) {
    let ecs = ecs(endpoint).await;
    for _ in 0..60 {
        let described = ecs.describe_services().cluster(cluster).services(service).send().await.unwrap();
        if described.services().first().is_some_and(|s| s.running_count() == count && s.pending_count() == 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{cluster}/{service} never ran {count} tasks");
}

#[tokio::test(flavor = "multi_thread")]
async fn teardown_keeps_every_digest_a_service_can_still_start_tasks_from() {
    let bed = bed();
    let scheduler = bed.scheduler().unwrap();
    let endpoint = scheduler.endpoint();
    let env = with(bed.env(), "AWS_ENDPOINT_URL", endpoint.clone());
    service(&endpoint, "keep", "cold", Made::default()).await;
    let (code, stdout, stderr) = xtask(&["publish", "--from", "ecs:keep", "--wait"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (_, placeholder) = bed.registry_json("cold/manifests/v1").await.unwrap();

    // The pipeline pushes its image at the tag, and the service is scaled to 0 before any new
    // deployment: its last deployment resolved the tag to the placeholder, and any task it starts
    // (a scale-up, a rollback) pulls that digest, which no tag names any more.
    push_real(&bed, "cold", true).await;
    ecs(&endpoint).await.update_service().cluster("keep").service("cold").desired_count(0).send().await.unwrap();
    until_running(&endpoint, "keep", "cold", 0).await;
    // A second service pins the placeholder's digest.
    service(&endpoint, "keep", "pinned", Made { image: Some(format!("{ECR}/cold@{placeholder}")), ..Made::default() })
        .await;

    let (code, stdout, stderr) = xtask(&["teardown", "--images", "--containers", "cold", "--yes"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let kept = line(&stdout, "cold: ");
    assert!(kept.contains(&placeholder) && kept.contains("can start tasks from it"), "{kept}");
    assert!(kept.contains("keep/cold") && kept.contains("keep/pinned"), "{kept}");
    assert_eq!(
        bed.registry_json(&format!("cold/manifests/{placeholder}")).await.map(|(_, d)| d),
        Some(placeholder.clone())
    );

    // So the service can still start a task from the digest its deployment resolved.
    ecs(&endpoint).await.update_service().cluster("keep").service("cold").desired_count(1).send().await.unwrap();
    until_running(&endpoint, "keep", "cold", 1).await;
    assert_eq!(scheduler.running_digests("cold", "cold"), [Some(placeholder)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_says_the_true_next_step_for_a_pinned_digest_a_service_at_zero_and_starting_tasks() {
    let bed = bed();
    let scheduler = bed.scheduler().unwrap();
    let endpoint = scheduler.endpoint();
    let env = with(bed.env(), "AWS_ENDPOINT_URL", endpoint.clone());
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "fixed:8080", "--no-lookup"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (_, placeholder) = bed.registry_json("fixed/manifests/latest").await.unwrap();
    service(&endpoint, "steps", "fixed", Made { image: Some(format!("{ECR}/fixed@{placeholder}")), ..Made::default() })
        .await;
    service(&endpoint, "steps", "idle", Made { count: 0, ..Made::default() }).await;
    let (code, stdout, stderr) = xtask(&["publish", "--from", "ecs:steps/idle", "--wait"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    until_running(&endpoint, "steps", "fixed", 1).await;
    // Tasks whose image takes long to pull: PENDING, with no imageDigest yet.
    scheduler.slow_pulls(Duration::from_secs(60));
    service(&endpoint, "steps", "slow", Made::default()).await;
    let (code, stdout, stderr) = xtask(&["publish", "--from", "ecs:steps/slow"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");

    let (code, stdout, stderr) = xtask(&["status", "--from", "ecs:steps", "--output", "json"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let of = |service: &str| {
        json["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == format!("steps/{service}"))
            .unwrap_or_else(|| panic!("{service}: {json}"))
            .clone()
    };
    assert_eq!(of("fixed")["next"], "pinned", "{json}");
    assert_eq!(of("idle")["next"], "scaled-to-zero", "{json}");
    assert_eq!((of("slow")["running"].as_str(), of("slow")["next"].as_str()), (Some("starting"), Some("starting")));

    let (_, stdout, _) = xtask(&["status", "--from", "ecs:steps"], &env);
    assert!(line(&stdout, "steps/fixed fixed: ").contains("register a new revision"), "{stdout}");
    assert!(line(&stdout, "steps/idle idle: ").contains("its desired count is 0"), "{stdout}");
    assert!(line(&stdout, "steps/slow slow: ").contains("its tasks are starting"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn handover_leaves_codedeploy_external_and_deleted_services_alone_and_names_a_missing_one() {
    let bed = bed();
    let scheduler = bed.scheduler().unwrap();
    let endpoint = scheduler.endpoint();
    let env = with(bed.env(), "AWS_ENDPOINT_URL", endpoint.clone());
    for (name, controller) in [
        ("blue", Some(DeploymentControllerType::CodeDeploy)),
        ("outside", Some(DeploymentControllerType::External)),
        ("leaving", None),
    ] {
        service(&endpoint, "ctl", name, Made { controller, ..Made::default() }).await;
    }
    let (code, stdout, stderr) = xtask(&["publish", "--from", "ecs:ctl", "--wait"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for name in ["blue", "outside", "leaving"] {
        push_real(&bed, name, true).await;
    }
    ecs(&endpoint).await.delete_service().cluster("ctl").service("leaving").force(true).send().await.unwrap();

    let (code, stdout, stderr) = xtask(&["handover", "--from", "ecs:ctl/blue,outside,leaving"], &env);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let blue = line(&stdout, "ctl/blue: ");
    assert!(blue.starts_with("ctl/blue: refused: CodeDeploy deploys this service"), "{blue}");
    assert!(blue.contains("aws deploy create-deployment"), "{blue}");
    let outside = line(&stdout, "ctl/outside: ");
    assert!(outside.starts_with("ctl/outside: refused: an external controller"), "{outside}");
    assert!(outside.contains("aws ecs create-task-set --cluster ctl --service outside"), "{outside}");
    assert!(line(&stdout, "ctl/leaving: ").starts_with("ctl/leaving: skipped: DRAINING"), "{stdout}");
    assert_eq!(updates(&scheduler), 0, "nothing ECS would refuse was asked of it");

    // A service a stack still names, which ECS has purged: one failed line, not silence.
    let cloudformation = aws_sdk_cloudformation::Client::new(&aws_at(&endpoint).await);
    cloudformation.create_stack().stack_name("Gone").template_body(GONE).send().await.unwrap();
    scheduler.purge("ghost");
    let (code, stdout, stderr) = xtask(&["handover", "--from", "stack:Gone"], &env);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let ghost = line(&stdout, "ghosts/ghost: ");
    assert!(
        ghost.starts_with("ghosts/ghost: failed: ECS has no such service (DescribeServices answers MISSING)"),
        "{ghost}"
    );
}

const GONE: &str = r#"
Resources:
  Cluster:
    Type: AWS::ECS::Cluster
    Properties:
      ClusterName: ghosts
  Task:
    Type: AWS::ECS::TaskDefinition
    Properties:
      Family: ghost
      ContainerDefinitions:
        - Name: ghost
          Image: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/ghost:v1
          Memory: 256
  Service:
    Type: AWS::ECS::Service
    Properties:
      Cluster: !Ref Cluster
      ServiceName: ghost
      TaskDefinition: !Ref Task
      DesiredCount: 1
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_is_the_record_of_the_deployment_handover_started_and_a_later_good_one_is_handed_over() {
    let bed = bed();
    let scheduler = bed.scheduler().unwrap();
    let endpoint = scheduler.endpoint();
    let env = with(bed.env(), "AWS_ENDPOINT_URL", endpoint.clone());
    service(&endpoint, "roll", "api", Made::default()).await;
    service(&endpoint, "roll", "stuck", Made { rollback: false, ..Made::default() }).await;
    let (code, stdout, stderr) = xtask(&["publish", "--from", "ecs:roll", "--wait"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (_, placeholder) = bed.registry_json("api/manifests/v1").await.unwrap();

    // Images that cannot start: api's deployment rolls back; stuck's, with the circuit breaker's
    // rollback off, stops on a FAILED deployment, which is no "back on the placeholder".
    push_real(&bed, "api", false).await;
    push_real(&bed, "stuck", false).await;
    let (code, stdout, stderr) = xtask(&["handover", "--from", "ecs:roll", "--wait-timeout", "90s"], &env);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let api = line(&stdout, "roll/api: ");
    assert!(api.contains("failed and rolled back (ROLLBACK_SUCCESSFUL"), "{api}");
    assert!(api.contains(&format!("where api runs the placeholder {placeholder}")), "{api}");
    let stuck = line(&stdout, "roll/stuck: ");
    assert!(
        stuck.contains("stopped (ECS deployment circuit breaker: tasks failed to start.) and was not rolled back"),
        "{stuck}"
    );
    assert!(stuck.contains("stays on its FAILED deployment") && !stuck.contains("back on the placeholder"), "{stuck}");
    assert_eq!(scheduler.deployment_statuses("api"), ["SUCCESSFUL", "ROLLBACK_SUCCESSFUL"]);
    assert_eq!(scheduler.deployment_statuses("stuck"), ["SUCCESSFUL", "STOPPED"]);

    let (_, stdout, _) = xtask(&["status", "--from", "ecs:roll/api"], &env);
    assert!(
        line(&stdout, "roll/api api: its last deployment")
            .contains("rolled back to the placeholder (service deployment"),
        "{stdout}"
    );

    // The pipeline fixes its image: the next handover is handed over, whatever the old rollback.
    let real = push_real(&bed, "api", true).await;
    let (code, stdout, stderr) = xtask(&["handover", "--from", "ecs:roll/api"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        line(&stdout, "roll/api: ")
            .contains(&format!("handed-over: deployment rolled out, 1/1 running: api runs the real image {real}")),
        "{stdout}"
    );
    assert_eq!(scheduler.deployment_statuses("api"), ["SUCCESSFUL", "ROLLBACK_SUCCESSFUL", "SUCCESSFUL"]);
    let (_, stdout, _) = xtask(&["status", "--from", "ecs:roll/api"], &env);
    assert!(!stdout.contains("rolled back"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn blue_green_is_followed_through_bake_time_services_at_once_and_a_deadline_offers_to_stop() {
    let bed = bed();
    let scheduler = bed.scheduler().unwrap();
    let endpoint = scheduler.endpoint();
    let env = with(bed.env(), "AWS_ENDPOINT_URL", endpoint.clone());
    for name in ["green", "long", "longer"] {
        service(&endpoint, "bg", name, Made { bake: Some(2), ..Made::default() }).await;
    }
    service(&endpoint, "bg", "plain", Made::default()).await;
    let (code, stdout, stderr) = xtask(&["publish", "--from", "ecs:bg", "--wait"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for name in ["green", "plain", "long", "longer"] {
        push_real(&bed, name, true).await;
    }

    // Both followed at once: the second's deployment starts before the first's ends; the
    // blue/green one is followed through its bake time, and says so.
    let (code, stdout, stderr) = xtask(&["handover", "--from", "ecs:bg/green,plain"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(line(&stdout, "bg/green: ").starts_with("bg/green: handed-over"), "{stdout}");
    assert!(line(&stdout, "bg/plain: ").starts_with("bg/plain: handed-over"), "{stdout}");
    assert!(stderr.contains("[bg/green] new blue/green deployment"), "{stderr}");
    assert!(stderr.contains("in stage BAKE_TIME"), "{stderr}");
    let position = |text: &str| stderr.find(text).unwrap_or_else(|| panic!("{text}: {stderr}"));
    let first_done = stderr.find("service deployment successful").unwrap_or(stderr.len());
    assert!(position("[bg/green] new") < first_done && position("[bg/plain] new") < first_done, "{stderr}");

    // A bake time of ten hours: a deployment that outlasts the timeout is left running and the
    // line says how to stop it, and handover then waits for it; or, asked to, it is stopped and
    // rolled back.
    let long_bake =
        DeploymentConfiguration::builder().strategy(DeploymentStrategy::BlueGreen).bake_time_in_minutes(600);
    for name in ["long", "longer"] {
        let ecs = ecs(&endpoint).await;
        ecs.update_service()
            .cluster("bg")
            .service(name)
            .deployment_configuration(long_bake.clone().build())
            .send()
            .await
            .unwrap();
    }
    let (code, stdout, stderr) = xtask(&["handover", "--from", "ecs:bg/long", "--wait-timeout", "3s"], &env);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let long = line(&stdout, "bg/long: ");
    assert!(long.contains("had not finished within 3s") && long.contains("goes on unwatched"), "{long}");
    assert!(long.contains("aws ecs stop-service-deployment --service-deployment-arn arn:aws:ecs:eu-west-1:123456789012:service-deployment/bg/long/"), "{long}");
    assert_eq!(scheduler.deployment_statuses("long").last().map(String::as_str), Some("IN_PROGRESS"));
    let (code, stdout, _) = xtask(&["handover", "--from", "ecs:bg/long"], &env);
    assert_eq!(code, 0);
    assert!(
        line(&stdout, "bg/long: ").contains("is in progress, in stage BAKE_TIME: run handover once it ends"),
        "{stdout}"
    );

    let (code, stdout, stderr) =
        xtask(&["handover", "--from", "ecs:bg/longer", "--wait-timeout", "3s", "--stop-on-timeout"], &env);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(line(&stdout, "bg/longer: ").contains("stopped it (StopServiceDeployment, ROLLBACK)"), "{stdout}");
    let last = scheduler.deployment_statuses("longer").last().cloned().unwrap_or_default();
    assert!(last.starts_with("ROLLBACK_"), "{last}");
}
