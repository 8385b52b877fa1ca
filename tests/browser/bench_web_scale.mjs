// Whole-slide scale in headless Chromium: the crop's cells replicated to N cells as CSR,
// classified through the package's module Worker in chunks (pkg/client.js), with the wasm API
// called once on the main thread as the peer (same run, same cells), and the client's
// main-thread mode (same chunks, no worker) to separate the cost of chunking from the worker's. One fresh browser per
// row, so each row's peak memory is its own: the tab's renderer process (page + worker + wasm)
// peak RSS (VmHWM from /proc), the worker's wasm memory, the main thread's JS heap.
//   node tests/browser/bench_web_scale.mjs --data ../out/test/www-data/ [--cells 100000,1000000] [--peer-cells 100000] [--webgpu-cells 8192] [--chunk 2048]
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import net from "node:net";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) =>
  a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc, []));
const root = resolve(dirname(new URL(import.meta.url).pathname), "../..");
const dataParam = args.data || "data/"; // relative to www/
const list = (s, d) => String(s ?? d).split(",").filter(Boolean).map(Number);
const sizes = list(args.cells, "100000,1000000");
const peerSizes = list(args["peer-cells"], "100000");
const gpuSizes = list(args["webgpu-cells"], "");
const chunk = Number(args.chunk || 0) || undefined;
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";

function freePort() {
  return new Promise((ok, fail) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => ok(p)); });
    s.on("error", fail);
  });
}

/** pid → {ppid, cmd} of every process. */
function processes() {
  const out = new Map();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8").replace(/\0/g, " ");
      out.set(Number(d), { ppid, cmd });
    } catch {}
  }
  return out;
}

function kib(pid, key) {
  try {
    const m = readFileSync(`/proc/${pid}/status`, "utf8").match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"));
    return m ? Number(m[1]) : 0;
  } catch { return 0; }
}

/** Peak RSS so far of the renderer processes under `pid`, and the RSS of all Chromium processes under it. */
function rendererPeaks(pid) {
  const procs = processes();
  const desc = [];
  const walk = (p) => { for (const [c, info] of procs) if (info.ppid === p) { desc.push([c, info]); walk(c); } };
  walk(pid);
  const chromiumProcs = desc.filter(([, i]) => i.cmd.includes(chromiumPath) || i.cmd.includes("--type="));
  const renderers = desc.filter(([, i]) => i.cmd.includes("--type=renderer"));
  return {
    rendererHwmKiB: Math.max(0, ...renderers.map(([p]) => kib(p, "VmHWM"))),
    allRssKiB: chromiumProcs.reduce((s, [p]) => s + kib(p, "VmRSS"), 0),
  };
}

/** In the page: N cells as CSR (crop rows cycled), classified by `how`. */
async function inPage({ data, nCells, how, useGpu, chunk }) {
  const client = await import("../../pkg/client.js");
  const meta = await (await fetch(data + "cells.json")).json();
  const counts = new Float32Array(await (await fetch(data + "counts.f32")).arrayBuffer());
  const model = new Uint8Array(await (await fetch(data + "model.int8.safetensors")).arrayBuffer());
  const n0 = meta.n_cells, genes = meta.genes, g = genes.length;
  const rowNnz = new Uint32Array(n0);
  for (let c = 0; c < n0; c++) for (let j = 0; j < g; j++) if (counts[c * g + j] !== 0) rowNnz[c]++;
  let nnz = 0;
  for (let c = 0; c < nCells; c++) nnz += rowNnz[c % n0];
  const indptr = new Uint32Array(nCells + 1), indices = new Uint32Array(nnz), values = new Float32Array(nnz);
  for (let c = 0, k = 0; c < nCells; c++) {
    const src = (c % n0) * g;
    for (let j = 0; j < g; j++) { const v = counts[src + j]; if (v !== 0) { indices[k] = j; values[k++] = v; } }
    indptr[c + 1] = k;
  }
  const inputMiB = (indptr.byteLength + indices.byteLength + values.byteLength) / 2 ** 20;
  const heap = () => (performance.memory ? performance.memory.usedJSHeapSize : 0);
  const crop = async (clf) => Array.from((await clf.classifyCsr(indptr.subarray(0, n0 + 1), indices.subarray(0, indptr[n0]), values.subarray(0, indptr[n0]), n0, genes, { transfer: false })).classes);
  let res, ms, backend, wasmMemoryBytes, chunks = 1, progressEvents = 0, reference;
  if (how === "worker" || how === "main-chunked") {
    const cs = how === "worker" ? new client.CellSymphonyWorker() : new client.CellSymphonyMainThread();
    const clf = await cs.loadClassifier(model, { useGpu });
    backend = clf.backend;
    reference = await crop(clf);
    const t0 = performance.now();
    res = await clf.classifyCsr(indptr, indices, values, nCells, genes, { chunkCells: chunk, onProgress: () => progressEvents++ });
    ms = performance.now() - t0;
    wasmMemoryBytes = res.wasmMemoryBytes;
    chunks = res.chunks;
    cs.terminate();
  } else {
    const m = await import("../../pkg/cellsymphony.js");
    const exports = await m.default();
    const clf = await m.Classifier.load(model, useGpu);
    backend = clf.backend;
    reference = Array.from((await clf.classifyCsr(indptr.subarray(0, n0 + 1), indices.subarray(0, indptr[n0]), values.subarray(0, indptr[n0]), n0, genes)).classes);
    const t0 = performance.now();
    try {
      res = await clf.classifyCsr(indptr, indices, values, nCells, genes);
    } catch (e) {
      return { failure: String(e.message || e), backend, inputMiB, wasmMemoryBytes: exports.memory.buffer.byteLength };
    }
    ms = performance.now() - t0;
    wasmMemoryBytes = exports.memory.buffer.byteLength;
  }
  let same = 0;
  for (let c = 0; c < nCells; c++) if (res.classes[c] === reference[c % n0]) same++;
  return { backend, ms, nnz, inputMiB, wasmMemoryBytes, chunks, progressEvents, same, mainHeapBytes: heap() };
}

const runs = [
  ...sizes.map((n) => ({ n, how: "worker", useGpu: false })),
  ...peerSizes.map((n) => ({ n, how: "main thread, client in chunks", useGpu: false })),
  ...peerSizes.map((n) => ({ n, how: "main-thread wasm API, one call", useGpu: false })),
  ...gpuSizes.map((n) => ({ n, how: "worker", useGpu: true })),
];
const port = await freePort();
const server = spawn("python3", ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", root], { stdio: "ignore" });
await new Promise((r) => setTimeout(r, 800));
const rows = [];
try {
  for (const run of runs) {
    const browser = await chromium.launch({
      executablePath: chromiumPath, headless: true,
      args: ["--headless=new", "--no-sandbox", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic", "--enable-unsafe-webgpu",
        "--enable-features=Vulkan", "--use-vulkan=swiftshader", "--use-angle=swiftshader",
        "--enable-precise-memory-info", "--js-flags=--max-old-space-size=4096"],
    });
    const pid = process.pid; // Chromium's processes are this script's descendants
    let peakAll = 0;
    const sampler = setInterval(() => { peakAll = Math.max(peakAll, rendererPeaks(pid).allRssKiB); }, 250);
    try {
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${port}/tests/browser/blank.html`);
      const t0 = Date.now();
      const r = await page.evaluate(inPage, { data: "../../www/" + dataParam, nCells: run.n, how: { worker: "worker", "main thread, client in chunks": "main-chunked" }[run.how] ?? "main", useGpu: run.useGpu, chunk });
      const peaks = rendererPeaks(pid);
      const row = { ...run, ...r, rendererHwmMiB: peaks.rendererHwmKiB / 1024, browserPeakMiB: Math.max(peakAll, peaks.allRssKiB) / 1024, wallS: (Date.now() - t0) / 1000 };
      rows.push(row);
      console.error(JSON.stringify(row));
    } finally {
      clearInterval(sampler);
      await browser.close();
    }
  }
} finally {
  server.kill();
}
const mib = (b) => (b / 2 ** 20).toFixed(0);
console.log(`\nWhole-slide scale in headless Chromium (${chromiumPath}); cells = the crop's cells cycled, CSR input; ` +
  `peer: the wasm API in one call on the main thread, same cells, same run. ${new Date().toISOString()}, load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);
console.log("\n| path | engine | cells | chunk | s | cells/s | same class as the crop cell | input CSR MiB | wasm memory MiB | tab (renderer) peak RSS MiB | all Chromium processes peak RSS MiB |");
console.log("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
for (const r of rows) {
  const engine = r.useGpu ? "WebGPU (SwiftShader)" : "wasm CPU";
  if (r.failure) {
    console.log(`| ${r.how} | ${engine} | ${r.n} | — | failed: ${r.failure} | | | ${r.inputMiB.toFixed(0)} | ${mib(r.wasmMemoryBytes)} | ${r.rendererHwmMiB.toFixed(0)} | ${r.browserPeakMiB.toFixed(0)} |`);
    continue;
  }
  const chunkCells = r.chunks > 1 ? (chunk || (r.useGpu ? 8192 : 2048)) : r.n;
  console.log(`| ${r.how} | ${engine} | ${r.n} | ${chunkCells} | ${(r.ms / 1000).toFixed(1)} | ${(r.n / r.ms * 1000).toFixed(0)} | ${r.same}/${r.n} | ` +
    `${r.inputMiB.toFixed(0)} | ${mib(r.wasmMemoryBytes)} | ${r.rendererHwmMiB.toFixed(0)} | ${r.browserPeakMiB.toFixed(0)} |`);
}
const bad = rows.filter((r) => !r.failure && r.same !== r.n);
if (bad.length) { console.error(`replicated cells classified differently from their crop cell in ${bad.length} runs`); process.exit(1); }
