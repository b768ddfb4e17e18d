//! `cargo xtask status`: which repositories exist, how they are set up, and which still serve the
//! placeholder rather than a real image.

use std::process::ExitCode;

use anyhow::Result;
use aws_sdk_ecr::types::{EncryptionType, ImageIdentifier, TagStatus};
use futures_util::StreamExt;
use serde::Serialize;

use crate::base::progress;
use crate::clients::aws::{self, call_failed};
use crate::clients::ecr::{self, MANAGED_TAG_KEY, MANAGED_TAG_VALUE};
use crate::clients::registry::{Latest, Registry};
use crate::clients::services::{self, Where};
use crate::sources::containers::parse_containers;
use crate::sources::from;
use crate::tasks::OutputFormat;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container names, comma-separated [default: every repository publish made].
    #[arg(long, env = "ECS_PLACEHOLDER_CONTAINERS", value_name = "NAMES")]
    pub containers: Option<String>,
    /// The stack the containers are in (a CloudFormation template, a CDK cdk.out directory, a
    /// `terraform show -json` plan, ECS task definition JSON, a deployed stack `stack:NAME`, a
    /// cluster's services `ecs:CLUSTER[/SERVICE,...]`): its ECR repositories, and the tags its
    /// definitions name.
    #[arg(long, value_name = "SOURCE", num_args = 1..)]
    pub from: Vec<String>,
    #[command(flatten)]
    pub aws: aws::AwsArgs,
    /// The lifecycle policy counts as expected when it keeps this many images.
    #[arg(long, default_value_t = 5)]
    pub keep: u32,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Serialize, Debug, Default)]
pub struct RepositoryStatus {
    pub container: String,
    pub account: Option<String>,
    pub region: Option<String>,
    pub exists: bool,
    pub repository_uri: Option<String>,
    pub encryption: Option<String>,
    pub kms_key: Option<String>,
    /// `expected`, `different`, or `missing`.
    pub lifecycle_policy: Option<String>,
    /// `placeholder`, `real`, or `missing`.
    pub latest: Option<String>,
    pub latest_digest: Option<String>,
    pub latest_pushed_at: Option<String>,
    pub latest_platforms: Vec<String>,
    pub image_count: Option<usize>,
    /// The deployed stack that owns the repository, where one does.
    pub owner: Option<String>,
    /// The other tags the definitions name, and what each holds.
    pub tags: Vec<DefinitionTag>,
    pub error: Option<String>,
}

#[derive(Serialize, Debug, Default, Clone)]
pub struct DefinitionTag {
    pub tag: String,
    /// `placeholder`, `real`, or `missing`.
    pub holds: String,
    pub digest: Option<String>,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let mut asked = args.containers.as_deref().map(parse_containers).transpose()?;
    let mut named = Vec::new();
    let mut services = Vec::new();
    if !args.from.is_empty() {
        services = from::repositories(&args.from, &args.aws, &mut named).await?;
        let asked = asked.get_or_insert_with(Vec::new);
        for name in &named {
            if !asked.contains(&name.repository) {
                asked.push(name.repository.clone());
            }
        }
    }
    args.aws.check()?;
    let (destinations, unreachable) = aws::connect_reachable(&args.aws).await?;
    let mut work = Vec::new();
    let mut unlisted = Vec::new();
    for target in &destinations {
        let names = match &asked {
            Some(names) => names.clone(),
            None => match managed_repositories(&target.aws.ecr).await {
                Ok(names) => names,
                Err(error) if destinations.len() + unreachable.len() == 1 => return Err(error),
                Err(error) => {
                    unlisted.push(unreachable_row(
                        Some(target.account.clone()),
                        Some(target.aws.region.clone()),
                        &error,
                    ));
                    continue;
                }
            },
        };
        work.extend(names.into_iter().map(|name| (target, name)));
    }
    let draw = args.output == OutputFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let per_target = destinations
        .iter()
        .map(|t| (t.aws.region.clone(), work.iter().filter(|(w, _)| std::ptr::eq(*w, t)).count() as u64));
    let tally = progress::Tally::new("reading", per_target.collect(), draw);
    let mut statuses: Vec<RepositoryStatus> = futures_util::stream::iter(&work)
        .map(|(target, name)| async {
            let status = status_of(target, name, args.keep, named.iter().find(|n| n.repository == *name)).await;
            tally.tick(destinations.iter().position(|t| std::ptr::eq(t, *target)).unwrap_or(0));
            status
        })
        .buffered(8)
        .collect()
        .await;
    drop(tally);
    statuses.extend(unlisted);
    statuses.extend(unreachable.iter().map(|(spec, error)| unreachable_row(None, spec.region.clone(), error)));

    // The tag a service pulls may be another than :latest.
    let placeholders = statuses
        .iter()
        .filter(|s| s.latest.as_deref() == Some("placeholder") || s.tags.iter().any(|t| t.holds == "placeholder"))
        .count();
    let repositories = statuses.iter().filter(|s| s.container != "*").count();
    let summary = format!("{placeholders} of {repositories} repositories still serve the placeholder");
    // The services `--from` names: what their tasks run, and what their definitions' tags hold.
    let (standing, missing) = match (services.is_empty(), destinations.first()) {
        (false, Some(target)) => {
            let ecs = aws_sdk_ecs::Client::new(&target.aws.config);
            let read = services::read_with_records(&ecs, &services).await?;
            let missing: Vec<String> = read.missing.iter().map(|s| s.label()).collect();
            (services::judge(&target.registry, &read.standings).await, missing)
        }
        _ => (Vec::new(), Vec::new()),
    };
    match args.output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "repositories": statuses, "placeholders": placeholders, "services": standing, "missing_services": missing
            }))?
        ),
        OutputFormat::Text => {
            print_text(&statuses, &summary);
            print_services(&standing);
            for service in &missing {
                println!("{service}: ECS has no such service (DescribeServices answers MISSING)");
            }
        }
    }
    let missing = statuses.iter().any(|s| !s.exists && s.error.is_none()) || !missing.is_empty();
    let errors = statuses.iter().any(|s| s.error.is_some());
    Ok(if missing || errors { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Every repository carrying the tag publish puts on the repositories it creates.
async fn managed_repositories(ecr_client: &aws_sdk_ecr::Client) -> Result<Vec<String>> {
    let mut pages = ecr_client.describe_repositories().into_paginator().send();
    let mut names = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| call_failed("DescribeRepositories", e))?;
        for repository in page.repositories() {
            let (Some(name), Some(arn)) = (repository.repository_name(), repository.repository_arn()) else { continue };
            let tags = ecr_client
                .list_tags_for_resource()
                .resource_arn(arn)
                .send()
                .await
                .map_err(|e| call_failed("ListTagsForResource", e))?;
            if tags.tags().iter().any(|t| t.key() == MANAGED_TAG_KEY && t.value() == MANAGED_TAG_VALUE) {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// A target that could not be listed: one row saying why.
fn unreachable_row(account: Option<String>, region: Option<String>, error: &anyhow::Error) -> RepositoryStatus {
    RepositoryStatus {
        container: "*".to_owned(),
        account,
        region,
        error: Some(format!("{error:#}")),
        ..Default::default()
    }
}

async fn status_of(target: &aws::Target, name: &str, keep: u32, named: Option<&from::Named>) -> RepositoryStatus {
    let mut status = RepositoryStatus {
        container: name.to_owned(),
        account: Some(target.account.clone()),
        region: Some(target.aws.region.clone()),
        owner: named.and_then(|n| n.owner.clone()),
        ..Default::default()
    };
    let tags: Vec<String> =
        named.map(|n| n.tags.iter().filter(|t| *t != "latest").cloned().collect()).unwrap_or_default();
    if let Err(error) = fill(&target.aws.ecr, &target.registry, name, keep, &tags, &mut status).await {
        status.error = Some(format!("{error:#}"));
    }
    status
}

async fn fill(
    ecr_client: &aws_sdk_ecr::Client,
    registry: &Registry,
    name: &str,
    keep: u32,
    tags: &[String],
    status: &mut RepositoryStatus,
) -> Result<()> {
    let Some(repository) = ecr::describe(ecr_client, name).await? else { return Ok(()) };
    status.exists = true;
    status.repository_uri = repository.repository_uri().map(str::to_owned);
    let encryption = repository.encryption_configuration();
    status.encryption = Some(match encryption.map(|e| e.encryption_type()) {
        Some(EncryptionType::Kms) => "KMS".to_owned(),
        Some(other) => other.as_str().to_owned(),
        None => "AES256".to_owned(),
    });
    status.kms_key = encryption.and_then(|e| e.kms_key()).map(str::to_owned);

    status.lifecycle_policy = Some(ecr::lifecycle(ecr_client, name, keep).await?.as_str().to_owned());

    let images = ecr::image_ids(ecr_client, name).await?;
    // ECR lists a manifest once per tag; count distinct images.
    let mut digests: Vec<&str> = images.iter().filter_map(|i| i.image_digest()).collect();
    digests.sort();
    digests.dedup();
    status.image_count = Some(digests.len());

    let (kind, digest, platforms) = match registry.latest(name).await? {
        Latest::Missing => ("missing", None, Vec::new()),
        Latest::Placeholder { digest, configs } => ("placeholder", Some(digest), configs.into_keys().collect()),
        Latest::Other { digest, platforms } => ("real", Some(digest), platforms),
    };
    status.latest = Some(kind.to_owned());
    status.latest_digest = digest;
    status.latest_platforms = platforms;
    for tag in tags {
        let (holds, digest) = match registry.inspect(name, tag).await? {
            None => ("missing", None),
            Some(image) if image.placeholder => ("placeholder", Some(image.digest)),
            Some(image) => ("real", Some(image.digest)),
        };
        status.tags.push(DefinitionTag { tag: tag.clone(), holds: holds.to_owned(), digest });
    }
    if status.latest_digest.is_some() {
        // When ECR knows the image, it knows when it was pushed.
        let described = ecr_client
            .describe_images()
            .repository_name(name)
            .image_ids(ImageIdentifier::builder().image_tag("latest").build())
            .filter(aws_sdk_ecr::types::DescribeImagesFilter::builder().tag_status(TagStatus::Tagged).build())
            .send()
            .await;
        if let Ok(described) = described {
            status.latest_pushed_at = described
                .image_details()
                .first()
                .and_then(|d| d.image_pushed_at())
                .and_then(|t| t.fmt(aws_sdk_ecr::primitives::DateTimeFormat::DateTime).ok());
        }
    }
    Ok(())
}

fn print_text(statuses: &[RepositoryStatus], summary: &str) {
    let width = statuses.iter().map(|s| s.container.len()).max().unwrap_or(9).max(9);
    let region_width = statuses.iter().filter_map(|s| s.region.as_ref().map(String::len)).max().unwrap_or(6).max(6);
    println!(
        "{:<width$}  {:<12}  {:<region_width$}  {:<7}  {:<10}  {:<9}  {:<11}  {:<11}  {:>6}  {:<20}  PUSHED",
        "CONTAINER",
        "ACCOUNT",
        "REGION",
        "EXISTS",
        "ENCRYPTION",
        "LIFECYCLE",
        ":LATEST",
        "PLATFORMS",
        "IMAGES",
        "DIGEST"
    );
    for s in statuses {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        println!(
            "{:<width$}  {:<12}  {:<region_width$}  {:<7}  {:<10}  {:<9}  {:<11}  {:<11}  {:>6}  {:<20}  {}",
            s.container,
            s.account.as_deref().unwrap_or("?"),
            s.region.as_deref().unwrap_or("?"),
            if s.exists {
                "yes"
            } else if s.error.is_some() {
                "?"
            } else {
                "MISSING"
            },
            dash(&s.encryption),
            dash(&s.lifecycle_policy),
            dash(&s.latest),
            if s.latest_platforms.is_empty() { "-".to_owned() } else { s.latest_platforms.join(",") },
            s.image_count.map_or("-".to_owned(), |n| n.to_string()),
            s.latest_digest.as_deref().map_or("-", |d| &d[..d.len().min(19)]),
            dash(&s.latest_pushed_at)
        );
    }
    for s in statuses {
        if let Some(key) = &s.kms_key {
            println!("{}: KMS key {key}", s.container);
        }
        if let Some(owner) = &s.owner {
            println!("{}: belongs to {owner}: publish fills it, never creates, sets up or deletes it", s.container);
        }
        for tag in &s.tags {
            let digest = tag.digest.as_deref().map_or(String::new(), |d| format!(" ({d})"));
            println!("{}: :{} (a definition names it): {}{digest}", s.container, tag.tag, tag.holds);
        }
        if let Some(error) = &s.error {
            let region = s.region.as_deref().unwrap_or("?");
            println!("{}: [{} {region}] error: {error}", s.container, s.account.as_deref().unwrap_or("?"));
        }
    }
    println!("{summary}");
}

/// Each service's ECR containers: what runs, what the tag holds, and the one thing to do next.
fn print_services(standing: &[Where]) {
    if standing.is_empty() {
        return;
    }
    let label = |w: &Where| format!("{} {}", w.service, w.container);
    let width = standing.iter().map(|w| label(w).len()).max().unwrap_or(7).max(17);
    let tag_width = standing.iter().map(|w| w.tag.len() + 1).max().unwrap_or(3).max(3);
    println!("\n{:<width$}  {:<tag_width$}  {:<11}  {:<11}  NEXT", "SERVICE CONTAINER", "TAG", "RUNNING", "AT TAG");
    for w in standing {
        let next = serde_json::to_value(w.next).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        println!(
            "{:<width$}  {:<tag_width$}  {:<11}  {:<11}  {next}",
            label(w),
            format!(":{}", w.tag),
            w.running,
            w.at_tag
        );
    }
    for w in standing {
        println!("{}: {}", label(w), w.next.says(&w.tag));
        if let Some(record) = &w.rolled_back {
            let back = match w.running {
                "placeholder" => "its last deployment of the real image failed and rolled back to the placeholder",
                _ => "its last deployment failed and rolled back",
            };
            println!("{}: {back} ({record}): cargo xtask handover says why", label(w));
        }
    }
}
