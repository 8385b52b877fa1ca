"""Reads an AnnData-zarr store written by cellsymphony (tests/data_zarr.rs) with Python anndata
and checks it against the expected JSON.

Usage: check_anndata_zarr.py STORE.zarr EXPECTED.json
EXPECTED: {"cell_ids": [...], "predicted": [...], "confidence": [...], "spatial": [[x, y], ...]}
"""
import json
import sys

import anndata
import numpy as np

store, expected = sys.argv[1], json.load(open(sys.argv[2]))
a = anndata.read_zarr(store)
assert list(a.obs_names) == expected["cell_ids"], list(a.obs_names)[:5]
assert a.n_vars == 0, a.n_vars
assert str(a.obs["predicted"].dtype) == "category", a.obs["predicted"].dtype
assert list(a.obs["predicted"].astype(str)) == expected["predicted"]
np.testing.assert_allclose(a.obs["confidence"].to_numpy(), expected["confidence"], rtol=0, atol=1e-6)
np.testing.assert_allclose(a.obsm["spatial"], np.array(expected["spatial"]), rtol=0, atol=1e-4)
print(f"anndata {anndata.__version__} read {a.n_obs} cells from {store}")
