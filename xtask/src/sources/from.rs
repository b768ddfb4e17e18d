//! What `--from` names, as one list of containers: stack files (a CloudFormation template, a CDK
//! `cdk.out`, a Terraform plan, task definition JSON), a stack CloudFormation has deployed or is
//! deploying (`stack:NAME`), or the services of an ECS cluster (`ecs:CLUSTER[/SERVICE,...]`).

use std::path::PathBuf;

use anyhow::Result;

use crate::base::Usage;
pub use crate::base::service::Service;
use crate::clients::aws;
use crate::clients::aws::AwsArgs;
use crate::sources::balancer::{self, Group};
use crate::sources::stack::{self, Found};
use crate::sources::taskdef::{self, Container};
use crate::sources::{cluster, deployed, lookup, registered};

#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Files(PathBuf),
    Stack(String),
    Cluster { cluster: String, services: Vec<String> },
}

impl Source {
    fn label(&self) -> String {
        match self {
            Source::Files(path) => path.display().to_string(),
            Source::Stack(name) => format!("stack:{name}"),
            Source::Cluster { cluster, services } if services.is_empty() => format!("ecs:{cluster}"),
            Source::Cluster { cluster, services } => format!("ecs:{cluster}/{}", services.join(",")),
        }
    }
}

/// `stack:NAME` and `ecs:CLUSTER[/SERVICE,...]` name what AWS holds; anything else is a path (a
/// file of that very name wins).
pub fn parse(values: &[String]) -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    for value in values {
        let path = PathBuf::from(value);
        let source = if path.exists() {
            Source::Files(path)
        } else if let Some(name) = value.strip_prefix("stack:") {
            if name.trim().is_empty() {
                anyhow::bail!(Usage(format!("--from {value:?}: name the stack, e.g. --from stack:MyServiceStack")));
            }
            Source::Stack(name.trim().to_owned())
        } else if let Some(rest) = value.strip_prefix("ecs:") {
            let (cluster, services) = rest.split_once('/').unwrap_or((rest, ""));
            if cluster.trim().is_empty() {
                anyhow::bail!(Usage(format!(
                    "--from {value:?}: name the cluster, e.g. --from ecs:my-cluster or ecs:my-cluster/api,web"
                )));
            }
            let services = services.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
            Source::Cluster { cluster: cluster.trim().to_owned(), services }
        } else {
            Source::Files(path)
        };
        sources.push(source);
    }
    Ok(sources)
}

/// Whether a `--task-definition` value names a registered task definition rather than a file: an
/// ECS task definition ARN, or `FAMILY` / `FAMILY:REVISION` (ECS's family names: letters, digits,
/// `-` and `_`) where no file of that name exists.
pub fn is_registered(value: &str) -> bool {
    if std::path::Path::new(value).exists() {
        return false;
    }
    if value.starts_with("arn:") {
        return value.contains(":task-definition/");
    }
    let (family, revision) = value.split_once(':').unwrap_or((value, "1"));
    let family_ok = !family.is_empty()
        && family.len() <= 255
        && family.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    family_ok && !revision.is_empty() && revision.bytes().all(|b| b.is_ascii_digit())
}

/// The `--task-definition` values that name registered task definitions, not files.
pub fn registered(values: &[PathBuf]) -> Vec<String> {
    values.iter().map(|t| t.to_string_lossy().into_owned()).filter(|t| is_registered(t)).collect()
}

/// A container of a `--task-definition` file, and whether its target group checks over HTTPS.
pub struct InFile {
    pub file: PathBuf,
    pub container: Container,
    pub https: bool,
}

/// Every container of the `--task-definition` values that are files (registered ones are read
/// from AWS with the other sources). A file that is no task definition is bad input.
pub fn definition_files(values: &[PathBuf]) -> Result<Vec<InFile>> {
    let mut files = Vec::new();
    for file in values.iter().filter(|f| !is_registered(&f.to_string_lossy())) {
        for container in taskdef::load(file).map_err(|e| Usage(format!("{e:#}")))? {
            files.push(InFile { file: file.clone(), container, https: false });
        }
    }
    Ok(files)
}

/// Puts each `--target-group` check on the container it checks, whichever definition (a file's
/// or a source's) that is in.
pub fn attach_groups(files: &mut [InFile], found: &mut [Found], groups: &[(Option<String>, Group)]) -> Result<()> {
    balancer::attach(
        files
            .iter_mut()
            .map(|f| (&mut f.container, &mut f.https))
            .chain(found.iter_mut().map(|f| (&mut f.container, &mut f.https))),
        groups,
    )
}

/// Whether any of `values` names what AWS holds (`stack:`, `ecs:`) rather than a file.
pub fn names_aws(values: &[String]) -> bool {
    parse(values).is_ok_and(|sources| sources.iter().any(|s| !matches!(s, Source::Files(_))))
}

/// The containers every source names, and the ECS services among them (for `--wait`).
#[derive(Default)]
pub struct Loaded {
    pub found: Vec<Found>,
    pub services: Vec<Service>,
    /// `--target-group` checks, for the task definition files read elsewhere.
    pub groups: Vec<(Option<String>, Group)>,
    /// Repositories `--containers` names that no registered task definition was found to pull, and
    /// why, when publish looked.
    pub not_found: Vec<(String, String)>,
}

/// What to read beyond `--from`: registered task definitions, target groups, and repositories to
/// look for in the registered task definitions (`--containers` names).
#[derive(Default)]
pub struct Asked<'a> {
    pub from: &'a [String],
    /// `--task-definition` values naming registered task definitions, not files.
    pub registered: Vec<String>,
    pub target_groups: &'a [String],
    pub lookup: Vec<String>,
}

impl Asked<'_> {
    /// Whether any of it is read from AWS through the stack readers.
    pub fn names_aws(&self) -> bool {
        names_aws(self.from) || !self.registered.is_empty() || !self.target_groups.is_empty() || !self.lookup.is_empty()
    }
}

/// Reads every source. Files need nothing but themselves; a stack or cluster is read in the first
/// target's account and region. Bad input (a missing stack or cluster, nothing in ECR) is a usage
/// error: one line, exit 2, nothing changed.
pub async fn load(values: &[String], aws_args: &AwsArgs) -> Result<Loaded> {
    load_waiting(values, aws_args, None).await
}

/// `load`, but a stack that is not there yet, or has not created its repositories yet, is waited
/// for, at most `wait` (`publish --wait` beside a `cdk deploy` that has just begun).
pub async fn load_waiting(values: &[String], aws_args: &AwsArgs, wait: Option<std::time::Duration>) -> Result<Loaded> {
    load_asked(&Asked { from: values, ..Default::default() }, aws_args, wait).await
}

/// `load_waiting`, with registered task definitions, target groups and the lookup.
pub async fn load_asked(asked: &Asked<'_>, aws_args: &AwsArgs, wait: Option<std::time::Duration>) -> Result<Loaded> {
    let sources = parse(asked.from)?;
    let mut loaded = Loaded::default();
    if sources.is_empty() && !asked.names_aws() {
        return Ok(loaded);
    }
    let context = stack::Context::new(aws_args.first_region());
    let mut config = None;
    for source in &sources {
        match source {
            Source::Files(path) => {
                loaded.found.extend(
                    stack::discover(path, &context).map_err(|e| Usage(format!("--from {}: {e:#}", path.display())))?,
                );
            }
            Source::Stack(name) => {
                let config = connected(&mut config, aws_args).await?;
                let stack = deployed::load(name, config, wait).await?;
                eprintln!(
                    "stack {name}: {} ({} container(s), {} service(s))",
                    stack.status,
                    stack.found.len(),
                    stack.services.len()
                );
                loaded.found.extend(stack.found);
                loaded.services.extend(stack.services);
            }
            Source::Cluster { cluster, services } => {
                let config = connected(&mut config, aws_args).await?;
                let (found, services) = cluster::load(cluster, services, config).await?;
                loaded.found.extend(found);
                loaded.services.extend(services);
            }
        }
    }
    for name in &asked.registered {
        let config = connected(&mut config, aws_args).await?;
        let found = registered::load(name, config).await?;
        eprintln!("task definition {name}: {} container(s), registered", found.len());
        loaded.found.extend(found);
    }
    if !asked.target_groups.is_empty() {
        let config = connected(&mut config, aws_args).await?;
        loaded.groups = registered::target_groups(asked.target_groups, config).await?;
    }
    // Names a definition given already covers need no lookup.
    let lookup: Vec<String> = asked
        .lookup
        .iter()
        .filter(|name| !loaded.found.iter().any(|f| f.repository() == Some(name.as_str())))
        .cloned()
        .collect();
    if !lookup.is_empty() {
        // Looking is a help, not a step: a target that cannot be reached is publish's to report.
        match connected(&mut config, aws_args).await {
            Ok(config) => look_up(&mut loaded, &lookup, config).await,
            Err(e) => loaded.not_found.extend(lookup.iter().map(|r| {
                (r.clone(), format!("could not look for a registered task definition that pulls it ({e:#})"))
            })),
        }
    }
    let mut labels: Vec<String> = sources.iter().map(Source::label).collect();
    labels.extend(asked.registered.iter().map(|name| format!("--task-definition {name}")));
    if !labels.is_empty() {
        stack::check_any_ecr(&loaded.found, &labels)?;
    }
    Ok(loaded)
}

/// `--containers NAME`: the registered task definitions that pull NAME, used as `--task-definition`
/// would use them, each named; where none does, or publish may not look, it says so in one line
/// with what was read and what was not.
async fn look_up(loaded: &mut Loaded, repositories: &[String], config: &aws_config::SdkConfig) {
    let lookup = lookup::pulling(repositories, config).await;
    let read = format!("in {:.1} s, {}", lookup.took.as_secs_f64(), lookup.read);
    for found in &lookup.found {
        eprintln!(
            "[{}] from the registered {}: its tag, ports and checks are baked in",
            found.repository().unwrap_or_default(),
            found.location
        );
    }
    for repository in repositories {
        if lookup.found.iter().any(|f| f.repository() == Some(repository.as_str())) {
            continue;
        }
        let why = match lookup.problems.as_slice() {
            [] => format!("no registered task definition that publish read pulls it ({read})"),
            problems => format!(
                "could not look for every registered task definition that pulls it ({}; {read})",
                problems.join("; ")
            ),
        };
        let why = format!("{why}; if one is registered, name it: --task-definition FAMILY");
        loaded.not_found.push((repository.clone(), why));
    }
    loaded.found.extend(lookup.found);
}

/// The first target's AWS configuration, connected once.
async fn connected<'a>(
    config: &'a mut Option<aws_config::SdkConfig>,
    aws_args: &AwsArgs,
) -> Result<&'a aws_config::SdkConfig> {
    if config.is_none() {
        let spec = aws_args.specs()?.into_iter().next().unwrap_or_default();
        *config = Some(aws::connect(&spec).await?.config);
    }
    Ok(config.as_ref().expect("connected above"))
}

/// A repository `--from` names, for status and teardown.
pub struct Named {
    pub repository: String,
    /// The deployed stack that owns it, where one does.
    pub owner: Option<String>,
    /// The tags the definitions name for it.
    pub tags: Vec<String>,
}

/// The repositories `--from` names for status and teardown, and the services among them; what is
/// left alone is said on stderr.
pub async fn repositories(values: &[String], aws_args: &AwsArgs, names: &mut Vec<Named>) -> Result<Vec<Service>> {
    let loaded = load(values, aws_args).await?;
    for found in loaded.found {
        let Some(repository) = found.repository() else {
            eprintln!("{}", found.left_alone().unwrap_or_default());
            continue;
        };
        let tag = match crate::base::image_ref::image_tag(&found.image) {
            crate::base::image_ref::TagRef::Tag(tag) => Some(tag),
            _ => None,
        };
        let index = match names.iter().position(|n| n.repository == repository) {
            Some(index) => index,
            None => {
                names.push(Named { repository: repository.to_owned(), owner: found.owner(), tags: Vec::new() });
                names.len() - 1
            }
        };
        if let Some(tag) = tag.filter(|t| !names[index].tags.contains(t)) {
            names[index].tags.push(tag);
        }
    }
    Ok(loaded.services)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_names_and_files() {
        for name in ["api", "api:3", "my_svc-task:12", "arn:aws:ecs:eu-west-1:123456789012:task-definition/api:3"] {
            assert!(is_registered(name), "{name}");
        }
        for name in ["taskdef.json", "./api", "api:", "api:v1", "arn:aws:ecs:eu-west-1:1:service/c/s", ""] {
            assert!(!is_registered(name), "{name}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api"), "{}").unwrap();
        assert!(!is_registered(dir.path().join("api").to_str().unwrap()));
    }

    #[test]
    fn sources_by_prefix() {
        let parsed =
            parse(&["stack:Shop".into(), "ecs:prod/api, web".into(), "ecs:prod".into(), "cdk.out".into()]).unwrap();
        assert_eq!(parsed[0], Source::Stack("Shop".into()));
        assert_eq!(parsed[1], Source::Cluster { cluster: "prod".into(), services: vec!["api".into(), "web".into()] });
        assert_eq!(parsed[2], Source::Cluster { cluster: "prod".into(), services: vec![] });
        assert_eq!(parsed[3], Source::Files("cdk.out".into()));
        for bad in ["stack:", "ecs:", "ecs:/api"] {
            assert!(parse(&[bad.to_owned()]).unwrap_err().downcast_ref::<Usage>().is_some(), "{bad}");
        }
    }
}
