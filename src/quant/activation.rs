//! Per-row symmetric int8 quantisation of activations (the `W8A8` input side).

/// Quantises one activation row `x` `[in]` into `q` `[in]`; returns the row's scale, so that
/// `x ≈ q · scale`.
///
/// Scheme (shared bit for bit with `kernels/matmul_dot4.wgsl`): `amax = max |x|`; if
/// `amax == 0` then `scale = 1` and every `q = 0`; else `scale = amax / 127`,
/// `inv = 127 / amax` and `q = clamp(round_ties_even(x · inv), -127, 127)` (WGSL `round` rounds
/// half to even). The per-element error is at most `scale / 2` (plus f32 rounding).
///
/// # Panics
/// If `q.len() != x.len()`.
pub fn quantize_row_i8(x: &[f32], q: &mut [i8]) -> f32 {
    assert_eq!(q.len(), x.len(), "quantize_row_i8: q has {} values, x has {}", q.len(), x.len());
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if amax == 0.0 {
        q.fill(0);
        return 1.0;
    }
    let inv = 127.0 / amax;
    for (o, &v) in q.iter_mut().zip(x) {
        *o = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    amax / 127.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::SplitMix64;

    #[test]
    fn quantize_row_i8_scheme() {
        // Zeros: scale 1, q 0.
        let mut q = [5i8; 3];
        assert_eq!(quantize_row_i8(&[0.0, -0.0, 0.0], &mut q), 1.0);
        assert_eq!(q, [0, 0, 0]);
        // amax maps to ±127; with amax = 127 (inv = 1) ties show: they round to even.
        let mut q = [0i8; 6];
        let s = quantize_row_i8(&[127.0, -127.0, 2.5, 3.5, -2.5, 0.4], &mut q);
        assert_eq!(s, 1.0);
        assert_eq!(q, [127, -127, 2, 4, -2, 0]);
        // Random rows: the error is at most half a step.
        let mut rng = SplitMix64::new(3);
        let x = rng.uniform_vec(257, -3.0, 3.0);
        let mut q = vec![0i8; x.len()];
        let s = quantize_row_i8(&x, &mut q);
        let worst = x.iter().zip(&q).map(|(v, &k)| (v - f32::from(k) * s).abs()).fold(0.0f32, f32::max);
        assert!(worst <= s * 0.5 * (1.0 + 1e-5), "error {worst} > scale/2 {}", s / 2.0);
        assert!(q.iter().any(|&k| k.abs() == 127));
    }
}
