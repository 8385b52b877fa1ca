//! Model files: metadata for trained models and atomic fp32 + int8 export.

use std::path::{Path, PathBuf};

use burn::prelude::*;

use crate::engine::{EngineModel, ModelMeta, Normalisation};
use crate::engine::format::NORMALISATION_LOG1P_CP10K;
use crate::model::convert::to_engine_model;
use crate::model::{GeneOnlyClassifier, GeneOnlyClassifierConfig};

use super::dataset::TARGET_SUM;
use super::TrainError;

/// Metadata of a gene-only model trained on `genes` (in input order) for `classes`.
/// `training` is free JSON recorded in the file (configuration, split, history, metrics).
pub fn gene_only_meta(
    config: &GeneOnlyClassifierConfig,
    genes: &[String],
    classes: &[String],
    training: serde_json::Value,
) -> ModelMeta {
    let mut meta = ModelMeta::new(config.to_engine_config(), genes.to_vec(), classes.to_vec());
    meta.normalisation = Normalisation {
        kind: NORMALISATION_LOG1P_CP10K.to_string(),
        target_sum: TARGET_SUM as f64,
    };
    meta.training = training;
    meta
}

/// Paths written by [`export_fp32_and_int8`].
#[derive(Debug, Clone)]
pub struct ExportedFiles {
    /// fp32 safetensors (also the training checkpoint).
    pub fp32: PathBuf,
    /// int8 safetensors for the browser / WGSL engine.
    pub int8: PathBuf,
}

/// `dir/model.safetensors` (fp32) and `dir/model.int8.safetensors` (per-output-channel
/// symmetric int8), each written atomically (temporary file + rename).
pub fn export_fp32_and_int8<B: Backend>(
    model: &GeneOnlyClassifier<B>,
    meta: ModelMeta,
    dir: &Path,
) -> Result<(EngineModel, ExportedFiles), TrainError> {
    std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let fp32 = to_engine_model(model, meta)?;
    let files = ExportedFiles {
        fp32: dir.join("model.safetensors"),
        int8: dir.join("model.int8.safetensors"),
    };
    fp32.save_atomic(&files.fp32)?;
    fp32.quantize_int8().save_atomic(&files.int8)?;
    Ok((fp32, files))
}
