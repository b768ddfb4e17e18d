//! curl and wget arguments and URLs, run against a stand-in placeholder (`fetch.rs`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| server::fuzzing::fetch(data));
