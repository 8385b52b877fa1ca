//! Plain-Rust reference ops of the CPU engine: each computes what one WGSL kernel of
//! [`crate::gpu`] computes, in the same f32 arithmetic (summation order aside), so the kernel
//! tests compare a launcher with its reference here and [`super::cpu`] runs the model on them.
//!
//! | op | reference | GPU launcher |
//! |---|---|---|
//! | int8/f32 linear (+ fused GELU, residual) | [`matmul_int8_reference`] | [`crate::gpu::matmul_int8`] |
//! | GELU epilogue | [`gelu_reference`] (erf by [`erf_approx`]) | inside `matmul_int8.wgsl` |
//! | attention (+ additive score bias) | [`attention_reference`], [`attention_biased_reference`] | [`crate::gpu::attention()`](fn@crate::gpu::attention), [`crate::gpu::attention_biased`] |
//! | LayerNorm | [`layernorm_reference`] | [`crate::gpu::layernorm()`](fn@crate::gpu::layernorm) |
//! | mean over tokens | [`mean_pool_reference`] | [`crate::gpu::mean_pool()`](fn@crate::gpu::mean_pool) |
//! | LayerNorm then int8 linear (matmul prologue) | [`layernorm_matmul_int8_reference`] | [`crate::gpu::layernorm_matmul_int8`] |
//! | attention, output projection, residual add | [`attention_out_reference`] | [`crate::gpu::attention_out()`](fn@crate::gpu::attention_out) |
//! | attention, online softmax over key tiles (long token sequences) | [`flash_attention_reference`] | [`crate::gpu::flash_attention()`](fn@crate::gpu::flash_attention) |
//! | cross-attention (queries from one buffer, keys/values from another), online softmax | [`cross_attention_reference`] | [`crate::gpu::cross_attention()`](fn@crate::gpu::cross_attention) |
//! | gene tokens (gather + per-token value vector) | [`gene_token_embedding_reference`] | [`crate::gpu::gene_token_embedding()`](fn@crate::gpu::gene_token_embedding) |
//! | mean of chosen tokens (ViT centre) | [`token_gather_mean_reference`] | [`crate::gpu::token_gather_mean()`](fn@crate::gpu::token_gather_mean) |
//! | LayerNorm then FiLM (`· (1 + γ) + β`) | [`film_layernorm_reference`] | [`crate::gpu::film_layernorm()`](fn@crate::gpu::film_layernorm) |
//! | 3×3 stride-2 convolution (+ GELU / sigmoid) | [`conv2d_s2_reference`] | [`crate::gpu::conv2d_s2()`](fn@crate::gpu::conv2d_s2) |
//! | 4×4 stride-2 transposed convolution (+ GELU / sigmoid) | [`conv_transpose2d_s2_reference`] | [`crate::gpu::conv_transpose2d_s2()`](fn@crate::gpu::conv_transpose2d_s2) |
//! | int8 activations × int8 weights (`dot4I8Packed`, + LayerNorm prologue) | [`matmul_dot4_reference`], [`matmul_dot4_sums_reference`] | [`crate::gpu::matmul_dot4()`](fn@crate::gpu::matmul_dot4) |
//! | fast paths: f16 input / output storage, subgroup reductions (same references; f16 adds its rounding) | [`matmul_int8_f16_reference`], [`layernorm_matmul_int8_reference`], [`matmul_dot4_reference`], [`attention_out_reference`] | [`crate::gpu::matmul_int8_fast`], [`crate::gpu::matmul_dot4_with`], [`crate::gpu::attention_out_with`] |

use super::format::{LayerNormWeights, Linear, LinearWeight};
use crate::gpu::attention::score_scale;
use crate::gpu::{Activation, ConvEpilogue};

/// Lowest argument [`exp_approx`] evaluates; below it the result is 0 (true `exp` < 1.2e-38).
const EXP_MIN: f32 = -87.336_55;
/// Arguments above this are clamped by [`exp_approx`] (exp ≈ 1.65e38); above `EXP_MAX_INF`
/// it returns +∞.
const EXP_MAX: f32 = 88.0;
const EXP_MAX_INF: f32 = 88.722_84;
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 = LN2_HI + LN2_LO (Cody–Waite: `n·LN2_HI` is exact for |n| ≤ 2⁸).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5·2²³: adding and subtracting it rounds to an integer, half to even.
const ROUND: f32 = 12_582_912.0;
/// Cephes' expf polynomial, highest degree first.
const EXP_P: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];
/// Abramowitz & Stegun 7.1.26: `t = 1/(1 + ERF_P·|x|)`, coefficients a5..a1.
const ERF_P: f32 = 0.327_591_1;
const ERF_A: [f32; 5] = [1.061_405_4, -1.453_152_1, 1.421_413_8, -0.284_496_74, 0.254_829_6];

/// `exp(x)` in f32 without a library call and without branches (inlined into the GELU
/// epilogue and the softmax): Cody–Waite reduction `x = n·ln2 + r` (`n` rounded half to
/// even), Cephes' degree-6 polynomial for `exp(r)`, then `2ⁿ` built in the exponent bits.
/// Relative error < 1 ulp on [-87, 88] (measured 7.9e-8 against f64; the
/// `exp_approx_accuracy` unit test holds it to 1.2e-7). NaN stays NaN; below `EXP_MIN`
/// (−87.34) it gives 0 (no subnormals), above 88.72 +∞, and on (88, 88.72] it under-reads
/// (argument clamped to 88): the engine only calls it on arguments ≤ 0 (softmax, erf). Every
/// kernel of the CPU engine and its references use it (the wasm SIMD128 GELU,
/// `gelu_f32x4`, with the same operations in the same order), so they stay bit-identical to
/// each other; the WGSL kernels use the GPU's `exp` (compared with a tolerance).
#[inline]
pub fn exp_approx(x: f32) -> f32 {
    // Comparisons keep NaN (a NaN argument is neither below nor above the bounds).
    let xc = if x < EXP_MIN { EXP_MIN } else if x > EXP_MAX { EXP_MAX } else { x };
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let z = r * r;
    let p = (((((EXP_P[0] * r + EXP_P[1]) * r + EXP_P[2]) * r + EXP_P[3]) * r + EXP_P[4]) * r + EXP_P[5]) * z + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    let y = p * scale;
    if x < EXP_MIN {
        0.0
    } else if x > EXP_MAX_INF {
        f32::INFINITY
    } else {
        y
    }
}

/// erf(x) by Abramowitz & Stegun formula 7.1.26 (|error| ≤ 1.5e-7 in exact arithmetic,
/// < 6e-7 evaluated in f32: measured 4.7e-7 on [-4, 4]), with the same operations as the
/// WGSL kernel (whose `exp` is the GPU's; here it is [`exp_approx`]). WGSL has no erf, so
/// both the kernel and this reference (hence the CPU forward) use this approximation; the
/// `erf_approx_accuracy` unit test checks it against a high-precision series.
#[inline]
pub fn erf_approx(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + ERF_P * a);
    let poly = ((((ERF_A[0] * t + ERF_A[1]) * t + ERF_A[2]) * t + ERF_A[3]) * t + ERF_A[4]) * t;
    let r = 1.0 - poly * exp_approx(-a * a);
    if x >= 0.0 {
        r
    } else {
        -r
    }
}

/// Σ `a_i · b_i` in the CPU engine's lane order: product `i` is added to partial sum `i mod 4`
/// (in index order, from +0), and the result is `(s₀ + s₁) + (s₂ + s₃)`. A SIMD128 or SSE
/// register adds the four partial sums at once in exactly this order (the functions that call
/// this are compiled with SIMD128 in the wasm SIMD build and vectorised by LLVM, which never
/// reorders f32 additions), so the scalar and SIMD builds agree bit for bit.
///
/// # Panics
/// If `a` and `b` differ in length.
#[inline(always)]
pub fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_lanes: lengths differ");
    let mut s = [0.0f32; 4];
    for (ca, cb) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        for l in 0..4 {
            s[l] += ca[l] * cb[l];
        }
    }
    let tail = a.len() / 4 * 4;
    for (l, (x, y)) in a[tail..].iter().zip(&b[tail..]).enumerate() {
        s[l] += x * y;
    }
    (s[0] + s[1]) + (s[2] + s[3])
}

/// Σ `x_i` in the lane order of [`dot_lanes`].
#[inline(always)]
pub fn sum_lanes(x: &[f32]) -> f32 {
    let mut s = [0.0f32; 4];
    for c in x.chunks_exact(4) {
        for l in 0..4 {
            s[l] += c[l];
        }
    }
    let tail = x.len() / 4 * 4;
    for (l, v) in x[tail..].iter().enumerate() {
        s[l] += v;
    }
    (s[0] + s[1]) + (s[2] + s[3])
}

/// Σ `(x_i − mean)²` in the lane order of [`dot_lanes`].
#[inline(always)]
fn sum_sq_dev_lanes(x: &[f32], mean: f32) -> f32 {
    let mut s = [0.0f32; 4];
    for c in x.chunks_exact(4) {
        for l in 0..4 {
            let d = c[l] - mean;
            s[l] += d * d;
        }
    }
    let tail = x.len() / 4 * 4;
    for (l, v) in x[tail..].iter().enumerate() {
        let d = v - mean;
        s[l] += d * d;
    }
    (s[0] + s[1]) + (s[2] + s[3])
}


/// The SIMD GELU/exp constants as splatted vectors in linear memory, read with a volatile
/// load (so LLVM keeps the load instead of folding it back into `v128.const`): V8 builds
/// each `v128.const` with three instructions at every use, a load is one.
#[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
mod simd_consts {
    use core::arch::wasm32::{f32x4, v128};
    const fn s(k: f32) -> v128 {
        f32x4(k, k, k, k)
    }
    /// Indices into [`K`].
    pub(super) const FRAC_1_SQRT_2: usize = 0;
    pub(super) const ONE: usize = 1;
    pub(super) const ERF_P: usize = 2;
    /// First of the five `ERF_A` coefficients.
    pub(super) const ERF_A: usize = 3;
    pub(super) const SIGN_BIT: usize = 8;
    pub(super) const HALF: usize = 9;
    pub(super) const EXP_MIN: usize = 10;
    pub(super) const LOG2E: usize = 11;
    pub(super) const ROUND: usize = 12;
    pub(super) const LN2_HI: usize = 13;
    pub(super) const LN2_LO: usize = 14;
    /// First of the six `EXP_P` coefficients.
    pub(super) const EXP_P: usize = 15;
    pub(super) static K: [v128; 21] = [
        s(std::f32::consts::FRAC_1_SQRT_2),
        s(1.0),
        s(super::ERF_P),
        s(super::ERF_A[0]),
        s(super::ERF_A[1]),
        s(super::ERF_A[2]),
        s(super::ERF_A[3]),
        s(super::ERF_A[4]),
        s(-0.0),
        s(0.5),
        s(super::EXP_MIN),
        s(super::LOG2E),
        s(super::ROUND),
        s(super::LN2_HI),
        s(super::LN2_LO),
        s(super::EXP_P[0]),
        s(super::EXP_P[1]),
        s(super::EXP_P[2]),
        s(super::EXP_P[3]),
        s(super::EXP_P[4]),
        s(super::EXP_P[5]),
    ];
    #[inline(always)]
    pub(super) fn k(i: usize) -> v128 {
        // SAFETY: a read of an initialised static (volatile only to keep it a load).
        unsafe { core::ptr::read_volatile(&K[i]) }
    }
}

/// [`exp_approx`] on four lanes with wasm SIMD128 for arguments `≤ 0` or NaN (GELU's
/// `exp(−a²)`, softmax's `exp(s − max)`, the only uses): the same f32 operations in the same
/// order, so bit-identical lane by lane there (NaN stays NaN: `trunc_sat` maps it to 0 as
/// `as i32` does). The upper clamps of `exp_approx` never apply to such arguments and are
/// left out; a bit select is its lower clamp exactly (`e < min ? min : e`, NaN kept) and
/// `andnot` zeroes the lanes below it. The relaxed-SIMD build fuses the polynomial steps
/// ([`madd_f32x4`]; within that build's tolerance).
#[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
#[target_feature(enable = "simd128")]
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
#[inline]
pub(crate) fn exp_nonpositive_f32x4(e: core::arch::wasm32::v128) -> core::arch::wasm32::v128 {
    use core::arch::wasm32::*;
    let min = simd_consts::k(simd_consts::EXP_MIN);
    let below = f32x4_lt(e, min);
    // (Not `f32x4_pmax(e, min)`, the same select in one instruction: with relaxed SIMD
    // enabled LLVM turns it into `f32x4.relaxed_max`, whose NaN result is the engine's
    // choice; V8 on x86 returned `min` for a NaN, hiding it. A bit select keeps NaN.)
    v128_andnot(exp_core_f32x4(v128_bitselect(min, e, below)), below)
}

/// [`exp_approx`]'s reduction and polynomial on clamped arguments `ec`.
#[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
#[target_feature(enable = "simd128")]
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
#[inline]
fn exp_core_f32x4(ec: core::arch::wasm32::v128) -> core::arch::wasm32::v128 {
    use core::arch::wasm32::*;
    use simd_consts::*;
    let (add, mul) = (f32x4_add, f32x4_mul);
    let round = k(ROUND);
    let n = f32x4_sub(add(mul(ec, k(LOG2E)), round), round);
    let r = f32x4_sub(f32x4_sub(ec, mul(n, k(LN2_HI))), mul(n, k(LN2_LO)));
    let z = mul(r, r);
    let mut p = k(EXP_P);
    for i in EXP_P + 1..EXP_P + 6 {
        p = madd_f32x4(p, r, k(i));
    }
    p = add(madd_f32x4(p, z, r), k(ONE));
    let scale = i32x4_shl(i32x4_add(i32x4_trunc_sat_f32x4(n), i32x4_splat(127)), 23);
    mul(p, scale)
}

/// `[q·k₀, q·k₁, q·k₂, q·k₃]`, each in the lane order of [`dot_lanes`] (bit-identical to it),
/// with wasm SIMD128: four keys' partial sums side by side, then a 4×4 transpose so that
/// `(s₀ + s₁) + (s₂ + s₃)` is one vector sum. `q` and every `k` hold the same multiple of 4
/// values.
#[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
#[target_feature(enable = "simd128")]
#[inline]
fn dot4_lanes_f32x4(q: &[f32], k: [&[f32]; 4]) -> core::arch::wasm32::v128 {
    use core::arch::wasm32::*;
    let z = f32x4_splat(0.0);
    let mut s = [z; 4];
    for (c, qc) in q.chunks_exact(4).enumerate() {
        // SAFETY: `qc` holds 4 f32; every key holds as many values as `q` (callers' slices).
        let qv = unsafe { v128_load(qc.as_ptr() as *const v128) };
        for (sl, kl) in s.iter_mut().zip(&k) {
            let kc = &kl[4 * c..4 * c + 4];
            // SAFETY: `kc` holds 4 f32.
            *sl = f32x4_add(*sl, f32x4_mul(qv, unsafe { v128_load(kc.as_ptr() as *const v128) }));
        }
    }
    let t0 = i32x4_shuffle::<0, 4, 1, 5>(s[0], s[1]);
    let t1 = i32x4_shuffle::<2, 6, 3, 7>(s[0], s[1]);
    let t2 = i32x4_shuffle::<0, 4, 1, 5>(s[2], s[3]);
    let t3 = i32x4_shuffle::<2, 6, 3, 7>(s[2], s[3]);
    // u_j = [partial sum j of keys 0..4].
    let u0 = i32x4_shuffle::<0, 1, 4, 5>(t0, t2);
    let u1 = i32x4_shuffle::<2, 3, 6, 7>(t0, t2);
    let u2 = i32x4_shuffle::<0, 1, 4, 5>(t1, t3);
    let u3 = i32x4_shuffle::<2, 3, 6, 7>(t1, t3);
    f32x4_add(f32x4_add(u0, u1), f32x4_add(u2, u3))
}

/// [`gelu_reference`] on four lanes with wasm SIMD128: the same f32 operations in the same
/// order (no fused multiply-add in SIMD128), so bit-identical lane by lane. Two shortcuts
/// keep every output bit: `exp(−a²)` takes [`exp_nonpositive_f32x4`], and erf's sign is the
/// sign bit of `y` (it differs from `y ≥ 0` only at `y = −0`, where the output is
/// `½·(−0)·(1 ± r) = −0` either way, and at NaN, which stays NaN). The relaxed-SIMD build
/// fuses the polynomial steps ([`madd_f32x4`]; within the tolerance of that build).
#[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
#[target_feature(enable = "simd128")]
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
#[inline]
pub(crate) fn gelu_f32x4(x: core::arch::wasm32::v128) -> core::arch::wasm32::v128 {
    use core::arch::wasm32::*;
    use simd_consts::*;
    let (add, mul) = (f32x4_add, f32x4_mul);
    let one = k(ONE);
    // erf(y), y = x/√2.
    let y = mul(x, k(FRAC_1_SQRT_2));
    let a = f32x4_abs(y);
    let t = f32x4_div(one, madd_f32x4(k(ERF_P), a, one));
    let mut poly = k(ERF_A);
    for i in ERF_A + 1..ERF_A + 5 {
        poly = madd_f32x4(poly, t, k(i));
    }
    poly = mul(poly, t);
    // exp(e), e = (−a)·a ≤ 0.
    let ex = exp_nonpositive_f32x4(mul(f32x4_neg(a), a));
    let r = f32x4_sub(one, mul(poly, ex));
    let erf = v128_xor(r, v128_and(y, k(SIGN_BIT)));
    mul(mul(k(HALF), x), add(one, erf))
}

/// `a·b + c` on four lanes: a separate multiply and add (bit-exact with the scalar
/// references), or in the relaxed-SIMD build `f32x4.relaxed_madd` (fused where the CPU has
/// FMA: the numerics of the native AVX2+FMA kernels; that build is held to a tolerance).
#[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
#[target_feature(enable = "simd128")]
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
#[inline]
pub(crate) fn madd_f32x4(a: core::arch::wasm32::v128, b: core::arch::wasm32::v128, c: core::arch::wasm32::v128) -> core::arch::wasm32::v128 {
    use core::arch::wasm32::*;
    #[cfg(feature = "relaxed-simd")]
    {
        f32x4_relaxed_madd(a, b, c)
    }
    #[cfg(not(feature = "relaxed-simd"))]
    {
        f32x4_add(f32x4_mul(a, b), c)
    }
}

/// GELU (erf form) with [`erf_approx`]: `x/2 · (1 + erf(x/√2))`; the error vs exact GELU
/// is at most `|x|/2` times erf_approx's error, i.e. below 1e-6 for |x| < 3 and vanishing
/// beyond (where erf saturates).
#[inline]
pub fn gelu_reference(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_approx(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// This build's SIMD GELU and exp ([`gelu_f32x4`], [`exp_nonpositive_f32x4`]) against their
/// plain-Rust references ([`gelu_reference`], [`exp_approx`]) on special arguments (±0, NaN,
/// ±∞, the clamp bounds, subnormals, ±f32::MAX) and 40,001 spread over [-20, 20].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SimdMathCheck {
    /// Values compared (0 in the scalar build, which has no SIMD path to check).
    pub checked: usize,
    /// Values whose bits differ from the reference (NaN = NaN counts as equal). The SIMD128
    /// build's contract is 0; the relaxed-SIMD build fuses multiply-adds and may differ.
    pub mismatches: usize,
    /// Largest `|simd − reference| / max(1, |reference|)` (∞ where exactly one of them is
    /// not finite).
    pub max_error: f32,
    /// The argument of the largest error (NaN if none differ).
    pub worst_argument: f32,
}

/// Runs [`SimdMathCheck`] for this build (the browser test runs it in every package build).
pub fn simd_math_check() -> SimdMathCheck {
    #[allow(unused_mut)]
    let mut check = SimdMathCheck { worst_argument: f32::NAN, ..SimdMathCheck::default() };
    #[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
    {
        use core::arch::wasm32::*;
        let mut args = vec![
            0.0f32, -0.0, f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY, EXP_MIN, -EXP_MIN,
            EXP_MIN - 1e-3, EXP_MIN + 1e-3, -87.4, -100.0, 1e-30, -1e-30, 1e-40, -1e-40, 3.9, -3.9,
            f32::MAX, -f32::MAX, f32::MIN_POSITIVE, -f32::MIN_POSITIVE,
        ];
        args.extend((0..=40_000).map(|i| -20.0 + 40.0 * (i as f32 / 40_000.0)));
        let mut note = |arg: f32, got: f32, want: f32| {
            check.checked += 1;
            let same = got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan());
            if !same {
                check.mismatches += 1;
                let err = if got.is_finite() && want.is_finite() { (got - want).abs() / want.abs().max(1.0) } else { f32::INFINITY };
                if err >= check.max_error {
                    (check.max_error, check.worst_argument) = (err, arg);
                }
            }
        };
        for chunk in args.chunks(4) {
            let mut lanes = [0.0f32; 4];
            lanes[..chunk.len()].copy_from_slice(chunk);
            let neg = lanes.map(|v| if v.is_nan() { v } else { -v.abs() });
            // SAFETY: both arrays hold 4 f32 (16 bytes; unaligned v128 accesses are allowed).
            let (g, e) = unsafe {
                let g = gelu_f32x4(v128_load(lanes.as_ptr() as *const v128));
                let e = exp_nonpositive_f32x4(v128_load(neg.as_ptr() as *const v128));
                let (mut go, mut eo) = ([0.0f32; 4], [0.0f32; 4]);
                v128_store(go.as_mut_ptr() as *mut v128, g);
                v128_store(eo.as_mut_ptr() as *mut v128, e);
                (go, eo)
            };
            for j in 0..chunk.len() {
                note(lanes[j], g[j], gelu_reference(lanes[j]));
                note(neg[j], e[j], exp_approx(neg[j]));
            }
        }
    }
    check
}

/// Plain-Rust reference of the matmul kernel: `x` `[n, in]` times `w`ᵀ plus bias, then
/// `act`, then `+ residual` `[n, out]` if given. Returns `[n, out]`.
///
/// For int8 weights it computes exactly what the kernel does, `acc = Σ_k x·q` in f32 and
/// `y = acc · scale + bias`; for f32 weights (the CPU forward of unquantised models),
/// `y = Σ_k x·w + bias`.
///
/// # Panics
/// If `x.len() != n * in`, the residual is not `[n, out]`, or `w`'s vectors disagree with its
/// dims.
pub fn matmul_int8_reference(
    x: &[f32],
    n: usize,
    w: &Linear,
    act: Activation,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let (out_dim, in_dim) = (w.out_dim, w.in_dim);
    assert_eq!(
        x.len(),
        n * in_dim,
        "matmul reference: x has {} values, expected [n={n}, in={in_dim}]",
        x.len()
    );
    assert_eq!(w.bias.len(), out_dim, "matmul reference: bias length");
    if let Some(r) = residual {
        assert_eq!(
            r.len(),
            n * out_dim,
            "matmul reference: residual has {} values, expected [n={n}, out={out_dim}]",
            r.len()
        );
    }
    let mut y = vec![0.0f32; n * out_dim];
    // Epilogue shared with the kernel: activation, then residual add.
    let apply = |pre: f32, idx: usize| {
        let v = if act == Activation::Gelu {
            gelu_reference(pre)
        } else {
            pre
        };
        residual.map_or(v, |r| v + r[idx])
    };
    match &w.weight {
        LinearWeight::F32(wf) => {
            assert_eq!(
                wf.len(),
                out_dim * in_dim,
                "matmul reference: weight length"
            );
            for (r, xr) in x.chunks_exact(in_dim.max(1)).take(n).enumerate() {
                for o in 0..out_dim {
                    let wr = &wf[o * in_dim..(o + 1) * in_dim];
                    let acc: f32 = xr.iter().zip(wr).map(|(a, b)| a * b).sum();
                    y[r * out_dim + o] = apply(acc + w.bias[o], r * out_dim + o);
                }
            }
        }
        LinearWeight::Int8 { q, scale } => {
            assert_eq!(q.len(), out_dim * in_dim, "matmul reference: q length");
            assert_eq!(scale.len(), out_dim, "matmul reference: scale length");
            for (r, xr) in x.chunks_exact(in_dim.max(1)).take(n).enumerate() {
                for o in 0..out_dim {
                    let qr = &q[o * in_dim..(o + 1) * in_dim];
                    let acc: f32 = xr.iter().zip(qr).map(|(a, &b)| a * b as f32).sum();
                    y[r * out_dim + o] = apply(acc * scale[o] + w.bias[o], r * out_dim + o);
                }
            }
        }
    }
    if in_dim == 0 {
        // No inputs: y = act(bias) (+ residual).
        for r in 0..n {
            for o in 0..out_dim {
                y[r * out_dim + o] = apply(w.bias[o], r * out_dim + o);
            }
        }
    }
    y
}

/// Plain-Rust reference of the attention kernel without a bias
/// ([`attention_biased_reference`] with `None`).
pub fn attention_reference(
    qkv: &[f32],
    n_cells: usize,
    tokens: usize,
    d_model: usize,
    n_heads: usize,
) -> Vec<f32> {
    attention_biased_reference(qkv, None, n_cells, tokens, d_model, n_heads)
}

/// Plain-Rust reference of the attention kernel.
///
/// `qkv` is `[n_cells * tokens, 3 * d_model]` (per token: q, then k, then v); returns
/// `[n_cells * tokens, d_model]` with heads concatenated. Per (cell, head, query i):
/// `p = softmax_l((q_i · k_l) / sqrt(d_model / n_heads) + bias[head, i, l])` (two-pass, max
/// subtracted) and `out_i = Σ_l p_l v_l`. `bias` is `[n_heads, tokens, tokens]`, shared by
/// all cells. `q_i · k_l` is summed in the lane order of [`dot_lanes`].
///
/// # Panics
/// If `qkv` or `bias` has the wrong length or `n_heads` does not divide `d_model`.
#[cfg_attr(all(target_arch = "wasm32", feature = "simd128"), target_feature(enable = "simd128"))]
pub fn attention_biased_reference(
    qkv: &[f32],
    bias: Option<&[f32]>,
    n_cells: usize,
    tokens: usize,
    d_model: usize,
    n_heads: usize,
) -> Vec<f32> {
    if let Some(b) = bias {
        assert_eq!(b.len(), n_heads * tokens * tokens, "attention reference: bias must be [H, T, T]");
    }
    assert!(
        n_heads > 0 && d_model.is_multiple_of(n_heads),
        "attention reference: n_heads {n_heads} must divide d_model {d_model}"
    );
    assert_eq!(
        qkv.len(),
        n_cells * tokens * 3 * d_model,
        "attention reference: qkv must be [cells*T, 3D]"
    );
    let mut out = vec![0.0f32; n_cells * tokens * d_model];
    let mut scores = vec![0.0f32; tokens];
    for cell in 0..n_cells {
        attention_biased_cell(
            &qkv[cell * tokens * 3 * d_model..(cell + 1) * tokens * 3 * d_model],
            bias,
            tokens,
            d_model,
            n_heads,
            &mut scores,
            &mut out[cell * tokens * d_model..(cell + 1) * tokens * d_model],
        );
    }
    out
}

/// [`attention_biased_reference`] of one cell: `rows` `[tokens, 3 * d_model]` into `out`
/// `[tokens, d_model]` (written, not added to), with `scores` `[tokens]` as scratch. The CPU
/// engine runs it per cell in parallel (natively), so the engine and the reference give the
/// same bits. Shapes are the caller's to check ([`attention_biased_reference`] asserts them).
#[cfg_attr(all(target_arch = "wasm32", feature = "simd128"), target_feature(enable = "simd128"))]
#[cfg_attr(all(target_arch = "wasm32", feature = "relaxed-simd"), target_feature(enable = "relaxed-simd"))]
#[inline]
pub(crate) fn attention_biased_cell(
    rows: &[f32],
    bias: Option<&[f32]>,
    tokens: usize,
    d_model: usize,
    n_heads: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let hd = d_model / n_heads;
    let scale = score_scale(hd);
    let stride = 3 * d_model;
    let scores = &mut scores[..tokens];
    for head in 0..n_heads {
        let off = head * hd;
        for i in 0..tokens {
            let q = &rows[i * stride + off..i * stride + off + hd];
            let key = |l: usize| &rows[l * stride + d_model + off..l * stride + d_model + off + hd];
            let bias_at = |l: usize| bias.map_or(0.0, |b| b[(head * tokens + i) * tokens + l]);
            // Groups of four keys on wasm SIMD128 (the same sums, bit for bit), then the rest.
            #[allow(unused_mut)]
            let mut first_scalar = 0;
            #[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
            if hd % 4 == 0 {
                use core::arch::wasm32::*;
                while first_scalar + 4 <= tokens {
                    let l = first_scalar;
                    let dots = dot4_lanes_f32x4(q, [key(l), key(l + 1), key(l + 2), key(l + 3)]);
                    let b = f32x4(bias_at(l), bias_at(l + 1), bias_at(l + 2), bias_at(l + 3));
                    let sc = &mut scores[l..l + 4];
                    // SAFETY: `sc` holds 4 f32.
                    unsafe { v128_store(sc.as_mut_ptr() as *mut v128, f32x4_add(f32x4_mul(dots, f32x4_splat(scale)), b)) };
                    first_scalar += 4;
                }
            }
            for (l, s) in scores.iter_mut().enumerate().skip(first_scalar) {
                *s = dot_lanes(q, key(l)) * scale + bias_at(l);
            }
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            #[allow(unused_mut)]
            let mut first_scalar = 0;
            #[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
            for sc in scores.chunks_exact_mut(4) {
                use core::arch::wasm32::*;
                // SAFETY: `sc` holds 4 f32.
                unsafe {
                    let v = f32x4_sub(v128_load(sc.as_ptr() as *const v128), f32x4_splat(max));
                    v128_store(sc.as_mut_ptr() as *mut v128, exp_nonpositive_f32x4(v));
                }
                first_scalar += 4;
            }
            for s in scores.iter_mut().skip(first_scalar) {
                *s = exp_approx(*s - max);
            }
            let mut denom = 0.0f32;
            for s in scores.iter() {
                denom += *s;
            }
            let o = &mut out[i * d_model + off..i * d_model + off + hd];
            // `out` is written, not added to (a caller may pass reused scratch).
            o.fill(0.0);
            for (l, &p) in scores.iter().enumerate() {
                let w = p / denom;
                let v = &rows[l * stride + 2 * d_model + off..l * stride + 2 * d_model + off + hd];
                // SIMD128: `o += w·v` four lanes at a time (the same operations; the
                // relaxed-SIMD build fuses them), then the scalar rest.
                #[cfg(not(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128"))))]
                let done = 0;
                #[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
                let done = {
                    use core::arch::wasm32::*;
                    let ws = f32x4_splat(w);
                    for (oc, vc) in o.chunks_exact_mut(4).zip(v.chunks_exact(4)) {
                        // SAFETY: `oc` and `vc` hold 4 f32 each (unaligned v128 accesses).
                        unsafe {
                            let acc = v128_load(oc.as_ptr() as *const v128);
                            v128_store(oc.as_mut_ptr() as *mut v128, madd_f32x4(ws, v128_load(vc.as_ptr() as *const v128), acc));
                        }
                    }
                    hd / 4 * 4
                };
                for (oe, ve) in o[done..].iter_mut().zip(&v[done..]) {
                    *oe += w * ve;
                }
            }
        }
    }
}

/// Most keys per tile of the online-softmax attention ([`flash_attention_reference`] and
/// `kernels/flash_attention.wgsl`).
pub const FLASH_KEY_TILE: usize = crate::gpu::flash_attention::MAX_KEY_TILE;

/// Keys per tile for heads of `head_dim`: [`FLASH_KEY_TILE`], fewer for wide heads so the
/// kernel's key and value tiles (`2 · tile · head_dim` f32) fit WebGPU's default 16 KiB of
/// workgroup memory.
pub fn flash_key_tile(head_dim: usize) -> usize {
    crate::gpu::flash_attention::key_tile(head_dim)
}

/// Plain-Rust reference of `kernels/flash_attention.wgsl`: the same result as
/// [`attention_reference`] (no bias) computed as flash attention does, never holding more
/// than one tile of [`flash_key_tile`] scores per query.
///
/// `qkv` is `[n_cells * tokens, 3 * d_model]` (per token q, k, v); returns
/// `[n_cells * tokens, d_model]`. Per (cell, head, query i) it keeps a running max `m`, a
/// running denominator `l` and an unnormalised output `acc`; for each key tile it computes the
/// tile's scores `s_l = q_i · k_l / sqrt(head_dim)`, `m' = max(m, max_l s_l)`, rescales
/// `l` and `acc` by `exp(m − m')` and adds `exp(s_l − m')` and `exp(s_l − m') v_l`; at the end
/// `out_i = acc / l`.
///
/// # Panics
/// If `qkv` has the wrong length or `n_heads` does not divide `d_model`.
pub fn flash_attention_reference(qkv: &[f32], n_cells: usize, tokens: usize, d_model: usize, n_heads: usize) -> Vec<f32> {
    assert!(n_heads > 0 && d_model.is_multiple_of(n_heads), "flash attention reference: n_heads {n_heads} must divide d_model {d_model}");
    assert_eq!(qkv.len(), n_cells * tokens * 3 * d_model, "flash attention reference: qkv must be [cells*T, 3D]");
    let mut out = vec![0.0f32; n_cells * tokens * d_model];
    for (cell, o) in out.chunks_exact_mut((tokens * d_model).max(1)).enumerate().take(n_cells) {
        flash_attention_cell(&qkv[cell * tokens * 3 * d_model..(cell + 1) * tokens * 3 * d_model], o, tokens, d_model, n_heads);
    }
    out
}

/// [`flash_attention_reference`] of one cell: `qkv` `[tokens, 3D]` → `out` `[tokens, D]`.
#[cfg_attr(all(target_arch = "wasm32", feature = "simd128"), target_feature(enable = "simd128"))]
pub(crate) fn flash_attention_cell(qkv: &[f32], out: &mut [f32], tokens: usize, d_model: usize, n_heads: usize) {
    let hd = d_model / n_heads;
    let stride = 3 * d_model;
    let mut acc = vec![0.0f32; hd];
    for head in 0..n_heads {
        let off = head * hd;
        let keys = KeyRows { rows: qkv, stride, k_off: d_model + off, v_off: 2 * d_model + off, tokens, hd };
        for i in 0..tokens {
            let q = &qkv[i * stride + off..i * stride + off + hd];
            online_softmax_row(q, &keys, &mut acc, &mut out[i * d_model + off..i * d_model + off + hd]);
        }
    }
}

/// One head's keys and values of one cell: key `j` is `rows[j·stride + k_off ..][..hd]`,
/// its value `rows[j·stride + v_off ..][..hd]`.
struct KeyRows<'a> {
    rows: &'a [f32],
    stride: usize,
    k_off: usize,
    v_off: usize,
    tokens: usize,
    hd: usize,
}

/// Attention of one query `q` `[hd]` over `keys` with an online softmax over key tiles of
/// [`flash_key_tile`] (running max `m`, denominator `l`, unnormalised `acc`, rescaled by
/// `exp(m − m')` per tile), written to `out` `[hd]`. Shared by the flash and cross-attention
/// references, in the order of operations of their kernels.
fn online_softmax_row(q: &[f32], keys: &KeyRows<'_>, acc: &mut [f32], out: &mut [f32]) {
    let (hd, stride) = (keys.hd, keys.stride);
    let scale = score_scale(hd);
    let tile = flash_key_tile(hd);
    let mut s = [0.0f32; FLASH_KEY_TILE];
    let (mut m, mut l) = (f32::NEG_INFINITY, 0.0f32);
    acc.iter_mut().for_each(|a| *a = 0.0);
    for k0 in (0..keys.tokens).step_by(tile) {
        let kn = tile.min(keys.tokens - k0);
        let mut tile_max = f32::NEG_INFINITY;
        for (j, sj) in s.iter_mut().enumerate().take(kn) {
            let r = (k0 + j) * stride + keys.k_off;
            let k = &keys.rows[r..r + hd];
            // Serial sum, as `kernels/flash_attention.wgsl` (huge scores amplify any reordering).
            *sj = q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale;
            tile_max = tile_max.max(*sj);
        }
        let m_new = m.max(tile_max);
        let corr = exp_approx(m - m_new);
        l *= corr;
        acc.iter_mut().for_each(|a| *a *= corr);
        for (j, &sj) in s.iter().enumerate().take(kn) {
            let p = exp_approx(sj - m_new);
            l += p;
            let r = (k0 + j) * stride + keys.v_off;
            for (a, v) in acc.iter_mut().zip(&keys.rows[r..r + hd]) {
                *a += p * v;
            }
        }
        m = m_new;
    }
    for (oe, a) in out.iter_mut().zip(acc.iter()) {
        *oe = a / l;
    }
}

/// Plain-Rust reference of `kernels/cross_attention.wgsl`: multi-head attention of queries
/// from one buffer over keys and values from another, with the online softmax of
/// [`flash_attention_reference`] over key tiles of [`flash_key_tile`] (no `Tq × Tk` scores
/// held).
///
/// `q` is `[n · tq, D]` (`[n, Tq, H, hd]`: heads concatenated), `kv` `[n · tk, 2D]` (per key
/// row its key, then its value, each `[H, hd]`); returns `[n · tq, D]`: per (cell, head, query
/// i) `out_i = Σ_j softmax_j(q_i · k_j / sqrt(hd)) v_j` over the cell's `tk` keys.
///
/// # Panics
/// If `q` or `kv` has the wrong length, `tk == 0`, or `n_heads` does not divide `d_model`.
pub fn cross_attention_reference(q: &[f32], kv: &[f32], n: usize, tq: usize, tk: usize, d_model: usize, n_heads: usize) -> Vec<f32> {
    assert!(n_heads > 0 && d_model.is_multiple_of(n_heads), "cross attention reference: n_heads {n_heads} must divide d_model {d_model}");
    assert!(tk > 0, "cross attention reference: at least one key");
    assert_eq!(q.len(), n * tq * d_model, "cross attention reference: q must be [n*Tq, D]");
    assert_eq!(kv.len(), n * tk * 2 * d_model, "cross attention reference: kv must be [n*Tk, 2D]");
    let mut out = vec![0.0f32; n * tq * d_model];
    for cell in 0..n {
        cross_attention_cell(
            &q[cell * tq * d_model..(cell + 1) * tq * d_model],
            &kv[cell * tk * 2 * d_model..(cell + 1) * tk * 2 * d_model],
            &mut out[cell * tq * d_model..(cell + 1) * tq * d_model],
            tk,
            d_model,
            n_heads,
        );
    }
    out
}

/// [`cross_attention_reference`] of one cell: `q` `[Tq, D]`, `kv` `[tk, 2D]` → `out` `[Tq, D]`.
pub(crate) fn cross_attention_cell(q: &[f32], kv: &[f32], out: &mut [f32], tk: usize, d_model: usize, n_heads: usize) {
    let hd = d_model / n_heads;
    let mut acc = vec![0.0f32; hd];
    for head in 0..n_heads {
        let off = head * hd;
        let keys = KeyRows { rows: kv, stride: 2 * d_model, k_off: off, v_off: d_model + off, tokens: tk, hd };
        for (qi, oi) in q.chunks_exact(d_model).zip(out.chunks_exact_mut(d_model)) {
            online_softmax_row(&qi[off..off + hd], &keys, &mut acc, &mut oi[off..off + hd]);
        }
    }
}

/// Plain-Rust reference of `kernels/gene_token_embedding.wgsl`: the tokens of a gene-token
/// model. `x` `[n_cells, n_inputs]`, `genes` `[T]` (columns of `x`, one token each), `w` the
/// `[T·D, 1]` value vectors with the identity embedding (and token type) in its bias; returns
/// `[n_cells · T, D]` with token `t` of cell `c` = `x[c, genes[t]] · w[t] + bias[t]` (int8:
/// `(x · q) · scale + bias`, as [`matmul_int8_reference`] with one input).
///
/// # Panics
/// If `x` is not `[n_cells, n_inputs]`, `w` is not `[T·D, 1]` or a gene is `>= n_inputs`.
pub fn gene_token_embedding_reference(x: &[f32], n_cells: usize, n_inputs: usize, genes: &[usize], w: &Linear) -> Vec<f32> {
    assert_eq!(x.len(), n_cells * n_inputs, "gene token reference: x must be [cells, inputs]");
    assert!(w.in_dim == 1 && !genes.is_empty() && w.out_dim.is_multiple_of(genes.len()), "gene token reference: w must be [T*D, 1]");
    assert!(genes.iter().all(|&g| g < n_inputs), "gene token reference: gene index out of range");
    let d = w.out_dim / genes.len();
    let mut y = vec![0.0f32; n_cells * w.out_dim];
    for (row, yr) in y.chunks_exact_mut(w.out_dim).enumerate() {
        let xr = &x[row * n_inputs..(row + 1) * n_inputs];
        for (t, &g) in genes.iter().enumerate() {
            let v = xr[g];
            for j in t * d..(t + 1) * d {
                yr[j] = match &w.weight {
                    LinearWeight::F32(wf) => v * wf[j] + w.bias[j],
                    LinearWeight::Int8 { q, scale } => (v * f32::from(q[j])) * scale[j] + w.bias[j],
                };
            }
        }
    }
    y
}

/// Plain-Rust reference: `y = (x - mean) / sqrt(var + eps) * gamma + beta` per row of `x`
/// `[rows, dim]`, biased variance, two passes in f32, sums in the lane order of
/// [`dot_lanes`]. Returns `[rows, dim]`.
///
/// # Panics
/// If `x.len() != rows * dim` or gamma/beta are not `[dim]`.
#[cfg_attr(all(target_arch = "wasm32", feature = "simd128"), target_feature(enable = "simd128"))]
pub fn layernorm_reference(
    x: &[f32],
    rows: usize,
    dim: usize,
    ln: &LayerNormWeights,
    eps: f32,
) -> Vec<f32> {
    assert_eq!(
        x.len(),
        rows * dim,
        "layernorm reference: x must be [rows, dim]"
    );
    assert!(
        ln.gamma.len() == dim && ln.beta.len() == dim,
        "layernorm reference: gamma/beta must be [dim]"
    );
    let mut y = vec![0.0f32; x.len()];
    for (row, yr) in x.chunks_exact(dim.max(1)).zip(y.chunks_exact_mut(dim.max(1))).take(rows) {
        let mean = sum_lanes(row) / dim as f32;
        let var = sum_sq_dev_lanes(row, mean) / dim as f32;
        let inv_std = 1.0 / (var + eps).sqrt();
        for (((o, v), g), b) in yr.iter_mut().zip(row).zip(&ln.gamma).zip(&ln.beta) {
            *o = (v - mean) * inv_std * g + b;
        }
    }
    y
}

/// Plain-Rust reference of `kernels/film_layernorm.wgsl`: [`layernorm_reference`] of `h`
/// `[rows, dim]`, then `y[r, j] = LN(h)[r, j] · (gb[r, j] + 1) + gb[r, dim + j]` with `gb`
/// `[rows, 2·dim]` (a FiLM block's scale ‖ shift). Returns `[rows, dim]`.
///
/// # Panics
/// If `h` is not `[rows, dim]`, `gb` not `[rows, 2·dim]` or gamma/beta not `[dim]`.
pub fn film_layernorm_reference(h: &[f32], gb: &[f32], rows: usize, dim: usize, ln: &LayerNormWeights, eps: f32) -> Vec<f32> {
    assert_eq!(gb.len(), rows * 2 * dim, "film_layernorm reference: gb must be [rows, 2·dim]");
    let mut y = layernorm_reference(h, rows, dim, ln, eps);
    for (yr, g) in y.chunks_exact_mut(dim.max(1)).zip(gb.chunks_exact(2 * dim.max(1))) {
        let (scale, shift) = g.split_at(dim);
        for ((v, s), b) in yr.iter_mut().zip(scale).zip(shift) {
            *v = *v * (s + 1.0) + b;
        }
    }
    y
}

/// The convolution epilogue of the CPU references (the kernels' `EPILOGUE`): identity,
/// [`gelu_reference`], or the sigmoid `1 / (1 + exp(−x))` (std `exp`).
fn conv_epilogue(v: &mut [f32], epilogue: ConvEpilogue) {
    match epilogue {
        ConvEpilogue::None => {}
        ConvEpilogue::Gelu => v.iter_mut().for_each(|x| *x = gelu_reference(*x)),
        ConvEpilogue::Sigmoid => v.iter_mut().for_each(|x| *x = 1.0 / (1.0 + (-*x).exp())),
    }
}

/// Plain-Rust reference of `kernels/conv2d_s2.wgsl`: 3×3 convolution, stride 2, padding 1 of
/// `x` `[n, c_in, side, side]` (side even) with `weight` `[c_out, c_in, 3, 3]` (burn's layout)
/// and `bias` `[c_out]`, then `epilogue`. Returns `[n, c_out, side/2, side/2]`; sums per
/// output in the kernel's order (bias, then ci, ky, kx ascending).
///
/// # Panics
/// If a slice has the wrong length.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_s2_reference(x: &[f32], n: usize, c_in: usize, side: usize, weight: &[f32], bias: &[f32], c_out: usize, epilogue: ConvEpilogue) -> Vec<f32> {
    const K: usize = 3;
    assert_eq!(x.len(), n * c_in * side * side, "conv2d_s2 reference: x must be [n, c_in, side, side]");
    assert_eq!(weight.len(), c_out * c_in * K * K, "conv2d_s2 reference: weight must be [c_out, c_in, 3, 3]");
    assert_eq!(bias.len(), c_out, "conv2d_s2 reference: bias must be [c_out]");
    let o_side = side / 2;
    let mut out = vec![0f32; n * c_out * o_side * o_side];
    for b in 0..n {
        for co in 0..c_out {
            for oy in 0..o_side {
                for ox in 0..o_side {
                    let mut acc = bias[co];
                    for ci in 0..c_in {
                        for ky in 0..K {
                            let iy = (oy * 2 + ky) as isize - 1;
                            if iy < 0 || iy >= side as isize {
                                continue;
                            }
                            for kx in 0..K {
                                let ix = (ox * 2 + kx) as isize - 1;
                                if ix < 0 || ix >= side as isize {
                                    continue;
                                }
                                acc += x[((b * c_in + ci) * side + iy as usize) * side + ix as usize] * weight[((co * c_in + ci) * K + ky) * K + kx];
                            }
                        }
                    }
                    out[((b * c_out + co) * o_side + oy) * o_side + ox] = acc;
                }
            }
        }
    }
    conv_epilogue(&mut out, epilogue);
    out
}

/// Plain-Rust reference of `kernels/conv_transpose2d_s2.wgsl`: 4×4 transposed convolution,
/// stride 2, padding 1 of `x` `[n, c_in, side, side]` with `weight` `[c_in, c_out, 4, 4]`
/// (burn's layout) and `bias` `[c_out]` (scatter form: `out[2 iy + ky − 1] += in[iy] · w`),
/// then `epilogue`. Returns `[n, c_out, 2 side, 2 side]`. Each output receives bias, then its
/// terms in (ci, iy, ix) order, as the kernel's gather form sums them.
///
/// # Panics
/// If a slice has the wrong length.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2d_s2_reference(x: &[f32], n: usize, c_in: usize, side: usize, weight: &[f32], bias: &[f32], c_out: usize, epilogue: ConvEpilogue) -> Vec<f32> {
    const K: usize = 4;
    assert_eq!(x.len(), n * c_in * side * side, "conv_transpose2d_s2 reference: x must be [n, c_in, side, side]");
    assert_eq!(weight.len(), c_in * c_out * K * K, "conv_transpose2d_s2 reference: weight must be [c_in, c_out, 4, 4]");
    assert_eq!(bias.len(), c_out, "conv_transpose2d_s2 reference: bias must be [c_out]");
    let o_side = side * 2;
    let mut out = vec![0f32; n * c_out * o_side * o_side];
    for b in 0..n {
        for co in 0..c_out {
            out[(b * c_out + co) * o_side * o_side..(b * c_out + co + 1) * o_side * o_side].fill(bias[co]);
        }
        for ci in 0..c_in {
            for iy in 0..side {
                for ix in 0..side {
                    let v = x[((b * c_in + ci) * side + iy) * side + ix];
                    for co in 0..c_out {
                        for ky in 0..K {
                            let oy = (iy * 2 + ky) as isize - 1;
                            if oy < 0 || oy >= o_side as isize {
                                continue;
                            }
                            for kx in 0..K {
                                let ox = (ix * 2 + kx) as isize - 1;
                                if ox < 0 || ox >= o_side as isize {
                                    continue;
                                }
                                out[((b * c_out + co) * o_side + oy as usize) * o_side + ox as usize] += v * weight[((ci * c_out + co) * K + ky) * K + kx];
                            }
                        }
                    }
                }
            }
        }
    }
    conv_epilogue(&mut out, epilogue);
    out
}

/// Plain-Rust reference of `kernels/sparse_rows.wgsl`: `out[r, d] = Σ_j weights[j] ·
/// x[cols[j], d] (+ bias[r, d])` over `j` in `offsets[r] .. offsets[r + 1]`, summed in that
/// order from 0, then the bias; `x` is `[x_rows, dim]`, `offsets` `[rows + 1]`; returns
/// `[rows, dim]` (a row without entries is its bias, or 0).
///
/// # Panics
/// If the CSR matrix is malformed (offsets not non-decreasing from 0 to `cols.len()`, a column
/// outside `x`), `weights` and `cols` differ in length, or `bias` is not `[rows, dim]`.
pub fn sparse_rows_reference(offsets: &[u32], cols: &[u32], weights: &[f32], x: &[f32], dim: usize, bias: Option<&[f32]>) -> Vec<f32> {
    assert!(!offsets.is_empty() && offsets[0] == 0 && offsets[offsets.len() - 1] as usize == cols.len(), "sparse rows reference: offsets must run from 0 to nnz");
    assert_eq!(weights.len(), cols.len(), "sparse rows reference: one weight per column entry");
    let rows = offsets.len() - 1;
    if let Some(b) = bias {
        assert_eq!(b.len(), rows * dim, "sparse rows reference: bias must be [rows, dim]");
    }
    let mut out = vec![0.0f32; rows * dim];
    for (r, o) in out.chunks_exact_mut(dim.max(1)).enumerate().take(rows) {
        for (d, od) in o.iter_mut().enumerate() {
            let mut sum = 0.0f32;
            for j in offsets[r] as usize..offsets[r + 1] as usize {
                sum += weights[j] * x[cols[j] as usize * dim + d];
            }
            if let Some(b) = bias {
                sum += b[r * dim + d];
            }
            *od = sum;
        }
    }
    out
}

/// Plain-Rust reference: `out[c, d] = (1/T) Σ_t x[c, t, d]` for `x` `[n_cells, tokens, dim]`;
/// returns `[n_cells, dim]`.
///
/// # Panics
/// If `x.len() != n_cells * tokens * dim`.
pub fn mean_pool_reference(x: &[f32], n_cells: usize, tokens: usize, dim: usize) -> Vec<f32> {
    assert_eq!(
        x.len(),
        n_cells * tokens * dim,
        "mean_pool reference: x must be [cells, T, D]"
    );
    let mut out = vec![0.0f32; n_cells * dim];
    for c in 0..n_cells {
        for d in 0..dim {
            let sum: f32 = (0..tokens).map(|t| x[(c * tokens + t) * dim + d]).sum();
            out[c * dim + d] = sum / tokens as f32;
        }
    }
    out
}

/// Plain-Rust reference: for every cell `c` of `x` `[n_cells, tokens, dim]`,
/// `out[c·out_stride + out_offset + d] = mean_k x[c, idx[k], d]`; other columns of `out` are
/// left as they are.
///
/// # Panics
/// If `x` is not `[n_cells, tokens, dim]`, `idx` is empty or has an index `>= tokens`, or
/// `out` is shorter than `n_cells` rows of `out_stride` or the columns do not fit a row.
#[allow(clippy::too_many_arguments)]
pub fn token_gather_mean_reference(
    x: &[f32],
    n_cells: usize,
    tokens: usize,
    dim: usize,
    idx: &[usize],
    out: &mut [f32],
    out_stride: usize,
    out_offset: usize,
) {
    assert_eq!(x.len(), n_cells * tokens * dim, "token_gather_mean reference: x must be [cells, T, D]");
    assert!(!idx.is_empty() && idx.iter().all(|&t| t < tokens), "token_gather_mean reference: bad idx {idx:?}");
    assert!(out_offset + dim <= out_stride && out.len() >= n_cells * out_stride, "token_gather_mean reference: out too small");
    for c in 0..n_cells {
        for d in 0..dim {
            let sum: f32 = idx.iter().map(|&t| x[(c * tokens + t) * dim + d]).sum();
            out[c * out_stride + out_offset + d] = sum / idx.len() as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf by its Maclaurin series in f64 (accurate to ~1e-12 for |x| <= 4).
    fn erf_series(x: f64) -> f64 {
        let mut term = x;
        let mut sum = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_approx_accuracy() {
        let mut worst = 0.0f64;
        for i in -4000..=4000 {
            let x = i as f32 / 1000.0;
            worst = worst.max((erf_approx(x) as f64 - erf_series(x as f64)).abs());
        }
        eprintln!("erf_approx max abs error on [-4, 4]: {worst:.3e}");
        // 1.5e-7 for the formula plus f32 evaluation error (cancellation in `1 - poly·exp`
        // near 0); measured 4.7e-7.
        assert!(worst < 6e-7, "erf_approx error {worst}");
        assert_eq!(erf_approx(10.0), 1.0);
        assert_eq!(erf_approx(-10.0), -1.0);
    }

    /// The lane order the SIMD128 build's LayerNorm and attention reproduce (their bit-exactness
    /// with the scalar build rests on it): element `i` into partial sum `i mod 4`, then
    /// `(s₀ + s₁) + (s₂ + s₃)`, for every length (tails included); and the sums stay within
    /// f32 rounding of an f64 reference.
    #[test]
    fn lane_ordered_sums_follow_the_stated_order() {
        let mut rng = crate::util::rng::SplitMix64::new(41);
        for len in 0..=37usize {
            let a = rng.uniform_vec(len, -3.0, 3.0);
            let b = rng.uniform_vec(len, -3.0, 3.0);
            let mut s = [0.0f32; 4];
            let mut t = [0.0f32; 4];
            for i in 0..len {
                s[i % 4] += a[i] * b[i];
                t[i % 4] += a[i];
            }
            let (dot, sum) = ((s[0] + s[1]) + (s[2] + s[3]), (t[0] + t[1]) + (t[2] + t[3]));
            assert_eq!(dot_lanes(&a, &b).to_bits(), dot.to_bits(), "dot_lanes, length {len}");
            assert_eq!(sum_lanes(&a).to_bits(), sum.to_bits(), "sum_lanes, length {len}");
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            let mag: f64 = a.iter().zip(&b).map(|(x, y)| (f64::from(*x) * f64::from(*y)).abs()).sum();
            assert!((f64::from(dot) - exact).abs() <= 1e-6 * mag + 1e-30, "dot_lanes, length {len}: {dot} vs {exact}");
        }
    }

    #[test]
    fn exp_approx_accuracy() {
        // 400,001 evenly spaced arguments on [-87, 88]: relative error vs f64.
        let (mut worst, mut at) = (0.0f64, 0.0f32);
        let n = 400_000;
        for i in 0..=n {
            let x = -87.0 + 175.0 * (i as f32 / n as f32);
            let want = (x as f64).exp();
            let rel = ((exp_approx(x) as f64 - want) / want).abs();
            if rel > worst {
                (worst, at) = (rel, x);
            }
        }
        eprintln!("exp_approx max relative error on [-87, 88]: {worst:.3e} at {at}");
        // 1 ulp of f32 (2^-23 ≈ 1.19e-7); measured 7.9e-8.
        assert!(worst <= 1.2e-7, "exp_approx error {worst} at {at}");
        assert_eq!(exp_approx(0.0), 1.0);
        assert_eq!(exp_approx(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_approx(-100.0), 0.0);
        assert_eq!(exp_approx(f32::INFINITY), f32::INFINITY);
        assert!(exp_approx(f32::NAN).is_nan());
    }

    #[test]
    fn reference_int8_equals_dequantised_f32() {
        use crate::util::rng::SplitMix64;
        let mut rng = SplitMix64::new(3);
        let (n, out, inp) = (5, 7, 9);
        let wf = Linear {
            out_dim: out,
            in_dim: inp,
            weight: LinearWeight::F32(rng.uniform_vec(out * inp, -1.0, 1.0)),
            bias: rng.uniform_vec(out, -1.0, 1.0),
        };
        let wq = wf.quantized();
        let wdq = Linear {
            weight: LinearWeight::F32(wq.weight_f32().into_owned()),
            ..wf.clone()
        };
        let x = rng.uniform_vec(n * inp, -2.0, 2.0);
        let a = matmul_int8_reference(&x, n, &wq, Activation::Gelu, None);
        let b = matmul_int8_reference(&x, n, &wdq, Activation::Gelu, None);
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() < 1e-5, "{u} vs {v}");
        }
    }
}

/// Plain-Rust reference of `matmul_int8.wgsl` with its LayerNorm prologue:
/// [`layernorm_reference`] of `x` `[n, in]` (`ln`, `eps`), then [`matmul_int8_reference`]
/// with `w` and `act` (no residual). Returns `[n, out]`.
///
/// # Panics
/// As the two references do.
pub fn layernorm_matmul_int8_reference(
    x: &[f32],
    n: usize,
    ln: &LayerNormWeights,
    eps: f32,
    w: &Linear,
    act: Activation,
) -> Vec<f32> {
    let normed = layernorm_reference(x, n, w.in_dim, ln, eps);
    matmul_int8_reference(&normed, n, w, act, None)
}

/// Plain-Rust reference of `matmul_int8.wgsl` on its f16 fast path: `x` `[n, in]` is stored
/// as f16 when `x_f16` (rounded to nearest, [`crate::quant::round_f16`]), optionally
/// normalised (`norm`), multiplied as [`matmul_int8_reference`] in f32 with `act` and the
/// residual add (the residual read from its f16 storage when `y_f16`), and the result is
/// stored as f16 when `y_f16`. Returns `[n, out]` (f16 values widened exactly).
///
/// # Panics
/// As [`matmul_int8_reference`] does.
pub fn matmul_int8_f16_reference(
    x: &[f32],
    n: usize,
    norm: Option<(&LayerNormWeights, f32)>,
    w: &Linear,
    act: Activation,
    residual: Option<&[f32]>,
    x_f16: bool,
    y_f16: bool,
) -> Vec<f32> {
    use crate::quant::round_f16;
    let xs: Vec<f32> = if x_f16 { x.iter().map(|&v| round_f16(v)).collect() } else { x.to_vec() };
    let staged = match norm {
        Some((ln, eps)) => layernorm_reference(&xs, n, w.in_dim, ln, eps),
        None => xs,
    };
    let res: Option<Vec<f32>> = residual.map(|r| if y_f16 { r.iter().map(|&v| round_f16(v)).collect() } else { r.to_vec() });
    let y = matmul_int8_reference(&staged, n, w, act, res.as_deref());
    if y_f16 {
        y.into_iter().map(round_f16).collect()
    } else {
        y
    }
}

/// Plain-Rust reference of `attention_out.wgsl`: [`attention_biased_reference`] of `qkv`
/// `[n_cells * tokens, 3 * d_model]` (optional `bias` `[n_heads, tokens, tokens]`), then
/// [`matmul_int8_reference`] with the output projection `wo` and `residual`
/// `[n_cells * tokens, out]`. Returns `[n_cells * tokens, out]`.
///
/// # Panics
/// As the two references do.
#[allow(clippy::too_many_arguments)]
pub fn attention_out_reference(
    qkv: &[f32],
    bias: Option<&[f32]>,
    n_cells: usize,
    tokens: usize,
    d_model: usize,
    n_heads: usize,
    wo: &Linear,
    residual: &[f32],
) -> Vec<f32> {
    let a = attention_biased_reference(qkv, bias, n_cells, tokens, d_model, n_heads);
    matmul_int8_reference(&a, n_cells * tokens, wo, Activation::None, Some(residual))
}

/// The integer part of `matmul_dot4.wgsl`: each row of `x` `[n, in]` quantised with
/// [`crate::quant::quantize_row_i8`], times the int8 weights of `w` `[out, in]`. Returns the
/// exact sums `Σ_k qx[r,k]·qw[o,k]` `[n, out]` and the row scales `[n]`.
///
/// # Panics
/// If `x.len() != n * in` or `w` has f32 weights.
pub fn matmul_dot4_sums_reference(x: &[f32], n: usize, w: &Linear) -> (Vec<i32>, Vec<f32>) {
    let (out_dim, in_dim) = (w.out_dim, w.in_dim);
    assert_eq!(x.len(), n * in_dim, "dot4 reference: x has {} values, expected [n={n}, in={in_dim}]", x.len());
    let LinearWeight::Int8 { q, .. } = &w.weight else {
        panic!("dot4 reference: int8 weights required");
    };
    let mut sums = vec![0i32; n * out_dim];
    let mut scales = vec![1.0f32; n];
    let mut qx = vec![0i8; in_dim];
    for r in 0..n {
        scales[r] = crate::quant::quantize_row_i8(&x[r * in_dim..(r + 1) * in_dim], &mut qx);
        for o in 0..out_dim {
            let qw = &q[o * in_dim..(o + 1) * in_dim];
            sums[r * out_dim + o] = qx.iter().zip(qw).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum();
        }
    }
    (sums, scales)
}

/// Plain-Rust reference of `matmul_dot4.wgsl`: `x` `[n, in]`, LayerNorm'd first when `norm`
/// is given ([`layernorm_reference`]), rows quantised to int8
/// ([`matmul_dot4_sums_reference`]), then `y = f32(sum) · (row scale · weight scale[o]) +
/// bias[o]`, `act`, `+ residual` `[n, out]`. Returns `[n, out]`.
///
/// # Panics
/// As [`matmul_dot4_sums_reference`]; if the residual is not `[n, out]`.
pub fn matmul_dot4_reference(
    x: &[f32],
    n: usize,
    norm: Option<(&LayerNormWeights, f32)>,
    w: &Linear,
    act: Activation,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let normed;
    let x = match norm {
        Some((ln, eps)) => {
            normed = layernorm_reference(x, n, w.in_dim, ln, eps);
            &normed[..]
        }
        None => x,
    };
    let (sums, row_scales) = matmul_dot4_sums_reference(x, n, w);
    let LinearWeight::Int8 { scale, .. } = &w.weight else {
        unreachable!("checked by matmul_dot4_sums_reference");
    };
    let out_dim = w.out_dim;
    if let Some(r) = residual {
        assert_eq!(r.len(), n * out_dim, "dot4 reference: residual must be [n={n}, out={out_dim}]");
    }
    let mut y = vec![0.0f32; n * out_dim];
    for (idx, v) in y.iter_mut().enumerate() {
        let (r, o) = (idx / out_dim.max(1), idx % out_dim.max(1));
        let pre = sums[idx] as f32 * (row_scales[r] * scale[o]) + w.bias[o];
        let a = if act == Activation::Gelu { gelu_reference(pre) } else { pre };
        *v = residual.map_or(a, |res| a + res[idx]);
    }
    y
}
