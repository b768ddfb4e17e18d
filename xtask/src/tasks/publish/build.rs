//! The images the plan's recipes need: the server for each platform (cargo is asked only when
//! what it reads changed), then each recipe's layers, configs, manifests and index, in-process.
//! Built while the targets are read (`look.rs`): neither waits for the other.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::plan::{Target, describe};
use crate::base::platform::{self, Platform};
use crate::image::oci::{self, ImageSet, Recipe};
use crate::image::{self, Plan};

/// Every recipe's image set, and where the time went.
pub(super) struct Built {
    pub(super) sets: BTreeMap<Recipe, ImageSet>,
    /// The server's build (cargo's check).
    pub(super) cargo: Duration,
    /// Layers, configs and manifests.
    pub(super) layers: Duration,
}

impl Built {
    /// The image set of `target`'s recipe.
    pub(super) fn of(&self, target: &Target) -> &ImageSet {
        &self.sets[&target.recipe]
    }

    /// The plain placeholder's set where any target has it, else any: what the report names.
    pub(super) fn headline(&self) -> &ImageSet {
        self.sets.get(&Recipe::default()).or_else(|| self.sets.values().next()).expect("at least one target")
    }

    /// Each recipe's digest, and the notes each target's definitions gave, on stderr.
    pub(super) fn say(&self, targets: &[Target], platforms: &[Platform]) {
        for target in targets {
            if target.recipe != Recipe::default() {
                eprintln!(
                    "[{}] its own placeholder {} ({})",
                    target.name,
                    self.of(target).index.digest,
                    describe(&target.recipe)
                );
            }
            for note in &target.notes {
                eprintln!("[{}] note: {note}", target.name);
            }
        }
        if let Some(set) = self.sets.get(&Recipe::default()) {
            eprintln!("placeholder {} for {}", set.index.digest, platform::names(platforms));
        }
    }
}

/// Builds each distinct recipe of `targets` once, on a blocking thread.
pub(super) async fn build(platforms: Vec<Platform>, targets: &[Target]) -> Result<Built> {
    let recipes: Vec<Recipe> = targets.iter().map(|t| t.recipe.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    tokio::task::spawn_blocking(move || -> Result<Built> {
        let started = Instant::now();
        let sources = image::sources(&Plan::project(platforms))?;
        let cargo = started.elapsed();
        let sets = recipes
            .into_iter()
            .map(|recipe| Ok((recipe.clone(), oci::build(&sources, &recipe)?)))
            .collect::<Result<_>>()?;
        Ok(Built { sets, cargo, layers: started.elapsed() - cargo })
    })
    .await
    .context("the image build stopped")?
}
