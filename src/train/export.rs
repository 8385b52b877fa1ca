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

/// Replaces every float parameter of a module by the tensor of the same dotted path in a
/// safetensors file; records the names that are missing or have another shape.
struct LoadNamed<'a> {
    path: Vec<String>,
    file: &'a safetensors::SafeTensors<'a>,
    problems: Vec<String>,
}

impl<B: Backend> burn::module::ModuleMapper<B> for LoadNamed<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: burn::module::Param<Tensor<B, D>>) -> burn::module::Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let name = self.path.join(".");
        let shape = tensor.dims().to_vec();
        let loaded = match self.file.tensor(&name) {
            Ok(view) if view.dtype() == safetensors::Dtype::F32 && view.shape() == shape.as_slice() => {
                let values: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                Some(Tensor::<B, D>::from_data(TensorData::new(values, shape.clone()), &tensor.device()))
            }
            Ok(view) => {
                self.problems.push(format!("{name}: {:?} {:?} in the file, F32 {shape:?} expected", view.dtype(), view.shape()));
                None
            }
            Err(_) => {
                self.problems.push(format!("{name}: missing"));
                None
            }
        };
        burn::module::Param::from_mapped_value(id, loaded.unwrap_or(tensor), mapper)
    }
}

/// Loads the float parameters of `model` (an initialised module of the same architecture)
/// from a file written by [`save_named_safetensors`]. Every parameter must be present with
/// its shape, else [`TrainError::Checkpoint`] lists the first mismatches.
pub fn load_named_safetensors<B: Backend, M: burn::module::Module<B>>(model: M, path: &Path) -> Result<M, TrainError> {
    let bytes = std::fs::read(path).map_err(|source| TrainError::Io { path: path.display().to_string(), source })?;
    let bad = |problem: String| TrainError::Checkpoint { path: path.display().to_string(), problem };
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not a readable safetensors file ({e}); write it again")))?;
    let mut mapper = LoadNamed { path: Vec::new(), file: &file, problems: Vec::new() };
    let model = model.map(&mut mapper);
    if !mapper.problems.is_empty() {
        let n = mapper.problems.len();
        mapper.problems.truncate(5);
        return Err(bad(format!("{n} parameters do not match this architecture ({}); load it with the spec it was saved with", mapper.problems.join("; "))));
    }
    Ok(model)
}
