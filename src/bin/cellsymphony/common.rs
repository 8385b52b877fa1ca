//! What several subcommands share: the data flags, the training flags, the engine choice,
//! the process's GPU context and file writing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use cellsymphony::data::{self, default_data_dir};
use cellsymphony::engine::{self, Architecture, ClassifierConfig};
use cellsymphony::gpu::{GpuContext, GpuOptions};
use cellsymphony::train::{self, prepare_crop, ClassWeighting, LabelOptions, LrSchedule, PreparedCrop, Recipe, TrainConfig};

#[derive(Args, Clone)]
pub(crate) struct DataArgs {
    /// Unpacked bidcell data folder (scripts/fetch_data.sh); default $CELLSYMPHONY_DATA or ~/.cache/cellsymphony/bidcell-1.0.3.
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// A Xenium output folder to read instead of the example crop (any XOA layout: MEX or
    /// cell_feature_matrix.h5, cells.parquet/csv.gz, transcripts.parquet/csv.gz); genes-only
    /// commands (label, train, eval, classify, benchmark, align; patches from its DAPI image).
    /// See `cellsymphony inspect`.
    #[arg(long)]
    pub(crate) bundle: Option<PathBuf>,
    /// Reference CSV for the SingleR-style labels (genes × profiles with a `cell_type`
    /// column); default the example's sc_breast.csv.
    #[arg(long)]
    pub(crate) reference: Option<PathBuf>,
    /// Cells with fewer transcripts are excluded.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) min_counts: f32,
    /// Classes with fewer labelled cells are excluded.
    #[arg(long, default_value_t = 10)]
    pub(crate) min_class_cells: usize,
    /// Minimum score margin (best − second reference label) for a confident label.
    #[arg(long)]
    pub(crate) min_margin: Option<f32>,
}

impl DataArgs {
    pub(crate) fn dir(&self) -> PathBuf {
        self.data.clone().unwrap_or_else(default_data_dir)
    }
    pub(crate) fn options(&self) -> LabelOptions {
        let mut o = LabelOptions { min_counts: self.min_counts, min_class_cells: self.min_class_cells, ..Default::default() };
        if let Some(m) = self.min_margin {
            o.singler.min_margin = m;
        }
        o
    }
    pub(crate) fn prepare(&self) -> Result<PreparedCrop> {
        self.prepare_with(&self.options())
    }
    /// [`prepare`](Self::prepare) with these label options (e.g. a model panel to check).
    pub(crate) fn prepare_with(&self, options: &LabelOptions) -> Result<PreparedCrop> {
        let dir = self.dir();
        let t = Instant::now();
        let crop = match &self.bundle {
            Some(bundle) => {
                let reference = match &self.reference {
                    Some(r) => r.clone(),
                    None => data::BidcellData::locate(&dir)?.reference,
                };
                train::dataset::prepare_bundle(bundle, &reference, options)
                    .with_context(|| format!("preparing data in {}", bundle.display()))?
            }
            None => prepare_crop(&dir, options).with_context(|| format!("preparing data in {}", dir.display()))?,
        };
        print_labels(&crop);
        eprintln!("data read and labelled in {:.2} s", t.elapsed().as_secs_f64());
        Ok(crop)
    }
}

/// The nucleus-centred DAPI patches and the ViT patch size, shared by `benchmark` and `align`
/// (the paper uses 224 px at 0.5 µm/px; the defaults train in minutes on 2 cores).
#[derive(Args, Clone)]
pub(crate) struct PatchFlags {
    /// Morphology patch side in pixels (paper: 224).
    #[arg(long, default_value_t = 32)]
    pub(crate) patch_px: usize,
    /// Morphology patch pixel size in µm (paper: 0.5).
    #[arg(long, default_value_t = 0.75)]
    pub(crate) patch_um_per_px: f32,
    /// ViT patch side in pixels (must divide --patch-px).
    #[arg(long, default_value_t = 8)]
    pub(crate) vit_patch: usize,
}

/// An AnnData file as the source of cells, for `eval` and `classify` of models trained with
/// `benchmark --h5ad`.
#[derive(Args, Clone)]
pub(crate) struct AnnDataArgs {
    /// Read the cells from an AnnData .h5ad (X as stored, labels in obs) instead of a Xenium
    /// folder; the model file says how X is transformed.
    #[arg(long)]
    pub(crate) anndata: Option<PathBuf>,
    /// obs column of --anndata holding the labels.
    #[arg(long, default_value = "bulk_labels")]
    pub(crate) anndata_labels: String,
}

impl AnnDataArgs {
    /// The cells of `--anndata` if given, else those `data` names.
    pub(crate) fn prepare_or(&self, data: &DataArgs) -> Result<PreparedCrop> {
        match &self.anndata {
            Some(path) => {
                let crop = train::dataset::prepare_h5ad(path, &self.anndata_labels, &data.options())
                    .with_context(|| format!("reading {}", path.display()))?;
                println!(
                    "{}: {} cells, {} labelled in {} classes (obs['{}'])",
                    path.display(),
                    crop.table.n_cells(),
                    crop.labels.iter().flatten().count(),
                    crop.class_names.len(),
                    self.anndata_labels
                );
                Ok(crop)
            }
            None => data.prepare(),
        }
    }
}

/// Optimisation and architecture flags shared by `train`, `pipeline` and `benchmark`.
/// `--recipe` sets the optimisation defaults; each explicit flag overrides its field.
#[derive(Args, Clone)]
pub(crate) struct TrainingFlags {
    /// Optimisation recipe: `default` (from-scratch: lr 1e-3, warmup + cosine, AdamW weight
    /// decay 0.05, sqrt-balanced class weights, label smoothing 0.1, ≤ 40 epochs with patience
    /// 10) or `paper` (lr 3e-5, constant, weight decay 0.01, balanced weights, 20 epochs).
    #[arg(long, default_value = "default", value_parser = parse_recipe)]
    pub(crate) recipe: Recipe,
    /// Training epochs (at most, with early stopping; recipe default 40, paper 20).
    #[arg(long)]
    pub(crate) epochs: Option<usize>,
    /// AdamW peak learning rate (default 1e-3, paper 3e-5).
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    /// Batch size (64).
    #[arg(long)]
    pub(crate) batch_size: Option<usize>,
    /// AdamW decoupled weight decay (default 0.05, paper 0.01).
    #[arg(long)]
    pub(crate) weight_decay: Option<f32>,
    /// Learning-rate schedule after warmup: constant or cosine (default cosine, paper constant).
    #[arg(long, value_parser = parse_schedule)]
    pub(crate) schedule: Option<LrSchedule>,
    /// Share of all steps spent in linear warmup (default 0.05, paper 0).
    #[arg(long)]
    pub(crate) warmup: Option<f64>,
    /// Label smoothing (default 0.1, paper 0).
    #[arg(long)]
    pub(crate) label_smoothing: Option<f32>,
    /// Class weights in the loss: none, balanced or sqrt-balanced (default sqrt-balanced, paper balanced).
    #[arg(long, value_parser = parse_weighting)]
    pub(crate) class_weights: Option<ClassWeighting>,
    /// Same as --class-weights none.
    #[arg(long)]
    pub(crate) no_class_weights: bool,
    /// Stop after this many epochs without a better validation macro-F1 (default 10; 0 = never;
    /// paper: never).
    #[arg(long)]
    pub(crate) patience: Option<usize>,
    /// Step budget: train max(--epochs, ⌈N / steps per epoch⌉) epochs, so small sets get at
    /// least N optimisation steps (early stopping still applies; 0 = none; recipe default: none).
    #[arg(long)]
    pub(crate) min_steps: Option<usize>,
    /// Share of the training cells carved off (stratified; spatially blocked for spatial
    /// splits) as the validation set that picks the kept epoch. 0 = keep the last epoch.
    #[arg(long, default_value_t = 0.15)]
    pub(crate) val_fraction: f64,
    /// Seed for the split, initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Held-out (test) fraction of a single split (paper: 0.2).
    #[arg(long, default_value_t = 0.2)]
    pub(crate) test_fraction: f64,
    /// Shared token width.
    #[arg(long, default_value_t = 64)]
    pub(crate) d_model: usize,
    /// Encoder layers (paper: 6).
    #[arg(long, default_value_t = 6)]
    pub(crate) layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    pub(crate) heads: usize,
    /// Feed-forward width.
    #[arg(long, default_value_t = 128)]
    pub(crate) d_ff: usize,
    /// Tokens the gene embedding is split into (1 = the paper's single gene token).
    #[arg(long, default_value_t = 4)]
    pub(crate) gene_tokens: usize,
    /// Gene encoder: `summary` (--gene-tokens summary tokens from one matmul over all genes)
    /// or `tokens` (one token per gene, FT-Transformer style; gene-only model). `benchmark`
    /// takes a comma list (`summary,tokens`) and trains the gene-only model with each.
    #[arg(long, value_delimiter = ',', default_value = "summary", value_parser = parse_gene_encoder)]
    pub(crate) gene_encoder: Vec<engine::GeneEncoderKind>,
    /// Most gene tokens (`--gene-encoder tokens`): panels up to this size use every gene,
    /// larger ones the chosen genes (computed from the training cells, recorded in the model).
    #[arg(long, default_value_t = engine::DEFAULT_MAX_GENE_TOKENS)]
    pub(crate) max_gene_tokens: usize,
    /// How a panel larger than --max-gene-tokens is cut: highly-variable or top-expressed.
    #[arg(long, default_value = "highly-variable", value_parser = parse_gene_selection)]
    pub(crate) gene_selection: engine::GeneSelection,
    /// Dropout while training.
    #[arg(long, default_value_t = 0.1)]
    pub(crate) dropout: f64,
    /// Add a linear ("wide") path beside the transformer: logits = head(encoder) + W·x on the
    /// normalised genes, zero-initialised (stored in the model file; every engine runs it).
    /// Off by default (it did not win validation macro-F1 on every set; see README).
    #[arg(long)]
    pub(crate) linear_path: bool,
}

impl TrainingFlags {
    /// The settings of `self.recipe` with the explicit flags applied.
    pub(crate) fn train_config(&self) -> TrainConfig {
        self.config_for(self.recipe)
    }

    /// The settings of `recipe` with the explicit flags applied.
    pub(crate) fn config_for(&self, recipe: Recipe) -> TrainConfig {
        let mut c = recipe.config(self.seed);
        if let Some(v) = self.epochs { c.epochs = v; }
        if let Some(v) = self.lr { c.learning_rate = v; }
        if let Some(v) = self.batch_size { c.batch_size = v; }
        if let Some(v) = self.weight_decay { c.weight_decay = v; }
        if let Some(v) = self.schedule { c.schedule = v; }
        if let Some(v) = self.warmup { c.warmup_fraction = v; }
        if let Some(v) = self.label_smoothing { c.label_smoothing = v; }
        if let Some(v) = self.class_weights { c.class_weighting = v; }
        if self.no_class_weights { c.class_weighting = ClassWeighting::None; }
        if let Some(p) = self.patience { c.patience = (p > 0).then_some(p); }
        if let Some(m) = self.min_steps { c.min_steps = (m > 0).then_some(m); }
        if self.val_fraction <= 0.0 { c.patience = None; }
        c
    }

    /// The gene encoders given (`--gene-encoder`, with the cap and selection).
    pub(crate) fn gene_encoders(&self) -> Vec<train::GeneEncoderOptions> {
        self.gene_encoder
            .iter()
            .map(|&kind| train::GeneEncoderOptions { kind, max_tokens: self.max_gene_tokens, selection: self.gene_selection })
            .collect()
    }

    /// The width/depth part of the spec (`n_genes`, `n_classes` and token sources unset).
    pub(crate) fn architecture(&self) -> ClassifierConfig {
        ClassifierConfig {
            d_model: self.d_model,
            n_heads: self.heads,
            d_ff: self.d_ff,
            n_layers: self.layers,
            gene_tokens: self.gene_tokens,
            linear_path: self.linear_path,
            ..ClassifierConfig::default()
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub(crate) enum Engine {
    /// burn fp32 (ndarray, CPU).
    Burn,
    /// Plain-Rust CPU engine (same ops as the WGSL references).
    Cpu,
    /// The CPU engine with int8 activations too (W8A8: i8×i8→i32 GEMM; int8 files only differ).
    CpuW8a8,
    /// WGSL kernels through wgpu (Vulkan/GL; lavapipe without a GPU).
    Gpu,
}

pub(crate) fn print_labels(crop: &PreparedCrop) {
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

pub(crate) fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    cellsymphony::util::write_atomic(path, bytes.as_ref())?;
    Ok(())
}

/// The GPU fast-path flags of `classify` (and every command that classifies on the GPU).
#[derive(Args, Clone, Copy, Debug, Default)]
pub(crate) struct GpuFastArgs {
    /// Open the GPU without its optional features (shader-f16, subgroups): the portable
    /// kernels only. By default they are used wherever the adapter has them.
    #[arg(long)]
    pub(crate) no_gpu_fast_paths: bool,
    /// Keep the WGSL engine's feed-forward hidden activations as f16 (needs shader-f16;
    /// logits move by ~1e-3, classes follow except on near ties). Off by default.
    #[arg(long)]
    pub(crate) gpu_f16: bool,
}

static GPU_FAST: std::sync::OnceLock<GpuFastArgs> = std::sync::OnceLock::new();

/// Records the fast-path flags for [`gpu_context`] and [`gpu_classifier`]; call before the
/// first GPU use (later calls are ignored, as is a call after the context exists).
pub(crate) fn set_gpu_fast(flags: GpuFastArgs) {
    let _ = GPU_FAST.set(flags);
}

/// The process's GPU context, created on first use and shared by every later GPU step
/// (the pipeline evaluates, checks parity and classifies on one device), with the optional
/// features [`set_gpu_fast`] allows.
pub(crate) fn gpu_context() -> Result<Arc<GpuContext>> {
    static CTX: std::sync::OnceLock<Arc<GpuContext>> = std::sync::OnceLock::new();
    if let Some(ctx) = CTX.get() {
        return Ok(Arc::clone(ctx));
    }
    let flags = GPU_FAST.get().copied().unwrap_or_default();
    let options = if flags.no_gpu_fast_paths { GpuOptions::portable() } else { GpuOptions::default() };
    let ctx = Arc::new(pollster::block_on(GpuContext::with_options(options)).with_context(|| "creating the GPU context".to_string())?);
    Ok(Arc::clone(CTX.get_or_init(|| ctx)))
}

/// `model` on the WGSL engine of [`gpu_context`], with the f16 hidden when `--gpu-f16`
/// asked for it (an error when the adapter lacks shader-f16).
pub(crate) fn gpu_classifier(model: engine::EngineModel) -> Result<engine::Classifier> {
    let mut clf = engine::Classifier::gpu(model, gpu_context()?).with_context(|| "uploading the model to the GPU".to_string())?;
    if GPU_FAST.get().is_some_and(|f| f.gpu_f16) {
        if let engine::Backend::Gpu(g) = clf.backend_mut() {
            if !g.set_f16_hidden(true) {
                anyhow::bail!("--gpu-f16: {}", g.context().fast_paths());
            }
        }
    }
    Ok(clf)
}

pub(crate) fn parse_architecture(s: &str) -> std::result::Result<Architecture, String> {
    s.parse()
}

pub(crate) fn parse_gene_encoder(s: &str) -> std::result::Result<engine::GeneEncoderKind, String> {
    s.parse()
}

pub(crate) fn parse_gene_selection(s: &str) -> std::result::Result<engine::GeneSelection, String> {
    s.parse()
}

pub(crate) fn parse_recipe(s: &str) -> std::result::Result<Recipe, String> {
    s.parse()
}

pub(crate) fn parse_weighting(s: &str) -> std::result::Result<ClassWeighting, String> {
    s.parse()
}

pub(crate) fn parse_schedule(s: &str) -> std::result::Result<LrSchedule, String> {
    match s {
        "constant" => Ok(LrSchedule::Constant),
        "cosine" => Ok(LrSchedule::Cosine),
        _ => Err(format!("unknown schedule `{s}`; use constant or cosine")),
    }
}
