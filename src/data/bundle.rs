//! One-call reader for a Xenium output folder, whatever its Xenium Onboard Analysis version.
//!
//! [`XeniumBundle::open`] looks at the folder once and records which file provides each
//! part; [`XeniumBundle::read_cells`] then reads the cells × genes matrix and positions:
//!
//! | part | tried in order |
//! |---|---|
//! | manifest | `experiment.xenium` |
//! | matrix | `cell_feature_matrix.h5` (10x HDF5), `cell_feature_matrix/` (MEX), `cell_feature_matrix.zarr.zip` (zarr), else counts aggregated from transcripts |
//! | cell positions | `cells.parquet`, `cells.csv.gz`, `cells.csv`, `cells.zarr.zip`, else the mean of each cell's transcripts |
//! | protein channels | the `Protein Expression` features of the HDF5 or zarr matrix (XOA ≥ 4), see [`XeniumBundle::read_protein`] |
//! | transcripts | `transcripts.parquet`, `transcripts.csv.gz`, `transcripts.csv` (also the BIDCell crop's `transcripts_small.csv`) |
//! | morphology | see [`super::find_morphology`] |
//! | H&E | `*he_image.ome.tif` with `*he_imagealignment.csv` |
//!
//! When nothing usable is there the error lists what was found and what was expected.

use std::path::{Path, PathBuf};

use super::error::DataError;
use super::parquet::read_transcripts_parquet;
use super::xenium::{cell_table_of, read_transcripts_csv_file, CellTable, TranscriptOptions, Transcripts};

/// Where a bundle's count matrix comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatrixSource {
    /// `cell_feature_matrix.h5` (10x HDF5 layout).
    Hdf5(PathBuf),
    /// `cell_feature_matrix/` (MEX folder).
    Mex(PathBuf),
    /// `cell_feature_matrix.zarr.zip` (Xenium's zarr store, see [`super::xenium_zarr`]).
    Zarr(PathBuf),
    /// Counts aggregated from this transcripts file.
    Transcripts(PathBuf),
}

/// The files found in a Xenium output folder; see the module docs for the search order.
#[derive(Debug, Clone, PartialEq)]
pub struct XeniumBundle {
    /// The folder.
    pub dir: PathBuf,
    /// `experiment.xenium`, parsed, when present.
    pub manifest: Option<super::XeniumManifest>,
    /// The matrix source chosen.
    pub matrix: MatrixSource,
    /// Per-cell table with centroids (`cells.parquet` / `cells.csv.gz` / `cells.csv` /
    /// `cells.zarr.zip`).
    pub cells: Option<PathBuf>,
    /// Transcripts file (used for nucleus centroids, and for counts when there is no matrix).
    pub transcripts: Option<PathBuf>,
    /// Morphology image(s), when any is found.
    pub morphology: Option<super::MorphologyFiles>,
    /// H&E image and its alignment CSV, when both are found.
    pub he: Option<super::HeFiles>,
}

/// Files that can hold transcripts, in order of preference.
pub const TRANSCRIPT_FILES: [&str; 4] = [
    "transcripts.parquet",
    "transcripts.csv.gz",
    "transcripts.csv",
    "transcripts_small.csv",
];
/// Files that can hold per-cell centroids, in order of preference.
pub const CELLS_FILES: [&str; 4] = ["cells.parquet", "cells.csv.gz", "cells.csv", super::CELLS_ZARR];

fn first_file(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// File names in `dir` (sorted; folders get a trailing `/`), for error messages.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if e.path().is_dir() {
                        format!("{name}/")
                    } else {
                        name
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

impl XeniumBundle {
    /// Inspects `dir` (no large file is read). Fails with [`DataError::UnknownLayout`] when
    /// neither a matrix nor transcripts are there, listing the folder's contents and the
    /// expected names; with [`DataError::Io`] when `dir` is not a readable folder.
    pub fn open(dir: &Path) -> Result<Self, DataError> {
        if !dir.is_dir() {
            return Err(DataError::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a folder"),
            ));
        }
        let manifest = super::read_manifest_in(dir)?;
        let transcripts = first_file(dir, &TRANSCRIPT_FILES);
        let mex = dir.join("cell_feature_matrix");
        let h5 = dir.join("cell_feature_matrix.h5");
        let zarr = dir.join(super::CELL_FEATURE_MATRIX_ZARR);
        let matrix = if h5.is_file() {
            MatrixSource::Hdf5(h5)
        } else if mex.is_dir() && ["matrix.mtx", "matrix.mtx.gz"].iter().any(|f| mex.join(f).is_file()) {
            MatrixSource::Mex(mex)
        } else if zarr.is_file() {
            MatrixSource::Zarr(zarr)
        } else if let Some(t) = &transcripts {
            MatrixSource::Transcripts(t.clone())
        } else {
            return Err(DataError::UnknownLayout {
                dir: dir.to_path_buf(),
                found: listing(dir),
                expected: "a cell × gene matrix (cell_feature_matrix.h5, cell_feature_matrix/ \
                           with matrix.mtx[.gz], features.tsv[.gz], barcodes.tsv[.gz], or \
                           cell_feature_matrix.zarr.zip) or transcripts (transcripts.parquet, \
                           transcripts.csv.gz, transcripts.csv)"
                    .into(),
            });
        };
        Ok(XeniumBundle {
            dir: dir.to_path_buf(),
            manifest,
            matrix,
            cells: first_file(dir, &CELLS_FILES),
            transcripts,
            morphology: super::morphology::find_morphology(dir).ok(),
            he: super::find_he_files(dir).ok(),
        })
    }

    /// One line per part: which file provides it, or "not found".
    pub fn describe(&self) -> String {
        let name = |p: &Path| {
            p.strip_prefix(&self.dir)
                .unwrap_or(p)
                .display()
                .to_string()
        };
        let opt = |p: &Option<PathBuf>| p.as_deref().map_or("not found".to_string(), name);
        let mut s = format!("Xenium bundle {}\n", self.dir.display());
        if let Some(m) = &self.manifest {
            let field = |v: &Option<String>| v.as_deref().unwrap_or("?").to_string();
            let version = match (&m.analysis_sw_version, m.analysis_version()) {
                (Some(text), None) => format!("{text:?}, not a release number: layouts recognised by content"),
                (text, _) => field(text),
            };
            s += &format!(
                "  manifest:    experiment.xenium (XOA {}, panel {}, {} µm/px)\n",
                version,
                field(&m.panel_name),
                m.pixel_size.map_or("?".into(), |p| p.to_string())
            );
        } else {
            s += "  manifest:    not found\n";
        }
        s += &format!(
            "  matrix:      {}\n",
            match &self.matrix {
                MatrixSource::Hdf5(p) => format!("{} (10x HDF5)", name(p)),
                MatrixSource::Mex(p) => format!("{}/ (MEX)", name(p)),
                MatrixSource::Zarr(p) => format!("{} (zarr)", name(p)),
                MatrixSource::Transcripts(p) => format!("aggregated from {}", name(p)),
            }
        );
        s += &format!("  cells:       {}\n", opt(&self.cells));
        s += &format!("  transcripts: {}\n", opt(&self.transcripts));
        s += &format!(
            "  morphology:  {}\n",
            self.morphology
                .as_ref()
                .map_or("not found".to_string(), |m| format!(
                    "{:?}: {}",
                    m.layout,
                    m.files
                        .iter()
                        .zip(&m.channels)
                        .map(|(f, c)| format!("{} ({c})", name(f)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
        );
        s += &format!(
            "  H&E:         {}\n",
            self.he.as_ref().map_or("not found".to_string(), |h| format!(
                "{} aligned by {}",
                name(&h.image),
                name(&h.alignment)
            ))
        );
        s
    }

    /// The DAPI image at the pyramid level closest to (not coarser than) `target_um_per_px`
    /// (full resolution when `None`) and its frame in slide µm.
    ///
    /// Xenium places morphology pixel `(c, r)` at `[c, r] · pixel_size` µm (corner origin),
    /// with the pixel size from the OME-XML, else `experiment.xenium`. The BIDCell example
    /// crop (`morphology_mip_small.tif`, a plain TIFF cut from the slide) has its own frame,
    /// [`super::XENIUM_CROP_FRAME`]. Fails with [`DataError::MorphologyNotFound`] when the
    /// bundle has no morphology image, and with [`DataError::MissingPixelSize`]-style errors
    /// when no pixel size is known.
    pub fn read_dapi(
        &self,
        target_um_per_px: Option<f32>,
    ) -> Result<(super::GrayImage16, super::ImageFrame), DataError> {
        let m = self.morphology.as_ref().ok_or_else(|| DataError::MorphologyNotFound {
            dir: self.dir.clone(),
            found: listing(&self.dir),
            expected: super::MORPHOLOGY_EXPECTED,
        })?;
        let is_bidcell_crop = m
            .dapi_path()
            .and_then(|p| p.file_name())
            .is_some_and(|n| n == "morphology_mip_small.tif");
        let (base, override_um) = if is_bidcell_crop {
            (super::XENIUM_CROP_FRAME, Some(super::XENIUM_CROP_FRAME.um_per_px))
        } else {
            let manifest_um = self.manifest.as_ref().and_then(|m| m.pixel_size).map(|p| p as f32);
            // The OME pixel size wins; the manifest's fills in for files without one.
            let ome_um = m
                .dapi_path()
                .and_then(|p| super::PyramidTiff::open(p).ok())
                .and_then(|t| t.ome().and_then(|o| o.physical_size_x_um));
            let um = ome_um.or(manifest_um).ok_or_else(|| DataError::Empty {
                path: m.dapi_path().map(Path::to_path_buf).unwrap_or_default(),
                message: "no pixel size: the image has no OME PhysicalSizeX and there is no \
                          experiment.xenium with pixel_size; add the manifest or convert the \
                          image to OME-TIFF"
                    .into(),
            })?;
            (super::ImageFrame::from_corner([0.0, 0.0], um), Some(um))
        };
        let level = m.read_dapi(target_um_per_px, override_um)?;
        Ok((level.image, super::level_frame(&base, level.downsample)))
    }

    /// Reads the cells × genes matrix with centroids, in the canonical order of every reader.
    ///
    /// Counts come from [`XeniumBundle::matrix`]; centroids from the cells table when there is
    /// one, else from the transcripts; nucleus centroids (the patch centres) from the
    /// transcripts' nucleus flags when transcripts are present. Transcript filters
    /// (`opts.min_qv`) apply only when counts are aggregated from transcripts.
    pub fn read_cells(&self, opts: &TranscriptOptions) -> Result<CellTable, DataError> {
        let from_transcripts = match &self.transcripts {
            Some(t) => Some(read_transcripts_table(t, opts)?),
            None => None,
        };
        let mut table = match &self.matrix {
            MatrixSource::Hdf5(p) => super::read_10x_h5(p)?,
            MatrixSource::Mex(p) => super::read_mex_dir(p)?,
            MatrixSource::Zarr(p) => super::read_cell_feature_matrix_zarr_file(p)?.0,
            MatrixSource::Transcripts(_) => match &from_transcripts {
                Some(t) => t.clone(),
                None => unreachable_source(&self.dir)?,
            },
        };
        if let Some(cells) = &self.cells {
            let c = read_cells_table(cells)?;
            super::attach_centroids(&mut table, &c)?;
        } else if let Some(t) = &from_transcripts {
            copy_positions(&mut table, t, false);
        }
        if let Some(t) = &from_transcripts {
            copy_positions(&mut table, t, true);
        }
        Ok(table)
    }
}

impl XeniumBundle {
    /// The protein channels (XOA ≥ 4 `Protein Expression` features) in the cell order of
    /// [`read_cells`](Self::read_cells), from `cell_feature_matrix.h5` or
    /// `cell_feature_matrix.zarr.zip` (whichever the bundle has, the HDF5 first); `None` when
    /// neither holds protein features (gene-only runs, MEX-only or transcripts-only bundles).
    pub fn read_protein(&self) -> Result<Option<super::ProteinMatrix>, DataError> {
        let h5 = self.dir.join("cell_feature_matrix.h5");
        let zarr = self.dir.join(super::CELL_FEATURE_MATRIX_ZARR);
        if h5.is_file() {
            super::read_10x_h5_protein(&h5)
        } else if zarr.is_file() {
            Ok(super::read_cell_feature_matrix_zarr_file(&zarr)?.1)
        } else {
            Ok(None)
        }
    }
}

fn unreachable_source(dir: &Path) -> Result<CellTable, DataError> {
    Err(DataError::UnknownLayout {
        dir: dir.to_path_buf(),
        found: listing(dir),
        expected: "a transcripts file".into(),
    })
}

/// Copies centroids (or nucleus centroids when `nucleus`) from `src` to the same cell ids of
/// `dst`; cells absent from `src` keep what they have.
fn copy_positions(dst: &mut CellTable, src: &CellTable, nucleus: bool) {
    let index: std::collections::HashMap<&str, usize> = src
        .cell_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    for (i, id) in dst.cell_ids.iter().enumerate() {
        if let Some(&j) = index.get(id.as_str()) {
            if nucleus {
                dst.nucleus_centroids_um[i] = src.nucleus_centroids_um[j];
            } else {
                dst.centroids_um[i] = src.centroids_um[j];
            }
        }
    }
}

/// Counts and centroids aggregated from a transcripts file (any supported format).
fn read_transcripts_table(path: &Path, opts: &TranscriptOptions) -> Result<CellTable, DataError> {
    Ok(CellTable::from_transcripts(&read_transcripts(path, opts)?))
}

/// The per-cell table (`cells.parquet`, `cells.csv.gz`, `cells.csv`, `cells.zarr.zip`).
pub fn read_cells_table(path: &Path) -> Result<super::CellsTable, DataError> {
    if path.to_string_lossy().ends_with(".zarr.zip") || path.is_dir() {
        super::read_cells_zarr_file(path)
    } else if super::parquet::parquet_by_content(path)? {
        super::read_cells_parquet(path)
    } else {
        super::read_cells_csv(path)
    }
}

/// Reads Xenium transcripts from `transcripts.csv`, `transcripts.csv.gz` or
/// `transcripts.parquet` (the format is recognised by the file's first bytes, not its name),
/// keeping transcripts that pass [`super::keep_transcript`]: `qv >= opts.min_qv`, not a control
/// feature (feature-name prefixes, and the `is_gene` / `codeword_category` columns of
/// Xenium ≥ 2 when present).
///
/// Columns are found by name (`cell_id`, `overlaps_nucleus`, `feature_name`, `x_location`,
/// `y_location`, `qv`); others are ignored. `overlaps_nucleus` accepts `0/1` or `true/false`
/// (or a boolean / integer parquet column); cell ids `-1`, `UNASSIGNED` or empty mean "no cell".
/// See [`super::parquet::read_transcripts_parquet`] for the parquet column types accepted.
pub fn read_transcripts(path: &Path, opts: &TranscriptOptions) -> Result<Transcripts, DataError> {
    if super::parquet::parquet_by_content(path)? {
        read_transcripts_parquet(path, opts)
    } else {
        read_transcripts_csv_file(path, opts)
    }
}

/// Reads Xenium transcripts (`transcripts.csv`, `.csv.gz` or `.parquet`) into a [`CellTable`]
/// (see [`read_transcripts`] for the formats and filters). Fails with [`DataError::Empty`]
/// when no transcript is assigned to a cell.
pub fn read_transcripts_csv(path: &Path, opts: &TranscriptOptions) -> Result<CellTable, DataError> {
    let transcripts = read_transcripts(path, opts)?;
    cell_table_of(&transcripts, path)
}
