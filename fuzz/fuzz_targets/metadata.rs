//! Container and task metadata documents, and the ports guessed from them (`metadata.rs`, `ports.rs`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| server::fuzzing::metadata(data));
