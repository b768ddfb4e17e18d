//! What the project's tasks share with the server: the sidecars real tasks run beside it and the
//! ports each wants (`cargo xtask verify` runs stand-ins for them on those ports), and what
//! publish bakes into an image for the server to read (`baked`).
//!
//! With the `fuzzing` feature (off by default), also the server's own modules and the fuzz
//! targets' bodies (`fuzzing`), for the `fuzz/` crate, which cannot link the binary they live in.

pub mod baked;
pub mod sidecars;

/// The binary's modules, compiled into the library only for the fuzz targets; most of what they
/// hold goes unused here. Never in the library's own test build: the binary's unit tests already
/// run their tests, and replay the fuzz inputs, so `--all-features` runs nothing twice.
macro_rules! binary_modules {
    ($($module:ident),*) => {
        $(
            #[cfg(all(feature = "fuzzing", not(test)))]
            #[allow(dead_code)]
            mod $module;
        )*
    };
}

binary_modules!(args, client, conns, control, fetch, health, json, metadata, ports, sandbox, shell, site, wire);

// The modules name this library `server`, as the binary does.
#[cfg(all(feature = "fuzzing", not(test)))]
extern crate self as server;

#[cfg(all(feature = "fuzzing", not(test)))]
pub mod fuzzing;
