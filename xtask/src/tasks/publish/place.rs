//! Where one repository is written: the target (account and region) it is in, its ECR API and its
//! registry. Shared by the look (`look.rs`) and the writes (`push.rs`).

use crate::clients::aws;
use crate::clients::registry::Registry;

/// One repository's target.
pub(super) struct Place<'a> {
    pub(super) destination: usize,
    pub(super) ecr: &'a aws_sdk_ecr::Client,
    pub(super) registry: &'a Registry,
}

impl<'a> Place<'a> {
    /// The `destination`th of the reachable targets.
    pub(super) fn at(destinations: &'a [aws::Target], destination: usize) -> Place<'a> {
        let target = &destinations[destination];
        Place { destination, ecr: &target.aws.ecr, registry: &target.registry }
    }
}
