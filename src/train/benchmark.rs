//! The four CellSymphony classifiers and a logistic-regression baseline on one shared split of
//! the Xenium crop, reported per class in the layout of the paper's Tables 1–2.
//!
//! Inputs per cell: log1p-cp10k genes, the centroid (µm), and a nucleus-centred DAPI patch
//! extracted with [`crate::data::extract_patch_scaled`] (global 0.5/99.5 % stretch, zero
//! padding at the image edge). Optional precomputed gene / image embeddings (`.npy` or
//! `.safetensors`, one row per cell in the crop's cell order) replace the count GEB / patch ViT
//! of the multimodal models.
//!
//! Default patch geometry: 32 × 32 px at 0.75 µm/px (a 24 µm field: the nucleus, about
//! 8–12 µm across here, plus its immediate surroundings) with 8 × 8 px ViT patches (16 tokens;
//! the cell token is the mean of the central 2 × 2). The paper's 224 × 224 px at 0.5 µm/px
//! (112 µm, 784 tokens at patch 8) is ~50× the attention cost per cell and does not train in
//! reasonable time on a shared 2-core CPU; both are parameters.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;

use super::dataset::{prepare_crop, LabelOptions, PreparedCrop};
use super::embeddings::{read_embeddings, Embeddings};
use super::export::{export_fp32_and_int8, model_meta, save_named_safetensors};
use super::logistic::{LogisticOptions, LogisticRegression};
use super::metrics::ClassificationReport;
use super::plot::confusion_png;
use super::split::stratified_split;
use super::trainer::{
    argmax_rows, train_classifier, CellInputs, CheckpointOptions, EpochStats, LabelledSplit, Rows,
    TrainConfig, TrainProgress, CHECKPOINT_FILE,
};
use super::TrainError;
use crate::data;
use crate::engine::{Architecture, ClassifierConfig, TokenSources};
use crate::model::{Classifier, ClassifierOptions};

/// Everything [`run_benchmark`] needs.
#[derive(Debug, Clone)]
pub struct BenchmarkOptions {
    /// Unpacked bidcell data folder.
    pub data_dir: PathBuf,
    /// Labelling and filtering.
    pub labels: LabelOptions,
    /// Output folder.
    pub out: PathBuf,
    /// Optimisation (paper defaults via `TrainConfig::default()`).
    pub train: TrainConfig,
    /// Held-out fraction.
    pub test_fraction: f64,
    /// Width, depth, heads and gene tokens shared by every classifier (`n_genes`,
    /// `n_classes` and the token sources are set per model).
    pub architecture: ClassifierConfig,
    /// Token-source options: the morphology ViT (its `image_size` is the patch side in pixels,
    /// `um_per_px` the patch pixel size) and the centroid sinusoid.
    pub sources: TokenSources,
    /// Dropout.
    pub dropout: f64,
    /// Classifiers to train.
    pub models: Vec<Architecture>,
    /// Logistic-regression baseline.
    pub logistic: LogisticOptions,
    /// Precomputed gene embedding `[cells, d]` replacing the count GEB of the multimodal models.
    pub gene_embedding: Option<PathBuf>,
    /// Precomputed image embedding `[cells, d]` replacing the patch ViT.
    pub morph_embedding: Option<PathBuf>,
    /// Resume each model from `resume/<model>/checkpoint.bin` where present.
    pub resume: Option<PathBuf>,
    /// Benchmark on an AnnData file with expert labels instead of the Xenium crop (only the
    /// gene-only model and the baseline: no morphology or positions).
    pub h5ad: Option<PathBuf>,
    /// `obs` column holding the expert labels of `h5ad`.
    pub label_key: String,
    /// How `X` of `h5ad` becomes the model input (recorded in the model files): `as_stored`
    /// (default), `log1p_cp10k` for counts, `arcsinh` for protein intensities.
    pub h5ad_normalisation: crate::engine::Normalisation,
    /// A Xenium output folder to read instead of the example crop.
    pub bundle: Option<PathBuf>,
    /// Reference CSV for the labels of `bundle` (default: the example's `sc_breast.csv`).
    pub reference: Option<PathBuf>,
}

impl Default for BenchmarkOptions {
    fn default() -> Self {
        Self {
            data_dir: data::default_data_dir(),
            labels: LabelOptions::default(),
            out: PathBuf::from("runs/benchmark"),
            train: TrainConfig::default(),
            test_fraction: 0.2,
            architecture: ClassifierConfig::default(),
            sources: TokenSources::default(),
            dropout: 0.1,
            models: Architecture::ALL.to_vec(),
            logistic: LogisticOptions::default(),
            gene_embedding: None,
            morph_embedding: None,
            resume: None,
            h5ad: None,
            label_key: "bulk_labels".into(),
            h5ad_normalisation: crate::engine::Normalisation::as_stored(),
            bundle: None,
            reference: None,
        }
    }
}

/// One evaluated model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelResult {
    /// File-system name.
    pub name: String,
    /// Table title.
    pub title: String,
    /// Held-out report.
    pub report: ClassificationReport,
    /// Per-epoch statistics (empty for the baseline).
    pub history: Vec<EpochStats>,
    /// Wall-clock training seconds.
    pub train_seconds: f64,
    /// Mean seconds per epoch (training + held-out evaluation).
    pub mean_epoch_seconds: f64,
}

/// What [`run_benchmark`] produced.
#[derive(Debug, Clone, Serialize)]
pub struct BenchmarkResult {
    /// Class names (table rows).
    pub class_names: Vec<String>,
    /// Training / held-out cells.
    pub n_train: usize,
    /// Held-out cells.
    pub n_test: usize,
    /// Baseline first, then the classifiers in order.
    pub results: Vec<ModelResult>,
    /// The per-class table as Markdown.
    pub markdown: String,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// Per-model progress sink factory.
pub type ProgressFactory<'a> = dyn FnMut(Architecture, usize) -> Box<dyn TrainProgress> + 'a;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `bytes` to `path` atomically ([`crate::util::write_atomic`]).
pub(crate) fn write_atomic(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), TrainError> {
    Ok(crate::util::write_atomic(path, bytes.as_ref())?)
}

/// Nucleus-centred DAPI patches `[cells, size²]` (centroid where no nucleus transcript
/// exists) at `um_per_px`, from the morphology image of the folder the cells were read from
/// ([`PreparedCrop::source`]), read at the pyramid level that resolution needs.
pub fn crop_patches(crop: &PreparedCrop, size: usize, um_per_px: f32) -> Result<Vec<f32>, TrainError> {
    if crop.source.as_os_str().is_empty() {
        return Err(TrainError::Options(
            "these cells were not read from a Xenium folder, so there is no morphology image for \
             patches; use a gene-only model or give the cells' folder"
                .into(),
        ));
    }
    let bundle = data::XeniumBundle::open(&crop.source)?;
    let (image, frame) = bundle.read_dapi(Some(um_per_px))?;
    let scale = data::IntensityScale::global(&image);
    let mut out = Vec::with_capacity(crop.table.n_cells() * size * size);
    for i in 0..crop.table.n_cells() {
        let centre = crop.table.nucleus_centroids_um[i].unwrap_or(crop.table.centroids_um[i]);
        match data::extract_patch_scaled(
            &image,
            &frame,
            centre,
            size,
            um_per_px,
            data::EdgePolicy::Pad,
            &scale,
        ) {
            Some(p) => out.extend_from_slice(&p.pixels),
            None => out.extend(std::iter::repeat_n(0.0, size * size)),
        }
    }
    Ok(out)
}

fn load_embedding(path: &Path, n_cells: usize) -> Result<Embeddings, TrainError> {
    let e = read_embeddings(path, None)?;
    if e.rows != n_cells {
        return Err(TrainError::EmbeddingFile {
            path: path.display().to_string(),
            problem: format!("has {} rows but the crop has {n_cells} cells; write one row per cell in the crop's cell order", e.rows),
        });
    }
    Ok(e)
}

/// Macro and support-weighted means of precision, recall and F1 over classes with support.
pub fn averages(r: &ClassificationReport) -> ([f64; 3], [f64; 3]) {
    let (mut m, mut w, mut k, mut n) = ([0.0; 3], [0.0; 3], 0usize, 0usize);
    for c in r.classes.iter().filter(|c| c.support > 0) {
        let v = [c.precision, c.recall, c.f1];
        for j in 0..3 {
            m[j] += v[j];
            w[j] += v[j] * c.support as f64;
        }
        k += 1;
        n += c.support;
    }
    (
        m.map(|v| v / k.max(1) as f64),
        w.map(|v| v / n.max(1) as f64),
    )
}

/// CSV (`class,support,<model>_precision,<model>_recall,<model>_f1,…`, then `macro_avg`,
/// `weighted_avg` and `accuracy` rows) and Markdown of the per-class table.
pub fn tables(class_names: &[String], results: &[ModelResult]) -> (String, String) {
    let mut csv = String::from("class,support");
    let mut md = String::from("| Cell type | n |");
    let mut rule = String::from("|---|---:|");
    for r in results {
        csv += &format!(",{0}_precision,{0}_recall,{0}_f1", r.name);
        md += &format!(" {0} P | {0} R | {0} F1 |", r.title);
        rule += "---:|---:|---:|";
    }
    csv.push('\n');
    md += &format!("\n{rule}\n");
    let support = |k: usize| results.first().map_or(0, |r| r.report.classes[k].support);
    for (k, name) in class_names.iter().enumerate() {
        csv += &format!("{name},{}", support(k));
        md += &format!("| {name} | {} |", support(k));
        for r in results {
            let c = &r.report.classes[k];
            csv += &format!(",{:.4},{:.4},{:.4}", c.precision, c.recall, c.f1);
            md += &format!(" {:.3} | {:.3} | {:.3} |", c.precision, c.recall, c.f1);
        }
        csv.push('\n');
        md.push('\n');
    }
    let n = results.first().map_or(0, |r| r.report.n_cells);
    for (label, pick) in [("macro avg", 0usize), ("weighted avg", 1)] {
        csv += &format!("{},{n}", label.replace(' ', "_"));
        md += &format!("| **{label}** | {n} |");
        for r in results {
            let (m, w) = averages(&r.report);
            let v = if pick == 0 { m } else { w };
            csv += &format!(",{:.4},{:.4},{:.4}", v[0], v[1], v[2]);
            md += &format!(" {:.3} | {:.3} | **{:.3}** |", v[0], v[1], v[2]);
        }
        csv.push('\n');
        md.push('\n');
    }
    csv += &format!("accuracy,{n}");
    md += &format!("| **accuracy** | {n} |");
    for r in results {
        csv += &format!(",,,{:.4}", r.report.accuracy);
        md += &format!(" | | {:.3} |", r.report.accuracy);
    }
    csv.push('\n');
    md.push('\n');
    (csv, md)
}

struct Shared<'a, 'b> {
    opts: &'a BenchmarkOptions,
    inputs: CellInputs<'b>,
    split: LabelledSplit<'b>,
    crop: &'a PreparedCrop,
}

fn train_one<B: AutodiffBackend>(
    kind: Architecture,
    options: &ClassifierOptions,
    s: &Shared<'_, '_>,
    device: &B::Device,
    progress: &mut dyn TrainProgress,
) -> Result<(ModelResult, Classifier<B>), TrainError> {
    let dir = s.opts.out.join(kind.name());
    // A model the earlier run did not train starts fresh; the folder itself must exist
    // (checked in run_benchmark).
    let resume = s
        .opts
        .resume
        .as_ref()
        .map(|r| r.join(kind.name()))
        .filter(|d| d.join(CHECKPOINT_FILE).exists());
    let ckpt = CheckpointOptions {
        dir: Some(dir.clone()),
        resume,
    };
    let t = Instant::now();
    let trained = train_classifier::<B>(
        options,
        &s.opts.train,
        &s.inputs,
        &s.split,
        &s.crop.class_names,
        &ckpt,
        device,
        progress,
    )?;
    let train_seconds = t.elapsed().as_secs_f64();
    let inner = trained.model.valid();
    let mut meta = HashMap::new();
    meta.insert("model".to_string(), kind.name().to_string());
    let spec = serde_json::to_value(options).map_err(|e| TrainError::Options(e.to_string()))?;
    meta.insert("config".to_string(), spec.to_string());
    meta.insert(
        "classes".to_string(),
        serde_json::to_string(&s.crop.class_names).unwrap_or_default(),
    );
    meta.insert(
        "genes".to_string(),
        serde_json::to_string(&s.crop.table.genes).unwrap_or_default(),
    );
    meta.insert(
        "normalisation".to_string(),
        serde_json::to_string(&s.crop.normalisation).unwrap_or_default(),
    );
    meta.insert(
        "patch_um_per_px".to_string(),
        s.opts.sources.morphology.um_per_px.to_string(),
    );
    meta.insert(
        "weights_layout".to_string(),
        "burn Linear weights are [in, out]".to_string(),
    );
    save_named_safetensors(&inner, meta, &dir.join("model.safetensors"))?;
    std::fs::write(
        dir.join("model.json"),
        serde_json::to_string_pretty(&spec).unwrap_or_default(),
    )
    .map_err(io(&dir))?;
    let history = trained.history;
    let mean_epoch_seconds =
        history.iter().map(|h| h.seconds).sum::<f64>() / history.len().max(1) as f64;
    Ok((
        ModelResult {
            name: kind.name().into(),
            title: kind.title().into(),
            report: trained.report,
            history,
            train_seconds,
            mean_epoch_seconds,
        },
        trained.model,
    ))
}

/// Label the crop, split it once (stratified), train the baseline and every requested
/// classifier, and write `per_class.csv`, `per_class.md`, `confusion_<model>.png`,
/// `<model>/model.safetensors` (+ `checkpoint.bin`), `benchmark.json` and `summary.md` to
/// `opts.out`.
pub fn run_benchmark<B: AutodiffBackend>(
    opts: &BenchmarkOptions,
    device: &B::Device,
    make_progress: &mut ProgressFactory<'_>,
) -> Result<BenchmarkResult, TrainError> {
    // Every architecture's spec must be valid before any data is read.
    for &kind in &opts.models {
        let mut spec = opts.architecture.clone().for_architecture(kind, &opts.sources);
        (spec.n_genes, spec.n_classes) = (spec.n_genes.max(1), spec.n_classes.max(1));
        spec.validate()?;
    }
    if let Some(dir) = &opts.resume {
        if !dir.is_dir() {
            return Err(TrainError::Checkpoint {
                path: dir.display().to_string(),
                problem: "--resume names no folder; give the --out folder of an earlier benchmark run".into(),
            });
        }
    }
    super::trainer::check_writable(&opts.out)?;
    let crop = match &opts.h5ad {
        Some(path) => {
            if let Some(m) = opts.models.iter().find(|m| **m != Architecture::GeneOnly) {
                return Err(TrainError::Options(format!(
                    "{} needs morphology or positions, which {} does not have; use --models gene-only",
                    m.title(),
                    path.display()
                )));
            }
            super::dataset::prepare_h5ad_with(path, &opts.label_key, &opts.labels, &opts.h5ad_normalisation)?
        }
        None => match &opts.bundle {
            Some(dir) => {
                let reference = match &opts.reference {
                    Some(r) => r.clone(),
                    None => data::BidcellData::locate(&opts.data_dir)?.reference,
                };
                super::dataset::prepare_bundle(dir, &reference, &opts.labels)?
            }
            None => prepare_crop(&opts.data_dir, &opts.labels)?,
        },
    };
    let n_cells = crop.table.n_cells();
    let g = crop.table.n_genes();
    let n_classes = crop.class_names.len();
    let labels: Vec<u32> = crop.labels.iter().map(|l| l.unwrap_or(0)).collect();
    let (train_idx, test_idx) = stratified_split(&crop.labels, opts.test_fraction, opts.train.seed);
    if train_idx.len() < 20 || n_classes < 2 {
        return Err(TrainError::TooFewCells {
            found: train_idx.len() + test_idx.len(),
            classes: n_classes,
            needed: 25,
        });
    }
    let needs_patches = opts.morph_embedding.is_none()
        && opts
            .models
            .iter()
            .any(|m| m.has_morphology());
    let size = opts.sources.morphology.image_size;
    let patches = if needs_patches {
        crop_patches(&crop, size, opts.sources.morphology.um_per_px as f32)?
    } else {
        Vec::new()
    };
    let centroids: Vec<f32> = crop
        .table
        .centroids_um
        .iter()
        .flat_map(|c| [c[0], c[1]])
        .collect();
    let gene_emb = opts
        .gene_embedding
        .as_deref()
        .map(|p| load_embedding(p, n_cells))
        .transpose()?;
    let morph_emb = opts
        .morph_embedding
        .as_deref()
        .map(|p| load_embedding(p, n_cells))
        .transpose()?;
    let inputs = CellInputs {
        n_cells,
        genes: Some(Rows {
            data: &crop.x_norm,
            cols: g,
        }),
        gene_embedding: gene_emb.as_ref().map(|e| Rows {
            data: &e.values,
            cols: e.dim,
        }),
        patches: needs_patches.then_some(Rows {
            data: &patches,
            cols: size * size,
        }),
        morph_embedding: morph_emb.as_ref().map(|e| Rows {
            data: &e.values,
            cols: e.dim,
        }),
        centroids_um: Some(Rows {
            data: &centroids,
            cols: 2,
        }),
    };
    let split = LabelledSplit {
        labels: &labels,
        n_classes,
        train: &train_idx,
        test: &test_idx,
    };
    let shared = Shared {
        opts,
        inputs,
        split,
        crop: &crop,
    };
    let mut files = Vec::new();

    // Baseline.
    let t = Instant::now();
    let lr = LogisticRegression::fit(
        &crop.x_norm,
        g,
        &labels,
        n_classes,
        &train_idx,
        &opts.logistic,
    );
    let truth: Vec<u32> = test_idx.iter().map(|&i| labels[i]).collect();
    let lr_report = ClassificationReport::new(
        &truth,
        &argmax_rows(&lr.logits(&crop.x_norm, &test_idx), n_classes),
        &crop.class_names,
    );
    let mut results = vec![ModelResult {
        name: "logistic".into(),
        title: "LogReg".into(),
        report: lr_report,
        history: Vec::new(),
        train_seconds: t.elapsed().as_secs_f64(),
        mean_epoch_seconds: 0.0,
    }];

    let mut base = opts.architecture.clone();
    (base.n_genes, base.n_classes) = (g, n_classes);
    let sources = TokenSources {
        gene_embedding_dim: gene_emb.as_ref().map(|e| e.dim),
        morph_embedding_dim: morph_emb.as_ref().map(|e| e.dim),
        ..opts.sources.clone()
    };
    for &kind in &opts.models {
        let mut progress = make_progress(kind, opts.train.epochs);
        let options = ClassifierOptions::new(base.clone().for_architecture(kind, &sources))
            .with_dropout(opts.dropout);
        let (result, model) = train_one::<B>(kind, &options, &shared, device, progress.as_mut())?;
        // The engines' fp32 + int8 files (browser / WGSL classifier) for models that read
        // counts and patches.
        if options.spec.check_engine_inputs().is_ok() {
            let inner = model.valid();
            let meta = model_meta(
                &inner,
                &crop.table.genes,
                &crop.class_names,
                crop.normalisation.clone(),
                serde_json::json!({
                    "benchmark": true,
                    "split": {"kind": "stratified", "test_fraction": opts.test_fraction, "seed": opts.train.seed},
                    "test_cell_ids": test_idx.iter().map(|&i| crop.table.cell_ids[i].clone()).collect::<Vec<_>>(),
                }),
            );
            let (_, ex) = export_fp32_and_int8(&inner, meta, &opts.out.join(kind.name()).join("engine"))?;
            files.extend([ex.fp32, ex.int8]);
        }
        files.push(opts.out.join(kind.name()).join("model.safetensors"));
        results.push(result);
    }

    for r in &results {
        let path = opts.out.join(format!("confusion_{}.png", r.name));
        confusion_png(
            &path,
            &format!("{} (held out, n={})", r.title, r.report.n_cells),
            &crop.class_names,
            &r.report.confusion,
        )?;
        files.push(path);
    }
    let (csv, md) = tables(&crop.class_names, &results);
    for (name, text) in [("per_class.csv", &csv), ("per_class.md", &md)] {
        let path = opts.out.join(name);
        write_atomic(&path, text)?;
        files.push(path);
    }
    let result = BenchmarkResult {
        class_names: crop.class_names.clone(),
        n_train: train_idx.len(),
        n_test: test_idx.len(),
        results,
        markdown: md,
        files: files.clone(),
    };
    let json_path = opts.out.join("benchmark.json");
    let json = serde_json::json!({
        "result": &result,
        "label_summary": &crop.summary,
        "train_config": &opts.train,
        "architecture": &base,
        "dropout": opts.dropout,
        "sources": &opts.sources,
        "logistic": &opts.logistic,
        "split": {"kind": "stratified", "test_fraction": opts.test_fraction, "seed": opts.train.seed},
    });
    write_atomic(
        &json_path,
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )?;
    let summary_path = opts.out.join("summary.md");
    write_atomic(&summary_path, summary_markdown(opts, &crop, &result))?;
    let mut result = result;
    result.files.extend([json_path, summary_path]);
    Ok(result)
}

fn summary_markdown(opts: &BenchmarkOptions, crop: &PreparedCrop, r: &BenchmarkResult) -> String {
    let s = &crop.summary;
    if let Some(path) = &opts.h5ad {
        let mut md = format!("# CellSymphony benchmark ({})\n\n", path.display());
        md += &format!(
            "Labels: expert annotation `obs['{}']`. Input: `X` normalised as {}. {} cells; rare classes excluded {:?}. \
             One stratified split (seed {}): {} training / {} held-out cells, {} classes.\n\n",
            opts.label_key, serde_json::to_string(&opts.h5ad_normalisation).unwrap_or_default(), s.cells, s.rare_classes, opts.train.seed, r.n_train, r.n_test, r.class_names.len()
        );
        md += &format!(
            "Training: AdamW lr {}, batch {}, weight decay {}, {} epochs, class-weighted CE: {}. Encoder: {} layers, d_model {}, {} heads.\n\n",
            opts.train.learning_rate, opts.train.batch_size, opts.train.weight_decay, opts.train.epochs,
            opts.train.class_weighted, opts.architecture.n_layers, opts.architecture.d_model, opts.architecture.n_heads
        );
        return md + &tables(&r.class_names, &r.results).1;
    }
    let mut md = String::from("# CellSymphony benchmark (Xenium breast crop)\n\n");
    md += &format!(
        "Labels: SingleR-style Spearman correlation to the bidcell `sc_breast.csv` reference (no expert labels exist for this crop). \
         {} cells read; excluded: {} low-count, {} ambiguous, rare classes {:?}. One stratified split (seed {}): {} training / {} held-out cells, {} classes.\n\n",
        s.cells, s.low_counts, s.ambiguous, s.rare_classes, opts.train.seed, r.n_train, r.n_test, r.class_names.len()
    );
    md += &format!(
        "Training: AdamW lr {}, batch {}, weight decay {}, {} epochs, class-weighted CE: {}. Encoder: {} layers, d_model {}, {} heads, d_ff {}, {} gene tokens, dropout {}.\n\n",
        opts.train.learning_rate, opts.train.batch_size, opts.train.weight_decay, opts.train.epochs, opts.train.class_weighted,
        opts.architecture.n_layers, opts.architecture.d_model, opts.architecture.n_heads, opts.architecture.d_ff, opts.architecture.gene_tokens, opts.dropout
    );
    let m = &opts.sources.morphology;
    md += &format!(
        "Morphology: {}×{} px DAPI patches at {} µm/px ({} µm field) centred on the nucleus centroid; ViT patch {} px ({}×{} tokens), width {}, cell token = mean of the {} tokens nearest the centre after block {}.{}\n\n",
        m.image_size, m.image_size, m.um_per_px, m.image_size as f64 * m.um_per_px, m.vit_patch, m.grid(), m.grid(), m.width, m.k_nearest, m.n_layers,
        opts.morph_embedding.as_ref().map(|p| format!(" Image embedding from {} used instead.", p.display())).unwrap_or_default()
    );
    md += &format!(
        "Baseline: multinomial logistic regression, L2 (C = {}), z-scored log1p-CP10k genes, {} accelerated-gradient iterations, class weights: {}.\n\n",
        opts.logistic.c, opts.logistic.iterations, opts.logistic.class_weighted
    );
    md += "| Model | macro-F1 | weighted-F1 | accuracy | mean epoch (s) | train (s) |\n|---|---:|---:|---:|---:|---:|\n";
    for x in &r.results {
        md += &format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.2} | {:.1} |\n",
            x.title,
            x.report.macro_f1,
            x.report.weighted_f1,
            x.report.accuracy,
            x.mean_epoch_seconds,
            x.train_seconds
        );
    }
    md += "\n## Per class (held out)\n\n";
    md += &r.markdown;
    md += "\nFiles: `per_class.csv`, `per_class.md`, `confusion_<model>.png` (rows true, columns predicted, colour = row fraction), `<model>/model.safetensors` (all parameters, burn names), `<model>/checkpoint.bin` (resume with `--resume`), `<model>/engine/model{,.int8}.safetensors` (engine format, every model that reads counts and patches), `benchmark.json`.\n";
    md
}
