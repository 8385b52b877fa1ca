// Shared by the headless-Chromium tests: playwright-core (installed by scripts/setup.sh under
// the cache, found through NODE_PATH), the system Chromium with the flags that give WebGPU on
// SwiftShader (see shared/TOOLCHAIN.md), and a static server for a folder.
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import net from "node:net";

const require = createRequire(import.meta.url);

/** playwright-core's `chromium`, or exit 2 with what to run. */
export function playwrightChromium() {
  try {
    return require("playwright-core").chromium;
  } catch {
    console.error("playwright-core not found: run scripts/setup.sh (it installs it under the cache; NODE_PATH points there)");
    process.exit(2);
  }
}

/** Headless Chromium (`$CHROMIUM`, default /usr/bin/chromium) with WebGPU on SwiftShader. */
export function launchChromium() {
  return playwrightChromium().launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless=new", "--no-sandbox", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-quic", "--enable-unsafe-webgpu",
      "--enable-features=Vulkan", "--use-vulkan=swiftshader", "--use-angle=swiftshader"],
  });
}

function freePort() {
  return new Promise((ok, fail) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => ok(p)); });
    s.on("error", fail);
  });
}

/** Serves `dir` on 127.0.0.1 (python3 -m http.server) until `close()`; resolves once
 * `probePath` (relative to `dir`) answers. Returns `{base, close}` (`base` ends in "/"). */
export async function serveStatic(dir, probePath) {
  const port = await freePort();
  const server = spawn("python3", ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", dir], { stdio: "ignore" });
  const base = `http://127.0.0.1:${port}/`;
  const close = () => server.kill();
  for (let i = 0; i < 100; i++) {
    try { const r = await fetch(base + probePath); if (r.ok) return { base, close }; } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  close();
  throw new Error(`static server for ${dir} did not start`);
}

/** `--name value` pairs of the command line as an object. */
export function parseArgs(argv = process.argv.slice(2)) {
  return Object.fromEntries(argv.reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
}

/** Opens `url` in a new page of `browser` and waits (up to `timeoutMs`) for the page to set
 * `body[data-status]` to "done" or "error". Returns `{page, result, lines, ms}`: `result` is
 * `window[global]` (an Error is thrown when it has an `error`), `lines` the console so far. */
export async function runPage(browser, url, { global, timeoutMs, viewport }) {
  const page = await browser.newPage(viewport ? { viewport } : {});
  const lines = [];
  page.on("console", (m) => lines.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => lines.push(`[pageerror] ${e.message}`));
  const t0 = Date.now();
  await page.goto(url);
  await page.waitForSelector("body[data-status=done], body[data-status=error]", { timeout: timeoutMs });
  const result = await page.evaluate((g) => window[g], global);
  if (!result || result.error) throw new Error(`the app failed: ${result?.error}\n${lines.join("\n")}`);
  return { page, result, lines, ms: Date.now() - t0 };
}
