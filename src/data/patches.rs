//! Fixed-size image patches around cells, resampled to a chosen pixel size.

use super::image::{GrayImage16, ImageFrame, IntensityScale};

/// What to do when a patch reaches past the image border.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EdgePolicy {
    /// Read pixels outside the image as 0 and mark the patch `padded`.
    Pad,
    /// Return no patch.
    Drop,
}

/// A square patch of stretched intensities.
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    /// Intensities in `[0, 1]`, shape `[size, size]`, row-major (rows follow slide `y`).
    pub pixels: Vec<f32>,
    /// Side length in pixels.
    pub size: usize,
    /// Whether part of the patch lies outside the image (read as 0).
    pub padded: bool,
}

/// Most sub-samples per output pixel and axis used against aliasing.
pub const MAX_SUBSAMPLES: usize = 16;

/// Extracts a `size_px × size_px` patch centred on `centre_um` with output pixels of
/// `out_um_per_px` µm, stretched with the image's global 0.5/99.5 percentiles
/// ([`IntensityScale::global`]).
///
/// This recomputes the global stretch (one pass over the image) on every call; for many
/// patches compute it once and call [`extract_patch_scaled`].
pub fn extract_patch(
    image: &GrayImage16,
    frame: &ImageFrame,
    centre_um: [f32; 2],
    size_px: usize,
    out_um_per_px: f32,
    edge: EdgePolicy,
) -> Option<Patch> {
    let scale = IntensityScale::global(image);
    extract_patch_scaled(
        image,
        frame,
        centre_um,
        size_px,
        out_um_per_px,
        edge,
        &scale,
    )
}

/// Extracts a `size_px × size_px` patch centred on `centre_um` with output pixels of
/// `out_um_per_px` µm, each neighbour intensity mapped through `scale` before interpolation.
///
/// Resampling is bilinear; when output pixels are larger than image pixels, each output
/// pixel averages a `k × k` grid of bilinear samples over its footprint, with
/// `k = ceil(out_um_per_px / frame.um_per_px)` (at most [`MAX_SUBSAMPLES`]), against aliasing.
/// The patch is never moved to fit the image: if any sample falls outside the image,
/// [`EdgePolicy::Drop`] returns `None` and [`EdgePolicy::Pad`] reads the missing pixels as 0
/// and sets `padded`.
///
/// Also returns `None` for invalid geometry: `size_px == 0`, a non-positive or non-finite
/// pixel size, or a non-finite centre.
pub fn extract_patch_scaled(
    image: &GrayImage16,
    frame: &ImageFrame,
    centre_um: [f32; 2],
    size_px: usize,
    out_um_per_px: f32,
    edge: EdgePolicy,
    scale: &IntensityScale,
) -> Option<Patch> {
    let valid = size_px > 0
        && out_um_per_px.is_finite()
        && out_um_per_px > 0.0
        && frame.um_per_px.is_finite()
        && frame.um_per_px > 0.0
        && centre_um.iter().all(|v| v.is_finite());
    if !valid {
        return None;
    }
    // Offsets (µm, from the patch centre) of the sub-samples along one axis, in order.
    let ratio = out_um_per_px / frame.um_per_px;
    let n_sub = (ratio - 1e-3).ceil().clamp(1.0, MAX_SUBSAMPLES as f32) as usize;
    let half = size_px as f32 / 2.0;
    let offsets: Vec<f32> = (0..size_px)
        .flat_map(|i| {
            (0..n_sub).map(move |s| {
                let within = (s as f32 + 0.5) / n_sub as f32 - 0.5;
                (i as f32 + 0.5 + within - half) * out_um_per_px
            })
        })
        .collect();
    let cols: Vec<f32> = offsets
        .iter()
        .map(|d| frame.um_to_px([centre_um[0] + d, 0.0])[0])
        .collect();
    let rows: Vec<f32> = offsets
        .iter()
        .map(|d| frame.um_to_px([0.0, centre_um[1] + d])[1])
        .collect();

    const EPS: f32 = 1e-3;
    let inside = |v: &[f32], len: usize| {
        let (first, last) = (v[0], v[v.len() - 1]);
        first >= -EPS && last <= len as f32 - 1.0 + EPS
    };
    let padded = !(inside(&cols, image.width) && inside(&rows, image.height));
    if padded && edge == EdgePolicy::Drop {
        return None;
    }

    let norm = 1.0 / (n_sub * n_sub) as f32;
    let mut pixels = Vec::with_capacity(size_px * size_px);
    for row_block in rows.chunks_exact(n_sub) {
        for col_block in cols.chunks_exact(n_sub) {
            let mut acc = 0.0;
            for &r in row_block {
                for &c in col_block {
                    acc += bilinear(image, scale, c, r);
                }
            }
            pixels.push(acc * norm);
        }
    }
    Some(Patch {
        pixels,
        size: size_px,
        padded,
    })
}

/// Bilinear interpolation of the stretched image at continuous `[col, row]`, pixels outside
/// the image reading as 0.
fn bilinear(image: &GrayImage16, scale: &IntensityScale, col: f32, row: f32) -> f32 {
    let (c0, r0) = (col.floor(), row.floor());
    let (fx, fy) = (col - c0, row - r0);
    let (c, r) = (c0 as isize, r0 as isize);
    let at = |dc: isize, dr: isize| {
        image
            .get(c + dc, r + dr)
            .map_or(0.0, |p| scale.apply(f32::from(p)))
    };
    let top = at(0, 0) * (1.0 - fx) + at(1, 0) * fx;
    let bottom = at(0, 1) * (1.0 - fx) + at(1, 1) * fx;
    top * (1.0 - fy) + bottom * fy
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 8×6 image whose value is `10 * col + row`.
    fn ramp() -> (GrayImage16, ImageFrame, IntensityScale) {
        let (w, h) = (8, 6);
        let pixels = (0..h)
            .flat_map(|r| (0..w).map(move |c| (10 * c + r) as u16))
            .collect();
        let image = GrayImage16::new(w, h, pixels).unwrap();
        (
            image,
            ImageFrame {
                origin_um: [0.0, 0.0],
                um_per_px: 1.0,
            },
            IntensityScale { lo: 0.0, hi: 100.0 },
        )
    }

    #[test]
    fn identity_sampling_reproduces_pixels() {
        let (img, frame, scale) = ramp();
        // Size 2 centred between pixels (3..5, 2..4): the samples fall on pixel centres.
        let p = extract_patch_scaled(&img, &frame, [3.5, 2.5], 2, 1.0, EdgePolicy::Drop, &scale)
            .unwrap();
        assert_eq!(p.pixels, vec![0.32, 0.42, 0.33, 0.43]);
        assert!(!p.padded);
    }

    #[test]
    fn bilinear_is_linear_on_a_ramp() {
        let (img, frame, scale) = ramp();
        // One output pixel of 0.5 µm centred on (3.25, 2.5): value 10*3.25 + 2.5 = 35.
        let p = extract_patch_scaled(&img, &frame, [3.25, 2.5], 1, 0.5, EdgePolicy::Drop, &scale)
            .unwrap();
        assert!((p.pixels[0] - 0.35).abs() < 1e-5, "{:?}", p.pixels);
        // Downsampling by 2 averages 2×2 sub-samples; still exact on a linear ramp.
        let p = extract_patch_scaled(&img, &frame, [4.0, 3.0], 2, 2.0, EdgePolicy::Drop, &scale)
            .unwrap();
        let expect = [0.32, 0.52, 0.34, 0.54];
        for (got, want) in p.pixels.iter().zip(expect) {
            assert!((got - want).abs() < 1e-5, "{:?}", p.pixels);
        }
    }

    #[test]
    fn edges_pad_or_drop_without_shifting() {
        let (img, frame, scale) = ramp();
        let centre = [0.0, 2.5];
        assert!(
            extract_patch_scaled(&img, &frame, centre, 2, 1.0, EdgePolicy::Drop, &scale).is_none()
        );
        let p =
            extract_patch_scaled(&img, &frame, centre, 2, 1.0, EdgePolicy::Pad, &scale).unwrap();
        assert!(p.padded);
        // Left column samples col -0.5: half of pixel col 0 (value 0.02 / 0.03) and half zero.
        assert!(
            (p.pixels[0] - 0.01).abs() < 1e-6 && (p.pixels[2] - 0.015).abs() < 1e-6,
            "{:?}",
            p.pixels
        );
        // Right column samples col 0.5: not shifted to fit.
        assert!((p.pixels[1] - 0.07).abs() < 1e-6, "{:?}", p.pixels);
    }

    #[test]
    fn invalid_geometry_gives_none() {
        let (img, frame, scale) = ramp();
        assert!(
            extract_patch_scaled(&img, &frame, [3.0, 3.0], 0, 1.0, EdgePolicy::Pad, &scale)
                .is_none()
        );
        assert!(
            extract_patch_scaled(&img, &frame, [3.0, 3.0], 2, 0.0, EdgePolicy::Pad, &scale)
                .is_none()
        );
        assert!(extract_patch_scaled(
            &img,
            &frame,
            [f32::NAN, 3.0],
            2,
            1.0,
            EdgePolicy::Pad,
            &scale
        )
        .is_none());
    }
}
