// Cells/s of the package's wasm CPU engine in Node (V8, one thread), SIMD128 vs scalar build,
// on the crop's cells repeated to N. Reads a browser bundle folder (model.int8.safetensors,
// counts.f32 [cells, genes], cells.json) as scripts/test.sh writes it.
//
//   node scripts/bench_wasm_cpu.mjs <www-data dir> [cells=8192] [reps=3] [model file]
//
// Each build runs in its own Node process (the loader picks one build per process).
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import path from "node:path";

const [dir, cellsArg = "8192", repsArg = "3", modelArg] = process.argv.slice(2);
if (!dir) {
  console.error("usage: node scripts/bench_wasm_cpu.mjs <www-data dir> [cells] [reps] [model file]");
  process.exit(2);
}
const pkg = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "pkg");

if (process.env.BENCH_WASM_CHILD) {
  globalThis.CELLSYMPHONY_WASM_SIMD = process.env.BENCH_WASM_CHILD === "simd";
  const m = await import(pathToFileURL(path.join(pkg, "cellsymphony.js")).href);
  const wasm = readFileSync(path.join(pkg, m.simd ? "cellsymphony_simd_bg.wasm" : "cellsymphony_scalar_bg.wasm"));
  await m.default({ module_or_path: wasm });
  const meta = JSON.parse(readFileSync(path.join(dir, "cells.json"), "utf8"));
  const crop = new Float32Array(readFileSync(path.join(dir, "counts.f32")).buffer.slice(0));
  const g = meta.genes.length;
  const n = Number(cellsArg);
  const counts = new Float32Array(n * g);
  for (let i = 0; i < n; i++) counts.set(crop.subarray((i % meta.n_cells) * g, (i % meta.n_cells + 1) * g), i * g);
  const clf = await m.Classifier.load(new Uint8Array(readFileSync(modelArg || path.join(dir, "model.int8.safetensors"))), false);
  const first = await clf.classify(counts, n, meta.genes); // warm-up
  const times = [];
  for (let r = 0; r < Number(repsArg); r++) {
    const t = performance.now();
    await clf.classify(counts, n, meta.genes);
    times.push((performance.now() - t) / 1000);
  }
  times.sort((a, b) => a - b);
  const s = times[Math.floor(times.length / 2)];
  console.log(JSON.stringify({ build: m.simd ? "simd128" : "scalar", backend: clf.backend, cells: n, median_s: s, cells_per_s: n / s, classes: Array.from(first.classes.slice(0, meta.n_cells)) }));
} else {
  const rows = [];
  for (const build of ["simd", "scalar"]) {
    const r = spawnSync(process.execPath, process.argv.slice(1), { env: { ...process.env, BENCH_WASM_CHILD: build }, encoding: "utf8" });
    if (r.status !== 0) {
      console.error(r.stdout, r.stderr);
      process.exit(1);
    }
    rows.push(JSON.parse(r.stdout.trim().split("\n").pop()));
  }
  const same = rows[0].classes.every((c, i) => c === rows[1].classes[i]);
  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  console.log(`wasm CPU engine in Node ${process.version} (V8 ${process.versions.v8}), 1 thread, ${rows[0].cells} cells (the crop's cells repeated), load average ${load}`);
  console.log("\n| build | cells | median s | cells/s |\n|---|---|---|---|");
  for (const r of rows) console.log(`| ${r.build} | ${r.cells} | ${r.median_s.toFixed(3)} | ${r.cells_per_s.toFixed(0)} |`);
  console.log(`\nsame classes from both builds on the crop's cells: ${same}`);
  if (!same) process.exit(1);
}
