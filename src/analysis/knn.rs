//! Exact k-nearest neighbours by brute force (Euclidean), parallel over query rows.

use super::error::{check_matrix, AnalysisError};
use crate::util::parallel::map_row_chunks;

/// The `k` nearest other points of every point, nearest first.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnGraph {
    /// Neighbours per point.
    pub k: usize,
    /// Neighbour indices, shape `[n, k]`, row-major; a point is never its own neighbour.
    pub indices: Vec<u32>,
    /// Euclidean distances matching `indices`, shape `[n, k]`, ascending along each row.
    pub distances: Vec<f32>,
}

impl KnnGraph {
    /// Number of points.
    pub fn n_points(&self) -> usize {
        self.indices.len().checked_div(self.k).unwrap_or(0)
    }
}

/// Squared Euclidean distance between two equal-length rows.
#[inline]
pub(crate) fn squared_euclidean(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 4];
    let (ca, ra) = a.split_at(a.len() - a.len() % 4);
    let (cb, rb) = b.split_at(ca.len());
    for (x, y) in ca.chunks_exact(4).zip(cb.chunks_exact(4)) {
        for l in 0..4 {
            let t = x[l] - y[l];
            acc[l] += t * t;
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ra.iter().zip(rb) {
        let t = x - y;
        s += t * t;
    }
    s
}

/// Exact `k` nearest neighbours of each row of `x` (`[n, d]`, row-major) among the other
/// rows, by Euclidean distance; ties are broken by the lower index.
///
/// Cost `O(n² d)`, spread over the machine's cores (sequential on wasm32); about a minute for
/// `n = 50,000`, `d = 50` on 16 cores. Errors: empty or mis-shaped `x`, non-finite values,
/// `k == 0` or `k >= n`.
pub fn knn_exact(x: &[f32], n: usize, d: usize, k: usize) -> Result<KnnGraph, AnalysisError> {
    check_matrix("knn input", x, n, d)?;
    if k == 0 || k >= n {
        return Err(AnalysisError::param(
            "k",
            format!("{k} (n = {n} points)"),
            "1 <= k < number of points",
        ));
    }
    let rows: Vec<(u32, f32)> = map_row_chunks(n, 256, |range| {
        let mut out = Vec::with_capacity(range.len() * k);
        // Sorted (distance², index) of the best k so far.
        let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
        for i in range {
            best.clear();
            let xi = &x[i * d..(i + 1) * d];
            for j in 0..n {
                if j == i {
                    continue;
                }
                let dist = squared_euclidean(xi, &x[j * d..(j + 1) * d]);
                if best.len() == k {
                    // Strictly closer only: equal distances keep the earlier (lower) index.
                    if dist >= best[k - 1].0 {
                        continue;
                    }
                    best.pop();
                }
                let pos = best.partition_point(|&(bd, _)| bd <= dist);
                best.insert(pos, (dist, j as u32));
            }
            out.extend(best.iter().map(|&(d2, j)| (j, d2.sqrt())));
        }
        out
    });
    let (indices, distances) = rows.into_iter().unzip();
    Ok(KnnGraph {
        k,
        indices,
        distances,
    })
}
