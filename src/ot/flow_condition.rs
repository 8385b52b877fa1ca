//! What a trained morphology flow (`cellsymphony flow train`, issue 16) conditions on, burn-free:
//! the sampling part of its `flow.json` and the conditioning of OT pairs from their expression.
//! The browser (`FlowModel` in the npm package) and the native CLI share it.
//!
//! A pair's condition is
//! - its transition token (index into `transitions`),
//! - the PCA coordinates of its expression shift `Δg = x_target − x_control` (normalised
//!   expression, the model's genes) divided by `dg_scale`, `[K]`,
//! - the control cell's embedding `[Z]`: the coordinates of `expression_pca` when the flow was
//!   trained on it, otherwise rows the caller supplies (e.g. SPATIA's `z_cell`).

use serde::{Deserialize, Serialize};

use super::error::{check_finite, check_shape, OtError};
use super::pca::Pca;
use crate::engine::flow::{FlowSolver, FlowSpec};
use crate::engine::Normalisation;

/// The sampler defaults stored in `flow.json`'s `config`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct FlowSamplingDefaults {
    /// Integration steps.
    pub sample_steps: usize,
    /// ODE solver.
    pub solver: FlowSolver,
}

/// A `flow.json` as sampling reads it: the conditioning fields and the sampler defaults of
/// its `config` (`train::flow::FlowHeader` writes the whole file, with the full training
/// config and metrics, which are ignored here).
#[derive(Debug, Clone, Deserialize)]
pub struct FlowFile {
    /// Everything the conditioning and the sampler's normalisation read.
    #[serde(flatten)]
    pub conditioning: FlowConditioning,
    /// Sampler defaults.
    pub config: FlowSamplingDefaults,
}

impl FlowFile {
    /// Parses `flow.json`; checks that its sizes agree with each other.
    pub fn from_json(text: &str) -> Result<Self, OtError> {
        let f: Self = serde_json::from_str(text).map_err(|e| bad("flow.json", format!("{e}; pass the flow.json written by `cellsymphony flow train`")))?;
        f.conditioning.check()?;
        Ok(f)
    }
}

/// The fields of `flow.json` besides the training config and metrics: sizes, latent
/// normalisation, the Δg and expression PCAs, genes. One definition for the writer
/// (`train::flow::FlowHeader` flattens it) and every reader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowConditioning {
    /// Architecture sizes.
    pub spec: FlowSpec,
    /// Transition names, one per token (`"Epithelial → Malignant"`).
    pub transitions: Vec<String>,
    /// Per-dimension mean of the training latents `[L]`.
    pub latent_mean: Vec<f32>,
    /// Scale of the training latents.
    pub latent_scale: f32,
    /// PCA of the training pairs' Δg (`[K, G]` components).
    pub dg_pca: Pca,
    /// Δg PCA coordinates are divided by this.
    pub dg_scale: f32,
    /// How the cell embedding was made (a file name, or "expression PCA …").
    pub cell_embedding: String,
    /// The expression PCA whose coordinates are the cell embedding, when no file was used.
    pub expression_pca: Option<Pca>,
    /// Patch resolution (µm per pixel).
    pub um_per_px: f32,
    /// The model's genes, in the order of `dg_pca`'s columns (empty in files written before
    /// they were recorded: inputs must then already be in the model's gene order).
    #[serde(default)]
    pub genes: Vec<String>,
    /// How counts become the normalised expression the PCAs read (absent in older files:
    /// log1p CP10k, the crop's default).
    #[serde(default)]
    pub normalisation: Option<Normalisation>,
}

/// The conditioning of `n` pairs, as [`crate::engine::flow::FlowCondition`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct PairConditions {
    /// Transition token per pair `[n]`.
    pub tokens: Vec<u32>,
    /// Scaled Δg PCA coordinates `[n, K]`.
    pub dg: Vec<f32>,
    /// Control embeddings `[n, Z]`.
    pub cell: Vec<f32>,
}

fn bad(what: &str, reason: String) -> OtError {
    OtError::FlowConditioning { what: what.to_string(), reason }
}

impl FlowConditioning {
    /// Checks that the sizes agree with each other.
    pub fn check(&self) -> Result<(), OtError> {
        let c = self;
        c.spec.check().map_err(|r| bad("flow.json spec", r))?;
        let (l, k, g) = (c.spec.latent, c.spec.dg_components, c.dg_pca.n_genes);
        if c.latent_mean.len() != l {
            return Err(bad("flow.json latent_mean", format!("has {} values; the spec's latent width is {l}", c.latent_mean.len())));
        }
        if c.dg_pca.n_components != k || c.dg_pca.components.len() != k * g || c.dg_pca.mean.len() != g {
            return Err(bad("flow.json dg_pca", format!("is not {k} components over {g} genes (components {}, mean {})", c.dg_pca.components.len(), c.dg_pca.mean.len())));
        }
        if !(c.dg_scale.is_finite() && c.dg_scale > 0.0 && c.latent_scale.is_finite() && c.latent_scale > 0.0) {
            return Err(bad("flow.json", format!("dg_scale {} and latent_scale {} must be positive and finite", c.dg_scale, c.latent_scale)));
        }
        if c.transitions.len() != c.spec.n_transitions {
            return Err(bad("flow.json transitions", format!("lists {} names for {} transition tokens", c.transitions.len(), c.spec.n_transitions)));
        }
        if !c.genes.is_empty() && c.genes.len() != g {
            return Err(bad("flow.json genes", format!("lists {} genes; dg_pca reads {g}", c.genes.len())));
        }
        if let Some(p) = &c.expression_pca {
            if p.n_genes != g || p.n_components != c.spec.cell_dim || p.components.len() != p.n_components * g {
                return Err(bad("flow.json expression_pca", format!("is {} components over {} genes; expected {} (cell_dim) over {g}", p.n_components, p.n_genes, c.spec.cell_dim)));
            }
        }
        Ok(())
    }

    /// Genes the model reads, `G`.
    pub fn n_genes(&self) -> usize {
        self.dg_pca.n_genes
    }

    /// Whether the caller must supply the control cells' embedding (the flow was trained on
    /// an embedding file, not on the expression PCA).
    pub fn needs_cell_embedding(&self) -> bool {
        self.expression_pca.is_none()
    }

    /// Column of each model gene in `genes` (the inputs' columns); with no recorded genes,
    /// the identity when the widths agree.
    pub fn gene_columns(&self, genes: &[String]) -> Result<Vec<usize>, OtError> {
        let g = self.n_genes();
        if self.genes.is_empty() {
            if genes.len() != g {
                return Err(bad("genes", format!("the flow file records no gene names, so the inputs must have its {g} genes in its order; found {}", genes.len())));
            }
            return Ok((0..g).collect());
        }
        let index: std::collections::HashMap<&str, usize> = genes.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
        let missing: Vec<&str> = self.genes.iter().filter(|n| !index.contains_key(n.as_str())).map(String::as_str).collect();
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(5).copied().collect();
            return Err(bad("genes", format!("{} of the model's {g} genes are not among the inputs' {} (first: {}); pass counts over the panel the flow was trained on", missing.len(), genes.len(), shown.join(", "))));
        }
        Ok(self.genes.iter().map(|n| index[n.as_str()]).collect())
    }

    /// Normalised expression `[n, G]` (model gene order) of counts `[n, genes.len()]`.
    pub fn normalise(&self, counts: &[f32], n: usize, genes: &[String], what: &str) -> Result<Vec<f32>, OtError> {
        check_shape(|| format!("{what} [n={n}, genes={}]", genes.len()), counts.len(), n * genes.len())?;
        let cols = self.gene_columns(genes)?;
        let g = cols.len();
        let picked: Vec<f32> = (0..n).flat_map(|i| cols.iter().map(move |&c| counts[i * genes.len() + c])).collect();
        let norm = self.normalisation.clone().unwrap_or_default();
        let names = if self.genes.is_empty() { genes.to_vec() } else { self.genes.clone() };
        norm.apply(&picked, g, &names).map_err(|e| bad(what, e.to_string()))
    }

    /// Scaled Δg PCA coordinates `[n, K]` of normalised control / target expression `[n, G]`.
    pub fn dg_coordinates(&self, x_control: &[f32], x_target: &[f32], n: usize) -> Result<Vec<f32>, OtError> {
        let g = self.n_genes();
        check_shape(|| format!("control expression [n={n}, G={g}]"), x_control.len(), n * g)?;
        check_shape(|| format!("target expression [n={n}, G={g}]"), x_target.len(), n * g)?;
        let dg: Vec<f32> = x_target.iter().zip(x_control).map(|(t, c)| t - c).collect();
        Ok(self.dg_pca.transform(&dg, n)?.into_iter().map(|v| v / self.dg_scale).collect())
    }

    /// The conditions of `n` pairs from raw counts of their control and target cells
    /// (`[n, genes.len()]` each, columns named by `genes`), all with transition `token`;
    /// `cell_embedding` `[n, Z]` is required when [`Self::needs_cell_embedding`] and otherwise
    /// replaces the expression-PCA embedding when given.
    pub fn condition(&self, control_counts: &[f32], target_counts: &[f32], n: usize, genes: &[String], token: u32, cell_embedding: Option<&[f32]>) -> Result<PairConditions, OtError> {
        if token as usize >= self.transitions.len() {
            return Err(bad("transition", format!("token {token} is not one of the model's {} transitions ({})", self.transitions.len(), self.transitions.join(", "))));
        }
        let xc = self.normalise(control_counts, n, genes, "control counts")?;
        let xt = self.normalise(target_counts, n, genes, "target counts")?;
        let dg = self.dg_coordinates(&xc, &xt, n)?;
        let z = self.spec.cell_dim;
        let cell = match (cell_embedding, &self.expression_pca) {
            (Some(e), _) => {
                check_shape(|| format!("cell embedding [n={n}, Z={z}]"), e.len(), n * z)?;
                check_finite(|| "cell embedding".into(), e)?;
                e.to_vec()
            }
            (None, Some(p)) => p.transform(&xc, n)?,
            (None, None) => return Err(bad("cell embedding", format!("the flow was trained on the embedding `{}`; pass the control cells' rows of it ([n, {z}])", self.cell_embedding))),
        };
        Ok(PairConditions { tokens: vec![token; n], dg, cell })
    }
}
