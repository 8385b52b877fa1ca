// Image-only slide in the page: the crop's DAPI TIFF bytes (no transcripts) → readTiff (the
// wasm TIFF reader) → detectNuclei with watershed (wasm) → the same nuclei and masks as the
// native `detect-nuclei --watershed` on the same file (test.sh writes nuclei/dapi.tif,
// nuclei/native.csv and nuclei/dapi_labels.npy into the bundle): identical count, every
// centroid and mask centroid within 1e-3 px (the CSV has 4 decimals), identical areas and
// label images. The same for H&E: a synthetic RGB H&E TIFF (tests/browser/synth_he.mjs, seeded)
// through readTiffRgb → detectNuclei({stain: "he", watershed: true}) vs native `--stain he`.
// Also: the level reader picks a coarser level for a larger µm/px, and bad input throws naming
// the field.
// Then the image-only model (test.sh trains a tiny one: nuclei/model.int8.safetensors) on
// patches cut in wasm (cutPatches) at the detected DAPI nuclei, through the package's
// Classifier.classifyPatches on WebGPU and on the wasm CPU engine: every nucleus gets the
// class native `detect-nuclei --model` gave it (nuclei/native_predictions.csv).
// The whole-slide path: the same TIFF as a Blob through the package worker's classifySlide
// (openSlide, window by window), and a synthetic 6000 × 6000 slide against the streamed native
// detect-nuclei --model, with the worker's wasm memory growing by less than half the level;
// and the demo's image-only panel driven as a user would (choose the model, drop the TIFF).
//   await nucleiChecks({ page, dataParam, root, log: console.log });   // throws on a failure
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

/** Runs in the page: every measurement, no assertion. */
async function inPage(data) {
  const m = await import("../pkg/cellsymphony.js");
  await m.default();
  const fetchBytes = async (name) => new Uint8Array(await (await fetch(data + "nuclei/" + name)).arrayBuffer());
  /** u32 `.npy` (format 1.x/2.x, little-endian, C order) → Uint32Array. */
  const npyU32 = (b) => {
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const v1 = b[6] === 1;
    const start = (v1 ? 10 : 12) + (v1 ? dv.getUint16(8, true) : dv.getUint32(8, true));
    return new Uint32Array(b.slice(start).buffer);
  };
  /** readTiff/readTiffRgb → detectNuclei with watershed → what node compares with native. */
  const segment = async (file, read, readOpts, stain, labelsFile) => {
    const bytes = await fetchBytes(file);
    const t0 = performance.now();
    const img = read(bytes, readOpts);
    const t1 = performance.now();
    const det = m.detectNuclei(img, { pixelSizeUm: img.umPerPx, originUm: img.originUm, stain, watershed: true });
    const t2 = performance.now();
    const native = npyU32(await fetchBytes(labelsFile));
    let labelDiff = native.length === det.labels.length ? 0 : -1;
    if (labelDiff === 0) for (let i = 0; i < native.length; i++) if (native[i] !== det.labels[i]) labelDiff++;
    return {
      img, bytes, det, t: [t1 - t0, t2 - t1], sigmaPx: det.sigmaPx, labelDiff, nLabels: det.labels.length,
      centroidsPx: Array.from(det.centroidsPx), centroidsUm: Array.from(det.centroidsUm),
      areaPx: Array.from(det.areaPx), maskCentroidsPx: Array.from(det.maskCentroidsPx),
    };
  };
  const dapi = await segment("dapi.tif", m.readTiff, { umPerPx: 0.2125, name: "dapi.tif" }, "dapi", "dapi_labels.npy");
  const he = await segment("he.tif", m.readTiffRgb, { umPerPx: 0.5, name: "he.tif" }, "he", "he_labels.npy");
  const [img, bytes] = [dapi.img, dapi.bytes];
  const failure = (f) => { try { f(); return "accepted"; } catch (e) { return String(e && e.message || e); } };
  const classified = {};
  const modelResponse = await fetch(data + "nuclei/model.int8.safetensors");
  if (modelResponse.ok) {
    const api = await import("../pkg/index.js");
    const modelBytes = new Uint8Array(await modelResponse.arrayBuffer());
    for (const device of ["webgpu", "cpu"]) {
      const clf = await api.Classifier.load(modelBytes, { device });
      const patches = await api.cutPatches(img, dapi.det.centroidsUm, { pixelSizeUm: img.umPerPx, originUm: img.originUm, patchSize: clf.patchSize, patchUmPerPx: clf.patchUmPerPx });
      const t = performance.now();
      const r = await clf.classifyPatches(patches);
      classified[device] = { backend: clf.backend, architecture: clf.architecture, ms: performance.now() - t, names: Array.from(r.classes).map((c) => clf.classes[c]) };
      if (device === "cpu") {
        // The demo's per-niche abundance (www/abundance.js) of the wasm classes.
        const { nicheAbundance } = await import("./abundance.js");
        const grid = { originUm: Array.from(img.originUm), widthUm: img.width * img.umPerPx, heightUm: img.height * img.umPerPx };
        const a = nicheAbundance(dapi.det.centroidsUm, r.classes, clf.classes.length, grid);
        classified.abundance = { grid, classNames: Array.from(clf.classes), nx: a.nx, ny: a.ny, counts: Array.from(a.counts), totals: Array.from(a.totals) };
      }
    }
    // Whole-slide path: the TIFF as a Blob into the package's worker (CellSymphonyWorker.
    // classifySlide: openSlide reads it slice by slice; detection, histogram and patches one
    // window at a time), on the crop and on a synthetic 6000 × 6000 slide (test.sh), with the
    // worker's wasm memory before and after.
    const client = await import("../pkg/client.js");
    const cs = new client.CellSymphonyWorker();
    try {
      const clf = await cs.loadClassifier(modelBytes, { device: "cpu" });
      for (const [key, file, opts] of [["crop", "dapi.tif", { umPerPx: 0.2125, name: "dapi.tif", tilePx: 256, overviewMaxSide: 4096 }],
        ["synthetic", "slide.tif", { umPerPx: 0.2125, name: "slide.tif", overviewMaxSide: 0 }]]) {
        const resp = await fetch(data + "nuclei/" + file);
        if (!resp.ok) continue;
        const blob = await resp.blob();
        const before = (await cs.memory()).wasmMemoryBytes;
        const phases = new Set();
        const r = await cs.classifySlide(blob, { ...opts, classifier: clf, batchNuclei: 1024 }, { onProgress: (p) => phases.add(p.phase) });
        classified["slide_" + key] = {
          before, after: r.wasmMemoryBytes, info: r.info, n: r.detection.nNuclei, detectMs: r.detectMs, classifyMs: r.classifyMs,
          centroidsPx: Array.from(r.detection.centroidsPx), centroidsUm: Array.from(r.detection.centroidsUm),
          names: Array.from(r.classes).map((c) => clf.classes[c]), phases: [...phases],
          overview: r.overview && { width: r.overview.width, height: r.overview.height, level: r.overview.level, pixels: r.overview.pixels.length },
        };
      }
      const mainBlob = await api.openSlide(new Blob([bytes]), { umPerPx: 0.2125, name: "dapi.tif" }).then(() => "accepted", (e) => `${e.code}: ${e.message}`);
      const s = await api.openSlide(bytes, { umPerPx: 0.2125, name: "dapi.tif" });
      classified.slideBytes = { mainBlob, n: s.detectNuclei().nNuclei, noPixelSize: failure(() => m.openSlide(bytes, { name: "dapi.tif" })), badTile: failure(() => m.openSlide(bytes, { umPerPx: 0.2125, tilePx: 4 })) };
      s.free();
    } finally {
      cs.terminate();
    }
    const gene = await fetch(data + "model.int8.safetensors");
    if (gene.ok) {
      const geneModel = await api.Classifier.load(new Uint8Array(await gene.arrayBuffer()), { device: "cpu" });
      classified.geneModelMessage = await geneModel.classifyPatches(new Float32Array(16)).then(() => "accepted", (e) => `${e.code}: ${e.message}`);
    }
  }
  const strip = ({ img, bytes, det, ...r }) => ({ ...r, width: img.width, height: img.height, level: img.level, fileBytes: bytes.length, fileBytesRead: img.fileBytesRead });
  return {
    dapi: strip(dapi), he: strip(he), classified,
    messages: {
      notTiff: failure(() => m.readTiff(new TextEncoder().encode("not a tiff at all"), { name: "drop.tif" })),
      truncated: failure(() => m.readTiff(bytes.subarray(0, 4096), { name: "cut.tif" })),
      noPixelSize: failure(() => m.readTiff(bytes, { targetUmPerPx: 0.5, name: "dapi.tif" })),
      badOption: failure(() => m.detectNuclei(img, { pixelSizeUm: 0.2125, diameter: 8 })),
      shortPixels: failure(() => m.detectNuclei({ width: img.width, height: img.height, pixels: img.pixels.subarray(1) }, { pixelSizeUm: 0.2125 })),
      grayAsHe: failure(() => m.detectNuclei(img, { pixelSizeUm: 0.2125, stain: "he" })),
      badStain: failure(() => m.detectNuclei(img, { pixelSizeUm: 0.2125, stain: "ihc" })),
      grayAsRgb: failure(() => m.readTiffRgb(bytes, { name: "dapi.tif" })),
    },
  };
}

/** Wasm `r` vs the native CSV at `csv`: counts, centroids, mask areas and centroids, labels. */
function compareWithNative(what, csv, r, log) {
  const lines = readFileSync(csv, "utf8").trim().split("\n");
  const head = lines[0].split(",");
  const col = (k) => { const i = head.indexOf(k); if (i < 0) throw new Error(`${csv} has no column ${k}`); return i; };
  const [cx, cy, ux, uy, area, mx, my] = ["x_px", "y_px", "x_um", "y_um", "area_px", "mask_x_px", "mask_y_px"].map(col);
  const native = lines.slice(1).map((l) => l.split(",").map(Number));
  const n = r.centroidsPx.length / 2;
  log(`${what}: ${r.width}×${r.height} px (level ${r.level}), ${r.fileBytesRead} of ${r.fileBytes} bytes read in ${r.t[0].toFixed(0)} ms; ` +
    `detectNuclei + watershed: ${n} nuclei in ${r.t[1].toFixed(0)} ms (σ ${r.sigmaPx.toFixed(2)} px); native: ${native.length}`);
  if (n !== native.length) throw new Error(`${what}: detectNuclei found ${n} nuclei, native detect-nuclei ${native.length}`);
  if (n < 20) throw new Error(`${what}: only ${n} nuclei detected; the check needs a real image`);
  let maxPx = 0, maxUm = 0, maxMask = 0, areaDiff = 0;
  native.forEach((row, i) => {
    maxPx = Math.max(maxPx, Math.abs(row[cx] - r.centroidsPx[2 * i]), Math.abs(row[cy] - r.centroidsPx[2 * i + 1]));
    maxUm = Math.max(maxUm, Math.abs(row[ux] - r.centroidsUm[2 * i]), Math.abs(row[uy] - r.centroidsUm[2 * i + 1]));
    maxMask = Math.max(maxMask, Math.abs(row[mx] - r.maskCentroidsPx[2 * i]), Math.abs(row[my] - r.maskCentroidsPx[2 * i + 1]));
    if (row[area] !== r.areaPx[i]) areaDiff++;
  });
  log(`${what} wasm vs native: peaks max |Δ| ${maxPx.toExponential(2)} px / ${maxUm.toExponential(2)} µm; ` +
    `mask centroids max |Δ| ${maxMask.toExponential(2)} px; areas equal ${n - areaDiff}/${n}; label pixels equal ${r.nLabels - r.labelDiff}/${r.nLabels}`);
  if (!(maxPx <= 1e-3) || !(maxUm <= 1e-3)) throw new Error(`${what}: wasm centroids differ from native by ${maxPx} px / ${maxUm} µm (tolerance 1e-3)`);
  if (!(maxMask <= 1e-3)) throw new Error(`${what}: wasm mask centroids differ from native by ${maxMask} px (tolerance 1e-3)`);
  if (areaDiff !== 0) throw new Error(`${what}: ${areaDiff} of ${n} mask areas differ from native`);
  if (r.labelDiff !== 0) throw new Error(`${what}: ${r.labelDiff < 0 ? "label image size" : `${r.labelDiff} label pixels`} differ from native`);
}

/** The worker's whole-slide path (classifySlide on a Blob) vs native: the crop's nuclei and
 * classes (native detect-nuclei --watershed --model), and on the synthetic slide the streamed
 * native detect-nuclei --model, with the worker's wasm memory growth under half the level. */
function slideChecks(r, dir, cropClasses, log) {
  const cmp = (what, got, csvPath, nativeNames) => {
    if (!got) throw new Error(`${what}: classifySlide did not run (file not served?)`);
    const lines = readFileSync(csvPath, "utf8").trim().split("\n");
    const head = lines[0].split(",");
    const [cx, cy, ux, uy] = ["x_px", "y_px", "x_um", "y_um"].map((k) => head.indexOf(k));
    const native = lines.slice(1).map((l) => l.split(",").map(Number));
    let maxPx = 0, maxUm = 0;
    native.forEach((row, i) => {
      maxPx = Math.max(maxPx, Math.abs(row[cx] - got.centroidsPx[2 * i]), Math.abs(row[cy] - got.centroidsPx[2 * i + 1]));
      maxUm = Math.max(maxUm, Math.abs(row[ux] - got.centroidsUm[2 * i]), Math.abs(row[uy] - got.centroidsUm[2 * i + 1]));
    });
    const diff = got.names.filter((n, i) => n !== nativeNames[i]).length;
    const levelBytes = got.info.width * got.info.height * 2;
    const grew = got.after - got.before;
    log(`classifySlide (${what}, worker, Blob): ${got.info.width}×${got.info.height} px level (${(levelBytes / 2 ** 20).toFixed(1)} MiB as u16, ${got.info.streamed ? "read window by window" : "small: decoded once"}), ` +
      `${got.info.fileBytesRead} of ${got.info.fileBytes} file bytes read; ${got.n} nuclei (native ${native.length}) in ${got.detectMs.toFixed(0)} ms, ` +
      `classes ${got.names.length - diff}/${nativeNames.length} equal native in ${got.classifyMs.toFixed(0)} ms; centroids max |Δ| ${maxPx.toExponential(2)} px; ` +
      `worker wasm memory ${(got.before / 2 ** 20).toFixed(1)} → ${(got.after / 2 ** 20).toFixed(1)} MiB; phases ${got.phases.join(",")}` +
      (got.overview ? `; overview level ${got.overview.level} ${got.overview.width}×${got.overview.height}` : ""));
    if (got.n !== native.length || got.names.length !== nativeNames.length) throw new Error(`${what}: classifySlide found ${got.n} nuclei / ${got.names.length} classes, native ${native.length} / ${nativeNames.length}`);
    if (!(maxPx <= 1e-3) || !(maxUm <= 1e-3)) throw new Error(`${what}: classifySlide centroids differ from native by ${maxPx} px / ${maxUm} µm (tolerance 1e-3)`);
    if (diff > 0) throw new Error(`${what}: classifySlide classes differ from native on ${diff} nuclei`);
    if (!got.phases.includes("detect") || !got.phases.includes("classify")) throw new Error(`${what}: progress phases ${got.phases}`);
    return { grew, levelBytes };
  };
  cmp("crop", r.classified.slide_crop, resolve(dir, "native.csv"), cropClasses);
  if (!r.classified.slide_crop.overview || r.classified.slide_crop.overview.pixels !== r.classified.slide_crop.overview.width * r.classified.slide_crop.overview.height) throw new Error("classifySlide returned no overview for the crop");
  const sp = resolve(dir, "slide_predictions.csv");
  if (!existsSync(sp)) {
    if (process.env.CELLSYMPHONY_REQUIRE_MODELS === "1") throw new Error(`${sp} is missing: scripts/test.sh writes it with detect-nuclei --model on the synthetic slide`);
  } else {
    const pl = readFileSync(sp, "utf8").trim().split("\n");
    const col = pl[0].split(",").indexOf("predicted");
    const { grew, levelBytes } = cmp("synthetic slide", r.classified.slide_synthetic, resolve(dir, "slide_native.csv"), pl.slice(1).map((l) => l.split(",")[col]));
    if (!r.classified.slide_synthetic.info.streamed) throw new Error("the 6000 × 6000 synthetic slide was not read window by window");
    if (!(grew < levelBytes / 2)) throw new Error(`classifySlide grew the worker's wasm memory by ${grew} bytes on a ${levelBytes}-byte level: the level is not streamed`);
  }
  const b = r.classified.slideBytes;
  log(`openSlide on the main thread: bytes → ${b.n} nuclei; a Blob → ${b.mainBlob}; no pixel size → ${b.noPixelSize}; tilePx 4 → ${b.badTile}`);
  if (b.n !== r.classified.slide_crop.n) throw new Error(`openSlide(bytes).detectNuclei found ${b.n} nuclei, the worker ${r.classified.slide_crop.n}`);
  if (!b.mainBlob.includes("worker")) throw new Error(`openSlide(Blob) on the main thread should reject naming workers, got: ${b.mainBlob}`);
  if (!b.noPixelSize.includes("umPerPx") || !b.badTile.includes("tilePx")) throw new Error(`openSlide bad input messages: ${b.noPixelSize} / ${b.badTile}`);
}

/** The demo's image-only panel as a user drives it: choose the model, then drop the crop's
 * DAPI TIFF (no pixel size in the file: the µm/px box's 0.2125 is used) → the page's worker
 * classifySlide → nuclei and classes equal native. */
async function demoChecks(page, dir, nativeClasses, log) {
  if (!(await page.$("#tiff-file"))) throw new Error("the demo page has no #tiff-file input");
  await page.setInputFiles("#tiff-model", resolve(dir, "model.int8.safetensors"));
  await page.waitForFunction(() => /classes/.test(document.getElementById("tiff-legend").textContent), null, { timeout: 60000 });
  await page.setInputFiles("#tiff-file", resolve(dir, "dapi.tif"));
  await page.waitForSelector("body[data-image-only=done], body[data-image-only=error]", { timeout: 300000 });
  const d = await page.evaluate(() => {
    const r = window.cellsymphonyImageOnly;
    return { state: document.body.dataset.imageOnly, status: document.getElementById("tiff-status").textContent,
      legend: document.getElementById("tiff-legend").textContent, n: r?.detection.nNuclei, classes: r?.classes ? Array.from(r.classes) : null,
      classNames: r?.abundance?.names ?? null, overview: r?.overview ? [r.overview.width, r.overview.height] : null };
  });
  log(`demo image-only panel: ${d.status} | ${d.legend}`);
  if (d.state !== "done") throw new Error(`the demo's image-only panel failed: ${d.status}`);
  if (d.n !== nativeClasses.length) throw new Error(`the demo found ${d.n} nuclei, native ${nativeClasses.length}`);
  const diff = d.classes ? d.classes.filter((c, i) => d.classNames[c] !== nativeClasses[i]).length : -1;
  if (diff !== 0) throw new Error(`the demo's classes differ from native on ${diff < 0 ? "all (none shown)" : diff} nuclei`);
}

export async function nucleiChecks({ page, dataParam, root, log }) {
  const dir = resolve(root, "www", dataParam, "nuclei");
  if (!existsSync(resolve(dir, "native.csv"))) {
    if (process.env.CELLSYMPHONY_REQUIRE_MODELS === "1") throw new Error(`${dir}/native.csv is missing: scripts/test.sh writes it with detect-nuclei`);
    return;
  }
  const r = await page.evaluate(inPage, dataParam);
  compareWithNative("DAPI (crop)", resolve(dir, "native.csv"), r.dapi, log);
  compareWithNative("H&E (synthetic)", resolve(dir, "he_native.csv"), r.he, log);
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
  expect("grayAsHe", ["image.pixels", "RGB"]);
  expect("badStain", ["ihc", "`dapi`", "`he`"]);
  expect("grayAsRgb", ["dapi.tif", "SamplesPerPixel"]);
  // The image-only model's classes against native `detect-nuclei --model` on the same nuclei.
  const predPath = resolve(dir, "native_predictions.csv");
  if (!existsSync(predPath)) {
    if (process.env.CELLSYMPHONY_REQUIRE_MODELS === "1") throw new Error(`${predPath} is missing: scripts/test.sh writes it with detect-nuclei --model`);
    return;
  }
  const nDapi = r.dapi.centroidsPx.length / 2;
  const pl = readFileSync(predPath, "utf8").trim().split("\n");
  const col = pl[0].split(",").indexOf("predicted");
  const nativeClasses = pl.slice(1).map((l) => l.split(",")[col]);
  if (nativeClasses.length !== nDapi) throw new Error(`native_predictions.csv has ${nativeClasses.length} rows for ${nDapi} nuclei`);
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
  slideChecks(r, dir, nativeClasses, log);
  await demoChecks(page, dir, nativeClasses, log);
  // Per-niche abundance in the page vs the same grid counted here from native's CSV.
  const ab = r.classified.abundance;
  if (!ab) throw new Error("the page computed no per-niche abundance");
  const { nicheAbundance } = await import(pathToFileURL(resolve(root, "www", "abundance.js")).href);
  const xCol = pl[0].split(",").indexOf("x_um"), yCol = pl[0].split(",").indexOf("y_um");
  const nativeCentroids = pl.slice(1).flatMap((l) => { const f = l.split(","); return [Number(f[xCol]), Number(f[yCol])]; });
  const nativeIdx = nativeClasses.map((n) => ab.classNames.indexOf(n));
  const na = nicheAbundance(nativeCentroids, nativeIdx, ab.classNames.length, ab.grid);
  const differ = ab.counts.filter((c, i) => c !== na.counts[i]).length;
  const nonEmpty = ab.totals.filter((t) => t > 0).length;
  log(`per-niche abundance (${ab.nx}×${ab.ny} niches of ${na.nicheUm.toFixed(1)} µm, ${nonEmpty} with nuclei): ${ab.counts.length - differ}/${ab.counts.length} niche×type counts equal native`);
  if (ab.totals.reduce((x, y) => x + y, 0) !== nDapi) throw new Error(`per-niche abundance counts ${ab.totals.reduce((x, y) => x + y, 0)} nuclei, not ${nDapi}`);
  if (nonEmpty < 2 || differ > 0) throw new Error(`per-niche abundance: ${differ} niche×type counts differ from native (${nonEmpty} niches with nuclei)`);
  if (r.classified.geneModelMessage !== undefined) {
    log(`classifyPatches with a gene model: ${r.classified.geneModelMessage}`);
    if (!r.classified.geneModelMessage.startsWith("input:") || !r.classified.geneModelMessage.includes("image_only")) throw new Error(`classifyPatches on a gene model should reject (input) naming image_only, got: ${r.classified.geneModelMessage}`);
  }
}
