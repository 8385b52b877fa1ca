//! SPATIA (issue 14) on WebGPU: [`GpuSpatia`] runs the whole hierarchy one tissue region at
//! a time (as `SpatiaCpu::forward_region`), on top of the cell level, [`GpuSpatiaCell`], which runs
//! [`SpatiaCellModel::forward`] on the kernels of [`crate::gpu`] with the model's own weights
//! (int8 per output channel, or f32 through `matmul_int8.wgsl`'s `F32_WEIGHTS = 1`),
//! natively (Vulkan, e.g. lavapipe) and in a browser. The CPU forward is the reference:
//! `tests/spatia_gpu.rs` holds the two within `1e-4 · max(1, max|cpu|)` on `z_cell` and the
//! logits, classes equal.
//!
//! Plan per chunk of `c` cells (one command buffer, one readback of `z_cell ‖ logits`):
//! ```text
//! gene tokens  gt  = genes [c, G] · gene_embeddingᵀ              [c·T, D]  matmul
//! keys/values  kv  = LN_kv(gt) · [k ‖ v]ᵀ                          [c·T, 2D] matmul, LN prologue
//! ViT          vh  = patch rows [c·g², p²+g²] · patch_embeddingᵀ    [c·g², W] matmul
//!              vh  = ViT blocks (vh)                                 4 or 5 launches per block
//!              h   = LN_vit(vh) · vit.projectionᵀ                    [c·g², D] matmul, LN prologue
//! cross block  q   = LN_q(h) · qᵀ                                    [c·g², D] matmul, LN prologue
//!              att = CrossAttn(q, kv)                                [c·g², D] cross_attention.wgsl
//!              h  += att · oᵀ                                                  matmul, residual
//!              f   = GELU(LN_ff(h) · fc1ᵀ)                           [c·g², F] matmul, LN prologue
//!              h  += f · fc2ᵀ                                                  matmul, residual
//! z_cell       z   = LN(mean over the g² tokens of h)                [c, D]    mean_pool, layernorm
//! logits           = z · type_headᵀ                                  [c, C]    matmul (cell-level models)
//! ```
//! Image-free models (`spec.images == false`) have no ViT: the learned query tokens `[Tq, D]`
//! (and the niche level's `[Tn, D]`) are written, repeated per cell (niche), straight into the
//! cross block's residual stream on the host, and `g²` reads `Tq` (`Tn`) above.
//!
//! The ViT patch rows (unfolded patch ‖ one-hot position) are built on the host with
//! [`super::vit_patch_rows`], as the CPU forward does. Every buffer of a chunk fits one
//! storage binding and every launch the per-dimension workgroup limit of WebGPU's defaults
//! ([`GpuSpatiaCell::max_chunk_cells`]).

use std::sync::Arc;

use super::cpu::fuse_qkv;
use super::format::{MorphologyTokenConfig, VitWeights};
use super::gpu::{compile_layer_attention, push_layer, upload_layer, upload_norm, GpuEncoderLayer, LayerBuffers};
use super::preprocess::vit_patch_rows;
use super::flow_gpu::{record, Op};
use super::spatia::{cell_pixels, CrossBlockWeights, SpatiaQueries, SpatiaCellMeta, SpatiaCellModel, SpatiaCellOutput, SPATIA_FORMAT_VERSION};
use super::spatia_hierarchy::{region_slots, SpatiaHierarchyMeta, SpatiaHierarchyModel, SpatiaRegionInput, SpatiaRegionOutput, SpatiaSlideInput, SpatiaSlideOutput, SpatiaSlidePlan, TISSUE_MASKED_SCORE};
use super::spec::{grid_positional_encoding, SpatiaSpec};
use super::EngineError;
use crate::gpu::attention::compile_attention;
use crate::gpu::cross_attention::{compile_cross_attention, cross_attention_dispatch};
use crate::gpu::layernorm::{layernorm_dispatch, GpuLayerNorm};
use crate::gpu::matmul::{matmul_dispatch, matmul_norm_dispatch, Activation, GpuLinear, MatmulFast, TILE_M};
use crate::gpu::mean_pool::mean_pool_dispatch;
use crate::gpu::sparse_rows::{sparse_rows_dispatch, GpuCsr};
use crate::gpu::{Dispatch, GpuContext, GpuError, MAX_WORKGROUPS_PER_DIM};
use crate::quant::Linear;

/// Default cells per chunk (one command buffer and one readback each).
pub const DEFAULT_SPATIA_CHUNK_CELLS: usize = 4096;

/// A ViT (position table folded into the patch embedding) and the projection of its normed
/// tokens to `D`, on the GPU: `projection(norm(blocks(patch_embedding(rows))))`.
pub(super) struct GpuVitProj {
    cfg: MorphologyTokenConfig,
    patch_embedding: GpuLinear,
    layers: Vec<GpuEncoderLayer>,
    norm: GpuLayerNorm,
    projection: GpuLinear,
    /// Zero attention bias `[H, g², g²]` (a ViT has none).
    zero_bias: wgpu::Buffer,
}

/// A [`GpuVitProj`]'s work buffers for `n` images: patch rows `[n·g², p²+g²]`, residual
/// stream and attention output `[n·g², W]`, q|k|v `[n·g², 3W]`, feed-forward `[n·g², Fv]`.
pub(super) struct VitBuffers {
    pub rows: wgpu::Buffer,
    vh: wgpu::Buffer,
    va: wgpu::Buffer,
    vqkv: wgpu::Buffer,
    vff: wgpu::Buffer,
}

impl GpuVitProj {
    /// Uploads `vit` and `projection` (`[D, W]`) under `name` and compiles the blocks'
    /// attention kernel (fused with the output projection for int8 weights).
    pub(super) fn upload(ctx: &GpuContext, vit: &VitWeights, projection: &Linear, cfg: &MorphologyTokenConfig, name: &str) -> Result<Self, GpuError> {
        let g2 = cfg.n_vit_tokens();
        if projection.is_int8() {
            compile_layer_attention(ctx, g2, cfg.width, cfg.n_heads, false)?;
        } else {
            compile_attention(ctx, g2, cfg.width, cfg.n_heads)?;
        }
        Ok(Self {
            cfg: cfg.clone(),
            patch_embedding: GpuLinear::upload(ctx, &vit.patch_embedding, &format!("{name}.patch_embedding"))?,
            layers: vit.layers.iter().enumerate().map(|(i, l)| upload_layer(ctx, l, &fuse_qkv(l), &format!("{name}.layers.{i}"))).collect::<Result<_, _>>()?,
            norm: upload_norm(ctx, &vit.norm, &format!("{name}.norm"))?,
            projection: GpuLinear::upload(ctx, projection, &format!("{name}.projection"))?,
            zero_bias: ctx.storage_zeroed(&format!("{name} attention bias (none)"), cfg.n_heads * g2 * g2)?,
        })
    }

    /// Work buffers for up to `n` images.
    pub(super) fn buffers(&self, ctx: &GpuContext, n: usize, name: &str) -> Result<VitBuffers, GpuError> {
        let (m, vr) = (&self.cfg, n * self.cfg.n_vit_tokens());
        Ok(VitBuffers {
            rows: ctx.storage_zeroed(&format!("{name} patch rows"), vr * m.patch_row_width())?,
            vh: ctx.storage_zeroed(&format!("{name} residual stream"), vr * m.width)?,
            va: ctx.storage_zeroed(&format!("{name} attention out"), vr * m.width)?,
            vqkv: ctx.storage_zeroed(&format!("{name} qkv"), vr * 3 * m.width)?,
            vff: ctx.storage_zeroed(&format!("{name} ffn hidden"), vr * m.d_ff)?,
        })
    }

    /// Host side: the patch rows of `n` images `[n, S, S]` ([`vit_patch_rows`]), written into
    /// `b.rows`.
    pub(super) fn write_rows(&self, ctx: &GpuContext, b: &VitBuffers, images: &[f32], n: usize) {
        ctx.queue.write_buffer(&b.rows, 0, bytemuck::cast_slice(&vit_patch_rows(images, n, &self.cfg)));
    }

    /// The launches for `n` images whose rows are in `b.rows`, writing the projected tokens
    /// `[n·g², D]` into `out`: patch embedding, the blocks (4 or 5 launches each), and the
    /// projection with the ViT's LayerNorm in its prologue.
    pub(super) fn push(&self, plan: &mut Vec<Dispatch>, ctx: &GpuContext, b: &VitBuffers, n: usize, out: &wgpu::Buffer, eps: f32) -> Result<(), GpuError> {
        let (m, g2) = (&self.cfg, self.cfg.n_vit_tokens());
        plan.push(matmul_dispatch(ctx, &b.rows, n * g2, &self.patch_embedding, &b.vh, Activation::None, false)?);
        let lb = LayerBuffers { h: &b.vh, a: &b.va, qkv: &b.vqkv, ff: &b.vff, bias: &self.zero_bias, flash: false, dot4: false, subgroups: false, f16: false };
        for l in &self.layers {
            push_layer(plan, ctx, l, &lb, n, g2, m.width, m.n_heads, eps)?;
        }
        plan.push(matmul_norm_dispatch(ctx, &b.vh, n * g2, Some((&self.norm, eps)), &self.projection, out, Activation::None, false, MatmulFast::default())?);
        Ok(())
    }
}

/// A level's queries on the GPU: a ViT with its projection, or learned tokens written on the
/// host (repeated per item) into the residual stream.
pub(super) enum GpuQueries {
    /// ViT + projection.
    Vit(GpuVitProj),
    /// Learned tokens `[T, D]` row-major.
    Learned(Vec<f32>),
}

/// A [`GpuQueries`]' work buffers (none for learned tokens).
pub(super) enum QueryBuffers {
    /// The ViT's.
    Vit(VitBuffers),
    /// Learned tokens need none.
    Learned,
}

impl GpuQueries {
    /// Uploads `q` (`cfg`: the level's image config) under `name`.
    pub(super) fn upload(ctx: &GpuContext, q: &SpatiaQueries, cfg: &MorphologyTokenConfig, name: &str) -> Result<Self, GpuError> {
        Ok(match q {
            SpatiaQueries::Vit { vit, projection } => GpuQueries::Vit(GpuVitProj::upload(ctx, vit, projection, cfg, name)?),
            SpatiaQueries::Learned { tokens, .. } => GpuQueries::Learned(tokens.clone()),
        })
    }

    /// Work buffers for up to `n` items.
    pub(super) fn buffers(&self, ctx: &GpuContext, n: usize, name: &str) -> Result<QueryBuffers, GpuError> {
        Ok(match self {
            GpuQueries::Vit(v) => QueryBuffers::Vit(v.buffers(ctx, n, name)?),
            GpuQueries::Learned(_) => QueryBuffers::Learned,
        })
    }

    /// Host side before the launches of `n` items: the ViT's patch rows of `images`, or the
    /// learned tokens repeated `n` times written into `out` (the residual stream).
    pub(super) fn write(&self, ctx: &GpuContext, b: &QueryBuffers, out: &wgpu::Buffer, images: &[f32], n: usize) {
        match (self, b) {
            (GpuQueries::Vit(v), QueryBuffers::Vit(vb)) => v.write_rows(ctx, vb, images, n),
            (GpuQueries::Learned(t), _) if n > 0 => ctx.queue.write_buffer(out, 0, bytemuck::cast_slice(&t.repeat(n))),
            _ => {}
        }
    }

    /// The ViT's launches writing `[n·g², D]` into `out` (none for learned tokens: [`Self::write`]
    /// put them there).
    pub(super) fn push(&self, plan: &mut Vec<Dispatch>, ctx: &GpuContext, b: &QueryBuffers, n: usize, out: &wgpu::Buffer, eps: f32) -> Result<(), GpuError> {
        match (self, b) {
            (GpuQueries::Vit(v), QueryBuffers::Vit(vb)) => v.push(plan, ctx, vb, n, out, eps),
            (GpuQueries::Learned(_), _) => Ok(()),
            (GpuQueries::Vit(_), QueryBuffers::Learned) => Err(GpuError::InvalidInput { what: "SPATIA query buffers".into(), reason: "a ViT's launches were asked for with the buffers of learned tokens; build the buffers with GpuQueries::buffers".into() }),
        }
    }
}

/// SPATIA's pre-norm cross block on the GPU (k and v fused into one `[2D, D]` layer):
/// `h += o(Attn(q(LN_q h), [k ‖ v](LN_kv ctx)))`, then `h += fc2(GELU(fc1(LN_ff h)))`.
pub(super) struct GpuCrossBlock {
    norm_q: GpuLayerNorm,
    q: GpuLinear,
    norm_kv: GpuLayerNorm,
    kv: GpuLinear,
    o: GpuLinear,
    norm_ff: GpuLayerNorm,
    fc1: GpuLinear,
    fc2: GpuLinear,
}

/// A [`GpuCrossBlock`]'s work buffers for `n` items of `tq` queries over `tk` context rows:
/// queries and attention output `[n·tq, D]`, keys ‖ values `[n·tk, 2D]`, feed-forward
/// `[n·tq, F]`.
pub(super) struct CrossBuffers {
    q: wgpu::Buffer,
    kv: wgpu::Buffer,
    att: wgpu::Buffer,
    ff: wgpu::Buffer,
}

impl GpuCrossBlock {
    /// Uploads `c` under `name` (its k and v stacked).
    #[allow(clippy::result_large_err)]
    pub(super) fn upload(ctx: &GpuContext, c: &CrossBlockWeights, name: &str) -> Result<Self, EngineError> {
        let kv = Linear::concat_rows(&[&c.k, &c.v]).ok_or_else(|| EngineError::InvalidConfig {
            reason: format!("SPATIA {name}: k and v differ in input width or weight kind; re-export the model"),
        })?;
        let up = |l: &Linear, what: &str| GpuLinear::upload(ctx, l, &format!("{name}.{what}"));
        Ok(Self {
            norm_q: upload_norm(ctx, &c.norm_q, &format!("{name}.norm_q"))?,
            q: up(&c.q, "attn.q")?,
            norm_kv: upload_norm(ctx, &c.norm_kv, &format!("{name}.norm_kv"))?,
            kv: up(&kv, "attn.kv")?,
            o: up(&c.o, "attn.o")?,
            norm_ff: upload_norm(ctx, &c.norm_ff, &format!("{name}.norm_ff"))?,
            fc1: up(&c.fc1, "ffn.fc1")?,
            fc2: up(&c.fc2, "ffn.fc2")?,
        })
    }

    /// Work buffers for `n` items of `tq` queries over `tk` context rows.
    pub(super) fn buffers(&self, ctx: &GpuContext, n: usize, tq: usize, tk: usize, name: &str) -> Result<CrossBuffers, GpuError> {
        let d = self.q.out_dim;
        Ok(CrossBuffers {
            q: ctx.storage_zeroed(&format!("{name} queries"), n * tq * d)?,
            kv: ctx.storage_zeroed(&format!("{name} keys ‖ values"), n * tk * 2 * d)?,
            att: ctx.storage_zeroed(&format!("{name} attention out"), n * tq * d)?,
            ff: ctx.storage_zeroed(&format!("{name} ffn hidden"), n * tq * self.fc1.out_dim)?,
        })
    }

    /// The block's six launches on `h` `[n·tq, D]` in place, with the context `ctx_rows`
    /// `[n·tk, D]` (item `i` attends over its own `tk` rows) and `heads` heads.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn push(&self, plan: &mut Vec<Dispatch>, ctx: &GpuContext, h: &wgpu::Buffer, ctx_rows: &wgpu::Buffer, b: &CrossBuffers, n: usize, tq: usize, tk: usize, heads: usize, eps: f32) -> Result<(), GpuError> {
        let (d, none) = (self.q.out_dim, Activation::None);
        plan.push(matmul_norm_dispatch(ctx, ctx_rows, n * tk, Some((&self.norm_kv, eps)), &self.kv, &b.kv, none, false, MatmulFast::default())?);
        plan.push(matmul_norm_dispatch(ctx, h, n * tq, Some((&self.norm_q, eps)), &self.q, &b.q, none, false, MatmulFast::default())?);
        plan.push(cross_attention_dispatch(ctx, &b.q, &b.kv, &b.att, n, tq, tk, d, heads)?);
        plan.push(matmul_dispatch(ctx, &b.att, n * tq, &self.o, h, none, true)?);
        plan.push(matmul_norm_dispatch(ctx, h, n * tq, Some((&self.norm_ff, eps)), &self.fc1, &b.ff, Activation::Gelu, false, MatmulFast::default())?);
        plan.push(matmul_dispatch(ctx, &b.ff, n * tq, &self.fc2, h, none, true)?);
        Ok(())
    }
}

/// One chunk's buffers, sized for `cap` cells.
struct ChunkBuffers {
    /// Normalised genes `[c, G]`.
    genes: wgpu::Buffer,
    /// Gene tokens `[c·T, D]`.
    gene_tokens: wgpu::Buffer,
    vit: QueryBuffers,
    /// Image tokens (the cross block's residual stream) `[c·g², D]`.
    h: wgpu::Buffer,
    cross: CrossBuffers,
    /// Pooled tokens `[c, D]`.
    pooled: wgpu::Buffer,
    /// `z_cell` `[c, D]` and the logits `[c, C]` (cell-level models).
    z: wgpu::Buffer,
    logits: wgpu::Buffer,
    /// Mappable `z_cell ‖ logits` of one chunk.
    readback: wgpu::Buffer,
}

/// [`SpatiaCellModel`] on the GPU: weights uploaded once, cells processed in chunks.
pub struct GpuSpatiaCell {
    ctx: Arc<GpuContext>,
    /// The model's architecture (sizes).
    spec: SpatiaSpec,
    eps: f32,
    gene_embedding: GpuLinear,
    vit: GpuQueries,
    cross: GpuCrossBlock,
    norm: GpuLayerNorm,
    type_head: Option<GpuLinear>,
    chunk_cells: usize,
    max_chunk_cells: usize,
}

impl GpuSpatiaCell {
    /// Uploads `model`'s weights as they are stored (int8 or f32) and compiles its kernels.
    ///
    /// Errors: an invalid model, a layer or a single cell's activations too large for one
    /// storage binding ([`GpuError::TooLarge`] in [`EngineError::Gpu`]), kernel build failures.
    #[allow(clippy::result_large_err)] // EngineError, as every engine entry point returns
    pub fn new(ctx: Arc<GpuContext>, model: &SpatiaCellModel) -> Result<Self, EngineError> {
        model.validate()?;
        ctx.take_error()?;
        let (s, w) = (&model.meta.spec, &model.weights);
        let gpu = &*ctx;
        compile_cross_attention(gpu, s.cell_queries(), s.gene_tokens, s.d_model, s.n_heads)?;
        let max_chunk_cells = max_chunk_cells(s, gpu.max_binding_bytes())?;
        let this = Self {
            gene_embedding: GpuLinear::upload(gpu, &w.gene_embedding, "gene_embedding")?,
            vit: GpuQueries::upload(gpu, &w.queries, &s.cell_image, "vit")?,
            cross: GpuCrossBlock::upload(gpu, &w.cross, "cross")?,
            norm: upload_norm(gpu, &w.norm, "norm")?,
            type_head: w.type_head.as_ref().map(|h| GpuLinear::upload(gpu, h, "type_head")).transpose()?,
            spec: s.clone(),
            eps: s.layer_norm_eps as f32,
            chunk_cells: DEFAULT_SPATIA_CHUNK_CELLS.min(max_chunk_cells),
            max_chunk_cells,
            ctx,
        };
        this.ctx.take_error()?;
        Ok(this)
    }

    /// Cells per chunk (one command buffer and one readback each).
    pub fn chunk_cells(&self) -> usize {
        self.chunk_cells
    }

    /// The largest chunk whose buffers fit one storage binding each and whose launches fit the
    /// per-dimension workgroup limit.
    pub fn max_chunk_cells(&self) -> usize {
        self.max_chunk_cells
    }

    /// Sets the cells per chunk, clamped to `1..=max_chunk_cells()`; returns the value used.
    pub fn set_chunk_cells(&mut self, cells: usize) -> usize {
        self.chunk_cells = cells.clamp(1, self.max_chunk_cells);
        self.chunk_cells
    }

    /// The GPU context the weights live on.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// `z_cell` `[n, D]` (and, for a cell-level model, the logits `[n, C]`) of `n` cells, as
    /// [`SpatiaCellModel::forward`] computes them: `genes` `[n, G]` normalised as in training,
    /// `patches` `[n, S, S]` in `[0, 1]`. Same input checks and errors as the CPU forward.
    ///
    /// Never blocks on wasm32; natively it drives the device with `poll` while waiting.
    pub async fn forward(&self, genes: &[f32], patches: &[f32], n: usize) -> Result<SpatiaCellOutput, EngineError> {
        let s = &self.spec;
        check_inputs(s, genes, patches, n)?;
        let (d, c_out) = (s.d_model, self.type_head.as_ref().map_or(0, |h| h.out_dim));
        let mut z_cell = Vec::with_capacity(n * d);
        let mut logits = self.type_head.as_ref().map(|_| Vec::with_capacity(n * c_out));
        if n == 0 {
            return Ok(SpatiaCellOutput { z_cell, logits });
        }
        self.ctx.take_error()?;
        let ctx = &*self.ctx;
        let (g, px) = (s.n_genes, cell_pixels(s));
        let cap = n.min(self.chunk_cells);
        let bufs = self.chunk_buffers(cap)?;
        // Every full chunk records the same launches; only a last, shorter one needs its own.
        let full_plan = self.plan(&bufs, cap)?;
        for start in (0..n).step_by(cap) {
            let c = cap.min(n - start);
            ctx.queue.write_buffer(&bufs.genes, 0, bytemuck::cast_slice(&genes[start * g..(start + c) * g]));
            self.vit.write(ctx, &bufs.vit, &bufs.h, &patches[start * px..(start + c) * px], c);
            let partial_plan;
            let plan = if c == cap {
                &full_plan
            } else {
                partial_plan = self.plan(&bufs, c)?;
                &partial_plan
            };
            let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("SPATIA cell chunk") });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("SPATIA cell"), timestamp_writes: None });
                for dsp in plan {
                    dsp.record(&mut pass);
                }
            }
            encoder.copy_buffer_to_buffer(&bufs.z, 0, &bufs.readback, 0, (c * d * 4) as u64);
            if c_out > 0 {
                encoder.copy_buffer_to_buffer(&bufs.logits, 0, &bufs.readback, (c * d * 4) as u64, (c * c_out * 4) as u64);
            }
            let submission = ctx.queue.submit([encoder.finish()]);
            let values = ctx.map_read(&bufs.readback, c * (d + c_out), submission).await?;
            let (z, l) = values.split_at(c * d);
            z_cell.extend_from_slice(z);
            if let Some(out) = logits.as_mut() {
                out.extend_from_slice(l);
            }
        }
        self.ctx.take_error()?;
        Ok(SpatiaCellOutput { z_cell, logits })
    }

    /// Kernel launches per chunk (counted from the plan).
    pub fn dispatches_per_chunk(&self) -> Result<usize, GpuError> {
        Ok(self.plan(&self.chunk_buffers(1)?, 1)?.len())
    }

    /// Work buffers for chunks of up to `cap` cells.
    fn chunk_buffers(&self, cap: usize) -> Result<ChunkBuffers, GpuError> {
        let ctx = &*self.ctx;
        let s = &self.spec;
        let (d, t, g2) = (s.d_model, s.gene_tokens, s.cell_queries());
        let c_out = self.type_head.as_ref().map_or(0, |h| h.out_dim);
        Ok(ChunkBuffers {
            genes: ctx.storage_zeroed("SPATIA genes", cap * s.n_genes)?,
            gene_tokens: ctx.storage_zeroed("SPATIA gene tokens", cap * t * d)?,
            vit: self.vit.buffers(ctx, cap, "SPATIA ViT")?,
            h: ctx.storage_zeroed("SPATIA image tokens", cap * g2 * d)?,
            cross: self.cross.buffers(ctx, cap, g2, t, "SPATIA cell cross block")?,
            pooled: ctx.storage_zeroed("SPATIA pooled", cap * d)?,
            z: ctx.storage_zeroed("SPATIA z_cell", cap * d)?,
            logits: ctx.storage_zeroed("SPATIA logits", cap * c_out)?,
            readback: ctx.readback_buffer("SPATIA z_cell ‖ logits readback", cap * (d + c_out)),
        })
    }

    /// Every launch of one chunk of `c` cells, in order (see the module doc).
    fn plan(&self, b: &ChunkBuffers, c: usize) -> Result<Vec<Dispatch>, GpuError> {
        let mut plan = Vec::new();
        self.push_z_cell(&mut plan, b, c)?;
        if let Some(head) = &self.type_head {
            plan.push(matmul_dispatch(&self.ctx, &b.z, c, head, &b.logits, Activation::None, false)?);
        }
        Ok(plan)
    }

    /// The launches from the inputs of `c` cells to `z_cell` in `b.z`.
    fn push_z_cell(&self, plan: &mut Vec<Dispatch>, b: &ChunkBuffers, c: usize) -> Result<(), GpuError> {
        let ctx = &*self.ctx;
        let s = &self.spec;
        let (d, t, g2, eps) = (s.d_model, s.gene_tokens, s.cell_queries(), self.eps);
        // Gene tokens [c·T, D] (the [c, T·D] output read row-major).
        plan.push(matmul_dispatch(ctx, &b.genes, c, &self.gene_embedding, &b.gene_tokens, Activation::None, false)?);
        // Image tokens [c·g², D], then the cross block over the gene tokens.
        self.vit.push(plan, ctx, &b.vit, c, &b.h, eps)?;
        self.cross.push(plan, ctx, &b.h, &b.gene_tokens, &b.cross, c, g2, t, s.n_heads, eps)?;
        // z_cell = LN(mean of the tokens).
        plan.push(mean_pool_dispatch(ctx, &b.h, &b.pooled, c, g2, d)?);
        plan.push(layernorm_dispatch(ctx, &b.pooled, c, &self.norm, &b.z, eps)?);
        Ok(())
    }
}

/// The levels above the cell level on the GPU (`--levels niche|tissue` models).
struct GpuContextLevels {
    niche_vit: GpuQueries,
    niche_cross: GpuCrossBlock,
    niche_norm: GpuLayerNorm,
    /// Tissue encoder layers and final norm (`--levels tissue`).
    tissue: Option<(Vec<GpuEncoderLayer>, GpuLayerNorm)>,
    fusion: GpuCrossBlock,
    fusion_norm: GpuLayerNorm,
    type_head: GpuLinear,
    composition_head: GpuLinear,
    /// 2-D positional encoding of the region's slots `[R², D]`.
    pe: wgpu::Buffer,
}

/// SPATIA's whole hierarchy ([`SpatiaHierarchyModel`]) on the GPU, one tissue region per
/// call, as [`super::SpatiaCpu::forward_region`] computes it (the module docs of
/// [`super::spatia_hierarchy`] give the maths). Per region one command buffer:
/// ```text
/// cell level (as GpuSpatiaCell)                         → z_cell [N, D]
/// niche ViT + projection over the tiles [K, S', S']      → t [K·g'², D]
/// sparse_rows: mean z_cell per niche (weights 1/count)   → m [K, D]
/// cross block (Q = t, K = V = m_k), mean pool, niche.norm → levels[0 .. K] = z_niche
/// tissue: sparse_rows (z_niche into its slot, + PE)      → h [R², D]; encoder layers with the
///         empty-slot key bias [H, R², R²]; final_norm, copied into levels[K .. K + R²]
/// sparse_rows: each cell's [z_niche, z_tissue] rows      → ctx [N·tk, D]
/// fusion cross block on a copy of z_cell, fusion_norm    → z [N, D]; type_head → logits
/// composition_head on levels[0 .. K]                     → composition [K, C]
/// ```
/// then one readback of `z_cell ‖ z ‖ logits ‖ levels ‖ composition` (`z_tissue` is read
/// from the slots). The ViTs and cross blocks are those of [`GpuSpatiaCell`]; the only new
/// kernel is `sparse_rows.wgsl`. A region's cells must fit one chunk
/// ([`GpuSpatiaCell::max_chunk_cells`]).
pub struct GpuSpatia {
    cell: GpuSpatiaCell,
    context: Option<GpuContextLevels>,
    /// The file's spec, classes and niche centroids (for [`Self::forward_slide`]).
    meta: SpatiaHierarchyMeta,
}

/// One region's buffers above the cell level.
struct RegionBuffers {
    niche_vit: QueryBuffers,
    t: wgpu::Buffer,
    niche_cross: CrossBuffers,
    mean: wgpu::Buffer,
    pooled: wgpu::Buffer,
    /// `z_niche` `[K, D]` then the tissue transformer's output slots `[R², D]`.
    levels: wgpu::Buffer,
    tissue: Option<TissueBuffers>,
    ctx_rows: wgpu::Buffer,
    zf: wgpu::Buffer,
    fusion_cross: CrossBuffers,
    z: wgpu::Buffer,
    logits: wgpu::Buffer,
    composition: wgpu::Buffer,
    readback: wgpu::Buffer,
}

struct TissueBuffers {
    h: wgpu::Buffer,
    a: wgpu::Buffer,
    qkv: wgpu::Buffer,
    ff: wgpu::Buffer,
    bias: wgpu::Buffer,
    y: wgpu::Buffer,
}

fn invalid(reason: String) -> EngineError {
    EngineError::InvalidConfig { reason }
}

impl GpuSpatia {
    /// Uploads `model` (int8 or f32, as stored) and compiles its kernels.
    #[allow(clippy::result_large_err)]
    pub fn new(ctx: Arc<GpuContext>, model: &SpatiaHierarchyModel) -> Result<Self, EngineError> {
        model.validate()?;
        let m = &model.meta;
        let s = &m.spec;
        let cell_model = SpatiaCellModel::new(
            SpatiaCellMeta { format_version: SPATIA_FORMAT_VERSION, spec: s.clone(), classes: m.classes.clone(), quantization: m.quantization },
            model.cell.clone(),
        )?;
        let cell = GpuSpatiaCell::new(ctx.clone(), &cell_model)?;
        let gpu = &*ctx;
        let context = match &model.context {
            None => None,
            Some(c) => {
                let (d, side, ni) = (s.d_model, s.region_niches, &s.niche_image);
                compile_cross_attention(gpu, s.niche_queries(), 1, d, s.n_heads)?;
                compile_cross_attention(gpu, 1, s.levels.context_tokens(), d, s.n_heads)?;
                let tissue = match &c.tissue {
                    Some(t) => {
                        if model.is_int8() {
                            compile_layer_attention(gpu, side * side, d, s.n_heads, false)?;
                        } else {
                            compile_attention(gpu, side * side, d, s.n_heads)?;
                        }
                        let layers = t.layers.iter().enumerate().map(|(i, l)| upload_layer(gpu, l, &fuse_qkv(l), &format!("tissue.layers.{i}"))).collect::<Result<_, _>>()?;
                        Some((layers, upload_norm(gpu, &t.final_norm, "tissue.final_norm")?))
                    }
                    None => None,
                };
                Some(GpuContextLevels {
                    niche_vit: GpuQueries::upload(gpu, &c.niche.queries, ni, "niche.vit")?,
                    niche_cross: GpuCrossBlock::upload(gpu, &c.niche.cross, "niche.cross")?,
                    niche_norm: upload_norm(gpu, &c.niche.norm, "niche.norm")?,
                    tissue,
                    fusion: GpuCrossBlock::upload(gpu, &c.fusion, "fusion")?,
                    fusion_norm: upload_norm(gpu, &c.fusion_norm, "fusion_norm")?,
                    type_head: GpuLinear::upload(gpu, &c.type_head, "type_head")?,
                    composition_head: GpuLinear::upload(gpu, &c.composition_head, "composition_head")?,
                    pe: gpu.storage_init("tissue positional encoding", bytemuck::cast_slice(&grid_positional_encoding(side, d)))?,
                })
            }
        };
        ctx.take_error()?;
        Ok(Self { cell, context, meta: m.clone() })
    }

    /// [`Self::forward_region`] over every region of a flat layout, the plan and outputs of
    /// [`super::SpatiaCpu::forward_slide`] ([`SpatiaSlidePlan`]); one region's buffers on the
    /// GPU at a time.
    ///
    /// Errors: as `SpatiaCpu::forward_slide`, and the GPU's.
    pub async fn forward_slide(&self, x: &SpatiaSlideInput<'_>) -> Result<SpatiaSlideOutput, EngineError> {
        let plan = SpatiaSlidePlan::new(&self.meta, x)?;
        let mut out = plan.output();
        for i in 0..plan.len() {
            let r = self.forward_region(&plan.region(i).input()).await?;
            plan.scatter(i, &r, &mut out);
        }
        Ok(out)
    }

    /// The cell level alone (its chunking, its `forward`).
    pub fn cell_level(&self) -> &GpuSpatiaCell {
        &self.cell
    }

    /// One region's forward pass, the outputs of [`super::SpatiaCpu::forward_region`]; same
    /// input checks and errors.
    ///
    /// Never blocks on wasm32; natively it drives the device with `poll` while waiting.
    pub async fn forward_region(&self, x: &SpatiaRegionInput<'_>) -> Result<SpatiaRegionOutput, EngineError> {
        let cl = &self.cell;
        let s = &cl.spec;
        let (d, eps) = (s.d_model, cl.eps);
        let n = x.genes.len() / s.n_genes.max(1);
        check_inputs(s, x.genes, x.patches, n)?;
        let Some(c) = &self.context else {
            let out = cl.forward(x.genes, x.patches, n).await?;
            let logits = out.logits.ok_or_else(|| invalid("the cell-level model has no type head".into()))?;
            return Ok(SpatiaRegionOutput { z: out.z_cell.clone(), z_cell: out.z_cell, logits, z_niche: None, z_tissue: None, composition: None });
        };
        // The CPU engine's checks of the niche inputs (one function).
        let slot_niche = region_slots(s, x, n)?;
        let k = x.niche_slot.len();
        let side = s.region_niches;
        let s2 = side * side;
        if n > cl.max_chunk_cells {
            return Err(invalid(format!("the region has {n} cells, more than the {} one GPU chunk holds; use the CPU engine for it", cl.max_chunk_cells)));
        }
        cl.ctx.take_error()?;
        let ctx = &*cl.ctx;
        let tk = s.levels.context_tokens();
        let (g2n, classes) = (s.niche_queries(), c.type_head.out_dim);
        // CSR matrices of this region: niche means, slot placement, each cell's context rows.
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); k];
        for (ci, &nk) in x.cell_niche.iter().enumerate() {
            members[nk].push(ci as u32);
        }
        let (mut mo, mut mc, mut mw) = (vec![0u32], Vec::new(), Vec::new());
        for m in &members {
            mc.extend_from_slice(m);
            mw.extend(std::iter::repeat_n(1.0 / m.len().max(1) as f32, m.len()));
            mo.push(mc.len() as u32);
        }
        let a_mean = GpuCsr::upload(ctx, &mo, &mc, &mw, n.max(1), "SPATIA niche means")?;
        let (mut so, mut sc) = (vec![0u32], Vec::new());
        for nk in &slot_niche {
            if let Some(nk) = nk {
                sc.push(*nk as u32);
            }
            so.push(sc.len() as u32);
        }
        let a_slot = GpuCsr::upload(ctx, &so, &sc, &vec![1.0; sc.len()], k.max(1), "SPATIA tissue slots")?;
        // Context rows of cell i: z_niche of its niche (levels row nk), then its tissue slot
        // (levels row K + slot).
        let (mut co, mut cc) = (vec![0u32], Vec::new());
        for &nk in x.cell_niche {
            cc.push(nk as u32);
            co.push(cc.len() as u32);
            if tk == 2 {
                cc.push((k + x.niche_slot[nk]) as u32);
                co.push(cc.len() as u32);
            }
        }
        let a_ctx = GpuCsr::upload(ctx, &co, &cc, &vec![1.0; cc.len()], k + s2, "SPATIA fusion context")?;
        // Buffers.
        let cb = cl.chunk_buffers(n.max(1))?;
        ctx.queue.write_buffer(&cb.genes, 0, bytemuck::cast_slice(x.genes));
        cl.vit.write(ctx, &cb.vit, &cb.h, x.patches, n);
        let rb = RegionBuffers {
            niche_vit: c.niche_vit.buffers(ctx, k.max(1), "SPATIA niche ViT")?,
            t: ctx.storage_zeroed("SPATIA niche tokens", k.max(1) * g2n * d)?,
            niche_cross: c.niche_cross.buffers(ctx, k.max(1), g2n, 1, "SPATIA niche cross block")?,
            mean: ctx.storage_zeroed("SPATIA niche mean z_cell", k.max(1) * d)?,
            pooled: ctx.storage_zeroed("SPATIA niche pooled", k.max(1) * d)?,
            levels: ctx.storage_zeroed("SPATIA z_niche ‖ tissue slots", (k + s2) * d)?,
            tissue: match &c.tissue {
                Some(_) => {
                    let mut bias = vec![0.0f32; s.n_heads * s2 * s2];
                    for row in bias.chunks_exact_mut(s2) {
                        for (key, b) in row.iter_mut().enumerate() {
                            if slot_niche[key].is_none() {
                                *b = TISSUE_MASKED_SCORE;
                            }
                        }
                    }
                    Some(TissueBuffers {
                        h: ctx.storage_zeroed("SPATIA tissue stream", s2 * d)?,
                        a: ctx.storage_zeroed("SPATIA tissue attention out", s2 * d)?,
                        qkv: ctx.storage_zeroed("SPATIA tissue qkv", s2 * 3 * d)?,
                        ff: ctx.storage_zeroed("SPATIA tissue ffn hidden", s2 * s.d_ff)?,
                        bias: ctx.storage_init("SPATIA tissue empty-slot bias", bytemuck::cast_slice(&bias))?,
                        y: ctx.storage_zeroed("SPATIA tissue output", s2 * d)?,
                    })
                }
                None => None,
            },
            ctx_rows: ctx.storage_zeroed("SPATIA fusion context", n.max(1) * tk * d)?,
            zf: ctx.storage_zeroed("SPATIA fused stream", n.max(1) * d)?,
            fusion_cross: c.fusion.buffers(ctx, n.max(1), 1, tk, "SPATIA fusion cross block")?,
            z: ctx.storage_zeroed("SPATIA z", n.max(1) * d)?,
            logits: ctx.storage_zeroed("SPATIA logits", n.max(1) * classes)?,
            composition: ctx.storage_zeroed("SPATIA composition", k.max(1) * classes)?,
            readback: ctx.readback_buffer("SPATIA region readback", 2 * n * d + n * classes + (k + s2) * d + k * classes),
        };
        c.niche_vit.write(ctx, &rb.niche_vit, &rb.t, x.niche_images, k);
        // The launches, in order.
        let mut ops: Vec<Op> = Vec::new();
        let mut plan = Vec::new();
        cl.push_z_cell(&mut plan, &cb, n)?;
        c.niche_vit.push(&mut plan, ctx, &rb.niche_vit, k, &rb.t, eps)?;
        plan.push(sparse_rows_dispatch(ctx, &a_mean, &cb.z, None, &rb.mean, d)?);
        c.niche_cross.push(&mut plan, ctx, &rb.t, &rb.mean, &rb.niche_cross, k, g2n, 1, s.n_heads, eps)?;
        plan.push(mean_pool_dispatch(ctx, &rb.t, &rb.pooled, k, g2n, d)?);
        plan.push(layernorm_dispatch(ctx, &rb.pooled, k, &c.niche_norm, &rb.levels, eps)?);
        if let (Some((layers, final_norm)), Some(tb)) = (&c.tissue, &rb.tissue) {
            plan.push(sparse_rows_dispatch(ctx, &a_slot, &rb.levels, Some(&c.pe), &tb.h, d)?);
            let lb = LayerBuffers { h: &tb.h, a: &tb.a, qkv: &tb.qkv, ff: &tb.ff, bias: &tb.bias, flash: false, dot4: false, subgroups: false, f16: false };
            for l in layers {
                push_layer(&mut plan, ctx, l, &lb, 1, s2, d, s.n_heads, eps)?;
            }
            plan.push(layernorm_dispatch(ctx, &tb.h, s2, final_norm, &tb.y, eps)?);
            ops.extend(plan.drain(..).map(Op::Run));
            ops.push(Op::Copy { from: tb.y.clone(), to: rb.levels.clone(), to_offset: (k * d * 4) as u64, bytes: (s2 * d * 4) as u64 });
        }
        plan.push(sparse_rows_dispatch(ctx, &a_ctx, &rb.levels, None, &rb.ctx_rows, d)?);
        ops.extend(plan.drain(..).map(Op::Run));
        if n > 0 {
            ops.push(Op::Copy { from: cb.z.clone(), to: rb.zf.clone(), to_offset: 0, bytes: (n * d * 4) as u64 });
        }
        c.fusion.push(&mut plan, ctx, &rb.zf, &rb.ctx_rows, &rb.fusion_cross, n, 1, tk, s.n_heads, eps)?;
        plan.push(layernorm_dispatch(ctx, &rb.zf, n, &c.fusion_norm, &rb.z, eps)?);
        plan.push(matmul_dispatch(ctx, &rb.z, n, &c.type_head, &rb.logits, Activation::None, false)?);
        plan.push(matmul_dispatch(ctx, &rb.levels, k, &c.composition_head, &rb.composition, Activation::None, false)?);
        ops.extend(plan.drain(..).map(Op::Run));
        // One readback: z_cell ‖ z ‖ logits ‖ levels ‖ composition.
        let parts: [(&wgpu::Buffer, usize); 5] = [(&cb.z, n * d), (&rb.z, n * d), (&rb.logits, n * classes), (&rb.levels, (k + s2) * d), (&rb.composition, k * classes)];
        let mut offset = 0u64;
        for (buf, len) in parts {
            if len > 0 {
                ops.push(Op::Copy { from: buf.clone(), to: rb.readback.clone(), to_offset: offset, bytes: (len * 4) as u64 });
            }
            offset += (len * 4) as u64;
        }
        let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("SPATIA region") });
        record(&mut encoder, &ops);
        let submission = ctx.queue.submit([encoder.finish()]);
        let total = 2 * n * d + n * classes + (k + s2) * d + k * classes;
        let values = ctx.map_read(&rb.readback, total, submission).await?;
        cl.ctx.take_error()?;
        let (z_cell, rest) = values.split_at(n * d);
        let (z, rest) = rest.split_at(n * d);
        let (logits, rest) = rest.split_at(n * classes);
        let (levels, composition) = rest.split_at((k + s2) * d);
        let z_niche = levels[..k * d].to_vec();
        let z_tissue = c.tissue.as_ref().map(|_| x.niche_slot.iter().flat_map(|&sl| levels[(k + sl) * d..(k + sl + 1) * d].iter().copied()).collect());
        Ok(SpatiaRegionOutput {
            z_cell: z_cell.to_vec(),
            z: z.to_vec(),
            logits: logits.to_vec(),
            z_niche: Some(z_niche),
            z_tissue,
            composition: Some(composition.to_vec()),
        })
    }
}

/// The CPU forward's input checks ([`SpatiaCellModel::forward`]), word for word.
#[allow(clippy::result_large_err)]
fn check_inputs(s: &SpatiaSpec, genes: &[f32], patches: &[f32], n: usize) -> Result<(), EngineError> {
    let px = cell_pixels(s);
    if genes.len() != n * s.n_genes {
        return Err(EngineError::InputShape { what: format!("SPATIA genes [cells={n}, genes={}]", s.n_genes), expected: n * s.n_genes, found: genes.len() });
    }
    if patches.len() != n * px {
        let side = if s.images { s.cell_image.image_size } else { 0 };
        return Err(EngineError::InputShape { what: format!("SPATIA patches [cells={n}, {side}, {side}] (images: {})", s.images), expected: n * px, found: patches.len() });
    }
    Ok(())
}

/// The largest chunk for which every per-chunk buffer fits `max_binding` bytes and every
/// launch fits the per-dimension workgroup limit (matmuls: 64 rows per workgroup over
/// `cells·max(T, g²)` rows; the other kernels fold into two dimensions).
fn max_chunk_cells(s: &SpatiaSpec, max_binding: u64) -> Result<usize, GpuError> {
    let ci = &s.cell_image;
    let (d, t, g2) = (s.d_model, s.gene_tokens, s.cell_queries());
    let vit = usize::from(s.images);
    let per_cell = [
        ("genes [G]", s.n_genes),
        ("ViT patch rows [g², p²+g²]", vit * g2 * ci.patch_row_width()),
        ("keys ‖ values [T, 2D]", t * 2 * d),
        ("ViT qkv [g², 3W]", vit * g2 * 3 * ci.width),
        ("ViT ffn hidden [g², Fv]", vit * g2 * ci.d_ff),
        ("cross ffn hidden [g², F]", g2 * s.d_ff),
        ("image tokens [g², D]", g2 * d),
        ("logits [C]", s.n_classes),
    ];
    let (what, widest) = per_cell.into_iter().max_by_key(|&(_, v)| v).unwrap_or(("genes [G]", 1));
    let bytes = (widest.max(1) * 4) as u64;
    let by_memory = (max_binding / bytes) as usize;
    if by_memory == 0 {
        return Err(GpuError::TooLarge { what: format!("SPATIA {what} of one cell"), bytes, limit: max_binding });
    }
    let by_dispatch = TILE_M * MAX_WORKGROUPS_PER_DIM as usize / t.max(g2).max(1);
    Ok(by_memory.min(by_dispatch))
}
