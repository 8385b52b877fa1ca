#!/usr/bin/env bash
# Build the npm package in pkg/: cargo (wasm32, no burn) → wasm-bindgen → wasm-opt →
# package.json, twice: a SIMD128 build (cargo feature `simd128`: the CPU engine's kernels carry
# `#[target_feature(enable = "simd128")]`, so only this crate is rebuilt, not its dependencies)
# and a scalar build for wasm engines without SIMD. js/wasm.js (copied into pkg/) picks one at
# load with WebAssembly.validate; pkg/cellsymphony.js re-exports it. Run scripts/setup.sh first.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CELLSYMPHONY_ROOT"
start=$(date +%s)
if cargo tree --target wasm32-unknown-unknown --no-default-features -e normal 2>/dev/null | grep -q '^.*burn'; then
  die "burn is in the wasm dependency graph; it must stay native-only"
fi
find pkg -mindepth 1 ! -name README.md -delete 2>/dev/null || true
mkdir -p pkg
build_variant() { # <simd|scalar> <cargo feature flags…>
  local name="$1" t0
  shift
  t0=$(date +%s)
  log "cargo build --target wasm32-unknown-unknown ($name: ${*:-no features}, route: $(wasm_route))"
  if [ "$(wasm_route)" = debian ]; then
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build --lib --release \
      --target wasm32-unknown-unknown --no-default-features "$@" -Zbuild-std=std,panic_abort
  else
    cargo build --lib --release --target wasm32-unknown-unknown --no-default-features "$@"
  fi
  local wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/cellsymphony.wasm"
  [ -f "$wasm" ] || die "cargo did not produce $wasm"
  log "wasm-bindgen --target web ($name)"
  wasm-bindgen --target web --out-dir pkg --out-name "cellsymphony_$name" "$wasm"
  log "wasm-opt -O3 ($name)"
  local opt=(-O3)
  [ "$name" = simd ] && opt+=(--enable-simd)
  wasm-opt "${opt[@]}" "pkg/cellsymphony_${name}_bg.wasm" -o "pkg/cellsymphony_${name}_bg.opt.wasm"
  mv "pkg/cellsymphony_${name}_bg.opt.wasm" "pkg/cellsymphony_${name}_bg.wasm"
  log "$name build: $(( $(date +%s) - t0 )) s"
}
build_variant simd --features simd128
build_variant scalar
# The scalar build must really be scalar (it is the fallback for engines without SIMD).
if command -v wasm-dis >/dev/null && wasm-dis pkg/cellsymphony_scalar_bg.wasm 2>/dev/null | grep -q 'v128\|f32x4'; then
  die "pkg/cellsymphony_scalar_bg.wasm contains SIMD instructions"
fi
# The hand-written worker API (js/: module Worker, client, shared chunking, the one wasm import).
cp js/*.js js/*.d.ts pkg/
# js/wasm.js re-exports the wasm-bindgen module's names: they must match, in both builds.
for v in simd scalar; do
  want=$(sed -n 's/^export \(class\|function\) \([A-Za-z_]*\).*/\2/p; s/^export { \(.*\) };$/\1/p' "pkg/cellsymphony_$v.js" |
    tr ',' '\n' | sed 's/__wbg_init as default//; s/ //g' | grep -v '^$' | sort | tr '\n' ' ')
  have=$(sed -n 's/^export const { \(.*\) } = m;$/\1/p' pkg/wasm.js | tr ',' '\n' | sed 's/ //g' | sort | tr '\n' ' ')
  [ "$want" = "$have" ] || die "js/wasm.js re-exports [$have] but pkg/cellsymphony_$v.js exports [$want]: update js/wasm.js"
done
cmp -s pkg/cellsymphony_simd.d.ts <(sed 's/cellsymphony_scalar/cellsymphony_simd/g' pkg/cellsymphony_scalar.d.ts) ||
  die "the SIMD and scalar builds' TypeScript APIs differ"
# The package entry: the loader's API under the package's usual name.
cat > pkg/cellsymphony.js <<'JS'
// cellsymphony: the package entry (written by scripts/build_wasm.sh). wasm.js loads the SIMD128
// build where WebAssembly SIMD validates and the scalar build otherwise; same API either way.
export * from "./wasm.js";
export { default } from "./wasm.js";
JS
{ cat pkg/cellsymphony_simd.d.ts
  echo '/** Whether the SIMD128 build was loaded (js/wasm.js). */'
  echo 'export const simd: boolean;'
  echo '/** Whether this wasm engine supports SIMD128 (js/wasm.js). */'
  echo 'export const simdSupported: boolean;'
  echo '/** The wasm-bindgen init function (also the default export). */'
  echo 'export const init: typeof __wbg_init;'; } > pkg/cellsymphony.d.ts
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cat > pkg/package.json <<JSON
{
  "name": "cellsymphony",
  "version": "$version",
  "description": "Cell-type classification of spatial transcriptomics on WebGPU (int8 WGSL kernels), with a CPU fallback.",
  "license": "MIT OR Apache-2.0",
  "type": "module",
  "module": "cellsymphony.js",
  "main": "cellsymphony.js",
  "types": "cellsymphony.d.ts",
  "files": ["cellsymphony.js", "cellsymphony.d.ts", "wasm.js",
    "cellsymphony_simd.js", "cellsymphony_simd.d.ts", "cellsymphony_simd_bg.wasm", "cellsymphony_simd_bg.wasm.d.ts",
    "cellsymphony_scalar.js", "cellsymphony_scalar.d.ts", "cellsymphony_scalar_bg.wasm", "cellsymphony_scalar_bg.wasm.d.ts",
    "client.js", "client.d.ts", "worker.js", "chunked.js", "README.md"],
  "sideEffects": ["./snippets/*", "./wasm.js", "./cellsymphony.js"]
}
JSON
for v in simd scalar; do
  size=$(stat -c %s "pkg/cellsymphony_${v}_bg.wasm")
  gz=$(gzip -9 -c "pkg/cellsymphony_${v}_bg.wasm" | wc -c)
  log "pkg/cellsymphony_${v}_bg.wasm: $size bytes ($gz gzipped)"
done
log "pkg/ ready, built in $(( $(date +%s) - start )) s"
