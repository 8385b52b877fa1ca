//! burn modules (native only). Each module has a `Config` with `init(&device)`.
//!
//! - [`encoder`]: pre-norm transformer encoder (multi-head self-attention + GELU FFN), written
//!   out explicitly so the WGSL engine can mirror it operation for operation.
//! - [`gene_only`]: CellSymphony's unimodal (gene-only) classifier.
//! - [`convert`]: burn module ⇄ [`crate::engine::EngineModel`] (the safetensors format shared
//!   with the browser engine).

pub mod convert;
pub mod encoder;
pub mod gene_only;

pub use encoder::{EncoderLayer, EncoderLayerConfig, TransformerEncoder, TransformerEncoderConfig};
pub use gene_only::{GeneOnlyClassifier, GeneOnlyClassifierConfig};
