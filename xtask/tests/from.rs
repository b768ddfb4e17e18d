//! `--from PATH` end to end against the test bed: publish finds the repositories in a CDK synth
//! output, a CloudFormation template and a Terraform plan (tests/stacks/), creates exactly those the
//! stack does not create itself, and verify boots each container under what was published, with
//! its target group's check. Every CloudFormation snippet printed passes cfn-lint.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn stack(name: &str) -> String {
    format!("{}/tests/stacks/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `publish --from` then `verify --from --published`: the repositories made, and publish's and
/// verify's output.
async fn publish_and_verify(bed: &Bed, path: &str) -> (Vec<String>, String, String) {
    let (code, stdout, stderr) = xtask(&["publish", "--from", path], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let published = format!("{stdout}\n{stderr}");
    let mut names = bed.repository_names().await;
    names.sort();
    let (code, stdout, stderr) = xtask(&["verify", "--from", path, "--published"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    (names, published, format!("{stdout}\n{stderr}"))
}

fn healthy<'a>(output: &'a str, container: &str) -> &'a str {
    let line = output
        .lines()
        .find(|l| l.starts_with(&format!("{container}: ")))
        .unwrap_or_else(|| panic!("no line for {container}:\n{output}"));
    assert!(line.starts_with(&format!("{container}: healthy")), "{line}");
    line
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cdk_synth_output_with_a_nested_stack() {
    let bed = bed();
    let (names, published, verified) = publish_and_verify(&bed, &stack("cdk.out")).await;
    assert_eq!(names, ["from-cdk-api", "from-cdk-worker"], "the stack's own from-cdk-jobs is not created");
    assert!(published.contains("container proxy uses nginx: not an ECR repository, left alone"), "{published}");
    assert!(published.contains("the stack creates repository from-cdk-jobs itself"), "{published}");
    assert!(healthy(&verified, "api").contains("GET :8080/health got 200 (matcher 200-299)"), "{verified}");
    healthy(&verified, "worker");
    assert!(verified.contains("2 of 2 container(s) came up healthy"), "{verified}");
    lint_printed_snippets(&published);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cloudformation_template_with_parameters_and_sub_and_status_and_teardown_from_it() {
    let bed = bed();
    let template = stack("cloudformation.yaml");
    let (names, published, verified) = publish_and_verify(&bed, &template).await;
    assert_eq!(names, ["from-cfn-web"]);
    assert!(
        published.contains("public.ecr.aws/aws-observability/aws-otel-collector:latest: not an ECR repository"),
        "{published}"
    );
    assert!(published.contains("the stack creates repository from-cfn-web-jobs itself"), "{published}");
    let web = healthy(&verified, "web");
    assert!(web.contains("health check") && web.contains("GET :3000/healthz got 200 (matcher 200,302)"), "{web}");
    lint_printed_snippets(&published);

    let (code, stdout, stderr) = xtask(&["status", "--from", &template], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.trim_end().ends_with("1 of 1 repositories still serve the placeholder"), "{stdout}");
    let (code, stdout, stderr) = xtask(&["teardown", "--from", &template, "--yes"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("from-cfn-web: deleted"), "{stdout}");
    assert!(bed.repository_names().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terraform_plan() {
    let bed = bed();
    let (names, published, verified) = publish_and_verify(&bed, &stack("terraform-plan.json")).await;
    assert_eq!(names, ["from-tf-app"]);
    assert!(published.contains("container aws_ecs_task_definition.migrate: cannot resolve its image"), "{published}");
    assert!(published.contains("aws_ecr_repository.migrate.repository_url"), "{published}");
    assert!(healthy(&verified, "app").contains("GET :8000/api/health got 200"), "{verified}");
}

#[test]
fn dry_run_lists_what_was_found_and_changes_nothing() {
    let bed = bed();
    let (code, stdout, stderr) = xtask(&["publish", "--from", &stack("cdk.out"), "--dry-run"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name}:\n{stdout}"))
    };
    let api = row("api");
    for part in [
        "from-cdk-api",
        "8080",
        "CMD-SHELL curl -f http://localhost:8080/health || exit 1",
        "GET :8080/health 200-299",
        "yes",
    ] {
        assert!(api.contains(part), "{part}: {api}");
    }
    assert!(row("proxy").contains("nginx (not ours)") && row("proxy").ends_with("not ours"), "{stdout}");
    assert!(
        row("jobs").contains("from-cdk-jobs (the stack's)")
            && row("jobs").contains("no: the stack creates its repository"),
        "{stdout}"
    );
    assert!(row("worker").contains("from-cdk-worker"), "{stdout}");
    assert!(stdout.contains("Dry run: nothing was changed."), "{stdout}");

    let (code, stdout, stderr) =
        xtask(&["publish", "--from", &stack("terraform-plan.json"), "--dry-run", "--output", "json"], &bed.env());
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
    let kinds: Vec<(&str, &str)> = report["from"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["container"].as_str().unwrap(), f["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [("aws_ecs_task_definition.migrate", "unresolved"), ("app", "ecr"), ("datadog-agent", "not-ours")]
    );
    assert_eq!(
        report["from"][1]["load_balancer"],
        serde_json::json!({ "path": "/api/health", "port": 8000, "matcher": "200" })
    );
    assert_eq!(report["containers"][0]["action"], "would-create");
    assert!(tokio::runtime::Runtime::new().unwrap().block_on(bed.repository_names()).is_empty());
}

#[test]
fn nothing_resolvable_is_one_line_and_exit_2() {
    for command in ["publish", "verify", "status", "teardown"] {
        let (code, _, stderr) = xtask(&[command, "--from", &stack("unresolvable.yaml")], &[]);
        assert_eq!(code, 2, "{command}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{command}: one line: {stderr}");
        assert!(
            stderr.contains("no ECR image resolved") && stderr.contains("Fn::ImportValue SharedApiRepositoryUri"),
            "{stderr}"
        );
        assert!(stderr.contains("parameter RepositoryName has no Default"), "{stderr}");
    }
    let (code, _, stderr) = xtask(&["publish", "--from", "/nonexistent.yaml"], &[]);
    assert_eq!((code, stderr.trim().lines().count()), (2, 1), "{stderr}");
}

/// Each `Image:` line printed (publish's own, and the fix it suggests for a repository the stack
/// creates), and each one in the README, as a container definition's property of a template
/// cfn-lint accepts.
fn lint_printed_snippets(output: &str) {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let from_readme = readme.split('`').filter(|span| span.starts_with("Image: ")).map(str::to_owned);
    let snippets: Vec<String> = output
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Image: "))
        .map(str::to_owned)
        .chain(from_readme)
        .collect();
    assert!(snippets.len() >= 2, "{snippets:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    for (n, snippet) in snippets.iter().enumerate() {
        let template = format!(
            "AWSTemplateFormatVersion: \"2010-09-09\"\nResources:\n  TaskDefinition:\n    Type: AWS::ECS::TaskDefinition\n    Properties:\n      \
             ContainerDefinitions:\n        - Name: app\n          {snippet}\n"
        );
        let file = dir.path().join(format!("snippet-{n}.yaml"));
        std::fs::write(&file, template).unwrap();
        files.push(file);
    }
    cfn_lint(&files);
}

#[test]
fn the_stacks_here_are_templates_cfn_lint_accepts() {
    let cdk: Vec<PathBuf> = ["FromCdkStack.template.json", "FromCdkStackWorkers1F2E3D4C.nested.template.json"]
        .iter()
        .map(|f| Path::new(&stack("cdk.out")).join(f))
        .collect();
    let yaml = ["cloudformation.yaml", "unresolvable.yaml"].map(|f| PathBuf::from(stack(f)));
    cfn_lint(&[cdk, yaml.to_vec()].concat());
}

fn cfn_lint(files: &[PathBuf]) {
    let cfn_lint = workspace().join(".venv/bin/cfn-lint");
    let output = std::process::Command::new(&cfn_lint)
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("{} (`bash .ci/install`): {e}", cfn_lint.display()));
    let said = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let texts: Vec<String> = files.iter().map(|f| std::fs::read_to_string(f).unwrap_or_default()).collect();
    assert!(
        output.status.success(),
        "cfn-lint:\n{}{}\non:\n{}",
        said(&output.stdout),
        said(&output.stderr),
        texts.join("\n---\n")
    );
}

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}
