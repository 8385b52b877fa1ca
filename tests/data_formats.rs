//! Xenium bundle readers (MEX matrix, cells.csv, experiment.xenium) on the real BIDCell
//! Xenium breast crop (`scripts/fetch_data.sh`): the crop is written as a bundle, read back
//! and compared with the transcript reader; malformed files give typed errors.
#![cfg(feature = "native-io")]

mod common;

use std::path::{Path, PathBuf};

use common::{crop_cells, scratch, Scratch};
use cellsymphony::data::{
    attach_centroids, parse_manifest, read_cells_csv, read_manifest_in, read_mex_dir,
    read_mex_dir_csr, write_cells_csv, write_mex_dir, CellTable, CsrCounts, DataError,
};

fn assert_same_matrix(got: &CellTable, want: &CellTable) {
    assert_eq!(got.cell_ids, want.cell_ids);
    assert_eq!(got.genes, want.genes);
    assert_eq!(got.counts, want.counts);
}

fn round_trip(gzip: bool) {
    let want = crop_cells();
    let dir = scratch(if gzip { "gz" } else { "plain" });
    write_mex_dir(want, &dir, gzip).unwrap();
    let cells_name = if gzip { "cells.csv.gz" } else { "cells.csv" };
    write_cells_csv(want, &dir.join(cells_name), gzip).unwrap();
    for f in ["matrix.mtx", "features.tsv", "barcodes.tsv"] {
        let name = if gzip {
            format!("{f}.gz")
        } else {
            f.to_string()
        };
        assert!(dir.join(name).is_file(), "{f}");
    }

    let mut got = read_mex_dir(&dir).unwrap();
    assert_same_matrix(&got, want);
    assert!(got
        .centroids_um
        .iter()
        .all(|c| c[0].is_nan() && c[1].is_nan()));
    assert!(got.nucleus_centroids_um.iter().all(Option::is_none));

    let cells = read_cells_csv(&dir.join(cells_name)).unwrap();
    assert_eq!(cells.ids, want.cell_ids);
    assert_eq!(cells.transcript_counts.as_deref(), Some(&want.totals()[..]));
    assert!(cells.cell_area.is_none() && cells.nucleus_area.is_none());
    attach_centroids(&mut got, &cells).unwrap();
    assert_eq!(
        got.centroids_um, want.centroids_um,
        "centroids round-trip exactly"
    );
    assert_eq!(got.gene_index("EPCAM"), want.gene_index("EPCAM"));
}

#[test]
fn crop_round_trips_as_plain_mex_and_cells_csv() {
    round_trip(false);
}

#[test]
fn crop_round_trips_as_gzipped_mex_and_cells_csv() {
    round_trip(true);
}

#[test]
fn csr_reader_equals_dense_and_sums_unsorted_duplicates() {
    let want = crop_cells();
    let dir = scratch("csr");
    write_mex_dir(want, &dir, true).unwrap();
    let m = read_mex_dir_csr(&dir).unwrap();
    m.counts.validate("crop").unwrap();
    assert_eq!(m.cell_ids, want.cell_ids);
    assert_eq!(m.genes, want.genes);
    assert_eq!(
        m.counts,
        CsrCounts::from_dense(&want.counts, want.n_genes())
    );
    assert!(
        m.counts.heap_bytes() < want.counts.len() * 4,
        "CSR should be smaller than dense"
    );

    // Entries in reverse file order with one (gene, cell) split in two: summed, sorted.
    let dir = scratch("csr-dup");
    std::fs::write(
        dir.join("features.tsv"),
        "g1\tB\tGene Expression\ng2\tA\tGene Expression\n",
    )
    .unwrap();
    std::fs::write(dir.join("barcodes.tsv"), "c2\nc1\n").unwrap();
    std::fs::write(
        dir.join("matrix.mtx"),
        "%%MatrixMarket matrix coordinate integer general\n2 2 4\n1 2 3\n2 2 1\n1 1 2\n1 1 5\n",
    )
    .unwrap();
    let m = read_mex_dir_csr(&dir).unwrap();
    assert_eq!(m.cell_ids, ["c1", "c2"]);
    assert_eq!(m.genes, ["A", "B"]);
    // c1 (column 2): g1=B → 3, g2=A → 1; c2 (column 1): B → 2 + 5.
    assert_eq!(m.counts.indptr, [0, 2, 3]);
    assert_eq!(m.counts.indices, [0, 1, 1]);
    assert_eq!(m.counts.data, [1.0, 3.0, 7.0]);
    assert_eq!(read_mex_dir(&dir).unwrap().counts, [1.0, 3.0, 0.0, 7.0]);
}

#[test]
fn control_features_are_dropped() {
    let want = crop_cells();
    // The crop plus four non-gene features, each with non-zero counts in every cell.
    let extra = [
        "NegControlProbe_00042",
        "UnassignedCodeword_0007",
        "GENOMIC_CONTROL_1",
        "NEG_CODEWORD_9",
    ];
    let (n, g) = (want.n_cells(), want.n_genes());
    let mut table = want.clone();
    table.genes.extend(extra.iter().map(|s| s.to_string()));
    table.counts = (0..n)
        .flat_map(|i| {
            let mut row = want.row(i).to_vec();
            row.extend([1.0, 2.0, 3.0, 4.0]);
            row
        })
        .collect();
    assert_eq!(table.counts.len(), n * (g + 4));
    let dir = scratch("controls");
    write_mex_dir(&table, &dir, false).unwrap();
    // Mark two of them with Xenium's non-gene feature types (names alone look like genes).
    let features = std::fs::read_to_string(dir.join("features.tsv")).unwrap();
    let features = features
        .replace(
            "GENOMIC_CONTROL_1\tGene Expression",
            "GENOMIC_CONTROL_1\tGenomic Control",
        )
        .replace(
            "NEG_CODEWORD_9\tGene Expression",
            "NEG_CODEWORD_9\tNegative Control Codeword",
        );
    std::fs::write(dir.join("features.tsv"), features).unwrap();

    let got = read_mex_dir(&dir).unwrap();
    assert_same_matrix(&got, want);
    for name in extra {
        assert!(!got.genes.iter().any(|x| x == name), "{name} kept");
    }
}

/// A 2-cell × 2-gene MEX folder (plain) and its matrix path.
fn small_mex(name: &str) -> (Scratch, PathBuf) {
    let table = CellTable {
        cell_ids: vec!["1".into(), "2".into()],
        genes: vec!["A".into(), "B".into()],
        counts: vec![1.0, 0.0, 2.0, 3.0],
        centroids_um: vec![[0.0, 0.0], [1.0, 1.0]],
        nucleus_centroids_um: vec![None, None],
    };
    let dir = scratch(name);
    write_mex_dir(&table, &dir, false).unwrap();
    let matrix = dir.join("matrix.mtx");
    (dir, matrix)
}

/// Replaces line `line` (1-based) of `path` with `text`.
fn replace_line(path: &Path, line: usize, text: &str) {
    let body = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<&str> = body.lines().collect();
    lines[line - 1] = text;
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Asserts a [`DataError::Mex`] on `want_line` whose message names the file and `value`.
fn assert_mex_error(err: DataError, file: &Path, want_line: u64, value: &str) {
    let msg = err.to_string();
    match err {
        DataError::Mex { path, line, .. } => {
            assert_eq!(path, file, "{msg}");
            assert_eq!(line, want_line, "{msg}");
        }
        other => panic!("expected DataError::Mex, got {other:?}"),
    }
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    assert!(msg.contains(value), "{msg}");
}

#[test]
fn small_mex_reads() {
    let (dir, _) = small_mex("small");
    let t = read_mex_dir(&dir).unwrap();
    assert_eq!(t.counts, vec![1.0, 0.0, 2.0, 3.0]);
}

#[test]
fn bad_matrix_header_is_reported() {
    let (dir, matrix) = small_mex("bad-header");
    replace_line(&matrix, 1, "%%MatrixMarket matrix array real general");
    let err = read_mex_dir(&dir).unwrap_err();
    assert_mex_error(err, &matrix, 1, "array");
}

#[test]
fn index_out_of_range_is_reported() {
    // Lines: header, comment, size "2 2 3", then entries (1,1,1) (1,2,2) (2,2,3).
    let (dir, matrix) = small_mex("out-of-range");
    replace_line(&matrix, 5, "1 7 2");
    let err = read_mex_dir(&dir).unwrap_err();
    assert_mex_error(err, &matrix, 5, "column index 7");
}

#[test]
fn negative_value_is_reported() {
    let (dir, matrix) = small_mex("negative");
    replace_line(&matrix, 6, "2 2 -3");
    let err = read_mex_dir(&dir).unwrap_err();
    assert_mex_error(err, &matrix, 6, "`-3`");
}

#[test]
fn missing_entries_are_reported() {
    let (dir, matrix) = small_mex("short");
    let body = std::fs::read_to_string(&matrix).unwrap();
    let kept: Vec<&str> = body.lines().take(5).collect();
    std::fs::write(&matrix, kept.join("\n") + "\n").unwrap();
    let err = read_mex_dir(&dir).unwrap_err();
    assert_mex_error(err, &matrix, 5, "announces 3");
}

#[test]
fn truncated_gzip_is_reported() {
    let dir = scratch("truncated");
    write_mex_dir(crop_cells(), &dir, true).unwrap();
    let cells = dir.join("cells.csv.gz");
    write_cells_csv(crop_cells(), &cells, true).unwrap();
    for path in [dir.join("matrix.mtx.gz"), cells.clone()] {
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    }
    let matrix = dir.join("matrix.mtx.gz");
    match read_mex_dir(&dir).unwrap_err() {
        DataError::ReadAt { path, line, .. } => {
            assert_eq!(path, matrix);
            assert!(line > 3, "line {line}");
        }
        other => panic!("expected DataError::ReadAt, got {other:?}"),
    }
    let err = read_cells_csv(&cells).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("cells.csv.gz") && msg.contains("truncated"),
        "{msg}"
    );
    assert!(
        matches!(err, DataError::ReadAt { line, .. } if line > 1),
        "{err:?}"
    );
}

#[test]
fn cells_csv_columns_by_name_and_missing_column() {
    let dir = scratch("cells-columns");
    // XOA 2.x-like order with extra columns; an empty nucleus_area reads as NaN.
    let path = dir.join("cells.csv");
    std::fs::write(
        &path,
        "cell_id,x_centroid,y_centroid,transcript_counts,control_probe_counts,total_counts,\
         cell_area,nucleus_area,segmentation_method\n\
         aaaa-1,10.5,20.25,7,0,7,55.5,20.0,Segmented by boundary stain\n\
         bbbb-1,11,21,3,1,4,40,,Segmented by nucleus expansion\n",
    )
    .unwrap();
    let cells = read_cells_csv(&path).unwrap();
    assert_eq!(cells.ids, ["aaaa-1", "bbbb-1"]);
    assert_eq!(cells.centroids_um, vec![[10.5, 20.25], [11.0, 21.0]]);
    assert_eq!(cells.cell_area, Some(vec![55.5, 40.0]));
    let nuc = cells.nucleus_area.clone().unwrap();
    assert_eq!(nuc[0], 20.0);
    assert!(nuc[1].is_nan());
    assert_eq!(cells.transcript_counts, Some(vec![7.0, 3.0]));

    // Ids absent from cells.csv are listed.
    let mut table = CellTable {
        cell_ids: vec!["aaaa-1".into(), "cccc-1".into()],
        genes: vec!["A".into()],
        counts: vec![1.0, 1.0],
        centroids_um: vec![[f32::NAN; 2]; 2],
        nucleus_centroids_um: vec![None; 2],
    };
    let err = attach_centroids(&mut table, &cells).unwrap_err();
    assert!(matches!(&err, DataError::MissingCells { missing, .. } if missing == &["cccc-1"]));
    assert!(err.to_string().contains("cccc-1"), "{err}");
    assert!(
        table.centroids_um[0][0].is_nan(),
        "table unchanged on error"
    );

    let path = dir.join("old.csv");
    std::fs::write(&path, "cell_id,x_centroid,transcript_counts\n1,2.0,3\n").unwrap();
    match read_cells_csv(&path).unwrap_err() {
        DataError::MissingColumn {
            path: p, column, ..
        } => {
            assert_eq!(p, path);
            assert_eq!(column, "y_centroid");
        }
        other => panic!("expected MissingColumn, got {other:?}"),
    }

    std::fs::write(&path, "cell_id,x_centroid,y_centroid\n1,2.0,3\n2,abc,4\n").unwrap();
    match read_cells_csv(&path).unwrap_err() {
        DataError::BadValue {
            line,
            column,
            value,
            ..
        } => assert_eq!(
            (line, column.as_str(), value.as_str()),
            (3, "x_centroid", "abc")
        ),
        other => panic!("expected BadValue, got {other:?}"),
    }
}

#[test]
fn manifest_parses_known_and_unknown_fields() {
    let dir = scratch("manifest");
    assert_eq!(
        read_manifest_in(&dir).unwrap(),
        None,
        "no manifest is not an error"
    );
    let json = r#"{
        "major_version": 5,
        "xenium_version": "1.0",
        "analysis_sw_version": "xenium-1.6.0.8",
        "run_name": "Run 1",
        "panel_name": "Xenium Human Breast Gene Expression",
        "pixel_size": 0.2125,
        "num_cells": 167780,
        "transcripts_file": "transcripts.parquet",
        "xenium_explorer_files": {
            "transcripts_zarr_filepath": "transcripts.zarr.zip",
            "cells_zarr_filepath": "cells.zarr.zip"
        },
        "future_field": [1, 2, 3]
    }"#;
    std::fs::write(dir.join("experiment.xenium"), json).unwrap();
    let m = read_manifest_in(&dir).unwrap().unwrap();
    assert_eq!(m.xenium_version.as_deref(), Some("1.0"));
    assert_eq!(m.analysis_sw_version.as_deref(), Some("xenium-1.6.0.8"));
    assert_eq!(m.run_name.as_deref(), Some("Run 1"));
    assert_eq!(
        m.panel_name.as_deref(),
        Some("Xenium Human Breast Gene Expression")
    );
    assert_eq!(m.pixel_size, Some(0.2125));
    assert_eq!(m.num_cells, Some(167_780));
    assert_eq!(
        m.transcripts_files,
        ["transcripts.parquet", "transcripts.zarr.zip"]
    );
    assert_eq!(m.raw["future_field"][2], 3);
    assert_eq!(m.raw["major_version"], 5);

    // Missing fields are None; wrong kinds and bad JSON are typed errors.
    let m = parse_manifest("{}", Path::new("e.xenium")).unwrap();
    assert_eq!((m.pixel_size, m.num_cells, m.run_name), (None, None, None));
    let err = parse_manifest(r#"{"pixel_size": "big"}"#, Path::new("e.xenium")).unwrap_err();
    assert!(
        matches!(&err, DataError::ManifestField { field, .. } if field == "pixel_size"),
        "{err:?}"
    );
    let err = parse_manifest("{\n  \"a\": ,\n}", Path::new("e.xenium")).unwrap_err();
    assert!(matches!(err, DataError::Json { line: 2, .. }), "{err:?}");
    assert!(err.to_string().contains("e.xenium"), "{err}");
}
