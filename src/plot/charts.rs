//! Figures: a labelled 2-D scatter, clusters over the DAPI image (cells as dots or tiles such
//! as niches as squares), and an annotated heatmap.
//!
//! Each figure has a `render_*` function returning a [`Figure`] (the canvas plus where each
//! data point landed, for overlays and tests) and a `*_png` wrapper that writes it atomically.

#[cfg(feature = "native-io")]
use std::path::Path;

use super::canvas::{Canvas, Rgb};
use super::error::PlotError;
use super::font::{fit_text, text_height, text_width, wrap_text};
use super::palette::{category_color, viridis};
use crate::data::{downsample_gray8, GrayImage16, ImageFrame};

/// Longer side (pixels) the DAPI background of [`render_spatial_map`] is downsampled to, at
/// most.
pub const SPATIAL_MAP_MAX_SIDE: usize = 1000;
/// Side of the square data area of [`render_scatter`], in pixels.
pub const SCATTER_PLOT_SIDE: usize = 640;

const BACKGROUND: Rgb = Rgb::WHITE;
const TITLE_SCALE: usize = 2;
const PAD: usize = 10;
/// Widest legend entry (pixels); longer class names end in an ellipsis.
const LEGEND_MAX_TEXT: usize = 260;
/// Legends with more entries than this use the small font.
const LEGEND_LARGE_MAX: usize = 24;
/// Widest heatmap row label (pixels) before an ellipsis.
pub const HEATMAP_ROW_LABEL_MAX: usize = 320;
/// Tallest heatmap column label (written vertically, pixels) before an ellipsis.
pub const HEATMAP_COL_LABEL_MAX: usize = 200;
/// Widest a title alone makes a heatmap (pixels); longer titles wrap.
const TITLE_MAX_WIDTH: usize = 640;

/// A title wrapped to a width: up to 4 lines at [`TITLE_SCALE`], or, when that would cut it,
/// up to 5 lines at scale 1 (then an ellipsis ends the last line).
struct TitleLayout {
    lines: Vec<String>,
    scale: usize,
}

impl TitleLayout {
    fn new(title: &str, width: usize) -> Self {
        let width = width.max(1);
        let whole: Vec<&str> = title.split_whitespace().collect();
        let large = wrap_text(title, width, TITLE_SCALE, 4);
        let joined = large.join(" ");
        if joined.split_whitespace().eq(whole.iter().copied()) {
            return TitleLayout { lines: large, scale: TITLE_SCALE };
        }
        TitleLayout { lines: wrap_text(title, width, 1, 5), scale: 1 }
    }

    fn line_height(&self) -> usize {
        text_height(self.scale) + 2 * self.scale
    }

    /// Height of the title block in pixels.
    fn height(&self) -> usize {
        self.lines.len() * self.line_height()
    }

    fn draw(&self, canvas: &mut Canvas, x: usize, y: usize) {
        for (i, line) in self.lines.iter().enumerate() {
            canvas.text(x as isize, (y + i * self.line_height()) as isize, line, Rgb::BLACK, self.scale);
        }
    }
}

/// Legend entries as drawn (names shortened to [`LEGEND_MAX_TEXT`]) and their font scale.
fn legend_names(names: &[String]) -> (Vec<String>, usize) {
    let scale = if names.len() <= LEGEND_LARGE_MAX { 2 } else { 1 };
    (names.iter().map(|n| fit_text(n, LEGEND_MAX_TEXT, scale)).collect(), scale)
}

/// A rendered figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The image.
    pub canvas: Canvas,
    /// Canvas position `[col, row]` of each data point (scatter / spatial map: one per point,
    /// `NaN` for points that were not drawn; heatmap: the centre of each cell, `[rows, cols]`).
    pub points_px: Vec<[f32; 2]>,
}

/// Checks labels against names: one label per point, each `< names.len()`.
fn check_labels(labels: &[u32], n: usize, names: &[String]) -> Result<(), PlotError> {
    if labels.len() != n {
        return Err(PlotError::Shape {
            what: "labels".to_string(),
            expected: n,
            found: labels.len(),
        });
    }
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= names.len())
    {
        return Err(PlotError::InvalidArgument {
            name: "labels",
            value: format!("labels[{i}] = {l}"),
            expected: format!("labels below names.len() = {}", names.len()),
        });
    }
    Ok(())
}

/// Dot radius for `n` points.
fn dot_radius(n: usize) -> f32 {
    match n {
        0..=2_000 => 3.0,
        2_001..=20_000 => 2.0,
        _ => 1.2,
    }
}

/// Legend size (width, height) for `names` at `scale`.
fn legend_size(names: &[String], scale: usize) -> (usize, usize) {
    let line = text_height(scale) + 6;
    let w = names
        .iter()
        .map(|n| text_width(n, scale))
        .max()
        .unwrap_or(0);
    (w + 4 * scale + 2 * PAD + 12, names.len() * line + PAD)
}

/// Draws a legend (coloured dot + name per category) with its top-left corner at `(x, y)`.
fn draw_legend(canvas: &mut Canvas, x: usize, y: usize, names: &[String], scale: usize) {
    let line = text_height(scale) + 6;
    for (i, name) in names.iter().enumerate() {
        let cy = y + i * line + line / 2;
        let r = 2.0 * scale as f32;
        canvas.fill_circle([(x + PAD) as f32 + r, cy as f32], r, category_color(i), 1.0);
        canvas.text(
            (x + PAD + 4 * scale + 10) as isize,
            (cy - text_height(scale) / 2 + scale / 2) as isize,
            name,
            Rgb::BLACK,
            scale,
        );
    }
}

/// "Nice" tick values (steps of 1, 2 or 5 × 10^k) covering `[lo, hi]`, about `target` many.
fn nice_ticks(lo: f32, hi: f32, target: usize) -> Vec<f32> {
    let span = (hi - lo).abs();
    if !(span.is_finite()) || span == 0.0 {
        return vec![lo];
    }
    let raw = span / target.max(1) as f32;
    let mag = 10f32.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f32 * step).collect()
}

/// Short label for a number: integers as such, otherwise 3 significant digits.
fn format_number(v: f64) -> String {
    if !v.is_finite() {
        return "NA".to_string();
    }
    if v == v.round() && v.abs() < 1e6 {
        return format!("{}", v as i64);
    }
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.01 {
        format!("{v:.2}")
    } else {
        format!("{v:.1e}")
    }
}

/// Renders a scatter plot of `xy` (`[n, 2]`, row-major) coloured by `labels` (`< names.len()`)
/// with a legend (`names`, colours from [`category_color`]), axes with ticks, and `title`.
///
/// The data area is [`SCATTER_PLOT_SIDE`] pixels square with equal x and y scales (so a UMAP's
/// shape is kept). Errors: mis-shaped `xy` / `labels`, a label without a name, non-finite
/// coordinates, no points.
pub fn render_scatter(
    xy: &[f32],
    labels: &[u32],
    names: &[String],
    title: &str,
) -> Result<Figure, PlotError> {
    if xy.is_empty() || !xy.len().is_multiple_of(2) {
        return Err(PlotError::Shape {
            what: "xy [n, 2]".to_string(),
            expected: xy.len().max(2).next_multiple_of(2),
            found: xy.len(),
        });
    }
    let n = xy.len() / 2;
    check_labels(labels, n, names)?;
    if let Some(i) = xy.iter().position(|v| !v.is_finite()) {
        return Err(PlotError::InvalidArgument {
            name: "xy",
            value: format!("{} at point {}, axis {}", xy[i], i / 2, i % 2),
            expected: "finite coordinates".to_string(),
        });
    }
    let (mut lo, mut hi) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
    for p in xy.chunks_exact(2) {
        for a in 0..2 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    // Equal scales: the larger span fills the square, 4% margin.
    let span = (hi[0] - lo[0]).max(hi[1] - lo[1]).max(1e-6) * 1.08;
    let centre = [(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0];
    let view_lo = [centre[0] - span / 2.0, centre[1] - span / 2.0];
    let side = SCATTER_PLOT_SIDE;
    let (legend, legend_scale) = legend_names(names);
    let (legend_w, legend_h) = legend_size(&legend, legend_scale);
    let y_ticks = nice_ticks(view_lo[1], view_lo[1] + span, 5);
    let y_label_w = y_ticks
        .iter()
        .map(|&t| text_width(&format_number(f64::from(t)), 1))
        .max()
        .unwrap_or(0);
    let left = (PAD + y_label_w + 8).max(40);
    let bottom = 40;
    let width = left + side + PAD + legend_w;
    let title = TitleLayout::new(title, width - left - PAD);
    let top = PAD + title.height() + PAD;
    let height = (top + side + bottom).max(top + legend_h + PAD);
    let mut canvas = Canvas::new(width, height, BACKGROUND);
    title.draw(&mut canvas, left, PAD);
    let to_px = |x: f32, y: f32| -> [f32; 2] {
        [
            left as f32 + (x - view_lo[0]) / span * (side - 1) as f32,
            // y grows upwards in the data, downwards on the canvas.
            (top + side - 1) as f32 - (y - view_lo[1]) / span * (side - 1) as f32,
        ]
    };
    // Axes: frame and ticks with labels.
    canvas.stroke_rect(left as isize, top as isize, side, side, Rgb::GREY);
    for t in nice_ticks(view_lo[0], view_lo[0] + span, 5) {
        let [px, _] = to_px(t, view_lo[1]);
        let base = (top + side) as f32;
        canvas.line([px, base], [px, base + 4.0], Rgb::GREY, 1.0);
        let label = format_number(f64::from(t));
        let w = text_width(&label, 1) as f32;
        canvas.text(
            (px - w / 2.0) as isize,
            (base + 7.0) as isize,
            &label,
            Rgb::BLACK,
            1,
        );
    }
    for t in y_ticks {
        let [_, py] = to_px(view_lo[0], t);
        let l = left as f32;
        canvas.line([l - 5.0, py], [l - 1.0, py], Rgb::GREY, 1.0);
        let label = format_number(f64::from(t));
        let w = text_width(&label, 1) as f32;
        canvas.text(
            (l - 8.0 - w) as isize,
            (py - 3.0) as isize,
            &label,
            Rgb::BLACK,
            1,
        );
    }
    let r = dot_radius(n);
    let mut points_px = Vec::with_capacity(n);
    for (p, &l) in xy.chunks_exact(2).zip(labels) {
        let px = to_px(p[0], p[1]);
        canvas.fill_circle(px, r, category_color(l as usize), 0.85);
        points_px.push(px);
    }
    draw_legend(&mut canvas, left + side + PAD, top, &legend, legend_scale);
    Ok(Figure { canvas, points_px })
}

/// [`render_scatter`] written to `path` as an RGB PNG (atomically).
#[cfg(feature = "native-io")]
pub fn scatter_png(
    path: &Path,
    xy: &[f32],
    labels: &[u32],
    names: &[String],
    title: &str,
) -> Result<Figure, PlotError> {
    let fig = render_scatter(xy, labels, names, title)?;
    fig.canvas.write_png(path)?;
    Ok(fig)
}

/// Renders cells as coloured dots (by `labels`, named by `names`) at their centroids
/// (`centroids_um`, `[x, y]` µm in the slide frame) over the DAPI image `background` placed by
/// `frame`, with a legend, a 50 µm scale bar and `title`.
///
/// The image is box-averaged (factor `ceil(max(width, height) / SPATIAL_MAP_MAX_SIDE)`) and
/// contrast-stretched as by [`crate::data::downsample_to_png`]; cells off the image are not
/// drawn (their `points_px` are `NaN`). Errors: length mismatches, a label without a name, an
/// empty image.
pub fn render_spatial_map(
    background: &GrayImage16,
    frame: &ImageFrame,
    centroids_um: &[[f32; 2]],
    labels: &[u32],
    names: &[String],
    title: &str,
) -> Result<Figure, PlotError> {
    check_labels(labels, centroids_um.len(), names)?;
    let mut map = MapLayout::new(background, names, title)?;
    let r = 3.5;
    let mut points_px = Vec::with_capacity(centroids_um.len());
    for (&um, &l) in centroids_um.iter().zip(labels) {
        if !(um[0].is_finite() && um[1].is_finite() && frame.contains(background, um)) {
            points_px.push([f32::NAN; 2]);
            continue;
        }
        let px = map.to_canvas(frame.um_to_px(um));
        map.canvas.fill_circle(px, r, category_color(l as usize), 0.9);
        points_px.push(px);
    }
    Ok(Figure { canvas: map.finish(frame), points_px })
}

/// Renders image tiles (e.g. niches) as translucent squares coloured by `labels` (named by
/// `names`) over the DAPI image `background` placed by `frame`, with a legend, a 50 µm scale
/// bar and `title`. `tiles_px` holds `[col, row, width, height]` of each tile in pixels of
/// `background`; the DAPI shows through (fill alpha 0.45, outlined in the tile's colour).
///
/// `points_px` of the result is the canvas centre of each tile. Errors: length mismatches, a
/// label without a name, an empty image, a non-finite tile.
pub fn render_tile_map(
    background: &GrayImage16,
    frame: &ImageFrame,
    tiles_px: &[[f32; 4]],
    labels: &[u32],
    names: &[String],
    title: &str,
) -> Result<Figure, PlotError> {
    check_labels(labels, tiles_px.len(), names)?;
    if let Some((i, t)) = tiles_px.iter().enumerate().find(|(_, t)| !t.iter().all(|v| v.is_finite()) || t[2] < 0.0 || t[3] < 0.0) {
        return Err(PlotError::InvalidArgument {
            name: "tiles_px",
            value: format!("tiles_px[{i}] = {t:?}"),
            expected: "finite [col, row, width, height] with width, height >= 0".to_string(),
        });
    }
    let mut map = MapLayout::new(background, names, title)?;
    let mut points_px = Vec::with_capacity(tiles_px.len());
    for (t, &l) in tiles_px.iter().zip(labels) {
        // Tile edges: pixel centres t[0] - 0.5 .. t[0] + t[2] - 0.5 in the source image.
        let a = map.to_canvas([t[0] - 0.5, t[1] - 0.5]);
        let b = map.to_canvas([t[0] + t[2] - 0.5, t[1] + t[3] - 0.5]);
        let (x, y) = (a[0].round() as isize, a[1].round() as isize);
        let (w, h) = ((b[0] - a[0]).round().max(1.0) as usize, (b[1] - a[1]).round().max(1.0) as usize);
        let color = category_color(l as usize);
        map.canvas.fill_rect(x, y, w, h, color, 0.45);
        map.canvas.stroke_rect(x, y, w, h, color);
        points_px.push([(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0]);
    }
    Ok(Figure { canvas: map.finish(frame), points_px })
}

/// What the maps over the DAPI image share: the canvas with the title, the downsampled and
/// contrast-stretched background and the legend drawn; marks go on top, then
/// [`MapLayout::finish`] adds the scale bar.
struct MapLayout {
    canvas: Canvas,
    left: usize,
    top: usize,
    factor: usize,
    image_size: [usize; 2],
}

impl MapLayout {
    fn new(background: &GrayImage16, names: &[String], title: &str) -> Result<Self, PlotError> {
        let factor = background
            .width
            .max(background.height)
            .div_ceil(SPATIAL_MAP_MAX_SIDE)
            .max(1);
        let (gray, _) = downsample_gray8(background, factor)?;
        let (legend, legend_scale) = legend_names(names);
        let (legend_w, legend_h) = legend_size(&legend, legend_scale);
        let left = PAD;
        let width = left + gray.width + PAD + legend_w;
        let title = TitleLayout::new(title, width - 2 * PAD);
        let top = PAD + title.height() + PAD;
        let height = (top + gray.height + PAD).max(top + legend_h + PAD);
        let mut canvas = Canvas::new(width, height, BACKGROUND);
        title.draw(&mut canvas, left, PAD);
        canvas.draw_gray(
            left as isize,
            top as isize,
            gray.width,
            gray.height,
            &gray.pixels,
        )?;
        draw_legend(
            &mut canvas,
            left + gray.width + PAD,
            top,
            &legend,
            legend_scale,
        );
        Ok(MapLayout { canvas, left, top, factor, image_size: [gray.width, gray.height] })
    }

    /// Canvas position of source-image pixel `[col, row]`: source pixel p lands at
    /// downsampled `(p - (factor - 1) / 2) / factor`.
    fn to_canvas(&self, px: [f32; 2]) -> [f32; 2] {
        let half = (self.factor as f32 - 1.0) / 2.0;
        [
            self.left as f32 + (px[0] - half) / self.factor as f32,
            self.top as f32 + (px[1] - half) / self.factor as f32,
        ]
    }

    /// Adds the 50 µm scale bar (bottom-left of the image) and returns the canvas.
    fn finish(mut self, frame: &ImageFrame) -> Canvas {
        let [gw, gh] = self.image_size;
        let bar_px = 50.0 / (frame.um_per_px * self.factor as f32);
        if bar_px.is_finite() && bar_px >= 4.0 && bar_px < gw as f32 / 2.0 {
            let y = (self.top + gh) as f32 - 12.0;
            let x0 = (self.left + 10) as f32;
            self.canvas.line([x0, y], [x0 + bar_px, y], Rgb::WHITE, 3.0);
            self.canvas.text(x0 as isize, (y - 14.0) as isize, "50 um", Rgb::WHITE, 1);
        }
        self.canvas
    }
}

/// [`render_spatial_map`] written to `path` as an RGB PNG (atomically).
#[cfg(feature = "native-io")]
pub fn spatial_map_png(
    path: &Path,
    background: &GrayImage16,
    frame: &ImageFrame,
    centroids_um: &[[f32; 2]],
    labels: &[u32],
    names: &[String],
    title: &str,
) -> Result<Figure, PlotError> {
    let fig = render_spatial_map(background, frame, centroids_um, labels, names, title)?;
    fig.canvas.write_png(path)?;
    Ok(fig)
}

/// [`render_tile_map`] written to `path` as an RGB PNG (atomically).
#[cfg(feature = "native-io")]
pub fn tile_map_png(
    path: &Path,
    background: &GrayImage16,
    frame: &ImageFrame,
    tiles_px: &[[f32; 4]],
    labels: &[u32],
    names: &[String],
    title: &str,
) -> Result<Figure, PlotError> {
    let fig = render_tile_map(background, frame, tiles_px, labels, names, title)?;
    fig.canvas.write_png(path)?;
    Ok(fig)
}

/// Renders `matrix` (`[rows, cols]`, row-major; e.g. a confusion matrix or an enrichment
/// table) as a viridis heatmap between its finite minimum and maximum (NaN cells grey), with
/// row names on the left, column names written vertically on top, a colour bar, `title`, and
/// optionally each value printed in its cell (black or white for contrast).
///
/// `points_px` of the result holds the centre of each cell, `[rows, cols]` row-major. Errors:
/// `matrix.len() != rows * cols`, empty matrix.
pub fn render_heatmap(
    matrix: &[f64],
    row_names: &[String],
    col_names: &[String],
    title: &str,
    annotate_values: bool,
) -> Result<Figure, PlotError> {
    let (rows, cols) = (row_names.len(), col_names.len());
    if rows == 0 || cols == 0 || matrix.len() != rows * cols {
        return Err(PlotError::Shape {
            what: format!("heatmap matrix [{rows} row names, {cols} column names]"),
            expected: rows * cols,
            found: matrix.len(),
        });
    }
    let finite = matrix.iter().copied().filter(|v| v.is_finite());
    let lo = finite.clone().fold(f64::INFINITY, f64::min);
    let hi = finite.fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let label_scale = if rows.max(cols) <= 30 { 2 } else { 1 };
    let value_scale = 1;
    let labels: Vec<String> = matrix.iter().map(|&v| format_number(v)).collect();
    let widest_value = labels
        .iter()
        .map(|l| text_width(l, value_scale))
        .max()
        .unwrap_or(0);
    let base = (720 / rows.max(cols)).clamp(10, 48);
    let (cell_w, cell_h) = if annotate_values {
        (
            base.max(widest_value + 6),
            base.max(text_height(value_scale) + 6),
        )
    } else {
        (base, base)
    };
    let row_names: Vec<String> = row_names
        .iter()
        .map(|n| fit_text(n, HEATMAP_ROW_LABEL_MAX, label_scale))
        .collect();
    let col_names: Vec<String> = col_names
        .iter()
        .map(|n| fit_text(n, HEATMAP_COL_LABEL_MAX, label_scale))
        .collect();
    let row_label_w = row_names
        .iter()
        .map(|s| text_width(s, label_scale))
        .max()
        .unwrap_or(0);
    let col_label_h = col_names
        .iter()
        .map(|s| text_width(s, label_scale))
        .max()
        .unwrap_or(0);
    let left = PAD + row_label_w + 6;
    let grid_w = cols * cell_w;
    let grid_h = rows * cell_h;
    let bar_w = 16;
    let bar_labels = [format_number(hi), format_number(lo)];
    let bar_label_w = bar_labels
        .iter()
        .map(|l| text_width(l, 1))
        .max()
        .unwrap_or(0);
    // The colour bar needs room for its two labels, one above the other.
    let bar_h = grid_h.max(2 * text_height(1) + 2);
    let width = (left + grid_w + 2 * PAD + bar_w + 4 + bar_label_w + PAD)
        .max((2 * PAD + text_width(title, TITLE_SCALE)).min(TITLE_MAX_WIDTH));
    let title = TitleLayout::new(title, width - 2 * PAD);
    let top = PAD + title.height() + PAD + col_label_h + 6;
    let height = top + bar_h + PAD;
    let mut canvas = Canvas::new(width, height, BACKGROUND);
    title.draw(&mut canvas, PAD, PAD);
    let scale = |v: f64| -> f32 {
        if !v.is_finite() {
            f32::NAN
        } else if hi > lo {
            ((v - lo) / (hi - lo)) as f32
        } else {
            0.5
        }
    };
    let mut points_px = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            let v = matrix[r * cols + c];
            let color = viridis(scale(v));
            let (x, y) = (left + c * cell_w, top + r * cell_h);
            canvas.fill_rect(x as isize, y as isize, cell_w, cell_h, color, 1.0);
            let centre = [
                x as f32 + (cell_w as f32 - 1.0) / 2.0,
                y as f32 + (cell_h as f32 - 1.0) / 2.0,
            ];
            points_px.push(centre);
            if annotate_values {
                let label = &labels[r * cols + c];
                let ink = if color.luminance() > 0.5 {
                    Rgb::BLACK
                } else {
                    Rgb::WHITE
                };
                let tw = text_width(label, value_scale) as f32;
                let th = (text_height(value_scale) - value_scale) as f32;
                canvas.text(
                    (centre[0] - tw / 2.0).round() as isize,
                    (centre[1] - th / 2.0).round() as isize,
                    label,
                    ink,
                    value_scale,
                );
            }
        }
    }
    let th = text_height(label_scale);
    for (r, name) in row_names.iter().enumerate() {
        let w = text_width(name, label_scale);
        let y = top + r * cell_h + cell_h / 2;
        canvas.text(
            (left - 6 - w) as isize,
            (y - th / 2 + label_scale / 2) as isize,
            name,
            Rgb::BLACK,
            label_scale,
        );
    }
    for (c, name) in col_names.iter().enumerate() {
        let x = left + c * cell_w + cell_w / 2;
        canvas.text_vertical(
            (x - th / 2 + label_scale / 2) as isize,
            (top - 6) as isize,
            name,
            Rgb::BLACK,
            label_scale,
        );
    }
    // Colour bar.
    let bx = left + grid_w + 2 * PAD;
    for y in 0..bar_h {
        let t = 1.0 - y as f32 / (bar_h.max(2) - 1) as f32;
        canvas.fill_rect(bx as isize, (top + y) as isize, bar_w, 1, viridis(t), 1.0);
    }
    canvas.text(
        (bx + bar_w + 4) as isize,
        top as isize,
        &bar_labels[0],
        Rgb::BLACK,
        1,
    );
    canvas.text(
        (bx + bar_w + 4) as isize,
        (top + bar_h - text_height(1)) as isize,
        &bar_labels[1],
        Rgb::BLACK,
        1,
    );
    Ok(Figure { canvas, points_px })
}

/// [`render_heatmap`] written to `path` as an RGB PNG (atomically).
#[cfg(feature = "native-io")]
pub fn heatmap_png(
    path: &Path,
    matrix: &[f64],
    row_names: &[String],
    col_names: &[String],
    title: &str,
    annotate_values: bool,
) -> Result<Figure, PlotError> {
    let fig = render_heatmap(matrix, row_names, col_names, title, annotate_values)?;
    fig.canvas.write_png(path)?;
    Ok(fig)
}
