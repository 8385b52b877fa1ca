//! `kernels/attention_out.wgsl`: multi-head self-attention fused with its int8 output
//! projection and the residual add, `y[rows, out] += attention(qkv) · woᵀ + b`.

use super::attention::score_scale;
use super::context::{check_len, Dispatch, GpuContext, Kernel};
use super::error::GpuError;
use super::matmul::{GpuLinear, TILE_M, TILE_N};
use super::reduce4::enables;
use crate::quant::Linear;

const TEMPLATE: &str = include_str!("../../kernels/attention_out.wgsl");
const HEAD_DOT_SERIAL: &str = include_str!("../../kernels/head_dot_serial.wgsl");
const HEAD_DOT_SUBGROUP: &str = include_str!("../../kernels/head_dot_subgroup.wgsl");

/// Largest head width the fused kernel takes: its workgroup memory is
/// `(64 * head_dim + 16 * 64) * 4` bytes, within WebGPU's 16 KiB up to 48.
pub const MAX_FUSED_HEAD_DIM: usize = 48;

/// Whether the fused kernel handles `d_model` split into `n_heads` heads (else the classifier
/// runs `attention.wgsl` and a residual matmul).
pub fn supports(d_model: usize, n_heads: usize) -> bool {
    n_heads > 0 && d_model.is_multiple_of(n_heads) && d_model / n_heads <= MAX_FUSED_HEAD_DIM
}

/// The kernel specialised to `tokens` tokens of width `d_model` in `n_heads` heads, the
/// scores' dot products split over 4 invocations and combined by subgroup shuffles when
/// `subgroups` (`kernels/head_dot_*.wgsl`).
pub(crate) fn kernel(tokens: usize, d_model: usize, n_heads: usize, subgroups: bool) -> Kernel {
    let head_dim = d_model / n_heads.max(1);
    Kernel::new("attention_out", TEMPLATE)
        .constant("ENABLES", enables(false, subgroups))
        .constant("HEAD_DOT", if subgroups { HEAD_DOT_SUBGROUP } else { HEAD_DOT_SERIAL })
        .constant("TOKENS", tokens)
        .constant("D_MODEL", d_model)
        .constant("N_HEADS", n_heads)
        .constant("HEAD_DIM", head_dim)
        .constant("HEAD_SUB", head_dim.div_ceil(4))
        // `{:?}` prints an exact, round-trippable literal with a decimal point or exponent.
        .constant("SCALE", format!("{:?}", score_scale(head_dim)))
}

/// Builds the pipeline for this shape now (at model upload), so the first forward pass
/// does not compile it.
pub(crate) fn compile_attention_out(ctx: &GpuContext, tokens: usize, d_model: usize, n_heads: usize, subgroups: bool) -> Result<(), GpuError> {
    ctx.pipeline(&kernel(tokens, d_model, n_heads, subgroups)).map(|_| ())
}

/// One fused launch over `n_cells` cells of `tokens` tokens: reads `qkv`
/// `[n_cells*tokens, 3*d_model]` and the score bias `[n_heads, tokens, tokens]` (a zero
/// buffer for none), adds `attention · woᵀ + b` into `y` `[n_cells*tokens, wo.out_dim]`;
/// the subgroup variant when `subgroups` ([`GpuError::Unsupported`] if the context lacks
/// them).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_out_dispatch(
    ctx: &GpuContext,
    qkv: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    wo: &GpuLinear,
    y: &wgpu::Buffer,
    n_cells: usize,
    tokens: usize,
    d_model: usize,
    n_heads: usize,
    subgroups: bool,
) -> Result<Dispatch, GpuError> {
    if subgroups {
        ctx.require_subgroups()?;
    }
    if !supports(d_model, n_heads) {
        return Err(GpuError::InputShape {
            what: format!(
                "attention_out: n_heads {n_heads} must divide d_model {d_model} into heads of at most {MAX_FUSED_HEAD_DIM}"
            ),
            expected: MAX_FUSED_HEAD_DIM,
            found: d_model / n_heads.max(1),
        });
    }
    wo.require_int8()?;
    check_len(|| format!("attention_out projection in_dim (d_model={d_model})"), wo.in_dim, d_model)?;
    let rows = n_cells * tokens;
    let (row_tiles, col_tiles) = (rows.div_ceil(TILE_M), wo.out_dim.div_ceil(TILE_N));
    let max = super::context::MAX_WORKGROUPS_PER_DIM as usize;
    if row_tiles > max || col_tiles > max {
        return Err(GpuError::DispatchTooLarge {
            what: format!("attention_out over {rows} rows"),
            workgroups: row_tiles.max(col_tiles) as u64,
            limit: max as u64,
        });
    }
    let pipeline = ctx.pipeline(&kernel(tokens, d_model, n_heads, subgroups))?;
    let params = ctx.uniform("attention_out params", [rows as u32, wo.in_words as u32, wo.out_dim as u32, 0]);
    let bind_group = ctx.bind(&pipeline, "attention_out", &[&params, qkv, bias, &wo.words, &wo.scale, &wo.bias, y]);
    Ok(Dispatch {
        pipeline,
        bind_group,
        workgroups: [col_tiles.max(1) as u32, row_tiles.max(1) as u32, 1],
    })
}

/// Runs `kernels/attention_out.wgsl` once: `qkv` `[n_cells*tokens, 3*d_model]`, optional
/// score bias `[n_heads, tokens, tokens]`, int8 output projection `wo` `[out, d_model]`,
/// residual `[n_cells*tokens, out]`; returns `residual + attention · woᵀ + b`. Compare with
/// `engine::ops::attention_out_reference`.
#[allow(clippy::too_many_arguments)]
pub async fn attention_out(
    ctx: &GpuContext,
    qkv: &[f32],
    bias: Option<&[f32]>,
    n_cells: usize,
    tokens: usize,
    d_model: usize,
    n_heads: usize,
    wo: &Linear,
    residual: &[f32],
) -> Result<Vec<f32>, GpuError> {
    attention_out_with(ctx, qkv, bias, n_cells, tokens, d_model, n_heads, wo, residual, false).await
}

/// [`attention_out()`](fn@attention_out) with the subgroup variant of the scores when
/// `subgroups` ([`GpuError::Unsupported`] if the context lacks them).
#[allow(clippy::too_many_arguments)]
pub async fn attention_out_with(
    ctx: &GpuContext,
    qkv: &[f32],
    bias: Option<&[f32]>,
    n_cells: usize,
    tokens: usize,
    d_model: usize,
    n_heads: usize,
    wo: &Linear,
    residual: &[f32],
    subgroups: bool,
) -> Result<Vec<f32>, GpuError> {
    let rows = n_cells * tokens;
    check_len(|| format!("attention_out qkv [cells*T={rows}, 3D={}]", 3 * d_model), qkv.len(), rows * 3 * d_model)?;
    check_len(|| format!("attention_out residual [cells*T={rows}, out={}]", wo.out_dim), residual.len(), rows * wo.out_dim)?;
    let n_bias = n_heads * tokens * tokens;
    if let Some(b) = bias {
        check_len(|| format!("attention_out bias [H={n_heads}, T={tokens}, T={tokens}]"), b.len(), n_bias)?;
    }
    let gw = GpuLinear::upload(ctx, wo, "attention_out.o")?;
    let qb = ctx.storage_init("attention_out qkv", bytemuck::cast_slice(qkv))?;
    let bb = match bias {
        Some(b) => ctx.storage_init("attention_out bias", bytemuck::cast_slice(b))?,
        None => ctx.storage_zeroed("attention_out bias (none)", n_bias)?,
    };
    let yb = ctx.storage_init("attention_out y", bytemuck::cast_slice(residual))?;
    let d = attention_out_dispatch(ctx, &qb, &bb, &gw, &yb, n_cells, tokens, d_model, n_heads, subgroups)?;
    ctx.run_and_read("attention_out", &[d], &yb, rows * wo.out_dim).await
}
