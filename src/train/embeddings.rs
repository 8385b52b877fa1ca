//! Precomputed per-cell embeddings `[cells, dim]` (e.g. a foundation model's gene embedding, or
//! UNI2's 1536-d image embedding) from `.npy` or `.safetensors` files.
//!
//! - `.npy`: format versions 1–3, C order, 2-D, little-endian `f4` or `f8` (`f8` is narrowed
//!   to `f32`).
//! - `.safetensors`: the tensor named `tensor` (or the file's only tensor), 2-D, `F32`, `F64`,
//!   `F16` or `BF16` (converted to `f32`).
//!
//! Row `i` belongs to cell `i` of the cell table the embedding was computed for (the caller
//! checks the row count against its cells).

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
    let name = match tensor {
        Some(n) => n.to_string(),
        None if names.len() == 1 => names[0].to_string(),
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
