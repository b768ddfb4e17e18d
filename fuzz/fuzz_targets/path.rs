//! Request paths mapped to the document root (`site.rs`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| server::fuzzing::path(data));
