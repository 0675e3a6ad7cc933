#![no_main]
//! Fuzz target `messenger_signed`: see `harness::messenger_signed` for what it feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::messenger_signed(data));
