//! What every layer shares: bad-input errors, names ECR accepts, image references, platforms,
//! progress on stderr, and facts about this checkout. Uses nothing else of this crate.

pub mod digest;
pub mod image_ref;
pub mod names;
pub mod platform;
pub mod progress;
pub mod repo;
pub mod service;

use std::fmt;

/// Bad input: exit 2, like clap's own usage errors, with nothing changed.
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// The innermost error of a chain: for a failed connection, the OS's own words.
pub fn root_cause<'a>(error: &'a (dyn std::error::Error + 'static)) -> &'a (dyn std::error::Error + 'static) {
    let mut root = error;
    while let Some(source) = root.source() {
        root = source;
    }
    root
}
