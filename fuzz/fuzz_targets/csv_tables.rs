//! Fuzz target: see `cellsymphony::fuzz_targets::csv_tables`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cellsymphony::fuzz_targets::csv_tables(data));
