//! The downloaded example data. Every loader FAILS (never skips) when the data is missing: the
//! message is the library's `DataMissing` (the missing path, `$CELLSYMPHONY_DATA`) plus
//! [`SETUP_HINT`].

use std::path::PathBuf;
use std::sync::OnceLock;

use cellsymphony::data::{
    default_data_dir, read_tiff_gray16, read_transcripts, BidcellData, CellTable, GrayImage16,
    ScanpyData, TranscriptOptions, Transcripts,
};

/// What to do when the data is missing.
pub const SETUP_HINT: &str = "the integration tests need the downloaded example data: run \
scripts/setup.sh (it runs scripts/fetch_data.sh), or point CELLSYMPHONY_DATA at a copy";

fn missing(e: impl std::fmt::Display) -> ! {
    panic!("{e}\n{SETUP_HINT}")
}

/// Paths of the BIDCell Xenium breast crop (`transcripts`, `morphology`, `reference`) under
/// `$CELLSYMPHONY_DATA` (default `~/.cache/cellsymphony`); panics when a file is missing.
pub fn crop_files() -> BidcellData {
    BidcellData::from_default_dir().unwrap_or_else(|e| missing(e))
}

/// The crop's folder (`default_data_dir()`, what `prepare_crop` and the CLI's `--data` take),
/// checked to hold every file; panics when one is missing.
pub fn data_dir() -> PathBuf {
    let dir = default_data_dir();
    if let Err(e) = BidcellData::locate(&dir) {
        missing(e);
    }
    dir
}

/// scanpy's `10x_pbmc68k_reduced.h5ad`; panics when it is missing.
pub fn scanpy_files() -> ScanpyData {
    ScanpyData::from_default_dir().unwrap_or_else(|e| missing(e))
}

/// scimap's 33-plex CyCIF panel (`scimap_example_33plex.h5ad`: 3,029 cells, obs `cell_type`,
/// obsm `spatial` in pixels) under `$CELLSYMPHONY_DATA/scimap-2.4.1`; panics when missing.
pub fn scimap_33plex() -> PathBuf {
    let root = std::env::var_os("CELLSYMPHONY_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/cellsymphony"));
    let path = root.join("scimap-2.4.1/scimap_example_33plex.h5ad");
    if !path.exists() {
        missing(format!("{} is missing", path.display()));
    }
    path
}

/// The crop's transcripts (default options: qv ≥ 20, controls dropped), read once.
pub fn crop_transcripts() -> &'static Transcripts {
    static T: OnceLock<Transcripts> = OnceLock::new();
    T.get_or_init(|| {
        read_transcripts(&crop_files().transcripts, &TranscriptOptions::default())
            .unwrap_or_else(|e| panic!("reading the crop's transcripts: {e}"))
    })
}

/// The crop's cells × genes table (1,135 × 313), as `read_transcripts_csv` gives it.
pub fn crop_cells() -> &'static CellTable {
    static C: OnceLock<CellTable> = OnceLock::new();
    C.get_or_init(|| CellTable::from_transcripts(crop_transcripts()))
}

/// The crop's DAPI image (2400 × 1800, 16 bit), read once.
pub fn crop_dapi() -> &'static GrayImage16 {
    static I: OnceLock<GrayImage16> = OnceLock::new();
    I.get_or_init(|| {
        read_tiff_gray16(&crop_files().morphology)
            .unwrap_or_else(|e| panic!("reading the crop's DAPI image: {e}"))
    })
}

/// The crop's nucleus centroids (µm), for the 1,086 cells that have one.
pub fn crop_nuclei() -> Vec<[f32; 2]> {
    crop_cells().nucleus_centroids_um.iter().flatten().copied().collect()
}
