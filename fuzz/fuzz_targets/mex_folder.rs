//! Fuzz target: see `cellsymphony::fuzz_targets::mex_folder`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cellsymphony::fuzz_targets::mex_folder(data));
