// Image-only slide in the demo: a dropped (OME-)TIFF → readTiff (wasm, only the pyramid level
// needed) → detectNuclei (wasm) → nuclei drawn over the image. The hook for an image-only
// classifier: window.cellsymphonyImageOnly = {image, detection, patches(patchSize,
// patchUmPerPx)} (patches cut at the detected centroids with the native patch code).
import { readTiff, detectNuclei, cutPatches } from "../pkg/index.js";

const TARGET_UM_PER_PX = 0.5; // resolves 8 µm nuclei (σ ≈ 2.8 px) and keeps whole slides small
const input = document.getElementById("tiff-file");
const umInput = document.getElementById("tiff-um");
const status = document.getElementById("tiff-status");
const canvas = document.getElementById("nuclei-canvas");

/** 0.5/99.5 percentiles of a sample of the pixels (display stretch only). */
function stretch(pixels) {
  const step = Math.max(1, Math.floor(pixels.length / 200000));
  const sample = [];
  for (let i = 0; i < pixels.length; i += step) sample.push(pixels[i]);
  sample.sort((a, b) => a - b);
  const at = (p) => sample[Math.min(sample.length - 1, Math.floor(p / 100 * (sample.length - 1)))];
  return [at(0.5), Math.max(at(99.5), at(0.5) + 1)];
}

function draw(img, det) {
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
    ctx.beginPath(); ctx.arc(det.centroidsPx[2 * i], det.centroidsPx[2 * i + 1], r, 0, 2 * Math.PI); ctx.stroke();
  }
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
    draw(img, det);
    status.textContent = `${name}: level ${img.level} (${img.width}×${img.height} px, ${img.umPerPx.toFixed(3)} µm/px), ` +
      `${(img.fileBytesRead / 1e6).toFixed(1)} of ${(bytes.byteLength / 1e6).toFixed(1)} MB read; ${det.nNuclei} nuclei in ${ms.toFixed(0)} ms`;
    window.cellsymphonyImageOnly = {
      image: img, detection: det,
      patches: (patchSize, patchUmPerPx) => cutPatches(img, det.centroidsUm, { pixelSizeUm: img.umPerPx, originUm: img.originUm, patchSize, patchUmPerPx }),
    };
    document.body.dataset.imageOnly = "done";
  } catch (e) {
    status.textContent = `${name}: ${e.message}`;
    document.body.dataset.imageOnly = "error";
  }
}

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
