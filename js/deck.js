// The cellsymphony package's deck.gl entry (`import { CellSymphonyLayer } from "cellsymphony/deck"`):
// one CompositeLayer that draws a morphology image, the cells coloured by predicted class
// (confidence as alpha and/or a threshold) and optimal-transport pairs as lines, with picking
// that returns the cell (id, class, confidence) or the pair. deck.gl (@deck.gl/core and
// @deck.gl/layers 9.x) is a peer dependency: the app's copy is used, never a bundled one, so the
// layer composes with the app's other layers (Viv's image layers included). Pure JS over the
// results of `classify` / `pairCells`: no wasm is loaded by this entry. Types: deck.d.ts.
import { CompositeLayer } from "@deck.gl/core";
import { BitmapLayer, LineLayer, ScatterplotLayer } from "@deck.gl/layers";
import { CellSymphonyError } from "./errors.js";

/** `classes[i]` of a cell without counts over the model's genes (as in `ClassifyResult`). */
export const UNCLASSIFIED = 4294967295;

/** Class colours (RGB), the web demo's palette: colour k is class k's (cycling past 20). */
export const PALETTE = Object.freeze([
  "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c", "#fabebe",
  "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000", "#ffd8b1", "#000075", "#808080",
].map((hex) => Object.freeze([1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)))));

/** The colour of class `k` in `palette` (default {@link PALETTE}), `[r, g, b]` or `[r, g, b, a]`. */
export function classColor(k, palette = PALETTE) {
  if (!Number.isInteger(k) || k < 0) throw new CellSymphonyError("input", `classColor: class index ${k} is not a non-negative integer`);
  return palette[k % palette.length];
}

/** `[r, g, b(, a)]` as a CSS colour (`#rrggbb`, or `rgba(…)` with an alpha below 255). */
export function cssColor(color) {
  const [r, g, b, a = 255] = color;
  if (a < 255) return `rgba(${r}, ${g}, ${b}, ${(a / 255).toFixed(3)})`;
  return "#" + [r, g, b].map((v) => v.toString(16).padStart(2, "0")).join("");
}

/** One row per class: its index, name, colour (`[r, g, b]` and CSS) and, when `classes` is
 * given, how many cells were predicted as it (unclassified cells are not counted). */
export function legend(classNames, classes, palette = PALETTE) {
  const counts = new Array(classNames.length).fill(0);
  if (classes) for (const c of classes) if (c < counts.length) counts[c]++;
  return classNames.map((name, index) => {
    const color = classColor(index, palette);
    return { index, name, color, css: cssColor(color), count: classes ? counts[index] : undefined };
  });
}

/** The pairs of a `pairCells(…, control, target, …)` call as cell rows: pair k joins cell
 * `control[k]` to cell `target[result.target[k]]` (both rows of the classified matrix). */
export function pairsFromResult(control, target, result) {
  const n = control.length;
  if (result.target.length !== n) {
    throw new CellSymphonyError("input", `pairsFromResult: result.target has ${result.target.length} pairs but control has ${n} cells: pass the control and target arrays given to pairCells`);
  }
  const source = new Uint32Array(n), dest = new Uint32Array(n);
  for (let k = 0; k < n; k++) {
    const t = result.target[k];
    if (t >= target.length) throw new CellSymphonyError("input", `pairsFromResult: result.target[${k}] = ${t} but target has ${target.length} cells`);
    source[k] = control[k];
    dest[k] = target[t];
  }
  return { source, target: dest, score: result.matchScore ? Float32Array.from(result.matchScore) : undefined };
}

function checkLength(name, array, want, what) {
  if (array && array.length !== want) {
    throw new CellSymphonyError("input", `CellSymphonyLayer: ${name} has ${array.length} elements, expected ${want} (${what})`);
  }
}

/** Which cells are drawn and their colours: `[visible cells]` row indices and `[visible*4]` RGBA. */
function cellColors(props) {
  const { classes, confidence, minConfidence, confidenceAlpha, lowConfidenceColor, palette } = props;
  const n = classes.length;
  const rows = new Uint32Array(n), colors = new Uint8Array(n * 4);
  let m = 0;
  for (let i = 0; i < n; i++) {
    const c = classes[i];
    const conf = confidence ? confidence[i] : 1;
    const low = c === UNCLASSIFIED || c >= props.classNames.length || conf < minConfidence;
    if (low && !lowConfidenceColor) continue;
    const col = low ? lowConfidenceColor : palette[c % palette.length];
    colors.set([col[0], col[1], col[2]], m * 4);
    let alpha = col.length > 3 ? col[3] : 255;
    if (!low && confidenceAlpha) alpha = Math.round(alpha * Math.min(1, Math.max(0.2, conf)));
    colors[m * 4 + 3] = alpha;
    rows[m++] = i;
  }
  return { rows: rows.subarray(0, m), colors: colors.subarray(0, m * 4) };
}

/** The cells as deck.gl binary data: `[visible*2]` positions. */
function cellPositions(positions, rows) {
  const out = new Float32Array(rows.length * 2);
  rows.forEach((r, k) => { out[2 * k] = positions[2 * r]; out[2 * k + 1] = positions[2 * r + 1]; });
  return out;
}

/** The pairs' end points as deck.gl binary data: `[pairs*2]` sources and targets. */
function pairEnds(positions, pairs) {
  const n = pairs.source.length;
  const src = new Float32Array(n * 2), dst = new Float32Array(n * 2);
  for (let k = 0; k < n; k++) {
    const s = pairs.source[k], t = pairs.target[k];
    src[2 * k] = positions[2 * s]; src[2 * k + 1] = positions[2 * s + 1];
    dst[2 * k] = positions[2 * t]; dst[2 * k + 1] = positions[2 * t + 1];
  }
  return { src, dst };
}

/** Cells coloured by predicted class over a morphology image, with OT pairs as lines. Positions
 * are in the layer's coordinates (µm with an OrthographicView, `imageBounds` in µm too; in a Viv
 * viewer, whose coordinates are the image's pixels, scale µm to pixels with `modelMatrix`).
 * Picking gives `info.object`: a {@link CellPick} or a {@link PairPick}. */
export class CellSymphonyLayer extends CompositeLayer {
  updateState({ props, oldProps, changeFlags }) {
    const changed = (...keys) => changeFlags.dataChanged || keys.some((k) => props[k] !== oldProps[k]);
    if (!changed("positions", "classes", "confidence", "classNames", "cellIds", "pairs", "minConfidence",
      "confidenceAlpha", "lowConfidenceColor", "palette")) return;
    const { positions, classes, confidence, cellIds, pairs } = props;
    if (!positions || !classes || !props.classNames) {
      throw new CellSymphonyError("input", "CellSymphonyLayer: positions, classes and classNames are required (classes from classify, classNames from the classifier's `classes`)");
    }
    const n = classes.length;
    checkLength("positions", positions, 2 * n, "x, y per cell");
    checkLength("confidence", confidence, n, "one per cell");
    checkLength("cellIds", cellIds, n, "one per cell");
    if (pairs) {
      checkLength("pairs.target", pairs.target, pairs.source.length, "one per pair");
      checkLength("pairs.score", pairs.score, pairs.source.length, "one per pair");
      for (const key of ["source", "target"]) {
        const k = pairs[key].findIndex((r) => r >= n);
        if (k >= 0) throw new CellSymphonyError("input", `CellSymphonyLayer: pairs.${key}[${k}] = ${pairs[key][k]} but there are ${n} cells`);
      }
    }
    const { rows, colors } = cellColors(props);
    this.setState({ rows, colors, cellXy: cellPositions(positions, rows), ends: pairs ? pairEnds(positions, pairs) : null });
  }

  /** What picking a cell row returns. */
  cellPick(row) {
    const { classes, classNames, confidence, cellIds } = this.props;
    const c = classes[row];
    const classified = c !== UNCLASSIFIED && c < classNames.length;
    return {
      kind: "cell", index: row, id: cellIds ? cellIds[row] : String(row),
      classIndex: classified ? c : null, className: classified ? classNames[c] : null,
      confidence: confidence ? confidence[row] : null,
    };
  }

  getPickingInfo({ info, sourceLayer }) {
    if (info.index < 0 || !sourceLayer) return info;
    if (sourceLayer.id === `${this.id}-cells`) {
      info.object = this.cellPick(this.state.rows[info.index]);
    } else if (sourceLayer.id === `${this.id}-pairs`) {
      const { pairs } = this.props, k = info.index;
      info.object = {
        kind: "pair", index: k, source: this.cellPick(pairs.source[k]), target: this.cellPick(pairs.target[k]),
        score: pairs.score ? pairs.score[k] : null,
      };
    }
    return info;
  }

  renderLayers() {
    const { image, imageBounds, cellRadius, cellRadiusMinPixels, pairColor, pairWidth, pairs } = this.props;
    const { rows, colors, cellXy, ends } = this.state;
    const layers = [];
    if (image && imageBounds) {
      layers.push(new BitmapLayer(this.getSubLayerProps({ id: "image", pickable: false }), { image, bounds: imageBounds }));
    }
    if (ends && pairs.source.length > 0) {
      layers.push(new LineLayer(this.getSubLayerProps({ id: "pairs" }), {
        data: { length: pairs.source.length, attributes: { getSourcePosition: { value: ends.src, size: 2 }, getTargetPosition: { value: ends.dst, size: 2 } } },
        getColor: pairColor, getWidth: pairWidth, widthUnits: "pixels",
      }));
    }
    layers.push(new ScatterplotLayer(this.getSubLayerProps({ id: "cells" }), {
      data: { length: rows.length, attributes: { getPosition: { value: cellXy, size: 2 }, getFillColor: { value: colors, size: 4, normalized: true } } },
      getRadius: cellRadius, radiusUnits: "common", radiusMinPixels: cellRadiusMinPixels,
    }));
    return layers;
  }
}

CellSymphonyLayer.layerName = "CellSymphonyLayer";
CellSymphonyLayer.defaultProps = {
  image: { type: "object", value: null },
  imageBounds: { type: "array", value: null, compare: true },
  positions: { type: "object", value: null, compare: false },
  classes: { type: "object", value: null, compare: false },
  classNames: { type: "array", value: null, compare: true },
  confidence: { type: "object", value: null, compare: false },
  cellIds: { type: "array", value: null, compare: false },
  pairs: { type: "object", value: null, compare: false },
  palette: { type: "array", value: PALETTE, compare: true },
  minConfidence: { type: "number", value: 0, min: 0, max: 1 },
  confidenceAlpha: { type: "boolean", value: true },
  lowConfidenceColor: { type: "color", value: [128, 128, 128, 160], optional: true },
  cellRadius: { type: "number", value: 4, min: 0 },
  cellRadiusMinPixels: { type: "number", value: 2, min: 0 },
  pairColor: { type: "color", value: [255, 255, 255, 200] },
  pairWidth: { type: "number", value: 1, min: 0 },
};
