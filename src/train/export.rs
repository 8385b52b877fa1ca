//! Model files: metadata for trained models and atomic fp32 + int8 export (every
//! architecture, through [`crate::model::convert::to_engine_model`]).

use std::path::{Path, PathBuf};

use burn::prelude::*;

use crate::engine::{EngineModel, ModelMeta, Normalisation};
use crate::model::convert::to_engine_model;
use crate::model::Classifier;

use super::TrainError;

/// Metadata of a model with spec `model.spec` trained on `genes` (in input order) for
/// `classes`, whose inputs were transformed by `normalisation`. `training` is free JSON
/// recorded in the file (configuration, split, history, metrics).
pub fn model_meta<B: Backend>(
    model: &Classifier<B>,
    genes: &[String],
    classes: &[String],
    normalisation: Normalisation,
    training: serde_json::Value,
) -> ModelMeta {
    let mut meta = ModelMeta::new(model.spec.clone(), genes.to_vec(), classes.to_vec());
    meta.normalisation = normalisation;
    meta.training = training;
    meta
}

/// Paths written by [`export_fp32_and_int8`].
#[derive(Debug, Clone)]
pub struct ExportedFiles {
    /// fp32 safetensors.
    pub fp32: PathBuf,
    /// int8 safetensors for the browser / WGSL engine.
    pub int8: PathBuf,
}

/// `dir/model.safetensors` (fp32) and `dir/model.int8.safetensors` (per-output-channel
/// symmetric int8) of any count-input classifier, each written atomically (temporary file +
/// rename). `meta` from [`model_meta`].
pub fn export_fp32_and_int8<B: Backend>(
    model: &Classifier<B>,
    meta: ModelMeta,
    dir: &Path,
) -> Result<(EngineModel, ExportedFiles), TrainError> {
    let fp32 = to_engine_model(model, meta)?;
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
    Ok((fp32, files))
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
    Ok(crate::util::write_atomic(path, &out)?)
}
