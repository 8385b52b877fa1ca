//! The burn-free inference engine: model file format, input preparation and the plain-Rust
//! CPU forward pass of the transformer classifiers (gene-only, spatial, dual-modality,
//! multi-input).
//!
//! Pipeline for raw counts `[cells, input_genes]`:
//! 1. [`align_to_panel`] reorders columns into the model's gene order → `[cells, G]`;
//! 2. [`normalise_log1p_cp10k`] → `x = ln(1 + counts * 1e4 / max(total, 1))`;
//! 3. [`model_input`] appends the centroid's sinusoid features for a model with a centroid
//!    token; a model with a morphology token also takes nucleus-centred patches `[cells, S, S]`
//!    ([`check_patches`]);
//! 4. [`cpu::forward_logits_with_patches`] (or
//!    [`crate::gpu::GpuClassifier::logits_with_patches`]) → logits `[cells, C]`;
//! 5. [`cpu::argmax_rows`] → class index per cell (names in [`ModelMeta::classes`]).
//!
//! The model computed (per cell, `T` tokens of width `D`):
//! `h = reshape(gene_embedding(x), [T, D]) + token_type`; `L` pre-norm encoder layers
//! `h += attn(LN1(h))` (scores plus `attention_bias` if present),
//! `h += fc2(GELU(fc1(LN2(h))))`; then `final_norm`, mean over tokens, and `head` → `[C]`.
//! With a morphology token, `x` is first widened by the ViT's pooled centre tokens:
//! `patch_embedding(unfold(patch) ‖ one-hot position)`, the ViT blocks, `morphology.norm`,
//! and the mean of the `k_nearest` tokens nearest the patch centre. See [`format`](mod@format) for the file layout.

pub mod cpu;
mod error;
pub mod format;
mod preprocess;

pub use error::ModelFileError;
pub use format::{
    centre_token_indices, expected_tensors, ClassifierConfig, ClassifierWeights, EncoderLayerWeights,
    EngineModel, LayerNormWeights, Linear, LinearWeight, ModelMeta, MorphologyTokenConfig,
    Normalisation, Quantization, SpatialTokenConfig, TensorSpec, VitWeights,
    ARCHITECTURE_DUAL_MODALITY, ARCHITECTURE_GENE_ONLY, ARCHITECTURE_MULTI_INPUT,
    ARCHITECTURE_SPATIAL, FORMAT_VERSION, METADATA_KEY, NORMALISATION_LOG1P_CP10K,
};
pub use preprocess::{
    align_to_panel, check_patches, model_input, normalise_log1p_cp10k, sinusoid_frequencies,
    spatial_features, vit_patch_rows, MAX_LISTED_MISSING_GENES,
};
