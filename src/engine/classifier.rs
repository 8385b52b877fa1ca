//! The engine's one inference entry point, used by the CLI, the wasm API and the benchmarks:
//! [`Classifier::prepare`] (validate, align the panel, normalise as the model file records,
//! add centroid features, check patches) → [`Classifier::logits`] (CPU or GPU forward) →
//! [`Classifier::predict`] (class and confidence per cell). Every step returns
//! `Result<_, EngineError>`; none panics on bad input.

use std::borrow::Cow;
use std::sync::Arc;

use super::cpu::{argmax_rows, forward_logits_packed, forward_logits_with_patches, CpuWeights, Int8Gemm};
use super::error::EngineError;
use super::format::{EngineModel, Quantization};
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
    /// The CPU backend's packed weights (built once at construction).
    cpu_weights: Option<CpuWeights>,
    /// The CPU backend's int8 GEMM.
    int8: Int8Gemm,
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
    /// Per cell: no counts at all over the model's genes (a count model then has nothing to
    /// classify; [`Classifier::predict`] marks the cell [`UNCLASSIFIED`]). Empty means none.
    pub no_counts: Vec<bool>,
}

/// The class index [`Classifier::predict`] gives a cell it cannot classify (no counts over the
/// model's genes); its confidence is 0. JS sees 4294967295 and `unclassified[i] = 1`.
pub const UNCLASSIFIED: u32 = u32::MAX;

/// What a CSV or report says for an [`UNCLASSIFIED`] cell.
pub const UNCLASSIFIED_LABEL: &str = "unclassified: no counts";

impl PreparedCells<'_> {
    /// The same cells owning their patches (copied if they were borrowed).
    pub fn into_owned(self) -> PreparedCells<'static> {
        PreparedCells {
            x: self.x,
            patches: self.patches.map(|p| Cow::Owned(p.into_owned())),
            n_cells: self.n_cells,
            no_counts: self.no_counts,
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
            no_counts: if self.no_counts.is_empty() { Vec::new() } else { idx.iter().map(|&i| self.no_counts[i]).collect() },
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
        Self::cpu_with(model, Int8Gemm::default())
    }

    /// Runs `model` on the CPU with the int8 GEMM `int8` ([`Int8Gemm::W8A8`]: int8
    /// activations too; no effect on an f32 model). Errors if the model is inconsistent.
    pub fn cpu_with(model: EngineModel, int8: Int8Gemm) -> Result<Self, EngineError> {
        model.validate()?;
        let cpu_weights = Some(CpuWeights::with_int8_gemm(&model, int8));
        Ok(Self { model, backend: Backend::Cpu, cpu_weights, int8 })
    }

    /// Uploads `model` to the GPU of `ctx` (quantised to int8 first if it is f32). Errors
    /// if the model is inconsistent or does not fit the device ([`EngineError::Gpu`]).
    pub fn gpu(model: EngineModel, ctx: Arc<GpuContext>) -> Result<Self, EngineError> {
        let gpu = GpuClassifier::new(ctx, &model)?;
        Ok(Self { model, backend: Backend::Gpu(Box::new(gpu)), cpu_weights: None, int8: Int8Gemm::default() })
    }

    /// The model (metadata: genes, classes, normalisation, config; weights).
    pub fn model(&self) -> &EngineModel {
        &self.model
    }

    /// The engine that runs the forward pass.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The engine, mutably (e.g. to turn a GPU engine's fast paths on or off:
    /// [`GpuClassifier::set_f16_hidden`], [`GpuClassifier::set_subgroups`]).
    pub fn backend_mut(&mut self) -> &mut Backend {
        &mut self.backend
    }

    /// What runs the model, for reports: `"CPU engine (int8_per_channel_symmetric)"` or
    /// `"WGSL engine int8 on <adapter>"`.
    pub fn engine_name(&self) -> String {
        match &self.backend {
            Backend::Cpu if self.int8 == Int8Gemm::W8A8 && self.model.meta.quantization != Quantization::None => {
                format!("CPU engine ({}, W8A8)", self.model.meta.quantization.as_str())
            }
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
        let logits = match &self.backend {
            // `Classifier::cpu` packs the weights once; packing per call is the (never taken)
            // fallback instead of a panic.
            Backend::Cpu => match &self.cpu_weights {
                Some(packed) => forward_logits_packed(&self.model, packed, &cells.x, patches, cells.n_cells)?,
                None => forward_logits_with_patches(&self.model, &cells.x, patches, cells.n_cells)?,
            },
            Backend::Gpu(g) => g.logits_with_patches(&cells.x, patches, cells.n_cells).await?,
        };
        // A corrupt (but loadable) model or extreme inputs must not become confident labels.
        // The check runs once, on the logits; only on failure is the first bad cell re-run on
        // the CPU reference, layer by layer, to name the layer where it goes non-finite.
        let k = self.model.meta.classes.len().max(1);
        if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
            let cell = i / k;
            let n_in = self.model.meta.config.n_inputs();
            let px = self.model.meta.config.morphology.as_ref().map_or(0, |m| m.pixels());
            let x = cells.x.get(cell * n_in..(cell + 1) * n_in).unwrap_or_default();
            let p = patches.and_then(|p| p.get(cell * px..(cell + 1) * px));
            let stage = super::cpu::first_non_finite_stage(&self.model, x, p).unwrap_or_else(|| match &self.backend {
                Backend::Gpu(_) => "the GPU engine only (the CPU reference stays finite for this cell: a GPU engine fault)".into(),
                Backend::Cpu => "no single stage (every stage is finite when the cell is run alone)".into(),
            });
            return Err(EngineError::NonFiniteOutput { cell, value: logits[i], stage });
        }
        Ok(logits)
    }

    /// Class index and softmax confidence per cell from logits `[cells, C]`. Errors with
    /// [`EngineError::InputShape`] if `logits` is not whole rows of `C`.
    pub fn predict(&self, logits: &[f32], cells: &PreparedCells<'_>) -> Result<Prediction, EngineError> {
        let k = self.model.meta.classes.len();
        if k == 0 || !logits.len().is_multiple_of(k) {
            return Err(EngineError::InputShape {
                what: format!("logits [cells, classes={k}]"),
                expected: logits.len().div_ceil(k.max(1)) * k,
                found: logits.len(),
            });
        }
        let mut classes = argmax_rows(logits, k);
        let mut confidence: Vec<f32> = logits.chunks_exact(k).map(softmax_max).collect();
        for (i, _) in cells.no_counts.iter().enumerate().filter(|(_, &none)| none) {
            if i < classes.len() {
                classes[i] = UNCLASSIFIED;
                confidence[i] = 0.0;
            }
        }
        Ok(Prediction { classes, confidence })
    }
}

impl EngineModel {
    /// Errors unless this is an image-only model ([`super::Architecture::ImageOnly`]): what
    /// classifies cells of `source`, an image with no transcripts (a gene-based model has
    /// nothing to read there).
    pub fn require_image_only(&self, source: &str) -> Result<(), EngineError> {
        if self.meta.config.is_image_only() {
            return Ok(());
        }
        Err(EngineError::InvalidConfig {
            reason: format!(
                "the model is {} (it reads the genes of each cell) but {source} is an image with no \
                 transcripts; classify it with an image-only model (`cellsymphony image-only` writes \
                 model.safetensors and model.int8.safetensors)",
                self.meta.architecture
            ),
        })
    }

    /// Model input for `cells` exactly as the model file records it (what
    /// [`Classifier::prepare`] runs; callers that feed several engines prepare once here):
    /// 1. validates the input (shapes, CSR structure, gene names, centroids, patches; values
    ///    must be raw counts for `log1p_cp10k`, any finite value otherwise);
    /// 2. aligns the columns to the model's gene order (input genes the model does not use
    ///    are ignored; missing ones are an error naming them);
    /// 3. applies the model's [`Normalisation`](super::Normalisation);
    /// 4. appends the standardised arcsinh protein channels of a model trained with
    ///    `--protein` (`meta.proteins`; the input must then carry those markers);
    /// 5. appends the centroid features of a model with a centroid token (which then needs
    ///    `centroids_um`), and checks the patches of a model with a morphology token (which
    ///    then needs patches of its `image_size`; they are borrowed, not copied).
    ///
    /// An image-only model reads the patches alone: counts and gene names are ignored (they
    /// may be empty, `n_genes = 0`), the model input is empty and no cell is unclassified.
    pub fn prepare<'a>(&self, cells: CellInput<'a>) -> Result<PreparedCells<'a>, EngineError> {
        let meta = &self.meta;
        let config = &meta.config;
        if config.is_image_only() {
            let n_cells = cells.counts.n_cells();
            let patches = self.checked_patches(cells, n_cells)?;
            return Ok(PreparedCells { x: Vec::new(), patches, n_cells, no_counts: Vec::new() });
        }
        let values = if meta.normalisation.reads_counts() { InputValues::Counts } else { InputValues::Finite };
        let valid = cells.validate_as(values)?;
        let n_cells = valid.n_cells();
        let aligned = valid.align_to_panel(&meta.genes)?;
        let g = meta.genes.len();
        let no_counts = if meta.normalisation.reads_counts() {
            aligned.chunks(g.max(1)).map(|row| row.iter().all(|&v| v == 0.0)).collect()
        } else {
            Vec::new()
        };
        let x = meta.normalisation.apply(&aligned, g, &meta.genes)?;
        let x = match &meta.proteins {
            Some(p) => {
                let values = p.align(cells.proteins.as_ref(), n_cells)?;
                super::ProteinChannels::append(&x, g, &p.apply(&values), p.len())
            }
            None => x,
        };
        let x = model_input(config, x, valid.centroids_um().as_deref())?;
        let patches = self.checked_patches(cells, n_cells)?;
        Ok(PreparedCells { x, patches, n_cells, no_counts })
    }

    /// The patches of `cells` for a model with a morphology token (borrowed), checked against
    /// its patch size; `None` for a model without one.
    fn checked_patches<'a>(&self, cells: CellInput<'a>, n_cells: usize) -> Result<Option<Cow<'a, [f32]>>, EngineError> {
        let config = &self.meta.config;
        Ok(match (&config.morphology, cells.patches) {
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
        })
    }
}

/// The largest softmax probability of a row of logits, `1 / Σ exp(v − max)`.
pub fn softmax_max(row: &[f32]) -> f32 {
    let m = row.iter().cloned().fold(f32::MIN, f32::max);
    1.0 / row.iter().map(|v| (v - m).exp()).sum::<f32>()
}

#[cfg(all(test, feature = "native-io", not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::data::{CountsInput, PatchInput};
    use crate::engine::{ClassifierConfig, MorphologyTokenConfig, Normalisation, SpatialTokenConfig};

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    fn model(config: ClassifierConfig) -> EngineModel {
        let (g, c) = (config.n_genes, config.n_classes);
        EngineModel::random_for_tests(config, names("g", g), names("c", c), 17)
    }

    fn small() -> ClassifierConfig {
        ClassifierConfig { n_layers: 1, d_model: 8, n_heads: 2, d_ff: 16, gene_tokens: 2, ..ClassifierConfig::new(3, 4) }
    }

    fn dense<'a>(values: &'a [f32], genes: &'a [String]) -> CellInput<'a> {
        let counts = CountsInput::Dense { values, n_cells: values.len() / genes.len(), n_genes: genes.len() };
        CellInput { counts, genes, centroids_um: None, patches: None, proteins: None }
    }

    #[test]
    fn prepare_aligns_and_normalises_as_the_file_records() {
        let mut m = model(small());
        m.meta.normalisation = Normalisation::as_stored().with_standardisation(vec![1.0, 0.0, -1.0], vec![2.0, 1.0, 0.5]);
        let clf = Classifier::cpu(m).unwrap();
        // Input columns g2, extra, g0, g1; scaled values may be negative.
        let genes = vec!["g2".to_string(), "x".to_string(), "g0".to_string(), "g1".to_string()];
        let cells = clf.prepare(dense(&[-1.5, 9.0, 3.0, -0.5], &genes)).unwrap();
        assert_eq!(cells.n_cells, 1);
        assert_eq!(cells.x, vec![1.0, -0.5, -1.0]);
        let logits = pollster::block_on(clf.logits(&cells)).unwrap();
        let p = clf.predict(&logits, &cells).unwrap();
        assert_eq!(p.classes, argmax_rows(&logits, 4));
        assert!((p.confidence[0] - softmax_max(&logits)).abs() < 1e-7 && p.confidence[0] > 0.25);
        // The same values under log1p_cp10k are not counts.
        let counts_model = Classifier::cpu(model(small())).unwrap();
        assert!(matches!(counts_model.prepare(dense(&[-1.5, 9.0, 3.0, -0.5], &genes)), Err(EngineError::Input(_))));
    }

    #[test]
    fn centroids_and_patches_are_required_where_the_model_reads_them() {
        let spatial = ClassifierConfig {
            spatial: Some(SpatialTokenConfig { n_frequencies: 2, min_wavelength_um: 10.0, max_wavelength_um: 100.0 }),
            ..small()
        };
        let clf = Classifier::cpu(model(spatial)).unwrap();
        let genes = names("g", 3);
        assert!(clf.prepare(dense(&[1.0, 2.0, 3.0], &genes)).is_err());
        let centroids = [5.0, 7.0];
        let cells = clf.prepare(CellInput { centroids_um: Some(&centroids), ..dense(&[1.0, 2.0, 3.0], &genes) }).unwrap();
        assert_eq!(cells.x.len(), 3 + 8);

        let morphology = ClassifierConfig {
            morphology: Some(MorphologyTokenConfig { image_size: 4, vit_patch: 2, width: 4, n_heads: 2, d_ff: 8, n_layers: 1, k_nearest: 2, um_per_px: 0.5 }),
            ..small()
        };
        let clf = Classifier::cpu(model(morphology)).unwrap();
        assert!(clf.prepare(dense(&[1.0, 2.0, 3.0], &genes)).is_err());
        let pixels = [0.5f32; 9];
        let wrong_size = PatchInput { pixels: &pixels, size: 3 };
        assert!(clf.prepare(CellInput { patches: Some(wrong_size), ..dense(&[1.0, 2.0, 3.0], &genes) }).is_err());
        let pixels = [0.5f32; 16];
        let patches = PatchInput { pixels: &pixels, size: 4 };
        let cells = clf.prepare(CellInput { patches: Some(patches), ..dense(&[1.0, 2.0, 3.0], &genes) }).unwrap();
        assert!(matches!(cells.patches, Some(Cow::Borrowed(_))));
        assert_eq!(pollster::block_on(clf.logits(&cells)).unwrap().len(), 4);
    }

    /// Issue 13, point 2: a cell without counts gets no class, never a confident label.
    #[test]
    fn a_cell_without_counts_is_unclassified() {
        let clf = Classifier::cpu(model(small())).unwrap();
        let genes = names("g", 3);
        let cells = clf.prepare(dense(&[1.0, 2.0, 3.0, 0.0, 0.0, 0.0], &genes)).unwrap();
        assert_eq!(cells.no_counts, vec![false, true]);
        let logits = pollster::block_on(clf.logits(&cells)).unwrap();
        let p = clf.predict(&logits, &cells).unwrap();
        assert!(p.classes[0] < 4 && p.confidence[0] > 0.0);
        assert_eq!((p.classes[1], p.confidence[1]), (UNCLASSIFIED, 0.0));
        assert_eq!(cells.select(&[1, 0]).unwrap().no_counts, vec![true, false]);
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let clf = Classifier::cpu(model(small())).unwrap();
        let bad = PreparedCells { x: vec![0.0; 5], patches: None, n_cells: 2, no_counts: Vec::new() };
        assert!(matches!(pollster::block_on(clf.logits(&bad)), Err(EngineError::InputShape { expected: 6, found: 5, .. })));
        assert!(matches!(clf.predict(&[0.0; 5], &bad), Err(EngineError::InputShape { .. })));
        let cells = PreparedCells { x: vec![0.0; 6], patches: None, n_cells: 2, no_counts: Vec::new() };
        assert!(matches!(cells.select(&[0, 2]), Err(EngineError::InputShape { .. })));
        assert_eq!(cells.select(&[1, 1, 0]).unwrap().x.len(), 9);
    }

    /// Issue 13, point 4: a non-finite logit is an error naming the cell and the layer where
    /// the cell first goes non-finite (found by re-running the CPU reference layer by layer).
    #[test]
    fn a_non_finite_output_names_the_cell_and_the_layer() {
        let mut m = model(ClassifierConfig { n_layers: 2, ..small() });
        m.meta.normalisation = Normalisation::as_stored();
        // (The loader bounds every parameter by ±1e6, and layer norms bound what reaches the
        // head, so a loadable model overflows through its input.)
        for (m, input, cell, stage) in [
            // Extreme (but finite) input values overflow the token embedding.
            (m.clone(), [0.5, 1.0, -1.0, 3e38, -3e38, 3e38], 1, "token embedding"),
            // Large values that the embedding still holds overflow inside the first layer.
            (m.clone(), [f32::MAX, 1.0, -f32::MAX, 0.5, 1.0, -1.0], 0, "encoder layer 0 (attention block)"),
        ] {
            let clf = Classifier::cpu(m).unwrap();
            let genes = names("g", 3);
            let cells = clf.prepare(dense(&input, &genes)).unwrap();
            let err = pollster::block_on(clf.logits(&cells)).unwrap_err();
            assert!(matches!(&err, EngineError::NonFiniteOutput { cell: c, stage: s, .. } if *c == cell && s.contains(stage)), "{err}");
            assert!(err.to_string().contains(stage), "{err}");
        }
        // A finite pass reports no stage.
        let x = [0.5f32, 1.0, -1.0];
        assert_eq!(super::super::cpu::first_non_finite_stage(&m, &x, None), None);
    }
}
