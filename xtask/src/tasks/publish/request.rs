//! What was asked: publish's flags, checked before anything is read or contacted, as the settings
//! every later stage reads; and what to read beyond the files given (`asked`).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Result, bail};

use super::{Args, EncryptionArg};
use crate::base::Usage;
use crate::base::image_ref;
use crate::base::platform::{self, Platform};
use crate::clients::aws::TargetSpec;
use crate::clients::ecr::{Encryption, Settings};
use crate::sources::containers::parse_containers;
use crate::sources::from::{self, InFile};
use crate::tasks::OutputFormat;

pub(super) struct Request {
    pub(super) settings: Settings,
    pub(super) platforms: Vec<Platform>,
    /// Immutable tags `--fill-immutable` names.
    pub(super) fill_immutable: Vec<String>,
    /// Every (profile, region) target; the first is `--replicate`'s source.
    pub(super) specs: Vec<TargetSpec>,
    pub(super) force: bool,
    pub(super) dry_run: bool,
    pub(super) no_smoke: bool,
    pub(super) replicate: bool,
    /// `--wait`, for this long.
    pub(super) wait: Option<Duration>,
    pub(super) concurrency: usize,
    pub(super) output: OutputFormat,
}

impl Request {
    /// Bad input here is one line and exit 2, before anything is read.
    pub(super) fn new(args: &Args) -> Result<Request> {
        let platforms = platform::parse_list(&args.platform).map_err(|e| Usage(e.to_string()))?;
        let encryption = match (args.encryption, &args.kms_key) {
            (EncryptionArg::Aes256, Some(_)) => bail!(Usage("--kms-key needs --encryption kms, not aes256".into())),
            (EncryptionArg::Aes256, None) => Encryption::Aes256,
            (EncryptionArg::Kms, key) => Encryption::Kms(key.clone()),
        };
        args.aws.check()?;
        let specs = args.aws.specs()?;
        if args.replicate && specs.len() < 2 {
            bail!(Usage(
                "--replicate needs at least two targets: the first is the source, e.g. --region eu-west-1,us-east-1"
                    .into()
            ));
        }
        let fill_immutable = args
            .fill_immutable
            .iter()
            .flat_map(|t| t.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Request {
            settings: Settings { encryption, scan_on_push: args.scan_on_push, keep: args.keep },
            platforms,
            fill_immutable,
            specs,
            force: args.force,
            dry_run: args.dry_run,
            no_smoke: args.no_smoke,
            replicate: args.replicate,
            wait: args.wait.then_some(args.wait_timeout),
            concurrency: usize::from(args.concurrency),
            output: args.output,
        })
    }
}

/// What publish reads beyond the files it is given: `--from`, registered task definitions, target
/// groups, and the registered definitions that pull the `--containers` repositories (unless
/// `--no-lookup`, or a definition given already names the repository: `files`, read already).
pub(super) fn asked<'a>(args: &'a Args, files: &[InFile]) -> Result<from::Asked<'a>> {
    let registered = from::registered(&args.task_definitions);
    let mut lookup = Vec::new();
    // Each account registers its own definitions: what one target's say is no guide to another's.
    let one_target = args.aws.specs().is_ok_and(|specs| specs.len() == 1);
    if let Some(list) = args.containers.as_deref().filter(|_| !args.no_lookup && one_target) {
        let in_files: BTreeSet<String> =
            files.iter().filter_map(|f| f.container.image.as_deref().and_then(image_ref::ecr_repository)).collect();
        lookup = parse_containers(list)?.into_iter().filter(|name| !in_files.contains(name)).collect();
    }
    Ok(from::Asked { from: &args.from, registered, target_groups: &args.target_groups, lookup })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(line: &[&str]) -> Args {
        Cli::try_parse_from(std::iter::once("publish").chain(line.iter().copied())).expect("flags that parse").args
    }

    #[test]
    fn what_was_asked_is_checked_before_anything_is_read() {
        let request =
            Request::new(&args(&["--containers", "a", "--fill-immutable", "v1, latest", "--concurrency", "3"]))
                .unwrap();
        assert_eq!(request.fill_immutable, ["v1", "latest"]);
        assert_eq!((request.concurrency, request.platforms.len(), request.wait), (3, 2, None));
        for bad in [
            &["--encryption", "aes256", "--kms-key", "arn:aws:kms:eu-west-1:1:key/k"][..],
            &["--replicate", "--region", "eu-west-1"],
            &["--platform", "linux/s390x"],
            &["--region", "Europe"],
        ] {
            let error = Request::new(&args(bad)).err().unwrap_or_else(|| panic!("{bad:?} was taken"));
            assert!(error.downcast_ref::<Usage>().is_some(), "{bad:?}: {error}");
        }
    }
}
