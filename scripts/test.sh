#!/usr/bin/env bash
# Every test: Rust unit + integration tests natively (WGSL kernels on software Vulkan), the
# Python safetensors check, the wasm package in headless Chromium (WebGPU on SwiftShader).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CELLSYMPHONY_ROOT"
t0=$(date +%s)
bash scripts/setup.sh
log "setup: $(( $(date +%s) - t0 )) s"

log "cargo test --release (native; kernels on $(vulkaninfo --summary 2>/dev/null | grep -m1 deviceName | sed 's/.*= //' || echo 'no Vulkan'))"
t1=$(date +%s)
# GPU tests must run here (setup installs lavapipe): no adapter fails them instead of skipping.
CELLSYMPHONY_REQUIRE_GPU=1 cargo test --release --no-fail-fast
log "cargo test: $(( $(date +%s) - t1 )) s"

log "wasm package"
bash scripts/build_wasm.sh

log "browser test: quick model → web bundle → headless Chromium"
out="out/test"
rm -rf "$out"; mkdir -p "$out"
bin="$CARGO_TARGET_DIR/release/cellsymphony"
"$bin" pipeline --epochs 3 --lr 1e-3 --layers 2 --out "$out/run" --www "$out/www-data" > "$out/pipeline.log" 2>&1 \
  || { cat "$out/pipeline.log"; die "pipeline for the browser test failed"; }
# The multimodal classifiers in the browser: a short benchmark run trains and exports spatial,
# dual-modality and multi-input in the engine format; the native CPU engine's predictions (and
# the DAPI patches it read) are what the page must match.
"$bin" benchmark --models spatial,dual-modality,multi-input --epochs 3 --layers 2 --lr 1e-3 --out "$out/bench" > "$out/bench.log" 2>&1 \
  || { cat "$out/bench.log"; die "multimodal benchmark for the browser test failed"; }
bash scripts/export_www_models.sh "$bin" "$out/bench" "$out/www-data" "$out"
"$bin" align --epochs 3 --out "$out/align" --www "$out/www-data" > "$out/align.log" 2>&1 \
  || { cat "$out/align.log"; die "alignment for the browser test failed"; }
# WebGPU is known to work headless on SwiftShader here: a CPU fallback fails the test.
CELLSYMPHONY_REQUIRE_MODELS=1 CELLSYMPHONY_REQUIRE_WEBGPU="${CELLSYMPHONY_REQUIRE_WEBGPU:-1}" node tests/browser/browser_test.mjs --data "../$out/www-data/" --screenshot "$out/screenshot.png"
log "all tests passed in $(( $(date +%s) - t0 )) s"
