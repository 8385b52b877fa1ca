//! WGSL kernels vs their plain-Rust references, and the GPU classifier vs the CPU forward.
//!
//! All inputs are seeded random (SplitMix64), never zeros; sizes are chosen to hit tile
//! edges (non-multiples of 16/64). Each test prints its max abs error.
//!
//! GPU tests need an adapter (lavapipe works). Without one they FAIL, unless
//! `CELLSYMPHONY_ALLOW_NO_GPU=1`, in which case they print
//! `SKIPPED: no GPU adapter: …` to stderr and return (`common::gpu_or_skip`).
//!
//! Tolerances (absolute, `scale = max(1, max |reference|)`):
//! - matmul_int8 (incl. fused GELU and residual): `1e-5 * scale` (same f32 math, different
//!   summation order); the same kernel with f32 weights (`F32_WEIGHTS = 1`): `1e-5 * scale`;
//! - GELU epilogue over [-8, 8]: `2e-6`;
//! - attention (with and without a score bias): `1e-5 * scale`; layernorm: `1e-5 * scale`;
//! - matmul_int8 with the LayerNorm prologue (+ GELU): `1e-5 * scale` vs layernorm then
//!   matmul in f32; attention_out (attention, output projection, residual): `1e-5 * scale`
//!   vs attention then matmul;
//!   mean_pool and token_gather_mean: `1e-6 * scale`;
//! - whole model, GPU int8 vs CPU int8 (3000 cells): max abs `1e-3`, argmax agreement on
//!   every cell whose top-2 logit gap exceeds 1e-3;
//! - whole model, CPU int8 vs CPU f32: max abs `0.05 * max|f32 logit|` and argmax
//!   agreement ≥ 97 % (int8 quantisation noise on a random model);
//! - CPU forward vs an independent f64 implementation of the spec with exact erf: `1e-4`.
//! - flow sampler kernels (issue 16): `film_layernorm`, `conv2d_s2` and `conv_transpose2d_s2`
//!   (identity, GELU, sigmoid epilogues): `1e-5 * scale` (same f32 math; the GPU may fuse
//!   multiply-adds and uses its own `exp`);
//! - whole flow sampler, `GpuFlowSampler` vs the CPU `FlowSampler` on a random-weight model
//!   (`common::flow::random_flow_model_bytes`; 70 pairs, 32-px patches, Heun 20 and Euler 5
//!   steps, one chunk and 3 chunks): latents max abs `1e-4 * max(1, max|ref|)`, patches max
//!   abs `1e-4`; bad inputs give the CPU sampler's `EngineError` variant.

#![cfg(all(feature = "native-io", not(target_arch = "wasm32")))]

mod common;

use std::time::Instant;

use common::{gpu_or_skip, max_abs_diff, names, random_model};
use cellsymphony::engine::cpu::{argmax_rows, forward_logits};
use cellsymphony::util::rng::SplitMix64;
use cellsymphony::engine::ops::{
    attention_biased_reference, attention_out_reference, attention_reference,
    layernorm_matmul_int8_reference, layernorm_reference, matmul_dot4_reference,
    matmul_dot4_sums_reference, matmul_int8_reference, mean_pool_reference,
    token_gather_mean_reference,
};
use cellsymphony::engine::{
    normalise_log1p_cp10k, ClassifierConfig, EngineModel, GpuClassifier, LayerNormWeights, Linear,
    LinearWeight,
};
use cellsymphony::gpu::{
    attention, attention_biased, attention_out, layernorm, layernorm_matmul_int8, matmul_dot4,
    matmul_int8, mean_pool, token_gather_mean, Activation, GpuError,
};

fn max_abs(a: &[f32]) -> f32 {
    a.iter().map(|v| v.abs()).fold(0.0, f32::max)
}

/// Asserts `|gpu - reference| <= rel_tol * max(1, max|reference|)` elementwise and that
/// everything is finite; prints the max error.
fn assert_close(what: &str, gpu: &[f32], reference: &[f32], rel_tol: f32) {
    assert!(
        gpu.iter().all(|v| v.is_finite()),
        "{what}: GPU output has non-finite values"
    );
    let err = max_abs_diff(gpu, reference);
    let tol = rel_tol * max_abs(reference).max(1.0);
    eprintln!(
        "{what}: max abs error {err:.3e} (tolerance {tol:.3e}, max |ref| {:.3})",
        max_abs(reference)
    );
    assert!(err <= tol, "{what}: max abs error {err} > tolerance {tol}");
}

fn random_int8_linear(rng: &mut SplitMix64, out: usize, in_dim: usize) -> Linear {
    let bound = 1.0 / (in_dim as f32).sqrt();
    let f = Linear {
        out_dim: out,
        in_dim,
        weight: LinearWeight::F32(rng.uniform_vec(out * in_dim, -bound, bound)),
        bias: rng.uniform_vec(out, -0.5, 0.5),
    };
    f.quantized()
}

#[test]
fn matmul_int8_matches_reference() {
    let Some(ctx) = gpu_or_skip("matmul_int8_matches_reference") else {
        return;
    };
    let mut rng = SplitMix64::new(0x5EED_0001);
    // (n, in, out): tile edges everywhere, plus exact multiples and degenerate sizes.
    for &(n, in_dim, out) in &[
        (37, 313, 50),
        (1, 1, 1),
        (5, 7, 3),
        (130, 64, 192),
        (64, 128, 64),
        (200, 65, 17),
    ] {
        let w = random_int8_linear(&mut rng, out, in_dim);
        let x = rng.uniform_vec(n * in_dim, -2.0, 2.0);
        let residual = rng.uniform_vec(n * out, -1.0, 1.0);
        for act in [Activation::None, Activation::Gelu] {
            for res in [None, Some(residual.as_slice())] {
                let got = pollster::block_on(matmul_int8(&ctx, &x, n, &w, act, res))
                    .expect("matmul_int8");
                let want = matmul_int8_reference(&x, n, &w, act, res);
                let what = format!(
                    "matmul_int8 n={n} in={in_dim} out={out} act={act:?} residual={}",
                    res.is_some()
                );
                assert_close(&what, &got, &want, 1e-5);
            }
        }
    }
}

#[test]
fn gelu_epilogue_matches_reference() {
    let Some(ctx) = gpu_or_skip("gelu_epilogue_matches_reference") else {
        return;
    };
    // A 1x1 layer with w = 127 * (1/127) passes x through; the epilogue applies GELU.
    let w = Linear {
        out_dim: 1,
        in_dim: 1,
        weight: LinearWeight::Int8 {
            q: vec![127],
            scale: vec![1.0 / 127.0],
        },
        bias: vec![0.0],
    };
    let mut rng = SplitMix64::new(0x5EED_0002);
    let n = 4001;
    let x: Vec<f32> = (0..n)
        .map(|i| -8.0 + 16.0 * i as f32 / (n - 1) as f32 + rng.uniform(-1e-3, 1e-3))
        .collect();
    let got = pollster::block_on(matmul_int8(&ctx, &x, n, &w, Activation::Gelu, None))
        .expect("matmul_int8 gelu");
    let want = matmul_int8_reference(&x, n, &w, Activation::Gelu, None);
    let err = max_abs_diff(&got, &want);
    eprintln!("gelu epilogue on [-8, 8]: max abs error {err:.3e} (tolerance 2e-6)");
    assert!(err <= 2e-6, "gelu error {err}");
}

#[test]
fn matmul_f32_weights_match_reference() {
    let Some(ctx) = gpu_or_skip("matmul_f32_weights_match_reference") else {
        return;
    };
    let mut rng = SplitMix64::new(0x5EED_00F3);
    // (n, in, out): K tiles of 16 f32 words with a remainder, 64 x 64 output tile edges.
    for &(n, in_dim, out) in &[
        (37, 313, 50),
        (1, 1, 1),
        (5, 7, 3),
        (130, 64, 192),
        (200, 65, 17),
        (70, 48, 128),
    ] {
        let bound = 1.0 / (in_dim as f32).sqrt();
        let w = Linear {
            out_dim: out,
            in_dim,
            weight: LinearWeight::F32(rng.uniform_vec(out * in_dim, -bound, bound)),
            bias: rng.uniform_vec(out, -0.5, 0.5),
        };
        let x = rng.uniform_vec(n * in_dim, -2.0, 2.0);
        let residual = rng.uniform_vec(n * out, -1.0, 1.0);
        for act in [Activation::None, Activation::Gelu] {
            for res in [None, Some(residual.as_slice())] {
                let got = pollster::block_on(matmul_int8(&ctx, &x, n, &w, act, res))
                    .expect("matmul f32 weights");
                let want = matmul_int8_reference(&x, n, &w, act, res);
                let what = format!(
                    "matmul f32 weights n={n} in={in_dim} out={out} act={act:?} residual={}",
                    res.is_some()
                );
                assert_close(&what, &got, &want, 1e-5);
            }
        }
    }
}

#[test]
fn matmul_takes_f32_weights_and_rejects_bad_shapes() {
    let Some(ctx) = gpu_or_skip("matmul_takes_f32_weights_and_rejects_bad_shapes") else {
        return;
    };
    let w = Linear {
        out_dim: 2,
        in_dim: 3,
        weight: LinearWeight::F32(vec![0.5; 6]),
        bias: vec![0.1; 2],
    };
    // f32 weights run (`F32_WEIGHTS = 1`): 3 · 0.5 + 0.1 per output.
    let got = pollster::block_on(matmul_int8(&ctx, &[1.0; 3], 1, &w, Activation::None, None))
        .expect("f32 weights");
    assert!(got.iter().all(|v| (v - 1.6).abs() < 1e-6), "{got:?}");
    // Wrong input length, f32 and int8 weights alike.
    let err = pollster::block_on(matmul_int8(&ctx, &[1.0; 4], 1, &w, Activation::None, None))
        .unwrap_err();
    assert!(matches!(err, GpuError::InputShape { expected: 3, found: 4, .. }), "{err}");
    // A weight vector that disagrees with the layer's dims.
    let bad = Linear { weight: LinearWeight::F32(vec![0.5; 5]), ..w.clone() };
    let err = pollster::block_on(matmul_int8(&ctx, &[1.0; 3], 1, &bad, Activation::None, None))
        .unwrap_err();
    assert!(matches!(err, GpuError::InputShape { expected: 6, found: 5, .. }), "{err}");
    // Kernels that read packed int8 only still refuse f32 weights, naming the layer.
    let wo = Linear { out_dim: 2, in_dim: 4, weight: LinearWeight::F32(vec![0.5; 8]), bias: vec![0.0; 2] };
    let err = pollster::block_on(attention_out(&ctx, &[0.1; 12], None, 1, 1, 4, 1, &wo, &[0.0; 2])).unwrap_err();
    assert!(matches!(err, GpuError::NotQuantized { ref name } if name == "attention_out.o"), "{err}");
    let err = pollster::block_on(matmul_int8(
        &ctx,
        &[1.0; 4],
        1,
        &w.quantized(),
        Activation::None,
        None,
    ))
    .unwrap_err();
    assert!(
        matches!(
            err,
            GpuError::InputShape {
                expected: 3,
                found: 4,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn attention_matches_reference() {
    let Some(ctx) = gpu_or_skip("attention_matches_reference") else {
        return;
    };
    let mut rng = SplitMix64::new(0x5EED_0003);
    for &(cells, t, d, h) in &[(37, 4, 64, 4), (19, 5, 24, 3), (7, 1, 16, 2), (3, 9, 8, 8)] {
        let qkv = rng.uniform_vec(cells * t * 3 * d, -3.0, 3.0);
        let got = pollster::block_on(attention(&ctx, &qkv, cells, t, d, h)).expect("attention");
        let want = attention_reference(&qkv, cells, t, d, h);
        assert_close(
            &format!("attention cells={cells} T={t} D={d} H={h}"),
            &got,
            &want,
            1e-5,
        );
    }
}

#[test]
fn attention_with_bias_matches_reference() {
    let Some(ctx) = gpu_or_skip("attention_with_bias_matches_reference") else {
        return;
    };
    let mut rng = SplitMix64::new(0x5EED_0013);
    for &(cells, t, d, h) in &[(37, 4, 64, 4), (19, 6, 24, 3), (5, 16, 32, 4)] {
        let qkv = rng.uniform_vec(cells * t * 3 * d, -3.0, 3.0);
        // Biases of the size of the scores, so they move the softmax.
        let bias = rng.uniform_vec(h * t * t, -4.0, 4.0);
        let got = pollster::block_on(attention_biased(&ctx, &qkv, Some(&bias), cells, t, d, h)).expect("attention");
        let want = attention_biased_reference(&qkv, Some(&bias), cells, t, d, h);
        let unbiased = attention_reference(&qkv, cells, t, d, h);
        // The bias matters: without it the reference is far from the biased one.
        assert!(max_abs_diff(&want, &unbiased) > 0.1, "bias had no effect");
        assert_close(&format!("biased attention cells={cells} T={t} D={d} H={h}"), &got, &want, 1e-5);
    }
    // A bias of the wrong length is a typed error, not a panic.
    let qkv = rng.uniform_vec(2 * 3 * 3 * 8, -1.0, 1.0);
    let e = pollster::block_on(attention_biased(&ctx, &qkv, Some(&[0.0; 5]), 2, 3, 8, 2)).unwrap_err();
    assert!(e.to_string().contains("bias"), "{e}");
}

#[test]
fn token_gather_mean_matches_reference() {
    let Some(ctx) = gpu_or_skip("token_gather_mean_matches_reference") else {
        return;
    };
    let mut rng = SplitMix64::new(0x5EED_0014);
    for &(cells, t, d, ref idx, stride, offset) in &[
        (37usize, 16usize, 64usize, vec![5usize, 6, 9, 10], 313 + 64, 313),
        (1000, 49, 24, vec![24], 24, 0),
        (3, 4, 7, vec![3, 0, 2], 20, 9),
    ] {
        let x = rng.uniform_vec(cells * t * d, -2.0, 2.0);
        let init = rng.uniform_vec(cells * stride, -1.0, 1.0);
        let got = pollster::block_on(token_gather_mean(&ctx, &x, cells, t, d, idx, &init, stride, offset)).expect("token_gather_mean");
        let mut want = init.clone();
        token_gather_mean_reference(&x, cells, t, d, idx, &mut want, stride, offset);
        // Columns outside offset..offset+d keep their values.
        assert_eq!(got[..offset], init[..offset]);
        assert_close(&format!("token_gather_mean cells={cells} T={t} D={d} k={}", idx.len()), &got, &want, 1e-6);
    }
    let e = pollster::block_on(token_gather_mean(&ctx, &[0.5; 8], 1, 4, 2, &[4], &[0.0; 2], 2, 0)).unwrap_err();
    assert!(e.to_string().contains("indices"), "{e}");
}

#[test]
fn attention_softmax_is_stable_for_huge_scores() {
    let Some(ctx) = gpu_or_skip("attention_softmax_is_stable_for_huge_scores") else {
        return;
    };
    let mut rng = SplitMix64::new(0x5EED_0004);
    // Scores of order ±1e4: exp would overflow without subtracting the maximum.
    let (cells, t, d, h) = (11, 4, 64, 4);
    let qkv = rng.uniform_vec(cells * t * 3 * d, -60.0, 60.0);
    let got = pollster::block_on(attention(&ctx, &qkv, cells, t, d, h)).expect("attention");
    let want = attention_reference(&qkv, cells, t, d, h);
    assert!(want.iter().all(|v| v.is_finite()));
    // Softmax is nearly one-hot here; a score difference of a few ulps can move weight.
    assert_close("attention with huge scores", &got, &want, 1e-3);
}

#[test]
fn layernorm_matches_reference() {
    let Some(ctx) = gpu_or_skip("layernorm_matches_reference") else {
        return;
    };
    let mut rng = SplitMix64::new(0x5EED_0005);
    for &(rows, dim) in &[(149, 64), (37, 50), (5, 313), (3, 1), (10, 128)] {
        // Offset mean and varied scale per row test the two-pass variance.
        let mut x = Vec::with_capacity(rows * dim);
        for _ in 0..rows {
            let (mu, sigma) = (rng.uniform(-10.0, 10.0), rng.uniform(0.1, 5.0));
            x.extend((0..dim).map(|_| mu + sigma * rng.normal()));
        }
        let ln = LayerNormWeights {
            gamma: rng.uniform_vec(dim, 0.5, 1.5),
            beta: rng.uniform_vec(dim, -0.5, 0.5),
        };
        let got = pollster::block_on(layernorm(&ctx, &x, rows, dim, &ln.gamma, &ln.beta, 1e-5)).expect("layernorm");
        let want = layernorm_reference(&x, rows, dim, &ln, 1e-5);
        assert_close(
            &format!("layernorm rows={rows} dim={dim}"),
            &got,
            &want,
            1e-5,
        );
    }
}

#[test]
fn layernorm_matmul_prologue_matches_reference() {
    let Some(ctx) = gpu_or_skip("layernorm_matmul_prologue_matches_reference") else {
        return;
    };
    let mut rng = SplitMix64::new(0x5EED_0021);
    // (n, in, out): tile edges (rows and columns not multiples of 64, in not of 4 or 16).
    for &(n, in_dim, out) in &[(149, 64, 192), (37, 50, 17), (5, 313, 70), (3, 1, 2), (130, 32, 64)] {
        let mut x = Vec::with_capacity(n * in_dim);
        for _ in 0..n {
            let (mu, sigma) = (rng.uniform(-10.0, 10.0), rng.uniform(0.1, 5.0));
            x.extend((0..in_dim).map(|_| mu + sigma * rng.normal()));
        }
        let ln = LayerNormWeights {
            gamma: rng.uniform_vec(in_dim, 0.5, 1.5),
            beta: rng.uniform_vec(in_dim, -0.5, 0.5),
        };
        let w = random_int8_linear(&mut rng, out, in_dim);
        for act in [Activation::None, Activation::Gelu] {
            let got = pollster::block_on(layernorm_matmul_int8(&ctx, &x, n, &ln.gamma, &ln.beta, 1e-5, &w, act))
                .expect("layernorm_matmul_int8");
            let want = layernorm_matmul_int8_reference(&x, n, &ln, 1e-5, &w, act);
            // The prologue matters: the un-normalised product is far away.
            let raw = matmul_int8_reference(&x, n, &w, act, None);
            assert!(max_abs_diff(&raw, &want) > 0.1, "LayerNorm prologue had no effect");
            assert_close(&format!("layernorm+matmul_int8 n={n} in={in_dim} out={out} act={act:?}"), &got, &want, 1e-5);
        }
    }
    // gamma of the wrong width is a typed error.
    let w = random_int8_linear(&mut rng, 4, 8);
    let e = pollster::block_on(layernorm_matmul_int8(&ctx, &[0.5; 16], 2, &[1.0; 7], &[0.0; 7], 1e-5, &w, Activation::None))
        .unwrap_err();
    assert!(matches!(e, GpuError::InputShape { .. }), "{e}");
}

#[test]
fn attention_out_matches_reference() {
    let Some(ctx) = gpu_or_skip("attention_out_matches_reference") else {
        return;
    };
    let mut rng = SplitMix64::new(0x5EED_0022);
    // (cells, T, D, H, out): the gene-only shape, odd head widths (HD = 6, 8, 3), the ViT's
    // 16 tokens, rows not a multiple of 64, out over one column tile, HD = 48 (the largest).
    for &(cells, t, d, h, out) in &[
        (37, 4, 64, 4, 64),
        (19, 6, 24, 4, 24),
        (21, 16, 32, 4, 32),
        (7, 5, 9, 3, 70),
        (3, 1, 48, 1, 48),
        (5, 3, 96, 2, 96),
    ] {
        let qkv = rng.uniform_vec(cells * t * 3 * d, -3.0, 3.0);
        let bias = rng.uniform_vec(h * t * t, -4.0, 4.0);
        let wo = random_int8_linear(&mut rng, out, d);
        let residual = rng.uniform_vec(cells * t * out, -1.0, 1.0);
        for b in [None, Some(bias.as_slice())] {
            let got = pollster::block_on(attention_out(&ctx, &qkv, b, cells, t, d, h, &wo, &residual))
                .expect("attention_out");
            let want = attention_out_reference(&qkv, b, cells, t, d, h, &wo, &residual);
            assert_close(
                &format!("attention_out cells={cells} T={t} D={d} H={h} out={out} bias={}", b.is_some()),
                &got,
                &want,
                1e-5,
            );
        }
    }
    // Heads wider than the fused kernel takes are a typed error (the classifier falls back).
    let wo = random_int8_linear(&mut rng, 64, 64);
    let e = pollster::block_on(attention_out(&ctx, &[0.0; 3 * 64], None, 1, 1, 64, 1, &wo, &[0.0; 64])).unwrap_err();
    assert!(e.to_string().contains("at most 48"), "{e}");
}

#[test]
fn layernorm_and_mean_pool_fold_dispatch_beyond_65535_workgroups() {
    let Some(ctx) = gpu_or_skip("layernorm_and_mean_pool_fold_dispatch_beyond_65535_workgroups") else {
        return;
    };
    let mut rng = SplitMix64::new(0x5EED_0006);
    // 70 001 rows = 70 001 layernorm workgroups (> 65535 → 2-D dispatch).
    let (rows, dim) = (70_001, 8);
    let x = rng.uniform_vec(rows * dim, -3.0, 3.0);
    let ln = LayerNormWeights {
        gamma: rng.uniform_vec(dim, 0.5, 1.5),
        beta: rng.uniform_vec(dim, -0.5, 0.5),
    };
    let got = pollster::block_on(layernorm(&ctx, &x, rows, dim, &ln.gamma, &ln.beta, 1e-5)).expect("layernorm");
    assert_close(
        "layernorm 70001 rows",
        &got,
        &layernorm_reference(&x, rows, dim, &ln, 1e-5),
        1e-5,
    );
    // 70 001 * 64 outputs / 64 per workgroup = 70 001 workgroups.
    let (cells, t, d) = (70_001, 1, 64);
    let x = rng.uniform_vec(cells * t * d, -3.0, 3.0);
    let got = pollster::block_on(mean_pool(&ctx, &x, cells, t, d)).expect("mean_pool");
    assert_close(
        "mean_pool 70001 cells",
        &got,
        &mean_pool_reference(&x, cells, t, d),
        1e-6,
    );
}

#[test]
fn mean_pool_matches_reference() {
    let Some(ctx) = gpu_or_skip("mean_pool_matches_reference") else {
        return;
    };
    let mut rng = SplitMix64::new(0x5EED_0007);
    for &(cells, t, d) in &[(37, 4, 64), (13, 3, 50), (1, 7, 1)] {
        let x = rng.uniform_vec(cells * t * d, -5.0, 5.0);
        let got = pollster::block_on(mean_pool(&ctx, &x, cells, t, d)).expect("mean_pool");
        assert_close(
            &format!("mean_pool cells={cells} T={t} D={d}"),
            &got,
            &mean_pool_reference(&x, cells, t, d),
            1e-6,
        );
    }
}

/// The test model: G = 313, C = 12, default hyperparameters.
fn test_model(seed: u64) -> EngineModel {
    let config = ClassifierConfig::new(313, 12);
    EngineModel::random_for_tests(config, names("GENE", 313), names("class_", 12), seed)
}

fn test_inputs(seed: u64, cells: usize, genes: usize) -> Vec<f32> {
    let counts = SplitMix64::new(seed).counts(cells, genes, 0.6, 30);
    normalise_log1p_cp10k(&counts, genes, 1e4)
}

/// Fraction of rows whose argmax agrees.
fn agreement(a: &[u32], b: &[u32]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
}

/// Gap between the best and second-best logit of a row.
fn top2_gap(row: &[f32]) -> f32 {
    let mut s = row.to_vec();
    s.sort_by(|a, b| b.total_cmp(a));
    if s.len() < 2 {
        f32::INFINITY
    } else {
        s[0] - s[1]
    }
}

#[test]
fn gpu_classifier_matches_cpu_forward() {
    let Some(ctx) = gpu_or_skip("gpu_classifier_matches_cpu_forward") else {
        return;
    };
    let model_f32 = test_model(0x5EED_0008);
    let model = model_f32.quantize_int8();
    let c = model.config().clone();
    let cells = 3000;
    let x = test_inputs(0x5EED_0009, cells, c.n_genes);

    let t0 = Instant::now();
    let cpu_int8 = forward_logits(&model, &x, cells).expect("CPU forward");
    let cpu_int8_s = t0.elapsed().as_secs_f64();
    let cpu_f32 = forward_logits(&model_f32, &x, cells).expect("CPU forward");

    let mut clf = GpuClassifier::new(ctx.clone(), &model).expect("GpuClassifier::new");
    // LayerNorms in the matmul prologues, attention fused with its output projection.
    assert_eq!(clf.dispatches_per_layer().expect("dispatch count"), 4);
    assert!(clf.chunk_cells() >= 1024 && clf.chunk_cells() <= clf.max_chunk_cells());
    eprintln!(
        "default chunk {} cells, max {} cells",
        clf.chunk_cells(),
        clf.max_chunk_cells()
    );
    // Three chunks, the last one partial (1024 + 1024 + 952).
    assert_eq!(clf.set_chunk_cells(1024), 1024);
    let _warmup = pollster::block_on(clf.logits(&x[..c.n_genes * 8], 8)).expect("warm-up");
    let t0 = Instant::now();
    let gpu_int8 = pollster::block_on(clf.logits(&x, cells)).expect("GpuClassifier::logits");
    let gpu_s = t0.elapsed().as_secs_f64();
    eprintln!(
        "{cells} cells: GPU {:.3} s ({:.0} cells/s on {}), CPU int8 reference {:.3} s",
        gpu_s,
        cells as f64 / gpu_s,
        ctx.adapter_summary(),
        cpu_int8_s
    );

    assert_eq!(gpu_int8.len(), cells * c.n_classes);
    assert!(gpu_int8.iter().all(|v| v.is_finite()));
    let err = max_abs_diff(&gpu_int8, &cpu_int8);
    eprintln!(
        "GPU int8 vs CPU int8: max abs {err:.3e} (tolerance 1e-3), max |logit| {:.3}",
        max_abs(&cpu_int8)
    );
    assert!(err <= 1e-3, "GPU vs CPU int8 logits differ by {err}");

    let (am_gpu, am_cpu) = (
        argmax_rows(&gpu_int8, c.n_classes),
        argmax_rows(&cpu_int8, c.n_classes),
    );
    for (i, (g, k)) in am_gpu.iter().zip(&am_cpu).enumerate() {
        let row = &cpu_int8[i * c.n_classes..(i + 1) * c.n_classes];
        assert!(
            g == k || top2_gap(row) <= 1e-3,
            "cell {i}: GPU argmax {g} vs CPU {k} with top-2 gap {}",
            top2_gap(row)
        );
    }
    eprintln!(
        "GPU vs CPU int8 argmax agreement: {:.4}",
        agreement(&am_gpu, &am_cpu)
    );

    let q_err = max_abs_diff(&cpu_int8, &cpu_f32);
    let q_tol = 0.05 * max_abs(&cpu_f32);
    let am_f32 = argmax_rows(&cpu_f32, c.n_classes);
    let q_agree = agreement(&am_cpu, &am_f32);
    eprintln!("CPU int8 vs CPU f32: max abs {q_err:.3e} (tolerance {q_tol:.3e}), argmax agreement {q_agree:.4} (bound 0.97)");
    assert!(
        q_err <= q_tol,
        "int8 vs f32 logits differ by {q_err} > {q_tol}"
    );
    assert!(q_agree >= 0.97, "int8 vs f32 argmax agreement {q_agree}");

    // Chunking must not change results: one chunk gives the same logits.
    clf.set_chunk_cells(cells);
    let one_chunk = pollster::block_on(clf.logits(&x, cells)).expect("single chunk");
    let chunk_err = max_abs_diff(&one_chunk, &gpu_int8);
    eprintln!("1 chunk vs 3 chunks: max abs {chunk_err:.3e}");
    assert!(chunk_err <= 1e-6, "chunking changed logits by {chunk_err}");
}

#[test]
fn gpu_classifier_quantises_f32_models_and_handles_edge_inputs() {
    let Some(ctx) = gpu_or_skip("gpu_classifier_quantises_f32_models_and_handles_edge_inputs") else {
        return;
    };
    let model_f32 = test_model(0x5EED_000A);
    let clf = GpuClassifier::new(ctx.clone(), &model_f32).expect("GpuClassifier::new (f32 model)");
    let g = model_f32.config().n_genes;
    let cells = 7;
    let x = test_inputs(0x5EED_000B, cells, g);
    let got = pollster::block_on(clf.logits(&x, cells)).expect("logits");
    let want = forward_logits(&model_f32.quantize_int8(), &x, cells).expect("CPU forward");
    let err = max_abs_diff(&got, &want);
    eprintln!(
        "f32 model uploaded as int8, 7 cells: max abs vs CPU int8 {err:.3e} (tolerance 1e-3)"
    );
    assert!(err <= 1e-3);

    assert!(pollster::block_on(clf.logits(&[], 0))
        .expect("empty")
        .is_empty());
    let e = pollster::block_on(clf.logits(&x[..g * 2 - 1], 2)).unwrap_err();
    assert!(matches!(e, GpuError::InputShape { .. }), "{e}");
    eprintln!("wrong input length -> {e}");
}

/// erf in f64 (series for |x| < 6, else ±1), to check the spec independently of erf_approx.
fn erf_exact(x: f64) -> f64 {
    if x.abs() >= 6.0 {
        return x.signum();
    }
    let (mut term, mut sum, mut n) = (x, x, 0.0);
    while term.abs() > 1e-18 * sum.abs().max(1e-300) && n < 400.0 {
        n += 1.0;
        term *= -x * x / n;
        sum += term / (2.0 * n + 1.0);
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// The model exactly as specified (separate q/k/v, token type added after the embedding,
/// exact-erf GELU), in f64 and written independently of the engine's reference ops.
fn spec_forward_f64(model: &EngineModel, x: &[f32], cells: usize) -> Vec<f64> {
    let c = model.config();
    let w = &model.weights;
    let (t, d, h, f, g) = (c.gene_tokens, c.d_model, c.n_heads, c.d_ff, c.n_genes);
    let hd = d / h;
    let eps = c.layer_norm_eps;
    let lin = |l: &Linear, v: &[f64]| -> Vec<f64> {
        let wf = l.weight_f32();
        (0..l.out_dim)
            .map(|o| {
                l.bias[o] as f64
                    + (0..l.in_dim)
                        .map(|k| wf[o * l.in_dim + k] as f64 * v[k])
                        .sum::<f64>()
            })
            .collect()
    };
    let norm = |n: &LayerNormWeights, v: &[f64]| -> Vec<f64> {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / v.len() as f64;
        v.iter()
            .enumerate()
            .map(|(j, a)| (a - mean) / (var + eps).sqrt() * n.gamma[j] as f64 + n.beta[j] as f64)
            .collect()
    };
    let mut out = Vec::new();
    for cell in 0..cells {
        let xin: Vec<f64> = x[cell * g..(cell + 1) * g]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let e = lin(&w.gene_embedding, &xin);
        let mut tok: Vec<Vec<f64>> = (0..t)
            .map(|i| {
                (0..d)
                    .map(|j| e[i * d + j] + w.token_type[i * d + j] as f64)
                    .collect()
            })
            .collect();
        for l in &w.layers {
            let a: Vec<Vec<f64>> = tok.iter().map(|v| norm(&l.norm1, v)).collect();
            let q: Vec<Vec<f64>> = a.iter().map(|v| lin(&l.q, v)).collect();
            let k: Vec<Vec<f64>> = a.iter().map(|v| lin(&l.k, v)).collect();
            let vv: Vec<Vec<f64>> = a.iter().map(|v| lin(&l.v, v)).collect();
            for i in 0..t {
                let mut att = vec![0.0; d];
                for head in 0..h {
                    let r = head * hd..(head + 1) * hd;
                    let s: Vec<f64> = (0..t)
                        .map(|m| {
                            r.clone().map(|e| q[i][e] * k[m][e]).sum::<f64>() / (hd as f64).sqrt()
                        })
                        .collect();
                    let mx = s.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = s.iter().map(|v| (v - mx).exp()).sum();
                    for m in 0..t {
                        let p = (s[m] - mx).exp() / z;
                        for e in r.clone() {
                            att[e] += p * vv[m][e];
                        }
                    }
                }
                let o = lin(&l.o, &att);
                tok[i].iter_mut().zip(o).for_each(|(a, b)| *a += b);
            }
            for v in tok.iter_mut() {
                let a = norm(&l.norm2, v);
                let hid: Vec<f64> = lin(&l.fc1, &a)
                    .into_iter()
                    .map(|z| 0.5 * z * (1.0 + erf_exact(z / 2f64.sqrt())))
                    .collect();
                assert_eq!(hid.len(), f);
                v.iter_mut()
                    .zip(lin(&l.fc2, &hid))
                    .for_each(|(a, b)| *a += b);
            }
        }
        let normed: Vec<Vec<f64>> = tok.iter().map(|v| norm(&w.final_norm, v)).collect();
        let pooled: Vec<f64> = (0..d)
            .map(|j| normed.iter().map(|v| v[j]).sum::<f64>() / t as f64)
            .collect();
        out.extend(lin(&w.head, &pooled));
    }
    out
}

#[test]
fn cpu_forward_matches_independent_spec_implementation() {
    let model = test_model(0x5EED_000C);
    let cells = 20;
    let x = test_inputs(0x5EED_000D, cells, model.config().n_genes);
    for (name, m) in [("f32", model.clone()), ("int8", model.quantize_int8())] {
        let got = forward_logits(&m, &x, cells).expect("CPU forward");
        let want: Vec<f32> = spec_forward_f64(&m, &x, cells)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let err = max_abs_diff(&got, &want);
        eprintln!("CPU forward ({name}) vs f64 exact-erf spec: max abs {err:.3e} (tolerance 1e-4)");
        assert!(err <= 1e-4, "{name}: {err}");
    }
}

/// A random multi-input model (morphology ViT + centroid token + attention bias): the WGSL
/// engine matches the CPU engine across chunk boundaries, and the file round-trips.
#[test]
fn multi_input_model_gpu_matches_cpu_across_chunks() {
    use cellsymphony::engine::{model_input, MorphologyTokenConfig, SpatialTokenConfig};
    let mut config = ClassifierConfig::new(60, 7);
    config.d_model = 32;
    config.n_layers = 2;
    config.d_ff = 48;
    config.gene_tokens = 2;
    config.spatial = Some(SpatialTokenConfig { n_frequencies: 4, min_wavelength_um: 8.0, max_wavelength_um: 4000.0 });
    config.morphology = Some(MorphologyTokenConfig {
        image_size: 24,
        vit_patch: 6,
        width: 16,
        n_heads: 2,
        d_ff: 24,
        n_layers: 2,
        k_nearest: 4,
        um_per_px: 0.75,
    });
    config.attention_bias = true;
    let model = random_model(config.clone(), 5);
    assert_eq!(model.meta.architecture, "multi_input");
    let back = EngineModel::from_safetensors_bytes(&model.to_safetensors_bytes().unwrap()).unwrap();
    assert_eq!(back, model);
    let int8 = model.quantize_int8();
    let back8 = EngineModel::from_safetensors_bytes(&int8.to_safetensors_bytes().unwrap()).unwrap();
    assert_eq!(back8, int8);

    let cells = 301;
    let mut rng = SplitMix64::new(0x5EED_0015);
    let x = test_inputs(17, cells, 60);
    let centroids: Vec<[f32; 2]> = (0..cells).map(|_| [rng.uniform(0.0, 3000.0), rng.uniform(0.0, 3000.0)]).collect();
    let x = model_input(&config, x, Some(&centroids)).unwrap();
    let patches = rng.uniform_vec(cells * 24 * 24, 0.0, 1.0);
    let cpu_int8 = cellsymphony::engine::cpu::forward_logits_with_patches(&int8, &x, Some(&patches), cells).expect("CPU forward");
    let cpu_f32 = cellsymphony::engine::cpu::forward_logits_with_patches(&model, &x, Some(&patches), cells).expect("CPU forward");
    let agree = agreement(&argmax_rows(&cpu_int8, 7), &argmax_rows(&cpu_f32, 7));
    eprintln!("multi-input random model: CPU int8 vs f32 argmax agreement {agree:.3}");
    assert!(agree >= 0.9, "int8 vs f32 agreement {agree}");
    // Patches change the answer (the ViT path is live).
    let other = rng.uniform_vec(cells * 24 * 24, 0.0, 1.0);
    let moved = cellsymphony::engine::cpu::forward_logits_with_patches(&int8, &x, Some(&other), cells).expect("CPU forward");
    assert!(max_abs_diff(&moved, &cpu_int8) > 1e-3, "patches had no effect");

    let Some(ctx) = gpu_or_skip("multi_input_model_gpu_matches_cpu_across_chunks") else {
        return;
    };
    let mut clf = GpuClassifier::new(ctx, &int8).expect("upload");
    clf.set_chunk_cells(128);
    let got = pollster::block_on(clf.logits_with_patches(&x, Some(&patches), cells)).expect("logits");
    assert_close("multi-input GPU int8 vs CPU int8", &got, &cpu_int8, 1e-4);
    let e = pollster::block_on(clf.logits_with_patches(&x, Some(&patches[1..]), cells)).unwrap_err();
    assert!(e.to_string().contains("patches"), "{e}");
}

// ---- int8 activations (`matmul_dot4.wgsl`, WGSL dot4I8Packed) ----------------------------
//
// Tolerances:
// - integer sums: bit for bit (inputs whose row quantisation is exact: integers, amax 127);
// - random inputs vs `matmul_dot4_reference`: `1e-5 * scale` on at least 99 % of the outputs
//   (the rest: an input that lands within float rounding of a rounding tie, or a LayerNorm
//   value that differs in the last bit, may quantise one step apart; each such input moves an
//   output by at most `127 · sx · sw`, and the bound allows two);
// - whole model, int8 vs f32 activations: `assert_int8_follows_fp32`, max |Δlogit| ≤ 0.05,
//   class flips only on near ties, agreement ≥ 95 % (measured on lavapipe: 0.0046, 256/256 cells).

/// The GPU context with the int8-activation kernels, which wgpu's native WGSL front end
/// always implements (SPIR-V OpSDot or a polyfill): their absence here is a failure.
fn int8_dot_context(test: &str) -> Option<std::sync::Arc<cellsymphony::gpu::GpuContext>> {
    let ctx = gpu_or_skip(test)?;
    assert!(ctx.supports_int8_dot(), "{test}: int8 activations unavailable: {}", ctx.int8_dot_status());
    Some(ctx)
}

#[test]
fn dot4_matmul_integer_sums_are_exact() {
    let Some(ctx) = int8_dot_context("dot4_matmul_integer_sums_are_exact") else {
        return;
    };
    let mut rng = SplitMix64::new(0x5EED_0D04);
    // in = 131: not a multiple of 4 (padding) nor of the 32-input k tile; rows and columns
    // cross the 64-wide tiles.
    let (n, in_dim, out) = (70, 131, 75);
    let mut x: Vec<f32> = (0..n * in_dim).map(|_| rng.below(255) as f32 - 127.0).collect();
    for r in 0..n {
        // amax = 127 in every row (so the row's quantisation is the identity)…
        x[r * in_dim + r % in_dim] = if r % 2 == 0 { 127.0 } else { -127.0 };
    }
    // …except row 5, all zeros (scale 1, q 0).
    x[5 * in_dim..6 * in_dim].iter_mut().for_each(|v| *v = 0.0);
    let q: Vec<i8> = (0..out * in_dim).map(|_| (rng.below(255) as i32 - 127) as i8).collect();
    let w = Linear { out_dim: out, in_dim, weight: LinearWeight::Int8 { q, scale: vec![1.0; out] }, bias: vec![0.0; out] };
    let (sums, row_scales) = matmul_dot4_sums_reference(&x, n, &w);
    assert!(row_scales.iter().all(|&s| s == 1.0));
    let got = pollster::block_on(matmul_dot4(&ctx, &x, n, None, &w, Activation::None, None)).expect("matmul_dot4");
    // y = f32(sum) · (1 · 1) + 0: the kernel's integer sums come back exactly (|sum| < 2²¹,
    // so one rounding of the unit scale cannot reach ±0.5).
    let mut worst = 0.0f32;
    for (i, (&y, &s)) in got.iter().zip(&sums).enumerate() {
        assert_eq!(y.round() as i64, i64::from(s), "output {i}: GPU {y} vs integer sum {s}");
        worst = worst.max((y - s as f32).abs());
    }
    let biggest = sums.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    eprintln!("dot4 integer sums: {} of {} equal (largest |sum| {biggest}, max |y - sum| {worst:.3e})", got.len(), got.len());
    assert!(biggest > 100_000, "test inputs too small to exercise the integer range");
}

#[test]
fn dot4_matmul_matches_reference() {
    let Some(ctx) = int8_dot_context("dot4_matmul_matches_reference") else {
        return;
    };
    let mut rng = SplitMix64::new(0x5EED_0D05);
    for &(n, in_dim, out) in &[(37, 313, 50), (1, 1, 1), (130, 64, 192), (149, 50, 17)] {
        let w = random_int8_linear(&mut rng, out, in_dim);
        let mut x = Vec::with_capacity(n * in_dim);
        for _ in 0..n {
            let (mu, sigma) = (rng.uniform(-3.0, 3.0), rng.uniform(0.1, 3.0));
            x.extend((0..in_dim).map(|_| mu + sigma * rng.normal()));
        }
        let ln = LayerNormWeights { gamma: rng.uniform_vec(in_dim, 0.5, 1.5), beta: rng.uniform_vec(in_dim, -0.5, 0.5) };
        let residual = rng.uniform_vec(n * out, -1.0, 1.0);
        let LinearWeight::Int8 { scale: sw, .. } = &w.weight else { unreachable!() };
        let sw_max = sw.iter().copied().fold(0.0f32, f32::max);
        for (act, res, norm) in [
            (Activation::None, None, false),
            (Activation::Gelu, None, false),
            (Activation::None, Some(residual.as_slice()), false),
            (Activation::None, None, true),
            (Activation::Gelu, None, true),
        ] {
            let norm_ref = norm.then_some((&ln, 1e-5f32));
            let want = matmul_dot4_reference(&x, n, norm_ref, &w, act, res);
            let gpu_norm = norm.then_some((ln.gamma.as_slice(), ln.beta.as_slice(), 1e-5f32));
            let got = pollster::block_on(matmul_dot4(&ctx, &x, n, gpu_norm, &w, act, res)).expect("matmul_dot4");
            let what = format!("matmul_dot4 n={n} in={in_dim} out={out} act={act:?} residual={} norm={norm}", res.is_some());
            assert!(got.iter().all(|v| v.is_finite()), "{what}: non-finite output");
            let staged = if norm { layernorm_reference(&x, n, in_dim, &ln, 1e-5) } else { x.clone() };
            let (_, sx) = matmul_dot4_sums_reference(&staged, n, &w);
            let sx_max = sx.iter().copied().fold(0.0f32, f32::max);
            let tight = 1e-5 * max_abs(&want).max(1.0);
            let loose = tight + 2.0 * 127.0 * sx_max * sw_max * 1.2;
            let err = max_abs_diff(&got, &want);
            let exact = got.iter().zip(&want).filter(|(a, b)| (*a - *b).abs() <= tight).count();
            eprintln!("{what}: max abs error {err:.3e} (bound {loose:.3e}), {exact}/{} within {tight:.1e}", got.len());
            assert!(err <= loose, "{what}: max abs error {err} > {loose}");
            assert!(exact as f64 >= 0.99 * got.len() as f64, "{what}: only {exact}/{} outputs within {tight}", got.len());
            // Quantising the activations is visible: f32 activations give other values.
            if in_dim > 1 {
                let f32_act = matmul_int8_reference(&staged, n, &w, act, res);
                assert!(max_abs_diff(&f32_act, &want) > tight, "{what}: int8 activations changed nothing");
            }
        }
    }
}

#[test]
fn gpu_classifier_int8_activations_follow_default_path() {
    let Some(ctx) = int8_dot_context("gpu_classifier_int8_activations_follow_default_path") else {
        return;
    };
    let model = test_model(0x5EED_0D06).quantize_int8();
    let c = model.config().clone();
    let cells = 256;
    let x = test_inputs(0x5EED_0D07, cells, c.n_genes);
    let mut clf = GpuClassifier::new(ctx, &model).expect("GpuClassifier::new");
    assert!(!clf.int8_activations(), "int8 activations must be opt-in");
    let t0 = Instant::now();
    let default = pollster::block_on(clf.logits(&x, cells)).expect("default path");
    let default_s = t0.elapsed().as_secs_f64();
    assert!(clf.set_int8_activations(true));
    assert_eq!(clf.dispatches_per_layer().expect("dispatch count"), 4);
    let t0 = Instant::now();
    let int8 = pollster::block_on(clf.logits(&x, cells)).expect("int8 activations");
    let int8_s = t0.elapsed().as_secs_f64();
    eprintln!("{cells} cells: default path {default_s:.2} s, int8 activations {int8_s:.2} s (timing only; load varies)");
    common::quant::assert_int8_follows_fp32("GPU int8 vs f32 activations", &default, &int8, c.n_classes, 0.05, 0.95);
    assert!(max_abs_diff(&default, &int8) > 1e-4, "int8 activations changed nothing");
    // Off again: today's path, bit for bit.
    assert!(!clf.set_int8_activations(false));
    let again = pollster::block_on(clf.logits(&x, cells)).expect("default path again");
    assert_eq!(again, default);
}

// --- The flow sampler on WebGPU (issue 16) ---

use cellsymphony::engine::flow::{FlowCondition, FlowSampler, FlowSolver, FlowSpec};
use cellsymphony::engine::ops::{conv2d_s2_reference, conv_transpose2d_s2_reference, film_layernorm_reference};
use cellsymphony::engine::{EngineError, GpuFlowSampler};
use cellsymphony::gpu::{conv2d_s2, conv_transpose2d_s2, film_layernorm, ConvEpilogue};
use common::flow::random_flow_model_bytes;

#[test]
fn film_layernorm_matches_reference() {
    let Some(ctx) = gpu_or_skip("film_layernorm_matches_reference") else {
        return;
    };
    let mut rng = SplitMix64::new(0x5EED_F001);
    // (rows, dim): the flow's hidden width, odd widths, one row, and rows beyond 65535
    // workgroups (a 2-D dispatch).
    for &(rows, dim) in &[(70, 128), (1, 1), (37, 33), (5, 300), (70_001, 3)] {
        let h = rng.uniform_vec(rows * dim, -3.0, 3.0);
        let gb = rng.uniform_vec(rows * 2 * dim, -1.0, 1.0);
        let ln = LayerNormWeights { gamma: rng.uniform_vec(dim, 0.5, 1.5), beta: rng.uniform_vec(dim, -0.5, 0.5) };
        let got = pollster::block_on(film_layernorm(&ctx, &h, &gb, rows, dim, &ln.gamma, &ln.beta, 1e-5)).expect("film_layernorm");
        let want = film_layernorm_reference(&h, &gb, rows, dim, &ln, 1e-5);
        assert_close(&format!("film_layernorm rows={rows} dim={dim}"), &got, &want, 1e-5);
    }
}

const EPILOGUES: [ConvEpilogue; 3] = [ConvEpilogue::None, ConvEpilogue::Gelu, ConvEpilogue::Sigmoid];

#[test]
fn conv2d_s2_matches_reference() {
    let Some(ctx) = gpu_or_skip("conv2d_s2_matches_reference") else {
        return;
    };
    let mut rng = SplitMix64::new(0x5EED_F002);
    // (n, c_in, c_out, side): the flow encoder's layers, odd channels, sides not multiples
    // of 4, and a 2-D dispatch (263,000 · 64 outputs > 65535 workgroups of 256).
    for &(n, c_in, c_out, side, all) in &[
        (3, 1, 16, 32, true),
        (2, 16, 32, 16, true),
        (2, 32, 32, 8, true),
        (5, 3, 7, 10, true),
        (1, 5, 1, 2, true),
        (263_000, 1, 64, 2, false),
    ] {
        let x = rng.uniform_vec(n * c_in * side * side, 0.0, 1.0);
        let bound = 1.0 / ((c_in * 9) as f32).sqrt();
        let w = rng.uniform_vec(c_out * c_in * 9, -bound, bound);
        let b = rng.uniform_vec(c_out, -0.2, 0.2);
        let epilogues: &[ConvEpilogue] = if all { &EPILOGUES } else { &[ConvEpilogue::Gelu] };
        for &epi in epilogues {
            let got = pollster::block_on(conv2d_s2(&ctx, &x, n, c_in, side, &w, &b, c_out, epi)).expect("conv2d_s2");
            let want = conv2d_s2_reference(&x, n, c_in, side, &w, &b, c_out, epi);
            assert_close(&format!("conv2d_s2 n={n} c_in={c_in} c_out={c_out} side={side} {epi:?}"), &got, &want, 1e-5);
        }
    }
    // An odd side is rejected, not rounded.
    let err = pollster::block_on(conv2d_s2(&ctx, &[0.5; 9], 1, 1, 3, &[0.1; 9], &[0.0], 1, ConvEpilogue::None)).unwrap_err();
    assert!(matches!(err, cellsymphony::gpu::GpuError::InputShape { .. }), "{err}");
}

#[test]
fn conv_transpose2d_s2_matches_reference() {
    let Some(ctx) = gpu_or_skip("conv_transpose2d_s2_matches_reference") else {
        return;
    };
    let mut rng = SplitMix64::new(0x5EED_F003);
    // (n, c_in, c_out, side): the flow decoder's layers, odd channels and sides, 1×1 input.
    for &(n, c_in, c_out, side) in &[(2, 32, 32, 4), (3, 32, 16, 8), (2, 16, 1, 16), (4, 3, 5, 5), (1, 1, 1, 1), (2, 7, 3, 9)] {
        let x = rng.uniform_vec(n * c_in * side * side, -1.0, 1.0);
        let bound = 1.0 / ((c_in * 4) as f32).sqrt();
        let w = rng.uniform_vec(c_in * c_out * 16, -bound, bound);
        let b = rng.uniform_vec(c_out, -0.2, 0.2);
        for epi in EPILOGUES {
            let got = pollster::block_on(conv_transpose2d_s2(&ctx, &x, n, c_in, side, &w, &b, c_out, epi)).expect("conv_transpose2d_s2");
            let want = conv_transpose2d_s2_reference(&x, n, c_in, side, &w, &b, c_out, epi);
            assert_close(&format!("conv_transpose2d_s2 n={n} c_in={c_in} c_out={c_out} side={side} {epi:?}"), &got, &want, 1e-5);
        }
    }
}

/// Random conditioning of `n` pairs for `spec`: patches in `[0, 1]`, tokens, Δg, cell.
fn random_inputs(spec: &FlowSpec, n: usize, seed: u64) -> (Vec<f32>, Vec<u32>, Vec<f32>, Vec<f32>) {
    let mut rng = SplitMix64::new(seed);
    let patches = rng.uniform_vec(n * spec.patch_px * spec.patch_px, 0.0, 1.0);
    let tokens = (0..n).map(|i| ((i * 7 + 3) % spec.n_transitions) as u32).collect();
    let dg = rng.uniform_vec(n * spec.dg_components, -2.0, 2.0);
    let cell = rng.uniform_vec(n * spec.cell_dim, -1.5, 1.5);
    (patches, tokens, dg, cell)
}

fn test_spec() -> FlowSpec {
    FlowSpec::small(5, 24)
}

#[test]
fn gpu_flow_sampler_matches_cpu_sampler() {
    let Some(ctx) = gpu_or_skip("gpu_flow_sampler_matches_cpu_sampler") else {
        return;
    };
    let spec = test_spec();
    let cpu = FlowSampler::from_safetensors(&random_flow_model_bytes(&spec, 0x5EED_F010)).expect("random flow model");
    assert_eq!(cpu.sizes(), spec);
    let mut gpu = GpuFlowSampler::new(ctx, &cpu).expect("upload flow model");
    assert_eq!(gpu.dispatches_per_velocity(), 3 + 4 * spec.blocks);
    let n = 70;
    let (patches, tokens, dg, cell) = random_inputs(&spec, n, 0x5EED_F011);
    let cond = FlowCondition { tokens: &tokens, dg: &dg, cell: &cell };
    let mut rng = SplitMix64::new(0x5EED_F012);
    let mean = rng.uniform_vec(spec.latent, -0.5, 0.5);
    let scale = 1.7;
    for (solver, steps, chunk) in [(FlowSolver::Heun, 20, 1024), (FlowSolver::Euler, 5, 1024), (FlowSolver::Heun, 3, 32), (FlowSolver::Euler, 5, 32)] {
        gpu.set_chunk_pairs(chunk);
        let t0 = Instant::now();
        let want = cpu.sample(&patches, &cond, &mean, scale, steps, solver).expect("CPU sample");
        let t_cpu = t0.elapsed();
        let t0 = Instant::now();
        let got = pollster::block_on(gpu.sample(&patches, &cond, &mean, scale, steps, solver)).expect("GPU sample");
        let t_gpu = t0.elapsed();
        let what = format!("{n} pairs, {solver:?} {steps} steps, chunks of {}", gpu.chunk_pairs());
        eprintln!("{what}: CPU {t_cpu:.2?}, GPU {t_gpu:.2?}");
        assert_eq!(got.latents.len(), want.latents.len());
        assert_eq!(got.patches.len(), want.patches.len());
        // The latents moved away from the encoder's output (the ODE did something).
        let encoded = cpu.encode(&patches).expect("encode");
        eprintln!("{what}: latents moved by max {:.3} from the encoding", max_abs_diff(&encoded, &want.latents));
        assert_close(&format!("latents ({what})"), &got.latents, &want.latents, 1e-4);
        let err = max_abs_diff(&got.patches, &want.patches);
        eprintln!("patches ({what}): max abs error {err:.3e} (tolerance 1e-4)");
        assert!(err <= 1e-4, "patches ({what}): {err}");
    }
    // No pairs: empty output, like the CPU.
    let none = FlowCondition { tokens: &[], dg: &[], cell: &[] };
    let empty = pollster::block_on(gpu.sample(&[], &none, &mean, scale, 4, FlowSolver::Heun)).expect("no pairs");
    assert_eq!(empty, cpu.sample(&[], &none, &mean, scale, 4, FlowSolver::Heun).expect("no pairs (CPU)"));
}

#[test]
fn gpu_flow_sampler_rejects_bad_inputs_like_the_cpu() {
    let Some(ctx) = gpu_or_skip("gpu_flow_sampler_rejects_bad_inputs_like_the_cpu") else {
        return;
    };
    let spec = test_spec();
    let cpu = FlowSampler::from_safetensors(&random_flow_model_bytes(&spec, 0x5EED_F020)).expect("random flow model");
    let gpu = GpuFlowSampler::new(ctx, &cpu).expect("upload flow model");
    let n = 4;
    let (patches, tokens, dg, cell) = random_inputs(&spec, n, 0x5EED_F021);
    let mean = vec![0.0; spec.latent];
    let bad_tokens = [0, 1, spec.n_transitions as u32, 2];
    let short_dg = &dg[..dg.len() - 1];
    let mut nan_cell = cell.clone();
    nan_cell[3] = f32::NAN;
    // (what, conditioning, control patches, latent mean, latent scale, steps)
    type Case<'a> = (&'static str, FlowCondition<'a>, &'a [f32], &'a [f32], f32, usize);
    let cases: Vec<Case<'_>> = vec![
        ("token out of range", FlowCondition { tokens: &bad_tokens, dg: &dg, cell: &cell }, &patches, &mean, 1.0, 4),
        ("Δg too short", FlowCondition { tokens: &tokens, dg: short_dg, cell: &cell }, &patches, &mean, 1.0, 4),
        ("patches too short", FlowCondition { tokens: &tokens, dg: &dg, cell: &cell }, &patches[1..], &mean, 1.0, 4),
        ("latent mean too long", FlowCondition { tokens: &tokens, dg: &dg, cell: &cell }, &patches, &[0.0; 33], 1.0, 4),
        ("zero steps", FlowCondition { tokens: &tokens, dg: &dg, cell: &cell }, &patches, &mean, 1.0, 0),
        ("negative scale", FlowCondition { tokens: &tokens, dg: &dg, cell: &cell }, &patches, &mean, -1.0, 4),
        ("NaN in the cell embedding", FlowCondition { tokens: &tokens, dg: &dg, cell: &nan_cell }, &patches, &mean, 1.0, 4),
    ];
    for (what, cond, p, m, scale, steps) in cases {
        let want = cpu.sample(p, &cond, m, scale, steps, FlowSolver::Euler).expect_err(what);
        let got = pollster::block_on(gpu.sample(p, &cond, m, scale, steps, FlowSolver::Euler)).expect_err(what);
        eprintln!("{what}: {got}");
        assert!(matches!(want, EngineError::FlowInput { .. } | EngineError::InputShape { .. }), "{what}: {want}");
        assert_eq!(std::mem::discriminant(&got), std::mem::discriminant(&want), "{what}: GPU {got} vs CPU {want}");
        assert_eq!(got.to_string(), want.to_string(), "{what}");
    }
}

/// CPU vs GPU time of 512 pairs, Heun 20 steps (the NOTES figure); `--ignored` to run.
#[test]
#[ignore = "timing only: cargo test --release --test kernels flow_sampler_timing -- --ignored --nocapture"]
fn flow_sampler_timing_512_pairs_heun_20() {
    let Some(ctx) = gpu_or_skip("flow_sampler_timing_512_pairs_heun_20") else {
        return;
    };
    let spec = test_spec();
    let cpu = FlowSampler::from_safetensors(&random_flow_model_bytes(&spec, 0x5EED_F030)).expect("random flow model");
    let gpu = GpuFlowSampler::new(ctx.clone(), &cpu).expect("upload flow model");
    let n = 512;
    let (patches, tokens, dg, cell) = random_inputs(&spec, n, 0x5EED_F031);
    let cond = FlowCondition { tokens: &tokens, dg: &dg, cell: &cell };
    let mean = vec![0.0; spec.latent];
    // Warm-up (pipeline compilation) on a few pairs.
    let warm = FlowCondition { tokens: &tokens[..2], dg: &dg[..2 * spec.dg_components], cell: &cell[..2 * spec.cell_dim] };
    pollster::block_on(gpu.sample(&patches[..2 * spec.patch_px * spec.patch_px], &warm, &mean, 1.0, 2, FlowSolver::Heun)).expect("warm-up");
    let t0 = Instant::now();
    let want = cpu.sample(&patches, &cond, &mean, 1.0, 20, FlowSolver::Heun).expect("CPU sample");
    let t_cpu = t0.elapsed();
    let t0 = Instant::now();
    let got = pollster::block_on(gpu.sample(&patches, &cond, &mean, 1.0, 20, FlowSolver::Heun)).expect("GPU sample");
    let t_gpu = t0.elapsed();
    eprintln!(
        "512 pairs, Heun 20 steps: CPU {t_cpu:.2?}, GPU ({}) {t_gpu:.2?}; latents max |Δ| {:.2e}, patches max |Δ| {:.2e}",
        ctx.adapter_summary(),
        max_abs_diff(&got.latents, &want.latents),
        max_abs_diff(&got.patches, &want.patches)
    );
}

// --- Fast paths (issue 12, point 2): shader-f16 and subgroups ---
//
// Each fast-path kernel against its plain-Rust reference on seeded random inputs (tile edges
// as above). A test whose feature the adapter lacks prints `SKIPPED: adapter lacks …` and is
// counted (`common::gpu::with_feature`); lavapipe has both. Tolerances:
// - subgroup reductions (LayerNorm prologue of matmul_int8 and matmul_dot4, dot4 row amax,
//   attention_out scores): the portable kernels' tolerances (`1e-5 * scale`; dot4: the
//   quantisation bound of `dot4_matmul_matches_reference`), as only the summation order of
//   4 partial sums changes (amax is exact); and within `1e-5 * scale` of the portable kernel.
// - f16 storage: output stored as f16 vs `matmul_int8_f16_reference` (the same rounding in
//   Rust): `1e-5 * scale + 2⁻¹⁰ |ref|` per value (the f32 results differ by ≤ 1e-5 · scale,
//   and round-to-nearest can then land one f16 ulp ≤ 2⁻¹⁰ |v| apart); input stored as f16
//   vs the reference on the same f16-rounded input: `1e-5 * scale`. Against the f32 kernel
//   (what f16 costs), the derived bound: each stored value has relative error ≤ u = 2⁻¹¹,
//   so |Δy[r, o]| ≤ u · Σ_k |x[r, k]| · |w[o, k]| (input rounding) and ≤ u · |y| (output
//   rounding); asserted elementwise (+ 1e-5 · scale), with the observed fraction of the
//   bound printed (random-walk errors sit near u · √K · rms, far under the worst case).

use cellsymphony::engine::ops::matmul_int8_f16_reference;
use cellsymphony::gpu::{attention_out_with, matmul_dot4_with, matmul_int8_fast, GpuContext, GpuOptions};

fn subgroup_context(test: &str) -> Option<std::sync::Arc<GpuContext>> {
    let ctx = gpu_or_skip(test)?;
    let has = ctx.supports_subgroups();
    common::gpu::with_feature(test, ctx, "subgroups", has)
}

fn f16_context(test: &str) -> Option<std::sync::Arc<GpuContext>> {
    let ctx = gpu_or_skip(test)?;
    let has = ctx.supports_f16();
    common::gpu::with_feature(test, ctx, "shader-f16", has)
}

/// Rows with their own mean and spread (what a LayerNorm prologue sees).
fn shifted_rows(rng: &mut SplitMix64, n: usize, in_dim: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(n * in_dim);
    for _ in 0..n {
        let (mu, sigma) = (rng.uniform(-10.0, 10.0), rng.uniform(0.1, 5.0));
        x.extend((0..in_dim).map(|_| mu + sigma * rng.normal()));
    }
    x
}

#[test]
fn fast_paths_are_detected_and_can_be_turned_off() {
    let Some(ctx) = gpu_or_skip("fast_paths_are_detected_and_can_be_turned_off") else {
        return;
    };
    let f = ctx.adapter.features();
    eprintln!("fast paths: {}", ctx.fast_paths());
    // Requested exactly where the adapter has them (natively; wgpu's WebGPU backend cannot
    // request subgroups).
    assert_eq!(ctx.supports_f16(), f.contains(wgpu::Features::SHADER_F16), "{}", ctx.fast_paths());
    let sg_ok = f.contains(wgpu::Features::SUBGROUP) && ctx.adapter.get_info().subgroup_min_size >= 4;
    assert_eq!(ctx.supports_subgroups(), sg_ok, "{}", ctx.fast_paths());
    assert_eq!(ctx.device.features().contains(wgpu::Features::SHADER_F16), ctx.supports_f16());
    assert_eq!(ctx.device.features().contains(wgpu::Features::SUBGROUP), ctx.supports_subgroups());
    let off = pollster::block_on(GpuContext::with_options(GpuOptions::portable())).expect("portable context");
    assert!(!off.supports_f16() && !off.supports_subgroups());
    assert!(off.device.features().is_empty(), "the portable context requested {:?}", off.device.features());
    assert!(off.fast_paths().contains("turned off by the caller"), "{}", off.fast_paths());
    // Asking a portable context for a fast path is a typed error, not a panic.
    let w = random_int8_linear(&mut SplitMix64::new(1), 4, 8);
    let e = pollster::block_on(matmul_int8_fast(&off, &[0.5; 16], 2, None, &w, Activation::None, None, true, false, false)).unwrap_err();
    assert!(matches!(e, GpuError::Unsupported { .. }), "{e}");
    let e = pollster::block_on(matmul_int8_fast(&off, &[0.5; 16], 2, None, &w, Activation::None, None, false, true, false)).unwrap_err();
    assert!(matches!(e, GpuError::Unsupported { .. }), "{e}");
}

#[test]
fn subgroup_layernorm_matmul_matches_reference() {
    let Some(ctx) = subgroup_context("subgroup_layernorm_matmul_matches_reference") else {
        return;
    };
    let mut rng = SplitMix64::new(0x5EED_F001);
    for &(n, in_dim, out) in &[(149, 64, 192), (37, 50, 17), (5, 313, 70), (3, 1, 2), (130, 32, 64)] {
        let x = shifted_rows(&mut rng, n, in_dim);
        let ln = LayerNormWeights { gamma: rng.uniform_vec(in_dim, 0.5, 1.5), beta: rng.uniform_vec(in_dim, -0.5, 0.5) };
        let w = random_int8_linear(&mut rng, out, in_dim);
        for act in [Activation::None, Activation::Gelu] {
            let norm = Some((ln.gamma.as_slice(), ln.beta.as_slice(), 1e-5f32));
            let got = pollster::block_on(matmul_int8_fast(&ctx, &x, n, norm, &w, act, None, true, false, false)).expect("subgroup matmul");
            let want = layernorm_matmul_int8_reference(&x, n, &ln, 1e-5, &w, act);
            let what = format!("subgroup LN+matmul_int8 n={n} in={in_dim} out={out} act={act:?}");
            assert_close(&what, &got, &want, 1e-5);
            let portable = pollster::block_on(layernorm_matmul_int8(&ctx, &x, n, &ln.gamma, &ln.beta, 1e-5, &w, act)).expect("portable");
            assert_close(&format!("{what} vs portable kernel"), &got, &portable, 1e-5);
        }
    }
}

#[test]
fn subgroup_dot4_matmul_matches_reference() {
    let Some(ctx) = subgroup_context("subgroup_dot4_matmul_matches_reference") else {
        return;
    };
    assert!(ctx.supports_int8_dot(), "{}", ctx.int8_dot_status());
    let mut rng = SplitMix64::new(0x5EED_F002);
    for &(n, in_dim, out) in &[(37, 313, 50), (1, 1, 1), (130, 64, 192), (149, 50, 17)] {
        let w = random_int8_linear(&mut rng, out, in_dim);
        let x = shifted_rows(&mut rng, n, in_dim);
        let ln = LayerNormWeights { gamma: rng.uniform_vec(in_dim, 0.5, 1.5), beta: rng.uniform_vec(in_dim, -0.5, 0.5) };
        let LinearWeight::Int8 { scale: sw, .. } = &w.weight else { unreachable!() };
        let sw_max = sw.iter().copied().fold(0.0f32, f32::max);
        for (act, norm) in [(Activation::None, false), (Activation::None, true), (Activation::Gelu, true)] {
            let want = matmul_dot4_reference(&x, n, norm.then_some((&ln, 1e-5f32)), &w, act, None);
            let gpu_norm = norm.then_some((ln.gamma.as_slice(), ln.beta.as_slice(), 1e-5f32));
            let got = pollster::block_on(matmul_dot4_with(&ctx, &x, n, gpu_norm, &w, act, None, true)).expect("subgroup dot4");
            let portable = pollster::block_on(matmul_dot4(&ctx, &x, n, gpu_norm, &w, act, None)).expect("portable dot4");
            let what = format!("subgroup matmul_dot4 n={n} in={in_dim} out={out} act={act:?} norm={norm}");
            assert!(got.iter().all(|v| v.is_finite()), "{what}: non-finite output");
            let staged = if norm { layernorm_reference(&x, n, in_dim, &ln, 1e-5) } else { x.clone() };
            let (_, sx) = matmul_dot4_sums_reference(&staged, n, &w);
            let sx_max = sx.iter().copied().fold(0.0f32, f32::max);
            let tight = 1e-5 * max_abs(&want).max(1.0);
            let loose = tight + 2.0 * 127.0 * sx_max * sw_max * 1.2;
            let err = max_abs_diff(&got, &want);
            let exact = got.iter().zip(&want).filter(|(a, b)| (*a - *b).abs() <= tight).count();
            let vs_portable = got.iter().zip(&portable).filter(|(a, b)| (*a - *b).abs() <= tight).count();
            eprintln!(
                "{what}: max abs error {err:.3e} (bound {loose:.3e}), {exact}/{} within {tight:.1e} of the reference, {vs_portable} of the portable kernel",
                got.len()
            );
            assert!(err <= loose, "{what}: max abs error {err} > {loose}");
            assert!(exact as f64 >= 0.99 * got.len() as f64, "{what}: only {exact}/{} outputs within {tight}", got.len());
            assert!(vs_portable as f64 >= 0.99 * got.len() as f64, "{what}: only {vs_portable}/{} outputs match the portable kernel", got.len());
            if !norm {
                // No LayerNorm: the amax is exact both ways, so the kernels agree bit for bit.
                assert_eq!(got, portable, "{what}: subgroup amax changed a value");
            }
        }
    }
}

#[test]
fn subgroup_attention_out_matches_reference() {
    let Some(ctx) = subgroup_context("subgroup_attention_out_matches_reference") else {
        return;
    };
    let mut rng = SplitMix64::new(0x5EED_F003);
    for &(cells, t, d, h, out) in &[(37, 4, 64, 4, 64), (19, 6, 24, 4, 24), (21, 16, 32, 4, 32), (7, 5, 9, 3, 70), (3, 1, 48, 1, 48), (5, 3, 96, 2, 96)] {
        let qkv = rng.uniform_vec(cells * t * 3 * d, -3.0, 3.0);
        let bias = rng.uniform_vec(h * t * t, -4.0, 4.0);
        let wo = random_int8_linear(&mut rng, out, d);
        let residual = rng.uniform_vec(cells * t * out, -1.0, 1.0);
        for b in [None, Some(bias.as_slice())] {
            let got = pollster::block_on(attention_out_with(&ctx, &qkv, b, cells, t, d, h, &wo, &residual, true)).expect("subgroup attention_out");
            let want = attention_out_reference(&qkv, b, cells, t, d, h, &wo, &residual);
            let what = format!("subgroup attention_out cells={cells} T={t} D={d} H={h} out={out} bias={}", b.is_some());
            assert_close(&what, &got, &want, 1e-5);
            let portable = pollster::block_on(attention_out(&ctx, &qkv, b, cells, t, d, h, &wo, &residual)).expect("portable");
            assert_close(&format!("{what} vs portable kernel"), &got, &portable, 1e-5);
        }
    }
}

/// Asserts `|got − want| ≤ 1e-5 · scale + rel · |want|` elementwise; prints the worst ratio.
fn assert_close_rel(what: &str, got: &[f32], want: &[f32], rel: f32) {
    assert!(got.iter().all(|v| v.is_finite()), "{what}: non-finite output");
    let abs = 1e-5 * max_abs(want).max(1.0);
    let mut worst = 0.0f32;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let bound = abs + rel * w.abs();
        assert!((g - w).abs() <= bound, "{what}: value {i}: {g} vs {w} (bound {bound})");
        worst = worst.max((g - w).abs() / bound);
    }
    eprintln!("{what}: max abs error {:.3e}, worst error / bound {worst:.3}", max_abs_diff(got, want));
}

#[test]
fn f16_matmul_storage_matches_reference() {
    let Some(ctx) = f16_context("f16_matmul_storage_matches_reference") else {
        return;
    };
    let u = 2f32.powi(-11); // unit roundoff of f16
    let mut rng = SplitMix64::new(0x5EED_F004);
    // (n, in, out): the gene-only model's fc1 (64 → 256) and fc2 (256 → 64) shapes at tile
    // edges, odd widths (f16 pairs straddle rows), K = 1.
    for &(n, in_dim, out) in &[(149, 64, 256), (130, 256, 64), (37, 313, 71), (5, 7, 3), (3, 1, 2)] {
        let x = shifted_rows(&mut rng, n, in_dim);
        let xs = rng.uniform_vec(n * in_dim, -2.0, 2.0);
        let ln = LayerNormWeights { gamma: rng.uniform_vec(in_dim, 0.5, 1.5), beta: rng.uniform_vec(in_dim, -0.5, 0.5) };
        let w = random_int8_linear(&mut rng, out, in_dim);
        let residual = rng.uniform_vec(n * out, -1.0, 1.0);
        let norm = Some((ln.gamma.as_slice(), ln.beta.as_slice(), 1e-5f32));
        let tag = format!("n={n} in={in_dim} out={out}");
        for sg in [false, true] {
            if sg && !ctx.supports_subgroups() {
                continue;
            }
            // fc1: LayerNorm + GELU, output stored as f16.
            let got = pollster::block_on(matmul_int8_fast(&ctx, &x, n, norm, &w, Activation::Gelu, None, sg, false, true)).expect("f16 out");
            let want = matmul_int8_f16_reference(&x, n, Some((&ln, 1e-5)), &w, Activation::Gelu, None, false, true);
            assert_close_rel(&format!("LN+matmul+GELU, f16 out, subgroups={sg}, {tag}"), &got, &want, 2.0 * u);
            // What f16 storage costs vs the f32 kernel: one rounding of each output.
            let f32_out = layernorm_matmul_int8_reference(&x, n, &ln, 1e-5, &w, Activation::Gelu);
            assert_close_rel(&format!("  vs f32 output, {tag}"), &got, &f32_out, u);
        }
        // fc2: input stored as f16, residual add in f32.
        let got = pollster::block_on(matmul_int8_fast(&ctx, &xs, n, None, &w, Activation::None, Some(&residual), false, true, false)).expect("f16 in");
        let want = matmul_int8_f16_reference(&xs, n, None, &w, Activation::None, Some(&residual), true, false);
        assert_close(&format!("matmul+residual, f16 in, {tag}"), &got, &want, 1e-5);
        // What f16 input costs vs f32 input: the derived bound u · Σ_k |x| |w|.
        let f32_in = matmul_int8_reference(&xs, n, &w, Activation::None, Some(&residual));
        let wf = w.weight_f32();
        let scale = 1e-5 * max_abs(&f32_in).max(1.0);
        let mut worst = 0.0f32;
        for r in 0..n {
            for o in 0..out {
                let bound = u * (0..in_dim).map(|k| (xs[r * in_dim + k] * wf[o * in_dim + k]).abs()).sum::<f32>() + scale;
                let d = (got[r * out + o] - f32_in[r * out + o]).abs();
                assert!(d <= bound, "f16 input {tag}: output ({r}, {o}) moved {d} > derived bound {bound}");
                worst = worst.max(d / bound);
            }
        }
        let moved = max_abs_diff(&got, &f32_in);
        eprintln!("  f16 input vs f32 input, {tag}: max |Δ| {moved:.3e}, worst fraction of the derived bound {worst:.3}");
        if in_dim > 1 {
            assert!(moved > 0.0, "f16 input storage changed nothing: is the f16 path live?");
        }
    }
}

#[test]
fn gpu_classifier_fast_paths_follow_portable_path() {
    let Some(ctx) = gpu_or_skip("gpu_classifier_fast_paths_follow_portable_path") else {
        return;
    };
    let model = test_model(0x5EED_F005).quantize_int8();
    let c = model.config().clone();
    let cells = 700;
    let x = test_inputs(0x5EED_F006, cells, c.n_genes);
    let cpu = forward_logits(&model, &x, cells).expect("CPU forward");
    let mut clf = GpuClassifier::new(ctx.clone(), &model).expect("GpuClassifier::new");
    // Defaults: subgroups wherever the context has them, f16 opt-in.
    assert_eq!(clf.subgroups(), ctx.supports_subgroups());
    assert!(!clf.f16_hidden(), "the f16 hidden must be opt-in");
    clf.set_chunk_cells(256); // 3 chunks, the last partial
    clf.set_subgroups(false);
    let portable = pollster::block_on(clf.logits(&x, cells)).expect("portable");
    let e_port = max_abs_diff(&portable, &cpu);
    eprintln!("portable WGSL vs CPU int8: max |Δlogit| {e_port:.3e}");
    assert!(e_port <= 1e-3);
    let mut ran = 0;
    for (sg, f16) in [(true, false), (false, true), (true, true)] {
        if (sg && !ctx.supports_subgroups()) || (f16 && !ctx.supports_f16()) {
            let missing = if sg && !ctx.supports_subgroups() { "subgroups" } else { "shader-f16" };
            let _ = common::gpu::with_feature("gpu_classifier_fast_paths_follow_portable_path", ctx.clone(), missing, false);
            continue;
        }
        assert_eq!(clf.set_subgroups(sg), sg);
        assert_eq!(clf.set_f16_hidden(f16), f16);
        assert_eq!(clf.dispatches_per_layer().expect("dispatch count"), 4, "subgroups={sg} f16={f16}");
        let got = pollster::block_on(clf.logits(&x, cells)).expect("fast path");
        let what = format!("WGSL subgroups={sg} f16 hidden={f16}");
        let d_port = max_abs_diff(&got, &portable);
        let d_cpu = max_abs_diff(&got, &cpu);
        let (a_fast, a_port) = (argmax_rows(&got, c.n_classes), argmax_rows(&portable, c.n_classes));
        let agree = agreement(&a_fast, &a_port);
        eprintln!("{what}: vs portable max |Δlogit| {d_port:.3e}, vs CPU int8 {d_cpu:.3e}, classes agree {agree:.4}");
        // Subgroups: reduction order only (the portable path's 1e-3 vs CPU); f16: the
        // hidden's rounding through 2 layers, bound 0.02 (measured ~1e-3 on lavapipe).
        let bound = if f16 { 0.02 } else { 1e-3 };
        assert!(d_port <= bound && d_cpu <= bound + e_port, "{what}: logits moved {d_port} (bound {bound})");
        assert!(agree >= 0.995, "{what}: classes agree on only {agree}");
        for (i, (p, q)) in a_fast.iter().zip(&a_port).enumerate() {
            let row = &portable[i * c.n_classes..(i + 1) * c.n_classes];
            assert!(p == q || top2_gap(row) <= 2.0 * d_port, "cell {i}: class flip on a gap of {}", top2_gap(row));
        }
        if f16 {
            assert!(d_port > 0.0, "{what}: the f16 hidden changed nothing");
        }
        ran += 1;
    }
    eprintln!("{ran}/3 fast-path combinations ran");
    // Off again: the portable path, bit for bit.
    clf.set_subgroups(false);
    clf.set_f16_hidden(false);
    assert_eq!(pollster::block_on(clf.logits(&x, cells)).expect("portable again"), portable);
}
