//! SPATIA (issue 14): data for the multi-scale model ([`crate::model::spatia`]), masked
//! reconstruction pre-training, fine-tuning on a fold, embeddings and the level ablation.
//!
//! Data ([`SpatiaData::build`]): nucleus-centred DAPI patches per cell
//! ([`super::benchmark::crop_patches`]), the niche grid of the DAPI image at
//! `spec.niche_dapi_um_per_px` ([`data::NicheGrid`], cells by centroid), each niche tile
//! downsampled by block means to `spec.niche_image.image_size` px, and its tissue regions.
//! One optimisation step is one region ([`RegionCells`]: every cell of its non-empty niches).
//! Cells in no niche (centroid outside the image) are in no region: they are not trained on,
//! not predicted, and left out of the ablation's folds (counted).
//!
//! Without images (`spec.images == false`, [`SpatiaData::build`] on any `PreparedCrop` with
//! centroids, e.g. an h5ad imaging panel) there are no patches and no niche tiles: the niche
//! grid covers the centroids' bounding box (a virtual frame at `spec.niche_dapi_um_per_px`,
//! so a niche is still `niche_tile_px × niche_dapi_um_per_px` µm on a side), `patches` and
//! `niche_images` are empty and pre-training reconstructs masked genes only.
//!
//! Pre-training is label-free and reads every cell (test cells' expression and images too,
//! never a label); fine-tuning sees the labels of its fold's training cells only, selects the
//! epoch on its validation cells and reports its test cells once. The niche-composition target
//! of a niche is the class fractions among its *training* cells.

use std::path::Path;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ElementConversion;
use serde::{Deserialize, Serialize};

use super::benchmark::{crop_patches, mean_sd};
use super::dataset::PreparedCrop;
use super::embeddings::npy_f32_bytes;
use super::logistic::{LogisticOptions, LogisticRegression};
use super::metrics::ClassificationReport;
use super::split::{make_folds, Fold, FoldPlan};
use super::trainer::{argmax_rows, TrainConfig};
use super::TrainError;
use crate::analysis::{self, ClusterEnrichment, KMeansOptions};
use crate::data::{self, NicheGrid, NicheOptions};
use crate::engine::spec::SpatiaSpec;
use crate::model::spatia::{CellEncoder, RegionInputs, SpatiaModel};
use crate::util::rng::SplitMix64;

/// One tissue region as the model reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionCells {
    /// Index into [`NicheGrid::tissue_regions`].
    pub region: usize,
    /// Grid indices of the region's non-empty niches (ascending slot order).
    pub niches: Vec<usize>,
    /// Slot (`row · side + col` inside the region) of each niche.
    pub slots: Vec<usize>,
    /// Cells (indices into the cell table), grouped by niche.
    pub cells: Vec<usize>,
    /// Local niche (index into `niches`) of each cell.
    pub cell_niche: Vec<usize>,
}

/// The regions the model reads: for every region with at least one cell, its non-empty niches
/// in slot order and their cells, from the niche grid's own assignment.
pub fn region_assignment(grid: &NicheGrid, side: usize) -> Result<Vec<RegionCells>, TrainError> {
    let regions = grid.tissue_regions(side)?;
    let mut out = Vec::new();
    for (r, region) in regions.iter().enumerate() {
        let mut rc = RegionCells { region: r, niches: vec![], slots: vec![], cells: vec![], cell_niche: vec![] };
        for (slot, niche) in region.niches.iter().enumerate() {
            let Some(n) = *niche else { continue };
            if !region.mask[slot] {
                continue;
            }
            let local = rc.niches.len();
            rc.niches.push(n);
            rc.slots.push(slot);
            for &c in &grid.niches[n].cells {
                rc.cells.push(c as usize);
                rc.cell_niche.push(local);
            }
        }
        if !rc.cells.is_empty() {
            out.push(rc);
        }
    }
    Ok(out)
}

/// Everything the model reads, for every cell and niche of one slide.
pub struct SpatiaData {
    /// Genes `G`.
    pub n_genes: usize,
    /// Normalised expression `[cells, G]`.
    pub x: Vec<f32>,
    /// Nucleus patches `[cells, S²]` in `[0, 1]` (empty without images).
    pub patches: Vec<f32>,
    /// Patch side `S` (0 without images).
    pub patch_px: usize,
    /// Niche tiles `[niches, S'²]` in `[0, 1]` (block means of the DAPI tile; empty without
    /// images).
    pub niche_images: Vec<f32>,
    /// Niche tile side `S'` (0 without images).
    pub niche_px: usize,
    /// The niche grid.
    pub grid: NicheGrid,
    /// Regions with cells.
    pub regions: Vec<RegionCells>,
    /// Whether each cell lies in one of `regions`, `[cells]`.
    pub assigned: Vec<bool>,
    /// The DAPI image the niches were cut from (at `spec.niche_dapi_um_per_px`; `None`
    /// without images).
    pub dapi: Option<data::GrayImage16>,
    /// Where `dapi` lies on the slide (without images: the virtual pixel grid over the
    /// centroids' bounding box the niche grid was cut from).
    pub dapi_frame: data::ImageFrame,
}

impl SpatiaData {
    /// Patches, niche grid, niche tiles and regions of `crop` for `spec`; with `max_regions`,
    /// only the first regions with cells are kept (a quick subset for tests).
    pub fn build(crop: &PreparedCrop, spec: &SpatiaSpec, max_regions: Option<usize>) -> Result<Self, TrainError> {
        spec.validate().map_err(|e| TrainError::Options(e.to_string()))?;
        let g = crop.table.n_genes();
        if g != spec.n_genes {
            return Err(TrainError::Options(format!("the cells have {g} genes but the SPATIA spec expects {}; use the panel the model was trained on", spec.n_genes)));
        }
        if !spec.images {
            return Self::build_image_free(crop, spec, max_regions);
        }
        let patch_px = spec.cell_image.image_size;
        let patches = crop_patches(crop, patch_px, spec.cell_image.um_per_px as f32)?;
        let bundle = data::XeniumBundle::open(&crop.source)?;
        let (image, frame) = bundle.read_dapi(Some(spec.niche_dapi_um_per_px as f32))?;
        let opts = NicheOptions { tile_px: spec.niche_tile_px, edge: data::EdgePolicy::Pad, region_niches: spec.region_niches };
        let grid = NicheGrid::build(&crop.table.centroids_um, &crop.table.counts, g, &frame, [image.width, image.height], &opts)?;
        let scale = data::IntensityScale::global(&image);
        let niche_px = spec.niche_image.image_size;
        let f = spec.niche_tile_px / niche_px;
        let mut niche_images = Vec::with_capacity(grid.niches.len() * niche_px * niche_px);
        for n in 0..grid.niches.len() {
            let tile = grid.patch(&image, n)?;
            for r in 0..niche_px {
                for c in 0..niche_px {
                    let mut s = 0.0f32;
                    for dr in 0..f {
                        for dc in 0..f {
                            s += scale.apply(tile.pixels[(r * f + dr) * tile.width + c * f + dc] as f32);
                        }
                    }
                    niche_images.push(s / (f * f) as f32);
                }
            }
        }
        let (regions, assigned) = Self::regions(&grid, spec, crop.table.n_cells(), max_regions)?;
        Ok(Self { n_genes: g, x: crop.x_norm.clone(), patches, patch_px, niche_images, niche_px, grid, regions, assigned, dapi: Some(image), dapi_frame: frame })
    }

    /// The image-free data: the niche grid over the centroids' bounding box (a virtual pixel
    /// grid at `spec.niche_dapi_um_per_px` whose pixel (0, 0) is centred on the smallest x and
    /// y), no patches, no tiles.
    fn build_image_free(crop: &PreparedCrop, spec: &SpatiaSpec, max_regions: Option<usize>) -> Result<Self, TrainError> {
        let c = &crop.table.centroids_um;
        if let Some(i) = c.iter().position(|p| !(p[0].is_finite() && p[1].is_finite())) {
            return Err(TrainError::Options(format!(
                "cell {} ({}) has no finite centroid; the image-free SPATIA needs every cell's position (an h5ad's obsm['spatial'])",
                i, crop.table.cell_ids.get(i).map_or("?", String::as_str)
            )));
        }
        if c.is_empty() {
            return Err(TrainError::Options("no cells to build SPATIA niches from".into()));
        }
        let um = spec.niche_dapi_um_per_px as f32;
        let (mut lo, mut hi) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
        for p in c {
            for a in 0..2 {
                lo[a] = lo[a].min(p[a]);
                hi[a] = hi[a].max(p[a]);
            }
        }
        let size = |a: usize| ((hi[a] - lo[a]) / um).ceil() as usize + 1;
        let frame = data::ImageFrame { origin_um: lo, um_per_px: um };
        let opts = NicheOptions { tile_px: spec.niche_tile_px, edge: data::EdgePolicy::Pad, region_niches: spec.region_niches };
        let g = crop.table.n_genes();
        let grid = NicheGrid::build(c, &crop.table.counts, g, &frame, [size(0), size(1)], &opts)?;
        let (regions, assigned) = Self::regions(&grid, spec, crop.table.n_cells(), max_regions)?;
        Ok(Self { n_genes: g, x: crop.x_norm.clone(), patches: vec![], patch_px: 0, niche_images: vec![], niche_px: 0, grid, regions, assigned, dapi: None, dapi_frame: frame })
    }

    /// The regions with cells (the first `max_regions` of them) and which cells they hold.
    fn regions(grid: &NicheGrid, spec: &SpatiaSpec, n_cells: usize, max_regions: Option<usize>) -> Result<(Vec<RegionCells>, Vec<bool>), TrainError> {
        let mut regions = region_assignment(grid, spec.region_niches)?;
        if let Some(m) = max_regions {
            regions.truncate(m.max(1));
        }
        let mut assigned = vec![false; n_cells];
        for r in &regions {
            for &c in &r.cells {
                assigned[c] = true;
            }
        }
        Ok((regions, assigned))
    }

    /// Cells.
    pub fn n_cells(&self) -> usize {
        self.assigned.len()
    }

    /// Rows `idx` of the row-major `[_, width]` matrix `values` as a tensor `[idx.len(), width]`.
    /// `[n, S, S]` images of rows `idx` (`[n, 0, 0]` when `s` is 0: no images).
    fn images<B: Backend>(values: &[f32], s: usize, idx: &[usize], device: &B::Device) -> Tensor<B, 3> {
        if s == 0 {
            return Tensor::from_data(TensorData::new(Vec::<f32>::new(), [idx.len(), 0, 0]), device);
        }
        Self::rows::<B>(values, s * s, idx, device).reshape([idx.len(), s, s])
    }

    pub(crate) fn rows<B: Backend>(values: &[f32], width: usize, idx: &[usize], device: &B::Device) -> Tensor<B, 2> {
        let mut v = Vec::with_capacity(idx.len() * width);
        for &i in idx {
            v.extend_from_slice(&values[i * width..(i + 1) * width]);
        }
        Tensor::from_data(TensorData::new(v, [idx.len(), width]), device)
    }

    /// Expression `[n, G]` and patches `[n, S, S]` of cells `idx`.
    pub fn cell_tensors<B: Backend>(&self, idx: &[usize], device: &B::Device) -> (Tensor<B, 2>, Tensor<B, 3>) {
        let s = self.patch_px;
        let genes = Self::rows::<B>(&self.x, self.n_genes, idx, device);
        let patches = Self::images::<B>(&self.patches, s, idx, device);
        (genes, patches)
    }

    /// The model inputs of region `r` (an index into `regions`).
    pub fn region_inputs<B: Backend>(&self, r: usize, device: &B::Device) -> RegionInputs<B> {
        let rc = &self.regions[r];
        let (genes, patches) = self.cell_tensors::<B>(&rc.cells, device);
        let s = self.niche_px;
        let niche_images = Self::images::<B>(&self.niche_images, s, &rc.niches, device);
        RegionInputs { genes, patches, niche_images, cell_niche: rc.cell_niche.clone(), niche_slot: rc.slots.clone() }
    }
}

/// Masked-reconstruction pre-training settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainConfig {
    /// Passes over all cells.
    pub epochs: usize,
    /// Cells per step.
    pub batch_size: usize,
    /// AdamW learning rate (constant).
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f32,
    /// Share of genes masked per cell (set to 0 in the input, predicted from the rest).
    pub gene_mask: f64,
    /// Share of ViT patches masked per cell (pixels set to 0, reconstructed).
    pub image_mask: f64,
    /// Seed.
    pub seed: u64,
}

impl Default for PretrainConfig {
    /// 10 epochs, batch 64, lr 1e-3, weight decay 0.05, 25 % of genes and 50 % of patches masked.
    fn default() -> Self {
        Self { epochs: 10, batch_size: 64, learning_rate: 1e-3, weight_decay: 0.05, gene_mask: 0.25, image_mask: 0.5, seed: 42 }
    }
}

/// One pre-training epoch's mean losses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean squared error on masked genes.
    pub gene_loss: f64,
    /// Mean squared error on the pixels of masked patches (0 without images).
    pub image_loss: f64,
    /// Seconds.
    pub seconds: f64,
}

/// A pre-trained cell level.
pub struct Pretrained<B: Backend> {
    /// The cell encoder (with its decoders).
    pub cell: CellEncoder<B>,
    /// Loss curve.
    pub history: Vec<PretrainEpoch>,
}

/// Masked reconstruction of the cell level on every cell of `data`.
pub fn pretrain<B: AutodiffBackend>(
    data: &SpatiaData,
    spec: &SpatiaSpec,
    config: &PretrainConfig,
    device: &B::Device,
    log: &mut dyn FnMut(String),
) -> Result<Pretrained<B::InnerBackend>, TrainError> {
    spec.validate().map_err(|e| TrainError::Options(e.to_string()))?;
    for (name, v) in [("gene mask", config.gene_mask), ("image mask", config.image_mask)] {
        if !(0.0..1.0).contains(&v) {
            return Err(TrainError::Options(format!("{name} {v} must be in [0, 1)")));
        }
    }
    B::seed(device, config.seed);
    let mut cell = CellEncoder::<B>::init(spec, 0.1, device);
    let mut optim = AdamWConfig::new().with_weight_decay(config.weight_decay).init::<B, CellEncoder<B>>();
    let mut rng = SplitMix64::new(config.seed ^ 0x5A7_1A);
    let (s, p, g) = (data.patch_px, spec.cell_image.vit_patch, data.n_genes);
    if spec.images != (s > 0) {
        return Err(TrainError::Options(format!("the spec has images = {} but the data were built {} images; build SpatiaData with this spec", spec.images, if s > 0 { "with" } else { "without" })));
    }
    let grid = if spec.images { s / p } else { 0 };
    let mut history = Vec::new();
    let mut order: Vec<usize> = (0..data.n_cells()).collect();
    for epoch in 1..=config.epochs {
        let t = Instant::now();
        rng.shuffle(&mut order);
        let (mut lg, mut li, mut steps) = (0.0, 0.0, 0usize);
        for chunk in order.chunks(config.batch_size.max(1)) {
            let b = chunk.len();
            let (genes, patches) = data.cell_tensors::<B>(chunk, device);
            let gm: Vec<f32> = (0..b * g).map(|_| f32::from(rng.next_f64() < config.gene_mask)).collect();
            let tm: Vec<f32> = (0..b * grid * grid).map(|_| f32::from(rng.next_f64() < config.image_mask)).collect();
            let mut pm = vec![0f32; b * s * s];
            for (i, m) in pm.iter_mut().enumerate() {
                let (cell_i, r, c) = (i / (s * s), (i / s) % s, i % s);
                *m = tm[cell_i * grid * grid + (r / p) * grid + c / p];
            }
            let (n_gm, n_tm) = (gm.iter().sum::<f32>().max(1.0), tm.iter().sum::<f32>().max(1.0));
            let gm = Tensor::<B, 2>::from_data(TensorData::new(gm, [b, g]), device);
            let masked_genes = genes.clone() * (gm.clone().neg() + 1.0);
            let loss = match &cell.vit {
                Some(vit) => {
                    let tm = Tensor::<B, 2>::from_data(TensorData::new(tm, [b, grid * grid]), device);
                    let pm = Tensor::<B, 3>::from_data(TensorData::new(pm, [b, s, s]), device);
                    let target = vit.unfold(patches.clone());
                    let (pg, pi) = cell.reconstruct(masked_genes, patches * (pm.neg() + 1.0));
                    let eg = pg - genes;
                    let gene_loss = (eg.clone() * eg * gm).sum().div_scalar(n_gm);
                    let pi = pi.ok_or_else(|| TrainError::Options("the cell level has a ViT but no pixel decoder".into()))?;
                    let ei = pi - target;
                    let image_loss = (ei.clone() * ei * tm.unsqueeze_dim::<3>(2)).sum().div_scalar(n_tm * (p * p) as f32);
                    lg += gene_loss.clone().into_scalar().elem::<f64>();
                    li += image_loss.clone().into_scalar().elem::<f64>();
                    gene_loss + image_loss
                }
                None => {
                    // Image-free: masked genes only.
                    let (pg, _) = cell.reconstruct(masked_genes, patches);
                    let eg = pg - genes;
                    let gene_loss = (eg.clone() * eg * gm).sum().div_scalar(n_gm);
                    lg += gene_loss.clone().into_scalar().elem::<f64>();
                    gene_loss
                }
            };
            steps += 1;
            let grads = GradientsParams::from_grads(loss.backward(), &cell);
            cell = optim.step(config.learning_rate, cell, grads);
        }
        let e = PretrainEpoch { epoch, gene_loss: lg / steps.max(1) as f64, image_loss: li / steps.max(1) as f64, seconds: t.elapsed().as_secs_f64() };
        if spec.images {
            log(format!("pretrain epoch {epoch}/{}: masked-gene MSE {:.4}, masked-pixel MSE {:.4} ({:.1} s)", config.epochs, e.gene_loss, e.image_loss, e.seconds));
        } else {
            log(format!("pretrain epoch {epoch}/{}: masked-gene MSE {:.4} (no images) ({:.1} s)", config.epochs, e.gene_loss, e.seconds));
        }
        history.push(e);
    }
    Ok(Pretrained { cell: cell.valid(), history })
}

/// Fine-tuning settings: the optimisation fields of [`TrainConfig`] (lr with warmup + cosine,
/// weight decay, class weighting, label smoothing, epochs, patience, seed; `batch_size` unused:
/// a step is one region) plus the weight of the niche-composition loss and dropout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinetuneConfig {
    /// Optimisation.
    pub train: TrainConfig,
    /// Weight of the niche-composition cross-entropy (niche level only).
    pub composition_weight: f32,
    /// Dropout while training.
    pub dropout: f64,
}

impl FinetuneConfig {
    /// The `default` recipe (lr 1e-3, 5 % warmup + cosine, weight decay 0.05, sqrt-balanced
    /// weights, smoothing 0.1) with `epochs` and patience 8; composition weight 0.5, dropout 0.1.
    pub fn new(epochs: usize, seed: u64) -> Self {
        let mut train = super::trainer::Recipe::Default.config(seed);
        train.epochs = epochs;
        train.patience = Some(8);
        Self { train, composition_weight: 0.5, dropout: 0.1 }
    }
}

/// One fine-tuning epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinetuneEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss (cell type + weighted composition).
    pub loss: f64,
    /// Validation macro-F1.
    pub val_macro_f1: Option<f64>,
    /// Seconds.
    pub seconds: f64,
}

/// A fine-tuned model (best validation epoch) and its test report.
pub struct Finetuned<B: Backend> {
    /// Weights of the best validation epoch.
    pub model: SpatiaModel<B>,
    /// Per-epoch history.
    pub history: Vec<FinetuneEpoch>,
    /// Epoch whose weights were kept.
    pub best_epoch: usize,
    /// Test cells evaluated (the fold's test cells in a region).
    pub test_cells: Vec<usize>,
    /// Report on them.
    pub report: ClassificationReport,
}

/// Logits `[cells, C]` of every cell in a region (0 elsewhere) and the model's outputs.
pub struct SpatiaEmbeddings {
    /// Classes `C`.
    pub n_classes: usize,
    /// Width `D`.
    pub d_model: usize,
    /// `[cells, C]`.
    pub logits: Vec<f32>,
    /// `[cells, D]`.
    pub z_cell: Vec<f32>,
    /// Fused `[cells, D]`.
    pub z: Vec<f32>,
    /// `[niches, D]` (zeros for empty niches or without the niche level).
    pub z_niche: Vec<f32>,
    /// `[niches, D]` (zeros for empty niches or without the tissue level).
    pub z_tissue: Vec<f32>,
}

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec::<f32>().unwrap_or_default()
}

/// Run `model` over every region of `data`.
pub fn embed<B: Backend>(model: &SpatiaModel<B>, data: &SpatiaData, n_classes: usize, d: usize, device: &B::Device) -> SpatiaEmbeddings {
    let (n, nn) = (data.n_cells(), data.grid.niches.len());
    let mut e = SpatiaEmbeddings {
        n_classes,
        d_model: d,
        logits: vec![0.0; n * n_classes],
        z_cell: vec![0.0; n * d],
        z: vec![0.0; n * d],
        z_niche: vec![0.0; nn * d],
        z_tissue: vec![0.0; nn * d],
    };
    for r in 0..data.regions.len() {
        let rc = &data.regions[r];
        let out = model.forward(&data.region_inputs::<B>(r, device));
        let scatter = |dst: &mut Vec<f32>, src: Vec<f32>, rows: &[usize], w: usize| {
            for (k, &i) in rows.iter().enumerate() {
                dst[i * w..(i + 1) * w].copy_from_slice(&src[k * w..(k + 1) * w]);
            }
        };
        scatter(&mut e.logits, to_vec(out.logits), &rc.cells, n_classes);
        scatter(&mut e.z_cell, to_vec(out.z_cell), &rc.cells, d);
        scatter(&mut e.z, to_vec(out.z), &rc.cells, d);
        if let Some(zn) = out.z_niche {
            scatter(&mut e.z_niche, to_vec(zn), &rc.niches, d);
        }
        if let Some(zt) = out.z_tissue {
            scatter(&mut e.z_tissue, to_vec(zt), &rc.niches, d);
        }
    }
    e
}

/// The inputs of region `r` (an index into `regions`) for the burn-free engine: genes
/// `[N, G]`, patches `[N, S²]`, niche tiles `[K, S'²]` (read with the region's `cell_niche`
/// and `slots` as a [`crate::engine::SpatiaRegionInput`]).
pub fn engine_region_inputs(data: &SpatiaData, r: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let rc = &data.regions[r];
    let rows = |values: &[f32], w: usize, idx: &[usize]| -> Vec<f32> { idx.iter().flat_map(|&i| values[i * w..(i + 1) * w].iter().copied()).collect() };
    let (s, sn) = (data.patch_px, data.niche_px);
    (rows(&data.x, data.n_genes, &rc.cells), rows(&data.patches, s * s, &rc.cells), rows(&data.niche_images, sn * sn, &rc.niches))
}

/// [`embed`] on the burn-free CPU engine ([`crate::engine::SpatiaCpu::forward_region`]):
/// every region of `data`, outputs scattered to the cells and niches as [`embed`] does.
///
/// Errors: the engine's (mis-sized inputs: a model of another spec than `data`'s).
pub fn embed_engine(model: &crate::engine::SpatiaCpu<'_>, data: &SpatiaData) -> Result<SpatiaEmbeddings, TrainError> {
    embed_regions(&model.model().meta.spec, data, |input| model.forward_region(input))
}

/// [`embed_engine`] with any engine's forward of one region (the CPU engine's
/// `SpatiaCpu::forward_region`, or `GpuSpatia::forward_region` awaited): every region of
/// `data`, outputs scattered back to the slide's cells and niches.
pub fn embed_regions(
    spec: &SpatiaSpec,
    data: &SpatiaData,
    mut forward: impl FnMut(&crate::engine::SpatiaRegionInput<'_>) -> Result<crate::engine::SpatiaRegionOutput, crate::engine::EngineError>,
) -> Result<SpatiaEmbeddings, TrainError> {
    let (n, nn, c, d) = (data.n_cells(), data.grid.niches.len(), spec.n_classes, spec.d_model);
    let mut e = SpatiaEmbeddings {
        n_classes: c,
        d_model: d,
        logits: vec![0.0; n * c],
        z_cell: vec![0.0; n * d],
        z: vec![0.0; n * d],
        z_niche: vec![0.0; nn * d],
        z_tissue: vec![0.0; nn * d],
    };
    let scatter = |dst: &mut Vec<f32>, src: &[f32], rows: &[usize], w: usize| {
        for (k, &i) in rows.iter().enumerate() {
            dst[i * w..(i + 1) * w].copy_from_slice(&src[k * w..(k + 1) * w]);
        }
    };
    for r in 0..data.regions.len() {
        let rc = &data.regions[r];
        let (genes, patches, niche_images) = engine_region_inputs(data, r);
        let input = crate::engine::SpatiaRegionInput { genes: &genes, patches: &patches, niche_images: &niche_images, cell_niche: &rc.cell_niche, niche_slot: &rc.slots };
        let out = forward(&input)?;
        scatter(&mut e.logits, &out.logits, &rc.cells, c);
        scatter(&mut e.z_cell, &out.z_cell, &rc.cells, d);
        scatter(&mut e.z, &out.z, &rc.cells, d);
        if let Some(zn) = &out.z_niche {
            scatter(&mut e.z_niche, zn, &rc.niches, d);
        }
        if let Some(zt) = &out.z_tissue {
            scatter(&mut e.z_tissue, zt, &rc.niches, d);
        }
    }
    Ok(e)
}

/// The niches of `data`'s regions (grid indices, ascending, distinct).
pub fn embedded_niches(data: &SpatiaData) -> Vec<usize> {
    let mut niches: Vec<usize> = data.regions.iter().flat_map(|r| r.niches.iter().copied()).collect();
    niches.sort_unstable();
    niches.dedup();
    niches
}

/// Cluster of every embedded niche ([`embedded_niches`]) by its nearest centroid, `[niches]`
/// of the grid (`None` for niches in no region).
pub fn assign_niche_clusters(e: &SpatiaEmbeddings, data: &SpatiaData, centroids: &crate::engine::NicheCentroids) -> Vec<Option<u32>> {
    let d = e.d_model;
    let mut out = vec![None; data.grid.niches.len()];
    for k in embedded_niches(data) {
        out[k] = centroids.assign(&e.z_niche[k * d..(k + 1) * d]).first().copied();
    }
    out
}

/// `niche_clusters.csv`: `niche,col,row,cells,cluster` (empty cluster for niches in no
/// region), atomically.
pub fn write_niche_cluster_csv(dir: &Path, data: &SpatiaData, cluster_of: &[Option<u32>]) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|source| TrainError::Io { path: dir.display().to_string(), source })?;
    let mut csv = String::from("niche,col,row,cells,cluster\n");
    for (k, n) in data.grid.niches.iter().enumerate() {
        csv += &format!("{k},{},{},{},{}\n", n.niche_col, n.niche_row, n.cells.len(), cluster_of[k].map_or(String::new(), |c| c.to_string()));
    }
    crate::util::write_atomic(&dir.join("niche_clusters.csv"), csv.as_bytes())?;
    Ok(())
}

/// The browser check's bundle of `spatia classify --www DIR`: the model file
/// (`spatia.safetensors`), every region's inputs in one flat layout — `genes.f32` `[N, G]`,
/// `patches.f32` `[N, S²]`, `niche_tiles.f32` `[K, S'²]` (little-endian f32), `cell_niche.u32`
/// `[N]` (index into the K niches), `niche_slot.u32` and `niche_region.u32` `[K]` — with N the
/// cells and K the niches of all regions, region after region — and `reference.json`: the
/// cells' ids, the native engine's class per cell (`classes`), the niches' grid indices and
/// nearest-centroid clusters (`niche_clusters`, −1 without centroids), sizes and class names.
pub fn write_www_bundle(dir: &Path, model_bytes: &[u8], data: &SpatiaData, e: &SpatiaEmbeddings, niche_clusters: Option<&[Option<u32>]>, cell_ids: &[String], class_names: &[String]) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|source| TrainError::Io { path: dir.display().to_string(), source })?;
    let f32s = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let u32s = |v: &[u32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let (mut genes, mut patches, mut tiles) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cell_niche, mut niche_slot, mut niche_region) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ids, mut classes, mut niches, mut clusters) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Each niche's square on the slide `[x0, y0, width, height]` in µm (pixel edges), for the
    // page's niche map.
    let mut rects_um: Vec<[f32; 4]> = Vec::new();
    let pred = argmax_rows(&e.logits, e.n_classes);
    for (r, rc) in data.regions.iter().enumerate() {
        let (g, p, t) = engine_region_inputs(data, r);
        genes.extend(g);
        patches.extend(p);
        tiles.extend(t);
        let first = niche_slot.len() as u32;
        cell_niche.extend(rc.cell_niche.iter().map(|&k| first + k as u32));
        niche_slot.extend(rc.slots.iter().map(|&s| s as u32));
        niche_region.extend(rc.niches.iter().map(|_| r as u32));
        for &c in &rc.cells {
            ids.push(cell_ids[c].clone());
            classes.push(pred[c]);
        }
        for &k in &rc.niches {
            let n = &data.grid.niches[k];
            let edge = |axis: usize, px: usize| data.dapi_frame.origin_um[axis] + (px as f32 - 0.5) * data.dapi_frame.um_per_px;
            let w = data.dapi_frame.um_per_px;
            rects_um.push([edge(0, n.origin_px[0]), edge(1, n.origin_px[1]), n.extent_px[0] as f32 * w, n.extent_px[1] as f32 * w]);
            niches.push(k);
            clusters.push(niche_clusters.and_then(|cl| cl[k]).map_or(-1, |c| c as i64));
        }
    }
    let reference = serde_json::json!({
        "n_cells": ids.len(), "n_niches": niches.len(), "n_genes": data.n_genes, "patch_px": data.patch_px, "niche_px": data.niche_px,
        "cell_ids": ids, "classes": classes, "class_names": class_names, "niches": niches, "niche_clusters": clusters, "niche_rects_um": rects_um,
    });
    for (name, bytes) in [
        ("spatia.safetensors", model_bytes.to_vec()),
        ("genes.f32", f32s(&genes)),
        ("patches.f32", f32s(&patches)),
        ("niche_tiles.f32", f32s(&tiles)),
        ("cell_niche.u32", u32s(&cell_niche)),
        ("niche_slot.u32", u32s(&niche_slot)),
        ("niche_region.u32", u32s(&niche_region)),
        ("reference.json", reference.to_string().into_bytes()),
    ] {
        crate::util::write_atomic(&dir.join(name), &bytes)?;
    }
    Ok(())
}

/// The pre-trained cell level's record must fit `spec` (same cell-level sizes).
fn check_pretrained(pre: &SpatiaSpec, spec: &SpatiaSpec, path: &Path) -> Result<(), TrainError> {
    let same = pre.n_genes == spec.n_genes
        && pre.d_model == spec.d_model
        && pre.n_heads == spec.n_heads
        && pre.d_ff == spec.d_ff
        && pre.gene_tokens == spec.gene_tokens
        && pre.images == spec.images
        && pre.cell_query_tokens == spec.cell_query_tokens
        && (!spec.images || pre.cell_image == spec.cell_image);
    if same {
        Ok(())
    } else {
        Err(TrainError::Options(format!(
            "{}: the pre-trained cell level (genes {}, d_model {}, gene tokens {}, patch {} px) does not fit this model (genes {}, d_model {}, gene tokens {}, patch {} px); fine-tune with the sizes it was pre-trained with",
            path.display(), pre.n_genes, pre.d_model, pre.gene_tokens, pre.cell_image.image_size, spec.n_genes, spec.d_model, spec.gene_tokens, spec.cell_image.image_size
        )))
    }
}

/// Fine-tune a SPATIA model on `fold` (labels of `fold.train` only; epoch chosen on `fold.val`;
/// `fold.test` reported once). `pretrained`: a cell level to start from.
#[allow(clippy::too_many_arguments)]
pub fn finetune<B: AutodiffBackend>(
    data: &SpatiaData,
    labels: &[Option<u32>],
    class_names: &[String],
    fold: &Fold,
    spec: &SpatiaSpec,
    config: &FinetuneConfig,
    pretrained: Option<&CellEncoder<B::InnerBackend>>,
    device: &B::Device,
    log: &mut dyn FnMut(String),
) -> Result<Finetuned<B::InnerBackend>, TrainError> {
    let c = spec.n_classes;
    let tc = &config.train;
    B::seed(device, tc.seed);
    let mut model = SpatiaModel::<B>::init(spec, config.dropout, device).map_err(|e| TrainError::Options(e.to_string()))?;
    if let Some(cell) = pretrained {
        let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
        let bytes = Recorder::<B::InnerBackend>::record(&recorder, cell.clone().into_record(), ()).map_err(|e| TrainError::Options(e.to_string()))?;
        let record = Recorder::<B>::load(&recorder, bytes, device).map_err(|e| TrainError::Options(format!("pre-trained cell level does not load: {e}")))?;
        model.cell = model.cell.load_record_keeping_rng(record);
    }
    let mut is_train = vec![false; labels.len()];
    for &i in &fold.train {
        is_train[i] = true;
    }
    let train_labels: Vec<u32> = fold.train.iter().filter_map(|&i| labels[i]).collect();
    let mut loss_cfg = CrossEntropyLossConfig::new().with_weights(tc.class_weighting.weights(&train_labels, c));
    if tc.label_smoothing > 0.0 {
        loss_cfg = loss_cfg.with_smoothing(Some(tc.label_smoothing));
    }
    let loss_fn = loss_cfg.init(device);
    let mut optim = AdamWConfig::new().with_weight_decay(tc.weight_decay).init::<B, SpatiaModel<B>>();
    let n_regions = data.regions.len();
    let total_steps = n_regions * tc.epochs;
    let assigned = |idx: &[usize]| -> Vec<usize> { idx.iter().copied().filter(|&i| data.assigned[i]).collect() };
    let (val, test) = (assigned(&fold.val), assigned(&fold.test));
    let report_on = |m: &SpatiaModel<B::InnerBackend>, cells: &[usize]| {
        let e = embed(m, data, c, spec.d_model, device);
        let truth: Vec<u32> = cells.iter().map(|&i| labels[i].unwrap_or(0)).collect();
        let rows: Vec<f32> = cells.iter().flat_map(|&i| e.logits[i * c..(i + 1) * c].to_vec()).collect();
        ClassificationReport::new(&truth, &argmax_rows(&rows, c), class_names)
    };
    let mut rng = SplitMix64::new(tc.seed ^ 0xF1_7E);
    let mut history: Vec<FinetuneEpoch> = Vec::new();
    let mut best: Option<(usize, f64, SpatiaModel<B::InnerBackend>)> = None;
    let mut order: Vec<usize> = (0..n_regions).collect();
    for epoch in 1..=tc.epochs {
        let t = Instant::now();
        rng.shuffle(&mut order);
        let (mut loss_sum, mut steps) = (0.0, 0usize);
        for (b, &r) in order.clone().iter().enumerate() {
            let rc = &data.regions[r];
            let local: Vec<usize> = (0..rc.cells.len()).filter(|&k| is_train[rc.cells[k]] && labels[rc.cells[k]].is_some()).collect();
            if local.is_empty() {
                continue;
            }
            let out = model.forward(&data.region_inputs::<B>(r, device));
            let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(local.iter().map(|&k| k as i64).collect::<Vec<_>>(), [local.len()]), device);
            let y: Vec<i64> = local.iter().map(|&k| labels[rc.cells[k]].unwrap_or(0) as i64).collect();
            let y = Tensor::<B, 1, Int>::from_data(TensorData::new(y, [local.len()]), device);
            let mut loss = loss_fn.forward(out.logits.select(0, idx), y);
            if let Some(comp) = out.composition {
                // Class fractions among each niche's training cells.
                let mut frac = vec![0f32; rc.niches.len() * c];
                let mut count = vec![0f32; rc.niches.len()];
                for &k in &local {
                    let n = rc.cell_niche[k];
                    frac[n * c + labels[rc.cells[k]].unwrap_or(0) as usize] += 1.0;
                    count[n] += 1.0;
                }
                let with: Vec<usize> = (0..rc.niches.len()).filter(|&n| count[n] > 0.0).collect();
                let mut target = Vec::with_capacity(with.len() * c);
                for &n in &with {
                    target.extend(frac[n * c..(n + 1) * c].iter().map(|v| v / count[n]));
                }
                let nidx = Tensor::<B, 1, Int>::from_data(TensorData::new(with.iter().map(|&n| n as i64).collect::<Vec<_>>(), [with.len()]), device);
                let target = Tensor::<B, 2>::from_data(TensorData::new(target, [with.len(), c]), device);
                let ce = (log_softmax(comp.select(0, nidx), 1) * target).sum().neg().div_scalar(with.len() as f32);
                loss = loss + ce.mul_scalar(config.composition_weight);
            }
            loss_sum += loss.clone().into_scalar().elem::<f64>();
            steps += 1;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr = tc.lr_at((epoch - 1) * n_regions + b, total_steps);
            model = optim.step(lr, model, grads);
        }
        let val_f1 = (!val.is_empty()).then(|| report_on(&model.valid(), &val).macro_f1);
        if let Some(f1) = val_f1 {
            if best.as_ref().is_none_or(|(_, s, _)| f1 > *s) {
                best = Some((epoch, f1, model.valid()));
            }
        }
        let e = FinetuneEpoch { epoch, loss: loss_sum / steps.max(1) as f64, val_macro_f1: val_f1, seconds: t.elapsed().as_secs_f64() };
        log(format!(
            "finetune ({}) epoch {epoch}/{}: loss {:.4}, val macro-F1 {} ({:.1} s)",
            spec.levels.name(), tc.epochs, e.loss, val_f1.map_or("-".into(), |v| format!("{v:.3}")), e.seconds
        ));
        history.push(e);
        if let (Some(p), Some((be, _, _))) = (tc.patience, &best) {
            if epoch - be >= p {
                break;
            }
        }
    }
    let last = history.last().map_or(0, |h| h.epoch);
    let (best_epoch, model) = match best {
        Some((e, _, m)) => (e, m),
        None => (last, model.valid()),
    };
    let report = report_on(&model, &test);
    Ok(Finetuned { model, history, best_epoch, test_cells: test, report })
}

/// What a saved SPATIA model or pre-trained cell level holds besides its weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpatiaHeader {
    /// Architecture.
    pub spec: SpatiaSpec,
    /// Class names (empty for a pre-trained cell level).
    pub class_names: Vec<String>,
    /// Free-form training record (configs, loss curve, split, test macro-F1).
    pub training: serde_json::Value,
    /// Layout of the burn record beside it ([`SPATIA_RECORD_VERSION`]; 1 when absent: written
    /// before the cell level's ViT and pixel decoder became optional).
    #[serde(default = "record_version_1")]
    pub record_version: u32,
}

/// Layout of the burn records [`save`] writes: 2 since the image-free model (the cell and
/// niche levels' ViTs, the pixel decoder and the learned queries are optional modules, which
/// burn's bincode record tags), so version-1 records do not decode.
pub const SPATIA_RECORD_VERSION: u32 = 2;

fn record_version_1() -> u32 {
    1
}

impl SpatiaHeader {
    /// A header of the current record layout.
    pub fn new(spec: SpatiaSpec, class_names: Vec<String>, training: serde_json::Value) -> Self {
        Self { spec, class_names, training, record_version: SPATIA_RECORD_VERSION }
    }
}

/// File names of a saved model (`spatia_model`) or pre-trained cell level (`spatia_pretrain`).
pub fn file_paths(dir: &Path, stem: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    (dir.join(format!("{stem}.json")), dir.join(format!("{stem}.bin")))
}

/// Write `header` (JSON) and `record` (burn bincode, full precision) atomically.
pub fn save<B: Backend, M: Module<B>>(dir: &Path, stem: &str, header: &SpatiaHeader, module: &M) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|source| TrainError::Io { path: dir.display().to_string(), source })?;
    let (json, bin) = file_paths(dir, stem);
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let bytes = Recorder::<B>::record(&recorder, module.clone().into_record(), ()).map_err(|e| TrainError::Options(e.to_string()))?;
    crate::util::write_atomic(&bin, &bytes)?;
    let text = serde_json::to_string_pretty(header).map_err(|e| TrainError::Options(e.to_string()))?;
    crate::util::write_atomic(&json, text.as_bytes())?;
    Ok(())
}

/// Read a header and the record bytes written by [`save`].
pub fn load_parts(dir: &Path, stem: &str) -> Result<(SpatiaHeader, Vec<u8>), TrainError> {
    let (json, bin) = file_paths(dir, stem);
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| TrainError::Io { path: p, source }
    };
    let text = std::fs::read_to_string(&json).map_err(io(&json))?;
    let header: SpatiaHeader = serde_json::from_str(&text).map_err(|e| TrainError::Options(format!("{}: not a SPATIA header ({e}); write it with `cellsymphony spatia`", json.display())))?;
    if header.record_version != SPATIA_RECORD_VERSION {
        return Err(TrainError::Options(format!(
            "{}: record_version {} was written by an older build (this one reads {SPATIA_RECORD_VERSION}: the ViTs and pixel decoder became optional for the image-free model); re-run `cellsymphony spatia pretrain` / `finetune`",
            json.display(),
            header.record_version
        )));
    }
    let bytes = std::fs::read(&bin).map_err(io(&bin))?;
    Ok((header, bytes))
}

/// Load a pre-trained cell level for `spec`.
pub fn load_pretrained<B: Backend>(dir: &Path, spec: &SpatiaSpec, device: &B::Device) -> Result<CellEncoder<B>, TrainError> {
    let (header, bytes) = load_parts(dir, "spatia_pretrain")?;
    check_pretrained(&header.spec, spec, &file_paths(dir, "spatia_pretrain").0)?;
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let record = Recorder::<B>::load(&recorder, bytes, device).map_err(|e| TrainError::Options(format!("{}: record does not load ({e})", dir.display())))?;
    Ok(CellEncoder::init(spec, 0.0, device).load_record(record))
}

/// Load a fine-tuned model and its header.
pub fn load_model<B: Backend>(dir: &Path, device: &B::Device) -> Result<(SpatiaHeader, SpatiaModel<B>), TrainError> {
    let (header, bytes) = load_parts(dir, "spatia_model")?;
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let record = Recorder::<B>::load(&recorder, bytes, device).map_err(|e| TrainError::Options(format!("{}: record does not load ({e})", dir.display())))?;
    let model = SpatiaModel::init(&header.spec, 0.0, device).map_err(|e| TrainError::Options(e.to_string()))?.load_record(record);
    Ok((header, model))
}

/// Write `z_cell.npy`, `z.npy` (`[cells, D]`), `z_niche.npy`, `z_tissue.npy` (`[niches, D]`),
/// `cells.csv` (`cell_id,niche,predicted`; empty niche/prediction for cells in no region) and
/// `niches.csv` (`niche,col,row,cells`), atomically.
pub fn write_embeddings(dir: &Path, e: &SpatiaEmbeddings, data: &SpatiaData, cell_ids: &[String], class_names: &[String]) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|source| TrainError::Io { path: dir.display().to_string(), source })?;
    let (n, nn, d) = (data.n_cells(), data.grid.niches.len(), e.d_model);
    for (name, v, rows) in [("z_cell", &e.z_cell, n), ("z", &e.z, n), ("z_niche", &e.z_niche, nn), ("z_tissue", &e.z_tissue, nn)] {
        crate::util::write_atomic(&dir.join(format!("{name}.npy")), &npy_f32_bytes(v, rows, d))?;
    }
    let pred = argmax_rows(&e.logits, e.n_classes);
    let mut cells = String::from("cell_id,niche,predicted\n");
    for i in 0..n {
        if data.assigned[i] {
            let niche = data.grid.niche_of_cell[i].map_or(String::new(), |k| k.to_string());
            cells += &format!("{},{niche},{}\n", cell_ids[i], class_names[pred[i] as usize]);
        } else {
            cells += &format!("{},,\n", cell_ids[i]);
        }
    }
    crate::util::write_atomic(&dir.join("cells.csv"), cells.as_bytes())?;
    let mut niches = String::from("niche,col,row,cells\n");
    for (k, nc) in data.grid.niches.iter().enumerate() {
        niches += &format!("{k},{},{},{}\n", nc.niche_col, nc.niche_row, nc.cells.len());
    }
    crate::util::write_atomic(&dir.join("niches.csv"), niches.as_bytes())?;
    Ok(())
}

/// Numbers of niche clusters tried by [`niche_clusters`] (the best mean silhouette wins).
pub const NICHE_K_RANGE: std::ops::RangeInclusive<usize> = 3..=8;

/// Clusters of the niches' `z_niche` and the cell types they hold.
#[derive(Debug, Clone)]
pub struct NicheClusters {
    /// Niches clustered (grid indices, ascending): those the model embedded (in a region).
    pub niches: Vec<usize>,
    /// Cluster of each of `niches`, `< k`.
    pub clusters: Vec<u32>,
    /// Clusters.
    pub k: usize,
    /// The k-means centroids of `z_niche` (`niche_centroids.json`: another engine assigns
    /// each niche to its nearest one, [`assign_niche_clusters`]).
    pub centroids: crate::engine::NicheCentroids,
    /// `(k, mean silhouette)` of every `k` tried, on `z_niche`.
    pub silhouette: Vec<(usize, f64)>,
    /// Cell types over clusters: each typed cell of a clustered niche counts for its niche's
    /// cluster (`type_names` columns).
    pub enrichment: ClusterEnrichment,
    /// Cell-type names.
    pub type_names: Vec<String>,
    /// Where the types come from: `reference labels` or `predicted` (when no cell is labelled).
    pub type_source: &'static str,
}

/// k-means of `z_niche` (rows of the niches in a region) with `k` in [`NICHE_K_RANGE`] chosen
/// by the mean silhouette on the embedding ([`analysis::kmeans_by_silhouette`]; labels are
/// never looked at), then the enrichment of cell types per niche cluster
/// ([`analysis::cluster_enrichment`]: observed / expected, one-sided hypergeometric p, BH q).
/// Types are `labels` (reference labels; unlabelled cells left out) or, when no embedded cell
/// is labelled, the model's predictions for every embedded cell.
///
/// Errors: a model without the niche level (all `z_niche` zero), fewer than 4 embedded niches.
pub fn niche_clusters(
    e: &SpatiaEmbeddings,
    data: &SpatiaData,
    labels: &[Option<u32>],
    type_names: &[String],
    seed: u64,
) -> Result<NicheClusters, TrainError> {
    let d = e.d_model;
    let niches = embedded_niches(data);
    let z: Vec<f32> = niches.iter().flat_map(|&k| e.z_niche[k * d..(k + 1) * d].iter().copied()).collect();
    if z.iter().all(|v| *v == 0.0) {
        return Err(TrainError::Options("the model has no niche level (z_niche is zero): fine-tune with --levels niche or tissue to cluster niches".into()));
    }
    if niches.len() < 4 {
        return Err(TrainError::Options(format!(
            "only {} niches are embedded; niche clusters need at least 4 (use more regions than --max-regions {})",
            niches.len(),
            data.regions.len()
        )));
    }
    let err = |e: analysis::AnalysisError| TrainError::Analysis(e.to_string());
    let opts = KMeansOptions { seed, ..KMeansOptions::new(NICHE_K_RANGE.start().to_owned()) };
    let (km, silhouette) = analysis::kmeans_by_silhouette(&z, niches.len(), d, NICHE_K_RANGE, &opts).map_err(err)?;
    let mut cluster_of = vec![None; data.grid.niches.len()];
    for (&k, &c) in niches.iter().zip(&km.labels) {
        cluster_of[k] = Some(c);
    }
    let cells: Vec<(usize, u32)> = data.regions.iter().flat_map(|r| r.cells.iter().zip(&r.cell_niche).map(move |(&c, &n)| (c, r.niches[n]))).filter_map(|(c, n)| cluster_of[n].map(|k| (c, k))).collect();
    let any_label = cells.iter().any(|&(c, _)| labels.get(c).copied().flatten().is_some());
    let pred = argmax_rows(&e.logits, e.n_classes);
    let (mut cl, mut ty) = (Vec::new(), Vec::new());
    for &(c, k) in &cells {
        let t = if any_label { labels.get(c).copied().flatten() } else { Some(pred[c]) };
        if let Some(t) = t {
            cl.push(k);
            ty.push(t);
        }
    }
    let enrichment = analysis::cluster_enrichment(&cl, km.k, &ty, type_names.len()).map_err(err)?;
    let centroids = crate::engine::NicheCentroids { k: km.k, dim: d, centroids: km.centroids.clone() };
    Ok(NicheClusters {
        niches,
        clusters: km.labels,
        k: km.k,
        centroids,
        silhouette,
        enrichment,
        type_names: type_names.to_vec(),
        type_source: if any_label { "reference labels" } else { "predicted" },
    })
}

impl NicheClusters {
    /// Markdown: the silhouette per `k`, then per cluster its niches, typed cells and most
    /// enriched type (observed, expected, observed / expected, hypergeometric p, BH q).
    pub fn markdown(&self) -> String {
        let e = &self.enrichment;
        let sil: Vec<String> = self.silhouette.iter().map(|(k, s)| format!("k={k}: {s:.3}")).collect();
        let mut md = format!(
            "Niche clusters: k-means of z_niche over {} niches, k = {} by the best mean silhouette ({}).\n\
             Cell types: {} ({} cells). Enrichment = observed / expected (expected = cluster size × type share); \
             p = one-sided hypergeometric P(X ≥ observed), q = Benjamini–Hochberg over the whole table.\n\n\
             | cluster | niches | cells | most enriched type | observed | expected | obs/exp | p | q |\n|---:|---:|---:|---|---:|---:|---:|---:|---:|\n",
            self.niches.len(), self.k, sil.join(", "), self.type_source, e.cluster_sizes.iter().sum::<u64>()
        );
        for c in 0..self.k {
            let niches = self.clusters.iter().filter(|&&k| k as usize == c).count();
            let row = c * e.n_types;
            let best = (0..e.n_types).filter(|&t| e.counts[row + t] > 0).max_by(|&a, &b| e.enrichment[row + a].total_cmp(&e.enrichment[row + b]));
            match best {
                Some(t) => {
                    let i = row + t;
                    md += &format!(
                        "| {c} | {niches} | {} | {} | {} | {:.1} | {:.2} | {:.2e} | {:.2e} |\n",
                        e.cluster_sizes[c], self.type_names[t], e.counts[i], e.expected[i], e.enrichment[i], e.p_value[i], e.q_value[i]
                    );
                }
                None => md += &format!("| {c} | {niches} | 0 | - | | | | | |\n"),
            }
        }
        md
    }

    /// Long-format CSV of the enrichment table:
    /// `cluster,cell_type,observed,expected,obs_over_exp,fraction,p_value,q_value`.
    pub fn enrichment_csv(&self) -> String {
        let e = &self.enrichment;
        let mut csv = String::from("cluster,cell_type,observed,expected,obs_over_exp,fraction,p_value,q_value\n");
        for c in 0..e.n_clusters {
            for t in 0..e.n_types {
                let i = c * e.n_types + t;
                csv += &format!(
                    "{c},{},{},{:.4},{:.4},{:.4},{:.6e},{:.6e}\n",
                    crate::ot::pairing::csv_field(&self.type_names[t]), e.counts[i], e.expected[i], e.enrichment[i], e.fraction[i], e.p_value[i], e.q_value[i]
                );
            }
        }
        csv
    }
}

/// Write `niche_clusters.csv` (`niche,col,row,cells,cluster`; empty cluster for niches not
/// embedded), `niche_centroids.json` ([`crate::engine::NicheCentroids`]), `niche_silhouette.csv`, `niche_enrichment.csv` / `.md` and `niche_map.png` (niches
/// coloured by cluster over the DAPI image; not written without images), atomically.
pub fn write_niche_clusters(dir: &Path, nc: &NicheClusters, data: &SpatiaData) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|source| TrainError::Io { path: dir.display().to_string(), source })?;
    let mut cluster_of = vec![None; data.grid.niches.len()];
    for (&k, &c) in nc.niches.iter().zip(&nc.clusters) {
        cluster_of[k] = Some(c);
    }
    write_niche_cluster_csv(dir, data, &cluster_of)?;
    let centroids = serde_json::to_string_pretty(&nc.centroids).map_err(|e| TrainError::Analysis(e.to_string()))?;
    crate::util::write_atomic(&dir.join("niche_centroids.json"), centroids.as_bytes())?;
    let mut sil = String::from("k,silhouette\n");
    for (k, s) in &nc.silhouette {
        sil += &format!("{k},{s:.6}\n");
    }
    crate::util::write_atomic(&dir.join("niche_silhouette.csv"), sil.as_bytes())?;
    crate::util::write_atomic(&dir.join("niche_enrichment.csv"), nc.enrichment_csv().as_bytes())?;
    crate::util::write_atomic(&dir.join("niche_enrichment.md"), nc.markdown().as_bytes())?;
    let tiles: Vec<[f32; 4]> = nc
        .niches
        .iter()
        .map(|&k| {
            let n = &data.grid.niches[k];
            [n.origin_px[0] as f32, n.origin_px[1] as f32, n.extent_px[0] as f32, n.extent_px[1] as f32]
        })
        .collect();
    let names: Vec<String> = (0..nc.k).map(|c| format!("niche cluster {c}")).collect();
    // Without images there is no DAPI image to draw the map over (niche_clusters.csv holds it).
    if let Some(dapi) = &data.dapi {
        let title = format!("SPATIA niche clusters (k-means of z_niche, k = {} by silhouette) over DAPI", nc.k);
        crate::plot::tile_map_png(&dir.join("niche_map.png"), dapi, &data.dapi_frame, &tiles, &nc.clusters, &names, &title)
            .map_err(|e| TrainError::Analysis(e.to_string()))?;
    }
    Ok(())
}

/// Standardises every gene of `x` `[cells, G]` in place to mean 0, sd 1 over all cells
/// (label-free; a gene with sd 0 is only centred). Returns the per-gene `(mean, sd)`.
pub fn standardise_genes(x: &mut [f32], g: usize) -> Vec<(f32, f32)> {
    let n = x.len() / g.max(1);
    let mut stats = Vec::with_capacity(g);
    for j in 0..g {
        let mean = (0..n).map(|i| x[i * g + j] as f64).sum::<f64>() / n.max(1) as f64;
        let var = (0..n).map(|i| (x[i * g + j] as f64 - mean).powi(2)).sum::<f64>() / n.max(1) as f64;
        let sd = var.sqrt();
        let inv = if sd > 0.0 { 1.0 / sd } else { 1.0 };
        for i in 0..n {
            x[i * g + j] = ((x[i * g + j] as f64 - mean) * inv) as f32;
        }
        stats.push((mean as f32, sd as f32));
    }
    stats
}

/// Scales every centroid of `crop` by `um_per_px` (centroids given in pixels → µm), so the
/// niches, regions and spatial blocks are sized in µm.
pub fn scale_centroids(crop: &mut PreparedCrop, um_per_px: f32) {
    for c in &mut crop.table.centroids_um {
        c[0] *= um_per_px;
        c[1] *= um_per_px;
    }
}

/// One row of the ablation table: per-fold test macro-F1.
#[derive(Debug, Clone, Serialize)]
pub struct AblationRow {
    /// Row name.
    pub name: String,
    /// Test macro-F1 per fold.
    pub macro_f1: Vec<f64>,
    /// Seconds per fold.
    pub seconds: Vec<f64>,
}

/// The ablation table as Markdown: `| model | macro-F1 (mean ± sd) | per fold | s/fold |`.
pub fn ablation_markdown(rows: &[AblationRow], test_cells: &[usize]) -> String {
    let mut md = format!("Test macro-F1 over {} spatially blocked folds (test cells per fold: {:?}).\n\n", test_cells.len(), test_cells);
    md += "| model | macro-F1 (mean ± sd) | per fold | s / fold |\n|---|---:|---|---:|\n";
    for r in rows {
        let (m, s) = mean_sd(&r.macro_f1);
        let folds: Vec<String> = r.macro_f1.iter().map(|v| format!("{v:.3}")).collect();
        md += &format!("| {} | {m:.3} ± {s:.3} | {} | {:.1} |\n", r.name, folds.join(", "), mean_sd(&r.seconds).0);
    }
    md
}

/// SPATIA's ablation on the folds of `plan` (cells in no region are left out of every fold):
/// our logistic regression (the peer, same folds), then cell, + niche, + niche + tissue, and
/// + niche + tissue from a cell level pre-trained once (label-free) on all cells.
#[allow(clippy::too_many_arguments)]
pub fn run_ablation<B: AutodiffBackend>(
    crop: &PreparedCrop,
    data: &SpatiaData,
    spec: &SpatiaSpec,
    config: &FinetuneConfig,
    pretrain_config: &PretrainConfig,
    plan: &FoldPlan<'_>,
    device: &B::Device,
    log: &mut dyn FnMut(String),
) -> Result<(Vec<AblationRow>, Vec<usize>), TrainError> {
    let labels: Vec<Option<u32>> = crop.labels.iter().zip(&data.assigned).map(|(l, &a)| if a { *l } else { None }).collect();
    let folds = make_folds(&labels, plan).map_err(TrainError::Options)?;
    let c = crop.class_names.len();
    let dense: Vec<u32> = labels.iter().map(|l| l.unwrap_or(0)).collect();
    let mut rows = vec![AblationRow { name: "LogReg (ours, genes)".into(), macro_f1: vec![], seconds: vec![] }];
    for fold in &folds {
        let t = Instant::now();
        let lr = LogisticRegression::fit(&crop.x_norm, data.n_genes, &dense, c, &fold.fit_cells(), &LogisticOptions::default());
        let pred = argmax_rows(&lr.logits(&crop.x_norm, &fold.test), c);
        let truth: Vec<u32> = fold.test.iter().map(|&i| dense[i]).collect();
        rows[0].macro_f1.push(ClassificationReport::new(&truth, &pred, &crop.class_names).macro_f1);
        rows[0].seconds.push(t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    let pre = pretrain::<B>(data, spec, pretrain_config, device, log)?;
    let pretrain_s = t.elapsed().as_secs_f64();
    log(format!("pre-training took {pretrain_s:.1} s (once, shared by every fold)"));
    use crate::engine::spec::SpatiaLevels;
    let variants = [
        ("SPATIA cell level", SpatiaLevels::Cell, false),
        ("+ niche", SpatiaLevels::Niche, false),
        ("+ niche + tissue", SpatiaLevels::Tissue, false),
        ("+ niche + tissue + pre-training", SpatiaLevels::Tissue, true),
    ];
    for (name, levels, use_pre) in variants {
        let spec = SpatiaSpec { levels, ..spec.clone() };
        let mut row = AblationRow { name: name.into(), macro_f1: vec![], seconds: vec![] };
        for (f, fold) in folds.iter().enumerate() {
            let t = Instant::now();
            let ft = finetune::<B>(data, &labels, &crop.class_names, fold, &spec, config, use_pre.then_some(&pre.cell), device, &mut |_| {})?;
            let s = t.elapsed().as_secs_f64();
            log(format!("{name}: fold {}/{} test macro-F1 {:.3} (best epoch {}, {s:.1} s)", f + 1, folds.len(), ft.report.macro_f1, ft.best_epoch));
            row.macro_f1.push(ft.report.macro_f1);
            row.seconds.push(s);
        }
        rows.push(row);
    }
    Ok((rows, folds.iter().map(|f| f.test.len()).collect()))
}
