//! `SpatiaModel`: SPATIA's whole hierarchy (issue 14) in the browser, on the wasm CPU engine
//! ([`SpatiaHierarchyModel`], the same code as `cellsymphony spatia classify --engine cpu`) or on
//! WebGPU ([`GpuSpatia`], the code of `spatia classify --engine wgpu`):
//! classify cells given where they sit (their niche's tile and its neighbours in the tissue
//! region) and assign each niche to the nearest stored k-means centroid of `z_niche` (the
//! "niche map").
//!
//! ```js
//! const m = await SpatiaModel.load(bytes /* spatia export's .safetensors */, { useGpu: false });
//! const r = await m.classifyWithContext({
//!   genes,       // Float32Array [n*nGenes]: normalised expression (log1p CP10k, the model's genes)
//!   patches,     // Float32Array [n*patchSize²]: nucleus-centred DAPI patches in [0, 1]
//!   nicheTiles,  // Float32Array [k*nicheSize²]: niche tiles (block means of the DAPI tile) in [0, 1]
//!   cellNiche,   // Uint32Array [n]: niche (< k) of each cell
//!   nicheSlot,   // Uint32Array [k]: slot (row*regionSide + col) of each niche in its region
//!   nicheRegion, // Uint32Array [k], optional: region of each niche (default: one region)
//! });
//! r.classes, r.probabilities, r.confidence, r.nicheClusters, r.composition, r.zNiche
//! ```

use std::rc::Rc;
use std::sync::Arc;

use js_sys::{Float32Array, Int32Array, Object, Promise, Uint32Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::{bytes_arg, describe, f32_arg, options_from, set, u32_arg, WASM_CALL_BUDGET_BYTES};
use crate::engine::{GpuSpatia, SpatiaHierarchyModel, SpatiaSlideInput, SpatiaSlideOutput, SpatiaSlidePlan};
use crate::gpu::{GpuContext, GpuOptions};

/// SPATIA's model (every level of the exported file), loaded for classification.
#[wasm_bindgen]
pub struct SpatiaModel {
    inner: Rc<Inner>,
}

struct Inner {
    model: SpatiaHierarchyModel,
    /// The WGSL engine when loaded with `useGpu`.
    gpu: Option<GpuSpatia>,
    backend: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SpatiaLoadOptions {
    /// Run on WebGPU (the WGSL engine) instead of the wasm CPU engine.
    #[serde(default)]
    use_gpu: bool,
    /// Let WebGPU use the adapter's optional features (default true).
    #[serde(default = "yes")]
    gpu_fast_paths: bool,
}

fn yes() -> bool {
    true
}

/// The inputs of one `classifyWithContext` call, copied out of JS.
struct SlideArrays {
    genes: Vec<f32>,
    patches: Vec<f32>,
    tiles: Vec<f32>,
    cell_niche: Vec<usize>,
    niche_slot: Vec<usize>,
    niche_region: Vec<usize>,
}

impl SlideArrays {
    fn input(&self) -> SpatiaSlideInput<'_> {
        SpatiaSlideInput { genes: &self.genes, patches: &self.patches, niche_images: &self.tiles, cell_niche: &self.cell_niche, niche_slot: &self.niche_slot, niche_region: &self.niche_region }
    }
}

#[wasm_bindgen]
impl SpatiaModel {
    /// Loads a file written by `cellsymphony spatia export` (a version-2 hierarchy file, or a
    /// version-1 cell-level file of a `--levels cell` model); `options` is `{useGpu?: false,
    /// gpuFastPaths?: true}`: with `useGpu` the WGSL engine runs on WebGPU (the weights as
    /// stored, int8 or f32), otherwise the plain-Rust CPU engine.
    pub async fn load(
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] bytes: JsValue,
        #[wasm_bindgen(unchecked_param_type = "{ useGpu?: boolean, gpuFastPaths?: boolean } | undefined")] options: JsValue,
    ) -> Result<SpatiaModel, JsError> {
        let opts: SpatiaLoadOptions = if options.is_null() || options.is_undefined() { SpatiaLoadOptions { use_gpu: false, gpu_fast_paths: true } } else { options_from("SpatiaModel.load options", options)? };
        let bytes = bytes_arg("bytes", &bytes)?.to_vec();
        let model = SpatiaHierarchyModel::from_safetensors_bytes(&bytes).map_err(|e| JsError::new(&format!("SPATIA model file: {e}")))?;
        drop(bytes);
        let weights = if model.is_int8() { "int8" } else { "f32" };
        let (gpu, backend) = if opts.use_gpu {
            let ctx = GpuContext::with_options(if opts.gpu_fast_paths { GpuOptions::default() } else { GpuOptions::portable() })
                .await
                .map_err(|e| JsError::new(&format!("WebGPU: {e}")))?;
            let backend = format!("webgpu: {}; {weights} weights", ctx.adapter_summary());
            (Some(GpuSpatia::new(Arc::new(ctx), &model).map_err(|e| JsError::new(&format!("WebGPU: {e}")))?), backend)
        } else {
            (None, format!("cpu: wasm engine, {weights} weights"))
        };
        Ok(SpatiaModel { inner: Rc::new(Inner { model, gpu, backend }) })
    }

    /// Class names.
    #[wasm_bindgen(getter)]
    pub fn classes(&self) -> Vec<String> {
        self.inner.model.meta.classes.clone()
    }

    /// `"cell"`, `"niche"` or `"tissue"`.
    #[wasm_bindgen(getter)]
    pub fn levels(&self) -> String {
        self.inner.model.meta.spec.levels.name().to_string()
    }

    /// Genes per cell (`genes` is `[n, nGenes]`).
    #[wasm_bindgen(getter, js_name = nGenes)]
    pub fn n_genes(&self) -> usize {
        self.inner.model.meta.spec.n_genes
    }

    /// Whether the model reads images (nucleus patches and niche tiles); `false` for an
    /// image-free model (imaging panels: expression and centroids only).
    #[wasm_bindgen(getter)]
    pub fn images(&self) -> bool {
        self.inner.model.meta.spec.images
    }

    /// Nucleus patch side in pixels.
    #[wasm_bindgen(getter, js_name = patchSize)]
    pub fn patch_size(&self) -> usize {
        self.inner.model.meta.spec.cell_image.image_size
    }

    /// Nucleus patch resolution, µm per pixel.
    #[wasm_bindgen(getter, js_name = patchUmPerPx)]
    pub fn patch_um_per_px(&self) -> f64 {
        self.inner.model.meta.spec.cell_image.um_per_px
    }

    /// Niche tile side in pixels (after the block-mean downsampling).
    #[wasm_bindgen(getter, js_name = nicheSize)]
    pub fn niche_size(&self) -> usize {
        self.inner.model.meta.spec.niche_image.image_size
    }

    /// Niche side in DAPI pixels before downsampling.
    #[wasm_bindgen(getter, js_name = nicheTilePx)]
    pub fn niche_tile_px(&self) -> usize {
        self.inner.model.meta.spec.niche_tile_px
    }

    /// DAPI resolution the niches are cut at, µm per pixel.
    #[wasm_bindgen(getter, js_name = nicheDapiUmPerPx)]
    pub fn niche_dapi_um_per_px(&self) -> f64 {
        self.inner.model.meta.spec.niche_dapi_um_per_px
    }

    /// Region side in niches.
    #[wasm_bindgen(getter, js_name = regionSide)]
    pub fn region_side(&self) -> usize {
        self.inner.model.meta.spec.region_niches
    }

    /// Niche clusters stored in the file (0: none, `nicheClusters` are then all −1).
    #[wasm_bindgen(getter, js_name = nicheClusterCount)]
    pub fn niche_cluster_count(&self) -> usize {
        self.inner.model.meta.niche_centroids.as_ref().map_or(0, |c| c.k)
    }

    /// Where classification runs.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.inner.backend.clone()
    }

    /// Classifies `n` cells in their context (see the module docs for the inputs) →
    /// `{classes: Uint32Array [n], probabilities: Float32Array [n·C], confidence: Float32Array
    /// [n], nicheClusters: Int32Array [k] (−1 without stored centroids or niche level),
    /// composition: Float32Array [k·C] (niche-composition logits; empty without the niche
    /// level), zNiche: Float32Array [k·D] (empty without the niche level)}`, as a Promise
    /// (bad input rejects naming the array, index and value).
    #[wasm_bindgen(js_name = classifyWithContext, unchecked_return_type = "Promise<object>")]
    pub fn classify_with_context(
        &self,
        #[wasm_bindgen(unchecked_param_type = "{ genes: Float32Array, patches: Float32Array, nicheTiles: Float32Array, cellNiche: Uint32Array, nicheSlot: Uint32Array, nicheRegion?: Uint32Array }")] inputs: JsValue,
        #[wasm_bindgen(js_name = onProgress, unchecked_param_type = "((regionsDone: number, regions: number) => void) | undefined")] on_progress: JsValue,
    ) -> Promise {
        let arrays = match self.slide_arrays(&inputs) {
            Ok(a) => a,
            Err(e) => return Promise::reject(&e.into()),
        };
        let progress = match on_progress {
            v if v.is_null() || v.is_undefined() => None,
            v => match v.dyn_into::<js_sys::Function>() {
                Ok(f) => Some(f),
                Err(v) => return Promise::reject(&JsError::new(&format!("classifyWithContext: onProgress is {}: pass a function (regionsDone, regions) or nothing", describe(&v))).into()),
            },
        };
        let inner = Rc::clone(&self.inner);
        future_to_promise(async move {
            let fail = |e: crate::engine::EngineError| JsError::new(&format!("classifyWithContext: {e}"));
            let input = arrays.input();
            // The slide plan of both engines (SpatiaCpu::forward_slide / GpuSpatia::forward_slide),
            // driven here so that progress is reported after every region.
            let plan = SpatiaSlidePlan::new(&inner.model.meta, &input).map_err(fail)?;
            enum Engine<'a> {
                Gpu(&'a GpuSpatia),
                Cpu(crate::engine::SpatiaCpu<'a>),
            }
            let engine = match &inner.gpu {
                Some(gpu) => Engine::Gpu(gpu),
                None => Engine::Cpu(inner.model.prepare().map_err(fail)?),
            };
            let mut out = plan.output();
            for i in 0..plan.len() {
                let region = plan.region(i);
                let r = match &engine {
                    Engine::Gpu(gpu) => gpu.forward_region(&region.input()).await,
                    Engine::Cpu(cpu) => cpu.forward_region(&region.input()),
                }
                .map_err(fail)?;
                plan.scatter(i, &r, &mut out);
                if let Some(f) = &progress {
                    f.call2(&JsValue::NULL, &JsValue::from(i + 1), &JsValue::from(plan.len()))?;
                }
            }
            result_object(out, inner.model.meta.spec.n_classes, arrays.cell_niche.len()).map(JsValue::from).map_err(JsValue::from)
        })
    }
}

impl SpatiaModel {
    /// The checked inputs of `classifyWithContext`, copied out of JS.
    fn slide_arrays(&self, inputs: &JsValue) -> Result<SlideArrays, JsError> {
        let inputs = inputs.clone();
        if inputs.is_null() || inputs.is_undefined() || !inputs.is_object() {
            return Err(JsError::new(&format!("SpatiaModel.classifyWithContext: the inputs are {}: pass {{genes, patches, nicheTiles, cellNiche, nicheSlot, nicheRegion?}}", describe(&inputs))));
        }
        const KEYS: [&str; 6] = ["genes", "patches", "nicheTiles", "cellNiche", "nicheSlot", "nicheRegion"];
        for key in Object::keys(inputs.unchecked_ref::<Object>()).iter().filter_map(|k| k.as_string()) {
            if !KEYS.contains(&key.as_str()) {
                return Err(JsError::new(&format!("SpatiaModel.classifyWithContext: unknown input `{key}`; allowed: {}", KEYS.join(", "))));
            }
        }
        let get = |k: &str| js_sys::Reflect::get(&inputs, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
        let s = &self.inner.model.meta.spec;
        // An image-free model (`spec.images == false`) reads no patches and no niche tiles: they
        // may be left out (or passed empty).
        let (px, npx) = if s.images { (s.cell_image.image_size.pow(2), s.niche_image.image_size.pow(2)) } else { (0, 0) };
        let (g, side) = (s.n_genes, s.region_niches);
        let get_image = |k: &str| match get(k) {
            v if !s.images && (v.is_null() || v.is_undefined()) => Float32Array::new_with_length(0).into(),
            v => v,
        };
        let genes = f32_arg("genes", &get("genes"), &format!("a Float32Array [n*{g}] of normalised expression"))?;
        let patches = f32_arg("patches", &get_image("patches"), &format!("a Float32Array [n*{px}] of nucleus patches"))?;
        let cell_niche = u32_arg("cellNiche", &get("cellNiche"), "a Uint32Array [n] of each cell's niche")?;
        let n = cell_niche.len();
        let has_niche = s.levels.has_niche();
        let (tiles, niche_slot) = if has_niche {
            (Some(f32_arg("nicheTiles", &get_image("nicheTiles"), &format!("a Float32Array [k*{npx}] of niche tiles"))?), u32_arg("nicheSlot", &get("nicheSlot"), "a Uint32Array [k] of each niche's slot in its region")?)
        } else {
            (None, Vec::new())
        };
        let k = if has_niche { niche_slot.len() } else { cell_niche.iter().map(|&v| v as usize + 1).max().unwrap_or(0) };
        let region_of = match get("nicheRegion") {
            v if v.is_null() || v.is_undefined() => vec![0u32; k],
            v => u32_arg("nicheRegion", &v, "a Uint32Array [k] of each niche's region")?,
        };
        let bytes = 4 * (genes.length() as u64 + 3 * patches.length() as u64 + 3 * tiles.as_ref().map_or(0, |t| t.length() as u64)) + 4 * (n as u64) * 64 * (s.d_model as u64);
        if bytes > WASM_CALL_BUDGET_BYTES {
            return Err(JsError::new(&format!("SpatiaModel.classifyWithContext: {n} cells need about {} MiB of wasm memory (budget {} MiB): classify in chunks of whole regions", bytes >> 20, WASM_CALL_BUDGET_BYTES >> 20)));
        }
        if genes.length() as usize != n * g || patches.length() as usize != n * px {
            return Err(JsError::new(&format!(
                "classifyWithContext: cellNiche has {n} cells, so genes needs {} values (has {}) and patches {} (has {})",
                n * g,
                genes.length(),
                n * px,
                patches.length()
            )));
        }
        if let Some(t) = &tiles {
            if t.length() as usize != k * npx {
                return Err(JsError::new(&format!("classifyWithContext: nicheSlot has {k} niches, so nicheTiles needs {} values (has {})", k * npx, t.length())));
            }
        }
        if region_of.len() != k {
            return Err(JsError::new(&format!("classifyWithContext: nicheRegion has {} entries but there are {k} niches", region_of.len())));
        }
        if let Some((i, &v)) = cell_niche.iter().enumerate().find(|(_, &v)| v as usize >= k) {
            return Err(JsError::new(&format!("classifyWithContext: cellNiche[{i}] = {v} but there are {k} niches")));
        }
        if let Some((i, &v)) = niche_slot.iter().enumerate().find(|(_, &v)| v as usize >= side * side) {
            return Err(JsError::new(&format!("classifyWithContext: nicheSlot[{i}] = {v} is outside the {side}×{side} region")));
        }
        let (genes, patches, tiles) = (genes.to_vec(), patches.to_vec(), tiles.map(|t| t.to_vec()).unwrap_or_default());
        Ok(SlideArrays {
            genes,
            patches,
            tiles,
            cell_niche: cell_niche.iter().map(|&v| v as usize).collect(),
            niche_slot: niche_slot.iter().map(|&v| v as usize).collect(),
            niche_region: region_of.iter().map(|&v| v as usize).collect(),
        })
    }
}

/// `{classes, probabilities, confidence, logits, nicheClusters, composition, zNiche}` of a
/// slide's outputs (`n` cells, `c` classes).
fn result_object(res: SpatiaSlideOutput, c: usize, n: usize) -> Result<Object, JsError> {
    let logits = res.logits;
    // Softmax, argmax (first maximum), confidence.
    let mut classes = Vec::with_capacity(n);
    let mut confidence = Vec::with_capacity(n);
    let mut probabilities = vec![0f32; n * c];
    for (row, p) in logits.chunks_exact(c).zip(probabilities.chunks_exact_mut(c)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
        for (pv, v) in p.iter_mut().zip(row) {
            *pv = (v - max).exp() / sum;
        }
        let best = row.iter().enumerate().fold(0, |b, (j, &v)| if v > row[b] { j } else { b });
        classes.push(best as u32);
        confidence.push(p[best]);
    }
    let clusters: Vec<i32> = res.niche_clusters.iter().map(|cl| cl.map_or(-1, |v| v as i32)).collect();
    let (composition, z_niche) = (res.composition, res.z_niche);
    let out = Object::new();
    set(&out, "classes", &Uint32Array::from(&classes[..]).into())?;
    set(&out, "probabilities", &Float32Array::from(&probabilities[..]).into())?;
    set(&out, "confidence", &Float32Array::from(&confidence[..]).into())?;
    set(&out, "logits", &Float32Array::from(&logits[..]).into())?;
    set(&out, "nicheClusters", &Int32Array::from(&clusters[..]).into())?;
    set(&out, "composition", &Float32Array::from(&composition[..]).into())?;
    set(&out, "zNiche", &Float32Array::from(&z_niche[..]).into())?;
    Ok(out)
}
