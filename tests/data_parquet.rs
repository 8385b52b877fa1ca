//! Xenium parquet readers and gzipped transcripts on the real BIDCell Xenium breast crop
//! (`scripts/fetch_data.sh`). `tests/python/write_parquet_fixtures.py` (pyarrow) writes the
//! crop as parquet with several codecs and column types, and as `transcripts.csv.gz`; every
//! variant must give exactly the table the CSV reader gives. Malformed files give typed errors.
#![cfg(feature = "native-io")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use common::{crop_cells, crop_files, crop_transcripts, fixture_dir, python_or_skip, run_python};
use cellsymphony::data::{
    attach_centroids, read_cells_parquet, read_transcripts, read_transcripts_csv,
    read_transcripts_parquet, write_cells_csv, CellTable, DataError,
    TranscriptOptions,
};

const PY_HELP: &str = "python3 with pyarrow writes the parquet fixtures: run scripts/setup.sh \
or `python3 -m pip install pyarrow`";

/// The fixture folder (written once per test process), or `None` when python3 + pyarrow are
/// missing and CELLSYMPHONY_ALLOW_NO_PYTHON=1 (fails otherwise).
fn fixtures(test: &str) -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        if !python_or_skip("parquet fixtures", "pyarrow", PY_HELP) {
            return None;
        }
        // One folder per process under cargo's target tmp dir (stale ones removed), so that
        // runs do not pile up ~60 MB copies.
        let dir = fixture_dir("parquet-fixtures");
        let cells = dir.join("cells.csv");
        write_cells_csv(crop_cells(), &cells, false).unwrap();
        let transcripts = crop_files().transcripts;
        run_python(
            "write_parquet_fixtures.py",
            &[transcripts.as_os_str(), cells.as_os_str(), dir.as_os_str()],
            PY_HELP,
        );
        Some(dir)
    });
    if dir.is_none() {
        eprintln!("SKIPPED: no python3 with pyarrow: {test}");
    }
    dir.as_deref()
}

fn expected(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn count(v: &serde_json::Value, key: &str, field: &str) -> usize {
    v[key][field].as_u64().unwrap() as usize
}

#[test]
fn every_variant_gives_the_csv_table() {
    let Some(dir) = fixtures("every_variant_gives_the_csv_table") else {
        return;
    };
    let opts = TranscriptOptions::default();
    let want = crop_cells();
    assert_eq!((want.n_cells(), want.n_genes()), (1_135, 313));
    for name in [
        "transcripts_snappy.parquet", // cell_id int64, overlaps_nucleus int64
        "transcripts_zstd.parquet",   // cell_id string, float32 coordinates, 4 row groups
        "transcripts_binary.parquet", // cell_id, feature_name binary; gzip codec
        "transcripts_bool.parquet",   // overlaps_nucleus bool; lz4 codec
        "transcripts.csv.gz",
    ] {
        let path = dir.join(name);
        let t = read_transcripts(&path, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&t, crop_transcripts(), "{name}: transcripts differ");
        let table = read_transcripts_csv(&path, &opts).unwrap();
        assert_eq!(table.cell_ids, want.cell_ids, "{name}");
        assert_eq!(table.genes, want.genes, "{name}");
        assert_eq!(table.counts, want.counts, "{name}");
        assert_eq!(table.centroids_um, want.centroids_um, "{name}");
        assert_eq!(
            table.nucleus_centroids_um, want.nucleus_centroids_um,
            "{name}"
        );
    }
    // The parquet entry point directly, and the gzip detected without a .gz name.
    let direct = read_transcripts_parquet(&dir.join("transcripts_zstd.parquet"), &opts).unwrap();
    assert_eq!(&direct, crop_transcripts());
    let renamed = dir.join("gzipped_without_suffix.csv");
    std::fs::copy(dir.join("transcripts.csv.gz"), &renamed).unwrap();
    assert_eq!(
        &read_transcripts(&renamed, &opts).unwrap(),
        crop_transcripts()
    );
}

#[test]
fn min_qv_30_matches_the_python_count() {
    let Some(dir) = fixtures("min_qv_30_matches_the_python_count") else {
        return;
    };
    let e = expected(dir);
    assert_eq!(
        count(&e, "qv20", "kept"),
        crop_transcripts().n_transcripts()
    );
    let opts = TranscriptOptions { min_qv: 30.0 };
    let from_csv = read_transcripts(&crop_files().transcripts, &opts).unwrap();
    let from_parquet = read_transcripts(&dir.join("transcripts_snappy.parquet"), &opts).unwrap();
    let from_f32 = read_transcripts(&dir.join("transcripts_zstd.parquet"), &opts).unwrap();
    for (what, t) in [
        ("csv", &from_csv),
        ("parquet", &from_parquet),
        ("parquet f32", &from_f32),
    ] {
        assert_eq!(t.n_transcripts(), count(&e, "qv30", "kept"), "{what}");
        assert_eq!(t.n_assigned(), count(&e, "qv30", "assigned"), "{what}");
        assert_eq!(t.cell_ids.len(), count(&e, "qv30", "cells"), "{what}");
        assert_eq!(t.genes.len(), count(&e, "qv30", "genes"), "{what}");
    }
    // Raising min_qv really removed transcripts (36k of 186k in the crop).
    assert!(from_csv.n_transcripts() < crop_transcripts().n_transcripts() - 30_000);
    assert_eq!(from_parquet, from_csv);
    assert_eq!(
        CellTable::from_transcripts(&from_f32),
        CellTable::from_transcripts(&from_csv)
    );
}

#[test]
fn xenium2_is_gene_and_codeword_category_drop_controls() {
    let Some(dir) = fixtures("xenium2_is_gene_and_codeword_category_drop_controls") else {
        return;
    };
    let e = expected(dir);
    let path = dir.join("transcripts_xoa2.parquet");
    let t = read_transcripts(&path, &TranscriptOptions::default()).unwrap();
    assert_eq!(t.n_transcripts(), count(&e, "xoa2", "kept"));
    assert_eq!(t.n_assigned(), count(&e, "xoa2", "assigned"));
    let got = CellTable::from_transcripts(&t);
    let want = crop_cells();
    assert_eq!(got.n_genes(), 311);
    assert_eq!(got.gene_index("EPCAM"), None, "is_gene = false dropped");
    assert_eq!(
        got.gene_index("VWF"),
        None,
        "negative_control_probe dropped"
    );
    assert_eq!(got.cell_ids, want.cell_ids);
    for (j, gene) in got.genes.iter().enumerate() {
        let k = want.gene_index(gene).unwrap();
        for i in 0..got.n_cells() {
            assert_eq!(got.row(i)[j], want.row(i)[k], "cell {i} gene {gene}");
        }
    }
}

#[test]
fn cells_parquet_string_and_binary_ids() {
    let Some(dir) = fixtures("cells_parquet_string_and_binary_ids") else {
        return;
    };
    let want = crop_cells();
    let s = read_cells_parquet(&dir.join("cells_string.parquet")).unwrap();
    assert_eq!(s.ids, want.cell_ids);
    assert_eq!(s.centroids_um, want.centroids_um, "float32 centroids");
    assert_eq!(s.transcript_counts.as_deref(), Some(&want.totals()[..]));
    let area = s.cell_area.as_ref().unwrap();
    assert_eq!((area[0], area[want.n_cells() - 1]), (10.0, 1_144.0));
    let nucleus = s.nucleus_area.as_ref().unwrap();
    assert!(nucleus[0].is_nan(), "null nucleus_area reads as NaN");
    assert_eq!(nucleus[1], 6.0);

    let b = read_cells_parquet(&dir.join("cells_binary.parquet")).unwrap();
    assert_eq!(b.ids, want.cell_ids);
    assert_eq!(b.centroids_um, want.centroids_um, "double centroids");
    assert!(b.cell_area.is_none() && b.nucleus_area.is_none());
    assert_eq!(b.path, dir.join("cells_binary.parquet"));

    let mut table = want.clone();
    table.centroids_um = vec![[f32::NAN; 2]; table.n_cells()];
    attach_centroids(&mut table, &b).unwrap();
    assert_eq!(table.centroids_um, want.centroids_um);
}

/// `err` is a `DataError::Parquet` naming `path`.
fn assert_parquet_error(err: DataError, path: &Path) {
    let msg = err.to_string();
    assert!(
        matches!(&err, DataError::Parquet { path: p, .. } if p == path),
        "expected DataError::Parquet for {}, got {err:?}",
        path.display()
    );
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

#[test]
fn truncated_files_are_typed_errors() {
    let Some(dir) = fixtures("truncated_files_are_typed_errors") else {
        return;
    };
    let opts = TranscriptOptions::default();
    let full = std::fs::read(dir.join("transcripts_zstd.parquet")).unwrap();
    let cut = dir.join("truncated.parquet");
    for keep in [full.len() - 1, full.len() - 100, full.len() / 2, 4_096, 12] {
        std::fs::write(&cut, &full[..keep]).unwrap();
        let err = read_transcripts(&cut, &opts).unwrap_err();
        assert_parquet_error(err, &cut);
    }
    let cells = std::fs::read(dir.join("cells_string.parquet")).unwrap();
    let cut_cells = dir.join("truncated_cells.parquet");
    std::fs::write(&cut_cells, &cells[..cells.len() - 10]).unwrap();
    assert_parquet_error(read_cells_parquet(&cut_cells).unwrap_err(), &cut_cells);

    // A truncated gzip stream: ReadAt naming the file and the last line read.
    let gz = std::fs::read(dir.join("transcripts.csv.gz")).unwrap();
    let cut_gz = dir.join("truncated.csv.gz");
    std::fs::write(&cut_gz, &gz[..gz.len() / 2]).unwrap();
    match read_transcripts(&cut_gz, &opts).unwrap_err() {
        DataError::ReadAt { path, line, .. } => {
            assert_eq!(path, cut_gz);
            assert!(line > 1_000, "line {line}");
        }
        other => panic!("expected ReadAt, got {other:?}"),
    }
}

/// Overwrites bytes all over valid files; every read must return (Ok or a typed error naming
/// the file), never panic or hang. Corrupt pages may decode to wrong values (parquet pages
/// carry no mandatory checksum), so only the absence of panics is checked.
#[test]
fn corrupted_bytes_never_panic() {
    let Some(dir) = fixtures("corrupted_bytes_never_panic") else {
        return;
    };
    // Silence the backtraces of decoder panics that the reader catches, on this thread only.
    thread_local!(static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !QUIET.with(|q| q.get()) {
            default_hook(info);
        }
    }));
    let opts = TranscriptOptions::default();
    let (mut errors, mut caught_panics, mut reads) = (0, 0, 0);
    let mut panic_kinds = std::collections::BTreeMap::new();
    // CELLSYMPHONY_EXHAUSTIVE_CORRUPTION=1: every byte of cells.parquet, 3 flips (minutes).
    let exhaustive = std::env::var("CELLSYMPHONY_EXHAUSTIVE_CORRUPTION").as_deref() == Ok("1");
    let flips: &[u8] = if exhaustive {
        &[0xff, 0x01, 0x80]
    } else {
        &[0xff, 0x01]
    };
    // (file, spread positions over the body, stride over the last 4 KiB: footer + last pages)
    for (name, spread, stride) in [
        (
            "cells_string.parquet",
            if exhaustive { usize::MAX } else { 400 },
            3,
        ),
        ("transcripts_zstd.parquet", 40, 64),
    ] {
        let good = std::fs::read(dir.join(name)).unwrap();
        let bad_path = dir.join(format!("corrupt_{name}"));
        let n = good.len();
        let positions: Vec<usize> = if spread >= n {
            (0..n).collect()
        } else {
            (0..spread)
                .map(|k| k * n / spread)
                .chain((n.saturating_sub(4_096)..n).step_by(stride))
                .collect()
        };
        for &p in &positions {
            for &flip in flips {
                let mut bytes = good.clone();
                bytes[p] ^= flip;
                std::fs::write(&bad_path, &bytes).unwrap();
                QUIET.with(|q| q.set(true));
                let result = std::panic::catch_unwind(|| {
                    if name.starts_with("cells") {
                        read_cells_parquet(&bad_path).map(|_| ())
                    } else {
                        read_transcripts(&bad_path, &opts).map(|_| ())
                    }
                });
                QUIET.with(|q| q.set(false));
                reads += 1;
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        errors += 1;
                        let msg = e.to_string();
                        assert!(msg.contains(&bad_path.display().to_string()), "{msg}");
                        if let Some((_, what)) = msg.split_once("decoder failed on corrupt data: ")
                        {
                            caught_panics += 1;
                            let what: String = what.chars().take(60).collect();
                            *panic_kinds.entry(what).or_insert(0usize) += 1;
                        }
                    }
                    Err(_) => panic!("{name}: panic escaped for byte {p} ^ {flip:#x}"),
                }
            }
        }
    }
    eprintln!(
        "corrupted files: {reads} reads, {errors} typed errors, {caught_panics} of them caught \
         decoder panics"
    );
    for (what, n) in &panic_kinds {
        eprintln!("  {n} × parquet crate panic caught: {what}");
    }
    assert!(errors > reads / 4, "{errors} errors in {reads} reads");
}

#[test]
fn missing_column_lists_the_schema() {
    let Some(dir) = fixtures("missing_column_lists_the_schema") else {
        return;
    };
    let path = dir.join("no_feature_name.parquet");
    let err = read_transcripts(&path, &TranscriptOptions::default()).unwrap_err();
    let msg = err.to_string();
    match err {
        DataError::MissingColumn {
            path: p,
            column,
            found,
            ..
        } => {
            assert_eq!(p, path);
            assert_eq!(column, "feature_name");
            assert!(found.iter().any(|c| c == "x_location"), "{found:?}");
        }
        other => panic!("expected MissingColumn, got {other:?}"),
    }
    assert!(msg.contains("no_feature_name.parquet"), "{msg}");
}

#[test]
fn wrong_column_type_says_found_and_expected() {
    let Some(dir) = fixtures("wrong_column_type_says_found_and_expected") else {
        return;
    };
    let path = dir.join("x_as_string.parquet");
    let err = read_transcripts(&path, &TranscriptOptions::default()).unwrap_err();
    let msg = err.to_string();
    match &err {
        DataError::ColumnType {
            path: p,
            column,
            found,
            expected,
        } => {
            assert_eq!(p, &path);
            assert_eq!(column, "x_location");
            assert!(
                found.contains("BYTE_ARRAY") && found.contains("String"),
                "{found}"
            );
            assert!(expected.contains("float"), "{expected}");
        }
        other => panic!("expected ColumnType, got {other:?}"),
    }
    assert!(msg.contains("x_as_string.parquet"), "{msg}");
    // cells.parquet read as transcripts: the first missing column is named.
    let cells = dir.join("cells_string.parquet");
    let err = read_transcripts(&cells, &TranscriptOptions::default()).unwrap_err();
    assert!(
        matches!(err, DataError::MissingColumn { ref column, .. } if column == "overlaps_nucleus"),
        "{err}"
    );
}

#[test]
fn null_value_names_its_row() {
    let Some(dir) = fixtures("null_value_names_its_row") else {
        return;
    };
    let path = dir.join("null_qv.parquet");
    let err = read_transcripts(&path, &TranscriptOptions::default()).unwrap_err();
    let msg = err.to_string();
    match err {
        DataError::ParquetValue {
            path: p,
            row,
            column,
            value,
            ..
        } => {
            assert_eq!(
                (p, row, column.as_str(), value.as_str()),
                (path, 3, "qv", "null")
            );
        }
        other => panic!("expected ParquetValue, got {other:?}"),
    }
    assert!(msg.contains("row 3"), "{msg}");
}

/// Read speed of the crop, CSV vs gzipped CSV vs parquet (printed; run with --nocapture).
#[test]
fn read_speed_csv_vs_parquet() {
    let Some(dir) = fixtures("read_speed_csv_vs_parquet") else {
        return;
    };
    let opts = TranscriptOptions::default();
    let n = crop_transcripts().n_transcripts() as f64;
    let mut report = Vec::new();
    for (what, path) in [
        ("csv", crop_files().transcripts.clone()),
        ("csv.gz", dir.join("transcripts.csv.gz")),
        ("parquet snappy", dir.join("transcripts_snappy.parquet")),
        ("parquet zstd f32", dir.join("transcripts_zstd.parquet")),
    ] {
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t0 = Instant::now();
            let t = read_transcripts(&path, &opts).unwrap();
            best = best.min(t0.elapsed().as_secs_f64());
            assert_eq!(t.n_transcripts() as f64, n);
        }
        report.push(format!(
            "{what}: {:.1} ms, {:.2} M transcripts/s",
            best * 1e3,
            n / best / 1e6
        ));
    }
    eprintln!(
        "read speed (crop, {n} transcripts, best of 3): {}",
        report.join("; ")
    );
}
