//! Minimal TIFF directory walker (classic and BigTIFF) and single-IFD decoding.
//!
//! The `tiff` crate (0.10) decodes only images of the main IFD chain (`seek_to_image(index)`);
//! it can read a directory at an arbitrary offset (`Decoder::read_directory`) but cannot decode
//! the image it describes. OME-TIFF pyramids keep reduced levels in SubIFDs (tag 330), so this
//! module walks the directories itself (metadata only, no pixel data) and decodes one chosen
//! IFD by handing the decoder a view of the file whose header points at that IFD
//! ([`RetargetedTiff`]). Only the chosen IFD's strips or tiles are read.
//!
//! Everything reads through `Read + Seek` (a file, a byte buffer, or a browser `Uint8Array`
//! in the wasm build); `name` is the file named in errors. The crate and its decompressors
//! (weezl LZW, flate2/miniz_oxide deflate, fax, zune-jpeg) are pure Rust and build for wasm32.

use std::collections::HashSet;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::error::DataError;

/// Most directories followed in one chain (main pages, or SubIFDs of one page).
const MAX_IFDS: usize = 1 << 16;
/// Most entries accepted in one directory.
const MAX_ENTRIES: u64 = 4096;
/// Most values accepted for one tag (e.g. tile offsets of a huge level).
const MAX_VALUES: u64 = 1 << 24;

/// TIFF tags read here.
mod tag {
    pub const NEW_SUBFILE_TYPE: u16 = 254;
    pub const IMAGE_WIDTH: u16 = 256;
    pub const IMAGE_LENGTH: u16 = 257;
    pub const BITS_PER_SAMPLE: u16 = 258;
    pub const COMPRESSION: u16 = 259;
    pub const PHOTOMETRIC: u16 = 262;
    pub const IMAGE_DESCRIPTION: u16 = 270;
    pub const STRIP_BYTE_COUNTS: u16 = 279;
    pub const SAMPLES_PER_PIXEL: u16 = 277;
    pub const PLANAR_CONFIGURATION: u16 = 284;
    pub const TILE_WIDTH: u16 = 322;
    pub const TILE_BYTE_COUNTS: u16 = 325;
    pub const SUB_IFDS: u16 = 330;
    pub const SAMPLE_FORMAT: u16 = 339;
}

/// Byte order and offset size of a TIFF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TiffHeader {
    pub big_endian: bool,
    pub bigtiff: bool,
}

/// What one image file directory says about its image (no pixel data).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IfdInfo {
    /// File offset of the directory.
    pub offset: u64,
    pub width: u64,
    pub height: u64,
    /// Bits of the first sample.
    pub bits_per_sample: u16,
    pub samples_per_pixel: u16,
    /// 1 unsigned, 2 signed, 3 float.
    pub sample_format: u16,
    pub compression: u16,
    pub photometric: Option<u16>,
    /// 1 chunky (interleaved), 2 planar.
    pub planar_configuration: u16,
    pub subfile_type: u64,
    pub tiled: bool,
    /// Sum of the strip or tile byte counts: the compressed size of the image data.
    pub data_bytes: u64,
    pub description: Option<String>,
    /// Offsets of the SubIFDs (reduced-resolution levels in OME-TIFF).
    pub sub_ifds: Vec<u64>,
    /// Offset of the next directory in this chain (0 = none).
    pub next: u64,
}

/// Compressions the `tiff` crate decodes with the features enabled here.
pub(crate) fn compression_supported(code: u16) -> bool {
    matches!(code, 1 | 5 | 7 | 8 | 32773 | 32946)
}

/// Human name of a TIFF compression code.
pub(crate) fn compression_name(code: u16) -> &'static str {
    match code {
        1 => "none",
        2 => "CCITT RLE",
        3 => "CCITT fax 3",
        4 => "CCITT fax 4",
        5 => "LZW",
        6 => "old-style JPEG",
        7 => "JPEG",
        8 | 32946 => "deflate",
        32773 => "PackBits",
        33003 | 33005 | 34712 => "JPEG 2000",
        34887..=34889 => "LERC",
        34892 => "lossy JPEG",
        34925 => "LZMA",
        50000 => "Zstandard",
        50001 => "WebP",
        50002 => "JPEG XL",
        _ => "unknown",
    }
}

/// Reads a whole TIFF's directory structure: the header and every page of the main chain,
/// each with its SubIFD offsets. Pixel data is not touched.
pub(crate) fn read_structure<R: Read + Seek>(
    path: &Path,
    reader: R,
    len: u64,
) -> Result<(TiffHeader, Vec<IfdInfo>), DataError> {
    let mut walker = Walker {
        path: path.to_path_buf(),
        reader: BufReader::new(reader),
        len,
        header: TiffHeader {
            big_endian: false,
            bigtiff: false,
        },
    };
    let first = walker.read_header()?;
    let pages = walker.read_chain(first, "main IFD chain")?;
    if pages.is_empty() {
        return Err(walker.error("first IFD offset", "0: the file holds no image".into()));
    }
    Ok((walker.header, pages))
}

/// Reads the directories at `offsets` (e.g. a page's SubIFDs), without following their chains.
pub(crate) fn read_ifds<R: Read + Seek>(
    path: &Path,
    reader: R,
    len: u64,
    header: TiffHeader,
    offsets: &[u64],
) -> Result<Vec<IfdInfo>, DataError> {
    let mut walker = Walker {
        path: path.to_path_buf(),
        reader: BufReader::new(reader),
        len,
        header,
    };
    offsets.iter().map(|&o| walker.read_ifd(o)).collect()
}

struct Walker<R> {
    path: PathBuf,
    reader: BufReader<R>,
    len: u64,
    header: TiffHeader,
}

impl<R: Read + Seek> Walker<R> {
    fn error(&self, field: &str, message: String) -> DataError {
        DataError::TiffStructure {
            path: self.path.clone(),
            field: field.to_string(),
            message,
        }
    }

    fn bytes(&mut self, offset: u64, n: u64, field: &str) -> Result<Vec<u8>, DataError> {
        if offset.checked_add(n).is_none_or(|end| end > self.len) {
            return Err(self.error(
                field,
                format!(
                    "{n} bytes at offset {offset} lie past the end of the file ({} bytes): \
                     the file is truncated",
                    self.len
                ),
            ));
        }
        let mut buf = vec![0u8; n as usize];
        self.reader
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.reader.read_exact(&mut buf))
            .map_err(|e| DataError::io(&self.path, e))?;
        Ok(buf)
    }

    fn uint(&self, b: &[u8]) -> u64 {
        let mut v = 0u64;
        if self.header.big_endian {
            for &x in b {
                v = (v << 8) | u64::from(x);
            }
        } else {
            for &x in b.iter().rev() {
                v = (v << 8) | u64::from(x);
            }
        }
        v
    }

    /// Parses the header; returns the offset of the first IFD.
    fn read_header(&mut self) -> Result<u64, DataError> {
        let head = self.bytes(0, 8.min(self.len).max(4), "header")?;
        self.header.big_endian = match (head.first(), head.get(1)) {
            (Some(b'I'), Some(b'I')) => false,
            (Some(b'M'), Some(b'M')) => true,
            _ => {
                return Err(self.error(
                    "header",
                    "no TIFF signature (II or MM): this is not a TIFF file".into(),
                ))
            }
        };
        match self.uint(&head[2..4]) {
            42 => {
                let b = self.bytes(4, 4, "first IFD offset")?;
                Ok(self.uint(&b))
            }
            43 => {
                self.header.bigtiff = true;
                let b = self.bytes(8, 8, "first IFD offset")?;
                Ok(self.uint(&b))
            }
            v => Err(self.error(
                "header",
                format!("version {v}, expected 42 (TIFF) or 43 (BigTIFF)"),
            )),
        }
    }

    fn read_chain(&mut self, first: u64, what: &str) -> Result<Vec<IfdInfo>, DataError> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut next = first;
        while next != 0 {
            if !seen.insert(next) || out.len() >= MAX_IFDS {
                return Err(self.error(
                    what,
                    format!("IFD offset {next} repeats (a cycle) or the chain is too long"),
                ));
            }
            let ifd = self.read_ifd(next)?;
            next = ifd.next;
            out.push(ifd);
        }
        Ok(out)
    }

    fn read_ifd(&mut self, offset: u64) -> Result<IfdInfo, DataError> {
        let big = self.header.bigtiff;
        let (count_len, entry_len, inline_len) = if big { (8, 20, 8) } else { (2, 12, 4) };
        let n = {
            let b = self.bytes(offset, count_len, "IFD entry count")?;
            self.uint(&b)
        };
        if n == 0 || n > MAX_ENTRIES {
            return Err(self.error(
                "IFD entry count",
                format!("{n} entries in the IFD at offset {offset}; expected 1 to {MAX_ENTRIES}"),
            ));
        }
        let table = self.bytes(
            offset + count_len,
            n * entry_len + inline_len,
            "IFD entries",
        )?;
        let mut info = IfdInfo {
            offset,
            width: 0,
            height: 0,
            bits_per_sample: 1,
            samples_per_pixel: 1,
            sample_format: 1,
            compression: 1,
            photometric: None,
            planar_configuration: 1,
            subfile_type: 0,
            tiled: false,
            data_bytes: 0,
            description: None,
            sub_ifds: Vec::new(),
            next: self.uint(&table[(n * entry_len) as usize..]),
        };
        let (mut has_width, mut has_height) = (false, false);
        for entry in table[..(n * entry_len) as usize].chunks_exact(entry_len as usize) {
            let tag = self.uint(&entry[0..2]) as u16;
            let typ = self.uint(&entry[2..4]) as u16;
            let (count, value) = if big {
                (self.uint(&entry[4..12]), &entry[12..20])
            } else {
                (self.uint(&entry[4..8]), &entry[8..12])
            };
            let wanted = matches!(
                tag,
                tag::NEW_SUBFILE_TYPE
                    | tag::IMAGE_WIDTH
                    | tag::IMAGE_LENGTH
                    | tag::BITS_PER_SAMPLE
                    | tag::COMPRESSION
                    | tag::PHOTOMETRIC
                    | tag::IMAGE_DESCRIPTION
                    | tag::STRIP_BYTE_COUNTS
                    | tag::SAMPLES_PER_PIXEL
                    | tag::PLANAR_CONFIGURATION
                    | tag::TILE_WIDTH
                    | tag::TILE_BYTE_COUNTS
                    | tag::SUB_IFDS
                    | tag::SAMPLE_FORMAT
            );
            if !wanted {
                continue;
            }
            let field = tag_name(tag);
            let size = match type_size(typ) {
                Some(s) => s,
                None => {
                    return Err(self.error(
                        field,
                        format!("unknown field type {typ} in the IFD at offset {offset}"),
                    ))
                }
            };
            if count > MAX_VALUES {
                return Err(self.error(field, format!("{count} values, too many")));
            }
            let total = count * size;
            let raw = if total <= inline_len {
                value[..total as usize].to_vec()
            } else {
                let at = self.uint(value);
                self.bytes(at, total, field)?
            };
            if tag == tag::IMAGE_DESCRIPTION {
                let text = raw.split(|&b| b == 0).next().unwrap_or(&[]);
                info.description = Some(String::from_utf8_lossy(text).into_owned());
                continue;
            }
            if !matches!(typ, 1 | 3 | 4 | 13 | 16 | 18) {
                return Err(self.error(
                    field,
                    format!("field type {typ}, expected an unsigned integer type"),
                ));
            }
            let values: Vec<u64> = raw
                .chunks_exact(size as usize)
                .map(|c| self.uint(c))
                .collect();
            let first = values.first().copied();
            let first_u16 = |what: &str| -> Result<u16, DataError> {
                first
                    .and_then(|v| u16::try_from(v).ok())
                    .ok_or_else(|| self.error(what, format!("value {first:?} out of range")))
            };
            match tag {
                tag::NEW_SUBFILE_TYPE => info.subfile_type = first.unwrap_or(0),
                tag::IMAGE_WIDTH => {
                    info.width = first.unwrap_or(0);
                    has_width = true;
                }
                tag::IMAGE_LENGTH => {
                    info.height = first.unwrap_or(0);
                    has_height = true;
                }
                tag::BITS_PER_SAMPLE => info.bits_per_sample = first_u16(field)?,
                tag::COMPRESSION => info.compression = first_u16(field)?,
                tag::PHOTOMETRIC => info.photometric = Some(first_u16(field)?),
                tag::SAMPLES_PER_PIXEL => info.samples_per_pixel = first_u16(field)?,
                tag::PLANAR_CONFIGURATION => info.planar_configuration = first_u16(field)?,
                tag::SAMPLE_FORMAT => info.sample_format = first_u16(field)?,
                tag::STRIP_BYTE_COUNTS | tag::TILE_BYTE_COUNTS => {
                    info.tiled |= tag == tag::TILE_BYTE_COUNTS;
                    info.data_bytes = values.iter().fold(0u64, |a, &v| a.saturating_add(v));
                }
                tag::TILE_WIDTH => info.tiled = true,
                tag::SUB_IFDS => info.sub_ifds = values,
                _ => {}
            }
        }
        if !has_width || !has_height || info.width == 0 || info.height == 0 {
            return Err(self.error(
                "ImageWidth/ImageLength",
                format!(
                    "the IFD at offset {offset} has size {} x {}; expected a non-empty image",
                    info.width, info.height
                ),
            ));
        }
        Ok(info)
    }
}

fn tag_name(tag: u16) -> &'static str {
    match tag {
        tag::NEW_SUBFILE_TYPE => "NewSubfileType",
        tag::IMAGE_WIDTH => "ImageWidth",
        tag::IMAGE_LENGTH => "ImageLength",
        tag::BITS_PER_SAMPLE => "BitsPerSample",
        tag::COMPRESSION => "Compression",
        tag::PHOTOMETRIC => "PhotometricInterpretation",
        tag::IMAGE_DESCRIPTION => "ImageDescription",
        tag::STRIP_BYTE_COUNTS => "StripByteCounts",
        tag::SAMPLES_PER_PIXEL => "SamplesPerPixel",
        tag::PLANAR_CONFIGURATION => "PlanarConfiguration",
        tag::TILE_WIDTH => "TileWidth",
        tag::TILE_BYTE_COUNTS => "TileByteCounts",
        tag::SUB_IFDS => "SubIFDs",
        tag::SAMPLE_FORMAT => "SampleFormat",
        _ => "tag",
    }
}

/// Byte size of one value of a TIFF field type.
fn type_size(typ: u16) -> Option<u64> {
    Some(match typ {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 | 16 | 17 | 18 => 8,
        _ => return None,
    })
}

/// Counts the bytes read from the file below it.
struct CountingReader<R> {
    inner: R,
    bytes_read: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes_read += n as u64;
        Ok(n)
    }
}

impl<R: Seek> Seek for CountingReader<R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// A TIFF file seen through a header whose first-IFD pointer is replaced, so that the `tiff`
/// decoder takes any directory (a SubIFD, a later page) for the first image.
struct RetargetedTiff<R> {
    inner: R,
    /// The file's first bytes with the first-IFD pointer patched.
    head: Vec<u8>,
    pos: u64,
    /// Position of `inner`, when known (avoids seeks that would drop a buffer).
    inner_pos: Option<u64>,
}

impl<R: Read + Seek> RetargetedTiff<R> {
    fn new(mut inner: R, header: TiffHeader, ifd: u64) -> std::io::Result<Self> {
        let (at, width) = if header.bigtiff { (8, 8) } else { (4, 4) };
        let mut head = vec![0u8; at + width];
        inner.seek(SeekFrom::Start(0))?;
        inner.read_exact(&mut head)?;
        for i in 0..width {
            let shift = if header.big_endian {
                8 * (width - 1 - i)
            } else {
                8 * i
            };
            head[at + i] = (ifd >> shift) as u8;
        }
        Ok(RetargetedTiff {
            inner,
            head,
            pos: 0,
            inner_pos: None,
        })
    }
}

impl<R: Read + Seek> Read for RetargetedTiff<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(rest) = self.head.get(self.pos as usize..) {
            if !rest.is_empty() {
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                self.pos += n as u64;
                return Ok(n);
            }
        }
        if self.inner_pos != Some(self.pos) {
            self.inner.seek(SeekFrom::Start(self.pos))?;
        }
        self.inner_pos = None;
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        self.inner_pos = Some(self.pos);
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for RetargetedTiff<R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => {
                let end = self.inner.seek(SeekFrom::End(0))?;
                end.checked_add_signed(d)
            }
        };
        self.pos = target.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before byte 0")
        })?;
        Ok(self.pos)
    }
}

/// Samples of one decoded IFD, interleaved `[height, width, samples]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
}

impl Samples {
    /// Bytes the samples occupy.
    fn byte_len(&self) -> usize {
        match self {
            Samples::U8(v) => v.len(),
            Samples::U16(v) => v.len() * 2,
        }
    }
}

/// Decodes the image of the directory at `ifd.offset` and only that one, from `reader` (the
/// whole file). Returns the samples and the number of bytes read from the file. The decoder
/// refuses a decoded image over `max_decoded_bytes` (its buffer limit).
pub(crate) fn decode_ifd<R: Read + Seek>(
    path: &Path,
    reader: R,
    header: TiffHeader,
    ifd: &IfdInfo,
    max_decoded_bytes: u64,
) -> Result<(Samples, u64), DataError> {
    let mut decoder = open_decoder(path, reader, header, ifd, max_decoded_bytes)?;
    let result = decoder.read_image().map_err(|e| tiff_error(path, ifd, e))?;
    let bytes_read = decoder.inner().inner.get_ref().bytes_read;
    Ok((samples_of(path, result)?, bytes_read))
}

type IfdDecoder<R> = tiff::decoder::Decoder<RetargetedTiff<BufReader<CountingReader<R>>>>;

fn tiff_error(path: &Path, ifd: &IfdInfo, e: tiff::TiffError) -> DataError {
    DataError::Tiff {
        path: path.to_path_buf(),
        message: format!("IFD at offset {}: {e}", ifd.offset),
    }
}

/// A `tiff` decoder positioned on the directory at `ifd.offset`, counting the bytes it reads.
fn open_decoder<R: Read + Seek>(
    path: &Path,
    reader: R,
    header: TiffHeader,
    ifd: &IfdInfo,
    max_decoded_bytes: u64,
) -> Result<IfdDecoder<R>, DataError> {
    use tiff::decoder::{Decoder, Limits};
    let counting = CountingReader {
        inner: reader,
        bytes_read: 0,
    };
    let retargeted = RetargetedTiff::new(
        BufReader::with_capacity(8 << 10, counting),
        header,
        ifd.offset,
    )
    .map_err(|e| DataError::io(path, e))?;
    Ok(Decoder::new(retargeted)
        .map_err(|e| tiff_error(path, ifd, e))?
        .with_limits({
            let mut limits = Limits::unlimited();
            limits.decoding_buffer_size = usize::try_from(max_decoded_bytes).unwrap_or(usize::MAX);
            limits
        }))
}

fn samples_of(path: &Path, result: tiff::decoder::DecodingResult) -> Result<Samples, DataError> {
    use tiff::decoder::DecodingResult;
    match result {
        DecodingResult::U8(v) => Ok(Samples::U8(v)),
        DecodingResult::U16(v) => Ok(Samples::U16(v)),
        other => Err(DataError::TiffField {
            path: path.to_path_buf(),
            field: "SampleFormat/BitsPerSample".into(),
            found: format!("{} samples", decoded_kind(&other)),
            expected: "unsigned 8- or 16-bit integers",
        }),
    }
}

/// Decoded strips/tiles kept between window reads ([`decode_gray_window`]): detection windows
/// overlap (halo) and do not align with the file's tiles, so without it each file tile is
/// decoded ≈ 2–3 times per pass. Least recently used evicted past the byte budget; shared by
/// threads (one lock around lookups and inserts, not around decoding).
pub(crate) struct ChunkCache {
    budget: usize,
    inner: std::sync::Mutex<ChunkCacheInner>,
}

#[derive(Default)]
struct ChunkCacheInner {
    /// `(directory offset, chunk index)` → samples and the use stamp of their last use.
    entries: std::collections::HashMap<(u64, u64), (std::sync::Arc<Samples>, u64)>,
    /// Use stamp → key, oldest first (the eviction order).
    order: std::collections::BTreeMap<u64, (u64, u64)>,
    next_stamp: u64,
    bytes: usize,
}

impl std::fmt::Debug for ChunkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkCache {{ budget: {} }}", self.budget)
    }
}

impl ChunkCache {
    /// A cache of at most `budget` bytes of decoded samples (0: none).
    pub(crate) fn new(budget: usize) -> Self {
        ChunkCache { budget, inner: std::sync::Mutex::new(ChunkCacheInner::default()) }
    }

    fn get(&self, key: (u64, u64)) -> Option<std::sync::Arc<Samples>> {
        let mut inner = self.inner.lock().ok()?;
        let stamp = inner.next_stamp;
        let (samples, old) = inner.entries.get_mut(&key).map(|(s, at)| (s.clone(), std::mem::replace(at, stamp)))?;
        inner.next_stamp += 1;
        inner.order.remove(&old);
        inner.order.insert(stamp, key);
        Some(samples)
    }

    fn put(&self, key: (u64, u64), samples: std::sync::Arc<Samples>) {
        let size = samples.byte_len();
        if size > self.budget {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else { return };
        if inner.entries.contains_key(&key) {
            return;
        }
        while inner.bytes + size > self.budget {
            let Some((_, oldest)) = inner.order.pop_first() else { break };
            if let Some((old, _)) = inner.entries.remove(&oldest) {
                inner.bytes -= old.byte_len();
            }
        }
        let stamp = inner.next_stamp;
        inner.next_stamp += 1;
        inner.bytes += size;
        inner.entries.insert(key, (samples, stamp));
        inner.order.insert(stamp, key);
    }
}

/// Decodes the window `[y0, y0 + h) × [x0, x0 + w)` (inside the image) of a single-sample
/// (grayscale) IFD: only the strips or tiles the window touches are read and decoded, one at
/// a time, so working memory is the window (`u16`) plus one strip/tile, plus what `cache`
/// keeps for the next windows. Returns the window's samples `[h, w]` row-major (8-bit widened)
/// and the bytes read from the file.
pub(crate) fn decode_gray_window<R: Read + Seek>(
    path: &Path,
    reader: R,
    header: TiffHeader,
    ifd: &IfdInfo,
    window: [u64; 4],
    cache: &ChunkCache,
) -> Result<(Vec<u16>, u64), DataError> {
    let [x0, y0, w, h] = window;
    if w == 0 || h == 0 || x0 + w > ifd.width || y0 + h > ifd.height {
        return Err(DataError::InvalidArgument {
            name: "window",
            value: format!("x {x0}, y {y0}, {w} × {h} px in a {} × {} px image", ifd.width, ifd.height),
            expected: "a non-empty window inside the image",
        });
    }
    // One chunk at a time: the limit is a chunk, not the image.
    let mut decoder = open_decoder(path, reader, header, ifd, u64::MAX)?;
    let (cw, ch) = decoder.chunk_dimensions();
    let (cw, ch) = (u64::from(cw.max(1)), u64::from(ch.max(1)));
    let tiled = matches!(decoder.get_chunk_type(), tiff::decoder::ChunkType::Tile);
    let across = if tiled { ifd.width.div_ceil(cw) } else { 1 };
    let n_chunks = if tiled { across * ifd.height.div_ceil(ch) } else { ifd.height.div_ceil(ch) };
    let mut out = vec![0u16; (w * h) as usize];
    let (cx_range, cy_range) = if tiled { (x0 / cw..=(x0 + w - 1) / cw, y0 / ch..=(y0 + h - 1) / ch) } else { (0..=0, y0 / ch..=(y0 + h - 1) / ch) };
    for cy in cy_range {
        for cx in cx_range.clone() {
            let index = cy * across + cx;
            if index >= n_chunks {
                continue;
            }
            let (dw, dh) = decoder.chunk_data_dimensions(index as u32);
            let (dw, dh) = (u64::from(dw), u64::from(dh));
            let key = (ifd.offset, index);
            let chunk = match cache.get(key) {
                Some(chunk) => chunk,
                None => {
                    let chunk = std::sync::Arc::new(samples_of(path, decoder.read_chunk(index as u32).map_err(|e| tiff_error(path, ifd, e))?)?);
                    cache.put(key, chunk.clone());
                    chunk
                }
            };
            let (ox, oy) = (cx * if tiled { cw } else { 0 }, cy * ch);
            // Overlap of the chunk [oy, oy + dh) × [ox, ox + dw) with the window.
            let (ax, bx) = (ox.max(x0), (ox + dw).min(x0 + w));
            let (ay, by) = (oy.max(y0), (oy + dh).min(y0 + h));
            for y in ay..by {
                let src = ((y - oy) * dw + (ax - ox)) as usize;
                let dst = ((y - y0) * w + (ax - x0)) as usize;
                let n = (bx - ax) as usize;
                match chunk.as_ref() {
                    Samples::U16(v) => out[dst..dst + n].copy_from_slice(&v[src..src + n]),
                    Samples::U8(v) => out[dst..dst + n].iter_mut().zip(&v[src..src + n]).for_each(|(o, &b)| *o = u16::from(b)),
                }
            }
        }
    }
    let bytes_read = decoder.inner().inner.get_ref().bytes_read;
    Ok((out, bytes_read))
}

fn decoded_kind(result: &tiff::decoder::DecodingResult) -> &'static str {
    use tiff::decoder::DecodingResult as D;
    match result {
        D::U8(_) | D::U16(_) => "unsigned 8/16-bit",
        D::U32(_) | D::U64(_) => "unsigned 32/64-bit",
        D::I8(_) | D::I16(_) | D::I32(_) | D::I64(_) => "signed integer",
        D::F16(_) | D::F32(_) | D::F64(_) => "floating-point",
    }
}

#[cfg(test)]
mod chunk_cache_tests {
    use super::{ChunkCache, Samples};
    use std::sync::Arc;

    /// The least recently used chunk goes first; a lookup refreshes; a chunk over the budget
    /// is never kept.
    #[test]
    fn evicts_the_least_recently_used_chunk() {
        let cache = ChunkCache::new(8);
        let chunk = |v: u16| Arc::new(Samples::U16(vec![v, v]));
        cache.put((0, 0), chunk(0));
        cache.put((0, 1), chunk(1));
        assert!(cache.get((0, 0)).is_some());
        cache.put((0, 2), chunk(2));
        assert!(cache.get((0, 1)).is_none(), "chunk 1 was the least recently used");
        assert_eq!(cache.get((0, 0)).as_deref(), Some(&Samples::U16(vec![0, 0])));
        assert_eq!(cache.get((0, 2)).as_deref(), Some(&Samples::U16(vec![2, 2])));
        cache.put((1, 0), Arc::new(Samples::U8(vec![0; 9])));
        assert!(cache.get((1, 0)).is_none(), "over the budget");
        assert!(cache.get((0, 0)).is_some() && cache.get((0, 2)).is_some());
    }
}
