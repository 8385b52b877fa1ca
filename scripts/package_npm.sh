#!/usr/bin/env bash
# The npm package's hand-written part, over the three wasm-bindgen builds scripts/build_wasm.sh
# left in pkg/: copies js/ (main entry index.js, worker entry client.js + worker.js, shared
# chunking, device choice and errors, the one wasm import wasm.js; the deck.gl entry deck.js),
# checks the builds' APIs against wasm.js, writes package.json (exports ".", "./worker" and
# "./deck"; deck.gl an optional peer dependency) and logs each file's gzip size.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CELLSYMPHONY_ROOT"
for v in relaxed simd scalar; do
  [ -f "pkg/cellsymphony_${v}_bg.wasm" ] || die "pkg/cellsymphony_${v}_bg.wasm is missing: run scripts/build_wasm.sh"
done
cp js/*.js js/*.d.ts pkg/
# js/wasm.js re-exports the wasm-bindgen module's names: they must match, in every build.
for v in relaxed simd scalar; do
  want=$(sed -n 's/^export \(class\|function\) \([A-Za-z_]*\).*/\2/p; s/^export { \(.*\) };$/\1/p' "pkg/cellsymphony_$v.js" |
    tr ',' '\n' | sed 's/__wbg_init as default//; s/ //g' | grep -v '^$' | sort | tr '\n' ' ')
  have=$(sed -n 's/^export const { \(.*\) } = m;$/\1/p' pkg/wasm.js | tr ',' '\n' | sed 's/ //g' | sort | tr '\n' ' ')
  [ "$want" = "$have" ] || die "js/wasm.js re-exports [$have] but pkg/cellsymphony_$v.js exports [$want]: update js/wasm.js"
done
for v in relaxed scalar; do
  cmp -s pkg/cellsymphony_simd.d.ts <(sed "s/cellsymphony_$v/cellsymphony_simd/g" "pkg/cellsymphony_$v.d.ts") ||
    die "the SIMD128 and $v builds' TypeScript APIs differ"
done
# The raw wasm-bindgen API under one name, for www/ and the browser tests in this repository
# (not in the npm package: its entries are index.js and client.js, typed by hand).
cat > pkg/cellsymphony.js <<'JS'
// cellsymphony's raw wasm-bindgen API (written by scripts/build_wasm.sh). wasm.js loads the
// relaxed-SIMD build where relaxed SIMD validates, else the SIMD128 build where WebAssembly
// SIMD validates, else the scalar build.
export * from "./wasm.js";
export { default } from "./wasm.js";
JS
{ cat pkg/cellsymphony_simd.d.ts
  echo '/** Whether a SIMD build (SIMD128, with or without relaxed SIMD) was loaded (js/wasm.js). */'
  echo 'export const simd: boolean;'
  echo '/** Whether this wasm engine supports SIMD128 (js/wasm.js). */'
  echo 'export const simdSupported: boolean;'
  echo '/** Whether the relaxed-SIMD build was loaded (js/wasm.js). */'
  echo 'export const relaxedSimd: boolean;'
  echo '/** Whether this wasm engine supports relaxed SIMD (js/wasm.js). */'
  echo 'export const relaxedSimdSupported: boolean;'
  echo '/** The build loaded: "relaxed", "simd" or "scalar" (js/wasm.js). */'
  echo 'export const build: "relaxed" | "simd" | "scalar";'
  echo '/** The wasm-bindgen init function (also the default export). */'
  echo 'export const init: typeof __wbg_init;'; } > pkg/cellsymphony.d.ts
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
files=(index.js index.d.ts client.js client.d.ts worker.js chunked.js device.js errors.js wasm.js deck.js deck.d.ts
  cellsymphony_relaxed.js cellsymphony_relaxed_bg.wasm cellsymphony_simd.js cellsymphony_simd_bg.wasm
  cellsymphony_scalar.js cellsymphony_scalar_bg.wasm)
for f in "${files[@]}"; do [ -f "pkg/$f" ] || die "pkg/$f is missing"; done
for f in js/*.js; do
  printf '%s\n' "${files[@]}" | grep -qx "$(basename "$f")" || die "$f is not in the package's files list (scripts/package_npm.sh)"
done
list=$(printf '"%s", ' "${files[@]}" README.md | sed 's/, $//')
cat > pkg/package.json <<JSON
{
  "name": "cellsymphony",
  "version": "$version",
  "description": "Cell-type classification of spatial transcriptomics on WebGPU (int8 WGSL kernels), with a CPU fallback.",
  "license": "MIT OR Apache-2.0",
  "type": "module",
  "main": "./index.js",
  "module": "./index.js",
  "types": "./index.d.ts",
  "exports": {
    ".": { "types": "./index.d.ts", "default": "./index.js" },
    "./worker": { "types": "./client.d.ts", "default": "./client.js" },
    "./worker.js": "./worker.js",
    "./deck": { "types": "./deck.d.ts", "default": "./deck.js" },
    "./package.json": "./package.json"
  },
  "files": [$list],
  "sideEffects": ["./worker.js"],
  "peerDependencies": { "@deck.gl/core": "^9.0.0", "@deck.gl/layers": "^9.0.0" },
  "peerDependenciesMeta": { "@deck.gl/core": { "optional": true }, "@deck.gl/layers": { "optional": true } }
}
JSON
for f in "${files[@]}"; do
  log "pkg/$f: $(stat -c %s "pkg/$f") bytes ($(gzip -9 -c "pkg/$f" | wc -c) gzipped)"
done
