//! What to publish: one target per repository, from `--containers`, `--task-definition` and
//! `--from`, each with the recipe its definitions need baked in and the tags they name.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};

use crate::base::Usage;
use crate::base::image_ref::{self, TagRef};
use crate::image::oci::{self, Recipe};
use crate::sources::stack;
use crate::sources::taskdef;

use crate::sources::containers::container_specs;
use crate::sources::from::{self, InFile};

use std::time::Instant;

use super::request::{Request, asked};
use super::{Args, Timings};
use crate::base::service::Service;
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
    /// Each container definition read that runs the image, and the tag it pulls: empty where
    /// only `--containers` names the repository.
    pub(super) pulled_by: Vec<Pull>,
    /// Each container that runs the image, by name, with its ports.
    containers: BTreeMap<String, BTreeSet<u16>>,
    /// Ports `--containers NAME:PORT` gives: for every container of the image.
    given_ports: BTreeSet<u16>,
    /// Per container that runs the image, the ports another container of its task maps: that
    /// container's, never to be taken by this one's placeholder (on Fargate they share one
    /// network namespace, and a sidecar that cannot bind its port exits).
    held: BTreeMap<String, BTreeSet<u16>>,
}

impl Target {
    fn new(name: &str) -> Target {
        Target {
            name: name.to_owned(),
            recipe: Recipe::default(),
            notes: Vec::new(),
            tags: Vec::new(),
            owner: None,
            pulled_by: Vec::new(),
            containers: BTreeMap::new(),
            given_ports: BTreeSet::new(),
            held: BTreeMap::new(),
        }
    }
}

/// The plan: what every source says (stack files, registered definitions, deployed stacks,
/// clusters, the lookup of names), and from it the repositories to publish.
pub(super) struct Planned {
    pub(super) targets: Vec<Target>,
    /// Every container the sources found, for the dry run's table and the JSON report.
    pub(super) found: Vec<stack::Found>,
    /// The ECS services among them, for `--wait`.
    pub(super) services: Vec<Service>,
}

/// Reads the sources `args` names and plans a target per repository. Bad input (a source that
/// does not exist, `--wait` with no service to follow) is a usage error before anything changes.
pub(super) async fn plan(args: &Args, request: &Request, timings: &mut Timings) -> Result<Planned> {
    let started = Instant::now();
    let mut files = from::definition_files(&args.task_definitions)?;
    let asked = asked(args, &files)?;
    if request.specs.len() > 1 {
        if args.containers.is_some() && !args.no_lookup {
            eprintln!(
                "note: with several targets, publish does not look for the registered task definitions that pull the \
                 --containers repositories (each account registers its own): give a definition (--task-definition FILE) \
                 for the tags and ports they name"
            );
        }
        if !asked.registered.is_empty() || !args.target_groups.is_empty() {
            eprintln!(
                "note: registered task definitions and target groups are read in the first target ({}) and baked for every target",
                request.specs[0].label()
            );
        }
    }
    let loaded = from::load_asked(&asked, &args.aws, request.wait).await?;
    if asked.names_aws() || !args.from.is_empty() {
        timings.add("read the --from sources, registered definitions and target groups", started.elapsed());
    }
    if request.wait.is_some() && loaded.services.is_empty() {
        bail!(Usage(
            "--wait follows ECS services: name them with --from stack:NAME or --from ecs:CLUSTER[/SERVICE,...]".into()
        ));
    }
    let mut found = loaded.found;
    from::attach_groups(&mut files, &mut found, &loaded.groups)?;
    let mut targets = targets(args, &files, &found)?;
    // After the target groups are put on their containers: the table shows their checks.
    if request.dry_run && request.output == OutputFormat::Text && !found.is_empty() {
        stack::print_table(&found);
    }
    for (repository, why) in &loaded.not_found {
        if let Some(target) = targets.iter_mut().find(|t| &t.name == repository && t.pulled_by.is_empty()) {
            target.notes.push(why.clone());
        }
    }
    Ok(Planned { targets, found, services: loaded.services })
}

/// The repositories to publish: `--containers`, and the ECR repositories of every container in
/// `--task-definition` files and `--from` stacks, each with the recipe its definitions need.
pub(super) fn targets(args: &Args, files: &[InFile], found: &[stack::Found]) -> Result<Vec<Target>> {
    let mut targets: Vec<Target> = Vec::new();
    let entry = |targets: &mut Vec<Target>, name: &str| -> usize {
        match targets.iter().position(|t| t.name == name) {
            Some(i) => i,
            None => {
                targets.push(Target::new(name));
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
    for InFile { file, container, https } in files {
        let Some(repository) = container.image.as_deref().and_then(image_ref::ecr_repository) else {
            eprintln!(
                "{}: container {} uses {}: {}, left alone",
                file.display(),
                container.name,
                container.image.as_deref().unwrap_or("no image"),
                image_ref::not_ours(container.image.as_deref().unwrap_or_default())
            );
            continue;
        };
        let Some(tag) = tag_for(&container.name, container.image.as_deref().unwrap_or_default()) else { continue };
        let i = entry(&mut targets, &repository);
        bake(&mut targets[i], container);
        if *https {
            targets[i].notes.push(https_note(&container.name));
        }
        targets[i].pulled_by.push(Pull::of(container, tag.as_deref()));
        targets[i].tags.extend(tag);
    }
    for found in found.iter() {
        match found.repository() {
            Some(repository) => {
                let Some(tag) = tag_for(&found.container.name, &found.image) else { continue };
                let i = entry(&mut targets, repository);
                bake(&mut targets[i], &found.container);
                if found.https {
                    targets[i].notes.push(https_note(&found.container.name));
                }
                targets[i].pulled_by.push(Pull::of(&found.container, tag.as_deref()));
                targets[i].tags.extend(tag);
                if let Some(owner) = found.owner() {
                    targets[i].owner = Some(owner);
                }
            }
            // A dry run's table says it on stdout.
            None if !(args.dry_run && args.output == OutputFormat::Text) => {
                eprintln!("{}", found.left_alone().unwrap_or_default())
            }
            None => {}
        }
    }
    if targets.is_empty() {
        bail!(Usage(
            "no container names: pass --containers my-svc-staging,my-svc-prod, --task-definition FILE or --from PATH"
                .into()
        ));
    }
    for target in &mut targets {
        // One name, two tasks: where `api` maps a port in one that a sidecar beside `api` maps in
        // another, its placeholder gets the port in both (names are all the server has to go by).
        for (name, held) in &target.held {
            let own = target
                .containers
                .get(name)
                .map(|ports| held.intersection(ports).copied().collect::<Vec<u16>>())
                .unwrap_or_default();
            for port in own {
                target.notes.push(format!(
                    "container {name} maps port {port} in one task definition, and another container maps it beside {name} in \
                     another: the placeholder listens on it in both; give the containers different names, or publish each task \
                     definition to its own repository"
                ));
            }
        }
        // Containers that agree on their ports need no names; where they differ, each keeps to
        // its own (on Fargate they may share one network namespace).
        match container_ports(&target.containers, &target.given_ports, &target.held) {
            Ok(named) => target.recipe.container_ports = named,
            Err(unmatched) => {
                // No name to keep a port to its container: a port another container of some task
                // maps is left out altogether rather than taken from that container.
                let held: BTreeSet<u16> =
                    target.held.values().flatten().copied().filter(|p| !target.given_ports.contains(p)).collect();
                let dropped: Vec<String> =
                    target.recipe.ports.iter().filter(|p| held.contains(p)).map(u16::to_string).collect();
                target.recipe.ports.retain(|p| !held.contains(p));
                eprintln!(
                    "{}: its containers listen on different ports, but {} cannot be matched to the name in task metadata, so every \
                     container of this image gets every port{}",
                    target.name,
                    unmatched.join(", "),
                    if dropped.is_empty() {
                        String::new()
                    } else {
                        format!(" but {}, which another container of a task maps", dropped.join(", "))
                    }
                );
            }
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
fn container_ports(
    containers: &BTreeMap<String, BTreeSet<u16>>,
    given: &BTreeSet<u16>,
    held: &BTreeMap<String, BTreeSet<u16>>,
) -> Result<BTreeSet<(String, u16)>, Vec<String>> {
    let port_sets: BTreeSet<&BTreeSet<u16>> = containers.values().collect();
    let union: BTreeSet<u16> = containers.values().flatten().copied().collect();
    // A container beside another that maps one of the image's ports must not get it unnamed.
    let taken = held.values().flatten().any(|port| union.contains(port) && !given.contains(port));
    if port_sets.len() < 2 && !taken {
        return Ok(BTreeSet::new());
    }
    let unmatched: Vec<String> =
        containers.keys().filter(|name| !server::sidecars::is_container_name(name)).cloned().collect();
    if !unmatched.is_empty() {
        return Err(unmatched);
    }
    Ok(containers
        .iter()
        .flat_map(|(name, ports)| {
            ports.iter().filter(|port| !given.contains(port)).map(move |port| (name.clone(), *port))
        })
        .collect())
}

/// The tag a container's image names, to put the placeholder at: `Some(None)` when it names none
/// that can be known now (`:latest` stands in), `None` for a digest, which no placeholder can be.
pub(super) fn tag_for(container: &str, image: &str) -> Option<Option<String>> {
    match image_ref::image_tag(image) {
        TagRef::Tag(tag) => Some(Some(tag)),
        TagRef::Digest(digest) => {
            eprintln!(
                "container {container}: its image {image} pins the digest {digest}, which cannot be a placeholder: nothing is pushed for it"
            );
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
    // What the task's other containers map is theirs: the placeholder never binds it first.
    let held = target.held.entry(container.name.clone()).or_default();
    for sidecar in &container.sidecars {
        held.extend(sidecar.ports.iter().filter(|p| !container.ports.contains(p)));
    }
    if let Some(port) = container.load_balancer.as_ref().and_then(|lb| lb.port) {
        match container.sidecars.iter().find(|s| s.ports.contains(&port) && !container.ports.contains(&port)) {
            Some(sidecar) => target.notes.push(format!(
                "the target group of container {} checks port {port}, which container {} of its task maps: that check is {}'s to \
                 answer, so the placeholder leaves port {port} to it",
                container.name, sidecar.name, sidecar.name
            )),
            None => {
                own.insert(port);
                recipe.ports.push(port);
            }
        }
    }
    // Docker runs an entry point by path, or by name on the image's PATH.
    let programs = [
        container.entry_point.as_deref(),
        container
            .health_check
            .as_ref()
            .filter(|h| h.command.first().is_some_and(|c| c == "CMD"))
            .map(|h| &h.command[1..]),
    ];
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

/// Which container definition runs the image, at which tag: `None` for a tag known only once
/// the stack is deployed (`:latest` stands in).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(super) struct Pull {
    /// `Api/web`: the task definition and the container.
    pub(super) by: String,
    pub(super) tag: Option<String>,
}

impl Pull {
    fn of(container: &taskdef::Container, tag: Option<&str>) -> Pull {
        Pull { by: container.qualified(), tag: tag.map(str::to_owned) }
    }

    /// `Api/web pulls :1.0.0`.
    pub(super) fn says(&self) -> String {
        match &self.tag {
            Some(tag) => format!("{} pulls :{tag}", self.by),
            None => format!("{} pulls a tag known only once deployed (:latest stands in)", self.by),
        }
    }
}

/// What a target group that checks over HTTPS means for the placeholder.
fn https_note(container: &str) -> String {
    format!(
        "the target group of container {container} checks over HTTPS: the placeholder answers plain HTTP (it has no certificate \
         to present), so that check fails until the real image serves it; use an HTTP health check on the target group"
    )
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
        let each: Vec<String> =
            by_container.iter().map(|(name, ports)| format!("{name} {}", ports.join(","))).collect();
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
        let free = BTreeMap::new();
        assert_eq!(
            container_ports(&containers(&[("web", &[8080]), ("web-canary", &[8080])]), &none, &free),
            Ok(BTreeSet::new())
        );
        let named =
            container_ports(&containers(&[("frontend", &[3000]), ("backend", &[8080]), ("worker", &[])]), &none, &free)
                .unwrap();
        assert_eq!(named, BTreeSet::from([("backend".to_owned(), 8080), ("frontend".to_owned(), 3000)]));
        // `--containers app:3000` is for every container of the image, so it stays unnamed.
        let named =
            container_ports(&containers(&[("a", &[3000]), ("b", &[8080])]), &BTreeSet::from([3000]), &free).unwrap();
        assert_eq!(named, BTreeSet::from([("b".to_owned(), 8080)]));
        // A name from where it was found, or unresolved, never matches task metadata: no names.
        let unmatched =
            container_ports(&containers(&[("TaskDef[0]", &[3000]), ("${Name}-web", &[8080])]), &none, &free)
                .unwrap_err();
        assert_eq!(unmatched, ["${Name}-web", "TaskDef[0]"]);
        // One task runs the image as `web` on 80 beside a sidecar on 5000, another as `api` on
        // 5000: the same ports everywhere would give `web` the sidecar's, so each is named.
        let held = BTreeMap::from([("web".to_owned(), BTreeSet::from([5000]))]);
        let named = container_ports(&containers(&[("web", &[80, 5000]), ("api", &[80, 5000])]), &none, &held).unwrap();
        assert!(named.contains(&("api".to_owned(), 5000)) && named.contains(&("web".to_owned(), 5000)), "{named:?}");
    }

    fn task(containers: &[(&str, &str, &[u16])]) -> Vec<taskdef::Container> {
        let mut task: Vec<taskdef::Container> = containers
            .iter()
            .map(|(name, image, ports)| taskdef::Container {
                name: name.to_string(),
                image: Some(image.to_string()),
                ports: ports.to_vec(),
                ..Default::default()
            })
            .collect();
        taskdef::link(&mut task);
        task
    }

    #[test]
    fn a_port_another_container_of_the_task_maps_is_never_baked() {
        // A frontend on 80 whose target group checks the backend on 5000.
        let mut containers = task(&[
            ("frontend", "1.dkr.ecr.eu-west-1.amazonaws.com/front:v1", &[80]),
            ("backend", "1.dkr.ecr.eu-west-1.amazonaws.com/back:v1", &[5000]),
        ]);
        containers[0].load_balancer =
            Some(taskdef::LoadBalancerCheck { path: Some("/health".into()), port: Some(5000), matcher: None });
        let mut front = Target::new("front");
        bake(&mut front, &containers[0]);
        assert_eq!(front.recipe.ports, [80]);
        assert!(
            front.notes.iter().any(|n| n.contains("port 5000, which container backend of its task maps")),
            "{:?}",
            front.notes
        );
        let mut back = Target::new("back");
        bake(&mut back, &containers[1]);
        assert_eq!(back.recipe.ports, [5000]);

        // A Flask app on 5000 whose target group checks its nginx (Docker Hub) on 80.
        let mut containers =
            task(&[("app", "1.dkr.ecr.eu-west-1.amazonaws.com/flask:latest", &[5000]), ("nginx", "nginx:1.27", &[80])]);
        containers[0].load_balancer = Some(taskdef::LoadBalancerCheck { path: None, port: Some(80), matcher: None });
        let mut flask = Target::new("flask");
        bake(&mut flask, &containers[0]);
        assert_eq!(flask.recipe.ports, [5000]);
        assert_eq!(flask.held["app"], BTreeSet::from([80]));
    }
}
