//! The four classifiers, their encoders, the shared trainer (checkpoint + exact resume), the
//! embedding reader, and the `benchmark` subcommand end to end on the real crop.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use burn::prelude::*;

use cellsymphony::util::rng::SplitMix64;
use cellsymphony::engine::{
    centre_token_indices, Architecture, ClassifierConfig, MorphologyTokenConfig, TokenSources,
};
use cellsymphony::model::classifier::{relative_bias_buckets, relative_bias_index};
use cellsymphony::model::{
    CellBatch, Classifier, ClassifierOptions, MorphologyEncoderConfig, SpatialEncoderConfig,
};
use cellsymphony::train::embeddings::{read_embeddings, write_npy};
use cellsymphony::train::export::named_parameters;
use cellsymphony::train::trainer::{
    predict_cells, read_checkpoint, train_classifier, CellInputs, CheckpointOptions, LabelledSplit, Rows,
};
use cellsymphony::train::{ClassWeighting, LrSchedule, NoProgress, TrainConfig, TrainError};

type B = NdArray<f32>;
type AB = Autodiff<NdArray<f32>>;

/// burn's ndarray RNG (init and dropout) is process-global: tests that seed it and train run
/// one at a time.
static RNG: Mutex<()> = Mutex::new(());


fn vit(size: usize, patch: usize) -> MorphologyEncoderConfig {
    MorphologyEncoderConfig::new()
        .with_image_size(size)
        .with_vit_patch(patch)
        .with_width(16)
        .with_n_heads(2)
        .with_d_ff(32)
        .with_feature_layer(1)
}

/// The spec form of [`vit`]: the morphology token of the classifiers below.
fn morph(size: usize, patch: usize) -> MorphologyTokenConfig {
    MorphologyTokenConfig {
        image_size: size,
        vit_patch: patch,
        width: 16,
        n_heads: 2,
        d_ff: 32,
        n_layers: 1,
        k_nearest: 4,
        um_per_px: 0.75,
    }
}

/// `arch` over `genes` genes and `classes` classes: width 16, 2 heads, feed-forward 32,
/// `layers` layers, 4 gene tokens, a [`morph`]`(size, 4)` ViT and the default centroid
/// sinusoid where the architecture has those tokens; dropout `dropout`.
fn options(
    arch: Architecture,
    genes: usize,
    classes: usize,
    size: usize,
    layers: usize,
    dropout: f64,
) -> ClassifierOptions {
    let spec = ClassifierConfig {
        d_model: 16,
        n_heads: 2,
        d_ff: 32,
        n_layers: layers,
        ..ClassifierConfig::new(genes, classes)
    };
    let sources = TokenSources {
        morphology: morph(size, 4),
        ..TokenSources::default()
    };
    ClassifierOptions::new(spec.for_architecture(arch, &sources)).with_dropout(dropout)
}

fn batch(n: usize, genes: usize, size: usize, device: &burn::tensor::Device<B>) -> CellBatch<B> {
    let mut rng = SplitMix64::new(1);
    let mut t2 = |cols: usize| {
        let v: Vec<f32> = (0..n * cols).map(|_| rng.next_f32()).collect();
        Tensor::<B, 2>::from_data(TensorData::new(v, [n, cols]), device)
    };
    let genes = t2(genes);
    let centroids = t2(2).mul_scalar(1000.0);
    let patches = t2(size * size).reshape([n, size, size]);
    CellBatch {
        genes: Some(genes),
        gene_embedding: None,
        patches: Some(patches),
        morph_embedding: None,
        centroids_um: Some(centroids),
    }
}

#[test]
fn every_classifier_maps_a_batch_to_class_logits() {
    let device = Default::default();
    let b = batch(3, 10, 16, &device);
    let (g, k) = (10, 5);
    let init = |arch: Architecture| -> Classifier<B> {
        let m = options(arch, g, k, 16, 2, 0.1)
            .init::<B>(&device)
            .unwrap_or_else(|e| panic!("{arch}: {e}"));
        assert_eq!(m.spec.kind().unwrap(), arch);
        m
    };
    let go = init(Architecture::GeneOnly);
    let sp = init(Architecture::Spatial);
    let du = init(Architecture::DualModality);
    let mi = init(Architecture::MultiInput);
    for (name, logits) in [
        ("gene-only", go.forward(&b)),
        ("spatial", sp.forward(&b)),
        ("dual", du.forward(&b)),
        ("multi", mi.forward(&b)),
    ] {
        assert_eq!(logits.dims(), [3, k], "{name}");
        let v = logits.into_data().into_vec::<f32>().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{name}: {v:?}");
        // Different cells give different logits (the inputs reach the head).
        assert!(
            (v[0] - v[k]).abs() > 1e-7 || (v[1] - v[k + 1]).abs() > 1e-7,
            "{name}: {v:?}"
        );
    }
    assert!(
        du.inputs().patches == Some(16) && du.inputs().genes == Some(10) && !du.inputs().centroids
    );
    assert!(mi.inputs().centroids && sp.inputs().centroids && sp.inputs().patches.is_none());
    assert!(
        go.inputs().genes == Some(10) && go.inputs().patches.is_none() && !go.inputs().centroids
    );

    // Morphology encoder: one cell token per cell; the builder and the spec describe the same ViT.
    assert_eq!(vit(16, 4).to_spec(0.75), morph(16, 4));
    assert_eq!(
        MorphologyEncoderConfig::from_spec(&morph(16, 4), 16, 0.1, 1e-5).to_spec(0.75),
        morph(16, 4)
    );
    let m = vit(16, 4).with_d_model(16).init::<B>(&device);
    assert_eq!(m.forward(b.patches.clone().unwrap()).dims(), [3, 1, 16]);
    assert_eq!(m.tokens(b.patches.clone().unwrap()).dims(), [3, 16, 16]);

    // Multi-input: the relative bias has one [heads, n, n] slice per pair of the 4 + 2 tokens.
    // Only the multi-input architecture has one.
    assert_eq!(mi.attention_bias().map(|t| t.dims()), Some([2, 6, 6]));
    assert!(
        go.attention_bias().is_none()
            && sp.attention_bias().is_none()
            && du.attention_bias().is_none()
    );
    let names: Vec<(String, Vec<usize>)> = named_parameters(&mi)
        .into_iter()
        .map(|(n, s, _)| (n, s))
        .collect();
    assert!(
        names.contains(&("relative_bias".into(), vec![relative_bias_buckets(4), 2])),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|(n, s)| n == "morphology.vit.patch_embedding.weight" && s == &vec![16, 16]),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|(n, _)| n == "core.encoder.layers.1.attn.q.weight"),
        "{names:?}"
    );
    // Every token source of the one module under its own path (burn's Linear is [in, out]):
    // gene tokens, centroid token, and the modality table (gene, morphology, spatial rows).
    for (name, shape) in [
        ("genes.counts.embedding.weight", vec![g, 4 * 16]),
        ("genes.counts.token_type", vec![4, 16]),
        ("spatial.projection.weight", vec![4 * 16, 16]),
        ("modality", vec![3, 16]),
        ("core.head.weight", vec![16, k]),
    ] {
        assert!(
            names.iter().any(|(n, s)| n == name && s == &shape),
            "{name} {shape:?}: {names:?}"
        );
    }
    // The gene-only architecture is the paper's unimodal model: gene tokens, encoder and
    // head only — no modality table, bias, ViT or centroid projection.
    let gene_only: Vec<String> = named_parameters(&go)
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    assert!(
        gene_only
            .iter()
            .all(|n| n.starts_with("genes.counts.") || n.starts_with("core.")),
        "{gene_only:?}"
    );
    assert!(
        gene_only.iter().any(|n| n == "core.head.weight"),
        "{gene_only:?}"
    );
}

#[test]
fn unfold_centre_tokens_relative_buckets_and_sinusoids_are_exact() {
    let device = Default::default();
    // Pixel value = its row-major index; 8×8 image, 4×4 ViT patches → 2×2 tokens.
    let m = vit(8, 4).init::<B>(&device);
    let img = Tensor::<B, 1>::from_data(
        TensorData::new((0..64).map(|v| v as f32).collect::<Vec<_>>(), [64]),
        &device,
    )
    .reshape([1, 8, 8]);
    let u = m.unfold(img).into_data().into_vec::<f32>().unwrap();
    // Token 1 (top-right) starts at pixel (0, 4) = 4, then (0, 5), ...; its second row starts at 12.
    assert_eq!(&u[16..21], &[4.0, 5.0, 6.0, 7.0, 12.0]);
    // Token 2 (bottom-left) starts at pixel (4, 0) = 32.
    assert_eq!(u[32], 32.0);

    let mut c = centre_token_indices(4, 4);
    c.sort();
    assert_eq!(c, vec![5, 6, 9, 10]);
    assert_eq!(centre_token_indices(3, 1), vec![4]);

    let idx = relative_bias_index(3);
    let n = 5;
    assert_eq!(idx.len(), n * n);
    assert!(idx.iter().all(|&b| b < relative_bias_buckets(3)));
    // Gene pairs with equal offsets share a bucket; different offsets do not.
    assert_eq!(idx[0 * n + 1], idx[1 * n + 2]);
    assert_ne!(idx[0 * n + 1], idx[1 * n + 0]);
    // Gene→morphology, morphology→gene and morphology→spatial are distinct buckets.
    let (gm, mg, ms) = (idx[0 * n + 3], idx[3 * n + 0], idx[3 * n + 4]);
    assert!(gm != mg && mg != ms && gm != ms);

    let sp = SpatialEncoderConfig::new(8)
        .with_n_frequencies(2)
        .with_min_wavelength_um(10.0)
        .with_max_wavelength_um(40.0)
        .init::<B>(&device);
    let xy = Tensor::<B, 2>::from_data(TensorData::new(vec![2.5f32, 10.0], [1, 2]), &device);
    let f = sp.features(xy).into_data().into_vec::<f32>().unwrap();
    // x = 2.5 µm: sin(2π·2.5/10) = 1, sin(2π·2.5/40); cos terms follow; then y = 10 µm.
    let want = [
        1.0,
        (std::f32::consts::PI / 8.0).sin(),
        0.0,
        (std::f32::consts::PI / 8.0).cos(),
        0.0,
        1.0,
        1.0,
        0.0,
    ];
    for (a, b) in f.iter().zip(want) {
        assert!((a - b).abs() < 1e-5, "{f:?}");
    }
}

/// Synthetic cells whose class is visible only in the patch brightness; genes are pure noise.
struct Planted {
    genes: Vec<f32>,
    patches: Vec<f32>,
    centroids: Vec<f32>,
    labels: Vec<u32>,
    train: Vec<usize>,
    test: Vec<usize>,
}

const G: usize = 12;
const S: usize = 8;

fn planted(n: usize) -> Planted {
    let mut rng = SplitMix64::new(77);
    let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
    let genes = (0..n * G)
        .map(|_| (1.0 + 3.0 * rng.next_f32()).ln())
        .collect();
    let mut patches = Vec::with_capacity(n * S * S);
    for &l in &labels {
        let level = 0.2 + 0.3 * l as f32;
        for r in 0..S {
            for c in 0..S {
                let centre = (2..6).contains(&r) && (2..6).contains(&c);
                patches.push(if centre {
                    level + 0.1 * rng.normal()
                } else {
                    0.05 * rng.next_f32()
                });
            }
        }
    }
    let centroids = (0..n * 2).map(|_| rng.uniform(0.0, 500.0)).collect();
    let test: Vec<usize> = (0..n).filter(|i| i % 5 == 0).collect();
    let train: Vec<usize> = (0..n).filter(|i| i % 5 != 0).collect();
    Planted {
        genes,
        patches,
        centroids,
        labels,
        train,
        test,
    }
}

impl Planted {
    fn inputs(&self) -> CellInputs<'_> {
        CellInputs {
            n_cells: self.labels.len(),
            genes: Some(Rows {
                data: &self.genes,
                cols: G,
            }),
            gene_embedding: None,
            patches: Some(Rows {
                data: &self.patches,
                cols: S * S,
            }),
            morph_embedding: None,
            centroids_um: Some(Rows {
                data: &self.centroids,
                cols: 2,
            }),
        }
    }
    fn split(&self) -> LabelledSplit<'_> {
        LabelledSplit {
            labels: &self.labels,
            n_classes: 3,
            train: &self.train,
            val: &[],
            test: &self.test,
        }
    }
    /// Validation cells (i % 5 == 1) carved from the training cells.
    fn val(&self) -> (Vec<usize>, Vec<usize>) {
        self.train.iter().partition(|&&i| i % 5 != 1)
    }
}

fn names() -> Vec<String> {
    ["dim", "mid", "bright"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn morphology_is_needed_and_used_when_only_the_patch_holds_the_class() {
    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let data = planted(300);
    let device = Default::default();
    let config = TrainConfig {
        learning_rate: 2e-3,
        batch_size: 32,
        weight_decay: 0.01,
        epochs: 12,
        seed: 5,
        ..TrainConfig::paper()
    };
    let gene_cfg = options(Architecture::GeneOnly, G, 3, S, 2, 0.0);
    let gene = train_classifier::<AB>(
        &gene_cfg,
        &config,
        &data.inputs(),
        &data.split(),
        &names(),
        &CheckpointOptions::default(),
        &device,
        &mut NoProgress,
    )
    .unwrap();
    let dual_cfg = options(Architecture::DualModality, G, 3, S, 2, 0.0);
    let dual = train_classifier::<AB>(
        &dual_cfg,
        &config,
        &data.inputs(),
        &data.split(),
        &names(),
        &CheckpointOptions::default(),
        &device,
        &mut NoProgress,
    )
    .unwrap();
    let (fg, fd) = (gene.report.macro_f1, dual.report.macro_f1);
    assert!(fd > 0.9, "dual-modality macro-F1 {fd} (gene-only {fg})");
    assert!(
        fg < 0.6,
        "gene-only cannot know the class from noise genes: macro-F1 {fg}"
    );
    eprintln!("planted morphology: dual-modality macro-F1 {fd:.3}, gene-only {fg:.3}");
}

fn max_param_diff<M1: burn::module::Module<B>>(a: &M1, b: &M1) -> f32 {
    let (pa, pb) = (named_parameters(a), named_parameters(b));
    assert_eq!(pa.len(), pb.len());
    pa.iter()
        .zip(&pb)
        .map(|((na, _, va), (nb, _, vb))| {
            assert_eq!(na, nb);
            va.iter()
                .zip(vb)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max)
        })
        .fold(0.0, f32::max)
}

#[test]
fn two_epochs_then_resume_two_equals_four_straight() {
    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let data = planted(120);
    let device = Default::default();
    let cfg = options(Architecture::MultiInput, G, 3, S, 2, 0.1);
    // Smoothing, sqrt weights and a validation set whose best epoch is kept (tracked across
    // the resume). The schedule is constant here: a warmup/cosine schedule spans
    // `config.epochs`, so a 2-epoch run continued to 4 follows a different schedule than a
    // straight 4-epoch run by design.
    let config = |epochs| TrainConfig {
        learning_rate: 1e-3,
        batch_size: 16,
        weight_decay: 0.01,
        epochs,
        seed: 9,
        class_weighting: ClassWeighting::SqrtBalanced,
        schedule: LrSchedule::Constant,
        warmup_fraction: 0.0,
        label_smoothing: 0.1,
        patience: Some(10),
        min_steps: None,
    };
    let (train, val) = data.val();
    let split = LabelledSplit { labels: &data.labels, n_classes: 3, train: &train, val: &val, test: &data.test };
    let run = |epochs, ckpt: &CheckpointOptions| {
        train_classifier::<AB>(
            &cfg,
            &config(epochs),
            &data.inputs(),
            &split,
            &names(),
            ckpt,
            &device,
            &mut NoProgress,
        )
    };
    let straight = run(4, &CheckpointOptions::default()).unwrap();
    let dir = common::scratch("resume");
    let first = run(
        2,
        &CheckpointOptions {
            dir: Some(dir.to_path_buf()),
            resume: None,
        },
    )
    .unwrap();
    assert_eq!(first.history.len(), 2);
    assert!(dir.join("checkpoint.bin").exists());
    let after_two = read_checkpoint(&dir).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(&*dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left beside the checkpoint: {leftovers:?}");
    let resumed = run(
        4,
        &CheckpointOptions {
            dir: Some(dir.to_path_buf()),
            resume: Some(dir.to_path_buf()),
        },
    )
    .unwrap();

    assert_eq!(resumed.history.len(), 4);
    let diff = max_param_diff(&straight.model.valid(), &resumed.model.valid());
    assert!(diff <= 1e-6, "weights differ by {diff}");
    for (a, b) in straight.history.iter().zip(&resumed.history) {
        assert!(
            (a.train_loss - b.train_loss).abs() <= 1e-6,
            "epoch {}: {} vs {}",
            a.epoch,
            a.train_loss,
            b.train_loss
        );
        // Epochs 1–2 of the resumed run come from the checkpoint's JSON header.
        // (Same validation predictions; the macro-F1 may differ in the last bit of its sum.)
        let (va, vb) = (a.val_macro_f1.expect("validation score"), b.val_macro_f1.expect("validation score"));
        assert!((va - vb).abs() <= 1e-12, "epoch {}: validation macro-F1 {va} vs {vb}", a.epoch);
    }
    assert_eq!(straight.best_epoch, resumed.best_epoch, "best validation epoch");
    assert_eq!(straight.report.confusion, resumed.report.confusion);
    // Training actually moved the weights between epoch 2 and 4 (the test is not vacuous), and
    // the checkpoint names the kept epoch and holds its weights.
    let after_four = read_checkpoint(&dir).unwrap();
    assert_ne!(after_two.model, after_four.model);
    assert_eq!(after_four.header.best_epoch, resumed.best_epoch);
    assert!(!after_four.best.is_empty());
    let best_f1 = resumed.history[resumed.best_epoch - 1].val_macro_f1.unwrap();
    assert!(resumed.history.iter().all(|h| h.val_macro_f1.unwrap() <= best_f1));

    // A different architecture or learning rate refuses the checkpoint, naming it.
    let other = options(Architecture::MultiInput, G, 3, S, 1, 0.1);
    let err = train_classifier::<AB>(
        &other,
        &config(4),
        &data.inputs(),
        &split,
        &names(),
        &CheckpointOptions {
            dir: None,
            resume: Some(dir.to_path_buf()),
        },
        &device,
        &mut NoProgress,
    )
    .err()
    .expect("mismatched model must be refused");
    assert!(
        matches!(err, TrainError::Checkpoint { .. }) && err.to_string().contains("checkpoint.bin"),
        "{err}"
    );
    let mut lr = config(4);
    lr.learning_rate = 1e-2;
    let err = train_classifier::<AB>(
        &cfg,
        &lr,
        &data.inputs(),
        &split,
        &names(),
        &CheckpointOptions {
            dir: None,
            resume: Some(dir.to_path_buf()),
        },
        &device,
        &mut NoProgress,
    )
    .err()
    .expect("changed settings must be refused");
    assert!(err.to_string().contains("same settings"), "{err}");

    // Fewer epochs than the checkpoint holds would silently keep the longer model: refused.
    let err = run(
        1,
        &CheckpointOptions {
            dir: None,
            resume: Some(dir.to_path_buf()),
        },
    )
    .err()
    .expect("fewer epochs than the checkpoint must be refused");
    assert!(err.to_string().contains("holds 4 trained epochs") && err.to_string().contains("--epochs 4"), "{err}");
    // A missing checkpoint is an error naming it, not a fresh start.
    let err = run(
        1,
        &CheckpointOptions {
            dir: None,
            resume: Some(dir.join("nowhere")),
        },
    )
    .err()
    .expect("missing checkpoint must be refused");
    assert!(err.to_string().contains("nowhere"), "{err}");

    // A truncated checkpoint is a clear error, not a panic.
    let bytes = std::fs::read(dir.join("checkpoint.bin")).unwrap();
    std::fs::write(dir.join("checkpoint.bin"), &bytes[..bytes.len() / 2]).unwrap();
    let err = run(
        4,
        &CheckpointOptions {
            dir: None,
            resume: Some(dir.to_path_buf()),
        },
    )
    .err()
    .expect("truncated");
    assert!(err.to_string().contains("file ends first"), "{err}");
}

/// The step budget: `budget_epochs = max(epochs, ⌈min_steps / ⌈n_train / batch⌉⌉)`, and the
/// trainer runs exactly that many epochs (no early stopping here), its cosine reaching 0 at
/// the budget's last step.
#[test]
fn the_step_budget_sets_the_epochs_the_trainer_runs() {
    let c = TrainConfig { epochs: 40, batch_size: 64, min_steps: Some(3000), ..TrainConfig::paper() };
    // 455 cells: 8 steps per epoch, ⌈3000 / 8⌉ = 375 epochs; 2,050 cells: 33 steps, 91 epochs.
    assert_eq!(c.budget_epochs(455), 375);
    assert_eq!(c.budget_epochs(2050), 91);
    // 200,000 cells: 3,125 steps per epoch already exceed the budget; `epochs` decides.
    assert_eq!(c.budget_epochs(200_000), 40);
    assert_eq!(TrainConfig { min_steps: None, ..c.clone() }.budget_epochs(455), 40);
    assert_eq!(TrainConfig { min_steps: Some(0), ..c }.budget_epochs(455), 40);

    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let data = planted(150);
    let device = Default::default();
    let cfg = options(Architecture::GeneOnly, G, 3, S, 1, 0.0);
    let (train, val) = data.val();
    let steps_per_epoch = train.len().div_ceil(32);
    let config = TrainConfig {
        learning_rate: 1e-3,
        batch_size: 32,
        epochs: 2,
        seed: 3,
        schedule: LrSchedule::Cosine,
        min_steps: Some(4 * steps_per_epoch + 1),
        ..TrainConfig::paper()
    };
    assert_eq!(config.budget_epochs(train.len()), 5);
    let split = LabelledSplit { labels: &data.labels, n_classes: 3, train: &train, val: &val, test: &data.test };
    let t = train_classifier::<AB>(&cfg, &config, &data.inputs(), &split, &names(), &CheckpointOptions::default(), &device, &mut NoProgress).unwrap();
    assert_eq!(t.history.len(), 5, "a 2-epoch recipe with a {}-step budget runs 5 epochs", 4 * steps_per_epoch + 1);
    // The cosine spans the budget's steps, not the recipe's 2 epochs.
    let total = 5 * steps_per_epoch;
    for h in &t.history {
        assert_eq!(h.lr, config.lr_at(h.epoch * steps_per_epoch - 1, total), "epoch {}", h.epoch);
    }
    assert!(t.history[1].lr > 0.5 * config.learning_rate, "epoch 2 is mid-schedule: {}", t.history[1].lr);
}

/// The kept model is the best validation epoch's (first maximum), early stopping ends the run
/// `patience` epochs after it, and test cells can never double as validation cells.
#[test]
fn best_validation_epoch_is_kept_and_early_stopping_ends_the_run() {
    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let data = planted(150);
    let device = Default::default();
    // Gene-only on noise genes: the validation score wanders, so patience 2 stops the run.
    let cfg = options(Architecture::GeneOnly, G, 3, S, 1, 0.0);
    let config = TrainConfig {
        learning_rate: 3e-3,
        batch_size: 16,
        epochs: 25,
        seed: 3,
        patience: Some(2),
        ..TrainConfig::paper()
    };
    let (train, val) = data.val();
    let split = LabelledSplit { labels: &data.labels, n_classes: 3, train: &train, val: &val, test: &data.test };
    let t = train_classifier::<AB>(&cfg, &config, &data.inputs(), &split, &names(), &CheckpointOptions::default(), &device, &mut NoProgress).unwrap();
    let scores: Vec<f64> = t.history.iter().map(|h| h.val_macro_f1.unwrap()).collect();
    let best = scores.iter().cloned().fold(f64::MIN, f64::max);
    let first_best = scores.iter().position(|&s| s == best).unwrap() + 1;
    assert_eq!(t.best_epoch, first_best, "{scores:?}");
    assert!(t.stopped_early && t.history.len() < 25, "ran {} epochs: {scores:?}", t.history.len());
    assert_eq!(t.history.len(), t.best_epoch + 2, "stops `patience` epochs after the best: {scores:?}");
    // The returned weights are the best epoch's: they reproduce its validation score.
    let inner = t.model.valid();
    let logits = predict_cells(&inner, &data.inputs(), &val, 64, &device);
    let truth: Vec<u32> = val.iter().map(|&i| data.labels[i]).collect();
    let pred = cellsymphony::train::argmax_rows(&logits, 3);
    let again = cellsymphony::train::ClassificationReport::new(&truth, &pred, &names()).macro_f1;
    assert!((again - best).abs() < 1e-12, "kept weights give {again}, best epoch had {best}");
    // A validation set overlapping the test set is refused.
    let overlap = [val.as_slice(), &data.test[..1]].concat();
    let bad = LabelledSplit { val: &overlap, ..split };
    let err = train_classifier::<AB>(&cfg, &config, &data.inputs(), &bad, &names(), &CheckpointOptions::default(), &device, &mut NoProgress).err().expect("overlap refused");
    assert!(err.to_string().contains("validation and the test set"), "{err}");
}

#[test]
fn a_model_without_its_input_is_refused_before_training() {
    let data = planted(30);
    let device = Default::default();
    let mut inputs = data.inputs();
    inputs.patches = None;
    let mut wrong_genes = data.inputs();
    wrong_genes.genes = Some(Rows {
        data: &data.genes[..30 * (G - 1)],
        cols: G - 1,
    });
    let cfg = options(Architecture::DualModality, G, 3, S, 1, 0.1);
    let err = train_classifier::<AB>(
        &cfg,
        &TrainConfig::default(),
        &inputs,
        &data.split(),
        &names(),
        &CheckpointOptions::default(),
        &device,
        &mut NoProgress,
    )
    .err()
    .expect("missing patches");
    assert!(
        matches!(
            err,
            TrainError::MissingInput {
                input: "patches",
                ..
            }
        ),
        "{err}"
    );
    let err = train_classifier::<AB>(
        &cfg,
        &TrainConfig::default(),
        &wrong_genes,
        &data.split(),
        &names(),
        &CheckpointOptions::default(),
        &device,
        &mut NoProgress,
    )
    .err()
    .expect("wrong gene count");
    assert!(
        err.to_string()
            .contains(&format!("expected [30 cells, {G}]")),
        "{err}"
    );
}

#[test]
fn embeddings_read_from_npy_and_safetensors_with_clear_errors() {
    let dir = common::scratch("emb");
    let values: Vec<f32> = (0..12).map(|v| v as f32 * 0.5 - 1.0).collect();
    let npy = dir.join("e.npy");
    write_npy(&npy, &values, 4, 3).unwrap();
    let e = read_embeddings(&npy, None).unwrap();
    assert_eq!((e.rows, e.dim), (4, 3));
    assert_eq!(e.values, values);

    // safetensors: f64 tensor among two, chosen by name; f32 only tensor.
    use safetensors::tensor::{Dtype, TensorView};
    let f64s: Vec<u8> = values
        .iter()
        .flat_map(|&v| (v as f64).to_le_bytes())
        .collect();
    let f32s: Vec<u8> = values.iter().flat_map(|&v| v.to_le_bytes()).collect();
    let st = dir.join("e.safetensors");
    let bytes = safetensors::serialize(
        vec![
            (
                "uni2",
                TensorView::new(Dtype::F64, vec![6, 2], &f64s).unwrap(),
            ),
            (
                "other",
                TensorView::new(Dtype::F32, vec![12], &f32s).unwrap(),
            ),
        ],
        None,
    )
    .unwrap();
    std::fs::write(&st, bytes).unwrap();
    let e = read_embeddings(&st, Some("uni2")).unwrap();
    assert_eq!((e.rows, e.dim), (6, 2));
    assert_eq!(e.values, values);
    let err = read_embeddings(&st, None).unwrap_err().to_string();
    assert!(
        err.contains("e.safetensors") && err.contains("uni2") && err.contains("name the one"),
        "{err}"
    );
    let err = read_embeddings(&st, Some("other")).unwrap_err().to_string();
    assert!(err.contains("[cells, dim]"), "{err}");

    // Truncated .npy, wrong dtype, wrong extension.
    let raw = std::fs::read(&npy).unwrap();
    std::fs::write(dir.join("cut.npy"), &raw[..raw.len() - 5]).unwrap();
    let err = read_embeddings(&dir.join("cut.npy"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cut.npy") && err.contains("bytes"), "{err}");
    let at = raw.windows(3).position(|w| w == b"<f4").unwrap();
    let mut int = raw.clone();
    int[at..at + 3].copy_from_slice(b"<i4");
    std::fs::write(dir.join("int.npy"), &int).unwrap();
    let err = read_embeddings(&dir.join("int.npy"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("int.npy") && err.contains("astype"), "{err}");
    std::fs::write(dir.join("e.csv"), "1,2\n").unwrap();
    let err = read_embeddings(&dir.join("e.csv"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains(".npy") && err.contains("e.csv"), "{err}");
}

fn read_png_size(path: &Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    (info.width, info.height)
}

#[test]
fn benchmark_subcommand_writes_tables_pngs_models_and_summary_on_the_crop() {
    let out = common::scratch("bench");
    let run = Command::new(env!("CARGO_BIN_EXE_cellsymphony"))
        .args(["benchmark", "--peers", "none", "--epochs", "1", "--layers", "1", "--out"])
        .arg(out.as_os_str())
        .output()
        .expect("binary runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "benchmark failed: {stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for m in ["gene_only", "spatial", "dual_modality", "multi_input"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(&format!("[{m} ")) && l.contains("] epoch   1/1")),
            "progress line for {m}: {stdout}"
        );
        assert!(
            out.join(m).join("model.safetensors").exists()
                && out.join(m).join("checkpoint.bin").exists(),
            "{m}"
        );
    }
    let csv = std::fs::read_to_string(out.join("per_class.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(
        header.starts_with(
            "class,support,logistic_precision,logistic_recall,logistic_f1,gene_only_precision"
        ),
        "{header}"
    );
    assert!(header.ends_with("multi_input_f1"), "{header}");
    assert!(
        csv.contains("\nEpithelial,")
            && csv.contains("\nmacro_avg,")
            && csv.contains("\nweighted_avg,"),
        "{csv}"
    );
    let cols = header.split(',').count();
    // Split auto: LogReg and gene-only on random folds, then LogReg, gene-only and the three
    // models that read centroids or images on spatial blocks — 7 methods × (P, R, F1).
    assert_eq!(cols, 2 + 7 * 3, "{header}");
    for line in csv.lines().filter(|l| !l.starts_with("accuracy")) {
        assert_eq!(line.split(',').count(), cols, "{line}");
    }
    // The baseline on SingleR labels (themselves a function of the genes) is far above chance.
    let macro_lr: f64 = csv
        .lines()
        .find(|l| l.starts_with("macro_avg"))
        .unwrap()
        .split(',')
        .nth(4)
        .unwrap()
        .parse()
        .unwrap();
    assert!(macro_lr > 0.5, "logistic macro-F1 {macro_lr}");
    for m in [
        "logistic",
        "gene_only",
        "spatial",
        "dual_modality",
        "multi_input",
    ] {
        // One confusion matrix per method and split (`confusion_<model>_<split>.png` when a
        // benchmark runs several splits).
        let pngs: Vec<_> = std::fs::read_dir(&*out)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.starts_with(&format!("confusion_{m}")) && n.ends_with(".png"))
            .filter(|n| !(m == "spatial" && n.starts_with("confusion_spatial_blocks")))
            .collect();
        assert!(!pngs.is_empty(), "no confusion PNG for {m}");
        for png in pngs {
            let (w, h) = read_png_size(&out.join(&png));
            assert!(w > 300 && h > 300, "{png}: {w}×{h}");
        }
    }
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        summary.contains("| Multi-input |") && summary.contains("SingleR"),
        "{summary}"
    );
    assert!(stdout.contains("| Dual-modality |"), "{stdout}");
}
