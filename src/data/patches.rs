//! Fixed-size image patches around cells, resampled to a chosen pixel size.
//!
//! Two crop styles are provided on top of [`extract_patch_scaled`] / [`extract_he_patch`]:
//! - **CellSymphony** ([`cellsymphony_crops`], [`cellsymphony_he_crops`]): nucleus-centred,
//!   fixed pixel size and side ([`CropSpec::default`]: 224 × 224 px at 0.5 µm/px), from DAPI or
//!   H&E.
//! - **SPATIA** ([`spatia_crops`]): the minimal square around each cell ([`CellExtent`]),
//!   resampled with ONE pixel size for all cells ([`SpatiaScale::fit`]: the chosen percentile
//!   of cell sides fills the target size) and zero-padded, centred, to a fixed size.

use super::error::DataError;
use super::he::HeAlignment;
use super::image::{GrayImage16, ImageFrame, IntensityScale, RgbImage8};
use super::xenium::{CellTable, Transcripts};

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
    extract_patch_in(PixelWindow::whole(image), frame, centre_um, size_px, out_um_per_px, edge, scale)
}

/// A window of a larger grayscale image (a level read tile by tile): `pixels` holds the
/// image's pixels from column `x0`, row `y0` on; the image is `full_width × full_height`.
/// Patches cut from a window that covers their footprint ([`patch_reach_px`]) are identical to
/// patches cut from the whole image.
#[derive(Debug, Clone, Copy)]
pub struct PixelWindow<'a> {
    /// The window's pixels.
    pub pixels: &'a GrayImage16,
    /// Image column of the window's first column.
    pub x0: usize,
    /// Image row of the window's first row.
    pub y0: usize,
    /// Width of the whole image.
    pub full_width: usize,
    /// Height of the whole image.
    pub full_height: usize,
}

impl<'a> PixelWindow<'a> {
    /// The whole of `image` as a window.
    pub fn whole(image: &'a GrayImage16) -> Self {
        PixelWindow { pixels: image, x0: 0, y0: 0, full_width: image.width, full_height: image.height }
    }

    /// The pixel at image coordinates `[col, row]`; `None` outside the window.
    fn get(&self, col: isize, row: isize) -> Option<u16> {
        self.pixels.get(col - self.x0 as isize, row - self.y0 as isize)
    }
}

/// How far (image pixels, either side of the centre) a `size_px` patch at `out_um_per_px` reads
/// from an image of `image_um_per_px`: a window covering `centre ± reach` (clipped to the
/// image) gives the same patch as the whole image.
pub fn patch_reach_px(image_um_per_px: f32, size_px: usize, out_um_per_px: f32) -> usize {
    (size_px as f32 / 2.0 * out_um_per_px / image_um_per_px).ceil() as usize + 2
}

/// [`extract_patch_scaled`] on a window of the image; the window must cover the patch's
/// footprint inside the image ([`patch_reach_px`]).
pub fn extract_patch_in(
    image: PixelWindow<'_>,
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
    let padded = !(inside(&cols, image.full_width) && inside(&rows, image.full_height));
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
fn bilinear(image: PixelWindow<'_>, scale: &IntensityScale, col: f32, row: f32) -> f32 {
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

/// The patches a morphology model reads: one `size_px × size_px` patch per centre (µm) at
/// `um_per_px`, stretched with the image's global 0.5/99.5 percentiles, zero-padded at the
/// border ([`EdgePolicy::Pad`]) and all zero for a non-finite centre. Shape
/// `[centres, size_px, size_px]`, row-major (what `classify --patches-out` writes and the
/// classifiers take as `patches`).
pub fn model_patches(
    image: &GrayImage16,
    frame: &ImageFrame,
    centres_um: &[[f32; 2]],
    size_px: usize,
    um_per_px: f32,
) -> Vec<f32> {
    let scale = IntensityScale::global(image);
    let mut out = Vec::with_capacity(centres_um.len() * size_px * size_px);
    for &centre in centres_um {
        match extract_patch_scaled(image, frame, centre, size_px, um_per_px, EdgePolicy::Pad, &scale) {
            Some(p) => out.extend_from_slice(&p.pixels),
            None => out.extend(std::iter::repeat_n(0.0, size_px * size_px)),
        }
    }
    out
}

/// Geometry of a CellSymphony crop.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CropSpec {
    /// Side in output pixels.
    pub size_px: usize,
    /// Output pixel size in µm.
    pub um_per_px: f32,
    /// What to do at the image border.
    pub edge: EdgePolicy,
}

impl Default for CropSpec {
    /// 224 × 224 px at 0.5 µm/px (112 µm across), [`EdgePolicy::Pad`] (border cells are kept,
    /// marked `padded`).
    fn default() -> Self {
        CropSpec {
            size_px: 224,
            um_per_px: 0.5,
            edge: EdgePolicy::Pad,
        }
    }
}

/// Crop centre of each cell of `cells`: the nucleus centroid (mean of the cell's transcripts
/// that overlap the nucleus) when there is one, else the centroid of all its transcripts.
/// Shape `[cells]`; entries are NaN for cells with neither.
pub fn nucleus_centres(cells: &CellTable) -> Vec<[f32; 2]> {
    cells
        .nucleus_centroids_um
        .iter()
        .zip(&cells.centroids_um)
        .map(|(n, c)| n.unwrap_or(*c))
        .collect()
}

/// CellSymphony crops from the DAPI image: one per centre (µm), `None` where the crop is
/// dropped at the border ([`EdgePolicy::Drop`]) or the centre is not finite.
pub fn cellsymphony_crops(
    image: &GrayImage16,
    frame: &ImageFrame,
    centres_um: &[[f32; 2]],
    spec: &CropSpec,
    scale: &IntensityScale,
) -> Vec<Option<Patch>> {
    centres_um
        .iter()
        .map(|&c| {
            extract_patch_scaled(
                image,
                frame,
                c,
                spec.size_px,
                spec.um_per_px,
                spec.edge,
                scale,
            )
        })
        .collect()
}

/// CellSymphony crops from H&E: one per centre (µm, slide frame), sampled through the
/// alignment (see [`extract_he_patch`]); `frame` is the morphology image's frame.
pub fn cellsymphony_he_crops(
    he: &RgbImage8,
    alignment: &HeAlignment,
    frame: &ImageFrame,
    centres_um: &[[f32; 2]],
    spec: &CropSpec,
) -> Vec<Option<RgbPatch>> {
    centres_um
        .iter()
        .map(|&c| {
            extract_he_patch(
                he,
                alignment,
                frame,
                c,
                spec.size_px,
                spec.um_per_px,
                spec.edge,
            )
        })
        .collect()
}

/// The minimal square around one cell, in µm.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CellExtent {
    /// Square centre `[x, y]`.
    pub centre_um: [f32; 2],
    /// Square side.
    pub side_um: f32,
}

/// Smallest side given to a cell's square, in µm (a cell with one transcript has no extent).
pub const MIN_CELL_SIDE_UM: f32 = 1.0;

/// Cell squares from the transcripts assigned to each cell: the bounding box of the cell's
/// transcript positions, squared up around its centre (side = the longer box side, at least
/// [`MIN_CELL_SIDE_UM`]). Xenium's `cells.csv` carries no boundary, and transcripts are the
/// cell's extent that is at hand; this slightly underestimates the membrane-to-membrane
/// extent. Indexed like `transcripts.cell_ids` (the rows of [`CellTable::from_transcripts`]);
/// `None` for cells without transcripts.
pub fn extents_from_transcripts(transcripts: &Transcripts) -> Vec<Option<CellExtent>> {
    let n = transcripts.cell_ids.len();
    let mut boxes: Vec<Option<[f32; 4]>> = vec![None; n];
    for (cell, xy) in transcripts.cell_index.iter().zip(&transcripts.xy_um) {
        let Some(b) = cell.and_then(|c| boxes.get_mut(c as usize)) else {
            continue;
        };
        let [x, y] = *xy;
        if !(x.is_finite() && y.is_finite()) {
            continue;
        }
        *b = Some(match *b {
            None => [x, y, x, y],
            Some([x0, y0, x1, y1]) => [x0.min(x), y0.min(y), x1.max(x), y1.max(y)],
        });
    }
    boxes
        .into_iter()
        .map(|b| {
            b.map(|[x0, y0, x1, y1]| CellExtent {
                centre_um: [(x0 + x1) / 2.0, (y0 + y1) / 2.0],
                side_um: (x1 - x0).max(y1 - y0).max(MIN_CELL_SIDE_UM),
            })
        })
        .collect()
}

/// Cell squares from centroids and areas (µm², e.g. `cell_area` of `cells.csv`) when no
/// transcripts are at hand: the square around a disk of that area, side `2·sqrt(area/π)`.
/// `None` where the area is missing, non-positive or the centre not finite.
pub fn extents_from_area(
    centres_um: &[[f32; 2]],
    areas_um2: &[Option<f32>],
) -> Vec<Option<CellExtent>> {
    centres_um
        .iter()
        .zip(areas_um2)
        .map(|(c, a)| {
            let a = (*a)?;
            (a.is_finite() && a > 0.0 && c.iter().all(|v| v.is_finite())).then(|| CellExtent {
                centre_um: *c,
                side_um: (2.0 * (a / std::f32::consts::PI).sqrt()).max(MIN_CELL_SIDE_UM),
            })
        })
        .collect()
}

/// The one pixel size shared by all SPATIA crops of a data set.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpatiaScale {
    /// Output pixel size in µm, the same for every cell.
    pub um_per_px: f32,
    /// Fixed output side in pixels.
    pub size_px: usize,
    /// Cell side (µm) that exactly fills `size_px`: the `percentile` of all cell sides.
    pub reference_side_um: f32,
    /// Percentile (`0..=100`) of cell sides used.
    pub percentile: f32,
}

impl SpatiaScale {
    /// Chooses the global scale so that the `percentile` of cell sides (100 = the largest
    /// cell) fills `size_px`: `um_per_px = side_p / size_px`. Cells larger than that are
    /// clipped to the central `size_px` square ([`SpatiaCrop::clipped`]).
    pub fn fit(
        extents: &[Option<CellExtent>],
        size_px: usize,
        percentile: f32,
    ) -> Result<Self, DataError> {
        let mut sides: Vec<f32> = extents
            .iter()
            .flatten()
            .map(|e| e.side_um)
            .filter(|s| s.is_finite() && *s > 0.0)
            .collect();
        if sides.is_empty() || size_px == 0 || !(0.0..=100.0).contains(&percentile) {
            return Err(DataError::InvalidArgument {
                name: "extents/size_px/percentile",
                value: format!(
                    "{} cells with an extent, size {size_px}, percentile {percentile}",
                    sides.len()
                ),
                expected:
                    "at least one cell with a positive side, size_px >= 1, percentile in 0..=100",
            });
        }
        sides.sort_by(f32::total_cmp);
        let rank = percentile / 100.0 * (sides.len() - 1) as f32;
        let (lo, frac) = (rank.floor() as usize, rank - rank.floor());
        let hi = (lo + 1).min(sides.len() - 1);
        let side = sides[lo] + frac * (sides[hi] - sides[lo]);
        Ok(SpatiaScale {
            um_per_px: side / size_px as f32,
            size_px,
            reference_side_um: side,
            percentile,
        })
    }
}

/// One SPATIA crop: the cell's square resampled at the global scale, centred in a zero canvas.
#[derive(Debug, Clone, PartialEq)]
pub struct SpatiaCrop {
    /// `[size_px, size_px]` canvas ([`SpatiaScale::size_px`]); `padded` refers to the cell
    /// square reaching past the image border, not to the canvas margin.
    pub patch: Patch,
    /// Side of the cell square in output pixels (`round(side_um / um_per_px)`, clamped to
    /// `1..=size_px`); it occupies rows/cols `[off, off + side)` with
    /// `off = (size_px - side) / 2`.
    pub cell_side_px: usize,
    /// Whether the cell is larger than the canvas and was clipped to its central part.
    pub clipped: bool,
}

/// SPATIA crops from the DAPI image, one per extent: the cell square (side
/// `round(side_um / scale.um_per_px)` px) sampled at `scale.um_per_px` around the square's
/// centre, placed in the middle of a `size_px × size_px` zero canvas. Edges: only the cell
/// square is sampled, never shifted; with [`EdgePolicy::Drop`] a square reaching past the
/// image gives `None`, with [`EdgePolicy::Pad`] the outside reads 0 and `patch.padded` is set.
pub fn spatia_crops(
    image: &GrayImage16,
    frame: &ImageFrame,
    extents: &[Option<CellExtent>],
    scale: &SpatiaScale,
    edge: EdgePolicy,
    intensity: &IntensityScale,
) -> Vec<Option<SpatiaCrop>> {
    extents
        .iter()
        .map(|e| {
            let e = e.as_ref()?;
            let (side, clipped) = spatia_side(e, scale)?;
            let inner = extract_patch_scaled(
                image,
                frame,
                e.centre_um,
                side,
                scale.um_per_px,
                edge,
                intensity,
            )?;
            Some(embed(inner, scale.size_px, clipped))
        })
        .collect()
}

/// Side of the cell square in output pixels and whether it was clipped.
fn spatia_side(e: &CellExtent, scale: &SpatiaScale) -> Option<(usize, bool)> {
    let px = e.side_um / scale.um_per_px;
    if !px.is_finite() || scale.size_px == 0 {
        return None;
    }
    let side = (px.round() as usize).max(1);
    Some((side.min(scale.size_px), side > scale.size_px))
}

/// Centres `inner` in a zero `size × size` canvas.
fn embed(inner: Patch, size: usize, clipped: bool) -> SpatiaCrop {
    let n = inner.size;
    let off = (size - n) / 2;
    let mut pixels = vec![0f32; size * size];
    for (r, row) in inner.pixels.chunks_exact(n).enumerate() {
        let start = (off + r) * size + off;
        pixels[start..start + n].copy_from_slice(row);
    }
    SpatiaCrop {
        patch: Patch {
            pixels,
            size,
            padded: inner.padded,
        },
        cell_side_px: n,
        clipped,
    }
}

/// A square RGB patch with intensities in `[0, 1]` (sample / 255).
#[derive(Debug, Clone, PartialEq)]
pub struct RgbPatch {
    /// Samples, shape `[size, size, 3]`, row-major (rows follow slide `y`).
    pub pixels: Vec<f32>,
    /// Side length in pixels.
    pub size: usize,
    /// Whether part of the patch lies outside the H&E image (read as 0).
    pub padded: bool,
}

impl RgbPatch {
    /// Mean of R, G and B per pixel, as a gray [`Patch`] (`[size, size]`).
    pub fn to_gray(&self) -> Patch {
        Patch {
            pixels: self
                .pixels
                .chunks_exact(3)
                .map(|p| (p[0] + p[1] + p[2]) / 3.0)
                .collect(),
            size: self.size,
            padded: self.padded,
        }
    }
}

/// Extracts a `size_px × size_px` RGB patch from H&E, axis-aligned in the slide frame,
/// centred on `centre_um`, with output pixels of `out_um_per_px` µm.
///
/// Each output sample's slide position goes µm → morphology px (`frame`) → H&E px
/// (`alignment.morphology_to_he`), where the H&E image is sampled bilinearly. When output
/// pixels are larger than H&E pixels, each averages a `k × k` grid of samples with
/// `k = ceil(out_um_per_px / he_um_per_px)` (at most [`MAX_SUBSAMPLES`]). Edges as in
/// [`extract_patch_scaled`]: never shifted; [`EdgePolicy::Drop`] returns
/// `None` if any sample falls outside the H&E image, [`EdgePolicy::Pad`] reads 0 there.
/// `None` also for invalid geometry (zero size, non-positive or non-finite pixel sizes).
pub fn extract_he_patch(
    he: &RgbImage8,
    alignment: &HeAlignment,
    frame: &ImageFrame,
    centre_um: [f32; 2],
    size_px: usize,
    out_um_per_px: f32,
    edge: EdgePolicy,
) -> Option<RgbPatch> {
    let he_um = alignment.he_um_per_px(frame.um_per_px);
    let valid = size_px > 0
        && out_um_per_px.is_finite()
        && out_um_per_px > 0.0
        && frame.um_per_px.is_finite()
        && frame.um_per_px > 0.0
        && he_um.is_finite()
        && he_um > 0.0
        && centre_um.iter().all(|v| v.is_finite());
    if !valid {
        return None;
    }
    let n_sub = (out_um_per_px / he_um - 1e-3)
        .ceil()
        .clamp(1.0, MAX_SUBSAMPLES as f32) as usize;
    let half = size_px as f32 / 2.0;
    let offsets: Vec<f32> = (0..size_px)
        .flat_map(|i| {
            (0..n_sub).map(move |s| {
                let within = (s as f32 + 0.5) / n_sub as f32 - 0.5;
                (i as f32 + 0.5 + within - half) * out_um_per_px
            })
        })
        .collect();
    // H&E position of every (row offset, col offset) sample, row-major.
    let to_he = |dx: f32, dy: f32| {
        let p = frame.um_to_px([centre_um[0] + dx, centre_um[1] + dy]);
        alignment.morphology_to_he_px([f64::from(p[0]), f64::from(p[1])])
    };
    const EPS: f64 = 1e-3;
    let (w, h) = (he.width as f64, he.height as f64);
    let mut padded = false;
    let (first, last) = (offsets[0], offsets[offsets.len() - 1]);
    for (dx, dy) in [(first, first), (first, last), (last, first), (last, last)] {
        let [c, r] = to_he(dx, dy);
        padded |= !(c >= -EPS && r >= -EPS && c <= w - 1.0 + EPS && r <= h - 1.0 + EPS);
    }
    if padded && edge == EdgePolicy::Drop {
        return None;
    }
    let norm = 1.0 / (n_sub * n_sub * 255) as f32;
    let mut pixels = Vec::with_capacity(size_px * size_px * 3);
    for row_block in offsets.chunks_exact(n_sub) {
        for col_block in offsets.chunks_exact(n_sub) {
            let mut acc = [0f32; 3];
            for &dy in row_block {
                for &dx in col_block {
                    let [c, r] = to_he(dx, dy);
                    let v = bilinear_rgb(he, c as f32, r as f32);
                    for k in 0..3 {
                        acc[k] += v[k];
                    }
                }
            }
            pixels.extend(acc.iter().map(|a| a * norm));
        }
    }
    Some(RgbPatch {
        pixels,
        size: size_px,
        padded,
    })
}

/// Bilinear RGB (0-255 scale) at continuous `[col, row]`, pixels outside reading as 0.
fn bilinear_rgb(image: &RgbImage8, col: f32, row: f32) -> [f32; 3] {
    let (c0, r0) = (col.floor(), row.floor());
    let (fx, fy) = (col - c0, row - r0);
    let (c, r) = (c0 as isize, r0 as isize);
    let at = |dc: isize, dr: isize| image.get(c + dc, r + dr).unwrap_or([0; 3]);
    let (a, b, d, e) = (at(0, 0), at(1, 0), at(0, 1), at(1, 1));
    let mut out = [0f32; 3];
    for k in 0..3 {
        let top = f32::from(a[k]) * (1.0 - fx) + f32::from(b[k]) * fx;
        let bottom = f32::from(d[k]) * (1.0 - fx) + f32::from(e[k]) * fx;
        out[k] = top * (1.0 - fy) + bottom * fy;
    }
    out
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

    #[test]
    fn he_patch_samples_through_the_inverse() {
        // H&E = 2x upsampled morphology grid: M = diag(0.5, 0.5).
        let al =
            HeAlignment::from_matrix([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 1.0]]).unwrap();
        let (w, h) = (20, 20);
        let pixels = (0..h)
            .flat_map(|r| (0..w).flat_map(move |c| [(10 * c) as u8, r as u8, 7]))
            .collect();
        let he = RgbImage8::new(w, h, pixels).unwrap();
        let frame = ImageFrame {
            origin_um: [0.0, 0.0],
            um_per_px: 1.0,
        };
        // Slide (3, 4) µm = morphology px (3, 4) = H&E px (6, 8).
        let p = extract_he_patch(&he, &al, &frame, [3.0, 4.0], 1, 0.5, EdgePolicy::Drop).unwrap();
        assert!((p.pixels[0] * 255.0 - 60.0).abs() < 1e-3, "{:?}", p.pixels);
        assert!((p.pixels[1] * 255.0 - 8.0).abs() < 1e-3, "{:?}", p.pixels);
        assert!(extract_he_patch(&he, &al, &frame, [0.0, 4.0], 4, 0.5, EdgePolicy::Drop).is_none());
        let padded =
            extract_he_patch(&he, &al, &frame, [0.0, 4.0], 4, 0.5, EdgePolicy::Pad).unwrap();
        assert!(padded.padded);
    }
}
