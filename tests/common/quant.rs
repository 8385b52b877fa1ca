//! Checks shared by the fp32-vs-int8 parity tests.
//!
//! int8 weights move each logit by at most `max |Δlogit|`, so a cell can only change class
//! when its fp32 top-two margin is at most `2 · max |Δlogit|`. A bare agreement fraction on a
//! hundred-odd held-out cells is brittle (one near-tie cell more on another CPU, whose float
//! summation order trains a slightly different model, fails it), so these checks assert the
//! bound itself: the logit error is small, every class flip is a near tie under that error,
//! and agreement stays above a loose floor.

/// `[rows]` argmax of `[rows, k]` logits.
fn argmax(logits: &[f32], k: usize) -> Vec<usize> {
    logits
        .chunks(k)
        .map(|r| r.iter().enumerate().fold(0, |best, (j, &v)| if v > r[best] { j } else { best }))
        .collect()
}

/// Top-1 minus top-2 logit of one row.
fn margin(row: &[f32]) -> f32 {
    let mut s: Vec<f32> = row.to_vec();
    s.sort_by(|a, b| b.total_cmp(a));
    s[0] - s.get(1).copied().unwrap_or(f32::NEG_INFINITY)
}

/// Asserts that int8 logits `[n, k]` follow fp32 logits `[n, k]`: max |Δlogit| ≤
/// `max_logit_error`, every class flip is on a cell whose fp32 margin ≤ 2 · the measured max
/// |Δlogit|, and at least `min_agreement` of the cells keep their class. Returns
/// (agreement fraction, max |Δlogit|).
pub fn assert_int8_follows_fp32(
    name: &str,
    fp32: &[f32],
    int8: &[f32],
    k: usize,
    max_logit_error: f32,
    min_agreement: f64,
) -> (f64, f32) {
    assert_eq!(fp32.len(), int8.len(), "{name}: logit arrays differ in length");
    let n = fp32.len() / k;
    let err = fp32.iter().zip(int8).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let (pa, pb) = (argmax(fp32, k), argmax(int8, k));
    let flips: Vec<usize> = (0..n).filter(|&i| pa[i] != pb[i]).collect();
    let agree = (n - flips.len()) as f64 / n as f64;
    let margins: Vec<f32> = flips.iter().map(|&i| margin(&fp32[i * k..(i + 1) * k])).collect();
    eprintln!(
        "{name}: same class on {}/{n} cells ({:.2}%), max |Δlogit| {err:.4}, fp32 margins of the flipped cells {margins:.4?}",
        n - flips.len(),
        100.0 * agree
    );
    assert!(err <= max_logit_error, "{name}: max |Δlogit| {err} > {max_logit_error}");
    for (&i, &m) in flips.iter().zip(&margins) {
        assert!(m <= 2.0 * err + 1e-6, "{name}: cell {i} changed class with fp32 margin {m} > 2·max|Δlogit| {}", 2.0 * err);
    }
    assert!(agree >= min_agreement, "{name}: int8 keeps the class of {agree:.4} of the cells < {min_agreement}");
    (agree, err)
}
