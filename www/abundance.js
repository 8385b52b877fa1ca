// Per-niche cell-type abundance of an image-only slide (issue 15, CUCA's evaluation unit):
// nuclei are assigned by centroid to the niche grid — non-overlapping squares of NICHE_UM µm
// from the image origin, SPATIA's 256 px niches of a Xenium morphology image (0.2125 µm/px) —
// and counted per predicted type. Pure JS (no DOM): the demo draws it, the browser test
// compares it with the same counts computed in node from native `detect-nuclei --model`.

/** Niche side in µm: 256 px × 0.2125 µm/px (Xenium's morphology pixel), as `data::niches`. */
export const NICHE_UM = 256 * 0.2125;

/**
 * Counts nuclei per niche and class.
 * @param {ArrayLike<number>} centroidsUm `[n * 2]` (x, y) in µm.
 * @param {ArrayLike<number>} classes `[n]` class index per nucleus.
 * @param {number} nClasses
 * @param {{originUm?: [number, number], widthUm: number, heightUm: number, nicheUm?: number}} grid
 * @returns {{nicheUm: number, nx: number, ny: number, counts: Uint32Array, totals: Uint32Array}}
 *   `counts[(iy * nx + ix) * nClasses + k]`, `totals[iy * nx + ix]`.
 */
export function nicheAbundance(centroidsUm, classes, nClasses, { originUm = [0, 0], widthUm, heightUm, nicheUm = NICHE_UM }) {
  if (!(nicheUm > 0) || !(widthUm > 0) || !(heightUm > 0)) throw new Error(`nicheAbundance: niche ${nicheUm} µm and image ${widthUm}×${heightUm} µm must be > 0`);
  if (centroidsUm.length !== 2 * classes.length) throw new Error(`nicheAbundance: ${centroidsUm.length / 2} centroids for ${classes.length} classes`);
  const nx = Math.max(1, Math.ceil(widthUm / nicheUm));
  const ny = Math.max(1, Math.ceil(heightUm / nicheUm));
  const counts = new Uint32Array(nx * ny * nClasses);
  const totals = new Uint32Array(nx * ny);
  for (let i = 0; i < classes.length; i++) {
    const ix = Math.min(nx - 1, Math.max(0, Math.floor((centroidsUm[2 * i] - originUm[0]) / nicheUm)));
    const iy = Math.min(ny - 1, Math.max(0, Math.floor((centroidsUm[2 * i + 1] - originUm[1]) / nicheUm)));
    const k = classes[i];
    if (!(k >= 0 && k < nClasses)) throw new Error(`nicheAbundance: class ${k} of nucleus ${i} is outside 0..${nClasses - 1}`);
    counts[(iy * nx + ix) * nClasses + k]++;
    totals[iy * nx + ix]++;
  }
  return { nicheUm, nx, ny, counts, totals };
}
