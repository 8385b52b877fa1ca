//! `kernels/flash_attention.wgsl` (attention with an online softmax over key tiles, for the
//! long token sequences of gene-token models) and `kernels/gene_token_embedding.wgsl` against
//! their plain-Rust references, on seeded random inputs.
//!
//! Tolerances (absolute, `scale = max(1, max |reference|)`):
//! - flash reference vs the two-pass attention reference: `1e-5 · scale` (same maths, the
//!   softmax rescaled per tile);
//! - WGSL flash attention vs its reference: `1e-5 · scale`, for T in {1, 7, 64, 300, 513} and
//!   head dims 4, 8, 16, 64 and 128 (the widest uses 16-key tiles to stay in 16 KiB of
//!   workgroup memory);
//! - WGSL gene-token embedding vs its reference: `1e-6 · scale`.
//!
//! GPU tests need an adapter (lavapipe works); without one they fail unless
//! `CELLSYMPHONY_ALLOW_NO_GPU=1` (then they print SKIPPED), see `common::gpu_or_skip`.
#![cfg(all(feature = "native-io", not(target_arch = "wasm32")))]

mod common;

use cellsymphony::engine::ops::{attention_reference, flash_attention_reference, flash_key_tile, gene_token_embedding_reference};
use cellsymphony::engine::{Linear, LinearWeight};
use cellsymphony::gpu::{flash_attention, gene_token_embedding};
use cellsymphony::util::rng::SplitMix64;
use common::{gpu_or_skip, max_abs_diff};

/// (tokens, d_model, heads): T in {1, 7, 64, 300, 513} with head dims 4, 8, 16, 64 and 128.
const SHAPES: [(usize, usize, usize); 8] =
    [(1, 16, 4), (7, 16, 2), (64, 32, 2), (300, 64, 4), (513, 32, 2), (300, 64, 1), (64, 128, 1), (513, 16, 4)];

fn max_abs(a: &[f32]) -> f32 {
    a.iter().map(|v| v.abs()).fold(0.0, f32::max)
}

fn assert_close(what: &str, got: &[f32], reference: &[f32], rel_tol: f32) {
    assert!(got.iter().all(|v| v.is_finite()), "{what}: non-finite output");
    let err = max_abs_diff(got, reference);
    let tol = rel_tol * max_abs(reference).max(1.0);
    eprintln!("{what}: max abs error {err:.3e} (tolerance {tol:.3e})");
    assert!(err <= tol, "{what}: max abs error {err} > {tol}");
}

/// Seeded `qkv` `[cells·T, 3D]` with scores of order ±4 (uniform ±1.5 entries).
fn qkv(seed: u64, cells: usize, t: usize, d: usize) -> Vec<f32> {
    SplitMix64::new(seed).uniform_vec(cells * t * 3 * d, -1.5, 1.5)
}

#[test]
fn flash_reference_equals_two_pass_attention() {
    for (i, &(t, d, h)) in SHAPES.iter().enumerate() {
        let cells = 2;
        let x = qkv(0xF1A5 + i as u64, cells, t, d);
        let flash = flash_attention_reference(&x, cells, t, d, h);
        let plain = attention_reference(&x, cells, t, d, h);
        assert_close(&format!("flash reference T={t} D={d} H={h} (key tile {})", flash_key_tile(d / h)), &flash, &plain, 1e-5);
    }
    // Key tiles keep 2 · tile · head_dim f32 within 16 KiB.
    assert_eq!((flash_key_tile(4), flash_key_tile(64), flash_key_tile(128)), (32, 32, 16));
}

#[test]
fn flash_attention_kernel_matches_reference() {
    let Some(ctx) = gpu_or_skip("flash_attention_kernel_matches_reference") else { return };
    for (i, &(t, d, h)) in SHAPES.iter().enumerate() {
        let cells = 3;
        let x = qkv(0xF1A5_0000 + i as u64, cells, t, d);
        let gpu = pollster::block_on(flash_attention(&ctx, &x, cells, t, d, h)).unwrap();
        let reference = flash_attention_reference(&x, cells, t, d, h);
        assert_close(&format!("WGSL flash attention T={t} D={d} H={h}"), &gpu, &reference, 1e-5);
    }
    // Huge scores (entries ±60: scores ~ ±1e4) stay finite thanks to the running max.
    let x: Vec<f32> = qkv(9, 2, 40, 16).iter().map(|v| v * 40.0).collect();
    let gpu = pollster::block_on(flash_attention(&ctx, &x, 2, 40, 16, 2)).unwrap();
    assert_close("WGSL flash attention, huge scores", &gpu, &flash_attention_reference(&x, 2, 40, 16, 2), 1e-4);
    // Bad shapes are errors, not panics.
    assert!(pollster::block_on(flash_attention(&ctx, &x, 2, 40, 16, 3)).is_err());
    assert!(pollster::block_on(flash_attention(&ctx, &x[1..], 2, 40, 16, 2)).is_err());
}

#[test]
fn gene_token_embedding_kernel_matches_reference() {
    let Some(ctx) = gpu_or_skip("gene_token_embedding_kernel_matches_reference") else { return };
    let mut rng = SplitMix64::new(0x6E7E);
    let (cells, n_in, d) = (37, 313, 16);
    let genes: Vec<usize> = (0..n_in).filter(|g| g % 3 != 1).collect();
    let t = genes.len();
    let f = Linear { out_dim: t * d, in_dim: 1, weight: LinearWeight::F32(rng.uniform_vec(t * d, -1.0, 1.0)), bias: rng.uniform_vec(t * d, -0.5, 0.5) };
    let w = f.quantized();
    let LinearWeight::Int8 { q, scale } = &w.weight else { panic!("quantized weights are int8") };
    let x = rng.uniform_vec(cells * n_in, 0.0, 5.0);
    let qf: Vec<f32> = q.iter().map(|&v| f32::from(v)).collect();
    let gpu = pollster::block_on(gene_token_embedding(&ctx, &x, cells, n_in, &genes, &qf, scale, &w.bias)).unwrap();
    let reference = gene_token_embedding_reference(&x, cells, n_in, &genes, &w);
    assert_close("WGSL gene-token embedding", &gpu, &reference, 1e-6);
    // The int8 value vectors follow the f32 ones closely (one input per row: scale error only).
    assert_close("gene-token embedding int8 vs f32", &reference, &gene_token_embedding_reference(&x, cells, n_in, &genes, &f), 0.02);
    // A gene outside the input row is an error.
    assert!(pollster::block_on(gene_token_embedding(&ctx, &x, cells, n_in, &[n_in], &qf[..d], &scale[..d], &w.bias[..d])).is_err());
}
