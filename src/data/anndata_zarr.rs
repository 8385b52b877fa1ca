//! Per-cell predictions as an AnnData-zarr store (`OUT.zarr/`), the format Vitessce and
//! SpatialData tables read, and Python's `anndata.read_zarr` opens.
//!
//! The store is Zarr v2, uncompressed (`compressor: null`), one chunk per array, with
//! AnnData's on-disk encoding (`encoding-type` / `encoding-version` attributes):
//! `obs` a dataframe indexed by cell id with `predicted` (categorical) and `confidence`
//! (float32); `var` an empty dataframe (no `X`: predictions only); `obsm/spatial`
//! `[n_cells, 2]` µm when centroids are known. It is written into a temporary folder beside
//! the target and renamed into place, so a reader never sees half a store.

use std::path::Path;

use serde_json::{json, Value};

use super::error::DataError;
use super::predictions::Predictions;

struct Writer<'a> {
    root: &'a Path,
}

impl Writer<'_> {
    fn file(&self, key: &str, bytes: &[u8]) -> Result<(), DataError> {
        let p = self.root.join(key);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        }
        std::fs::write(&p, bytes).map_err(|e| DataError::io(&p, e))
    }

    fn json(&self, key: &str, v: &Value) -> Result<(), DataError> {
        self.file(key, v.to_string().as_bytes())
    }

    fn group(&self, name: &str, attrs: Value) -> Result<(), DataError> {
        let prefix = if name.is_empty() { String::new() } else { format!("{name}/") };
        self.json(&format!("{prefix}.zgroup"), &json!({ "zarr_format": 2 }))?;
        self.json(&format!("{prefix}.zattrs"), &attrs)
    }

    fn dict(&self, name: &str) -> Result<(), DataError> {
        self.group(name, json!({ "encoding-type": "dict", "encoding-version": "0.1.0" }))
    }

    /// A numeric array `shape` of `dtype` (`<f4`, `<i4`, …) from little-endian `bytes`.
    fn array(&self, name: &str, shape: &[usize], dtype: &str, fill: Value, bytes: &[u8]) -> Result<(), DataError> {
        let chunks: Vec<usize> = shape.iter().map(|&d| d.max(1)).collect();
        self.json(
            &format!("{name}/.zarray"),
            &json!({
                "zarr_format": 2, "shape": shape, "chunks": chunks, "dtype": dtype,
                "compressor": null, "fill_value": fill, "filters": null, "order": "C",
                "dimension_separator": ".",
            }),
        )?;
        self.json(&format!("{name}/.zattrs"), &json!({ "encoding-type": "array", "encoding-version": "0.2.0" }))?;
        if shape.iter().all(|&d| d > 0) {
            let key = vec!["0"; shape.len()].join(".");
            self.file(&format!("{name}/{key}"), bytes)?;
        }
        Ok(())
    }

    /// A string array (`|O` with numcodecs' `vlen-utf8` filter: item count, then each item's
    /// byte length and UTF-8 bytes, all little-endian u32).
    fn strings(&self, name: &str, values: &[String]) -> Result<(), DataError> {
        self.json(
            &format!("{name}/.zarray"),
            &json!({
                "zarr_format": 2, "shape": [values.len()], "chunks": [values.len().max(1)],
                "dtype": "|O", "compressor": null, "fill_value": 0,
                "filters": [{ "id": "vlen-utf8" }], "order": "C", "dimension_separator": ".",
            }),
        )?;
        self.json(&format!("{name}/.zattrs"), &json!({ "encoding-type": "string-array", "encoding-version": "0.2.0" }))?;
        if !values.is_empty() {
            let mut b = (values.len() as u32).to_le_bytes().to_vec();
            for v in values {
                b.extend_from_slice(&(v.len() as u32).to_le_bytes());
                b.extend_from_slice(v.as_bytes());
            }
            self.file(&format!("{name}/0"), &b)?;
        }
        Ok(())
    }

    fn dataframe(&self, name: &str, index: &[String], columns: &[&str]) -> Result<(), DataError> {
        self.group(
            name,
            json!({
                "_index": "_index", "column-order": columns,
                "encoding-type": "dataframe", "encoding-version": "0.2.0",
            }),
        )?;
        self.strings(&format!("{name}/_index"), index)
    }
}

fn f32_bytes(v: impl IntoIterator<Item = f32>) -> Vec<u8> {
    v.into_iter().flat_map(f32::to_le_bytes).collect()
}

/// Writes `p` as an AnnData-zarr store at `dir` (see the module docs for the layout),
/// replacing a store already there. Fails with [`DataError::Shape`] when the vectors differ in
/// length and [`DataError::Io`] when the folder cannot be written.
pub fn write_predictions_anndata_zarr(dir: &Path, p: &Predictions) -> Result<(), DataError> {
    p.check()?;
    let parent = match dir.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| DataError::io(&parent, e))?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out.zarr".into());
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempdir_in(&parent)
        .map_err(|e| DataError::io(&parent, e))?;
    let w = Writer { root: tmp.path() };
    w.group("", json!({ "encoding-type": "anndata", "encoding-version": "0.1.0" }))?;
    let n = p.n_cells();
    w.dataframe("obs", &p.cell_ids, &["predicted", "confidence"])?;
    let (classes, codes) = p.categories();
    w.group("obs/predicted", json!({ "encoding-type": "categorical", "encoding-version": "0.2.0", "ordered": false }))?;
    w.strings("obs/predicted/categories", &classes)?;
    let code_bytes: Vec<u8> = codes.iter().flat_map(|c| c.to_le_bytes()).collect();
    w.array("obs/predicted/codes", &[n], "<i4", json!(0), &code_bytes)?;
    w.array("obs/confidence", &[n], "<f4", json!(0.0), &f32_bytes(p.confidence.iter().copied()))?;
    w.dataframe("var", &[], &[])?;
    for d in ["obsm", "varm", "obsp", "varp", "layers", "uns"] {
        w.dict(d)?;
    }
    if let Some(c) = &p.centroids_um {
        w.array("obsm/spatial", &[n, 2], "<f4", json!(0.0), &f32_bytes(c.iter().flatten().copied()))?;
    }
    // Move the finished store into place; an existing store is moved aside first (a folder
    // cannot be renamed over a non-empty one) and removed after.
    let staged = tmp.keep();
    let mut old = None;
    if dir.exists() {
        let aside = parent.join(format!(".{name}.old.{}", std::process::id()));
        std::fs::rename(dir, &aside).map_err(|e| DataError::io(dir, e))?;
        old = Some(aside);
    }
    if let Err(e) = std::fs::rename(&staged, dir) {
        if let Some(aside) = &old {
            let _ = std::fs::rename(aside, dir);
        }
        let _ = std::fs::remove_dir_all(&staged);
        return Err(DataError::io(dir, e));
    }
    if let Some(aside) = old {
        let _ = std::fs::remove_dir_all(aside);
    }
    Ok(())
}
