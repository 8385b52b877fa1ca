//! Confusion-matrix heatmaps as RGB PNG, labelled with a built-in 5 × 7 bitmap font
//! (upper-case letters, digits and `/+-_.,():%=?`; lower case is drawn as upper case).

use std::path::Path;

use super::TrainError;

/// 5 × 7 glyphs: each row's low 5 bits, most significant bit leftmost.
const FONT: &[(char, [u8; 7])] = &[
    (
        'A',
        [
            0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001,
        ],
    ),
    (
        'B',
        [
            0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110,
        ],
    ),
    (
        'C',
        [
            0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110,
        ],
    ),
    (
        'D',
        [
            0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100,
        ],
    ),
    (
        'E',
        [
            0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111,
        ],
    ),
    (
        'F',
        [
            0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000,
        ],
    ),
    (
        'G',
        [
            0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111,
        ],
    ),
    (
        'H',
        [
            0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001,
        ],
    ),
    (
        'I',
        [
            0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110,
        ],
    ),
    (
        'J',
        [
            0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100,
        ],
    ),
    (
        'K',
        [
            0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001,
        ],
    ),
    (
        'L',
        [
            0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111,
        ],
    ),
    (
        'M',
        [
            0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001,
        ],
    ),
    (
        'N',
        [
            0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001,
        ],
    ),
    (
        'O',
        [
            0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110,
        ],
    ),
    (
        'P',
        [
            0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000,
        ],
    ),
    (
        'Q',
        [
            0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101,
        ],
    ),
    (
        'R',
        [
            0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001,
        ],
    ),
    (
        'S',
        [
            0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110,
        ],
    ),
    (
        'T',
        [
            0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100,
        ],
    ),
    (
        'U',
        [
            0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110,
        ],
    ),
    (
        'V',
        [
            0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100,
        ],
    ),
    (
        'W',
        [
            0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010,
        ],
    ),
    (
        'X',
        [
            0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001,
        ],
    ),
    (
        'Y',
        [
            0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100,
        ],
    ),
    (
        'Z',
        [
            0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111,
        ],
    ),
    (
        '0',
        [
            0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110,
        ],
    ),
    (
        '1',
        [
            0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110,
        ],
    ),
    (
        '2',
        [
            0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111,
        ],
    ),
    (
        '3',
        [
            0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110,
        ],
    ),
    (
        '4',
        [
            0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010,
        ],
    ),
    (
        '5',
        [
            0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110,
        ],
    ),
    (
        '6',
        [
            0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110,
        ],
    ),
    (
        '7',
        [
            0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000,
        ],
    ),
    (
        '8',
        [
            0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110,
        ],
    ),
    (
        '9',
        [
            0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100,
        ],
    ),
    (
        '/',
        [
            0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000,
        ],
    ),
    (
        '-',
        [
            0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000,
        ],
    ),
    (
        '+',
        [
            0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000,
        ],
    ),
    (
        '_',
        [
            0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111,
        ],
    ),
    (
        '.',
        [
            0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100,
        ],
    ),
    (
        ',',
        [
            0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000,
        ],
    ),
    (
        '(',
        [
            0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010,
        ],
    ),
    (
        ')',
        [
            0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000,
        ],
    ),
    (
        ':',
        [
            0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000,
        ],
    ),
    (
        '%',
        [
            0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011,
        ],
    ),
    (
        '=',
        [
            0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000,
        ],
    ),
    (
        ' ',
        [
            0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000,
        ],
    ),
    (
        '?',
        [
            0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b00000, 0b00100,
        ],
    ),
];

/// Glyph width, height and advance in font pixels.
const GLYPH_W: usize = 5;
const GLYPH_H: usize = 7;
const ADVANCE: usize = 6;

/// An RGB canvas `[height, width, 3]`.
pub struct Canvas {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Pixels `[height, width, 3]`, row-major.
    pub rgb: Vec<u8>,
}

impl Canvas {
    /// A white canvas.
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            rgb: vec![255; width * height * 3],
        }
    }

    /// Fill a rectangle (clipped to the canvas).
    pub fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, colour: [u8; 3]) {
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(self.width) {
                let at = (yy * self.width + xx) * 3;
                self.rgb[at..at + 3].copy_from_slice(&colour);
            }
        }
    }

    /// Draw `text` with its top-left corner at `(x, y)`, each font pixel `scale × scale`.
    pub fn text(&mut self, x: usize, y: usize, text: &str, scale: usize, colour: [u8; 3]) {
        for (k, ch) in text.chars().enumerate() {
            let up = ch.to_ascii_uppercase();
            let glyph = FONT
                .iter()
                .find(|(c, _)| *c == up)
                .or_else(|| FONT.iter().find(|(c, _)| *c == '?'));
            let Some((_, rows)) = glyph else { continue };
            let gx = x + k * ADVANCE * scale;
            for (r, bits) in rows.iter().enumerate() {
                for c in 0..GLYPH_W {
                    if bits >> (GLYPH_W - 1 - c) & 1 == 1 {
                        self.fill(gx + c * scale, y + r * scale, scale, scale, colour);
                    }
                }
            }
        }
    }

    /// Write as an 8-bit RGB PNG (temporary file + rename).
    pub fn save_png(&self, path: &Path) -> Result<(), TrainError> {
        let io = |source: std::io::Error| TrainError::Io {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("png.tmp");
        {
            let file = std::fs::File::create(&tmp).map_err(io)?;
            let mut enc = png::Encoder::new(
                std::io::BufWriter::new(file),
                self.width as u32,
                self.height as u32,
            );
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            enc.write_header()
                .and_then(|mut w| w.write_image_data(&self.rgb))
                .map_err(|e| io(std::io::Error::other(e)))?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// Width in pixels of `text` drawn at `scale`.
pub fn text_width(text: &str, scale: usize) -> usize {
    text.chars().count() * ADVANCE * scale
}

/// White → dark blue colour for `t` in `[0, 1]`.
fn blues(t: f64) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    [lerp(247.0, 8.0), lerp(251.0, 48.0), lerp(255.0, 107.0)]
}

/// Render a confusion matrix `[true, predicted]` (row-major counts) for `classes`.
///
/// Cells are coloured by the row-normalised fraction (recall) and show the count; rows are
/// labelled `k name` (true class), columns `k` (predicted class); the title sits on top.
pub fn confusion_png(
    path: &Path,
    title: &str,
    classes: &[String],
    confusion: &[u32],
) -> Result<(), TrainError> {
    let k = classes.len();
    let (scale, cell) = (2usize, 44usize);
    let labels: Vec<String> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{i} {c}"))
        .collect();
    let left = labels
        .iter()
        .map(|l| text_width(l, scale))
        .max()
        .unwrap_or(0)
        + 16;
    let top = 3 * (GLYPH_H * scale + 10) + 4;
    let width = (left + k * cell + 16).max(text_width(title, scale) + 20);
    let height = top + k * cell + GLYPH_H * scale + 30;
    let mut canvas = Canvas::new(width, height);
    let black = [0, 0, 0];
    canvas.text(10, 8, title, scale, black);
    canvas.text(
        left,
        8 + GLYPH_H * scale + 10,
        "PREDICTED",
        scale,
        [80, 80, 80],
    );
    for (i, label) in labels.iter().enumerate() {
        let y = top + i * cell + (cell - GLYPH_H * scale) / 2;
        canvas.text(8, y, label, scale, black);
        let col = format!("{i}");
        let x = left + i * cell + (cell - text_width(&col, scale)) / 2;
        canvas.text(x, top - GLYPH_H * scale - 6, &col, scale, black);
    }
    for t in 0..k {
        let row: u32 = confusion
            .get(t * k..(t + 1) * k)
            .map_or(0, |r| r.iter().sum());
        for p in 0..k {
            let n = confusion.get(t * k + p).copied().unwrap_or(0);
            let frac = if row > 0 { n as f64 / row as f64 } else { 0.0 };
            let (x, y) = (left + p * cell, top + t * cell);
            canvas.fill(x, y, cell - 1, cell - 1, blues(frac));
            let s = n.to_string();
            let ink = if frac > 0.5 { [255, 255, 255] } else { black };
            canvas.text(
                x + (cell - text_width(&s, scale)) / 2,
                y + (cell - GLYPH_H * scale) / 2,
                &s,
                scale,
                ink,
            );
        }
    }
    canvas.text(
        10,
        top + k * cell + 12,
        "ROWS: TRUE CLASS, COLOUR: ROW FRACTION",
        1,
        [80, 80, 80],
    );
    canvas.save_png(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyphs_are_distinct_and_text_is_drawn() {
        for (i, (a, ga)) in FONT.iter().enumerate() {
            for (b, gb) in &FONT[i + 1..] {
                assert!(
                    a != b && (ga != gb || *a == ' ' || *b == ' '),
                    "{a} and {b}"
                );
            }
        }
        let mut c = Canvas::new(40, 10);
        c.text(1, 1, "A1", 1, [0, 0, 0]);
        let ink = c.rgb.chunks(3).filter(|p| p[0] == 0).count();
        // 'A' has 18 lit pixels, '1' has 10.
        assert_eq!(ink, 18 + 10);
    }
}
