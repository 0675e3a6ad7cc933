#![no_main]
//! Fuzz target `email`: see `harness::email` for what it feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::email(data));
