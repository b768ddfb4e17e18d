//! `cargo xtask status` and `cargo xtask teardown` end to end against the test bed.

mod common;

use common::*;

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn status_tells_placeholders_from_real_images_and_missing_repositories() {
    let bed = bed();
    let docker = docker().await;
    let (code, _, stderr) = xtask(&["publish", "--containers", "kappa,lambda"], &bed.env());
    assert_eq!(code, 0, "{stderr}");
    // A repository publish did not make is not listed by default.
    bed.ecr().await.create_repository().repository_name("unrelated").send().await.unwrap();

    let (code, stdout, stderr) = xtask(&["status", "--output", "json"], &bed.env());
    assert_eq!(code, 0, "{stderr}");
    let report = json(&stdout);
    let repositories = report["repositories"].as_array().unwrap();
    let names: Vec<&str> = repositories.iter().map(|r| r["container"].as_str().unwrap()).collect();
    assert_eq!(names, ["kappa", "lambda"]);
    for r in repositories {
        assert_eq!(r["exists"], true);
        assert_eq!(r["encryption"], "KMS");
        assert_eq!(r["lifecycle_policy"], "expected");
        assert_eq!(r["latest"], "placeholder");
        assert_eq!(r["latest_platforms"], serde_json::json!(["amd64", "arm64"]));
        assert!(r["latest_digest"].as_str().unwrap().starts_with("sha256:"));
    }
    assert_eq!(report["placeholders"], 2);

    // The pipeline replaces lambda's :latest with a real image.
    let _real = push_real_image(&bed, &docker, "lambda").await;
    let (code, stdout, stderr) = xtask(&["status", "--containers", "kappa,lambda"], &bed.env());
    assert_eq!(code, 0, "{stderr}");
    let lambda = stdout.lines().find(|l| l.starts_with("lambda")).unwrap();
    assert!(lambda.contains("real") && lambda.contains("amd64"), "{stdout}");
    assert!(stdout.trim_end().ends_with("1 of 2 repositories still serve the placeholder"), "{stdout}");

    let (code, stdout, _) = xtask(&["status", "--containers", "kappa,mu"], &bed.env());
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("mu") && l.contains("MISSING")), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn teardown_deletes_placeholder_repositories_and_refuses_real_ones() {
    let bed = bed();
    let docker = docker().await;
    let (code, _, stderr) = xtask(&["publish", "--containers", "nu,xi"], &bed.env());
    assert_eq!(code, 0, "{stderr}");
    let _real = push_real_image(&bed, &docker, "xi").await;

    // No terminal and no --yes: refused, nothing deleted.
    let (code, _, stderr) = xtask(&["teardown", "--containers", "nu"], &bed.env());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--yes"), "{stderr}");
    // --dry-run lists and leaves everything.
    let (code, stdout, stderr) = xtask(&["teardown", "--containers", "nu,xi,omicron", "--dry-run"], &bed.env());
    assert_eq!(code, 1, "xi is refused: {stdout}{stderr}");
    assert!(stdout.contains("nu: would-delete"), "{stdout}");
    assert!(stdout.contains("xi: refused") && stdout.contains("latest (sha256:"), "{stdout}");
    assert!(stdout.contains("omicron: not-found"), "{stdout}");
    assert_eq!(bed.repository_names().await.len(), 2);

    // Placeholder-only nu goes, from ECR and from the registry; xi with a real image stays.
    let (code, stdout, stderr) = xtask(&["teardown", "--containers", "nu,xi", "--yes"], &bed.env());
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("nu: deleted") && stdout.contains("xi: refused"), "{stdout}");
    assert_eq!(bed.repository_names().await, ["xi"]);
    assert!(bed.registry_json("nu/manifests/latest").await.is_none(), "nu:latest still in the registry");
    assert!(bed.registry_json("xi/manifests/latest").await.is_some());

    let (code, stdout, stderr) = xtask(&["teardown", "--containers", "xi", "--yes", "--force"], &bed.env());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(bed.repository_names().await.is_empty());
    assert!(bed.registry_json("xi/manifests/latest").await.is_none());
}
