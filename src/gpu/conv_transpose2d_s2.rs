//! `kernels/conv_transpose2d_s2.wgsl`: 4×4 transposed convolution, stride 2, padding 1, bias
//! and a fused epilogue (identity, GELU or sigmoid), in gather form; `[n, c_in, s, s]` →
//! `[n, c_out, 2s, 2s]`, weights in burn's `[c_in, c_out, 4, 4]` layout.

use super::context::{check_len, Dispatch, GpuContext, Kernel};
use super::conv2d_s2::{conv_workgroups, ConvEpilogue, GpuConv, WG};
use super::error::GpuError;

const TEMPLATE: &str = include_str!("../../kernels/conv_transpose2d_s2.wgsl");

/// The kernel with epilogue `epilogue`.
pub(crate) fn kernel(epilogue: ConvEpilogue) -> Kernel {
    Kernel::new("conv_transpose2d_s2", TEMPLATE).constant("WG", WG).constant("EPILOGUE", epilogue.code())
}

/// One launch: `y[n, c_out, 2side, 2side] = epilogue(conv_transpose(x[n, c_in, side, side]) +
/// bias)`; `conv` holds `[c_in, c_out, 4, 4]` weights.
pub(crate) fn conv_transpose2d_s2_dispatch(ctx: &GpuContext, x: &wgpu::Buffer, n: usize, side: usize, conv: &GpuConv, y: &wgpu::Buffer, epilogue: ConvEpilogue) -> Result<Dispatch, GpuError> {
    let pipeline = ctx.pipeline(&kernel(epilogue))?;
    let params = ctx.uniform("conv_transpose2d_s2 params", [n as u32, conv.c_in as u32, conv.c_out as u32, side as u32]);
    let bind_group = ctx.bind(&pipeline, "conv_transpose2d_s2", &[&params, x, &conv.weight, &conv.bias, y]);
    let outputs = n * conv.c_out * (2 * side) * (2 * side);
    Ok(Dispatch { pipeline, bind_group, workgroups: conv_workgroups(outputs, "conv_transpose2d_s2")? })
}

/// Runs `kernels/conv_transpose2d_s2.wgsl` once: `x` `[n, c_in, side, side]`, `weight`
/// `[c_in, c_out, 4, 4]`, `bias` `[c_out]`; returns `[n, c_out, 2side, 2side]`. Compare with
/// `engine::ops::conv_transpose2d_s2_reference`.
#[allow(clippy::too_many_arguments)]
pub async fn conv_transpose2d_s2(ctx: &GpuContext, x: &[f32], n: usize, c_in: usize, side: usize, weight: &[f32], bias: &[f32], c_out: usize, epilogue: ConvEpilogue) -> Result<Vec<f32>, GpuError> {
    check_len(|| format!("conv_transpose2d_s2 x [n={n}, c_in={c_in}, {side}, {side}]"), x.len(), n * c_in * side * side)?;
    let conv = GpuConv::upload(ctx, weight, bias, c_in, c_out, 4, "conv_transpose2d_s2")?;
    let xb = ctx.storage_init("conv_transpose2d_s2 x", bytemuck::cast_slice(x))?;
    let len = n * c_out * 4 * side * side;
    let yb = ctx.storage_zeroed("conv_transpose2d_s2 y", len)?;
    let d = conv_transpose2d_s2_dispatch(ctx, &xb, n, side, &conv, &yb, epilogue)?;
    ctx.run_and_read("conv_transpose2d_s2", &[d], &yb, len).await
}
