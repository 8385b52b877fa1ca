// Module worker of the cellsymphony package: loads classifiers, classifies in chunks and pairs
// cells by optimal transport off the page's main thread. Spoken to by client.js
// (`CellSymphonyWorker`); the protocol is private to the two files.
//   main → worker: {id, op: "load" | "classify" | "pair" | "free" | "memory", …} and {op: "cancel", target}
//   worker → main: {id, type: "progress", progress}, {id, type: "result", value} (typed arrays
//   transferred), {id, type: "error", name, message} (an engine JsError's message verbatim).
import { init, Classifier, pairCells, simd } from "./wasm.js";
import { classifyInChunks, enqueue, yieldToEventLoop, abortError } from "./chunked.js";

let exports = null;
let ready = null;
const classifiers = new Map(); // handle → {clf, queue}
let nextHandle = 1;
const cancelled = new Set();

function wasmReady() {
  ready ??= init().then((e) => { exports = e; });
  return ready;
}

function wasmMemoryBytes() {
  return exports?.memory?.buffer?.byteLength ?? 0;
}

function describe(clf) {
  return {
    genes: clf.genes, classes: clf.classes, architecture: clf.architecture, backend: clf.backend,
    patchSize: clf.patchSize, patchUmPerPx: clf.patchUmPerPx, needsCentroids: clf.needsCentroids,
    wasmSimd: simd,
  };
}

function entry(handle) {
  const e = classifiers.get(handle);
  if (!e) throw new Error(`classifier ${handle} is not loaded in this worker (it was freed, or the worker restarted)`);
  return e;
}

async function load({ modelBytes, useGpu, int8Gemm }) {
  if (useGpu) {
    // wgpu cannot recover once it has started without WebGPU: check in JS first.
    const adapter = self.navigator?.gpu ? await self.navigator.gpu.requestAdapter().catch(() => null) : null;
    if (!adapter) throw new Error("WebGPU: no adapter in this worker (navigator.gpu is missing or gave none); load with useGpu: false for the CPU engine");
  }
  const clf = await Classifier.load(modelBytes, int8Gemm === undefined ? !!useGpu : { useGpu: !!useGpu, int8Gemm });
  const handle = nextHandle++;
  classifiers.set(handle, { clf, queue: { tail: Promise.resolve() } });
  return { value: { handle, ...describe(clf) } };
}

async function classify(id, { handle, input, chunkCells }) {
  const { clf, queue } = entry(handle);
  const r = await enqueue(queue, () => classifyInChunks(clf, input, {
    chunkCells,
    isCancelled: () => cancelled.has(id),
    onProgress: (progress) => self.postMessage({ id, type: "progress", progress }),
  }));
  const value = { ...r, wasmMemoryBytes: wasmMemoryBytes() };
  return { value, transfer: [r.classes.buffer, r.unclassified.buffer, r.logits.buffer, r.confidence.buffer] };
}

async function pair(id, { counts, nCells, genes, control, target, options }) {
  await yieldToEventLoop(); // a cancel sent right after the request arrives before the solve starts
  if (cancelled.has(id)) throw abortError("pairing");
  const res = await pairCells(counts, nCells, genes, control, target, options ?? undefined,
    (iteration, error) => self.postMessage({ id, type: "progress", progress: { phase: "pair", iteration, error } }));
  const value = {
    target: res.target, matchScore: res.matchScore, iterations: res.iterations, error: res.error,
    converged: res.converged, dispatches: res.dispatches, pcaComponents: res.pcaComponents,
    backend: res.backend, delta: res.delta, topUp: res.topUp, topDown: res.topDown,
    wasmMemoryBytes: wasmMemoryBytes(),
  };
  return { value, transfer: [res.target.buffer, res.matchScore.buffer, res.delta.buffer] };
}

async function handle(msg) {
  switch (msg.op) {
    case "load": return load(msg);
    case "classify": return classify(msg.id, msg);
    case "pair": return pair(msg.id, msg);
    case "free": {
      const { clf, queue } = entry(msg.handle);
      classifiers.delete(msg.handle);
      await queue.tail;
      clf.free();
      return { value: null };
    }
    case "memory": return { value: { wasmMemoryBytes: wasmMemoryBytes() } };
    default: throw new Error(`unknown request ${JSON.stringify(msg.op)}`);
  }
}

self.onmessage = async ({ data: msg }) => {
  if (msg.op === "cancel") {
    cancelled.add(msg.target);
    return;
  }
  try {
    await wasmReady();
    const { value, transfer } = await handle(msg);
    self.postMessage({ id: msg.id, type: "result", value }, transfer ?? []);
  } catch (err) {
    self.postMessage({ id: msg.id, type: "error", name: err?.name || "Error", message: String(err?.message ?? err) });
  } finally {
    cancelled.delete(msg.id);
  }
};
