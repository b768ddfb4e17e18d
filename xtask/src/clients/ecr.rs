//! ECR repositories: create or reuse one with the settings asked for, and its lifecycle policy.

use anyhow::{Result, anyhow};

use crate::clients::aws::call_failed;
use aws_sdk_ecr::types::{
    EncryptionConfiguration, EncryptionType, ImageScanningConfiguration, ImageTagMutability, Tag,
};

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

/// Deletes images by digest through ECR's API (the registry API cannot delete in ECR); a digest
/// ECR does not hold (gone already, or a test bed's registry beside it) is no error.
pub async fn delete_images(ecr: &aws_sdk_ecr::Client, name: &str, digests: &[String]) -> Result<()> {
    if digests.is_empty() {
        return Ok(());
    }
    let ids: Vec<aws_sdk_ecr::types::ImageIdentifier> =
        digests.iter().map(|d| aws_sdk_ecr::types::ImageIdentifier::builder().image_digest(d).build()).collect();
    let deleted = ecr
        .batch_delete_image()
        .repository_name(name)
        .set_image_ids(Some(ids))
        .send()
        .await
        .map_err(|e| call_failed("BatchDeleteImage", e))?;
    let refused: Vec<String> = deleted
        .failures()
        .iter()
        .filter(|f| f.failure_code().is_some_and(|c| c.as_str() != "ImageNotFound"))
        .map(|f| {
            format!(
                "{}: {}",
                f.image_id().and_then(|i| i.image_digest()).unwrap_or("?"),
                f.failure_reason().unwrap_or("refused")
            )
        })
        .collect();
    if !refused.is_empty() {
        anyhow::bail!("ECR refused to delete {}", refused.join("; "));
    }
    Ok(())
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
    warnings
}

/// A repository's tag mutability, with the exclusion filters ECR added in July 2025: in
/// `IMMUTABLE_WITH_EXCLUSION` a tag a filter matches can be moved, in `MUTABLE_WITH_EXCLUSION` a
/// tag a filter matches cannot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mutability {
    pub mode: String,
    /// `WILDCARD` filters: `*` stands for any run of characters.
    pub filters: Vec<String>,
}

impl Mutability {
    pub fn of(repository: &aws_sdk_ecr::types::Repository) -> Mutability {
        Mutability {
            mode: repository
                .image_tag_mutability()
                .map(|m| m.as_str().to_owned())
                .unwrap_or_else(|| "MUTABLE".to_owned()),
            filters: repository
                .image_tag_mutability_exclusion_filters()
                .iter()
                .map(|f| f.filter().to_owned())
                .collect(),
        }
    }

    /// Whether a tag, once it holds an image, can never be given another.
    pub fn immutable(&self, tag: &str) -> bool {
        let excluded = self.filters.iter().any(|filter| wildcard(filter, tag));
        match self.mode.as_str() {
            "IMMUTABLE" => true,
            "IMMUTABLE_WITH_EXCLUSION" => !excluded,
            "MUTABLE_WITH_EXCLUSION" => excluded,
            _ => false,
        }
    }

    /// How a message names it: `IMMUTABLE`, `IMMUTABLE_WITH_EXCLUSION (excluded: dev-*)`.
    pub fn describe(&self) -> String {
        match self.filters.is_empty() {
            true => self.mode.clone(),
            false => format!("{} (filters: {})", self.mode, self.filters.join(", ")),
        }
    }

    /// How to let the pipeline push its real images at `tags` once placeholders hold them: one
    /// command adding an exclusion filter for each (the filters already there kept, ECR's limit of
    /// five heeded), or, where the filters are what makes the tags immutable, which to narrow.
    pub fn way_out(&self, repository: &str, tags: &[&str]) -> String {
        let listed = tags.iter().map(|t| format!(":{t}")).collect::<Vec<_>>().join(", ");
        if self.mode == "MUTABLE_WITH_EXCLUSION" {
            let making: Vec<&str> =
                self.filters.iter().filter(|f| tags.iter().any(|t| wildcard(f, t))).map(String::as_str).collect();
            return format!(
                "narrow or remove the exclusion filter {} that makes {listed} immutable (aws ecr put-image-tag-mutability \
                 --repository-name {repository} ...)",
                making.join(", ")
            );
        }
        let mut filters = self.filters.clone();
        filters.extend(tags.iter().map(|t| t.to_string()).filter(|t| !self.filters.iter().any(|f| wildcard(f, t))));
        if filters.len() > EXCLUSION_FILTERS {
            return format!(
                "exclude {listed} from immutability with a wildcard filter (ECR allows {EXCLUSION_FILTERS} filters, and these \
                 would make {}: {})",
                filters.len(),
                filters.join(", ")
            );
        }
        let filters: Vec<String> = filters.iter().map(|f| format!("filterType=WILDCARD,filter={f}")).collect();
        format!(
            "aws ecr put-image-tag-mutability --repository-name {repository} --image-tag-mutability IMMUTABLE_WITH_EXCLUSION \
             --image-tag-mutability-exclusion-filters {}",
            filters.join(" ")
        )
    }
}

/// ECR's limit on a repository's tag mutability exclusion filters.
const EXCLUSION_FILTERS: usize = 5;

/// ECR's `WILDCARD` filter: `*` is any run of characters, everything else itself.
fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Creates `name` with the settings asked for and returns its URI. A repository made by a
/// concurrent run between our look and our create is reused.
pub async fn create(ecr: &aws_sdk_ecr::Client, name: &str, settings: &Settings) -> Result<String> {
    let encryption = match &settings.encryption {
        Encryption::Aes256 => EncryptionConfiguration::builder().encryption_type(EncryptionType::Aes256).build()?,
        Encryption::Kms(key) => {
            EncryptionConfiguration::builder().encryption_type(EncryptionType::Kms).set_kms_key(key.clone()).build()?
        }
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
            Ok(if actual.is_some_and(|actual| rules_match(&actual, &expected)) {
                Lifecycle::Expected
            } else {
                Lifecycle::Different
            })
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_lifecycle_policy_not_found_exception()) => {
            Ok(Lifecycle::Missing)
        }
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

    #[test]
    fn tag_mutability_with_exclusions() {
        let with = |mode: &str, filters: &[&str]| Mutability {
            mode: mode.into(),
            filters: filters.iter().map(|f| f.to_string()).collect(),
        };
        assert!(!with("MUTABLE", &[]).immutable("latest"));
        assert!(with("IMMUTABLE", &["latest"]).immutable("latest"), "plain IMMUTABLE has no exclusions");
        let excluded = with("IMMUTABLE_WITH_EXCLUSION", &["latest", "dev-*", "*-rc*"]);
        assert!(!excluded.immutable("latest") && !excluded.immutable("dev-42") && !excluded.immutable("1.0-rc2"));
        assert!(excluded.immutable("v1.4.2") && excluded.immutable("latest2") && excluded.immutable("xdev-1"));
        let pinned = with("MUTABLE_WITH_EXCLUSION", &["v*"]);
        assert!(pinned.immutable("v1.4.2") && !pinned.immutable("latest"));
        assert_eq!(
            with("IMMUTABLE", &[]).way_out("api", &["v1.4.2", "latest"]),
            "aws ecr put-image-tag-mutability --repository-name api --image-tag-mutability IMMUTABLE_WITH_EXCLUSION \
             --image-tag-mutability-exclusion-filters filterType=WILDCARD,filter=v1.4.2 filterType=WILDCARD,filter=latest"
        );
        // The filters already there are kept, and a tag one of them covers is not added again.
        let kept = with("IMMUTABLE_WITH_EXCLUSION", &["dev-*"]).way_out("api", &["v2", "dev-1"]);
        assert!(kept.ends_with("filter=dev-* filterType=WILDCARD,filter=v2"), "{kept}");
        let many = with("IMMUTABLE_WITH_EXCLUSION", &["a", "b", "c", "d", "e"]).way_out("api", &["v2"]);
        assert!(many.contains("ECR allows 5 filters"), "{many}");
        assert!(pinned.way_out("api", &["v2"]).contains("narrow or remove the exclusion filter v*"));
        assert!(
            wildcard("*", "") && wildcard("a*b*c", "abc") && wildcard("a*b*c", "a-b-c") && !wildcard("a*b*c", "acb")
        );
    }
}
