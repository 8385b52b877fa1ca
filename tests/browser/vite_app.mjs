// The Vite + TypeScript example app (examples/vite-app, built by scripts/test_vite_app.sh from
// the npm tarball) in headless Chromium: its build classifies the crop through the package's
// main entry and its worker entry with the native CPU engine's classes, reports progress,
// cancels, gives a typed error for a file that is not a model, and pairs cells in a worker.
//   node tests/browser/vite_app.mjs --dist <app>/dist --data out/test/www-data
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { launchChromium, parseArgs, runPage, serveStatic } from "./launch.mjs";

const args = parseArgs();
const dist = resolve(args.dist);
const bundle = JSON.parse(readFileSync(resolve(args.data, "cells.json"), "utf8"));
const timeoutMs = Number(args.timeout || 120000);
const fail = (msg) => { throw new Error(msg); };

const server = await serveStatic(dist, "index.html");
let browser;
try {
  browser = await launchChromium();
  const { page, result: r, ms } = await runPage(browser, `${server.base}index.html?data=data/`, { global: "__app", timeoutMs });
  // "auto" must pick WebGPU exactly when Chromium offers a hardware adapter.
  const adapter = await page.evaluate(async () => {
    const a = await navigator.gpu?.requestAdapter();
    return a ? { fallback: !!(a.isFallbackAdapter || a.info?.isFallbackAdapter) } : null;
  });
  const want = adapter && !adapter.fallback ? "webgpu" : "cpu";
  console.log(`vite app: ${r.nCells} cells; main entry on ${r.main.device} (${r.main.backend}, adapter ${JSON.stringify(adapter)}) ` +
    `${r.main.ms.toFixed(0)} ms; worker entry ${r.worker.ms.toFixed(0)} ms; page done in ${ms} ms`);
  if (r.main.device !== want) fail(`device "auto" chose ${r.main.device}, expected ${want} for adapter ${JSON.stringify(adapter)}`);
  if (r.nCells !== bundle.n_cells) fail(`the app classified ${r.nCells} cells, the bundle has ${bundle.n_cells}`);
  if (!r.webgpu && process.env.CELLSYMPHONY_REQUIRE_WEBGPU === "1") fail("no WebGPU adapter in Chromium (CELLSYMPHONY_REQUIRE_WEBGPU=1)");
  const arms = [["main entry", r.main.classes], ["worker entry", r.worker.classes]];
  if (r.webgpu) {
    console.log(`device "webgpu": ${r.webgpu.backend}, ${r.webgpu.ms.toFixed(0)} ms`);
    arms.push(["main entry on WebGPU", r.webgpu.classes]);
  }
  for (const [name, classes] of arms) {
    const diff = classes.filter((c, i) => c !== bundle.native_predictions[i]).length;
    const want = name.endsWith("WebGPU") ? Math.min(256, bundle.n_cells) : bundle.n_cells;
    if (classes.length !== want || diff > 0) fail(`${name}: ${diff} of ${classes.length} classes differ from the native CPU engine's (${want} cells expected)`);
  }
  if (JSON.stringify(r.classNames) !== JSON.stringify(bundle.classes)) fail(`class names ${r.classNames} ≠ the bundle's ${bundle.classes}`);
  console.log(`classes equal the native CPU engine's: ${arms.map(([name, c]) => `${name} ${c.length}/${c.length}`).join(", ")}`);
  const p = r.worker.progress;
  if (p.length !== Math.ceil(r.nCells / 256) || p.some((d, i) => i > 0 && d <= p[i - 1]) || p.at(-1) !== r.nCells) fail(`worker progress ${p}`);
  if (!r.worker.detached) fail("the worker entry did not transfer the counts (the caller's array is still attached)");
  if (r.cancel !== "AbortError") fail(`a cancelled classify gave ${r.cancel}, expected AbortError`);
  if (r.badModel.name !== "CellSymphonyError" || r.badModel.code !== "model") fail(`a bad model gave ${JSON.stringify(r.badModel)}`);
  const pr = r.pairing;
  if (pr.pairs.length !== pr.control || pr.pairs.some((t) => !(t < pr.target)) || pr.progressEvents === 0 || pr.topUp.length === 0) {
    fail(`pairing: ${pr.pairs.length} pairs for ${pr.control} control cells into ${pr.target}, ${pr.progressEvents} progress events`);
  }
  console.log(`worker: ${p.length} progress events, counts transferred; cancel: ${r.cancel}; bad model: ${r.badModel.code}: ${r.badModel.message}`);
  console.log(`pairing (${pr.backend}): ${pr.control} → ${pr.target} cells, ${pr.iterations} iterations, converged ${pr.converged}, top up ${pr.topUp.slice(0, 3).join(", ")}`);
  console.log("vite app: passed");
} finally {
  await browser?.close();
  server.close();
}
