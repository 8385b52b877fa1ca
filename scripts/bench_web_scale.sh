#!/usr/bin/env bash
# Whole-slide scale in the browser: the crop's cells replicated to 100k and 1M cells (CSR),
# classified through the npm package's module Worker in chunks on the wasm CPU engine, with the
# wasm API in one main-thread call as the peer; prints cells/s, the worker's wasm memory and the
# tab's peak RSS. Needs pkg/ (scripts/build_wasm.sh) and a web bundle (the main job's www/data/,
# or scripts/test.sh's out/test/www-data/). Not part of the tests (minutes on one core).
#   bash scripts/bench_web_scale.sh [--data ../out/test/www-data/] [--cells 100000,1000000] [--peer-cells 100000] [--webgpu-cells 8192] [--chunk 2048]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CELLSYMPHONY_ROOT"
[ -f pkg/client.js ] && [ -f pkg/cellsymphony_simd_bg.wasm ] || die "pkg/ is not built: run scripts/build_wasm.sh"
data="www/data/"
for ((i = 1; i <= $#; i++)); do [ "${!i}" = "--data" ] && { j=$((i + 1)); data="www/${!j}"; }; done
[ -f "$data/cells.json" ] && [ -f "$data/model.int8.safetensors" ] || die "$data has no web bundle (cells.json, counts.f32, model.int8.safetensors): run scripts/run.sh, or pass --data ../out/test/www-data/"
node tests/browser/bench_web_scale.mjs "$@"
