//! The web demo's data bundle (`www/data/`): what the page and the browser test read.

use std::path::Path;

use super::benchmark::write_atomic;
use super::dataset::PreparedCrop;
use super::metrics::ClassificationReport;
use super::TrainError;
use crate::data;
use crate::engine::EngineModel;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.display().to_string(), source }
}

/// Web-demo bundle in `dir`: the int8 model file at `model_path`, raw counts, the same cells as
/// Xenium files (MEX + cells.csv.gz), the cell table, a DAPI PNG and the native predictions
/// (`predicted` class index per cell, from `engine_name`) the browser test compares against.
pub fn write_www_bundle(
    dir: &Path,
    data_dir: &Path,
    model_path: &Path,
    model: &EngineModel,
    crop: &PreparedCrop,
    predicted: &[u32],
    engine_name: &str,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // An evaluation left by an earlier model would describe another model than this one.
    let stale = dir.join(WWW_EVALUATION_FILE);
    if stale.exists() {
        std::fs::remove_file(&stale).map_err(io(&stale))?;
    }
    let bytes = std::fs::read(model_path).map_err(io(model_path))?;
    write_atomic(&dir.join("model.int8.safetensors"), bytes)?;
    let counts: Vec<u8> = crop.table.counts.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_atomic(&dir.join("counts.f32"), counts)?;
    // The same cells as Xenium files (MEX matrix + cells.csv, gzipped): the browser test reads
    // them with readXeniumMex / readXeniumCells, like files a user drops into the page.
    data::write_mex_dir(&crop.table, &dir.join("mex"), true)?;
    data::write_cells_csv(&crop.table, &dir.join("cells.csv.gz"), true)?;
    let image_path = data::BidcellData::locate(data_dir)?.morphology;
    let image = data::read_tiff_gray16(&image_path)?;
    let frame = data::XENIUM_CROP_FRAME;
    let factor = 2usize;
    let stretch = data::downsample_to_png(&image, factor, &dir.join("dapi.png"))?;
    let json = serde_json::json!({
        "dataset": "Xenium FFPE Human Breast Cancer Rep1 crop (bidcell 1.0.3)",
        "labels_from": "SingleR-style reference correlation (no expert labels)",
        "genes": crop.table.genes,
        "cell_ids": crop.table.cell_ids,
        "n_cells": crop.table.n_cells(),
        "centroids_um": crop.table.centroids_um,
        "reference_labels": crop.labels.iter().map(|l| l.map(|c| crop.class_names[c as usize].clone())).collect::<Vec<_>>(),
        "classes": model.meta.classes,
        "native_predictions": predicted,
        "native_engine": engine_name,
        "image": {
            "file": "dapi.png",
            "width": image.width / factor,
            "height": image.height / factor,
            "um_per_px": frame.um_per_px * factor as f32,
            "origin_um": frame.origin_um,
            "stretch": stretch,
        },
    });
    write_atomic(&dir.join("cells.json"), json.to_string())?;
    Ok(())
}

/// File of [`write_www_evaluation`] in the web-demo bundle.
pub const WWW_EVALUATION_FILE: &str = "model_evaluation.json";

/// The bundle model's evaluation, which the page shows as a per-class table and a confusion
/// heatmap: `model_evaluation.json` in `dir` with `model` (file name in the bundle), `evaluated_on`
/// (which cells, e.g. the held-out 20 %), `engine`, `classes`, `confusion` (`[true class]
/// [predicted class]` counts, nested rows), `per_class` (`name, precision, recall, f1,
/// support`), `macro_f1`, `weighted_f1`, `accuracy` and `n_cells`. Write it after
/// [`write_www_bundle`] (which removes a stale one). Errors: a report whose confusion matrix
/// is not `[classes, classes]`, an unwritable folder.
pub fn write_www_evaluation(
    dir: &Path,
    report: &ClassificationReport,
    evaluated_on: &str,
    engine_name: &str,
) -> Result<(), TrainError> {
    let k = report.classes.len();
    if report.confusion.len() != k * k {
        return Err(TrainError::Options(format!(
            "evaluation for the web demo: confusion matrix has {} values, expected {k}×{k}",
            report.confusion.len()
        )));
    }
    let confusion: Vec<&[u32]> = report.confusion.chunks(k.max(1)).collect();
    let json = serde_json::json!({
        "model": "model.int8.safetensors",
        "evaluated_on": evaluated_on,
        "engine": engine_name,
        "classes": report.classes.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        "confusion": confusion,
        "per_class": report.classes,
        "macro_f1": report.macro_f1,
        "weighted_f1": report.weighted_f1,
        "accuracy": report.accuracy,
        "n_cells": report.n_cells,
    });
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    write_atomic(&dir.join(WWW_EVALUATION_FILE), json.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_json_has_the_confusion_rows_and_per_class_metrics() {
        let names: Vec<String> = ["A", "B", "C"].iter().map(|s| s.to_string()).collect();
        let report = ClassificationReport::new(&[0, 0, 1, 2, 2], &[0, 1, 1, 2, 0], &names);
        let dir = tempfile::tempdir().unwrap();
        write_www_evaluation(dir.path(), &report, "held-out 20%", "cpu").unwrap();
        let text = std::fs::read_to_string(dir.path().join(WWW_EVALUATION_FILE)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["confusion"], serde_json::json!([[1, 1, 0], [0, 1, 0], [1, 0, 1]]));
        assert_eq!(v["per_class"].as_array().unwrap().len(), 3);
        assert_eq!(v["per_class"][1]["name"], "B");
        assert_eq!(v["per_class"][1]["precision"], 0.5);
        assert_eq!(v["classes"], serde_json::json!(["A", "B", "C"]));
    }
}
