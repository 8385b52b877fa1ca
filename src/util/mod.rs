//! The bottom layer: small helpers every other module may use and that use nothing of the
//! crate themselves.
//!
//! - [`rng`]: SplitMix64, the seeded generator of tests, shuffles and random test models.
//! - [`parallel`]: row-chunked parallel loops (rayon natively, serial on wasm32).
//! - [`argmax_rows`]: class index per row of a logits matrix (NaN is never the maximum).
//! - [`atomic_write`] (native only): write a temporary file beside the target, then rename.
//! - [`memory`] (native only): this process's resident and peak memory.

mod argmax;
#[cfg(not(target_arch = "wasm32"))]
pub mod atomic_write;
#[cfg(not(target_arch = "wasm32"))]
pub mod memory;
pub mod parallel;
pub mod rng;

pub use argmax::argmax_rows;
#[cfg(not(target_arch = "wasm32"))]
pub use atomic_write::{write_atomic, AtomicFile, AtomicWriteError};
