//! Input preparation: aligning an input gene panel to the model's, and normalisation.

use std::collections::HashMap;

use super::error::ModelFileError;
use super::format::{ClassifierConfig, EngineModel, ModelMeta, MorphologyTokenConfig, SpatialTokenConfig};

/// How many missing gene names [`ModelFileError::GenePanelMismatch`] lists.
pub const MAX_LISTED_MISSING_GENES: usize = 20;

/// `x = ln(1 + counts * target_sum / max(total, 1))` per cell, where `total` is the cell's
/// sum over genes ("log1p_cp10k" with `target_sum = 1e4`).
///
/// `counts` is `[cells, n_genes]` row-major; returns the same shape. The per-cell total is
/// accumulated in f64.
///
/// # Panics
/// If `n_genes == 0` while `counts` is not empty, or `counts.len()` is not a multiple of
/// `n_genes` (use [`align_to_panel`] first, which validates its input).
pub fn normalise_log1p_cp10k(counts: &[f32], n_genes: usize, target_sum: f32) -> Vec<f32> {
    if counts.is_empty() {
        return Vec::new();
    }
    assert!(
        n_genes > 0 && counts.len().is_multiple_of(n_genes),
        "normalise: {} values is not a whole number of cells of {n_genes} genes",
        counts.len()
    );
    let mut out = Vec::with_capacity(counts.len());
    for row in counts.chunks_exact(n_genes) {
        let total: f64 = row.iter().map(|&c| c as f64).sum();
        let factor = (target_sum as f64 / total.max(1.0)) as f32;
        // Most counts are zero: ln_1p(±0) = ±0, so skipping it changes no bit (and saves
        // ~3 % of a wasm classify, where ln_1p is a software libm call).
        out.extend(row.iter().map(|&c| {
            let v = c * factor;
            if v == 0.0 { v } else { v.ln_1p() }
        }));
    }
    out
}

/// Reorders the columns of `counts` `[cells, input_genes.len()]` into the model's gene order,
/// returning `[cells, n_genes]`; input genes the model does not use are ignored.
///
/// Gene names are matched exactly (case-sensitive). Errors:
/// - [`ModelFileError::GenePanelMismatch`] if any model gene is absent from `input_genes`
///   (lists the first [`MAX_LISTED_MISSING_GENES`] in model order, plus the count);
/// - [`ModelFileError::DuplicateInputGene`] if a model gene appears twice in the input;
/// - [`ModelFileError::CountsShape`] if `counts.len()` is not `cells * input_genes.len()`;
/// - [`ModelFileError::InvalidCount`] for a value in a used column that the model's
///   normalisation does not read (non-finite; negative too for raw counts).
pub fn align_to_panel(
    meta: &ModelMeta,
    input_genes: &[String],
    counts: &[f32],
) -> Result<Vec<f32>, ModelFileError> {
    let n_in = input_genes.len();
    let whole_cells = if n_in == 0 {
        counts.is_empty()
    } else {
        counts.len().is_multiple_of(n_in)
    };
    if !whole_cells {
        return Err(ModelFileError::CountsShape {
            found: counts.len(),
            n_genes: n_in,
        });
    }
    let mut column: HashMap<&str, usize> = HashMap::with_capacity(n_in);
    let mut duplicates: HashMap<&str, (usize, usize)> = HashMap::new();
    for (j, g) in input_genes.iter().enumerate() {
        if let Some(&first) = column.get(g.as_str()) {
            duplicates.entry(g.as_str()).or_insert((first, j));
        } else {
            column.insert(g.as_str(), j);
        }
    }
    let mut missing = Vec::new();
    let mut n_missing = 0;
    let mut cols = Vec::with_capacity(meta.genes.len());
    for g in &meta.genes {
        if let Some(&(first, second)) = duplicates.get(g.as_str()) {
            return Err(ModelFileError::DuplicateInputGene {
                name: g.clone(),
                first,
                second,
            });
        }
        match column.get(g.as_str()) {
            Some(&j) => cols.push(j),
            None => {
                n_missing += 1;
                if missing.len() < MAX_LISTED_MISSING_GENES {
                    missing.push(g.clone());
                }
            }
        }
    }
    if n_missing > 0 {
        return Err(ModelFileError::GenePanelMismatch {
            missing,
            n_missing,
            n_model_genes: meta.genes.len(),
        });
    }
    if n_in == 0 {
        return Ok(Vec::new());
    }
    let n_cells = counts.len() / n_in;
    let reads_counts = meta.normalisation.reads_counts();
    let mut out = Vec::with_capacity(n_cells * cols.len());
    for (cell, row) in counts.chunks_exact(n_in).enumerate() {
        for (&j, gene) in cols.iter().zip(&meta.genes) {
            let value = row[j];
            if !(value.is_finite() && (value >= 0.0 || !reads_counts)) {
                return Err(ModelFileError::InvalidCount {
                    cell,
                    gene: gene.clone(),
                    value,
                    expected: meta.normalisation.expected_values(),
                });
            }
            out.push(value);
        }
    }
    Ok(out)
}

impl EngineModel {
    /// Values `[cells, input_genes.len()]` → normalised genes `[cells, G]`: [`align_to_panel`]
    /// to the model's genes, then the model's [`Normalisation`](super::Normalisation). The
    /// number of cells is `result.len() / G`. (The model input adds centroid features for a
    /// spatial model: [`crate::engine::Classifier::prepare`] does both.)
    pub fn prepare_counts(
        &self,
        input_genes: &[String],
        counts: &[f32],
    ) -> Result<Vec<f32>, ModelFileError> {
        let aligned = align_to_panel(&self.meta, input_genes, counts)?;
        self.meta.normalisation.apply(&aligned, self.meta.genes.len(), &self.meta.genes)
    }
}

/// Angular frequencies `2π / λ_i` (radians per µm) of the spatial token: `n` wavelengths
/// geometric from `min_um` to `max_um`. Shared by the burn model and the engines.
pub fn sinusoid_frequencies(n: usize, min_um: f64, max_um: f64) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let t = if n <= 1 { 0.0 } else { i as f64 / (n - 1) as f64 };
            let lambda = min_um * (max_um / min_um).powf(t);
            (2.0 * std::f64::consts::PI / lambda) as f32
        })
        .collect()
}

/// Sinusoidal features `[cells, 4F]` of centroids (µm): per cell `sin(ω x)`, `cos(ω x)`,
/// `sin(ω y)`, `cos(ω y)`, each over the `F` frequencies (the burn `SpatialEncoder` order).
pub fn spatial_features(centroids_um: &[[f32; 2]], s: &SpatialTokenConfig) -> Vec<f32> {
    let w = sinusoid_frequencies(s.n_frequencies, s.min_wavelength_um, s.max_wavelength_um);
    let mut out = Vec::with_capacity(centroids_um.len() * 4 * w.len());
    for c in centroids_um {
        for &coord in c {
            out.extend(w.iter().map(|&wi| (coord * wi).sin()));
            out.extend(w.iter().map(|&wi| (coord * wi).cos()));
        }
    }
    out
}

/// The model input `[cells, n_inputs]` from normalised genes `[cells, G]`: unchanged for the
/// gene-only classifier; for the spatial classifier each row gets the centroid's
/// [`spatial_features`] appended. Fails when the model needs centroids and none (or a
/// non-finite one) is given, naming the cell.
pub fn model_input(
    config: &ClassifierConfig,
    x_norm: Vec<f32>,
    centroids_um: Option<&[[f32; 2]]>,
) -> Result<Vec<f32>, ModelFileError> {
    let Some(sp) = &config.spatial else {
        return Ok(x_norm);
    };
    let g = config.n_genes;
    let n_cells = if g == 0 { 0 } else { x_norm.len() / g };
    let centroids = centroids_um.ok_or_else(|| ModelFileError::InvalidConfig {
        reason: "this is a spatial classifier: it needs each cell's centroid (µm); pass the \
                 centroids with the counts"
            .into(),
    })?;
    if centroids.len() != n_cells {
        return Err(ModelFileError::InvalidConfig {
            reason: format!(
                "{} centroids for {n_cells} cells; pass one [x, y] (µm) per cell",
                centroids.len()
            ),
        });
    }
    if let Some(i) = centroids.iter().position(|c| !(c[0].is_finite() && c[1].is_finite())) {
        return Err(ModelFileError::InvalidConfig {
            reason: format!(
                "centroid of cell {i} is {:?}; the spatial classifier needs a finite position \
                 for every cell",
                centroids[i]
            ),
        });
    }
    let feats = spatial_features(centroids, sp);
    let f = 4 * sp.n_frequencies;
    let mut out = Vec::with_capacity(n_cells * (g + f));
    for i in 0..n_cells {
        out.extend_from_slice(&x_norm[i * g..(i + 1) * g]);
        out.extend_from_slice(&feats[i * f..(i + 1) * f]);
    }
    Ok(out)
}

/// Checks the patches a model with a morphology token reads: `[cells, S, S]` (`S =
/// config.morphology.image_size`), finite values. Models without a morphology token accept
/// (and ignore) any patches.
pub fn check_patches(
    config: &ClassifierConfig,
    patches: Option<&[f32]>,
    n_cells: usize,
) -> Result<(), ModelFileError> {
    let Some(m) = &config.morphology else {
        return Ok(());
    };
    let patches = patches.ok_or_else(|| ModelFileError::InvalidConfig {
        reason: format!(
            "this model has a morphology token: it needs each cell's nucleus-centred DAPI patch \
             ({0}×{0} px at {1} µm/px, intensities in [0, 1]); pass the patches with the counts",
            m.image_size, m.um_per_px
        ),
    })?;
    if patches.len() != n_cells * m.pixels() {
        return Err(ModelFileError::InvalidConfig {
            reason: format!(
                "patches have {} values for {n_cells} cells; the model reads {s}×{s} px per cell \
                 ({px} values) at {um} µm/px",
                patches.len(),
                s = m.image_size,
                px = m.pixels(),
                um = m.um_per_px,
            ),
        });
    }
    if let Some(i) = patches.iter().position(|v| !v.is_finite()) {
        return Err(ModelFileError::InvalidConfig {
            reason: format!(
                "patch pixel {} of cell {} is {}; pixels must be finite",
                i % m.pixels(),
                i / m.pixels(),
                patches[i]
            ),
        });
    }
    Ok(())
}

/// Unfolds patches `[cells, S, S]` into ViT patch rows `[cells·grid², p² + grid²]`: row
/// `c·grid² + r·grid + q` holds the pixels of ViT patch `(r, q)` of cell `c` (row-major, the
/// burn `MorphologyEncoder::unfold` order) followed by the one-hot position of that token, so
/// one matmul with [`crate::engine::VitWeights::patch_embedding`] adds the position embedding.
///
/// # Panics
/// If `patches.len() != n_cells · S²`.
pub fn vit_patch_rows(patches: &[f32], n_cells: usize, m: &MorphologyTokenConfig) -> Vec<f32> {
    let (s, p, g) = (m.image_size, m.vit_patch, m.grid());
    assert_eq!(patches.len(), n_cells * s * s, "vit_patch_rows: patches are not [cells={n_cells}, {s}, {s}]");
    let width = m.patch_row_width();
    let mut out = vec![0.0f32; n_cells * g * g * width];
    for c in 0..n_cells {
        let img = &patches[c * s * s..(c + 1) * s * s];
        for r in 0..g {
            for q in 0..g {
                let tok = r * g + q;
                let row = &mut out[(c * g * g + tok) * width..(c * g * g + tok + 1) * width];
                for y in 0..p {
                    let src = (r * p + y) * s + q * p;
                    row[y * p..(y + 1) * p].copy_from_slice(&img[src..src + p]);
                }
                row[p * p + tok] = 1.0;
            }
        }
    }
    out
}
