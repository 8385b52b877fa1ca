//! `kernels/sinkhorn_lse.wgsl` and `kernels/sinkhorn_reduce.wgsl`: log-domain Sinkhorn between
//! two point clouds on the GPU, recomputing costs in tiles (the `n × m` cost is never stored).
//!
//! This is the device side of [`crate::ot::sinkhorn`] (engine
//! [`crate::ot::SinkhornEngine::Gpu`]); the numerics are defined by
//! [`crate::ot::sinkhorn_log_domain_reference`].
//!
//! Dispatches: 2 per iteration (g half-step, f half-step) plus, every `check_every`
//! iterations, one reduction of the marginal error and a 12-byte readback. The marginal error
//! of the current plan is a by-product of the next g half-step, whose result is kept (ping-pong
//! buffers) so the check costs no extra pass over the points.
//!
//! Buffers: points `[n, stride]` and `[m, stride]` (`stride = 4⌈d/4⌉`, plus 4 with the
//! spatial penalty), and `O(n + m)` floats of potentials and errors; e.g. 100k × 100k at
//! d = 50 needs ≈ 45 MB in all, far below the 128 MiB-per-binding WebGPU default, and
//! ⌈100k / 128⌉ = 782 workgroups per dispatch.
//!
//! Kernel shape: 64 invocations per workgroup, each keeping 1, 2 or 4 row points in registers
//! (≤ 128 floats: 2 rows at d = 50), and tiles of up to 64 column points in workgroup memory
//! (≤ 16 KiB).

use wgpu::util::DeviceExt;

use super::context::{fold_workgroups, Dispatch, GpuContext, Kernel};
use super::error::GpuError;

/// Invocations per workgroup of the LSE kernel.
const WG: u32 = 64;
/// Most row-point floats one invocation keeps in registers (`rows × stride`): register
/// blocking up to this budget (d = 50 → 2 rows; d ≤ 32 → 4 rows).
const ROW_REGISTER_FLOATS: u32 = 128;
/// Invocations of the reduction kernel.
const REDUCE_WG: u32 = 256;
/// Upper bound on columns per shared tile.
const MAX_TILE: u32 = 64;
/// Workgroup memory available to one kernel under the WebGPU default limits.
const WORKGROUP_BYTES: u32 = 16_384;

const LSE_TEMPLATE: &str = include_str!("../../kernels/sinkhorn_lse.wgsl");
const REDUCE_TEMPLATE: &str = include_str!("../../kernels/sinkhorn_reduce.wgsl");

/// Largest expression dimension the kernel accepts (the tile must hold ≥ 4 points).
pub(crate) const MAX_SINKHORN_DIM: usize = 1000;

/// What one LSE pass computes (the kernel's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Update = 0,
    MaxCost = 1,
    Assign = 2,
}

/// Kernel shape: expression dims, floats per point, tile, cost flavour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LseShape {
    pub dim: u32,
    pub stride: u32,
    pub tile: u32,
    /// Rows per invocation (1, 2 or 4).
    pub rows: u32,
    pub squared: bool,
    pub spatial: bool,
}

impl LseShape {
    fn new(dim: usize, squared: bool, spatial: bool) -> Result<Self, GpuError> {
        if dim == 0 || dim > MAX_SINKHORN_DIM {
            return Err(GpuError::InputShape {
                what: format!(
                    "Sinkhorn point dimension (1..={MAX_SINKHORN_DIM}; reduce the PCA dimension)"
                ),
                expected: MAX_SINKHORN_DIM,
                found: dim,
            });
        }
        let stride = (dim.div_ceil(4) * 4 + if spatial { 4 } else { 0 }) as u32;
        let tile = (WORKGROUP_BYTES / 4 / (stride + 1)).min(MAX_TILE);
        Ok(LseShape {
            dim: dim as u32,
            stride,
            tile,
            rows: match ROW_REGISTER_FLOATS / stride {
                0 | 1 => 1,
                2 | 3 => 2,
                _ => 4,
            },
            squared,
            spatial,
        })
    }
}

/// The LSE kernel specialised to `s`: the shape's constants plus the generated code that
/// loads the row points, folds one tile column per row and writes the results.
pub(crate) fn lse_kernel(s: &LseShape) -> Kernel {
    let d4 = s.dim.div_ceil(4);
    let s4 = s.stride / 4;
    let mut load = String::new();
    let mut pairs = String::new();
    let mut finish = String::new();
    for r in 0..s.rows {
        load.push_str(&format!(
            "    let row{r} = first + {r}u * WG;\n    \
             let base{r} = select(0u, row{r}, row{r} < p.rows) * S4;\n    \
             var st{r} = Lse(NEG_BIG, 0.0, 0u);\n"
        ));
        for k in 0..s4 {
            load.push_str(&format!("    let x{r}_{k} = pts_row[base{r} + {k}u];\n"));
        }
        finish.push_str(&format!("    finish(row{r}, st{r});\n"));
    }
    let indent = "            ";
    for r in 0..s.rows {
        pairs.push_str(&format!("{indent}var sq{r} = 0.0;\n"));
    }
    for k in 0..d4 {
        pairs.push_str(&format!("{indent}let y{k} = tile_pts[base + {k}u];\n"));
        for r in 0..s.rows {
            pairs.push_str(&format!(
                "{indent}let d{r}_{k} = x{r}_{k} - y{k};\n{indent}sq{r} += dot(d{r}_{k}, d{r}_{k});\n"
            ));
        }
    }
    for r in 0..s.rows {
        let dist = if s.spatial {
            format!("length(x{r}_{d4}.xy - tile_pts[base + {d4}u].xy)")
        } else {
            "0.0".to_string()
        };
        pairs.push_str(&format!(
            "{indent}fold(&st{r}, sq{r}, {dist}, h_t, j0 + t);\n"
        ));
    }
    Kernel::new("sinkhorn_lse", LSE_TEMPLATE)
        .constant("WG", WG)
        .constant("ROWS", s.rows)
        .constant("TILE", s.tile)
        .constant("S4", s4)
        .constant("SQUARED", u32::from(s.squared))
        .constant("LOAD_ROWS", load)
        .constant("PAIRS", pairs)
        .constant("FINISH", finish)
}

/// Pads points `[len, dim]` (+ positions) to the kernel layout `[len, stride]`: coordinates
/// zero-padded to a multiple of 4, then `(x, y, 0, 0)` when spatial.
pub(crate) fn pad_points(
    pts: &[f32],
    len: usize,
    dim: usize,
    stride: usize,
    pos: Option<&[f32]>,
) -> Vec<f32> {
    let mut out = vec![0f32; len * stride];
    let d4 = dim.div_ceil(4) * 4;
    for i in 0..len {
        out[i * stride..i * stride + dim].copy_from_slice(&pts[i * dim..(i + 1) * dim]);
        if let Some(pos) = pos {
            out[i * stride + d4] = pos[2 * i];
            out[i * stride + d4 + 1] = pos[2 * i + 1];
        }
    }
    out
}

/// The reduction kernel of the marginal error (one specialisation).
pub(crate) fn reduce_kernel() -> Kernel {
    Kernel::new("sinkhorn_reduce", REDUCE_TEMPLATE).constant("WG", REDUCE_WG)
}

/// The point clouds and cost parameters as given to [`GpuSinkhorn::new`].
pub(crate) struct GpuCloudPair<'a> {
    /// Source points `[n, dim (+ 2)]` (coordinates, then x/y in µm when `spatial`).
    pub xs: &'a [f32],
    /// Target points `[m, dim (+ 2)]`.
    pub ys: &'a [f32],
    pub n: usize,
    pub m: usize,
    pub dim: usize,
    pub squared: bool,
    pub spatial: bool,
    /// Spatial penalty per µm (ignored unless `spatial`).
    pub lambda: f32,
}

/// Solver state on the device: clouds, log-marginals, ping-pong potentials.
pub(crate) struct GpuSinkhorn<'c> {
    ctx: &'c GpuContext,
    shape: LseShape,
    n: usize,
    m: usize,
    lambda: f32,
    inv_scale: f32,
    lse: wgpu::ComputePipeline,
    reduce: wgpu::ComputePipeline,
    px: wgpu::Buffer,
    py: wgpu::Buffer,
    log_a: wgpu::Buffer,
    log_b: wgpu::Buffer,
    f: [wgpu::Buffer; 2],
    g: [wgpu::Buffer; 2],
    aux_f: wgpu::Buffer,
    aux_g: wgpu::Buffer,
    red_out: wgpu::Buffer,
    red_bind: wgpu::BindGroup,
    /// Potentials of the current state are `f[parity]`, `g[parity]`.
    parity: usize,
    /// `g[1 - parity]` holds the g half-step for this ε (bits), computed by the last check.
    pending: Option<u32>,
    stage: Option<StageBinds>,
    /// Kernel launches so far.
    pub dispatches: u64,
}

/// Bind groups for one ε: g half-step and f half-step for each parity.
struct StageBinds {
    eps_bits: u32,
    g_step: [wgpu::BindGroup; 2],
    f_step: [wgpu::BindGroup; 2],
}

impl<'c> GpuSinkhorn<'c> {
    /// Uploads the clouds and log-marginals (`log_a` `[n]`, `log_b` `[m]`); potentials start
    /// at zero. Compiles the kernels on first use (a compile error is [`GpuError::Shader`]).
    pub(crate) async fn new(
        ctx: &'c GpuContext,
        clouds: &GpuCloudPair<'_>,
        log_a: &[f32],
        log_b: &[f32],
    ) -> Result<Self, GpuError> {
        ctx.take_error()?;
        let shape = LseShape::new(clouds.dim, clouds.squared, clouds.spatial)?;
        let lse = ctx.compile_checked(&lse_kernel(&shape)).await?;
        let reduce = ctx.compile_checked(&reduce_kernel()).await?;
        let (n, m) = (clouds.n, clouds.m);
        let padded = |pts: &[f32], len: usize| {
            let aug = clouds.dim + if clouds.spatial { 2 } else { 0 };
            let mut coords = Vec::with_capacity(len * clouds.dim);
            let mut pos = Vec::with_capacity(if clouds.spatial { 2 * len } else { 0 });
            for p in pts.chunks_exact(aug) {
                coords.extend_from_slice(&p[..clouds.dim]);
                pos.extend_from_slice(&p[clouds.dim..]);
            }
            let pos = clouds.spatial.then_some(pos.as_slice());
            pad_points(&coords, len, clouds.dim, shape.stride as usize, pos)
        };
        let px = ctx.storage_init("sinkhorn x", bytemuck::cast_slice(&padded(clouds.xs, n)))?;
        let py = ctx.storage_init("sinkhorn y", bytemuck::cast_slice(&padded(clouds.ys, m)))?;
        let log_a = ctx.storage_init("sinkhorn log a", bytemuck::cast_slice(log_a))?;
        let log_b = ctx.storage_init("sinkhorn log b", bytemuck::cast_slice(log_b))?;
        let f = [
            ctx.storage_zeroed("sinkhorn f0", n)?,
            ctx.storage_zeroed("sinkhorn f1", n)?,
        ];
        let g = [
            ctx.storage_zeroed("sinkhorn g0", m)?,
            ctx.storage_zeroed("sinkhorn g1", m)?,
        ];
        let aux_f = ctx.storage_zeroed("sinkhorn aux f", n)?;
        let aux_g = ctx.storage_zeroed("sinkhorn aux g", m)?;
        let red_out = ctx.storage_zeroed("sinkhorn error", 4)?;
        let red_params = ctx.uniform("sinkhorn reduce params", [m as u32, 0, 0, 0]);
        let red_bind = ctx.bind(&reduce, "sinkhorn reduce", &[&red_params, &aux_g, &red_out]);
        Ok(GpuSinkhorn {
            ctx,
            shape,
            n,
            m,
            lambda: clouds.lambda,
            inv_scale: 1.0,
            lse,
            reduce,
            px,
            py,
            log_a,
            log_b,
            f,
            g,
            aux_f,
            aux_g,
            red_out,
            red_bind,
            parity: 0,
            pending: None,
            stage: None,
            dispatches: 0,
        })
    }

    /// Sets the cost multiplier (1 / max cost, or 1) used by later passes.
    pub(crate) fn set_inv_scale(&mut self, inv_scale: f32) {
        self.inv_scale = inv_scale;
        self.stage = None;
        self.pending = None;
    }

    fn params(&self, rows: usize, cols: usize, mode: Mode, eps: f32) -> wgpu::Buffer {
        let words: [u32; 8] = [
            rows as u32,
            cols as u32,
            mode as u32,
            0,
            (1.0 / eps).to_bits(),
            eps.to_bits(),
            self.inv_scale.to_bits(),
            self.lambda.to_bits(),
        ];
        self.ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("sinkhorn params"),
                contents: bytemuck::cast_slice(&words),
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    /// Bind group of one LSE pass: rows, cols, other potential, log-marginal, old potential,
    /// outputs.
    #[allow(clippy::too_many_arguments)]
    fn lse_bind(
        &self,
        params: &wgpu::Buffer,
        rows: &wgpu::Buffer,
        cols: &wgpu::Buffer,
        h: &wgpu::Buffer,
        logw: &wgpu::Buffer,
        old: &wgpu::Buffer,
        out_pot: &wgpu::Buffer,
        out_aux: &wgpu::Buffer,
    ) -> wgpu::BindGroup {
        self.ctx.bind(
            &self.lse,
            "sinkhorn lse",
            &[params, rows, cols, h, logw, old, out_pot, out_aux],
        )
    }

    fn lse_dispatch(&self, bind_group: wgpu::BindGroup, rows: usize) -> Result<Dispatch, GpuError> {
        Ok(Dispatch {
            pipeline: self.lse.clone(),
            bind_group,
            workgroups: fold_workgroups(
                rows.div_ceil((WG * self.shape.rows) as usize),
                "sinkhorn lse",
            )?,
        })
    }

    /// `max_ij C_ij` of the unscaled cost (one pass over all pairs).
    pub(crate) async fn max_cost(&mut self) -> Result<f32, GpuError> {
        let saved = self.inv_scale;
        self.inv_scale = 1.0;
        let params = self.params(self.n, self.m, Mode::MaxCost, 1.0);
        self.inv_scale = saved;
        // f[1] and aux_f are scratch here: f[1] is written before it is read by any iteration.
        let bind = self.lse_bind(
            &params,
            &self.px,
            &self.py,
            &self.g[0],
            &self.log_a,
            &self.f[0],
            &self.f[1],
            &self.aux_f,
        );
        let d = self.lse_dispatch(bind, self.n)?;
        self.dispatches += 1;
        let row_max = self
            .ctx
            .run_and_read("sinkhorn max cost", &[d], &self.f[1], self.n)
            .await?;
        Ok(row_max.into_iter().fold(0.0, f32::max))
    }

    /// Takes the bind groups for `eps` out of `self` (building them, and dropping the pending
    /// g half-step of another ε, if needed); [`GpuSinkhorn::iterate`] puts them back.
    fn take_stage(&mut self, eps: f32) -> StageBinds {
        match self.stage.take() {
            Some(stage) if stage.eps_bits == eps.to_bits() => stage,
            _ => {
                self.pending = None;
                self.build_stage(eps)
            }
        }
    }

    fn build_stage(&self, eps: f32) -> StageBinds {
        let pg = self.params(self.m, self.n, Mode::Update, eps);
        let pf = self.params(self.n, self.m, Mode::Update, eps);
        // g half-step at parity p: reads f[p], old g[p], writes g[1-p].
        let g_step = [0usize, 1].map(|p| {
            self.lse_bind(
                &pg,
                &self.py,
                &self.px,
                &self.f[p],
                &self.log_b,
                &self.g[p],
                &self.g[1 - p],
                &self.aux_g,
            )
        });
        // f half-step at parity p (after the g half-step): reads g[1-p], old f[p], writes f[1-p].
        let f_step = [0usize, 1].map(|p| {
            self.lse_bind(
                &pf,
                &self.px,
                &self.py,
                &self.g[1 - p],
                &self.log_a,
                &self.f[p],
                &self.f[1 - p],
                &self.aux_f,
            )
        });
        StageBinds {
            eps_bits: eps.to_bits(),
            g_step,
            f_step,
        }
    }

    /// Runs `iterations` Sinkhorn iterations (g then f half-step) at `eps`, then measures the
    /// target-marginal error of the resulting plan. Returns `[Σ err, Σ err², max err]` over the
    /// `m` target points. One submission, `2 · iterations + 2` dispatches.
    pub(crate) async fn iterate(
        &mut self,
        eps: f32,
        iterations: usize,
    ) -> Result<[f32; 3], GpuError> {
        self.ctx.take_error()?;
        let stage = self.take_stage(eps);
        let rows_per_wg = (WG * self.shape.rows) as usize;
        let g_wg = fold_workgroups(self.m.div_ceil(rows_per_wg), "sinkhorn g half-step")?;
        let f_wg = fold_workgroups(self.n.div_ceil(rows_per_wg), "sinkhorn f half-step")?;
        let mut encoder = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("sinkhorn iterations"),
            });
        let mut parity = self.parity;
        let mut launched = 0u64;
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("sinkhorn iterations"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.lse);
            let mut skip_g = self.pending == Some(eps.to_bits());
            for _ in 0..iterations {
                if !skip_g {
                    pass.set_bind_group(0, &stage.g_step[parity], &[]);
                    pass.dispatch_workgroups(g_wg[0], g_wg[1], g_wg[2]);
                    launched += 1;
                }
                skip_g = false;
                pass.set_bind_group(0, &stage.f_step[parity], &[]);
                pass.dispatch_workgroups(f_wg[0], f_wg[1], f_wg[2]);
                launched += 1;
                parity = 1 - parity;
            }
            // The next g half-step doubles as the convergence check of the current plan.
            pass.set_bind_group(0, &stage.g_step[parity], &[]);
            pass.dispatch_workgroups(g_wg[0], g_wg[1], g_wg[2]);
            pass.set_pipeline(&self.reduce);
            pass.set_bind_group(0, &self.red_bind, &[]);
            pass.dispatch_workgroups(1, 1, 1);
            launched += 2;
        }
        let staging = self.ctx.readback_buffer("sinkhorn error readback", 4);
        encoder.copy_buffer_to_buffer(&self.red_out, 0, &staging, 0, 16);
        let submission = self.ctx.queue.submit([encoder.finish()]);
        self.parity = parity;
        self.pending = Some(eps.to_bits());
        self.stage = Some(stage);
        self.dispatches += launched;
        let out = self.ctx.map_read(&staging, 4, submission).await?;
        Ok([out[0], out[1], out[2]])
    }

    /// Reads the current potentials `(f [n], g [m])`.
    pub(crate) async fn potentials(&self) -> Result<(Vec<f32>, Vec<f32>), GpuError> {
        let f = self.read(&self.f[self.parity], self.n).await?;
        let g = self.read(&self.g[self.parity], self.m).await?;
        Ok((f, g))
    }

    async fn read(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>, GpuError> {
        self.ctx.take_error()?;
        let staging = self.ctx.readback_buffer("sinkhorn potential readback", len);
        let mut encoder = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("sinkhorn potential readback"),
            });
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, (len.max(1) * 4) as u64);
        let submission = self.ctx.queue.submit([encoder.finish()]);
        self.ctx.map_read(&staging, len, submission).await
    }

    /// Replaces the potentials (warm start), e.g. to run [`GpuSinkhorn::assign`] on a
    /// previously computed solution.
    pub(crate) fn set_potentials(&mut self, f: &[f32], g: &[f32]) {
        self.parity = 0;
        self.pending = None;
        self.ctx
            .queue
            .write_buffer(&self.f[0], 0, bytemuck::cast_slice(f));
        self.ctx
            .queue
            .write_buffer(&self.g[0], 0, bytemuck::cast_slice(g));
    }

    /// Row-wise hard assignment of the plan at `eps`: for each source point, the target index
    /// of its largest plan entry and `max_j P_ij / Σ_j P_ij`.
    pub(crate) async fn assign(&mut self, eps: f32) -> Result<(Vec<u32>, Vec<f32>), GpuError> {
        self.ctx.take_error()?;
        let params = self.params(self.n, self.m, Mode::Assign, eps);
        let p = self.parity;
        let bind = self.lse_bind(
            &params,
            &self.px,
            &self.py,
            &self.g[p],
            &self.log_a,
            &self.f[p],
            &self.f[1 - p],
            &self.aux_f,
        );
        let d = self.lse_dispatch(bind, self.n)?;
        self.dispatches += 1;
        // The pass overwrote the spare f buffer only; the pending g half-step is still valid.
        let confidence = self
            .ctx
            .run_and_read("sinkhorn assign", &[d], &self.f[1 - p], self.n)
            .await?;
        let index = self
            .read(&self.aux_f, self.n)
            .await?
            .into_iter()
            .map(f32::to_bits)
            .collect();
        Ok((index, confidence))
    }

    /// Bytes of device memory held by the solver's buffers.
    pub(crate) fn device_bytes(&self) -> u64 {
        [
            &self.px,
            &self.py,
            &self.log_a,
            &self.log_b,
            &self.f[0],
            &self.f[1],
            &self.g[0],
            &self.g[1],
            &self.aux_f,
            &self.aux_g,
            &self.red_out,
        ]
        .iter()
        .map(|b| b.size())
        .sum()
    }
}
