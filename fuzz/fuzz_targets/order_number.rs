#![no_main]
//! Fuzz target `order_number`: see `harness::order_number` for what it feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::order_number(data));
