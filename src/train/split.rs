//! Seeded stratified train/test split and class weights.

use crate::util::rng::SplitMix64;

/// Split the indices of labelled cells into train and test sets, per class, so each class keeps
/// `test_fraction` of its cells (rounded, at least one in each set when the class has ≥ 2
/// cells). `labels[i] = None` cells are left out of both. Returns sorted index lists.
pub fn stratified_split(labels: &[Option<u32>], test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let n_classes = labels.iter().flatten().map(|&c| c as usize + 1).max().unwrap_or(0);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
    for (i, l) in labels.iter().enumerate() {
        if let Some(c) = l {
            by_class[*c as usize].push(i);
        }
    }
    let mut rng = SplitMix64::new(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for mut idx in by_class {
        rng.shuffle(&mut idx);
        let n = idx.len();
        let mut n_test = (n as f64 * test_fraction).round() as usize;
        if n >= 2 {
            n_test = n_test.clamp(1, n - 1);
        } else {
            n_test = 0;
        }
        test.extend_from_slice(&idx[..n_test]);
        train.extend_from_slice(&idx[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// Inverse-frequency class weights `n / (classes · count_c)` over the given cells (0 for
/// classes absent from them), as in scikit-learn's `class_weight="balanced"`.
pub fn balanced_class_weights(labels: &[u32], n_classes: usize) -> Vec<f32> {
    let mut counts = vec![0usize; n_classes];
    for &l in labels {
        counts[l as usize] += 1;
    }
    let present = counts.iter().filter(|&&c| c > 0).count().max(1);
    counts
        .iter()
        .map(|&c| if c == 0 { 0.0 } else { labels.len() as f32 / (present as f32 * c as f32) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stratified_disjoint_and_seeded() {
        let labels: Vec<Option<u32>> = (0..200)
            .map(|i| if i % 17 == 0 { None } else { Some((i % 3) as u32) })
            .collect();
        let (tr, te) = stratified_split(&labels, 0.2, 7);
        assert!(tr.iter().all(|i| !te.contains(i)));
        assert_eq!(tr.len() + te.len(), labels.iter().flatten().count());
        for c in 0..3u32 {
            let n = labels.iter().filter(|l| **l == Some(c)).count();
            let t = te.iter().filter(|&&i| labels[i] == Some(c)).count();
            assert_eq!(t, (n as f64 * 0.2).round() as usize, "class {c}");
        }
        assert_eq!(stratified_split(&labels, 0.2, 7), (tr.clone(), te.clone()));
        assert_ne!(stratified_split(&labels, 0.2, 8).1, te);
    }

    #[test]
    fn balanced_weights_equalise_class_mass() {
        let labels = [0, 0, 0, 1, 2, 2];
        let w = balanced_class_weights(&labels, 4);
        assert!((w[0] * 3.0 - w[1] * 1.0).abs() < 1e-6);
        assert!((w[2] * 2.0 - w[1]).abs() < 1e-6);
        assert_eq!(w[3], 0.0);
    }
}
