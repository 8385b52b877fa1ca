#!/usr/bin/env python3
"""Python peers of the cellsymphony benchmark, run by src/train/peers.rs on the same folds.

    peers.py WORK_DIR

WORK_DIR holds (written by `run_python_peers`):
  spec.json   {"peers": ["logreg"|"mlp"|"hgb"|"celltypist", ...], "labels": [cells],
               "class_names": [...], "folds": [{"train": [...], "test": [...]}, ...],
               "seed": int, "has_counts": bool}
  x.npy       float32 [cells, features]: exactly the input our models see
  counts.npy  float32 [cells, genes]: log1p-CP10k expression for CellTypist (when has_counts)
and receives results/<peer>_fold<k>.json ({"predictions": [test cells], "fit_seconds": s,
"note": str}) plus, on a missing module, error.json ({"module": name, "pip": install line})
with exit status 3. Progress goes to stderr, one line per peer and fold.

Model selection uses training cells only: the MLP and the gradient-boosted trees stop early on
a validation split carved from the training cells; logistic regression and CellTypist use a
fixed C = 1. Nothing is downloaded (CellTypist is trained here, never fetched).
"""
import json
import os
import sys
import time

PIP = {
    "numpy": "python3 -m pip install numpy",
    "sklearn": 'python3 -m pip install "scikit-learn==1.7.2"',
    "celltypist": 'python3 -m pip install "celltypist==1.7.1" "scikit-learn==1.7.2"',
}
NEEDS = {"logreg": ["numpy", "sklearn"], "mlp": ["numpy", "sklearn"],
         "hgb": ["numpy", "sklearn"], "celltypist": ["numpy", "sklearn", "celltypist"]}


def log(msg):
    sys.stderr.write(f"[peers] {msg}\n")
    sys.stderr.flush()


def missing_module(work, module):
    with open(os.path.join(work, "error.json"), "w") as f:
        json.dump({"module": module, "pip": PIP.get(module, f"python3 -m pip install {module}")}, f)
    sys.exit(3)


def make_estimator(peer, seed):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if peer == "logreg":
        # Mirrors train::logistic: z-scored features, multinomial, L2 with C = 1.
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
    if peer == "mlp":
        return make_pipeline(StandardScaler(), MLPClassifier(
            hidden_layer_sizes=(256, 128), alpha=1e-3, batch_size=128, learning_rate_init=1e-3,
            max_iter=200, early_stopping=True, validation_fraction=0.1, n_iter_no_change=10,
            random_state=seed))
    if peer == "hgb":
        return HistGradientBoostingClassifier(
            learning_rate=0.1, max_iter=300, max_leaf_nodes=31, l2_regularization=1e-3,
            early_stopping=True, validation_fraction=0.1, n_iter_no_change=10, random_state=seed)
    raise ValueError(peer)


def celltypist_fold(x_fit, x_test, y_fit, genes, has_counts, seed):
    """CellTypist trained from scratch (C = 1, its default scaling), best match, no majority
    voting. On log1p-CP10k input it annotates through celltypist.annotate; on other input
    (check_expression=False) through the trained model's own predict, as annotate refuses
    values outside log1p-CP10k (the same scaling and clipping as annotate)."""
    import anndata as ad
    import celltypist
    import numpy as np

    np.random.seed(seed)
    model = celltypist.train(x_fit, labels=y_fit, genes=genes, check_expression=has_counts,
                             n_jobs=1, feature_selection=False, use_SGD=False)
    if has_counts:
        query = ad.AnnData(X=x_test)
        query.var_names = genes
        result = celltypist.annotate(query, model=model, majority_voting=False)
        return np.asarray(result.predicted_labels["predicted_labels"].astype(str))
    # What celltypist.annotate does after its input check: the model's own scaling of the
    # training genes (same order here), values clipped at 10, best match.
    scaler = model.scaler
    z = (x_test - (scaler.mean_ if scaler.with_mean else 0)) / scaler.scale_
    z[z > 10] = 10
    return np.asarray(model.predict_labels_and_prob(z)[2]).astype(str)


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: peers.py WORK_DIR\n")
        sys.exit(2)
    work = sys.argv[1]
    with open(os.path.join(work, "spec.json")) as f:
        spec = json.load(f)
    for peer in spec["peers"]:
        for module in NEEDS[peer]:
            try:
                __import__(module)
            except ImportError:
                missing_module(work, module)
    import logging
    import warnings

    import numpy as np

    warnings.filterwarnings("ignore")
    logging.getLogger("celltypist").setLevel(logging.ERROR)
    x = np.load(os.path.join(work, "x.npy"))
    counts = np.load(os.path.join(work, "counts.npy")) if spec["has_counts"] else None
    labels = np.asarray(spec["labels"], dtype=np.int64)
    names = np.asarray(spec["class_names"], dtype=object)
    seed = int(spec["seed"])
    out_dir = os.path.join(work, "results")
    os.makedirs(out_dir, exist_ok=True)
    folds = spec["folds"]
    for peer in spec["peers"]:
        for k, fold in enumerate(folds):
            tr = np.asarray(fold["train"], dtype=np.int64)
            te = np.asarray(fold["test"], dtype=np.int64)
            t0 = time.perf_counter()
            note = ""
            if peer == "celltypist":
                use_counts = counts is not None
                data = counts if use_counts else x
                genes = np.array([f"f{j}" for j in range(data.shape[1])])
                pred_names = celltypist_fold(data[tr], data[te], names[labels[tr]].astype(str),
                                             genes, use_counts, seed)
                index = {n: i for i, n in enumerate(names)}
                pred = np.array([index[p] for p in pred_names], dtype=np.int64)
                note = ("log1p-CP10k counts" if use_counts
                        else "model input X with check_expression=False (no counts)")
            else:
                est = make_estimator(peer, seed)
                est.fit(x[tr], labels[tr])
                pred = est.predict(x[te]).astype(np.int64)
            seconds = time.perf_counter() - t0
            acc = float(np.mean(pred == labels[te])) if len(te) else 0.0
            log(f"{peer:<10} fold {k + 1}/{len(folds)}: {len(tr)} train / {len(te)} test cells, "
                f"accuracy {acc:.3f}, fit {seconds:.1f} s")
            tmp = os.path.join(out_dir, f"{peer}_fold{k}.json.tmp")
            with open(tmp, "w") as f:
                json.dump({"predictions": pred.tolist(), "fit_seconds": seconds, "note": note}, f)
            os.replace(tmp, os.path.join(out_dir, f"{peer}_fold{k}.json"))


if __name__ == "__main__":
    main()
