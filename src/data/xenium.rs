//! Xenium transcripts: the per-transcript list and the per-cell count table built from it.
//!
//! Coordinates are in micrometres (µm) in the Xenium slide frame: `x` grows with the image
//! column, `y` with the image row (see [`super::image::ImageFrame`]).

use std::path::Path;

use super::csv_util::{self, CsvReader};
use super::error::DataError;

/// Feature-name prefixes of Xenium control probes and codewords; these are not genes.
pub const CONTROL_FEATURE_PREFIXES: [&str; 7] = [
    "NegControlProbe_",
    "NegControlCodeword_",
    "BLANK_",
    "Unassigned",
    "antisense_",
    "DeprecatedCodeword",
    "Intergenic",
];

/// A cell needs at least this many nucleus-overlapping transcripts for a nucleus centroid.
pub const MIN_NUCLEUS_TRANSCRIPTS: usize = 3;

/// `true` for Xenium control features (negative-control probes, blank codewords, ...).
pub fn is_control_feature(name: &str) -> bool {
    CONTROL_FEATURE_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// `true` for the cell ids Xenium uses for transcripts outside any cell.
pub fn is_unassigned_cell_id(id: &str) -> bool {
    matches!(id, "-1" | "UNASSIGNED" | "")
}

/// Filters applied while reading transcripts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TranscriptOptions {
    /// Minimum Phred-scaled quality `qv`; transcripts below it are dropped (Xenium default 20).
    pub min_qv: f32,
}

impl Default for TranscriptOptions {
    fn default() -> Self {
        TranscriptOptions { min_qv: 20.0 }
    }
}

/// Decoded transcripts kept after filtering, as parallel arrays of length `n_transcripts()`.
///
/// Unassigned transcripts are kept here (with `cell_index == None`); they are dropped from the
/// [`CellTable`]. Control features and low-quality transcripts are dropped from both.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transcripts {
    /// Gene panel, sorted alphabetically: every gene seen in a kept transcript.
    pub genes: Vec<String>,
    /// Ids of cells with at least one kept transcript, sorted (numerically if all are integers).
    pub cell_ids: Vec<String>,
    /// Per transcript: index into `genes`.
    pub gene_index: Vec<u32>,
    /// Per transcript: index into `cell_ids`, `None` when the transcript is in no cell.
    pub cell_index: Vec<Option<u32>>,
    /// Per transcript: `[x, y]` position in µm.
    pub xy_um: Vec<[f32; 2]>,
    /// Per transcript: whether it overlaps a segmented nucleus.
    pub overlaps_nucleus: Vec<bool>,
}

impl Transcripts {
    /// Number of transcripts kept.
    pub fn n_transcripts(&self) -> usize {
        self.xy_um.len()
    }

    /// Number of transcripts assigned to a cell.
    pub fn n_assigned(&self) -> usize {
        self.cell_index.iter().filter(|c| c.is_some()).count()
    }
}

/// Per-cell gene counts and centroids.
///
/// Cells are sorted by id (numerically when every id is an integer, else as strings); genes
/// are sorted alphabetically. Only transcripts assigned to a cell contribute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CellTable {
    /// Cell ids, length `n_cells`.
    pub cell_ids: Vec<String>,
    /// Gene names, length `n_genes`.
    pub genes: Vec<String>,
    /// Transcript counts, shape `[n_cells, n_genes]`, row-major.
    pub counts: Vec<f32>,
    /// Mean `[x, y]` (µm) of each cell's transcripts, length `n_cells`.
    pub centroids_um: Vec<[f32; 2]>,
    /// Mean `[x, y]` (µm) of each cell's nucleus-overlapping transcripts, `None` when it has
    /// fewer than [`MIN_NUCLEUS_TRANSCRIPTS`]; length `n_cells`.
    pub nucleus_centroids_um: Vec<Option<[f32; 2]>>,
}

impl CellTable {
    /// Number of cells (rows).
    pub fn n_cells(&self) -> usize {
        self.cell_ids.len()
    }

    /// Number of genes (columns).
    pub fn n_genes(&self) -> usize {
        self.genes.len()
    }

    /// Counts of cell `i`, length `n_genes`.
    ///
    /// # Panics
    /// If `i >= n_cells()`.
    pub fn row(&self, i: usize) -> &[f32] {
        let g = self.n_genes();
        &self.counts[i * g..(i + 1) * g]
    }

    /// Column index of gene `name`, if present.
    pub fn gene_index(&self, name: &str) -> Option<usize> {
        self.genes.binary_search_by(|g| g.as_str().cmp(name)).ok()
    }

    /// Total counts per cell, length `n_cells`.
    pub fn totals(&self) -> Vec<f32> {
        (0..self.n_cells())
            .map(|i| self.row(i).iter().sum())
            .collect()
    }

    /// Library-size normalised `ln(1 + count / total * target_sum)`, shape `[n_cells, n_genes]`.
    /// See [`log_normalise`].
    pub fn log_normalised(&self, target_sum: f32) -> Vec<f32> {
        log_normalise(&self.counts, self.n_genes(), target_sum)
    }

    /// Aggregates assigned transcripts into a table (unassigned ones are ignored).
    pub fn from_transcripts(t: &Transcripts) -> CellTable {
        let n_cells = t.cell_ids.len();
        let n_genes = t.genes.len();
        let mut counts = vec![0f32; n_cells * n_genes];
        // Per cell: [sum x, sum y, n] over all transcripts, then over nucleus ones.
        let mut all = vec![[0f64; 3]; n_cells];
        let mut nuc = vec![[0f64; 3]; n_cells];
        for (k, cell) in t.cell_index.iter().enumerate() {
            let Some(c) = *cell else { continue };
            let c = c as usize;
            counts[c * n_genes + t.gene_index[k] as usize] += 1.0;
            let [x, y] = t.xy_um[k];
            accumulate(&mut all[c], x, y);
            if t.overlaps_nucleus[k] {
                accumulate(&mut nuc[c], x, y);
            }
        }
        let centroids_um = all
            .iter()
            .map(|s| mean(s).unwrap_or([f32::NAN; 2]))
            .collect();
        let nucleus_centroids_um = nuc
            .iter()
            .map(|s| {
                if s[2] >= MIN_NUCLEUS_TRANSCRIPTS as f64 {
                    mean(s)
                } else {
                    None
                }
            })
            .collect();
        CellTable {
            cell_ids: t.cell_ids.clone(),
            genes: t.genes.clone(),
            counts,
            centroids_um,
            nucleus_centroids_um,
        }
    }
}

/// `ln(1 + count / total * target_sum)` per cell (row of `n_genes` values); rows with no
/// counts stay 0. Output has the shape of `counts`.
pub fn log_normalise(counts: &[f32], n_genes: usize, target_sum: f32) -> Vec<f32> {
    if n_genes == 0 {
        return Vec::new();
    }
    counts
        .chunks(n_genes)
        .flat_map(|row| {
            let total: f32 = row.iter().sum();
            let factor = if total > 0.0 { target_sum / total } else { 0.0 };
            row.iter().map(move |&c| (c * factor).ln_1p())
        })
        .collect()
}

fn accumulate(acc: &mut [f64; 3], x: f32, y: f32) {
    acc[0] += f64::from(x);
    acc[1] += f64::from(y);
    acc[2] += 1.0;
}

fn mean(acc: &[f64; 3]) -> Option<[f32; 2]> {
    (acc[2] > 0.0).then(|| [(acc[0] / acc[2]) as f32, (acc[1] / acc[2]) as f32])
}

/// The canonical order of cell ids and gene names in a [`CellTable`]: numeric when
/// `numeric_if_possible` and every name is an integer, else lexicographic. Returns the
/// permutation `new_index[old_index]`. Every reader uses it, so all layouts agree.
pub(crate) fn sort_permutation(names: &[String], numeric_if_possible: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..names.len()).collect();
    let numeric: Option<Vec<i64>> = if numeric_if_possible {
        names.iter().map(|s| s.parse::<i64>().ok()).collect()
    } else {
        None
    };
    match numeric {
        Some(keys) => order.sort_by_key(|&i| keys[i]),
        None => order.sort_by(|&a, &b| names[a].cmp(&names[b])),
    }
    let mut new_index = vec![0usize; names.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new;
    }
    new_index
}

/// Cells and genes of a count table in the canonical order of every reader
/// ([`sort_permutation`]: cells numeric when all ids are integers, genes alphabetical).
pub(crate) struct CanonicalAxes {
    /// Sorted cell ids.
    pub(crate) cell_ids: Vec<String>,
    /// Sorted kept gene names.
    pub(crate) genes: Vec<String>,
    /// `cell_row[i]`: row of input cell `i` in the table.
    pub(crate) cell_row: Vec<usize>,
    /// `gene_col[j]`: column of input feature `j`, `None` when dropped.
    pub(crate) gene_col: Vec<Option<usize>>,
}

/// Sorts `cells` and the kept `features` into the canonical order; fails on a duplicate
/// cell id or gene name with `dup_cell` / `dup_gene` (given the duplicated name).
pub(crate) fn canonical_axes(
    cells: &[String],
    features: &[String],
    keep: &[bool],
    dup_cell: impl Fn(&str) -> DataError,
    dup_gene: impl Fn(&str) -> DataError,
) -> Result<CanonicalAxes, DataError> {
    let kept: Vec<usize> = (0..features.len())
        .filter(|&i| keep.get(i).copied().unwrap_or(false))
        .collect();
    let names: Vec<String> = kept.iter().map(|&i| features[i].clone()).collect();
    let gene_new = sort_permutation(&names, false);
    let mut genes = vec![String::new(); names.len()];
    let mut gene_col = vec![None; features.len()];
    for (k, &f) in kept.iter().enumerate() {
        gene_col[f] = Some(gene_new[k]);
        genes[gene_new[k]] = names[k].clone();
    }
    if let Some(w) = genes.windows(2).find(|w| w[0] == w[1]) {
        return Err(dup_gene(&w[0]));
    }
    let cell_row = sort_permutation(cells, true);
    let mut cell_ids = vec![String::new(); cells.len()];
    for (k, id) in cells.iter().enumerate() {
        cell_ids[cell_row[k]] = id.clone();
    }
    let mut seen = std::collections::HashSet::with_capacity(cell_ids.len());
    for id in &cell_ids {
        if !seen.insert(id.as_str()) {
            return Err(dup_cell(id));
        }
    }
    Ok(CanonicalAxes {
        cell_ids,
        genes,
        cell_row,
        gene_col,
    })
}

/// Sorts `names` in place into the canonical order ([`sort_permutation`]); returns
/// `new_index[old_index]`.
fn sort_names(names: &mut Vec<String>, numeric_if_possible: bool) -> Vec<u32> {
    let new_index = sort_permutation(names, numeric_if_possible);
    let mut sorted = vec![String::new(); names.len()];
    for (old, name) in names.drain(..).enumerate() {
        sorted[new_index[old]] = name;
    }
    *names = sorted;
    new_index.into_iter().map(|i| i as u32).collect()
}

/// Whether a Xenium ≥ 2 `codeword_category` value names a gene (`predesigned_gene`,
/// `custom_gene`); control categories (`negative_control_probe`, `negative_control_codeword`,
/// `genomic_control`, `unassigned_codeword`, `deprecated_codeword`, ...) do not.
pub fn is_gene_codeword_category(category: &str) -> bool {
    category == "gene" || category.ends_with("_gene")
}

/// The one per-transcript filter every reader applies: `true` when the transcript has
/// `qv >= min_qv` and is a gene, i.e. its feature name is no control
/// ([`is_control_feature`]), its `is_gene` flag (Xenium ≥ 2, when the column exists) is not
/// `false` and its `codeword_category` (when the column exists and is non-empty) is a gene
/// category ([`is_gene_codeword_category`]).
pub fn keep_transcript(
    opts: &TranscriptOptions,
    qv: f32,
    feature: &str,
    is_gene: Option<bool>,
    codeword_category: Option<&str>,
) -> bool {
    qv >= opts.min_qv
        && !is_control_feature(feature)
        && is_gene != Some(false)
        && codeword_category.is_none_or(|c| c.is_empty() || is_gene_codeword_category(c))
}

/// Parses a text boolean as Xenium writes it: `0/1`, `0.0/1.0` or `true/false` (any case
/// of the first letter, or all caps). `None` for anything else.
pub(crate) fn parse_bool_text(text: &[u8]) -> Option<bool> {
    match text.trim_ascii() {
        b"1" | b"1.0" | b"true" | b"True" | b"TRUE" => Some(true),
        b"0" | b"0.0" | b"false" | b"False" | b"FALSE" => Some(false),
        _ => None,
    }
}

/// Accumulates kept transcripts from any reader (CSV, gzipped CSV, parquet) and builds the
/// [`Transcripts`] in the canonical gene/cell order.
pub(crate) struct TranscriptsBuilder {
    opts: TranscriptOptions,
    genes: std::collections::HashMap<String, u32>,
    gene_names: Vec<String>,
    cells: std::collections::HashMap<String, u32>,
    cell_names: Vec<String>,
    out: Transcripts,
}

impl TranscriptsBuilder {
    /// Checks the options; fails with [`DataError::InvalidArgument`] on a non-finite `min_qv`.
    pub(crate) fn new(opts: &TranscriptOptions) -> Result<Self, DataError> {
        if !opts.min_qv.is_finite() {
            return Err(DataError::InvalidArgument {
                name: "min_qv",
                value: opts.min_qv.to_string(),
                expected: "a finite quality threshold, e.g. 20",
            });
        }
        Ok(TranscriptsBuilder {
            opts: *opts,
            genes: Default::default(),
            gene_names: Vec::new(),
            cells: Default::default(),
            cell_names: Vec::new(),
            out: Transcripts::default(),
        })
    }

    /// [`keep_transcript`] with this builder's options.
    pub(crate) fn keeps(
        &self,
        qv: f32,
        feature: &str,
        is_gene: Option<bool>,
        codeword_category: Option<&str>,
    ) -> bool {
        keep_transcript(&self.opts, qv, feature, is_gene, codeword_category)
    }

    /// Adds a kept transcript; `cell_id` values of [`is_unassigned_cell_id`] mean no cell.
    pub(crate) fn push(&mut self, feature: &str, cell_id: &str, xy_um: [f32; 2], nucleus: bool) {
        let gene = intern(&mut self.genes, &mut self.gene_names, feature);
        let cell = (!is_unassigned_cell_id(cell_id))
            .then(|| intern(&mut self.cells, &mut self.cell_names, cell_id));
        self.out.gene_index.push(gene);
        self.out.cell_index.push(cell);
        self.out.xy_um.push(xy_um);
        self.out.overlaps_nucleus.push(nucleus);
    }

    /// Sorts genes and cells canonically ([`sort_permutation`]); fails with
    /// [`DataError::Empty`] when no transcript was kept.
    pub(crate) fn finish(mut self, path: &Path) -> Result<Transcripts, DataError> {
        if self.out.xy_um.is_empty() {
            return Err(DataError::Empty {
                path: path.to_path_buf(),
                message: format!(
                    "no gene transcript with qv >= {} (control features excluded); \
                     check the file or lower min_qv",
                    self.opts.min_qv
                ),
            });
        }
        let gene_map = sort_names(&mut self.gene_names, false);
        let cell_map = sort_names(&mut self.cell_names, true);
        for g in &mut self.out.gene_index {
            *g = gene_map[*g as usize];
        }
        for c in self.out.cell_index.iter_mut().flatten() {
            *c = cell_map[*c as usize];
        }
        self.out.genes = self.gene_names;
        self.out.cell_ids = self.cell_names;
        Ok(self.out)
    }
}

const TRANSCRIPTS_CSV: &str = "a Xenium transcripts CSV with columns cell_id, overlaps_nucleus, \
                               feature_name, x_location, y_location, qv";

/// The CSV branch of [`super::read_transcripts`]: reads `transcripts.csv` or
/// `transcripts.csv.gz` (gzip recognised by its magic bytes) with its filters.
#[cfg(feature = "native-io")]
pub(crate) fn read_transcripts_csv_file(
    path: &Path,
    opts: &TranscriptOptions,
) -> Result<Transcripts, DataError> {
    read_transcripts_from(csv_util::open(path)?, path, opts)
}

/// First four bytes of a parquet file (`PAR1`).
const PARQUET_START: &[u8; 4] = b"PAR1";

/// Reads Xenium transcripts from the bytes of a `transcripts.csv` or `transcripts.csv.gz`
/// (gzip recognised by its magic bytes), e.g. a file dropped into a web page; `name` is the
/// file named in errors. The same parser, filters and errors as the CSV branch of
/// [`read_transcripts`]. `transcripts.parquet` is read natively only: parquet bytes fail with
/// [`DataError::InvalidArgument`] saying so.
pub fn read_transcripts_csv_bytes(
    name: &str,
    bytes: &[u8],
    opts: &TranscriptOptions,
) -> Result<Transcripts, DataError> {
    if bytes.starts_with(PARQUET_START) {
        return Err(DataError::InvalidArgument {
            name: "transcripts",
            value: format!("{name} (a parquet file)"),
            expected: "transcripts.csv or transcripts.csv.gz: parquet is read by the native \
                       tools only (`cellsymphony` CLI); export the CSV or use the MEX matrix",
        });
    }
    let path = Path::new(name);
    read_transcripts_from(csv_util::from_bytes(bytes, path)?, path, opts)
}

/// [`read_transcripts_csv_bytes`] aggregated into a [`CellTable`] like
/// [`read_transcripts_csv`]; fails with [`DataError::Empty`] when no transcript is assigned to
/// a cell.
pub fn read_transcripts_table_bytes(
    name: &str,
    bytes: &[u8],
    opts: &TranscriptOptions,
) -> Result<CellTable, DataError> {
    let transcripts = read_transcripts_csv_bytes(name, bytes, opts)?;
    cell_table_of(&transcripts, Path::new(name))
}

/// The one transcripts-CSV parser behind [`read_transcripts`] (CSV branch) and
/// [`read_transcripts_csv_bytes`]; `path` is the file named in errors.
fn read_transcripts_from(
    mut reader: CsvReader<'_>,
    path: &Path,
    opts: &TranscriptOptions,
) -> Result<Transcripts, DataError> {
    let mut builder = TranscriptsBuilder::new(opts)?;
    let header = csv_util::header(&mut reader, path)?;
    let col = |name: &str| csv_util::column(&header, name, path, TRANSCRIPTS_CSV);
    let (c_cell, c_nuc, c_feat) = (
        col("cell_id")?,
        col("overlaps_nucleus")?,
        col("feature_name")?,
    );
    let (c_x, c_y, c_qv) = (col("x_location")?, col("y_location")?, col("qv")?);
    let c_is_gene = header.iter().position(|h| h == "is_gene");
    let c_category = header.iter().position(|h| h == "codeword_category");

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
        let text = |i: usize, column: &str| {
            std::str::from_utf8(field(i))
                .map(str::trim)
                .map_err(|_| csv_util::bad_value(field(i), path, line, column, "UTF-8 text"))
        };

        let qv = csv_util::parse_f32(field(c_qv), path, line, "qv")?;
        let feature = text(c_feat, "feature_name")?;
        if feature.is_empty() {
            return Err(csv_util::bad_value(
                b"",
                path,
                line,
                "feature_name",
                "a gene name",
            ));
        }
        let is_gene = match c_is_gene {
            Some(c) => Some(parse_bool_text(field(c)).ok_or_else(|| {
                csv_util::bad_value(field(c), path, line, "is_gene", "true/false or 0/1")
            })?),
            None => None,
        };
        let category = c_category
            .map(|c| text(c, "codeword_category"))
            .transpose()?;
        if !builder.keeps(qv, feature, is_gene, category) {
            continue;
        }
        let x = csv_util::parse_f32(field(c_x), path, line, "x_location")?;
        let y = csv_util::parse_f32(field(c_y), path, line, "y_location")?;
        let nucleus = parse_bool_text(field(c_nuc)).ok_or_else(|| {
            csv_util::bad_value(
                field(c_nuc).trim_ascii(),
                path,
                line,
                "overlaps_nucleus",
                "0/1 or true/false",
            )
        })?;
        let cell_id = text(c_cell, "cell_id")?;
        builder.push(feature, cell_id, [x, y], nucleus);
    }
    builder.finish(path)
}

/// Index of `name` in `names`, appending it on first sight.
fn intern(
    index: &mut std::collections::HashMap<String, u32>,
    names: &mut Vec<String>,
    name: &str,
) -> u32 {
    if let Some(&i) = index.get(name) {
        return i;
    }
    let i = names.len() as u32;
    names.push(name.to_string());
    index.insert(name.to_string(), i);
    i
}

/// [`CellTable::from_transcripts`], failing with [`DataError::Empty`] (naming `path`) when no
/// transcript is assigned to a cell.
pub(crate) fn cell_table_of(transcripts: &Transcripts, path: &Path) -> Result<CellTable, DataError> {
    let table = CellTable::from_transcripts(transcripts);
    if table.n_cells() == 0 {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            message: "no transcript is assigned to a cell (every cell_id is -1 or UNASSIGNED); \
                      was the file exported before segmentation?"
                .to_string(),
        });
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_normalise_rows() {
        let out = log_normalise(&[1.0, 3.0, 0.0, 0.0], 2, 4.0);
        assert_eq!(out, vec![1f32.ln_1p(), 3f32.ln_1p(), 0.0, 0.0]);
    }

    fn tiny() -> Transcripts {
        // Two cells (ids "10" and "9", sorted numerically: 9 then 10), genes A, B.
        Transcripts {
            genes: vec!["A".into(), "B".into()],
            cell_ids: vec!["9".into(), "10".into()],
            gene_index: vec![0, 1, 1, 0, 0, 0, 1],
            cell_index: vec![Some(0), Some(0), Some(1), None, Some(1), Some(1), Some(1)],
            xy_um: vec![
                [0.0, 0.0],
                [2.0, 2.0],
                [1.0, 1.0],
                [50.0, 50.0],
                [2.0, 1.0],
                [3.0, 1.0],
                [2.0, 1.0],
            ],
            overlaps_nucleus: vec![true, true, true, true, true, true, false],
        }
    }

    #[test]
    fn table_counts_and_centroids() {
        let t = CellTable::from_transcripts(&tiny());
        assert_eq!((t.n_cells(), t.n_genes()), (2, 2));
        assert_eq!(t.counts, vec![1.0, 1.0, 2.0, 2.0]);
        assert_eq!(t.centroids_um[0], [1.0, 1.0]);
        assert_eq!(t.centroids_um[1], [2.0, 1.0]);
        assert_eq!(
            t.nucleus_centroids_um[0], None,
            "only 2 nucleus transcripts"
        );
        assert_eq!(t.nucleus_centroids_um[1], Some([2.0, 1.0]));
        assert_eq!(t.totals(), vec![2.0, 4.0]);
        assert_eq!(t.gene_index("B"), Some(1));
        assert_eq!(t.gene_index("C"), None);
    }

    #[test]
    #[cfg(feature = "native-io")]
    fn ids_sort_numerically_or_as_strings() {
        let mut ids = vec!["10".to_string(), "9".into(), "100".into()];
        let map = sort_names(&mut ids, true);
        assert_eq!(ids, ["9", "10", "100"]);
        assert_eq!(map, [1, 0, 2]);
        let mut ids = vec!["b-1".to_string(), "a-1".into(), "10".into()];
        sort_names(&mut ids, true);
        assert_eq!(ids, ["10", "a-1", "b-1"]);
    }

    #[test]
    fn control_features_and_unassigned_ids() {
        for name in [
            "NegControlProbe_X",
            "BLANK_0001",
            "UnassignedCodeword_3",
            "antisense_A",
            "Intergenic_1",
        ] {
            assert!(is_control_feature(name), "{name}");
        }
        assert!(!is_control_feature("EPCAM"));
        assert!(is_unassigned_cell_id("-1") && is_unassigned_cell_id("UNASSIGNED"));
        assert!(!is_unassigned_cell_id("44769"));
    }
}
