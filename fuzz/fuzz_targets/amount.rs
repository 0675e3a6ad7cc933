#![no_main]
//! Fuzz target `amount`: see `harness::amount` for what it feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::amount(data));
