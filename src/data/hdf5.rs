//! Typed access to HDF5 files through the pure-Rust `hdf5-pure` crate (no libhdf5), shared
//! by the 10x `cell_feature_matrix.h5` reader and the AnnData `.h5ad` reader/writer.
//!
//! Every failure becomes a [`DataError::Hdf5`] that names the file, the object path inside it
//! and the offending value. Objects are looked up by listing their parent group first, so a
//! missing dataset is reported as missing rather than as a decoder error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hdf5_pure::{AttrValue, Dataset, Datatype, DatatypeByteOrder, File, Group, StringPadding};

use super::error::DataError;

/// What an object path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Group,
    Dataset,
}

/// An open HDF5 file that names itself in errors.
pub(crate) struct H5 {
    pub(crate) path: PathBuf,
    file: File,
}

/// One field of a compound dataset (legacy AnnData `obs`/`var`/`obsm` tables), decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Field {
    /// Integer field (also the codes of a legacy categorical column).
    Int(Vec<i64>),
    /// Floating-point field.
    Float(Vec<f64>),
    /// Fixed-length string field.
    Text(Vec<String>),
    /// HDF5 enumeration `{FALSE, TRUE}` (numpy bool as written by h5py).
    Bool(Vec<bool>),
    /// Numeric array field of `width` values per record, row-major `[records, width]`.
    Array { width: usize, values: Vec<f64> },
}

fn join(parent: &str, name: &str) -> String {
    let parent = parent.trim_end_matches('/');
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// Splits `a/b/c` into (`a/b`, `c`); the root's children have parent ``.
fn split(object: &str) -> (&str, &str) {
    let object = object.trim_matches('/');
    match object.rfind('/') {
        Some(i) => (&object[..i], &object[i + 1..]),
        None => ("", object),
    }
}

impl H5 {
    /// Opens `path`; fails with [`DataError::Io`] when it does not exist and
    /// [`DataError::Hdf5`] (object `/`) when it is not a readable HDF5 file.
    pub(crate) fn open(path: &Path) -> Result<Self, DataError> {
        Self::open_with(path, false)
    }

    /// [`open`](Self::open) without buffering the file: metadata and dataset chunks are read
    /// from disk on demand, so memory follows what is read (for windowed reads of large
    /// matrices, see [`read_f32_rows`](Self::read_f32_rows)).
    pub(crate) fn open_streaming(path: &Path) -> Result<Self, DataError> {
        Self::open_with(path, true)
    }

    fn open_with(path: &Path, streaming: bool) -> Result<Self, DataError> {
        let len = std::fs::metadata(path)
            .map_err(|e| DataError::io(path, e))?
            .len();
        let file = if streaming { File::open_streaming(path) } else { File::open(path) };
        let file = file.map_err(|e| DataError::Hdf5 {
            path: path.to_path_buf(),
            object: "/".into(),
            message: format!("not a readable HDF5 file ({e}); the file may be truncated"),
        })?;
        // A cut-off file can still parse when the lost tail holds nothing read first.
        let eof = file.superblock().eof_address;
        if len < eof {
            return Err(DataError::Hdf5 {
                path: path.to_path_buf(),
                object: "/".into(),
                message: format!(
                    "the file is {len} bytes but its superblock says it ends at byte {eof}: \
                     it is truncated"
                ),
            });
        }
        Ok(H5 {
            path: path.to_path_buf(),
            file,
        })
    }

    /// A [`DataError::Hdf5`] about `object` in this file.
    pub(crate) fn err(&self, object: &str, message: impl Into<String>) -> DataError {
        DataError::Hdf5 {
            path: self.path.clone(),
            object: format!("/{}", object.trim_matches('/')),
            message: message.into(),
        }
    }

    fn group_handle(&self, object: &str) -> Result<Group, DataError> {
        let object = object.trim_matches('/');
        if object.is_empty() {
            return Ok(self.file.root());
        }
        self.file
            .group(object)
            .map_err(|e| self.err(object, format!("cannot open group ({e})")))
    }

    /// What `object` is, or `None` when its parent group does not list it.
    pub(crate) fn kind(&self, object: &str) -> Result<Option<Kind>, DataError> {
        let (parent, name) = split(object);
        if name.is_empty() {
            return Ok(Some(Kind::Group));
        }
        if !parent.is_empty() && self.kind(parent)? != Some(Kind::Group) {
            return Ok(None);
        }
        let group = self.group_handle(parent)?;
        let groups = group
            .groups()
            .map_err(|e| self.err(parent, format!("cannot list subgroups ({e})")))?;
        if groups.iter().any(|g| g == name) {
            return Ok(Some(Kind::Group));
        }
        let datasets = group
            .datasets()
            .map_err(|e| self.err(parent, format!("cannot list datasets ({e})")))?;
        Ok(datasets.iter().any(|d| d == name).then_some(Kind::Dataset))
    }

    /// Names of the subgroups and datasets of group `object`.
    pub(crate) fn members(&self, object: &str) -> Result<Vec<(String, Kind)>, DataError> {
        let group = self.group(object)?;
        let mut out: Vec<(String, Kind)> = group
            .groups()
            .map_err(|e| self.err(object, format!("cannot list subgroups ({e})")))?
            .into_iter()
            .map(|g| (g, Kind::Group))
            .collect();
        out.extend(
            group
                .datasets()
                .map_err(|e| self.err(object, format!("cannot list datasets ({e})")))?
                .into_iter()
                .map(|d| (d, Kind::Dataset)),
        );
        Ok(out)
    }

    /// Opens group `object`; `expected` says what the layout needs it for.
    pub(crate) fn group(&self, object: &str) -> Result<Group, DataError> {
        match self.kind(object)? {
            Some(Kind::Group) => self.group_handle(object),
            Some(Kind::Dataset) => Err(self.err(object, "is a dataset, expected a group")),
            None => Err(self.err(object, "group is missing")),
        }
    }

    /// Opens dataset `object`.
    pub(crate) fn dataset(&self, object: &str) -> Result<Dataset, DataError> {
        match self.kind(object)? {
            Some(Kind::Dataset) => self
                .file
                .dataset(object.trim_matches('/'))
                .map_err(|e| self.err(object, format!("cannot open dataset ({e})"))),
            Some(Kind::Group) => Err(self.err(object, "is a group, expected a dataset")),
            None => Err(self.err(object, "dataset is missing")),
        }
    }

    /// The dimensions of dataset `object`.
    pub(crate) fn shape(&self, object: &str) -> Result<Vec<usize>, DataError> {
        let ds = self.dataset(object)?;
        let dims = ds
            .shape()
            .map_err(|e| self.err(object, format!("cannot read the dataspace ({e})")))?;
        dims.iter()
            .map(|&d| {
                usize::try_from(d)
                    .map_err(|_| self.err(object, format!("dimension {d} does not fit in memory")))
            })
            .collect()
    }

    fn read_with<T>(
        &self,
        object: &str,
        what: &str,
        read: impl FnOnce(&Dataset) -> Result<Vec<T>, hdf5_pure::Error>,
    ) -> Result<Vec<T>, DataError> {
        let ds = self.dataset(object)?;
        let dtype = ds
            .dtype()
            .map(|d| d.to_string())
            .unwrap_or_else(|_| "an unreadable datatype".into());
        read(&ds).map_err(|e| {
            self.err(
                object,
                format!("cannot read as {what} (stored as {dtype}): {e}"),
            )
        })
    }

    /// All values of numeric dataset `object` as `f32` (integers and `f64` are converted).
    pub(crate) fn read_f32(&self, object: &str) -> Result<Vec<f32>, DataError> {
        self.read_with(object, "numbers", Dataset::read_f32)
    }

    /// All values of numeric dataset `object` as `f64`.
    pub(crate) fn read_f64(&self, object: &str) -> Result<Vec<f64>, DataError> {
        self.read_with(object, "numbers", Dataset::read_f64)
    }

    /// All values of integer dataset `object` as `i64`.
    pub(crate) fn read_i64(&self, object: &str) -> Result<Vec<i64>, DataError> {
        self.read_with(object, "integers", Dataset::read_i64)
    }

    /// Values `start..start + len` of 1-D numeric dataset `object` as `f32` (only the chunks
    /// that window overlaps are read).
    pub(crate) fn read_f32_rows(&self, object: &str, start: usize, len: usize) -> Result<Vec<f32>, DataError> {
        self.read_with(object, "numbers", |d| d.read_f32_rows(start as u64, len as u64))
    }

    /// Values `start..start + len` of 1-D integer dataset `object` as `i64`.
    pub(crate) fn read_i64_rows(&self, object: &str, start: usize, len: usize) -> Result<Vec<i64>, DataError> {
        self.read_with(object, "integers", |d| d.read_i64_rows(start as u64, len as u64))
    }

    /// All values of a fixed- or variable-length string dataset.
    pub(crate) fn read_strings(&self, object: &str) -> Result<Vec<String>, DataError> {
        let mut out = self.read_with(object, "strings", Dataset::read_string)?;
        // Fixed-length strings come back without their null padding; strip stray NULs.
        for s in &mut out {
            if s.contains('\0') {
                *s = s.trim_end_matches('\0').to_string();
            }
        }
        Ok(out)
    }

    /// The simplified datatype of dataset `object`.
    pub(crate) fn dtype(&self, object: &str) -> Result<hdf5_pure::DType, DataError> {
        self.dataset(object)?
            .dtype()
            .map_err(|e| self.err(object, format!("cannot read the datatype ({e})")))
    }

    /// Attributes of group or dataset `object` (empty map when it has none).
    pub(crate) fn attrs(&self, object: &str) -> Result<HashMap<String, AttrValue>, DataError> {
        let attrs = match self.kind(object)? {
            Some(Kind::Group) => self.group_handle(object)?.attrs(),
            Some(Kind::Dataset) => self.dataset(object)?.attrs(),
            None => return Err(self.err(object, "object is missing")),
        };
        attrs.map_err(|e| self.err(object, format!("cannot read attributes ({e})")))
    }

    /// String attribute `key` of `object`, `None` when absent; an error when not a string.
    pub(crate) fn attr_string(&self, object: &str, key: &str) -> Result<Option<String>, DataError> {
        match self.attrs(object)?.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.trim_end_matches('\0').to_string()))
                .ok_or_else(|| {
                    self.err(
                        &format!("{object}@{key}"),
                        format!("attribute is {v:?}, expected a string"),
                    )
                }),
        }
    }

    /// Decodes every field of compound dataset `object` (pre-0.7 AnnData dataframes).
    pub(crate) fn read_compound(&self, object: &str) -> Result<Vec<(String, Field)>, DataError> {
        let ds = self.dataset(object)?;
        let dt = ds
            .datatype()
            .map_err(|e| self.err(object, format!("cannot read the datatype ({e})")))?;
        let Datatype::Compound { size, members } = &dt else {
            return Err(self.err(object, "is not a compound dataset"));
        };
        let record = *size as usize;
        let raw = ds
            .read_raw()
            .map_err(|e| self.err(object, format!("cannot read the records ({e})")))?;
        if record == 0 || raw.len() % record != 0 {
            return Err(self.err(
                object,
                format!(
                    "{} bytes is not a whole number of {record}-byte records",
                    raw.len()
                ),
            ));
        }
        let records: Vec<&[u8]> = raw.chunks_exact(record).collect();
        let mut out = Vec::with_capacity(members.len());
        for m in members {
            let at = |what: String| self.err(&format!("{object}.{}", m.name), what);
            let offset = usize::try_from(m.byte_offset).map_err(|_| at("bad offset".into()))?;
            let width = m.datatype.type_size() as usize;
            let end = offset
                .checked_add(width)
                .filter(|&e| e <= record)
                .ok_or_else(|| {
                    at(format!(
                        "field bytes {offset}..{offset}+{width} exceed the {record}-byte record"
                    ))
                })?;
            let bytes = records.iter().map(|r| &r[offset..end]);
            let field = match &m.datatype {
                Datatype::String { padding, .. } => Field::Text(
                    bytes
                        .map(|b| decode_fixed_string(b, *padding == StringPadding::SpacePad))
                        .collect(),
                ),
                Datatype::Enumeration {
                    base_type, members, ..
                } => {
                    let value_of = |name: &str| {
                        members
                            .iter()
                            .find(|e| e.name.eq_ignore_ascii_case(name))
                            .map(|e| e.value.clone())
                    };
                    match (value_of("FALSE"), value_of("TRUE"), members.len()) {
                        (Some(_), Some(t), 2) => Field::Bool(bytes.map(|b| b == t).collect()),
                        _ => Field::Int(
                            bytes
                                .map(|b| decode_number(b, base_type).map(|v| v as i64))
                                .collect::<Option<_>>()
                                .ok_or_else(|| at("unsupported enumeration base type".into()))?,
                        ),
                    }
                }
                Datatype::FixedPoint { .. } => Field::Int(
                    bytes
                        .map(|b| decode_integer(b, &m.datatype))
                        .collect::<Option<_>>()
                        .ok_or_else(|| at(format!("unsupported integer type {width} bytes")))?,
                ),
                Datatype::FloatingPoint { .. } => Field::Float(
                    bytes
                        .map(|b| decode_number(b, &m.datatype))
                        .collect::<Option<_>>()
                        .ok_or_else(|| at(format!("unsupported float type {width} bytes")))?,
                ),
                Datatype::Array {
                    base_type,
                    dimensions,
                } => {
                    let n: usize = dimensions.iter().map(|&d| d as usize).product();
                    let step = base_type.type_size() as usize;
                    if n.checked_mul(step) != Some(width) || step == 0 {
                        return Err(at(format!("array field of {n} × {step} bytes ≠ {width}")));
                    }
                    let mut values = Vec::with_capacity(records.len().saturating_mul(n));
                    for b in bytes {
                        for e in b.chunks_exact(step) {
                            values.push(
                                decode_number(e, base_type).ok_or_else(|| {
                                    at("unsupported array element type".to_string())
                                })?,
                            );
                        }
                    }
                    Field::Array { width: n, values }
                }
                _ => {
                    return Err(at(format!(
                        "unsupported field type ({width}-byte variable-length, reference or \
                         opaque); expected numbers, booleans or fixed-length strings"
                    )))
                }
            };
            out.push((m.name.clone(), field));
        }
        Ok(out)
    }
}

/// A fixed-length string: up to the first NUL (and trailing spaces when space-padded).
fn decode_fixed_string(bytes: &[u8], space_pad: bool) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let s = String::from_utf8_lossy(&bytes[..end]);
    if space_pad {
        s.trim_end_matches(' ').to_string()
    } else {
        s.into_owned()
    }
}

fn ordered<const N: usize>(bytes: &[u8], order: &DatatypeByteOrder) -> Option<[u8; N]> {
    let mut a: [u8; N] = bytes.try_into().ok()?;
    if matches!(order, DatatypeByteOrder::BigEndian) {
        a.reverse();
    }
    Some(a)
}

/// An integer of 1, 2, 4 or 8 bytes, signed or not.
fn decode_integer(bytes: &[u8], dt: &Datatype) -> Option<i64> {
    let Datatype::FixedPoint {
        byte_order, layout, ..
    } = dt
    else {
        return None;
    };
    let s = layout.signed;
    Some(match bytes.len() {
        1 if s => i64::from(bytes[0] as i8),
        1 => i64::from(bytes[0]),
        2 if s => i64::from(i16::from_le_bytes(ordered(bytes, byte_order)?)),
        2 => i64::from(u16::from_le_bytes(ordered(bytes, byte_order)?)),
        4 if s => i64::from(i32::from_le_bytes(ordered(bytes, byte_order)?)),
        4 => i64::from(u32::from_le_bytes(ordered(bytes, byte_order)?)),
        8 if s => i64::from_le_bytes(ordered(bytes, byte_order)?),
        8 => i64::try_from(u64::from_le_bytes(ordered(bytes, byte_order)?)).ok()?,
        _ => return None,
    })
}

/// A number of any integer or float type, as `f64`.
fn decode_number(bytes: &[u8], dt: &Datatype) -> Option<f64> {
    match dt {
        Datatype::FloatingPoint { byte_order, .. } => match bytes.len() {
            4 => Some(f64::from(f32::from_le_bytes(ordered(bytes, byte_order)?))),
            8 => Some(f64::from_le_bytes(ordered(bytes, byte_order)?)),
            _ => None,
        },
        Datatype::FixedPoint { .. } => decode_integer(bytes, dt).map(|v| v as f64),
        _ => None,
    }
}

/// `parent/name` for object paths.
pub(crate) fn child(parent: &str, name: &str) -> String {
    join(parent, name)
}
