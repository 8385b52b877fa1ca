//! The input contract of a model file: how the values a caller holds become the model's gene
//! inputs (`normalisation` in the metadata), applied by every engine and by the trainer.

use serde::{Deserialize, Serialize};

use super::error::ModelFileError;

/// Normalisation kind of raw counts: `x = ln(1 + counts * target_sum / max(total, 1))`.
pub const NORMALISATION_LOG1P_CP10K: &str = "log1p_cp10k";
/// Normalisation kind of values used as given (e.g. an h5ad's already-scaled `X`).
pub const NORMALISATION_AS_STORED: &str = "as_stored";
/// Normalisation kind of protein intensities: `x = asinh(value / cofactor)`.
pub const NORMALISATION_ARCSINH: &str = "arcsinh";

/// The transform from the values a caller holds to the model's gene inputs `[cells, G]`,
/// recorded in the model file at export and applied by every engine through
/// [`crate::engine::Classifier::prepare`] (the trainer builds its inputs with the same
/// [`Normalisation::apply`]).
///
/// JSON (the metadata's `normalisation` entry; fields other than `kind` depend on it):
/// - `{"kind":"log1p_cp10k","target_sum":10000.0}`: raw counts, `ln(1 + v·target_sum/max(total, 1))`
///   with `total` the cell's sum over the model's genes;
/// - `{"kind":"as_stored"}`: values used as given (finite, any sign);
/// - `{"kind":"arcsinh","cofactor":5.0}`: `asinh(v / cofactor)` (protein intensities);
/// - any of them may add `"mean":[G floats],"std":[G floats]`: after the transform, gene `g`
///   becomes `(x − mean[g]) / std[g]` (per-feature standardisation from the training cells).
///
/// Files written before standardisation existed (`{"kind":"log1p_cp10k","target_sum":10000.0}`)
/// read unchanged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NormalisationJson", into = "NormalisationJson")]
pub struct Normalisation {
    /// The element-wise (or per-cell) transform of the input values.
    pub transform: Transform,
    /// Per-gene standardisation applied after the transform, if the model was trained so.
    pub standardisation: Option<Standardisation>,
}

/// The transform part of a [`Normalisation`].
#[derive(Clone, Debug, PartialEq)]
pub enum Transform {
    /// Raw counts → `ln(1 + v · target_sum / max(total, 1))` per cell (`total` = the cell's
    /// sum over the model's genes; `target_sum = 1e4` is "CP10k").
    Log1pCp10k {
        /// Library-size target, finite and > 0.
        target_sum: f64,
    },
    /// Values used as given (any finite value).
    AsStored,
    /// `asinh(v / cofactor)`, the usual transform of protein intensities (any finite value).
    Arcsinh {
        /// Divisor before `asinh`, finite and > 0 (often 5 for CyTOF/CODEX intensities).
        cofactor: f64,
    },
}

/// Per-gene standardisation `(x − mean[g]) / std[g]`, vectors `[G]` in the model's gene order.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardisation {
    /// Mean of each gene's transformed value over the training cells `[G]` (finite).
    pub mean: Vec<f32>,
    /// Standard deviation of each gene's transformed value `[G]` (finite, > 0).
    pub std: Vec<f32>,
}

/// The JSON form of [`Normalisation`] (every parameter optional, checked by `TryFrom`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct NormalisationJson {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_sum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cofactor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mean: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    std: Option<Vec<f32>>,
}

/// `Err(InvalidNormalisation)` unless `value` is finite and > 0.
fn positive_parameter(field: &str, value: Option<f64>, kind: &str) -> Result<f64, ModelFileError> {
    match value {
        Some(v) if v.is_finite() && v > 0.0 => Ok(v),
        other => Err(ModelFileError::InvalidNormalisation {
            field: format!("normalisation.{field}"),
            value: other.map_or("missing".to_string(), |v| v.to_string()),
            expected: format!("a finite number > 0 (kind {kind:?} needs it)"),
        }),
    }
}

impl TryFrom<NormalisationJson> for Normalisation {
    type Error = ModelFileError;

    fn try_from(j: NormalisationJson) -> Result<Self, Self::Error> {
        let transform = match j.kind.as_str() {
            NORMALISATION_LOG1P_CP10K => Transform::Log1pCp10k {
                target_sum: positive_parameter("target_sum", j.target_sum, &j.kind)?,
            },
            NORMALISATION_AS_STORED => Transform::AsStored,
            NORMALISATION_ARCSINH => Transform::Arcsinh {
                cofactor: positive_parameter("cofactor", j.cofactor, &j.kind)?,
            },
            other => {
                return Err(ModelFileError::InvalidNormalisation {
                    field: "normalisation.kind".into(),
                    value: format!("{other:?}"),
                    expected: format!(
                        "one of {NORMALISATION_LOG1P_CP10K:?}, {NORMALISATION_AS_STORED:?}, \
                         {NORMALISATION_ARCSINH:?} (update cellsymphony to read newer models)"
                    ),
                })
            }
        };
        let standardisation = match (j.mean, j.std) {
            (None, None) => None,
            (Some(mean), Some(std)) => Some(Standardisation { mean, std }),
            (mean, _) => {
                return Err(ModelFileError::InvalidNormalisation {
                    field: if mean.is_some() { "normalisation.std" } else { "normalisation.mean" }.into(),
                    value: "missing".into(),
                    expected: "`mean` and `std` together (per-gene standardisation) or neither".into(),
                })
            }
        };
        let n = Normalisation { transform, standardisation };
        n.validate(None)?;
        Ok(n)
    }
}

impl From<Normalisation> for NormalisationJson {
    fn from(n: Normalisation) -> Self {
        let (kind, target_sum, cofactor) = match n.transform {
            Transform::Log1pCp10k { target_sum } => (NORMALISATION_LOG1P_CP10K, Some(target_sum), None),
            Transform::AsStored => (NORMALISATION_AS_STORED, None, None),
            Transform::Arcsinh { cofactor } => (NORMALISATION_ARCSINH, None, Some(cofactor)),
        };
        let (mean, std) = n.standardisation.map_or((None, None), |s| (Some(s.mean), Some(s.std)));
        Self { kind: kind.to_string(), target_sum, cofactor, mean, std }
    }
}

impl Default for Normalisation {
    /// [`Normalisation::log1p_cp10k`].
    fn default() -> Self {
        Self::log1p_cp10k()
    }
}

impl Normalisation {
    /// Raw counts → `ln(1 + v · 1e4 / max(total, 1))` (log1p CP10k), no standardisation.
    pub fn log1p_cp10k() -> Self {
        Self::log1p_with_target_sum(1e4)
    }

    /// Raw counts → `ln(1 + v · target_sum / max(total, 1))`, no standardisation.
    pub fn log1p_with_target_sum(target_sum: f64) -> Self {
        Self { transform: Transform::Log1pCp10k { target_sum }, standardisation: None }
    }

    /// Values used as given (e.g. an h5ad's already-scaled `X`), no standardisation.
    pub fn as_stored() -> Self {
        Self { transform: Transform::AsStored, standardisation: None }
    }

    /// `asinh(v / cofactor)` (protein intensities), no standardisation.
    pub fn arcsinh(cofactor: f64) -> Self {
        Self { transform: Transform::Arcsinh { cofactor }, standardisation: None }
    }

    /// The same transform followed by `(x − mean[g]) / std[g]` per gene (`[G]` each, in the
    /// model's gene order; checked by [`validate`](Self::validate) when the model is built).
    pub fn with_standardisation(self, mean: Vec<f32>, std: Vec<f32>) -> Self {
        Self { standardisation: Some(Standardisation { mean, std }), ..self }
    }

    /// The same transform standardised with the per-gene mean and standard deviation
    /// (population, f64 sums) of the transformed `training` values `[cells, n_genes]`; a gene
    /// with zero (or non-finite) spread gets `std = 1` (as scikit-learn's `StandardScaler`).
    /// Errors as [`apply`](Self::apply).
    pub fn fit_standardisation(self, training: &[f32], n_genes: usize) -> Result<Self, ModelFileError> {
        let plain = Self { standardisation: None, ..self };
        let x = plain.apply(training, n_genes, &[])?;
        let n_cells = (x.len() / n_genes.max(1)).max(1) as f64;
        let mut sum = vec![0.0f64; n_genes];
        let mut sum_sq = vec![0.0f64; n_genes];
        for row in x.chunks_exact(n_genes.max(1)) {
            for ((s, q), &v) in sum.iter_mut().zip(&mut sum_sq).zip(row) {
                *s += v as f64;
                *q += v as f64 * v as f64;
            }
        }
        let mean: Vec<f32> = sum.iter().map(|s| (s / n_cells) as f32).collect();
        let std = sum.iter().zip(&sum_sq).map(|(s, q)| {
            let m = s / n_cells;
            let sd = (q / n_cells - m * m).max(0.0).sqrt() as f32;
            if sd.is_finite() && sd > 0.0 { sd } else { 1.0 }
        });
        Ok(plain.with_standardisation(mean, std.collect()))
    }

    /// The metadata's `kind` string.
    pub fn kind(&self) -> &'static str {
        match self.transform {
            Transform::Log1pCp10k { .. } => NORMALISATION_LOG1P_CP10K,
            Transform::AsStored => NORMALISATION_AS_STORED,
            Transform::Arcsinh { .. } => NORMALISATION_ARCSINH,
        }
    }

    /// Whether the input must be raw counts (finite, ≥ 0); otherwise any finite value is read.
    pub fn reads_counts(&self) -> bool {
        matches!(self.transform, Transform::Log1pCp10k { .. })
    }

    /// What an input value must be, for error messages.
    pub fn expected_values(&self) -> &'static str {
        if self.reads_counts() {
            "raw counts (finite, >= 0; not log-transformed or scaled values)"
        } else {
            "finite values"
        }
    }

    /// Checks the parameters (finite and > 0) and the standardisation (`mean` finite, `std`
    /// finite and > 0, both of length `n_genes` when given).
    pub fn validate(&self, n_genes: Option<usize>) -> Result<(), ModelFileError> {
        match self.transform {
            Transform::Log1pCp10k { target_sum } => {
                positive_parameter("target_sum", Some(target_sum), NORMALISATION_LOG1P_CP10K)?;
            }
            Transform::Arcsinh { cofactor } => {
                positive_parameter("cofactor", Some(cofactor), NORMALISATION_ARCSINH)?;
            }
            Transform::AsStored => {}
        }
        let Some(s) = &self.standardisation else {
            return Ok(());
        };
        for (name, v, positive) in [("mean", &s.mean, false), ("std", &s.std, true)] {
            if let Some(n) = n_genes.filter(|&n| v.len() != n) {
                return Err(ModelFileError::InvalidNormalisation {
                    field: format!("normalisation.{name}"),
                    value: format!("{} values", v.len()),
                    expected: format!("one value per model gene ({n})"),
                });
            }
            if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !(x.is_finite() && (!positive || **x > 0.0))) {
                return Err(ModelFileError::InvalidNormalisation {
                    field: format!("normalisation.{name}[{i}]"),
                    value: x.to_string(),
                    expected: if positive { "a finite number > 0" } else { "a finite number" }.into(),
                });
            }
        }
        Ok(())
    }

    /// Model gene inputs `[cells, n_genes]` from `values` `[cells, n_genes]` already in the
    /// model's gene order: the transform, then the standardisation if any.
    ///
    /// Errors: [`ModelFileError::CountsShape`] if `values` is not whole rows of `n_genes`,
    /// [`ModelFileError::InvalidCount`] (naming cell and gene, or the column index when
    /// `genes` is empty) for a value the transform does not read,
    /// [`ModelFileError::InvalidNormalisation`] if the standardisation is not `[n_genes]`.
    pub fn apply(&self, values: &[f32], n_genes: usize, genes: &[String]) -> Result<Vec<f32>, ModelFileError> {
        if n_genes == 0 || !values.len().is_multiple_of(n_genes) {
            if values.is_empty() {
                return Ok(Vec::new());
            }
            return Err(ModelFileError::CountsShape { found: values.len(), n_genes });
        }
        self.validate(Some(n_genes))?;
        self.check_values(values, n_genes, genes)?;
        let mut x = match self.transform {
            Transform::Log1pCp10k { target_sum } => {
                super::preprocess::normalise_log1p_cp10k(values, n_genes, target_sum as f32)
            }
            Transform::AsStored => values.to_vec(),
            Transform::Arcsinh { cofactor } => {
                let inv = (1.0 / cofactor) as f32;
                values.iter().map(|&v| (v * inv).asinh()).collect()
            }
        };
        if let Some(s) = &self.standardisation {
            for row in x.chunks_exact_mut(n_genes) {
                for ((v, m), sd) in row.iter_mut().zip(&s.mean).zip(&s.std) {
                    *v = (*v - m) / sd;
                }
            }
        }
        Ok(x)
    }

    /// [`ModelFileError::InvalidCount`] for the first value of `values` `[cells, n_genes]` the
    /// transform does not read (see [`reads_counts`](Self::reads_counts)).
    pub fn check_values(&self, values: &[f32], n_genes: usize, genes: &[String]) -> Result<(), ModelFileError> {
        let counts = self.reads_counts();
        let bad = values.iter().position(|&v| !(v.is_finite() && (!counts || v >= 0.0)));
        match bad {
            None => Ok(()),
            Some(i) => Err(ModelFileError::InvalidCount {
                cell: i / n_genes.max(1),
                gene: genes.get(i % n_genes.max(1)).cloned().unwrap_or_else(|| format!("column {}", i % n_genes.max(1))),
                value: values[i],
                expected: self.expected_values(),
            }),
        }
    }
}
