// Worker mode of the npm package (pkg/client.js + pkg/worker.js), checked in the page opened by
// browser_test.mjs: classes through the worker equal the main thread's (and the native
// engine's), progress is monotonic and ends at the total, a cancel rejects with AbortError and
// the worker stays usable, engine errors keep their message, pairing through the worker gives
// the main thread's pairs, and the page's timers and frames keep running while the worker
// classifies (the wasm API called directly on the main thread is the peer that blocks them);
// a pool of 2 workers gives the main thread's classes; the page loads the relaxed-SIMD build
// (Chromium has relaxed SIMD), whose fused multiply-adds follow the SIMD128 build (forced in a
// worker) within a stated tolerance, the scalar fallback build (forced in a worker) gives
// the SIMD128 build's logits bit for bit, and each build's SIMD GELU/exp match the Rust
// references (bit for bit in SIMD128, within 1e-6 in the relaxed build).
//   await workerChecks({ page, dataParam, bundle, result, log: console.log });   // throws on a failure
// (`result`: the page's window.__cellsymphony, whose classes the caller already compared with native)

/** Runs in the page: every measurement, no assertion. */
async function inPage(data) {
  const client = await import("../pkg/client.js");
  const m = await import("../pkg/cellsymphony.js");
  await m.default();
  const meta = await (await fetch(data + "cells.json")).json();
  const counts0 = new Float32Array(await (await fetch(data + "counts.f32")).arrayBuffer());
  const model = new Uint8Array(await (await fetch(data + "model.int8.safetensors")).arrayBuffer());
  const n = meta.n_cells, genes = meta.genes, g = genes.length;
  const failure = async (f) => { try { await f(); return { name: "resolved", message: "" }; } catch (e) { return { name: e.name, message: String(e.message) }; } };
  const out = { n };

  // The peer: the wasm API on the main thread.
  const main = await m.Classifier.load(model, false);
  const mainRes = await main.classify(counts0, n, genes);
  out.main = Array.from(mainRes.classes);

  const cs = new client.CellSymphonyWorker();
  const clf = await cs.loadClassifier(model, { useGpu: false });
  out.backend = clf.backend;
  out.sameInfo = JSON.stringify([clf.genes, clf.classes, clf.architecture]) === JSON.stringify([main.genes, main.classes, main.architecture]);

  // Dense counts in chunks of 256 cells, transferred.
  const counts = counts0.slice();
  const events = [];
  const r = await clf.classify(counts, n, genes, { chunkCells: 256, onProgress: (p) => events.push(p) });
  out.detached = counts.byteLength === 0;
  out.worker = Array.from(r.classes);
  out.chunks = r.chunks;
  out.events = events;
  out.maxLogitDiff = r.logits.reduce((mx, v, i) => Math.max(mx, Math.abs(v - mainRes.logits[i])), 0);
  out.logitsLength = [r.logits.length, mainRes.logits.length];
  out.wasmMemoryBytes = r.wasmMemoryBytes;

  // CSR, sliced by rows (chunks of 300), copied instead of transferred.
  const indptr = [0], indices = [], values = [];
  for (let c = 0; c < n; c++) {
    for (let j = 0; j < g; j++) { const v = counts0[c * g + j]; if (v !== 0) { indices.push(j); values.push(v); } }
    indptr.push(values.length);
  }
  const ip = new Uint32Array(indptr);
  const rc = await clf.classifyCsr(ip, new Uint32Array(indices), new Float32Array(values), n, genes, { chunkCells: 300, transfer: false });
  out.csr = Array.from(rc.classes);
  out.csrKept = ip.length === n + 1;

  // A pool of 2 workers (chunks of 200 cells spread over them; the input is copied, not
  // transferred), a worker forced onto the SIMD128 build and one forced onto the scalar build
  // (the fallback for engines without SIMD; the SIMD128 kernels multiply and add separately in
  // the same order, so their logits must be bit-identical).
  out.mainSimd = m.simd;
  out.mainBuild = m.build;
  const pool = new client.CellSymphonyWorkerPool({ threads: 2 });
  const pclf = await pool.loadClassifier(model, { useGpu: false });
  const poolEvents = [];
  const pr = await pclf.classify(counts0, n, genes, { chunkCells: 200, onProgress: (p) => poolEvents.push(p.done) });
  out.pool = { classes: Array.from(pr.classes), simd: pclf.wasmSimd, events: poolEvents, kept: counts0.byteLength > 0, chunks: pr.chunks,
    maxLogitDiff: pr.logits.reduce((mx, v, i) => Math.max(mx, Math.abs(v - mainRes.logits[i])), 0) };
  pool.terminate();
  const forced = async (build) => {
    const w = new client.CellSymphonyWorker({ workerUrl: new URL(`../pkg/worker.js?cellsymphony-wasm=${build}`, location.href) });
    const wclf = await w.loadClassifier(model, { useGpu: false });
    const res = await wclf.classify(counts0, n, genes, { transfer: false });
    w.terminate();
    return { res, build: wclf.wasmBuild, simd: wclf.wasmSimd, backend: wclf.backend };
  };
  const simdRun = await forced("simd");
  const scalarRun = await forced("scalar");
  const maxDiff = (a, b) => a.reduce((mx, v, i) => Math.max(mx, Math.abs(v - b[i])), 0);
  const nc = main.classes.length;
  // Cells whose SIMD128 logits have a top-2 margin above `eps` (where a class cannot flip).
  const clearCells = (logits, eps) => Array.from({ length: n }, (_, c) => {
    const row = Array.from(logits.subarray(c * nc, (c + 1) * nc)).sort((a, b) => b - a);
    return nc < 2 || row[0] - row[1] > eps;
  });
  const relaxedDiff = maxDiff(mainRes.logits, simdRun.res.logits);
  const clear = clearCells(simdRun.res.logits, 2 * relaxedDiff);
  out.simdBuild = { build: simdRun.build, backend: simdRun.backend, maxLogitDiff: relaxedDiff,
    clear: clear.filter(Boolean).length,
    sameOnClear: Array.from(simdRun.res.classes).filter((c, i) => clear[i] && c === mainRes.classes[i]).length,
    maxLogit: mainRes.logits.reduce((mx, v) => Math.max(mx, Math.abs(v)), 0) };
  out.scalar = { classes: Array.from(scalarRun.res.classes), simdClasses: Array.from(simdRun.res.classes), simd: scalarRun.simd,
    build: scalarRun.build, backend: scalarRun.backend, maxLogitDiff: maxDiff(scalarRun.res.logits, simdRun.res.logits) };

  // Each build's SIMD GELU and exp against the plain-Rust references, inside the module
  // (special arguments: ±0, NaN, ±∞, clamp bounds, subnormals; 40,001 spread over [-20, 20]).
  out.mathChecks = {};
  for (const b of ["relaxed", "simd", "scalar"]) {
    const mb = await import(`../pkg/cellsymphony_${b}.js`);
    await mb.default();
    out.mathChecks[b] = mb.simdMathCheck();
  }

  // The main-thread mode of the client (same chunks, on this thread).
  const local = await new client.CellSymphonyMainThread().loadClassifier(model, { useGpu: false });
  out.mainMode = Array.from((await local.classify(counts0, n, genes, { chunkCells: 256 })).classes);

  // Engine errors: the same message as on the main thread (first chunk or whole-input errors),
  // the chunk named for a later chunk.
  const renamed = genes.map((name, j) => (j < 12 ? `RENAMED_${j}` : name));
  out.missing = { worker: await failure(() => clf.classify(counts0, n, renamed, { transfer: false })),
    main: await failure(() => main.classify(counts0, n, renamed)) };
  out.length = { worker: await failure(() => clf.classify(counts0.subarray(1), n, genes, { transfer: false })),
    main: await failure(() => main.classify(counts0.subarray(1), n, genes)) };
  const nan = counts0.slice(); nan[700 * g + 5] = NaN;
  out.nanLate = await failure(() => clf.classify(nan, n, genes, { chunkCells: 256 }));

  // Cancel: 4 copies of the crop in chunks of 512; abort after the first progress event.
  const COPIES = 4;
  const big = new Float32Array(COPIES * n * g);
  for (let k = 0; k < COPIES; k++) big.set(counts0, k * n * g);
  const ac = new AbortController();
  const cancelEvents = [];
  const t0 = performance.now();
  out.cancel = await failure(() => clf.classify(big.slice(), COPIES * n, genes, { chunkCells: 512, signal: ac.signal,
    onProgress: (p) => { cancelEvents.push(p.done); if (cancelEvents.length === 1) ac.abort(); } }));
  out.cancelMs = performance.now() - t0;
  out.cancelEvents = cancelEvents;
  out.copies = COPIES;
  out.preAborted = await failure(() => clf.classify(counts0, n, genes, { signal: AbortSignal.abort(), transfer: false }));
  out.afterCancel = Array.from((await clf.classify(counts0, n, genes, { transfer: false })).classes);

  // Responsiveness: a 10 ms timer and requestAnimationFrame count while 4 × the crop is
  // classified in the worker, then while the wasm API classifies it on this thread.
  const counter = () => {
    let timer = 0, frames = 0, stop = false;
    const iv = setInterval(() => timer++, 10);
    const raf = () => { if (!stop) { frames++; requestAnimationFrame(raf); } };
    requestAnimationFrame(raf);
    return () => { stop = true; clearInterval(iv); return { timer, frames }; };
  };
  await new Promise((ok) => setTimeout(ok, 50));
  let stop = counter(), t1 = performance.now();
  const bigWorker = await clf.classify(big.slice(), COPIES * n, genes, { chunkCells: 2048 });
  out.responsive = { worker: { ms: performance.now() - t1, ...stop() } };
  await new Promise((ok) => setTimeout(ok, 50));
  stop = counter(); t1 = performance.now();
  const bigMain = await main.classify(big, COPIES * n, genes);
  out.responsive.main = { ms: performance.now() - t1, ...stop() };
  out.bigSame = bigWorker.classes.every((c, i) => c === bigMain.classes[i]);

  // Pairing: the 300 leftmost cells (control) with the 300 rightmost (target), CPU Sinkhorn.
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => meta.centroids_um[a][0] - meta.centroids_um[b][0]);
  const control = Uint32Array.from(order.slice(0, 300)), target = Uint32Array.from(order.slice(n - 300));
  const pairMain = await m.pairCells(counts0, n, genes, control, target, { useGpu: false });
  const pairEvents = [];
  const pw = await cs.pairCells(counts0.slice(), n, genes, control.slice(), target.slice(), { useGpu: false },
    { onProgress: (p) => pairEvents.push(p) });
  out.pair = { main: Array.from(pairMain.target), worker: Array.from(pw.target), iterations: [pairMain.iterations, pw.iterations],
    converged: pw.converged, events: pairEvents, deltaDiff: pw.delta.reduce((mx, v, i) => Math.max(mx, Math.abs(v - pairMain.delta[i])), 0) };
  const pac = new AbortController();
  out.pairCancel = await failure(() => cs.pairCells(counts0.slice(), n, genes, control.slice(), target.slice(), { useGpu: false },
    { signal: pac.signal, onProgress: () => pac.abort() }));
  out.pairAgain = Array.from((await cs.pairCells(counts0, n, genes, control, target, { useGpu: false }, { transfer: false })).target);
  out.afterRestart = Array.from((await clf.classify(counts0, n, genes, { transfer: false })).classes);
  cs.terminate();
  return out;
}

const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

export async function workerChecks({ page, dataParam, bundle, result, log = console.log }) {
  const fail = (msg) => { throw new Error(`worker mode: ${msg}`); };
  // The demo page classified (on its engine: WebGPU in the test) and paired in the worker.
  if (result && result.mode !== "worker") fail(`the demo page ran in mode ${result.mode}, expected its default, the worker`);
  // The demo's progress bar: the classification's events ended at every cell; a pairing
  // started with the lasso groups the caller drew shows the bar, and Cancel stops it.
  const shown = await page.evaluate(() => window.__cellsymphonyProgress);
  const main = shown.filter((p) => p.what === "classifying");
  if (result && (main.length === 0 || main[main.length - 1].done !== result.nCells)) fail(`the demo's progress bar did not reach ${result.nCells} cells: ${JSON.stringify(main)}`);
  await page.click("#pair");
  await page.waitForSelector("#progress-box:not([hidden])", { timeout: 10000 });
  await page.click("#cancel");
  await page.waitForSelector("body[data-pair-status=cancelled], body[data-pair-status=done], body[data-pair-status=error]", { timeout: 60000 });
  const demo = await page.evaluate(() => ({ status: document.body.dataset.pairStatus, hidden: document.getElementById("progress-box").hidden,
    text: document.getElementById("pair-status").textContent }));
  log(`demo: classification progress ${main.map((p) => p.done).join(", ")}; Pair then Cancel → ${demo.status} ("${demo.text}")`);
  if (demo.status !== "cancelled" || !demo.hidden) fail(`Cancel during the demo's pairing: status ${demo.status}, progress bar hidden ${demo.hidden}`);
  const r = await page.evaluate(inPage, dataParam);
  const n = r.n;
  const native = bundle.native_predictions;
  const diff = (a) => a.filter((c, i) => c !== native[i]).length;
  log(`worker mode (${r.backend}): ${n - diff(r.worker)}/${n} cells equal native, ${r.chunks} chunks of 256; ` +
    `main thread ${n - diff(r.main)}/${n}; max |Δlogit| worker vs main thread ${r.maxLogitDiff}; worker wasm memory ${(r.wasmMemoryBytes / 2 ** 20).toFixed(1)} MiB`);
  if (!r.sameInfo) fail("the worker's classifier reports other genes, classes or architecture than the wasm Classifier");
  if (r.worker.length !== n || !same(r.worker, r.main) || diff(r.worker) > 0) fail(`classes differ from the main thread on ${r.worker.filter((c, i) => c !== r.main[i]).length} cells, from native on ${diff(r.worker)}`);
  if (r.logitsLength[0] !== r.logitsLength[1] || !(r.maxLogitDiff <= 1e-6)) fail(`logits differ from the main thread's (max ${r.maxLogitDiff}, lengths ${r.logitsLength})`);
  if (!r.detached) fail("the counts given to the worker were not transferred (their buffer is still attached)");
  if (!same(r.csr, r.main) || !r.csrKept) fail("classifyCsr in the worker differs from the main thread (or transfer: false detached the input)");
  if (!same(r.mainMode, r.main)) fail("the client's main-thread mode differs from the wasm API");
  const pool = r.pool;
  log(`worker pool of 2: ${pool.classes.filter((c, i) => c === r.main[i]).length}/${n} cells equal the main thread, ${pool.chunks} chunks, ` +
    `max |Δlogit| ${pool.maxLogitDiff}, SIMD128 build ${pool.simd}; progress ${pool.events.join(", ")}`);
  if (!r.mainSimd || !pool.simd) fail(`Chromium supports wasm SIMD, but the page (${r.mainSimd}) or the pool (${pool.simd}) did not load the SIMD128 build`);
  if (!same(pool.classes, r.main) || !(pool.maxLogitDiff <= 1e-6) || !pool.kept) fail("the worker pool differs from the main thread (or detached the input)");
  if (pool.events.some((d, i) => i > 0 && d <= pool.events[i - 1]) || pool.events[pool.events.length - 1] !== n) fail(`pool progress is not monotonic up to ${n}: ${pool.events}`);
  const sb = r.simdBuild;
  log(`page: ${r.mainBuild} wasm build; SIMD128 build (forced in a worker, ${sb.backend}): max |Δlogit| ${sb.maxLogitDiff.toExponential(2)} ` +
    `(logits up to ${sb.maxLogit.toFixed(2)}), same class on ${sb.sameOnClear}/${sb.clear} cells whose top-2 margin exceeds twice that`);
  if (r.mainBuild !== "relaxed") fail(`Chromium supports relaxed SIMD, but the page loaded the ${r.mainBuild} build`);
  if (sb.build !== "simd") fail(`?cellsymphony-wasm=simd on the worker's URL loaded the ${sb.build} build`);
  // Fused multiply-adds in the relaxed build: ≤ 1e-3 per logit on these models (measured ~1e-5).
  if (!(sb.maxLogitDiff <= 1e-3) || sb.sameOnClear !== sb.clear || sb.clear < n - 5) fail(`the relaxed-SIMD build does not follow the SIMD128 build: ${JSON.stringify(sb)}`);
  log(`scalar fallback build (forced, ${r.scalar.backend}): ${r.scalar.classes.filter((c, i) => c === r.scalar.simdClasses[i]).length}/${n} cells equal the SIMD128 build, max |Δlogit| ${r.scalar.maxLogitDiff}`);
  if (r.scalar.simd !== false || r.scalar.build !== "scalar") fail("?cellsymphony-wasm=scalar on the worker's URL did not load the scalar build");
  if (!same(r.scalar.classes, r.scalar.simdClasses) || r.scalar.maxLogitDiff !== 0) fail(`the scalar build's logits differ from the SIMD128 build's (max ${r.scalar.maxLogitDiff}; they must be bit-identical)`);
  const mc = r.mathChecks;
  log(`SIMD GELU/exp vs the Rust references: SIMD128 build ${mc.simd.mismatches}/${mc.simd.checked} values differ; ` +
    `relaxed build ${mc.relaxed.mismatches}/${mc.relaxed.checked} differ, max error ${mc.relaxed.maxError.toExponential(2)}; scalar build: ${mc.scalar.checked} checked (no SIMD path)`);
  if (!(mc.simd.checked > 80000) || mc.simd.mismatches !== 0) fail(`the SIMD128 build's GELU/exp are not bit-identical to the references: ${JSON.stringify(mc.simd)}`);
  // Fused multiply-adds in the polynomials: relative error (to max(1, |value|)) ≤ 1e-6.
  if (!(mc.relaxed.checked > 80000) || !(mc.relaxed.maxError <= 1e-6)) fail(`the relaxed build's GELU/exp stray from the references: ${JSON.stringify(mc.relaxed)}`);
  if (mc.scalar.checked !== 0) fail(`the scalar build claims a SIMD path: ${JSON.stringify(mc.scalar)}`);
  const done = r.events.map((e) => e.done);
  log(`progress events: ${done.join(", ")}`);
  if (r.events.length !== Math.ceil(n / 256) || r.events.some((e) => e.total !== n || e.phase !== "classify") ||
      done.some((d, i) => i > 0 && d <= done[i - 1]) || done[done.length - 1] !== n) fail(`progress is not monotonic up to ${n}: ${JSON.stringify(r.events)}`);
  for (const key of ["missing", "length"]) {
    const { worker, main } = r[key];
    log(`error through the worker (${key}): ${worker.message}`);
    if (main.name === "resolved" || worker.message !== main.message) fail(`${key}: worker message ${JSON.stringify(worker.message)} ≠ main thread ${JSON.stringify(main.message)}`);
  }
  log(`error in a later chunk: ${r.nanLate.message}`);
  if (!r.nanLate.message.includes("is NaN") || !r.nanLate.message.includes("in the chunk of cells 512..767")) fail(`NaN in cell 700: ${r.nanLate.message}`);
  log(`cancel: ${r.cancel.name} after ${r.cancelMs.toFixed(0)} ms (progress ${r.cancelEvents.join(", ")} of ${r.copies * n}); aborted signal: ${r.preAborted.name}`);
  if (r.cancel.name !== "AbortError" || r.preAborted.name !== "AbortError") fail(`a cancel should reject with AbortError, got ${r.cancel.name} / ${r.preAborted.name}`);
  if (r.cancelEvents.length > 2) fail(`progress kept coming after the cancel: ${r.cancelEvents}`);
  if (!same(r.afterCancel, r.main)) fail("classify after a cancel differs from the main thread");
  const { worker: w, main: mt } = r.responsive;
  log(`responsiveness, ${r.copies * n} cells: in the worker ${w.ms.toFixed(0)} ms with ${w.timer} timer ticks (10 ms) and ${w.frames} frames on the page; ` +
    `wasm API on the main thread ${mt.ms.toFixed(0)} ms with ${mt.timer} ticks and ${mt.frames} frames`);
  if (!r.bigSame) fail("4 × the crop: worker and main-thread classes differ");
  if (w.timer < Math.max(5, 0.2 * (w.ms / 10)) || w.frames < 3) fail(`the page's timer/frames stalled while the worker classified (${w.timer} ticks, ${w.frames} frames in ${w.ms.toFixed(0)} ms)`);
  const p = r.pair;
  const its = p.events.map((e) => e.iteration);
  log(`pairing through the worker: ${p.worker.filter((t, i) => t === p.main[i]).length}/${p.main.length} pairs equal the main thread's, ` +
    `iterations ${p.iterations[1]} (main ${p.iterations[0]}), ${p.events.length} progress events, max |ΔΔg| ${p.deltaDiff}; cancel: ${r.pairCancel.name}`);
  if (!same(p.worker, p.main) || p.iterations[0] !== p.iterations[1] || !(p.deltaDiff <= 1e-6)) fail("pairs through the worker differ from the main thread's");
  if (!p.converged || p.events.length === 0 || its.some((it, i) => i > 0 && it < its[i - 1]) || p.events.some((e) => e.phase !== "pair")) fail(`pairing progress: ${JSON.stringify(p.events)}`);
  if (r.pairCancel.name !== "AbortError") fail(`cancelling pairing should reject with AbortError, got ${r.pairCancel.name}: ${r.pairCancel.message}`);
  if (!same(r.pairAgain, p.main) || !same(r.afterRestart, r.main)) fail("pairing or classify after a pairing cancel differ from the main thread");
}
