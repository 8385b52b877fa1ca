#!/usr/bin/env bash
# Whole slide, natively (issue 12, point 4): `cellsymphony classify --stream` on a synthetic
# 1,000,000-cell Xenium bundle (cell_feature_matrix.h5 + cells.csv.gz of resampled crop cells,
# written once by `synth_slide` and cached beside the output), with wall time, cells/s and
# peak RSS; the peer, burn fp32 on the ndarray backend (`classify --stream --engine burn`, same
# model), runs in the same run on a smaller bundle, beside our CPU engine on that same bundle;
# the WGSL engine (lavapipe without a GPU) on that bundle too. Prints one markdown table.
#   bash scripts/bench_scale.sh [MODEL.int8.safetensors] [MODEL.safetensors] [OUT.md]
# Knobs: CELLSYMPHONY_SCALE_CELLS (1000000), CELLSYMPHONY_SCALE_PEER_CELLS (20000),
# CELLSYMPHONY_SCALE_GPU_CELLS (8192: lavapipe runs ~300 cells/s on 2 quiet cores, so the WGSL
# arm is timed on fewer cells and its 1M-cell time extrapolated), CELLSYMPHONY_SCALE_GPU=0
# (skip the WGSL arm), CELLSYMPHONY_SCALE_DIR (bundle cache).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CELLSYMPHONY_ROOT"
int8="${1:-runs/gene_only/model.int8.safetensors}"
fp32="${2:-runs/gene_only/model.safetensors}"
md="${3:-runs/gene_only/bench_scale.md}"
cells="${CELLSYMPHONY_SCALE_CELLS:-1000000}"
peer_cells="${CELLSYMPHONY_SCALE_PEER_CELLS:-20000}"
gpu_cells="${CELLSYMPHONY_SCALE_GPU_CELLS:-8192}"
bin="$CARGO_TARGET_DIR/release"
[ -x "$bin/cellsymphony" ] && [ -x "$bin/synth_slide" ] || die "build first: cargo build --release --bins"
[ -f "$int8" ] && [ -f "$fp32" ] || die "model files $int8 / $fp32 not found: run scripts/run.sh (or pass them)"
cache="${CELLSYMPHONY_SCALE_DIR:-$(dirname "$md")/scale}"
mkdir -p "$cache"

bundle() { # N → folder of a synthetic N-cell bundle, generated once
  local dir="$cache/slide-$1"
  if [ ! -f "$dir/cell_feature_matrix.h5" ] || [ ! -f "$dir/cells.csv.gz" ]; then
    log "synth_slide: generating a $1-cell bundle in $dir (once)"
    rm -rf "$dir"
    "$bin/synth_slide" --cells "$1" --out "$dir" >&2
  fi
  echo "$dir"
}

rows=()
arm() { # TAG NAME ENGINE MODEL BUNDLE CELLS → one table row; the run's files under $cache/*-TAG.*
  local tag="$1" name="$2" engine="$3" model="$4" dir="$5" n="$6"
  local log="$cache/classify-$tag.log" timing="$cache/time-$tag.txt"
  log "classify --stream --engine $engine, $n cells ($name)"
  local load; load="$(cut -d' ' -f1-3 /proc/loadavg)"
  if command -v /usr/bin/time >/dev/null; then
    /usr/bin/time -v -o "$timing" "$bin/cellsymphony" classify --bundle "$dir" --stream --engine "$engine" \
      --model "$model" --out "$cache/pred-$tag.csv" >"$log" 2>&1 || { cat "$log" >&2; return 1; }
  else
    "$bin/cellsymphony" classify --bundle "$dir" --stream --engine "$engine" \
      --model "$model" --out "$cache/pred-$tag.csv" >"$log" 2>&1 || { cat "$log" >&2; return 1; }
  fi
  grep -E '^classified|peak RSS' "$log" >&2
  # "classified N cells (… stored values) with ENGINE in S s (R cells/s; forward pass F s, …)"
  local line secs rate fwd peak
  line="$(grep -E '^classified [0-9]+ cells' "$log")"
  secs="$(sed -E 's/.* in ([0-9.]+) s \(.*/\1/' <<<"$line")"
  rate="$(sed -E 's/.* s \(([0-9]+) cells\/s.*/\1/' <<<"$line")"
  fwd="$(sed -E 's/.*forward pass ([0-9.]+) s.*/\1/' <<<"$line")"
  peak="$(sed -nE 's/^peak RSS ([0-9.]+) MiB.*/\1/p' "$log")"
  local wall="" maxrss=""
  if [ -f "$timing" ]; then
    wall="$(sed -nE 's/.*Elapsed \(wall clock\) time.*: (.*)/\1/p' "$timing")"
    maxrss="$(sed -nE 's/.*Maximum resident set size \(kbytes\): ([0-9]+)/\1/p' "$timing")"
    peak="$(awk -v k="$maxrss" 'BEGIN { printf "%.0f", k / 1024 }')"
  fi
  local fwd_rate; fwd_rate="$(awk -v n="$n" -v f="$fwd" 'BEGIN { printf "%.0f", n / f }')"
  rows+=("| $name | $(basename "$model") | $(printf "%'d" "$n") | ${secs} s${wall:+ (process $wall)} | $(printf "%'d" "$rate") | $(printf "%'d" "$fwd_rate") | ${peak} MiB | $load |")
}

agreement() { # CSV_A CSV_B → "k/n" cells with the same predicted class
  paste -d'\t' <(cut -d, -f4 "$1") <(cut -d, -f4 "$2") | tail -n +2 | awk -F'\t' '{ n++; if ($1 == $2) k++ } END { printf "%d/%d", k, n }'
}

big="$(bundle "$cells")"
small="$(bundle "$peer_cells")"
arm cpu-int8-big "ours, CPU engine int8 (whole slide)" cpu "$int8" "$big" "$cells"
arm cpu-int8 "ours, CPU engine int8" cpu "$int8" "$small" "$peer_cells"
arm burn "peer: burn fp32 (ndarray)" burn "$fp32" "$small" "$peer_cells"
arm cpu-fp32 "ours, CPU engine fp32" cpu "$fp32" "$small" "$peer_cells"
gpu_note=""
if [ "${CELLSYMPHONY_SCALE_GPU:-1}" = 1 ]; then
  if arm gpu-int8 "ours, WGSL engine int8" gpu "$int8" "$(bundle "$gpu_cells")" "$gpu_cells"; then
    gpu_rate="$(sed -nE 's/^classified [0-9]+ cells .* s \(([0-9]+) cells\/s.*/\1/p' "$cache/classify-gpu-int8.log")"
    gpu_note="$(sed -nE 's/.* with (WGSL engine int8 on .*) in [0-9.]+ s .*/\1/p' "$cache/classify-gpu-int8.log" | head -1)"
    gpu_note="$gpu_note; at its rate $cells cells would take $(awk -v n="$cells" -v r="${gpu_rate:-0}" 'BEGIN { if (r > 0) printf "%.1f h", n / r / 3600; else printf "?" }')"
  else
    log "WGSL arm failed (see $cache/classify-gpu-int8.log); continuing"
  fi
fi
h5_mib="$(du -m "$big/cell_feature_matrix.h5" | cut -f1)"
nnz="$(sed -nE 's/^classified [0-9]+ cells \(([0-9]+) stored values\).*/\1/p' "$cache/classify-cpu-int8-big.log")"

{
  echo "## Whole slide, natively: \`classify --stream\` (one run, $(nproc) cores, RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-all})"
  echo
  echo "Synthetic Xenium bundle of $(printf "%'d" "$cells") resampled crop cells (\`synth_slide\`): cell_feature_matrix.h5 ${h5_mib} MiB,"
  echo "$(printf "%'d" "${nnz:-0}") stored values, read in blocks of 16,384 cells. Peer: burn fp32 on ndarray through the same"
  echo "streaming path (\`--engine burn\`, the model's fp32 file) on a $(printf "%'d" "$peer_cells")-cell bundle."
  echo "Time = reading + preparing + forward pass (the process wall time in brackets includes loading the model);"
  echo "forward cells/s = cells / forward-pass seconds; peak RSS = the process's maximum resident set (/usr/bin/time, else VmHWM)."
  echo
  echo "| engine | model file | cells | time | cells/s | forward cells/s | peak RSS | load avg (1/5/15 min) at start |"
  echo "|---|---|---:|---:|---:|---:|---:|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Same class, burn fp32 vs ours int8 on the $(printf "%'d" "$peer_cells") cells: $(agreement "$cache/pred-burn.csv" "$cache/pred-cpu-int8.csv");"
  echo "burn fp32 vs ours fp32: $(agreement "$cache/pred-burn.csv" "$cache/pred-cpu-fp32.csv")."
  if [ -n "$gpu_note" ]; then echo "WGSL engine: $gpu_note."; fi
} >"$md.partial"
mv "$md.partial" "$md"
cat "$md"
