"""PCA with numpy's SVD, for tests/ot_pca.rs.

Usage: numpy_pca.py DIR. Reads DIR/x.f32 [cells, genes] and DIR/meta.json {cells, genes, d};
centres by the per-gene mean (in f64), takes the thin SVD and writes (f64):
components.f64 [d, genes] (rows of Vt), variance.f64 [d] (S^2 / (cells - 1)),
coords.f64 [cells, d] (U * S), ratio.f64 [d] (variance / total variance).
"""
import sys

import numpy as np

from ot_io import load_meta, read, write

d = sys.argv[1]
meta = load_meta(d)
cells, genes, k = meta["cells"], meta["genes"], meta["d"]
x = read(d, "x.f32", "<f4", (cells, genes)).astype(np.float64)
xc = x - x.mean(axis=0)
u, s, vt = np.linalg.svd(xc, full_matrices=False)
var = s**2 / (cells - 1)
write(d, "components.f64", vt[:k])
write(d, "variance.f64", var[:k])
write(d, "ratio.f64", var[:k] / var.sum())
write(d, "coords.f64", (u[:, :k] * s[:k]))
