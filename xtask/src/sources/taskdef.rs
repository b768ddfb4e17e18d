//! ECS task definitions as users have them, read leniently: RegisterTaskDefinition input,
//! DescribeTaskDefinition output, one container definition, a list of them, or JSON Lines; ECS's
//! camelCase or CloudFormation's PascalCase keys; numbers written as strings with notes after
//! them. Each container keeps what the placeholder must honour to boot under it.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// One container definition, with what the task around it says.
#[derive(Clone, Debug, Default)]
pub struct Container {
    /// `name`, or where it was found when it has none.
    pub name: String,
    pub image: Option<String>,
    pub ports: Vec<u16>,
    pub health_check: Option<HealthCheck>,
    pub command: Option<Vec<String>>,
    pub entry_point: Option<Vec<String>>,
    pub environment: Vec<(String, String)>,
    pub user: Option<String>,
    pub readonly_root: bool,
    pub working_directory: Option<String>,
    pub init_process: bool,
    /// The load balancer's check, where the file says (the compatibility sample's `albHealthCheck`).
    pub load_balancer: Option<LoadBalancerCheck>,
    /// The task's other containers: in awsvpc mode (Fargate) they share its network namespace.
    pub sidecars: Vec<Sidecar>,
    /// The task definition it is in: its family, or the stack's name for the resource.
    pub task: Option<String>,
}

impl Container {
    /// `Api/web`: the task definition and the container, or the container alone where the file
    /// names no task definition.
    pub fn qualified(&self) -> String {
        match &self.task {
            Some(task) => format!("{task}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A name for each container that is unique among them: its own where no other has it, else
/// qualified by its task definition (`Api/web`), else numbered as well.
pub fn unique_names<'a>(containers: impl IntoIterator<Item = &'a Container>) -> Vec<String> {
    let containers: Vec<&Container> = containers.into_iter().collect();
    let count = |name: &str, of: &dyn Fn(&Container) -> String| containers.iter().filter(|c| of(c) == name).count();
    let mut names: Vec<String> = containers
        .iter()
        .map(|c| if count(&c.name, &|c: &Container| c.name.clone()) > 1 { c.qualified() } else { c.name.clone() })
        .collect();
    for i in 0..names.len() {
        let same: Vec<usize> = (0..names.len()).filter(|&j| names[j] == names[i]).collect();
        if same.len() > 1 {
            for (n, j) in same.into_iter().enumerate() {
                names[j] = format!("{} ({})", names[j], n + 1);
            }
        }
    }
    names
}

/// Another container of the same task definition, as the placeholder meets it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sidecar {
    pub name: String,
    pub image: String,
    /// Its TCP container ports, as its definition maps them.
    pub ports: Vec<u16>,
}

/// Tells each container of one task definition about the others.
pub fn link(task: &mut [Container]) {
    let all: Vec<Sidecar> = task
        .iter()
        .map(|c| Sidecar { name: c.name.clone(), image: c.image.clone().unwrap_or_default(), ports: c.ports.clone() })
        .collect();
    for (i, container) in task.iter_mut().enumerate() {
        container.sidecars = all.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, s)| s.clone()).collect();
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct HealthCheck {
    /// Exactly as written: `["CMD-SHELL", "..."]` or `["CMD", program, args...]`.
    pub command: Vec<String>,
    pub interval: Option<u64>,
    pub timeout: Option<u64>,
    pub retries: Option<u64>,
    pub start_period: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadBalancerCheck {
    pub path: Option<String>,
    /// `None` for `traffic-port`: the container port.
    pub port: Option<u16>,
    pub matcher: Option<String>,
}

/// Every container definition in `path`.
pub fn load(path: &Path) -> Result<Vec<Container>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let documents: Vec<Value> = match serde_json::from_str::<Value>(&text) {
        Ok(value) => vec![value],
        Err(whole) => text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(n, line)| {
                serde_json::from_str(line).map_err(|_| {
                    anyhow::anyhow!("{} is not ECS task definition JSON ({whole}); give RegisterTaskDefinition or DescribeTaskDefinition JSON, or one container definition per line (line {} is not JSON)", path.display(), n + 1)
                })
            })
            .collect::<Result<_>>()?,
    };
    let mut containers = Vec::new();
    for document in &documents {
        collect(document, &mut containers);
    }
    if containers.is_empty() {
        bail!(
            "{} holds no container definitions: expected containerDefinitions (ECS JSON) or container definitions",
            path.display()
        );
    }
    for (n, container) in containers.iter_mut().enumerate() {
        if container.name.is_empty() {
            container.name = format!("container-{}", n + 1);
        }
    }
    Ok(containers)
}

fn collect(document: &Value, out: &mut Vec<Container>) {
    if let Some(list) = document.as_array() {
        // A list of container definitions is one task's; a list of anything else is looked into.
        if !list.is_empty() && list.iter().all(is_container_definition) {
            let mut task: Vec<Container> = list.iter().map(container).collect();
            link(&mut task);
            out.extend(task);
            return;
        }
        for item in list {
            collect(item, out);
        }
    } else if let Some(task) = field(document, "taskDefinition") {
        collect(task, out);
    } else if let Some(definitions) = field(document, "containerDefinitions") {
        let first = out.len();
        collect(definitions, out);
        if let Some(family) = text(field(document, "family")) {
            for container in &mut out[first..] {
                container.task = Some(family.clone());
            }
        }
    } else if is_container_definition(document) {
        out.push(container(document));
    }
}

fn is_container_definition(document: &Value) -> bool {
    document.is_object() && (field(document, "image").is_some() || field(document, "portMappings").is_some())
}

/// A key in ECS's camelCase or CloudFormation's PascalCase.
fn field<'a>(object: &'a Value, name: &str) -> Option<&'a Value> {
    let object = object.as_object()?;
    object
        .get(name)
        .or_else(|| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
        .filter(|v| !v.is_null())
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A whole number, also when written as `"5 (written as start_period)"`.
fn number(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok(),
        _ => None,
    }
}

fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    match value? {
        Value::Array(items) => Some(items.iter().filter_map(|i| text(Some(i))).collect()),
        // Some tools write a command as one string; Docker would split it into words.
        Value::String(s) => Some(s.split_whitespace().map(str::to_owned).collect()),
        _ => None,
    }
}

/// A container's `command` or `entryPoint`. An empty list is no setting: the console's JSON export
/// writes `"entryPoint": []` for definitions that never set one, and ECS then runs the image's own
/// entry point (given to Docker, `[]` would clear it and the container could not start).
fn launch_words(value: Option<&Value>) -> Option<Vec<String>> {
    strings(value).filter(|words| !words.is_empty())
}

fn flag(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// One container definition, in ECS's camelCase or CloudFormation's PascalCase.
pub fn container(definition: &Value) -> Container {
    let ports = field(definition, "portMappings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| text(field(m, "protocol")).is_none_or(|p| p.eq_ignore_ascii_case("tcp")))
        .filter_map(|m| number(field(m, "containerPort")).and_then(|p| u16::try_from(p).ok()))
        .fold(Vec::new(), |mut ports, port| {
            if !ports.contains(&port) {
                ports.push(port);
            }
            ports
        });
    let health_check = field(definition, "healthCheck").and_then(|h| {
        let command = strings(field(h, "command"))?;
        Some(HealthCheck {
            command,
            interval: number(field(h, "interval")),
            timeout: number(field(h, "timeout")),
            retries: number(field(h, "retries")),
            start_period: number(field(h, "startPeriod")),
        })
    });
    let environment = match field(definition, "environment") {
        Some(Value::Array(pairs)) => pairs
            .iter()
            .filter_map(|p| Some((text(field(p, "name"))?, text(field(p, "value")).unwrap_or_default())))
            .collect(),
        Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), text(Some(v)).unwrap_or_default())).collect(),
        _ => Vec::new(),
    };
    let init_process = flag(field(definition, "initProcessEnabled"))
        || field(definition, "linuxParameters").is_some_and(|l| flag(field(l, "initProcessEnabled")));
    let load_balancer = field(definition, "albHealthCheck").map(|check| LoadBalancerCheck {
        path: text(field(check, "path")).and_then(first_word),
        port: number(field(check, "port")).and_then(|p| u16::try_from(p).ok()),
        matcher: text(field(check, "matcher")).and_then(first_word),
    });
    Container {
        // The compatibility sample numbers its definitions instead of naming them.
        name: text(field(definition, "name"))
            .or_else(|| text(field(definition, "id")).map(|id| format!("#{id}")))
            .unwrap_or_default(),
        image: text(field(definition, "image")),
        ports,
        health_check,
        command: launch_words(field(definition, "command")),
        entry_point: launch_words(field(definition, "entryPoint")),
        environment,
        user: text(field(definition, "user")),
        readonly_root: flag(field(definition, "readonlyRootFilesystem")),
        working_directory: text(field(definition, "workingDirectory")),
        init_process,
        load_balancer,
        sidecars: Vec::new(),
        task: None,
    }
}

/// `/ (Copilot default)` is `/`; `(module default)` is nothing.
fn first_word(text: String) -> Option<String> {
    let word = text.split_whitespace().next()?;
    (!word.starts_with('(')).then(|| word.to_owned())
}

/// An ALB target group matcher: `200`, `200-299`, `200,301,302`, `200-299,307`.
#[derive(Clone, Debug, PartialEq)]
pub struct Matcher(Vec<(u16, u16)>);

impl Matcher {
    pub fn parse(text: &str) -> Result<Matcher> {
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim) {
            let range = match part.split_once('-') {
                Some((low, high)) => (low.trim().parse::<u16>(), high.trim().parse::<u16>()),
                None => (part.parse::<u16>(), part.parse::<u16>()),
            };
            match range {
                (Ok(low), Ok(high)) if (200..=499).contains(&low) && low <= high && high <= 499 => {
                    ranges.push((low, high))
                }
                _ => bail!("invalid matcher {text:?}: use HTTP codes 200-499 such as 200, 200-299 or 200,302"),
            }
        }
        Ok(Matcher(ranges))
    }

    pub fn accepts(&self, status: u16) -> bool {
        self.0.iter().any(|(low, high)| (*low..=*high).contains(&status))
    }

    /// Whether a placeholder answering 200 passes.
    pub fn accepts_ok(&self) -> bool {
        self.accepts(200)
    }

    /// The one status to answer with where 200 is not accepted: the lowest accepted.
    pub fn lowest(&self) -> u16 {
        self.0.iter().map(|(low, _)| *low).min().unwrap_or(200)
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> =
            self.0.iter().map(|(l, h)| if l == h { l.to_string() } else { format!("{l}-{h}") }).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Container> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("td.json");
        std::fs::write(&path, text).unwrap();
        load(&path).unwrap()
    }

    #[test]
    fn every_shape_users_have() {
        let register = r#"{"family":"f","networkMode":"awsvpc","containerDefinitions":[{"name":"web","image":"1.dkr.ecr.eu-west-1.amazonaws.com/web:latest",
            "portMappings":[{"containerPort":8080,"protocol":"tcp"},{"containerPort":8125,"protocol":"udp"}],
            "healthCheck":{"command":["CMD-SHELL","curl -f http://localhost:8080/ || exit 1"],"interval":30},
            "environment":[{"name":"PORT","value":"8080"}],"linuxParameters":{"initProcessEnabled":true}}]}"#;
        let c = &parse(register)[0];
        assert_eq!((c.name.as_str(), c.ports.as_slice(), c.init_process), ("web", &[8080][..], true));
        assert_eq!(c.health_check.as_ref().unwrap().interval, Some(30));
        assert_eq!(c.environment, [("PORT".to_owned(), "8080".to_owned())]);

        let described = format!(r#"{{"taskDefinition":{}}}"#, register);
        assert_eq!(parse(&described).len(), 1);

        let with_sidecars = r#"{"containerDefinitions":[{"name":"app","image":"1.dkr.ecr.eu-west-1.amazonaws.com/app"},
            {"name":"log_router","image":"amazon/aws-for-fluent-bit","firelensConfiguration":{"type":"fluentbit"}},
            {"name":"datadog","image":"datadog/agent","portMappings":[{"containerPort":8126},{"containerPort":8125,"protocol":"udp"}]}]}"#;
        let task = parse(with_sidecars);
        let names = |c: &Container| c.sidecars.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&task[0]), ["log_router", "datadog"]);
        assert_eq!(names(&task[2]), ["app", "log_router"]);
        assert_eq!(task[0].sidecars[1].ports, [8126]);

        let cloudformation = r#"[{"Name":"api","Image":"x","PortMappings":[{"ContainerPort":"3000"}],"EntryPoint":["npm"],"Command":["start"]}]"#;
        let c = &parse(cloudformation)[0];
        assert_eq!(
            (c.ports.as_slice(), c.entry_point.as_deref(), c.command.as_deref()),
            (&[3000][..], Some(&["npm".to_owned()][..]), Some(&["start".to_owned()][..]))
        );

        // The console's export writes empty lists for settings never made.
        let exported = &parse(r#"[{"name":"bot","image":"x","entryPoint":[],"command":[]}]"#)[0];
        assert_eq!((exported.entry_point.as_deref(), exported.command.as_deref()), (None, None));

        let lines = "{\"image\":\"a\",\"portMappings\":[{\"containerPort\":1}],\"healthCheck\":{\"command\":[\"CMD\",\"x\"],\"startPeriod\":\"5 (written as start_period)\"},\"environment\":{\"A\":\"b\"},\"albHealthCheck\":{\"path\":\"/ (Copilot default)\",\"port\":\"traffic-port\",\"matcher\":\"(module default)\"}}\n\n{\"image\":\"b\"}\n";
        let both = parse(lines);
        assert_eq!(both.len(), 2);
        assert_eq!(both[0].health_check.as_ref().unwrap().start_period, Some(5));
        assert_eq!(both[0].environment, [("A".to_owned(), "b".to_owned())]);
        assert_eq!(
            both[0].load_balancer,
            Some(LoadBalancerCheck { path: Some("/".into()), port: None, matcher: None })
        );
        assert_eq!(both[1].name, "container-2");
    }

    #[test]
    fn not_a_task_definition_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        std::fs::write(&path, "{\"hello\": 1}").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("no container definitions"));
        std::fs::write(&path, "not json").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("is not ECS task definition JSON"));
    }

    #[test]
    fn names_unique_in_the_run() {
        let c = |task: Option<&str>, name: &str| Container {
            name: name.into(),
            task: task.map(str::to_owned),
            ..Default::default()
        };
        let all = [
            c(Some("Api"), "web"),
            c(Some("Admin"), "web"),
            c(Some("Api"), "worker"),
            c(None, "solo"),
            c(Some("X"), "dup"),
            c(Some("X"), "dup"),
        ];
        assert_eq!(unique_names(&all), ["Api/web", "Admin/web", "worker", "solo", "X/dup (1)", "X/dup (2)"]);
    }

    #[test]
    fn matchers() {
        let m = Matcher::parse("200-299,307").unwrap();
        assert!(m.accepts(204) && m.accepts(307) && !m.accepts(302) && m.accepts_ok());
        let only = Matcher::parse("302").unwrap();
        assert!(!only.accepts_ok() && only.lowest() == 302);
        assert_eq!(Matcher::parse("200,301,302").unwrap().to_string(), "200,301,302");
        for bad in ["", "ok", "100", "600", "299-200"] {
            assert!(Matcher::parse(bad).is_err(), "{bad}");
        }
    }
}
