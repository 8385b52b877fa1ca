//! Model files: metadata for trained models and atomic fp32 + int8 export.

use std::path::{Path, PathBuf};

use burn::prelude::*;

use crate::engine::{EngineModel, ModelMeta, Normalisation};
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
    crop_meta(config.to_engine_config(), genes, classes, training)
}

/// Metadata of a model trained on crop inputs: log1p-cp10k with the training target sum.
fn crop_meta(
    config: crate::engine::ClassifierConfig,
    genes: &[String],
    classes: &[String],
    training: serde_json::Value,
) -> ModelMeta {
    let mut meta = ModelMeta::new(config, genes.to_vec(), classes.to_vec());
    meta.normalisation = Normalisation::log1p_with_target_sum(TARGET_SUM as f64);
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
    let files = save_engine_files(&fp32, dir)?;
    Ok((fp32, files))
}

/// Writes `dir/model.safetensors` (fp32) and `dir/model.int8.safetensors` atomically.
fn save_engine_files(fp32: &EngineModel, dir: &Path) -> Result<ExportedFiles, TrainError> {
    std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let files = ExportedFiles {
        fp32: dir.join("model.safetensors"),
        int8: dir.join("model.int8.safetensors"),
    };
    fp32.save_atomic(&files.fp32)?;
    fp32.quantize_int8().save_atomic(&files.int8)?;
    Ok(files)
}

/// The engine config shared by the multimodal classifiers (no optional token set yet).
#[allow(clippy::too_many_arguments)]
fn multimodal_engine_config(
    n_genes: usize,
    n_classes: usize,
    d_model: usize,
    n_heads: usize,
    d_ff: usize,
    n_layers: usize,
    gene_tokens: usize,
    layer_norm_eps: f64,
) -> crate::engine::ClassifierConfig {
    crate::engine::ClassifierConfig {
        n_genes,
        n_classes,
        d_model,
        n_heads,
        d_ff,
        n_layers,
        gene_tokens,
        layer_norm_eps,
        spatial: None,
        morphology: None,
        attention_bias: false,
    }
}

/// The engine's description of a morphology ViT trained on patches cut at `um_per_px`.
pub fn morphology_token_config(
    m: &crate::model::MorphologyEncoderConfig,
    um_per_px: f32,
) -> crate::engine::MorphologyTokenConfig {
    crate::engine::MorphologyTokenConfig {
        image_size: m.image_size,
        vit_patch: m.vit_patch,
        width: m.width,
        n_heads: m.n_heads,
        d_ff: m.d_ff,
        n_layers: m.feature_layer,
        k_nearest: m.k_nearest,
        um_per_px: um_per_px as f64,
    }
}

fn spatial_token_config<B: Backend>(s: &crate::model::SpatialEncoder<B>) -> crate::engine::SpatialTokenConfig {
    crate::engine::SpatialTokenConfig {
        n_frequencies: s.n_frequencies,
        min_wavelength_um: s.min_wavelength_um,
        max_wavelength_um: s.max_wavelength_um,
    }
}

/// Builds the metadata from `engine_config`, converts with `convert` and writes the fp32 and
/// int8 files into `dir` (the body of the three multimodal exports).
fn export_converted(
    engine_config: crate::engine::ClassifierConfig,
    genes: &[String],
    classes: &[String],
    training: serde_json::Value,
    dir: &Path,
    convert: impl FnOnce(ModelMeta) -> Result<EngineModel, crate::engine::ModelFileError>,
) -> Result<(EngineModel, ExportedFiles), TrainError> {
    let fp32 = convert(crop_meta(engine_config, genes, classes, training))?;
    let files = save_engine_files(&fp32, dir)?;
    Ok((fp32, files))
}

/// The spatial classifier in the engines' format (see
/// [`crate::model::convert::spatial_to_engine_model`]), fp32 and int8, into `dir`.
pub fn export_spatial_fp32_and_int8<B: Backend>(
    model: &crate::model::SpatialClassifier<B>,
    config: &crate::model::SpatialClassifierConfig,
    genes: &[String],
    classes: &[String],
    training: serde_json::Value,
    dir: &Path,
) -> Result<(EngineModel, ExportedFiles), TrainError> {
    let c = config;
    let mut ec = multimodal_engine_config(
        c.n_genes, c.n_classes, c.d_model, c.n_heads, c.d_ff, c.n_layers, c.gene_tokens, c.layer_norm_eps,
    );
    ec.spatial = Some(spatial_token_config(&model.spatial));
    export_converted(ec, genes, classes, training, dir, |meta| {
        crate::model::convert::spatial_to_engine_model(model, meta)
    })
}

/// The dual-modality classifier (count input, patch ViT trained on patches cut at
/// `patch_um_per_px`) in the engines' format (see
/// [`crate::model::convert::dual_to_engine_model`]), fp32 and int8, into `dir`.
#[allow(clippy::too_many_arguments)]
pub fn export_dual_fp32_and_int8<B: Backend>(
    model: &crate::model::DualModalityClassifier<B>,
    config: &crate::model::DualModalityClassifierConfig,
    patch_um_per_px: f32,
    genes: &[String],
    classes: &[String],
    training: serde_json::Value,
    dir: &Path,
) -> Result<(EngineModel, ExportedFiles), TrainError> {
    let c = config;
    let mut ec = multimodal_engine_config(
        c.n_genes, c.n_classes, c.d_model, c.n_heads, c.d_ff, c.n_layers, c.gene_tokens, c.layer_norm_eps,
    );
    ec.morphology = Some(morphology_token_config(&c.morphology, patch_um_per_px));
    export_converted(ec, genes, classes, training, dir, |meta| {
        crate::model::convert::dual_to_engine_model(model, meta)
    })
}

/// The multi-input classifier (count input, patch ViT trained on patches cut at
/// `patch_um_per_px`) in the engines' format (see
/// [`crate::model::convert::multi_to_engine_model`]), fp32 and int8, into `dir`.
#[allow(clippy::too_many_arguments)]
pub fn export_multi_fp32_and_int8<B: Backend>(
    model: &crate::model::MultiInputClassifier<B>,
    config: &crate::model::MultiInputClassifierConfig,
    patch_um_per_px: f32,
    genes: &[String],
    classes: &[String],
    training: serde_json::Value,
    dir: &Path,
) -> Result<(EngineModel, ExportedFiles), TrainError> {
    let c = config;
    let mut ec = multimodal_engine_config(
        c.n_genes, c.n_classes, c.d_model, c.n_heads, c.d_ff, c.n_layers, c.gene_tokens, c.layer_norm_eps,
    );
    ec.spatial = Some(spatial_token_config(&model.spatial));
    ec.morphology = Some(morphology_token_config(&c.morphology, patch_um_per_px));
    ec.attention_bias = true;
    export_converted(ec, genes, classes, training, dir, |meta| {
        crate::model::convert::multi_to_engine_model(model, meta)
    })
}

/// Collects every float parameter of a module under its dotted path
/// (`core.encoder.layers.0.attn.q.weight`).
struct NamedParams {
    path: Vec<String>,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl<B: Backend> burn::module::ModuleVisitor<B> for NamedParams {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let values = t
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .unwrap_or_default();
        self.tensors.push((self.path.join("."), shape, values));
    }
}

/// Every float parameter of `model` as `(dotted path, shape, values)`, in module order.
/// Linear weights are burn's `[in, out]`.
pub fn named_parameters<B: Backend, M: burn::module::Module<B>>(
    model: &M,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut v = NamedParams {
        path: Vec::new(),
        tensors: Vec::new(),
    };
    model.visit(&mut v);
    v.tensors
}

/// Write every float parameter of `model` to a safetensors file (F32, names from
/// [`named_parameters`]; Linear weights `[in, out]` as in burn), with string `metadata`,
/// atomically (temporary file + rename).
pub fn save_named_safetensors<B: Backend, M: burn::module::Module<B>>(
    model: &M,
    metadata: std::collections::HashMap<String, String>,
    path: &Path,
) -> Result<(), TrainError> {
    use safetensors::tensor::{Dtype, TensorView};
    let params = named_parameters(model);
    let bytes: Vec<Vec<u8>> = params
        .iter()
        .map(|(_, _, v)| bytemuck::cast_slice(v).to_vec())
        .collect();
    let views: Vec<(String, TensorView<'_>)> = params
        .iter()
        .zip(&bytes)
        .filter_map(|((name, shape, _), b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .ok()
                .map(|v| (name.clone(), v))
        })
        .collect();
    let out = safetensors::serialize(views, Some(metadata)).map_err(|e| TrainError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let tmp = path.with_extension("safetensors.tmp");
    std::fs::write(&tmp, out).map_err(|source| TrainError::Io {
        path: tmp.display().to_string(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| TrainError::Io {
        path: path.display().to_string(),
        source,
    })
}
