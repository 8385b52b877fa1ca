//! The wasm-bindgen API of the npm package (the only wasm-bindgen file).
//!
//! ```js
//! import init, { Classifier } from "cellsymphony";
//! await init();
//! const gpu = !!(navigator.gpu && await navigator.gpu.requestAdapter());
//! const clf = await Classifier.load(modelBytes /* Uint8Array */, gpu);
//! const res = await clf.classify(counts /* Float32Array [cells*genes] */, nCells, geneNames);
//! res.classes      // Uint32Array [cells], index into clf.classes
//! res.logits       // Float32Array [cells*classes]
//! res.confidence   // Float32Array [cells], softmax probability of the predicted class
//! ```
//! Check for WebGPU in JS *before* asking for the GPU engine: wgpu cannot recover once it has
//! started on a browser without WebGPU. Every error comes back as a rejected promise with a
//! message; nothing panics across this boundary.

use std::rc::Rc;
use std::sync::Arc;

use js_sys::{Float32Array, Object, Promise, Reflect, Uint32Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::engine::{self, EngineModel};
use crate::gpu::{GpuClassifier, GpuContext};

struct Inner {
    model: EngineModel,
    gpu: Option<GpuClassifier>,
    backend: String,
}

/// A loaded cell-type classifier (int8 model) running on WebGPU or on the CPU.
#[wasm_bindgen]
pub struct Classifier {
    inner: Rc<Inner>,
}

fn set(obj: &Object, key: &str, value: &JsValue) -> Result<(), JsError> {
    Reflect::set(obj, &JsValue::from_str(key), value)
        .map(|_| ())
        .map_err(|_| JsError::new(&format!("could not set `{key}` on the result object")))
}

#[wasm_bindgen]
impl Classifier {
    /// Load a model file (safetensors bytes written by `cellsymphony train`/`export`).
    /// With `use_gpu` the WGSL engine runs on WebGPU (fp32 files are quantised to int8 first);
    /// otherwise the plain-Rust CPU engine runs the file as stored.
    pub async fn load(model_bytes: Vec<u8>, use_gpu: bool) -> Result<Classifier, JsError> {
        let model = EngineModel::from_safetensors_bytes(&model_bytes)
            .map_err(|e| JsError::new(&format!("model file: {e}")))?;
        let (gpu, backend) = if use_gpu {
            let ctx = GpuContext::new()
                .await
                .map_err(|e| JsError::new(&format!("WebGPU: {e}")))?;
            let backend = format!("webgpu: {}", ctx.adapter_summary());
            let clf = GpuClassifier::new(Arc::new(ctx), &model)
                .map_err(|e| JsError::new(&format!("WebGPU: {e}")))?;
            (Some(clf), backend)
        } else {
            (None, format!("cpu: wasm engine, {} weights", model.meta.quantization.as_str()))
        };
        Ok(Classifier { inner: Rc::new(Inner { model, gpu, backend }) })
    }

    /// Gene panel of the model, in the order its weights expect.
    #[wasm_bindgen(getter)]
    pub fn genes(&self) -> Vec<String> {
        self.inner.model.meta.genes.clone()
    }

    /// Class names; `classify` returns indices into this list.
    #[wasm_bindgen(getter)]
    pub fn classes(&self) -> Vec<String> {
        self.inner.model.meta.classes.clone()
    }

    /// `"webgpu: <adapter>"` or `"cpu: wasm engine, <quantization> weights"`.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.inner.backend.clone()
    }

    /// Classify cells from raw counts `[cells, genes]` (row-major `Float32Array`) whose columns
    /// are named by `genes` (any order; extra genes are ignored, missing model genes are an
    /// error naming them). Resolves to `{classes, logits, confidence}`.
    pub fn classify(&self, counts: Vec<f32>, n_cells: usize, genes: Vec<String>) -> Promise {
        let inner = Rc::clone(&self.inner);
        future_to_promise(async move {
            let result: Result<JsValue, JsError> = async {
                let meta = &inner.model.meta;
                if genes.is_empty() || counts.len() != n_cells * genes.len() {
                    return Err(JsError::new(&format!(
                        "counts has {} values but n_cells × genes = {} × {} = {}: pass a row-major [cells, genes] array",
                        counts.len(),
                        n_cells,
                        genes.len(),
                        n_cells * genes.len()
                    )));
                }
                let aligned = engine::align_to_panel(meta, &genes, &counts)
                    .map_err(|e| JsError::new(&e.to_string()))?;
                let x = engine::normalise_log1p_cp10k(&aligned, meta.config.n_genes, meta.normalisation.target_sum as f32);
                let logits = match &inner.gpu {
                    Some(gpu) => gpu.logits(&x, n_cells).await.map_err(|e| JsError::new(&format!("WebGPU: {e}")))?,
                    None => engine::cpu::forward_logits(&inner.model, &x, n_cells),
                };
                let k = meta.classes.len();
                let classes = engine::cpu::argmax_rows(&logits, k);
                let confidence: Vec<f32> = logits
                    .chunks(k)
                    .map(|row| {
                        let m = row.iter().cloned().fold(f32::MIN, f32::max);
                        1.0 / row.iter().map(|v| (v - m).exp()).sum::<f32>()
                    })
                    .collect();
                let out = Object::new();
                set(&out, "classes", &Uint32Array::from(classes.as_slice()).into())?;
                set(&out, "logits", &Float32Array::from(logits.as_slice()).into())?;
                set(&out, "confidence", &Float32Array::from(confidence.as_slice()).into())?;
                Ok(out.into())
            }
            .await;
            result.map_err(JsValue::from)
        })
    }
}
