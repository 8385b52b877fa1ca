// Predicted target morphology (issue 16, SPATIA's generator): after a lasso pairing, the flow
// trained by `cellsymphony flow train` (the data folder's flow/, written by `cellsymphony flow
// sample --www`) predicts how group A's cells would look in the flow's target state, given the
// expression shift to each one's OT partner in group B. Drawn as rows of control (A cell) |
// generated | real partner (B cell) patches.
// Sampling goes through the page's runner (the package's module Worker by default, `?mode=main`
// on this thread); the page reads only flow.json's sizes itself.

/** Rows drawn (the first A cells of the pairing). */
const ROWS = 8;
/** Screen pixels per patch pixel. */
const ZOOM = 3;

/** Sets up the "Predict target morphology" button. `getPairs()` returns the lasso pairing
 * (`{control, target, matches}`, indices into the cells) or null. */
export async function setUpFlow({ data, meta, counts, useGpu, runner, getPairs, log }) {
  const button = document.getElementById("predict-morphology");
  const status = document.getElementById("flow-status");
  const canvas = document.getElementById("flow-canvas");
  const head = await fetch(data + "flow/flow.json");
  if (!head.ok) {
    status.textContent = "no flow model in the data folder (`cellsymphony flow sample --www <data>/flow` writes one)";
    return;
  }
  const flowJson = await head.text();
  const bytes = new Uint8Array(await (await fetch(data + "flow/model.safetensors")).arrayBuffer());
  const ref = await (await fetch(data + "flow/reference.json")).json();
  const patches = new Float32Array(await (await fetch(data + "flow/patches.f32")).arrayBuffer());
  const embedding = ref.cell_embedding ? new Float32Array(await (await fetch(data + "flow/cell_embedding.f32")).arrayBuffer()) : null;
  const device = useGpu ? "webgpu" : "cpu";
  const header = JSON.parse(flowJson);
  const patchRow = new Map(ref.cell_ids.map((id, i) => [String(id), i]));
  const s = header.spec.patch_px, s2 = s * s, g = meta.genes.length;
  const info = { transitions: header.transitions, cellDim: header.spec.cell_dim };
  log(`flow model: ${info.transitions.join(", ")}, ${s} px patches at ${header.um_per_px} µm/px, ` +
    `${header.config.solver} ${header.config.sample_steps} steps (sampled on ${device}, ${runner.mode})`);
  button.disabled = false;
  button.onclick = async () => {
    const pairs = getPairs();
    if (!pairs) { status.textContent = "pair two groups first (Lasso A, Lasso B, Pair)"; return; }
    document.body.dataset.flowStatus = "running";
    button.disabled = true;
    try {
      const k = Math.min(ROWS, pairs.control.length);
      const ctrl = pairs.control.slice(0, k), tgt = ctrl.map((_, i) => pairs.target[pairs.matches[i]]);
      const pick = (src, width, idx) => { const out = new Float32Array(idx.length * width); idx.forEach((r, j) => out.set(src.subarray(r * width, (r + 1) * width), j * width)); return out; };
      const rowOf = (cells) => cells.map((c) => {
        const r = patchRow.get(String(meta.cell_ids[c]));
        if (r === undefined) throw new Error(`cell ${meta.cell_ids[c]} has no patch in flow/patches.f32`);
        return r;
      });
      const inputs = { controlPatches: pick(patches, s2, rowOf(ctrl)), controlCounts: pick(counts, g, ctrl), targetCounts: pick(counts, g, tgt), genes: meta.genes };
      if (embedding) inputs.cellEmbedding = pick(embedding, info.cellDim, rowOf(ctrl));
      const t0 = performance.now();
      const res = await runner.sampleFlow(bytes, flowJson, inputs, { device });
      const ms = performance.now() - t0;
      const real = pick(patches, s2, rowOf(tgt));
      const drawnRows = drawGrid(canvas, s, [inputs.controlPatches, res.patches, real], k);
      status.textContent = `${k} A cells: control | predicted ${info.transitions[0]} | real B partner (${res.backend}, ${ms.toFixed(0)} ms)`;
      window.__cellsymphonyFlow = { n: k, backend: res.backend, mode: runner.mode, ms, finite: res.patches.every(Number.isFinite), drawnRows };
      document.body.dataset.flowStatus = "done";
    } catch (e) {
      status.textContent = `error: ${e && e.message ? e.message : e}`;
      window.__cellsymphonyFlow = { failure: String(e && e.message ? e.message : e) };
      document.body.dataset.flowStatus = "error";
    } finally {
      button.disabled = false;
    }
  };
}

/** Draws `rows` rows of patches `[rows, s²]` (values in [0, 1]) from each of `columns`. */
function drawGrid(canvas, s, columns, rows) {
  const gap = 4, cell = s * ZOOM;
  canvas.width = columns.length * (cell + gap);
  canvas.height = rows * (cell + gap);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#111"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  const img = ctx.createImageData(cell, cell);
  for (let r = 0; r < rows; r++) {
    columns.forEach((col, c) => {
      for (let y = 0; y < cell; y++) for (let x = 0; x < cell; x++) {
        const v = Math.round(255 * Math.min(1, Math.max(0, col[r * s * s + Math.floor(y / ZOOM) * s + Math.floor(x / ZOOM)])));
        const o = 4 * (y * cell + x);
        img.data[o] = img.data[o + 1] = img.data[o + 2] = v; img.data[o + 3] = 255;
      }
      ctx.putImageData(img, c * (cell + gap), r * (cell + gap));
    });
  }
  return rows;
}
