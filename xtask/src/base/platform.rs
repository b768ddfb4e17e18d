//! The CPU architectures the placeholder is built for, and their Docker and Rust names.

use std::fmt;

use anyhow::{Result, bail};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Platform {
    Amd64,
    Arm64,
}

impl Platform {
    pub fn parse(text: &str) -> Result<Platform> {
        match text.trim() {
            "linux/amd64" | "amd64" | "x86_64" => Ok(Platform::Amd64),
            "linux/arm64" | "linux/arm64/v8" | "arm64" | "aarch64" => Ok(Platform::Arm64),
            other => bail!("unknown platform {other:?}: use linux/amd64, linux/arm64 or both, comma-separated"),
        }
    }

    /// The name Docker and OCI image indexes use, e.g. `linux/amd64`.
    pub fn docker(self) -> &'static str {
        match self {
            Platform::Amd64 => "linux/amd64",
            Platform::Arm64 => "linux/arm64",
        }
    }

    /// The `architecture` field of an image config.
    pub fn arch(self) -> &'static str {
        match self {
            Platform::Amd64 => "amd64",
            Platform::Arm64 => "arm64",
        }
    }

    /// The `variant` a manifest list gives an arm64 image.
    pub fn variant(self) -> Option<&'static str> {
        match self {
            Platform::Amd64 => None,
            Platform::Arm64 => Some("v8"),
        }
    }

    /// The platform this program runs on.
    pub fn native() -> Platform {
        if cfg!(target_arch = "aarch64") { Platform::Arm64 } else { Platform::Amd64 }
    }

    pub fn rust_target(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64-unknown-linux-musl",
            Platform::Arm64 => "aarch64-unknown-linux-musl",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.docker())
    }
}

/// `linux/amd64 and linux/arm64`, for messages.
pub fn names(platforms: &[Platform]) -> String {
    platforms.iter().map(|p| p.docker()).collect::<Vec<_>>().join(" and ")
}

/// Parses a comma-separated list, dropping duplicates and keeping a stable order.
pub fn parse_list(text: &str) -> Result<Vec<Platform>> {
    let mut platforms =
        text.split(',').filter(|s| !s.trim().is_empty()).map(Platform::parse).collect::<Result<Vec<_>>>()?;
    platforms.sort();
    platforms.dedup();
    if platforms.is_empty() {
        bail!("no platform given: use linux/amd64, linux/arm64 or both, comma-separated");
    }
    Ok(platforms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_dedup_and_reject_unknowns() {
        assert_eq!(parse_list("linux/arm64, amd64,linux/arm64").unwrap(), vec![Platform::Amd64, Platform::Arm64]);
        assert!(parse_list("linux/s390x").unwrap_err().to_string().contains("linux/s390x"));
        assert!(parse_list(" , ").is_err());
    }
}
