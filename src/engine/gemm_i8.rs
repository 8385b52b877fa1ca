//! The W8A8 GEMM of the CPU engine: int8 weights × int8 activations → i32, for int8 model
//! layers packed with [`PackedLinear::new_w8a8`].
//!
//! Each row of `x` `[n, in]` is quantised on the fly with `quant::quantize_row_i8`'s scheme (one scale per
//! row: `amax / 127`), the i8×i8 products are summed in i32 — exactly, so every kernel gives
//! the same accumulators bit for bit whatever its order — and the epilogue computes
//! `y = act((acc as f32) · (row_scale · w_scale[o]) + b[o]) (+ residual)`, the same f32 code on
//! every kernel, so the portable, AVX2 and SIMD128 kernels give bit-identical outputs.
//!
//! Weights sit in panels of [`NR`] outputs `[out/NR][in.div_ceil(2)][NR][2]` (a pair of
//! consecutive inputs per output: the operand layout of wasm `i32x4.dot_i16x8` and x86
//! `vpmaddwd`, which multiply i16 lanes and add adjacent pairs); activations are widened to
//! i16 rows of even length. Per pair of inputs a micro-tile of `MR × NR` outputs costs one
//! weight load, two sign extensions and `MR · NR / 4` (SIMD128) or `MR · NR / 8` (AVX2)
//! multiply-add-pairs: twice the multiply-adds per instruction of the f32 kernels.
//!
//! Compared with the f32 path ([`PackedLinear::new`]: int8 weight values times f32
//! activations) this adds the activation's rounding (≤ `row_scale / 2` per value), so its
//! logits follow the fp32 model within a stated tolerance instead of matching the WGSL
//! engine bit for bit; `tests/gene_only_pipeline.rs` states it (crop and pbmc68k_reduced).

use super::gemm::{epilogue, Kernel, PackedLinear, Panels, MR, NR, ROW_BLOCK};
use crate::gpu::Activation;
use crate::quant::quantize_row_into;

/// Quantises the rows of `x` `[rows, in]` ([`crate::quant::quantize_row_i8`]'s scheme) into `xq`, i16 rows
/// `[rows.div_ceil(MR)·MR, in.div_ceil(2)·2]` (zero padding: whole micro-tiles, even length),
/// and their scales into `scales` `[rows]`.
#[inline(always)]
fn quantize_rows_i16(x: &[f32], rows: usize, in_dim: usize, xq: &mut Vec<i16>, scales: &mut Vec<f32>) {
    let stride = in_dim.div_ceil(2) * 2;
    xq.clear();
    xq.resize(rows.div_ceil(MR) * MR * stride, 0);
    scales.clear();
    for r in 0..rows {
        scales.push(quantize_row_into(&x[r * in_dim..(r + 1) * in_dim], &mut xq[r * stride..(r + 1) * stride]));
    }
}

/// The W8A8 GEMM over rows `x` `[n, in]` into `y` `[n, out]` with `kernel` (serial; the caller
/// splits rows over threads).
pub(super) fn gemm_i8_rows_dispatch(
    kernel: Kernel,
    x: &[f32],
    n: usize,
    w: &PackedLinear,
    act: Activation,
    residual: Option<&[f32]>,
    y: &mut [f32],
) {
    // Safe on wasm32: the SIMD128 build only instantiates where the engine validated SIMD
    // (js/wasm.js).
    #[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
    if kernel == Kernel::Simd128 {
        return gemm_i8_rows_simd128(x, n, w, act, residual, y);
    }
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Avx2Fma {
        // SAFETY: `Kernel::Avx2Fma` is only handed out after avx2 and fma were detected.
        return unsafe { gemm_i8_rows_avx2(x, n, w, act, residual, y) };
    }
    gemm_i8_rows(kernel, x, n, w, act, residual, y);
}

/// [`gemm_i8_rows`] compiled with AVX2 (quantisation and epilogue vectorise too; no float
/// contraction, so the epilogue rounds as the portable one).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gemm_i8_rows_avx2(x: &[f32], n: usize, w: &PackedLinear, act: Activation, residual: Option<&[f32]>, y: &mut [f32]) {
    gemm_i8_rows(Kernel::Avx2Fma, x, n, w, act, residual, y);
}

/// [`gemm_i8_rows`] compiled with SIMD128 enabled.
#[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
#[target_feature(enable = "simd128")]
fn gemm_i8_rows_simd128(x: &[f32], n: usize, w: &PackedLinear, act: Activation, residual: Option<&[f32]>, y: &mut [f32]) {
    gemm_i8_rows(Kernel::Simd128, x, n, w, act, residual, y);
}

#[inline(always)]
fn gemm_i8_rows(
    kernel: Kernel,
    x: &[f32],
    n: usize,
    w: &PackedLinear,
    act: Activation,
    residual: Option<&[f32]>,
    y: &mut [f32],
) {
    let Panels::I8(panels) = &w.panels else { unreachable!("gemm_i8 on f32 panels") };
    let (in_dim, out_dim) = (w.in_dim, w.out_dim);
    let k_pairs = in_dim.div_ceil(2);
    let stride = 2 * k_pairs;
    let panel_len = k_pairs * NR * 2;
    let mut acc = [[0i32; NR]; MR];
    // One row block at a time is quantised (it stays in L1/L2 while every panel passes).
    let (mut xq, mut xs) = (Vec::new(), Vec::new());
    let mut b0 = 0;
    while b0 < n {
        let b1 = (b0 + ROW_BLOCK).min(n);
        quantize_rows_i16(&x[b0 * in_dim..b1 * in_dim], b1 - b0, in_dim, &mut xq, &mut xs);
        for p in 0..out_dim.div_ceil(NR) {
            let panel = &panels[p * panel_len..(p + 1) * panel_len];
            let o0 = p * NR;
            let cols = NR.min(out_dim - o0);
            // Row tiles start at multiples of MR from b0 and `xq` holds whole tiles.
            let mut r = 0;
            while r < b1 - b0 {
                let rows = MR.min(b1 - b0 - r);
                micro_i8(kernel, &xq[r * stride..(r + MR) * stride], k_pairs, panel, &mut acc);
                let (sc, bi) = (&w.scale[p], &w.bias[p]);
                epilogue(y, out_dim, b0 + r, rows, o0, cols, act, residual, |i, j| (acc[i][j] as f32) * (xs[r + i] * sc[j]) + bi[j]);
                r += rows;
            }
        }
        b0 = b1;
    }
}

/// `acc[i][j] = Σ_k x[i·2kp + k] · w[k, j]` in i32 over the `kp` input pairs of a panel.
#[inline(always)]
fn micro_i8(kernel: Kernel, x: &[i16], k_pairs: usize, panel: &[i8], acc: &mut [[i32; NR]; MR]) {
    debug_assert!(x.len() >= MR * 2 * k_pairs && panel.len() >= k_pairs * NR * 2);
    match kernel {
        Kernel::Portable => micro_i8_portable(x, k_pairs, panel, acc),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::Avx2Fma` is only handed out by `Kernel::best` after
        // `is_x86_feature_detected!` confirmed avx2 (and fma); slice lengths are asserted.
        Kernel::Avx2Fma => unsafe { micro_i8_avx2(x, k_pairs, panel, acc) },
        #[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
        Kernel::Simd128 => micro_i8_simd128(x, k_pairs, panel, acc),
    }
}

/// The reference kernel: plain i32 sums.
fn micro_i8_portable(x: &[i16], k_pairs: usize, panel: &[i8], acc: &mut [[i32; NR]; MR]) {
    let s = 2 * k_pairs;
    let mut a = [[0i32; NR]; MR];
    for (kk, wk) in panel.chunks_exact(2 * NR).take(k_pairs).enumerate() {
        for (i, ai) in a.iter_mut().enumerate() {
            let (x0, x1) = (i32::from(x[i * s + 2 * kk]), i32::from(x[i * s + 2 * kk + 1]));
            for (aij, wj) in ai.iter_mut().zip(wk.chunks_exact(2)) {
                *aij += x0 * i32::from(wj[0]) + x1 * i32::from(wj[1]);
            }
        }
    }
    *acc = a;
}

/// AVX2: `vpmovsxbw` widens a panel row (16 outputs × 2 inputs) to two i16 registers,
/// `vpmaddwd` multiplies them by the broadcast input pair and adds adjacent products.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn micro_i8_avx2(x: &[i16], k_pairs: usize, panel: &[i8], acc: &mut [[i32; NR]; MR]) {
    use std::arch::x86_64::*;
    assert!(x.len() >= MR * 2 * k_pairs && panel.len() >= k_pairs * NR * 2);
    let s = 2 * k_pairs;
    let (xp, wp) = (x.as_ptr(), panel.as_ptr());
    let z = _mm256_setzero_si256();
    let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21, mut c30, mut c31) = (z, z, z, z, z, z, z, z);
    for kk in 0..k_pairs {
        // SAFETY: kk < k_pairs, so the 32 bytes at kk·2·NR lie in the panel and the i16 pair
        // at i·s + 2kk in x (asserted lengths); unaligned loads.
        let w = wp.add(kk * 2 * NR);
        let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(w as *const __m128i));
        let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(w.add(16) as *const __m128i));
        macro_rules! pair {
            ($i:expr) => {
                _mm256_set1_epi32((xp.add($i * s + 2 * kk) as *const i32).read_unaligned())
            };
        }
        let x0 = pair!(0);
        c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(x0, w0));
        c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(x0, w1));
        let x1 = pair!(1);
        c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(x1, w0));
        c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(x1, w1));
        let x2 = pair!(2);
        c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(x2, w0));
        c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(x2, w1));
        let x3 = pair!(3);
        c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(x3, w0));
        c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(x3, w1));
    }
    for (row, (lo, hi)) in acc.iter_mut().zip([(c00, c01), (c10, c11), (c20, c21), (c30, c31)]) {
        _mm256_storeu_si256(row.as_mut_ptr() as *mut __m256i, lo);
        _mm256_storeu_si256(row.as_mut_ptr().add(8) as *mut __m256i, hi);
    }
}

/// SIMD128: `i16x8.extend_{low,high}_i8x16` widen a panel row (8 outputs × 2 inputs),
/// `i32x4.dot_i16x8_s` multiplies by the splatted input pair and adds adjacent products.
#[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
#[target_feature(enable = "simd128")]
fn micro_i8_simd128(x: &[i16], k_pairs: usize, panel: &[i8], acc: &mut [[i32; NR]; MR]) {
    use core::arch::wasm32::*;
    assert!(x.len() >= MR * 2 * k_pairs && panel.len() >= k_pairs * NR * 2);
    let s = 2 * k_pairs;
    let (xp, wp) = (x.as_ptr(), panel.as_ptr());
    let z = i32x4_splat(0);
    let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21, mut c30, mut c31) = (z, z, z, z, z, z, z, z);
    for kk in 0..k_pairs {
        // SAFETY: kk < k_pairs, so the 16 bytes at kk·2·NR lie in the panel and the i16 pair
        // at i·s + 2kk in x (asserted lengths); v128_load and read_unaligned are unaligned.
        unsafe {
            let w = v128_load(wp.add(kk * 2 * NR) as *const v128);
            let (w0, w1) = (i16x8_extend_low_i8x16(w), i16x8_extend_high_i8x16(w));
            macro_rules! pair {
                ($i:expr) => {
                    i32x4_splat((xp.add($i * s + 2 * kk) as *const i32).read_unaligned())
                };
            }
            let x0 = pair!(0);
            c00 = i32x4_add(c00, i32x4_dot_i16x8(w0, x0));
            c01 = i32x4_add(c01, i32x4_dot_i16x8(w1, x0));
            let x1 = pair!(1);
            c10 = i32x4_add(c10, i32x4_dot_i16x8(w0, x1));
            c11 = i32x4_add(c11, i32x4_dot_i16x8(w1, x1));
            let x2 = pair!(2);
            c20 = i32x4_add(c20, i32x4_dot_i16x8(w0, x2));
            c21 = i32x4_add(c21, i32x4_dot_i16x8(w1, x2));
            let x3 = pair!(3);
            c30 = i32x4_add(c30, i32x4_dot_i16x8(w0, x3));
            c31 = i32x4_add(c31, i32x4_dot_i16x8(w1, x3));
        }
    }
    for (row, (lo, hi)) in acc.iter_mut().zip([(c00, c01), (c10, c11), (c20, c21), (c30, c31)]) {
        // SAFETY: a row holds NR = 8 i32: two 16-byte stores.
        unsafe {
            v128_store(row.as_mut_ptr() as *mut v128, lo);
            v128_store(row.as_mut_ptr().add(4) as *mut v128, hi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::format::{Linear, LinearWeight};
    use super::super::gemm::gemm_with;
    use super::super::ops::{gelu_reference, matmul_int8_reference};
    use super::*;
    use crate::util::rng::SplitMix64;

    /// The scheme written out plainly: quantise each row, sum i8·i8 in i32, `acc·(s·w_s) + b`.
    fn w8a8_reference(x: &[f32], n: usize, w: &Linear, act: Activation, residual: Option<&[f32]>) -> Vec<f32> {
        let LinearWeight::Int8 { q, scale } = &w.weight else { panic!("int8 layer expected") };
        let (i, o) = (w.in_dim, w.out_dim);
        let mut row = vec![0i8; i];
        let mut y = Vec::with_capacity(n * o);
        for r in 0..n {
            let s = crate::quant::quantize_row_i8(&x[r * i..(r + 1) * i], &mut row);
            for c in 0..o {
                let acc: i32 = (0..i).map(|k| i32::from(row[k]) * i32::from(q[c * i + k])).sum();
                let pre = (acc as f32) * (s * scale[c]) + w.bias[c];
                let v = if act == Activation::Gelu { gelu_reference(pre) } else { pre };
                y.push(residual.map_or(v, |res| v + res[r * o + c]));
            }
        }
        y
    }

    #[test]
    fn w8a8_kernels_are_bit_identical_and_follow_the_f32_path() {
        let mut rng = SplitMix64::new(31);
        for &(n, i, o) in &[(37usize, 313usize, 50usize), (600, 64, 192), (3, 5, 2), (130, 64, 16), (1, 0, 3), (9, 1, 17)] {
            let x = rng.uniform_vec(n * i, -2.0, 2.0);
            let res = rng.uniform_vec(n * o, -1.0, 1.0);
            let w = Linear { out_dim: o, in_dim: i, weight: LinearWeight::F32(rng.uniform_vec(o * i, -0.5, 0.5)), bias: rng.uniform_vec(o, -0.1, 0.1) }.quantized();
            let packed = PackedLinear::new_w8a8(&w);
            assert!(packed.is_w8a8());
            for (act, r) in [(Activation::None, None), (Activation::Gelu, Some(res.as_slice()))] {
                let reference = w8a8_reference(&x, n, &w, act, r);
                let f32_path = matmul_int8_reference(&x, n, &w, act, r);
                for kernel in Kernel::available() {
                    let fast = gemm_with(kernel, &x, n, &packed, act, r);
                    // Exact integer sums and the same f32 epilogue: bit for bit.
                    for (idx, (a, b)) in fast.iter().zip(&reference).enumerate() {
                        assert_eq!(a.to_bits(), b.to_bits(), "{kernel:?} n={n} in={i} out={o} at {idx}: {a} vs {b}");
                    }
                }
                // Activation rounding: |Δ| ≤ (row_scale / 2) · Σ_k |q·w_scale| (+ GELU's slope ≤ 1.13).
                let LinearWeight::Int8 { q, scale } = &w.weight else { unreachable!() };
                for (idx, (a, b)) in reference.iter().zip(&f32_path).enumerate() {
                    let (row, col) = (idx / o, idx % o);
                    let amax = x[row * i..(row + 1) * i].iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    let wsum: f32 = (0..i).map(|k| f32::from(q[col * i + k]).abs() * scale[col]).sum();
                    let bound = 1.13 * (amax / 127.0 / 2.0) * wsum * (1.0 + 1e-3) + 1e-5;
                    assert!((a - b).abs() <= bound, "n={n} in={i} out={o} at {idx}: W8A8 {a} vs f32 path {b} (bound {bound})");
                }
            }
        }
    }

    #[test]
    fn w8a8_propagates_non_finite_rows_and_packs_f32_layers_as_f32() {
        let mut rng = SplitMix64::new(5);
        let (n, i, o) = (6, 11, 5);
        let f32w = Linear { out_dim: o, in_dim: i, weight: LinearWeight::F32(rng.uniform_vec(o * i, -0.5, 0.5)), bias: vec![0.0; o] };
        assert!(!PackedLinear::new_w8a8(&f32w).is_w8a8());
        let packed = PackedLinear::new_w8a8(&f32w.quantized());
        let mut x = rng.uniform_vec(n * i, -1.0, 1.0);
        x[2 * i + 3] = f32::NAN;
        x[4 * i] = f32::INFINITY;
        for kernel in Kernel::available() {
            let y = gemm_with(kernel, &x, n, &packed, Activation::None, None);
            for (r, yr) in y.chunks_exact(o).enumerate() {
                assert_eq!(yr.iter().all(|v| v.is_nan()), r == 2 || r == 4, "{kernel:?} row {r}: {yr:?}");
                assert!(r == 2 || r == 4 || yr.iter().all(|v| v.is_finite()));
            }
        }
    }
}
