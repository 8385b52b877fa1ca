//! Fuzz target: see `cellsymphony::fuzz_targets::model_file`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cellsymphony::fuzz_targets::model_file(data));
