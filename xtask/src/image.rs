//! `cargo xtask image`: build the placeholder for each platform through the Docker engine, prove
//! each one healthy, and summarise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::build::{self, Built, Recipe};
use crate::engine::{self, Engine};
use crate::platform::{self, Platform};
use crate::progress::Progress;
use crate::{context, names, repo, smoke};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Platforms to build, comma-separated.
    #[arg(long, default_value = "linux/amd64,linux/arm64")]
    pub platform: String,
    /// Image name; each platform's image is tagged NAME:ARCH (or NAME:TAG-ARCH).
    #[arg(long, default_value = "ecs-minimal-container")]
    pub tag: String,
    /// Skip running each image until Docker's health check calls it healthy.
    #[arg(long)]
    pub no_smoke: bool,
    /// The pages to serve [default: the repository's public_html/].
    #[arg(long, value_name = "DIR")]
    pub public_html: Option<PathBuf>,
}

/// What a build should make, checked before anything is built.
pub struct Plan {
    pub platforms: Vec<Platform>,
    /// Each platform's image is tagged this plus its architecture: `NAME:` or `NAME:TAG-`.
    tag_prefix: String,
    pub public_html: PathBuf,
    pub smoke: bool,
}

impl Plan {
    pub fn from_args(args: &Args) -> Result<Plan> {
        let platforms = platform::parse_list(&args.platform)?;
        let (repository, tag) = match args.tag.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
            _ => (args.tag.as_str(), None),
        };
        names::check_repository(repository).context("--tag")?;
        if let Some(tag) = tag {
            names::check_tag(tag).context("--tag")?;
        }
        let public_html = args.public_html.clone().unwrap_or_else(|| repo::root().join("public_html"));
        if !public_html.is_dir() {
            bail!("--public-html {}: not a directory", public_html.display());
        }
        let tag_prefix = if tag.is_some() { format!("{}-", args.tag) } else { format!("{}:", args.tag) };
        Ok(Plan { platforms, tag_prefix, public_html, smoke: !args.no_smoke })
    }

    /// The project's own images, `ecs-minimal-container:ARCH`, from the repository's pages.
    pub fn project(platforms: Vec<Platform>, smoke: bool) -> Plan {
        Plan { platforms, tag_prefix: "ecs-minimal-container:".to_owned(), public_html: repo::root().join("public_html"), smoke }
    }

    pub fn tag_for(&self, platform: Platform) -> String {
        format!("{}{}", self.tag_prefix, platform.arch())
    }
}

/// One platform's image and what the smoke test found.
pub struct Proven {
    pub built: Built,
    /// `None` when not smoke-tested (skipped, or no emulation for the architecture).
    pub healthy_after: Option<Duration>,
}

pub async fn run(args: Args) -> Result<()> {
    let plan = Plan::from_args(&args)?;
    let engine = engine::connect().await?;
    let images = build_and_prove(&engine, &plan).await?;
    println!("{:<13} {:<20} {:>10} {:>12} {:>14}", "PLATFORM", "IMAGE ID", "SIZE", "COMPRESSED", "HEALTHY AFTER");
    for image in &images {
        let healthy = match image.healthy_after {
            Some(after) => format!("{:.2} s", after.as_secs_f64()),
            None => "not run".to_owned(),
        };
        println!(
            "{:<13} {:<20} {:>10} {:>12} {:>14}",
            image.built.platform.docker(),
            &image.built.id[..19],
            kib(image.built.size),
            kib(image.built.compressed),
            healthy
        );
    }
    Ok(())
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

/// Builds the server and one image per platform, smoke-testing each unless the plan says not to.
pub async fn build_and_prove(engine: &Engine, plan: &Plan) -> Result<Vec<Proven>> {
    check_rust_targets(&plan.platforms)?;
    let binaries = build_servers(&plan.platforms)?;
    let recipe = (repo::labels(), repo::source_date_epoch());
    let progress = Progress::new();
    progress.working(format!("building and proving {} image(s)", plan.platforms.len()));
    // Platforms are independent: build and smoke-test them side by side.
    let proven = futures_util::future::try_join_all(
        plan.platforms.iter().copied().zip(binaries).map(|(platform, binary)| prove_one(engine, plan, platform, binary, &recipe, &progress)),
    )
    .await;
    progress.finish();
    proven
}

async fn prove_one(
    engine: &Engine,
    plan: &Plan,
    platform: Platform,
    binary: PathBuf,
    (labels, created): &(std::collections::HashMap<String, String>, u64),
    progress: &Progress,
) -> Result<Proven> {
    let started = Instant::now();
    let context = context::build(&repo::root().join("Dockerfile"), &binary, &plan.public_html, *created)?;
    let recipe = Recipe { context, labels: labels.clone(), created: *created };
    let built = build::build(&engine.docker, platform, &plan.tag_for(platform), &recipe).await?;
    progress.done(format!("built {} as {} ({}) in {:.1} s", platform, built.tag, &built.id[..19], started.elapsed().as_secs_f64()));
    if !plan.smoke {
        return Ok(Proven { built, healthy_after: None });
    }
    let healthy_after = match smoke::run(&engine.docker, &built.id, platform).await? {
        smoke::Outcome::Healthy { after } => {
            progress.done(format!("{platform} placeholder healthy after {:.2} s", after.as_secs_f64()));
            Some(after)
        }
        smoke::Outcome::CannotRun => {
            progress.done(format!(
                "{platform} not smoke-tested: the engine's {} host has no {} emulation \
                 (install qemu-user-static and binfmt-support there to test it)",
                engine.arch,
                platform.arch()
            ));
            None
        }
    };
    Ok(Proven { built, healthy_after })
}

fn check_rust_targets(platforms: &[Platform]) -> Result<()> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let output = Command::new(&rustc).args(["--print", "sysroot"]).output().with_context(|| format!("running {rustc}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let missing: Vec<&str> = platforms
        .iter()
        .map(|p| p.rust_target())
        .filter(|target| !sysroot.join("lib/rustlib").join(target).join("lib").is_dir())
        .collect();
    if !missing.is_empty() {
        bail!("Rust target {} not installed: run `rustup target add {}`", missing.join(" and "), missing.join(" "));
    }
    Ok(())
}

/// `cargo build --release -p server` for every platform's musl target in one cargo run.
pub fn build_servers(platforms: &[Platform]) -> Result<Vec<PathBuf>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let root = repo::root();
    let mut command = Command::new(&cargo);
    command.current_dir(&root).args(["build", "--release", "--locked", "-p", "server"]);
    for platform in platforms {
        command.args(["--target", platform.rust_target()]);
    }
    let status = command.status().with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("building the server failed ({status}); the cargo output above says why");
    }
    Ok(platforms.iter().map(|p| binary_path(&root, *p)).collect())
}

fn binary_path(root: &Path, platform: Platform) -> PathBuf {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    target_dir.join(platform.rust_target()).join("release/server")
}
