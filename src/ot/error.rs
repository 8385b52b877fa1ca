//! The error type of the optimal-transport layer.

use crate::gpu::GpuError;

/// Everything that can go wrong in PCA, Sinkhorn, pairing and signatures.
///
/// No function of [`crate::ot`] panics on bad input; each problem is reported as one of these,
/// with a message that says what to change.
#[derive(Debug, thiserror::Error)]
pub enum OtError {
    /// An input slice does not have the length its shape implies.
    #[error("{what}: expected {expected} values, found {found}; check the row count and dimension passed with it")]
    Shape {
        /// Which input, with its expected shape.
        what: String,
        /// Expected number of values.
        expected: usize,
        /// Number found.
        found: usize,
    },

    /// An input that must not be empty is empty.
    #[error("{what} is empty; select at least one cell/gene/dimension")]
    Empty {
        /// Which input.
        what: String,
    },

    /// An input contains NaN or ±infinity.
    #[error("{what} has a non-finite value (NaN or infinity) at flat index {index}; clean or impute the input first")]
    NonFinite {
        /// Which input.
        what: String,
        /// First offending flat index.
        index: usize,
    },

    /// An option has a value outside its valid range.
    #[error("invalid option `{name}`: {reason}")]
    InvalidOption {
        /// Option name.
        name: &'static str,
        /// Why it is invalid and what is allowed.
        reason: String,
    },

    /// Marginal weights are negative, zero or do not sum to a positive number.
    #[error("invalid marginal `{what}`: {reason}")]
    Marginal {
        /// `a` (source) or `b` (target).
        what: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// All pairwise costs are zero (every point identical), so the cost cannot be normalised
    /// by its maximum.
    #[error("every pairwise cost is zero (all points coincide); use CostScale::None or check the coordinates")]
    DegenerateCost,

    /// Sinkhorn stopped before the marginals converged; the plan is not a transport plan.
    #[error("Sinkhorn did not converge: marginal error {error:.2e} after {iterations} iterations (tolerance {tolerance:.1e}); raise max_iterations (--max-iterations), use epsilon scaling (--epsilon-scaling) or a larger epsilon, or accept flagged results (--allow-unconverged / allowUnconverged)")]
    NotConverged {
        /// Iterations run.
        iterations: usize,
        /// Final marginal error.
        error: f32,
        /// The tolerance asked for.
        tolerance: f32,
    },
    /// The control and target groups share cells, which would be paired with themselves.
    #[error("control and target share {shared} cells (first: {first}); pair two different states or two disjoint selections")]
    OverlappingStates {
        /// Cells in both groups.
        shared: usize,
        /// The first shared cell id.
        first: String,
    },
    /// A cell state has fewer cells than the pairing QC requires.
    #[error("state `{state}` has {found} cells, fewer than the minimum of {min} required for OT pairing; merge it with a similar state, select more cells, or lower `min_cells_per_state`")]
    TooFewCells {
        /// State name.
        state: String,
        /// Cells found.
        found: usize,
        /// Minimum required (θ_min).
        min: usize,
    },

    /// The two states to pair belong to different lineages.
    #[error("states `{state_a}` (lineage `{lineage_a}`) and `{state_b}` (lineage `{lineage_b}`) are of different lineages; OT pairing only compares states of the same lineage")]
    LineageMismatch {
        /// Control state.
        state_a: String,
        /// Its lineage.
        lineage_a: String,
        /// Target state.
        state_b: String,
        /// Its lineage.
        lineage_b: String,
    },

    /// A dense result would be too large to materialise.
    #[error("{what} would need {bytes} bytes; this helper is for small problems only (use the streaming APIs instead)")]
    TooLarge {
        /// What would be materialised.
        what: String,
        /// Bytes needed.
        bytes: u64,
    },

    /// Writing an output file failed.
    #[error("cannot write {path}: {reason}; check that the directory exists and is writable")]
    Io {
        /// Output path.
        path: String,
        /// Underlying error.
        reason: String,
    },

    /// The GPU engine failed.
    /// A trained flow's file or the inputs of its conditioning do not fit (issue 16).
    #[error("flow conditioning, {what}: {reason}")]
    FlowConditioning {
        /// The file field or input concerned.
        what: String,
        /// What is wrong and what to pass instead.
        reason: String,
    },

    #[error(transparent)]
    Gpu(#[from] GpuError),
}

/// Checks that `values` has `expected` entries.
pub(crate) fn check_shape(
    what: impl FnOnce() -> String,
    values: usize,
    expected: usize,
) -> Result<(), OtError> {
    if values != expected {
        return Err(OtError::Shape {
            what: what(),
            expected,
            found: values,
        });
    }
    Ok(())
}

/// Checks that every value is finite.
pub(crate) fn check_finite(what: impl FnOnce() -> String, values: &[f32]) -> Result<(), OtError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(OtError::NonFinite {
            what: what(),
            index,
        }),
        None => Ok(()),
    }
}
