//! `kernels/layernorm.wgsl`: LayerNorm over the last dimension.

use super::context::{check_len, fold_workgroups, Dispatch, GpuContext, Kernel};
use super::error::GpuError;
use crate::engine::LayerNormWeights;

/// Invocations per workgroup (one workgroup per row; a power of two).
const WG: usize = 64;

const TEMPLATE: &str = include_str!("../../kernels/layernorm.wgsl");

/// The layernorm kernel (one specialisation).
pub(crate) fn kernel() -> Kernel {
    Kernel::new("layernorm", TEMPLATE).constant("WG", WG)
}

/// Plain-Rust reference: `y = (x - mean) / sqrt(var + eps) * gamma + beta` per row of `x`
/// `[rows, dim]`, biased variance, two passes in f32. Returns `[rows, dim]`.
///
/// # Panics
/// If `x.len() != rows * dim` or gamma/beta are not `[dim]`.
pub fn layernorm_reference(
    x: &[f32],
    rows: usize,
    dim: usize,
    ln: &LayerNormWeights,
    eps: f32,
) -> Vec<f32> {
    assert_eq!(
        x.len(),
        rows * dim,
        "layernorm reference: x must be [rows, dim]"
    );
    assert!(
        ln.gamma.len() == dim && ln.beta.len() == dim,
        "layernorm reference: gamma/beta must be [dim]"
    );
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks_exact(dim.max(1)).take(rows) {
        let mean = row.iter().sum::<f32>() / dim as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / dim as f32;
        let inv_std = 1.0 / (var + eps).sqrt();
        y.extend(
            row.iter()
                .zip(ln.gamma.iter().zip(&ln.beta))
                .map(|(v, (g, b))| (v - mean) * inv_std * g + b),
        );
    }
    y
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
        ln: &LayerNormWeights,
        name: &str,
    ) -> Result<Self, GpuError> {
        check_len(
            || format!("{name}.beta (same length as gamma)"),
            ln.beta.len(),
            ln.gamma.len(),
        )?;
        Ok(Self {
            gamma: ctx.storage_init(&format!("{name}.gamma"), bytemuck::cast_slice(&ln.gamma))?,
            beta: ctx.storage_init(&format!("{name}.beta"), bytemuck::cast_slice(&ln.beta))?,
            dim: ln.gamma.len(),
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

/// Runs `kernels/layernorm.wgsl` once on `x` `[rows, dim]`; returns `[rows, dim]`.
/// Compare with [`layernorm_reference`].
pub async fn layernorm(
    ctx: &GpuContext,
    x: &[f32],
    rows: usize,
    dim: usize,
    ln: &LayerNormWeights,
    eps: f32,
) -> Result<Vec<f32>, GpuError> {
    check_len(
        || format!("layernorm x [rows={rows}, dim={dim}]"),
        x.len(),
        rows * dim,
    )?;
    check_len(
        || format!("layernorm gamma [dim={dim}]"),
        ln.gamma.len(),
        dim,
    )?;
    let g = GpuLayerNorm::upload(ctx, ln, "layernorm")?;
    let xb = ctx.storage_init("layernorm x", bytemuck::cast_slice(x))?;
    let yb = ctx.storage_zeroed("layernorm y", rows * dim)?;
    let d = layernorm_dispatch(ctx, &xb, rows, &g, &yb, eps)?;
    ctx.run_and_read("layernorm", &[d], &yb, rows * dim).await
}
