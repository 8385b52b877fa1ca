//! Reference expression profiles for reference-based labelling
//! ([`crate::analysis::annotate_singler`]): the type and the BIDCell reference CSV reader.

#[cfg(feature = "native-io")]
use std::path::Path;

#[cfg(feature = "native-io")]
use super::error::DataError;

/// Reference expression profiles (e.g. pseudo-bulk log-expression per cell type and atlas).
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// Gene names, length `n_genes`.
    pub genes: Vec<String>,
    /// Expression, shape `[n_profiles, n_genes]`, row-major, on a log scale.
    pub profiles: Vec<f32>,
    /// Label of each profile, length `n_profiles`.
    pub labels: Vec<String>,
}

impl Reference {
    /// Number of profiles (rows).
    pub fn n_profiles(&self) -> usize {
        self.labels.len()
    }

    /// Number of genes (columns).
    pub fn n_genes(&self) -> usize {
        self.genes.len()
    }

    /// Distinct labels, sorted.
    pub fn label_names(&self) -> Vec<String> {
        let mut names = self.labels.clone();
        names.sort();
        names.dedup();
        names
    }

    /// Expression of profile `i`, length `n_genes`.
    ///
    /// # Panics
    /// If `i >= n_profiles()`.
    pub fn profile(&self, i: usize) -> &[f32] {
        let g = self.n_genes();
        &self.profiles[i * g..(i + 1) * g]
    }
}

/// Non-gene columns of a BIDCell reference CSV (besides the unnamed index column).
pub const REFERENCE_METADATA_COLUMNS: [&str; 3] = ["ct_idx", "cell_type", "atlas"];

/// Reads a BIDCell-style reference CSV: an unnamed index column, one column per gene, and the
/// metadata columns `ct_idx`, `cell_type` (the label) and `atlas`.
#[cfg(feature = "native-io")]
pub fn read_reference_csv(path: &Path) -> Result<Reference, DataError> {
    use super::csv_util;
    const EXPECTED: &str = "a reference CSV with one column per gene and a `cell_type` column";

    let mut reader = csv_util::open(path)?;
    let header = csv_util::header(&mut reader, path)?;
    let label_col = csv_util::column(&header, "cell_type", path, EXPECTED)?;
    let is_gene = |i: usize| {
        let is_index = i == 0 && header[0].is_empty();
        !(is_index || REFERENCE_METADATA_COLUMNS.contains(&header[i].as_str()))
    };
    let gene_cols: Vec<usize> = (0..header.len()).filter(|&i| is_gene(i)).collect();
    if gene_cols.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            message: format!("no gene column; expected {EXPECTED}"),
        });
    }
    let mut reference = Reference {
        genes: gene_cols.iter().map(|&i| header[i].clone()).collect(),
        profiles: Vec::new(),
        labels: Vec::new(),
    };
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_util::csv_error(path, &e)),
        }
        let line = record.position().map_or(0, csv::Position::line);
        let label = record.get(label_col).unwrap_or_default().trim();
        if label.is_empty() {
            return Err(csv_util::bad_value(
                b"",
                path,
                line,
                "cell_type",
                "a cell-type label",
            ));
        }
        reference.labels.push(label.to_string());
        for &c in &gene_cols {
            let field = record.get(c).unwrap_or_default();
            reference.profiles.push(csv_util::parse_f32(
                field.as_bytes(),
                path,
                line,
                &header[c],
            )?);
        }
    }
    if reference.labels.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            message: "no reference profile (header only)".into(),
        });
    }
    Ok(reference)
}
