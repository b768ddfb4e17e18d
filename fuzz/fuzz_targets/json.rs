//! Task metadata documents through the JSON reader (`json.rs`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| server::fuzzing::json(data));
