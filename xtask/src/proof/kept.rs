//! Proofs kept between runs. The index digest covers every byte of every platform's image (the
//! server, the pages, the config and its health check), so a set proven healthy once need not be
//! proven again while the digest is the same. Kept under `target/`, one file per digest, and
//! trusted only when whole, written by this version, and for this very digest and its platforms.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::image::cache;
use crate::image::oci::ImageSet;
use crate::proof::smoke::{Proof, Verdict};

#[derive(Serialize, Deserialize)]
struct Kept {
    version: String,
    index: String,
    proven_at: String,
    platforms: Vec<KeptProof>,
}

#[derive(Serialize, Deserialize)]
struct KeptProof {
    platform: String,
    after_ms: u64,
    how: String,
}

fn path(digest: &str) -> PathBuf {
    cache::dir().join("proofs").join(format!("{}.json", digest.replace(':', "-")))
}

/// The proofs an earlier run kept for exactly this set, if it kept any that can be trusted.
pub fn earlier(set: &ImageSet) -> Option<Vec<Proof>> {
    let text = std::fs::read_to_string(path(&set.index.digest)).ok()?;
    let kept: Kept = serde_json::from_str(&text).ok()?;
    if kept.version != env!("CARGO_PKG_VERSION")
        || kept.index != set.index.digest
        || kept.platforms.len() != set.images.len()
    {
        return None;
    }
    set.images
        .iter()
        .map(|image| {
            let proof = kept.platforms.iter().find(|p| p.platform == image.platform.docker())?;
            Some(Proof {
                platform: image.platform,
                verdict: Verdict::Earlier {
                    proven_at: kept.proven_at.clone(),
                    how: format!("{} after {:.2} s", proof.how, Duration::from_millis(proof.after_ms).as_secs_f64()),
                },
            })
        })
        .collect()
}

/// Keeps `proofs` for `set` when every platform was proven healthy just now. A proof that cannot
/// be written costs the next run a smoke test, nothing more.
pub fn keep(set: &ImageSet, proofs: &[Proof]) {
    let mut platforms = Vec::new();
    for proof in proofs {
        let Verdict::Healthy { after, how } = &proof.verdict else { return };
        platforms.push(KeptProof {
            platform: proof.platform.docker().to_owned(),
            after_ms: after.as_millis() as u64,
            how: (*how).to_owned(),
        });
    }
    if platforms.len() != set.images.len() {
        return;
    }
    let kept = Kept {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        index: set.index.digest.clone(),
        proven_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        platforms,
    };
    let path = path(&set.index.digest);
    let text = serde_json::to_string_pretty(&kept).unwrap_or_default();
    if let Err(e) = cache::write_whole(&path, text.as_bytes()) {
        eprintln!("warning: could not keep the proof in {}: {e}", path.display());
    }
}
