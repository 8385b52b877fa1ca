//! `kernels/flash_attention.wgsl`: multi-head self-attention for long token sequences (gene
//! tokens), keys and values streamed through workgroup memory in tiles with an online softmax,
//! so no `T × T` scores are written anywhere. Reference:
//! `engine::ops::flash_attention_reference`.

use super::attention::score_scale;
use super::context::{check_len, fold_workgroups, Dispatch, GpuContext, Kernel};
use super::error::GpuError;

/// Queries per workgroup (one invocation each; WebGPU's default limit is 256).
const WG: usize = 64;

const TEMPLATE: &str = include_str!("../../kernels/flash_attention.wgsl");

/// Keys per tile for heads of `head_dim` (shared with the reference).
pub(crate) fn key_tile(head_dim: usize) -> usize {
    (2048 / head_dim.max(1)).clamp(1, MAX_KEY_TILE)
}

/// Most keys per tile.
pub(crate) const MAX_KEY_TILE: usize = 32;

/// The kernel specialised to `tokens` tokens of width `d_model` in `n_heads` heads.
pub(crate) fn kernel(tokens: u32, d_model: u32, n_heads: u32) -> Kernel {
    let head_dim = (d_model / n_heads.max(1)) as usize;
    Kernel::new("flash_attention", TEMPLATE)
        .constant("WG", WG)
        .constant("TOKENS", tokens)
        .constant("D_MODEL", d_model)
        .constant("N_HEADS", n_heads)
        .constant("HEAD_DIM", head_dim)
        .constant("KEY_TILE", key_tile(head_dim))
        .constant("SCALE", format!("{:?}", score_scale(head_dim)))
}

/// Builds the pipeline now (at model upload) so the first forward does not compile it.
pub(crate) fn compile_flash_attention(ctx: &GpuContext, tokens: usize, d_model: usize, n_heads: usize) -> Result<(), GpuError> {
    ctx.pipeline(&kernel(tokens as u32, d_model as u32, n_heads as u32)).map(|_| ())
}

/// One launch over `n_cells` cells reading `qkv` `[cells·T, 3D]` and writing `out`
/// `[cells·T, D]`.
pub(crate) fn flash_attention_dispatch(
    ctx: &GpuContext,
    qkv: &wgpu::Buffer,
    out: &wgpu::Buffer,
    n_cells: usize,
    tokens: usize,
    d_model: usize,
    n_heads: usize,
) -> Result<Dispatch, GpuError> {
    let pipeline = ctx.pipeline(&kernel(tokens as u32, d_model as u32, n_heads as u32))?;
    let params = ctx.uniform("flash_attention params", [n_cells as u32, 0, 0, 0]);
    let bind_group = ctx.bind(&pipeline, "flash_attention", &[&params, qkv, out]);
    let workgroups = n_cells * n_heads * tokens.div_ceil(WG);
    Ok(Dispatch { pipeline, bind_group, workgroups: fold_workgroups(workgroups, "flash_attention")? })
}

/// Runs `kernels/flash_attention.wgsl` once on `qkv` `[n_cells * tokens, 3 * d_model]`;
/// returns `[n_cells * tokens, d_model]`. Compare with
/// `engine::ops::flash_attention_reference`.
pub async fn flash_attention(
    ctx: &GpuContext,
    qkv: &[f32],
    n_cells: usize,
    tokens: usize,
    d_model: usize,
    n_heads: usize,
) -> Result<Vec<f32>, GpuError> {
    if n_heads == 0 || !d_model.is_multiple_of(n_heads) || tokens == 0 {
        return Err(GpuError::InputShape {
            what: format!("flash_attention: n_heads {n_heads} must divide d_model {d_model} and tokens ({tokens}) be positive"),
            expected: d_model,
            found: n_heads,
        });
    }
    check_len(|| format!("flash_attention qkv [cells*T={}, 3D={}]", n_cells * tokens, 3 * d_model), qkv.len(), n_cells * tokens * 3 * d_model)?;
    let len = n_cells * tokens * d_model;
    let qb = ctx.storage_init("flash_attention qkv", bytemuck::cast_slice(qkv))?;
    let ob = ctx.storage_zeroed("flash_attention out", len)?;
    let d = flash_attention_dispatch(ctx, &qb, &ob, n_cells, tokens, d_model, n_heads)?;
    ctx.run_and_read("flash_attention", &[d], &ob, len).await
}
