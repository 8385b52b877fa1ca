// Our package vs onnxruntime-web in ONE headless Chromium run (scripts/bench_web.sh calls
// this): serves the repo with COOP/COEP headers (cross-origin isolation, needed for ORT's
// 2-thread WASM EP), opens www/bench.html once per arm group (ORT fixes its thread count per
// page), and prints one markdown table: engine, threads, cells, seconds, cells/s, and the
// ratio to the onnxruntime-web arm with equal threads and precision; plus our WebGPU
// dispatches per encoder layer and class agreement on the timed cells.
//   node tests/browser/bench_web.mjs --fp32 M.safetensors --int8 M.int8.safetensors \
//     --onnx M.onnx --onnx-int8 M.int8.onnx --meta meta.json --data www/data \
//     --ort-dist <node_modules/onnxruntime-web/dist> --out table.md \
//     [--sizes 1024,8192,65536] [--gpu-sizes 1024] [--no-gpu]
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { createReadStream, readFileSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, extname, join, resolve } from "node:path";

const require = createRequire(import.meta.url);
let chromium;
try {
  ({ chromium } = require("playwright-core"));
} catch {
  console.error("playwright-core not found: run scripts/setup.sh (NODE_PATH points at the tools cache)");
  process.exit(2);
}

const argv = process.argv.slice(2);
const args = {};
for (let i = 0; i < argv.length; i++) {
  if (!argv[i].startsWith("--")) continue;
  const next = argv[i + 1];
  if (next === undefined || next.startsWith("--")) args[argv[i].slice(2)] = true;
  else { args[argv[i].slice(2)] = next; i++; }
}
for (const need of ["fp32", "int8", "onnx", "onnx-int8", "meta", "data", "ort-dist", "out"]) {
  if (!args[need]) { console.error(`missing --${need}`); process.exit(2); }
}
const root = resolve(dirname(new URL(import.meta.url).pathname), "../..");
const sizes = String(args.sizes || "1024,8192,65536").split(",").map(Number);
const gpuSizes = String(args["gpu-sizes"] || "1024").split(",").map(Number);
const withGpu = !args["no-gpu"];
const meta = JSON.parse(readFileSync(args.meta, "utf8"));

// Files the page reads, by URL.
const files = {
  "/__files/model.safetensors": args.fp32,
  "/__files/model.int8.safetensors": args.int8,
  "/__files/model.onnx": args.onnx,
  "/__files/model.int8.onnx": args["onnx-int8"],
  "/__files/counts.f32": join(args.data, "counts.f32"),
  "/__files/cells.json": join(args.data, "cells.json"),
};
const types = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };
const server = createServer((req, res) => {
  const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
  let file = files[path];
  if (!file && path.startsWith("/__ort/")) file = join(args["ort-dist"], path.slice(7));
  if (!file && !path.includes("..")) file = join(root, path);
  let size;
  try { const st = statSync(file); if (!st.isFile()) throw new Error(); size = st.size; } catch {
    res.writeHead(404); res.end(); return;
  }
  res.writeHead(200, {
    "Content-Type": types[extname(file)] || "application/octet-stream",
    "Content-Length": size,
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cache-Control": "no-store",
  });
  createReadStream(file).pipe(res);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const base = `http://127.0.0.1:${server.address().port}`;

const warm = Math.min(...sizes);
const gpuWarm = Math.min(...gpuSizes);
// Page groups: ORT's thread count is fixed once per page.
// Our CPU arms: a pool of 1 and 2 module workers (the best build the browser validates: relaxed
// SIMD in Chromium), and, on 1 worker at 8,192 cells only (or the smallest size when 8,192 is
// not among them), the SIMD128 build (the ablation of relaxed SIMD's fused multiply-add) and
// the scalar fallback build.
const scalarSizes = [sizes.includes(8192) ? 8192 : sizes[0]];
const groups = [
  [
    { name: "ours, wasm CPU engine, int8 file", kind: "ours", file: "/__files/model.int8.safetensors", threads: 1, sizes, warm },
    { name: "ours, wasm CPU engine, int8 file, W8A8 (int8Gemm: w8a8)", kind: "ours", int8Gemm: "w8a8", file: "/__files/model.int8.safetensors", threads: 1, sizes, warm },
    { name: "ours, wasm CPU engine, fp32 file", kind: "ours", file: "/__files/model.safetensors", threads: 1, sizes, warm },
    { name: "ours, wasm CPU engine, int8 file", kind: "ours", file: "/__files/model.int8.safetensors", threads: 2, sizes, warm },
    { name: "ours, wasm CPU engine, int8 file, W8A8 (int8Gemm: w8a8)", kind: "ours", int8Gemm: "w8a8", file: "/__files/model.int8.safetensors", threads: 2, sizes, warm },
    { name: "ours, wasm CPU engine, fp32 file", kind: "ours", file: "/__files/model.safetensors", threads: 2, sizes, warm },
    { name: "ours, wasm CPU engine (SIMD128 build, no relaxed SIMD), int8 file", kind: "ours", build: "simd", file: "/__files/model.int8.safetensors", threads: 1, sizes: scalarSizes, warm },
    { name: "ours, wasm CPU engine (SIMD128 build, no relaxed SIMD), fp32 file", kind: "ours", build: "simd", file: "/__files/model.safetensors", threads: 1, sizes: scalarSizes, warm },
    { name: "ours, wasm CPU engine (scalar build), int8 file", kind: "ours", build: "scalar", file: "/__files/model.int8.safetensors", threads: 1, sizes: scalarSizes, warm },
  ],
  [
    { name: "onnxruntime-web WASM EP, fp32", kind: "ort", file: "/__files/model.onnx", threads: 1, sizes, warm },
    { name: "onnxruntime-web WASM EP, int8 (quantize_dynamic)", kind: "ort", file: "/__files/model.int8.onnx", threads: 1, sizes, warm },
  ],
  [
    { name: "onnxruntime-web WASM EP, fp32", kind: "ort", file: "/__files/model.onnx", threads: 2, sizes, warm },
    { name: "onnxruntime-web WASM EP, int8 (quantize_dynamic)", kind: "ort", file: "/__files/model.int8.onnx", threads: 2, sizes, warm },
  ],
];
// CELLSYMPHONY_BENCH_THREADS (default "1,2"): only the CPU arms with these thread counts.
const threadSet = (process.env.CELLSYMPHONY_BENCH_THREADS || "1,2").split(",").map(Number);
for (const g of groups) g.splice(0, g.length, ...g.filter((a) => threadSet.includes(a.threads ?? 1)));
groups.splice(0, groups.length, ...groups.filter((g) => g.length));
if (withGpu) {
  groups.push([{ name: "ours, WebGPU engine (int8)", kind: "ours", gpu: true, file: "/__files/model.int8.safetensors", sizes: gpuSizes, warm: gpuWarm }]);
  groups.push([{ name: "onnxruntime-web WebGPU EP, fp32", kind: "ort", gpu: true, file: "/__files/model.onnx", threads: 1, sizes: gpuSizes, warm: gpuWarm }]);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless=new", "--no-sandbox", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--enable-unsafe-webgpu",
    "--enable-features=Vulkan", "--use-vulkan=swiftshader", "--use-angle=swiftshader"],
});
const results = [];
let isolated = null;
let userAgent = "";
const t0 = Date.now();
const loadavg = () => { try { return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "); } catch { return "?"; } };
const loadBefore = loadavg();
try {
  for (const arms of groups) {
    const page = await browser.newPage();
    page.on("console", (m) => console.log(`  [page] ${m.text()}`));
    page.on("pageerror", (e) => console.log(`  [pageerror] ${e.message}`));
    await page.goto(`${base}/www/bench.html`);
    await page.waitForSelector("body[data-status=ready]", { timeout: 60000 });
    const r = await page.evaluate((plan) => window.runBench(plan),
      { arms, meta, data: { counts: "/__files/counts.f32", cells: "/__files/cells.json" } });
    isolated = r.crossOriginIsolated;
    userAgent = r.userAgent;
    results.push(...r.results);
    await page.close();
  }
} finally {
  await browser.close();
  server.close();
}

// The table.
const threadsOf = (r) => r.threads ?? 1;
const precision = (name) => (/int8/.test(name) ? "int8" : "fp32");
const isOurs = (r) => r.name.startsWith("ours");
const gpu = (r) => /WebGPU/.test(r.name);
function peer(r) {
  if (!isOurs(r)) return null;
  return results.find((p) => !isOurs(p) && !p.error && gpu(p) === gpu(r) && threadsOf(p) === threadsOf(r) &&
    (gpu(r) || precision(p.name) === precision(r.name)));
}
const lines = [];
lines.push(`Chromium headless (${userAgent.match(/Chrome\/[\d.]+/)?.[0] ?? "?"}), crossOriginIsolated=${isolated}; ` +
  `model ${meta.config.n_layers} layers, d_model ${meta.config.d_model}, ${meta.config.gene_tokens} gene tokens, ` +
  `${meta.genes.length} genes, ${meta.classes.length} classes; cells: the crop's cells repeated. Every arm goes ` +
  `from raw counts to classes (ours on the CPU: a pool of 1 or 2 module workers, pkg/client.js, chunks of 2,048 cells ` +
  `through Classifier.classify, relaxed-SIMD wasm build unless named SIMD128 or scalar; onnxruntime-web: the same normalisation in JS, ` +
  `session.run, argmax, its own wasm threads); one warm-up run per arm, then one timed run per size.` +
  (withGpu ? ` WebGPU is SwiftShader (software) here, so its arms run ${gpuSizes.join(", ")} cells only.` : " No WebGPU arms (--no-gpu)."), "");
lines.push("| engine | threads | cells | seconds | cells/s | vs onnxruntime-web (equal threads, precision) |");
lines.push("|---|---:|---:|---:|---:|---|");
for (const r of results) {
  if (r.error) { lines.push(`| ${r.name} | ${threadsOf(r)} | — | — | — | ${r.error} |`); continue; }
  const p = peer(r);
  for (const run of r.runs) {
    const cps = run.cells / run.ms * 1000;
    let ratio = isOurs(r) ? "no peer arm" : "peer";
    const pr = p && p.runs.find((x) => x.cells === run.cells);
    if (pr) ratio = `${(cps / (pr.cells / pr.ms * 1000)).toFixed(2)}× ${p.name}` + (gpu(p) ? "" : `, ${threadsOf(p)} thr`);
    lines.push(`| ${r.name} | ${gpu(r) ? "GPU" : threadsOf(r)} | ${run.cells} | ${(run.ms / 1000).toFixed(2)} | ${Math.round(cps).toLocaleString("en-US")} | ${ratio} |`);
  }
}
lines.push("");
const gpuOurs = results.find((r) => isOurs(r) && gpu(r) && !r.error);
if (gpuOurs) lines.push(`Our WebGPU engine: ${gpuOurs.dispatchesPerLayer} compute dispatches per encoder layer (${gpuOurs.backend}).`);
// Class agreement on the timed cells (the crop's cells at the start of the largest run).
const UNCLASSIFIED = 4294967295;
function agreement(a, b) {
  const n = Math.min(a.classes.length, b.classes.length);
  let same = 0, skipped = 0;
  for (let i = 0; i < n; i++) {
    if (a.classes[i] === UNCLASSIFIED || b.classes[i] === UNCLASSIFIED) { skipped++; continue; }
    if (a.classes[i] === b.classes[i]) same++;
  }
  return { same, n: n - skipped, skipped };
}
let fp32Mismatch = false;
for (const r of results.filter((x) => isOurs(x) && !x.error)) {
  for (const p of results.filter((x) => !isOurs(x) && !x.error && gpu(x) === gpu(r) && (gpu(r) || precision(x.name) === precision(r.name)))) {
    const a = agreement(r, p);
    lines.push(`Classes: ${r.name} vs ${p.name}${gpu(p) ? "" : ` (${threadsOf(p)} thr)`}: same on ${a.same}/${a.n} cells` +
      (a.skipped ? ` (${a.skipped} cells without counts: unclassified by us, skipped)` : "") + ".");
    if (precision(r.name) === "fp32" && !gpu(r) && a.same !== a.n) fp32Mismatch = true;
  }
}
for (const r of results.filter((x) => isOurs(x) && !x.error && !gpu(x))) lines.push(`${r.name}, ${r.threads} thr: ${r.backend}.`);
lines.push("", `Whole browser run: ${((Date.now() - t0) / 1000).toFixed(0)} s; load average before ${loadBefore}, after ${loadavg()} ` +
  `(${(await import("node:os")).cpus().length} logical cores).`);
const text = lines.join("\n") + "\n";
console.log("\n" + text);
mkdirSync(dirname(resolve(args.out)), { recursive: true });
writeFileSync(args.out, text);
console.log(`table written to ${args.out}`);
const failed = results.filter((r) => r.error && !(r.error === "no WebGPU adapter" && !process.env.CELLSYMPHONY_REQUIRE_WEBGPU));
if (failed.length) { console.error(`arms failed: ${failed.map((r) => `${r.name}: ${r.error}`).join("; ")}`); process.exit(1); }
if (fp32Mismatch) { console.error("our fp32 CPU engine and onnxruntime-web fp32 disagree on some cells (see above)"); process.exit(1); }
