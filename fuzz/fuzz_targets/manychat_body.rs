#![no_main]
//! Fuzz target `manychat_body`: see `harness::manychat_body` for what it feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::manychat_body(data));
