// Image-only slide in the page: the crop's DAPI TIFF bytes (no transcripts) → readTiff (the
// wasm TIFF reader) → detectNuclei (wasm) → the same nuclei as the native `detect-nuclei`
// on the same file (test.sh writes nuclei/dapi.tif and nuclei/native.csv into the bundle):
// identical count and every centroid within 1e-3 px (the CSV has 4 decimals). Also: the
// level reader picks a coarser level for a larger µm/px, and bad input throws naming the field.
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
  return {
    width: img.width, height: img.height, level: img.level, fileBytes: bytes.length, fileBytesRead: img.fileBytesRead,
    readMs: t1 - t0, detectMs: t2 - t1, sigmaPx: det.sigmaPx,
    centroidsPx: Array.from(det.centroidsPx), centroidsUm: Array.from(det.centroidsUm),
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
}
