"""HDF5 fixtures and reference values for tests/data_hdf5.rs (h5py + anndata).

Usage:
  write_h5_fixtures.py crop DIR
      DIR/crop.json {cell_ids, genes, centroids, labels} + DIR/counts.f32 ([cells, genes]
      little-endian float32, row-major) -> writes into DIR:
        matrix.h5            10x cell_feature_matrix.h5 (shuffled barcodes and features,
                             control features with counts interleaved)
        bad_*.h5             malformed variants (see BAD below)
        dense.h5ad, csr.h5ad, csc.h5ad   written by anndata (obs categorical `label`,
                             numeric `total`, bool `has_counts`, string `tag`,
                             obsm['spatial'] = centroids)
        legacy07.h5ad        anndata 0.7 layout written with h5py (categorical codes
                             dataset + obs/__categories/label)
  write_h5_fixtures.py pbmc FILE.h5ad OUTDIR
      reference values read with h5py: OUTDIR/pbmc.json, OUTDIR/X.f32, OUTDIR/X_umap.f64
  write_h5_fixtures.py read_predictions FILE.h5ad OUT.json
      reads a predictions .h5ad with anndata.read_h5ad and dumps it as JSON
"""

import json
import sys
from pathlib import Path

import h5py
import numpy as np

CONTROLS = [
    ("NegControlProbe_00042", "Negative Control Probe"),
    ("NegControlCodeword_0500", "Negative Control Codeword"),
    ("UnassignedCodeword_0007", "Unassigned Codeword"),
    ("DeprecatedCodeword_0013", "Deprecated Codeword"),
    ("GenomicControl_0001", "Genomic Control"),
]

BAD = ["no_indptr", "indptr_not_monotone", "index_out_of_range", "shape_mismatch"]


def write_10x(path, barcodes, features, csc_cols, n_features, bad=None):
    """features: list of (id, name, type); csc_cols: per barcode list of (feature, count)."""
    data, indices, indptr = [], [], [0]
    for col in csc_cols:
        for f, v in col:
            indices.append(f)
            data.append(v)
        indptr.append(len(data))
    data = np.asarray(data, dtype=np.int32)
    indices = np.asarray(indices, dtype=np.int64)
    indptr = np.asarray(indptr, dtype=np.int64)
    shape = np.asarray([n_features, len(barcodes)], dtype=np.int32)
    if bad == "indptr_not_monotone":
        indptr[3] = indptr[5] + 1
    if bad == "index_out_of_range":
        indices[10] = n_features + 7
    if bad == "shape_mismatch":
        shape[1] += 1
    gz = dict(compression="gzip", compression_opts=4, chunks=True)
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m.create_dataset("barcodes", data=np.asarray(barcodes, dtype="S"), **gz)
        m.create_dataset("data", data=data, **gz)
        m.create_dataset("indices", data=indices, **gz)
        if bad != "no_indptr":
            m.create_dataset("indptr", data=indptr, **gz)
        m.create_dataset("shape", data=shape)
        ft = m.create_group("features")
        ft.create_dataset("id", data=np.asarray([x[0] for x in features], dtype="S"), **gz)
        ft.create_dataset("name", data=np.asarray([x[1] for x in features], dtype="S"), **gz)
        # variable-length strings here, fixed-length elsewhere: both must read
        ft.create_dataset(
            "feature_type",
            data=[x[2] for x in features],
            dtype=h5py.string_dtype(),
        )
        ft.create_dataset("genome", data=np.asarray(["GRCh38"] * len(features), dtype="S"))
        ft.create_dataset("_all_tag_keys", data=np.asarray(["genome"], dtype="S"))
        f.attrs["filetype"] = "matrix"
        f.attrs["software_version"] = "cellsymphony-test"


def crop(out):
    meta = json.loads((out / "crop.json").read_text())
    cells, genes = meta["cell_ids"], meta["genes"]
    counts = np.fromfile(out / "counts.f32", dtype="<f4").reshape(len(cells), len(genes))
    centroids = np.asarray(meta["centroids"], dtype=np.float64)
    labels = meta["labels"]
    rng = np.random.default_rng(7)

    # 10x: shuffled barcodes and genes, controls interleaved at fixed positions.
    cell_perm = rng.permutation(len(cells))
    gene_perm = rng.permutation(len(genes))
    features = [(f"ENSG{g:05d}", genes[g], "Gene Expression") for g in gene_perm]
    feat_of_gene = {}
    for slot, (name, kind) in zip([0, 50, 100, 200, len(features)], CONTROLS):
        features.insert(slot, (name, name, kind))
    for i, (fid, name, kind) in enumerate(features):
        if kind == "Gene Expression":
            feat_of_gene[genes.index(name)] = i
    control_idx = [i for i, x in enumerate(features) if x[2] != "Gene Expression"]
    cols = []
    for c in cell_perm:
        col = {feat_of_gene[g]: int(counts[c, g]) for g in np.nonzero(counts[c])[0]}
        for k, fi in enumerate(control_idx):
            if (c + k) % 3 == 0:
                col[fi] = 1 + (c + k) % 5
        cols.append(sorted(col.items()))
    barcodes = [cells[c] for c in cell_perm]
    write_10x(out / "matrix.h5", barcodes, features, cols, len(features))
    for bad in BAD:
        write_10x(out / f"bad_{bad}.h5", barcodes, features, cols, len(features), bad)

    # AnnData files written by anndata itself (shuffled rows and columns as well).
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    x = counts[cell_perm][:, gene_perm]
    obs = pd.DataFrame(
        {
            "label": pd.Categorical([labels[c] for c in cell_perm]),
            "total": x.sum(axis=1).astype(np.float64),
            "has_counts": x.sum(axis=1) > 0,
            "tag": [f"cell-{cells[c]}" for c in cell_perm],
        },
        index=[cells[c] for c in cell_perm],
    )
    var = pd.DataFrame(index=[genes[g] for g in gene_perm])
    for name, mat in [
        ("dense", x.astype(np.float32)),
        ("csr", sp.csr_matrix(x.astype(np.float64))),
        ("csc", sp.csc_matrix(x.astype(np.int32))),
    ]:
        a = ad.AnnData(X=mat, obs=obs.copy(), var=var.copy())
        a.obsm["spatial"] = centroids[cell_perm]
        a.write_h5ad(out / f"{name}.h5ad", compression="gzip")

    # anndata 0.7 layout by hand: categorical codes as a dataset with a `categories`
    # attribute (object reference) and the categories in obs/__categories/label.
    cats = sorted(set(labels))
    codes = np.asarray([cats.index(labels[c]) for c in cell_perm], dtype=np.int8)
    str_dt = h5py.string_dtype()
    with h5py.File(out / "legacy07.h5ad", "w") as f:
        f.attrs["encoding-type"] = "AnnData"
        f.attrs["encoding-version"] = "0.1.0"
        f.create_dataset("X", data=x.astype(np.float32), compression="gzip", chunks=True)
        o = f.create_group("obs")
        o.attrs["_index"] = "_index"
        o.attrs["column-order"] = np.asarray(["label"], dtype=object)
        o.attrs["encoding-type"] = "dataframe"
        o.attrs["encoding-version"] = "0.1.0"
        o.create_dataset("_index", data=[cells[c] for c in cell_perm], dtype=str_dt)
        cg = o.create_group("__categories")
        cd = cg.create_dataset("label", data=cats, dtype=str_dt)
        lab = o.create_dataset("label", data=codes)
        lab.attrs["categories"] = cd.ref
        v = f.create_group("var")
        v.attrs["_index"] = "_index"
        v.attrs["column-order"] = np.asarray([], dtype=np.float64)
        v.attrs["encoding-type"] = "dataframe"
        v.attrs["encoding-version"] = "0.1.0"
        v.create_dataset("_index", data=[genes[g] for g in gene_perm], dtype=str_dt)
        f.create_group("obsm").create_dataset("spatial", data=centroids[cell_perm])


def pbmc(path, out):
    out.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "r") as f:
        obs = f["obs"][()]
        x = f["X"][()]
        cats = [c.decode() if isinstance(c, bytes) else c for c in f["uns/bulk_labels_categories"][()]]
        codes = obs["bulk_labels"]
        counts = [int((codes == k).sum()) for k in range(len(cats))]
        var = f["var"][()]
        umap = f["obsm"][()]["X_umap"]
        ref = {
            "shape": list(x.shape),
            "x_dtype": str(x.dtype),
            "obs_names": [s.decode() for s in obs["index"]],
            "var_names": [s.decode() for s in var["index"]],
            "bulk_labels_categories": cats,
            "bulk_labels_counts": counts,
            "bulk_labels_first": [cats[c] for c in codes[:20]],
            "n_genes": [int(v) for v in obs["n_genes"]],
            "percent_mito": [float(v) for v in obs["percent_mito"]],
            "highly_variable": [bool(v) for v in var["highly_variable"]],
            "phase_categories": [c.decode() if isinstance(c, bytes) else c for c in f["uns/phase_categories"][()]],
        }
    (out / "pbmc.json").write_text(json.dumps(ref))
    x.astype("<f4").tofile(out / "X.f32")
    np.asarray(umap, dtype="<f8").tofile(out / "X_umap.f64")


def read_predictions(path, out):
    import anndata as ad

    a = ad.read_h5ad(path)
    res = {
        "n_obs": int(a.n_obs),
        "n_vars": int(a.n_vars),
        "obs_names": list(map(str, a.obs_names)),
        "predicted": list(map(str, a.obs["predicted"])),
        "predicted_dtype": str(a.obs["predicted"].dtype),
        "categories": list(map(str, a.obs["predicted"].cat.categories)),
        "confidence": [float(v) for v in a.obs["confidence"]],
        "spatial": np.asarray(a.obsm["spatial"]).tolist() if "spatial" in a.obsm else None,
    }
    Path(out).write_text(json.dumps(res))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "crop":
        crop(Path(sys.argv[2]))
    elif mode == "pbmc":
        pbmc(Path(sys.argv[2]), Path(sys.argv[3]))
    elif mode == "read_predictions":
        read_predictions(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown mode {mode}")
