// Types of the cellsymphony package's main entry (index.js); the worker entry
// ("cellsymphony/worker", client.d.ts) shares them.

/** Where a classifier runs: "auto" = WebGPU where a hardware adapter is found, else the CPU
 * engine (a software adapter such as SwiftShader counts as none); "webgpu" requires an adapter. */
export type Device = "auto" | "webgpu" | "cpu";
/** The device a classifier was loaded on. */
export type LoadedDevice = "webgpu" | "cpu";
export type Architecture = "gene_only" | "spatial" | "dual_modality" | "multi_input" | "image_only";

/** What a {@link CellSymphonyError} says to fix. */
export type ErrorCode = "model" | "device" | "options" | "input" | "worker";

/** Every failure of the package's calls (a cancel rejects with a `DOMException` named "AbortError"). */
export declare class CellSymphonyError extends Error {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown });
  readonly name: "CellSymphonyError";
  /** "model": the file cannot be loaded; "device": "webgpu" without an adapter; "options": an
   * unknown device or option; "input": arrays rejected by the engine (the message names the
   * array, element and value); "worker": the worker failed or was terminated. */
  readonly code: ErrorCode;
}

export interface LoadOptions {
  /** Default "auto". */
  device?: Device;
  /** The older spelling: `true` = "webgpu", `false` = "cpu" (`device` wins). */
  useGpu?: boolean;
  /** The CPU engine's int8 GEMM for int8 model files: "f32" (default: int8 weights × f32
   * activations, bit-identical to WebGPU) or "w8a8" (int8 activations too; faster, classes
   * within a stated tolerance). */
  int8Gemm?: "f32" | "w8a8";
  /** WebGPU only: use the adapter's optional features where it has them (default true); false
   * opens the device without them (the portable kernels). Today the engine uses `shader-f16`
   * (with `gpuF16`); wgpu 30 cannot request the browser's `subgroups` feature, so the
   * subgroup kernels run natively only. The loaded classifier's `backend` string says which
   * fast paths are on. */
  gpuFastPaths?: boolean;
  /** WebGPU only: keep the feed-forward hidden activations as f16 (default false; needs
   * `shader-f16`, which SwiftShader lacks: the load then rejects). Logits move by ~1e-3;
   * classes follow the default path except on near ties. */
  gpuF16?: boolean;
}

export type ClassifyProgress = { phase: "classify"; done: number; total: number };
export type PairProgress = { phase: "pair"; iteration: number; error: number };
export type Progress = ClassifyProgress | PairProgress;

export interface CallOptions<P extends Progress = Progress> {
  onProgress?: (p: P) => void;
  /** Aborting rejects with a DOMException named "AbortError". */
  signal?: AbortSignal;
}

export interface ClassifyOptions extends CallOptions<ClassifyProgress> {
  /** Float32Array [cells*2], x, y in µm (spatial and multi-input models). */
  centroids?: Float32Array;
  /** Float32Array [cells*patchSize*patchSize], intensities in [0, 1] (dual-modality and multi-input models). */
  patches?: Float32Array;
  patchSize?: number;
  /** Float32Array [cells*proteinMarkers.length] protein intensities (models trained with
   * `--protein`, see `ClassifierInfo.proteinMarkers`; e.g. `readXeniumZarr(...).protein.values`). */
  proteins?: Float32Array;
  /** Marker names of the `proteins` columns (any order; extra markers are ignored). */
  proteinMarkers?: readonly string[];
  /** Cells per wasm call (default: CPU 2048, WebGPU 8192). */
  chunkCells?: number;
  /** Worker entry: move the input buffers to the worker (default true) or copy them (false). */
  transfer?: boolean;
}

export interface ClassifyResult {
  /** [cells] indices into `classifier.classes` (4294967295 for a cell without counts over the model's genes). */
  classes: Uint32Array;
  /** [cells] 1 where the cell had no counts over the model's genes. */
  unclassified: Uint8Array;
  /** [cells*classes] row-major. */
  logits: Float32Array;
  /** [cells] softmax probability of the predicted class (0 when unclassified). */
  confidence: Float32Array;
  /** Wasm calls the cells went through. */
  chunks: number;
  /** Size of the wasm memory that ran the call. */
  wasmMemoryBytes: number;
}

/** What every classifier tells about its model and engine. */
export interface ClassifierInfo {
  /** Gene panel of the model, in the order its weights expect. */
  readonly genes: string[];
  /** Class names; `classify` returns indices into this list. */
  readonly classes: string[];
  readonly architecture: Architecture;
  /** `"webgpu: <adapter>"` or `"cpu: wasm engine, <quantization> weights"`. */
  readonly backend: string;
  /** The device chosen at load. */
  readonly device: LoadedDevice;
  /** Side in pixels of the patches the model reads (`undefined` when it reads none). */
  readonly patchSize: number | undefined;
  /** Pixel size in µm the patches must be cut at (`undefined` when the model reads none). */
  readonly patchUmPerPx: number | undefined;
  /** Whether the model reads cell centroids (spatial and multi-input models). */
  readonly needsCentroids: boolean;
  /** Protein markers the model reads beside the genes (trained with `--protein`; empty otherwise). */
  readonly proteinMarkers: string[];
  /** Whether a wasm SIMD build (SIMD128, with or without relaxed SIMD) runs this classifier. */
  readonly wasmSimd: boolean;
  /** The wasm build that runs this classifier: "relaxed" (SIMD128 + relaxed SIMD's fused
   * multiply-add in the f32 GEMM), "simd" (SIMD128, bit-identical to scalar) or "scalar". */
  readonly wasmBuild: "relaxed" | "simd" | "scalar";
}

/** The classification methods, on this thread (Classifier) or in workers (worker entry). */
export interface ClassifierMethods {
  /** Dense counts `[cells*genes]` (row-major) whose columns are named by `genes` (any order;
   * extra genes are ignored, missing model genes are an error naming them). */
  classify(counts: Float32Array, nCells: number, genes: readonly string[], opts?: ClassifyOptions): Promise<ClassifyResult>;
  /** CSR counts (scipy `csr_matrix` layout): `indptr` [cells+1], `indices` [nnz], `data` [nnz]. */
  classifyCsr(indptr: Uint32Array, indices: Uint32Array, data: Float32Array, nCells: number, genes: readonly string[], opts?: ClassifyOptions): Promise<ClassifyResult>;
  /** An image-only model (`architecture` "image_only") on nucleus-centred patches alone
   * `[cells*patchSize*patchSize]` (e.g. from `cutPatches` at `patchSize` / `patchUmPerPx`);
   * rejects with code "input" for a model that reads genes. */
  classifyPatches(patches: Float32Array, opts?: Omit<ClassifyOptions, "patches" | "patchSize">): Promise<ClassifyResult>;
  /** Frees the engine's memory (after any call in flight). */
  free(): Promise<void>;
}

/** A cell-type classifier on the calling thread (its properties and `classify`,
 * `classifyCsr`, `free`: {@link ClassifierInfo}, {@link ClassifierMethods}). */
export declare class Classifier {
  private constructor();
  /** Loads a model file (safetensors bytes written by `cellsymphony train`/`export`) on
   * `options.device` (default "auto"); the wasm module is loaded on first use. Rejects with a
   * {@link CellSymphonyError} (code "model", "device" or "options"). */
  static load(modelBytes: Uint8Array | ArrayBuffer, options?: LoadOptions): Promise<Classifier>;
  /** Compute dispatches per encoder layer on WebGPU (`undefined` on the CPU engine). */
  dispatchesPerLayer(): number | undefined;
}
export interface Classifier extends ClassifierInfo, ClassifierMethods {}

export interface PairEngineOptions {
  /** Where Sinkhorn runs (default "cpu"; `useGpu` is the older spelling). */
  device?: Device;
  useGpu?: boolean;
  /** Entropic regularisation. */
  epsilon?: number;
  pcaComponents?: number;
  /** Cells each group needs at least (default 50). */
  minCells?: number;
  tolerance?: number;
  maxIterations?: number;
  /** Squared Euclidean ground cost instead of Euclidean. */
  squared?: boolean;
  epsilonScaling?: boolean;
  /** Genes in `topUp` / `topDown`. */
  topGenes?: number;
  /** Return the pairs of a solve that did not reach `tolerance` instead of rejecting. */
  allowUnconverged?: boolean;
  /** Float32Array [cells*2], x, y in µm: with `spatialLambda`, pairs prefer nearby cells
   * (SPATIA pairs within adjacent regions; `flow train` uses 0.02 by default). */
  centroids?: Float32Array;
  /** Spatial proximity term, cost units per µm of pair distance (needs `centroids`; default none). */
  spatialLambda?: number;
}

export interface PairOptions extends PairEngineOptions, CallOptions<PairProgress> {}

export interface GeneDelta {
  gene: string;
  delta: number;
}

export interface PairResult {
  /** [control cells] the matched cell of each control cell, as an index into `target`. */
  target: Uint32Array;
  /** [control cells] the match score of each pair (as `match_score` in `cellsymphony pair` output). */
  matchScore: Float32Array;
  iterations: number;
  /** Marginal error at the end. */
  error: number;
  converged: boolean;
  dispatches: number;
  pcaComponents: number;
  /** "cpu" or "webgpu: <adapter>". */
  backend: string;
  /** Mean control–target distance of the pairs in µm (only when `centroids` were given). */
  meanDistanceUm?: number;
  /** The spatial term used (null: none). */
  spatialLambda: number | null;
  /** [genes] mean Δ log1p-cp10k expression, target minus control, over the pairs. */
  delta: Float32Array;
  topUp: GeneDelta[];
  topDown: GeneDelta[];
  wasmMemoryBytes: number;
}

/** Pairs each control cell with a target cell by entropic optimal transport: log1p-cp10k
 * normalisation, PCA over both groups, log-domain Sinkhorn, plan-row argmax and the Δg
 * signature. `counts` is `[cells*genes]` row-major; `control`/`target` index its rows. A
 * cancel rejects at once (the solve itself runs to its end on this thread). */
export declare function pairCells(counts: Float32Array, nCells: number, genes: readonly string[], control: Uint32Array, target: Uint32Array, options?: PairOptions): Promise<PairResult>;

/** A cells × genes matrix read from Xenium / 10x files. */
export interface XeniumTable {
  cellIds: string[];
  genes: string[];
  nCells: number;
  nGenes: number;
}

/** CSR counts, ready for `classifyCsr`. */
export interface XeniumMexMatrix extends XeniumTable {
  indptr: Uint32Array;
  indices: Uint32Array;
  data: Float32Array;
  /** [cells*2] x, y µm, when `cells.csv(.gz)` was given. */
  centroidsUm?: Float32Array;
}

/** Dense counts per cell, ready for `classify`. */
export interface XeniumTranscriptsTable extends XeniumTable {
  counts: Float32Array;
  /** [cells*2] x, y µm. */
  centroidsUm: Float32Array;
  /** [cells*2] x, y µm (NaN for a cell with fewer than 3 nucleus transcripts). */
  nucleusCentroidsUm: Float32Array;
}

/** Reads a Xenium / 10x MEX cell-feature matrix from the bytes of `features.tsv`,
 * `barcodes.tsv` and `matrix.mtx` (plain or gzipped), optionally with `cells.csv(.gz)` for
 * centroids. Rejects with a {@link CellSymphonyError} (code "input") naming the file and line. */
export declare function readXeniumMex(features: Uint8Array, barcodes: Uint8Array, matrix: Uint8Array, cells?: Uint8Array): Promise<XeniumMexMatrix>;
/** Reads `transcripts.csv(.gz)` bytes aggregated per cell (`qv >= minQv`, default 20). */
export declare function readXeniumTranscripts(bytes: Uint8Array, minQv?: number, name?: string): Promise<XeniumTranscriptsTable>;
/** Centroids (x, y µm) of `cellIds` from `cells.csv(.gz)` bytes: Float32Array [cells*2]. */
export declare function readXeniumCells(bytes: Uint8Array, cellIds: readonly string[], name?: string): Promise<Float32Array>;

/** Protein channels of an XOA ≥ 4 bundle ("Protein Expression" features), scaled back. */
export interface XeniumProtein {
  markers: string[];
  /** [cells*markers] row-major, divided by the scaling factor. */
  values: Float32Array;
  scalingFactor: number;
}

/** Dense counts read from Xenium's zarr outputs, ready for `classify`. */
export interface XeniumZarrTable extends XeniumTable {
  /** [cells*genes] row-major. */
  counts: Float32Array;
  /** [cells*2] x, y µm, when `cells.zarr.zip` was given. */
  centroidsUm?: Float32Array;
  /** null unless the matrix holds "Protein Expression" features. */
  protein: XeniumProtein | null;
}

/** Reads `cell_feature_matrix.zarr.zip` bytes (and optionally `cells.zarr.zip` for centroids).
 * Rejects with a {@link CellSymphonyError} (code "input") naming the file, the zarr array or
 * attribute, and what it holds. */
export declare function readXeniumZarr(matrix: Uint8Array, cells?: Uint8Array): Promise<XeniumZarrTable>;

/** Options of {@link readTiff}. */
export interface ReadTiffOptions {
  /** Read the coarsest pyramid level whose pixels are at most this size (µm); default full
   * resolution. Needs a pixel size (OME `PhysicalSizeX` or `umPerPx`). */
  targetUmPerPx?: number;
  /** Full-resolution pixel size in µm (overrides the OME-XML; needed for plain TIFFs). */
  umPerPx?: number;
  /** Plane (page of the main IFD chain: channel × z × t), default 0. */
  plane?: number;
  /** The file named in errors, default "image.tif". */
  name?: string;
}

/** One pyramid level of a TIFF plane. */
export interface TiffLevelInfo {
  width: number;
  height: number;
  /** Full-resolution pixels per level pixel. */
  downsample: number;
  /** µm per pixel, or null when the file states no pixel size. */
  umPerPx: number | null;
  /** Compressed bytes of the level's strips or tiles. */
  storedBytes: number;
}

/** A grayscale image, row-major `[height*width]`. */
export interface GrayImage {
  width: number;
  height: number;
  pixels: Uint16Array | Uint8Array;
}

/** What {@link readTiff} returns: the level read and what it cost. */
export interface TiffImage extends GrayImage {
  /** [height*width] row-major (8-bit samples widened unchanged). */
  pixels: Uint16Array;
  /** Samples per pixel: 1 (grayscale). */
  channels: 1;
  /** Index of the level read (0 = full resolution). */
  level: number;
  downsample: number;
  /** µm per pixel of this level, or null when unknown. */
  umPerPx: number | null;
  /** Slide position [x, y] (µm) of pixel (0, 0)'s centre (the file's corner at 0), or null. */
  originUm: [number, number] | null;
  nPlanes: number;
  /** OME channel name of the plane ("" when unknown). */
  channelName: string;
  /** Every level of plane 0, finest first. */
  levels: TiffLevelInfo[];
  /** Bytes copied out of the file (directories + this level's strips/tiles). */
  fileBytesRead: number;
  decodedBytes: number;
}

/** Reads one pyramid level (SubIFDs of OME-TIFF, or a plain page chain) of one grayscale 8/16-bit
 * plane from a TIFF's bytes. The file stays in JS: only the directories and the chosen level's
 * strips/tiles are copied into wasm memory. A level over 512 MiB decoded is refused (pick a
 * coarser `targetUmPerPx`); an unsupported compression (e.g. JPEG 2000) or layout rejects with
 * a {@link CellSymphonyError} (code "input") naming the TIFF field and value. */
export declare function readTiff(bytes: Uint8Array | ArrayBuffer, options?: ReadTiffOptions): Promise<TiffImage>;

/** An RGB image (e.g. H&E), interleaved R, G, B, row-major `[height*width*3]`. */
export interface RgbImage {
  width: number;
  height: number;
  pixels: Uint8Array;
}

/** What {@link readTiffRgb} returns: as {@link TiffImage}, with RGB pixels. */
export interface RgbTiffImage extends Omit<TiffImage, "pixels" | "channels"> {
  /** [height*width*3] interleaved R, G, B, row-major. */
  pixels: Uint8Array;
  /** Samples per pixel: 3. */
  channels: 3;
}

/** Reads one pyramid level of an 8-bit RGB TIFF / OME-TIFF (e.g. H&E) as {@link readTiff}
 * reads grayscale (same options and limits; `plane` must be 0). A grayscale file rejects
 * naming `SamplesPerPixel`. Pass the result to `detectNuclei(img, {stain: "he", ...})`. */
export declare function readTiffRgb(bytes: Uint8Array | ArrayBuffer, options?: ReadTiffOptions): Promise<RgbTiffImage>;

/** Options of {@link detectNuclei}. */
export interface DetectNucleiOptions {
  /** µm per pixel of the image (required; `readTiff(...).umPerPx`). */
  pixelSizeUm: number;
  /** Expected nucleus diameter in µm (sets the LoG scale), default 8. */
  diameterUm?: number;
  /** Minimum distance between nuclei in µm, default half the diameter. */
  minDistanceUm?: number;
  /** Factor on the Otsu threshold (lower finds dimmer nuclei), default 1. */
  thresholdScale?: number;
  /** Tile side in pixels (working memory only; results do not depend on it), default 512. */
  tilePx?: number;
  /** Slide position [x, y] (µm) of pixel (0, 0)'s centre, default [0, 0] (`readTiff(...).originUm`). */
  originUm?: [number, number];
  /** "dapi" (default: a grayscale image, bright nuclei) or "he" (an {@link RgbImage}: colour
   * deconvolution to the haematoxylin channel, then the same detection). */
  stain?: "dapi" | "he";
  /** Also grow nucleus masks by the native marker-controlled watershed (default false). */
  watershed?: boolean;
}

/** Nucleus masks, with `detectNuclei(..., {watershed: true})`. */
export interface NucleusMasks {
  /** [height*width] row-major: 0 background, i + 1 nucleus i. */
  labels: Uint32Array;
  /** [n] mask area in pixels (at least 1, the seed). */
  areaPx: Uint32Array;
  /** [n] mask area in µm². */
  areaUm2: Float32Array;
  /** [n*2] (col, row) mask centroids. */
  maskCentroidsPx: Float32Array;
  /** [n*2] (x, y) µm mask centroids. */
  maskCentroidsUm: Float32Array;
}

/** Detected nuclei, in the order of the native `detect-nuclei` CSV. */
export interface NucleusDetection {
  nNuclei: number;
  /** [n*2] (col, row) pixel coordinates, pixel centres at integers. */
  centroidsPx: Float32Array;
  /** [n*2] (x, y) µm: px · pixelSizeUm + originUm. */
  centroidsUm: Float32Array;
  /** [n] scale-normalised LoG response at the peak. */
  response: Float32Array;
  /** [n] smoothed intensity at the peak. */
  intensity: Float32Array;
  /** LoG scale in pixels: diameterUm / (2√2 · pixelSizeUm). */
  sigmaPx: number;
  /** Intensity threshold on the smoothed image (from Otsu). */
  threshold: number;
  nTiles: number;
  /** Working bytes per tile. */
  tileBytes: number;
}

/** Finds nucleus centroids in a DAPI image (or, with `stain: "he"`, an RGB H&E image through
 * its haematoxylin channel) with the native `detect-nuclei` method and output (LoG maxima at
 * the nucleus scale above an Otsu threshold, in tiles with a halo); with `watershed: true`
 * also the native watershed masks ({@link NucleusMasks}). */
export declare function detectNuclei(image: RgbImage, options: DetectNucleiOptions & { stain: "he"; watershed: true }): Promise<NucleusDetection & NucleusMasks>;
export declare function detectNuclei(image: RgbImage, options: DetectNucleiOptions & { stain: "he" }): Promise<NucleusDetection & Partial<NucleusMasks>>;
export declare function detectNuclei(image: GrayImage, options: DetectNucleiOptions & { stain?: "dapi"; watershed: true }): Promise<NucleusDetection & NucleusMasks>;
export declare function detectNuclei(image: GrayImage, options: DetectNucleiOptions & { stain?: "dapi" }): Promise<NucleusDetection & Partial<NucleusMasks>>;

/** Options of {@link cutPatches}. */
export interface CutPatchesOptions {
  /** µm per pixel of the image. */
  pixelSizeUm: number;
  /** Slide position [x, y] (µm) of pixel (0, 0)'s centre, default [0, 0]. */
  originUm?: [number, number];
  /** Patch side in pixels (a classifier's `patchSize`). */
  patchSize: number;
  /** Patch pixel size in µm (a classifier's `patchUmPerPx`). */
  patchUmPerPx: number;
}

/** Cuts the patches a morphology classifier reads at `centresUm` ([n*2] x, y µm, e.g.
 * `detectNuclei(...).centroidsUm`) with the native patch code (global 0.5/99.5 percentile
 * stretch, anti-aliased bilinear, zero-padded at the border): `Float32Array
 * [n*patchSize*patchSize]`, the `patches` argument of `classify`. */
export declare function cutPatches(image: GrayImage, centresUm: Float32Array, options: CutPatchesOptions): Promise<Float32Array>;

/** Bytes of the wasm memory on this thread. */
export declare function wasmMemoryBytes(): Promise<number>;
/** Whether the SIMD128 build is used on this thread. */
export declare const simd: boolean;
/** Whether this wasm engine supports SIMD128. */
export declare const simdSupported: boolean;
/** Whether the relaxed-SIMD build is used on this thread. */
export declare const relaxedSimd: boolean;
/** Whether this wasm engine supports relaxed SIMD. */
export declare const relaxedSimdSupported: boolean;
/** The wasm build used on this thread. */
export declare const wasmBuild: "relaxed" | "simd" | "scalar";
export declare const DEFAULT_CHUNK_CELLS: Readonly<{ cpu: number; webgpu: number }>;
/** Default cells per wasm call for a classifier's `backend` ("webgpu: …" or "cpu: …"). */
export declare function defaultChunkCells(backend: string): number;

/** Options of {@link openSlide}: {@link ReadTiffOptions} plus the window side. */
export interface OpenSlideOptions extends ReadTiffOptions {
  /** Side (px) of the windows read at a time for detection, the histogram and patches
   * (16–8192, default 512; results do not depend on it). */
  tilePx?: number;
}

/** What {@link Slide.info} returns. */
export interface SlideInfo {
  name: string;
  /** Size of the level opened. */
  width: number;
  height: number;
  level: number;
  downsample: number;
  umPerPx: number;
  /** Slide position [x, y] (µm) of pixel (0, 0)'s centre. */
  originUm: [number, number];
  plane: number;
  nPlanes: number;
  channelName: string;
  tilePx: number;
  levels: TiffLevelInfo[];
  /** Size of the file. */
  fileBytes: number;
  /** Bytes read from the file so far (directories, then the windows' strips/tiles). */
  fileBytesRead: number;
}

/** A whole-slide grayscale level read window by window (wasm memory: one window, not the
 * level). Methods throw on bad input naming the field. Call `free()` when done. */
export interface Slide {
  info(): SlideInfo;
  /** {@link detectNuclei} on the level (identical output to the decoded level's), no masks. */
  detectNuclei(options?: { diameterUm?: number; minDistanceUm?: number; thresholdScale?: number },
    onProgress?: (phase: "histogram" | "detect", tilesDone: number, tiles: number) => void): NucleusDetection;
  /** {@link cutPatches} on the level (identical output; the level's stretch comes from a
   * streamed histogram, computed on the first call). Call on batches of centres. */
  cutPatches(centresUm: Float32Array, options: { patchSize: number; patchUmPerPx: number }): Float32Array;
  /** The finest level whose larger side is at most `maxSide` px (else the coarsest), decoded
   * whole for display (at most 512 MiB). */
  readOverview(maxSide: number): TiffImage;
  free(): void;
}

/** Opens a whole-slide grayscale (OME-)TIFF without decoding it: `file` is a `Blob`/`File`
 * (read slice by slice with `FileReaderSync`, which only Web Workers have: in a worker the
 * file is never read whole; `CellSymphonyWorker.classifySlide` does it for you) or the file's
 * bytes (anywhere; JS then holds the file). Only the directories are read; the level is chosen
 * as {@link readTiff} chooses it. Rejects naming the field (no pixel size: pass `umPerPx`;
 * an RGB file; a Blob on the main thread). */
export declare function openSlide(file: Blob | Uint8Array, options?: OpenSlideOptions): Promise<Slide>;

/** Inputs of {@link FlowModel.sample} for `n` control cells, each paired with a target cell
 * (e.g. by {@link pairCells}). */
export interface FlowSampleInputs {
  /** [n*patchSize*patchSize] the control cells' nucleus-centred DAPI patches, values in [0, 1],
   * at `umPerPx` (e.g. from {@link cutPatches} or `Slide.cutPatches`). */
  controlPatches: Float32Array;
  /** [n*genes.length] raw counts of the control cells. */
  controlCounts: Float32Array;
  /** [n*genes.length] raw counts of each control cell's paired target cell. */
  targetCounts: Float32Array;
  /** Column names of the counts; every gene of `FlowModel.genes` must be among them. */
  genes: string[];
  /** Transition token (index into `transitions`) or its name; default 0. */
  transition?: number | string;
  /** [n*cellDim] the control cells' embedding; required when `needsCellEmbedding` (the flow
   * was trained on e.g. SPATIA's z_cell), else the expression-PCA embedding is computed. */
  cellEmbedding?: Float32Array;
  /** Integration steps (default: as trained). */
  steps?: number;
  /** ODE solver (default: as trained). */
  solver?: "euler" | "heun";
}

export interface FlowSampleResult {
  n: number;
  /** [n*latentDim] generated latents (de-normalised). */
  latents: Float32Array;
  /** [n*patchSize*patchSize] predicted target morphology, values in (0, 1). */
  patches: Float32Array;
  steps: number;
  solver: "euler" | "heun";
  /** "webgpu: <adapter>" or "cpu: …". */
  backend: string;
}

/** A trained morphology flow (`cellsymphony flow train`) on the calling thread: SPATIA-style
 * prediction of how control cells would look in the target state, from their OT pair's
 * expression shift. */
export declare class FlowModel {
  private constructor();
  /** Loads model.safetensors' bytes and flow.json's text on `options.device` (default
   * "auto"). Rejects with a {@link CellSymphonyError} ("model", "device" or "options"). */
  static load(modelBytes: Uint8Array | ArrayBuffer, flowJson: string, options?: { device?: Device; useGpu?: boolean }): Promise<FlowModel>;
  /** Transition names, one per token ("Epithelial → Malignant"). */
  readonly transitions: string[];
  /** Genes the counts are mapped by (empty for older flow files: counts in the model's order). */
  readonly genes: string[];
  readonly patchSize: number;
  readonly umPerPx: number;
  readonly latentDim: number;
  readonly cellDim: number;
  readonly needsCellEmbedding: boolean;
  /** Trained sampler steps and solver (the defaults of `sample`). */
  readonly steps: number;
  readonly solver: "euler" | "heun";
  /** "webgpu: <adapter>" or "cpu: …". */
  readonly backend: string;
  readonly device: "webgpu" | "cpu";
  /** Samples the pairs (256 pairs per engine call on the CPU, 1,024 on WebGPU; `onProgress(done, total)` after each); rejects with
   * a {@link CellSymphonyError} "input" naming the field for bad input. */
  sample(inputs: FlowSampleInputs, options?: { onProgress?: (done: number, total: number) => void }): Promise<FlowSampleResult>;
  /** Frees the model's memory (after any call in flight). */
  free(): Promise<void>;
}

/** Inputs of {@link SpatiaModel.classifyWithContext}: `n` cells in `k` niches. */
export interface SpatiaInputs {
  /** [n*nGenes] normalised expression (log1p of counts per 10,000), the model's genes in order. */
  genes: Float32Array;
  /** [n*patchSize*patchSize] nucleus-centred DAPI patches, values in [0, 1] (leave out for an
   * image-free model, `images: false`). */
  patches?: Float32Array;
  /** [k*nicheSize*nicheSize] niche tiles (block means of each nicheTilePx DAPI tile), in [0, 1]
   * (leave out for an image-free model). */
  nicheTiles?: Float32Array;
  /** [n] niche (< k) of each cell. */
  cellNiche: Uint32Array;
  /** [k] slot (row*regionSide + col) of each niche in its tissue region, distinct per region. */
  nicheSlot: Uint32Array;
  /** [k] region of each niche (default: all in one region). */
  nicheRegion?: Uint32Array;
}

/** What {@link SpatiaModel.classifyWithContext} returns. */
export interface SpatiaResult {
  /** [n] index into `classes`. */
  classes: Uint32Array;
  /** [n*classes] softmax of the logits. */
  probabilities: Float32Array;
  /** [n] probability of the predicted class. */
  confidence: Float32Array;
  /** [n*classes]. */
  logits: Float32Array;
  /** [k] nearest stored z_niche centroid (−1 without centroids or for niches without cells). */
  nicheClusters: Int32Array;
  /** [k*classes] niche-composition logits (empty without the niche level). */
  composition: Float32Array;
  /** [k*D] z_niche (empty without the niche level). */
  zNiche: Float32Array;
}

/** SPATIA's multi-scale model (`cellsymphony spatia export`) on WebGPU or the wasm CPU
 * engine: classify-with-context and the niche map. */
export declare class SpatiaModel {
  private constructor();
  /** Loads the exported file on `device` ("auto" by default: WebGPU on a hardware adapter,
   * else the CPU engine). Rejects with a {@link CellSymphonyError} ("model", "device" or
   * "options"). */
  static load(bytes: Uint8Array | ArrayBuffer, options?: { device?: Device; useGpu?: boolean; gpuFastPaths?: boolean }): Promise<SpatiaModel>;
  readonly classes: string[];
  readonly levels: "cell" | "niche" | "tissue";
  /** false for an image-free model (imaging panels): `patches` and `nicheTiles` may be left out. */
  readonly images: boolean;
  readonly nGenes: number;
  readonly patchSize: number;
  readonly patchUmPerPx: number;
  readonly nicheSize: number;
  readonly nicheTilePx: number;
  readonly nicheDapiUmPerPx: number;
  readonly regionSide: number;
  /** Niche clusters stored in the file (0: none). */
  readonly nicheClusterCount: number;
  readonly backend: string;
  readonly device: "webgpu" | "cpu";
  /** Rejects with a {@link CellSymphonyError} "input" naming the field for bad input. */
  /** `onProgress(regionsDone, regions)` after every tissue region. */
  classifyWithContext(inputs: SpatiaInputs, options?: { onProgress?: (regionsDone: number, regions: number) => void }): Promise<SpatiaResult>;
  free(): Promise<void>;
}
