//! What `--from` names, as one list of containers: stack files (a CloudFormation template, a CDK
//! `cdk.out`, a Terraform plan, task definition JSON), a stack CloudFormation has deployed or is
//! deploying (`stack:NAME`), or the services of an ECS cluster (`ecs:CLUSTER[/SERVICE,...]`).

use std::path::PathBuf;

use anyhow::Result;

#[cfg(feature = "stacks")]
use crate::clients::aws;
use crate::clients::aws::AwsArgs;
use crate::sources::stack::{self, Found};
#[cfg(feature = "stacks")]
use crate::sources::{cluster, deployed};
use crate::base::Usage;
pub use crate::base::service::Service;

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
                anyhow::bail!(Usage(format!("--from {value:?}: name the cluster, e.g. --from ecs:my-cluster or ecs:my-cluster/api,web")));
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

/// Whether any of `values` names what AWS holds (`stack:`, `ecs:`) rather than a file.
pub fn names_aws(values: &[String]) -> bool {
    parse(values).is_ok_and(|sources| sources.iter().any(|s| !matches!(s, Source::Files(_))))
}

/// The containers every source names, and the ECS services among them (for `--wait`).
#[derive(Default)]
pub struct Loaded {
    pub found: Vec<Found>,
    pub services: Vec<Service>,
}

/// Reads every source. Files need nothing but themselves; a stack or cluster is read in the first
/// target's account and region. Bad input (a missing stack or cluster, nothing in ECR) is a usage
/// error: one line, exit 2, nothing changed.
pub async fn load(values: &[String], aws_args: &AwsArgs) -> Result<Loaded> {
    load_waiting(values, aws_args, None).await
}

/// `load`, but a stack that is not there yet, or has not created its repositories yet, is waited
/// for, at most `wait` (`publish --wait` beside a `cdk deploy` that has just begun).
#[cfg_attr(not(feature = "stacks"), allow(unused_variables))]
pub async fn load_waiting(values: &[String], aws_args: &AwsArgs, wait: Option<std::time::Duration>) -> Result<Loaded> {
    let sources = parse(values)?;
    let mut loaded = Loaded::default();
    if sources.is_empty() {
        return Ok(loaded);
    }
    let context = stack::Context::new(aws_args.first_region());
    #[cfg(feature = "stacks")]
    let mut config = None;
    for source in &sources {
        match source {
            Source::Files(path) => {
                loaded.found.extend(stack::discover(path, &context).map_err(|e| Usage(format!("--from {}: {e:#}", path.display())))?);
            }
            #[cfg(feature = "stacks")]
            Source::Stack(name) => {
                let config = connected(&mut config, aws_args).await?;
                let stack = deployed::load(name, config, wait).await?;
                eprintln!("stack {name}: {} ({} container(s), {} service(s))", stack.status, stack.found.len(), stack.services.len());
                loaded.found.extend(stack.found);
                loaded.services.extend(stack.services);
            }
            #[cfg(feature = "stacks")]
            Source::Cluster { cluster, services } => {
                let config = connected(&mut config, aws_args).await?;
                let (found, services) = cluster::load(cluster, services, config).await?;
                loaded.found.extend(found);
                loaded.services.extend(services);
            }
            // `main` runs the build that has them first (`stacks::ensure`); this is a binary run
            // directly, not through cargo.
            #[cfg(not(feature = "stacks"))]
            other => anyhow::bail!(Usage(format!("--from {}: this xtask was built without the stack readers: run it as `cargo xtask`", other.label()))),
        }
    }
    stack::check_any_ecr(&loaded.found, &sources.iter().map(Source::label).collect::<Vec<_>>())?;
    Ok(loaded)
}

/// The first target's AWS configuration, connected once.
#[cfg(feature = "stacks")]
async fn connected<'a>(config: &'a mut Option<aws_config::SdkConfig>, aws_args: &AwsArgs) -> Result<&'a aws_config::SdkConfig> {
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

/// The repositories `--from` names for status and teardown; what is left alone is said on stderr.
pub async fn repositories(values: &[String], aws_args: &AwsArgs, names: &mut Vec<Named>) -> Result<()> {
    for found in load(values, aws_args).await?.found {
        let Some(repository) = found.repository() else {
            eprintln!("{}", found.left_alone().unwrap_or_default());
            continue;
        };
        let tag = match crate::sources::taskdef::image_tag(&found.image) {
            crate::sources::taskdef::TagRef::Tag(tag) => Some(tag),
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_by_prefix() {
        let parsed = parse(&["stack:Shop".into(), "ecs:prod/api, web".into(), "ecs:prod".into(), "cdk.out".into()]).unwrap();
        assert_eq!(parsed[0], Source::Stack("Shop".into()));
        assert_eq!(parsed[1], Source::Cluster { cluster: "prod".into(), services: vec!["api".into(), "web".into()] });
        assert_eq!(parsed[2], Source::Cluster { cluster: "prod".into(), services: vec![] });
        assert_eq!(parsed[3], Source::Files("cdk.out".into()));
        for bad in ["stack:", "ecs:", "ecs:/api"] {
            assert!(parse(&[bad.to_owned()]).unwrap_err().downcast_ref::<Usage>().is_some(), "{bad}");
        }
    }
}
