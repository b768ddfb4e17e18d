//! The CloudFormation evaluator: a template's intrinsic functions (`Ref`, `Fn::Sub`, `Fn::Join`,
//! `Fn::Select`, `Fn::Split`, `Fn::GetAtt`, `Fn::FindInMap`, `Fn::ImportValue`) over the pseudo
//! parameters, parameter defaults or the values a deployed stack was given, as far as they
//! resolve; what does not is marked and said, never guessed.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{Context, Found, Kind, link_task};
use crate::base::image_ref;
use crate::sources::taskdef::{self, LoadBalancerCheck};

/// The template file of a nested stack, by the asset path CDK records in its resource's metadata.
pub(super) fn asset_path(resource: &Value) -> Option<&str> {
    if resource["Type"] != "AWS::CloudFormation::Stack" {
        return None;
    }
    resource.get("Metadata")?.get("aws:asset:path")?.as_str()
}

/// The nested stack templates a template names.
pub(super) fn nested_files(document: &Value) -> impl Iterator<Item = &str> {
    document.get("Resources").and_then(Value::as_object).into_iter().flatten().filter_map(|(_, r)| asset_path(r))
}

/// The parameters a parent stack passes a nested one, each evaluated in the parent.
pub(super) type Passed = HashMap<String, (String, Unknowns)>;

/// One template, with what its intrinsic functions are evaluated against.
pub(super) struct Stack<'a> {
    pub(super) file: String,
    pub(super) document: &'a Value,
    pub(super) context: &'a Context,
    /// Parameter values a parent stack passes (CDK nested stacks), evaluated in the parent.
    pub(super) parameters: Passed,
    /// What CloudFormation knows of the stack, for `--from stack:NAME`.
    pub(super) deployment: Option<&'a Deployment>,
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
pub fn deployed(
    document: &Value,
    context: &Context,
    deployment: &Deployment,
    created: &HashMap<String, String>,
) -> Vec<Found> {
    let stack = Stack {
        file: format!("stack:{}", deployment.name),
        document,
        context,
        parameters: HashMap::new(),
        deployment: Some(deployment),
    };
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
pub fn classify_image(image: &str) -> Kind {
    classify(image, &Unknowns::default())
}

impl<'a> Stack<'a> {
    pub(super) fn resources(&self) -> impl Iterator<Item = (&'a String, &'a Value)> {
        self.document.get("Resources").and_then(Value::as_object).into_iter().flatten()
    }

    pub(super) fn resource(&self, id: &str) -> Option<&'a Value> {
        self.document.get("Resources")?.get(id)
    }

    /// An `AWS::ECR::Repository`'s `RepositoryName`, when it is set and resolves.
    pub(super) fn repository_name(&self, resource: &Value) -> Option<String> {
        let name = resource.get("Properties")?.get("RepositoryName")?;
        let mut unknowns = Unknowns::default();
        let text = Eval { stack: self, unknowns: &mut unknowns, depth: 0 }.text(name);
        (!Unknowns::any(&text)).then_some(text)
    }

    /// The nested stacks CDK synthesized beside this template, with the parameters passed to each.
    pub(super) fn nested(&self) -> Vec<(String, Passed)> {
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

    pub(super) fn containers(&self) -> Vec<Found> {
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
                    Some(map) if !is_intrinsic(map) => {
                        (eval.text(definition.get("Image").unwrap_or(&Value::Null)), format!("{at}.Image"))
                    }
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
    pub(super) fn target_groups(&self) -> HashMap<(String, String), (LoadBalancerCheck, bool)> {
        let mut checks = HashMap::new();
        for (_, service) in self.resources().filter(|(_, r)| r["Type"] == "AWS::ECS::Service") {
            let properties = &service["Properties"];
            let Some(task) = properties["TaskDefinition"]["Ref"].as_str() else { continue };
            for binding in properties["LoadBalancers"].as_array().into_iter().flatten() {
                let Some(group_id) = binding["TargetGroupArn"]["Ref"].as_str() else { continue };
                let Some(group) =
                    self.resource(group_id).filter(|g| g["Type"] == "AWS::ElasticLoadBalancingV2::TargetGroup")
                else {
                    continue;
                };
                let mut unknowns = Unknowns::default();
                let mut eval = Eval { stack: self, unknowns: &mut unknowns, depth: 0 };
                let binding = eval.deep(binding);
                let group = eval.deep(&group["Properties"]);
                let (Some(name), container_port) = (known(&binding["ContainerName"]), known(&binding["ContainerPort"]))
                else {
                    continue;
                };
                let protocol =
                    known(&group["HealthCheckProtocol"]).or_else(|| known(&group["Protocol"])).unwrap_or_default();
                let check = LoadBalancerCheck {
                    path: Some(known(&group["HealthCheckPath"]).unwrap_or_else(|| "/".to_owned())),
                    port: known(&group["HealthCheckPort"])
                        .filter(|p| p != "traffic-port")
                        .or(container_port)
                        .and_then(|p| p.parse().ok()),
                    matcher: Some(known(&group["Matcher"]["HttpCode"]).unwrap_or_else(|| "200".to_owned())),
                };
                checks.insert((task.to_owned(), name), (check, protocol.eq_ignore_ascii_case("HTTPS")));
            }
        }
        checks
    }
}

/// A resolved string or number, not an unknown's stand-in text.
pub(super) fn known(value: &Value) -> Option<String> {
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
pub(super) struct Unknowns(Vec<(String, String)>);

pub(super) const OPEN: char = '\u{E000}';
pub(super) const CLOSE: char = '\u{E001}';

impl Unknowns {
    pub(super) fn add(&mut self, label: String, why: String) -> String {
        self.0.push((label, why));
        format!("{OPEN}{}{CLOSE}", self.0.len() - 1)
    }

    pub(super) fn any(text: &str) -> bool {
        text.contains(OPEN)
    }

    /// The text with each unknown written as the template writes it.
    pub(super) fn render(&self, text: &str) -> String {
        self.replace(text, |i| self.0[i].0.clone())
    }

    /// `text`, with the unknowns of `from` in it made this table's.
    pub(super) fn import(&mut self, text: &str, from: &Unknowns) -> String {
        from.replace(text, |i| {
            let (label, why) = from.0[i].clone();
            self.add(label, why)
        })
    }

    pub(super) fn replace(&self, text: &str, mut with: impl FnMut(usize) -> String) -> String {
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
    pub(super) fn why(&self, text: &str) -> String {
        let start = text.find(OPEN).map(|i| i + OPEN.len_utf8()).unwrap_or(0);
        let index: usize = text[start..].split(CLOSE).next().and_then(|i| i.parse().ok()).unwrap_or(0);
        self.0.get(index).map(|(_, why)| why.clone()).unwrap_or_default()
    }
}

/// A value under evaluation: a string (maybe with unknowns in it) or a list.
pub(super) enum Val {
    Str(String),
    List(Vec<Val>),
}

/// Evaluates CloudFormation's intrinsic functions over the pseudo parameters, parameter defaults
/// and the repositories the template names.
pub(super) struct Eval<'s, 'a> {
    pub(super) stack: &'s Stack<'a>,
    pub(super) unknowns: &'s mut Unknowns,
    pub(super) depth: usize,
}

impl Eval<'_, '_> {
    /// `value` as a string, unknown parts marked.
    pub(super) fn text(&mut self, value: &Value) -> String {
        let evaluated = self.eval(value);
        self.string(evaluated, value)
    }

    pub(super) fn string(&mut self, val: Val, source: &Value) -> String {
        match val {
            Val::Str(s) => s,
            Val::List(_) => self.unknowns.add(label(source), "a list where a string belongs".into()),
        }
    }

    /// Every intrinsic function in `value` replaced by what it resolves to (unknowns written as
    /// the template writes them): a container definition ready for the ECS JSON reader.
    pub(super) fn deep(&mut self, value: &Value) -> Value {
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

    pub(super) fn rendered(&self, val: Val) -> Value {
        match val {
            Val::Str(s) => Value::String(self.unknowns.render(&s)),
            Val::List(items) => Value::Array(items.into_iter().map(|v| self.rendered(v)).collect()),
        }
    }

    pub(super) fn unknown(&mut self, source: &Value, why: String) -> Val {
        Val::Str(self.unknowns.add(label(source), why))
    }

    pub(super) fn eval(&mut self, value: &Value) -> Val {
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

    pub(super) fn function(&mut self, function: &str, argument: &Value, whole: &Value) -> Val {
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
                    (Value::String(s), _) => {
                        s.split_once('.').map(|(r, a)| (r.to_owned(), a.to_owned())).unwrap_or_default()
                    }
                    (_, [r, a]) => (self.text(r), self.text(a)),
                    _ => Default::default(),
                };
                self.attribute(&resource, &attribute, whole)
            }
            ("Fn::FindInMap", [map, top, second, ..]) => {
                let keys = [self.text(map), self.text(top), self.text(second)];
                match self
                    .stack
                    .document
                    .get("Mappings")
                    .and_then(|m| m.get(&keys[0]))
                    .and_then(|m| m.get(&keys[1]))
                    .and_then(|m| m.get(&keys[2]))
                {
                    Some(found) => {
                        let found = found.clone();
                        self.eval(&found)
                    }
                    None => self
                        .unknown(whole, format!("Fn::FindInMap {} is not in the template's Mappings", keys.join("."))),
                }
            }
            ("Fn::ImportValue", _) => {
                let name = self.text(argument);
                let name = self.unknowns.render(&name);
                match self.stack.deployment.map(|d| d.exports.get(&name)) {
                    Some(Some(value)) => Val::Str(value.clone()),
                    Some(None) => {
                        self.unknown(whole, format!("Fn::ImportValue {name}: no stack in the region exports it"))
                    }
                    None => self.unknown(
                        whole,
                        format!(
                            "Fn::ImportValue {name}: another stack's export, known only when this stack is deployed"
                        ),
                    ),
                }
            }
            ("Fn::If", [condition, ..]) => {
                let condition = condition.as_str().unwrap_or("?").to_owned();
                self.unknown(
                    whole,
                    format!("Fn::If {condition}: which branch applies is decided when the stack is deployed"),
                )
            }
            (other, _) => self.unknown(whole, format!("{other} is not evaluated here")),
        }
    }

    pub(super) fn region(&self) -> Option<&str> {
        self.stack.context.region.as_deref()
    }

    pub(super) fn pseudo(&mut self, name: &str, whole: &Value) -> Option<Val> {
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
            "AWS::URLSuffix" => {
                Some(if partition == "aws-cn" { "amazonaws.com.cn" } else { "amazonaws.com" }.to_owned())
            }
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

    pub(super) fn reference(&mut self, name: &str, whole: &Value) -> Val {
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
                None => self.unknown(
                    whole,
                    format!("parameter {name} has no Default: its value is given when the stack is deployed"),
                ),
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

    pub(super) fn attribute(&mut self, resource: &str, attribute: &str, whole: &Value) -> Val {
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
    pub(super) fn sub(&mut self, argument: &Value, whole: &Value) -> Val {
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

pub(super) fn is_intrinsic(map: &Map<String, Value>) -> bool {
    map.len() == 1 && map.keys().next().is_some_and(|k| k == "Ref" || k.starts_with("Fn::"))
}

/// An unknown written as the template writes it, short.
pub(super) fn label(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Object(map) if map.len() == 1 => {
            let (key, argument) = map.iter().next().expect("one key");
            match (key.as_str(), argument) {
                ("Ref", Value::String(name)) => format!("${{{name}}}"),
                ("Fn::GetAtt", Value::Array(parts)) => {
                    format!("${{{}}}", parts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("."))
                }
                _ => format!("{{{key}: {argument}}}"),
            }
        }
        other => other.to_string(),
    };
    if text.chars().count() > 80 { format!("{}...", text.chars().take(77).collect::<String>()) } else { text }
}

/// ECR, another registry, or unresolved: only the repository name must be known; the registry
/// host may keep an unknown account or region.
pub(super) fn classify(image: &str, unknowns: &Unknowns) -> Kind {
    let rendered = unknowns.render(image);
    let Some((host, rest)) = image.split_once('/') else {
        // Docker Hub's `nginx:${Tag}` is not ours whatever its tag.
        let name = image.split(['@', ':']).next().unwrap_or_default();
        return if Unknowns::any(name) { Kind::Unresolved(unknowns.why(name)) } else { Kind::Other };
    };
    let probe = unknowns.replace(host, |_| "1".to_owned());
    if image_ref::ecr_repository(&format!("{probe}/probe")).is_none() {
        return if Unknowns::any(host) { Kind::Unresolved(unknowns.why(host)) } else { Kind::Other };
    }
    let name = rest.split('@').next().unwrap_or_default();
    let name = name.rsplit_once(':').map_or(name, |(n, _)| n);
    if Unknowns::any(name) {
        return Kind::Unresolved(format!("the repository name is not known: {}", unknowns.why(name)));
    }
    match crate::base::names::check_repository(name) {
        Ok(()) => Kind::Ecr(name.to_owned()),
        Err(e) => Kind::Unresolved(format!("{rendered}: {e}")),
    }
}
