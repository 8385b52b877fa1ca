//! Training loop for the gene-only classifier (generic over burn autodiff backends:
//! ndarray on CPU by default, wgpu or CUDA behind features).

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ElementConversion;
use serde::{Deserialize, Serialize};

use super::metrics::ClassificationReport;
use super::split::balanced_class_weights;
use crate::util::rng::SplitMix64;
use crate::model::{GeneOnlyClassifier, GeneOnlyClassifierConfig};

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

/// Training data: normalised expression of all cells and the split to use.
#[derive(Debug, Clone, Copy)]
pub struct TrainSet<'a> {
    /// Normalised expression `[cells, genes]`.
    pub x: &'a [f32],
    /// Genes per cell.
    pub n_genes: usize,
    /// Class index per cell (read only at `train` and `test` indices).
    pub labels: &'a [u32],
    /// Number of classes.
    pub n_classes: usize,
    /// Cell indices used for optimisation.
    pub train: &'a [usize],
    /// Held-out cell indices evaluated after each epoch.
    pub test: &'a [usize],
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

/// Gather rows `idx` of `x: [cells, genes]` into a `[idx.len(), genes]` tensor.
pub fn rows_tensor<B: Backend>(x: &[f32], n_genes: usize, idx: &[usize], device: &B::Device) -> Tensor<B, 2> {
    let mut v = Vec::with_capacity(idx.len() * n_genes);
    for &i in idx {
        v.extend_from_slice(&x[i * n_genes..(i + 1) * n_genes]);
    }
    Tensor::from_data(TensorData::new(v, [idx.len(), n_genes]), device)
}

/// Logits `[idx.len(), classes]` for the cells `idx`, in batches of `batch` cells.
pub fn predict_logits<B: Backend>(
    model: &GeneOnlyClassifier<B>,
    x: &[f32],
    n_genes: usize,
    idx: &[usize],
    batch: usize,
    device: &B::Device,
) -> Vec<f32> {
    let mut out = Vec::new();
    for chunk in idx.chunks(batch.max(1)) {
        let logits = model.forward(rows_tensor::<B>(x, n_genes, chunk, device));
        out.extend(logits.into_data().convert::<f32>().into_vec::<f32>().expect("f32 logits"));
    }
    out
}

pub use crate::util::argmax_rows;

/// Train a fresh [`GeneOnlyClassifier`] and evaluate on `set.test` after every epoch.
pub fn train_gene_only<B: AutodiffBackend>(
    model_config: &GeneOnlyClassifierConfig,
    config: &TrainConfig,
    set: &TrainSet<'_>,
    class_names: &[String],
    device: &B::Device,
    progress: &mut dyn TrainProgress,
) -> (GeneOnlyClassifier<B>, Vec<EpochStats>) {
    B::seed(device, config.seed);
    let mut model = model_config.init::<B>(device);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(config.weight_decay)
        .init::<B, GeneOnlyClassifier<B>>();
    let train_labels: Vec<u32> = set.train.iter().map(|&i| set.labels[i]).collect();
    let mut loss_config = CrossEntropyLossConfig::new();
    if config.class_weighted {
        loss_config = loss_config.with_weights(Some(balanced_class_weights(&train_labels, set.n_classes)));
    }
    let loss_fn = loss_config.init(device);
    let test_truth: Vec<u32> = set.test.iter().map(|&i| set.labels[i]).collect();

    let mut order = set.train.to_vec();
    let mut rng = SplitMix64::new(config.seed ^ 0x5EED_CE11);
    let n_batches = order.len().div_ceil(config.batch_size.max(1));
    let mut history = Vec::with_capacity(config.epochs);
    for epoch in 1..=config.epochs {
        let start = Instant::now();
        rng.shuffle(&mut order);
        let mut loss_sum = 0.0;
        for (b, chunk) in order.chunks(config.batch_size.max(1)).enumerate() {
            let x = rows_tensor::<B>(set.x, set.n_genes, chunk, device);
            let y: Vec<i64> = chunk.iter().map(|&i| set.labels[i] as i64).collect();
            let y = Tensor::<B, 1, Int>::from_data(TensorData::new(y, [chunk.len()]), device);
            let loss = loss_fn.forward(model.forward(x), y);
            let loss_value = loss.clone().into_scalar().elem::<f64>();
            loss_sum += loss_value;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(config.learning_rate, model, grads);
            progress.batch(epoch, b + 1, n_batches, loss_value);
        }
        let inner = model.valid();
        let logits = predict_logits(&inner, set.x, set.n_genes, set.test, 512, device);
        let report = ClassificationReport::new(&test_truth, &argmax_rows(&logits, set.n_classes), class_names);
        let stats = EpochStats {
            epoch,
            train_loss: loss_sum / n_batches.max(1) as f64,
            test_macro_f1: report.macro_f1,
            test_accuracy: report.accuracy,
            seconds: start.elapsed().as_secs_f64(),
        };
        progress.epoch(&stats);
        history.push(stats);
    }
    (model, history)
}
