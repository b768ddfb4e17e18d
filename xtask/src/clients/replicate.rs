//! `publish --replicate`: let ECR fan the placeholder out instead of this machine. The first target
//! is the source; its registry gets a replication rule for the repositories publish manages,
//! naming every other target as a destination; cross-account destinations get a registry policy
//! statement allowing the source account to replicate in; every destination gets a repository
//! creation template (encryption, lifecycle policy, tag) so the repositories ECR creates there
//! are set up as publish would have set them up.
//!
//! Everything is merged into what the registries already hold, never replacing a rule or a
//! statement somebody else wrote; a re-run changes nothing.

use anyhow::{Context, Result};
use aws_sdk_ecr::types::{
    EncryptionConfigurationForRepositoryCreationTemplate, EncryptionType, ImageTagMutability, RctAppliedFor,
    ReplicationConfiguration, ReplicationDestination, ReplicationRule, RepositoryFilter, RepositoryFilterType, Tag,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::clients::aws::{Target, call_failed};
use crate::clients::ecr::{self, Encryption, MANAGED_TAG_KEY, MANAGED_TAG_VALUE, Settings};

/// The registry policy statement publish owns in a destination registry.
const POLICY_SID: &str = "EcsMinimalContainerReplication";
/// ECR's limit of repository filters per replication rule.
const MAX_FILTERS: usize = 100;

/// One thing done (or that would be done) to one registry.
#[derive(Serialize, Debug)]
pub struct Change {
    pub account: String,
    pub region: String,
    pub what: String,
    /// `changed`, `would-change`, `up-to-date` or `failed`.
    pub result: &'static str,
    pub detail: String,
}

/// Writes (or with `dry_run` only reads and plans) the replication set-up for `repositories`.
pub async fn configure(
    source: &Target,
    destinations: &[&Target],
    repositories: &[String],
    settings: &Settings,
    dry_run: bool,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let record = |target: &Target, what: &str, result: Result<Option<String>>| Change {
        account: target.account.clone(),
        region: target.aws.region.clone(),
        what: what.to_owned(),
        result: match &result {
            Ok(Some(_)) if dry_run => "would-change",
            Ok(Some(_)) => "changed",
            Ok(None) => "up-to-date",
            Err(_) => "failed",
        },
        detail: match result {
            Ok(Some(detail)) => detail,
            Ok(None) => "already so".to_owned(),
            Err(error) => format!("{error:#}"),
        },
    };
    changes.push(record(
        source,
        "replication rule",
        replication_rule(source, destinations, repositories, dry_run).await,
    ));
    for destination in destinations {
        if destination.account != source.account {
            changes.push(record(
                destination,
                "registry policy",
                registry_policy(destination, &source.account, dry_run).await,
            ));
        }
        for repository in repositories {
            let what = format!("creation template {repository}");
            changes.push(record(
                destination,
                &what,
                creation_template(destination, repository, settings, dry_run).await,
            ));
        }
    }
    changes
}

/// The source registry's rules, with one that sends `repositories` to every destination.
async fn replication_rule(
    source: &Target,
    destinations: &[&Target],
    repositories: &[String],
    dry_run: bool,
) -> Result<Option<String>> {
    let registry = source.aws.ecr.describe_registry().send().await.map_err(|e| call_failed("DescribeRegistry", e))?;
    let existing: Vec<ReplicationRule> =
        registry.replication_configuration().map(|c| c.rules().to_vec()).unwrap_or_default();
    let wanted: Vec<(String, String)> =
        destinations.iter().map(|d| (d.aws.region.clone(), d.account.clone())).collect();
    let merged = merge_rules(existing.clone(), &wanted, repositories)?;
    if merged == existing {
        return Ok(None);
    }
    let names: Vec<String> = wanted.iter().map(|(region, account)| format!("{account}/{region}")).collect();
    let detail = format!("{} to {}", repositories.join(", "), names.join(", "));
    if !dry_run {
        let configuration = ReplicationConfiguration::builder()
            .set_rules(Some(merged))
            .build()
            .context("building the replication rules")?;
        source
            .aws
            .ecr
            .put_replication_configuration()
            .replication_configuration(configuration)
            .send()
            .await
            .map_err(|e| call_failed("PutReplicationConfiguration", e))?;
    }
    Ok(Some(detail))
}

/// `rules` plus `repositories` going to exactly `destinations`: added to the rule that already has
/// those destinations, else a new rule. Other rules are kept as they are.
fn merge_rules(
    mut rules: Vec<ReplicationRule>,
    destinations: &[(String, String)],
    repositories: &[String],
) -> Result<Vec<ReplicationRule>> {
    let same_destinations = |rule: &ReplicationRule| {
        let mut theirs: Vec<(String, String)> =
            rule.destinations().iter().map(|d| (d.region().to_owned(), d.registry_id().to_owned())).collect();
        let mut ours = destinations.to_vec();
        theirs.sort();
        ours.sort();
        theirs == ours
    };
    let filter =
        |name: &str| RepositoryFilter::builder().filter(name).filter_type(RepositoryFilterType::PrefixMatch).build();
    let position = rules.iter().position(|rule| same_destinations(rule) && !rule.repository_filters().is_empty());
    let mut filters: Vec<RepositoryFilter> = match position {
        Some(i) => rules[i].repository_filters().to_vec(),
        None => Vec::new(),
    };
    for name in repositories {
        if !filters.iter().any(|f| f.filter() == name) {
            filters.push(filter(name).context("building a repository filter")?);
        }
    }
    anyhow::ensure!(
        filters.len() <= MAX_FILTERS,
        "{} repositories in one replication rule: ECR allows {MAX_FILTERS}; replicate fewer at a time",
        filters.len()
    );
    let targets = destinations
        .iter()
        .map(|(region, account)| ReplicationDestination::builder().region(region).registry_id(account).build())
        .collect::<Result<Vec<_>, _>>()
        .context("building a replication destination")?;
    let rule = ReplicationRule::builder()
        .set_destinations(Some(targets))
        .set_repository_filters(Some(filters))
        .build()
        .context("building a replication rule")?;
    match position {
        Some(i) => rules[i] = rule,
        None => rules.push(rule),
    }
    Ok(rules)
}

/// The destination registry's policy, with a statement letting `source_account` replicate into it.
async fn registry_policy(destination: &Target, source_account: &str, dry_run: bool) -> Result<Option<String>> {
    let ecr_client = &destination.aws.ecr;
    let current = match ecr_client.get_registry_policy().send().await {
        Ok(policy) => policy
            .policy_text()
            .map(serde_json::from_str::<Value>)
            .transpose()
            .context("the registry policy is not JSON")?,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_registry_policy_not_found_exception()) => None,
        Err(e) => return Err(call_failed("GetRegistryPolicy", e)),
    };
    let Some(policy) =
        with_replication_statement(current, source_account, &destination.aws.region, &destination.account)
    else {
        return Ok(None);
    };
    if !dry_run {
        ecr_client
            .put_registry_policy()
            .policy_text(policy.to_string())
            .send()
            .await
            .map_err(|e| call_failed("PutRegistryPolicy", e))?;
    }
    Ok(Some(format!("account {source_account} may replicate into this registry")))
}

/// `policy` with our statement allowing `source_account` in, or `None` when it already has it.
fn with_replication_statement(
    policy: Option<Value>,
    source_account: &str,
    region: &str,
    account: &str,
) -> Option<Value> {
    let mut policy = policy.unwrap_or_else(|| json!({ "Version": "2012-10-17", "Statement": [] }));
    let statement = json!({
        "Sid": POLICY_SID,
        "Effect": "Allow",
        "Principal": { "AWS": format!("arn:aws:iam::{source_account}:root") },
        "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
        "Resource": format!("arn:aws:ecr:{region}:{account}:repository/*"),
    });
    if !policy["Statement"].is_array() {
        policy["Statement"] = json!([]);
    }
    let statements = policy["Statement"].as_array_mut().expect("an array");
    match statements.iter_mut().find(|s| s["Sid"] == POLICY_SID) {
        Some(existing) if *existing == statement => return None,
        Some(existing) => *existing = statement,
        None => statements.push(statement),
    }
    Some(policy)
}

/// A creation template for replicated repositories named `repository`: what publish would set.
async fn creation_template(
    destination: &Target,
    repository: &str,
    settings: &Settings,
    dry_run: bool,
) -> Result<Option<String>> {
    let ecr_client = &destination.aws.ecr;
    let existing = ecr_client.describe_repository_creation_templates().prefixes(repository).send().await;
    match existing {
        Ok(found) if found.repository_creation_templates().iter().any(|t| t.prefix() == Some(repository)) => {
            return Ok(None);
        }
        Ok(_) => {}
        Err(e) => return Err(call_failed("DescribeRepositoryCreationTemplates", e)),
    }
    let detail = format!(
        "replicated {repository} gets {} and keeps the last {} images",
        describe(&settings.encryption),
        settings.keep
    );
    if dry_run {
        return Ok(Some(detail));
    }
    let encryption = match &settings.encryption {
        Encryption::Aes256 => {
            EncryptionConfigurationForRepositoryCreationTemplate::builder().encryption_type(EncryptionType::Aes256)
        }
        Encryption::Kms(key) => EncryptionConfigurationForRepositoryCreationTemplate::builder()
            .encryption_type(EncryptionType::Kms)
            .set_kms_key(key.clone()),
    }
    .build()
    .context("building the template's encryption")?;
    ecr_client
        .create_repository_creation_template()
        .prefix(repository)
        .description("ecs-minimal-container placeholder, replicated")
        .applied_for(RctAppliedFor::Replication)
        .encryption_configuration(encryption)
        .image_tag_mutability(ImageTagMutability::Mutable)
        .lifecycle_policy(ecr::lifecycle_policy(settings.keep))
        .resource_tags(Tag::builder().key(MANAGED_TAG_KEY).value(MANAGED_TAG_VALUE).build().context("building a tag")?)
        .send()
        .await
        .map_err(|e| call_failed("CreateRepositoryCreationTemplate", e))?;
    Ok(Some(detail))
}

fn describe(encryption: &Encryption) -> &'static str {
    match encryption {
        Encryption::Aes256 => "AES256 encryption",
        Encryption::Kms(_) => "KMS encryption",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_merge_without_touching_others() {
        let other = ReplicationRule::builder()
            .destinations(
                ReplicationDestination::builder().region("ap-south-1").registry_id("999999999999").build().unwrap(),
            )
            .build()
            .unwrap();
        let to = vec![("us-east-1".to_owned(), "111111111111".to_owned())];
        let once = merge_rules(vec![other.clone()], &to, &["orders".to_owned()]).unwrap();
        assert_eq!(once.len(), 2);
        assert_eq!(once[0], other);
        let twice = merge_rules(once.clone(), &to, &["orders".to_owned(), "billing".to_owned()]).unwrap();
        assert_eq!(twice.len(), 2);
        let filters: Vec<&str> = twice[1].repository_filters().iter().map(|f| f.filter()).collect();
        assert_eq!(filters, ["orders", "billing"]);
        assert_eq!(merge_rules(twice.clone(), &to, &["billing".to_owned()]).unwrap(), twice);
        let many: Vec<String> = (0..101).map(|i| format!("r{i}")).collect();
        assert!(merge_rules(Vec::new(), &to, &many).unwrap_err().to_string().contains("ECR allows 100"));
    }

    #[test]
    fn policy_statement_is_added_once_and_others_kept() {
        let theirs = json!({ "Version": "2012-10-17", "Statement": [{ "Sid": "Theirs", "Effect": "Allow" }] });
        let ours = with_replication_statement(Some(theirs), "111111111111", "eu-west-1", "222222222222").unwrap();
        assert_eq!(ours["Statement"].as_array().unwrap().len(), 2);
        assert_eq!(ours["Statement"][0]["Sid"], "Theirs");
        assert_eq!(ours["Statement"][1]["Principal"]["AWS"], "arn:aws:iam::111111111111:root");
        assert_eq!(with_replication_statement(Some(ours), "111111111111", "eu-west-1", "222222222222"), None);
        assert!(with_replication_statement(None, "1", "r", "2").is_some());
    }
}
