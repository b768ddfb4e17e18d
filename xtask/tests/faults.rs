//! Publish under faults, injected into the real test bed: ECR errors (KMS, throttling), a registry
//! that refuses the token, refuses mounts, cuts an upload or says a token expired, the Docker
//! engine dying during the smoke test and the registry dying mid-push. Each failure names
//! the container and the cause, the other containers complete, nothing half-made is left, and a
//! re-run converges to the state of a clean run.

mod common;

use common::*;
use testbed::{CutProxy, Endpoint, Fault, FaultyEcr, HttpProxy, Verdict};

/// `:latest` is either absent or a whole manifest list whose images all exist.
async fn latest_absent_or_whole(bed: &Bed, name: &str) -> bool {
    let Some((list, _)) = bed.registry_json(&format!("{name}/manifests/latest")).await else { return false };
    for child in list["manifests"].as_array().expect("a manifest list") {
        let digest = child["digest"].as_str().unwrap();
        assert!(
            bed.registry_json(&format!("{name}/manifests/{digest}")).await.is_some(),
            "{name}:latest points at missing {digest}"
        );
    }
    true
}

#[tokio::test(flavor = "multi_thread")]
async fn ecr_errors_fail_only_their_container_and_a_rerun_converges() {
    let bed = bed();
    let faulty = FaultyEcr::start(
        bed.moto.port,
        vec![
            Fault {
                operation: "CreateRepository",
                repository: Some("kms-bad".into()),
                status: 400,
                error_type: "KmsException",
                message: "The KMS key is disabled",
                times: None,
            },
            Fault {
                operation: "PutLifecyclePolicy",
                repository: Some("throttled".into()),
                status: 400,
                error_type: "ThrottlingException",
                message: "Rate exceeded",
                times: None,
            },
        ],
    )
    .unwrap();
    let env = with(bed.env(), "AWS_ENDPOINT_URL", faulty.endpoint());
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "good-one,kms-bad,throttled"], &env);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(row(&stdout, "good-one").contains("created"), "{stdout}");
    assert!(
        reason(&stdout, "kms-bad").contains("CreateRepository failed: KmsException: The KMS key is disabled"),
        "{stdout}"
    );
    assert!(
        reason(&stdout, "throttled").contains("PutLifecyclePolicy failed: ThrottlingException: Rate exceeded"),
        "{stdout}"
    );
    assert!(!stdout.contains(testbed::MOTO_PASSWORD) && !stderr.contains(testbed::MOTO_PASSWORD));
    assert!(!latest_absent_or_whole(&bed, "throttled").await, "pushed despite a failed lifecycle policy");
    let mut names = bed.repository_names().await;
    names.sort();
    assert_eq!(names, ["good-one", "throttled"]);

    let (code, stdout, stderr) = xtask(&["publish", "--containers", "good-one,kms-bad,throttled"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(row(&stdout, "good-one").contains("up to date"), "{stdout}");
    let ecr = bed.ecr().await;
    for name in ["good-one", "kms-bad", "throttled"] {
        ecr.get_lifecycle_policy().repository_name(name).send().await.expect("lifecycle policy after the re-run");
        assert!(latest_absent_or_whole(&bed, name).await, "{name}:latest missing after the re-run");
    }
}

#[test]
fn throttling_is_retried_by_the_sdk() {
    let bed = bed();
    let faulty = FaultyEcr::start(
        bed.moto.port,
        vec![Fault {
            operation: "CreateRepository",
            repository: None,
            status: 400,
            error_type: "ThrottlingException",
            message: "Rate exceeded",
            times: Some(2),
        }],
    )
    .unwrap();
    let env = with(bed.env(), "AWS_ENDPOINT_URL", faulty.endpoint());
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "retry-me"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(faulty.injected.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert!(row(&stdout, "retry-me").contains("created"), "{stdout}");
}

#[test]
fn a_registry_refusing_the_token_is_named_per_container() {
    let bed = bed();
    let wrong = testbed::Registry::start("not-the-ecr-password").unwrap();
    let env = with(bed.env(), "ECR_REGISTRY_ENDPOINT", format!("http://{}", wrong.host()));
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "pi,rho"], &env);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    for name in ["pi", "rho"] {
        assert!(reason(&stdout, name).contains("refused the ECR token (401"), "{stdout}");
    }
    assert!(!stdout.contains(testbed::MOTO_PASSWORD) && !stderr.contains(testbed::MOTO_PASSWORD));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_engine_dying_during_the_smoke_test_changes_nothing_and_a_rerun_converges() {
    let bed = bed();
    let engine = CutProxy::unix(std::path::Path::new("/var/run/docker.sock"), "/images/load").unwrap();
    let Endpoint::Unix(socket) = &engine.listen else { unreachable!() };
    let env = with(bed.env(), "DOCKER_HOST", format!("unix://{}", socket.display()));
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "sigma,tau"], &env);
    assert!(engine.was_cut(), "the engine was never cut: {stderr}");
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stderr.contains("lost the connection to the Docker engine"), "{stderr}");
    assert!(bed.repository_names().await.is_empty(), "a failed smoke test changed AWS");
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "sigma,tau"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for name in ["sigma", "tau"] {
        assert!(latest_absent_or_whole(&bed, name).await);
    }
}

/// A proxy in front of the test registry that answers requests for `repository` with `verdict`.
fn failing_for(bed: &Bed, repository: &'static str, method: &'static str, verdict: fn() -> Verdict) -> HttpProxy {
    HttpProxy::start(bed.registry.port, move |request| {
        if request.target.starts_with(&format!("/v2/{repository}/")) && (method == "*" || request.method == method) {
            verdict()
        } else {
            Verdict::Forward
        }
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_refusing_mounts_gets_uploads_instead() {
    let bed = bed();
    // Refusing a mount the usual way: the registry ignores it and opens an upload session.
    let proxy = HttpProxy::start(bed.registry.port, |request| {
        if let Some((path, _)) = request.target.split_once("?mount=") {
            request.target = path.to_owned();
        }
        Verdict::Forward
    })
    .unwrap();
    let env = with(bed.env(), "ECR_REGISTRY_ENDPOINT", proxy.endpoint());
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "mount-a,mount-b"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let uploads = proxy.requests().iter().filter(|r| r.starts_with("PATCH ")).count();
    assert_eq!(uploads, 8, "every blob uploaded to each repository: {:#?}", proxy.requests());
    assert!(
        stderr.contains("[mount-b] blobs: 4 uploaded, 0 mounted")
            || stderr.contains("[mount-a] blobs: 4 uploaded, 0 mounted"),
        "{stderr}"
    );
    for name in ["mount-a", "mount-b"] {
        assert!(latest_absent_or_whole(&bed, name).await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_failing_midway_fails_its_container_only_and_a_rerun_converges() {
    let bed = bed();
    let proxy = failing_for(&bed, "cut-here", "PATCH", || Verdict::Cut);
    let env = with(bed.env(), "ECR_REGISTRY_ENDPOINT", proxy.endpoint());
    // One at a time, cut-here first: it is the one that uploads (the others could mount).
    let (code, stdout, stderr) =
        xtask(&["publish", "--concurrency", "1", "--containers", "cut-here,fine-1,fine-2"], &env);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        proxy.requests().iter().any(|r| r.starts_with("PATCH /v2/cut-here/")),
        "no upload was cut: {:#?}",
        proxy.requests()
    );
    assert!(reason(&stdout, "cut-here").contains("registry 127.0.0.1:"), "{stdout}");
    assert!(!latest_absent_or_whole(&bed, "cut-here").await, "cut-here:latest was put without its blobs");
    for name in ["fine-1", "fine-2"] {
        assert!(row(&stdout, name).contains("created"), "{stdout}");
        assert!(latest_absent_or_whole(&bed, name).await);
    }
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "cut-here,fine-1,fine-2"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(row(&stdout, "cut-here").contains("updated"), "{stdout}");
    assert!(row(&stdout, "fine-1").contains("up to date"), "{stdout}");
    assert!(latest_absent_or_whole(&bed, "cut-here").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_fails_its_container_only_and_a_rerun_converges() {
    let bed = bed();
    let expired = || {
        Verdict::Respond {
        status: 401,
        headers: vec![("Content-Type".into(), "application/json".into()), ("WWW-Authenticate".into(), "Basic realm=\"ecr\"".into())],
        body: br#"{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}"#.to_vec(),
    }
    };
    let proxy = failing_for(&bed, "expired", "*", expired);
    let env = with(bed.env(), "ECR_REGISTRY_ENDPOINT", proxy.endpoint());
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "expired,fresh"], &env);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let why = reason(&stdout, "expired");
    assert!(
        why.contains("refused the ECR token (401") && why.contains("has expired") && why.contains("run publish again"),
        "{stdout}"
    );
    assert!(row(&stdout, "fresh").contains("created"), "{stdout}");
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "expired,fresh"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(latest_absent_or_whole(&bed, "expired").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_registry_dying_mid_push_leaves_no_half_made_latest_and_a_rerun_converges() {
    let bed = bed();
    let registry = CutProxy::tcp(bed.registry.port, "/blobs/uploads/").unwrap();
    let Endpoint::Tcp(port) = registry.listen else { unreachable!() };
    let env = with(bed.env(), "ECR_REGISTRY_ENDPOINT", format!("http://127.0.0.1:{port}"));
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "upsilon,phi"], &env);
    assert!(registry.was_cut(), "the registry was never cut: {stderr}");
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    for name in ["upsilon", "phi"] {
        assert!(reason(&stdout, name).starts_with(&format!("{name}: ")), "{stdout}");
        assert!(!latest_absent_or_whole(&bed, name).await, "{name}:latest was put without its images");
    }
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "upsilon,phi"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for name in ["upsilon", "phi"] {
        assert!(latest_absent_or_whole(&bed, name).await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_mid_publish_leaves_every_repository_whole_and_a_rerun_converges() {
    use std::io::{BufRead, BufReader};
    let bed = bed();
    // A slow registry, so the interrupt lands while repositories are still being worked on.
    let slow = HttpProxy::start(bed.registry.port, |_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        Verdict::Forward
    })
    .unwrap();
    let names: Vec<String> = (1..=6).map(|i| format!("interrupt-{i}")).collect();
    let list = names.join(",");
    let mut child = std::process::Command::new(XTASK)
        .args(["publish", "--concurrency", "2", "--containers", &list])
        .envs(with(bed.env(), "ECR_REGISTRY_ENDPOINT", slow.endpoint()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.contains("] pushing sha256:") {
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            break;
        }
        line.clear();
    }
    assert!(seen.contains("] pushing sha256:"), "publish never reached a push:\n{seen}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{seen}{rest}");
    assert!(rest.contains("interrupted"), "{rest}");

    let ecr = bed.ecr().await;
    for name in bed.repository_names().await {
        ecr.get_lifecycle_policy()
            .repository_name(&name)
            .send()
            .await
            .unwrap_or_else(|_| panic!("{name} has no lifecycle policy"));
        latest_absent_or_whole(&bed, &name).await;
    }
    assert!(bed.repository_names().await.len() < names.len(), "the interrupt started nothing new");

    let (code, stdout, stderr) = xtask(&["publish", "--containers", &list], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for name in &names {
        assert!(latest_absent_or_whole(&bed, name).await, "{name}");
    }
}
