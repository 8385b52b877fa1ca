//! Sparse per-cell count matrices (CSR: rows = cells, columns = genes).
//!
//! Real Xenium matrices are > 95 % zeros; a 1M-cell slide with a 5k-gene panel is tens of GB
//! dense but a few GB in CSR. Readers that must scale ([`super::read_mex_dir_csr`]) return a
//! [`CsrCounts`]; [`CsrCounts::to_dense`] gives the `[cells, genes]` layout the models consume,
//! a chunk of cells at a time via [`CsrCounts::dense_rows`].

use super::error::DataError;

/// Counts in compressed sparse row layout, shape `[n_cells, n_genes]`.
///
/// Row `i` holds `indices[indptr[i]..indptr[i + 1]]` (gene columns, strictly increasing) and
/// the matching `data` (non-zero counts).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CsrCounts {
    /// Number of columns (genes).
    pub n_genes: usize,
    /// Row offsets, length `n_cells + 1`, non-decreasing, `indptr[0] == 0`.
    pub indptr: Vec<u64>,
    /// Column (gene) index of each stored value, length `nnz`.
    pub indices: Vec<u32>,
    /// Stored values, length `nnz`.
    pub data: Vec<f32>,
}

impl CsrCounts {
    /// Number of rows (cells).
    pub fn n_cells(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }

    /// Number of stored values.
    pub fn nnz(&self) -> usize {
        self.data.len()
    }

    /// Bytes held by the three arrays (the size of "the matrix" in memory benchmarks).
    pub fn heap_bytes(&self) -> usize {
        self.indptr.len() * 8 + self.indices.len() * 4 + self.data.len() * 4
    }

    /// Gene indices and values of row `i`.
    ///
    /// # Panics
    /// If `i >= n_cells()` (callers iterate `0..n_cells()`).
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[i] as usize, self.indptr[i + 1] as usize);
        (&self.indices[a..b], &self.data[a..b])
    }

    /// Checks the invariants (lengths, monotone `indptr`, sorted in-range column indices,
    /// finite non-negative values); `what` names the source in the error.
    pub fn validate(&self, what: &str) -> Result<(), DataError> {
        let bad = |message: String| DataError::Sparse {
            what: what.to_string(),
            message,
        };
        if self.indptr.first().copied() != Some(0) {
            return Err(bad(format!(
                "indptr must start with 0 (found {:?})",
                self.indptr.first()
            )));
        }
        if self.indices.len() != self.data.len() {
            return Err(bad(format!(
                "indices has {} entries but data has {}",
                self.indices.len(),
                self.data.len()
            )));
        }
        let nnz = self.data.len() as u64;
        for (i, w) in self.indptr.windows(2).enumerate() {
            if w[1] < w[0] || w[1] > nnz {
                return Err(bad(format!(
                    "indptr[{}] = {} after indptr[{i}] = {} (nnz {nnz}): must be non-decreasing \
                     and at most nnz",
                    i + 1,
                    w[1],
                    w[0]
                )));
            }
            let (idx, val) = (
                &self.indices[w[0] as usize..w[1] as usize],
                &self.data[w[0] as usize..w[1] as usize],
            );
            for (k, (&g, &v)) in idx.iter().zip(val).enumerate() {
                if g as usize >= self.n_genes {
                    return Err(bad(format!(
                        "cell {i}: gene index {g} out of range 0..{}",
                        self.n_genes
                    )));
                }
                if k > 0 && idx[k - 1] >= g {
                    return Err(bad(format!(
                        "cell {i}: gene indices not strictly increasing ({} then {g})",
                        idx[k - 1]
                    )));
                }
                if !v.is_finite() || v < 0.0 {
                    return Err(bad(format!(
                        "cell {i}, gene {g}: value {v} is not a finite non-negative count"
                    )));
                }
            }
        }
        if self.indptr.last().copied() != Some(nnz) {
            return Err(bad(format!(
                "indptr ends at {:?} but there are {nnz} values",
                self.indptr.last()
            )));
        }
        Ok(())
    }

    /// Builds CSR from a dense row-major `[n_cells, n_genes]` matrix, keeping non-zeros.
    pub fn from_dense(counts: &[f32], n_genes: usize) -> Self {
        let mut out = CsrCounts {
            n_genes,
            indptr: vec![0],
            ..Default::default()
        };
        if n_genes == 0 {
            return out;
        }
        for row in counts.chunks_exact(n_genes) {
            for (g, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    out.indices.push(g as u32);
                    out.data.push(v);
                }
            }
            out.indptr.push(out.data.len() as u64);
        }
        out
    }

    /// Dense rows `rows` (a range of cells), shape `[rows.len(), n_genes]`, row-major.
    ///
    /// # Panics
    /// If the range exceeds `n_cells()`.
    pub fn dense_rows(&self, rows: std::ops::Range<usize>) -> Vec<f32> {
        let mut out = vec![0f32; rows.len() * self.n_genes];
        for (r, i) in rows.enumerate() {
            let (idx, val) = self.row(i);
            let dst = &mut out[r * self.n_genes..(r + 1) * self.n_genes];
            for (&g, &v) in idx.iter().zip(val) {
                dst[g as usize] = v;
            }
        }
        out
    }

    /// The whole matrix dense, shape `[n_cells, n_genes]`.
    pub fn to_dense(&self) -> Vec<f32> {
        self.dense_rows(0..self.n_cells())
    }

    /// Sorts each row by gene index, sums repeated `(cell, gene)` entries and drops zeros,
    /// compacting the arrays in place (no second copy of the matrix).
    pub fn canonicalise(&mut self) {
        let mut write = 0usize;
        let mut scratch: Vec<(u32, f32)> = Vec::new();
        for i in 0..self.n_cells() {
            let (a, b) = (self.indptr[i] as usize, self.indptr[i + 1] as usize);
            scratch.clear();
            scratch.extend(
                self.indices[a..b]
                    .iter()
                    .copied()
                    .zip(self.data[a..b].iter().copied()),
            );
            scratch.sort_by_key(|e| e.0);
            self.indptr[i] = write as u64;
            let mut k = 0;
            while k < scratch.len() {
                let g = scratch[k].0;
                let mut v = 0f32;
                while k < scratch.len() && scratch[k].0 == g {
                    v += scratch[k].1;
                    k += 1;
                }
                if v != 0.0 {
                    self.indices[write] = g;
                    self.data[write] = v;
                    write += 1;
                }
            }
        }
        let n = self.n_cells();
        self.indptr[n] = write as u64;
        self.indices.truncate(write);
        self.data.truncate(write);
        self.indices.shrink_to_fit();
        self.data.shrink_to_fit();
    }
}
