//! `kernels/mean_pool.wgsl`: mean over each cell's tokens, `[n, T, D] → [n, D]`.

use super::context::{check_len, fold_workgroups, Dispatch, GpuContext, Kernel};
use super::error::GpuError;

/// Invocations per workgroup.
const WG: usize = 64;

const TEMPLATE: &str = include_str!("../../kernels/mean_pool.wgsl");

/// The mean-pool kernel (one specialisation).
pub(crate) fn kernel() -> Kernel {
    Kernel::new("mean_pool", TEMPLATE).constant("WG", WG)
}

/// One mean-pool launch: `out[n_cells, dim] = mean_t x[n_cells, tokens, dim]`.
pub(crate) fn mean_pool_dispatch(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    n_cells: usize,
    tokens: usize,
    dim: usize,
) -> Result<Dispatch, GpuError> {
    let pipeline = ctx.pipeline(&kernel())?;
    let params = ctx.uniform(
        "mean_pool params",
        [n_cells as u32, tokens as u32, dim as u32, 0],
    );
    let bind_group = ctx.bind(&pipeline, "mean_pool", &[&params, x, out]);
    Ok(Dispatch {
        pipeline,
        bind_group,
        workgroups: fold_workgroups((n_cells * dim).div_ceil(WG), "mean_pool")?,
    })
}

/// Runs `kernels/mean_pool.wgsl` once on `x` `[n_cells, tokens, dim]`; returns `[n_cells, dim]`.
/// Compare with `engine::ops::mean_pool_reference`.
pub async fn mean_pool(
    ctx: &GpuContext,
    x: &[f32],
    n_cells: usize,
    tokens: usize,
    dim: usize,
) -> Result<Vec<f32>, GpuError> {
    check_len(
        || format!("mean_pool x [cells={n_cells}, T={tokens}, D={dim}]"),
        x.len(),
        n_cells * tokens * dim,
    )?;
    if tokens == 0 {
        return Err(GpuError::InputShape {
            what: "mean_pool: tokens must be > 0".into(),
            expected: 1,
            found: 0,
        });
    }
    let xb = ctx.storage_init("mean_pool x", bytemuck::cast_slice(x))?;
    let ob = ctx.storage_zeroed("mean_pool out", n_cells * dim)?;
    let d = mean_pool_dispatch(ctx, &xb, &ob, n_cells, tokens, dim)?;
    ctx.run_and_read("mean_pool", &[d], &ob, n_cells * dim)
        .await
}
