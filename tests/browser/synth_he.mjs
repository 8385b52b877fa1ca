// A synthetic H&E-like RGB TIFF, the same bytes on every run (seeded PRNG): haematoxylin-dense
// elliptic nuclei (some touching) on eosin-stained tissue, rendered by Beer–Lambert from stain
// concentrations with scikit-image's stain vectors, plus noise; 8-bit RGB, uncompressed, one
// strip. scripts/test.sh writes it for the browser test's H&E check (native detect-nuclei
// --stain he vs wasm detectNuclei({stain: "he"}) on the same file).
//   node tests/browser/synth_he.mjs OUT.tif [width height]
import { writeFileSync } from "node:fs";

/** mulberry32: a small seeded PRNG → [0, 1). */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** RGB pixels [h*w*3] of the synthetic slide (8 µm nuclei at 0.5 µm/px ≈ 16 px across). */
export function synthHe(width, height, seed = 15) {
  const rand = prng(seed);
  const H = [0.65, 0.70, 0.29], E = [0.07, 0.99, 0.11];
  const hc = new Float32Array(width * height);
  const nuclei = [];
  // Nuclei on a jittered grid; every fifth one gets a touching neighbour.
  for (let y = 14; y < height - 10; y += 26) {
    for (let x = 14; x < width - 10; x += 26) {
      if (rand() < 0.25) continue;
      const n = { x: x + (rand() - 0.5) * 8, y: y + (rand() - 0.5) * 8, r: 6 + rand() * 3, a: 0.6 + rand() * 0.6, e: 0.75 + rand() * 0.25, t: rand() * Math.PI };
      nuclei.push(n);
      if (rand() < 0.2) nuclei.push({ ...n, x: n.x + 1.7 * n.r, y: n.y + (rand() - 0.5) * 4, a: 0.6 + rand() * 0.6 });
    }
  }
  for (const n of nuclei) {
    const [c, s] = [Math.cos(n.t), Math.sin(n.t)];
    const reach = Math.ceil(n.r + 2);
    for (let y = Math.max(0, Math.floor(n.y - reach)); y < Math.min(height, n.y + reach); y++) {
      for (let x = Math.max(0, Math.floor(n.x - reach)); x < Math.min(width, n.x + reach); x++) {
        const [dx, dy] = [x - n.x, y - n.y];
        const u = (dx * c + dy * s) / n.r, v = (-dx * s + dy * c) / (n.r * n.e);
        const d = Math.sqrt(u * u + v * v);
        const w = d < 0.85 ? 1 : d < 1.15 ? (1.15 - d) / 0.3 : 0; // soft edge
        hc[y * width + x] = Math.max(hc[y * width + x], n.a * w);
      }
    }
  }
  const px = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const h = hc[i] + 0.05 * rand(), e = 0.35 + 0.1 * rand();
    for (let ch = 0; ch < 3; ch++) {
      const v = 255 * Math.exp(-(h * H[ch] + e * E[ch]) * Math.LN10) + (rand() - 0.5) * 6;
      px[3 * i + ch] = Math.max(0, Math.min(255, Math.round(v)));
    }
  }
  return { width, height, pixels: px, nNuclei: nuclei.length };
}

/** An uncompressed little-endian baseline RGB TIFF (one strip). */
export function rgbTiff({ width, height, pixels }) {
  const entries = [
    [256, 4, 1, width], [257, 4, 1, height], [258, 3, 3, 134], [259, 3, 1, 1], [262, 3, 1, 2],
    [273, 4, 1, 140], [277, 3, 1, 3], [278, 4, 1, height], [279, 4, 1, pixels.length], [284, 3, 1, 1],
  ];
  const buf = new Uint8Array(140 + pixels.length);
  const dv = new DataView(buf.buffer);
  buf.set([0x49, 0x49]);
  dv.setUint16(2, 42, true);
  dv.setUint32(4, 8, true);
  dv.setUint16(8, entries.length, true);
  entries.forEach(([tag, type, count, value], k) => {
    const o = 10 + 12 * k;
    dv.setUint16(o, tag, true);
    dv.setUint16(o + 2, type, true);
    dv.setUint32(o + 4, count, true);
    if (type === 3 && count === 1) dv.setUint16(o + 8, value, true);
    else dv.setUint32(o + 8, value, true);
  });
  dv.setUint32(10 + 12 * entries.length, 0, true); // no next IFD (ends at byte 134)
  [8, 8, 8].forEach((b, k) => dv.setUint16(134 + 2 * k, b, true));
  buf.set(pixels, 140);
  return buf;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [out, w = "640", h = "480"] = process.argv.slice(2);
  if (!out) throw new Error("usage: node tests/browser/synth_he.mjs OUT.tif [width height]");
  const img = synthHe(Number(w), Number(h));
  writeFileSync(out, rgbTiff(img));
  console.log(`${out}: ${img.width}×${img.height} RGB, ${img.nNuclei} nuclei drawn`);
}
