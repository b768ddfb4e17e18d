//! The test bed's ECS answers as AWS documents it (`src/ecs.rs`, `src/pages.rs`): list calls in
//! pages with their default sizes, the Describe calls' limits, services named within their
//! cluster, service deployments and revisions with the digests they resolved, and the refusals.

use testbed::*;

async fn client(endpoint: &str) -> aws_sdk_ecs::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("eu-west-1"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .credentials_provider(aws_sdk_ecr::config::Credentials::new("testing", "testing", None, None, "testbed"))
        .load()
        .await;
    aws_sdk_ecs::Client::new(&config)
}

fn code<E: aws_sdk_ecs::error::ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    error: &aws_sdk_ecs::error::SdkError<E, R>,
) -> String {
    match error {
        aws_sdk_ecs::error::SdkError::ServiceError(e) => e.err().code().unwrap_or_default().to_owned(),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ecs_pages_limits_clusters_records_and_refusals_are_as_aws_documents_them() {
    let bed = Bed::start().expect("the test bed");
    let scheduler = bed.scheduler().unwrap();
    let ecs = client(&scheduler.endpoint()).await;
    // An image of another registry is taken as pulled, with no digest to resolve.
    ecs.register_task_definition()
        .family("web")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder().name("web").image("nginx:1.27").memory(128).build(),
        )
        .send()
        .await
        .unwrap();
    for cluster in ["one", "two"] {
        ecs.create_cluster().cluster_name(cluster).send().await.unwrap();
    }
    for n in 0..12 {
        ecs.create_service()
            .cluster("one")
            .service_name(format!("s{n:02}"))
            .task_definition("web")
            .desired_count(1)
            .send()
            .await
            .unwrap();
    }
    // The same name in another cluster is another service.
    ecs.create_service()
        .cluster("two")
        .service_name("s00")
        .task_definition("web")
        .desired_count(2)
        .deployment_controller(
            aws_sdk_ecs::types::DeploymentController::builder()
                .r#type(aws_sdk_ecs::types::DeploymentControllerType::CodeDeploy)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    // ListServices: 10 a page unless asked; DescribeServices: at most 10.
    let first = ecs.list_services().cluster("one").send().await.unwrap();
    assert_eq!(first.service_arns().len(), 10);
    let rest = ecs.list_services().cluster("one").next_token(first.next_token().unwrap()).send().await.unwrap();
    assert_eq!((rest.service_arns().len(), rest.next_token()), (2, None));
    let names: Vec<String> = (0..11).map(|n| format!("s{n:02}")).collect();
    let refused = ecs.describe_services().cluster("one").set_services(Some(names)).send().await.unwrap_err();
    assert_eq!(code(&refused), "InvalidParameterException");
    let refused = ecs.list_services().cluster("one").max_results(101).send().await.unwrap_err();
    assert_eq!(code(&refused), "InvalidParameterException");

    // Tasks start PENDING, then run; each cluster's s00 lists its own.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let running = loop {
        let listed = ecs.list_tasks().cluster("two").service_name("s00").send().await.unwrap();
        let tasks =
            ecs.describe_tasks().cluster("two").set_tasks(Some(listed.task_arns().to_vec())).send().await.unwrap();
        let statuses: Vec<&str> = tasks.tasks().iter().filter_map(|t| t.last_status()).collect();
        if statuses.iter().all(|s| *s == "RUNNING") && !statuses.is_empty() || std::time::Instant::now() > until {
            break statuses.len();
        }
        assert!(statuses.iter().all(|s| matches!(*s, "PENDING" | "RUNNING")), "{statuses:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(running, 2, "cluster two's s00 runs its own two tasks");
    assert_eq!(ecs.list_tasks().cluster("one").service_name("s00").send().await.unwrap().task_arns().len(), 1);

    // A CODE_DEPLOY service refuses a new deployment from UpdateService.
    let refused =
        ecs.update_service().cluster("two").service("s00").force_new_deployment(true).send().await.unwrap_err();
    assert_eq!(code(&refused), "InvalidParameterException");

    // The service names its deployment; the deployment its revision; the revision its images.
    let service = ecs.describe_services().cluster("one").services("s00").send().await.unwrap();
    let service = &service.services()[0];
    let arn = service.current_service_deployment().expect("currentServiceDeployment").to_owned();
    assert!(arn.starts_with("arn:aws:ecs:eu-west-1:123456789012:service-deployment/one/s00/"), "{arn}");
    let listed = ecs.list_service_deployments().cluster("one").service("s00").send().await.unwrap();
    assert_eq!(listed.service_deployments()[0].service_deployment_arn(), Some(arn.as_str()));
    let described = ecs.describe_service_deployments().service_deployment_arns(&arn).send().await.unwrap();
    let deployment = &described.service_deployments()[0];
    let revision = deployment.target_service_revision().and_then(|r| r.arn()).unwrap().to_owned();
    let revisions = ecs.describe_service_revisions().service_revision_arns(&revision).send().await.unwrap();
    let images = revisions.service_revisions()[0].container_images();
    assert_eq!((images[0].container_name(), images[0].image()), (Some("web"), Some("nginx:1.27")));
    let too_many: Vec<String> = (0..21).map(|_| revision.clone()).collect();
    let refused = ecs.describe_service_revisions().set_service_revision_arns(Some(too_many)).send().await.unwrap_err();
    assert_eq!(code(&refused), "InvalidParameterException");

    // A finished deployment cannot be stopped; a deleted service is DRAINING and takes no update.
    let status = loop {
        let described = ecs.describe_service_deployments().service_deployment_arns(&arn).send().await.unwrap();
        let status = described.service_deployments()[0].status().map(|s| s.as_str().to_owned()).unwrap_or_default();
        if status != "IN_PROGRESS" || std::time::Instant::now() > until {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(status, "SUCCESSFUL");
    let refused = ecs
        .stop_service_deployment()
        .service_deployment_arn(&arn)
        .stop_type(aws_sdk_ecs::types::StopServiceDeploymentStopType::Rollback)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&refused), "ConflictException");
    ecs.delete_service().cluster("one").service("s01").force(true).send().await.unwrap();
    let described = ecs.describe_services().cluster("one").services("s01").send().await.unwrap();
    assert_eq!(described.services()[0].status(), Some("DRAINING"));
    let refused = ecs.update_service().cluster("one").service("s01").desired_count(1).send().await.unwrap_err();
    assert_eq!(code(&refused), "ServiceNotActiveException");
    scheduler.purge("s02");
    let described = ecs.describe_services().cluster("one").services("s02").send().await.unwrap();
    assert_eq!(described.failures()[0].reason(), Some("MISSING"));
}
