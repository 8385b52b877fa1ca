//! Xenium's zarr outputs, protein channels and the AnnData-zarr predictions store, on the real
//! BIDCell crop: `tests/python/write_zarr_fixtures.py` (Python zarr, numcodecs, h5py) rewrites
//! the crop as `cell_feature_matrix.zarr.zip` + `cells.zarr.zip` (Xenium's layout, Blosc-LZ4 /
//! zlib chunks) with two `Protein Expression` features stored ×10, and stores the same values
//! under every compressor the reader accepts; the readers must give the crop's matrix and
//! centroids, the proteins scaled back, and typed errors for other layouts. The predictions
//! store is read back by Python `anndata` (`tests/python/check_anndata_zarr.py`).
#![cfg(feature = "native-io")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cellsymphony::data::{
    cell_id_string, read_10x_h5_protein, read_xenium_zarr_bytes, write_cells_csv, write_mex_dir,
    write_predictions_anndata_zarr, CellTable, DataError, MatrixSource, Predictions, ProteinMatrix,
    ScalingSource, TranscriptOptions, XeniumBundle, ZarrStore,
};
use common::{crop_cells, fixture_dir, python_or_skip, run_python, scratch};

const PY_HELP: &str = "python3 with zarr, numcodecs, h5py and scipy writes the zarr fixtures: run scripts/setup.sh";

/// The python-written fixtures, or `None` when python is unavailable and skipping was allowed.
fn fixtures() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        if !python_or_skip("zarr fixtures", "zarr, numcodecs, h5py, scipy", PY_HELP) {
            return None;
        }
        let src = fixture_dir("zarr-python-src");
        write_mex_dir(crop_cells(), &src.join("mex"), true).unwrap();
        write_cells_csv(crop_cells(), &src.join("cells.csv"), false).unwrap();
        let out = fixture_dir("zarr-python-out");
        run_python(
            "write_zarr_fixtures.py",
            &[src.join("mex").as_os_str(), src.join("cells.csv").as_os_str(), out.as_os_str()],
            PY_HELP,
        );
        Some(out)
    })
    .as_deref()
}

fn assert_crop_matrix_and_centroids(got: &CellTable, what: &str) {
    let want = crop_cells();
    assert_eq!(got.cell_ids, want.cell_ids, "{what}: cell ids");
    assert_eq!(got.genes, want.genes, "{what}: genes (controls and proteins dropped)");
    assert_eq!(got.counts, want.counts, "{what}: counts");
    for (i, (g, w)) in got.centroids_um.iter().zip(&want.centroids_um).enumerate() {
        assert!((g[0] - w[0]).abs() <= 1e-3 && (g[1] - w[1]).abs() <= 1e-3, "{what}: centroid of cell {i}: {g:?} vs {w:?}");
    }
}

/// The proteins the python script wrote (values already divided by 10), by cell id.
fn assert_expected_protein(p: &ProteinMatrix, dir: &Path, what: &str) {
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("protein.json")).unwrap()).unwrap();
    assert_eq!(p.markers, ["CD45", "PanCK"], "{what}: markers");
    assert_eq!(p.cell_ids, crop_cells().cell_ids, "{what}: proteins follow the gene table's cell order");
    let cells: Vec<&str> = json["cells"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    let mut nonzero = 0;
    for (k, id) in cells.iter().enumerate() {
        let row = p.cell_ids.iter().position(|c| c == id).unwrap();
        for m in 0..2 {
            let want = json["values"][k][m].as_f64().unwrap() as f32;
            let got = p.values[row * 2 + m];
            assert!((got - want).abs() <= 1e-4, "{what}: cell {id} marker {m}: {got} vs {want}");
            nonzero += usize::from(want != 0.0);
        }
    }
    assert!(nonzero > cells.len(), "{what}: the fixture has protein signal ({nonzero} non-zero)");
}

#[test]
fn every_codec_reads_the_same_values() {
    let Some(dir) = fixtures() else { return };
    let store = ZarrStore::open(&dir.join("codecs.zarr.zip")).unwrap();
    let want: Vec<f64> = (0..5000).map(|i| f64::from((i * 37) % 1001 - 500)).collect();
    for codec in ["none", "blosc_lz4_shuffle", "blosc_lz4_noshuffle", "blosc_lz4hc", "blosc_zlib", "blosc_zstd", "zlib", "gzip", "lz4", "zstd"] {
        let (i4, shape) = store.read_f64(&format!("i4_{codec}")).unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert_eq!(shape, [5000]);
        assert_eq!(i4, want, "int32 under {codec}");
        let (f8, shape) = store.read_f64(&format!("f8_{codec}")).unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert_eq!(shape, [1000, 5]);
        assert_eq!(f8, want.iter().map(|v| v / 4.0).collect::<Vec<_>>(), "float64 [1000, 5] in [300, 3] chunks under {codec}");
    }
    let (pairs, _) = store.read_f64("cell_id_pairs").unwrap();
    let ids: Vec<String> = pairs.chunks(2).map(|p| cell_id_string(p[0] as u32, p[1] as u32)).collect();
    let expected: Vec<String> = serde_json::from_value(store.attrs("").unwrap()["expected_ids"].clone()).unwrap();
    assert_eq!(ids, expected, "Xenium's cell id strings");
}

#[test]
fn zarr_only_bundle_reads_like_every_other_layout_with_proteins() {
    let Some(py) = fixtures() else { return };
    let dir = scratch("zarr-bundle");
    std::fs::write(dir.join("experiment.xenium"), r#"{"analysis_sw_version": "R&D", "pixel_size": 0.2125}"#).unwrap();
    for f in ["cell_feature_matrix.zarr.zip", "cells.zarr.zip"] {
        std::fs::copy(py.join(f), dir.join(f)).unwrap();
    }
    let b = XeniumBundle::open(&dir).unwrap();
    assert!(matches!(b.matrix, MatrixSource::Zarr(_)), "{:?}", b.matrix);
    assert_eq!(b.manifest.as_ref().unwrap().analysis_version(), None, "R&D names no release");
    let text = b.describe();
    assert!(text.contains("cell_feature_matrix.zarr.zip (zarr)") && text.contains("cells.zarr.zip") && text.contains("R&D"), "{text}");
    assert_crop_matrix_and_centroids(&b.read_cells(&TranscriptOptions::default()).unwrap(), "zarr bundle");
    let p = b.read_protein().unwrap().expect("protein channels");
    assert_eq!((p.scaling_factor, p.scaling_source), (10.0, ScalingSource::XoaDefault));
    assert_expected_protein(&p, py, "zarr");

    // The browser path: the same files as bytes.
    let m = std::fs::read(py.join("cell_feature_matrix.zarr.zip")).unwrap();
    let c = std::fs::read(py.join("cells.zarr.zip")).unwrap();
    let (t, p2) = read_xenium_zarr_bytes("cell_feature_matrix.zarr.zip", &m, Some(("cells.zarr.zip", &c))).unwrap();
    assert_crop_matrix_and_centroids(&t, "zarr bytes");
    assert_eq!(p2.as_ref(), Some(&p));
}

#[test]
fn hdf5_proteins_are_divided_by_the_files_scaling_factor() {
    let Some(py) = fixtures() else { return };
    let p = read_10x_h5_protein(&py.join("cell_feature_matrix.h5")).unwrap().expect("protein channels");
    assert_eq!((p.scaling_factor, p.scaling_source), (10.0, ScalingSource::Hdf5Attribute));
    assert_expected_protein(&p, py, "HDF5");
    // Proteins are not genes: the gene table is the crop's.
    assert_crop_matrix_and_centroids(&{
        let mut t = cellsymphony::data::read_10x_h5(&py.join("cell_feature_matrix.h5")).unwrap();
        t.centroids_um = crop_cells().centroids_um.clone();
        t
    }, "HDF5 genes");
}

#[test]
fn unknown_zarr_layouts_get_typed_errors_naming_file_field_and_value() {
    let Some(py) = fixtures() else { return };
    // A zarr store without cell_features, under the matrix's name.
    let bytes = std::fs::read(py.join("codecs.zarr.zip")).unwrap();
    let e = read_xenium_zarr_bytes("cell_feature_matrix.zarr.zip", &bytes, None).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(&e, DataError::ZarrLayout { field, .. } if field == "cell_features"), "{e:?}");
    assert!(msg.contains("cell_feature_matrix.zarr.zip") && msg.contains("i4_zlib") && msg.contains("feature_keys"), "{msg}");
    // Not a zip at all.
    let e = read_xenium_zarr_bytes("cell_feature_matrix.zarr.zip", b"PAR1 not a zip", None).unwrap_err();
    assert!(matches!(e, DataError::Zip { .. }) && e.to_string().contains("not a zip"), "{e}");
    // The cells store given as the matrix: names the missing group and what it found.
    let cells = std::fs::read(py.join("cells.zarr.zip")).unwrap();
    let e = read_xenium_zarr_bytes("cells.zarr.zip", &cells, None).unwrap_err();
    assert!(e.to_string().contains("cell_summary"), "{e}");
}

#[test]
fn anndata_zarr_predictions_read_back_by_python_anndata() {
    if !python_or_skip("anndata-zarr readback", "anndata, zarr", PY_HELP) {
        return;
    }
    let dir = scratch("anndata-zarr");
    let ids = vec!["c1".to_string(), "c2".into(), "c3".into()];
    let p = Predictions {
        cell_ids: ids.clone(),
        predicted: vec!["T cell".into(), "B cell".into(), "T cell".into()],
        confidence: vec![0.9, 0.55, 0.75],
        centroids_um: Some(vec![[1.0, 2.0], [3.5, 4.25], [10.0, 0.5]]),
    };
    let out = dir.join("pred.zarr");
    std::fs::create_dir_all(out.join("stale")).unwrap(); // replaced whole
    write_predictions_anndata_zarr(&out, &p).unwrap();
    assert!(!out.join("stale").exists(), "the old store is replaced, not merged");
    let expected = serde_json::json!({
        "cell_ids": ids, "predicted": p.predicted, "confidence": p.confidence,
        "spatial": [[1.0, 2.0], [3.5, 4.25], [10.0, 0.5]],
    });
    let json = dir.write_json("expected.json", &expected);
    run_python("check_anndata_zarr.py", &[out.as_os_str(), json.as_os_str()], PY_HELP);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).filter(|n| n.to_string_lossy().starts_with('.')).collect();
    assert!(leftovers.is_empty(), "temporary folders left: {leftovers:?}");
}

#[test]
fn version_strings_that_are_not_numbers_are_accepted() {
    use cellsymphony::data::parse_manifest;
    let parse = |v: &str| parse_manifest(&format!(r#"{{"analysis_sw_version": {v}}}"#), Path::new("experiment.xenium")).unwrap();
    assert_eq!(parse(r#""xenium-2.0.0.6-35-ga7e17149a""#).analysis_version(), Some([2, 0, 0]));
    assert_eq!(parse(r#""4.0""#).analysis_version(), Some([4, 0, 0]));
    assert_eq!(parse("3.1").analysis_version(), Some([3, 1, 0]), "a JSON number");
    let rd = parse(r#""R&D""#);
    assert_eq!((rd.analysis_sw_version.as_deref(), rd.analysis_version()), (Some("R&D"), None));
}

#[test]
fn protein_arcsinh_is_the_cytometry_normalisation() {
    let p = ProteinMatrix {
        cell_ids: vec!["a".into()],
        markers: vec!["CD45".into(), "PanCK".into()],
        values: vec![5.0, -2.5],
        scaling_factor: 10.0,
        scaling_source: ScalingSource::Hdf5Attribute,
    };
    let a = p.arcsinh(5.0);
    assert!((a[0] - 1f32.asinh()).abs() < 1e-6 && (a[1] - (-0.5f32).asinh()).abs() < 1e-6, "{a:?}");
}

/// `train --protein`'s data path on the XOA-4-style fixture (the crop's genes + two protein
/// markers stored ×10): the prepared crop carries the proteins in its cell order, and the
/// model input is each cell's genes followed by the standardised channels (mean 0 over the
/// training cells); a crop without proteins is refused naming the bundle.
#[cfg(feature = "train")]
#[test]
fn protein_bundle_prepares_the_model_input_genes_then_proteins() {
    use cellsymphony::train::dataset::{prepare_bundle, with_protein_channels};
    let Some(py) = fixtures() else { return };
    let dir = scratch("protein-train-bundle");
    std::fs::write(dir.join("experiment.xenium"), r#"{"analysis_sw_version": "R&D", "pixel_size": 0.2125}"#).unwrap();
    for f in ["cell_feature_matrix.zarr.zip", "cells.zarr.zip"] {
        std::fs::copy(py.join(f), dir.join(f)).unwrap();
    }
    let opts = cellsymphony::train::LabelOptions { proteins: true, ..Default::default() };
    let mut crop = prepare_bundle(&dir, &common::crop_files().reference, &opts).unwrap();
    assert_expected_protein(crop.protein.as_ref().expect("protein channels read"), py, "prepared bundle");
    let (n, g) = (crop.table.n_cells(), crop.table.n_genes());
    let train: Vec<usize> = (0..n).step_by(2).collect();
    let (x, channels) = with_protein_channels(&crop, &train, 5.0).unwrap();
    assert_eq!(channels.markers, ["CD45", "PanCK"]);
    assert_eq!(x.len(), n * (g + 2));
    assert_eq!(&x[g + 2..2 * g + 2], &crop.x_norm[g..2 * g], "cell 1: its genes first");
    for m in 0..2 {
        let mean = train.iter().map(|&i| x[i * (g + 2) + g + m]).sum::<f32>() / train.len() as f32;
        assert!(mean.abs() < 1e-3, "marker {m}: mean {mean} over the training cells");
        let v = crop.protein.as_ref().unwrap().values[2 + m];
        let want = ((v / 5.0).asinh() - channels.mean[m]) / channels.std[m];
        assert!((x[g + 2 + g + m] - want).abs() < 1e-5, "cell 1 marker {m}");
    }
    crop.protein = None;
    let err = with_protein_channels(&crop, &train, 5.0).unwrap_err().to_string();
    assert!(err.contains("--protein needs") && err.contains("protein-train-bundle"), "{err}");
}
