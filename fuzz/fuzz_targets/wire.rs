//! Raw request bytes at the request-head gate (`wire::judge`, `wire::split_requests`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| server::fuzzing::wire(data));
