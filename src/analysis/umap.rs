//! UMAP (McInnes, Healy & Melville 2018), a compact re-implementation of umap-learn's
//! Euclidean path, for 2-D (or `n_components`-D) layouts of morphology projections.
//!
//! Steps, each as in umap-learn 0.5:
//! 1. exact kNN ([`knn_exact`], brute force, parallel): `n_neighbors - 1` other points
//!    (umap-learn counts the point itself as its first neighbour);
//! 2. smooth kNN distances: `ρ_i` = distance to the nearest other point, `σ_i` by binary search
//!    so that `Σ_j exp(-max(0, d_ij - ρ_i) / σ_i) = log2(n_neighbors)`, floored at
//!    `1e-3 ×` the mean neighbour distance;
//! 3. memberships `w_ij = exp(-max(0, d_ij - ρ_i) / σ_i)` and the fuzzy union
//!    `w + wᵀ - w ∘ wᵀ`; edges below `max(w) / n_epochs` are dropped;
//! 4. curve parameters `a, b` fitted by least squares to the `min_dist` / `spread` target
//!    ([`fit_ab`]; `a ≈ 1.577, b ≈ 0.895` for the defaults);
//! 5. initialisation: **PCA** of the input to `n_components` (umap-learn's `init="pca"`;
//!    umap-learn defaults to a spectral layout, which needs special handling of disconnected
//!    graphs; PCA is deterministic and robust for them), scaled to max |coord| 10 plus N(0,
//!    1e-4) noise, then min-max scaled to `[0, 10]` per axis;
//! 6. SGD over `n_epochs` (default 500 for `n <= 10,000`, else 200) with edge sampling
//!    proportional to weight, `negative_sample_rate` negative samples per positive one,
//!    gradients clipped to ±4 and a linearly decaying learning rate. Single-threaded and
//!    seeded: equal inputs and seeds give bit-identical layouts on every platform.

use super::error::{check_matrix, AnalysisError};
use super::knn::{knn_exact, KnnGraph};
use crate::util::rng::SplitMix64;

/// Options of [`umap`]; [`UmapOptions::default`] matches umap-learn's defaults (except the
/// PCA initialisation).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UmapOptions {
    /// Size of the local neighbourhood, counting the point itself (umap-learn convention);
    /// `2..=n`. Default 15.
    pub n_neighbors: usize,
    /// Output dimension (default 2).
    pub n_components: usize,
    /// Minimum distance between embedded points (default 0.1); `0 <= min_dist <= spread`.
    pub min_dist: f32,
    /// Scale of the embedded points (default 1.0).
    pub spread: f32,
    /// SGD epochs; `None` picks 500 for `n <= 10,000` and 200 above.
    pub n_epochs: Option<usize>,
    /// Initial SGD learning rate (default 1.0), decays linearly to 0.
    pub learning_rate: f32,
    /// Negative samples per positive edge sample (default 5).
    pub negative_sample_rate: usize,
    /// Weight of the repulsive term, γ (default 1.0).
    pub repulsion_strength: f32,
    /// Seed of the initialisation noise and the negative sampling.
    pub seed: u64,
}

impl Default for UmapOptions {
    fn default() -> Self {
        UmapOptions {
            n_neighbors: 15,
            n_components: 2,
            min_dist: 0.1,
            spread: 1.0,
            n_epochs: None,
            learning_rate: 1.0,
            negative_sample_rate: 5,
            repulsion_strength: 1.0,
            seed: 0,
        }
    }
}

/// Default epoch count for `n` points (umap-learn's rule).
pub fn default_umap_epochs(n: usize) -> usize {
    if n <= 10_000 {
        500
    } else {
        200
    }
}

/// A UMAP layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Umap {
    /// Embedded points, shape `[n, n_components]`, row-major.
    pub embedding: Vec<f32>,
    /// Output dimension.
    pub n_components: usize,
    /// Curve parameter `a` of `1 / (1 + a d^(2b))`.
    pub a: f32,
    /// Curve parameter `b`.
    pub b: f32,
    /// Epochs run.
    pub n_epochs: usize,
    /// Edges (directed, both directions) of the fuzzy graph after pruning.
    pub n_edges: usize,
}

/// The symmetric fuzzy simplicial set as a directed edge list sorted by `(head, tail)`.
#[derive(Debug, Clone, PartialEq)]
pub struct FuzzyGraph {
    /// Source point of each edge.
    pub heads: Vec<u32>,
    /// Target point of each edge.
    pub tails: Vec<u32>,
    /// Membership strength in `(0, 1]`.
    pub weights: Vec<f32>,
}

/// Embeds the rows of `x` (`[n, d]`, row-major) in `opts.n_components` dimensions.
///
/// Errors: empty, mis-shaped or non-finite `x`; `n_neighbors < 2` or `> n`; `n < 3`;
/// `n_components == 0`; `spread <= 0`, `min_dist` outside `[0, spread]`, non-positive
/// learning rate, `n_epochs == Some(0)`.
pub fn umap(x: &[f32], n: usize, d: usize, opts: &UmapOptions) -> Result<Umap, AnalysisError> {
    check_matrix("UMAP input", x, n, d)?;
    validate(n, opts)?;
    let knn = knn_exact(x, n, d, opts.n_neighbors - 1)?;
    let n_epochs = opts.n_epochs.unwrap_or_else(|| default_umap_epochs(n));
    let graph = fuzzy_simplicial_set(&knn, opts.n_neighbors);
    let graph = prune(graph, n_epochs);
    let (a, b) = fit_ab(opts.spread, opts.min_dist)?;
    let mut rng = SplitMix64::new(opts.seed);
    let mut embedding = pca_init(x, n, d, opts.n_components, &mut rng);
    optimize_layout(
        &mut embedding,
        n,
        opts,
        &graph,
        a as f32,
        b as f32,
        n_epochs,
        &mut rng,
    );
    Ok(Umap {
        embedding,
        n_components: opts.n_components,
        a: a as f32,
        b: b as f32,
        n_epochs,
        n_edges: graph.heads.len(),
    })
}

fn validate(n: usize, opts: &UmapOptions) -> Result<(), AnalysisError> {
    if n < 3 {
        return Err(AnalysisError::param("n (points)", n, "at least 3 points"));
    }
    if opts.n_neighbors < 2 || opts.n_neighbors > n {
        return Err(AnalysisError::param(
            "n_neighbors",
            format!("{} (n = {n} points)", opts.n_neighbors),
            "2 <= n_neighbors <= number of points",
        ));
    }
    if opts.n_components == 0 {
        return Err(AnalysisError::param("n_components", 0, "at least 1"));
    }
    if !(opts.spread > 0.0 && opts.spread.is_finite()) {
        return Err(AnalysisError::param(
            "spread",
            opts.spread,
            "a finite value > 0",
        ));
    }
    if !(opts.min_dist >= 0.0 && opts.min_dist <= opts.spread) {
        return Err(AnalysisError::param(
            "min_dist",
            format!("{} (spread {})", opts.min_dist, opts.spread),
            "0 <= min_dist <= spread",
        ));
    }
    if !(opts.learning_rate > 0.0 && opts.learning_rate.is_finite()) {
        return Err(AnalysisError::param(
            "learning_rate",
            opts.learning_rate,
            "a finite value > 0",
        ));
    }
    if !(opts.repulsion_strength >= 0.0 && opts.repulsion_strength.is_finite()) {
        return Err(AnalysisError::param(
            "repulsion_strength",
            opts.repulsion_strength,
            "a finite value >= 0",
        ));
    }
    if opts.n_epochs == Some(0) {
        return Err(AnalysisError::param("n_epochs", 0, "at least 1 (or None)"));
    }
    Ok(())
}

const SMOOTH_K_TOLERANCE: f64 = 1e-5;
const MIN_K_DIST_SCALE: f64 = 1e-3;

/// `(ρ_i, σ_i)` per point from its sorted neighbour distances (umap-learn `smooth_knn_dist`
/// with `local_connectivity = 1`, `bandwidth = 1`). `n_neighbors` counts the point itself.
fn smooth_knn_dist(knn: &KnnGraph, n_neighbors: usize) -> (Vec<f64>, Vec<f64>) {
    let k = knn.k;
    let n = knn.n_points();
    let target = (n_neighbors as f64).log2();
    // umap-learn's rows include the point itself at distance 0: means are over k + 1 values.
    let mean_all =
        knn.distances.iter().map(|&v| f64::from(v)).sum::<f64>() / (n * (k + 1)).max(1) as f64;
    let mut rhos = Vec::with_capacity(n);
    let mut sigmas = Vec::with_capacity(n);
    for row in knn.distances.chunks_exact(k) {
        let rho = row
            .iter()
            .map(|&v| f64::from(v))
            .find(|&v| v > 0.0)
            .unwrap_or(0.0);
        let (mut lo, mut hi, mut mid) = (0.0f64, f64::INFINITY, 1.0f64);
        for _ in 0..64 {
            let psum: f64 = row
                .iter()
                .map(|&v| {
                    let t = f64::from(v) - rho;
                    if t > 0.0 {
                        (-t / mid).exp()
                    } else {
                        1.0
                    }
                })
                .sum();
            if (psum - target).abs() < SMOOTH_K_TOLERANCE {
                break;
            }
            if psum > target {
                hi = mid;
                mid = (lo + hi) / 2.0;
            } else {
                lo = mid;
                if hi == f64::INFINITY {
                    mid *= 2.0;
                } else {
                    mid = (lo + hi) / 2.0;
                }
            }
        }
        let mean_row = row.iter().map(|&v| f64::from(v)).sum::<f64>() / (k + 1) as f64;
        let floor = if rho > 0.0 { mean_row } else { mean_all } * MIN_K_DIST_SCALE;
        rhos.push(rho);
        sigmas.push(mid.max(floor));
    }
    (rhos, sigmas)
}

/// The fuzzy union `w + wᵀ - w ∘ wᵀ` of the kNN memberships, as a sorted edge list.
///
/// `knn` holds the `n_neighbors - 1` nearest other points of every point.
pub fn fuzzy_simplicial_set(knn: &KnnGraph, n_neighbors: usize) -> FuzzyGraph {
    let (rhos, sigmas) = smooth_knn_dist(knn, n_neighbors);
    let k = knn.k;
    // (row, col, w_row→col, w_col→row) entries of w and of its transpose.
    let mut entries: Vec<(u32, u32, f64, f64)> = Vec::with_capacity(2 * knn.indices.len());
    for (i, (idx, dist)) in knn
        .indices
        .chunks_exact(k)
        .zip(knn.distances.chunks_exact(k))
        .enumerate()
    {
        for (&j, &dij) in idx.iter().zip(dist) {
            let t = f64::from(dij) - rhos[i];
            let w = if t <= 0.0 || sigmas[i] == 0.0 {
                1.0
            } else {
                (-t / sigmas[i]).exp()
            };
            entries.push((i as u32, j, w, 0.0));
            entries.push((j, i as u32, 0.0, w));
        }
    }
    entries.sort_by_key(|e| (e.0, e.1));
    let mut graph = FuzzyGraph {
        heads: Vec::with_capacity(entries.len() / 2),
        tails: Vec::with_capacity(entries.len() / 2),
        weights: Vec::with_capacity(entries.len() / 2),
    };
    let mut s = 0;
    while s < entries.len() {
        let (h, t) = (entries[s].0, entries[s].1);
        let (mut w, mut wt) = (0.0f64, 0.0f64);
        while s < entries.len() && entries[s].0 == h && entries[s].1 == t {
            w += entries[s].2;
            wt += entries[s].3;
            s += 1;
        }
        let v = w + wt - w * wt;
        if v > 0.0 {
            graph.heads.push(h);
            graph.tails.push(t);
            graph.weights.push(v as f32);
        }
    }
    graph
}

/// Drops edges below `max(w) / n_epochs` (they would never be sampled).
fn prune(graph: FuzzyGraph, n_epochs: usize) -> FuzzyGraph {
    let max = graph.weights.iter().copied().fold(0.0f32, f32::max);
    let cut = max / n_epochs as f32;
    let keep: Vec<bool> = graph.weights.iter().map(|&w| w >= cut).collect();
    let pick = |v: Vec<u32>| -> Vec<u32> {
        v.into_iter()
            .zip(&keep)
            .filter(|(_, &k)| k)
            .map(|(x, _)| x)
            .collect()
    };
    FuzzyGraph {
        heads: pick(graph.heads),
        tails: pick(graph.tails),
        weights: graph
            .weights
            .iter()
            .zip(&keep)
            .filter(|(_, &k)| k)
            .map(|(&w, _)| w)
            .collect(),
    }
}

/// Fits `a, b` of `φ(d) = 1 / (1 + a d^(2b))` to `1` for `d < min_dist` and
/// `exp(-(d - min_dist) / spread)` beyond, on 300 points over `[0, 3·spread]`, by
/// Levenberg–Marquardt least squares from `(1, 1)` — umap-learn's `find_ab_params`
/// (`scipy.optimize.curve_fit`). For `spread = 1, min_dist = 0.1`: `a = 1.5769, b = 0.8951`.
pub fn fit_ab(spread: f32, min_dist: f32) -> Result<(f64, f64), AnalysisError> {
    if !(spread > 0.0 && spread.is_finite()) {
        return Err(AnalysisError::param("spread", spread, "a finite value > 0"));
    }
    if !(min_dist >= 0.0 && min_dist <= spread) {
        return Err(AnalysisError::param(
            "min_dist",
            format!("{min_dist} (spread {spread})"),
            "0 <= min_dist <= spread",
        ));
    }
    let (spread, min_dist) = (f64::from(spread), f64::from(min_dist));
    let xs: Vec<f64> = (0..300).map(|i| 3.0 * spread * i as f64 / 299.0).collect();
    let ys: Vec<f64> = xs
        .iter()
        .map(|&x| {
            if x < min_dist {
                1.0
            } else {
                (-(x - min_dist) / spread).exp()
            }
        })
        .collect();
    // Residuals and Jacobian of f(x) = 1 / (1 + a x^(2b)).
    let sse = |a: f64, b: f64| -> f64 {
        xs.iter()
            .zip(&ys)
            .map(|(&x, &y)| {
                let f = 1.0 / (1.0 + a * x.powf(2.0 * b));
                (f - y) * (f - y)
            })
            .sum()
    };
    let (mut a, mut b) = (1.0f64, 1.0f64);
    let mut lambda = 1e-3;
    let mut cost = sse(a, b);
    for _ in 0..500 {
        let (mut jtj, mut jtr) = ([[0f64; 2]; 2], [0f64; 2]);
        for (&x, &y) in xs.iter().zip(&ys) {
            if x <= 0.0 {
                continue; // f = 1 and zero derivatives at x = 0
            }
            let p = x.powf(2.0 * b);
            let den = 1.0 + a * p;
            let f = 1.0 / den;
            let r = f - y;
            let da = -p / (den * den);
            let db = -a * p * 2.0 * x.ln() / (den * den);
            jtj[0][0] += da * da;
            jtj[0][1] += da * db;
            jtj[1][1] += db * db;
            jtr[0] += da * r;
            jtr[1] += db * r;
        }
        jtj[1][0] = jtj[0][1];
        let mut improved = false;
        for _ in 0..30 {
            let m00 = jtj[0][0] * (1.0 + lambda);
            let m11 = jtj[1][1] * (1.0 + lambda);
            let det = m00 * m11 - jtj[0][1] * jtj[1][0];
            if det == 0.0 || !det.is_finite() {
                lambda *= 10.0;
                continue;
            }
            let sa = -(m11 * jtr[0] - jtj[0][1] * jtr[1]) / det;
            let sb = -(m00 * jtr[1] - jtj[1][0] * jtr[0]) / det;
            let (na, nb) = (a + sa, b + sb);
            let nc = if na > 0.0 && nb > 0.0 {
                sse(na, nb)
            } else {
                f64::INFINITY
            };
            if nc < cost {
                let done = (cost - nc) <= 1e-15 * cost.max(1e-300)
                    || (sa.abs() <= 1e-12 * a.abs() && sb.abs() <= 1e-12 * b.abs());
                a = na;
                b = nb;
                cost = nc;
                lambda = (lambda / 10.0).max(1e-12);
                improved = true;
                if done {
                    return Ok((a, b));
                }
                break;
            }
            lambda *= 10.0;
        }
        if !improved {
            break;
        }
    }
    Ok((a, b))
}

/// PCA of `x` to `m` dimensions by subspace iteration on the covariance, then umap-learn's
/// `noisy_scale_coords` (max |coord| 10, N(0, 1e-4) noise) and min-max scaling to `[0, 10]`.
fn pca_init(x: &[f32], n: usize, d: usize, m: usize, rng: &mut SplitMix64) -> Vec<f32> {
    let proj = principal_components(x, n, d, m, rng);
    let max_abs = proj.iter().fold(0f64, |acc, &v| acc.max(v.abs()));
    let expansion = if max_abs > 0.0 { 10.0 / max_abs } else { 1.0 };
    let mut coords: Vec<f32> = proj
        .iter()
        .map(|&v| (v * expansion) as f32 + 1e-4 * rng.normal())
        .collect();
    for c in 0..m {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for i in 0..n {
            lo = lo.min(coords[i * m + c]);
            hi = hi.max(coords[i * m + c]);
        }
        let range = hi - lo;
        for i in 0..n {
            let v = &mut coords[i * m + c];
            *v = if range > 0.0 {
                10.0 * (*v - lo) / range
            } else {
                5.0
            };
        }
    }
    coords
}

/// Projections `[n, m]` of the centred rows of `x` onto its top `m` principal axes (axes past
/// the rank of `x` come out as arbitrary orthogonal directions). Signs are fixed so that each
/// axis's largest-magnitude loading is positive.
fn principal_components(x: &[f32], n: usize, d: usize, m: usize, rng: &mut SplitMix64) -> Vec<f64> {
    let mut mean = vec![0f64; d];
    for row in x.chunks_exact(d) {
        for (s, &v) in mean.iter_mut().zip(row) {
            *s += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|s| *s /= n as f64);
    let mut cov = vec![0f64; d * d];
    let mut centred = vec![0f64; d];
    for row in x.chunks_exact(d) {
        for ((c, &v), &mu) in centred.iter_mut().zip(row).zip(&mean) {
            *c = f64::from(v) - mu;
        }
        for a in 0..d {
            let ca = centred[a];
            if ca == 0.0 {
                continue;
            }
            let line = &mut cov[a * d..(a + 1) * d];
            for (l, &cb) in line[a..].iter_mut().zip(&centred[a..]) {
                *l += ca * cb;
            }
        }
    }
    for a in 0..d {
        for b in 0..a {
            cov[a * d + b] = cov[b * d + a];
        }
    }
    // Subspace iteration: q [m, d] (rows are axes).
    let mut q: Vec<f64> = (0..m * d).map(|_| f64::from(rng.normal())).collect();
    orthonormalise(&mut q, m, d);
    for _ in 0..300 {
        let mut z = vec![0f64; m * d];
        for c in 0..m {
            let qc = &q[c * d..(c + 1) * d];
            for a in 0..d {
                z[c * d + a] = cov[a * d..(a + 1) * d]
                    .iter()
                    .zip(qc)
                    .map(|(x, y)| x * y)
                    .sum();
            }
        }
        orthonormalise(&mut z, m, d);
        let change = z
            .iter()
            .zip(&q)
            .map(|(a, b)| (a.abs() - b.abs()).abs())
            .fold(0f64, f64::max);
        q = z;
        if change < 1e-10 {
            break;
        }
    }
    for c in 0..m {
        let axis = &mut q[c * d..(c + 1) * d];
        let big = axis
            .iter()
            .copied()
            .fold(0f64, |acc, v| if v.abs() > acc.abs() { v } else { acc });
        if big < 0.0 {
            axis.iter_mut().for_each(|v| *v = -*v);
        }
    }
    let mut out = vec![0f64; n * m];
    for (i, row) in x.chunks_exact(d).enumerate() {
        for c in 0..m {
            out[i * m + c] = row
                .iter()
                .zip(&mean)
                .zip(&q[c * d..(c + 1) * d])
                .map(|((&v, &mu), &w)| (f64::from(v) - mu) * w)
                .sum();
        }
    }
    out
}

/// Modified Gram–Schmidt on the `m` rows (length `d`) of `q`; a row that collapses is replaced
/// by a unit vector orthogonal to the previous ones where possible.
fn orthonormalise(q: &mut [f64], m: usize, d: usize) {
    for c in 0..m {
        for p in 0..c {
            let dot: f64 = (0..d).map(|a| q[c * d + a] * q[p * d + a]).sum();
            for a in 0..d {
                q[c * d + a] -= dot * q[p * d + a];
            }
        }
        let norm = (0..d)
            .map(|a| q[c * d + a] * q[c * d + a])
            .sum::<f64>()
            .sqrt();
        if norm > 1e-300 {
            q[c * d..(c + 1) * d].iter_mut().for_each(|v| *v /= norm);
        } else {
            q[c * d..(c + 1) * d].iter_mut().for_each(|v| *v = 0.0);
            if c < d {
                q[c * d + c] = 1.0;
            }
        }
    }
}

#[inline]
fn clip(v: f32) -> f32 {
    v.clamp(-4.0, 4.0)
}

/// umap-learn's `optimize_layout_euclidean` (single-threaded, `move_other = true`).
#[allow(clippy::too_many_arguments)]
fn optimize_layout(
    emb: &mut [f32],
    n: usize,
    opts: &UmapOptions,
    graph: &FuzzyGraph,
    a: f32,
    b: f32,
    n_epochs: usize,
    rng: &mut SplitMix64,
) {
    let dim = opts.n_components;
    let max_w = graph.weights.iter().copied().fold(0f32, f32::max);
    // epochs_per_sample = n_epochs / (n_epochs * w / max_w); -1 (never) for zero weight.
    let epochs_per_sample: Vec<f64> = graph
        .weights
        .iter()
        .map(|&w| {
            let samples = n_epochs as f64 * f64::from(w) / f64::from(max_w);
            if samples > 0.0 {
                n_epochs as f64 / samples
            } else {
                -1.0
            }
        })
        .collect();
    let neg_rate = opts.negative_sample_rate as f64;
    let epochs_per_negative: Vec<f64> = epochs_per_sample
        .iter()
        .map(|&e| {
            if neg_rate > 0.0 {
                e / neg_rate
            } else {
                f64::INFINITY
            }
        })
        .collect();
    let mut next_sample = epochs_per_sample.clone();
    let mut next_negative = epochs_per_negative.clone();
    let gamma = opts.repulsion_strength;
    let mut current = vec![0f32; dim];
    for epoch in 0..n_epochs {
        let alpha = opts.learning_rate * (1.0 - epoch as f32 / n_epochs as f32);
        let e = epoch as f64;
        for edge in 0..epochs_per_sample.len() {
            if epochs_per_sample[edge] < 0.0 || next_sample[edge] > e {
                continue;
            }
            let j = graph.heads[edge] as usize;
            let k = graph.tails[edge] as usize;
            let d2 = rdist(emb, j, k, dim);
            let coeff = if d2 > 0.0 {
                -2.0 * a * b * d2.powf(b - 1.0) / (a * d2.powf(b) + 1.0)
            } else {
                0.0
            };
            for c in 0..dim {
                let g = clip(coeff * (emb[j * dim + c] - emb[k * dim + c]));
                emb[j * dim + c] += g * alpha;
                emb[k * dim + c] -= g * alpha;
            }
            next_sample[edge] += epochs_per_sample[edge];
            let n_neg = ((e - next_negative[edge]) / epochs_per_negative[edge]).max(0.0) as usize;
            current.copy_from_slice(&emb[j * dim..(j + 1) * dim]);
            for _ in 0..n_neg {
                let other = rng.below(n as u64) as usize;
                if other == j {
                    continue;
                }
                let o = &emb[other * dim..(other + 1) * dim];
                let d2: f32 = current.iter().zip(o).map(|(x, y)| (x - y) * (x - y)).sum();
                let coeff = if d2 > 0.0 {
                    2.0 * gamma * b / ((0.001 + d2) * (a * d2.powf(b) + 1.0))
                } else {
                    // Same point (or a coincident one): no usable direction.
                    continue;
                };
                for c in 0..dim {
                    let g = clip(coeff * (current[c] - o[c]));
                    current[c] += g * alpha;
                }
            }
            emb[j * dim..(j + 1) * dim].copy_from_slice(&current);
            next_negative[edge] += n_neg as f64 * epochs_per_negative[edge];
        }
    }
}

#[inline]
fn rdist(emb: &[f32], j: usize, k: usize, dim: usize) -> f32 {
    (0..dim)
        .map(|c| {
            let t = emb[j * dim + c] - emb[k * dim + c];
            t * t
        })
        .sum()
}
