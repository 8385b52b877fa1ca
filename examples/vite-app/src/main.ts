// A Vite + TypeScript app using the cellsymphony npm package as a JS developer would: the main
// entry (`Classifier.load` picks the device itself) and the worker entry (progress, cancel,
// transferred arrays, cell pairing). `?data=<url>/` points at a web bundle (cells.json,
// counts.f32, model.int8.safetensors); the result goes to `window.__app` for the test.
import { Classifier, CellSymphonyError, type ClassifyResult, type Device } from "cellsymphony";
import { Classifier as WorkerClassifier, CellSymphonyWorker, type ClassifyProgress, type PairResult } from "cellsymphony/worker";

interface Bundle {
  n_cells: number;
  genes: string[];
}

export interface AppResult {
  nCells: number;
  classNames: string[];
  main: { device: string; backend: string; classes: number[]; ms: number };
  /** `device: "webgpu"` on the first 256 cells where Chromium offers any adapter (null without
   * one; a software adapter classifies ~100 cells/s). */
  webgpu: { backend: string; classes: number[]; ms: number } | null;
  worker: { device: string; classes: number[]; progress: number[]; detached: boolean; ms: number };
  cancel: string;
  badModel: { name: string; code: string; message: string };
  pairing: { control: number; target: number; pairs: number[]; converged: boolean; iterations: number; progressEvents: number; backend: string; topUp: string[] };
  error?: string;
}

declare global {
  interface Window {
    __app?: AppResult | { error: string };
  }
}

const log = (line: string): void => {
  document.querySelector<HTMLPreElement>("#log")!.textContent += line + "\n";
};

async function fetchBytes(url: string): Promise<ArrayBuffer> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.arrayBuffer();
}

/** The two most frequent classes' cells, as control and target groups for pairing. */
function groups(classes: Uint32Array): [Uint32Array, Uint32Array] {
  const byClass = new Map<number, number[]>();
  classes.forEach((c, i) => byClass.set(c, [...(byClass.get(c) ?? []), i]));
  const [a, b] = [...byClass.values()].sort((x, y) => y.length - x.length);
  return [Uint32Array.from(a ?? []), Uint32Array.from(b ?? [])];
}

async function run(): Promise<AppResult> {
  const params = new URLSearchParams(location.search);
  const data = params.get("data") ?? "data/";
  const device = (params.get("device") ?? "auto") as Device;
  const bundle = (await (await fetch(data + "cells.json")).json()) as Bundle;
  const counts = new Float32Array(await fetchBytes(data + "counts.f32"));
  const model = new Uint8Array(await fetchBytes(data + "model.int8.safetensors"));
  const n = bundle.n_cells;

  // Main entry: no init(), no adapter probing.
  let t0 = performance.now();
  const clf = await Classifier.load(model, { device });
  const res: ClassifyResult = await clf.classify(counts, n, bundle.genes);
  const main = { device: clf.device, backend: clf.backend, classes: Array.from(res.classes), ms: performance.now() - t0 };
  log(`main thread: ${n} cells on ${clf.device} (${clf.backend}) in ${main.ms.toFixed(0)} ms`);

  // WebGPU asked for explicitly (a software adapter too), when there is an adapter: the first 256 cells.
  let webgpu: AppResult["webgpu"] = null;
  const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<object | null> } }).gpu;
  if (await gpu?.requestAdapter()) {
    t0 = performance.now();
    const gclf = await Classifier.load(model, { device: "webgpu" });
    const m = Math.min(n, 256);
    const gres = await gclf.classify(counts.subarray(0, m * bundle.genes.length), m, bundle.genes);
    webgpu = { backend: gclf.backend, classes: Array.from(gres.classes), ms: performance.now() - t0 };
    await gclf.free();
    log(`webgpu: ${webgpu.backend} in ${webgpu.ms.toFixed(0)} ms`);
  }

  // Worker entry: progress, transferred input, then a cancelled call.
  t0 = performance.now();
  const wclf = await WorkerClassifier.load(model, { device: "cpu", threads: 1 });
  const progress: number[] = [];
  const input = counts.slice();
  const bar = document.querySelector<HTMLProgressElement>("#progress")!;
  const onProgress = (p: ClassifyProgress): void => {
    progress.push(p.done);
    bar.value = p.done / p.total;
  };
  const wres = await wclf.classify(input, n, bundle.genes, { chunkCells: 256, onProgress });
  const worker = { device: wclf.device, classes: Array.from(wres.classes), progress, detached: input.byteLength === 0, ms: performance.now() - t0 };
  log(`worker: ${progress.length} progress events, ${worker.ms.toFixed(0)} ms`);
  const ac = new AbortController();
  const cancelled = wclf.classify(counts, n, bundle.genes, { chunkCells: 64, transfer: false, signal: ac.signal, onProgress: () => ac.abort() });
  const cancel = await cancelled.then(() => "resolved", (e: unknown) => (e instanceof DOMException ? e.name : String(e)));
  log(`cancel: ${cancel}`);

  // A typed error for a file that is not a model.
  const badModel = await Classifier.load(new Uint8Array([1, 2, 3, 4]), { device: "cpu" }).then(
    () => ({ name: "resolved", code: "", message: "" }),
    (e: unknown) => (e instanceof CellSymphonyError ? { name: e.name, code: e.code, message: e.message } : { name: String(e), code: "", message: "" }));
  log(`bad model: ${badModel.code}: ${badModel.message}`);

  // Pairing in a worker: the two largest predicted classes.
  const [control, target] = groups(res.classes);
  const runner = new CellSymphonyWorker();
  let progressEvents = 0;
  const pr: PairResult = await runner.pairCells(counts, n, bundle.genes, control, target, { device: "cpu", allowUnconverged: true },
    { transfer: false, onProgress: () => { progressEvents++; } });
  runner.terminate();
  log(`pairing: ${control.length} → ${target.length} cells, ${pr.iterations} iterations, converged ${pr.converged}`);
  const pairing = {
    control: control.length, target: target.length, pairs: Array.from(pr.target), converged: pr.converged,
    iterations: pr.iterations, progressEvents, backend: pr.backend, topUp: pr.topUp.map((g) => g.gene),
  };
  await clf.free();
  await wclf.free();
  wclf.runner?.terminate();
  return { nCells: n, classNames: clf.classes, main, webgpu, worker, cancel, badModel, pairing };
}

run().then(
  (r) => { window.__app = r; document.body.dataset.status = "done"; },
  (e: unknown) => {
    window.__app = { error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
    log(String(e));
    document.body.dataset.status = "error";
  });
