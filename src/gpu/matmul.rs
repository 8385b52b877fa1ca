//! `kernels/matmul_int8.wgsl`: int8-weight linear layer with fused GELU and residual add.
//!
//! `Y[n, out] = act(X[n, in] · (q · scale)ᵀ + bias) (+ residual[n, out])`.

use super::context::{check_len, Dispatch, GpuContext, Kernel};
use super::error::GpuError;
use crate::engine::{Linear, LinearWeight};
use crate::quant;

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
    /// GELU, erf form `x/2 · (1 + erf(x/√2))`, with erf from [`erf_approx`].
    Gelu,
}

/// The kernel with activation `act` and, when `residual`, the residual add.
pub(crate) fn kernel(act: Activation, residual: bool) -> Kernel {
    Kernel::new("matmul_int8", TEMPLATE)
        .constant("TILE_M", TILE_M)
        .constant("TILE_N", TILE_N)
        .constant("TILE_K", TILE_K)
        .constant("ACT", u32::from(act == Activation::Gelu))
        .constant("RESIDUAL", u32::from(residual))
}

/// Every specialisation (activation × residual), compiled up front by [`GpuContext::new`].
pub(crate) fn all_kernels() -> Vec<Kernel> {
    [Activation::None, Activation::Gelu]
        .into_iter()
        .flat_map(|act| [false, true].map(|residual| kernel(act, residual)))
        .collect()
}

/// erf(x) by Abramowitz & Stegun formula 7.1.26 (|error| ≤ 1.5e-7 in exact arithmetic,
/// < 6e-7 evaluated in f32: measured 4.7e-7 on [-4, 4]), with the same operations as the
/// WGSL kernel. WGSL has no erf, so both the
/// kernel and this reference (hence the CPU forward) use this approximation; the
/// `erf_approx_accuracy` unit test checks it against a high-precision series.
pub fn erf_approx(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    let r = 1.0 - poly * (-a * a).exp();
    if x >= 0.0 {
        r
    } else {
        -r
    }
}

/// GELU (erf form) with [`erf_approx`]: `x/2 · (1 + erf(x/√2))`; the error vs exact GELU
/// is at most `|x|/2` times erf_approx's error, i.e. below 1e-6 for |x| < 3 and vanishing
/// beyond (where erf saturates).
pub fn gelu_reference(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_approx(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Plain-Rust reference of the matmul kernel: `x` `[n, in]` times `w`ᵀ plus bias, then
/// `act`, then `+ residual` `[n, out]` if given. Returns `[n, out]`.
///
/// For int8 weights it computes exactly what the kernel does, `acc = Σ_k x·q` in f32 and
/// `y = acc · scale + bias`; for f32 weights (the CPU forward of unquantised models),
/// `y = Σ_k x·w + bias`.
///
/// # Panics
/// If `x.len() != n * in`, the residual is not `[n, out]`, or `w`'s vectors disagree with its
/// dims.
pub fn matmul_int8_reference(
    x: &[f32],
    n: usize,
    w: &Linear,
    act: Activation,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let (out_dim, in_dim) = (w.out_dim, w.in_dim);
    assert_eq!(
        x.len(),
        n * in_dim,
        "matmul reference: x has {} values, expected [n={n}, in={in_dim}]",
        x.len()
    );
    assert_eq!(w.bias.len(), out_dim, "matmul reference: bias length");
    if let Some(r) = residual {
        assert_eq!(
            r.len(),
            n * out_dim,
            "matmul reference: residual has {} values, expected [n={n}, out={out_dim}]",
            r.len()
        );
    }
    let mut y = vec![0.0f32; n * out_dim];
    // Epilogue shared with the kernel: activation, then residual add.
    let apply = |pre: f32, idx: usize| {
        let v = if act == Activation::Gelu {
            gelu_reference(pre)
        } else {
            pre
        };
        residual.map_or(v, |r| v + r[idx])
    };
    match &w.weight {
        LinearWeight::F32(wf) => {
            assert_eq!(
                wf.len(),
                out_dim * in_dim,
                "matmul reference: weight length"
            );
            for (r, xr) in x.chunks_exact(in_dim.max(1)).take(n).enumerate() {
                for o in 0..out_dim {
                    let wr = &wf[o * in_dim..(o + 1) * in_dim];
                    let acc: f32 = xr.iter().zip(wr).map(|(a, b)| a * b).sum();
                    y[r * out_dim + o] = apply(acc + w.bias[o], r * out_dim + o);
                }
            }
        }
        LinearWeight::Int8 { q, scale } => {
            assert_eq!(q.len(), out_dim * in_dim, "matmul reference: q length");
            assert_eq!(scale.len(), out_dim, "matmul reference: scale length");
            for (r, xr) in x.chunks_exact(in_dim.max(1)).take(n).enumerate() {
                for o in 0..out_dim {
                    let qr = &q[o * in_dim..(o + 1) * in_dim];
                    let acc: f32 = xr.iter().zip(qr).map(|(a, &b)| a * b as f32).sum();
                    y[r * out_dim + o] = apply(acc * scale[o] + w.bias[o], r * out_dim + o);
                }
            }
        }
    }
    if in_dim == 0 {
        // No inputs: y = act(bias) (+ residual).
        for r in 0..n {
            for o in 0..out_dim {
                y[r * out_dim + o] = apply(w.bias[o], r * out_dim + o);
            }
        }
    }
    y
}

/// An int8 linear layer resident on the GPU: packed weights `[out, in_padded/4]` (u32),
/// scales `[out]`, bias `[out]`.
pub(crate) struct GpuLinear {
    pub words: wgpu::Buffer,
    pub scale: wgpu::Buffer,
    pub bias: wgpu::Buffer,
    pub out_dim: usize,
    pub in_dim: usize,
    pub in_words: usize,
}

impl GpuLinear {
    /// Packs and uploads an int8 layer; `name` is used in errors and buffer labels.
    pub(crate) fn upload(ctx: &GpuContext, w: &Linear, name: &str) -> Result<Self, GpuError> {
        let LinearWeight::Int8 { q, scale } = &w.weight else {
            return Err(GpuError::NotQuantized {
                name: name.to_string(),
            });
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
        check_len(
            || format!("{name}.bias [out={}]", w.out_dim),
            w.bias.len(),
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
        })
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
    let pipeline = ctx.pipeline(&kernel(act, residual))?;
    let params = ctx.uniform(
        "matmul params",
        [
            rows as u32,
            w.in_dim as u32,
            w.in_words as u32,
            w.out_dim as u32,
        ],
    );
    let bind_group = ctx.bind(
        &pipeline,
        "matmul",
        &[&params, x, &w.words, &w.scale, &w.bias, y],
    );
    Ok(Dispatch {
        pipeline,
        bind_group,
        workgroups: [col_tiles.max(1) as u32, row_tiles.max(1) as u32, 1],
    })
}

/// Runs `kernels/matmul_int8.wgsl` once: `x` `[n, in]`, int8 layer `w` (`[out, in]` with
/// per-row scales), optional `residual` `[n, out]`; returns `[n, out]`.
/// Compare with [`matmul_int8_reference`].
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

#[cfg(test)]
mod tests {
    use super::*;

    /// erf by its Maclaurin series in f64 (accurate to ~1e-12 for |x| <= 4).
    fn erf_series(x: f64) -> f64 {
        let mut term = x;
        let mut sum = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_approx_accuracy() {
        let mut worst = 0.0f64;
        for i in -4000..=4000 {
            let x = i as f32 / 1000.0;
            worst = worst.max((erf_approx(x) as f64 - erf_series(x as f64)).abs());
        }
        eprintln!("erf_approx max abs error on [-4, 4]: {worst:.3e}");
        // 1.5e-7 for the formula plus f32 evaluation error (cancellation in `1 - poly·exp`
        // near 0); measured 4.7e-7.
        assert!(worst < 6e-7, "erf_approx error {worst}");
        assert_eq!(erf_approx(10.0), 1.0);
        assert_eq!(erf_approx(-10.0), -1.0);
    }

    #[test]
    fn reference_int8_equals_dequantised_f32() {
        use crate::util::rng::SplitMix64;
        let mut rng = SplitMix64::new(3);
        let (n, out, inp) = (5, 7, 9);
        let wf = Linear {
            out_dim: out,
            in_dim: inp,
            weight: LinearWeight::F32(rng.uniform_vec(out * inp, -1.0, 1.0)),
            bias: rng.uniform_vec(out, -1.0, 1.0),
        };
        let wq = wf.quantized();
        let wdq = Linear {
            weight: LinearWeight::F32(wq.weight_f32().into_owned()),
            ..wf.clone()
        };
        let x = rng.uniform_vec(n * inp, -2.0, 2.0);
        let a = matmul_int8_reference(&x, n, &wq, Activation::Gelu, None);
        let b = matmul_int8_reference(&x, n, &wdq, Activation::Gelu, None);
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() < 1e-5, "{u} vs {v}");
        }
    }
}
