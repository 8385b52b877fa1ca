// The one place the package's worker and main-thread mode import the wasm-bindgen module.
// scripts/build_wasm.sh builds it twice with the same API: SIMD128 (cellsymphony_simd.js, the
// CPU engine's SIMD kernels) and scalar (cellsymphony_scalar.js). The SIMD build is loaded
// where the engine validates a tiny SIMD module (every current browser, Node ≥ 16), the
// scalar build otherwise. To force the scalar build (tests, benchmarks): set
// `globalThis.CELLSYMPHONY_WASM_SIMD = false` before the first import, or add
// `?cellsymphony-wasm=scalar` to the page's URL (main-thread mode) or to the worker's URL
// (`new CellSymphonyWorker({workerUrl})`).

import * as simdBuild from "./cellsymphony_simd.js";
import * as scalarBuild from "./cellsymphony_scalar.js";

// A minimal module using v128 (i32.const 0; i8x16.splat; i8x16.popcnt), as wasm-feature-detect.
const SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11,
]);

/** Whether this wasm engine supports SIMD128 (fixed-width WebAssembly SIMD). */
export const simdSupported = WebAssembly.validate(SIMD_PROBE);

/** Whether the SIMD128 build was loaded. */
export const simd = simdSupported && globalThis.CELLSYMPHONY_WASM_SIMD !== false &&
  new URLSearchParams(globalThis.location?.search ?? "").get("cellsymphony-wasm") !== "scalar";

// Both glue modules are imported statically (small JS; only the chosen build's .wasm is ever
// fetched, by `init`): a top-level `await import()` here closed the page in Chromium 156 when
// wasm.js ran in a module Worker.
const m = simd ? simdBuild : scalarBuild;

// Keep this list equal to the wasm-bindgen module's exports (scripts/build_wasm.sh checks it).
export const { Classifier, FlowModel, Slide, SpatiaModel, cutPatches, detectNuclei, initSync, openSlide, pairCells, readTiff, readTiffRgb, readXeniumCells, readXeniumMex, readXeniumTranscripts, readXeniumZarr } = m;
/** The wasm-bindgen init (resolves to the wasm exports, whose `memory` is read for statistics). */
export const init = m.default;
export default m.default;
