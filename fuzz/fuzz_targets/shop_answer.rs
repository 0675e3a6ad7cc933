#![no_main]
//! Fuzz target `shop_answer`: see `harness::shop_answer` for what it feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::shop_answer(data));
