//! The spatial classifier (gene tokens + a sinusoidal centroid token) in the engines: a burn
//! model trained on the real crop is exported (fp32 and int8 safetensors) and must agree with
//! the CPU engine and the WGSL engine on held-out cells.
//!
//! Tolerances: burn fp32 vs CPU engine fp32: max abs logit error ≤ 1e-3 (same maths, f32,
//! different summation order) and identical classes; burn fp32 vs int8 engines: same class on
//! ≥ 99 % of the held-out cells; CPU int8 vs WGSL int8: max abs ≤ 1e-3. The WGSL part fails
//! without a GPU adapter unless `CELLSYMPHONY_ALLOW_NO_GPU=1` (then it prints SKIPPED).
#![cfg(feature = "train")]

use std::sync::Arc;

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;

use cellsymphony::engine::{self, EngineModel};
use cellsymphony::gpu::{GpuClassifier, GpuContext, GpuError};
use cellsymphony::model::SpatialClassifierConfig;
use cellsymphony::train::cell_trainer::{
    predict_cells, train_classifier, CellInputs, CheckpointOptions, LabelledSplit, Rows,
};
use cellsymphony::train::dataset::{prepare_crop, LabelOptions};
use cellsymphony::train::export::export_spatial_fp32_and_int8;
use cellsymphony::train::split::stratified_split;
use cellsymphony::train::{NoProgress, TrainConfig};

type Ad = Autodiff<NdArray>;

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn same_class(a: &[f32], b: &[f32], k: usize) -> usize {
    let pa = engine::cpu::argmax_rows(a, k);
    let pb = engine::cpu::argmax_rows(b, k);
    pa.iter().zip(&pb).filter(|(x, y)| x == y).count()
}

#[test]
fn spatial_classifier_runs_in_the_engines_with_parity() {
    let dir = cellsymphony::data::default_data_dir();
    let crop = prepare_crop(&dir, &LabelOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let n = crop.table.n_cells();
    let g = crop.table.n_genes();
    let k = crop.class_names.len();
    let labels: Vec<u32> = crop.labels.iter().map(|l| l.unwrap_or(0)).collect();
    let (train, test) = stratified_split(&crop.labels, 0.2, 42);
    let centroids: Vec<f32> = crop.table.centroids_um.iter().flat_map(|c| [c[0], c[1]]).collect();
    let inputs = CellInputs {
        n_cells: n,
        genes: Some(Rows { data: &crop.x_norm, cols: g }),
        gene_embedding: None,
        patches: None,
        morph_embedding: None,
        centroids_um: Some(Rows { data: &centroids, cols: 2 }),
    };
    let split = LabelledSplit { labels: &labels, n_classes: k, train: &train, test: &test };
    let config = SpatialClassifierConfig::new(g, k)
        .with_d_model(32)
        .with_n_heads(4)
        .with_d_ff(64)
        .with_n_layers(2)
        .with_gene_tokens(2)
        .with_n_frequencies(8);
    let train_config = TrainConfig {
        learning_rate: 1e-3,
        batch_size: 64,
        weight_decay: 0.01,
        epochs: 4,
        seed: 7,
        class_weighted: true,
    };
    let device = Default::default();
    let trained = train_classifier::<Ad, _>(
        |d| config.init(d),
        serde_json::json!({"test": "spatial_engine"}),
        &train_config,
        &inputs,
        &split,
        &crop.class_names,
        &CheckpointOptions::default(),
        &device,
        &mut NoProgress,
    )
    .unwrap();
    let model = trained.model.valid();
    let burn_logits = predict_cells(&model, &inputs, &test, 128, &device);

    let out = std::env::temp_dir().join(format!("cellsymphony-spatial-engine-{}", std::process::id()));
    let (fp32, files) = export_spatial_fp32_and_int8(
        &model,
        &config,
        &crop.table.genes,
        &crop.class_names,
        serde_json::json!({}),
        &out,
    )
    .unwrap();
    assert_eq!(fp32.meta.architecture, engine::ARCHITECTURE_SPATIAL);
    // Files load back, and the int8 file is int8.
    let fp32_file = EngineModel::load(&files.fp32).unwrap();
    let int8 = EngineModel::load(&files.int8).unwrap();
    assert!(int8.is_int8() && !fp32_file.is_int8());
    assert_eq!(fp32_file.config().n_inputs(), g + 4 * 8);
    assert_eq!(fp32_file.config().n_tokens(), 3);

    // Engine input of the held-out cells: counts in the model's order, normalised, + centroids.
    let aligned = engine::align_to_panel(&int8.meta, &crop.table.genes, &crop.table.counts).unwrap();
    let x = engine::normalise_log1p_cp10k(&aligned, g, 1e4);
    let x = engine::model_input(int8.config(), x, Some(&crop.table.centroids_um)).unwrap();
    let w = int8.config().n_inputs();
    let xt: Vec<f32> = test.iter().flat_map(|&i| x[i * w..(i + 1) * w].iter().copied()).collect();

    let cpu_fp32 = engine::cpu::forward_logits(&fp32_file, &xt, test.len());
    let err = max_abs(&burn_logits, &cpu_fp32);
    eprintln!("burn fp32 vs CPU engine fp32 on {} held-out cells: max |Δlogit| {err:.2e}", test.len());
    assert!(err <= 1e-3, "burn vs CPU fp32 logits differ by {err}");
    assert_eq!(same_class(&burn_logits, &cpu_fp32, k), test.len());

    let cpu_int8 = engine::cpu::forward_logits(&int8, &xt, test.len());
    let agree = same_class(&burn_logits, &cpu_int8, k);
    eprintln!(
        "burn fp32 vs CPU int8: same class {agree}/{}, max |Δlogit| {:.3}",
        test.len(),
        max_abs(&burn_logits, &cpu_int8)
    );
    assert!(agree as f64 >= 0.99 * test.len() as f64, "int8 agrees on {agree}/{}", test.len());

    // A spatial model refuses input without centroids, naming what is missing.
    let err = engine::model_input(int8.config(), vec![0.0; g], None).unwrap_err().to_string();
    assert!(err.contains("centroid"), "{err}");

    match pollster::block_on(GpuContext::new()) {
        Ok(ctx) => {
            let gpu = GpuClassifier::new(Arc::new(ctx), &int8).unwrap();
            let gpu_logits = pollster::block_on(gpu.logits(&xt, test.len())).unwrap();
            let err = max_abs(&cpu_int8, &gpu_logits);
            eprintln!("CPU int8 vs WGSL int8: max |Δlogit| {err:.2e}");
            assert!(err <= 1e-3, "CPU vs WGSL int8 logits differ by {err}");
            assert_eq!(same_class(&cpu_int8, &gpu_logits, k), test.len());
        }
        Err(e @ GpuError::NoAdapter { .. }) => {
            if std::env::var("CELLSYMPHONY_ALLOW_NO_GPU").as_deref() == Ok("1") {
                eprintln!("SKIPPED (no GPU adapter): WGSL part of spatial_classifier_runs_in_the_engines_with_parity");
            } else {
                panic!("{e}\n(set CELLSYMPHONY_ALLOW_NO_GPU=1 to skip GPU tests on a machine without any adapter)");
            }
        }
        Err(e) => panic!("GPU context creation failed: {e}"),
    }
}
