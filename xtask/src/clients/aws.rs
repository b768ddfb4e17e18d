//! AWS access through aws-config's default chain only (environment, profiles, SSO, assume-role,
//! instance and task roles), and the registry credentials ECR hands out for pushing.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::base::Usage;
use crate::clients::registry::{Credentials, Registry};

/// Where to find AWS and the registry: flags every task that talks to ECR shares.
#[derive(clap::Args, Debug, Default)]
pub struct AwsArgs {
    /// AWS regions, comma-separated: each is a target with every profile [default: from the
    /// environment or profile].
    #[arg(long, value_name = "REGIONS")]
    pub region: Option<String>,
    /// AWS profiles from ~/.aws/config, comma-separated: each is a target in every region
    /// [default: AWS_PROFILE or "default"].
    #[arg(long, value_name = "PROFILES")]
    pub profile: Option<String>,
    /// A TOML or JSON file listing (profile, region) targets, for sets that are not a full cross
    /// product of --profile and --region.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["region", "profile"])]
    pub targets: Option<PathBuf>,
    /// Use this registry instead of the one GetAuthorizationToken names (for test beds); per
    /// target as ACCOUNT/REGION=URL,...
    #[arg(long, env = "ECR_REGISTRY_ENDPOINT", value_name = "URL")]
    pub registry_endpoint: Option<String>,
}

/// One (profile, region) pair to work on; `None` is what aws-config picks by default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub profile: Option<String>,
    pub region: Option<String>,
}

impl TargetSpec {
    /// How a message names it: `profile dev, eu-west-1`, or `the default profile`.
    pub fn label(&self) -> String {
        let profile = match &self.profile {
            Some(profile) => format!("profile {profile}"),
            None => "the default profile".to_owned(),
        };
        match &self.region {
            Some(region) => format!("{profile}, {region}"),
            None => profile,
        }
    }
}

/// The targets file: `[[target]]` tables in TOML, or `{"targets": [...]}` / `[...]` in JSON.
#[derive(Deserialize)]
struct TargetsFile {
    #[serde(alias = "targets")]
    target: Vec<TargetSpec>,
}

impl AwsArgs {
    /// Checks the flags alone, before anything is contacted.
    pub fn check(&self) -> Result<()> {
        self.endpoints()?;
        self.specs()?;
        Ok(())
    }

    /// The first region `--region` names, for what a stack template resolves `AWS::Region` to.
    pub fn first_region(&self) -> Option<&str> {
        self.region.as_deref().and_then(|list| list.split(',').map(str::trim).find(|r| !r.is_empty()))
    }

    /// Every (profile, region) target the flags or the targets file name, each once, in order.
    pub fn specs(&self) -> Result<Vec<TargetSpec>> {
        let mut specs = match &self.targets {
            Some(file) => read_targets(file)?,
            None => {
                let list = |value: &Option<String>, flag: &str| -> Result<Vec<Option<String>>> {
                    let Some(value) = value else { return Ok(vec![None]) };
                    let items: Vec<Option<String>> =
                        value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(|v| Some(v.to_owned())).collect();
                    if items.is_empty() {
                        bail!(Usage(format!("--{flag} {value:?} names nothing: give e.g. --{flag} a,b")));
                    }
                    Ok(items)
                };
                let profiles = list(&self.profile, "profile")?;
                let regions = list(&self.region, "region")?;
                profiles
                    .iter()
                    .flat_map(|profile| {
                        regions.iter().map(|region| TargetSpec { profile: profile.clone(), region: region.clone() })
                    })
                    .collect()
            }
        };
        for spec in &specs {
            if let Some(region) = &spec.region
                && !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                bail!(Usage(format!("region {region:?} is not a region name such as eu-west-1")));
            }
        }
        let mut seen = Vec::new();
        specs.retain(|spec| {
            let new = !seen.contains(spec);
            seen.push(spec.clone());
            new
        });
        Ok(specs)
    }

    /// The registry endpoint override for one account and region, if any.
    fn endpoint_for(&self, account: &str, region: &str) -> Result<Option<String>> {
        let endpoints = self.endpoints()?;
        Ok(endpoints
            .iter()
            .find(|(key, _)| key.as_deref() == Some(&format!("{account}/{region}")))
            .or_else(|| endpoints.iter().find(|(key, _)| key.is_none()))
            .map(|(_, url)| url.clone()))
    }

    /// `URL` for every target, or `ACCOUNT/REGION=URL,...` per target.
    fn endpoints(&self) -> Result<Vec<(Option<String>, String)>> {
        let Some(value) = &self.registry_endpoint else { return Ok(Vec::new()) };
        let mut endpoints = Vec::new();
        for item in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            let (key, url) = match item.split_once('=') {
                Some((key, url)) => (Some(key.trim().to_owned()), url.trim()),
                None => (None, item),
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!(Usage(format!("--registry-endpoint {url:?}: give a URL such as https://host:port")));
            }
            endpoints.push((key, url.to_owned()));
        }
        Ok(endpoints)
    }

    /// The ECR client and the registry of the first target, logged in with a fresh token.
    pub async fn connect(&self) -> Result<(Aws, Registry)> {
        let spec = self.specs()?.into_iter().next().unwrap_or_default();
        let target = self.connect_one(&spec).await?;
        Ok((target.aws, target.registry))
    }

    /// Every target, connected concurrently; a target that cannot be reached is its error.
    pub async fn connect_all(&self) -> Result<Vec<(TargetSpec, Result<Target>)>> {
        let specs = self.specs()?;
        let connected = futures_util::future::join_all(specs.iter().map(|spec| self.connect_one(spec))).await;
        Ok(specs.into_iter().zip(connected).collect())
    }

    async fn connect_one(&self, spec: &TargetSpec) -> Result<Target> {
        let aws = connect(spec).await?;
        let (endpoint, credentials) = registry_login(&aws.ecr).await?;
        let account = account_of(&endpoint).unwrap_or_else(|| "unknown".to_owned());
        let endpoint = self.endpoint_for(&account, &aws.region)?.unwrap_or(endpoint);
        let registry = Registry::new(&endpoint, credentials)?;
        Ok(Target { spec: spec.clone(), account, aws, registry })
    }
}

fn read_targets(file: &Path) -> Result<Vec<TargetSpec>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Usage(format!("cannot read the targets file {}: {e}", file.display())))?;
    let parsed: Result<Vec<TargetSpec>, String> =
        if text.trim_start().starts_with(['[', '{']) && serde_json::from_str::<serde_json::Value>(&text).is_ok() {
            serde_json::from_str::<TargetsFile>(&text)
                .map(|f| f.target)
                .or_else(|_| serde_json::from_str::<Vec<TargetSpec>>(&text))
                .map_err(|e| e.to_string())
        } else {
            toml::from_str::<TargetsFile>(&text).map(|f| f.target).map_err(|e| e.message().to_owned())
        };
    match parsed {
        Ok(specs) if !specs.is_empty() => Ok(specs),
        Ok(_) => bail!(Usage(format!(
            "the targets file {} lists no targets: add [[target]] tables with profile and region",
            file.display()
        ))),
        Err(e) => bail!(Usage(format!(
            "the targets file {} is not a list of targets ({}): write [[target]] tables with profile = \"...\" and region = \"...\"",
            file.display(),
            e.lines().next().unwrap_or_default()
        ))),
    }
}

/// The account in a registry endpoint such as `https://123456789012.dkr.ecr.eu-west-1.amazonaws.com`.
fn account_of(endpoint: &str) -> Option<String> {
    let host = endpoint.split("://").nth(1).unwrap_or(endpoint);
    let account = host.split('.').next()?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then(|| account.to_owned())
}

/// One (profile, region) target, connected.
pub struct Target {
    pub spec: TargetSpec,
    pub account: String,
    pub aws: Aws,
    pub registry: Registry,
}

pub struct Aws {
    pub ecr: aws_sdk_ecr::Client,
    pub region: String,
    /// For the other services' clients (CloudFormation, ECS, ELBv2), made when needed.
    pub config: aws_config::SdkConfig,
}

pub async fn connect(spec: &TargetSpec) -> Result<Aws> {
    // A throttled call is tried again after a jittered exponential backoff, up to 8 attempts,
    // instead of failing the run. Standard retries, not adaptive: adaptive's client-side rate
    // limiter, after two throttled calls, held every later call of the run to about one in two
    // seconds (a one-repository publish took 28 s instead of 1 s; `tests/faults.rs`).
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(8))
        .http_client(https_client());
    if let Some(region) = &spec.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(profile) = &spec.profile {
        loader = loader.profile_name(profile);
    }
    let config = loader.load().await;
    let Some(region) = config.region().map(|r| r.to_string()) else {
        bail!(Usage(format!(
            "{}: no AWS region: pass --region, set AWS_REGION, or give the profile a region",
            spec.label()
        )));
    };
    let provider = config.credentials_provider().context("no AWS credentials provider")?;
    if let Err(e) = aws_credential_types::provider::ProvideCredentials::provide_credentials(&provider).await {
        bail!(Usage(credentials_error(spec, &region, &e)));
    }
    Ok(Aws { ecr: aws_sdk_ecr::Client::new(&config), region, config })
}

/// The SDK's HTTPS client with ring for TLS (`Cargo.toml` says why not the default).
pub fn https_client() -> aws_sdk_ecr::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// One line for credentials that could not be loaded: which sources the chain tried, as far as
/// the environment shows, and what to do; never the SDK's nested debug output.
fn credentials_error(spec: &TargetSpec, region: &str, error: &CredentialsError) -> String {
    let env = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let profile =
        spec.profile.clone().or_else(|| std::env::var("AWS_PROFILE").ok()).unwrap_or_else(|| "default".to_owned());
    let target = match &spec.region {
        Some(_) => spec.label(),
        None => format!("{} ({region})", spec.label()),
    };
    if !matches!(error, CredentialsError::CredentialsNotLoaded(_)) {
        let why = crate::base::root_cause(error).to_string();
        let why = why.split_whitespace().collect::<Vec<_>>().join(" ");
        return format!(
            "{target}: AWS credentials failed: {why}; check profile {profile:?} in ~/.aws/config (`aws sts get-caller-identity --profile {profile}` shows the same error)"
        );
    }
    let mut tried = Vec::new();
    if spec.profile.is_none() {
        tried.push(
            if env("AWS_ACCESS_KEY_ID") { "environment (incomplete)" } else { "environment (AWS_ACCESS_KEY_ID unset)" }
                .to_owned(),
        );
    }
    tried.push(format!("profile {profile:?} in ~/.aws/config and ~/.aws/credentials (no credentials there)"));
    if spec.profile.is_none() {
        tried.push(if env("AWS_WEB_IDENTITY_TOKEN_FILE") { "web identity" } else { "web identity (unset)" }.to_owned());
        let container = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") || env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
        tried.push(if container { "ECS task role" } else { "ECS task role (unset)" }.to_owned());
        let imds_off = std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        tried.push(if imds_off { "EC2 instance role (disabled)" } else { "EC2 instance role (no answer)" }.to_owned());
    }
    format!(
        "{target}: no AWS credentials; tried {}; fix: `aws configure --profile {profile}`, `aws sso login --profile {profile}`, \
         or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        tried.join(", ")
    )
}

/// GetAuthorizationToken: the registry to push to and the credentials for it, kept in memory.
pub async fn registry_login(ecr: &aws_sdk_ecr::Client) -> Result<(String, Credentials)> {
    let output = ecr.get_authorization_token().send().await.map_err(|e| call_failed("GetAuthorizationToken", e))?;
    let data = output.authorization_data().first().context("ECR returned no authorization data")?;
    let token = data.authorization_token().context("ECR returned no token")?;
    let endpoint = data.proxy_endpoint().context("ECR returned no registry endpoint")?.to_owned();
    let decoded = base64::engine::general_purpose::STANDARD.decode(token).context("ECR token is not base64")?;
    let decoded = String::from_utf8(decoded).context("ECR token is not text")?;
    let (user, password) = decoded.split_once(':').context("ECR token is not user:password")?;
    Ok((endpoint, Credentials { user: user.to_owned(), password: password.to_owned() }))
}

/// Connects every target. With one target its failure is the run's error (exit 2 for bad
/// credentials or region); with several, a failed target is reported and the others go on.
pub async fn connect_reachable(aws_args: &AwsArgs) -> Result<(Vec<Target>, Vec<(TargetSpec, anyhow::Error)>)> {
    let connected = aws_args.connect_all().await?;
    let single = connected.len() == 1;
    let mut destinations = Vec::new();
    let mut unreachable = Vec::new();
    for (spec, result) in connected {
        match result {
            Ok(target) => destinations.push(target),
            Err(error) if single => return Err(error),
            Err(error) => {
                eprintln!("[{}] failed: {error:#}", spec.label());
                unreachable.push((spec, error));
            }
        }
    }
    Ok((destinations, unreachable))
}

/// One line for a failed ECR call: the service's own code and message, or why it could not be
/// reached, instead of the SDK's whole error chain.
pub fn call_failed<E, R>(call: &str, error: SdkError<E, R>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    service_call_failed("ECR", call, error)
}

/// The same for any AWS service's call: `ECS DescribeServices failed: ClusterNotFoundException: ...`.
pub fn service_call_failed<E, R>(service: &str, call: &str, error: SdkError<E, R>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let why = match &error {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            format!("{}: {}", inner.code().unwrap_or("error"), inner.message().unwrap_or("no message"))
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            format!("cannot reach the {service} API ({})", crate::base::root_cause(&error))
        }
        _ => DisplayErrorContext(&error).to_string(),
    };
    anyhow::anyhow!("{service} {call} failed: {why}")
}

/// The service's error code of a failed call, such as `ClusterNotFoundException`.
pub fn error_code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    match error {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}
