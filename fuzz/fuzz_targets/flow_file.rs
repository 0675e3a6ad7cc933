#![no_main]
//! Fuzz target `flow_file`: see `harness::flow_file` for what it feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::flow_file(data));
