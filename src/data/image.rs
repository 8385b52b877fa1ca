//! The DAPI morphology image, its placement in the slide frame, and intensity stretching.

#[cfg(feature = "native-io")]
use std::path::Path;

use super::error::DataError;
#[cfg(feature = "native-io")]
use crate::util::AtomicFile;

/// A single-channel 16-bit image, `pixels[row * width + col]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrayImage16 {
    /// Number of columns.
    pub width: usize,
    /// Number of rows.
    pub height: usize,
    /// Intensities, shape `[height, width]`, row-major.
    pub pixels: Vec<u16>,
}

impl GrayImage16 {
    /// Wraps a pixel buffer, checking that it holds `width * height` values.
    pub fn new(width: usize, height: usize, pixels: Vec<u16>) -> Result<Self, DataError> {
        let expected = width.saturating_mul(height);
        if pixels.len() != expected {
            return Err(DataError::Shape {
                what: "image pixels",
                expected,
                found: pixels.len(),
            });
        }
        Ok(GrayImage16 {
            width,
            height,
            pixels,
        })
    }

    /// Intensity at integer pixel `(col, row)`, `None` outside the image.
    pub fn get(&self, col: isize, row: isize) -> Option<u16> {
        if col < 0 || row < 0 || col as usize >= self.width || row as usize >= self.height {
            return None;
        }
        Some(self.pixels[row as usize * self.width + col as usize])
    }

    /// Mean intensity over all pixels (0 for an empty image).
    pub fn mean(&self) -> f64 {
        if self.pixels.is_empty() {
            return 0.0;
        }
        self.pixels.iter().map(|&p| f64::from(p)).sum::<f64>() / self.pixels.len() as f64
    }

    /// Percentiles (`0..=100`) of the intensities, linearly interpolated between order
    /// statistics like `numpy.percentile`. Returns 0 for an empty image.
    pub fn percentiles(&self, pcts: &[f32]) -> Vec<f32> {
        let mut hist = vec![0u64; 1 << 16];
        for &p in &self.pixels {
            hist[usize::from(p)] += 1;
        }
        let n = self.pixels.len() as u64;
        pcts.iter()
            .map(|&p| histogram_percentile(&hist, n, p))
            .collect()
    }
}

/// Value at percentile `pct` of `n` samples counted in a 16-bit histogram.
fn histogram_percentile(hist: &[u64], n: u64, pct: f32) -> f32 {
    if n == 0 {
        return 0.0;
    }
    let rank = f64::from(pct.clamp(0.0, 100.0)) / 100.0 * (n - 1) as f64;
    let k = rank.floor() as u64;
    let frac = (rank - k as f64) as f32;
    let lo = kth_smallest(hist, k);
    let hi = if frac > 0.0 {
        kth_smallest(hist, k + 1)
    } else {
        lo
    };
    lo + frac * (hi - lo)
}

/// The `k`-th smallest (0-based) sample in a histogram; `k` must be below the sample count.
fn kth_smallest(hist: &[u64], k: u64) -> f32 {
    let mut seen = 0u64;
    for (value, &count) in hist.iter().enumerate() {
        seen += count;
        if seen > k {
            return value as f32;
        }
    }
    (hist.len() - 1) as f32
}

/// Placement of an image in the slide frame: pixel coordinates from micrometres.
///
/// Continuous pixel coordinates are `[col, row]` with the centre of pixel `(c, r)` at exactly
/// `[c, r]`: `px = (um - origin_um) / um_per_px`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageFrame {
    /// Slide position (µm) of the centre of pixel `(0, 0)`, `[x, y]`.
    pub origin_um: [f32; 2],
    /// Pixel size in µm (square pixels).
    pub um_per_px: f32,
}

/// Frame of `morphology_mip_small.tif` in the BIDCell Xenium breast crop (2400 × 1800 px,
/// 0.2125 µm/px), which starts at pixel (5000, 1000) of the full-resolution image.
///
/// BIDCell maps `pixel = (µm - (1062.5, 212.5)) / 0.2125` with pixel `i` spanning `[i, i+1)`,
/// so pixel centres sit half a pixel further: origin `(1062.60625, 212.60625)` µm here.
///
/// Verified with [`check_alignment`](super::alignment::check_alignment) on the crop's
/// 186,146 transcripts: mean DAPI is 860 under nucleus transcripts, 334 under cytoplasmic and
/// 102 under unassigned ones (image mean 378), a nucleus/other contrast of 2.624. Every
/// integer shift within ±40 px scores lower (2.616 at +1 px and 2.602 at -1 px on either axis,
/// 2.12-2.16 at ±8 px, 1.17 at (±40, ±40) px), and half-pixel steps of BIDCell's corner-based
/// origin peak at -0.5 px on both axes (2.624, against 2.616 without the half pixel).
pub const XENIUM_CROP_FRAME: ImageFrame = ImageFrame::from_corner([1062.5, 212.5], 0.2125);

impl ImageFrame {
    /// Frame whose pixel `(0, 0)` has its top-left corner (rather than its centre) at
    /// `corner_um`, the convention of `pixel = floor((µm - corner) / um_per_px)`.
    pub const fn from_corner(corner_um: [f32; 2], um_per_px: f32) -> Self {
        let half = um_per_px / 2.0;
        ImageFrame {
            origin_um: [corner_um[0] + half, corner_um[1] + half],
            um_per_px,
        }
    }

    /// Continuous pixel coordinates `[col, row]` of a slide position `[x, y]` in µm.
    pub fn um_to_px(&self, um: [f32; 2]) -> [f32; 2] {
        [
            (um[0] - self.origin_um[0]) / self.um_per_px,
            (um[1] - self.origin_um[1]) / self.um_per_px,
        ]
    }

    /// Slide position `[x, y]` (µm) of continuous pixel coordinates `[col, row]`.
    pub fn px_to_um(&self, px: [f32; 2]) -> [f32; 2] {
        [
            px[0] * self.um_per_px + self.origin_um[0],
            px[1] * self.um_per_px + self.origin_um[1],
        ]
    }

    /// The frame whose pixel coordinates are this frame's plus `shift_px` (`[cols, rows]`):
    /// use it to apply the correction found by `check_alignment`.
    pub fn shifted(&self, shift_px: [f32; 2]) -> ImageFrame {
        ImageFrame {
            origin_um: [
                self.origin_um[0] - shift_px[0] * self.um_per_px,
                self.origin_um[1] - shift_px[1] * self.um_per_px,
            ],
            um_per_px: self.um_per_px,
        }
    }

    /// Whether slide position `um` falls on `image` (within half a pixel of its pixel centres).
    pub fn contains(&self, image: &GrayImage16, um: [f32; 2]) -> bool {
        let [c, r] = self.um_to_px(um);
        c >= -0.5 && r >= -0.5 && c < image.width as f32 - 0.5 && r < image.height as f32 - 0.5
    }
}

/// Linear intensity stretch: raw `lo` maps to 0, raw `hi` to 1, clamped to `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IntensityScale {
    /// Raw intensity mapped to 0.
    pub lo: f32,
    /// Raw intensity mapped to 1.
    pub hi: f32,
}

/// Percentiles used by [`IntensityScale::global`] and the PNG export.
pub const DEFAULT_STRETCH_PERCENTILES: [f32; 2] = [0.5, 99.5];

impl IntensityScale {
    /// Stretch between the `lo_pct` and `hi_pct` percentiles (`0..=100`) of `image`.
    pub fn from_percentiles(image: &GrayImage16, lo_pct: f32, hi_pct: f32) -> Self {
        let p = image.percentiles(&[lo_pct, hi_pct]);
        IntensityScale { lo: p[0], hi: p[1] }
    }

    /// Stretch between the `lo_pct` and `hi_pct` percentiles of the pixels counted in `hist`
    /// (a 16-bit histogram, `[65536]`): equal to [`IntensityScale::from_percentiles`] on the
    /// image counted, so a level streamed tile by tile gets the same stretch as when decoded.
    pub fn from_histogram(hist: &[u64], lo_pct: f32, hi_pct: f32) -> Self {
        let n = hist.iter().sum();
        IntensityScale {
            lo: histogram_percentile(hist, n, lo_pct),
            hi: histogram_percentile(hist, n, hi_pct),
        }
    }

    /// Stretch between the 0.5th and 99.5th percentiles of `image`.
    pub fn global(image: &GrayImage16) -> Self {
        let [lo, hi] = DEFAULT_STRETCH_PERCENTILES;
        Self::from_percentiles(image, lo, hi)
    }

    /// Maps a raw intensity to `[0, 1]`. A degenerate range (`hi <= lo`) maps `> lo` to 1.
    pub fn apply(&self, raw: f32) -> f32 {
        let range = self.hi - self.lo;
        if range <= 0.0 {
            return if raw > self.lo { 1.0 } else { 0.0 };
        }
        ((raw - self.lo) / range).clamp(0.0, 1.0)
    }
}

/// Reads the first page of a single-channel, unsigned 16-bit TIFF.
///
/// Fails with [`DataError::Tiff`] when the file is not a readable TIFF and with
/// [`DataError::ImageFormat`] for other sample formats (8-bit, float, signed, RGB, ...).
#[cfg(feature = "native-io")]
pub fn read_tiff_gray16(path: &Path) -> Result<GrayImage16, DataError> {
    use tiff::decoder::{Decoder, DecodingResult};
    use tiff::ColorType;

    let tiff_err = |e: tiff::TiffError| DataError::Tiff {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut decoder = Decoder::new(std::io::BufReader::new(file)).map_err(tiff_err)?;
    let color = decoder.colortype().map_err(tiff_err)?;
    if color != ColorType::Gray(16) {
        return Err(DataError::ImageFormat {
            path: path.to_path_buf(),
            found: format!("color type {color:?}"),
        });
    }
    let (width, height) = decoder.dimensions().map_err(tiff_err)?;
    match decoder.read_image().map_err(tiff_err)? {
        DecodingResult::U16(pixels) => GrayImage16::new(width as usize, height as usize, pixels),
        other => Err(DataError::ImageFormat {
            path: path.to_path_buf(),
            found: format!("16-bit {} samples", sample_kind(&other)),
        }),
    }
}

#[cfg(feature = "native-io")]
fn sample_kind(result: &tiff::decoder::DecodingResult) -> &'static str {
    use tiff::decoder::DecodingResult as D;
    match result {
        D::U8(_) | D::U16(_) | D::U32(_) | D::U64(_) => "unsigned integer",
        D::I8(_) | D::I16(_) | D::I32(_) | D::I64(_) => "signed integer",
        D::F16(_) | D::F32(_) | D::F64(_) => "floating-point",
    }
}

/// What [`downsample_to_png`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DownsampledPng {
    /// PNG width: `ceil(image.width / factor)`.
    pub width: usize,
    /// PNG height: `ceil(image.height / factor)`.
    pub height: usize,
    /// Source pixels per PNG pixel along each axis.
    pub factor: usize,
    /// Stretch applied before quantising to 8 bits (0.5 / 99.5 percentiles of the full image).
    pub stretch: IntensityScale,
}

/// An 8-bit grayscale raster, `pixels[row * width + col]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrayImage8 {
    /// Number of columns.
    pub width: usize,
    /// Number of rows.
    pub height: usize,
    /// Intensities, shape `[height, width]`, row-major.
    pub pixels: Vec<u8>,
}

/// Box-averages `image` by `factor` along both axes (edge blocks average the pixels they
/// cover) and stretches it to 8 bits (see [`IntensityScale::global`]); returns the raster and
/// the stretch. Shared by [`downsample_to_png`] and the plot backgrounds.
///
/// Output pixel `(c, r)` covers source pixels `[c*factor, (c+1)*factor)`, so its centre is at
/// source pixel coordinate `c*factor + (factor-1)/2`.
pub fn downsample_gray8(
    image: &GrayImage16,
    factor: usize,
) -> Result<(GrayImage8, IntensityScale), DataError> {
    if factor == 0 || image.width == 0 || image.height == 0 {
        return Err(DataError::InvalidArgument {
            name: "factor",
            value: format!("{factor} (image {}x{})", image.width, image.height),
            expected: "factor >= 1 and a non-empty image",
        });
    }
    let stretch = IntensityScale::global(image);
    let (w, h) = (image.width.div_ceil(factor), image.height.div_ceil(factor));
    let mut bytes = Vec::with_capacity(w * h);
    for r in 0..h {
        let rows = r * factor..((r + 1) * factor).min(image.height);
        for c in 0..w {
            let cols = c * factor..((c + 1) * factor).min(image.width);
            let mut sum = 0u64;
            for row in rows.clone() {
                let line = &image.pixels[row * image.width..(row + 1) * image.width];
                sum += line[cols.clone()]
                    .iter()
                    .map(|&p| u64::from(p))
                    .sum::<u64>();
            }
            let mean = sum as f32 / (rows.len() * cols.len()) as f32;
            bytes.push((stretch.apply(mean) * 255.0).round() as u8);
        }
    }
    Ok((
        GrayImage8 {
            width: w,
            height: h,
            pixels: bytes,
        },
        stretch,
    ))
}

/// Box-averages `image` by `factor` along both axes (edge blocks average the pixels they
/// cover), stretches it (see [`IntensityScale::global`]) and writes an 8-bit grayscale PNG
/// (atomically: a temporary file renamed into place).
///
/// PNG pixel `(c, r)` covers source pixels `[c*factor, (c+1)*factor)`, so its centre is at
/// source pixel coordinate `c*factor + (factor-1)/2`.
#[cfg(feature = "native-io")]
pub fn downsample_to_png(
    image: &GrayImage16,
    factor: usize,
    path: &Path,
) -> Result<DownsampledPng, DataError> {
    let (gray, stretch) = downsample_gray8(image, factor)?;
    write_png_8bit(
        path,
        gray.width,
        gray.height,
        png::ColorType::Grayscale,
        &gray.pixels,
    )?;
    Ok(DownsampledPng {
        width: gray.width,
        height: gray.height,
        factor,
        stretch,
    })
}

/// Writes an 8-bit PNG (`Grayscale`: 1 byte per pixel, `Rgb`: 3, `Rgba`: 4; rows top to
/// bottom) atomically ([`AtomicFile`]: a temporary file beside `path`, renamed over it).
#[cfg(feature = "native-io")]
pub fn write_png_8bit(
    path: &Path,
    width: usize,
    height: usize,
    color: png::ColorType,
    bytes: &[u8],
) -> Result<(), DataError> {
    let png_err = |e: png::EncodingError| DataError::Png {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut file = AtomicFile::create(path).map_err(DataError::from)?;
    let mut buffered = std::io::BufWriter::new(&mut file);
    let mut encoder = png::Encoder::new(&mut buffered, width as u32, height as u32);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(bytes).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    std::io::Write::flush(&mut buffered).map_err(|e| DataError::io(path, e))?;
    drop(buffered);
    file.commit().map_err(DataError::from)
}

/// An 8-bit RGB image, `pixels[(row * width + col) * 3 + channel]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage8 {
    /// Number of columns.
    pub width: usize,
    /// Number of rows.
    pub height: usize,
    /// Samples, shape `[height, width, 3]`, row-major, channels R, G, B.
    pub pixels: Vec<u8>,
}

impl RgbImage8 {
    /// Wraps a sample buffer, checking that it holds `width * height * 3` values.
    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Result<Self, DataError> {
        let expected = width.saturating_mul(height).saturating_mul(3);
        if pixels.len() != expected {
            return Err(DataError::Shape {
                what: "RGB image samples",
                expected,
                found: pixels.len(),
            });
        }
        Ok(RgbImage8 {
            width,
            height,
            pixels,
        })
    }

    /// RGB at integer pixel `(col, row)`, `None` outside the image.
    pub fn get(&self, col: isize, row: isize) -> Option<[u8; 3]> {
        if col < 0 || row < 0 || col as usize >= self.width || row as usize >= self.height {
            return None;
        }
        let i = (row as usize * self.width + col as usize) * 3;
        self.pixels.get(i..i + 3).map(|s| [s[0], s[1], s[2]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy_linear_interpolation() {
        let img = GrayImage16::new(5, 1, vec![10, 0, 40, 20, 30]).unwrap();
        // numpy.percentile([0,10,20,30,40], [0, 25, 50, 90, 100]) = [0, 10, 20, 36, 40]
        assert_eq!(
            img.percentiles(&[0.0, 25.0, 50.0, 90.0, 100.0]),
            vec![0.0, 10.0, 20.0, 36.0, 40.0]
        );
        assert_eq!(img.mean(), 20.0);
    }

    #[test]
    fn shape_is_checked() {
        assert!(matches!(
            GrayImage16::new(3, 2, vec![0; 5]),
            Err(DataError::Shape {
                expected: 6,
                found: 5,
                ..
            })
        ));
    }

    #[test]
    fn frame_round_trips_and_shifts() {
        let f = ImageFrame {
            origin_um: [1062.5, 212.5],
            um_per_px: 0.2125,
        };
        let px = f.um_to_px([1062.5 + 0.2125 * 10.0, 212.5 + 0.2125 * 3.0]);
        assert!(
            (px[0] - 10.0).abs() < 1e-3 && (px[1] - 3.0).abs() < 1e-3,
            "{px:?}"
        );
        let um = f.px_to_um(px);
        assert!((um[0] - 1064.625).abs() < 1e-3);
        let g = f.shifted([2.0, -1.0]);
        let q = g.um_to_px([1064.625, 213.1375]);
        assert!(
            (q[0] - 12.0).abs() < 1e-3 && (q[1] - 2.0).abs() < 1e-3,
            "{q:?}"
        );
        // Corner convention: the corner of pixel 0 maps to -0.5, its centre to 0.
        let c = XENIUM_CROP_FRAME;
        assert!((c.um_to_px([1062.5, 212.5])[0] + 0.5).abs() < 1e-3);
        assert!(c.um_to_px([1062.5 + 0.10625, 212.5 + 0.10625])[1].abs() < 1e-3);
    }

    #[test]
    fn intensity_scale_clamps() {
        let s = IntensityScale {
            lo: 100.0,
            hi: 300.0,
        };
        assert_eq!(
            (s.apply(0.0), s.apply(200.0), s.apply(1000.0)),
            (0.0, 0.5, 1.0)
        );
        let flat = IntensityScale { lo: 5.0, hi: 5.0 };
        assert_eq!((flat.apply(5.0), flat.apply(6.0)), (0.0, 1.0));
    }
}
