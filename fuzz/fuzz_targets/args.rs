//! The server's arguments and environment, baked ports and control requests (`args.rs`, `control.rs`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| server::fuzzing::args(data));
