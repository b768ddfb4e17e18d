//! The image's one layer, written the same way every time: sorted entries, owned by root, fixed
//! modes, every time set to one given instant, gzipped with a fixed header. The same sources make
//! the same bytes on any machine, any day, with no engine.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use flate2::{Compression, GzBuilder};

/// A file tree to be written as a layer. Paths are relative to `/`, without a leading slash.
#[derive(Default)]
pub struct Tree {
    entries: BTreeMap<String, Node>,
}

enum Node {
    Dir,
    File {
        bytes: Vec<u8>,
        mode: u32,
    },
    /// A hard link: another name for `target`, costing one tar header and no data.
    Link {
        target: String,
    },
}

impl Tree {
    pub fn file(&mut self, path: &str, bytes: Vec<u8>, mode: u32) -> Result<()> {
        let path = self.claim(path)?;
        self.entries.insert(path, Node::File { bytes, mode });
        Ok(())
    }

    /// Adds `path` as a hard link to the regular file at `target`.
    pub fn link(&mut self, path: &str, target: &str) -> Result<()> {
        let target = clean(target)?;
        if !matches!(self.entries.get(&target), Some(Node::File { .. })) {
            bail!("cannot link /{path} to /{target}: /{target} is not a file in the image");
        }
        let path = self.claim(path)?;
        self.entries.insert(path, Node::Link { target });
        Ok(())
    }

    pub fn contains(&self, path: &str) -> bool {
        clean(path).is_ok_and(|p| self.entries.contains_key(&p))
    }

    /// Adds every regular file under `dir` at `prefix`, as `0644`. Symbolic links and special
    /// files are left out, as the server would not serve them.
    pub fn directory(&mut self, dir: &Path, prefix: &str) -> Result<()> {
        self.claim_dir(&clean(prefix)?)?;
        let mut entries = fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .collect::<std::io::Result<Vec<_>>>()
            .with_context(|| format!("reading {}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_str().with_context(|| format!("{} is not UTF-8", path.display()))?;
            let child = format!("{prefix}/{name}");
            let kind = entry.file_type()?;
            if kind.is_dir() {
                self.directory(&path, &child)?;
            } else if kind.is_file() {
                let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                self.file(&child, bytes, 0o644)?;
            }
        }
        Ok(())
    }

    /// Makes room for `path`: its parents become directories, and it must be new.
    fn claim(&mut self, path: &str) -> Result<String> {
        let path = clean(path)?;
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.claim_dir(parent)?;
        }
        if self.entries.contains_key(&path) {
            bail!("/{path} is already in the image");
        }
        Ok(path)
    }

    fn claim_dir(&mut self, dir: &str) -> Result<()> {
        let mut prefix = String::new();
        for part in dir.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            match self.entries.get(&prefix) {
                None => {
                    self.entries.insert(prefix.clone(), Node::Dir);
                }
                Some(Node::Dir) => {}
                Some(_) => bail!("/{prefix} is a file in the image, so it cannot hold /{dir}"),
            }
        }
        Ok(())
    }

    /// The layer as an uncompressed tar: directories and files in path order, then the hard
    /// links (a link must come after the file it names).
    pub fn tar(&self, mtime: u64) -> Result<Vec<u8>> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, node) in &self.entries {
            match node {
                Node::Dir => {
                    let mut header = header(tar::EntryType::Directory, 0o755, mtime);
                    tar.append_data(&mut header, format!("{path}/"), &[][..])?;
                }
                Node::File { bytes, mode } => {
                    let mut header = header(tar::EntryType::Regular, *mode, mtime);
                    header.set_size(bytes.len() as u64);
                    tar.append_data(&mut header, path, &bytes[..])?;
                }
                Node::Link { .. } => {}
            }
        }
        for (path, node) in &self.entries {
            if let Node::Link { target } = node {
                let mode = match self.entries.get(target) {
                    Some(Node::File { mode, .. }) => *mode,
                    _ => 0o755,
                };
                let mut header = header(tar::EntryType::Link, mode, mtime);
                tar.append_link(&mut header, path, target)?;
            }
        }
        Ok(tar.into_inner()?)
    }
}

/// `a/b` from `/a/b`, `a//b/` or `./a/b`; refuses `..` and empty paths.
fn clean(path: &str) -> Result<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.is_empty() || parts.contains(&"..") {
        bail!("{path:?} is not a path inside the image");
    }
    Ok(parts.join("/"))
}

fn header(kind: tar::EntryType, mode: u32, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(0);
    header
}

/// gzip with no name and a zero timestamp in its header, at the best compression: the same
/// input always gives the same bytes.
pub fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = GzBuilder::new().mtime(0).write(Vec::with_capacity(data.len() / 2), Compression::best());
    encoder.write_all(data)?;
    Ok(encoder.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(tar: &[u8]) -> Vec<(String, tar::EntryType, u32, u64, Option<String>)> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                let link = e.link_name().unwrap().map(|l| l.display().to_string());
                (e.path().unwrap().display().to_string(), h.entry_type(), h.mode().unwrap(), h.mtime().unwrap(), link)
            })
            .collect()
    }

    #[test]
    fn same_tree_same_bytes_sorted_with_links_last() {
        let pages = tempfile::tempdir().unwrap();
        fs::create_dir_all(pages.path().join("sub")).unwrap();
        for name in ["z.html", "a.html", "sub/b.css"] {
            fs::write(pages.path().join(name), name).unwrap();
        }
        let make = || {
            let mut tree = Tree::default();
            tree.file("/server", b"binary".to_vec(), 0o755).unwrap();
            tree.link("/bin/sh", "/server").unwrap();
            tree.link("/usr/bin/curl", "server").unwrap();
            tree.directory(pages.path(), "public_html").unwrap();
            tree.tar(1_700_000_000).unwrap()
        };
        let first = make();
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(pages.path().join("a.html"), "a.html").unwrap(); // touched: new mtime, same bytes
        assert_eq!(first, make());
        assert_eq!(gzip(&first).unwrap(), gzip(&make()).unwrap());

        let entries = listing(&first);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin/",
                "public_html/",
                "public_html/a.html",
                "public_html/sub/",
                "public_html/sub/b.css",
                "public_html/z.html",
                "server",
                "usr/",
                "usr/bin/",
                "bin/sh",
                "usr/bin/curl"
            ]
        );
        assert!(entries.iter().all(|e| e.3 == 1_700_000_000));
        let sh = entries.iter().find(|e| e.0 == "bin/sh").unwrap();
        assert_eq!((sh.1, sh.2, sh.4.as_deref()), (tar::EntryType::Link, 0o755, Some("server")));
        assert_eq!(entries.iter().find(|e| e.0 == "public_html/a.html").unwrap().2, 0o644);
    }

    #[test]
    fn bad_trees_are_refused() {
        let mut tree = Tree::default();
        tree.file("server", vec![1], 0o755).unwrap();
        assert!(tree.file("server", vec![2], 0o755).is_err(), "a path twice");
        assert!(tree.link("bin/sh", "missing").is_err(), "a link to nothing");
        assert!(tree.link("server/sh", "server").is_err(), "a file used as a directory");
        assert!(tree.file("../etc/passwd", vec![], 0o644).is_err());
        assert!(tree.file("/", vec![], 0o644).is_err());
    }

    #[test]
    fn gzip_header_has_no_time_or_name() {
        let gz = gzip(b"hello").unwrap();
        assert_eq!(&gz[..4], &[0x1f, 0x8b, 8, 0], "no FNAME flag");
        assert_eq!(&gz[4..8], &[0, 0, 0, 0], "mtime 0");
    }
}
