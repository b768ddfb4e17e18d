//! `cargo xtask publish` end to end against the test bed: moto's ECR API, a real registry that
//! accepts moto's token, the real Docker engine (or none), and skopeo to read back what was pushed.

mod common;

use std::collections::BTreeSet;

use common::*;

const HEALTH_TEST: [&str; 3] = ["CMD", "/server", "--probe"];

/// `:latest` is an index over amd64 and arm64 placeholders whose manifests and configs the
/// registry holds; returns its digest.
async fn assert_placeholder_list(bed: &Bed, name: &str) -> String {
    let (list, digest) = bed.registry_json(&format!("{name}/manifests/latest")).await.expect(":latest exists");
    assert_eq!(list["mediaType"], "application/vnd.oci.image.index.v1+json", "{list}");
    let mut arches = BTreeSet::new();
    for child in list["manifests"].as_array().unwrap() {
        let arch = child["platform"]["architecture"].as_str().unwrap().to_owned();
        assert_eq!(child["platform"]["os"], "linux");
        let (manifest, child_digest) =
            bed.registry_json(&format!("{name}/manifests/{}", child["digest"].as_str().unwrap())).await.unwrap();
        assert_eq!(child_digest, child["digest"].as_str().unwrap());
        let config_digest = manifest["config"]["digest"].as_str().unwrap();
        let (config, _) = bed.registry_json(&format!("{name}/blobs/{config_digest}")).await.unwrap();
        assert_eq!(config["architecture"], arch.as_str());
        assert_eq!(config["config"]["Healthcheck"]["Test"], serde_json::json!(HEALTH_TEST));
        assert_eq!(config["config"]["Labels"]["ecs-minimal-container.placeholder"], "true");
        arches.insert(arch);
    }
    assert_eq!(arches, BTreeSet::from(["amd64".to_owned(), "arm64".to_owned()]));
    digest
}

#[tokio::test(flavor = "multi_thread")]
async fn publishes_two_containers_then_finds_them_up_to_date() {
    let bed = bed();
    let docker = docker().await;
    // A HOME of its own proves nothing is written to ~/.docker (no `docker login`).
    let home = tempfile::tempdir().unwrap();
    let mut env = bed.env();
    env.push(("HOME", home.path().display().to_string()));
    env.push((
        "CARGO_HOME",
        std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap())),
    ));
    env.push((
        "RUSTUP_HOME",
        std::env::var("RUSTUP_HOME").unwrap_or_else(|_| format!("{}/.rustup", std::env::var("HOME").unwrap())),
    ));

    let (code, stdout, stderr) = xtask(&["publish", "--containers", "alpha, beta"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for output in [&stdout, &stderr] {
        assert!(!output.contains(testbed::MOTO_PASSWORD), "the registry password was printed");
    }
    assert!(!home.path().join(".docker").exists(), "something was written to ~/.docker");
    assert!(
        stderr.contains("linux/arm64: healthy after") && stderr.contains("Docker HEALTHCHECK in the engine"),
        "{stderr}"
    );
    assert!(stdout.contains("Keep the task definition written for the real image"), "{stdout}");
    assert!(stdout.contains("cargo xtask verify --task-definition"), "{stdout}");
    assert!(stdout.contains("Image: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/alpha:latest"), "{stdout}");
    assert!(stdout.contains("new deployment"), "{stdout}");

    let ecr = bed.ecr().await;
    for name in ["alpha", "beta"] {
        let described = ecr.describe_repositories().repository_names(name).send().await.unwrap();
        let repository = &described.repositories()[0];
        assert_eq!(repository.encryption_configuration().unwrap().encryption_type().as_str(), "KMS");
        assert_eq!(repository.image_tag_mutability().unwrap().as_str(), "MUTABLE");
        let policy = ecr.get_lifecycle_policy().repository_name(name).send().await.unwrap();
        let policy: serde_json::Value = serde_json::from_str(policy.lifecycle_policy_text().unwrap()).unwrap();
        assert_eq!(
            policy["rules"][0]["selection"],
            serde_json::json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 5})
        );
        assert_eq!(policy["rules"][0]["action"]["type"], "expire");
        let tags =
            ecr.list_tags_for_resource().resource_arn(repository.repository_arn().unwrap()).send().await.unwrap();
        assert!(
            tags.tags().iter().any(|t| t.key() == "managed-by" && t.value() == "ecs-minimal-container"),
            "{tags:?}"
        );
        assert!(row(&stdout, name).contains("created"), "{stdout}");
        assert_eq!(registry_tags(&bed, name).await, ["latest"], "nothing but :latest is tagged");
    }
    let alpha_digest = assert_placeholder_list(&bed, "alpha").await;
    assert_eq!(assert_placeholder_list(&bed, "beta").await, alpha_digest, "the same placeholder in both");
    pulled_becomes_healthy(&bed, &docker, "alpha").await;

    // A second run changes nothing.
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "alpha,beta"], &bed.env());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().filter(|l| l.contains("up to date  ")).count(), 2, "{stdout}");
    assert!(!stderr.contains("healthy after"), "no smoke test when nothing is pushed: {stderr}");
    assert_eq!(assert_placeholder_list(&bed, "alpha").await, alpha_digest);
}

#[tokio::test(flavor = "multi_thread")]
async fn publishes_with_no_engine_and_skopeo_reads_what_was_pushed() {
    let bed = bed();
    let docker = docker().await;
    let env = with(bed.env(), "DOCKER_HOST", "unix:///nonexistent/docker.sock".to_owned());
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "no-engine"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("no Docker engine"), "{stderr}");
    assert!(stderr.contains("linux/amd64: healthy after") && stderr.contains("run from the built layer"), "{stderr}");
    assert!(stderr.contains("linux/arm64: healthy after") && stderr.contains("qemu-user"), "{stderr}");
    assert_eq!(registry_tags(&bed, "no-engine").await, ["latest"]);

    let index = skopeo_inspect(&bed, "no-engine:latest", &["--raw"]);
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json", "{index}");
    let platforms: BTreeSet<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(platforms, BTreeSet::from(["amd64".to_owned(), "arm64".to_owned()]));
    for arch in ["amd64", "arm64"] {
        let config = skopeo_inspect(
            &bed,
            "no-engine:latest",
            &["--config", "--raw", "--override-arch", arch, "--override-os", "linux"],
        );
        assert_eq!(config["architecture"], arch, "{config}");
        assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/server"]), "{config}");
        assert_eq!(config["config"]["Healthcheck"]["Test"], serde_json::json!(HEALTH_TEST), "{config}");
        assert_eq!(config["config"]["Labels"]["ecs-minimal-container.placeholder"], "true", "{config}");
    }
    pulled_becomes_healthy(&bed, &docker, "no-engine").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_noop_rerun_makes_no_upload_and_no_manifest_write() {
    let bed = bed();
    let proxy = testbed::HttpProxy::start(bed.registry.port, |_| testbed::Verdict::Forward).unwrap();
    let env = with(bed.env(), "ECR_REGISTRY_ENDPOINT", proxy.endpoint());
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "noop-1,noop-2,noop-3"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let first = proxy.requests();
    // Each blob is uploaded once, into the first repository; the others mount it from there.
    let uploads = first.iter().filter(|r| r.starts_with("PATCH ")).count();
    assert_eq!(uploads, 4, "two layers and two configs, uploaded once each: {first:#?}");
    let mounts = first.iter().filter(|r| r.starts_with("POST ") && r.contains("mount=")).count();
    assert_eq!(mounts, 8, "the other two repositories mount all four: {first:#?}");

    let (code, stdout, stderr) = xtask(&["publish", "--containers", "noop-1,noop-2,noop-3"], &env);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().filter(|l| l.contains("up to date  ")).count(), 3, "{stdout}");
    let second = &proxy.requests()[first.len()..];
    assert!(writes(second).is_empty(), "a no-op re-run wrote to the registry: {second:#?}");
    assert_eq!(second.len(), 3, "one read of :latest per repository: {second:#?}");
    assert!(!stderr.contains("healthy after"), "no smoke test for a no-op: {stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_image_is_skipped_untouched_and_replaced_only_with_force() {
    let bed = bed();
    let docker = docker().await;
    // Somebody's real image, pushed as gamma:latest before we arrive.
    let _real = push_real_image(&bed, &docker, "gamma").await;
    let (_, real_digest) = bed.registry_json("gamma/manifests/latest").await.unwrap();

    let (code, stdout, stderr) = xtask(&["publish", "--containers", "gamma", "--output", "json"], &bed.env());
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
    assert_eq!(report["containers"][0]["action"], "skipped", "{report}");
    assert!(report["containers"][0]["reason"].as_str().unwrap().contains("--force"), "{report}");
    assert!(stderr.contains("warning: skipped"), "{stderr}");
    let (_, digest) = bed.registry_json("gamma/manifests/latest").await.unwrap();
    assert_eq!(digest, real_digest, "the real image was touched");

    let (code, stdout, stderr) =
        xtask(&["publish", "--containers", "gamma", "--force", "--output", "json"], &bed.env());
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
    assert_eq!(report["containers"][0]["action"], "updated", "{report}");
    let digest = assert_placeholder_list(&bed, "gamma").await;
    assert_eq!(report["containers"][0]["digest"], digest.as_str());
}

#[test]
fn invalid_names_exit_2_and_create_nothing() {
    let bed = bed();
    let long = "a".repeat(257);
    for list in ["Upper-case", "x", long.as_str(), "a//b", "-leading", "", " , ", "good-one,Bad"] {
        let (code, _, stderr) = xtask(&["publish", &format!("--containers={list}")], &bed.env());
        assert_eq!(code, 2, "{list:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    let names = tokio::runtime::Runtime::new().unwrap().block_on(bed.repository_names());
    assert!(names.is_empty(), "created {names:?}");
}

#[test]
fn dry_run_changes_nothing() {
    let bed = bed();
    let (code, stdout, stderr) =
        xtask(&["publish", "--containers", "delta,epsilon", "--dry-run", "--output", "json"], &bed.env());
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
    assert_eq!(report["containers"][0]["action"], "would-create");
    assert_eq!(report["containers"][1]["action"], "would-create");
    let names = tokio::runtime::Runtime::new().unwrap().block_on(bed.repository_names());
    assert!(names.is_empty(), "dry run created {names:?}");
    assert!(!stderr.contains("pushing"), "{stderr}");
    assert_eq!(report["containers"][0]["ports"], serde_json::json!([]));

    // The table says which ports each placeholder knows, and what one that knows none does on Fargate.
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "delta,epsilon:8080", "--dry-run"], &bed.env());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.lines().next().unwrap().contains("PORTS"), "{stdout}");
    assert!(row(&stdout, "delta").contains(" ? ") && row(&stdout, "epsilon").contains(" 8080 "), "{stdout}");
    let advice = reason(&stdout, "delta");
    assert!(
        advice.contains("Fargate")
            && advice.contains("health check names")
            && advice.contains("--containers delta:8080"),
        "{advice}"
    );
    assert!(
        !stdout.contains("epsilon: PORTS") && !advice.contains("epsilon"),
        "a container with a port needs no advice: {stdout}"
    );
}

#[test]
fn ecr_api_down_is_one_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let env = vec![
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_REGION", "eu-west-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
    ];
    let (code, _, stderr) = xtask(&["publish", "--containers", "zeta"], &env);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("ECR GetAuthorizationToken failed"), "{stderr}");
}

#[test]
fn no_region_says_how_to_give_one() {
    let home = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(XTASK)
        .args(["publish", "--containers", "eta"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no AWS region") && stderr.contains("--region"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_down_fails_each_container_and_a_rerun_converges() {
    let mut bed = bed();
    bed.registry.stop();
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "theta,iota"], &bed.env());
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().filter(|l| l.contains("failed")).count(), 2, "{stdout}");
    assert!(stdout.contains("theta: ") && stdout.contains("iota: "), "a reason per container: {stdout}");
    // The repositories exist and kept their lifecycle policy despite the failure.
    let ecr = bed.ecr().await;
    for name in ["theta", "iota"] {
        ecr.get_lifecycle_policy().repository_name(name).send().await.expect("lifecycle policy after a failed run");
    }

    bed.registry.start_again().unwrap();
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "theta,iota"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_placeholder_list(&bed, "theta").await;
    assert_placeholder_list(&bed, "iota").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_repository_with_other_encryption_is_reused_and_reported() {
    let bed = bed();
    bed.ecr()
        .await
        .create_repository()
        .repository_name("aes-repo")
        .encryption_configuration(
            aws_sdk_ecr::types::EncryptionConfiguration::builder()
                .encryption_type(aws_sdk_ecr::types::EncryptionType::Aes256)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "aes-repo", "--output", "json"], &bed.env());
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let container = &report["containers"][0];
    assert_eq!(container["action"], "updated", "{report}");
    let warning = container["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("AES256 encryption, not the KMS"), "{report}");
    assert!(warning.contains("cannot change after creation"), "{report}");
    assert!(stderr.contains("warning: repository exists with AES256"), "{stderr}");
}

/// A task definition file with these container definitions.
fn definitions(containers: serde_json::Value) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("task-definition.json");
    std::fs::write(&file, serde_json::json!({ "family": "tags", "containerDefinitions": containers }).to_string())
        .unwrap();
    let path = file.display().to_string();
    (dir, path)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tag_a_definition_names_is_where_the_placeholder_goes() {
    let bed = bed();
    let image = |reference: &str| format!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/{reference}");
    let (_d1, file) = definitions(serde_json::json!([
        { "name": "api", "image": image("tagged:1.0.0"), "portMappings": [{ "containerPort": 3000 }] },
        { "name": "worker", "image": image("tagged:back-end") },
        { "name": "pinned", "image": image("pinned@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef") },
        { "name": "templated", "image": image("templ:${Tag}") },
    ]));
    let (code, stdout, stderr) = xtask(&["publish", "--task-definition", &file], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(registry_tags(&bed, "tagged").await, ["1.0.0", "back-end", "latest"]);
    assert_eq!(registry_tags(&bed, "templ").await, ["latest"]);
    assert!(stderr.contains("pins the digest sha256:0123") && stderr.contains("nothing is pushed for it"), "{stderr}");
    assert!(stderr.contains("\"${Tag}\"") && stderr.contains("--from stack:NAME"), "{stderr}");
    let names = bed.repository_names().await;
    assert!(!names.contains(&"pinned".to_owned()), "a digest-pinned repository needs nothing: {names:?}");
    assert!(row(&stdout, "tagged").contains("1.0.0,back-end,latest"), "{stdout}");
    // Each tag holds the one placeholder, and a re-run finds them all up to date.
    let index = assert_placeholder_list(&bed, "tagged").await;
    for tag in ["1.0.0", "back-end"] {
        let (_, digest) = bed.registry_json(&format!("tagged/manifests/{tag}")).await.unwrap();
        assert_eq!(digest, index, ":{tag}");
    }
    let (code, stdout, stderr) = xtask(&["publish", "--task-definition", &file], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(row(&stdout, "tagged").contains("up to date"), "{stdout}");

    // --no-latest: only the tag the definition names.
    let (_d2, only) = definitions(serde_json::json!([{ "name": "only", "image": image("only:7") }]));
    let (code, stdout, stderr) = xtask(&["publish", "--task-definition", &only, "--no-latest"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(registry_tags(&bed, "only").await, ["7"]);

    // A repository with immutable tags: a tag it lacks gets no placeholder unless asked for (it
    // would block the pipeline's push there), then is pushed once; one it has is reported.
    bed.ecr()
        .await
        .create_repository()
        .repository_name("frozen")
        .image_tag_mutability(aws_sdk_ecr::types::ImageTagMutability::Immutable)
        .send()
        .await
        .unwrap();
    let (_d3, first) = definitions(
        serde_json::json!([{ "name": "f", "image": image("frozen:1.0.0"), "portMappings": [{ "containerPort": 8080 }] }]),
    );
    let (code, stdout, stderr) = xtask(&["publish", "--task-definition", &first], &bed.env());
    assert_eq!(code, 1, "a tag left empty is a service that cannot start:\n{stdout}\n{stderr}");
    assert!(registry_tags(&bed, "frozen").await.is_empty());
    let (code, stdout, stderr) =
        xtask(&["publish", "--task-definition", &first, "--fill-immutable", "1.0.0,latest"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(registry_tags(&bed, "frozen").await, ["1.0.0", "latest"]);
    let (_d4, changed) = definitions(
        serde_json::json!([{ "name": "f", "image": image("frozen:1.0.0"), "portMappings": [{ "containerPort": 9090 }] }]),
    );
    let (code, stdout, stderr) = xtask(&["publish", "--task-definition", &changed], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(row(&stdout, "frozen").contains("skipped"), "{stdout}");
    assert!(reason(&stdout, "frozen").contains("immutable"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proof_is_reused_only_for_the_same_digest_and_only_when_it_can_be_trusted() {
    let bed = bed();
    let cache = tempfile::tempdir().unwrap();
    let env = with(bed.env(), "ECS_PLACEHOLDER_CACHE", cache.path().display().to_string());
    let publish = |names: &str, extra: &[&str]| {
        let mut args = vec!["publish", "--containers", names];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = xtask(&args, &env);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        stderr
    };
    let proven_now = |stderr: &str| stderr.contains("healthy after");
    let reused = |stderr: &str| stderr.contains("proven healthy by an earlier run for this same digest");

    // --no-smoke proves nothing, so keeps nothing.
    let stderr = publish("reuse-none", &["--no-smoke"]);
    assert!(!proven_now(&stderr) && !cache.path().join("proofs").exists(), "{stderr}");

    let stderr = publish("reuse-a", &[]);
    assert!(proven_now(&stderr) && !reused(&stderr), "{stderr}");
    let digest = stderr
        .lines()
        .find_map(|l| l.strip_prefix("placeholder "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let proof = cache.path().join("proofs").join(format!("{}.json", digest.replace(':', "-")));
    assert!(proof.exists(), "{}", proof.display());

    // The same digest: the earlier proof stands, and says so.
    let stderr = publish("reuse-b", &[]);
    assert!(reused(&stderr) && !proven_now(&stderr), "{stderr}");
    // Another digest (a port baked in changes the image's config): proven again.
    let stderr = publish("reuse-c:8080", &[]);
    assert!(proven_now(&stderr) && !reused(&stderr), "{stderr}");

    // A proof that is not whole, or is another version's, is never trusted.
    let kept = std::fs::read_to_string(&proof).unwrap();
    for broken in [
        kept[..kept.len() / 2].to_owned(),
        kept.replace(env!("CARGO_PKG_VERSION"), "0.0.1"),
        kept.replace(&digest, "sha256:0"),
    ] {
        std::fs::write(&proof, broken).unwrap();
        let stderr = publish("reuse-d", &[]);
        assert!(
            stderr.contains("pushing") && proven_now(&stderr) && !reused(&stderr),
            "a broken proof was trusted: {stderr}"
        );
        // The repository goes, so the next run pushes (and so proves) again.
        bed.ecr().await.delete_repository().repository_name("reuse-d").force(true).send().await.unwrap();
    }

    // A damaged compressed layer in the cache is rebuilt, never pushed: the image is whole.
    for layer in std::fs::read_dir(cache.path().join("layers")).unwrap() {
        std::fs::write(layer.unwrap().path(), b"not gzip").unwrap();
    }
    let stderr = publish("reuse-e", &[]);
    assert!(stderr.contains(&digest), "the same image again: {stderr}");
    let docker = docker().await;
    pulled_becomes_healthy(&bed, &docker, "reuse-e").await;
}
