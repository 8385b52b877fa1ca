#!/usr/bin/env bash
# The npm package as a JS developer gets it: `npm pack` in pkg/, the tarball installed with the
# example apps' pinned dependencies (examples/vite-app: vite, typescript; examples/deckgl-app:
# deck.gl too) in one temp folder, then for each app `tsc --noEmit` (strict; the package's
# .d.ts checked), `vite build`, and the built app in headless Chromium on a web bundle
# (tests/browser/vite_app.mjs: classify, worker, pairing; tests/browser/deckgl_app.mjs:
# CellSymphonyLayer drawn and picked, with a screenshot).
#   scripts/test_vite_app.sh [web bundle, default out/test/www-data] [screenshot, default out/test/deckgl_app.png]
# npm's cache: $CELLSYMPHONY_NPM_CACHE (default $CELLSYMPHONY_CACHE/npm-cache), so reruns are fast.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$CELLSYMPHONY_ROOT"
data="$(realpath "${1:-out/test/www-data}")"
screenshot="$(realpath -m "${2:-out/test/deckgl_app.png}")"
apps=(vite-app deckgl-app)
[ -f pkg/index.js ] && [ -f pkg/package.json ] || die "pkg/ is not built: run scripts/build_wasm.sh"
[ -f "$data/cells.json" ] && [ -f "$data/model.int8.safetensors" ] || die "$data is not a web bundle (scripts/test.sh writes out/test/www-data)"
# "No any" in the package's hand-written types.
for f in pkg/index.d.ts pkg/client.d.ts pkg/deck.d.ts; do
  if grep -vE '^\s*(/\*|\*|//)' "$f" | grep -w 'any'; then die "$f uses \`any\`"; fi
done
t0=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tarball=$(cd pkg && npm pack --silent --pack-destination "$work")
log "npm pack: $tarball, $(stat -c %s "$work/$tarball") bytes"
# One install for every app: their package.json files merged (a package pinned at two versions
# is an error); each app is a subfolder of $work and finds its imports in $work/node_modules.
WORK="$work" node -e '
const fs = require("fs"), [tarball, ...apps] = process.argv.slice(1);
const merged = { name: "cellsymphony-example-apps", private: true, type: "module", dependencies: {}, devDependencies: {} };
for (const app of apps) {
  const p = JSON.parse(fs.readFileSync(`examples/${app}/package.json`));
  for (const kind of ["dependencies", "devDependencies"]) for (const [name, v] of Object.entries(p[kind] ?? {})) {
    const want = name === "cellsymphony" ? `file:./${tarball}` : v;
    if (merged[kind][name] && merged[kind][name] !== want) throw new Error(`examples/${app} pins ${name} ${v}, another app ${merged[kind][name]}`);
    merged[kind][name] = want;
  }
}
fs.writeFileSync(process.env.WORK + "/package.json", JSON.stringify(merged, null, 2));' "$tarball" "${apps[@]}"
(cd "$work" && npm install --cache "${CELLSYMPHONY_NPM_CACHE:-$CELLSYMPHONY_CACHE/npm-cache}" --prefer-offline --no-audit --no-fund --loglevel=error)
log "npm install: $(( $(date +%s) - t0 )) s"
bin="$work/node_modules/.bin"
for app in "${apps[@]}"; do
  t1=$(date +%s)
  mkdir "$work/$app"
  (cd "examples/$app" && cp -r tsconfig.json vite.config.ts index.html src "$work/$app/")
  cd "$work/$app"
  # An app with skipLibCheck (deck.gl's dependencies ship .d.ts files that do not type-check)
  # is checked with --skipLibCheck false, so cellsymphony's .d.ts files are checked strictly
  # too: only errors inside @luma.gl / @loaders.gl pass.
  if grep -q '"skipLibCheck": true' tsconfig.json; then
    errors=$("$bin/tsc" --noEmit --skipLibCheck false 2>&1 || true)
    ours=$(printf '%s\n' "$errors" | grep -E '^[^ ].*error TS[0-9]+' | grep -vE '(^|/)node_modules/@(luma\.gl|loaders\.gl)/' || true)
    [ -z "$ours" ] || die "$app: tsc --noEmit --skipLibCheck false: errors outside deck.gl's dependencies: $ours"
  else
    "$bin/tsc" --noEmit
  fi
  log "$app: tsc --noEmit passed"
  "$bin/vite" build --logLevel error
  for w in simd scalar; do
    ls dist/assets/ | grep -q "cellsymphony_${w}_bg.*\.wasm" || die "$app: vite build did not emit the $w wasm build (dist/assets: $(ls dist/assets | tr '\n' ' '))"
  done
  for f in dist/assets/*; do
    log "$app: vite build: $f: $(stat -c %s "$f") bytes ($(gzip -9 -c "$f" | wc -c) gzipped)"
  done
  ln -s "$data" dist/data
  cd "$CELLSYMPHONY_ROOT"
  log "$app: built in $(( $(date +%s) - t1 )) s"
done
t1=$(date +%s)
node tests/browser/vite_app.mjs --dist "$work/vite-app/dist" --data "$data"
log "vite app test: $(( $(date +%s) - t1 )) s"
t1=$(date +%s)
mkdir -p "$(dirname "$screenshot")"
node tests/browser/deckgl_app.mjs --dist "$work/deckgl-app/dist" --data "$data" --screenshot "$screenshot"
log "deck.gl app test: $(( $(date +%s) - t1 )) s; all example apps: $(( $(date +%s) - t0 )) s"
