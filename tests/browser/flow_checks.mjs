// Morphology generation in the browser (issue 16), checked in the page opened by
// browser_test.mjs against the native sampler: test.sh trains a small flow on the crop
// (Epithelial → Malignant) and runs `flow sample --engine cpu --www <data>/flow`, which writes
// the model, every cell's patch and the native samples of the held-out pairs.
// - The package's FlowModel on the wasm CPU engine and on WebGPU, conditioned in the page from
//   raw counts (gene names, log1p CP10k, Δg PCA, expression-PCA embedding), gives the native
//   latents and patches within the stated tolerances.
// - Bad input is rejected naming the field.
// - The demo's "Predict target morphology" after a lasso pairing draws control | generated |
//   real target rows (driven as a user would, after the lasso check paired two groups).
//   await flowChecks({ page, dataParam, screenshot, log: console.log });   // throws on a failure

/** Latents: wasm CPU vs native CPU (same Rust code; libm vs the platform's sin/cos/exp). */
export const CPU_TOLERANCE = 1e-4;
/** Latents and patches: WebGPU (f32 weights, other summation order) vs native CPU. */
export const GPU_TOLERANCE = 2e-3;

async function inPage(data) {
  const pkg = await import("../pkg/index.js");
  const get = async (f) => { const r = await fetch(data + f); if (!r.ok) throw new Error(`${data + f}: HTTP ${r.status}`); return r; };
  const f32 = async (f) => new Float32Array(await (await get(f)).arrayBuffer());
  const meta = await (await get("cells.json")).json();
  const counts = await f32("counts.f32");
  const ref = await (await get("flow/reference.json")).json();
  const modelBytes = new Uint8Array(await (await get("flow/model.safetensors")).arrayBuffer());
  const flowJson = await (await get("flow/flow.json")).text();
  const allPatches = await f32("flow/patches.f32");
  const refLatents = await f32("flow/reference_latents.f32");
  const refPatches = await f32("flow/reference_patches.f32");
  const embedding = ref.cell_embedding ? await f32("flow/cell_embedding.f32") : null;
  const g = meta.genes.length, s2 = ref.patch_px * ref.patch_px, n = ref.pairs.length;
  const metaRow = new Map(meta.cell_ids.map((id, i) => [String(id), i]));
  const patchRow = new Map(ref.cell_ids.map((id, i) => [String(id), i]));
  const rows = (src, width, idx) => { const out = new Float32Array(idx.length * width); idx.forEach((r, k) => out.set(src.subarray(r * width, (r + 1) * width), k * width)); return out; };
  const ctrlMeta = ref.pairs.map((p) => metaRow.get(String(p.ctrl_id)));
  const tgtMeta = ref.pairs.map((p) => metaRow.get(String(p.tgt_id)));
  const ctrlPatch = ref.pairs.map((p) => patchRow.get(String(p.ctrl_id)));
  if ([...ctrlMeta, ...tgtMeta, ...ctrlPatch].some((i) => i === undefined)) throw new Error("reference pairs name cells missing from cells.json / reference.json");
  const inputs = {
    controlPatches: rows(allPatches, s2, ctrlPatch),
    controlCounts: rows(counts, g, ctrlMeta),
    targetCounts: rows(counts, g, tgtMeta),
    genes: meta.genes,
    steps: ref.steps,
    solver: ref.solver.toLowerCase(),
  };
  if (embedding) inputs.cellEmbedding = rows(embedding, ref.cell_dim, ctrlPatch);
  const maxDiff = (a, b) => { let m = 0; for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i])); return m; };
  const maxAbs = (a) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const out = { n, steps: ref.steps, solver: ref.solver, refMaxAbs: maxAbs(refLatents) };
  const progress = [];
  for (const device of ["cpu", "webgpu"]) {
    let model;
    try {
      model = await pkg.FlowModel.load(modelBytes, flowJson, { device });
    } catch (e) {
      out[device] = { failure: `${e.code}: ${e.message}` };
      continue;
    }
    const t0 = performance.now();
    const res = await model.sample(inputs, { onProgress: (d, t) => progress.push([device, d, t]) });
    const ms = performance.now() - t0;
    out[device] = {
      backend: res.backend, ms, nOut: res.n,
      latentDiff: maxDiff(res.latents, refLatents), patchDiff: maxDiff(res.patches, refPatches),
      lengths: [res.latents.length, res.patches.length, refLatents.length, refPatches.length],
      finite: res.patches.every(Number.isFinite), transitions: model.transitions, genes: model.genes.length,
    };
    if (device === "cpu") {
      const bad = async (patch) => { try { await model.sample({ ...inputs, ...patch }); return "resolved"; } catch (e) { return `${e.code}: ${e.message}`; } };
      out.errors = {
        missingGene: await bad({ genes: meta.genes.map((x, i) => (i === 0 ? "NOT_A_GENE" : x)) }),
        transition: await bad({ transition: "Basal → Luminal" }),
        shortTarget: await bad({ targetCounts: inputs.targetCounts.subarray(1) }),
        unknownKey: await bad({ stepz: 3 }),
        solver: await bad({ solver: "rk4" }),
      };
      out.badJson = await pkg.FlowModel.load(modelBytes, "{\"spec\": 1}", { device: "cpu" }).then(() => "resolved", (e) => `${e.code}: ${e.message}`);
    }
    await model.free();
  }
  out.progress = progress;
  // pairCells' spatial term (SPATIA pairs within adjacent regions): the same two groups with
  // λ = 0.05 / µm give nearer pairs than without; λ without centroids is refused.
  const ctrlIdx = Uint32Array.from({ length: 150 }, (_, i) => i), tgtIdx = Uint32Array.from({ length: 250 }, (_, i) => 150 + i);
  const centroids = Float32Array.from(meta.centroids_um.flat());
  const plain = await pkg.pairCells(counts, meta.n_cells, meta.genes, ctrlIdx, tgtIdx, { centroids });
  const near = await pkg.pairCells(counts, meta.n_cells, meta.genes, ctrlIdx, tgtIdx, { centroids, spatialLambda: 0.05 });
  const noCentroids = await pkg.pairCells(counts, meta.n_cells, meta.genes, ctrlIdx, tgtIdx, { spatialLambda: 0.05 }).then(() => "resolved", (e) => `${e.code}: ${e.message}`);
  out.spatial = { plain: plain.meanDistanceUm, near: near.meanDistanceUm, lambda: near.spatialLambda, plainLambda: plain.spatialLambda, noCentroids };
  return out;
}

export async function flowChecks({ page, dataParam, screenshot, log }) {
  const r = await page.evaluate(inPage, dataParam);
  log(`flow (${r.n} held-out pairs, ${r.solver} ${r.steps} steps; native latents max |v| ${r.refMaxAbs.toFixed(3)}):`);
  for (const [device, tol] of [["cpu", CPU_TOLERANCE], ["webgpu", GPU_TOLERANCE]]) {
    const d = r[device];
    if (d.failure) {
      if (device === "webgpu" && process.env.CELLSYMPHONY_REQUIRE_WEBGPU !== "1") { log(`  flow on WebGPU SKIPPED: ${d.failure}`); continue; }
      throw new Error(`FlowModel on ${device}: ${d.failure}`);
    }
    log(`  ${device} (${d.backend}): ${d.ms.toFixed(0)} ms; max |Δ| vs native: latents ${d.latentDiff.toExponential(2)}, patches ${d.patchDiff.toExponential(2)} (tolerance ${tol})`);
    if (d.nOut !== r.n || d.lengths[0] !== d.lengths[2] || d.lengths[1] !== d.lengths[3]) throw new Error(`flow on ${device}: result sizes ${d.lengths} for ${r.n} pairs`);
    if (!d.finite) throw new Error(`flow on ${device}: non-finite patches`);
    const scale = Math.max(1, r.refMaxAbs);
    if (!(d.latentDiff <= tol * scale)) throw new Error(`flow on ${device}: latents differ from native by ${d.latentDiff} > ${tol * scale}`);
    if (!(d.patchDiff <= tol)) throw new Error(`flow on ${device}: patches differ from native by ${d.patchDiff} > ${tol}`);
  }
  const done = r.progress.filter((p) => p[0] === "cpu");
  if (done.length === 0 || done[done.length - 1][1] !== r.n || done[done.length - 1][2] !== r.n) throw new Error(`flow progress did not end at ${r.n}: ${JSON.stringify(done)}`);
  const sp = r.spatial;
  log(`  pairCells spatial term: mean pair distance ${sp.plain.toFixed(1)} µm without, ${sp.near.toFixed(1)} µm with λ ${sp.lambda.toPrecision(3)}/µm; without centroids: ${sp.noCentroids}`);
  if (!(sp.near < sp.plain && Math.abs(sp.lambda - 0.05) < 1e-6 && sp.plainLambda === null)) throw new Error(`pairCells spatial term: ${JSON.stringify(sp)}`);
  if (!sp.noCentroids.includes("centroids")) throw new Error(`pairCells spatialLambda without centroids: ${sp.noCentroids}`);
  const expect = (name, parts) => {
    const msg = name === "badJson" ? r.badJson : r.errors[name];
    log(`  bad input (${name}): ${msg}`);
    for (const p of parts) if (!msg.includes(p)) throw new Error(`flow bad input ${name}: ${JSON.stringify(msg)} lacks ${JSON.stringify(p)}`);
  };
  expect("missingGene", ["input: ", "genes", "not among"]);
  expect("transition", ["transition", "Basal → Luminal"]);
  expect("shortTarget", ["targetCounts"]);
  expect("unknownKey", ["stepz"]);
  expect("solver", ["solver", "rk4"]);
  expect("badJson", ["model: ", "flow.json"]);

  // The demo: after the lasso pairing, predict the target morphology of group A's first cells.
  await page.click("#predict-morphology");
  await page.waitForSelector("body[data-flow-status=done], body[data-flow-status=error]", { timeout: 120000 });
  const ui = await page.evaluate(() => window.__cellsymphonyFlow);
  if (ui.failure) throw new Error(`demo morphology prediction failed: ${ui.failure}`);
  log(`  demo: ${ui.n} pairs drawn (control | generated | real target) on ${ui.backend}, ${ui.mode}, in ${ui.ms.toFixed(0)} ms`);
  if (!(ui.n >= 1 && ui.finite && ui.drawnRows === ui.n)) throw new Error(`demo morphology prediction: ${JSON.stringify(ui)}`);
  if (screenshot) {
    const shot = screenshot.replace(/\.png$/, "") + "-flow.png";
    await page.locator("#flow-canvas").screenshot({ path: shot });
    log(`  demo flow grid screenshot: ${shot}`);
  }
}
