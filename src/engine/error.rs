//! The error type of the engine layer (model files, metadata, input preparation, the CPU and
//! GPU forward passes).

use std::path::PathBuf;

use crate::data::DataError;
use crate::gpu::GpuError;

/// The engine's error under its former name (every variant is the same); code that reads or
/// writes model files may keep using it.
pub type ModelFileError = EngineError;

/// Everything that can be wrong with a model file, with the cells given to a model, or with
/// running it on the CPU or the GPU.
///
/// Messages say what was wrong and what to do about it; tensor errors name the tensor.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Reading or writing a model file failed at the OS level.
    #[error("cannot {action} model file {path}: {source}")]
    Io {
        /// What was being done (`read`, `write`, `rename`, ...).
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A model file at `path` failed to parse or validate; `source` says why.
    #[error("{path}: {source}")]
    InFile {
        /// The file that failed.
        path: PathBuf,
        /// The underlying problem.
        #[source]
        source: Box<EngineError>,
    },

    /// The bytes are not a well-formed safetensors file (truncated, corrupt header, ...).
    #[error("not a valid safetensors model file ({reason}); the file is truncated or corrupt: re-download or re-export it")]
    Safetensors {
        /// The parser's description of the problem.
        reason: String,
    },

    /// The safetensors header has no `__metadata__["cellsymphony"]` entry.
    #[error("the safetensors file has no `__metadata__` entry \"cellsymphony\"; it was not exported by cellsymphony (export it with `cellsymphony export` or the Python exporter)")]
    MissingMetadata,

    /// The `cellsymphony` metadata entry is not the expected JSON.
    #[error("invalid cellsymphony metadata JSON: {reason}; re-export the model with a matching exporter")]
    InvalidMetadata {
        /// What was wrong.
        reason: String,
    },

    /// The metadata's `format_version` is not one this build can read.
    #[error("model format_version {found} is not supported (this build reads versions 1 to {supported}); update cellsymphony or re-export the model")]
    UnsupportedVersion {
        /// Version found in the file.
        found: u64,
        /// Version this build understands.
        supported: u32,
    },

    /// The metadata names an architecture this engine cannot run.
    #[error("model architecture {found:?} is not supported by the inference engine (supported: \"gene_only\", \"spatial\", \"dual_modality\", \"multi_input\"); export the model with this version of cellsymphony")]
    UnsupportedArchitecture {
        /// Architecture found in the file.
        found: String,
    },

    /// The config or the gene/class lists in the metadata are inconsistent.
    #[error("invalid model config: {reason}")]
    InvalidConfig {
        /// What was wrong.
        reason: String,
    },

    /// A tensor required by the config is absent from the file.
    #[error("missing tensor `{name}` (expected {expected}){hint}; the file does not match its own config: re-export the model")]
    MissingTensor {
        /// Tensor name.
        name: String,
        /// Expected dtype and shape, e.g. `F32 [64, 313]`.
        expected: String,
        /// Extra explanation (may be empty).
        hint: String,
    },

    /// A tensor has the wrong element type.
    #[error("tensor `{name}` has dtype {found}, expected {expected}; re-export the model")]
    WrongDtype {
        /// Tensor name.
        name: String,
        /// Expected dtype (`F32` or `I8`).
        expected: String,
        /// Dtype found.
        found: String,
    },

    /// A tensor's shape does not match the config.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?} from the model config; re-export the model")]
    WrongShape {
        /// Tensor name.
        name: String,
        /// Shape implied by the config.
        expected: Vec<usize>,
        /// Shape found.
        found: Vec<usize>,
    },

    /// A tensor contains NaN or infinity.
    #[error("tensor `{name}` contains a non-finite value at flat index {index}; the model diverged during training or the file is corrupt")]
    NonFinite {
        /// Tensor name.
        name: String,
        /// Flat index of the first bad value.
        index: usize,
    },

    /// The file contains a tensor that the config does not explain.
    #[error("tensor `{name}` holds {value:e} at flat index {index}, beyond the plausible range ±{limit:e} of a trained model; the file is corrupt: re-download or re-export it")]
    ImplausibleValue {
        /// Tensor name.
        name: String,
        /// Flat index of the first implausible value.
        index: usize,
        /// The value.
        value: f32,
        /// The bound.
        limit: f32,
    },
    /// The forward pass produced a non-finite logit.
    #[error("the model produced a non-finite logit ({value}) for cell {cell}; the first non-finite value appears in {stage}; the model file is corrupt or the cell's input holds extreme values: check the file (re-export it) and the input")]
    NonFiniteOutput {
        /// First cell (row) with a non-finite logit.
        cell: usize,
        /// The value.
        value: f32,
        /// The layer / stage of the forward where the cell's first non-finite value appears
        /// (found by re-running the CPU reference on that cell, layer by layer).
        stage: String,
    },
    /// The tensors do not hash to the checksum the exporter stored: the file was altered.
    #[error("model file content checksum mismatch (stored crc32 {stored}, computed {computed}): the tensors were altered after export (bit flip, partial copy); re-download or re-export the model")]
    ChecksumMismatch {
        /// The checksum in the file's metadata.
        stored: String,
        /// The checksum of the tensors read.
        computed: String,
    },
    /// A tensor that the config does not explain.
    #[error("unexpected tensor `{name}` for architecture gene_only with quantization {quantization}; the metadata does not match the tensors: re-export the model")]
    UnexpectedTensor {
        /// Tensor name.
        name: String,
        /// The metadata's quantization.
        quantization: String,
    },

    /// Inputs of flow sampling (`FlowSampler::sample`) that cannot be used.
    #[error("invalid flow sampling input: {reason}")]
    FlowInput {
        /// What is wrong and what to pass instead.
        reason: String,
    },

    /// An in-memory model is internally inconsistent (raised when saving or building one).
    #[error("inconsistent model: {reason}")]
    Inconsistent {
        /// What was wrong.
        reason: String,
    },

    /// The input lacks genes the model needs.
    #[error("gene panel mismatch: the input lacks {n_missing} of the model's {n_model_genes} genes (first missing: {}){}; supply counts for these genes (zeros if they were not measured) or use a model trained on this panel", .missing.join(", "), if *.n_missing > .missing.len() { ", ..." } else { "" })]
    GenePanelMismatch {
        /// Names of the first (up to 20) missing genes, in model order.
        missing: Vec<String>,
        /// Total number of missing genes.
        n_missing: usize,
        /// Number of genes the model expects.
        n_model_genes: usize,
    },

    /// The same gene name appears twice in the input's gene list.
    #[error("input gene {name:?} appears more than once (columns {first} and {second}); merge or rename duplicated columns")]
    DuplicateInputGene {
        /// Duplicated gene name.
        name: String,
        /// First column.
        first: usize,
        /// Second column.
        second: usize,
    },

    /// The counts slice does not have `cells * genes` values.
    #[error("counts have {found} values, which is not a whole number of cells of {n_genes} genes; pass a row-major [cells, genes] matrix")]
    CountsShape {
        /// Number of values found.
        found: usize,
        /// Genes per cell (columns).
        n_genes: usize,
    },

    /// An input value is not what the model's normalisation reads: a negative, NaN or infinite
    /// count for `log1p_cp10k`, a non-finite value for `as_stored` or `arcsinh`.
    #[error("invalid input value {value} for cell {cell}, gene {gene:?}: this model reads {expected}")]
    InvalidCount {
        /// Cell (row) index.
        cell: usize,
        /// Gene name.
        gene: String,
        /// The offending value.
        value: f32,
        /// What the model's normalisation reads, e.g. "raw counts (finite, >= 0)".
        expected: &'static str,
    },

    /// The model reads protein channels (`meta.proteins`, trained with `--protein`) that the
    /// input lacks.
    #[error("protein channels missing: the model reads {n_model_markers} protein markers beside the genes and the input lacks {} (first missing: {}); pass the bundle's \"Protein Expression\" features (XOA ≥ 4: cell_feature_matrix.h5 or .zarr.zip) with the counts, or use a model trained without --protein", .n_missing, .missing.join(", "))]
    ProteinPanelMismatch {
        /// Names of the first (up to 20) missing markers, in model order.
        missing: Vec<String>,
        /// Total number of missing markers.
        n_missing: usize,
        /// Number of markers the model reads.
        n_model_markers: usize,
    },

    /// Protein values that are not `[cells, markers]` or not finite.
    #[error("invalid protein input: {reason}")]
    ProteinInput {
        /// What is wrong, naming the marker, cell and value.
        reason: String,
    },

    /// The metadata's `normalisation` entry is invalid: an unknown kind, a missing or
    /// out-of-range parameter, or standardisation vectors of the wrong length or with a
    /// non-finite or non-positive value.
    #[error("invalid model normalisation: `{field}` is {value}; expected {expected}; re-export the model")]
    InvalidNormalisation {
        /// The offending field, e.g. `normalisation.kind` or `normalisation.std[3]`.
        field: String,
        /// Its value as found.
        value: String,
        /// What is accepted there.
        expected: String,
    },

    /// The cells handed to [`crate::engine::Classifier::prepare`] are malformed (shapes,
    /// CSR structure, gene names, centroids, patches).
    #[error(transparent)]
    Input(#[from] DataError),

    /// Model input of the wrong shape reached a forward pass (inputs not made by
    /// [`crate::engine::Classifier::prepare`]).
    #[error("{what}: expected {expected} values, found {found}")]
    InputShape {
        /// Which input, with its expected shape.
        what: String,
        /// Expected number of values.
        expected: usize,
        /// Number found.
        found: usize,
    },

    /// The GPU engine failed (no adapter, device limits, kernel build, readback, ...).
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

impl EngineError {
    /// Attaches a file path to the error (used by `load`).
    pub fn in_file(self, path: impl Into<PathBuf>) -> Self {
        EngineError::InFile {
            path: path.into(),
            source: Box::new(self),
        }
    }
}

impl From<safetensors::SafeTensorError> for EngineError {
    fn from(e: safetensors::SafeTensorError) -> Self {
        EngineError::Safetensors {
            reason: e.to_string(),
        }
    }
}
