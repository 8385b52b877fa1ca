//! Training and analysis of the contrastive alignment ([`ContrastiveAligner`]).
//!
//! [`train_alignment`] fits the two projection networks with bidirectional InfoNCE on the
//! fit cells only and reports, per epoch, the held-out loss and the cross-modal retrieval
//! accuracy (for a held-out cell's gene projection, is its own patch among the k most similar
//! held-out patches? chance = k / n). [`evaluate_held_out`] then evaluates on the **held-out
//! cells only** (cells the projections never saw): it clusters their morphology projections
//! (k-means), lays them out in 2-D (UMAP), tests each cluster for enrichment of the reference
//! cell types (hypergeometric, Benjamini–Hochberg), and measures kNN label agreement and
//! k-means ARI of the projections beside the same measures on the raw inputs (the peers).

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
    /// Held-out cell indices (never seen by the optimiser; the only cells evaluated).
    pub held_out: Vec<usize>,
    /// Cells the projections were fitted on, ascending.
    pub fit_cells: Vec<usize>,
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
            let d = config.space.d_projection;
            let h = held_out.len();
            let loss = crate::model::contrastive::info_nce_loss(
                tensor::<B::InnerBackend>(zg.clone(), h, d, device),
                tensor::<B::InnerBackend>(zm.clone(), h, d, device),
                config.space.temperature,
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
    train.sort_unstable();
    Ok(TrainedAligner {
        model,
        history,
        held_out,
        fit_cells: train,
        z_gene,
        z_morph,
        dim: config.space.d_projection,
    })
}

/// Clusters, layout and enrichment of the morphology projections of a set of cells (the rows
/// of `z` given to [`analyse_alignment`]; the held-out cells in [`evaluate_held_out`]).
#[derive(Debug, Clone)]
pub struct AlignmentAnalysis {
    /// k-means cluster per row.
    pub clusters: Vec<u32>,
    /// The k-means fit (centres `[n_clusters, dim]`), to assign other cells for display.
    pub kmeans: analysis::KMeans,
    /// Number of clusters.
    pub n_clusters: usize,
    /// UMAP layout `[rows, 2]`.
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
    let kmeans = analysis::kmeans(z, n, dim, &km).map_err(err)?;
    let clusters = kmeans.labels.clone();
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
        kmeans,
        n_clusters,
        umap,
        enrichment,
        type_names: type_names.to_vec(),
        ari,
    })
}

/// One representation's label structure on the held-out cells (a row of the evaluation table).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RepresentationScore {
    /// What was measured, e.g. `morphology projection` or `patch pixels (input)`.
    pub representation: String,
    /// Width of the representation.
    pub dim: usize,
    /// Mean fraction of each labelled held-out cell's `k` nearest labelled held-out neighbours
    /// (Euclidean) with its reference label.
    pub knn_label_agreement: f64,
    /// ARI between k-means (`n_clusters`, same seed) of the labelled held-out cells and their
    /// reference labels.
    pub kmeans_ari: f64,
}

/// Everything [`evaluate_held_out`] measures, on held-out cells only.
#[derive(Debug, Clone)]
pub struct HeldOutEvaluation {
    /// The evaluated cells (indices into the cell table): the aligner's held-out cells.
    pub cells: Vec<usize>,
    /// Cells the projections were fitted on (not evaluated), for the record.
    pub n_fit_cells: usize,
    /// Clusters, UMAP and enrichment of the held-out morphology projections (rows = `cells`).
    pub analysis: AlignmentAnalysis,
    /// Gene→morphology retrieval among the held-out cells: own patch most similar.
    pub top1: f64,
    /// Same, within the 5 most similar.
    pub top5: f64,
    /// Neighbours of the kNN label agreement.
    pub k_neighbours: usize,
    /// Labelled held-out cells (kNN agreement, ARI and enrichment use these).
    pub n_labelled: usize,
    /// Expected kNN agreement of a representation with no label structure: Σ p², p the
    /// label frequencies of the labelled held-out cells.
    pub chance_agreement: f64,
    /// Projections first, then the raw inputs they were computed from (the peers).
    pub scores: Vec<RepresentationScore>,
}

/// Evaluate `trained` on its held-out cells only: k-means + UMAP + enrichment of their
/// morphology projections ([`analyse_alignment`]), gene→morphology retrieval among them, and
/// kNN label agreement / k-means ARI (labelled held-out cells, `types[i]` per cell of the
/// table) for the two projections and, as peers measured in the same call, the raw inputs of
/// `inputs` (gene side and morphology side). The fit cells are never used.
pub fn evaluate_held_out<B: Backend>(
    trained: &TrainedAligner<B>,
    inputs: &PairedInputs<'_>,
    types: &[Option<u32>],
    type_names: &[String],
    n_clusters: usize,
    k_neighbours: usize,
    seed: u64,
) -> Result<HeldOutEvaluation, TrainError> {
    let mut cells = trained.held_out.clone();
    cells.sort_unstable();
    let labelled: Vec<usize> = cells.iter().copied().filter(|&i| types.get(i).copied().flatten().is_some()).collect();
    let need = n_clusters.max(k_neighbours + 1).max(2);
    if labelled.len() < need || types.len() != inputs.n_cells {
        return Err(TrainError::Options(format!(
            "the alignment holds out {} cells ({} labelled, of {} labels for {} cells); the evaluation needs at \
             least {need} labelled held-out cells ({n_clusters} clusters, {k_neighbours} neighbours): raise the \
             held-out fraction or lower --clusters",
            cells.len(),
            labelled.len(),
            types.len(),
            inputs.n_cells
        )));
    }
    let dim = trained.dim;
    let z_morph = gather(&trained.z_morph, dim, &cells);
    let z_gene = gather(&trained.z_gene, dim, &cells);
    let held_types: Vec<Option<u32>> = cells.iter().map(|&i| types[i]).collect();
    let analysis = analyse_alignment(&z_morph, dim, n_clusters, &held_types, type_names, seed)?;
    let top1 = retrieval_accuracy(&z_gene, &z_morph, dim, 1);
    let top5 = retrieval_accuracy(&z_gene, &z_morph, dim, 5);

    let labels: Vec<u32> = labelled.iter().map(|&i| types[i].unwrap_or(0)).collect();
    let mut freq = vec![0usize; type_names.len().max(1 + labels.iter().copied().max().unwrap_or(0) as usize)];
    for &l in &labels {
        freq[l as usize] += 1;
    }
    let m = labels.len() as f64;
    let chance_agreement = freq.iter().map(|&c| (c as f64 / m).powi(2)).sum();
    let err = |e: analysis::AnalysisError| TrainError::Analysis(e.to_string());
    let score = |name: &str, x: &[f32], d: usize| -> Result<RepresentationScore, TrainError> {
        let rows = gather(x, d, &labelled);
        let agreement = analysis::knn_label_agreement(&rows, labelled.len(), d, &labels, k_neighbours).map_err(err)?;
        let mut km = KMeansOptions::new(n_clusters);
        km.seed = seed;
        let clusters = analysis::kmeans(&rows, labelled.len(), d, &km).map_err(err)?.labels;
        Ok(RepresentationScore {
            representation: name.to_string(),
            dim: d,
            knn_label_agreement: agreement,
            kmeans_ari: analysis::adjusted_rand_index(&clusters, &labels).map_err(err)?,
        })
    };
    let scores = vec![
        score("morphology projection", &trained.z_morph, dim)?,
        score("gene projection", &trained.z_gene, dim)?,
        score("morphology input (peer)", inputs.morph, inputs.d_morph)?,
        score("gene input (peer)", inputs.genes, inputs.d_gene)?,
    ];
    Ok(HeldOutEvaluation {
        n_fit_cells: trained.fit_cells.len(),
        cells,
        analysis,
        top1,
        top5,
        k_neighbours,
        n_labelled: labelled.len(),
        chance_agreement,
        scores,
    })
}

/// Markdown table of [`HeldOutEvaluation::scores`] (chance agreement in the caption line).
pub fn representation_table(e: &HeldOutEvaluation) -> String {
    let mut s = format!(
        "{} labelled held-out cells, {} neighbours (chance agreement Σp² = {:.3}), k-means k = {}:\n\n\
         | representation | dim | kNN label agreement | k-means ARI |\n|---|---:|---:|---:|\n",
        e.n_labelled, e.k_neighbours, e.chance_agreement, e.analysis.n_clusters
    );
    for r in &e.scores {
        s += &format!("| {} | {} | {:.3} | {:.3} |\n", r.representation, r.dim, r.knn_label_agreement, r.kmeans_ari);
    }
    s
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

/// Everything `align` writes after training, into `out`: `clusters.csv` (cluster and UMAP of
/// each **held-out** cell), the figures (held-out cells only), `summary.md`, `evaluation.json`,
/// `history.json`, `model.safetensors`, and with `www` the demo's `alignment.json` layer (every
/// cell, each assigned to the nearest centre of the k-means fitted on the held-out cells, with
/// a `held_out` flag; ARI and retrieval there are the held-out ones). `types` are the cells'
/// reference labels, `source` names the morphology input in the summary. Returns the summary
/// text (Markdown).
#[allow(clippy::too_many_arguments)]
pub fn write_alignment_outputs<B: Backend>(
    out: &Path,
    www: Option<&Path>,
    crop: &PreparedCrop,
    types: &[Option<u32>],
    trained: &TrainedAligner<B>,
    eval: &HeldOutEvaluation,
    config: &ContrastiveAlignerConfig,
    epochs: usize,
    source: &str,
) -> Result<String, TrainError> {
    let n = crop.table.n_cells();
    let analysis = &eval.analysis;
    let h = eval.cells.len().max(1) as f64;
    let (dapi, frame) = data::XeniumBundle::open(&crop.source)?.read_dapi(Some(0.5))?;
    let centres: Vec<[f32; 2]> = eval
        .cells
        .iter()
        .map(|&i| crop.table.nucleus_centroids_um[i].unwrap_or(crop.table.centroids_um[i]))
        .collect();
    let held_types: Vec<Option<u32>> = eval.cells.iter().map(|&i| types[i]).collect();
    write_alignment_figures(out, analysis, &held_types, &dapi, &frame, &centres)?;
    let mut csv = String::from("cell_id,cluster,umap_x,umap_y,reference_label\n");
    for (r, &i) in eval.cells.iter().enumerate() {
        let label = types[i].map_or("", |t| crop.class_names[t as usize].as_str());
        csv += &format!(
            "{},{},{},{},{}\n",
            crop.table.cell_ids[i],
            analysis.clusters[r],
            analysis.umap[2 * r],
            analysis.umap[2 * r + 1],
            label
        );
    }
    write_atomic(&out.join("clusters.csv"), csv)?;
    let table = enrichment_table(analysis);
    let scores = representation_table(eval);
    let last = trained.history.last();
    let summary = format!(
        "# Contrastive alignment (CellSymphony)\n\nData: Xenium breast crop, {n} cells; morphology input: \
         {source}. Labels for the enrichment are SingleR-style reference labels (no expert labels).\n\n\
         **Held-out evaluation.** The projections were fitted on {fit} cells; every number, table and \
         figure below is computed on the other {held} cells only (held out at random before training, \
         never seen by the optimiser; nothing was selected on them: the epoch count is fixed).\n\n\
         Held-out cross-modal retrieval after {epochs} epochs: gene→patch top-1 {:.3} (chance {:.3}), \
         top-5 {:.3} (chance {:.3}); held-out InfoNCE {:.4}.\n\n\
         Label structure of the held-out cells (projections vs the raw inputs they came from, same cells, \
         same k): {scores}\n\
         k-means (k = {}) of the held-out morphology projections vs reference cell types: ARI {:.3}.\n\n{table}\n\
         Figures (held-out cells): umap_clusters.png, umap_cell_types.png, spatial_clusters.png, \
         enrichment.png. clusters.csv lists the held-out cells.\n",
        eval.top1,
        1.0 / h,
        eval.top5,
        5.0 / h,
        last.map_or(f64::NAN, |e| e.held_out_loss),
        analysis.n_clusters,
        analysis.ari,
        fit = eval.n_fit_cells,
        held = eval.cells.len(),
    );
    write_atomic(&out.join("summary.md"), &summary)?;
    let evaluation = serde_json::json!({
        "evaluated_on": "held_out",
        "held_out_cell_ids": eval.cells.iter().map(|&i| &crop.table.cell_ids[i]).collect::<Vec<_>>(),
        "n_fit_cells": eval.n_fit_cells,
        "n_labelled_held_out": eval.n_labelled,
        "top1": eval.top1,
        "top5": eval.top5,
        "k_neighbours": eval.k_neighbours,
        "chance_agreement": eval.chance_agreement,
        "ari_morphology_clusters": analysis.ari,
        "scores": eval.scores,
    });
    write_atomic(&out.join("evaluation.json"), serde_json::to_string_pretty(&evaluation).unwrap_or_default())?;
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
        let all_clusters = analysis
            .kmeans
            .predict(&trained.z_morph, n)
            .map_err(|e| TrainError::Analysis(e.to_string()))?;
        let mut held_out = vec![false; n];
        for &i in &eval.cells {
            held_out[i] = true;
        }
        let layer = serde_json::json!({
            "cell_ids": crop.table.cell_ids,
            "clusters": all_clusters,
            "held_out": held_out,
            "n_clusters": analysis.n_clusters,
            "ari": analysis.ari,
            "top1": eval.top1,
        });
        write_atomic(&www.join("alignment.json"), layer.to_string())?;
    }
    Ok(summary)
}
