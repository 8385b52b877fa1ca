#!/usr/bin/env bash
# Adds the multimodal classifiers a `cellsymphony benchmark` run exported (spatial,
# dual-modality, multi-input; `<bench>/<name>/engine/model.int8.safetensors`) to a web-demo
# data folder: the int8 model, the native CPU engine's predictions on every crop cell, the
# DAPI patches the morphology models read, and `models.json`, which the page reads to offer
# them as layers.
#   scripts/export_www_models.sh <cellsymphony binary> <benchmark dir> <www data dir> <log dir>
set -euo pipefail
source "$(dirname "$0")/env.sh"
bin="$1"; bench="$2"; www="$3"; logs="$4"
mkdir -p "$www" "$logs"
entries=()
for name in spatial dual_modality multi_input; do
  model="$bench/$name/engine/model.int8.safetensors"
  [ -f "$model" ] || die "$model is missing: run \`cellsymphony benchmark --models spatial,dual-modality,multi-input\` first"
  cp "$model" "$www/$name.int8.safetensors"
  patches=(); patches_json=""
  if [ "$name" != spatial ]; then
    patches=(--patches-out "$www/${name}_patches.f32")
    patches_json=", \"patches\": \"${name}_patches.f32\""
  fi
  "$bin" classify --model "$www/$name.int8.safetensors" --engine cpu --out "$www/${name}_predictions.csv" "${patches[@]}" \
    > "$logs/${name}_classify.log" 2>&1 \
    || { cat "$logs/${name}_classify.log"; die "classifying with the $name model failed"; }
  title=$(echo "$name" | sed 's/_/-/; s/^./\U&/')
  entries+=("{\"name\": \"$name\", \"title\": \"$title\", \"model\": \"$name.int8.safetensors\"$patches_json}")
done
(IFS=,; echo "[${entries[*]}]") > "$www/models.json"
log "web demo: added ${#entries[@]} multimodal models to $www (models.json)"
