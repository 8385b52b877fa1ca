//! The error type of the analysis layer (clustering, embedding, enrichment, metrics).

/// Everything that can go wrong in [`crate::analysis`].
///
/// No function of the analysis layer panics on bad input; each problem is reported as one of
/// these, with a message naming the argument and its offending value.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// An input slice does not have the length its shape implies.
    #[error("{what}: expected {expected} values, found {found}; check the row count and dimension passed with it")]
    Shape {
        /// Which input, with its expected shape.
        what: String,
        /// Expected number of values.
        expected: usize,
        /// Number found.
        found: usize,
    },

    /// An input that must not be empty is empty.
    #[error("{what} is empty; pass at least one row and one column")]
    Empty {
        /// Which input.
        what: String,
    },

    /// An input contains NaN or ±infinity.
    #[error("{what} has a non-finite value ({value}) at row {row}, column {column}; clean or impute the input first")]
    NonFinite {
        /// Which input.
        what: String,
        /// Row of the first offending value.
        row: usize,
        /// Column of the first offending value.
        column: usize,
        /// The value, formatted.
        value: String,
    },

    /// A parameter has a value outside its valid range.
    #[error("invalid parameter `{name}` = {value}: expected {expected}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Offending value, formatted (with related sizes where they matter).
        value: String,
        /// What is allowed.
        expected: String,
    },

    /// Too few genes are shared by the cells and the reference.
    #[error(
        "only {n_common} genes in common with the reference, {required} required; \
         {n_missing} reference genes are missing from the cells: [{}]; \
         check that both use the same gene symbols or lower `min_common_genes`",
        crate::data::error::abbreviate(missing, 20)
    )]
    TooFewCommonGenes {
        /// Number of shared genes.
        n_common: usize,
        /// Minimum requested.
        required: usize,
        /// Number of reference genes absent from the cells.
        n_missing: usize,
        /// Reference genes absent from the cells, in reference order.
        missing: Vec<String>,
    },

    /// A label is not below the number of categories it should index.
    #[error("{what}[{index}] = {label} is out of range: expected a label below {n_categories}; pass the right category count")]
    LabelOutOfRange {
        /// Which label array.
        what: &'static str,
        /// Position of the offending label.
        index: usize,
        /// The label.
        label: u32,
        /// Number of categories.
        n_categories: usize,
    },

    /// Reading the image an analysis streams (e.g. a TIFF level read window by window) failed.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
}

impl AnalysisError {
    pub(crate) fn param(
        name: &'static str,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        AnalysisError::InvalidParameter {
            name,
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

/// Checks that `x` holds `rows * cols` finite values.
pub(crate) fn check_matrix(
    what: &str,
    x: &[f32],
    rows: usize,
    cols: usize,
) -> Result<(), AnalysisError> {
    if rows == 0 || cols == 0 {
        return Err(AnalysisError::Empty {
            what: format!("{what} [{rows}, {cols}]"),
        });
    }
    let expected = rows.checked_mul(cols).ok_or_else(|| AnalysisError::Shape {
        what: format!("{what} [{rows}, {cols}]"),
        expected: usize::MAX,
        found: x.len(),
    })?;
    if x.len() != expected {
        return Err(AnalysisError::Shape {
            what: format!("{what} [{rows}, {cols}]"),
            expected,
            found: x.len(),
        });
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(AnalysisError::NonFinite {
            what: what.to_string(),
            row: i / cols,
            column: i % cols,
            value: x[i].to_string(),
        });
    }
    Ok(())
}

/// Checks that every label is below `n_categories` and that there are `n` of them.
pub(crate) fn check_labels(
    what: &'static str,
    labels: &[u32],
    n: usize,
    n_categories: usize,
) -> Result<(), AnalysisError> {
    if labels.len() != n {
        return Err(AnalysisError::Shape {
            what: what.to_string(),
            expected: n,
            found: labels.len(),
        });
    }
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= n_categories)
    {
        return Err(AnalysisError::LabelOutOfRange {
            what,
            index,
            label,
            n_categories,
        });
    }
    Ok(())
}
