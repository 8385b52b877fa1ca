#!/usr/bin/env bash
# Build the npm package in pkg/: cargo (wasm32, no burn) → wasm-bindgen → wasm-opt →
# package.json, three times: a relaxed-SIMD build (cargo features `simd128,relaxed-simd`: the
# f32 GEMM multiplies and adds with `f32x4.relaxed_madd`), a SIMD128 build (cargo feature
# `simd128`: the CPU engine's kernels carry `#[target_feature(enable = "simd128")]`, so only
# this crate is rebuilt, not its dependencies) and a scalar build for wasm engines without
# SIMD. js/wasm.js (copied into pkg/) picks one at load with WebAssembly.validate;
# pkg/cellsymphony.js re-exports it. Run scripts/setup.sh first.
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
  [ "$name" = scalar ] || opt+=(--enable-simd)
  [ "$name" = relaxed ] && opt+=(--enable-relaxed-simd)
  wasm-opt "${opt[@]}" "pkg/cellsymphony_${name}_bg.wasm" -o "pkg/cellsymphony_${name}_bg.opt.wasm"
  mv "pkg/cellsymphony_${name}_bg.opt.wasm" "pkg/cellsymphony_${name}_bg.wasm"
  log "$name build: $(( $(date +%s) - t0 )) s"
}
build_variant relaxed --features simd128,relaxed-simd
build_variant simd --features simd128
build_variant scalar
# Each build uses only what its probe in js/wasm.js checks: the scalar build no SIMD, the
# SIMD128 build no relaxed SIMD; the relaxed build must really use relaxed_madd.
if command -v wasm-dis >/dev/null; then
  wasm-dis pkg/cellsymphony_scalar_bg.wasm -o "$CARGO_TARGET_DIR/scalar.wat"
  ! grep -q 'v128\|f32x4' "$CARGO_TARGET_DIR/scalar.wat" || die "pkg/cellsymphony_scalar_bg.wasm contains SIMD instructions"
  wasm-dis pkg/cellsymphony_simd_bg.wasm -o "$CARGO_TARGET_DIR/simd.wat"
  ! grep -q '\.relaxed_' "$CARGO_TARGET_DIR/simd.wat" || die "pkg/cellsymphony_simd_bg.wasm contains relaxed-SIMD instructions"
  wasm-dis pkg/cellsymphony_relaxed_bg.wasm -o "$CARGO_TARGET_DIR/relaxed.wat"
  grep -q 'f32x4.relaxed_madd' "$CARGO_TARGET_DIR/relaxed.wat" || die "pkg/cellsymphony_relaxed_bg.wasm does not use f32x4.relaxed_madd"
  rm -f "$CARGO_TARGET_DIR"/{scalar,simd,relaxed}.wat
else
  die "wasm-dis (binaryen) is missing: run scripts/setup.sh"
fi
bash scripts/package_npm.sh
log "pkg/ ready, built in $(( $(date +%s) - start )) s"
