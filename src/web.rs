//! The wasm-bindgen API of the npm package (the only wasm-bindgen file).
//!
//! ```js
//! import init, { Classifier } from "cellsymphony";
//! await init();
//! const gpu = !!(navigator.gpu && await navigator.gpu.requestAdapter());
//! const clf = await Classifier.load(modelBytes /* Uint8Array */, gpu);
//! const res = await clf.classify(counts /* Float32Array [cells*genes] */, nCells, geneNames);
//! // or sparse: clf.classifyCsr(indptr /* Uint32Array */, indices /* Uint32Array */,
//! //   data /* Float32Array */, nCells, geneNames); both take optional centroids
//! //   (Float32Array [cells*2], µm), patches (Float32Array [cells*size*size]) and patchSize.
//! // Spatial and multi-input models need centroids; dual-modality and multi-input models need
//! // nucleus-centred DAPI patches of clf.patchSize px at clf.patchUmPerPx µm/px.
//! res.classes      // Uint32Array [cells], index into clf.classes
//! res.logits       // Float32Array [cells*classes]
//! res.confidence   // Float32Array [cells], softmax probability of the predicted class
//! ```
//!
//! Optimal-transport pairing of two groups of cells (SPATIA-style):
//! ```js
//! import { pairCells } from "cellsymphony";
//! const res = await pairCells(counts, nCells, geneNames, controlIdx /* Uint32Array */,
//!   targetIdx /* Uint32Array */, { useGpu: true, epsilon: 0.05, pcaComponents: 50 },
//!   (iteration, error) => console.log(iteration, error));
//! res.target        // Uint32Array [controls]: index into targetIdx of each control's match
//! res.matchScore    // Float32Array [controls]
//! res.delta         // Float32Array [genes]: mean paired target − control expression (Δg)
//! res.topUp, res.topDown  // [{gene, delta}] × 10
//! ```
//! Reading Xenium files the user dropped into the page (bytes; plain or gzipped), through the
//! same parsers as the native readers:
//! ```js
//! import { readXeniumMex, readXeniumTranscripts, readXeniumCells } from "cellsymphony";
//! const m = readXeniumMex(featuresBytes, barcodesBytes, matrixBytes, cellsCsvBytes /* optional */);
//! // {cellIds, genes, nCells, nGenes, indptr, indices, data, centroidsUm?}: sparse counts
//! const res = await clf.classifyCsr(m.indptr, m.indices, m.data, m.nCells, m.genes, m.centroidsUm);
//! const t = readXeniumTranscripts(transcriptsCsvBytes, 20 /* minQv */, "transcripts.csv.gz");
//! // {cellIds, genes, nCells, nGenes, counts [cells*genes], centroidsUm,
//! //  nucleusCentroidsUm (NaN where a cell has too few nucleus transcripts)}
//! const res2 = await clf.classify(t.counts, t.nCells, t.genes, t.centroidsUm);
//! const xy = readXeniumCells(cellsCsvBytes, m.cellIds); // Float32Array [cells*2] in that order
//! ```
//! Bad files throw an `Error` naming the file and line.
//!
//! Check for WebGPU in JS *before* asking for the GPU engine: wgpu cannot recover once it has
//! started on a browser without WebGPU. Every error comes back as a rejected promise (the
//! readers throw) with a message; nothing panics across this boundary.
//!
//! Arguments are checked before anything is copied into wasm memory: every size (`nCells`,
//! `patchSize`, indices) must be an exact non-negative integer in range (`2**32 + 40` is an
//! error, never 40); a `null`/`undefined` required argument is an error naming it; option
//! objects (`load`'s `{useGpu}`, `pairCells`' options) with an unknown key are errors listing
//! the allowed keys; and a call whose inputs would need more than [`WASM_CALL_BUDGET_BYTES`]
//! of wasm memory is refused up front, saying how many cells fit in one call ("classify in
//! chunks of at most N cells"). Every buffer a call copies in is freed when it returns, so
//! repeated calls of one size do not grow the wasm memory (which can grow but never shrink).

use std::rc::Rc;
use std::sync::Arc;

mod flow;
mod slide;
mod spatia;

use js_sys::{Float32Array, Object, Promise, Reflect, Uint32Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::data::{self, CellInput, CountsInput, PatchInput, ProteinInput};
use crate::engine::{self, EngineModel};
use crate::gpu::{GpuContext, GpuOptions};
use crate::ot;

struct Inner {
    classifier: engine::Classifier,
    backend: String,
}

/// Checks this package build's SIMD GELU and exp against the plain-Rust references
/// (`{ checked, mismatches, maxError, worstArgument }`): the SIMD128 build must give the same bits
/// (`mismatches: 0`), the relaxed-SIMD build fuses multiply-adds (`maxError` small, relative to
/// `max(1, |value|)`), the scalar build has nothing to check (`checked: 0`).
#[wasm_bindgen(js_name = simdMathCheck)]
pub fn simd_math_check() -> Result<JsValue, JsError> {
    let c = engine::ops::simd_math_check();
    let o = Object::new();
    for (k, v) in [("checked", c.checked as f64), ("mismatches", c.mismatches as f64), ("maxError", f64::from(c.max_error)), ("worstArgument", f64::from(c.worst_argument))] {
        Reflect::set(&o, &k.into(), &v.into()).map_err(|_| JsError::new("simdMathCheck: could not build the result object"))?;
    }
    Ok(o.into())
}

/// A loaded cell-type classifier (int8 model) running on WebGPU or on the CPU.
#[wasm_bindgen]
pub struct Classifier {
    inner: Rc<Inner>,
}

impl Classifier {
    fn model(&self) -> &EngineModel {
        self.inner.classifier.model()
    }
}

/// Most wasm memory one call may need (1.5 GiB): the inputs copied in, the engine's
/// intermediate arrays and the results. wasm32 memory ends at 4 GiB, can grow but never
/// shrink, and a failed growth aborts the module (`RuntimeError: unreachable`), so a call
/// that would need more is refused up front with the number of cells that fit.
pub const WASM_CALL_BUDGET_BYTES: u64 = 3 << 29;

/// Most bytes of files one reader call takes (256 MiB; a gzipped file is inflated and parsed,
/// which takes several times its size): read a smaller region or slide beyond that.
pub const WASM_READER_MAX_INPUT_BYTES: u64 = 1 << 28;

/// The largest `nCells` (and cell index) the API takes: indices travel as `Uint32Array`.
const MAX_COUNT: u64 = u32::MAX as u64;

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// What a bad argument was, for messages: `null`, `undefined`, `a string "…"`, `an object`.
fn describe(v: &JsValue) -> String {
    if v.is_null() {
        "null".into()
    } else if v.is_undefined() {
        "undefined".into()
    } else if let Some(s) = v.as_string() {
        format!("the string {s:?}")
    } else if let Some(f) = v.as_f64() {
        format!("{f}")
    } else if v.is_bigint() {
        "a BigInt".into()
    } else if js_sys::Array::is_array(v) {
        "an Array".into()
    } else {
        format!("a value of type {}", v.js_typeof().as_string().unwrap_or_default())
    }
}

fn missing(name: &str, what: &str) -> JsError {
    JsError::new(&format!("`{name}` is missing (null or undefined): pass {what}"))
}

/// A JS number that must be an exact integer in `0..=max` (`2**32 + 40`, `-1`, `1.5`, `NaN`,
/// a string or a BigInt are errors naming `name`, never truncated).
fn size_arg(name: &str, v: &JsValue, max: u64) -> Result<usize, JsError> {
    if v.is_null() || v.is_undefined() {
        return Err(missing(name, "a non-negative integer"));
    }
    let Some(f) = v.as_f64() else {
        return Err(JsError::new(&format!("`{name}` is {}: pass a non-negative integer (a number)", describe(v))));
    };
    if !(f.is_finite() && f.fract() == 0.0 && (0.0..=max as f64).contains(&f)) {
        return Err(JsError::new(&format!("`{name}` = {f} is not an integer in 0..={max}: pass an exact non-negative integer")));
    }
    usize::try_from(f as u64).map_err(|_| JsError::new(&format!("`{name}` = {f} does not fit this platform's sizes")))
}

/// An optional size argument (`undefined`/`null` mean absent).
fn optional_size_arg(name: &str, v: &JsValue, max: u64) -> Result<Option<usize>, JsError> {
    if v.is_null() || v.is_undefined() {
        Ok(None)
    } else {
        size_arg(name, v, max).map(Some)
    }
}

/// A `Float32Array` argument (a plain `Array` or another typed array is converted; its
/// values are checked by the engine). Not yet copied into wasm memory.
fn f32_arg(name: &str, v: &JsValue, what: &str) -> Result<Float32Array, JsError> {
    if v.is_null() || v.is_undefined() {
        return Err(missing(name, what));
    }
    if let Some(a) = v.dyn_ref::<Float32Array>() {
        return Ok(a.clone());
    }
    if js_sys::Array::is_array(v) || v.is_instance_of::<js_sys::Float64Array>() || v.is_instance_of::<Uint32Array>() {
        return Ok(Float32Array::new(v));
    }
    Err(JsError::new(&format!("`{name}` is {}: pass {what}", describe(v))))
}

/// An optional `Float32Array` argument (`undefined`/`null` mean absent).
fn optional_f32_arg(name: &str, v: &JsValue, what: &str) -> Result<Option<Float32Array>, JsError> {
    if v.is_null() || v.is_undefined() {
        Ok(None)
    } else {
        f32_arg(name, v, what).map(Some)
    }
}

/// `v.length` of an array-like argument (0 when it has none), before any copy.
fn js_length(v: &JsValue) -> u64 {
    Reflect::get(v, &JsValue::from_str("length")).ok().and_then(|l| l.as_f64()).map_or(0, |l| l.max(0.0) as u64)
}

/// A `Uint32Array` argument of indices; a plain `Array` must hold exact integers in
/// `0..=u32::MAX` (checked element by element, never wrapped modulo 2^32).
fn u32_arg(name: &str, v: &JsValue, what: &str) -> Result<Vec<u32>, JsError> {
    if v.is_null() || v.is_undefined() {
        return Err(missing(name, what));
    }
    if let Some(a) = v.dyn_ref::<Uint32Array>() {
        return Ok(a.to_vec());
    }
    if let Some(a) = v.dyn_ref::<js_sys::Array>() {
        return a
            .iter()
            .enumerate()
            .map(|(i, x)| size_arg(&format!("{name}[{i}]"), &x, MAX_COUNT).map(|n| n as u32))
            .collect();
    }
    Err(JsError::new(&format!("`{name}` is {}: pass {what}", describe(v))))
}

/// An array of strings (e.g. gene names); an element that is not a string is an error naming it.
fn strings_arg(name: &str, v: &JsValue) -> Result<Vec<String>, JsError> {
    if v.is_null() || v.is_undefined() {
        return Err(missing(name, "an array of strings"));
    }
    let Some(a) = v.dyn_ref::<js_sys::Array>() else {
        return Err(JsError::new(&format!("`{name}` is {}: pass an array of strings", describe(v))));
    };
    a.iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_string()
                .ok_or_else(|| JsError::new(&format!("`{name}[{i}]` is {}: pass an array of strings", describe(&x))))
        })
        .collect()
}

/// File bytes: a `Uint8Array` or an `ArrayBuffer`. Not yet copied into wasm memory.
fn bytes_arg(name: &str, v: &JsValue) -> Result<js_sys::Uint8Array, JsError> {
    if v.is_null() || v.is_undefined() {
        return Err(missing(name, "the file's bytes (Uint8Array)"));
    }
    if let Some(a) = v.dyn_ref::<js_sys::Uint8Array>() {
        return Ok(a.clone());
    }
    if v.is_instance_of::<js_sys::ArrayBuffer>() {
        return Ok(js_sys::Uint8Array::new(v));
    }
    Err(JsError::new(&format!("`{name}` is {}: pass the file's bytes (Uint8Array)", describe(v))))
}

/// Refuses reader input over [`WASM_READER_MAX_INPUT_BYTES`], naming the call.
fn check_reader_bytes(call: &str, files: &[&js_sys::Uint8Array]) -> Result<(), JsError> {
    let total: u64 = files.iter().map(|f| u64::from(f.length())).sum();
    if total > WASM_READER_MAX_INPUT_BYTES {
        return Err(JsError::new(&format!(
            "{call}: the files are {} but one call reads at most {} in the browser; read a smaller region (or use the native CLI)",
            mib(total),
            mib(WASM_READER_MAX_INPUT_BYTES)
        )));
    }
    Ok(())
}

/// A call's wasm-memory need: the inputs copied in (`input_bytes` as passed, at least
/// `per_cell_input` per cell) plus `per_cell_work` bytes of intermediate arrays and results for
/// each of `n_cells` cells.
struct CallSize {
    n_cells: u64,
    per_cell_input: u64,
    per_cell_work: u64,
    input_bytes: u64,
}

impl CallSize {
    fn bytes(&self) -> u64 {
        let input = self.input_bytes.max(self.n_cells.saturating_mul(self.per_cell_input));
        input.saturating_add(self.n_cells.saturating_mul(self.per_cell_work))
    }

    /// Refuses the call if it needs more than [`WASM_CALL_BUDGET_BYTES`], saying how many
    /// cells of this shape fit (`verb` e.g. "classify").
    fn check(&self, call: &str, verb: &str, shape: &str) -> Result<(), JsError> {
        let need = self.bytes();
        if need <= WASM_CALL_BUDGET_BYTES {
            return Ok(());
        }
        let fit = WASM_CALL_BUDGET_BYTES / (self.per_cell_input + self.per_cell_work).max(1);
        Err(JsError::new(&format!(
            "{call}: {} cells ({shape}) need about {} of wasm memory, over the {} one call may use; {verb} in chunks of at most {fit} cells",
            self.n_cells,
            mib(need),
            mib(WASM_CALL_BUDGET_BYTES)
        )))
    }
}

/// Bytes per cell the classifier needs beyond its input: the aligned counts, the normalised
/// values and the model input (`[cells, n_inputs]` f32 each), logits `[cells, classes]` and
/// their copy for JS, class, confidence and flag.
fn classify_bytes_per_cell(model: &EngineModel) -> u64 {
    let c = &model.meta.config;
    4 * (3 * c.n_inputs() as u64 + 2 * c.n_classes as u64 + 2) + 1
}

fn set(obj: &Object, key: &str, value: &JsValue) -> Result<(), JsError> {
    Reflect::set(obj, &JsValue::from_str(key), value)
        .map(|_| ())
        .map_err(|_| JsError::new(&format!("could not set `{key}` on the result object")))
}

#[wasm_bindgen]
impl Classifier {
    /// Load a model file (safetensors bytes written by `cellsymphony train`/`export`).
    /// `useGpu` is `true`/`false` or an options object `{useGpu, int8Gemm, gpuFastPaths,
    /// gpuF16}` (an unknown key is an error listing the allowed ones; `int8Gemm: "w8a8"` runs
    /// an int8 file's CPU layers on int8 activations, `"f32"` (default) on f32 ones;
    /// `gpuFastPaths: false` opens WebGPU without its optional features (shader-f16), default
    /// true; `gpuF16: true` keeps the WGSL engine's feed-forward hidden as f16 where the
    /// adapter has shader-f16, default false). With `useGpu` the WGSL engine runs on WebGPU
    /// (fp32 files are quantised to int8 first); otherwise the plain-Rust CPU engine runs the
    /// file as stored.
    pub async fn load(
        #[wasm_bindgen(js_name = modelBytes, unchecked_param_type = "Uint8Array")] model_bytes: JsValue,
        #[wasm_bindgen(js_name = useGpu, unchecked_param_type = "boolean | { useGpu: boolean, int8Gemm?: \"f32\" | \"w8a8\", gpuFastPaths?: boolean, gpuF16?: boolean }")] use_gpu: JsValue,
    ) -> Result<Classifier, JsError> {
        let LoadChoice { use_gpu, int8_gemm, gpu_fast_paths, gpu_f16 } = load_options(&use_gpu)?;
        let model_bytes = bytes_arg("modelBytes", &model_bytes)?.to_vec();
        let model = EngineModel::from_safetensors_bytes(&model_bytes)
            .map_err(|e| JsError::new(&format!("model file: {e}")))?;
        drop(model_bytes);
        let (classifier, backend) = if use_gpu {
            let options = if gpu_fast_paths { GpuOptions::default() } else { GpuOptions::portable() };
            let ctx = GpuContext::with_options(options)
                .await
                .map_err(|e| JsError::new(&format!("WebGPU: {e}")))?;
            let backend = format!("webgpu: {}; {}", ctx.adapter_summary(), ctx.fast_paths());
            let mut clf = engine::Classifier::gpu(model, Arc::new(ctx))
                .map_err(|e| JsError::new(&format!("WebGPU: {e}")))?;
            if gpu_f16 {
                if let engine::Backend::Gpu(g) = clf.backend_mut() {
                    if !g.set_f16_hidden(true) {
                        return Err(JsError::new(&format!("WebGPU: gpuF16 needs shader-f16: {}", g.context().fast_paths())));
                    }
                }
            }
            (clf, backend)
        } else {
            let w8a8 = int8_gemm == engine::Int8Gemm::W8A8 && model.meta.quantization != engine::Quantization::None;
            let backend = format!("cpu: wasm engine, {} weights{}", model.meta.quantization.as_str(), if w8a8 { ", int8 activations (w8a8)" } else { "" });
            (engine::Classifier::cpu_with(model, int8_gemm).map_err(|e| JsError::new(&format!("model file: {e}")))?, backend)
        };
        Ok(Classifier { inner: Rc::new(Inner { classifier, backend }) })
    }

    /// Gene panel of the model, in the order its weights expect.
    #[wasm_bindgen(getter)]
    pub fn genes(&self) -> Vec<String> {
        self.model().meta.genes.clone()
    }

    /// Class names; `classify` returns indices into this list.
    #[wasm_bindgen(getter)]
    pub fn classes(&self) -> Vec<String> {
        self.model().meta.classes.clone()
    }

    /// `"gene_only"`, `"spatial"`, `"dual_modality"`, `"multi_input"` or `"image_only"`.
    #[wasm_bindgen(getter)]
    pub fn architecture(&self) -> String {
        self.model().meta.architecture.clone()
    }

    /// Side in pixels of the nucleus-centred patches the model reads (`undefined` when it
    /// reads none).
    #[wasm_bindgen(getter, js_name = patchSize)]
    pub fn patch_size(&self) -> Option<usize> {
        self.model().meta.config.morphology.as_ref().map(|m| m.image_size)
    }

    /// Pixel size in µm the patches must be cut at (`undefined` when the model reads none).
    #[wasm_bindgen(getter, js_name = patchUmPerPx)]
    pub fn patch_um_per_px(&self) -> Option<f64> {
        self.model().meta.config.morphology.as_ref().map(|m| m.um_per_px)
    }

    /// Protein markers the model reads beside the genes (trained with `--protein`; empty
    /// otherwise): pass their intensities as `classify`'s `proteins` with `proteinMarkers`.
    #[wasm_bindgen(getter, js_name = proteinMarkers)]
    pub fn protein_markers(&self) -> Vec<String> {
        self.model().meta.proteins.as_ref().map_or_else(Vec::new, |p| p.markers.clone())
    }

    /// Whether the model reads cell centroids (spatial and multi-input models).
    #[wasm_bindgen(getter, js_name = needsCentroids)]
    pub fn needs_centroids(&self) -> bool {
        self.model().meta.config.spatial.is_some()
    }

    /// `"webgpu: <adapter>"` or `"cpu: wasm engine, <quantization> weights"`.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.inner.backend.clone()
    }

    /// Compute dispatches per encoder layer of the WebGPU engine (`undefined` on the CPU
    /// engine): a benchmark figure.
    #[wasm_bindgen(js_name = dispatchesPerLayer)]
    pub fn dispatches_per_layer(&self) -> Result<Option<usize>, JsError> {
        match self.inner.classifier.backend() {
            engine::Backend::Gpu(g) => g.dispatches_per_layer().map(Some).map_err(|e| JsError::new(&format!("WebGPU: {e}"))),
            _ => Ok(None),
        }
    }

    /// Classify cells from raw counts `[cells, genes]` (row-major `Float32Array`) whose columns
    /// are named by `genes` (any order; extra genes are ignored, missing model genes are an
    /// error naming them). Optional `centroids` (`Float32Array [cells, 2]`, x, y in µm) and
    /// `patches` (`Float32Array [cells, patchSize, patchSize]`, intensities in [0, 1]) are
    /// validated when given. A model trained with `--protein` (see `proteinMarkers`) also
    /// needs `proteins` (`Float32Array [cells, proteinMarkers.length]`, intensities as
    /// `readXeniumZarr(...).protein.values` holds them) and their `proteinMarkers` (any order;
    /// a missing marker rejects naming it); other models ignore them.
    /// The values are normalised exactly as the model file records
    /// (raw counts for a `log1p_cp10k` model; for an `as_stored` or `arcsinh` model, the
    /// values it was trained on, any finite number). Resolves to `{classes, unclassified,
    /// logits, confidence}` (a cell without counts over the model's genes has class
    /// 4294967295, `unclassified[i] = 1` and confidence 0); bad input (shapes, NaN/Inf,
    /// negative counts for a counts model, missing genes) rejects with a message naming the
    /// array, element and value. `nCells` must be an exact integer; a call needing more than
    /// [`WASM_CALL_BUDGET_BYTES`] rejects up front with the largest chunk that fits.
    #[allow(clippy::too_many_arguments)]
    pub fn classify(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Float32Array")] counts: JsValue,
        #[wasm_bindgen(js_name = nCells, unchecked_param_type = "number")] n_cells: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string[]")] genes: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Float32Array | undefined")] centroids: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Float32Array | undefined")] patches: JsValue,
        #[wasm_bindgen(js_name = patchSize, unchecked_param_type = "number | undefined")] patch_size: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Float32Array | undefined")] proteins: JsValue,
        #[wasm_bindgen(js_name = proteinMarkers, unchecked_param_type = "string[] | undefined")] protein_markers: JsValue,
    ) -> Promise {
        let args = (|| -> Result<_, JsError> {
            let n_cells = size_arg("nCells", &n_cells, MAX_COUNT)?;
            let genes = strings_arg("genes", &genes)?;
            let counts = f32_arg("counts", &counts, "a Float32Array [cells*genes] of counts")?;
            let extras = Extras::new(&centroids, &patches, &patch_size, &proteins, &protein_markers)?;
            let size = CallSize {
                n_cells: n_cells as u64,
                per_cell_input: 4 * (genes.len() as u64 + extras.values_per_cell()),
                per_cell_work: classify_bytes_per_cell(self.model()),
                input_bytes: 4 * u64::from(counts.length()) + extras.bytes(),
            };
            size.check("classify", "classify", &format!("{} genes", genes.len()))?;
            Ok((counts.to_vec(), n_cells, genes, extras.copy_in()))
        })();
        let inner = Rc::clone(&self.inner);
        let (counts, n_cells, genes, (centroids, patches, patch_size, proteins)) = match args {
            Ok(a) => a,
            Err(e) => return Promise::reject(&e.into()),
        };
        future_to_promise(async move {
            let input = CountsInput::Dense { values: &counts, n_cells, n_genes: genes.len() };
            let proteins = proteins.as_ref().map(|(values, markers)| ProteinInput { values, markers });
            let cells = cell_input(input, &genes, centroids.as_deref(), patches.as_deref(), patch_size, proteins);
            classify_cells(&inner, cells).await.map_err(JsValue::from)
        })
    }

    /// [`classify`](Self::classify) with counts in compressed sparse rows (scipy `csr_matrix`
    /// layout): cell `c` has counts `data[indptr[c]..indptr[c+1]]` in the gene columns
    /// `indices[indptr[c]..indptr[c+1]]` (`indptr: Uint32Array [cells+1]`,
    /// `indices: Uint32Array [nnz]`, `data: Float32Array [nnz]`; each gene at most once per
    /// cell, any order). Same result and errors as `classify`.
    #[wasm_bindgen(js_name = classifyCsr)]
    #[allow(clippy::too_many_arguments)]
    pub fn classify_csr(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint32Array")] indptr: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Uint32Array")] indices: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Float32Array")] data: JsValue,
        #[wasm_bindgen(js_name = nCells, unchecked_param_type = "number")] n_cells: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string[]")] genes: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Float32Array | undefined")] centroids: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Float32Array | undefined")] patches: JsValue,
        #[wasm_bindgen(js_name = patchSize, unchecked_param_type = "number | undefined")] patch_size: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Float32Array | undefined")] proteins: JsValue,
        #[wasm_bindgen(js_name = proteinMarkers, unchecked_param_type = "string[] | undefined")] protein_markers: JsValue,
    ) -> Promise {
        let args = (|| -> Result<_, JsError> {
            let n_cells = size_arg("nCells", &n_cells, MAX_COUNT)?;
            let genes = strings_arg("genes", &genes)?;
            let data = f32_arg("data", &data, "a Float32Array [nnz] of counts")?;
            let extras = Extras::new(&centroids, &patches, &patch_size, &proteins, &protein_markers)?;
            let nnz = u64::from(data.length());
            let size = CallSize {
                n_cells: n_cells as u64,
                // indptr, and the stored counts spread over the cells (indices + data).
                per_cell_input: 4 * (1 + extras.values_per_cell()) + 8 * nnz.div_ceil((n_cells as u64).max(1)),
                per_cell_work: classify_bytes_per_cell(self.model()),
                input_bytes: 8 * nnz + 4 * js_length(&indptr) + extras.bytes(),
            };
            size.check("classifyCsr", "classify", &format!("{nnz} stored counts, {} genes", genes.len()))?;
            let indptr = u32_arg("indptr", &indptr, "a Uint32Array [cells+1]")?;
            let indices = u32_arg("indices", &indices, "a Uint32Array [nnz] of gene columns")?;
            Ok((indptr, indices, data.to_vec(), n_cells, genes, extras.copy_in()))
        })();
        let inner = Rc::clone(&self.inner);
        let (indptr, indices, data, n_cells, genes, (centroids, patches, patch_size, proteins)) = match args {
            Ok(a) => a,
            Err(e) => return Promise::reject(&e.into()),
        };
        future_to_promise(async move {
            let input = CountsInput::Csr { indptr: &indptr, indices: &indices, data: &data, n_cells, n_genes: genes.len() };
            let proteins = proteins.as_ref().map(|(values, markers)| ProteinInput { values, markers });
            let cells = cell_input(input, &genes, centroids.as_deref(), patches.as_deref(), patch_size, proteins);
            classify_cells(&inner, cells).await.map_err(JsValue::from)
        })
    }
}

/// `load`'s second argument: `true`/`false` or `{useGpu, int8Gemm?}` (`int8Gemm`: `"f32"`, the
/// default, or `"w8a8"`, see [`engine::Int8Gemm`]).
/// What `Classifier.load`'s second argument asks for.
struct LoadChoice {
    use_gpu: bool,
    int8_gemm: engine::Int8Gemm,
    /// Request WebGPU's optional features where the adapter has them (default true).
    gpu_fast_paths: bool,
    /// Keep the WGSL engine's feed-forward hidden as f16 (default false).
    gpu_f16: bool,
}

fn load_options(v: &JsValue) -> Result<LoadChoice, JsError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct LoadOptions {
        use_gpu: bool,
        #[serde(default)]
        int8_gemm: Option<String>,
        #[serde(default)]
        gpu_fast_paths: Option<bool>,
        #[serde(default)]
        gpu_f16: Option<bool>,
    }
    if let Some(b) = v.as_bool() {
        return Ok(LoadChoice { use_gpu: b, int8_gemm: engine::Int8Gemm::default(), gpu_fast_paths: true, gpu_f16: false });
    }
    if v.is_null() || v.is_undefined() {
        return Err(missing("useGpu", "true to run on WebGPU or false for the CPU engine (or {useGpu})"));
    }
    if !v.is_object() || js_sys::Array::is_array(v) {
        return Err(JsError::new(&format!("`useGpu` is {}: pass true/false or {{useGpu: true/false}}", describe(v))));
    }
    let o = options_from::<LoadOptions>("Classifier.load options", v.clone())?;
    let int8 = match o.int8_gemm.as_deref() {
        None => engine::Int8Gemm::default(),
        Some(name) => engine::Int8Gemm::parse(name).ok_or_else(|| {
            JsError::new(&format!("Classifier.load options: int8Gemm is {name:?}: pass \"f32\" (int8 weights × f32 activations, the default) or \"w8a8\" (int8 activations too, faster)"))
        })?,
    };
    Ok(LoadChoice { use_gpu: o.use_gpu, int8_gemm: int8, gpu_fast_paths: o.gpu_fast_paths.unwrap_or(true), gpu_f16: o.gpu_f16.unwrap_or(false) })
}

/// An options object as `T` (`deny_unknown_fields`): an unknown key is an error listing the
/// allowed keys. serde-wasm-bindgen reads only the fields a struct names (unknown keys would
/// pass unseen), so the object goes through a `serde_json::Value`, which keeps every key.
fn options_from<T: serde::de::DeserializeOwned>(what: &str, v: JsValue) -> Result<T, JsError> {
    let json: serde_json::Value = serde_wasm_bindgen::from_value(v).map_err(|e| JsError::new(&format!("{what}: {e}")))?;
    serde_json::from_value(json).map_err(|e| JsError::new(&format!("{what}: {e}")))
}

/// The optional `centroids`, `patches` and `patchSize` of `classify`/`classifyCsr`, checked
/// but not yet copied into wasm memory.
struct Extras {
    centroids: Option<Float32Array>,
    patches: Option<Float32Array>,
    patch_size: Option<usize>,
    /// `proteins` `[cells, proteinMarkers.length]` and their marker names.
    proteins: Option<(Float32Array, Vec<String>)>,
}

/// Copied extras: centroids, patches, patch size, proteins with their markers.
type ExtraValues = (Option<Vec<f32>>, Option<Vec<f32>>, Option<usize>, Option<(Vec<f32>, Vec<String>)>);

impl Extras {
    fn new(centroids: &JsValue, patches: &JsValue, patch_size: &JsValue, proteins: &JsValue, markers: &JsValue) -> Result<Self, JsError> {
        let proteins = match optional_f32_arg("proteins", proteins, "a Float32Array [cells*proteinMarkers.length] of protein intensities or undefined")? {
            Some(values) => Some((values, strings_arg("proteinMarkers", markers)?)),
            None => None,
        };
        Ok(Self {
            centroids: optional_f32_arg("centroids", centroids, "a Float32Array [cells*2] (x, y µm) or undefined")?,
            patches: optional_f32_arg("patches", patches, "a Float32Array [cells*patchSize*patchSize] or undefined")?,
            patch_size: optional_size_arg("patchSize", patch_size, 1 << 16)?,
            proteins,
        })
    }

    /// Input values per cell the extras add (2 centroid values, `patchSize²` pixels, one per
    /// protein marker).
    fn values_per_cell(&self) -> u64 {
        let px = self.patch_size.map_or(0, |s| (s * s) as u64);
        let markers = self.proteins.as_ref().map_or(0, |(_, m)| m.len() as u64);
        2 * u64::from(self.centroids.is_some()) + if self.patches.is_some() { px } else { 0 } + markers
    }

    /// Bytes of the extras as passed.
    fn bytes(&self) -> u64 {
        let protein = self.proteins.as_ref().map(|(v, _)| v);
        4 * [self.centroids.as_ref(), self.patches.as_ref(), protein].iter().map(|a| a.map_or(0, |a| u64::from(a.length()))).sum::<u64>()
    }

    fn copy_in(self) -> ExtraValues {
        (
            self.centroids.map(|a| a.to_vec()),
            self.patches.map(|a| a.to_vec()),
            self.patch_size,
            self.proteins.map(|(v, m)| (v.to_vec(), m)),
        )
    }
}

/// The JS arguments as the engine's [`CellInput`] (no copy); patches need their `patchSize`.
fn cell_input<'a>(
    counts: CountsInput<'a>,
    genes: &'a [String],
    centroids: Option<&'a [f32]>,
    patches: Option<&'a [f32]>,
    patch_size: Option<usize>,
    proteins: Option<ProteinInput<'a>>,
) -> Result<CellInput<'a>, JsError> {
    let patches = match (patches, patch_size) {
        (Some(pixels), Some(size)) => Some(PatchInput { pixels, size }),
        (Some(_), None) => return Err(JsError::new("patches were given without patchSize: pass the patch side length in pixels")),
        (None, _) => None,
    };
    Ok(CellInput { counts, genes, centroids_um: centroids, patches, proteins })
}

/// Classifies `cells` through [`engine::Classifier`] (validation, panel alignment, the model
/// file's normalisation, centroid features and patch checks in `prepare`, then the forward
/// pass and the prediction); resolves to `{classes, logits, confidence}`.
async fn classify_cells(inner: &Inner, cells: Result<CellInput<'_>, JsError>) -> Result<JsValue, JsError> {
    let cells = cells?;
    let clf = &inner.classifier;
    if let (Some(m), Some(p)) = (&clf.model().meta.config.morphology, &cells.patches) {
        if p.size != m.image_size {
            return Err(JsError::new(&format!(
                "patchSize is {} but this model reads {1}×{1} px patches (at {2} µm/px); cut the patches at that size",
                p.size, m.image_size, m.um_per_px
            )));
        }
    }
    let prepared = clf.prepare(cells).map_err(|e| JsError::new(&e.to_string()))?;
    let engine_error = |e: engine::EngineError| match clf.backend() {
        engine::Backend::Gpu(_) => JsError::new(&format!("WebGPU: {e}")),
        engine::Backend::Cpu => JsError::new(&e.to_string()),
    };
    let logits = clf.logits(&prepared).await.map_err(engine_error)?;
    let prediction = clf.predict(&logits, &prepared).map_err(engine_error)?;
    let out = Object::new();
    set(&out, "classes", &Uint32Array::from(prediction.classes.as_slice()).into())?;
    let unclassified: Vec<u8> = prediction.classes.iter().map(|&c| u8::from(c == engine::UNCLASSIFIED)).collect();
    set(&out, "unclassified", &js_sys::Uint8Array::from(unclassified.as_slice()).into())?;
    set(&out, "logits", &Float32Array::from(logits.as_slice()).into())?;
    set(&out, "confidence", &Float32Array::from(prediction.confidence.as_slice()).into())?;
    Ok(out.into())
}

/// Options of [`pair_cells`] (camelCase in JS; every field optional).
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
struct PairOptions {
    use_gpu: bool,
    epsilon: Option<f32>,
    pca_components: Option<usize>,
    min_cells: Option<usize>,
    tolerance: Option<f32>,
    max_iterations: Option<usize>,
    squared: bool,
    epsilon_scaling: bool,
    top_genes: Option<usize>,
    allow_unconverged: bool,
    /// Spatial proximity term, cost units per µm of control–target distance (needs
    /// `centroids`; none by default, as `cellsymphony pair`).
    spatial_lambda: Option<f32>,
}

thread_local! {
    /// The WebGPU context for pairing, created once on first use.
    static PAIR_GPU: std::cell::RefCell<Option<Rc<GpuContext>>> = const { std::cell::RefCell::new(None) };
}

async fn pair_gpu_context() -> Result<Rc<GpuContext>, JsError> {
    if let Some(ctx) = PAIR_GPU.with(|c| c.borrow().clone()) {
        return Ok(ctx);
    }
    let ctx = Rc::new(GpuContext::new().await.map_err(|e| JsError::new(&format!("WebGPU: {e}")))?);
    PAIR_GPU.with(|c| *c.borrow_mut() = Some(Rc::clone(&ctx)));
    Ok(ctx)
}

fn top_list(v: Vec<ot::GeneDelta>) -> Result<JsValue, JsError> {
    let arr = js_sys::Array::new();
    for g in v {
        let o = Object::new();
        set(&o, "gene", &JsValue::from_str(&g.gene))?;
        set(&o, "delta", &JsValue::from_f64(g.delta as f64))?;
        arr.push(&o);
    }
    Ok(arr.into())
}

/// Pair each control cell with a target cell by entropic optimal transport: log1p-cp10k
/// normalisation, PCA over both groups, log-domain Sinkhorn (WGSL on WebGPU with
/// `useGpu`, else the CPU engine), plan-row argmax, and the Δg signature. `counts` is
/// `[cells, genes]` row-major; `control`/`target` index its rows (each group needs at least
/// `minCells`, default 50). `progress(iteration, marginalError)` is called while solving.
/// `options.centroids` (`Float32Array [cells*2]`, µm) with `options.spatialLambda` adds
/// SPATIA's spatial proximity term, `λ` cost units per µm of control–target distance (as
/// `cellsymphony pair --spatial-lambda`; none by default); with centroids the result has
/// `meanDistanceUm` of the pairs.
#[wasm_bindgen(js_name = pairCells)]
pub fn pair_cells(
    #[wasm_bindgen(unchecked_param_type = "Float32Array")] counts: JsValue,
    #[wasm_bindgen(js_name = nCells, unchecked_param_type = "number")] n_cells: JsValue,
    #[wasm_bindgen(unchecked_param_type = "string[]")] genes: JsValue,
    #[wasm_bindgen(unchecked_param_type = "Uint32Array")] control: JsValue,
    #[wasm_bindgen(unchecked_param_type = "Uint32Array")] target: JsValue,
    #[wasm_bindgen(unchecked_param_type = "object | undefined")] options: JsValue,
    #[wasm_bindgen(unchecked_param_type = "((iteration: number, error: number) => void) | undefined")] progress: JsValue,
) -> Promise {
    let args = (|| -> Result<_, JsError> {
        let (opts, centroids): (PairOptions, Option<Float32Array>) = if options.is_undefined() || options.is_null() {
            (PairOptions::default(), None)
        } else if !options.is_object() || js_sys::Array::is_array(&options) {
            return Err(JsError::new(&format!("pairCells options is {}: pass an object such as {{useGpu: true}}", describe(&options))));
        } else {
            // `centroids` is a typed array: read it apart from the serde options.
            let rest = Object::assign(&Object::new(), options.unchecked_ref::<Object>());
            let centroids = Reflect::get(&rest, &JsValue::from_str("centroids")).unwrap_or(JsValue::UNDEFINED);
            let _ = Reflect::delete_property(&rest, &JsValue::from_str("centroids"));
            let centroids = optional_f32_arg("centroids", &centroids, "a Float32Array [cells*2] of centroids (x, y µm) or undefined")?;
            (options_from("pairCells options", rest.into())?, centroids)
        };
        if let Some(l) = opts.spatial_lambda {
            if !(l.is_finite() && l >= 0.0) {
                return Err(JsError::new(&format!("pairCells options: spatialLambda = {l}: pass a finite cost per µm ≥ 0 (e.g. 0.02)")));
            }
            if centroids.is_none() {
                return Err(JsError::new("pairCells options: spatialLambda needs `centroids` (Float32Array [cells*2], x, y in µm)"));
            }
        }
        let progress = match progress {
            p if p.is_undefined() || p.is_null() => None,
            p => Some(p.dyn_into::<js_sys::Function>().map_err(|p| {
                JsError::new(&format!("`progress` is {}: pass a function (iteration, error) or undefined", describe(&p)))
            })?),
        };
        let n_cells = size_arg("nCells", &n_cells, MAX_COUNT)?;
        let genes = strings_arg("genes", &genes)?;
        let counts = f32_arg("counts", &counts, "a Float32Array [cells*genes] of counts")?;
        let control = u32_arg("control", &control, "a Uint32Array of row indices")?;
        let target = u32_arg("target", &target, "a Uint32Array of row indices")?;
        let g = genes.len() as u64;
        // counts and their normalised copy [cells, genes]; the two groups' rows, their union
        // and the PCA input [cells in groups, genes].
        let size = CallSize {
            n_cells: n_cells as u64,
            per_cell_input: 4 * g,
            per_cell_work: 4 * g + 12 * g * (control.len() + target.len()) as u64 / (n_cells as u64).max(1),
            input_bytes: 4 * u64::from(counts.length()),
        };
        size.check("pairCells", "pair", &format!("{g} genes"))?;
        let centroids = match centroids {
            Some(c) if c.length() as u64 != 2 * n_cells as u64 => {
                return Err(JsError::new(&format!("centroids has {} values; nCells = {n_cells} needs {} (x, y µm per cell)", c.length(), 2 * n_cells)));
            }
            Some(c) => {
                let v = c.to_vec();
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    return Err(JsError::new(&format!("centroids[{i}] = {}: centroids must be finite µm", v[i])));
                }
                Some(v.chunks_exact(2).map(|p| [p[0], p[1]]).collect::<Vec<[f32; 2]>>())
            }
            None => None,
        };
        Ok((counts.to_vec(), n_cells, genes, control, target, opts, centroids, progress))
    })();
    let (counts, n_cells, genes, control, target, opts, centroids, progress) = match args {
        Ok(a) => a,
        Err(e) => return Promise::reject(&e.into()),
    };
    future_to_promise(async move {
        let result: Result<JsValue, JsError> = async {
            let g = genes.len();
            if g == 0 || Some(counts.len()) != n_cells.checked_mul(g) {
                return Err(JsError::new(&format!(
                    "counts has {} values but n_cells × genes = {n_cells} × {g}: pass a row-major [cells, genes] array",
                    counts.len()
                )));
            }
            if let Some((i, v)) = counts.iter().enumerate().find(|(_, v)| !v.is_finite() || **v < 0.0) {
                return Err(JsError::new(&format!("counts[cell {}, gene {}] = {v}: counts must be finite and ≥ 0", i / g, genes[i % g])));
            }
            for (name, idx) in [("control", &control), ("target", &target)] {
                if let Some(&bad) = idx.iter().find(|&&i| i as usize >= n_cells) {
                    return Err(JsError::new(&format!("{name} index {bad} is out of range (n_cells = {n_cells})")));
                }
            }
            let x = engine::normalise_log1p_cp10k(&counts, g, 1e4);
            let rows = |idx: &[u32]| -> Vec<f32> { idx.iter().flat_map(|&i| x[i as usize * g..(i as usize + 1) * g].iter().copied()).collect() };
            let (xc, xt) = (rows(&control), rows(&target));
            let union: Vec<f32> = xc.iter().chain(&xt).copied().collect();
            let pca_opts = ot::PcaOptions { n_components: opts.pca_components.unwrap_or(ot::DEFAULT_PCA_COMPONENTS).min(g) };
            let (pca, coords) = ot::pca(&union, control.len() + target.len(), g, &pca_opts).map_err(|e| JsError::new(&e.to_string()))?;
            let d = pca.n_components;
            let (cc, tc) = coords.split_at(control.len() * d);
            let ids = |idx: &[u32]| -> Vec<String> { idx.iter().map(|i| i.to_string()).collect() };
            let (ids_c, ids_t) = (ids(&control), ids(&target));
            let positions = |idx: &[u32]| -> Option<Vec<[f32; 2]>> { centroids.as_ref().map(|c| idx.iter().map(|&i| c[i as usize]).collect()) };
            let (pos_c, pos_t) = (positions(&control), positions(&target));
            let a = ot::StateCells { state: "A", lineage: "user selection", ids: &ids_c, coords: cc, positions_um: pos_c.as_deref() };
            let b = ot::StateCells { state: "B", lineage: "user selection", ids: &ids_t, coords: tc, positions_um: pos_t.as_deref() };
            let mut sinkhorn = ot::SinkhornOptions::default();
            if let Some(e) = opts.epsilon { sinkhorn.epsilon = e; }
            if let Some(t) = opts.tolerance { sinkhorn.tolerance = t; }
            if let Some(m) = opts.max_iterations { sinkhorn.max_iterations = m; }
            if opts.squared { sinkhorn.cost = ot::GroundCost::SquaredEuclidean; }
            if opts.epsilon_scaling { sinkhorn.epsilon_scaling = Some(ot::EpsilonScaling::default()); }
            let pairing_opts = ot::PairingOptions {
                sinkhorn,
                min_cells_per_state: opts.min_cells.unwrap_or(ot::DEFAULT_MIN_CELLS_PER_STATE),
                spatial_lambda: opts.spatial_lambda,
                allow_unconverged: opts.allow_unconverged,
            };
            let ctx = if opts.use_gpu { Some(pair_gpu_context().await?) } else { None };
            let engine = match &ctx {
                Some(c) => ot::SinkhornEngine::Gpu(c),
                None => ot::SinkhornEngine::Reference,
            };
            let on_progress = |it: usize, err: f32| {
                if let Some(f) = &progress {
                    let _ = f.call2(&JsValue::NULL, &JsValue::from_f64(it as f64), &JsValue::from_f64(err as f64));
                }
            };
            let pairing = ot::pair_states(&a, &b, d, &pairing_opts, engine, on_progress)
                .await
                .map_err(|e| JsError::new(&e.to_string()))?;
            let sig = ot::signature(&xc, control.len(), &xt, target.len(), &genes, &pairing.pairs)
                .map_err(|e| JsError::new(&e.to_string()))?;
            let tgt: Vec<u32> = pairing.pairs.iter().map(|p| p.1).collect();
            let score: Vec<f32> = pairing.records.iter().map(|r| r.match_score).collect();
            let s = &pairing.sinkhorn;
            let out = Object::new();
            set(&out, "target", &Uint32Array::from(tgt.as_slice()).into())?;
            set(&out, "matchScore", &Float32Array::from(score.as_slice()).into())?;
            set(&out, "iterations", &JsValue::from_f64(s.iterations as f64))?;
            set(&out, "error", &JsValue::from_f64(s.error as f64))?;
            set(&out, "converged", &JsValue::from_bool(s.converged))?;
            set(&out, "dispatches", &JsValue::from_f64(s.dispatches as f64))?;
            set(&out, "pcaComponents", &JsValue::from_f64(d as f64))?;
            let distances: Vec<f32> = pairing.records.iter().filter_map(|r| r.spatial_distance_um).collect();
            if !distances.is_empty() {
                set(&out, "meanDistanceUm", &JsValue::from_f64(distances.iter().map(|&d| f64::from(d)).sum::<f64>() / distances.len() as f64))?;
            }
            set(&out, "spatialLambda", &opts.spatial_lambda.map_or(JsValue::NULL, |l| JsValue::from_f64(f64::from(l))))?;
            set(&out, "backend", &JsValue::from_str(&ctx.as_ref().map_or("cpu".to_string(), |c| format!("webgpu: {}", c.adapter_summary()))))?;
            set(&out, "delta", &Float32Array::from(sig.delta.as_slice()).into())?;
            let k = opts.top_genes.unwrap_or(10);
            set(&out, "topUp", &top_list(sig.top_up(k))?)?;
            set(&out, "topDown", &top_list(sig.top_down(k))?)?;
            Ok(out.into())
        }
        .await;
        result.map_err(JsValue::from)
    })
}

/// A JS array of strings.
fn string_array(names: &[String]) -> js_sys::Array {
    names.iter().map(|n| JsValue::from_str(n)).collect()
}

/// Flattens `[x, y]` pairs into `[cells*2]`.
/// `{cellIds, genes, nCells, nGenes, counts}` of a dense table, `counts` `[cells*genes]`
/// row-major (the part `readXeniumTranscripts` and `readXeniumZarr` share).
fn dense_table_object(cell_ids: &[String], genes: &[String], counts: &[f32]) -> Result<Object, JsError> {
    let out = Object::new();
    set(&out, "cellIds", &string_array(cell_ids).into())?;
    set(&out, "genes", &string_array(genes).into())?;
    set(&out, "nCells", &JsValue::from_f64(cell_ids.len() as f64))?;
    set(&out, "nGenes", &JsValue::from_f64(genes.len() as f64))?;
    set(&out, "counts", &Float32Array::from(counts).into())?;
    Ok(out)
}

fn flat_xy(points: impl Iterator<Item = [f32; 2]>) -> Float32Array {
    let flat: Vec<f32> = points.flat_map(|p| p).collect();
    Float32Array::from(flat.as_slice())
}

/// Centroids (µm) of `cell_ids` from the bytes of a `cells.csv(.gz)`, `[cells*2]` in that order.
fn centroids_for(cell_ids: &[String], cells: &[u8], name: &str) -> Result<Float32Array, JsError> {
    let table = data::read_cells_csv_bytes(name, cells).map_err(|e| JsError::new(&e.to_string()))?;
    let mut ids = data::CellTable { cell_ids: cell_ids.to_vec(), ..Default::default() };
    data::attach_centroids(&mut ids, &table).map_err(|e| JsError::new(&e.to_string()))?;
    Ok(flat_xy(ids.centroids_um.into_iter()))
}

/// Read a Xenium / 10x MEX cell-feature matrix from the bytes of `features.tsv`,
/// `barcodes.tsv` and `matrix.mtx` (each plain or gzipped), with the native reader's parser:
/// gene-expression features that are no controls, cells and genes in canonical order.
/// Returns `{cellIds, genes, nCells, nGenes, indptr: Uint32Array [cells+1],
/// indices: Uint32Array [nnz], data: Float32Array [nnz]}` (CSR, ready for `classifyCsr`);
/// with the bytes of `cells.csv(.gz)` also `centroidsUm: Float32Array [cells*2]` (x, y µm).
/// Throws an `Error` naming the file and line of the first problem.
#[wasm_bindgen(js_name = readXeniumMex)]
pub fn read_xenium_mex(
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] features: JsValue,
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] barcodes: JsValue,
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] matrix: JsValue,
    #[wasm_bindgen(unchecked_param_type = "Uint8Array | undefined")] cells: JsValue,
) -> Result<JsValue, JsError> {
    let features = bytes_arg("features", &features)?;
    let barcodes = bytes_arg("barcodes", &barcodes)?;
    let matrix = bytes_arg("matrix", &matrix)?;
    let cells = if cells.is_null() || cells.is_undefined() { None } else { Some(bytes_arg("cells", &cells)?) };
    let mut files = vec![&features, &barcodes, &matrix];
    files.extend(cells.as_ref());
    check_reader_bytes("readXeniumMex", &files)?;
    let cells = cells.map(|c| c.to_vec());
    let m = data::read_mex_bytes(&features.to_vec(), &barcodes.to_vec(), &matrix.to_vec()).map_err(|e| JsError::new(&e.to_string()))?;
    let indptr: Vec<u32> = m
        .counts
        .indptr
        .iter()
        .map(|&v| u32::try_from(v))
        .collect::<Result<_, _>>()
        .map_err(|_| {
            JsError::new(&format!(
                "matrix.mtx: {} stored counts do not fit the Uint32Array indptr of classifyCsr (at most 4294967295); split the slide",
                m.counts.data.len()
            ))
        })?;
    let out = Object::new();
    set(&out, "cellIds", &string_array(&m.cell_ids).into())?;
    set(&out, "genes", &string_array(&m.genes).into())?;
    set(&out, "nCells", &JsValue::from_f64(m.cell_ids.len() as f64))?;
    set(&out, "nGenes", &JsValue::from_f64(m.genes.len() as f64))?;
    set(&out, "indptr", &Uint32Array::from(indptr.as_slice()).into())?;
    set(&out, "indices", &Uint32Array::from(m.counts.indices.as_slice()).into())?;
    set(&out, "data", &Float32Array::from(m.counts.data.as_slice()).into())?;
    if let Some(cells) = cells {
        let name = if cells.starts_with(&[0x1f, 0x8b]) { "cells.csv.gz" } else { "cells.csv" };
        set(&out, "centroidsUm", &centroids_for(&m.cell_ids, &cells, name)?.into())?;
    }
    Ok(out.into())
}

/// Read Xenium transcripts from the bytes of `transcripts.csv` or `transcripts.csv.gz`
/// (parquet is native-only) with the native reader's parser and filters (`qv >= minQv`,
/// default 20; no control features), aggregated per cell (unassigned transcripts dropped). `name` (default
/// `transcripts.csv`) is the file named in errors. Returns `{cellIds, genes, nCells, nGenes,
/// counts: Float32Array [cells*genes] (row-major, ready for `classify`),
/// centroidsUm: Float32Array [cells*2], nucleusCentroidsUm: Float32Array [cells*2] (NaN for a
/// cell with fewer than 3 nucleus transcripts)}`. Throws an `Error` naming the file and line.
#[wasm_bindgen(js_name = readXeniumTranscripts)]
pub fn read_xenium_transcripts(
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] bytes: JsValue,
    #[wasm_bindgen(js_name = minQv, unchecked_param_type = "number | undefined")] min_qv: JsValue,
    #[wasm_bindgen(unchecked_param_type = "string | undefined")] name: JsValue,
) -> Result<JsValue, JsError> {
    let bytes = bytes_arg("bytes", &bytes)?;
    check_reader_bytes("readXeniumTranscripts", &[&bytes])?;
    let name = optional_string_arg("name", &name)?.unwrap_or_else(|| "transcripts.csv".to_string());
    let mut opts = data::TranscriptOptions::default();
    if !(min_qv.is_undefined() || min_qv.is_null()) {
        match min_qv.as_f64() {
            Some(q) if q.is_finite() => opts.min_qv = q as f32,
            _ => return Err(JsError::new(&format!("`minQv` is {}: pass a finite number (default 20) or undefined", describe(&min_qv)))),
        }
    }
    let table = data::read_transcripts_table_bytes(&name, &bytes.to_vec(), &opts).map_err(|e| JsError::new(&e.to_string()))?;
    let out = dense_table_object(&table.cell_ids, &table.genes, &table.counts)?;
    set(&out, "centroidsUm", &flat_xy(table.centroids_um.iter().copied()).into())?;
    let nucleus = table.nucleus_centroids_um.iter().map(|c| c.unwrap_or([f32::NAN; 2]));
    set(&out, "nucleusCentroidsUm", &flat_xy(nucleus).into())?;
    Ok(out.into())
}

/// Centroids (x, y µm) of `cellIds` from the bytes of a Xenium `cells.csv(.gz)`, as a
/// `Float32Array [cells*2]` in the order of `cellIds` (e.g. `readXeniumMex(...).cellIds`).
/// Throws an `Error` naming the file and line of a bad row, or listing cells it lacks.
#[wasm_bindgen(js_name = readXeniumCells)]
pub fn read_xenium_cells(
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] bytes: JsValue,
    #[wasm_bindgen(js_name = cellIds, unchecked_param_type = "string[]")] cell_ids: JsValue,
    #[wasm_bindgen(unchecked_param_type = "string | undefined")] name: JsValue,
) -> Result<Float32Array, JsError> {
    let bytes = bytes_arg("bytes", &bytes)?;
    check_reader_bytes("readXeniumCells", &[&bytes])?;
    let cell_ids = strings_arg("cellIds", &cell_ids)?;
    let bytes = bytes.to_vec();
    let name = optional_string_arg("name", &name)?
        .unwrap_or_else(|| if bytes.starts_with(&[0x1f, 0x8b]) { "cells.csv.gz" } else { "cells.csv" }.to_string());
    centroids_for(&cell_ids, &bytes, &name)
}

/// Read Xenium's zarr outputs from the bytes of `cell_feature_matrix.zarr.zip` and
/// optionally `cells.zarr.zip`, with the native reader: gene-expression features that are no
/// controls, cells and genes in canonical order. Returns `{cellIds, genes, nCells, nGenes,
/// counts: Float32Array [cells*genes] (row-major, ready for `classify`)}`, with the cells
/// store also `centroidsUm: Float32Array [cells*2]`, and `protein` = `null` or (XOA ≥ 4)
/// `{markers: string[], values: Float32Array [cells*markers] (row-major, divided by the
/// scaling factor), scalingFactor: number}`. Throws an `Error` naming the file, the zarr array
/// or attribute, and what it holds.
#[wasm_bindgen(js_name = readXeniumZarr)]
pub fn read_xenium_zarr(
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] matrix: JsValue,
    #[wasm_bindgen(unchecked_param_type = "Uint8Array | undefined")] cells: JsValue,
) -> Result<JsValue, JsError> {
    let matrix = bytes_arg("matrix", &matrix)?;
    let cells = if cells.is_null() || cells.is_undefined() { None } else { Some(bytes_arg("cells", &cells)?) };
    let mut files = vec![&matrix];
    files.extend(cells.as_ref());
    check_reader_bytes("readXeniumZarr", &files)?;
    let (matrix, cells) = (matrix.to_vec(), cells.map(|c| c.to_vec()));
    let (table, protein) = data::read_xenium_zarr_bytes(
        data::CELL_FEATURE_MATRIX_ZARR,
        &matrix,
        cells.as_deref().map(|c| (data::CELLS_ZARR, c)),
    )
    .map_err(|e| JsError::new(&e.to_string()))?;
    let out = dense_table_object(&table.cell_ids, &table.genes, &table.counts)?;
    if cells.is_some() {
        set(&out, "centroidsUm", &flat_xy(table.centroids_um.iter().copied()).into())?;
    }
    let protein_js = match protein {
        None => JsValue::NULL,
        Some(p) => {
            let o = Object::new();
            set(&o, "markers", &string_array(&p.markers).into())?;
            set(&o, "values", &Float32Array::from(p.values.as_slice()).into())?;
            set(&o, "scalingFactor", &JsValue::from_f64(f64::from(p.scaling_factor)))?;
            o.into()
        }
    };
    set(&out, "protein", &protein_js)?;
    Ok(out.into())
}

/// An optional string argument (`undefined`/`null` mean absent).
fn optional_string_arg(name: &str, v: &JsValue) -> Result<Option<String>, JsError> {
    if v.is_null() || v.is_undefined() {
        return Ok(None);
    }
    v.as_string().map(Some).ok_or_else(|| JsError::new(&format!("`{name}` is {}: pass a string or undefined", describe(v))))
}

/// Most bytes of decoded samples `readTiff` produces in one call (512 MiB: a 16-bit level of
/// up to 268 million pixels, e.g. 16,384 × 16,384). Larger levels are refused before decoding
/// ("read a coarser level"); pick one with `targetUmPerPx`.
pub const WASM_TIFF_MAX_DECODED_BYTES: u64 = 1 << 29;

/// A JS `Uint8Array` as a TIFF source: the bytes stay in JS and each read copies only the
/// requested range into wasm memory (directories, then the chosen level's strips or tiles).
#[derive(Debug, Clone)]
struct JsBytes(js_sys::Uint8Array);

/// A position in a [`JsBytes`].
struct JsBytesReader {
    bytes: js_sys::Uint8Array,
    pos: u64,
    len: u64,
}

impl std::io::Read for JsBytesReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        if n > 0 {
            let end = self.pos + n as u64;
            self.bytes.subarray(self.pos as u32, end as u32).copy_to(&mut buf[..n]);
            self.pos = end;
        }
        Ok(n)
    }
}

impl std::io::Seek for JsBytesReader {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        let target = match pos {
            std::io::SeekFrom::Start(p) => Some(p),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            std::io::SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before byte 0"))?;
        Ok(self.pos)
    }
}

impl data::TiffSource for JsBytes {
    type Reader = JsBytesReader;
    fn reader(&self) -> std::io::Result<JsBytesReader> {
        Ok(JsBytesReader { bytes: self.0.clone(), pos: 0, len: u64::from(self.0.length()) })
    }
    fn len(&self) -> std::io::Result<u64> {
        Ok(u64::from(self.0.length()))
    }
}

/// Options of [`read_tiff`] (camelCase in JS; every field optional).
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
struct ReadTiffOptions {
    target_um_per_px: Option<f32>,
    um_per_px: Option<f32>,
    plane: usize,
    name: Option<String>,
}

/// Read one pyramid level of one plane of a (OME-)TIFF from its bytes (`Uint8Array` or
/// `ArrayBuffer`), grayscale 8- or 16-bit: only the directories and that level's strips or
/// tiles are copied into wasm memory (the file itself stays in JS), so a whole-slide file
/// costs the size of the level read. `options`: `targetUmPerPx` (read the coarsest level whose
/// pixels are at most this size; default full resolution; needs a pixel size), `umPerPx`
/// (full-resolution pixel size, overrides the OME-XML; needed for plain TIFFs), `plane`
/// (default 0), `name` (the file named in errors, default `image.tif`). Returns `{width,
/// height, pixels: Uint16Array [height*width] (row-major), level, downsample, umPerPx (of the
/// level, or null), originUm: [x, y] (slide position of pixel (0, 0)'s centre, the file's
/// top-left corner at 0), nPlanes, channelName, levels: [{width, height, downsample, umPerPx,
/// storedBytes}], fileBytesRead, decodedBytes}`. A level over
/// [`WASM_TIFF_MAX_DECODED_BYTES`] is refused; an unsupported layout or compression throws an
/// `Error` naming the TIFF field.
#[wasm_bindgen(js_name = readTiff)]
pub fn read_tiff(
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] bytes: JsValue,
    #[wasm_bindgen(unchecked_param_type = "{ targetUmPerPx?: number, umPerPx?: number, plane?: number, name?: string } | undefined")]
    options: JsValue,
) -> Result<JsValue, JsError> {
    read_tiff_level("readTiff", bytes, options, |tiff, plane, level| {
        let read = tiff.read_gray(plane, level)?;
        let pixels = js_sys::Uint16Array::from(read.image.pixels.as_slice()).into();
        Ok((read.image.width, read.image.height, pixels, read.downsample, read.um_per_px, read.stats))
    })
}

/// Read one pyramid level of an 8-bit RGB TIFF / OME-TIFF (e.g. an H&E image) from its bytes,
/// as [`read_tiff`] reads grayscale (same options; `plane` must be 0): only the directories
/// and that level's strips or tiles are copied into wasm memory. Returns what `readTiff`
/// returns with `pixels: Uint8Array [height*width*3]` (interleaved R, G, B, row-major) and
/// `channels: 3`; pass it to `detectNuclei(image, {stain: "he", ...})`. A grayscale file
/// throws naming `SamplesPerPixel`.
#[wasm_bindgen(js_name = readTiffRgb)]
pub fn read_tiff_rgb(
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] bytes: JsValue,
    #[wasm_bindgen(unchecked_param_type = "{ targetUmPerPx?: number, umPerPx?: number, plane?: number, name?: string } | undefined")]
    options: JsValue,
) -> Result<JsValue, JsError> {
    read_tiff_level("readTiffRgb", bytes, options, |tiff, plane, level| {
        if plane != 0 {
            return Err(data::DataError::InvalidArgument { name: "plane", value: plane.to_string(), expected: "0 (an RGB TIFF has one plane)" });
        }
        let read = tiff.read_rgb(level)?;
        let pixels = js_sys::Uint8Array::from(read.image.pixels.as_slice()).into();
        Ok((read.image.width, read.image.height, pixels, read.downsample, read.um_per_px, read.stats))
    })
}

/// What a level reader of [`read_tiff_level`] returns: width, height, pixels (a typed array),
/// downsample, µm per pixel of the level, read statistics.
type TiffLevelRead = (usize, usize, JsValue, f32, Option<f32>, data::ReadStats);

/// The shared part of [`read_tiff`] and [`read_tiff_rgb`]: options, level choice, and the
/// result object around the pixels `read` decodes.
fn read_tiff_level(
    call: &str,
    bytes: JsValue,
    options: JsValue,
    read: impl FnOnce(&data::PyramidTiff<JsBytes>, usize, usize) -> Result<TiffLevelRead, data::DataError>,
) -> Result<JsValue, JsError> {
    let bytes = bytes_arg("bytes", &bytes)?;
    let opts: ReadTiffOptions = if options.is_null() || options.is_undefined() { ReadTiffOptions::default() } else { options_from(&format!("{call} options"), options)? };
    let name = opts.name.clone().unwrap_or_else(|| "image.tif".to_string());
    let err = |e: data::DataError| JsError::new(&e.to_string());
    let mut tiff = data::PyramidTiff::from_source(&name, JsBytes(bytes)).map_err(err)?.with_max_decoded_bytes(WASM_TIFF_MAX_DECODED_BYTES);
    if let Some(um) = opts.um_per_px {
        if !(um.is_finite() && um > 0.0) {
            return Err(JsError::new(&format!("{call}: `umPerPx` = {um}: pass a positive pixel size in µm (Xenium: 0.2125)")));
        }
        tiff = tiff.with_um_per_px(um);
    }
    let level = match opts.target_um_per_px {
        Some(t) => tiff.level_for(t).map_err(err)?,
        None => 0,
    };
    let read = read(&tiff, opts.plane, level).map_err(err)?;
    Ok(level_object(&tiff, opts.plane, level, read)?.into())
}

/// The object [`read_tiff`] returns for level `level` of plane `plane` of `tiff`, read as
/// `read`.
fn level_object<S: data::TiffSource>(tiff: &data::PyramidTiff<S>, plane: usize, level: usize, read: TiffLevelRead) -> Result<Object, JsError> {
    let (width, height, pixels, downsample, level_um, stats) = read;
    let channels = js_length(&pixels) / (width as u64 * height as u64).max(1);
    let out = Object::new();
    set(&out, "width", &JsValue::from_f64(width as f64))?;
    set(&out, "height", &JsValue::from_f64(height as f64))?;
    set(&out, "pixels", &pixels)?;
    set(&out, "channels", &JsValue::from_f64(channels as f64))?;
    set(&out, "level", &JsValue::from_f64(level as f64))?;
    set(&out, "downsample", &JsValue::from_f64(f64::from(downsample)))?;
    let level_um = level_um.map_or(JsValue::NULL, |u| JsValue::from_f64(f64::from(u)));
    set(&out, "umPerPx", &level_um)?;
    let origin = match tiff.um_per_px() {
        Some(base) => {
            let frame = data::morphology::level_frame(&data::ImageFrame::from_corner([0.0, 0.0], base), downsample);
            js_sys::Array::of2(&JsValue::from_f64(f64::from(frame.origin_um[0])), &JsValue::from_f64(f64::from(frame.origin_um[1]))).into()
        }
        None => JsValue::NULL,
    };
    set(&out, "originUm", &origin)?;
    set(&out, "nPlanes", &JsValue::from_f64(tiff.n_planes() as f64))?;
    set(&out, "channelName", &JsValue::from_str(&tiff.channel_name(plane)))?;
    let levels = js_sys::Array::new();
    for l in tiff.levels() {
        let o = Object::new();
        set(&o, "width", &JsValue::from_f64(l.width as f64))?;
        set(&o, "height", &JsValue::from_f64(l.height as f64))?;
        set(&o, "downsample", &JsValue::from_f64(f64::from(l.downsample)))?;
        set(&o, "umPerPx", &l.um_per_px.map_or(JsValue::NULL, |u| JsValue::from_f64(f64::from(u))))?;
        set(&o, "storedBytes", &JsValue::from_f64(l.stored_bytes as f64))?;
        levels.push(&o);
    }
    set(&out, "levels", &levels.into())?;
    set(&out, "fileBytesRead", &JsValue::from_f64(stats.file_bytes_read as f64))?;
    set(&out, "decodedBytes", &JsValue::from_f64(stats.decoded_bytes as f64))?;
    Ok(out)
}

/// A grayscale image argument `{width, height, pixels: Uint16Array | Uint8Array}`, checked
/// (sizes, pixel count, at most [`WASM_TIFF_MAX_DECODED_BYTES`]) and copied into wasm memory.
fn gray_image_arg(call: &str, image: &JsValue) -> Result<data::GrayImage16, JsError> {
    if image.is_null() || image.is_undefined() {
        return Err(missing("image", "{width, height, pixels: Uint16Array}"));
    }
    let field = |k: &str| Reflect::get(image, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
    let width = size_arg("image.width", &field("width"), MAX_COUNT)?;
    let height = size_arg("image.height", &field("height"), MAX_COUNT)?;
    let pixels_js = field("pixels");
    let n = width as u64 * height as u64;
    if n.saturating_mul(2) > WASM_TIFF_MAX_DECODED_BYTES {
        return Err(JsError::new(&format!("{call}: a {width} x {height} px image is over the {} limit; read a coarser level", mib(WASM_TIFF_MAX_DECODED_BYTES))));
    }
    let length = js_length(&pixels_js);
    let wrong_length = || JsError::new(&format!("{call}: `image.pixels` has length {length}, expected width * height = {n}"));
    let pixels: Vec<u16> = if let Some(a) = pixels_js.dyn_ref::<js_sys::Uint16Array>() {
        if length != n {
            return Err(wrong_length());
        }
        a.to_vec()
    } else if let Some(a) = pixels_js.dyn_ref::<js_sys::Uint8Array>() {
        if length != n {
            return Err(wrong_length());
        }
        a.to_vec().into_iter().map(u16::from).collect()
    } else {
        return Err(JsError::new(&format!("{call}: `image.pixels` is {}: pass a Uint16Array or Uint8Array [height*width]", describe(&pixels_js))));
    };
    data::GrayImage16::new(width, height, pixels).map_err(|e| JsError::new(&e.to_string()))
}

/// Options of [`cut_patches`] (camelCase in JS).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CutPatchesOptions {
    pixel_size_um: f32,
    #[serde(default)]
    origin_um: [f32; 2],
    patch_size: usize,
    patch_um_per_px: f32,
}

/// Cut the patches a morphology classifier reads, centred on `centresUm` (`Float32Array
/// [n*2]`, x, y µm, e.g. `detectNuclei(...).centroidsUm`), with the native patch code (the
/// image's global 0.5/99.5 percentile stretch, bilinear with anti-aliasing, zero-padded at the
/// border). `options`: `pixelSizeUm` and `originUm` of the image (as for `detectNuclei`),
/// `patchSize` and `patchUmPerPx` (a classifier's `patchSize`/`patchUmPerPx`). Returns
/// `Float32Array [n*patchSize*patchSize]`, ready for `classify(..., patches, patchSize)`.
#[wasm_bindgen(js_name = cutPatches)]
pub fn cut_patches(
    #[wasm_bindgen(unchecked_param_type = "{ width: number, height: number, pixels: Uint16Array | Uint8Array }")] image: JsValue,
    #[wasm_bindgen(js_name = centresUm, unchecked_param_type = "Float32Array")] centres_um: JsValue,
    #[wasm_bindgen(unchecked_param_type = "{ pixelSizeUm: number, originUm?: [number, number], patchSize: number, patchUmPerPx: number }")]
    options: JsValue,
) -> Result<Float32Array, JsError> {
    if options.is_null() || options.is_undefined() {
        return Err(missing("options", "{pixelSizeUm, patchSize, patchUmPerPx}"));
    }
    let o: CutPatchesOptions = options_from("cutPatches options", options)?;
    let centres = patch_centres_arg("cutPatches", &centres_um, o.patch_size)?;
    if !(o.pixel_size_um.is_finite() && o.pixel_size_um > 0.0 && o.patch_um_per_px.is_finite() && o.patch_um_per_px > 0.0 && o.patch_size > 0) {
        return Err(JsError::new(&format!(
            "cutPatches: pixelSizeUm = {}, patchSize = {}, patchUmPerPx = {}: pass positive numbers (a classifier's patchSize and patchUmPerPx)",
            o.pixel_size_um, o.patch_size, o.patch_um_per_px
        )));
    }
    let image = gray_image_arg("cutPatches", &image)?;
    let frame = data::ImageFrame { origin_um: o.origin_um, um_per_px: o.pixel_size_um };
    let patches = data::model_patches(&image, &frame, &centres, o.patch_size, o.patch_um_per_px);
    Ok(Float32Array::from(patches.as_slice()))
}

/// The `centresUm` argument of `call` (`Float32Array [n*2]`, x, y µm) as points, checked (even
/// length, the call's size for `patch_size` px patches under the wasm memory limit).
fn patch_centres_arg(call: &str, centres_um: &JsValue, patch_size: usize) -> Result<Vec<[f32; 2]>, JsError> {
    let centres = f32_arg("centresUm", centres_um, "a Float32Array [n*2] of x, y µm")?;
    if centres.length() % 2 != 0 {
        return Err(JsError::new(&format!("{call}: `centresUm` has length {}, expected 2 per centre (x, y µm)", centres.length())));
    }
    let n = u64::from(centres.length() / 2);
    let per_cell = (patch_size as u64).saturating_mul(patch_size as u64).saturating_mul(8);
    CallSize { n_cells: n, per_cell_input: 8, per_cell_work: per_cell, input_bytes: 0 }.check(call, "cut patches", &format!("{patch_size} px patches"))?;
    Ok(centres.to_vec().chunks_exact(2).map(|c| [c[0], c[1]]).collect())
}

/// Options of [`detect_nuclei_js`] (camelCase in JS).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DetectNucleiOptions {
    pixel_size_um: f32,
    diameter_um: Option<f32>,
    min_distance_um: Option<f32>,
    threshold_scale: Option<f32>,
    tile_px: Option<usize>,
    #[serde(default)]
    origin_um: [f32; 2],
    #[serde(default)]
    stain: NucleusStain,
    #[serde(default)]
    watershed: bool,
}

/// `detectNuclei`'s `stain` option.
#[derive(serde::Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum NucleusStain {
    /// A grayscale fluorescent image (bright nuclei).
    #[default]
    Dapi,
    /// An RGB H&E image: colour deconvolution to haematoxylin first.
    He,
}

/// Find nucleus centroids in a DAPI image with the native `detect-nuclei` (scale-normalised
/// LoG maxima at the nucleus scale above an Otsu threshold, processed in tiles; identical
/// output). `image` is `{width, height, pixels: Uint16Array | Uint8Array [height*width]}`
/// (e.g. `readTiff`'s result). `options`: `pixelSizeUm` (required), `diameterUm` (default 8),
/// `minDistanceUm` (default half the diameter), `thresholdScale` (default 1), `tilePx`
/// (default 512), `originUm` ([x, y] of pixel (0, 0)'s centre; default [0, 0]), `stain`
/// (`"dapi"`, default, or `"he"`: `image` is then RGB `{width, height, pixels: Uint8Array
/// [height*width*3]}` and detection runs on its haematoxylin channel, Ruifrok–Johnston colour
/// deconvolution), `watershed` (default false: also the native watershed masks, see
/// `set_nucleus_masks`). Returns
/// `{nNuclei, centroidsPx: Float32Array [n*2] (col, row), centroidsUm: Float32Array [n*2]
/// (x, y = px · pixelSizeUm + originUm), response: Float32Array [n], intensity: Float32Array
/// [n], sigmaPx, threshold, nTiles, tileBytes}`.
#[wasm_bindgen(js_name = detectNuclei)]
pub fn detect_nuclei_js(
    #[wasm_bindgen(unchecked_param_type = "{ width: number, height: number, pixels: Uint16Array | Uint8Array }")] image: JsValue,
    #[wasm_bindgen(unchecked_param_type = "{ pixelSizeUm: number, diameterUm?: number, minDistanceUm?: number, thresholdScale?: number, tilePx?: number, originUm?: [number, number], stain?: \"dapi\" | \"he\", watershed?: boolean }")]
    options: JsValue,
) -> Result<JsValue, JsError> {
    use crate::analysis::nuclei::{detect_nuclei, NucleusOptions};
    if options.is_null() || options.is_undefined() {
        return Err(missing("options", "{pixelSizeUm} at least"));
    }
    let o: DetectNucleiOptions = options_from("detectNuclei options", options)?;
    let image = match o.stain {
        NucleusStain::Dapi => gray_image_arg("detectNuclei", &image)?,
        NucleusStain::He => crate::analysis::nuclei::haematoxylin(&rgb_image_arg("detectNuclei", &image)?),
    };
    let defaults = NucleusOptions::default();
    let opts = NucleusOptions {
        diameter_um: o.diameter_um.unwrap_or(defaults.diameter_um),
        min_distance_um: o.min_distance_um,
        threshold_scale: o.threshold_scale.unwrap_or(defaults.threshold_scale),
        tile_px: o.tile_px.unwrap_or(defaults.tile_px),
    };
    let det = detect_nuclei(&image, o.pixel_size_um, &opts).map_err(|e| JsError::new(&format!("detectNuclei: {e}")))?;
    let frame = data::ImageFrame { origin_um: o.origin_um, um_per_px: o.pixel_size_um };
    let out = detection_object(&det, &frame)?;
    if o.watershed {
        set_nucleus_masks(&out, &image, &det, &frame, opts.diameter_um)?;
    }
    Ok(out.into())
}

/// `detectNuclei`'s result without the masks: `{nNuclei, centroidsPx, centroidsUm, response,
/// intensity, sigmaPx, threshold, nTiles, tileBytes}`.
fn detection_object(det: &crate::analysis::nuclei::NucleusDetection, frame: &data::ImageFrame) -> Result<Object, JsError> {
    let out = Object::new();
    set(&out, "nNuclei", &JsValue::from_f64(det.nuclei.len() as f64))?;
    set(&out, "centroidsPx", &flat_xy(det.nuclei.iter().map(|n| n.px)).into())?;
    set(&out, "centroidsUm", &flat_xy(det.nuclei.iter().map(|n| frame.px_to_um(n.px))).into())?;
    let response: Vec<f32> = det.nuclei.iter().map(|n| n.response).collect();
    let intensity: Vec<f32> = det.nuclei.iter().map(|n| n.intensity).collect();
    set(&out, "response", &Float32Array::from(response.as_slice()).into())?;
    set(&out, "intensity", &Float32Array::from(intensity.as_slice()).into())?;
    set(&out, "sigmaPx", &JsValue::from_f64(f64::from(det.sigma_px)))?;
    set(&out, "threshold", &JsValue::from_f64(f64::from(det.threshold)))?;
    set(&out, "nTiles", &JsValue::from_f64(det.n_tiles as f64))?;
    set(&out, "tileBytes", &JsValue::from_f64(det.tile_bytes as f64))?;
    Ok(out)
}

/// `detectNuclei(..., {watershed: true})`: the native watershed masks of `det` on `image`
/// (the haematoxylin channel for H&E) as `labels: Uint32Array [height*width]` (0 background,
/// i + 1 nucleus i), `areaPx: Uint32Array [n]`, `areaUm2: Float32Array [n]`,
/// `maskCentroidsPx` / `maskCentroidsUm: Float32Array [n*2]`.
fn set_nucleus_masks(
    out: &Object,
    image: &data::GrayImage16,
    det: &crate::analysis::nuclei::NucleusDetection,
    frame: &data::ImageFrame,
    diameter_um: f32,
) -> Result<(), JsError> {
    let masks = crate::analysis::nuclei::watershed_nuclei(image, det, frame.um_per_px, diameter_um).map_err(|e| JsError::new(&format!("detectNuclei (watershed): {e}")))?;
    set(out, "labels", &js_sys::Uint32Array::from(masks.labels.as_slice()).into())?;
    set(out, "areaPx", &js_sys::Uint32Array::from(masks.area_px.as_slice()).into())?;
    set(out, "areaUm2", &Float32Array::from(masks.area_um2(frame.um_per_px).as_slice()).into())?;
    set(out, "maskCentroidsPx", &flat_xy(masks.centroid_px.iter().copied()).into())?;
    set(out, "maskCentroidsUm", &flat_xy(masks.centroid_px.iter().map(|&p| frame.px_to_um(p))).into())?;
    Ok(())
}

/// An RGB image argument `{width, height, pixels: Uint8Array [height*width*3]}` (interleaved
/// R, G, B; e.g. `readTiffRgb`'s result), checked and copied into wasm memory.
fn rgb_image_arg(call: &str, image: &JsValue) -> Result<data::RgbImage8, JsError> {
    if image.is_null() || image.is_undefined() {
        return Err(missing("image", "{width, height, pixels: Uint8Array [height*width*3]}"));
    }
    let field = |k: &str| Reflect::get(image, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
    let width = size_arg("image.width", &field("width"), MAX_COUNT)?;
    let height = size_arg("image.height", &field("height"), MAX_COUNT)?;
    let n = (width as u64).saturating_mul(height as u64).saturating_mul(3);
    if n > WASM_TIFF_MAX_DECODED_BYTES {
        return Err(JsError::new(&format!("{call}: a {width} x {height} px RGB image is over the {} limit; read a coarser level", mib(WASM_TIFF_MAX_DECODED_BYTES))));
    }
    let pixels_js = field("pixels");
    let Some(a) = pixels_js.dyn_ref::<js_sys::Uint8Array>() else {
        return Err(JsError::new(&format!("{call}: `image.pixels` is {}: with stain \"he\" pass a Uint8Array [height*width*3] of interleaved RGB (readTiffRgb)", describe(&pixels_js))));
    };
    if u64::from(a.length()) != n {
        return Err(JsError::new(&format!("{call}: `image.pixels` has length {}, expected width * height * 3 = {n} (RGB; stain \"he\")", a.length())));
    }
    data::RgbImage8::new(width, height, a.to_vec()).map_err(|e| JsError::new(&e.to_string()))
}
