//! Xenium morphology images: OME-TIFF pyramids, channels and z-stacks, and choosing the
//! pyramid level for a requested pixel size.
//!
//! Layouts read (see [`find_morphology`], in priority order):
//! - `morphology_focus/chNNNN_<name>.ome.tif` (XOA ≥ 4, one file per channel, e.g.
//!   `ch0000_dapi.ome.tif`);
//! - `morphology_focus/morphology_focus_NNNN.ome.tif` (XOA 2-3, `0000` is DAPI);
//! - `morphology_mip.ome.tif` (XOA 1: maximum projection);
//! - `morphology.ome.tif` (z-stack: one page per z plane; use [`PyramidTiff::max_projection`]);
//! - a plain TIFF named `morphology*.tif` (e.g. the BIDCell crop's `morphology_mip_small.tif`).
//!
//! Pyramids: OME-TIFF keeps reduced levels in the SubIFDs (tag 330) of each full-resolution
//! page; plain TIFFs may chain pages of decreasing size instead. Both are read. Only the
//! directories are parsed when a file is opened; pixel data is decoded for the one level asked
//! for ([`PyramidTiff::read_gray_at`] picks the coarsest level that is at least as fine as the
//! requested µm/px).
//!
//! [`PyramidTiff`] reads through any [`TiffSource`] (random access to the file's bytes): a
//! file ([`FileSource`], [`PyramidTiff::open`]), a byte buffer ([`BytesSource`]), or in the
//! browser a JS `Uint8Array` (web.rs), so it builds everywhere, wasm32 included. Only the
//! directories and the chosen level's strips/tiles are read; a level whose decoded samples
//! exceed [`PyramidTiff::with_max_decoded_bytes`] is refused before decoding
//! ([`DataError::LevelTooLarge`]). Locating files in a Xenium folder needs `native-io`.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::DataError;
use super::image::{GrayImage16, ImageFrame};
use super::tiff_ifd::{self, IfdInfo, Samples, TiffHeader};

/// Random access to the bytes of a TIFF file: each call opens an independent reader.
pub trait TiffSource {
    /// A reader positioned anywhere in the file.
    type Reader: Read + Seek;
    /// Opens a reader on the file's bytes.
    fn reader(&self) -> std::io::Result<Self::Reader>;
    /// The file's size in bytes.
    fn len(&self) -> std::io::Result<u64>;
}

/// A TIFF on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSource(pub PathBuf);

impl TiffSource for FileSource {
    type Reader = std::fs::File;
    fn reader(&self) -> std::io::Result<std::fs::File> {
        std::fs::File::open(&self.0)
    }
    fn len(&self) -> std::io::Result<u64> {
        std::fs::metadata(&self.0).map(|m| m.len())
    }
}

/// A TIFF held in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BytesSource(pub Arc<[u8]>);

impl TiffSource for BytesSource {
    type Reader = std::io::Cursor<Arc<[u8]>>;
    fn reader(&self) -> std::io::Result<Self::Reader> {
        Ok(std::io::Cursor::new(self.0.clone()))
    }
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.0.len() as u64)
    }
}

/// Pixel size and channels stated by the OME-XML of an OME-TIFF (first `<Image>` only).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct OmeMetadata {
    /// `PhysicalSizeX` in µm per pixel (converted from nm/mm when the unit says so).
    pub physical_size_x_um: Option<f32>,
    /// `PhysicalSizeY` in µm per pixel.
    pub physical_size_y_um: Option<f32>,
    /// `Name` of each `<Channel>`, in order (empty string when unnamed).
    pub channel_names: Vec<String>,
    /// `SizeC`, `SizeZ`, `SizeT` (1 when absent).
    pub size_czt: [usize; 3],
    /// `DimensionOrder`, e.g. `XYCZT` (the default).
    pub dimension_order: String,
}

impl OmeMetadata {
    /// Number of planes (pages) the image has: `SizeC * SizeZ * SizeT`.
    pub fn n_planes(&self) -> usize {
        self.size_czt.iter().product()
    }

    /// Channel index of plane (page) `plane`, following `DimensionOrder`.
    pub fn plane_channel(&self, plane: usize) -> usize {
        let [c, z, t] = self.size_czt.map(|v| v.max(1));
        let order = self.dimension_order.as_bytes();
        // Axes after XY, fastest first; the channel's stride is the product of faster sizes.
        let mut stride = 1;
        for &axis in order.iter().skip(2) {
            match axis {
                b'C' => return (plane / stride) % c,
                b'Z' => stride *= z,
                b'T' => stride *= t,
                _ => {}
            }
        }
        plane % c
    }
}

/// Parses the OME-XML found in a TIFF's `ImageDescription`; `None` when it is not OME-XML.
///
/// A small attribute scanner, not a full XML parser: it reads the first `<Pixels>` element's
/// `SizeC/Z/T`, `DimensionOrder`, `PhysicalSizeX/Y` (+ `…Unit`: µm by default, nm and mm
/// converted) and the `Name` of each `<Channel>` inside it.
pub fn parse_ome_xml(xml: &str) -> Option<OmeMetadata> {
    if !xml.contains("<OME") {
        return None;
    }
    let start = xml.find("<Pixels")?;
    let pixels_end = xml[start..]
        .find("</Pixels>")
        .map_or(xml.len(), |e| start + e);
    let body = &xml[start..pixels_end];
    let head = &body[..body.find('>').unwrap_or(body.len())];
    let size = |name: &str| {
        attribute(head, name)
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(1)
            .max(1)
    };
    let physical = |name: &str, unit: &str| {
        let value: f32 = attribute(head, name)?.trim().parse().ok()?;
        let factor = match attribute(head, unit).as_deref().map(str::trim) {
            None | Some("µm") | Some("um") | Some("micron") | Some("\u{3bc}m") => 1.0,
            Some("nm") => 1e-3,
            Some("mm") => 1e3,
            Some(_) => return None,
        };
        let um = value * factor;
        (um.is_finite() && um > 0.0).then_some(um)
    };
    let mut channel_names = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find("<Channel") {
        let tag_text = &rest[i..];
        let end = tag_text.find('>').unwrap_or(tag_text.len());
        // `<ChannelRef` etc. are not channels.
        if tag_text[8..].starts_with(|ch: char| ch.is_whitespace() || ch == '>' || ch == '/') {
            channel_names.push(attribute(&tag_text[..end], "Name").unwrap_or_default());
        }
        rest = &tag_text[end..];
    }
    Some(OmeMetadata {
        physical_size_x_um: physical("PhysicalSizeX", "PhysicalSizeXUnit"),
        physical_size_y_um: physical("PhysicalSizeY", "PhysicalSizeYUnit"),
        channel_names,
        size_czt: [size("SizeC"), size("SizeZ"), size("SizeT")],
        dimension_order: attribute(head, "DimensionOrder").unwrap_or_else(|| "XYCZT".into()),
    })
}

/// Value of attribute `name="…"` in the text of one XML start tag (entities unescaped).
fn attribute(tag: &str, name: &str) -> Option<String> {
    let pattern = format!("{name}=\"");
    let mut from = 0;
    while let Some(i) = tag[from..].find(&pattern) {
        let at = from + i;
        let preceded_by_space = tag[..at].ends_with(|c: char| c.is_whitespace());
        let value_start = at + pattern.len();
        if preceded_by_space {
            let len = tag[value_start..].find('"')?;
            let raw = &tag[value_start..value_start + len];
            return Some(
                raw.replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&quot;", "\"")
                    .replace("&apos;", "'")
                    .replace("&amp;", "&"),
            );
        }
        from = value_start;
    }
    None
}

/// One resolution level of a pyramid.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PyramidLevel {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Full-resolution columns per level column (`width_0 / width`, 1 for level 0).
    pub downsample: f32,
    /// Pixel size in µm, when the full-resolution pixel size is known.
    pub um_per_px: Option<f32>,
    /// Compressed size of the level's pixel data in the file (sum of strip/tile byte counts).
    pub stored_bytes: u64,
}

/// Index of the level to read for output pixels of `target_um_per_px`: the coarsest level
/// whose pixels are no larger than the target (within 0.1 %), so resampling only ever
/// shrinks; level 0 when the target is finer than every level.
///
/// `level_um_per_px` lists the levels' pixel sizes, finest first.
pub fn choose_level(level_um_per_px: &[f32], target_um_per_px: f32) -> usize {
    let limit = target_um_per_px * (1.0 + 1e-3);
    level_um_per_px
        .iter()
        .enumerate()
        .filter(|(_, &um)| um.is_finite() && um <= limit)
        .map(|(i, _)| i)
        .max()
        .unwrap_or(0)
}

/// Frame of a reduced level: pixel size times `downsample`, the same slide corner.
///
/// Level pixel `(c, r)` covers full-resolution pixels `[c·d, (c+1)·d)`, so its centre is at
/// full-resolution coordinate `c·d + (d-1)/2`.
pub fn level_frame(base: &ImageFrame, downsample: f32) -> ImageFrame {
    let half = base.um_per_px / 2.0;
    let corner = [base.origin_um[0] - half, base.origin_um[1] - half];
    ImageFrame::from_corner(corner, base.um_per_px * downsample)
}

/// Pixel-wise maximum of equally sized planes (e.g. the z planes of `morphology.ome.tif`).
pub fn max_projection(planes: &[GrayImage16]) -> Result<GrayImage16, DataError> {
    let Some(first) = planes.first() else {
        return Err(DataError::InvalidArgument {
            name: "planes",
            value: "[]".into(),
            expected: "at least one plane",
        });
    };
    let mut out = first.clone();
    for p in &planes[1..] {
        if (p.width, p.height) != (first.width, first.height) {
            return Err(DataError::Shape {
                what: "z plane (max projection)",
                expected: first.pixels.len(),
                found: p.pixels.len(),
            });
        }
        for (o, &v) in out.pixels.iter_mut().zip(&p.pixels) {
            *o = (*o).max(v);
        }
    }
    Ok(out)
}

/// What reading one level cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ReadStats {
    /// Bytes read from the file while decoding (directories, strip/tile tables, pixel data).
    pub file_bytes_read: u64,
    /// Bytes of decoded samples (`width * height * samples * bytes per sample`).
    pub decoded_bytes: u64,
}

/// An image read from one pyramid level, with where it sits in the pyramid.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelImage<T> {
    /// The decoded image.
    pub image: T,
    /// Level index (0 = full resolution).
    pub level: usize,
    /// Full-resolution pixels per level pixel along x.
    pub downsample: f32,
    /// Pixel size of this level in µm, when known.
    pub um_per_px: Option<f32>,
    /// What decoding cost.
    pub stats: ReadStats,
}

/// An (OME-)TIFF opened for reading single levels: its planes (pages), each plane's pyramid
/// levels, and its OME metadata. Opening reads directories only.
#[derive(Debug, Clone)]
pub struct PyramidTiff<S: TiffSource = FileSource> {
    /// The file named in errors.
    path: PathBuf,
    source: S,
    /// Most bytes of decoded samples one read may produce.
    max_decoded_bytes: u64,
    header: TiffHeader,
    /// `planes[plane][level]`, levels finest first.
    planes: Vec<Vec<IfdInfo>>,
    ome: Option<OmeMetadata>,
    um_per_px: Option<f32>,
    /// Decoded strips/tiles shared by window reads ([`PyramidTiff::read_gray_window`]).
    chunk_cache: std::sync::Arc<tiff_ifd::ChunkCache>,
}

/// Bytes of decoded strips/tiles [`PyramidTiff::read_gray_window`] keeps for the next windows
/// (their halos overlap and rarely align with the file's tiles): 32 MiB.
pub const WINDOW_CACHE_BYTES: usize = 32 << 20;

/// Default limit on the decoded samples of one level read ([`PyramidTiff::with_max_decoded_bytes`]).
pub const DEFAULT_MAX_DECODED_BYTES: u64 = 16 << 30;

impl PyramidTiff<FileSource> {
    /// Parses the directories of the file at `path` (see [`PyramidTiff::from_source`]).
    pub fn open(path: &Path) -> Result<Self, DataError> {
        Self::from_source(path, FileSource(path.to_path_buf()))
    }
}

impl<S: TiffSource> PyramidTiff<S> {
    /// Parses the directories of the TIFF in `source`; `name` is the file named in errors.
    ///
    /// Planes: with OME-XML, the first `SizeC·SizeZ·SizeT` pages; otherwise every page whose
    /// size equals the first page's. Levels of a plane: its SubIFDs, else the following
    /// pages of strictly decreasing size (a plain IFD-chain pyramid).
    ///
    /// Multi-file OME sets (pre-XOA-4 `morphology_focus_000N.ome.tif`) keep the full OME-XML
    /// in file `0000` only; the others state no pixel size here (set it with
    /// [`PyramidTiff::with_um_per_px`]) and their channel names come from [`find_morphology`].
    pub fn from_source(name: impl AsRef<Path>, source: S) -> Result<Self, DataError> {
        let path = name.as_ref();
        let io = |e| DataError::io(path, e);
        let len = source.len().map_err(io)?;
        let (header, pages) = tiff_ifd::read_structure(path, source.reader().map_err(io)?, len)?;
        let ome = pages
            .first()
            .and_then(|p| p.description.as_deref())
            .and_then(parse_ome_xml);
        let mut planes: Vec<Vec<IfdInfo>> = Vec::new();
        match &ome {
            Some(meta) => {
                for page in pages.iter().take(meta.n_planes()) {
                    planes.push(vec![page.clone()]);
                }
            }
            None => {
                let (w0, h0) = pages.first().map_or((0, 0), |p| (p.width, p.height));
                for page in &pages {
                    if (page.width, page.height) == (w0, h0) {
                        planes.push(vec![page.clone()]);
                    } else if let Some(levels) = planes.last_mut() {
                        let smaller = levels
                            .last()
                            .is_some_and(|l| page.width < l.width && page.height < l.height);
                        if smaller && levels.iter().all(|l| l.sub_ifds.is_empty()) {
                            levels.push(page.clone());
                        }
                    }
                }
            }
        }
        for levels in &mut planes {
            let subs = levels
                .first()
                .map(|p| p.sub_ifds.clone())
                .unwrap_or_default();
            if !subs.is_empty() {
                levels.truncate(1);
                levels.extend(tiff_ifd::read_ifds(path, source.reader().map_err(io)?, len, header, &subs)?);
            }
            levels.sort_by_key(|l| std::cmp::Reverse(l.width));
        }
        let um_per_px = ome.as_ref().and_then(|m| m.physical_size_x_um);
        Ok(PyramidTiff {
            path: path.to_path_buf(),
            source,
            max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
            header,
            planes,
            ome,
            um_per_px,
            chunk_cache: std::sync::Arc::new(tiff_ifd::ChunkCache::new(WINDOW_CACHE_BYTES)),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of planes (channels × z × t pages at full resolution).
    pub fn n_planes(&self) -> usize {
        self.planes.len()
    }

    /// OME metadata, when the first page's `ImageDescription` holds OME-XML.
    pub fn ome(&self) -> Option<&OmeMetadata> {
        self.ome.as_ref()
    }

    /// Full-resolution pixel size in µm: OME `PhysicalSizeX`, or the one set with
    /// [`PyramidTiff::with_um_per_px`].
    pub fn um_per_px(&self) -> Option<f32> {
        self.um_per_px
    }

    /// Keep up to `bytes` of decoded strips/tiles between window reads (default
    /// [`WINDOW_CACHE_BYTES`]; 0 turns the cache off). A fresh, empty cache.
    pub fn with_window_cache_bytes(mut self, bytes: usize) -> Self {
        self.chunk_cache = std::sync::Arc::new(tiff_ifd::ChunkCache::new(bytes));
        self
    }

    /// Limits the decoded samples of one level read to `bytes` (default
    /// [`DEFAULT_MAX_DECODED_BYTES`]): a larger level fails with [`DataError::LevelTooLarge`]
    /// before anything is decoded. Working memory of a read is about this plus one strip/tile.
    pub fn with_max_decoded_bytes(mut self, bytes: u64) -> Self {
        self.max_decoded_bytes = bytes;
        self
    }

    /// Decodes the samples of `ifd` (level `level`), refusing it when over the limit.
    fn decode(&self, level: usize, ifd: &IfdInfo) -> Result<(Samples, u64), DataError> {
        let bytes = ifd
            .width
            .saturating_mul(ifd.height)
            .saturating_mul(u64::from(ifd.samples_per_pixel))
            .saturating_mul(u64::from(ifd.bits_per_sample.div_ceil(8)));
        if bytes > self.max_decoded_bytes {
            return Err(DataError::LevelTooLarge {
                path: self.path.clone(),
                level,
                width: ifd.width,
                height: ifd.height,
                bytes,
                limit: self.max_decoded_bytes,
            });
        }
        let reader = self.source.reader().map_err(|e| DataError::io(&self.path, e))?;
        tiff_ifd::decode_ifd(&self.path, reader, self.header, ifd, self.max_decoded_bytes)
    }

    /// Sets the full-resolution pixel size (for plain TIFFs, or to override the OME value).
    pub fn with_um_per_px(mut self, um_per_px: f32) -> Self {
        self.um_per_px = Some(um_per_px);
        self
    }

    /// Samples per pixel of the full-resolution image (1 gray, 3 RGB).
    pub fn samples_per_pixel(&self) -> u16 {
        self.full_res().map_or(1, |i| i.samples_per_pixel)
    }

    /// Name of the channel of `plane` (OME channel name; empty when unknown).
    pub fn channel_name(&self, plane: usize) -> String {
        self.ome
            .as_ref()
            .and_then(|m| m.channel_names.get(m.plane_channel(plane)).cloned())
            .unwrap_or_default()
    }

    fn full_res(&self) -> Option<&IfdInfo> {
        self.planes.first().and_then(|l| l.first())
    }

    /// The pyramid levels of plane 0, finest first.
    pub fn levels(&self) -> Vec<PyramidLevel> {
        let Some(levels) = self.planes.first() else {
            return Vec::new();
        };
        let w0 = levels.first().map_or(1, |l| l.width) as f32;
        levels
            .iter()
            .map(|l| {
                let downsample = w0 / l.width as f32;
                PyramidLevel {
                    width: l.width as usize,
                    height: l.height as usize,
                    downsample,
                    um_per_px: self.um_per_px.map(|um| um * downsample),
                    stored_bytes: l.data_bytes,
                }
            })
            .collect()
    }

    /// The level [`choose_level`] picks for `target_um_per_px`; fails when the pixel size is
    /// unknown or the target is not a positive number.
    pub fn level_for(&self, target_um_per_px: f32) -> Result<usize, DataError> {
        if !(target_um_per_px.is_finite() && target_um_per_px > 0.0) {
            return Err(DataError::InvalidArgument {
                name: "target_um_per_px",
                value: target_um_per_px.to_string(),
                expected: "a positive pixel size in µm",
            });
        }
        let levels = self.levels();
        let um: Option<Vec<f32>> = levels.iter().map(|l| l.um_per_px).collect();
        let um = um.ok_or_else(|| DataError::MissingPixelSize {
            path: self.path.clone(),
        })?;
        Ok(choose_level(&um, target_um_per_px))
    }

    fn ifd(&self, plane: usize, level: usize) -> Result<&IfdInfo, DataError> {
        self.planes
            .get(plane)
            .and_then(|l| l.get(level))
            .ok_or_else(|| DataError::InvalidArgument {
                name: "plane/level",
                value: format!(
                    "plane {plane}, level {level} of {} ({} planes, {} levels)",
                    self.path.display(),
                    self.planes.len(),
                    self.planes.first().map_or(0, Vec::len)
                ),
                expected: "an existing plane and level",
            })
    }

    fn check(&self, ifd: &IfdInfo, samples: u16, expected: &'static str) -> Result<(), DataError> {
        let field = |field: &str, found: String| DataError::TiffField {
            path: self.path.clone(),
            field: field.into(),
            found,
            expected,
        };
        if ifd.samples_per_pixel != samples {
            return Err(field("SamplesPerPixel", ifd.samples_per_pixel.to_string()));
        }
        let bits_ok = if samples == 1 {
            matches!(ifd.bits_per_sample, 8 | 16)
        } else {
            ifd.bits_per_sample == 8
        };
        if !bits_ok {
            return Err(field("BitsPerSample", ifd.bits_per_sample.to_string()));
        }
        if ifd.sample_format != 1 {
            let kind = match ifd.sample_format {
                2 => "2 (signed integer)",
                3 => "3 (floating point)",
                _ => "not 1 (unsigned integer)",
            };
            return Err(field("SampleFormat", kind.into()));
        }
        if samples > 1 && ifd.planar_configuration != 1 {
            return Err(field(
                "PlanarConfiguration",
                format!("{} (separate planes)", ifd.planar_configuration),
            ));
        }
        if !tiff_ifd::compression_supported(ifd.compression) {
            return Err(DataError::UnsupportedCompression {
                path: self.path.clone(),
                ifd_offset: ifd.offset,
                code: ifd.compression,
                name: tiff_ifd::compression_name(ifd.compression),
            });
        }
        Ok(())
    }

    fn level_image<T>(&self, level: usize, image: T, stats: ReadStats) -> LevelImage<T> {
        let info = self.levels();
        let downsample = info.get(level).map_or(1.0, |l| l.downsample);
        LevelImage {
            image,
            level,
            downsample,
            um_per_px: self.um_per_px.map(|um| um * downsample),
            stats,
        }
    }

    /// Decodes level `level` of plane `plane` as grayscale (8-bit samples are widened to
    /// `u16` unchanged). Only that level's strips or tiles are read.
    pub fn read_gray(
        &self,
        plane: usize,
        level: usize,
    ) -> Result<LevelImage<GrayImage16>, DataError> {
        const EXPECTED: &str = "a single-channel 8- or 16-bit unsigned grayscale image";
        let ifd = self.ifd(plane, level)?;
        self.check(ifd, 1, EXPECTED)?;
        let (samples, file_bytes_read) = self.decode(level, ifd)?;
        let (pixels, decoded_bytes) = match samples {
            Samples::U16(v) => {
                let n = v.len() as u64 * 2;
                (v, n)
            }
            Samples::U8(v) => {
                let n = v.len() as u64;
                (v.into_iter().map(u16::from).collect(), n)
            }
        };
        let image = GrayImage16::new(ifd.width as usize, ifd.height as usize, pixels)?;
        let stats = ReadStats {
            file_bytes_read,
            decoded_bytes,
        };
        Ok(self.level_image(level, image, stats))
    }

    /// Decodes the window `[x0, y0, width, height]` (level pixels, inside the level) of level
    /// `level` of plane `plane` as grayscale: only the strips or tiles it touches are read, one
    /// at a time (working memory: the window as `u16` plus one strip/tile; decoded strips/tiles
    /// are kept for the next windows up to [`WINDOW_CACHE_BYTES`] per file), so a whole-slide
    /// level can be processed in tiles without ever being held whole. Fails as
    /// [`PyramidTiff::read_gray`] for unsupported layouts (naming the TIFF field).
    pub fn read_gray_window(
        &self,
        plane: usize,
        level: usize,
        window: [usize; 4],
    ) -> Result<(GrayImage16, ReadStats), DataError> {
        const EXPECTED: &str = "a single-channel 8- or 16-bit unsigned grayscale image";
        let ifd = self.ifd(plane, level)?;
        self.check(ifd, 1, EXPECTED)?;
        let reader = self.source.reader().map_err(|e| DataError::io(&self.path, e))?;
        let (pixels, file_bytes_read) = tiff_ifd::decode_gray_window(&self.path, reader, self.header, ifd, window.map(|v| v as u64), &self.chunk_cache)?;
        let stats = ReadStats { file_bytes_read, decoded_bytes: pixels.len() as u64 * 2 };
        Ok((GrayImage16::new(window[2], window[3], pixels)?, stats))
    }

    /// Decodes, for plane `plane`, the level [`PyramidTiff::level_for`] picks for
    /// `target_um_per_px`, and nothing else.
    pub fn read_gray_at(
        &self,
        plane: usize,
        target_um_per_px: f32,
    ) -> Result<LevelImage<GrayImage16>, DataError> {
        let level = self.level_for(target_um_per_px)?;
        self.read_gray(plane, level)
    }

    /// Maximum projection over all planes at `level` (for `morphology.ome.tif` z-stacks).
    pub fn max_projection(&self, level: usize) -> Result<LevelImage<GrayImage16>, DataError> {
        let mut acc: Option<LevelImage<GrayImage16>> = None;
        for plane in 0..self.n_planes() {
            let next = self.read_gray(plane, level)?;
            acc = Some(match acc {
                None => next,
                Some(mut a) => {
                    a.image = max_projection(&[a.image, next.image])?;
                    a.stats.file_bytes_read += next.stats.file_bytes_read;
                    a.stats.decoded_bytes += next.stats.decoded_bytes;
                    a
                }
            });
        }
        acc.ok_or_else(|| DataError::Empty {
            path: self.path.clone(),
            message: "the TIFF holds no plane to project".into(),
        })
    }

    /// Decodes level `level` of plane 0 as 8-bit RGB (3 interleaved samples per pixel, e.g.
    /// an H&E image).
    pub fn read_rgb(&self, level: usize) -> Result<LevelImage<super::image::RgbImage8>, DataError> {
        const EXPECTED: &str = "an 8-bit RGB image (3 interleaved samples per pixel)";
        let ifd = self.ifd(0, level)?;
        self.check(ifd, 3, EXPECTED)?;
        let (samples, file_bytes_read) = self.decode(level, ifd)?;
        let Samples::U8(pixels) = samples else {
            return Err(DataError::TiffField {
                path: self.path.clone(),
                field: "BitsPerSample".into(),
                found: "16".into(),
                expected: EXPECTED,
            });
        };
        let decoded_bytes = pixels.len() as u64;
        let image = super::image::RgbImage8::new(ifd.width as usize, ifd.height as usize, pixels)?;
        let stats = ReadStats {
            file_bytes_read,
            decoded_bytes,
        };
        Ok(self.level_image(level, image, stats))
    }
}

/// Which morphology layout [`find_morphology`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MorphologyLayout {
    /// `morphology_focus/chNNNN_<name>.ome.tif` (XOA ≥ 4).
    FocusChannels,
    /// `morphology_focus/morphology_focus_NNNN.ome.tif` (XOA 2-3).
    FocusLegacy,
    /// `morphology_mip.ome.tif` (maximum projection).
    Mip,
    /// `morphology.ome.tif` (z-stack; project with [`PyramidTiff::max_projection`]).
    ZStack,
    /// A plain `morphology*.tif` / `.tiff` (e.g. `morphology_mip_small.tif`).
    PlainTiff,
}

/// Channel names of the pre-XOA-4 `morphology_focus_000N.ome.tif` files, by `N`.
pub const LEGACY_FOCUS_CHANNELS: [&str; 4] =
    ["DAPI", "ATP1A1/CD45/E-Cadherin", "18S", "AlphaSMA/Vimentin"];

/// Morphology files found in a Xenium output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg(feature = "native-io")]
pub struct MorphologyFiles {
    /// The layout found.
    pub layout: MorphologyLayout,
    /// Files, one per channel for the focus layouts (DAPI first), else one.
    pub files: Vec<PathBuf>,
    /// Channel name per file (from the file name; `DAPI` for single-file layouts).
    pub channels: Vec<String>,
}

#[cfg(feature = "native-io")]
impl MorphologyFiles {
    /// The file holding the DAPI channel (the first one).
    pub fn dapi_path(&self) -> Option<&Path> {
        self.files.first().map(PathBuf::as_path)
    }

    /// Reads the DAPI channel at the level picked for `target_um_per_px` (full resolution
    /// when `None`); z-stacks are max-projected at that level. `um_per_px` overrides the file's
    /// pixel size (needed for plain TIFFs without OME-XML).
    pub fn read_dapi(
        &self,
        target_um_per_px: Option<f32>,
        um_per_px: Option<f32>,
    ) -> Result<LevelImage<GrayImage16>, DataError> {
        let path = self.dapi_path().ok_or_else(|| DataError::Empty {
            path: PathBuf::new(),
            message: "no morphology file in the list".into(),
        })?;
        let mut tiff = PyramidTiff::open(path)?;
        if let Some(um) = um_per_px {
            tiff = tiff.with_um_per_px(um);
        }
        let level = match target_um_per_px {
            Some(t) => tiff.level_for(t)?,
            None => 0,
        };
        if self.layout == MorphologyLayout::ZStack {
            tiff.max_projection(level)
        } else {
            tiff.read_gray(0, level)
        }
    }
}

/// What [`find_morphology`] looks for, in priority order.
pub const MORPHOLOGY_EXPECTED: &str = "morphology_focus/chNNNN_<name>.ome.tif (XOA >= 4), \
morphology_focus/morphology_focus_NNNN.ome.tif (XOA 2-3), morphology_mip.ome.tif, \
morphology.ome.tif (z-stack) or a plain morphology*.tif";

/// Finds the morphology image(s) of a Xenium output directory, by priority: XOA-4 focus
/// channels, legacy focus files, `morphology_mip.ome.tif`, `morphology.ome.tif`, then a plain
/// `morphology*.tif(f)` (alphabetically first). Fails with
/// [`DataError::MorphologyNotFound`] listing the TIFF-like entries found.
#[cfg(feature = "native-io")]
pub fn find_morphology(dir: &Path) -> Result<MorphologyFiles, DataError> {
    let list = |d: &Path| -> Result<Vec<String>, DataError> {
        let mut names = Vec::new();
        if d.is_dir() {
            for entry in std::fs::read_dir(d).map_err(|e| DataError::io(d, e))? {
                let entry = entry.map_err(|e| DataError::io(d, e))?;
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        } else if !dir.exists() {
            return Err(DataError::io(
                d,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
            ));
        }
        names.sort();
        Ok(names)
    };
    let top = list(dir)?;
    let focus_dir = dir.join("morphology_focus");
    let focus = list(&focus_dir)?;

    let numbered = |prefix: &str, name: &str| -> Option<(u32, String)> {
        let rest = name.strip_prefix(prefix)?.strip_suffix(".ome.tif")?;
        let (digits, label) = match rest.split_once('_') {
            Some((d, l)) => (d, l.to_string()),
            None => (rest, String::new()),
        };
        if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((digits.parse().ok()?, label))
    };
    let mut channels: Vec<(u32, String, String)> = focus
        .iter()
        .filter_map(|n| numbered("ch", n).map(|(i, l)| (i, l, n.clone())))
        .filter(|(_, label, _)| !label.is_empty())
        .collect();
    if !channels.is_empty() {
        channels.sort();
        return Ok(MorphologyFiles {
            layout: MorphologyLayout::FocusChannels,
            files: channels.iter().map(|c| focus_dir.join(&c.2)).collect(),
            channels: channels.iter().map(|c| c.1.clone()).collect(),
        });
    }
    let mut legacy: Vec<(u32, String)> = focus
        .iter()
        .filter_map(|n| {
            numbered("morphology_focus_", n)
                .filter(|(_, label)| label.is_empty())
                .map(|(i, _)| (i, n.clone()))
        })
        .collect();
    if !legacy.is_empty() {
        legacy.sort();
        return Ok(MorphologyFiles {
            layout: MorphologyLayout::FocusLegacy,
            files: legacy.iter().map(|c| focus_dir.join(&c.1)).collect(),
            channels: legacy
                .iter()
                .map(|c| {
                    LEGACY_FOCUS_CHANNELS
                        .get(c.0 as usize)
                        .map_or_else(|| format!("channel {}", c.0), |s| s.to_string())
                })
                .collect(),
        });
    }
    let single = |layout, path: PathBuf| MorphologyFiles {
        layout,
        files: vec![path],
        channels: vec!["DAPI".into()],
    };
    for (name, layout) in [
        ("morphology_mip.ome.tif", MorphologyLayout::Mip),
        ("morphology.ome.tif", MorphologyLayout::ZStack),
    ] {
        if top.iter().any(|n| n == name) {
            return Ok(single(layout, dir.join(name)));
        }
    }
    let plain = top.iter().find(|n| {
        let lower = n.to_ascii_lowercase();
        lower.starts_with("morphology") && (lower.ends_with(".tif") || lower.ends_with(".tiff"))
    });
    if let Some(name) = plain {
        return Ok(single(MorphologyLayout::PlainTiff, dir.join(name)));
    }
    let is_tiff = |n: &String| {
        let l = n.to_ascii_lowercase();
        l.ends_with(".tif") || l.ends_with(".tiff")
    };
    let mut found: Vec<String> = top.iter().filter(|n| is_tiff(n)).cloned().collect();
    found.extend(focus.iter().map(|n| format!("morphology_focus/{n}")));
    if found.is_empty() && top.iter().any(|n| n == "morphology_focus") {
        found.push("morphology_focus/ (empty)".into());
    }
    Err(DataError::MorphologyNotFound {
        dir: dir.to_path_buf(),
        found,
        expected: MORPHOLOGY_EXPECTED,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ome_xml_gives_pixel_size_and_channels() {
        let xml = r#"<?xml version="1.0"?><OME><Image ID="Image:0"><Pixels ID="Pixels:0"
            DimensionOrder="XYZCT" SizeC="2" SizeZ="3" SizeT="1" PhysicalSizeX="212.5"
            PhysicalSizeXUnit="nm" PhysicalSizeY="0.2125"><Channel ID="Channel:0:0" Name="DAPI"/>
            <Channel ID="Channel:0:1" Name="A &amp; B"><LightPath/></Channel></Pixels></Image></OME>"#;
        let m = parse_ome_xml(xml).unwrap();
        assert!((m.physical_size_x_um.unwrap() - 0.2125).abs() < 1e-6);
        assert_eq!(m.physical_size_y_um, Some(0.2125));
        assert_eq!(m.channel_names, vec!["DAPI", "A & B"]);
        assert_eq!(m.size_czt, [2, 3, 1]);
        assert_eq!(m.n_planes(), 6);
        // XYZCT: planes 0-2 are channel 0 (z 0..3), planes 3-5 channel 1.
        let ch: Vec<usize> = (0..6).map(|p| m.plane_channel(p)).collect();
        assert_eq!(ch, vec![0, 0, 0, 1, 1, 1]);
        assert!(parse_ome_xml("ImageJ=1.53").is_none());
    }

    #[test]
    fn level_choice_is_coarsest_not_coarser_than_target() {
        let um = [0.2125, 0.425, 0.85, 1.7];
        assert_eq!(choose_level(&um, 0.85), 2);
        assert_eq!(choose_level(&um, 0.5), 1);
        assert_eq!(choose_level(&um, 0.1), 0);
        assert_eq!(choose_level(&um, 100.0), 3);
    }

    #[test]
    fn level_frame_keeps_the_corner() {
        let base = ImageFrame::from_corner([10.0, 20.0], 0.25);
        let f = level_frame(&base, 4.0);
        assert!((f.um_per_px - 1.0).abs() < 1e-6);
        // Level pixel 0 covers full-res pixels 0..4: centre at full-res 1.5.
        let centre = f.px_to_um([0.0, 0.0]);
        let full = base.um_to_px(centre);
        assert!(
            (full[0] - 1.5).abs() < 1e-4 && (full[1] - 1.5).abs() < 1e-4,
            "{full:?}"
        );
    }

    #[test]
    fn max_projection_checks_shapes() {
        let a = GrayImage16::new(2, 1, vec![1, 5]).unwrap();
        let b = GrayImage16::new(2, 1, vec![3, 2]).unwrap();
        assert_eq!(max_projection(&[a.clone(), b]).unwrap().pixels, vec![3, 5]);
        let c = GrayImage16::new(1, 2, vec![3, 2]).unwrap();
        assert!(max_projection(&[a, c]).is_err());
        assert!(max_projection(&[]).is_err());
    }
}
