//! Sections of the main job's `report.md` that are more than formatting.

use std::path::Path;

use super::dataset::PreparedCrop;
use super::TrainError;
use crate::data;

/// Side (px) of the nucleus-centred DAPI patches in the report's mosaic.
pub const REPORT_PATCH_PX: usize = 48;
/// µm per pixel of the report's patches.
pub const REPORT_PATCH_UM_PER_PX: f32 = 0.5;

/// Check the transcript ↔ DAPI alignment, extract nucleus-centred patches for every cell and
/// write a mosaic of the first 64 (`patches.png`). Returns a Markdown section for the report.
pub fn morphology_section(data_dir: &Path, crop: &PreparedCrop, out: &Path) -> Result<String, TrainError> {
    let files = data::BidcellData::locate(data_dir)?;
    let transcripts = data::read_transcripts(&files.transcripts, &data::TranscriptOptions::default())?;
    let image = data::read_tiff_gray16(&files.morphology)?;
    let frame = data::XENIUM_CROP_FRAME;
    let report = data::check_alignment(&transcripts, &image, &frame, 8);
    let scale = data::IntensityScale::global(&image);
    let (mut kept, mut padded, mut dropped) = (0usize, 0usize, 0usize);
    let mut mosaic_patches = Vec::new();
    for i in 0..crop.table.n_cells() {
        let centre = crop.table.nucleus_centroids_um[i].unwrap_or(crop.table.centroids_um[i]);
        match data::extract_patch_scaled(&image, &frame, centre, REPORT_PATCH_PX, REPORT_PATCH_UM_PER_PX, data::EdgePolicy::Pad, &scale) {
            Some(p) => {
                kept += 1;
                padded += p.padded as usize;
                if mosaic_patches.len() < 64 && !p.padded {
                    mosaic_patches.push(p);
                }
            }
            None => dropped += 1,
        }
    }
    let side = 8 * REPORT_PATCH_PX;
    let mut pixels = vec![0u8; side * side];
    for (k, p) in mosaic_patches.iter().enumerate() {
        let (oy, ox) = ((k / 8) * REPORT_PATCH_PX, (k % 8) * REPORT_PATCH_PX);
        for y in 0..REPORT_PATCH_PX {
            for x in 0..REPORT_PATCH_PX {
                pixels[(oy + y) * side + ox + x] = (p.pixels[y * REPORT_PATCH_PX + x].clamp(0.0, 1.0) * 255.0) as u8;
            }
        }
    }
    let path = out.join("patches.png");
    data::write_png_8bit(&path, side, side, png::ColorType::Grayscale, &pixels)?;
    Ok(format!(
        "## Morphology (DAPI)\n\nAlignment µm → px = (µm − {:?}) / {} (pixel centres). Mean DAPI under nucleus-overlapping transcripts {:.0}, cytoplasmic {:.0}, unassigned {:.0}, image {:.0}: contrast {:.2}; the best whole-pixel shift within ±8 px is {:?}.\n\nNucleus-centred patches ({REPORT_PATCH_PX}×{REPORT_PATCH_PX} px at {REPORT_PATCH_UM_PER_PX} µm/px, zero-padded at the image edge): {kept} cells, {padded} padded, {dropped} outside. Mosaic of 64: `{}`.\n\n",
        frame.origin_um, frame.um_per_px, report.nucleus_mean, report.cytoplasm_mean, report.unassigned_mean, report.image_mean, report.contrast, report.best_shift_px, path.display()
    ))
}
