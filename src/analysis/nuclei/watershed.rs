//! Marker-controlled watershed from the detected peaks: nucleus masks and areas.
//!
//! The image is smoothed with a Gaussian of σ/2 (σ the detection's LoG scale, at least 1 px);
//! each detected nucleus seeds a label at its peak pixel, and labels grow by priority flooding
//! (brightest unlabelled neighbour first, 4-connected), so two touching nuclei meet at the
//! dimmest line between them. A pixel joins only if its smoothed intensity is at least half way
//! from the image background (the mean below the Otsu threshold) to its seed's peak (a
//! half-maximum contour per nucleus) and it lies within one diameter of its seed.
//!
//! **Memory.** Whole-image buffers: the smoothed image (f32, 4 B/px), a scratch row pass
//! (4 B/px) and the labels (u32, 4 B/px) — 12 B/px, e.g. 52 MB for the 2400×1800 crop; read a
//! coarser pyramid level for whole slides.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::detect::{gaussian_kernel, otsu_threshold, NucleusDetection};
use super::tiles::TileGrid;
use crate::analysis::error::AnalysisError;
use crate::data::image::GrayImage16;

/// Nucleus masks from [`watershed_nuclei`].
#[derive(Debug, Clone, PartialEq)]
pub struct NucleusMasks {
    /// Columns of `labels`.
    pub width: usize,
    /// Rows of `labels`.
    pub height: usize,
    /// `[height, width]` row-major: 0 background, `i + 1` nucleus `i` of the detection.
    pub labels: Vec<u32>,
    /// `[nuclei]` mask area in pixels (at least 1: the seed).
    pub area_px: Vec<u32>,
    /// `[nuclei]` mask centroid `[col, row]` in pixels.
    pub centroid_px: Vec<[f32; 2]>,
}

impl NucleusMasks {
    /// `[nuclei]` mask areas in µm² for pixels of `um_per_px`.
    pub fn area_um2(&self, um_per_px: f32) -> Vec<f32> {
        self.area_px.iter().map(|&a| a as f32 * um_per_px * um_per_px).collect()
    }
}

/// Separable Gaussian with taps clamped at the image edges, `[height, width]` f32, computed
/// in `tile_px` tiles by the detection's tile loop (identical to a whole-image pass).
fn smooth(image: &GrayImage16, sigma: f32, tile_px: usize) -> Result<Vec<f32>, AnalysisError> {
    let k = gaussian_kernel(sigma);
    let grid = TileGrid { width: image.width, height: image.height, tile: tile_px.max(16), halo: k.len() / 2 };
    let w = image.width;
    let cores = grid.map(|tile| vec![tile.read(image).map(|raw| (*tile, tile.gaussian(raw, &k).0))]);
    let mut out = vec![0f32; w * image.height];
    for core in cores {
        let (tile, g) = core?;
        for r in 0..tile.core_h {
            let (gy, gx) = tile.global(r + tile.halo, tile.halo);
            let src = &g[(r + tile.halo) * tile.rw + tile.halo..][..tile.core_w];
            out[gy as usize * w + gx as usize..][..tile.core_w].copy_from_slice(src);
        }
    }
    Ok(out)
}

/// Grows one mask per detected nucleus by marker-controlled watershed (see the module
/// documentation). `detection` must come from `image` at `um_per_px` with nucleus diameter
/// `diameter_um` (the [`NucleusOptions`](super::NucleusOptions) used).
pub fn watershed_nuclei(
    image: &GrayImage16,
    detection: &NucleusDetection,
    um_per_px: f32,
    diameter_um: f32,
) -> Result<NucleusMasks, AnalysisError> {
    if !(um_per_px.is_finite() && um_per_px > 0.0) {
        return Err(AnalysisError::param("um_per_px", um_per_px, "a positive, finite pixel size in µm"));
    }
    if !(diameter_um.is_finite() && diameter_um > 0.0) {
        return Err(AnalysisError::param("diameter_um", diameter_um, "a positive, finite nucleus diameter in µm"));
    }
    let (w, h) = (image.width, image.height);
    let n = detection.nuclei.len();
    if n >= u32::MAX as usize {
        return Err(AnalysisError::param("nuclei", n, "fewer than 2^32 - 1 nuclei per image"));
    }
    let mut labels = vec![0u32; w * h];
    let mut area_px = vec![0u32; n];
    let mut sums = vec![[0f64; 2]; n];
    if w == 0 || h == 0 || n == 0 {
        return Ok(NucleusMasks { width: w, height: h, labels, area_px, centroid_px: vec![[0.0; 2]; n] });
    }
    let g = smooth(image, (detection.sigma_px / 2.0).max(1.0), 512)?;
    let max_r2 = (diameter_um / um_per_px).powi(2);
    let (_, background) = otsu_threshold(image);
    let seeds: Vec<[usize; 2]> = detection
        .nuclei
        .iter()
        .map(|nu| {
            let c = (nu.px[0].round().max(0.0) as usize).min(w - 1);
            let r = (nu.px[1].round().max(0.0) as usize).min(h - 1);
            [c, r]
        })
        .collect();
    // Heap of (darkness, insertion order, pixel): brightest first, ties by insertion order.
    let key = |v: f32| u32::MAX - v.max(0.0).to_bits();
    let mut heap = BinaryHeap::new();
    let mut seq = 0u64;
    let level: Vec<f32> = seeds.iter().map(|&[c, r]| background + 0.5 * (g[r * w + c] - background)).collect();
    for (i, &[c, r]) in seeds.iter().enumerate() {
        let p = r * w + c;
        if labels[p] == 0 {
            labels[p] = i as u32 + 1;
            heap.push(Reverse((key(g[p]), seq, p)));
            seq += 1;
        }
    }
    while let Some(Reverse((_, _, p))) = heap.pop() {
        let label = labels[p];
        let [sc, sr] = seeds[label as usize - 1];
        let (c, r) = (p % w, p / w);
        let neighbours = [
            (c > 0).then(|| p - 1),
            (c + 1 < w).then(|| p + 1),
            (r > 0).then(|| p - w),
            (r + 1 < h).then(|| p + w),
        ];
        for q in neighbours.into_iter().flatten() {
            if labels[q] != 0 || g[q] < level[label as usize - 1] {
                continue;
            }
            let (dc, dr) = ((q % w) as f32 - sc as f32, (q / w) as f32 - sr as f32);
            if dc * dc + dr * dr > max_r2 {
                continue;
            }
            labels[q] = label;
            heap.push(Reverse((key(g[q]), seq, q)));
            seq += 1;
        }
    }
    for (p, &l) in labels.iter().enumerate() {
        if l != 0 {
            let i = l as usize - 1;
            area_px[i] += 1;
            sums[i][0] += (p % w) as f64;
            sums[i][1] += (p / w) as f64;
        }
    }
    let centroid_px = sums
        .iter()
        .zip(&area_px)
        .zip(&detection.nuclei)
        .map(|((s, &a), nu)| if a == 0 { nu.px } else { [(s[0] / a as f64) as f32, (s[1] / a as f64) as f32] })
        .collect();
    Ok(NucleusMasks { width: w, height: h, labels, area_px, centroid_px })
}
