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
//! started on a browser without WebGPU. Every error comes back as a rejected promise with a
//! message; nothing panics across this boundary.

use std::rc::Rc;
use std::sync::Arc;

use js_sys::{Float32Array, Object, Promise, Reflect, Uint32Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::data::{self, CellInput, CountsInput, PatchInput};
use crate::engine::{self, EngineModel};
use crate::gpu::GpuContext;
use crate::ot;

struct Inner {
    classifier: engine::Classifier,
    backend: String,
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
        let (classifier, backend) = if use_gpu {
            let ctx = GpuContext::new()
                .await
                .map_err(|e| JsError::new(&format!("WebGPU: {e}")))?;
            let backend = format!("webgpu: {}", ctx.adapter_summary());
            let clf = engine::Classifier::gpu(model, Arc::new(ctx))
                .map_err(|e| JsError::new(&format!("WebGPU: {e}")))?;
            (clf, backend)
        } else {
            let backend = format!("cpu: wasm engine, {} weights", model.meta.quantization.as_str());
            (engine::Classifier::cpu(model).map_err(|e| JsError::new(&format!("model file: {e}")))?, backend)
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

    /// `"gene_only"`, `"spatial"`, `"dual_modality"` or `"multi_input"`.
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
    /// validated when given. The values are normalised exactly as the model file records
    /// (raw counts for a `log1p_cp10k` model; for an `as_stored` or `arcsinh` model, the
    /// values it was trained on, any finite number). Resolves to `{classes, logits,
    /// confidence}`; bad input (shapes, NaN/Inf, negative counts for a counts model, missing
    /// genes) rejects with a message naming the array, element and value.
    #[allow(clippy::too_many_arguments)]
    pub fn classify(
        &self,
        counts: Vec<f32>,
        n_cells: usize,
        genes: Vec<String>,
        centroids: Option<Vec<f32>>,
        patches: Option<Vec<f32>>,
        patch_size: Option<usize>,
    ) -> Promise {
        let inner = Rc::clone(&self.inner);
        future_to_promise(async move {
            let input = CountsInput::Dense { values: &counts, n_cells, n_genes: genes.len() };
            let cells = cell_input(input, &genes, centroids.as_deref(), patches.as_deref(), patch_size);
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
        indptr: Vec<u32>,
        indices: Vec<u32>,
        data: Vec<f32>,
        n_cells: usize,
        genes: Vec<String>,
        centroids: Option<Vec<f32>>,
        patches: Option<Vec<f32>>,
        patch_size: Option<usize>,
    ) -> Promise {
        let inner = Rc::clone(&self.inner);
        future_to_promise(async move {
            let input = CountsInput::Csr { indptr: &indptr, indices: &indices, data: &data, n_cells, n_genes: genes.len() };
            let cells = cell_input(input, &genes, centroids.as_deref(), patches.as_deref(), patch_size);
            classify_cells(&inner, cells).await.map_err(JsValue::from)
        })
    }
}

/// The JS arguments as the engine's [`CellInput`] (no copy); patches need their `patchSize`.
fn cell_input<'a>(
    counts: CountsInput<'a>,
    genes: &'a [String],
    centroids: Option<&'a [f32]>,
    patches: Option<&'a [f32]>,
    patch_size: Option<usize>,
) -> Result<CellInput<'a>, JsError> {
    let patches = match (patches, patch_size) {
        (Some(pixels), Some(size)) => Some(PatchInput { pixels, size }),
        (Some(_), None) => return Err(JsError::new("patches were given without patchSize: pass the patch side length in pixels")),
        (None, _) => None,
    };
    Ok(CellInput { counts, genes, centroids_um: centroids, patches })
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
#[wasm_bindgen(js_name = pairCells)]
pub fn pair_cells(
    counts: Vec<f32>,
    n_cells: usize,
    genes: Vec<String>,
    control: Vec<u32>,
    target: Vec<u32>,
    options: JsValue,
    progress: Option<js_sys::Function>,
) -> Promise {
    future_to_promise(async move {
        let result: Result<JsValue, JsError> = async {
            let opts: PairOptions = if options.is_undefined() || options.is_null() {
                PairOptions::default()
            } else {
                serde_wasm_bindgen::from_value(options).map_err(|e| JsError::new(&format!("pairCells options: {e}")))?
            };
            let g = genes.len();
            if g == 0 || counts.len() != n_cells * g {
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
            let a = ot::StateCells { state: "A", lineage: "user selection", ids: &ids_c, coords: cc, positions_um: None };
            let b = ot::StateCells { state: "B", lineage: "user selection", ids: &ids_t, coords: tc, positions_um: None };
            let mut sinkhorn = ot::SinkhornOptions::default();
            if let Some(e) = opts.epsilon { sinkhorn.epsilon = e; }
            if let Some(t) = opts.tolerance { sinkhorn.tolerance = t; }
            if let Some(m) = opts.max_iterations { sinkhorn.max_iterations = m; }
            if opts.squared { sinkhorn.cost = ot::GroundCost::SquaredEuclidean; }
            if opts.epsilon_scaling { sinkhorn.epsilon_scaling = Some(ot::EpsilonScaling::default()); }
            let pairing_opts = ot::PairingOptions {
                sinkhorn,
                min_cells_per_state: opts.min_cells.unwrap_or(ot::DEFAULT_MIN_CELLS_PER_STATE),
                spatial_lambda: None,
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
    features: &[u8],
    barcodes: &[u8],
    matrix: &[u8],
    cells: Option<Vec<u8>>,
) -> Result<JsValue, JsError> {
    let m = data::read_mex_bytes(features, barcodes, matrix).map_err(|e| JsError::new(&e.to_string()))?;
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
pub fn read_xenium_transcripts(bytes: &[u8], min_qv: Option<f32>, name: Option<String>) -> Result<JsValue, JsError> {
    let name = name.unwrap_or_else(|| "transcripts.csv".to_string());
    let mut opts = data::TranscriptOptions::default();
    if let Some(q) = min_qv {
        opts.min_qv = q;
    }
    let table = data::read_transcripts_table_bytes(&name, bytes, &opts).map_err(|e| JsError::new(&e.to_string()))?;
    let out = Object::new();
    set(&out, "cellIds", &string_array(&table.cell_ids).into())?;
    set(&out, "genes", &string_array(&table.genes).into())?;
    set(&out, "nCells", &JsValue::from_f64(table.n_cells() as f64))?;
    set(&out, "nGenes", &JsValue::from_f64(table.n_genes() as f64))?;
    set(&out, "counts", &Float32Array::from(table.counts.as_slice()).into())?;
    set(&out, "centroidsUm", &flat_xy(table.centroids_um.iter().copied()).into())?;
    let nucleus = table.nucleus_centroids_um.iter().map(|c| c.unwrap_or([f32::NAN; 2]));
    set(&out, "nucleusCentroidsUm", &flat_xy(nucleus).into())?;
    Ok(out.into())
}

/// Centroids (x, y µm) of `cellIds` from the bytes of a Xenium `cells.csv(.gz)`, as a
/// `Float32Array [cells*2]` in the order of `cellIds` (e.g. `readXeniumMex(...).cellIds`).
/// Throws an `Error` naming the file and line of a bad row, or listing cells it lacks.
#[wasm_bindgen(js_name = readXeniumCells)]
pub fn read_xenium_cells(bytes: &[u8], cell_ids: Vec<String>, name: Option<String>) -> Result<Float32Array, JsError> {
    let name = name.unwrap_or_else(|| if bytes.starts_with(&[0x1f, 0x8b]) { "cells.csv.gz" } else { "cells.csv" }.to_string());
    centroids_for(&cell_ids, bytes, &name)
}
