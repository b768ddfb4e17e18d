//! Registered task definitions and target groups as sources (`--task-definition FAMILY[:REV]|ARN`,
//! `--target-group`), and a port another container of the task maps left to that container on
//! every path that reads definitions. Against moto's
//! ECS and ELBv2, with the images run as ECS would run them (`verify`).

mod common;

use aws_sdk_ecs::types::{ContainerDefinition, HealthCheck};
use common::*;

/// A frontend on 80 whose target group checks the backend on 5000, both from ECR, as one Fargate
/// task (they share one network namespace).
async fn register_shop(bed: &Bed) {
    let ecs = aws_sdk_ecs::Client::new(&bed.aws().await);
    ecs.register_task_definition()
        .family("shop")
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .container_definitions(web("frontend", &format!("{ECR}/shop-front:v3"), 80).build())
        .container_definitions(
            web("backend", &format!("{ECR}/shop-back:v3"), 5000)
                .health_check(
                    HealthCheck::builder()
                        .command("CMD-SHELL")
                        .command("curl -f http://localhost:5000/health || exit 1")
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registered_definition_and_its_target_group_are_published_as_the_service_will_run_them() {
    let bed = bed();
    let vpc = vpc(&bed).await;
    register_shop(&bed).await;
    let group = target_group(&bed, &vpc, "shop", 80, "5000", "/health").await;

    for definition in ["shop", "shop:1", "arn:aws:ecs:eu-west-1:123456789012:task-definition/shop:1"] {
        let (code, stdout, stderr) =
            xtask(&["publish", "--task-definition", definition, "--target-group", "shop", "--dry-run"], &bed.env());
        assert_eq!(code, 0, "{definition}\n{stdout}\n{stderr}");
        assert_eq!(ports(&stdout, "shop-front"), "80", "the backend's port is the backend's:\n{stdout}");
        assert_eq!(ports(&stdout, "shop-back"), "5000", "{stdout}");
    }
    let (code, stdout, stderr) = xtask(&["publish", "--task-definition", "shop", "--target-group", &group], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("task definition shop: 2 container(s), registered"), "{stderr}");
    assert!(
        stderr.contains("checks port 5000, which container backend of its task maps"),
        "the plan says so:\n{stderr}"
    );
    assert!(stdout.contains("shop-front: shop/frontend pulls :v3: the placeholder is there"), "{stdout}");
    assert_eq!(registry_tags(&bed, "shop-front").await, ["latest", "v3"]);
    assert_eq!(registry_tags(&bed, "shop-back").await, ["latest", "v3"]);

    // Each boots at the tag the service pulls, on Fargate's metadata, with the backend's stand-in
    // holding 5000 and the load balancer's check on 5000 answered.
    let (code, stdout, stderr) = xtask(
        &["verify", "--task-definition", "shop", "--target-group", "shop", "--published", "--no-metadata-ports"],
        &bed.env(),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let frontend = stdout.lines().find(|l| l.starts_with("frontend: ")).unwrap_or_default();
    assert!(frontend.starts_with("frontend: healthy") && frontend.contains("GET :5000/health got 200"), "{stdout}");

    // Bad input: one line, exit 2, nothing changed.
    for (args, says) in [
        (vec!["--task-definition", "nope"], "no task definition nope is registered"),
        (
            vec!["--task-definition", "shop", "--target-group", "missing"],
            "--target-group missing: there is no such target group",
        ),
        (
            vec!["--task-definition", "shop", "--target-group", "other=shop"],
            "names container other, which no container",
        ),
    ] {
        let mut all = vec!["publish"];
        all.extend(args);
        let (code, stdout, stderr) = xtask(&all, &bed.env());
        assert_eq!(code, 2, "{all:?}\n{stdout}\n{stderr}");
        assert!(stderr.trim().lines().last().unwrap_or_default().contains(says), "{all:?}: {stderr}");
    }
}

/// The shop task as CloudFormation has it: the service puts the frontend behind a target group
/// whose health check asks the backend's port.
const SHOP_STACK: &str = r#"
Resources:
  Cluster:
    Type: AWS::ECS::Cluster
    Properties:
      ClusterName: shop
  Vpc:
    Type: AWS::EC2::VPC
    Properties:
      CidrBlock: 10.0.0.0/16
  Group:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties:
      Port: 80
      Protocol: HTTP
      TargetType: ip
      VpcId: !Ref Vpc
      HealthCheckPort: "5000"
      HealthCheckPath: /health
  Task:
    Type: AWS::ECS::TaskDefinition
    Properties:
      Family: shop
      NetworkMode: awsvpc
      RequiresCompatibilities: [FARGATE]
      Cpu: "256"
      Memory: "512"
      ContainerDefinitions:
        - Name: frontend
          Image: !Sub "${AWS::AccountId}.dkr.ecr.${AWS::Region}.amazonaws.com/shop-front:v3"
          PortMappings:
            - ContainerPort: 80
        - Name: backend
          Image: !Sub "${AWS::AccountId}.dkr.ecr.${AWS::Region}.amazonaws.com/shop-back:v3"
          PortMappings:
            - ContainerPort: 5000
  Service:
    Type: AWS::ECS::Service
    Properties:
      Cluster: !Ref Cluster
      ServiceName: web
      TaskDefinition: !Ref Task
      DesiredCount: 1
      LaunchType: FARGATE
      LoadBalancers:
        - ContainerName: frontend
          ContainerPort: 80
          TargetGroupArn: !Ref Group
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_sidecars_port_stays_the_sidecars_on_every_path_that_reads_definitions() {
    let bed = bed();
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("shop.yaml");
    std::fs::write(&template, SHOP_STACK).unwrap();
    // A whole RegisterTaskDefinition document, the load balancer's check beside the frontend.
    let document = dir.path().join("shop.json");
    std::fs::write(
        &document,
        serde_json::json!({
            "family": "shop", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
            "containerDefinitions": [
                { "name": "frontend", "image": format!("{ECR}/shop-front:v3"), "portMappings": [{ "containerPort": 80 }],
                  "albHealthCheck": { "path": "/health", "port": 5000, "matcher": "200" } },
                { "name": "backend", "image": format!("{ECR}/shop-back:v3"), "portMappings": [{ "containerPort": 5000 }] }
            ]
        })
        .to_string(),
    )
    .unwrap();
    let cloudformation = aws_sdk_cloudformation::Client::new(&bed.aws().await);
    cloudformation.create_stack().stack_name("Shop").template_body(SHOP_STACK).send().await.unwrap();
    // moto's CloudFormation drops a service's load balancers: the cluster's service is made
    // through the ECS API, as Terraform or the console would.
    let vpc = vpc(&bed).await;
    let group = target_group(&bed, &vpc, "shop-api", 80, "5000", "/health").await;
    register_shop(&bed).await;
    let ecs = aws_sdk_ecs::Client::new(&bed.aws().await);
    ecs.create_cluster().cluster_name("shop-api").send().await.unwrap();
    ecs.create_service()
        .cluster("shop-api")
        .service_name("web")
        .task_definition("shop")
        .desired_count(1)
        .load_balancers(
            aws_sdk_ecs::types::LoadBalancer::builder()
                .target_group_arn(&group)
                .container_name("frontend")
                .container_port(80)
                .build(),
        )
        .send()
        .await
        .unwrap();

    for source in [
        vec!["--task-definition", document.to_str().unwrap()],
        vec!["--from", document.to_str().unwrap()],
        vec!["--from", template.to_str().unwrap()],
        vec!["--from", "stack:Shop"],
        vec!["--from", "ecs:shop-api"],
    ] {
        let mut args = vec!["publish", "--dry-run"];
        args.extend(&source);
        let (code, stdout, stderr) = xtask(&args, &bed.env());
        assert_eq!(code, 0, "{source:?}\n{stdout}\n{stderr}");
        assert_eq!(
            ports(&stdout, "shop-front"),
            "80",
            "{source:?}: the backend's 5000 must not be the frontend's:\n{stdout}\n{stderr}"
        );
        assert_eq!(ports(&stdout, "shop-back"), "5000", "{source:?}\n{stdout}");
        assert!(stderr.contains("which container backend of its task maps"), "{source:?}: the plan says so:\n{stderr}");
    }

    // Published from the deployed stack, both boot under it on Fargate: the frontend's
    // placeholder leaves 5000 to the backend, whose stand-in must bind it.
    let (code, stdout, stderr) = xtask(&["publish", "--from", "stack:Shop"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (code, stdout, stderr) =
        xtask(&["verify", "--from", "stack:Shop", "--published", "--no-metadata-ports"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.lines().any(|l| l.starts_with("frontend: healthy") && l.contains("GET :5000/health got 200")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_group_whose_port_is_no_containers_checks_the_one_ecr_container_that_maps_one() {
    let bed = bed();
    let vpc = vpc(&bed).await;
    let ecs = aws_sdk_ecs::Client::new(&bed.aws().await);
    ecs.register_task_definition()
        .family("orders")
        .container_definitions(web("app", &format!("{ECR}/orders:v2"), 3000).build())
        .container_definitions(
            ContainerDefinition::builder().name("log").image("amazon/aws-for-fluent-bit:stable").memory(64).build(),
        )
        .send()
        .await
        .unwrap();
    // The group's own port is 80 (Terraform's default in many modules); the service registers 3000.
    target_group(&bed, &vpc, "orders", 80, "traffic-port", "/ready").await;
    let (code, stdout, stderr) =
        xtask(&["publish", "--task-definition", "orders", "--target-group", "orders"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("its port 80 is no container's, so its check is put on app"), "{stderr}");
    let (code, stdout, stderr) = xtask(
        &["verify", "--task-definition", "orders", "--target-group", "orders", "--published", "--no-metadata-ports"],
        &bed.env(),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("app: healthy") && l.contains("GET :3000/ready got 200")), "{stdout}");
}
