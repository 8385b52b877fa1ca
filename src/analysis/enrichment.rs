//! Per-cluster cell-type composition and over-representation (hypergeometric test).

use super::error::{check_labels, AnalysisError};

/// Cell-type composition of clusters: counts, fractions, enrichment and p-values, each a
/// `[n_clusters, n_types]` row-major table.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClusterEnrichment {
    /// Number of clusters (rows).
    pub n_clusters: usize,
    /// Number of cell types (columns).
    pub n_types: usize,
    /// Cells of type `t` in cluster `c`, `[n_clusters, n_types]`.
    pub counts: Vec<u64>,
    /// Cells per cluster, length `n_clusters`.
    pub cluster_sizes: Vec<u64>,
    /// Cells per type, length `n_types`.
    pub type_totals: Vec<u64>,
    /// `counts / cluster_size` (0 for an empty cluster), `[n_clusters, n_types]`.
    pub fraction: Vec<f64>,
    /// Expected count under independence, `cluster_size * type_total / n`.
    pub expected: Vec<f64>,
    /// `observed / expected` (0 where expected is 0), `[n_clusters, n_types]`.
    pub enrichment: Vec<f64>,
    /// One-sided hypergeometric p-value of over-representation, `P(X >= observed)` for
    /// `X ~ Hypergeom(population n, type_total successes, cluster_size draws)`.
    pub p_value: Vec<f64>,
    /// Benjamini–Hochberg adjusted p-values over the whole table.
    pub q_value: Vec<f64>,
}

/// Composition and enrichment of cell types (`types`, values `< n_types`) in clusters
/// (`clusters`, values `< n_clusters`), one entry per cell.
///
/// Errors: different lengths, no cells, a label out of range.
pub fn cluster_enrichment(
    clusters: &[u32],
    n_clusters: usize,
    types: &[u32],
    n_types: usize,
) -> Result<ClusterEnrichment, AnalysisError> {
    let n = clusters.len();
    if n == 0 {
        return Err(AnalysisError::Empty {
            what: "cluster labels".to_string(),
        });
    }
    check_labels("clusters", clusters, n, n_clusters)?;
    check_labels("types", types, n, n_types)?;
    let mut counts = vec![0u64; n_clusters * n_types];
    for (&c, &t) in clusters.iter().zip(types) {
        counts[c as usize * n_types + t as usize] += 1;
    }
    let cluster_sizes: Vec<u64> = counts
        .chunks_exact(n_types.max(1))
        .map(|r| r.iter().sum())
        .collect();
    let type_totals: Vec<u64> = (0..n_types)
        .map(|t| (0..n_clusters).map(|c| counts[c * n_types + t]).sum())
        .collect();
    let total = n as u64;
    let cells = n_clusters * n_types;
    let (mut fraction, mut expected, mut enrichment, mut p_value) = (
        Vec::with_capacity(cells),
        Vec::with_capacity(cells),
        Vec::with_capacity(cells),
        Vec::with_capacity(cells),
    );
    for c in 0..n_clusters {
        for t in 0..n_types {
            let obs = counts[c * n_types + t];
            let size = cluster_sizes[c];
            fraction.push(if size > 0 {
                obs as f64 / size as f64
            } else {
                0.0
            });
            let e = size as f64 * type_totals[t] as f64 / total as f64;
            expected.push(e);
            enrichment.push(if e > 0.0 { obs as f64 / e } else { 0.0 });
            p_value.push(hypergeometric_at_least(obs, total, type_totals[t], size));
        }
    }
    let q_value = benjamini_hochberg(&p_value);
    Ok(ClusterEnrichment {
        n_clusters,
        n_types,
        counts,
        cluster_sizes,
        type_totals,
        fraction,
        expected,
        enrichment,
        p_value,
        q_value,
    })
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, 9 terms; relative error ~1e-15).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 - x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = C[0];
    for (i, &c) in C.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// `ln C(n, k)` via [`ln_gamma`] (`-inf` when `k > n`).
fn ln_choose(n: u64, k: u64) -> f64 {
    if k > n {
        return f64::NEG_INFINITY;
    }
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// Survival function of the hypergeometric distribution, `P(X > k)` when drawing `draws`
/// items without replacement from `population` items of which `successes` are successes —
/// the same as `scipy.stats.hypergeom.sf(k, M=population, n=successes, N=draws)`.
///
/// Summed term by term in log space from `k + 1` upwards (ratio recurrence), so tiny tails
/// keep their relative accuracy. Arguments beyond their ranges are clamped
/// (`successes, draws <= population`).
pub fn hypergeometric_sf(k: u64, population: u64, successes: u64, draws: u64) -> f64 {
    hypergeometric_at_least(k.saturating_add(1), population, successes, draws)
}

/// `P(X >= x)` for `X ~ Hypergeom(population, successes, draws)`.
fn hypergeometric_at_least(x: u64, population: u64, successes: u64, draws: u64) -> f64 {
    let big_k = successes.min(population);
    let n = draws.min(population);
    let lo = n.saturating_sub(population - big_k);
    let hi = big_k.min(n);
    if x <= lo {
        return 1.0;
    }
    if x > hi {
        return 0.0;
    }
    let ln_total = ln_choose(population, n);
    let mut log_term = ln_choose(big_k, x) + ln_choose(population - big_k, n - x) - ln_total;
    let mut logs = Vec::with_capacity((hi - x + 1) as usize);
    logs.push(log_term);
    for j in x..hi {
        // pmf(j + 1) / pmf(j) = (K - j)(n - j) / ((j + 1)(M - K - n + j + 1)).
        let num = ((big_k - j) as f64).ln() + ((n - j) as f64).ln();
        // j >= x > n - (M - K), so M - K + j + 1 - n >= 1 (no underflow in this order).
        let den = ((j + 1) as f64).ln() + ((population - big_k + j + 1 - n) as f64).ln();
        log_term += num - den;
        logs.push(log_term);
    }
    let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = logs.iter().map(|&l| (l - max).exp()).sum();
    (max + sum.ln()).exp().min(1.0)
}

/// Benjamini–Hochberg adjusted p-values (false discovery rate), same order as `p`, like
/// `statsmodels.stats.multitest.multipletests(p, method="fdr_bh")[1]`. NaNs stay NaN and are
/// not counted.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let m = order.len() as f64;
    let mut q = vec![f64::NAN; p.len()];
    let mut running = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * m / (rank + 1) as f64);
        q[i] = running.min(1.0);
    }
    q
}
