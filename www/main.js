// cellsymphony web demo: load the int8 model and the crop's cells, classify on WebGPU
// (CPU fallback), draw cells at their centroids over the DAPI image. Classification and
// pairing run in the package's module Worker (?mode=main: on this thread, the main-thread
// mode), with a progress bar and a Cancel button.
import { CellSymphonyWorker, CellSymphonyMainThread } from "../pkg/client.js";
import { PALETTE } from "./palette.js";
import { setUpFlow } from "./flow.js";
import { loadSpatia, drawNicheMap, nicheLegend } from "./spatia.js";


// Folder of the bundle written by `cellsymphony classify --www` / `pipeline` (default data/).
const DATA = new URLSearchParams(location.search).get("data") || "data/";
const statusEl = document.getElementById("status");
function log(line) { statusEl.textContent += line + "\n"; }

const MODE = new URLSearchParams(location.search).get("mode") === "main" ? "main-thread" : "worker";
const runner = MODE === "worker" ? new CellSymphonyWorker() : new CellSymphonyMainThread();
window.__cellsymphonyProgress = []; // every progress event shown, for the browser test

/// Shows the progress bar for one long call: returns its `{signal, onProgress}` options and
/// `done()`. Classification moves the bar by cells; pairing by the Sinkhorn marginal error on a
/// log scale towards the tolerance (1e-5). Cancel aborts the call.
function track(what) {
  const box = document.getElementById("progress-box"), bar = document.getElementById("progress");
  const label = document.getElementById("progress-label"), cancel = document.getElementById("cancel");
  const ac = new AbortController();
  let firstError = null;
  box.hidden = false; cancel.disabled = false; bar.max = 1; bar.value = 0;
  label.textContent = what;
  cancel.onclick = () => { cancel.disabled = true; ac.abort(); };
  document.body.dataset.progress = "running";
  return {
    signal: ac.signal,
    onProgress: (p) => {
      window.__cellsymphonyProgress.push({ what, ...p });
      if (p.phase === "classify") {
        bar.max = p.total; bar.value = p.done;
        label.textContent = `${what}: ${p.done} / ${p.total} cells`;
      } else {
        firstError ??= p.error;
        const span = Math.log10(firstError / 1e-5);
        bar.max = 1; bar.value = span > 0 ? Math.min(1, Math.max(0, Math.log10(firstError / p.error) / span)) : 1;
        label.textContent = `${what}: Sinkhorn iteration ${p.iteration}, marginal error ${p.error.toExponential(2)}`;
      }
    },
    done: () => { box.hidden = true; cancel.onclick = null; document.body.dataset.progress = "idle"; },
  };
}

/// Runs `call(progressOptions)` under a progress bar; resolves to null when the user cancelled.
async function withProgress(what, call) {
  const t = track(what);
  try {
    return await call({ signal: t.signal, onProgress: t.onProgress });
  } catch (e) {
    if (e && e.name === "AbortError") { log(`${what}: cancelled`); return null; }
    throw e;
  } finally {
    t.done();
  }
}

async function fetchOk(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}. Run the README's main command first (it writes www/data/).`);
  return r;
}

async function webgpuAdapter() {
  if (!("gpu" in navigator)) return null;
  try {
    const a = await navigator.gpu.requestAdapter();
    if (!a) return null;
    const info = a.info || {};
    return { vendor: info.vendor || "", architecture: info.architecture || "", description: info.description || "",
      isFallbackAdapter: !!(a.isFallbackAdapter ?? info.isFallbackAdapter) };
  } catch (e) { return null; }
}

// Lasso groups and pairing result, drawn over the cells.
const lasso = { mode: null, A: [], B: [], drawing: null, pairs: null };
const GROUP_COLOURS = { A: "#00e5ff", B: "#ff9100" };

function cellPx(meta) {
  const { um_per_px, origin_um } = meta.image;
  return meta.centroids_um.map(([x, y]) => [(x - origin_um[0]) / um_per_px, (y - origin_um[1]) / um_per_px]);
}

function insidePolygon([x, y], poly) {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i], [xj, yj] = poly[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function drawOverlay(ctx, meta) {
  const px = cellPx(meta);
  for (const g of ["A", "B"]) {
    const poly = lasso.drawing && lasso.mode === g ? lasso.drawing : lasso[g];
    if (poly.length < 2) continue;
    ctx.strokeStyle = GROUP_COLOURS[g]; ctx.lineWidth = 2; ctx.setLineDash([6, 4]);
    ctx.beginPath(); poly.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y))); ctx.closePath(); ctx.stroke();
    ctx.setLineDash([]);
  }
  if (lasso.pairs) {
    ctx.strokeStyle = "rgba(255,255,255,0.55)"; ctx.lineWidth = 1;
    const { control, target, matches } = lasso.pairs;
    control.forEach((ci, k) => {
      const [x0, y0] = px[ci], [x1, y1] = px[target[matches[k]]];
      ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
    });
  }
}

function drawSignature(res) {
  const c = document.getElementById("signature");
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  const rows = [...res.topUp, ...res.topDown.slice().reverse()];
  const max = Math.max(1e-6, ...rows.map((r) => Math.abs(r.delta)));
  const h = (c.height - 20) / rows.length, mid = 190;
  ctx.font = "11px sans-serif"; ctx.textBaseline = "middle";
  ctx.fillStyle = "#ccc"; ctx.fillText("Δg (B − A), top genes", 8, 9);
  rows.forEach((r, i) => {
    const y = 20 + i * h, w = (Math.abs(r.delta) / max) * 120;
    ctx.fillStyle = r.delta >= 0 ? "#ff9100" : "#00e5ff";
    ctx.fillRect(r.delta >= 0 ? mid : mid - w, y + 2, w, h - 4);
    ctx.fillStyle = "#eee"; ctx.textAlign = "right";
    ctx.fillText(r.gene, r.delta >= 0 ? mid - 4 : mid - w - 4, y + h / 2);
    ctx.textAlign = "left";
    ctx.fillText(r.delta.toFixed(2), r.delta >= 0 ? mid + w + 3 : mid + 3, y + h / 2);
  });
}

function draw(meta, image, classes, show) {
  const canvas = document.getElementById("canvas");
  const { width, height, um_per_px, origin_um } = meta.image;
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, width, height);
  if (show.image) ctx.drawImage(image, 0, 0, width, height);
  if (show.niches) drawNicheMap(ctx, meta, show.niches);
  if (show.cells) {
    ctx.lineWidth = 1.5;
    meta.centroids_um.forEach(([x, y], i) => {
      const px = (x - origin_um[0]) / um_per_px, py = (y - origin_um[1]) / um_per_px;
      // −1: no prediction in this layer (e.g. a cell outside SPATIA's tissue regions).
      ctx.strokeStyle = classes[i] < 0 ? "#777" : PALETTE[classes[i] % PALETTE.length];
      ctx.beginPath(); ctx.arc(px, py, 6, 0, 2 * Math.PI); ctx.stroke();
    });
  }
  drawOverlay(ctx, meta);
}

function legend(names, classes) {
  const counts = new Array(names.length).fill(0);
  for (const c of classes) if (c >= 0) counts[c]++;
  const body = document.querySelector("#legend tbody");
  body.innerHTML = "";
  names.forEach((name, k) => {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td><span class="swatch" style="background:${PALETTE[k % PALETTE.length]}"></span></td>` +
      `<td>${name}</td><td class="n">${counts[k]}</td>`;
    body.appendChild(tr);
  });
  return counts;
}

async function main() {
  statusEl.textContent = "";
  const meta = await (await fetchOk(DATA + "cells.json")).json();
  const counts = new Float32Array(await (await fetchOk(DATA + "counts.f32")).arrayBuffer());
  const modelBytes = new Uint8Array(await (await fetchOk(DATA + "model.int8.safetensors")).arrayBuffer());
  const image = new Image();
  image.src = DATA + meta.image.file;
  await image.decode();

  const adapter = await webgpuAdapter();
  log(adapter ? `WebGPU adapter: ${adapter.vendor} ${adapter.architecture} ${adapter.description}` +
      (adapter.isFallbackAdapter ? " (software fallback adapter)" : "")
    : "WebGPU unavailable: using the CPU engine (WebAssembly).");
  // ?engine=webgpu|cpu forces an engine. By default WebGPU is used unless the only adapter is
  // a software fallback (e.g. SwiftShader), where the wasm CPU engine is ~10× faster.
  const forced = new URLSearchParams(location.search).get("engine");
  const useGpu = adapter !== null && (forced === "webgpu" || (forced !== "cpu" && !adapter.isFallbackAdapter));
  if (adapter && adapter.isFallbackAdapter && !useGpu) log("software WebGPU adapter: using the faster CPU engine (?engine=webgpu to override)");
  const clf = await runner.loadClassifier(modelBytes, { useGpu });
  log(`engine: ${clf.backend} (${MODE === "worker" ? "in a module Worker" : "on the main thread"})`);
  log(`model: ${clf.genes.length} genes, ${clf.classes.length} classes`);

  // `transfer: false`: the page keeps `counts` (the layers and pairing read it again).
  const t0 = performance.now();
  // On the CPU engine, chunks of a tenth of the cells (at least 128) so the bar moves on a
  // small crop too; on WebGPU the default chunk (every wasm call sets up its GPU buffers).
  const chunkCells = useGpu ? undefined : Math.max(128, Math.ceil(meta.n_cells / 10));
  const res = await withProgress("classifying", (p) => clf.classify(counts, meta.n_cells, meta.genes, { ...p, chunkCells, transfer: false }));
  const coldMs = performance.now() - t0;
  if (!res) {
    log("classification cancelled: reload the page to run it again");
    window.__cellsymphony = { cancelled: true, mode: MODE };
    document.body.dataset.status = "cancelled";
    return;
  }
  const t1 = performance.now();
  await clf.classify(counts, meta.n_cells, meta.genes, { transfer: false });
  const warmMs = performance.now() - t1;
  const classes = Array.from(res.classes);
  log(`classified ${meta.n_cells} cells: first ${coldMs.toFixed(0)} ms, warm ${warmMs.toFixed(0)} ms ` +
      `(${(meta.n_cells / warmMs * 1000).toFixed(0)} cells/s)`);

  let same = 0;
  classes.forEach((c, i) => { if (c === meta.native_predictions[i]) same++; });
  log(`agreement with the native engine (${meta.native_engine}): ${same}/${meta.n_cells}`);

  // Optional: the wasm CPU engine on the same cells, as a peer for speed and agreement.
  let cpu = null;
  if (new URLSearchParams(location.search).get("compare") === "cpu") {
    const cpuClf = await runner.loadClassifier(modelBytes, { useGpu: false });
    const t2 = performance.now();
    const cpuRes = await cpuClf.classify(counts, meta.n_cells, meta.genes, { transfer: false });
    const cpuMs = performance.now() - t2;
    const cpuClasses = Array.from(cpuRes.classes);
    const agree = cpuClasses.filter((c, i) => c === classes[i]).length;
    cpu = { backend: cpuClf.backend, ms: cpuMs, classes: cpuClasses, agreement: agree };
    log(`CPU engine (${cpuClf.backend}): ${cpuMs.toFixed(0)} ms (${(meta.n_cells / cpuMs * 1000).toFixed(0)} cells/s), ` +
        `same class as ${clf.backend.split(":")[0]} on ${agree}/${meta.n_cells}`);
  }

  // Optional layer: morphology clusters of the contrastive alignment (`cellsymphony align --www`).
  const alignment = await loadAlignment(meta);
  const layers = { class: { names: clf.classes, colours: classes } };
  if (alignment) {
    layers.cluster = { names: Array.from({ length: alignment.n_clusters }, (_, k) => `morphology cluster ${k}`),
      colours: alignment.clusters };
    const opt = document.createElement("option");
    opt.value = "cluster"; opt.textContent = "morphology cluster (contrastive alignment)";
    document.getElementById("colour-by").appendChild(opt);
    log(`alignment layer: ${alignment.n_clusters} morphology clusters (k-means fitted on the held-out cells; their ARI vs reference labels ${alignment.ari.toFixed(3)})`);
  }
  // Optional layers: the multimodal classifiers (spatial, dual-modality, multi-input) listed in
  // models.json, run on the same engine with the cells' centroids and DAPI patches.
  const models = await loadModelLayers(meta, counts, useGpu, classes.map((c) => clf.classes[c]));
  for (const m of models) {
    layers[m.name] = { names: m.classes, colours: m.colours };
    const opt = document.createElement("option");
    opt.value = m.name; opt.textContent = `${m.title} prediction`;
    document.getElementById("colour-by").appendChild(opt);
  }
  // Optional: SPATIA's hierarchy (classify with context, niche map) from the data folder's spatia/.
  const spatia = await loadSpatia(DATA, meta, log).catch((e) => { log(`SPATIA layer: ${e.message || e}`); return null; });
  const nicheBox = document.getElementById("show-niches");
  if (spatia) {
    layers.spatia = { names: spatia.names, colours: spatia.colours };
    const opt = document.createElement("option");
    opt.value = "spatia"; opt.textContent = "SPATIA, classified with context";
    document.getElementById("colour-by").appendChild(opt);
    nicheBox.disabled = false;
    nicheLegend(document.getElementById("niche-legend"), spatia.niches);
  }
  const show = { image: true, cells: true, layer: "class", niches: null };
  const redraw = () => draw(meta, image, layers[show.layer].colours, show);
  document.getElementById("show-image").onchange = (e) => { show.image = e.target.checked; redraw(); };
  document.getElementById("show-cells").onchange = (e) => { show.cells = e.target.checked; redraw(); };
  nicheBox.onchange = (e) => { show.niches = e.target.checked && spatia ? spatia.niches : null; redraw(); };
  document.getElementById("colour-by").onchange = (e) => {
    show.layer = e.target.value; redraw(); legend(layers[show.layer].names, layers[show.layer].colours);
  };
  redraw();
  const perClass = legend(clf.classes, classes);
  const evaluation = await loadEvaluation(clf.classes);
  setUpPairing(meta, counts, useGpu, redraw);
  await setUpFlow({ data: DATA, meta, counts, useGpu, runner, getPairs: () => lasso.pairs, log }).catch((e) => {
    document.getElementById("flow-status").textContent = `flow model not loaded: ${e && e.message ? e.message : e}`;
  });

  window.__cellsymphony = { backend: clf.backend, mode: MODE, adapter, classes, perClass, coldMs, warmMs,
    nCells: meta.n_cells, agreement: same, cpu, evaluation,
    models: models.map((m) => ({ name: m.name, architecture: m.architecture, nCells: m.colours.length, ms: m.ms, sameAsMain: m.sameAsMain })),
    alignment: alignment ? { nClusters: alignment.n_clusters, ari: alignment.ari, nCells: alignment.clusters.length } : null,
    spatia: spatia ? { nCells: spatia.nCells, nNiches: spatia.nNiches, sameAsNative: spatia.sameAsNative, ms: spatia.ms, levels: spatia.levels,
      nicheClusters: spatia.niches.k, drawnNiches: spatia.niches.clusters.filter((c) => c >= 0).length,
      coloured: spatia.colours.filter((c) => c >= 0).length } : null };
  document.body.dataset.status = "done";
}

/// Classifies every cell with each model of `models.json` ([{name, title, model, patches?}]:
/// file names in the data folder; `patches` is f32 [cells, S, S] as `cellsymphony classify
/// --patches-out` writes it). Missing file: no layers.
async function loadModelLayers(meta, counts, useGpu, mainNames) {
  const r = await fetch(DATA + "models.json");
  if (!r.ok) return [];
  const centroids = Float32Array.from(meta.centroids_um.flat());
  const out = [];
  for (const entry of await r.json()) {
    try {
      const bytes = new Uint8Array(await (await fetchOk(DATA + entry.model)).arrayBuffer());
      const clf = await runner.loadClassifier(bytes, { useGpu });
      const patches = entry.patches ? new Float32Array(await (await fetchOk(DATA + entry.patches)).arrayBuffer()) : undefined;
      const t0 = performance.now();
      const res = await withProgress(`${entry.title || entry.name}`, (p) =>
        clf.classify(counts, meta.n_cells, meta.genes, { centroids, patches, patchSize: clf.patchSize, transfer: false, ...p }));
      if (!res) continue;
      const ms = performance.now() - t0;
      const colours = Array.from(res.classes);
      const sameAsMain = colours.filter((c, i) => clf.classes[c] === mainNames[i]).length;
      out.push({ name: entry.name, title: entry.title || entry.name, architecture: clf.architecture, classes: clf.classes, colours, ms, sameAsMain });
      log(`${entry.title || entry.name} (${clf.architecture}${clf.patchSize ? `, ${clf.patchSize} px DAPI patches at ${clf.patchUmPerPx} µm/px` : ""}): ` +
          `${meta.n_cells} cells in ${ms.toFixed(0)} ms; same class as the gene-only model on ${sameAsMain}/${meta.n_cells}`);
    } catch (e) {
      log(`model ${entry.name}: ${e.message || e}`);
    }
  }
  return out;
}

/// The loaded model's evaluation (`model_evaluation.json`, written by `cellsymphony pipeline`): a
/// per-class precision / recall / F1 table and the confusion matrix as a heatmap table. Missing
/// file or another model's classes: the section stays hidden. Returns the rendered row counts.
async function loadEvaluation(classNames) {
  const r = await fetch(DATA + "model_evaluation.json");
  if (!r.ok) return null;
  const ev = await r.json();
  const same = ev.classes.length === classNames.length && ev.classes.every((c, i) => c === classNames[i]);
  if (!same) { log("model_evaluation.json is for another model's classes: not shown"); return null; }
  const esc = (t) => String(t).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  const f3 = (v) => v.toFixed(3);
  document.getElementById("evaluation-note").textContent =
    `${ev.evaluated_on}; ${ev.engine}. Accuracy ${f3(ev.accuracy)}, macro-F1 ${f3(ev.macro_f1)}, weighted F1 ${f3(ev.weighted_f1)}.`;
  const body = document.querySelector("#per-class tbody");
  body.innerHTML = ev.per_class.map((c, k) =>
    `<tr><td><span class="swatch" style="background:${PALETTE[k % PALETTE.length]}"></span> ${esc(c.name)}</td>` +
    `<td class="n">${f3(c.precision)}</td><td class="n">${f3(c.recall)}</td><td class="n">${f3(c.f1)}</td><td class="n">${c.support}</td></tr>`).join("");
  const table = document.getElementById("confusion");
  table.querySelector("thead").innerHTML = "<tr><th></th>" + ev.classes.map((c) => `<th class="col" title="${esc(c)}">${esc(c)}</th>`).join("") + "</tr>";
  table.querySelector("tbody").innerHTML = ev.confusion.map((row, t) => {
    const total = row.reduce((a, b) => a + b, 0);
    return `<tr><th class="row" title="${esc(ev.classes[t])}">${esc(ev.classes[t])}</th>` + row.map((n) => {
      const share = total > 0 ? n / total : 0;
      const ink = share > 0.55 ? "#000" : "#eee";
      return `<td style="background:rgba(102,204,102,${share.toFixed(3)});color:${ink}" title="${share.toFixed(2)} of the row">${n}</td>`;
    }).join("") + "</tr>";
  }).join("");
  document.getElementById("evaluation").hidden = false;
  return { perClassRows: body.rows.length, confusionRows: table.tBodies[0].rows.length, classes: ev.classes.length };
}

async function loadAlignment(meta) {
  const r = await fetch(DATA + "alignment.json");
  if (!r.ok) return null; // the layer is optional
  const a = await r.json();
  const same = a.cell_ids.length === meta.cell_ids.length && a.cell_ids.every((id, i) => id === meta.cell_ids[i]);
  if (!same) { log("alignment.json is for other cells than cells.json: layer skipped (re-run `cellsymphony align --www`)"); return null; }
  return a;
}

function setUpPairing(meta, counts, useGpu, redraw) {
  const canvas = document.getElementById("canvas");
  const status = document.getElementById("pair-status");
  const px = cellPx(meta);
  const toImage = (e) => {
    const r = canvas.getBoundingClientRect();
    return [((e.clientX - r.left) * canvas.width) / r.width, ((e.clientY - r.top) * canvas.height) / r.height];
  };
  const pairButton = document.getElementById("pair");
  const members = (g) => px.map((p, i) => (lasso[g].length > 2 && insidePolygon(p, lasso[g]) ? i : -1)).filter((i) => i >= 0);
  const describe = () => {
    const a = members("A"), b = members("B");
    status.textContent = `group A: ${a.length} cells, group B: ${b.length} cells`;
    pairButton.disabled = a.length === 0 || b.length === 0;
  };
  for (const g of ["A", "B"]) {
    const btn = document.getElementById(`lasso-${g.toLowerCase()}`);
    btn.onclick = () => {
      lasso.mode = g;
      document.querySelectorAll(".buttons button").forEach((b) => b.classList.remove("active"));
      btn.classList.add("active");
      canvas.style.cursor = "crosshair";
    };
  }
  canvas.addEventListener("pointerdown", (e) => { if (lasso.mode) { lasso.drawing = [toImage(e)]; lasso.pairs = null; } });
  canvas.addEventListener("pointermove", (e) => { if (lasso.drawing) { lasso.drawing.push(toImage(e)); redraw(); } });
  canvas.addEventListener("pointerup", () => {
    if (!lasso.drawing) return;
    lasso[lasso.mode] = lasso.drawing; lasso.drawing = null; lasso.mode = null;
    document.querySelectorAll(".buttons button").forEach((b) => b.classList.remove("active"));
    canvas.style.cursor = "";
    redraw(); describe();
  });
  pairButton.onclick = async () => {
    const control = members("A"), target = members("B");
    document.body.dataset.pairStatus = "running";
    status.textContent = `pairing ${control.length} → ${target.length} cells…`;
    try {
      const t0 = performance.now();
      pairButton.disabled = true;
      // "spatial term": SPATIA pairs within adjacent regions (λ 0.02 cost units per µm, as `flow train`).
      const spatial = document.getElementById("pair-spatial").checked
        ? { centroids: Float32Array.from(meta.centroids_um.flat()), spatialLambda: 0.02 } : {};
      const res = await withProgress("pairing", (p) => runner.pairCells(counts, meta.n_cells, meta.genes,
        Uint32Array.from(control), Uint32Array.from(target), { useGpu, ...spatial }, { ...p, transfer: false }));
      pairButton.disabled = false;
      const ms = performance.now() - t0;
      if (!res) {
        status.textContent = "pairing cancelled";
        window.__cellsymphonyPair = { cancelled: true };
        document.body.dataset.pairStatus = "cancelled";
        return;
      }
      lasso.pairs = { control, target, matches: Array.from(res.target) };
      redraw(); drawSignature(res);
      status.textContent = `${control.length} A cells paired with ${new Set(res.target).size} distinct B cells ` +
        `(${res.backend}; PCA ${res.pcaComponents}-d; ${res.iterations} iterations, marginal error ${res.error.toExponential(2)}` +
        `${res.converged ? "" : ", NOT converged"}${res.meanDistanceUm !== undefined ? `; spatial λ ${res.spatialLambda}/µm, mean pair distance ${res.meanDistanceUm.toFixed(0)} µm` : ""}) in ${ms.toFixed(0)} ms`;
      let cpu = null;
      if (new URLSearchParams(location.search).get("compare") === "cpu" && useGpu) {
        const r2 = await runner.pairCells(counts, meta.n_cells, meta.genes, Uint32Array.from(control), Uint32Array.from(target),
          { useGpu: false }, { transfer: false });
        cpu = { agreement: Array.from(r2.target).filter((t, k) => t === res.target[k]).length };
      }
      window.__cellsymphonyPair = { nA: control.length, nB: target.length, target: Array.from(res.target),
        iterations: res.iterations, marginalError: res.error, converged: res.converged, backend: res.backend,
        topUp: res.topUp, topDown: res.topDown, nDelta: res.delta.length, ms, cpu };
      document.body.dataset.pairStatus = "done";
    } catch (e) {
      pairButton.disabled = false;
      status.textContent = `error: ${e && e.message ? e.message : e}`;
      window.__cellsymphonyPair = { failure: String(e && e.message ? e.message : e) };
      document.body.dataset.pairStatus = "error";
    }
  };
}

main().catch((e) => {
  console.error(e);
  statusEl.classList.add("error");
  log(`error: ${e && e.message ? e.message : e}`);
  window.__cellsymphony = { error: String(e && e.message ? e.message : e) };
  document.body.dataset.status = "error";
});
