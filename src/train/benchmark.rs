//! The four CellSymphony classifiers and the baselines (our logistic regression first; more
//! named per-fold predictions can be pushed, see [`baselines`]) on identical folds of the
//! Xenium crop or an AnnData file, reported as mean ± sd over folds and per class (pooled over
//! folds) in the layout of the paper's Tables 1–2.
//!
//! Splits: `folds = 1` is one stratified split holding out `test_fraction`; `folds = K ≥ 2` is
//! K-fold cross-validation (each labelled cell tested once). Every fold carves validation cells
//! from its non-test cells; models keep their best validation epoch, the test cells choose
//! nothing. [`SplitChoice::Auto`] draws folds at random (stratified) for the gene-only model and
//! as spatial grid blocks held out whole for models that read centroids or images; the
//! baselines and the gene-only model are run on every split in use, so each row has its peers
//! on the same folds.
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
use super::embeddings::{read_embeddings_for_cells, Embeddings};
use super::export::{export_fp32_and_int8, model_meta, save_named_safetensors};
use super::logistic::{LogisticOptions, LogisticRegression};
use super::metrics::ClassificationReport;
use super::plot::confusion_png;
use super::split::{make_folds, Fold, FoldPlan, SplitKind};
use super::trainer::{
    argmax_rows, train_classifier, CellInputs, CheckpointOptions, EpochStats, LabelledSplit, Rows,
    TrainConfig, TrainProgress, CHECKPOINT_FILE,
};
use super::tune::{tune_on_training_cells, TuneTrial, TUNE_SUFFIX};
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
    /// Optimisation recipes, each run on every fold (name, settings); the first is the one
    /// whose fold-0 models are exported.
    pub recipes: Vec<(String, TrainConfig)>,
    /// Held-out fraction of the single split (`folds = 1`).
    pub test_fraction: f64,
    /// 1 = one split; K ≥ 2 = K-fold cross-validation.
    pub folds: usize,
    /// Which splits the models (and the baselines) are run on.
    pub split: SplitChoice,
    /// Side of the spatial grid blocks in µm.
    pub block_um: f64,
    /// Share of each fold's training cells used for validation (epoch selection).
    pub val_fraction: f64,
    /// Seed of the folds.
    pub seed: u64,
    /// Search learning rate, then class weighting, then label smoothing on each fold's
    /// validation cells before training every recipe (see [`super::tune`]); a recipe whose name
    /// ends in [`TUNE_SUFFIX`] (`default+tune`) is tuned even without it, beside untuned ones.
    pub tune: bool,
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
    /// Gene encoders the gene-only classifier is trained with, one table row each (summary
    /// tokens and/or one token per gene, the genes chosen from each fold's training cells);
    /// the other architectures use summary tokens.
    pub gene_encoders: Vec<super::GeneEncoderOptions>,
    /// Logistic-regression baseline.
    pub logistic: LogisticOptions,
    /// Precomputed gene embedding `[cells, d]` replacing the count GEB of the multimodal models.
    pub gene_embedding: Option<PathBuf>,
    /// Precomputed image embedding `[cells, d]` replacing the patch ViT.
    pub morph_embedding: Option<PathBuf>,
    /// Cell ids of `gene_embedding`'s rows (see [`read_embeddings_for_cells`]); `None`: ids
    /// stored in the safetensors file, else rows in the cell table's order.
    pub gene_embedding_ids: Option<PathBuf>,
    /// Cell ids of `morph_embedding`'s rows, as `gene_embedding_ids`.
    pub morph_embedding_ids: Option<PathBuf>,
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
    /// Python peers (scikit-learn, CellTypist: [`super::peers`]) run on the identical folds
    /// beside our logistic regression; empty = none.
    pub peers: Vec<super::peers::Peer>,
    /// A Xenium output folder to read instead of the example crop.
    pub bundle: Option<PathBuf>,
    /// Reference CSV for the labels of `bundle` (default: the example's `sc_breast.csv`).
    pub reference: Option<PathBuf>,
    /// Whether the transformers' gene input is standardised per gene, `(x − mean) / sd`, with
    /// statistics of each fold's training cells only; recorded in the model files'
    /// normalisation (every engine applies it). Default [`Standardise::Auto`]: by the input's
    /// kind (see [`Standardise::resolve`] and README "Per-gene standardisation").
    pub standardise: Standardise,
}

/// `--standardise auto|on|off`: whether the transformers read each gene standardised with the
/// mean and sd of the fold's training cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Standardise {
    /// By the input's kind: on for values not derived from counts (`as_stored`, `arcsinh:*`),
    /// off for counts (`log1p_cp10k`, the Xenium crop and bundles). Measured: see README.
    #[default]
    Auto,
    /// Always standardise.
    On,
    /// Never standardise.
    Off,
}

/// What [`Standardise::resolve`] chose and the rule that chose it (printed in summary.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StandardiseDecision {
    /// Whether the transformers' input is standardised.
    pub on: bool,
    /// The rule, in words, e.g. "`--standardise auto`: on for `arcsinh` input (not count-derived)".
    pub rule: &'static str,
}

impl Standardise {
    /// Resolves the choice for an input read with `normalisation` (its transform; any
    /// standardisation it already carries is ignored): `auto` standardises values that are not
    /// count-derived (`as_stored`, `arcsinh:*`) and leaves `log1p_cp10k` counts as they are.
    pub fn resolve(self, normalisation: &crate::engine::Normalisation) -> StandardiseDecision {
        use crate::engine::normalisation::Transform;
        match (self, &normalisation.transform) {
            (Self::On, _) => StandardiseDecision { on: true, rule: "`--standardise on`: asked for" },
            (Self::Off, _) => StandardiseDecision { on: false, rule: "`--standardise off`: asked for" },
            (Self::Auto, Transform::Log1pCp10k { .. }) => StandardiseDecision {
                on: false,
                rule: "`--standardise auto`: off for count input (`log1p_cp10k`)",
            },
            (Self::Auto, Transform::AsStored) => StandardiseDecision {
                on: true,
                rule: "`--standardise auto`: on for input not derived from counts (`as_stored`)",
            },
            (Self::Auto, Transform::Arcsinh { .. }) => StandardiseDecision {
                on: true,
                rule: "`--standardise auto`: on for input not derived from counts (`arcsinh`)",
            },
        }
    }
}

impl Default for BenchmarkOptions {
    fn default() -> Self {
        Self {
            data_dir: data::default_data_dir(),
            labels: LabelOptions::default(),
            out: PathBuf::from("runs/benchmark"),
            recipes: vec![("default".into(), super::Recipe::Default.config(42))],
            test_fraction: 0.2,
            folds: 1,
            split: SplitChoice::Auto,
            block_um: DEFAULT_BLOCK_UM,
            val_fraction: 0.15,
            seed: 42,
            tune: false,
            architecture: ClassifierConfig::default(),
            sources: TokenSources::default(),
            dropout: 0.1,
            models: Architecture::ALL.to_vec(),
            gene_encoders: vec![super::GeneEncoderOptions::default()],
            logistic: LogisticOptions::default(),
            gene_embedding: None,
            morph_embedding: None,
            gene_embedding_ids: None,
            morph_embedding_ids: None,
            resume: None,
            h5ad: None,
            label_key: "bulk_labels".into(),
            h5ad_normalisation: crate::engine::Normalisation::as_stored(),
            peers: Vec::new(),
            bundle: None,
            reference: None,
            standardise: Standardise::Auto,
        }
    }
}

/// Default side of the spatial grid blocks: the crop (510 × 383 µm) gives 20 blocks, 4 per
/// fold at K = 5.
pub const DEFAULT_BLOCK_UM: f64 = 100.0;

/// Which splits a benchmark runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitChoice {
    /// Random (stratified) for gene-only models, spatial blocks for models that read
    /// centroids or images (gene-only and the baselines then run on both).
    Auto,
    /// Everything on one kind of split.
    Only(SplitKind),
    /// Every model on both kinds.
    Both,
}

impl std::str::FromStr for SplitChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "both" => Ok(Self::Both),
            other => other.parse::<SplitKind>().map(Self::Only).map_err(|e| format!("{e}, auto or both")),
        }
    }
}

/// One method on one fold.
#[derive(Debug, Clone, Serialize)]
pub struct FoldOutcome {
    /// Fold index.
    pub fold: usize,
    /// Predicted class per test cell of the fold (in the fold's `test` order).
    #[serde(skip)]
    pub pred: Vec<u32>,
    /// Test report of the fold.
    pub report: ClassificationReport,
    /// Wall-clock seconds to fit (and tune).
    pub seconds: f64,
    /// Epoch whose weights were kept (models only).
    pub best_epoch: Option<usize>,
    /// Per-epoch statistics (models only).
    pub history: Vec<EpochStats>,
    /// The settings trained (models only; after `--tune`, the chosen ones).
    pub config: Option<TrainConfig>,
    /// The `--tune` trials and their validation macro-F1.
    pub tune: Vec<TuneTrial>,
}

/// One method (a model under a recipe, or a baseline) on every fold of one split.
#[derive(Debug, Clone, Serialize)]
pub struct ModelResult {
    /// File-system name (`logistic`, `gene_only`, …).
    pub name: String,
    /// Table title.
    pub title: String,
    /// The split the folds came from.
    pub split: SplitKind,
    /// Recipe (models only).
    pub recipe: Option<String>,
    /// Per-class report pooled over folds (every fold's test predictions together).
    pub report: ClassificationReport,
    /// Per fold.
    pub folds: Vec<FoldOutcome>,
    /// Per-epoch statistics of fold 0 (empty for baselines).
    pub history: Vec<EpochStats>,
    /// Wall-clock training seconds summed over folds.
    pub train_seconds: f64,
    /// Mean seconds per epoch (training + validation).
    pub mean_epoch_seconds: f64,
}

/// Mean and sample standard deviation (0 for one value).
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (m, sd)
}

impl ModelResult {
    /// A method from its per-fold test predictions (`preds[f]` in `folds[f].test` order,
    /// with the seconds each fold took).
    pub fn from_predictions(
        name: &str,
        title: &str,
        ctx: &SplitContext<'_>,
        preds: Vec<(Vec<u32>, f64)>,
    ) -> Self {
        let outcomes = preds
            .into_iter()
            .enumerate()
            .map(|(f, (pred, seconds))| {
                let truth: Vec<u32> = ctx.folds[f].test.iter().map(|&i| ctx.labels[i]).collect();
                FoldOutcome {
                    fold: f,
                    report: ClassificationReport::new(&truth, &pred, ctx.class_names),
                    pred,
                    seconds,
                    best_epoch: None,
                    history: Vec::new(),
                    config: None,
                    tune: Vec::new(),
                }
            })
            .collect();
        Self::from_outcomes(name, title, ctx, None, outcomes)
    }

    fn from_outcomes(
        name: &str,
        title: &str,
        ctx: &SplitContext<'_>,
        recipe: Option<String>,
        folds: Vec<FoldOutcome>,
    ) -> Self {
        let (mut truth, mut pred) = (Vec::new(), Vec::new());
        for o in &folds {
            truth.extend(ctx.folds[o.fold].test.iter().map(|&i| ctx.labels[i]));
            pred.extend_from_slice(&o.pred);
        }
        let epochs: Vec<f64> = folds.iter().flat_map(|o| o.history.iter().map(|h| h.seconds)).collect();
        Self {
            name: name.into(),
            title: title.into(),
            split: ctx.kind,
            recipe,
            report: ClassificationReport::new(&truth, &pred, ctx.class_names),
            history: folds.first().map(|o| o.history.clone()).unwrap_or_default(),
            train_seconds: folds.iter().map(|o| o.seconds).sum(),
            mean_epoch_seconds: epochs.iter().sum::<f64>() / epochs.len().max(1) as f64,
            folds,
        }
    }

    /// (mean, sd) over folds of macro-F1 and of accuracy.
    pub fn fold_stats(&self) -> ((f64, f64), (f64, f64)) {
        let f1: Vec<f64> = self.folds.iter().map(|o| o.report.macro_f1).collect();
        let acc: Vec<f64> = self.folds.iter().map(|o| o.report.accuracy).collect();
        (mean_sd(&f1), mean_sd(&acc))
    }
}

/// What a baseline needs from one split: the folds and the exact normalised feature matrix the
/// models' gene input is (`x`, `[cells, n_genes]`).
pub struct SplitContext<'a> {
    /// Kind of split.
    pub kind: SplitKind,
    /// Folds: train / validation / test cell indices.
    pub folds: &'a [Fold],
    /// Normalised expression `[cells, n_genes]`, as the models read it.
    pub x: &'a [f32],
    /// Genes (columns of `x`).
    pub n_genes: usize,
    /// Class per cell (meaningful only at fold indices).
    pub labels: &'a [u32],
    /// Classes.
    pub n_classes: usize,
    /// Class names.
    pub class_names: &'a [String],
    /// Logistic-regression settings.
    pub logistic: &'a LogisticOptions,
}

/// The baselines on one split, each a list of per-fold test predictions; our logistic
/// regression first (fit on each fold's `train ∪ val`: it selects nothing, so it learns from
/// every non-test cell). More peers are added by pushing entries made with
/// [`ModelResult::from_predictions`].
pub fn baselines(ctx: &SplitContext<'_>) -> Result<Vec<ModelResult>, TrainError> {
    let mut preds = Vec::with_capacity(ctx.folds.len());
    for fold in ctx.folds {
        let t = Instant::now();
        let lr = LogisticRegression::fit(ctx.x, ctx.n_genes, ctx.labels, ctx.n_classes, &fold.fit_cells(), ctx.logistic);
        let pred = argmax_rows(&lr.logits(ctx.x, &fold.test), ctx.n_classes);
        preds.push((pred, t.elapsed().as_secs_f64()));
    }
    Ok(vec![ModelResult::from_predictions("logistic", "LogReg", ctx, preds)])
}

/// The python peers ([`super::peers::run_python_peers`]) on the folds of `ctx`, each fit on a
/// fold's `train ∪ val` (they select their own settings inside those cells) and scored on its
/// test cells, as [`ModelResult`]s beside our logistic regression. `log1p_cp10k`: the
/// expression CellTypist expects `[cells, genes]`, when the data are counts.
pub fn python_peers(
    ctx: &SplitContext<'_>,
    peers: &[super::peers::Peer],
    log1p_cp10k: Option<&[f32]>,
    seed: u64,
    work_dir: &Path,
) -> Result<Vec<ModelResult>, TrainError> {
    let folds: Vec<super::peers::PeerFold> =
        ctx.folds.iter().map(|f| super::peers::PeerFold { train: f.fit_cells(), test: f.test.clone() }).collect();
    let input = super::peers::PeerInput {
        x: ctx.x,
        n_features: ctx.n_genes,
        counts_log1p_cp10k: log1p_cp10k,
        labels: ctx.labels,
        class_names: ctx.class_names,
        folds: &folds,
        seed,
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let python = std::env::var(super::peers::PYTHON_ENV).unwrap_or_else(|_| "python3".into());
    let out = super::peers::run_python_peers_with(&python, Some(threads), &input, peers, work_dir)?;
    for p in peers {
        if let Some(r) = out.iter().find(|r| r.peer == *p && !r.note.is_empty()) {
            eprintln!("note: {}: {}", p.title(), r.note);
        }
    }
    Ok(peers
        .iter()
        .map(|&p| {
            let preds = out.iter().filter(|r| r.peer == p).map(|r| (r.test_predictions.clone(), r.fit_seconds)).collect();
            ModelResult::from_predictions(p.key(), p.title(), ctx, preds)
        })
        .collect())
}

/// What [`run_benchmark`] produced.
#[derive(Debug, Clone, Serialize)]
pub struct BenchmarkResult {
    /// Class names (table rows).
    pub class_names: Vec<String>,
    /// Training + validation cells of fold 0 of the first split.
    pub n_train: usize,
    /// Test cells of fold 0 of the first split.
    pub n_test: usize,
    /// Folds per split.
    pub n_folds: usize,
    /// Per split: baselines first, then the classifiers (per recipe) in order.
    pub results: Vec<ModelResult>,
    /// The per-class table as Markdown.
    pub markdown: String,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// Identifies one training run for progress output.
#[derive(Debug, Clone)]
pub struct RunLabel {
    /// Architecture.
    pub model: Architecture,
    /// Split kind.
    pub split: SplitKind,
    /// Recipe name.
    pub recipe: String,
    /// Fold and folds.
    pub fold: usize,
    /// Folds in the split.
    pub n_folds: usize,
    /// Epochs (at most).
    pub epochs: usize,
    /// Whether this is a `--tune` trial.
    pub trial: bool,
}

/// Per-run progress sink factory.
pub type ProgressFactory<'a> = dyn FnMut(&RunLabel) -> Box<dyn TrainProgress> + 'a;

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
    let centres: Vec<[f32; 2]> = (0..crop.table.n_cells())
        .map(|i| crop.table.nucleus_centroids_um[i].unwrap_or(crop.table.centroids_um[i]))
        .collect();
    let out = data::model_patches(&image, &frame, &centres, size, um_per_px);
    Ok(out)
}

fn load_embedding(path: &Path, ids: Option<&Path>, cell_ids: &[String]) -> Result<Embeddings, TrainError> {
    read_embeddings_for_cells(path, None, ids, cell_ids)
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
    labels: &'b [u32],
    n_classes: usize,
    crop: &'a PreparedCrop,
    /// The model input's normalisation as recorded in the model files (the crop's, plus a
    /// fold's standardisation under `--standardise`).
    normalisation: crate::engine::Normalisation,
}

/// `crop`'s normalisation followed by a per-gene standardisation fitted on the `train` cells'
/// values only, and the model input `[cells, genes]` of every cell under it.
fn standardised_for_fold(crop: &PreparedCrop, train: &[usize]) -> Result<(crate::engine::Normalisation, Vec<f32>), TrainError> {
    let g = crop.table.n_genes();
    let raw = &crop.table.counts;
    let rows: Vec<f32> = train.iter().flat_map(|&i| raw[i * g..(i + 1) * g].iter().copied()).collect();
    let norm = crop.normalisation.clone().fit_standardisation(&rows, g)?;
    let x = norm.apply(raw, g, &crop.table.genes)?;
    Ok((norm, x))
}

/// Where a run writes (and resumes from): the exported run (first recipe, the model's primary
/// split, fold 0) in `<model>/`, every other run in `<model>/runs/<split>-<recipe>-fold<k>/`.
fn run_dir(name: &str, primary: bool, split: SplitKind, recipe: &str, fold: usize) -> PathBuf {
    let base = PathBuf::from(name);
    if primary {
        base
    } else {
        base.join("runs").join(format!("{}-{recipe}-fold{fold}", split.name()))
    }
}

#[allow(clippy::too_many_arguments)]
fn train_one<B: AutodiffBackend>(
    kind: Architecture,
    options: &ClassifierOptions,
    config: &TrainConfig,
    fold: &Fold,
    rel_dir: &Path,
    s: &Shared<'_, '_>,
    device: &B::Device,
    progress: &mut dyn TrainProgress,
    write_model: bool,
) -> Result<(super::TrainedClassifier<Classifier<B>>, f64), TrainError> {
    let dir = s.opts.out.join(rel_dir);
    // A run the earlier benchmark did not reach starts fresh; the folder itself must exist
    // (checked in run_benchmark).
    let resume = s
        .opts
        .resume
        .as_ref()
        .map(|r| r.join(rel_dir))
        .filter(|d| d.join(CHECKPOINT_FILE).exists());
    let ckpt = CheckpointOptions {
        dir: Some(dir.clone()),
        resume,
    };
    let split = LabelledSplit {
        labels: s.labels,
        n_classes: s.n_classes,
        train: &fold.train,
        val: &fold.val,
        test: &fold.test,
    };
    let t = Instant::now();
    let trained = train_classifier::<B>(
        options,
        config,
        &s.inputs,
        &split,
        &s.crop.class_names,
        &ckpt,
        device,
        progress,
    )?;
    let train_seconds = t.elapsed().as_secs_f64();
    if write_model {
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
            serde_json::to_string(&s.normalisation).unwrap_or_default(),
        );
        meta.insert(
            "patch_um_per_px".to_string(),
            s.opts.sources.morphology.um_per_px.to_string(),
        );
        meta.insert(
            "weights_layout".to_string(),
            "burn Linear weights are [in, out]".to_string(),
        );
        meta.insert(
            "training".to_string(),
            serde_json::json!({"train_config": config, "history": &trained.history, "best_epoch": trained.best_epoch}).to_string(),
        );
        save_named_safetensors(&inner, meta, &dir.join("model.safetensors"))?;
        std::fs::write(
            dir.join("model.json"),
            serde_json::to_string_pretty(&spec).unwrap_or_default(),
        )
        .map_err(io(&dir))?;
    }
    Ok((trained, train_seconds))
}

/// The splits a model runs on, the first being its primary (exported) one.
fn model_splits(choice: SplitChoice, kind: Architecture, any_spatial: bool) -> Vec<SplitKind> {
    use SplitKind::*;
    match choice {
        SplitChoice::Only(k) => vec![k],
        SplitChoice::Both => vec![Random, SpatialBlocks],
        SplitChoice::Auto if kind == Architecture::GeneOnly && any_spatial => vec![Random, SpatialBlocks],
        SplitChoice::Auto if kind == Architecture::GeneOnly => vec![Random],
        SplitChoice::Auto => vec![SpatialBlocks],
    }
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
    if opts.recipes.is_empty() {
        return Err(TrainError::Options("no recipe to train; give --recipes default, paper or both".into()));
    }
    let any_spatial = opts.models.iter().any(|m| *m != Architecture::GeneOnly);
    let mut kinds: Vec<SplitKind> = Vec::new();
    for &m in &opts.models {
        for k in model_splits(opts.split, m, any_spatial) {
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
    }
    if kinds.is_empty() {
        kinds = match opts.split {
            SplitChoice::Only(k) => vec![k],
            SplitChoice::Both => vec![SplitKind::Random, SplitKind::SpatialBlocks],
            SplitChoice::Auto => vec![SplitKind::Random],
        };
    }
    kinds.sort_by_key(|k| *k == SplitKind::SpatialBlocks);
    let has_positions = opts.h5ad.is_none() && crop.table.centroids_um.iter().all(|c| c[0].is_finite() && c[1].is_finite());
    if kinds.contains(&SplitKind::SpatialBlocks) && !has_positions {
        return Err(TrainError::Options(
            "spatial-block splits need cell centroids, which this data set does not have; use --split random".into(),
        ));
    }
    let mut splits: Vec<(SplitKind, Vec<Fold>)> = Vec::new();
    for &kind in &kinds {
        let plan = FoldPlan {
            kind,
            k: opts.folds,
            test_fraction: opts.test_fraction,
            val_fraction: opts.val_fraction,
            block_um: opts.block_um,
            centroids: has_positions.then_some(crop.table.centroids_um.as_slice()),
            seed: opts.seed,
        };
        let folds = make_folds(&crop.labels, &plan).map_err(TrainError::Options)?;
        if let Some(f) = folds.iter().find(|f| f.train.len() < 20 || f.test.is_empty()) {
            return Err(TrainError::TooFewCells {
                found: f.train.len() + f.val.len() + f.test.len(),
                classes: n_classes,
                needed: 25,
            });
        }
        splits.push((kind, folds));
    }
    if n_classes < 2 {
        return Err(TrainError::TooFewCells { found: crop.labels.iter().flatten().count(), classes: n_classes, needed: 25 });
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
        .map(|p| load_embedding(p, opts.gene_embedding_ids.as_deref(), &crop.table.cell_ids))
        .transpose()?;
    let morph_emb = opts
        .morph_embedding
        .as_deref()
        .map(|p| load_embedding(p, opts.morph_embedding_ids.as_deref(), &crop.table.cell_ids))
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
    let shared = Shared {
        opts,
        inputs,
        labels: &labels,
        n_classes,
        crop: &crop,
        normalisation: crop.normalisation.clone(),
    };
    let mut files = Vec::new();
    let mut results: Vec<ModelResult> = Vec::new();

    let mut base = opts.architecture.clone();
    (base.n_genes, base.n_classes) = (g, n_classes);
    let sources = TokenSources {
        gene_embedding_dim: gene_emb.as_ref().map(|e| e.dim),
        morph_embedding_dim: morph_emb.as_ref().map(|e| e.dim),
        ..opts.sources.clone()
    };
    let multi_recipe = opts.recipes.len() > 1;
    for (kind_of_split, folds) in &splits {
        let ctx = SplitContext {
            kind: *kind_of_split,
            folds,
            x: &crop.x_norm,
            n_genes: g,
            labels: &labels,
            n_classes,
            class_names: &crop.class_names,
            logistic: &opts.logistic,
        };
        results.extend(baselines(&ctx)?);
        if !opts.peers.is_empty() {
            // CellTypist wants log1p-CP10k expression: that is `x_norm` itself when the counts
            // were normalised so without standardisation; otherwise it trains on `x` as given.
            let log1p = matches!(crop.normalisation.transform, crate::engine::Transform::Log1pCp10k { target_sum } if target_sum == 1e4)
                && crop.normalisation.standardisation.is_none();
            let work = opts.out.join(format!("peers_{}", kind_of_split.name()));
            results.extend(python_peers(&ctx, &opts.peers, log1p.then_some(crop.x_norm.as_slice()), opts.seed, &work)?);
        }
        let folds_path = opts.out.join(format!("folds_{}.json", kind_of_split.name()));
        let ids = |idx: &[usize]| idx.iter().map(|&i| crop.table.cell_ids[i].clone()).collect::<Vec<_>>();
        let folds_json: Vec<_> = folds
            .iter()
            .map(|f| serde_json::json!({"train": ids(&f.train), "val": ids(&f.val), "test": ids(&f.test)}))
            .collect();
        write_atomic(&folds_path, serde_json::to_string(&folds_json).unwrap_or_default())?;
        files.push(folds_path);
        for (ri, (recipe, config)) in opts.recipes.iter().enumerate() {
            let tuned = opts.tune || recipe.ends_with(TUNE_SUFFIX);
            for &kind in &opts.models {
                let model_kinds = model_splits(opts.split, kind, any_spatial);
                if !model_kinds.contains(kind_of_split) {
                    continue;
                }
                let summary_only = [super::GeneEncoderOptions::default()];
                let encoders = if kind == Architecture::GeneOnly && !opts.gene_encoders.is_empty() { opts.gene_encoders.as_slice() } else { &summary_only[..] };
                for encoder in encoders {
                let tokens = encoder.kind == crate::engine::GeneEncoderKind::Tokens;
                let (model_name, model_title) = if tokens {
                    (format!("{}_tokens", kind.name()), format!("{} (gene tokens)", kind.title()))
                } else {
                    (kind.name().to_string(), kind.title().to_string())
                };
                let base_options = ClassifierOptions::new(base.clone().for_architecture(kind, &sources))
                    .with_dropout(opts.dropout);
                let mut outcomes = Vec::with_capacity(folds.len());
                for (f, fold) in folds.iter().enumerate() {
                    // Gene tokens: the genes are chosen from this fold's training cells only.
                    let options = ClassifierOptions { spec: encoder.apply(base_options.spec.clone(), &crop.x_norm, g, &fold.train), ..base_options.clone() };
                    let primary = ri == 0 && model_kinds[0] == *kind_of_split && f == 0;
                    let rel = run_dir(&model_name, primary, *kind_of_split, recipe, f);
                    let label = |epochs: usize, trial: bool| RunLabel {
                        model: kind,
                        split: *kind_of_split,
                        recipe: recipe.clone(),
                        fold: f,
                        n_folds: folds.len(),
                        epochs,
                        trial,
                    };
                    // --standardise: this fold's input, standardised with its training cells.
                    let fold_input = if opts.standardise.resolve(&crop.normalisation).on { Some(standardised_for_fold(&crop, &fold.train)?) } else { None };
                    let fold_shared = fold_input.as_ref().map(|(normalisation, x)| Shared {
                        inputs: CellInputs { genes: Some(Rows { data: x, cols: g }), ..shared.inputs },
                        normalisation: normalisation.clone(),
                        ..shared
                    });
                    let shared = fold_shared.as_ref().unwrap_or(&shared);
                    let t = Instant::now();
                    let (config, trials) = if tuned {
                        // The search is handed the fold's training and validation indices
                        // only (never `fold.test`): its trials train on `fold.train` and are
                        // scored on `fold.val`.
                        let (train, val) = (&fold.train, &fold.val);
                        let mut n_trial = 0;
                        let mut trial = |c: &TrainConfig, split: &LabelledSplit<'_>| -> Result<(f64, usize), TrainError> {
                            n_trial += 1;
                            let mut progress = make_progress(&label(c.budget_epochs(split.train.len()), true));
                            let run = train_classifier::<B>(&options, c, &shared.inputs, split, &crop.class_names, &CheckpointOptions::default(), device, progress.as_mut())?;
                            let score = run.history.iter().find(|h| h.epoch == run.best_epoch).and_then(|h| h.val_macro_f1).unwrap_or(0.0);
                            eprintln!(
                                "tune {} {} fold {}/{} trial {n_trial}: lr {:.1e}, {}, smoothing {} → val {score:.3} (epoch {})",
                                model_name, recipe, f + 1, folds.len(), c.learning_rate, c.class_weighting, c.label_smoothing, run.best_epoch
                            );
                            Ok((score, run.best_epoch))
                        };
                        let (chosen, trials) = tune_on_training_cells(config, shared.labels, n_classes, train, val, &mut trial)?;
                        if let Some(w) = trials.iter().find(|t| t.chosen) {
                            eprintln!("tune {} {} fold {}/{}: chose {} (val {:.3}); training it in full", model_name, recipe, f + 1, folds.len(), w.setting(), w.val_macro_f1);
                        }
                        (chosen, trials)
                    } else {
                        (config.clone(), Vec::new())
                    };
                    let tune_seconds = t.elapsed().as_secs_f64();
                    let mut progress = make_progress(&label(config.budget_epochs(fold.train.len()), false));
                    let (trained, seconds) = train_one::<B>(kind, &options, &config, fold, &rel, shared, device, progress.as_mut(), primary)?;
                    if primary {
                        files.push(opts.out.join(&rel).join("model.safetensors"));
                        // The engines' fp32 + int8 files (browser / WGSL classifier) for models
                        // that read counts and patches.
                        if options.spec.check_engine_inputs().is_ok() {
                            let inner = trained.model.valid();
                            let meta = model_meta(
                                &inner,
                                &crop.table.genes,
                                &crop.class_names,
                                shared.normalisation.clone(),
                                serde_json::json!({
                                    "benchmark": true,
                                    "recipe": recipe,
                                    "train_config": &config,
                                    "split": {"kind": kind_of_split.name(), "folds": folds.len(), "fold": 0, "test_fraction": opts.test_fraction, "val_fraction": opts.val_fraction, "block_um": opts.block_um, "seed": opts.seed},
                                    "history": &trained.history,
                                    "best_epoch": trained.best_epoch,
                                    "stopped_early": trained.stopped_early,
                                    "tune": &trials,
                                    "test_cell_ids": ids(&fold.test),
                                }),
                            );
                            let (_, ex) = export_fp32_and_int8(&inner, meta, &opts.out.join(&rel).join("engine"))?;
                            files.extend([ex.fp32, ex.int8]);
                        }
                    }
                    outcomes.push(FoldOutcome {
                        fold: f,
                        pred: argmax_rows(&trained.test_logits, n_classes),
                        report: trained.report,
                        seconds: seconds + tune_seconds,
                        best_epoch: Some(trained.best_epoch),
                        history: trained.history,
                        config: Some(config),
                        tune: trials,
                    });
                }
                let recipe_name = if tuned && !recipe.ends_with(TUNE_SUFFIX) { format!("{recipe}{TUNE_SUFFIX}") } else { recipe.clone() };
                let _ = multi_recipe;
                results.push(ModelResult::from_outcomes(&model_name, &model_title, &ctx, Some(recipe_name), outcomes));
                }
            }
        }
    }

    let (multi_split, multi_recipe) = (splits.len() > 1, opts.recipes.len() > 1 || any_tuned(opts));
    for r in &results {
        let path = opts.out.join(format!("confusion_{}.png", file_tag(r, multi_split, multi_recipe)));
        confusion_png(
            &path,
            &format!("{} (test, pooled over {} folds, n={})", row_title(r, multi_split, multi_recipe), r.folds.len(), r.report.n_cells),
            &crop.class_names,
            &r.report.confusion,
        )?;
        files.push(path);
    }
    let titled: Vec<ModelResult> = results
        .iter()
        .map(|r| ModelResult { title: row_title(r, multi_split, multi_recipe), ..r.clone() })
        .collect();
    let (csv, md) = tables(&crop.class_names, &titled);
    for (name, text) in [("per_class.csv", &csv), ("per_class.md", &md)] {
        let path = opts.out.join(name);
        write_atomic(&path, text)?;
        files.push(path);
    }
    let first = &splits[0].1[0];
    let result = BenchmarkResult {
        class_names: crop.class_names.clone(),
        n_train: first.train.len() + first.val.len(),
        n_test: first.test.len(),
        n_folds: splits[0].1.len(),
        results,
        markdown: md,
        files: files.clone(),
    };
    let json_path = opts.out.join("benchmark.json");
    let json = serde_json::json!({
        "result": &result,
        "label_summary": &crop.summary,
        "recipes": &opts.recipes,
        "tune": opts.tune,
        "architecture": &base,
        "gene_encoders": &opts.gene_encoders,
        "dropout": opts.dropout,
        "sources": &opts.sources,
        "logistic": &opts.logistic,
        "splits": splits.iter().map(|(k, f)| serde_json::json!({
            "kind": k.name(), "folds": f.len(), "test_fraction": opts.test_fraction, "val_fraction": opts.val_fraction,
            "block_um": opts.block_um, "seed": opts.seed,
            "sizes": f.iter().map(|f| [f.train.len(), f.val.len(), f.test.len()]).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    write_atomic(
        &json_path,
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )?;
    let summary_path = opts.out.join("summary.md");
    write_atomic(&summary_path, summary_markdown(opts, &crop, &result, &splits))?;
    let mut result = result;
    result.files.extend([json_path, summary_path]);
    Ok(result)
}

/// Whether `--tune` is on or any recipe is a `+tune` one.
fn any_tuned(opts: &BenchmarkOptions) -> bool {
    opts.tune || opts.recipes.iter().any(|(n, _)| n.ends_with(TUNE_SUFFIX))
}

const TUNE_SENTENCE: &str = "per fold, peak learning rate ∈ {lr, lr/3, 3·lr}, then class weighting ∈ {none, sqrt-balanced, the recipe's}, then label smoothing ∈ {0, 0.1}, searched coordinate-wise on the fold's validation cells (training cells only; short runs of min(epochs, max(5, ⌈epochs/2⌉)) epochs, patience 5, ties keep the recipe's setting); the chosen setting is then trained in full. Choices per fold below.";

/// The `--tune` section of summary.md: per tuned row and fold, every trial with its
/// validation macro-F1 and the chosen setting (empty when nothing was tuned).
pub fn tune_markdown(results: &[ModelResult]) -> String {
    let tuned: Vec<&ModelResult> = results.iter().filter(|r| r.folds.iter().any(|o| !o.tune.is_empty())).collect();
    if tuned.is_empty() {
        return String::new();
    }
    let mut md = String::from("\n## `--tune` choices (validation macro-F1 of the short runs; test cells not used)\n\n| Model | split | recipe | fold | chosen | val (chosen) | trials (setting → val) |\n|---|---|---|---:|---|---:|---|\n");
    for r in tuned {
        for o in &r.folds {
            let Some(w) = o.tune.iter().find(|t| t.chosen) else { continue };
            let trials: Vec<String> = o.tune.iter().map(|t| format!("{}: {} → {:.3}", t.stage, t.setting(), t.val_macro_f1)).collect();
            md += &format!(
                "| {} | {} | {} | {} | {} | {:.3} | {} |\n",
                r.title, r.split.name(), r.recipe.as_deref().unwrap_or("–"), o.fold + 1, w.setting(), w.val_macro_f1, trials.join("; ")
            );
        }
    }
    md
}

/// `name[_split][_recipe]` for file names.
fn file_tag(r: &ModelResult, multi_split: bool, multi_recipe: bool) -> String {
    let mut t = r.name.clone();
    if multi_split {
        t += &format!("_{}", r.split.name().replace('-', "_"));
    }
    if let (true, Some(rec)) = (multi_recipe, &r.recipe) {
        t += &format!("_{}", rec.replace('+', "_"));
    }
    t
}

/// Row title: the method, then split and recipe where a benchmark has several.
fn row_title(r: &ModelResult, multi_split: bool, multi_recipe: bool) -> String {
    let mut parts = Vec::new();
    if multi_split {
        parts.push(r.split.name().to_string());
    }
    if let (true, Some(rec)) = (multi_recipe, &r.recipe) {
        parts.push(rec.clone());
    }
    if parts.is_empty() {
        r.title.clone()
    } else {
        format!("{} ({})", r.title, parts.join(", "))
    }
}

fn summary_markdown(
    opts: &BenchmarkOptions,
    crop: &PreparedCrop,
    r: &BenchmarkResult,
    splits: &[(SplitKind, Vec<Fold>)],
) -> String {
    let s = &crop.summary;
    let mut md = match &opts.h5ad {
        Some(path) => format!(
            "# CellSymphony benchmark ({})\n\nLabels: expert annotation `obs['{}']`. Input: `X` normalised as {}. {} cells; rare classes excluded {:?}; {} classes.\n\n",
            path.display(), opts.label_key, serde_json::to_string(&opts.h5ad_normalisation).unwrap_or_default(), s.cells, s.rare_classes, r.class_names.len()
        ),
        None => format!(
            "# CellSymphony benchmark (Xenium breast crop)\n\nLabels: SingleR-style Spearman correlation to the bidcell `sc_breast.csv` reference (no expert labels exist for this crop). \
             {} cells read; excluded: {} low-count, {} ambiguous, rare classes {:?}; {} classes.\n\n",
            s.cells, s.low_counts, s.ambiguous, s.rare_classes, r.class_names.len()
        ),
    };
    for (kind, folds) in splits {
        let sizes: Vec<String> = folds.iter().map(|f| format!("{}/{}/{}", f.train.len(), f.val.len(), f.test.len())).collect();
        let how = match kind {
            SplitKind::Random => "stratified by class".to_string(),
            SplitKind::SpatialBlocks => format!("{} µm grid blocks of the cell centroids held out whole, folds balanced by cell count", opts.block_um),
        };
        md += &if folds.len() > 1 {
            format!("Split **{}**: {}-fold cross-validation, {how}, seed {}; each fold's validation cells ({:.0} % of its non-test cells, {}) pick the kept epoch; the test cells choose nothing. Cells train/val/test per fold: {}.\n\n",
                kind.name(), folds.len(), opts.seed, 100.0 * opts.val_fraction, if *kind == SplitKind::Random { "stratified" } else { "whole blocks" }, sizes.join(", "))
        } else {
            format!("Split **{}**: one split holding out {:.0} % ({how}), seed {}; validation {:.0} % of the non-test cells picks the kept epoch. Cells train/val/test: {}.\n\n",
                kind.name(), 100.0 * opts.test_fraction, opts.seed, 100.0 * opts.val_fraction, sizes.join(", "))
        };
    }
    for (name, c) in &opts.recipes {
        md += &format!(
            "Recipe **{name}**: AdamW peak lr {}, {} schedule, warmup {} of the steps, batch {}, weight decay {}, up to {} epochs{}, patience {}, class weights {}, label smoothing {}.{}\n\n",
            c.learning_rate, match c.schedule { super::LrSchedule::Constant => "constant", super::LrSchedule::Cosine => "cosine" }, c.warmup_fraction,
            c.batch_size, c.weight_decay, c.epochs,
            c.min_steps.map_or(String::new(), |m| format!(" or at least {m} optimisation steps (epochs = max({}, ⌈{m} / steps per epoch⌉))", c.epochs)),
            c.patience.map_or("none".to_string(), |p| p.to_string()), c.class_weighting, c.label_smoothing,
            if opts.tune || name.ends_with(TUNE_SUFFIX) { format!(" **`--tune` on**: {TUNE_SENTENCE}") } else { String::new() }
        );
    }
    md += &format!(
        "Encoder: {} layers, d_model {}, {} heads, d_ff {}, {} gene tokens, dropout {}{}.\n\n",
        opts.architecture.n_layers, opts.architecture.d_model, opts.architecture.n_heads, opts.architecture.d_ff, opts.architecture.gene_tokens, opts.dropout,
        if opts.architecture.linear_path { "; plus a linear path (logits = head + W·x on the normalised genes, W zero-initialised)" } else { "" }
    );
    let standardise = opts.standardise.resolve(&crop.normalisation);
    md += &if standardise.on {
        format!("Input standardisation **on** ({}): the transformers read every gene as (x − mean) / sd with the mean and sd of each fold's training cells (after the normalisation above; recorded in the model files); the baselines read their own inputs as before.\n\n", standardise.rule)
    } else {
        format!("Input standardisation **off** ({}): the transformers read the normalised genes as they are.\n\n", standardise.rule)
    };
    if opts.h5ad.is_none() && opts.models.iter().any(|m| m.has_morphology()) {
        let m = &opts.sources.morphology;
        md += &format!(
            "Morphology: {}×{} px DAPI patches at {} µm/px ({} µm field) centred on the nucleus centroid; ViT patch {} px ({}×{} tokens), width {}, cell token = mean of the {} tokens nearest the centre after block {}.{}\n\n",
            m.image_size, m.image_size, m.um_per_px, m.image_size as f64 * m.um_per_px, m.vit_patch, m.grid(), m.grid(), m.width, m.k_nearest, m.n_layers,
            opts.morph_embedding.as_ref().map(|p| format!(" Image embedding from {} used instead.", p.display())).unwrap_or_default()
        );
    }
    md += &format!(
        "Baseline (peer in the same run, same folds): multinomial logistic regression, L2 (C = {}), z-scored input genes, {} accelerated-gradient iterations, class weights: {}; fit on each fold's training + validation cells.\n\n",
        opts.logistic.c, opts.logistic.iterations, opts.logistic.class_weighted
    );
    let multi_split = splits.len() > 1;
    let multi_recipe = opts.recipes.len() > 1 || any_tuned(opts);
    md += "| Model | split | recipe | folds | macro-F1 mean ± sd | accuracy mean ± sd | pooled macro-F1 | per-fold macro-F1 | kept epochs | train (s) |\n|---|---|---|---:|---:|---:|---:|---|---|---:|\n";
    for x in &r.results {
        let ((f1, f1_sd), (acc, acc_sd)) = x.fold_stats();
        let per: Vec<String> = x.folds.iter().map(|o| format!("{:.3}", o.report.macro_f1)).collect();
        let kept: Vec<String> = x.folds.iter().filter_map(|o| o.best_epoch.map(|e| format!("{e}/{}", o.history.last().map_or(0, |h| h.epoch)))).collect();
        md += &format!(
            "| {} | {} | {} | {} | {:.3} ± {:.3} | {:.3} ± {:.3} | {:.3} | {} | {} | {:.1} |\n",
            x.title,
            x.split.name(),
            x.recipe.as_deref().unwrap_or("–"),
            x.folds.len(),
            f1, f1_sd, acc, acc_sd,
            x.report.macro_f1,
            per.join(" "),
            if kept.is_empty() { "–".to_string() } else { kept.join(" ") },
            x.train_seconds
        );
    }
    md += "\nsd: sample standard deviation over folds. Kept epochs: best validation epoch / epochs run, per fold.\n";
    md += &tune_markdown(&r.results);
    md += &format!(
        "\n## Per class (test cells pooled over folds{})\n\n",
        if r.n_folds > 1 { ": each labelled cell is tested exactly once" } else { "" }
    );
    md += &r.markdown;
    md += &format!(
        "\nFiles: `per_class.csv`, `per_class.md` (pooled over folds{}), `confusion_<model>{}.png` (rows true, columns predicted, colour = row fraction), `folds_<split>.json` (cell ids per fold), `<model>/model.safetensors` and `<model>/engine/model{{,.int8}}.safetensors` (first recipe, the model's primary split, fold 0: the exported model; engine files for every model that reads counts and patches), `<model>/checkpoint.bin` and `<model>/runs/<split>-<recipe>-fold<k>/checkpoint.bin` (resume with `--resume`), `benchmark.json`.\n",
        if multi_split || multi_recipe { "; rows per split and recipe" } else { "" },
        match (multi_split, multi_recipe) { (true, true) => "_<split>_<recipe>", (true, false) => "_<split>", (false, true) => "_<recipe>", _ => "" }
    );
    md
}
