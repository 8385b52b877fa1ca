// SPATIA without images (issue 14) through the wasm package in Node: test.sh fine-tunes a tiny
// image-free model on scimap's 33-plex panel (centroids only), classifies it with the native
// CPU engine and writes the `--www` bundle; here the package's SpatiaModel must
// - report `images === false`,
// - classify every cell with context from expression, niches and regions alone (no `patches`,
//   no `nicheTiles`) with native's class on every cell, with progress after every region,
// - refuse patches given to an image-free model, naming them.
//   node tests/browser/spatia_free_check.mjs <bundle dir>/      # exits 1 on a failure
import { readFileSync } from "node:fs";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node tests/browser/spatia_free_check.mjs <spatia classify --www dir>/");
  process.exit(2);
}
const pkg = await import(new URL("../../pkg/cellsymphony_simd.js", import.meta.url));
pkg.initSync({ module: readFileSync(new URL("../../pkg/cellsymphony_simd_bg.wasm", import.meta.url)) });
const bytes = (f) => readFileSync(dir + f);
const f32 = (f) => { const b = bytes(f); return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4); };
const u32 = (f) => { const b = bytes(f); return new Uint32Array(b.buffer, b.byteOffset, b.byteLength / 4); };
const ref = JSON.parse(bytes("reference.json").toString("utf8"));
const fail = (msg) => { console.error(`image-free SPATIA in the package FAILED: ${msg}`); process.exit(1); };

const model = await pkg.SpatiaModel.load(new Uint8Array(bytes("spatia.safetensors")), { useGpu: false });
if (model.images !== false) fail(`images is ${model.images} for an image-free file`);
const inputs = { genes: f32("genes.f32"), cellNiche: u32("cell_niche.u32"), nicheSlot: u32("niche_slot.u32"), nicheRegion: u32("niche_region.u32") };
const progress = [];
const t0 = performance.now();
const res = await model.classifyWithContext(inputs, (done, total) => progress.push([done, total]));
const ms = performance.now() - t0;
let same = 0;
for (let i = 0; i < ref.n_cells; i++) if (res.classes[i] === ref.classes[i]) same++;
console.log(`image-free SPATIA (${model.levels}, ${model.backend}) in Node: ${ref.n_cells} cells, ${ref.n_niches} niches in ${ms.toFixed(0)} ms; ` +
  `same class as native on ${same}/${ref.n_cells}; ${progress.length} progress calls`);
if (same !== ref.n_cells) fail(`${ref.n_cells - same} cells differ from native`);
const last = progress[progress.length - 1];
if (!last || last[0] !== last[1] || progress.length !== last[1]) fail(`progress ${JSON.stringify(progress)}`);
const bad = await model.classifyWithContext({ ...inputs, patches: new Float32Array(5) }).then(() => "resolved", (e) => String(e?.message ?? e));
console.log(`  patches given to an image-free model: ${bad}`);
if (!bad.includes("patches")) fail(`patches given to an image-free model: ${bad}`);
model.free();
