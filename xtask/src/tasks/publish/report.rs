//! What publish says: one outcome per (target, repository), as a table or as JSON, with the
//! advice a user needs next.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Result;
use serde::Serialize;

use crate::clients::aws;
use crate::clients::replicate;
use crate::image::oci::ImageSet;
use crate::proof::smoke::Proof;
use crate::sources::stack;

use super::build::Built;
use super::plan::{Planned, Pull, Target};
use super::request::Request;
use crate::tasks::OutputFormat;

#[derive(Serialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Created,
    Updated,
    UpToDate,
    Skipped,
    Failed,
    WouldCreate,
    WouldUpdate,
    WouldSkip,
}

impl Action {
    pub(super) fn text(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::UpToDate => "up to date",
            Action::Skipped => "skipped",
            Action::Failed => "failed",
            Action::WouldCreate => "would create",
            Action::WouldUpdate => "would update",
            Action::WouldSkip => "would skip",
        }
    }
}

#[derive(Serialize, Debug)]
pub struct Outcome {
    pub container: String,
    /// The AWS account and region of the target, where known.
    pub account: Option<String>,
    pub region: Option<String>,
    pub repository_uri: Option<String>,
    pub action: Action,
    pub digest: Option<String>,
    /// The ports baked into this repository's placeholder; empty when none was given.
    pub ports: Vec<u16>,
    /// The tags the placeholder is put at.
    pub tags: Vec<String>,
    /// Each container definition read that runs the image, and the tag it pulls; empty when no
    /// definition was read (names alone).
    pub pulled_by: Vec<Pull>,
    /// Tags the placeholder was to be put at but was not (a real image, an immutable tag).
    pub unfilled: Vec<String>,
    /// Tags left with no image at all (immutable, and the placeholder would block the pipeline):
    /// a service pulling one cannot start, so the run fails.
    pub left_empty: Vec<String>,
    pub reason: Option<String>,
    pub warnings: Vec<String>,
}

/// What was done (or, in a dry run, would be): an outcome per (target, repository) pair, the
/// proofs made, and the targets, for the report and `--wait`.
pub(super) struct Done {
    pub(super) destinations: Vec<aws::Target>,
    pub(super) unreachable: Vec<(aws::TargetSpec, anyhow::Error)>,
    pub(super) outcomes: Vec<Outcome>,
    pub(super) proofs: Vec<Proof>,
    /// Set by Ctrl-C: `--wait` stops following too.
    pub(super) interrupted: Arc<AtomicBool>,
}

impl Done {
    /// A row for each target that could not be reached.
    pub(super) fn unreachable_rows(&mut self) {
        for (spec, error) in &self.unreachable {
            let mut outcome = Outcome::new("*");
            outcome.region = spec.region.clone();
            outcome.reason = Some(format!("{error:#}"));
            self.outcomes.push(outcome);
        }
    }

    /// A tag left empty that a service pulls is a service that cannot start: never a success.
    /// Where definitions were read, only the tags they pull count (not a `:latest` none pulls).
    pub(super) fn failed(&self, replication: &[replicate::Change]) -> bool {
        let pulled = |o: &Outcome, tag: &str| {
            o.pulled_by.is_empty() || o.pulled_by.iter().any(|p| p.tag.as_deref() == Some(tag))
        };
        self.outcomes.iter().any(|o| o.action == Action::Failed || o.left_empty.iter().any(|t| pulled(o, t)))
            || replication.iter().any(|c| c.result == "failed")
    }
}

impl Outcome {
    /// This outcome with what the plan knows of its repository and where it is.
    pub(super) fn of(mut self, target: &Target, destination: &aws::Target) -> Outcome {
        self.ports = target.recipe.ports.clone();
        self.tags = target.tags.clone();
        self.pulled_by = target.pulled_by.clone();
        self.warnings.extend(target.notes.iter().cloned());
        self.account = Some(destination.account.clone());
        self.region = Some(destination.aws.region.clone());
        self
    }

    /// Failed until a step says otherwise, so an early return can never report success.
    pub(super) fn new(container: &str) -> Outcome {
        Outcome {
            container: container.to_owned(),
            account: None,
            region: None,
            repository_uri: None,
            action: Action::Failed,
            digest: None,
            ports: Vec::new(),
            tags: Vec::new(),
            pulled_by: Vec::new(),
            unfilled: Vec::new(),
            left_empty: Vec::new(),
            reason: None,
            warnings: Vec::new(),
        }
    }
}

/// What the placeholder does where no port was given at publish, and how to give one.
pub fn unknown_port_advice(example: &str) -> String {
    format!(
        "PORTS ? means no port was given. Where the task metadata lists none (Fargate, awsvpc on current EC2 agents), the \
         placeholder listens on PORT and the port variables frameworks read (SERVER_PORT, ASPNETCORE_URLS...), opens the port \
         the container's own health check names when it runs, and, when it is alone in its task (or beside known agents such \
         as FireLens, Datadog, ADOT), on the ports web frameworks default to (3000, 8080, 8000, 5000, 8501, 4000, ...) and 80; \
         beside a proxy or an unknown container it takes no port unasked. To be sure of the load balancer's port, give it: \
         --containers {example}:8080, or publish from the definition (--task-definition FAMILY|FILE, --from STACK)."
    )
}

/// What to tell users about health checks: the task definition stays the real service's.
pub const HEALTH_CHECK_ADVICE: &str = "Keep the task definition written for the real image: its port, its own healthCheck \
(CMD-SHELL with curl or wget: the placeholder answers it), its load balancer path, command and entryPoint. Only where a \
container has no healthCheck and you want one, use [\"CMD-SHELL\", \"curl -f http://localhost:PORT/ || exit 1\"], which \
works with the placeholder and most real images alike; [\"CMD\", \"/server\", \"--probe\"] works only with the \
placeholder and breaks the real image the day it is deployed.";

pub const VERIFY_ADVICE: &str =
    "Check a task definition before deploying the stack: cargo xtask verify --task-definition FILE (or --from PATH)";

pub const DIGEST_PINNING: &str = "ECS resolves :latest to a digest when a deployment starts: once the pipeline \
pushes the real image, the service needs a new deployment (e.g. aws ecs update-service --force-new-deployment).";

fn print_text(outcomes: &[Outcome], dry_run: bool) {
    let width = outcomes.iter().map(|o| o.container.len()).max().unwrap_or(9).max(9);
    let uri_width =
        outcomes.iter().filter_map(|o| o.repository_uri.as_ref().map(String::len)).max().unwrap_or(14).max(14);
    let region_width = outcomes.iter().filter_map(|o| o.region.as_ref().map(String::len)).max().unwrap_or(6).max(6);
    let ports_of = |o: &Outcome| {
        if o.ports.is_empty() {
            "?".to_owned()
        } else {
            o.ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
        }
    };
    let ports_width = outcomes.iter().map(|o| ports_of(o).len()).max().unwrap_or(5).max(5);
    let tags_of = |o: &Outcome| if o.tags.is_empty() { "-".to_owned() } else { o.tags.join(",") };
    let tags_width = outcomes.iter().map(|o| tags_of(o).len()).max().unwrap_or(4).max(4);
    println!(
        "{:<width$}  {:<12}  {:<region_width$}  {:<uri_width$}  {:<ports_width$}  {:<tags_width$}  {:<12}  DIGEST",
        "CONTAINER", "ACCOUNT", "REGION", "REPOSITORY URI", "PORTS", "TAGS", "ACTION"
    );
    for o in outcomes {
        println!(
            "{:<width$}  {:<12}  {:<region_width$}  {:<uri_width$}  {:<ports_width$}  {:<tags_width$}  {:<12}  {}",
            o.container,
            o.account.as_deref().unwrap_or("?"),
            o.region.as_deref().unwrap_or("?"),
            o.repository_uri.as_deref().unwrap_or("-"),
            ports_of(o),
            tags_of(o),
            o.action.text(),
            o.digest.as_deref().unwrap_or("-")
        );
    }
    let nothing_changed = !dry_run && !outcomes.is_empty() && outcomes.iter().all(|o| o.action == Action::UpToDate);
    let unknown: BTreeSet<&str> =
        outcomes.iter().filter(|o| o.ports.is_empty() && o.container != "*").map(|o| o.container.as_str()).collect();
    if !unknown.is_empty() && !nothing_changed {
        let names: Vec<&str> = unknown.into_iter().collect();
        println!("\n{}: {}", names.join(", "), unknown_port_advice(names[0]));
    }
    let many_targets = outcomes.iter().map(|o| (&o.account, &o.region)).collect::<BTreeSet<_>>().len() > 1;
    for o in outcomes.iter().filter(|o| o.reason.is_some()) {
        let place = match (many_targets, &o.account, &o.region) {
            (false, _, _) => String::new(),
            (true, account, region) => {
                format!("[{} {}] ", account.as_deref().unwrap_or("?"), region.as_deref().unwrap_or("?"))
            }
        };
        println!("{}: {place}{}", o.container, o.reason.as_deref().unwrap_or(""));
    }
    if dry_run {
        println!("\nDry run: nothing was changed.");
        return;
    }
    let ready: Vec<&Outcome> =
        outcomes.iter().filter(|o| matches!(o.action, Action::Created | Action::Updated | Action::UpToDate)).collect();
    let looked: Vec<&Outcome> =
        outcomes.iter().filter(|o| o.action == Action::Skipped && !o.left_empty.is_empty()).collect();
    if ready.is_empty() {
        if !looked.is_empty() {
            println!("\nWhere the services pull it:");
            for o in &looked {
                println!("  {}", pulled(o));
            }
        }
        return;
    }
    // A re-run that changed nothing needs no advice: the table and one line say it all.
    if nothing_changed {
        println!(
            "\nNothing changed: {} repositor{} already up to date.",
            outcomes.len(),
            if outcomes.len() == 1 { "y" } else { "ies" }
        );
        return;
    }
    println!("\nWhere the services pull it:");
    for o in ready.iter().chain(&looked) {
        println!("  {}", pulled(o));
    }
    println!("\nIn each task definition's container definition:");
    for o in &ready {
        let tag = o.tags.first().map_or("latest", String::as_str);
        println!("  Image: {}:{tag}", o.repository_uri.as_deref().unwrap_or(&o.container));
    }
    println!("{HEALTH_CHECK_ADVICE}");
    println!("{VERIFY_ADVICE}");
    println!("{DIGEST_PINNING}");
}

/// Whether the tags the definitions pull hold the placeholder, or what publish could not know.
fn pulled(o: &Outcome) -> String {
    let tags =
        o.tags.iter().filter(|t| !o.unfilled.contains(t)).map(|t| format!(":{t}")).collect::<Vec<_>>().join(", ");
    if o.pulled_by.is_empty() && !o.left_empty.is_empty() {
        let empty = o.left_empty.iter().map(|t| format!(":{t}")).collect::<Vec<_>>().join(", ");
        return format!("{}: NOTHING at {empty}, so a service pulling it cannot start (see above)", o.container);
    }
    if o.pulled_by.is_empty() {
        return format!(
            "{}: the placeholder is at {tags}; no task definition was read for it, so one that names another tag will not find it: \
             give the definition (--task-definition FAMILY|FILE, --from STACK) and publish fills the tag it pulls",
            o.container
        );
    }
    let each: Vec<String> = o
        .pulled_by
        .iter()
        .map(|pull| match &pull.tag {
            Some(tag) if o.left_empty.contains(tag) => {
                format!("{}: NOTHING there, so its tasks cannot start (see above)", pull.says())
            }
            Some(tag) if o.unfilled.contains(tag) => format!("{}: NOT the placeholder (see above)", pull.says()),
            _ => format!("{}: the placeholder is there", pull.says()),
        })
        .collect();
    format!("{}: {}", o.container, each.join("; "))
}

/// What `--replicate` wrote, one line per registry and thing, on stderr with the progress.
fn print_replication(changes: &[replicate::Change]) {
    for c in changes {
        eprintln!("[{} {}] replication: {}: {}: {}", c.account, c.region, c.what, c.result, c.detail);
    }
}

/// Tells what was done: the table and advice, or the JSON document, and what `--replicate` wrote.
pub(super) fn report(
    done: &Done,
    replication: &[replicate::Change],
    built: &Built,
    planned: &Planned,
    request: &Request,
) -> Result<()> {
    match request.output {
        OutputFormat::Json => print_json(
            &done.outcomes,
            &done.destinations,
            &done.unreachable,
            replication,
            built.headline(),
            &done.proofs,
            &planned.found,
        ),
        OutputFormat::Text => {
            print_replication(replication);
            print_text(&done.outcomes, request.dry_run);
            Ok(())
        }
    }
}

fn print_json(
    outcomes: &[Outcome],
    destinations: &[aws::Target],
    unreachable: &[(aws::TargetSpec, anyhow::Error)],
    replication: &[replicate::Change],
    images: &ImageSet,
    proofs: &[Proof],
    found: &[stack::Found],
) -> Result<()> {
    let proofs: Vec<serde_json::Value> =
        proofs.iter().map(|p| serde_json::json!({ "platform": p.platform.docker(), "proof": p.describe() })).collect();
    let mut targets: Vec<serde_json::Value> = destinations
        .iter()
        .map(|d| serde_json::json!({ "profile": d.spec.profile, "account": d.account, "region": d.aws.region, "error": null }))
        .collect();
    targets.extend(unreachable.iter().map(|(spec, error)| {
        serde_json::json!({ "profile": spec.profile, "account": null, "region": spec.region, "error": format!("{error:#}") })
    }));
    let mut document = serde_json::json!({
        "region": destinations.first().map(|d| d.aws.region.as_str()),
        "targets": targets,
        "replication": replication,
        "placeholder": images.index.digest,
        "smoke_test": proofs,
        "containers": outcomes,
        "health_check": HEALTH_CHECK_ADVICE,
        "verify": VERIFY_ADVICE,
        "note": DIGEST_PINNING,
    });
    if !found.is_empty() {
        document["from"] = stack::to_json(found);
    }
    println!("{}", serde_json::to_string_pretty(&document)?);
    Ok(())
}
