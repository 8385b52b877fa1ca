//! Validation of in-memory cell inputs (the browser API's typed arrays): counts as a dense
//! matrix or CSR, gene names, optional centroids and image patches.
//!
//! [`CellInput::validate`] checks shapes, NaN/infinity, negative counts, CSR structure and
//! duplicate gene names without copying; [`ValidatedInput::align_to_panel`] then reorders the
//! counts into a model's gene panel, naming the panel genes the input lacks. Every error names
//! the array, the element (with its cell and gene) and the offending value.

use std::collections::HashMap;
use std::path::Path;

use super::error::DataError;

/// Raw counts of `n_cells` cells over `n_genes` genes (columns named by [`CellInput::genes`]).
#[derive(Debug, Clone, Copy)]
pub enum CountsInput<'a> {
    /// Dense `[n_cells, n_genes]` row-major.
    Dense {
        /// `n_cells * n_genes` counts.
        values: &'a [f32],
        /// Number of cells (rows).
        n_cells: usize,
        /// Number of genes (columns).
        n_genes: usize,
    },
    /// Compressed sparse rows (scipy's `csr_matrix` layout): the counts of cell `c` are
    /// `data[indptr[c]..indptr[c + 1]]` in gene columns `indices[indptr[c]..indptr[c + 1]]`
    /// (any order within a row, each column at most once); absent entries are 0.
    Csr {
        /// `[n_cells + 1]` row offsets, starting at 0, non-decreasing, ending at `data.len()`.
        indptr: &'a [u32],
        /// `[nnz]` gene column of each stored value, below `n_genes`.
        indices: &'a [u32],
        /// `[nnz]` stored counts.
        data: &'a [f32],
        /// Number of cells (rows).
        n_cells: usize,
        /// Number of genes (columns).
        n_genes: usize,
    },
}

impl CountsInput<'_> {
    /// Number of cells.
    pub fn n_cells(&self) -> usize {
        match *self {
            CountsInput::Dense { n_cells, .. } | CountsInput::Csr { n_cells, .. } => n_cells,
        }
    }

    /// Number of gene columns.
    pub fn n_genes(&self) -> usize {
        match *self {
            CountsInput::Dense { n_genes, .. } | CountsInput::Csr { n_genes, .. } => n_genes,
        }
    }
}

/// Image patches of the cells: `[n_cells, size, size]` row-major stretched intensities in
/// `[0, 1]` (the layout of [`Patch`](super::patches::Patch) pixels).
#[derive(Debug, Clone, Copy)]
pub struct PatchInput<'a> {
    /// `n_cells * size * size` intensities.
    pub pixels: &'a [f32],
    /// Patch side length in pixels (≥ 1).
    pub size: usize,
}

/// Cells as handed over by a caller (e.g. JS typed arrays), not yet checked.
#[derive(Debug, Clone, Copy)]
pub struct CellInput<'a> {
    /// Raw counts.
    pub counts: CountsInput<'a>,
    /// `[n_genes]` names of the count columns (unique, non-empty).
    pub genes: &'a [String],
    /// Optional `[n_cells, 2]` row-major centroids `x, y` in µm.
    pub centroids_um: Option<&'a [f32]>,
    /// Optional image patches.
    pub patches: Option<PatchInput<'a>>,
    /// Optional protein channels (read by models trained with `--protein`, ignored otherwise).
    pub proteins: Option<ProteinInput<'a>>,
}

/// Protein intensities of the cells (XOA ≥ 4 "Protein Expression" features divided by
/// `protein_scaling_factor`, as [`super::ProteinMatrix::values`] holds them).
#[derive(Debug, Clone, Copy)]
pub struct ProteinInput<'a> {
    /// `[n_cells, markers.len()]` row-major intensities.
    pub values: &'a [f32],
    /// `[n_markers]` marker names of the columns.
    pub markers: &'a [String],
}

/// A [`CellInput`] that passed [`CellInput::validate`].
#[derive(Debug, Clone, Copy)]
pub struct ValidatedInput<'a> {
    input: CellInput<'a>,
}

/// What the count values (dense `values` or CSR `data`) may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputValues {
    /// Raw counts: finite and `>= 0` ([`CellInput::validate`]).
    Counts,
    /// Any finite value: data already transformed, e.g. an h5ad's scaled `X`.
    Finite,
}

impl InputValues {
    fn accepts(self, v: f32) -> bool {
        v.is_finite() && (self == InputValues::Finite || v >= 0.0)
    }

    fn error(self, array: &str, flat: usize, cell: usize, gene: &str, value: f32) -> DataError {
        DataError::InvalidValue {
            field: format!("{array}[{flat}] (cell {cell}, gene {gene:?})"),
            value: value.to_string(),
            expected: match self {
                InputValues::Counts => "a finite count >= 0 (raw counts, not log-transformed or scaled values)",
                InputValues::Finite => "a finite value",
            }
            .into(),
        }
    }
}

impl<'a> CellInput<'a> {
    /// Checks everything and returns the validated view (no copy).
    ///
    /// Errors ([`DataError`]): `InvalidArgument` for `n_genes == 0`, `patch size == 0` or a
    /// shape whose size overflows; `Length` for arrays of the wrong length (`genes`, `counts`,
    /// `indptr`, `indices`, `centroids`, `patches`); `InvalidValue` for a NaN, infinite or
    /// negative count, a malformed CSR offset or column, a non-finite centroid, a patch pixel
    /// outside `[0, 1]` or an empty gene name; `DuplicateGene` for a repeated gene name.
    pub fn validate(self) -> Result<ValidatedInput<'a>, DataError> {
        self.validate_as(InputValues::Counts)
    }

    /// [`validate`](Self::validate) with the count values held to `values` instead of raw
    /// counts (e.g. [`InputValues::Finite`] for a model that reads scaled values).
    pub fn validate_as(self, values: InputValues) -> Result<ValidatedInput<'a>, DataError> {
        let n_cells = self.counts.n_cells();
        let n_genes = self.counts.n_genes();
        if n_genes == 0 {
            return Err(DataError::InvalidArgument {
                name: "n_genes",
                value: "0".into(),
                expected: "at least one gene column (genes must not be empty)",
            });
        }
        if self.genes.len() != n_genes {
            return Err(DataError::Length {
                field: "genes",
                found: self.genes.len(),
                expected: format!("n_genes = {n_genes} (one name per count column)"),
            });
        }
        check_gene_names(self.genes)?;
        let size = n_cells
            .checked_mul(n_genes)
            .ok_or_else(|| DataError::InvalidArgument {
                name: "n_cells",
                value: format!("{n_cells} (× {n_genes} genes overflows)"),
                expected: "a matrix size that fits in memory",
            })?;
        match self.counts {
            CountsInput::Dense { values: counts, .. } => {
                if counts.len() != size {
                    return Err(DataError::Length {
                        field: "counts",
                        found: counts.len(),
                        expected: format!(
                            "n_cells × n_genes = {n_cells} × {n_genes} = {size} \
                             (row-major [cells, genes])"
                        ),
                    });
                }
                if let Some((i, &v)) = counts.iter().enumerate().find(|(_, v)| !values.accepts(**v)) {
                    let g = &self.genes[i % n_genes];
                    return Err(values.error("counts", i, i / n_genes, g, v));
                }
            }
            CountsInput::Csr {
                indptr,
                indices,
                data,
                ..
            } => check_csr(indptr, indices, data, n_cells, self.genes, values)?,
        }
        if let Some(c) = self.centroids_um {
            check_centroids(c, n_cells)?;
        }
        if let Some(p) = self.patches {
            check_patches(p, n_cells)?;
        }
        Ok(ValidatedInput { input: self })
    }
}

fn check_gene_names(genes: &[String]) -> Result<(), DataError> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(genes.len());
    for (j, g) in genes.iter().enumerate() {
        if g.trim().is_empty() {
            return Err(DataError::InvalidValue {
                field: format!("genes[{j}]"),
                value: format!("{g:?}"),
                expected: "a non-empty gene name".into(),
            });
        }
        if let Some(&first) = seen.get(g.as_str()) {
            return Err(DataError::DuplicateGene {
                name: g.clone(),
                first,
                second: j,
            });
        }
        seen.insert(g.as_str(), j);
    }
    Ok(())
}

fn check_csr(
    indptr: &[u32],
    indices: &[u32],
    data: &[f32],
    n_cells: usize,
    genes: &[String],
    values: InputValues,
) -> Result<(), DataError> {
    let n_genes = genes.len();
    if indptr.len() != n_cells + 1 {
        return Err(DataError::Length {
            field: "indptr",
            found: indptr.len(),
            expected: format!("n_cells + 1 = {}", n_cells + 1),
        });
    }
    if indices.len() != data.len() {
        return Err(DataError::Length {
            field: "indices",
            found: indices.len(),
            expected: format!(
                "the length of data = {} (one column per stored value)",
                data.len()
            ),
        });
    }
    if indptr[0] != 0 {
        return Err(DataError::InvalidValue {
            field: "indptr[0]".into(),
            value: indptr[0].to_string(),
            expected: "0 (CSR row offsets start at 0)".into(),
        });
    }
    for c in 0..n_cells {
        if indptr[c + 1] < indptr[c] {
            return Err(DataError::InvalidValue {
                field: format!("indptr[{}] (end of cell {c})", c + 1),
                value: format!("{} (below indptr[{c}] = {})", indptr[c + 1], indptr[c]),
                expected: "non-decreasing row offsets".into(),
            });
        }
    }
    let nnz = indptr[n_cells] as usize;
    if nnz != data.len() {
        return Err(DataError::InvalidValue {
            field: format!("indptr[{n_cells}] (the last offset)"),
            value: nnz.to_string(),
            expected: format!(
                "the number of stored values, i.e. the length of data = {}",
                data.len()
            ),
        });
    }
    // Row (+1) in which each column was last seen, and where.
    let mut seen_in_row = vec![0usize; n_genes];
    let mut seen_at = vec![0usize; n_genes];
    for c in 0..n_cells {
        for k in indptr[c] as usize..indptr[c + 1] as usize {
            let j = indices[k] as usize;
            if j >= n_genes {
                return Err(DataError::InvalidValue {
                    field: format!("indices[{k}] (cell {c})"),
                    value: j.to_string(),
                    expected: format!("a gene column below n_genes = {n_genes}"),
                });
            }
            if seen_in_row[j] == c + 1 {
                return Err(DataError::InvalidValue {
                    field: format!("indices[{k}] (cell {c})"),
                    value: format!(
                        "{j} (gene {:?}, already stored at indices[{}])",
                        genes[j], seen_at[j]
                    ),
                    expected: "each gene at most once per cell; sum duplicate entries first".into(),
                });
            }
            seen_in_row[j] = c + 1;
            seen_at[j] = k;
            if !values.accepts(data[k]) {
                return Err(values.error("data", k, c, &genes[j], data[k]));
            }
        }
    }
    Ok(())
}

fn check_centroids(centroids: &[f32], n_cells: usize) -> Result<(), DataError> {
    if centroids.len() != 2 * n_cells {
        return Err(DataError::Length {
            field: "centroids",
            found: centroids.len(),
            expected: format!(
                "2 × n_cells = {} ([cells, 2] row-major x, y in µm)",
                2 * n_cells
            ),
        });
    }
    if let Some((i, v)) = centroids.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(DataError::InvalidValue {
            field: format!(
                "centroids[{i}] (cell {}, {})",
                i / 2,
                if i % 2 == 0 { "x" } else { "y" }
            ),
            value: v.to_string(),
            expected: "a finite coordinate in µm".into(),
        });
    }
    Ok(())
}

fn check_patches(patches: PatchInput<'_>, n_cells: usize) -> Result<(), DataError> {
    let side = patches.size;
    if side == 0 {
        return Err(DataError::InvalidArgument {
            name: "patch_size",
            value: "0".into(),
            expected: "a patch side of at least 1 pixel",
        });
    }
    let per_cell = side.checked_mul(side);
    let expected = per_cell.and_then(|p| p.checked_mul(n_cells));
    if expected != Some(patches.pixels.len()) {
        return Err(DataError::Length {
            field: "patches",
            found: patches.pixels.len(),
            expected: format!(
                "n_cells × patch_size² = {n_cells} × {side}² ([cells, size, size] row-major)"
            ),
        });
    }
    let per_cell = side * side;
    let bad = patches
        .pixels
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && (0.0..=1.0).contains(*v)));
    if let Some((i, v)) = bad {
        let within = i % per_cell;
        return Err(DataError::InvalidValue {
            field: format!(
                "patches[{i}] (cell {}, row {}, col {})",
                i / per_cell,
                within / side,
                within % side
            ),
            value: v.to_string(),
            expected: "a stretched intensity in [0, 1] (see data::Patch)".into(),
        });
    }
    Ok(())
}

impl<'a> ValidatedInput<'a> {
    /// Number of cells.
    pub fn n_cells(&self) -> usize {
        self.input.counts.n_cells()
    }

    /// Names of the count columns, `[n_genes]`.
    pub fn genes(&self) -> &'a [String] {
        self.input.genes
    }

    /// The validated input.
    pub fn input(&self) -> &CellInput<'a> {
        &self.input
    }

    /// Centroids `[cells]` of `[x, y]` µm, when given.
    pub fn centroids_um(&self) -> Option<Vec<[f32; 2]>> {
        self.input
            .centroids_um
            .map(|c| c.chunks_exact(2).map(|p| [p[0], p[1]]).collect())
    }

    /// Counts as a dense `[cells, genes]` row-major matrix.
    pub fn to_dense(&self) -> Vec<f32> {
        let all: Vec<usize> = (0..self.input.genes.len()).collect();
        self.gather(&all)
    }

    /// Counts reordered into `panel` (e.g. a model's genes), `[cells, panel.len()]` row-major;
    /// input genes outside the panel are ignored. Names are matched exactly.
    ///
    /// Errors with [`DataError::MissingGenes`] listing every panel gene absent from the input.
    pub fn align_to_panel(&self, panel: &[String]) -> Result<Vec<f32>, DataError> {
        let column: HashMap<&str, usize> = self
            .input
            .genes
            .iter()
            .enumerate()
            .map(|(j, g)| (g.as_str(), j))
            .collect();
        let mut cols = Vec::with_capacity(panel.len());
        let mut missing = Vec::new();
        for g in panel {
            match column.get(g.as_str()) {
                Some(&j) => cols.push(j),
                None => missing.push(g.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(DataError::MissingGenes {
                n_missing: missing.len(),
                n_panel: panel.len(),
                missing,
            });
        }
        Ok(self.gather(&cols))
    }

    /// `[cells, cols.len()]`: column `cols[i]` of the counts as output column `i`.
    fn gather(&self, cols: &[usize]) -> Vec<f32> {
        let n_cells = self.n_cells();
        let mut out = Vec::with_capacity(n_cells * cols.len());
        match self.input.counts {
            CountsInput::Dense {
                values, n_genes, ..
            } => {
                for row in values.chunks_exact(n_genes) {
                    out.extend(cols.iter().map(|&j| row[j]));
                }
            }
            CountsInput::Csr {
                indptr,
                indices,
                data,
                n_genes,
                ..
            } => {
                let mut row = vec![0f32; n_genes];
                for c in 0..n_cells {
                    let span = indptr[c] as usize..indptr[c + 1] as usize;
                    for k in span.clone() {
                        row[indices[k] as usize] = data[k];
                    }
                    out.extend(cols.iter().map(|&j| row[j]));
                    for k in span {
                        row[indices[k] as usize] = 0.0;
                    }
                }
            }
        }
        out
    }
}

/// Checks that the panel `genes` read from `source` holds every gene of the model file
/// `model` (its panel `model_genes`), before any other work on the data: a mismatch is
/// [`DataError::PanelMismatch`], naming both files and a few genes of each.
pub fn check_model_panel(genes: &[String], source: &Path, model_genes: &[String], model: &Path) -> Result<(), DataError> {
    let have: std::collections::HashSet<&str> = genes.iter().map(String::as_str).collect();
    let missing: Vec<String> = model_genes.iter().filter(|g| !have.contains(g.as_str())).cloned().collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(DataError::PanelMismatch {
        data: source.to_path_buf(),
        model: model.to_path_buf(),
        n_panel: genes.len(),
        n_model: model_genes.len(),
        n_shared: model_genes.len() - missing.len(),
        panel_examples: genes.iter().take(5).cloned().collect(),
        model_examples: model_genes.iter().take(5).cloned().collect(),
        missing,
    })
}
