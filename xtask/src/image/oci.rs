//! The placeholder image made in-process: per platform one layer, its config and manifest, and an
//! index over the platforms (OCI media types, which ECR, Docker and containerd all accept). The
//! index digest is known before anything is pushed or run, which is what lets publish see at once
//! that a repository is already up to date.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bytes::Bytes;
use serde_json::{Value, json};
use server::baked::{self, BakedPorts};

use crate::base::digest::sha256 as digest;
use crate::base::platform::Platform;
use crate::image::cache;
use crate::image::layer::{self, Tree};

pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Where the server binary sits in the image; every other program name is a hard link to it.
pub const SERVER_PATH: &str = "/server";
/// The search path Docker gives a container whose image sets none; set explicitly so programs
/// named by a task definition are found where Docker and ECS look.
pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The image's own health check (ECS ignores it and runs the task definition's; Docker uses it).
pub const HEALTH_CHECK: [&str; 3] = ["CMD", "/server", "--probe"];
const SECONDS: u64 = 1_000_000_000;

/// A content-addressed blob: a layer, a config or a manifest.
#[derive(Clone, Debug)]
pub struct Blob {
    pub media_type: &'static str,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
    pub bytes: Bytes,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        Blob { media_type, digest: digest(&bytes), bytes: Bytes::from(bytes) }
    }

    fn descriptor(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len() })
    }
}

/// Other names of the server, as hard links (a tar header each, no data). The shell, curl and wget
/// answer the health checks real task definitions run (`CMD-SHELL` is `/bin/sh -c`); the rest are
/// the launchers entry points name most (`npm`, `/usr/sbin/apache2`, `sh -c "npm start"`...), so
/// an `entryPoint` written for the real image still starts the placeholder, which then serves.
pub const PROGRAMS: &[&str] = &[
    "/bin/sh",
    "/bin/bash",
    "/bin/ash",
    "/usr/bin/curl",
    "/usr/bin/wget",
    "/usr/bin/env",
    "/usr/local/bin/node",
    "/usr/local/bin/npm",
    "/usr/local/bin/npx",
    "/usr/local/bin/yarn",
    "/usr/local/bin/pnpm",
    "/usr/local/bin/python",
    "/usr/local/bin/python3",
    "/usr/local/bin/gunicorn",
    "/usr/local/bin/uvicorn",
    "/usr/local/bin/java",
    "/usr/local/bin/ruby",
    "/usr/local/bin/bundle",
    "/usr/local/bin/php",
    "/usr/local/bin/dotnet",
    "/usr/local/bin/bun",
    "/usr/local/bin/deno",
    "/usr/local/bin/pm2-runtime",
    "/usr/local/bin/flask",
    "/usr/local/bin/streamlit",
    "/usr/local/bin/puma",
    "/usr/local/bin/rails",
    "/usr/local/bin/docker-entrypoint.sh",
    "/usr/bin/node",
    "/usr/bin/python3",
    "/usr/bin/java",
    // Init wrappers: as PID 1 they serve like any other entry point.
    "/usr/bin/dumb-init",
    "/usr/bin/tini",
    "/sbin/tini",
    "/tini",
    "/usr/local/bin/gosu",
    "/usr/local/sbin/php-fpm",
    "/usr/sbin/apache2",
    "/usr/sbin/httpd",
    "/usr/sbin/nginx",
    "/docker-entrypoint.sh",
    "/entrypoint.sh",
];

/// Users a task definition's `user` may name: Docker looks names up in the image's /etc/passwd.
const USERS: &[(&str, u32)] =
    &[("root", 0), ("daemon", 1), ("www-data", 33), ("nginx", 101), ("node", 1000), ("app", 1001), ("nobody", 65534)];

/// What one repository's image adds to the common placeholder.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Recipe {
    /// Ports the server listens on where the task has no metadata to name them.
    pub ports: Vec<u16>,
    /// The container each port is for, where one repository's image runs as several containers
    /// of one task on different ports (`repo:frontend` on 3000, `repo:backend` on 8080): each
    /// keeps to its own, found by the name in its task metadata. Empty when they all agree.
    pub container_ports: BTreeSet<(String, u16)>,
    /// More names for the server (absolute paths), for entry points the defaults lack.
    pub programs: BTreeSet<String>,
    /// More user names for /etc/passwd.
    pub users: BTreeSet<String>,
    /// What to answer instead of 200 where the load balancer accepts no 2xx (e.g. only 302).
    pub status: Option<u16>,
}

/// Everything an image is made from.
pub struct Sources {
    /// The release server binary for each platform.
    pub binaries: Vec<(Platform, Vec<u8>)>,
    pub public_html: PathBuf,
    /// Seconds since the epoch: every time in the image.
    pub created: u64,
    pub labels: BTreeMap<String, String>,
}

/// One platform's image.
pub struct PlatformImage {
    pub platform: Platform,
    /// The layer uncompressed, as the engine loads it and the smoke test unpacks it.
    pub layer_tar: Vec<u8>,
    pub layer: Blob,
    pub config: Blob,
    pub manifest: Blob,
}

/// Every platform's image and the index over them: what `:latest` points at.
pub struct ImageSet {
    pub images: Vec<PlatformImage>,
    pub index: Blob,
}

impl ImageSet {
    /// The layers and configs, in push order: each must be in a repository before a manifest
    /// that names it.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        self.images.iter().flat_map(|i| [&i.layer, &i.config])
    }

    /// Bytes a registry stores for one platform: its compressed layer, config and manifest.
    pub fn compressed_size(image: &PlatformImage) -> u64 {
        (image.layer.bytes.len() + image.config.bytes.len() + image.manifest.bytes.len()) as u64
    }
}

/// Builds the image for every platform of `sources`, side by side (compression is the slow part).
pub fn build(sources: &Sources, recipe: &Recipe) -> Result<ImageSet> {
    let images = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .binaries
            .iter()
            .map(|(platform, binary)| scope.spawn(move || build_platform(sources, recipe, *platform, binary)))
            .collect();
        handles.into_iter().map(|h| h.join().expect("image build thread panicked")).collect::<Result<Vec<_>>>()
    })?;
    let manifests: Vec<Value> = images
        .iter()
        .map(|image| {
            let mut descriptor = image.manifest.descriptor();
            descriptor["platform"] = platform_json(image.platform);
            descriptor
        })
        .collect();
    let index = json!({ "schemaVersion": 2, "mediaType": INDEX, "manifests": manifests });
    Ok(ImageSet { images, index: Blob::new(INDEX, serde_json::to_vec(&index)?) })
}

fn build_platform(sources: &Sources, recipe: &Recipe, platform: Platform, binary: &[u8]) -> Result<PlatformImage> {
    let mut tree = Tree::default();
    tree.file(SERVER_PATH, binary.to_vec(), 0o755)?;
    for program in PROGRAMS.iter().copied().chain(recipe.programs.iter().map(String::as_str)) {
        if program != SERVER_PATH && !tree.contains(program) {
            tree.link(program, SERVER_PATH)?;
        }
    }
    let (passwd, group) = accounts(&recipe.users);
    tree.file("/etc/passwd", passwd.into_bytes(), 0o644)?;
    tree.file("/etc/group", group.into_bytes(), 0o644)?;
    tree.directory(&sources.public_html, "public_html")
        .with_context(|| format!("adding the pages in {}", sources.public_html.display()))?;
    let layer_tar = tree.tar(sources.created)?;
    let diff_id = digest(&layer_tar);
    // Compressing is most of a build's time; the same tar always compresses to the same bytes.
    let compressed = match cache::layer(&diff_id) {
        Some(compressed) => compressed,
        None => {
            let compressed = layer::gzip(&layer_tar)?;
            cache::keep_layer(&diff_id, &compressed);
            compressed
        }
    };
    let layer = Blob::new(LAYER, compressed);
    let config = Blob::new(CONFIG, serde_json::to_vec(&config_json(sources, recipe, platform, &diff_id))?);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
    });
    let manifest = Blob::new(MANIFEST, serde_json::to_vec(&manifest)?);
    Ok(PlatformImage { platform, layer_tar, layer, config, manifest })
}

/// /etc/passwd and /etc/group: the usual users, and any more a recipe names (uids from 2000).
fn accounts(extra: &BTreeSet<String>) -> (String, String) {
    let mut users: Vec<(String, u32)> = USERS.iter().map(|(name, id)| (name.to_string(), *id)).collect();
    for (n, name) in extra.iter().filter(|name| !USERS.iter().any(|(known, _)| known == name)).enumerate() {
        users.push((name.clone(), 2000 + n as u32));
    }
    let passwd = users.iter().map(|(name, id)| format!("{name}:x:{id}:{id}:{name}:/:/bin/sh\n")).collect();
    let group = users.iter().map(|(name, id)| format!("{name}:x:{id}:\n")).collect();
    (passwd, group)
}

fn platform_json(platform: Platform) -> Value {
    let mut value = json!({ "architecture": platform.arch(), "os": "linux" });
    if let Some(variant) = platform.variant() {
        value["variant"] = json!(variant);
    }
    value
}

fn config_json(sources: &Sources, recipe: &Recipe, platform: Platform, diff_id: &str) -> Value {
    let created = rfc3339(sources.created);
    let ports = if recipe.ports.is_empty() { vec![80] } else { recipe.ports.clone() };
    let exposed: BTreeMap<String, Value> = ports.iter().map(|p| (format!("{p}/tcp"), json!({}))).collect();
    let mut env = vec![PATH_ENV.to_owned()];
    if !recipe.ports.is_empty() {
        env.push(format!("{}={}", baked::PORTS, baked_ports(recipe)));
    }
    if let Some(status) = recipe.status {
        env.push(format!("{}={status}", baked::STATUS));
    }
    let mut config = platform_json(platform);
    let fields = json!({
        "created": created,
        "config": {
            "Entrypoint": [SERVER_PATH],
            "Env": env,
            "ExposedPorts": exposed,
            "Healthcheck": { "Test": HEALTH_CHECK, "Interval": 10 * SECONDS, "Timeout": 3 * SECONDS, "Retries": 3 },
            "Labels": sources.labels,
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": created, "created_by": concat!("cargo xtask image (ecs-minimal-container ", env!("CARGO_PKG_VERSION"), ")") }],
    });
    for (key, value) in fields.as_object().expect("an object") {
        config[key] = value.clone();
    }
    config
}

/// The recipe's ports as the server reads them: each for every container (`3000`), or for the
/// containers that alone have it (`frontend:3000`).
fn baked_ports(recipe: &Recipe) -> BakedPorts {
    let mut entries = Vec::new();
    for &port in &recipe.ports {
        let owners: Vec<&str> =
            recipe.container_ports.iter().filter(|(_, p)| *p == port).map(|(name, _)| name.as_str()).collect();
        if owners.is_empty() {
            entries.push((None, port));
        }
        entries.extend(owners.iter().map(|name| (Some(name.to_string()), port)));
    }
    BakedPorts::new(entries)
}

fn rfc3339(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds)).to_string()
}

/// Writes an OCI image layout at `dir` with the index as `tag` (`skopeo copy oci:DIR:TAG ...`).
pub fn write_layout(set: &ImageSet, dir: &Path, tag: &str) -> Result<()> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
    let all = set.images.iter().flat_map(|i| [&i.layer, &i.config, &i.manifest]).chain([&set.index]);
    for blob in all {
        let path = blobs.join(blob.digest.trim_start_matches("sha256:"));
        std::fs::write(&path, &blob.bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut top = set.index.descriptor();
    top["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
    let index = json!({ "schemaVersion": 2, "mediaType": INDEX, "manifests": [top] });
    std::fs::write(dir.join("index.json"), serde_json::to_vec_pretty(&index)?)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(())
}

/// A `docker load` archive of one platform's image, tagged `tag`. The engine's image ID is then
/// the config's digest, the same as in the registry.
pub fn docker_archive(image: &PlatformImage, tag: &str) -> Result<Vec<u8>> {
    let hex = image.config.digest.trim_start_matches("sha256:");
    let config_path = format!("{hex}.json");
    let layer_path = format!("{}/layer.tar", digest(&image.layer_tar).trim_start_matches("sha256:"));
    let manifest = serde_json::to_vec(&json!([{ "Config": config_path, "RepoTags": [tag], "Layers": [layer_path] }]))?;
    let mut tar = tar::Builder::new(Vec::new());
    for (path, bytes) in
        [(config_path.as_str(), &image.config.bytes[..]), (&layer_path, &image.layer_tar), ("manifest.json", &manifest)]
    {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        tar.append_data(&mut header, path, bytes)?;
    }
    Ok(tar.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(pages: &Path, created: u64) -> Sources {
        Sources {
            binaries: vec![(Platform::Amd64, b"amd64 binary".to_vec()), (Platform::Arm64, b"arm64 binary".to_vec())],
            public_html: pages.to_path_buf(),
            created,
            labels: BTreeMap::from([("ecs-minimal-container.placeholder".to_owned(), "true".to_owned())]),
        }
    }

    #[test]
    fn digests_follow_the_sources_and_nothing_else() {
        let pages = tempfile::tempdir().unwrap();
        std::fs::write(pages.path().join("index.html"), "hi").unwrap();
        let a = build(&sources(pages.path(), 1_700_000_000), &Recipe::default()).unwrap();
        let b = build(&sources(pages.path(), 1_700_000_000), &Recipe::default()).unwrap();
        assert_eq!(a.index.digest, b.index.digest);
        let later = build(&sources(pages.path(), 1_700_000_001), &Recipe::default()).unwrap();
        assert_ne!(a.index.digest, later.index.digest, "the time is part of the image");
        let ported =
            build(&sources(pages.path(), 1_700_000_000), &Recipe { ports: vec![8080], ..Recipe::default() }).unwrap();
        assert_ne!(a.index.digest, ported.index.digest);
        assert_eq!(a.images[0].layer.digest, ported.images[0].layer.digest, "a baked port changes the config only");
    }

    #[test]
    fn config_manifest_and_index_say_what_the_image_is() {
        let pages = tempfile::tempdir().unwrap();
        std::fs::write(pages.path().join("index.html"), "hi").unwrap();
        let recipe = Recipe {
            ports: vec![3000, 8080],
            programs: BTreeSet::from(["/app/start".to_owned()]),
            users: BTreeSet::from(["svc".to_owned()]),
            status: Some(302),
            ..Recipe::default()
        };
        let set = build(&sources(pages.path(), 1_700_000_000), &recipe).unwrap();
        let index: Value = serde_json::from_slice(&set.index.bytes).unwrap();
        assert_eq!(
            index["manifests"][1]["platform"],
            json!({ "architecture": "arm64", "os": "linux", "variant": "v8" })
        );
        let arm = &set.images[1];
        assert_eq!(index["manifests"][1]["digest"], arm.manifest.digest.as_str());
        let manifest: Value = serde_json::from_slice(&arm.manifest.bytes).unwrap();
        assert_eq!(manifest["config"]["digest"], arm.config.digest.as_str());
        assert_eq!(manifest["layers"][0]["size"], arm.layer.bytes.len());
        let config: Value = serde_json::from_slice(&arm.config.bytes).unwrap();
        assert_eq!(config["architecture"], "arm64");
        assert_eq!(config["variant"], "v8");
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        assert_eq!(config["rootfs"]["diff_ids"][0], digest(&arm.layer_tar).as_str());
        assert_eq!(config["config"]["Healthcheck"]["Test"], json!(HEALTH_CHECK));
        assert_eq!(config["config"]["ExposedPorts"], json!({ "3000/tcp": {}, "8080/tcp": {} }));
        assert_eq!(config["config"]["Env"][1], "PLACEHOLDER_PORTS=3000,8080");
        assert_eq!(config["config"]["Env"][2], "PLACEHOLDER_STATUS=302");

        let shared = Recipe {
            ports: vec![3000, 8080, 9100],
            container_ports: BTreeSet::from([
                ("frontend".to_owned(), 3000),
                ("backend".to_owned(), 8080),
                ("worker".to_owned(), 8080),
            ]),
            ..Recipe::default()
        };
        let set = build(&sources(pages.path(), 1_700_000_000), &shared).unwrap();
        let config: Value = serde_json::from_slice(&set.images[0].config.bytes).unwrap();
        assert_eq!(config["config"]["Env"][1], "PLACEHOLDER_PORTS=frontend:3000,backend:8080,worker:8080,9100");
        assert_eq!(config["config"]["ExposedPorts"], json!({ "3000/tcp": {}, "8080/tcp": {}, "9100/tcp": {} }));

        let mut names = std::collections::HashMap::new();
        for entry in tar::Archive::new(&arm.layer_tar[..]).entries().unwrap() {
            let mut entry = entry.unwrap();
            let link = entry.link_name().unwrap().map(|l| l.display().to_string());
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut entry, &mut text);
            names.insert(entry.path().unwrap().display().to_string(), (link, text));
        }
        for program in ["bin/sh", "usr/bin/curl", "usr/bin/wget", "usr/sbin/apache2", "app/start"] {
            assert_eq!(names[program].0.as_deref(), Some("server"), "{program} is a hard link to the server");
        }
        assert!(
            names["etc/passwd"].1.contains("node:x:1000:1000:") && names["etc/passwd"].1.contains("svc:x:2000:2000:")
        );
    }
}
