//! `kernels/layernorm.wgsl`: LayerNorm over the last dimension.

use super::context::{check_len, fold_workgroups, Dispatch, GpuContext, Kernel};
use super::error::GpuError;

/// Invocations per workgroup (one workgroup per row; a power of two).
const WG: usize = 64;

const TEMPLATE: &str = include_str!("../../kernels/layernorm.wgsl");

/// The layernorm kernel (one specialisation).
pub(crate) fn kernel() -> Kernel {
    Kernel::new("layernorm", TEMPLATE).constant("WG", WG)
}

/// LayerNorm parameters resident on the GPU.
pub(crate) struct GpuLayerNorm {
    pub gamma: wgpu::Buffer,
    pub beta: wgpu::Buffer,
    pub dim: usize,
}

impl GpuLayerNorm {
    pub(crate) fn upload(
        ctx: &GpuContext,
        gamma: &[f32],
        beta: &[f32],
        name: &str,
    ) -> Result<Self, GpuError> {
        check_len(
            || format!("{name}.beta (same length as gamma)"),
            beta.len(),
            gamma.len(),
        )?;
        Ok(Self {
            gamma: ctx.storage_init(&format!("{name}.gamma"), bytemuck::cast_slice(gamma))?,
            beta: ctx.storage_init(&format!("{name}.beta"), bytemuck::cast_slice(beta))?,
            dim: gamma.len(),
        })
    }
}

/// One LayerNorm launch: `y[rows, dim] = LN(x[rows, dim])`.
pub(crate) fn layernorm_dispatch(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    rows: usize,
    ln: &GpuLayerNorm,
    y: &wgpu::Buffer,
    eps: f32,
) -> Result<Dispatch, GpuError> {
    let pipeline = ctx.pipeline(&kernel())?;
    let params = ctx.uniform(
        "layernorm params",
        [rows as u32, ln.dim as u32, eps.to_bits(), 0],
    );
    let bind_group = ctx.bind(
        &pipeline,
        "layernorm",
        &[&params, x, &ln.gamma, &ln.beta, y],
    );
    Ok(Dispatch {
        pipeline,
        bind_group,
        workgroups: fold_workgroups(rows, "layernorm")?,
    })
}

/// Runs `kernels/layernorm.wgsl` once on `x` `[rows, dim]` with scale `gamma` `[dim]` and
/// shift `beta` `[dim]`; returns `[rows, dim]`. Compare with `engine::ops::layernorm_reference`.
pub async fn layernorm(
    ctx: &GpuContext,
    x: &[f32],
    rows: usize,
    dim: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> Result<Vec<f32>, GpuError> {
    check_len(
        || format!("layernorm x [rows={rows}, dim={dim}]"),
        x.len(),
        rows * dim,
    )?;
    check_len(
        || format!("layernorm gamma [dim={dim}]"),
        gamma.len(),
        dim,
    )?;
    let g = GpuLayerNorm::upload(ctx, gamma, beta, "layernorm")?;
    let xb = ctx.storage_init("layernorm x", bytemuck::cast_slice(x))?;
    let yb = ctx.storage_zeroed("layernorm y", rows * dim)?;
    let d = layernorm_dispatch(ctx, &xb, rows, &g, &yb, eps)?;
    ctx.run_and_read("layernorm", &[d], &yb, rows * dim).await
}
