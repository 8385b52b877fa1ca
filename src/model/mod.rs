//! burn modules (native only). Each module has a `Config` with `init(&device)`.
//!
//! - [`encoder`]: pre-norm transformer encoder (multi-head self-attention + GELU FFN), written
//!   out explicitly so the WGSL engine can mirror it operation for operation.
//! - [`gene_only`]: CellSymphony's unimodal (gene-only) classifier.
//! - [`encoders`]: per-modality input encoders (genes, precomputed embeddings, the morphology
//!   ViT, the sinusoidal centroid encoding).
//! - [`classifiers`]: the spatial, dual-modality and multi-input classifiers and the
//!   [`CellClassifier`] trait shared by all four classifiers.
//! - [`contrastive`]: gene and morphology projection networks aligned by bidirectional InfoNCE.
//! - [`convert`]: burn module ⇄ [`crate::engine::EngineModel`] (the safetensors format shared
//!   with the browser engine).

pub mod classifiers;
pub mod contrastive;
pub mod convert;
pub mod encoder;
pub mod encoders;
pub mod gene_only;

pub use classifiers::{
    CellBatch, CellClassifier, DualModalityClassifier, DualModalityClassifierConfig, ModelInputs,
    MultiInputClassifier, MultiInputClassifierConfig, SpatialClassifier, SpatialClassifierConfig,
};
pub use contrastive::{
    info_nce_loss, ContrastiveAligner, ContrastiveAlignerConfig, ProjectionNet, ProjectionNetConfig,
};
pub use encoders::{
    EmbeddingEncoder, EmbeddingEncoderConfig, GeneEncoder, GeneEncoderConfig, MorphologyEncoder,
    MorphologyEncoderConfig, SpatialEncoder, SpatialEncoderConfig,
};

pub use encoder::{EncoderLayer, EncoderLayerConfig, TransformerEncoder, TransformerEncoderConfig};
pub use gene_only::{GeneOnlyClassifier, GeneOnlyClassifierConfig};
