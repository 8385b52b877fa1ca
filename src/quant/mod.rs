//! Per-output-channel symmetric int8 quantisation and packing of int8 rows into `u32` words.
//!
//! Conventions (the contract with the trainer's exporter, see `engine::format`):
//! - a Linear weight is `[out, in]` row-major (PyTorch layout);
//! - each output row `o` has its own scale `scale[o] = max_k |w[o,k]| / 127` (1.0 if the row
//!   is all zeros), and `q[o,k] = clamp(round(w[o,k] / scale[o]), -127, 127)`;
//! - dequantisation is `w ≈ q * scale[o]`; the per-element error is at most `scale[o] / 2`.
//!
//! On the GPU the int8 values are packed four per `u32` along the input dimension, little
//! endian: byte `b` (bits `8b..8b+8`) of word `j` in row `o` holds `q[o, 4j + b]`. The input
//! dimension is padded with zeros to a multiple of 4.
//!
//! The functions here take already-validated slices; length mismatches are programming
//! errors and panic with a message (see each `# Panics`).

mod half;
mod linear;

pub use half::{f16_bits_to_f32, f32_to_f16_bits, round_f16};
pub use linear::{Linear, LinearWeight};

/// Quantises `w` `[out, in]` per output channel; returns `(q [out, in], scale [out])`.
///
/// Rounding is `f32::round` (half away from zero); the exporter in Python may round half to
/// even, which only differs on exact ties and is equally valid for the loader.
///
/// # Panics
/// If `w.len() != out * in_dim`.
pub fn quantize_per_channel_symmetric(w: &[f32], out: usize, in_dim: usize) -> (Vec<i8>, Vec<f32>) {
    assert_eq!(
        w.len(),
        out * in_dim,
        "quantize: weight has {} values, expected [out={out}, in={in_dim}]",
        w.len()
    );
    let mut q = Vec::with_capacity(w.len());
    let mut scale = Vec::with_capacity(out);
    for row in w.chunks_exact(in_dim.max(1)).take(out) {
        let max_abs = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let s = if max_abs > 0.0 && max_abs.is_finite() {
            max_abs / 127.0
        } else {
            1.0
        };
        scale.push(s);
        q.extend(
            row.iter()
                .map(|&v| (v / s).round().clamp(-127.0, 127.0) as i8),
        );
    }
    // `chunks_exact(1)` on an empty `in_dim` yields nothing; keep `scale` one per row.
    scale.resize(out, 1.0);
    (q, scale)
}

/// Quantises one activation row `x` `[in]` to int8 in `out` `[in]`; returns its scale (the
/// per-row activation quantisation of the W8A8 GEMMs: the CPU engine's
/// `engine::gemm` i8×i8→i32 kernels and the WGSL `dot4I8Packed` path implement exactly this).
///
/// - `amax = max_k |x[k]|`;
/// - `amax == 0`: scale 1, every `out[k] = 0`;
/// - otherwise `scale = amax / 127`, `inv = 127 / amax`,
///   `out[k] = clamp(round_ties_even(x[k] · inv), -127, 127)` (so `x ≈ out · scale`).
///
/// A layer then computes `y[o] = (Σ_k out[k]·q[o,k]) as f32 · (scale · w_scale[o]) + b[o]`.
///
/// Non-finite input (NaN or ±∞ anywhere in `x`) returns scale NaN with `out` all zeros, so
/// every output of that row is NaN and the engine's non-finite check names the layer (the
/// plain formula would silently map NaN to 0).
///
/// # Panics
/// If `out.len() != x.len()`.
pub fn quantize_row_i8(x: &[f32], out: &mut [i8]) -> f32 {
    assert_eq!(out.len(), x.len(), "quantize_row_i8: out has {} values for a row of {}", out.len(), x.len());
    quantize_row_into(x, out)
}

/// [`quantize_row_i8`] writing each value as any integer type that holds an `i8` (the CPU
/// GEMM widens to i16 in the same pass). `out` may be longer than `x`; the rest is untouched.
///
/// Vectorisable: `max|x|` is taken on the bit patterns (for non-negative floats the integer
/// order is the numeric order, and a pattern ≥ that of +∞ means NaN or ∞), and the rounding
/// of `v ∈ [-127, 127]` is `(v + 1.5·2²³) − 1.5·2²³`, which is round-half-to-even exactly
/// (the sum's unit in the last place is 1) without a libm call.
#[inline]
pub(crate) fn quantize_row_into<T: From<i8>>(x: &[f32], out: &mut [T]) -> f32 {
    const ABS: u32 = 0x7fff_ffff;
    const INF: u32 = 0x7f80_0000;
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23
    let amax_bits = x.iter().fold(0u32, |m, v| m.max(v.to_bits() & ABS));
    if amax_bits >= INF || amax_bits == 0 {
        out[..x.len()].iter_mut().for_each(|o| *o = T::from(0));
        return if amax_bits == 0 { 1.0 } else { f32::NAN };
    }
    let amax = f32::from_bits(amax_bits);
    let inv = 127.0 / amax;
    for (o, &v) in out.iter_mut().zip(x) {
        let r = ((v * inv).clamp(-127.0, 127.0) + ROUND) - ROUND;
        *o = T::from(r as i32 as i8);
    }
    amax / 127.0
}

/// Dequantises `q` `[out, in]` with per-row `scale` `[out]`: `w[o,k] = q[o,k] * scale[o]`.
///
/// # Panics
/// If `q.len() != out * in_dim` or `scale.len() != out`.
pub fn dequantize(q: &[i8], scale: &[f32], out: usize, in_dim: usize) -> Vec<f32> {
    assert_eq!(
        q.len(),
        out * in_dim,
        "dequantize: q has {} values, expected [out={out}, in={in_dim}]",
        q.len()
    );
    assert_eq!(
        scale.len(),
        out,
        "dequantize: scale has {} values, expected [out={out}]",
        scale.len()
    );
    let mut w = Vec::with_capacity(q.len());
    for (o, &s) in scale.iter().enumerate() {
        w.extend(
            q[o * in_dim..(o + 1) * in_dim]
                .iter()
                .map(|&v| v as f32 * s),
        );
    }
    w
}

/// Input dimension padded to a multiple of 4 (one `u32` word holds four int8 values).
pub fn padded_in_dim(in_dim: usize) -> usize {
    in_dim.div_ceil(4) * 4
}

/// Packs `q` `[out, in]` into `u32` words `[out, in_padded / 4]`, four values per word along
/// the input dimension (little-endian byte order), padding each row with zeros to
/// `in_padded = padded_in_dim(in)`. Returns `(words, in_padded)`.
///
/// # Panics
/// If `q.len() != out * in_dim`.
pub fn pack_int8_rows_u32(q: &[i8], out: usize, in_dim: usize) -> (Vec<u32>, usize) {
    assert_eq!(
        q.len(),
        out * in_dim,
        "pack: q has {} values, expected [out={out}, in={in_dim}]",
        q.len()
    );
    let in_padded = padded_in_dim(in_dim);
    let words_per_row = in_padded / 4;
    let mut words = vec![0u32; out * words_per_row];
    for o in 0..out {
        for k in 0..in_dim {
            let byte = q[o * in_dim + k] as u8 as u32;
            words[o * words_per_row + k / 4] |= byte << (8 * (k % 4));
        }
    }
    (words, in_padded)
}

/// Inverse of [`pack_int8_rows_u32`]: unpacks `[out, in_padded / 4]` words into `q` `[out, in]`
/// (the zero padding is dropped).
///
/// # Panics
/// If `words.len() != out * padded_in_dim(in_dim) / 4`.
pub fn unpack_int8_rows_u32(words: &[u32], out: usize, in_dim: usize) -> Vec<i8> {
    let words_per_row = padded_in_dim(in_dim) / 4;
    assert_eq!(
        words.len(),
        out * words_per_row,
        "unpack: {} words, expected [out={out}, words={words_per_row}]",
        words.len()
    );
    let mut q = Vec::with_capacity(out * in_dim);
    for o in 0..out {
        for k in 0..in_dim {
            let word = words[o * words_per_row + k / 4];
            q.push((word >> (8 * (k % 4))) as u8 as i8);
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::SplitMix64;

    #[test]
    fn quantize_dequantize_error_within_half_scale() {
        let mut rng = SplitMix64::new(7);
        let (out, in_dim) = (50, 313);
        let mut w: Vec<f32> = (0..out * in_dim).map(|_| rng.normal() * 0.05).collect();
        // One all-zero row exercises the scale = 1.0 rule.
        w[3 * in_dim..4 * in_dim].iter_mut().for_each(|v| *v = 0.0);
        let (q, scale) = quantize_per_channel_symmetric(&w, out, in_dim);
        assert_eq!(scale[3], 1.0);
        let deq = dequantize(&q, &scale, out, in_dim);
        let mut worst = 0.0f32;
        for o in 0..out {
            for k in 0..in_dim {
                let err = (deq[o * in_dim + k] - w[o * in_dim + k]).abs();
                // Half a quantisation step, plus f32 rounding of the products.
                assert!(
                    err <= scale[o] * 0.5 * (1.0 + 1e-5),
                    "row {o} col {k}: err {err} > scale/2 {}",
                    scale[o] / 2.0
                );
                worst = worst.max(err / scale[o]);
            }
        }
        eprintln!("quantize->dequantize max error = {worst:.4} * scale (bound 0.5)");
        assert!(q.iter().all(|&v| v >= -127));
    }

    #[test]
    fn quantize_row_i8_follows_the_scheme() {
        // Ties go to even, the row's largest magnitude maps to ±127, zeros stay zero.
        let x = [0.0f32, 1.27, -1.27, 0.005, 0.015, -0.025, 0.635];
        let mut q = [0i8; 7];
        let s = quantize_row_i8(&x, &mut q);
        assert_eq!(s, 1.27f32 / 127.0);
        let inv = 127.0f32 / 1.27;
        let expect: Vec<i8> = x.iter().map(|&v| (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8).collect();
        assert_eq!(q.to_vec(), expect);
        assert_eq!((q[0], q[1], q[2]), (0, 127, -127));
        // round_ties_even, not round: 0.5 → 0, 1.5 → 2, 2.5 → 2, -0.5 → 0 (scale 1 via amax 127).
        let mut q = [0i8; 5];
        assert_eq!(quantize_row_i8(&[0.5, 1.5, 2.5, -0.5, 127.0], &mut q), 1.0);
        assert_eq!(q, [0, 2, 2, 0, 127]);
        // All zeros: scale 1; non-finite: scale NaN, zeros.
        let mut q = [5i8; 3];
        assert_eq!(quantize_row_i8(&[0.0, -0.0, 0.0], &mut q), 1.0);
        assert_eq!(q, [0, 0, 0]);
        let mut q = [5i8; 3];
        assert!(quantize_row_i8(&[1.0, f32::NAN, 2.0], &mut q).is_nan());
        assert_eq!(q, [0, 0, 0]);
        assert!(quantize_row_i8(&[1.0, f32::INFINITY, 2.0], &mut q).is_nan());
        // The vectorisable rounding equals round_ties_even(clamp(x·inv)) on every value.
        let mut rng = SplitMix64::new(9);
        let mut x: Vec<f32> = (0..20_000).map(|_| rng.normal() * 40.0).collect();
        x.extend((-300..=300).map(|i| i as f32 * 0.5)); // exact ties at amax 127 → inv 1
        x.push(127.0);
        let mut q = vec![0i8; x.len()];
        let s = quantize_row_i8(&x, &mut q);
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert_eq!(s, amax / 127.0);
        let inv = 127.0 / amax;
        for (&v, &qv) in x.iter().zip(&q) {
            assert_eq!(qv, (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8, "x = {v}");
        }
        // Error bound: |x − q·scale| ≤ scale / 2 (plus rounding of the product).
        let mut rng = SplitMix64::new(3);
        let x: Vec<f32> = (0..257).map(|_| rng.normal() * 3.0).collect();
        let mut q = vec![0i8; x.len()];
        let s = quantize_row_i8(&x, &mut q);
        for (&v, &qv) in x.iter().zip(&q) {
            assert!((v - f32::from(qv) * s).abs() <= s * 0.5 * (1.0 + 1e-5), "{v} vs {qv}·{s}");
        }
    }

    #[test]
    fn pack_unpack_roundtrip() {
        let mut rng = SplitMix64::new(11);
        for &(out, in_dim) in &[(1, 1), (3, 4), (5, 7), (50, 313)] {
            let q: Vec<i8> = (0..out * in_dim)
                .map(|_| (rng.below(255) as i32 - 127) as i8)
                .collect();
            let (words, in_padded) = pack_int8_rows_u32(&q, out, in_dim);
            assert_eq!(in_padded % 4, 0);
            assert!(in_padded >= in_dim && in_padded < in_dim + 4);
            assert_eq!(words.len(), out * in_padded / 4);
            assert_eq!(unpack_int8_rows_u32(&words, out, in_dim), q);
        }
        // Byte order: value k of a row sits in bits 8k..8k+8 of the word.
        let (w, _) = pack_int8_rows_u32(&[1, -1, 2, -128, 5], 1, 5);
        assert_eq!(w, vec![0x80_02_FF_01, 0x0000_0005]);
    }
}
