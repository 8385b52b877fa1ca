// The cellsymphony package's main entry (`import { Classifier } from "cellsymphony"`): the
// engine on the calling thread, loaded on first use (no `init()` to call) on the device the
// caller asks for ("auto": WebGPU where a hardware adapter is found, else the CPU engine).
//
//   const clf = await Classifier.load(modelBytes);            // {device: "auto"} by default
//   const { classes, confidence } = await clf.classify(counts, nCells, genes, { onProgress, signal });
//   clf.classes[classes[0]], clf.device                        // "webgpu" | "cpu"
//
// The same API runs in a module Worker from "cellsymphony/worker" (client.js). Types: index.d.ts.
import * as wasm from "./wasm.js";
import { classifyInChunks, abortError, enqueue, yieldToEventLoop, classifyPatchesOnly } from "./chunked.js";
import { CellSymphonyError, asCellSymphonyError } from "./errors.js";
import { pickDevice, requestedDevice } from "./device.js";

export { CellSymphonyError } from "./errors.js";
export { DEFAULT_CHUNK_CELLS, defaultChunkCells } from "./chunked.js";
export const { simd, simdSupported, relaxedSimd, relaxedSimdSupported } = wasm;
/** The wasm build loaded on this thread: "relaxed", "simd" or "scalar" (js/wasm.js). */
export const wasmBuild = wasm.build;

let ready = null;
/** Instantiates the wasm module once (the SIMD128 or the scalar build, see wasm.js); resolves
 * to a function giving the size of its memory in bytes. */
function wasmReady() {
  ready ??= wasm.init().then((exports) => () => exports?.memory?.buffer?.byteLength ?? 0);
  return ready;
}

/** Bytes of the wasm memory on this thread (0 before the first call: it only grows). */
export async function wasmMemoryBytes() {
  return (await wasmReady())();
}

/** The keys `Classifier.load` reads (an unknown key is a CellSymphonyError "options"). */
const LOAD_OPTIONS = ["device", "useGpu", "int8Gemm", "gpuFastPaths", "gpuF16"];

const INFO = ["genes", "classes", "architecture", "backend", "patchSize", "patchUmPerPx", "needsCentroids", "proteinMarkers"];

/** A cell-type classifier on this thread. `classify` runs in chunks with progress and cancel
 * between them (yielding to the event loop, so a page can paint); calls on one classifier
 * run one after another. */
export class Classifier {
  /** Use {@link Classifier.load}. */
  constructor(clf, device, memory) {
    if (!clf) throw new CellSymphonyError("options", "use `await Classifier.load(modelBytes, {device})` to create a Classifier");
    this._wasm = clf;
    this._memory = memory;
    this._queue = { tail: Promise.resolve() };
    for (const k of INFO) this[k] = clf[k];
    this.device = device;
    this.wasmSimd = wasm.simd;
    this.wasmBuild = wasm.build;
  }

  /** Loads a model file (safetensors bytes written by `cellsymphony train`/`export`) on
   * `device` ("auto" by default). Rejects with a `CellSymphonyError`: code "model" for a
   * file the engine cannot load, "device" for "webgpu" without an adapter, "options" for an
   * unknown device. `useGpu` (boolean) is the older spelling of `device`; `int8Gemm`
   * ("f32" default, "w8a8") picks the CPU engine's int8 GEMM (int8 activations with "w8a8");
   * `gpuFastPaths` (default true) lets WebGPU use the adapter's optional features
   * (shader-f16), false turns them off; `gpuF16` (default false) keeps the WebGPU engine's
   * feed-forward hidden as f16 (needs shader-f16; rejects with "device" without it). */
  static async load(modelBytes, options = {}) {
    const unknown = Object.keys(options ?? {}).filter((k) => !LOAD_OPTIONS.includes(k));
    if (unknown.length > 0) {
      throw new CellSymphonyError("options", `Classifier.load: unknown option ${unknown.map((k) => JSON.stringify(k)).join(", ")}; the options are ${LOAD_OPTIONS.join(", ")}`);
    }
    const device = await pickDevice(requestedDevice(options));
    if (!(modelBytes instanceof Uint8Array || modelBytes instanceof ArrayBuffer)) {
      throw new CellSymphonyError("model", `modelBytes is ${modelBytes === null ? "null" : typeof modelBytes}: pass the model file's bytes as a Uint8Array or ArrayBuffer`);
    }
    const memory = await wasmReady();
    let clf;
    try {
      const useGpu = device === "webgpu";
      // `int8Gemm` ("f32" default, "w8a8") picks the CPU engine's int8 GEMM; `gpuFastPaths` /
      // `gpuF16` the WebGPU fast paths; the engine checks the values.
      const extra = {};
      for (const k of ["int8Gemm", "gpuFastPaths", "gpuF16"]) if (options?.[k] !== undefined) extra[k] = options[k];
      clf = await wasm.Classifier.load(new Uint8Array(modelBytes), Object.keys(extra).length === 0 ? useGpu : { useGpu, ...extra });
    } catch (e) {
      throw asCellSymphonyError(e, "model");
    }
    return new Classifier(clf, device, memory);
  }

  /** Classifies dense counts `[cells*genes]` (row-major `Float32Array`, columns named by
   * `genes`). Resolves to `{classes, unclassified, logits, confidence, chunks, wasmMemoryBytes}`. */
  classify(counts, nCells, genes, opts = {}) {
    return this._classify({ kind: "dense", counts, nCells, genes }, opts);
  }

  /** {@link classify} from CSR counts (`indptr: Uint32Array [cells+1]`, `indices`, `data`). */
  classifyCsr(indptr, indices, data, nCells, genes, opts = {}) {
    return this._classify({ kind: "csr", indptr, indices, data, nCells, genes }, opts);
  }

  /** An image-only model on patches alone (`classifyPatches` in index.d.ts). */
  classifyPatches(patches, opts = {}) {
    return classifyPatchesOnly(this, patches, opts);
  }

  _classify(input, opts) {
    if (opts.signal?.aborted) return Promise.reject(abortError());
    input.genes = Array.isArray(input.genes) ? input.genes : Array.from(input.genes ?? []);
    for (const k of ["centroids", "patches", "patchSize", "proteins", "proteinMarkers"]) if (opts[k] != null) input[k] = opts[k];
    return enqueue(this._queue, async () => {
      const r = await classifyInChunks(this._wasm, input, {
        chunkCells: opts.chunkCells,
        onProgress: opts.onProgress,
        isCancelled: () => !!opts.signal?.aborted,
        yieldBetween: yieldToEventLoop,
      });
      return { ...r, wasmMemoryBytes: this._memory() };
    });
  }

  /** Compute dispatches per encoder layer on WebGPU (`undefined` on the CPU engine). */
  dispatchesPerLayer() {
    return this._wasm.dispatchesPerLayer();
  }

  /** Frees the engine's memory (after any call in flight). */
  async free() {
    await this._queue.tail;
    this._wasm.free();
  }
}

/** Splits `device` off pairing options (the engine takes `useGpu`). */
async function pairEngineOptions({ device, onProgress, signal, ...options } = {}) {
  if (device !== undefined) {
    options.useGpu = (await pickDevice(device)) === "webgpu";
  }
  return options;
}

/** Pairs each control cell with a target cell by entropic optimal transport (see index.d.ts).
 * `options.device` (default "cpu"; or the older `useGpu`), `onProgress({phase: "pair",
 * iteration, error})`; `signal` rejects the promise at once (the solve runs to its end). */
export async function pairCells(counts, nCells, genes, control, target, options = {}) {
  const { onProgress, signal } = options;
  if (signal?.aborted) throw abortError("pairing");
  const engineOptions = await pairEngineOptions(options);
  const memory = await wasmReady();
  const run = wasm.pairCells(counts, nCells, Array.from(genes), control, target, engineOptions,
    (iteration, error) => onProgress?.({ phase: "pair", iteration, error }));
  let onAbort;
  const aborted = new Promise((_, reject) => {
    onAbort = () => reject(abortError("pairing"));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
  try {
    const res = await Promise.race([run, aborted]);
    return { ...res, wasmMemoryBytes: memory() };
  } catch (e) {
    throw asCellSymphonyError(e, "input");
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/** A reader of the wasm API with the module loaded first and errors typed (code "input"). */
function reader(name) {
  return async (...args) => {
    await wasmReady();
    try {
      return wasm[name](...args);
    } catch (e) {
      throw asCellSymphonyError(e, "input");
    }
  };
}

/** Xenium / 10x MEX cell-feature matrix from the files' bytes (see index.d.ts). */
export const readXeniumMex = reader("readXeniumMex");
/** Xenium transcripts aggregated per cell from `transcripts.csv(.gz)` bytes (see index.d.ts). */
export const readXeniumTranscripts = reader("readXeniumTranscripts");
/** Cell centroids from `cells.csv(.gz)` bytes in the order of `cellIds` (see index.d.ts). */
export const readXeniumCells = reader("readXeniumCells");
/** Xenium zarr outputs (`cell_feature_matrix.zarr.zip`, optionally `cells.zarr.zip`) from their bytes (see index.d.ts). */
export const readXeniumZarr = reader("readXeniumZarr");
/** One pyramid level of a (OME-)TIFF from its bytes, reading only that level (see index.d.ts). */
export const readTiff = reader("readTiff");
/** One pyramid level of an 8-bit RGB (e.g. H&E) TIFF from its bytes (see index.d.ts). */
export const readTiffRgb = reader("readTiffRgb");
/** Nucleus centroids in a DAPI image, as the native `detect-nuclei` (see index.d.ts). */
export const detectNuclei = reader("detectNuclei");
/** Classifier patches cut at centres (µm) of an image with the native patch code (see index.d.ts). */
export const cutPatches = reader("cutPatches");
/** A whole-slide grayscale (OME-)TIFF opened for bounded-memory detection and patch cutting:
 * a `Blob`/`File` in a worker (read slice by slice) or the file's bytes (see index.d.ts). */
export const openSlide = reader("openSlide");

/** The keys `FlowModel.load` reads. */
const FLOW_LOAD_OPTIONS = ["device", "useGpu"];
const FLOW_INFO = ["transitions", "genes", "patchSize", "umPerPx", "latentDim", "cellDim", "needsCellEmbedding", "steps", "solver", "backend"];

/** A trained morphology flow (`cellsymphony flow train`: its model.safetensors and flow.json)
 * on this thread: predicts the target morphology of OT-paired control cells (SPATIA's
 * generator). Samples on WebGPU (f32 weights, "auto" skips software adapters) or on the wasm
 * CPU engine, which is the same code as `flow sample --engine cpu`. */
export class FlowModel {
  /** Use {@link FlowModel.load}. */
  constructor(inner, device) {
    if (!inner) throw new CellSymphonyError("options", "use `await FlowModel.load(modelBytes, flowJson, {device})` to create a FlowModel");
    this._wasm = inner;
    this._queue = { tail: Promise.resolve() };
    for (const k of FLOW_INFO) this[k] = inner[k];
    this.device = device;
  }

  /** Loads `modelBytes` (model.safetensors) and `flowJson` (the text of flow.json) on
   * `options.device` ("auto" by default). Rejects with a `CellSymphonyError`: "model" for files
   * the engine cannot load or that do not belong together, "device", "options". */
  static async load(modelBytes, flowJson, options = {}) {
    const unknown = Object.keys(options ?? {}).filter((k) => !FLOW_LOAD_OPTIONS.includes(k));
    if (unknown.length > 0) {
      throw new CellSymphonyError("options", `FlowModel.load: unknown option ${unknown.map((k) => JSON.stringify(k)).join(", ")}; the options are ${FLOW_LOAD_OPTIONS.join(", ")}`);
    }
    const device = await pickDevice(requestedDevice(options));
    if (!(modelBytes instanceof Uint8Array || modelBytes instanceof ArrayBuffer)) {
      throw new CellSymphonyError("model", `modelBytes is ${modelBytes === null ? "null" : typeof modelBytes}: pass model.safetensors' bytes as a Uint8Array or ArrayBuffer`);
    }
    if (typeof flowJson !== "string") {
      throw new CellSymphonyError("model", `flowJson is ${flowJson === null ? "null" : typeof flowJson}: pass the text of flow.json (a string)`);
    }
    await wasmReady();
    let inner;
    try {
      inner = await wasm.FlowModel.load(new Uint8Array(modelBytes), flowJson, { useGpu: device === "webgpu" });
    } catch (e) {
      throw asCellSymphonyError(e, "model");
    }
    return new FlowModel(inner, device);
  }

  /** Predicts the target morphology of `n` paired control cells: `inputs` is
   * `{controlPatches, controlCounts, targetCounts, genes, transition?, cellEmbedding?, steps?,
   * solver?}`; resolves to `{n, latents, patches, steps, solver, backend}` (see index.d.ts).
   * Calls on one model run one after another. */
  sample(inputs, { onProgress } = {}) {
    return enqueue(this._queue, async () => {
      try {
        return await this._wasm.sample(inputs, onProgress);
      } catch (e) {
        throw asCellSymphonyError(e, "input");
      }
    });
  }

  /** Frees the model's wasm (and GPU) memory once pending calls are done. */
  async free() {
    await this._queue.tail.catch(() => {});
    this._wasm.free();
  }
}

/** The keys `SpatiaModel.load` reads. */
const SPATIA_LOAD_OPTIONS = ["device", "useGpu", "gpuFastPaths"];
const SPATIA_INFO = ["classes", "levels", "images", "nGenes", "patchSize", "patchUmPerPx", "nicheSize", "nicheTilePx", "nicheDapiUmPerPx", "regionSide", "nicheClusterCount", "backend"];

/** SPATIA's multi-scale model (`cellsymphony spatia export`: cell, niche and tissue levels,
 * fusion and heads, plus the niche clusters' centroids) on WebGPU (the WGSL engine of
 * `cellsymphony spatia classify --engine wgpu`) or on the wasm CPU engine (the code of
 * `--engine cpu`): classifies cells given their niche and tissue region, and assigns each
 * niche to its nearest k-means centroid (the niche map). */
export class SpatiaModel {
  /** Use {@link SpatiaModel.load}. */
  constructor(inner, device) {
    if (!inner) throw new CellSymphonyError("options", "use `await SpatiaModel.load(bytes)` to create a SpatiaModel");
    this._wasm = inner;
    this._queue = { tail: Promise.resolve() };
    for (const k of SPATIA_INFO) this[k] = inner[k];
    this.device = device;
  }

  /** Loads the exported file's bytes on `options.device` ("auto" by default: WebGPU on a
   * hardware adapter, else the CPU engine; `useGpu` is the older spelling; `gpuFastPaths:
   * false` opens WebGPU without its optional features). Rejects with a `CellSymphonyError`:
   * "model" for a file the engine cannot read, "device" for "webgpu" without an adapter,
   * "options" for an unknown option or device. */
  static async load(bytes, options = {}) {
    const unknown = Object.keys(options ?? {}).filter((k) => !SPATIA_LOAD_OPTIONS.includes(k));
    if (unknown.length > 0) {
      throw new CellSymphonyError("options", `SpatiaModel.load: unknown option ${unknown.map((k) => JSON.stringify(k)).join(", ")}; the options are ${SPATIA_LOAD_OPTIONS.join(", ")}`);
    }
    const device = await pickDevice(requestedDevice(options ?? {}));
    if (!(bytes instanceof Uint8Array || bytes instanceof ArrayBuffer)) {
      throw new CellSymphonyError("model", `bytes is ${bytes === null ? "null" : typeof bytes}: pass the exported .safetensors' bytes as a Uint8Array or ArrayBuffer`);
    }
    await wasmReady();
    let inner;
    try {
      const opts = { useGpu: device === "webgpu" };
      if (options?.gpuFastPaths !== undefined) opts.gpuFastPaths = options.gpuFastPaths;
      inner = await wasm.SpatiaModel.load(new Uint8Array(bytes), opts);
    } catch (e) {
      throw asCellSymphonyError(e, "model");
    }
    return new SpatiaModel(inner, device);
  }

  /** Classifies cells in context: `inputs` is `{genes, patches, nicheTiles, cellNiche,
   * nicheSlot, nicheRegion?}`; resolves to `{classes, probabilities, confidence, logits,
   * nicheClusters, composition, zNiche}` (see index.d.ts). `onProgress(regionsDone, regions)`
   * is called after every tissue region. Calls run one after another. */
  classifyWithContext(inputs, { onProgress } = {}) {
    return enqueue(this._queue, async () => {
      try {
        return await this._wasm.classifyWithContext(inputs, onProgress);
      } catch (e) {
        throw asCellSymphonyError(e, "input");
      }
    });
  }

  /** Frees the model's wasm (and GPU) memory once pending calls are done. */
  async free() {
    await this._queue.tail.catch(() => {});
    this._wasm.free();
  }
}
