//! Small helpers shared by the CSV readers (native only).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::error::DataError;

/// A CSV reader over a plain or gzip-compressed file.
pub(crate) type CsvReader = csv::Reader<Box<dyn Read>>;

/// Opens a CSV file with a header row, decompressing it when it starts with the gzip magic
/// bytes (whatever its name), and mapping open failures to [`DataError`].
pub(crate) fn open(path: &Path) -> Result<CsvReader, DataError> {
    let mut file = BufReader::new(std::fs::File::open(path).map_err(|e| DataError::io(path, e))?);
    let is_gzip = file
        .fill_buf()
        .map_err(|e| DataError::io(path, e))?
        .starts_with(&GZIP_MAGIC);
    let raw: Box<dyn Read> = if is_gzip {
        Box::new(flate2::bufread::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(csv::ReaderBuilder::new().has_headers(true).from_reader(raw))
}

/// First two bytes of every gzip stream.
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads the header row as strings.
pub(crate) fn header(reader: &mut CsvReader, path: &Path) -> Result<Vec<String>, DataError> {
    let header = reader.headers().map_err(|e| read_error(path, &e, 0))?;
    Ok(header.iter().map(|s| s.trim().to_string()).collect())
}

/// Maps a csv error met after `last_line`, turning I/O (e.g. truncated gzip) failures into
/// [`DataError::ReadAt`].
pub(crate) fn read_error(path: &Path, err: &csv::Error, last_line: u64) -> DataError {
    if let csv::ErrorKind::Io(io) = err.kind() {
        return DataError::ReadAt {
            path: path.to_path_buf(),
            line: last_line,
            source: std::io::Error::new(io.kind(), io.to_string()),
        };
    }
    csv_error(path, err)
}

/// Index of column `name` in `header`, or a [`DataError::MissingColumn`] listing the header.
pub(crate) fn column(
    header: &[String],
    name: &str,
    path: &Path,
    expected: &'static str,
) -> Result<usize, DataError> {
    header
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| DataError::MissingColumn {
            path: path.to_path_buf(),
            column: name.to_string(),
            found: header.to_vec(),
            expected,
        })
}

/// Converts a csv crate error into [`DataError::Csv`] (or [`DataError::Io`]).
pub(crate) fn csv_error(path: &Path, err: &csv::Error) -> DataError {
    let line = err.position().map_or(0, csv::Position::line);
    let message = match err.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("row has {len} fields but the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "invalid UTF-8 text".to_string(),
        csv::ErrorKind::Io(io) => {
            return DataError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(io.kind(), io.to_string()),
            }
        }
        _ => err.to_string(),
    };
    DataError::Csv {
        path: path.to_path_buf(),
        line,
        message,
    }
}

/// Parses a byte field as a finite `f32`.
pub(crate) fn parse_f32(
    field: &[u8],
    path: &Path,
    line: u64,
    column: &str,
) -> Result<f32, DataError> {
    std::str::from_utf8(field)
        .ok()
        .and_then(|s| s.trim().parse::<f32>().ok())
        .filter(|v| v.is_finite())
        .ok_or_else(|| bad_value(field, path, line, column, "a finite number"))
}

/// Builds a [`DataError::BadValue`] from a raw field.
pub(crate) fn bad_value(
    field: &[u8],
    path: &Path,
    line: u64,
    column: &str,
    expected: &'static str,
) -> DataError {
    DataError::BadValue {
        path: path.to_path_buf(),
        line,
        column: column.to_string(),
        value: String::from_utf8_lossy(field).into_owned(),
        expected,
    }
}
