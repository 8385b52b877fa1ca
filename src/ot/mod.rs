//! Optimal-transport pairing of control and target cell states (SPATIA-style).
//!
//! Pipeline, one module per step:
//! 1. [`pca`](mod@pca): exact PCA of the union of the selected cells
//!    (`[cells, genes]` → `[cells, d]`, d = 50 by default).
//!    [`states`]: both states' cells, ids, centroids and lineages around that PCA.
//! 2. [`sinkhorn`](mod@sinkhorn): entropic OT between the two states' clouds in PCA space
//!    (log domain, ε = 0.05 of the max cost by default), with one API over three engines:
//!    plain Rust on CPU threads ([`sinkhorn_log_domain_reference`]), and WGSL kernels on
//!    WebGPU — natively through wgpu (Vulkan, e.g. lavapipe) or in the browser on wasm32. No
//!    engine needs the `n × m` cost or plan (the CPU engine caches the cost when it fits).
//! 3. [`pairing`]: hard assignment by plan-row argmax with a confidence score, QC (same
//!    lineage, θ_min cells per state), optional spatial penalty; CSV output.
//! 4. [`signature`](mod@signature): mean paired expression difference per gene, top up/down
//!    genes.
//!
//! Everything is `async` where a GPU may be involved, and long solves report progress through
//! an `FnMut(iteration, error)` callback. Errors are [`OtError`]; nothing panics on bad input.

pub(crate) mod cpu;
pub mod error;
pub mod flow_condition;
pub mod lineage;
pub mod pairing;
pub mod pca;
pub mod signature;
pub mod sinkhorn;
pub mod states;

pub use error::OtError;
pub use flow_condition::{FlowConditioning, FlowFile, PairConditions};
#[cfg(all(feature = "native-io", not(target_arch = "wasm32")))]
pub use pairing::write_pairs_csv;
pub use pairing::{
    pair_states, pairs_csv, PairRecord, Pairing, PairingOptions, StateCells,
    DEFAULT_MIN_CELLS_PER_STATE,
};
pub use pca::{pca, Pca, PcaOptions, DEFAULT_PCA_COMPONENTS};
pub use signature::{signature, GeneDelta, Signature};
pub use states::{state_pca, StatePca};
pub use sinkhorn::{
    assign, dense_plan, sinkhorn, sinkhorn_log_domain_reference, Assignment, CostScale,
    EpsilonScaling, ErrorNorm, GroundCost, SinkhornEngine, SinkhornOptions, SinkhornProblem,
    SinkhornResult, SpatialPenalty, DEFAULT_EPSILON, DEFAULT_MAX_ITERATIONS, DEFAULT_TOLERANCE,
};
