//! The recipes in docs/recipes.md, taken from the page itself and run as written with the real
//! tools: Terraform 1.11 with the AWS provider (a configuration in the commonest public shape),
//! the AWS CLI's `cloudformation deploy`, bash. Each ends with the image at the tag the service
//! pulls running under the definition, with Fargate's metadata and the target group's check.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The fenced block after `<!-- recipe: NAME -->` in docs/recipes.md.
fn recipe(name: &str) -> String {
    let page = std::fs::read_to_string(Path::new(ROOT).join("docs/recipes.md")).expect("docs/recipes.md");
    let marker = format!("<!-- recipe: {name} -->");
    let after = page.split_once(&marker).unwrap_or_else(|| panic!("no {marker} in docs/recipes.md")).1;
    let fence = after.find("```").expect("a fenced block after the marker");
    let body = &after[fence..];
    let start = body.find('\n').expect("a fence line") + 1;
    let end = body[start..].find("\n```").expect("the block's end") + start;
    body[start..end].to_owned() + "\n"
}

/// A `cargo` first on PATH that runs `cargo xtask ...` as this checkout's alias would, with the
/// xtask the tests built, and anything else with the real cargo: the recipes run as written
/// without building xtask again. It refuses where the alias does not exist (not a checkout).
fn path_with_cargo(dir: &Path) -> String {
    let real = Command::new("sh").args(["-c", "command -v cargo"]).output().unwrap();
    let real = String::from_utf8_lossy(&real.stdout).trim().to_owned();
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = xtask ] || exec {real} \"$@\"\n\
         grep -q '^xtask = \"run --package xtask --\"' .cargo/config.toml 2>/dev/null || {{ echo \"error: no such command: xtask ($PWD is no checkout of ecs-minimal-container)\" >&2; exit 101; }}\n\
         shift\nexec {XTASK} \"$@\"\n"
    );
    let shim = dir.join("cargo");
    std::fs::write(&shim, script).unwrap();
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let venv = Path::new(ROOT).join(".venv/bin");
    format!("{}:{}:{}", dir.display(), venv.display(), std::env::var("PATH").unwrap_or_default())
}

/// The environment a user's shell has: the bed's AWS, the tools on PATH, the checkout named, and
/// nothing of the test's own cargo run.
fn shell_env(bed: &Bed, tools: &Path, endpoint: &str) -> Vec<(&'static str, String)> {
    let mut env = with(bed.env(), "AWS_ENDPOINT_URL", endpoint.to_owned());
    env.push(("PATH", path_with_cargo(tools)));
    env.push(("PLACEHOLDER_CHECKOUT", checkout().display().to_string()));
    env
}

fn checkout() -> PathBuf {
    Path::new(ROOT).canonicalize().unwrap()
}

/// Runs `script` with bash in `dir`, `-e` so a failed step fails it; (exit code, stdout, stderr).
fn bash(script: &str, dir: &Path, env: &[(&str, String)]) -> (i32, String, String) {
    let mut command = Command::new("bash");
    command.args(["-e", "-c", script]).current_dir(dir);
    for (name, _) in std::env::vars() {
        if name.starts_with("CARGO_") && name != "CARGO_HOME" {
            command.env_remove(name);
        }
    }
    let output = command.envs(env.iter().map(|(k, v)| (k, v))).output().expect("bash");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `verify` of `args`, each container published: healthy, with `expect` in its line.
fn boots(bed: &Bed, args: &[&str], container: &str, expect: &str) {
    let mut all = vec!["verify", "--published", "--no-metadata-ports"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = xtask(&all, &bed.env());
    assert_eq!(code, 0, "{all:?}\n{stdout}\n{stderr}");
    let line = stdout.lines().find(|l| l.starts_with(&format!("{container}: "))).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.starts_with(&format!("{container}: healthy")) && line.contains(expect), "{line}");
}

/// The commonest public shape: the repository, a Fargate task definition pulling
/// `${repository_url}:${var.image_tag}` with its own curl health check, a target group checking
/// `/actuator/health`, and the service behind it (with the network configuration real Fargate
/// services have, which moto's answer needs too).
const SAME_CONFIGURATION: &str = r#"
variable "image_tag" {
  type    = string
  default = "v1.4.2"
}

resource "aws_vpc" "main" {
  cidr_block = "10.0.0.0/16"
}

resource "aws_subnet" "a" {
  vpc_id     = aws_vpc.main.id
  cidr_block = "10.0.1.0/24"
}

resource "aws_security_group" "api" {
  vpc_id = aws_vpc.main.id
}

resource "aws_ecr_repository" "api" {
  name = "api"
}

resource "aws_ecs_cluster" "main" {
  name = "main"
}

resource "aws_lb_target_group" "api" {
  name        = "api"
  port        = 8080
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = aws_vpc.main.id
  health_check {
    path    = "/actuator/health"
    matcher = "200"
  }
}

resource "aws_ecs_task_definition" "api" {
  family                   = "api"
  network_mode             = "awsvpc"
  requires_compatibilities = ["FARGATE"]
  cpu                      = "256"
  memory                   = "512"
  container_definitions = jsonencode([{
    name         = "api"
    image        = "${aws_ecr_repository.api.repository_url}:${var.image_tag}"
    essential    = true
    portMappings = [{ containerPort = 8080, protocol = "tcp" }]
    healthCheck = {
      command  = ["CMD-SHELL", "curl -f http://localhost:8080/actuator/health || exit 1"]
      interval = 30
      timeout  = 5
      retries  = 3
    }
  }])
}

resource "aws_ecs_service" "api" {
  name            = "api"
  cluster         = aws_ecs_cluster.main.id
  task_definition = aws_ecs_task_definition.api.arn
  desired_count   = 1
  launch_type     = "FARGATE"
  network_configuration {
    subnets         = [aws_subnet.a.id]
    security_groups = [aws_security_group.api.id]
  }
  load_balancer {
    target_group_arn = aws_lb_target_group.api.arn
    container_name   = "api"
    container_port   = 8080
  }
  depends_on = [terraform_data.placeholder]
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn terraform_with_the_repository_in_the_same_configuration() {
    let bed = bed();
    let tools = tempfile::tempdir().unwrap();
    let env = shell_env(&bed, tools.path(), &bed.moto.endpoint());
    let terraform = testbed::Terraform::new(&bed.moto.endpoint()).expect("Terraform and its AWS provider");
    terraform.file("main.tf", SAME_CONFIGURATION).unwrap();
    terraform.file("placeholder.tf", &recipe("terraform")).unwrap();
    let service = recipe("terraform-service");
    assert!(
        service.contains("depends_on = [terraform_data.placeholder]")
            && SAME_CONFIGURATION.contains("depends_on = [terraform_data.placeholder]")
    );
    terraform.run(&["init", "-input=false"], &env).unwrap();

    // A fresh plan cannot know the definitions: publish says so, and where to look instead.
    terraform.run(&["plan", "-input=false", "-out", "plan.out"], &env).unwrap();
    let shown = terraform.run(&["show", "-json", "plan.out"], &env).unwrap();
    let plan = terraform.dir().join("plan.json");
    std::fs::write(&plan, &shown.stdout).unwrap();
    let (code, stdout, stderr) = xtask(&["publish", "--from", plan.to_str().unwrap(), "--dry-run"], &bed.env());
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("known only after apply") && stderr.contains("terraform_data with `publish --task-definition"),
        "{stderr}"
    );

    let applied = terraform
        .run(
            &[
                "apply",
                "-auto-approve",
                "-input=false",
                "-var",
                &format!("placeholder_checkout={}", checkout().display()),
            ],
            &env,
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    let said = String::from_utf8_lossy(&applied.stdout);
    assert!(
        said.contains("terraform_data.placeholder (local-exec)")
            && said.contains("api/api pulls :v1.4.2: the placeholder is there"),
        "{said}"
    );
    assert_eq!(registry_tags(&bed, "api").await, ["latest", "v1.4.2"], "the tag the service pulls");
    assert!(said.contains("aws_ecs_service.api: Creation complete"), "{said}");

    // Under the definition as registered, behind the target group: Fargate's metadata lists no
    // ports, so only what publish baked (8080, from the definition) serves.
    boots(&bed, &["--task-definition", "api", "--target-group", "api"], "api", "GET :8080/actuator/health got 200");

    // A new tag is a new revision: the trigger runs publish again, and it fills the new tag.
    let apply = |tag: &str| {
        let checkout = format!("placeholder_checkout={}", checkout().display());
        let tag = format!("image_tag={tag}");
        terraform.run(&["apply", "-auto-approve", "-input=false", "-var", &checkout, "-var", &tag], &env).unwrap()
    };
    let reapplied = apply("v1.5.0");
    assert!(String::from_utf8_lossy(&reapplied.stdout).contains("api/api pulls :v1.5.0: the placeholder is there"));
    assert_eq!(registry_tags(&bed, "api").await, ["latest", "v1.4.2", "v1.5.0"]);

    // Once the pipeline has pushed a real image, a revision applied before its image is pushed
    // gets no placeholder: it would be deployed over the running service.
    let docker = docker().await;
    let (pushed, _cleanup) =
        push_image(&docker, &bed.registry.host(), bed.registry_credentials(), "api", "v1.5.0", true).await;
    pushed.unwrap();
    let ahead = apply("v1.6.0");
    let said = String::from_utf8_lossy(&ahead.stdout);
    assert!(said.contains(":v1.6.0 is empty, but the repository already holds a real image (:v1.5.0"), "{said}");
    assert_eq!(registry_tags(&bed, "api").await, ["latest", "v1.4.2", "v1.5.0"]);
}

/// The repository is made elsewhere (another stack, a shared registry) and read with a data source.
const REPOSITORY_ELSEWHERE: &str = r#"
data "aws_ecr_repository" "billing" {
  name = "billing"
}

resource "aws_ecs_task_definition" "billing" {
  family                   = "billing"
  network_mode             = "awsvpc"
  requires_compatibilities = ["FARGATE"]
  cpu                      = "256"
  memory                   = "512"
  container_definitions = jsonencode([{
    name         = "billing"
    image        = "${data.aws_ecr_repository.billing.repository_url}:2.3.0"
    essential    = true
    command      = ["gunicorn", "--bind", "0.0.0.0:8001", "billing.wsgi"]
    portMappings = [{ containerPort = 8001 }]
    healthCheck = {
      command = ["CMD-SHELL", "wget -q --spider http://127.0.0.1:8001/health/ || exit 1"]
    }
  }])
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn terraform_with_the_repository_made_elsewhere_from_the_plan() {
    let bed = bed();
    bed.ecr().await.create_repository().repository_name("billing").send().await.unwrap();
    let tools = tempfile::tempdir().unwrap();
    let env = shell_env(&bed, tools.path(), &bed.moto.endpoint());
    let terraform = testbed::Terraform::new(&bed.moto.endpoint()).expect("Terraform and its AWS provider");
    terraform.file("main.tf", REPOSITORY_ELSEWHERE).unwrap();
    terraform.run(&["init", "-input=false"], &env).unwrap();
    let mut env = env;
    env.extend(terraform.env());
    let (code, stdout, stderr) = bash(&recipe("terraform-plan"), terraform.dir(), &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("billing: aws_ecs_task_definition.billing/billing pulls :2.3.0: the placeholder is there"),
        "{stdout}"
    );
    assert!(stdout.contains("Apply complete!"), "{stdout}");
    assert_eq!(registry_tags(&bed, "billing").await, ["2.3.0", "latest"]);
    boots(&bed, &["--task-definition", "billing"], "billing", "health check");
}

/// A service's stack as its pipeline stack has it: its own repository, the tag as a parameter,
/// the service.
const SERVICE_STACK: &str = r#"
Parameters:
  Tag:
    Type: String
    Default: "3.1.0"
Resources:
  Repo:
    Type: AWS::ECR::Repository
    Properties:
      RepositoryName: orders
  Cluster:
    Type: AWS::ECS::Cluster
    Properties:
      ClusterName: orders
  Task:
    Type: AWS::ECS::TaskDefinition
    Properties:
      Family: orders
      NetworkMode: awsvpc
      RequiresCompatibilities: [FARGATE]
      Cpu: "256"
      Memory: "512"
      ContainerDefinitions:
        - Name: orders
          Image: !Sub "${AWS::AccountId}.dkr.ecr.${AWS::Region}.amazonaws.com/${Repo}:${Tag}"
          PortMappings:
            - ContainerPort: 3000
          HealthCheck:
            Command: ["CMD-SHELL", "curl -f http://localhost:3000/health || exit 1"]
  Service:
    Type: AWS::ECS::Service
    Properties:
      Cluster: !Ref Cluster
      ServiceName: orders
      TaskDefinition: !Ref Task
      DesiredCount: 2
      LaunchType: FARGATE
"#;

#[tokio::test(flavor = "multi_thread")]
async fn cloudformation_deploy_beside_publish_from_the_stack() {
    let bed = bed();
    let scheduler = bed.scheduler().unwrap();
    let tools = tempfile::tempdir().unwrap();
    let env = shell_env(&bed, tools.path(), &scheduler.endpoint());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("service.yaml"), SERVICE_STACK).unwrap();
    let (code, stdout, stderr) = bash(&recipe("cloudformation"), dir.path(), &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("orders: Task/orders pulls :3.1.0: the placeholder is there"), "{stdout}");
    // The service came up on the placeholder: its tasks run the digest publish pushed.
    assert!(stdout.contains("orders/orders: steady: 2/2 running"), "{stdout}\n{stderr}");
    let (index, digest) = bed.registry_json("orders/manifests/3.1.0").await.expect("the tag the service pulls");
    assert!(index["manifests"].is_array());
    assert_eq!(scheduler.running_digests("orders", "orders"), [Some(digest.clone()), Some(digest)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ci_job_publishes_from_the_definition_it_deploys_before_the_deploy() {
    let workflow = yaml_rust2::YamlLoader::load_from_str(&recipe("github-actions")).expect("the workflow is YAML");
    let steps = workflow[0]["jobs"]["deploy"]["steps"].as_vec().expect("jobs.deploy.steps");
    let named = |name: &str| {
        steps.iter().position(|s| s["name"].as_str() == Some(name)).unwrap_or_else(|| panic!("no step {name}"))
    };
    let (publish, deploy) = (named("Placeholder images"), named("Deploy"));
    assert!(publish < deploy, "publish runs before the deploy");
    let cache = steps
        .iter()
        .find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("actions/cache@")))
        .expect("a cache step");
    assert!(
        cache["with"]["path"].as_str().unwrap().contains("ecs-minimal-container/target"),
        "the cargo build is cached"
    );
    assert!(cache["with"]["key"].as_str().unwrap().contains("hashFiles('ecs-minimal-container/Cargo.lock')"));
    assert_eq!(steps[publish]["working-directory"].as_str(), Some("ecs-minimal-container"));

    // The step's script as GitHub runs it (bash -e), in the checkout, with the workspace holding
    // the task definition the pipeline deploys (a CI template's account and region left unfilled).
    let bed = bed();
    let workspace = tempfile::tempdir().unwrap();
    std::fs::create_dir(workspace.path().join(".aws")).unwrap();
    let definition = serde_json::json!({
        "family": "checkout", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": "512",
        "containerDefinitions": [{ "name": "web", "image": "<IMAGE1_NAME>", "portMappings": [{ "containerPort": 3000 }] },
            { "name": "worker", "image": "${AWS_ACCOUNT_ID}.dkr.ecr.${AWS_REGION}.amazonaws.com/checkout-worker:main",
              "healthCheck": { "command": ["CMD-SHELL", "curl -f http://localhost:9000/healthz || exit 1"] } }]
    });
    std::fs::write(workspace.path().join(".aws/task-definition.json"), definition.to_string()).unwrap();
    let tools = tempfile::tempdir().unwrap();
    let mut env = shell_env(&bed, tools.path(), &bed.moto.endpoint());
    env.push(("GITHUB_WORKSPACE", workspace.path().display().to_string()));
    env.push(("RUNNER_TEMP", tools.path().display().to_string()));
    let (code, stdout, stderr) = bash(steps[publish]["run"].as_str().unwrap(), &checkout(), &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("checkout-worker: checkout/worker pulls :main: the placeholder is there"), "{stdout}");
    assert!(stderr.contains("<IMAGE1_NAME>") && stderr.contains("name it with --containers REPOSITORY"), "{stderr}");
    // The worker under what was published for it (the template's repository is the pipeline's).
    let worker = workspace.path().join("worker.json");
    std::fs::write(&worker, serde_json::json!({ "family": "checkout", "containerDefinitions": [definition["containerDefinitions"][1].clone()] }).to_string()).unwrap();
    boots(&bed, &["--task-definition", worker.to_str().unwrap()], "worker", "health check");
}

#[tokio::test(flavor = "multi_thread")]
async fn names_typed_by_hand_fill_the_tags_registered_definitions_pull() {
    use aws_sdk_ecs::types::{ContainerDefinition, PortMapping};
    let bed = bed();
    let ecs = aws_sdk_ecs::Client::new(&bed.aws().await);
    ecs.register_task_definition()
        .family("my-svc-prod")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("123456789012.dkr.ecr.eu-west-1.amazonaws.com/my-svc-prod:2026.12.01")
                .memory(512)
                .port_mappings(PortMapping::builder().container_port(8000).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let tools = tempfile::tempdir().unwrap();
    let env = shell_env(&bed, tools.path(), &bed.moto.endpoint());
    let (code, stdout, stderr) = bash(&recipe("names"), &checkout(), &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("my-svc-prod: my-svc-prod/app pulls :2026.12.01: the placeholder is there"), "{stdout}");
    assert!(
        stdout.contains("my-svc-staging: the placeholder is at :latest; no task definition was read for it"),
        "{stdout}"
    );
    assert_eq!(registry_tags(&bed, "my-svc-prod").await, ["2026.12.01", "latest"]);
    boots(&bed, &["--task-definition", "my-svc-prod"], "app", "GET :8000/ got 200");
}

/// A CDK app in the commonest shape: the stack makes the repository, the cluster and a Fargate
/// service whose image is that repository at a tag (`ContainerImage.fromEcrRepository`). Only
/// the synthesizer is the test bed's: moto has no bootstrap stack.
const CDK_APP: &str = r#"
const cdk = require('aws-cdk-lib');
const ec2 = require('aws-cdk-lib/aws-ec2');
const ecr = require('aws-cdk-lib/aws-ecr');
const ecs = require('aws-cdk-lib/aws-ecs');

const app = new cdk.App();
const stack = new cdk.Stack(app, 'MyServiceStack', { synthesizer: new cdk.BootstraplessSynthesizer() });
const repository = new ecr.Repository(stack, 'Repository', { repositoryName: 'my-svc' });
const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 1, natGateways: 0, subnetConfiguration: [{ name: 'public', subnetType: ec2.SubnetType.PUBLIC }] });
const cluster = new ecs.Cluster(stack, 'Cluster', { vpc, clusterName: 'my-svc' });
const task = new ecs.FargateTaskDefinition(stack, 'Task', { cpu: 256, memoryLimitMiB: 512 });
task.addContainer('web', {
  image: ecs.ContainerImage.fromEcrRepository(repository, '2026.12.1'),
  portMappings: [{ containerPort: 8080 }],
  healthCheck: { command: ['CMD-SHELL', 'curl -f http://localhost:8080/health || exit 1'] },
});
new ecs.FargateService(stack, 'Service', { cluster, taskDefinition: task, desiredCount: 1, assignPublicIp: true, serviceName: 'web' });
"#;

#[tokio::test(flavor = "multi_thread")]
async fn cdk_deploy_beside_publish_from_the_stack() {
    let bed = bed();
    let scheduler = bed.scheduler().unwrap();
    let cdk = Path::new(ROOT).join("testbed/cdk/node_modules");
    assert!(
        cdk.join(".bin/cdk").exists(),
        "the CDK CLI is not installed: run `bash .ci/install` (npm ci in testbed/cdk)"
    );
    let tools = tempfile::tempdir().unwrap();
    let mut env = shell_env(&bed, tools.path(), &scheduler.endpoint());
    let path = env.iter().find(|(k, _)| *k == "PATH").map(|(_, v)| v.clone()).unwrap();
    env.retain(|(k, _)| *k != "PATH");
    env.push(("PATH", format!("{}:{path}", cdk.join(".bin").display())));
    env.push(("NODE_PATH", cdk.display().to_string()));
    env.push(("CDK_DISABLE_VERSION_CHECK", "1".to_owned()));
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("app.js"), CDK_APP).unwrap();
    std::fs::write(app.path().join("cdk.json"), r#"{ "app": "node app.js" }"#).unwrap();

    let (code, stdout, stderr) = bash(&recipe("cdk"), app.path(), &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let pulled = stdout.lines().find(|l| l.trim_start().starts_with("my-svc: ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(pulled.ends_with("/web pulls :2026.12.1: the placeholder is there"), "{pulled}");
    assert!(stdout.contains("my-svc/web: steady: 1/1 running"), "{stdout}\n{stderr}");
    let (_, digest) = bed.registry_json("my-svc/manifests/2026.12.1").await.expect("the tag the service pulls");
    assert_eq!(scheduler.running_digests("web", "web"), [Some(digest)]);
    boots(&bed, &["--from", "stack:MyServiceStack"], "web", "health check");
}
