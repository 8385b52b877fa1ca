//! Data layer: Xenium bundles (transcripts, matrices, cells, morphology and H&E images),
//! AnnData, cell patches, SPATIA niches and tissue regions, a spatial neighbour index,
//! reference profiles (read here; the SingleR-style labelling is
//! [`crate::analysis::annotate_singler`]), and validation of in-memory (browser) inputs.
//!
//! Pure algorithms (count tables, alignment check, patch resampling, niches, neighbours, input
//! validation) build
//! everywhere, wasm32 included, and so do the text parsers' in-memory entry points
//! ([`read_mex_bytes`], [`read_cells_csv_bytes`], [`read_transcripts_csv_bytes`]: the same
//! parsers as the file readers); file readers and writers need the `native-io` feature.
//!
//! The example data is the Xenium breast crop shipped in the `bidcell==1.0.3` wheel, installed
//! by `scripts/fetch_data.sh` under [`default_data_dir`]; [`BidcellData`] locates its files.

#![warn(missing_docs)]

pub mod alignment;
pub mod error;
pub mod he;
pub mod image;
pub mod input;
pub mod manifest;
pub mod neighbors;
pub mod niches;
pub mod morphology;
pub mod patches;
pub mod reference;
pub mod sparse;
pub mod xenium;
// Xenium's zarr outputs (a minimal Zarr v2 reader) and protein channels (XOA 4).
pub mod protein;
pub mod xenium_zarr;
pub mod zarr;

mod csv_util;
mod tiff_ifd;

// Xenium output-bundle readers: MEX cell-feature matrix, cells.csv / cells.parquet,
// transcripts.parquet, experiment.xenium.
#[cfg(feature = "native-io")]
pub mod bundle;
pub mod cells_table;
pub mod mex;
#[cfg(feature = "native-io")]
pub use bundle::{MatrixSource, XeniumBundle};
#[cfg(feature = "native-io")]
pub mod parquet;
#[cfg(feature = "native-io")]
pub use self::parquet::{
    is_parquet_file, parquet_by_content, read_cells_parquet, read_transcripts_parquet, BATCH_ROWS, PARQUET_MAGIC,
};
pub use cells_table::{attach_centroids, read_cells_csv_bytes, CellsTable};
#[cfg(feature = "native-io")]
pub use cells_table::{read_cells_csv, write_cells_csv};
pub use manifest::{parse_manifest, XeniumManifest, MANIFEST_FILE};
#[cfg(feature = "native-io")]
pub use manifest::{read_manifest, read_manifest_in};
pub use mex::{read_mex_bytes, SparseCellMatrix};
#[cfg(feature = "native-io")]
pub use mex::{read_mex_dir, read_mex_dir_csr, write_mex_dir};

// HDF5 formats through the pure-Rust `hdf5-pure` crate: 10x cell_feature_matrix.h5 and
// AnnData .h5ad; per-cell predictions as CSV or .h5ad.
#[cfg(feature = "native-io")]
pub mod anndata;
#[cfg(feature = "native-io")]
pub mod anndata_zarr;
#[cfg(feature = "native-io")]
pub mod h5_10x;
#[cfg(feature = "native-io")]
mod hdf5;
#[cfg(feature = "native-io")]
pub mod predictions;
#[cfg(feature = "native-io")]
pub use anndata::{read_h5ad, AnnData, Categorical, Column, ColumnValues, Embedding, XMatrix};
#[cfg(feature = "native-io")]
pub use h5_10x::{read_10x_h5, read_10x_h5_protein, write_10x_h5, TenxH5Cells};
#[cfg(feature = "native-io")]
pub use predictions::{write_predictions_csv, write_predictions_h5ad, Predictions};
#[cfg(feature = "native-io")]
pub use anndata_zarr::write_predictions_anndata_zarr;
#[cfg(feature = "native-io")]
pub mod xenium_explorer;
#[cfg(feature = "native-io")]
pub use xenium_explorer::{write_xenium_explorer_groups, XENIUM_EXPLORER_MIN_CONFIDENCE};

pub use alignment::{check_alignment, AlignmentReport};
pub use error::DataError;
pub use he::{HeAlignment, Matrix3};
#[cfg(feature = "native-io")]
pub use he::{find_he_files, read_he_alignment_csv, read_he_level, HeFiles};
pub use image::{
    downsample_gray8, DownsampledPng, GrayImage16, GrayImage8, ImageFrame, IntensityScale,
    RgbImage8, XENIUM_CROP_FRAME,
};
pub use input::{check_model_panel, CellInput, CountsInput, InputValues, PatchInput, ProteinInput, ValidatedInput};
pub use reference::{Reference, REFERENCE_METADATA_COLUMNS};
pub use neighbors::{squared_distance, Neighbor, SelfMatch, SpatialIndex};
pub use niches::{
    Niche, NicheGrid, NicheOptions, TissueRegion, DEFAULT_NICHE_TILE_PX, DEFAULT_REGION_NICHES,
};
pub use sparse::CsrCounts;
pub use protein::{ProteinMatrix, ScalingSource, PROTEIN_EXPRESSION};
pub use xenium_zarr::{
    cell_id_string, read_cell_feature_matrix_zarr, read_cells_zarr, read_xenium_zarr_bytes, CELLS_ZARR,
    CELL_FEATURE_MATRIX_ZARR,
};
#[cfg(feature = "native-io")]
pub use xenium_zarr::{read_cell_feature_matrix_zarr_file, read_cells_zarr_file};
pub use zarr::ZarrStore;
pub use morphology::{
    choose_level, level_frame, max_projection, parse_ome_xml, LevelImage, MorphologyLayout,
    OmeMetadata, PyramidLevel, ReadStats, LEGACY_FOCUS_CHANNELS, MORPHOLOGY_EXPECTED,
};
pub use morphology::{BytesSource, FileSource, PyramidTiff, TiffSource, DEFAULT_MAX_DECODED_BYTES, WINDOW_CACHE_BYTES};
#[cfg(feature = "native-io")]
pub use morphology::{find_morphology, MorphologyFiles};
pub use patches::{
    cellsymphony_crops, cellsymphony_he_crops, extents_from_area, extents_from_transcripts,
    extract_he_patch, extract_patch, extract_patch_in, extract_patch_scaled, model_patches, nucleus_centres,
    patch_reach_px, spatia_crops, PixelWindow,
    CellExtent, CropSpec, EdgePolicy, Patch, RgbPatch, SpatiaCrop, SpatiaScale,
    MIN_CELL_SIDE_UM,
};
pub use xenium::{
    is_gene_codeword_category, keep_transcript, log_normalise, read_transcripts_csv_bytes,
    read_transcripts_table_bytes, CellTable, TranscriptOptions, Transcripts,
};

#[cfg(feature = "native-io")]
pub use image::{downsample_to_png, read_tiff_gray16, write_png_8bit};
#[cfg(feature = "native-io")]
pub use reference::read_reference_csv;
#[cfg(feature = "native-io")]
pub use bundle::{read_cells_table, read_transcripts, read_transcripts_csv};

#[cfg(feature = "native-io")]
use std::path::{Path, PathBuf};

/// Directory of the unpacked `bidcell==1.0.3` wheel:
/// `$CELLSYMPHONY_DATA/bidcell-1.0.3`, by default `~/.cache/cellsymphony/bidcell-1.0.3`.
#[cfg(feature = "native-io")]
pub fn default_data_dir() -> PathBuf {
    data_root().join("bidcell-1.0.3")
}

/// The data cache root: `$CELLSYMPHONY_DATA`, by default `~/.cache/cellsymphony`.
#[cfg(feature = "native-io")]
pub fn data_root() -> PathBuf {
    match std::env::var_os("CELLSYMPHONY_DATA") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => std::env::var_os("HOME")
            .or_else(|| std::env::var_os("USERPROFILE"))
            .map_or_else(|| PathBuf::from("."), PathBuf::from)
            .join(".cache")
            .join("cellsymphony"),
    }
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

/// scanpy's `10x_pbmc68k_reduced.h5ad` (700 cells × 765 genes, `bulk_labels`), taken from the
/// `scanpy==1.11.5` wheel by `scripts/fetch_data.sh` into
/// `$CELLSYMPHONY_DATA/scanpy-1.11.5/10x_pbmc68k_reduced.h5ad`.
#[cfg(feature = "native-io")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanpyData {
    /// `10x_pbmc68k_reduced.h5ad` (anndata < 0.7 layout: compound `obs`/`var`/`obsm`).
    pub pbmc68k_reduced: PathBuf,
}

#[cfg(feature = "native-io")]
impl ScanpyData {
    /// Locates the file under `dir` (the `scanpy-1.11.5` folder), failing with
    /// [`DataError::DataMissing`] ("run scripts/fetch_data.sh") when it is absent.
    pub fn locate(dir: &Path) -> Result<Self, DataError> {
        let pbmc68k_reduced = dir.join("10x_pbmc68k_reduced.h5ad");
        if !pbmc68k_reduced.is_file() {
            return Err(DataError::DataMissing {
                path: pbmc68k_reduced,
            });
        }
        Ok(ScanpyData { pbmc68k_reduced })
    }

    /// [`ScanpyData::locate`] in `$CELLSYMPHONY_DATA/scanpy-1.11.5` ([`data_root`]).
    pub fn from_default_dir() -> Result<Self, DataError> {
        Self::locate(&data_root().join("scanpy-1.11.5"))
    }
}
