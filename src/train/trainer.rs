//! The training loop of every classifier (`train`, `pipeline`, `benchmark`, tests): AdamW with
//! an optional warmup + cosine learning-rate schedule, cross-entropy with optional class
//! weights and label smoothing, validation macro-F1 after each epoch (validation cells are
//! carved from the training cells by the caller; the test cells are only evaluated once, after
//! training, with the weights of the best validation epoch), early stopping, an atomic
//! checkpoint after each epoch and exact resume.
//!
//! Determinism: epoch `e` reseeds the backend RNG (dropout) with `mix(seed, e)` and shuffles
//! the training cells from their sorted order with a [`SplitMix64`] seeded by `mix(seed, e)`,
//! so the random state at the start of an epoch is a function of `(seed, e)` alone. Together
//! with the model record and the AdamW moments stored in the checkpoint, resuming after epoch
//! `e` replays exactly what a straight run does from epoch `e + 1` on.
//!
//! Checkpoint file `checkpoint.bin` (written to a temporary file, then renamed):
//! `[u64 LE n][n bytes JSON header][u64 LE m][m bytes model record][u64 LE k][k bytes AdamW
//! record][u64 LE b][b bytes best-epoch model record]` (`b` = 0 when there is no validation
//! set); records are burn's bincode at full precision. The header ([`CheckpointHeader`]) holds
//! the epoch, the training config, the model spec (free JSON from the caller), the history,
//! the best validation epoch and the RNG derivation.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ElementConversion;
use serde::{Deserialize, Serialize};

use super::metrics::ClassificationReport;
use super::split::balanced_class_weights;
use super::TrainError;
use crate::model::{CellBatch, Classifier, ClassifierOptions, ModelInputs};
use crate::util::rng::SplitMix64;

/// How the loss weights classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ClassWeighting {
    /// Every cell counts the same.
    None,
    /// Inverse class frequency `n / (classes · count_c)` (scikit-learn's "balanced").
    #[default]
    Balanced,
    /// The square root of the balanced weights: rare classes count more, but less than with
    /// `Balanced` (which trades precision for recall on rare classes).
    SqrtBalanced,
}

impl ClassWeighting {
    /// Per-class loss weights over the given training labels (`None` for uniform weights).
    /// Classes absent from `labels` get weight 1 (they contribute no term).
    pub fn weights(self, labels: &[u32], n_classes: usize) -> Option<Vec<f32>> {
        let w = balanced_class_weights(labels, n_classes);
        let fix = |v: f32| if v > 0.0 { v } else { 1.0 };
        match self {
            Self::None => None,
            Self::Balanced => Some(w.into_iter().map(fix).collect()),
            Self::SqrtBalanced => Some(w.into_iter().map(|v| fix(v.sqrt())).collect()),
        }
    }
}

impl std::str::FromStr for ClassWeighting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "balanced" => Ok(Self::Balanced),
            "sqrt-balanced" | "sqrt" => Ok(Self::SqrtBalanced),
            _ => Err(format!("unknown class weighting `{s}`; use none, balanced or sqrt-balanced")),
        }
    }
}

impl std::fmt::Display for ClassWeighting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Balanced => "balanced",
            Self::SqrtBalanced => "sqrt-balanced",
        })
    }
}

/// Learning-rate schedule over the optimisation steps of the whole run (`epochs · batches`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// The peak learning rate throughout (after any warmup).
    #[default]
    Constant,
    /// Cosine decay from the peak (after warmup) to 0 at the last step.
    Cosine,
}

/// Optimisation settings. Defaults are the CellSymphony paper's: AdamW, lr 3e-5, batch 64,
/// weight decay 0.01, 20 epochs, balanced class-weighted cross-entropy, constant learning rate,
/// no label smoothing, no early stopping ([`TrainConfig::paper`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    /// AdamW (peak) learning rate.
    pub learning_rate: f64,
    /// Cells per optimisation step.
    pub batch_size: usize,
    /// AdamW decoupled weight decay.
    pub weight_decay: f32,
    /// Passes over the training cells (at most, with early stopping).
    pub epochs: usize,
    /// Seed for weight initialisation and shuffling.
    pub seed: u64,
    /// Loss weights per class.
    #[serde(default)]
    pub class_weighting: ClassWeighting,
    /// Learning-rate schedule after the warmup.
    #[serde(default)]
    pub schedule: LrSchedule,
    /// Share of all optimisation steps spent warming the learning rate up linearly from 0.
    #[serde(default)]
    pub warmup_fraction: f64,
    /// Label smoothing of the cross-entropy targets (0 = none).
    #[serde(default)]
    pub label_smoothing: f32,
    /// Stop when the validation macro-F1 has not improved for this many epochs (needs a
    /// validation set; `None` trains every epoch).
    #[serde(default)]
    pub patience: Option<usize>,
    /// Step budget: train at least this many optimisation steps, i.e. for
    /// [`budget_epochs`](Self::budget_epochs) `= max(epochs, ⌈min_steps / steps per epoch⌉)`
    /// epochs (early stopping still ends the run); `None`: `epochs` alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_steps: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self::paper()
    }
}

impl TrainConfig {
    /// The CellSymphony paper's settings (meant for frozen foundation-model features).
    pub fn paper() -> Self {
        Self {
            learning_rate: 3e-5,
            batch_size: 64,
            weight_decay: 0.01,
            epochs: 20,
            seed: 42,
            class_weighting: ClassWeighting::Balanced,
            schedule: LrSchedule::Constant,
            warmup_fraction: 0.0,
            label_smoothing: 0.0,
            patience: None,
            min_steps: None,
        }
    }

    /// Epochs a run over `n_train` training cells gets: `max(epochs, ⌈min_steps /
    /// steps_per_epoch⌉)` with `steps_per_epoch = ⌈n_train / batch_size⌉` (at least 1), so a
    /// small set still trains `min_steps` steps and a large one at least `epochs` passes.
    pub fn budget_epochs(&self, n_train: usize) -> usize {
        let steps_per_epoch = n_train.div_ceil(self.batch_size.max(1)).max(1);
        self.epochs.max(self.min_steps.map_or(0, |s| s.div_ceil(steps_per_epoch)))
    }

    /// Learning rate of optimisation step `step` (0-based) of a run of `total_steps`: linear
    /// warmup from `peak / warmup_steps` to `peak` over the first `warmup_steps =
    /// ceil(warmup_fraction · total_steps)` steps, then constant or cosine decay to 0 at
    /// step `total_steps` (the last step uses `peak · (1 + cos(π (T−1−w)/(T−w))) / 2`).
    pub fn lr_at(&self, step: usize, total_steps: usize) -> f64 {
        let peak = self.learning_rate;
        let total = total_steps.max(1);
        let warm = ((self.warmup_fraction.clamp(0.0, 1.0) * total as f64).ceil() as usize).min(total);
        if step < warm {
            return peak * (step + 1) as f64 / warm as f64;
        }
        match self.schedule {
            LrSchedule::Constant => peak,
            LrSchedule::Cosine => {
                let span = (total - warm).max(1) as f64;
                let t = ((step - warm) as f64 / span).min(1.0);
                peak * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

/// A named set of optimisation settings; explicit flags override single fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recipe {
    /// From-scratch training (chosen by measurement on the crop and pbmc68k_reduced; see
    /// README "Training recipe").
    Default,
    /// The CellSymphony paper's settings ([`TrainConfig::paper`]).
    Paper,
}

impl Recipe {
    /// `default` / `paper`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Paper => "paper",
        }
    }

    /// The recipe's settings with `seed`.
    pub fn config(self, seed: u64) -> TrainConfig {
        match self {
            Self::Paper => TrainConfig { seed, ..TrainConfig::paper() },
            Self::Default => TrainConfig {
                learning_rate: 1e-3,
                batch_size: 64,
                weight_decay: 0.05,
                epochs: 40,
                seed,
                class_weighting: ClassWeighting::SqrtBalanced,
                schedule: LrSchedule::Cosine,
                warmup_fraction: 0.05,
                label_smoothing: 0.1,
                patience: Some(10),
                min_steps: None,
            },
        }
    }
}

impl std::str::FromStr for Recipe {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "default" => Ok(Self::Default),
            "paper" => Ok(Self::Paper),
            _ => Err(format!("unknown recipe `{s}`; use default or paper")),
        }
    }
}

/// What one epoch achieved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochStats {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean (weighted, smoothed) training loss over the epoch's batches.
    pub train_loss: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Macro-F1 on the validation cells (carved from the training cells); `None` without a
    /// validation set.
    pub val_macro_f1: Option<f64>,
    /// Accuracy on the validation cells.
    pub val_accuracy: Option<f64>,
    /// Wall-clock seconds of the epoch (training + validation).
    pub seconds: f64,
}

/// Receives progress while training (the CLI draws progress bars from it).
pub trait TrainProgress {
    /// After each optimisation step.
    fn batch(&mut self, _epoch: usize, _batch: usize, _n_batches: usize, _loss: f64) {}
    /// After each epoch.
    fn epoch(&mut self, _stats: &EpochStats) {}
}

/// Progress sink that ignores everything.
pub struct NoProgress;
impl TrainProgress for NoProgress {}

pub use crate::util::argmax_rows;

/// A borrowed row-major matrix `[rows, cols]`.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    /// Values `[rows, cols]`.
    pub data: &'a [f32],
    /// Values per row.
    pub cols: usize,
}

impl<'a> Rows<'a> {
    fn rows(&self) -> usize {
        self.data.len() / self.cols.max(1)
    }
    fn gather(&self, idx: &[usize]) -> Vec<f32> {
        let mut v = Vec::with_capacity(idx.len() * self.cols);
        for &i in idx {
            v.extend_from_slice(&self.data[i * self.cols..(i + 1) * self.cols]);
        }
        v
    }
}

/// Every per-cell input available (indexed like the cell table). Absent inputs are `None`.
#[derive(Debug, Clone, Copy)]
pub struct CellInputs<'a> {
    /// Cells.
    pub n_cells: usize,
    /// log1p-cp10k expression `[cells, genes]`.
    pub genes: Option<Rows<'a>>,
    /// Precomputed gene embedding `[cells, dim]`.
    pub gene_embedding: Option<Rows<'a>>,
    /// Patches `[cells, side·side]` (`cols = side²`).
    pub patches: Option<Rows<'a>>,
    /// Precomputed image embedding `[cells, dim]`.
    pub morph_embedding: Option<Rows<'a>>,
    /// Centroids `[cells, 2]` µm.
    pub centroids_um: Option<Rows<'a>>,
}

impl<'a> CellInputs<'a> {
    /// Only gene expression.
    pub fn genes(x: &'a [f32], n_genes: usize) -> Self {
        Self {
            n_cells: x.len() / n_genes.max(1),
            genes: Some(Rows {
                data: x,
                cols: n_genes,
            }),
            gene_embedding: None,
            patches: None,
            morph_embedding: None,
            centroids_um: None,
        }
    }

    /// Check that everything `needs` names is present with the right width and `n_cells` rows.
    pub fn check(&self, needs: &ModelInputs) -> Result<(), TrainError> {
        let want = |name: &'static str,
                    got: Option<Rows<'_>>,
                    cols: Option<usize>|
         -> Result<(), TrainError> {
            let Some(cols) = cols else { return Ok(()) };
            let Some(r) = got else {
                return Err(TrainError::MissingInput {
                    input: name,
                    detail: "the model reads it but none was given".into(),
                });
            };
            if r.cols != cols || r.rows() != self.n_cells || r.data.len() != r.cols * self.n_cells {
                return Err(TrainError::MissingInput {
                    input: name,
                    detail: format!(
                        "expected [{} cells, {cols}], got {} values of width {}",
                        self.n_cells,
                        r.data.len(),
                        r.cols
                    ),
                });
            }
            Ok(())
        };
        want("genes", self.genes, needs.genes)?;
        want("gene_embedding", self.gene_embedding, needs.gene_embedding)?;
        want("patches", self.patches, needs.patches.map(|s| s * s))?;
        want(
            "morph_embedding",
            self.morph_embedding,
            needs.morph_embedding,
        )?;
        want(
            "centroids_um",
            self.centroids_um,
            needs.centroids.then_some(2),
        )?;
        Ok(())
    }

    /// The batch of cells `idx` with the inputs `needs` names (call [`Self::check`] first).
    pub fn batch<B: Backend>(
        &self,
        idx: &[usize],
        needs: &ModelInputs,
        device: &B::Device,
    ) -> CellBatch<B> {
        let n = idx.len();
        let t2 = |r: Option<Rows<'_>>| -> Option<Tensor<B, 2>> {
            r.map(|r| Tensor::from_data(TensorData::new(r.gather(idx), [n, r.cols]), device))
        };
        CellBatch {
            genes: needs.genes.and_then(|_| t2(self.genes)),
            gene_embedding: needs.gene_embedding.and_then(|_| t2(self.gene_embedding)),
            patches: needs.patches.and_then(|side| {
                self.patches.map(|r| {
                    Tensor::from_data(TensorData::new(r.gather(idx), [n, side, side]), device)
                })
            }),
            morph_embedding: needs.morph_embedding.and_then(|_| t2(self.morph_embedding)),
            centroids_um: if needs.centroids {
                t2(self.centroids_um)
            } else {
                None
            },
        }
    }
}

/// Labels and the train / validation / test split (three disjoint sets of cells).
#[derive(Debug, Clone, Copy)]
pub struct LabelledSplit<'a> {
    /// Class per cell (read only at `train`, `val` and `test` indices).
    pub labels: &'a [u32],
    /// Classes.
    pub n_classes: usize,
    /// Cells the gradient sees.
    pub train: &'a [usize],
    /// Validation cells (carved from the training cells), evaluated after every epoch: the
    /// epoch with the best validation macro-F1 is kept, and early stopping watches it. Empty:
    /// the last epoch is kept.
    pub val: &'a [usize],
    /// Test cells, evaluated once after training; never used for any choice.
    pub test: &'a [usize],
}

impl LabelledSplit<'_> {
    /// Fails when train, validation and test cells overlap (a test cell used for selection
    /// would make the test report dishonest).
    pub fn check_disjoint(&self) -> Result<(), TrainError> {
        let n = self.labels.len();
        let mut owner = vec![0u8; n];
        for (set, idx) in [(1u8, self.train), (2, self.val), (3, self.test)] {
            for &i in idx {
                if i >= n {
                    return Err(TrainError::Options(format!("cell index {i} is past the {n} labelled cells")));
                }
                if owner[i] != 0 {
                    let name = |s: u8| ["", "training", "validation", "test"][s as usize];
                    return Err(TrainError::Options(format!(
                        "cell {i} is in both the {} and the {} set; the sets must be disjoint",
                        name(owner[i]),
                        name(set)
                    )));
                }
                owner[i] = set;
            }
        }
        Ok(())
    }
}

/// Where to write checkpoints and whether to resume from one.
#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    /// Folder receiving `checkpoint.bin` after every epoch.
    pub dir: Option<PathBuf>,
    /// Folder holding the `checkpoint.bin` to resume from.
    pub resume: Option<PathBuf>,
}

/// File name of the checkpoint inside its folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.bin";

/// The checkpoint's JSON header.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointHeader {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimisation settings (`epochs` is the run's target).
    pub train_config: TrainConfig,
    /// The model's architecture, as given by the caller (compared on resume).
    pub model_spec: serde_json::Value,
    /// Per-epoch statistics so far.
    pub history: Vec<EpochStats>,
    /// Epoch with the best validation macro-F1 so far (0: none yet / no validation set); its
    /// weights are the checkpoint's last record.
    #[serde(default)]
    pub best_epoch: usize,
    /// How the RNG state of the next epoch is derived.
    pub rng: String,
}

/// Everything a finished run produced.
pub struct TrainedClassifier<M> {
    /// The kept model: the best validation epoch's weights, or the last epoch's without a
    /// validation set (autodiff backend; call `.valid()` for inference).
    pub model: M,
    /// Per-epoch statistics.
    pub history: Vec<EpochStats>,
    /// The epoch whose weights `model` holds.
    pub best_epoch: usize,
    /// Whether early stopping ended the run before `config.epochs`.
    pub stopped_early: bool,
    /// Test report of the kept model.
    pub report: ClassificationReport,
    /// Test logits `[test, classes]` of the kept model.
    pub test_logits: Vec<f32>,
}

/// Logits `[idx.len(), classes]` of a [`Classifier`] in batches of `batch` cells.
pub fn predict_cells<B: Backend>(
    model: &Classifier<B>,
    inputs: &CellInputs<'_>,
    idx: &[usize],
    batch: usize,
    device: &B::Device,
) -> Vec<f32> {
    let needs = model.inputs();
    let mut out = Vec::new();
    for chunk in idx.chunks(batch.max(1)) {
        let logits = model.forward(&inputs.batch::<B>(chunk, &needs, device));
        out.extend(
            logits
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .unwrap_or_default(),
        );
    }
    out
}

fn mix(seed: u64, epoch: usize, salt: u64) -> u64 {
    SplitMix64::new(seed ^ salt ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn bad_checkpoint(path: &Path, problem: impl Into<String>) -> TrainError {
    TrainError::Checkpoint {
        path: path.display().to_string(),
        problem: problem.into(),
    }
}

/// Write the checkpoint atomically (a temporary file beside it, then rename).
fn write_checkpoint(
    dir: &Path,
    header: &CheckpointHeader,
    model: &[u8],
    optim: &[u8],
    best: &[u8],
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let json = serde_json::to_vec(header).map_err(|e| bad_checkpoint(dir, e.to_string()))?;
    write_parts(&dir.join(CHECKPOINT_FILE), &[&json, model, optim, best])
}

/// Writes `parts`, each prefixed by its length (u64, little-endian), to `path` atomically: the
/// container of the training checkpoints (read back by [`read_parts`]).
pub(crate) fn write_parts(path: &Path, parts: &[&[u8]]) -> Result<(), TrainError> {
    let mut out = Vec::with_capacity(8 * parts.len() + parts.iter().map(|p| p.len()).sum::<usize>());
    for part in parts {
        out.extend_from_slice(&(part.len() as u64).to_le_bytes());
        out.extend_from_slice(part);
    }
    Ok(crate::util::write_atomic(path, &out)?)
}

/// Reads the parts named `names` (in order) of a file written by [`write_parts`].
pub(crate) fn read_parts(path: &Path, names: &[&str]) -> Result<Vec<Vec<u8>>, TrainError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let mut parts = Vec::with_capacity(names.len());
    let mut at = 0usize;
    for what in names {
        let len = bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
            .ok_or_else(|| bad_checkpoint(path, format!("truncated before the {what} length; the file is incomplete, resume from an earlier copy or retrain")))?;
        let part = bytes.get(at + 8..at.saturating_add(8).saturating_add(len)).ok_or_else(|| {
            bad_checkpoint(
                path,
                format!("the {what} claims {len} bytes but the file ends first"),
            )
        })?;
        parts.push(part.to_vec());
        at += 8 + len;
    }
    Ok(parts)
}

/// Creates `dir` if needed and checks that a file can be written in it, so a run fails before
/// its epochs rather than after them.
pub fn check_writable(dir: &Path) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    tempfile::NamedTempFile::new_in(dir)
        .map(drop)
        .map_err(|source| TrainError::Io {
            path: format!("{} (output folder is not writable)", dir.display()),
            source,
        })
}

/// A checkpoint read back.
pub struct Checkpoint {
    /// The JSON header.
    pub header: CheckpointHeader,
    /// Model record after the header's epoch.
    pub model: Vec<u8>,
    /// AdamW record after the header's epoch.
    pub optim: Vec<u8>,
    /// Model record of the best validation epoch (empty without a validation set).
    pub best: Vec<u8>,
}

/// Read `dir/checkpoint.bin`: header, model, optimizer and best-epoch model records.
pub fn read_checkpoint(dir: &Path) -> Result<Checkpoint, TrainError> {
    let path = dir.join(CHECKPOINT_FILE);
    let mut parts = read_parts(&path, &["header", "model record", "optimizer record", "best-epoch model record"])?;
    let header: CheckpointHeader = serde_json::from_slice(&parts[0])
        .map_err(|e| bad_checkpoint(&path, format!("header is not valid JSON ({e})")))?;
    let best = parts.pop().unwrap_or_default();
    let optim = parts.pop().unwrap_or_default();
    let model = parts.pop().unwrap_or_default();
    Ok(Checkpoint { header, model, optim, best })
}

/// Train a [`Classifier`] built from `options` (after seeding the backend with
/// `config.seed`), scoring it on `split.val` after every epoch; keep the best validation epoch's
/// weights, stop early after `config.patience` epochs without improvement, then evaluate the
/// kept model once on `split.test`.
///
/// Checkpoints store `options` as the model spec; resume refuses a checkpoint whose spec or
/// optimisation settings differ (other than `epochs`). With `checkpoint.resume`, training
/// continues after the checkpoint's epoch up to `config.epochs` (the schedule is a function of
/// the step and `config.epochs`, so resuming with a different `epochs` changes the schedule).
#[allow(clippy::too_many_arguments)]
pub fn train_classifier<B: AutodiffBackend>(
    options: &ClassifierOptions,
    config: &TrainConfig,
    inputs: &CellInputs<'_>,
    split: &LabelledSplit<'_>,
    class_names: &[String],
    checkpoint: &CheckpointOptions,
    device: &B::Device,
    progress: &mut dyn TrainProgress,
) -> Result<TrainedClassifier<Classifier<B>>, TrainError> {
    let model_spec = serde_json::to_value(options).map_err(|e| TrainError::Options(e.to_string()))?;
    split.check_disjoint()?;
    // The step budget fixes the run's epochs (and so the schedule) from the training cells.
    let config = &TrainConfig { epochs: config.budget_epochs(split.train.len()), ..config.clone() };
    if !(0.0..1.0).contains(&config.label_smoothing) {
        return Err(TrainError::Options(format!(
            "label smoothing {} is outside [0, 1); use e.g. 0.1",
            config.label_smoothing
        )));
    }
    if config.patience.is_some() && split.val.is_empty() {
        return Err(TrainError::Options(
            "early stopping (patience) needs validation cells; give a validation fraction above 0 or no patience".into(),
        ));
    }
    if let Some(dir) = &checkpoint.dir {
        check_writable(dir)?;
    }
    B::seed(device, config.seed);
    let mut model = options.init::<B>(device)?;
    let needs = model.inputs();
    inputs.check(&needs)?;
    let mut optim = AdamWConfig::new()
        .with_weight_decay(config.weight_decay)
        .init::<B, Classifier<B>>();
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();

    let mut history: Vec<EpochStats> = Vec::new();
    let mut start_epoch = 1;
    // (epoch, validation macro-F1, weights) of the best validation epoch so far.
    let mut best: Option<(usize, f64, Classifier<B>)> = None;
    if let Some(dir) = &checkpoint.resume {
        let ck = read_checkpoint(dir)?;
        let header = ck.header;
        let path = dir.join(CHECKPOINT_FILE);
        if header.model_spec != model_spec {
            return Err(bad_checkpoint(&path, format!("was written for model {} but this run builds {}; resume with the same model options", header.model_spec, model_spec)));
        }
        let mut same = header.train_config.clone();
        same.epochs = config.epochs;
        if serde_json::to_value(&same).ok() != serde_json::to_value(config).ok() {
            return Err(bad_checkpoint(&path, format!("was written with training settings {} but this run uses {}; resume with the same settings", serde_json::to_string(&header.train_config).unwrap_or_default(), serde_json::to_string(config).unwrap_or_default())));
        }
        if header.epoch > config.epochs {
            return Err(bad_checkpoint(&path, format!(
                "holds {} trained epochs but this run asks for {}; resume with --epochs {} or more (a resumed run never discards epochs)",
                header.epoch, config.epochs, header.epoch
            )));
        }
        let record = Recorder::<B>::load(&recorder, ck.model, device)
            .map_err(|e| bad_checkpoint(&path, format!("model record does not load ({e})")))?;
        model = model.load_record(record);
        let record = Recorder::<B>::load(&recorder, ck.optim, device)
            .map_err(|e| bad_checkpoint(&path, format!("optimizer record does not load ({e})")))?;
        optim = optim.load_record(record);
        if header.best_epoch > 0 {
            let score = header
                .history
                .iter()
                .find(|h| h.epoch == header.best_epoch)
                .and_then(|h| h.val_macro_f1)
                .ok_or_else(|| bad_checkpoint(&path, format!("names best epoch {} but its history has no validation score for it", header.best_epoch)))?;
            let record = Recorder::<B>::load(&recorder, ck.best, device).map_err(|e| {
                bad_checkpoint(&path, format!("best-epoch model record does not load ({e})"))
            })?;
            best = Some((header.best_epoch, score, model.clone().load_record(record)));
        }
        start_epoch = header.epoch + 1;
        history = header.history;
    }

    let train_labels: Vec<u32> = split.train.iter().map(|&i| split.labels[i]).collect();
    let mut loss_config = CrossEntropyLossConfig::new()
        .with_weights(config.class_weighting.weights(&train_labels, split.n_classes));
    if config.label_smoothing > 0.0 {
        loss_config = loss_config.with_smoothing(Some(config.label_smoothing));
    }
    let loss_fn = loss_config.init(device);
    let val_truth: Vec<u32> = split.val.iter().map(|&i| split.labels[i]).collect();
    let batch_size = config.batch_size.max(1);
    let n_batches = split.train.len().div_ceil(batch_size);
    let total_steps = n_batches * config.epochs;
    let stop = |history: &[EpochStats], best: &Option<(usize, f64, Classifier<B>)>| -> bool {
        match (config.patience, best, history.last()) {
            (Some(p), Some((b, _, _)), Some(last)) => last.epoch - b >= p,
            _ => false,
        }
    };
    let mut stopped_early = false;

    for epoch in start_epoch..=config.epochs {
        if stop(&history, &best) {
            stopped_early = true;
            break;
        }
        let start = Instant::now();
        B::seed(device, mix(config.seed, epoch, 0x0D80_F0D7));
        let mut order = split.train.to_vec();
        order.sort_unstable();
        SplitMix64::new(mix(config.seed, epoch, 0x5EED_CE11)).shuffle(&mut order);
        let mut loss_sum = 0.0;
        let mut lr = config.learning_rate;
        for (b, chunk) in order.chunks(batch_size).enumerate() {
            let batch = inputs.batch::<B>(chunk, &needs, device);
            let y: Vec<i64> = chunk.iter().map(|&i| split.labels[i] as i64).collect();
            let y = Tensor::<B, 1, Int>::from_data(TensorData::new(y, [chunk.len()]), device);
            let loss = loss_fn.forward(model.forward(&batch), y);
            let loss_value = loss.clone().into_scalar().elem::<f64>();
            loss_sum += loss_value;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            lr = config.lr_at((epoch - 1) * n_batches + b, total_steps);
            model = optim.step(lr, model, grads);
            progress.batch(epoch, b + 1, n_batches, loss_value);
        }
        let (val_macro_f1, val_accuracy) = if split.val.is_empty() {
            (None, None)
        } else {
            let logits = predict_cells(&model.valid(), inputs, split.val, 256, device);
            let report = ClassificationReport::new(
                &val_truth,
                &argmax_rows(&logits, split.n_classes),
                class_names,
            );
            (Some(report.macro_f1), Some(report.accuracy))
        };
        if let Some(f1) = val_macro_f1 {
            // Strictly better: ties keep the earlier (shorter-trained) epoch.
            if best.as_ref().is_none_or(|(_, s, _)| f1 > *s) {
                best = Some((epoch, f1, model.clone()));
            }
        }
        let stats = EpochStats {
            epoch,
            train_loss: loss_sum / n_batches.max(1) as f64,
            lr,
            val_macro_f1,
            val_accuracy,
            seconds: start.elapsed().as_secs_f64(),
        };
        progress.epoch(&stats);
        history.push(stats);
        if let Some(dir) = &checkpoint.dir {
            let header = CheckpointHeader {
                epoch,
                train_config: config.clone(),
                model_spec: model_spec.clone(),
                history: history.clone(),
                best_epoch: best.as_ref().map_or(0, |b| b.0),
                rng: "epoch e reseeds the backend with mix(seed, e) and shuffles the sorted training cells with SplitMix64(mix(seed, e)); no state carries over".into(),
            };
            let record = |m: &Classifier<B>| {
                Recorder::<B>::record(&recorder, m.clone().into_record(), ())
                    .map_err(|e| bad_checkpoint(dir, e.to_string()))
            };
            let model_bytes = record(&model)?;
            let optim_bytes = Recorder::<B>::record(&recorder, optim.to_record(), ())
                .map_err(|e| bad_checkpoint(dir, e.to_string()))?;
            let best_bytes = match &best {
                Some((_, _, m)) => record(m)?,
                None => Vec::new(),
            };
            write_checkpoint(dir, &header, &model_bytes, &optim_bytes, &best_bytes)?;
        }
    }
    if !stopped_early && history.last().is_some_and(|h| h.epoch < config.epochs) {
        stopped_early = stop(&history, &best);
    }
    let last_epoch = history.last().map_or(0, |h| h.epoch);
    let (best_epoch, model) = match best {
        Some((e, _, m)) => (e, m),
        None => (last_epoch, model),
    };
    let test_truth: Vec<u32> = split.test.iter().map(|&i| split.labels[i]).collect();
    let test_logits = predict_cells(&model.valid(), inputs, split.test, 256, device);
    let report = ClassificationReport::new(
        &test_truth,
        &argmax_rows(&test_logits, split.n_classes),
        class_names,
    );
    Ok(TrainedClassifier {
        model,
        history,
        best_epoch,
        stopped_early,
        report,
        test_logits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_at_known_steps() {
        let c = TrainConfig {
            learning_rate: 1e-3,
            schedule: LrSchedule::Cosine,
            warmup_fraction: 0.1,
            ..TrainConfig::paper()
        };
        // 100 steps: 10 warmup steps rising linearly to the peak, then cosine to 0.
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(c.lr_at(0, 100), 1e-4));
        assert!(close(c.lr_at(4, 100), 5e-4));
        assert!(close(c.lr_at(9, 100), 1e-3));
        assert!(close(c.lr_at(10, 100), 1e-3), "{}", c.lr_at(10, 100));
        assert!(close(c.lr_at(55, 100), 5e-4), "halfway through the decay: {}", c.lr_at(55, 100));
        assert!(close(c.lr_at(99, 100), 1e-3 * 0.5 * (1.0 + (std::f64::consts::PI * 89.0 / 90.0).cos())));
        assert!(c.lr_at(99, 100) < 1e-6);
        // Monotone after warmup.
        assert!((10..99).all(|s| c.lr_at(s + 1, 100) <= c.lr_at(s, 100)));
        // The paper's settings: constant, no warmup.
        let p = TrainConfig::paper();
        assert!((0..50).all(|s| p.lr_at(s, 50) == 3e-5));
    }

    #[test]
    fn class_weightings() {
        let labels = [0, 0, 0, 0, 1];
        assert_eq!(ClassWeighting::None.weights(&labels, 3), None);
        let b = ClassWeighting::Balanced.weights(&labels, 3).unwrap();
        let s = ClassWeighting::SqrtBalanced.weights(&labels, 3).unwrap();
        assert!((b[0] - 5.0 / 8.0).abs() < 1e-6 && (b[1] - 2.5).abs() < 1e-6);
        assert!((s[1] - 2.5f32.sqrt()).abs() < 1e-6);
        // Absent classes get a positive weight (burn requires it); they contribute nothing.
        assert_eq!(b[2], 1.0);
        assert_eq!("sqrt-balanced".parse::<ClassWeighting>(), Ok(ClassWeighting::SqrtBalanced));
    }
}
