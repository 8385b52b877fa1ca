//! Nucleus centroids from a DAPI image: scale-normalised Laplacian-of-Gaussian (LoG) maxima.
//!
//! 1. σ from the expected nucleus diameter `d`: a disk of radius `r = d/2` gives the strongest
//!    scale-normalised LoG response at `σ = r/√2`; in pixels `σ = d / (2√2 · µm/px)`.
//! 2. Gaussian smoothing `G = g_σ * I` (separable, kernel radius `⌈3σ⌉`, edge pixels
//!    replicated), then `L = -σ²·∇²G` (5-point Laplacian): bright blobs give positive peaks.
//! 3. Threshold: Otsu `t` on the image's intensity histogram (foreground vs background, with
//!    background mean `b`), times [`NucleusOptions::threshold_scale`], carried to the smoothed
//!    image as a disk of that intensity would be, `b + (1 - e⁻¹)(t - b)`; a peak is kept only
//!    where `G ≥` that and `L > 0`.
//! 4. Non-maximum suppression: a peak is kept when it beats every pixel of `L` within
//!    [`NucleusOptions::min_distance_um`] (ties broken by raster index, so plateaus give one
//!    peak), then refined to sub-pixel by a parabola through its neighbours on each axis.
//!
//! The image is processed in square tiles with a halo of `⌈3σ⌉ + 1 + ⌈min distance⌉ + 1`
//! pixels, so every value a tile's decision reads is computed exactly as on the whole image:
//! the output does not depend on the tile size (tested).

use crate::analysis::error::AnalysisError;
use crate::data::image::GrayImage16;
use crate::data::{PyramidTiff, TiffSource};
use super::tiles::{Tile, TileGrid};

/// Default expected nucleus diameter in µm (breast tissue nuclei are about 6-10 µm).
pub const DEFAULT_NUCLEUS_DIAMETER_UM: f32 = 8.0;

/// Options of [`detect_nuclei`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NucleusOptions {
    /// Expected nucleus diameter in µm; sets the LoG scale.
    pub diameter_um: f32,
    /// Minimum distance between two detected nuclei in µm (the suppression radius); `None`
    /// means half the diameter.
    pub min_distance_um: Option<f32>,
    /// Multiplies the Otsu intensity threshold (lower finds dimmer nuclei).
    pub threshold_scale: f32,
    /// Side of the square tiles in pixels (memory, not results).
    pub tile_px: usize,
}

impl Default for NucleusOptions {
    fn default() -> Self {
        NucleusOptions {
            diameter_um: DEFAULT_NUCLEUS_DIAMETER_UM,
            min_distance_um: None,
            threshold_scale: 1.0,
            tile_px: 512,
        }
    }
}

/// One detected nucleus.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Nucleus {
    /// Centroid `[col, row]` in continuous pixel coordinates (pixel centres at integers).
    pub px: [f32; 2],
    /// Scale-normalised LoG response at the peak (blob contrast in intensity units).
    pub response: f32,
    /// Smoothed intensity at the peak.
    pub intensity: f32,
}

/// What [`detect_nuclei`] found and the parameters it derived.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NucleusDetection {
    /// Nuclei in raster order of their peak pixel.
    pub nuclei: Vec<Nucleus>,
    /// LoG scale in pixels.
    pub sigma_px: f32,
    /// Suppression radius in pixels.
    pub min_distance_px: f32,
    /// Intensity threshold applied to the smoothed image (from Otsu × `threshold_scale`).
    pub threshold: f32,
    /// Halo around each tile, pixels.
    pub halo_px: usize,
    /// Tiles processed.
    pub n_tiles: usize,
    /// Working memory of one tile (three `f32` buffers), bytes.
    pub tile_bytes: usize,
}

impl NucleusDetection {
    /// Centroids `[col, row]` in pixels, `[nuclei, 2]`.
    pub fn centroids_px(&self) -> Vec<[f32; 2]> {
        self.nuclei.iter().map(|n| n.px).collect()
    }
}

/// Otsu's threshold of a 16-bit image: the intensity `t` that maximises the between-class
/// variance of the histogram (pixels `> t` are foreground), and the background class mean.
/// `(0, 0)` for an empty or flat image.
pub fn otsu_threshold(image: &GrayImage16) -> (f32, f32) {
    let mut hist = vec![0u64; 1 << 16];
    for &p in &image.pixels {
        hist[usize::from(p)] += 1;
    }
    otsu_from_histogram(&hist)
}

/// Otsu's threshold and background mean (as [`otsu_threshold`]) from a 65,536-bin histogram.
fn otsu_from_histogram(hist: &[u64]) -> (f32, f32) {
    let total: f64 = hist.iter().map(|&c| c as f64).sum();
    if total == 0.0 {
        return (0.0, 0.0);
    }
    let sum_all: f64 = hist.iter().enumerate().map(|(v, &c)| v as f64 * c as f64).sum();
    let (mut w0, mut sum0) = (0.0f64, 0.0f64);
    let (mut best, mut best_t, mut best_m0) = (-1.0f64, 0usize, 0.0f64);
    for (t, &c) in hist.iter().enumerate() {
        w0 += c as f64;
        sum0 += t as f64 * c as f64;
        let w1 = total - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let m0 = sum0 / w0;
        let m1 = (sum_all - sum0) / w1;
        let between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if between > best {
            best = between;
            best_t = t;
            best_m0 = m0;
        }
    }
    (best_t as f32, best_m0 as f32)
}

/// A grayscale image that detection reads window by window: a decoded [`GrayImage16`], or a
/// TIFF level ([`TiffLevelImage`]) whose strips/tiles are decoded per window, so a whole-slide
/// level is never held whole.
pub trait NucleusImage: Sync {
    /// `(width, height)` in pixels.
    fn size(&self) -> (usize, usize);
    /// Pixels of the window `[x0, y0, width, height]` (inside the image), `[height, width]`
    /// row-major.
    fn window(&self, window: [usize; 4]) -> Result<Vec<u16>, AnalysisError>;
}

impl NucleusImage for GrayImage16 {
    fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }
    fn window(&self, [x0, y0, w, h]: [usize; 4]) -> Result<Vec<u16>, AnalysisError> {
        let mut out = Vec::with_capacity(w * h);
        for r in y0..y0 + h {
            out.extend_from_slice(&self.pixels[r * self.width + x0..][..w]);
        }
        Ok(out)
    }
}

/// One level of one plane of a (OME-)TIFF as a [`NucleusImage`]: each window decodes only the
/// strips or tiles it touches ([`PyramidTiff::read_gray_window`]).
pub struct TiffLevelImage<'a, S: TiffSource> {
    tiff: &'a PyramidTiff<S>,
    plane: usize,
    level: usize,
    size: (usize, usize),
}

impl<'a, S: TiffSource> TiffLevelImage<'a, S> {
    /// Level `level` of plane `plane`; fails naming the plane/level when absent.
    pub fn new(tiff: &'a PyramidTiff<S>, plane: usize, level: usize) -> Result<Self, AnalysisError> {
        let levels = tiff.levels();
        let l = levels.get(level).ok_or_else(|| {
            AnalysisError::param("level", level, format!("a level of {} (it has {})", tiff.path().display(), levels.len()))
        })?;
        if plane >= tiff.n_planes() {
            return Err(AnalysisError::param("plane", plane, format!("a plane of {} (it has {})", tiff.path().display(), tiff.n_planes())));
        }
        Ok(TiffLevelImage { tiff, plane, level, size: (l.width, l.height) })
    }
}

impl<S: TiffSource + Sync> NucleusImage for TiffLevelImage<'_, S> {
    fn size(&self) -> (usize, usize) {
        self.size
    }
    fn window(&self, window: [usize; 4]) -> Result<Vec<u16>, AnalysisError> {
        Ok(self.tiff.read_gray_window(self.plane, self.level, window)?.0.pixels)
    }
}

/// Finds nucleus centroids in a DAPI image with pixels of `um_per_px` µm (see the module
/// documentation for the method).
///
/// Fails with [`AnalysisError::Empty`] for an empty image and with
/// [`AnalysisError::InvalidParameter`] naming the option for a pixel size, diameter,
/// distance, threshold scale or tile size that is not positive and finite, or a nucleus
/// scale under one pixel (read a finer pyramid level).
pub fn detect_nuclei(
    image: &GrayImage16,
    um_per_px: f32,
    opts: &NucleusOptions,
) -> Result<NucleusDetection, AnalysisError> {
    detect_nuclei_in(image, um_per_px, opts)
}

/// [`detect_nuclei`] on any [`NucleusImage`], reading it one tile (plus halo) at a time: a
/// first pass over the tiles builds the intensity histogram (Otsu), a second detects. With a
/// [`TiffLevelImage`] the level is never decoded whole: working memory is, per worker, one
/// tile's window as `u16`, the strips/tiles of the file it touches, and the f32 buffers of
/// [`NucleusDetection::tile_bytes`]; plus the nuclei found. Identical output to
/// [`detect_nuclei`] on the decoded level.
pub fn detect_nuclei_in(
    image: &dyn NucleusImage,
    um_per_px: f32,
    opts: &NucleusOptions,
) -> Result<NucleusDetection, AnalysisError> {
    detect_nuclei_progress(image, um_per_px, opts, &mut |_, _, _| {})
}

/// [`detect_nuclei_in`], calling `progress(phase, tiles done, tiles)` on the calling thread
/// after each batch of tiles: phase `"histogram"` (the Otsu pass), then `"detect"`. For whole
/// slides, where detection takes minutes.
pub fn detect_nuclei_progress(
    image: &dyn NucleusImage,
    um_per_px: f32,
    opts: &NucleusOptions,
    progress: &mut dyn FnMut(&'static str, usize, usize),
) -> Result<NucleusDetection, AnalysisError> {
    detect_nuclei_with_histogram(image, um_per_px, opts, None, progress)
}

/// [`detect_nuclei_progress`] with the image's intensity histogram already counted
/// ([`level_histogram`](super::level_histogram) with the same `tile_px`; `None`: counted
/// here), so a caller that also needs it (the patch stretch) reads the level once less.
pub fn detect_nuclei_with_histogram(
    image: &dyn NucleusImage,
    um_per_px: f32,
    opts: &NucleusOptions,
    histogram: Option<&[u64]>,
    progress: &mut dyn FnMut(&'static str, usize, usize),
) -> Result<NucleusDetection, AnalysisError> {
    let (width, height) = image.size();
    let positive = |name: &'static str, v: f32, what: &str| {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(AnalysisError::param(name, v, format!("a positive, finite {what}")))
        }
    };
    positive("um_per_px", um_per_px, "pixel size in µm (Xenium: 0.2125)")?;
    positive("diameter_um", opts.diameter_um, "nucleus diameter in µm (e.g. 8)")?;
    positive("threshold_scale", opts.threshold_scale, "factor on the Otsu threshold (1 = Otsu)")?;
    let min_distance_um = opts.min_distance_um.unwrap_or(opts.diameter_um / 2.0);
    positive("min_distance_um", min_distance_um, "suppression distance in µm")?;
    if opts.tile_px < 16 {
        return Err(AnalysisError::param("tile_px", opts.tile_px, "at least 16 pixels (512 is a good default)"));
    }
    if width == 0 || height == 0 {
        return Err(AnalysisError::Empty {
            what: format!("DAPI image [{height}, {width}]"),
        });
    }
    let sigma = opts.diameter_um / (2.0 * std::f32::consts::SQRT_2 * um_per_px);
    if sigma < 1.0 {
        return Err(AnalysisError::param(
            "diameter_um",
            format!("{} (σ = {sigma:.2} px at {um_per_px} µm/px)", opts.diameter_um),
            "a nucleus scale of at least 1 pixel: read a finer pyramid level or check the pixel size",
        ));
    }
    let min_distance_px = min_distance_um / um_per_px;
    let kernel = gaussian_kernel(sigma);
    let radius = kernel.len() / 2;
    let nms = min_distance_px.ceil() as usize;
    let halo = radius + 1 + nms + 1;
    // A disk of radius r = σ√2 at intensity n on background b smooths to b + (1 - e⁻¹)(n - b)
    // at its centre: the raw Otsu threshold, carried to the smoothed image the same way.
    let counted;
    let hist = match histogram {
        Some(h) if h.len() == 1 << 16 => h,
        Some(h) => return Err(AnalysisError::param("histogram", h.len(), "65,536 bins (a 16-bit histogram from level_histogram)")),
        None => {
            counted = super::stream::level_histogram_progress(image, opts.tile_px, &mut |done, total| progress("histogram", done, total))?;
            &counted
        }
    };
    let (otsu, background) = otsu_from_histogram(hist);
    let threshold = background + (1.0 - (-1.0f64).exp()) as f32 * (otsu * opts.threshold_scale - background);
    let grid = TileGrid { width, height, tile: opts.tile_px, halo };
    let side = grid.region_side();
    let ctx = TileContext {
        image,
        kernel: &kernel,
        sigma,
        threshold,
        nms_r2: min_distance_px * min_distance_px,
        nms,
    };
    let mut nuclei = Vec::new();
    let batch = 16 * crate::util::parallel::worker_count().max(1);
    for start in (0..grid.n_tiles()).step_by(batch) {
        let end = (start + batch).min(grid.n_tiles());
        for found in grid.map_range(start..end, |tile| vec![ctx.run(tile)]) {
            nuclei.extend(found?);
        }
        progress("detect", end, grid.n_tiles());
    }
    nuclei.sort_by_key(|&(idx, _)| idx);
    Ok(NucleusDetection {
        nuclei: nuclei.into_iter().map(|(_, n)| n).collect(),
        sigma_px: sigma,
        min_distance_px,
        threshold,
        halo_px: halo,
        n_tiles: grid.n_tiles(),
        tile_bytes: 3 * side * side * std::mem::size_of::<f32>(),
    })
}

/// Normalised Gaussian taps, radius `⌈3σ⌉`. Computed in f64 and rounded once to f32, so the
/// taps are the same on every platform (an f32 `exp` may differ by an ulp between libms, and
/// the Laplacian's cancellation magnifies that into visible sub-pixel shifts).
pub(crate) fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil() as isize;
    let s2 = 2.0 * f64::from(sigma) * f64::from(sigma);
    let k: Vec<f64> = (-r..=r).map(|i| (-((i * i) as f64) / s2).exp()).collect();
    let sum: f64 = k.iter().sum();
    k.iter().map(|v| (v / sum) as f32).collect()
}

struct TileContext<'a> {
    image: &'a dyn NucleusImage,
    kernel: &'a [f32],
    sigma: f32,
    threshold: f32,
    nms_r2: f32,
    nms: usize,
}

impl TileContext<'_> {
    /// Nuclei whose peak lies in the core of `tile`, with their global raster index.
    fn run(&self, tile: &Tile) -> Result<Vec<(usize, Nucleus)>, AnalysisError> {
        let (w, h) = self.image.size();
        let (w, h) = (w as isize, h as isize);
        let (rw, rh) = (tile.rw, tile.rh);
        let (g, tmp) = tile.gaussian(tile.read(self.image)?, self.kernel);
        // L = -σ² ∇² G on the region minus its outer ring.
        let s2 = self.sigma * self.sigma;
        let mut lap = tmp; // reuse
        lap.iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
        for r in 1..rh - 1 {
            for c in 1..rw - 1 {
                let i = r * rw + c;
                let sum = g[i - 1] + g[i + 1] + g[i - rw] + g[i + rw] - 4.0 * g[i];
                lap[i] = -s2 * sum;
            }
        }
        let index = |gy: isize, gx: isize| (gy * w + gx) as usize;
        // p beats q when its response is larger, or equal with a smaller raster index.
        let beats = |lp: f32, ip: usize, lq: f32, iq: usize| lp > lq || (lp == lq && ip < iq);
        let nms = self.nms as isize;
        let mut found = Vec::new();
        for r in tile.halo..tile.halo + tile.core_h {
            for c in tile.halo..tile.halo + tile.core_w {
                let i = r * rw + c;
                let l = lap[i];
                if !(l > 0.0) || g[i] < self.threshold {
                    continue;
                }
                let (gy, gx) = tile.global(r, c);
                let ip = index(gy, gx);
                let mut keep = true;
                // 3×3 first (cheap), then the whole disk.
                'outer: for pass in 0..2 {
                    let reach = if pass == 0 { 1 } else { nms };
                    for dy in -reach..=reach {
                        for dx in -reach..=reach {
                            if (dx == 0 && dy == 0) || (pass == 1 && (dx * dx + dy * dy) as f32 > self.nms_r2) {
                                continue;
                            }
                            let (qy, qx) = (gy + dy, gx + dx);
                            if qy < 0 || qx < 0 || qy >= h || qx >= w {
                                continue;
                            }
                            let j = (r as isize + dy) as usize * rw + (c as isize + dx) as usize;
                            if !beats(l, ip, lap[j], index(qy, qx)) {
                                keep = false;
                                break 'outer;
                            }
                        }
                    }
                }
                if !keep {
                    continue;
                }
                // Sub-pixel peak: parabola through the neighbours on each axis (those at the
                // image edge replicate, giving a zero offset there).
                let offset = |lm: f32, lc: f32, lp: f32| -> f32 {
                    let den = lm - 2.0 * lc + lp;
                    if den < 0.0 {
                        (0.5 * (lm - lp) / den).clamp(-0.5, 0.5)
                    } else {
                        0.0
                    }
                };
                let ox = if gx > 0 && gx < w - 1 { offset(lap[i - 1], l, lap[i + 1]) } else { 0.0 };
                let oy = if gy > 0 && gy < h - 1 { offset(lap[i - rw], l, lap[i + rw]) } else { 0.0 };
                found.push((
                    ip,
                    Nucleus {
                        px: [gx as f32 + ox, gy as f32 + oy],
                        response: l,
                        intensity: g[i],
                    },
                ));
            }
        }
        Ok(found)
    }
}
