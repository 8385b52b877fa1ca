//! Plain-Rust forward pass of the classifiers (gene-only, spatial, dual-modality, multi-input).
//!
//! Built from the same reference ops the GPU kernel tests compare against
//! ([`super::ops::attention_biased_reference`], [`super::ops::layernorm_reference`],
//! [`super::ops::mean_pool_reference`]) and the same
//! weight preparation as the GPU upload (token type folded into the embedding bias, q/k/v
//! fused into one `[3D, D]` layer), so CPU and GPU compute the same arithmetic up to
//! summation order. Works for f32 and int8 models (int8: `acc = Σ x·q`, `y = acc·scale + b`).
//! Linear layers use [`linear_forward`], the same arithmetic as
//! [`super::ops::matmul_int8_reference`] but with eight independent accumulators so the
//! compiler vectorises it, and (natively) split over the available cores; a test holds the
//! two together. Cells are processed in blocks to bound memory.

use super::error::EngineError;
use super::format::{centre_token_indices, ClassifierWeights, EncoderLayerWeights, EngineModel, Linear, LinearWeight};
use crate::util::parallel::{for_each_row_chunk, worker_count};
use super::ops::{
    attention_biased_reference, gelu_reference, layernorm_reference, mean_pool_reference,
    token_gather_mean_reference,
};
use super::preprocess::vit_patch_rows;
use crate::gpu::Activation;

/// Cells per block of the CPU forward (bounds the intermediate buffers to a few MiB).
const CPU_BLOCK_CELLS: usize = 512;

/// Logits `[cells, C]` for model input `x_norm` `[cells, n_inputs]` of a model without a
/// morphology token ([`forward_logits_with_patches`] runs every model).
///
/// Errors with [`EngineError::InputShape`] if `x_norm.len() != n_cells * n_inputs` or the
/// model reads patches.
pub fn forward_logits(model: &EngineModel, x_norm: &[f32], n_cells: usize) -> Result<Vec<f32>, EngineError> {
    forward_logits_with_patches(model, x_norm, None, n_cells)
}

/// Logits `[cells, C]` for model input `x_norm` `[cells, n_inputs]` (normalised genes, plus
/// sinusoid features for a centroid token: [`crate::engine::model_input`]) and, for a model
/// with a morphology token, nucleus-centred patches `[cells, S, S]` (check them with
/// [`crate::engine::check_patches`]).
///
/// Errors with [`EngineError::InputShape`] if `x_norm` or `patches` has the wrong length, or
/// a morphology model gets no patches (patch values are checked by `check_patches`).
pub fn forward_logits_with_patches(
    model: &EngineModel,
    x_norm: &[f32],
    patches: Option<&[f32]>,
    n_cells: usize,
) -> Result<Vec<f32>, EngineError> {
    let c = model.config();
    let shape_error = |what: String, expected: usize, found: usize| EngineError::InputShape { what, expected, found };
    if x_norm.len() != n_cells * c.n_inputs() {
        return Err(shape_error(
            format!("model input x_norm [cells={n_cells}, inputs={}]", c.n_inputs()),
            n_cells * c.n_inputs(),
            x_norm.len(),
        ));
    }
    let pixels = c.morphology.as_ref().map(|m| m.pixels());
    if let Some((m, px)) = c.morphology.as_ref().zip(pixels) {
        let found = patches.map_or(0, <[f32]>::len);
        if patches.is_none() || found != n_cells * px {
            return Err(shape_error(
                format!("patches [cells={n_cells}, {0}, {0}] (this model has a morphology token)", m.image_size),
                n_cells * px,
                found,
            ));
        }
    }
    let prepared = PreparedWeights::new(&model.weights);
    let mut logits = Vec::with_capacity(n_cells * c.n_classes);
    let mut start = 0;
    while start < n_cells {
        let n = CPU_BLOCK_CELLS.min(n_cells - start);
        let x = &x_norm[start * c.n_inputs()..(start + n) * c.n_inputs()];
        let p = pixels.and_then(|px| patches.map(|p| &p[start * px..(start + n) * px]));
        logits.extend(forward_block(model, &prepared, x, p, n, &mut |_, _| true));
        start += n;
    }
    Ok(logits)
}

/// Class index per row of logits `[rows, C]` → `[rows]`: first maximum, NaN never wins, an
/// all-NaN row gives 0 ([`crate::util::argmax_rows`]).
pub use crate::util::argmax_rows;

/// Weights rearranged for inference, shared by the CPU forward and the GPU upload.
pub(crate) struct PreparedWeights<'a> {
    /// `gene_embedding` with `token_type` `[T, D]` added to its bias `[T*D]`.
    pub gene_embedding: Linear,
    /// Per layer, q, k and v stacked into one `[3D, D]` layer.
    pub qkv: Vec<Linear>,
    /// Per morphology ViT block, q, k and v stacked into one `[3W, W]` layer.
    pub vit_qkv: Vec<Linear>,
    /// The original weights (norms, o, fc1, fc2, final norm, head).
    pub weights: &'a ClassifierWeights,
}

impl<'a> PreparedWeights<'a> {
    pub(crate) fn new(weights: &'a ClassifierWeights) -> Self {
        let mut gene_embedding = weights.gene_embedding.clone();
        for (b, t) in gene_embedding.bias.iter_mut().zip(&weights.token_type) {
            *b += t;
        }
        let qkv = weights.layers.iter().map(fuse_qkv).collect();
        let vit_qkv = weights.morphology.iter().flat_map(|m| m.layers.iter().map(fuse_qkv)).collect();
        Self {
            gene_embedding,
            qkv,
            vit_qkv,
            weights,
        }
    }
}

/// q, k, v of a validated layer stacked into `[3D, D]`.
fn fuse_qkv(layer: &EncoderLayerWeights) -> Linear {
    Linear::concat_rows(&[&layer.q, &layer.k, &layer.v])
        .expect("validated model: q, k, v share in_dim and weight kind")
}

/// Dot product with eight independent accumulators (vectorisable; the summation order differs
/// from a serial sum by rounding only).
#[inline]
fn dot8<W: Copy + Into<f32>>(x: &[f32], w: &[W]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (xc, xr) = x.split_at(x.len() / 8 * 8);
    let (wc, wr) = w.split_at(xc.len());
    for (a, b) in xc.chunks_exact(8).zip(wc.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += a[k] * b[k].into();
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (a, b) in xr.iter().zip(wr) {
        s += a * (*b).into();
    }
    s
}

/// Rows `y[r]` for `r` in the slice: `act(x·Wᵀ·scale + b) (+ residual)`.
fn linear_rows(x: &[f32], w: &Linear, act: Activation, residual: Option<&[f32]>, y: &mut [f32]) {
    let (out_dim, in_dim) = (w.out_dim, w.in_dim);
    for (r, (xr, yr)) in x.chunks_exact(in_dim).zip(y.chunks_exact_mut(out_dim)).enumerate() {
        for (o, yo) in yr.iter_mut().enumerate() {
            let pre = match &w.weight {
                LinearWeight::F32(wf) => dot8(xr, &wf[o * in_dim..(o + 1) * in_dim]),
                LinearWeight::Int8 { q, scale } => dot8(xr, &q[o * in_dim..(o + 1) * in_dim]) * scale[o],
            } + w.bias[o];
            let v = if act == Activation::Gelu { gelu_reference(pre) } else { pre };
            *yo = residual.map_or(v, |res| v + res[r * out_dim + o]);
        }
    }
}

/// `y = act(x·Wᵀ + b) (+ residual)` for `x: [n, in]` → `[n, out]`, int8 or f32 weights.
/// Same result as [`super::ops::matmul_int8_reference`] up to summation order; natively the
/// rows are split over the available cores.
pub fn linear_forward(x: &[f32], n: usize, w: &Linear, act: Activation, residual: Option<&[f32]>) -> Vec<f32> {
    assert_eq!(x.len(), n * w.in_dim, "linear_forward: x is not [n={n}, in={}]", w.in_dim);
    let mut y = vec![0.0f32; n * w.out_dim];
    if n == 0 || w.out_dim == 0 {
        return y;
    }
    let threads = worker_count().min(n);
    if threads > 1 && n * w.out_dim * w.in_dim > 1 << 18 {
        let (in_dim, out_dim) = (w.in_dim, w.out_dim);
        for_each_row_chunk(&mut y, out_dim, n.div_ceil(threads), |r0, yc| {
            let nr = yc.len() / out_dim;
            let xc = &x[r0 * in_dim..(r0 + nr) * in_dim];
            let rc = residual.map(|res| &res[r0 * out_dim..(r0 + nr) * out_dim]);
            linear_rows(xc, w, act, rc, yc);
        });
        return y;
    }
    linear_rows(x, w, act, residual, &mut y);
    y
}

/// One pre-norm encoder layer on `h` `[n·t, d]` in place (q, k, v fused as `qkv`), with an
/// optional attention bias `[heads, t, t]`. `stage(name, values)` sees the output of the
/// attention block and of the feed-forward block (`name` prefixed by `at`); it returns `false`
/// to stop (then so does this function).
#[allow(clippy::too_many_arguments)]
fn encoder_layer(
    h: &mut Vec<f32>,
    n: usize,
    t: usize,
    d: usize,
    heads: usize,
    eps: f32,
    layer: &EncoderLayerWeights,
    qkv: &Linear,
    bias: Option<&[f32]>,
    at: &str,
    stage: &mut Stage<'_>,
) -> bool {
    let rows = n * t;
    let a = layernorm_reference(h, rows, d, &layer.norm1, eps);
    let qkv_out = linear_forward(&a, rows, qkv, Activation::None, None);
    let att = attention_biased_reference(&qkv_out, bias, n, t, d, heads);
    *h = linear_forward(&att, rows, &layer.o, Activation::None, Some(h));
    if !stage(&|| format!("{at} (attention block)"), h) {
        return false;
    }
    let a = layernorm_reference(h, rows, d, &layer.norm2, eps);
    let f = linear_forward(&a, rows, &layer.fc1, Activation::Gelu, None);
    *h = linear_forward(&f, rows, &layer.fc2, Activation::None, Some(h));
    stage(&|| format!("{at} (feed-forward block)"), h)
}

/// An observer of the forward's intermediate outputs: `(stage name, values)` → continue?
type Stage<'a> = dyn FnMut(&dyn Fn() -> String, &[f32]) -> bool + 'a;

/// The first stage of the CPU forward of one cell (`x` `[1, n_inputs]`, `patches` `[1, S, S]`
/// for a morphology model) whose output holds a non-finite value, e.g. `"encoder layer 2
/// (feed-forward block)"`; `None` if every stage stays finite. Used to name the layer when an
/// engine's logits are not finite (the check itself runs once, on the logits).
pub fn first_non_finite_stage(model: &EngineModel, x: &[f32], patches: Option<&[f32]>) -> Option<String> {
    let prepared = PreparedWeights::new(&model.weights);
    let mut found = None;
    let mut stage = |name: &dyn Fn() -> String, v: &[f32]| {
        if v.iter().all(|x| x.is_finite()) {
            true
        } else {
            found = Some(name());
            false
        }
    };
    forward_block(model, &prepared, x, patches, 1, &mut stage);
    found
}

/// Logits `[n, C]` of one block of cells; `stage` sees every stage's output (returning
/// `false` stops the pass early with what was computed so far).
fn forward_block(
    model: &EngineModel,
    w: &PreparedWeights<'_>,
    x: &[f32],
    patches: Option<&[f32]>,
    n: usize,
    stage: &mut Stage<'_>,
) -> Vec<f32> {
    let c = model.config();
    let (t, d) = (c.n_tokens(), c.d_model);
    let eps = c.layer_norm_eps as f32;
    let rows = n * t;
    // The morphology ViT: its pooled centre tokens `[n, W]` are appended to each input row.
    let widened;
    let x = match (&c.morphology, &w.weights.morphology, patches) {
        (Some(m), Some(vit), Some(p)) => {
            let g2 = m.n_vit_tokens();
            let patch_rows = vit_patch_rows(p, n, m);
            let mut vh = linear_forward(&patch_rows, n * g2, &vit.patch_embedding, Activation::None, None);
            if !stage(&|| "morphology ViT patch embedding".into(), &vh) {
                return Vec::new();
            }
            for (i, (layer, qkv)) in vit.layers.iter().zip(&w.vit_qkv).enumerate() {
                if !encoder_layer(&mut vh, n, g2, m.width, m.n_heads, eps, layer, qkv, None, &format!("morphology ViT layer {i}"), stage) {
                    return Vec::new();
                }
            }
            let va = layernorm_reference(&vh, n * g2, m.width, &vit.norm, eps);
            let (n_in, stride) = (c.n_inputs(), c.n_embedding_inputs());
            let mut out = vec![0.0f32; n * stride];
            for (o, xr) in out.chunks_exact_mut(stride).zip(x.chunks_exact(n_in)) {
                o[..n_in].copy_from_slice(xr);
            }
            let idx = centre_token_indices(m.grid(), m.k_nearest);
            token_gather_mean_reference(&va, n, g2, m.width, &idx, &mut out, stride, n_in);
            widened = out;
            widened.as_slice()
        }
        (None, None, _) => x,
        _ => panic!("forward_block: a morphology model needs its ViT weights and patches"),
    };
    // [n, T*D] is [n*T, D] row-major: token t of a cell is elements t*D..(t+1)*D.
    let mut h = linear_forward(x, n, &w.gene_embedding, Activation::None, None);
    if !stage(&|| "the token embedding (gene_embedding)".into(), &h) {
        return Vec::new();
    }
    let bias = w.weights.attention_bias.as_deref();
    for (i, (layer, qkv)) in w.weights.layers.iter().zip(&w.qkv).enumerate() {
        if !encoder_layer(&mut h, n, t, d, c.n_heads, eps, layer, qkv, bias, &format!("encoder layer {i}"), stage) {
            return Vec::new();
        }
    }
    let a = layernorm_reference(&h, rows, d, &w.weights.final_norm, eps);
    if !stage(&|| "the final layer norm".into(), &a) {
        return Vec::new();
    }
    let pooled = mean_pool_reference(&a, n, t, d);
    let logits = linear_forward(&pooled, n, &w.weights.head, Activation::None, None);
    stage(&|| "the classification head".into(), &logits);
    logits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::SplitMix64;
    use crate::engine::ops::matmul_int8_reference;

    #[test]
    fn linear_forward_matches_the_reference() {
        let mut rng = SplitMix64::new(11);
        for &(n, i, o) in &[(37usize, 313usize, 50usize), (600, 64, 192), (3, 5, 2)] {
            let x = rng.uniform_vec(n * i, -2.0, 2.0);
            let res = rng.uniform_vec(n * o, -1.0, 1.0);
            let f32w = Linear { out_dim: o, in_dim: i, weight: LinearWeight::F32(rng.uniform_vec(o * i, -0.5, 0.5)), bias: rng.uniform_vec(o, -0.1, 0.1) };
            for w in [f32w.clone(), f32w.quantized()] {
                for (act, r) in [(Activation::None, None), (Activation::Gelu, Some(res.as_slice()))] {
                    let fast = linear_forward(&x, n, &w, act, r);
                    let slow = matmul_int8_reference(&x, n, &w, act, r);
                    let err = fast.iter().zip(&slow).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                    // Only the summation order differs: ≤ 1e-5 relative to the dot-product scale.
                    assert!(err <= 1e-5 * (i as f32).sqrt() * 2.0, "n={n} in={i} out={o} err={err}");
                }
            }
        }
    }
}
