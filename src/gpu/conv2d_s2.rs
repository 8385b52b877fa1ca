//! `kernels/conv2d_s2.wgsl`: 3×3 convolution, stride 2, padding 1, bias and a fused epilogue
//! (identity, GELU or sigmoid); `[n, c_in, s, s]` → `[n, c_out, s/2, s/2]`, weights in burn's
//! `[c_out, c_in, 3, 3]` layout. Also the convolution weights both convolution launchers
//! bind (`GpuConv`) and their epilogue ([`ConvEpilogue`]).

use super::context::{check_len, fold_workgroups, Dispatch, GpuContext, Kernel};
use super::error::GpuError;

/// Invocations per workgroup (one per output value).
pub(crate) const WG: usize = 256;

const TEMPLATE: &str = include_str!("../../kernels/conv2d_s2.wgsl");

/// The function a convolution kernel applies to each output (after the bias).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvEpilogue {
    /// Identity.
    None,
    /// GELU, erf form, as the matmul epilogue ([`super::Activation::Gelu`]).
    Gelu,
    /// Logistic sigmoid `1 / (1 + exp(−x))`.
    Sigmoid,
}

impl ConvEpilogue {
    /// The kernels' `EPILOGUE` constant.
    pub(crate) fn code(self) -> u32 {
        match self {
            ConvEpilogue::None => 0,
            ConvEpilogue::Gelu => 1,
            ConvEpilogue::Sigmoid => 2,
        }
    }
}

/// The kernel with epilogue `epilogue`.
pub(crate) fn kernel(epilogue: ConvEpilogue) -> Kernel {
    Kernel::new("conv2d_s2", TEMPLATE).constant("WG", WG).constant("EPILOGUE", epilogue.code())
}

/// Convolution weights resident on the GPU: `weight` (`[c_out, c_in, k, k]` for a
/// convolution, `[c_in, c_out, k, k]` for a transposed one) and `bias` `[c_out]`.
pub(crate) struct GpuConv {
    pub weight: wgpu::Buffer,
    pub bias: wgpu::Buffer,
    pub c_in: usize,
    pub c_out: usize,
}

impl GpuConv {
    /// Uploads a `k`×`k` convolution's weights (`c_in · c_out · k²` values) and bias
    /// (`c_out`); `name` is used in errors and buffer labels.
    pub(crate) fn upload(ctx: &GpuContext, weight: &[f32], bias: &[f32], c_in: usize, c_out: usize, k: usize, name: &str) -> Result<Self, GpuError> {
        check_len(|| format!("{name}.weight [{c_in}·{c_out}·{k}·{k}]"), weight.len(), c_in * c_out * k * k)?;
        check_len(|| format!("{name}.bias [c_out={c_out}]"), bias.len(), c_out)?;
        Ok(Self {
            weight: ctx.storage_init(&format!("{name}.weight"), bytemuck::cast_slice(weight))?,
            bias: ctx.storage_init(&format!("{name}.bias"), bytemuck::cast_slice(bias))?,
            c_in,
            c_out,
        })
    }
}

/// Workgroups for `outputs` values, one invocation each, folded into 2-D beyond 65535, and
/// a check that the indices fit the kernels' u32 arithmetic.
pub(crate) fn conv_workgroups(outputs: usize, what: &str) -> Result<[u32; 3], GpuError> {
    if outputs > u32::MAX as usize {
        return Err(GpuError::DispatchTooLarge { what: what.to_string(), workgroups: outputs.div_ceil(WG) as u64, limit: (u32::MAX as usize / WG) as u64 });
    }
    fold_workgroups(outputs.div_ceil(WG), what)
}

/// One launch: `y[n, c_out, side/2, side/2] = epilogue(conv(x[n, c_in, side, side]) + bias)`.
pub(crate) fn conv2d_s2_dispatch(ctx: &GpuContext, x: &wgpu::Buffer, n: usize, side: usize, conv: &GpuConv, y: &wgpu::Buffer, epilogue: ConvEpilogue) -> Result<Dispatch, GpuError> {
    if side == 0 || !side.is_multiple_of(2) {
        return Err(GpuError::InputShape { what: format!("conv2d_s2 input side {side} (must be even and > 0)"), expected: side.div_ceil(2).max(1) * 2, found: side });
    }
    let pipeline = ctx.pipeline(&kernel(epilogue))?;
    let params = ctx.uniform("conv2d_s2 params", [n as u32, conv.c_in as u32, conv.c_out as u32, side as u32]);
    let bind_group = ctx.bind(&pipeline, "conv2d_s2", &[&params, x, &conv.weight, &conv.bias, y]);
    let outputs = n * conv.c_out * (side / 2) * (side / 2);
    Ok(Dispatch { pipeline, bind_group, workgroups: conv_workgroups(outputs, "conv2d_s2")? })
}

/// Runs `kernels/conv2d_s2.wgsl` once: `x` `[n, c_in, side, side]` (side even), `weight`
/// `[c_out, c_in, 3, 3]`, `bias` `[c_out]`; returns `[n, c_out, side/2, side/2]`. Compare with
/// `engine::ops::conv2d_s2_reference`.
#[allow(clippy::too_many_arguments)]
pub async fn conv2d_s2(ctx: &GpuContext, x: &[f32], n: usize, c_in: usize, side: usize, weight: &[f32], bias: &[f32], c_out: usize, epilogue: ConvEpilogue) -> Result<Vec<f32>, GpuError> {
    check_len(|| format!("conv2d_s2 x [n={n}, c_in={c_in}, {side}, {side}]"), x.len(), n * c_in * side * side)?;
    let conv = GpuConv::upload(ctx, weight, bias, c_in, c_out, 3, "conv2d_s2")?;
    let xb = ctx.storage_init("conv2d_s2 x", bytemuck::cast_slice(x))?;
    let len = n * c_out * (side / 2) * (side / 2);
    let yb = ctx.storage_zeroed("conv2d_s2 y", len)?;
    let d = conv2d_s2_dispatch(ctx, &xb, n, side, &conv, &yb, epilogue)?;
    ctx.run_and_read("conv2d_s2", &[d], &yb, len).await
}
