import { defineConfig } from "vite";

export default defineConfig({
  // The dev server's dependency pre-bundling would move cellsymphony's files away from its
  // .wasm files and worker.js (found with `new URL(…, import.meta.url)`); `vite build` needs nothing.
  optimizeDeps: { exclude: ["cellsymphony"] },
  // cellsymphony's worker is a module worker that imports its wasm glue.
  worker: { format: "es" },
});
