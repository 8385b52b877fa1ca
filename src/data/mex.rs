//! 10x MEX cell-feature matrices (`cell_feature_matrix/` of a Xenium output bundle).
//!
//! A MEX folder holds three files, each optionally gzipped (recognised by the gzip magic
//! bytes, whatever the name):
//!
//! * `matrix.mtx(.gz)`: Matrix Market `coordinate` `integer` or `real` `general`, shape
//!   `[n_features, n_barcodes]`, 1-based `row col value` entries;
//! * `features.tsv(.gz)`: `id \t name \t type`, one line per matrix row;
//! * `barcodes.tsv(.gz)`: one cell id per line, one line per matrix column.
//!
//! Only features of type `Gene Expression` whose name is not a control
//! ([`super::xenium::is_control_feature`]) become genes; negative-control probes and
//! codewords, unassigned codewords and genomic controls are dropped.

use std::collections::HashMap;
use std::io::BufRead;
#[cfg(feature = "native-io")]
use std::io::Write;
use std::path::{Path, PathBuf};

#[cfg(feature = "native-io")]
use super::csv_util::create_text;
use super::csv_util::{decode, is_gzip};
use super::error::DataError;
use super::sparse::CsrCounts;
use super::xenium::{is_control_feature, sort_permutation, CellTable};

/// Feature type kept as genes (third column of `features.tsv`).
pub const GENE_EXPRESSION: &str = "Gene Expression";

/// Line-by-line reader that counts lines and names file + line in errors.
struct Lines<'a> {
    path: PathBuf,
    reader: Box<dyn BufRead + 'a>,
    line: u64,
    buf: String,
    bytes: Vec<u8>,
}

impl<'a> Lines<'a> {
    /// Lines of a decoded text source; `path` is the file named in errors.
    fn new(path: &Path, reader: Box<dyn BufRead + 'a>) -> Self {
        Lines {
            path: path.to_path_buf(),
            reader,
            line: 0,
            buf: String::new(),
            bytes: Vec::new(),
        }
    }

    /// Reads the next line into [`Lines::text`]; `false` at end of file.
    fn next_line(&mut self) -> Result<bool, DataError> {
        self.buf.clear();
        match self.reader.read_line(&mut self.buf) {
            Ok(0) => Ok(false),
            Ok(_) => {
                self.line += 1;
                Ok(true)
            }
            Err(source) => Err(DataError::ReadAt {
                path: self.path.clone(),
                line: self.line,
                source,
            }),
        }
    }

    /// Reads the next line's raw bytes into `bytes`; `false` at end of file.
    fn next_bytes(&mut self) -> Result<bool, DataError> {
        self.bytes.clear();
        match self.reader.read_until(b'\n', &mut self.bytes) {
            Ok(0) => Ok(false),
            Ok(_) => {
                self.line += 1;
                Ok(true)
            }
            Err(source) => Err(DataError::ReadAt {
                path: self.path.clone(),
                line: self.line,
                source,
            }),
        }
    }

    /// The current line without its line ending.
    fn text(&self) -> &str {
        self.buf.trim_end_matches(['\n', '\r'])
    }

    fn err(&self, message: String) -> DataError {
        DataError::Mex {
            path: self.path.clone(),
            line: self.line,
            message,
        }
    }
}

/// One parsed entry line.
enum Entry {
    /// 1-based `(row, col, value)`.
    Values(usize, usize, f32),
    /// Blank or comment line.
    Skip,
}

/// Parses `row col value` with integer indices and a small integer value (≤ 7 digits, exact
/// in f32);
/// `None` for anything else (the caller re-parses it as text to report the error).
fn parse_entry_fast(line: &[u8]) -> Option<Entry> {
    let mut i = 0;
    let n = line.len();
    let skip_ws = |i: &mut usize| {
        while *i < n && matches!(line[*i], b' ' | b'\t' | b'\r' | b'\n') {
            *i += 1;
        }
    };
    let uint = |i: &mut usize| -> Option<usize> {
        let start = *i;
        let mut v: usize = 0;
        while *i < n && line[*i].is_ascii_digit() {
            v = v.checked_mul(10)?.checked_add((line[*i] - b'0') as usize)?;
            *i += 1;
        }
        (*i > start).then_some(v)
    };
    skip_ws(&mut i);
    if i == n || line[i] == b'%' {
        return Some(Entry::Skip);
    }
    let r = uint(&mut i)?;
    skip_ws(&mut i);
    let c = uint(&mut i)?;
    skip_ws(&mut i);
    let start = i;
    // Integer counts only (what Xenium writes); decimals go to the exact text parser.
    let v = uint(&mut i)?;
    let end = i;
    skip_ws(&mut i);
    if i != n || end - start > 7 {
        return None;
    }
    Some(Entry::Values(r, c, v as f32))
}

/// Finds `dir/name` or `dir/name.gz`, preferring the gzipped file when both exist.
#[cfg(feature = "native-io")]
fn find(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    let plain = dir.join(name);
    if plain.is_file() {
        return Ok(plain);
    }
    Err(DataError::Io {
        path: plain,
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("neither {name} nor {name}.gz is in this MEX folder"),
        ),
    })
}

/// One row of `features.tsv`.
struct Feature {
    name: String,
    keep: bool,
    /// 1-based line of `features.tsv` it was read from (named in errors).
    line: u64,
}

fn read_features(mut lines: Lines<'_>) -> Result<Vec<Feature>, DataError> {
    let mut out = Vec::new();
    while lines.next_line()? {
        let line = lines.text();
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 3 {
            let msg = format!(
                "`{line}` has {} tab-separated fields, expected 3 (id, name, type)",
                cols.len()
            );
            return Err(lines.err(msg));
        }
        let name = cols[1].trim();
        if name.is_empty() {
            return Err(lines.err(format!("empty feature name in `{line}`")));
        }
        let keep = cols[2].trim() == GENE_EXPRESSION && !is_control_feature(name);
        out.push(Feature {
            name: name.to_string(),
            keep,
            line: lines.line,
        });
    }
    Ok(out)
}

/// The barcodes in file order; a barcode on two lines is an error naming both lines.
fn read_barcodes(mut lines: Lines<'_>) -> Result<Vec<String>, DataError> {
    let mut out = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    while lines.next_line()? {
        let line = lines.text();
        let id = line.split('\t').next().unwrap_or_default().trim();
        if id.is_empty() {
            continue;
        }
        if let Some(first) = seen.insert(id.to_string(), lines.line) {
            return Err(lines.err(format!("barcode `{id}` appears on lines {first} and {}; each cell must be listed once", lines.line)));
        }
        out.push(id.to_string());
    }
    Ok(out)
}

fn parse_index(tok: Option<&str>, lines: &Lines<'_>, what: &str) -> Result<usize, DataError> {
    let tok = tok.ok_or_else(|| lines.err(format!("missing {what}")))?;
    tok.parse::<usize>()
        .map_err(|_| lines.err(format!("{what} `{tok}` is not a non-negative integer")))
}

/// A MEX matrix read as sparse counts: cells and genes in canonical order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseCellMatrix {
    /// Cell ids (barcodes), length `n_cells`, sorted numerically when all are integers.
    pub cell_ids: Vec<String>,
    /// Kept gene names, length `n_genes`, sorted alphabetically.
    pub genes: Vec<String>,
    /// Counts `[n_cells, n_genes]` in CSR layout.
    pub counts: CsrCounts,
}

impl SparseCellMatrix {
    /// Converts to the dense [`CellTable`] (`[n_cells, n_genes]`); centroids are unknown
    /// (`[NaN, NaN]`, nucleus `None`) until [`super::attach_centroids`] fills them.
    pub fn into_cell_table(self) -> CellTable {
        let n_cells = self.cell_ids.len();
        let counts = self.counts.to_dense();
        CellTable {
            cell_ids: self.cell_ids,
            genes: self.genes,
            counts,
            centroids_um: vec![[f32::NAN; 2]; n_cells],
            nucleus_centroids_um: vec![None; n_cells],
        }
    }
}

/// Reads a 10x MEX folder (`matrix.mtx`, `features.tsv`, `barcodes.tsv`, each optionally
/// `.gz`) into a [`CellTable`] of shape `[n_cells, n_genes]`.
///
/// * genes: kept features (type `Gene Expression`, not a control), **sorted alphabetically**
///   like [`super::read_transcripts_csv`] so that [`CellTable::gene_index`] works;
/// * cells: every barcode, sorted numerically when all are integers, else as strings (again
///   as the transcript reader), including cells with no counts;
/// * `centroids_um` is `[NaN, NaN]` and `nucleus_centroids_um` `None` for every cell: the
///   matrix carries no positions. Fill them with [`super::attach_centroids`] from `cells.csv`.
///
/// Repeated `(row, col)` entries are summed. Fails with [`DataError::Mex`] (file and line)
/// on a bad header, size line, index out of range, negative or non-finite value, wrong entry
/// count or duplicate gene name; with [`DataError::ReadAt`] on a truncated gzip stream.
/// For large slides use [`read_mex_dir_csr`], which never builds the dense matrix.
#[cfg(feature = "native-io")]
pub fn read_mex_dir(dir: &Path) -> Result<CellTable, DataError> {
    Ok(read_mex_dir_csr(dir)?.into_cell_table())
}

/// Reads a 10x MEX folder as sparse counts, holding about one copy of the CSR matrix.
///
/// Same files, filters, order and errors as [`read_mex_dir`]. The matrix file is read twice
/// (a counting pass, then a filling pass straight into final CSR positions), so peak memory is
/// the CSR arrays plus the barcode strings — no triplet list, no dense matrix, no second copy.
#[cfg(feature = "native-io")]
pub fn read_mex_dir_csr(dir: &Path) -> Result<SparseCellMatrix, DataError> {
    let features_path = find(dir, "features.tsv")?;
    let barcodes_path = find(dir, "barcodes.tsv")?;
    let matrix_path = find(dir, "matrix.mtx")?;
    let open = |path: &Path| -> Result<Lines<'static>, DataError> {
        Ok(Lines::new(path, super::csv_util::open_text(path)?))
    };
    read_mex_csr(
        open(&features_path)?,
        open(&barcodes_path)?,
        &matrix_path,
        &|| open(&matrix_path),
    )
}

/// Reads a MEX matrix from the bytes of its three files (each plain or gzip-compressed,
/// recognised by the gzip magic bytes), e.g. files a user dropped into a web page.
///
/// The same parser as [`read_mex_dir_csr`]: same filters, canonical order and errors. Errors
/// name the files `features.tsv`, `barcodes.tsv` and `matrix.mtx` (with `.gz` for gzip data)
/// and the line. The matrix bytes are decoded twice (a counting pass, then a filling pass), so
/// no decompressed copy is held.
pub fn read_mex_bytes(
    features: &[u8],
    barcodes: &[u8],
    matrix: &[u8],
) -> Result<SparseCellMatrix, DataError> {
    let name = |base: &str, bytes: &[u8]| {
        PathBuf::from(if is_gzip(bytes) {
            format!("{base}.gz")
        } else {
            base.to_string()
        })
    };
    let matrix_path = name("matrix.mtx", matrix);
    read_mex_csr(
        lines_of(&name("features.tsv", features), features)?,
        lines_of(&name("barcodes.tsv", barcodes), barcodes)?,
        &matrix_path,
        &|| lines_of(&matrix_path, matrix),
    )
}

/// [`Lines`] over in-memory bytes, gunzipped when they start with the gzip magic.
fn lines_of<'a>(path: &Path, bytes: &'a [u8]) -> Result<Lines<'a>, DataError> {
    Ok(Lines::new(path, decode(bytes, path)?))
}

/// The one MEX parser behind [`read_mex_dir_csr`] and [`read_mex_bytes`]: `features` and
/// `barcodes` are read once, the matrix (named `matrix_path` in errors) is opened twice through
/// `open_matrix`.
fn read_mex_csr<'a>(
    features: Lines<'a>,
    barcodes: Lines<'a>,
    matrix_path: &Path,
    open_matrix: &dyn Fn() -> Result<Lines<'a>, DataError>,
) -> Result<SparseCellMatrix, DataError> {
    let features_path = features.path.clone();
    let barcodes_path = barcodes.path.clone();
    let features = read_features(features)?;
    let barcodes = read_barcodes(barcodes)?;

    // Kept genes, sorted; a duplicate is an error naming both lines.
    {
        let mut seen: HashMap<&str, u64> = HashMap::new();
        for f in features.iter().filter(|f| f.keep) {
            if let Some(first) = seen.insert(f.name.as_str(), f.line) {
                return Err(DataError::Mex {
                    path: features_path,
                    line: f.line,
                    message: format!(
                        "gene name `{}` appears on lines {first} and {}; each gene must be listed once (merge or rename one)",
                        f.name, f.line
                    ),
                });
            }
        }
    }
    let kept: Vec<usize> = (0..features.len()).filter(|&i| features[i].keep).collect();
    let mut genes: Vec<String> = kept.iter().map(|&i| features[i].name.clone()).collect();
    let gene_new = sort_permutation(&genes, false);
    let mut feature_col: Vec<Option<u32>> = vec![None; features.len()];
    for (k, &f) in kept.iter().enumerate() {
        feature_col[f] = Some(gene_new[k] as u32);
    }
    let mut sorted_genes = vec![String::new(); genes.len()];
    for (k, g) in genes.drain(..).enumerate() {
        sorted_genes[gene_new[k]] = g;
    }
    let cell_new = sort_permutation(&barcodes, true);
    let n_barcodes = barcodes.len();
    let mut cell_ids = vec![String::new(); n_barcodes];
    for (k, b) in barcodes.into_iter().enumerate() {
        cell_ids[cell_new[k]] = b;
    }

    // Pass 1: validate every entry and count the kept ones per (final) cell row.
    let shape = (features.len(), n_barcodes);
    let mut row_len = vec![0u64; n_barcodes + 1];
    for_each_entry(
        open_matrix()?,
        shape,
        &features_path,
        &barcodes_path,
        |r, c, _v| {
            if feature_col[r].is_some() {
                row_len[cell_new[c] + 1] += 1;
            }
        },
    )?;
    for i in 0..n_barcodes {
        row_len[i + 1] += row_len[i];
    }
    let indptr = row_len;
    let nnz = indptr[n_barcodes] as usize;

    // Pass 2: write each entry at its row's cursor.
    let mut cursor: Vec<u64> = indptr[..n_barcodes].to_vec();
    let mut indices = vec![0u32; nnz];
    let mut data = vec![0f32; nnz];
    let mut overflow = false;
    for_each_entry(
        open_matrix()?,
        shape,
        &features_path,
        &barcodes_path,
        |r, c, v| {
            if let Some(g) = feature_col[r] {
                let row = cell_new[c];
                let at = cursor[row];
                // The file changed between passes if a row overflows its slot.
                if at < indptr[row + 1] {
                    indices[at as usize] = g;
                    data[at as usize] = v;
                    cursor[row] = at + 1;
                } else {
                    overflow = true;
                }
            }
        },
    )?;
    drop(cursor);
    if overflow {
        return Err(DataError::Mex {
            path: matrix_path.to_path_buf(),
            line: 0,
            message: "the file changed while it was being read (entry counts differ between \
                      passes)"
                .into(),
        });
    }
    let mut counts = CsrCounts {
        n_genes: sorted_genes.len(),
        indptr,
        indices,
        data,
    };
    counts.canonicalise();
    Ok(SparseCellMatrix {
        cell_ids,
        genes: sorted_genes,
        counts,
    })
}

/// Streams the entries of a Matrix Market `coordinate` file, validated, as 0-based
/// `(feature row, barcode column, value)`; `shape` is `(features, barcodes)`.
fn for_each_entry(
    mut lines: Lines<'_>,
    shape: (usize, usize),
    features_path: &Path,
    barcodes_path: &Path,
    mut f: impl FnMut(usize, usize, f32),
) -> Result<(), DataError> {
    if !lines.next_line()? {
        return Err(lines.err("empty file, expected a `%%MatrixMarket` header".into()));
    }
    let header = lines.text().to_string();
    let words: Vec<String> = header
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let ok_header = words.len() == 5
        && words[0] == "%%matrixmarket"
        && words[1] == "matrix"
        && words[2] == "coordinate"
        && matches!(words[3].as_str(), "integer" | "real")
        && words[4] == "general";
    if !ok_header {
        return Err(lines.err(format!(
            "header `{header}`, expected `%%MatrixMarket matrix coordinate integer general` \
             (or `real`)"
        )));
    }
    // Skip comments, then the size line `rows cols entries`.
    let (n_rows, n_cols, n_entries) = loop {
        if !lines.next_line()? {
            return Err(lines.err("no size line `rows cols entries` after the header".into()));
        }
        let line = lines.text().trim();
        if line.is_empty() || line.starts_with('%') {
            continue;
        }
        let mut toks = line.split_whitespace();
        let r = parse_index(toks.next(), &lines, "row count")?;
        let c = parse_index(toks.next(), &lines, "column count")?;
        let e = parse_index(toks.next(), &lines, "entry count")?;
        if toks.next().is_some() {
            return Err(lines.err("size line has more than 3 fields".into()));
        }
        break (r, c, e);
    };
    if (n_rows, n_cols) != shape {
        return Err(lines.err(format!(
            "matrix is {n_rows} x {n_cols} but {} lists {} features and {} lists {} barcodes",
            features_path.display(),
            shape.0,
            barcodes_path.display(),
            shape.1
        )));
    }
    let mut seen_entries = 0usize;
    // Entry lines are parsed from bytes (no UTF-8 check, no String per line): the matrix of a
    // 1M-cell slide has ~10^8 of them. Anything unusual falls back to the text path's errors.
    while lines.next_bytes()? {
        let (r, c, v) = match parse_entry_fast(&lines.bytes) {
            Some(Entry::Values(r, c, v)) => (r, c, v),
            Some(Entry::Skip) => continue,
            None => {
                let text = String::from_utf8_lossy(&lines.bytes).into_owned();
                let line = text.trim();
                if line.is_empty() || line.starts_with('%') {
                    continue;
                }
                let mut toks = line.split_whitespace();
                let r = parse_index(toks.next(), &lines, "row index")?;
                let c = parse_index(toks.next(), &lines, "column index")?;
                let v_tok = toks
                    .next()
                    .ok_or_else(|| lines.err(format!("entry `{line}` has no value")))?;
                let v: f32 = v_tok
                    .parse::<f32>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| {
                        lines.err(format!(
                            "value `{v_tok}` is not a finite non-negative count"
                        ))
                    })?;
                (r, c, v)
            }
        };
        if r == 0 || r > n_rows {
            return Err(lines.err(format!("row index {r} out of range 1..={n_rows}")));
        }
        if c == 0 || c > n_cols {
            return Err(lines.err(format!("column index {c} out of range 1..={n_cols}")));
        }
        seen_entries += 1;
        if seen_entries > n_entries {
            return Err(lines.err(format!(
                "more entries than the {n_entries} announced on the size line"
            )));
        }
        f(r - 1, c - 1, v);
    }
    if seen_entries != n_entries {
        return Err(lines.err(format!(
            "file ends after {seen_entries} entries but the size line announces {n_entries}; \
             the file is truncated"
        )));
    }
    Ok(())
}

/// Writes `table` as a MEX folder in `dir` (created if needed): `matrix.mtx`,
/// `features.tsv`, `barcodes.tsv`, with a `.gz` suffix and gzip compression when `gzip`.
///
/// Rows are the genes of `table` in order (feature id = name, type `Gene Expression`), columns
/// its cells in order; only non-zero counts are stored, as integers when every count is
/// integral (`integer` header), else `real`. Centroids are not written (see
/// [`super::write_cells_csv`]). Meant for fixtures and round trips.
#[cfg(feature = "native-io")]
pub fn write_mex_dir(table: &CellTable, dir: &Path, gzip: bool) -> Result<(), DataError> {
    let (n_cells, n_genes) = (table.n_cells(), table.n_genes());
    if table.counts.len() != n_cells * n_genes {
        return Err(DataError::Shape {
            what: "CellTable counts [n_cells, n_genes]",
            expected: n_cells * n_genes,
            found: table.counts.len(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let suffix = if gzip { ".gz" } else { "" };
    let write = |name: &str, body: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>| {
        let path = dir.join(format!("{name}{suffix}"));
        let mut w = create_text(&path, gzip)?;
        body(&mut w)
            .and_then(|()| w.flush())
            .map_err(|e| DataError::io(&path, e))
    };
    write("features.tsv", &mut |w| {
        for g in &table.genes {
            writeln!(w, "{g}\t{g}\t{GENE_EXPRESSION}")?;
        }
        Ok(())
    })?;
    write("barcodes.tsv", &mut |w| {
        for id in &table.cell_ids {
            writeln!(w, "{id}")?;
        }
        Ok(())
    })?;
    let integral = table.counts.iter().all(|v| v.fract() == 0.0);
    let nnz = table.counts.iter().filter(|&&v| v != 0.0).count();
    write("matrix.mtx", &mut |w| {
        let field = if integral { "integer" } else { "real" };
        writeln!(w, "%%MatrixMarket matrix coordinate {field} general")?;
        writeln!(w, "% written by cellsymphony")?;
        writeln!(w, "{n_genes} {n_cells} {nnz}")?;
        for c in 0..n_cells {
            for (g, &v) in table.row(c).iter().enumerate() {
                if v != 0.0 {
                    writeln!(w, "{} {} {}", g + 1, c + 1, v)?;
                }
            }
        }
        Ok(())
    })?;
    Ok(())
}
