// Benchmark page: times our package (wasm CPU engine, WebGPU engine) and onnxruntime-web
// (WASM EP, WebGPU EP) on the same model and the same cells. Driven by
// tests/browser/bench_web.mjs, which calls `window.runBench(plan)` with
//   {arms: [{name, kind: "ours"|"ort", file, gpu, threads, build, sizes: [cells…], warm: cells}],
//    data: {counts, cells}, meta}
// and gets, per arm, {name, backend, threads, dispatchesPerLayer, runs: [{cells, ms}],
// classes: first cells' classes of the largest run}. Every arm starts from the raw counts
// `[cells, genes]` (the crop's cells repeated) and ends with classes: ours on the CPU through a
// pool of `threads` module workers (pkg/client.js CellSymphonyWorkerPool: chunks of 2,048
// cells, each through `Classifier.classify`: normalisation, checks, forward, argmax; `build`
// forces a wasm build in the workers: "relaxed", "simd" or "scalar"; default the best the browser validates), ours on WebGPU on the page's thread;
// onnxruntime with the same normalisation in JS, `session.run` and an argmax. One warm-up run
// per arm, then one timed run per size.
import init, { Classifier } from "../pkg/cellsymphony.js";
import { CellSymphonyWorkerPool } from "../pkg/client.js";

const log = (s) => { document.getElementById("log").textContent += s + "\n"; console.log(s); };

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

/** The crop's counts `[n, G]` repeated to `n` cells. */
function repeatRows(counts, nCrop, g, n) {
  const out = new Float32Array(n * g);
  for (let c = 0; c < n; c++) out.set(counts.subarray((c % nCrop) * g, (c % nCrop + 1) * g), c * g);
  return out;
}

/** The model input `[n, G_model]` from counts `[n, G_data]`: columns reordered to the model's
 * genes, then the model file's normalisation (engine/normalisation.rs). */
function normalise(counts, n, cols, norm) {
  const gm = cols.length, gd = counts.length / n;
  const x = new Float32Array(n * gm);
  const mean = norm.mean, std = norm.std;
  for (let c = 0; c < n; c++) {
    const row = counts.subarray(c * gd, (c + 1) * gd);
    let factor = 1;
    if (norm.kind === "log1p_cp10k") {
      let total = 0;
      for (let j = 0; j < gm; j++) total += row[cols[j]];
      factor = Math.fround(norm.target_sum / Math.max(total, 1));
    }
    for (let j = 0; j < gm; j++) {
      const v = row[cols[j]];
      let y = norm.kind === "log1p_cp10k" ? Math.log1p(Math.fround(v * factor))
        : norm.kind === "arcsinh" ? Math.asinh(v / norm.cofactor) : v;
      if (mean) y = (Math.fround(y) - mean[j]) / std[j];
      x[c * gm + j] = y;
    }
  }
  return x;
}

function argmax(logits, n, k) {
  const out = new Uint32Array(n);
  for (let c = 0; c < n; c++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (logits[c * k + j] > logits[c * k + best]) best = j;
    out[c] = best;
  }
  return out;
}

async function runOurs(arm, data) {
  const bytes = await fetchBytes(arm.file);
  if (arm.gpu && !(navigator.gpu && await navigator.gpu.requestAdapter())) {
    return { name: arm.name, error: "no WebGPU adapter" };
  }
  const threads = arm.gpu ? 1 : (arm.threads ?? 1);
  let pool = null, clf, backend;
  if (arm.gpu) {
    clf = await Classifier.load(bytes, true);
    backend = clf.backend;
  } else {
    const workerUrl = new URL(`../pkg/worker.js${arm.build ? `?cellsymphony-wasm=${arm.build}` : ""}`, import.meta.url);
    pool = new CellSymphonyWorkerPool({ threads, workerUrl });
    clf = await pool.loadClassifier(bytes, arm.int8Gemm ? { device: "cpu", int8Gemm: arm.int8Gemm } : { device: "cpu" });
    const buildName = { relaxed: "relaxed-SIMD", simd: "SIMD128", scalar: "scalar" }[clf.wasmBuild];
    backend = `${clf.backend}, ${buildName} wasm build, ${threads} worker(s)`;
    if (arm.build && clf.wasmBuild !== arm.build) throw new Error(`the workers loaded the ${buildName} build, not the ${arm.build} build this arm asks for`);
  }
  const classify = async (n) => {
    const counts = repeatRows(data.counts, data.nCrop, data.genes.length, n);
    const t0 = performance.now();
    const res = await clf.classify(counts, n, data.genes);
    return { ms: performance.now() - t0, classes: res.classes };
  };
  const out = { name: arm.name, backend, threads, runs: [] };
  out.dispatchesPerLayer = arm.gpu ? (clf.dispatchesPerLayer() ?? null) : null;
  log(`${arm.name}: ${backend}; warm-up ${arm.warm} cells`);
  out.warmMs = (await classify(arm.warm)).ms;
  for (const n of arm.sizes) {
    const r = await classify(n);
    out.runs.push({ cells: n, ms: r.ms });
    if (!out.classes || n > out.classesFrom) { out.classes = Array.from(r.classes.subarray(0, Math.min(n, data.nCrop))); out.classesFrom = n; }
    log(`${arm.name}: ${n} cells in ${r.ms.toFixed(0)} ms`);
  }
  await clf.free();
  pool?.terminate();
  return out;
}

let ort = null;
async function loadOrt(bundle, threads) {
  if (ort) return ort;
  ort = await import(`/__ort/${bundle}`);
  ort.env.wasm.wasmPaths = "/__ort/";
  ort.env.wasm.numThreads = threads;
  return ort;
}

async function runOrt(arm, data, meta) {
  const o = await loadOrt(arm.gpu ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs", arm.threads);
  if (arm.gpu && !(navigator.gpu && await navigator.gpu.requestAdapter())) {
    return { name: arm.name, error: "no WebGPU adapter" };
  }
  const session = await o.InferenceSession.create(arm.file, {
    executionProviders: [arm.gpu ? "webgpu" : "wasm"],
    graphOptimizationLevel: "all",
  });
  const index = new Map(data.genes.map((g, i) => [g, i]));
  const cols = meta.genes.map((g) => {
    if (!index.has(g)) throw new Error(`model gene ${g} is not in the data`);
    return index.get(g);
  });
  const k = meta.classes.length;
  const classify = async (n) => {
    const counts = repeatRows(data.counts, data.nCrop, data.genes.length, n);
    const t0 = performance.now();
    const x = normalise(counts, n, cols, meta.normalisation);
    const res = await session.run({ x: new o.Tensor("float32", x, [n, cols.length]) });
    const logits = res.logits.data instanceof Float32Array ? res.logits.data : await res.logits.getData();
    const classes = argmax(logits, n, k);
    return { ms: performance.now() - t0, classes };
  };
  const backend = `onnxruntime-web ${o.env.versions?.web ?? ""} ${arm.gpu ? "webgpu" : "wasm"} EP` +
    (arm.gpu ? "" : `, ${arm.threads} thread(s), crossOriginIsolated=${self.crossOriginIsolated}`);
  const out = { name: arm.name, backend, threads: arm.threads, runs: [] };
  log(`${arm.name}: ${backend}; warm-up ${arm.warm} cells`);
  out.warmMs = (await classify(arm.warm)).ms;
  for (const n of arm.sizes) {
    const r = await classify(n);
    out.runs.push({ cells: n, ms: r.ms });
    if (!out.classes || n > out.classesFrom) { out.classes = Array.from(r.classes.subarray(0, Math.min(n, data.nCrop))); out.classesFrom = n; }
    log(`${arm.name}: ${n} cells in ${r.ms.toFixed(0)} ms`);
  }
  await session.release();
  return out;
}

window.runBench = async (plan) => {
  await init();
  const counts = new Float32Array((await fetchBytes(plan.data.counts)).buffer);
  const cells = await (await fetch(plan.data.cells)).json();
  const data = { counts, genes: cells.genes, nCrop: cells.n_cells };
  if (counts.length !== data.nCrop * data.genes.length) throw new Error(`counts.f32 holds ${counts.length} values, not cells.json's ${data.nCrop} × ${data.genes.length}`);
  const results = [];
  for (const arm of plan.arms) {
    try {
      results.push(arm.kind === "ours" ? await runOurs(arm, data) : await runOrt(arm, data, plan.meta));
    } catch (e) {
      log(`${arm.name}: ERROR ${e.message ?? e}`);
      results.push({ name: arm.name, error: String(e.message ?? e) });
    }
  }
  return { crossOriginIsolated: self.crossOriginIsolated, userAgent: navigator.userAgent, results };
};
document.body.dataset.status = "ready";
