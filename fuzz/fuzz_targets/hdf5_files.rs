//! Fuzz target: see `cellsymphony::fuzz_targets::hdf5_files`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cellsymphony::fuzz_targets::hdf5_files(data));
