//! The test bed itself: each service comes up, answers as the tests expect, and goes away.

use testbed::*;

#[test]
fn docker_engine_answers() {
    docker_engine().expect("a Docker engine");
    let output = std::process::Command::new("docker").args(["version", "--format", "{{.Server.APIVersion}}"]).output();
    // The CLI is a convenience here; the engine check above is the test.
    if let Ok(output) = output {
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
}

#[test]
fn arm64_emulation_is_registered_with_fix_binary() {
    arm64_emulation().expect("arm64 emulation");
    let entry = std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64").unwrap();
    assert!(entry.contains("flags:") && entry.lines().any(|l| l.starts_with("flags:") && l.contains('F')), "{entry}");
}

#[test]
fn registry_accepts_the_htpasswd_login_only() {
    let registry = Registry::start(MOTO_PASSWORD).expect("registry");
    let good = basic_auth(ECR_USER, MOTO_PASSWORD);
    let bad = basic_auth(ECR_USER, "wrong");
    assert_eq!(http_status(registry.port, "GET", "/v2/", &[("Authorization", &good)]).unwrap(), 200);
    assert_eq!(http_status(registry.port, "GET", "/v2/", &[("Authorization", &bad)]).unwrap(), 401);
    assert_eq!(http_status(registry.port, "GET", "/v2/", &[]).unwrap(), 401);
}

#[test]
fn registry_stops_and_comes_back_on_its_port() {
    let mut registry = Registry::start("pw").expect("registry");
    registry.stop();
    assert!(http_status(registry.port, "GET", "/v2/", &[]).is_err());
    registry.start_again().unwrap();
    assert_eq!(http_status(registry.port, "GET", "/v2/", &[]).unwrap(), 401);
}

#[tokio::test]
async fn moto_answers_a_signed_ecr_call_and_hands_out_the_known_token() {
    let moto = Moto::start().expect("moto");
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .region(aws_config::Region::new("eu-west-1"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .credentials_provider(aws_sdk_ecr::config::Credentials::new("testing", "testing", None, None, "testbed"))
        .load()
        .await;
    let ecr = aws_sdk_ecr::Client::new(&config);
    ecr.create_repository().repository_name("harness-check").send().await.expect("create_repository");
    let listed = ecr.describe_repositories().send().await.expect("describe_repositories");
    let names: Vec<_> = listed.repositories().iter().filter_map(|r| r.repository_name()).collect();
    assert_eq!(names, ["harness-check"]);
    let token = ecr.get_authorization_token().send().await.expect("get_authorization_token");
    let data = &token.authorization_data()[0];
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD.decode(data.authorization_token().unwrap()).unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), format!("{ECR_USER}:{MOTO_PASSWORD}"));
    drop(moto);
}
