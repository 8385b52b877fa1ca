//! Protein channels of Xenium In Situ Gene and Protein data (XOA ≥ 4): the features of type
//! `Protein Expression` in the cell-feature matrix, kept as a second modality beside the gene
//! counts instead of being dropped with the controls.
//!
//! XOA stores each protein value (a cell's mean stain intensity) as an integer, the intensity
//! times a scaling factor (10 in XOA 4), so that tools expecting integer counts keep working.
//! The factor is the `protein_scaling_factor` attribute at the root of
//! `cell_feature_matrix.h5`; a zarr store may carry it as an attribute too. Readers divide by
//! it, so [`ProteinMatrix::values`] are intensities again; [`ScalingSource`] says where the
//! factor came from.
//!
//! Models read proteins as extra input markers: [`ProteinMatrix::arcsinh`] gives the
//! cytometry-style `asinh(x / cofactor)` normalisation, one value per marker, which a model can
//! embed as one token per marker (a learned marker embedding scaled by the value, as gene
//! tokens are) or append to its gene input vector.

use super::xenium::sort_permutation;

/// The `feature_type` of protein features in 10x matrices (XOA ≥ 4).
pub const PROTEIN_EXPRESSION: &str = "Protein Expression";

/// The factor XOA 4 multiplies protein intensities by before storing them as integers; used
/// when a file stores integers but names no factor (see [`ScalingSource::XoaDefault`]).
pub const XOA_PROTEIN_SCALING_FACTOR: f32 = 10.0;

/// The arcsinh cofactor usual for immunofluorescence intensities (`asinh(x / 5)`).
pub const DEFAULT_ARCSINH_COFACTOR: f32 = 5.0;

/// Where [`ProteinMatrix::scaling_factor`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalingSource {
    /// The `protein_scaling_factor` attribute of `cell_feature_matrix.h5`.
    Hdf5Attribute,
    /// A `protein_scaling_factor` attribute of the zarr store.
    ZarrAttribute,
    /// No attribute, integer values: XOA 4's documented factor
    /// ([`XOA_PROTEIN_SCALING_FACTOR`]).
    XoaDefault,
    /// Values stored as floating point without a factor: read as they are (factor 1).
    Unscaled,
}

/// Protein intensities of every cell, in the canonical cell order of the gene [`super::CellTable`]
/// read from the same matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct ProteinMatrix {
    /// `[n_cells]` cell ids (same order as the gene table's `cell_ids`).
    pub cell_ids: Vec<String>,
    /// `[n_markers]` protein marker names, in the file's feature order.
    pub markers: Vec<String>,
    /// `[n_cells, n_markers]` row-major mean intensities, divided by the scaling factor.
    pub values: Vec<f32>,
    /// The factor the stored values were divided by.
    pub scaling_factor: f32,
    /// Where the factor came from.
    pub scaling_source: ScalingSource,
}

impl ProteinMatrix {
    /// Number of cells (rows).
    pub fn n_cells(&self) -> usize {
        self.cell_ids.len()
    }

    /// Number of protein markers (columns).
    pub fn n_markers(&self) -> usize {
        self.markers.len()
    }

    /// `[n_cells, n_markers]` `asinh(value / cofactor)`, the model-input normalisation of
    /// protein channels (negative background-subtracted values stay negative, symmetric).
    pub fn arcsinh(&self, cofactor: f32) -> Vec<f32> {
        let c = if cofactor > 0.0 { cofactor } else { DEFAULT_ARCSINH_COFACTOR };
        self.values.iter().map(|v| (v / c).asinh()).collect()
    }

    /// Builds the matrix from a sparse cell × feature reader's view: `cells` in file order,
    /// `features`/`types` per feature, and `entries` yielding `(cell, feature, stored value)`.
    /// Returns `None` when no feature is of type [`PROTEIN_EXPRESSION`].
    pub(crate) fn from_entries(
        cells: &[String],
        features: &[String],
        types: &[String],
        entries: impl Iterator<Item = (usize, usize, f32)>,
        scaling_factor: f32,
        scaling_source: ScalingSource,
    ) -> Option<ProteinMatrix> {
        let mut col = vec![None; features.len()];
        let mut markers = Vec::new();
        for (j, t) in types.iter().enumerate() {
            if t == PROTEIN_EXPRESSION {
                col[j] = Some(markers.len());
                markers.push(features[j].clone());
            }
        }
        if markers.is_empty() {
            return None;
        }
        let row = sort_permutation(cells, true);
        let mut cell_ids = vec![String::new(); cells.len()];
        for (k, id) in cells.iter().enumerate() {
            cell_ids[row[k]] = id.clone();
        }
        let m = markers.len();
        let mut values = vec![0f32; cells.len() * m];
        let f = if scaling_factor > 0.0 { scaling_factor } else { 1.0 };
        for (c, j, v) in entries {
            if let (Some(Some(k)), Some(&r)) = (col.get(j), row.get(c)) {
                values[r * m + k] += v / f;
            }
        }
        Some(ProteinMatrix { cell_ids, markers, values, scaling_factor: f, scaling_source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proteins_are_scaled_back_and_sorted_like_cells() {
        let cells = vec!["10".to_string(), "9".into()];
        let features = vec!["EPCAM".to_string(), "CD45".into(), "PanCK".into()];
        let types = vec!["Gene Expression".to_string(), PROTEIN_EXPRESSION.into(), PROTEIN_EXPRESSION.into()];
        let entries = vec![(0, 0, 3.0), (0, 1, 125.0), (1, 2, 40.0)].into_iter();
        let p = ProteinMatrix::from_entries(&cells, &features, &types, entries, 10.0, ScalingSource::Hdf5Attribute).unwrap();
        assert_eq!(p.cell_ids, ["9", "10"]);
        assert_eq!(p.markers, ["CD45", "PanCK"]);
        assert_eq!(p.values, vec![0.0, 4.0, 12.5, 0.0]);
        let a = p.arcsinh(5.0);
        assert!((a[1] - (0.8f32).asinh()).abs() < 1e-6);
        let none = ProteinMatrix::from_entries(&cells, &features[..1], &types[..1], std::iter::empty(), 10.0, ScalingSource::XoaDefault);
        assert!(none.is_none());
    }
}
