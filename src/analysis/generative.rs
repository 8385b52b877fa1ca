//! Metrics of generated images against real ones (issue 16): per-feature two-sample
//! Kolmogorov–Smirnov statistic and 1-D Wasserstein distance, Fréchet distance (FID) and
//! kernel distance (KID, unbiased MMD² with the cubic polynomial kernel) between feature sets,
//! and morphology features of the centre nucleus of a patch from a simple threshold
//! segmentation (Otsu threshold, the 4-connected component nearest the centre), with texture
//! features inside it (mean gradient magnitude, GLCM contrast and homogeneity).
//!
//! FID/KID here are computed on whatever features the caller passes (the flow's own image
//! encoder, not Inception: no Inception weights exist on these machines).

use super::AnalysisError;

/// Names of [`NucleusFeatures::values`], in order.
pub const NUCLEUS_FEATURES: [&str; 9] =
    ["area", "perimeter", "eccentricity", "solidity", "mean_intensity", "std_intensity", "gradient_mean", "glcm_contrast", "glcm_homogeneity"];

/// Grey levels of the co-occurrence matrix behind [`NucleusFeatures::glcm_contrast`].
pub const GLCM_LEVELS: usize = 8;

/// Two-sample Kolmogorov–Smirnov statistic `sup_x |F_a(x) − F_b(x)|` (0 for identical
/// samples, 1 for disjoint ranges; 0 when either is empty).
pub fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (sa, sb) = (sorted(a), sorted(b));
    let (mut i, mut j, mut d) = (0usize, 0usize, 0f64);
    while i < sa.len() && j < sb.len() {
        let x = sa[i].min(sb[j]);
        while i < sa.len() && sa[i] <= x {
            i += 1;
        }
        while j < sb.len() && sb[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / sa.len() as f64 - j as f64 / sb.len() as f64).abs());
    }
    d
}

/// 1-D Wasserstein-1 distance `∫ |F_a − F_b| dx` between the empirical distributions (in the
/// units of the values; 0 when either is empty).
pub fn wasserstein_1d(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (sa, sb) = (sorted(a), sorted(b));
    let mut all: Vec<f64> = sa.iter().chain(&sb).copied().collect();
    all.sort_by(f64::total_cmp);
    let (mut i, mut j, mut w) = (0usize, 0usize, 0f64);
    for k in 0..all.len() - 1 {
        while i < sa.len() && sa[i] <= all[k] {
            i += 1;
        }
        while j < sb.len() && sb[j] <= all[k] {
            j += 1;
        }
        w += (i as f64 / sa.len() as f64 - j as f64 / sb.len() as f64).abs() * (all[k + 1] - all[k]);
    }
    w
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

fn check_rows(what: &str, x: &[f32], d: usize, min_rows: usize) -> Result<usize, AnalysisError> {
    if d == 0 || x.is_empty() {
        return Err(AnalysisError::Empty { what: what.to_string() });
    }
    if x.len() % d != 0 {
        return Err(AnalysisError::Shape { what: format!("{what} [rows, {d}]"), expected: x.len().div_ceil(d) * d, found: x.len() });
    }
    let n = x.len() / d;
    if n < min_rows {
        return Err(AnalysisError::InvalidParameter { name: "rows", value: format!("{n} in {what}"), expected: format!("at least {min_rows} rows") });
    }
    Ok(n)
}

/// Mean `[d]` and covariance `[d, d]` (divided by `n − 1`) of `x` `[n, d]`.
fn mean_cov(x: &[f32], n: usize, d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut mu = vec![0f64; d];
    for r in x.chunks(d) {
        for (m, v) in mu.iter_mut().zip(r) {
            *m += *v as f64 / n as f64;
        }
    }
    let mut cov = vec![0f64; d * d];
    for r in x.chunks(d) {
        for i in 0..d {
            let di = r[i] as f64 - mu[i];
            for j in 0..d {
                cov[i * d + j] += di * (r[j] as f64 - mu[j]) / (n - 1) as f64;
            }
        }
    }
    (mu, cov)
}

/// `A^{1/2}` of a symmetric positive semi-definite `[d, d]` matrix (negative eigenvalues from
/// rounding are clamped to 0).
fn sqrt_psd(a: &[f64], d: usize) -> Vec<f64> {
    let (vals, vecs) = crate::ot::pca::symmetric_eigen(a.to_vec(), d);
    let mut out = vec![0f64; d * d];
    for (k, &l) in vals.iter().enumerate() {
        let s = l.max(0.0).sqrt();
        let v = &vecs[k * d..(k + 1) * d];
        for i in 0..d {
            for j in 0..d {
                out[i * d + j] += s * v[i] * v[j];
            }
        }
    }
    out
}

fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0f64; d * d];
    for i in 0..d {
        for k in 0..d {
            let x = a[i * d + k];
            for j in 0..d {
                out[i * d + j] += x * b[k * d + j];
            }
        }
    }
    out
}

/// Fréchet distance between Gaussians fitted to `a` `[n_a, d]` and `b` `[n_b, d]`:
/// `‖μ_a − μ_b‖² + tr Σ_a + tr Σ_b − 2 tr (Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2}` (FID on these
/// features). Needs 2 rows each.
pub fn frechet_distance(a: &[f32], b: &[f32], d: usize) -> Result<f64, AnalysisError> {
    let (na, nb) = (check_rows("first feature set", a, d, 2)?, check_rows("second feature set", b, d, 2)?);
    let (ma, ca) = mean_cov(a, na, d);
    let (mb, cb) = mean_cov(b, nb, d);
    let sa = sqrt_psd(&ca, d);
    let inner = matmul(&matmul(&sa, &cb, d), &sa, d);
    // Symmetrise against rounding before the square root.
    let sym: Vec<f64> = (0..d * d).map(|k| 0.5 * (inner[k] + inner[(k % d) * d + k / d])).collect();
    let (vals, _) = crate::ot::pca::symmetric_eigen(sym, d);
    let tr_cross: f64 = vals.iter().map(|l| l.max(0.0).sqrt()).sum();
    let mean_term: f64 = ma.iter().zip(&mb).map(|(x, y)| (x - y) * (x - y)).sum();
    let tr = |c: &[f64]| (0..d).map(|i| c[i * d + i]).sum::<f64>();
    Ok((mean_term + tr(&ca) + tr(&cb) - 2.0 * tr_cross).max(0.0))
}

/// Kernel distance (KID): the unbiased MMD² between `a` `[n_a, d]` and `b` `[n_b, d]` with
/// the kernel `k(x, y) = (x·y / d + 1)³`. Needs 2 rows each; ≈ 0 (and may be slightly
/// negative) for samples of one distribution.
pub fn kernel_distance(a: &[f32], b: &[f32], d: usize) -> Result<f64, AnalysisError> {
    let (na, nb) = (check_rows("first feature set", a, d, 2)?, check_rows("second feature set", b, d, 2)?);
    let k = |x: &[f32], y: &[f32]| {
        let dot: f64 = x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum();
        (dot / d as f64 + 1.0).powi(3)
    };
    let within = |x: &[f32], n: usize| {
        let mut s = 0.0;
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    s += k(&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d]);
                }
            }
        }
        s / (n * (n - 1)) as f64
    };
    let mut cross = 0.0;
    for i in 0..na {
        for j in 0..nb {
            cross += k(&a[i * d..(i + 1) * d], &b[j * d..(j + 1) * d]);
        }
    }
    Ok(within(a, na) + within(b, nb) - 2.0 * cross / (na * nb) as f64)
}

/// Morphology of the centre nucleus of one patch.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct NucleusFeatures {
    /// Pixels in the nucleus mask.
    pub area: f64,
    /// Pixel edges between the mask and its outside.
    pub perimeter: f64,
    /// `√(1 − λ₂/λ₁)` of the mask's second moments (0 for a disc, → 1 for a line).
    pub eccentricity: f64,
    /// Area over the area of the convex hull of the mask's pixel corners.
    pub solidity: f64,
    /// Mean intensity inside the mask.
    pub mean_intensity: f64,
    /// Standard deviation of the intensity inside the mask.
    pub std_intensity: f64,
    /// Mean gradient magnitude (forward differences, intensity per pixel) over the mask's
    /// pixels: sharp edges and grainy chromatin raise it, blur lowers it.
    pub gradient_mean: f64,
    /// GLCM contrast `Σ p(i, j) (i − j)²` of the mask: intensities quantised to
    /// [`GLCM_LEVELS`] levels, symmetric co-occurrence of horizontal and vertical neighbours that
    /// are both in the mask, normalised (0 for a flat nucleus).
    pub glcm_contrast: f64,
    /// GLCM homogeneity `Σ p(i, j) / (1 + |i − j|)` of the same matrix (1 for a flat nucleus).
    pub glcm_homogeneity: f64,
}

impl NucleusFeatures {
    /// The features in the order of [`NUCLEUS_FEATURES`].
    pub fn values(&self) -> [f64; 9] {
        [
            self.area,
            self.perimeter,
            self.eccentricity,
            self.solidity,
            self.mean_intensity,
            self.std_intensity,
            self.gradient_mean,
            self.glcm_contrast,
            self.glcm_homogeneity,
        ]
    }
}

/// Texture of `patch` `[side, side]` inside `mask`: mean gradient magnitude over the mask's
/// pixels, then GLCM contrast and homogeneity (see [`NucleusFeatures`]).
fn texture(patch: &[f32], mask: &[bool], side: usize) -> (f64, f64, f64) {
    let at = |r: usize, c: usize| patch[r * side + c] as f64;
    let (mut grad, mut n) = (0.0, 0usize);
    let level = |v: f32| ((v.clamp(0.0, 1.0) * GLCM_LEVELS as f32) as usize).min(GLCM_LEVELS - 1);
    let mut glcm = [[0f64; GLCM_LEVELS]; GLCM_LEVELS];
    for r in 0..side {
        for c in 0..side {
            if !mask[r * side + c] {
                continue;
            }
            let gx = at(r, (c + 1).min(side - 1)) - at(r, c);
            let gy = at((r + 1).min(side - 1), c) - at(r, c);
            grad += (gx * gx + gy * gy).sqrt();
            n += 1;
            let a = level(patch[r * side + c]);
            for (rr, cc) in [(r, c + 1), (r + 1, c)] {
                if rr < side && cc < side && mask[rr * side + cc] {
                    let b = level(patch[rr * side + cc]);
                    glcm[a][b] += 1.0;
                    glcm[b][a] += 1.0;
                }
            }
        }
    }
    let total: f64 = glcm.iter().flatten().sum();
    if total == 0.0 {
        return (grad / n.max(1) as f64, 0.0, 1.0);
    }
    let (mut contrast, mut homogeneity) = (0.0, 0.0);
    for (i, row) in glcm.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let d = i.abs_diff(j) as f64;
            contrast += v / total * d * d;
            homogeneity += v / total / (1.0 + d);
        }
    }
    (grad / n.max(1) as f64, contrast, homogeneity)
}

/// Otsu's threshold of values in `[0, 1]` (64 bins); `None` when all values share a bin.
fn otsu(values: &[f32]) -> Option<f32> {
    const BINS: usize = 64;
    let mut hist = [0f64; BINS];
    for &v in values {
        hist[((v.clamp(0.0, 1.0) * (BINS - 1) as f32).round()) as usize] += 1.0;
    }
    let total: f64 = hist.iter().sum();
    let sum_all: f64 = hist.iter().enumerate().map(|(i, h)| i as f64 * h).sum();
    let (mut w0, mut s0, mut best, mut thr) = (0.0, 0.0, -1.0, 0usize);
    for (i, h) in hist.iter().enumerate() {
        w0 += h;
        s0 += i as f64 * h;
        let w1 = total - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let (m0, m1) = (s0 / w0, (sum_all - s0) / w1);
        let between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if between > best {
            best = between;
            thr = i;
        }
    }
    (best >= 0.0).then(|| (thr as f32 + 0.5) / (BINS - 1) as f32)
}

/// Convex-hull area of points (Andrew's monotone chain + shoelace).
fn hull_area(mut pts: Vec<(i64, i64)>) -> f64 {
    pts.sort_unstable();
    pts.dedup();
    if pts.len() < 3 {
        return 0.0;
    }
    let cross = |o: (i64, i64), a: (i64, i64), b: (i64, i64)| (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0);
    let mut hull: Vec<(i64, i64)> = Vec::with_capacity(2 * pts.len());
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &(i64, i64)>> = if pass == 0 { Box::new(pts.iter()) } else { Box::new(pts.iter().rev()) };
        for &p in iter {
            while hull.len() >= start + 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0 {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    let n = hull.len();
    let twice: i64 = (0..n).map(|i| hull[i].0 * hull[(i + 1) % n].1 - hull[(i + 1) % n].0 * hull[i].1).sum();
    twice.abs() as f64 / 2.0
}

/// Morphology features of the centre nucleus of `patch` `[side, side]` (values in `[0, 1]`):
/// Otsu threshold, then the 4-connected foreground component holding the foreground pixel
/// nearest the centre; texture inside that mask. All zeros when nothing is above the threshold.
pub fn nucleus_features(patch: &[f32], side: usize) -> Result<NucleusFeatures, AnalysisError> {
    if patch.len() != side * side || side == 0 {
        return Err(AnalysisError::Shape { what: format!("patch [{side}, {side}]"), expected: side * side, found: patch.len() });
    }
    let Some(thr) = otsu(patch) else {
        return Ok(NucleusFeatures::default());
    };
    let fg: Vec<bool> = patch.iter().map(|&v| v > thr).collect();
    let c = (side as f64 - 1.0) / 2.0;
    let dist = |k: usize| ((k / side) as f64 - c).powi(2) + ((k % side) as f64 - c).powi(2);
    let Some(seed) = (0..side * side).filter(|&k| fg[k]).min_by(|&a, &b| dist(a).total_cmp(&dist(b))) else {
        return Ok(NucleusFeatures::default());
    };
    let mut mask = vec![false; side * side];
    let mut stack = vec![seed];
    mask[seed] = true;
    while let Some(k) = stack.pop() {
        let (r, col) = (k / side, k % side);
        let mut push = |rr: usize, cc: usize| {
            let q = rr * side + cc;
            if fg[q] && !mask[q] {
                mask[q] = true;
                stack.push(q);
            }
        };
        if r > 0 { push(r - 1, col) }
        if r + 1 < side { push(r + 1, col) }
        if col > 0 { push(r, col - 1) }
        if col + 1 < side { push(r, col + 1) }
    }
    let idx: Vec<usize> = (0..side * side).filter(|&k| mask[k]).collect();
    let area = idx.len() as f64;
    let inside = |r: isize, col: isize| r >= 0 && col >= 0 && (r as usize) < side && (col as usize) < side && mask[r as usize * side + col as usize];
    let mut perimeter = 0.0;
    let mut corners = Vec::with_capacity(idx.len() * 4);
    let (mut mr, mut mc) = (0.0, 0.0);
    for &k in &idx {
        let (r, col) = ((k / side) as isize, (k % side) as isize);
        for (dr, dc) in [(-1, 0), (1, 0), (0, -1), (0, 1)] {
            if !inside(r + dr, col + dc) {
                perimeter += 1.0;
            }
        }
        for (dr, dc) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            corners.push(((r + dr) as i64, (col + dc) as i64));
        }
        mr += r as f64 / area;
        mc += col as f64 / area;
    }
    let (mut srr, mut scc, mut src) = (0.0, 0.0, 0.0);
    for &k in &idx {
        let (dr, dc) = ((k / side) as f64 - mr, (k % side) as f64 - mc);
        srr += dr * dr / area;
        scc += dc * dc / area;
        src += dr * dc / area;
    }
    let half_tr = (srr + scc) / 2.0;
    let disc = (((srr - scc) / 2.0).powi(2) + src * src).sqrt();
    let (l1, l2) = (half_tr + disc, (half_tr - disc).max(0.0));
    let eccentricity = if l1 > 0.0 { (1.0 - l2 / l1).max(0.0).sqrt() } else { 0.0 };
    let hull = hull_area(corners);
    let solidity = if hull > 0.0 { area / hull } else { 0.0 };
    let mean = idx.iter().map(|&k| patch[k] as f64).sum::<f64>() / area;
    let var = idx.iter().map(|&k| (patch[k] as f64 - mean).powi(2)).sum::<f64>() / area;
    let (gradient_mean, glcm_contrast, glcm_homogeneity) = texture(patch, &mask, side);
    Ok(NucleusFeatures { area, perimeter, eccentricity, solidity, mean_intensity: mean, std_intensity: var.sqrt(), gradient_mean, glcm_contrast, glcm_homogeneity })
}
