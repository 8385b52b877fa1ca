//! Test support shared by the integration tests (`mod common;` in a test file; no tests here).
//!
//! - [`data`]: the downloaded example data (BIDCell Xenium crop, scanpy's pbmc68k_reduced),
//!   parsed once per test binary. Missing data FAILS the test, saying to run
//!   `scripts/setup.sh`: CI downloads it first, so a missing file is a broken setup.
//! - [`flow`]: a seeded random flow model (`model.safetensors` tensor names and layouts) for
//!   the burn-free flow samplers.
//! - [`spatia_cell`]: a seeded random SPATIA cell-level engine model (no burn).
//! - [`gpu`]: [`gpu_or_skip`] opens the wgpu context (lavapipe works) or fails; with
//!   `CELLSYMPHONY_ALLOW_NO_GPU=1` it prints a `SKIPPED: no GPU adapter: …` line and the test
//!   returns; `CELLSYMPHONY_REQUIRE_GPU=1` (set by `scripts/test.sh`) always fails without one.
//! - [`python`]: python3 reference scripts of `tests/python/`, failing with install
//!   instructions, or skipping loudly with `CELLSYMPHONY_ALLOW_NO_PYTHON=1`.
//! - [`quant`]: fp32-vs-int8 checks (logit bound, class flips only on near ties).
//! - [`scratch`]: [`Scratch`] (a `tempfile::TempDir`, removed on drop) and [`fixture_dir`]
//!   (per-process fixture folders under cargo's target tmp dir, written once per binary).
//! - [`spatia`]: a seeded random SPATIA region and model for the engine parity tests.
//! - [`synth`]: small seeded synthetic inputs several suites build (names, random engine
//!   models, clustered point clouds, gzip).
//!
//! - [`burn_rng_lock`]: burn's backend RNG is process-global (`B::seed` then module init), so
//!   tests that compare two seeded burn runs in one process hold this lock.
//!
//! Each test binary uses a subset, hence `allow(dead_code)`.
#![allow(dead_code, unused_imports)]

#[cfg(feature = "native-io")]
pub mod data;
pub mod flow;
pub mod spatia_cell;
#[cfg(all(feature = "native-io", not(target_arch = "wasm32")))]
pub mod gpu;
#[cfg(all(feature = "native-io", not(target_arch = "wasm32")))]
pub mod ot;
pub mod python;
pub mod quant;
pub mod scratch;
#[cfg(feature = "train")]
pub mod spatia;
pub mod synth;

#[cfg(feature = "native-io")]
pub use data::{
    crop_cells, crop_dapi, crop_files, crop_nuclei, crop_transcripts, data_dir, scanpy_files,
};
#[cfg(all(feature = "native-io", not(target_arch = "wasm32")))]
pub use gpu::gpu_or_skip;
pub use python::{python_or_skip, python_script, run_python};
pub use scratch::{fixture_dir, scratch, Scratch};
pub use synth::{gzip, max_abs_diff, names, random_model};

/// Serialises the tests of one binary that seed burn's process-global RNG and then build
/// modules: another test drawing from it in between would change the weights (cargo runs a
/// binary's tests on several threads). A poisoned lock (a failed test) is still a lock.
pub fn burn_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
