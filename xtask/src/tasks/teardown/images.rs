//! `cargo xtask teardown --images`: the placeholder's images out of repositories that keep living
//! (a stack's own, or one whose tags now hold real images; an immutable tag the pipeline is to
//! push), the repositories and every real image kept. An image a running task runs (its index or
//! any of its platforms' manifests), or a tag a service not running all its tasks names, is never
//! removed: the services of every cluster in the region are read first, and where they cannot be
//! read nothing is removed.

use std::collections::BTreeSet;

use anyhow::Result;

use crate::base::image_ref;
use crate::base::service::Service;
use crate::clients::aws;
use crate::clients::ecr;
use crate::clients::registry::Registry;
use crate::clients::services::{self, Standing};

use super::Held;

/// What teardown found for one repository: the placeholder images to remove, and what stays.
pub(super) struct Plan {
    pub(super) remove: Vec<Held>,
    /// What stays, and why.
    pub(super) keep: Vec<String>,
}

/// What the services use of `repository`: the digests their running tasks run, and the tags of
/// services not yet running all their tasks (a task they start must still pull it).
#[derive(Default)]
pub(super) struct InUse {
    digests: BTreeSet<String>,
    tags: BTreeSet<String>,
    by: Vec<String>,
}

/// Every service in the target's region, or those `--from` named, as they stand.
pub(super) async fn standings(target: &aws::Target, named: &[Service]) -> Result<Vec<Standing>> {
    let ecs = aws_sdk_ecs::Client::new(&target.aws.config);
    let services = match named.is_empty() {
        true => services::everywhere(&ecs).await?,
        false => named.to_vec(),
    };
    services::read(&ecs, &services).await
}

pub(super) fn in_use(standings: &[Standing], repository: &str) -> InUse {
    let mut used = InUse::default();
    let ours = |image: &str| image_ref::ecr_repository(image).as_deref() == Some(repository);
    for standing in standings {
        let mut uses = false;
        for task in &standing.tasks {
            for (_, image, digest) in task.containers.iter().filter(|(_, image, _)| ours(image)) {
                uses = true;
                match digest {
                    Some(digest) => {
                        used.digests.insert(digest.clone());
                    }
                    // No digest reported: what its tag holds is what it runs.
                    None => {
                        used.tags.insert(tag_of(image));
                    }
                }
            }
        }
        // Not every task running (or none, a service scaled to 0): a task it starts pulls the
        // definition's tag, at the digest its deployment resolved.
        if standing.running < standing.desired || standing.tasks.is_empty() {
            for (_, image) in standing.containers.iter().filter(|(_, image)| ours(image)) {
                uses = true;
                used.tags.insert(tag_of(image));
            }
        }
        if uses {
            used.by.push(standing.service.label());
        }
    }
    used
}

fn tag_of(image: &str) -> String {
    match image_ref::image_tag(image) {
        image_ref::TagRef::Tag(tag) | image_ref::TagRef::Unknown(tag) | image_ref::TagRef::Digest(tag) => tag,
    }
}

/// Splits what the repository holds into the placeholder images no service uses, and the rest.
pub(super) fn plan(held: Vec<Held>, used: &InUse) -> Plan {
    let mut plan = Plan { remove: Vec::new(), keep: Vec::new() };
    for image in held {
        if !image.placeholder {
            plan.keep.push(format!("{}: a real image", image.name));
        } else if image.digests.iter().any(|d| used.digests.contains(d)) {
            plan.keep.push(format!("{}: a running task of {} runs it", image.name, used.by.join(", ")));
        } else if image.tags.iter().any(|t| used.tags.contains(t)) {
            plan.keep.push(format!("{}: {} is still starting tasks that pull it", image.name, used.by.join(", ")));
        } else {
            plan.remove.push(image);
        }
    }
    plan
}

/// Removes each image: the index first (ECR refuses to delete a manifest an index names), then
/// its platforms' manifests, through the registry where it allows it and through ECR's API.
pub(super) async fn remove(
    ecr_client: &aws_sdk_ecr::Client,
    registry: &Registry,
    name: &str,
    images: &[Held],
) -> Result<()> {
    for image in images {
        for digest in &image.digests {
            registry.delete_manifest(name, digest).await?;
            ecr::delete_images(ecr_client, name, std::slice::from_ref(digest)).await?;
        }
    }
    Ok(())
}
