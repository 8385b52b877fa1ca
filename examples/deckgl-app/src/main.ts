// A deck.gl app using the cellsymphony npm package: classify a web bundle's cells (main entry),
// pair Epithelial → Malignant cells by optimal transport, and draw both over the DAPI image
// with `CellSymphonyLayer` from "cellsymphony/deck" in an OrthographicView (coordinates in µm).
// Hover or click a cell or a pair line to see what picking returns. `?data=<url>/` points at a
// web bundle (cells.json, counts.f32, model.int8.safetensors, the image cells.json names); the
// result goes to `window.__app` (and the view to `window.__view`) for the test.
import { Deck, OrthographicView } from "@deck.gl/core";
import type { OrthographicViewState } from "@deck.gl/core";
import { CellSymphonyError, Classifier, pairCells } from "cellsymphony";
import { CellSymphonyLayer, legend, pairsFromResult, type CellSymphonyPick, type CellSymphonyPickingInfo, type LegendEntry } from "cellsymphony/deck";

interface Bundle {
  n_cells: number;
  genes: string[];
  cell_ids: string[];
  /** [cells][2] x, y µm. */
  centroids_um: [number, number][];
  image: { file: string; width: number; height: number; um_per_px: number; origin_um: [number, number] };
}

/** What the test reads. */
export interface AppResult {
  nCells: number;
  device: string;
  classNames: string[];
  classes: number[];
  confidence: number[];
  cellIds: string[];
  minConfidence: number;
  /** Cell radius, µm. */
  cellRadius: number;
  legend: LegendEntry[];
  pairColor: [number, number, number];
  /** Pairs as cell rows. */
  pairs: { control: number; target: number; source: number[]; dest: number[]; converged: boolean };
  canvas: { width: number; height: number };
  /** The error deck.gl's onError got for a layer with positions of the wrong length. */
  badInput: { name: string; code: string; message: string };
  /** Milliseconds: load + classify, pairing, the layer's first frame. */
  ms: { classify: number; pair: number; firstFrame: number };
  error?: string;
}

declare global {
  interface Window {
    __app?: AppResult | { error: string };
    /** Screen positions (CSS px in the canvas) of points in µm. */
    __view?: { project(points: [number, number][]): [number, number][] };
    __picks?: { hover: CellSymphonyPick | null; click: CellSymphonyPick | null };
  }
}

const WIDTH = 960, HEIGHT = 720;
const MIN_CONFIDENCE = 0.5;
const CELL_RADIUS_UM = 4;
// Pure green: no class colour and no DAPI grey is near it, so the test can find the lines.
const PAIR_COLOR: [number, number, number] = [0, 255, 0];

async function fetchBytes(url: string): Promise<ArrayBuffer> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.arrayBuffer();
}

/** Rows of the cells predicted as `name`. */
function cellsOf(classes: Uint32Array, classNames: readonly string[], name: string): Uint32Array {
  const k = classNames.indexOf(name);
  if (k < 0) throw new Error(`the model has no class "${name}" (classes: ${classNames.join(", ")})`);
  return Uint32Array.from([...classes.keys()].filter((i) => classes[i] === k));
}

function describe(p: CellSymphonyPick | null): string {
  if (!p) return "";
  const cell = (c: { id: string; className: string | null; confidence: number | null }): string =>
    `cell ${c.id}: ${c.className ?? "unclassified"} (${((c.confidence ?? 0) * 100).toFixed(0)} %)`;
  return p.kind === "cell" ? cell(p) : `pair ${p.index}\n  ${cell(p.source)}\n→ ${cell(p.target)}\n  score ${p.score?.toFixed(3)}`;
}

async function run(): Promise<AppResult> {
  const data = new URLSearchParams(location.search).get("data") ?? "data/";
  const bundle = (await (await fetch(data + "cells.json")).json()) as Bundle;
  const [countsBuf, modelBuf, imageBlob] = await Promise.all([
    fetchBytes(data + "counts.f32"), fetchBytes(data + "model.int8.safetensors"),
    fetch(data + bundle.image.file).then((r) => r.blob())]);
  const counts = new Float32Array(countsBuf);
  const n = bundle.n_cells;

  let t0 = performance.now();
  const clf = await Classifier.load(new Uint8Array(modelBuf));
  const res = await clf.classify(counts, n, bundle.genes);
  const ms = { classify: performance.now() - t0, pair: 0, firstFrame: 0 };
  t0 = performance.now();
  const control = cellsOf(res.classes, clf.classes, "Epithelial");
  const target = cellsOf(res.classes, clf.classes, "Malignant");
  const pr = await pairCells(counts, n, bundle.genes, control, target, { device: "cpu", allowUnconverged: true });
  const pairs = pairsFromResult(control, target, pr);
  ms.pair = performance.now() - t0;

  // Everything in µm: centroids as they are, the image placed by its origin and pixel size.
  const positions = Float32Array.from(bundle.centroids_um.flat());
  const { width, height, um_per_px: umPerPx, origin_um: [x0, y0] } = bundle.image;
  const w = width * umPerPx, h = height * umPerPx;
  t0 = performance.now();
  const image = await createImageBitmap(imageBlob);

  const picks: NonNullable<Window["__picks"]> = { hover: null, click: null };
  window.__picks = picks;
  const show = (p: CellSymphonyPick | null): void => { document.querySelector("#pick")!.textContent = describe(p); };
  const layer = new CellSymphonyLayer({
    id: "cellsymphony", image, imageBounds: [x0, y0 + h, x0 + w, y0],
    positions, classes: res.classes, confidence: res.confidence, classNames: clf.classes, cellIds: bundle.cell_ids,
    pairs, minConfidence: MIN_CONFIDENCE,
    // Exact class colours (the test looks for them in the canvas); the default fades by confidence.
    confidenceAlpha: false,
    cellRadius: CELL_RADIUS_UM, pairColor: [...PAIR_COLOR, 255], pairWidth: 2, pickable: true,
  });
  const viewState: OrthographicViewState = { target: [x0 + w / 2, y0 + h / 2, 0], zoom: Math.log2(Math.min(WIDTH / w, HEIGHT / h)) };
  let rendered!: () => void;
  const firstFrame = new Promise<void>((ok) => { rendered = ok; });
  let onError: (e: Error) => void = () => {};
  // First a copy of the layer with positions of the wrong length: deck.gl reports the layer's
  // typed error through onError (the test checks it); then the real layer.
  const deck = new Deck<OrthographicView>({
    parent: document.querySelector<HTMLDivElement>("#deck")!, width: WIDTH, height: HEIGHT,
    views: new OrthographicView({ id: "ortho" }), initialViewState: viewState, controller: true,
    layers: [layer.clone({ id: "bad-input", positions: positions.subarray(0, 10) })],
    // Thin pair lines are easier to hover within a few pixels (the nearest object wins).
    pickingRadius: 4,
    onHover: (info: CellSymphonyPickingInfo) => { picks.hover = info.object ?? null; show(picks.hover); },
    onClick: (info: CellSymphonyPickingInfo) => { picks.click = info.object ?? null; show(picks.click); },
    onAfterRender: () => { if (layer.isLoaded) rendered(); },
    onError: (e: Error) => onError(e),
  });
  const bad = await new Promise<Error | null>((ok) => { onError = ok; setTimeout(() => ok(null), 10000); });
  // deck.gl wraps a layer's error ("initialization of CellSymphonyLayer(…): …"); ours is the cause.
  const cause = bad?.cause;
  const badInput = cause instanceof CellSymphonyError ? { name: cause.name, code: cause.code, message: cause.message } : { name: String(bad), code: "", message: "" };
  const renderError = new Promise<never>((_, fail) => { onError = fail; });
  deck.setProps({ layers: [layer] });
  await Promise.race([firstFrame, renderError]);
  ms.firstFrame = performance.now() - t0;
  window.__view = {
    project: (points) => points.map((p) => {
      const [sx, sy] = deck.getViewports()[0]!.project(p);
      return [sx!, sy!];
    }),
  };

  const rows = legend(clf.classes, res.classes);
  document.querySelector("#legend tbody")!.innerHTML = rows.map((r) =>
    `<tr><td><span class="swatch" style="background:${r.css}"></span></td><td>${r.name}</td><td>${r.count}</td></tr>`).join("");
  document.querySelector("#pairs")!.textContent =
    `${control.length} Epithelial → ${target.length} Malignant cells: ${pr.iterations} Sinkhorn iterations (converged ${pr.converged}); ` +
    `cells under ${MIN_CONFIDENCE * 100} % confidence in grey`;
  return {
    nCells: n, device: clf.device, classNames: clf.classes, classes: Array.from(res.classes), confidence: Array.from(res.confidence),
    cellIds: bundle.cell_ids, minConfidence: MIN_CONFIDENCE, cellRadius: CELL_RADIUS_UM, legend: rows, pairColor: PAIR_COLOR,
    pairs: { control: control.length, target: target.length, source: Array.from(pairs.source), dest: Array.from(pairs.target), converged: pr.converged },
    canvas: { width: WIDTH, height: HEIGHT }, badInput, ms,
  };
}

run().then(
  (r) => { window.__app = r; document.body.dataset.status = "done"; },
  (e: unknown) => {
    window.__app = { error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
    document.querySelector("#pick")!.textContent = String(e);
    document.body.dataset.status = "error";
  });
