// The one place the package's worker and main-thread mode import the wasm-bindgen module.
// scripts/build_wasm.sh builds it three times with the same API:
// - relaxed (cellsymphony_relaxed.js): SIMD128 plus relaxed SIMD, whose `f32x4.relaxed_madd`
//   is a fused multiply-add in the CPU engine's f32 GEMM (as the native AVX2+FMA kernel);
// - SIMD128 (cellsymphony_simd.js): separate multiply and add, bit-identical to scalar;
// - scalar (cellsymphony_scalar.js), for engines without SIMD.
// The first whose probe module validates is loaded (relaxed: Chromium ≥ 114, Node ≥ 22;
// SIMD128: every current browser, Node ≥ 16). To force a build (tests, benchmarks): set
// `globalThis.CELLSYMPHONY_WASM_BUILD = "simd"` (or "scalar", "relaxed") before the first
// import (`globalThis.CELLSYMPHONY_WASM_SIMD = false` still forces scalar), or add
// `?cellsymphony-wasm=simd` (or scalar, relaxed) to the page's URL (main-thread mode) or to
// the worker's URL (`new CellSymphonyWorker({workerUrl})`). A forced build the engine cannot
// validate falls back to the next one down.

import * as relaxedBuild from "./cellsymphony_relaxed.js";
import * as simdBuild from "./cellsymphony_simd.js";
import * as scalarBuild from "./cellsymphony_scalar.js";

// A minimal module using v128 (i32.const 0; i8x16.splat; i8x16.popcnt), as wasm-feature-detect.
const SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11,
]);
// A minimal module using relaxed SIMD (i32.const 1; i8x16.splat; i32.const 2; i8x16.splat;
// i8x16.relaxed_swizzle), as wasm-feature-detect.
const RELAXED_SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 15, 1, 13, 0, 65, 1, 253, 15, 65, 2, 253, 15, 253, 128, 2, 11,
]);

/** Whether this wasm engine supports SIMD128 (fixed-width WebAssembly SIMD). */
export const simdSupported = WebAssembly.validate(SIMD_PROBE);
/** Whether this wasm engine supports relaxed SIMD. */
export const relaxedSimdSupported = simdSupported && WebAssembly.validate(RELAXED_SIMD_PROBE);

const BUILDS = ["relaxed", "simd", "scalar"];
const asked = new URLSearchParams(globalThis.location?.search ?? "").get("cellsymphony-wasm") ??
  globalThis.CELLSYMPHONY_WASM_BUILD ?? (globalThis.CELLSYMPHONY_WASM_SIMD === false ? "scalar" : "relaxed");
const supported = { relaxed: relaxedSimdSupported, simd: simdSupported, scalar: true };
/** The build this module loaded: "relaxed", "simd" (SIMD128) or "scalar". */
export const build = BUILDS.slice(Math.max(0, BUILDS.indexOf(asked))).find((b) => supported[b]);

/** Whether a SIMD build (SIMD128, with or without relaxed SIMD) was loaded. */
export const simd = build !== "scalar";
/** Whether the relaxed-SIMD build was loaded. */
export const relaxedSimd = build === "relaxed";

// The glue modules are imported statically (small JS; only the chosen build's .wasm is ever
// fetched, by `init`): a top-level `await import()` here closed the page in Chromium 156 when
// wasm.js ran in a module Worker.
const m = { relaxed: relaxedBuild, simd: simdBuild, scalar: scalarBuild }[build];

// Keep this list equal to the wasm-bindgen module's exports (scripts/build_wasm.sh checks it).
export const { Classifier, FlowModel, Slide, SpatiaModel, cutPatches, detectNuclei, initSync, openSlide, pairCells, readTiff, readTiffRgb, readXeniumCells, readXeniumMex, readXeniumTranscripts, readXeniumZarr, simdMathCheck } = m;
/** The wasm-bindgen init (resolves to the wasm exports, whose `memory` is read for statistics). */
export const init = m.default;
export default m.default;
