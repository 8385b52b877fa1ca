//! Error type of the data layer.
//!
//! Every message names the file (when there is one), the column or field and the offending
//! value, and says what to do about it. No function of [`crate::data`] panics on bad input.

use std::fmt::Write as _;
use std::path::PathBuf;

/// Errors raised while reading, checking or annotating data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened or read.
    #[error("cannot read {}: {source}; check that the path exists and is readable", path.display())]
    Io {
        /// File being read.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The example data set is not where it should be.
    #[error(
        "example data not found: {} is missing; run scripts/fetch_data.sh \
         (it installs into $CELLSYMPHONY_DATA, default ~/.cache/cellsymphony)",
        path.display()
    )]
    DataMissing {
        /// The missing file or directory.
        path: PathBuf,
    },

    /// A required column is absent from a CSV header.
    #[error(
        "missing column `{column}` in {}: found columns [{}]; expected {expected}",
        path.display(),
        found.join(", ")
    )]
    MissingColumn {
        /// CSV file.
        path: PathBuf,
        /// Name of the missing column.
        column: String,
        /// Columns present in the header.
        found: Vec<String>,
        /// What kind of file was expected.
        expected: &'static str,
    },

    /// A CSV row could not be parsed (wrong number of fields, invalid UTF-8, ...).
    #[error(
        "malformed CSV in {} at line {line}: {message}; fix or re-export the file",
        path.display()
    )]
    Csv {
        /// CSV file.
        path: PathBuf,
        /// 1-based line number (0 when unknown).
        line: u64,
        /// Parser message.
        message: String,
    },

    /// A field holds a value of the wrong kind (e.g. text where a number is expected).
    #[error(
        "bad value `{value}` in column `{column}` of {} at line {line}: expected {expected}",
        path.display()
    )]
    BadValue {
        /// CSV file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Column name.
        column: String,
        /// The offending text.
        value: String,
        /// What was expected instead.
        expected: &'static str,
    },

    /// The file parsed but holds nothing usable.
    #[error("{}: {message}", path.display())]
    Empty {
        /// File read.
        path: PathBuf,
        /// What is missing, and what to check.
        message: String,
    },

    /// The TIFF decoder failed (not a TIFF, truncated, unsupported compression, ...).
    #[error(
        "cannot decode TIFF {}: {message}; expected a baseline TIFF (uncompressed, LZW or deflate)",
        path.display()
    )]
    Tiff {
        /// Image file.
        path: PathBuf,
        /// Decoder message.
        message: String,
    },

    /// The image decoded but is not single-channel 16-bit unsigned.
    #[error(
        "unsupported image format in {}: found {found}; expected single-channel 16-bit unsigned \
         grayscale (the Xenium morphology / DAPI image); convert it, e.g. with tifffile or ImageJ",
        path.display()
    )]
    ImageFormat {
        /// Image file.
        path: PathBuf,
        /// Description of what was found.
        found: String,
    },

    /// Writing a PNG failed.
    #[error("cannot write PNG {}: {message}", path.display())]
    Png {
        /// Output file.
        path: PathBuf,
        /// Encoder message.
        message: String,
    },

    /// An in-memory buffer has the wrong length for the stated shape.
    #[error("shape mismatch for {what}: expected {expected} values, found {found}")]
    Shape {
        /// Which buffer.
        what: &'static str,
        /// Expected number of values.
        expected: usize,
        /// Actual number of values.
        found: usize,
    },

    /// An option or argument is out of range.
    #[error("invalid argument `{name}` = {value}: {expected}")]
    InvalidArgument {
        /// Argument name.
        name: &'static str,
        /// Offending value, formatted.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },

    /// A Matrix Market / MEX file (or a TSV beside it) is malformed.
    #[error(
        "malformed MEX file {} at line {line}: {message}; re-export the cell-feature matrix \
         (10x MEX: matrix.mtx, features.tsv, barcodes.tsv, optionally gzipped)",
        path.display()
    )]
    Mex {
        /// File being read.
        path: PathBuf,
        /// 1-based line number (0 when the problem concerns the whole file).
        line: u64,
        /// What is wrong, with the offending value.
        message: String,
    },

    /// A sparse (CSR) matrix breaks its invariants.
    #[error(
        "invalid sparse matrix ({what}): {message}; the source is corrupt or was built wrongly"
    )]
    Sparse {
        /// Where the matrix came from (file and dataset, or API argument).
        what: String,
        /// Which invariant fails, with the offending values.
        message: String,
    },

    /// Reading failed part-way through a file (truncated or corrupt gzip stream, I/O error).
    #[error(
        "cannot read {} after line {line}: {source}; the file is truncated or corrupt, \
         copy or download it again",
        path.display()
    )]
    ReadAt {
        /// File being read.
        path: PathBuf,
        /// Last line read successfully (0 when none).
        line: u64,
        /// Underlying I/O or decompression error.
        #[source]
        source: std::io::Error,
    },

    /// Cells of a count table have no row in a cells table (e.g. `cells.csv`).
    #[error(
        "{n_missing} cells of the count table are missing from {}: [{}]; \
         check that the matrix and cells.csv come from the same Xenium output bundle",
        path.display(),
        abbreviate(missing, 10)
    )]
    MissingCells {
        /// Cells table file.
        path: PathBuf,
        /// Number of cell ids not found.
        n_missing: usize,
        /// Missing cell ids (all of them; the message shows the first 10).
        missing: Vec<String>,
    },

    /// A JSON file (e.g. `experiment.xenium`) does not parse.
    #[error(
        "invalid JSON in {} at line {line}, column {column}: {message}; \
         expected the experiment.xenium manifest of a Xenium output bundle",
        path.display()
    )]
    Json {
        /// JSON file.
        path: PathBuf,
        /// 1-based line (0 when unknown).
        line: u64,
        /// 1-based column (0 when unknown).
        column: u64,
        /// Parser message.
        message: String,
    },

    /// A manifest field holds a value of the wrong kind.
    #[error("bad value `{value}` for field `{field}` in {}: expected {expected}", path.display())]
    ManifestField {
        /// Manifest file.
        path: PathBuf,
        /// Field name.
        field: String,
        /// The offending value, as JSON.
        value: String,
        /// What was expected instead.
        expected: &'static str,
    },

    /// One value of an in-memory input is invalid (NaN, infinite, negative, out of range).
    #[error("{field} is {value}: expected {expected}")]
    InvalidValue {
        /// Which value, e.g. `counts[1234] (cell 3, gene "EPCAM")` or `centroids_um[7]`.
        field: String,
        /// The offending value, formatted.
        value: String,
        /// What is allowed, and what to do.
        expected: String,
    },

    /// An in-memory array has the wrong length for the stated shape.
    #[error("{field} has length {found}, expected {expected}")]
    Length {
        /// Which array, e.g. `indptr`.
        field: &'static str,
        /// Length found.
        found: usize,
        /// Expected length and how it follows from the shape, e.g. `n_cells + 1 = 11`.
        expected: String,
    },

    /// Genes of a model's panel are absent from the input's gene names.
    #[error(
        "{n_missing} genes of the model's panel ({n_panel} genes) are missing from the input: \
         {}; supply counts for them (zeros if they were not measured) or use a model trained \
         on this panel",
        abbreviate(missing, 20)
    )]
    MissingGenes {
        /// Number of panel genes absent from the input.
        n_missing: usize,
        /// Number of genes in the panel.
        n_panel: usize,
        /// The absent genes, in panel order (all of them; the message shows the first 20).
        missing: Vec<String>,
    },

    /// The panel of a data source lacks genes of the model that is to classify it (the
    /// data and the model do not match; not a problem of the reference).
    #[error(
        "the panel of {} ({n_panel} genes, e.g. {}) shares {n_shared} of the {n_model} genes of \
         the model {} (e.g. {}); missing from the data: {}; classify with a model trained on \
         this panel, or supply counts for the missing genes",
        data.display(),
        abbreviate(panel_examples, 5),
        model.display(),
        abbreviate(model_examples, 5),
        abbreviate(missing, 10)
    )]
    PanelMismatch {
        /// The data source (folder or file) whose panel was read.
        data: PathBuf,
        /// The model file.
        model: PathBuf,
        /// Genes in the data's panel.
        n_panel: usize,
        /// Genes in the model's panel.
        n_model: usize,
        /// Model genes present in the data.
        n_shared: usize,
        /// The data's first few genes.
        panel_examples: Vec<String>,
        /// The model's first few genes.
        model_examples: Vec<String>,
        /// Model genes absent from the data, in model order.
        missing: Vec<String>,
    },

    /// A gene name occurs twice in an input's gene list.
    #[error(
        "gene {name:?} appears more than once in genes (columns {first} and {second}); \
         merge or rename the duplicated columns"
    )]
    DuplicateGene {
        /// The duplicated name.
        name: String,
        /// First column holding it.
        first: usize,
        /// Second column holding it.
        second: usize,
    },

    /// An HDF5 file (10x `cell_feature_matrix.h5`, AnnData `.h5ad`) cannot be opened, lacks
    /// an object, or holds a value that breaks its layout.
    #[error(
        "malformed HDF5 file {} at `{object}`: {message}; re-export the file \
         (Cell Ranger / Xenium Ranger cell_feature_matrix.h5, or anndata's write_h5ad)",
        path.display()
    )]
    Hdf5 {
        /// HDF5 file.
        path: PathBuf,
        /// Path of the group, dataset or attribute inside the file (`/` for the file itself).
        object: String,
        /// What is wrong, with the offending value.
        message: String,
    },

    /// Writing an HDF5 file failed.
    #[error("cannot write HDF5 file {}: {message}; check the directory is writable", path.display())]
    Hdf5Write {
        /// Output file.
        path: PathBuf,
        /// What failed.
        message: String,
    },

    /// A TIFF's directory structure is malformed (truncated, bad offsets, cycles).
    #[error(
        "malformed TIFF {} in field `{field}`: {message}; copy or export the file again",
        path.display()
    )]
    TiffStructure {
        /// Image file.
        path: PathBuf,
        /// TIFF field (tag name) or structure part concerned.
        field: String,
        /// What is wrong, with the offending value.
        message: String,
    },

    /// A TIFF field holds a value this reader does not accept for the requested image kind.
    #[error(
        "unsupported image layout in {}: field `{field}` is {found}; expected {expected}; \
         convert the image, e.g. with tifffile or bfconvert",
        path.display()
    )]
    TiffField {
        /// Image file.
        path: PathBuf,
        /// TIFF field (tag name).
        field: String,
        /// The value found.
        found: String,
        /// What is accepted.
        expected: &'static str,
    },

    /// The chosen TIFF level uses a compression the decoder lacks (e.g. JPEG 2000).
    #[error(
        "{} uses {name} compression (TIFF Compression = {code}) in the IFD at offset {ifd_offset}, \
         which cannot be decoded here (supported: none, LZW, deflate, PackBits, JPEG); convert it, \
         e.g. `python -c \"import tifffile as t; t.imwrite('out.ome.tif', t.imread('in.ome.tif'), \
         compression='zlib', tile=(512, 512))\"` (needs imagecodecs to read JPEG 2000) or \
         `bfconvert -compression LZW -pyramid-resolutions 4 in.ome.tif out.ome.tif`",
        path.display()
    )]
    UnsupportedCompression {
        /// Image file.
        path: PathBuf,
        /// File offset of the directory concerned.
        ifd_offset: u64,
        /// TIFF Compression code.
        code: u16,
        /// Name of the compression.
        name: &'static str,
    },

    /// A pyramid level is too large to decode within the memory limit of this reader.
    #[error(
        "{}: pyramid level {level} is {width} x {height} px = {bytes} bytes of decoded samples, \
         over the {limit}-byte limit of this reader; read a coarser level (a larger target \
         µm/px) or a smaller region of the slide",
        path.display()
    )]
    LevelTooLarge {
        /// Image file.
        path: PathBuf,
        /// Pyramid level index (0 = full resolution).
        level: usize,
        /// Level width in pixels.
        width: u64,
        /// Level height in pixels.
        height: u64,
        /// Decoded size in bytes.
        bytes: u64,
        /// The limit in bytes.
        limit: u64,
    },

    /// The pixel size of an image is needed but the file does not state it.
    #[error(
        "{} states no pixel size (no OME-XML PhysicalSizeX in its ImageDescription); \
         pass it explicitly (Xenium morphology images are 0.2125 µm/px)",
        path.display()
    )]
    MissingPixelSize {
        /// Image file.
        path: PathBuf,
    },

    /// No morphology image was found in a Xenium output directory.
    #[error(
        "no morphology image in {}: found [{}]; expected {expected}",
        dir.display(),
        abbreviate(found, 20)
    )]
    MorphologyNotFound {
        /// Directory searched.
        dir: PathBuf,
        /// Image-like entries that were present (file names, `morphology_focus/` contents).
        found: Vec<String>,
        /// The layouts looked for, in priority order.
        expected: &'static str,
    },

    /// An H&E alignment matrix file is malformed.
    #[error(
        "malformed H&E alignment matrix in {} at line {line}: {message}; expected the 10x \
         *he_imagealignment.csv: 3 lines of 3 comma-separated numbers (a 3x3 affine matrix \
         mapping H&E pixels to morphology pixels, last row 0,0,1), optionally after a header line",
        path.display()
    )]
    AlignmentMatrix {
        /// CSV file.
        path: PathBuf,
        /// 1-based line (0 when the problem concerns the whole file).
        line: u64,
        /// What is wrong, with the offending value.
        message: String,
    },

    /// A folder is not a Xenium output bundle this reader knows.
    #[error(
        "{} is not a Xenium output folder this reader knows: found [{}]; expected {expected}. \
         Point to the Xenium Onboard Analysis output folder (the one holding experiment.xenium)",
        dir.display(),
        found.join(", ")
    )]
    UnknownLayout {
        /// The folder.
        dir: PathBuf,
        /// Its entries (folders end in `/`).
        found: Vec<String>,
        /// The files that would have been accepted.
        expected: String,
    },


    /// A zip archive (`*.zarr.zip`) cannot be read: not a zip, truncated, or an entry stored
    /// with a compression method other than stored / deflate.
    #[error(
        "cannot read zip archive {}: {message}; copy or export the file again (entries must be \
         stored or deflated, as zarr's ZipStore and Xenium write them)",
        path.display()
    )]
    Zip {
        /// The archive.
        path: PathBuf,
        /// What is wrong (entry name and value when known).
        message: String,
    },

    /// A zarr store holds something other than the expected layout: an array or attribute
    /// missing, or of another kind, shape, data type or codec.
    #[error(
        "unexpected zarr layout in {}: `{field}` is {found}; expected {expected}",
        path.display()
    )]
    ZarrLayout {
        /// The store (`*.zarr.zip` or folder).
        path: PathBuf,
        /// Array, group or attribute (e.g. `cell_features/indptr`, `cell_features/.zattrs:feature_types`).
        field: String,
        /// What was found there.
        found: String,
        /// What the reader accepts.
        expected: String,
    },

    /// A parquet file cannot be decoded (not parquet, truncated, corrupt, unsupported codec).
    #[error(
        "cannot read parquet file {}: {message}; the file is truncated, corrupt or not \
         parquet: copy or export it again (codecs supported: uncompressed, snappy, gzip, zstd, lz4)",
        path.display()
    )]
    Parquet {
        /// Parquet file.
        path: PathBuf,
        /// Decoder message (with the row group and column when known).
        message: String,
    },

    /// A column has a type the reader cannot use (e.g. `x_location` stored as text).
    #[error(
        "column `{column}` of {} has type {found}; expected {expected}; re-export the file \
         with the Xenium column types",
        path.display()
    )]
    ColumnType {
        /// File read.
        path: PathBuf,
        /// Column name.
        column: String,
        /// Type found (physical and logical type).
        found: String,
        /// Types accepted.
        expected: &'static str,
    },

    /// A parquet value is out of range or null where one is required.
    #[error(
        "bad value `{value}` in column `{column}` of {} at row {row}: expected {expected}",
        path.display()
    )]
    ParquetValue {
        /// Parquet file.
        path: PathBuf,
        /// 1-based row number over the whole file.
        row: u64,
        /// Column name.
        column: String,
        /// The offending value, formatted (`null` for a missing value).
        value: String,
        /// What was expected instead.
        expected: &'static str,
    },
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A failed atomic write (image, predictions) as [`DataError::Io`] on the target file.
#[cfg(all(feature = "native-io", not(target_arch = "wasm32")))]
impl From<crate::util::AtomicWriteError> for DataError {
    fn from(e: crate::util::AtomicWriteError) -> Self {
        DataError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// Joins at most `max` names, then says how many were left out.
pub(crate) fn abbreviate(names: &[String], max: usize) -> String {
    let mut out = names
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > max {
        let _ = write!(out, ", ... and {} more", names.len() - max);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_column_message_names_file_column_and_header() {
        let e = DataError::MissingColumn {
            path: PathBuf::from("/x/transcripts.csv"),
            column: "feature_name".into(),
            found: vec!["a".into(), "b".into()],
            expected: "a Xenium transcripts CSV",
        };
        let msg = e.to_string();
        assert!(msg.contains("`feature_name`"), "{msg}");
        assert!(msg.contains("/x/transcripts.csv"), "{msg}");
        assert!(msg.contains("[a, b]"), "{msg}");
    }

    #[test]
    fn long_gene_lists_are_abbreviated() {
        let names: Vec<String> = (0..25).map(|i| format!("G{i}")).collect();
        let s = abbreviate(&names, 20);
        assert!(s.ends_with("G19, ... and 5 more"), "{s}");
        assert_eq!(abbreviate(&names[..2], 20), "G0, G1");
    }
}
