//! The whole classifier on the GPU (gene-only, spatial, dual-modality, multi-input): weights
//! uploaded once, cells streamed in chunks. Built on the kernel launchers of [`crate::gpu`];
//! the engine's entry point is [`super::Classifier`].

use std::sync::Arc;

use super::cpu::PreparedWeights;
use super::error::EngineError;
use super::cpu::FLASH_MIN_TOKENS;
use super::format::{centre_token_indices, ClassifierConfig, EncoderLayerWeights, EngineModel, LayerNormWeights, Linear, LinearWeight};
use super::preprocess::vit_patch_rows;
use crate::gpu::attention::{attention_dispatch, compile_attention};
use crate::gpu::attention_out::{self, attention_out_dispatch, compile_attention_out};
use crate::gpu::flash_attention::{compile_flash_attention, flash_attention_dispatch};
use crate::gpu::gene_token_embedding::GpuGeneTokens;
use crate::gpu::layernorm::{layernorm_dispatch, GpuLayerNorm};
use crate::gpu::matmul::{matmul_dispatch, matmul_norm_dispatch, Activation, GpuLinear, MatmulFast, TILE_M};
use crate::gpu::matmul_dot4::matmul_dot4_dispatch;
use crate::gpu::mean_pool::mean_pool_dispatch;
use crate::gpu::token_gather_mean::token_gather_mean_dispatch;
use crate::gpu::{check_len, Dispatch, GpuContext, GpuError, MAX_WORKGROUPS_PER_DIM};

/// Default number of cells per chunk (one command buffer with all layers per chunk).
pub const DEFAULT_CHUNK_CELLS: usize = 8192;

/// One encoder layer on the GPU (q, k, v fused into one `[3D, D]` matmul).
pub(super) struct GpuEncoderLayer {
    norm1: GpuLayerNorm,
    qkv: GpuLinear,
    o: GpuLinear,
    norm2: GpuLayerNorm,
    fc1: GpuLinear,
    fc2: GpuLinear,
}

/// The morphology ViT on the GPU.
struct GpuVit {
    patch_embedding: GpuLinear,
    layers: Vec<GpuEncoderLayer>,
    norm: GpuLayerNorm,
    /// Centre-token indices `[k]` (u32).
    centre: wgpu::Buffer,
    k: usize,
    /// Zero attention bias `[Hv, g², g²]` (the ViT has none).
    zero_bias: wgpu::Buffer,
}

/// How a [`GpuClassifier`] turns its model input into tokens.
enum TokenEmbedding {
    /// The summary-token matmul (`[cells, inputs] → [cells, T·D]`; the paper's GEB).
    Summary(GpuLinear),
    /// A gene-token model's gene columns and value vectors (`gene_token_embedding.wgsl`).
    GeneTokens(GpuGeneTokens),
}

/// An int8 classifier resident on a [`GpuContext`].
///
/// A gene-token model embeds its tokens with `gene_token_embedding.wgsl` (one value vector
/// per chosen gene) and, like every model of at least [`FLASH_MIN_TOKENS`] tokens without an
/// attention bias, runs its attention as `flash_attention.wgsl` (online softmax over key
/// tiles in workgroup memory; no `T × T` scores).
///
/// Upload-time rewrites (exact): `token_type` `[T, D]` is folded into the gene-embedding
/// bias `[T*D]`, and each layer's q, k, v are stacked into one `[3D, D]` int8 layer (scales
/// are per output row, so stacking changes nothing).
///
/// A morphology token runs the ViT first: patches are unfolded on the host into ViT patch
/// rows with a one-hot position ([`super::vit_patch_rows`]), one int8 matmul embeds
/// them (position included), the blocks run on the same matmul/attention/layernorm kernels,
/// and `token_gather_mean.wgsl` writes the mean of the centre tokens into the model-input
/// columns the token matmul reads.
///
/// Each encoder layer is four dispatches ([`dispatches_per_layer`](Self::dispatches_per_layer)):
/// the LayerNorms run in the prologues of the matmuls that follow them, residual adds in
/// the matmul epilogues, and attention is fused with its output projection
/// (`attention_out.wgsl`; heads wider than 48 fall back to separate attention and
/// projection dispatches, five per layer).
///
/// [`logits`](Self::logits) streams cells in chunks of [`chunk_cells`](Self::chunk_cells):
/// each chunk is one upload, one command buffer holding every layer's dispatches, and one
/// copy into a mappable buffer. Input, logits and readback buffers are double-buffered: chunk
/// k+1 is uploaded into the other slot and submitted before chunk k's logits are mapped, so
/// the upload and the readback overlap compute.
pub struct GpuClassifier {
    ctx: Arc<GpuContext>,
    config: ClassifierConfig,
    eps: f32,
    /// How the model input becomes tokens.
    token_embedding: TokenEmbedding,
    /// Whether the encoder's attention runs `flash_attention.wgsl` (at least
    /// [`FLASH_MIN_TOKENS`] tokens and no attention bias), as the CPU engine does.
    flash: bool,
    layers: Vec<GpuEncoderLayer>,
    final_norm: GpuLayerNorm,
    head: GpuLinear,
    /// The linear path, zero-padded to the model-input row width `n_embedding_inputs`, added
    /// onto the head's logits.
    linear_path: Option<GpuLinear>,
    /// The encoder's attention bias `[H, T, T]` (zeros when the model has none).
    attention_bias: wgpu::Buffer,
    vit: Option<GpuVit>,
    /// Whether the encoder layers' matmuls quantise their activations to int8 and run
    /// `matmul_dot4.wgsl` ([`set_int8_activations`](Self::set_int8_activations)).
    int8_activations: bool,
    /// Whether the encoder layers' reductions use subgroup shuffles
    /// ([`set_subgroups`](Self::set_subgroups); on by default where the context has them).
    subgroups: bool,
    /// Whether the feed-forward hidden is stored as f16
    /// ([`set_f16_hidden`](Self::set_f16_hidden); off by default).
    f16_hidden: bool,
    chunk_cells: usize,
    max_chunk_cells: usize,
}

/// Per-call ViT activation buffers (morphology models), sized for `cells` cells.
struct VitBuffers {
    /// Residual stream `[cells*g², W]`.
    h: wgpu::Buffer,
    /// LayerNorm / attention output `[cells*g², W]`.
    a: wgpu::Buffer,
    /// Fused q|k|v `[cells*g², 3W]`.
    qkv: wgpu::Buffer,
    /// Feed-forward hidden `[cells*g², Fv]` (f32, or f16 two per word).
    ff: wgpu::Buffer,
}

/// One chunk's input and output buffers; [`GpuClassifier::logits_with_patches`] alternates
/// two of them so that uploading chunk k+1 and reading back chunk k overlap chunk k+1's
/// compute.
struct SlotBuffers {
    /// Model input `[cells, n_embedding_inputs]`.
    x: wgpu::Buffer,
    /// Unfolded ViT patch rows `[cells*g², p²+g²]` (morphology models).
    patch_rows: Option<wgpu::Buffer>,
    /// Logits `[cells, C]`.
    logits: wgpu::Buffer,
    /// Mappable copy of the logits `[cells, C]`.
    readback: wgpu::Buffer,
}

/// Per-call activation buffers, sized for `cells` cells.
struct WorkBuffers {
    /// Input/output slots (one or two).
    slots: Vec<SlotBuffers>,
    /// Residual stream `[cells*T, D]`.
    h: wgpu::Buffer,
    /// LayerNorm output, reused for the attention output `[cells*T, D]`.
    a: wgpu::Buffer,
    /// Fused q|k|v `[cells*T, 3D]`.
    qkv: wgpu::Buffer,
    /// Feed-forward hidden `[cells*T, F]` (f32, or f16 two per word).
    ff: wgpu::Buffer,
    /// Pooled tokens `[cells, D]`.
    pooled: wgpu::Buffer,
    /// The morphology ViT's buffers.
    vit: Option<VitBuffers>,
}

/// Uploads LayerNorm parameters under `name`.
pub(super) fn upload_norm(ctx: &GpuContext, ln: &LayerNormWeights, name: &str) -> Result<GpuLayerNorm, GpuError> {
    GpuLayerNorm::upload(ctx, &ln.gamma, &ln.beta, name)
}

/// Uploads one encoder layer (q, k, v already fused) under `prefix`.
pub(super) fn upload_layer(ctx: &GpuContext, l: &EncoderLayerWeights, qkv: &Linear, p: &str) -> Result<GpuEncoderLayer, GpuError> {
    Ok(GpuEncoderLayer {
        norm1: upload_norm(ctx, &l.norm1, &format!("{p}.norm1"))?,
        qkv: GpuLinear::upload(ctx, qkv, &format!("{p}.attn.qkv"))?,
        o: GpuLinear::upload(ctx, &l.o, &format!("{p}.attn.o"))?,
        norm2: upload_norm(ctx, &l.norm2, &format!("{p}.norm2"))?,
        fc1: GpuLinear::upload(ctx, &l.fc1, &format!("{p}.ffn.fc1"))?,
        fc2: GpuLinear::upload(ctx, &l.fc2, &format!("{p}.ffn.fc2"))?,
    })
}

/// The buffers one encoder layer works in.
pub(super) struct LayerBuffers<'a> {
    pub h: &'a wgpu::Buffer,
    pub a: &'a wgpu::Buffer,
    pub qkv: &'a wgpu::Buffer,
    pub ff: &'a wgpu::Buffer,
    pub bias: &'a wgpu::Buffer,
    /// Run `flash_attention.wgsl` (no bias) instead of `attention.wgsl`.
    pub flash: bool,
    /// Int8 activations: the matmuls run `matmul_dot4.wgsl` instead of `matmul_int8.wgsl`.
    pub dot4: bool,
    /// Reductions (LayerNorm prologues, row amax, attention scores) by subgroup shuffles.
    pub subgroups: bool,
    /// `ff` holds f16 (fc1 writes it as f16, fc2 reads it; never with `dot4`).
    pub f16: bool,
}

/// The dispatches of one pre-norm encoder layer over `cells` cells of `t` tokens: four when
/// the head width allows the fused attention kernel ([`attention_out::supports`]) and the
/// output projection is int8 (the fused kernel reads packed int8 only; f32-weight layers, as
/// `GpuSpatiaCell` uploads them, take the five-dispatch path), else five:
/// 1. q|k|v matmul with the first LayerNorm in its prologue (`matmul_int8.wgsl`, NORM);
/// 2. attention + output projection + residual add into `h` (`attention_out.wgsl`), or
///    attention into `a` and a residual matmul;
/// 3. first feed-forward matmul with the second LayerNorm in its prologue and GELU;
/// 4. second feed-forward matmul with the residual add into `h`.
///
/// With `b.dot4` every matmul here (not the one inside `attention_out.wgsl`) runs with int8
/// activations (`matmul_dot4.wgsl`), same dispatch count. With `b.subgroups` the
/// LayerNorm prologues (and the row amax of `matmul_dot4.wgsl`) and the fused attention's
/// scores reduce by subgroup shuffles; with `b.f16` the feed-forward hidden between 3. and
/// 4. is f16. Same dispatch count either way.
#[allow(clippy::too_many_arguments)]
pub(super) fn push_layer(
    plan: &mut Vec<Dispatch>,
    ctx: &GpuContext,
    l: &GpuEncoderLayer,
    b: &LayerBuffers<'_>,
    cells: usize,
    t: usize,
    d: usize,
    heads: usize,
    eps: f32,
) -> Result<(), GpuError> {
    let rows = cells * t;
    let none = Activation::None;
    let matmul = if b.dot4 { matmul_dot4_dispatch } else { matmul_norm_dispatch };
    // Only the LayerNorm prologues reduce: the plain matmuls keep the portable kernel.
    let plain = MatmulFast::default();
    let normed = MatmulFast { subgroups: b.subgroups, ..plain };
    let f16 = b.f16 && !b.dot4;
    plan.push(matmul(ctx, b.h, rows, Some((&l.norm1, eps)), &l.qkv, b.qkv, none, false, normed)?);
    if b.flash {
        plan.push(flash_attention_dispatch(ctx, b.qkv, b.a, cells, t, d, heads)?);
        plan.push(matmul(ctx, b.a, rows, None, &l.o, b.h, none, true, plain)?);
    } else if attention_out::supports(d, heads) && !l.o.f32_weights {
        plan.push(attention_out_dispatch(ctx, b.qkv, b.bias, &l.o, b.h, cells, t, d, heads, b.subgroups)?);
    } else {
        plan.push(attention_dispatch(ctx, b.qkv, b.bias, b.a, cells, t, d, heads)?);
        plan.push(matmul(ctx, b.a, rows, None, &l.o, b.h, none, true, plain)?);
    }
    let fc1 = MatmulFast { y_f16: f16, ..normed };
    plan.push(matmul(ctx, b.h, rows, Some((&l.norm2, eps)), &l.fc1, b.ff, Activation::Gelu, false, fc1)?);
    let fc2 = MatmulFast { x_f16: f16, ..plain };
    plan.push(matmul(ctx, b.ff, rows, None, &l.fc2, b.h, none, true, fc2)?);
    Ok(())
}

impl GpuClassifier {
    /// Uploads `model`. An f32 model is quantised first with
    /// [`EngineModel::quantize_int8`] (per-output-channel symmetric int8), so its logits
    /// match the int8 model's, not the f32 one's.
    ///
    /// Errors: an invalid model ([`EngineError`]'s model-file variants), a layer too large for
    /// one storage binding ([`GpuError::TooLarge`] in [`EngineError::Gpu`]), kernel build
    /// failures.
    pub fn new(ctx: Arc<GpuContext>, model: &EngineModel) -> Result<Self, EngineError> {
        model.validate()?;
        let quantized;
        let model = if model.is_int8() {
            model
        } else {
            quantized = model.quantize_int8();
            &quantized
        };
        let c = model.config().clone();
        let prepared = PreparedWeights::new(&model.weights);
        let w = &model.weights;
        let max_chunk_cells = max_chunk_cells(&c, ctx.max_binding_bytes())?;
        let gpu = &*ctx;
        let token_embedding = match &c.gene_token_panel {
            Some(panel) => {
                let ge = &prepared.gene_embedding;
                let LinearWeight::Int8 { q, scale } = &ge.weight else {
                    return Err(EngineError::Inconsistent { reason: "the GPU engine got f32 gene-token weights after quantisation".into() });
                };
                let qf: Vec<f32> = q.iter().map(|&v| f32::from(v)).collect();
                TokenEmbedding::GeneTokens(GpuGeneTokens::upload(gpu, &panel.genes, c.n_inputs(), &qf, scale, &ge.bias)?)
            }
            None => TokenEmbedding::Summary(GpuLinear::upload(gpu, &prepared.gene_embedding, "gene_embedding")?),
        };
        let mut layers = Vec::with_capacity(c.n_layers);
        for (i, (l, qkv)) in w.layers.iter().zip(&prepared.qkv).enumerate() {
            layers.push(upload_layer(gpu, l, qkv, &format!("layers.{i}"))?);
        }
        let final_norm = upload_norm(gpu, &w.final_norm, "final_norm")?;
        let head = GpuLinear::upload(gpu, &w.head, "head")?;
        let linear_path = match &w.linear_path {
            Some(lp) => Some(GpuLinear::upload(gpu, &lp.zero_padded_inputs(c.n_embedding_inputs()), "linear_path")?),
            None => None,
        };
        let t = c.n_tokens();
        let attention_bias = match &w.attention_bias {
            Some(b) => gpu.storage_init("attention bias", bytemuck::cast_slice(b))?,
            None => gpu.storage_zeroed("attention bias (none)", c.n_heads * t * t)?,
        };
        let vit = match (&c.morphology, &w.morphology) {
            (Some(m), Some(v)) => {
                let mut vl = Vec::with_capacity(v.layers.len());
                for (i, (l, qkv)) in v.layers.iter().zip(&prepared.vit_qkv).enumerate() {
                    vl.push(upload_layer(gpu, l, qkv, &format!("morphology.layers.{i}"))?);
                }
                let idx: Vec<u32> = centre_token_indices(m.grid(), m.k_nearest).into_iter().map(|i| i as u32).collect();
                let g2 = m.n_vit_tokens();
                compile_layer_attention(gpu, g2, m.width, m.n_heads, gpu.supports_subgroups())?;
                Some(GpuVit {
                    patch_embedding: GpuLinear::upload(gpu, &v.patch_embedding, "morphology.patch_embedding")?,
                    layers: vl,
                    norm: upload_norm(gpu, &v.norm, "morphology.norm")?,
                    centre: gpu.storage_init("ViT centre tokens", bytemuck::cast_slice(&idx))?,
                    k: idx.len(),
                    zero_bias: gpu.storage_zeroed("ViT attention bias (none)", m.n_heads * g2 * g2)?,
                })
            }
            _ => None,
        };
        // Compile the model-specific attention kernel now rather than on the first call.
        let flash = w.attention_bias.is_none() && t >= FLASH_MIN_TOKENS;
        if flash {
            compile_flash_attention(gpu, t, c.d_model, c.n_heads)?;
        } else {
            compile_layer_attention(gpu, t, c.d_model, c.n_heads, gpu.supports_subgroups())?;
        }
        ctx.take_error()?;
        let ctx_subgroups = ctx.supports_subgroups();

        Ok(Self {
            eps: c.layer_norm_eps as f32,
            chunk_cells: DEFAULT_CHUNK_CELLS.min(max_chunk_cells),
            max_chunk_cells,
            config: c,
            ctx,
            token_embedding,
            flash,
            layers,
            final_norm,
            head,
            linear_path,
            attention_bias,
            vit,
            int8_activations: false,
            subgroups: ctx_subgroups,
            f16_hidden: false,
        })
    }

    /// Whether the encoder layers run with int8 activations (off unless
    /// [`set_int8_activations`](Self::set_int8_activations) turned it on).
    pub fn int8_activations(&self) -> bool {
        self.int8_activations
    }

    /// Turns int8 activations on or off for the encoder layers' matmuls (q|k|v with its
    /// LayerNorm prologue, fc1 with LayerNorm + GELU, fc2 and, where attention is not fused
    /// with it, the output projection): each row is quantised with
    /// [`crate::quant::quantize_row_i8`]'s scheme inside `matmul_dot4.wgsl` and multiplied
    /// with `dot4I8Packed`. Only where the context [supports it](GpuContext::supports_int8_dot);
    /// elsewhere the request is ignored and today's f32-activation kernels run. Returns the
    /// value in effect. The embedding, the attention and the head keep f32 activations;
    /// logits move by the activation quantisation error (`tests/kernels_dot4.rs` states the
    /// bound), so classes follow the default path except on near ties.
    pub fn set_int8_activations(&mut self, on: bool) -> bool {
        self.int8_activations = on && self.ctx.supports_int8_dot();
        self.int8_activations
    }

    /// Whether the encoder layers reduce with subgroup shuffles (on by default where the
    /// context [has subgroups](GpuContext::supports_subgroups)).
    pub fn subgroups(&self) -> bool {
        self.subgroups
    }

    /// Turns the subgroup reductions on or off: the LayerNorm prologues of the q|k|v and fc1
    /// matmuls (and the row amax with int8 activations) and the fused attention's scores
    /// use `subgroupShuffleXor` instead of workgroup memory. Only where the context
    /// [has subgroups](GpuContext::supports_subgroups); elsewhere the request is ignored.
    /// Returns the value in effect. Logits move by reduction-order rounding only
    /// (`tests/kernels.rs` states the bound).
    pub fn set_subgroups(&mut self, on: bool) -> bool {
        self.subgroups = on && self.ctx.supports_subgroups();
        self.subgroups
    }

    /// Whether the feed-forward hidden is stored as f16 (off unless
    /// [`set_f16_hidden`](Self::set_f16_hidden) turned it on).
    pub fn f16_hidden(&self) -> bool {
        self.f16_hidden
    }

    /// Turns the f16 feed-forward hidden on or off: fc1 writes GELU's output `[rows, F]` as
    /// f16 and fc2 reads it (f32 products and sums), halving the traffic of the layer's
    /// largest activation. Only where the context [has shader-f16](GpuContext::supports_f16),
    /// and not with [int8 activations](Self::set_int8_activations) (which then take
    /// precedence); elsewhere the request is ignored. Returns the value in effect. Logits
    /// move by the f16 rounding of the hidden (relative 2⁻¹¹ per value;
    /// `tests/kernels.rs` states the bound), so classes follow the default path
    /// except on near ties.
    pub fn set_f16_hidden(&mut self, on: bool) -> bool {
        self.f16_hidden = on && self.ctx.supports_f16();
        self.f16_hidden
    }

    /// Whether the hidden buffers are f16 for the current settings.
    fn hidden_f16(&self) -> bool {
        self.f16_hidden && !self.int8_activations
    }

    /// Cells processed per chunk (per command buffer).
    pub fn chunk_cells(&self) -> usize {
        self.chunk_cells
    }

    /// The largest chunk the device limits allow for this model: every per-chunk buffer
    /// (input `[cells, G]`, q|k|v `[cells*T, 3D]`, hidden `[cells*T, F]`, ...) must fit one
    /// 128 MiB storage binding, and a matmul over `cells*T` rows needs at most 65535
    /// workgroups of 64 rows.
    pub fn max_chunk_cells(&self) -> usize {
        self.max_chunk_cells
    }

    /// Sets the chunk size, clamped to `1..=max_chunk_cells()`; returns the value used.
    pub fn set_chunk_cells(&mut self, cells: usize) -> usize {
        self.chunk_cells = cells.clamp(1, self.max_chunk_cells);
        self.chunk_cells
    }

    /// Compute dispatches one encoder layer records per chunk (the benchmarks' "dispatches
    /// per layer"; counted from the plan, so it follows the kernels actually launched).
    pub fn dispatches_per_layer(&self) -> Result<usize, GpuError> {
        let Some(l) = self.layers.first() else { return Ok(0) };
        let c = &self.config;
        let b = self.work_buffers(1, 1)?;
        let lb = LayerBuffers { h: &b.h, a: &b.a, qkv: &b.qkv, ff: &b.ff, bias: &self.attention_bias, flash: self.flash, dot4: self.int8_activations, subgroups: self.subgroups, f16: self.hidden_f16() };
        let mut plan = Vec::new();
        push_layer(&mut plan, &self.ctx, l, &lb, 1, c.n_tokens(), c.d_model, c.n_heads, self.eps)?;
        Ok(plan.len())
    }

    /// The model's hyperparameters.
    pub fn config(&self) -> &ClassifierConfig {
        &self.config
    }

    /// The GPU context the weights live on.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// Logits `[cells, C]` for model input `x_norm` `[cells, n_inputs]` (see
    /// [`super::model_input`]) of a model without a morphology token.
    ///
    /// Never blocks on wasm32; natively it drives the device with `poll` while waiting.
    pub async fn logits(&self, x_norm: &[f32], n_cells: usize) -> Result<Vec<f32>, GpuError> {
        self.logits_with_patches(x_norm, None, n_cells).await
    }

    /// Logits `[cells, C]` for model input `x_norm` `[cells, n_inputs]` and, for a model with a
    /// morphology token, nucleus-centred patches `[cells, S, S]` (intensities in `[0, 1]`).
    /// Same arithmetic as [`super::cpu::forward_logits_with_patches`] on the int8
    /// model.
    pub async fn logits_with_patches(
        &self,
        x_norm: &[f32],
        patches: Option<&[f32]>,
        n_cells: usize,
    ) -> Result<Vec<f32>, GpuError> {
        let c = &self.config;
        check_len(
            || format!("x_norm [cells={n_cells}, inputs={}]", c.n_inputs()),
            x_norm.len(),
            n_cells * c.n_inputs(),
        )?;
        if let Some(m) = &c.morphology {
            let Some(p) = patches else {
                return Err(GpuError::InputShape {
                    what: format!(
                        "this model has a morphology token: pass patches [cells, {0}, {0}] \
                         (nucleus-centred, {1} µm/px)",
                        m.image_size, m.um_per_px
                    ),
                    expected: n_cells * m.pixels(),
                    found: 0,
                });
            };
            check_len(
                || format!("patches [cells={n_cells}, {0}, {0}]", m.image_size),
                p.len(),
                n_cells * m.pixels(),
            )?;
        }
        if n_cells == 0 {
            return Ok(Vec::new());
        }
        self.ctx.take_error()?;
        let ctx = &*self.ctx;
        let cap = n_cells.min(self.chunk_cells);
        // Two input/output slots when there is more than one chunk: chunk k+1's upload goes
        // into the slot chunk k does not read, while chunk k computes.
        let n_slots = if n_cells > cap { 2 } else { 1 };
        let work = self.work_buffers(cap, n_slots)?;
        let full_plans = (0..n_slots)
            .map(|slot| self.plan(&work, slot, cap))
            .collect::<Result<Vec<_>, _>>()?;

        let mut out = vec![0.0f32; n_cells * c.n_classes];
        // (slot, submission, first cell, cells) of the chunk submitted last.
        let mut pending: Option<(usize, wgpu::SubmissionIndex, usize, usize)> = None;
        for (k, start) in (0..n_cells).step_by(cap).enumerate() {
            let n = cap.min(n_cells - start);
            let slot = k % n_slots;
            let io = &work.slots[slot];
            let partial_plan;
            let plan = if n == cap {
                &full_plans[slot]
            } else {
                partial_plan = self.plan(&work, slot, n)?;
                &partial_plan
            };
            let x_chunk = &x_norm[start * c.n_inputs()..(start + n) * c.n_inputs()];
            match (&c.morphology, &io.patch_rows, patches) {
                (Some(m), Some(patch_rows), Some(p)) => {
                    // Rows of n_embedding_inputs: the ViT writes the trailing W columns.
                    let (n_in, stride) = (c.n_inputs(), c.n_embedding_inputs());
                    let mut wide = vec![0.0f32; n * stride];
                    if n_in > 0 {
                        for (o, xr) in wide.chunks_exact_mut(stride).zip(x_chunk.chunks_exact(n_in)) {
                            o[..n_in].copy_from_slice(xr);
                        }
                    }
                    ctx.queue.write_buffer(&io.x, 0, bytemuck::cast_slice(&wide));
                    let rows = vit_patch_rows(&p[start * m.pixels()..(start + n) * m.pixels()], n, m);
                    ctx.queue.write_buffer(patch_rows, 0, bytemuck::cast_slice(&rows));
                }
                _ => ctx.queue.write_buffer(&io.x, 0, bytemuck::cast_slice(x_chunk)),
            }
            let mut encoder = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("classifier chunk"),
                });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("classifier"),
                    timestamp_writes: None,
                });
                for d in plan {
                    d.record(&mut pass);
                }
            }
            encoder.copy_buffer_to_buffer(&io.logits, 0, &io.readback, 0, (n * c.n_classes * 4) as u64);
            let submission = ctx.queue.submit([encoder.finish()]);
            // The previous chunk's readback is mapped while this one runs.
            if let Some(p) = pending.take() {
                self.collect(&work, p, &mut out).await?;
            }
            pending = Some((slot, submission, start, n));
        }
        if let Some(p) = pending {
            self.collect(&work, p, &mut out).await?;
        }
        ctx.take_error()?;
        Ok(out)
    }

    /// Waits for a chunk's logits and copies them into `out`.
    async fn collect(
        &self,
        work: &WorkBuffers,
        pending: (usize, wgpu::SubmissionIndex, usize, usize),
        out: &mut [f32],
    ) -> Result<(), GpuError> {
        let (slot, submission, start, n) = pending;
        let classes = self.config.n_classes;
        let values = self
            .ctx
            .map_read(&work.slots[slot].readback, n * classes, submission)
            .await?;
        out[start * classes..(start + n) * classes].copy_from_slice(&values);
        Ok(())
    }

    fn work_buffers(&self, cells: usize, n_slots: usize) -> Result<WorkBuffers, GpuError> {
        let c = &self.config;
        let rows = cells * c.n_tokens();
        let ctx = &*self.ctx;
        // An f16 hidden takes two values per word.
        let f16 = self.hidden_f16();
        let hidden_words = |len: usize| if f16 { len.div_ceil(2) } else { len };
        let slots = (0..n_slots)
            .map(|i| {
                Ok(SlotBuffers {
                    x: ctx.storage_zeroed(&format!("model input chunk {i}"), cells * c.n_embedding_inputs())?,
                    patch_rows: match &c.morphology {
                        Some(m) => Some(ctx.storage_zeroed(
                            &format!("ViT patch rows {i}"),
                            cells * m.n_vit_tokens() * m.patch_row_width(),
                        )?),
                        None => None,
                    },
                    logits: ctx.storage_zeroed(&format!("logits {i}"), cells * c.n_classes)?,
                    readback: ctx.readback_buffer(&format!("logits readback {i}"), cells * c.n_classes),
                })
            })
            .collect::<Result<Vec<_>, GpuError>>()?;
        let vit = match &c.morphology {
            Some(m) => {
                let vr = cells * m.n_vit_tokens();
                Some(VitBuffers {
                    h: ctx.storage_zeroed("ViT residual stream", vr * m.width)?,
                    a: ctx.storage_zeroed("ViT normed / attention out", vr * m.width)?,
                    qkv: ctx.storage_zeroed("ViT qkv", vr * 3 * m.width)?,
                    ff: ctx.storage_zeroed("ViT ffn hidden", hidden_words(vr * m.d_ff))?,
                })
            }
            None => None,
        };
        Ok(WorkBuffers {
            slots,
            h: ctx.storage_zeroed("residual stream", rows * c.d_model)?,
            a: ctx.storage_zeroed("normed / attention out", rows * c.d_model)?,
            qkv: ctx.storage_zeroed("qkv", rows * 3 * c.d_model)?,
            ff: ctx.storage_zeroed("ffn hidden", hidden_words(rows * c.d_ff))?,
            pooled: ctx.storage_zeroed("pooled", cells * c.d_model)?,
            vit,
        })
    }

    /// All dispatches of the forward pass for a chunk of `cells` cells in input/output slot
    /// `slot`, in order.
    fn plan(&self, b: &WorkBuffers, slot: usize, cells: usize) -> Result<Vec<Dispatch>, GpuError> {
        let io = &b.slots[slot];
        let c = &self.config;
        let ctx = &*self.ctx;
        let rows = cells * c.n_tokens();
        let (t, d, eps) = (c.n_tokens(), c.d_model, self.eps);
        let none = Activation::None;
        let mut plan = Vec::with_capacity(3 + 5 * self.layers.len() + 3);
        if let (Some(m), Some(vit), Some(vb), Some(patch_rows)) = (&c.morphology, &self.vit, &b.vit, &io.patch_rows) {
            let g2 = m.n_vit_tokens();
            // Patch + position embedding in one matmul, then the blocks, the norm, and the
            // centre-token mean into the model-input columns n_inputs..n_embedding_inputs.
            plan.push(matmul_dispatch(ctx, patch_rows, cells * g2, &vit.patch_embedding, &vb.h, none, false)?);
            let lb = LayerBuffers { h: &vb.h, a: &vb.a, qkv: &vb.qkv, ff: &vb.ff, bias: &vit.zero_bias, flash: false, dot4: self.int8_activations, subgroups: self.subgroups, f16: self.hidden_f16() };
            for l in &vit.layers {
                push_layer(&mut plan, ctx, l, &lb, cells, g2, m.width, m.n_heads, eps)?;
            }
            plan.push(layernorm_dispatch(ctx, &vb.h, cells * g2, &vit.norm, &vb.a, eps)?);
            plan.push(token_gather_mean_dispatch(
                ctx,
                &vb.a,
                &vit.centre,
                vit.k,
                &io.x,
                cells,
                g2,
                m.width,
                c.n_embedding_inputs(),
                c.n_inputs(),
            )?);
        }
        // [cells, T*D] written as [cells*T, D]; token_type is in the bias.
        plan.push(match &self.token_embedding {
            TokenEmbedding::GeneTokens(gt) => gt.dispatch(ctx, &io.x, &b.h, cells)?,
            TokenEmbedding::Summary(ge) => matmul_dispatch(ctx, &io.x, cells, ge, &b.h, none, false)?,
        });
        let lb = LayerBuffers { h: &b.h, a: &b.a, qkv: &b.qkv, ff: &b.ff, bias: &self.attention_bias, flash: self.flash, dot4: self.int8_activations, subgroups: self.subgroups, f16: self.hidden_f16() };
        for l in &self.layers {
            push_layer(&mut plan, ctx, l, &lb, cells, t, d, c.n_heads, eps)?;
        }
        plan.push(layernorm_dispatch(ctx, &b.h, rows, &self.final_norm, &b.a, eps)?);
        plan.push(mean_pool_dispatch(ctx, &b.a, &b.pooled, cells, t, d)?);
        plan.push(matmul_dispatch(ctx, &b.pooled, cells, &self.head, &io.logits, none, false)?);
        if let Some(lp) = &self.linear_path {
            // The wide path on the model input rows, accumulated onto the logits.
            plan.push(matmul_dispatch(ctx, &io.x, cells, lp, &io.logits, none, true)?);
        }
        Ok(plan)
    }
}

/// Compiles the attention kernel [`push_layer`] uses for this shape (fused with the output
/// projection where [`attention_out::supports`] it).
pub(super) fn compile_layer_attention(ctx: &GpuContext, tokens: usize, d: usize, heads: usize, subgroups: bool) -> Result<(), GpuError> {
    if attention_out::supports(d, heads) {
        compile_attention_out(ctx, tokens, d, heads, subgroups)
    } else {
        compile_attention(ctx, tokens, d, heads)
    }
}

/// The largest chunk for which every per-chunk buffer fits `max_binding` bytes and every
/// matmul fits the workgroup-count limit.
fn max_chunk_cells(c: &ClassifierConfig, max_binding: u64) -> Result<usize, GpuError> {
    let t = c.n_tokens();
    let g2 = c.morphology.as_ref().map_or(0, |m| m.n_vit_tokens());
    let (pw, vw, vf) = c.morphology.as_ref().map_or((0, 0, 0), |m| (m.patch_row_width(), m.width, m.d_ff));
    let per_cell_bytes = [
        ("model input [cells, n_embedding_inputs]", c.n_embedding_inputs()),
        ("residual stream [cells*T, D]", t * c.d_model),
        ("qkv [cells*T, 3D]", t * 3 * c.d_model),
        ("ffn hidden [cells*T, F]", t * c.d_ff),
        ("logits [cells, C]", c.n_classes),
        ("ViT patch rows [cells*g², p²+g²]", g2 * pw),
        ("ViT qkv [cells*g², 3W]", g2 * 3 * vw),
        ("ViT ffn hidden [cells*g², Fv]", g2 * vf),
    ]
    .map(|(what, floats)| (what, floats as u64 * 4));
    let (what, widest) = per_cell_bytes
        .into_iter()
        .max_by_key(|&(_, b)| b)
        .unwrap_or(("", 4));
    let by_memory = (max_binding / widest.max(1)) as usize;
    if by_memory == 0 {
        return Err(GpuError::TooLarge {
            what: format!("one cell's {what}"),
            bytes: widest,
            limit: max_binding,
        });
    }
    let by_dispatch = TILE_M * MAX_WORKGROUPS_PER_DIM as usize / t.max(g2).max(1);
    Ok(by_memory.min(by_dispatch))
}
