// A large synthetic DAPI-like tiled TIFF for the whole-slide memory benchmark (generated, never
// committed): 16-bit, uncompressed 256 × 256 tiles, bright soft-edged nuclei (8 µm across at
// 0.2125 µm/px) on a dim noisy background, the same bytes for the same arguments (seeded
// PRNG), written tile by tile (the image is never held whole).
//   node scripts/synth_tiled_tiff.mjs OUT.tif [side_px=20000]
import { openSync, writeSync, closeSync, renameSync } from "node:fs";

const TILE = 256;

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

/** One tile's pixels (row-major u16): ~12 nuclei of radius 16–22 px inside the tile. */
function renderTile(rand) {
  const px = new Uint16Array(TILE * TILE);
  for (let i = 0; i < px.length; i++) px[i] = 180 + Math.floor(rand() * 60);
  const n = 8 + Math.floor(rand() * 8);
  for (let k = 0; k < n; k++) {
    const r = 16 + rand() * 6, amp = 1200 + rand() * 2400;
    const cx = r + 2 + rand() * (TILE - 2 * r - 4), cy = r + 2 + rand() * (TILE - 2 * r - 4);
    for (let y = Math.floor(cy - r - 1); y <= cy + r + 1; y++) {
      for (let x = Math.floor(cx - r - 1); x <= cx + r + 1; x++) {
        const d = Math.hypot(x - cx, y - cy) / r;
        const w = d < 0.8 ? 1 : d < 1.1 ? (1.1 - d) / 0.3 : 0;
        const i = y * TILE + x;
        px[i] = Math.min(65535, Math.max(px[i], 200 + amp * w));
      }
    }
  }
  return px;
}

const [out, sideArg = "20000"] = process.argv.slice(2);
if (!out) throw new Error("usage: node scripts/synth_tiled_tiff.mjs OUT.tif [side_px]");
const side = Number(sideArg);
const across = Math.ceil(side / TILE), nTiles = across * across, tileBytes = TILE * TILE * 2;
const dataStart = 8 + 2 + 12 * 11 + 4 + 8 * nTiles; // header, IFD, offsets + byte counts
if (dataStart + nTiles * tileBytes > 0xffffffff) throw new Error(`side ${side} needs BigTIFF (over 4 GiB)`);
const head = new DataView(new ArrayBuffer(dataStart));
head.setUint16(0, 0x4949, true); head.setUint16(2, 42, true); head.setUint32(4, 8, true);
const offsetsAt = 8 + 2 + 12 * 11 + 4, countsAt = offsetsAt + 4 * nTiles;
const entries = [[256, 4, 1, side], [257, 4, 1, side], [258, 3, 1, 16], [259, 3, 1, 1], [262, 3, 1, 1],
  [277, 3, 1, 1], [284, 3, 1, 1], [322, 3, 1, TILE], [323, 3, 1, TILE], [324, 4, nTiles, offsetsAt], [325, 4, nTiles, countsAt]];
head.setUint16(8, entries.length, true);
entries.forEach(([tag, type, count, value], k) => {
  const o = 10 + 12 * k;
  head.setUint16(o, tag, true); head.setUint16(o + 2, type, true); head.setUint32(o + 4, count, true);
  if (type === 3 && count === 1) head.setUint16(o + 8, value, true); else head.setUint32(o + 8, value, true);
});
head.setUint32(10 + 12 * entries.length, 0, true);
for (let t = 0; t < nTiles; t++) {
  head.setUint32(offsetsAt + 4 * t, dataStart + t * tileBytes, true);
  head.setUint32(countsAt + 4 * t, tileBytes, true);
}
const t0 = Date.now();
const tmp = out + ".tmp";
const fd = openSync(tmp, "w");
writeSync(fd, new Uint8Array(head.buffer));
const rand = prng(15);
for (let t = 0; t < nTiles; t++) writeSync(fd, new Uint8Array(renderTile(rand).buffer));
closeSync(fd);
renameSync(tmp, out);
console.log(`${out}: ${side} × ${side} px, 16-bit, ${nTiles} tiles of ${TILE} px, ${((dataStart + nTiles * tileBytes) / 2 ** 20).toFixed(0)} MiB in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
