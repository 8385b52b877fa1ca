//! `kernels/matmul_dot4.wgsl`: the int8 linear layer with int8 activations, one
//! `dot4I8Packed` per four inputs (WGSL language extension `packed_4x8_integer_dot_product`),
//! with the same optional LayerNorm prologue, GELU and residual epilogue as
//! [`super::matmul`].
//!
//! `Y[n, out] = act(f32(Σ_k qx·qw) · (sx[row] · sw[out]) + bias) (+ residual[n, out])`, where
//! each row of `LN?(X)` is quantised with [`crate::quant::quantize_row_i8`]'s scheme inside
//! the kernel (the prologue finds the row's amax after the LayerNorm).
//!
//! Available when [`GpuContext::supports_int8_dot`] (detected once when the context is
//! built); the classifier falls back to `matmul_int8.wgsl` otherwise.

use super::context::{check_len, Dispatch, GpuContext, Kernel};
use super::error::GpuError;
use super::layernorm::GpuLayerNorm;
use super::matmul::{matmul_launch, specialise, MatmulFast, Activation, GpuLinear, TILE_M, TILE_N};
use super::reduce4::enables;
use crate::quant::Linear;

/// Input values staged per step (8 packed words per row).
const TILE_K: usize = 32;
// 16x16 invocations, 4x4 outputs each (as matmul_int8.wgsl); words hold 4 inputs.
const _: () = assert!(TILE_M == 64 && TILE_N == 64 && TILE_K.is_multiple_of(4));

const TEMPLATE: &str = include_str!("../../kernels/matmul_dot4.wgsl");

/// The kernel with activation `act`, when `residual` the residual add, when `norm` the
/// LayerNorm prologue, and when `subgroups` the prologue's reductions by subgroup shuffles.
pub(crate) fn kernel(act: Activation, residual: bool, norm: bool, subgroups: bool) -> Kernel {
    specialise(Kernel::new("matmul_dot4", TEMPLATE), TILE_K, act, residual, norm, subgroups)
        .constant("ENABLES", enables(false, subgroups))
}

/// The specialisations a pre-norm encoder layer uses (LayerNorm + identity for q|k|v,
/// LayerNorm + GELU for the first feed-forward matmul, residual for the second and for the
/// output projection), compiled when the context is built if the adapter supports them.
/// With `subgroups`, the subgroup-reduction variants.
pub(crate) fn layer_kernels(subgroups: bool) -> Vec<Kernel> {
    vec![
        kernel(Activation::None, false, true, subgroups),
        kernel(Activation::Gelu, false, true, subgroups),
        kernel(Activation::None, true, false, subgroups),
    ]
}

/// One launch: `y[rows, out] (+)= act(LN?(x)[rows, in] · wᵀ + b)` with int8 activations,
/// the row reductions by subgroup shuffles when `fast.subgroups` (`fast`'s f16 flags are not
/// supported here).
///
/// Errors: [`GpuError::Unsupported`] when the context has no `dot4I8Packed` (or no
/// subgroups when asked for), or when `fast` asks for f16; as [`super::matmul`]'s launches
/// otherwise.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_dot4_dispatch(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    rows: usize,
    norm: Option<(&GpuLayerNorm, f32)>,
    w: &GpuLinear,
    y: &wgpu::Buffer,
    act: Activation,
    residual: bool,
    fast: MatmulFast,
) -> Result<Dispatch, GpuError> {
    ctx.require_int8_dot()?;
    w.require_int8()?;
    if fast.x_f16 || fast.y_f16 {
        return Err(GpuError::Unsupported {
            feature: "f16 activations with int8 activations (matmul_dot4.wgsl)".into(),
            adapter: ctx.adapter_summary(),
            reason: "matmul_dot4.wgsl reads and writes f32 activations only".into(),
        });
    }
    fast.check(ctx)?;
    matmul_launch(ctx, &kernel(act, residual, norm.is_some(), fast.subgroups), x, rows, norm, w, y)
}

/// Runs `kernels/matmul_dot4.wgsl` once: `x` `[n, in]`, optionally normalised per row by the
/// LayerNorm `norm = (gamma [in], beta [in], eps)`, then quantised per row to int8, times the
/// int8 layer `w`, `act`, and the optional `residual` `[n, out]`; returns `[n, out]`. Compare with
/// `engine::ops::matmul_dot4_reference`.
///
/// Errors: [`GpuError::Unsupported`] without `dot4I8Packed` (or subgroups, when asked); [`GpuError::InputShape`] for
/// mismatched lengths; [`GpuError::NotQuantized`] for f32 weights.
pub async fn matmul_dot4(
    ctx: &GpuContext,
    x: &[f32],
    n: usize,
    norm: Option<(&[f32], &[f32], f32)>,
    w: &Linear,
    act: Activation,
    residual: Option<&[f32]>,
) -> Result<Vec<f32>, GpuError> {
    matmul_dot4_with(ctx, x, n, norm, w, act, residual, false).await
}

/// [`matmul_dot4()`](fn@matmul_dot4), with the prologue's reductions (mean, variance, row
/// amax) by subgroup shuffles when `subgroups`.
#[allow(clippy::too_many_arguments)]
pub async fn matmul_dot4_with(
    ctx: &GpuContext,
    x: &[f32],
    n: usize,
    norm: Option<(&[f32], &[f32], f32)>,
    w: &Linear,
    act: Activation,
    residual: Option<&[f32]>,
    subgroups: bool,
) -> Result<Vec<f32>, GpuError> {
    ctx.require_int8_dot()?;
    check_len(|| format!("matmul input x [n={n}, in={}]", w.in_dim), x.len(), n * w.in_dim)?;
    if let Some(r) = residual {
        check_len(|| format!("matmul residual [n={n}, out={}]", w.out_dim), r.len(), n * w.out_dim)?;
    }
    let ln = match norm {
        Some((gamma, beta, eps)) => Some((GpuLayerNorm::upload(ctx, gamma, beta, "matmul prologue")?, eps)),
        None => None,
    };
    let gw = GpuLinear::upload(ctx, w, "matmul")?;
    let xb = ctx.storage_init("matmul x", bytemuck::cast_slice(x))?;
    let yb = match residual {
        Some(r) => ctx.storage_init("matmul y", bytemuck::cast_slice(r))?,
        None => ctx.storage_zeroed("matmul y", n * w.out_dim)?,
    };
    let norm = ln.as_ref().map(|(l, eps)| (l, *eps));
    let fast = MatmulFast { subgroups, ..MatmulFast::default() };
    let d = matmul_dot4_dispatch(ctx, &xb, n, norm, &gw, &yb, act, residual.is_some(), fast)?;
    ctx.run_and_read("matmul_dot4", &[d], &yb, n * w.out_dim).await
}
