//! The document root, loaded into memory once, and the mapping from request paths to its files.
//!
//! Requests are answered from a map keyed by normalised path, never from the file system, so no
//! request can reach a file outside the root however its path is spelled.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs;
use std::path::Path;

use bytes::Bytes;
use hyper::header::HeaderValue;

/// Refuses to load document roots that would make the placeholder a memory hog.
const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Clone)]
pub struct Asset {
    pub body: Bytes,
    pub content_type: &'static str,
    /// The body's length as a header value, formatted once rather than for every request.
    pub content_length: HeaderValue,
}

impl Asset {
    fn new(body: Bytes, content_type: &'static str) -> Asset {
        let content_length = HeaderValue::from(body.len());
        Asset { body, content_type, content_length }
    }
}

pub struct Site {
    files: HashMap<String, Asset>,
    /// What lenient mode answers for a path with no file, whatever path a load balancer or health
    /// check asks for: the index page, else the health-check page, else a line of text.
    home: Asset,
}

/// Why a request path has no file to serve.
#[derive(Debug, PartialEq)]
pub enum Miss {
    /// Malformed or trying to leave the root: 400.
    BadPath,
    /// Well-formed but not there: 404.
    NotFound,
}

impl Site {
    /// Loads every regular file under `root`. Symbolic links are skipped: they could point outside.
    pub fn load(root: &Path) -> Result<Site, String> {
        let meta = fs::metadata(root).map_err(|e| format!("document root {}: {e}", root.display()))?;
        if !meta.is_dir() {
            return Err(format!("document root {} is not a directory", root.display()));
        }
        let home = Asset::new(Bytes::from_static(b"placeholder\n"), "text/plain; charset=utf-8");
        let mut site = Site { files: HashMap::new(), home };
        let mut total = 0;
        site.load_dir(root, "", &mut total)?;
        if site.files.is_empty() {
            return Err(format!("document root {} has no files to serve", root.display()));
        }
        if let Some(page) = ["/index.html", "/healthcheck.html"].iter().find_map(|page| site.files.get(*page)) {
            site.home = page.clone();
        }
        Ok(site)
    }

    fn load_dir(&mut self, dir: &Path, prefix: &str, total: &mut u64) -> Result<(), String> {
        let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue; // not requestable: request paths must be UTF-8
            };
            let kind = entry.file_type().map_err(|e| format!("{}: {e}", path.display()))?;
            let key = format!("{prefix}/{name}");
            if kind.is_dir() {
                self.load_dir(&path, &key, total)?;
            } else if kind.is_file() {
                let body = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                *total += body.len() as u64;
                if *total > MAX_TOTAL_BYTES {
                    return Err(format!("document root holds more than {} MiB", MAX_TOTAL_BYTES >> 20));
                }
                self.files.insert(key, Asset::new(Bytes::from(body), content_type(&name)));
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn contains(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    /// Finds the file for an origin-form request path (the part before any `?`).
    pub fn resolve(&self, raw_path: &str) -> Result<&Asset, Miss> {
        let path = normalise(raw_path)?;
        self.files.get(path.as_ref()).ok_or(Miss::NotFound)
    }

    /// Always a page: the file for `raw_path`, else `raw_path.html` (so `/healthcheck` finds
    /// `healthcheck.html`) or `raw_path/index.html`, else the home page. Only paths that
    /// `normalise` accepts are looked up, so this can reach no more than `resolve` can.
    pub fn resolve_leniently(&self, raw_path: &str) -> &Asset {
        let found = normalise(raw_path).ok().and_then(|path| {
            let extensions = ["", ".html", "/index.html"];
            extensions.iter().find_map(|extension| self.files.get(format!("{path}{extension}").as_str()))
        });
        found.unwrap_or(&self.home)
    }
}

/// Splits `raw` into segments, percent-decodes each, and rejects anything that is not a plain path
/// inside the root: dot segments, empty segments, encoded `/`, backslashes, NUL and other control
/// characters, invalid UTF-8. A trailing `/` means that directory's `index.html`.
pub(crate) fn normalise(raw: &str) -> Result<Cow<'_, str>, Miss> {
    if is_plain(raw) {
        return Ok(Cow::Borrowed(raw)); // what nearly every request asks for, looked up without a copy
    }
    decode(raw).map(Cow::Owned)
}

/// Whether `raw` is already what `decode` would make of it: printable ASCII with nothing to decode
/// (no `%`, no backslash), and no empty, `.` or `..` segment (so no trailing `/` either).
pub(crate) fn is_plain(raw: &str) -> bool {
    raw.len() > 1
        && raw.starts_with('/')
        && raw.bytes().all(|b| b.is_ascii_graphic() && b != b'%' && b != b'\\')
        && raw[1..].split('/').all(|segment| !matches!(segment, "" | "." | ".."))
}

pub(crate) fn decode(raw: &str) -> Result<String, Miss> {
    let rest = raw.strip_prefix('/').ok_or(Miss::BadPath)?;
    let mut path = String::with_capacity(raw.len() + 10);
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let decoded = percent_decode(segment.as_bytes()).ok_or(Miss::BadPath)?;
        let decoded = String::from_utf8(decoded).map_err(|_| Miss::BadPath)?;
        if decoded.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
            return Err(Miss::BadPath);
        }
        match decoded.as_str() {
            "." | ".." => return Err(Miss::BadPath),
            "" if last => path.push_str("/index.html"),
            "" => return Err(Miss::BadPath),
            s => {
                path.push('/');
                path.push_str(s);
            }
        }
    }
    Ok(path)
}

fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hi = (*bytes.next()? as char).to_digit(16)?;
            let lo = (*bytes.next()? as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_normalise() {
        assert_eq!(normalise("/"), Ok("/index.html".into()));
        assert_eq!(normalise("/healthcheck.html"), Ok("/healthcheck.html".into()));
        assert_eq!(normalise("/a/b.css"), Ok("/a/b.css".into()));
        assert_eq!(normalise("/docs/"), Ok("/docs/index.html".into()));
        assert_eq!(normalise("/my%20page.html"), Ok("/my page.html".into()));
    }

    #[test]
    fn escapes_are_refused() {
        for bad in [
            "",
            "index.html",
            "/..",
            "/../etc/passwd",
            "/a/../../b",
            "/./index.html",
            "/%2e%2e/x",
            "/%2E%2e%2fx",
            "/..%2findex.html",
            "/a%2f..%2f..%2fetc",
            "/a%2fb.html",
            "/%2fetc%2fpasswd",
            "/..\\x",
            "/%5c..%5cx",
            "/a%00.html",
            "/%",
            "/%zz",
            "/%c0%ae%c0%ae/",
            "//etc/passwd",
            "/a//b",
        ] {
            assert_eq!(normalise(bad), Err(Miss::BadPath), "{bad:?}");
        }
    }

    /// What every accepted path must look like: absolute, no dot or empty segments, nothing that
    /// a file system could read as a separator or terminator.
    fn assert_plain(input: &str, path: &str) {
        assert!(path.starts_with('/'), "{input:?} -> {path:?}");
        assert!(!path.contains("//") && !path.contains('\\'), "{input:?} -> {path:?}");
        assert!(!path.chars().any(char::is_control), "{input:?} -> {path:?}");
        assert!(path.split('/').skip(1).all(|s| !s.is_empty() && s != "." && s != ".."), "{input:?} -> {path:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5000))]

        #[test]
        fn any_target_normalises_to_a_plain_path_or_is_refused(target in "\\PC*") {
            if let Ok(path) = normalise(&target) {
                assert_plain(&target, &path);
            }
        }

        #[test]
        fn paths_taken_as_they_are_are_what_decoding_gives(target in "(/[a-z.%\\\\~ -]{0,3}){0,5}") {
            assert_eq!(normalise(&target).map(Cow::into_owned), decode(&target));
        }

        #[test]
        fn targets_built_from_traversal_pieces_never_escape(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "/", "..", ".", "%2e", "%2E", "%2f", "%2F", "%5c", "\\", "%00", "%", "%c0%ae", "%252e",
                    "a", "index.html", "docs", "?x=..", "%ff", "%20",
                ]),
                0..12,
            )
        ) {
            let target = format!("/{}", pieces.concat());
            let path_part = target.split('?').next().unwrap();
            if let Ok(path) = normalise(path_part) {
                assert_plain(&target, &path);
            }
        }
    }

    #[test]
    fn lenient_lookups_try_html_then_index_then_the_home_page() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("docs")).unwrap();
        fs::write(root.join("index.html"), "index").unwrap();
        fs::write(root.join("healthcheck.html"), "ok").unwrap();
        fs::write(root.join("docs/index.html"), "docs").unwrap();
        fs::write(dir.path().join("secret.txt"), "secret").unwrap();
        let site = Site::load(&root).unwrap();
        let body = |path: &str| String::from_utf8(site.resolve_leniently(path).body.to_vec()).unwrap();
        for (path, expected) in [
            ("/healthcheck", "ok"),
            ("/healthcheck.html", "ok"),
            ("/docs", "docs"),
            ("/docs/", "docs"),
            ("/", "index"),
            ("/health", "index"),
            ("/../secret.txt", "index"),
            ("/%2e%2e/secret.txt", "index"),
            ("", "index"),
            ("/%", "index"),
        ] {
            assert_eq!(body(path), expected, "{path:?}");
        }

        // With no index page, the health-check page stands in; with neither, a line of text.
        fs::remove_file(root.join("index.html")).unwrap();
        assert_eq!(Site::load(&root).unwrap().resolve_leniently("/x").body.as_ref(), b"ok");
        fs::remove_file(root.join("healthcheck.html")).unwrap();
        let site = Site::load(&root).unwrap();
        assert_eq!(
            (site.resolve_leniently("/x").body.as_ref(), site.resolve_leniently("/x").content_type),
            (&b"placeholder\n"[..], "text/plain; charset=utf-8")
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("index.HTML"), "text/html; charset=utf-8");
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("README"), "application/octet-stream");
    }
}
