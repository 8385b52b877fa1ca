//! Training and analysis of the contrastive alignment ([`ContrastiveAligner`]).
//!
//! [`train_alignment`] fits the two projection networks with bidirectional InfoNCE on the
//! training cells and reports, per epoch, the held-out loss and the cross-modal retrieval
//! accuracy (for a held-out cell's gene projection, is its own patch among the k most similar
//! held-out patches? chance = k / n). [`analyse_alignment`] then clusters the morphology
//! projections (k-means), lays them out in 2-D (UMAP), tests each cluster for enrichment of the
//! reference cell types (hypergeometric, Benjamini–Hochberg), and draws the figures.

use std::path::Path;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::benchmark::write_atomic;
use super::dataset::PreparedCrop;
use super::TrainError;
use crate::data;
use crate::analysis::{self, ClusterEnrichment, KMeansOptions, UmapOptions};
use crate::util::rng::SplitMix64;
use crate::model::{ContrastiveAligner, ContrastiveAlignerConfig};

/// Optimisation settings of [`train_alignment`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AlignOptions {
    /// Passes over the training cells.
    pub epochs: usize,
    /// Cells per batch (the InfoNCE negatives are the other cells of the batch).
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Fraction of cells held out for the loss/retrieval curves.
    pub held_out_fraction: f64,
    /// Seed of the split, the batch order and the initialisation.
    pub seed: u64,
}

impl Default for AlignOptions {
    fn default() -> Self {
        AlignOptions {
            epochs: 30,
            batch_size: 128,
            learning_rate: 1e-3,
            weight_decay: 0.01,
            held_out_fraction: 0.2,
            seed: 42,
        }
    }
}

/// Per-epoch statistics of [`train_alignment`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AlignEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training InfoNCE loss.
    pub train_loss: f64,
    /// InfoNCE loss over all held-out cells at once.
    pub held_out_loss: f64,
    /// Held-out gene→morphology retrieval: own patch is the most similar.
    pub top1: f64,
    /// Same, within the 5 most similar.
    pub top5: f64,
    /// Wall time of the epoch, s.
    pub seconds: f64,
}

/// The trained aligner, its curves and the projections of every cell.
#[derive(Debug)]
pub struct TrainedAligner<B: Backend> {
    /// The model (inference backend).
    pub model: ContrastiveAligner<B>,
    /// Per-epoch statistics.
    pub history: Vec<AlignEpoch>,
    /// Held-out cell indices.
    pub held_out: Vec<usize>,
    /// Gene projections of all cells `[cells, d_projection]`, unit norm.
    pub z_gene: Vec<f32>,
    /// Morphology projections of all cells `[cells, d_projection]`, unit norm.
    pub z_morph: Vec<f32>,
    /// Projection width.
    pub dim: usize,
}

/// Row-major inputs of the two sides: `genes [cells, d_gene]`, `morph [cells, d_morph]`
/// (flattened patches `S·S`, or a precomputed embedding).
#[derive(Debug, Clone, Copy)]
pub struct PairedInputs<'a> {
    /// Cells.
    pub n_cells: usize,
    /// Gene side `[cells, d_gene]`.
    pub genes: &'a [f32],
    /// Gene-side width.
    pub d_gene: usize,
    /// Morphology side `[cells, d_morph]`.
    pub morph: &'a [f32],
    /// Morphology-side width.
    pub d_morph: usize,
}

fn gather(x: &[f32], d: usize, idx: &[usize]) -> Vec<f32> {
    let mut v = Vec::with_capacity(idx.len() * d);
    for &i in idx {
        v.extend_from_slice(&x[i * d..(i + 1) * d]);
    }
    v
}

fn tensor<B: Backend>(x: Vec<f32>, rows: usize, cols: usize, device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(x, [rows, cols]), device)
}

/// Projections of cells `idx` in chunks (inference backend): `(z_gene, z_morph)`, each
/// `[idx.len(), dim]`.
pub fn project_cells<B: Backend>(
    model: &ContrastiveAligner<B>,
    inputs: &PairedInputs<'_>,
    idx: &[usize],
    device: &B::Device,
) -> (Vec<f32>, Vec<f32>) {
    let (mut zg, mut zm) = (Vec::new(), Vec::new());
    for chunk in idx.chunks(256) {
        let n = chunk.len();
        let g = tensor::<B>(gather(inputs.genes, inputs.d_gene, chunk), n, inputs.d_gene, device);
        let m = tensor::<B>(gather(inputs.morph, inputs.d_morph, chunk), n, inputs.d_morph, device);
        zg.extend(model.embed_genes(g).into_data().to_vec::<f32>().unwrap_or_default());
        zm.extend(model.embed_morphology(m).into_data().to_vec::<f32>().unwrap_or_default());
    }
    (zg, zm)
}

/// Fraction of rows `i` of `a` whose match `b[i]` is among the `k` rows of `b` most similar
/// (dot product) to `a[i]`; `a`, `b`: `[n, d]`.
pub fn retrieval_accuracy(a: &[f32], b: &[f32], d: usize, k: usize) -> f64 {
    let n = a.len() / d.max(1);
    if n == 0 {
        return 0.0;
    }
    let mut hits = 0usize;
    for i in 0..n {
        let ai = &a[i * d..(i + 1) * d];
        let dot = |j: usize| -> f32 { ai.iter().zip(&b[j * d..(j + 1) * d]).map(|(x, y)| x * y).sum() };
        let own = dot(i);
        let better = (0..n).filter(|&j| j != i && dot(j) > own).count();
        if better < k {
            hits += 1;
        }
    }
    hits as f64 / n as f64
}

/// Trains a [`ContrastiveAligner`] on `inputs` (see the module docs); `progress` gets each
/// epoch's statistics.
pub fn train_alignment<B: AutodiffBackend>(
    config: &ContrastiveAlignerConfig,
    inputs: &PairedInputs<'_>,
    options: &AlignOptions,
    device: &B::Device,
    mut progress: impl FnMut(&AlignEpoch),
) -> Result<TrainedAligner<B::InnerBackend>, TrainError> {
    let n = inputs.n_cells;
    if inputs.genes.len() != n * inputs.d_gene || inputs.morph.len() != n * inputs.d_morph {
        return Err(TrainError::MissingInput {
            input: "alignment inputs",
            detail: format!(
                "expected genes [{n}, {}] and morphology [{n}, {}], got {} and {} values",
                inputs.d_gene,
                inputs.d_morph,
                inputs.genes.len(),
                inputs.morph.len()
            ),
        });
    }
    if options.batch_size < 2 || options.epochs == 0 {
        return Err(TrainError::Options(format!(
            "alignment needs batch_size ≥ 2 (got {}) and epochs ≥ 1 (got {})",
            options.batch_size, options.epochs
        )));
    }
    let mut rng = SplitMix64::new(options.seed);
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let n_held = ((n as f64) * options.held_out_fraction).round() as usize;
    let n_held = n_held.min(n.saturating_sub(options.batch_size));
    let held_out: Vec<usize> = order[..n_held].to_vec();
    let mut train: Vec<usize> = order[n_held..].to_vec();
    if train.len() < 2 {
        return Err(TrainError::Options(format!("only {} training cells; need at least 2", train.len())));
    }

    B::seed(device, options.seed);
    let mut model: ContrastiveAligner<B> = config.init(device);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(options.weight_decay as f32)
        .init::<B, ContrastiveAligner<B>>();
    let mut history = Vec::with_capacity(options.epochs);
    for epoch in 1..=options.epochs {
        let t = Instant::now();
        rng.shuffle(&mut train);
        let (mut loss_sum, mut batches) = (0.0, 0usize);
        // Batches of at least 2 cells (InfoNCE needs negatives): a last singleton is dropped.
        for batch in train.chunks(options.batch_size).filter(|b| b.len() >= 2) {
            let b = batch.len();
            let g = tensor::<B>(gather(inputs.genes, inputs.d_gene, batch), b, inputs.d_gene, device);
            let m = tensor::<B>(gather(inputs.morph, inputs.d_morph, batch), b, inputs.d_morph, device);
            let loss = model.info_nce(model.embed_genes(g), model.embed_morphology(m));
            loss_sum += loss.clone().into_scalar().elem::<f64>();
            batches += 1;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(options.learning_rate, model, grads);
        }
        let valid = model.valid();
        let (held_loss, top1, top5) = if held_out.len() >= 2 {
            let (zg, zm) = project_cells(&valid, inputs, &held_out, device);
            let d = config.d_projection;
            let h = held_out.len();
            let loss = crate::model::contrastive::info_nce_loss(
                tensor::<B::InnerBackend>(zg.clone(), h, d, device),
                tensor::<B::InnerBackend>(zm.clone(), h, d, device),
                config.temperature,
            )
            .into_scalar()
            .elem::<f64>();
            (loss, retrieval_accuracy(&zg, &zm, d, 1), retrieval_accuracy(&zg, &zm, d, 5))
        } else {
            (f64::NAN, f64::NAN, f64::NAN)
        };
        let stats = AlignEpoch {
            epoch,
            train_loss: loss_sum / batches.max(1) as f64,
            held_out_loss: held_loss,
            top1,
            top5,
            seconds: t.elapsed().as_secs_f64(),
        };
        progress(&stats);
        history.push(stats);
    }
    let model = model.valid();
    let all: Vec<usize> = (0..n).collect();
    let (z_gene, z_morph) = project_cells(&model, inputs, &all, device);
    Ok(TrainedAligner {
        model,
        history,
        held_out,
        z_gene,
        z_morph,
        dim: config.d_projection,
    })
}

/// Clusters, layout and enrichment of the morphology projections.
#[derive(Debug, Clone)]
pub struct AlignmentAnalysis {
    /// k-means cluster per cell.
    pub clusters: Vec<u32>,
    /// Number of clusters.
    pub n_clusters: usize,
    /// UMAP layout `[cells, 2]`.
    pub umap: Vec<f32>,
    /// Enrichment of `type_names` over clusters, computed on labelled cells only.
    pub enrichment: ClusterEnrichment,
    /// Cell-type names (columns of the enrichment tables).
    pub type_names: Vec<String>,
    /// Adjusted Rand index between clusters and cell types (labelled cells).
    pub ari: f64,
}

/// k-means (`n_clusters`) and UMAP of `z [cells, dim]`, and enrichment of `types` (per cell,
/// `None` = unlabelled, excluded from the enrichment) over the clusters.
pub fn analyse_alignment(
    z: &[f32],
    dim: usize,
    n_clusters: usize,
    types: &[Option<u32>],
    type_names: &[String],
    seed: u64,
) -> Result<AlignmentAnalysis, TrainError> {
    let n = z.len() / dim.max(1);
    let err = |e: analysis::AnalysisError| TrainError::Analysis(e.to_string());
    let mut km = KMeansOptions::new(n_clusters);
    km.seed = seed;
    let clusters = analysis::kmeans(z, n, dim, &km).map_err(err)?.labels;
    let umap = analysis::umap(z, n, dim, &UmapOptions { seed, ..Default::default() })
        .map_err(err)?
        .embedding;
    let (mut c, mut t) = (Vec::new(), Vec::new());
    for (i, ty) in types.iter().enumerate() {
        if let Some(ty) = ty {
            c.push(clusters[i]);
            t.push(*ty);
        }
    }
    let enrichment = analysis::cluster_enrichment(&c, n_clusters, &t, type_names.len()).map_err(err)?;
    let ari = analysis::adjusted_rand_index(&c, &t).map_err(err)?;
    Ok(AlignmentAnalysis {
        clusters,
        n_clusters,
        umap,
        enrichment,
        type_names: type_names.to_vec(),
        ari,
    })
}

/// Markdown table of the most enriched cell type of each cluster.
pub fn enrichment_table(a: &AlignmentAnalysis) -> String {
    let e = &a.enrichment;
    let mut s = String::from("| cluster | cells (labelled) | top cell type | fraction | enrichment | q |\n|---|---:|---|---:|---:|---:|\n");
    for k in 0..a.n_clusters {
        let total: usize = a.clusters.iter().filter(|&&c| c as usize == k).count();
        let row = k * e.n_types;
        let best = (0..e.n_types).max_by(|&x, &y| {
            e.enrichment[row + x]
                .partial_cmp(&e.enrichment[row + y])
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        match best.filter(|_| e.cluster_sizes[k] > 0) {
            Some(j) => s += &format!(
                "| {k} | {total} ({}) | {} | {:.2} | {:.2}× | {:.1e} |\n",
                e.cluster_sizes[k],
                a.type_names[j],
                e.fraction[row + j],
                e.enrichment[row + j],
                e.q_value[row + j]
            ),
            None => s += &format!("| {k} | {total} (0) | – | – | – | – |\n"),
        }
    }
    s
}

/// Writes `umap_clusters.png`, `umap_cell_types.png`, `spatial_clusters.png` (over the DAPI
/// image) and `enrichment.png` into `dir`.
pub fn write_alignment_figures(
    dir: &Path,
    a: &AlignmentAnalysis,
    types: &[Option<u32>],
    dapi: &crate::data::GrayImage16,
    frame: &crate::data::ImageFrame,
    centroids_um: &[[f32; 2]],
) -> Result<(), TrainError> {
    let err = |e: crate::plot::PlotError| TrainError::Analysis(e.to_string());
    let cluster_names: Vec<String> = (0..a.n_clusters).map(|k| format!("cluster {k}")).collect();
    crate::plot::scatter_png(
        &dir.join("umap_clusters.png"),
        &a.umap,
        &a.clusters,
        &cluster_names,
        "UMAP of morphology projections, k-means clusters",
    )
    .map_err(err)?;
    let mut type_names = a.type_names.clone();
    type_names.push("unlabelled".into());
    let unl = a.type_names.len() as u32;
    let type_labels: Vec<u32> = types.iter().map(|t| t.unwrap_or(unl)).collect();
    crate::plot::scatter_png(
        &dir.join("umap_cell_types.png"),
        &a.umap,
        &type_labels,
        &type_names,
        "UMAP of morphology projections, reference cell types",
    )
    .map_err(err)?;
    crate::plot::spatial_map_png(
        &dir.join("spatial_clusters.png"),
        dapi,
        frame,
        centroids_um,
        &a.clusters,
        &cluster_names,
        "morphology clusters over DAPI",
    )
    .map_err(err)?;
    crate::plot::heatmap_png(
        &dir.join("enrichment.png"),
        &a.enrichment.enrichment,
        &cluster_names,
        &a.type_names,
        "cell-type enrichment (observed / expected) per morphology cluster",
        true,
    )
    .map_err(err)?;
    Ok(())
}

/// Everything `align` writes after training, into `out`: `clusters.csv` (cluster and UMAP per
/// cell), the figures, `summary.md`, `history.json`, `model.safetensors`, and with `www` the
/// demo's `alignment.json` layer. `types` are the cells' reference labels. Returns the
/// cluster × cell-type enrichment table (Markdown).
#[allow(clippy::too_many_arguments)]
pub fn write_alignment_outputs<B: Backend>(
    out: &Path,
    www: Option<&Path>,
    crop: &PreparedCrop,
    types: &[Option<u32>],
    trained: &TrainedAligner<B>,
    analysis: &AlignmentAnalysis,
    config: &ContrastiveAlignerConfig,
    epochs: usize,
) -> Result<String, TrainError> {
    let n = crop.table.n_cells();
    let h = trained.held_out.len().max(1) as f64;
    let (dapi, frame) = data::XeniumBundle::open(&crop.source)?.read_dapi(Some(0.5))?;
    let centres: Vec<[f32; 2]> = (0..n)
        .map(|i| crop.table.nucleus_centroids_um[i].unwrap_or(crop.table.centroids_um[i]))
        .collect();
    write_alignment_figures(out, analysis, types, &dapi, &frame, &centres)?;
    let mut csv = String::from("cell_id,cluster,umap_x,umap_y,reference_label\n");
    for i in 0..n {
        let label = types[i].map_or("", |t| crop.class_names[t as usize].as_str());
        csv += &format!(
            "{},{},{},{},{}\n",
            crop.table.cell_ids[i],
            analysis.clusters[i],
            analysis.umap[2 * i],
            analysis.umap[2 * i + 1],
            label
        );
    }
    write_atomic(&out.join("clusters.csv"), csv)?;
    let table = enrichment_table(analysis);
    let last = trained.history.last();
    let summary = format!(
        "# Contrastive alignment (CellSymphony)\n\nData: Xenium breast crop, {n} cells; labels for \
         the enrichment are SingleR-style reference labels (no expert labels).\n\n\
         Held-out cross-modal retrieval after {} epochs ({} cells): gene→patch top-1 {:.3} \
         (chance {:.3}), top-5 {:.3} (chance {:.3}); held-out InfoNCE {:.4}.\n\n\
         k-means (k = {}) of the morphology projections vs reference cell types: ARI {:.3}.\n\n{table}\n\
         Figures: umap_clusters.png, umap_cell_types.png, spatial_clusters.png, enrichment.png.\n",
        epochs,
        trained.held_out.len(),
        last.map_or(f64::NAN, |e| e.top1),
        1.0 / h,
        last.map_or(f64::NAN, |e| e.top5),
        5.0 / h,
        last.map_or(f64::NAN, |e| e.held_out_loss),
        analysis.n_clusters,
        analysis.ari
    );
    write_atomic(&out.join("summary.md"), &summary)?;
    write_atomic(
        &out.join("history.json"),
        serde_json::to_string_pretty(&trained.history).unwrap_or_default(),
    )?;
    let meta = std::collections::HashMap::from([(
        "cellsymphony".to_string(),
        serde_json::json!({"architecture": "contrastive_aligner", "config": config.to_string()}).to_string(),
    )]);
    super::export::save_named_safetensors::<B, _>(&trained.model, meta, &out.join("model.safetensors"))?;
    if let Some(www) = www {
        let layer = serde_json::json!({
            "cell_ids": crop.table.cell_ids,
            "clusters": analysis.clusters,
            "n_clusters": analysis.n_clusters,
            "umap": analysis.umap,
            "ari": analysis.ari,
            "top1": last.map(|e| e.top1),
        });
        write_atomic(&www.join("alignment.json"), layer.to_string())?;
    }
    Ok(table)
}
