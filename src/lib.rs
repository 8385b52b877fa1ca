//! # cellsymphony
//!
//! Multimodal single-cell analysis of spatial transcriptomics.
//!
//! The crate compiles twice:
//! - **natively** (features `train`, `cli`): data readers, burn models, training, export to
//!   safetensors (fp32 and int8), and the same inference engine as the browser;
//! - **to wasm32** (`--no-default-features`): the burn-free inference engine ([`engine`],
//!   [`quant`], [`gpu`]) behind the wasm-bindgen API in `web.rs`.
//!
//! Layout, one folder per concept:
//! - [`analysis`]: k-means, UMAP, SingleR-style reference annotation, cluster enrichment and
//!   quality metrics (pure Rust).
//! - [`plot`]: PNG figures (scatter, spatial cluster map, heatmap) drawn in plain Rust.
//! - [`data`]: Xenium readers, DAPI image, nucleus-centred patches, reference profiles.
//! - [`engine`]: model file format (safetensors + JSON metadata) and the plain-Rust CPU forward.
//! - [`quant`]: per-output-channel symmetric int8 quantisation and u32 packing.
//! - [`gpu`]: wgpu context with a pipeline cache; each kernel's launcher declares its WGSL and
//!   constants, beside its reference.
//! - `model`, `train` (native only): burn modules, training loop, metrics, export.
//! - [`util`]: the bottom layer: seeded RNG, row-parallel loops, atomic file writes, argmax.

pub mod analysis;
pub mod data;
pub mod engine;
pub mod gpu;
pub mod ot;
pub mod plot;
pub mod quant;
pub mod util;

#[cfg(all(feature = "train", not(target_arch = "wasm32")))]
pub mod model;
#[cfg(all(feature = "train", not(target_arch = "wasm32")))]
pub mod train;

#[cfg(all(feature = "native-io", not(target_arch = "wasm32")))]
pub mod fuzz_targets;

#[cfg(target_arch = "wasm32")]
mod web;
