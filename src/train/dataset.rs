//! From the Xenium crop to a labelled training set.
//!
//! Labels come from a reference by SingleR-style correlation (there are no expert labels for
//! this crop); ambiguous cells (low score margin), cells with too few transcripts and classes
//! with too few cells are excluded and counted.

use std::path::Path;

use serde::Serialize;

use super::TrainError;
use crate::analysis::{self, Annotation, SingleROptions};
use crate::data::{self, CellTable, TranscriptOptions};

/// Target library size of the log1p-cp10k normalisation.
pub const TARGET_SUM: f32 = 1e4;

/// How cells are labelled and filtered.
#[derive(Debug, Clone)]
pub struct LabelOptions {
    /// Transcript filter.
    pub transcripts: TranscriptOptions,
    /// Cells with fewer transcripts are excluded as low quality.
    pub min_counts: f32,
    /// Classes with fewer labelled cells are excluded (they cannot be split and learned).
    pub min_class_cells: usize,
    /// Reference annotation settings.
    pub singler: SingleROptions,
    /// The model that will classify these cells (`classify`): its panel is checked against
    /// the data's right after reading, before the cells are labelled against the reference,
    /// so a data/model mismatch is reported as such ([`data::DataError::PanelMismatch`]).
    pub model_panel: Option<ModelPanel>,
    /// Read the bundle's protein channels (XOA ≥ 4 "Protein Expression" features) into
    /// [`PreparedCrop::protein`]; a bundle without them is then an error.
    pub proteins: bool,
}

/// A model file's gene panel, for [`LabelOptions::model_panel`].
#[derive(Debug, Clone)]
pub struct ModelPanel {
    /// The model's genes.
    pub genes: Vec<String>,
    /// The model file (named in errors).
    pub path: std::path::PathBuf,
}

impl Default for LabelOptions {
    fn default() -> Self {
        Self {
            transcripts: TranscriptOptions::default(),
            min_counts: 10.0,
            min_class_cells: 10,
            singler: SingleROptions::default(),
            model_panel: None,
            proteins: false,
        }
    }
}

/// Why cells were left out, and what remains.
#[derive(Debug, Clone, Serialize)]
pub struct LabelSummary {
    /// Cells read.
    pub cells: usize,
    /// Cells with fewer than `min_counts` transcripts.
    pub low_counts: usize,
    /// Cells whose best reference label was not clearly better than the runner-up.
    pub ambiguous: usize,
    /// Classes dropped for having fewer than `min_class_cells` cells, with their counts.
    pub rare_classes: Vec<(String, usize)>,
    /// Labelled cells per kept class, in class order.
    pub class_counts: Vec<(String, usize)>,
}

/// The crop, normalised and labelled.
pub struct PreparedCrop {
    /// Cells × genes counts and centroids.
    pub table: CellTable,
    /// Model input `[cells, genes]`: `table.counts` transformed by `normalisation`.
    pub x_norm: Vec<f32>,
    /// How `x_norm` was made from `table.counts`; recorded in exported model files so every
    /// engine feeds the model the same transform.
    pub normalisation: crate::engine::Normalisation,
    /// Raw reference annotation for every cell.
    pub annotation: Annotation,
    /// Class index per cell, `None` when excluded.
    pub labels: Vec<Option<u32>>,
    /// Kept class names (sorted).
    pub class_names: Vec<String>,
    /// Counts of what was excluded and kept.
    pub summary: LabelSummary,
    /// The Xenium folder the cells were read from (morphology patches come from its DAPI
    /// image, see [`data::XeniumBundle::read_dapi`]); empty when not read from a bundle.
    pub source: std::path::PathBuf,
    /// The protein channels, rows in `table.cell_ids` order (read when
    /// [`LabelOptions::proteins`] is set), else `None`.
    pub protein: Option<data::ProteinMatrix>,
}

/// Read the BIDCell crop under `data_dir` (the unpacked bidcell data, see
/// `scripts/fetch_data.sh`) through the Xenium bundle reader, label its cells against
/// `sc_breast.csv` and build the training set.
pub fn prepare_crop(data_dir: &Path, opts: &LabelOptions) -> Result<PreparedCrop, TrainError> {
    let files = data::BidcellData::locate(data_dir)?;
    let crop_dir = files.transcripts.parent().unwrap_or(data_dir);
    prepare_bundle(crop_dir, &files.reference, opts)
}

/// Read any Xenium output folder with [`data::XeniumBundle`] (MEX / HDF5 matrix or
/// transcripts, cells table, …), label its cells against the reference CSV `reference`
/// (genes × profiles with a `cell_type` column) and build the training set.
pub fn prepare_bundle(bundle_dir: &Path, reference: &Path, opts: &LabelOptions) -> Result<PreparedCrop, TrainError> {
    let bundle = data::XeniumBundle::open(bundle_dir)?;
    let table = bundle.read_cells(&opts.transcripts)?;
    if let Some(m) = &opts.model_panel {
        data::check_model_panel(&table.genes, bundle_dir, &m.genes, &m.path)?;
    }
    let reference = data::read_reference_csv(reference)?;
    let g = table.n_genes();
    let normalisation = crate::engine::Normalisation::log1p_with_target_sum(TARGET_SUM as f64);
    let x_norm = normalisation.apply(&table.counts, g, &table.genes)?;
    let annotation = analysis::annotate_singler(&table.genes, &x_norm, &reference, &opts.singler)
        .map_err(|e| TrainError::Analysis(e.to_string()))?;
    let protein = if opts.proteins { read_protein_rows(&bundle, bundle_dir, &table.cell_ids)? } else { None };
    let mut crop = label_cells(table, x_norm, annotation, opts);
    crop.source = bundle_dir.to_path_buf();
    crop.protein = protein;
    Ok(crop)
}

/// The bundle's protein channels with rows in the order of `cell_ids` (the gene table's);
/// `None` when the bundle has no protein features. Errors when a cell has no protein row.
fn read_protein_rows(bundle: &data::XeniumBundle, dir: &Path, cell_ids: &[String]) -> Result<Option<data::ProteinMatrix>, TrainError> {
    let Some(p) = bundle.read_protein()? else {
        return Ok(None);
    };
    if p.cell_ids == cell_ids {
        return Ok(Some(p));
    }
    let row: std::collections::HashMap<&str, usize> = p.cell_ids.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
    let m = p.n_markers();
    let mut values = Vec::with_capacity(cell_ids.len() * m);
    for id in cell_ids {
        let r = *row.get(id.as_str()).ok_or_else(|| {
            TrainError::Options(format!(
                "{}: cell {id:?} has counts but no row in the protein matrix ({} cells); the protein channels must cover every cell",
                dir.display(),
                p.n_cells()
            ))
        })?;
        values.extend_from_slice(&p.values[r * m..(r + 1) * m]);
    }
    Ok(Some(data::ProteinMatrix { cell_ids: cell_ids.to_vec(), values, ..p }))
}

/// The model input with protein channels appended, `[cells, G + P]`: each row of
/// `crop.x_norm` followed by the cell's `(asinh(v / cofactor) − mean) / std` per marker, with
/// mean and std from the training cells `train_idx` only. Returns it with the
/// [`crate::engine::ProteinChannels`] to record in the model file (`meta.proteins`), which
/// every engine applies the same way. Errors when `crop.protein` is `None` (the data has no
/// protein channels, or they were not read).
pub fn with_protein_channels(
    crop: &PreparedCrop,
    train_idx: &[usize],
    cofactor: f64,
) -> Result<(Vec<f32>, crate::engine::ProteinChannels), TrainError> {
    let p = crop.protein.as_ref().ok_or_else(|| {
        TrainError::Options(format!(
            "{}: --protein needs \"Protein Expression\" features (Xenium In Situ Gene and Protein, XOA ≥ 4) in \
             cell_feature_matrix.h5 or cell_feature_matrix.zarr.zip, and none were read; train without --protein",
            crop.source.display()
        ))
    })?;
    if !(cofactor.is_finite() && cofactor > 0.0) {
        return Err(TrainError::Options(format!("--protein-cofactor {cofactor}: pass a finite number > 0 (e.g. 5)")));
    }
    let channels = crate::engine::ProteinChannels::fit(p.markers.clone(), &p.values, train_idx, cofactor);
    let x = crate::engine::ProteinChannels::append(&crop.x_norm, crop.table.n_genes(), &channels.apply(&p.values), p.n_markers());
    Ok((x, channels))
}

/// Read an AnnData `.h5ad` with expert labels in the categorical `obs[label_key]` column.
///
/// `X` is used as the model input **as stored** (e.g. scanpy's `pbmc68k_reduced` holds scaled
/// log-normalised values, not counts), so `x_norm` is `X` and `table.counts` too. The
/// annotation records the expert labels (no reference scores). Cells without a label and
/// classes with fewer than `opts.min_class_cells` cells are excluded. Same as
/// [`prepare_h5ad_with`] with [`crate::engine::Normalisation::as_stored`].
pub fn prepare_h5ad(path: &Path, label_key: &str, opts: &LabelOptions) -> Result<PreparedCrop, TrainError> {
    prepare_h5ad_with(path, label_key, opts, &crate::engine::Normalisation::as_stored())
}

/// [`prepare_h5ad`] with the model input `x_norm = normalisation.apply(X)`: `log1p_cp10k` for
/// counts, `arcsinh` (with a cofactor) for protein intensities, `as_stored` for values already
/// normalised. `table.counts` keeps `X` as read and `normalisation` is recorded (exported
/// model files apply it to the caller's values). Centroids come from `obsm['spatial']` (the
/// file's units) when present, else NaN.
pub fn prepare_h5ad_with(
    path: &Path,
    label_key: &str,
    opts: &LabelOptions,
    normalisation: &crate::engine::Normalisation,
) -> Result<PreparedCrop, TrainError> {
    let a = data::read_h5ad(path)?;
    let x = a.dense_x()?;
    let n = a.n_obs();
    let column = a.obs_column(label_key).ok_or_else(|| {
        TrainError::Options(format!(
            "{}: obs has no column `{label_key}`; columns are [{}]",
            path.display(),
            a.obs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })?;
    let labels: Vec<Option<String>> = match column {
        data::ColumnValues::Categorical(c) => (0..n).map(|i| c.label(i).map(str::to_string)).collect(),
        data::ColumnValues::Text(t) => t.iter().map(|v| Some(v.clone()).filter(|v| !v.is_empty())).collect(),
        _ => {
            return Err(TrainError::Options(format!(
                "{}: obs column `{label_key}` is not categorical or text; pick a label column",
                path.display()
            )))
        }
    };
    let table = CellTable {
        cell_ids: a.obs_names.clone(),
        genes: a.var_names.clone(),
        counts: x.clone(),
        centroids_um: a.spatial().unwrap_or_else(|| vec![[f32::NAN; 2]; n]),
        nucleus_centroids_um: vec![None; n],
    };
    let x = normalisation.apply(&x, table.n_genes(), &table.genes).map_err(|e| {
        TrainError::Options(format!(
            "{}: X cannot be normalised as {}: {e}; pick another --normalisation",
            path.display(),
            serde_json::to_string(normalisation).unwrap_or_default()
        ))
    })?;
    let mut names: Vec<String> = labels.iter().flatten().cloned().collect();
    names.sort();
    names.dedup();
    let annotation = Annotation {
        best: labels.iter().map(|l| l.clone().unwrap_or_default()).collect(),
        next_best: vec![String::new(); n],
        delta: vec![f32::NAN; n],
        delta_median: vec![f32::NAN; n],
        low_margin: vec![false; n],
        pruned: labels.iter().map(Option::is_none).collect(),
        scores: Vec::new(),
        label_names: names,
        n_common_genes: a.n_vars(),
        n_marker_genes: 0,
        labels,
    };
    // Expert labels: no count filter (X is not counts).
    let opts = LabelOptions { min_counts: f32::NEG_INFINITY, ..opts.clone() };
    let mut prepared = label_cells(table, x, annotation, &opts);
    // Every engine feeds the model X through the same transform.
    prepared.normalisation = normalisation.clone();
    Ok(prepared)
}

/// Turn an annotation into class indices, excluding low-count cells, ambiguous cells and rare
/// classes.
pub fn label_cells(table: CellTable, x_norm: Vec<f32>, annotation: Annotation, opts: &LabelOptions) -> PreparedCrop {
    let g = table.n_genes();
    let totals: Vec<f32> = table.counts.chunks(g).map(|r| r.iter().sum()).collect();
    let mut low_counts = 0;
    let mut ambiguous = 0;
    let mut kept: Vec<Option<&str>> = Vec::with_capacity(totals.len());
    for (i, &total) in totals.iter().enumerate() {
        if total < opts.min_counts {
            low_counts += 1;
            kept.push(None);
        } else if let Some(l) = &annotation.labels[i] {
            kept.push(Some(l.as_str()));
        } else {
            ambiguous += 1;
            kept.push(None);
        }
    }
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for l in kept.iter().flatten() {
        *counts.entry(l).or_default() += 1;
    }
    let rare_classes: Vec<(String, usize)> = counts
        .iter()
        .filter(|(_, &n)| n < opts.min_class_cells)
        .map(|(k, &n)| (k.to_string(), n))
        .collect();
    let class_names: Vec<String> = counts
        .iter()
        .filter(|(_, &n)| n >= opts.min_class_cells)
        .map(|(k, _)| k.to_string())
        .collect();
    let labels: Vec<Option<u32>> = kept
        .iter()
        .map(|l| l.and_then(|l| class_names.iter().position(|c| c == l).map(|p| p as u32)))
        .collect();
    let class_counts = class_names
        .iter()
        .map(|c| (c.clone(), counts[c.as_str()]))
        .collect();
    let summary = LabelSummary {
        cells: totals.len(),
        low_counts,
        ambiguous,
        rare_classes,
        class_counts,
    };
    PreparedCrop {
        table,
        x_norm,
        normalisation: crate::engine::Normalisation::log1p_with_target_sum(TARGET_SUM as f64),
        annotation,
        labels,
        class_names,
        summary,
        source: Default::default(),
        protein: None,
    }
}
