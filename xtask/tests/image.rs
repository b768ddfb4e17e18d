//! `cargo xtask image` against the real Docker engine: both platforms build with the right
//! config, become healthy (arm64 under emulation), rebuild to the same IDs; broken images and
//! unreachable engines are reported as such.

mod common;

use std::collections::HashMap;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn builds_both_platforms_healthy_with_the_right_config_and_the_same_ids_twice() {
    let docker = docker().await;
    testbed::arm64_emulation().expect("arm64 emulation");
    let name = unique_name("both");
    let _cleanup = Cleanup { tags: vec![format!("{name}:amd64"), format!("{name}:arm64")] };

    let (code, stdout, stderr) = xtask(&["image", "--tag", &name], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("linux/amd64 placeholder healthy after"), "{stderr}");
    assert!(stderr.contains("linux/arm64 placeholder healthy after"), "{stderr}");
    assert!(stdout.contains("PLATFORM") && stdout.contains("linux/amd64") && stdout.contains("linux/arm64"), "{stdout}");

    let mut first_ids = HashMap::new();
    for (arch, go_arch) in [("amd64", "amd64"), ("arm64", "arm64")] {
        let image = docker.inspect_image(&format!("{name}:{arch}")).await.unwrap();
        assert_eq!(image.architecture.as_deref(), Some(go_arch));
        assert_eq!(image.os.as_deref(), Some("linux"));
        let config = image.config.unwrap();
        assert_eq!(config.entrypoint, Some(vec!["/server".to_owned()]));
        let health = config.healthcheck.unwrap();
        assert_eq!(health.test, Some(vec!["CMD".to_owned(), "/server".to_owned(), "--probe".to_owned()]));
        assert!(config.exposed_ports.unwrap().iter().any(|p| p == "80/tcp"));
        let labels = config.labels.unwrap();
        assert_eq!(labels.get("ecs-minimal-container.placeholder").map(String::as_str), Some("true"));
        assert_eq!(labels.get("org.opencontainers.image.version").map(String::as_str), Some(env!("CARGO_PKG_VERSION")));
        assert!(labels.contains_key("org.opencontainers.image.title"));
        assert!(labels.contains_key("org.opencontainers.image.revision"));
        assert!(image.size.unwrap() < 1024 * 1024, "image is {} bytes", image.size.unwrap());
        first_ids.insert(arch, image.id.unwrap());
    }
    assert_ne!(first_ids["amd64"], first_ids["arm64"]);

    let (code, _, stderr) = xtask(&["image", "--tag", &name, "--no-smoke"], &[]);
    assert_eq!(code, 0, "{stderr}");
    for arch in ["amd64", "arm64"] {
        let again = docker.inspect_image(&format!("{name}:{arch}")).await.unwrap().id.unwrap();
        assert_eq!(again, first_ids[arch], "{arch} rebuilt to a different ID");
    }
}

#[tokio::test]
async fn a_placeholder_without_healthcheck_html_is_reported_unhealthy() {
    let docker = docker().await;
    let name = unique_name("broken");
    let _cleanup = Cleanup { tags: vec![format!("{name}:amd64")] };
    let pages = tempfile::tempdir().unwrap();
    std::fs::write(pages.path().join("index.html"), "no health check here").unwrap();

    let (code, _, stderr) = xtask(
        &["image", "--platform", "linux/amd64", "--tag", &name, "--public-html", pages.path().to_str().unwrap()],
        &[],
    );
    assert_ne!(code, 0, "a broken placeholder passed: {stderr}");
    assert!(stderr.contains("linux/amd64 placeholder turned unhealthy"), "{stderr}");
    assert!(stderr.contains("answered 404"), "the probe's own output should be shown: {stderr}");
    // No container is left behind by the failed smoke test.
    let containers = docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptionsBuilder::new().all(true).build()))
        .await
        .unwrap();
    assert!(!containers.iter().any(|c| c.image.as_deref().is_some_and(|i| i.contains(&name))), "container left behind");
}

#[test]
fn an_unreachable_engine_is_one_clear_error() {
    let (code, _, stderr) = xtask(
        &["image", "--platform", "linux/amd64"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock".to_owned())],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot reach the Docker engine at unix:///nonexistent/docker.sock"), "{stderr}");
    assert!(stderr.contains("DOCKER_HOST"), "{stderr}");
}

#[test]
fn a_missing_rust_target_names_the_rustup_command() {
    // A rustc whose sysroot has no musl targets installed.
    let fake = tempfile::tempdir().unwrap();
    let rustc = fake.path().join("rustc");
    std::fs::write(&rustc, format!("#!/bin/sh\necho {}\n", fake.path().display())).unwrap();
    std::fs::set_permissions(&rustc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (code, _, stderr) = xtask(&["image"], &[("RUSTC", rustc.display().to_string())]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl"),
        "{stderr}"
    );
}

#[test]
fn bad_arguments_are_refused_before_any_work() {
    let (code, _, stderr) = xtask(&["image", "--platform", "linux/s390x"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("unknown platform \"linux/s390x\""), "{stderr}");
    let (code, _, stderr) = xtask(&["image", "--tag", "Bad_Name"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("invalid repository name \"Bad_Name\""), "{stderr}");
}
