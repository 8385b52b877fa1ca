// The worker entry of the cellsymphony package ("cellsymphony/worker"): classification and OT
// pairing in a module Worker (default) or on the calling thread, with the same methods either way.
//
//   import { Classifier } from "cellsymphony/worker";
//   const clf = await Classifier.load(modelBytes, { device: "auto" });
//   const ac = new AbortController();
//   const res = await clf.classify(counts, nCells, genes, {
//     onProgress: ({ done, total }) => bar.value = done / total, signal: ac.signal });
//
// Typed arrays given to the worker are transferred (their buffers move to the worker and are
// detached here) unless `transfer: false` (then they are copied). Results come back
// transferred. Failures reject with a `CellSymphonyError` (its `code` and the engine's message);
// a cancel rejects with a `DOMException` named "AbortError". Types: client.d.ts.
import { abortError, sliceable, sliceInput, chunkError, DEFAULT_CHUNK_CELLS, defaultChunkCells, classifyPatchesOnly } from "./chunked.js";
import { CellSymphonyError } from "./errors.js";
import { requestedDevice } from "./device.js";

export { DEFAULT_CHUNK_CELLS, defaultChunkCells };
export { CellSymphonyError } from "./errors.js";

/** Buffers of `arrays` for a transfer list (each once; shared memory and wasm memory are never transferred). */
function buffersOf(arrays) {
  const out = new Set();
  for (const a of arrays) {
    const b = a?.buffer;
    if (b instanceof ArrayBuffer && b.byteLength > 0) out.add(b);
  }
  return [...out];
}

function classifyInput(kind, args, opts) {
  const [a, b, c, nCells, genes] = kind === "dense" ? [args[0], null, null, args[1], args[2]] : args;
  const input = kind === "dense" ? { kind, counts: a, nCells, genes } : { kind, indptr: a, indices: b, data: c, nCells, genes };
  input.genes = Array.isArray(genes) ? genes : Array.from(genes ?? []);
  if (opts.centroids != null) input.centroids = opts.centroids;
  if (opts.patches != null) input.patches = opts.patches;
  if (opts.patchSize != null) input.patchSize = opts.patchSize;
  if (opts.proteins != null) input.proteins = opts.proteins;
  if (opts.proteinMarkers != null) input.proteinMarkers = Array.from(opts.proteinMarkers);
  return input;
}

const INPUT_ARRAYS = ["counts", "indptr", "indices", "data", "centroids", "patches", "proteins"];

/** A classifier loaded in a {@link CellSymphonyWorker}; `genes`, `classes`, `architecture`,
 * `backend`, `patchSize`, `patchUmPerPx`, `needsCentroids`, `proteinMarkers` as on the wasm `Classifier`. */
class WorkerClassifier {
  constructor(owner, modelBytes, options, info) {
    this._owner = owner;
    this._modelBytes = modelBytes; // kept to reload after a worker restart (pairing cancel)
    this._options = options;
    this._setInfo(info);
  }

  _setInfo(info) {
    const { handle, ...props } = info;
    this._handle = handle;
    this._generation = this._owner._generation;
    Object.assign(this, props);
  }

  async _ensureLoaded() {
    if (this._generation === this._owner._generation && this._handle != null) return;
    const bytes = this._modelBytes.slice();
    this._setInfo(await this._owner._request({ op: "load", modelBytes: bytes, options: { ...this._options, device: this.device } }, [bytes.buffer]));
  }

  /** Classify dense counts `[cells*genes]` (row-major `Float32Array`) in chunks in the worker.
   * `opts`: `centroids`, `patches`, `patchSize`, `proteins`, `proteinMarkers` (as the wasm `classify`), `chunkCells`
   * (default {@link defaultChunkCells}), `onProgress({phase: "classify", done, total})`,
   * `signal` (AbortSignal), `transfer` (default true). Resolves to `{classes, unclassified,
   * logits, confidence, chunks, wasmMemoryBytes}`. */
  classify(counts, nCells, genes, opts = {}) {
    return this._classify("dense", [counts, nCells, genes], opts);
  }

  /** {@link classify} from CSR counts (`indptr: Uint32Array [cells+1]`, `indices`, `data`),
   * sliced by rows into chunks. */
  classifyCsr(indptr, indices, data, nCells, genes, opts = {}) {
    return this._classify("csr", [indptr, indices, data, nCells, genes], opts);
  }

  /** An image-only model on patches alone (`classifyPatches` in index.d.ts). */
  classifyPatches(patches, opts = {}) {
    return classifyPatchesOnly(this, patches, opts);
  }

  async _classify(kind, args, opts) {
    if (opts.signal?.aborted) throw abortError();
    await this._ensureLoaded();
    const input = classifyInput(kind, args, opts);
    const transfer = opts.transfer === false ? [] : buffersOf(INPUT_ARRAYS.map((k) => input[k]));
    return this._owner._request({ op: "classify", handle: this._handle, input, chunkCells: opts.chunkCells }, transfer, opts);
  }

  /** Frees the model in the worker. */
  async free() {
    if (this._generation === this._owner._generation && this._handle != null && this._owner._worker) {
      await this._owner._request({ op: "free", handle: this._handle });
    }
    this._handle = null;
  }
}

/**
 * The package in a module Worker. Every call is a request; `classify` runs in chunks (progress
 * after each, a cancel takes effect at the next chunk boundary, the worker stays as it is);
 * `pairCells` reports Sinkhorn progress and is cancelled by restarting the worker (a solve
 * cannot be interrupted), after which classifiers reload themselves on their next call.
 */
export class CellSymphonyWorker {
  /** `workerUrl`: where worker.js is served (default: next to this file). */
  constructor({ workerUrl } = {}) {
    this._url = workerUrl ?? null;
    this._pending = new Map();
    this._nextId = 1;
    this._generation = 0;
    this._worker = null;
    this.mode = "worker";
  }

  _spawn() {
    // The literal `new Worker(new URL(…, import.meta.url))` is what bundlers (Vite, webpack,
    // esbuild plugins) recognise to bundle worker.js and its wasm files as a worker.
    const w = this._url
      ? new Worker(this._url, { type: "module", name: "cellsymphony" })
      : new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "cellsymphony" });
    w.onmessage = ({ data }) => this._onMessage(data);
    w.onerror = (e) => {
      e.preventDefault?.();
      this._failAll(new CellSymphonyError("worker", `cellsymphony worker: ${e.message || "failed to start (is worker.js served next to client.js?)"}`));
    };
    w.onmessageerror = () => this._failAll(new CellSymphonyError("worker", "cellsymphony worker: a message could not be deserialised"));
    this._worker = w;
    this._generation++;
  }

  _failAll(err) {
    for (const p of this._pending.values()) {
      p.cleanup();
      p.reject(err);
    }
    this._pending.clear();
  }

  _onMessage(msg) {
    const p = this._pending.get(msg.id);
    if (!p) return; // cancelled already
    if (msg.type === "progress") {
      try { p.onProgress?.(msg.progress); } catch (e) { console.error(e); }
      return;
    }
    this._pending.delete(msg.id);
    p.cleanup();
    if (msg.type === "result") p.resolve(msg.value);
    else if (msg.name === "AbortError") p.reject(new DOMException(msg.message, "AbortError"));
    else p.reject(msg.code ? new CellSymphonyError(msg.code, msg.message) : new Error(msg.message));
  }

  /** Sends a request; `cancel`: "message" (classify: the worker stops at a chunk boundary) or
   * "restart" (pairing, slides: the worker is terminated and replaced). */
  _request(msg, transfer = [], { signal, onProgress } = {}, cancel = "message") {
    const what = { pair: "pairing", slide: "slide classification", flow: "morphology generation" }[msg.op] ?? "classification";
    if (signal?.aborted) return Promise.reject(abortError(what));
    if (!this._worker) this._spawn();
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        if (!this._pending.has(id)) return;
        this._pending.delete(id);
        const err = abortError(what);
        if (cancel === "restart") {
          this._worker.terminate();
          this._worker = null;
          this._failAll(new DOMException(`the cellsymphony worker was restarted to cancel ${what} request ${id}`, "AbortError"));
        } else {
          this._worker.postMessage({ op: "cancel", target: id });
        }
        reject(err);
      };
      const cleanup = () => signal?.removeEventListener("abort", onAbort);
      this._pending.set(id, { resolve, reject, onProgress, cleanup });
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        this._worker.postMessage({ ...msg, id }, transfer);
      } catch (e) {
        this._pending.delete(id);
        cleanup();
        reject(e);
      }
    });
  }

  /** Loads a model file (safetensors bytes) in the worker on `device` ("auto", default:
   * WebGPU where the worker finds a hardware adapter, else CPU; "webgpu"; "cpu"; or the older
   * `useGpu` boolean). The bytes are copied (kept for reloads). */
  async loadClassifier(modelBytes, options = {}) {
    const keep = new Uint8Array(modelBytes).slice();
    const bytes = keep.slice();
    // The load options travel as they are (index.js's Classifier.load reads them in the worker).
    const { useGpu, ...rest } = options;
    const opts = { ...rest, device: requestedDevice(options) };
    const info = await this._request({ op: "load", modelBytes: bytes, options: opts }, [bytes.buffer]);
    return new WorkerClassifier(this, keep, opts, info);
  }

  /** `pairCells` of the wasm API in the worker: `options` as there; `onProgress({phase:
   * "pair", iteration, error})`; `signal` cancels (restarts the worker); `transfer` (default
   * true) moves `counts`, `control` and `target` to the worker. */
  pairCells(counts, nCells, genes, control, target, options = {}, { onProgress, signal, transfer = true } = {}) {
    const list = transfer ? buffersOf([counts, control, target]) : [];
    return this._request({ op: "pair", counts, nCells, genes: Array.from(genes), control, target, options },
      list, { onProgress, signal }, "restart");
  }

  /** An image-only slide in the worker with bounded memory: `file` (a `Blob`/`File`, read
   * slice by slice, never whole) is opened as `openSlide` does (`options`: its options, plus
   * `detect` (`Slide.detectNuclei` options), `classifier` (a model loaded in THIS worker by
   * `loadClassifier`, image-only; none: detection only), `batchNuclei` (patches cut and
   * classified per batch, default 4096), `overviewMaxSide` (a level for display, default
   * 2048 px; 0: none)). `onProgress({phase: "histogram" | "detect" | "classify", done,
   * total})` (tiles, then nuclei); `signal` cancels at once by restarting the worker
   * (detection is one synchronous call; classifiers reload themselves on their next call).
   * Resolves to `{info, detection, classes, confidence, overview, detectMs, classifyMs,
   * wasmMemoryBytes}`. */
  async classifySlide(file, options = {}, { onProgress, signal } = {}) {
    const { classifier, ...rest } = options;
    let handle = null;
    if (classifier) {
      if (classifier._owner !== this) throw new CellSymphonyError("input", "classifySlide: `classifier` was loaded by another runner: load it with this worker's loadClassifier");
      if (classifier.architecture !== "image_only") throw new CellSymphonyError("input", `classifySlide: \`classifier\` is a ${classifier.architecture} model; a slide without transcripts needs an image-only model (architecture "image_only", from \`cellsymphony image-only\`)`);
      await classifier._ensureLoaded();
      handle = classifier._handle;
    }
    return this._request({ op: "slide", file, handle, options: rest }, [], { onProgress, signal }, "restart");
  }

  /** Morphology generation in the worker: `FlowModel.load(modelBytes, flowJson, {device})`
   * then `sample(inputs)` (index.d.ts), the model freed afterwards. `onProgress({phase:
   * "flow", done, total})` per chunk of pairs; `signal` cancels (restarts the worker). The
   * inputs' arrays are copied. Resolves to `sample`'s result plus `device`. */
  sampleFlow(modelBytes, flowJson, inputs, { device = "auto", onProgress, signal } = {}) {
    return this._request({ op: "flow", modelBytes: new Uint8Array(modelBytes), flowJson, inputs, options: { device } },
      [], { onProgress, signal }, "restart");
  }

  /** SPATIA in the worker: `SpatiaModel.load(modelBytes, {device})` then
   * `classifyWithContext(inputs)` (index.d.ts), the model freed afterwards.
   * `onProgress({phase: "spatia", done, total})` after every tissue region; `signal` cancels
   * (restarts the worker). The inputs' arrays are copied. Resolves to the result plus `device`
   * and `backend`. */
  classifyWithContext(modelBytes, inputs, { device = "auto", onProgress, signal } = {}) {
    return this._request({ op: "spatia", modelBytes: new Uint8Array(modelBytes), inputs, options: { device } },
      [], { onProgress, signal }, "restart");
  }

  /** `{wasmMemoryBytes}`: the size of the worker's wasm memory (it only grows). */
  memory() {
    return this._request({ op: "memory" });
  }

  /** Stops the worker; pending calls reject. */
  terminate() {
    this._worker?.terminate();
    this._worker = null;
    this._failAll(new Error("the cellsymphony worker was terminated"));
  }
}

/** Worker threads a {@link CellSymphonyWorkerPool} uses by default: the page's logical cores
 * (at most 8) where it is cross-origin isolated, 1 otherwise. */
export function defaultThreads() {
  if (globalThis.crossOriginIsolated !== true) return 1;
  return Math.max(1, Math.min(8, Math.floor(globalThis.navigator?.hardwareConcurrency ?? 1)));
}

/** A classifier loaded in every worker of a {@link CellSymphonyWorkerPool}: `classify` splits
 * the cells into chunks and hands them to whichever worker is free (results in input order). */
class PoolClassifier {
  constructor(members) {
    this._members = members;
    const { _owner, _modelBytes, _options, _handle, _generation, ...props } = members[0];
    Object.assign(this, props);
  }

  classify(counts, nCells, genes, opts = {}) {
    return this._classify("dense", [counts, nCells, genes], opts);
  }

  classifyCsr(indptr, indices, data, nCells, genes, opts = {}) {
    return this._classify("csr", [indptr, indices, data, nCells, genes], opts);
  }

  /** An image-only model on patches alone (`classifyPatches` in index.d.ts). */
  classifyPatches(patches, opts = {}) {
    return classifyPatchesOnly(this, patches, opts);
  }

  async _classify(kind, args, opts) {
    if (opts.signal?.aborted) throw abortError();
    const input = classifyInput(kind, args, opts);
    const chunk = Math.max(1, Math.floor(opts.chunkCells || defaultChunkCells(this.backend)));
    const total = input.nCells;
    if (this._members.length === 1 || !sliceable(input) || total <= chunk) {
      return this._members[0]._classify(kind, args, opts);
    }
    const k = this.classes.length;
    const out = {
      classes: new Uint32Array(total),
      unclassified: new Uint8Array(total),
      logits: new Float32Array(total * k),
      confidence: new Float32Array(total),
      chunks: 0,
      wasmMemoryBytes: 0,
    };
    // One abort for the whole call: the caller's signal, or the first failing chunk.
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    let next = 0, done = 0;
    const run = async (member) => {
      while (next < total && !stop.signal.aborted) {
        const start = next, end = Math.min(total, start + chunk);
        next = end;
        const part = sliceInput(input, start, end);
        const r = await member._classify(part.kind, part.kind === "dense"
          ? [part.counts, part.nCells, part.genes]
          : [part.indptr, part.indices, part.data, part.nCells, part.genes],
        { centroids: part.centroids, patches: part.patches, patchSize: part.patchSize, proteins: part.proteins, proteinMarkers: part.proteinMarkers, chunkCells: chunk, signal: stop.signal })
          .catch((e) => { throw chunkError(e, start, end); });
        out.classes.set(r.classes, start);
        out.unclassified.set(r.unclassified, start);
        out.logits.set(r.logits, start * k);
        out.confidence.set(r.confidence, start);
        out.chunks += r.chunks;
        out.wasmMemoryBytes = Math.max(out.wasmMemoryBytes, r.wasmMemoryBytes);
        done += end - start;
        try { opts.onProgress?.({ phase: "classify", done, total }); } catch (e) { console.error(e); }
      }
    };
    try {
      const runs = this._members.map((m) => run(m).catch((e) => { stop.abort(); throw e; }));
      const settled = await Promise.allSettled(runs);
      if (opts.signal?.aborted) throw abortError();
      const failed = settled.find((s) => s.status === "rejected" && s.reason?.name !== "AbortError") ?? settled.find((s) => s.status === "rejected");
      if (failed) throw failed.reason;
      return out;
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
    }
  }

  async free() {
    await Promise.all(this._members.map((m) => m.free()));
  }
}

/**
 * The package in a pool of `threads` module Workers (default {@link defaultThreads}): a CPU
 * classifier is loaded in every worker and `classify` spreads its chunks over them (no wasm
 * threads or SharedArrayBuffer: each worker runs its own single-threaded engine; with more
 * than one worker each chunk is a copy, so the caller's arrays are not transferred). A WebGPU
 * classifier and pairing use the first worker only.
 */
export class CellSymphonyWorkerPool {
  constructor({ threads = defaultThreads(), workerUrl } = {}) {
    this.threads = Math.max(1, Math.floor(threads));
    this._workers = Array.from({ length: this.threads }, () => new CellSymphonyWorker({ workerUrl }));
    this.mode = "worker-pool";
  }

  /** The first worker picks the device; a CPU classifier is then loaded in the others too. */
  async loadClassifier(modelBytes, options = {}) {
    const first = await this._workers[0].loadClassifier(modelBytes, options);
    const rest = first.device === "cpu" ? this._workers.slice(1) : [];
    return new PoolClassifier([first, ...await Promise.all(rest.map((w) => w.loadClassifier(modelBytes, { ...options, useGpu: undefined, device: "cpu" })))]);
  }

  pairCells(counts, nCells, genes, control, target, options = {}, call = {}) {
    return this._workers[0].pairCells(counts, nCells, genes, control, target, options, call);
  }

  /** `{wasmMemoryBytes}`: the workers' wasm memories together. */
  async memory() {
    const all = await Promise.all(this._workers.map((w) => w.memory()));
    return { wasmMemoryBytes: all.reduce((a, m) => a + m.wasmMemoryBytes, 0) };
  }

  terminate() {
    for (const w of this._workers) w.terminate();
  }
}

/** The package on the calling thread (the main-thread mode): the main entry's `Classifier`
 * and `pairCells` (index.js) with the methods of {@link CellSymphonyWorker}. Pairing runs to
 * its end even when cancelled (the promise rejects at once). */
export class CellSymphonyMainThread {
  constructor() {
    this.mode = "main-thread";
  }

  _main() {
    this._module ??= import("./index.js");
    return this._module;
  }

  async loadClassifier(modelBytes, options = {}) {
    const { Classifier } = await this._main();
    return Classifier.load(modelBytes, options);
  }

  async pairCells(counts, nCells, genes, control, target, options = {}, { onProgress, signal } = {}) {
    const { pairCells } = await this._main();
    return pairCells(counts, nCells, genes, control, target, { ...options, onProgress, signal });
  }

  async sampleFlow(modelBytes, flowJson, inputs, { device = "auto", onProgress, signal } = {}) {
    const { FlowModel } = await this._main();
    const model = await FlowModel.load(modelBytes, flowJson, { device });
    try {
      if (signal?.aborted) throw new DOMException("morphology generation was cancelled", "AbortError");
      const r = await model.sample(inputs, { onProgress: (done, total) => onProgress?.({ phase: "flow", done, total }) });
      return { ...r, device: model.device };
    } finally {
      await model.free();
    }
  }

  async classifyWithContext(modelBytes, inputs, { device = "auto", onProgress, signal } = {}) {
    const { SpatiaModel } = await this._main();
    const model = await SpatiaModel.load(modelBytes, { device });
    try {
      if (signal?.aborted) throw new DOMException("SPATIA classification was cancelled", "AbortError");
      const r = await model.classifyWithContext(inputs, { onProgress: (done, total) => onProgress?.({ phase: "spatia", done, total }) });
      return { ...r, device: model.device, backend: model.backend };
    } finally {
      await model.free();
    }
  }

  async memory() {
    return { wasmMemoryBytes: await (await this._main()).wasmMemoryBytes() };
  }

  terminate() {}
}

/** One classifier in fresh workers (`worker: true`, default: a {@link CellSymphonyWorkerPool}
 * of `threads` workers, default {@link defaultThreads}, or one {@link CellSymphonyWorker} when
 * that is 1) or on this thread (`worker: false`), on `device` (default "auto"); the runner is
 * `clf.runner` (a WebGPU classifier uses the pool's first worker). */
export async function createClassifier(modelBytes, { worker = true, threads = defaultThreads(), ...options } = {}) {
  const runner = !worker ? new CellSymphonyMainThread()
    : threads > 1 ? new CellSymphonyWorkerPool({ threads }) : new CellSymphonyWorker();
  const clf = await runner.loadClassifier(modelBytes, options);
  clf.runner = runner;
  return clf;
}

/** `Classifier.load(modelBytes, {device, threads, worker})`: the main entry's call, in workers
 * ({@link createClassifier}). */
export const Classifier = Object.freeze({ load: createClassifier });
