//! Bad input never panics: small malformed files in a temporary directory give errors that
//! name the file, the column and the value.
#![cfg(feature = "native-io")]

mod common;

use std::path::{Path, PathBuf};

use common::{scratch, Scratch};
use cellsymphony::data::{
    downsample_to_png, read_reference_csv, read_tiff_gray16, read_transcripts,
    read_transcripts_csv, BidcellData, DataError, GrayImage16, TranscriptOptions,
};
use tiff::encoder::{colortype, TiffEncoder};

const HEADER: &str =
    ",transcript_id,cell_id,overlaps_nucleus,feature_name,x_location,y_location,z_location,qv\n";

fn transcripts_csv(dir: &Scratch, rows: &str) -> PathBuf {
    dir.write("transcripts.csv", &format!("{HEADER}{rows}"))
}

fn read(path: &Path) -> Result<cellsymphony::data::CellTable, DataError> {
    read_transcripts_csv(path, &TranscriptOptions::default())
}

#[test]
fn valid_small_file_filters_controls_unassigned_and_low_quality() {
    let dir = scratch("valid");
    let path = transcripts_csv(
        &dir,
        "0,1,7,1,EPCAM,10.0,20.0,1.0,40.0\n\
         1,2,7,1,EPCAM,12.0,22.0,1.0,40.0\n\
         2,3,7,0,KRT8,14.0,24.0,1.0,30.0\n\
         3,4,-1,0,KRT8,99.0,99.0,1.0,40.0\n\
         4,5,7,0,NegControlProbe_00042,1.0,1.0,1.0,40.0\n\
         5,6,12,0,BLANK_0001,1.0,1.0,1.0,40.0\n\
         6,7,12,1,VWF,50.0,60.0,1.0,40.0\n\
         7,8,12,1,VWF,50.0,60.0,1.0,19.9\n",
    );
    let t = read_transcripts(&path, &TranscriptOptions::default()).unwrap();
    assert_eq!(
        t.n_transcripts(),
        5,
        "controls and qv < 20 dropped, unassigned kept"
    );
    assert_eq!(t.genes, ["EPCAM", "KRT8", "VWF"]);
    let table = read(&path).unwrap();
    assert_eq!(table.cell_ids, ["7", "12"]);
    assert_eq!(table.counts, vec![2.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    assert_eq!(table.centroids_um[0], [12.0, 22.0]);
    assert_eq!(table.nucleus_centroids_um, vec![None, None]);
}

#[test]
fn missing_file() {
    let err = read(Path::new("/nonexistent/transcripts.csv")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err}");
    assert!(
        err.to_string().contains("/nonexistent/transcripts.csv"),
        "{err}"
    );
    assert!(matches!(
        read_tiff_gray16(Path::new("/nonexistent/x.tif")),
        Err(DataError::Io { .. })
    ));
    assert!(matches!(
        read_reference_csv(Path::new("/nonexistent/r.csv")),
        Err(DataError::Io { .. })
    ));
}

#[test]
fn missing_column_lists_the_header() {
    let dir = scratch("missing-column");
    let path = dir.write(
        "transcripts.csv",
        "cell_id,overlaps_nucleus,gene,x_location,y_location,qv\n1,0,A,1,1,40\n",
    );
    let err = read(&path).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, DataError::MissingColumn { column, .. } if column == "feature_name"),
        "{msg}"
    );
    assert!(msg.contains("missing column `feature_name`"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains("[cell_id, overlaps_nucleus, gene, x_location, y_location, qv]"),
        "{msg}"
    );
}

#[test]
fn malformed_row_reports_its_line() {
    let dir = scratch("malformed");
    let path = transcripts_csv(
        &dir,
        "0,1,7,1,EPCAM,10.0,20.0,1.0,40.0\n1,2,7,1,EPCAM,12.0\n",
    );
    let err = read(&path).unwrap_err();
    assert!(matches!(err, DataError::Csv { line: 3, .. }), "{err}");
    assert!(
        err.to_string().contains("6 fields but the header has 9"),
        "{err}"
    );
}

#[test]
fn bad_numbers_name_column_value_and_line() {
    let dir = scratch("bad-number");
    for (row, column, value) in [
        ("0,1,7,1,EPCAM,abc,20.0,1.0,40.0", "x_location", "abc"),
        ("0,1,7,1,EPCAM,1.0,NaN,1.0,40.0", "y_location", "NaN"),
        ("0,1,7,1,EPCAM,1.0,2.0,1.0,", "qv", ""),
        (
            "0,1,7,maybe,EPCAM,1.0,2.0,1.0,40",
            "overlaps_nucleus",
            "maybe",
        ),
    ] {
        let path = transcripts_csv(&dir, &format!("0,1,7,1,EPCAM,10.0,20.0,1.0,40.0\n{row}\n"));
        let err = read(&path).unwrap_err();
        match &err {
            DataError::BadValue {
                column: c,
                value: v,
                line,
                ..
            } => {
                assert_eq!((c.as_str(), v.as_str(), *line), (column, value, 3), "{err}");
            }
            other => panic!("expected BadValue for {column}, got {other}"),
        }
        assert!(
            err.to_string().contains(&format!("column `{column}`")),
            "{err}"
        );
    }
}

#[test]
fn nothing_assigned_is_an_error_not_an_empty_table() {
    let dir = scratch("unassigned");
    let path = transcripts_csv(
        &dir,
        "0,1,-1,0,EPCAM,1.0,2.0,1.0,40.0\n1,2,UNASSIGNED,0,KRT8,1.0,2.0,1.0,40.0\n",
    );
    let err = read(&path).unwrap_err();
    assert!(matches!(err, DataError::Empty { .. }), "{err}");
    let header_only = transcripts_csv(&dir, "");
    assert!(matches!(read(&header_only), Err(DataError::Empty { .. })));
    let empty = dir.write("empty.csv", "");
    assert!(matches!(read(&empty), Err(DataError::MissingColumn { .. })));
}

#[test]
fn invalid_min_qv_is_rejected() {
    let dir = scratch("min-qv");
    let path = transcripts_csv(&dir, "0,1,7,1,EPCAM,10.0,20.0,1.0,40.0\n");
    let err = read_transcripts(&path, &TranscriptOptions { min_qv: f32::NAN }).unwrap_err();
    assert!(
        matches!(err, DataError::InvalidArgument { name: "min_qv", .. }),
        "{err}"
    );
}

fn write_tiff<C: colortype::ColorType>(path: &Path, w: u32, h: u32, data: &[C::Inner])
where
    [C::Inner]: tiff::encoder::TiffValue,
{
    let mut encoder = TiffEncoder::new(std::fs::File::create(path).unwrap()).unwrap();
    encoder.write_image::<C>(w, h, data).unwrap();
}

#[test]
fn tiff_formats() {
    let dir = scratch("tiff");
    let good = dir.join("gray16.tif");
    write_tiff::<colortype::Gray16>(&good, 3, 2, &[1, 2, 3, 4, 5, 65535]);
    let img = read_tiff_gray16(&good).unwrap();
    assert_eq!(
        (img.width, img.height, img.pixels.clone()),
        (3, 2, vec![1, 2, 3, 4, 5, 65535])
    );

    let float = dir.join("float.tif");
    write_tiff::<colortype::Gray32Float>(&float, 2, 2, &[0.0, 0.5, 1.0, 2.0]);
    let err = read_tiff_gray16(&float).unwrap_err();
    assert!(matches!(err, DataError::ImageFormat { .. }), "{err}");
    assert!(err.to_string().contains("float.tif"), "{err}");

    let signed = dir.join("signed.tif");
    write_tiff::<colortype::GrayI16>(&signed, 2, 1, &[-1, 1]);
    let err = read_tiff_gray16(&signed).unwrap_err();
    assert!(err.to_string().contains("signed integer"), "{err}");

    for (name, result) in [
        ("gray8.tif", {
            let p = dir.join("gray8.tif");
            write_tiff::<colortype::Gray8>(&p, 2, 1, &[1, 2]);
            read_tiff_gray16(&p)
        }),
        ("rgb16.tif", {
            let p = dir.join("rgb16.tif");
            write_tiff::<colortype::RGB16>(&p, 1, 1, &[1, 2, 3]);
            read_tiff_gray16(&p)
        }),
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(err, DataError::ImageFormat { .. }),
            "{name}: {err}"
        );
    }

    let not_tiff = dir.write("fake.tif", "this is not an image\n");
    let err = read_tiff_gray16(&not_tiff).unwrap_err();
    assert!(matches!(err, DataError::Tiff { .. }), "{err}");
    assert!(err.to_string().contains("fake.tif"), "{err}");
    let truncated = dir.join("truncated.tif");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(read_tiff_gray16(&truncated).is_err());
}

#[test]
fn reference_errors() {
    let dir = scratch("reference");
    let ok = dir.write(
        "ok.csv",
        ",A,B,ct_idx,cell_type,atlas\n0,0.5,0.0,1.0,T,x\n1,0.0,2.0,2.0,B,x\n",
    );
    let r = read_reference_csv(&ok).unwrap();
    assert_eq!(
        (r.genes.clone(), r.labels.clone(), r.profiles.clone()),
        (
            vec!["A".to_string(), "B".into()],
            vec!["T".to_string(), "B".into()],
            vec![0.5, 0.0, 0.0, 2.0]
        )
    );

    let no_label = dir.write("no_label.csv", ",A,B\n0,1,2\n");
    let err = read_reference_csv(&no_label).unwrap_err();
    assert!(
        matches!(&err, DataError::MissingColumn { column, .. } if column == "cell_type"),
        "{err}"
    );

    let bad = dir.write("bad.csv", ",A,B,cell_type\n0,1,x1,T\n");
    let err = read_reference_csv(&bad).unwrap_err();
    assert!(
        matches!(&err, DataError::BadValue { column, value, line: 2, .. } if column == "B" && value == "x1"),
        "{err}"
    );

    let header_only = dir.write("header.csv", ",A,cell_type\n");
    assert!(matches!(
        read_reference_csv(&header_only),
        Err(DataError::Empty { .. })
    ));
    let ragged = dir.write("ragged.csv", ",A,cell_type\n0,1\n");
    assert!(matches!(
        read_reference_csv(&ragged),
        Err(DataError::Csv { line: 2, .. })
    ));
}

#[test]
fn missing_data_says_what_to_run() {
    let dir = scratch("no-data");
    let err = BidcellData::locate(&dir).unwrap_err();
    assert!(matches!(err, DataError::DataMissing { .. }), "{err}");
    assert!(
        err.to_string().contains("run scripts/fetch_data.sh"),
        "{err}"
    );
}

#[test]
fn png_export_errors() {
    let img = GrayImage16::new(2, 2, vec![0, 1, 2, 3]).unwrap();
    let err = downsample_to_png(&img, 0, Path::new("/tmp/never.png")).unwrap_err();
    assert!(
        matches!(err, DataError::InvalidArgument { name: "factor", .. }),
        "{err}"
    );
    let err = downsample_to_png(&img, 1, Path::new("/nonexistent/dir/out.png")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err}");
}
