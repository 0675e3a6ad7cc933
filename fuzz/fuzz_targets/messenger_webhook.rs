#![no_main]
//! Fuzz target `messenger_webhook`: see `harness::messenger_webhook` for what it feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::messenger_webhook(data));
