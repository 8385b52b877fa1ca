//! `FlowModel`: SPATIA-style morphology generation in the browser (issue 16). A flow trained by
//! `cellsymphony flow train` (its `model.safetensors` + `flow.json`) predicts the target
//! morphology of control cells from their OT pair's expression shift: the conditioning is
//! computed here from raw counts ([`crate::ot::FlowConditioning`]), the sampler runs on WebGPU
//! ([`GpuFlowSampler`], f32 weights) or on the plain-Rust CPU engine ([`FlowSampler`], the same
//! code as `flow sample --engine cpu`).

use std::rc::Rc;
use std::sync::Arc;

use js_sys::{Float32Array, Object, Promise};
use wasm_bindgen_futures::future_to_promise;
use wasm_bindgen::prelude::*;

use super::{describe, f32_arg, mib, missing, options_from, set, size_arg, strings_arg, bytes_arg, WASM_CALL_BUDGET_BYTES};
use crate::engine::flow::{FlowCondition, FlowSampler, FlowSolver};
use crate::engine::GpuFlowSampler;
use crate::gpu::GpuContext;
use crate::ot::FlowFile;

/// Pairs per CPU engine call: bounds the sampler's intermediate arrays (it holds about 4·S²
/// floats per pair in its widest layer) and paces `onProgress`. On WebGPU a call is one of the
/// GPU sampler's own chunks (`GpuFlowSampler::chunk_pairs`): each call uploads its per-call
/// layers and buffers once, so smaller calls would redo that work.
const CPU_PAIRS_PER_CALL: usize = 256;

enum Sampler {
    Cpu,
    Gpu(GpuFlowSampler),
}

struct Inner {
    cpu: FlowSampler,
    sampler: Sampler,
    file: FlowFile,
    backend: String,
}

/// A trained morphology flow, loaded for sampling.
#[wasm_bindgen]
pub struct FlowModel {
    inner: Rc<Inner>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FlowLoadOptions {
    #[serde(default)]
    use_gpu: bool,
}

fn solver_name(s: FlowSolver) -> &'static str {
    match s {
        FlowSolver::Euler => "euler",
        FlowSolver::Heun => "heun",
    }
}

#[wasm_bindgen]
impl FlowModel {
    /// Loads a flow: `modelBytes` is its `model.safetensors`, `flowJson` the text of its
    /// `flow.json`; `options.useGpu` samples on WebGPU (check `navigator.gpu` first), otherwise
    /// on the CPU engine.
    pub async fn load(
        #[wasm_bindgen(js_name = modelBytes, unchecked_param_type = "Uint8Array")] model_bytes: JsValue,
        #[wasm_bindgen(js_name = flowJson, unchecked_param_type = "string")] flow_json: JsValue,
        #[wasm_bindgen(unchecked_param_type = "{ useGpu?: boolean } | undefined")] options: JsValue,
    ) -> Result<FlowModel, JsError> {
        let opts: FlowLoadOptions = if options.is_null() || options.is_undefined() { FlowLoadOptions { use_gpu: false } } else { options_from("FlowModel.load options", options)? };
        let text = flow_json.as_string().ok_or_else(|| if flow_json.is_null() || flow_json.is_undefined() { missing("flowJson", "the text of the flow's flow.json") } else { JsError::new(&format!("`flowJson` is {}: pass the text of flow.json (a string)", describe(&flow_json))) })?;
        let file = FlowFile::from_json(&text).map_err(|e| JsError::new(&e.to_string()))?;
        let bytes = bytes_arg("modelBytes", &model_bytes)?.to_vec();
        let cpu = FlowSampler::from_safetensors(&bytes).map_err(|e| JsError::new(&format!("flow model.safetensors: {e}")))?;
        drop(bytes);
        if cpu.sizes() != file.conditioning.spec {
            return Err(JsError::new(&format!("flow.json describes {:?} but model.safetensors holds {:?}: pass the two files of one `flow train` run", file.conditioning.spec, cpu.sizes())));
        }
        let (sampler, backend) = if opts.use_gpu {
            let ctx = GpuContext::new().await.map_err(|e| JsError::new(&format!("WebGPU: {e}")))?;
            let backend = format!("webgpu: {}", ctx.adapter_summary());
            let gpu = GpuFlowSampler::new(Arc::new(ctx), &cpu).map_err(|e| JsError::new(&format!("WebGPU: {e}")))?;
            (Sampler::Gpu(gpu), backend)
        } else {
            (Sampler::Cpu, "cpu: wasm engine, f32 weights".to_string())
        };
        Ok(FlowModel { inner: Rc::new(Inner { cpu, sampler, file, backend }) })
    }

    /// Where sampling runs (`"webgpu: <adapter>"` or `"cpu: …"`).
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.inner.backend.clone()
    }

    /// Transition names, one per token (`"Epithelial → Malignant"`).
    #[wasm_bindgen(getter)]
    pub fn transitions(&self) -> Vec<String> {
        self.inner.file.conditioning.transitions.clone()
    }

    /// The genes the counts are mapped by (empty for flows written before they were recorded:
    /// counts must then have the model's genes in its order).
    #[wasm_bindgen(getter)]
    pub fn genes(&self) -> Vec<String> {
        self.inner.file.conditioning.genes.clone()
    }

    /// Patch side in pixels (patches are `[n, patchSize²]`, values in `[0, 1]`).
    #[wasm_bindgen(getter, js_name = patchSize)]
    pub fn patch_size(&self) -> usize {
        self.inner.file.conditioning.spec.patch_px
    }

    /// Patch resolution in µm per pixel.
    #[wasm_bindgen(getter, js_name = umPerPx)]
    pub fn um_per_px(&self) -> f32 {
        self.inner.file.conditioning.um_per_px
    }

    /// Latent width `L`.
    #[wasm_bindgen(getter, js_name = latentDim)]
    pub fn latent_dim(&self) -> usize {
        self.inner.file.conditioning.spec.latent
    }

    /// Width `Z` of the control cell embedding.
    #[wasm_bindgen(getter, js_name = cellDim)]
    pub fn cell_dim(&self) -> usize {
        self.inner.file.conditioning.spec.cell_dim
    }

    /// Whether `sample` needs `cellEmbedding` (the flow was trained on an embedding file, e.g.
    /// SPATIA's z_cell, not on the expression PCA).
    #[wasm_bindgen(getter, js_name = needsCellEmbedding)]
    pub fn needs_cell_embedding(&self) -> bool {
        self.inner.file.conditioning.needs_cell_embedding()
    }

    /// The trained sampler steps.
    #[wasm_bindgen(getter)]
    pub fn steps(&self) -> usize {
        self.inner.file.config.sample_steps
    }

    /// The trained solver (`"euler"` or `"heun"`).
    #[wasm_bindgen(getter)]
    pub fn solver(&self) -> String {
        solver_name(self.inner.file.config.solver).to_string()
    }

    /// Predicts the target morphology of `n` control cells, each paired with a target cell:
    /// `{controlPatches [n·S²], controlCounts [n·genes.length], targetCounts [n·genes.length],
    /// genes, transition?, cellEmbedding? [n·Z], steps?, solver?}` → `{n, latents [n·L],
    /// patches [n·S²], backend}`. `onProgress(done, total)` is called after each chunk of pairs.
    pub fn sample(
        &self,
        #[wasm_bindgen(unchecked_param_type = "{ controlPatches: Float32Array, controlCounts: Float32Array, targetCounts: Float32Array, genes: string[], transition?: number | string, cellEmbedding?: Float32Array, steps?: number, solver?: \"euler\" | \"heun\" }")] inputs: JsValue,
        #[wasm_bindgen(js_name = onProgress, unchecked_param_type = "((done: number, total: number) => void) | undefined")] on_progress: JsValue,
    ) -> Promise {
        let inner = Rc::clone(&self.inner);
        let args = Self::sample_args(&inner, &inputs, &on_progress);
        future_to_promise(async move {
            let args = args?;
            sample_chunks(&inner, args).await.map(JsValue::from).map_err(JsValue::from)
        })
    }
}

/// A checked `sample` call: conditions, patches, settings.
struct SampleCall {
    cond: crate::ot::PairConditions,
    patches: Vec<f32>,
    n: usize,
    steps: usize,
    solver: FlowSolver,
    progress: Option<js_sys::Function>,
}

impl FlowModel {
    fn sample_args(inner: &Inner, inputs: &JsValue, on_progress: &JsValue) -> Result<SampleCall, JsError> {
        if inputs.is_null() || inputs.is_undefined() || !inputs.is_object() {
            return Err(JsError::new(&format!("FlowModel.sample: the inputs are {}: pass {{controlPatches, controlCounts, targetCounts, genes, …}}", describe(inputs))));
        }
        const KEYS: [&str; 8] = ["controlPatches", "controlCounts", "targetCounts", "genes", "transition", "cellEmbedding", "steps", "solver"];
        for key in js_sys::Object::keys(inputs.unchecked_ref::<Object>()).iter().filter_map(|k| k.as_string()) {
            if !KEYS.contains(&key.as_str()) {
                return Err(JsError::new(&format!("FlowModel.sample: unknown input `{key}`; allowed: {}", KEYS.join(", "))));
            }
        }
        let get = |k: &str| js_sys::Reflect::get(inputs, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
        let (s, l, z) = (inner.file.conditioning.spec.patch_px, inner.file.conditioning.spec.latent, inner.file.conditioning.spec.cell_dim);
        let patches = f32_arg("controlPatches", &get("controlPatches"), &format!("a Float32Array [n*{s}*{s}] of the control cells' patches"))?;
        let genes = strings_arg("genes", &get("genes"))?;
        let control = f32_arg("controlCounts", &get("controlCounts"), "a Float32Array [n*genes.length] of the control cells' counts")?;
        let target = f32_arg("targetCounts", &get("targetCounts"), "a Float32Array [n*genes.length] of the paired target cells' counts")?;
        let n_px = patches.length() as usize;
        if n_px % (s * s) != 0 {
            return Err(JsError::new(&format!("`controlPatches` has {n_px} values, not a whole number of {s}×{s} patches")));
        }
        let n = n_px / (s * s);
        for (name, a) in [("controlCounts", &control), ("targetCounts", &target)] {
            if a.length() as usize != n * genes.len() {
                return Err(JsError::new(&format!("`{name}` has {} values; {n} pairs × {} genes need {}", a.length(), genes.len(), n * genes.len())));
            }
        }
        let bytes = 4 * (n as u64) * (2 * genes.len() as u64 + 6 * (s * s) as u64 + 2 * l as u64 + z as u64);
        if bytes > WASM_CALL_BUDGET_BYTES {
            let fit = WASM_CALL_BUDGET_BYTES / (bytes / n.max(1) as u64).max(1);
            return Err(JsError::new(&format!("FlowModel.sample: {n} pairs would need {} of wasm memory (budget {}); sample in chunks of at most {fit} pairs", mib(bytes), mib(WASM_CALL_BUDGET_BYTES))));
        }
        let token = match get("transition") {
            v if v.is_undefined() || v.is_null() => 0u32,
            v => match v.as_string() {
                Some(name) => inner.file.conditioning.transitions.iter().position(|t| *t == name).ok_or_else(|| JsError::new(&format!("`transition` {name:?} is not one of the model's transitions: {}", inner.file.conditioning.transitions.join(", "))))? as u32,
                None => size_arg("transition", &v, inner.file.conditioning.transitions.len().saturating_sub(1) as u64)? as u32,
            },
        };
        let embedding = match get("cellEmbedding") {
            v if v.is_undefined() || v.is_null() => None,
            v => Some(f32_arg("cellEmbedding", &v, &format!("a Float32Array [n*{z}] of the control cells' embedding"))?.to_vec()),
        };
        let steps = match get("steps") {
            v if v.is_undefined() || v.is_null() => inner.file.config.sample_steps,
            v => size_arg("steps", &v, 10_000)?,
        };
        if steps == 0 {
            return Err(JsError::new("`steps` = 0: pass at least 1 integration step"));
        }
        let solver = match get("solver") {
            v if v.is_undefined() || v.is_null() => inner.file.config.solver,
            v => match v.as_string().as_deref() {
                Some("euler") => FlowSolver::Euler,
                Some("heun") => FlowSolver::Heun,
                _ => return Err(JsError::new(&format!("`solver` is {}: pass \"euler\" or \"heun\"", describe(&v)))),
            },
        };
        let progress = on_progress.dyn_ref::<js_sys::Function>().cloned();
        if !(on_progress.is_undefined() || on_progress.is_null() || progress.is_some()) {
            return Err(JsError::new(&format!("`onProgress` is {}: pass a function or undefined", describe(on_progress))));
        }
        let cond = inner.file.conditioning.condition(&control.to_vec(), &target.to_vec(), n, &genes, token, embedding.as_deref()).map_err(|e| JsError::new(&e.to_string()))?;
        Ok(SampleCall { cond, patches: patches.to_vec(), n, steps, solver, progress })
    }
}

/// Samples a checked call in engine calls of [`CPU_PAIRS_PER_CALL`] pairs (CPU) or one GPU
/// sampler chunk (WebGPU).
async fn sample_chunks(inner: &Inner, call: SampleCall) -> Result<Object, JsError> {
    let SampleCall { cond, patches, n, steps, solver, progress } = call;
    let (s, l, z, k) = (inner.file.conditioning.spec.patch_px, inner.file.conditioning.spec.latent, inner.file.conditioning.spec.cell_dim, inner.file.conditioning.spec.dg_components);
    let (mut latents, mut images) = (Vec::with_capacity(n * l), Vec::with_capacity(n * s * s));
    let mut start = 0;
    let per_call = match &inner.sampler {
        Sampler::Cpu => CPU_PAIRS_PER_CALL,
        Sampler::Gpu(g) => g.chunk_pairs(),
    };
    while start < n {
        let end = (start + per_call).min(n);
        let c = FlowCondition { tokens: &cond.tokens[start..end], dg: &cond.dg[start * k..end * k], cell: &cond.cell[start * z..end * z] };
        let px = &patches[start * s * s..end * s * s];
        let out = match &inner.sampler {
            Sampler::Cpu => inner.cpu.sample(px, &c, &inner.file.conditioning.latent_mean, inner.file.conditioning.latent_scale, steps, solver),
            Sampler::Gpu(g) => g.sample(px, &c, &inner.file.conditioning.latent_mean, inner.file.conditioning.latent_scale, steps, solver).await,
        }
        .map_err(|e| JsError::new(&format!("FlowModel.sample: {e}")))?;
        latents.extend_from_slice(&out.latents);
        images.extend_from_slice(&out.patches);
        start = end;
        if let Some(f) = &progress {
            f.call2(&JsValue::NULL, &JsValue::from(end as u32), &JsValue::from(n as u32)).map_err(|e| JsError::new(&format!("onProgress threw: {}", describe(&e))))?;
        }
    }
    let res = Object::new();
    set(&res, "n", &JsValue::from(n as u32))?;
    set(&res, "latents", &Float32Array::from(&latents[..]).into())?;
    set(&res, "patches", &Float32Array::from(&images[..]).into())?;
    set(&res, "steps", &JsValue::from(steps as u32))?;
    set(&res, "solver", &JsValue::from_str(solver_name(solver)))?;
    set(&res, "backend", &JsValue::from_str(&inner.backend))?;
    Ok(res)
}
