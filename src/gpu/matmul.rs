//! `kernels/matmul_int8.wgsl`: int8-weight linear layer with an optional LayerNorm prologue
//! and fused GELU and residual add; the same kernel specialised with `F32_WEIGHTS = 1` runs
//! f32 weights (one f32 per word, per-row scale 1.0 unless the caller folds a factor in).
//!
//! `Y[n, out] = act(LN?(X)[n, in] · (q · scale)ᵀ + bias) (+ residual[n, out])`.

use super::context::{check_len, Dispatch, GpuContext, Kernel};
use super::error::GpuError;
use super::layernorm::GpuLayerNorm;
use crate::quant::{self, Linear, LinearWeight};

/// Output rows per workgroup tile.
pub(crate) const TILE_M: usize = 64;
/// Output columns per workgroup tile.
pub(crate) const TILE_N: usize = 64;
/// Input values staged per step (multiple of 4, one packed word = 4 values).
const TILE_K: usize = 16;
// The kernel's 16x16 invocations each compute 4x4 outputs, and packed words hold 4 inputs.
const _: () = assert!(TILE_M == 64 && TILE_N == 64 && TILE_K.is_multiple_of(4));

const TEMPLATE: &str = include_str!("../../kernels/matmul_int8.wgsl");

/// Activation applied in the matmul epilogue (before the residual add).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// Identity.
    None,
    /// GELU, erf form `x/2 · (1 + erf(x/√2))`, with erf by Abramowitz & Stegun 7.1.26
    /// (`engine::ops::erf_approx` mirrors the kernel's arithmetic).
    Gelu,
}

/// The kernel with activation `act`, when `residual` the residual add, when `norm` the
/// LayerNorm prologue, and when `f32_weights` one f32 weight per word instead of four int8.
pub(crate) fn kernel(act: Activation, residual: bool, norm: bool, f32_weights: bool) -> Kernel {
    specialise(Kernel::new("matmul_int8", TEMPLATE), TILE_K, act, residual, norm)
        .constant("F32_WEIGHTS", u32::from(f32_weights))
}

/// Substitutes the constants every matmul template shares (this file's and
/// `matmul_dot4.wgsl`): the 64 x 64 output tile, `tile_k`, and the epilogue/prologue flags.
pub(crate) fn specialise(k: Kernel, tile_k: usize, act: Activation, residual: bool, norm: bool) -> Kernel {
    k.constant("TILE_M", TILE_M)
        .constant("TILE_N", TILE_N)
        .constant("TILE_K", tile_k)
        .constant("ACT", u32::from(act == Activation::Gelu))
        .constant("RESIDUAL", u32::from(residual))
        .constant("NORM", u32::from(norm))
}

/// The specialisations the classifier uses, compiled up front by [`GpuContext::new`]:
/// activation × residual without the prologue, and LayerNorm + activation without residual
/// (a pre-norm layer's q|k|v and first feed-forward matmuls). Others compile on first use.
pub(crate) fn all_kernels() -> Vec<Kernel> {
    let plain = [Activation::None, Activation::Gelu]
        .into_iter()
        .flat_map(|act| [false, true].map(|residual| kernel(act, residual, false, false)));
    let normed = [Activation::None, Activation::Gelu].map(|act| kernel(act, false, true, false));
    plain.chain(normed).collect()
}

/// A linear layer resident on the GPU: int8 weights packed `[out, in_padded/4]` (u32) with
/// per-row scales `[out]`, or f32 weights `[out, in]` (bit patterns as u32) with scales 1.0;
/// bias `[out]`. Buffers are reference-counted handles, so a caller may clone a layer and
/// swap in its own `scale` / `bias` (e.g. a factor folded into every row).
#[derive(Clone)]
pub(crate) struct GpuLinear {
    pub words: wgpu::Buffer,
    pub scale: wgpu::Buffer,
    pub bias: wgpu::Buffer,
    pub out_dim: usize,
    pub in_dim: usize,
    pub in_words: usize,
    /// `words` holds one f32 per word (`F32_WEIGHTS = 1` of `matmul_int8.wgsl`).
    pub f32_weights: bool,
    /// The layer's name, for errors.
    pub name: String,
}

impl GpuLinear {
    /// Uploads a layer, int8 (packed four per word) or f32 (one per word, scales 1.0); `name`
    /// is used in errors and buffer labels.
    pub(crate) fn upload(ctx: &GpuContext, w: &Linear, name: &str) -> Result<Self, GpuError> {
        check_len(
            || format!("{name}.bias [out={}]", w.out_dim),
            w.bias.len(),
            w.out_dim,
        )?;
        let (q, scale) = match &w.weight {
            LinearWeight::Int8 { q, scale } => (q, scale),
            LinearWeight::F32(wf) => {
                check_len(
                    || format!("{name}.weight [out={}, in={}]", w.out_dim, w.in_dim),
                    wf.len(),
                    w.out_dim * w.in_dim,
                )?;
                return Ok(Self {
                    words: ctx.storage_init(&format!("{name}.weight (f32)"), bytemuck::cast_slice(wf))?,
                    scale: ctx.storage_init(
                        &format!("{name}.scale (1.0)"),
                        bytemuck::cast_slice(&vec![1.0f32; w.out_dim]),
                    )?,
                    bias: ctx.storage_init(&format!("{name}.bias"), bytemuck::cast_slice(&w.bias))?,
                    out_dim: w.out_dim,
                    in_dim: w.in_dim,
                    in_words: w.in_dim,
                    f32_weights: true,
                    name: name.to_string(),
                });
            }
        };
        check_len(
            || format!("{name}.weight_q [out={}, in={}]", w.out_dim, w.in_dim),
            q.len(),
            w.out_dim * w.in_dim,
        )?;
        check_len(
            || format!("{name}.weight_scale [out={}]", w.out_dim),
            scale.len(),
            w.out_dim,
        )?;
        let (words, in_padded) = quant::pack_int8_rows_u32(q, w.out_dim, w.in_dim);
        Ok(Self {
            words: ctx.storage_init(
                &format!("{name}.weight_q (packed)"),
                bytemuck::cast_slice(&words),
            )?,
            scale: ctx
                .storage_init(&format!("{name}.weight_scale"), bytemuck::cast_slice(scale))?,
            bias: ctx.storage_init(&format!("{name}.bias"), bytemuck::cast_slice(&w.bias))?,
            out_dim: w.out_dim,
            in_dim: w.in_dim,
            in_words: in_padded / 4,
            f32_weights: false,
            name: name.to_string(),
        })
    }

    /// `Ok` for int8 weights, else [`GpuError::NotQuantized`] (kernels other than
    /// `matmul_int8.wgsl` read packed int8 only).
    pub(crate) fn require_int8(&self) -> Result<(), GpuError> {
        if self.f32_weights {
            return Err(GpuError::NotQuantized { name: self.name.clone() });
        }
        Ok(())
    }
}

/// One matmul launch: `y[rows, out] (+)= act(x[rows, in] · wᵀ + b)`.
pub(crate) fn matmul_dispatch(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    rows: usize,
    w: &GpuLinear,
    y: &wgpu::Buffer,
    act: Activation,
    residual: bool,
) -> Result<Dispatch, GpuError> {
    matmul_norm_dispatch(ctx, x, rows, None, w, y, act, residual)
}

/// One matmul launch with an optional LayerNorm prologue:
/// `y[rows, out] (+)= act(LN(x)[rows, in] · wᵀ + b)`, `norm = Some((ln, eps))` with
/// `ln.dim == in`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_norm_dispatch(
    ctx: &GpuContext,
    x: &wgpu::Buffer,
    rows: usize,
    norm: Option<(&GpuLayerNorm, f32)>,
    w: &GpuLinear,
    y: &wgpu::Buffer,
    act: Activation,
    residual: bool,
) -> Result<Dispatch, GpuError> {
    matmul_launch(ctx, &kernel(act, residual, norm.is_some(), w.f32_weights), x, rows, norm, w, y)
}

/// One launch of a matmul `kernel` (this file's or `matmul_dot4.wgsl`, which share the
/// bindings, `Params` and the 64 x 64 output tiles): `y[rows, out] (+)= …` of `x`
/// `[rows, in]`, with the LayerNorm prologue `norm` when the kernel has one.
pub(crate) fn matmul_launch(
    ctx: &GpuContext,
    kernel: &Kernel,
    x: &wgpu::Buffer,
    rows: usize,
    norm: Option<(&GpuLayerNorm, f32)>,
    w: &GpuLinear,
    y: &wgpu::Buffer,
) -> Result<Dispatch, GpuError> {
    if let Some((ln, _)) = norm {
        check_len(|| format!("matmul LayerNorm prologue gamma [in={}]", w.in_dim), ln.dim, w.in_dim)?;
    }
    let (row_tiles, col_tiles) = (rows.div_ceil(TILE_M), w.out_dim.div_ceil(TILE_N));
    let max = super::context::MAX_WORKGROUPS_PER_DIM as usize;
    if row_tiles > max || col_tiles > max {
        return Err(GpuError::DispatchTooLarge {
            what: format!(
                "matmul [{rows}, {}] x [{}, {}]ᵀ",
                w.in_dim, w.out_dim, w.in_dim
            ),
            workgroups: row_tiles.max(col_tiles) as u64,
            limit: max as u64,
        });
    }
    let pipeline = ctx.pipeline(kernel)?;
    let eps = norm.map_or(0.0, |(_, e)| e);
    let params = ctx.uniform_words(
        "matmul params",
        &[
            rows as u32,
            w.in_dim as u32,
            w.in_words as u32,
            w.out_dim as u32,
            eps.to_bits(),
            0,
            0,
            0,
        ],
    );
    // Without the prologue gamma/beta are never read: bind the layer's own vectors.
    let (gamma, beta) = norm.map_or((&w.scale, &w.bias), |(ln, _)| (&ln.gamma, &ln.beta));
    let bind_group = ctx.bind(
        &pipeline,
        "matmul",
        &[&params, x, &w.words, &w.scale, &w.bias, y, gamma, beta],
    );
    Ok(Dispatch {
        pipeline,
        bind_group,
        workgroups: [col_tiles.max(1) as u32, row_tiles.max(1) as u32, 1],
    })
}

/// Runs `kernels/matmul_int8.wgsl` once: `x` `[n, in]`, layer `w` (int8 `[out, in]` with
/// per-row scales, or f32 `[out, in]`), optional `residual` `[n, out]`; returns `[n, out]`.
/// Compare with `engine::ops::matmul_int8_reference`.
pub async fn matmul_int8(
    ctx: &GpuContext,
    x: &[f32],
    n: usize,
    w: &Linear,
    act: Activation,
    residual: Option<&[f32]>,
) -> Result<Vec<f32>, GpuError> {
    check_len(
        || format!("matmul input x [n={n}, in={}]", w.in_dim),
        x.len(),
        n * w.in_dim,
    )?;
    if let Some(r) = residual {
        check_len(
            || format!("matmul residual [n={n}, out={}]", w.out_dim),
            r.len(),
            n * w.out_dim,
        )?;
    }
    let gw = GpuLinear::upload(ctx, w, "matmul")?;
    let xb = ctx.storage_init("matmul x", bytemuck::cast_slice(x))?;
    let yb = match residual {
        Some(r) => ctx.storage_init("matmul y", bytemuck::cast_slice(r))?,
        None => ctx.storage_zeroed("matmul y", n * w.out_dim)?,
    };
    let d = matmul_dispatch(ctx, &xb, n, &gw, &yb, act, residual.is_some())?;
    ctx.run_and_read("matmul_int8", &[d], &yb, n * w.out_dim)
        .await
}

/// Runs `kernels/matmul_int8.wgsl` once with the LayerNorm prologue: `x` `[n, in]`
/// normalised per row (scale `gamma` `[in]`, shift `beta` `[in]`, `eps`), then the int8 layer
/// `w` and `act`; returns `[n, out]`. Compare with
/// `engine::ops::layernorm_matmul_int8_reference`.
#[allow(clippy::too_many_arguments)]
pub async fn layernorm_matmul_int8(
    ctx: &GpuContext,
    x: &[f32],
    n: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    w: &Linear,
    act: Activation,
) -> Result<Vec<f32>, GpuError> {
    check_len(
        || format!("matmul input x [n={n}, in={}]", w.in_dim),
        x.len(),
        n * w.in_dim,
    )?;
    let ln = GpuLayerNorm::upload(ctx, gamma, beta, "matmul prologue")?;
    let gw = GpuLinear::upload(ctx, w, "matmul")?;
    let xb = ctx.storage_init("matmul x", bytemuck::cast_slice(x))?;
    let yb = ctx.storage_zeroed("matmul y", n * w.out_dim)?;
    let d = matmul_norm_dispatch(ctx, &xb, n, Some((&ln, eps)), &gw, &yb, act, false)?;
    ctx.run_and_read("layernorm_matmul_int8", &[d], &yb, n * w.out_dim)
        .await
}
