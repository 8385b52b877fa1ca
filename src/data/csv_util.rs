//! Small helpers shared by the text readers (CSV, TSV, Matrix Market), over files (native)
//! or in-memory bytes (everywhere, wasm32 included), and the text writer of the MEX and
//! cells.csv writers.

use std::io::{BufRead, Read};
use std::path::Path;

use super::error::DataError;

/// A CSV reader over a plain or gzip-compressed source (a file or a byte slice).
pub(crate) type CsvReader<'a> = csv::Reader<Box<dyn Read + 'a>>;

/// First two bytes of every gzip stream.
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Wraps `source` in a gzip decoder when it starts with [`GZIP_MAGIC`] (whatever the name
/// says); concatenated gzip members are read as one stream. `name` is the file named in
/// errors.
pub(crate) fn decode<'a, R: BufRead + 'a>(
    mut source: R,
    name: &Path,
) -> Result<Box<dyn BufRead + 'a>, DataError> {
    let is_gzip = source
        .fill_buf()
        .map_err(|e| DataError::Io {
            path: name.to_path_buf(),
            source: e,
        })?
        .starts_with(&GZIP_MAGIC);
    Ok(if is_gzip {
        Box::new(std::io::BufReader::new(
            flate2::bufread::MultiGzDecoder::new(source),
        ))
    } else {
        Box::new(source)
    })
}

/// Whether `bytes` is a gzip stream ([`GZIP_MAGIC`]).
pub(crate) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Opens `path` for buffered reading, decompressing it when it starts with the gzip magic.
#[cfg(feature = "native-io")]
pub(crate) fn open_text(path: &Path) -> Result<Box<dyn BufRead>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    decode(std::io::BufReader::new(file), path)
}

/// A CSV reader with a header row over a decoded text source.
pub(crate) fn csv_reader<'a>(text: Box<dyn BufRead + 'a>) -> CsvReader<'a> {
    let raw: Box<dyn Read + 'a> = Box::new(text);
    csv::ReaderBuilder::new().has_headers(true).from_reader(raw)
}

/// Opens a CSV file with a header row, decompressing it when it starts with the gzip magic
/// bytes (whatever its name), and mapping open failures to [`DataError`].
#[cfg(feature = "native-io")]
pub(crate) fn open(path: &Path) -> Result<CsvReader<'static>, DataError> {
    Ok(csv_reader(open_text(path)?))
}

/// A CSV reader over in-memory bytes (gzip detected by its magic); `name` is used in errors.
pub(crate) fn from_bytes<'a>(bytes: &'a [u8], name: &Path) -> Result<CsvReader<'a>, DataError> {
    Ok(csv_reader(decode(bytes, name)?))
}

/// Reads the header row as strings.
pub(crate) fn header(reader: &mut CsvReader<'_>, path: &Path) -> Result<Vec<String>, DataError> {
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

/// Creates `path`, gzip-compressing what is written when `gzip`.
#[cfg(feature = "native-io")]
pub(crate) fn create_text(path: &Path, gzip: bool) -> Result<Box<dyn std::io::Write>, DataError> {
    let file = std::fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    let buf = std::io::BufWriter::new(file);
    Ok(if gzip {
        Box::new(flate2::write::GzEncoder::new(
            buf,
            flate2::Compression::fast(),
        ))
    } else {
        Box::new(buf)
    })
}
