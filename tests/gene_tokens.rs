//! Gene tokens (one token per gene: identity + value embedding, FT-Transformer style) as the
//! gene encoder, in burn and the engines. A small gene-token classifier is trained briefly on
//! the real crop (the 64 most variable genes of the training cells, so the subset path runs),
//! exported (fp32 and int8 safetensors, `format_version` 2 with the chosen genes recorded) and
//! must agree with the CPU engine (whose attention over these 64 tokens is the tiled
//! online-softmax path) and the WGSL engine on held-out cells.
//!
//! Tolerances (as tests/multimodal_engine.rs): burn fp32 vs CPU engine fp32: max abs logit
//! error ≤ 1e-3 and identical classes; burn fp32 vs CPU int8: `assert_int8_follows_fp32` with
//! max |Δlogit| ≤ 0.25 and ≥ 97 % agreement; CPU int8 vs WGSL int8: max abs ≤ 1e-3 and
//! identical classes.
#![cfg(feature = "train")]

mod common;

use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;

use cellsymphony::engine::{self, ClassifierConfig, EngineModel, GeneEncoderKind, GeneSelection, ModelFileError, ModelMeta};
use cellsymphony::model::convert::from_engine_model;
use cellsymphony::model::ClassifierOptions;
use cellsymphony::train::dataset::{prepare_crop, LabelOptions};
use cellsymphony::train::export::{export_fp32_and_int8, model_meta};
use cellsymphony::train::split::stratified_split;
use cellsymphony::train::trainer::{predict_cells, train_classifier, CellInputs, CheckpointOptions, LabelledSplit};
use cellsymphony::train::{GeneEncoderOptions, NoProgress, TrainConfig};

type Ad = Autodiff<NdArray>;

const MAX_TOKENS: usize = 64;

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn gene_token_classifier_runs_in_the_engines_with_parity() {
    let crop = prepare_crop(&common::data_dir(), &LabelOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let labels: Vec<u32> = crop.labels.iter().map(|l| l.unwrap_or(0)).collect();
    let (train, test) = stratified_split(&crop.labels, 0.2, 42);
    let (g, k) = (crop.table.n_genes(), crop.class_names.len());
    let encoder = GeneEncoderOptions { kind: GeneEncoderKind::Tokens, max_tokens: MAX_TOKENS, selection: GeneSelection::HighlyVariable };
    let base = ClassifierConfig { d_model: 16, n_heads: 2, d_ff: 32, n_layers: 1, ..ClassifierConfig::new(g, k) };
    let spec = encoder.apply(base, &crop.x_norm, g, &train);
    let panel = spec.gene_token_panel.clone().expect("a gene-token spec");
    assert_eq!((panel.selection, panel.genes.len(), spec.n_tokens()), (GeneSelection::HighlyVariable, MAX_TOKENS, MAX_TOKENS));

    let options = ClassifierOptions::new(spec).with_dropout(0.1);
    let config = TrainConfig { learning_rate: 2e-3, batch_size: 64, weight_decay: 0.01, epochs: 3, seed: 7, ..TrainConfig::paper() };
    let inputs = CellInputs::genes(&crop.x_norm, g);
    let split = LabelledSplit { labels: &labels, n_classes: k, train: &train, val: &[], test: &test };
    let device = Default::default();
    let trained = train_classifier::<Ad>(&options, &config, &inputs, &split, &crop.class_names, &CheckpointOptions::default(), &device, &mut NoProgress).unwrap();
    let model = trained.model.valid();
    let burn_logits = predict_cells(&model, &inputs, &test, 128, &device);
    eprintln!("gene tokens: held-out macro-F1 after {} epochs {:.3}", config.epochs, trained.report.macro_f1);

    let meta = model_meta(&model, &crop.table.genes, &crop.class_names, crop.normalisation.clone(), serde_json::json!({}));
    let dir = common::fixture_dir("gene-tokens-engine");
    let (_, files) = export_fp32_and_int8(&model, meta, &dir).unwrap();
    let fp32 = EngineModel::load(&files.fp32).unwrap();
    let int8 = EngineModel::load(&files.int8).unwrap();
    assert!(int8.is_int8() && !fp32.is_int8());
    // The file records the format version and the chosen genes; the panel stays whole so the
    // normalisation (library size over the panel) is the one training saw.
    assert_eq!(fp32.meta.format_version, 2);
    assert_eq!(fp32.meta.genes.len(), g);
    assert_eq!(fp32.config().gene_token_panel.as_ref(), Some(&panel));
    assert_eq!((fp32.weights.gene_embedding.out_dim, fp32.weights.gene_embedding.in_dim), (MAX_TOKENS * 16, 1));

    // Held-out engine input, prepared as the engines prepare every input.
    let t = &crop.table;
    let aligned = engine::align_to_panel(&fp32.meta, &t.genes, &t.counts).unwrap();
    let x = engine::normalise_log1p_cp10k(&aligned, g, 1e4);
    let xt: Vec<f32> = test.iter().flat_map(|&i| x[i * g..(i + 1) * g].iter().copied()).collect();
    let n = test.len();

    let cpu_fp32 = engine::cpu::forward_logits(&fp32, &xt, n).unwrap();
    let err = max_abs(&burn_logits, &cpu_fp32);
    eprintln!("gene tokens: burn fp32 vs CPU engine fp32 on {n} held-out cells: max |Δlogit| {err:.2e}");
    assert!(err <= 1e-3, "burn vs CPU fp32 logits differ by {err}");
    assert_eq!(engine::cpu::argmax_rows(&burn_logits, k), engine::cpu::argmax_rows(&cpu_fp32, k));

    let cpu_int8 = engine::cpu::forward_logits(&int8, &xt, n).unwrap();
    common::quant::assert_int8_follows_fp32("gene tokens: burn fp32 vs CPU int8", &burn_logits, &cpu_int8, k, 0.25, 0.97);

    // The file loads back into burn with the same logits.
    let back = from_engine_model::<NdArray>(&fp32, 0.1, &device).unwrap();
    let again = predict_cells(&back, &inputs, &test, 128, &device);
    assert!(max_abs(&burn_logits, &again) <= 1e-5);

    if let Some(ctx) = common::gpu_or_skip("gene tokens parity") {
        let gpu = engine::GpuClassifier::new(ctx, &int8).unwrap();
        let gpu_logits = pollster::block_on(gpu.logits(&xt, n)).unwrap();
        let err = max_abs(&cpu_int8, &gpu_logits);
        eprintln!("gene tokens: CPU int8 vs WGSL int8: max |Δlogit| {err:.2e}");
        assert!(err <= 1e-3, "CPU vs WGSL int8 logits differ by {err}");
        assert_eq!(engine::cpu::argmax_rows(&cpu_int8, k), engine::cpu::argmax_rows(&gpu_logits, k));
    }
}

/// A gene-token panel that does not fit the rest of the metadata is a typed error naming the
/// field and the value.
#[test]
fn bad_gene_token_panels_are_typed_errors() {
    let genes: Vec<String> = (0..5).map(|i| format!("g{i}")).collect();
    let classes = vec!["a".to_string(), "b".to_string()];
    let spec = ClassifierConfig { d_model: 8, n_heads: 2, d_ff: 8, n_layers: 1, ..ClassifierConfig::new(5, 2) }
        .with_gene_token_panel(GeneSelection::HighlyVariable, vec![0, 2, 4]);
    let good = ModelMeta::new(spec, genes, classes);
    assert_eq!(good.format_version, 2);
    let json: serde_json::Value = serde_json::from_str(&good.to_json().unwrap()).unwrap();
    ModelMeta::from_json(&json.to_string()).unwrap();
    let cases: [(&str, Box<dyn Fn(&mut serde_json::Value)>); 5] = [
        ("genes[2] = 5 is outside the panel of n_genes = 5", Box::new(|v| v["config"]["gene_token_panel"]["genes"][2] = 5.into())),
        ("genes[1] = 0 is not above genes[0] = 0", Box::new(|v| v["config"]["gene_token_panel"]["genes"][1] = 0.into())),
        ("lists 3 genes but config.gene_tokens = 4", Box::new(|v| v["config"]["gene_tokens"] = 4.into())),
        ("format_version = 1 but config.gene_token_panel needs format_version 2", Box::new(|v| v["format_version"] = 1.into())),
        ("gene tokens are supported for the gene-only classifier", Box::new(|v| {
            v["config"]["spatial"] = serde_json::json!({"n_frequencies": 2, "min_wavelength_um": 8.0, "max_wavelength_um": 80.0});
            v["architecture"] = "spatial".into();
        })),
    ];
    for (want, edit) in cases {
        let mut v = json.clone();
        edit(&mut v);
        let err = ModelMeta::from_json(&v.to_string()).unwrap_err();
        assert!(matches!(err, ModelFileError::InvalidConfig { .. } | ModelFileError::InvalidMetadata { .. }), "{err:?}");
        assert!(err.to_string().contains(want), "{err}");
    }
    // An unknown selection is a serde error naming the value.
    let mut v = json.clone();
    v["config"]["gene_token_panel"]["selection"] = "random".into();
    let err = ModelMeta::from_json(&v.to_string()).unwrap_err().to_string();
    assert!(err.contains("random"), "{err}");
}
