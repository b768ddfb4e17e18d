//! `cargo xtask teardown --containers a,b`: delete repositories that hold nothing but placeholders.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::clients::aws::{self, call_failed};
use crate::clients::ecr;
use crate::sources::containers::parse_containers;
use crate::tasks::OutputFormat;
use crate::clients::registry::Registry;
use crate::sources::from;
use crate::base::progress;
use crate::base::Usage;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container names, comma-separated: the repositories to delete.
    #[arg(long, env = "ECS_PLACEHOLDER_CONTAINERS", value_name = "NAMES", required_unless_present = "from")]
    pub containers: Option<String>,
    /// The stack the containers are in (a CloudFormation template, a CDK cdk.out directory, a
    /// `terraform show -json` plan, ECS task definition JSON, a deployed stack `stack:NAME`, a
    /// cluster's services `ecs:CLUSTER[/SERVICE,...]`): its ECR repositories, never those the
    /// stack creates itself.
    #[arg(long, value_name = "SOURCE", num_args = 1..)]
    pub from: Vec<String>,
    /// Delete even repositories that hold real images.
    #[arg(long)]
    pub force: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// List what would be deleted and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub aws: aws::AwsArgs,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum Action {
    Deleted,
    WouldDelete,
    NotFound,
    Refused,
    /// A deployed stack's repository: the stack's to delete.
    Kept,
    Failed,
}

#[derive(Serialize, Debug)]
struct Outcome {
    container: String,
    account: Option<String>,
    region: Option<String>,
    action: Action,
    detail: String,
}

/// One image in a repository, found by tag (registry) or digest (ECR).
struct Held {
    name: String,
    digests: Vec<String>,
    placeholder: bool,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let mut names = args.containers.as_deref().map(parse_containers).transpose()?.unwrap_or_default();
    let mut named = Vec::new();
    from::repositories(&args.from, &args.aws, &mut named).await?;
    // A deployed stack's repository is the stack's to delete, never teardown's.
    let owned: Vec<(String, String)> = named.iter().filter_map(|n| Some((n.repository.clone(), n.owner.clone()?))).collect();
    names.extend(named.into_iter().map(|n| n.repository).filter(|n| !owned.iter().any(|(o, _)| o == n)));
    names.dedup();
    args.aws.check()?;
    let (destinations, unreachable) = crate::tasks::publish::connect_targets(&args.aws).await?;
    let outcome = |target: Option<&aws::Target>, container: &str, action: Action, detail: String| Outcome {
        container: container.to_owned(),
        account: target.map(|t| t.account.clone()),
        region: target.map(|t| t.aws.region.clone()),
        action,
        detail,
    };

    // Look at everything, in every target, first; delete only after the whole list is known and
    // confirmed.
    let mut outcomes = Vec::new();
    let mut doomed = Vec::new();
    let draw = args.output == OutputFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let tally = progress::Tally::new("looking", destinations.iter().map(|t| (t.aws.region.clone(), names.len() as u64)).collect(), draw);
    for (index, target) in destinations.iter().enumerate() {
        for (name, owner) in &owned {
            let detail = format!("belongs to {owner}: teardown never deletes a stack's repository; delete the stack (or its repository resource) instead");
            outcomes.push(outcome(Some(target), name, Action::Kept, detail));
        }
        for name in &names {
            match inventory(&target.aws.ecr, &target.registry, name).await {
                Ok(None) => outcomes.push(outcome(Some(target), name, Action::NotFound, "no such repository".into())),
                Ok(Some(held)) => {
                    let real: Vec<&Held> = held.iter().filter(|h| !h.placeholder).collect();
                    if !real.is_empty() && !args.force {
                        let listed = real.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ");
                        let detail = format!("holds images that are not placeholders: {listed}; --force deletes it anyway");
                        outcomes.push(outcome(Some(target), name, Action::Refused, detail));
                    } else {
                        let detail = format!("{} image(s){}", held.len(), if real.is_empty() { ", all placeholders" } else { ", some real (--force)" });
                        doomed.push(Doomed { target, name: name.clone(), held, detail });
                    }
                }
                Err(error) => outcomes.push(outcome(Some(target), name, Action::Failed, format!("{error:#}"))),
            }
            tally.tick(index);
        }
    }
    drop(tally);
    for (spec, error) in &unreachable {
        let mut row = outcome(None, "*", Action::Failed, format!("{error:#}"));
        row.region = spec.region.clone();
        outcomes.push(row);
    }

    if args.dry_run {
        for d in doomed.drain(..) {
            outcomes.push(outcome(Some(d.target), &d.name, Action::WouldDelete, d.detail));
        }
    } else if !doomed.is_empty() && !args.yes {
        confirm(&doomed)?;
    }
    let tally = progress::Tally::new("deleting", vec![("".to_owned(), doomed.len() as u64)], draw);
    for d in doomed {
        tally.tick(0);
        outcomes.push(match delete(&d.target.aws.ecr, &d.target.registry, &d.name, &d.held).await {
            Ok(()) => outcome(Some(d.target), &d.name, Action::Deleted, d.detail),
            Err(error) => outcome(Some(d.target), &d.name, Action::Failed, format!("{error:#}")),
        });
    }
    drop(tally);
    outcomes.sort_by_key(|o| (o.account.clone(), o.region.clone(), names.iter().position(|n| *n == o.container)));

    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "repositories": outcomes }))?),
        OutputFormat::Text => {
            let many_targets = destinations.len() + unreachable.len() > 1;
            for o in &outcomes {
                let action = serde_json::to_value(o.action)?;
                let place = if many_targets {
                    format!("[{} {}] ", o.account.as_deref().unwrap_or("?"), o.region.as_deref().unwrap_or("?"))
                } else {
                    String::new()
                };
                println!("{}: {place}{}: {}", o.container, action.as_str().unwrap_or(""), o.detail);
            }
            if args.dry_run {
                println!("Dry run: nothing was deleted.");
            }
        }
    }
    let failed = outcomes.iter().any(|o| matches!(o.action, Action::Failed | Action::Refused));
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// A repository to delete, once confirmed.
struct Doomed<'a> {
    target: &'a aws::Target,
    name: String,
    held: Vec<Held>,
    detail: String,
}

/// Asks on the terminal; with no terminal to ask on, refuses.
fn confirm(doomed: &[Doomed]) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!(Usage("refusing to delete repositories without confirmation: no terminal to ask on, pass --yes".into()));
    }
    eprintln!("These repositories and every image in them will be deleted:");
    for d in doomed {
        eprintln!("  {} in {} {} ({})", d.name, d.target.account, d.target.aws.region, d.detail);
    }
    eprint!("Delete {} repositories? [y/N] ", doomed.len());
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!(Usage("nothing deleted".into()));
    }
    Ok(())
}

/// Every image the repository holds, by tag from the registry and by digest from ECR, each
/// judged by its config labels; `None` when the repository does not exist.
async fn inventory(ecr_client: &aws_sdk_ecr::Client, registry: &Registry, name: &str) -> Result<Option<Vec<Held>>> {
    if ecr::describe(ecr_client, name).await?.is_none() {
        return Ok(None);
    }
    let mut held = Vec::new();
    for tag in registry.tags(name).await? {
        if let Some(image) = registry.inspect(name, &tag).await? {
            let mut digests = vec![image.digest.clone()];
            digests.extend(image.children);
            held.push(Held { name: format!("{tag} ({})", image.digest), digests, placeholder: image.placeholder });
        }
    }
    for id in ecr::image_ids(ecr_client, name).await? {
        let Some(digest) = id.image_digest() else { continue };
        if held.iter().any(|h| h.digests.iter().any(|d| d == digest)) {
            continue;
        }
        let placeholder = registry.inspect(name, digest).await?.is_some_and(|image| image.placeholder);
        held.push(Held { name: digest.to_owned(), digests: vec![digest.to_owned()], placeholder });
    }
    Ok(Some(held))
}

/// Removes the images through the registry API where it allows that (ECR removes them with the
/// repository anyway), then the repository itself.
async fn delete(ecr_client: &aws_sdk_ecr::Client, registry: &Registry, name: &str, held: &[Held]) -> Result<()> {
    for image in held {
        for digest in &image.digests {
            registry.delete_manifest(name, digest).await?;
        }
    }
    ecr_client
        .delete_repository()
        .repository_name(name)
        .force(true)
        .send()
        .await
        .map_err(|e| call_failed("DeleteRepository", e))?;
    Ok(())
}
