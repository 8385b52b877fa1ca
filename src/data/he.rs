//! H&E images registered to the morphology image: the 10x alignment matrix
//! (`*he_imagealignment.csv`, H&E px → morphology px), finding and reading the H&E pyramid.
//! The RGB image type is [`RgbImage8`]; patches are cut by [`super::patches::extract_he_patch`].
//!
//! Coordinates: pixel `(c, r)` has its centre at continuous `[c, r]` in both images (the
//! convention of [`super::ImageFrame`]); the matrix acts on homogeneous `[col, row, 1]` (x = column,
//! y = row), as in 10x's files. A slide position maps µm → morphology px with the morphology
//! [`super::ImageFrame`], then morphology px → H&E px with the inverse matrix.

use super::error::DataError;
#[cfg(feature = "native-io")]
use super::image::RgbImage8;

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
pub fn read_he_level<S: super::morphology::TiffSource>(
    tiff: &super::morphology::PyramidTiff<S>,
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
}
