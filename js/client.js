// Client API of the cellsymphony package: classification and OT pairing in a module Worker
// (default) or on the calling thread, with the same methods either way.
//
//   import { CellSymphonyWorker } from "cellsymphony/client.js";
//   const cs = new CellSymphonyWorker();
//   const clf = await cs.loadClassifier(modelBytes, { useGpu: false });
//   const ac = new AbortController();
//   const res = await clf.classify(counts, nCells, genes, {
//     onProgress: ({ done, total }) => bar.value = done / total, signal: ac.signal });
//
// Typed arrays given to the worker are transferred (their buffers move to the worker and are
// detached here) unless `transfer: false` (then they are copied). Results come back
// transferred. Errors of the engine reject with an `Error` carrying its message; a cancel
// rejects with a `DOMException` named "AbortError".
import { classifyInChunks, abortError, enqueue, yieldToEventLoop, sliceable, sliceInput, DEFAULT_CHUNK_CELLS, defaultChunkCells } from "./chunked.js";

export { DEFAULT_CHUNK_CELLS, defaultChunkCells };

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
  return input;
}

const INPUT_ARRAYS = ["counts", "indptr", "indices", "data", "centroids", "patches"];

/** A classifier loaded in a {@link CellSymphonyWorker}; `genes`, `classes`, `architecture`,
 * `backend`, `patchSize`, `patchUmPerPx`, `needsCentroids` as on the wasm `Classifier`. */
class WorkerClassifier {
  constructor(owner, modelBytes, useGpu, info, int8Gemm) {
    this._owner = owner;
    this._modelBytes = modelBytes; // kept to reload after a worker restart (pairing cancel)
    this._useGpu = useGpu;
    this._int8Gemm = int8Gemm;
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
    this._setInfo(await this._owner._request({ op: "load", modelBytes: bytes, useGpu: this._useGpu, int8Gemm: this._int8Gemm }, [bytes.buffer]));
  }

  /** Classify dense counts `[cells*genes]` (row-major `Float32Array`) in chunks in the worker.
   * `opts`: `centroids`, `patches`, `patchSize` (as the wasm `classify`), `chunkCells`
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
    this._url = workerUrl ?? new URL("./worker.js", import.meta.url);
    this._pending = new Map();
    this._nextId = 1;
    this._generation = 0;
    this._worker = null;
    this.mode = "worker";
  }

  _spawn() {
    const w = new Worker(this._url, { type: "module", name: "cellsymphony" });
    w.onmessage = ({ data }) => this._onMessage(data);
    w.onerror = (e) => {
      e.preventDefault?.();
      this._failAll(new Error(`cellsymphony worker: ${e.message || "failed to start (is worker.js served next to client.js?)"}`));
    };
    w.onmessageerror = () => this._failAll(new Error("cellsymphony worker: a message could not be deserialised"));
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
    else p.reject(new Error(msg.message));
  }

  /** Sends a request; `cancel`: "message" (classify: the worker stops at a chunk boundary) or
   * "restart" (pairing: the worker is terminated and replaced). */
  _request(msg, transfer = [], { signal, onProgress } = {}, cancel = "message") {
    if (signal?.aborted) return Promise.reject(abortError(msg.op === "pair" ? "pairing" : "classification"));
    if (!this._worker) this._spawn();
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        if (!this._pending.has(id)) return;
        this._pending.delete(id);
        const err = abortError(msg.op === "pair" ? "pairing" : "classification");
        if (cancel === "restart") {
          this._worker.terminate();
          this._worker = null;
          this._failAll(new DOMException(`the cellsymphony worker was restarted to cancel pairing request ${id}`, "AbortError"));
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

  /** Loads a model file (safetensors bytes) in the worker; `useGpu` runs it on WebGPU there
   * (rejects when the worker has no adapter); `int8Gemm` ("f32" default, "w8a8") picks the CPU
   * engine's int8 GEMM. The bytes are copied (kept for reloads). */
  async loadClassifier(modelBytes, { useGpu = false, int8Gemm } = {}) {
    const keep = new Uint8Array(modelBytes).slice();
    const bytes = keep.slice();
    const info = await this._request({ op: "load", modelBytes: bytes, useGpu, int8Gemm }, [bytes.buffer]);
    return new WorkerClassifier(this, keep, useGpu, info, int8Gemm);
  }

  /** `pairCells` of the wasm API in the worker: `options` as there; `onProgress({phase:
   * "pair", iteration, error})`; `signal` cancels (restarts the worker); `transfer` (default
   * true) moves `counts`, `control` and `target` to the worker. */
  pairCells(counts, nCells, genes, control, target, options = {}, { onProgress, signal, transfer = true } = {}) {
    const list = transfer ? buffersOf([counts, control, target]) : [];
    return this._request({ op: "pair", counts, nCells, genes: Array.from(genes), control, target, options },
      list, { onProgress, signal }, "restart");
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
    const { _owner, _modelBytes, _useGpu, _handle, _generation, ...props } = members[0];
    Object.assign(this, props);
  }

  classify(counts, nCells, genes, opts = {}) {
    return this._classify("dense", [counts, nCells, genes], opts);
  }

  classifyCsr(indptr, indices, data, nCells, genes, opts = {}) {
    return this._classify("csr", [indptr, indices, data, nCells, genes], opts);
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
        { centroids: part.centroids, patches: part.patches, patchSize: part.patchSize, chunkCells: chunk, signal: stop.signal })
          .catch((e) => {
            if (e instanceof Error && start > 0 && e.name !== "AbortError") {
              const err = new Error(`${e.message} [in the chunk of cells ${start}..${end - 1}: cell and element indices in this message count from cell ${start}]`);
              err.cause = e;
              throw err;
            }
            throw e;
          });
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

  async loadClassifier(modelBytes, { useGpu = false, int8Gemm } = {}) {
    const members = useGpu ? this._workers.slice(0, 1) : this._workers;
    return new PoolClassifier(await Promise.all(members.map((w) => w.loadClassifier(modelBytes, { useGpu, int8Gemm }))));
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

/** A wasm `Classifier` on the calling thread with the {@link WorkerClassifier} methods: the same
 * chunks, progress and cancel (between chunks it yields to the event loop, so a page can paint),
 * but every chunk runs on this thread. */
class MainThreadClassifier {
  constructor(clf, memory, simd) {
    this.wasm = clf;
    this._memory = memory;
    this._queue = { tail: Promise.resolve() };
    for (const k of ["genes", "classes", "architecture", "backend", "patchSize", "patchUmPerPx", "needsCentroids"]) this[k] = clf[k];
    this.wasmSimd = simd;
  }

  classify(counts, nCells, genes, opts = {}) {
    return this._classify("dense", [counts, nCells, genes], opts);
  }

  classifyCsr(indptr, indices, data, nCells, genes, opts = {}) {
    return this._classify("csr", [indptr, indices, data, nCells, genes], opts);
  }

  _classify(kind, args, opts) {
    if (opts.signal?.aborted) return Promise.reject(abortError());
    const input = classifyInput(kind, args, opts);
    return enqueue(this._queue, async () => {
      const r = await classifyInChunks(this.wasm, input, {
        chunkCells: opts.chunkCells,
        onProgress: opts.onProgress,
        isCancelled: () => !!opts.signal?.aborted,
        yieldBetween: yieldToEventLoop,
      });
      return { ...r, wasmMemoryBytes: this._memory() };
    });
  }

  async free() {
    await this._queue.tail;
    this.wasm.free();
  }
}

/** The package on the calling thread (the main-thread mode), with the methods of
 * {@link CellSymphonyWorker}. Pairing runs to its end even when cancelled (the promise
 * rejects at once). */
export class CellSymphonyMainThread {
  constructor() {
    this.mode = "main-thread";
    this._wasm = null;
  }

  async _load() {
    if (!this._wasm) {
      const m = await import("./wasm.js");
      const exports = await m.init();
      this._wasm = { m, memory: () => exports?.memory?.buffer?.byteLength ?? 0 };
    }
    return this._wasm;
  }

  async loadClassifier(modelBytes, { useGpu = false, int8Gemm } = {}) {
    const { m, memory } = await this._load();
    const opts = int8Gemm === undefined ? useGpu : { useGpu, int8Gemm };
    return new MainThreadClassifier(await m.Classifier.load(new Uint8Array(modelBytes), opts), memory, m.simd);
  }

  async pairCells(counts, nCells, genes, control, target, options = {}, { onProgress, signal } = {}) {
    if (signal?.aborted) throw abortError("pairing");
    const { m, memory } = await this._load();
    const run = m.pairCells(counts, nCells, Array.from(genes), control, target, options,
      (iteration, error) => onProgress?.({ phase: "pair", iteration, error }));
    const aborted = new Promise((_, reject) => signal?.addEventListener("abort", () => reject(abortError("pairing")), { once: true }));
    const res = await Promise.race([run, aborted]);
    return { ...res, wasmMemoryBytes: memory() };
  }

  async memory() {
    return { wasmMemoryBytes: (await this._load()).memory() };
  }

  terminate() {}
}

/** One classifier in fresh workers (`worker: true`, default: a {@link CellSymphonyWorkerPool}
 * of `threads` workers, default {@link defaultThreads}, or one {@link CellSymphonyWorker} when
 * that is 1 or the model runs on WebGPU) or on this thread (`worker: false`); the runner is
 * `clf.runner`. */
export async function createClassifier(modelBytes, { useGpu = false, worker = true, threads = defaultThreads(), int8Gemm } = {}) {
  const runner = !worker ? new CellSymphonyMainThread()
    : threads > 1 && !useGpu ? new CellSymphonyWorkerPool({ threads }) : new CellSymphonyWorker();
  const clf = await runner.loadClassifier(modelBytes, { useGpu, int8Gemm });
  clf.runner = runner;
  return clf;
}
