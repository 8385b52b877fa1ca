// cellsymphony web demo: load the int8 model and the crop's cells, classify on WebGPU
// (CPU fallback), draw cells at their centroids over the DAPI image.
import init, { Classifier } from "../pkg/cellsymphony.js";

const PALETTE = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0",
  "#f032e6", "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000",
  "#aaffc3", "#808000", "#ffd8b1", "#000075", "#808080"];

// Folder of the bundle written by `cellsymphony classify --www` / `pipeline` (default data/).
const DATA = new URLSearchParams(location.search).get("data") || "data/";
const statusEl = document.getElementById("status");
function log(line) { statusEl.textContent += line + "\n"; }

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

function draw(meta, image, classes, show) {
  const canvas = document.getElementById("canvas");
  const { width, height, um_per_px, origin_um } = meta.image;
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, width, height);
  if (show.image) ctx.drawImage(image, 0, 0, width, height);
  if (!show.cells) return;
  ctx.lineWidth = 1.5;
  meta.centroids_um.forEach(([x, y], i) => {
    const px = (x - origin_um[0]) / um_per_px, py = (y - origin_um[1]) / um_per_px;
    ctx.strokeStyle = PALETTE[classes[i] % PALETTE.length];
    ctx.beginPath(); ctx.arc(px, py, 6, 0, 2 * Math.PI); ctx.stroke();
  });
}

function legend(names, classes) {
  const counts = new Array(names.length).fill(0);
  for (const c of classes) counts[c]++;
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
  await init();
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
  const clf = await Classifier.load(modelBytes, useGpu);
  log(`engine: ${clf.backend}`);
  log(`model: ${clf.genes.length} genes, ${clf.classes.length} classes`);

  const t0 = performance.now();
  const res = await clf.classify(counts, meta.n_cells, meta.genes);
  const coldMs = performance.now() - t0;
  const t1 = performance.now();
  await clf.classify(counts, meta.n_cells, meta.genes);
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
    const cpuClf = await Classifier.load(modelBytes, false);
    const t2 = performance.now();
    const cpuRes = await cpuClf.classify(counts, meta.n_cells, meta.genes);
    const cpuMs = performance.now() - t2;
    const cpuClasses = Array.from(cpuRes.classes);
    const agree = cpuClasses.filter((c, i) => c === classes[i]).length;
    cpu = { backend: cpuClf.backend, ms: cpuMs, classes: cpuClasses, agreement: agree };
    log(`CPU engine (${cpuClf.backend}): ${cpuMs.toFixed(0)} ms (${(meta.n_cells / cpuMs * 1000).toFixed(0)} cells/s), ` +
        `same class as ${clf.backend.split(":")[0]} on ${agree}/${meta.n_cells}`);
  }

  const show = { image: true, cells: true };
  const redraw = () => draw(meta, image, classes, show);
  document.getElementById("show-image").onchange = (e) => { show.image = e.target.checked; redraw(); };
  document.getElementById("show-cells").onchange = (e) => { show.cells = e.target.checked; redraw(); };
  redraw();
  const perClass = legend(clf.classes, classes);

  window.__cellsymphony = { backend: clf.backend, adapter, classes, perClass, coldMs, warmMs,
    nCells: meta.n_cells, agreement: same, cpu };
  document.body.dataset.status = "done";
}

main().catch((e) => {
  console.error(e);
  statusEl.classList.add("error");
  log(`error: ${e && e.message ? e.message : e}`);
  window.__cellsymphony = { error: String(e && e.message ? e.message : e) };
  document.body.dataset.status = "error";
});
