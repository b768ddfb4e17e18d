//! The lookup `--containers NAME` makes: the registered task definitions that pull NAME's
//! repository, found in accounts of thousands of families at the cost of an empty one, through
//! refused and throttled calls. Against moto with ECS's list calls paged and ordered as AWS does
//! (the testbed `Scheduler`), and the images run as ECS would run them (`verify`).

mod common;

use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{ContainerDefinition, HealthCheck, KeyValuePair, LinuxParameters, LoadBalancer, PortMapping};
use common::*;
use serde_json::Value;

/// Registers `family` with one container.
async fn register(endpoint: &str, family: &str, container: ContainerDefinition) -> String {
    let ecs = aws_sdk_ecs::Client::new(&aws_at(endpoint).await);
    let registered =
        ecs.register_task_definition().family(family).container_definitions(container).send().await.unwrap();
    registered.task_definition().unwrap().task_definition_arn().unwrap().to_owned()
}

/// A service of one task of `definition` in `cluster`, being created (as CloudFormation creates it
/// and then waits for it), behind `group` when one is given.
async fn deploying_service(
    endpoint: &str,
    cluster: &str,
    name: &str,
    definition: &str,
    group: Option<(&str, &str, i32)>,
) {
    let ecs = aws_sdk_ecs::Client::new(&aws_at(endpoint).await);
    let _ = ecs.create_cluster().cluster_name(cluster).send().await;
    let mut create =
        ecs.create_service().cluster(cluster).service_name(name).task_definition(definition).desired_count(1);
    if let Some((arn, container, port)) = group {
        create = create.load_balancers(
            LoadBalancer::builder().target_group_arn(arn).container_name(container).container_port(port).build(),
        );
    }
    create.send().await.unwrap();
}

fn checked(name: &str, image: &str, port: i32, path: &str) -> ContainerDefinition {
    web(name, image, port)
        .health_check(
            HealthCheck::builder()
                .command("CMD-SHELL")
                .command(format!("curl -f http://localhost:{port}{path} || exit 1"))
                .build()
                .unwrap(),
        )
        .build()
}

fn throttled(operation: &'static str, times: Option<usize>) -> testbed::Fault {
    testbed::Fault {
        operation,
        repository: None,
        status: 400,
        error_type: "ThrottlingException",
        message: "Rate exceeded",
        times,
    }
}

fn denied(operation: &'static str) -> testbed::Fault {
    testbed::Fault {
        operation,
        repository: None,
        status: 400,
        error_type: "AccessDeniedException",
        message: "User: arn:aws:iam::123456789012:user/ci is not authorized to perform this action",
        times: None,
    }
}

/// The calls of each ECS operation made since `from`.
fn count(scheduler: &testbed::Scheduler, from: usize, operation: &str) -> usize {
    scheduler.operations()[from..].iter().filter(|o| *o == operation).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn names_alone_find_the_registered_definitions_that_pull_them() {
    let bed = bed();
    let scheduler = bed.scheduler().unwrap();
    let endpoint = scheduler.endpoint();
    bed.moto.crowd(300).unwrap();
    register(&endpoint, "payments-api", checked("api", &format!("{ECR}/payments:v1.4.2"), 8081, "/ready")).await;
    // CDK and CloudFormation name a family after the stack, in PascalCase.
    register(
        &endpoint,
        "InvoiceWorkerStackTaskDef1A2B3C4D",
        web("worker", &format!("{ECR}/invoice-worker:7"), 8082).build(),
    )
    .await;
    // A family named like no repository, which a service is being deployed with.
    let nightly = register(&endpoint, "nightly", web("job", &format!("{ECR}/reports:2026.11"), 9000).build()).await;
    deploying_service(&endpoint, "batch", "report-runner", &nightly, None).await;

    let env = with(bed.env(), "AWS_ENDPOINT_URL", endpoint.clone());
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "payments"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("[payments] from the registered task definition payments-api:1 (pulls the repository)"),
        "{stderr}"
    );
    assert_eq!(registry_tags(&bed, "payments").await, ["latest", "v1.4.2"], "the tag the definition pulls");
    assert_eq!(ports(&stdout, "payments"), "8081", "{stdout}");
    assert!(stdout.contains("payments: payments-api/api pulls :v1.4.2: the placeholder is there"), "{stdout}");
    // The common case reads the one family named like the repository, not the 302 others.
    assert_eq!(count(&scheduler, 0, "DescribeTaskDefinition"), 1);
    assert!(count(&scheduler, 0, "ListTaskDefinitionFamilies") <= 2);

    let before = scheduler.operations().len();
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "reports,invoice-worker,ghost", "--dry-run"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "[reports] from the registered task definition nightly:1 (run by service report-runner in cluster batch)"
        ),
        "{stderr}"
    );
    assert!(row(&stdout, "reports").contains("2026.11,latest"), "{stdout}");
    assert!(
        stderr.contains("[invoice-worker] from the registered task definition InvoiceWorkerStackTaskDef1A2B3C4D:1"),
        "{stderr}"
    );
    assert!(row(&stdout, "invoice-worker").contains("7,latest"), "{stdout}");
    let ghost = stderr.lines().find(|l| l.starts_with("[ghost] note: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        ghost.contains("no registered task definition that publish read pulls it")
            && ghost.contains("1 of 1 service in 1 cluster")
            && ghost.contains("not read: families named otherwise that no service being deployed runs"),
        "{ghost}"
    );
    let describes = count(&scheduler, before, "DescribeTaskDefinition");
    assert!((2..=3).contains(&describes), "{describes} DescribeTaskDefinition calls");

    let (code, stdout, stderr) = xtask(&["publish", "--containers", "ghost"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("ghost: the placeholder is at :latest; no task definition was read for it, so one that names another tag will not find it"), "{stdout}");

    // --no-lookup: names alone, as typed, and no ECS call at all.
    let before = scheduler.operations().len();
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "payments-copy", "--no-lookup"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.lines().all(|l| !l.contains("registered task definition")), "{stderr}");
    assert_eq!(scheduler.operations().len(), before, "{:?}", &scheduler.operations()[before..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_permission_to_look_publish_says_how_to_give_the_definition() {
    let bed = bed();
    let scheduler = bed.scheduler().unwrap();
    let refused = testbed::FaultyEcr::start(
        scheduler.port(),
        ["ListTaskDefinitionFamilies", "ListClusters", "DescribeTaskDefinition"].map(denied).to_vec(),
    )
    .unwrap();
    let env = with(bed.env(), "AWS_ENDPOINT_URL", refused.endpoint());
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "billing:8080"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(row(&stdout, "billing").contains("created"), "{stdout}");
    let line =
        stderr.lines().find(|l| l.starts_with("[billing] note: could not look")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("AccessDeniedException") && line.contains("ListTaskDefinitionFamilies"), "{line}");
    assert!(stdout.contains("give the definition (--task-definition FAMILY|FILE, --from STACK)"), "{stdout}");
}

/// What a user types for a service whose definition was registered a minute ago among 2,000
/// families: found whatever the family is called while its service is being deployed, through
/// refused and throttled calls, with a handful of calls; and where nothing points at it, the one
/// line says what was not read and how to give it.
#[tokio::test(flavor = "multi_thread")]
async fn in_an_account_of_2000_families_the_definition_registered_last_is_found() {
    let bed = bed();
    let scheduler = bed.scheduler().unwrap();
    let endpoint = scheduler.endpoint();
    bed.moto.crowd(2000).unwrap();
    let checkout = register(
        &endpoint,
        "checkout-backend",
        checked("app", &format!("{ECR}/orders:2026.12.04-9f1c2e7"), 8443, "/healthz"),
    )
    .await;
    deploying_service(&endpoint, "shop", "storefront", &checkout, None).await;
    register(&endpoint, "nightly-batch", web("job", &format!("{ECR}/ledger:3"), 9000).build()).await;

    let published = |env: &[(&'static str, String)]| {
        let started = Instant::now();
        let (code, stdout, stderr) = xtask(&["publish", "--containers", "orders", "--dry-run"], env);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        assert!(
            stderr.contains("[orders] from the registered task definition checkout-backend:1 (run by service storefront in cluster shop)"),
            "{stderr}"
        );
        assert!(row(&stdout, "orders").contains("2026.12.04-9f1c2e7,latest"), "{stdout}");
        assert_eq!(ports(&stdout, "orders"), "8443", "{stdout}");
        (started.elapsed(), stderr)
    };
    let before = scheduler.operations().len();
    published(&with(bed.env(), "AWS_ENDPOINT_URL", endpoint.clone()));
    let lookup: Vec<String> = scheduler.operations()[before..]
        .iter()
        .filter(|o| o.starts_with("List") || o.starts_with("Describe"))
        .cloned()
        .collect();
    assert!(lookup.len() <= 8, "a few calls, whatever the account holds: {lookup:?}");
    assert_eq!(count(&scheduler, before, "DescribeTaskDefinition"), 1, "{lookup:?}");

    // The families named like it refused: the service still names it.
    let refused = testbed::FaultyEcr::start(scheduler.port(), vec![denied("ListTaskDefinitionFamilies")]).unwrap();
    let (_, stderr) = published(&with(bed.env(), "AWS_ENDPOINT_URL", refused.endpoint()));
    assert!(!stderr.contains("[orders] note"), "{stderr}");

    // Every call of the lookup throttled once: it slows down, and finds it.
    let slowed = testbed::FaultyEcr::start(
        scheduler.port(),
        ["ListTaskDefinitionFamilies", "ListClusters", "ListServices", "DescribeServices", "DescribeTaskDefinition"]
            .map(|operation| throttled(operation, Some(1)))
            .to_vec(),
    )
    .unwrap();
    published(&with(bed.env(), "AWS_ENDPOINT_URL", slowed.endpoint()));
    assert!(slowed.injected.load(std::sync::atomic::Ordering::SeqCst) >= 4);

    // Throttled without end: the lookup gives up within its bounds, and the publish goes on.
    let stuck = testbed::FaultyEcr::start(
        scheduler.port(),
        ["ListTaskDefinitionFamilies", "ListClusters"].map(|operation| throttled(operation, None)).to_vec(),
    )
    .unwrap();
    let started = Instant::now();
    let env = with(bed.env(), "AWS_ENDPOINT_URL", stuck.endpoint());
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "orders", "--dry-run"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30), "never stalls: {:?}", started.elapsed());
    let line =
        stderr.lines().find(|l| l.starts_with("[orders] note: could not look")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("ThrottlingException"), "{line}");

    // Registered by hand in a family named otherwise, and no service yet: nothing points at it
    // short of reading every family, so the line says what was not read and the table how to give it.
    let (code, stdout, stderr) = xtask(
        &["publish", "--containers", "ledger", "--dry-run"],
        &with(bed.env(), "AWS_ENDPOINT_URL", endpoint.clone()),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("[ledger] note: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("not read: families named otherwise that no service being deployed runs"), "{line}");
    assert!(line.ends_with("name it: --task-definition FAMILY"), "{line}");
}

/// The sample's container definitions registered among 2,000 families, half in families named like
/// their repositories and half in families named otherwise that a service (behind its target
/// group, where one checks) is being deployed with: names alone publish each one as
/// `--task-definition` would, and each boots under its definition on Fargate's metadata.
#[tokio::test(flavor = "multi_thread")]
async fn the_compat_sample_registered_in_a_big_account_boots_from_names_alone() {
    let bed = bed();
    let scheduler = bed.scheduler().unwrap();
    let endpoint = scheduler.endpoint();
    bed.moto.crowd(2000).unwrap();
    let vpc = vpc(&bed).await;
    let sample = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/compat/visible.jsonl")).unwrap();
    let mut repositories = Vec::new();
    let mut rewritten = String::new();
    for (n, line) in sample.lines().enumerate() {
        let mut line: Value = serde_json::from_str(line).unwrap();
        let id = line["id"].as_i64().unwrap();
        let repository = format!("compat-{id}");
        let image = format!("{ECR}/{repository}:{}", tag_of(line["image"].as_str().unwrap_or_default()));
        line["image"] = image.clone().into();
        let container = container_of(&line);
        // Only a service's target group says that a matcher wants no 200.
        if n % 2 == 0 && accepts_200(&line["albHealthCheck"]["matcher"]) {
            register(&endpoint, &format!("{repository}-task"), container).await;
        } else {
            let definition =
                register(&endpoint, &format!("team-{}-{n}", ["alpha", "bravo", "delta"][n % 3]), container).await;
            let port = line["portMappings"][0]["containerPort"].as_i64().unwrap() as i32;
            let group = match line["albHealthCheck"].as_object() {
                Some(check) => {
                    let word = |v: &Value| {
                        v.as_str().unwrap_or_default().split_whitespace().next().unwrap_or_default().to_owned()
                    };
                    let check_port = match &check["port"] {
                        Value::Number(p) => p.to_string(),
                        _ => "traffic-port".to_owned(),
                    };
                    let arn =
                        target_group(&bed, &vpc, &format!("group-{id}"), port, &check_port, &word(&check["path"]))
                            .await;
                    let matcher = word(&check["matcher"]);
                    if matcher.starts_with(|c: char| c.is_ascii_digit()) {
                        let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(&bed.aws().await);
                        elbv2
                            .modify_target_group()
                            .target_group_arn(&arn)
                            .matcher(
                                aws_sdk_elasticloadbalancingv2::types::Matcher::builder().http_code(matcher).build(),
                            )
                            .send()
                            .await
                            .unwrap();
                    }
                    Some(arn)
                }
                None => None,
            };
            let name = line["name"].as_str().unwrap_or("app").to_owned();
            deploying_service(
                &endpoint,
                "compat",
                &format!("svc-{n}"),
                &definition,
                group.as_deref().map(|g| (g, name.as_str(), port)),
            )
            .await;
        }
        rewritten.push_str(&line.to_string());
        rewritten.push('\n');
        repositories.push(repository);
    }
    let env = with(bed.env(), "AWS_ENDPOINT_URL", endpoint.clone());
    let (code, stdout, stderr) = xtask(&["publish", "--containers", &repositories.join(",")], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for repository in &repositories {
        assert!(
            stderr.contains(&format!("[{repository}] from the registered task definition")),
            "{repository}:\n{stderr}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sample.jsonl");
    std::fs::write(&file, rewritten).unwrap();
    let (code, stdout, stderr) =
        xtask(&["verify", "--task-definition", file.to_str().unwrap(), "--published", "--no-metadata-ports"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let count = repositories.len();
    assert!(stdout.contains(&format!("{count} of {count} container(s) came up healthy")), "{stdout}");
}

/// Whether a sample's matcher (notes after its first word) takes a 200.
fn accepts_200(matcher: &Value) -> bool {
    let word = matcher.as_str().and_then(|m| m.split_whitespace().next()).unwrap_or("200");
    !word.starts_with(|c: char| c.is_ascii_digit())
        || word.split(',').any(|part| match part.split_once('-') {
            Some((low, high)) => low <= "200" && high >= "200",
            None => part == "200",
        })
}

/// The tag a sample image names, where it names one a registry takes; else `latest`.
fn tag_of(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or_default();
    let tag = last.rsplit_once(':').map(|(_, tag)| tag).unwrap_or_default();
    let valid = !tag.is_empty()
        && tag.len() <= 128
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if valid { tag.to_owned() } else { "latest".to_owned() }
}

/// A sample line as ECS's container definition (its numbers written as numbers, its environment a list).
fn container_of(line: &Value) -> ContainerDefinition {
    let strings =
        |v: &Value| v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect::<Vec<_>>());
    let seconds = |v: &Value| match v {
        Value::Number(n) => n.as_i64().map(|n| n as i32),
        Value::String(s) => s.split_whitespace().next().and_then(|n| n.parse().ok()),
        _ => None,
    };
    let mut container = ContainerDefinition::builder()
        .name(line["name"].as_str().unwrap_or("app"))
        .image(line["image"].as_str().unwrap())
        .memory(512)
        .essential(true)
        .set_command(strings(&line["command"]))
        .set_entry_point(strings(&line["entryPoint"]))
        .set_user(line["user"].as_str().map(str::to_owned))
        .set_working_directory(line["workingDirectory"].as_str().map(str::to_owned))
        .set_readonly_root_filesystem(line["readonlyRootFilesystem"].as_bool());
    for mapping in line["portMappings"].as_array().into_iter().flatten() {
        container = container.port_mappings(
            PortMapping::builder().container_port(mapping["containerPort"].as_i64().unwrap() as i32).build(),
        );
    }
    if let Some(check) = line["healthCheck"].as_object() {
        container = container.health_check(
            HealthCheck::builder()
                .set_command(strings(&check["command"]))
                .set_interval(seconds(&check["interval"]))
                .set_timeout(seconds(&check["timeout"]))
                .set_retries(seconds(&check["retries"]))
                .set_start_period(seconds(&check["startPeriod"]))
                .build()
                .unwrap(),
        );
    }
    for (name, value) in line["environment"].as_object().into_iter().flatten() {
        container =
            container.environment(KeyValuePair::builder().name(name).value(value.as_str().unwrap_or_default()).build());
    }
    if line["initProcessEnabled"].as_bool() == Some(true) {
        container = container.linux_parameters(LinuxParameters::builder().init_process_enabled(true).build());
    }
    container.build()
}
