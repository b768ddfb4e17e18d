//! `--from PATH`: the ECS containers of a stack the user already wrote (a CloudFormation template
//! in JSON or YAML, a CDK `cdk.out` directory, a `terraform show -json` plan, or ECS task
//! definition JSON), each with the ECR repository its image names and the target group that
//! checks it. Images are resolved as far as the file allows (CloudFormation's intrinsic functions
//! over the pseudo parameters and parameter defaults); what cannot be resolved is listed with
//! where it is and why, never guessed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde_json::{Map, Value};

use crate::taskdef::{self, Container, LoadBalancerCheck, Matcher};
use crate::Usage;

/// One container definition found in a stack.
#[derive(Clone, Debug)]
pub struct Found {
    /// The definition, with the matched target group's check as `load_balancer`.
    pub container: Container,
    /// Where it is: the file, the resource and the property path.
    pub location: String,
    /// The image as far as it resolves; what does not is shown as the file writes it.
    pub image: String,
    pub kind: Kind,
    /// Its target group checks over HTTPS.
    pub https: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// An ECR repository to fill.
    Ecr(String),
    /// An ECR repository the stack itself creates (`resource` names where).
    Owned { repository: String, resource: String },
    /// An ECR repository a deployed (or deploying) stack created: filled, never created, set up
    /// or deleted by publish, status or teardown (`owner` names the stack and resource).
    #[cfg_attr(not(feature = "stacks"), allow(dead_code))] // used by the stack readers
    Deployed { repository: String, owner: String },
    /// Another registry's image (Docker Hub, public ECR): not ours.
    Other,
    /// The image cannot be resolved from the file, and why.
    Unresolved(String),
}

impl Found {
    /// The repository publish fills, if any.
    pub fn repository(&self) -> Option<&str> {
        match &self.kind {
            Kind::Ecr(name) | Kind::Deployed { repository: name, .. } => Some(name),
            _ => None,
        }
    }

    /// The deployed stack that owns the repository, where one does.
    pub fn owner(&self) -> Option<String> {
        match &self.kind {
            Kind::Deployed { owner, .. } => Some(owner.clone()),
            _ => None,
        }
    }

    /// Whether `verify` expects the placeholder `publish --from` makes to boot under it, and why not.
    pub fn boots(&self) -> String {
        match &self.kind {
            Kind::Ecr(_) | Kind::Deployed { .. } => {}
            Kind::Owned { .. } => return "no: the stack creates its repository".into(),
            Kind::Other => return "not ours".into(),
            Kind::Unresolved(_) => return "-".into(),
        }
        if self.https {
            return "no: the target group checks over HTTPS, and the placeholder has no certificate".into();
        }
        match self.container.load_balancer.as_ref().and_then(|lb| lb.matcher.as_deref()).map(Matcher::parse) {
            Some(Err(e)) => format!("no: {e}"),
            Some(Ok(m)) if !m.accepts_ok() => format!("yes: answers the load balancer {}", m.lowest()),
            _ => "yes".into(),
        }
    }

    /// What is said of a container publish leaves alone, or `None` for one it fills.
    pub fn left_alone(&self) -> Option<String> {
        let what = format!("{}: container {}", self.location, self.container.name);
        match &self.kind {
            Kind::Ecr(_) | Kind::Deployed { .. } => None,
            Kind::Other => Some(format!("{what} uses {}: not an ECR repository, left alone", self.image)),
            Kind::Unresolved(why) => Some(format!("{what}: cannot resolve its image {}: {why}", self.image)),
            Kind::Owned { repository, resource } => Some(format!(
                "{what}: the stack creates repository {repository} itself ({resource}), so the repository cannot hold a \
                 placeholder before the stack is deployed, and the service would wait for an image that is not there; left \
                 alone. Create the repository outside the stack (publish does) and name it in the container definition \
                 instead:\n  {}\n(in CDK, Repository.fromRepositoryName; in Terraform, the image URI or a data source), or \
                 deploy the repository in a stack of its own first and publish before the service's stack.",
                image_by_name(repository)
            )),
        }
    }
}

/// A container definition's `Image` naming `repository` by name in any account and region, as
/// CloudFormation YAML.
pub fn image_by_name(repository: &str) -> String {
    format!("Image: !Sub \"${{AWS::AccountId}}.dkr.ecr.${{AWS::Region}}.${{AWS::URLSuffix}}/{repository}:latest\"")
}

/// What `${AWS::AccountId}` and `${AWS::Region}` are where the stack will be deployed, when known.
#[derive(Clone, Debug, Default)]
pub struct Context {
    pub account: Option<String>,
    pub region: Option<String>,
}

impl Context {
    /// The region from `--region`, else the environment; the account is not known before AWS is
    /// asked, and a repository's name never depends on it.
    pub fn new(region: Option<&str>) -> Context {
        let region = region.map(str::to_owned).or_else(|| {
            ["AWS_REGION", "AWS_DEFAULT_REGION"].iter().find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        });
        Context { account: None, region }
    }
}

/// Every container of every stack in `paths`. Bad input (unreadable, not a stack, no ECR image
/// resolved at all) is a usage error: one line, exit 2.
#[cfg(test)]
fn load(paths: &[PathBuf], context: &Context) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    if paths.is_empty() {
        return Ok(found);
    }
    for path in paths {
        found.extend(discover(path, context).map_err(|e| Usage(format!("--from {}: {e:#}", path.display())))?);
    }
    check_any_ecr(&found, &paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>())?;
    Ok(found)
}

/// Bad input unless some container's image is in ECR: one line naming what was found instead.
pub fn check_any_ecr(found: &[Found], sources: &[String]) -> Result<()> {
    if !found.iter().any(|f| matches!(f.kind, Kind::Ecr(_) | Kind::Owned { .. } | Kind::Deployed { .. })) {
        let listed: Vec<String> = found.iter().filter_map(Found::left_alone).collect();
        bail!(Usage(format!("no ECR image resolved in {}: {}", sources.join(", "), if listed.is_empty() { "no containers".to_owned() } else { listed.join("; ") })));
    }
    Ok(())
}

/// `publish --from --dry-run`: what was found, one row a container, then what is left alone and why.
pub fn print_table(found: &[Found]) {
    let names = taskdef::unique_names(found.iter().map(|f| &f.container));
    let rows: Vec<[String; 6]> = found
        .iter()
        .zip(names)
        .map(|(f, unique)| {
            let c = &f.container;
            let repository = match &f.kind {
                Kind::Ecr(name) => name.clone(),
                Kind::Owned { repository, .. } => format!("{repository} (the stack's)"),
                Kind::Deployed { repository, .. } => format!("{repository} (the stack's, filled)"),
                Kind::Other => format!("{} (not ours)", f.image),
                Kind::Unresolved(_) => "(unresolved)".to_owned(),
            };
            let ports = if c.ports.is_empty() { "-".to_owned() } else { c.ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",") };
            let health = c.health_check.as_ref().map_or("-".to_owned(), |h| h.command.join(" "));
            let balancer = c.load_balancer.as_ref().map_or("-".to_owned(), |lb| {
                let port = lb.port.or(c.ports.first().copied()).map_or(String::new(), |p| format!(":{p}"));
                format!("GET {port}{} {}", lb.path.as_deref().unwrap_or("/"), lb.matcher.as_deref().unwrap_or("200"))
            });
            [unique, repository, ports, health, balancer, f.boots()]
        })
        .collect();
    let header = ["CONTAINER", "REPOSITORY", "PORTS", "HEALTH CHECK", "LOAD BALANCER", "BOOTS"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
    for f in found {
        if let Some(said) = f.left_alone() {
            println!("{said}");
        }
    }
    println!();
}

/// What was found, for `--output json`.
pub fn to_json(found: &[Found]) -> Value {
    let names = taskdef::unique_names(found.iter().map(|f| &f.container));
    Value::Array(
        found
            .iter()
            .zip(names)
            .map(|(f, unique)| {
                let (kind, repository, why) = match &f.kind {
                    Kind::Ecr(name) => ("ecr", Some(name.as_str()), None),
                    Kind::Owned { repository, .. } => ("created-by-the-stack", Some(repository.as_str()), None),
                    Kind::Deployed { repository, .. } => ("created-by-the-deployed-stack", Some(repository.as_str()), None),
                    Kind::Other => ("not-ours", None, None),
                    Kind::Unresolved(why) => ("unresolved", None, Some(why.as_str())),
                };
                let c = &f.container;
                serde_json::json!({
                    "container": unique,
                    "name": c.name,
                    "task": c.task,
                    "location": f.location,
                    "image": f.image,
                    "kind": kind,
                    "repository": repository,
                    "unresolved": why,
                    "ports": c.ports,
                    "health_check": c.health_check.as_ref().map(|h| &h.command),
                    "load_balancer": c.load_balancer.as_ref().map(|lb| serde_json::json!({ "path": lb.path, "port": lb.port, "matcher": lb.matcher })),
                    "boots": f.boots(),
                })
            })
            .collect(),
    )
}

/// The containers in one file or `cdk.out` directory.
pub fn discover(path: &Path, context: &Context) -> Result<Vec<Found>> {
    if path.is_dir() {
        return cdk_out(path, context);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file = path.display().to_string();
    let document = match serde_json::from_str::<Value>(&text) {
        Ok(json) => Some(json),
        Err(_) => yaml(&text).ok().filter(|d| d.get("Resources").is_some()),
    };
    let mut created = Created::default();
    let found = match document {
        Some(d) if d.get("Resources").is_some() => {
            created.cloudformation(&file, &d, context);
            Stack { file, document: &d, context, parameters: HashMap::new(), deployment: None }.containers()
        }
        Some(d) if d.get("planned_values").is_some() || d.get("terraform_version").is_some() => terraform(&file, &d, &mut created)?,
        _ => taskdef::load(path)?
            .into_iter()
            .map(|container| {
                let image = container.image.clone().unwrap_or_default();
                let kind = classify(&image, &Unknowns::default());
                Found { location: file.clone(), image, kind, https: false, container }
            })
            .collect(),
    };
    Ok(created.mark(found))
}

/// Every `*.template.json` in a `cdk.out` directory, nested stacks with the parameters their
/// parent passes them.
fn cdk_out(dir: &Path, context: &Context) -> Result<Vec<Found>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            // `asset.*` directories hold the app's own files (Lambda code, Docker build contexts).
            if path.is_dir() && !path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("asset.")) {
                pending.push(path);
            } else if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".template.json")) {
                files.push(path);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("{} holds no *.template.json: give a cdk.out directory after `cdk synth`, or a template file", dir.display());
    }
    let mut templates = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let document: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        templates.push((path.clone(), document));
    }
    let mut created = Created::default();
    for (path, document) in &templates {
        created.cloudformation(&path.display().to_string(), document, context);
    }
    // A nested stack's parameters are what its parent's AWS::CloudFormation::Stack passes, found by
    // the asset path CDK records in the resource's metadata: each parent before its children.
    let children: HashSet<PathBuf> =
        templates.iter().flat_map(|(path, document)| nested_files(document).map(|file| path.with_file_name(file))).collect();
    let mut queue: std::collections::VecDeque<usize> = (0..templates.len()).filter(|&i| !children.contains(&templates[i].0)).collect();
    let mut done = vec![false; templates.len()];
    let mut passed: HashMap<PathBuf, Passed> = HashMap::new();
    let mut found = Vec::new();
    while let Some(i) = queue.pop_front().or_else(|| done.iter().position(|d| !d)) {
        if std::mem::replace(&mut done[i], true) {
            continue;
        }
        let (path, document) = &templates[i];
        let stack = Stack {
            file: path.display().to_string(),
            document,
            context,
            parameters: passed.remove(path).unwrap_or_default(),
            deployment: None,
        };
        for (child, parameters) in stack.nested() {
            let child = path.with_file_name(child);
            queue.extend(templates.iter().position(|(p, _)| *p == child));
            passed.insert(child, parameters);
        }
        found.extend(stack.containers());
    }
    Ok(created.mark(found))
}

/// The ECR repositories a stack creates, by name, with where.
#[derive(Default)]
struct Created(BTreeMap<String, String>);

impl Created {
    fn cloudformation(&mut self, file: &str, document: &Value, context: &Context) {
        let stack = Stack { file: file.to_owned(), document, context, parameters: HashMap::new(), deployment: None };
        for (id, resource) in stack.resources() {
            if resource["Type"] == "AWS::ECR::Repository"
                && let Some(name) = stack.repository_name(resource)
            {
                self.0.insert(name, format!("{file}: Resources.{id}"));
            }
        }
    }

    fn mark(&self, found: Vec<Found>) -> Vec<Found> {
        found
            .into_iter()
            .map(|mut f| {
                if let Kind::Ecr(name) = &f.kind
                    && let Some(resource) = self.0.get(name)
                {
                    f.kind = Kind::Owned { repository: name.clone(), resource: resource.clone() };
                }
                f
            })
            .collect()
    }
}

// ---------------------------------------------------------------- CloudFormation

/// The template file of a nested stack, by the asset path CDK records in its resource's metadata.
fn asset_path(resource: &Value) -> Option<&str> {
    if resource["Type"] != "AWS::CloudFormation::Stack" {
        return None;
    }
    resource.get("Metadata")?.get("aws:asset:path")?.as_str()
}

/// The nested stack templates a template names.
fn nested_files(document: &Value) -> impl Iterator<Item = &str> {
    document.get("Resources").and_then(Value::as_object).into_iter().flatten().filter_map(|(_, r)| asset_path(r))
}

/// The parameters a parent stack passes a nested one, each evaluated in the parent.
type Passed = HashMap<String, (String, Unknowns)>;

/// One template, with what its intrinsic functions are evaluated against.
struct Stack<'a> {
    file: String,
    document: &'a Value,
    context: &'a Context,
    /// Parameter values a parent stack passes (CDK nested stacks), evaluated in the parent.
    parameters: Passed,
    /// What CloudFormation knows of the stack, for `--from stack:NAME`.
    deployment: Option<&'a Deployment>,
}

/// What CloudFormation knows of a deployed (or deploying) stack that its template does not.
#[derive(Clone, Debug, Default)]
pub struct Deployment {
    /// The stack's name, for `AWS::StackName`.
    pub name: String,
    pub stack_id: String,
    /// The parameter values the stack was given; `NoEcho` ones (`****`) are left out.
    pub parameters: HashMap<String, String>,
    /// Each resource's type and physical id, by logical id; one not created yet is absent.
    pub resources: HashMap<String, (String, String)>,
    /// Every export in the region, for `Fn::ImportValue`.
    pub exports: HashMap<String, String>,
}

/// The containers of a deployed stack's template (`--from stack:NAME`), evaluated with what
/// CloudFormation knows of it. `created` is every ECR repository the stack and its nested stacks
/// created, by name, with the owner to name.
#[cfg_attr(not(feature = "stacks"), allow(dead_code))] // used by the stack readers
pub fn deployed(document: &Value, context: &Context, deployment: &Deployment, created: &HashMap<String, String>) -> Vec<Found> {
    let stack = Stack { file: format!("stack:{}", deployment.name), document, context, parameters: HashMap::new(), deployment: Some(deployment) };
    let mut found = stack.containers();
    for f in &mut found {
        if let Kind::Ecr(name) = &f.kind
            && let Some(owner) = created.get(name)
        {
            f.kind = Kind::Deployed { repository: name.clone(), owner: owner.clone() };
        }
    }
    found
}

/// An image as CloudFormation would resolve it, for images read elsewhere (an ECS service's).
#[cfg_attr(not(feature = "stacks"), allow(dead_code))] // used by the stack readers
pub fn classify_image(image: &str) -> Kind {
    classify(image, &Unknowns::default())
}

impl<'a> Stack<'a> {
    fn resources(&self) -> impl Iterator<Item = (&'a String, &'a Value)> {
        self.document.get("Resources").and_then(Value::as_object).into_iter().flatten()
    }

    fn resource(&self, id: &str) -> Option<&'a Value> {
        self.document.get("Resources")?.get(id)
    }

    /// An `AWS::ECR::Repository`'s `RepositoryName`, when it is set and resolves.
    fn repository_name(&self, resource: &Value) -> Option<String> {
        let name = resource.get("Properties")?.get("RepositoryName")?;
        let mut unknowns = Unknowns::default();
        let text = Eval { stack: self, unknowns: &mut unknowns, depth: 0 }.text(name);
        (!Unknowns::any(&text)).then_some(text)
    }

    /// The nested stacks CDK synthesized beside this template, with the parameters passed to each.
    fn nested(&self) -> Vec<(String, Passed)> {
        let mut nested = Vec::new();
        for (_, resource) in self.resources() {
            let Some(file) = asset_path(resource) else { continue };
            let mut parameters = HashMap::new();
            for (name, value) in resource["Properties"]["Parameters"].as_object().into_iter().flatten() {
                let mut unknowns = Unknowns::default();
                let text = Eval { stack: self, unknowns: &mut unknowns, depth: 0 }.text(value);
                parameters.insert(name.clone(), (text, unknowns));
            }
            nested.push((file.to_owned(), parameters));
        }
        nested
    }

    fn containers(&self) -> Vec<Found> {
        let checks = self.target_groups();
        let mut found = Vec::new();
        for (id, resource) in self.resources().filter(|(_, r)| r["Type"] == "AWS::ECS::TaskDefinition") {
            let first = found.len();
            // A list of definitions, or what stands for one (an Fn::If): unresolved, and said so.
            let definitions: Vec<(String, &Value)> = match &resource["Properties"]["ContainerDefinitions"] {
                Value::Null => continue,
                Value::Array(items) => items.iter().enumerate().map(|(n, d)| (format!("[{n}]"), d)).collect(),
                whole => vec![(String::new(), whole)],
            };
            for (index, definition) in definitions {
                let at = format!("{}: Resources.{id}.Properties.ContainerDefinitions{index}", self.file);
                let mut unknowns = Unknowns::default();
                let mut eval = Eval { stack: self, unknowns: &mut unknowns, depth: 0 };
                let (image, at) = match definition.as_object() {
                    Some(map) if !is_intrinsic(map) => (eval.text(definition.get("Image").unwrap_or(&Value::Null)), format!("{at}.Image")),
                    _ => (eval.text(definition), at),
                };
                let resolved = eval.deep(definition);
                let mut container = taskdef::container(&resolved);
                container.task = Some(id.clone());
                if container.name.is_empty() {
                    container.name = format!("{id}{index}");
                }
                let https = match checks.get(&(id.clone(), container.name.clone())) {
                    Some((check, https)) => {
                        container.load_balancer = Some(check.clone());
                        *https
                    }
                    None => false,
                };
                let kind = classify(&image, &unknowns);
                found.push(Found { location: at, image: unknowns.render(&image), kind, https, container });
            }
            link_task(&mut found[first..]);
        }
        found
    }

    /// The target group check of each (task definition, container) a service puts behind one.
    fn target_groups(&self) -> HashMap<(String, String), (LoadBalancerCheck, bool)> {
        let mut checks = HashMap::new();
        for (_, service) in self.resources().filter(|(_, r)| r["Type"] == "AWS::ECS::Service") {
            let properties = &service["Properties"];
            let Some(task) = properties["TaskDefinition"]["Ref"].as_str() else { continue };
            for binding in properties["LoadBalancers"].as_array().into_iter().flatten() {
                let Some(group_id) = binding["TargetGroupArn"]["Ref"].as_str() else { continue };
                let Some(group) = self.resource(group_id).filter(|g| g["Type"] == "AWS::ElasticLoadBalancingV2::TargetGroup") else { continue };
                let mut unknowns = Unknowns::default();
                let mut eval = Eval { stack: self, unknowns: &mut unknowns, depth: 0 };
                let binding = eval.deep(binding);
                let group = eval.deep(&group["Properties"]);
                let (Some(name), container_port) = (known(&binding["ContainerName"]), known(&binding["ContainerPort"])) else { continue };
                let protocol = known(&group["HealthCheckProtocol"]).or_else(|| known(&group["Protocol"])).unwrap_or_default();
                let check = LoadBalancerCheck {
                    path: Some(known(&group["HealthCheckPath"]).unwrap_or_else(|| "/".to_owned())),
                    port: known(&group["HealthCheckPort"]).filter(|p| p != "traffic-port").or(container_port).and_then(|p| p.parse().ok()),
                    matcher: Some(known(&group["Matcher"]["HttpCode"]).unwrap_or_else(|| "200".to_owned())),
                };
                checks.insert((task.to_owned(), name), (check, protocol.eq_ignore_ascii_case("HTTPS")));
            }
        }
        checks
    }
}

/// A resolved string or number, not an unknown's stand-in text.
fn known(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!text.contains("${") && !text.contains("{Fn::")).then_some(text)
}

/// What an evaluation could not know: each stands in a string as a marker, so a partly known
/// string (an ARN whose account is unknown) can still be split, selected from and joined.
#[derive(Clone, Debug, Default)]
struct Unknowns(Vec<(String, String)>);

const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

impl Unknowns {
    fn add(&mut self, label: String, why: String) -> String {
        self.0.push((label, why));
        format!("{OPEN}{}{CLOSE}", self.0.len() - 1)
    }

    fn any(text: &str) -> bool {
        text.contains(OPEN)
    }

    /// The text with each unknown written as the template writes it.
    fn render(&self, text: &str) -> String {
        self.replace(text, |i| self.0[i].0.clone())
    }

    /// `text`, with the unknowns of `from` in it made this table's.
    fn import(&mut self, text: &str, from: &Unknowns) -> String {
        from.replace(text, |i| {
            let (label, why) = from.0[i].clone();
            self.add(label, why)
        })
    }

    fn replace(&self, text: &str, mut with: impl FnMut(usize) -> String) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find(OPEN) {
            out.push_str(&rest[..start]);
            let after = &rest[start + OPEN.len_utf8()..];
            let end = after.find(CLOSE).unwrap_or(after.len());
            out.push_str(&with(after[..end].parse().unwrap_or(0)));
            rest = after.get(end + CLOSE.len_utf8()..).unwrap_or("");
        }
        out.push_str(rest);
        out
    }

    /// Why the first unknown in `text` is unknown.
    fn why(&self, text: &str) -> String {
        let start = text.find(OPEN).map(|i| i + OPEN.len_utf8()).unwrap_or(0);
        let index: usize = text[start..].split(CLOSE).next().and_then(|i| i.parse().ok()).unwrap_or(0);
        self.0.get(index).map(|(_, why)| why.clone()).unwrap_or_default()
    }
}

/// A value under evaluation: a string (maybe with unknowns in it) or a list.
enum Val {
    Str(String),
    List(Vec<Val>),
}

/// Evaluates CloudFormation's intrinsic functions over the pseudo parameters, parameter defaults
/// and the repositories the template names.
struct Eval<'s, 'a> {
    stack: &'s Stack<'a>,
    unknowns: &'s mut Unknowns,
    depth: usize,
}

impl Eval<'_, '_> {
    /// `value` as a string, unknown parts marked.
    fn text(&mut self, value: &Value) -> String {
        let evaluated = self.eval(value);
        self.string(evaluated, value)
    }

    fn string(&mut self, val: Val, source: &Value) -> String {
        match val {
            Val::Str(s) => s,
            Val::List(_) => self.unknowns.add(label(source), "a list where a string belongs".into()),
        }
    }

    /// Every intrinsic function in `value` replaced by what it resolves to (unknowns written as
    /// the template writes them): a container definition ready for the ECS JSON reader.
    fn deep(&mut self, value: &Value) -> Value {
        match value {
            Value::Object(map) if is_intrinsic(map) => match self.eval(value) {
                Val::Str(s) => Value::String(self.unknowns.render(&s)),
                Val::List(items) => Value::Array(items.into_iter().map(|v| self.rendered(v)).collect()),
            },
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), self.deep(v))).collect()),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.deep(v)).collect()),
            other => other.clone(),
        }
    }

    fn rendered(&self, val: Val) -> Value {
        match val {
            Val::Str(s) => Value::String(self.unknowns.render(&s)),
            Val::List(items) => Value::Array(items.into_iter().map(|v| self.rendered(v)).collect()),
        }
    }

    fn unknown(&mut self, source: &Value, why: String) -> Val {
        Val::Str(self.unknowns.add(label(source), why))
    }

    fn eval(&mut self, value: &Value) -> Val {
        match value {
            Value::String(s) => Val::Str(s.clone()),
            Value::Number(n) => Val::Str(n.to_string()),
            Value::Bool(b) => Val::Str(b.to_string()),
            Value::Array(items) => Val::List(items.iter().map(|v| self.eval(v)).collect()),
            Value::Null => self.unknown(value, "no value".into()),
            Value::Object(map) if is_intrinsic(map) => {
                if self.depth > 32 {
                    return self.unknown(value, "nested too deeply".into());
                }
                self.depth += 1;
                let (function, argument) = map.iter().next().expect("one key");
                let result = self.function(function, argument, value);
                self.depth -= 1;
                result
            }
            Value::Object(_) => self.unknown(value, "an object where a string belongs".into()),
        }
    }

    fn function(&mut self, function: &str, argument: &Value, whole: &Value) -> Val {
        let list = argument.as_array().map(Vec::as_slice).unwrap_or_default();
        match (function, list) {
            ("Ref", _) => match argument.as_str() {
                Some(name) => self.reference(name, whole),
                None => self.unknown(whole, "Ref needs a name".into()),
            },
            ("Fn::Sub", _) => self.sub(argument, whole),
            ("Fn::Join", [delimiter, items]) => {
                let delimiter = self.text(delimiter);
                match self.eval(items) {
                    Val::List(items) => {
                        let parts: Vec<String> = items.into_iter().map(|v| self.string(v, whole)).collect();
                        Val::Str(parts.join(&delimiter))
                    }
                    unknown @ Val::Str(_) => unknown,
                }
            }
            ("Fn::Select", [index, items]) => {
                let index = self.text(index);
                match (index.trim().parse::<usize>(), self.eval(items)) {
                    (Ok(i), Val::List(mut items)) if i < items.len() => items.swap_remove(i),
                    (_, Val::Str(s)) if Unknowns::any(&s) => Val::Str(s),
                    _ => self.unknown(whole, format!("Fn::Select index {index} is not in the list")),
                }
            }
            ("Fn::Split", [delimiter, source]) => {
                let delimiter = self.text(delimiter);
                let source = self.text(source);
                if delimiter.is_empty() {
                    return self.unknown(whole, "Fn::Split with an empty delimiter".into());
                }
                Val::List(source.split(delimiter.as_str()).map(|s| Val::Str(s.to_owned())).collect())
            }
            ("Fn::GetAtt", _) => {
                let (resource, attribute) = match (argument, list) {
                    (Value::String(s), _) => s.split_once('.').map(|(r, a)| (r.to_owned(), a.to_owned())).unwrap_or_default(),
                    (_, [r, a]) => (self.text(r), self.text(a)),
                    _ => Default::default(),
                };
                self.attribute(&resource, &attribute, whole)
            }
            ("Fn::FindInMap", [map, top, second, ..]) => {
                let keys = [self.text(map), self.text(top), self.text(second)];
                match self.stack.document.get("Mappings").and_then(|m| m.get(&keys[0])).and_then(|m| m.get(&keys[1])).and_then(|m| m.get(&keys[2])) {
                    Some(found) => {
                        let found = found.clone();
                        self.eval(&found)
                    }
                    None => self.unknown(whole, format!("Fn::FindInMap {} is not in the template's Mappings", keys.join("."))),
                }
            }
            ("Fn::ImportValue", _) => {
                let name = self.text(argument);
                let name = self.unknowns.render(&name);
                match self.stack.deployment.map(|d| d.exports.get(&name)) {
                    Some(Some(value)) => Val::Str(value.clone()),
                    Some(None) => self.unknown(whole, format!("Fn::ImportValue {name}: no stack in the region exports it")),
                    None => self.unknown(whole, format!("Fn::ImportValue {name}: another stack's export, known only when this stack is deployed")),
                }
            }
            ("Fn::If", [condition, ..]) => {
                let condition = condition.as_str().unwrap_or("?").to_owned();
                self.unknown(whole, format!("Fn::If {condition}: which branch applies is decided when the stack is deployed"))
            }
            (other, _) => self.unknown(whole, format!("{other} is not evaluated here")),
        }
    }

    fn region(&self) -> Option<&str> {
        self.stack.context.region.as_deref()
    }

    fn pseudo(&mut self, name: &str, whole: &Value) -> Option<Val> {
        let region = self.region().map(str::to_owned);
        let partition = match region.as_deref() {
            Some(r) if r.starts_with("cn-") => "aws-cn",
            Some(r) if r.starts_with("us-gov-") => "aws-us-gov",
            _ => "aws",
        };
        let value = match name {
            "AWS::AccountId" => self.stack.context.account.clone(),
            "AWS::Region" => region,
            "AWS::Partition" => Some(partition.to_owned()),
            "AWS::URLSuffix" => Some(if partition == "aws-cn" { "amazonaws.com.cn" } else { "amazonaws.com" }.to_owned()),
            "AWS::StackName" if self.stack.deployment.is_some() => self.stack.deployment.map(|d| d.name.clone()),
            "AWS::StackId" if self.stack.deployment.is_some() => self.stack.deployment.map(|d| d.stack_id.clone()),
            _ if name.starts_with("AWS::") => None,
            _ => return None,
        };
        Some(match value {
            Some(v) => Val::Str(v),
            None => self.unknown(whole, format!("{name} is known only where the stack is deployed")),
        })
    }

    fn reference(&mut self, name: &str, whole: &Value) -> Val {
        if let Some(value) = self.pseudo(name, whole) {
            return value;
        }
        if let Some(deployment) = self.stack.deployment {
            if let Some(value) = deployment.parameters.get(name) {
                return Val::Str(value.clone());
            }
            if let Some((_, physical)) = deployment.resources.get(name) {
                return Val::Str(physical.clone());
            }
        }
        if let Some((text, table)) = self.stack.parameters.get(name) {
            return Val::Str(self.unknowns.import(text, table));
        }
        let document = self.stack.document;
        if let Some(parameter) = document.get("Parameters").and_then(|p| p.get(name)) {
            return match parameter.get("Default") {
                Some(default) => {
                    let default = default.clone();
                    self.eval(&default)
                }
                None => self.unknown(whole, format!("parameter {name} has no Default: its value is given when the stack is deployed")),
            };
        }
        match self.stack.resource(name) {
            Some(resource) if resource["Type"] == "AWS::ECR::Repository" => match resource["Properties"].get("RepositoryName") {
                Some(repository) => {
                    let repository = repository.clone();
                    self.eval(&repository)
                }
                None => self.unknown(
                    whole,
                    format!("the stack creates repository {name} without a RepositoryName: CloudFormation names it when the stack is deployed"),
                ),
            },
            Some(resource) => {
                let kind = resource["Type"].as_str().unwrap_or("resource").to_owned();
                let when = if self.stack.deployment.is_some() { "once CloudFormation has created it: run again then" } else { "once the stack is deployed" };
                self.unknown(whole, format!("Ref {name} ({kind}) is known only {when}"))
            }
            None => self.unknown(whole, format!("Ref {name}: no such parameter or resource in the template")),
        }
    }

    fn attribute(&mut self, resource: &str, attribute: &str, whole: &Value) -> Val {
        let is_repository = self.stack.resource(resource).is_some_and(|r| r["Type"] == "AWS::ECR::Repository");
        if is_repository && matches!(attribute, "Arn" | "RepositoryUri") {
            let name = self.text(&serde_json::json!({ "Ref": resource }));
            let account = self.text(&serde_json::json!({ "Ref": "AWS::AccountId" }));
            let region = self.text(&serde_json::json!({ "Ref": "AWS::Region" }));
            let partition = self.text(&serde_json::json!({ "Ref": "AWS::Partition" }));
            let suffix = self.text(&serde_json::json!({ "Ref": "AWS::URLSuffix" }));
            return Val::Str(match attribute {
                "Arn" => format!("arn:{partition}:ecr:{region}:{account}:repository/{name}"),
                _ => format!("{account}.dkr.ecr.{region}.{suffix}/{name}"),
            });
        }
        self.unknown(whole, format!("Fn::GetAtt {resource}.{attribute} is known only once the stack is deployed"))
    }

    /// `Fn::Sub`: `${Name}` (a variable, parameter, pseudo parameter or resource), `${R.Attr}`,
    /// `${!Literal}`.
    fn sub(&mut self, argument: &Value, whole: &Value) -> Val {
        let (template, variables) = match argument {
            Value::String(s) => (s.as_str(), None),
            Value::Array(items) => match items.as_slice() {
                [Value::String(s), Value::Object(vars)] => (s.as_str(), Some(vars)),
                [Value::String(s)] => (s.as_str(), None),
                _ => return self.unknown(whole, "Fn::Sub needs a string and a map of variables".into()),
            },
            _ => return self.unknown(whole, "Fn::Sub needs a string".into()),
        };
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let name = after[..end].trim();
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str(&format!("${{{literal}}}"));
            } else {
                let stand_in = Value::String(format!("${{{name}}}"));
                let value = match variables.and_then(|v| v.get(name)) {
                    Some(v) => self.eval(v),
                    None => match name.split_once('.') {
                        Some((resource, attribute)) => self.attribute(resource, attribute, &stand_in),
                        None => self.reference(name, &stand_in),
                    },
                };
                out.push_str(&self.string(value, &stand_in));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Val::Str(out)
    }
}

fn is_intrinsic(map: &Map<String, Value>) -> bool {
    map.len() == 1 && map.keys().next().is_some_and(|k| k == "Ref" || k.starts_with("Fn::"))
}

/// An unknown written as the template writes it, short.
fn label(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Object(map) if map.len() == 1 => {
            let (key, argument) = map.iter().next().expect("one key");
            match (key.as_str(), argument) {
                ("Ref", Value::String(name)) => format!("${{{name}}}"),
                ("Fn::GetAtt", Value::Array(parts)) => format!("${{{}}}", parts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(".")),
                _ => format!("{{{key}: {argument}}}"),
            }
        }
        other => other.to_string(),
    };
    if text.chars().count() > 80 { format!("{}...", text.chars().take(77).collect::<String>()) } else { text }
}

/// ECR, another registry, or unresolved: only the repository name must be known; the registry
/// host may keep an unknown account or region.
fn classify(image: &str, unknowns: &Unknowns) -> Kind {
    let rendered = unknowns.render(image);
    let Some((host, rest)) = image.split_once('/') else {
        // Docker Hub's `nginx:${Tag}` is not ours whatever its tag.
        let name = image.split(['@', ':']).next().unwrap_or_default();
        return if Unknowns::any(name) { Kind::Unresolved(unknowns.why(name)) } else { Kind::Other };
    };
    let probe = unknowns.replace(host, |_| "1".to_owned());
    if taskdef::ecr_repository(&format!("{probe}/probe")).is_none() {
        return if Unknowns::any(host) { Kind::Unresolved(unknowns.why(host)) } else { Kind::Other };
    }
    let name = rest.split('@').next().unwrap_or_default();
    let name = name.rsplit_once(':').map_or(name, |(n, _)| n);
    if Unknowns::any(name) {
        return Kind::Unresolved(format!("the repository name is not known: {}", unknowns.why(name)));
    }
    match crate::names::check_repository(name) {
        Ok(()) => Kind::Ecr(name.to_owned()),
        Err(e) => Kind::Unresolved(format!("{rendered}: {e}")),
    }
}

// ---------------------------------------------------------------- Terraform

/// One resource of a plan: its planned values and its configuration (for references, which a
/// plan keeps there because ARNs are unknown until apply).
struct Planned<'a> {
    address: String,
    kind: &'a str,
    values: &'a Value,
}

fn terraform(file: &str, plan: &Value, created: &mut Created) -> Result<Vec<Found>> {
    let root = plan.get("planned_values").or_else(|| plan.get("values")).and_then(|v| v.get("root_module"));
    let Some(root) = root else { bail!("{file} is Terraform JSON without planned_values: give `terraform show -json PLANFILE`") };
    let mut resources = Vec::new();
    let mut modules = vec![root];
    while let Some(module) = modules.pop() {
        for r in module["resources"].as_array().into_iter().flatten() {
            if r["mode"] == "managed" || r.get("mode").is_none() {
                resources.push(Planned {
                    address: r["address"].as_str().unwrap_or_default().to_owned(),
                    kind: r["type"].as_str().unwrap_or_default(),
                    values: &r["values"],
                });
            }
        }
        modules.extend(module["child_modules"].as_array().into_iter().flatten());
    }
    let mut expressions: HashMap<String, &Value> = HashMap::new();
    let mut configs = vec![(String::new(), plan.get("configuration").and_then(|c| c.get("root_module")))];
    while let Some((prefix, Some(module))) = configs.pop() {
        for r in module["resources"].as_array().into_iter().flatten() {
            expressions.insert(format!("{prefix}{}", r["address"].as_str().unwrap_or_default()), &r["expressions"]);
        }
        for (name, call) in module["module_calls"].as_object().into_iter().flatten() {
            configs.push((format!("{prefix}module.{name}."), call.get("module")));
        }
    }
    let unknown_after: HashSet<String> = plan["resource_changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["change"]["after_unknown"]["container_definitions"] == true)
        .filter_map(|c| c["address"].as_str().map(str::to_owned))
        .collect();

    for r in resources.iter().filter(|r| r.kind == "aws_ecr_repository") {
        if let Some(name) = r.values["name"].as_str() {
            created.0.insert(name.to_owned(), format!("{file}: {}", r.address));
        }
    }
    // A reference (`aws_lb_target_group.app.arn`) from a resource in a module to a planned resource.
    let target = |from: &str, expression: &Value, kind: &str| -> Option<usize> {
        let prefix = module_prefix(from);
        expression["references"].as_array()?.iter().filter_map(Value::as_str).find_map(|reference| {
            resources.iter().position(|r| r.kind == kind && unindexed(&r.address) == format!("{prefix}{reference}"))
        })
    };
    let mut checks: HashMap<(usize, String), (LoadBalancerCheck, bool)> = HashMap::new();
    for service in resources.iter().filter(|r| r.kind == "aws_ecs_service") {
        let Some(config) = expressions.get(&unindexed(&service.address)) else { continue };
        let Some(task) = target(&service.address, &config["task_definition"], "aws_ecs_task_definition") else { continue };
        for (n, binding) in service.values["load_balancer"].as_array().into_iter().flatten().enumerate() {
            let Some(group) = target(&service.address, &config["load_balancer"][n]["target_group_arn"], "aws_lb_target_group")
                .or_else(|| target(&service.address, &config["load_balancer"][n]["target_group_arn"], "aws_alb_target_group"))
            else {
                continue;
            };
            let Some(name) = binding["container_name"].as_str() else { continue };
            let group = resources[group].values;
            let health = &group["health_check"][0];
            let protocol = health["protocol"].as_str().or(group["protocol"].as_str()).unwrap_or_default();
            let port = health["port"].as_str().filter(|p| *p != "traffic-port").and_then(|p| p.parse().ok());
            let check = LoadBalancerCheck {
                path: Some(health["path"].as_str().filter(|p| !p.is_empty()).unwrap_or("/").to_owned()),
                port: port.or_else(|| binding["container_port"].as_u64().and_then(|p| u16::try_from(p).ok())),
                matcher: Some(health["matcher"].as_str().filter(|m| !m.is_empty()).unwrap_or("200").to_owned()),
            };
            checks.insert((task, name.to_owned()), (check, protocol.eq_ignore_ascii_case("HTTPS")));
        }
    }

    let mut found = Vec::new();
    for (i, task) in resources.iter().enumerate().filter(|(_, r)| r.kind == "aws_ecs_task_definition") {
        let at = format!("{file}: {}.container_definitions", task.address);
        let definitions = match task.values["container_definitions"].as_str().map(serde_json::from_str::<Value>) {
            Some(Ok(Value::Array(definitions))) => definitions,
            Some(Ok(_)) | Some(Err(_)) => bail!("{at} is not a JSON list of container definitions"),
            None => {
                let references: Vec<&str> = expressions
                    .get(&unindexed(&task.address))
                    .and_then(|e| e["container_definitions"]["references"].as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let prefix = module_prefix(&task.address);
                let created_here = references.iter().find_map(|reference| {
                    let r = resources.iter().find(|r| r.kind == "aws_ecr_repository" && format!("{prefix}{reference}").starts_with(&format!("{}.", unindexed(&r.address))))?;
                    r.values["name"].as_str()
                });
                let why = if unknown_after.contains(&task.address) {
                    let refers = if references.is_empty() { String::new() } else { format!(" (it refers to {})", references.join(", ")) };
                    let created = created_here.map_or(String::new(), |name| format!("; the plan creates repository {name} itself, so it cannot hold a placeholder before the plan is applied"));
                    format!("known only after apply{refers}{created}")
                } else {
                    "not in the plan".to_owned()
                };
                let container = Container { name: task.address.clone(), ..Default::default() };
                found.push(Found { container, location: at, image: "(unknown)".into(), kind: Kind::Unresolved(format!("container_definitions is {why}")), https: false });
                continue;
            }
        };
        let first = found.len();
        for (n, definition) in definitions.iter().enumerate() {
            let mut container = taskdef::container(definition);
            container.task = Some(task.address.clone());
            if container.name.is_empty() {
                container.name = format!("{}[{n}]", task.address);
            }
            let https = match checks.get(&(i, container.name.clone())) {
                Some((check, https)) => {
                    container.load_balancer = Some(check.clone());
                    *https
                }
                None => false,
            };
            let image = container.image.clone().unwrap_or_default();
            let kind = classify(&image, &Unknowns::default());
            found.push(Found { container, location: format!("{at}[{n}].image"), image, kind, https });
        }
        link_task(&mut found[first..]);
    }
    Ok(found)
}

/// Tells each container of one task definition about the others (with images as far as they resolve).
fn link_task(task: &mut [Found]) {
    let mut containers: Vec<Container> = task.iter().map(|f| Container { image: Some(f.image.clone()), ..f.container.clone() }).collect();
    taskdef::link(&mut containers);
    for (found, linked) in task.iter_mut().zip(containers) {
        found.container.sidecars = linked.sidecars;
    }
}

/// The module part of a resource address: `module.a.module.b.` of `module.a.module.b.aws_x.y`.
fn module_prefix(address: &str) -> String {
    let address = unindexed(address);
    let parts: Vec<&str> = address.split('.').collect();
    let mut prefix = String::new();
    let mut i = 0;
    while i + 1 < parts.len() && parts[i] == "module" {
        prefix.push_str(&format!("module.{}.", parts[i + 1]));
        i += 2;
    }
    prefix
}

/// A resource address without its instance keys: `module.a["x"].aws_ecs_service.b[0]` is
/// `module.a.aws_ecs_service.b`, as the configuration names it.
fn unindexed(address: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    let mut quoted = false;
    for c in address.chars() {
        match c {
            '"' if depth > 0 => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

// ---------------------------------------------------------------- YAML

/// A YAML CloudFormation template as JSON, the short forms (`!Ref`, `!Sub`, `!GetAtt A.B`, ...)
/// written as their long forms. Scalars stay strings (the readers accept numbers written as
/// strings), so `012345678901` keeps its leading zero.
pub fn yaml(text: &str) -> Result<Value> {
    use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
    use yaml_rust2::scanner::{Marker, TScalarStyle};

    #[derive(Default)]
    struct Builder {
        stack: Vec<(Value, Option<String>, usize, Option<Tag>)>,
        /// Each anchored value and its number of nodes.
        anchors: HashMap<usize, (Value, usize)>,
        documents: Vec<Value>,
        /// Nodes that aliases have copied: bounded, so a few lines of nested aliases cannot fill
        /// memory.
        copied: usize,
    }

    impl Builder {
        fn push(&mut self, value: Value, anchor: usize) {
            if anchor > 0 {
                self.anchors.insert(anchor, (value.clone(), nodes(&value)));
            }
            match self.stack.last_mut() {
                None => self.documents.push(value),
                Some((Value::Array(items), ..)) => items.push(value),
                Some((Value::Object(map), key, ..)) => match key.take() {
                    None => *key = Some(value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())),
                    Some(k) => {
                        map.insert(k, value);
                    }
                },
                Some(_) => {}
            }
        }
    }

    /// `!Ref x` is `{"Ref": x}`, `!GetAtt A.B` is `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` is
    /// `{"Fn::Sub": s}`.
    fn tagged(value: Value, tag: Option<Tag>) -> Value {
        let Some(tag) = tag else { return value };
        let name = match (tag.handle.as_str(), tag.suffix.as_str()) {
            ("!", suffix) => suffix.to_owned(),
            ("", suffix) if suffix.starts_with('!') => suffix[1..].to_owned(),
            _ => return value,
        };
        let (key, value) = match (name.as_str(), value) {
            ("Ref", v) => ("Ref".to_owned(), v),
            ("Condition", v) => ("Condition".to_owned(), v),
            ("GetAtt", Value::String(s)) => {
                let parts = match s.split_once('.') {
                    Some((r, a)) => vec![Value::String(r.to_owned()), Value::String(a.to_owned())],
                    None => vec![Value::String(s)],
                };
                ("Fn::GetAtt".to_owned(), Value::Array(parts))
            }
            (other, v) => (format!("Fn::{other}"), v),
        };
        Value::Object(Map::from_iter([(key, value)]))
    }

    impl MarkedEventReceiver for Builder {
        fn on_event(&mut self, event: Event, _mark: Marker) {
            match event {
                Event::Scalar(text, style, anchor, tag) => {
                    let plain_null = style == TScalarStyle::Plain && tag.is_none() && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL");
                    let value = if plain_null { Value::Null } else { tagged(Value::String(text), tag) };
                    self.push(value, anchor);
                }
                Event::SequenceStart(anchor, tag) => self.stack.push((Value::Array(Vec::new()), None, anchor, tag)),
                Event::MappingStart(anchor, tag) => self.stack.push((Value::Object(Map::new()), None, anchor, tag)),
                Event::SequenceEnd | Event::MappingEnd => {
                    if let Some((value, _, anchor, tag)) = self.stack.pop() {
                        self.push(tagged(value, tag), anchor);
                    }
                }
                Event::Alias(anchor) => {
                    let (value, size) = self.anchors.get(&anchor).map_or((&Value::Null, 1), |(v, n)| (v, *n));
                    self.copied += size;
                    if self.copied <= ALIAS_BUDGET {
                        let value = value.clone();
                        self.push(value, 0);
                    }
                }
                _ => {}
            }
        }
    }

    const ALIAS_BUDGET: usize = 1 << 20;

    fn nodes(value: &Value) -> usize {
        match value {
            Value::Array(items) => 1 + items.iter().map(nodes).sum::<usize>(),
            Value::Object(map) => 1 + map.values().map(nodes).sum::<usize>(),
            _ => 1,
        }
    }
    let mut builder = Builder::default();
    Parser::new_from_str(text).load(&mut builder, false).map_err(|e| anyhow::anyhow!("not YAML: {e}"))?;
    if builder.copied > ALIAS_BUDGET {
        bail!("its YAML aliases expand to more than {ALIAS_BUDGET} values");
    }
    builder.documents.into_iter().next().context("an empty YAML file")
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/stacks");

    fn context() -> Context {
        Context { account: None, region: Some("eu-west-1".into()) }
    }

    fn found(path: &str) -> Vec<Found> {
        discover(&Path::new(STACKS).join(path), &context()).unwrap()
    }

    fn by_name<'a>(found: &'a [Found], name: &str) -> &'a Found {
        found.iter().find(|f| f.container.name == name).unwrap_or_else(|| panic!("no container {name}: {found:#?}"))
    }

    /// The container `name`, checked to fill `repository` with `ports` behind a target group
    /// checking (path, port, matcher).
    fn ecr<'a>(found: &'a [Found], name: &str, repository: &str, ports: &[u16], check: (&str, u16, &str)) -> &'a Found {
        let f = by_name(found, name);
        assert_eq!((&f.kind, f.container.ports.as_slice()), (&Kind::Ecr(repository.into()), ports), "{f:?}");
        let (path, port, matcher) = check;
        assert_eq!(f.container.load_balancer, Some(LoadBalancerCheck { path: Some(path.into()), port: Some(port), matcher: Some(matcher.into()) }));
        f
    }

    /// Evaluates one expression (as YAML) against a template of parameters and resources.
    fn evaluate(template: &str, expression: &str, context: &Context) -> (String, Kind) {
        let document = yaml(template).unwrap();
        let stack = Stack { file: "t".into(), document: &document, context, parameters: HashMap::new(), deployment: None };
        let mut unknowns = Unknowns::default();
        let expression = yaml(expression).unwrap();
        let text = Eval { stack: &stack, unknowns: &mut unknowns, depth: 0 }.text(&expression);
        let kind = classify(&text, &unknowns);
        (unknowns.render(&text), kind)
    }

    const TEMPLATE: &str = "
Parameters:
  Name: { Type: String, Default: web }
  Tag: { Type: String }
  Shared: { Type: String }
Mappings:
  Repos: { eu-west-1: { api: team/api } }
Resources:
  Named: { Type: AWS::ECR::Repository, Properties: { RepositoryName: !Sub '${Name}-jobs' } }
  Unnamed: { Type: AWS::ECR::Repository }
  Bucket: { Type: AWS::S3::Bucket }
";

    #[test]
    fn the_evaluator_resolves_what_stacks_write_and_marks_the_rest() {
        let known = Context { account: Some("123456789012".into()), region: Some("eu-west-1".into()) };
        let cases: &[(&str, &str, Kind)] = &[
            ("!Sub '${AWS::AccountId}.dkr.ecr.${AWS::Region}.amazonaws.com/${Name}:latest'", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/web:latest", Kind::Ecr("web".into())),
            ("!Sub ['${A}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/${R}', { A: '111111111111', R: !Ref Name }]", "111111111111.dkr.ecr.eu-west-1.amazonaws.com/web", Kind::Ecr("web".into())),
            ("!Join ['', [!Ref 'AWS::AccountId', '.dkr.ecr.eu-west-1.amazonaws.com/', !FindInMap [Repos, !Ref 'AWS::Region', api]]]", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/api", Kind::Ecr("team/api".into())),
            ("!Sub '${Named.RepositoryUri}:latest'", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/web-jobs:latest", Kind::Ecr("web-jobs".into())),
            ("!Sub '${AWS::AccountId}.dkr.ecr.${AWS::Region}.amazonaws.com/app:${Tag}'", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:${Tag}", Kind::Ecr("app".into())),
            ("!Sub '${!Literal}'", "${Literal}", Kind::Other),
            ("nginx:1.27", "nginx:1.27", Kind::Other),
            ("!Sub 'nginx:${Tag}'", "nginx:${Tag}", Kind::Other),
            ("public.ecr.aws/nginx/nginx:latest", "public.ecr.aws/nginx/nginx:latest", Kind::Other),
        ];
        for (expression, image, kind) in cases {
            assert_eq!(evaluate(TEMPLATE, expression, &known), ((*image).to_owned(), kind.clone()), "{expression}");
        }

        // CDK's fromEcrRepository: the registry host from the repository ARN's fields.
        let cdk = r#"{"Fn::Join": ["", [
            {"Fn::Select": [4, {"Fn::Split": [":", {"Fn::GetAtt": ["Named", "Arn"]}]}]}, ".dkr.ecr.",
            {"Fn::Select": [3, {"Fn::Split": [":", {"Fn::GetAtt": ["Named", "Arn"]}]}]}, ".", {"Ref": "AWS::URLSuffix"}, "/",
            {"Ref": "Named"}, ":latest"]]}"#;
        assert_eq!(evaluate(TEMPLATE, cdk, &known).0, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/web-jobs:latest");
        // With no account known, the host keeps the unknown and the name still resolves.
        let (image, kind) = evaluate(TEMPLATE, cdk, &Context::default());
        assert_eq!((image.as_str(), kind), ("${AWS::AccountId}.dkr.ecr.${AWS::Region}.amazonaws.com/web-jobs:latest", Kind::Ecr("web-jobs".into())));

        let unresolved: &[(&str, &str)] = &[
            ("!ImportValue SharedRepoUri", "Fn::ImportValue SharedRepoUri: another stack's export"),
            ("!Sub '${AWS::AccountId}.dkr.ecr.${AWS::Region}.amazonaws.com/${Shared}:latest'", "parameter Shared has no Default"),
            ("!Sub '${Unnamed.RepositoryUri}:latest'", "without a RepositoryName"),
            ("!Sub '${Bucket.Arn}/x'", "Fn::GetAtt Bucket.Arn is known only once the stack is deployed"),
            ("!If [Prod, a, b]", "Fn::If Prod"),
            ("!Ref Nothing", "no such parameter or resource"),
            ("!Sub '${Shared}/app'", "parameter Shared has no Default"),
        ];
        for (expression, why) in unresolved {
            match evaluate(TEMPLATE, expression, &known).1 {
                Kind::Unresolved(said) => assert!(said.contains(why), "{expression}: {said}"),
                other => panic!("{expression}: {other:?}"),
            }
        }
    }

    #[test]
    fn yaml_short_forms_are_the_long_forms() {
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n".to_owned()
            + &(b'b'..=b'z').map(|c| format!("{}: &{} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n", c as char, c as char, p = (c - 1) as char)).collect::<String>();
        assert!(yaml(&bomb).unwrap_err().to_string().contains("aliases expand"));
        let document = yaml("A: !Ref X\nB: !GetAtt R.Arn\nC: !Sub ['${a}', {a: !Select [0, !Split [',', 'x,y']]}]\nD: 012345678901\nE: &e [1, 2]\nF: *e\nG:\n").unwrap();
        assert_eq!(
            document,
            serde_json::json!({
                "A": {"Ref": "X"}, "B": {"Fn::GetAtt": ["R", "Arn"]},
                "C": {"Fn::Sub": ["${a}", {"a": {"Fn::Select": ["0", {"Fn::Split": [",", "x,y"]}]}}]},
                "D": "012345678901", "E": ["1", "2"], "F": ["1", "2"], "G": null,
            })
        );
    }

    #[test]
    fn cdk_out_finds_ecr_images_nested_stacks_and_their_target_groups() {
        let found = found("cdk.out");
        let api = ecr(&found, "api", "from-cdk-api", &[8080], ("/health", 8080, "200-299"));
        assert_eq!(api.image, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/from-cdk-api:latest");
        assert_eq!(api.container.health_check.as_ref().unwrap().command, ["CMD-SHELL", "curl -f http://localhost:8080/health || exit 1"]);
        assert!(api.location.ends_with("FromCdkStack.template.json: Resources.ApiTaskDef8B6D2F71.Properties.ContainerDefinitions[0].Image"), "{}", api.location);
        assert_eq!(by_name(&found, "proxy").kind, Kind::Other);
        assert_eq!(by_name(&found, "proxy").image, "nginx");

        let worker = by_name(&found, "worker");
        assert_eq!(worker.kind, Kind::Ecr("from-cdk-worker".into()));
        assert!(worker.location.contains(".nested.template.json"), "{}", worker.location);
        assert_eq!((worker.container.entry_point.as_deref(), worker.container.init_process), (Some(&["node".to_owned(), "worker.js".to_owned()][..]), true));

        let jobs = by_name(&found, "jobs");
        assert!(matches!(&jobs.kind, Kind::Owned { repository, .. } if repository == "from-cdk-jobs"), "{jobs:?}");
        assert_eq!(found.len(), 4, "{found:#?}");
    }

    #[test]
    fn a_yaml_template_with_parameters_and_sub() {
        let found = found("cloudformation.yaml");
        let web = ecr(&found, "web", "from-cfn-web", &[3000], ("/healthz", 3000, "200,302"));
        assert_eq!(web.container.command.as_deref(), Some(&["npm".to_owned(), "start".to_owned()][..]));
        assert_eq!(web.boots(), "yes");
        assert_eq!(by_name(&found, "otel").kind, Kind::Other);
        let jobs = by_name(&found, "jobs");
        assert!(matches!(&jobs.kind, Kind::Owned { repository, .. } if repository == "from-cfn-web-jobs"), "{jobs:?}");
        assert!(jobs.left_alone().unwrap().contains("the stack creates repository from-cfn-web-jobs"));
        assert_eq!(found.len(), 3, "{found:#?}");
    }

    #[test]
    fn a_terraform_plan() {
        let found = found("terraform-plan.json");
        let app = ecr(&found, "app", "from-tf-app", &[8000], ("/api/health", 8000, "200"));
        assert_eq!(app.location, format!("{STACKS}/terraform-plan.json: module.web.aws_ecs_task_definition.app.container_definitions[0].image"));
        assert_eq!(by_name(&found, "datadog-agent").kind, Kind::Other);
        let pending = by_name(&found, "aws_ecs_task_definition.migrate");
        assert!(matches!(&pending.kind, Kind::Unresolved(why) if why.contains("known only after apply") && why.contains("aws_ecr_repository.migrate.repository_url") && why.contains("the plan creates repository from-tf-migrate itself")), "{pending:?}");
        assert_eq!(found.len(), 3, "{found:#?}");
    }

    #[test]
    fn what_cannot_be_resolved_is_listed_with_where_and_why() {
        let found = found("unresolvable.yaml");
        assert_eq!(found.len(), 2);
        let imported = by_name(&found, "imported");
        assert!(matches!(&imported.kind, Kind::Unresolved(why) if why.contains("Fn::ImportValue SharedApiRepositoryUri")), "{imported:?}");
        assert!(imported.location.ends_with("unresolvable.yaml: Resources.TaskDefinition.Properties.ContainerDefinitions[0].Image"), "{}", imported.location);
        let given = by_name(&found, "given");
        assert!(matches!(&given.kind, Kind::Unresolved(why) if why.contains("parameter RepositoryName has no Default")), "{given:?}");
        assert_eq!(given.image, "${AWS::AccountId}.dkr.ecr.eu-west-1.amazonaws.com/${RepositoryName}:latest");

        let error = load(&[Path::new(STACKS).join("unresolvable.yaml")], &context()).unwrap_err();
        assert!(error.downcast_ref::<Usage>().is_some());
        assert!(error.to_string().contains("no ECR image resolved") && error.to_string().contains("imported"), "{error}");
    }

    #[test]
    fn a_traffic_port_check_and_a_conditional_definition() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.yaml");
        std::fs::write(&path, "
Resources:
  Task:
    Type: AWS::ECS::TaskDefinition
    Properties:
      ContainerDefinitions:
        - { Name: a, Image: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/svc-a, PortMappings: [{ ContainerPort: 9000 }, { ContainerPort: 8080 }] }
  Maybe:
    Type: AWS::ECS::TaskDefinition
    Properties:
      ContainerDefinitions: !If [Prod, [], []]
  Group:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties: { HealthCheckPort: traffic-port, HealthCheckProtocol: HTTPS }
  Service:
    Type: AWS::ECS::Service
    Properties:
      TaskDefinition: !Ref Task
      LoadBalancers: [{ ContainerName: a, ContainerPort: 8080, TargetGroupArn: !Ref Group }]
").unwrap();
        let found = discover(&path, &context()).unwrap();
        let a = ecr(&found, "a", "svc-a", &[9000, 8080], ("/", 8080, "200"));
        assert!(a.boots().starts_with("no: the target group checks over HTTPS"), "{}", a.boots());
        let maybe = by_name(&found, "Maybe");
        assert!(matches!(&maybe.kind, Kind::Unresolved(why) if why.contains("Fn::If Prod")), "{maybe:?}");
        assert!(maybe.location.ends_with("Resources.Maybe.Properties.ContainerDefinitions"), "{}", maybe.location);
    }

    #[test]
    fn an_ecs_task_definition_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("td.json");
        std::fs::write(&path, r#"{"containerDefinitions":[{"name":"a","image":"123456789012.dkr.ecr.eu-west-1.amazonaws.com/td-a:v1"},{"name":"b","image":"redis"}]}"#).unwrap();
        let found = discover(&path, &context()).unwrap();
        assert_eq!(found.iter().map(|f| f.kind.clone()).collect::<Vec<_>>(), [Kind::Ecr("td-a".into()), Kind::Other]);
    }

    #[test]
    fn terraform_addresses_without_instance_keys() {
        assert_eq!(unindexed(r#"module.a["x[1]"].aws_ecs_service.b[0]"#), "module.a.aws_ecs_service.b");
    }
}
