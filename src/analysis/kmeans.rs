//! k-means clustering: k-means++ seeding, Lloyd iterations, best of several restarts.

use super::error::{check_matrix, AnalysisError};
use super::knn::squared_euclidean;
use crate::util::parallel::map_row_chunks;
use crate::util::rng::SplitMix64;

/// Default number of restarts (scikit-learn's classic `n_init`).
pub const DEFAULT_KMEANS_RESTARTS: usize = 10;
/// Default cap on Lloyd iterations per restart.
pub const DEFAULT_KMEANS_MAX_ITERATIONS: usize = 300;

/// Options of [`kmeans`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KMeansOptions {
    /// Number of clusters, `1..=n`.
    pub k: usize,
    /// Independent k-means++ restarts; the one with the lowest inertia is kept (`>= 1`).
    pub restarts: usize,
    /// Lloyd iterations per restart at most (stops earlier once no assignment changes).
    pub max_iterations: usize,
    /// Seed of the k-means++ draws; equal seeds give equal results.
    pub seed: u64,
}

impl KMeansOptions {
    /// `k` clusters with the default restarts, iteration cap and seed 0.
    pub fn new(k: usize) -> Self {
        KMeansOptions {
            k,
            restarts: DEFAULT_KMEANS_RESTARTS,
            max_iterations: DEFAULT_KMEANS_MAX_ITERATIONS,
            seed: 0,
        }
    }
}

/// A k-means clustering.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    /// Number of clusters.
    pub k: usize,
    /// Dimension of the points.
    pub dim: usize,
    /// Cluster of each point, length `n`, values `< k`.
    pub labels: Vec<u32>,
    /// Cluster means, shape `[k, dim]`, row-major.
    pub centroids: Vec<f32>,
    /// Sum of squared distances of the points to their centroids.
    pub inertia: f64,
    /// Lloyd iterations run by the kept restart.
    pub iterations: usize,
    /// Whether the kept restart stopped because no assignment changed (rather than at the cap).
    pub converged: bool,
}

impl KMeans {
    /// Nearest centroid of each row of `x` (`[n, dim]`), e.g. for cells not used in fitting.
    pub fn predict(&self, x: &[f32], n: usize) -> Result<Vec<u32>, AnalysisError> {
        check_matrix("k-means predict input", x, n, self.dim)?;
        Ok(assign(x, n, self.dim, &self.centroids, self.k)
            .into_iter()
            .map(|(l, _)| l)
            .collect())
    }
}

/// Clusters the rows of `x` (`[n, d]`, row-major) into `opts.k` groups.
///
/// Each restart seeds with k-means++ (Arthur & Vassilvitskii 2007: first centre uniform, then
/// each next centre drawn with probability proportional to the squared distance to the
/// nearest chosen one), then alternates assignment and mean updates (Lloyd) until no label
/// changes or `max_iterations`. A cluster that empties is re-seeded with the point farthest
/// from its centroid. The restart with the lowest inertia wins; restarts use seeds derived
/// from `opts.seed`, so results are deterministic.
///
/// Errors ([`AnalysisError`]): empty or mis-shaped `x`, NaN/∞ values, `k == 0`, `k > n`,
/// `restarts == 0`.
pub fn kmeans(
    x: &[f32],
    n: usize,
    d: usize,
    opts: &KMeansOptions,
) -> Result<KMeans, AnalysisError> {
    check_matrix("k-means input", x, n, d)?;
    let k = opts.k;
    if k == 0 || k > n {
        return Err(AnalysisError::param(
            "k",
            format!("{k} (n = {n} points)"),
            "1 <= k <= number of points",
        ));
    }
    if opts.restarts == 0 {
        return Err(AnalysisError::param("restarts", 0, "at least 1"));
    }
    let mut seeder = SplitMix64::new(opts.seed);
    let mut best: Option<KMeans> = None;
    for _ in 0..opts.restarts {
        let mut rng = SplitMix64::new(seeder.next_u64());
        let run = lloyd(x, n, d, k, opts.max_iterations, &mut rng);
        if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
            best = Some(run);
        }
    }
    best.ok_or_else(|| AnalysisError::param("restarts", 0, "at least 1"))
}

/// k-means++ seeding: `[k, d]` centres.
fn kmeans_plus_plus(x: &[f32], n: usize, d: usize, k: usize, rng: &mut SplitMix64) -> Vec<f32> {
    let mut centres = Vec::with_capacity(k * d);
    let first = rng.below(n as u64) as usize;
    centres.extend_from_slice(&x[first * d..(first + 1) * d]);
    let mut nearest: Vec<f64> = (0..n)
        .map(|i| f64::from(squared_euclidean(&x[i * d..(i + 1) * d], &centres[..d])))
        .collect();
    for _ in 1..k {
        let total: f64 = nearest.iter().sum();
        let chosen = if total > 0.0 {
            let target = rng.next_f64() * total;
            let mut acc = 0.0;
            let mut pick = n - 1;
            for (i, &w) in nearest.iter().enumerate() {
                acc += w;
                if acc > target && w > 0.0 {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            // Every point coincides with a centre already: any point will do.
            rng.below(n as u64) as usize
        };
        let c = &x[chosen * d..(chosen + 1) * d];
        centres.extend_from_slice(c);
        for (i, w) in nearest.iter_mut().enumerate() {
            *w = w.min(f64::from(squared_euclidean(&x[i * d..(i + 1) * d], c)));
        }
    }
    centres
}

/// Nearest centre (label, squared distance) of each point.
fn assign(x: &[f32], n: usize, d: usize, centres: &[f32], k: usize) -> Vec<(u32, f32)> {
    map_row_chunks(n, 2048, |range| {
        range
            .map(|i| {
                let xi = &x[i * d..(i + 1) * d];
                let mut best = (0u32, f32::INFINITY);
                for c in 0..k {
                    let dist = squared_euclidean(xi, &centres[c * d..(c + 1) * d]);
                    if dist < best.1 {
                        best = (c as u32, dist);
                    }
                }
                best
            })
            .collect()
    })
}

fn lloyd(
    x: &[f32],
    n: usize,
    d: usize,
    k: usize,
    max_iterations: usize,
    rng: &mut SplitMix64,
) -> KMeans {
    let mut centres = kmeans_plus_plus(x, n, d, k, rng);
    let mut labels = vec![u32::MAX; n];
    let mut iterations = 0;
    let mut converged = false;
    let mut assigned = assign(x, n, d, &centres, k);
    loop {
        let changed = labels
            .iter()
            .zip(&assigned)
            .filter(|(l, a)| **l != a.0)
            .count();
        for (l, a) in labels.iter_mut().zip(&assigned) {
            *l = a.0;
        }
        if changed == 0 {
            converged = true;
            break;
        }
        if iterations >= max_iterations {
            break;
        }
        iterations += 1;
        // Mean update in f64.
        let mut sums = vec![0f64; k * d];
        let mut counts = vec![0usize; k];
        for (i, &l) in labels.iter().enumerate() {
            let l = l as usize;
            counts[l] += 1;
            for (s, &v) in sums[l * d..(l + 1) * d]
                .iter_mut()
                .zip(&x[i * d..(i + 1) * d])
            {
                *s += f64::from(v);
            }
        }
        let mut taken = vec![false; n];
        for c in 0..k {
            if counts[c] > 0 {
                for j in 0..d {
                    centres[c * d + j] = (sums[c * d + j] / counts[c] as f64) as f32;
                }
            } else {
                // Empty cluster: move it onto the point farthest from its current centre.
                let far = (0..n)
                    .filter(|&i| !taken[i])
                    .max_by(|&a, &b| assigned[a].1.total_cmp(&assigned[b].1))
                    .unwrap_or(0);
                taken[far] = true;
                centres[c * d..(c + 1) * d].copy_from_slice(&x[far * d..(far + 1) * d]);
            }
        }
        assigned = assign(x, n, d, &centres, k);
    }
    // Final means of the final assignment, and the inertia against them.
    let mut inertia = 0f64;
    for (i, &l) in labels.iter().enumerate() {
        let l = l as usize;
        inertia += f64::from(squared_euclidean(
            &x[i * d..(i + 1) * d],
            &centres[l * d..(l + 1) * d],
        ));
    }
    KMeans {
        k,
        dim: d,
        labels,
        centroids: centres,
        inertia,
        iterations,
        converged,
    }
}

/// k-means with `k` chosen by the mean silhouette of the clustering itself (never by labels):
/// every `k` in `k_range` capped at `n - 1` (the silhouette needs a point outside each
/// cluster) is clustered with `opts` (its `k` ignored) and scored with
/// [`super::metrics::silhouette_score`]; the highest score wins, the smaller `k` on a tie.
///
/// Returns the kept clustering and `(k, silhouette)` of every `k` tried, in order. Errors:
/// those of [`kmeans`], and fewer than 3 points or an empty range (no `k >= 2` to try).
pub fn kmeans_by_silhouette(
    x: &[f32],
    n: usize,
    d: usize,
    k_range: std::ops::RangeInclusive<usize>,
    opts: &KMeansOptions,
) -> Result<(KMeans, Vec<(usize, f64)>), AnalysisError> {
    let lo = (*k_range.start()).max(2);
    let hi = (*k_range.end()).min(n.saturating_sub(1));
    if lo > hi {
        return Err(AnalysisError::param(
            "k range",
            format!("{k_range:?} with n = {n} points"),
            "a range holding some 2 <= k <= n - 1 (at least 3 points)",
        ));
    }
    let mut scores = Vec::with_capacity(hi - lo + 1);
    let mut best: Option<(KMeans, f64)> = None;
    for k in lo..=hi {
        let km = kmeans(x, n, d, &KMeansOptions { k, ..opts.clone() })?;
        // Coinciding points can leave fewer than 2 used clusters: score that k as -1.
        let s = super::metrics::silhouette_score(x, n, d, &km.labels, k).unwrap_or(-1.0);
        scores.push((k, s));
        if best.as_ref().is_none_or(|(_, b)| s > *b) {
            best = Some((km, s));
        }
    }
    let (km, _) = best.ok_or_else(|| AnalysisError::param("k range", format!("{k_range:?}"), "a non-empty range"))?;
    Ok((km, scores))
}
