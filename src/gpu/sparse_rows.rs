//! `kernels/sparse_rows.wgsl`: rows as sparse weighted sums of another matrix's rows (a CSR
//! matrix times a dense one) plus an optional dense bias — SPATIA's gathers and segment means
//! between levels. Reference: `engine::ops::sparse_rows_reference`.

use super::context::{check_len, fold_workgroups, Dispatch, GpuContext, Kernel};
use super::error::GpuError;

/// Invocations per workgroup.
const WG: usize = 64;

const TEMPLATE: &str = include_str!("../../kernels/sparse_rows.wgsl");

/// The kernel, with or without the bias.
pub(crate) fn kernel(has_bias: bool) -> Kernel {
    Kernel::new("sparse_rows", TEMPLATE).constant("WG", WG).constant("HAS_BIAS", u32::from(has_bias))
}

/// A CSR matrix resident on the GPU: `offsets` `[rows + 1]`, `cols` and `weights` `[nnz]`.
pub(crate) struct GpuCsr {
    pub offsets: wgpu::Buffer,
    pub cols: wgpu::Buffer,
    pub weights: wgpu::Buffer,
    pub rows: usize,
}

impl GpuCsr {
    /// Uploads a CSR matrix after checking it: `offsets` non-decreasing from 0 to `nnz`, every
    /// column below `x_rows`.
    pub(crate) fn upload(ctx: &GpuContext, offsets: &[u32], cols: &[u32], weights: &[f32], x_rows: usize, name: &str) -> Result<Self, GpuError> {
        check_csr(offsets, cols, weights, x_rows, name)?;
        Ok(Self {
            offsets: ctx.storage_init(&format!("{name} offsets"), bytemuck::cast_slice(offsets))?,
            cols: ctx.storage_init(&format!("{name} columns"), bytemuck::cast_slice(cols))?,
            weights: ctx.storage_init(&format!("{name} weights"), bytemuck::cast_slice(weights))?,
            rows: offsets.len() - 1,
        })
    }
}

fn check_csr(offsets: &[u32], cols: &[u32], weights: &[f32], x_rows: usize, name: &str) -> Result<(), GpuError> {
    let bad = |reason: String| Err(GpuError::InvalidInput { what: format!("{name} (CSR matrix)"), reason });
    check_len(|| format!("{name} weights [nnz = {}]", cols.len()), weights.len(), cols.len())?;
    if offsets.first() != Some(&0) || offsets.last().map(|&o| o as usize) != Some(cols.len()) {
        return bad(format!("offsets must run from 0 to nnz = {} ({} offsets given)", cols.len(), offsets.len()));
    }
    if let Some(i) = offsets.windows(2).position(|w| w[1] < w[0]) {
        return bad(format!("offsets[{}] = {} < offsets[{i}] = {}", i + 1, offsets[i + 1], offsets[i]));
    }
    if let Some(j) = cols.iter().position(|&c| c as usize >= x_rows) {
        return bad(format!("column {} at entry {j} is not below the {x_rows} rows of x", cols[j]));
    }
    Ok(())
}

/// One launch: `out[rows, dim] = csr · x[x_rows, dim] (+ bias[rows, dim])`.
pub(crate) fn sparse_rows_dispatch(
    ctx: &GpuContext,
    csr: &GpuCsr,
    x: &wgpu::Buffer,
    bias: Option<&wgpu::Buffer>,
    out: &wgpu::Buffer,
    dim: usize,
) -> Result<Dispatch, GpuError> {
    let pipeline = ctx.pipeline(&kernel(bias.is_some()))?;
    let params = ctx.uniform("sparse_rows params", [csr.rows as u32, dim as u32, 0, 0]);
    // Without a bias the binding is never read: bind x in its place.
    let bind_group = ctx.bind(&pipeline, "sparse_rows", &[&params, &csr.offsets, &csr.cols, &csr.weights, x, bias.unwrap_or(x), out]);
    Ok(Dispatch { pipeline, bind_group, workgroups: fold_workgroups((csr.rows * dim).div_ceil(WG), "sparse_rows")? })
}

/// Runs `kernels/sparse_rows.wgsl` once: the CSR matrix (`offsets` `[rows + 1]`, `cols`,
/// `weights` `[nnz]`) times `x` `[x_rows, dim]`, plus `bias` `[rows, dim]` if given; returns
/// `[rows, dim]`. Compare with `engine::ops::sparse_rows_reference`.
///
/// Errors: a malformed CSR matrix (offsets not running from 0 to nnz, decreasing, a column
/// outside `x`), mis-sized `x` or `bias`.
#[allow(clippy::too_many_arguments)]
pub async fn sparse_rows(ctx: &GpuContext, offsets: &[u32], cols: &[u32], weights: &[f32], x: &[f32], x_rows: usize, dim: usize, bias: Option<&[f32]>) -> Result<Vec<f32>, GpuError> {
    check_len(|| format!("sparse_rows x [rows={x_rows}, dim={dim}]"), x.len(), x_rows * dim)?;
    if offsets.is_empty() {
        return Err(GpuError::InputShape { what: "sparse_rows offsets [rows + 1]".into(), expected: 1, found: 0 });
    }
    let rows = offsets.len() - 1;
    if let Some(b) = bias {
        check_len(|| format!("sparse_rows bias [rows={rows}, dim={dim}]"), b.len(), rows * dim)?;
    }
    let csr = GpuCsr::upload(ctx, offsets, cols, weights, x_rows, "sparse_rows")?;
    let xb = ctx.storage_init("sparse_rows x", bytemuck::cast_slice(x))?;
    let bb = bias.map(|b| ctx.storage_init("sparse_rows bias", bytemuck::cast_slice(b))).transpose()?;
    let ob = ctx.storage_zeroed("sparse_rows out", rows * dim)?;
    let d = sparse_rows_dispatch(ctx, &csr, &xb, bb.as_ref(), &ob, dim)?;
    ctx.run_and_read("sparse_rows", &[d], &ob, rows * dim).await
}
