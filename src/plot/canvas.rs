//! An RGB raster with alpha-blended primitives (filled circles, lines, rectangles) and text.

#[cfg(feature = "native-io")]
use std::path::Path;

use super::error::PlotError;
use super::font::{glyph, GLYPH_ADVANCE, GLYPH_HEIGHT};

/// An RGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// White.
    pub const WHITE: Rgb = Rgb(255, 255, 255);
    /// Black.
    pub const BLACK: Rgb = Rgb(0, 0, 0);
    /// Mid grey, for axes and missing values.
    pub const GREY: Rgb = Rgb(128, 128, 128);

    /// Relative luminance in `[0, 1]` (Rec. 709 weights on the 8-bit values), for choosing
    /// black or white text on a coloured background.
    pub fn luminance(self) -> f32 {
        (0.2126 * f32::from(self.0) + 0.7152 * f32::from(self.1) + 0.0722 * f32::from(self.2))
            / 255.0
    }
}

/// The pixel rectangle a piece of text covers: top-left `(x, y)`, size `w × h` (may reach
/// outside the canvas when the text did not fit; a figure's layout must keep it inside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextBox {
    /// Left column.
    pub x: isize,
    /// Top row.
    pub y: isize,
    /// Width in pixels.
    pub w: usize,
    /// Height in pixels.
    pub h: usize,
    /// The text drawn.
    pub text: String,
}

impl TextBox {
    /// Whether the box lies entirely inside a `width × height` canvas.
    pub fn inside(&self, width: usize, height: usize) -> bool {
        self.x >= 0
            && self.y >= 0
            && self.x as usize + self.w <= width
            && self.y as usize + self.h <= height
    }

    /// Whether two boxes share a pixel.
    pub fn overlaps(&self, other: &TextBox) -> bool {
        let (ax1, ay1) = (self.x + self.w as isize, self.y + self.h as isize);
        let (bx1, by1) = (other.x + other.w as isize, other.y + other.h as isize);
        self.x < bx1 && other.x < ax1 && self.y < by1 && other.y < ay1
    }
}

/// An RGB image, `pixels[(row * width + col) * 3 + channel]`, origin top-left, with the layout
/// of the text drawn on it (for tests: nothing clipped, nothing overlapping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canvas {
    /// Number of columns.
    pub width: usize,
    /// Number of rows.
    pub height: usize,
    /// RGB bytes, shape `[height, width, 3]`, row-major.
    pub pixels: Vec<u8>,
    /// Box of every non-empty [`Canvas::text`] / [`Canvas::text_vertical`] call, in order.
    pub text_boxes: Vec<TextBox>,
    /// Font pixels that fell outside the canvas (clipped text); 0 in a good layout.
    pub text_pixels_clipped: usize,
}

impl Canvas {
    /// A `width × height` canvas filled with `background`.
    pub fn new(width: usize, height: usize, background: Rgb) -> Self {
        let mut pixels = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            pixels.extend_from_slice(&[background.0, background.1, background.2]);
        }
        Canvas {
            width,
            height,
            pixels,
            text_boxes: Vec::new(),
            text_pixels_clipped: 0,
        }
    }

    /// Colour at `(col, row)`, `None` outside the canvas.
    pub fn get(&self, col: usize, row: usize) -> Option<Rgb> {
        if col >= self.width || row >= self.height {
            return None;
        }
        let i = (row * self.width + col) * 3;
        Some(Rgb(self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]))
    }

    /// Blends `color` over pixel `(col, row)` with opacity `alpha` (`0..=1`); pixels outside
    /// the canvas are ignored.
    pub fn blend(&mut self, col: isize, row: isize, color: Rgb, alpha: f32) {
        if col < 0 || row < 0 || col as usize >= self.width || row as usize >= self.height {
            return;
        }
        let a = alpha.clamp(0.0, 1.0);
        if a <= 0.0 {
            return;
        }
        let i = (row as usize * self.width + col as usize) * 3;
        for (c, new) in [color.0, color.1, color.2].into_iter().enumerate() {
            let old = f32::from(self.pixels[i + c]);
            self.pixels[i + c] = (old + (f32::from(new) - old) * a).round() as u8;
        }
    }

    /// Fills the rectangle with top-left `(x, y)` and size `w × h` (clipped to the canvas).
    pub fn fill_rect(&mut self, x: isize, y: isize, w: usize, h: usize, color: Rgb, alpha: f32) {
        for row in y..y + h as isize {
            for col in x..x + w as isize {
                self.blend(col, row, color, alpha);
            }
        }
    }

    /// Draws the 1-pixel outline of a rectangle.
    pub fn stroke_rect(&mut self, x: isize, y: isize, w: usize, h: usize, color: Rgb) {
        if w == 0 || h == 0 {
            return;
        }
        let (r, b) = (x + w as isize - 1, y + h as isize - 1);
        self.line([x as f32, y as f32], [r as f32, y as f32], color, 1.0);
        self.line([x as f32, b as f32], [r as f32, b as f32], color, 1.0);
        self.line([x as f32, y as f32], [x as f32, b as f32], color, 1.0);
        self.line([r as f32, y as f32], [r as f32, b as f32], color, 1.0);
    }

    /// Fills a disc of `radius` pixels centred at continuous pixel coordinates `centre`
    /// (`[col, row]`, pixel centres at integers), anti-aliased over a one-pixel rim.
    pub fn fill_circle(&mut self, centre: [f32; 2], radius: f32, color: Rgb, alpha: f32) {
        if !(centre[0].is_finite() && centre[1].is_finite() && radius > 0.0) {
            return;
        }
        let reach = radius + 0.5;
        let (c0, c1) = ((centre[0] - reach).floor(), (centre[0] + reach).ceil());
        let (r0, r1) = ((centre[1] - reach).floor(), (centre[1] + reach).ceil());
        for row in r0 as isize..=r1 as isize {
            for col in c0 as isize..=c1 as isize {
                let dx = col as f32 - centre[0];
                let dy = row as f32 - centre[1];
                let coverage = (radius + 0.5 - (dx * dx + dy * dy).sqrt()).clamp(0.0, 1.0);
                if coverage > 0.0 {
                    self.blend(col, row, color, alpha * coverage);
                }
            }
        }
    }

    /// Draws a line of `width` pixels between continuous pixel coordinates `from` and `to`
    /// (solid core, no anti-aliasing: axis-aligned lines land exactly on pixels).
    pub fn line(&mut self, from: [f32; 2], to: [f32; 2], color: Rgb, width: f32) {
        let (dx, dy) = (to[0] - from[0], to[1] - from[1]);
        if !(dx.is_finite() && dy.is_finite()) {
            return;
        }
        let steps = dx.abs().max(dy.abs()).ceil().max(1.0) as usize;
        let half = ((width.max(1.0) - 1.0) / 2.0).round() as isize;
        for s in 0..=steps {
            let t = s as f32 / steps as f32;
            let col = (from[0] + dx * t).round() as isize;
            let row = (from[1] + dy * t).round() as isize;
            for oy in -half..=half {
                for ox in -half..=half {
                    self.blend(col + ox, row + oy, color, 1.0);
                }
            }
        }
    }

    /// One font pixel: a `s × s` block at `(x, y)`, counted in
    /// [`Canvas::text_pixels_clipped`] when any of it is off the canvas.
    fn font_pixel(&mut self, x: isize, y: isize, s: usize, color: Rgb) {
        let inside = x >= 0
            && y >= 0
            && x as usize + s <= self.width
            && y as usize + s <= self.height;
        if !inside {
            self.text_pixels_clipped += 1;
        }
        self.fill_rect(x, y, s, s, color, 1.0);
    }

    fn record_text(&mut self, x: isize, y: isize, w: usize, h: usize, text: &str) {
        if !text.is_empty() {
            self.text_boxes.push(TextBox { x, y, w, h, text: text.to_string() });
        }
    }

    /// Draws `text` with its top-left corner at `(x, y)`, each font pixel a `scale × scale`
    /// block; returns the drawn width ([`super::font::text_width`]). The box
    /// (`text_width × text_height`) is recorded in [`Canvas::text_boxes`].
    pub fn text(&mut self, x: isize, y: isize, text: &str, color: Rgb, scale: usize) -> usize {
        let s = scale.max(1) as isize;
        let w = super::font::text_width(text, scale.max(1));
        self.record_text(x, y, w, GLYPH_HEIGHT * s as usize, text);
        for (i, ch) in text.chars().enumerate() {
            let gx = x + (i * GLYPH_ADVANCE) as isize * s;
            for (col, bits) in glyph(ch).iter().enumerate() {
                for row in 0..GLYPH_HEIGHT {
                    if bits >> row & 1 == 1 {
                        self.font_pixel(gx + col as isize * s, y + row as isize * s, s as usize, color);
                    }
                }
            }
        }
        super::font::text_width(text, scale.max(1))
    }

    /// Draws `text` rotated 90° counter-clockwise (reading bottom to top), with the glyph tops
    /// at column `x` and the first character's baseline end at row `y`. The box
    /// (`text_height` wide, `text_width` tall, bottom row `y`) is recorded in
    /// [`Canvas::text_boxes`].
    pub fn text_vertical(&mut self, x: isize, y: isize, text: &str, color: Rgb, scale: usize) {
        let s = scale.max(1) as isize;
        let w = super::font::text_width(text, scale.max(1));
        self.record_text(x, y - w as isize + 1, GLYPH_HEIGHT * s as usize, w, text);
        for (i, ch) in text.chars().enumerate() {
            let gy = y - (i * GLYPH_ADVANCE) as isize * s;
            for (col, bits) in glyph(ch).iter().enumerate() {
                for row in 0..GLYPH_HEIGHT {
                    if bits >> row & 1 == 1 {
                        // Glyph (col, row) → canvas (x + row, y - col).
                        self.font_pixel(x + row as isize * s, gy - col as isize * s - (s - 1), s as usize, color);
                    }
                }
            }
        }
    }

    /// Copies an 8-bit grayscale raster (`[h, w]`) onto the canvas with its top-left corner at
    /// `(x, y)`, clipped.
    pub fn draw_gray(
        &mut self,
        x: isize,
        y: isize,
        w: usize,
        h: usize,
        gray: &[u8],
    ) -> Result<(), PlotError> {
        if gray.len() != w * h {
            return Err(PlotError::Shape {
                what: format!("grayscale background [{h}, {w}]"),
                expected: w * h,
                found: gray.len(),
            });
        }
        for r in 0..h {
            for c in 0..w {
                let v = gray[r * w + c];
                self.blend(x + c as isize, y + r as isize, Rgb(v, v, v), 1.0);
            }
        }
        Ok(())
    }

    /// Writes the canvas as an 8-bit RGB PNG, atomically (temporary file, then rename).
    #[cfg(feature = "native-io")]
    pub fn write_png(&self, path: &Path) -> Result<(), PlotError> {
        crate::data::write_png_8bit(
            path,
            self.width,
            self.height,
            png::ColorType::Rgb,
            &self.pixels,
        )?;
        Ok(())
    }
}
