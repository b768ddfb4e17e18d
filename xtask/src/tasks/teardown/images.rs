//! `cargo xtask teardown --images`: the placeholder's images out of repositories that keep living
//! (a stack's own, or one whose tags now hold real images; an immutable tag the pipeline is to
//! push), the repositories and every real image kept. An image any service can still start a task
//! from is never removed, whatever its tags say: ECS starts later tasks, scale-ups and rollbacks
//! from the digest each deployment resolved, so every digest a running task runs, every digest a
//! service revision that can still start tasks resolved (its current ones, what its current
//! deployment moves between, and the last successful one a rollback returns to), and every digest
//! a definition pins is kept. The services of every cluster in the region are read first; where
//! they, or a service's records, cannot be read, nothing of the repository is removed.

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

/// What the services use of `repository`: the digests they can start tasks from, the tags a
/// deployment still resolving will pull, and why nothing may go where that could not be read.
#[derive(Default)]
pub(super) struct InUse {
    digests: BTreeSet<String>,
    tags: BTreeSet<String>,
    by: Vec<String>,
    /// Services using the repository whose revisions could not be read, and why.
    unread: Vec<String>,
}

/// Every service in the target's region, or those `--from` named, as they stand.
pub(super) async fn standings(target: &aws::Target, named: &[Service]) -> Result<Vec<Standing>> {
    let ecs = aws_sdk_ecs::Client::new(&target.aws.config);
    let services = match named.is_empty() {
        true => services::everywhere(&ecs).await?,
        false => named.to_vec(),
    };
    Ok(services::read_with_records(&ecs, &services).await?.standings)
}

pub(super) fn in_use(standings: &[Standing], repository: &str) -> InUse {
    let mut used = InUse::default();
    let ours = |image: &str| image_ref::ecr_repository(image).as_deref() == Some(repository);
    // A service being deleted starts no task.
    for standing in standings.iter().filter(|s| s.status == "ACTIVE") {
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
        for (_, image) in standing.containers.iter().filter(|(_, image)| ours(image)) {
            uses = true;
            // A pinned digest is what every task of the definition pulls.
            if let image_ref::TagRef::Digest(digest) = image_ref::image_tag(image) {
                used.digests.insert(digest);
            }
        }
        match &standing.records {
            Ok(records) => {
                for revision in &records.revisions {
                    for (_, image, digest) in revision.images.iter().filter(|(_, image, _)| ours(image)) {
                        uses = true;
                        match digest {
                            Some(digest) => used.digests.insert(digest.clone()),
                            // Not resolved yet: the deployment will pull the tag.
                            None => used.tags.insert(tag_of(image)),
                        };
                    }
                }
            }
            Err(why) if uses => used.unread.push(format!("{}: {why}", standing.service.label())),
            Err(_) => {}
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
        } else if !used.unread.is_empty() {
            plan.keep.push(format!(
                "{}: what {} can start tasks from could not be read ({})",
                image.name,
                used.by.join(", "),
                used.unread.join("; ")
            ));
        } else if image.digests.iter().any(|d| used.digests.contains(d)) {
            plan.keep.push(format!(
                "{}: {} can start tasks from it (a running task, a service revision, a rollback's or a pinned digest)",
                image.name,
                used.by.join(", ")
            ));
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
