//! One-call Xenium bundle reader ([`XeniumBundle`]) on the real BIDCell crop rewritten as the
//! output folders of several Xenium Onboard Analysis versions: every layout must give the same
//! cells × genes matrix, centroids and nucleus centroids as the transcript reader, and a folder
//! without a matrix or transcripts must get an error listing what was found and expected.
//!
//! The HDF5 and parquet files are written by `tests/python/write_bundle_fixtures.py` (h5py,
//! pyarrow, scipy; installed by `scripts/setup.sh`); `CELLSYMPHONY_ALLOW_NO_PYTHON=1` skips
//! the layouts that need them, loudly.
#![cfg(feature = "native-io")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{crop_cells, crop_files, fixture_dir, gzip, python_or_skip, run_python, scratch};
use cellsymphony::data::{
    write_cells_csv, write_mex_dir, CellTable, DataError,
    MatrixSource, MorphologyLayout, TranscriptOptions, XeniumBundle,
};

const MANIFEST: &str = r#"{"xenium_version": "1.0", "analysis_sw_version": "xenium-1.0.2", "pixel_size": 0.2125, "panel_name": "Xenium Human Breast Panel", "run_name": "fixture"}"#;

const PY_HELP: &str = "python3 with h5py, pyarrow and scipy writes the bundle fixtures: run \
scripts/setup.sh";

/// Files written by python (10x h5, cells.parquet, transcripts.parquet), or `None` when
/// python is unavailable and skipping was allowed.
fn python_files() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        if !python_or_skip("bundle fixtures", "h5py, pyarrow, scipy", PY_HELP) {
            return None;
        }
        let src = fixture_dir("bundle-python-src");
        write_mex_dir(crop_cells(), &src.join("mex"), true).unwrap();
        write_cells_csv(crop_cells(), &src.join("cells.csv"), false).unwrap();
        let out = fixture_dir("bundle-python-out");
        let transcripts = crop_files().transcripts;
        run_python(
            "write_bundle_fixtures.py",
            &[src.join("mex").as_os_str(), src.join("cells.csv").as_os_str(), transcripts.as_os_str(), out.as_os_str()],
            PY_HELP,
        );
        Some(out)
    })
    .as_deref()
}

fn assert_same_cells(got: &CellTable, layout: &str) {
    let want = crop_cells();
    assert_eq!(got.cell_ids, want.cell_ids, "{layout}: cell ids");
    assert_eq!(got.genes, want.genes, "{layout}: genes");
    assert_eq!(got.counts, want.counts, "{layout}: counts");
    assert_eq!(got.nucleus_centroids_um, want.nucleus_centroids_um, "{layout}: nucleus centroids");
    for (i, (g, w)) in got.centroids_um.iter().zip(&want.centroids_um).enumerate() {
        assert!(
            (g[0] - w[0]).abs() <= 1e-3 && (g[1] - w[1]).abs() <= 1e-3,
            "{layout}: centroid of cell {i}: {g:?} vs {w:?}"
        );
    }
}

#[test]
fn bidcell_crop_folder_is_a_bundle() {
    let dir = crop_files().transcripts.parent().unwrap().to_path_buf();
    let b = XeniumBundle::open(&dir).unwrap();
    assert!(matches!(b.matrix, MatrixSource::Transcripts(_)));
    assert_eq!(b.morphology.as_ref().map(|m| m.layout), Some(MorphologyLayout::PlainTiff));
    assert_same_cells(&b.read_cells(&TranscriptOptions::default()).unwrap(), "bidcell crop");
    println!("{}", b.describe());
}

#[test]
fn xoa1_layout_mex_cells_csv_gz_transcripts_csv_gz() {
    let dir = scratch("xoa1");
    std::fs::write(dir.join("experiment.xenium"), MANIFEST).unwrap();
    write_mex_dir(crop_cells(), &dir.join("cell_feature_matrix"), true).unwrap();
    write_cells_csv(crop_cells(), &dir.join("cells.csv.gz"), true).unwrap();
    std::fs::write(dir.join("transcripts.csv.gz"), gzip(&std::fs::read(crop_files().transcripts).unwrap())).unwrap();
    std::fs::copy(&crop_files().morphology, dir.join("morphology_mip.ome.tif")).unwrap();
    let b = XeniumBundle::open(&dir).unwrap();
    assert!(matches!(b.matrix, MatrixSource::Mex(_)), "{:?}", b.matrix);
    assert_eq!(b.manifest.as_ref().and_then(|m| m.pixel_size), Some(0.2125));
    assert_eq!(b.morphology.as_ref().map(|m| m.layout), Some(MorphologyLayout::Mip));
    let text = b.describe();
    assert!(text.contains("cell_feature_matrix/ (MEX)") && text.contains("cells.csv.gz"), "{text}");
    assert_same_cells(&b.read_cells(&TranscriptOptions::default()).unwrap(), "XOA 1 (MEX)");
}

#[test]
fn xoa2_layout_h5_cells_parquet_transcripts_parquet_focus_folder() {
    let Some(py) = python_files() else { return };
    let dir = scratch("xoa2");
    std::fs::write(dir.join("experiment.xenium"), MANIFEST).unwrap();
    for f in ["cell_feature_matrix.h5", "cells.parquet", "transcripts.parquet"] {
        std::fs::copy(py.join(f), dir.join(f)).unwrap();
    }
    std::fs::create_dir_all(dir.join("morphology_focus")).unwrap();
    std::fs::copy(&crop_files().morphology, dir.join("morphology_focus/morphology_focus_0000.ome.tif")).unwrap();
    let b = XeniumBundle::open(&dir).unwrap();
    assert!(matches!(b.matrix, MatrixSource::Hdf5(_)), "{:?}", b.matrix);
    assert_eq!(b.morphology.as_ref().map(|m| m.layout), Some(MorphologyLayout::FocusLegacy));
    assert_same_cells(&b.read_cells(&TranscriptOptions::default()).unwrap(), "XOA 2 (HDF5 + parquet)");
}

#[test]
fn xoa4_layout_plain_mex_cells_parquet_channel_files() {
    let Some(py) = python_files() else { return };
    let dir = scratch("xoa4");
    write_mex_dir(crop_cells(), &dir.join("cell_feature_matrix"), false).unwrap();
    for f in ["cells.parquet", "transcripts.parquet"] {
        std::fs::copy(py.join(f), dir.join(f)).unwrap();
    }
    std::fs::create_dir_all(dir.join("morphology_focus")).unwrap();
    std::fs::copy(&crop_files().morphology, dir.join("morphology_focus/ch0000_dapi.ome.tif")).unwrap();
    std::fs::copy(&crop_files().morphology, dir.join("morphology_focus/ch0001_atp1a1_cd45_e-cadherin.ome.tif")).unwrap();
    let b = XeniumBundle::open(&dir).unwrap();
    assert!(b.manifest.is_none());
    let m = b.morphology.as_ref().unwrap();
    assert_eq!(m.layout, MorphologyLayout::FocusChannels);
    assert_eq!(m.files.len(), 2);
    assert_same_cells(&b.read_cells(&TranscriptOptions::default()).unwrap(), "XOA 4 (MEX + parquet)");
}

#[test]
fn transcripts_only_bundle_aggregates_counts() {
    let Some(py) = python_files() else { return };
    let dir = scratch("transcripts-only");
    std::fs::copy(py.join("transcripts.parquet"), dir.join("transcripts.parquet")).unwrap();
    let b = XeniumBundle::open(&dir).unwrap();
    assert!(matches!(b.matrix, MatrixSource::Transcripts(_)));
    assert!(b.cells.is_none() && b.morphology.is_none() && b.he.is_none());
    let t = b.read_cells(&TranscriptOptions::default()).unwrap();
    assert_same_cells(&t, "transcripts.parquet only");
    // The qv filter applies when counts come from transcripts.
    let strict = b.read_cells(&TranscriptOptions { min_qv: 30.0 }).unwrap();
    let total = |t: &CellTable| t.counts.iter().sum::<f32>();
    assert!(total(&strict) < total(&t), "qv ≥ 30 must drop transcripts");
}

#[test]
fn unknown_layout_lists_found_and_expected() {
    let dir = scratch("not-a-bundle");
    std::fs::write(dir.join("notes.txt"), "hello").unwrap();
    std::fs::create_dir_all(dir.join("analysis")).unwrap();
    std::fs::write(dir.join("cells.csv.gz"), "").unwrap();
    let err = XeniumBundle::open(&dir).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::UnknownLayout { .. }), "{err:?}");
    for want in ["analysis/", "cells.csv.gz", "notes.txt", "cell_feature_matrix.h5", "transcripts.parquet"] {
        assert!(msg.contains(want), "`{want}` missing from: {msg}");
    }
    let missing = XeniumBundle::open(&dir.join("does-not-exist")).unwrap_err();
    assert!(missing.to_string().contains("does-not-exist"), "{missing}");
}

#[test]
fn broken_part_names_its_file() {
    let dir = scratch("broken-cells");
    write_mex_dir(crop_cells(), &dir.join("cell_feature_matrix"), true).unwrap();
    std::fs::write(dir.join("cells.csv"), "cell_id,x_centroid\n1,2\n").unwrap();
    let b = XeniumBundle::open(&dir).unwrap();
    let err = b.read_cells(&TranscriptOptions::default()).unwrap_err().to_string();
    assert!(err.contains("cells.csv") && err.contains("y_centroid"), "{err}");
}

/// Issue 13, point 7: random bytes named `cells.parquet` are reported as a file that is not
/// parquet (naming it and the bytes found), not as a malformed CSV.
#[test]
fn random_bytes_named_cells_parquet_are_not_parquet_not_malformed_csv() {
    let dir = scratch("not-parquet");
    write_mex_dir(crop_cells(), &dir.join("cell_feature_matrix"), false).unwrap();
    let mut rng = cellsymphony::util::rng::SplitMix64::new(13);
    let junk: Vec<u8> = (0..4096).map(|_| (rng.next_u64() & 0xff) as u8).collect();
    std::fs::write(dir.join("cells.parquet"), &junk).unwrap();
    let err = XeniumBundle::open(&dir).unwrap().read_cells(&TranscriptOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::Parquet { ref path, .. } if path.ends_with("cells.parquet")), "{msg}");
    assert!(msg.contains("not a parquet file") && msg.contains(&format!("{:02x}", junk[0])), "{msg}");
    assert!(!msg.contains("malformed CSV"), "{msg}");
}

/// Issue 13, point 7: a gene listed twice in `features.tsv` is reported at its real lines
/// (both), naming the file and the gene, never "at line 0"; the same for a barcode.
#[test]
fn duplicate_gene_and_barcode_name_their_lines() {
    let dir = scratch("mex-dup");
    let mex = dir.join("cell_feature_matrix");
    write_mex_dir(crop_cells(), &mex, false).unwrap();
    let features = std::fs::read_to_string(mex.join("features.tsv")).unwrap();
    let mut lines: Vec<String> = features.lines().map(str::to_string).collect();
    let gene = lines[1].split('\t').nth(1).unwrap().to_string();
    let mut cols: Vec<String> = lines[6].split('\t').map(str::to_string).collect();
    cols[1] = gene.clone();
    lines[6] = cols.join("\t");
    std::fs::write(mex.join("features.tsv"), lines.join("\n") + "\n").unwrap();
    let err = cellsymphony::data::read_mex_dir(&mex).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::Mex { line: 7, .. }), "{msg}");
    assert!(msg.contains("features.tsv") && msg.contains(&format!("`{gene}`")) && msg.contains("lines 2 and 7"), "{msg}");
    assert!(!msg.contains("line 0"), "{msg}");

    write_mex_dir(crop_cells(), &mex, false).unwrap();
    let barcodes = std::fs::read_to_string(mex.join("barcodes.tsv")).unwrap();
    let mut lines: Vec<String> = barcodes.lines().map(str::to_string).collect();
    lines[9] = lines[3].clone();
    std::fs::write(mex.join("barcodes.tsv"), lines.join("\n") + "\n").unwrap();
    let err = cellsymphony::data::read_mex_dir(&mex).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::Mex { line: 10, .. }), "{msg}");
    assert!(msg.contains("barcodes.tsv") && msg.contains("lines 4 and 10"), "{msg}");
}
