//! Whole-slide classification with bounded memory: a Xenium bundle's cells go through a model
//! a block at a time, so memory holds the cell ids, centroids and one block of counts, and
//! grows only with the per-cell output (class and confidence, 8 bytes a cell).
//!
//! The matrix is read block by block from `cell_feature_matrix.h5` ([`TenxH5Cells`]: only
//! the gzip chunks a block overlaps are decompressed); a MEX matrix is read once as CSR
//! ([`crate::data::read_mex_dir_csr`], ~1.2× the CSR size) and then run block by block.
//! Cells are not labelled against a reference here (that needs every cell's expression at
//! once); use the in-memory path (`classify` without `--stream`) for that.

use std::io::Write;
use std::path::Path;

use super::TrainError;
use crate::data::{self, CellInput, CountsInput, CsrCounts, MatrixSource, TenxH5Cells, XeniumBundle};
use crate::engine::{softmax_max, EngineModel, PreparedCells, UNCLASSIFIED, UNCLASSIFIED_LABEL};

/// Where a slide's counts come from, one block of cells at a time.
enum SlideMatrix {
    /// Windowed reads of `cell_feature_matrix.h5`; blocks in file order.
    H5(TenxH5Cells),
    /// A MEX matrix read once as CSR, rows in canonical order.
    Csr(data::SparseCellMatrix),
}

impl SlideMatrix {
    fn n_cells(&self) -> usize {
        match self {
            SlideMatrix::H5(m) => m.n_cells(),
            SlideMatrix::Csr(m) => m.cell_ids.len(),
        }
    }
    fn cell_ids(&self) -> &[String] {
        match self {
            SlideMatrix::H5(m) => m.cell_ids(),
            SlideMatrix::Csr(m) => &m.cell_ids,
        }
    }
    fn genes(&self) -> &[String] {
        match self {
            SlideMatrix::H5(m) => m.genes(),
            SlideMatrix::Csr(m) => &m.genes,
        }
    }
    /// Canonical row of the cell at block position `i`.
    fn row(&self, i: usize) -> usize {
        match self {
            SlideMatrix::H5(m) => m.canonical_row(i),
            SlideMatrix::Csr(_) => i,
        }
    }
    fn block(&self, cells: std::ops::Range<usize>) -> Result<CsrCounts, data::DataError> {
        match self {
            SlideMatrix::H5(m) => m.read_cells(cells),
            SlideMatrix::Csr(m) => {
                let c = &m.counts;
                let (a, b) = (c.indptr[cells.start] as usize, c.indptr[cells.end] as usize);
                Ok(CsrCounts {
                    n_genes: c.n_genes,
                    indptr: c.indptr[cells.start..=cells.end].iter().map(|&o| o - a as u64).collect(),
                    indices: c.indices[a..b].to_vec(),
                    data: c.data[a..b].to_vec(),
                })
            }
        }
    }
}

/// One block of cells as the model reads them, handed to the caller's forward pass.
pub struct SlideBlock<'a> {
    /// The engine's prepared input for the block ([`EngineModel::prepare`]).
    pub cells: PreparedCells<'a>,
    /// Centroids `[cells, 2]` µm of the block (NaN when the bundle has no cells table).
    pub centroids_um: Vec<f32>,
}

/// Every cell's prediction, in the canonical cell order of the bundle readers.
#[derive(Debug, Clone)]
pub struct SlidePredictions {
    /// Cell ids `[cells]`.
    pub cell_ids: Vec<String>,
    /// Centroids `[cells]` `[x, y]` µm (NaN when the bundle has no cells table).
    pub centroids_um: Vec<[f32; 2]>,
    /// Class index per cell `[cells]` into the model's classes; [`UNCLASSIFIED`] for a cell
    /// without counts over the model's genes.
    pub classes: Vec<u32>,
    /// Softmax probability of the class `[cells]` (0 when unclassified).
    pub confidence: Vec<f32>,
    /// Stored values of the matrix (all features).
    pub nnz: u64,
    /// Seconds in the forward passes (the rest is reading and preparing).
    pub forward_seconds: f64,
}

/// The bundle's cells through `forward` in blocks of `block_cells` (see the module docs).
///
/// `forward` gets each block ([`SlideBlock`]) and returns its logits `[cells, classes]`;
/// `progress(done, total)` is called after each block. Fails with [`TrainError::Options`] for
/// a model that reads morphology patches or a bundle whose counts would have to be aggregated
/// from transcripts, with [`data::DataError::PanelMismatch`] when the bundle lacks model genes,
/// and with the reader's error (naming file, dataset and entry) on a bad matrix.
pub fn classify_slide(
    bundle_dir: &Path,
    model: &EngineModel,
    model_path: &Path,
    block_cells: usize,
    forward: &mut dyn FnMut(&SlideBlock<'_>) -> Result<Vec<f32>, TrainError>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SlidePredictions, TrainError> {
    if model.meta.config.morphology.is_some() {
        return Err(TrainError::Options(format!(
            "the {} model reads DAPI patches; whole-slide streaming classifies count models only (run classify without --stream)",
            model.meta.architecture
        )));
    }
    let bundle = XeniumBundle::open(bundle_dir)?;
    let matrix = match &bundle.matrix {
        MatrixSource::Hdf5(p) => SlideMatrix::H5(TenxH5Cells::open(p)?),
        MatrixSource::Mex(p) => SlideMatrix::Csr(data::read_mex_dir_csr(p)?),
        MatrixSource::Zarr(p) => {
            let t = data::read_cell_feature_matrix_zarr_file(p)?.0;
            let counts = data::CsrCounts::from_dense(&t.counts, t.n_genes());
            SlideMatrix::Csr(data::SparseCellMatrix { cell_ids: t.cell_ids, genes: t.genes, counts })
        }
        MatrixSource::Transcripts(p) => {
            return Err(TrainError::Options(format!(
                "{}: the bundle has no cell_feature_matrix.h5 or cell_feature_matrix/, only transcripts ({}); \
                 streaming needs a matrix: run classify without --stream",
                bundle_dir.display(),
                p.display()
            )))
        }
    };
    data::check_model_panel(matrix.genes(), bundle_dir, &model.meta.genes, model_path)?;
    let n = matrix.n_cells();
    let centroids = match &bundle.cells {
        Some(p) => {
            let cells = data::read_cells_table(p)?;
            centroids_by_id(matrix.cell_ids(), &cells)?
        }
        None => vec![[f32::NAN; 2]; n],
    };
    let k = model.meta.classes.len();
    let mut classes = vec![UNCLASSIFIED; n];
    let mut confidence = vec![0f32; n];
    let mut forward_seconds = 0.0;
    let spatial = model.meta.config.spatial.is_some();
    let block_cells = block_cells.max(1);
    let mut start = 0;
    while start < n {
        let end = (start + block_cells).min(n);
        let csr = matrix.block(start..end)?;
        let indptr: Vec<u32> = csr.indptr.iter().map(|&o| o as u32).collect();
        let rows: Vec<usize> = (start..end).map(|i| matrix.row(i)).collect();
        let centroids_um: Vec<f32> = rows.iter().flat_map(|&r| centroids[r]).collect();
        let input = CellInput {
            counts: CountsInput::Csr { indptr: &indptr, indices: &csr.indices, data: &csr.data, n_cells: end - start, n_genes: csr.n_genes },
            genes: matrix.genes(),
            centroids_um: spatial.then_some(centroids_um.as_slice()),
            patches: None,
            proteins: None,
        };
        let cells = model.prepare(input)?.into_owned();
        let block = SlideBlock { cells, centroids_um };
        let t = std::time::Instant::now();
        let logits = forward(&block)?;
        forward_seconds += t.elapsed().as_secs_f64();
        if logits.len() != (end - start) * k {
            return Err(TrainError::Options(format!(
                "the forward pass returned {} logits for {} cells × {k} classes",
                logits.len(),
                end - start
            )));
        }
        let best = crate::util::argmax_rows(&logits, k);
        for (j, row) in logits.chunks_exact(k).enumerate() {
            if !block.cells.no_counts.get(j).copied().unwrap_or(false) {
                classes[rows[j]] = best[j];
                confidence[rows[j]] = softmax_max(row);
            }
        }
        start = end;
        progress(start, n);
    }
    let nnz = match &matrix {
        SlideMatrix::H5(m) => m.nnz(),
        SlideMatrix::Csr(m) => m.counts.nnz() as u64,
    };
    let cell_ids = match matrix {
        SlideMatrix::H5(m) => m.cell_ids().to_vec(),
        SlideMatrix::Csr(m) => m.cell_ids,
    };
    Ok(SlidePredictions { cell_ids, centroids_um: centroids, classes, confidence, nnz, forward_seconds })
}

/// Centroids of `ids` from a cells table, matched by id (a table in the same order is taken as
/// is); a cell absent from the table is [`data::DataError::MissingCells`].
fn centroids_by_id(ids: &[String], cells: &data::CellsTable) -> Result<Vec<[f32; 2]>, data::DataError> {
    if cells.ids.len() == ids.len() && cells.ids.iter().zip(ids).all(|(a, b)| a == b) {
        return Ok(cells.centroids_um.clone());
    }
    let index: std::collections::HashMap<&str, usize> = cells.ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let mut out = Vec::with_capacity(ids.len());
    let mut missing = Vec::new();
    for id in ids {
        match index.get(id.as_str()) {
            Some(&i) => out.push(cells.centroids_um[i]),
            None => missing.push(id.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(data::DataError::MissingCells { path: cells.path.clone(), n_missing: missing.len(), missing });
    }
    Ok(out)
}

/// Writes `cell_id,x_um,y_um,predicted,confidence,reference_label` (the columns of
/// `classify`'s CSV; `reference_label` is empty: streamed cells are not labelled against a
/// reference), one row per cell, streamed to a temporary file renamed over `path`.
pub fn write_slide_predictions(path: &Path, p: &SlidePredictions, class_names: &[String]) -> Result<(), TrainError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::Io { path: dir.display().to_string(), source: e })?;
    }
    let file = crate::util::AtomicFile::create(path)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let io = |e: std::io::Error| TrainError::Io { path: path.display().to_string(), source: e };
    w.write_all(b"cell_id,x_um,y_um,predicted,confidence,reference_label\n").map_err(io)?;
    for i in 0..p.cell_ids.len() {
        let [x, y] = p.centroids_um[i];
        match class_names.get(p.classes[i] as usize) {
            Some(name) => writeln!(w, "{},{x:.2},{y:.2},{name},{:.4},", p.cell_ids[i], p.confidence[i]),
            None => writeln!(w, "{},{x:.2},{y:.2},{UNCLASSIFIED_LABEL},,", p.cell_ids[i]),
        }
        .map_err(io)?;
    }
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.commit()?;
    Ok(())
}
