// Image-only slide in the demo: a dropped (OME-)TIFF → readTiff (wasm, only the pyramid level
// needed) → detectNuclei (wasm) → nuclei drawn over the image; with an image-only model
// loaded (`cellsymphony image-only`'s model.int8.safetensors), patches are cut at the detected
// centroids (cutPatches, the native patch code) and each nucleus is coloured by the class
// Classifier.classifyPatches predicts (WebGPU where found, else the wasm CPU engine).
// With classes, a per-niche abundance heat map of one chosen type (niche grid of abundance.js).
// window.cellsymphonyImageOnly = {image, detection, patches(patchSize, patchUmPerPx), classes, abundance}.
import { readTiff, detectNuclei, cutPatches, Classifier } from "../pkg/index.js";
import { PALETTE } from "./palette.js";
import { nicheAbundance } from "./abundance.js";

const TARGET_UM_PER_PX = 0.5; // resolves 8 µm nuclei (σ ≈ 2.8 px) and keeps whole slides small
const input = document.getElementById("tiff-file");
const umInput = document.getElementById("tiff-um");
const status = document.getElementById("tiff-status");
const canvas = document.getElementById("nuclei-canvas");
const modelInput = document.getElementById("tiff-model");
const legend = document.getElementById("tiff-legend");
const abundanceSelect = document.getElementById("tiff-abundance");
/** The image-only classifier, once a model file is chosen. */
let model = null;
/** The last image shown and its nuclei (re-classified when a model is loaded after it). */
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

function draw(img, det, classes, abundance) {
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
  ctx.strokeStyle = "#ff3b30"; ctx.lineWidth = Math.max(1, img.width / 600);
  const r = Math.max(2, det.sigmaPx * Math.SQRT2);
  for (let i = 0; i < det.nNuclei; i++) {
    if (classes) ctx.strokeStyle = PALETTE[classes[i] % PALETTE.length];
    ctx.beginPath(); ctx.arc(det.centroidsPx[2 * i], det.centroidsPx[2 * i + 1], r, 0, 2 * Math.PI); ctx.stroke();
  }
  const k = Number(abundanceSelect.value);
  if (abundance && abundanceSelect.value !== "" && k < abundance.nClasses) drawAbundance(ctx, img, abundance, k, abundance.nClasses);
}

async function show(bytes, name) {
  document.body.dataset.imageOnly = "running";
  status.textContent = `reading ${name}…`;
  try {
    const um = Number(umInput.value);
    let img;
    try {
      img = await readTiff(bytes, { name, targetUmPerPx: TARGET_UM_PER_PX });
    } catch (e) {
      if (!String(e.message).includes("pixel size") || !(um > 0)) throw e;
      img = await readTiff(bytes, { name, umPerPx: um, targetUmPerPx: TARGET_UM_PER_PX });
    }
    const t0 = performance.now();
    const det = await detectNuclei(img, { pixelSizeUm: img.umPerPx, originUm: img.originUm });
    const ms = performance.now() - t0;
    status.textContent = `${name}: level ${img.level} (${img.width}×${img.height} px, ${img.umPerPx.toFixed(3)} µm/px), ` +
      `${(img.fileBytesRead / 1e6).toFixed(1)} of ${(bytes.byteLength / 1e6).toFixed(1)} MB read; ${det.nNuclei} nuclei in ${ms.toFixed(0)} ms`;
    last = { img, det, name };
    await classifyShown();
    document.body.dataset.imageOnly = "done";
  } catch (e) {
    status.textContent = `${name}: ${e.message}`;
    document.body.dataset.imageOnly = "error";
  }
}

/** Draws the last image's nuclei, coloured by the image-only model's classes when one is loaded. */
async function classifyShown() {
  const { img, det } = last;
  const patches = (patchSize, patchUmPerPx) => cutPatches(img, det.centroidsUm, { pixelSizeUm: img.umPerPx, originUm: img.originUm, patchSize, patchUmPerPx });
  let classes = null;
  let abundance = null;
  if (model) {
    const t0 = performance.now();
    classes = (await model.classifyPatches(await patches(model.patchSize, model.patchUmPerPx))).classes;
    const counts = new Array(model.classes.length).fill(0);
    for (const c of classes) counts[c]++;
    legend.innerHTML = model.classes.map((name, k) => `<span class="swatch" style="background:${PALETTE[k % PALETTE.length]}"></span> ${name} ${counts[k]}`).join(" · ") +
      ` (${model.device}, ${(performance.now() - t0).toFixed(0)} ms)`;
    abundance = { ...nicheAbundance(det.centroidsUm, classes, model.classes.length,
      { originUm: img.originUm, widthUm: img.width * img.umPerPx, heightUm: img.height * img.umPerPx }), nClasses: model.classes.length, names: model.classes };
    const chosen = abundanceSelect.value;
    abundanceSelect.innerHTML = `<option value="">none</option>` + model.classes.map((name, k) => `<option value="${k}">${name}</option>`).join("");
    abundanceSelect.value = chosen !== "" && Number(chosen) < model.classes.length ? chosen : "";
  }
  last.classes = classes; last.abundance = abundance;
  draw(img, det, classes, abundance);
  window.cellsymphonyImageOnly = { image: img, detection: det, patches, classes, abundance };
}

abundanceSelect.addEventListener("change", () => { if (last) draw(last.img, last.det, last.classes, last.abundance); });

modelInput.addEventListener("change", async () => {
  const f = modelInput.files?.[0];
  if (!f) return;
  try {
    model = await Classifier.load(new Uint8Array(await f.arrayBuffer()));
    if (model.architecture !== "image_only") {
      legend.textContent = `${f.name} is a ${model.architecture} model (it reads genes); choose an image-only model (cellsymphony image-only)`;
      model = null;
      return;
    }
    legend.textContent = `${f.name}: ${model.classes.length} classes, ${model.patchSize} px patches at ${model.patchUmPerPx} µm/px`;
    if (last) await classifyShown();
  } catch (e) {
    legend.textContent = `${f.name}: ${e.message}`;
    model = null;
  }
});

input.addEventListener("change", async () => {
  const f = input.files?.[0];
  if (f) await show(new Uint8Array(await f.arrayBuffer()), f.name);
});
canvas.addEventListener("dragover", (e) => e.preventDefault());
canvas.addEventListener("drop", async (e) => {
  e.preventDefault();
  const f = e.dataTransfer?.files?.[0];
  if (f) await show(new Uint8Array(await f.arrayBuffer()), f.name);
});
