//! H&E images registered to the morphology image: the RGB image type, the 10x alignment
//! matrix (`*he_imagealignment.csv`, H&E px → morphology px) and patch extraction from H&E at
//! slide positions in µm.
//!
//! Coordinates: pixel `(c, r)` has its centre at continuous `[c, r]` in both images (the
//! convention of [`ImageFrame`]); the matrix acts on homogeneous `[col, row, 1]` (x = column,
//! y = row), as in 10x's files. A slide position maps µm → morphology px with the morphology
//! [`ImageFrame`], then morphology px → H&E px with the inverse matrix.

use super::error::DataError;
use super::image::ImageFrame;
use super::patches::{EdgePolicy, Patch, MAX_SUBSAMPLES};

/// An 8-bit RGB image, `pixels[(row * width + col) * 3 + channel]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage8 {
    /// Number of columns.
    pub width: usize,
    /// Number of rows.
    pub height: usize,
    /// Samples, shape `[height, width, 3]`, row-major, channels R, G, B.
    pub pixels: Vec<u8>,
}

impl RgbImage8 {
    /// Wraps a sample buffer, checking that it holds `width * height * 3` values.
    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Result<Self, DataError> {
        let expected = width.saturating_mul(height).saturating_mul(3);
        if pixels.len() != expected {
            return Err(DataError::Shape {
                what: "RGB image samples",
                expected,
                found: pixels.len(),
            });
        }
        Ok(RgbImage8 {
            width,
            height,
            pixels,
        })
    }

    /// RGB at integer pixel `(col, row)`, `None` outside the image.
    pub fn get(&self, col: isize, row: isize) -> Option<[u8; 3]> {
        if col < 0 || row < 0 || col as usize >= self.width || row as usize >= self.height {
            return None;
        }
        let i = (row as usize * self.width + col as usize) * 3;
        self.pixels.get(i..i + 3).map(|s| [s[0], s[1], s[2]])
    }
}

/// A 3×3 affine matrix, row-major, acting on `[col, row, 1]`.
pub type Matrix3 = [[f64; 3]; 3];

/// The H&E ↔ morphology registration: `morphology_px = M · he_px` and its inverse.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HeAlignment {
    /// `M`: H&E pixel `[col, row, 1]` → morphology (full-resolution) pixel.
    pub he_to_morphology: Matrix3,
    /// `M⁻¹`: morphology pixel → H&E pixel.
    pub morphology_to_he: Matrix3,
}

impl HeAlignment {
    /// Checks that `m` is affine (last row `0, 0, 1` within 1e-6), finite and invertible, and
    /// computes its inverse.
    pub fn from_matrix(m: Matrix3) -> Result<Self, DataError> {
        let bad = |expected| DataError::InvalidArgument {
            name: "he_to_morphology",
            value: format!("{m:?}"),
            expected,
        };
        if !m.iter().flatten().all(|v| v.is_finite()) {
            return Err(bad("finite numbers"));
        }
        let [_, _, last] = m;
        if last[0].abs() > 1e-6 || last[1].abs() > 1e-6 || (last[2] - 1.0).abs() > 1e-6 {
            return Err(bad("an affine matrix: last row 0, 0, 1"));
        }
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        if !det.is_finite() || det.abs() < 1e-12 {
            return Err(bad("an invertible matrix (non-zero determinant)"));
        }
        let (a, b, c, d) = (m[1][1] / det, -m[0][1] / det, -m[1][0] / det, m[0][0] / det);
        let (tx, ty) = (m[0][2], m[1][2]);
        let inv = [
            [a, b, -(a * tx + b * ty)],
            [c, d, -(c * tx + d * ty)],
            [0.0, 0.0, 1.0],
        ];
        Ok(HeAlignment {
            he_to_morphology: [m[0], m[1], [0.0, 0.0, 1.0]],
            morphology_to_he: inv,
        })
    }

    /// Parses the text of a `*he_imagealignment.csv`: three lines of three comma-separated
    /// numbers (10x writes no header), optionally after one header line (a first line that is
    /// not all numbers, or the first of four lines). `path` is only used in error messages.
    pub fn parse_csv(text: &str, path: &std::path::Path) -> Result<Self, DataError> {
        let err = |line: usize, message: String| DataError::AlignmentMatrix {
            path: path.to_path_buf(),
            line: line as u64,
            message,
        };
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty())
            .collect();
        let split = |l: &str| -> Vec<String> {
            l.split(',')
                .map(|f| f.trim().trim_matches('"').to_string())
                .collect()
        };
        let numeric = |l: &str| split(l).iter().all(|f| f.parse::<f64>().is_ok());
        let skip_header = match lines.first() {
            Some((_, first)) => !numeric(first) || lines.len() == 4,
            None => false,
        };
        let rows = &lines[usize::from(skip_header)..];
        let n_numbers: usize = rows.iter().map(|(_, l)| split(l).len()).sum();
        if rows.len() != 3 {
            return Err(err(
                0,
                format!(
                    "{} data lines ({n_numbers} values), expected 3 lines of 3",
                    rows.len()
                ),
            ));
        }
        let mut m = [[0.0f64; 3]; 3];
        for (r, (line, text)) in rows.iter().enumerate() {
            let fields = split(text);
            if fields.len() != 3 {
                return Err(err(
                    *line,
                    format!(
                        "{} values `{text}`, expected 3 ({n_numbers} numbers in the file, \
                         expected 9)",
                        fields.len()
                    ),
                ));
            }
            for (c, field) in fields.iter().enumerate() {
                m[r][c] = field.parse::<f64>().map_err(|_| {
                    err(
                        *line,
                        format!("column {}: `{field}` is not a number", c + 1),
                    )
                })?;
            }
        }
        Self::from_matrix(m).map_err(|e| err(0, e.to_string()))
    }

    /// Morphology pixel `[col, row]` of H&E pixel `he_px`.
    pub fn he_to_morphology_px(&self, he_px: [f64; 2]) -> [f64; 2] {
        apply(&self.he_to_morphology, he_px)
    }

    /// H&E pixel `[col, row]` of morphology pixel `morph_px`.
    pub fn morphology_to_he_px(&self, morph_px: [f64; 2]) -> [f64; 2] {
        apply(&self.morphology_to_he, morph_px)
    }

    /// The alignment of a reduced H&E level whose pixels span `downsample` full-resolution
    /// H&E pixels: level pixel `p` is full-resolution pixel `(p + 0.5)·d - 0.5`.
    pub fn for_he_level(&self, downsample: f64) -> Result<Self, DataError> {
        let o = (downsample - 1.0) / 2.0;
        let s = [[downsample, 0.0, o], [0.0, downsample, o], [0.0, 0.0, 1.0]];
        Self::from_matrix(matmul(&self.he_to_morphology, &s))
    }

    /// H&E pixel size in µm given the morphology pixel size: `um · sqrt(|det M|)` (the
    /// geometric mean of the two axes' scales).
    pub fn he_um_per_px(&self, morphology_um_per_px: f32) -> f32 {
        let m = &self.he_to_morphology;
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        morphology_um_per_px * det.abs().sqrt() as f32
    }
}

fn apply(m: &Matrix3, p: [f64; 2]) -> [f64; 2] {
    [
        m[0][0] * p[0] + m[0][1] * p[1] + m[0][2],
        m[1][0] * p[0] + m[1][1] * p[1] + m[1][2],
    ]
}

fn matmul(a: &Matrix3, b: &Matrix3) -> Matrix3 {
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
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
/// [`super::patches::extract_patch_scaled`]: never shifted; [`EdgePolicy::Drop`] returns
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

/// Reads a 10x `*he_imagealignment.csv` (see [`HeAlignment::parse_csv`]).
#[cfg(feature = "native-io")]
pub fn read_he_alignment_csv(path: &std::path::Path) -> Result<HeAlignment, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| DataError::AlignmentMatrix {
        path: path.to_path_buf(),
        line: 0,
        message: format!("not UTF-8 text ({e})"),
    })?;
    HeAlignment::parse_csv(&text, path)
}

/// The H&E image and its alignment matrix in a Xenium output directory.
#[cfg(feature = "native-io")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeFiles {
    /// `*he_image.ome.tif`.
    pub image: std::path::PathBuf,
    /// `*he_imagealignment.csv`.
    pub alignment: std::path::PathBuf,
}

/// Finds `*he_image.ome.tif` and `*he_imagealignment.csv` in `dir` (alphabetically first of
/// each); fails with [`DataError::Empty`] listing what was there.
#[cfg(feature = "native-io")]
pub fn find_he_files(dir: &std::path::Path) -> Result<HeFiles, DataError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    let find = |suffix: &str| {
        names
            .iter()
            .find(|n| n.ends_with(suffix))
            .map(|n| dir.join(n))
    };
    match (find("he_image.ome.tif"), find("he_imagealignment.csv")) {
        (Some(image), Some(alignment)) => Ok(HeFiles { image, alignment }),
        (image, alignment) => Err(DataError::Empty {
            path: dir.to_path_buf(),
            message: format!(
                "expected *he_image.ome.tif and *he_imagealignment.csv (found image: {}, \
                 alignment: {}); directory holds [{}]; copy the H&E files of the Xenium bundle",
                image.is_some(),
                alignment.is_some(),
                names.join(", ")
            ),
        }),
    }
}

/// Reads the H&E level that [`super::morphology::choose_level`] picks for output pixels of
/// `target_um_per_px` (H&E pixel size from the alignment and the morphology pixel size) and
/// returns it with the alignment of that level ([`HeAlignment::for_he_level`]).
#[cfg(feature = "native-io")]
pub fn read_he_level(
    tiff: &super::morphology::PyramidTiff,
    alignment: &HeAlignment,
    morphology_um_per_px: f32,
    target_um_per_px: f32,
) -> Result<(super::morphology::LevelImage<RgbImage8>, HeAlignment), DataError> {
    let he_um = alignment.he_um_per_px(morphology_um_per_px);
    let um: Vec<f32> = tiff.levels().iter().map(|l| he_um * l.downsample).collect();
    let level = super::morphology::choose_level(&um, target_um_per_px);
    let read = tiff.read_rgb(level)?;
    let level_alignment = alignment.for_he_level(f64::from(read.downsample))?;
    Ok((read, level_alignment))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn inverse_round_trips() {
        let a = 5f64.to_radians();
        let m = [
            [0.8 * a.cos(), -0.8 * a.sin(), -150.0],
            [0.8 * a.sin(), 0.8 * a.cos(), 60.0],
            [0.0, 0.0, 1.0],
        ];
        let al = HeAlignment::from_matrix(m).unwrap();
        let p = [123.4, -56.7];
        let q = al.morphology_to_he_px(al.he_to_morphology_px(p));
        assert!(
            (q[0] - p[0]).abs() < 1e-9 && (q[1] - p[1]).abs() < 1e-9,
            "{q:?}"
        );
        assert!((al.he_um_per_px(0.2125) - 0.17).abs() < 1e-6);
        // Level with downsample 2: level px 0 = full-res px 0.5.
        let l = al.for_he_level(2.0).unwrap();
        let want = al.he_to_morphology_px([0.5, 0.5]);
        let got = l.he_to_morphology_px([0.0, 0.0]);
        assert!((want[0] - got[0]).abs() < 1e-9 && (want[1] - got[1]).abs() < 1e-9);
    }

    #[test]
    fn csv_with_and_without_header() {
        let p = Path::new("x_he_imagealignment.csv");
        let plain = "1,0,5\n0,2,6\n0,0,1\n";
        let a = HeAlignment::parse_csv(plain, p).unwrap();
        assert_eq!(a.he_to_morphology[1], [0.0, 2.0, 6.0]);
        let header = "a,b,c\n1,0,5\n0,2,6\n0,0,1\n";
        assert_eq!(HeAlignment::parse_csv(header, p).unwrap(), a);
        let e = HeAlignment::parse_csv("1,0,5\n0,2,6\n0,0\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("8 numbers"), "{e}");
        let e = HeAlignment::parse_csv("1,0,5\n0,x2,6\n0,0,1\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("`x2`"), "{e}");
        assert!(HeAlignment::parse_csv("1,0,5\n2,0,6\n0,0,1\n", p).is_err());
        assert!(HeAlignment::parse_csv("1,0,5\n0,1,6\n1,0,1\n", p).is_err());
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
