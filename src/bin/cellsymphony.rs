//! `cellsymphony` command-line tool: label, train, eval, export, classify, and the full
//! pipeline on the default Xenium crop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow_lite::{Context, Result};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use cellsymphony::data::{self, default_data_dir};
use cellsymphony::engine::{self, Architecture, ClassifierConfig, EngineModel, PreparedCells};
use cellsymphony::gpu::GpuContext;
use cellsymphony::model::convert::from_engine_model;
use cellsymphony::model::ClassifierOptions;
use cellsymphony::train::{
    self, argmax_rows, export::export_fp32_and_int8, export::model_meta, predict_cells,
    prepare_crop, stratified_split, CellInputs, CheckpointOptions, ClassificationReport,
    EpochStats, LabelOptions, LabelledSplit, PreparedCrop, Rows, TrainConfig, TrainProgress,
};

mod anyhow_lite {
    //! Minimal error plumbing for the binary: any error becomes a message with context.
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;
    pub trait Context<T> {
        fn context(self, what: impl FnOnce() -> String) -> Result<T>;
    }
    impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
        fn context(self, what: impl FnOnce() -> String) -> Result<T> {
            self.map_err(|e| format!("{}: {e}", what()).into())
        }
    }
}

#[derive(Parser)]
#[command(name = "cellsymphony", version, about = "Multimodal single-cell classification for spatial transcriptomics (native training, int8 WGSL inference).")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Label the crop's cells against the reference (SingleR-style) and print the label counts.
    Label(LabelArgs),
    /// Train the gene-only classifier; writes fp32 and int8 safetensors.
    Train(TrainArgs),
    /// Per-class precision/recall/F1 of a model on its held-out 20% of cells.
    Eval(EvalArgs),
    /// Convert an fp32 model file to int8 (per-output-channel symmetric).
    Export(ExportArgs),
    /// Classify every cell with the int8 engine (WGSL on GPU, or CPU) and write predictions.
    Classify(ClassifyArgs),
    /// The main job: label → train → eval → export → classify → report + web demo bundle.
    Pipeline(PipelineArgs),
    /// Pair control and target cell states by entropic OT (PCA + log-domain Sinkhorn) and
    /// write the pairs and the Δg signature.
    Pair(PairArgs),
    /// Train all four classifiers (gene-only, spatial, dual-modality, multi-input) and a
    /// logistic-regression baseline on one stratified split; write per-class tables (CSV +
    /// Markdown), confusion-matrix PNGs, the models and summary.md.
    Benchmark(BenchmarkArgs),
    /// Contrastive alignment of expression and morphology (two projection nets to 128-d,
    /// bidirectional InfoNCE), then k-means clusters of the morphology projections, UMAP,
    /// cell-type enrichment and figures (PNGs; a layer for the web demo with --www).
    Align(AlignArgs),
    /// Show what a Xenium output folder holds and which file provides each part.
    Inspect(InspectArgs),
}

#[derive(Args)]
struct InspectArgs {
    /// The Xenium output folder.
    dir: PathBuf,
    /// Also read the matrix and report its size.
    #[arg(long)]
    read: bool,
}

#[derive(Args)]
struct AlignArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Output folder (figures, clusters.csv, summary.md, model.safetensors).
    #[arg(long, default_value = "runs/align")]
    out: PathBuf,
    /// Training epochs.
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Cells per batch (InfoNCE negatives).
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    /// InfoNCE temperature.
    #[arg(long, default_value_t = 0.1)]
    temperature: f64,
    /// Width of the shared space.
    #[arg(long, default_value_t = 128)]
    projection_dim: usize,
    /// k-means clusters of the morphology projections.
    #[arg(long, default_value_t = 8)]
    clusters: usize,
    /// Seed of split, batches, initialisation, k-means and UMAP.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Patch side in pixels (nucleus-centred DAPI crop).
    #[arg(long, default_value_t = 32)]
    patch_px: usize,
    /// Patch resolution in µm per pixel.
    #[arg(long, default_value_t = 0.75)]
    patch_um_per_px: f32,
    /// ViT patch size in pixels.
    #[arg(long, default_value_t = 8)]
    vit_patch: usize,
    /// ViT token width (also the morphology embedding width).
    #[arg(long, default_value_t = 64)]
    d_model: usize,
    /// Also write the alignment layer (alignment.json) into this web-demo data folder.
    #[arg(long)]
    www: Option<PathBuf>,
}


#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum OtEngine {
    /// Plain Rust on CPU threads.
    Cpu,
    /// WGSL kernels through wgpu (lavapipe without a GPU).
    Gpu,
}

#[derive(Args)]
struct PairArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Control state: a reference label of the cells (e.g. Epithelial).
    #[arg(long)]
    control: String,
    /// Target state (e.g. Malignant).
    #[arg(long)]
    target: String,
    /// Lineage of both states; default from the breast-atlas lineage map (states of different
    /// lineages are refused, as in SPATIA).
    #[arg(long)]
    lineage: Option<String>,
    /// PCA components.
    #[arg(long, default_value_t = 50)]
    pca: usize,
    /// Entropic regularisation ε (relative to the largest cost).
    #[arg(long, default_value_t = 0.05)]
    epsilon: f32,
    /// Squared Euclidean cost instead of Euclidean.
    #[arg(long)]
    squared: bool,
    /// Anneal ε from 1 down to --epsilon (faster for small ε).
    #[arg(long)]
    epsilon_scaling: bool,
    /// Marginal-error tolerance (L1).
    #[arg(long, default_value_t = 1e-5)]
    tolerance: f32,
    /// Iteration cap.
    #[arg(long, default_value_t = 1000)]
    max_iterations: usize,
    /// θ_min: minimum cells per state.
    #[arg(long, default_value_t = 50)]
    min_cells: usize,
    /// Add λ·distance(µm) to the cost (cost units per µm).
    #[arg(long)]
    spatial_lambda: Option<f32>,
    /// Engine.
    #[arg(long, value_enum, default_value_t = OtEngine::Gpu)]
    engine: OtEngine,
    /// Output folder for pairs.csv and signature.csv.
    #[arg(long, default_value = "runs/pairing")]
    out: PathBuf,
    /// Genes listed up and down in signature.csv.
    #[arg(long, default_value_t = 20)]
    top: usize,
}

#[derive(Args, Clone)]
struct DataArgs {
    /// Unpacked bidcell data folder (scripts/fetch_data.sh); default $CELLSYMPHONY_DATA or ~/.cache/cellsymphony/bidcell-1.0.3.
    #[arg(long)]
    data: Option<PathBuf>,
    /// A Xenium output folder to read instead of the example crop (any XOA layout: MEX or
    /// cell_feature_matrix.h5, cells.parquet/csv.gz, transcripts.parquet/csv.gz); genes-only
    /// commands (label, train, eval, classify, benchmark, align; patches from its DAPI image).
    /// See `cellsymphony inspect`.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Reference CSV for the SingleR-style labels (genes × profiles with a `cell_type`
    /// column); default the example's sc_breast.csv.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Cells with fewer transcripts are excluded.
    #[arg(long, default_value_t = 10.0)]
    min_counts: f32,
    /// Classes with fewer labelled cells are excluded.
    #[arg(long, default_value_t = 10)]
    min_class_cells: usize,
    /// Minimum score margin (best − second reference label) for a confident label.
    #[arg(long)]
    min_margin: Option<f32>,
}

impl DataArgs {
    fn dir(&self) -> PathBuf {
        self.data.clone().unwrap_or_else(default_data_dir)
    }
    fn options(&self) -> LabelOptions {
        let mut o = LabelOptions { min_counts: self.min_counts, min_class_cells: self.min_class_cells, ..Default::default() };
        if let Some(m) = self.min_margin {
            o.singler.min_margin = m;
        }
        o
    }
    fn prepare(&self) -> Result<PreparedCrop> {
        let dir = self.dir();
        let t = Instant::now();
        let crop = match &self.bundle {
            Some(bundle) => {
                let reference = match &self.reference {
                    Some(r) => r.clone(),
                    None => data::BidcellData::locate(&dir)?.reference,
                };
                train::dataset::prepare_bundle(bundle, &reference, &self.options())
                    .context(|| format!("preparing data in {}", bundle.display()))?
            }
            None => prepare_crop(&dir, &self.options()).context(|| format!("preparing data in {}", dir.display()))?,
        };
        print_labels(&crop);
        eprintln!("data read and labelled in {:.2} s", t.elapsed().as_secs_f64());
        Ok(crop)
    }
}

#[derive(Args)]
struct LabelArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Write `cell_id,label,best,delta` CSV here.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum TrainBackend {
    /// burn ndarray on the CPU.
    Ndarray,
    /// burn wgpu (needs `--features wgpu-backend`).
    Wgpu,
    /// burn CUDA (needs `--features cuda` and an NVIDIA GPU).
    Cuda,
}

/// Optimisation and architecture flags shared by `train`, `pipeline` and `benchmark`
/// (defaults: the CellSymphony paper's optimiser settings).
#[derive(Args, Clone)]
struct TrainingFlags {
    /// Training epochs (paper: 20).
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// AdamW learning rate (paper: 3e-5).
    #[arg(long, default_value_t = 3e-5)]
    lr: f64,
    /// Batch size (paper: 64).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// AdamW weight decay (paper: 0.01).
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f32,
    /// Seed for the split, initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Held-out fraction (paper: 0.2).
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// Shared token width.
    #[arg(long, default_value_t = 64)]
    d_model: usize,
    /// Encoder layers (paper: 6).
    #[arg(long, default_value_t = 6)]
    layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Feed-forward width.
    #[arg(long, default_value_t = 128)]
    d_ff: usize,
    /// Tokens the gene embedding is split into (1 = the paper's single gene token).
    #[arg(long, default_value_t = 4)]
    gene_tokens: usize,
    /// Dropout while training.
    #[arg(long, default_value_t = 0.1)]
    dropout: f64,
    /// Turn off inverse-frequency class weights in the loss.
    #[arg(long)]
    no_class_weights: bool,
}

impl TrainingFlags {
    fn train_config(&self) -> TrainConfig {
        TrainConfig {
            learning_rate: self.lr,
            batch_size: self.batch_size,
            weight_decay: self.weight_decay,
            epochs: self.epochs,
            seed: self.seed,
            class_weighted: !self.no_class_weights,
        }
    }

    /// The width/depth part of the spec (`n_genes`, `n_classes` and token sources unset).
    fn architecture(&self) -> ClassifierConfig {
        ClassifierConfig {
            d_model: self.d_model,
            n_heads: self.heads,
            d_ff: self.d_ff,
            n_layers: self.layers,
            gene_tokens: self.gene_tokens,
            ..ClassifierConfig::default()
        }
    }
}

#[derive(Args, Clone)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Output folder for model.safetensors, model.int8.safetensors and checkpoint.bin.
    #[arg(long, default_value = "runs/gene_only")]
    out: PathBuf,
    #[command(flatten)]
    training: TrainingFlags,
    /// Continue from <DIR>/checkpoint.bin (an earlier --out) up to --epochs.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// burn backend.
    #[arg(long, value_enum, default_value_t = TrainBackend::Ndarray)]
    backend: TrainBackend,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Model file (fp32 runs through burn; int8 through the chosen engine).
    #[arg(long, default_value = "runs/gene_only/model.safetensors")]
    model: PathBuf,
    /// Engine for the evaluation.
    #[arg(long, value_enum, default_value_t = Engine::Burn)]
    engine: Engine,
    /// Write the per-class table as CSV here.
    #[arg(long)]
    csv: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum Engine {
    /// burn fp32 (ndarray, CPU).
    Burn,
    /// Plain-Rust CPU engine (same ops as the WGSL references).
    Cpu,
    /// WGSL kernels through wgpu (Vulkan/GL; lavapipe without a GPU).
    Gpu,
}

#[derive(Args)]
struct ExportArgs {
    /// fp32 model file.
    #[arg(long, default_value = "runs/gene_only/model.safetensors")]
    model: PathBuf,
    /// int8 output file.
    #[arg(long, default_value = "runs/gene_only/model.int8.safetensors")]
    out: PathBuf,
}

#[derive(Args)]
struct ClassifyArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Model file (int8 recommended).
    #[arg(long, default_value = "runs/gene_only/model.int8.safetensors")]
    model: PathBuf,
    /// Engine.
    #[arg(long, value_enum, default_value_t = Engine::Gpu)]
    engine: Engine,
    /// Predictions CSV (`cell_id,x_um,y_um,predicted,confidence,reference_label`).
    #[arg(long, default_value = "runs/gene_only/predictions.csv")]
    out: PathBuf,
    /// Also write the web-demo bundle (model, counts, centroids, DAPI PNG) to this folder.
    #[arg(long)]
    www: Option<PathBuf>,
    /// Also write the predictions as an AnnData file (obs: predicted (categorical),
    /// confidence; obsm['spatial']) readable by scanpy / anndata.
    #[arg(long)]
    h5ad: Option<PathBuf>,
    /// For a model with a morphology token: also write the nucleus-centred DAPI patches it
    /// read, f32 little-endian `[cells, S, S]` in the predictions' cell order (the web demo
    /// passes them to `classify`).
    #[arg(long)]
    patches_out: Option<PathBuf>,
}

#[derive(Args)]
struct BenchmarkArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Benchmark on an AnnData .h5ad with expert labels instead of the Xenium crop (gene-only
    /// model + baseline), e.g. scanpy's pbmc68k_reduced (see scripts/fetch_data.sh).
    #[arg(long)]
    h5ad: Option<PathBuf>,
    /// obs column of --h5ad holding the expert labels.
    #[arg(long, default_value = "bulk_labels")]
    label_key: String,
    /// Output folder (tables, PNGs, models, checkpoints, summary.md).
    #[arg(long, default_value = "runs/benchmark")]
    out: PathBuf,
    #[command(flatten)]
    training: TrainingFlags,
    /// Morphology patch side in pixels (paper: 224).
    #[arg(long, default_value_t = 32)]
    patch_px: usize,
    /// Morphology patch pixel size in µm (paper: 0.5).
    #[arg(long, default_value_t = 0.75)]
    patch_um_per_px: f32,
    /// ViT patch side in pixels (must divide --patch-px).
    #[arg(long, default_value_t = 8)]
    vit_patch: usize,
    /// ViT width.
    #[arg(long, default_value_t = 64)]
    vit_width: usize,
    /// ViT block whose tokens form the cell embedding (blocks after it are not built).
    #[arg(long, default_value_t = 2)]
    vit_feature_layer: usize,
    /// Tokens nearest the patch centre averaged into the cell embedding.
    #[arg(long, default_value_t = 4)]
    k_nearest: usize,
    /// Classifiers to train, comma-separated: gene-only, spatial, dual-modality, multi-input
    /// (default all four).
    #[arg(long, value_delimiter = ',', value_parser = parse_architecture)]
    models: Vec<Architecture>,
    /// Logistic-regression inverse L2 strength C.
    #[arg(long, default_value_t = 1.0)]
    logreg_c: f64,
    /// Logistic-regression gradient iterations.
    #[arg(long, default_value_t = 500)]
    logreg_iterations: usize,
    /// Precomputed gene embedding [cells, d] (.npy or .safetensors) for the multimodal models.
    #[arg(long)]
    gene_embedding: Option<PathBuf>,
    /// Precomputed image embedding [cells, d] (.npy or .safetensors, e.g. UNI2) replacing the patch ViT.
    #[arg(long)]
    morph_embedding: Option<PathBuf>,
    /// Resume each model from <DIR>/<model>/checkpoint.bin (an earlier --out) and train up to --epochs.
    #[arg(long)]
    resume: Option<PathBuf>,
}

#[derive(Args)]
struct PipelineArgs {
    #[command(flatten)]
    train: TrainArgs,
    /// Web-demo bundle folder.
    #[arg(long, default_value = "www/data")]
    www: PathBuf,
}

fn parse_architecture(s: &str) -> std::result::Result<Architecture, String> {
    s.parse()
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Label(a) => cmd_label(a),
        Command::Train(a) => cmd_train(a).map(|_| ()),
        Command::Eval(a) => cmd_eval(a),
        Command::Export(a) => cmd_export(a),
        Command::Classify(a) => cmd_classify(a).map(|_| ()),
        Command::Pipeline(a) => cmd_pipeline(a),
        Command::Pair(a) => cmd_pair(a),
        Command::Benchmark(a) => cmd_benchmark(a),
        Command::Align(a) => cmd_align(a),
        Command::Inspect(a) => cmd_inspect(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn print_labels(crop: &PreparedCrop) {
    let s = &crop.summary;
    println!("Reference labels (SingleR-style Spearman correlation to sc_breast.csv; no expert labels exist for this crop):");
    println!("  cells read: {}   low counts (excluded): {}   ambiguous (excluded): {}", s.cells, s.low_counts, s.ambiguous);
    for (name, n) in &s.class_counts {
        println!("  {name:<16} {n:>5}");
    }
    for (name, n) in &s.rare_classes {
        println!("  {name:<16} {n:>5}  (excluded: fewer than the minimum cells per class)");
    }
}

fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn cmd_label(a: LabelArgs) -> Result<()> {
    let crop = a.data.prepare()?;
    if let Some(out) = a.out {
        let mut s = String::from("cell_id,label,best,delta\n");
        for i in 0..crop.table.n_cells() {
            let label = crop.labels[i].map(|c| crop.class_names[c as usize].as_str()).unwrap_or("");
            s += &format!("{},{},{},{:.4}\n", crop.table.cell_ids[i], label, crop.annotation.best[i], crop.annotation.delta[i]);
        }
        write_file(&out, s)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

struct BarProgress {
    bar: ProgressBar,
    epochs: usize,
}

impl TrainProgress for BarProgress {
    fn batch(&mut self, epoch: usize, batch: usize, n_batches: usize, loss: f64) {
        if batch == 1 {
            self.bar.set_length(n_batches as u64);
            self.bar.set_position(0);
        }
        self.bar.set_message(format!("epoch {epoch}/{} loss {loss:.4}", self.epochs));
        self.bar.inc(1);
    }
    fn epoch(&mut self, s: &EpochStats) {
        let line = format!(
            "epoch {:>3}  train loss {:.4}  held-out macro-F1 {:.3}  accuracy {:.3}  ({:.1} s)",
            s.epoch, s.train_loss, s.test_macro_f1, s.test_accuracy, s.seconds
        );
        // The bar is hidden when stdout is not a terminal (CI, logs): print plainly then.
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

/// What training produced.
struct Trained {
    crop: PreparedCrop,
    test_idx: Vec<usize>,
    fp32: EngineModel,
    files: train::export::ExportedFiles,
    history: Vec<EpochStats>,
    train_seconds: f64,
}

fn cmd_train(a: TrainArgs) -> Result<Trained> {
    match a.backend {
        TrainBackend::Ndarray => {
            train_on::<burn::backend::Autodiff<burn::backend::NdArray>>(&a, &Default::default())
        }
        #[cfg(feature = "wgpu-backend")]
        TrainBackend::Wgpu => {
            train_on::<burn::backend::Autodiff<burn::backend::Wgpu>>(&a, &Default::default())
        }
        #[cfg(feature = "cuda")]
        TrainBackend::Cuda => {
            cuda_driver_present()?;
            train_on::<burn::backend::Autodiff<burn::backend::Cuda>>(&a, &Default::default())
        }
        #[allow(unreachable_patterns)]
        other => Err(format!(
            "backend {other:?} is not compiled in: rebuild with `--features {}`",
            if other == TrainBackend::Wgpu { "wgpu-backend" } else { "cuda" }
        )
        .into()),
    }
}

/// burn's CUDA backend panics on a worker thread when the NVIDIA driver library is missing;
/// look for it first so the user gets an error that says what to do.
#[cfg(feature = "cuda")]
fn cuda_driver_present() -> Result<()> {
    let in_ld_cache = std::process::Command::new("ldconfig")
        .arg("-p")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("libcuda.so"))
        .unwrap_or(false);
    let in_ld_path = std::env::var("LD_LIBRARY_PATH").unwrap_or_default().split(':').any(|dir| {
        std::fs::read_dir(dir).map_or(false, |entries| {
            entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("libcuda.so"))
        })
    });
    if in_ld_cache || in_ld_path {
        Ok(())
    } else {
        Err("--backend cuda: no NVIDIA driver library (libcuda.so) found in the linker cache or LD_LIBRARY_PATH; install the NVIDIA driver, or train with --backend ndarray".into())
    }
}

fn train_on<B: AutodiffBackend>(a: &TrainArgs, device: &B::Device) -> Result<Trained> {
    let crop = a.data.prepare()?;
    let t = &a.training;
    let labels: Vec<u32> = crop.labels.iter().map(|l| l.unwrap_or(0)).collect();
    let (train_idx, test_idx) = stratified_split(&crop.labels, t.test_fraction, t.seed);
    let n_classes = crop.class_names.len();
    if train_idx.len() < 20 || n_classes < 2 {
        return Err(train::TrainError::TooFewCells { found: train_idx.len() + test_idx.len(), classes: n_classes, needed: 25 }.into());
    }
    let g = crop.table.n_genes();
    let spec = ClassifierConfig { n_genes: g, n_classes, ..t.architecture() };
    let options = ClassifierOptions::new(spec).with_dropout(t.dropout);
    options.spec.validate()?;
    let config = t.train_config();
    println!(
        "training gene-only transformer ({} layers, d_model {}, {} gene tokens) on {} cells, held out {} ({} classes), backend {:?}",
        t.layers, t.d_model, t.gene_tokens, train_idx.len(), test_idx.len(), n_classes, a.backend
    );
    let inputs = CellInputs::genes(&crop.x_norm, g);
    let split = LabelledSplit { labels: &labels, n_classes, train: &train_idx, test: &test_idx };
    let checkpoint = CheckpointOptions { dir: Some(a.out.clone()), resume: a.resume.clone() };
    let bar = ProgressBar::new(1).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} batches  {msg}").expect("valid template"),
    );
    let mut progress = BarProgress { bar, epochs: t.epochs };
    let started = Instant::now();
    let trained = train::train_classifier::<B>(&options, &config, &inputs, &split, &crop.class_names, &checkpoint, device, &mut progress)?;
    progress.bar.finish_and_clear();
    let train_seconds = started.elapsed().as_secs_f64();
    let history = trained.history;
    let training = serde_json::json!({
        "labels_from": "SingleR-style Spearman correlation to bidcell sc_breast.csv reference (no expert labels)",
        "backend": format!("{:?}", a.backend),
        "train_config": config,
        "dropout": t.dropout,
        "split": {"kind": "stratified", "test_fraction": t.test_fraction, "seed": t.seed},
        "test_cell_ids": test_idx.iter().map(|&i| crop.table.cell_ids[i].clone()).collect::<Vec<_>>(),
        "label_summary": crop.summary,
        "history": history,
        "train_seconds": train_seconds,
        "final": history.last(),
    });
    let model = trained.model.valid();
    let meta = model_meta(&model, &crop.table.genes, &crop.class_names, crop.normalisation.clone(), training);
    let (fp32, files) = export_fp32_and_int8(&model, meta, &a.out)?;
    println!(
        "trained in {:.1} s; wrote {} and {}",
        train_seconds,
        files.fp32.display(),
        files.int8.display()
    );
    Ok(Trained { crop, test_idx, fp32, files, history, train_seconds })
}

/// Indices of the model's held-out cells in `crop`, from the ids stored at training time.
fn held_out_indices(model: &EngineModel, path: &Path, crop: &PreparedCrop) -> Result<Vec<usize>> {
    let ids = model.meta.training.get("test_cell_ids").and_then(|v| v.as_array()).ok_or_else(|| {
        train::TrainError::MissingTrainingField { path: path.display().to_string(), field: "test_cell_ids".into() }
    })?;
    let index: std::collections::HashMap<&str, usize> =
        crop.table.cell_ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let id = id.as_str().unwrap_or_default();
        let i = *index.get(id).ok_or_else(|| format!("held-out cell `{id}` stored in {} is not in this dataset: evaluate on the data the model was trained on", path.display()))?;
        out.push(i);
    }
    Ok(out)
}

/// The process's GPU context, created on first use and shared by every later GPU step
/// (the pipeline evaluates, checks parity and classifies on one device).
fn gpu_context() -> Result<Arc<GpuContext>> {
    static CTX: std::sync::OnceLock<Arc<GpuContext>> = std::sync::OnceLock::new();
    if let Some(ctx) = CTX.get() {
        return Ok(Arc::clone(ctx));
    }
    let ctx = Arc::new(pollster::block_on(GpuContext::new()).context(|| "creating the GPU context".to_string())?);
    Ok(Arc::clone(CTX.get_or_init(|| ctx)))
}

/// A dataset's cells as a model reads them: the engine's prepared input (`x` `[cells,
/// n_inputs]`: genes in the model's order, normalised as the model file records, then the
/// centroid features; patches `[cells, S, S]` for a morphology model) and the centroids
/// `[cells, 2]` µm that burn's spatial encoder reads.
struct CellData {
    cells: PreparedCells<'static>,
    centroids: Vec<f32>,
}

/// Logits `[idx.len(), classes]` of `model` on cells `idx` of `data`.
fn engine_logits(model: &EngineModel, data: &CellData, idx: &[usize], engine: Engine) -> Result<(Vec<f32>, String)> {
    let clf = match engine {
        Engine::Burn => {
            type Cpu = burn::backend::NdArray;
            let device = Default::default();
            let c = &model.meta.config;
            let m = from_engine_model::<Cpu>(model, 0.0, &device)?;
            // burn computes the centroid sinusoid itself: give it the genes block of `x`.
            let width = c.n_inputs();
            let genes: Vec<f32> = data.cells.x.chunks(width).flat_map(|row| row[..c.n_genes].iter().copied()).collect();
            let pixels = c.morphology.as_ref().map_or(0, |m| m.pixels());
            let inputs = CellInputs {
                n_cells: data.cells.n_cells,
                genes: Some(Rows { data: &genes, cols: c.n_genes }),
                gene_embedding: None,
                patches: data.cells.patches.as_deref().map(|p| Rows { data: p, cols: pixels }),
                morph_embedding: None,
                centroids_um: Some(Rows { data: &data.centroids, cols: 2 }),
            };
            inputs.check(&m.inputs())?;
            return Ok((predict_cells(&m, &inputs, idx, 512, &device), "burn fp32 (ndarray, CPU)".into()));
        }
        Engine::Cpu => engine::Classifier::cpu(model.clone())?,
        Engine::Gpu => engine::Classifier::gpu(model.clone(), gpu_context()?).context(|| "uploading the model to the GPU".to_string())?,
    };
    let cells = data.cells.select(idx)?;
    let logits = pollster::block_on(clf.logits(&cells)).context(|| format!("running the {}", clf.engine_name()))?;
    Ok((logits, clf.engine_name()))
}

/// The crop's cells through the engine's `prepare` (see [`CellData`]), with the
/// nucleus-centred DAPI patches at the model's µm/px for a morphology model.
fn model_inputs(model: &EngineModel, crop: &PreparedCrop) -> Result<CellData> {
    let patches = match &model.meta.config.morphology {
        Some(m) => Some((cellsymphony::train::benchmark::crop_patches(crop, m.image_size, m.um_per_px as f32)?, m.image_size)),
        None => None,
    };
    let centroids: Vec<f32> = crop.table.centroids_um.iter().flatten().copied().collect();
    let input = cellsymphony::data::CellInput {
        counts: cellsymphony::data::CountsInput::Dense { values: &crop.table.counts, n_cells: crop.table.n_cells(), n_genes: crop.table.genes.len() },
        genes: &crop.table.genes,
        centroids_um: Some(&centroids),
        patches: patches.as_ref().map(|(pixels, size)| cellsymphony::data::PatchInput { pixels, size: *size }),
    };
    let cells = model.prepare(input)?.into_owned();
    Ok(CellData { cells, centroids })
}

fn evaluate(model: &EngineModel, path: &Path, crop: &PreparedCrop, engine: Engine) -> Result<(ClassificationReport, String)> {
    let test_idx = held_out_indices(model, path, crop)?;
    let data = model_inputs(model, crop)?;
    let (logits, engine_name) = engine_logits(model, &data, &test_idx, engine)?;
    let pred = argmax_rows(&logits, model.meta.classes.len());
    let mut truth = Vec::with_capacity(test_idx.len());
    for &i in &test_idx {
        let label = crop.labels[i].map(|c| &crop.class_names[c as usize]);
        let k = label.and_then(|l| model.meta.classes.iter().position(|c| c == l)).ok_or_else(|| {
            format!("held-out cell {} has no label among the model's classes with these labelling options", crop.table.cell_ids[i])
        })?;
        truth.push(k as u32);
    }
    Ok((ClassificationReport::new(&truth, &pred, &model.meta.classes), engine_name))
}

fn cmd_eval(a: EvalArgs) -> Result<()> {
    let model = EngineModel::load(&a.model)?;
    let crop = a.data.prepare()?;
    let (report, engine_name) = evaluate(&model, &a.model, &crop, a.engine)?;
    println!("Held-out evaluation of {} with {engine_name}:\n{}", a.model.display(), report.to_table());
    if let Some(csv) = a.csv {
        write_file(&csv, report.to_csv())?;
        println!("wrote {}", csv.display());
    }
    Ok(())
}

fn cmd_export(a: ExportArgs) -> Result<()> {
    let model = EngineModel::load(&a.model)?;
    let q = model.quantize_int8();
    q.save_atomic(&a.out)?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!(
        "wrote {} ({} bytes; fp32 file {} bytes)",
        a.out.display(),
        size(&a.out),
        size(&a.model)
    );
    Ok(())
}

struct Classified {
    pred: Vec<u32>,
    logits: Vec<f32>,
    engine_name: String,
    seconds: f64,
}

fn softmax_max(row: &[f32]) -> f32 {
    let m = row.iter().cloned().fold(f32::MIN, f32::max);
    let s: f32 = row.iter().map(|v| (v - m).exp()).sum();
    1.0 / s
}

fn classify_crop(model: &EngineModel, crop: &PreparedCrop, engine: Engine, patches_out: Option<&Path>) -> Result<Classified> {
    let data = model_inputs(model, crop)?;
    if let (Some(path), Some(p)) = (patches_out, &data.cells.patches) {
        write_file(path, p.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())?;
        println!("wrote the {} cells' patches the model reads to {}", crop.table.n_cells(), path.display());
    }
    let t = Instant::now();
    let all: Vec<usize> = (0..crop.table.n_cells()).collect();
    let (logits, engine_name) = engine_logits(model, &data, &all, engine)?;
    let seconds = t.elapsed().as_secs_f64();
    Ok(Classified { pred: argmax_rows(&logits, model.meta.classes.len()), logits, engine_name, seconds })
}

fn write_predictions(path: &Path, model: &EngineModel, crop: &PreparedCrop, c: &Classified) -> Result<()> {
    let k = model.meta.classes.len();
    let mut s = String::from("cell_id,x_um,y_um,predicted,confidence,reference_label\n");
    for i in 0..crop.table.n_cells() {
        let [x, y] = crop.table.centroids_um[i];
        let reference = crop.labels[i].map(|c| crop.class_names[c as usize].as_str()).unwrap_or("");
        s += &format!(
            "{},{x:.2},{y:.2},{},{:.4},{reference}\n",
            crop.table.cell_ids[i],
            model.meta.classes[c.pred[i] as usize],
            softmax_max(&c.logits[i * k..(i + 1) * k])
        );
    }
    write_file(path, s)
}

/// Web-demo bundle: the int8 model, raw counts, cell table, DAPI PNG and native predictions.
fn write_www_bundle(dir: &Path, data_dir: &Path, model_path: &Path, model: &EngineModel, crop: &PreparedCrop, native: &Classified) -> Result<()> {
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let bytes = std::fs::read(model_path).context(|| format!("reading {}", model_path.display()))?;
    write_file(&dir.join("model.int8.safetensors"), bytes)?;
    let counts: Vec<u8> = crop.table.counts.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_file(&dir.join("counts.f32"), counts)?;
    // The same cells as Xenium files (MEX matrix + cells.csv, gzipped): the browser test reads
    // them with readXeniumMex / readXeniumCells, like files a user drops into the page.
    data::write_mex_dir(&crop.table, &dir.join("mex"), true)?;
    data::write_cells_csv(&crop.table, &dir.join("cells.csv.gz"), true)?;
    let image_path = data::BidcellData::locate(data_dir)?.morphology;
    let image = data::read_tiff_gray16(&image_path)?;
    let frame = data::XENIUM_CROP_FRAME;
    let factor = 2usize;
    let stretch = data::downsample_to_png(&image, factor, &dir.join("dapi.png"))?;
    let json = serde_json::json!({
        "dataset": "Xenium FFPE Human Breast Cancer Rep1 crop (bidcell 1.0.3)",
        "labels_from": "SingleR-style reference correlation (no expert labels)",
        "genes": crop.table.genes,
        "cell_ids": crop.table.cell_ids,
        "n_cells": crop.table.n_cells(),
        "centroids_um": crop.table.centroids_um,
        "reference_labels": crop.labels.iter().map(|l| l.map(|c| crop.class_names[c as usize].clone())).collect::<Vec<_>>(),
        "classes": model.meta.classes,
        "native_predictions": native.pred,
        "native_engine": native.engine_name,
        "image": {
            "file": "dapi.png",
            "width": image.width / factor,
            "height": image.height / factor,
            "um_per_px": frame.um_per_px * factor as f32,
            "origin_um": frame.origin_um,
            "stretch": stretch,
        },
    });
    write_file(&dir.join("cells.json"), serde_json::to_string(&json).expect("json"))?;
    println!("wrote web-demo bundle to {}", dir.display());
    Ok(())
}

fn cmd_classify(a: ClassifyArgs) -> Result<Classified> {
    let model = EngineModel::load(&a.model)?;
    let crop = a.data.prepare()?;
    if a.patches_out.is_some() && model.meta.config.morphology.is_none() {
        return Err(format!("--patches-out: the {} model reads no patches", model.meta.architecture).into());
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
    write_predictions(&a.out, &model, &crop, &c)?;
    println!("wrote {}", a.out.display());
    if let Some(path) = &a.h5ad {
        let k = model.meta.classes.len();
        let p = data::Predictions {
            cell_ids: crop.table.cell_ids.clone(),
            predicted: c.pred.iter().map(|&i| model.meta.classes[i as usize].clone()).collect(),
            confidence: c.logits.chunks(k).map(softmax_max).collect(),
            centroids_um: Some(crop.table.centroids_um.clone()),
        };
        data::write_predictions_h5ad(path, &p)?;
        println!("wrote {}", path.display());
    }
    if let Some(www) = &a.www {
        write_www_bundle(www, &a.data.dir(), &a.model, &model, &crop, &c)?;
    }
    Ok(c)
}

fn print_prediction_counts(model: &EngineModel, pred: &[u32]) {
    let mut counts = vec![0usize; model.meta.classes.len()];
    for &p in pred {
        counts[p as usize] += 1;
    }
    for (name, n) in model.meta.classes.iter().zip(counts) {
        println!("  {name:<16} {n:>5}");
    }
}

/// Side of the nucleus-centred DAPI patches (px) and their resolution (µm/px).
const PATCH_PX: usize = 48;
const PATCH_UM_PER_PX: f32 = 0.5;

/// Check the transcript ↔ DAPI alignment, extract nucleus-centred patches for every cell and
/// write a mosaic of the first 64 (`patches.png`). Returns a Markdown section for the report.
fn morphology_section(data_dir: &Path, crop: &PreparedCrop, out: &Path) -> Result<String> {
    let files = data::BidcellData::locate(data_dir)?;
    let transcripts = data::read_transcripts(&files.transcripts, &data::TranscriptOptions::default())?;
    let image = data::read_tiff_gray16(&files.morphology)?;
    let frame = data::XENIUM_CROP_FRAME;
    let report = data::check_alignment(&transcripts, &image, &frame, 8);
    println!(
        "DAPI alignment: mean intensity under nucleus transcripts {:.0}, cytoplasm {:.0}, unassigned {:.0} (contrast {:.2}); best shift within ±8 px: {:?}",
        report.nucleus_mean, report.cytoplasm_mean, report.unassigned_mean, report.contrast, report.best_shift_px
    );
    let scale = data::IntensityScale::global(&image);
    let (mut kept, mut padded, mut dropped) = (0usize, 0usize, 0usize);
    let mut mosaic_patches = Vec::new();
    for i in 0..crop.table.n_cells() {
        let centre = crop.table.nucleus_centroids_um[i].unwrap_or(crop.table.centroids_um[i]);
        match data::extract_patch_scaled(&image, &frame, centre, PATCH_PX, PATCH_UM_PER_PX, data::EdgePolicy::Pad, &scale) {
            Some(p) => {
                kept += 1;
                padded += p.padded as usize;
                if mosaic_patches.len() < 64 && !p.padded {
                    mosaic_patches.push(p);
                }
            }
            None => dropped += 1,
        }
    }
    let side = 8 * PATCH_PX;
    let mut pixels = vec![0u8; side * side];
    for (k, p) in mosaic_patches.iter().enumerate() {
        let (oy, ox) = ((k / 8) * PATCH_PX, (k % 8) * PATCH_PX);
        for y in 0..PATCH_PX {
            for x in 0..PATCH_PX {
                pixels[(oy + y) * side + ox + x] = (p.pixels[y * PATCH_PX + x].clamp(0.0, 1.0) * 255.0) as u8;
            }
        }
    }
    let path = out.join("patches.png");
    let file = std::fs::File::create(&path).context(|| format!("creating {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), side as u32, side as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()
        .and_then(|mut w| w.write_image_data(&pixels))
        .context(|| format!("writing {}", path.display()))?;
    Ok(format!(
        "## Morphology (DAPI)\n\nAlignment µm → px = (µm − {:?}) / {} (pixel centres). Mean DAPI under nucleus-overlapping transcripts {:.0}, cytoplasmic {:.0}, unassigned {:.0}, image {:.0}: contrast {:.2}; the best whole-pixel shift within ±8 px is {:?}.\n\nNucleus-centred patches ({PATCH_PX}×{PATCH_PX} px at {PATCH_UM_PER_PX} µm/px, zero-padded at the image edge): {kept} cells, {padded} padded, {dropped} outside. Mosaic of 64: `{}`.\n\n",
        frame.origin_um, frame.um_per_px, report.nucleus_mean, report.cytoplasm_mean, report.unassigned_mean, report.image_mean, report.contrast, report.best_shift_px, path.display()
    ))
}

/// Share of rows with the same argmax, and the largest absolute logit difference.
fn parity(a: &[f32], b: &[f32], k: usize) -> (f64, f32) {
    let (pa, pb) = (argmax_rows(a, k), argmax_rows(b, k));
    let same = pa.iter().zip(&pb).filter(|(x, y)| x == y).count() as f64 / pa.len().max(1) as f64;
    let err = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    (same, err)
}

fn cmd_pipeline(a: PipelineArgs) -> Result<()> {
    let t_all = Instant::now();
    let trained = cmd_train(a.train.clone())?;
    let crop = &trained.crop;
    let int8 = EngineModel::load(&trained.files.int8)?;
    let mut report = String::new();
    report += "# cellsymphony report: gene-only classifier on the Xenium breast crop\n\n";
    report += "Labels come from SingleR-style Spearman correlation to the bidcell `sc_breast.csv` reference; the crop has no expert labels.\n\n";
    report += &format!("## Labels\n\ncells read {}, low counts excluded {}, ambiguous excluded {}\n\n| class | cells |\n|---|---|\n", crop.summary.cells, crop.summary.low_counts, crop.summary.ambiguous);
    for (n, c) in &crop.summary.class_counts {
        report += &format!("| {n} | {c} |\n");
    }
    for (n, c) in &crop.summary.rare_classes {
        report += &format!("| {n} (excluded, rare) | {c} |\n");
    }
    report += "\n";
    report += &morphology_section(&a.train.data.dir(), crop, &a.train.out)?;
    report += &format!("## Training\n\n{} epochs, lr {}, batch {}, weight decay {}, seed {}; {:.1} s on burn {:?}\n\n| epoch | train loss | held-out macro-F1 | accuracy |\n|---|---|---|---|\n",
        a.train.training.epochs, a.train.training.lr, a.train.training.batch_size, a.train.training.weight_decay, a.train.training.seed, trained.train_seconds, a.train.backend);
    for s in &trained.history {
        report += &format!("| {} | {:.4} | {:.3} | {:.3} |\n", s.epoch, s.train_loss, s.test_macro_f1, s.test_accuracy);
    }
    let mut engines = vec![(Engine::Burn, &trained.fp32, &trained.files.fp32), (Engine::Cpu, &int8, &trained.files.int8), (Engine::Gpu, &int8, &trained.files.int8)];
    let mut gpu_ok = true;
    report += "\n## Held-out evaluation (20%)\n\n";
    let mut reports = Vec::new();
    for (engine, model, path) in engines.drain(..) {
        match evaluate(model, path, crop, engine) {
            Ok((r, name)) => {
                println!("Held-out evaluation with {name}:\n{}", r.to_table());
                report += &format!("### {name}\n\n```\n{}```\n\n", r.to_table());
                reports.push((engine, r));
            }
            Err(e) if engine == Engine::Gpu => {
                gpu_ok = false;
                eprintln!("warning: GPU engine unavailable ({e}); using the CPU engine for the web bundle");
                report += &format!("### WGSL engine\n\nnot run: {e}\n\n");
            }
            Err(e) => return Err(e),
        }
    }
    if let Some((_, r)) = reports.first() {
        write_file(&a.train.out.join("eval_fp32.csv"), r.to_csv())?;
    }
    // Parity: fp32 burn vs the int8 engines on cells the model never saw: the labelled
    // held-out 20%, and all cells not used for training (held-out + excluded cells).
    let k = int8.meta.classes.len();
    let data = model_inputs(&int8, crop)?;
    let test_set: std::collections::HashSet<usize> = trained.test_idx.iter().copied().collect();
    let unseen: Vec<usize> = (0..crop.table.n_cells())
        .filter(|i| crop.labels[*i].is_none() || test_set.contains(i))
        .collect();
    report += "## Parity: fp32 burn model vs int8 engines\n\n| cells | comparison | same class | max abs logit error |\n|---|---|---|---|\n";
    for (set_name, idx) in [("labelled held-out", &trained.test_idx), ("all not used in training", &unseen)] {
        let (l_fp32, _) = engine_logits(&trained.fp32, &data, idx, Engine::Burn)?;
        let (l_cpu, _) = engine_logits(&int8, &data, idx, Engine::Cpu)?;
        let mut rows = vec![("burn fp32 vs int8 CPU engine", parity(&l_fp32, &l_cpu, k))];
        if gpu_ok {
            let (l_gpu, _) = engine_logits(&int8, &data, idx, Engine::Gpu)?;
            rows.push(("burn fp32 vs int8 WGSL engine", parity(&l_fp32, &l_gpu, k)));
            rows.push(("int8 CPU vs int8 WGSL engine", parity(&l_cpu, &l_gpu, k)));
        }
        for (name, (same, err)) in rows {
            println!("parity on {} {set_name} cells: {name}: same class {:.2}%, max |logit error| {err:.5}", idx.len(), 100.0 * same);
            report += &format!("| {} {set_name} | {name} | {:.2}% | {err:.5} |\n", idx.len(), 100.0 * same);
        }
    }
    let native = classify_crop(&int8, crop, if gpu_ok { Engine::Gpu } else { Engine::Cpu }, None)?;
    report += &format!("\n## Classification of all {} cells\n\n{}: {:.3} s ({:.0} cells/s)\n\n", crop.table.n_cells(), native.engine_name, native.seconds, crop.table.n_cells() as f64 / native.seconds);
    let pred_path = a.train.out.join("predictions.csv");
    write_predictions(&pred_path, &int8, crop, &native)?;
    print_prediction_counts(&int8, &native.pred);
    write_www_bundle(&a.www, &a.train.data.dir(), &trained.files.int8, &int8, crop, &native)?;
    report += &format!("Files: `{}`, `{}`, `{}`, web bundle `{}`.\n\nOpen the demo: `scripts/build_wasm.sh && python3 -m http.server -d . 8000`, then http://127.0.0.1:8000/www/ in a browser with WebGPU (Chrome/Edge; Firefox Nightly).\n\nTotal pipeline time {:.1} s.\n",
        trained.files.fp32.display(), trained.files.int8.display(), pred_path.display(), a.www.display(), t_all.elapsed().as_secs_f64());
    let report_path = a.train.out.join("report.md");
    write_file(&report_path, &report)?;
    println!("wrote {} (total {:.1} s)", report_path.display(), t_all.elapsed().as_secs_f64());
    Ok(())
}

/// Coarse lineage of the breast-atlas reference labels (SPATIA pairs states within a lineage).
fn breast_lineage(label: &str) -> String {
    match label {
        "Epithelial" | "Malignant" => "epithelial",
        "CD4Tconv/Treg" | "CD8T/CD8Tex" | "NK" => "T/NK",
        "B" | "Plasma" => "B",
        "Mono/Macro" | "DC" | "Mast" | "Neutrophils" => "myeloid",
        "Fibroblasts" | "Myofibroblasts" | "SMC" => "stromal",
        "Endothelial" => "endothelial",
        other => other,
    }
    .to_string()
}

fn cmd_pair(a: PairArgs) -> Result<()> {
    use cellsymphony::ot;
    let crop = a.data.prepare()?;
    let n = crop.table.n_cells();
    let g = crop.table.n_genes();
    let cells_of = |state: &str| -> Vec<usize> {
        (0..n).filter(|&i| crop.annotation.labels[i].as_deref() == Some(state)).collect()
    };
    let (ci, ti) = (cells_of(&a.control), cells_of(&a.target));
    for (state, idx) in [(&a.control, &ci), (&a.target, &ti)] {
        if idx.is_empty() {
            let mut names: Vec<String> = crop.annotation.summary().to_string().lines().map(str::to_string).collect();
            names.truncate(30);
            return Err(format!("no confidently labelled cells of state `{state}`; the labels are:\n{}", names.join("\n")).into());
        }
    }
    let rows = |idx: &[usize]| -> Vec<f32> { idx.iter().flat_map(|&i| crop.x_norm[i * g..(i + 1) * g].iter().copied()).collect() };
    let (xc, xt) = (rows(&ci), rows(&ti));
    let union: Vec<f32> = xc.iter().chain(&xt).copied().collect();
    let t = Instant::now();
    let (pca, coords) = ot::pca(&union, ci.len() + ti.len(), g, &ot::PcaOptions { n_components: a.pca.min(g) })?;
    let d = pca.n_components;
    let pca_seconds = t.elapsed().as_secs_f64();
    let (cc, tc) = coords.split_at(ci.len() * d);
    let ids = |idx: &[usize]| -> Vec<String> { idx.iter().map(|&i| crop.table.cell_ids[i].clone()).collect() };
    let pos = |idx: &[usize]| -> Vec<[f32; 2]> { idx.iter().map(|&i| crop.table.centroids_um[i]).collect() };
    let (ids_c, ids_t, pos_c, pos_t) = (ids(&ci), ids(&ti), pos(&ci), pos(&ti));
    let lin_c = a.lineage.clone().unwrap_or_else(|| breast_lineage(&a.control));
    let lin_t = a.lineage.clone().unwrap_or_else(|| breast_lineage(&a.target));
    let control = ot::StateCells { state: &a.control, lineage: &lin_c, ids: &ids_c, coords: cc, positions_um: Some(&pos_c) };
    let target = ot::StateCells { state: &a.target, lineage: &lin_t, ids: &ids_t, coords: tc, positions_um: Some(&pos_t) };
    let opts = ot::PairingOptions {
        sinkhorn: ot::SinkhornOptions {
            epsilon: a.epsilon,
            cost: if a.squared { ot::GroundCost::SquaredEuclidean } else { ot::GroundCost::Euclidean },
            tolerance: a.tolerance,
            max_iterations: a.max_iterations,
            epsilon_scaling: a.epsilon_scaling.then(ot::EpsilonScaling::default),
            ..Default::default()
        },
        min_cells_per_state: a.min_cells,
        spatial_lambda: a.spatial_lambda,
    };
    println!(
        "pairing {} {} cells → {} {} cells (lineage {lin_c}); PCA {g} genes → {d} components ({:.1}% variance) in {pca_seconds:.2} s",
        ci.len(), a.control, ti.len(), a.target,
        100.0 * pca.explained_variance_ratio.iter().sum::<f32>()
    );
    let ctx = match a.engine {
        OtEngine::Gpu => Some(gpu_context().map_err(|e| format!("{e} (use --engine cpu without a GPU)"))?),
        OtEngine::Cpu => None,
    };
    let engine = match &ctx {
        Some(ctx) => ot::SinkhornEngine::Gpu(ctx),
        None => ot::SinkhornEngine::Reference,
    };
    let bar = ProgressBar::new_spinner();
    let t = Instant::now();
    let pairing = pollster::block_on(ot::pair_states(&control, &target, d, &opts, engine, |it, err| {
        bar.set_message(format!("Sinkhorn iteration {it}, marginal error {err:.2e}"));
        bar.tick();
    }))?;
    bar.finish_and_clear();
    let s = &pairing.sinkhorn;
    println!(
        "Sinkhorn ({}): {} iterations, marginal error {:.2e} ({}), {:.3} s, {} dispatches",
        ctx.as_ref().map_or("CPU".to_string(), |c| format!("WGSL on {}", c.adapter_summary())),
        s.iterations, s.error, if s.converged { "converged" } else { "NOT converged: raise --max-iterations or use --epsilon-scaling" },
        t.elapsed().as_secs_f64(), s.dispatches
    );
    let sig = ot::signature(&xc, ci.len(), &xt, ti.len(), &crop.table.genes, &pairing.pairs)?;
    std::fs::create_dir_all(&a.out).context(|| format!("creating {}", a.out.display()))?;
    ot::write_pairs_csv(&a.out.join("pairs.csv"), &pairing.records)?;
    sig.write_csv(&a.out.join("signature.csv"), a.top)?;
    let mean_score = pairing.records.iter().map(|r| r.match_score).sum::<f32>() / pairing.records.len() as f32;
    let distinct: std::collections::HashSet<u32> = pairing.pairs.iter().map(|p| p.1).collect();
    println!("{} pairs, {} distinct targets, mean match score {mean_score:.3}", pairing.records.len(), distinct.len());
    let fmt = |v: Vec<ot::GeneDelta>| v.iter().map(|x| format!("{} {:+.2}", x.gene, x.delta)).collect::<Vec<_>>().join(", ");
    println!("Δg up in {}: {}", a.target, fmt(sig.top_up(10)));
    println!("Δg down in {}: {}", a.target, fmt(sig.top_down(10)));
    println!("wrote {} and {}", a.out.join("pairs.csv").display(), a.out.join("signature.csv").display());
    Ok(())
}

struct EpochLines {
    model: &'static str,
    epochs: usize,
}

impl TrainProgress for EpochLines {
    fn epoch(&mut self, s: &EpochStats) {
        println!(
            "[{:<13}] epoch {:>3}/{}  train loss {:.4}  val macro-F1 {:.3}  accuracy {:.3}  ({:.1} s)",
            self.model, s.epoch, self.epochs, s.train_loss, s.test_macro_f1, s.test_accuracy, s.seconds
        );
    }
}

fn cmd_benchmark(a: BenchmarkArgs) -> Result<()> {
    use cellsymphony::train::benchmark::{run_benchmark, BenchmarkOptions};
    let opts = BenchmarkOptions {
        data_dir: a.data.dir(),
        labels: a.data.options(),
        out: a.out.clone(),
        train: a.training.train_config(),
        test_fraction: a.training.test_fraction,
        architecture: a.training.architecture(),
        sources: engine::TokenSources {
            morphology: engine::MorphologyTokenConfig {
                image_size: a.patch_px,
                vit_patch: a.vit_patch,
                width: a.vit_width,
                n_layers: a.vit_feature_layer,
                k_nearest: a.k_nearest,
                um_per_px: a.patch_um_per_px as f64,
                ..Default::default()
            },
            ..Default::default()
        },
        dropout: a.training.dropout,
        models: if a.models.is_empty() { Architecture::ALL.to_vec() } else { a.models.clone() },
        logistic: train::logistic::LogisticOptions {
            c: a.logreg_c,
            iterations: a.logreg_iterations,
            class_weighted: false,
        },
        gene_embedding: a.gene_embedding,
        morph_embedding: a.morph_embedding,
        resume: a.resume,
        h5ad: a.h5ad,
        label_key: a.label_key,
        bundle: a.data.bundle.clone(),
        reference: a.data.reference.clone(),
    };
    let t = Instant::now();
    let device = Default::default();
    let mut factory = |kind: Architecture, epochs: usize| -> Box<dyn TrainProgress> {
        println!("training {} ...", kind.title());
        Box::new(EpochLines {
            model: kind.name(),
            epochs,
        })
    };
    let result = run_benchmark::<burn::backend::Autodiff<burn::backend::NdArray>>(
        &opts,
        &device,
        &mut factory,
    )
    .context(|| format!("benchmark on {}", opts.data_dir.display()))?;
    println!(
        "\nheld-out cells: {} (train {}); total {:.1} s",
        result.n_test,
        result.n_train,
        t.elapsed().as_secs_f64()
    );
    println!("\n| Model | macro-F1 | weighted-F1 | accuracy | mean epoch (s) |\n|---|---:|---:|---:|---:|");
    for r in &result.results {
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.2} |",
            r.title,
            r.report.macro_f1,
            r.report.weighted_f1,
            r.report.accuracy,
            r.mean_epoch_seconds
        );
    }
    println!("\n{}", result.markdown);
    println!(
        "wrote {} (summary.md, per_class.csv, confusion_*.png, models)",
        opts.out.display()
    );
    Ok(())
}

fn cmd_align(a: AlignArgs) -> Result<()> {
    use cellsymphony::model::{ContrastiveAlignerConfig, MorphologyEncoderConfig};
    use cellsymphony::train::contrastive::{
        analyse_alignment, enrichment_table, train_alignment, write_alignment_figures, AlignOptions,
        PairedInputs,
    };
    type Ad = burn::backend::Autodiff<burn::backend::NdArray>;
    let t0 = Instant::now();
    let crop = a.data.prepare()?;
    std::fs::create_dir_all(&a.out).context(|| format!("creating {}", a.out.display()))?;
    let patches = train::benchmark::crop_patches(&crop, a.patch_px, a.patch_um_per_px)?;
    let n = crop.table.n_cells();
    let g = crop.table.n_genes();
    let inputs = PairedInputs {
        n_cells: n,
        genes: &crop.x_norm,
        d_gene: g,
        morph: &patches,
        d_morph: a.patch_px * a.patch_px,
    };
    let morphology = MorphologyEncoderConfig::new()
        .with_image_size(a.patch_px)
        .with_vit_patch(a.vit_patch)
        .with_width(a.d_model)
        .with_d_model(a.d_model);
    morphology
        .check()
        .map_err(|e| format!("morphology encoder options: {e}"))?;
    let config = ContrastiveAlignerConfig::new(g)
        .with_morphology(Some(morphology))
        .with_d_projection(a.projection_dim)
        .with_temperature(a.temperature);
    let options = AlignOptions {
        epochs: a.epochs,
        batch_size: a.batch_size,
        learning_rate: a.lr,
        weight_decay: a.weight_decay,
        held_out_fraction: 0.2,
        seed: a.seed,
    };
    println!(
        "contrastive alignment: {n} cells, genes {g} → {d}, {p}×{p} px DAPI patches at {u} µm/px → {d}; \
         {e} epochs, batch {b}, τ = {tau}",
        d = a.projection_dim,
        p = a.patch_px,
        u = a.patch_um_per_px,
        e = a.epochs,
        b = a.batch_size,
        tau = a.temperature
    );
    println!("| epoch | train loss | held-out loss | gene→patch top-1 | top-5 | s |\n|---:|---:|---:|---:|---:|---:|");
    let device = Default::default();
    let trained = train_alignment::<Ad>(&config, &inputs, &options, &device, |e| {
        println!(
            "| {} | {:.4} | {:.4} | {:.3} | {:.3} | {:.1} |",
            e.epoch, e.train_loss, e.held_out_loss, e.top1, e.top5, e.seconds
        );
    })?;
    let h = trained.held_out.len().max(1) as f64;
    println!("(chance: top-1 {:.3}, top-5 {:.3} over {} held-out cells)", 1.0 / h, 5.0 / h, trained.held_out.len());

    let types: Vec<Option<u32>> = crop.labels.clone();
    let analysis = analyse_alignment(&trained.z_morph, trained.dim, a.clusters, &types, &crop.class_names, a.seed)?;
    let (dapi, frame) = data::XeniumBundle::open(&crop.source)?.read_dapi(Some(0.5))?;
    let centres: Vec<[f32; 2]> = (0..n)
        .map(|i| crop.table.nucleus_centroids_um[i].unwrap_or(crop.table.centroids_um[i]))
        .collect();
    write_alignment_figures(&a.out, &analysis, &types, &dapi, &frame, &centres)?;
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
    write_file(&a.out.join("clusters.csv"), csv)?;
    let table = enrichment_table(&analysis);
    let last = trained.history.last();
    let summary = format!(
        "# Contrastive alignment (CellSymphony)\n\nData: Xenium breast crop, {n} cells; labels for \
         the enrichment are SingleR-style reference labels (no expert labels).\n\n\
         Held-out cross-modal retrieval after {} epochs ({} cells): gene→patch top-1 {:.3} \
         (chance {:.3}), top-5 {:.3} (chance {:.3}); held-out InfoNCE {:.4}.\n\n\
         k-means (k = {}) of the morphology projections vs reference cell types: ARI {:.3}.\n\n{table}\n\
         Figures: umap_clusters.png, umap_cell_types.png, spatial_clusters.png, enrichment.png.\n",
        a.epochs,
        trained.held_out.len(),
        last.map_or(f64::NAN, |e| e.top1),
        1.0 / h,
        last.map_or(f64::NAN, |e| e.top5),
        5.0 / h,
        last.map_or(f64::NAN, |e| e.held_out_loss),
        a.clusters,
        analysis.ari
    );
    write_file(&a.out.join("summary.md"), &summary)?;
    write_file(
        &a.out.join("history.json"),
        serde_json::to_string_pretty(&trained.history).expect("json"),
    )?;
    let meta = std::collections::HashMap::from([(
        "cellsymphony".to_string(),
        serde_json::json!({"architecture": "contrastive_aligner", "config": config.to_string()}).to_string(),
    )]);
    train::export::save_named_safetensors::<burn::backend::NdArray, _>(&trained.model, meta, &a.out.join("model.safetensors"))?;
    println!("\nk-means clusters of morphology projections vs reference labels: ARI {:.3}\n{table}", analysis.ari);
    if let Some(www) = &a.www {
        let layer = serde_json::json!({
            "cell_ids": crop.table.cell_ids,
            "clusters": analysis.clusters,
            "n_clusters": analysis.n_clusters,
            "umap": analysis.umap,
            "ari": analysis.ari,
            "top1": last.map(|e| e.top1),
        });
        write_file(&www.join("alignment.json"), serde_json::to_string(&layer).expect("json"))?;
        println!("wrote the alignment layer to {}", www.join("alignment.json").display());
    }
    println!("wrote {} in {:.1} s", a.out.display(), t0.elapsed().as_secs_f64());
    Ok(())
}

fn cmd_inspect(a: InspectArgs) -> Result<()> {
    let bundle = data::XeniumBundle::open(&a.dir)?;
    print!("{}", bundle.describe());
    if a.read {
        let t = Instant::now();
        let table = bundle.read_cells(&data::TranscriptOptions::default())?;
        let nnz = table.counts.iter().filter(|&&v| v != 0.0).count();
        let placed = table.centroids_um.iter().filter(|c| c[0].is_finite()).count();
        let nuclei = table.nucleus_centroids_um.iter().filter(|c| c.is_some()).count();
        println!(
            "  read:        {} cells × {} genes, {nnz} non-zero counts, {placed} with centroids, \
             {nuclei} with nucleus centroids ({:.2} s)",
            table.n_cells(),
            table.n_genes(),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
