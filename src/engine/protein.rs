//! Protein channels as model input (XOA ≥ 4 "Protein Expression" features, trained with
//! `--protein`).
//!
//! A model that reads proteins records them in its metadata (`meta.proteins`, a
//! [`ProteinChannels`]): the marker names `[P]`, the arcsinh cofactor and the per-marker mean
//! and standard deviation of `asinh(v / cofactor)` over the training cells. The `P`
//! standardised values are appended to the `G` normalised genes of each cell, so the model
//! input is `[normalised genes (G), proteins (P)]` (then the centroid's sinusoid features of
//! a spatial model) and `config.n_genes = G + P`: the gene embedding reads the proteins as
//! extra input features, and burn, the CPU and the WGSL engines compute exactly what they
//! compute for genes. `meta.genes` lists the `G` genes only; the genes' normalisation
//! (`meta.normalisation`) never sees the proteins (a cell's library size stays its RNA
//! counts).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::error::ModelFileError;
use super::preprocess::MAX_LISTED_MISSING_GENES;
use crate::data::ProteinInput;

/// Smallest standard deviation a protein channel is divided by (a constant marker over the
/// training cells gets this, so it maps to 0 instead of dividing by zero).
pub const MIN_PROTEIN_STD: f32 = 1e-3;

/// The protein channels a model reads beside its genes (the metadata's `proteins` entry).
///
/// JSON: `{"markers":["CD45", …],"cofactor":5.0,"mean":[P floats],"std":[P floats]}`; a
/// marker's model input is `(asinh(v / cofactor) − mean) / std`, where `v` is the intensity
/// (XOA's stored value divided by `protein_scaling_factor`, as
/// [`crate::data::ProteinMatrix::values`] holds it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProteinChannels {
    /// `[P]` marker names, in the order they follow the genes in the model input.
    pub markers: Vec<String>,
    /// The arcsinh cofactor (finite, > 0).
    pub cofactor: f64,
    /// `[P]` mean of `asinh(v / cofactor)` over the training cells.
    pub mean: Vec<f32>,
    /// `[P]` standard deviation of `asinh(v / cofactor)` over the training cells
    /// (≥ [`MIN_PROTEIN_STD`]).
    pub std: Vec<f32>,
}

impl ProteinChannels {
    /// Fits the standardisation on the training cells: `values` `[cells, markers.len()]`
    /// intensities, `rows` the training cells (never validation or test cells).
    pub fn fit(markers: Vec<String>, values: &[f32], rows: &[usize], cofactor: f64) -> Self {
        let p = markers.len();
        let c = cofactor as f32;
        let (mut sum, mut sq) = (vec![0f64; p], vec![0f64; p]);
        for &r in rows {
            for (k, v) in values[r * p..(r + 1) * p].iter().enumerate() {
                let a = (v / c).asinh() as f64;
                sum[k] += a;
                sq[k] += a * a;
            }
        }
        let n = rows.len().max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std = sum
            .iter()
            .zip(&sq)
            .map(|(s, q)| (((q / n) - (s / n).powi(2)).max(0.0).sqrt() as f32).max(MIN_PROTEIN_STD))
            .collect();
        Self { markers, cofactor, mean, std }
    }

    /// Number of markers `P`.
    pub fn len(&self) -> usize {
        self.markers.len()
    }

    /// Whether the model reads no marker (never for a valid file).
    pub fn is_empty(&self) -> bool {
        self.markers.is_empty()
    }

    /// `[cells, P]` model inputs from intensities `[cells, P]` in marker order.
    pub fn apply(&self, values: &[f32]) -> Vec<f32> {
        let p = self.len().max(1);
        let c = self.cofactor as f32;
        values
            .iter()
            .enumerate()
            .map(|(i, v)| ((v / c).asinh() - self.mean[i % p]) / self.std[i % p])
            .collect()
    }

    /// Checks names (non-empty, unique), cofactor and vector lengths/values.
    pub fn validate(&self) -> Result<(), ModelFileError> {
        let bad = |field: String, value: String, expected: &str| {
            Err(ModelFileError::InvalidNormalisation { field, value, expected: expected.to_string() })
        };
        let p = self.len();
        if p == 0 {
            return bad("proteins.markers".into(), "[]".into(), "at least one marker (or no `proteins` entry)");
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(d) = self.markers.iter().find(|m| m.is_empty() || !seen.insert(m.as_str())) {
            return bad("proteins.markers".into(), format!("{d:?}"), "unique, non-empty marker names");
        }
        if !(self.cofactor.is_finite() && self.cofactor > 0.0) {
            return bad("proteins.cofactor".into(), self.cofactor.to_string(), "a finite number > 0");
        }
        for (name, v, min) in [("mean", &self.mean, f32::NEG_INFINITY), ("std", &self.std, 0.0)] {
            if v.len() != p {
                return bad(format!("proteins.{name}"), format!("{} values", v.len()), "one per marker");
            }
            if let Some(i) = v.iter().position(|x| !(x.is_finite() && *x > min)) {
                return bad(format!("proteins.{name}[{i}]"), v[i].to_string(), "a finite number (std > 0)");
            }
        }
        Ok(())
    }

    /// Intensities `[cells, P]` in the model's marker order from the caller's `input`
    /// (`[n_cells, input.markers.len()]`, any marker order, extra markers ignored). Errors:
    /// [`ModelFileError::ProteinPanelMismatch`] naming the missing markers (all of them when
    /// `input` is `None`), [`ModelFileError::ProteinInput`] for a wrong shape, a duplicated
    /// marker or a non-finite value (naming cell, marker and value).
    pub fn align(&self, input: Option<&ProteinInput<'_>>, n_cells: usize) -> Result<Vec<f32>, ModelFileError> {
        let missing_err = |missing: Vec<&String>| ModelFileError::ProteinPanelMismatch {
            n_missing: missing.len(),
            missing: missing.into_iter().take(MAX_LISTED_MISSING_GENES).cloned().collect(),
            n_model_markers: self.len(),
        };
        let Some(input) = input else {
            return Err(missing_err(self.markers.iter().collect()));
        };
        let n_in = input.markers.len();
        if input.values.len() != n_cells * n_in {
            return Err(ModelFileError::ProteinInput {
                reason: format!(
                    "{} values for {n_cells} cells × {n_in} markers; pass [cells, markers] row-major",
                    input.values.len()
                ),
            });
        }
        let mut column: HashMap<&str, usize> = HashMap::with_capacity(n_in);
        for (j, m) in input.markers.iter().enumerate() {
            if let Some(first) = column.insert(m.as_str(), j) {
                return Err(ModelFileError::ProteinInput {
                    reason: format!("marker {m:?} appears twice (columns {first} and {j}); pass each marker once"),
                });
            }
        }
        let missing: Vec<&String> = self.markers.iter().filter(|m| !column.contains_key(m.as_str())).collect();
        if !missing.is_empty() {
            return Err(missing_err(missing));
        }
        let cols: Vec<usize> = self.markers.iter().map(|m| column[m.as_str()]).collect();
        let mut out = Vec::with_capacity(n_cells * cols.len());
        for cell in 0..n_cells {
            let row = &input.values[cell * n_in..(cell + 1) * n_in];
            for (&j, marker) in cols.iter().zip(&self.markers) {
                let v = row[j];
                if !v.is_finite() {
                    return Err(ModelFileError::ProteinInput {
                        reason: format!("cell {cell}, marker {marker:?} is {v}; protein intensities must be finite"),
                    });
                }
                out.push(v);
            }
        }
        Ok(out)
    }

    /// `[cells, G + P]`: each row of normalised genes `x_genes` `[cells, G]` followed by the
    /// cell's `P` protein inputs `proteins` `[cells, P]` (from [`apply`](Self::apply)).
    pub fn append(x_genes: &[f32], g: usize, proteins: &[f32], p: usize) -> Vec<f32> {
        let n = if g + p == 0 { 0 } else { (x_genes.len() + proteins.len()) / (g + p) };
        let mut out = Vec::with_capacity(n * (g + p));
        for i in 0..n {
            out.extend_from_slice(&x_genes[i * g..(i + 1) * g]);
            out.extend_from_slice(&proteins[i * p..(i + 1) * p]);
        }
        out
    }
}
