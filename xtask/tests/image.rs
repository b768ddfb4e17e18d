//! `cargo xtask image` against the real Docker engine and without one: both platforms build with
//! the right config, become healthy (arm64 under emulation), rebuild to the same bytes; the
//! Dockerfile makes the same image; broken images and unreachable engines are reported as such.

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
    assert!(
        stderr.contains("linux/amd64: healthy after") && stderr.contains("(Docker HEALTHCHECK in the engine)"),
        "{stderr}"
    );
    assert!(stderr.contains("linux/arm64: healthy after"), "{stderr}");
    assert!(
        stdout.contains("PLATFORM") && stdout.contains("linux/amd64") && stdout.contains("linux/arm64"),
        "{stdout}"
    );

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
async fn a_placeholder_that_cannot_start_is_reported_with_its_log() {
    let docker = docker().await;
    let name = unique_name("broken");
    let _cleanup = Cleanup { tags: vec![format!("{name}:amd64")] };
    let pages = tempfile::tempdir().unwrap(); // nothing to serve: the server refuses to start

    let (code, _, stderr) = xtask(
        &["image", "--platform", "linux/amd64", "--tag", &name, "--public-html", pages.path().to_str().unwrap()],
        &[],
    );
    assert_ne!(code, 0, "a broken placeholder passed: {stderr}");
    assert!(stderr.contains("the linux/amd64 placeholder exited with code 1"), "{stderr}");
    assert!(stderr.contains("has no files to serve"), "the server's own output should be shown: {stderr}");
    // No container is left behind by the failed smoke test.
    let containers = docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptionsBuilder::new().all(true).build()))
        .await
        .unwrap();
    assert!(!containers.iter().any(|c| c.image.as_deref().is_some_and(|i| i.contains(&name))), "container left behind");

    // Without an engine the same image fails the same way, run straight from its layer.
    let layout = tempfile::tempdir().unwrap();
    let (code, _, stderr) = xtask(
        &[
            "image",
            "--platform",
            "linux/amd64",
            "--oci-dir",
            layout.path().to_str().unwrap(),
            "--public-html",
            pages.path().to_str().unwrap(),
        ],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock".to_owned())],
    );
    assert_ne!(code, 0, "a broken placeholder passed: {stderr}");
    assert!(
        stderr.contains("the linux/amd64 placeholder exited with") && stderr.contains("has no files to serve"),
        "{stderr}"
    );
}

/// Every file of an OCI layout: name to bytes.
fn layout_files(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    for path in ["oci-layout", "index.json"] {
        files.insert(path.to_owned(), std::fs::read(dir.join(path)).unwrap());
    }
    for entry in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        files.insert(entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).unwrap());
    }
    files
}

#[test]
fn two_builds_at_different_times_are_byte_identical_with_no_engine() {
    let pages = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../public_html")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), pages.path().join(entry.file_name())).unwrap();
    }
    let no_engine = [("DOCKER_HOST", "unix:///nonexistent/docker.sock".to_owned())];
    let build = |dir: &std::path::Path| {
        let (code, _, stderr) = xtask(
            &["image", "--oci-dir", dir.to_str().unwrap(), "--public-html", pages.path().to_str().unwrap()],
            &no_engine,
        );
        assert_eq!(code, 0, "{stderr}");
        stderr
    };
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let stderr = build(first.path());
    assert!(stderr.contains("linux/arm64: healthy after") && stderr.contains("qemu-user"), "{stderr}");
    // Another second on the clock, and every page touched since.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for entry in std::fs::read_dir(pages.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
    build(second.path());
    let (a, b) = (layout_files(first.path()), layout_files(second.path()));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "different blobs");
    assert!(a == b, "same names, different bytes");
    assert_eq!(a.len(), 2 + 7, "index, two manifests, two configs, two layers");

    // skopeo (not ours) reads the layout, and the index it finds is the one built.
    let output = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", &format!("oci:{}:latest", first.path().display())])
        .output()
        .expect("skopeo (`bash .ci/install`)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let index: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dockerfile_makes_the_same_image_as_the_in_process_build() {
    let docker = docker().await;
    let name = unique_name("dockerfile");
    let _cleanup = Cleanup { tags: vec![format!("{name}:amd64"), format!("{name}:from-dockerfile")] };
    let (code, _, stderr) = xtask(&["image", "--platform", "linux/amd64", "--tag", &name, "--no-smoke"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let binary = root.join("target/x86_64-unknown-linux-musl/release/server");
    let context = dockerfile_context(root, &binary);
    build_dockerfile(&docker, context, &format!("{name}:from-dockerfile")).await;

    let ours = docker.inspect_image(&format!("{name}:amd64")).await.unwrap().config.unwrap();
    let theirs = docker.inspect_image(&format!("{name}:from-dockerfile")).await.unwrap().config.unwrap();
    assert_eq!(ours.entrypoint, theirs.entrypoint);
    assert_eq!(ours.healthcheck, theirs.healthcheck);
    assert_eq!(ours.exposed_ports, theirs.exposed_ports);
    // The Dockerfile makes the bare placeholder: a COPY cannot make hard links, so the other names
    // of the binary and the accounts file are what only the in-process build adds.
    let ours = image_files(&docker, &format!("{name}:amd64")).await;
    let theirs = image_files(&docker, &format!("{name}:from-dockerfile")).await;
    assert!(
        theirs.is_subset(&ours),
        "only in the Dockerfile's image: {:?}",
        theirs.difference(&ours).collect::<Vec<_>>()
    );
    let extra: Vec<&String> = ours.difference(&theirs).collect();
    for entry in &extra {
        let expected =
            entry.ends_with('/') || entry.ends_with(" => server") || *entry == "etc/passwd" || *entry == "etc/group";
        assert!(expected, "unexpected entry {entry:?} in the in-process image");
    }
    for name in ["bin/sh => server", "usr/bin/curl => server", "usr/bin/wget => server", "usr/local/bin/node => server"]
    {
        assert!(extra.iter().any(|e| *e == name), "no {name} in {extra:?}");
    }
}

#[test]
fn an_unreachable_engine_is_one_clear_error() {
    let (code, _, stderr) = xtask(
        &["image", "--platform", "linux/amd64"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock".to_owned())],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot reach the Docker engine at unix:///nonexistent/docker.sock"), "{stderr}");
    assert!(stderr.contains("DOCKER_HOST") && stderr.contains("--oci-dir"), "{stderr}");
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
    assert!(stderr.contains("rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl"), "{stderr}");
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
