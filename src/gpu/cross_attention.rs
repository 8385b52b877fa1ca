//! `kernels/cross_attention.wgsl`: multi-head cross-attention, queries `[n·Tq, D]` from one
//! buffer and keys/values `[n·Tk, 2D]` from another (SPATIA's cell level: image tokens query
//! gene tokens), keys and values streamed through workgroup memory in tiles with an online
//! softmax, so no `Tq × Tk` scores are written anywhere. Reference:
//! `engine::ops::cross_attention_reference`.

use super::attention::score_scale;
use super::context::{check_len, fold_workgroups, Dispatch, GpuContext, Kernel};
use super::error::GpuError;
use super::flash_attention::{check_loop_budget, head_code, head_vec4, key_tile, loop_iterations};

const TEMPLATE: &str = include_str!("../../kernels/cross_attention.wgsl");

/// Queries per workgroup (one invocation each): `Tq` rounded up to a power of two, 8 to 64.
fn workgroup_size(q_tokens: usize) -> usize {
    q_tokens.next_power_of_two().clamp(8, 64)
}

/// The kernel specialised to `q_tokens` queries over `kv_tokens` keys of width `d_model` in
/// `n_heads` heads.
pub(crate) fn kernel(q_tokens: usize, kv_tokens: usize, d_model: usize, n_heads: usize) -> Kernel {
    let head_dim = d_model / n_heads.max(1);
    let mut k = Kernel::new("cross_attention", TEMPLATE)
        .constant("WG", workgroup_size(q_tokens))
        .constant("Q_TOKENS", q_tokens)
        .constant("KV_TOKENS", kv_tokens)
        .constant("D_MODEL", d_model)
        .constant("N_HEADS", n_heads)
        .constant("HEAD_DIM", head_dim)
        .constant("HEAD_VEC4", head_vec4(head_dim))
        .constant("KEY_TILE", key_tile(head_dim))
        .constant("SCALE", format!("{:?}", score_scale(head_dim)));
    for (name, code) in head_code(head_dim, "q_in[q_base + {e}]") {
        k = k.constant(name, code);
    }
    k
}

/// Builds the pipeline now (at model upload) so the first forward does not compile it.
pub(crate) fn compile_cross_attention(ctx: &GpuContext, q_tokens: usize, kv_tokens: usize, d_model: usize, n_heads: usize) -> Result<(), GpuError> {
    ctx.pipeline(&kernel(q_tokens, kv_tokens, d_model, n_heads)).map(|_| ())
}

/// One launch over `n` cells reading `q` `[n·Tq, D]` and `kv` `[n·Tk, 2D]`, writing `out`
/// `[n·Tq, D]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn cross_attention_dispatch(
    ctx: &GpuContext,
    q: &wgpu::Buffer,
    kv: &wgpu::Buffer,
    out: &wgpu::Buffer,
    n: usize,
    q_tokens: usize,
    kv_tokens: usize,
    d_model: usize,
    n_heads: usize,
) -> Result<Dispatch, GpuError> {
    check_loop_budget(ctx, "cross_attention", loop_iterations(kv_tokens, d_model / n_heads.max(1), workgroup_size(q_tokens)))?;
    let pipeline = ctx.pipeline(&kernel(q_tokens, kv_tokens, d_model, n_heads))?;
    let params = ctx.uniform("cross_attention params", [n as u32, 0, 0, 0]);
    let bind_group = ctx.bind(&pipeline, "cross_attention", &[&params, q, kv, out]);
    let workgroups = n * n_heads * q_tokens.div_ceil(workgroup_size(q_tokens));
    Ok(Dispatch { pipeline, bind_group, workgroups: fold_workgroups(workgroups, "cross_attention")? })
}

/// Runs `kernels/cross_attention.wgsl` once: `q` `[n·Tq, D]` (heads concatenated), `kv`
/// `[n·Tk, 2D]` (per key row its key, then its value); returns `[n·Tq, D]`. Compare with
/// `engine::ops::cross_attention_reference`.
///
/// Errors: `n_heads` not dividing `d_model`, no query or key tokens, mis-sized buffers.
#[allow(clippy::too_many_arguments)]
pub async fn cross_attention(
    ctx: &GpuContext,
    q: &[f32],
    kv: &[f32],
    n: usize,
    q_tokens: usize,
    kv_tokens: usize,
    d_model: usize,
    n_heads: usize,
) -> Result<Vec<f32>, GpuError> {
    if n_heads == 0 || !d_model.is_multiple_of(n_heads) || q_tokens == 0 || kv_tokens == 0 {
        return Err(GpuError::InputShape {
            what: format!("cross_attention: n_heads {n_heads} must divide d_model {d_model}, and query tokens ({q_tokens}) and key tokens ({kv_tokens}) be positive"),
            expected: d_model,
            found: n_heads,
        });
    }
    check_len(|| format!("cross_attention q [n*Tq={}, D={d_model}]", n * q_tokens), q.len(), n * q_tokens * d_model)?;
    check_len(|| format!("cross_attention kv [n*Tk={}, 2D={}]", n * kv_tokens, 2 * d_model), kv.len(), n * kv_tokens * 2 * d_model)?;
    let len = n * q_tokens * d_model;
    let qb = ctx.storage_init("cross_attention q", bytemuck::cast_slice(q))?;
    let kvb = ctx.storage_init("cross_attention kv", bytemuck::cast_slice(kv))?;
    let ob = ctx.storage_zeroed("cross_attention out", len)?;
    let d = cross_attention_dispatch(ctx, &qb, &kvb, &ob, n, q_tokens, kv_tokens, d_model, n_heads)?;
    ctx.run_and_read("cross_attention", &[d], &ob, len).await
}
