//! In-memory (browser) entry points of the text readers on the real BIDCell Xenium breast crop
//! (`scripts/fetch_data.sh`): `read_mex_bytes`, `read_cells_csv_bytes` and
//! `read_transcripts_csv_bytes` give exactly what the path readers give (one parser), for plain
//! and gzipped bytes; malformed bytes give errors that name the file and line.
#![cfg(feature = "native-io")]

mod common;

use std::path::PathBuf;

use common::{crop_cells, crop_files, gzip, scratch};
use cellsymphony::data::{
    read_cells_csv, read_cells_csv_bytes, read_mex_bytes, read_mex_dir_csr, read_transcripts,
    read_transcripts_csv_bytes, read_transcripts_table_bytes,
    write_cells_csv, write_mex_dir, DataError, TranscriptOptions,
};

fn read(dir: &std::path::Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

#[test]
fn mex_and_cells_bytes_equal_path_readers_on_the_crop() {
    let want = crop_cells();
    for gz in [true, false] {
        let dir = scratch(if gz { "gz" } else { "plain" });
        write_mex_dir(want, &dir, gz).unwrap();
        let cells_name = if gz { "cells.csv.gz" } else { "cells.csv" };
        write_cells_csv(want, &dir.join(cells_name), gz).unwrap();
        let sfx = if gz { ".gz" } else { "" };
        let (f, b, m) = (
            read(&dir, &format!("features.tsv{sfx}")),
            read(&dir, &format!("barcodes.tsv{sfx}")),
            read(&dir, &format!("matrix.mtx{sfx}")),
        );
        assert_eq!(m.starts_with(&[0x1f, 0x8b]), gz);

        let from_path = read_mex_dir_csr(&dir).unwrap();
        let from_bytes = read_mex_bytes(&f, &b, &m).unwrap();
        assert_eq!(from_bytes, from_path, "gzip {gz}");
        assert_eq!(from_bytes.cell_ids.len(), 1135);
        assert_eq!(from_bytes.genes, want.genes);
        assert_eq!(from_bytes.clone().into_cell_table().counts, want.counts);

        let cells_path = read_cells_csv(&dir.join(cells_name)).unwrap();
        let cells_bytes = read_cells_csv_bytes(cells_name, &read(&dir, cells_name)).unwrap();
        assert_eq!(cells_bytes.path, PathBuf::from(cells_name));
        assert_eq!(cells_bytes.ids, cells_path.ids);
        assert_eq!(cells_bytes.centroids_um, want.centroids_um);
        assert_eq!(cells_bytes.transcript_counts, cells_path.transcript_counts);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn transcripts_bytes_equal_path_reader_on_the_crop() {
    let path = crop_files().transcripts;
    let plain = std::fs::read(&path).unwrap();
    for opts in [
        TranscriptOptions::default(),
        TranscriptOptions { min_qv: 30.0 },
    ] {
        let want = read_transcripts(&path, &opts).unwrap();
        let got = read_transcripts_csv_bytes("transcripts_small.csv", &plain, &opts).unwrap();
        assert_eq!(got, want, "min_qv {}", opts.min_qv);
    }
    let opts = TranscriptOptions::default();
    let gz = gzip(&plain);
    let table = read_transcripts_table_bytes("transcripts.csv.gz", &gz, &opts).unwrap();
    assert_eq!(&table, crop_cells());
    assert_eq!(table.n_cells(), 1135);
}

fn expect_err<T: std::fmt::Debug>(r: Result<T, DataError>, parts: &[&str]) -> String {
    let msg = r.unwrap_err().to_string();
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
    msg
}

#[test]
fn malformed_bytes_name_file_and_line() {
    let features = b"g1\tA\tGene Expression\ng2\tB\tGene Expression\n";
    let barcodes = b"c1\nc2\n";
    let matrix = b"%%MatrixMarket matrix coordinate integer general\n2 2 2\n1 1 3\n2 2 x\n";
    // Bad value on line 4 of the matrix, plain and gzipped (file name gets `.gz`).
    let err = read_mex_bytes(features, barcodes, matrix).unwrap_err();
    assert!(
        matches!(&err, DataError::Mex { path, line: 4, .. } if path == &PathBuf::from("matrix.mtx")),
        "{err:?}"
    );
    expect_err(
        read_mex_bytes(&gzip(features), &gzip(barcodes), &gzip(matrix)),
        &["matrix.mtx.gz at line 4", "`x`"],
    );
    // Too few fields in features.tsv, line 2.
    expect_err(
        read_mex_bytes(b"g1\tA\tGene Expression\ng2\tB\n", barcodes, matrix),
        &["features.tsv at line 2", "2 tab-separated fields"],
    );
    // Truncated gzip matrix: a read error naming the file.
    let gz = gzip(matrix);
    expect_err(
        read_mex_bytes(features, barcodes, &gz[..gz.len() / 2]),
        &["matrix.mtx.gz"],
    );
    // Not a matrix at all.
    expect_err(
        read_mex_bytes(features, barcodes, b"hello\n"),
        &["matrix.mtx at line 1", "%%MatrixMarket"],
    );
    // Empty input.
    expect_err(read_mex_bytes(b"", b"", b""), &["matrix.mtx", "empty file"]);

    // cells.csv: non-numeric centroid on line 3, missing column, empty.
    expect_err(
        read_cells_csv_bytes(
            "my_cells.csv",
            b"cell_id,x_centroid,y_centroid\n1,2.5,3\n2,abc,4\n",
        ),
        &["my_cells.csv", "line 3", "x_centroid", "`abc`"],
    );
    expect_err(
        read_cells_csv_bytes("my_cells.csv", &gzip(b"cell_id,x\n1,2\n")),
        &["my_cells.csv", "`x_centroid`"],
    );
    expect_err(read_cells_csv_bytes("c.csv", b""), &["c.csv"]);

    // transcripts: bad qv on line 3; parquet bytes are refused with a clear message.
    let header = "transcript_id,cell_id,overlaps_nucleus,feature_name,x_location,y_location,qv\n";
    let csv = format!("{header}1,5,1,EPCAM,1.0,2.0,30\n2,5,1,EPCAM,1.0,2.0,high\n");
    expect_err(
        read_transcripts_csv_bytes("t.csv.gz", &gzip(csv.as_bytes()), &Default::default()),
        &["t.csv.gz", "line 3", "`qv`", "`high`"],
    );
    expect_err(
        read_transcripts_csv_bytes("t.parquet", b"PAR1\0\0\0\0", &Default::default()),
        &["t.parquet", "parquet"],
    );
    expect_err(
        read_transcripts_table_bytes(
            "t.csv",
            format!("{header}1,-1,1,EPCAM,1.0,2.0,30\n").as_bytes(),
            &Default::default(),
        ),
        &["t.csv", "no transcript is assigned to a cell"],
    );
}
