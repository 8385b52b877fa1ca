// cellsymphony: the package's entry module (hand-written; scripts/build_wasm.sh builds the two
// wasm-bindgen modules it chooses from). It loads the SIMD128 build where the engine supports
// wasm SIMD (every current browser, Node ≥ 16) and the scalar build otherwise; both have the
// same API, re-exported here unchanged. `simd` says which one was loaded. For benchmarks, set
// `globalThis.CELLSYMPHONY_WASM_SIMD = false` before the first import to force the scalar build.

// A minimal module using v128 (i32.const 0; i8x16.splat; i8x16.popcnt), as wasm-feature-detect.
const SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11,
]);

/** Whether the SIMD128 build was loaded. */
export const simd = globalThis.CELLSYMPHONY_WASM_SIMD !== false && WebAssembly.validate(SIMD_PROBE);

const m = simd ? await import("./cellsymphony_simd.js") : await import("./cellsymphony_scalar.js");

// Keep this list equal to the wasm-bindgen module's exports (build_wasm.sh checks it).
export const { Classifier, pairCells, readXeniumCells, readXeniumMex, readXeniumTranscripts, initSync } = m;
export default m.default;
