//! `--from PATH`: the ECS containers of a stack the user already wrote (a CloudFormation template
//! in JSON or YAML, a CDK `cdk.out` directory, a `terraform show -json` plan, or ECS task
//! definition JSON), each with the ECR repository its image names and the target group that
//! checks it. Images are resolved as far as the file allows (CloudFormation's intrinsic functions
//! over the pseudo parameters and parameter defaults); what cannot be resolved is listed with
//! where it is and why, never guessed.

mod cloudformation;
mod report;
mod terraform;
mod yaml;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::base::Usage;
use crate::sources::taskdef::{self, Container, Matcher};
use cloudformation::classify;
pub use cloudformation::{Deployment, classify_image, deployed};
use cloudformation::{Passed, Stack, Unknowns, nested_files};
pub use report::{print_table, to_json};
use terraform::terraform;
pub use yaml::yaml;

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
            Kind::Other => Some(format!(
                "{what} uses {}: {}, left alone",
                self.image,
                crate::base::image_ref::not_ours(&self.image)
            )),
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
        bail!(Usage(format!(
            "no ECR image resolved in {}: {}",
            sources.join(", "),
            if listed.is_empty() { "no containers".to_owned() } else { listed.join("; ") }
        )));
    }
    Ok(())
}

/// `publish --from --dry-run`: what was found, one row a container, then what is left alone and why.
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
        Some(d) if d.get("planned_values").is_some() || d.get("terraform_version").is_some() => {
            terraform(&file, &d, &mut created)?
        }
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
        bail!(
            "{} holds no *.template.json: give a cdk.out directory after `cdk synth`, or a template file",
            dir.display()
        );
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
    let children: HashSet<PathBuf> = templates
        .iter()
        .flat_map(|(path, document)| nested_files(document).map(|file| path.with_file_name(file)))
        .collect();
    let mut queue: std::collections::VecDeque<usize> =
        (0..templates.len()).filter(|&i| !children.contains(&templates[i].0)).collect();
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
pub(super) struct Created(BTreeMap<String, String>);

impl Created {
    pub(super) fn cloudformation(&mut self, file: &str, document: &Value, context: &Context) {
        let stack = Stack { file: file.to_owned(), document, context, parameters: HashMap::new(), deployment: None };
        for (id, resource) in stack.resources() {
            if resource["Type"] == "AWS::ECR::Repository"
                && let Some(name) = stack.repository_name(resource)
            {
                self.0.insert(name, format!("{file}: Resources.{id}"));
            }
        }
    }

    pub(super) fn mark(&self, found: Vec<Found>) -> Vec<Found> {
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

/// Tells each container of one task definition about the others (with images as far as they resolve).
pub(super) fn link_task(task: &mut [Found]) {
    let mut containers: Vec<Container> =
        task.iter().map(|f| Container { image: Some(f.image.clone()), ..f.container.clone() }).collect();
    taskdef::link(&mut containers);
    for (found, linked) in task.iter_mut().zip(containers) {
        found.container.sidecars = linked.sidecars;
    }
}

#[cfg(test)]
mod tests {
    use super::cloudformation::Eval;
    use super::terraform::unindexed;
    use super::*;
    use crate::sources::taskdef::LoadBalancerCheck;

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
        assert_eq!(
            f.container.load_balancer,
            Some(LoadBalancerCheck { path: Some(path.into()), port: Some(port), matcher: Some(matcher.into()) })
        );
        f
    }

    /// Evaluates one expression (as YAML) against a template of parameters and resources.
    fn evaluate(template: &str, expression: &str, context: &Context) -> (String, Kind) {
        let document = yaml(template).unwrap();
        let stack =
            Stack { file: "t".into(), document: &document, context, parameters: HashMap::new(), deployment: None };
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
            (
                "!Sub '${AWS::AccountId}.dkr.ecr.${AWS::Region}.amazonaws.com/${Name}:latest'",
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/web:latest",
                Kind::Ecr("web".into()),
            ),
            (
                "!Sub ['${A}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/${R}', { A: '111111111111', R: !Ref Name }]",
                "111111111111.dkr.ecr.eu-west-1.amazonaws.com/web",
                Kind::Ecr("web".into()),
            ),
            (
                "!Join ['', [!Ref 'AWS::AccountId', '.dkr.ecr.eu-west-1.amazonaws.com/', !FindInMap [Repos, !Ref 'AWS::Region', api]]]",
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/api",
                Kind::Ecr("team/api".into()),
            ),
            (
                "!Sub '${Named.RepositoryUri}:latest'",
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/web-jobs:latest",
                Kind::Ecr("web-jobs".into()),
            ),
            (
                "!Sub '${AWS::AccountId}.dkr.ecr.${AWS::Region}.amazonaws.com/app:${Tag}'",
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:${Tag}",
                Kind::Ecr("app".into()),
            ),
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
        assert_eq!(
            (image.as_str(), kind),
            ("${AWS::AccountId}.dkr.ecr.${AWS::Region}.amazonaws.com/web-jobs:latest", Kind::Ecr("web-jobs".into()))
        );

        let unresolved: &[(&str, &str)] = &[
            ("!ImportValue SharedRepoUri", "Fn::ImportValue SharedRepoUri: another stack's export"),
            (
                "!Sub '${AWS::AccountId}.dkr.ecr.${AWS::Region}.amazonaws.com/${Shared}:latest'",
                "parameter Shared has no Default",
            ),
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
            + &(b'b'..=b'z')
                .map(|c| {
                    format!(
                        "{}: &{} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n",
                        c as char,
                        c as char,
                        p = (c - 1) as char
                    )
                })
                .collect::<String>();
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
        assert_eq!(
            api.container.health_check.as_ref().unwrap().command,
            ["CMD-SHELL", "curl -f http://localhost:8080/health || exit 1"]
        );
        assert!(
            api.location.ends_with(
                "FromCdkStack.template.json: Resources.ApiTaskDef8B6D2F71.Properties.ContainerDefinitions[0].Image"
            ),
            "{}",
            api.location
        );
        assert_eq!(by_name(&found, "proxy").kind, Kind::Other);
        assert_eq!(by_name(&found, "proxy").image, "nginx");

        let worker = by_name(&found, "worker");
        assert_eq!(worker.kind, Kind::Ecr("from-cdk-worker".into()));
        assert!(worker.location.contains(".nested.template.json"), "{}", worker.location);
        assert_eq!(
            (worker.container.entry_point.as_deref(), worker.container.init_process),
            (Some(&["node".to_owned(), "worker.js".to_owned()][..]), true)
        );

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
        assert_eq!(
            app.location,
            format!(
                "{STACKS}/terraform-plan.json: module.web.aws_ecs_task_definition.app.container_definitions[0].image"
            )
        );
        assert_eq!(by_name(&found, "datadog-agent").kind, Kind::Other);
        let pending = by_name(&found, "aws_ecs_task_definition.migrate");
        assert!(
            matches!(&pending.kind, Kind::Unresolved(why) if why.contains("known only after apply") && why.contains("aws_ecr_repository.migrate.repository_url") && why.contains("the plan creates repository from-tf-migrate itself")),
            "{pending:?}"
        );
        assert_eq!(found.len(), 3, "{found:#?}");
    }

    #[test]
    fn what_cannot_be_resolved_is_listed_with_where_and_why() {
        let found = found("unresolvable.yaml");
        assert_eq!(found.len(), 2);
        let imported = by_name(&found, "imported");
        assert!(
            matches!(&imported.kind, Kind::Unresolved(why) if why.contains("Fn::ImportValue SharedApiRepositoryUri")),
            "{imported:?}"
        );
        assert!(
            imported
                .location
                .ends_with("unresolvable.yaml: Resources.TaskDefinition.Properties.ContainerDefinitions[0].Image"),
            "{}",
            imported.location
        );
        let given = by_name(&found, "given");
        assert!(
            matches!(&given.kind, Kind::Unresolved(why) if why.contains("parameter RepositoryName has no Default")),
            "{given:?}"
        );
        assert_eq!(given.image, "${AWS::AccountId}.dkr.ecr.eu-west-1.amazonaws.com/${RepositoryName}:latest");

        let error = load(&[Path::new(STACKS).join("unresolvable.yaml")], &context()).unwrap_err();
        assert!(error.downcast_ref::<Usage>().is_some());
        assert!(
            error.to_string().contains("no ECR image resolved") && error.to_string().contains("imported"),
            "{error}"
        );
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
