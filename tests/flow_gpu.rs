//! The flow sampler on WebGPU (issue 16): its kernels vs their plain-Rust references, and
//! `GpuFlowSampler` vs the CPU `FlowSampler` on a random-weight model
//! (`common::flow::random_flow_model_bytes`).
//!
//! All inputs are seeded random (SplitMix64); sides and channel counts include odd values and
//! non-multiples of the workgroup size. GPU tests need an adapter (lavapipe works); see
//! `common::gpu_or_skip`.
//!
//! Tolerances (absolute, `scale = max(1, max |reference|)`):
//! - `film_layernorm`: `1e-5 * scale` (same f32 math, tree vs sequential sums);
//! - `conv2d_s2` and `conv_transpose2d_s2` (identity, GELU, sigmoid epilogues): `1e-5 *
//!   scale` (same summation order; the GPU may fuse multiply-adds and uses its own `exp`);
//! - whole sampler, GPU vs CPU (70 pairs, 32-px patches, Heun 20 steps and Euler 5 steps,
//!   single chunk and 3 chunks): latents max abs `1e-4 * max(1, max|ref|)`, patches max abs
//!   `1e-4`; bad inputs give the CPU sampler's `EngineError` variant.

#![cfg(all(feature = "native-io", not(target_arch = "wasm32")))]

mod common;

use std::time::Instant;

use cellsymphony::engine::flow::{FlowCondition, FlowSampler, FlowSolver, FlowSpec};
use cellsymphony::engine::ops::{conv2d_s2_reference, conv_transpose2d_s2_reference, film_layernorm_reference};
use cellsymphony::engine::{EngineError, GpuFlowSampler, LayerNormWeights};
use cellsymphony::gpu::{conv2d_s2, conv_transpose2d_s2, film_layernorm, ConvEpilogue};
use cellsymphony::util::rng::SplitMix64;
use common::flow::random_flow_model_bytes;
use common::{gpu_or_skip, max_abs_diff};

fn max_abs(a: &[f32]) -> f32 {
    a.iter().map(|v| v.abs()).fold(0.0, f32::max)
}

/// Asserts `|gpu - reference| <= rel_tol * max(1, max|reference|)` elementwise and that
/// everything is finite; prints and returns the max error.
fn assert_close(what: &str, gpu: &[f32], reference: &[f32], rel_tol: f32) -> f32 {
    assert!(gpu.iter().all(|v| v.is_finite()), "{what}: GPU output has non-finite values");
    let err = max_abs_diff(gpu, reference);
    let tol = rel_tol * max_abs(reference).max(1.0);
    eprintln!("{what}: max abs error {err:.3e} (tolerance {tol:.3e}, max |ref| {:.3})", max_abs(reference));
    assert!(err <= tol, "{what}: max abs error {err} > tolerance {tol}");
    err
}

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
#[ignore = "timing only: cargo test --release --test flow_gpu -- --ignored --nocapture"]
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
