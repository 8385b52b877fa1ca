//! Fuzz target: see `cellsymphony::fuzz_targets::parquet_files`.
//!
//! The parquet crate panics on some corrupt pages; our reader catches those panics
//! (`catch_unwind`) and returns a typed error. libfuzzer-sys's panic hook aborts on *any*
//! panic, caught or not, so this target restores the default hook: a panic that escapes our
//! reader still reaches libfuzzer-sys's own `catch_unwind` and is reported as a crash.
#![no_main]

static RESTORE_DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    RESTORE_DEFAULT_HOOK.call_once(|| drop(std::panic::take_hook()));
    cellsymphony::fuzz_targets::parquet_files(data)
});
