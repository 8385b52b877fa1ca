//! Matching detected centroids to reference centroids: precision, recall and F1.

use std::collections::HashMap;

use crate::analysis::error::AnalysisError;

/// How well detected centroids agree with reference centroids.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MatchReport {
    /// Detected centroids.
    pub n_detected: usize,
    /// Reference centroids.
    pub n_reference: usize,
    /// One-to-one pairs closer than the matching distance.
    pub n_matched: usize,
    /// `n_matched / n_detected` (0 when nothing was detected).
    pub precision: f64,
    /// `n_matched / n_reference` (0 when there is no reference).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Mean distance of the matched pairs (same unit as the centroids; 0 when none).
    pub mean_distance: f64,
    /// The matching distance used.
    pub max_distance: f32,
}

/// Matches `detected` to `reference` centroids (`[x, y]`, same unit) one-to-one within
/// `max_distance`: every pair closer than that is a candidate, and pairs are taken greedily by
/// increasing distance (ties by index), each point used at most once. Candidate pairs are
/// found through a uniform grid of cell `max_distance`, so the cost is about linear in the
/// number of points.
///
/// Fails with [`AnalysisError::InvalidParameter`] for a distance that is not positive and
/// finite, and with [`AnalysisError::NonFinite`] for a non-finite coordinate.
pub fn match_centroids(
    detected: &[[f32; 2]],
    reference: &[[f32; 2]],
    max_distance: f32,
) -> Result<MatchReport, AnalysisError> {
    if !(max_distance.is_finite() && max_distance > 0.0) {
        return Err(AnalysisError::param(
            "max_distance",
            max_distance,
            "a positive, finite distance in the centroids' unit (e.g. 3 µm)",
        ));
    }
    for (what, pts) in [("detected centroids", detected), ("reference centroids", reference)] {
        if let Some((row, p)) = pts.iter().enumerate().find(|(_, p)| !(p[0].is_finite() && p[1].is_finite())) {
            return Err(AnalysisError::NonFinite {
                what: what.to_string(),
                row,
                column: usize::from(p[0].is_finite()),
                value: format!("{p:?}"),
            });
        }
    }
    let cell = |p: [f32; 2]| -> (i64, i64) {
        ((p[0] / max_distance).floor() as i64, (p[1] / max_distance).floor() as i64)
    };
    let mut grid: HashMap<(i64, i64), Vec<usize>> = HashMap::new();
    for (j, &p) in reference.iter().enumerate() {
        grid.entry(cell(p)).or_default().push(j);
    }
    let max2 = f64::from(max_distance) * f64::from(max_distance);
    let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
    for (i, &p) in detected.iter().enumerate() {
        let (cx, cy) = cell(p);
        for dx in -1..=1 {
            for dy in -1..=1 {
                let Some(list) = grid.get(&(cx + dx, cy + dy)) else { continue };
                for &j in list {
                    let q = reference[j];
                    let d2 = (f64::from(p[0]) - f64::from(q[0])).powi(2)
                        + (f64::from(p[1]) - f64::from(q[1])).powi(2);
                    if d2 <= max2 {
                        pairs.push((d2, i, j));
                    }
                }
            }
        }
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut used_d = vec![false; detected.len()];
    let mut used_r = vec![false; reference.len()];
    let (mut n_matched, mut dist_sum) = (0usize, 0.0f64);
    for (d2, i, j) in pairs {
        if !used_d[i] && !used_r[j] {
            used_d[i] = true;
            used_r[j] = true;
            n_matched += 1;
            dist_sum += d2.sqrt();
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precision = ratio(n_matched, detected.len());
    let recall = ratio(n_matched, reference.len());
    let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    Ok(MatchReport {
        n_detected: detected.len(),
        n_reference: reference.len(),
        n_matched,
        precision,
        recall,
        f1,
        mean_distance: if n_matched == 0 { 0.0 } else { dist_sum / n_matched as f64 },
        max_distance,
    })
}
