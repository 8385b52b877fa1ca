//! Plain-Rust forward pass of the gene-only classifier.
//!
//! Built from the same reference ops the GPU kernel tests compare against
//! ([`crate::gpu::matmul_int8_reference`], [`crate::gpu::attention_reference`],
//! [`crate::gpu::layernorm_reference`], [`crate::gpu::mean_pool_reference`]) and the same
//! weight preparation as the GPU upload (token type folded into the embedding bias, q/k/v
//! fused into one `[3D, D]` layer), so CPU and GPU compute the same arithmetic up to
//! summation order. Works for f32 and int8 models (int8: `acc = Σ x·q`, `y = acc·scale + b`).
//! Single-threaded; cells are processed in blocks to bound memory.

use super::format::{EncoderLayerWeights, EngineModel, GeneOnlyWeights, Linear};
use crate::gpu::{
    attention_reference, layernorm_reference, matmul_int8_reference, mean_pool_reference,
    Activation,
};

/// Cells per block of the CPU forward (bounds the intermediate buffers to a few MiB).
const CPU_BLOCK_CELLS: usize = 512;

/// Logits `[cells, C]` for normalised inputs `x_norm` `[cells, G]`.
///
/// # Panics
/// If `x_norm.len() != n_cells * G` (the model itself was validated when it was built).
pub fn forward_logits(model: &EngineModel, x_norm: &[f32], n_cells: usize) -> Vec<f32> {
    let c = model.config();
    assert_eq!(
        x_norm.len(),
        n_cells * c.n_genes,
        "forward_logits: x_norm has {} values, expected [cells={n_cells}, genes={}]",
        x_norm.len(),
        c.n_genes
    );
    let prepared = PreparedWeights::new(&model.weights);
    let mut logits = Vec::with_capacity(n_cells * c.n_classes);
    let mut start = 0;
    while start < n_cells {
        let n = CPU_BLOCK_CELLS.min(n_cells - start);
        let x = &x_norm[start * c.n_genes..(start + n) * c.n_genes];
        logits.extend(forward_block(model, &prepared, x, n));
        start += n;
    }
    logits
}

/// Index of the largest value of each row of `logits` `[rows, n_classes]` (first one on
/// ties; NaN never wins). Returns `[rows]`; empty if `n_classes == 0`.
pub fn argmax_rows(logits: &[f32], n_classes: usize) -> Vec<u32> {
    if n_classes == 0 {
        return Vec::new();
    }
    logits
        .chunks_exact(n_classes)
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] || row[best].is_nan() {
                    best = j;
                }
            }
            best as u32
        })
        .collect()
}

/// Weights rearranged for inference, shared by the CPU forward and the GPU upload.
pub(crate) struct PreparedWeights<'a> {
    /// `gene_embedding` with `token_type` `[T, D]` added to its bias `[T*D]`.
    pub gene_embedding: Linear,
    /// Per layer, q, k and v stacked into one `[3D, D]` layer.
    pub qkv: Vec<Linear>,
    /// The original weights (norms, o, fc1, fc2, final norm, head).
    pub weights: &'a GeneOnlyWeights,
}

impl<'a> PreparedWeights<'a> {
    pub(crate) fn new(weights: &'a GeneOnlyWeights) -> Self {
        let mut gene_embedding = weights.gene_embedding.clone();
        for (b, t) in gene_embedding.bias.iter_mut().zip(&weights.token_type) {
            *b += t;
        }
        let qkv = weights.layers.iter().map(fuse_qkv).collect();
        Self {
            gene_embedding,
            qkv,
            weights,
        }
    }
}

/// q, k, v of a validated layer stacked into `[3D, D]`.
fn fuse_qkv(layer: &EncoderLayerWeights) -> Linear {
    Linear::concat_rows(&[&layer.q, &layer.k, &layer.v])
        .expect("validated model: q, k, v share in_dim and weight kind")
}

fn forward_block(model: &EngineModel, w: &PreparedWeights<'_>, x: &[f32], n: usize) -> Vec<f32> {
    let c = model.config();
    let (t, d) = (c.gene_tokens, c.d_model);
    let eps = c.layer_norm_eps as f32;
    let rows = n * t;
    // [n, T*D] is [n*T, D] row-major: token t of a cell is elements t*D..(t+1)*D.
    let mut h = matmul_int8_reference(x, n, &w.gene_embedding, Activation::None, None);
    for (layer, qkv) in w.weights.layers.iter().zip(&w.qkv) {
        let a = layernorm_reference(&h, rows, d, &layer.norm1, eps);
        let qkv_out = matmul_int8_reference(&a, rows, qkv, Activation::None, None);
        let att = attention_reference(&qkv_out, n, t, d, c.n_heads);
        h = matmul_int8_reference(&att, rows, &layer.o, Activation::None, Some(&h));
        let a = layernorm_reference(&h, rows, d, &layer.norm2, eps);
        let f = matmul_int8_reference(&a, rows, &layer.fc1, Activation::Gelu, None);
        h = matmul_int8_reference(&f, rows, &layer.fc2, Activation::None, Some(&h));
    }
    let a = layernorm_reference(&h, rows, d, &w.weights.final_norm, eps);
    let pooled = mean_pool_reference(&a, n, t, d);
    matmul_int8_reference(&pooled, n, &w.weights.head, Activation::None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_first_max_and_nan() {
        assert_eq!(
            argmax_rows(&[1.0, 3.0, 3.0, -1.0, f32::NAN, 2.0, 0.0, 5.0], 4),
            vec![1, 3]
        );
        assert_eq!(argmax_rows(&[f32::NAN, 1.0], 2), vec![1]);
        assert!(argmax_rows(&[], 0).is_empty());
    }
}
