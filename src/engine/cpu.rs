//! Plain-Rust forward pass of the classifiers (gene-only, spatial, dual-modality, multi-input).
//!
//! Built from the same reference ops the GPU kernel tests compare against
//! ([`super::ops::attention_biased_reference`], [`super::ops::layernorm_reference`],
//! [`super::ops::mean_pool_reference`]) and the same
//! weight preparation as the GPU upload (token type folded into the embedding bias, q/k/v
//! fused into one `[3D, D]` layer), so CPU and GPU compute the same arithmetic up to
//! summation order. Works for f32 and int8 models (int8: `acc = Σ x·q`, `y = acc·scale + b`).
//! Linear layers run on all the block's tokens at once through the register-tiled GEMM of
//! [`super::gemm`] (weights packed once per model in [`CpuWeights`]), the same arithmetic as
//! [`super::ops::matmul_int8_reference`] in the same summation order (bit-exact with the
//! portable and wasm SIMD128 kernels; fused multiply-adds with AVX2+FMA natively), split over
//! the available cores natively. Cells are processed in blocks to bound memory.

use super::error::EngineError;
use super::format::{centre_token_indices, ClassifierWeights, EncoderLayerWeights, EngineModel, Linear};
use super::gemm::{gemm, gemm_sparse_input, PackedLinear};
use super::ops::{
    attention_biased_cell, flash_attention_cell, gene_token_embedding_reference, layernorm_reference,
    mean_pool_reference, token_gather_mean_reference,
};
use super::preprocess::vit_patch_rows;
use crate::gpu::Activation;

/// Cells per block of the CPU forward (bounds the intermediate buffers to a few MiB).
const CPU_BLOCK_CELLS: usize = 512;
/// From this many tokens per cell on (gene-token models), unbiased attention runs as flash
/// attention ([`super::ops::flash_attention_reference`]: online softmax over key tiles, one
/// tile of scores per query), split over the cores by cell; shorter sequences keep the
/// two-pass reference.
pub const FLASH_MIN_TOKENS: usize = 32;

/// Attention over `qkv` `[n·t, 3d]` → `[n·t, d]`, in parallel over cells natively: flash
/// attention for long unbiased sequences, else the two-pass reference's own per-cell function
/// (so the engine and `attention_biased_reference` give the same bits).
fn attention(qkv: &[f32], bias: Option<&[f32]>, n: usize, t: usize, d: usize, heads: usize) -> Vec<f32> {
    assert_eq!(qkv.len(), n * t * 3 * d, "attention: qkv must be [cells*T, 3D]");
    if let Some(b) = bias {
        assert_eq!(b.len(), heads * t * t, "attention: bias must be [H, T, T]");
    }
    let flash = bias.is_none() && t >= FLASH_MIN_TOKENS;
    let mut out = vec![0.0f32; n * t * d];
    let cells_per_chunk = n.div_ceil(4 * crate::util::parallel::worker_count()).max(1);
    crate::util::parallel::for_each_row_chunk(&mut out, t * d, cells_per_chunk, |first, chunk| {
        let mut scores = if flash { Vec::new() } else { vec![0.0f32; t] };
        for (i, o) in chunk.chunks_exact_mut(t * d).enumerate() {
            let rows = &qkv[(first + i) * t * 3 * d..(first + i + 1) * t * 3 * d];
            if flash {
                flash_attention_cell(rows, o, t, d, heads);
            } else {
                attention_biased_cell(rows, bias, t, d, heads, &mut scores, o);
            }
        }
    });
    out
}

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
    forward_logits_packed(model, &CpuWeights::new(model), x_norm, patches, n_cells)
}

/// The input checks of [`forward_logits_packed`].
fn check_input(model: &EngineModel, x_norm: &[f32], patches: Option<&[f32]>, n_cells: usize) -> Result<(), EngineError> {
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
    Ok(())
}

/// [`forward_logits_with_patches`] on weights packed once ([`CpuWeights::new`] of the same
/// `model`).
///
/// Errors as [`forward_logits_with_patches`].
pub fn forward_logits_packed(
    model: &EngineModel,
    packed: &CpuWeights,
    x_norm: &[f32],
    patches: Option<&[f32]>,
    n_cells: usize,
) -> Result<Vec<f32>, EngineError> {
    let c = model.config();
    check_input(model, x_norm, patches, n_cells)?;
    let pixels = c.morphology.as_ref().map(|m| m.pixels());
    let mut logits = Vec::with_capacity(n_cells * c.n_classes);
    let mut start = 0;
    while start < n_cells {
        let n = CPU_BLOCK_CELLS.min(n_cells - start);
        let x = &x_norm[start * c.n_inputs()..(start + n) * c.n_inputs()];
        let p = pixels.and_then(|px| patches.map(|p| &p[start * px..(start + n) * px]));
        logits.extend(forward_block(model, packed, x, p, n, &mut |_, _| true));
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
    #[allow(dead_code)]
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
pub(crate) fn fuse_qkv(layer: &EncoderLayerWeights) -> Linear {
    Linear::concat_rows(&[&layer.q, &layer.k, &layer.v])
        .expect("validated model: q, k, v share in_dim and weight kind")
}

/// A model's linear layers packed once for the CPU GEMM ([`super::gemm`]): the embedding
/// (token type folded into its bias), per layer q/k/v fused, o, fc1, fc2, the ViT's, and the
/// head. Build it once per model ([`CpuWeights::new`]) and reuse it for every batch
/// ([`forward_logits_packed`]).
#[derive(Clone, Debug)]
pub struct CpuWeights {
    gene_embedding: PackedLinear,
    /// A gene-token model's `[T·D, 1]` value vectors, token type folded into the bias (the
    /// embedding is elementwise, not a GEMM).
    gene_tokens: Option<Linear>,
    layers: Vec<PackedLayer>,
    vit_patch_embedding: Option<PackedLinear>,
    vit_layers: Vec<PackedLayer>,
    head: PackedLinear,
    /// The linear path `[C, n_inputs]`, added to the head's logits.
    linear_path: Option<PackedLinear>,
}

#[derive(Clone, Debug)]
pub(crate) struct PackedLayer {
    qkv: PackedLinear,
    o: PackedLinear,
    fc1: PackedLinear,
    fc2: PackedLinear,
}

impl PackedLayer {
    pub(crate) fn new(layer: &EncoderLayerWeights, qkv: &Linear, pack: fn(&Linear) -> PackedLinear) -> Self {
        Self { qkv: pack(qkv), o: pack(&layer.o), fc1: pack(&layer.fc1), fc2: pack(&layer.fc2) }
    }
}

/// How the CPU engine multiplies an int8 model's linear layers (f32 models always run in f32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Int8Gemm {
    /// int8 weight values times f32 activations, scale and bias in the epilogue: the
    /// arithmetic of [`super::ops::matmul_int8_reference`] and of the WGSL engine
    /// (bit-exact on the portable and SIMD128 kernels).
    #[default]
    F32Activations,
    /// W8A8: each activation row quantised to int8 ([`crate::quant::quantize_row_i8`]) and
    /// multiplied in integers (i8×i8→i32, [`PackedLinear::new_w8a8`]); logits follow the f32
    /// path within a stated tolerance (the tests' `assert_int8_follows_fp32`).
    W8A8,
}

impl Int8Gemm {
    /// Parses `"f32"` / `"w8a8"` (the CLI's and the JS option's names).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "f32" => Some(Self::F32Activations),
            "w8a8" => Some(Self::W8A8),
            _ => None,
        }
    }

    /// The name [`Int8Gemm::parse`] reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32Activations => "f32",
            Self::W8A8 => "w8a8",
        }
    }
}

impl CpuWeights {
    /// Packs the weights of a validated `model` for the default int8 GEMM
    /// ([`Int8Gemm::F32Activations`]).
    pub fn new(model: &EngineModel) -> Self {
        Self::with_int8_gemm(model, Int8Gemm::default())
    }

    /// Packs the weights of a validated `model`, int8 layers for `int8` (no effect on an f32
    /// model).
    pub fn with_int8_gemm(model: &EngineModel, int8: Int8Gemm) -> Self {
        let pack: fn(&Linear) -> PackedLinear = match int8 {
            Int8Gemm::F32Activations => PackedLinear::new,
            Int8Gemm::W8A8 => PackedLinear::new_w8a8,
        };
        let w = &model.weights;
        let prepared = PreparedWeights::new(w);
        let vit_layers = w.morphology.iter().flat_map(|m| m.layers.iter()).zip(&prepared.vit_qkv).map(|(l, q)| PackedLayer::new(l, q, pack)).collect();
        let gene_tokens = model.config().gene_token_panel.as_ref().map(|_| prepared.gene_embedding.clone());
        Self {
            gene_embedding: pack(&prepared.gene_embedding),
            gene_tokens,
            layers: w.layers.iter().zip(&prepared.qkv).map(|(l, q)| PackedLayer::new(l, q, pack)).collect(),
            vit_patch_embedding: w.morphology.as_ref().map(|m| pack(&m.patch_embedding)),
            vit_layers,
            head: pack(&w.head),
            linear_path: w.linear_path.as_ref().map(pack),
        }
    }
}

/// One pre-norm encoder layer on `h` `[n·t, d]` in place (q, k, v fused as `qkv`), with an
/// optional attention bias `[heads, t, t]`; `stage` sees the attention block's and the
/// feed-forward block's outputs (named `"{at} (… block)"`). Returns `false` if `stage` stopped
/// the pass.
#[allow(clippy::too_many_arguments)]
fn encoder_layer(
    h: &mut Vec<f32>,
    n: usize,
    t: usize,
    d: usize,
    heads: usize,
    eps: f32,
    layer: &EncoderLayerWeights,
    packed: &PackedLayer,
    bias: Option<&[f32]>,
    at: &str,
    stage: &mut Stage<'_>,
) -> bool {
    let rows = n * t;
    let a = layernorm_reference(h, rows, d, &layer.norm1, eps);
    let qkv_out = gemm(&a, rows, &packed.qkv, Activation::None, None);
    let att = attention(&qkv_out, bias, n, t, d, heads);
    *h = gemm(&att, rows, &packed.o, Activation::None, Some(h));
    if !stage(&|| format!("{at} (attention block)"), h) {
        return false;
    }
    let a = layernorm_reference(h, rows, d, &layer.norm2, eps);
    let f = gemm(&a, rows, &packed.fc1, Activation::Gelu, None);
    *h = gemm(&f, rows, &packed.fc2, Activation::None, Some(h));
    stage(&|| format!("{at} (feed-forward block)"), h)
}

/// [`encoder_layer`] without a bias or an observer (SPATIA's ViT, [`super::spatia`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_encoder_layer(h: &mut Vec<f32>, n: usize, t: usize, d: usize, heads: usize, eps: f32, layer: &EncoderLayerWeights, packed: &PackedLayer) {
    encoder_layer(h, n, t, d, heads, eps, layer, packed, None, "", &mut |_, _| true);
}

/// [`encoder_layer`] with an attention bias `[heads, t, t]` shared by the `n` sequences and
/// no observer (SPATIA's tissue transformer, [`super::spatia_hierarchy`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_encoder_layer_biased(h: &mut Vec<f32>, n: usize, t: usize, d: usize, heads: usize, eps: f32, layer: &EncoderLayerWeights, packed: &PackedLayer, bias: &[f32]) {
    encoder_layer(h, n, t, d, heads, eps, layer, packed, Some(bias), "", &mut |_, _| true);
}

/// An observer of the forward's intermediate outputs: `(stage name, values)` → continue?
type Stage<'a> = dyn FnMut(&dyn Fn() -> String, &[f32]) -> bool + 'a;

/// The first stage of the CPU forward of one cell (`x` `[1, n_inputs]`, `patches` `[1, S, S]`
/// for a morphology model) whose output holds a non-finite value, e.g. `"encoder layer 2
/// (feed-forward block)"`; `None` if every stage stays finite. Used to name the layer when an
/// engine's logits are not finite (the check itself runs once, on the logits).
pub fn first_non_finite_stage(model: &EngineModel, x: &[f32], patches: Option<&[f32]>) -> Option<String> {
    let packed = CpuWeights::new(model);
    let mut found = None;
    let mut stage = |name: &dyn Fn() -> String, v: &[f32]| {
        if v.iter().all(|x| x.is_finite()) {
            true
        } else {
            found = Some(name());
            false
        }
    };
    forward_block(model, &packed, x, patches, 1, &mut stage);
    found
}

/// Logits `[n, C]` of one block of cells; `stage` sees every stage's output (returning
/// `false` stops the pass early with what was computed so far).
fn forward_block(
    model: &EngineModel,
    w: &CpuWeights,
    x: &[f32],
    patches: Option<&[f32]>,
    n: usize,
    stage: &mut Stage<'_>,
) -> Vec<f32> {
    let weights = &model.weights;
    let c = model.config();
    let (t, d) = (c.n_tokens(), c.d_model);
    let eps = c.layer_norm_eps as f32;
    let rows = n * t;
    let model_input = x;
    // The morphology ViT: its pooled centre tokens `[n, W]` are appended to each input row.
    let widened;
    let x = match (&c.morphology, &weights.morphology, &w.vit_patch_embedding, patches) {
        (Some(m), Some(vit), Some(patch_embedding), Some(p)) => {
            let g2 = m.n_vit_tokens();
            let patch_rows = vit_patch_rows(p, n, m);
            let mut vh = gemm(&patch_rows, n * g2, patch_embedding, Activation::None, None);
            if !stage(&|| "morphology ViT patch embedding".into(), &vh) {
                return Vec::new();
            }
            for (i, (layer, packed)) in vit.layers.iter().zip(&w.vit_layers).enumerate() {
                if !encoder_layer(&mut vh, n, g2, m.width, m.n_heads, eps, layer, packed, None, &format!("morphology ViT layer {i}"), stage) {
                    return Vec::new();
                }
            }
            let va = layernorm_reference(&vh, n * g2, m.width, &vit.norm, eps);
            let (n_in, stride) = (c.n_inputs(), c.n_embedding_inputs());
            let mut out = vec![0.0f32; n * stride];
            if n_in > 0 {
                for (o, xr) in out.chunks_exact_mut(stride).zip(x.chunks_exact(n_in)) {
                    o[..n_in].copy_from_slice(xr);
                }
            }
            let idx = centre_token_indices(m.grid(), m.k_nearest);
            token_gather_mean_reference(&va, n, g2, m.width, &idx, &mut out, stride, n_in);
            widened = out;
            widened.as_slice()
        }
        (None, None, None, _) => x,
        _ => panic!("forward_block: a morphology model needs its ViT weights and patches"),
    };
    // [n, T*D] is [n*T, D] row-major: token t of a cell is elements t*D..(t+1)*D.
    let mut h = match (&c.gene_token_panel, &w.gene_tokens) {
        (Some(p), Some(gt)) => gene_token_embedding_reference(x, n, c.n_inputs(), &p.genes, gt),
        // Counts are sparse (a cell expresses a fraction of the panel; log1p keeps zeros):
        // only non-zero inputs are multiplied, bit-identical to the dense GEMM.
        _ => gemm_sparse_input(x, n, &w.gene_embedding, Activation::None, None),
    };
    if !stage(&|| "the token embedding (gene_embedding)".into(), &h) {
        return Vec::new();
    }
    let bias = weights.attention_bias.as_deref();
    for (i, (layer, packed)) in weights.layers.iter().zip(&w.layers).enumerate() {
        if !encoder_layer(&mut h, n, t, d, c.n_heads, eps, layer, packed, bias, &format!("encoder layer {i}"), stage) {
            return Vec::new();
        }
    }
    let a = layernorm_reference(&h, rows, d, &weights.final_norm, eps);
    if !stage(&|| "the final layer norm".into(), &a) {
        return Vec::new();
    }
    let pooled = mean_pool_reference(&a, n, t, d);
    let mut logits = gemm(&pooled, n, &w.head, Activation::None, None);
    if let Some(lp) = &w.linear_path {
        // The wide path on the model input `[n, n_inputs]`, accumulated onto the head's logits.
        logits = gemm_sparse_input(model_input, n, lp, Activation::None, Some(&logits));
    }
    stage(&|| "the classification head".into(), &logits);
    logits
}
