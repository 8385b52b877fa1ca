// Chunked classification on a wasm-bindgen `Classifier`, shared by the module worker
// (worker.js) and the main-thread mode (client.js): the cells go through the wasm API a chunk
// of rows at a time (CSR sliced by rows), the results are written into preallocated arrays,
// and the caller's `yieldBetween` runs between chunks so progress can be shown and a cancel
// message (or a click) can arrive.
import { CellSymphonyError, asCellSymphonyError } from "./errors.js";

/** Cells per wasm call by default: CPU engine 2048 (≈1 s on one slow core), WebGPU 8192
 * (the engine's own command-buffer chunk). */
export const DEFAULT_CHUNK_CELLS = Object.freeze({ cpu: 2048, webgpu: 8192 });

/** Default chunk for a classifier's `backend` string ("webgpu: …" or "cpu: …"). */
export function defaultChunkCells(backend) {
  return String(backend).startsWith("webgpu") ? DEFAULT_CHUNK_CELLS.webgpu : DEFAULT_CHUNK_CELLS.cpu;
}

/** The error every cancelled call rejects with (`name === "AbortError"`). */
export function abortError(what = "classification") {
  return new DOMException(`${what} was cancelled`, "AbortError");
}

/** Resolves on a fresh macrotask (after pending messages, timers and, on a page, rendering). */
export function yieldToEventLoop() {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Runs `task` after every earlier task of the same `queue` (one call at a time per
 * classifier: chunks of two calls never interleave on one engine). */
export function enqueue(queue, task) {
  const run = queue.tail.then(task, task);
  queue.tail = run.then(() => {}, () => {});
  return run;
}

const isArrayLike = (a) => a !== undefined && a !== null;

/** Whether the input's array shapes are consistent, so rows can be sliced into chunks.
 * When not, the whole input goes to the wasm API in one call and its error comes back verbatim. */
export function sliceable(input) {
  const n = input.nCells, g = input.genes?.length ?? 0;
  if (!Number.isInteger(n) || n <= 0 || g === 0 || !Array.isArray(input.genes)) return false;
  if (input.kind === "dense") {
    if (!isArrayLike(input.counts) || input.counts.length !== n * g) return false;
  } else {
    const { indptr, indices, data } = input;
    if (!isArrayLike(indptr) || !isArrayLike(indices) || !isArrayLike(data)) return false;
    if (indptr.length !== n + 1 || indptr[0] !== 0 || indptr[n] !== indices.length || indices.length !== data.length) return false;
    for (let c = 0; c < n; c++) if (indptr[c + 1] < indptr[c]) return false;
  }
  if (isArrayLike(input.centroids) && input.centroids.length !== 2 * n) return false;
  if (isArrayLike(input.proteins) && (!Array.isArray(input.proteinMarkers) || input.proteins.length !== n * input.proteinMarkers.length)) return false;
  if (isArrayLike(input.patches)) {
    const s = input.patchSize;
    if (!Number.isInteger(s) || s <= 0 || input.patches.length !== n * s * s) return false;
  }
  return true;
}

/** Rows `start..end` of a {@link sliceable} `input` as a new input of copied arrays (so they
 * can be transferred to a worker); CSR `indptr` rebased to 0. */
export function sliceInput(input, start, end) {
  const n = end - start;
  const rows = (a, width) => (isArrayLike(a) ? a.slice(start * width, end * width) : a);
  const out = { ...input, nCells: n };
  out.centroids = rows(input.centroids, 2);
  out.patches = rows(input.patches, input.patchSize ? input.patchSize * input.patchSize : 0);
  out.proteins = rows(input.proteins, input.proteinMarkers?.length ?? 0);
  if (input.kind === "dense") {
    out.counts = rows(input.counts, input.genes.length);
  } else {
    const base = input.indptr[start], stop = input.indptr[end];
    out.indptr = new Uint32Array(n + 1);
    for (let i = 0; i <= n; i++) out.indptr[i] = input.indptr[start + i] - base;
    out.indices = input.indices.slice(base, stop);
    out.data = input.data.slice(base, stop);
  }
  return out;
}

/** One wasm call on rows `start..end` of `input` (the whole input when `start`/`end` are undefined). */
function callRows(clf, input, start, end) {
  const whole = start === undefined;
  const n = whole ? input.nCells : end - start;
  const rows = (a, width) => (!isArrayLike(a) || whole ? (a ?? undefined) : a.subarray(start * width, end * width));
  const pixels = input.patchSize ? input.patchSize * input.patchSize : 0;
  const centroids = rows(input.centroids, 2);
  const patches = rows(input.patches, pixels);
  // Protein intensities [cells*proteinMarkers.length] (models trained with --protein).
  const proteins = rows(input.proteins, input.proteinMarkers?.length ?? 0);
  const markers = input.proteinMarkers ?? undefined;
  if (input.kind === "dense") {
    return clf.classify(rows(input.counts, input.genes.length), n, input.genes, centroids, patches, input.patchSize ?? undefined, proteins, markers);
  }
  let { indptr, indices, data } = input;
  if (!whole) {
    const base = indptr[start], stop = indptr[end];
    const local = new Uint32Array(n + 1);
    for (let i = 0; i <= n; i++) local[i] = indptr[start + i] - base;
    indptr = local;
    indices = indices.subarray(base, stop);
    data = data.subarray(base, stop);
  }
  return clf.classifyCsr(indptr, indices, data, n, input.genes, centroids, patches, input.patchSize ?? undefined, proteins, markers);
}

/** Error of a chunk as a `CellSymphonyError` (code "input", or the code it has): the engine's
 * message, after the first chunk with the chunk it refers to (its cell and element indices
 * count from the chunk's first cell). Shared by the pool in client.js. */
export function chunkError(e, start, end) {
  if (start === 0 || !(e instanceof Error) || e.name === "AbortError") return asCellSymphonyError(e, "input");
  return new CellSymphonyError(e.code ?? "input", `${e.message} [in the chunk of cells ${start}..${end - 1}: cell and element indices in this message count from cell ${start}]`, { cause: e });
}

/**
 * Classifies `input` on the wasm `clf` in chunks of `chunkCells` rows.
 * `input`: `{kind: "dense", counts: Float32Array [cells*genes], nCells, genes, centroids?, patches?, patchSize?,
 * proteins?: Float32Array [cells*proteinMarkers.length], proteinMarkers?}`
 * or `{kind: "csr", indptr: Uint32Array [cells+1], indices: Uint32Array [nnz], data: Float32Array [nnz], nCells, genes, …}`.
 * Resolves to `{classes: Uint32Array [cells], unclassified: Uint8Array [cells], logits: Float32Array [cells*classes],
 * confidence: Float32Array [cells], chunks}`; `onProgress({phase: "classify", done, total})` after every chunk;
 * rejects with an AbortError at the first chunk boundary after `isCancelled()` turns true.
 */
export async function classifyInChunks(clf, input, { chunkCells, onProgress, isCancelled = () => false, yieldBetween = yieldToEventLoop } = {}) {
  if (isCancelled()) throw abortError();
  const total = input.nCells;
  if (!sliceable(input)) {
    // Inconsistent shapes: one call, so the engine's error names the real arrays and lengths.
    const r = await callRows(clf, input).catch((e) => { throw chunkError(e, 0, total); });
    onProgress?.({ phase: "classify", done: r.classes.length, total: r.classes.length });
    return { classes: r.classes, unclassified: r.unclassified, logits: r.logits, confidence: r.confidence, chunks: 1 };
  }
  const chunk = Math.max(1, Math.floor(chunkCells || defaultChunkCells(clf.backend)));
  const k = clf.classes.length;
  const out = {
    classes: new Uint32Array(total),
    unclassified: new Uint8Array(total),
    logits: new Float32Array(total * k),
    confidence: new Float32Array(total),
    chunks: 0,
  };
  for (let start = 0; start < total; start += chunk) {
    const end = Math.min(total, start + chunk);
    let r;
    try {
      r = await callRows(clf, input, start, end);
    } catch (e) {
      throw chunkError(e, start, end);
    }
    out.classes.set(r.classes, start);
    out.unclassified.set(r.unclassified, start);
    out.logits.set(r.logits, start * k);
    out.confidence.set(r.confidence, start);
    out.chunks++;
    onProgress?.({ phase: "classify", done: end, total });
    if (end < total) {
      await yieldBetween();
      if (isCancelled()) throw abortError();
    }
  }
  return out;
}

/** `clf.classifyPatches(patches, opts)` for every classifier class (`architecture`,
 * `patchSize`, `patchUmPerPx`, `classify`): an image-only model (architecture "image_only")
 * reads nucleus-centred patches alone (`Float32Array [cells*patchSize*patchSize]`, e.g. from
 * `cutPatches` at `patchSize` / `patchUmPerPx`), so counts and genes are empty. Rejects with a
 * `CellSymphonyError` "input" for a model that reads genes or patches of the wrong length. */
export function classifyPatchesOnly(clf, patches, opts = {}) {
  try {
    return clf.classify(...patchesOnlyCall(clf, patches, opts));
  } catch (e) {
    return Promise.reject(e);
  }
}

function patchesOnlyCall(clf, patches, opts) {
  if (clf.architecture !== "image_only") {
    throw new CellSymphonyError("input", `classifyPatches: this is a ${clf.architecture} model (it reads genes); classifyPatches runs image-only models (architecture "image_only"): use classify(counts, nCells, genes, {patches, patchSize})`);
  }
  const s = clf.patchSize, px = s * s;
  if (!(patches instanceof Float32Array) || patches.length % px !== 0) {
    throw new CellSymphonyError("input", `classifyPatches: patches must be a Float32Array [cells*${s}*${s}] (cutPatches with patchSize ${s}, patchUmPerPx ${clf.patchUmPerPx}); got ${patches?.constructor?.name ?? typeof patches} of length ${patches?.length}`);
  }
  return [new Float32Array(0), patches.length / px, [], { ...opts, patches, patchSize: s }];
}
