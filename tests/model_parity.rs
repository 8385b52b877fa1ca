//! burn ⇄ engines parity for EVERY architecture (the image-only one included), with no download: a seeded random burn
//! [`Classifier`] (relative bias and modality rows randomised too) → export fp32 + int8 →
//! - burn fp32 vs the CPU engine on the fp32 file: max |Δlogit| ≤ 1e-5 · max(1, |logit|);
//! - the CPU engine vs the WGSL engine on the int8 file: ≤ 1e-4 · max(1, |logit|);
//! - burn fp32 vs the int8 file: max |Δlogit| ≤ 0.1, a class flips only on a near tie, ≥ 99 %
//!   of random cells keep their class (`common::quant::assert_int8_follows_fp32`);
//! - import (engine file → burn) then export again gives the same file, and the imported
//!   burn model computes the same logits (the `--engine burn` path for every model).
//!
//! Each check also runs with the linear ("wide") path on the gene-only and the multi-input
//! model (centroid sinusoid columns and ViT features beside the genes), its weights
//! randomised (they are zero-initialised for training).
//!
//! The WGSL part runs on lavapipe here; without an adapter it fails unless
//! CELLSYMPHONY_ALLOW_NO_GPU=1, in which case it prints SKIPPED (see `tests/common/gpu.rs`).

use std::sync::{Arc, Mutex};

mod common;

use burn::backend::NdArray;
use burn::module::Param;
use burn::prelude::*;

use cellsymphony::util::rng::SplitMix64;
use cellsymphony::engine::{
    self, Architecture, ClassifierConfig, EngineModel, GpuClassifier, ModelMeta,
    MorphologyTokenConfig, TokenSources,
};
use cellsymphony::model::convert::{from_engine_model, to_engine_model};
use cellsymphony::model::{CellBatch, Classifier, ClassifierOptions};

type B = NdArray<f32>;

/// burn's ndarray RNG is process-global: seeded inits run one at a time.
static RNG: Mutex<()> = Mutex::new(());

const GENES: usize = 12;
const CLASSES: usize = 5;
const SIDE: usize = 16;

/// The architectures checked: all four, the image-only one (its default of no encoder layers:
/// ViT → token → final norm → head), then the linear path on gene-only and multi-input.
fn cases() -> Vec<(Architecture, bool)> {
    let mut v: Vec<_> = Architecture::ALL.into_iter().map(|a| (a, false)).collect();
    v.extend([(Architecture::ImageOnly, false), (Architecture::GeneOnly, true), (Architecture::MultiInput, true)]);
    v
}

fn spec(arch: Architecture, linear_path: bool) -> ClassifierConfig {
    let sources = TokenSources {
        morphology: MorphologyTokenConfig {
            image_size: SIDE,
            vit_patch: 4,
            width: 16,
            n_heads: 2,
            d_ff: 32,
            n_layers: 1,
            k_nearest: 4,
            um_per_px: 0.75,
        },
        ..TokenSources::default()
    };
    ClassifierConfig {
        d_model: 16,
        n_heads: 2,
        d_ff: 32,
        n_layers: if arch == Architecture::ImageOnly { 0 } else { 2 },
        gene_tokens: 3,
        linear_path,
        ..ClassifierConfig::new(GENES, CLASSES)
    }
    .for_architecture(arch, &sources)
}

/// A seeded random model; the zero-initialised relative bias and linear path get random
/// values so they carry signal.
fn random_model(arch: Architecture, linear_path: bool, seed: u64) -> Classifier<B> {
    let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    B::seed(&device, seed);
    let mut m = ClassifierOptions::new(spec(arch, linear_path))
        .with_dropout(0.0)
        .init::<B>(&device)
        .expect("valid spec");
    if let Some(table) = m.relative_bias.as_mut() {
        let [rows, heads] = table.dims();
        let v = SplitMix64::new(seed).uniform_vec(rows * heads, -2.0, 2.0);
        *table = Param::from_tensor(Tensor::from_data(TensorData::new(v, [rows, heads]), &device));
    }
    if let Some(wide) = m.linear_path.as_mut() {
        let [g, k] = wide.weight.dims();
        let v = SplitMix64::new(seed + 1).uniform_vec(g * k, -0.5, 0.5);
        wide.weight = Param::from_tensor(Tensor::from_data(TensorData::new(v, [g, k]), &device));
        let b = SplitMix64::new(seed + 2).uniform_vec(k, -0.5, 0.5);
        wide.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(b, [k]), &device)));
    }
    m
}

/// Random cells: normalised genes `[n, G]` in [0, 4), centroids `[n, 2]` in [0, 5000) µm,
/// patches `[n, S, S]` in [0, 1) with a per-cell contrast in [0.1, 1) (uniform noise alone
/// gives every cell nearly the same ViT feature, so an image-only model's logits would be
/// near ties everywhere).
struct Cells {
    n: usize,
    genes: Vec<f32>,
    centroids: Vec<[f32; 2]>,
    patches: Vec<f32>,
}

fn cells(n: usize, seed: u64) -> Cells {
    let mut rng = SplitMix64::new(seed);
    let genes = rng.uniform_vec(n * GENES, 0.0, 4.0);
    let c = rng.uniform_vec(n * 2, 0.0, 5000.0);
    let contrast = rng.uniform_vec(n, 0.1, 1.0);
    let noise = rng.uniform_vec(n * SIDE * SIDE, 0.0, 1.0);
    let patches = noise.chunks(SIDE * SIDE).zip(&contrast).flat_map(|(p, &c)| p.iter().map(move |v| v * c)).collect();
    Cells { n, genes, centroids: c.chunks(2).map(|p| [p[0], p[1]]).collect(), patches }
}

fn burn_logits(m: &Classifier<B>, c: &Cells) -> Vec<f32> {
    let device = Default::default();
    let t2 = |v: &[f32], cols: usize| Tensor::<B, 2>::from_data(TensorData::new(v.to_vec(), [c.n, cols]), &device);
    let flat: Vec<f32> = c.centroids.iter().flat_map(|p| *p).collect();
    let batch = CellBatch {
        genes: Some(t2(&c.genes, GENES)),
        gene_embedding: None,
        patches: Some(Tensor::from_data(TensorData::new(c.patches.clone(), [c.n, SIDE, SIDE]), &device)),
        morph_embedding: None,
        centroids_um: Some(t2(&flat, 2)),
    };
    m.forward(&batch).into_data().convert::<f32>().into_vec::<f32>().expect("f32 logits")
}

/// The engines' input `[n, n_inputs]` and patches (for a morphology model).
fn engine_input(model: &EngineModel, c: &Cells) -> (Vec<f32>, Option<Vec<f32>>) {
    // An image-only model reads no genes: its model input is empty.
    let genes = if model.config().n_genes == 0 { Vec::new() } else { c.genes.clone() };
    let x = engine::model_input(model.config(), genes, Some(&c.centroids)).expect("model input");
    (x, model.config().morphology.as_ref().map(|_| c.patches.clone()))
}

fn cpu_logits(model: &EngineModel, c: &Cells) -> Vec<f32> {
    let (x, p) = engine_input(model, c);
    engine::cpu::forward_logits_with_patches(model, &x, p.as_deref(), c.n).expect("CPU forward")
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().chain(b).fold(1.0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
}

fn export(m: &Classifier<B>) -> EngineModel {
    let genes = (0..m.spec.n_genes).map(|i| format!("g{i}")).collect();
    let classes = (0..CLASSES).map(|i| format!("c{i}")).collect();
    to_engine_model(m, ModelMeta::new(m.spec.clone(), genes, classes)).expect("export")
}

#[test]
fn every_architecture_burn_cpu_wgsl_and_int8_agree() {
    let _burn_rng = common::burn_rng_lock();
    let ctx = common::gpu_or_skip("every_architecture_burn_cpu_wgsl_and_int8_agree");
    for (arch, linear) in cases() {
        let m = random_model(arch, linear, 7);
        let arch = format!("{arch}{}", if linear { " + linear path" } else { "" });
        let fp32 = export(&m);
        assert_eq!(fp32.meta.architecture, m.spec.kind().unwrap().name());
        assert_eq!(fp32.weights.linear_path.is_some(), linear, "{arch}");
        let c = cells(64, 11);
        let burn = burn_logits(&m, &c);
        let cpu = cpu_logits(&fp32, &c);
        let e = max_rel_diff(&burn, &cpu);
        eprintln!("{arch}: burn fp32 vs CPU fp32 max rel |Δlogit| {e:.2e}");
        assert!(e <= 1e-5, "{arch}: burn fp32 vs CPU fp32 differ by {e:.2e} (> 1e-5)");

        let int8 = fp32.quantize_int8();
        let cpu8 = cpu_logits(&int8, &c);
        if let Some(ctx) = &ctx {
            let clf = GpuClassifier::new(Arc::clone(ctx), &int8).expect("upload");
            let (x, p) = engine_input(&int8, &c);
            let gpu8 = pollster::block_on(clf.logits_with_patches(&x, p.as_deref(), c.n)).expect("WGSL run");
            let e = max_rel_diff(&cpu8, &gpu8);
            eprintln!("{arch}: CPU int8 vs WGSL int8 max rel |Δlogit| {e:.2e}");
            assert!(e <= 1e-4, "{arch}: CPU int8 vs WGSL int8 differ by {e:.2e} (> 1e-4)");
        }

        // int8 follows fp32 on 1000 random cells: small logit error, flips only on near ties.
        let many = cells(1000, 13);
        let name = format!("{arch}: burn fp32 vs CPU int8");
        common::quant::assert_int8_follows_fp32(&name, &burn_logits(&m, &many), &cpu_logits(&int8, &many), CLASSES, 0.1, 0.99);
    }
}

#[test]
fn every_architecture_imports_into_burn_and_exports_back_unchanged() {
    let _burn_rng = common::burn_rng_lock();
    let device = Default::default();
    for (arch, linear) in cases() {
        let m = random_model(arch, linear, 21);
        let arch = format!("{arch}{}", if linear { " + linear path" } else { "" });
        let file = export(&m);
        let imported = from_engine_model::<B>(&file, 0.0, &device).expect("import");
        assert_eq!(imported.spec, m.spec, "{arch}");
        let again = export(&imported);
        // Same tensors and metadata, value for value (the block matrix, folded modality and
        // position rows and the expanded bias are all undone exactly). Compared as models: the
        // safetensors header's metadata map has no fixed key order.
        let reread = |m: &EngineModel| EngineModel::from_safetensors_bytes(&m.to_safetensors_bytes().unwrap()).unwrap();
        assert!(reread(&file) == reread(&again), "{arch}: re-exported file differs from the original");
        let c = cells(32, 5);
        let e = max_rel_diff(&burn_logits(&m, &c), &burn_logits(&imported, &c));
        assert!(e <= 1e-5, "{arch}: imported burn model differs by {e:.2e}");
        // int8 files import too (dequantised) and then agree with the int8 CPU engine.
        let int8 = file.quantize_int8();
        let from8 = from_engine_model::<B>(&int8, 0.0, &device).expect("int8 import");
        let e = max_rel_diff(&burn_logits(&from8, &c), &cpu_logits(&int8, &c));
        assert!(e <= 1e-5, "{arch}: dequantised burn vs int8 CPU engine differ by {e:.2e}");
    }
}

#[test]
fn a_token_matmul_that_is_not_block_diagonal_is_refused_on_import() {
    let _burn_rng = common::burn_rng_lock();
    let device = Default::default();
    let m = random_model(Architecture::Spatial, false, 3);
    let mut file = export(&m);
    // Row 0 (a gene token) reading a centroid feature column: not what the exporter writes.
    if let engine::LinearWeight::F32(w) = &mut file.weights.gene_embedding.weight {
        w[GENES] = 0.5;
    }
    let err = from_engine_model::<B>(&file, 0.0, &device).err().expect("refused");
    assert!(err.to_string().contains("gene_embedding.weight[0, 12]"), "{err}");
}

#[test]
fn the_zero_initialised_linear_path_starts_training_where_the_transformer_alone_does() {
    let _burn_rng = common::burn_rng_lock();
    let device = Default::default();
    let c = cells(16, 9);
    // burn initialises parameters lazily (on first use), so the forward runs under the seed too.
    let logits = |linear_path: bool| {
        let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
        B::seed(&device, 5);
        let m = ClassifierOptions::new(spec(Architecture::GeneOnly, linear_path)).with_dropout(0.0).init::<B>(&device).expect("valid spec");
        burn_logits(&m, &c)
    };
    assert_eq!(logits(false), logits(true), "same seed, zero linear path: same logits");
    // A linear path past the genes (a centroid model's sinusoid columns) is not ours: refused.
    let m = random_model(Architecture::Spatial, true, 3);
    let mut file = export(&m);
    let lp = file.weights.linear_path.as_mut().expect("linear path exported");
    assert_eq!(lp.in_dim, m.spec.n_inputs(), "exported over the whole model input");
    if let engine::LinearWeight::F32(w) = &mut lp.weight {
        assert!(w[GENES..lp.in_dim].iter().all(|&v| v == 0.0), "sinusoid columns exported as zeros");
        w[GENES] = 0.5;
    }
    let err = from_engine_model::<B>(&file, 0.0, &device).err().expect("refused");
    assert!(err.to_string().contains("linear_path.weight[0, 12]"), "{err}");
}

#[test]
fn specs_with_precomputed_embeddings_train_in_burn_but_are_refused_by_the_engines() {
    let _burn_rng = common::burn_rng_lock();
    let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    let sources = TokenSources { gene_embedding_dim: Some(8), morph_embedding_dim: Some(6), ..TokenSources::default() };
    let spec = ClassifierConfig::new(GENES, CLASSES).for_architecture(Architecture::MultiInput, &sources);
    assert_eq!(spec.kind().unwrap(), Architecture::MultiInput);
    assert!(spec.morphology.is_none());
    let m = ClassifierOptions::new(spec.clone()).init::<B>(&device).expect("burn builds it");
    assert_eq!(m.inputs().gene_embedding, Some(8));
    assert_eq!(m.inputs().morph_embedding, Some(6));
    assert_eq!(m.inputs().genes, None);
    let meta = ModelMeta::new(spec, (0..GENES).map(|i| format!("g{i}")).collect(), (0..CLASSES).map(|i| format!("c{i}")).collect());
    let err = to_engine_model(&m, meta).err().expect("engines refuse it");
    assert!(err.to_string().contains("precomputed gene embedding"), "{err}");
    // And the spec says which architecture a name is, both spellings.
    assert_eq!("dual-modality".parse::<Architecture>().unwrap(), Architecture::DualModality);
    assert!("triple".parse::<Architecture>().unwrap_err().contains("gene-only"));
}

/// Protein channels as model input (`train --protein`): 9 genes + 3 markers are the 12 inputs
/// of the gene embedding. The engines' `prepare` (caller's markers in another order, plus one
/// the model does not read) must build the trainer's input
/// (`ProteinChannels::append(genes, apply(proteins))`, what `with_protein_channels` feeds
/// burn) to 1e-6, and burn fp32, the CPU engine (fp32 ≤ 1e-5, same classes) and the WGSL
/// engine (int8 vs CPU int8 ≤ 1e-4) agree on it. Without the markers: a typed error naming them.
#[test]
fn protein_channels_enter_burn_and_every_engine_identically() {
    let _burn_rng = common::burn_rng_lock();
    let ctx = common::gpu_or_skip("protein_channels_enter_burn_and_every_engine_identically");
    const P: usize = 3;
    let (g, n) = (GENES - P, 48);
    let mut rng = SplitMix64::new(31);
    let counts: Vec<f32> = rng.uniform_vec(n * g, 0.0, 20.0).iter().map(|v| v.floor()).collect();
    // Intensities as XOA 4 stores them divided by protein_scaling_factor (background-subtracted: some < 0).
    let values = rng.uniform_vec(n * P, -5.0, 300.0);
    let markers: Vec<String> = ["CD45", "PanCK", "aSMA"].map(String::from).to_vec();
    let genes: Vec<String> = (0..g).map(|i| format!("g{i}")).collect();
    let classes: Vec<String> = (0..CLASSES).map(|i| format!("c{i}")).collect();
    let train: Vec<usize> = (0..n).step_by(2).collect();
    let channels = engine::ProteinChannels::fit(markers.clone(), &values, &train, 5.0);
    let norm = engine::Normalisation::log1p_with_target_sum(1e4);
    let x_genes = norm.apply(&counts, g, &genes).unwrap();
    let x = engine::ProteinChannels::append(&x_genes, g, &channels.apply(&values), P);
    // The caller's columns: [extra, aSMA, CD45, PanCK].
    let input_markers: Vec<String> = ["Vimentin", "aSMA", "CD45", "PanCK"].map(String::from).to_vec();
    let shuffled: Vec<f32> = values.chunks(P).flat_map(|r| [7.0, r[2], r[0], r[1]]).collect();
    let mut c = cells(n, 33);
    c.genes = x.clone();
    let flat: Vec<f32> = c.centroids.iter().flat_map(|p| *p).collect();
    for (arch, linear) in [(Architecture::GeneOnly, true), (Architecture::Spatial, false)] {
        let m = random_model(arch, linear, 41);
        let mut meta = ModelMeta::new(m.spec.clone(), genes.clone(), classes.clone());
        meta.normalisation = norm.clone();
        meta.proteins = Some(channels.clone());
        let exported = to_engine_model(&m, meta).expect("export");
        let file = EngineModel::from_safetensors_bytes(&exported.to_safetensors_bytes().unwrap()).unwrap();
        assert_eq!(file.meta.proteins.as_ref(), Some(&channels), "{arch}: recorded in the file");
        let input = cellsymphony::data::CellInput {
            counts: cellsymphony::data::CountsInput::Dense { values: &counts, n_cells: n, n_genes: g },
            genes: &genes,
            centroids_um: Some(&flat),
            patches: None,
            proteins: Some(cellsymphony::data::ProteinInput { values: &shuffled, markers: &input_markers }),
        };
        let prepared = file.prepare(input).expect("prepare with proteins");
        let (want, _) = engine_input(&file, &c);
        let dx = prepared.x.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert_eq!(prepared.x.len(), want.len());
        assert!(dx <= 1e-6, "{arch}: engine prepare vs trainer input differ by {dx:.2e}");
        let burn = burn_logits(&m, &c);
        let cpu = engine::cpu::forward_logits_with_patches(&file, &prepared.x, None, n).expect("CPU forward");
        let e = max_rel_diff(&burn, &cpu);
        eprintln!("{arch} + 3 proteins: burn fp32 vs CPU fp32 max rel |Δlogit| {e:.2e}");
        assert!(e <= 1e-5, "{arch}: burn vs CPU differ by {e:.2e}");
        assert_eq!(engine::cpu::argmax_rows(&burn, CLASSES), engine::cpu::argmax_rows(&cpu, CLASSES), "{arch}: classes");
        if let Some(ctx) = &ctx {
            let int8 = file.quantize_int8();
            let x8 = int8.prepare(input).expect("prepare int8").x;
            let cpu8 = engine::cpu::forward_logits_with_patches(&int8, &x8, None, n).expect("CPU int8");
            let clf = GpuClassifier::new(Arc::clone(ctx), &int8).expect("upload");
            let gpu8 = pollster::block_on(clf.logits_with_patches(&x8, None, n)).expect("WGSL run");
            let e = max_rel_diff(&cpu8, &gpu8);
            eprintln!("{arch} + 3 proteins: CPU int8 vs WGSL int8 max rel |Δlogit| {e:.2e}");
            assert!(e <= 1e-4, "{arch}: CPU int8 vs WGSL int8 differ by {e:.2e}");
        }
        // A bundle without those channels: a typed error naming the missing markers.
        let err = file.prepare(cellsymphony::data::CellInput { proteins: None, ..input }).unwrap_err();
        assert!(matches!(err, engine::EngineError::ProteinPanelMismatch { n_missing: 3, .. }), "{err}");
        assert!(err.to_string().contains("CD45, PanCK, aSMA"), "{err}");
        let partial = cellsymphony::data::ProteinInput { values: &shuffled[..n * 2], markers: &input_markers[..2] };
        let err = file.prepare(cellsymphony::data::CellInput { proteins: Some(partial), ..input }).unwrap_err();
        assert!(err.to_string().contains("lacks 2 (first missing: CD45, PanCK)"), "{err}");
    }
}
