//! `--tune`: a small search of learning rate × class weighting × label smoothing, scored on the
//! validation cells only (the test cells are not passed in), then the chosen settings.
//!
//! Grid (8 settings): peak learning rate {base, base / 3} × class weights {base's, none (or
//! sqrt-balanced when the base uses none)} × label smoothing {0, 0.1}; each trial trains
//! `max(5, epochs / 2)` epochs with patience `min(5, patience)`, keeping its best validation
//! epoch. The winner is the highest best-epoch validation macro-F1 (ties: the earlier trial,
//! i.e. the base settings first); its learning rate, weighting and smoothing replace the base
//! config's, which is then trained in full by the caller.

use serde::Serialize;

use super::split::Fold;
use super::trainer::{
    train_classifier, CellInputs, CheckpointOptions, ClassWeighting, LabelledSplit, TrainConfig,
    TrainProgress,
};
use super::TrainError;
use crate::model::ClassifierOptions;
use burn::tensor::backend::AutodiffBackend;

/// One setting tried by [`tune_config`].
#[derive(Debug, Clone, Serialize)]
pub struct TuneTrial {
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Class weighting.
    pub class_weighting: ClassWeighting,
    /// Label smoothing.
    pub label_smoothing: f32,
    /// Best validation macro-F1 of the short run.
    pub val_macro_f1: f64,
    /// Its epoch.
    pub best_epoch: usize,
    /// Whether this setting was chosen.
    pub chosen: bool,
}

/// The short-run settings [`tune_config`] tries, in order (the base settings first).
pub fn tune_grid(base: &TrainConfig) -> Vec<TrainConfig> {
    let short = TrainConfig {
        epochs: (base.epochs / 2).max(5),
        patience: Some(base.patience.unwrap_or(5).min(5)),
        min_steps: base.min_steps.map(|s| s / 2),
        ..base.clone()
    };
    let other_weighting = if base.class_weighting == ClassWeighting::None {
        ClassWeighting::SqrtBalanced
    } else {
        ClassWeighting::None
    };
    let mut grid = Vec::with_capacity(8);
    for lr in [base.learning_rate, base.learning_rate / 3.0] {
        for w in [base.class_weighting, other_weighting] {
            for ls in [base.label_smoothing, if base.label_smoothing > 0.0 { 0.0 } else { 0.1 }] {
                grid.push(TrainConfig { learning_rate: lr, class_weighting: w, label_smoothing: ls, ..short.clone() });
            }
        }
    }
    grid
}

/// Run [`tune_grid`] on `fold.train` scored on `fold.val` (the fold's test cells are not
/// given to the trainer), and return `base` with the winner's learning rate, class weighting
/// and label smoothing, plus every trial.
#[allow(clippy::too_many_arguments)]
pub fn tune_config<B: AutodiffBackend>(
    options: &ClassifierOptions,
    base: &TrainConfig,
    inputs: &CellInputs<'_>,
    labels: &[u32],
    n_classes: usize,
    fold: &Fold,
    class_names: &[String],
    device: &B::Device,
    make_progress: &mut dyn FnMut(&TrainConfig) -> Box<dyn TrainProgress>,
) -> Result<(TrainConfig, Vec<TuneTrial>), TrainError> {
    if fold.val.is_empty() {
        return Err(TrainError::Options("--tune needs validation cells; give a validation fraction above 0".into()));
    }
    let split = LabelledSplit { labels, n_classes, train: &fold.train, val: &fold.val, test: &[] };
    let mut trials = Vec::new();
    for c in tune_grid(base) {
        let mut progress = make_progress(&c);
        let t = train_classifier::<B>(options, &c, inputs, &split, class_names, &CheckpointOptions::default(), device, progress.as_mut())?;
        let score = t
            .history
            .iter()
            .find(|h| h.epoch == t.best_epoch)
            .and_then(|h| h.val_macro_f1)
            .unwrap_or(0.0);
        trials.push(TuneTrial {
            learning_rate: c.learning_rate,
            class_weighting: c.class_weighting,
            label_smoothing: c.label_smoothing,
            val_macro_f1: score,
            best_epoch: t.best_epoch,
            chosen: false,
        });
    }
    let best = (0..trials.len())
        .fold(0, |b, i| if trials[i].val_macro_f1 > trials[b].val_macro_f1 { i } else { b });
    trials[best].chosen = true;
    let w = &trials[best];
    let chosen = TrainConfig {
        learning_rate: w.learning_rate,
        class_weighting: w.class_weighting,
        label_smoothing: w.label_smoothing,
        ..base.clone()
    };
    Ok((chosen, trials))
}
