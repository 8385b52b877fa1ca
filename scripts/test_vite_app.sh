#!/usr/bin/env bash
# The npm package as a JS developer gets it: `npm pack` in pkg/, the tarball installed with vite
# and typescript (versions pinned in examples/vite-app/package.json) into a temp copy of
# examples/vite-app, `tsc --noEmit` (strict, the package's .d.ts checked), `vite build`, and
# the built app in headless Chromium (tests/browser/vite_app.mjs) on a web bundle.
#   scripts/test_vite_app.sh [web bundle, default out/test/www-data]
# npm's cache: $CELLSYMPHONY_NPM_CACHE (default $CELLSYMPHONY_CACHE/npm-cache), so reruns are fast.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CELLSYMPHONY_ROOT"
data="$(realpath "${1:-out/test/www-data}")"
[ -f pkg/index.js ] && [ -f pkg/package.json ] || die "pkg/ is not built: run scripts/build_wasm.sh"
[ -f "$data/cells.json" ] && [ -f "$data/model.int8.safetensors" ] || die "$data is not a web bundle (scripts/test.sh writes out/test/www-data)"
# "No any" in the package's hand-written types.
for f in pkg/index.d.ts pkg/client.d.ts; do
  if grep -vE '^\s*(/\*|\*|//)' "$f" | grep -w 'any'; then die "$f uses \`any\`"; fi
done
t0=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tarball=$(cd pkg && npm pack --silent --pack-destination "$work")
log "npm pack: $tarball, $(stat -c %s "$work/$tarball") bytes"
mkdir "$work/app"
(cd examples/vite-app && cp -r package.json tsconfig.json vite.config.ts index.html src "$work/app/")
cd "$work/app"
node -e 'const f="package.json",p=JSON.parse(require("fs").readFileSync(f));p.dependencies.cellsymphony="file:../"+process.argv[1];require("fs").writeFileSync(f,JSON.stringify(p,null,2))' "$tarball"
npm install --cache "${CELLSYMPHONY_NPM_CACHE:-$CELLSYMPHONY_CACHE/npm-cache}" --prefer-offline --no-audit --no-fund --loglevel=error
log "npm install: $(( $(date +%s) - t0 )) s"
npx --no-install tsc --noEmit
log "tsc --noEmit: passed"
npx --no-install vite build --logLevel warn
for w in simd scalar; do
  ls dist/assets/ | grep -q "cellsymphony_${w}_bg.*\.wasm" || die "vite build did not emit the $w wasm build (dist/assets: $(ls dist/assets | tr '\n' ' '))"
done
for f in dist/assets/*; do
  log "vite build: $f: $(stat -c %s "$f") bytes ($(gzip -9 -c "$f" | wc -c) gzipped)"
done
ln -s "$data" dist/data
cd "$CELLSYMPHONY_ROOT"
node tests/browser/vite_app.mjs --dist "$work/app/dist" --data "$data"
log "vite app test: $(( $(date +%s) - t0 )) s"
