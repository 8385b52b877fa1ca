//! The error type of the plotting layer.

use crate::data::DataError;

/// Everything that can go wrong while drawing or writing a figure.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// An input slice does not have the length its shape implies.
    #[error("{what}: expected {expected} values, found {found}; pass one entry per point / cell of the matrix")]
    Shape {
        /// Which input, with its expected shape.
        what: String,
        /// Expected number of values.
        expected: usize,
        /// Number found.
        found: usize,
    },

    /// An argument has a value the figure cannot use.
    #[error("invalid plot argument `{name}` = {value}: expected {expected}")]
    InvalidArgument {
        /// Argument name.
        name: &'static str,
        /// Offending value, formatted.
        value: String,
        /// What is allowed.
        expected: String,
    },

    /// Writing the PNG (or preparing the background image) failed.
    #[error(transparent)]
    Data(#[from] DataError),
}
