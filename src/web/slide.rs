//! `openSlide`: a whole-slide (OME-)TIFF in the browser with bounded memory. The file stays a
//! `Blob`/`File` (read slice by slice with `FileReaderSync`, so in a worker) or a `Uint8Array`
//! held by JS; nucleus detection, the intensity histogram and the classifier patches read one
//! tile window at a time ([`TiffLevelImage`]), so wasm memory holds one window, the nuclei
//! found and the patches asked for — never the level (a level of at most
//! [`SMALL_LEVEL_BYTES`] is decoded once instead). An overview level for display is read on
//! request.

use std::cell::{Cell, RefCell};
use std::io::{Read, Seek, SeekFrom};
use std::rc::Rc;

use js_sys::{Float32Array, Object};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::{detection_object, level_object, missing, options_from, patch_centres_arg, set, JsBytes, ReadTiffOptions, TiffLevelRead, WASM_TIFF_MAX_DECODED_BYTES};
use crate::analysis::nuclei::{detect_nuclei_with_histogram, histogram_scale, level_histogram_progress, level_scale, model_patches_in, NucleusImage, NucleusOptions, TiffLevelImage};
use crate::data::{self, GrayImage16, ImageFrame, IntensityScale, PyramidTiff, TiffSource};

/// `Blob` reads go through a cache of aligned blocks of this size: TIFF directories, offset
/// arrays and strips are read a few bytes to a few KiB at a time, from places far apart, and
/// each `FileReaderSync` call has a fixed cost.
const BLOB_BLOCK: u64 = 1 << 16;
/// Blocks kept (least recently used evicted): 512 KiB.
const BLOB_BLOCKS_KEPT: usize = 8;

/// Levels up to this size (as `u16`) are decoded once and kept instead of being read window by
/// window: small files are often one strip, which every window would decode again.
pub const SMALL_LEVEL_BYTES: u64 = 64 << 20;

/// Decoded file tiles a slide keeps between windows (see [`data::WINDOW_CACHE_BYTES`]).
pub const SLIDE_WINDOW_CACHE_BYTES: usize = 16 << 20;

/// Where a slide's bytes are: a `Uint8Array` in JS, or a `Blob`/`File` read slice by slice.
#[derive(Clone)]
enum SlideSource {
    Bytes(JsBytes),
    Blob { blob: web_sys::Blob, reader: Rc<web_sys::FileReaderSync> },
}

/// A [`SlideSource`] that counts the file bytes read (`fileBytesRead`).
#[derive(Clone)]
struct CountedSource {
    source: SlideSource,
    read: Rc<Cell<u64>>,
}

// SAFETY: wasm32-unknown-unknown built without the `atomics` target feature (how this crate is
// built: see scripts/build_wasm.sh) has exactly one thread, so a value can never be shared
// between threads. `Sync` is asked only because nucleus detection's tile loop is written for
// rayon natively; on wasm32 it runs in a plain loop (util::parallel).
#[cfg(not(target_feature = "atomics"))]
unsafe impl Sync for CountedSource {}

/// A position in a [`CountedSource`], with a read-ahead buffer for `Blob`s.
struct SlideReader {
    source: CountedSource,
    pos: u64,
    len: u64,
    /// `(block index, bytes)` of the `Blob` blocks read last, most recent last.
    cache: Vec<(u64, Vec<u8>)>,
}

impl SlideReader {
    /// Bytes `[start, end)` of the `Blob`.
    fn fetch(blob: &web_sys::Blob, reader: &web_sys::FileReaderSync, start: u64, end: u64, read: &Cell<u64>) -> std::io::Result<Vec<u8>> {
        let slice = blob.slice_with_f64_and_f64(start as f64, end as f64).map_err(|e| io_error("Blob.slice", &e))?;
        let buffer = reader.read_as_array_buffer(&slice).map_err(|e| io_error("FileReaderSync.readAsArrayBuffer", &e))?;
        let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
        read.set(read.get() + bytes.len() as u64);
        if bytes.len() as u64 != end - start {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("the file gave {} of bytes {start}..{end}: was it changed while open?", bytes.len())));
        }
        Ok(bytes)
    }
}

impl Read for SlideReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        if n == 0 {
            return Ok(0);
        }
        match &self.source.source {
            SlideSource::Bytes(b) => {
                b.0.subarray(self.pos as u32, (self.pos + n as u64) as u32).copy_to(&mut buf[..n]);
                self.source.read.set(self.source.read.get() + n as u64);
            }
            SlideSource::Blob { blob, reader } => {
                if n as u64 >= BLOB_BLOCK {
                    // A strip or tile: read as it is, past the cache.
                    let bytes = Self::fetch(blob, reader, self.pos, self.pos + n as u64, &self.source.read)?;
                    buf[..n].copy_from_slice(&bytes);
                } else {
                    let block = self.pos / BLOB_BLOCK;
                    let hit = self.cache.iter().position(|(b, _)| *b == block);
                    let entry = match hit {
                        Some(i) => self.cache.remove(i),
                        None => {
                            let start = block * BLOB_BLOCK;
                            let end = (start + BLOB_BLOCK).min(self.len);
                            (block, Self::fetch(blob, reader, start, end, &self.source.read)?)
                        }
                    };
                    if self.cache.len() >= BLOB_BLOCKS_KEPT {
                        self.cache.remove(0);
                    }
                    self.cache.push(entry);
                    let bytes = &self.cache[self.cache.len() - 1].1;
                    let from = (self.pos - block * BLOB_BLOCK) as usize;
                    // A read may stop at the block's end (Read allows short reads).
                    let n_here = n.min(bytes.len() - from);
                    buf[..n_here].copy_from_slice(&bytes[from..from + n_here]);
                    self.pos += n_here as u64;
                    return Ok(n_here);
                }
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SlideReader {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before byte 0"))?;
        Ok(self.pos)
    }
}

fn io_error(call: &str, e: &JsValue) -> std::io::Error {
    std::io::Error::other(format!("{call} failed: {}", e.as_string().unwrap_or_else(|| format!("{e:?}"))))
}

impl CountedSource {
    fn len(&self) -> u64 {
        match &self.source {
            SlideSource::Bytes(b) => u64::from(b.0.length()),
            SlideSource::Blob { blob, .. } => blob.size().max(0.0) as u64,
        }
    }
}

impl TiffSource for CountedSource {
    type Reader = SlideReader;
    fn reader(&self) -> std::io::Result<SlideReader> {
        Ok(SlideReader { source: self.clone(), pos: 0, len: self.len(), cache: Vec::new() })
    }
    fn len(&self) -> std::io::Result<u64> {
        Ok(CountedSource::len(self))
    }
}

/// A whole-slide grayscale (OME-)TIFF level, opened by [`open_slide`].
#[wasm_bindgen]
pub struct Slide {
    tiff: PyramidTiff<CountedSource>,
    name: String,
    plane: usize,
    level: usize,
    frame: ImageFrame,
    tile_px: usize,
    /// The level's 0.5/99.5 percentile stretch, computed (one streamed pass) on first use.
    scale: RefCell<Option<IntensityScale>>,
    /// The level, decoded on first use when it is small ([`SMALL_LEVEL_BYTES`]).
    decoded: RefCell<Option<GrayImage16>>,
    read: Rc<Cell<u64>>,
    file_bytes: u64,
}

/// Options of [`Slide::detect_nuclei`] (camelCase in JS; every field optional).
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
struct SlideDetectOptions {
    diameter_um: Option<f32>,
    min_distance_um: Option<f32>,
    threshold_scale: Option<f32>,
}

/// Options of [`Slide::cut_patches`] (camelCase in JS).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SlidePatchOptions {
    patch_size: usize,
    patch_um_per_px: f32,
}

/// Open a whole-slide grayscale (OME-)TIFF for detection and patch cutting with bounded memory.
/// `file` is a `Blob`/`File` (read slice by slice with `FileReaderSync`: call this in a Web
/// Worker, where the file is never read whole) or the file's bytes (`Uint8Array`, anywhere; JS
/// then holds the file). `options` as `readTiff`'s (`targetUmPerPx` picks the level, `umPerPx`
/// for plain TIFFs, `plane`, `name`) plus `tilePx` (window side, default 512). Only the
/// directories are read here. Throws naming the field for an unreadable file, no pixel size, or
/// an RGB file (`readTiffRgb` reads H&E).
#[wasm_bindgen(js_name = openSlide)]
pub fn open_slide(
    #[wasm_bindgen(unchecked_param_type = "Blob | Uint8Array")] file: JsValue,
    #[wasm_bindgen(unchecked_param_type = "{ targetUmPerPx?: number, umPerPx?: number, plane?: number, name?: string, tilePx?: number } | undefined")]
    options: JsValue,
) -> Result<Slide, JsError> {
    if file.is_null() || file.is_undefined() {
        return Err(missing("file", "a Blob/File (in a worker) or the file's bytes (Uint8Array)"));
    }
    // `tilePx` is ours; the rest are readTiff's options.
    let mut tile_px = 512usize;
    let options = if options.is_null() || options.is_undefined() {
        options
    } else {
        let copy = Object::assign(&Object::new(), options.unchecked_ref());
        let t = js_sys::Reflect::get(&copy, &JsValue::from_str("tilePx")).unwrap_or(JsValue::UNDEFINED);
        if !t.is_undefined() {
            match t.as_f64() {
                Some(v) if v.fract() == 0.0 && (16.0..=8192.0).contains(&v) => tile_px = v as usize,
                _ => return Err(JsError::new(&format!("openSlide: `tilePx` = {}: pass a whole number of pixels from 16 to 8192 (default 512)", super::describe(&t)))),
            }
            let _ = js_sys::Reflect::delete_property(&copy, &JsValue::from_str("tilePx"));
        }
        copy.into()
    };
    let opts: ReadTiffOptions = if options.is_null() || options.is_undefined() { ReadTiffOptions::default() } else { options_from("openSlide options", options)? };
    let name = opts.name.clone().unwrap_or_else(|| "image.tif".to_string());
    let source = if let Some(blob) = file.dyn_ref::<web_sys::Blob>() {
        let reader = web_sys::FileReaderSync::new().map_err(|_| {
            JsError::new(&format!(
                "openSlide({name}): a Blob is read with FileReaderSync, which only Web Workers have: call openSlide in a worker (CellSymphonyWorker.classifySlide does), or pass the file's bytes (Uint8Array)"
            ))
        })?;
        SlideSource::Blob { blob: blob.clone(), reader: Rc::new(reader) }
    } else {
        SlideSource::Bytes(JsBytes(super::bytes_arg("file", &file)?))
    };
    let read = Rc::new(Cell::new(0));
    let source = CountedSource { source, read: read.clone() };
    let file_bytes = source.len();
    let err = |e: data::DataError| JsError::new(&format!("openSlide: {e}"));
    let mut tiff = PyramidTiff::from_source(&name, source).map_err(err)?.with_max_decoded_bytes(WASM_TIFF_MAX_DECODED_BYTES).with_window_cache_bytes(SLIDE_WINDOW_CACHE_BYTES);
    if let Some(um) = opts.um_per_px {
        if !(um.is_finite() && um > 0.0) {
            return Err(JsError::new(&format!("openSlide: `umPerPx` = {um}: pass a positive pixel size in µm (Xenium: 0.2125)")));
        }
        tiff = tiff.with_um_per_px(um);
    }
    let Some(base_um) = tiff.um_per_px() else {
        return Err(JsError::new(&format!("openSlide({name}): no pixel size in the file (no OME PhysicalSizeX): pass `umPerPx` (Xenium: 0.2125)")));
    };
    if tiff.samples_per_pixel() != 1 {
        return Err(JsError::new(&format!(
            "openSlide({name}): SamplesPerPixel = {}: a slide is a grayscale (DAPI) image; read RGB (H&E) levels with readTiffRgb",
            tiff.samples_per_pixel()
        )));
    }
    if opts.plane >= tiff.n_planes() {
        return Err(JsError::new(&format!("openSlide({name}): `plane` = {}: the file has {} plane(s)", opts.plane, tiff.n_planes())));
    }
    let level = match opts.target_um_per_px {
        Some(t) => tiff.level_for(t).map_err(err)?,
        None => 0,
    };
    let downsample = tiff.levels().get(level).map_or(1.0, |l| l.downsample);
    let frame = data::morphology::level_frame(&ImageFrame::from_corner([0.0, 0.0], base_um), downsample);
    Ok(Slide { tiff, name, plane: opts.plane, level, frame, tile_px, scale: RefCell::new(None), decoded: RefCell::new(None), read, file_bytes })
}

#[wasm_bindgen]
impl Slide {
    /// `{name, width, height, level, downsample, umPerPx, originUm: [x, y], plane, nPlanes,
    /// channelName, tilePx, levels: [{width, height, downsample, umPerPx, storedBytes}],
    /// fileBytes, fileBytesRead}` of the level opened.
    pub fn info(&self) -> Result<JsValue, JsError> {
        let out = Object::new();
        let levels = self.tiff.levels();
        let l = levels.get(self.level).ok_or_else(|| JsError::new("openSlide: the chosen level is missing"))?;
        let num = |v: f64| JsValue::from_f64(v);
        set(&out, "name", &JsValue::from_str(&self.name))?;
        set(&out, "width", &num(l.width as f64))?;
        set(&out, "height", &num(l.height as f64))?;
        set(&out, "level", &num(self.level as f64))?;
        set(&out, "downsample", &num(f64::from(l.downsample)))?;
        set(&out, "umPerPx", &num(f64::from(self.frame.um_per_px)))?;
        set(&out, "originUm", &js_sys::Array::of2(&num(f64::from(self.frame.origin_um[0])), &num(f64::from(self.frame.origin_um[1]))).into())?;
        set(&out, "plane", &num(self.plane as f64))?;
        set(&out, "nPlanes", &num(self.tiff.n_planes() as f64))?;
        set(&out, "channelName", &JsValue::from_str(&self.tiff.channel_name(self.plane)))?;
        set(&out, "tilePx", &num(self.tile_px as f64))?;
        set(&out, "streamed", &JsValue::from_bool(self.streamed()))?;
        let all = js_sys::Array::new();
        for l in &levels {
            let o = Object::new();
            set(&o, "width", &num(l.width as f64))?;
            set(&o, "height", &num(l.height as f64))?;
            set(&o, "downsample", &num(f64::from(l.downsample)))?;
            set(&o, "umPerPx", &l.um_per_px.map_or(JsValue::NULL, |u| num(f64::from(u))))?;
            set(&o, "storedBytes", &num(l.stored_bytes as f64))?;
            all.push(&o);
        }
        set(&out, "levels", &all.into())?;
        set(&out, "fileBytes", &num(self.file_bytes as f64))?;
        set(&out, "fileBytesRead", &num(self.read.get() as f64))?;
        Ok(out.into())
    }

    /// Whether the level is read window by window (else it is decoded once, whole: a level
    /// of at most [`SMALL_LEVEL_BYTES`]).
    fn streamed(&self) -> bool {
        self.tiff.levels().get(self.level).is_none_or(|l| (l.width as u64).saturating_mul(l.height as u64).saturating_mul(2) > SMALL_LEVEL_BYTES)
    }

    /// `f` on the level: read window by window, or decoded once and kept when small.
    fn with_image<T>(&self, f: impl FnOnce(&dyn NucleusImage) -> T) -> Result<T, JsError> {
        let err = |e: String| JsError::new(&format!("{}: {e}", self.name));
        if self.streamed() {
            let image = TiffLevelImage::new(&self.tiff, self.plane, self.level).map_err(|e| err(e.to_string()))?;
            return Ok(f(&image));
        }
        if self.decoded.borrow().is_none() {
            let read = self.tiff.read_gray(self.plane, self.level).map_err(|e| err(e.to_string()))?;
            *self.decoded.borrow_mut() = Some(read.image);
        }
        let decoded = self.decoded.borrow();
        let image = decoded.as_ref().ok_or_else(|| err("the decoded level is missing".into()))?;
        Ok(f(image))
    }

    /// Nucleus centroids on the level opened, as `detectNuclei` finds them on the decoded level
    /// (identical output), read one `tilePx` window (+ halo) at a time. `options`:
    /// `diameterUm`, `minDistanceUm`, `thresholdScale` (as `detectNuclei`'s). Returns
    /// `detectNuclei`'s object (no masks: the watershed needs the decoded level).
    /// `onProgress(phase, tilesDone, tiles)`, if given, is called after each batch of tiles:
    /// phase `"histogram"` (the Otsu pass), then `"detect"` (what it throws is ignored).
    #[wasm_bindgen(js_name = detectNuclei)]
    pub fn detect_nuclei(
        &self,
        #[wasm_bindgen(unchecked_param_type = "{ diameterUm?: number, minDistanceUm?: number, thresholdScale?: number } | undefined")] options: JsValue,
        #[wasm_bindgen(js_name = onProgress, unchecked_param_type = "(phase: \"histogram\" | \"detect\", done: number, total: number) => void")]
        on_progress: Option<js_sys::Function>,
    ) -> Result<JsValue, JsError> {
        let o: SlideDetectOptions = if options.is_null() || options.is_undefined() { SlideDetectOptions::default() } else { options_from("Slide.detectNuclei options", options)? };
        let defaults = NucleusOptions::default();
        let opts = NucleusOptions {
            diameter_um: o.diameter_um.unwrap_or(defaults.diameter_um),
            min_distance_um: o.min_distance_um,
            threshold_scale: o.threshold_scale.unwrap_or(defaults.threshold_scale),
            tile_px: self.tile_px,
        };
        let mut progress = |phase: &'static str, done: usize, total: usize| {
            if let Some(f) = &on_progress {
                let _ = f.call3(&JsValue::NULL, &JsValue::from_str(phase), &JsValue::from_f64(done as f64), &JsValue::from_f64(total as f64));
            }
        };
        // One histogram pass for both the Otsu threshold and the patches' stretch.
        let det = self
            .with_image(|image| {
                let hist = level_histogram_progress(image, self.tile_px, &mut |done, total| progress("histogram", done, total))?;
                *self.scale.borrow_mut() = Some(histogram_scale(&hist));
                detect_nuclei_with_histogram(image, self.frame.um_per_px, &opts, Some(&hist), &mut progress)
            })?
            .map_err(|e| JsError::new(&format!("Slide.detectNuclei({}): {e}", self.name)))?;
        Ok(detection_object(&det, &self.frame)?.into())
    }

    /// Classifier patches centred on `centresUm` (`Float32Array [n*2]`, x, y µm), identical to
    /// `cutPatches` on the decoded level (same global 0.5/99.5 percentile stretch, computed
    /// once from a streamed histogram), cut from one window per `tilePx` tile of centres.
    /// `options`: `patchSize`, `patchUmPerPx` (a classifier's). Returns `Float32Array
    /// [n*patchSize*patchSize]`. Call it on batches of centres to bound memory.
    #[wasm_bindgen(js_name = cutPatches)]
    pub fn cut_patches(
        &self,
        #[wasm_bindgen(js_name = centresUm, unchecked_param_type = "Float32Array")] centres_um: JsValue,
        #[wasm_bindgen(unchecked_param_type = "{ patchSize: number, patchUmPerPx: number }")] options: JsValue,
    ) -> Result<Float32Array, JsError> {
        if options.is_null() || options.is_undefined() {
            return Err(missing("options", "{patchSize, patchUmPerPx}"));
        }
        let o: SlidePatchOptions = options_from("Slide.cutPatches options", options)?;
        let centres = patch_centres_arg("Slide.cutPatches", &centres_um, o.patch_size)?;
        let cached = *self.scale.borrow();
        let patches = self
            .with_image(|image| {
                let scale = match cached {
                    Some(s) => s,
                    None => level_scale(image, self.tile_px)?,
                };
                *self.scale.borrow_mut() = Some(scale);
                model_patches_in(image, &self.frame, &centres, o.patch_size, o.patch_um_per_px, &scale, self.tile_px)
            })?
            .map_err(|e| JsError::new(&format!("Slide.cutPatches({}): {e}", self.name)))?;
        Ok(Float32Array::from(patches.as_slice()))
    }

    /// A level for display: the finest whose larger side is at most `maxSide` px (else the
    /// coarsest), decoded whole (at most 512 MiB), as `readTiff` returns it.
    #[wasm_bindgen(js_name = readOverview)]
    pub fn read_overview(&self, #[wasm_bindgen(js_name = maxSide)] max_side: u32) -> Result<JsValue, JsError> {
        let levels = self.tiff.levels();
        let level = levels
            .iter()
            .position(|l| l.width.max(l.height) <= max_side as usize)
            .unwrap_or(levels.len().saturating_sub(1));
        let read = self.tiff.read_gray(self.plane, level).map_err(|e| JsError::new(&format!("Slide.readOverview: {e}")))?;
        let pixels = js_sys::Uint16Array::from(read.image.pixels.as_slice()).into();
        let r: TiffLevelRead = (read.image.width, read.image.height, pixels, read.downsample, read.um_per_px, read.stats);
        Ok(level_object(&self.tiff, self.plane, level, r)?.into())
    }
}
