//! `--tune`: a small coordinate-wise search of learning rate, then class weighting, then label
//! smoothing, scored by validation macro-F1 on validation cells carved from a fold's training
//! cells. The search is given the fold's training and validation indices only: its
//! [`LabelledSplit`]s have an empty test set, so the test cells can influence nothing.
//!
//! Stages (each keeps the best setting so far and tries the alternatives of one field):
//! 1. peak learning rate ∈ {base, base / 3, 3 · base} (default recipe: 1e-3, 3.3e-4, 3e-3);
//! 2. class weighting ∈ {chosen so far, none, sqrt-balanced} (the ones not yet tried);
//! 3. label smoothing ∈ {chosen so far, the other of 0 / 0.1}.
//!
//! The incumbent is never retrained, so the default recipe costs 3 + 1 + 1 = 5 short runs (the
//! paper recipe, weighting `balanced`, 6). Each short run trains `min(epochs, max(5, ⌈epochs /
//! 2⌉))` epochs (the default recipe: 20 of 40) with patience `min(5, patience)` and its own warmup + schedule over that budget, and scores the
//! best validation epoch. A candidate replaces the incumbent only with a strictly higher score,
//! so ties keep the recipe's own setting. The chosen learning rate, weighting and smoothing
//! replace the base config's, which the caller then trains in full as usual (the short search
//! runs are discarded).

use serde::Serialize;

use super::trainer::{ClassWeighting, LabelledSplit, TrainConfig};
use super::TrainError;

/// Recipe-name suffix that tunes one recipe of `benchmark --recipes` (`default+tune`) beside
/// untuned ones; `--tune` appends it to every recipe.
pub const TUNE_SUFFIX: &str = "+tune";

/// One setting tried by [`coordinate_search`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TuneTrial {
    /// Stage that tried it: `lr`, `weighting` or `smoothing`.
    pub stage: &'static str,
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

impl TuneTrial {
    /// `lr 1e-3, sqrt-balanced, smoothing 0.1`.
    pub fn setting(&self) -> String {
        format!("lr {:.1e}, {}, smoothing {}", self.learning_rate, self.class_weighting, self.label_smoothing)
    }
}

/// The short-run budget of a search trial: `min(epochs, max(5, ⌈epochs / 2⌉))` epochs (never
/// more than the full run), patience `min(5, patience)` (5 when the recipe has none), half the
/// step budget.
pub fn search_budget(base: &TrainConfig) -> TrainConfig {
    TrainConfig {
        epochs: base.epochs.div_ceil(2).max(5).min(base.epochs),
        patience: Some(base.patience.unwrap_or(5).min(5)),
        min_steps: base.min_steps.map(|s| s / 2),
        ..base.clone()
    }
}

/// Coordinate-wise search from `base` (stages in the module doc). `run` trains one short
/// setting (already on [`search_budget`]) and returns its best validation macro-F1 and that
/// epoch. Returns `base` with the chosen learning rate, weighting and smoothing (budget
/// untouched) and every trial in the order run; exactly one trial is `chosen`, the one with the
/// highest score (the earliest among equals, i.e. the recipe's own setting first).
pub fn coordinate_search(
    base: &TrainConfig,
    run: &mut dyn FnMut(&TrainConfig) -> Result<(f64, usize), TrainError>,
) -> Result<(TrainConfig, Vec<TuneTrial>), TrainError> {
    let short = search_budget(base);
    let mut trials: Vec<TuneTrial> = Vec::new();
    let mut best: Option<usize> = None;
    let mut try_one = |stage: &'static str, c: TrainConfig, trials: &mut Vec<TuneTrial>, best: &mut Option<usize>| -> Result<(), TrainError> {
        let (score, epoch) = run(&c)?;
        trials.push(TuneTrial {
            stage,
            learning_rate: c.learning_rate,
            class_weighting: c.class_weighting,
            label_smoothing: c.label_smoothing,
            val_macro_f1: score,
            best_epoch: epoch,
            chosen: false,
        });
        let i = trials.len() - 1;
        // Strictly higher replaces: ties keep the earlier (recipe) setting. NaN never wins.
        if best.is_none_or(|b| score > trials[b].val_macro_f1) {
            *best = Some(i);
        }
        Ok(())
    };
    // The best trial so far; a typed error, not a panic, should a stage ever run no trial.
    let winner = |best: Option<usize>| best.ok_or_else(|| TrainError::Options("--tune: the search ran no trial (please report this)".into()));
    let incumbent = |trials: &[TuneTrial], best: Option<usize>| -> Result<TrainConfig, TrainError> {
        let w = &trials[winner(best)?];
        Ok(TrainConfig { learning_rate: w.learning_rate, class_weighting: w.class_weighting, label_smoothing: w.label_smoothing, ..short.clone() })
    };
    for lr in [base.learning_rate, base.learning_rate / 3.0, base.learning_rate * 3.0] {
        try_one("lr", TrainConfig { learning_rate: lr, ..short.clone() }, &mut trials, &mut best)?;
    }
    let now = incumbent(&trials, best)?;
    for w in [ClassWeighting::None, ClassWeighting::SqrtBalanced] {
        if w != now.class_weighting {
            try_one("weighting", TrainConfig { class_weighting: w, ..now.clone() }, &mut trials, &mut best)?;
        }
    }
    let now = incumbent(&trials, best)?;
    let other = if now.label_smoothing > 0.0 { 0.0 } else { 0.1 };
    try_one("smoothing", TrainConfig { label_smoothing: other, ..now }, &mut trials, &mut best)?;
    let b = winner(best)?;
    trials[b].chosen = true;
    let w = &trials[b];
    let chosen = TrainConfig {
        learning_rate: w.learning_rate,
        class_weighting: w.class_weighting,
        label_smoothing: w.label_smoothing,
        ..base.clone()
    };
    Ok((chosen, trials))
}

/// [`coordinate_search`] on one fold: every trial gets a [`LabelledSplit`] of `train` (the
/// gradient) and `val` (the score) with **no test cells**; the caller passes the fold's
/// training-side indices only. `train_split(config, split)` trains one short run and returns
/// its best validation macro-F1 and epoch (in `benchmark`: [`super::train_classifier`]).
pub fn tune_on_training_cells(
    base: &TrainConfig,
    labels: &[u32],
    n_classes: usize,
    train: &[usize],
    val: &[usize],
    train_split: &mut dyn FnMut(&TrainConfig, &LabelledSplit<'_>) -> Result<(f64, usize), TrainError>,
) -> Result<(TrainConfig, Vec<TuneTrial>), TrainError> {
    if val.is_empty() {
        return Err(TrainError::Options(
            "--tune needs validation cells to score its trials; give --val-fraction above 0".into(),
        ));
    }
    let split = LabelledSplit { labels, n_classes, train, val, test: &[] };
    split.check_disjoint()?;
    coordinate_search(base, &mut |c| train_split(c, &split))
}
