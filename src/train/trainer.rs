//! The training loop of every classifier (`train`, `pipeline`, `benchmark`, tests): AdamW, class-weighted cross-entropy,
//! held-out evaluation after each epoch, an atomic checkpoint after each epoch and exact resume.
//!
//! Determinism: epoch `e` reseeds the backend RNG (dropout) with `mix(seed, e)` and shuffles
//! the training cells from their sorted order with a [`SplitMix64`] seeded by `mix(seed, e)`,
//! so the random state at the start of an epoch is a function of `(seed, e)` alone. Together
//! with the model record and the AdamW moments stored in the checkpoint, resuming after epoch
//! `e` replays exactly what a straight run does from epoch `e + 1` on.
//!
//! Checkpoint file `checkpoint.bin` (written to a temporary file, then renamed):
//! `[u64 LE n][n bytes JSON header][u64 LE m][m bytes model record][u64 LE k][k bytes AdamW
//! record]`; records are burn's bincode at full precision. The header ([`CheckpointHeader`])
//! holds the epoch, the training config, the model spec (free JSON from the caller), the history
//! and the RNG derivation.

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

/// Optimisation settings. Defaults are the CellSymphony paper's: AdamW, lr 3e-5, batch 64,
/// weight decay 0.01, 20 epochs, class-weighted cross-entropy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// Cells per optimisation step.
    pub batch_size: usize,
    /// AdamW decoupled weight decay.
    pub weight_decay: f32,
    /// Passes over the training cells.
    pub epochs: usize,
    /// Seed for weight initialisation and shuffling.
    pub seed: u64,
    /// Weight the loss by inverse class frequency (balanced).
    pub class_weighted: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            learning_rate: 3e-5,
            batch_size: 64,
            weight_decay: 0.01,
            epochs: 20,
            seed: 42,
            class_weighted: true,
        }
    }
}

/// What one epoch achieved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochStats {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean (class-weighted) training loss over the epoch's batches.
    pub train_loss: f64,
    /// Macro-F1 on the held-out cells.
    pub test_macro_f1: f64,
    /// Accuracy on the held-out cells.
    pub test_accuracy: f64,
    /// Wall-clock seconds of the epoch (training + evaluation).
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

/// Labels and the train/held-out split.
#[derive(Debug, Clone, Copy)]
pub struct LabelledSplit<'a> {
    /// Class per cell (read only at `train` and `test` indices).
    pub labels: &'a [u32],
    /// Classes.
    pub n_classes: usize,
    /// Training cells.
    pub train: &'a [usize],
    /// Held-out cells, evaluated after every epoch.
    pub test: &'a [usize],
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
    /// How the RNG state of the next epoch is derived.
    pub rng: String,
}

/// Everything a finished run produced.
pub struct TrainedClassifier<M> {
    /// The trained model (autodiff backend; call `.valid()` for inference).
    pub model: M,
    /// Per-epoch statistics.
    pub history: Vec<EpochStats>,
    /// Held-out report after the last epoch.
    pub report: ClassificationReport,
    /// Held-out logits `[test, classes]` after the last epoch.
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
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let json = serde_json::to_vec(header).map_err(|e| bad_checkpoint(dir, e.to_string()))?;
    let mut out = Vec::with_capacity(24 + json.len() + model.len() + optim.len());
    for part in [&json[..], model, optim] {
        out.extend_from_slice(&(part.len() as u64).to_le_bytes());
        out.extend_from_slice(part);
    }
    Ok(crate::util::write_atomic(&dir.join(CHECKPOINT_FILE), &out)?)
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

/// Read `dir/checkpoint.bin` into its header and the model and optimizer record bytes.
pub fn read_checkpoint(dir: &Path) -> Result<(CheckpointHeader, Vec<u8>, Vec<u8>), TrainError> {
    let path = dir.join(CHECKPOINT_FILE);
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    let mut parts = Vec::new();
    let mut at = 0usize;
    for what in ["header", "model record", "optimizer record"] {
        let len = bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
            .ok_or_else(|| bad_checkpoint(&path, format!("truncated before the {what} length; the file is incomplete, resume from an earlier copy or retrain")))?;
        let part = bytes.get(at + 8..at + 8 + len).ok_or_else(|| {
            bad_checkpoint(
                &path,
                format!("the {what} claims {len} bytes but the file ends first"),
            )
        })?;
        parts.push(part.to_vec());
        at += 8 + len;
    }
    let header: CheckpointHeader = serde_json::from_slice(&parts[0])
        .map_err(|e| bad_checkpoint(&path, format!("header is not valid JSON ({e})")))?;
    let optim = parts.pop().unwrap_or_default();
    let model = parts.pop().unwrap_or_default();
    Ok((header, model, optim))
}

/// Train a [`Classifier`] built from `options` (after seeding the backend with
/// `config.seed`) and evaluate it on `split.test` after every epoch.
///
/// Checkpoints store `options` as the model spec; resume refuses a checkpoint whose spec or
/// optimisation settings differ (other than `epochs`). With `checkpoint.resume`, training
/// continues after the checkpoint's epoch up to `config.epochs`.
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

    let mut history = Vec::new();
    let mut start_epoch = 1;
    if let Some(dir) = &checkpoint.resume {
        let (header, model_bytes, optim_bytes) = read_checkpoint(dir)?;
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
        let record = Recorder::<B>::load(&recorder, model_bytes, device)
            .map_err(|e| bad_checkpoint(&path, format!("model record does not load ({e})")))?;
        model = model.load_record(record);
        let record = Recorder::<B>::load(&recorder, optim_bytes, device)
            .map_err(|e| bad_checkpoint(&path, format!("optimizer record does not load ({e})")))?;
        optim = optim.load_record(record);
        start_epoch = header.epoch + 1;
        history = header.history;
    }

    let train_labels: Vec<u32> = split.train.iter().map(|&i| split.labels[i]).collect();
    let mut loss_config = CrossEntropyLossConfig::new();
    if config.class_weighted {
        loss_config =
            loss_config.with_weights(Some(balanced_class_weights(&train_labels, split.n_classes)));
    }
    let loss_fn = loss_config.init(device);
    let test_truth: Vec<u32> = split.test.iter().map(|&i| split.labels[i]).collect();
    let batch_size = config.batch_size.max(1);
    let n_batches = split.train.len().div_ceil(batch_size);
    let mut last: Option<(ClassificationReport, Vec<f32>)> = None;

    for epoch in start_epoch..=config.epochs {
        let start = Instant::now();
        B::seed(device, mix(config.seed, epoch, 0x0D80_F0D7));
        let mut order = split.train.to_vec();
        order.sort_unstable();
        SplitMix64::new(mix(config.seed, epoch, 0x5EED_CE11)).shuffle(&mut order);
        let mut loss_sum = 0.0;
        for (b, chunk) in order.chunks(batch_size).enumerate() {
            let batch = inputs.batch::<B>(chunk, &needs, device);
            let y: Vec<i64> = chunk.iter().map(|&i| split.labels[i] as i64).collect();
            let y = Tensor::<B, 1, Int>::from_data(TensorData::new(y, [chunk.len()]), device);
            let loss = loss_fn.forward(model.forward(&batch), y);
            let loss_value = loss.clone().into_scalar().elem::<f64>();
            loss_sum += loss_value;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(config.learning_rate, model, grads);
            progress.batch(epoch, b + 1, n_batches, loss_value);
        }
        let inner = model.valid();
        let logits = predict_cells(&inner, inputs, split.test, 256, device);
        let report = ClassificationReport::new(
            &test_truth,
            &argmax_rows(&logits, split.n_classes),
            class_names,
        );
        let stats = EpochStats {
            epoch,
            train_loss: loss_sum / n_batches.max(1) as f64,
            test_macro_f1: report.macro_f1,
            test_accuracy: report.accuracy,
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
                rng: "epoch e reseeds the backend with mix(seed, e) and shuffles the sorted training cells with SplitMix64(mix(seed, e)); no state carries over".into(),
            };
            let model_bytes = Recorder::<B>::record(&recorder, model.clone().into_record(), ())
                .map_err(|e| bad_checkpoint(dir, e.to_string()))?;
            let optim_bytes = Recorder::<B>::record(&recorder, optim.to_record(), ())
                .map_err(|e| bad_checkpoint(dir, e.to_string()))?;
            write_checkpoint(dir, &header, &model_bytes, &optim_bytes)?;
        }
        last = Some((report, logits));
    }
    let (report, test_logits) = match last {
        Some(l) => l,
        None => {
            // Nothing left to train (resumed at or past the target): evaluate as is.
            let logits = predict_cells(&model.valid(), inputs, split.test, 256, device);
            (
                ClassificationReport::new(
                    &test_truth,
                    &argmax_rows(&logits, split.n_classes),
                    class_names,
                ),
                logits,
            )
        }
    };
    Ok(TrainedClassifier {
        model,
        history,
        report,
        test_logits,
    })
}
