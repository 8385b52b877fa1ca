//! Colour deconvolution of H&E to haematoxylin (Ruifrok & Johnston 2001), so that nucleus
//! detection runs on brightfield H&E as on DAPI: nuclei are haematoxylin-dense, so the
//! haematoxylin concentration image is bright where DAPI would be.
//!
//! Optical density per channel `OD = -ln((I + 1) / 256)`; stain concentrations
//! `[H, E, DAB] = OD · M⁻¹` with `M` the rows of unit-free stain vectors of scikit-image's
//! `rgb2hed` (H `[0.65, 0.70, 0.29]`, E `[0.07, 0.99, 0.11]`, DAB `[0.27, 0.57, 0.78]`).

use crate::data::image::{GrayImage16, RgbImage8};

/// Stain vectors (rows: haematoxylin, eosin, DAB; columns R, G, B), as scikit-image's
/// `rgb_from_hed`.
pub const RGB_FROM_HED: [[f64; 3]; 3] = [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]];

/// Haematoxylin concentration (optical-density units) mapped to `u16` by this factor, clamped
/// to `[0, 65535]` (OD up to 4 fits).
pub const HAEMATOXYLIN_SCALE: f64 = 16384.0;

fn inverse3(m: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    let mut inv = [[0.0; 3]; 3];
    for (i, row) in inv.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            // Adjugate with cyclic indices (the cofactor signs come out of the cycle).
            let (a, b) = ((j + 1) % 3, (j + 2) % 3);
            let (c, d) = ((i + 1) % 3, (i + 2) % 3);
            *v = (m[a][c] * m[b][d] - m[a][d] * m[b][c]) / det;
        }
    }
    inv
}

/// Stain concentrations `[H, E, DAB]` (optical-density units) of one RGB pixel.
pub fn deconvolve_pixel(rgb: [u8; 3]) -> [f64; 3] {
    let inv = inverse3(&RGB_FROM_HED);
    let od = rgb.map(|v| -((f64::from(v) + 1.0) / 256.0).ln());
    let mut out = [0.0; 3];
    for (s, o) in out.iter_mut().enumerate() {
        *o = (0..3).map(|c| od[c] * inv[c][s]).sum();
    }
    out
}

/// The haematoxylin channel of an H&E image, `[height, width]`, as `u16`
/// (`H · HAEMATOXYLIN_SCALE`, negatives 0): pass it to
/// [`detect_nuclei`](super::detect_nuclei) as a DAPI image.
pub fn haematoxylin(image: &RgbImage8) -> GrayImage16 {
    let inv = inverse3(&RGB_FROM_HED);
    // A lookup table per channel: OD of each 8-bit value times the H column of M⁻¹.
    let lut: Vec<[f64; 3]> = (0..256u32)
        .map(|v| {
            let od = -((f64::from(v) + 1.0) / 256.0).ln();
            [od * inv[0][0], od * inv[1][0], od * inv[2][0]]
        })
        .collect();
    let pixels = image
        .pixels
        .chunks_exact(3)
        .map(|p| {
            let h = lut[usize::from(p[0])][0] + lut[usize::from(p[1])][1] + lut[usize::from(p[2])][2];
            (h * HAEMATOXYLIN_SCALE).clamp(0.0, 65535.0).round() as u16
        })
        .collect();
    GrayImage16 { width: image.width, height: image.height, pixels }
}
