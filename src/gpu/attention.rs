//! `kernels/attention.wgsl`: multi-head self-attention over each cell's `T` tokens.

use super::context::{check_len, fold_workgroups, Dispatch, GpuContext, Kernel};
use super::error::GpuError;

/// Invocations per workgroup.
const WG: usize = 64;

const TEMPLATE: &str = include_str!("../../kernels/attention.wgsl");

/// `1 / sqrt(head_dim)`, the score scale (shared by kernel and reference).
fn score_scale(head_dim: usize) -> f32 {
    1.0 / (head_dim as f32).sqrt()
}

/// The kernel specialised to `tokens` tokens of width `d_model` in `n_heads` heads.
pub(crate) fn kernel(tokens: u32, d_model: u32, n_heads: u32) -> Kernel {
    let head_dim = (d_model / n_heads.max(1)) as usize;
    Kernel::new("attention", TEMPLATE)
        .constant("WG", WG)
        .constant("TOKENS", tokens)
        .constant("D_MODEL", d_model)
        .constant("N_HEADS", n_heads)
        .constant("HEAD_DIM", head_dim)
        // `{:?}` prints an exact, round-trippable literal with a decimal point or exponent.
        .constant("SCALE", format!("{:?}", score_scale(head_dim)))
}

/// Plain-Rust reference of the attention kernel without a bias
/// ([`attention_biased_reference`] with `None`).
pub fn attention_reference(
    qkv: &[f32],
    n_cells: usize,
    tokens: usize,
    d_model: usize,
    n_heads: usize,
) -> Vec<f32> {
    attention_biased_reference(qkv, None, n_cells, tokens, d_model, n_heads)
}

/// Plain-Rust reference of the attention kernel.
///
/// `qkv` is `[n_cells * tokens, 3 * d_model]` (per token: q, then k, then v); returns
/// `[n_cells * tokens, d_model]` with heads concatenated. Per (cell, head, query i):
/// `p = softmax_l((q_i · k_l) / sqrt(d_model / n_heads) + bias[head, i, l])` (two-pass, max
/// subtracted) and `out_i = Σ_l p_l v_l`. `bias` is `[n_heads, tokens, tokens]`, shared by
/// all cells.
///
/// # Panics
/// If `qkv` or `bias` has the wrong length or `n_heads` does not divide `d_model`.
pub fn attention_biased_reference(
    qkv: &[f32],
    bias: Option<&[f32]>,
    n_cells: usize,
    tokens: usize,
    d_model: usize,
    n_heads: usize,
) -> Vec<f32> {
    if let Some(b) = bias {
        assert_eq!(b.len(), n_heads * tokens * tokens, "attention reference: bias must be [H, T, T]");
    }
    assert!(
        n_heads > 0 && d_model.is_multiple_of(n_heads),
        "attention reference: n_heads {n_heads} must divide d_model {d_model}"
    );
    assert_eq!(
        qkv.len(),
        n_cells * tokens * 3 * d_model,
        "attention reference: qkv must be [cells*T, 3D]"
    );
    let hd = d_model / n_heads;
    let scale = score_scale(hd);
    let stride = 3 * d_model;
    let mut out = vec![0.0f32; n_cells * tokens * d_model];
    let mut scores = vec![0.0f32; tokens];
    for cell in 0..n_cells {
        let rows = &qkv[cell * tokens * stride..(cell + 1) * tokens * stride];
        for head in 0..n_heads {
            let off = head * hd;
            for i in 0..tokens {
                let q = &rows[i * stride + off..i * stride + off + hd];
                for (l, s) in scores.iter_mut().enumerate() {
                    let k = &rows[l * stride + d_model + off..l * stride + d_model + off + hd];
                    *s = q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale
                        + bias.map_or(0.0, |b| b[(head * tokens + i) * tokens + l]);
                }
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut denom = 0.0f32;
                for s in scores.iter_mut() {
                    *s = (*s - max).exp();
                    denom += *s;
                }
                let o = &mut out
                    [(cell * tokens + i) * d_model + off..(cell * tokens + i) * d_model + off + hd];
                for (l, &p) in scores.iter().enumerate() {
                    let v =
                        &rows[l * stride + 2 * d_model + off..l * stride + 2 * d_model + off + hd];
                    for (oe, ve) in o.iter_mut().zip(v) {
                        *oe += p / denom * ve;
                    }
                }
            }
        }
    }
    out
}

/// One attention launch over `n_cells` cells, reading `qkv` and the score bias `bias`
/// `[n_heads, tokens, tokens]` (a zero buffer for none) and writing `out`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_dispatch(
    ctx: &GpuContext,
    qkv: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    out: &wgpu::Buffer,
    n_cells: usize,
    tokens: usize,
    d_model: usize,
    n_heads: usize,
) -> Result<Dispatch, GpuError> {
    let pipeline = ctx.pipeline(&kernel(tokens as u32, d_model as u32, n_heads as u32))?;
    let params = ctx.uniform("attention params", [n_cells as u32, 0, 0, 0]);
    let bind_group = ctx.bind(&pipeline, "attention", &[&params, qkv, out, bias]);
    let invocations = n_cells * n_heads * tokens;
    let workgroups = fold_workgroups(invocations.div_ceil(WG), "attention")?;
    Ok(Dispatch {
        pipeline,
        bind_group,
        workgroups,
    })
}

/// Runs `kernels/attention.wgsl` once on `qkv` `[n_cells * tokens, 3 * d_model]` without a
/// bias; returns `[n_cells * tokens, d_model]`. Compare with [`attention_reference`].
pub async fn attention(
    ctx: &GpuContext,
    qkv: &[f32],
    n_cells: usize,
    tokens: usize,
    d_model: usize,
    n_heads: usize,
) -> Result<Vec<f32>, GpuError> {
    attention_biased(ctx, qkv, None, n_cells, tokens, d_model, n_heads).await
}

/// Runs `kernels/attention.wgsl` once on `qkv` `[n_cells * tokens, 3 * d_model]` with an
/// optional additive score bias `[n_heads, tokens, tokens]`; returns
/// `[n_cells * tokens, d_model]`. Compare with [`attention_biased_reference`].
pub async fn attention_biased(
    ctx: &GpuContext,
    qkv: &[f32],
    bias: Option<&[f32]>,
    n_cells: usize,
    tokens: usize,
    d_model: usize,
    n_heads: usize,
) -> Result<Vec<f32>, GpuError> {
    if n_heads == 0 || !d_model.is_multiple_of(n_heads) {
        return Err(GpuError::InputShape {
            what: format!("attention: n_heads {n_heads} must divide d_model {d_model}"),
            expected: d_model,
            found: n_heads,
        });
    }
    check_len(
        || {
            format!(
                "attention qkv [cells*T={}, 3D={}]",
                n_cells * tokens,
                3 * d_model
            )
        },
        qkv.len(),
        n_cells * tokens * 3 * d_model,
    )?;
    let n_bias = n_heads * tokens * tokens;
    if let Some(b) = bias {
        check_len(|| format!("attention bias [H={n_heads}, T={tokens}, T={tokens}]"), b.len(), n_bias)?;
    }
    let len = n_cells * tokens * d_model;
    let qb = ctx.storage_init("attention qkv", bytemuck::cast_slice(qkv))?;
    let bb = match bias {
        Some(b) => ctx.storage_init("attention bias", bytemuck::cast_slice(b))?,
        None => ctx.storage_zeroed("attention bias (none)", n_bias)?,
    };
    let ob = ctx.storage_zeroed("attention out", len)?;
    let d = attention_dispatch(ctx, &qb, &bb, &ob, n_cells, tokens, d_model, n_heads)?;
    ctx.run_and_read("attention", &[d], &ob, len).await
}
