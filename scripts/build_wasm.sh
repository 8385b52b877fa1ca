#!/usr/bin/env bash
# Build the npm package in pkg/: cargo (wasm32, no burn) → wasm-bindgen → wasm-opt →
# package.json. Run scripts/setup.sh first.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CELLSYMPHONY_ROOT"
start=$(date +%s)
# Two builds with the same API: SIMD128 (`-C target-feature=+simd128`, its own target dir so
# neither rebuilds the other) and scalar; the hand-written pkg/cellsymphony.js picks one at load.
build_variant() { # <name> <rustflags>
  local dir="$CARGO_TARGET_DIR"
  [ "$1" = simd ] && dir="$CARGO_TARGET_DIR/wasm-simd"
  log "cargo build --target wasm32-unknown-unknown ($1, route: $(wasm_route))"
  if [ "$(wasm_route)" = debian ]; then
    RUSTFLAGS="$2" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build --lib --release \
      --target wasm32-unknown-unknown --no-default-features -Zbuild-std=std,panic_abort --target-dir "$dir"
  else
    RUSTFLAGS="$2" cargo build --lib --release --target wasm32-unknown-unknown --no-default-features --target-dir "$dir"
  fi
  local wasm="$dir/wasm32-unknown-unknown/release/cellsymphony.wasm"
  [ -f "$wasm" ] || die "cargo did not produce $wasm"
  log "wasm-bindgen --target web ($1)"
  wasm-bindgen --target web --out-dir pkg --out-name "cellsymphony_$1" "$wasm"
  log "wasm-opt -O3 ($1)"
  local opt_flags=()
  [ "$1" = simd ] && opt_flags=(--enable-simd)
  wasm-opt -O3 "${opt_flags[@]}" "pkg/cellsymphony_$1_bg.wasm" -o "pkg/cellsymphony_$1_bg.opt.wasm"
  mv "pkg/cellsymphony_$1_bg.opt.wasm" "pkg/cellsymphony_$1_bg.wasm"
}
if cargo tree --target wasm32-unknown-unknown --no-default-features -e normal 2>/dev/null | grep -q '^.*burn'; then
  die "burn is in the wasm dependency graph; it must stay native-only"
fi
find pkg -mindepth 1 ! -name README.md ! -name cellsymphony.js -delete 2>/dev/null || true
mkdir -p pkg
build_variant simd "-C target-feature=+simd128"
build_variant scalar ""
# The loader re-exports the bindgen module's names: they must match.
want=$(sed -n 's/^export \(class\|function\) \([A-Za-z_]*\).*/\2/p; s/^export { \(.*\) };$/\1/p' pkg/cellsymphony_simd.js |
  tr ',' '\n' | sed 's/ as default//; s/__wbg_init//; s/ //g' | grep -v '^$' | sort | tr '\n' ' ')
have=$(sed -n 's/^export const { \(.*\) } = m;$/\1/p' pkg/cellsymphony.js | tr ',' '\n' | sed 's/ //g' | sort | tr '\n' ' ')
[ "$want" = "$have" ] || die "pkg/cellsymphony.js re-exports [$have] but the wasm-bindgen module exports [$want]: update the loader"
cmp -s pkg/cellsymphony_simd.d.ts <(sed 's/cellsymphony_scalar/cellsymphony_simd/g' pkg/cellsymphony_scalar.d.ts) ||
  die "the SIMD and scalar builds' TypeScript APIs differ"
{ cat pkg/cellsymphony_simd.d.ts
  echo '/** Whether the SIMD128 build was loaded (pkg/cellsymphony.js). */'
  echo 'export const simd: boolean;'; } > pkg/cellsymphony.d.ts
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
  "files": ["cellsymphony.js", "cellsymphony.d.ts", "cellsymphony_simd.js", "cellsymphony_simd.d.ts", "cellsymphony_simd_bg.wasm", "cellsymphony_simd_bg.wasm.d.ts", "cellsymphony_scalar.js", "cellsymphony_scalar.d.ts", "cellsymphony_scalar_bg.wasm", "cellsymphony_scalar_bg.wasm.d.ts", "README.md"],
  "sideEffects": ["./snippets/*"]
}
JSON
for v in simd scalar; do
  size=$(stat -c %s "pkg/cellsymphony_${v}_bg.wasm")
  gz=$(gzip -9 -c "pkg/cellsymphony_${v}_bg.wasm" | wc -c)
  log "pkg/cellsymphony_${v}_bg.wasm: $size bytes ($gz gzipped)"
done
log "pkg/ ready, built in $(( $(date +%s) - start )) s"
