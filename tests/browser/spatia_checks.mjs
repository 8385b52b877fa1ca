// SPATIA's hierarchy in the browser (issue 14), checked in the page opened by browser_test.mjs
// against the native CPU engine: test.sh fine-tunes a tiny SPATIA model on one region, embeds
// the whole crop (k-means niche clusters), exports it with the niche centroids and runs
// `spatia classify --engine cpu --www <data>/spatia`, which writes the model file, every
// region's inputs and the native classes and niche clusters.
// - The package's SpatiaModel classifies every cell with context on the wasm CPU engine and on
//   WebGPU (the WGSL engine): the same class as native on all cells, the same niche cluster on
//   all niches, with progress after every tissue region. WebGPU without an adapter fails when
//   CELLSYMPHONY_REQUIRE_WEBGPU=1 and is reported SKIPPED otherwise.
// - The worker runner (pkg/client.js `CellSymphonyWorker.classifyWithContext`): same classes,
//   progress events, and a cancel that rejects with AbortError and leaves the worker usable.
// - Bad input is rejected naming the field.
//   await spatiaChecks({ page, dataParam, log: console.log });   // throws on a failure

async function inPage(data) {
  const pkg = await import("../pkg/index.js");
  const client = await import("../pkg/client.js");
  const get = async (f) => { const r = await fetch(data + "spatia/" + f); if (!r.ok) throw new Error(`${data}spatia/${f}: HTTP ${r.status}`); return r; };
  const f32 = async (f) => new Float32Array(await (await get(f)).arrayBuffer());
  const u32 = async (f) => new Uint32Array(await (await get(f)).arrayBuffer());
  const ref = await (await get("reference.json")).json();
  const bytes = new Uint8Array(await (await get("spatia.safetensors")).arrayBuffer());
  const inputs = {
    genes: await f32("genes.f32"), patches: await f32("patches.f32"), nicheTiles: await f32("niche_tiles.f32"),
    cellNiche: await u32("cell_niche.u32"), nicheSlot: await u32("niche_slot.u32"), nicheRegion: await u32("niche_region.u32"),
  };
  const compare = (res) => {
    let sameClass = 0, sameCluster = 0;
    for (let i = 0; i < ref.n_cells; i++) if (res.classes[i] === ref.classes[i]) sameClass++;
    for (let k = 0; k < ref.n_niches; k++) if (res.nicheClusters[k] === ref.niche_clusters[k]) sameCluster++;
    return { sameClass, sameCluster, lengths: [res.classes.length, res.probabilities.length, res.nicheClusters.length] };
  };
  const out = { nCells: ref.n_cells, nNiches: ref.n_niches, engines: {} };
  for (const device of ["cpu", "webgpu"]) {
    let model;
    try {
      model = await pkg.SpatiaModel.load(bytes, { device });
    } catch (e) {
      out.engines[device] = { failure: `${e.code}: ${e.message}` };
      continue;
    }
    const progress = [];
    const t0 = performance.now();
    const res = await model.classifyWithContext(inputs, { onProgress: (done, total) => progress.push([done, total]) });
    const ms = performance.now() - t0;
    out.engines[device] = { ...compare(res), ms, backend: model.backend, device: model.device, levels: model.levels, clusters: model.nicheClusterCount, nClasses: model.classes.length, progress };
    if (device === "cpu") {
      const bad = async (patch) => { try { await model.classifyWithContext({ ...inputs, ...patch }); return "resolved"; } catch (e) { return `${e.code}: ${e.message}`; } };
      out.errors = {
        shortGenes: await bad({ genes: inputs.genes.subarray(1) }),
        unknownKey: await bad({ nicheTile: inputs.nicheTiles }),
        badNiche: await bad({ cellNiche: inputs.cellNiche.map(() => ref.n_niches) }),
      };
    }
    await model.free();
  }
  out.badFile = await pkg.SpatiaModel.load(bytes.subarray(0, 1000), { device: "cpu" }).then(() => "resolved", (e) => `${e.code}: ${e.message}`);
  out.badDevice = await pkg.SpatiaModel.load(bytes, { device: "tpu" }).then(() => "resolved", (e) => `${e.code}: ${e.message}`);

  // The worker: same classes, progress, cancel (the worker restarts and answers again).
  const cs = new client.CellSymphonyWorker();
  try {
    const events = [];
    const t0 = performance.now();
    const res = await cs.classifyWithContext(bytes, inputs, { device: "cpu", onProgress: (p) => events.push(p) });
    out.worker = { ...compare(res), ms: performance.now() - t0, events, device: res.device };
    const ctl = new AbortController();
    const cancelled = cs.classifyWithContext(bytes, inputs, { device: "cpu", signal: ctl.signal, onProgress: () => ctl.abort() });
    out.worker.cancel = await cancelled.then(() => "resolved", (e) => `${e.name}: ${e.message}`);
    const again = await cs.classifyWithContext(bytes, inputs, { device: "cpu" });
    out.worker.afterCancel = compare(again).sameClass;
  } finally {
    cs.terminate();
  }
  return out;
}

export async function spatiaChecks({ page, dataParam, log }) {
  const r = await page.evaluate(inPage, dataParam);
  for (const device of ["cpu", "webgpu"]) {
    const e = r.engines[device];
    if (e.failure) {
      if (device === "webgpu" && process.env.CELLSYMPHONY_REQUIRE_WEBGPU !== "1") { log(`SPATIA on WebGPU SKIPPED: ${e.failure}`); continue; }
      throw new Error(`SpatiaModel on ${device}: ${e.failure}`);
    }
    log(`SPATIA classify-with-context on ${device} (${e.levels}, ${e.backend}): ${r.nCells} cells, ${r.nNiches} niches in ${e.ms.toFixed(0)} ms; ` +
      `same class as native on ${e.sameClass}/${r.nCells} cells, same niche cluster (${e.clusters} centroids) on ${e.sameCluster}/${r.nNiches} niches`);
    if (e.device !== device) throw new Error(`SpatiaModel loaded with device ${device} reports device ${e.device}`);
    if (e.lengths[0] !== r.nCells || e.lengths[1] !== r.nCells * e.nClasses || e.lengths[2] !== r.nNiches) throw new Error(`SPATIA result sizes ${e.lengths}`);
    if (e.sameClass !== r.nCells) throw new Error(`SPATIA on ${device}: ${r.nCells - e.sameClass} cells differ from native`);
    if (e.clusters < 1 || e.sameCluster !== r.nNiches) throw new Error(`SPATIA niche map on ${device}: ${r.nNiches - e.sameCluster} niches differ from native (${e.clusters} centroids)`);
    const last = e.progress[e.progress.length - 1];
    if (!last || last[0] !== last[1] || e.progress.length !== last[1]) throw new Error(`SPATIA progress on ${device}: ${JSON.stringify(e.progress)}`);
  }
  const w = r.worker;
  log(`SPATIA in the worker (${w.device}): ${w.sameClass}/${r.nCells} cells as native in ${w.ms.toFixed(0)} ms, ${w.events.length} progress events; cancel → ${w.cancel}; after the cancel ${w.afterCancel}/${r.nCells}`);
  if (w.sameClass !== r.nCells || w.afterCancel !== r.nCells) throw new Error("SPATIA in the worker differs from native");
  const lastEvent = w.events[w.events.length - 1];
  if (!lastEvent || lastEvent.phase !== "spatia" || lastEvent.done !== lastEvent.total) throw new Error(`SPATIA worker progress: ${JSON.stringify(w.events)}`);
  if (!w.cancel.startsWith("AbortError")) throw new Error(`SPATIA worker cancel: ${w.cancel}`);
  const expect = (name, msg, parts) => {
    log(`  bad input (${name}): ${msg}`);
    for (const p of parts) if (!msg.includes(p)) throw new Error(`SPATIA bad input ${name}: ${JSON.stringify(msg)} lacks ${JSON.stringify(p)}`);
  };
  expect("shortGenes", r.errors.shortGenes, ["input: ", "genes"]);
  expect("unknownKey", r.errors.unknownKey, ["input: ", "nicheTile"]);
  expect("badNiche", r.errors.badNiche, ["input: ", "cellNiche"]);
  expect("badFile", r.badFile, ["model: "]);
  expect("badDevice", r.badDevice, ["options: ", "tpu"]);
}
