// Types of deck.js: the deck.gl entry of the cellsymphony package ("cellsymphony/deck").
// deck.gl 9 (@deck.gl/core, @deck.gl/layers) is a peer dependency: these types are the app's.
import { CompositeLayer } from "@deck.gl/core";
import type { Color, CompositeLayerProps, DefaultProps, GetPickingInfoParams, Layer, PickingInfo, TextureSource } from "@deck.gl/core";
import type { PairResult } from "./index.js";

/** `classes[i]` of a cell without counts over the model's genes (as in `ClassifyResult`). */
export declare const UNCLASSIFIED: 4294967295;

/** An RGB colour, channels 0–255. */
export type Rgb = readonly [number, number, number];

/** Class colours (the web demo's 20): colour k is class k's, cycling past 20. */
export declare const PALETTE: readonly Rgb[];

/** The colour of class `k` in `palette` (default {@link PALETTE}). Throws a
 * `CellSymphonyError` ("input") when `k` is not a non-negative integer. */
export declare function classColor(k: number, palette?: readonly Color[]): Color;

/** `[r, g, b]` as `#rrggbb`; `[r, g, b, a]` with `a < 255` as `rgba(…)`. */
export declare function cssColor(color: Color): string;

/** A legend row: class index, name, colour and (when the classes were given) its cell count. */
export interface LegendEntry {
  index: number;
  name: string;
  color: Color;
  /** `color` as CSS (`#rrggbb`). */
  css: string;
  /** Cells predicted as this class (`undefined` when `legend` got no `classes`). */
  count: number | undefined;
}

/** One {@link LegendEntry} per class name, coloured as the layer colours them. */
export declare function legend(classNames: readonly string[], classes?: ArrayLike<number>, palette?: readonly Color[]): LegendEntry[];

/** Pairs as cell rows of the classified matrix: pair k joins `source[k]` to `target[k]`. */
export interface CellPairs {
  /** [pairs] row of each pair's control cell. */
  source: Uint32Array;
  /** [pairs] row of each pair's target cell. */
  target: Uint32Array;
  /** [pairs] each pair's match score (`PairResult.matchScore`). */
  score?: Float32Array;
}

/** The pairs of `pairCells(counts, nCells, genes, control, target)` as cell rows: pair k joins
 * `control[k]` to `target[result.target[k]]`. Throws a `CellSymphonyError` ("input") when
 * `result` does not belong to `control` and `target`. */
export declare function pairsFromResult(control: ArrayLike<number>, target: ArrayLike<number>, result: Pick<PairResult, "target"> & Partial<Pick<PairResult, "matchScore">>): CellPairs;

/** The layer's own props (its deck.gl base props: {@link CellSymphonyLayerProps}). */
export interface CellSymphonyLayerOwnProps {
  /** The morphology image (e.g. a DAPI `ImageBitmap`, `ImageData`, `HTMLImageElement`,
   * `HTMLCanvasElement` or a URL), drawn under the cells by a BitmapLayer. */
  image?: string | TextureSource | null;
  /** Where the image goes, in the layer's coordinates: `[left, bottom, right, top]` (with an
   * OrthographicView, y down: `[x0, y0 + height, x0 + width, y0]`). No image without it. */
  imageBounds?: readonly [number, number, number, number] | null;
  /** [cells*2] x, y per cell in the layer's coordinates (e.g. µm centroids). */
  positions: Float32Array | Float64Array;
  /** [cells] predicted class per cell (`ClassifyResult.classes`). */
  classes: Uint32Array | readonly number[];
  /** Class names (the classifier's `classes`): `classes[i]` indexes them. */
  classNames: readonly string[];
  /** [cells] confidence per cell (`ClassifyResult.confidence`); without it every cell counts as 1. */
  confidence?: Float32Array | null;
  /** [cells] cell ids that picking returns (default: the row as a string). */
  cellIds?: readonly string[] | null;
  /** OT pairs drawn as lines under the cells (see {@link pairsFromResult}). */
  pairs?: CellPairs | null;
  /** Class colours (default {@link PALETTE}). */
  palette?: readonly Color[];
  /** Cells below this confidence (and unclassified cells) are drawn in `lowConfidenceColor`
   * (default 0). */
  minConfidence?: number;
  /** Alpha = the colour's alpha × confidence (at least 0.2) for cells at or above
   * `minConfidence` (default true). */
  confidenceAlpha?: boolean;
  /** Colour of cells under `minConfidence` (default `[128, 128, 128, 160]`); `null` hides them. */
  lowConfidenceColor?: Color | null;
  /** Cell radius in the layer's units (default 4). */
  cellRadius?: number;
  /** Smallest cell radius on screen, pixels (default 2). */
  cellRadiusMinPixels?: number;
  /** Pair line colour (default `[255, 255, 255, 200]`). */
  pairColor?: Color;
  /** Pair line width, pixels (default 1). */
  pairWidth?: number;
}

export type CellSymphonyLayerProps = CellSymphonyLayerOwnProps & CompositeLayerProps;

/** A picked cell. */
export interface CellPick {
  kind: "cell";
  /** Row of the cell in the classified matrix. */
  index: number;
  /** `cellIds[index]`, or the row as a string without `cellIds`. */
  id: string;
  /** Predicted class (`null` when unclassified). */
  classIndex: number | null;
  className: string | null;
  /** `null` without `confidence`. */
  confidence: number | null;
}

/** A picked pair line. */
export interface PairPick {
  kind: "pair";
  /** Pair index (`pairs.source[index]` → `pairs.target[index]`). */
  index: number;
  source: CellPick;
  target: CellPick;
  /** `null` without `pairs.score`. */
  score: number | null;
}

export type CellSymphonyPick = CellPick | PairPick;
/** What `onHover` / `onClick` / `deck.pickObject` give for this layer. */
export type CellSymphonyPickingInfo = PickingInfo<CellSymphonyPick>;

/** Cells coloured by predicted class over a morphology image, OT pairs as lines; picking gives
 * a {@link CellSymphonyPick} as `info.object`. Sub-layers: `<id>-image` (BitmapLayer),
 * `<id>-pairs` (LineLayer), `<id>-cells` (ScatterplotLayer). A prop of the wrong length makes
 * deck.gl call `onError` with an Error whose `cause` is a `CellSymphonyError` ("input") naming it. */
export declare class CellSymphonyLayer extends CompositeLayer<CellSymphonyLayerOwnProps> {
  static layerName: string;
  static defaultProps: DefaultProps<CellSymphonyLayerProps>;
  constructor(props: CellSymphonyLayerProps, ...more: Partial<CellSymphonyLayerProps>[]);
  getPickingInfo(params: GetPickingInfoParams): CellSymphonyPickingInfo;
  renderLayers(): Layer[];
}
