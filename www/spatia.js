// SPATIA's hierarchy in the demo (issue 14): "classify with context" (each cell's type from its
// own expression and nucleus patch, its niche's tile and the niches of its tissue region) as a
// colour-by layer, and the "niche map": every niche coloured by its cluster of z_niche (nearest
// of the k-means centroids stored in the model file) over the DAPI image.
// Reads the data folder's spatia/ (written by `cellsymphony spatia classify --www <data>/spatia`)
// and runs the package's SpatiaModel on this thread (device "auto": WebGPU on a hardware adapter,
// else the wasm CPU engine; the crop takes a fraction of a second, so the page does not move it
// to the worker, which `CellSymphonyWorker.classifyWithContext` offers for whole slides).

/**
 * Loads and runs the SPATIA bundle, or returns null when the data folder has none.
 * @param {string} data the data folder URL (ends with "/")
 * @param {{cell_ids: (string|number)[], n_cells: number}} meta cells.json
 * @returns {Promise<null | {names: string[], colours: Int32Array, niches: {rectsUm: number[][], clusters: Int32Array, k: number},
 *   ms: number, sameAsNative: number, nCells: number, nNiches: number, levels: string, backend: string}>}
 *   `colours[i]`: SPATIA's class of the page's cell i, −1 for cells outside every tissue region.
 */
export async function loadSpatia(data, meta, log) {
  const get = async (f) => {
    const r = await fetch(data + "spatia/" + f);
    if (!r.ok) throw new Error(`${data}spatia/${f}: HTTP ${r.status}`);
    return r;
  };
  const head = await fetch(data + "spatia/reference.json");
  if (!head.ok) return null; // optional layer
  const ref = await head.json();
  const f32 = async (f) => new Float32Array(await (await get(f)).arrayBuffer());
  const u32 = async (f) => new Uint32Array(await (await get(f)).arrayBuffer());
  const pkg = await import("../pkg/index.js");
  const bytes = new Uint8Array(await (await get("spatia.safetensors")).arrayBuffer());
  const inputs = {
    genes: await f32("genes.f32"), patches: await f32("patches.f32"), nicheTiles: await f32("niche_tiles.f32"),
    cellNiche: await u32("cell_niche.u32"), nicheSlot: await u32("niche_slot.u32"), nicheRegion: await u32("niche_region.u32"),
  };
  const model = await pkg.SpatiaModel.load(bytes);
  try {
    const t0 = performance.now();
    const res = await model.classifyWithContext(inputs);
    const ms = performance.now() - t0;
    const row = new Map(meta.cell_ids.map((id, i) => [String(id), i]));
    const colours = new Int32Array(meta.n_cells).fill(-1);
    let sameAsNative = 0;
    ref.cell_ids.forEach((id, j) => {
      const i = row.get(String(id));
      if (i === undefined) throw new Error(`spatia/reference.json: cell ${id} is not in cells.json (re-run \`spatia classify --www\` on the same slide)`);
      colours[i] = res.classes[j];
      if (res.classes[j] === ref.classes[j]) sameAsNative++;
    });
    const rects = ref.niche_rects_um;
    if (!Array.isArray(rects) || rects.length !== ref.n_niches) throw new Error("spatia/reference.json: niche_rects_um is missing (re-run `spatia classify --www`)");
    const k = model.nicheClusterCount;
    log(`SPATIA classify with context (${model.levels} levels, ${model.backend}): ${ref.n_cells} cells and ${ref.n_niches} niches in ${ms.toFixed(0)} ms; ` +
      `same class as native on ${sameAsNative}/${ref.n_cells}; niche map: ${k} clusters of z_niche`);
    return {
      names: model.classes, colours, niches: { rectsUm: rects, clusters: Int32Array.from(res.nicheClusters), k },
      ms, sameAsNative, nCells: ref.n_cells, nNiches: ref.n_niches, levels: model.levels, backend: model.backend,
    };
  } finally {
    model.free();
  }
}

/** Niche colours: a qualitative set distinct from the cell palette's first entries. */
const NICHE_COLOURS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"];

/** Fills each niche's square with its cluster's colour (translucent) and outlines it. */
export function drawNicheMap(ctx, meta, niches) {
  const { um_per_px, origin_um } = meta.image;
  ctx.save();
  niches.rectsUm.forEach(([x, y, w, h], n) => {
    const c = niches.clusters[n];
    if (c < 0) return;
    const px = (x - origin_um[0]) / um_per_px, py = (y - origin_um[1]) / um_per_px;
    const colour = NICHE_COLOURS[c % NICHE_COLOURS.length];
    ctx.globalAlpha = 0.35; ctx.fillStyle = colour; ctx.fillRect(px, py, w / um_per_px, h / um_per_px);
    ctx.globalAlpha = 0.9; ctx.strokeStyle = colour; ctx.lineWidth = 1; ctx.strokeRect(px, py, w / um_per_px, h / um_per_px);
  });
  ctx.restore();
}

/** The niche map's legend: one swatch and niche count per cluster. */
export function nicheLegend(el, niches) {
  const counts = new Array(niches.k).fill(0);
  for (const c of niches.clusters) if (c >= 0) counts[c]++;
  el.innerHTML = counts.map((n, c) =>
    `<span class="swatch" style="background:${NICHE_COLOURS[c % NICHE_COLOURS.length]}"></span> niche cluster ${c} (${n} niches)`).join("<br>");
  return counts;
}
