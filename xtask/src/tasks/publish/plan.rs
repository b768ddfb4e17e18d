//! What to publish: one target per repository, from `--containers`, `--task-definition` and
//! `--from`, each with the recipe its definitions need baked in and the tags they name.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};

use crate::image::oci::{self, Recipe};
use crate::sources::taskdef::TagRef;
use crate::sources::stack;
use crate::sources::taskdef;
use crate::base::Usage;

use crate::sources::containers::container_specs;

use super::Args;
use crate::tasks::OutputFormat;

/// A repository to publish and what its image must carry.
pub(super) struct Target {
    pub(super) name: String,
    pub(super) recipe: Recipe,
    /// What the task definitions ask that no image can give, said once per repository.
    pub(super) notes: Vec<String>,
    /// The tags the placeholder is put at: those the definitions name, and `latest`.
    pub(super) tags: Vec<String>,
    /// The deployed stack that owns the repository, where one does.
    pub(super) owner: Option<String>,
    /// Each container that runs the image, by name, with its ports.
    containers: BTreeMap<String, BTreeSet<u16>>,
    /// Ports `--containers NAME:PORT` gives: for every container of the image.
    given_ports: BTreeSet<u16>,
}

/// The repositories to publish: `--containers`, and the ECR repositories of every container in
/// `--task-definition` files and `--from` stacks, each with the recipe its definitions need.
pub(super) fn targets(args: &Args, found: &[stack::Found]) -> Result<Vec<Target>> {
    let mut targets: Vec<Target> = Vec::new();
    let entry = |targets: &mut Vec<Target>, name: &str| -> usize {
        match targets.iter().position(|t| t.name == name) {
            Some(i) => i,
            None => {
                targets.push(Target {
                    name: name.to_owned(),
                    recipe: Recipe::default(),
                    notes: Vec::new(),
                    tags: Vec::new(),
                    owner: None,
                    containers: BTreeMap::new(),
                    given_ports: BTreeSet::new(),
                });
                targets.len() - 1
            }
        }
    };
    if let Some(list) = &args.containers {
        for (name, ports) in container_specs(list)? {
            let i = entry(&mut targets, &name);
            targets[i].given_ports.extend(&ports);
            targets[i].recipe.ports.extend(ports);
        }
    }
    for file in &args.task_definitions {
        for container in taskdef::load(file).map_err(|e| Usage(format!("{e:#}")))? {
            let Some(repository) = container.image.as_deref().and_then(taskdef::ecr_repository) else {
                eprintln!(
                    "{}: container {} uses {}: {}, left alone",
                    file.display(),
                    container.name,
                    container.image.as_deref().unwrap_or("no image"),
                    taskdef::not_ours(container.image.as_deref().unwrap_or_default())
                );
                continue;
            };
            let Some(tag) = tag_for(&container.name, container.image.as_deref().unwrap_or_default()) else { continue };
            let i = entry(&mut targets, &repository);
            bake(&mut targets[i], &container);
            targets[i].tags.extend(tag);
        }
    }
    for found in found {
        match found.repository() {
            Some(repository) => {
                let Some(tag) = tag_for(&found.container.name, &found.image) else { continue };
                let i = entry(&mut targets, repository);
                bake(&mut targets[i], &found.container);
                targets[i].tags.extend(tag);
                if let Some(owner) = found.owner() {
                    targets[i].owner = Some(owner);
                }
            }
            // A dry run's table says it on stdout.
            None if !(args.dry_run && args.output == OutputFormat::Text) => eprintln!("{}", found.left_alone().unwrap_or_default()),
            None => {}
        }
    }
    if targets.is_empty() {
        bail!(Usage("no container names: pass --containers my-svc-staging,my-svc-prod, --task-definition FILE or --from PATH".into()));
    }
    for target in &mut targets {
        // Containers that agree on their ports need no names; where they differ, each keeps to
        // its own (on Fargate they may share one network namespace).
        match container_ports(&target.containers, &target.given_ports) {
            Ok(named) => target.recipe.container_ports = named,
            Err(unmatched) => eprintln!(
                "{}: its containers listen on different ports, but {} cannot be matched to the name in task metadata, so every \
                 container of this image gets every port",
                target.name,
                unmatched.join(", ")
            ),
        }
        let mut seen = Vec::new();
        target.recipe.ports.retain(|p| {
            let new = !seen.contains(p);
            seen.push(*p);
            new
        });
        if !args.no_latest || target.tags.is_empty() {
            target.tags.push("latest".to_owned());
        }
        let mut seen = Vec::new();
        target.tags.retain(|tag| {
            let new = !seen.contains(tag);
            seen.push(tag.clone());
            new
        });
    }
    Ok(targets)
}

/// Each container's own ports, where the containers of one image disagree on them (on Fargate
/// they may share a network namespace, so each keeps to its own): none when they agree, and
/// none for ports `--containers` gives every container. The names that cannot be matched at run
/// time, when some cannot.
fn container_ports(containers: &BTreeMap<String, BTreeSet<u16>>, given: &BTreeSet<u16>) -> Result<BTreeSet<(String, u16)>, Vec<String>> {
    let port_sets: BTreeSet<&BTreeSet<u16>> = containers.values().collect();
    if port_sets.len() < 2 {
        return Ok(BTreeSet::new());
    }
    let unmatched: Vec<String> = containers.keys().filter(|name| !server::sidecars::is_container_name(name)).cloned().collect();
    if !unmatched.is_empty() {
        return Err(unmatched);
    }
    Ok(containers.iter().flat_map(|(name, ports)| ports.iter().filter(|port| !given.contains(port)).map(move |port| (name.clone(), *port))).collect())
}

/// The tag a container's image names, to put the placeholder at: `Some(None)` when it names none
/// that can be known now (`:latest` stands in), `None` for a digest, which no placeholder can be.
pub(super) fn tag_for(container: &str, image: &str) -> Option<Option<String>> {
    match taskdef::image_tag(image) {
        TagRef::Tag(tag) => Some(Some(tag)),
        TagRef::Digest(digest) => {
            eprintln!("container {container}: its image {image} pins the digest {digest}, which cannot be a placeholder: nothing is pushed for it");
            None
        }
        TagRef::Unknown(tag) => {
            eprintln!(
                "container {container}: the tag {tag:?} of {image} is known only when the stack is deployed: the placeholder goes to :latest; \
                 --from stack:NAME reads the deployed stack's own value"
            );
            Some(None)
        }
    }
}

/// Adds to `target`'s recipe what `container` needs to boot the placeholder, and notes what no
/// image can give.
pub(super) fn bake(target: &mut Target, container: &taskdef::Container) {
    let recipe = &mut target.recipe;
    let own = target.containers.entry(container.name.clone()).or_default();
    own.extend(&container.ports);
    recipe.ports.extend(&container.ports);
    if let Some(port) = container.load_balancer.as_ref().and_then(|lb| lb.port) {
        own.insert(port);
        recipe.ports.push(port);
    }
    // Docker runs an entry point by path, or by name on the image's PATH.
    let programs = [container.entry_point.as_deref(), container.health_check.as_ref().filter(|h| h.command.first().is_some_and(|c| c == "CMD")).map(|h| &h.command[1..])];
    for program in programs.into_iter().flatten().filter_map(|argv| argv.first()) {
        let path = if program.starts_with('/') {
            program.clone()
        } else if program.contains('/') {
            let dir = container.working_directory.as_deref().unwrap_or("/");
            format!("{}/{}", dir.trim_end_matches('/'), program.trim_start_matches("./"))
        } else {
            format!("/usr/local/bin/{program}")
        };
        if !oci::PROGRAMS.contains(&path.as_str()) && path != oci::SERVER_PATH {
            recipe.programs.insert(path);
        }
    }
    if let Some(user) = &container.user {
        let name = user.split(':').next().unwrap_or_default();
        if !name.is_empty() && !name.bytes().all(|b| b.is_ascii_digit()) {
            recipe.users.insert(name.to_owned());
        }
    }
    if let Some(text) = container.load_balancer.as_ref().and_then(|lb| lb.matcher.as_deref()) {
        match taskdef::Matcher::parse(text) {
            Ok(matcher) if !matcher.accepts_ok() => {
                recipe.status = Some(matcher.lowest());
                target.notes.push(format!(
                    "the target group accepts only {matcher}: the placeholder answers its checks (User-Agent ELB-HealthChecker) with {} instead of 200",
                    matcher.lowest()
                ));
            }
            Ok(_) => {}
            Err(e) => target.notes.push(format!("container {}: {e}", container.name)),
        }
    }
    if container.ports.contains(&443) {
        target.notes.push(format!(
            "container {} listens on 443: if its target group speaks HTTPS, its checks fail against the placeholder, \
             which answers plain HTTP (no certificate to present); use an HTTP target group or the container's own port",
            container.name
        ));
    }
}

/// What a recipe adds, for the progress lines.
pub(super) fn describe(recipe: &Recipe) -> String {
    let mut parts = Vec::new();
    if !recipe.ports.is_empty() {
        parts.push(format!("default ports {:?}", recipe.ports));
    }
    if !recipe.container_ports.is_empty() {
        let mut by_container: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (name, port) in &recipe.container_ports {
            by_container.entry(name).or_default().push(port.to_string());
        }
        let each: Vec<String> = by_container.iter().map(|(name, ports)| format!("{name} {}", ports.join(","))).collect();
        parts.push(format!("each container on its own ({})", each.join("; ")));
    }
    if !recipe.programs.is_empty() {
        parts.push(format!("programs {}", recipe.programs.iter().cloned().collect::<Vec<_>>().join(" ")));
    }
    if !recipe.users.is_empty() {
        parts.push(format!("users {}", recipe.users.iter().cloned().collect::<Vec<_>>().join(" ")));
    }
    if let Some(status) = recipe.status {
        parts.push(format!("answers {status}"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn containers(each: &[(&str, &[u16])]) -> BTreeMap<String, BTreeSet<u16>> {
        each.iter().map(|(name, ports)| (name.to_string(), ports.iter().copied().collect())).collect()
    }

    #[test]
    fn ports_are_named_for_containers_only_where_they_differ() {
        let none = BTreeSet::new();
        assert_eq!(container_ports(&containers(&[("web", &[8080]), ("web-canary", &[8080])]), &none), Ok(BTreeSet::new()));
        let named = container_ports(&containers(&[("frontend", &[3000]), ("backend", &[8080]), ("worker", &[])]), &none).unwrap();
        assert_eq!(named, BTreeSet::from([("backend".to_owned(), 8080), ("frontend".to_owned(), 3000)]));
        // `--containers app:3000` is for every container of the image, so it stays unnamed.
        let named = container_ports(&containers(&[("a", &[3000]), ("b", &[8080])]), &BTreeSet::from([3000])).unwrap();
        assert_eq!(named, BTreeSet::from([("b".to_owned(), 8080)]));
        // A name from where it was found, or unresolved, never matches task metadata: no names.
        let unmatched = container_ports(&containers(&[("TaskDef[0]", &[3000]), ("${Name}-web", &[8080])]), &none).unwrap_err();
        assert_eq!(unmatched, ["${Name}-web", "TaskDef[0]"]);
    }
}
