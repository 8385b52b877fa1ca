//! The web demo's data bundle (`www/data/`): what the page and the browser test read.

use std::path::Path;

use super::benchmark::write_atomic;
use super::dataset::PreparedCrop;
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
