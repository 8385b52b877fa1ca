//! HDF5 readers (10x cell_feature_matrix.h5, AnnData .h5ad) on the real BIDCell Xenium crop
//! and scanpy's pbmc68k_reduced.h5ad (`scripts/fetch_data.sh`).
//!
//! The crop is written by `tests/python/write_h5_fixtures.py` (h5py + anndata) as a 10x
//! `.h5` with control features, as `.h5ad` with X dense / CSR / CSC and as the anndata 0.7
//! layout; every layout must give exactly the transcript reader's cells × genes matrix.
//! Python is required (`scripts/setup.sh` installs h5py and anndata);
//! `CELLSYMPHONY_ALLOW_NO_PYTHON=1` skips the tests that need it, loudly.
#![cfg(feature = "native-io")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{crop_cells, fixture_dir, python_or_skip, run_python, scanpy_files, scratch};
use cellsymphony::data::{
    attach_centroids, read_10x_h5, read_cells_csv, read_h5ad,
    write_cells_csv, write_predictions_csv, write_predictions_h5ad, CellTable,
    ColumnValues, DataError, Predictions, XMatrix,
};

const SCRIPT: &str = "write_h5_fixtures.py";
const PY_HELP: &str = "python3 with numpy, h5py and anndata is needed (scripts/setup.sh \
installs them: `pip install h5py anndata`)";

/// Planted categorical label of each crop cell: its most-counted gene ("none" when empty).
fn labels(t: &CellTable) -> Vec<String> {
    (0..t.n_cells())
        .map(|i| {
            let row = t.row(i);
            let (g, &v) =
                row.iter().enumerate().fold(
                    (0, &0.0f32),
                    |best, cur| if cur.1 > best.1 { cur } else { best },
                );
            if v > 0.0 {
                t.genes[g].clone()
            } else {
                "none".into()
            }
        })
        .collect()
}

/// Whether python3 with numpy, h5py and anndata can be used; fails (or skips loudly).
fn python_available(test: &str) -> bool {
    python_or_skip(test, "numpy, h5py, anndata, scipy", PY_HELP)
}

fn run_script(args: &[&std::ffi::OsStr]) {
    run_python(SCRIPT, args, PY_HELP);
}

/// The crop written by the Python script, once per test process.
fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let t = crop_cells();
        let dir = fixture_dir("hdf5-fixtures");
        let meta = serde_json::json!({
            "cell_ids": t.cell_ids,
            "genes": t.genes,
            "centroids": t.centroids_um,
            "labels": labels(t),
        });
        std::fs::write(dir.join("crop.json"), meta.to_string()).unwrap();
        let bytes: Vec<u8> = t.counts.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.join("counts.f32"), bytes).unwrap();
        run_script(&["crop".as_ref(), dir.as_os_str()]);
        dir
    })
}

fn assert_same_matrix(got: &CellTable, want: &CellTable, what: &str) {
    assert_eq!(got.cell_ids, want.cell_ids, "{what}: cells");
    assert_eq!(got.genes, want.genes, "{what}: genes");
    assert_eq!(got.counts, want.counts, "{what}: counts");
}

#[test]
fn tenx_h5_gives_the_transcript_matrix_and_drops_controls() {
    if !python_available("tenx_h5") {
        return;
    }
    let want = crop_cells();
    let path = fixtures().join("matrix.h5");
    let mut got = read_10x_h5(&path).unwrap();
    assert_same_matrix(&got, want, "matrix.h5");
    assert_eq!(got.n_cells(), 1135);
    assert_eq!(got.n_genes(), 313);
    assert!(!got
        .genes
        .iter()
        .any(|g| g.contains("Control") || g.contains("Codeword")));
    // Like the MEX reader: no positions in the matrix, attach_centroids fills them.
    assert!(got
        .centroids_um
        .iter()
        .all(|c| c[0].is_nan() && c[1].is_nan()));
    assert!(got.nucleus_centroids_um.iter().all(Option::is_none));
    let cells_csv = fixtures().join("cells.csv");
    write_cells_csv(want, &cells_csv, false).unwrap();
    attach_centroids(&mut got, &read_cells_csv(&cells_csv).unwrap()).unwrap();
    assert_eq!(got.centroids_um, want.centroids_um);
}

fn check_h5ad(name: &str, layout: &str) {
    let want = crop_cells();
    let path = fixtures().join(name);
    let a = read_h5ad(&path).unwrap();
    assert_eq!((a.n_obs(), a.n_vars()), (1135, 313), "{name}");
    let kind = match &a.x {
        Some(XMatrix::Dense(_)) => "dense",
        Some(XMatrix::Csr { .. }) => "csr",
        Some(XMatrix::Csc { .. }) => "csc",
        None => "none",
    };
    assert_eq!(kind, layout, "{name}: X layout");
    let table = a.to_cell_table().unwrap();
    assert_same_matrix(&table, want, name);
    assert_eq!(
        table.centroids_um, want.centroids_um,
        "{name}: obsm['spatial']"
    );

    // Categorical decoded per cell (the file's rows are shuffled; compare by cell id).
    let planted = labels(want);
    let by_id: std::collections::HashMap<&str, &str> = want
        .cell_ids
        .iter()
        .map(String::as_str)
        .zip(planted.iter().map(String::as_str))
        .collect();
    let Some(ColumnValues::Categorical(cat)) = a.obs_column("label") else {
        panic!(
            "{name}: obs['label'] is {:?}",
            a.obs_column("label").map(|_| "not categorical")
        );
    };
    let mut distinct: Vec<&str> = planted.iter().map(String::as_str).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(cat.categories, distinct, "{name}: categories");
    for (i, id) in a.obs_names.iter().enumerate() {
        assert_eq!(
            cat.label(i),
            Some(by_id[id.as_str()]),
            "{name}: label of cell {id}"
        );
    }
    assert_eq!(cat.counts().iter().sum::<usize>(), 1135);

    // Dense X agrees with the count table row by row.
    let dense = a.dense_x().unwrap();
    let id0 = &a.obs_names[0];
    let row = want.cell_ids.iter().position(|c| c == id0).unwrap();
    for (j, gene) in a.var_names.iter().enumerate() {
        let g = want.gene_index(gene).unwrap();
        assert_eq!(dense[j], want.row(row)[g], "{name}: X[0, {gene}]");
    }
}

#[test]
fn h5ad_dense_csr_csc_give_the_transcript_matrix() {
    if !python_available("h5ad_layouts") {
        return;
    }
    check_h5ad("dense.h5ad", "dense");
    check_h5ad("csr.h5ad", "csr");
    check_h5ad("csc.h5ad", "csc");
    check_h5ad("legacy07.h5ad", "dense");
}

#[test]
fn h5ad_other_obs_columns_decode() {
    if !python_available("h5ad_columns") {
        return;
    }
    let want = crop_cells();
    let a = read_h5ad(&fixtures().join("csr.h5ad")).unwrap();
    assert!(a.skipped.is_empty(), "{:?}", a.skipped);
    let names: Vec<&str> = a.obs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["label", "total", "has_counts", "tag"]);
    let totals = want.totals();
    for (i, id) in a.obs_names.iter().enumerate() {
        let r = want.cell_ids.iter().position(|c| c == id).unwrap();
        let Some(ColumnValues::Numeric(t)) = a.obs_column("total") else {
            panic!("total")
        };
        assert_eq!(t[i], f64::from(totals[r]), "total of {id}");
        let Some(ColumnValues::Bool(b)) = a.obs_column("has_counts") else {
            panic!("bool")
        };
        assert_eq!(b[i], totals[r] > 0.0, "has_counts of {id}");
        let Some(ColumnValues::Text(s)) = a.obs_column("tag") else {
            panic!("text")
        };
        assert_eq!(s[i], format!("cell-{id}"));
    }
}

#[test]
fn scanpy_pbmc68k_reduced_matches_h5py() {
    if !python_available("pbmc68k") {
        return;
    }
    let file = scanpy_files().pbmc68k_reduced;
    let out = scratch("pbmc");
    run_script(&["pbmc".as_ref(), file.as_os_str(), out.as_os_str()]);
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("pbmc.json")).unwrap()).unwrap();
    let x_ref: Vec<f32> = std::fs::read(out.join("X.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();

    let a = read_h5ad(&file).unwrap();
    assert_eq!((a.n_obs(), a.n_vars()), (700, 765));
    assert_eq!(reference["shape"], serde_json::json!([700, 765]));
    assert_eq!(serde_json::json!(a.obs_names), reference["obs_names"]);
    assert_eq!(serde_json::json!(a.var_names), reference["var_names"]);

    let Some(ColumnValues::Categorical(bulk)) = a.obs_column("bulk_labels") else {
        panic!("bulk_labels is not categorical");
    };
    assert_eq!(bulk.categories.len(), 10);
    assert_eq!(
        serde_json::json!(bulk.categories),
        reference["bulk_labels_categories"]
    );
    assert_eq!(
        serde_json::json!(bulk.counts()),
        reference["bulk_labels_counts"]
    );
    let first: Vec<&str> = (0..20).map(|i| bulk.label(i).unwrap()).collect();
    assert_eq!(serde_json::json!(first), reference["bulk_labels_first"]);
    let Some(ColumnValues::Categorical(phase)) = a.obs_column("phase") else {
        panic!("phase")
    };
    assert_eq!(
        serde_json::json!(phase.categories),
        reference["phase_categories"]
    );
    let Some(ColumnValues::Numeric(n_genes)) = a.obs_column("n_genes") else {
        panic!("n_genes")
    };
    assert_eq!(
        serde_json::json!(n_genes.iter().map(|&v| v as i64).collect::<Vec<_>>()),
        reference["n_genes"]
    );
    let hv = a
        .var
        .iter()
        .find(|c| c.name == "highly_variable")
        .expect("var highly_variable");
    let ColumnValues::Bool(hv) = &hv.values else {
        panic!("highly_variable not bool")
    };
    assert_eq!(serde_json::json!(hv), reference["highly_variable"]);

    let x = a.dense_x().unwrap();
    assert_eq!(x.len(), x_ref.len());
    let worst = x
        .iter()
        .zip(&x_ref)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-6, "max |X - h5py X| = {worst}");

    let umap_ref: Vec<f64> = std::fs::read(out.join("X_umap.f64"))
        .unwrap()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let umap = &a.obsm["X_umap"];
    assert_eq!(umap.n_cols, 2);
    for (g, r) in umap.values.iter().zip(&umap_ref) {
        assert!(
            (f64::from(*g) - r).abs() <= 1e-6 * r.abs().max(1.0),
            "{g} vs {r}"
        );
    }
    assert_eq!(a.obsm["X_pca"].n_cols, 50);
    // X is scaled (negative values): not a count matrix.
    let err = a.to_cell_table().unwrap_err().to_string();
    assert!(
        err.contains("/X") && err.contains("not a finite non-negative count"),
        "{err}"
    );
}

/// The error of reading `path` with `read`, as text, after checking it is `DataError::Hdf5`.
fn hdf5_error<T>(r: Result<T, DataError>, path: &Path, object: &str, needles: &[&str]) {
    let Err(e) = r else {
        panic!("{} was read without error", path.display());
    };
    let msg = e.to_string();
    match &e {
        DataError::Hdf5 {
            path: p, object: o, ..
        } => {
            assert_eq!(p, path, "{msg}");
            assert_eq!(o, object, "{msg}");
        }
        other => panic!("expected DataError::Hdf5, got {other:?}"),
    }
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    for n in needles {
        assert!(msg.contains(n), "`{n}` not in: {msg}");
    }
}

#[test]
fn malformed_10x_files_give_typed_errors() {
    if !python_available("malformed_10x") {
        return;
    }
    let dir = fixtures();
    let p = dir.join("bad_no_indptr.h5");
    hdf5_error(
        read_10x_h5(&p),
        &p,
        "/matrix/indptr",
        &["dataset is missing"],
    );
    let p = dir.join("bad_indptr_not_monotone.h5");
    hdf5_error(
        read_10x_h5(&p),
        &p,
        "/matrix/indptr",
        &["not monotone", "entry 4"],
    );
    let p = dir.join("bad_index_out_of_range.h5");
    hdf5_error(
        read_10x_h5(&p),
        &p,
        "/matrix/indices",
        &["entry 10 = 325", "out of range 0..318"],
    );
    let p = dir.join("bad_shape_mismatch.h5");
    hdf5_error(
        read_10x_h5(&p),
        &p,
        "/matrix/barcodes",
        &["1135 entries", "1136 barcodes"],
    );

    // Truncated copies of a good file, cut at several points, never panic.
    let good = std::fs::read(dir.join("matrix.h5")).unwrap();
    let cut_dir = scratch("truncated");
    for frac in [0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99] {
        let p = cut_dir.join(format!("cut_{frac}.h5"));
        std::fs::write(&p, &good[..(good.len() as f64 * frac) as usize]).unwrap();
        let Err(e) = read_10x_h5(&p) else {
            panic!("{frac}: a truncated copy of matrix.h5 was read without error");
        };
        assert!(matches!(e, DataError::Hdf5 { .. }), "{frac}: {e:?}");
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
    }
    let p = cut_dir.join("cut_0.5.h5ad");
    let h5ad = std::fs::read(dir.join("csr.h5ad")).unwrap();
    std::fs::write(&p, &h5ad[..h5ad.len() / 2]).unwrap();
    assert!(matches!(read_h5ad(&p), Err(DataError::Hdf5 { .. })));

    // Not HDF5 at all, and a missing file.
    let p = cut_dir.join("not_hdf5.h5");
    std::fs::write(&p, "cell_id,x\n1,2\n").unwrap();
    hdf5_error(read_10x_h5(&p), &p, "/", &["not a readable HDF5 file"]);
    let p = cut_dir.join("absent.h5");
    assert!(matches!(read_10x_h5(&p), Err(DataError::Io { .. })));
    // An h5ad is not a 10x file, and vice versa.
    let p = dir.join("dense.h5ad");
    hdf5_error(read_10x_h5(&p), &p, "/matrix", &["missing"]);
    let p = dir.join("matrix.h5");
    hdf5_error(read_h5ad(&p), &p, "/obs", &["dataframe is missing"]);
}

fn predictions() -> Predictions {
    let t = crop_cells();
    let labels = labels(t);
    Predictions {
        cell_ids: t.cell_ids.clone(),
        predicted: labels,
        confidence: (0..t.n_cells())
            .map(|i| (i % 100) as f32 / 100.0 + 0.001)
            .collect(),
        centroids_um: Some(t.centroids_um.clone()),
    }
}

#[test]
fn predictions_csv_is_keyed_by_cell_id() {
    let p = predictions();
    let dir = scratch("pred_csv");
    let path = dir.join("out").join("predictions.csv");
    write_predictions_csv(&path, &p).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("cell_id,x_um,y_um,predicted,confidence"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), p.n_cells());
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0], p.cell_ids[i]);
        assert_eq!(r[3], p.predicted[i]);
        assert_eq!(r[4].parse::<f32>().unwrap(), p.confidence[i]);
    }
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(names.len(), 1);
    // Mismatched lengths are a typed error, and the old file stays intact.
    let mut bad = p.clone();
    bad.confidence.pop();
    assert!(matches!(
        write_predictions_csv(&path, &bad),
        Err(DataError::Shape { .. })
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn predictions_h5ad_reads_back_here_and_in_anndata() {
    let p = predictions();
    let dir = scratch("pred_h5ad");
    let path = dir.join("predictions.h5ad");
    write_predictions_h5ad(&path, &p).unwrap();

    let a = read_h5ad(&path).unwrap();
    assert_eq!(a.obs_names, p.cell_ids);
    assert_eq!(a.n_vars(), 0);
    assert!(a.x.is_none());
    let Some(ColumnValues::Categorical(c)) = a.obs_column("predicted") else {
        panic!()
    };
    for i in 0..p.n_cells() {
        assert_eq!(c.label(i), Some(p.predicted[i].as_str()));
    }
    let Some(ColumnValues::Numeric(conf)) = a.obs_column("confidence") else {
        panic!()
    };
    assert!(conf
        .iter()
        .zip(&p.confidence)
        .all(|(a, b)| *a == f64::from(*b)));
    assert_eq!(a.spatial().unwrap(), p.centroids_um.clone().unwrap());

    if python_available("predictions_h5ad_anndata") {
        let out = dir.join("anndata.json");
        run_script(&[
            "read_predictions".as_ref(),
            path.as_os_str(),
            out.as_os_str(),
        ]);
        let got: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(got["n_obs"], 1135);
        assert_eq!(got["n_vars"], 0);
        assert_eq!(got["predicted_dtype"], "category");
        assert_eq!(got["obs_names"], serde_json::json!(p.cell_ids));
        assert_eq!(got["predicted"], serde_json::json!(p.predicted));
        let conf: Vec<f64> = serde_json::from_value(got["confidence"].clone()).unwrap();
        // f32 values printed by Python's float repr; serde_json parses to the nearest f64.
        assert!(conf.iter().zip(&p.confidence).all(|(a, b)| *a as f32 == *b));
        let spatial: Vec<[f32; 2]> = serde_json::from_value(got["spatial"].clone()).unwrap();
        assert_eq!(spatial, p.centroids_um.clone().unwrap());
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    if !python_available("corrupted_bytes") {
        return;
    }
    let dir = scratch("corrupt");
    let mut outcomes = [0usize; 2];
    for (name, read) in [
        (
            "matrix.h5",
            (|p: &Path| read_10x_h5(p).map(drop)) as fn(&Path) -> Result<(), DataError>,
        ),
        ("csr.h5ad", |p: &Path| read_h5ad(p).map(drop)),
    ] {
        let good = std::fs::read(fixtures().join(name)).unwrap();
        // 8 bytes of 0xFF, then of 0x00, at 150 evenly spread offsets (metadata and data).
        for k in 0..300usize {
            let mut bytes = good.clone();
            let at = (k / 2) * (good.len() - 8) / 150;
            let fill = if k % 2 == 0 { 0xFF } else { 0x00 };
            bytes[at..at + 8].fill(fill);
            let p = dir.join(format!("{k}-{name}"));
            std::fs::write(&p, &bytes).unwrap();
            match read(&p) {
                Ok(()) => outcomes[0] += 1,
                Err(e) => {
                    assert!(
                        matches!(e, DataError::Hdf5 { .. }),
                        "{name} corrupted at {at}: {e:?}"
                    );
                    outcomes[1] += 1;
                }
            }
            let _ = std::fs::remove_file(&p);
        }
    }
    eprintln!(
        "corrupted copies: {} read, {} rejected",
        outcomes[0], outcomes[1]
    );
    assert!(outcomes[1] > 0);
}
