//! `kernels/film_layernorm.wgsl`: LayerNorm then FiLM modulation,
//! `y[r, j] = LN(h)[r, j] · (1 + gb[r, j]) + gb[r, H + j]` for `h` `[rows, H]` and the
//! conditioning's scale ‖ shift `gb` `[rows, 2H]` (the flow model's residual blocks).

use super::context::{check_len, fold_workgroups, Dispatch, GpuContext, Kernel};
use super::error::GpuError;
use super::layernorm::GpuLayerNorm;

/// Invocations per workgroup (one workgroup per row; a power of two).
const WG: usize = 64;

const TEMPLATE: &str = include_str!("../../kernels/film_layernorm.wgsl");

/// The kernel (one specialisation).
pub(crate) fn kernel() -> Kernel {
    Kernel::new("film_layernorm", TEMPLATE).constant("WG", WG)
}

/// One launch: `y[rows, H] = LN(h[rows, H]) · (1 + gb[:, ..H]) + gb[:, H..]`, `gb`
/// `[rows, 2H]`, `H = ln.dim`.
pub(crate) fn film_layernorm_dispatch(ctx: &GpuContext, h: &wgpu::Buffer, gb: &wgpu::Buffer, rows: usize, ln: &GpuLayerNorm, y: &wgpu::Buffer, eps: f32) -> Result<Dispatch, GpuError> {
    let pipeline = ctx.pipeline(&kernel())?;
    let params = ctx.uniform("film_layernorm params", [rows as u32, ln.dim as u32, eps.to_bits(), 0]);
    let bind_group = ctx.bind(&pipeline, "film_layernorm", &[&params, h, gb, &ln.gamma, &ln.beta, y]);
    Ok(Dispatch { pipeline, bind_group, workgroups: fold_workgroups(rows, "film_layernorm")? })
}

/// Runs `kernels/film_layernorm.wgsl` once on `h` `[rows, dim]` and `gb` `[rows, 2·dim]`
/// with scale `gamma` `[dim]` and shift `beta` `[dim]`; returns `[rows, dim]`. Compare with
/// `engine::ops::film_layernorm_reference`.
#[allow(clippy::too_many_arguments)]
pub async fn film_layernorm(ctx: &GpuContext, h: &[f32], gb: &[f32], rows: usize, dim: usize, gamma: &[f32], beta: &[f32], eps: f32) -> Result<Vec<f32>, GpuError> {
    check_len(|| format!("film_layernorm h [rows={rows}, dim={dim}]"), h.len(), rows * dim)?;
    check_len(|| format!("film_layernorm gb [rows={rows}, 2·dim={}]", 2 * dim), gb.len(), rows * 2 * dim)?;
    check_len(|| format!("film_layernorm gamma [dim={dim}]"), gamma.len(), dim)?;
    let ln = GpuLayerNorm::upload(ctx, gamma, beta, "film_layernorm")?;
    let hb = ctx.storage_init("film_layernorm h", bytemuck::cast_slice(h))?;
    let gbb = ctx.storage_init("film_layernorm gb", bytemuck::cast_slice(gb))?;
    let yb = ctx.storage_zeroed("film_layernorm y", rows * dim)?;
    let d = film_layernorm_dispatch(ctx, &hb, &gbb, rows, &ln, &yb, eps)?;
    ctx.run_and_read("film_layernorm", &[d], &yb, rows * dim).await
}
