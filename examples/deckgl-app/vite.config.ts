import { defineConfig } from "vite";

// As examples/vite-app: cellsymphony's .wasm files and worker are found with
// `new URL(…, import.meta.url)`, so the dev server must not pre-bundle it. deck.gl makes one
// ~830 kB chunk (~230 kB gzipped): the warning limit is raised above it.
export default defineConfig({
  optimizeDeps: { exclude: ["cellsymphony"] },
  build: { chunkSizeWarningLimit: 1200 },
});
