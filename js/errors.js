// The error type of the cellsymphony package (main thread and worker client alike): every
// failure of a call is a `CellSymphonyError` whose `code` says what to fix, except a cancel,
// which rejects with a `DOMException` named "AbortError" (the web platform's convention).

/** `code`: "model" (the model file cannot be loaded: not a cellsymphony safetensors file,
 * corrupt, unsupported version), "device" (`device: "webgpu"` without a WebGPU adapter),
 * "options" (an unknown device or option), "input" (counts, genes, centroids, patches or
 * indices rejected by the engine; the message names the array, element and value), "worker"
 * (the worker failed to start or was terminated). */
export class CellSymphonyError extends Error {
  constructor(code, message, options) {
    super(message, options);
    this.name = "CellSymphonyError";
    this.code = code;
  }
}

/** `err` as a {@link CellSymphonyError} with `code` (an AbortError or a CellSymphonyError is
 * returned as it is; the engine's message is kept verbatim, the original is the `cause`). */
export function asCellSymphonyError(err, code) {
  if (err instanceof CellSymphonyError || err?.name === "AbortError") return err;
  return new CellSymphonyError(code, String(err?.message ?? err), { cause: err });
}
