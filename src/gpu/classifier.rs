//! The whole gene-only classifier on the GPU: weights uploaded once, cells streamed in chunks.

use std::sync::Arc;

use super::attention::attention_dispatch;
use super::context::{check_len, Dispatch, GpuContext, KernelKey, MAX_WORKGROUPS_PER_DIM};
use super::error::GpuError;
use super::layernorm::{layernorm_dispatch, GpuLayerNorm};
use super::matmul::{matmul_dispatch, Activation, GpuLinear, TILE_M};
use super::mean_pool::mean_pool_dispatch;
use crate::engine::cpu::PreparedWeights;
use crate::engine::{ClassifierConfig, EngineModel};

/// Default number of cells per chunk (one command buffer with all layers per chunk).
pub const DEFAULT_CHUNK_CELLS: usize = 8192;

/// One encoder layer on the GPU (q, k, v fused into one `[3D, D]` matmul).
struct GpuEncoderLayer {
    norm1: GpuLayerNorm,
    qkv: GpuLinear,
    o: GpuLinear,
    norm2: GpuLayerNorm,
    fc1: GpuLinear,
    fc2: GpuLinear,
}

/// The int8 gene-only classifier resident on a [`GpuContext`].
///
/// Upload-time rewrites (exact): `token_type` `[T, D]` is folded into the gene-embedding
/// bias `[T*D]`, and each layer's q, k, v are stacked into one `[3D, D]` int8 layer (scales
/// are per output row, so stacking changes nothing).
///
/// [`logits`](Self::logits) streams cells in chunks of [`chunk_cells`](Self::chunk_cells):
/// each chunk is one upload, one command buffer holding every layer's dispatches, and one
/// copy into a mappable buffer; two readback buffers alternate so the next chunk is
/// submitted before the previous one is read.
pub struct GpuClassifier {
    ctx: Arc<GpuContext>,
    config: ClassifierConfig,
    eps: f32,
    gene_embedding: GpuLinear,
    layers: Vec<GpuEncoderLayer>,
    final_norm: GpuLayerNorm,
    head: GpuLinear,
    chunk_cells: usize,
    max_chunk_cells: usize,
}

/// Per-call activation buffers, sized for `cells` cells.
struct WorkBuffers {
    /// Normalised input `[cells, G]`.
    x: wgpu::Buffer,
    /// Residual stream `[cells*T, D]`.
    h: wgpu::Buffer,
    /// LayerNorm output, reused for the attention output `[cells*T, D]`.
    a: wgpu::Buffer,
    /// Fused q|k|v `[cells*T, 3D]`.
    qkv: wgpu::Buffer,
    /// Feed-forward hidden `[cells*T, F]`.
    ff: wgpu::Buffer,
    /// Pooled tokens `[cells, D]`.
    pooled: wgpu::Buffer,
    /// Logits `[cells, C]`.
    logits: wgpu::Buffer,
}

impl GpuClassifier {
    /// Uploads `model`. An f32 model is quantised first with
    /// [`EngineModel::quantize_int8`] (per-output-channel symmetric int8), so its logits
    /// match the int8 model's, not the f32 one's.
    ///
    /// Errors: an invalid model ([`GpuError::Model`]), a layer too large for one storage
    /// binding ([`GpuError::TooLarge`]), kernel build failures.
    pub fn new(ctx: Arc<GpuContext>, model: &EngineModel) -> Result<Self, GpuError> {
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
        let gene_embedding = GpuLinear::upload(gpu, &prepared.gene_embedding, "gene_embedding")?;
        let mut layers = Vec::with_capacity(c.n_layers);
        for (i, (l, qkv)) in w.layers.iter().zip(&prepared.qkv).enumerate() {
            let p = format!("layers.{i}");
            layers.push(GpuEncoderLayer {
                norm1: GpuLayerNorm::upload(gpu, &l.norm1, &format!("{p}.norm1"))?,
                qkv: GpuLinear::upload(gpu, qkv, &format!("{p}.attn.qkv"))?,
                o: GpuLinear::upload(gpu, &l.o, &format!("{p}.attn.o"))?,
                norm2: GpuLayerNorm::upload(gpu, &l.norm2, &format!("{p}.norm2"))?,
                fc1: GpuLinear::upload(gpu, &l.fc1, &format!("{p}.ffn.fc1"))?,
                fc2: GpuLinear::upload(gpu, &l.fc2, &format!("{p}.ffn.fc2"))?,
            });
        }
        let final_norm = GpuLayerNorm::upload(gpu, &w.final_norm, "final_norm")?;
        let head = GpuLinear::upload(gpu, &w.head, "head")?;
        // Compile the model-specific attention kernel now rather than on the first call.
        ctx.pipeline(KernelKey::Attention {
            tokens: c.n_tokens() as u32,
            d_model: c.d_model as u32,
            n_heads: c.n_heads as u32,
        })?;
        ctx.take_error()?;

        Ok(Self {
            eps: c.layer_norm_eps as f32,
            chunk_cells: DEFAULT_CHUNK_CELLS.min(max_chunk_cells),
            max_chunk_cells,
            config: c,
            ctx,
            gene_embedding,
            layers,
            final_norm,
            head,
        })
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

    /// The model's hyperparameters.
    pub fn config(&self) -> &ClassifierConfig {
        &self.config
    }

    /// The GPU context the weights live on.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// Logits `[cells, C]` for normalised inputs `x_norm` `[cells, G]` (see
    /// [`crate::engine::normalise_log1p_cp10k`]).
    ///
    /// Never blocks on wasm32; natively it drives the device with `poll` while waiting.
    pub async fn logits(&self, x_norm: &[f32], n_cells: usize) -> Result<Vec<f32>, GpuError> {
        let c = &self.config;
        check_len(
            || format!("x_norm [cells={n_cells}, genes={}]", c.n_inputs()),
            x_norm.len(),
            n_cells * c.n_inputs(),
        )?;
        if n_cells == 0 {
            return Ok(Vec::new());
        }
        self.ctx.take_error()?;
        let ctx = &*self.ctx;
        let cap = n_cells.min(self.chunk_cells);
        let work = self.work_buffers(cap)?;
        let full_plan = self.plan(&work, cap)?;
        let readback = [
            ctx.readback_buffer("logits readback 0", cap * c.n_classes),
            ctx.readback_buffer("logits readback 1", cap * c.n_classes),
        ];

        let mut out = vec![0.0f32; n_cells * c.n_classes];
        // (readback slot, submission, first cell, cells) of the chunk submitted last.
        let mut pending: Option<(usize, wgpu::SubmissionIndex, usize, usize)> = None;
        for (k, start) in (0..n_cells).step_by(cap).enumerate() {
            let n = cap.min(n_cells - start);
            let partial_plan;
            let plan = if n == cap {
                &full_plan
            } else {
                partial_plan = self.plan(&work, n)?;
                &partial_plan
            };
            ctx.queue.write_buffer(
                &work.x,
                0,
                bytemuck::cast_slice(&x_norm[start * c.n_inputs()..(start + n) * c.n_inputs()]),
            );
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
            let slot = k % 2;
            encoder.copy_buffer_to_buffer(
                &work.logits,
                0,
                &readback[slot],
                0,
                (n * c.n_classes * 4) as u64,
            );
            let submission = ctx.queue.submit([encoder.finish()]);
            if let Some(p) = pending.take() {
                self.collect(&readback, p, &mut out).await?;
            }
            pending = Some((slot, submission, start, n));
        }
        if let Some(p) = pending {
            self.collect(&readback, p, &mut out).await?;
        }
        ctx.take_error()?;
        Ok(out)
    }

    /// Waits for a chunk's logits and copies them into `out`.
    async fn collect(
        &self,
        readback: &[wgpu::Buffer; 2],
        pending: (usize, wgpu::SubmissionIndex, usize, usize),
        out: &mut [f32],
    ) -> Result<(), GpuError> {
        let (slot, submission, start, n) = pending;
        let classes = self.config.n_classes;
        let values = self
            .ctx
            .map_read(&readback[slot], n * classes, submission)
            .await?;
        out[start * classes..(start + n) * classes].copy_from_slice(&values);
        Ok(())
    }

    fn work_buffers(&self, cells: usize) -> Result<WorkBuffers, GpuError> {
        let c = &self.config;
        let rows = cells * c.n_tokens();
        let ctx = &*self.ctx;
        Ok(WorkBuffers {
            x: ctx.storage_zeroed("x_norm chunk", cells * c.n_inputs())?,
            h: ctx.storage_zeroed("residual stream", rows * c.d_model)?,
            a: ctx.storage_zeroed("normed / attention out", rows * c.d_model)?,
            qkv: ctx.storage_zeroed("qkv", rows * 3 * c.d_model)?,
            ff: ctx.storage_zeroed("ffn hidden", rows * c.d_ff)?,
            pooled: ctx.storage_zeroed("pooled", cells * c.d_model)?,
            logits: ctx.storage_zeroed("logits", cells * c.n_classes)?,
        })
    }

    /// All dispatches of the forward pass for a chunk of `cells` cells, in order.
    fn plan(&self, b: &WorkBuffers, cells: usize) -> Result<Vec<Dispatch>, GpuError> {
        let c = &self.config;
        let ctx = &*self.ctx;
        let rows = cells * c.n_tokens();
        let (t, d, eps) = (c.n_tokens(), c.d_model, self.eps);
        let none = Activation::None;
        let mut plan = Vec::with_capacity(3 + 7 * self.layers.len() + 3);
        // [cells, T*D] written as [cells*T, D]; token_type is in the bias.
        plan.push(matmul_dispatch(
            ctx,
            &b.x,
            cells,
            &self.gene_embedding,
            &b.h,
            none,
            false,
        )?);
        for l in &self.layers {
            plan.push(layernorm_dispatch(ctx, &b.h, rows, &l.norm1, &b.a, eps)?);
            plan.push(matmul_dispatch(
                ctx, &b.a, rows, &l.qkv, &b.qkv, none, false,
            )?);
            plan.push(attention_dispatch(
                ctx, &b.qkv, &b.a, cells, t, d, c.n_heads,
            )?);
            plan.push(matmul_dispatch(ctx, &b.a, rows, &l.o, &b.h, none, true)?);
            plan.push(layernorm_dispatch(ctx, &b.h, rows, &l.norm2, &b.a, eps)?);
            plan.push(matmul_dispatch(
                ctx,
                &b.a,
                rows,
                &l.fc1,
                &b.ff,
                Activation::Gelu,
                false,
            )?);
            plan.push(matmul_dispatch(ctx, &b.ff, rows, &l.fc2, &b.h, none, true)?);
        }
        plan.push(layernorm_dispatch(
            ctx,
            &b.h,
            rows,
            &self.final_norm,
            &b.a,
            eps,
        )?);
        plan.push(mean_pool_dispatch(ctx, &b.a, &b.pooled, cells, t, d)?);
        plan.push(matmul_dispatch(
            ctx, &b.pooled, cells, &self.head, &b.logits, none, false,
        )?);
        Ok(plan)
    }
}

/// The largest chunk for which every per-chunk buffer fits `max_binding` bytes and every
/// matmul fits the workgroup-count limit.
fn max_chunk_cells(c: &ClassifierConfig, max_binding: u64) -> Result<usize, GpuError> {
    let t = c.n_tokens();
    let per_cell_bytes = [
        ("input x_norm [cells, G]", c.n_inputs()),
        ("residual stream [cells*T, D]", t * c.d_model),
        ("qkv [cells*T, 3D]", t * 3 * c.d_model),
        ("ffn hidden [cells*T, F]", t * c.d_ff),
        ("logits [cells, C]", c.n_classes),
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
    let by_dispatch = TILE_M * MAX_WORKGROUPS_PER_DIM as usize / t.max(1);
    Ok(by_memory.min(by_dispatch))
}
