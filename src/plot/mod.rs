//! Figures as PNGs, drawn in plain Rust: an RGB [`Canvas`] with alpha-blended circles, lines,
//! rectangles and a built-in 5 × 7 [`font`]; a categorical [`palette`]; and charts:
//! [`scatter_png`] (e.g. a UMAP coloured by cluster), [`spatial_map_png`] (clusters over the
//! DAPI image), [`tile_map_png`] (tiles such as niches coloured by cluster over it) and [`heatmap_png`] (confusion matrices, enrichment tables).
//!
//! Text never leaves the canvas: titles wrap (or shrink) to the figure's width, long class
//! names end in an ellipsis, and every text box is recorded in [`Canvas::text_boxes`] so tests
//! can check that nothing clips or overlaps.
//!
//! Rendering (`render_*`) is pure and builds everywhere; writing PNGs needs `native-io`.
//! Files are written atomically (temporary file, then rename). Errors are [`PlotError`].

pub mod canvas;
pub mod charts;
pub mod error;
pub mod font;
pub mod palette;

pub use canvas::{Canvas, Rgb, TextBox};
#[cfg(feature = "native-io")]
pub use charts::{heatmap_png, scatter_png, spatial_map_png, tile_map_png};
pub use charts::{
    render_heatmap, render_scatter, render_spatial_map, render_tile_map, Figure, HEATMAP_COL_LABEL_MAX,
    HEATMAP_ROW_LABEL_MAX, SCATTER_PLOT_SIDE,
    SPATIAL_MAP_MAX_SIDE,
};
pub use error::PlotError;
pub use font::{
    fit_text, text_height, text_width, wrap_text, ELLIPSIS, GLYPH_ADVANCE, GLYPH_HEIGHT, GLYPH_WIDTH,
};
pub use palette::{category_color, viridis, CATEGORICAL};
