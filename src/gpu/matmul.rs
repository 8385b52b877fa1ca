//! `kernels/matmul_int8.wgsl`: int8-weight linear layer with an optional LayerNorm prologue
//! and fused GELU and residual add; the same kernel specialised with `F32_WEIGHTS = 1` runs
//! f32 weights (one f32 per word, per-row scale 1.0 unless the caller folds a factor in).
//!
//! `Y[n, out] = act(LN?(X)[n, in] · (q · scale)ᵀ + bias) (+ residual[n, out])`.

use super::context::{check_len, Dispatch, GpuContext, Kernel};
use super::error::GpuError;
use super::layernorm::GpuLayerNorm;
use super::reduce4::{enables, with_reduce4};
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

/// The optional fast paths of one matmul launch (all off: the portable kernel).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct MatmulFast {
    /// Reduce the LayerNorm prologue's row statistics (and `matmul_dot4.wgsl`'s row amax)
    /// with subgroup shuffles (needs [`GpuContext::supports_subgroups`]).
    pub subgroups: bool,
    /// The input `x` is stored as f16 (`[rows, in]`, two values per word; needs
    /// [`GpuContext::supports_f16`]; `matmul_int8.wgsl` only).
    pub x_f16: bool,
    /// The output `y` is stored as f16 (as `x_f16`).
    pub y_f16: bool,
}

impl MatmulFast {
    /// Checks that `ctx` has the features these fast paths need.
    pub(crate) fn check(self, ctx: &GpuContext) -> Result<(), GpuError> {
        if self.subgroups {
            ctx.require_subgroups()?;
        }
        if self.x_f16 || self.y_f16 {
            ctx.require_f16()?;
        }
        Ok(())
    }
}

/// The kernel with activation `act`, when `residual` the residual add, when `norm` the
/// LayerNorm prologue, when `f32_weights` one f32 weight per word instead of four int8, and
/// the fast paths `fast`.
pub(crate) fn kernel(act: Activation, residual: bool, norm: bool, f32_weights: bool, fast: MatmulFast) -> Kernel {
    let elem = |f16: bool| if f16 { "f16" } else { "f32" };
    specialise(Kernel::new("matmul_int8", TEMPLATE), TILE_K, act, residual, norm, fast.subgroups)
        .constant("F32_WEIGHTS", u32::from(f32_weights))
        .constant("X_ELEM", elem(fast.x_f16))
        .constant("Y_ELEM", elem(fast.y_f16))
        .constant("ENABLES", enables(fast.x_f16 || fast.y_f16, fast.subgroups))
}

/// Substitutes the constants every matmul template shares (this file's and
/// `matmul_dot4.wgsl`): the 64 x 64 output tile, `tile_k`, the epilogue/prologue flags, and
/// the 4-invocation reductions (`kernels/reduce4_*.wgsl`, subgroup shuffles when
/// `subgroups`).
pub(crate) fn specialise(k: Kernel, tile_k: usize, act: Activation, residual: bool, norm: bool, subgroups: bool) -> Kernel {
    with_reduce4(k, subgroups)
        .constant("TILE_M", TILE_M)
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
    let portable = MatmulFast::default();
    let plain = [Activation::None, Activation::Gelu]
        .into_iter()
        .flat_map(|act| [false, true].map(|residual| kernel(act, residual, false, false, portable)));
    let normed = [Activation::None, Activation::Gelu].map(|act| kernel(act, false, true, false, portable));
    plain.chain(normed).collect()
}

/// The subgroup specialisations an encoder layer uses (the LayerNorm-prologue matmuls: the
/// only ones that reduce; with `f16` also fc1 writing an f16 hidden), compiled when the
/// context is built if it has subgroups.
pub(crate) fn subgroup_kernels(f16: bool) -> Vec<Kernel> {
    let sg = MatmulFast { subgroups: true, ..MatmulFast::default() };
    let mut v = vec![
        kernel(Activation::None, false, true, false, sg),
        kernel(Activation::Gelu, false, true, false, sg),
    ];
    if f16 {
        v.push(kernel(Activation::Gelu, false, true, false, MatmulFast { y_f16: true, ..sg }));
    }
    v
}

/// The f16 specialisations an encoder layer uses (fc1 writing its f16 hidden, with and
/// without subgroups; fc2 reading it with the residual add), compiled when the context is
/// built if it has `shader-f16`.
pub(crate) fn f16_kernels() -> Vec<Kernel> {
    let out = MatmulFast { y_f16: true, ..MatmulFast::default() };
    let inp = MatmulFast { x_f16: true, ..MatmulFast::default() };
    vec![
        kernel(Activation::Gelu, false, true, false, out),
        kernel(Activation::None, true, false, false, inp),
    ]
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
    matmul_norm_dispatch(ctx, x, rows, None, w, y, act, residual, MatmulFast::default())
}

/// One matmul launch with an optional LayerNorm prologue:
/// `y[rows, out] (+)= act(LN(x)[rows, in] · wᵀ + b)`, `norm = Some((ln, eps))` with
/// `ln.dim == in`, with the fast paths `fast` (an f16 `x` / `y` buffer holds
/// `ceil(len / 2)` words).
///
/// Errors: [`GpuError::Unsupported`] when `fast` needs a feature the context lacks.
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
    fast: MatmulFast,
) -> Result<Dispatch, GpuError> {
    fast.check(ctx)?;
    matmul_launch(ctx, &kernel(act, residual, norm.is_some(), w.f32_weights, fast), x, rows, norm, w, y)
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
    let d = matmul_norm_dispatch(ctx, &xb, n, Some((&ln, eps)), &gw, &yb, act, false, MatmulFast::default())?;
    ctx.run_and_read("layernorm_matmul_int8", &[d], &yb, n * w.out_dim)
        .await
}

/// [`matmul_int8`] / [`layernorm_matmul_int8`] on a fast path, for the parity tests:
/// `x` `[n, in]` (uploaded as f16 when `x_f16`), the LayerNorm prologue `norm = (gamma,
/// beta, eps)` if given (reduced with subgroup shuffles when `subgroups`), the layer `w`,
/// `act`, the residual add onto `residual` `[n, out]` if given, and the output stored as
/// f16 when `y_f16`; returns `[n, out]` as f32 (f16 outputs widened exactly). Compare with
/// `engine::ops::layernorm_matmul_int8_reference` / `matmul_int8_reference` on the same
/// (f16-rounded, when `x_f16`) input; the results differ from them by the reduction order
/// (subgroups) and by the f16 rounding of the output (`y_f16`).
///
/// Errors: [`GpuError::Unsupported`] when the context lacks the feature a fast path needs;
/// [`GpuError::InputShape`] for mismatched lengths.
#[allow(clippy::too_many_arguments)]
pub async fn matmul_int8_fast(
    ctx: &GpuContext,
    x: &[f32],
    n: usize,
    norm: Option<(&[f32], &[f32], f32)>,
    w: &Linear,
    act: Activation,
    residual: Option<&[f32]>,
    subgroups: bool,
    x_f16: bool,
    y_f16: bool,
) -> Result<Vec<f32>, GpuError> {
    let fast = MatmulFast { subgroups, x_f16, y_f16 };
    fast.check(ctx)?;
    check_len(|| format!("matmul input x [n={n}, in={}]", w.in_dim), x.len(), n * w.in_dim)?;
    if let Some(r) = residual {
        check_len(|| format!("matmul residual [n={n}, out={}]", w.out_dim), r.len(), n * w.out_dim)?;
    }
    let ln = match norm {
        Some((gamma, beta, eps)) => Some((GpuLayerNorm::upload(ctx, gamma, beta, "matmul prologue")?, eps)),
        None => None,
    };
    let gw = GpuLinear::upload(ctx, w, "matmul")?;
    let xb = if x_f16 {
        ctx.storage_init("matmul x (f16)", &f16_bytes(x))?
    } else {
        ctx.storage_init("matmul x", bytemuck::cast_slice(x))?
    };
    let len = n * w.out_dim;
    let yb = match (residual, y_f16) {
        (Some(r), true) => ctx.storage_init("matmul y (f16)", &f16_bytes(r))?,
        (Some(r), false) => ctx.storage_init("matmul y", bytemuck::cast_slice(r))?,
        (None, true) => ctx.storage_zeroed("matmul y (f16)", len.div_ceil(2))?,
        (None, false) => ctx.storage_zeroed("matmul y", len)?,
    };
    let norm = ln.as_ref().map(|(l, eps)| (l, *eps));
    let d = matmul_norm_dispatch(ctx, &xb, n, norm, &gw, &yb, act, residual.is_some(), fast)?;
    if !y_f16 {
        return ctx.run_and_read("matmul_int8 (fast)", &[d], &yb, len).await;
    }
    let words = ctx.run_and_read("matmul_int8 (f16 out)", &[d], &yb, len.div_ceil(2)).await?;
    Ok(words
        .iter()
        .flat_map(|w| {
            let b = w.to_bits();
            [quant::f16_bits_to_f32(b as u16), quant::f16_bits_to_f32((b >> 16) as u16)]
        })
        .take(len)
        .collect())
}

/// `v` as IEEE half floats (round to nearest even), little endian, padded to whole words.
pub(crate) fn f16_bytes(v: &[f32]) -> Vec<u8> {
    let mut out: Vec<u8> = v.iter().flat_map(|&x| quant::f32_to_f16_bits(x).to_le_bytes()).collect();
    if out.len() % 4 != 0 {
        out.extend_from_slice(&[0, 0]);
    }
    out
}
