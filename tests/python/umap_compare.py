"""Optional reference for tests/analysis.rs: umap-learn's layout of the same matrix, and
sklearn's trustworthiness of both layouts.

Usage: umap_compare.py DATA.f32 N D OURS.f32 K
  DATA.f32: [N, D] float32 little-endian, row-major; OURS.f32: our [N, 2] embedding.
Prints one JSON line: {"umap_learn_version", "trust_umap_learn", "trust_ours_sklearn",
"seconds_umap_learn"}. Exits with status 3 when umap-learn is not importable (it is not part
of scripts/setup.sh: it pulls numba).
"""
import json
import sys
import time

import numpy as np

try:
    import umap
    from sklearn.manifold import trustworthiness
except ImportError as e:  # pragma: no cover
    print(f"umap-learn not available: {e}", file=sys.stderr)
    sys.exit(3)

path, n, d, ours_path, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
x = np.fromfile(path, dtype="<f4").reshape(n, d)
ours = np.fromfile(ours_path, dtype="<f4").reshape(n, 2)
t0 = time.perf_counter()
emb = umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=0).fit_transform(x)
seconds = time.perf_counter() - t0
print(json.dumps({
    "umap_learn_version": umap.__version__,
    "trust_umap_learn": float(trustworthiness(x, emb, n_neighbors=k)),
    "trust_ours_sklearn": float(trustworthiness(x, ours, n_neighbors=k)),
    "seconds_umap_learn": seconds,
}))
