//! The docker build context, made in memory: the repository's `Dockerfile`, one platform's server
//! binary and `public_html/`, with fixed timestamps, owners, modes and order so that the same
//! sources always make the same bytes.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

/// Where the binary sits in the context; passed to the Dockerfile as `SERVER_BINARY`.
pub const BINARY_IN_CONTEXT: &str = "server";

pub fn build(dockerfile: &Path, binary: &Path, public_html: &Path, mtime: u64) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let dockerfile_bytes = fs::read(dockerfile).with_context(|| format!("reading {}", dockerfile.display()))?;
    append(&mut tar, "Dockerfile", &dockerfile_bytes, 0o644, mtime)?;
    let binary_bytes = fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    append(&mut tar, BINARY_IN_CONTEXT, &binary_bytes, 0o755, mtime)?;
    append_dir(&mut tar, public_html, "public_html", mtime)?;
    Ok(tar.into_inner()?)
}

fn append_dir(tar: &mut tar::Builder<Vec<u8>>, dir: &Path, name: &str, mtime: u64) -> Result<()> {
    let mut header = header(0o755, mtime);
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    tar.append_data(&mut header, format!("{name}/"), &[][..])?;
    let mut entries = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<std::io::Result<Vec<_>>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let file_name = entry.file_name();
        let child = format!("{name}/{}", file_name.to_str().with_context(|| format!("{} is not UTF-8", path.display()))?);
        let kind = entry.file_type()?;
        if kind.is_dir() {
            append_dir(tar, &path, &child, mtime)?;
        } else if kind.is_file() {
            let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            append(tar, &child, &bytes, 0o644, mtime)?;
        }
        // Symbolic links and other special files are left out, as the server would skip them.
    }
    Ok(())
}

fn append(tar: &mut tar::Builder<Vec<u8>>, name: &str, bytes: &[u8], mode: u32, mtime: u64) -> Result<()> {
    let mut header = header(mode, mtime);
    header.set_size(bytes.len() as u64);
    tar.append_data(&mut header, name, bytes)?;
    Ok(())
}

fn header(mode: u32, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mode(mode);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_sources_same_bytes_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        let html = dir.path().join("public_html");
        fs::create_dir_all(html.join("sub")).unwrap();
        for name in ["z.html", "a.html", "sub/b.css"] {
            fs::write(html.join(name), name).unwrap();
        }
        fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(dir.path().join("server"), "binary").unwrap();
        let make = || build(&dir.path().join("Dockerfile"), &dir.path().join("server"), &html, 1_700_000_000).unwrap();
        let first = make();
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(html.join("a.html"), "a.html").unwrap(); // touched: new mtime, same bytes
        assert_eq!(first, make());

        let mut archive = tar::Archive::new(&first[..]);
        let entries: Vec<(String, u32, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (e.path().unwrap().display().to_string(), h.mode().unwrap(), h.mtime().unwrap())
            })
            .collect();
        let names: Vec<&str> = entries.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["Dockerfile", "server", "public_html/", "public_html/a.html", "public_html/sub/", "public_html/sub/b.css", "public_html/z.html"]);
        assert!(entries.iter().all(|(_, _, mtime)| *mtime == 1_700_000_000));
        assert_eq!(entries[1].1, 0o755);
    }
}
