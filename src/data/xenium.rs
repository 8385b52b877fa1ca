//! Xenium transcripts: the per-transcript list and the per-cell count table built from it.
//!
//! Coordinates are in micrometres (µm) in the Xenium slide frame: `x` grows with the image
//! column, `y` with the image row (see [`super::image::ImageFrame`]).

#[cfg(feature = "native-io")]
use std::path::Path;

#[cfg(feature = "native-io")]
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
    /// See [`super::labels::log_normalise`].
    pub fn log_normalised(&self, target_sum: f32) -> Vec<f32> {
        super::labels::log_normalise(&self.counts, self.n_genes(), target_sum)
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
#[cfg(feature = "native-io")]
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

/// Sorts `names` in place into the canonical order ([`sort_permutation`]); returns
/// `new_index[old_index]`.
#[cfg(feature = "native-io")]
fn sort_names(names: &mut Vec<String>, numeric_if_possible: bool) -> Vec<u32> {
    let new_index = sort_permutation(names, numeric_if_possible);
    let mut sorted = vec![String::new(); names.len()];
    for (old, name) in names.drain(..).enumerate() {
        sorted[new_index[old]] = name;
    }
    *names = sorted;
    new_index.into_iter().map(|i| i as u32).collect()
}

#[cfg(feature = "native-io")]
const TRANSCRIPTS_CSV: &str = "a Xenium transcripts CSV with columns cell_id, overlaps_nucleus, \
                               feature_name, x_location, y_location, qv";

/// Reads a Xenium `transcripts.csv`, keeping transcripts with `qv >= opts.min_qv` whose feature
/// is a gene (see [`is_control_feature`]).
///
/// Columns are found by name (`cell_id`, `overlaps_nucleus`, `feature_name`, `x_location`,
/// `y_location`, `qv`); others are ignored. `overlaps_nucleus` accepts `0/1` or `true/false`.
#[cfg(feature = "native-io")]
pub fn read_transcripts(path: &Path, opts: &TranscriptOptions) -> Result<Transcripts, DataError> {
    use super::csv_util;
    use std::collections::HashMap;

    if !opts.min_qv.is_finite() {
        return Err(DataError::InvalidArgument {
            name: "min_qv",
            value: opts.min_qv.to_string(),
            expected: "a finite quality threshold, e.g. 20",
        });
    }
    let mut reader = csv_util::open(path)?;
    let header = csv_util::header(&mut reader, path)?;
    let col = |name: &str| csv_util::column(&header, name, path, TRANSCRIPTS_CSV);
    let (c_cell, c_nuc, c_feat) = (
        col("cell_id")?,
        col("overlaps_nucleus")?,
        col("feature_name")?,
    );
    let (c_x, c_y, c_qv) = (col("x_location")?, col("y_location")?, col("qv")?);

    let mut genes: HashMap<String, u32> = HashMap::new();
    let mut gene_names: Vec<String> = Vec::new();
    let mut cells: HashMap<String, u32> = HashMap::new();
    let mut cell_names: Vec<String> = Vec::new();
    let mut out = Transcripts::default();
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_util::csv_error(path, &e)),
        }
        let line = record.position().map_or(0, csv::Position::line);
        let field = |i: usize| record.get(i).unwrap_or_default();

        if csv_util::parse_f32(field(c_qv), path, line, "qv")? < opts.min_qv {
            continue;
        }
        let feature = std::str::from_utf8(field(c_feat))
            .map_err(|_| {
                csv_util::bad_value(field(c_feat), path, line, "feature_name", "UTF-8 text")
            })?
            .trim();
        if feature.is_empty() {
            return Err(csv_util::bad_value(
                b"",
                path,
                line,
                "feature_name",
                "a gene name",
            ));
        }
        if is_control_feature(feature) {
            continue;
        }
        let x = csv_util::parse_f32(field(c_x), path, line, "x_location")?;
        let y = csv_util::parse_f32(field(c_y), path, line, "y_location")?;
        let nucleus = match field(c_nuc).trim_ascii() {
            b"1" | b"1.0" | b"true" | b"True" | b"TRUE" => true,
            b"0" | b"0.0" | b"false" | b"False" | b"FALSE" => false,
            other => {
                return Err(csv_util::bad_value(
                    other,
                    path,
                    line,
                    "overlaps_nucleus",
                    "0/1 or true/false",
                ))
            }
        };
        let cell_raw = field(c_cell).trim_ascii();
        let cell_id = std::str::from_utf8(cell_raw)
            .map_err(|_| csv_util::bad_value(cell_raw, path, line, "cell_id", "UTF-8 text"))?;

        let gene = intern(&mut genes, &mut gene_names, feature);
        let cell =
            (!is_unassigned_cell_id(cell_id)).then(|| intern(&mut cells, &mut cell_names, cell_id));
        out.gene_index.push(gene);
        out.cell_index.push(cell);
        out.xy_um.push([x, y]);
        out.overlaps_nucleus.push(nucleus);
    }
    if out.xy_um.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            message: format!(
                "no gene transcript with qv >= {} (control features excluded); \
                 check the file or lower min_qv",
                opts.min_qv
            ),
        });
    }

    let gene_map = sort_names(&mut gene_names, false);
    let cell_map = sort_names(&mut cell_names, true);
    for g in &mut out.gene_index {
        *g = gene_map[*g as usize];
    }
    for c in out.cell_index.iter_mut().flatten() {
        *c = cell_map[*c as usize];
    }
    out.genes = gene_names;
    out.cell_ids = cell_names;
    Ok(out)
}

/// Index of `name` in `names`, appending it on first sight.
#[cfg(feature = "native-io")]
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

/// Reads a Xenium `transcripts.csv` into a [`CellTable`] (see [`read_transcripts`] for the
/// filters). Fails with [`DataError::Empty`] when no transcript is assigned to a cell.
#[cfg(feature = "native-io")]
pub fn read_transcripts_csv(path: &Path, opts: &TranscriptOptions) -> Result<CellTable, DataError> {
    let transcripts = read_transcripts(path, opts)?;
    let table = CellTable::from_transcripts(&transcripts);
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
