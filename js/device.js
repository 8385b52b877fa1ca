// Device selection shared by the main-thread entry (index.js) and the module worker
// (worker.js): "auto" runs on WebGPU where a hardware adapter is found and on the CPU engine
// otherwise; "webgpu" requires an adapter; "cpu" never touches WebGPU.
import { CellSymphonyError } from "./errors.js";

export const DEVICES = Object.freeze(["auto", "webgpu", "cpu"]);

/** The device a classifier loads on (`"webgpu"` or `"cpu"`) for the requested `device`. The
 * adapter is probed in JS first because wgpu cannot recover once it has started without one.
 * "auto" skips a software (fallback) adapter such as SwiftShader: the wasm CPU engine is
 * faster than WebGPU emulated on the CPU; ask for "webgpu" to use one anyway. */
export async function pickDevice(device = "auto") {
  if (!DEVICES.includes(device)) {
    throw new CellSymphonyError("options", `device is ${JSON.stringify(device)}: pass "auto", "webgpu" or "cpu"`);
  }
  if (device === "cpu") return "cpu";
  const gpu = globalThis.navigator?.gpu;
  const adapter = gpu ? await gpu.requestAdapter().catch(() => null) : null;
  if (device === "webgpu") {
    if (!adapter) {
      throw new CellSymphonyError("device", `device "webgpu": no WebGPU adapter here (navigator.gpu is ${gpu ? "present but gave none" : "missing"}); load with device "auto" or "cpu" for the CPU engine`);
    }
    return "webgpu";
  }
  const software = adapter && (adapter.isFallbackAdapter || adapter.info?.isFallbackAdapter);
  return adapter && !software ? "webgpu" : "cpu";
}

/** The device of a load call's options: `device`, or the older `useGpu` boolean. */
export function requestedDevice({ device, useGpu } = {}) {
  if (device !== undefined) return device;
  if (useGpu !== undefined) return useGpu ? "webgpu" : "cpu";
  return "auto";
}
