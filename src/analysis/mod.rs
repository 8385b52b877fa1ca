//! Analysis of learned representations: clustering, 2-D layouts, cluster composition and
//! quality measures. Pure Rust, builds everywhere (wasm32 included, where the parallel loops
//! of [`crate::util::parallel`] run on one thread).
//!
//! - [`kmeans`](mod@kmeans): k-means++ / Lloyd with restarts → labels, centroids `[k, d]`.
//! - [`umap`](mod@umap): UMAP layout `[n, d]` → `[n, 2]` (exact kNN, PCA initialisation).
//! - [`knn`]: exact brute-force k-nearest neighbours.
//! - [`annotation`](mod@annotation): SingleR-style reference labels of cells (Spearman
//!   correlation to reference profiles with fine-tuning and pruning).
//! - [`enrichment`]: per-cluster cell-type counts, fractions, observed/expected and
//!   hypergeometric p-values.
//! - [`nuclei`]: nucleus centroids from a DAPI image (LoG maxima in tiles) and their
//!   precision/recall against reference nuclei.
//! - [`generative`]: generated-vs-real image metrics: KS / 1-D Wasserstein per feature, FID /
//!   KID on given features, nucleus morphology features from a threshold segmentation.
//! - [`metrics`]: adjusted Rand index, silhouette, trustworthiness, kNN label agreement.
//!
//! Matrices are row-major `f32` slices with their shape passed beside them (`[n, d]`);
//! labels are `u32` in `0..n_categories`. Errors are [`AnalysisError`].

pub mod annotation;
pub mod enrichment;
pub mod error;
pub mod generative;
pub mod kmeans;
pub mod knn;
pub mod metrics;
pub mod nuclei;
pub mod umap;

pub use annotation::{
    annotate_singler, default_marker_count, spearman, Annotation, AnnotationSummary,
    SingleROptions,
};
pub use enrichment::{
    benjamini_hochberg, cluster_enrichment, hypergeometric_sf, ln_gamma, ClusterEnrichment,
};
pub use error::AnalysisError;
pub use kmeans::{
    kmeans, kmeans_by_silhouette, KMeans, KMeansOptions, DEFAULT_KMEANS_MAX_ITERATIONS,
    DEFAULT_KMEANS_RESTARTS,
};
pub use knn::{knn_exact, KnnGraph};
pub use metrics::{adjusted_rand_index, knn_label_agreement, silhouette_score, trustworthiness};
pub use umap::{
    default_umap_epochs, fit_ab, fuzzy_simplicial_set, umap, FuzzyGraph, Umap, UmapOptions,
};
