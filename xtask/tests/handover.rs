//! After the first deploy: where each service stands (`status`), the real image taking over
//! (`handover`), a failed real deploy that rolls back to the placeholder, immutable tags that a
//! placeholder must not block, and the placeholder's images removed (`teardown --images`) while
//! nothing in use is. Against moto with ECS's scheduler in front (testbed `Scheduler`: tag
//! resolution per deployment, `imageDigest`, the circuit breaker), the test registry, and ECR's
//! tag immutability in front of it (testbed `EcrRules`).

mod common;

use aws_sdk_ecs::types::{ContainerDefinition, DeploymentCircuitBreaker, DeploymentConfiguration, PortMapping};
use common::*;

/// A cluster with one service of `count` tasks pulling `repository:tag`, with the circuit
/// breaker and its rollback on, made through the scheduler as Terraform or the console would.
async fn service(endpoint: &str, cluster: &str, repository: &str, tag: &str, count: i32) {
    let ecs = aws_sdk_ecs::Client::new(&aws_at(endpoint).await);
    ecs.create_cluster().cluster_name(cluster).send().await.unwrap();
    ecs.register_task_definition()
        .family(repository)
        .container_definitions(
            ContainerDefinition::builder()
                .name(repository)
                .image(format!("{ECR}/{repository}:{tag}"))
                .memory(256)
                .port_mappings(PortMapping::builder().container_port(8080).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let breaker = DeploymentCircuitBreaker::builder().enable(true).rollback(true).build();
    ecs.create_service()
        .cluster(cluster)
        .service_name(repository)
        .task_definition(repository)
        .desired_count(count)
        .deployment_configuration(DeploymentConfiguration::builder().deployment_circuit_breaker(breaker).build())
        .send()
        .await
        .unwrap();
}

/// The NEXT column of a service's container in `status`.
fn next(stdout: &str, service: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{service} ")))
        .unwrap_or_else(|| panic!("no row for {service}:\n{stdout}"));
    line.split_whitespace().last().unwrap_or_default().to_owned()
}

fn updates(scheduler: &testbed::Scheduler) -> usize {
    scheduler.operations().iter().filter(|o| *o == "UpdateService").count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_is_handed_over_to_the_real_image_and_nothing_is_left_behind() {
    let bed = bed();
    let docker = docker().await;
    let scheduler = bed.scheduler().unwrap();
    let env = with(bed.env(), "AWS_ENDPOINT_URL", scheduler.endpoint());
    service(&scheduler.endpoint(), "shop", "api", "v1", 2).await;

    let (code, stdout, stderr) = xtask(&["publish", "--from", "ecs:shop", "--wait"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (code, stdout, stderr) = xtask(&["status", "--from", "ecs:shop"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(next(&stdout, "shop/api"), "wait-for-pipeline", "{stdout}");
    let (_, placeholder) = bed.registry_json("api/manifests/v1").await.unwrap();
    assert_eq!(scheduler.running_digests("api", "api"), [Some(placeholder.clone()), Some(placeholder.clone())]);

    // The pipeline pushes its image at the tag; the tasks still run the digest their deployment
    // resolved, so nothing changes until a new deployment.
    let (pushed, _cleanup) =
        push_image(&docker, &bed.registry.host(), bed.registry_credentials(), "api", "v1", true).await;
    pushed.unwrap();
    let (_, real) = bed.registry_json("api/manifests/v1").await.unwrap();
    let (code, stdout, stderr) = xtask(&["status", "--from", "ecs:shop", "--output", "json"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let api = &json["services"][0];
    assert_eq!(
        (api["running"].as_str(), api["at_tag"].as_str(), api["next"].as_str()),
        (Some("placeholder"), Some("real image"), Some("handover")),
        "{api}"
    );
    assert_eq!(api["tag_digest"].as_str(), Some(real.as_str()));

    let (code, stdout, stderr) = xtask(&["handover", "--from", "ecs:shop", "--dry-run"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("shop/api: would-hand-over") && stdout.contains("Dry run"), "{stdout}");
    assert_eq!(updates(&scheduler), 0, "a dry run changes nothing");

    let (code, stdout, stderr) = xtask(&["handover", "--from", "ecs:shop"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("shop/api: handed-over: deployment")
            && stdout.contains(&format!("api runs the real image {real}")),
        "{stdout}"
    );
    assert_eq!(scheduler.running_digests("api", "api"), [Some(real.clone()), Some(real.clone())]);

    // On the real image now: never touched again.
    let (code, stdout, stderr) = xtask(&["handover"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("shop/api: on-real-image: its tasks run a real image: not touched"), "{stdout}");
    assert_eq!(updates(&scheduler), 1);
    let (_, stdout, _) = xtask(&["status", "--from", "ecs:shop"], &env);
    assert_eq!(next(&stdout, "shop/api"), "done", "{stdout}");

    // Nothing left serving, nothing left behind: the placeholder's images go, the real image and
    // the repository stay.
    let (code, stdout, stderr) = xtask(&["teardown", "--images", "--containers", "api", "--yes"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("api: removed: the placeholder :latest")
            && stdout.contains(":v1 (")
            && stdout.contains("a real image"),
        "{stdout}"
    );
    assert_eq!(registry_tags(&bed, "api").await, ["v1"]);
    assert_eq!(bed.registry_json("api/manifests/v1").await.unwrap().1, real);
    assert!(bed.repository_names().await.contains(&"api".to_owned()));
    let (code, stdout, _) = xtask(&["teardown", "--images", "--containers", "api", "--yes"], &env);
    assert_eq!(code, 0);
    assert!(stdout.contains("api: unchanged: no placeholder image to remove"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_real_deploy_rolls_back_to_the_placeholder_and_handover_says_why() {
    let bed = bed();
    let docker = docker().await;
    let scheduler = bed.scheduler().unwrap();
    let env = with(bed.env(), "AWS_ENDPOINT_URL", scheduler.endpoint());
    service(&scheduler.endpoint(), "web", "web", "v1", 1).await;
    let (code, stdout, stderr) = xtask(&["publish", "--from", "ecs:web", "--wait"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (_, placeholder) = bed.registry_json("web/manifests/v1").await.unwrap();
    let (_, stdout, _) = xtask(&["status", "--from", "ecs:web"], &env);
    assert_eq!(next(&stdout, "web/web"), "wait-for-pipeline", "{stdout}");

    // The pipeline's first image cannot start: its deployment fails and rolls back.
    let (pushed, _cleanup) =
        push_image(&docker, &bed.registry.host(), bed.registry_credentials(), "web", "v1", false).await;
    pushed.unwrap();
    let (code, stdout, stderr) = xtask(&["handover", "--from", "ecs:web", "--wait-timeout", "60s"], &env);
    assert_eq!(code, 1, "a rollback is a failure:\n{stdout}\n{stderr}");
    let line = stdout.lines().find(|l| l.starts_with("web/web: failed: ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("failed and rolled back (ROLLBACK_SUCCESSFUL"), "{line}");
    assert!(line.contains(&format!("where web runs the placeholder {placeholder}")), "{line}");
    assert!(line.contains("CannotStartContainerError"), "why its tasks stopped: {line}");
    assert_eq!(scheduler.deployment_statuses("web"), ["SUCCESSFUL", "ROLLBACK_SUCCESSFUL"]);
    assert_eq!(
        scheduler.running_digests("web", "web"),
        [Some(placeholder.clone())],
        "the service serves the placeholder again"
    );
    let (_, stdout, _) = xtask(&["status", "--from", "ecs:web"], &env);
    assert!(
        stdout.contains("its last deployment of the real image failed and rolled back to the placeholder"),
        "{stdout}"
    );

    // Its tasks run the placeholder: teardown leaves it.
    let (code, stdout, stderr) = xtask(&["teardown", "--images", "--containers", "web", "--yes"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("web: unchanged") && stdout.contains("web/web can start tasks from it"), "{stdout}");
    assert_eq!(bed.registry_json(&format!("web/manifests/{placeholder}")).await.map(|(_, d)| d), Some(placeholder));
}

fn definition(dir: &std::path::Path, repository: &str, tag: &str) -> String {
    let file = dir.join(format!("{repository}.json"));
    let json = serde_json::json!({ "family": repository, "containerDefinitions": [
        { "name": "app", "image": format!("{ECR}/{repository}:{tag}"), "portMappings": [{ "containerPort": 3000 }] }] });
    std::fs::write(&file, json.to_string()).unwrap();
    file.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_placeholder_never_blocks_the_pipelines_push_to_an_immutable_tag() {
    use aws_sdk_ecr::types::{
        ImageTagMutability, ImageTagMutabilityExclusionFilter, ImageTagMutabilityExclusionFilterType,
    };
    let bed = bed();
    let docker = docker().await;
    let ecr = bed.ecr().await;
    let registry = testbed::EcrRules::start(bed.registry.port, bed.moto.port).unwrap();
    let env = with(bed.env(), "ECR_REGISTRY_ENDPOINT", format!("http://{}", registry.host()));
    let dir = tempfile::tempdir().unwrap();
    ecr.create_repository()
        .repository_name("frozen")
        .image_tag_mutability(ImageTagMutability::Immutable)
        .send()
        .await
        .unwrap();

    // By default: no placeholder at an immutable tag, the reason, the ways out, and exit 1 (a
    // service pulling it cannot start).
    let frozen = definition(dir.path(), "frozen", "v2");
    let (code, stdout, stderr) = xtask(&["publish", "--task-definition", &frozen], &env);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(row(&stdout, "frozen").contains("skipped"), "{stdout}");
    let why = reason(&stdout, "frozen");
    for says in [
        ":v2 is immutable in this repository (IMMUTABLE)",
        "ImageTagAlreadyExistsException",
        "aws ecr put-image-tag-mutability --repository-name frozen --image-tag-mutability IMMUTABLE_WITH_EXCLUSION --image-tag-mutability-exclusion-filters filterType=WILDCARD,filter=v2",
        "--fill-immutable v2",
        "cargo xtask teardown --images --containers frozen",
    ] {
        assert!(why.contains(says), "{says}: {why}");
    }
    assert!(stdout.contains("frozen: frozen/app pulls :v2: NOTHING there, so its tasks cannot start"), "{stdout}");
    assert!(registry_tags(&bed, "frozen").await.is_empty(), "nothing pushed");

    // The way out it names: an exclusion filter for the tag. The tag is then mutable and filled,
    // and the pipeline's push over the placeholder goes through.
    ecr.put_image_tag_mutability()
        .repository_name("frozen")
        .image_tag_mutability(ImageTagMutability::ImmutableWithExclusion)
        .image_tag_mutability_exclusion_filters(
            ImageTagMutabilityExclusionFilter::builder()
                .filter_type(ImageTagMutabilityExclusionFilterType::Wildcard)
                .filter("v2")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let (code, stdout, stderr) = xtask(&["publish", "--task-definition", &frozen, "--no-latest"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("frozen: frozen/app pulls :v2: the placeholder is there"), "{stdout}");
    let (pushed, _a) = push_image(&docker, &registry.host(), bed.registry_credentials(), "frozen", "v2", true).await;
    pushed.expect("the pipeline pushes over the placeholder at an excluded tag");

    // Opting in at a tag of a plainly immutable repository: the placeholder is there, and does
    // block a push at that tag (which is why it is opt-in), until teardown --images takes it off.
    ecr.create_repository()
        .repository_name("sealed")
        .image_tag_mutability(ImageTagMutability::Immutable)
        .send()
        .await
        .unwrap();
    let (code, stdout, stderr) =
        xtask(&["publish", "--containers", "sealed:8080", "--no-lookup", "--fill-immutable", "latest"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(registry_tags(&bed, "sealed").await, ["latest"]);
    let (pushed, _b) =
        push_image(&docker, &registry.host(), bed.registry_credentials(), "sealed", "latest", true).await;
    assert!(pushed.as_ref().is_err_and(|e| e.contains("TAG_INVALID") || e.contains("immutable")), "{pushed:?}");
    let (code, stdout, stderr) = xtask(&["teardown", "--images", "--containers", "sealed", "--yes"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("sealed: removed: the placeholder :latest"), "{stdout}");
    let (pushed, _c) =
        push_image(&docker, &registry.host(), bed.registry_credentials(), "sealed", "latest", true).await;
    pushed.expect("the pipeline's push once the placeholder is gone");
}
