//! burn modules (native only), built from the architecture spec shared with the engines
//! ([`crate::engine::ClassifierConfig`]).
//!
//! - [`encoder`]: pre-norm transformer encoder (multi-head self-attention + GELU FFN), written
//!   out explicitly so the WGSL engine can mirror it operation for operation.
//! - [`encoders`]: per-modality token sources (genes, precomputed embeddings, the morphology
//!   ViT, the sinusoidal centroid encoding).
//! - [`classifier`]: the one [`Classifier`] module: the spec's token sources as optional parts,
//!   modality embeddings, an optional relative attention bias, encoder, pool and head.
//! - [`contrastive`]: gene and morphology projection networks aligned by bidirectional InfoNCE.
//! - [`image_only`]: the image-only (CUCA-style) classifier: patch ViT + head, aligned to
//!   and distilled from an expression encoder while training.
//! - [`spatia`]: SPATIA's multi-scale model (cell cross-attention, niche and tissue levels,
//!   fusion, masked-reconstruction decoders), built from [`crate::engine::spec::SpatiaSpec`].
//! - [`flow`]: morphology generation: the patch autoencoder, the perturbation encoder and the
//!   FiLM-conditioned velocity network of the conditional flow ([`crate::train::flow`]).
//! - [`convert`]: [`Classifier`] ⇄ [`crate::engine::EngineModel`] (the safetensors format
//!   shared with the browser engine), for every architecture.

pub mod classifier;
pub mod contrastive;
pub mod convert;
pub mod encoder;
pub mod encoders;
pub mod flow;
pub mod image_only;
pub mod spatia;

pub use classifier::{CellBatch, Classifier, ClassifierOptions, ModelInputs};
pub use contrastive::{
    info_nce_loss, ContrastiveAligner, ContrastiveAlignerConfig, ProjectionNet, ProjectionNetConfig, SharedSpaceConfig,
};
pub use encoders::{
    EmbeddingEncoder, EmbeddingEncoderConfig, GeneEncoder, GeneEncoderConfig, GeneTokenEncoder, MorphologyEncoder,
    MorphologyEncoderConfig, SpatialEncoder, SpatialEncoderConfig,
};

pub use image_only::{ImageOnlyConfig, ImageOnlyLosses, ImageOnlyModel};

pub use encoder::{EncoderLayer, EncoderLayerConfig, TransformerEncoder, TransformerEncoderConfig};
