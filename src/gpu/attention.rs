//! `kernels/attention.wgsl`: multi-head self-attention over each cell's `T` tokens.

use super::context::{check_len, fold_workgroups, Dispatch, GpuContext, Kernel};
use super::error::GpuError;

/// Invocations per workgroup.
const WG: usize = 64;

const TEMPLATE: &str = include_str!("../../kernels/attention.wgsl");

/// `1 / sqrt(head_dim)`, the score scale (shared by kernel and reference).
pub(crate) fn score_scale(head_dim: usize) -> f32 {
    1.0 / (head_dim as f32).sqrt()
}

/// The kernel specialised to `tokens` tokens of width `d_model` in `n_heads` heads.
pub(crate) fn kernel(tokens: u32, d_model: u32, n_heads: u32) -> Kernel {
    let head_dim = (d_model / n_heads.max(1)) as usize;
    Kernel::new("attention", TEMPLATE)
        .constant("WG", WG)
        .constant("TOKENS", tokens)
        .constant("D_MODEL", d_model)
        .constant("N_HEADS", n_heads)
        .constant("HEAD_DIM", head_dim)
        // `{:?}` prints an exact, round-trippable literal with a decimal point or exponent.
        .constant("SCALE", format!("{:?}", score_scale(head_dim)))
}

/// Builds the attention pipeline for `tokens` tokens of width `d_model` over `n_heads` heads
/// now (e.g. when a model is uploaded), so the first forward pass does not compile it.
pub(crate) fn compile_attention(ctx: &GpuContext, tokens: usize, d_model: usize, n_heads: usize) -> Result<(), GpuError> {
    ctx.pipeline(&kernel(tokens as u32, d_model as u32, n_heads as u32))
        .map(|_| ())
}

/// One attention launch over `n_cells` cells, reading `qkv` and the score bias `bias`
/// `[n_heads, tokens, tokens]` (a zero buffer for none) and writing `out`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_dispatch(
    ctx: &GpuContext,
    qkv: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    out: &wgpu::Buffer,
    n_cells: usize,
    tokens: usize,
    d_model: usize,
    n_heads: usize,
) -> Result<Dispatch, GpuError> {
    let pipeline = ctx.pipeline(&kernel(tokens as u32, d_model as u32, n_heads as u32))?;
    let params = ctx.uniform("attention params", [n_cells as u32, 0, 0, 0]);
    let bind_group = ctx.bind(&pipeline, "attention", &[&params, qkv, out, bias]);
    let invocations = n_cells * n_heads * tokens;
    let workgroups = fold_workgroups(invocations.div_ceil(WG), "attention")?;
    Ok(Dispatch {
        pipeline,
        bind_group,
        workgroups,
    })
}

/// Runs `kernels/attention.wgsl` once on `qkv` `[n_cells * tokens, 3 * d_model]` without a
/// bias; returns `[n_cells * tokens, d_model]`. Compare with `engine::ops::attention_reference`.
pub async fn attention(
    ctx: &GpuContext,
    qkv: &[f32],
    n_cells: usize,
    tokens: usize,
    d_model: usize,
    n_heads: usize,
) -> Result<Vec<f32>, GpuError> {
    attention_biased(ctx, qkv, None, n_cells, tokens, d_model, n_heads).await
}

/// Runs `kernels/attention.wgsl` once on `qkv` `[n_cells * tokens, 3 * d_model]` with an
/// optional additive score bias `[n_heads, tokens, tokens]`; returns
/// `[n_cells * tokens, d_model]`. Compare with `engine::ops::attention_biased_reference`.
pub async fn attention_biased(
    ctx: &GpuContext,
    qkv: &[f32],
    bias: Option<&[f32]>,
    n_cells: usize,
    tokens: usize,
    d_model: usize,
    n_heads: usize,
) -> Result<Vec<f32>, GpuError> {
    if n_heads == 0 || !d_model.is_multiple_of(n_heads) {
        return Err(GpuError::InputShape {
            what: format!("attention: n_heads {n_heads} must divide d_model {d_model}"),
            expected: d_model,
            found: n_heads,
        });
    }
    check_len(
        || {
            format!(
                "attention qkv [cells*T={}, 3D={}]",
                n_cells * tokens,
                3 * d_model
            )
        },
        qkv.len(),
        n_cells * tokens * 3 * d_model,
    )?;
    let n_bias = n_heads * tokens * tokens;
    if let Some(b) = bias {
        check_len(|| format!("attention bias [H={n_heads}, T={tokens}, T={tokens}]"), b.len(), n_bias)?;
    }
    let len = n_cells * tokens * d_model;
    let qb = ctx.storage_init("attention qkv", bytemuck::cast_slice(qkv))?;
    let bb = match bias {
        Some(b) => ctx.storage_init("attention bias", bytemuck::cast_slice(b))?,
        None => ctx.storage_zeroed("attention bias (none)", n_bias)?,
    };
    let ob = ctx.storage_zeroed("attention out", len)?;
    let d = attention_dispatch(ctx, &qb, &bb, &ob, n_cells, tokens, d_model, n_heads)?;
    ctx.run_and_read("attention", &[d], &ob, len).await
}
