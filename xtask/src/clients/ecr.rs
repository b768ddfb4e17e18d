//! ECR repositories: create or reuse one with the settings asked for, and its lifecycle policy.

use anyhow::{anyhow, Result};

use crate::clients::aws::call_failed;
use aws_sdk_ecr::types::{EncryptionConfiguration, EncryptionType, ImageScanningConfiguration, ImageTagMutability, Tag};

/// The tag that marks a repository as made by this project (`status` lists them).
pub const MANAGED_TAG_KEY: &str = "managed-by";
pub const MANAGED_TAG_VALUE: &str = "ecs-minimal-container";

#[derive(Clone, Debug, PartialEq)]
pub enum Encryption {
    Aes256,
    /// With no key, ECR uses the AWS-managed key.
    Kms(Option<String>),
}

impl Encryption {
    fn describe(&self) -> String {
        match self {
            Encryption::Aes256 => "AES256".to_owned(),
            Encryption::Kms(None) => "KMS (AWS-managed key)".to_owned(),
            Encryption::Kms(Some(key)) => format!("KMS ({key})"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub encryption: Encryption,
    pub scan_on_push: bool,
    pub keep: u32,
}

/// The lifecycle policy text: one rule, keep the last `keep` images of any tag status.
pub fn lifecycle_policy(keep: u32) -> String {
    serde_json::json!({
        "rules": [{
            "rulePriority": 1,
            "description": format!("Keep the last {keep} images"),
            "selection": { "tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep },
            "action": { "type": "expire" }
        }]
    })
    .to_string()
}

/// Describes `name`: its URI and encryption, or `None` when it does not exist.
pub async fn describe(ecr: &aws_sdk_ecr::Client, name: &str) -> Result<Option<aws_sdk_ecr::types::Repository>> {
    match ecr.describe_repositories().repository_names(name).send().await {
        Ok(output) => Ok(output.repositories.unwrap_or_default().into_iter().next()),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_repository_not_found_exception()) => Ok(None),
        Err(e) => Err(call_failed("DescribeRepositories", e)),
    }
}

/// Every image ID in the repository (one per tag, and one per untagged image).
pub async fn image_ids(ecr: &aws_sdk_ecr::Client, name: &str) -> Result<Vec<aws_sdk_ecr::types::ImageIdentifier>> {
    ecr.list_images()
        .repository_name(name)
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| call_failed("ListImages", e))
}

/// What differs between an existing repository and the settings asked for; it is reused as it is.
pub fn differences(existing: &aws_sdk_ecr::types::Repository, settings: &Settings) -> Vec<String> {
    let mut warnings = Vec::new();
    let actual = match existing.encryption_configuration() {
        Some(c) if *c.encryption_type() == EncryptionType::Kms => Encryption::Kms(c.kms_key().map(str::to_owned)),
        _ => Encryption::Aes256,
    };
    let differs = match (&settings.encryption, &actual) {
        (Encryption::Kms(None), Encryption::Kms(_)) => false, // ECR reports the managed key's ARN
        (asked, actual) => asked != actual,
    };
    if differs {
        warnings.push(format!(
            "repository exists with {} encryption, not the {} asked for; encryption cannot change after \
             creation (delete and re-create the repository to change it)",
            actual.describe(),
            settings.encryption.describe()
        ));
    }
    if existing.image_tag_mutability() == Some(&ImageTagMutability::Immutable) {
        warnings.push("tags are IMMUTABLE: the real image cannot become the new :latest; make them MUTABLE".to_owned());
    }
    warnings
}

/// Creates `name` with the settings asked for and returns its URI. A repository made by a
/// concurrent run between our look and our create is reused.
pub async fn create(ecr: &aws_sdk_ecr::Client, name: &str, settings: &Settings) -> Result<String> {
    let encryption = match &settings.encryption {
        Encryption::Aes256 => EncryptionConfiguration::builder().encryption_type(EncryptionType::Aes256).build()?,
        Encryption::Kms(key) => EncryptionConfiguration::builder().encryption_type(EncryptionType::Kms).set_kms_key(key.clone()).build()?,
    };
    let created = ecr
        .create_repository()
        .repository_name(name)
        .image_tag_mutability(ImageTagMutability::Mutable)
        .image_scanning_configuration(ImageScanningConfiguration::builder().scan_on_push(settings.scan_on_push).build())
        .encryption_configuration(encryption)
        .tags(Tag::builder().key(MANAGED_TAG_KEY).value(MANAGED_TAG_VALUE).build()?)
        .send()
        .await;
    let repository = match created {
        Ok(output) => output.repository.ok_or_else(|| anyhow!("ECR CreateRepository returned no repository"))?,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_repository_already_exists_exception()) => {
            describe(ecr, name).await?.ok_or_else(|| anyhow!("repository {name} vanished"))?
        }
        Err(e) => return Err(call_failed("CreateRepository", e)),
    };
    Ok(repository.repository_uri().unwrap_or_default().to_owned())
}

/// A repository's lifecycle policy, compared with the one publish puts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Lifecycle {
    Expected,
    Different,
    Missing,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Expected => "expected",
            Lifecycle::Different => "different",
            Lifecycle::Missing => "missing",
        }
    }
}

pub async fn lifecycle(ecr: &aws_sdk_ecr::Client, name: &str, keep: u32) -> Result<Lifecycle> {
    match ecr.get_lifecycle_policy().repository_name(name).send().await {
        Ok(policy) => {
            let actual = policy.lifecycle_policy_text().and_then(|t| serde_json::from_str(t).ok());
            let expected = serde_json::from_str(&lifecycle_policy(keep))?;
            Ok(if actual.is_some_and(|actual| rules_match(&actual, &expected)) { Lifecycle::Expected } else { Lifecycle::Different })
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_lifecycle_policy_not_found_exception()) => Ok(Lifecycle::Missing),
        Err(e) => Err(call_failed("GetLifecyclePolicy", e)),
    }
}

pub async fn put_lifecycle(ecr: &aws_sdk_ecr::Client, name: &str, keep: u32) -> Result<()> {
    ecr.put_lifecycle_policy()
        .repository_name(name)
        .lifecycle_policy_text(lifecycle_policy(keep))
        .send()
        .await
        .map_err(|e| call_failed("PutLifecyclePolicy", e))?;
    Ok(())
}

/// Same rules, whatever their descriptions say.
fn rules_match(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    let rules = |policy: &serde_json::Value| {
        let mut rules = policy["rules"].clone();
        for rule in rules.as_array_mut().into_iter().flatten() {
            if let Some(rule) = rule.as_object_mut() {
                rule.remove("description");
            }
        }
        rules
    };
    rules(a) == rules(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_policy_is_the_original_rule() {
        let policy: serde_json::Value = serde_json::from_str(&lifecycle_policy(5)).unwrap();
        let rule = &policy["rules"][0];
        assert_eq!(policy["rules"].as_array().unwrap().len(), 1);
        assert_eq!(rule["rulePriority"], 1);
        assert_eq!(rule["selection"]["tagStatus"], "any");
        assert_eq!(rule["selection"]["countType"], "imageCountMoreThan");
        assert_eq!(rule["selection"]["countNumber"], 5);
        assert_eq!(rule["action"]["type"], "expire");
    }
}
