#!/usr/bin/env bash
# Our npm package vs onnxruntime-web 1.31.1 in one headless Chromium run, on the same model:
# the wasm CPU engine (int8 and fp32 files), our WebGPU engine, and onnxruntime-web's WASM EP
# (fp32 and its own dynamic int8, 1 and 2 threads) and WebGPU EP on an ONNX copy of the model
# built by scripts/onnx_export.py. Prints one markdown table (cells/s, ratio to the ORT arm at
# equal threads) and writes it to OUT.
#   scripts/bench_web.sh [MODEL.safetensors] [MODEL.int8.safetensors] [OUT.md]
# Defaults: runs/gene_only/model{,.int8}.safetensors, runs/gene_only/bench_web.md. Cells: the
# crop's cells of the web bundle (CELLSYMPHONY_BENCH_DATA, default www/data, written by
# `cellsymphony pipeline --www www/data`) repeated to CELLSYMPHONY_BENCH_SIZES (default
# 1024,8192,65536); WebGPU runs on SwiftShader here, so its arms get CELLSYMPHONY_BENCH_GPU_SIZES
# (default 1024) only. CELLSYMPHONY_BENCH_GPU=0 leaves the WebGPU arms out; CELLSYMPHONY_BENCH_THREADS
# (default 1,2) keeps only the CPU arms with those thread counts.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CELLSYMPHONY_ROOT"
fp32="${1:-runs/gene_only/model.safetensors}"
int8="${2:-runs/gene_only/model.int8.safetensors}"
out="${3:-runs/gene_only/bench_web.md}"
data="${CELLSYMPHONY_BENCH_DATA:-www/data}"
for f in "$fp32" "$int8" "$data/counts.f32" "$data/cells.json"; do
  [ -f "$f" ] || die "$f is missing: run scripts/run.sh (or pass the model files; CELLSYMPHONY_BENCH_DATA names the web bundle)"
done
[ -f pkg/cellsymphony_relaxed_bg.wasm ] && [ -f pkg/cellsymphony_simd_bg.wasm ] && [ -f pkg/cellsymphony_scalar_bg.wasm ] || bash scripts/build_wasm.sh
# onnxruntime-web, pinned, in its own folder of the tools cache.
ort_dir="${CELLSYMPHONY_ORT_WEB_DIR:-$TOOLS/onnxruntime-web-$ORT_WEB_VERSION}"
if [ ! -f "$ort_dir/node_modules/onnxruntime-web/dist/ort.wasm.min.mjs" ]; then
  log "npm install onnxruntime-web@$ORT_WEB_VERSION → $ort_dir"
  mkdir -p "$ort_dir"
  npm install --prefix "$ort_dir" --no-audit --no-fund --loglevel=error "onnxruntime-web@$ORT_WEB_VERSION"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log "ONNX export of $fp32 (fp32 graph + onnxruntime quantize_dynamic int8)"
python3 scripts/onnx_export.py "$fp32" "$work/model.onnx" --int8 "$work/model.int8.onnx" --meta-json "$work/meta.json"
gpu_flag=()
[ "${CELLSYMPHONY_BENCH_GPU:-1}" = 1 ] || gpu_flag=(--no-gpu)
log "headless Chromium: ours vs onnxruntime-web $ORT_WEB_VERSION → $out"
node tests/browser/bench_web.mjs --fp32 "$fp32" --int8 "$int8" --onnx "$work/model.onnx" \
  --onnx-int8 "$work/model.int8.onnx" --meta "$work/meta.json" --data "$data" \
  --ort-dist "$ort_dir/node_modules/onnxruntime-web/dist" --out "$out" \
  --sizes "${CELLSYMPHONY_BENCH_SIZES:-1024,8192,65536}" --gpu-sizes "${CELLSYMPHONY_BENCH_GPU_SIZES:-1024}" \
  "${gpu_flag[@]}"
