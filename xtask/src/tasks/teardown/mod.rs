//! `cargo xtask teardown --containers a,b`: delete repositories that hold nothing but
//! placeholders; with `--images`, only the placeholder's images, from repositories that keep
//! living (`images.rs`).

mod images;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::base::Usage;
use crate::base::progress;
use crate::clients::aws::{self, call_failed};
use crate::clients::ecr;
use crate::clients::registry::Registry;
use crate::sources::containers::parse_containers;
use crate::sources::from;
use crate::tasks::OutputFormat;

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
    #[arg(long, conflicts_with = "images")]
    pub force: bool,
    /// Keep the repositories and every real image; remove the placeholder's images (its index and
    /// manifests), except any a running task runs or a service still starting tasks pulls.
    #[arg(long)]
    pub images: bool,
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
    /// `--images`: the placeholder's images removed, the repository kept.
    Removed,
    WouldRemove,
    /// `--images`: nothing to remove.
    Unchanged,
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

impl Outcome {
    fn new(target: Option<&aws::Target>, container: &str, action: Action, detail: String) -> Outcome {
        Outcome {
            container: container.to_owned(),
            account: target.map(|t| t.account.clone()),
            region: target.map(|t| t.aws.region.clone()),
            action,
            detail,
        }
    }
}

/// One image in a repository, found by tag (registry) or digest (ECR): the index (or single
/// manifest) first, then what it names.
struct Held {
    name: String,
    tags: Vec<String>,
    digests: Vec<String>,
    placeholder: bool,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let mut names = args.containers.as_deref().map(parse_containers).transpose()?.unwrap_or_default();
    let mut named = Vec::new();
    let services = from::repositories(&args.from, &args.aws, &mut named).await?;
    if args.images {
        // A stack's repository keeps living: its placeholder images are teardown's to remove.
        for repository in named.into_iter().map(|n| n.repository) {
            if !names.contains(&repository) {
                names.push(repository);
            }
        }
        return remove_images(&args, &names, &services).await;
    }
    // A deployed stack's repository is the stack's to delete, never teardown's.
    let owned: Vec<(String, String)> =
        named.iter().filter_map(|n| Some((n.repository.clone(), n.owner.clone()?))).collect();
    names.extend(named.into_iter().map(|n| n.repository).filter(|n| !owned.iter().any(|(o, _)| o == n)));
    names.dedup();
    args.aws.check()?;
    let (destinations, unreachable) = aws::connect_reachable(&args.aws).await?;
    let outcome = Outcome::new;

    // Look at everything, in every target, first; delete only after the whole list is known and
    // confirmed.
    let mut outcomes = Vec::new();
    let mut doomed = Vec::new();
    let draw = args.output == OutputFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let tally = progress::Tally::new(
        "looking",
        destinations.iter().map(|t| (t.aws.region.clone(), names.len() as u64)).collect(),
        draw,
    );
    for (index, target) in destinations.iter().enumerate() {
        for (name, owner) in &owned {
            let detail = format!(
                "belongs to {owner}: teardown never deletes a stack's repository; delete the stack (or its repository resource) instead"
            );
            outcomes.push(outcome(Some(target), name, Action::Kept, detail));
        }
        for name in &names {
            match inventory(&target.aws.ecr, &target.registry, name).await {
                Ok(None) => outcomes.push(outcome(Some(target), name, Action::NotFound, "no such repository".into())),
                Ok(Some(held)) => {
                    let real: Vec<&Held> = held.iter().filter(|h| !h.placeholder).collect();
                    if !real.is_empty() && !args.force {
                        let listed = real.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ");
                        let detail =
                            format!("holds images that are not placeholders: {listed}; --force deletes it anyway");
                        outcomes.push(outcome(Some(target), name, Action::Refused, detail));
                    } else {
                        let detail = format!(
                            "{} image(s){}",
                            held.len(),
                            if real.is_empty() { ", all placeholders" } else { ", some real (--force)" }
                        );
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
        confirm(
            &doomed,
            "These repositories and every image in them will be deleted:",
            &format!("Delete {} repositories?", doomed.len()),
        )?;
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

    report(&outcomes, &args, destinations.len() + unreachable.len() > 1)?;
    let failed = outcomes.iter().any(|o| matches!(o.action, Action::Failed | Action::Refused));
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// `--images`: for each repository in each target, the placeholder images no service uses, removed
/// once the whole list is known and confirmed.
async fn remove_images(args: &Args, names: &[String], services: &[crate::base::service::Service]) -> Result<ExitCode> {
    args.aws.check()?;
    let (destinations, unreachable) = aws::connect_reachable(&args.aws).await?;
    let row = Outcome::new;
    let mut outcomes = Vec::new();
    let mut doomed = Vec::new();
    for target in &destinations {
        // What every service runs comes first: without it, nothing can be known to be unused.
        let standings = match images::standings(target, services).await {
            Ok(standings) => standings,
            Err(error) => {
                for name in names {
                    let detail = format!(
                        "cannot tell which images tasks run ({error:#}), so nothing was removed: allow ecs:ListClusters, ecs:ListServices, ecs:DescribeServices, ecs:ListTasks and ecs:DescribeTasks, or name the services with --from ecs:CLUSTER"
                    );
                    outcomes.push(row(Some(target), name, Action::Failed, detail));
                }
                continue;
            }
        };
        for name in names {
            match inventory(&target.aws.ecr, &target.registry, name).await {
                Ok(None) => outcomes.push(row(Some(target), name, Action::NotFound, "no such repository".into())),
                Ok(Some(held)) => {
                    let plan = images::plan(held, &images::in_use(&standings, name));
                    let kept =
                        if plan.keep.is_empty() { String::new() } else { format!("; kept {}", plan.keep.join("; ")) };
                    if plan.remove.is_empty() {
                        outcomes.push(row(
                            Some(target),
                            name,
                            Action::Unchanged,
                            format!("no placeholder image to remove{kept}"),
                        ));
                        continue;
                    }
                    let removing = plan.remove.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join("; ");
                    doomed.push(Doomed {
                        target,
                        name: name.clone(),
                        held: plan.remove,
                        detail: format!("the placeholder {removing}{kept}"),
                    });
                }
                Err(error) => outcomes.push(row(Some(target), name, Action::Failed, format!("{error:#}"))),
            }
        }
    }
    for (spec, error) in &unreachable {
        let mut failed = row(None, "*", Action::Failed, format!("{error:#}"));
        failed.region = spec.region.clone();
        outcomes.push(failed);
    }
    if args.dry_run {
        outcomes.extend(doomed.drain(..).map(|d| row(Some(d.target), &d.name, Action::WouldRemove, d.detail)));
    } else if !doomed.is_empty() && !args.yes {
        confirm(
            &doomed,
            "These placeholder images will be removed (the repositories and every real image stay):",
            "Remove them?",
        )?;
    }
    for d in doomed {
        outcomes.push(match images::remove(&d.target.aws.ecr, &d.target.registry, &d.name, &d.held).await {
            Ok(()) => row(Some(d.target), &d.name, Action::Removed, d.detail),
            Err(error) => row(Some(d.target), &d.name, Action::Failed, format!("{error:#}")),
        });
    }
    outcomes.sort_by_key(|o| (o.account.clone(), o.region.clone(), names.iter().position(|n| *n == o.container)));
    report(&outcomes, args, destinations.len() + unreachable.len() > 1)?;
    Ok(if outcomes.iter().any(|o| o.action == Action::Failed) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// A repository to delete, once confirmed.
struct Doomed<'a> {
    target: &'a aws::Target,
    name: String,
    held: Vec<Held>,
    detail: String,
}

fn report(outcomes: &[Outcome], args: &Args, many_targets: bool) -> Result<()> {
    match args.output {
        OutputFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "repositories": outcomes }))?)
        }
        OutputFormat::Text => {
            for o in outcomes {
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
    Ok(())
}

/// Asks on the terminal; with no terminal to ask on, refuses.
fn confirm(doomed: &[Doomed], heading: &str, question: &str) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!(Usage("refusing to delete without confirmation: no terminal to ask on, pass --yes".into()));
    }
    eprintln!("{heading}");
    for d in doomed {
        eprintln!("  {} in {} {} ({})", d.name, d.target.account, d.target.aws.region, d.detail);
    }
    eprint!("{question} [y/N] ");
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
    let mut held: Vec<Held> = Vec::new();
    for tag in registry.tags(name).await? {
        if let Some(image) = registry.inspect(name, &tag).await? {
            // Tags at one image are one image: removing it by digest removes them all.
            if let Some(same) = held.iter_mut().find(|h| h.digests[0] == image.digest) {
                same.tags.push(tag.clone());
                same.name = format!(":{} ({})", same.tags.join(", :"), image.digest);
                continue;
            }
            let mut digests = vec![image.digest.clone()];
            digests.extend(image.children);
            held.push(Held {
                name: format!(":{tag} ({})", image.digest),
                tags: vec![tag],
                digests,
                placeholder: image.placeholder,
            });
        }
    }
    for id in ecr::image_ids(ecr_client, name).await? {
        let Some(digest) = id.image_digest() else { continue };
        if held.iter().any(|h| h.digests.iter().any(|d| d == digest)) {
            continue;
        }
        // An untagged index still names its platforms' manifests, which ECR lists on their own.
        let (digests, placeholder) = match registry.inspect(name, digest).await? {
            Some(image) => (std::iter::once(image.digest).chain(image.children).collect(), image.placeholder),
            None => (vec![digest.to_owned()], false),
        };
        held.push(Held { name: digest.to_owned(), tags: Vec::new(), digests, placeholder });
    }
    // A manifest an index names is part of that index: never an image of its own to remove.
    let named: Vec<String> = held.iter().flat_map(|h| h.digests.iter().skip(1).cloned()).collect();
    held.retain(|h| !named.contains(&h.digests[0]));
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
