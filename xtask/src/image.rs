//! `cargo xtask image`: build the placeholder in-process for each platform, prove each healthy,
//! and load it into the Docker engine (or write an OCI layout with `--oci-dir`, no engine needed).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bollard::query_parameters::ImportImageOptionsBuilder;
use futures_util::TryStreamExt;

use crate::engine::{self, Engine};
use crate::oci::{self, ImageSet, PlatformImage, Recipe, Sources};
use crate::platform::{self, Platform};
use crate::progress::Progress;
use crate::smoke::{self, Proof};
use crate::{cache, names, repo};

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

/// What a build should make, checked before anything is built.
pub struct Plan {
    pub platforms: Vec<Platform>,
    /// Each platform's image is tagged this plus its architecture: `NAME:` or `NAME:TAG-`.
    tag_prefix: String,
    pub public_html: PathBuf,
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
        Ok(Plan { platforms, tag_prefix, public_html })
    }

    /// The project's own images, `ecs-minimal-container:ARCH`, from the repository's pages.
    pub fn project(platforms: Vec<Platform>) -> Plan {
        Plan { platforms, tag_prefix: "ecs-minimal-container:".to_owned(), public_html: repo::root().join("public_html") }
    }

    pub fn tag_for(&self, platform: Platform) -> String {
        format!("{}{}", self.tag_prefix, platform.arch())
    }
}

pub async fn run(args: Args) -> Result<()> {
    let plan = Plan::from_args(&args)?;
    // Loading needs the engine: find out before building that there is none.
    let engine = match &args.oci_dir {
        Some(_) => None,
        None => Some(engine::connect().await.context("--oci-dir DIR writes the image without an engine")?),
    };
    let started = Instant::now();
    let sources = sources(&plan)?;
    let set = oci::build(&sources, &Recipe::default())?;
    eprintln!("built {} in {:.2} s: index {}", platform::names(&plan.platforms), started.elapsed().as_secs_f64(), set.index.digest);
    match (&args.oci_dir, &engine) {
        (Some(dir), _) => {
            oci::write_layout(&set, dir, "latest")?;
            eprintln!("wrote an OCI image layout to {} (skopeo copy oci:{}:latest ...)", dir.display(), dir.display());
        }
        (None, Some(engine)) => load(engine, &set, &plan).await?,
        (None, None) => unreachable!("an engine was required above"),
    }
    let proofs = if args.no_smoke { Vec::new() } else { prove(&set, engine.as_ref(), &plan).await? };
    print_summary(&set, &proofs, &plan, engine.is_some());
    Ok(())
}

fn print_summary(set: &ImageSet, proofs: &[Proof], plan: &Plan, loaded: bool) {
    println!("{:<13} {:<20} {:>10} {:>12}  {:<38}  PROOF", "PLATFORM", "IMAGE ID", "SIZE", "COMPRESSED", "TAG");
    for image in &set.images {
        let proof = proofs.iter().find(|p| p.platform == image.platform).map_or("not run (--no-smoke)".to_owned(), Proof::describe);
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

/// Builds the release server for every platform and gathers what the image is made from.
pub fn sources(plan: &Plan) -> Result<Sources> {
    let binaries = build_servers(&plan.platforms)?
        .into_iter()
        .zip(&plan.platforms)
        .map(|(path, platform)| Ok((*platform, std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Sources { binaries, public_html: plan.public_html.clone(), created: repo::source_date_epoch(), labels: repo::labels() })
}

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
    let loaded = engine.docker.inspect_image(tag).await.map_err(|e| engine::call_failed(&format!("inspecting {tag}"), e))?;
    if loaded.id.as_deref() != Some(image.config.digest.as_str()) {
        bail!("the engine gave {tag} the ID {:?}, expected {}", loaded.id, image.config.digest);
    }
    // An image this tag pointed at before stays as it is: another run may be using it.
    Ok(())
}

/// Proves every platform's image healthy: through the engine's own HEALTHCHECK when there is an
/// engine (the images must be loaded), else by running the server from the built layer.
pub async fn prove(set: &ImageSet, engine: Option<&Engine>, plan: &Plan) -> Result<Vec<Proof>> {
    let progress = Progress::new();
    progress.working(format!("proving {} image(s) healthy", set.images.len()));
    let proofs = futures_util::future::try_join_all(set.images.iter().map(|image| async {
        let proof = match engine {
            Some(engine) => smoke::in_engine(engine, &plan.tag_for(image.platform), image.platform).await?,
            None => smoke::direct(image).await?,
        };
        progress.done(format!("{}: {}", image.platform, proof.describe()));
        Ok::<_, anyhow::Error>(proof)
    }))
    .await;
    progress.finish();
    proofs
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

/// `cargo build --release -p server` for every platform's musl target in one cargo run. Paths
/// of this checkout and of the cargo registry are remapped, so the binary does not depend on
/// where the sources happen to be.
pub fn build_servers(platforms: &[Platform]) -> Result<Vec<PathBuf>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let root = repo::root();
    let mut command = Command::new(&cargo);
    command.current_dir(&root).args(["build", "--release", "--locked", "-p", "server"]);
    for platform in platforms {
        command.args(["--target", platform.rust_target()]);
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    let mut flags = vec![format!("--remap-path-prefix={}=/src", root.display())];
    if let Some(home) = cargo_home {
        flags.push(format!("--remap-path-prefix={}=/cargo", home.display()));
    }
    let flags = flags.join("\u{1f}");
    let targets: Vec<&str> = platforms.iter().map(|p| p.rust_target()).collect();
    let paths: Vec<PathBuf> = platforms.iter().map(|p| binary_path(*p)).collect();
    // Nothing cargo reads has changed since it built these very binaries: no need to ask it.
    let inputs = cache::server_inputs(&targets, &flags);
    if let Some(inputs) = &inputs
        && cache::server_is_built(inputs, &targets, &paths)
    {
        return Ok(paths);
    }
    check_rust_targets(platforms)?;
    command.env("CARGO_ENCODED_RUSTFLAGS", &flags);
    let status = command.status().with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("building the server failed ({status}); the cargo output above says why");
    }
    if let Some(inputs) = &inputs {
        cache::keep_server_build(inputs, &targets, &paths);
    }
    Ok(paths)
}

fn binary_path(platform: Platform) -> PathBuf {
    repo::target_dir().join(platform.rust_target()).join("release/server")
}
