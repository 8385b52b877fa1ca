//! Per-cell predictions written as CSV or as an AnnData `.h5ad` (readable by Python
//! `anndata.read_h5ad`). Both writers are atomic: they write a temporary file beside the
//! target and rename it, so a reader never sees a half-written file.

use std::path::Path;

use hdf5_pure::{AttrValue, FileBuilder};

use super::error::DataError;

/// Predicted class and confidence per cell, all vectors of length `n_cells`.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// Cell ids (the `obs_names` of the `.h5ad`).
    pub cell_ids: Vec<String>,
    /// Predicted class name per cell.
    pub predicted: Vec<String>,
    /// Confidence of the prediction (e.g. the top softmax probability) per cell.
    pub confidence: Vec<f32>,
    /// Cell centroids `[x, y]` in µm (`obsm['spatial']` in the `.h5ad`), when known.
    pub centroids_um: Option<Vec<[f32; 2]>>,
}

impl Predictions {
    /// Number of cells.
    pub fn n_cells(&self) -> usize {
        self.cell_ids.len()
    }

    pub(crate) fn check(&self) -> Result<(), DataError> {
        let n = self.n_cells();
        let lens = [
            ("Predictions.predicted [n_cells]", self.predicted.len()),
            ("Predictions.confidence [n_cells]", self.confidence.len()),
            (
                "Predictions.centroids_um [n_cells]",
                self.centroids_um.as_ref().map_or(n, Vec::len),
            ),
        ];
        for (what, found) in lens {
            if found != n {
                return Err(DataError::Shape {
                    what,
                    expected: n,
                    found,
                });
            }
        }
        Ok(())
    }

    /// Distinct class names, sorted, and the code of each cell into them.
    pub(crate) fn categories(&self) -> (Vec<String>, Vec<i32>) {
        let mut classes: Vec<String> = self.predicted.clone();
        classes.sort();
        classes.dedup();
        let codes = self
            .predicted
            .iter()
            .map(|p| classes.binary_search(p).map_or(-1, |i| i as i32))
            .collect();
        (classes, codes)
    }
}

/// Writes `bytes` to `path` atomically (temporary file beside it, then rename), creating the
/// directory first.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    crate::util::write_atomic(path, bytes).map_err(DataError::from)
}

/// Writes `cell_id,[x_um,y_um,]predicted,confidence` (x/y only when centroids are known), one
/// row per cell, keyed by cell id; fields are quoted as CSV requires. Atomic (temp + rename).
/// Fails with [`DataError::Shape`] when the vectors differ in length.
pub fn write_predictions_csv(path: &Path, p: &Predictions) -> Result<(), DataError> {
    p.check()?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| DataError::io(path, std::io::Error::other(e.to_string()));
    if p.centroids_um.is_some() {
        w.write_record(["cell_id", "x_um", "y_um", "predicted", "confidence"])
    } else {
        w.write_record(["cell_id", "predicted", "confidence"])
    }
    .map_err(csv_err)?;
    for i in 0..p.n_cells() {
        let conf = p.confidence[i].to_string();
        match &p.centroids_um {
            Some(c) => w.write_record([
                p.cell_ids[i].as_str(),
                &format!("{:.2}", c[i][0]),
                &format!("{:.2}", c[i][1]),
                &p.predicted[i],
                &conf,
            ]),
            None => w.write_record([p.cell_ids[i].as_str(), &p.predicted[i], &conf]),
        }
        .map_err(csv_err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| DataError::io(path, std::io::Error::other(e.to_string())))?;
    write_atomic(path, &bytes)
}

fn enc(kind: &str, version: &str) -> [(&'static str, AttrValue); 2] {
    [
        ("encoding-type", AttrValue::VarLenString(kind.into())),
        ("encoding-version", AttrValue::VarLenString(version.into())),
    ]
}

/// Writes the predictions as an AnnData `.h5ad` (anndata ≥ 0.8 encoding, no `X`, zero `var`):
/// `obs_names` = cell ids, `obs['predicted']` categorical (sorted class names),
/// `obs['confidence']` float32 and, when centroids are known, `obsm['spatial']`
/// `[n_cells, 2]` float32 in µm. Atomic (temp + rename). Fails with [`DataError::Shape`] when
/// the vectors differ in length and [`DataError::Hdf5Write`] when encoding fails.
pub fn write_predictions_h5ad(path: &Path, p: &Predictions) -> Result<(), DataError> {
    p.check()?;
    let (classes, codes) = p.categories();
    let mut b = FileBuilder::new();
    for (k, v) in enc("anndata", "0.1.0") {
        b.set_attr(k, v);
    }

    let mut obs = b.create_group("obs");
    for (k, v) in enc("dataframe", "0.2.0") {
        obs.set_attr(k, v);
    }
    obs.set_attr("_index", AttrValue::VarLenString("_index".into()));
    obs.set_attr(
        "column-order",
        AttrValue::VarLenStringArray(vec!["predicted".into(), "confidence".into()]),
    );
    let ids: Vec<&str> = p.cell_ids.iter().map(String::as_str).collect();
    let ds = obs.create_dataset("_index");
    ds.with_vlen_strings(&ids);
    for (k, v) in enc("string-array", "0.2.0") {
        ds.set_attr(k, v);
    }
    let ds = obs.create_dataset("confidence");
    ds.with_f32_data(&p.confidence);
    for (k, v) in enc("array", "0.2.0") {
        ds.set_attr(k, v);
    }
    let mut cat = obs.create_group("predicted");
    for (k, v) in enc("categorical", "0.2.0") {
        cat.set_attr(k, v);
    }
    cat.set_attr("ordered", AttrValue::U8(0));
    let ds = cat.create_dataset("codes");
    ds.with_i32_data(&codes);
    for (k, v) in enc("array", "0.2.0") {
        ds.set_attr(k, v);
    }
    let names: Vec<&str> = classes.iter().map(String::as_str).collect();
    let ds = cat.create_dataset("categories");
    ds.with_vlen_strings(&names);
    for (k, v) in enc("string-array", "0.2.0") {
        ds.set_attr(k, v);
    }
    obs.add_group(cat.finish());
    b.add_group(obs.finish());

    let mut var = b.create_group("var");
    for (k, v) in enc("dataframe", "0.2.0") {
        var.set_attr(k, v);
    }
    var.set_attr("_index", AttrValue::VarLenString("_index".into()));
    var.set_attr("column-order", AttrValue::F64Array(Vec::new()));
    let ds = var.create_dataset("_index");
    ds.with_vlen_strings(&[]);
    for (k, v) in enc("string-array", "0.2.0") {
        ds.set_attr(k, v);
    }
    b.add_group(var.finish());

    let mut obsm = b.create_group("obsm");
    for (k, v) in enc("dict", "0.1.0") {
        obsm.set_attr(k, v);
    }
    if let Some(c) = &p.centroids_um {
        let flat: Vec<f32> = c.iter().flatten().copied().collect();
        let ds = obsm.create_dataset("spatial");
        ds.with_f32_data(&flat).with_shape(&[c.len() as u64, 2]);
        for (k, v) in enc("array", "0.2.0") {
            ds.set_attr(k, v);
        }
    }
    b.add_group(obsm.finish());
    for name in ["uns", "layers", "obsp", "varm", "varp"] {
        let mut g = b.create_group(name);
        for (k, v) in enc("dict", "0.1.0") {
            g.set_attr(k, v);
        }
        b.add_group(g.finish());
    }
    let bytes = b.finish().map_err(|e| DataError::Hdf5Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}
