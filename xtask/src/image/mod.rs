//! The image, built in-process: the server for each platform, its layers, configs and manifests
//! (`layer.rs`, `oci.rs`), and what an unchanged checkout need not build again (`cache.rs`).
//! May use `base`; nothing above it.

pub mod cache;
pub mod layer;
pub mod oci;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::base::platform::{self, Platform};
use crate::base::{names, repo};
use oci::Sources;

/// What a build should make, checked before anything is built.
pub struct Plan {
    pub platforms: Vec<Platform>,
    /// Each platform's image is tagged this plus its architecture: `NAME:` or `NAME:TAG-`.
    tag_prefix: String,
    pub public_html: PathBuf,
}

impl Plan {
    /// What `cargo xtask image --platform P --tag T [--public-html DIR]` asks for.
    pub fn new(platform_list: &str, image_tag: &str, public_html: Option<PathBuf>) -> Result<Plan> {
        let platforms = platform::parse_list(platform_list)?;
        let (repository, tag) = match image_tag.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
            _ => (image_tag, None),
        };
        names::check_repository(repository).context("--tag")?;
        if let Some(tag) = tag {
            names::check_tag(tag).context("--tag")?;
        }
        let public_html = public_html.unwrap_or_else(|| repo::root().join("public_html"));
        if !public_html.is_dir() {
            bail!("--public-html {}: not a directory", public_html.display());
        }
        let tag_prefix = if tag.is_some() { format!("{image_tag}-") } else { format!("{image_tag}:") };
        Ok(Plan { platforms, tag_prefix, public_html })
    }

    /// The project's own images, `ecs-minimal-container:ARCH`, from the repository's pages.
    pub fn project(platforms: Vec<Platform>) -> Plan {
        Plan {
            platforms,
            tag_prefix: "ecs-minimal-container:".to_owned(),
            public_html: repo::root().join("public_html"),
        }
    }

    pub fn tag_for(&self, platform: Platform) -> String {
        format!("{}{}", self.tag_prefix, platform.arch())
    }
}

/// Builds the release server for every platform and gathers what the image is made from.
pub fn sources(plan: &Plan) -> Result<Sources> {
    let binaries = build_servers(&plan.platforms)?
        .into_iter()
        .zip(&plan.platforms)
        .map(|(path, platform)| {
            Ok((*platform, std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Sources {
        binaries,
        public_html: plan.public_html.clone(),
        created: repo::source_date_epoch(),
        labels: repo::labels(),
    })
}

fn check_rust_targets(platforms: &[Platform]) -> Result<()> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let output =
        Command::new(&rustc).args(["--print", "sysroot"]).output().with_context(|| format!("running {rustc}"))?;
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
