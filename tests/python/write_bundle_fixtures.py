"""Xenium output-bundle fixtures for tests/data_bundle.rs (h5py + pyarrow + scipy).

Usage: write_bundle_fixtures.py MEX_DIR CELLS_CSV TRANSCRIPTS_CSV OUT_DIR

MEX_DIR and CELLS_CSV hold the real crop as written by the Rust test (write_mex_dir,
write_cells_csv); TRANSCRIPTS_CSV is the crop's original transcripts file. Writes into OUT_DIR:
  cell_feature_matrix.h5   10x HDF5 layout (CSC by barcode) of the MEX matrix, with one
                           negative-control feature carrying counts (must be dropped)
  cells.parquet            cells.csv as parquet (cell_id as string)
  transcripts.parquet      the transcripts (all columns), zstd
"""
import sys
from pathlib import Path

import h5py
import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import scipy.io

mex, cells_csv, transcripts_csv, out = map(Path, sys.argv[1:5])
out.mkdir(parents=True, exist_ok=True)

m = scipy.io.mmread(str(mex / "matrix.mtx.gz")).tocsc()  # [features, barcodes]
genes = [l.split("\t")[1] for l in __import__("gzip").open(mex / "features.tsv.gz", "rt").read().splitlines()]
barcodes = __import__("gzip").open(mex / "barcodes.tsv.gz", "rt").read().split()
n_genes, n_cells = m.shape
# Append a control feature with a count in every 10th cell.
ctrl = scipy.sparse.csc_matrix(
    (np.ones(len(range(0, n_cells, 10))), (np.zeros(len(range(0, n_cells, 10)), int), np.arange(0, n_cells, 10))),
    shape=(1, n_cells),
)
full = scipy.sparse.vstack([m, ctrl]).tocsc()
full.sort_indices()
with h5py.File(out / "cell_feature_matrix.h5", "w") as f:
    g = f.create_group("matrix")
    g["barcodes"] = np.array([b.encode() for b in barcodes])
    g.create_dataset("data", data=full.data.astype(np.int32), compression="gzip")
    g.create_dataset("indices", data=full.indices.astype(np.int64), compression="gzip")
    g["indptr"] = full.indptr.astype(np.int64)
    g["shape"] = np.array(full.shape, dtype=np.int32)
    ft = g.create_group("features")
    names = genes + ["NegControlProbe_00042"]
    ft["id"] = np.array([n.encode() for n in names])
    ft["name"] = np.array([n.encode() for n in names])
    ft["feature_type"] = np.array([b"Gene Expression"] * n_genes + [b"Negative Control Probe"])
    ft["genome"] = np.array([b"Unknown"] * (n_genes + 1))

cells = pacsv.read_csv(str(cells_csv), convert_options=pacsv.ConvertOptions(column_types={"cell_id": __import__("pyarrow").string()}))
pq.write_table(cells, out / "cells.parquet")
pq.write_table(pacsv.read_csv(str(transcripts_csv)), out / "transcripts.parquet", compression="zstd")
