//! Shared helpers: run the real `xtask` binary, look at what it left in the engine and the
//! registry, and ask skopeo (a registry client nobody here wrote) what was pushed.
#![allow(dead_code)] // each test file uses its own subset

use std::process::{Command, Output};

use bollard::Docker;

pub const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

/// Runs `xtask args...` with `env` added; returns (exit code, stdout, stderr).
pub fn xtask(args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let Output { status, stdout, stderr } =
        Command::new(XTASK).args(args).envs(env.iter().map(|(k, v)| (k, v))).output().expect("run xtask");
    (
        status.code().expect("exit code, not a signal"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

pub async fn docker() -> Docker {
    testbed::docker_engine().expect("a Docker engine");
    Docker::connect_with_defaults().unwrap().negotiate_version().await.unwrap()
}

/// An image name no other test uses, so tests can run in parallel and clean up after themselves.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("xtask-test-{prefix}-{}-{nanos}", std::process::id())
}

/// Removes every tag under `name` (after a test, passed or not).
pub struct Cleanup {
    pub tags: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for tag in &self.tags {
            let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
        }
    }
}

pub use testbed::Bed;

/// The test bed, or a failed test saying which part of it is missing.
pub fn bed() -> Bed {
    Bed::start().expect("the test bed (`bash .ci/install`)")
}

/// What tests ask of the bed beyond starting it.
#[allow(async_fn_in_trait)]
pub trait BedExt {
    /// The AWS configuration that reaches the bed's moto (ECR, ECS, ELBv2, CloudFormation).
    async fn aws(&self) -> aws_config::SdkConfig;
    async fn ecr(&self) -> aws_sdk_ecr::Client;
    async fn repository_names(&self) -> Vec<String>;
    async fn registry_json(&self, path: &str) -> Option<(serde_json::Value, String)>;
    fn registry_credentials(&self) -> bollard::auth::DockerCredentials;
}

impl BedExt for Bed {
    async fn aws(&self) -> aws_config::SdkConfig {
        aws_at(&self.moto.endpoint()).await
    }

    async fn ecr(&self) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::new(&self.aws().await)
    }

    async fn repository_names(&self) -> Vec<String> {
        let listed = self.ecr().await.describe_repositories().send().await.expect("describe_repositories");
        listed.repositories().iter().filter_map(|r| r.repository_name().map(str::to_owned)).collect()
    }

    /// GETs a manifest or blob from the test registry as JSON, with moto's credentials.
    async fn registry_json(&self, path: &str) -> Option<(serde_json::Value, String)> {
        let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
                      application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
        let _ = rustls::crypto::ring::default_provider().install_default();
        let response = reqwest::Client::new()
            .get(format!("http://{}/v2/{path}", self.registry.host()))
            .basic_auth(testbed::ECR_USER, Some(testbed::MOTO_PASSWORD))
            .header("Accept", accept)
            .send()
            .await
            .expect("registry request");
        if response.status() == 404 {
            return None;
        }
        assert!(response.status().is_success(), "{path}: {}", response.status());
        let bytes = response.bytes().await.unwrap();
        use sha2::Digest;
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
        Some((serde_json::from_slice(&bytes).unwrap(), digest))
    }

    fn registry_credentials(&self) -> bollard::auth::DockerCredentials {
        bollard::auth::DockerCredentials {
            username: Some(testbed::ECR_USER.to_owned()),
            password: Some(testbed::MOTO_PASSWORD.to_owned()),
            serveraddress: Some(self.registry.host()),
            ..Default::default()
        }
    }
}

/// Runs `image` with no network until Docker's health check calls it healthy (or fails).
pub async fn becomes_healthy(docker: &Docker, image: &str) -> Result<(), String> {
    use bollard::models::{ContainerCreateBody, HealthConfig, HealthStatusEnum, HostConfig};
    let config = ContainerCreateBody {
        image: Some(image.to_owned()),
        healthcheck: Some(HealthConfig { interval: Some(250_000_000), ..Default::default() }),
        host_config: Some(HostConfig { network_mode: Some("none".into()), ..Default::default() }),
        ..Default::default()
    };
    let id = docker.create_container(None, config).await.map_err(|e| e.to_string())?.id;
    docker.start_container(&id, None).await.map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let verdict = loop {
        let state = docker.inspect_container(&id, None).await.unwrap().state.unwrap_or_default();
        match state.health.and_then(|h| h.status) {
            Some(HealthStatusEnum::HEALTHY) => break Ok(()),
            Some(HealthStatusEnum::UNHEALTHY) => break Err("unhealthy".to_owned()),
            _ if std::time::Instant::now() > deadline => break Err("not healthy in 20 s".to_owned()),
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    };
    let _ = docker
        .remove_container(
            &id,
            Some(bollard::query_parameters::RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await;
    verdict
}

/// Builds a small image that is not a placeholder and pushes it as `repository:latest` to the
/// test registry, as a pipeline would, creating the ECR repository first if it is missing. The
/// returned guard removes the local image.
pub async fn push_real_image(bed: &Bed, docker: &Docker, repository: &str) -> Cleanup {
    let _ = bed.ecr().await.create_repository().repository_name(repository).send().await;
    let (pushed, cleanup) =
        push_image(docker, &bed.registry.host(), bed.registry_credentials(), repository, "latest", false).await;
    pushed.expect("push the real image");
    cleanup
}

/// Builds a real (not placeholder) image and pushes it as `repository:tag` to the registry at
/// `host`: with a command when `runs`, else one with nothing to run (a container of it cannot
/// start). The push's error where the registry refuses it; the guard removes the local image.
pub async fn push_image(
    docker: &Docker,
    host: &str,
    credentials: bollard::auth::DockerCredentials,
    repository: &str,
    tag: &str,
    runs: bool,
) -> (Result<(), String>, Cleanup) {
    use bollard::query_parameters::{
        BuildImageOptionsBuilder, PushImageOptionsBuilder, RemoveImageOptions, TagImageOptionsBuilder,
    };
    use futures_util::{StreamExt, TryStreamExt};
    let context = {
        let mut tar = tar::Builder::new(Vec::new());
        let dockerfile = if runs {
            "FROM scratch\nCOPY app /app\nLABEL org.example.app=real\nCMD [\"/app\", \"--serve\"]\n".to_owned()
        } else {
            "FROM scratch\nCOPY app /app\nLABEL org.example.app=real\n".to_owned()
        };
        for (name, data) in [("Dockerfile", dockerfile.as_bytes()), ("app", &b"the real application"[..])] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o755);
            tar.append_data(&mut header, name, data).unwrap();
        }
        tar.into_inner().unwrap()
    };
    let local = format!("{}:latest", unique_name("real"));
    docker
        .build_image(
            // No cache: a cached intermediate image is shared, and another test's cleanup may remove it mid-build.
            BuildImageOptionsBuilder::new().dockerfile("Dockerfile").t(&local).rm(true).nocache(true).build(),
            None,
            Some(bollard::body_full(context.into())),
        )
        .try_collect::<Vec<_>>()
        .await
        .expect("build the real image");
    let remote = format!("{host}/{repository}");
    docker.tag_image(&local, Some(TagImageOptionsBuilder::new().repo(&remote).tag(tag).build())).await.unwrap();
    let mut pushing =
        docker.push_image(&remote, Some(PushImageOptionsBuilder::new().tag(tag).build()), Some(credentials));
    let mut pushed = Ok(());
    while let Some(item) = pushing.next().await {
        match item {
            Ok(info) if info.error_detail.is_some() => pushed = Err(format!("{:?}", info.error_detail)),
            Ok(_) => {}
            Err(e) => pushed = Err(e.to_string()),
        }
    }
    let _ = docker.remove_image(&format!("{remote}:{tag}"), None::<RemoveImageOptions>, None).await;
    (pushed, Cleanup { tags: vec![local] })
}

/// An AWS configuration for moto at `endpoint` (the bed's, or a proxy in front of it).
pub async fn aws_at(endpoint: &str) -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(
            aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https(),
        )
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_ecr::config::Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

/// The test registry's tags for `repository`.
pub async fn registry_tags(bed: &Bed, repository: &str) -> Vec<String> {
    let (list, _) = bed.registry_json(&format!("{repository}/tags/list")).await.unwrap_or_default();
    let mut tags: Vec<String> =
        list["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned)).collect();
    tags.sort();
    tags
}

/// `skopeo inspect ARGS docker://REGISTRY/REFERENCE` with the test registry's credentials, as JSON.
pub fn skopeo_inspect(bed: &Bed, reference: &str, args: &[&str]) -> serde_json::Value {
    let creds = format!("{}:{}", testbed::ECR_USER, testbed::MOTO_PASSWORD);
    let output = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--creds", &creds])
        .args(args)
        .arg(format!("docker://{}/{reference}", bed.registry.host()))
        .output()
        .expect("skopeo (`bash .ci/install`)");
    assert!(output.status.success(), "skopeo inspect {reference}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("skopeo prints JSON")
}

/// Pulls `repository:latest` from the test registry into the engine and runs it until Docker's
/// health check calls it healthy.
pub async fn pulled_becomes_healthy(bed: &Bed, docker: &Docker, repository: &str) {
    use bollard::query_parameters::CreateImageOptionsBuilder;
    use futures_util::TryStreamExt;
    let reference = format!("{}/{repository}", bed.registry.host());
    docker
        .create_image(
            Some(CreateImageOptionsBuilder::new().from_image(&reference).tag("latest").build()),
            None,
            Some(bed.registry_credentials()),
        )
        .try_collect::<Vec<_>>()
        .await
        .unwrap_or_else(|e| panic!("pull {reference}:latest: {e}"));
    let verdict = becomes_healthy(docker, &format!("{reference}:latest")).await;
    let _ = docker
        .remove_image(&format!("{reference}:latest"), None::<bollard::query_parameters::RemoveImageOptions>, None)
        .await;
    verdict.unwrap_or_else(|e| panic!("{reference}:latest pulled but not healthy: {e}"));
}

/// The test bed's environment with one variable replaced.
pub fn with(env: Vec<(&'static str, String)>, key: &'static str, value: String) -> Vec<(&'static str, String)> {
    let mut env: Vec<_> = env.into_iter().filter(|(k, _)| *k != key).collect();
    env.push((key, value));
    env
}

/// The table row of a container in publish's text output.
pub fn row<'a>(stdout: &'a str, container: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{container} ")))
        .unwrap_or_else(|| panic!("no row for {container}:\n{stdout}"))
}

/// The reason line of a container in publish's text output.
pub fn reason<'a>(stdout: &'a str, container: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{container}: ")))
        .unwrap_or_else(|| panic!("no reason for {container}:\n{stdout}"))
}

/// Requests that change a registry: uploads and manifest writes.
pub fn writes(requests: &[String]) -> Vec<&String> {
    requests
        .iter()
        .filter(|r| {
            r.starts_with("POST ") || r.starts_with("PATCH ") || r.starts_with("PUT ") || r.starts_with("DELETE ")
        })
        .collect()
}

/// The build context for the repository's Dockerfile: the Dockerfile, `public_html/` and the
/// server binary where the Dockerfile expects it.
pub fn dockerfile_context(root: &std::path::Path, binary: &std::path::Path) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.append_path_with_name(root.join("Dockerfile"), "Dockerfile").unwrap();
    tar.append_dir_all("public_html", root.join("public_html")).unwrap();
    tar.append_path_with_name(binary, "target/x86_64-unknown-linux-musl/release/server").unwrap();
    tar.into_inner().unwrap()
}

/// `docker build` of `context` on the classic builder, tagged `tag`.
pub async fn build_dockerfile(docker: &Docker, context: Vec<u8>, tag: &str) {
    use bollard::query_parameters::BuildImageOptionsBuilder;
    use futures_util::StreamExt;
    // No cache: a cached intermediate image is shared, and another test's cleanup may remove it mid-build.
    let options = BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .nocache(true)
        .networkmode("none")
        .build();
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(item) = stream.next().await {
        let info = item.expect("docker build");
        assert!(info.error_detail.is_none(), "docker build failed: {info:?}");
    }
}

/// Every path in an image's layers (`docker save`), directories with a trailing `/`.
/// Every entry of the image's layers; a hard link reads `PATH => TARGET`, a directory ends in `/`.
pub async fn image_files(docker: &Docker, image: &str) -> std::collections::BTreeSet<String> {
    use futures_util::TryStreamExt;
    use std::io::Read;
    let chunks: Vec<bytes::Bytes> = docker.export_image(image).try_collect().await.expect("docker save");
    let archive = chunks.concat();
    let mut files = std::collections::BTreeSet::new();
    for entry in tar::Archive::new(&archive[..]).entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        if !path.ends_with("layer.tar") {
            continue;
        }
        let mut layer = Vec::new();
        entry.read_to_end(&mut layer).unwrap();
        for file in tar::Archive::new(&layer[..]).entries().unwrap() {
            let file = file.unwrap();
            let mut name = file.path().unwrap().display().to_string();
            if file.header().entry_type().is_dir() && !name.ends_with('/') {
                name.push('/');
            }
            if file.header().entry_type().is_hard_link() {
                name = format!("{name} => {}", file.link_name().unwrap().unwrap().display());
            }
            files.insert(name);
        }
    }
    files
}

// ---------------------------------------------------------------- ECS and ELBv2 in moto

/// The account and region every bed's ECR images are in.
pub const ECR: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

/// A VPC, made the way a stack makes one; its id.
pub async fn vpc(bed: &Bed) -> String {
    let ec2 = aws_sdk_cloudformation::Client::new(&bed.aws().await);
    ec2.create_stack()
        .stack_name("Network")
        .template_body("Resources:\n  Vpc:\n    Type: AWS::EC2::VPC\n    Properties:\n      CidrBlock: 10.1.0.0/16\n")
        .send()
        .await
        .unwrap();
    let resources = ec2.list_stack_resources().stack_name("Network").send().await.unwrap();
    resources.stack_resource_summaries()[0].physical_resource_id().unwrap().to_owned()
}

/// A target group on `port` whose health check asks `path` on `check_port` (`traffic-port` for the
/// target's own port); its ARN.
pub async fn target_group(bed: &Bed, vpc: &str, name: &str, port: i32, check_port: &str, path: &str) -> String {
    use aws_sdk_elasticloadbalancingv2::types::{ProtocolEnum, TargetTypeEnum};
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(&bed.aws().await);
    let group = elbv2
        .create_target_group()
        .name(name)
        .protocol(ProtocolEnum::Http)
        .port(port)
        .vpc_id(vpc)
        .target_type(TargetTypeEnum::Ip)
        .health_check_port(check_port)
        .health_check_path(path)
        .send()
        .await
        .unwrap();
    group.target_groups()[0].target_group_arn().unwrap().to_owned()
}

/// A container on `port` with 256 MiB, to build on.
pub fn web(name: &str, image: &str, port: i32) -> aws_sdk_ecs::types::builders::ContainerDefinitionBuilder {
    aws_sdk_ecs::types::ContainerDefinition::builder()
        .name(name)
        .image(image)
        .memory(256)
        .port_mappings(aws_sdk_ecs::types::PortMapping::builder().container_port(port).build())
}

/// The PORTS column of a container's row in publish's table.
pub fn ports(stdout: &str, container: &str) -> String {
    row(stdout, container).split_whitespace().nth(4).unwrap_or_default().to_owned()
}
