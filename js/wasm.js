// The one place the package's worker and main-thread mode import the wasm-bindgen module.
// A different build (e.g. a SIMD/scalar loader) is re-pointed here and nowhere else; it must
// export `init` (resolving to the wasm exports, whose `memory` is read for statistics),
// `Classifier` and `pairCells` with the wasm-bindgen API of src/web.rs.
export { default as init, Classifier, pairCells } from "./cellsymphony.js";
