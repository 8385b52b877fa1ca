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
use super::matmul::{matmul_launch, specialise, Activation, GpuLinear, TILE_M, TILE_N};
use crate::quant::Linear;

/// Input values staged per step (8 packed words per row).
const TILE_K: usize = 32;
// 16x16 invocations, 4x4 outputs each (as matmul_int8.wgsl); words hold 4 inputs.
const _: () = assert!(TILE_M == 64 && TILE_N == 64 && TILE_K.is_multiple_of(4));

const TEMPLATE: &str = include_str!("../../kernels/matmul_dot4.wgsl");

/// The kernel with activation `act`, when `residual` the residual add, and when `norm` the
/// LayerNorm prologue.
pub(crate) fn kernel(act: Activation, residual: bool, norm: bool) -> Kernel {
    specialise(Kernel::new("matmul_dot4", TEMPLATE), TILE_K, act, residual, norm)
}

/// The specialisations a pre-norm encoder layer uses (LayerNorm + identity for q|k|v,
/// LayerNorm + GELU for the first feed-forward matmul, residual for the second and for the
/// output projection), compiled when the context is built if the adapter supports them.
pub(crate) fn layer_kernels() -> Vec<Kernel> {
    vec![
        kernel(Activation::None, false, true),
        kernel(Activation::Gelu, false, true),
        kernel(Activation::None, true, false),
    ]
}

/// One launch: `y[rows, out] (+)= act(LN?(x)[rows, in] · wᵀ + b)` with int8 activations.
///
/// Errors: [`GpuError::Unsupported`] when the context has no `dot4I8Packed`, as
/// [`super::matmul`]'s launches otherwise.
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
) -> Result<Dispatch, GpuError> {
    ctx.require_int8_dot()?;
    w.require_int8()?;
    matmul_launch(ctx, &kernel(act, residual, norm.is_some()), x, rows, norm, w, y)
}

/// Runs `kernels/matmul_dot4.wgsl` once: `x` `[n, in]`, optionally normalised per row by the
/// LayerNorm `norm = (gamma [in], beta [in], eps)`, then quantised per row to int8, times the
/// int8 layer `w`, `act`, and the optional `residual` `[n, out]`; returns `[n, out]`.
/// Compare with `engine::ops::matmul_dot4_reference`.
///
/// Errors: [`GpuError::Unsupported`] without `dot4I8Packed`; [`GpuError::InputShape`] for
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
    let d = matmul_dot4_dispatch(ctx, &xb, n, norm, &gw, &yb, act, residual.is_some())?;
    ctx.run_and_read("matmul_dot4", &[d], &yb, n * w.out_dim).await
}
