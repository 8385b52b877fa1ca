#!/usr/bin/env bash
# Long fuzz runs with cargo fuzz (libFuzzer), out of CI: every target for SECONDS each
# (default 600). Needs a nightly toolchain (`rustup toolchain install nightly`); installs
# cargo-fuzz from crates.io into the tool cache. Crashes are copied to
# fuzz/regressions/<target>/ (commit them after the fix: tests/fuzz_corpus.rs replays them).
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
# A unit slower than FUZZ_TIMEOUT seconds (default 60) counts as a hang. parquet-rs needs ~5 s
# for some crafted 1 KB footers (fuzz/regressions/parquet_files/timeout-*), so keep it > 10.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CELLSYMPHONY_ROOT"
secs="${1:-600}"; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(model_file mex_folder csv_tables parquet_files hdf5_files)
rustup run nightly rustc --version >/dev/null 2>&1 || die "no nightly toolchain: rustup toolchain install nightly"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --version 0.13.2 --root "$TOOLS"
# A target dir of its own: instrumented builds must not evict the normal caches.
export CARGO_TARGET_DIR="$CELLSYMPHONY_CACHE/target-fuzz"
work="$CELLSYMPHONY_CACHE/fuzz-corpus"
mkdir -p out/fuzz
for t in "${targets[@]}"; do
  grep -q "name = \"$t\"" fuzz/Cargo.toml || { log "no fuzz target $t, skipped"; continue; }
  mkdir -p "$work/$t" "fuzz/regressions/$t"
  log "fuzz $t for $secs s (work corpus $work/$t, seeds fuzz/corpus/$t)"
  # Safe Rust: panics, aborts, timeouts and memory blow-ups are the bugs, so no sanitizer.
  set +e
  cargo +nightly fuzz run --sanitizer none -O "$t" "$work/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout="${FUZZ_TIMEOUT:-60}" -print_final_stats=1 \
    > "out/fuzz/$t.log" 2>&1
  rc=$?
  set -e
  grep -E "^stat::(number_of_executed_units|peak_rss_mb)|^Done|cov:" "out/fuzz/$t.log" | tail -3
  if [ $rc -ne 0 ]; then
    cp fuzz/artifacts/"$t"/* "fuzz/regressions/$t/" 2>/dev/null || true
    die "fuzz $t found a crash (rc $rc): see out/fuzz/$t.log and fuzz/regressions/$t/"
  fi
done
log "fuzzing done: logs in out/fuzz/"
