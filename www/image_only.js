// Image-only slide in the demo: a dropped (OME-)TIFF, whole-slide sized or not, goes to the
// package's worker as a File (CellSymphonyWorker.classifySlide: openSlide reads it slice by
// slice, so neither the file nor its level is ever held whole) → nuclei detected window by
// window at ~0.5 µm/px → with an image-only model loaded (`cellsymphony image-only`'s
// model.int8.safetensors), patches cut and classified in batches (WebGPU where the worker
// finds it, else the wasm CPU engine) → nuclei drawn over an overview level (≤ 2048 px),
// coloured by class, with a per-niche abundance heat map of one chosen type (abundance.js).
// window.cellsymphonyImageOnly = {info, detection, classes, confidence, abundance, overview}.
import { CellSymphonyWorker } from "../pkg/client.js";
import { PALETTE } from "./palette.js";
import { nicheAbundance } from "./abundance.js";

const TARGET_UM_PER_PX = 0.5; // resolves 8 µm nuclei (σ ≈ 2.8 px) and keeps whole slides quick
const OVERVIEW_PX = 2048;
const input = document.getElementById("tiff-file");
const umInput = document.getElementById("tiff-um");
const status = document.getElementById("tiff-status");
const canvas = document.getElementById("nuclei-canvas");
const modelInput = document.getElementById("tiff-model");
const legend = document.getElementById("tiff-legend");
const abundanceSelect = document.getElementById("tiff-abundance");
/** The worker every slide runs in (created on first use). */
let worker = null;
/** The image-only classifier (loaded in `worker`), once a model file is chosen. */
let model = null;
/** The last file shown and its result (re-classified when a model is loaded after it). */
let last = null;

/** 0.5/99.5 percentiles of a sample of the pixels (display stretch only). */
function stretch(pixels) {
  const step = Math.max(1, Math.floor(pixels.length / 200000));
  const sample = [];
  for (let i = 0; i < pixels.length; i += step) sample.push(pixels[i]);
  sample.sort((a, b) => a - b);
  const at = (p) => sample[Math.min(sample.length - 1, Math.floor(p / 100 * (sample.length - 1)))];
  return [at(0.5), Math.max(at(99.5), at(0.5) + 1)];
}

/** Fills each niche with the chosen class's colour, opacity = its share of the niche's nuclei. */
function drawAbundance(ctx, img, abundance, k, nClasses) {
  const { nx, ny, nicheUm, counts, totals } = abundance;
  const px = nicheUm / img.umPerPx;
  ctx.fillStyle = PALETTE[k % PALETTE.length];
  ctx.strokeStyle = "rgba(255,255,255,0.35)"; ctx.lineWidth = 1;
  for (let j = 0; j < nx * ny; j++) {
    const x = (j % nx) * px, y = Math.floor(j / nx) * px;
    ctx.strokeRect(x, y, px, px);
    if (totals[j] === 0) continue;
    ctx.globalAlpha = 0.75 * counts[j * nClasses + k] / totals[j];
    ctx.fillRect(x, y, px, px);
  }
  ctx.globalAlpha = 1;
}

function draw(r, abundance) {
  const img = r.overview, det = r.detection, classes = r.classes;
  canvas.width = img.width; canvas.height = img.height;
  canvas.style.width = "100%";
  const ctx = canvas.getContext("2d");
  const [lo, hi] = stretch(img.pixels);
  const rgba = new ImageData(img.width, img.height);
  for (let i = 0; i < img.pixels.length; i++) {
    const v = Math.max(0, Math.min(255, (img.pixels[i] - lo) / (hi - lo) * 255));
    rgba.data[4 * i] = rgba.data[4 * i + 1] = rgba.data[4 * i + 2] = v; rgba.data[4 * i + 3] = 255;
  }
  ctx.putImageData(rgba, 0, 0);
  // Nuclei were found on the detection level: draw them at their µm position on the overview.
  const [ox, oy] = img.originUm;
  const um = img.umPerPx;
  ctx.strokeStyle = "#ff3b30"; ctx.lineWidth = Math.max(1, img.width / 600);
  const radius = Math.max(1.5, det.sigmaPx * Math.SQRT2 * r.info.umPerPx / um);
  for (let i = 0; i < det.nNuclei; i++) {
    if (classes) ctx.strokeStyle = PALETTE[classes[i] % PALETTE.length];
    ctx.beginPath(); ctx.arc((det.centroidsUm[2 * i] - ox) / um, (det.centroidsUm[2 * i + 1] - oy) / um, radius, 0, 2 * Math.PI); ctx.stroke();
  }
  const k = Number(abundanceSelect.value);
  if (abundance && abundanceSelect.value !== "" && k < abundance.nClasses) drawAbundance(ctx, img, abundance, k, abundance.nClasses);
}

/** Opens `file` in the worker (a pixel size from the µm/px box when the file states none). */
async function run(file) {
  worker ??= new CellSymphonyWorker();
  const onProgress = ({ phase, done, total }) => {
    status.textContent = `${file.name}: ${phase} ${done}/${total} ${phase === "classify" ? "nuclei" : "tiles"}…`;
  };
  const opts = { name: file.name, targetUmPerPx: TARGET_UM_PER_PX, overviewMaxSide: OVERVIEW_PX, classifier: model ?? undefined };
  try {
    return await worker.classifySlide(file, opts, { onProgress });
  } catch (e) {
    const um = Number(umInput.value);
    if (!String(e.message).includes("pixel size") || !(um > 0)) throw e;
    return worker.classifySlide(file, { ...opts, umPerPx: um }, { onProgress });
  }
}

async function show(file) {
  document.body.dataset.imageOnly = "running";
  status.textContent = `reading ${file.name}…`;
  try {
    const r = await run(file);
    const { info, detection: det } = r;
    status.textContent = `${file.name}: level ${info.level} (${info.width}×${info.height} px, ${info.umPerPx.toFixed(3)} µm/px), ` +
      `${(info.fileBytesRead / 1e6).toFixed(1)} MB read of ${(info.fileBytes / 1e6).toFixed(1)} MB; ${det.nNuclei} nuclei in ${r.detectMs.toFixed(0)} ms; ` +
      `worker wasm memory ${(r.wasmMemoryBytes / 2 ** 20).toFixed(0)} MiB`;
    last = { file, r };
    showClasses();
    document.body.dataset.imageOnly = "done";
  } catch (e) {
    status.textContent = `${file.name}: ${e.message}`;
    document.body.dataset.imageOnly = "error";
  }
}

/** Legend, abundance and drawing of the last result (classes when a model was loaded). */
function showClasses() {
  const { r } = last;
  let abundance = null;
  if (model && r.classes) {
    const counts = new Array(model.classes.length).fill(0);
    for (const c of r.classes) counts[c]++;
    legend.innerHTML = model.classes.map((name, k) => `<span class="swatch" style="background:${PALETTE[k % PALETTE.length]}"></span> ${name} ${counts[k]}`).join(" · ") +
      ` (${model.device}, ${r.classifyMs.toFixed(0)} ms)`;
    const { info } = r;
    abundance = { ...nicheAbundance(r.detection.centroidsUm, r.classes, model.classes.length,
      { originUm: info.originUm, widthUm: info.width * info.umPerPx, heightUm: info.height * info.umPerPx }), nClasses: model.classes.length, names: model.classes };
    const chosen = abundanceSelect.value;
    abundanceSelect.innerHTML = `<option value="">none</option>` + model.classes.map((name, k) => `<option value="${k}">${name}</option>`).join("");
    abundanceSelect.value = chosen !== "" && Number(chosen) < model.classes.length ? chosen : "";
  }
  last.abundance = abundance;
  draw(r, abundance);
  window.cellsymphonyImageOnly = { info: r.info, detection: r.detection, classes: r.classes, confidence: r.confidence, abundance, overview: r.overview };
}

abundanceSelect.addEventListener("change", () => { if (last) draw(last.r, last.abundance); });

modelInput.addEventListener("change", async () => {
  const f = modelInput.files?.[0];
  if (!f) return;
  try {
    worker ??= new CellSymphonyWorker();
    await model?.free();
    model = await worker.loadClassifier(new Uint8Array(await f.arrayBuffer()));
    if (model.architecture !== "image_only") {
      legend.textContent = `${f.name} is a ${model.architecture} model (it reads genes); choose an image-only model (cellsymphony image-only)`;
      model = null;
      return;
    }
    legend.textContent = `${f.name}: ${model.classes.length} classes, ${model.patchSize} px patches at ${model.patchUmPerPx} µm/px`;
    if (last) await show(last.file);
  } catch (e) {
    legend.textContent = `${f.name}: ${e.message}`;
    model = null;
  }
});

input.addEventListener("change", async () => {
  const f = input.files?.[0];
  if (f) await show(f);
});
canvas.addEventListener("dragover", (e) => e.preventDefault());
canvas.addEventListener("drop", async (e) => {
  e.preventDefault();
  const f = e.dataTransfer?.files?.[0];
  if (f) await show(f);
});
