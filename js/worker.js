// Module worker of the cellsymphony package: loads classifiers, classifies in chunks and pairs
// cells by optimal transport off the page's main thread, with the main entry's API (index.js)
// in the worker. Spoken to by client.js (`CellSymphonyWorker`); the protocol is private to the
// two files.
//   main → worker: {id, op: "load" | "classify" | "pair" | "slide" | "flow" | "spatia" | "free" | "memory", …} and {op: "cancel", target}
//   worker → main: {id, type: "progress", progress}, {id, type: "result", value} (typed arrays
//   transferred), {id, type: "error", name, code, message} (a CellSymphonyError's code; an
//   engine error's message verbatim).
import { Classifier, FlowModel, SpatiaModel, pairCells, wasmMemoryBytes, openSlide } from "./index.js";
import { yieldToEventLoop, abortError } from "./chunked.js";
import { asCellSymphonyError, CellSymphonyError } from "./errors.js";

const classifiers = new Map(); // handle → Classifier
let nextHandle = 1;
const running = new Map(); // request id → AbortController

function describe(clf) {
  const { genes, classes, architecture, backend, patchSize, patchUmPerPx, needsCentroids, proteinMarkers, device, wasmSimd, wasmBuild } = clf;
  return { genes, classes, architecture, backend, patchSize, patchUmPerPx, needsCentroids, proteinMarkers, device, wasmSimd, wasmBuild };
}

function entry(handle) {
  const clf = classifiers.get(handle);
  if (!clf) throw new Error(`classifier ${handle} is not loaded in this worker (it was freed, or the worker restarted)`);
  return clf;
}

async function load({ modelBytes, options }) {
  const clf = await Classifier.load(modelBytes, options);
  const handle = nextHandle++;
  classifiers.set(handle, clf);
  return { value: { handle, ...describe(clf) } };
}

async function classify(id, signal, { handle, input, chunkCells }) {
  const clf = entry(handle);
  const onProgress = (progress) => self.postMessage({ id, type: "progress", progress });
  const opts = { chunkCells, signal, centroids: input.centroids, patches: input.patches, patchSize: input.patchSize, proteins: input.proteins, proteinMarkers: input.proteinMarkers };
  const r = input.kind === "dense"
    ? await clf.classify(input.counts, input.nCells, input.genes, { ...opts, onProgress })
    : await clf.classifyCsr(input.indptr, input.indices, input.data, input.nCells, input.genes, { ...opts, onProgress });
  return { value: r, transfer: [r.classes.buffer, r.unclassified.buffer, r.logits.buffer, r.confidence.buffer] };
}

async function pair(id, signal, { counts, nCells, genes, control, target, options }) {
  await yieldToEventLoop(); // a cancel sent right after the request arrives before the solve starts
  if (signal.aborted) throw abortError("pairing");
  const onProgress = (progress) => self.postMessage({ id, type: "progress", progress });
  const res = await pairCells(counts, nCells, genes, control, target, { ...options, onProgress });
  return { value: res, transfer: [res.target.buffer, res.matchScore.buffer, res.delta.buffer] };
}

/** A whole-slide TIFF (a Blob, read slice by slice): nuclei detected window by window, then,
 * with a classifier, patches cut and classified `batchNuclei` at a time; wasm memory holds one
 * window and one batch, never the level. */
async function slide(id, signal, { file, handle, options }) {
  const { batchNuclei = 4096, overviewMaxSide = 2048, detect, ...open } = options ?? {};
  if (!(Number.isInteger(batchNuclei) && batchNuclei > 0)) throw new CellSymphonyError("options", `classifySlide: batchNuclei = ${batchNuclei}: pass a positive whole number (default 4096)`);
  const onProgress = (progress) => self.postMessage({ id, type: "progress", progress });
  const clf = handle == null ? null : entry(handle);
  const s = await openSlide(file, open);
  // The slide's calls reject bad input and unreadable files naming the field: code "input".
  const call = (f) => { try { return f(); } catch (e) { throw asCellSymphonyError(e, "input"); } };
  try {
    const t0 = performance.now();
    // Detection is one synchronous wasm call: progress (tiles) is posted from inside it.
    const det = call(() => s.detectNuclei(detect, (phase, done, total) => onProgress({ phase, done, total })));
    const detectMs = performance.now() - t0;
    const n = det.nNuclei;
    let classes = null, confidence = null, classifyMs = 0;
    if (clf) {
      classes = new Uint32Array(n); confidence = new Float32Array(n);
      const t1 = performance.now();
      for (let start = 0; start < n; start += batchNuclei) {
        if (signal.aborted) throw abortError("slide classification");
        const end = Math.min(n, start + batchNuclei);
        const patches = call(() => s.cutPatches(det.centroidsUm.subarray(2 * start, 2 * end), { patchSize: clf.patchSize, patchUmPerPx: clf.patchUmPerPx }));
        const r = await clf.classifyPatches(patches);
        classes.set(r.classes, start); confidence.set(r.confidence, start);
        onProgress({ phase: "classify", done: end, total: n });
      }
      classifyMs = performance.now() - t1;
    }
    const overview = overviewMaxSide > 0 ? call(() => s.readOverview(overviewMaxSide)) : null;
    const value = { info: s.info(), detection: det, classes, confidence, overview, detectMs, classifyMs, wasmMemoryBytes: await wasmMemoryBytes() };
    const transfer = [det.centroidsPx, det.centroidsUm, det.response, det.intensity, classes, confidence, overview?.pixels].filter(Boolean).map((a) => a.buffer);
    return { value, transfer };
  } finally {
    s.free();
  }
}

/** Morphology generation: a flow loaded for this call (small: a few hundred KiB), its pairs
 * sampled in chunks with progress, then freed. */
async function flow(id, signal, { modelBytes, flowJson, inputs, options }) {
  const model = await FlowModel.load(modelBytes, flowJson, options ?? {});
  try {
    if (signal.aborted) throw abortError("morphology generation");
    const onProgress = (done, total) => self.postMessage({ id, type: "progress", progress: { phase: "flow", done, total } });
    const r = await model.sample(inputs, { onProgress });
    return { value: { ...r, device: model.device }, transfer: [r.latents.buffer, r.patches.buffer] };
  } finally {
    await model.free();
  }
}

/** SPATIA classify-with-context: the model loaded for this call, progress after every tissue
 * region, then freed. */
async function spatia(id, signal, { modelBytes, inputs, options }) {
  const model = await SpatiaModel.load(modelBytes, options ?? {});
  try {
    if (signal.aborted) throw abortError("SPATIA classification");
    const onProgress = (done, total) => self.postMessage({ id, type: "progress", progress: { phase: "spatia", done, total } });
    const r = await model.classifyWithContext(inputs, { onProgress });
    const transfer = [r.classes, r.probabilities, r.confidence, r.logits, r.nicheClusters, r.composition, r.zNiche].map((a) => a.buffer);
    return { value: { ...r, device: model.device, backend: model.backend }, transfer };
  } finally {
    await model.free();
  }
}

async function handle(msg, signal) {
  switch (msg.op) {
    case "load": return load(msg);
    case "classify": return classify(msg.id, signal, msg);
    case "pair": return pair(msg.id, signal, msg);
    case "slide": return slide(msg.id, signal, msg);
    case "flow": return flow(msg.id, signal, msg);
    case "spatia": return spatia(msg.id, signal, msg);
    case "free": {
      const clf = entry(msg.handle);
      classifiers.delete(msg.handle);
      await clf.free();
      return { value: null };
    }
    case "memory": return { value: { wasmMemoryBytes: await wasmMemoryBytes() } };
    default: throw new Error(`unknown request ${JSON.stringify(msg.op)}`);
  }
}

self.onmessage = async ({ data: msg }) => {
  if (msg.op === "cancel") {
    running.get(msg.target)?.abort();
    return;
  }
  const controller = new AbortController();
  running.set(msg.id, controller);
  try {
    const { value, transfer } = await handle(msg, controller.signal);
    self.postMessage({ id: msg.id, type: "result", value }, transfer ?? []);
  } catch (err) {
    self.postMessage({ id: msg.id, type: "error", name: err?.name || "Error", code: err?.code, message: String(err?.message ?? err) });
  } finally {
    running.delete(msg.id);
  }
};
