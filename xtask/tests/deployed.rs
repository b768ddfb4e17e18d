//! `--from stack:NAME` and `--from ecs:CLUSTER` against moto's CloudFormation, ECS and ELBv2: a
//! stack that creates its own repository and names a tag through a parameter, a service made
//! through the ECS API alone, and the bad input each can meet. What is published must boot under
//! its definition at the tag the service pulls.

mod common;

use common::*;

/// A stack as a service's pipeline stack has it: its own repository (named: moto names an unnamed
/// `AWS::ECR::Repository` after the stack and logical id in capitals, which ECR's naming rules
/// refuse, so the test names it), a tag given as a parameter, a second container from a
/// repository the stack does not create, a target group, and the service behind it.
const SHOP: &str = r#"
Parameters:
  Tag:
    Type: String
    Default: "1.0.0"
Resources:
  Repo:
    Type: AWS::ECR::Repository
    Properties:
      RepositoryName: shop-api
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
      Port: 3000
      Protocol: HTTP
      TargetType: ip
      VpcId: !Ref Vpc
      HealthCheckPath: /health
      Matcher:
        HttpCode: "200-299"
  Task:
    Type: AWS::ECS::TaskDefinition
    Properties:
      Family: shop-api
      NetworkMode: awsvpc
      RequiresCompatibilities: [FARGATE]
      Cpu: "256"
      Memory: "512"
      ContainerDefinitions:
        - Name: web
          Image: !Sub "${AWS::AccountId}.dkr.ecr.${AWS::Region}.amazonaws.com/${Repo}:${Tag}"
          PortMappings:
            - ContainerPort: 3000
        - Name: worker
          Image: !Sub "${AWS::AccountId}.dkr.ecr.${AWS::Region}.amazonaws.com/shop-worker:latest"
          HealthCheck:
            Command: ["CMD-SHELL", "curl -f http://localhost:8081/ready || exit 1"]
            Timeout: 3
            Retries: 2
  Service:
    Type: AWS::ECS::Service
    Properties:
      Cluster: !Ref Cluster
      ServiceName: api
      TaskDefinition: !Ref Task
      DesiredCount: 1
      LaunchType: FARGATE
      LoadBalancers:
        - ContainerName: web
          ContainerPort: 3000
          TargetGroupArn: !Ref Group
"#;

async fn create_stack(bed: &Bed, name: &str, template: &str, parameters: &[(&str, &str)]) {
    let cloudformation = aws_sdk_cloudformation::Client::new(&bed.aws().await);
    let mut request = cloudformation.create_stack().stack_name(name).template_body(template);
    for (key, value) in parameters {
        request = request.parameters(
            aws_sdk_cloudformation::types::Parameter::builder().parameter_key(*key).parameter_value(*value).build(),
        );
    }
    request.send().await.unwrap_or_else(|e| panic!("CreateStack {name}: {e:?}"));
}

fn assert_healthy(stdout: &str, container: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{container}: ")))
        .unwrap_or_else(|| panic!("no line for {container}:\n{stdout}"));
    assert!(line.starts_with(&format!("{container}: healthy")), "{line}");
    line.to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployed_stack_gets_its_own_repository_filled_at_the_tag_it_names() {
    let bed = bed();
    create_stack(&bed, "Shop", SHOP, &[("Tag", "2.0.0")]).await;
    let ecr = bed.ecr().await;

    let (code, stdout, stderr) = xtask(&["publish", "--from", "stack:Shop"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("stack Shop: CREATE_COMPLETE"), "{stderr}");
    // The stack's repository is filled at the parameter's tag; the other is created by publish.
    assert_eq!(registry_tags(&bed, "shop-api").await, ["2.0.0", "latest"]);
    assert_eq!(registry_tags(&bed, "shop-worker").await, ["latest"]);
    let mut names = bed.repository_names().await;
    names.sort();
    assert_eq!(names, ["shop-api", "shop-worker"]);
    // publish set nothing up on the stack's repository: no tag of ours, no lifecycle policy.
    let arn = |name: &str| format!("arn:aws:ecr:eu-west-1:123456789012:repository/{name}");
    let tags = ecr.list_tags_for_resource().resource_arn(arn("shop-api")).send().await.unwrap();
    assert!(tags.tags().iter().all(|t| t.key() != "managed-by"), "{tags:?}");
    assert!(
        ecr.get_lifecycle_policy().repository_name("shop-api").send().await.is_err(),
        "the stack's repository got a lifecycle policy"
    );
    assert!(ecr.get_lifecycle_policy().repository_name("shop-worker").send().await.is_ok());

    // A re-run changes nothing.
    let (code, stdout, stderr) = xtask(&["publish", "--from", "stack:Shop"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        row(&stdout, "shop-api").contains("up to date") && row(&stdout, "shop-worker").contains("up to date"),
        "{stdout}"
    );

    // Each container boots under what was published, at the tag its definition names, on EC2's
    // metadata and on Fargate's.
    for metadata in [&[][..], &["--no-metadata-ports"][..]] {
        let mut args = vec!["verify", "--from", "stack:Shop", "--published"];
        args.extend_from_slice(metadata);
        let (code, stdout, stderr) = xtask(&args, &bed.env());
        assert_eq!(code, 0, "{metadata:?}\n{stdout}\n{stderr}");
        assert!(assert_healthy(&stdout, "web").contains("GET :3000/health got 200 (matcher 200-299)"), "{stdout}");
        assert!(assert_healthy(&stdout, "worker").contains("health check"), "{stdout}");
    }

    // ECS as AWS answers it: the stack's service and what ECS records of its deployments.
    let scheduler = bed.scheduler().unwrap();
    let (code, stdout, stderr) =
        xtask(&["status", "--from", "stack:Shop"], &with(bed.env(), "AWS_ENDPOINT_URL", scheduler.endpoint()));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("shop-api: belongs to stack Shop (Resources.Repo)"), "{stdout}");
    assert!(stdout.contains("shop-api: :2.0.0 (a definition names it): placeholder"), "{stdout}");

    let (code, stdout, stderr) = xtask(&["teardown", "--from", "stack:Shop", "--yes"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("shop-api: kept: belongs to stack Shop"), "{stdout}");
    assert!(stdout.contains("shop-worker: deleted"), "{stdout}");
    assert_eq!(bed.repository_names().await, ["shop-api"], "teardown never deletes the stack's repository");

    // --wait follows the stack's service; moto never starts its tasks, so it is never steady.
    let (code, stdout, stderr) =
        xtask(&["publish", "--from", "stack:Shop", "--wait", "--wait-timeout", "3s"], &bed.env());
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stderr.contains("[shop/api] 0/1 running"), "{stderr}");
    assert!(stdout.contains("shop/api: NOT STEADY: 0/1 running"), "{stdout}");
    assert!(stderr.contains("not every service was steady within 3s"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_made_through_the_ecs_api_alone() {
    let bed = bed();
    let config = bed.aws().await;
    // The VPC the target group needs, from a stack of its own (the test has no EC2 client).
    create_stack(
        &bed,
        "Network",
        "Resources:\n  Vpc:\n    Type: AWS::EC2::VPC\n    Properties:\n      CidrBlock: 10.1.0.0/16\n",
        &[],
    )
    .await;
    let cloudformation = aws_sdk_cloudformation::Client::new(&config);
    let resources = cloudformation.list_stack_resources().stack_name("Network").send().await.unwrap();
    let vpc = resources.stack_resource_summaries()[0].physical_resource_id().unwrap().to_owned();

    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let group = elbv2
        .create_target_group()
        .name("legacy-api")
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(8080)
        .vpc_id(vpc)
        .target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Ip)
        .health_check_path("/healthz")
        .matcher(aws_sdk_elasticloadbalancingv2::types::Matcher::builder().http_code("200,302").build())
        .send()
        .await
        .unwrap();
    let group_arn = group.target_groups()[0].target_group_arn().unwrap().to_owned();

    use aws_sdk_ecs::types::{ContainerDefinition, KeyValuePair, LoadBalancer, PortMapping};
    let ecs = aws_sdk_ecs::Client::new(&config);
    ecs.create_cluster().cluster_name("legacy").send().await.unwrap();
    ecs.register_task_definition()
        .family("legacy-api")
        .container_definitions(
            ContainerDefinition::builder()
                .name("api")
                .image("123456789012.dkr.ecr.eu-west-1.amazonaws.com/legacy-api:v3")
                .memory(512)
                .port_mappings(PortMapping::builder().container_port(8080).build())
                .environment(KeyValuePair::builder().name("SPRING_PROFILES_ACTIVE").value("prod").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    ecs.create_service()
        .cluster("legacy")
        .service_name("api")
        .task_definition("legacy-api")
        .desired_count(1)
        .load_balancers(
            LoadBalancer::builder().target_group_arn(&group_arn).container_name("api").container_port(8080).build(),
        )
        .send()
        .await
        .unwrap();

    let (code, stdout, stderr) = xtask(&["publish", "--from", "ecs:legacy"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(registry_tags(&bed, "legacy-api").await, ["latest", "v3"]);
    assert!(row(&stdout, "legacy-api").contains("created"), "{stdout}");

    for source in ["ecs:legacy", "ecs:legacy/api"] {
        let (code, stdout, stderr) =
            xtask(&["verify", "--from", source, "--published", "--no-metadata-ports"], &bed.env());
        assert_eq!(code, 0, "{source}\n{stdout}\n{stderr}");
        assert!(assert_healthy(&stdout, "api").contains("GET :8080/healthz got 200 (matcher 200,302)"), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn what_cannot_be_read_is_one_line_exit_2_and_nothing_changed() {
    let bed = bed();
    let ecs = aws_sdk_ecs::Client::new(&bed.aws().await);
    ecs.create_cluster().cluster_name("empty").send().await.unwrap();
    ecs.create_cluster().cluster_name("hub").send().await.unwrap();
    ecs.register_task_definition()
        .family("hub")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder().name("web").image("nginx:1.25").memory(256).build(),
        )
        .send()
        .await
        .unwrap();
    ecs.create_service()
        .cluster("hub")
        .service_name("web")
        .task_definition("hub")
        .desired_count(1)
        .send()
        .await
        .unwrap();

    for (source, says) in [
        ("stack:Nope", "there is no stack Nope in eu-west-1"),
        ("ecs:nowhere", "there is no cluster nowhere"),
        ("ecs:empty", "cluster empty has no services"),
        ("ecs:hub/missing", "service"),
        ("ecs:hub", "uses nginx:1.25: not an ECR repository"),
    ] {
        for task in ["publish", "verify", "status", "teardown"] {
            let (code, stdout, stderr) = xtask(&[task, "--from", source], &bed.env());
            assert_eq!(code, 2, "{task} --from {source}:\n{stdout}\n{stderr}");
            let last = stderr.trim().lines().last().unwrap_or_default();
            assert!(last.starts_with("error: ") && last.contains(says), "{task} --from {source}: {stderr}");
        }
    }
    assert!(bed.repository_names().await.is_empty(), "nothing may be created");
    // --wait needs services to follow.
    let (code, _, stderr) = xtask(&["publish", "--containers", "x1", "--wait"], &bed.env());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--wait follows ECS services"), "{stderr}");
}

/// `cdk deploy` creates a change set, then executes it: between the two the stack is
/// REVIEW_IN_PROGRESS, with an id but no template or resources. Publish says so and changes
/// nothing; with `--wait` it waits for the change set to run.
#[tokio::test(flavor = "multi_thread")]
async fn a_stack_whose_change_set_is_not_executed_yet_is_waited_for() {
    use aws_sdk_cloudformation::types::{ChangeSetType, Parameter};
    let bed = bed();
    let scheduler = bed.scheduler().unwrap();
    let env = with(bed.env(), "AWS_ENDPOINT_URL", scheduler.endpoint());
    let cloudformation = aws_sdk_cloudformation::Client::new(&bed.aws().await);
    cloudformation
        .create_change_set()
        .stack_name("Later")
        .change_set_name("first")
        .change_set_type(ChangeSetType::Create)
        .template_body(SHOP)
        .parameters(Parameter::builder().parameter_key("Tag").parameter_value("2.0.0").build())
        .send()
        .await
        .unwrap();

    let (code, stdout, stderr) = xtask(&["publish", "--from", "stack:Later"], &env);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stderr.contains("stack Later is REVIEW_IN_PROGRESS: its change set has not been executed"), "{stderr}");
    assert!(bed.repository_names().await.is_empty(), "nothing created");

    let waiting = {
        let env = env.clone();
        std::thread::spawn(move || xtask(&["publish", "--from", "stack:Later", "--wait"], &env))
    };
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    cloudformation.execute_change_set().stack_name("Later").change_set_name("first").send().await.unwrap();
    let (code, stdout, stderr) = waiting.join().unwrap();
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("stack Later has a change set not executed yet (REVIEW_IN_PROGRESS)"), "{stderr}");
    assert_eq!(registry_tags(&bed, "shop-api").await, ["2.0.0", "latest"]);
}
