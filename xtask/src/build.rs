//! One platform's image, built by the Docker engine from the repository's Dockerfile and then made
//! reproducible: the classic builder stamps build times and a random parent ID into the image
//! config, so the image is exported, those fields are fixed or dropped, and it is loaded back.
//! The image ID is the config's digest, so it then depends on the sources alone.

use std::collections::HashMap;
use std::io::Read;

use anyhow::{anyhow, bail, Context, Result};
use bollard::query_parameters::{BuildImageOptionsBuilder, ImportImageOptionsBuilder, RemoveImageOptionsBuilder};
use bollard::{body_full, Docker};
use flate2::write::GzEncoder;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::context;
use crate::platform::Platform;

/// What went into an image besides its files: labels and the timestamp it carries.
pub struct Recipe {
    pub context: Vec<u8>,
    pub labels: HashMap<String, String>,
    /// Seconds since the epoch: `SOURCE_DATE_EPOCH`, else the commit time.
    pub created: u64,
}

#[derive(Clone, Debug)]
pub struct Built {
    pub platform: Platform,
    pub tag: String,
    /// `sha256:...`: the digest of the image config.
    pub id: String,
    /// Bytes of the layers as the engine stores them.
    pub size: u64,
    /// Bytes of the gzipped layers and config: about what a registry stores and a task pulls.
    pub compressed: u64,
}

pub async fn build(docker: &Docker, platform: Platform, tag: &str, recipe: &Recipe) -> Result<Built> {
    let raw_id = engine_build(docker, platform, recipe).await?;
    let result = normalise(docker, platform, &raw_id, tag, recipe.created).await;
    // The engine's own build is only an intermediate: remove it and its untagged parents.
    let _ = docker.remove_image(&raw_id, Some(RemoveImageOptionsBuilder::new().noprune(false).build()), None).await;
    result
}

async fn engine_build(docker: &Docker, platform: Platform, recipe: &Recipe) -> Result<String> {
    let build_args = HashMap::from([("SERVER_BINARY", context::BINARY_IN_CONTEXT)]);
    let options = BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .platform(platform.docker())
        .buildargs(&build_args)
        .labels(&recipe.labels)
        .networkmode("none")
        .nocache(true) // always a fresh build, so normalisation is always what makes the ID stable
        .rm(true)
        .forcerm(true)
        .build();
    let mut stream = docker.build_image(options, None, Some(body_full(recipe.context.clone().into())));
    let mut id = None;
    let mut log = String::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| anyhow!("docker build for {platform} failed: {e}"))?;
        if let Some(error) = info.error_detail.and_then(|d| d.message) {
            bail!("docker build for {platform} failed: {error}\n{log}");
        }
        if let Some(text) = info.stream {
            log.push_str(&text);
        }
        if let Some(aux) = info.aux.and_then(|a| a.id) {
            id = Some(aux);
        }
    }
    id.with_context(|| format!("docker build for {platform} reported no image ID:\n{log}"))
}

/// Exports `raw_id`, fixes its config, loads it back as `tag`, and checks the ID that results.
async fn normalise(docker: &Docker, platform: Platform, raw_id: &str, tag: &str, created: u64) -> Result<Built> {
    let archive: Vec<u8> = docker
        .export_image(raw_id)
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await
        .with_context(|| format!("exporting the {platform} build"))?;
    let mut saved = Saved::read(&archive)?;
    // The builder stamps directories it fills with the build time: clamp every layer's times.
    for (_, layer) in &mut saved.layers {
        *layer = clamp_times(layer, created)?;
    }

    let mut config: Value = serde_json::from_slice(&saved.config).context("the built image config is not JSON")?;
    reproducible_config(&mut config, created);
    let diff_ids: Vec<String> = saved.layers.iter().map(|(_, layer)| format!("sha256:{:x}", Sha256::digest(layer))).collect();
    config["rootfs"]["diff_ids"] = json!(diff_ids);
    if config["architecture"] != platform.arch() {
        bail!("docker built a {} image when {platform} was asked for", config["architecture"]);
    }
    let config_bytes = serde_json::to_vec(&config)?;
    let id = format!("sha256:{:x}", Sha256::digest(&config_bytes));

    let load = saved.rewrite(&config_bytes, &id, tag)?;
    docker
        .import_image(ImportImageOptionsBuilder::new().quiet(true).build(), body_full(load.into()), None)
        .try_collect::<Vec<_>>()
        .await
        .with_context(|| format!("loading the {platform} image into the engine"))?;
    let inspect = docker.inspect_image(tag).await.with_context(|| format!("inspecting {tag}"))?;
    if inspect.id.as_deref() != Some(id.as_str()) {
        bail!("the engine gave {tag} the ID {:?}, expected {id}", inspect.id);
    }
    // An image this tag pointed at before is left as it is: another build or publish running at
    // the same time may be using it. `docker image prune` removes such dangling images.

    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    for layer in &saved.layers {
        std::io::Write::write_all(&mut gz, &layer.1)?;
    }
    let compressed = gz.finish()?.len() as u64 + config_bytes.len() as u64;
    Ok(Built {
        platform,
        tag: tag.to_owned(),
        id,
        size: inspect.size.unwrap_or(0).max(0) as u64,
        compressed,
    })
}

/// Fixes every time in the config to `created` and drops what only describes the build run.
fn reproducible_config(config: &mut Value, created: u64) {
    let time = json!(humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(created)).to_string());
    if let Some(object) = config.as_object_mut() {
        for transient in ["container", "container_config", "docker_version"] {
            object.remove(transient);
        }
        object.insert("created".into(), time.clone());
    }
    if let Some(history) = config["history"].as_array_mut() {
        for step in history {
            step["created"] = time.clone();
        }
    }
    if let Some(inner) = config["config"].as_object_mut() {
        inner.insert("Image".into(), json!("")); // the intermediate parent's random ID
    }
}

/// Rewrites a layer tar with every modification time set to `mtime`; all else is kept.
fn clamp_times(layer: &[u8], mtime: u64) -> Result<Vec<u8>> {
    let mut out = tar::Builder::new(Vec::new());
    for entry in tar::Archive::new(layer).entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let link = entry.link_name()?.map(|l| l.into_owned());
        let mut header = entry.header().clone();
        header.set_mtime(mtime);
        match link {
            Some(target) => out.append_link(&mut header, &path, &target)?,
            None => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                out.append_data(&mut header, &path, &data[..])?;
            }
        }
    }
    Ok(out.into_inner()?)
}

/// A `docker save` archive, read into memory (the placeholder is well under a megabyte).
struct Saved {
    config: Vec<u8>,
    /// (path in the archive, layer tar), in manifest order.
    layers: Vec<(String, Vec<u8>)>,
}

impl Saved {
    fn read(archive: &[u8]) -> Result<Saved> {
        let mut files: HashMap<String, Vec<u8>> = HashMap::new();
        for entry in tar::Archive::new(archive).entries()? {
            let mut entry = entry?;
            if entry.header().entry_type().is_file() {
                let path = entry.path()?.display().to_string();
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes)?;
                files.insert(path, bytes);
            }
        }
        let manifest: Value = serde_json::from_slice(files.get("manifest.json").context("docker save gave no manifest.json")?)?;
        let entry = &manifest[0];
        let config_path = entry["Config"].as_str().context("manifest.json names no config")?;
        let config = files.remove(config_path).context("docker save lacks the image config")?;
        let layers = entry["Layers"]
            .as_array()
            .context("manifest.json lists no layers")?
            .iter()
            .map(|path| {
                let path = path.as_str().context("bad layer path")?.to_owned();
                let bytes = files.remove(&path).with_context(|| format!("docker save lacks layer {path}"))?;
                Ok((path, bytes))
            })
            .collect::<Result<_>>()?;
        Ok(Saved { config, layers })
    }

    /// A `docker load` archive holding the same layers under a new config, tagged `tag`.
    fn rewrite(&self, config: &[u8], id: &str, tag: &str) -> Result<Vec<u8>> {
        let config_path = format!("{}.json", id.trim_start_matches("sha256:"));
        let layer_paths: Vec<&str> = self.layers.iter().map(|(p, _)| p.as_str()).collect();
        let manifest = serde_json::to_vec(&json!([{ "Config": config_path, "RepoTags": [tag], "Layers": layer_paths }]))?;
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |path: &str, bytes: &[u8]| -> Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            header.set_size(bytes.len() as u64);
            tar.append_data(&mut header, path, bytes)?;
            Ok(())
        };
        add(&config_path, config)?;
        for (path, bytes) in &self.layers {
            add(path, bytes)?;
        }
        add("manifest.json", &manifest)?;
        Ok(tar.into_inner()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_loses_build_run_details() {
        let mut config = json!({
            "architecture": "arm64",
            "created": "2026-11-22T02:50:01.123Z",
            "container": "6f1e...",
            "docker_version": "20.10.24",
            "container_config": {"Hostname": "abc"},
            "config": {"Image": "sha256:parent", "Entrypoint": ["/server"]},
            "history": [{"created": "2026-11-22T02:50:00Z", "created_by": "COPY"}],
            "rootfs": {"type": "layers", "diff_ids": ["sha256:x"]},
        });
        reproducible_config(&mut config, 1_700_000_000);
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        assert_eq!(config["history"][0]["created"], "2023-11-14T22:13:20Z");
        assert_eq!(config["config"]["Image"], "");
        assert_eq!(config["config"]["Entrypoint"][0], "/server");
        assert!(config.get("container").is_none() && config.get("container_config").is_none());
    }
}
