// The wasm boundary under abuse (issue 13): sizes that are not exact integers in range,
// null/undefined arguments, misspelt option keys, inputs over the per-call memory budget,
// all-zero cells, overlapping pairCells groups. Each bad call must reject with a clear Error
// (never a JS TypeError, never `RuntimeError: unreachable`), a good call must still work after
// each one, and the wasm memory must not grow over repeated calls.
// Called from browser_test.mjs: await boundaryChecks(page, dataParam).

export async function boundaryChecks(page, dataParam) {
  const r = await page.evaluate(async (data) => {
    const m = await import("../pkg/cellsymphony.js");
    const wasm = await m.default(); // already initialised by the page: returns its exports
    const memory = () => wasm.memory.buffer.byteLength;
    const meta = await (await fetch(data + "cells.json")).json();
    const counts = new Float32Array(await (await fetch(data + "counts.f32")).arrayBuffer());
    const modelBytes = new Uint8Array(await (await fetch(data + "model.int8.safetensors")).arrayBuffer());
    const bytes = async (f) => new Uint8Array(await (await fetch(data + f)).arrayBuffer());
    const [features, barcodes, matrix] = await Promise.all(["mex/features.tsv.gz", "mex/barcodes.tsv.gz", "mex/matrix.mtx.gz"].map(bytes));
    const n = meta.n_cells, genes = meta.genes, g = genes.length;
    const indptr = [0], indices = [], values = [];
    for (let c = 0; c < n; c++) {
      for (let j = 0; j < g; j++) { const v = counts[c * g + j]; if (v !== 0) { indices.push(j); values.push(v); } }
      indptr.push(values.length);
    }
    const csr = [new Uint32Array(indptr), new Uint32Array(indices), new Float32Array(values)];
    const clf = await m.Classifier.load(modelBytes, { useGpu: false });
    const gpu = !!(navigator.gpu && await navigator.gpu.requestAdapter());
    const gpuClf = gpu ? await m.Classifier.load(modelBytes, true) : null;
    const control = Uint32Array.from({ length: 80 }, (_, i) => i);
    const target = Uint32Array.from({ length: 80 }, (_, i) => 200 + i);

    const baseline = Array.from((await clf.classify(counts, n, genes)).classes);
    const same = (a) => a.length === baseline.length && a.every((c, i) => c === baseline[i]);
    const few = 48;
    const sameFew = (a) => a.length === few && a.every((c, i) => c === baseline[i]);
    let pairTarget = null;
    // The good calls of each family; each must give the same answer as the first time.
    const good = {
      classify: async () => same(Array.from((await clf.classify(counts, n, genes)).classes)),
      classifyCsr: async () => same(Array.from((await clf.classifyCsr(...csr, n, genes)).classes)),
      load: async () => {
        const c = await m.Classifier.load(modelBytes, false);
        try { return same(Array.from((await c.classify(counts, n, genes)).classes)); } finally { c.free(); }
      },
      // WebGPU on SwiftShader runs ~60 cells/s: the first `few` cells only.
      gpu: async () => !gpuClf || sameFew(Array.from((await gpuClf.classify(counts.subarray(0, few * g), few, genes)).classes)),
      pair: async () => {
        const t = Array.from((await m.pairCells(counts, n, genes, control, target, { useGpu: false })).target).join(",");
        if (pairTarget === null) pairTarget = t;
        return t === pairTarget;
      },
      read: async () => m.readXeniumMex(features, barcodes, matrix).nCells === n,
    };
    const goodCalls = async (families = Object.keys(good)) => {
      const bad = [];
      for (const f of families) {
        try { if (!(await good[f]())) bad.push(`${f} (different result)`); } catch (e) { bad.push(`${f}: ${e && e.message || e}`); }
      }
      return bad;
    };
    const familyOf = (name) => name.startsWith("csr") ? ["classifyCsr"] : name.startsWith("load") ? ["load", "gpu"]
      : name.startsWith("pair") ? ["pair"] : /^(mex|transcripts|cells|zarr)/.test(name) ? ["read"] : ["classify"];
    await goodCalls(); // warm-up: the wasm memory reaches the size these calls need
    await goodCalls();
    const memoryBefore = memory();

    // name → [call, parts the message must contain]
    const big = 5_000_000;
    const cases = {
      nCellsOver2to32: [() => clf.classify(counts, 2 ** 32 + 40, genes), ["nCells", "4294967336", "integer"]],
      nCellsNegative: [() => clf.classify(counts, -1, genes), ["nCells", "-1"]],
      nCellsFraction: [() => clf.classify(counts, n + 0.5, genes), ["nCells", `${n + 0.5}`]],
      nCellsString: [() => clf.classify(counts, String(n), genes), ["nCells", "string"]],
      nCellsNaN: [() => clf.classify(counts, NaN, genes), ["nCells", "NaN"]],
      nCellsNull: [() => clf.classify(counts, null, genes), ["`nCells` is missing"]],
      countsNull: [() => clf.classify(null, n, genes), ["`counts` is missing", "Float32Array"]],
      countsString: [() => clf.classify("1,2,3", n, genes), ["`counts`", "Float32Array"]],
      genesUndefined: [() => clf.classify(counts, n, undefined), ["`genes` is missing"]],
      geneNotString: [() => clf.classify(counts, n, [...genes.slice(0, 5), 7, ...genes.slice(6)]), ["`genes[5]`", "7"]],
      patchSizeOver: [() => clf.classify(counts, n, genes, undefined, new Float32Array(4), 2 ** 32 + 2), ["patchSize", "integer"]],
      csrNCellsOver: [() => clf.classifyCsr(...csr, 2 ** 32 + 40, genes), ["nCells", "4294967336"]],
      csrIndptrNull: [() => clf.classifyCsr(null, csr[1], csr[2], n, genes), ["`indptr` is missing"]],
      csrIndicesWrap: [() => clf.classifyCsr(csr[0], Array.from(csr[1], (v, i) => (i === 3 ? 2 ** 32 + v : v)), csr[2], n, genes), ["indices[3]", "integer"]],
      tooManyCells: [() => clf.classify(counts, big, genes), ["classify in chunks of at most", `${big} cells`, "MiB"]],
      tooManyCellsCsr: [() => clf.classifyCsr(...csr, big, genes), ["classify in chunks of at most", `${big} cells`]],
      loadMisspeltOption: [() => m.Classifier.load(modelBytes, { useGPU: true }), ["useGPU", "useGpu"]],
      loadNoUseGpu: [() => m.Classifier.load(modelBytes), ["`useGpu` is missing"]],
      loadNullBytes: [() => m.Classifier.load(null, false), ["`modelBytes` is missing"]],
      pairMisspeltOption: [() => m.pairCells(counts, n, genes, control, target, { useGPU: false }), ["pairCells options", "useGPU", "useGpu", "allowUnconverged"]],
      pairOverlapping: [() => m.pairCells(counts, n, genes, control, Uint32Array.from({ length: 80 }, (_, i) => 40 + i), { useGpu: false }), ["share 40 cells"]],
      pairNCellsOver: [() => m.pairCells(counts, 2 ** 32 + 40, genes, control, target), ["nCells", "4294967336"]],
      pairControlNull: [() => m.pairCells(counts, n, genes, null, target), ["`control` is missing"]],
      pairNegativeIndex: [() => m.pairCells(counts, n, genes, [-1, ...Array.from(control.subarray(1))], target), ["control[0]", "-1"]],
      pairOptionOver: [() => m.pairCells(counts, n, genes, control, target, { useGpu: false, pcaComponents: 2 ** 32 + 40 }), ["pairCells options", "4294967336"]],
      pairOptionFraction: [() => m.pairCells(counts, n, genes, control, target, { useGpu: false, minCells: 2.5 }), ["pairCells options", "2.5"]],
      pairOptionsString: [() => m.pairCells(counts, n, genes, control, target, "fast"), ["pairCells options", "string"]],
      pairProgressNotFunction: [() => m.pairCells(counts, n, genes, control, target, {}, 5), ["`progress`", "function"]],
      pairTooManyCells: [() => m.pairCells(counts, big, genes, control, target), ["pair in chunks of at most"]],
      mexNull: [() => m.readXeniumMex(null, barcodes, matrix), ["`features` is missing"]],
      transcriptsUndefined: [() => m.readXeniumTranscripts(undefined), ["`bytes` is missing"]],
      transcriptsMinQvString: [() => m.readXeniumTranscripts(new TextEncoder().encode("cell_id\n"), "20"), ["minQv", "string"]],
      cellsIdsNull: [() => m.readXeniumCells(features, null), ["`cellIds` is missing"]],
      zarrNotZip: [() => m.readXeniumZarr(new Uint8Array([80, 65, 82, 49])), ["cell_feature_matrix.zarr.zip", "not a zip"]],
    };
    const messages = {};
    const afterBad = {};
    for (const [name, [call, parts]] of Object.entries(cases)) {
      let msg = "accepted";
      try { await call(); } catch (e) {
        const kind = e instanceof TypeError ? "TypeError: " : e instanceof WebAssembly.RuntimeError ? "RuntimeError: " : "";
        msg = kind + String(e && e.message || e);
      }
      messages[name] = { msg, parts };
      afterBad[name] = await goodCalls(familyOf(name));
    }

    // A real input over the budget (lazily zeroed pages, never copied into wasm memory): the
    // message's chunk size is the largest call that fits.
    const fitMsg = messages.tooManyCells.msg;
    const fit = Number((/at most (\d+) cells/.exec(fitMsg) || [])[1]);
    let realBig = "accepted";
    if (fit > 0) {
      const huge = new Float32Array((fit + 1) * g);
      try { await clf.classify(huge, fit + 1, genes); } catch (e) { realBig = String(e && e.message || e); }
    }
    afterBad.realBig = await goodCalls(["classify"]);

    // All-zero cells: flagged unclassified (class 4294967295, confidence 0), the rest unchanged.
    const zeroed = counts.slice();
    const zeroCells = [0, 5, 17]; // < few
    for (const c of zeroCells) zeroed.fill(0, c * g, (c + 1) * g);
    const zeroRes = [];
    for (const [label, c, cells] of [["cpu", clf, n], ["webgpu", gpuClf, few]]) {
      if (!c) continue;
      const z = await c.classify(zeroed.subarray(0, cells * g), cells, genes);
      zeroRes.push({
        label,
        flagged: zeroCells.map((i) => z.unclassified[i]),
        classes: zeroCells.map((i) => z.classes[i]),
        confidence: zeroCells.map((i) => z.confidence[i]),
        othersSame: Array.from(z.classes).every((k, i) => zeroCells.includes(i) || k === baseline[i]),
        othersFlagged: Array.from(z.unclassified).filter((f, i) => f && !zeroCells.includes(i)).length,
      });
    }
    const allZero = await clf.classifyCsr(new Uint32Array(n + 1), new Uint32Array(0), new Float32Array(0), n, genes);
    const allZeroFlagged = Array.from(allZero.unclassified).filter((f) => f === 1).length;
    const allZeroMaxConf = Math.max(...allZero.confidence);

    for (let i = 0; i < 3; i++) afterBad[`repeat${i}`] = await goodCalls();
    const memoryAfter = memory();
    clf.free();
    if (gpuClf) gpuClf.free();
    return { messages, afterBad, realBig, fit, zeroRes, allZeroFlagged, allZeroMaxConf, memoryBefore, memoryAfter, n, gpu };
  }, dataParam);

  for (const [name, { msg, parts }] of Object.entries(r.messages)) {
    console.log(`boundary (${name}): ${msg}`);
    if (msg === "accepted") throw new Error(`boundary ${name}: the bad call was accepted`);
    if (msg.startsWith("TypeError") || msg.startsWith("RuntimeError")) throw new Error(`boundary ${name}: ${msg}`);
    for (const p of parts) if (!msg.includes(p)) throw new Error(`boundary ${name}: message ${JSON.stringify(msg)} lacks ${JSON.stringify(p)}`);
  }
  for (const [name, bad] of Object.entries(r.afterBad)) {
    if (bad.length > 0) throw new Error(`after ${name}, good calls changed or failed: ${bad.join(", ")}`);
  }
  console.log(`boundary: the same good call (classify, classifyCsr, load${r.gpu ? " + WebGPU classify" : ""}, pairCells or readXeniumMex) still works after each of ${Object.keys(r.messages).length} bad calls`);
  console.log(`boundary (real ${r.fit + 1}-cell array over the budget): ${r.realBig}`);
  if (!(r.fit > 1000) || !r.realBig.includes(`classify in chunks of at most ${r.fit} cells`)) {
    throw new Error(`an input of ${r.fit + 1} cells must be refused with the chunk size: ${r.realBig}`);
  }
  for (const z of r.zeroRes) {
    console.log(`all-zero cells (${z.label}): flags ${z.flagged}, classes ${z.classes}, confidence ${z.confidence}; other cells unchanged: ${z.othersSame}`);
    if (!z.flagged.every((f) => f === 1) || !z.classes.every((c) => c === 4294967295) || !z.confidence.every((c) => c === 0)) {
      throw new Error(`all-zero cells must be flagged unclassified with no class and confidence 0 (${z.label}): ${JSON.stringify(z)}`);
    }
    if (!z.othersSame || z.othersFlagged !== 0) throw new Error(`cells with counts changed next to all-zero cells (${z.label})`);
  }
  console.log(`all-zero CSR input: ${r.allZeroFlagged}/${r.n} cells unclassified, max confidence ${r.allZeroMaxConf}`);
  if (r.allZeroFlagged !== r.n || r.allZeroMaxConf !== 0) throw new Error("an all-zero input must leave every cell unclassified");
  const mib = (b) => (b / 2 ** 20).toFixed(1);
  console.log(`wasm memory: ${mib(r.memoryBefore)} MiB after warm-up, ${mib(r.memoryAfter)} MiB after ${Object.keys(r.messages).length} bad calls and ${Object.keys(r.afterBad).length + 1} rounds of good calls`);
  if (r.memoryAfter !== r.memoryBefore) throw new Error(`wasm memory grew over repeated calls: ${r.memoryBefore} → ${r.memoryAfter} bytes`);
}
