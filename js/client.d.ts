// Types of client.js: the worker entry of the cellsymphony package ("cellsymphony/worker").
import type {
  ClassifierInfo, ClassifierMethods, ClassifyResult, ClassifyOptions, CallOptions, LoadOptions, Device,
  PairEngineOptions, PairProgress, PairResult, Classifier as MainThreadClassifier,
  NucleusDetection, OpenSlideOptions, SlideInfo, TiffImage, FlowSampleInputs, FlowSampleResult,
  SpatiaInputs, SpatiaResult,
} from "./index.js";

export type {
  Architecture, CallOptions, ClassifierInfo, ClassifyOptions, ClassifyProgress, ClassifyResult, Device, ErrorCode,
  GeneDelta, LoadedDevice, LoadOptions, PairEngineOptions, PairOptions, PairProgress, PairResult, Progress, FlowSampleInputs, FlowSampleResult,
} from "./index.js";
export { CellSymphonyError, DEFAULT_CHUNK_CELLS, defaultChunkCells } from "./index.js";

/** Options of a pairing call through a runner. */
export interface PairCallOptions extends CallOptions<PairProgress> {
  /** Worker mode: move `counts`, `control` and `target` to the worker (default true) or copy them. */
  transfer?: boolean;
}

/** Options of a runner's `sampleFlow`. */
export interface FlowCallOptions {
  /** Where the flow runs (default "auto"). */
  device?: Device;
  onProgress?: (p: { phase: "flow"; done: number; total: number }) => void;
  /** Cancels (in a worker: restarts it). */
  signal?: AbortSignal;
}

/** Options of a runner's `classifyWithContext` (SPATIA). */
export interface SpatiaCallOptions {
  /** Where SPATIA runs (default "auto"). */
  device?: Device;
  onProgress?: (p: { phase: "spatia"; done: number; total: number }) => void;
  /** Cancels (in a worker: restarts it). */
  signal?: AbortSignal;
}

/** A classifier loaded by a runner: in a worker, in a pool of workers, or on this thread. */
export interface ChunkedClassifier extends ClassifierInfo, ClassifierMethods {
  /** Set by createClassifier / Classifier.load. */
  runner?: Runner;
}

export interface Runner {
  readonly mode: "worker" | "worker-pool" | "main-thread";
  /** Loads a model file on `options.device` (default "auto", picked where the engine runs). */
  loadClassifier(modelBytes: Uint8Array | ArrayBuffer, options?: LoadOptions): Promise<ChunkedClassifier>;
  /** `options.device` (default "cpu") picks where Sinkhorn runs; a cancel of a worker's
   * pairing restarts the worker (classifiers reload themselves on their next call). */
  pairCells(counts: Float32Array, nCells: number, genes: readonly string[], control: Uint32Array, target: Uint32Array,
    options?: PairEngineOptions, call?: PairCallOptions): Promise<PairResult>;
  memory(): Promise<{ wasmMemoryBytes: number }>;
  terminate(): void;
}

/** The package in a module Worker (bundlers emit worker.js and its wasm files from the
 * `new Worker(new URL("./worker.js", import.meta.url))` in client.js; `workerUrl` overrides). */
/** Options of {@link CellSymphonyWorker.classifySlide}. */
export interface ClassifySlideOptions extends OpenSlideOptions {
  /** `Slide.detectNuclei` options. */
  detect?: { diameterUm?: number; minDistanceUm?: number; thresholdScale?: number };
  /** An image-only model loaded by this worker's `loadClassifier`; none: detection only. */
  classifier?: ChunkedClassifier;
  /** Patches cut and classified per batch (default 4096). */
  batchNuclei?: number;
  /** Larger side (px) of the level returned for display (default 2048; 0: none). */
  overviewMaxSide?: number;
}

/** What {@link CellSymphonyWorker.classifySlide} resolves to. */
export interface SlideClassification {
  info: SlideInfo;
  detection: NucleusDetection;
  /** [n] class index per nucleus (into the classifier's `classes`), or null without a classifier. */
  classes: Uint32Array | null;
  /** [n] softmax confidence, or null. */
  confidence: Float32Array | null;
  overview: TiffImage | null;
  detectMs: number;
  classifyMs: number;
  /** The worker's wasm memory after the call (it only grows). */
  wasmMemoryBytes: number;
}

export declare class CellSymphonyWorker implements Runner {
  constructor(opts?: { workerUrl?: string | URL });
  readonly mode: "worker";
  /** A whole-slide image-only TIFF in the worker: `file` is read slice by slice (never whole);
   * nuclei detected and patches cut one window at a time, classified in batches. A cancel
   * (`signal`) restarts the worker. */
  classifySlide(file: Blob, options?: ClassifySlideOptions, call?: { onProgress?: (p: { phase: "histogram" | "detect" | "classify"; done: number; total: number }) => void; signal?: AbortSignal }): Promise<SlideClassification>;
  loadClassifier(modelBytes: Uint8Array | ArrayBuffer, options?: LoadOptions): Promise<ChunkedClassifier>;
  pairCells(counts: Float32Array, nCells: number, genes: readonly string[], control: Uint32Array, target: Uint32Array,
    options?: PairEngineOptions, call?: PairCallOptions): Promise<PairResult>;
  /** Morphology generation (`FlowModel.load` + `sample` of the main entry) in the worker; the
   * model is loaded for the call and freed after it. */
  sampleFlow(modelBytes: Uint8Array | ArrayBuffer, flowJson: string, inputs: FlowSampleInputs, call?: FlowCallOptions): Promise<FlowSampleResult & { device: "webgpu" | "cpu" }>;
  /** SPATIA (`SpatiaModel.load` + `classifyWithContext` of the main entry) in the worker; the
   * model is loaded for the call and freed after it. */
  classifyWithContext(modelBytes: Uint8Array | ArrayBuffer, inputs: SpatiaInputs, call?: SpatiaCallOptions): Promise<SpatiaResult & { device: "webgpu" | "cpu"; backend: string }>;
  memory(): Promise<{ wasmMemoryBytes: number }>;
  terminate(): void;
}

/** Worker threads a pool uses by default: the logical cores (at most 8) where the page is
 * cross-origin isolated, 1 otherwise. */
export declare function defaultThreads(): number;

/** A pool of module Workers: a CPU classifier is loaded in each and `classify` spreads its
 * chunks over them (with more than one worker the chunks are copies: the caller's arrays are
 * not transferred); WebGPU classifiers and pairing use the first worker. */
export declare class CellSymphonyWorkerPool implements Runner {
  constructor(opts?: { threads?: number; workerUrl?: string | URL });
  readonly mode: "worker-pool";
  readonly threads: number;
  loadClassifier(modelBytes: Uint8Array | ArrayBuffer, options?: LoadOptions): Promise<ChunkedClassifier>;
  pairCells(counts: Float32Array, nCells: number, genes: readonly string[], control: Uint32Array, target: Uint32Array,
    options?: PairEngineOptions, call?: PairCallOptions): Promise<PairResult>;
  memory(): Promise<{ wasmMemoryBytes: number }>;
  terminate(): void;
}

/** The same API on the calling thread (the main-thread mode; classifiers are the main entry's `Classifier`). */
export declare class CellSymphonyMainThread implements Runner {
  constructor();
  readonly mode: "main-thread";
  loadClassifier(modelBytes: Uint8Array | ArrayBuffer, options?: LoadOptions): Promise<MainThreadClassifier & ChunkedClassifier>;
  pairCells(counts: Float32Array, nCells: number, genes: readonly string[], control: Uint32Array, target: Uint32Array,
    options?: PairEngineOptions, call?: PairCallOptions): Promise<PairResult>;
  sampleFlow(modelBytes: Uint8Array | ArrayBuffer, flowJson: string, inputs: FlowSampleInputs, call?: FlowCallOptions): Promise<FlowSampleResult & { device: "webgpu" | "cpu" }>;
  /** SPATIA (`SpatiaModel.load` + `classifyWithContext` of the main entry) in the worker; the
   * model is loaded for the call and freed after it. */
  classifyWithContext(modelBytes: Uint8Array | ArrayBuffer, inputs: SpatiaInputs, call?: SpatiaCallOptions): Promise<SpatiaResult & { device: "webgpu" | "cpu"; backend: string }>;
  memory(): Promise<{ wasmMemoryBytes: number }>;
  terminate(): void;
}

export interface CreateOptions extends LoadOptions {
  /** Default true: in workers; false: on this thread. */
  worker?: boolean;
  /** Workers in the pool (default {@link defaultThreads}). */
  threads?: number;
}

/** One classifier in fresh workers (default: a pool of `threads` workers; one worker when that
 * is 1) or on this thread (`worker: false`), on `device` (default "auto"). */
export declare function createClassifier(modelBytes: Uint8Array | ArrayBuffer, options?: CreateOptions): Promise<ChunkedClassifier>;

/** The main entry's `Classifier.load`, in workers: {@link createClassifier}. */
export declare const Classifier: {
  readonly load: (modelBytes: Uint8Array | ArrayBuffer, options?: CreateOptions) => Promise<ChunkedClassifier>;
};

