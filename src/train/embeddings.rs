//! Precomputed per-cell embeddings `[cells, dim]` (e.g. a foundation model's gene embedding, or
//! UNI2's 1536-d image embedding) from `.npy` or `.safetensors` files.
//!
//! - `.npy`: format versions 1–3, C order, 2-D, little-endian `f4` or `f8` (`f8` is narrowed
//!   to `f32`).
//! - `.safetensors`: the tensor named `tensor` (or the file's only tensor), 2-D, `F32`, `F64`,
//!   `F16` or `BF16` (converted to `f32`).
//!
//! Rows are matched to cells in one of two ways ([`read_embeddings_for_cells`]):
//!
//! - **by cell id** (preferred): the rows' cell ids come from an ids file (`--*-embedding-ids`:
//!   `.npy` 1-D strings or integers, `.csv`/`.tsv` with a `cell_id` column, or plain text with
//!   one id per line), or from the safetensors file itself (`__metadata__["cell_ids"]`, a JSON
//!   array of strings, or an integer tensor `cell_ids` `[rows]`). Rows may be in any order and
//!   the file may hold extra cells; every cell of the table needs a row, else
//!   [`TrainError::UnmatchedEmbeddingIds`] names the file, the count and the first few ids.
//! - **by position** (no ids anywhere): row `i` is cell `i` of the cell table, and the row
//!   count must equal the cell count.

use std::path::Path;

use super::TrainError;

/// A dense `[rows, dim]` matrix of embeddings, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// Rows (cells).
    pub rows: usize,
    /// Embedding width.
    pub dim: usize,
    /// Values `[rows, dim]`, row-major.
    pub values: Vec<f32>,
}

fn bad(path: &Path, problem: impl Into<String>) -> TrainError {
    TrainError::EmbeddingFile {
        path: path.display().to_string(),
        problem: problem.into(),
    }
}

/// Read an embedding matrix from a `.npy` or `.safetensors` file (chosen by extension).
/// `tensor` names the tensor in a safetensors file with several.
pub fn read_embeddings(path: &Path, tensor: Option<&str>) -> Result<Embeddings, TrainError> {
    let bytes = std::fs::read(path).map_err(|source| TrainError::Io {
        path: path.display().to_string(),
        source,
    })?;
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("npy") => parse_npy(path, &bytes),
        Some("safetensors") => parse_safetensors(path, &bytes, tensor),
        other => Err(bad(
            path,
            format!(
                "unknown extension {:?}; save the embeddings as .npy (numpy.save) or .safetensors",
                other.unwrap_or("")
            ),
        )),
    }
}

/// Parse `.npy` bytes (`path` is only used in error messages).
pub fn parse_npy(path: &Path, bytes: &[u8]) -> Result<Embeddings, TrainError> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(
            path,
            "not a .npy file (missing the \\x93NUMPY magic); write it with numpy.save",
        ));
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => {
            return Err(bad(
                path,
                format!("unsupported .npy format version {major}; save with numpy ≥ 1.9"),
            ))
        }
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| {
            bad(
                path,
                format!("header of {header_len} bytes is truncated or not text"),
            )
        })?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\'').and_then(|r| r.split('\'').next()))
        .ok_or_else(|| bad(path, format!("header has no 'descr': {header}")))?;
    let fortran = field("fortran_order")
        .map(|r| r.starts_with("True"))
        .unwrap_or(false);
    if fortran {
        return Err(bad(
            path,
            "array is Fortran-ordered; save np.ascontiguousarray(x) instead",
        ));
    }
    let shape_text = field("shape")
        .and_then(|r| r.strip_prefix('(').and_then(|r| r.split(')').next()))
        .ok_or_else(|| bad(path, format!("header has no 'shape': {header}")))?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            bad(
                path,
                format!("shape ({shape_text}) is not a tuple of integers"),
            )
        })?;
    let [rows, dim] = shape[..] else {
        return Err(bad(
            path,
            format!("shape ({shape_text}) is not 2-D; expected [cells, dim]"),
        ));
    };
    let data = &bytes[start + header_len..];
    let values = decode(path, descr, data, rows * dim)?;
    Ok(Embeddings { rows, dim, values })
}

fn decode(path: &Path, descr: &str, data: &[u8], n: usize) -> Result<Vec<f32>, TrainError> {
    let width = match descr {
        "<f4" | "f4" => 4,
        "<f8" | "f8" => 8,
        "<f2" | "f2" => 2,
        other => {
            return Err(bad(
                path,
                format!(
                    "dtype {other:?} is not supported; convert with x.astype('<f4') before saving"
                ),
            ))
        }
    };
    if data.len() != n * width {
        return Err(bad(
            path,
            format!(
                "data holds {} bytes, the shape needs {} ({n} values of {width} bytes)",
                data.len(),
                n * width
            ),
        ));
    }
    Ok(match width {
        4 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        8 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        _ => data
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
    })
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f32;
    sign * match exp {
        0 => frac * 2f32.powi(-24),
        31 if frac == 0.0 => f32::INFINITY,
        31 => f32::NAN,
        e => (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

/// Parse `.safetensors` bytes (`path` is only used in error messages).
pub fn parse_safetensors(
    path: &Path,
    bytes: &[u8],
    tensor: Option<&str>,
) -> Result<Embeddings, TrainError> {
    use safetensors::{Dtype, SafeTensors};
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| bad(path, format!("not a readable safetensors file ({e})")))?;
    let names = st.names();
    // A `cell_ids` tensor holds the rows' ids, not values.
    let value_names: Vec<&str> = names.iter().map(|n| &n[..]).filter(|n| *n != IDS_TENSOR).collect();
    let name = match tensor {
        Some(n) => n.to_string(),
        None if value_names.len() == 1 => value_names[0].to_string(),
        None => {
            return Err(bad(
                path,
                format!(
                    "holds {} tensors ({}); name the one to use",
                    names.len(),
                    names.join(", ")
                ),
            ))
        }
    };
    let view = st.tensor(&name).map_err(|_| {
        bad(
            path,
            format!("has no tensor {name:?} (it holds {})", names.join(", ")),
        )
    })?;
    let [rows, dim] = view.shape()[..] else {
        return Err(bad(
            path,
            format!(
                "tensor {name:?} has shape {:?}; expected [cells, dim]",
                view.shape()
            ),
        ));
    };
    let data = view.data();
    let values = match view.dtype() {
        Dtype::F32 => decode(path, "<f4", data, rows * dim)?,
        Dtype::F64 => decode(path, "<f8", data, rows * dim)?,
        Dtype::F16 => decode(path, "<f2", data, rows * dim)?,
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
            .collect(),
        other => {
            return Err(bad(
                path,
                format!("tensor {name:?} has dtype {other:?}; store it as F32"),
            ))
        }
    };
    Ok(Embeddings { rows, dim, values })
}

/// Name of the safetensors tensor (and `__metadata__` key) holding the rows' cell ids.
pub const IDS_TENSOR: &str = "cell_ids";

fn io_error(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Cell ids from an ids file, in row order: `.npy` (1-D; unicode `<U`, bytes `|S` or
/// integers), `.csv` / `.tsv` (the `cell_id` column of a header row; a single column of any
/// name otherwise), else plain text with one id per line (surrounding whitespace trimmed).
pub fn read_row_ids(path: &Path) -> Result<Vec<String>, TrainError> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("npy") => npy_ids(path, &bytes),
        Some(e @ ("csv" | "tsv")) => {
            let delimiter = if e == "tsv" { b'\t' } else { b',' };
            let mut r = csv::ReaderBuilder::new().delimiter(delimiter).from_reader(&bytes[..]);
            let header = r.headers().map_err(|e| bad(path, format!("unreadable header ({e})")))?.clone();
            let col = match header.iter().position(|h| h.trim() == "cell_id") {
                Some(c) => c,
                None if header.len() == 1 => 0,
                None => {
                    return Err(bad(
                        path,
                        format!(
                            "has no `cell_id` column (columns: {}); name the id column `cell_id`",
                            header.iter().collect::<Vec<_>>().join(", ")
                        ),
                    ))
                }
            };
            let mut ids = Vec::new();
            for (line, rec) in r.records().enumerate() {
                let rec = rec.map_err(|e| bad(path, format!("row {}: {e}", line + 2)))?;
                ids.push(rec.get(col).unwrap_or("").trim().to_string());
            }
            Ok(ids)
        }
        _ => {
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| bad(path, "is not UTF-8 text; write one cell id per line (or a .npy / .csv)"))?;
            Ok(text.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect())
        }
    }
}

fn npy_ids(path: &Path, bytes: &[u8]) -> Result<Vec<String>, TrainError> {
    let open = || npyz::NpyFile::new(bytes).map_err(|e| bad(path, format!("not a readable .npy file ({e})")));
    let npy = open()?;
    if npy.shape().len() != 1 {
        return Err(bad(path, format!("ids have shape {:?}; expected 1-D [rows]", npy.shape())));
    }
    let dtype = npy.dtype().descr();
    if let Ok(v) = open()?.into_vec::<String>() {
        return Ok(v);
    }
    if let Ok(v) = open()?.into_vec::<Vec<u8>>() {
        return v
            .into_iter()
            .map(|b| {
                let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                String::from_utf8(b[..end].to_vec()).map_err(|_| bad(path, "a byte-string id is not UTF-8"))
            })
            .collect();
    }
    macro_rules! ints {
        ($($t:ty),*) => {$(
            if let Ok(v) = open()?.into_vec::<$t>() {
                return Ok(v.into_iter().map(|x| x.to_string()).collect());
            }
        )*};
    }
    ints!(i64, i32, i16, i8, u64, u32, u16, u8);
    Err(bad(
        path,
        format!("ids have dtype {dtype}; save them as strings (np.array(ids, dtype=str)) or integers"),
    ))
}

/// The rows' cell ids stored in a safetensors file, if any: `__metadata__["cell_ids"]` (JSON
/// array of strings) or an integer tensor `cell_ids` `[rows]`.
pub fn safetensors_row_ids(path: &Path, bytes: &[u8]) -> Result<Option<Vec<String>>, TrainError> {
    use safetensors::{Dtype, SafeTensors};
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(path, format!("not a readable safetensors file ({e})")))?;
    if let Some(text) = meta.metadata().as_ref().and_then(|m| m.get(IDS_TENSOR)) {
        let ids: Vec<String> = serde_json::from_str(text).map_err(|e| {
            bad(path, format!("__metadata__[\"{IDS_TENSOR}\"] is not a JSON array of strings ({e})"))
        })?;
        return Ok(Some(ids));
    }
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| bad(path, format!("not a readable safetensors file ({e})")))?;
    let Ok(view) = st.tensor(IDS_TENSOR) else {
        return Ok(None);
    };
    if view.shape().len() != 1 {
        return Err(bad(path, format!("tensor `{IDS_TENSOR}` has shape {:?}; expected [rows]", view.shape())));
    }
    let d = view.data();
    let ids = match view.dtype() {
        Dtype::I64 => d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])).to_string()).collect(),
        Dtype::I32 => d.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap_or([0; 4])).to_string()).collect(),
        Dtype::U32 => d.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap_or([0; 4])).to_string()).collect(),
        Dtype::U64 => d.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])).to_string()).collect(),
        other => {
            return Err(bad(
                path,
                format!(
                    "tensor `{IDS_TENSOR}` has dtype {other:?}; store integer ids as I64, or string ids as \
                     __metadata__[\"{IDS_TENSOR}\"] (a JSON array)"
                ),
            ))
        }
    };
    Ok(Some(ids))
}

/// Read the embedding in `path` (tensor `tensor` of a safetensors file with several) and
/// return one row per cell of `cell_ids`, in that order. Rows are matched by cell id when
/// `ids` names an ids file ([`read_row_ids`]) or the safetensors file carries ids
/// ([`safetensors_row_ids`]); otherwise by position (row count must equal the cell count).
/// See the module docs for the formats.
///
/// Errors: [`TrainError::UnmatchedEmbeddingIds`] (cells without a row: count and the first
/// five ids), [`TrainError::EmbeddingFile`] (ids count ≠ rows, a duplicated id, a positional
/// file with another row count, unreadable files).
pub fn read_embeddings_for_cells(
    path: &Path,
    tensor: Option<&str>,
    ids: Option<&Path>,
    cell_ids: &[String],
) -> Result<Embeddings, TrainError> {
    let e = read_embeddings(path, tensor)?;
    let is_st = path.extension().and_then(|x| x.to_str()).is_some_and(|x| x.eq_ignore_ascii_case("safetensors"));
    let (row_ids, ids_from) = match ids {
        Some(p) => (Some(read_row_ids(p)?), p.display().to_string()),
        None if is_st => {
            let bytes = std::fs::read(path).map_err(|err| io_error(path, err))?;
            (safetensors_row_ids(path, &bytes)?, format!("{}'s `{IDS_TENSOR}`", path.display()))
        }
        None => (None, String::new()),
    };
    let n = cell_ids.len();
    let Some(row_ids) = row_ids else {
        if e.rows != n {
            return Err(bad(
                path,
                format!(
                    "has {} rows but the cell table has {n} cells and the rows carry no cell ids; pass an ids \
                     file (one cell id per row) or write one row per cell in the table's order",
                    e.rows
                ),
            ));
        }
        return Ok(e);
    };
    if row_ids.len() != e.rows {
        return Err(bad(
            path,
            format!("has {} rows but {ids_from} lists {} ids; give one id per row", e.rows, row_ids.len()),
        ));
    }
    let mut row_of = std::collections::HashMap::with_capacity(row_ids.len());
    for (r, id) in row_ids.iter().enumerate() {
        if let Some(first) = row_of.insert(id.as_str(), r) {
            return Err(bad(
                path,
                format!("cell id {id:?} names rows {first} and {r} (ids from {ids_from}); each cell needs exactly one row"),
            ));
        }
    }
    let mut missing = Vec::new();
    let mut values = Vec::with_capacity(n * e.dim);
    for id in cell_ids {
        match row_of.get(id.as_str()) {
            Some(&r) => values.extend_from_slice(&e.values[r * e.dim..(r + 1) * e.dim]),
            None => missing.push(id.as_str()),
        }
    }
    if !missing.is_empty() {
        let mut first = missing.iter().take(5).map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
        if missing.len() > 5 {
            first += ", …";
        }
        return Err(TrainError::UnmatchedEmbeddingIds {
            path: path.display().to_string(),
            ids_from,
            missing: missing.len(),
            n_cells: n,
            first,
        });
    }
    Ok(Embeddings { rows: n, dim: e.dim, values })
}

/// `[rows, dim]` f32 values as the bytes of a version-1 `.npy` file (little-endian `<f4`).
pub fn npy_f32_bytes(values: &[f32], rows: usize, dim: usize) -> Vec<u8> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + values.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Write `[rows, dim]` f32 values as a version-1 `.npy` file (for tests and exports).
pub fn write_npy(path: &Path, values: &[f32], rows: usize, dim: usize) -> Result<(), TrainError> {
    std::fs::write(path, npy_f32_bytes(values, rows, dim)).map_err(|source| TrainError::Io {
        path: path.display().to_string(),
        source,
    })
}
