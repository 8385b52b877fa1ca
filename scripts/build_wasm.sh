#!/usr/bin/env bash
# Build the npm package in pkg/: cargo (wasm32, no burn) → wasm-bindgen → wasm-opt →
# package.json. Run scripts/setup.sh first.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CELLSYMPHONY_ROOT"
start=$(date +%s)
log "cargo build --target wasm32-unknown-unknown (route: $(wasm_route))"
if [ "$(wasm_route)" = debian ]; then
  RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build --lib --release \
    --target wasm32-unknown-unknown --no-default-features -Zbuild-std=std,panic_abort
else
  cargo build --lib --release --target wasm32-unknown-unknown --no-default-features
fi
wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/cellsymphony.wasm"
[ -f "$wasm" ] || die "cargo did not produce $wasm"
if cargo tree --target wasm32-unknown-unknown --no-default-features -e normal 2>/dev/null | grep -q '^.*burn'; then
  die "burn is in the wasm dependency graph; it must stay native-only"
fi
log "wasm-bindgen --target web"
find pkg -mindepth 1 ! -name README.md -delete 2>/dev/null || true
mkdir -p pkg
wasm-bindgen --target web --out-dir pkg --out-name cellsymphony "$wasm"
log "wasm-opt -O3"
wasm-opt -O3 pkg/cellsymphony_bg.wasm -o pkg/cellsymphony_bg.opt.wasm
mv pkg/cellsymphony_bg.opt.wasm pkg/cellsymphony_bg.wasm
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
  "files": ["cellsymphony_bg.wasm", "cellsymphony.js", "cellsymphony.d.ts", "cellsymphony_bg.wasm.d.ts", "README.md"],
  "sideEffects": ["./snippets/*"]
}
JSON
size=$(stat -c %s pkg/cellsymphony_bg.wasm)
gz=$(gzip -9 -c pkg/cellsymphony_bg.wasm | wc -c)
log "pkg/ ready: cellsymphony_bg.wasm $size bytes ($gz gzipped), built in $(( $(date +%s) - start )) s"
