//! AWS access through aws-config's default chain only (environment, profiles, SSO, assume-role,
//! instance and task roles), and the registry credentials ECR hands out for pushing.

use anyhow::{bail, Context, Result};
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use base64::Engine as _;

use crate::registry::{Credentials, Registry};
use crate::Usage;

/// Where to find AWS and the registry: flags every task that talks to ECR shares.
#[derive(clap::Args, Debug)]
pub struct AwsArgs {
    /// AWS region [default: from the environment or profile].
    #[arg(long)]
    pub region: Option<String>,
    /// AWS profile from ~/.aws/config [default: AWS_PROFILE or "default"].
    #[arg(long)]
    pub profile: Option<String>,
    /// Use this registry instead of the one GetAuthorizationToken names (for test beds).
    #[arg(long, env = "ECR_REGISTRY_ENDPOINT", value_name = "URL")]
    pub registry_endpoint: Option<String>,
}

impl AwsArgs {
    /// Checks the flags alone, before anything is contacted.
    pub fn check(&self) -> Result<()> {
        if let Some(endpoint) = &self.registry_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                bail!(Usage(format!("--registry-endpoint {endpoint:?}: give a URL such as https://host:port")));
            }
        Ok(())
    }

    /// The ECR client and the registry, logged in with a fresh authorization token.
    pub async fn connect(&self) -> Result<(Aws, Registry)> {
        let aws = connect(self.region.as_deref(), self.profile.as_deref()).await?;
        let (endpoint, credentials) = registry_login(&aws.ecr).await?;
        let registry = Registry::new(self.registry_endpoint.as_deref().unwrap_or(&endpoint), credentials)?;
        Ok((aws, registry))
    }
}

pub struct Aws {
    pub ecr: aws_sdk_ecr::Client,
    pub region: String,
}

pub async fn connect(region: Option<&str>, profile: Option<&str>) -> Result<Aws> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(RetryConfig::standard().with_max_attempts(5));
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    let config = loader.load().await;
    let Some(region) = config.region().map(|r| r.to_string()) else {
        bail!(Usage("no AWS region: pass --region, set AWS_REGION, or give your profile a region".into()));
    };
    let provider = config.credentials_provider().context("no AWS credentials provider")?;
    if let Err(e) = aws_credential_types::provider::ProvideCredentials::provide_credentials(&provider).await {
        bail!(Usage(format!(
            "no AWS credentials ({}): use a profile (--profile or AWS_PROFILE; `aws sso login` for SSO), \
             environment variables, or an instance/task role",
            DisplayErrorContext(&e)
        )));
    }
    Ok(Aws { ecr: aws_sdk_ecr::Client::new(&config), region })
}

/// GetAuthorizationToken: the registry to push to and the credentials for it, kept in memory.
pub async fn registry_login(ecr: &aws_sdk_ecr::Client) -> Result<(String, Credentials)> {
    let output = ecr
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| call_failed("GetAuthorizationToken", e))?;
    let data = output.authorization_data().first().context("ECR returned no authorization data")?;
    let token = data.authorization_token().context("ECR returned no token")?;
    let endpoint = data.proxy_endpoint().context("ECR returned no registry endpoint")?.to_owned();
    let decoded = base64::engine::general_purpose::STANDARD.decode(token).context("ECR token is not base64")?;
    let decoded = String::from_utf8(decoded).context("ECR token is not text")?;
    let (user, password) = decoded.split_once(':').context("ECR token is not user:password")?;
    Ok((endpoint, Credentials { user: user.to_owned(), password: password.to_owned() }))
}

/// One line for a failed ECR call: the service's own code and message, or why it could not be
/// reached, instead of the SDK's whole error chain.
pub fn call_failed<E, R>(call: &str, error: SdkError<E, R>) -> anyhow::Error
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
            format!("cannot reach the ECR API ({})", crate::root_cause(&error))
        }
        _ => DisplayErrorContext(&error).to_string(),
    };
    anyhow::anyhow!("ECR {call} failed: {why}")
}
