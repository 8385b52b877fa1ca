//! Xenium parquet files: `transcripts.parquet` and `cells.parquet` (native only).
//!
//! Files are streamed a row group at a time, in batches of [`BATCH_ROWS`] rows, through
//! the parquet crate's column readers (no arrow); only the columns used are decoded.
//! Columns are found by name and their types checked up front, so a file with the wrong
//! schema fails with [`DataError::MissingColumn`] or [`DataError::ColumnType`] before any
//! row is read. Rows go through the same per-row logic as the CSV readers
//! ([`TranscriptsBuilder`], [`CellsTableBuilder`]).
//!
//! Types accepted, by column (all may be `REQUIRED` or `OPTIONAL`; lists are rejected):
//!
//! | column | types |
//! |---|---|
//! | `cell_id` | UTF-8 string, binary (older Xenium writes bytes like `aaaabaep-1`), integer |
//! | `feature_name`, `codeword_category` | UTF-8 string or binary |
//! | `overlaps_nucleus`, `is_gene` | boolean, integer 0/1, or text `0/1` / `true/false` |
//! | `x_location`, `y_location`, `qv`, `x_centroid`, `y_centroid`, areas, counts | float, double or integer |

use std::borrow::Cow;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use ::parquet::basic::Type as PhysicalType;
use ::parquet::column::page::Page;
use ::parquet::column::reader::ColumnReader;
use ::parquet::data_type::ByteArray;
use ::parquet::errors::ParquetError;
use ::parquet::file::metadata::ParquetStatisticsPolicy;
use ::parquet::file::reader::FileReader;
use ::parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};
use ::parquet::schema::types::ColumnDescriptor;

use super::cells_table::{CellsTable, CellsTableBuilder, OPTIONAL_CELL_COLUMNS};
use super::error::DataError;
use super::xenium::{parse_bool_text, TranscriptOptions, Transcripts, TranscriptsBuilder};

/// Rows decoded per column per step; bounds memory to a few MiB whatever the file size.
pub const BATCH_ROWS: usize = 64 * 1024;

/// Most rows per byte of file a footer may claim (real transcript and cell tables store
/// several bytes per row; 64 leaves a wide margin for constant, run-length-encoded columns).
const MAX_ROWS_PER_BYTE: i128 = 64;

/// The 4 bytes every parquet file starts (and ends) with.
pub const PARQUET_MAGIC: [u8; 4] = *b"PAR1";

const TRANSCRIPTS_PARQUET: &str = "a Xenium transcripts.parquet with columns cell_id, \
                                   overlaps_nucleus, feature_name, x_location, y_location, qv";
const CELLS_PARQUET: &str = "a Xenium cells.parquet with columns cell_id, x_centroid, y_centroid \
                             (optional: transcript_counts, cell_area, nucleus_area)";

/// Whether `path` is to be read as parquet: its first bytes are the parquet magic `PAR1`.
/// A file *named* `*.parquet` without them is an error ([`DataError::Parquet`], naming the
/// bytes found), not a CSV to misread; any other file is read as CSV (`false`).
pub fn parquet_by_content(path: &Path) -> Result<bool, DataError> {
    if is_parquet_file(path)? {
        return Ok(true);
    }
    let named_parquet = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    if !named_parquet {
        return Ok(false);
    }
    let mut head = Vec::with_capacity(4);
    File::open(path).and_then(|f| f.take(4).read_to_end(&mut head)).map_err(|e| DataError::io(path, e))?;
    let shown: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
    Err(DataError::Parquet {
        path: path.to_path_buf(),
        message: format!(
            "not a parquet file: it starts with the bytes [{}], not the parquet magic `PAR1` \
             (if it is a CSV, name it .csv or .csv.gz)",
            shown.join(" ")
        ),
    })
}

/// Whether `path` starts with the parquet magic bytes `PAR1` ([`DataError::Io`] when it
/// cannot be opened).
pub fn is_parquet_file(path: &Path) -> Result<bool, DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut head = [0u8; 4];
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DataError::io(path, e)),
        }
    }
    Ok(filled == head.len() && head == PARQUET_MAGIC)
}

/// Reads a Xenium `transcripts.parquet` with the filters of [`super::read_transcripts`]
/// (which calls this for parquet files): `qv >= opts.min_qv`, control features dropped (by
/// name prefix, `is_gene == false` or a non-gene `codeword_category` when those columns
/// exist), unassigned cell ids (`-1`, `UNASSIGNED`, empty, null, integer -1) kept with no cell.
///
/// Errors: [`DataError::Parquet`] (not parquet, truncated, corrupt),
/// [`DataError::MissingColumn`], [`DataError::ColumnType`] (e.g. `x_location` as text) and
/// [`DataError::ParquetValue`] (null or out-of-range value, with its 1-based row), each
/// naming the file; [`DataError::Empty`] when no transcript is kept.
pub fn read_transcripts_parquet(
    path: &Path,
    opts: &TranscriptOptions,
) -> Result<Transcripts, DataError> {
    let mut builder = TranscriptsBuilder::new(opts)?;
    let file = ParquetTable::open(path)?;
    let need = |name: &str, kinds: Kinds| file.column(name, kinds, TRANSCRIPTS_PARQUET);
    let columns = vec![
        need("cell_id", Kinds::ID)?,
        need("overlaps_nucleus", Kinds::FLAG)?,
        need("feature_name", Kinds::TEXT)?,
        need("x_location", Kinds::NUMBER)?,
        need("y_location", Kinds::NUMBER)?,
        need("qv", Kinds::NUMBER)?,
    ];
    let optional = [
        file.optional_column("is_gene", Kinds::FLAG)?,
        file.optional_column("codeword_category", Kinds::TEXT)?,
    ];
    let has_is_gene = optional[0].is_some();
    let has_category = optional[1].is_some();
    let columns: Vec<Column> = columns
        .into_iter()
        .chain(optional.into_iter().flatten())
        .collect();

    let mut cell_text = String::new();
    file.for_each_batch(&columns, |batch, first_row| {
        let [cell, nuc, feat, x, y, qv] = [0, 1, 2, 3, 4, 5].map(|k| &batch[k]);
        let is_gene_col = has_is_gene.then(|| &batch[6]);
        let category_col = has_category.then(|| &batch[6 + usize::from(has_is_gene)]);
        for row in 0..batch[0].len() {
            let at = Cell {
                path,
                row,
                first_row,
            };
            let qv = at.number(qv)?;
            let feature = at.text(feat)?;
            if feature.is_empty() {
                return Err(at.bad(feat, "", "a gene name"));
            }
            let is_gene = is_gene_col.map(|c| at.flag(c)).transpose()?;
            let category = category_col.map(|c| at.text(c)).transpose()?;
            if !builder.keeps(qv, &feature, is_gene, category.as_deref()) {
                continue;
            }
            let xy = [at.number(x)?, at.number(y)?];
            let nucleus = at.flag(nuc)?;
            let cell_id = at.cell_id(cell, &mut cell_text)?;
            builder.push(&feature, cell_id, xy, nucleus);
        }
        Ok(())
    })?;
    builder.finish(path)
}

/// Reads a Xenium `cells.parquet` like [`super::read_cells_csv`] reads `cells.csv`:
/// `cell_id` (string, binary or integer), `x_centroid`, `y_centroid` (µm) and, when present,
/// `cell_area`, `nucleus_area`, `transcript_counts` (null reads as NaN); other columns are
/// ignored. Errors as for [`read_transcripts_parquet`]; [`DataError::Empty`] without rows.
pub fn read_cells_parquet(path: &Path) -> Result<CellsTable, DataError> {
    let file = ParquetTable::open(path)?;
    let need = |name: &str, kinds: Kinds| file.column(name, kinds, CELLS_PARQUET);
    let mut columns = vec![
        need("cell_id", Kinds::ID)?,
        need("x_centroid", Kinds::NUMBER)?,
        need("y_centroid", Kinds::NUMBER)?,
    ];
    let mut present = [false; 3];
    for (k, name) in OPTIONAL_CELL_COLUMNS.iter().enumerate() {
        if let Some(c) = file.optional_column(name, Kinds::NUMBER)? {
            columns.push(c);
            present[k] = true;
        }
    }
    let mut builder = CellsTableBuilder::new(path, present);
    let mut id_text = String::new();
    file.for_each_batch(&columns, |batch, first_row| {
        for row in 0..batch[0].len() {
            let at = Cell {
                path,
                row,
                first_row,
            };
            let id = at.cell_id(&batch[0], &mut id_text)?;
            if id.is_empty() {
                return Err(at.bad(&batch[0], "", "a cell id"));
            }
            let xy = [at.number(&batch[1])?, at.number(&batch[2])?];
            let mut optional = [None; 3];
            let mut next = 3;
            for (k, &is_present) in present.iter().enumerate() {
                if is_present {
                    optional[k] = at.optional_number(&batch[next])?;
                    next += 1;
                }
            }
            builder.push(id, xy, optional);
        }
        Ok(())
    })?;
    builder.finish()
}

/// Physical type families a column may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kinds {
    boolean: bool,
    integer: bool,
    float: bool,
    bytes: bool,
    expected: &'static str,
}

impl Kinds {
    const ID: Kinds = Kinds {
        boolean: false,
        integer: true,
        float: false,
        bytes: true,
        expected: "a UTF-8 string, binary or integer cell id column",
    };
    const TEXT: Kinds = Kinds {
        boolean: false,
        integer: false,
        float: false,
        bytes: true,
        expected: "a UTF-8 string or binary column",
    };
    const FLAG: Kinds = Kinds {
        boolean: true,
        integer: true,
        float: false,
        bytes: true,
        expected: "a boolean, 0/1 integer or true/false text column",
    };
    const NUMBER: Kinds = Kinds {
        boolean: false,
        integer: true,
        float: true,
        bytes: false,
        expected: "a float, double or integer column",
    };

    fn accepts(&self, t: PhysicalType) -> bool {
        match t {
            PhysicalType::BOOLEAN => self.boolean,
            PhysicalType::INT32 | PhysicalType::INT64 => self.integer,
            PhysicalType::FLOAT | PhysicalType::DOUBLE => self.float,
            PhysicalType::BYTE_ARRAY => self.bytes,
            _ => false,
        }
    }
}

/// A column chosen for reading.
struct Column {
    /// Leaf index in the schema.
    index: usize,
    name: String,
    /// Whether values may be null (definition level > 0).
    nullable: bool,
    /// Whether integers are unsigned (read back as such).
    unsigned: bool,
}

/// An open parquet file and its path (named in every error).
struct ParquetTable {
    path: PathBuf,
    file_len: u64,
    reader: SerializedFileReader<File>,
}

impl ParquetTable {
    fn open(path: &Path) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        // Statistics are never used here, so they are not decoded (the crate indexes min/max
        // values without length checks).
        let skip = || ParquetStatisticsPolicy::SkipAll;
        let options = ReadOptionsBuilder::new()
            .with_column_stats_policy(skip())
            .with_size_stats_policy(skip())
            .with_encoding_stats_policy(skip())
            .build();
        let reader = guard(path, || {
            SerializedFileReader::new_with_options(file, options)
        })?
        .map_err(|e| parquet_error(path, &e, "reading the footer"))?;
        // Plausibility of the footer's claims before any page is decoded: every row group
        // stores at least one page header, and no Xenium table packs more than a few values
        // per byte, so a claim of more than MAX_ROWS_PER_BYTE rows per file byte is corrupt
        // metadata (found by fuzzing: a 1 KB file claiming hundreds of millions of rows took
        // tens of seconds to reject).
        let meta = reader.metadata();
        let groups = meta.num_row_groups() as u64;
        let rows: i128 = (0..meta.num_row_groups())
            .map(|g| i128::from(meta.row_group(g).num_rows()))
            .sum();
        if groups > file_len || rows < 0 || rows > i128::from(file_len) * MAX_ROWS_PER_BYTE {
            return Err(DataError::Parquet {
                path: path.to_path_buf(),
                message: format!(
                    "the footer claims {rows} rows in {groups} row groups for a {file_len}-byte \
                     file; the metadata is corrupt"
                ),
            });
        }
        Ok(ParquetTable {
            path: path.to_path_buf(),
            file_len,
            reader,
        })
    }

    fn leaves(&self) -> &[std::sync::Arc<ColumnDescriptor>] {
        self.reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .columns()
    }

    /// The top-level column `name`, type-checked, or `None` when absent.
    fn optional_column(&self, name: &str, kinds: Kinds) -> Result<Option<Column>, DataError> {
        let Some((index, d)) = self
            .leaves()
            .iter()
            .enumerate()
            .find(|(_, d)| d.path().parts().len() == 1 && d.name() == name)
        else {
            return Ok(None);
        };
        if d.max_rep_level() > 0 || !kinds.accepts(d.physical_type()) {
            return Err(DataError::ColumnType {
                path: self.path.clone(),
                column: name.to_string(),
                found: describe_type(d, d.max_rep_level() > 0),
                expected: kinds.expected,
            });
        }
        let unsigned = matches!(
            d.logical_type_ref(),
            Some(::parquet::basic::LogicalType::Integer(int)) if !int.is_signed
        ) || matches!(
            d.converted_type(),
            ::parquet::basic::ConvertedType::UINT_8
                | ::parquet::basic::ConvertedType::UINT_16
                | ::parquet::basic::ConvertedType::UINT_32
                | ::parquet::basic::ConvertedType::UINT_64
        );
        Ok(Some(Column {
            index,
            name: name.to_string(),
            nullable: d.max_def_level() > 0,
            unsigned,
        }))
    }

    /// The top-level column `name`, type-checked; [`DataError::MissingColumn`] when absent.
    fn column(
        &self,
        name: &str,
        kinds: Kinds,
        expected: &'static str,
    ) -> Result<Column, DataError> {
        self.optional_column(name, kinds)?
            .ok_or_else(|| DataError::MissingColumn {
                path: self.path.clone(),
                column: name.to_string(),
                found: self.leaves().iter().map(|d| d.path().string()).collect(),
                expected,
            })
    }

    /// Checks that column `c`'s chunk in row group `g` lies inside the file (the parquet
    /// crate asserts this, i.e. panics, on corrupt metadata).
    fn check_chunk(&self, g: usize, c: &Column) -> Result<(), DataError> {
        let chunk = self.reader.metadata().row_group(g).columns().get(c.index);
        let range = chunk.and_then(|m| {
            let start = m.dictionary_page_offset().unwrap_or(m.data_page_offset());
            let len = m.compressed_size();
            let end = start.checked_add(len)?;
            (start >= 0 && len >= 0 && u64::try_from(end).ok()? <= self.file_len)
                .then_some((start, len))
        });
        match range {
            Some(_) => Ok(()),
            None => Err(DataError::Parquet {
                path: self.path.clone(),
                message: format!(
                    "row group {g}, column `{}`: the column chunk's byte range {} lies outside \
                     the file ({} bytes)",
                    c.name,
                    chunk.map_or_else(
                        || "(absent)".to_string(),
                        |m| format!(
                            "{:?}+{}",
                            m.dictionary_page_offset().unwrap_or(m.data_page_offset()),
                            m.compressed_size()
                        )
                    ),
                    self.file_len
                ),
            }),
        }
    }

    /// Checks the dictionary page of column `c` in row group `g`, if it has one: the parquet
    /// crate allocates `num_values` slots from the page header before decoding, so a corrupt
    /// header claiming billions of values aborts the process (out of memory; found by
    /// fuzzing). Every dictionary value takes at least one byte of the page.
    fn check_dictionary(
        &self,
        group: &dyn ::parquet::file::reader::RowGroupReader,
        g: usize,
        c: &Column,
    ) -> Result<(), DataError> {
        let path = &self.path;
        let context = || format!("row group {g}, column `{}`", c.name);
        let mut pages = guard(path, || group.get_column_page_reader(c.index))?
            .map_err(|e| parquet_error(path, &e, &context()))?;
        let first = guard(path, || pages.get_next_page())?.map_err(|e| parquet_error(path, &e, &context()))?;
        if let Some(Page::DictionaryPage { buf, num_values, .. }) = first {
            if num_values as usize > buf.len() {
                return Err(DataError::Parquet {
                    path: path.clone(),
                    message: format!(
                        "{}: the dictionary page claims {num_values} values in {} bytes; the \
                         page header is corrupt",
                        context(),
                        buf.len()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Calls `f(batch, first_row)` for consecutive batches of rows: `batch[k]` holds the
    /// values of `columns[k]`, all of the same length; `first_row` is the 0-based file row of
    /// the batch's first row.
    fn for_each_batch(
        &self,
        columns: &[Column],
        mut f: impl FnMut(&[Batch], u64) -> Result<(), DataError>,
    ) -> Result<(), DataError> {
        let path = &self.path;
        let mut first_row = 0u64;
        let mut batches: Vec<Batch> = columns.iter().map(Batch::new).collect();
        for g in 0..self.reader.num_row_groups() {
            let expected_rows = self.reader.metadata().row_group(g).num_rows();
            let group = guard(path, || self.reader.get_row_group(g))?
                .map_err(|e| parquet_error(path, &e, &format!("row group {g}")))?;
            let mut readers = Vec::with_capacity(columns.len());
            for c in columns {
                self.check_chunk(g, c)?;
                self.check_dictionary(&*group, g, c)?;
                let r = guard(path, || group.get_column_reader(c.index))?.map_err(|e| {
                    parquet_error(path, &e, &format!("row group {g}, column `{}`", c.name))
                })?;
                readers.push(r);
            }
            let mut group_rows = 0u64;
            loop {
                let mut n_rows = None;
                for ((batch, reader), c) in batches.iter_mut().zip(&mut readers).zip(columns) {
                    let n = guard(path, || batch.read(reader))?.map_err(|e| {
                        parquet_error(path, &e, &format!("row group {g}, column `{}`", c.name))
                    })?;
                    if *n_rows.get_or_insert(n) != n {
                        return Err(DataError::Parquet {
                            path: path.clone(),
                            message: format!(
                                "row group {g}: column `{}` has {n} rows where `{}` has {} \
                                 (at row {})",
                                c.name,
                                columns[0].name,
                                n_rows.unwrap_or(0),
                                first_row + 1
                            ),
                        });
                    }
                }
                let n = n_rows.unwrap_or(0);
                if n == 0 {
                    break;
                }
                f(&batches, first_row)?;
                first_row += n as u64;
                group_rows += n as u64;
            }
            if i64::try_from(group_rows).ok() != Some(expected_rows) {
                return Err(DataError::Parquet {
                    path: path.clone(),
                    message: format!(
                        "row group {g} holds {group_rows} rows but its metadata says \
                         {expected_rows}"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Runs a parquet-crate call, turning a panic inside it into [`DataError::Parquet`].
///
/// A last resort: parquet 60.1 panics on some corrupt files instead of returning an error.
/// Flipping every byte of a cells.parquet (`tests/data_parquet.rs`, exhaustive mode) found
/// three kinds: negative column-chunk ranges (now checked first,
/// [`ParquetTable::check_chunk`]), and two inside page decoding, caught here: "range end
/// index 4 out of range for slice of length 0" and "Decoder for dict should have been set"
/// (a dictionary-encoded page without its dictionary page). Needs `panic = "unwind"` (the
/// default; the crate's profiles keep it).
fn guard<T>(path: &Path, call: impl FnOnce() -> T) -> Result<T, DataError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "decoder panicked".to_string());
        DataError::Parquet {
            path: path.to_path_buf(),
            message: format!("decoder failed on corrupt data: {message}"),
        }
    })
}

fn parquet_error(path: &Path, err: &ParquetError, context: &str) -> DataError {
    DataError::Parquet {
        path: path.to_path_buf(),
        message: format!("{context}: {err}"),
    }
}

/// `INT64 (Integer(64, signed))`, `BYTE_ARRAY (String)`, or `list of ...`.
fn describe_type(d: &ColumnDescriptor, repeated: bool) -> String {
    let mut s = format!("{}", d.physical_type());
    if let Some(l) = d.logical_type_ref() {
        let _ = write!(s, " ({l:?})");
    } else if d.converted_type() != ::parquet::basic::ConvertedType::NONE {
        let _ = write!(s, " ({})", d.converted_type());
    } else if d.physical_type() == PhysicalType::BYTE_ARRAY {
        s.push_str(" (binary)");
    }
    if repeated {
        s = format!("a list of {s}");
    }
    s
}

/// Decoded values of one column for one batch.
enum Values {
    Bool(Vec<bool>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<ByteArray>),
}

/// One column's batch: values of non-null rows plus, when nullable, the definition levels.
struct Batch {
    name: String,
    nullable: bool,
    unsigned: bool,
    values: Values,
    def_levels: Vec<i16>,
    /// Per row: index into `values`, or [`NULL_SLOT`] (filled only when nullable).
    slots: Vec<u32>,
    rows: usize,
}

const NULL_SLOT: u32 = u32::MAX;

/// One value, borrowed from a [`Batch`].
enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bytes(&'a [u8]),
}

impl Batch {
    fn new(c: &Column) -> Batch {
        Batch {
            name: c.name.clone(),
            nullable: c.nullable,
            unsigned: c.unsigned,
            values: Values::Bool(Vec::new()),
            def_levels: Vec::new(),
            slots: Vec::new(),
            rows: 0,
        }
    }

    fn len(&self) -> usize {
        self.rows
    }

    /// Reads the next batch from `reader`; returns the number of rows.
    fn read(&mut self, reader: &mut ColumnReader) -> Result<usize, ParquetError> {
        let def = if self.nullable {
            self.def_levels.clear();
            Some(&mut self.def_levels)
        } else {
            None
        };
        macro_rules! read_into {
            ($r:expr, $variant:ident) => {{
                if !matches!(self.values, Values::$variant(_)) {
                    self.values = Values::$variant(Vec::with_capacity(BATCH_ROWS));
                }
                let Values::$variant(v) = &mut self.values else {
                    unreachable!("values set to this variant just above")
                };
                v.clear();
                $r.read_records(BATCH_ROWS, def, None, v)?
            }};
        }
        let (records, n_values, _levels) = match reader {
            ColumnReader::BoolColumnReader(r) => read_into!(r, Bool),
            ColumnReader::Int32ColumnReader(r) => read_into!(r, I32),
            ColumnReader::Int64ColumnReader(r) => read_into!(r, I64),
            ColumnReader::FloatColumnReader(r) => read_into!(r, F32),
            ColumnReader::DoubleColumnReader(r) => read_into!(r, F64),
            ColumnReader::ByteArrayColumnReader(r) => read_into!(r, Bytes),
            _ => {
                return Err(ParquetError::General(
                    "unsupported physical type (checked when the column was chosen)".into(),
                ))
            }
        };
        self.rows = records;
        self.slots.clear();
        if self.nullable {
            if self.def_levels.len() != records {
                return Err(ParquetError::General(format!(
                    "{} definition levels for {records} rows",
                    self.def_levels.len()
                )));
            }
            let mut next = 0u32;
            for &level in &self.def_levels {
                if level > 0 {
                    self.slots.push(next);
                    next += 1;
                } else {
                    self.slots.push(NULL_SLOT);
                }
            }
            if next as usize != n_values {
                return Err(ParquetError::General(format!(
                    "{n_values} values for {next} non-null rows"
                )));
            }
        } else if n_values != records {
            return Err(ParquetError::General(format!(
                "{n_values} values for {records} rows of a required column"
            )));
        }
        Ok(records)
    }

    fn get(&self, row: usize) -> Value<'_> {
        let i = if self.nullable {
            match self.slots.get(row) {
                Some(&s) if s != NULL_SLOT => s as usize,
                _ => return Value::Null,
            }
        } else {
            row
        };
        let unsigned = self.unsigned;
        match &self.values {
            Values::Bool(v) => v.get(i).map_or(Value::Null, |&b| Value::Bool(b)),
            Values::I32(v) => v.get(i).map_or(Value::Null, |&x| {
                if unsigned {
                    Value::UInt(u64::from(x as u32))
                } else {
                    Value::Int(i64::from(x))
                }
            }),
            Values::I64(v) => v.get(i).map_or(Value::Null, |&x| {
                if unsigned {
                    Value::UInt(x as u64)
                } else {
                    Value::Int(x)
                }
            }),
            Values::F32(v) => v
                .get(i)
                .map_or(Value::Null, |&x| Value::Float(f64::from(x))),
            Values::F64(v) => v.get(i).map_or(Value::Null, |&x| Value::Float(x)),
            Values::Bytes(v) => v.get(i).map_or(Value::Null, |b| Value::Bytes(b.data())),
        }
    }
}

impl Value<'_> {
    fn show(&self) -> String {
        match self {
            Value::Null => "null".to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Int(x) => x.to_string(),
            Value::UInt(x) => x.to_string(),
            Value::Float(x) => x.to_string(),
            Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        }
    }
}

/// A row of the current batch, for typed access with errors naming file row and column.
#[derive(Clone, Copy)]
struct Cell<'p> {
    path: &'p Path,
    row: usize,
    first_row: u64,
}

impl Cell<'_> {
    fn bad(&self, col: &Batch, value: &str, expected: &'static str) -> DataError {
        DataError::ParquetValue {
            path: self.path.to_path_buf(),
            row: self.first_row + self.row as u64 + 1,
            column: col.name.clone(),
            value: value.to_string(),
            expected,
        }
    }

    /// A finite number; null, text or non-finite values are errors.
    fn number(&self, col: &Batch) -> Result<f32, DataError> {
        self.optional_number(col)?
            .ok_or_else(|| self.bad(col, "null", "a finite number"))
    }

    /// A finite number, `None` for null.
    fn optional_number(&self, col: &Batch) -> Result<Option<f32>, DataError> {
        let v = col.get(self.row);
        let x = match v {
            Value::Null => return Ok(None),
            Value::Int(x) => x as f64,
            Value::UInt(x) => x as f64,
            Value::Float(x) => x,
            _ => return Err(self.bad(col, &v.show(), "a finite number")),
        };
        let x = x as f32;
        if x.is_finite() {
            Ok(Some(x))
        } else {
            Err(self.bad(col, &v.show(), "a finite number"))
        }
    }

    /// Text from a string or binary column (trimmed); null is an error.
    fn text<'a>(&self, col: &'a Batch) -> Result<Cow<'a, str>, DataError> {
        match col.get(self.row) {
            Value::Bytes(b) => std::str::from_utf8(b)
                .map(|s| Cow::Borrowed(s.trim()))
                .map_err(|_| self.bad(col, &String::from_utf8_lossy(b), "UTF-8 text")),
            v => Err(self.bad(col, &v.show(), "text")),
        }
    }

    /// A boolean from a boolean, 0/1 integer or text column.
    fn flag(&self, col: &Batch) -> Result<bool, DataError> {
        let v = col.get(self.row);
        match v {
            Value::Bool(b) => Some(b),
            Value::Int(0) | Value::UInt(0) => Some(false),
            Value::Int(1) | Value::UInt(1) => Some(true),
            Value::Bytes(b) => parse_bool_text(b),
            _ => None,
        }
        .ok_or_else(|| self.bad(col, &v.show(), "0/1 or true/false"))
    }

    /// A cell id: text/binary as is (trimmed), integers in decimal, null as "" (unassigned).
    fn cell_id<'a>(&self, col: &'a Batch, buf: &'a mut String) -> Result<&'a str, DataError> {
        match col.get(self.row) {
            Value::Null => Ok(""),
            Value::Bytes(b) => std::str::from_utf8(b)
                .map(str::trim)
                .map_err(|_| self.bad(col, &String::from_utf8_lossy(b), "UTF-8 text")),
            Value::Int(x) => {
                buf.clear();
                let _ = write!(buf, "{x}");
                Ok(buf.as_str())
            }
            Value::UInt(x) => {
                buf.clear();
                let _ = write!(buf, "{x}");
                Ok(buf.as_str())
            }
            v => Err(self.bad(col, &v.show(), "a string, binary or integer cell id")),
        }
    }
}
