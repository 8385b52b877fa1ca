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
"$bin" benchmark --peers none --models spatial,dual-modality,multi-input --epochs 3 --layers 2 --lr 1e-3 --out "$out/bench" > "$out/bench.log" 2>&1 \
  || { cat "$out/bench.log"; die "multimodal benchmark for the browser test failed"; }
bash scripts/export_www_models.sh "$bin" "$out/bench" "$out/www-data" "$out"
# The input contract: a gene-only model on pbmc68k_reduced's scaled X (recorded `as_stored`),
# the native CPU engine's classes, and X itself for the page.
pbmc=$(ls "$CELLSYMPHONY_DATA"/scanpy-*/10x_pbmc68k_reduced.h5ad 2>/dev/null | head -1 || true)
[ -f "$pbmc" ] || die "pbmc68k_reduced.h5ad is missing under $CELLSYMPHONY_DATA: run scripts/fetch_data.sh"
"$bin" benchmark --peers none --models gene-only --epochs 3 --layers 1 --lr 1e-3 --standardise off --h5ad "$pbmc" --out "$out/scaled" > "$out/scaled.log" 2>&1 \
  || { cat "$out/scaled.log"; die "pbmc68k_reduced benchmark for the browser test failed"; }
mkdir -p "$out/www-data/scaled_x"
cp "$out/scaled/gene_only/engine/model.int8.safetensors" "$out/www-data/scaled_x/"
"$bin" classify --anndata "$pbmc" --model "$out/www-data/scaled_x/model.int8.safetensors" --engine cpu --out "$out/www-data/scaled_x/predictions.csv" > "$out/scaled_classify.log" 2>&1 \
  || { cat "$out/scaled_classify.log"; die "classifying pbmc68k_reduced's X failed"; }
python3 - "$pbmc" "$out/www-data/scaled_x" <<'PY'
import json, sys, anndata, numpy as np
a = anndata.read_h5ad(sys.argv[1])
x = a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X)
x.astype("<f4").tofile(sys.argv[2] + "/x.f32")
json.dump(list(map(str, a.var_names)), open(sys.argv[2] + "/genes.json", "w"))
PY
# Gene tokens in the browser: a small gene-token model (the 64 most variable genes as tokens, so
# attention runs as flash attention) and the native CPU engine's classes on every crop cell.
"$bin" benchmark --peers none --models gene-only --gene-encoder tokens --max-gene-tokens 64 --epochs 3 --layers 1 --lr 1e-3 --out "$out/genetok" > "$out/genetok.log" 2>&1 \
  || { cat "$out/genetok.log"; die "gene-token benchmark for the browser test failed"; }
mkdir -p "$out/www-data/gene_tokens"
cp "$out/genetok/gene_only_tokens/engine/model.int8.safetensors" "$out/www-data/gene_tokens/"
"$bin" classify --model "$out/www-data/gene_tokens/model.int8.safetensors" --engine cpu --out "$out/www-data/gene_tokens/predictions.csv" > "$out/genetok_classify.log" 2>&1 \
  || { cat "$out/genetok_classify.log"; die "classifying the crop with the gene-token model failed"; }
"$bin" align --epochs 3 --out "$out/align" --www "$out/www-data" > "$out/align.log" 2>&1 \
  || { cat "$out/align.log"; die "alignment for the browser test failed"; }
# Image-only slide: the crop's DAPI TIFF (no transcripts), a synthetic H&E TIFF (seeded), a tiny
# image-only model (one split, 2 epochs, no gene transformer) and the native detect-nuclei +
# watershed output — nuclei, masks and each DAPI nucleus's class from that model — that
# readTiff / readTiffRgb + detectNuclei + cutPatches + classifyPatches in the page must reproduce;
# and a synthetic 6000 × 6000 tiled slide (72 MiB, seeded) streamed natively with --model, that
# the package worker's classifySlide (a Blob, window by window) must reproduce.
nuc="$out/www-data/nuclei"
mkdir -p "$nuc"
"$bin" image-only --folds 1 --epochs 2 --gene-transformer-epochs 0 --out "$out/image_only" > "$out/image_only.log" 2>&1 \
  || { cat "$out/image_only.log"; die "image-only training for the browser test failed"; }
cp "$out/image_only/model.int8.safetensors" "$nuc/model.int8.safetensors"
cp "$(ls "$CELLSYMPHONY_DATA"/bidcell-*/data/dataset_xenium_breast1_small/morphology_mip_small.tif | head -1)" "$nuc/dapi.tif"
node tests/browser/synth_he.mjs "$nuc/he.tif" > "$out/nuclei.log" 2>&1 \
  || { cat "$out/nuclei.log"; die "writing the synthetic H&E TIFF failed"; }
{ "$bin" detect-nuclei --image "$nuc/dapi.tif" --um-per-px 0.2125 --watershed --labels-out "$nuc/dapi_labels.npy" --out "$nuc/native.csv" \
    --model "$nuc/model.int8.safetensors" --engine cpu --predictions "$nuc/native_predictions.csv" \
  && "$bin" detect-nuclei --image "$nuc/he.tif" --stain he --um-per-px 0.5 --watershed --labels-out "$nuc/he_labels.npy" --out "$nuc/he_native.csv" \
  && node scripts/synth_tiled_tiff.mjs "$nuc/slide.tif" 6000 \
  && "$bin" detect-nuclei --image "$nuc/slide.tif" --um-per-px 0.2125 --out "$nuc/slide_native.csv" \
    --model "$nuc/model.int8.safetensors" --engine cpu --predictions "$nuc/slide_predictions.csv"; } >> "$out/nuclei.log" 2>&1 \
  || { cat "$out/nuclei.log"; die "detect-nuclei for the browser test failed"; }
# Morphology generation: a small flow (Epithelial → Malignant, 2 autoencoder epochs, 150 flow
# steps, no baselines) and the native CPU engine's samples of its held-out pairs, which
# FlowModel in the page must reproduce on the wasm CPU engine and on WebGPU.
{ "$bin" flow train --ae-epochs 2 --flow-steps 150 --no-baselines --corrupt-fraction 0 --out "$out/flow" \
  && "$bin" flow sample --model "$out/flow" --engine cpu --out "$out/flow/samples" --www "$out/www-data/flow"; } > "$out/flow.log" 2>&1 \
  || { cat "$out/flow.log"; die "flow training / sampling for the browser test failed"; }
# SPATIA: a tiny model (1 fine-tuning epoch on one region), the whole crop embedded (k-means
# niche clusters), exported with the clusters' centroids and classified by the native CPU
# engine, which SpatiaModel in the page must reproduce on every cell and niche.
sp="$out/spatia"
{ "$bin" spatia finetune --epochs 1 --split random --max-regions 1 --out "$sp/model" \
  && "$bin" spatia embed --model "$sp/model" --out "$sp/embed" \
  && "$bin" spatia export --model "$sp/model" --niche-centroids "$sp/embed/niche_centroids.json" --out "$sp/spatia.safetensors" \
  && "$bin" spatia classify --model "$sp/spatia.safetensors" --engine cpu --out "$sp/classify" --www "$out/www-data/spatia"; } > "$out/spatia.log" 2>&1 \
  || { cat "$out/spatia.log"; die "SPATIA training / classification for the browser test failed"; }
# SPATIA without images (scimap's 33-plex panel, centroids only): a tiny model classified by the
# native CPU engine, which the wasm package (in Node) must reproduce on every cell from
# expression, niches and regions alone.
spf="$out/spatia_free"
h5="$CELLSYMPHONY_DATA/scimap-2.4.1/scimap_example_33plex.h5ad"
{ "$bin" spatia finetune --h5ad "$h5" --label-key cell_type --normalisation arcsinh:5 --epochs 1 --split random --max-regions 2 --out "$spf/model" \
  && "$bin" spatia export --model "$spf/model" --out "$spf/spatia.safetensors" \
  && "$bin" spatia classify --h5ad "$h5" --label-key cell_type --normalisation arcsinh:5 --model "$spf/spatia.safetensors" --engine cpu --out "$spf/classify" --www "$spf/www" \
  && node tests/browser/spatia_free_check.mjs "$spf/www/"; } > "$out/spatia_free.log" 2>&1 \
  || { cat "$out/spatia_free.log"; die "image-free SPATIA in the wasm package failed"; }
grep "image-free SPATIA" "$out/spatia_free.log"
# WebGPU is known to work headless on SwiftShader here: a CPU fallback fails the test.
CELLSYMPHONY_REQUIRE_MODELS=1 CELLSYMPHONY_REQUIRE_WEBGPU="${CELLSYMPHONY_REQUIRE_WEBGPU:-1}" node tests/browser/browser_test.mjs --data "../$out/www-data/" --screenshot "$out/screenshot.png"
# The npm package as a JS developer installs it: npm pack → Vite + TypeScript apps (tsc, vite
# build) → their builds classify the crop and pair cells in headless Chromium, and the deck.gl
# app draws CellSymphonyLayer over the DAPI image (pixels and picking checked; screenshot).
CELLSYMPHONY_REQUIRE_WEBGPU="${CELLSYMPHONY_REQUIRE_WEBGPU:-1}" bash scripts/test_vite_app.sh "$out/www-data" "$out/deckgl_app.png"
log "all tests passed in $(( $(date +%s) - t0 )) s"
