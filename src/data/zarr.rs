//! A minimal Zarr v2 reader for the stores Xenium Onboard Analysis writes
//! (`cell_feature_matrix.zarr.zip`, `cells.zarr.zip`): zip archives (or folders) of JSON
//! metadata (`.zgroup`, `.zarray`, `.zattrs`) and compressed chunks.
//!
//! Why not the `zarrs` crate: its Blosc codec links the C library (`blosc-src`), which does
//! not build for `wasm32-unknown-unknown`, and the reader is needed in the browser on bytes a
//! user drops. What Xenium and Python's `zarr` write is small: numeric arrays of one or two
//! dimensions, C order, chunked, compressed with Blosc (LZ4 or zlib inside, byte shuffle) or
//! zlib / gzip; so this module reads exactly that, with `lz4_flex` and `flate2` (pure Rust,
//! already dependencies) doing the decompression. Zstd (inside Blosc or alone) is read by the
//! native build only. Anything else (Blosc's own `blosclz`, bit-shuffle, Fortran order,
//! string arrays, three or more dimensions) fails with [`DataError::ZarrLayout`] naming the
//! array, the field and the value.
//!
//! Zip archives are read from their central directory (zip64 included); entries may be stored
//! or deflated. Native readers seek to the entries they need in the file; the browser reads
//! from the bytes in memory.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::error::DataError;

/// Where a zip archive's bytes come from.
enum ZipSource<'a> {
    Bytes(&'a [u8]),
    #[cfg(feature = "native-io")]
    File(std::sync::Mutex<std::fs::File>, u64),
}

impl ZipSource<'_> {
    fn len(&self) -> u64 {
        match self {
            ZipSource::Bytes(b) => b.len() as u64,
            #[cfg(feature = "native-io")]
            ZipSource::File(_, len) => *len,
        }
    }

    fn read_at(&self, offset: u64, len: usize) -> Option<Cow<'_, [u8]>> {
        let end = offset.checked_add(len as u64)?;
        if end > self.len() {
            return None;
        }
        match self {
            ZipSource::Bytes(b) => Some(Cow::Borrowed(&b[offset as usize..end as usize])),
            #[cfg(feature = "native-io")]
            ZipSource::File(f, _) => {
                use std::io::{Seek, SeekFrom};
                let mut f = f.lock().ok()?;
                f.seek(SeekFrom::Start(offset)).ok()?;
                let mut buf = vec![0u8; len];
                f.read_exact(&mut buf).ok()?;
                Some(Cow::Owned(buf))
            }
        }
    }
}

/// One entry of a zip archive's central directory.
#[derive(Debug, Clone, Copy)]
struct ZipEntry {
    method: u16,
    compressed: u64,
    size: u64,
    local_header: u64,
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]))
}

/// A zip archive's entries, read lazily.
struct ZipArchive<'a> {
    source: ZipSource<'a>,
    entries: HashMap<String, ZipEntry>,
}

impl<'a> ZipArchive<'a> {
    fn open(source: ZipSource<'a>, path: &Path) -> Result<Self, DataError> {
        let bad = |message: String| DataError::Zip { path: path.to_path_buf(), message };
        let len = source.len();
        // End of central directory: 22 bytes + a comment of at most 65535 bytes.
        let tail_len = len.min(22 + 65535) as usize;
        let tail = source
            .read_at(len - tail_len as u64, tail_len)
            .ok_or_else(|| bad(format!("cannot read the last {tail_len} bytes")))?;
        let eocd = (0..tail.len().saturating_sub(21))
            .rev()
            .find(|&i| u32_at(&tail, i) == 0x0605_4b50)
            .ok_or_else(|| {
                bad(format!(
                    "no end-of-central-directory record in its {len} bytes: not a zip file (a \
                     .zarr.zip must be a zip archive of the zarr store)"
                ))
            })?;
        let mut n_entries = u64::from(u16_at(&tail, eocd + 10));
        let mut cd_size = u64::from(u32_at(&tail, eocd + 12));
        let mut cd_offset = u64::from(u32_at(&tail, eocd + 16));
        if n_entries == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
            // zip64: the locator sits just before the end record.
            let eocd_abs = len - tail_len as u64 + eocd as u64;
            let loc = eocd_abs
                .checked_sub(20)
                .and_then(|o| source.read_at(o, 20))
                .filter(|l| u32_at(l, 0) == 0x0706_4b50)
                .ok_or_else(|| bad("zip64 end-of-central-directory locator missing".into()))?;
            let rec = source
                .read_at(u64_at(&loc, 8), 56)
                .filter(|r| u32_at(r, 0) == 0x0606_4b50)
                .ok_or_else(|| bad("zip64 end-of-central-directory record missing".into()))?;
            n_entries = u64_at(&rec, 32);
            cd_size = u64_at(&rec, 40);
            cd_offset = u64_at(&rec, 48);
        }
        let cd = source
            .read_at(cd_offset, cd_size as usize)
            .ok_or_else(|| bad(format!("central directory at {cd_offset} (+{cd_size} bytes) is past the end: truncated")))?;
        let mut entries = HashMap::with_capacity(n_entries as usize);
        let mut i = 0usize;
        for k in 0..n_entries {
            if i + 46 > cd.len() || u32_at(&cd, i) != 0x0201_4b50 {
                return Err(bad(format!("central directory entry {k} is malformed")));
            }
            let method = u16_at(&cd, i + 10);
            let mut compressed = u64::from(u32_at(&cd, i + 20));
            let mut size = u64::from(u32_at(&cd, i + 24));
            let (n, e, c) = (u16_at(&cd, i + 28) as usize, u16_at(&cd, i + 30) as usize, u16_at(&cd, i + 32) as usize);
            let mut local_header = u64::from(u32_at(&cd, i + 42));
            if i + 46 + n + e > cd.len() {
                return Err(bad(format!("central directory entry {k} runs past the directory")));
            }
            let name = String::from_utf8_lossy(&cd[i + 46..i + 46 + n]).into_owned();
            // zip64 extra field: the 8-byte values replace the saturated 4-byte ones, in order.
            let mut x = i + 46 + n;
            while x + 4 <= i + 46 + n + e {
                let (id, sz) = (u16_at(&cd, x), u16_at(&cd, x + 2) as usize);
                if id == 0x0001 {
                    let mut p = x + 4;
                    for field in [&mut size, &mut compressed, &mut local_header] {
                        if *field == 0xFFFF_FFFF && p + 8 <= x + 4 + sz {
                            *field = u64_at(&cd, p);
                            p += 8;
                        }
                    }
                }
                x += 4 + sz;
            }
            entries.insert(name, ZipEntry { method, compressed, size, local_header });
            i += 46 + n + e + c;
        }
        Ok(ZipArchive { source, entries })
    }

    fn read(&self, name: &str, path: &Path) -> Result<Option<Vec<u8>>, DataError> {
        let Some(e) = self.entries.get(name) else { return Ok(None) };
        let bad = |message: String| DataError::Zip { path: path.to_path_buf(), message: format!("entry `{name}`: {message}") };
        let local = self
            .source
            .read_at(e.local_header, 30)
            .filter(|l| u32_at(l, 0) == 0x0403_4b50)
            .ok_or_else(|| bad("local header missing".into()))?;
        let start = e.local_header + 30 + u64::from(u16_at(&local, 26)) + u64::from(u16_at(&local, 28));
        let raw = self
            .source
            .read_at(start, e.compressed as usize)
            .ok_or_else(|| bad(format!("{} compressed bytes run past the end: truncated", e.compressed)))?;
        match e.method {
            0 => Ok(Some(raw.into_owned())),
            8 => {
                let mut out = Vec::with_capacity(e.size as usize);
                flate2::read::DeflateDecoder::new(&raw[..])
                    .read_to_end(&mut out)
                    .map_err(|err| bad(format!("deflate stream is corrupt: {err}")))?;
                Ok(Some(out))
            }
            m => Err(bad(format!("compression method {m} (expected 0 = stored or 8 = deflate)"))),
        }
    }
}

enum Backend<'a> {
    Zip(ZipArchive<'a>, String),
    #[cfg(feature = "native-io")]
    Dir(PathBuf),
}

/// A Zarr v2 store: a zip archive (from bytes or a file) or, natively, a folder.
pub struct ZarrStore<'a> {
    path: PathBuf,
    backend: Backend<'a>,
}

/// Data types of the numeric arrays read (little- or big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    U,
    I,
    F,
    B,
}

/// A Zarr v2 array's metadata (`.zarray`).
#[derive(Debug, Clone, PartialEq)]
pub struct ZarrArray {
    /// Array path inside the store (e.g. `cell_features/indptr`).
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Chunk shape.
    pub chunks: Vec<usize>,
    /// The `dtype` string (e.g. `<u4`).
    pub dtype: String,
    kind: Kind,
    size: usize,
    little: bool,
    compressor: Value,
    fill: f64,
    separator: String,
}

impl<'a> ZarrStore<'a> {
    /// A store over the bytes of a `.zarr.zip` (e.g. a file dropped into a web page); `name`
    /// is the file named in errors. Fails with [`DataError::Zip`] when the bytes are no zip.
    pub fn from_zip_bytes(name: &str, bytes: &'a [u8]) -> Result<Self, DataError> {
        let path = PathBuf::from(name);
        let zip = ZipArchive::open(ZipSource::Bytes(bytes), &path)?;
        Ok(Self::over_zip(path, zip))
    }

    /// Opens a `.zarr.zip` file (only its directory is read now) or a zarr folder.
    #[cfg(feature = "native-io")]
    pub fn open(path: &Path) -> Result<ZarrStore<'static>, DataError> {
        if path.is_dir() {
            return Ok(ZarrStore { path: path.to_path_buf(), backend: Backend::Dir(path.to_path_buf()) });
        }
        let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let len = f.metadata().map_err(|e| DataError::io(path, e))?.len();
        let zip = ZipArchive::open(ZipSource::File(std::sync::Mutex::new(f), len), path)?;
        Ok(ZarrStore::over_zip(path.to_path_buf(), zip))
    }

    fn over_zip(path: PathBuf, zip: ZipArchive<'a>) -> ZarrStore<'a> {
        // Some archives hold the store inside a folder: the root is where the shallowest
        // `.zgroup` is.
        let root = zip
            .entries
            .keys()
            .filter_map(|k| k.strip_suffix(".zgroup"))
            .min_by_key(|p| p.len())
            .unwrap_or("")
            .to_string();
        ZarrStore { path, backend: Backend::Zip(zip, root) }
    }

    /// The store's path (as given).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw bytes of `key` (e.g. `cell_features/.zattrs`), `None` when absent.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, DataError> {
        match &self.backend {
            Backend::Zip(z, root) => z.read(&format!("{root}{key}"), &self.path),
            #[cfg(feature = "native-io")]
            Backend::Dir(d) => {
                let p = d.join(key);
                match std::fs::read(&p) {
                    Ok(b) => Ok(Some(b)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(DataError::io(&p, e)),
                }
            }
        }
    }

    /// Whether `key` exists.
    pub fn contains(&self, key: &str) -> bool {
        match &self.backend {
            Backend::Zip(z, root) => z.entries.contains_key(&format!("{root}{key}")),
            #[cfg(feature = "native-io")]
            Backend::Dir(d) => d.join(key).exists(),
        }
    }

    /// Whether `group` (`""` for the root) has an array or group `name` under it.
    pub fn has(&self, group: &str, name: &str) -> bool {
        let p = join(group, name);
        self.contains(&format!("{p}/.zarray")) || self.contains(&format!("{p}/.zgroup"))
    }

    /// Top-level member names, for error messages (sorted).
    pub fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> = match &self.backend {
            Backend::Zip(z, root) => z
                .entries
                .keys()
                .filter_map(|k| k.strip_prefix(root.as_str()))
                .filter_map(|k| k.split('/').next().filter(|_| k.contains('/')))
                .map(str::to_string)
                .collect(),
            #[cfg(feature = "native-io")]
            Backend::Dir(d) => std::fs::read_dir(d)
                .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default(),
        };
        names.sort();
        names.dedup();
        names
    }

    /// A layout error on `field` of this store.
    pub fn err(&self, field: &str, found: impl Into<String>, expected: impl Into<String>) -> DataError {
        DataError::ZarrLayout {
            path: self.path.clone(),
            field: field.to_string(),
            found: found.into(),
            expected: expected.into(),
        }
    }

    fn json(&self, key: &str) -> Result<Option<Value>, DataError> {
        let Some(bytes) = self.get(key)? else { return Ok(None) };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.err(key, format!("not valid JSON ({e})"), "the JSON metadata zarr writes"))
    }

    /// The attributes (`.zattrs`) of `group` (`""` for the root); an empty object when absent.
    pub fn attrs(&self, group: &str) -> Result<serde_json::Map<String, Value>, DataError> {
        let key = join(group, ".zattrs");
        match self.json(&key)? {
            None => Ok(Default::default()),
            Some(Value::Object(m)) => Ok(m),
            Some(v) => Err(self.err(&key, kind_of(&v), "a JSON object of attributes")),
        }
    }

    /// The metadata of array `name`; [`DataError::ZarrLayout`] when it is absent or not a
    /// numeric C-order Zarr v2 array of at most two dimensions.
    pub fn array(&self, name: &str) -> Result<ZarrArray, DataError> {
        let key = join(name, ".zarray");
        let Some(meta) = self.json(&key)? else {
            return Err(self.err(
                name,
                format!("missing (the store holds [{}])", self.listing().join(", ")),
                "a zarr array",
            ));
        };
        let field = |f: &str| format!("{key}:{f}");
        let dims = |f: &str| -> Result<Vec<usize>, DataError> {
            meta.get(f)
                .and_then(Value::as_array)
                .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect::<Option<Vec<_>>>())
                .ok_or_else(|| self.err(&field(f), meta.get(f).map_or("missing".into(), Value::to_string), "a list of non-negative integers"))
        };
        if meta.get("zarr_format").and_then(Value::as_u64) != Some(2) {
            return Err(self.err(&field("zarr_format"), meta.get("zarr_format").map_or("missing".into(), Value::to_string), "2 (Zarr v2)"));
        }
        let shape = dims("shape")?;
        let chunks = dims("chunks")?;
        if shape.len() != chunks.len() || shape.is_empty() || shape.len() > 2 || chunks.contains(&0) {
            return Err(self.err(
                &field("shape"),
                format!("shape {shape:?} with chunks {chunks:?}"),
                "one or two dimensions with positive chunk sizes of the same rank",
            ));
        }
        let order = meta.get("order").and_then(Value::as_str).unwrap_or("C");
        if order != "C" && shape.len() > 1 {
            return Err(self.err(&field("order"), order, "\"C\" (row-major)"));
        }
        if !matches!(meta.get("filters"), None | Some(Value::Null)) && meta.get("filters") != Some(&Value::Array(vec![])) {
            return Err(self.err(&field("filters"), meta["filters"].to_string(), "null (no filters)"));
        }
        let dtype = meta.get("dtype").and_then(Value::as_str).unwrap_or("").to_string();
        let b = dtype.as_bytes();
        let parsed = (b.len() >= 3)
            .then(|| {
                let little = match b[0] {
                    b'<' | b'|' => true,
                    b'>' => false,
                    _ => return None,
                };
                let kind = match b[1] {
                    b'u' => Kind::U,
                    b'i' => Kind::I,
                    b'f' => Kind::F,
                    b'b' => Kind::B,
                    _ => return None,
                };
                let size: usize = dtype[2..].parse().ok()?;
                let ok = match kind {
                    Kind::U | Kind::I => matches!(size, 1 | 2 | 4 | 8),
                    Kind::F => matches!(size, 4 | 8),
                    Kind::B => size == 1,
                };
                ok.then_some((kind, size, little))
            })
            .flatten();
        let Some((kind, size, little)) = parsed else {
            return Err(self.err(&field("dtype"), format!("{dtype:?}"), "a numeric data type (<u1..<u8, <i1..<i8, <f4, <f8, |b1)"));
        };
        let fill = match meta.get("fill_value") {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
            Some(Value::Bool(b)) => f64::from(u8::from(*b)),
            Some(Value::String(s)) if s == "NaN" => f64::NAN,
            _ => 0.0,
        };
        Ok(ZarrArray {
            name: name.to_string(),
            shape,
            chunks,
            dtype,
            kind,
            size,
            little,
            compressor: meta.get("compressor").cloned().unwrap_or(Value::Null),
            fill,
            separator: meta.get("dimension_separator").and_then(Value::as_str).unwrap_or(".").to_string(),
        })
    }

    /// All values of array `name`, row-major, as `f64` (exact for integers below 2^53).
    pub fn read_f64(&self, name: &str) -> Result<(Vec<f64>, Vec<usize>), DataError> {
        let a = self.array(name)?;
        let values = self.read_array(&a)?;
        Ok((values, a.shape))
    }

    /// Reads every chunk of `a` into a row-major `f64` buffer of its shape (missing chunks
    /// hold the fill value).
    pub fn read_array(&self, a: &ZarrArray) -> Result<Vec<f64>, DataError> {
        let (rows, cols) = (a.shape[0], a.shape.get(1).copied().unwrap_or(1));
        let (crows, ccols) = (a.chunks[0], a.chunks.get(1).copied().unwrap_or(1));
        let total = rows.checked_mul(cols).ok_or_else(|| self.err(&a.name, format!("shape {:?}", a.shape), "an array that fits in memory"))?;
        let mut out = vec![a.fill; total];
        let chunk_len = crows * ccols;
        for ci in 0..rows.div_ceil(crows) {
            for cj in 0..cols.div_ceil(ccols) {
                let key = if a.shape.len() == 1 {
                    format!("{}/{ci}", a.name)
                } else {
                    format!("{}/{ci}{}{cj}", a.name, a.separator)
                };
                let Some(raw) = self.get(&key)? else { continue };
                let bytes = self.decode(a, &key, &raw, chunk_len * a.size)?;
                if bytes.len() != chunk_len * a.size {
                    return Err(self.err(&key, format!("{} bytes after decompression", bytes.len()), format!("{} bytes (chunk {:?} of {})", chunk_len * a.size, a.chunks, a.dtype)));
                }
                for r in 0..crows.min(rows - ci * crows) {
                    for c in 0..ccols.min(cols - cj * ccols) {
                        let k = (r * ccols + c) * a.size;
                        out[(ci * crows + r) * cols + cj * ccols + c] = element(&bytes[k..k + a.size], a.kind, a.little);
                    }
                }
            }
        }
        Ok(out)
    }

    fn decode(&self, a: &ZarrArray, key: &str, raw: &[u8], expected: usize) -> Result<Vec<u8>, DataError> {
        let id = match &a.compressor {
            Value::Null => return Ok(raw.to_vec()),
            c => c.get("id").and_then(Value::as_str).unwrap_or(""),
        };
        let corrupt = |e: String| self.err(key, format!("a chunk that does not decompress ({e})"), format!("{id} data as the .zarray's compressor says"));
        match id {
            "zlib" => {
                let mut out = Vec::with_capacity(expected);
                flate2::read::ZlibDecoder::new(raw).read_to_end(&mut out).map_err(|e| corrupt(e.to_string()))?;
                Ok(out)
            }
            "gzip" => {
                let mut out = Vec::with_capacity(expected);
                flate2::read::GzDecoder::new(raw).read_to_end(&mut out).map_err(|e| corrupt(e.to_string()))?;
                Ok(out)
            }
            "lz4" => {
                // numcodecs' LZ4: a 4-byte little-endian size, then one LZ4 block.
                if raw.len() < 4 {
                    return Err(corrupt("shorter than its 4-byte header".into()));
                }
                let n = u32_at(raw, 0) as usize;
                lz4_flex::block::decompress(&raw[4..], n).map_err(|e| corrupt(e.to_string()))
            }
            "zstd" => zstd_decode(raw, expected).map_err(corrupt),
            "blosc" => blosc_decode(raw).map_err(corrupt),
            other => Err(self.err(
                &join(&a.name, ".zarray:compressor"),
                format!("{other:?}"),
                "null, blosc (lz4, lz4hc, zlib or zstd inside), zlib, gzip, lz4 or zstd",
            )),
        }
    }
}

fn kind_of(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(a) => format!("a list of {}", a.len()),
        Value::Object(_) => "an object".into(),
    }
}

fn join(group: &str, name: &str) -> String {
    if group.is_empty() {
        name.to_string()
    } else {
        format!("{}/{name}", group.trim_end_matches('/'))
    }
}

fn element(b: &[u8], kind: Kind, little: bool) -> f64 {
    let mut buf = [0u8; 8];
    let n = b.len();
    if little {
        buf[..n].copy_from_slice(b);
    } else {
        for (i, &x) in b.iter().rev().enumerate() {
            buf[i] = x;
        }
    }
    match (kind, n) {
        (Kind::U | Kind::B, _) => u64::from_le_bytes(buf) as f64,
        (Kind::I, 1) => f64::from(buf[0] as i8),
        (Kind::I, 2) => f64::from(i16::from_le_bytes([buf[0], buf[1]])),
        (Kind::I, 4) => f64::from(i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]])),
        (Kind::I, _) => i64::from_le_bytes(buf) as f64,
        (Kind::F, 4) => f64::from(f32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]])),
        (Kind::F, _) => f64::from_le_bytes(buf),
    }
}

#[cfg(feature = "native-io")]
fn zstd_decode(raw: &[u8], expected: usize) -> Result<Vec<u8>, String> {
    zstd::bulk::decompress(raw, expected.max(1)).map_err(|e| e.to_string())
}

#[cfg(not(feature = "native-io"))]
fn zstd_decode(_raw: &[u8], _expected: usize) -> Result<Vec<u8>, String> {
    Err("zstd is read by the native tools only; convert the store with Python zarr to blosc-lz4 or zlib".into())
}

/// Decompresses one Blosc (v1 format) buffer: a 16-byte header, block offsets, then per block
/// one stream per byte of the element (byte shuffle) or one for the whole block.
///
/// Header: version, format version, flags (bit 0 byte shuffle, bit 1 stored uncompressed,
/// bit 2 bit shuffle, bit 4 blocks not split, bits 5–7 codec: 0 blosclz, 1 lz4, 3 zlib,
/// 4 zstd), element size, then `nbytes`, `blocksize`, `cbytes` as little-endian u32.
fn blosc_decode(src: &[u8]) -> Result<Vec<u8>, String> {
    if src.len() < 16 {
        return Err(format!("a Blosc buffer of {} bytes is shorter than its header", src.len()));
    }
    let (flags, typesize) = (src[2], src[3].max(1) as usize);
    let nbytes = u32_at(src, 4) as usize;
    let blocksize = u32_at(src, 8) as usize;
    if flags & 0x02 != 0 {
        return src.get(16..16 + nbytes).map(<[u8]>::to_vec).ok_or_else(|| "stored Blosc buffer is truncated".to_string());
    }
    if flags & 0x04 != 0 {
        return Err("Blosc bit-shuffle is not supported; re-save the store with shuffle=SHUFFLE or NOSHUFFLE".into());
    }
    if blocksize == 0 {
        return Ok(Vec::new());
    }
    let codec = (flags >> 5) & 0x7;
    let nblocks = nbytes.div_ceil(blocksize);
    let mut out = vec![0u8; nbytes];
    for j in 0..nblocks {
        let at = 16 + 4 * j;
        let start = src.get(at..at + 4).map(|b| u32_at(b, 0) as usize).ok_or("Blosc block offsets are truncated")?;
        let bsize = blocksize.min(nbytes - j * blocksize);
        let leftover = bsize < blocksize;
        let shuffled = flags & 0x01 != 0 && typesize > 1;
        // Blocks are split into one stream per element byte unless flag 0x10 says they are
        // not (the rule of c-blosc 1.x); the other reading is tried when that one fails.
        let split = flags & 0x10 == 0 && !leftover && typesize <= 16 && bsize / typesize >= 128;
        let block = decode_block(src, start, bsize, if split { typesize } else { 1 }, codec)
            .or_else(|_| decode_block(src, start, bsize, if split { 1 } else { typesize }, codec))?;
        let dst = &mut out[j * blocksize..j * blocksize + bsize];
        if shuffled {
            let n = bsize / typesize;
            for i in 0..n {
                for b in 0..typesize {
                    dst[i * typesize + b] = block[b * n + i];
                }
            }
            dst[n * typesize..].copy_from_slice(&block[n * typesize..]);
        } else {
            dst.copy_from_slice(&block);
        }
    }
    Ok(out)
}

fn decode_block(src: &[u8], mut at: usize, bsize: usize, nsplits: usize, codec: u8) -> Result<Vec<u8>, String> {
    if nsplits == 0 || bsize % nsplits != 0 {
        return Err("block does not split evenly".into());
    }
    let neblock = bsize / nsplits;
    let mut out = Vec::with_capacity(bsize);
    for _ in 0..nsplits {
        let csize = src.get(at..at + 4).map(|b| u32_at(b, 0) as usize).ok_or("Blosc stream size is truncated")?;
        at += 4;
        let data = src.get(at..at + csize).ok_or("Blosc stream is truncated")?;
        at += csize;
        if csize == neblock {
            out.extend_from_slice(data);
            continue;
        }
        let part = match codec {
            1 => lz4_flex::block::decompress(data, neblock).map_err(|e| e.to_string())?,
            3 => {
                let mut v = Vec::with_capacity(neblock);
                flate2::read::ZlibDecoder::new(data).read_to_end(&mut v).map_err(|e| e.to_string())?;
                v
            }
            4 => zstd_decode(data, neblock)?,
            0 => return Err("Blosc's blosclz codec is not supported; re-save the store with cname='lz4' or 'zlib'".into()),
            c => return Err(format!("Blosc codec {c} is not supported (lz4, zlib and zstd are)")),
        };
        if part.len() != neblock {
            return Err(format!("a Blosc stream decompressed to {} bytes, expected {neblock}", part.len()));
        }
        out.extend_from_slice(&part);
    }
    Ok(out)
}
