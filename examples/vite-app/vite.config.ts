import { defineConfig } from "vite";

// `vite build` needs no configuration for cellsymphony (its .wasm files and worker are found
// with `new URL(…, import.meta.url)`). The dev server's dependency pre-bundling would move its
// JS away from them, so it is excluded.
export default defineConfig({
  optimizeDeps: { exclude: ["cellsymphony"] },
});
