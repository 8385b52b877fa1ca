//! `kernels/flash_attention.wgsl`: multi-head self-attention for long token sequences (gene
//! tokens), keys and values streamed through workgroup memory in tiles with an online softmax,
//! so no `T × T` scores are written anywhere. Reference:
//! `engine::ops::flash_attention_reference`.
//!
//! Both online-softmax kernels (this one and `kernels/cross_attention.wgsl`) keep a query's
//! `q` and its accumulator in `ceil(hd/4)` vec4 registers and have every loop over the head
//! dimension unrolled into straight-line code ([`head_code`]), so per invocation the only
//! loops run over key tiles and the keys of a tile. Besides keeping `q`/`acc` out of
//! dynamically indexed (scratch) memory, this keeps the kernels correct on lavapipe:
//! llvmpipe's shader compiler gives every shader invocation one budget of
//! [`LLVMPIPE_LOOP_ITERATIONS`] loop iterations, shared by all its loops
//! (`LP_MAX_TGSI_LOOP_ITERATIONS` in Mesa's gallivm), and silently leaves every loop once it
//! is spent. The first version looped over the head dimension for every key (≈ 2·T·hd
//! iterations: 68k at T 513 / hd 64, 140k at T 513 / hd 128) and returned wrong results (≈ 0.2
//! off) from about 512 keys at head dim ≥ 64; now T 4096 at hd 128 takes ≈ 10.5k. [`check_loop_budget`] refuses a launch that
//! would still exceed it on llvmpipe instead of returning wrong numbers.

use super::attention::score_scale;
use super::context::{check_len, fold_workgroups, Dispatch, GpuContext, Kernel};
use super::error::GpuError;

/// Queries per workgroup (one invocation each; WebGPU's default limit is 256).
const WG: usize = 64;

const TEMPLATE: &str = include_str!("../../kernels/flash_attention.wgsl");

/// Loop iterations llvmpipe (lavapipe) allows one shader invocation over all its loops
/// together before it leaves every loop early (Mesa `LP_MAX_TGSI_LOOP_ITERATIONS`).
pub(crate) const LLVMPIPE_LOOP_ITERATIONS: u64 = 65_535;

/// vec4 registers per query / accumulator: `ceil(head_dim / 4)`.
pub(crate) fn head_vec4(head_dim: usize) -> usize {
    head_dim.div_ceil(4)
}

/// Keys per tile for heads of `head_dim` (shared with the reference): key and value tiles of
/// `tile · ceil(hd/4)` vec4 each stay within WebGPU's default 16 KiB of workgroup memory.
pub(crate) fn key_tile(head_dim: usize) -> usize {
    (512 / head_vec4(head_dim).max(1)).clamp(1, MAX_KEY_TILE)
}

/// Most keys per tile.
pub(crate) const MAX_KEY_TILE: usize = 32;

/// Loop iterations one invocation of an online-softmax kernel runs over `keys` keys with
/// `wg` invocations per workgroup: per key tile one tile-loop iteration, the tile load
/// (`ceil(tile · ceil(hd/4) / wg)` vec4 loads per invocation), and two passes over the tile's
/// keys (scores, then the accumulator); the head dimension is unrolled.
pub(crate) fn loop_iterations(keys: usize, head_dim: usize, wg: usize) -> u64 {
    let kt = key_tile(head_dim);
    let per_tile = 1 + (kt * head_vec4(head_dim)).div_ceil(wg.max(1)) + 2 * kt;
    (keys.div_ceil(kt) * per_tile) as u64
}

/// Refuses a launch whose invocations would run more than [`LLVMPIPE_LOOP_ITERATIONS`] loop
/// iterations on llvmpipe (lavapipe), where the driver would silently cut the loops short;
/// other adapters have no such budget.
pub(crate) fn check_loop_budget(ctx: &GpuContext, kernel: &str, iterations: u64) -> Result<(), GpuError> {
    if iterations <= LLVMPIPE_LOOP_ITERATIONS || !ctx.adapter.get_info().name.to_ascii_lowercase().contains("llvmpipe") {
        return Ok(());
    }
    Err(GpuError::LoopBudget { kernel: kernel.to_string(), iterations, limit: LLVMPIPE_LOOP_ITERATIONS })
}

/// The head-dimension code of the online-softmax kernels, unrolled for `head_dim`: the
/// `(placeholder, WGSL)` pairs `LOAD_Q` (`q` from `q_expr` with `{e}` the element index, zero
/// for invalid queries), `DOT` (`dot` = `q · k_tile[kb ..]` summed element by element in
/// order, as the reference does), `RESCALE` (`acc *= c`), `UPDATE` (`acc += pj · v_tile[kb ..]`)
/// and `STORE` (`out[o_base + e] = acc · inv`).
pub(crate) fn head_code(head_dim: usize, q_expr: &str) -> Vec<(&'static str, String)> {
    let comp = ["x", "y", "z", "w"];
    let (mut load, mut dot, mut rescale, mut update, mut store) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for c in 0..head_vec4(head_dim) {
        // Components of this vec4 inside the head (the last one may be padding).
        let inside = (head_dim - 4 * c).min(4);
        let lanes: Vec<String> = (0..4)
            .map(|i| match i < inside {
                true => format!("select(0.0, {}, valid)", q_expr.replace("{e}", &format!("{}u", 4 * c + i))),
                false => "0.0".to_string(),
            })
            .collect();
        load.push(format!("    q[{c}] = vec4<f32>({});", lanes.join(", ")));
        let terms: Vec<String> = comp[..inside].iter().map(|n| format!("            dot += q[{c}].{n} * k4.{n};")).collect();
        dot.push(format!("        {{\n            let k4 = k_tile[kb + {c}u];\n{}\n        }}", terms.join("\n")));
        rescale.push(format!("        acc[{c}] = acc[{c}] * c;"));
        update.push(format!("            acc[{c}] += pj * v_tile[kb + {c}u];"));
        for (i, n) in comp[..inside].iter().enumerate() {
            store.push(format!("        out[o_base + {}u] = acc[{c}].{n} * inv;", 4 * c + i));
        }
    }
    // A leading newline keeps these multi-line snippets out of pipeline labels.
    let block = |v: Vec<String>| format!("\n{}", v.join("\n"));
    vec![("LOAD_Q", block(load)), ("DOT", block(dot)), ("RESCALE", block(rescale)), ("UPDATE", block(update)), ("STORE", block(store))]
}

/// The kernel specialised to `tokens` tokens of width `d_model` in `n_heads` heads.
pub(crate) fn kernel(tokens: u32, d_model: u32, n_heads: u32) -> Kernel {
    let head_dim = (d_model / n_heads.max(1)) as usize;
    let mut k = Kernel::new("flash_attention", TEMPLATE)
        .constant("WG", WG)
        .constant("TOKENS", tokens)
        .constant("D_MODEL", d_model)
        .constant("N_HEADS", n_heads)
        .constant("HEAD_DIM", head_dim)
        .constant("HEAD_VEC4", head_vec4(head_dim))
        .constant("KEY_TILE", key_tile(head_dim))
        .constant("SCALE", format!("{:?}", score_scale(head_dim)));
    for (name, code) in head_code(head_dim, "qkv[q_base + {e}]") {
        k = k.constant(name, code);
    }
    k
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
    let head_dim = d_model / n_heads.max(1);
    check_loop_budget(ctx, "flash_attention", loop_iterations(tokens, head_dim, WG))?;
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
