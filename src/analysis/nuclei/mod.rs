//! Nucleus detection on a DAPI image, for slides that come without a cells table, and its
//! evaluation against reference nuclei.
//!
//! - [`detect`](mod@detect): scale-normalised Laplacian-of-Gaussian maxima at the nucleus
//!   scale, an Otsu intensity threshold and non-maximum suppression, processed in tiles with a
//!   halo → nucleus centroids in pixels.
//! - [`watershed`]: marker-controlled watershed from the detected peaks → nucleus masks,
//!   areas and mask centroids.
//! - [`stain`]: H&E colour deconvolution (Ruifrok–Johnston) to a haematoxylin image that
//!   detection takes like DAPI.
//! - [`stream`]: the intensity histogram and classifier patches of a level read window by
//!   window, for whole slides.
//! - [`evaluate`]: one-to-one greedy matching of detected to reference centroids within a
//!   distance → precision, recall, F1.
//!
//! Plain Rust on [`GrayImage16`](crate::data::image::GrayImage16); builds everywhere, wasm32
//! included. For H&E, detect on [`stain::haematoxylin`] of the RGB image.
//!
//! **Memory.** The input image is held whole as `u16` (2 bytes/px: read a coarser pyramid level
//! for whole slides, e.g. 0.425 µm/px, which still resolves nuclei); the filters work on one
//! tile at a time: each worker holds three `f32` buffers of `(tile_px + 2·halo)²` values,
//! reported as [`NucleusDetection::tile_bytes`] (≈ 4.9 MB for the default 512 px tiles at
//! 0.2125 µm/px and 8 µm nuclei). The result does not depend on the tile size.

pub mod detect;
pub mod evaluate;
pub mod stain;
pub mod stream;
mod tiles;
pub mod watershed;

pub use detect::{
    detect_nuclei, detect_nuclei_in, detect_nuclei_progress, detect_nuclei_with_histogram, otsu_threshold, Nucleus, NucleusDetection, NucleusImage, NucleusOptions,
    TiffLevelImage, DEFAULT_NUCLEUS_DIAMETER_UM,
};
pub use evaluate::{match_centroids, MatchReport};
pub use stain::{deconvolve_pixel, haematoxylin, RGB_FROM_HED};
pub use stream::{histogram_scale, level_histogram, level_histogram_progress, level_scale, model_patches_in};
pub use watershed::{watershed_nuclei, NucleusMasks};
