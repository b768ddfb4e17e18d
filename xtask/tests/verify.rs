//! `cargo xtask verify` against the published placeholder: real container definitions from public
//! repositories (tests/compat/) come up healthy the way ECS would run them; definitions that need
//! more than the default image say why, and boot once published with `--task-definition`.

mod common;

use common::*;

const COMPAT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/compat/visible.jsonl");

/// Publishes `args` to the bed and returns the registry reference of `repository:latest`.
fn published(bed: &Bed, args: &[&str], repository: &str) -> String {
    let mut all = vec!["publish"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = xtask(&all, &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    format!("{}/{repository}:latest", bed.registry.host())
}

/// `xtask verify` of `file` against `image`: exit code and the line per container.
fn verify(bed: &Bed, file: &std::path::Path, image: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["verify", "--task-definition", file.to_str().unwrap(), "--image", image];
    args.extend_from_slice(extra);
    xtask(&args, &bed.env())
}

fn line_for<'a>(stdout: &'a str, container: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{container}: ")))
        .unwrap_or_else(|| panic!("no line for {container}:\n{stdout}"))
}

/// Whether a target group with this matcher accepts a plain 200 (the sample writes notes after it).
fn accepts_200(matcher: Option<&str>) -> bool {
    let Some(word) = matcher.and_then(|m| m.split_whitespace().next()).filter(|w| !w.starts_with('(')) else {
        return true;
    };
    word.split(',').any(|part| match part.split_once('-') {
        Some((low, high)) => low.parse::<u16>().is_ok_and(|l| l <= 200) && high.parse::<u16>().is_ok_and(|h| h >= 200),
        None => part == "200",
    })
}

#[test]
fn every_real_definition_in_the_sample_comes_up_healthy() {
    let bed = bed();
    let _ = testbed::docker_engine();
    let image = published(&bed, &["--containers", "compat"], "compat");
    let (code, stdout, stderr) = verify(&bed, std::path::Path::new(COMPAT), &image, &[]);
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(COMPAT).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut needs_more = Vec::new();
    for line in &lines {
        let name = format!("#{}", line["id"]);
        let verdict = line_for(&stdout, &name);
        if accepts_200(line["albHealthCheck"]["matcher"].as_str()) {
            assert!(verdict.starts_with(&format!("{name}: healthy")), "{verdict}\n{stderr}");
        } else {
            // Only a target group that accepts no 2xx needs what --task-definition bakes in.
            assert!(verdict.contains("NOT HEALTHY") && verdict.contains("matcher"), "{verdict}");
            needs_more.push(line.clone());
        }
    }
    assert_eq!(code, i32::from(!needs_more.is_empty()), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("{} of {} container(s) came up healthy", lines.len() - needs_more.len(), lines.len())),
        "{stdout}"
    );

    // Each of those, published from its own definition (its image standing in for the real one).
    for mut line in needs_more {
        let repository = format!("compat-{}", line["id"]);
        line["image"] = format!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/{repository}:latest").into();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("definition.json");
        std::fs::write(&file, line.to_string()).unwrap();
        let image = published(&bed, &["--task-definition", file.to_str().unwrap()], &repository);
        let (code, stdout, stderr) = verify(&bed, &file, &image, &[]);
        assert_eq!(code, 0, "#{} after --task-definition:\n{stdout}\n{stderr}", line["id"]);
    }
}

/// A container definition in a file of its own.
fn definition(json: serde_json::Value) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("task-definition.json");
    std::fs::write(&file, serde_json::json!({ "family": "t", "containerDefinitions": [json] }).to_string()).unwrap();
    (dir, file)
}

#[test]
fn a_shell_entry_point_serves_and_health_checks_probe_with_and_without_an_init() {
    let bed = bed();
    let image = published(&bed, &["--containers", "shells"], "shells");
    for init in [false, true] {
        let (_dir, file) = definition(serde_json::json!({
            "name": "web",
            "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shells:latest",
            "entryPoint": ["sh", "-c", "npm start"],
            "portMappings": [{ "containerPort": 3000 }],
            "healthCheck": { "command": ["CMD-SHELL", "curl -f http://localhost:3000/health || exit 1"], "interval": 30, "timeout": 5, "retries": 3 },
            "linuxParameters": { "initProcessEnabled": init },
            "user": "node",
            "readonlyRootFilesystem": true,
        }));
        let (code, stdout, stderr) =
            verify(&bed, &file, &image, &["--health-path", "/api/health", "--matcher", "200-299"]);
        assert_eq!(code, 0, "init {init}:\n{stdout}\n{stderr}");
        let verdict = line_for(&stdout, "web");
        assert!(verdict.contains("health check") && verdict.contains("GET :3000/api/health got 200"), "{verdict}");
    }
}

#[test]
fn what_the_default_image_lacks_is_named_and_task_definition_bakes_it() {
    let bed = bed();
    let image = published(&bed, &["--containers", "custom"], "custom");
    let (_dir, file) = definition(serde_json::json!({
        "name": "api",
        "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/custom:v7",
        "entryPoint": ["/opt/app/bin/start", "--serve"],
        "portMappings": [{ "containerPort": 8080, "protocol": "tcp" }],
        "user": "svc",
    }));
    let (code, stdout, stderr) = verify(&bed, &file, &image, &[]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let verdict = line_for(&stdout, "api");
    assert!(
        verdict.contains("NOT HEALTHY") && (verdict.contains("svc") || verdict.contains("/opt/app/bin/start")),
        "{verdict}"
    );
    assert!(
        verdict.contains("publish from the definition (--task-definition FILE, --from STACK) adds it"),
        "{verdict}"
    );

    let (code, stdout, stderr) = xtask(&["publish", "--task-definition", file.to_str().unwrap()], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(row(&stdout, "custom").contains("updated"), "{stdout}");
    assert!(stderr.contains("/opt/app/bin/start") && stderr.contains("svc"), "the recipe is shown: {stderr}");
    let (code, stdout, stderr) = verify(&bed, &file, &image, &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");

    // A health check that fails says which and why.
    let (_dir, failing) = definition(serde_json::json!({
        "name": "sick",
        "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/custom:v7",
        "portMappings": [{ "containerPort": 8080 }],
        "healthCheck": { "command": ["CMD-SHELL", "exit 1"], "timeout": 2, "retries": 1 },
    }));
    let (code, stdout, _) = verify(&bed, &failing, &image, &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(line_for(&stdout, "sick").contains("health check \"CMD-SHELL exit 1\" failed"), "{stdout}");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.json");
    std::fs::write(&file, "{\"family\": \"no containers\"}").unwrap();
    for args in [
        vec!["verify", "--task-definition", file.to_str().unwrap()],
        vec!["verify", "--task-definition", "/nonexistent.json"],
        vec!["verify", "--task-definition", file.to_str().unwrap(), "--matcher", "ok"],
        vec!["verify", "--task-definition", file.to_str().unwrap(), "--health-path", "health"],
    ] {
        let (code, _, stderr) = xtask(&args, &[]);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[test]
fn without_ports_in_task_metadata_the_health_check_or_the_baked_port_is_what_boots() {
    let bed = bed();
    // Container `name` of repository fargate-api on port 3001, with `more` of its definition.
    let fargate_api = |name: &str, more: serde_json::Value| {
        let mut container = serde_json::json!({
            "name": name,
            "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/fargate-api:latest",
            "portMappings": [{ "containerPort": 3001 }],
        });
        container.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
        definition(container)
    };
    let (_dir, file) = fargate_api(
        "fargate",
        serde_json::json!({ "healthCheck": { "command": ["CMD-SHELL", "curl -f http://localhost:3001/health || exit 1"], "timeout": 2, "retries": 2 } }),
    );
    // As Fargate serves it, the metadata names no port: the container's own check names it.
    let unbaked = published(&bed, &["--containers", "fargate-api"], "fargate-api");
    let (code, stdout, stderr) = verify(&bed, &file, &unbaked, &["--no-metadata-ports"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(line_for(&stdout, "fargate").contains("GET :3001/ got 200"), "{stdout}");

    // With no check, and a port no framework defaults to, nothing at run time names it.
    let (_dir, unchecked) = fargate_api("unchecked", serde_json::json!({}));
    let (code, stdout, stderr) = verify(&bed, &unchecked, &unbaked, &["--no-metadata-ports"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let verdict = line_for(&stdout, "unchecked");
    assert!(verdict.contains("NOT HEALTHY") && verdict.contains("--containers NAME:3001"), "{verdict}");

    // A definition's `command`, meant for the real image, follows the placeholder's entry point:
    // the port it names is served, in a shell line too.
    for command in [
        serde_json::json!(["gunicorn", "app.wsgi:application", "--bind", "0.0.0.0:3001"]),
        serde_json::json!(["sh", "-c", "gunicorn app:app --bind 0.0.0.0:3001"]),
    ] {
        let (_dir, commanded) = fargate_api("commanded", serde_json::json!({ "command": command }));
        let (code, stdout, stderr) = verify(&bed, &commanded, &unbaked, &["--no-metadata-ports"]);
        assert_eq!(code, 0, "{command}:\n{stdout}\n{stderr}");
        assert!(line_for(&stdout, "commanded").contains("GET :3001/ got 200"), "{stdout}");
    }

    // The console's export writes `"entryPoint": []` and `"command": []` for settings never made:
    // ECS runs the image's own entry point, and so does verify.
    let (_dir, exported) = fargate_api(
        "exported",
        serde_json::json!({
            "entryPoint": [],
            "command": [],
            "healthCheck": { "command": ["CMD-SHELL", "curl -f http://localhost:3001/ || exit 1"], "timeout": 2, "retries": 2 },
        }),
    );
    let (code, stdout, stderr) = verify(&bed, &exported, &unbaked, &["--no-metadata-ports"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(line_for(&stdout, "exported").starts_with("exported: healthy"), "{stdout}");

    let baked = published(&bed, &["--containers", "fargate-api:3001"], "fargate-api");
    let (code, stdout, stderr) = verify(&bed, &unchecked, &baked, &["--no-metadata-ports"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(line_for(&stdout, "unchecked").contains("GET :3001/ got 200"), "{stdout}");
}

#[test]
fn on_fargate_the_plain_placeholder_boots_the_sample_but_what_only_a_definition_can_fix() {
    let bed = bed();
    let image = published(&bed, &["--containers", "compat-fargate"], "compat-fargate");
    let (code, stdout, stderr) = verify(&bed, std::path::Path::new(COMPAT), &image, &["--no-metadata-ports"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    // #4 listens on 8001, which nothing in its definition but the mapping names; #15's target group
    // accepts only 302; #37 serves 443. Every other one finds its port at run time.
    let needs_the_definition = ["#4", "#15", "#37"];
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(COMPAT).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for line in &lines {
        let name = format!("#{}", line["id"]);
        let verdict = line_for(&stdout, &name);
        if needs_the_definition.contains(&name.as_str()) {
            assert!(verdict.contains("NOT HEALTHY"), "{verdict}");
            assert!(
                verdict.contains("Only the definition can fix this") || verdict.contains("Port 443 is HTTPS's"),
                "the reason: {verdict}"
            );
        } else {
            assert!(verdict.starts_with(&format!("{name}: healthy")), "{verdict}\n{stderr}");
        }
    }
    let healthy = lines.len() - needs_the_definition.len();
    assert!(stdout.contains(&format!("{healthy} of {} container(s) came up healthy", lines.len())), "{stdout}");
}

/// A task definition with several containers, in a file of its own.
fn task(containers: serde_json::Value) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("task-definition.json");
    let task = serde_json::json!({ "family": "t", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "containerDefinitions": containers });
    std::fs::write(&file, task.to_string()).unwrap();
    (dir, file)
}

#[test]
fn sidecars_started_after_the_placeholder_keep_their_ports() {
    let bed = bed();
    let image = published(&bed, &["--containers", "with-sidecars"], "with-sidecars");
    let app = |name: &str, port: u16, check: Option<&str>| {
        let mut app = serde_json::json!({
            "name": name,
            "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/with-sidecars:latest",
            "essential": true,
            "portMappings": [{ "containerPort": port, "protocol": "tcp" }],
            "logConfiguration": { "logDriver": "awsfirelens" },
        });
        if let Some(check) = check {
            app["healthCheck"] = serde_json::json!({ "command": ["CMD-SHELL", check], "timeout": 2, "retries": 2 });
        }
        app
    };
    let log_router = serde_json::json!({
        "name": "log_router", "image": "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable",
        "essential": true, "firelensConfiguration": { "type": "fluentbit" },
    });
    let datadog = serde_json::json!({
        "name": "datadog-agent", "image": "public.ecr.aws/datadog/agent:latest",
        "portMappings": [{ "containerPort": 8126, "protocol": "tcp" }, { "containerPort": 8125, "protocol": "udp" }],
    });
    let otel = serde_json::json!({ "name": "aws-otel-collector", "image": "public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0" });
    let proxy = serde_json::json!({
        "name": "proxy", "image": "nginx:1.25", "essential": true,
        "portMappings": [{ "containerPort": 80, "protocol": "tcp" }],
        "dependsOn": [{ "containerName": "web", "condition": "START" }],
    });

    // Log router, APM agent and collector: the app's port is a framework default, and is served;
    // every agent binds what it binds, including ports (5000, 8888) frameworks also default to.
    let (_d1, agents) = task(serde_json::json!([app("web", 3000, None), log_router, datadog, otel]));
    // A proxy in front: the placeholder takes nothing unasked (not even 80); its check names its port.
    let (_d2, proxied) = task(serde_json::json!([
        app("web", 8080, Some("curl -f http://localhost:8080/health || exit 1")),
        proxy.clone()
    ]));
    for metadata in [&["--no-metadata-ports"][..], &[][..]] {
        for file in [&agents, &proxied] {
            let (code, stdout, stderr) = verify(&bed, file, &image, metadata);
            assert_eq!(code, 0, "{metadata:?} {}:\n{stdout}\n{stderr}", file.display());
            let web = line_for(&stdout, "web");
            assert!(web.contains("sidecars started after it serve on their ports"), "{web}");
        }
    }
    let (code, stdout, _) = verify(&bed, &agents, &image, &["--no-metadata-ports"]);
    assert_eq!(code, 0);
    for served in [
        "log_router :24224",
        "log_router :2020",
        "datadog-agent :8126",
        "aws-otel-collector :4317",
        "aws-otel-collector :8888",
    ] {
        assert!(line_for(&stdout, "web").contains(served), "{served}: {stdout}");
    }
    assert!(line_for(&stdout, "web").contains("GET :3000/ got 200"), "{stdout}");

    // An API on 5000 beside a Datadog agent, whose expvar also defaults to 5000: the definition
    // says the API listens there (the real agent only logs that it could not), and the agent
    // keeps every other port it opens.
    let datadog_agent = serde_json::json!({ "name": "datadog-agent", "image": "public.ecr.aws/datadog/agent:latest" });
    let (_d4, flask) = task(serde_json::json!([
        app("api", 5000, Some("curl -f http://localhost:5000/health || exit 1")),
        datadog_agent
    ]));
    for metadata in [&["--no-metadata-ports"][..], &[][..]] {
        let (code, stdout, stderr) = verify(&bed, &flask, &image, metadata);
        assert_eq!(code, 0, "{metadata:?}:\n{stdout}\n{stderr}");
        let api = line_for(&stdout, "api");
        assert!(
            api.contains("GET :5000/ got 200")
                && api.contains("datadog-agent :8126")
                && !api.contains("datadog-agent :5000"),
            "{api}"
        );
    }

    // Behind a proxy with no check, the app's port is named by nothing at run time: said, and the
    // proxy still gets 80.
    let (_d3, unnamed) = task(serde_json::json!([app("web", 3000, None), proxy]));
    let (code, stdout, stderr) = verify(&bed, &unnamed, &image, &["--no-metadata-ports"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let web = line_for(&stdout, "web");
    assert!(
        web.contains("Only the definition can fix this")
            && web.contains("NAME:3000")
            && !web.contains("sidecar proxy could not"),
        "{web}"
    );
}

#[test]
fn an_init_wrapper_entry_point_serves_and_a_launcher_health_check_only_checks() {
    let bed = bed();
    let image = published(&bed, &["--containers", "wrapped:8080"], "wrapped");
    let (_dir, file) = definition(serde_json::json!({
        "name": "wrapped",
        "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/wrapped:latest",
        "entryPoint": ["/usr/bin/dumb-init", "--"],
        "command": ["node", "dist/main.js"],
        "portMappings": [{ "containerPort": 8080 }],
        // Exec form naming the real image's runtime: a check, never a second server.
        "healthCheck": { "command": ["CMD", "node", "healthcheck.js"], "timeout": 3, "retries": 2 },
    }));
    let (code, stdout, stderr) = verify(&bed, &file, &image, &["--no-metadata-ports", "--health-path", "/health"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let verdict = line_for(&stdout, "wrapped");
    assert!(verdict.contains("CMD node healthcheck.js") && verdict.contains("GET :8080/health got 200"), "{verdict}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_repository_for_several_containers_of_a_task_each_on_its_own_port() {
    let bed = bed();
    let image = |tag: &str| format!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/shared-app:{tag}");
    let port = |port: u16| serde_json::json!([{ "containerPort": port, "protocol": "tcp" }]);
    // One repository, a tag per part of the app (as in passmais' task), a worker of the same image
    // with no port, and App Mesh's Envoy pulled from AWS's own account.
    let (_dir, file) = task(serde_json::json!([
        { "name": "frontend", "image": image("frontend"), "essential": true, "portMappings": port(3000) },
        { "name": "backend", "image": image("backend"), "essential": true, "portMappings": port(8080),
          "healthCheck": { "command": ["CMD-SHELL", "curl -f http://localhost:8080/actuator/health || exit 1"], "timeout": 2, "retries": 2 } },
        { "name": "worker", "image": image("backend"), "essential": true, "command": ["bundle", "exec", "sidekiq"] },
        { "name": "envoy", "image": "840364872350.dkr.ecr.eu-west-1.amazonaws.com/aws-appmesh-envoy:v1.27.3.0-prod", "essential": true,
          "portMappings": [{ "containerPort": 9901 }, { "containerPort": 15000 }, { "containerPort": 15001 }] },
    ]));
    let (code, stdout, stderr) = xtask(&["publish", "--task-definition", file.to_str().unwrap()], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("container envoy uses 840364872350.dkr.ecr.eu-west-1.amazonaws.com/aws-appmesh-envoy:v1.27.3.0-prod: AWS's own image (App Mesh's Envoy)"), "{stderr}");
    assert!(stderr.contains("each container on its own (backend 8080; frontend 3000)"), "{stderr}");
    assert_eq!(bed.repository_names().await, ["shared-app"], "nothing is created for AWS's image");
    let config = skopeo_inspect(&bed, "shared-app:frontend", &["--config"]);
    let env = config["config"]["Env"].to_string();
    assert!(env.contains("PLACEHOLDER_PORTS=frontend:3000,backend:8080"), "{env}");

    // On Fargate the four share one network namespace: each placeholder keeps to its own port,
    // the worker takes none of theirs, and Envoy's stay free.
    for metadata in [&["--no-metadata-ports"][..], &[][..]] {
        let mut args = vec!["verify", "--task-definition", file.to_str().unwrap(), "--published"];
        args.extend_from_slice(metadata);
        let (code, stdout, stderr) = xtask(&args, &bed.env());
        assert_eq!(code, 0, "{metadata:?}\n{stdout}\n{stderr}");
        let frontend = line_for(&stdout, "frontend");
        assert!(
            frontend.contains("GET :3000/ got 200")
                && frontend.contains("serve on their ports (backend :8080, envoy :9901"),
            "{stdout}"
        );
        assert!(line_for(&stdout, "backend").contains("GET :8080/ got 200"), "{stdout}");
        let worker = line_for(&stdout, "worker");
        assert!(
            worker.starts_with("worker: healthy") && worker.contains("(frontend :3000, backend :8080, envoy :9901"),
            "{stdout}"
        );
        assert!(
            stderr.contains("container envoy uses") && stdout.contains("3 of 3 container(s) came up healthy"),
            "{stdout}\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn template_images_are_verified_as_placeholders_not_passed_as_sidecars() {
    let bed = bed();
    let image = published(&bed, &["--containers", "templated"], "templated");
    // CodePipeline's ECS deploy action replaces `<IMAGE1_NAME>` with the built image's URI.
    let (_dir, file) = task(serde_json::json!([
        { "name": "web", "image": "<IMAGE1_NAME>", "essential": true, "portMappings": [{ "containerPort": 8080 }],
          "healthCheck": { "command": ["CMD-SHELL", "curl -f http://localhost:8080/ || exit 1"], "timeout": 2, "retries": 2 } },
        { "name": "api", "image": "IMAGE", "essential": true, "portMappings": [{ "containerPort": 3000 }],
          "healthCheck": { "command": ["CMD-SHELL", "curl -f http://localhost:3000/ || exit 1"], "timeout": 2, "retries": 2 } },
    ]));
    let (code, stdout, stderr) = verify(&bed, &file, &image, &["--no-metadata-ports"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        line_for(&stdout, "web").starts_with("web: healthy") && line_for(&stdout, "api").starts_with("api: healthy"),
        "{stdout}"
    );
    assert!(stdout.contains("2 of 2 container(s) came up healthy"), "{stdout}");
    let (code, stdout, stderr) = xtask(&["publish", "--task-definition", file.to_str().unwrap()], &bed.env());
    assert_ne!(code, 0, "nothing to publish: {stdout}\n{stderr}");
    assert!(stderr.contains("container web uses <IMAGE1_NAME>: a template the pipeline fills in"), "{stderr}");

    // A CI template (envsubst, sed) that leaves only the account, region and tag to fill in names
    // its repository: publish fills it in the account and region it publishes to.
    let (_dir, rendered_later) = task(serde_json::json!([
        { "name": "api", "image": "${AWS_ACCOUNT_ID}.dkr.ecr.${AWS_REGION}.amazonaws.com/templated-api:${IMAGE_TAG}", "essential": true,
          "portMappings": [{ "containerPort": 3000 }] },
    ]));
    let (code, stdout, stderr) = xtask(&["publish", "--task-definition", rendered_later.to_str().unwrap()], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("the placeholder goes to :latest"), "{stderr}");
    let mut names = bed.repository_names().await;
    names.sort();
    assert_eq!(names, ["templated", "templated-api"]);
}
