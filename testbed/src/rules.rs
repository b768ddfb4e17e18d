//! The registry as ECR runs it, where tests need ECR's rules and the CNCF registry has none: a tag
//! the repository makes immutable cannot be pushed again once it holds an image. ECR's user guide
//! ("Image tag mutability", and "Tag immutability exclusion filters", July 2025): in `IMMUTABLE`
//! every tag, in `IMMUTABLE_WITH_EXCLUSION` every tag no filter matches, in
//! `MUTABLE_WITH_EXCLUSION` the tags a filter matches; a push over such a tag fails with
//! `ImageTagAlreadyExistsException`, which a registry client sees as `400 TAG_INVALID`. The
//! repository's settings are read from moto; everything else passes to the registry unchanged.

use std::io::{Read, Write};
use std::net::TcpStream;

use anyhow::Result;
use serde_json::{Value, json};

use crate::faults::{HttpProxy, Request, Verdict};

/// The test registry behind ECR's tag immutability.
pub struct EcrRules {
    proxy: HttpProxy,
}

impl EcrRules {
    pub fn start(registry_port: u16, moto_port: u16) -> Result<EcrRules> {
        let proxy = HttpProxy::start(registry_port, move |request| {
            let Some((repository, tag)) = manifest_put(request) else { return Verdict::Forward };
            if !immutable(moto_port, &repository, &tag) || !exists(registry_port, request, &repository, &tag) {
                return Verdict::Forward;
            }
            let message = format!(
                "The image tag '{tag}' already exists in the '{repository}' repository and cannot be overwritten because the tag is immutable."
            );
            Verdict::Respond {
                status: 400,
                headers: vec![("Content-Type".into(), "application/json; charset=utf-8".into())],
                body: json!({ "errors": [{ "code": "TAG_INVALID", "message": message }] }).to_string().into_bytes(),
            }
        })?;
        Ok(EcrRules { proxy })
    }

    /// `127.0.0.1:PORT`, the registry host part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.proxy.port)
    }
}

/// `PUT /v2/REPOSITORY/manifests/TAG` (a tag, not a digest).
fn manifest_put(request: &Request) -> Option<(String, String)> {
    if request.method != "PUT" {
        return None;
    }
    let path = request.target.strip_prefix("/v2/")?;
    let (repository, reference) = path.rsplit_once("/manifests/")?;
    (!reference.starts_with("sha256:")).then(|| (repository.to_owned(), reference.to_owned()))
}

/// Whether moto's repository makes `tag` immutable.
fn immutable(moto: u16, repository: &str, tag: &str) -> bool {
    let body = json!({ "repositoryNames": [repository] }).to_string();
    let Some(answer) = post(
        moto,
        &format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{moto}\r\nX-Amz-Target: AmazonEC2ContainerRegistry_V20150921.DescribeRepositories\r\n\
             Content-Type: application/x-amz-json-1.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/eu-west-1/ecr/aws4_request, \
             SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    ) else {
        return false;
    };
    let repository = &answer["repositories"][0];
    let mode = repository["imageTagMutability"].as_str().unwrap_or("MUTABLE");
    let matched = repository["imageTagMutabilityExclusionFilters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["filter"].as_str())
        .any(|f| matches(f, tag));
    match mode {
        "IMMUTABLE" => true,
        "IMMUTABLE_WITH_EXCLUSION" => !matched,
        "MUTABLE_WITH_EXCLUSION" => matched,
        _ => false,
    }
}

/// A `WILDCARD` filter: `*` for any run of characters.
fn matches(filter: &str, tag: &str) -> bool {
    match filter.split_once('*') {
        None => filter == tag,
        Some((head, rest)) => {
            let Some(after) = tag.strip_prefix(head) else { return false };
            (0..=after.len()).filter(|&i| after.is_char_boundary(i)).any(|i| matches(rest, &after[i..]))
        }
    }
}

/// Whether the registry already has something at `tag`, asked with the pusher's credentials.
fn exists(registry: u16, request: &Request, repository: &str, tag: &str) -> bool {
    let auth = request.header("authorization").unwrap_or_default();
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", registry)) else { return false };
    let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
                  application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
    let head = format!(
        "HEAD /v2/{repository}/manifests/{tag} HTTP/1.1\r\nHost: 127.0.0.1:{registry}\r\nAuthorization: {auth}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    let mut answer = String::new();
    stream.write_all(head.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

fn post(port: u16, request: &str) -> Option<Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let (_, body) = crate::faults::parse_answer(&answer)?;
    serde_json::from_slice(&body).ok()
}
