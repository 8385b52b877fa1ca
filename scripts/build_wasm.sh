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
bash scripts/package_npm.sh
log "pkg/ ready, built in $(( $(date +%s) - start )) s"
