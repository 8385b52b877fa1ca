//! The multimodal classifiers in the engines: spatial (gene tokens + a sinusoidal centroid
//! token), dual-modality (gene tokens + a patch-ViT morphology token) and multi-input (gene,
//! morphology and centroid tokens with a relative attention bias). Each burn model is trained
//! briefly on the real crop (patches from its DAPI image), exported (fp32 and int8
//! safetensors) and must agree with the CPU engine and the WGSL engine on held-out cells.
//!
//! Tolerances: burn fp32 vs CPU engine fp32: max abs logit error ≤ 1e-3 (same maths, f32,
//! different summation order) and identical classes; burn fp32 vs int8 engines: same class on
//! ≥ 99 % of the held-out cells; CPU int8 vs WGSL int8: max abs ≤ 1e-3 and identical classes.
//! The WGSL part fails without a GPU adapter unless `CELLSYMPHONY_ALLOW_NO_GPU=1` (then it
//! prints SKIPPED).
#![cfg(feature = "train")]

mod common;

use std::path::PathBuf;

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;

use cellsymphony::engine::{
    self, Architecture, ClassifierConfig, EngineModel, GpuClassifier, MorphologyTokenConfig,
    SpatialTokenConfig, TokenSources,
};
use cellsymphony::model::{Classifier, ClassifierOptions};
use cellsymphony::train::benchmark::crop_patches;
use cellsymphony::train::trainer::{
    predict_cells, train_classifier, CellInputs, CheckpointOptions, LabelledSplit, Rows,
};
use cellsymphony::train::dataset::{prepare_crop, LabelOptions, PreparedCrop};
use cellsymphony::train::export::{export_fp32_and_int8, model_meta, ExportedFiles};
use cellsymphony::train::split::stratified_split;
use cellsymphony::train::{NoProgress, TrainConfig};

type Ad = Autodiff<NdArray>;

/// Patch geometry of these tests: 32 px at 0.75 µm/px, ViT patch 8 (16 tokens), 2 blocks.
const PATCH_PX: usize = 32;
const PATCH_UM_PER_PX: f32 = 0.75;

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn same_class(a: &[f32], b: &[f32], k: usize) -> usize {
    let pa = engine::cpu::argmax_rows(a, k);
    let pb = engine::cpu::argmax_rows(b, k);
    pa.iter().zip(&pb).filter(|(x, y)| x == y).count()
}

/// The real crop, its split, and every per-cell input.
struct Fixture {
    crop: PreparedCrop,
    labels: Vec<u32>,
    train: Vec<usize>,
    test: Vec<usize>,
    centroids: Vec<f32>,
    patches: Vec<f32>,
}

impl Fixture {
    fn load() -> Self {
        let dir = common::data_dir();
        let crop = prepare_crop(&dir, &LabelOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        let labels: Vec<u32> = crop.labels.iter().map(|l| l.unwrap_or(0)).collect();
        let (train, test) = stratified_split(&crop.labels, 0.2, 42);
        let centroids = crop.table.centroids_um.iter().flat_map(|c| [c[0], c[1]]).collect();
        let patches = crop_patches(&crop, PATCH_PX, PATCH_UM_PER_PX).unwrap_or_else(|e| panic!("{e}"));
        Self { crop, labels, train, test, centroids, patches }
    }

    fn inputs(&self) -> CellInputs<'_> {
        CellInputs {
            n_cells: self.crop.table.n_cells(),
            genes: Some(Rows { data: &self.crop.x_norm, cols: self.crop.table.n_genes() }),
            gene_embedding: None,
            patches: Some(Rows { data: &self.patches, cols: PATCH_PX * PATCH_PX }),
            morph_embedding: None,
            centroids_um: Some(Rows { data: &self.centroids, cols: 2 }),
        }
    }

    fn split(&self) -> LabelledSplit<'_> {
        LabelledSplit {
            labels: &self.labels,
            n_classes: self.crop.class_names.len(),
            train: &self.train,
            val: &[],
            test: &self.test,
        }
    }

    fn out_dir(&self, name: &str) -> PathBuf {
        common::fixture_dir(&format!("{name}-engine"))
    }
}

/// Trains a classifier for 4 epochs on the fixture's split; returns the inference model and
/// its burn fp32 logits on the held-out cells.
fn train_model(f: &Fixture, options: &ClassifierOptions) -> (Classifier<NdArray>, Vec<f32>) {
    let config = TrainConfig { learning_rate: 1e-3, batch_size: 64, weight_decay: 0.01, epochs: 4, seed: 7, ..TrainConfig::paper() };
    let device = Default::default();
    let trained = train_classifier::<Ad>(
        options,
        &config,
        &f.inputs(),
        &f.split(),
        &f.crop.class_names,
        &CheckpointOptions::default(),
        &device,
        &mut NoProgress,
    )
    .unwrap();
    let model = trained.model.valid();
    let logits = predict_cells(&model, &f.inputs(), &f.test, 128, &device);
    (model, logits)
}

/// `arch` on the crop's genes and classes: width 32, 4 heads, feed-forward 64, 2 layers,
/// 2 gene tokens; a centroid sinusoid of 8 frequencies and a ViT over 32 px patches at
/// 0.75 µm/px (8 px ViT patches, width 32, 4 heads, feed-forward 64, 2 blocks, 4 centre
/// tokens) where the architecture has those tokens; dropout 0.1.
fn options(f: &Fixture, arch: Architecture) -> ClassifierOptions {
    let spec = ClassifierConfig {
        d_model: 32,
        n_heads: 4,
        d_ff: 64,
        n_layers: 2,
        gene_tokens: 2,
        ..ClassifierConfig::new(f.crop.table.n_genes(), f.crop.class_names.len())
    };
    let sources = TokenSources {
        morphology: MorphologyTokenConfig {
            image_size: PATCH_PX,
            vit_patch: 8,
            width: 32,
            n_heads: 4,
            d_ff: 64,
            n_layers: 2,
            k_nearest: 4,
            um_per_px: PATCH_UM_PER_PX as f64,
        },
        spatial: SpatialTokenConfig { n_frequencies: 8, ..SpatialTokenConfig::default() },
        ..TokenSources::default()
    };
    ClassifierOptions::new(spec.for_architecture(arch, &sources)).with_dropout(0.1)
}

/// Writes the fp32 and int8 files of `model` (with the crop's genes, classes and
/// normalisation) to a fresh folder named after `name`.
fn export(f: &Fixture, model: &Classifier<NdArray>, name: &str) -> (EngineModel, ExportedFiles) {
    let meta = model_meta(model, &f.crop.table.genes, &f.crop.class_names, f.crop.normalisation.clone(), serde_json::json!({}));
    export_fp32_and_int8(model, meta, &f.out_dir(name)).unwrap()
}

/// Engine input of the held-out cells (counts in the model's order, normalised, + centroid
/// features when the model has a centroid token) and their patches.
fn engine_inputs(f: &Fixture, model: &EngineModel) -> (Vec<f32>, Vec<f32>) {
    let t = &f.crop.table;
    let aligned = engine::align_to_panel(&model.meta, &t.genes, &t.counts).unwrap();
    let x = engine::normalise_log1p_cp10k(&aligned, t.n_genes(), 1e4);
    let x = engine::model_input(model.config(), x, Some(&t.centroids_um)).unwrap();
    let w = model.config().n_inputs();
    let px = PATCH_PX * PATCH_PX;
    let xt = f.test.iter().flat_map(|&i| x[i * w..(i + 1) * w].iter().copied()).collect();
    let pt = f.test.iter().flat_map(|&i| f.patches[i * px..(i + 1) * px].iter().copied()).collect();
    (xt, pt)
}

/// Loads the exported files back and checks burn vs CPU fp32, burn vs CPU int8 and CPU int8
/// vs WGSL int8 on the held-out cells.
fn check_parity(name: &str, f: &Fixture, files: &ExportedFiles, burn_logits: &[f32]) {
    let k = f.crop.class_names.len();
    let n = f.test.len();
    let fp32 = EngineModel::load(&files.fp32).unwrap();
    let int8 = EngineModel::load(&files.int8).unwrap();
    assert!(int8.is_int8() && !fp32.is_int8());
    let (xt, pt) = engine_inputs(f, &int8);
    let patches = int8.config().morphology.as_ref().map(|_| pt.as_slice());
    engine::check_patches(int8.config(), patches, n).unwrap();

    let cpu_fp32 = engine::cpu::forward_logits_with_patches(&fp32, &xt, patches, n).expect("CPU forward");
    let err = max_abs(burn_logits, &cpu_fp32);
    eprintln!("{name}: burn fp32 vs CPU engine fp32 on {n} held-out cells: max |Δlogit| {err:.2e}");
    assert!(err <= 1e-3, "{name}: burn vs CPU fp32 logits differ by {err}");
    assert_eq!(same_class(burn_logits, &cpu_fp32, k), n, "{name}: classes differ");

    let cpu_int8 = engine::cpu::forward_logits_with_patches(&int8, &xt, patches, n).expect("CPU forward");
    common::quant::assert_int8_follows_fp32(&format!("{name}: burn fp32 vs CPU int8"), burn_logits, &cpu_int8, k, 0.25, 0.97);

    if let Some(ctx) = common::gpu_or_skip(&format!("{name} parity")) {
        let gpu = GpuClassifier::new(ctx, &int8).unwrap();
        let gpu_logits = pollster::block_on(gpu.logits_with_patches(&xt, patches, n)).unwrap();
        let err = max_abs(&cpu_int8, &gpu_logits);
        eprintln!("{name}: CPU int8 vs WGSL int8: max |Δlogit| {err:.2e}");
        assert!(err <= 1e-3, "{name}: CPU vs WGSL int8 logits differ by {err}");
        assert_eq!(same_class(&cpu_int8, &gpu_logits, k), n);
        if patches.is_some() {
            // A morphology model refuses to run without patches, saying what it needs.
            let e = pollster::block_on(gpu.logits(&xt, n)).unwrap_err().to_string();
            assert!(e.contains("morphology") && e.contains("patches"), "{e}");
        }
    }
    let _ = std::fs::remove_dir_all(files.fp32.parent().unwrap());
}

#[test]
fn spatial_classifier_runs_in_the_engines_with_parity() {
    let f = Fixture::load();
    let (g, k) = (f.crop.table.n_genes(), f.crop.class_names.len());
    let (model, burn_logits) = train_model(&f, &options(&f, Architecture::Spatial));
    assert_eq!(burn_logits.len(), f.test.len() * k);
    let (fp32, files) = export(&f, &model, "spatial");
    assert_eq!(fp32.meta.architecture, engine::ARCHITECTURE_SPATIAL);
    assert_eq!(fp32.config().n_inputs(), g + 4 * 8);
    assert_eq!(fp32.config().n_tokens(), 3);
    // A spatial model refuses input without centroids, naming what is missing.
    let err = engine::model_input(fp32.config(), vec![0.0; g], None).unwrap_err().to_string();
    assert!(err.contains("centroid"), "{err}");
    check_parity("spatial", &f, &files, &burn_logits);
}

#[test]
fn dual_modality_classifier_runs_in_the_engines_with_parity() {
    let f = Fixture::load();
    let (g, k) = (f.crop.table.n_genes(), f.crop.class_names.len());
    let (model, burn_logits) = train_model(&f, &options(&f, Architecture::DualModality));
    assert_eq!(burn_logits.len(), f.test.len() * k);
    let (fp32, files) = export(&f, &model, "dual");
    assert_eq!(fp32.meta.architecture, engine::ARCHITECTURE_DUAL_MODALITY);
    let c = fp32.config();
    assert_eq!((c.n_inputs(), c.n_embedding_inputs(), c.n_tokens()), (g, g + 32, 3));
    // Missing patches are an error naming what the model reads.
    let e = engine::check_patches(c, None, 3).unwrap_err().to_string();
    assert!(e.contains("32×32") && e.contains("0.75"), "{e}");
    check_parity("dual-modality", &f, &files, &burn_logits);
}

#[test]
fn multi_input_classifier_runs_in_the_engines_with_parity() {
    let f = Fixture::load();
    let (g, k) = (f.crop.table.n_genes(), f.crop.class_names.len());
    let (model, burn_logits) = train_model(&f, &options(&f, Architecture::MultiInput));
    assert_eq!(burn_logits.len(), f.test.len() * k);
    // The relative bias was trained away from its zero initialisation, so the bias path of
    // the attention kernel is exercised with real values.
    let bias = model
        .attention_bias()
        .expect("the multi-input model has an attention bias")
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap();
    assert!(bias.iter().any(|v| v.abs() > 1e-4), "relative bias stayed at zero");
    let (fp32, files) = export(&f, &model, "multi");
    assert_eq!(fp32.meta.architecture, engine::ARCHITECTURE_MULTI_INPUT);
    let c = fp32.config();
    assert_eq!((c.n_inputs(), c.n_embedding_inputs(), c.n_tokens()), (g + 32, g + 32 + 32, 4));
    assert_eq!(fp32.weights.attention_bias.as_ref().map(Vec::len), Some(4 * 4 * 4));
    check_parity("multi-input", &f, &files, &burn_logits);
}
