// SPATIA's hierarchy in the browser (issue 14), checked in the page opened by browser_test.mjs
// against the native CPU engine: test.sh fine-tunes a tiny SPATIA model on one region, embeds
// the whole crop (k-means niche clusters), exports it with the niche centroids and runs
// `spatia classify --engine cpu --www <data>/spatia`, which writes the model file, every
// region's inputs and the native classes and niche clusters.
// - The package's SpatiaModel (wasm CPU engine) classifies every cell with context: the same
//   class as native on all cells, the same niche cluster on all niches.
// - Bad input is rejected naming the field.
//   await spatiaChecks({ page, dataParam, log: console.log });   // throws on a failure

async function inPage(data) {
  const pkg = await import("../pkg/index.js");
  const get = async (f) => { const r = await fetch(data + "spatia/" + f); if (!r.ok) throw new Error(`${data}spatia/${f}: HTTP ${r.status}`); return r; };
  const f32 = async (f) => new Float32Array(await (await get(f)).arrayBuffer());
  const u32 = async (f) => new Uint32Array(await (await get(f)).arrayBuffer());
  const ref = await (await get("reference.json")).json();
  const bytes = new Uint8Array(await (await get("spatia.safetensors")).arrayBuffer());
  const inputs = {
    genes: await f32("genes.f32"), patches: await f32("patches.f32"), nicheTiles: await f32("niche_tiles.f32"),
    cellNiche: await u32("cell_niche.u32"), nicheSlot: await u32("niche_slot.u32"), nicheRegion: await u32("niche_region.u32"),
  };
  const model = await pkg.SpatiaModel.load(bytes);
  const t0 = performance.now();
  const res = await model.classifyWithContext(inputs);
  const ms = performance.now() - t0;
  let sameClass = 0, sameCluster = 0;
  for (let i = 0; i < ref.n_cells; i++) if (res.classes[i] === ref.classes[i]) sameClass++;
  for (let k = 0; k < ref.n_niches; k++) if (res.nicheClusters[k] === ref.niche_clusters[k]) sameCluster++;
  const bad = async (patch) => { try { await model.classifyWithContext({ ...inputs, ...patch }); return "resolved"; } catch (e) { return `${e.code}: ${e.message}`; } };
  const errors = {
    shortGenes: await bad({ genes: inputs.genes.subarray(1) }),
    unknownKey: await bad({ nicheTile: inputs.nicheTiles }),
    badNiche: await bad({ cellNiche: inputs.cellNiche.map(() => ref.n_niches) }),
  };
  const badFile = await pkg.SpatiaModel.load(bytes.subarray(0, 1000)).then(() => "resolved", (e) => `${e.code}: ${e.message}`);
  const out = {
    nCells: ref.n_cells, nNiches: ref.n_niches, sameClass, sameCluster, ms, backend: model.backend, levels: model.levels,
    clusters: model.nicheClusterCount, lengths: [res.classes.length, res.probabilities.length, res.nicheClusters.length],
    nClasses: model.classes.length, errors, badFile,
  };
  await model.free();
  return out;
}

export async function spatiaChecks({ page, dataParam, log }) {
  const r = await page.evaluate(inPage, dataParam);
  log(`SPATIA classify-with-context (${r.levels}, ${r.backend}): ${r.nCells} cells, ${r.nNiches} niches in ${r.ms.toFixed(0)} ms; ` +
    `same class as native on ${r.sameClass}/${r.nCells} cells, same niche cluster (${r.clusters} centroids) on ${r.sameCluster}/${r.nNiches} niches`);
  if (r.lengths[0] !== r.nCells || r.lengths[1] !== r.nCells * r.nClasses || r.lengths[2] !== r.nNiches) throw new Error(`SPATIA result sizes ${r.lengths}`);
  if (r.sameClass !== r.nCells) throw new Error(`SPATIA in the browser: ${r.nCells - r.sameClass} cells differ from native`);
  if (r.clusters < 1 || r.sameCluster !== r.nNiches) throw new Error(`SPATIA niche map: ${r.nNiches - r.sameCluster} niches differ from native (${r.clusters} centroids)`);
  const expect = (name, msg, parts) => {
    log(`  bad input (${name}): ${msg}`);
    for (const p of parts) if (!msg.includes(p)) throw new Error(`SPATIA bad input ${name}: ${JSON.stringify(msg)} lacks ${JSON.stringify(p)}`);
  };
  expect("shortGenes", r.errors.shortGenes, ["input: ", "genes"]);
  expect("unknownKey", r.errors.unknownKey, ["input: ", "nicheTile"]);
  expect("badNiche", r.errors.badNiche, ["input: ", "cellNiche"]);
  expect("badFile", r.badFile, ["model: "]);
}
