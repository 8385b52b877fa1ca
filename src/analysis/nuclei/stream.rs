//! Whole-slide work on a level read window by window ([`NucleusImage`], e.g. a
//! [`TiffLevelImage`](super::TiffLevelImage)): the intensity histogram and the classifier
//! patches, so an image-only slide is detected, cut and classified without its level ever
//! being decoded whole. Both give exactly what the decoded-level code gives
//! ([`GrayImage16::percentiles`], [`model_patches`](crate::data::model_patches)).

use crate::analysis::error::AnalysisError;
use crate::data::image::{GrayImage16, ImageFrame, IntensityScale, DEFAULT_STRETCH_PERCENTILES};
use crate::data::{extract_patch_in, patch_reach_px, EdgePolicy, PixelWindow};
use crate::util::parallel::map_row_chunks;

use super::tiles::TileGrid;
use super::NucleusImage;

/// 16-bit intensity histogram (`[65536]`) of `image`, read `tile_px` square windows at a time,
/// a few windows in flight per worker.
pub fn level_histogram(image: &dyn NucleusImage, tile_px: usize) -> Result<Vec<u64>, AnalysisError> {
    level_histogram_progress(image, tile_px, &mut |_, _| {})
}

/// [`level_histogram`], calling `progress(tiles done, tiles)` after each batch of tiles.
pub fn level_histogram_progress(
    image: &dyn NucleusImage,
    tile_px: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<u64>, AnalysisError> {
    if tile_px < 16 {
        return Err(AnalysisError::param("tile_px", tile_px, "at least 16 pixels (512 is a good default)"));
    }
    let (width, height) = image.size();
    let cores = TileGrid { width, height, tile: tile_px, halo: 0 };
    let mut hist = vec![0u64; 1 << 16];
    // One 512 KiB histogram per tile in flight, never one per tile of the image.
    let batch = 4 * crate::util::parallel::worker_count().max(1);
    for start in (0..cores.n_tiles()).step_by(batch) {
        let end = (start + batch).min(cores.n_tiles());
        for part in cores.map_range(start..end, |tile| {
            vec![image.window([tile.x0 as usize, tile.y0 as usize, tile.core_w, tile.core_h]).map(|px| {
                let mut h = vec![0u64; 1 << 16];
                px.iter().for_each(|&p| h[usize::from(p)] += 1);
                h
            })]
        }) {
            hist.iter_mut().zip(part?).for_each(|(a, b)| *a += b);
        }
        progress(end, cores.n_tiles());
    }
    Ok(hist)
}

/// The global 0.5/99.5 percentile stretch of `image` ([`IntensityScale::global`]) from a
/// streamed histogram ([`level_histogram`]).
pub fn level_scale(image: &dyn NucleusImage, tile_px: usize) -> Result<IntensityScale, AnalysisError> {
    Ok(histogram_scale(&level_histogram(image, tile_px)?))
}

/// The global 0.5/99.5 percentile stretch from a level's histogram ([`level_histogram`]).
pub fn histogram_scale(hist: &[u64]) -> IntensityScale {
    let [lo, hi] = DEFAULT_STRETCH_PERCENTILES;
    IntensityScale::from_histogram(hist, lo, hi)
}

/// [`model_patches`](crate::data::model_patches) on a level read window by window: centres
/// are grouped by the `tile_px` tile their pixel falls in, and each group's patches are cut
/// from one window covering their footprints (the tile plus [`patch_reach_px`] around it), so
/// working memory is one window per worker plus the output. `scale` is the whole level's
/// stretch ([`level_scale`]). Output `[centres, size_px, size_px]`, in the order of
/// `centres_um`, identical to `model_patches` on the decoded level.
pub fn model_patches_in(
    image: &dyn NucleusImage,
    frame: &ImageFrame,
    centres_um: &[[f32; 2]],
    size_px: usize,
    out_um_per_px: f32,
    scale: &IntensityScale,
    tile_px: usize,
) -> Result<Vec<f32>, AnalysisError> {
    if size_px == 0 {
        return Err(AnalysisError::param("patch_size", size_px, "a positive patch side in pixels"));
    }
    if !(out_um_per_px.is_finite() && out_um_per_px > 0.0) {
        return Err(AnalysisError::param("patch_um_per_px", out_um_per_px, "a positive, finite patch pixel size in µm"));
    }
    if !(frame.um_per_px.is_finite() && frame.um_per_px > 0.0) {
        return Err(AnalysisError::param("um_per_px", frame.um_per_px, "a positive, finite pixel size in µm"));
    }
    if tile_px < 16 {
        return Err(AnalysisError::param("tile_px", tile_px, "at least 16 pixels (512 is a good default)"));
    }
    let (width, height) = image.size();
    let per = size_px * size_px;
    let reach = patch_reach_px(frame.um_per_px, size_px, out_um_per_px) as isize;
    let tiles_x = width.div_ceil(tile_px).max(1);
    let tiles_y = height.div_ceil(tile_px).max(1);
    // (tile, centre index, pixel position) of every finite centre, grouped by tile.
    let mut placed: Vec<(usize, usize, [f32; 2])> = centres_um
        .iter()
        .enumerate()
        .filter(|(_, c)| c.iter().all(|v| v.is_finite()))
        .map(|(i, &c)| {
            let px = frame.um_to_px(c);
            let tx = ((px[0] / tile_px as f32).floor().max(0.0) as usize).min(tiles_x - 1);
            let ty = ((px[1] / tile_px as f32).floor().max(0.0) as usize).min(tiles_y - 1);
            (ty * tiles_x + tx, i, px)
        })
        .collect();
    placed.sort_by_key(|&(t, i, _)| (t, i));
    let mut groups: Vec<&[(usize, usize, [f32; 2])]> = Vec::new();
    let mut rest = placed.as_slice();
    while let Some(&(t, _, _)) = rest.first() {
        let n = rest.iter().take_while(|p| p.0 == t).count();
        groups.push(&rest[..n]);
        rest = &rest[n..];
    }
    let empty = GrayImage16 { width: 0, height: 0, pixels: Vec::new() };
    let cut = |group: &[(usize, usize, [f32; 2])]| -> Result<Vec<(usize, Vec<f32>)>, AnalysisError> {
        // The group's footprints, clipped to the image: [x0, x1) × [y0, y1).
        let (mut x0, mut y0, mut x1, mut y1) = (isize::MAX, isize::MAX, isize::MIN, isize::MIN);
        for &(_, _, px) in group {
            let (c, r) = (px[0].floor() as isize, px[1].floor() as isize);
            x0 = x0.min(c - reach);
            y0 = y0.min(r - reach);
            x1 = x1.max(c + reach + 2);
            y1 = y1.max(r + reach + 2);
        }
        let clip = |v: isize, len: usize| v.clamp(0, len as isize) as usize;
        let (x0, x1, y0, y1) = (clip(x0, width), clip(x1, width), clip(y0, height), clip(y1, height));
        let read;
        let window = if x1 > x0 && y1 > y0 {
            read = GrayImage16 { width: x1 - x0, height: y1 - y0, pixels: image.window([x0, y0, x1 - x0, y1 - y0])? };
            PixelWindow { pixels: &read, x0, y0, full_width: width, full_height: height }
        } else {
            // The footprints miss the image: every sample reads as 0.
            PixelWindow { pixels: &empty, x0: 0, y0: 0, full_width: width, full_height: height }
        };
        Ok(group
            .iter()
            .map(|&(_, i, _)| {
                let patch = extract_patch_in(window, frame, centres_um[i], size_px, out_um_per_px, EdgePolicy::Pad, scale);
                (i, patch.map_or_else(|| vec![0.0; per], |p| p.pixels))
            })
            .collect())
    };
    let mut out = vec![0.0f32; centres_um.len() * per];
    // A few groups per worker at a time: the patches of one batch, not of the slide, in flight.
    let batch = 4 * crate::util::parallel::worker_count().max(1);
    for chunk in groups.chunks(batch) {
        for part in map_row_chunks(chunk.len(), 2, |range| vec![range.map(|g| cut(chunk[g])).collect::<Result<Vec<_>, _>>()]) {
            for (i, pixels) in part?.into_iter().flatten() {
                out[i * per..(i + 1) * per].copy_from_slice(&pixels);
            }
        }
    }
    Ok(out)
}
