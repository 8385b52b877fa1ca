//! Running a model file on a dataset's cells with any engine (burn, CPU, WGSL): shared by `eval`, `classify` and `pipeline`.

use std::path::Path;

use anyhow::{Context, Result};

use cellsymphony::engine::{self, EngineModel, PreparedCells};
use cellsymphony::model::convert::from_engine_model;
use cellsymphony::train::{self, argmax_rows, predict_cells, CellInputs, ClassificationReport, PreparedCrop, Rows};

use crate::common::*;

/// Indices of the model's held-out cells in `crop`, from the ids stored at training time.
pub(crate) fn held_out_indices(model: &EngineModel, path: &Path, crop: &PreparedCrop) -> Result<Vec<usize>> {
    let ids = model.meta.training.get("test_cell_ids").and_then(|v| v.as_array()).ok_or_else(|| {
        train::TrainError::MissingTrainingField { path: path.display().to_string(), field: "test_cell_ids".into() }
    })?;
    let index: std::collections::HashMap<&str, usize> =
        crop.table.cell_ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let id = id.as_str().unwrap_or_default();
        let i = *index.get(id).ok_or_else(|| anyhow::anyhow!("held-out cell `{id}` stored in {} is not in this dataset: evaluate on the data the model was trained on", path.display()))?;
        out.push(i);
    }
    Ok(out)
}

/// A dataset's cells as a model reads them: the engine's prepared input (`x` `[cells,
/// n_inputs]`: genes in the model's order, normalised as the model file records, then the
/// centroid features; patches `[cells, S, S]` for a morphology model) and the centroids
/// `[cells, 2]` µm that burn's spatial encoder reads.
pub(crate) struct CellData {
    pub(crate) cells: PreparedCells<'static>,
    pub(crate) centroids: Vec<f32>,
}

/// Logits `[idx.len(), classes]` of `model` on cells `idx` of `data`.
pub(crate) fn engine_logits(model: &EngineModel, data: &CellData, idx: &[usize], engine: Engine) -> Result<(Vec<f32>, String)> {
    let clf = match engine {
        Engine::Burn => {
            type Cpu = burn::backend::NdArray;
            let device = Default::default();
            let c = &model.meta.config;
            let m = from_engine_model::<Cpu>(model, 0.0, &device)?;
            // burn computes the centroid sinusoid itself: give it the genes block of `x`.
            let width = c.n_inputs();
            // (An image-only model has no model input: no genes.)
            let genes: Vec<f32> = if width == 0 { Vec::new() } else { data.cells.x.chunks(width).flat_map(|row| row[..c.n_genes].iter().copied()).collect() };
            let pixels = c.morphology.as_ref().map_or(0, |m| m.pixels());
            let inputs = CellInputs {
                n_cells: data.cells.n_cells,
                genes: (!c.is_image_only()).then_some(Rows { data: &genes, cols: c.n_genes }),
                gene_embedding: None,
                patches: data.cells.patches.as_deref().map(|p| Rows { data: p, cols: pixels }),
                morph_embedding: None,
                centroids_um: Some(Rows { data: &data.centroids, cols: 2 }),
            };
            inputs.check(&m.inputs())?;
            return Ok((predict_cells(&m, &inputs, idx, 512, &device), "burn fp32 (ndarray, CPU)".into()));
        }
        Engine::Cpu => engine::Classifier::cpu(model.clone())?,
        Engine::CpuW8a8 => engine::Classifier::cpu_with(model.clone(), engine::Int8Gemm::W8A8)?,
        Engine::Gpu => gpu_classifier(model.clone())?,
    };
    let cells = data.cells.select(idx)?;
    let logits = pollster::block_on(clf.logits(&cells)).with_context(|| format!("running the {}", clf.engine_name()))?;
    Ok((logits, clf.engine_name()))
}

/// The crop's cells through the engine's `prepare` (see [`CellData`]), with the
/// nucleus-centred DAPI patches at the model's µm/px for a morphology model.
pub(crate) fn model_inputs(model: &EngineModel, crop: &PreparedCrop) -> Result<CellData> {
    let patches = match &model.meta.config.morphology {
        Some(m) => Some((cellsymphony::train::benchmark::crop_patches(crop, m.image_size, m.um_per_px as f32)?, m.image_size)),
        None => None,
    };
    let centroids: Vec<f32> = crop.table.centroids_um.iter().flatten().copied().collect();
    let input = cellsymphony::data::CellInput {
        counts: cellsymphony::data::CountsInput::Dense { values: &crop.table.counts, n_cells: crop.table.n_cells(), n_genes: crop.table.genes.len() },
        genes: &crop.table.genes,
        // Only a model with a centroid token reads them (AnnData cells have none).
        centroids_um: model.meta.config.spatial.as_ref().map(|_| centroids.as_slice()),
        patches: patches.as_ref().map(|(pixels, size)| cellsymphony::data::PatchInput { pixels, size: *size }),
        // Only a model trained with --protein reads them.
        proteins: crop.protein.as_ref().map(|p| cellsymphony::data::ProteinInput { values: &p.values, markers: &p.markers }),
    };
    let cells = model.prepare(input)?.into_owned();
    Ok(CellData { cells, centroids })
}

pub(crate) fn evaluate(model: &EngineModel, path: &Path, crop: &PreparedCrop, engine: Engine) -> Result<(ClassificationReport, String)> {
    let test_idx = held_out_indices(model, path, crop)?;
    let data = model_inputs(model, crop)?;
    let (logits, engine_name) = engine_logits(model, &data, &test_idx, engine)?;
    let pred = argmax_rows(&logits, model.meta.classes.len());
    let mut truth = Vec::with_capacity(test_idx.len());
    for &i in &test_idx {
        let label = crop.labels[i].map(|c| &crop.class_names[c as usize]);
        let k = label.and_then(|l| model.meta.classes.iter().position(|c| c == l)).ok_or_else(|| {
            anyhow::anyhow!("held-out cell {} has no label among the model's classes with these labelling options", crop.table.cell_ids[i])
        })?;
        truth.push(k as u32);
    }
    Ok((ClassificationReport::new(&truth, &pred, &model.meta.classes), engine_name))
}

/// The forward pass of `engine` for [`train::slide::classify_slide`], built once (model
/// upload, weight packing) and run on every block; with the engine's name for reports.
pub(crate) type BlockForward = Box<dyn FnMut(&train::slide::SlideBlock<'_>) -> std::result::Result<Vec<f32>, train::TrainError>>;

pub(crate) fn block_forward(model: &EngineModel, engine: Engine) -> Result<(BlockForward, String)> {
    Ok(match engine {
        Engine::Burn => {
            type Cpu = burn::backend::NdArray;
            let device = burn::backend::ndarray::NdArrayDevice::default();
            let m = from_engine_model::<Cpu>(model, 0.0, &device)?;
            let c = model.meta.config.clone();
            let f: BlockForward = Box::new(move |block| {
                let width = c.n_inputs();
                let genes: Vec<f32> = block.cells.x.chunks(width).flat_map(|row| row[..c.n_genes].iter().copied()).collect();
                let inputs = CellInputs {
                    n_cells: block.cells.n_cells,
                    genes: Some(Rows { data: &genes, cols: c.n_genes }),
                    gene_embedding: None,
                    patches: None,
                    morph_embedding: None,
                    centroids_um: Some(Rows { data: &block.centroids_um, cols: 2 }),
                };
                inputs.check(&m.inputs())?;
                let idx: Vec<usize> = (0..block.cells.n_cells).collect();
                Ok(predict_cells(&m, &inputs, &idx, 512, &device))
            });
            (f, "burn fp32 (ndarray, CPU)".into())
        }
        Engine::Cpu | Engine::CpuW8a8 | Engine::Gpu => {
            let clf = match engine {
                Engine::Cpu => engine::Classifier::cpu(model.clone())?,
                Engine::CpuW8a8 => engine::Classifier::cpu_with(model.clone(), engine::Int8Gemm::W8A8)?,
                _ => gpu_classifier(model.clone())?,
            };
            let name = clf.engine_name();
            let f: BlockForward = Box::new(move |block| Ok(pollster::block_on(clf.logits(&block.cells))?));
            (f, name)
        }
    })
}
