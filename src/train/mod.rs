//! Native training: labelled data preparation, the training loop, metrics and export.
//!
//! - [`dataset`]: the Xenium crop → normalised expression + reference labels + split.
//! - [`trainer`]: the one training loop (AdamW, class-weighted cross-entropy, per-epoch
//!   held-out evaluation, atomic checkpoints and exact resume) behind `train`, `pipeline` and
//!   `benchmark`.
//! - [`metrics`]: per-class precision / recall / F1.
//! - [`split`]: seeded stratified split, K folds (stratified or spatial blocks), validation
//!   carving and class weights.
//! - [`gene_tokens`]: the gene encoder option (summary tokens or one token per gene, chosen from training cells).
//! - [`export`]: model files (fp32 and int8 safetensors) with their metadata.
//! - [`embeddings`]: precomputed per-cell embeddings from `.npy` / `.safetensors`.
//! - [`logistic`]: the multinomial logistic-regression baseline.
//! - [`peers`]: scikit-learn and CellTypist peers on the same folds, through python.
//! - [`benchmark`]: all four classifiers and the baseline on one split, with tables and plots.
//! - [`image_only`]: the image-only (CUCA-style) classifier: joint CE + InfoNCE + distillation
//!   training, evaluation on spatial-block folds with gene-based peers and ablations, niche abundance.
//! - [`spatia`]: SPATIA's multi-scale model: region data, masked-reconstruction pre-training,
//!   fine-tuning, embeddings and the level ablation.
//! - [`spatia_scale`]: SPATIA's niches and hierarchy on N synthetic cells (the crop tiled), time
//!   and memory per stage.
//! - [`flow`]: morphology generation by conditional contrastive flow matching on OT pairs
//!   (patch autoencoder, velocity network, Euler/Heun sampling, FID/KID and morphology metrics).
//! - [`tune`]: `--tune`, a small learning-rate × weighting × smoothing search on validation cells.
//! - [`plot`]: confusion-matrix heatmaps as PNG with a built-in bitmap font.
//! - [`report`]: the morphology section of the main job's report (alignment check, patch mosaic).
//! - [`www`]: the web demo's data bundle.

pub mod benchmark;
pub mod contrastive;
pub mod dataset;
pub mod embeddings;
pub mod export;
pub mod flow;
pub mod gene_tokens;
pub mod image_only;
pub mod logistic;
pub mod metrics;
pub mod peers;
pub mod plot;
pub mod report;
pub mod slide;
pub mod spatia;
pub mod spatia_scale;
pub mod split;
pub mod trainer;
pub mod tune;
pub mod www;

pub use dataset::{prepare_crop, LabelOptions, PreparedCrop};
pub use gene_tokens::{select_genes, GeneEncoderOptions};
pub use metrics::{ClassMetrics, ClassificationReport};
pub use split::{
    balanced_class_weights, carve_validation, make_folds, spatial_block_folds, stratified_folds,
    stratified_split, Fold, FoldPlan, SplitKind,
};
pub use trainer::{
    argmax_rows, predict_cells, train_classifier, CellInputs, CheckpointOptions, ClassWeighting,
    EpochStats, LabelledSplit, LrSchedule, NoProgress, Recipe, Rows, TrainConfig, TrainProgress,
    TrainedClassifier,
};

/// Errors of the training layer.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Reading or labelling the data failed.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// Reading or writing a model file failed.
    #[error(transparent)]
    Model(#[from] crate::engine::ModelFileError),
    /// Too few labelled cells remain to train.
    #[error("only {found} labelled cells in {classes} classes remain after excluding ambiguous, low-count and rare-class cells; need at least {needed}. Lower --min-class-cells or --min-margin, or use a larger dataset")]
    TooFewCells {
        /// Labelled cells left.
        found: usize,
        /// Classes left.
        classes: usize,
        /// Minimum required.
        needed: usize,
    },
    /// A model file lacks the training metadata a command needs.
    #[error("model file {path} has no `{field}` in its training metadata; it was not written by `cellsymphony train` (retrain it, or pass the cells to evaluate explicitly)")]
    MissingTrainingField {
        /// The model file.
        path: String,
        /// The missing field.
        field: String,
    },
    /// A precomputed embedding file cannot be used.
    #[error("embedding file {path}: {problem}")]
    EmbeddingFile {
        /// The file.
        path: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// Cells of the cell table have no row in an embedding file matched by cell id.
    #[error("embedding file {path}: {missing} of {n_cells} cells have no row (row ids from {ids_from}; first missing: {first}); write a row for every cell of the table with its cell id (as in the cell table / predictions CSV), or pass the ids file that belongs to this embedding")]
    UnmatchedEmbeddingIds {
        /// The embedding file.
        path: String,
        /// Where the row ids were read from.
        ids_from: String,
        /// Cells without a row.
        missing: usize,
        /// Cells in the table.
        n_cells: usize,
        /// The first few missing cell ids, comma-separated.
        first: String,
    },
    /// A model input is missing or has the wrong shape.
    #[error("model input `{input}`: {detail}; provide it (e.g. patches from the DAPI image, --gene-embedding / --morph-embedding files with one row per cell) or choose a model that does not read it")]
    MissingInput {
        /// The input.
        input: &'static str,
        /// What was expected and found.
        detail: String,
    },
    /// A checkpoint cannot be written, read or resumed.
    #[error("checkpoint {path}: {problem}")]
    Checkpoint {
        /// The checkpoint file or folder.
        path: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// A run stopped on purpose after writing a checkpoint (`stop_after`).
    #[error("stopped after writing checkpoint {written} to {path}, as asked; run again with --resume to continue")]
    Interrupted {
        /// The checkpoint file.
        path: String,
        /// Checkpoints written by this run.
        written: usize,
    },
    /// Invalid options.
    #[error("{0}")]
    Options(String),
    /// The python peers (scikit-learn, CellTypist) failed.
    #[error(transparent)]
    Peer(#[from] peers::PeerError),
    /// Clustering, layout or plotting after training failed.
    #[error("analysis: {0}")]
    Analysis(String),
    /// An atomic write (temporary file + rename) failed.
    #[error(transparent)]
    Write(#[from] crate::util::AtomicWriteError),
    /// OT pairing failed (see [`crate::ot::OtError`]).
    #[error(transparent)]
    Ot(#[from] crate::ot::OtError),
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}
