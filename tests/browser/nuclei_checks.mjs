// Image-only slide in the page: the crop's DAPI TIFF bytes (no transcripts) → readTiff (the
// wasm TIFF reader) → detectNuclei (wasm) → the same nuclei as the native `detect-nuclei`
// on the same file (test.sh writes nuclei/dapi.tif and nuclei/native.csv into the bundle):
// identical count and every centroid within 1e-3 px (the CSV has 4 decimals). Also: the
// level reader picks a coarser level for a larger µm/px, and bad input throws naming the field.
// Then the image-only model (test.sh trains a tiny one: nuclei/model.int8.safetensors) on
// patches cut in wasm (cutPatches) at the detected nuclei, through the package's
// Classifier.classifyPatches on WebGPU and on the wasm CPU engine: every nucleus gets the
// class native `detect-nuclei --model` gave it (nuclei/native_predictions.csv).
//   await nucleiChecks({ page, dataParam, root, log: console.log });   // throws on a failure
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";

/** Runs in the page: every measurement, no assertion. */
async function inPage(data) {
  const m = await import("../pkg/cellsymphony.js");
  await m.default();
  const bytes = new Uint8Array(await (await fetch(data + "nuclei/dapi.tif")).arrayBuffer());
  const t0 = performance.now();
  const img = m.readTiff(bytes, { umPerPx: 0.2125, name: "dapi.tif" });
  const t1 = performance.now();
  const det = m.detectNuclei(img, { pixelSizeUm: img.umPerPx, originUm: img.originUm });
  const t2 = performance.now();
  const failure = (f) => { try { f(); return "accepted"; } catch (e) { return String(e && e.message || e); } };
  const classified = {};
  const modelResponse = await fetch(data + "nuclei/model.int8.safetensors");
  if (modelResponse.ok) {
    const api = await import("../pkg/index.js");
    const modelBytes = new Uint8Array(await modelResponse.arrayBuffer());
    for (const device of ["webgpu", "cpu"]) {
      const clf = await api.Classifier.load(modelBytes, { device });
      const patches = await api.cutPatches(img, det.centroidsUm, { pixelSizeUm: img.umPerPx, originUm: img.originUm, patchSize: clf.patchSize, patchUmPerPx: clf.patchUmPerPx });
      const t = performance.now();
      const r = await clf.classifyPatches(patches);
      classified[device] = { backend: clf.backend, architecture: clf.architecture, ms: performance.now() - t, names: Array.from(r.classes).map((c) => clf.classes[c]) };
    }
    const gene = await fetch(data + "model.int8.safetensors");
    if (gene.ok) {
      const geneModel = await api.Classifier.load(new Uint8Array(await gene.arrayBuffer()), { device: "cpu" });
      classified.geneModelMessage = await geneModel.classifyPatches(new Float32Array(16)).then(() => "accepted", (e) => `${e.code}: ${e.message}`);
    }
  }
  return {
    width: img.width, height: img.height, level: img.level, fileBytes: bytes.length, fileBytesRead: img.fileBytesRead,
    readMs: t1 - t0, detectMs: t2 - t1, sigmaPx: det.sigmaPx,
    centroidsPx: Array.from(det.centroidsPx), centroidsUm: Array.from(det.centroidsUm),
    classified,
    messages: {
      notTiff: failure(() => m.readTiff(new TextEncoder().encode("not a tiff at all"), { name: "drop.tif" })),
      truncated: failure(() => m.readTiff(bytes.subarray(0, 4096), { name: "cut.tif" })),
      noPixelSize: failure(() => m.readTiff(bytes, { targetUmPerPx: 0.5, name: "dapi.tif" })),
      badOption: failure(() => m.detectNuclei(img, { pixelSizeUm: 0.2125, diameter: 8 })),
      shortPixels: failure(() => m.detectNuclei({ width: img.width, height: img.height, pixels: img.pixels.subarray(1) }, { pixelSizeUm: 0.2125 })),
    },
  };
}

export async function nucleiChecks({ page, dataParam, root, log }) {
  const dir = resolve(root, "www", dataParam, "nuclei");
  if (!existsSync(resolve(dir, "native.csv"))) {
    if (process.env.CELLSYMPHONY_REQUIRE_MODELS === "1") throw new Error(`${dir}/native.csv is missing: scripts/test.sh writes it with detect-nuclei`);
    return;
  }
  const lines = readFileSync(resolve(dir, "native.csv"), "utf8").trim().split("\n");
  const head = lines[0].split(",");
  const [cx, cy, ux, uy] = ["x_px", "y_px", "x_um", "y_um"].map((k) => head.indexOf(k));
  const native = lines.slice(1).map((l) => l.split(",").map(Number));
  const r = await page.evaluate(inPage, dataParam);
  log(`readTiff: ${r.width}×${r.height} px (level ${r.level}), ${r.fileBytesRead} of ${r.fileBytes} bytes read in ${r.readMs.toFixed(0)} ms; ` +
    `detectNuclei: ${r.centroidsPx.length / 2} nuclei in ${r.detectMs.toFixed(0)} ms (σ ${r.sigmaPx.toFixed(2)} px); native: ${native.length}`);
  if (r.centroidsPx.length / 2 !== native.length) throw new Error(`detectNuclei found ${r.centroidsPx.length / 2} nuclei, native detect-nuclei ${native.length}`);
  let maxPx = 0, maxUm = 0;
  native.forEach((row, i) => {
    maxPx = Math.max(maxPx, Math.abs(row[cx] - r.centroidsPx[2 * i]), Math.abs(row[cy] - r.centroidsPx[2 * i + 1]));
    maxUm = Math.max(maxUm, Math.abs(row[ux] - r.centroidsUm[2 * i]), Math.abs(row[uy] - r.centroidsUm[2 * i + 1]));
  });
  log(`detectNuclei vs native: max |Δ| ${maxPx.toExponential(2)} px, ${maxUm.toExponential(2)} µm`);
  if (!(maxPx <= 1e-3) || !(maxUm <= 1e-3)) throw new Error(`wasm centroids differ from native by ${maxPx} px / ${maxUm} µm (tolerance 1e-3)`);
  const expect = (name, parts) => {
    const msg = r.messages[name];
    log(`bad image input (${name}): ${msg}`);
    for (const p of parts) if (!msg.includes(p)) throw new Error(`bad image input ${name}: message ${JSON.stringify(msg)} lacks ${JSON.stringify(p)}`);
  };
  expect("notTiff", ["drop.tif", "header"]);
  expect("truncated", ["cut.tif"]);
  expect("noPixelSize", ["dapi.tif", "pixel size"]);
  expect("badOption", ["diameter"]);
  expect("shortPixels", ["image.pixels", "length"]);
  // The image-only model's classes against native `detect-nuclei --model` on the same nuclei.
  const predPath = resolve(dir, "native_predictions.csv");
  if (!existsSync(predPath)) {
    if (process.env.CELLSYMPHONY_REQUIRE_MODELS === "1") throw new Error(`${predPath} is missing: scripts/test.sh writes it with detect-nuclei --model`);
    return;
  }
  const pl = readFileSync(predPath, "utf8").trim().split("\n");
  const col = pl[0].split(",").indexOf("predicted");
  const nativeClasses = pl.slice(1).map((l) => l.split(",")[col]);
  if (nativeClasses.length !== native.length) throw new Error(`native_predictions.csv has ${nativeClasses.length} rows for ${native.length} nuclei`);
  for (const device of ["webgpu", "cpu"]) {
    const c = r.classified[device];
    if (!c) throw new Error(`the image-only model did not run on ${device} (nuclei/model.int8.safetensors not served?)`);
    if (c.architecture !== "image_only") throw new Error(`nuclei/model.int8.safetensors loads as ${c.architecture}`);
    const diff = c.names.filter((n, i) => n !== nativeClasses[i]).length;
    const counts = {};
    for (const n of c.names) counts[n] = (counts[n] ?? 0) + 1;
    log(`image-only model on ${c.names.length} detected nuclei (${c.backend}): ${c.names.length - diff}/${nativeClasses.length} classes equal native, ${c.ms.toFixed(0)} ms; ${JSON.stringify(counts)}`);
    if (c.names.length !== nativeClasses.length || diff > 0) throw new Error(`image-only model (${c.backend}) differs from native detect-nuclei --model on ${diff} nuclei`);
  }
  if (r.classified.geneModelMessage !== undefined) {
    log(`classifyPatches with a gene model: ${r.classified.geneModelMessage}`);
    if (!r.classified.geneModelMessage.startsWith("input:") || !r.classified.geneModelMessage.includes("image_only")) throw new Error(`classifyPatches on a gene model should reject (input) naming image_only, got: ${r.classified.geneModelMessage}`);
  }
}
