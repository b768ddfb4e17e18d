//! `cargo xtask image`: build the placeholder in-process for each platform, prove each healthy,
//! and load it into the Docker engine (or write an OCI layout with `--oci-dir`, no engine needed).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::base::platform;
use crate::clients::engine;
use crate::image::oci::{self, ImageSet, Recipe};
use crate::image::{self, Plan};
use crate::proof::{self, smoke::Proof};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Platforms to build, comma-separated.
    #[arg(long, default_value = "linux/amd64,linux/arm64")]
    pub platform: String,
    /// Image name; each platform's image is tagged NAME:ARCH (or NAME:TAG-ARCH).
    #[arg(long, default_value = "ecs-minimal-container")]
    pub tag: String,
    /// Skip proving each image healthy.
    #[arg(long)]
    pub no_smoke: bool,
    /// The pages to serve [default: the repository's public_html/].
    #[arg(long, value_name = "DIR")]
    pub public_html: Option<PathBuf>,
    /// Write an OCI image layout here (index tagged `latest`) instead of loading into the engine.
    #[arg(long, value_name = "DIR")]
    pub oci_dir: Option<PathBuf>,
}

pub async fn run(args: Args) -> Result<()> {
    let plan = Plan::new(&args.platform, &args.tag, args.public_html.clone())?;
    // Loading needs the engine: find out before building that there is none.
    let engine = match &args.oci_dir {
        Some(_) => None,
        None => Some(engine::connect().await.context("--oci-dir DIR writes the image without an engine")?),
    };
    let started = Instant::now();
    let sources = image::sources(&plan)?;
    let set = oci::build(&sources, &Recipe::default())?;
    eprintln!(
        "built {} in {:.2} s: index {}",
        platform::names(&plan.platforms),
        started.elapsed().as_secs_f64(),
        set.index.digest
    );
    match (&args.oci_dir, &engine) {
        (Some(dir), _) => {
            oci::write_layout(&set, dir, "latest")?;
            eprintln!("wrote an OCI image layout to {} (skopeo copy oci:{}:latest ...)", dir.display(), dir.display());
        }
        (None, Some(engine)) => proof::load(engine, &set, &plan).await?,
        (None, None) => unreachable!("an engine was required above"),
    }
    let proofs = if args.no_smoke { Vec::new() } else { proof::prove(&set, engine.as_ref()).await? };
    print_summary(&set, &proofs, &plan, engine.is_some());
    Ok(())
}

fn print_summary(set: &ImageSet, proofs: &[Proof], plan: &Plan, loaded: bool) {
    println!("{:<13} {:<20} {:>10} {:>12}  {:<38}  PROOF", "PLATFORM", "IMAGE ID", "SIZE", "COMPRESSED", "TAG");
    for image in &set.images {
        let proof = proofs
            .iter()
            .find(|p| p.platform == image.platform)
            .map_or("not run (--no-smoke)".to_owned(), Proof::describe);
        println!(
            "{:<13} {:<20} {:>10} {:>12}  {:<38}  {proof}",
            image.platform.docker(),
            &image.config.digest[..19],
            kib(image.layer_tar.len() as u64),
            kib(ImageSet::compressed_size(image)),
            if loaded { plan.tag_for(image.platform) } else { "-".to_owned() },
        );
    }
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}
