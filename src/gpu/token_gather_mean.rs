//! `kernels/token_gather_mean.wgsl`: mean over a subset of each cell's tokens (the morphology
//! ViT's centre tokens), written into chosen columns of a wider output row.

use super::context::{check_len, fold_workgroups, Dispatch, GpuContext, Kernel};
use super::error::GpuError;

/// Invocations per workgroup.
const WG: usize = 64;

const TEMPLATE: &str = include_str!("../../kernels/token_gather_mean.wgsl");

/// The kernel specialised to `tokens` per cell of width `dim`.
pub(crate) fn kernel(tokens: u32, dim: u32) -> Kernel {
    Kernel::new("token_gather_mean", TEMPLATE)
        .constant("WG", WG)
        .constant("TOKENS", tokens)
        .constant("DIM", dim)
}

/// One launch: `out` rows of `out_stride` floats get columns `out_offset..out_offset+dim`.
/// `idx` is a `u32` storage buffer of `k` token indices.
#[allow(clippy::too_many_arguments)]
pub(crate) fn token_gather_mean_dispatch(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    idx: &wgpu::Buffer,
    k: usize,
    out: &wgpu::Buffer,
    n_cells: usize,
    tokens: usize,
    dim: usize,
    out_stride: usize,
    out_offset: usize,
) -> Result<Dispatch, GpuError> {
    let pipeline = ctx.pipeline(&kernel(tokens as u32, dim as u32))?;
    let params = ctx.uniform(
        "token_gather_mean params",
        [n_cells as u32, k as u32, out_stride as u32, out_offset as u32],
    );
    let bind_group = ctx.bind(&pipeline, "token_gather_mean", &[&params, x, idx, out]);
    Ok(Dispatch {
        pipeline,
        bind_group,
        workgroups: fold_workgroups((n_cells * dim).div_ceil(WG), "token_gather_mean")?,
    })
}

/// Runs `kernels/token_gather_mean.wgsl` once and returns the whole output `out_init` after
/// the kernel wrote its columns. Compare with `engine::ops::token_gather_mean_reference`.
#[allow(clippy::too_many_arguments)]
pub async fn token_gather_mean(
    ctx: &GpuContext,
    x: &[f32],
    n_cells: usize,
    tokens: usize,
    dim: usize,
    idx: &[usize],
    out_init: &[f32],
    out_stride: usize,
    out_offset: usize,
) -> Result<Vec<f32>, GpuError> {
    check_len(
        || format!("token_gather_mean x [cells={n_cells}, T={tokens}, D={dim}]"),
        x.len(),
        n_cells * tokens * dim,
    )?;
    check_len(
        || format!("token_gather_mean out [cells={n_cells}, stride={out_stride}]"),
        out_init.len(),
        n_cells * out_stride,
    )?;
    if idx.is_empty() || idx.iter().any(|&t| t >= tokens) || out_offset + dim > out_stride {
        return Err(GpuError::InputShape {
            what: format!(
                "token_gather_mean: indices {idx:?} must be non-empty and < {tokens}, and columns \
                 {out_offset}..{} must fit a row of {out_stride}",
                out_offset + dim
            ),
            expected: tokens,
            found: idx.iter().copied().max().unwrap_or(0),
        });
    }
    let xb = ctx.storage_init("token_gather_mean x", bytemuck::cast_slice(x))?;
    let idx_u32: Vec<u32> = idx.iter().map(|&t| t as u32).collect();
    let ib = ctx.storage_init("token_gather_mean idx", bytemuck::cast_slice(&idx_u32))?;
    let ob = ctx.storage_init("token_gather_mean out", bytemuck::cast_slice(out_init))?;
    let d = token_gather_mean_dispatch(ctx, &xb, &ib, idx.len(), &ob, n_cells, tokens, dim, out_stride, out_offset)?;
    ctx.run_and_read("token_gather_mean", &[d], &ob, n_cells * out_stride).await
}
