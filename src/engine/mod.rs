//! The burn-free inference engine: model file format, input preparation, the plain-Rust
//! reference ops and CPU forward pass, and the GPU classifier built on the [`crate::gpu`]
//! kernel launchers, for the transformer classifiers (gene-only, spatial, dual-modality,
//! multi-input).
//!
//! One entry point, [`Classifier`] (CPU or GPU backend), takes the cells a caller holds
//! (dense or CSR values `[cells, input_genes]`, gene names, optional centroids and patches):
//! 1. [`Classifier::prepare`] validates them, reorders the columns into the model's gene order
//!    ([`align_to_panel`]), applies the model file's [`Normalisation`] (log1p-CP10k of raw
//!    counts, values as stored, or arcsinh, each optionally standardised per gene), appends
//!    the centroid's sinusoid features for a model with a centroid token ([`model_input`])
//!    and checks the nucleus-centred patches `[cells, S, S]` of a model with a morphology
//!    token ([`check_patches`]);
//! 2. [`Classifier::logits`] runs [`cpu::forward_logits_with_patches`] or
//!    [`GpuClassifier::logits_with_patches`] → logits `[cells, C]`;
//! 3. [`Classifier::predict`] → class index (names in [`ModelMeta::classes`]) and softmax
//!    confidence per cell.
//!
//! The model computed (per cell, `T` tokens of width `D`):
//! `h = reshape(gene_embedding(x), [T, D]) + token_type`; `L` pre-norm encoder layers
//! `h += attn(LN1(h))` (scores plus `attention_bias` if present),
//! `h += fc2(GELU(fc1(LN2(h))))`; then `final_norm`, mean over tokens, and `head` → `[C]`.
//! With a morphology token, `x` is first widened by the ViT's pooled centre tokens:
//! `patch_embedding(unfold(patch) ‖ one-hot position)`, the ViT blocks, `morphology.norm`,
//! and the mean of the `k_nearest` tokens nearest the patch centre. See [`format`](mod@format) for the file layout.
//!
//! Besides the classifiers, [`flow`](mod@flow) samples the flow-matching morphology generator
//! (`cellsymphony flow`) without burn, on the CPU or, as [`GpuFlowSampler`], on the GPU, and
//! [`spatia`](mod@spatia) runs SPATIA's cell level on the CPU or, as [`GpuSpatiaCell`], on the
//! GPU.

mod classifier;
pub mod cpu;
mod error;
pub mod flow;
mod flow_gpu;
pub mod format;
pub mod gemm;
mod gemm_i8;
mod gpu;
pub mod normalisation;
pub mod ops;
mod preprocess;
mod protein;
pub mod spatia;
mod spatia_gpu;
pub mod spatia_hierarchy;
pub mod spec;

pub use classifier::{
    softmax_max, Backend, Classifier, Prediction, PreparedCells, UNCLASSIFIED, UNCLASSIFIED_LABEL,
};
pub use cpu::Int8Gemm;
pub use error::{EngineError, ModelFileError};
pub use format::{
    centre_token_indices, expected_tensors, Architecture, ClassifierConfig, ClassifierWeights, EncoderLayerWeights,
    GeneEncoderKind, GeneSelection, GeneTokenPanel, DEFAULT_MAX_GENE_TOKENS, MAX_GENE_TOKENS,
    EngineModel, LayerNormWeights, Linear, LinearWeight, ModelMeta, MorphologyTokenConfig,
    Normalisation, Quantization, SpatialTokenConfig, Standardisation, TensorSpec, TokenSources,
    Transform, VitWeights, ARCHITECTURE_DUAL_MODALITY, ARCHITECTURE_GENE_ONLY,
    ARCHITECTURE_IMAGE_ONLY, ARCHITECTURE_MULTI_INPUT, ARCHITECTURE_SPATIAL, CHECKSUM_KEY, FORMAT_VERSION, MAX_PARAMETER_MAGNITUDE, METADATA_KEY,
    NORMALISATION_ARCSINH, NORMALISATION_AS_STORED, NORMALISATION_LOG1P_CP10K,
};
pub use protein::{ProteinChannels, MIN_PROTEIN_STD};
pub use spatia::{CrossBlockWeights, SpatiaQueries, SpatiaCellMeta, SpatiaCellModel, SpatiaCellOutput, SpatiaCellWeights, SPATIA_METADATA_KEY};
pub use spatia_hierarchy::{
    NicheCentroids, NicheLevelWeights, SpatiaContextWeights, SpatiaCpu, SpatiaHierarchyMeta, SpatiaHierarchyModel, SpatiaRegionInput, SpatiaRegionOutput,
    SpatiaSlideInput, SpatiaSlideOutput, SpatiaSlidePlan, SpatiaSlideRegion,
    TissueLevelWeights, SPATIA_HIERARCHY_FORMAT_VERSION, SPATIA_HIERARCHY_METADATA_KEY,
};
pub use gpu::{GpuClassifier, DEFAULT_CHUNK_CELLS};
pub use flow_gpu::{GpuFlowSampler, DEFAULT_FLOW_CHUNK_PAIRS};
pub use spatia_gpu::{GpuSpatia, GpuSpatiaCell, DEFAULT_SPATIA_CHUNK_CELLS};
pub use preprocess::{
    align_to_panel, check_patches, model_input, normalise_log1p_cp10k, sinusoid_frequencies,
    spatial_features, vit_patch_rows, MAX_LISTED_MISSING_GENES,
};
