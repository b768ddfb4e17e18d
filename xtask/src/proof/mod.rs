//! Proving an image healthy before anything is pushed: loaded into the Docker engine and run
//! under its own HEALTHCHECK, or run straight from its layer (`smoke.rs`); and proofs kept for
//! the same digest between runs (`kept.rs`). May use `base`, `image` and `clients::engine`.

pub mod kept;
pub mod smoke;

use anyhow::{Result, bail};
use bollard::query_parameters::ImportImageOptionsBuilder;
use futures_util::TryStreamExt;

use crate::base::progress::Progress;
use crate::clients::engine::{self, Engine};
use crate::image::Plan;
use crate::image::oci::{self, ImageSet, PlatformImage};
use smoke::Proof;

/// Loads each platform's image into the engine under the plan's tag, so `docker run` works.
pub async fn load(engine: &Engine, set: &ImageSet, plan: &Plan) -> Result<()> {
    for image in &set.images {
        load_one(engine, image, &plan.tag_for(image.platform)).await?;
    }
    Ok(())
}

async fn load_one(engine: &Engine, image: &PlatformImage, tag: &str) -> Result<()> {
    let archive = oci::docker_archive(image, tag)?;
    engine
        .docker
        .import_image(ImportImageOptionsBuilder::new().quiet(true).build(), bollard::body_full(archive.into()), None)
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| engine::call_failed(&format!("loading the {} image into the engine", image.platform), e))?;
    // By its ID, not the tag: another run may load another recipe's image under the same tag at
    // the same moment, and what is proven must be this very image.
    let id = &image.config.digest;
    let loaded = engine
        .docker
        .inspect_image(id)
        .await
        .map_err(|e| engine::call_failed(&format!("inspecting {tag} ({id})"), e))?;
    if loaded.id.as_deref() != Some(id.as_str()) {
        bail!("the engine gave {tag} the ID {:?}, expected {id}", loaded.id);
    }
    // An image this tag pointed at before stays as it is: another run may be using it.
    Ok(())
}

/// Proves every platform's image healthy: through the engine's own HEALTHCHECK when there is an
/// engine (the images must be loaded), else by running the server from the built layer.
pub async fn prove(set: &ImageSet, engine: Option<&Engine>) -> Result<Vec<Proof>> {
    let progress = Progress::new();
    progress.working(format!("proving {} image(s) healthy", set.images.len()));
    let proofs = futures_util::future::try_join_all(set.images.iter().map(|image| async {
        let proof = match engine {
            Some(engine) => smoke::in_engine(engine, &image.config.digest, image.platform).await?,
            None => smoke::direct(image).await?,
        };
        progress.done(format!("{}: {}", image.platform, proof.describe()));
        Ok::<_, anyhow::Error>(proof)
    }))
    .await;
    progress.finish();
    proofs
}

/// Smoke-tests the images through the engine when one answers, else straight from the layers. A
/// set an earlier run proved (the same index digest) is not run again; each new proof is kept.
pub async fn prove_all(sets: Vec<&ImageSet>, plan: &Plan) -> Result<Vec<Proof>> {
    let mut proofs = Vec::new();
    let mut unproven = Vec::new();
    for set in sets {
        match kept::earlier(set) {
            Some(earlier) => {
                eprintln!("{}: proven healthy by an earlier run for this same digest; not run again", set.index.digest);
                proofs.extend(earlier);
            }
            None => unproven.push(set),
        }
    }
    if unproven.is_empty() {
        return Ok(proofs);
    }
    let engine = match engine::optional().await {
        Ok(engine) => Some(engine),
        Err(why) => {
            eprintln!("no Docker engine ({why}); proving the image by running it straight from its layers");
            None
        }
    };
    for set in unproven {
        if let Some(engine) = &engine {
            load(engine, set, plan).await?;
        }
        let proven = prove(set, engine.as_ref()).await?;
        kept::keep(set, &proven);
        proofs.extend(proven);
    }
    Ok(proofs)
}
