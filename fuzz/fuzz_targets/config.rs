#![no_main]
//! Fuzz target `config`: see `harness::config` for what it feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::config(data));
