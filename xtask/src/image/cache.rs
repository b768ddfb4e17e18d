//! What an earlier run built, kept under `target/ecs-placeholder/` so an unchanged checkout is not
//! built again: the server binaries (cargo is not even asked when none of its inputs changed:
//! asking takes longer than the rest of a no-op publish) and each compressed layer, by the digest
//! of what it compresses. Every entry is checked against what it claims before it is used; one
//! that does not check out is ignored and rebuilt.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::base::digest::sha256 as digest;
use crate::base::repo;

/// `ECS_PLACEHOLDER_CACHE`, else `target/ecs-placeholder`.
pub fn dir() -> PathBuf {
    std::env::var_os("ECS_PLACEHOLDER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo::target_dir().join("ecs-placeholder"))
}

/// The last server build: what went in, and what came out per Rust target.
#[derive(Serialize, Deserialize, PartialEq)]
struct ServerBuild {
    inputs: String,
    binaries: Vec<(String, String)>,
}

/// A digest of everything the server build reads: the server's sources and manifest, the
/// workspace manifest and lock file, cargo's config, the toolchain (cargo's path, size and time,
/// which change when rustup updates it), the flags given and the targets. `None` when the
/// toolchain cannot be told (`CARGO` unset: not run through cargo), so cargo decides.
pub fn server_inputs(targets: &[&str], flags: &str) -> Option<String> {
    let cargo = PathBuf::from(std::env::var_os("CARGO")?);
    let meta = std::fs::metadata(&cargo).ok()?;
    let modified = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    let mut hash = Sha256::new();
    hash.update(format!("{}\0{}\0{modified}\0{flags}\0{}\0", cargo.display(), meta.len(), targets.join(",")));
    // Another compiler or wrapper, or other flags, make other binaries.
    for name in ["RUSTC", "RUSTC_WRAPPER", "RUSTUP_TOOLCHAIN", "RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "CARGO_TARGET_DIR"]
    {
        hash.update(format!("{name}={}\0", std::env::var(name).unwrap_or_default()));
    }
    let root = repo::root();
    let mut files = vec![root.join("Cargo.toml"), root.join("Cargo.lock"), root.join(".cargo/config.toml")];
    walk(&root.join("server"), &mut files);
    files.sort();
    for file in files {
        hash.update(file.strip_prefix(&root).unwrap_or(&file).to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(std::fs::read(&file).unwrap_or_default());
        hash.update([0]);
    }
    Some(hex::encode(hash.finalize()))
}

/// Every file below `dir`, but none below `target/`.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && path.file_name().is_some_and(|n| n != "target") {
            walk(&path, files);
        } else if path.is_file() {
            files.push(path);
        }
    }
}

fn server_build_path() -> PathBuf {
    dir().join("server-build.json")
}

/// Whether the binaries at `paths` are what the last build with `inputs` made, untouched since.
pub fn server_is_built(inputs: &str, targets: &[&str], paths: &[PathBuf]) -> bool {
    let Ok(text) = std::fs::read_to_string(server_build_path()) else { return false };
    let Ok(kept) = serde_json::from_str::<ServerBuild>(&text) else { return false };
    kept.inputs == inputs && kept.binaries == binaries(targets, paths).unwrap_or_default()
}

/// Notes that the binaries at `paths` are what `inputs` build into.
pub fn keep_server_build(inputs: &str, targets: &[&str], paths: &[PathBuf]) {
    let Some(binaries) = binaries(targets, paths) else { return };
    let kept = ServerBuild { inputs: inputs.to_owned(), binaries };
    let _ = write_whole(&server_build_path(), serde_json::to_string_pretty(&kept).unwrap_or_default().as_bytes());
}

fn binaries(targets: &[&str], paths: &[PathBuf]) -> Option<Vec<(String, String)>> {
    targets
        .iter()
        .zip(paths)
        .map(|(target, path)| Some((target.to_string(), digest(&std::fs::read(path).ok()?))))
        .collect()
}

fn layer_path(diff_id: &str) -> PathBuf {
    dir().join("layers").join(format!("{}.gz", diff_id.replace(':', "-")))
}

/// The compressed layer an earlier run made of the tar whose digest is `diff_id`, if it still
/// decompresses to exactly that.
pub fn layer(diff_id: &str) -> Option<Vec<u8>> {
    let compressed = std::fs::read(layer_path(diff_id)).ok()?;
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&compressed[..]).read_to_end(&mut tar).ok()?;
    (digest(&tar) == diff_id).then_some(compressed)
}

pub fn keep_layer(diff_id: &str, compressed: &[u8]) {
    let _ = write_whole(&layer_path(diff_id), compressed);
}

/// Writes `bytes` to `path` whole or not at all: a half-written entry is never read.
pub fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("a directory");
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
