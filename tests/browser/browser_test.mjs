// Headless-Chromium test of the npm package: serves the repo on 127.0.0.1, opens www/ with a
// web bundle, waits for classification, asserts the browser's classes equal the native
// engine's, reports WebGPU vs CPU fallback, saves a screenshot.
//   node tests/browser/browser_test.mjs --data ../out/test/www-data/ --screenshot out/test/screenshot.png
import { readFileSync, mkdirSync, existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { workerChecks } from "./worker_checks.mjs";
import { boundaryChecks } from "./boundary_checks.mjs";
import { nucleiChecks } from "./nuclei_checks.mjs";
import { flowChecks } from "./flow_checks.mjs";
import { spatiaChecks } from "./spatia_checks.mjs";
import { launchChromium, playwrightChromium, serveStatic } from "./launch.mjs";

playwrightChromium(); // exits with what to run when playwright-core is missing

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) =>
  a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc, []));
const root = resolve(dirname(new URL(import.meta.url).pathname), "../..");
const dataParam = args.data || "data/";
const screenshot = resolve(root, args.screenshot || "out/test/screenshot.png");
const timeoutMs = Number(args.timeout || 600000); // SwiftShader runs the multimodal layers for minutes on a loaded machine

const server = await serveStatic(root, "www/index.html");
let browser;
let failed = 0;
try {
  browser = await launchChromium();
  const page = await browser.newPage({ viewport: { width: 1560, height: 1040 } });
  const consoleLines = [];
  page.on("console", (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`[pageerror] ${e.message}`));
  const url = `${server.base}www/index.html?engine=webgpu&compare=cpu&data=${encodeURIComponent(dataParam)}`;
  const t0 = Date.now();
  await page.goto(url);
  await page.waitForSelector("body[data-status=done], body[data-status=error]", { timeout: timeoutMs });
  const result = await page.evaluate(() => window.__cellsymphony);
  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`screenshot: ${screenshot}`);
  if (result.error) {
    console.error(consoleLines.join("\n"));
    throw new Error(`page reported an error: ${result.error}`);
  }
  const bundle = JSON.parse(readFileSync(resolve(root, "www", dataParam, "cells.json"), "utf8"));
  const onGpu = result.backend.startsWith("webgpu");
  console.log(`browser engine: ${result.backend}` + (onGpu ? "" : "  (CPU FALLBACK: WebGPU was not available)"));
  if (result.adapter) console.log(`adapter: ${JSON.stringify(result.adapter)}`);
  console.log(`cells: ${result.nCells}, first run ${result.coldMs.toFixed(0)} ms, warm ${result.warmMs.toFixed(0)} ms, ` +
    `${(result.nCells / result.warmMs * 1000).toFixed(0)} cells/s in the browser; page done in ${Date.now() - t0} ms`);
  let mismatches = [];
  result.classes.forEach((c, i) => { if (c !== bundle.native_predictions[i]) mismatches.push(i); });
  console.log(`native engine: ${bundle.native_engine}`);
  console.log(`agreement with native predictions: ${result.nCells - mismatches.length}/${result.nCells}`);
  if (result.classes.length !== bundle.n_cells) throw new Error(`browser classified ${result.classes.length} cells, expected ${bundle.n_cells}`);
  if (mismatches.length > 0) throw new Error(`browser and native classes differ on ${mismatches.length} cells (first: ${mismatches.slice(0, 10)})`);
  if (result.cpu) {
    console.log(`browser CPU engine (${result.cpu.backend}): ${result.cpu.ms.toFixed(0)} ms, ` +
      `${(result.nCells / result.cpu.ms * 1000).toFixed(0)} cells/s; same class as the page's engine on ${result.cpu.agreement}/${result.nCells}`);
    const cpuMismatch = result.cpu.classes.filter((c, i) => c !== bundle.native_predictions[i]).length;
    if (cpuMismatch > 0) throw new Error(`browser CPU engine differs from native predictions on ${cpuMismatch} cells`);
  }
  // The model's evaluation (per-class table + confusion heatmap): present when the bundle has
  // model_evaluation.json (`cellsymphony pipeline` writes it); one row per class in both tables.
  if (existsSync(resolve(root, "www", dataParam, "model_evaluation.json"))) {
    const ev = result.evaluation;
    const k = bundle.classes.length;
    if (!ev || ev.perClassRows !== k || ev.confusionRows !== k) throw new Error(`evaluation tables: ${JSON.stringify(ev)}, expected ${k} rows each`);
    const shown = await page.locator("#per-class tbody tr").count();
    if (shown !== k || !(await page.locator("#confusion").isVisible())) throw new Error(`evaluation section: ${shown} per-class rows visible, expected ${k}`);
    console.log(`evaluation tables: ${k} classes (per-class P/R/F1 and confusion matrix)`);
  }
  // Multimodal model layers: present when the bundle has models.json (test.sh writes it).
  const modelsJson = resolve(root, "www", dataParam, "models.json");
  if (existsSync(modelsJson)) {
    const listed = JSON.parse(readFileSync(modelsJson, "utf8"));
    const got = result.models || [];
    for (const entry of listed) {
      const m = got.find((x) => x.name === entry.name);
      if (!m) throw new Error(`models.json lists ${entry.name} but the page did not add its layer:\n${consoleLines.join("\n")}`);
      if (m.architecture !== entry.name || m.nCells !== result.nCells) throw new Error(`${entry.name} layer: architecture ${m.architecture}, ${m.nCells} cells`);
      console.log(`page layer ${entry.name}: ${m.nCells} cells in ${m.ms.toFixed(0)} ms; same class as the gene-only model on ${m.sameAsMain}/${m.nCells}`);
    }
    await page.selectOption("#colour-by", listed[listed.length - 1].name);
    await page.screenshot({ path: screenshot.replace(/\.png$/, "-multimodal.png"), fullPage: true });
    await page.selectOption("#colour-by", "class");
  }
  // Contrastive-alignment layer: present when the bundle has alignment.json (test.sh writes it).
  if (existsSync(resolve(root, "www", dataParam, "alignment.json"))) {
    if (!result.alignment) throw new Error("alignment.json is in the bundle but the page did not load the layer");
    if (result.alignment.nCells !== result.nCells) throw new Error(`alignment layer has ${result.alignment.nCells} cells, expected ${result.nCells}`);
    await page.selectOption("#colour-by", "cluster");
    const rows = await page.$$eval("#legend tbody tr", (trs) => trs.length);
    if (rows !== result.alignment.nClusters) throw new Error(`legend shows ${rows} rows for ${result.alignment.nClusters} morphology clusters`);
    await page.screenshot({ path: screenshot.replace(/\.png$/, "-alignment.png"), fullPage: true });
    await page.selectOption("#colour-by", "class");
    console.log(`alignment layer: ${result.alignment.nClusters} morphology clusters over ${result.alignment.nCells} cells (ARI ${result.alignment.ari.toFixed(3)})`);
  }
  // SPATIA's layers in the demo: present when the bundle has spatia/ (test.sh writes it). The page
  // classifies with context (same class as native on every SPATIA cell), colours cells by it, and
  // draws the niche map (every niche with a cluster); screenshot with the niche map on.
  if (existsSync(resolve(root, "www", dataParam, "spatia", "reference.json"))) {
    const ref = JSON.parse(readFileSync(resolve(root, "www", dataParam, "spatia", "reference.json"), "utf8"));
    const sp = result.spatia;
    if (!sp) throw new Error(`spatia/ is in the bundle but the page did not load SPATIA's layers:\n${consoleLines.join("\n")}`);
    if (sp.nCells !== ref.n_cells || sp.coloured !== ref.n_cells) throw new Error(`SPATIA layer: ${sp.coloured} cells coloured, ${sp.nCells} classified, expected ${ref.n_cells}`);
    if (sp.sameAsNative !== ref.n_cells) throw new Error(`SPATIA layer: ${ref.n_cells - sp.sameAsNative} cells differ from native`);
    const clustered = ref.niche_clusters.filter((c) => c >= 0).length;
    if (sp.nNiches !== ref.n_niches || sp.drawnNiches !== clustered) throw new Error(`niche map: ${sp.drawnNiches} niches drawn, expected ${clustered} of ${ref.n_niches}`);
    await page.check("#show-niches");
    await page.selectOption("#colour-by", "spatia");
    const legendRows = await page.$$eval("#legend tbody tr", (trs) => trs.length);
    if (legendRows !== ref.class_names.length) throw new Error(`SPATIA legend shows ${legendRows} rows for ${ref.class_names.length} classes`);
    await page.screenshot({ path: screenshot.replace(/\.png$/, "-niche-map.png"), fullPage: true });
    await page.uncheck("#show-niches");
    await page.selectOption("#colour-by", "class");
    // Checking the box scrolled the page (it sits below the fold at this viewport): the lasso
    // below draws at the canvas's on-screen box, so scroll back.
    await page.evaluate(() => window.scrollTo(0, 0));
    console.log(`page SPATIA layers (${sp.levels}): ${sp.nCells} cells classified with context in ${sp.ms.toFixed(0)} ms, same as native on ${sp.sameAsNative}; ` +
      `niche map ${sp.drawnNiches}/${sp.nNiches} niches in ${sp.nicheClusters} clusters`);
  } else if (process.env.CELLSYMPHONY_REQUIRE_MODELS === "1") {
    throw new Error("spatia/reference.json is missing from the bundle: scripts/test.sh writes it with `spatia classify --www`");
  }
  // The multimodal classifiers, int8, on the page's engines with the cells' centroids and
  // nucleus-centred DAPI patches: spatial (centroid token), dual-modality (ViT morphology
  // token), multi-input (both + relative attention bias). Classes must equal the native CPU
  // engine's on every cell, on WebGPU and on the wasm CPU engine.
  for (const name of ["spatial", "dual_modality", "multi_input"]) {
    const modelPath = resolve(root, "www", dataParam, `${name}.int8.safetensors`);
    if (!existsSync(modelPath)) {
      if (process.env.CELLSYMPHONY_REQUIRE_MODELS === "1") throw new Error(`${modelPath} is missing: scripts/test.sh exports it from a short benchmark run`);
      continue;
    }
    const csv = readFileSync(resolve(root, "www", dataParam, `${name}_predictions.csv`), "utf8").trim().split("\n");
    const col = csv[0].split(",").indexOf("predicted");
    const native = csv.slice(1).map((l) => l.split(",")[col]);
    const sp = await page.evaluate(async ([data, name]) => {
      const m = await import("../pkg/cellsymphony.js"); await m.default();
      const meta = await (await fetch(data + "cells.json")).json();
      const counts = new Float32Array(await (await fetch(data + "counts.f32")).arrayBuffer());
      const bytes = new Uint8Array(await (await fetch(data + `${name}.int8.safetensors`)).arrayBuffer());
      const centroids = Float32Array.from(meta.centroids_um.flat());
      const probe = await m.Classifier.load(bytes, false);
      const patchSize = probe.patchSize;
      const patches = patchSize ? new Float32Array(await (await fetch(data + `${name}_patches.f32`)).arrayBuffer()) : undefined;
      const out = { architecture: probe.architecture, patchSize, needsCentroids: probe.needsCentroids };
      for (const gpu of [true, false]) {
        const clf = await m.Classifier.load(bytes, gpu);
        const t0 = performance.now();
        const r = await clf.classify(counts, meta.n_cells, meta.genes, centroids, patches, patchSize);
        out[gpu ? "gpu" : "cpu"] = { backend: clf.backend, ms: performance.now() - t0, names: Array.from(r.classes).map((c) => clf.classes[c]) };
      }
      const reject = async (...args) => {
        try { await probe.classify(counts, meta.n_cells, meta.genes, ...args); return null; } catch (e) { return String(e.message || e); }
      };
      out.noCentroids = probe.needsCentroids ? await reject(undefined, patches, patchSize) : "n/a";
      out.noPatches = patchSize ? await reject(centroids) : "n/a";
      out.wrongPatchSize = patchSize ? await reject(centroids, patches.subarray(0, meta.n_cells * 4), 2) : "n/a";
      return out;
    }, [dataParam, name]);
    if (sp.architecture !== name) throw new Error(`${name}.int8.safetensors loads as architecture ${sp.architecture}`);
    for (const key of ["gpu", "cpu"]) {
      const r = sp[key];
      const diff = r.names.filter((c, i) => c !== native[i]).length;
      console.log(`${name} classifier in the browser (${r.backend}${sp.patchSize ? `, ${sp.patchSize} px patches` : ""}): ${r.names.length - diff}/${native.length} cells equal native, ${(native.length / r.ms * 1000).toFixed(0)} cells/s`);
      if (r.names.length !== native.length || diff > 0) throw new Error(`${name} classifier (${r.backend}) differs from native on ${diff} cells`);
    }
    if (sp.noCentroids !== "n/a" && !(sp.noCentroids || "").includes("centroid")) throw new Error(`${name} model without centroids should reject naming them, got: ${sp.noCentroids}`);
    if (sp.noPatches !== "n/a" && !(sp.noPatches || "").includes("patches")) throw new Error(`${name} model without patches should reject naming them, got: ${sp.noPatches}`);
    if (sp.wrongPatchSize !== "n/a" && !(sp.wrongPatchSize || "").includes("patchSize")) throw new Error(`${name} model with 2 px patches should reject naming patchSize, got: ${sp.wrongPatchSize}`);
  }
  // The input contract in the browser: a model trained on pbmc68k_reduced's scaled X (values
  // below zero; the file records `as_stored`) classifies the same X with the native CPU
  // engine's classes on WebGPU and on the wasm CPU engine (test.sh writes scaled_x/).
  const scaledDir = resolve(root, "www", dataParam, "scaled_x");
  if (existsSync(resolve(scaledDir, "model.int8.safetensors"))) {
    const csv = readFileSync(resolve(scaledDir, "predictions.csv"), "utf8").trim().split("\n");
    const col = csv[0].split(",").indexOf("predicted");
    const native = csv.slice(1).map((l) => l.split(",")[col]);
    const sx = await page.evaluate(async (data) => {
      const m = await import("../pkg/cellsymphony.js"); await m.default();
      const dir = data + "scaled_x/";
      const bytes = new Uint8Array(await (await fetch(dir + "model.int8.safetensors")).arrayBuffer());
      const x = new Float32Array(await (await fetch(dir + "x.f32")).arrayBuffer());
      const genes = await (await fetch(dir + "genes.json")).json();
      const out = { negative: x.some((v) => v < 0) };
      for (const gpu of [true, false]) {
        const clf = await m.Classifier.load(bytes, gpu);
        const r = await clf.classify(x, x.length / genes.length, genes);
        out[gpu ? "gpu" : "cpu"] = { backend: clf.backend, names: Array.from(r.classes).map((c) => clf.classes[c]) };
      }
      return out;
    }, dataParam);
    if (!sx.negative) throw new Error("scaled_x/x.f32 has no negative values: it is not the scaled X");
    for (const key of ["gpu", "cpu"]) {
      const r = sx[key];
      const diff = r.names.filter((c, i) => c !== native[i]).length;
      console.log(`scaled-X model (as_stored) in the browser (${r.backend}): ${r.names.length - diff}/${native.length} cells equal native`);
      if (r.names.length !== native.length || diff > 0) throw new Error(`scaled-X model (${r.backend}) differs from native on ${diff} cells`);
    }
  } else if (process.env.CELLSYMPHONY_REQUIRE_MODELS === "1") {
    throw new Error(`${scaledDir}/model.int8.safetensors is missing: scripts/test.sh writes it from a short pbmc68k_reduced benchmark`);
  }
  // Gene tokens: a model whose genes are tokens (64 of the crop's genes, flash attention) gives
  // the native CPU engine's classes on every crop cell, on WebGPU and on the wasm CPU engine
  // (test.sh writes gene_tokens/).
  const geneTokDir = resolve(root, "www", dataParam, "gene_tokens");
  if (existsSync(resolve(geneTokDir, "model.int8.safetensors"))) {
    const csv = readFileSync(resolve(geneTokDir, "predictions.csv"), "utf8").trim().split("\n");
    const col = csv[0].split(",").indexOf("predicted");
    const native = csv.slice(1).map((l) => l.split(",")[col]);
    const gt = await page.evaluate(async (data) => {
      const m = await import("../pkg/cellsymphony.js"); await m.default();
      const meta = await (await fetch(data + "cells.json")).json();
      const counts = new Float32Array(await (await fetch(data + "counts.f32")).arrayBuffer());
      const bytes = new Uint8Array(await (await fetch(data + "gene_tokens/model.int8.safetensors")).arrayBuffer());
      const out = {};
      for (const gpu of [true, false]) {
        const clf = await m.Classifier.load(bytes, gpu);
        const t0 = performance.now();
        const r = await clf.classify(counts, meta.n_cells, meta.genes);
        out[gpu ? "gpu" : "cpu"] = { backend: clf.backend, ms: performance.now() - t0, architecture: clf.architecture, names: Array.from(r.classes).map((c) => clf.classes[c]) };
      }
      return out;
    }, dataParam);
    for (const key of ["gpu", "cpu"]) {
      const r = gt[key];
      const diff = r.names.filter((c, i) => c !== native[i]).length;
      console.log(`gene-token model in the browser (${r.backend}, architecture ${r.architecture}): ${r.names.length - diff}/${native.length} cells equal native, ${(native.length / r.ms * 1000).toFixed(0)} cells/s`);
      if (r.names.length !== native.length || diff > 0) throw new Error(`gene-token model (${r.backend}) differs from native on ${diff} cells`);
    }
  } else if (process.env.CELLSYMPHONY_REQUIRE_MODELS === "1") {
    throw new Error(`${geneTokDir}/model.int8.safetensors is missing: scripts/test.sh writes it from a short gene-token benchmark`);
  }
  // Input API: CSR input gives the dense input's classes, and bad input rejects with messages
  // that name the array, element and value (CPU engine, same wasm module as the page).
  const api = await page.evaluate(async (data) => {
    const m = await import("../pkg/cellsymphony.js"); await m.default();
    const meta = await (await fetch(data + "cells.json")).json();
    const counts = new Float32Array(await (await fetch(data + "counts.f32")).arrayBuffer());
    const model = new Uint8Array(await (await fetch(data + "model.int8.safetensors")).arrayBuffer());
    const clf = await m.Classifier.load(model, false);
    const n = meta.n_cells, genes = meta.genes, g = genes.length;
    const centroids = new Float32Array(meta.centroids_um.flat());
    const dense = Array.from((await clf.classify(counts, n, genes, centroids)).classes);
    const indptr = [0], indices = [], values = [];
    for (let c = 0; c < n; c++) {
      for (let j = g - 1; j >= 0; j--) { const v = counts[c * g + j]; if (v !== 0) { indices.push(j); values.push(v); } }
      indptr.push(values.length);
    }
    const csr = () => [new Uint32Array(indptr), new Uint32Array(indices), new Float32Array(values)];
    const csrClasses = Array.from((await clf.classifyCsr(...csr(), n, genes, centroids)).classes);
    const failure = async (f) => { try { await f(); return "accepted"; } catch (e) { return String(e && e.message || e); } };
    const nan = counts.slice(); nan[3 * g + 5] = NaN;
    const [ip, ix, dv] = csr(); dv[7] = -1;
    const renamed = genes.map((name, j) => (j < 12 ? `RENAMED_${j}` : name));
    const messages = {
      nan: await failure(() => clf.classify(nan, n, genes)),
      shortIndptr: await failure(() => clf.classifyCsr(new Uint32Array(indptr.slice(1)), ...csr().slice(1), n, genes)),
      negative: await failure(() => clf.classifyCsr(ip, ix, dv, n, genes)),
      missingGenes: await failure(() => clf.classify(counts, n, renamed)),
      centroids: await failure(() => clf.classify(counts, n, genes, centroids.subarray(2))),
      patchSize: await failure(() => clf.classify(counts, n, genes, centroids, new Float32Array(n * 4), null)),
      length: await failure(() => clf.classify(counts.subarray(1), n, genes)),
    };
    return { dense, csrClasses, messages, nanGene: genes[5], negGene: genes[indices[7]], nCells: n, nGenes: g };
  }, dataParam);
  const csrMismatch = api.csrClasses.filter((c, i) => c !== api.dense[i]).length;
  console.log(`classifyCsr: same classes as classify on ${api.nCells - csrMismatch}/${api.nCells} cells`);
  if (api.csrClasses.length !== api.nCells || csrMismatch > 0) throw new Error(`classifyCsr differs from classify on ${csrMismatch} cells`);
  const g = api.nGenes;
  const expectMessage = (name, parts) => {
    const msg = api.messages[name];
    console.log(`bad input (${name}): ${msg}`);
    for (const p of parts) if (!msg.includes(p)) throw new Error(`bad input ${name}: message ${JSON.stringify(msg)} lacks ${JSON.stringify(p)}`);
  };
  expectMessage("nan", [`counts[${3 * g + 5}] (cell 3, gene ${JSON.stringify(api.nanGene)}) is NaN`]);
  expectMessage("shortIndptr", [`indptr has length ${api.nCells}, expected n_cells + 1 = ${api.nCells + 1}`]);
  expectMessage("negative", ["data[7] (cell", `gene ${JSON.stringify(api.negGene)}) is -1`]);
  expectMessage("missingGenes", ["12 genes of the model's panel", "are missing from the input"]);
  expectMessage("centroids", [`centroids has length ${2 * api.nCells - 2}`]);
  expectMessage("patchSize", ["without patchSize"]);
  expectMessage("length", [`counts has length ${api.nCells * g - 1}`]);

  await boundaryChecks(page, dataParam);

  // Xenium files dropped into the page: the bundle's mex/ folder (features.tsv.gz,
  // barcodes.tsv.gz, matrix.mtx.gz) and cells.csv.gz, read from bytes with the native readers'
  // parsers, classified through classifyCsr: the page's classes for every cell.
  if (!existsSync(resolve(root, "www", dataParam, "mex", "matrix.mtx.gz"))) throw new Error("the bundle has no mex/ folder (cellsymphony pipeline writes it)");
  const files = await page.evaluate(async (data) => {
    const m = await import("../pkg/cellsymphony.js"); await m.default();
    const bytes = async (f) => new Uint8Array(await (await fetch(data + f)).arrayBuffer());
    const [features, barcodes, matrix, cells] = await Promise.all(
      ["mex/features.tsv.gz", "mex/barcodes.tsv.gz", "mex/matrix.mtx.gz", "cells.csv.gz"].map(bytes));
    const meta = await (await fetch(data + "cells.json")).json();
    const clf = await m.Classifier.load(await bytes("model.int8.safetensors"), false);
    const t0 = performance.now();
    const mex = m.readXeniumMex(features, barcodes, matrix, cells);
    const readMs = performance.now() - t0;
    const res = await clf.classifyCsr(mex.indptr, mex.indices, mex.data, mex.nCells, mex.genes, mex.centroidsUm);
    const xy = m.readXeniumCells(cells, mex.cellIds);
    const maxCentroidDiff = Math.max(...meta.centroids_um.flat().map((v, i) => Math.abs(v - mex.centroidsUm[i])));
    const failure = (f) => { try { f(); return "accepted"; } catch (e) { return String(e && e.message || e); } };
    const csv = "cell_id,overlaps_nucleus,feature_name,x_location,y_location,qv\n" +
      "7,1,EPCAM,1,2,30\n7,1,EPCAM,3,4,30\n7,0,KRT7,5,6,30\n9,1,KRT7,1,1,30\n-1,0,EPCAM,0,0,30\n8,1,EPCAM,0,0,5\n";
    const tx = m.readXeniumTranscripts(new TextEncoder().encode(csv), 20, "drop.csv");
    return {
      classes: Array.from(res.classes), cellIds: mex.cellIds, sameIds: JSON.stringify(mex.cellIds) === JSON.stringify(meta.cell_ids),
      sameGenes: JSON.stringify(mex.genes) === JSON.stringify(meta.genes), nnz: mex.data.length, readMs, maxCentroidDiff,
      sameXy: xy.length === mex.centroidsUm.length && xy.every((v, i) => v === mex.centroidsUm[i]),
      tx: { cellIds: tx.cellIds, genes: tx.genes, counts: Array.from(tx.counts), centroids: Array.from(tx.centroidsUm) },
      messages: {
        truncated: failure(() => m.readXeniumMex(features, barcodes, matrix.subarray(0, matrix.length >> 1))),
        badLine: failure(() => m.readXeniumMex(features, barcodes, new TextEncoder().encode(
          "%%MatrixMarket matrix coordinate integer general\n" + `${mex.nGenes} ${mex.nCells} 1\n1 1 two\n`))),
        badCsv: failure(() => m.readXeniumTranscripts(new TextEncoder().encode(csv + "9,1,KRT7,1,1,abc\n"), 20, "drop.csv")),
        missingCells: failure(() => m.readXeniumCells(cells, ["no-such-cell"])),
      },
    };
  }, dataParam);
  const fileMismatch = files.classes.filter((c, i) => c !== result.classes[i]).length;
  console.log(`readXeniumMex: ${files.cellIds.length} cells, ${files.nnz} stored counts read in ${files.readMs.toFixed(0)} ms; ` +
    `classifyCsr gives the page's class on ${files.classes.length - fileMismatch}/${result.nCells} cells`);
  if (!files.sameIds || !files.sameGenes) throw new Error("readXeniumMex cells or genes differ from the bundle's (order included)");
  if (files.classes.length !== result.nCells || fileMismatch > 0) throw new Error(`classes from the MEX files differ from the page's on ${fileMismatch} cells`);
  if (!(files.maxCentroidDiff < 1e-3) || !files.sameXy) throw new Error(`cells.csv.gz centroids differ from the bundle's (max ${files.maxCentroidDiff})`);
  const tx = files.tx;
  if (JSON.stringify(tx.cellIds) !== '["7","9"]' || JSON.stringify(tx.genes) !== '["EPCAM","KRT7"]' ||
      JSON.stringify(tx.counts) !== "[2,1,0,1]" || JSON.stringify(tx.centroids) !== "[3,4,1,1]") {
    throw new Error(`readXeniumTranscripts on a planted CSV: ${JSON.stringify(tx)}`);
  }
  const expectFileMessage = (name, parts) => {
    const msg = files.messages[name];
    console.log(`bad file (${name}): ${msg}`);
    for (const p of parts) if (!msg.includes(p)) throw new Error(`bad file ${name}: message ${JSON.stringify(msg)} lacks ${JSON.stringify(p)}`);
  };
  expectFileMessage("truncated", ["matrix.mtx.gz"]);
  expectFileMessage("badLine", ["matrix.mtx at line 3", "`two`"]);
  expectFileMessage("badCsv", ["drop.csv", "line 8", "`qv`", "`abc`"]);
  expectFileMessage("missingCells", ["cells.csv.gz", "no-such-cell"]);

  // Image-only slide: the crop's DAPI TIFF bytes through readTiff + detectNuclei in wasm give
  // the native detect-nuclei centroids (test.sh writes nuclei/).
  await nucleiChecks({ page, dataParam, root, log: console.log });

  // Lasso flow: draw group A over the left part of the image and group B over the right part,
  // pair them by OT, and check the result.
  async function drawLasso(button, x0, x1) {
    await page.click(button);
    // Clicking the button may scroll the page (the sidebar runs below the fold): draw at the
    // canvas's on-screen box measured after the scroll is undone.
    await page.evaluate(() => window.scrollTo(0, 0));
    const box = await page.locator("#canvas").boundingBox();
    const pts = [[x0, 0.08], [x1, 0.08], [x1, 0.92], [x0, 0.92], [x0, 0.1]];
    await page.mouse.move(box.x + pts[0][0] * box.width, box.y + pts[0][1] * box.height);
    await page.mouse.down();
    for (const [fx, fy] of pts.slice(1)) {
      await page.mouse.move(box.x + fx * box.width, box.y + fy * box.height, { steps: 8 });
    }
    await page.mouse.up();
  }
  await drawLasso("#lasso-a", 0.04, 0.38);
  await drawLasso("#lasso-b", 0.62, 0.96);
  await page.click("#pair");
  await page.waitForSelector("body[data-pair-status=done], body[data-pair-status=error]", { timeout: timeoutMs });
  const pair = await page.evaluate(() => window.__cellsymphonyPair);
  const lassoShot = screenshot.replace(/\.png$/, "") + "-lasso.png";
  await page.screenshot({ path: lassoShot, fullPage: true });
  console.log(`lasso screenshot: ${lassoShot}`);
  if (pair.failure) throw new Error(`pairing failed in the page: ${pair.failure}`);
  console.log(`lasso pairing (${pair.backend}): ${pair.nA} A cells → ${pair.nB} B cells, ${pair.iterations} iterations, ` +
    `marginal error ${pair.marginalError.toExponential(2)}, ${pair.ms.toFixed(0)} ms; top up in B: ` +
    pair.topUp.slice(0, 5).map((g) => `${g.gene} ${g.delta.toFixed(2)}`).join(", "));
  if (pair.nA < 50 || pair.nB < 50) throw new Error(`lasso groups too small: ${pair.nA}, ${pair.nB}`);
  if (pair.target.length !== pair.nA || pair.target.some((t) => t >= pair.nB)) throw new Error("pair indices out of range");
  if (!pair.converged) throw new Error("Sinkhorn did not converge in the page");
  if (pair.nDelta !== bundle.genes.length) throw new Error(`signature has ${pair.nDelta} genes, expected ${bundle.genes.length}`);
  if (pair.cpu) {
    console.log(`lasso pairing: WebGPU and CPU engines agree on ${pair.cpu.agreement}/${pair.nA} pairs`);
    if (pair.cpu.agreement < 0.99 * pair.nA) throw new Error("WebGPU and CPU pairings disagree on more than 1% of cells");
  }
  // Morphology generation: FlowModel on both engines vs native, and the demo's button after
  // the lasso pairing above.
  await flowChecks({ page, dataParam, screenshot, log: console.log });
  // SPATIA's hierarchy: SpatiaModel.classifyWithContext vs the native CPU engine on the crop.
  await spatiaChecks({ page, dataParam, log: console.log });
  await workerChecks({ page, dataParam, bundle, result, log: console.log });
  if (process.env.CELLSYMPHONY_REQUIRE_WEBGPU === "1" && !onGpu) throw new Error("WebGPU required but the page fell back to the CPU engine");
} catch (e) {
  failed = 1;
  console.error(`browser test FAILED: ${e.message}`);
} finally {
  if (browser) await browser.close();
  server.close();
}
console.log(`browser: ${1 - failed} passed, ${failed} failed`);
process.exit(failed);
