//! The engine's one inference entry point, used by the CLI, the wasm API and the benchmarks:
//! [`Classifier::prepare`] (validate, align the panel, normalise as the model file records,
//! add centroid features, check patches) → [`Classifier::logits`] (CPU or GPU forward) →
//! [`Classifier::predict`] (class and confidence per cell). Every step returns
//! `Result<_, EngineError>`; none panics on bad input.

use std::borrow::Cow;
use std::sync::Arc;

use super::cpu::{argmax_rows, forward_logits_with_patches};
use super::error::EngineError;
use super::format::EngineModel;
use super::gpu::GpuClassifier;
use super::preprocess::{check_patches, model_input};
use crate::data::{CellInput, InputValues};
use crate::gpu::GpuContext;

/// Where a [`Classifier`] runs the forward pass.
pub enum Backend {
    /// The plain-Rust CPU forward ([`super::cpu`]) on the weights as stored (f32 or int8).
    Cpu,
    /// The WGSL engine on a GPU (int8; an f32 file is quantised at upload).
    Gpu(Box<GpuClassifier>),
}

/// A loaded model plus the engine that runs it.
pub struct Classifier {
    model: EngineModel,
    backend: Backend,
}

/// Cells ready for [`Classifier::logits`]: the model input and, for a model with a morphology
/// token, the patches.
#[derive(Clone, Debug)]
pub struct PreparedCells<'a> {
    /// Model input `[cells, n_inputs]`: normalised genes in the model's order, then the
    /// centroid's sinusoid features for a model with a centroid token.
    pub x: Vec<f32>,
    /// Nucleus-centred patches `[cells, S, S]` for a model with a morphology token (borrowed
    /// from the caller where possible), `None` otherwise.
    pub patches: Option<Cow<'a, [f32]>>,
    /// Number of cells.
    pub n_cells: usize,
}

impl PreparedCells<'_> {
    /// The same cells owning their patches (copied if they were borrowed).
    pub fn into_owned(self) -> PreparedCells<'static> {
        PreparedCells {
            x: self.x,
            patches: self.patches.map(|p| Cow::Owned(p.into_owned())),
            n_cells: self.n_cells,
        }
    }

    /// The cells `idx` (in that order), e.g. a held-out subset: `x` `[idx.len(), n_inputs]`
    /// and patches `[idx.len(), S, S]`. Errors with [`EngineError::InputShape`] for an index
    /// `>= n_cells`.
    pub fn select(&self, idx: &[usize]) -> Result<PreparedCells<'static>, EngineError> {
        if let Some(&bad) = idx.iter().find(|&&i| i >= self.n_cells) {
            return Err(EngineError::InputShape {
                what: format!("cell index {bad} of a selection"),
                expected: self.n_cells,
                found: bad,
            });
        }
        let rows = |v: &[f32]| -> Vec<f32> {
            let width = v.len() / self.n_cells.max(1);
            idx.iter().flat_map(|&i| v[i * width..(i + 1) * width].iter().copied()).collect()
        };
        Ok(PreparedCells {
            x: rows(&self.x),
            patches: self.patches.as_deref().map(|p| Cow::Owned(rows(p))),
            n_cells: idx.len(),
        })
    }
}

/// The prediction for each cell.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// Class index per cell `[cells]` (into the model's `meta.classes`; the first largest
    /// logit wins, NaN never does).
    pub classes: Vec<u32>,
    /// Softmax probability of the predicted class per cell `[cells]`.
    pub confidence: Vec<f32>,
}

impl Classifier {
    /// Runs `model` on the CPU (weights as stored). Errors if the model is inconsistent.
    pub fn cpu(model: EngineModel) -> Result<Self, EngineError> {
        model.validate()?;
        Ok(Self { model, backend: Backend::Cpu })
    }

    /// Uploads `model` to the GPU of `ctx` (quantised to int8 first if it is f32). Errors
    /// if the model is inconsistent or does not fit the device ([`EngineError::Gpu`]).
    pub fn gpu(model: EngineModel, ctx: Arc<GpuContext>) -> Result<Self, EngineError> {
        let gpu = GpuClassifier::new(ctx, &model)?;
        Ok(Self { model, backend: Backend::Gpu(Box::new(gpu)) })
    }

    /// The model (metadata: genes, classes, normalisation, config; weights).
    pub fn model(&self) -> &EngineModel {
        &self.model
    }

    /// The engine that runs the forward pass.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// What runs the model, for reports: `"CPU engine (int8_per_channel_symmetric)"` or
    /// `"WGSL engine int8 on <adapter>"`.
    pub fn engine_name(&self) -> String {
        match &self.backend {
            Backend::Cpu => format!("CPU engine ({})", self.model.meta.quantization.as_str()),
            Backend::Gpu(g) => format!("WGSL engine int8 on {}", g.context().adapter_summary()),
        }
    }

    /// Model input for `cells` exactly as the model file records it
    /// ([`EngineModel::prepare`]).
    pub fn prepare<'a>(&self, cells: CellInput<'a>) -> Result<PreparedCells<'a>, EngineError> {
        self.model.prepare(cells)
    }

    /// Logits `[cells, C]` of prepared cells. Never blocks on wasm32 (the GPU result comes
    /// back through a future); natively block on it with `pollster::block_on`.
    pub async fn logits(&self, cells: &PreparedCells<'_>) -> Result<Vec<f32>, EngineError> {
        let patches = cells.patches.as_deref();
        match &self.backend {
            Backend::Cpu => forward_logits_with_patches(&self.model, &cells.x, patches, cells.n_cells),
            Backend::Gpu(g) => Ok(g.logits_with_patches(&cells.x, patches, cells.n_cells).await?),
        }
    }

    /// Class index and softmax confidence per cell from logits `[cells, C]`. Errors with
    /// [`EngineError::InputShape`] if `logits` is not whole rows of `C`.
    pub fn predict(&self, logits: &[f32]) -> Result<Prediction, EngineError> {
        let k = self.model.meta.classes.len();
        if k == 0 || !logits.len().is_multiple_of(k) {
            return Err(EngineError::InputShape {
                what: format!("logits [cells, classes={k}]"),
                expected: logits.len().div_ceil(k.max(1)) * k,
                found: logits.len(),
            });
        }
        let confidence = logits.chunks_exact(k).map(softmax_max).collect();
        Ok(Prediction { classes: argmax_rows(logits, k), confidence })
    }
}

impl EngineModel {
    /// Model input for `cells` exactly as the model file records it (what
    /// [`Classifier::prepare`] runs; callers that feed several engines prepare once here):
    /// 1. validates the input (shapes, CSR structure, gene names, centroids, patches; values
    ///    must be raw counts for `log1p_cp10k`, any finite value otherwise);
    /// 2. aligns the columns to the model's gene order (input genes the model does not use
    ///    are ignored; missing ones are an error naming them);
    /// 3. applies the model's [`Normalisation`](super::Normalisation);
    /// 4. appends the centroid features of a model with a centroid token (which then needs
    ///    `centroids_um`), and checks the patches of a model with a morphology token (which
    ///    then needs patches of its `image_size`; they are borrowed, not copied).
    pub fn prepare<'a>(&self, cells: CellInput<'a>) -> Result<PreparedCells<'a>, EngineError> {
        let meta = &self.meta;
        let config = &meta.config;
        let values = if meta.normalisation.reads_counts() { InputValues::Counts } else { InputValues::Finite };
        let valid = cells.validate_as(values)?;
        let n_cells = valid.n_cells();
        let aligned = valid.align_to_panel(&meta.genes)?;
        let x = meta.normalisation.apply(&aligned, config.n_genes, &meta.genes)?;
        let x = model_input(config, x, valid.centroids_um().as_deref())?;
        let patches = match (&config.morphology, cells.patches) {
            (None, _) => None,
            (Some(m), Some(p)) if p.size != m.image_size => {
                return Err(EngineError::InvalidConfig {
                    reason: format!(
                        "the patches are {0}×{0} px but this model reads {1}×{1} px patches (at {2} µm/px); cut them at that size",
                        p.size, m.image_size, m.um_per_px
                    ),
                })
            }
            (Some(_), p) => {
                let pixels = p.map(|p| p.pixels);
                check_patches(config, pixels, n_cells)?;
                pixels.map(Cow::Borrowed)
            }
        };
        Ok(PreparedCells { x, patches, n_cells })
    }
}

/// The largest softmax probability of a row of logits, `1 / Σ exp(v − max)`.
pub fn softmax_max(row: &[f32]) -> f32 {
    let m = row.iter().cloned().fold(f32::MIN, f32::max);
    1.0 / row.iter().map(|v| (v - m).exp()).sum::<f32>()
}
