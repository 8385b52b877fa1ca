"""POT's Sinkhorn on inputs written by the Rust tests and benchmark.

Usage: pot_sinkhorn.py DIR. Reads DIR/meta.json:
  n, m, d, eps, cost ("euclidean" | "sqeuclidean"), scale ("max" | "none"), stop_thr,
  max_iter, method ("sinkhorn_log" | "sinkhorn"), weights (bool), spatial_lambda (float or
  null), write_plan (bool)
and DIR/x.f32 [n, d], DIR/y.f32 [m, d], optionally a.f32 [n], b.f32 [m] (weights),
xs.f32 [n, 2], ys.f32 [m, 2] (positions in µm).

Cost (f64): M = dist(X, Y) (+ spatial_lambda * euclidean(xs, ys)), then M /= M.max() when
scale == "max" — the same definition as cellsymphony::ot::sinkhorn.

Writes f.f64 [n], g.f64 [m] (f = eps * log_u, g = eps * log_v), plan.f64 [n, m] when
write_plan, and result.json {niter, err, seconds (solve only, M given), cost_scale,
peak_rss_bytes, matrix_bytes}.
"""
import resource
import sys
import time
import warnings

import numpy as np
import ot

from ot_io import load_meta, read, write, write_json

d = sys.argv[1]
meta = load_meta(d)
n, m, dim = meta["n"], meta["m"], meta["d"]
x = read(d, "x.f32", "<f4", (n, dim)).astype(np.float64)
y = read(d, "y.f32", "<f4", (m, dim)).astype(np.float64)
M = ot.dist(x, y, metric="sqeuclidean")
if meta["cost"] == "euclidean":
    np.sqrt(np.maximum(M, 0.0), out=M)
if meta.get("spatial_lambda") is not None:
    xs = read(d, "xs.f32", "<f4", (n, 2)).astype(np.float64)
    ys = read(d, "ys.f32", "<f4", (m, 2)).astype(np.float64)
    M += meta["spatial_lambda"] * np.sqrt(ot.dist(xs, ys, metric="sqeuclidean"))
scale = 1.0
if meta["scale"] == "max":
    scale = M.max()
    M /= scale
if meta.get("weights"):
    a = read(d, "a.f32", "<f4", (n,)).astype(np.float64)
    b = read(d, "b.f32", "<f4", (m,)).astype(np.float64)
    a /= a.sum()
    b /= b.sum()
else:
    a = np.full(n, 1.0 / n)
    b = np.full(m, 1.0 / m)

eps = meta["eps"]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    if meta["method"] == "sinkhorn_log":
        plan, log = ot.bregman.sinkhorn_log(
            a, b, M, eps, numItermax=meta["max_iter"], stopThr=meta["stop_thr"], log=True
        )
        f, g = eps * log["log_u"], eps * log["log_v"]
    else:
        plan, log = ot.bregman.sinkhorn_knopp(
            a, b, M, eps, numItermax=meta["max_iter"], stopThr=meta["stop_thr"], log=True
        )
        f, g = eps * np.log(log["u"]), eps * np.log(log["v"])
    seconds = time.perf_counter() - t0

write(d, "f.f64", f)
write(d, "g.f64", g)
if meta.get("write_plan"):
    write(d, "plan.f64", plan)
write_json(
    d,
    "result.json",
    {
        "niter": int(log["niter"]),
        "err": float(log["err"][-1]) if len(log["err"]) else None,
        "seconds": seconds,
        "cost_scale": float(scale),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "matrix_bytes": int(M.nbytes),
        "finite": bool(np.isfinite(f).all() and np.isfinite(g).all()),
    },
)
