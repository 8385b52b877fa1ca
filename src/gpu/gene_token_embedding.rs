//! `kernels/gene_token_embedding.wgsl`: the tokens of a gene-token model, one per chosen
//! gene: `(x[c, genes[t]] · q[t]) · scale[t] + bias[t]`. Reference:
//! `engine::ops::gene_token_embedding_reference`.

use super::context::{check_len, fold_workgroups, Dispatch, GpuContext, Kernel};
use super::error::GpuError;

/// Invocations per workgroup.
const WG: usize = 64;

const TEMPLATE: &str = include_str!("../../kernels/gene_token_embedding.wgsl");

fn kernel(tokens: u32, d_model: u32, n_inputs: u32) -> Kernel {
    Kernel::new("gene_token_embedding", TEMPLATE)
        .constant("WG", WG)
        .constant("TOKENS", tokens)
        .constant("D_MODEL", d_model)
        .constant("N_INPUTS", n_inputs)
}

/// Gene-token weights resident on the GPU: the chosen input columns `[T]` (u32) and
/// `[3, T·D]` value vectors (int8 values as f32), scales and biases.
pub(crate) struct GpuGeneTokens {
    pub genes: wgpu::Buffer,
    pub weights: wgpu::Buffer,
    pub tokens: usize,
    pub d_model: usize,
    pub n_inputs: usize,
}

impl GpuGeneTokens {
    /// Uploads `genes` `[T]` (columns of an input row of `n_inputs`) and the value vectors
    /// `q` `[T·D]`, `scale` `[T·D]` and `bias` `[T·D]`.
    pub(crate) fn upload(ctx: &GpuContext, genes: &[usize], n_inputs: usize, q: &[f32], scale: &[f32], bias: &[f32]) -> Result<Self, GpuError> {
        let t = genes.len();
        let n = q.len();
        if t == 0 || !n.is_multiple_of(t) || scale.len() != n || bias.len() != n || genes.iter().any(|&g| g >= n_inputs) {
            return Err(GpuError::InputShape {
                what: format!("gene tokens: {t} genes (each < {n_inputs}) and value/scale/bias vectors [T*D] ({n}, {}, {})", scale.len(), bias.len()),
                expected: n,
                found: scale.len().min(bias.len()),
            });
        }
        let idx: Vec<u32> = genes.iter().map(|&g| g as u32).collect();
        let w: Vec<f32> = q.iter().chain(scale).chain(bias).copied().collect();
        Ok(Self {
            genes: ctx.storage_init("gene token columns", bytemuck::cast_slice(&idx))?,
            weights: ctx.storage_init("gene token value vectors", bytemuck::cast_slice(&w))?,
            tokens: t,
            d_model: n / t,
            n_inputs,
        })
    }

    /// One launch over `n_cells` rows of `x` writing `out` `[cells·T, D]`.
    pub(crate) fn dispatch(&self, ctx: &GpuContext, x: &wgpu::Buffer, out: &wgpu::Buffer, n_cells: usize) -> Result<Dispatch, GpuError> {
        let pipeline = ctx.pipeline(&kernel(self.tokens as u32, self.d_model as u32, self.n_inputs as u32))?;
        let params = ctx.uniform("gene_token_embedding params", [n_cells as u32, 0, 0, 0]);
        let bind_group = ctx.bind(&pipeline, "gene_token_embedding", &[&params, x, &self.genes, &self.weights, out]);
        let total = (n_cells * self.tokens * self.d_model).div_ceil(WG);
        Ok(Dispatch { pipeline, bind_group, workgroups: fold_workgroups(total, "gene_token_embedding")? })
    }
}

/// Runs `kernels/gene_token_embedding.wgsl` once on `x` `[n_cells, n_inputs]`; returns
/// `[n_cells · T, D]`. Compare with `engine::ops::gene_token_embedding_reference`.
#[allow(clippy::too_many_arguments)]
pub async fn gene_token_embedding(
    ctx: &GpuContext,
    x: &[f32],
    n_cells: usize,
    n_inputs: usize,
    genes: &[usize],
    q: &[f32],
    scale: &[f32],
    bias: &[f32],
) -> Result<Vec<f32>, GpuError> {
    check_len(|| format!("gene_token_embedding x [cells={n_cells}, inputs={n_inputs}]"), x.len(), n_cells * n_inputs)?;
    let w = GpuGeneTokens::upload(ctx, genes, n_inputs, q, scale, bias)?;
    let xb = ctx.storage_init("gene_token_embedding x", bytemuck::cast_slice(x))?;
    let len = n_cells * q.len();
    let ob = ctx.storage_zeroed("gene_token_embedding out", len)?;
    let d = w.dispatch(ctx, &xb, &ob, n_cells)?;
    ctx.run_and_read("gene_token_embedding", &[d], &ob, len).await
}
