//! `cellsymphony classify`: every cell with a model file, predictions CSV / h5ad / web bundle.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use cellsymphony::data;
use cellsymphony::engine::{softmax_max, EngineModel, UNCLASSIFIED, UNCLASSIFIED_LABEL};
use cellsymphony::train::{argmax_rows, LabelOptions, PreparedCrop};

use crate::infer::{block_forward, engine_logits, model_inputs};

use crate::common::*;

#[derive(Args)]
pub(crate) struct ClassifyArgs {
    #[command(flatten)]
    pub(crate) data: DataArgs,
    #[command(flatten)]
    pub(crate) anndata: AnnDataArgs,
    /// Model file (int8 recommended).
    #[arg(long, default_value = "runs/gene_only/model.int8.safetensors")]
    pub(crate) model: PathBuf,
    /// Engine.
    #[arg(long, value_enum, default_value_t = Engine::Gpu)]
    pub(crate) engine: Engine,
    /// Predictions CSV (`cell_id,x_um,y_um,predicted,confidence,reference_label`).
    #[arg(long, default_value = "runs/gene_only/predictions.csv")]
    pub(crate) out: PathBuf,
    /// Also write the web-demo bundle (model, counts, centroids, DAPI PNG) to this folder.
    #[arg(long)]
    pub(crate) www: Option<PathBuf>,
    /// Also write the predictions as an AnnData file (obs: predicted (categorical),
    /// confidence; obsm['spatial']) readable by scanpy / anndata.
    #[arg(long)]
    pub(crate) h5ad: Option<PathBuf>,
    /// Also write the predictions as an AnnData-zarr store (folder OUT.zarr; same obs / obsm as
    /// --h5ad) for Vitessce, SpatialData or `anndata.read_zarr`.
    #[arg(long, value_name = "OUT.zarr")]
    pub(crate) anndata_zarr: Option<PathBuf>,
    /// Also write Xenium Explorer cell groups (Cell > Groups > Upload): `cell_id,group`, one
    /// group per predicted class, and beside it `<stem>_confident.csv` with cells below
    /// --xenium-explorer-min-confidence in a "low confidence (< t)" group.
    #[arg(long)]
    pub(crate) xenium_explorer: Option<PathBuf>,
    /// Confidence (top softmax probability) below which --xenium-explorer's second grouping
    /// puts a cell in "low confidence (< t)".
    #[arg(long, default_value_t = data::XENIUM_EXPLORER_MIN_CONFIDENCE)]
    pub(crate) xenium_explorer_min_confidence: f32,
    /// For a model with a morphology token: also write the nucleus-centred DAPI patches it
    /// read, f32 little-endian `[cells, S, S]` in the predictions' cell order (the web demo
    /// passes them to `classify`).
    #[arg(long)]
    pub(crate) patches_out: Option<PathBuf>,
    /// Whole slide: stream the --bundle's matrix (cell_feature_matrix.h5 read a block at a
    /// time, or a MEX matrix held as CSR) through the model in blocks of --block-cells, so
    /// memory grows only with the per-cell output. Cells are not labelled against the
    /// reference (the CSV's reference_label column is empty); count models only.
    #[arg(long)]
    pub(crate) stream: bool,
    /// Cells per block with --stream.
    #[arg(long, default_value_t = 16384)]
    pub(crate) block_cells: usize,
    #[command(flatten)]
    pub(crate) gpu_fast: GpuFastArgs,
}

pub(crate) struct Classified {
    pub(crate) pred: Vec<u32>,
    pub(crate) logits: Vec<f32>,
    pub(crate) engine_name: String,
    pub(crate) seconds: f64,
}

pub(crate) fn classify_crop(model: &EngineModel, crop: &PreparedCrop, engine: Engine, patches_out: Option<&Path>) -> Result<Classified> {
    let data = model_inputs(model, crop)?;
    if let (Some(path), Some(p)) = (patches_out, &data.cells.patches) {
        write_file(path, p.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())?;
        println!("wrote the {} cells' patches the model reads to {}", crop.table.n_cells(), path.display());
    }
    let t = Instant::now();
    let all: Vec<usize> = (0..crop.table.n_cells()).collect();
    let (logits, engine_name) = engine_logits(model, &data, &all, engine)?;
    let seconds = t.elapsed().as_secs_f64();
    let mut pred = argmax_rows(&logits, model.meta.classes.len());
    // A cell without counts over the model's genes gets no class (engine::Classifier::predict).
    for (p, _) in pred.iter_mut().zip(&data.cells.no_counts).filter(|(_, &none)| none) {
        *p = UNCLASSIFIED;
    }
    Ok(Classified { pred, logits, engine_name, seconds })
}

pub(crate) fn write_predictions(path: &Path, model: &EngineModel, crop: &PreparedCrop, c: &Classified) -> Result<()> {
    let k = model.meta.classes.len();
    let mut s = String::from("cell_id,x_um,y_um,predicted,confidence,reference_label\n");
    for i in 0..crop.table.n_cells() {
        let [x, y] = crop.table.centroids_um[i];
        let reference = crop.labels[i].map(|c| crop.class_names[c as usize].as_str()).unwrap_or("");
        let (predicted, confidence) = match model.meta.classes.get(c.pred[i] as usize) {
            Some(name) => (name.as_str(), format!("{:.4}", softmax_max(&c.logits[i * k..(i + 1) * k]))),
            None => (UNCLASSIFIED_LABEL, String::new()),
        };
        s += &format!("{},{x:.2},{y:.2},{predicted},{confidence},{reference}\n", crop.table.cell_ids[i]);
    }
    write_file(path, s)
}

/// The crop's predictions as [`data::Predictions`] (class names, top softmax probability, 0
/// for cells without a class; centroids) for the `.h5ad` and Xenium Explorer writers.
pub(crate) fn predictions_table(model: &EngineModel, crop: &PreparedCrop, c: &Classified) -> data::Predictions {
    let k = model.meta.classes.len();
    data::Predictions {
        cell_ids: crop.table.cell_ids.clone(),
        predicted: c.pred.iter().map(|&i| model.meta.classes.get(i as usize).map_or(UNCLASSIFIED_LABEL, String::as_str).to_string()).collect(),
        confidence: c.pred.iter().zip(c.logits.chunks(k)).map(|(&i, row)| if i == UNCLASSIFIED { 0.0 } else { softmax_max(row) }).collect(),
        centroids_um: Some(crop.table.centroids_um.clone()),
    }
}

pub(crate) fn cmd_classify(a: ClassifyArgs) -> Result<Classified> {
    set_gpu_fast(a.gpu_fast);
    let model = EngineModel::load(&a.model)?;
    if a.stream {
        return cmd_classify_stream(&a, &model);
    }
    if a.anndata.anndata.is_some() && a.www.is_some() {
        anyhow::bail!("--www writes the Xenium demo bundle; it cannot be built from --anndata cells");
    }
    // The data's panel is checked against the model before the cells are labelled against
    // the reference, so a data/model mismatch is not blamed on the reference.
    let crop = match &a.anndata.anndata {
        Some(_) => a.anndata.prepare_or(&a.data)?,
        None => {
            let panel = cellsymphony::train::dataset::ModelPanel { genes: model.meta.genes.clone(), path: a.model.clone() };
            a.data.prepare_with(&LabelOptions { model_panel: Some(panel), proteins: model.meta.proteins.is_some(), ..a.data.options() })?
        }
    };
    if a.patches_out.is_some() && model.meta.config.morphology.is_none() {
        anyhow::bail!("--patches-out: the {} model reads no patches", model.meta.architecture);
    }
    let c = classify_crop(&model, &crop, a.engine, a.patches_out.as_deref())?;
    println!(
        "classified {} cells with {} in {:.3} s ({:.0} cells/s)",
        crop.table.n_cells(),
        c.engine_name,
        c.seconds,
        crop.table.n_cells() as f64 / c.seconds
    );
    print_prediction_counts(&model, &c.pred);
    let unclassified = c.pred.iter().filter(|&&p| p == UNCLASSIFIED).count();
    if unclassified > 0 {
        eprintln!(
            "warning: {unclassified} of {} cells have no counts over the model's genes: written as \"{UNCLASSIFIED_LABEL}\" (no class, no confidence)",
            crop.table.n_cells()
        );
    }
    write_predictions(&a.out, &model, &crop, &c)?;
    println!("wrote {}", a.out.display());
    if let Some(path) = &a.h5ad {
        data::write_predictions_h5ad(path, &predictions_table(&model, &crop, &c))?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &a.anndata_zarr {
        data::write_predictions_anndata_zarr(path, &predictions_table(&model, &crop, &c))?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &a.xenium_explorer {
        let written = data::write_xenium_explorer_groups(path, &predictions_table(&model, &crop, &c), a.xenium_explorer_min_confidence)?;
        println!("wrote Xenium Explorer cell groups {} and {}", written[0].display(), written[1].display());
    }
    if let Some(www) = &a.www {
        cellsymphony::train::www::write_www_bundle(www, &a.data.dir(), &a.model, &model, &crop, &c.pred, &c.engine_name)?;
        println!("wrote web-demo bundle to {}", www.display());
    }
    Ok(c)
}

pub(crate) fn print_prediction_counts(model: &EngineModel, pred: &[u32]) {
    let mut counts = vec![0usize; model.meta.classes.len()];
    let mut unclassified = 0;
    for &p in pred {
        match counts.get_mut(p as usize) {
            Some(n) => *n += 1,
            None => unclassified += 1,
        }
    }
    for (name, n) in model.meta.classes.iter().zip(counts) {
        println!("  {name:<16} {n:>5}");
    }
    if unclassified > 0 {
        println!("  {UNCLASSIFIED_LABEL}: {unclassified}");
    }
}

/// `classify --stream`: the whole slide in blocks ([`cellsymphony::train::slide`]), with a
/// progress bar (plain lines every ~10 % when stderr is not a terminal) and the process's peak
/// resident memory at the end.
fn cmd_classify_stream(a: &ClassifyArgs, model: &EngineModel) -> Result<Classified> {
    let Some(bundle) = &a.data.bundle else {
        anyhow::bail!("--stream reads a Xenium output folder: pass --bundle DIR (with cell_feature_matrix.h5 or cell_feature_matrix/)");
    };
    for (given, flag) in [(a.www.is_some(), "--www"), (a.h5ad.is_some(), "--h5ad"), (a.anndata_zarr.is_some(), "--anndata-zarr"), (a.xenium_explorer.is_some(), "--xenium-explorer"), (a.patches_out.is_some(), "--patches-out"), (a.anndata.anndata.is_some(), "--anndata")] {
        if given {
            anyhow::bail!("{flag} is not available with --stream (whole-slide output is the predictions CSV); run without --stream");
        }
    }
    if a.block_cells == 0 {
        anyhow::bail!("--block-cells must be at least 1");
    }
    let (mut forward, engine_name) = block_forward(model, a.engine)?;
    let t = Instant::now();
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} cells  {per_sec}  eta {eta}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut next_report = 0.1;
    let mut progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        if bar.is_hidden() && done as f64 >= next_report * total as f64 {
            eprintln!("classified {done} / {total} cells ({:.0} cells/s)", done as f64 / t.elapsed().as_secs_f64());
            next_report = (done as f64 / total as f64 * 10.0).floor() / 10.0 + 0.1;
        }
    };
    let p = cellsymphony::train::slide::classify_slide(bundle, model, &a.model, a.block_cells, &mut forward, &mut progress)?;
    bar.finish_and_clear();
    let seconds = t.elapsed().as_secs_f64();
    let n = p.cell_ids.len();
    println!(
        "classified {n} cells ({} stored values) with {engine_name} in {seconds:.3} s ({:.0} cells/s; forward pass {:.3} s, reading and preparing {:.3} s), streamed in blocks of {}",
        p.nnz,
        n as f64 / seconds,
        p.forward_seconds,
        seconds - p.forward_seconds,
        a.block_cells
    );
    print_prediction_counts(model, &p.classes);
    let unclassified = p.classes.iter().filter(|&&c| c == UNCLASSIFIED).count();
    if unclassified > 0 {
        eprintln!("warning: {unclassified} of {n} cells have no counts over the model's genes: written as \"{UNCLASSIFIED_LABEL}\" (no class, no confidence)");
    }
    cellsymphony::train::slide::write_slide_predictions(&a.out, &p, &model.meta.classes)?;
    println!("wrote {}", a.out.display());
    if let Some(peak) = cellsymphony::util::memory::peak_rss_bytes() {
        println!("peak RSS {:.1} MiB (VmHWM)", peak as f64 / (1u64 << 20) as f64);
    }
    Ok(Classified { pred: p.classes, logits: Vec::new(), engine_name, seconds })
}
