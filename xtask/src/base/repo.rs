//! Facts about this checkout: where it is, which commit, and what that says about the image.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const SOURCE: &str = "https://github.com/ecs-minimal-container/ecs-minimal-container";

/// The label that marks an image as this project's placeholder, by its config alone.
pub const PLACEHOLDER_LABEL: &str = "ecs-minimal-container.placeholder";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else `target/` in the checkout.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).current_dir(root()).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !text.is_empty()).then_some(text)
}

pub fn revision() -> String {
    git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
}

/// The time images carry: `SOURCE_DATE_EPOCH` if set, else the commit's time, else the epoch.
pub fn source_date_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .or_else(|| git(&["log", "-1", "--format=%ct"]).and_then(|t| t.parse().ok()))
        .unwrap_or(0)
}

pub fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("org.opencontainers.image.title".to_owned(), "ecs-minimal-container placeholder".to_owned()),
        (
            "org.opencontainers.image.description".to_owned(),
            "Placeholder that answers health checks until the real image is deployed".to_owned(),
        ),
        ("org.opencontainers.image.version".to_owned(), VERSION.to_owned()),
        ("org.opencontainers.image.revision".to_owned(), revision()),
        ("org.opencontainers.image.source".to_owned(), SOURCE.to_owned()),
        (PLACEHOLDER_LABEL.to_owned(), "true".to_owned()),
    ])
}
