#![no_main]
//! Fuzz target `shop_webhook`: see `harness::shop_webhook` for what it feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::shop_webhook(data));
