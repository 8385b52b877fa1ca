"""Xenium zarr fixtures for tests/data_zarr.rs (Python zarr + numcodecs + scipy).

Usage: write_zarr_fixtures.py MEX_DIR CELLS_CSV OUT_DIR

MEX_DIR and CELLS_CSV hold the real crop as written by the Rust test (write_mex_dir,
write_cells_csv). Writes into OUT_DIR, as Zarr v2 zip stores in the layout Xenium Onboard
Analysis writes (see src/data/xenium_zarr.rs):
  cell_feature_matrix.zarr.zip  group cell_features: attrs feature_keys / feature_ids /
                                feature_types / number_cells / number_features; cell_id
                                (uint32, the crop's integer ids), data / indices / indptr
                                (one row per feature, uint32, Blosc-LZ4 with byte shuffle,
                                4096-value chunks), plus a negative-control feature and two
                                "Protein Expression" features stored x10 as integers
  cells.zarr.zip                cell_id, cell_summary [n, 8] float64 (zlib) with column_names
  codecs.zarr.zip               the same int32 / float64 values under every compressor the
                                reader accepts, and [n, 2] cell ids with the id strings Xenium
                                derives from them (root attribute expected_ids)
  cell_feature_matrix.h5        the same matrix in 10x HDF5 (h5py), root attribute
                                protein_scaling_factor = 10
  protein.json                  the protein markers and their values / 10, per crop cell id
"""
import gzip
import json
import sys
import tempfile
import zipfile
from pathlib import Path

import h5py
import numcodecs
import numpy as np
import scipy.io
import scipy.sparse
import zarr

mex, cells_csv, out = map(Path, sys.argv[1:4])
out.mkdir(parents=True, exist_ok=True)

m = scipy.io.mmread(str(mex / "matrix.mtx.gz")).tocsr()  # [features, barcodes]
genes = [l.split("\t")[1] for l in gzip.open(mex / "features.tsv.gz", "rt").read().splitlines()]
barcodes = gzip.open(mex / "barcodes.tsv.gz", "rt").read().split()
n_genes, n_cells = m.shape

rng = np.random.default_rng(17)
ctrl = np.zeros((1, n_cells))
ctrl[0, ::10] = 1
protein = np.round(rng.gamma(2.0, 30.0, size=(2, n_cells)) * 10)  # stored x10 as XOA 4 does
protein[:, ::7] = 0
full = scipy.sparse.vstack([m, scipy.sparse.csr_matrix(ctrl), scipy.sparse.csr_matrix(protein)]).tocsr()
full.sort_indices()
names = genes + ["NegControlProbe_00042", "CD45", "PanCK"]
types = ["Gene Expression"] * n_genes + ["Negative Control Probe", "Protein Expression", "Protein Expression"]

lz4 = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)


class ZipOnClose:
    """A zarr folder store in a temporary folder, zipped (stored entries, as Xenium's
    archives) to `path` on close; zarr's own ZipStore appends a duplicate entry per attribute
    update."""

    def __init__(self, path):
        self.path, self.tmp = path, tempfile.TemporaryDirectory()

    def close(self):
        with zipfile.ZipFile(self.path, "w", zipfile.ZIP_STORED) as z:
            for f in sorted(Path(self.tmp.name).rglob("*")):
                if f.is_file():
                    z.write(f, f.relative_to(self.tmp.name).as_posix())
        self.tmp.cleanup()


def zip_group(path):
    store = ZipOnClose(path)
    return store, zarr.open_group(store.tmp.name, mode="w", zarr_format=2)


store, root = zip_group(out / "cell_feature_matrix.zarr.zip")
g = root.create_group("cell_features")
g.attrs.update(
    {
        "feature_keys": names,
        "feature_ids": names,
        "feature_types": types,
        "number_cells": n_cells,
        "number_features": len(names),
        "major_version": 4,
        "minor_version": 0,
    }
)
g.create_array("cell_id", data=np.array([int(b) for b in barcodes], dtype=np.uint32), chunks=(512,), compressors=lz4)
for key, arr in [("data", full.data), ("indices", full.indices), ("indptr", full.indptr)]:
    g.create_array(key, data=arr.astype(np.uint32), chunks=(4096,), compressors=lz4)
store.close()

cells = np.genfromtxt(cells_csv, delimiter=",", names=True, dtype=None, encoding="utf-8")
ids = [str(i) for i in cells["cell_id"]]
assert ids == barcodes or sorted(ids) == sorted(barcodes)
summary = np.zeros((len(ids), 8))
summary[:, 0] = cells["x_centroid"]
summary[:, 1] = cells["y_centroid"]
summary[:, 2] = 50.0
summary[:, 5] = 20.0
store, root = zip_group(out / "cells.zarr.zip")
root.create_array("cell_id", data=np.array([int(i) for i in ids], dtype=np.uint32), chunks=(300,), compressors=numcodecs.Zlib(level=5))
s = root.create_array("cell_summary", data=summary, chunks=(300, 8), compressors=numcodecs.Zlib(level=5))
s.attrs["column_names"] = [
    "cell_centroid_x", "cell_centroid_y", "cell_area", "nucleus_centroid_x",
    "nucleus_centroid_y", "nucleus_area", "z_level", "nucleus_count",
]
store.close()

# Every codec, on values the Rust test recomputes: (i * 37) % 1001 - 500.
values = (np.arange(5000) * 37) % 1001 - 500
codecs = {
    "none": None,
    "blosc_lz4_shuffle": lz4,
    "blosc_lz4_noshuffle": numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE),
    "blosc_lz4hc": numcodecs.Blosc(cname="lz4hc", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
    "blosc_zlib": numcodecs.Blosc(cname="zlib", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
    "blosc_zstd": numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.SHUFFLE),
    "zlib": numcodecs.Zlib(level=5),
    "gzip": numcodecs.GZip(level=5),
    "lz4": numcodecs.LZ4(),
    "zstd": numcodecs.Zstd(level=3),
}
store, root = zip_group(out / "codecs.zarr.zip")
for name, codec in codecs.items():
    kw = {"compressors": codec} if codec is not None else {"compressors": None}
    root.create_array(f"i4_{name}", data=values.astype(np.int32), chunks=(1500,), **kw)
    root.create_array(f"f8_{name}", data=values.reshape(1000, 5).astype(np.float64) / 4, chunks=(300, 3), **kw)


def xenium_id(prefix, suffix):
    return "".join("abcdefghijklmnop"[int(c, 16)] for c in f"{prefix:08x}") + f"-{suffix}"


pairs = np.array([[1, 1], [0x00123ABC, 1], [0xFFFFFFFF, 2], [7, 3]], dtype=np.uint32)
root.create_array("cell_id_pairs", data=pairs, chunks=(3, 2), compressors=lz4)
root.attrs["expected_ids"] = [xenium_id(int(p), int(s)) for p, s in pairs]
store.close()

(out / "protein.json").write_text(
    json.dumps({"markers": ["CD45", "PanCK"], "cells": barcodes, "values": (protein.T / 10).tolist()})
)

csc = full.tocsc()
csc.sort_indices()
with h5py.File(out / "cell_feature_matrix.h5", "w") as f:
    f.attrs["protein_scaling_factor"] = np.float64(10.0)
    g = f.create_group("matrix")
    g["barcodes"] = np.array([b.encode() for b in barcodes])
    g["data"] = csc.data.astype(np.int32)
    g["indices"] = csc.indices.astype(np.int64)
    g["indptr"] = csc.indptr.astype(np.int64)
    g["shape"] = np.array(csc.shape, dtype=np.int32)
    ft = g.create_group("features")
    for key in ["id", "name"]:
        ft[key] = np.array([n.encode() for n in names])
    ft["feature_type"] = np.array([t.encode() for t in types])
    ft["genome"] = np.array([b"Unknown"] * len(names))
