// Types of client.js (the worker API of the cellsymphony package).

export declare const DEFAULT_CHUNK_CELLS: Readonly<{ cpu: number; webgpu: number }>;
/** Default cells per wasm call for a classifier's `backend` ("webgpu: …" or "cpu: …"). */
export declare function defaultChunkCells(backend: string): number;

export type Progress =
  | { phase: "classify"; done: number; total: number }
  | { phase: "pair"; iteration: number; error: number };

export interface CallOptions {
  onProgress?: (p: Progress) => void;
  /** Aborting rejects with a DOMException named "AbortError". */
  signal?: AbortSignal;
  /** Worker mode: move the input buffers to the worker (default true) or copy them (false). */
  transfer?: boolean;
}

export interface ClassifyOptions extends CallOptions {
  /** Float32Array [cells*2], x, y in µm (spatial and multi-input models). */
  centroids?: Float32Array;
  /** Float32Array [cells*patchSize*patchSize] (dual-modality and multi-input models). */
  patches?: Float32Array;
  patchSize?: number;
  /** Cells per wasm call (default: CPU 2048, WebGPU 8192). */
  chunkCells?: number;
}

export interface ClassifyResult {
  classes: Uint32Array;
  unclassified: Uint8Array;
  logits: Float32Array;
  confidence: Float32Array;
  chunks: number;
  wasmMemoryBytes: number;
}

export interface PairResult {
  target: Uint32Array;
  matchScore: Float32Array;
  iterations: number;
  error: number;
  converged: boolean;
  dispatches: number;
  pcaComponents: number;
  backend: string;
  delta: Float32Array;
  topUp: { gene: string; delta: number }[];
  topDown: { gene: string; delta: number }[];
  wasmMemoryBytes: number;
}

export interface ChunkedClassifier {
  readonly genes: string[];
  readonly classes: string[];
  readonly architecture: string;
  readonly backend: string;
  readonly patchSize?: number;
  readonly patchUmPerPx?: number;
  readonly needsCentroids: boolean;
  /** Whether the wasm SIMD128 build runs this classifier (js/wasm.js chose it). */
  readonly wasmSimd: boolean;
  /** Set by createClassifier. */
  runner?: CellSymphonyWorker | CellSymphonyWorkerPool | CellSymphonyMainThread;
  classify(counts: Float32Array, nCells: number, genes: string[], opts?: ClassifyOptions): Promise<ClassifyResult>;
  classifyCsr(indptr: Uint32Array, indices: Uint32Array, data: Float32Array, nCells: number, genes: string[], opts?: ClassifyOptions): Promise<ClassifyResult>;
  free(): Promise<void>;
}

export interface PairOptions {
  useGpu?: boolean;
  epsilon?: number;
  pcaComponents?: number;
  minCells?: number;
  tolerance?: number;
  maxIterations?: number;
  squared?: boolean;
  epsilonScaling?: boolean;
  topGenes?: number;
  allowUnconverged?: boolean;
}

interface Runner {
  readonly mode: "worker" | "worker-pool" | "main-thread";
  loadClassifier(modelBytes: Uint8Array, opts?: { useGpu?: boolean; int8Gemm?: "f32" | "w8a8" }): Promise<ChunkedClassifier>;
  pairCells(counts: Float32Array, nCells: number, genes: string[], control: Uint32Array, target: Uint32Array,
    options?: PairOptions, call?: CallOptions): Promise<PairResult>;
  memory(): Promise<{ wasmMemoryBytes: number }>;
  terminate(): void;
}

/** The package in a module Worker (worker.js next to client.js unless `workerUrl`). */
export declare class CellSymphonyWorker implements Runner {
  constructor(opts?: { workerUrl?: string | URL });
  readonly mode: "worker";
  loadClassifier(modelBytes: Uint8Array, opts?: { useGpu?: boolean; int8Gemm?: "f32" | "w8a8" }): Promise<ChunkedClassifier>;
  pairCells(counts: Float32Array, nCells: number, genes: string[], control: Uint32Array, target: Uint32Array,
    options?: PairOptions, call?: CallOptions): Promise<PairResult>;
  memory(): Promise<{ wasmMemoryBytes: number }>;
  terminate(): void;
}

/** Worker threads a pool uses by default: the logical cores (at most 8) where the page is
 * cross-origin isolated, 1 otherwise. */
export declare function defaultThreads(): number;

/** A pool of module Workers: a CPU classifier is loaded in each and `classify` spreads its
 * chunks over them (with more than one worker the chunks are copies: the caller's arrays are
 * not transferred); WebGPU classifiers and
 * pairing use the first worker. */
export declare class CellSymphonyWorkerPool implements Runner {
  constructor(opts?: { threads?: number; workerUrl?: string | URL });
  readonly mode: "worker-pool";
  readonly threads: number;
  loadClassifier(modelBytes: Uint8Array, opts?: { useGpu?: boolean; int8Gemm?: "f32" | "w8a8" }): Promise<ChunkedClassifier>;
  pairCells(counts: Float32Array, nCells: number, genes: string[], control: Uint32Array, target: Uint32Array,
    options?: PairOptions, call?: CallOptions): Promise<PairResult>;
  memory(): Promise<{ wasmMemoryBytes: number }>;
  terminate(): void;
}

/** The same API on the calling thread (the main-thread mode). */
export declare class CellSymphonyMainThread implements Runner {
  constructor();
  readonly mode: "main-thread";
  loadClassifier(modelBytes: Uint8Array, opts?: { useGpu?: boolean; int8Gemm?: "f32" | "w8a8" }): Promise<ChunkedClassifier>;
  pairCells(counts: Float32Array, nCells: number, genes: string[], control: Uint32Array, target: Uint32Array,
    options?: PairOptions, call?: CallOptions): Promise<PairResult>;
  memory(): Promise<{ wasmMemoryBytes: number }>;
  terminate(): void;
}

/** One classifier in fresh workers (default: a pool of `threads` workers, default
 * {@link defaultThreads}; one worker when that is 1) or on this thread (`worker: false`). */
export declare function createClassifier(modelBytes: Uint8Array, opts?: { useGpu?: boolean; worker?: boolean; threads?: number; int8Gemm?: "f32" | "w8a8" }): Promise<ChunkedClassifier>;
