//! `CMD-SHELL` health checks read and run by the built-in shell (`shell/`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| server::fuzzing::shell(data));
