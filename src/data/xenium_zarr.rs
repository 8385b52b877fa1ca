//! Xenium's zarr outputs (XOA ≥ 1.3, written beside the HDF5/MEX/parquet files for Xenium
//! Explorer): the cell × feature matrix of `cell_feature_matrix.zarr.zip` and the cell
//! centroids of `cells.zarr.zip`, read with [`super::zarr`] into the same [`CellTable`] (cells
//! and genes in canonical order) as every other layout, plus the protein channels.
//!
//! `cell_feature_matrix.zarr.zip`, group `cell_features`:
//! * attributes `feature_keys` (names), `feature_types`, `number_cells`, `number_features`
//!   (and `feature_ids`, versions);
//! * `cell_id` `[n_cells, 2]` uint32 (prefix, dataset suffix; see [`cell_id_string`]);
//! * `data`, `indices`, `indptr`: one compressed row per feature (`indptr` `[n_features + 1]`,
//!   `indices` the cell of each value) — a CSC cells × features matrix; XOA ≥ 2 adds the same
//!   per cell under `csc/`, which is not needed here.
//!
//! `cells.zarr.zip`, root: `cell_id` as above and `cell_summary` `[n_cells, k]` float64 whose
//! columns the attribute `column_names` names (`cell_centroid_x`, `cell_centroid_y`,
//! `cell_area`, `nucleus_centroid_x`, …, `nucleus_area`, `z_level`, `nucleus_count`).

#[cfg(feature = "native-io")]
use std::path::Path;

use serde_json::Value;

use super::cells_table::{CellsTable, CellsTableBuilder};
use super::error::DataError;
use super::mex::GENE_EXPRESSION;
use super::protein::{ProteinMatrix, ScalingSource, XOA_PROTEIN_SCALING_FACTOR};
use super::xenium::{canonical_axes, is_control_feature, CellTable};
use super::zarr::ZarrStore;

/// File name of the zarr cell-feature matrix in a Xenium bundle.
pub const CELL_FEATURE_MATRIX_ZARR: &str = "cell_feature_matrix.zarr.zip";
/// File name of the zarr cell summary (segmentation) in a Xenium bundle.
pub const CELLS_ZARR: &str = "cells.zarr.zip";

const MATRIX_EXPECTED: &str = "a Xenium cell_feature_matrix.zarr.zip: group cell_features with \
                               attributes feature_keys, feature_types and arrays cell_id, data, \
                               indices, indptr";

/// Xenium's text form of a numeric cell id: the prefix's 8 hex digits written with the
/// letters `a`–`p` (0 → a … f → p), a dash, the dataset suffix (e.g. `(1, 1)` → `aaaaaaab-1`).
pub fn cell_id_string(prefix: u32, suffix: u32) -> String {
    let hex: String = format!("{prefix:08x}")
        .bytes()
        .map(|c| {
            let d = if c.is_ascii_digit() { c - b'0' } else { c - b'a' + 10 };
            char::from(b'a' + d)
        })
        .collect();
    format!("{hex}-{suffix}")
}

/// The cell ids of array `name` (`[n, 2]` prefix/suffix pairs, or `[n]` integers of XOA < 1.3).
fn read_cell_ids(store: &ZarrStore<'_>, name: &str) -> Result<Vec<String>, DataError> {
    let (v, shape) = store.read_f64(name)?;
    match shape.as_slice() {
        [_] => Ok(v.iter().map(|&x| (x as u64).to_string()).collect()),
        [_, 2] => Ok(v.chunks(2).map(|p| cell_id_string(p[0] as u32, p[1] as u32)).collect()),
        s => Err(store.err(name, format!("an array of shape {s:?}"), "[n_cells, 2] (prefix, suffix) or [n_cells]")),
    }
}

fn string_list(store: &ZarrStore<'_>, attrs: &serde_json::Map<String, Value>, group: &str, key: &str) -> Result<Vec<String>, DataError> {
    let field = format!("{group}/.zattrs:{key}");
    match attrs.get(key) {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| store.err(&field, "a list with a non-string entry", "a list of strings")),
        Some(v) => Err(store.err(&field, v.to_string(), "a list of strings")),
        None => Err(store.err(&field, format!("missing (attributes: [{}])", attrs.keys().cloned().collect::<Vec<_>>().join(", ")), MATRIX_EXPECTED)),
    }
}

/// Reads `cell_feature_matrix.zarr.zip` (any [`ZarrStore`]) into the gene [`CellTable`]
/// (`[n_cells, n_genes]`, `Gene Expression` features that are not controls, cells and genes in
/// canonical order, centroids NaN until [`super::attach_centroids`]) and, when the matrix has
/// `Protein Expression` features, their [`ProteinMatrix`] (`[n_cells, n_markers]`, scaled back
/// by the store's `protein_scaling_factor` attribute, else by XOA's 10 for integer data).
///
/// Fails with [`DataError::ZarrLayout`] naming the array or attribute, what it holds and what
/// was expected (missing `cell_features`, lengths that disagree, an index out of range, a
/// negative or non-finite count) and [`DataError::Zip`] for a broken archive.
pub fn read_cell_feature_matrix_zarr(store: &ZarrStore<'_>) -> Result<(CellTable, Option<ProteinMatrix>), DataError> {
    let g = "cell_features";
    if !store.has("", g) {
        return Err(store.err(g, format!("missing (the store holds [{}])", store.listing().join(", ")), MATRIX_EXPECTED));
    }
    let attrs = store.attrs(g)?;
    let names = string_list(store, &attrs, g, "feature_keys")?;
    let types = string_list(store, &attrs, g, "feature_types")?;
    if types.len() != names.len() {
        return Err(store.err(&format!("{g}/.zattrs:feature_types"), format!("{} entries", types.len()), format!("{} (one per feature_keys entry)", names.len())));
    }
    let cells = read_cell_ids(store, &format!("{g}/cell_id"))?;
    let (n_cells, n_features) = (cells.len(), names.len());
    let data_array = store.array(&format!("{g}/data"))?;
    let data = store.read_array(&data_array)?;
    let (indices, _) = store.read_f64(&format!("{g}/indices"))?;
    let (indptr, _) = store.read_f64(&format!("{g}/indptr"))?;
    // One row per feature (XOA's layout); one row per cell is accepted too.
    let per_feature = indptr.len() == n_features + 1;
    let (n_major, n_minor) = if per_feature { (n_features, n_cells) } else { (n_cells, n_features) };
    if indptr.len() != n_major + 1 || indices.len() != data.len() {
        return Err(store.err(
            &format!("{g}/indptr"),
            format!("{} offsets for {} values and {} indices", indptr.len(), data.len(), indices.len()),
            format!("{} offsets (number of features + 1) and one index per value", n_features + 1),
        ));
    }
    let nnz = data.len() as f64;
    if indptr.first() != Some(&0.0) || indptr.last() != Some(&nnz) || indptr.windows(2).any(|w| w[1] < w[0]) {
        return Err(store.err(&format!("{g}/indptr"), "offsets that do not start at 0, decrease, or do not end at the number of values", "non-decreasing offsets from 0 to len(data)"));
    }
    let keep: Vec<bool> = names.iter().zip(&types).map(|(n, t)| t == GENE_EXPRESSION && !is_control_feature(n)).collect();
    let axes = canonical_axes(
        &cells,
        &names,
        &keep,
        |id| store.err(&format!("{g}/cell_id"), format!("cell `{id}` twice"), "unique cell ids"),
        |name| store.err(&format!("{g}/.zattrs:feature_keys"), format!("gene `{name}` twice"), "unique feature names"),
    )?;
    let n_genes = axes.genes.len();
    let mut counts = vec![0f32; n_cells * n_genes];
    let mut entries: Vec<(usize, usize, f32)> = Vec::new();
    let has_protein = types.iter().any(|t| t == super::protein::PROTEIN_EXPRESSION);
    for major in 0..n_major {
        for k in indptr[major] as usize..indptr[major + 1] as usize {
            let minor = indices[k];
            if !(minor >= 0.0 && (minor as usize) < n_minor) {
                return Err(store.err(&format!("{g}/indices"), format!("entry {k} = {minor}"), format!("an index below {n_minor}")));
            }
            let (f, c) = if per_feature { (major, minor as usize) } else { (minor as usize, major) };
            let v = data[k] as f32;
            if !v.is_finite() {
                return Err(store.err(&format!("{g}/data"), format!("entry {k} = {v}"), "finite values"));
            }
            if let Some(j) = axes.gene_col[f] {
                if v < 0.0 {
                    return Err(store.err(&format!("{g}/data"), format!("entry {k} = {v} (gene {})", names[f]), "non-negative counts"));
                }
                counts[axes.cell_row[c] * n_genes + j] += v;
            } else if has_protein {
                entries.push((c, f, v));
            }
        }
    }
    let protein = if has_protein {
        let attr = attrs.get("protein_scaling_factor").or(store.attrs("")?.get("protein_scaling_factor")).and_then(Value::as_f64);
        let integer = matches!(data_array.dtype.as_bytes().get(1), Some(b'u' | b'i'));
        let (factor, source) = match attr {
            Some(f) if f > 0.0 => (f as f32, ScalingSource::ZarrAttribute),
            _ if integer => (XOA_PROTEIN_SCALING_FACTOR, ScalingSource::XoaDefault),
            _ => (1.0, ScalingSource::Unscaled),
        };
        ProteinMatrix::from_entries(&cells, &names, &types, entries.into_iter(), factor, source)
    } else {
        None
    };
    let table = CellTable {
        cell_ids: axes.cell_ids,
        genes: axes.genes,
        counts,
        centroids_um: vec![[f32::NAN; 2]; n_cells],
        nucleus_centroids_um: vec![None; n_cells],
    };
    Ok((table, protein))
}

/// Reads the cell centroids (µm) and areas of `cells.zarr.zip` into a [`CellsTable`] (file
/// order), from `cell_id` and the `cell_summary` columns named by its `column_names`
/// attribute. Fails with [`DataError::ZarrLayout`] when an array or column is missing or the
/// lengths disagree.
pub fn read_cells_zarr(store: &ZarrStore<'_>) -> Result<CellsTable, DataError> {
    let ids = read_cell_ids(store, "cell_id")?;
    let (summary, shape) = store.read_f64("cell_summary")?;
    let attrs = store.attrs("cell_summary")?;
    let columns = string_list(store, &attrs, "cell_summary", "column_names")?;
    let k = shape.get(1).copied().unwrap_or(1);
    if shape[0] != ids.len() || columns.len() != k {
        return Err(store.err(
            "cell_summary",
            format!("shape {shape:?} with {} column names", columns.len()),
            format!("[{}, number of column_names] (one row per cell_id)", ids.len()),
        ));
    }
    let col = |name: &str| columns.iter().position(|c| c == name);
    let (Some(cx), Some(cy)) = (col("cell_centroid_x"), col("cell_centroid_y")) else {
        return Err(store.err("cell_summary/.zattrs:column_names", format!("[{}]", columns.join(", ")), "columns cell_centroid_x and cell_centroid_y"));
    };
    let optional = [col("cell_area"), col("nucleus_area"), None];
    let mut b = CellsTableBuilder::new(store.path(), optional.map(|c| c.is_some()));
    for (i, id) in ids.iter().enumerate() {
        let row = &summary[i * k..(i + 1) * k];
        b.push(id, [row[cx] as f32, row[cy] as f32], optional.map(|c| c.map(|c| row[c] as f32)));
    }
    b.finish()
}

/// Reads Xenium's zarr outputs from bytes (e.g. files dropped into a web page): the matrix of
/// `cell_feature_matrix.zarr.zip` and, when given, the centroids of `cells.zarr.zip`, attached
/// by cell id. `matrix_name` / `cells_name` are the files named in errors. The same readers
/// and errors as [`read_cell_feature_matrix_zarr`] and [`read_cells_zarr`], plus
/// [`DataError::MissingCells`] when a matrix cell has no centroid.
pub fn read_xenium_zarr_bytes(
    matrix_name: &str,
    matrix: &[u8],
    cells: Option<(&str, &[u8])>,
) -> Result<(CellTable, Option<ProteinMatrix>), DataError> {
    let (mut table, protein) = read_cell_feature_matrix_zarr(&ZarrStore::from_zip_bytes(matrix_name, matrix)?)?;
    if let Some((name, bytes)) = cells {
        let c = read_cells_zarr(&ZarrStore::from_zip_bytes(name, bytes)?)?;
        super::attach_centroids(&mut table, &c)?;
    }
    Ok((table, protein))
}

/// [`read_cell_feature_matrix_zarr`] on a `cell_feature_matrix.zarr.zip` file (or zarr folder).
#[cfg(feature = "native-io")]
pub fn read_cell_feature_matrix_zarr_file(path: &Path) -> Result<(CellTable, Option<ProteinMatrix>), DataError> {
    read_cell_feature_matrix_zarr(&ZarrStore::open(path)?)
}

/// [`read_cells_zarr`] on a `cells.zarr.zip` file (or zarr folder).
#[cfg(feature = "native-io")]
pub fn read_cells_zarr_file(path: &Path) -> Result<CellsTable, DataError> {
    read_cells_zarr(&ZarrStore::open(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_ids_use_the_shifted_hex_alphabet() {
        assert_eq!(cell_id_string(1, 1), "aaaaaaab-1");
        assert_eq!(cell_id_string(0xffff_ffff, 2), "pppppppp-2");
        assert_eq!(cell_id_string(0x0012_3abc, 1), "aabcdklm-1");
    }
}
