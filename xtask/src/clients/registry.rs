//! The registry's HTTP API (OCI distribution / Docker Registry v2, which ECR speaks): read what
//! `:latest` is, push blobs (mounting across repositories where allowed) and manifests.
//!
//! Our own client rather than `oci-client`: ECR takes its GetAuthorizationToken credentials as
//! Basic auth on every request, which needs none of that crate's token exchange; publish must tell
//! a refused mount from a failed upload and fall back per blob, count and order its requests for
//! the no-op guarantee, and read `:latest` as raw bytes to compare digests; and reqwest is already
//! here. The protocol subset is small: HEAD/GET manifests and blobs, POST/PATCH/PUT uploads.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use serde_json::Value;

use crate::base::digest;
use crate::base::repo::PLACEHOLDER_LABEL;
use crate::image::oci::{self, Blob};

// Docker's media types too: earlier versions pushed them, and real images often use them.
const MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Registry credentials from ECR's GetAuthorizationToken. Never printed, never written to disk.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials {{ user: {:?}, password: <redacted> }}", self.user)
    }
}

#[derive(Clone)]
pub struct Registry {
    http: reqwest::Client,
    /// `https://<account>.dkr.ecr.<region>.amazonaws.com`, or the override for tests.
    base: String,
    credentials: Credentials,
}

/// A manifest as the registry holds it.
pub struct Manifest {
    pub media_type: String,
    pub digest: String,
    pub json: Value,
}

/// An image as the registry holds it, under a tag or digest.
pub struct Inspected {
    pub digest: String,
    /// Each platform's architecture and image config digest (its image ID).
    pub configs: BTreeMap<String, String>,
    /// Child manifests, for a manifest list or index.
    pub children: Vec<String>,
    /// Every platform's config carries this project's placeholder label.
    pub placeholder: bool,
}

/// What `:latest` of a repository is.
pub enum Latest {
    Missing,
    /// This project's placeholder; the image config digest (image ID) per platform.
    Placeholder {
        digest: String,
        configs: BTreeMap<String, String>,
    },
    /// Anything else: somebody's real image.
    Other {
        digest: String,
        platforms: Vec<String>,
    },
}

impl Registry {
    pub fn new(base: &str, credentials: Credentials) -> Result<Registry> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("ecs-minimal-container/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(60))
            .build()?;
        Ok(Registry { http, base: base.trim_end_matches('/').to_owned(), credentials })
    }

    /// `host[:port]`, as image references name the registry.
    pub fn host(&self) -> &str {
        self.base.split_once("://").map_or(&self.base, |(_, host)| host)
    }

    /// The credentials for the Docker engine to pull from this registry, for one request.
    pub fn docker_credentials(&self) -> bollard::auth::DockerCredentials {
        bollard::auth::DockerCredentials {
            username: Some(self.credentials.user.clone()),
            password: Some(self.credentials.password.clone()),
            serveraddress: Some(self.host().to_owned()),
            ..Default::default()
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/v2/{path}", self.base))
            .basic_auth(&self.credentials.user, Some(&self.credentials.password))
    }

    /// The manifest at `reference` (a tag or digest), or `None` when there is none.
    pub async fn manifest(&self, repository: &str, reference: &str) -> Result<Option<Manifest>> {
        let response = self
            .request(reqwest::Method::GET, &format!("{repository}/manifests/{reference}"))
            .header(ACCEPT, [MANIFEST_LIST, oci::INDEX, MANIFEST_V2, oci::MANIFEST].join(", "))
            .send()
            .await
            .with_context(|| format!("registry {} unreachable", self.host()))?;
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                bail!("registry {} refused the ECR token ({})", self.host(), response.status())
            }
            status if !status.is_success() => bail!("registry answered {status} for {repository}:{reference}"),
            _ => {}
        }
        let header_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = response.bytes().await?;
        let json: Value = serde_json::from_slice(&bytes).context("registry sent a manifest that is not JSON")?;
        let media_type = json["mediaType"].as_str().map(str::to_owned).or(header_type).unwrap_or_default();
        let digest = digest::sha256(&bytes);
        Ok(Some(Manifest { media_type, digest, json }))
    }

    async fn blob_json(&self, repository: &str, digest: &str) -> Result<Value> {
        let response = self
            .request(reqwest::Method::GET, &format!("{repository}/blobs/{digest}"))
            .send()
            .await
            .with_context(|| format!("registry {} unreachable", self.host()))?;
        if !response.status().is_success() {
            bail!("registry answered {} for blob {digest} of {repository}", response.status());
        }
        Ok(serde_json::from_slice(&response.bytes().await?)?)
    }

    /// Reads `:latest` and tells a placeholder of ours from anything else.
    pub async fn latest(&self, repository: &str) -> Result<Latest> {
        Ok(match self.inspect(repository, "latest").await? {
            None => Latest::Missing,
            Some(image) if image.placeholder => Latest::Placeholder { digest: image.digest, configs: image.configs },
            Some(image) => Latest::Other { digest: image.digest, platforms: image.configs.into_keys().collect() },
        })
    }

    /// Reads the image at `reference`, telling a placeholder of ours from anything else by the
    /// image configs' labels, and collects each platform's config digest.
    pub async fn inspect(&self, repository: &str, reference: &str) -> Result<Option<Inspected>> {
        let Some(top) = self.manifest(repository, reference).await? else { return Ok(None) };
        let is_list =
            top.media_type == MANIFEST_LIST || top.media_type == oci::INDEX || top.json.get("manifests").is_some();
        // (architecture as the list names it, config digest); a single image names its own.
        let mut platforms: Vec<(Option<String>, String)> = Vec::new();
        let mut children = Vec::new();
        if is_list {
            for child in top.json["manifests"].as_array().into_iter().flatten() {
                let Some(digest) = child["digest"].as_str() else { continue };
                let Some(manifest) = self.manifest(repository, digest).await? else {
                    bail!("{repository}:{reference} lists {digest}, which the registry does not have");
                };
                children.push(digest.to_owned());
                if let Some(config) = manifest.json["config"]["digest"].as_str() {
                    let arch = child["platform"]["architecture"].as_str().unwrap_or("unknown");
                    platforms.push((Some(arch.to_owned()), config.to_owned()));
                }
            }
        } else if let Some(config) = top.json["config"]["digest"].as_str() {
            platforms.push((None, config.to_owned()));
        }
        // Every platform must be ours for the whole to count as a placeholder.
        let mut placeholder = !platforms.is_empty();
        let mut configs = BTreeMap::new();
        for (arch, config) in platforms {
            let config_json = self.blob_json(repository, &config).await?;
            placeholder &= config_json["config"]["Labels"][PLACEHOLDER_LABEL] == "true";
            let arch = arch.unwrap_or_else(|| config_json["architecture"].as_str().unwrap_or("unknown").to_owned());
            configs.insert(arch, config);
        }
        Ok(Some(Inspected { digest: top.digest, configs, children, placeholder }))
    }

    /// The repository's tags; none when the registry has never seen it.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>> {
        let response = self
            .request(reqwest::Method::GET, &format!("{repository}/tags/list"))
            .send()
            .await
            .with_context(|| format!("registry {} unreachable", self.host()))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !response.status().is_success() {
            bail!("registry answered {} listing the tags of {repository}", response.status());
        }
        let json: Value = serde_json::from_slice(&response.bytes().await?)?;
        Ok(json["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned)).collect())
    }

    /// Deletes a manifest by digest where the registry's API allows it; `false` where it does
    /// not (ECR removes images through its own API, and with the repository).
    pub async fn delete_manifest(&self, repository: &str, digest: &str) -> Result<bool> {
        let response = self
            .request(reqwest::Method::DELETE, &format!("{repository}/manifests/{digest}"))
            .send()
            .await
            .with_context(|| format!("registry {} unreachable", self.host()))?;
        match response.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::UNSUPPORTED_MEDIA_TYPE => Ok(false),
            status => bail!("registry answered {status} deleting {repository}@{digest}"),
        }
    }

    /// Whether `repository` holds the blob `digest`.
    pub async fn has_blob(&self, repository: &str, digest: &str) -> Result<bool> {
        let response = self.send(self.request(reqwest::Method::HEAD, &format!("{repository}/blobs/{digest}"))).await?;
        match response.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(refusal(response, &format!("checking blob {digest} in {repository}")).await),
        }
    }

    /// Puts `blob` into `repository`: mounted from `mount_from` (a repository of the same
    /// registry that holds it) where the registry allows that, uploaded otherwise.
    pub async fn push_blob(&self, repository: &str, blob: &Blob, mount_from: Option<&str>) -> Result<Pushed> {
        let start = format!("{repository}/blobs/uploads/");
        let mut response = match mount_from {
            Some(from) => {
                let mount = format!("{start}?mount={}&from={from}", blob.digest);
                let mounted = self.send(self.request(reqwest::Method::POST, &mount)).await?;
                match mounted.status() {
                    StatusCode::CREATED => return Ok(Pushed::Mounted),
                    // Refused, and an upload session opened instead (the usual way to refuse).
                    StatusCode::ACCEPTED => mounted,
                    // Some registries refuse a mount outright: start a plain upload.
                    status if status.is_client_error() && status != StatusCode::UNAUTHORIZED => {
                        self.send(self.request(reqwest::Method::POST, &start)).await?
                    }
                    _ => {
                        return Err(refusal(mounted, &format!("mounting blob {} into {repository}", blob.digest)).await);
                    }
                }
            }
            None => self.send(self.request(reqwest::Method::POST, &start)).await?,
        };
        let what = || format!("uploading blob {} to {repository}", blob.digest);
        if response.status() != StatusCode::ACCEPTED {
            return Err(refusal(response, &what()).await);
        }
        // One PATCH with the whole blob, then the closing PUT: the chunked form every registry
        // (ECR included) accepts.
        let session = self.location(&response)?;
        response = self
            .send(
                self.http
                    .patch(session)
                    .basic_auth(&self.credentials.user, Some(&self.credentials.password))
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(blob.bytes.clone()),
            )
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(refusal(response, &what()).await);
        }
        let mut close = self.location(&response)?;
        close.query_pairs_mut().append_pair("digest", &blob.digest);
        response = self
            .send(
                self.http
                    .put(close)
                    .basic_auth(&self.credentials.user, Some(&self.credentials.password))
                    .header(CONTENT_LENGTH, 0),
            )
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(refusal(response, &what()).await);
        }
        Ok(Pushed::Uploaded)
    }

    /// PUTs a manifest or index under `reference`: its own digest (untagged) or a tag.
    pub async fn put_manifest(&self, repository: &str, reference: &str, manifest: &Blob) -> Result<()> {
        let response = self
            .send(
                self.request(reqwest::Method::PUT, &format!("{repository}/manifests/{reference}"))
                    .header(CONTENT_TYPE, manifest.media_type)
                    .body(manifest.bytes.clone()),
            )
            .await?;
        if !response.status().is_success() {
            return Err(refusal(response, &format!("putting {repository}:{reference}")).await);
        }
        Ok(())
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        request
            .send()
            .await
            .map_err(|e| anyhow!("registry {} unreachable ({})", self.host(), crate::base::root_cause(&e)))
    }

    /// An upload session's URL: the `Location` header, which may be relative to the registry.
    fn location(&self, response: &reqwest::Response) -> Result<reqwest::Url> {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .context("the registry opened an upload without a Location")?;
        reqwest::Url::parse(&self.base)?.join(location).context("the registry gave an invalid upload Location")
    }
}

/// How a blob got into a repository.
#[derive(Debug, PartialEq)]
pub enum Pushed {
    Mounted,
    Uploaded,
}

/// One line for a registry answer that was not what the protocol expects: the status, the
/// registry's own error code and message, and for a refused token what to do.
async fn refusal(response: reqwest::Response, what: &str) -> anyhow::Error {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|json| {
            let error = &json["errors"][0];
            Some(format!("{} {}", error["code"].as_str()?, error["message"].as_str().unwrap_or("")))
        })
        .unwrap_or_else(|| body.chars().take(200).collect());
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return anyhow!(
            "{what}: the registry refused the ECR token ({status} {}): it may have expired or lack push rights; run publish again for a fresh token",
            detail.trim()
        );
    }
    anyhow!("{what}: the registry answered {status} {}", detail.trim())
}
