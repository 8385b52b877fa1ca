//! 10x Genomics HDF5 cell-feature matrices (`cell_feature_matrix.h5` of a Xenium output
//! bundle, `filtered_feature_bc_matrix.h5` of Cell Ranger).
//!
//! Layout (HDF5 group `matrix`), a compressed-sparse-column matrix of shape
//! `[n_features, n_barcodes]`:
//!
//! * `barcodes` `[n_barcodes]` strings (cell ids);
//! * `data` `[nnz]` counts, `indices` `[nnz]` feature (row) indices, `indptr` `[n_barcodes + 1]`
//!   offsets of each barcode's entries in `data`/`indices`;
//! * `shape` `[2]` = `[n_features, n_barcodes]`;
//! * `features/{id, name, feature_type, genome}` `[n_features]` strings.
//!
//! As with the MEX reader ([`super::read_mex_dir`]), only features of type `Gene Expression`
//! whose name is not a control ([`super::xenium::is_control_feature`]) become genes; negative
//! control probes and codewords, genomic controls and unassigned or deprecated codewords are
//! dropped.

use std::path::Path;

use super::error::DataError;
use super::hdf5::{Kind, H5};
use super::mex::GENE_EXPRESSION;
use super::xenium::{canonical_axes, is_control_feature, CanonicalAxes, CellTable};

/// Checks compressed-sparse offsets: `indptr` has `n_major + 1` entries, starts at 0, never
/// decreases and ends at `nnz`. Returns them as `usize`.
pub(crate) fn check_offsets(
    h5: &H5,
    object: &str,
    indptr: &[i64],
    nnz: usize,
    n_major: usize,
) -> Result<Vec<usize>, DataError> {
    let ip = format!("{object}/indptr");
    if Some(indptr.len()) != n_major.checked_add(1) {
        return Err(h5.err(
            &ip,
            format!(
                "has {} entries, expected {} (one more than the {n_major} {})",
                indptr.len(),
                n_major.saturating_add(1),
                if object.ends_with("matrix") {
                    "barcodes"
                } else {
                    "major-axis rows"
                }
            ),
        ));
    }
    let mut offsets = Vec::with_capacity(indptr.len());
    for (i, &p) in indptr.iter().enumerate() {
        let p =
            usize::try_from(p).map_err(|_| h5.err(&ip, format!("entry {i} is negative: {p}")))?;
        if i == 0 && p != 0 {
            return Err(h5.err(&ip, format!("starts at {p}, expected 0")));
        }
        if let Some(&prev) = offsets.last() {
            if p < prev {
                return Err(h5.err(
                    &ip,
                    format!(
                        "not monotone: entry {i} = {p} is below entry {} = {prev}",
                        i - 1
                    ),
                ));
            }
        }
        if p > nnz {
            return Err(h5.err(
                &ip,
                format!("entry {i} = {p} exceeds the {nnz} stored values"),
            ));
        }
        offsets.push(p);
    }
    if offsets.last() != Some(&nnz) {
        return Err(h5.err(
            &ip,
            format!(
                "ends at {}, expected the number of stored values {nnz}",
                offsets.last().copied().unwrap_or(0)
            ),
        ));
    }
    Ok(offsets)
}

/// Checks compressed-sparse offsets and indices: `indptr` has `n_major + 1` entries, starts
/// at 0, never decreases and ends at `nnz`; every index is in `0..n_minor`. Returns the
/// offsets and indices as `usize`. `object` is the sparse group (for error paths).
pub(crate) fn check_compressed(
    h5: &H5,
    object: &str,
    indptr: &[i64],
    indices: &[i64],
    nnz: usize,
    n_major: usize,
    n_minor: usize,
) -> Result<(Vec<usize>, Vec<usize>), DataError> {
    let ix = format!("{object}/indices");
    let offsets = check_offsets(h5, object, indptr, nnz, n_major)?;
    if indices.len() != nnz {
        return Err(h5.err(
            &ix,
            format!("has {} entries but `data` has {nnz}", indices.len()),
        ));
    }
    let mut idx = Vec::with_capacity(indices.len());
    for (k, &j) in indices.iter().enumerate() {
        match usize::try_from(j) {
            Ok(j) if j < n_minor => idx.push(j),
            _ => return Err(h5.err(&ix, format!("entry {k} = {j} is out of range 0..{n_minor}"))),
        }
    }
    Ok((offsets, idx))
}

/// Reads and checks a 10x file's axes (shared by the whole-file and the streaming reader):
/// `matrix/shape` as `(n_features, n_barcodes)`, the barcodes and feature names/types, and
/// the canonical order of the cells and of the kept genes (gene expression, controls dropped).
fn read_matrix_axes(h5: &H5) -> Result<(usize, usize, CanonicalAxes), DataError> {
    if h5.kind("matrix")? != Some(Kind::Group) {
        return Err(h5.err(
            "matrix",
            "group is missing: not a 10x cell_feature_matrix.h5 (expected matrix/{barcodes, \
             data, indices, indptr, shape, features})",
        ));
    }
    let shape = h5.read_i64("matrix/shape")?;
    let dims: Option<Vec<usize>> = shape.iter().map(|&d| usize::try_from(d).ok()).collect();
    let (n_features, n_barcodes) = match dims.as_deref() {
        Some(&[f, b]) => (f, b),
        _ => {
            return Err(h5.err(
                "matrix/shape",
                format!(
                    "is {shape:?}, expected [n_features, n_barcodes] (two non-negative integers)"
                ),
            ))
        }
    };
    let barcodes = h5.read_strings("matrix/barcodes")?;
    if barcodes.len() != n_barcodes {
        return Err(h5.err(
            "matrix/barcodes",
            format!(
                "has {} entries but matrix/shape says {n_barcodes} barcodes",
                barcodes.len()
            ),
        ));
    }
    let names = h5.read_strings("matrix/features/name")?;
    let types = h5.read_strings("matrix/features/feature_type")?;
    for (object, len) in [
        ("matrix/features/name", names.len()),
        ("matrix/features/feature_type", types.len()),
    ] {
        if len != n_features {
            return Err(h5.err(
                object,
                format!("has {len} entries but matrix/shape says {n_features} features"),
            ));
        }
    }
    let keep: Vec<bool> = names
        .iter()
        .zip(&types)
        .map(|(n, t)| t == GENE_EXPRESSION && !is_control_feature(n))
        .collect();
    let axes = canonical_axes(
        &barcodes,
        &names,
        &keep,
        |id| {
            h5.err(
                "matrix/barcodes",
                format!("barcode `{id}` appears more than once"),
            )
        },
        |g| {
            h5.err(
                "matrix/features/name",
                format!("gene name `{g}` appears more than once"),
            )
        },
    )?;
    Ok((n_features, n_barcodes, axes))
}

/// Reads a 10x HDF5 cell-feature matrix into a [`CellTable`] of shape `[n_cells, n_genes]`.
///
/// * genes: features of type `Gene Expression` that are not controls, sorted alphabetically
///   (as every reader, so [`CellTable::gene_index`] works and layouts compare equal);
/// * cells: every barcode, sorted numerically when all are integers, else as strings,
///   including cells with no counts;
/// * `centroids_um` is `[NaN, NaN]` and `nucleus_centroids_um` `None` for every cell, as in
///   [`super::read_mex_dir`]: the matrix has no positions; fill them with
///   [`super::attach_centroids`] from `cells.csv`.
///
/// Repeated `(feature, barcode)` entries are summed. Fails with [`DataError::Hdf5`] (file,
/// dataset path and value) when the file is not HDF5 or truncated, a dataset is missing,
/// `shape` disagrees with `barcodes`/`features`, `indptr` is not monotone or does not span
/// `data`, an index is out of range, a count is negative or not finite, or a gene name or
/// barcode repeats; with [`DataError::Io`] when the file does not exist.
pub fn read_10x_h5(path: &Path) -> Result<CellTable, DataError> {
    let h5 = H5::open(path)?;
    let (n_features, n_barcodes, axes) = read_matrix_axes(&h5)?;

    let data = h5.read_f32("matrix/data")?;
    let indptr = h5.read_i64("matrix/indptr")?;
    let indices = h5.read_i64("matrix/indices")?;
    let (offsets, rows) = check_compressed(
        &h5,
        "matrix",
        &indptr,
        &indices,
        data.len(),
        n_barcodes,
        n_features,
    )?;

    let n_genes = axes.genes.len();
    let n_cells = axes.cell_ids.len();
    let size = n_cells.checked_mul(n_genes).ok_or_else(|| {
        h5.err(
            "matrix/shape",
            format!("{n_cells} × {n_genes} is too large"),
        )
    })?;
    let mut counts = vec![0f32; size];
    for (b, w) in offsets.windows(2).enumerate() {
        let base = axes.cell_row[b] * n_genes;
        for k in w[0]..w[1] {
            let v = data[k];
            if !(v.is_finite() && v >= 0.0) {
                return Err(h5.err(
                    "matrix/data",
                    format!("entry {k} = {v} is not a finite non-negative count"),
                ));
            }
            if let Some(g) = axes.gene_col[rows[k]] {
                counts[base + g] += v;
            }
        }
    }
    Ok(CellTable {
        cell_ids: axes.cell_ids,
        genes: axes.genes,
        counts,
        centroids_um: vec![[f32::NAN; 2]; n_cells],
        nucleus_centroids_um: vec![None; n_cells],
    })
}

/// The `Protein Expression` features of a 10x HDF5 matrix (XOA ≥ 4) as a [`super::ProteinMatrix`]
/// (`[n_cells, n_markers]`, cells in [`read_10x_h5`]'s order), divided by the file's root
/// attribute `protein_scaling_factor` (XOA's 10 when the attribute is absent); `None` when the
/// file has no protein feature. Fails with the same [`DataError::Hdf5`] errors as
/// [`read_10x_h5`].
pub fn read_10x_h5_protein(path: &Path) -> Result<Option<super::ProteinMatrix>, DataError> {
    use super::protein::{ScalingSource, PROTEIN_EXPRESSION, XOA_PROTEIN_SCALING_FACTOR};
    let h5 = H5::open(path)?;
    let types = h5.read_strings("matrix/features/feature_type")?;
    if !types.iter().any(|t| t == PROTEIN_EXPRESSION) {
        return Ok(None);
    }
    let (n_features, n_barcodes, _) = read_matrix_axes(&h5)?;
    let names = h5.read_strings("matrix/features/name")?;
    let barcodes = h5.read_strings("matrix/barcodes")?;
    let factor = match h5.attrs("")?.get("protein_scaling_factor") {
        None => None,
        Some(v) => Some(match v {
            hdf5_pure::AttrValue::F64(f) => *f,
            hdf5_pure::AttrValue::F32(f) => f64::from(*f),
            hdf5_pure::AttrValue::I64(i) => *i as f64,
            hdf5_pure::AttrValue::I32(i) => f64::from(*i),
            hdf5_pure::AttrValue::U32(i) => f64::from(*i),
            hdf5_pure::AttrValue::U64(i) => *i as f64,
            other => return Err(h5.err("@protein_scaling_factor", format!("attribute is {other:?}, expected a number"))),
        }),
    };
    let (factor, source) = match factor {
        Some(f) if f > 0.0 => (f as f32, ScalingSource::Hdf5Attribute),
        Some(f) => return Err(h5.err("@protein_scaling_factor", format!("is {f}, expected a positive number"))),
        None => (XOA_PROTEIN_SCALING_FACTOR, ScalingSource::XoaDefault),
    };
    let data = h5.read_f32("matrix/data")?;
    let indptr = h5.read_i64("matrix/indptr")?;
    let indices = h5.read_i64("matrix/indices")?;
    let (offsets, rows) = check_compressed(&h5, "matrix", &indptr, &indices, data.len(), n_barcodes, n_features)?;
    let entries = offsets
        .windows(2)
        .enumerate()
        .flat_map(|(b, w)| (w[0]..w[1]).map(move |k| (b, k)))
        .map(|(b, k)| (b, rows[k], data[k]));
    Ok(super::ProteinMatrix::from_entries(&barcodes, &names, &types, entries, factor, source))
}

/// A 10x HDF5 cell-feature matrix opened for reading a block of cells at a time, for slides
/// too large to hold densely ([`read_10x_h5`] builds the `[cells, genes]` matrix).
///
/// `open` reads only the axes (barcodes, features) and the `[n_barcodes + 1]` offsets; the
/// file is not buffered (`hdf5-pure`'s streaming reader), so [`read_cells`](Self::read_cells)
/// reads just the gzip chunks of `data`/`indices` a block of barcodes overlaps. Memory is the
/// cell ids, the offsets and one block. Genes and cells follow [`read_10x_h5`]: kept genes
/// sorted alphabetically, cell ids in canonical order ([`canonical_row`](Self::canonical_row)
/// maps a barcode's position in the file to its row there); blocks are in file order.
pub struct TenxH5Cells {
    h5: H5,
    cell_ids: Vec<String>,
    cell_row: Vec<usize>,
    genes: Vec<String>,
    gene_col: Vec<Option<usize>>,
    offsets: Vec<u64>,
    n_features: usize,
}

impl TenxH5Cells {
    /// Opens `path` and reads its axes and offsets; fails with the same [`DataError::Hdf5`]
    /// errors as [`read_10x_h5`] for a bad layout, shape, offsets or duplicate names.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let h5 = H5::open_streaming(path)?;
        let (n_features, n_barcodes, axes) = read_matrix_axes(&h5)?;
        let nnz = h5.shape("matrix/data")?.iter().product::<usize>();
        let indices_len = h5.shape("matrix/indices")?.iter().product::<usize>();
        if indices_len != nnz {
            return Err(h5.err("matrix/indices", format!("has {indices_len} entries but `data` has {nnz}")));
        }
        let indptr = h5.read_i64("matrix/indptr")?;
        let offsets = check_offsets(&h5, "matrix", &indptr, nnz, n_barcodes)?;
        Ok(TenxH5Cells {
            h5,
            cell_ids: axes.cell_ids,
            cell_row: axes.cell_row,
            genes: axes.genes,
            gene_col: axes.gene_col,
            offsets: offsets.into_iter().map(|o| o as u64).collect(),
            n_features,
        })
    }

    /// Number of cells (barcodes).
    pub fn n_cells(&self) -> usize {
        self.cell_row.len()
    }

    /// Stored values in the file (every feature, controls included).
    pub fn nnz(&self) -> u64 {
        self.offsets.last().copied().unwrap_or(0)
    }

    /// Cell ids in canonical order (as [`read_10x_h5`] gives them).
    pub fn cell_ids(&self) -> &[String] {
        &self.cell_ids
    }

    /// Kept gene names, sorted (the columns of every block).
    pub fn genes(&self) -> &[String] {
        &self.genes
    }

    /// Canonical row (index into [`cell_ids`](Self::cell_ids)) of the barcode at position
    /// `i` of the file.
    pub fn canonical_row(&self, i: usize) -> usize {
        self.cell_row[i]
    }

    /// Counts of the barcodes at file positions `cells` as CSR `[cells.len(), genes]`
    /// (controls dropped, repeated entries summed, columns increasing). Fails with
    /// [`DataError::Hdf5`] on an out-of-range index or a negative / non-finite count, and
    /// with [`DataError::Shape`] when `cells` runs past the last barcode.
    pub fn read_cells(&self, cells: std::ops::Range<usize>) -> Result<super::CsrCounts, DataError> {
        if cells.start > cells.end || cells.end > self.n_cells() {
            return Err(DataError::Shape {
                what: "10x HDF5 block of barcodes (end of the range)",
                expected: self.n_cells(),
                found: cells.end,
            });
        }
        let (a, b) = (self.offsets[cells.start] as usize, self.offsets[cells.end] as usize);
        let data = if b > a { self.h5.read_f32_rows("matrix/data", a, b - a)? } else { Vec::new() };
        let indices = if b > a { self.h5.read_i64_rows("matrix/indices", a, b - a)? } else { Vec::new() };
        if data.len() != b - a || indices.len() != b - a {
            return Err(self.h5.err(
                "matrix/data",
                format!("entries {a}..{b} could not be read ({} values, {} indices)", data.len(), indices.len()),
            ));
        }
        let n_genes = self.genes.len();
        let mut acc = vec![0f32; n_genes];
        let mut touched: Vec<u32> = Vec::new();
        let mut out = super::CsrCounts {
            n_genes,
            indptr: Vec::with_capacity(cells.len() + 1),
            indices: Vec::with_capacity(b - a),
            data: Vec::with_capacity(b - a),
        };
        out.indptr.push(0);
        for c in cells {
            let (s, e) = (self.offsets[c] as usize - a, self.offsets[c + 1] as usize - a);
            for k in s..e {
                let (j, v) = (indices[k], data[k]);
                let f = usize::try_from(j).ok().filter(|&f| f < self.n_features).ok_or_else(|| {
                    self.h5.err("matrix/indices", format!("entry {} = {j} is out of range 0..{}", a + k, self.n_features))
                })?;
                if !(v.is_finite() && v >= 0.0) {
                    return Err(self.h5.err(
                        "matrix/data",
                        format!("entry {} = {v} is not a finite non-negative count", a + k),
                    ));
                }
                if let Some(g) = self.gene_col[f] {
                    if acc[g] == 0.0 && v != 0.0 {
                        touched.push(g as u32);
                    }
                    acc[g] += v;
                }
            }
            touched.sort_unstable();
            for &g in &touched {
                out.indices.push(g);
                out.data.push(acc[g as usize]);
                acc[g as usize] = 0.0;
            }
            touched.clear();
            out.indptr.push(out.indices.len() as u64);
        }
        Ok(out)
    }
}

/// Writes a 10x HDF5 cell-feature matrix (`matrix/{barcodes, data, indices, indptr, shape,
/// features/{id, name, feature_type, genome}}`, `data`/`indices` chunked and gzip-compressed
/// as Cell Ranger and Xenium write them) that [`read_10x_h5`] and [`TenxH5Cells`] read.
///
/// `counts` is `[barcodes, features]` in CSR (one row per barcode, i.e. the file's CSC
/// columns); `feature_types[j]` is e.g. `Gene Expression` or `Negative Control Probe`. The
/// file is built in memory and written atomically. Fails with [`DataError::Shape`] when the
/// lengths disagree and [`DataError::Hdf5Write`] when encoding fails.
pub fn write_10x_h5(
    path: &Path,
    barcodes: &[String],
    features: &[String],
    feature_types: &[String],
    counts: &super::CsrCounts,
) -> Result<(), DataError> {
    use hdf5_pure::FileBuilder;
    for (what, expected, found) in [
        ("10x HDF5 barcodes [rows of counts]", counts.n_cells(), barcodes.len()),
        ("10x HDF5 feature names [columns of counts]", counts.n_genes, features.len()),
        ("10x HDF5 feature types [features]", features.len(), feature_types.len()),
    ] {
        if expected != found {
            return Err(DataError::Shape { what, expected, found });
        }
    }
    const CHUNK: u64 = 1 << 16;
    let mut b = FileBuilder::new();
    let mut m = b.create_group("matrix");
    let fixed = |ds: &mut hdf5_pure::DatasetBuilder, v: &[String]| -> Result<(), DataError> {
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        ds.with_strings(&refs).map(|_| ()).map_err(|e| DataError::Hdf5Write {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    };
    fixed(m.create_dataset("barcodes"), barcodes)?;
    let nnz = counts.nnz() as u64;
    let data: Vec<i32> = counts.data.iter().map(|&v| v as i32).collect();
    let ds = m.create_dataset("data");
    ds.with_i32_data(&data);
    if nnz > 0 {
        ds.with_chunks(&[CHUNK.min(nnz)]).with_deflate(4);
    }
    let indices: Vec<i64> = counts.indices.iter().map(|&j| j as i64).collect();
    let ds = m.create_dataset("indices");
    ds.with_i64_data(&indices);
    if nnz > 0 {
        ds.with_chunks(&[CHUNK.min(nnz)]).with_deflate(4);
    }
    let indptr: Vec<i64> = counts.indptr.iter().map(|&o| o as i64).collect();
    m.create_dataset("indptr").with_i64_data(&indptr);
    m.create_dataset("shape").with_i32_data(&[features.len() as i32, barcodes.len() as i32]);
    let mut f = m.create_group("features");
    fixed(f.create_dataset("id"), features)?;
    fixed(f.create_dataset("name"), features)?;
    fixed(f.create_dataset("feature_type"), feature_types)?;
    fixed(f.create_dataset("genome"), &vec!["GRCh38".to_string(); features.len()])?;
    m.add_group(f.finish());
    b.add_group(m.finish());
    let bytes = b.finish().map_err(|e| DataError::Hdf5Write { path: path.to_path_buf(), message: e.to_string() })?;
    crate::util::atomic_write::write_atomic(path, &bytes).map_err(|e| DataError::io(path, std::io::Error::other(e.to_string())))
}
