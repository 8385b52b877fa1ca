//! Row-wise argmax of a logits matrix, with an explicit rule for NaN.

/// Index of the largest value of each row of `logits` `[rows, n_classes]` (row-major) →
/// `[rows]`.
///
/// - Ties go to the first (lowest) index.
/// - A NaN is never the maximum: it is skipped, so `[NaN, 1, 0]` → 1.
/// - A row of only NaN → 0.
/// - `n_classes == 0` → an empty result; a trailing partial row (when `logits.len()` is not a
///   multiple of `n_classes`) is ignored.
pub fn argmax_rows(logits: &[f32], n_classes: usize) -> Vec<u32> {
    if n_classes == 0 {
        return Vec::new();
    }
    logits
        .chunks_exact(n_classes)
        .map(|row| {
            let mut best: Option<(usize, f32)> = None;
            for (j, &v) in row.iter().enumerate() {
                if !v.is_nan() && best.is_none_or(|(_, b)| v > b) {
                    best = Some((j, v));
                }
            }
            best.map_or(0, |(j, _)| j as u32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::argmax_rows;

    #[test]
    fn first_maximum_and_nan_rules() {
        let nan = f32::NAN;
        assert_eq!(
            argmax_rows(&[1.0, 3.0, 3.0, -1.0, nan, 2.0, 0.0, 5.0], 4),
            vec![1, 3],
            "ties go to the first index; NaN is skipped"
        );
        assert_eq!(
            argmax_rows(&[nan, 1.0, 0.0], 3),
            vec![1],
            "leading NaN is not the max"
        );
        assert_eq!(
            argmax_rows(&[2.0, nan, 1.0], 3),
            vec![0],
            "NaN after the max"
        );
        assert_eq!(argmax_rows(&[nan, nan], 2), vec![0], "all-NaN row → 0");
        assert_eq!(
            argmax_rows(&[f32::NEG_INFINITY, f32::NEG_INFINITY, -1.0], 3),
            vec![2]
        );
        assert_eq!(argmax_rows(&[f32::NEG_INFINITY; 2], 2), vec![0]);
        assert!(argmax_rows(&[], 0).is_empty());
        assert!(argmax_rows(&[1.0, 2.0], 0).is_empty());
        assert_eq!(
            argmax_rows(&[1.0, 2.0, 3.0], 2),
            vec![1],
            "partial row ignored"
        );
    }
}
