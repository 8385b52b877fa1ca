// The deck.gl example app (examples/deckgl-app, built by scripts/test_vite_app.sh from the npm
// tarball) in headless Chromium (WebGL2 through ANGLE on SwiftShader): it classifies the crop,
// pairs Epithelial → Malignant cells and draws CellSymphonyLayer over the DAPI image. Checks
// the canvas's pixels (every class drawn shows its colour, pair lines are drawn), then hovers
// and clicks a known cell and a pair line with the mouse and checks what picking returned.
//   node tests/browser/deckgl_app.mjs --dist <app>/dist --data out/test/www-data [--screenshot out/test/deckgl_app.png]
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { launchChromium, parseArgs, runPage, serveStatic } from "./launch.mjs";

const args = parseArgs();
const bundle = JSON.parse(readFileSync(resolve(args.data, "cells.json"), "utf8"));
const timeoutMs = Number(args.timeout || 120000);
const fail = (msg) => { throw new Error(msg); };
/** Pixels within this of a colour, per channel, count as it (antialiased edges do not). */
const TOLERANCE = 2;
/** Pixels a drawn class must show (a cell of radius 4 µm covers ~170 pixels here). */
const MIN_CLASS_PIXELS = 30;

/** Counts, in the PNG `b64`, the pixels of each colour in `colors` and reports for each point
 * of `points` whether a pixel of `colors[point.color]` lies within `point.r` of it. */
function analyse({ b64, colors, points, tolerance }) {
  return (async () => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const bmp = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
    const ctx = new OffscreenCanvas(bmp.width, bmp.height).getContext("2d");
    ctx.drawImage(bmp, 0, 0);
    const { data, width, height } = ctx.getImageData(0, 0, bmp.width, bmp.height);
    const is = (o, [r, g, b]) => Math.abs(data[o] - r) <= tolerance && Math.abs(data[o + 1] - g) <= tolerance && Math.abs(data[o + 2] - b) <= tolerance;
    const counts = colors.map(() => 0);
    for (let o = 0; o < data.length; o += 4) colors.forEach((c, k) => { if (is(o, c)) counts[k]++; });
    const hits = points.map(({ x, y, r, color }) => {
      for (let dy = -r; dy <= r; dy++) for (let dx = -r; dx <= r; dx++) {
        const px = Math.round(x) + dx, py = Math.round(y) + dy;
        if (px >= 0 && py >= 0 && px < width && py < height && is(4 * (py * width + px), colors[color])) return true;
      }
      return false;
    });
    return { counts, hits, width, height };
  })();
}

/** Distance from p to the segment a–b. */
function segmentDistance([px, py], [ax, ay], [bx, by]) {
  const dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
  const t = len2 ? Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / len2)) : 0;
  return Math.hypot(px - ax - t * dx, py - ay - t * dy);
}

const server = await serveStatic(resolve(args.dist), "index.html");
let browser;
try {
  browser = await launchChromium();
  const { page, result: r, ms } = await runPage(browser, `${server.base}index.html?data=data/`,
    { global: "__app", timeoutMs, viewport: { width: 1280, height: 760 } });
  const gl = await page.evaluate(() => {
    const c = document.querySelector("#deck canvas");
    const ctx = c?.getContext("webgl2");
    const ext = ctx?.getExtension("WEBGL_debug_renderer_info");
    return ctx ? `${ctx.getParameter(ctx.VERSION)}, ${ext ? ctx.getParameter(ext.UNMASKED_RENDERER_WEBGL) : "renderer hidden"}` : null;
  });
  console.log(`deck.gl app: ${r.nCells} cells on ${r.device}, ${r.pairs.control} Epithelial → ${r.pairs.target} Malignant pairs ` +
    `(converged ${r.pairs.converged}); ` +
    `load + classify ${r.ms.classify.toFixed(0)} ms, pair ${r.ms.pair.toFixed(0)} ms, first frame ${r.ms.firstFrame.toFixed(0)} ms, page done in ${ms} ms; ${gl}`);
  if (r.nCells !== bundle.n_cells) fail(`the app drew ${r.nCells} cells, the bundle has ${bundle.n_cells}`);
  const diff = r.classes.filter((c, i) => c !== bundle.native_predictions[i]).length;
  if (diff > 0) fail(`${diff} of ${r.nCells} classes differ from the native CPU engine's`);
  const bad = r.badInput;
  if (bad.name !== "CellSymphonyError" || bad.code !== "input" || !bad.message.includes("positions")) fail(`a layer with 5 positions gave ${JSON.stringify(bad)}`);
  console.log(`bad input: ${bad.code}: ${bad.message}`);
  if (r.pairs.source.length !== r.pairs.control || r.pairs.control === 0) fail(`${r.pairs.source.length} pairs for ${r.pairs.control} control cells`);

  // The canvas as the user sees it: a screenshot of its box.
  const box = await page.locator("#deck canvas").boundingBox();
  if (!box || Math.round(box.width) !== r.canvas.width) fail(`the deck canvas is ${JSON.stringify(box)}, expected ${r.canvas.width} px wide`);
  if (args.screenshot) await page.screenshot({ path: args.screenshot });
  const png = await page.screenshot({ clip: box });
  const screen = await page.evaluate((points) => window.__view.project(points), bundle.centroids_um);

  // Pair midpoints on screen that no cell covers (cells are drawn over the lines).
  const [u, v] = [0, 1].map((i) => bundle.centroids_um[i]);
  const pxPerUm = Math.hypot(screen[1][0] - screen[0][0], screen[1][1] - screen[0][1]) / Math.hypot(v[0] - u[0], v[1] - u[1]);
  const covered = ([x, y]) => screen.some((q) => Math.hypot(q[0] - x, q[1] - y) <= r.cellRadius * pxPerUm + 2);
  const pairs = r.pairs.source.map((s, k) => {
    const a = screen[s], b = screen[r.pairs.dest[k]];
    return { k, a, b, mid: [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2], len: Math.hypot(b[0] - a[0], b[1] - a[1]) };
  }).filter((p) => !covered(p.mid));
  const colors = [...r.legend.map((e) => e.color), r.pairColor];
  const lineColor = colors.length - 1;
  const { counts, hits, width } = await page.evaluate(analyse, {
    b64: png.toString("base64"), colors, tolerance: TOLERANCE,
    points: pairs.map((p) => ({ x: p.mid[0], y: p.mid[1], r: 1, color: lineColor })),
  });
  if (width !== r.canvas.width) fail(`screenshot is ${width} px wide, the canvas ${r.canvas.width}`);

  // Every class with at least 3 confident cells shows its colour.
  const drawn = r.classNames.map((_, k) => r.classes.filter((c, i) => c === k && r.confidence[i] >= r.minConfidence).length);
  const want = drawn.map((n, k) => (n >= 3 ? k : -1)).filter((k) => k >= 0);
  const shown = want.filter((k) => counts[k] >= MIN_CLASS_PIXELS);
  console.log(`class colours in the canvas: ${r.classNames.map((name, k) => `${name} ${counts[k]} px (${drawn[k]} cells)`).join(", ")}`);
  if (want.length < 5) fail(`only ${want.length} classes have 3 cells at confidence ≥ ${r.minConfidence}: the check would prove little`);
  if (shown.length !== want.length) {
    fail(`${shown.length} of ${want.length} drawn classes show their colour (≥ ${MIN_CLASS_PIXELS} px): missing ${want.filter((k) => !shown.includes(k)).map((k) => r.classNames[k])}`);
  }
  const lineHits = hits.filter(Boolean).length;
  console.log(`pair lines: ${counts[lineColor]} px of the line colour; ${lineHits} of ${pairs.length} pair midpoints outside cells show it`);
  if (pairs.length < 20 || lineHits < 0.9 * pairs.length) fail(`pair lines: ${lineHits} of ${pairs.length} midpoints outside cells show the line colour`);

  // Picking with the mouse: the most isolated confidently-classified cell (so its centre is its own).
  const nearest = (i) => Math.min(...screen.map((q, j) => (j === i ? Infinity : Math.hypot(q[0] - screen[i][0], q[1] - screen[i][1]))));
  const inside = ([x, y]) => x > 20 && y > 20 && x < r.canvas.width - 20 && y < r.canvas.height - 20;
  const candidates = r.classes.map((c, i) => i).filter((i) => r.confidence[i] >= r.minConfidence && inside(screen[i]));
  const cell = candidates.reduce((best, i) => (nearest(i) > nearest(best) ? i : best), candidates[0]);
  const picked = async (where, kind) => {
    await page.mouse.move(box.x + where[0], box.y + where[1]);
    await page.waitForFunction((k) => window.__picks?.hover?.kind === k, kind, { timeout: 10000 }).catch(() => {});
    await page.mouse.click(box.x + where[0], box.y + where[1]);
    await page.waitForFunction((k) => window.__picks?.click?.kind === k, kind, { timeout: 10000 }).catch(() => {});
    return page.evaluate(() => window.__picks);
  };
  const pc = await picked(screen[cell], "cell");
  const wantCell = { kind: "cell", index: cell, id: bundle.cell_ids[cell], className: bundle.classes[bundle.native_predictions[cell]] };
  for (const [name, p] of [["hover", pc.hover], ["click", pc.click]]) {
    if (!p || Object.entries(wantCell).some(([k, v]) => p[k] !== v) || Math.abs(p.confidence - r.confidence[cell]) > 1e-6) {
      fail(`${name} at cell ${cell} (${screen[cell].map((v) => v.toFixed(1))}) picked ${JSON.stringify(p)}, expected ${JSON.stringify(wantCell)}`);
    }
  }
  console.log(`picking cell ${cell} (${nearest(cell).toFixed(0)} px from the next): ${JSON.stringify(pc.click)}`);

  // A pair line: the longest whose midpoint showed the line colour.
  const line = pairs.filter((_, j) => hits[j]).sort((a, b) => b.len - a.len)[0];
  const pp = (await picked(line.mid, "pair")).click;
  if (pp?.kind !== "pair") fail(`clicking pair ${line.k}'s midpoint picked ${JSON.stringify(pp)}`);
  const [a, b] = [screen[pp.source.index], screen[pp.target.index]];
  if (segmentDistance(line.mid, a, b) > 3 || r.pairs.source[pp.index] !== pp.source.index || r.pairs.dest[pp.index] !== pp.target.index) {
    fail(`clicking pair ${line.k}'s midpoint picked pair ${pp.index} (${pp.source.index} → ${pp.target.index}), which does not pass there`);
  }
  if (pp.source.className !== "Epithelial" || pp.target.className !== "Malignant") fail(`picked pair joins ${pp.source.className} → ${pp.target.className}`);
  console.log(`picking pair ${pp.index}: ${pp.source.id} (${pp.source.className}) → ${pp.target.id} (${pp.target.className}), score ${pp.score?.toFixed(3)}`);
  if (args.screenshot) console.log(`screenshot: ${args.screenshot}`);
  console.log("deck.gl app: passed");
} finally {
  await browser?.close();
  server.close();
}
