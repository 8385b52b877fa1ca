//! Quality measures for clusterings and embeddings: adjusted Rand index, silhouette,
//! trustworthiness (scikit-learn's definition) and kNN label agreement.

use std::collections::HashMap;

use super::error::{check_matrix, AnalysisError};
use super::knn::{knn_exact, squared_euclidean};
use crate::util::parallel::map_row_chunks;

/// Adjusted Rand index (Hubert & Arabie 1985) between two labelings of the same `n` items,
/// as `sklearn.metrics.adjusted_rand_score`: 1 for identical partitions (up to renaming),
/// about 0 for independent ones.
///
/// Returns 1.0 when both labelings put every item in one cluster or every item in its own
/// cluster (the sklearn convention). Errors: different lengths, empty input.
pub fn adjusted_rand_index(a: &[u32], b: &[u32]) -> Result<f64, AnalysisError> {
    if a.len() != b.len() {
        return Err(AnalysisError::Shape {
            what: "second labeling (must match the first)".to_string(),
            expected: a.len(),
            found: b.len(),
        });
    }
    if a.is_empty() {
        return Err(AnalysisError::Empty {
            what: "labelings".to_string(),
        });
    }
    let comb2 = |x: u64| (x as f64) * (x as f64 - 1.0) / 2.0;
    let mut joint: HashMap<(u32, u32), u64> = HashMap::new();
    let mut rows: HashMap<u32, u64> = HashMap::new();
    let mut cols: HashMap<u32, u64> = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *joint.entry((x, y)).or_default() += 1;
        *rows.entry(x).or_default() += 1;
        *cols.entry(y).or_default() += 1;
    }
    let n = a.len() as u64;
    if (rows.len() == 1 && cols.len() == 1) || (rows.len() as u64 == n && cols.len() as u64 == n) {
        return Ok(1.0);
    }
    let index: f64 = joint.values().map(|&c| comb2(c)).sum();
    let sum_a: f64 = rows.values().map(|&c| comb2(c)).sum();
    let sum_b: f64 = cols.values().map(|&c| comb2(c)).sum();
    let expected = sum_a * sum_b / comb2(n);
    let max = (sum_a + sum_b) / 2.0;
    if max == expected {
        return Ok(1.0);
    }
    Ok((index - expected) / (max - expected))
}

/// Mean silhouette coefficient (Rousseeuw 1987) of `labels` on the rows of `x` (`[n, d]`),
/// Euclidean, as `sklearn.metrics.silhouette_score`: per point `(b - a) / max(a, b)` with `a`
/// the mean distance to its own cluster and `b` the smallest mean distance to another
/// cluster; points alone in their cluster score 0. `O(n² d)`.
///
/// Errors: mis-shaped input, labels `>= n_clusters`, fewer than 2 distinct clusters used.
pub fn silhouette_score(
    x: &[f32],
    n: usize,
    d: usize,
    labels: &[u32],
    n_clusters: usize,
) -> Result<f64, AnalysisError> {
    check_matrix("silhouette input", x, n, d)?;
    super::error::check_labels("labels", labels, n, n_clusters)?;
    let mut sizes = vec![0usize; n_clusters];
    for &l in labels {
        sizes[l as usize] += 1;
    }
    let used = sizes.iter().filter(|&&s| s > 0).count();
    if used < 2 {
        return Err(AnalysisError::param(
            "labels",
            format!("{used} distinct cluster(s)"),
            "at least 2 clusters for a silhouette",
        ));
    }
    let scores: Vec<f64> = map_row_chunks(n, 256, |range| {
        let mut sums = vec![0f64; n_clusters];
        range
            .map(|i| {
                sums.iter_mut().for_each(|s| *s = 0.0);
                let xi = &x[i * d..(i + 1) * d];
                for j in 0..n {
                    if j != i {
                        sums[labels[j] as usize] +=
                            f64::from(squared_euclidean(xi, &x[j * d..(j + 1) * d])).sqrt();
                    }
                }
                let own = labels[i] as usize;
                if sizes[own] <= 1 {
                    return 0.0;
                }
                let a = sums[own] / (sizes[own] - 1) as f64;
                let b = (0..n_clusters)
                    .filter(|&c| c != own && sizes[c] > 0)
                    .map(|c| sums[c] / sizes[c] as f64)
                    .fold(f64::INFINITY, f64::min);
                let m = a.max(b);
                if m > 0.0 {
                    (b - a) / m
                } else {
                    0.0
                }
            })
            .collect()
    });
    Ok(scores.iter().sum::<f64>() / n as f64)
}

/// Trustworthiness of an embedding (Venna & Kaski 2001), exactly as
/// `sklearn.manifold.trustworthiness(high, low, n_neighbors=k)` with Euclidean distances:
///
/// `T = 1 - 2 / (n k (2n - 3k - 1)) · Σ_i Σ_{j ∈ N_k^low(i)} max(0, r(i, j) - k)`
///
/// where `r(i, j)` is the rank of `j` among `i`'s neighbours in the input space (1 = nearest,
/// ties by lower index) and `N_k^low(i)` are `i`'s `k` nearest neighbours in the embedding.
/// 1 means every embedding neighbour is also an input neighbour.
///
/// `high` is `[n, d_high]`, `low` is `[n, d_low]`, both row-major. `O(n² d_high)`, parallel.
/// Errors: mis-shaped or non-finite input, `k == 0` or `k >= n / 2` (sklearn's limit).
pub fn trustworthiness(
    high: &[f32],
    d_high: usize,
    low: &[f32],
    d_low: usize,
    k: usize,
) -> Result<f64, AnalysisError> {
    let n = high.len().checked_div(d_high).unwrap_or(0);
    check_matrix("trustworthiness input (high)", high, n, d_high)?;
    check_matrix("trustworthiness embedding (low)", low, n, d_low)?;
    if k == 0 || 2 * k >= n {
        return Err(AnalysisError::param(
            "k",
            format!("{k} (n = {n} points)"),
            "1 <= k < n / 2",
        ));
    }
    let low_knn = knn_exact(low, n, d_low, k)?;
    let penalties: Vec<f64> = map_row_chunks(n, 128, |range| {
        let mut dist = vec![0f32; n];
        range
            .map(|i| {
                let xi = &high[i * d_high..(i + 1) * d_high];
                for (j, dj) in dist.iter_mut().enumerate() {
                    *dj = squared_euclidean(xi, &high[j * d_high..(j + 1) * d_high]);
                }
                let mut penalty = 0f64;
                for &j in &low_knn.indices[i * k..(i + 1) * k] {
                    let j = j as usize;
                    let dj = dist[j];
                    // Rank among the other points: strictly closer, or equally close with a
                    // lower index (a stable argsort), plus one.
                    let rank = 1 + dist
                        .iter()
                        .enumerate()
                        .filter(|&(l, &dl)| l != i && (dl < dj || (dl == dj && l < j)))
                        .count();
                    if rank > k {
                        penalty += (rank - k) as f64;
                    }
                }
                penalty
            })
            .collect()
    });
    let total: f64 = penalties.iter().sum();
    let (nf, kf) = (n as f64, k as f64);
    Ok(1.0 - total * 2.0 / (nf * kf * (2.0 * nf - 3.0 * kf - 1.0)))
}

/// Mean fraction of each point's `k` nearest neighbours (in `x`, `[n, d]`) that share its
/// label: how well an embedding keeps known groups apart. Errors as [`knn_exact`], plus a
/// label count different from `n`.
pub fn knn_label_agreement(
    x: &[f32],
    n: usize,
    d: usize,
    labels: &[u32],
    k: usize,
) -> Result<f64, AnalysisError> {
    if labels.len() != n {
        return Err(AnalysisError::Shape {
            what: "labels".to_string(),
            expected: n,
            found: labels.len(),
        });
    }
    let g = knn_exact(x, n, d, k)?;
    let same = g
        .indices
        .chunks_exact(k)
        .enumerate()
        .map(|(i, row)| {
            row.iter()
                .filter(|&&j| labels[j as usize] == labels[i])
                .count()
        })
        .sum::<usize>();
    Ok(same as f64 / (n * k) as f64)
}
