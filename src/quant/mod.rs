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

mod activation;
mod linear;

pub use activation::quantize_row_i8;
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
