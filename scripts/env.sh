# Shared environment of the project's scripts (sourced, not run).
# Caches live outside the clone so fresh clones reuse builds; override with CELLSYMPHONY_CACHE.
CELLSYMPHONY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CELLSYMPHONY_CACHE="${CELLSYMPHONY_CACHE:-$HOME/.cache/cellsymphony}"
export CELLSYMPHONY_DATA="${CELLSYMPHONY_DATA:-$CELLSYMPHONY_CACHE}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CELLSYMPHONY_CACHE/target}"
TOOLS="$CELLSYMPHONY_CACHE/tools"
export PATH="$TOOLS/bin:$TOOLS/npm/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export NODE_PATH="$TOOLS/npm/node_modules"
# Pinned tool versions (the wasm-bindgen CLI must equal the crate's `wasm-bindgen = "=…"`).
WASM_BINDGEN_VERSION=0.2.130
BINARYEN_VERSION=132.0.0
PLAYWRIGHT_VERSION=1.65.1
# onnxruntime-web, the peer of scripts/bench_web.sh (npm; installed by that script).
ORT_WEB_VERSION=1.31.1
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
# How wasm32 is built: "rustup" (rustup's wasm32 std) or "debian" (rustc-web + build-std).
wasm_route() { cat "$CELLSYMPHONY_CACHE/wasm_route" 2>/dev/null || echo rustup; }
# Mesa's Vulkan loader complains on every device creation when this is unset.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-runtime-$(id -u)}"
mkdir -p -m 700 "$XDG_RUNTIME_DIR" 2>/dev/null || true
