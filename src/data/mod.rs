//! Data layer: Xenium transcripts, the DAPI image, nucleus-centred patches and reference labels.
//!
//! Pure algorithms (count tables, alignment check, patch resampling, SingleR labels) build
//! everywhere, wasm32 included; file readers and writers need the `native-io` feature.
//!
//! The example data is the Xenium breast crop shipped in the `bidcell==1.0.3` wheel, installed
//! by `scripts/fetch_data.sh` under [`default_data_dir`]; [`BidcellData`] locates its files.

#![warn(missing_docs)]

pub mod alignment;
pub mod error;
pub mod image;
pub mod labels;
pub mod manifest;
pub mod patches;
pub mod xenium;

#[cfg(feature = "native-io")]
mod csv_util;

// Xenium output-bundle readers: MEX cell-feature matrix, cells.csv / cells.parquet,
// transcripts.parquet, experiment.xenium.
#[cfg(feature = "native-io")]
pub mod cells_table;
#[cfg(feature = "native-io")]
pub mod mex;
#[cfg(feature = "native-io")]
pub mod parquet;
#[cfg(feature = "native-io")]
pub use self::parquet::{
    is_parquet_file, read_cells_parquet, read_transcripts_parquet, BATCH_ROWS, PARQUET_MAGIC,
};
#[cfg(feature = "native-io")]
pub use cells_table::{attach_centroids, read_cells_csv, write_cells_csv, CellsTable};
pub use manifest::{parse_manifest, XeniumManifest, MANIFEST_FILE};
#[cfg(feature = "native-io")]
pub use manifest::{read_manifest, read_manifest_in};
#[cfg(feature = "native-io")]
pub use mex::{read_mex_dir, write_mex_dir};

pub use alignment::{check_alignment, AlignmentReport};
pub use error::DataError;
pub use image::{DownsampledPng, GrayImage16, ImageFrame, IntensityScale, XENIUM_CROP_FRAME};
pub use labels::{
    annotate_singler, log_normalise, spearman, Annotation, AnnotationSummary, Reference,
    SingleROptions,
};
pub use patches::{extract_patch, extract_patch_scaled, EdgePolicy, Patch};
pub use xenium::{
    is_gene_codeword_category, keep_transcript, CellTable, TranscriptOptions, Transcripts,
};

#[cfg(feature = "native-io")]
pub use image::{downsample_to_png, read_tiff_gray16};
#[cfg(feature = "native-io")]
pub use labels::read_reference_csv;
#[cfg(feature = "native-io")]
pub use xenium::{read_transcripts, read_transcripts_csv};

#[cfg(feature = "native-io")]
use std::path::{Path, PathBuf};

/// Directory of the unpacked `bidcell==1.0.3` wheel:
/// `$CELLSYMPHONY_DATA/bidcell-1.0.3`, by default `~/.cache/cellsymphony/bidcell-1.0.3`.
#[cfg(feature = "native-io")]
pub fn default_data_dir() -> PathBuf {
    let root = match std::env::var_os("CELLSYMPHONY_DATA") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => std::env::var_os("HOME")
            .or_else(|| std::env::var_os("USERPROFILE"))
            .map_or_else(|| PathBuf::from("."), PathBuf::from)
            .join(".cache")
            .join("cellsymphony"),
    };
    root.join("bidcell-1.0.3")
}

/// Paths of the BIDCell example files (Xenium breast crop and single-cell reference).
#[cfg(feature = "native-io")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BidcellData {
    /// `transcripts_small.csv`: Xenium transcripts of the crop.
    pub transcripts: PathBuf,
    /// `morphology_mip_small.tif`: DAPI maximum projection, 2400 × 1800 px, uint16.
    pub morphology: PathBuf,
    /// `sc_breast.csv`: 63 pseudo-bulk profiles of 15 breast cell types.
    pub reference: PathBuf,
}

#[cfg(feature = "native-io")]
impl BidcellData {
    /// Locates the files under `dir` (an unpacked wheel), failing with
    /// [`DataError::DataMissing`] ("run scripts/fetch_data.sh") when one is absent.
    pub fn locate(dir: &Path) -> Result<Self, DataError> {
        let data = dir.join("data");
        let crop = data.join("dataset_xenium_breast1_small");
        let found = BidcellData {
            transcripts: crop.join("transcripts_small.csv"),
            morphology: crop.join("morphology_mip_small.tif"),
            reference: data.join("sc_references").join("sc_breast.csv"),
        };
        for path in [&found.transcripts, &found.morphology, &found.reference] {
            if !path.is_file() {
                return Err(DataError::DataMissing { path: path.clone() });
            }
        }
        Ok(found)
    }

    /// [`BidcellData::locate`] in [`default_data_dir`].
    pub fn from_default_dir() -> Result<Self, DataError> {
        Self::locate(&default_data_dir())
    }
}
