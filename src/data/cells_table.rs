//! Xenium `cells.csv` / `cells.csv.gz`: one row per segmented cell with its centroid.
//!
//! Columns are found by name, so extra columns and column order changes across Xenium
//! Onboard Analysis versions are tolerated. Required: `cell_id`, `x_centroid`, `y_centroid`
//! (µm); optional: `transcript_counts`, `cell_area`, `nucleus_area` (µm²).

use std::collections::HashMap;
#[cfg(feature = "native-io")]
use std::io::Write;
use std::path::{Path, PathBuf};

use super::csv_util::{self, CsvReader};
use super::error::DataError;
#[cfg(feature = "native-io")]
use super::csv_util::create_text;
use super::xenium::CellTable;

const CELLS_CSV: &str = "a Xenium cells.csv with columns cell_id, x_centroid, y_centroid \
                         (optional: transcript_counts, cell_area, nucleus_area)";

/// Contents of a Xenium `cells.csv`, as parallel arrays of length `n_cells()` in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CellsTable {
    /// File read (named in errors of [`attach_centroids`]).
    pub path: PathBuf,
    /// Cell ids, length `n_cells`.
    pub ids: Vec<String>,
    /// Cell centroids `[x, y]` in µm, length `n_cells`.
    pub centroids_um: Vec<[f32; 2]>,
    /// Cell areas in µm², length `n_cells` when the column is present.
    pub cell_area: Option<Vec<f32>>,
    /// Nucleus areas in µm², length `n_cells` when the column is present.
    pub nucleus_area: Option<Vec<f32>>,
    /// Gene transcripts per cell, length `n_cells` when the column is present.
    pub transcript_counts: Option<Vec<f32>>,
}

impl CellsTable {
    /// Number of cells (rows).
    pub fn n_cells(&self) -> usize {
        self.ids.len()
    }
}

/// Optional numeric columns of a cells table, in the order of [`CellsTableBuilder`]'s values:
/// `cell_area`, `nucleus_area` (µm²), `transcript_counts`.
pub(crate) const OPTIONAL_CELL_COLUMNS: [&str; 3] =
    ["cell_area", "nucleus_area", "transcript_counts"];

/// Builds a [`CellsTable`] row by row; shared by the CSV and parquet readers.
pub(crate) struct CellsTableBuilder {
    table: CellsTable,
    optional: [Option<Vec<f32>>; 3],
}

impl CellsTableBuilder {
    /// An empty table for `path`; `present[k]` says whether [`OPTIONAL_CELL_COLUMNS`]`[k]` exists.
    pub(crate) fn new(path: &Path, present: [bool; 3]) -> Self {
        CellsTableBuilder {
            table: CellsTable {
                path: path.to_path_buf(),
                ..CellsTable::default()
            },
            optional: present.map(|p| p.then(Vec::new)),
        }
    }

    /// Adds a cell; `optional[k]` is stored when column k exists (`None` there reads as NaN).
    pub(crate) fn push(&mut self, id: &str, centroid_um: [f32; 2], optional: [Option<f32>; 3]) {
        self.table.ids.push(id.to_string());
        self.table.centroids_um.push(centroid_um);
        for (values, v) in self.optional.iter_mut().zip(optional) {
            if let Some(values) = values {
                values.push(v.unwrap_or(f32::NAN));
            }
        }
    }

    /// The table; [`DataError::Empty`] without rows.
    pub(crate) fn finish(self) -> Result<CellsTable, DataError> {
        let mut out = self.table;
        if out.ids.is_empty() {
            return Err(DataError::Empty {
                path: out.path,
                message: "no cell rows; check that this is a cells table of a segmented \
                          Xenium run"
                    .to_string(),
            });
        }
        let [cell_area, nucleus_area, transcript_counts] = self.optional;
        out.cell_area = cell_area;
        out.nucleus_area = nucleus_area;
        out.transcript_counts = transcript_counts;
        Ok(out)
    }
}

/// Reads `cells.csv` or `cells.csv.gz` (gzip recognised by its magic bytes).
///
/// Fails with [`DataError::MissingColumn`] when a required column is absent,
/// [`DataError::BadValue`] (file, line, column, value) on a non-numeric or non-finite number,
/// [`DataError::ReadAt`] on a truncated gzip stream and [`DataError::Empty`] without rows.
/// An empty optional field (e.g. `nucleus_area` of a cell without nucleus) reads as NaN.
/// See [`super::parquet::read_cells_parquet`] for `cells.parquet`.
#[cfg(feature = "native-io")]
pub fn read_cells_csv(path: &Path) -> Result<CellsTable, DataError> {
    read_cells_from(csv_util::open(path)?, path)
}

/// Reads a `cells.csv` from in-memory bytes (plain or gzip-compressed, recognised by the gzip
/// magic bytes), e.g. a file dropped into a web page; `name` is the file named in errors and
/// in [`CellsTable::path`]. The same parser and errors as [`read_cells_csv`].
pub fn read_cells_csv_bytes(name: &str, bytes: &[u8]) -> Result<CellsTable, DataError> {
    let path = Path::new(name);
    read_cells_from(csv_util::from_bytes(bytes, path)?, path)
}

/// The one `cells.csv` parser behind [`read_cells_csv`] and [`read_cells_csv_bytes`].
fn read_cells_from(mut reader: CsvReader<'_>, path: &Path) -> Result<CellsTable, DataError> {
    let header = csv_util::header(&mut reader, path)?;
    let col = |name: &str| csv_util::column(&header, name, path, CELLS_CSV);
    let (c_id, c_x, c_y) = (col("cell_id")?, col("x_centroid")?, col("y_centroid")?);
    let opt_cols = OPTIONAL_CELL_COLUMNS.map(|name| header.iter().position(|h| h == name));
    let mut builder = CellsTableBuilder::new(path, opt_cols.map(|c| c.is_some()));

    let mut record = csv::ByteRecord::new();
    let mut last_line = 1u64;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_util::read_error(path, &e, last_line)),
        }
        let line = record.position().map_or(0, csv::Position::line);
        last_line = line;
        let field = |i: usize| record.get(i).unwrap_or_default();
        let raw_id = field(c_id).trim_ascii();
        let id = std::str::from_utf8(raw_id)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| csv_util::bad_value(raw_id, path, line, "cell_id", "a cell id"))?;
        let x = csv_util::parse_f32(field(c_x), path, line, "x_centroid")?;
        let y = csv_util::parse_f32(field(c_y), path, line, "y_centroid")?;
        let mut optional = [None; 3];
        for (k, c) in opt_cols.iter().enumerate() {
            if let Some(c) = *c {
                let f = field(c);
                if !f.trim_ascii().is_empty() {
                    optional[k] = Some(csv_util::parse_f32(
                        f,
                        path,
                        line,
                        OPTIONAL_CELL_COLUMNS[k],
                    )?);
                }
            }
        }
        builder.push(id, [x, y], optional);
    }
    builder.finish()
}

/// Sets `table.centroids_um` from `cells` by cell id (`nucleus_centroids_um` is left as is).
///
/// Cells of `cells` absent from `table` are ignored; cells of `table` absent from `cells` are
/// an error ([`DataError::MissingCells`], listing up to 10 of them), and `table` is then left
/// unchanged.
pub fn attach_centroids(table: &mut CellTable, cells: &CellsTable) -> Result<(), DataError> {
    let index: HashMap<&str, usize> = cells
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut centroids = Vec::with_capacity(table.n_cells());
    let mut missing = Vec::new();
    for id in &table.cell_ids {
        match index.get(id.as_str()) {
            Some(&i) => centroids.push(cells.centroids_um[i]),
            None => missing.push(id.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(DataError::MissingCells {
            path: cells.path.clone(),
            n_missing: missing.len(),
            missing,
        });
    }
    table.centroids_um = centroids;
    Ok(())
}

/// Writes a `cells.csv` (gzip-compressed when `gzip`; the caller picks the file name) with
/// columns `cell_id, x_centroid, y_centroid, transcript_counts` from `table` (centroids as
/// stored, counts = row totals). Meant for fixtures; floats round-trip exactly.
#[cfg(feature = "native-io")]
pub fn write_cells_csv(table: &CellTable, path: &Path, gzip: bool) -> Result<(), DataError> {
    if table.centroids_um.len() != table.n_cells() {
        return Err(DataError::Shape {
            what: "CellTable centroids_um [n_cells]",
            expected: table.n_cells(),
            found: table.centroids_um.len(),
        });
    }
    let totals = table.totals();
    let mut w = create_text(path, gzip)?;
    let mut body = || -> std::io::Result<()> {
        writeln!(w, "cell_id,x_centroid,y_centroid,transcript_counts")?;
        for (i, id) in table.cell_ids.iter().enumerate() {
            let [x, y] = table.centroids_um[i];
            writeln!(w, "{id},{x},{y},{}", totals[i])?;
        }
        w.flush()
    };
    body().map_err(|e| DataError::io(path, e))
}
