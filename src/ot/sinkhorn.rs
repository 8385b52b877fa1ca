//! Entropy-regularised optimal transport between two point clouds (log-domain Sinkhorn).
//!
//! Problem: point clouds `X` `[n, d]` and `Y` `[m, d]` with weights `a` `[n]`, `b` `[m]`
//! (uniform by default; normalised to sum 1), ground cost
//!
//! ```text
//! C_ij = (base(x_i, y_j) + λ·‖s_i − t_j‖₂) / scale,
//! base = ‖x_i − y_j‖₂ (GroundCost::Euclidean, default) or ‖x_i − y_j‖₂² (SquaredEuclidean),
//! scale = max_ij of the numerator (CostScale::MaxCost, default) or 1 (CostScale::None),
//! ```
//!
//! (the `λ` term only with a [`SpatialPenalty`]), and regularisation `ε` (default 0.05). The
//! plan is `P_ij = exp((f_i + g_j − C_ij)/ε)` with dual potentials `f` `[n]`, `g` `[m]`.
//!
//! One iteration is the POT `sinkhorn_log` update order, g first, then f:
//!
//! ```text
//! g_j ← ε log b_j − ε LSE_i((f_i − C_ij)/ε),   f_i ← ε log a_i − ε LSE_j((g_j − C_ij)/ε)
//! ```
//!
//! with a max-subtracted log-sum-exp. After the f update the row marginals are exact; the
//! convergence error is that of the column marginal, `‖Pᵀ1 − b‖` in the chosen norm (POT uses
//! L2), checked every `check_every` iterations (POT: every 10). Costs are recomputed on the
//! fly; no engine needs the `n × m` matrix (the CPU engine caches it when it fits a budget).
//!
//! About the cost scale: POT's `ot.bregman.sinkhorn_log(a, b, M, reg)` takes the cost matrix
//! as given. With `CostScale::MaxCost` we solve the POT problem for `M / M.max()` (tests and
//! the benchmark normalise the same way on the POT side); with `CostScale::None`, for `M`.
//! Normalising makes `ε` scale-free (ε = 0.05 is 5 % of the largest cost); on raw PCA
//! distances (tens of units) ε = 0.05 is nearly unregularised and Sinkhorn needs many
//! thousands of iterations.
//!
//! Precision: potentials are f32 on every engine, so the marginal error cannot go much below
//! `≈ 2⁻²⁴ · max|g| / ε · Σb` (≈ 1e-6 for normalised costs at ε = 0.05): the default
//! tolerance is 1e-5 (L1).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use super::cpu::{self, Cloud, CostSpec, Mode, Pass, RowState};
use super::error::{check_finite, check_shape, OtError};
use crate::gpu::sinkhorn::{GpuCloudPair, GpuSinkhorn};
use crate::gpu::GpuContext;

/// Default entropic regularisation ε.
pub const DEFAULT_EPSILON: f32 = 0.05;
/// Default marginal-error tolerance (L1).
pub const DEFAULT_TOLERANCE: f32 = 1e-5;
/// Default iteration cap.
pub const DEFAULT_MAX_ITERATIONS: usize = 1000;

/// Ground cost between expression coordinates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GroundCost {
    /// `‖x − y‖₂` (SPATIA's choice).
    #[default]
    Euclidean,
    /// `‖x − y‖₂²`.
    SquaredEuclidean,
}

/// How the cost is scaled before dividing by ε.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CostScale {
    /// Divide by the largest pairwise cost (one extra pass over all pairs), so ε is relative.
    #[default]
    MaxCost,
    /// Use the raw cost.
    None,
}

/// Norm of the marginal error `Pᵀ1 − b`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorNorm {
    /// `Σ_j |·|` (total misplaced mass).
    #[default]
    L1,
    /// Euclidean norm (POT's criterion).
    L2,
    /// `max_j |·|`.
    LInf,
}

/// ε-scaling: solve at `start_epsilon`, then at `start_epsilon · factor^k`, ..., down to the
/// target ε, warm-starting each stage from the previous potentials.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpsilonScaling {
    /// First ε (must exceed the target ε to have any effect).
    pub start_epsilon: f32,
    /// Ratio between stages, in (0, 1).
    pub factor: f32,
    /// Iteration cap of each intermediate stage (it also stops once within tolerance).
    pub stage_iterations: usize,
}

impl Default for EpsilonScaling {
    fn default() -> Self {
        EpsilonScaling {
            start_epsilon: 1.0,
            factor: 0.5,
            stage_iterations: 50,
        }
    }
}

/// Options of [`sinkhorn`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SinkhornOptions {
    /// Entropic regularisation ε > 0, in units of the (scaled) cost. Default 0.05.
    pub epsilon: f32,
    /// Ground cost. Default Euclidean.
    pub cost: GroundCost,
    /// Cost scaling. Default [`CostScale::MaxCost`].
    pub scale: CostScale,
    /// Marginal-error tolerance. Default 1e-5.
    pub tolerance: f32,
    /// Norm of the marginal error. Default L1.
    pub error_norm: ErrorNorm,
    /// Cap on the total number of iterations (all ε stages together). Default 1000.
    pub max_iterations: usize,
    /// Check convergence (and call the progress callback) every this many iterations;
    /// default 10. On the GPU each check is one small reduction and a 16-byte readback.
    pub check_every: usize,
    /// Optional ε-scaling.
    pub epsilon_scaling: Option<EpsilonScaling>,
    /// CPU engine: worker threads (0 = all cores; always 1 on wasm32).
    pub threads: usize,
    /// CPU engine: largest memory for caching the cost matrix `C` (`4·n·m` bytes; also `Cᵀ`,
    /// for faster g half-steps, when `8·n·m` fits); above it costs are recomputed every pass.
    /// Default 2 GiB natively, 256 MiB on wasm32.
    pub cpu_cost_cache_bytes: u64,
}

impl Default for SinkhornOptions {
    fn default() -> Self {
        SinkhornOptions {
            epsilon: DEFAULT_EPSILON,
            cost: GroundCost::Euclidean,
            scale: CostScale::MaxCost,
            tolerance: DEFAULT_TOLERANCE,
            error_norm: ErrorNorm::L1,
            max_iterations: DEFAULT_MAX_ITERATIONS,
            check_every: 10,
            epsilon_scaling: None,
            threads: 0,
            cpu_cost_cache_bytes: if cfg!(target_arch = "wasm32") {
                256 << 20
            } else {
                2 << 30
            },
        }
    }
}

/// A spatial term added to the cost: `λ · ‖s_i − t_j‖₂` with positions in µm.
#[derive(Clone, Copy, Debug)]
pub struct SpatialPenalty<'a> {
    /// Source positions `[n]` (µm).
    pub x_um: &'a [[f32; 2]],
    /// Target positions `[m]` (µm).
    pub y_um: &'a [[f32; 2]],
    /// Cost per µm, in the units of the unscaled expression cost (≥ 0).
    pub lambda: f32,
}

/// The two point clouds and their weights.
#[derive(Clone, Copy, Debug)]
pub struct SinkhornProblem<'a> {
    /// Source points `X` `[n, dim]`, row-major.
    pub x: &'a [f32],
    /// Target points `Y` `[m, dim]`, row-major.
    pub y: &'a [f32],
    /// Number of source points `n`.
    pub n: usize,
    /// Number of target points `m`.
    pub m: usize,
    /// Coordinates per point `d`.
    pub dim: usize,
    /// Source weights `a` `[n]` (positive; normalised to sum 1), `None` = uniform.
    pub a: Option<&'a [f32]>,
    /// Target weights `b` `[m]`, `None` = uniform.
    pub b: Option<&'a [f32]>,
    /// Optional spatial penalty.
    pub spatial: Option<SpatialPenalty<'a>>,
}

impl<'a> SinkhornProblem<'a> {
    /// Uniform weights, no spatial term.
    pub fn new(x: &'a [f32], n: usize, y: &'a [f32], m: usize, dim: usize) -> Self {
        SinkhornProblem {
            x,
            y,
            n,
            m,
            dim,
            a: None,
            b: None,
            spatial: None,
        }
    }
}

/// Which engine runs the iterations. All give the same result up to f32 rounding.
#[derive(Clone, Copy, Debug)]
pub enum SinkhornEngine<'a> {
    /// Plain Rust on CPU threads ([`sinkhorn_log_domain_reference`]).
    Reference,
    /// WGSL kernels on a WebGPU device (native wgpu, or the browser on wasm32).
    Gpu(&'a GpuContext),
}

/// A Sinkhorn solution.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SinkhornResult {
    /// Source potential `f` `[n]` (cost units).
    pub f: Vec<f32>,
    /// Target potential `g` `[m]`.
    pub g: Vec<f32>,
    /// ε of the returned plan (the target ε).
    pub epsilon: f32,
    /// Divisor applied to the raw cost (max cost, or 1).
    pub cost_scale: f32,
    /// Iterations run, all ε stages together.
    pub iterations: usize,
    /// Final marginal error `‖Pᵀ1 − b‖` in the chosen norm.
    pub error: f32,
    /// Whether `error ≤ tolerance` at the target ε.
    pub converged: bool,
    /// Kernel launches (GPU engine; 0 for the CPU engine).
    pub dispatches: u64,
    /// Memory held by the engine's working buffers, in bytes (device buffers for the GPU,
    /// clouds + cost cache + potentials for the CPU).
    pub working_bytes: u64,
}

/// Hard assignment of every source point to a target point.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    /// `argmax_j P_ij` per source point `[n]`.
    pub target: Vec<u32>,
    /// `max_j P_ij / Σ_j P_ij` per source point `[n]`, in (0, 1].
    pub confidence: Vec<f32>,
}

/// Validated, engine-ready problem: augmented clouds and log-weights.
pub(crate) struct Prepared {
    pub n: usize,
    pub m: usize,
    pub spec: CostSpec,
    /// `[n, stride]`: coordinates, then the position in µm with a spatial penalty.
    pub xs: Vec<f32>,
    pub ys: Vec<f32>,
    pub log_a: Vec<f32>,
    pub log_b: Vec<f32>,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

fn weights(w: Option<&[f32]>, len: usize, what: &'static str) -> Result<Vec<f32>, OtError> {
    let Some(w) = w else {
        return Ok(vec![1.0 / len as f32; len]);
    };
    check_shape(|| format!("marginal {what} [{len}]"), w.len(), len)?;
    if let Some(i) = w.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
        return Err(OtError::Marginal {
            what,
            reason: format!(
                "weight {i} is {}; weights must be finite and > 0 (drop zero-weight points)",
                w[i]
            ),
        });
    }
    let total: f64 = w.iter().map(|&v| v as f64).sum();
    Ok(w.iter().map(|&v| (v as f64 / total) as f32).collect())
}

fn augment(pts: &[f32], len: usize, dim: usize, pos: Option<&[[f32; 2]]>) -> Vec<f32> {
    match pos {
        None => pts.to_vec(),
        Some(pos) => {
            let mut out = Vec::with_capacity(len * (dim + 2));
            for (p, s) in pts.chunks_exact(dim).zip(pos) {
                out.extend_from_slice(p);
                out.extend_from_slice(s);
            }
            out
        }
    }
}

impl Prepared {
    pub(crate) fn new(p: &SinkhornProblem<'_>, opts: &SinkhornOptions) -> Result<Self, OtError> {
        validate_options(opts)?;
        if p.n == 0 || p.m == 0 {
            return Err(OtError::Empty {
                what: format!("point cloud (n = {}, m = {})", p.n, p.m),
            });
        }
        if p.dim == 0 {
            return Err(OtError::Empty {
                what: "point dimension".into(),
            });
        }
        if p.n > u32::MAX as usize / 2 || p.m > u32::MAX as usize / 2 {
            return Err(OtError::InvalidOption {
                name: "n/m",
                reason: "point clouds are limited to 2^31 points".into(),
            });
        }
        check_shape(
            || format!("X [n={}, d={}]", p.n, p.dim),
            p.x.len(),
            p.n * p.dim,
        )?;
        check_shape(
            || format!("Y [m={}, d={}]", p.m, p.dim),
            p.y.len(),
            p.m * p.dim,
        )?;
        check_finite(|| "X".into(), p.x)?;
        check_finite(|| "Y".into(), p.y)?;
        let a = weights(p.a, p.n, "a")?;
        let b = weights(p.b, p.m, "b")?;
        let (pos_x, pos_y, lambda) = match p.spatial {
            Some(s) => {
                check_shape(|| format!("spatial x_um [n={}]", p.n), s.x_um.len(), p.n)?;
                check_shape(|| format!("spatial y_um [m={}]", p.m), s.y_um.len(), p.m)?;
                check_finite(|| "spatial x_um".into(), s.x_um.as_flattened())?;
                check_finite(|| "spatial y_um".into(), s.y_um.as_flattened())?;
                if !(s.lambda.is_finite() && s.lambda >= 0.0) {
                    return Err(OtError::InvalidOption {
                        name: "spatial.lambda",
                        reason: format!("must be finite and ≥ 0, got {}", s.lambda),
                    });
                }
                (Some(s.x_um), Some(s.y_um), s.lambda)
            }
            None => (None, None, 0.0),
        };
        let spatial = p.spatial.is_some();
        Ok(Prepared {
            n: p.n,
            m: p.m,
            spec: CostSpec {
                dim: p.dim,
                stride: p.dim + if spatial { 2 } else { 0 },
                squared: opts.cost == GroundCost::SquaredEuclidean,
                spatial,
                lambda,
                inv_scale: 1.0,
            },
            xs: augment(p.x, p.n, p.dim, pos_x),
            ys: augment(p.y, p.m, p.dim, pos_y),
            log_a: a.iter().map(|v| v.ln()).collect(),
            log_b: b.iter().map(|v| v.ln()).collect(),
            a,
            b,
        })
    }
}

fn validate_options(o: &SinkhornOptions) -> Result<(), OtError> {
    let bad = |name, reason: String| Err(OtError::InvalidOption { name, reason });
    if !(o.epsilon.is_finite() && o.epsilon > 0.0) {
        return bad(
            "epsilon",
            format!("must be finite and > 0, got {}", o.epsilon),
        );
    }
    if !(o.tolerance.is_finite() && o.tolerance > 0.0) {
        return bad(
            "tolerance",
            format!("must be finite and > 0, got {}", o.tolerance),
        );
    }
    if o.max_iterations == 0 {
        return bad("max_iterations", "must be at least 1".into());
    }
    if o.check_every == 0 {
        return bad("check_every", "must be at least 1".into());
    }
    if let Some(s) = o.epsilon_scaling {
        if !(s.factor > 0.0 && s.factor < 1.0) {
            return bad(
                "epsilon_scaling.factor",
                format!("must be in (0, 1), got {}", s.factor),
            );
        }
        if !(s.start_epsilon.is_finite() && s.start_epsilon > 0.0) {
            return bad(
                "epsilon_scaling.start_epsilon",
                format!("must be finite and > 0, got {}", s.start_epsilon),
            );
        }
        if s.stage_iterations == 0 {
            return bad(
                "epsilon_scaling.stage_iterations",
                "must be at least 1".into(),
            );
        }
    }
    Ok(())
}

/// The ε of each stage, ending with the target.
fn epsilon_schedule(o: &SinkhornOptions) -> Vec<f32> {
    let mut stages = Vec::new();
    if let Some(s) = o.epsilon_scaling {
        let mut e = s.start_epsilon;
        while e > o.epsilon * (1.0 + 1e-6) && stages.len() < 64 {
            stages.push(e);
            e *= s.factor;
        }
    }
    stages.push(o.epsilon);
    stages
}

fn error_from_sums(sums: [f32; 3], norm: ErrorNorm) -> f32 {
    match norm {
        ErrorNorm::L1 => sums[0],
        ErrorNorm::L2 => sums[1].max(0.0).sqrt(),
        ErrorNorm::LInf => sums[2],
    }
}

/// The operations both engines provide to the shared driver.
pub(crate) trait Backend {
    /// Sets the cost divisor's inverse and returns the divisor (max cost or 1).
    async fn prepare_scale(&mut self, scale: CostScale) -> Result<f32, OtError>;
    /// `iterations` iterations at `eps`, then the `[Σ, Σ², max]` of the column-marginal error.
    async fn iterate(&mut self, eps: f32, iterations: usize) -> Result<[f32; 3], OtError>;
    /// The current potentials.
    async fn potentials(&mut self) -> Result<(Vec<f32>, Vec<f32>), OtError>;
    fn dispatches(&self) -> u64;
    fn working_bytes(&self) -> u64;
}

async fn drive<B: Backend>(
    backend: &mut B,
    opts: &SinkhornOptions,
    progress: &mut dyn FnMut(usize, f32),
) -> Result<SinkhornResult, OtError> {
    let cost_scale = backend.prepare_scale(opts.scale).await?;
    let stages = epsilon_schedule(opts);
    let mut done = 0usize;
    let mut error = f32::INFINITY;
    let mut converged = false;
    for (k, &eps) in stages.iter().enumerate() {
        let last = k + 1 == stages.len();
        let stage_cap = if last {
            usize::MAX
        } else {
            opts.epsilon_scaling.map_or(0, |s| s.stage_iterations)
        };
        let mut in_stage = 0usize;
        converged = false;
        loop {
            let chunk = opts
                .check_every
                .min(stage_cap - in_stage)
                .min(opts.max_iterations - done);
            if chunk == 0 {
                break;
            }
            let sums = backend.iterate(eps, chunk).await?;
            done += chunk;
            in_stage += chunk;
            error = error_from_sums(sums, opts.error_norm);
            progress(done, error);
            if error <= opts.tolerance {
                converged = true;
                break;
            }
        }
        if done >= opts.max_iterations {
            converged &= last;
            break;
        }
    }
    let (f, g) = backend.potentials().await?;
    Ok(SinkhornResult {
        f,
        g,
        epsilon: opts.epsilon,
        cost_scale,
        iterations: done,
        error,
        converged,
        dispatches: backend.dispatches(),
        working_bytes: backend.working_bytes(),
    })
}

/// The CPU engine's state.
pub(crate) struct CpuBackend {
    spec: CostSpec,
    x: Cloud,
    y: Cloud,
    log_a: Vec<f32>,
    log_b: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
    /// `C` `[n, m]`, scaled, when cached.
    cache: Option<Vec<f32>>,
    /// `Cᵀ` `[m, n]`, when it fits the budget too.
    cache_t: Option<Vec<f32>>,
    cache_budget: u64,
    threads: usize,
    f: Vec<f32>,
    g: Vec<f32>,
    /// The next g half-step at ε (bits), computed by the last check.
    pending: Option<(u32, Vec<f32>)>,
}

impl CpuBackend {
    pub(crate) fn new(p: Prepared, opts: &SinkhornOptions) -> Self {
        let stride = p.spec.stride;
        CpuBackend {
            spec: p.spec,
            x: Cloud::new(p.xs, p.n, stride),
            y: Cloud::new(p.ys, p.m, stride),
            log_a: p.log_a,
            log_b: p.log_b,
            a: p.a,
            b: p.b,
            cache: None,
            cache_t: None,
            cache_budget: opts.cpu_cost_cache_bytes,
            threads: if opts.threads == 0 {
                cpu::default_threads()
            } else {
                opts.threads
            },
            f: vec![0.0; p.n],
            g: vec![0.0; p.m],
            pending: None,
        }
    }

    fn pass(&self, x_rows: bool, h: &[f32], eps: f32, mode: Mode) -> Vec<RowState> {
        let (rows, cols) = if x_rows {
            (&self.x, &self.y)
        } else {
            (&self.y, &self.x)
        };
        let cache = self
            .cache
            .as_deref()
            .filter(|_| x_rows && mode != Mode::MaxCost);
        let pass = Pass {
            spec: self.spec,
            rows,
            cols,
            cache,
            h,
            inv_eps: 1.0 / eps,
            mode,
        };
        let mut states = vec![RowState::default(); rows.len];
        cpu::run_pass(&pass, &mut states, self.threads);
        states
    }

    /// One half-step: the new potential of the row side and its marginal-error sums
    /// (of the plan with the old potential).
    fn half_step(&self, x_rows: bool, eps: f32) -> (Vec<f32>, [f32; 3]) {
        let (h, old, logw, w) = if x_rows {
            (&self.g, &self.f, &self.log_a, &self.a)
        } else {
            (&self.f, &self.g, &self.log_b, &self.b)
        };
        let inv_eps = 1.0 / eps;
        let lse: Vec<f32> = match &self.cache {
            Some(c) => {
                // The LSE that produced the old potential: the shift of the one-pass sums.
                let shift: Vec<f32> = logw
                    .iter()
                    .zip(old)
                    .map(|(&lw, &o)| lw - o * inv_eps)
                    .collect();
                match (x_rows, &self.cache_t) {
                    (true, _) => {
                        cpu::lse_cached_rows(c, self.y.len, h, &shift, inv_eps, self.threads)
                    }
                    (false, Some(ct)) => {
                        cpu::lse_cached_rows(ct, self.x.len, h, &shift, inv_eps, self.threads)
                    }
                    (false, None) => {
                        cpu::lse_cached_cols(c, self.y.len, h, &shift, inv_eps, self.threads)
                    }
                }
            }
            None => self
                .pass(x_rows, h, eps, Mode::Lse)
                .iter()
                .map(|s| s.max + s.sum.ln())
                .collect(),
        };
        let mut sums = [0f64; 3];
        let mut new = Vec::with_capacity(lse.len());
        for (i, &l) in lse.iter().enumerate() {
            let pot = eps * (logw[i] - l);
            let delta = ((old[i] - pot) * inv_eps).min(80.0);
            let err = (w[i] * cpu::expm1_small(delta).abs()) as f64;
            sums[0] += err;
            sums[1] += err * err;
            sums[2] = sums[2].max(err);
            new.push(pot);
        }
        (new, sums.map(|v| v as f32))
    }

    /// Computes the unscaled cost matrix if it fits the budget.
    fn build_cache(&mut self) {
        let (n, m) = (self.x.len, self.y.len);
        if 4 * n as u64 * m as u64 > self.cache_budget {
            return;
        }
        let mut c = vec![0f32; n * m];
        cpu::cost_rows(&self.spec, &self.x, &self.y, &mut c, self.threads);
        self.cache = Some(c);
    }

    /// Row-wise argmax of the plan for given potentials.
    pub(crate) fn assign(&self, g: &[f32], eps: f32) -> Assignment {
        let states = self.pass(true, g, eps, Mode::Argmax);
        Assignment {
            target: states.iter().map(|s| s.arg).collect(),
            confidence: states.iter().map(|s| 1.0 / s.sum).collect(),
        }
    }

    pub(crate) fn set_inv_scale(&mut self, inv_scale: f32) {
        self.spec.inv_scale = inv_scale;
    }
}

impl Backend for CpuBackend {
    async fn prepare_scale(&mut self, scale: CostScale) -> Result<f32, OtError> {
        self.spec.inv_scale = 1.0;
        self.cache = None;
        self.cache_t = None;
        self.build_cache();
        let divisor = match scale {
            CostScale::None => 1.0,
            CostScale::MaxCost => {
                let max = match &self.cache {
                    Some(c) => c.iter().fold(0f32, |acc, &v| acc.max(v)),
                    None => self
                        .pass(true, &[], 1.0, Mode::MaxCost)
                        .iter()
                        .fold(0f32, |acc, s| acc.max(s.max)),
                };
                if max <= 0.0 || !max.is_finite() {
                    return Err(OtError::DegenerateCost);
                }
                max
            }
        };
        self.spec.inv_scale = 1.0 / divisor;
        if let Some(c) = &mut self.cache {
            if divisor != 1.0 {
                let inv = 1.0 / divisor;
                c.iter_mut().for_each(|v| *v *= inv);
            }
            let (n, m) = (self.x.len, self.y.len);
            if 8 * n as u64 * m as u64 <= self.cache_budget {
                self.cache_t = Some(cpu::transpose(c, n, m, self.threads));
            }
        }
        Ok(divisor)
    }

    async fn iterate(&mut self, eps: f32, iterations: usize) -> Result<[f32; 3], OtError> {
        for _ in 0..iterations {
            self.g = match self.pending.take() {
                Some((bits, g)) if bits == eps.to_bits() => g,
                _ => self.half_step(false, eps).0,
            };
            self.f = self.half_step(true, eps).0;
        }
        let (g_next, sums) = self.half_step(false, eps);
        self.pending = Some((eps.to_bits(), g_next));
        Ok(sums)
    }

    async fn potentials(&mut self) -> Result<(Vec<f32>, Vec<f32>), OtError> {
        Ok((self.f.clone(), self.g.clone()))
    }

    fn dispatches(&self) -> u64 {
        0
    }

    fn working_bytes(&self) -> u64 {
        let clouds = 2 * 4 * (self.x.rows.len() + self.y.rows.len()) as u64;
        let vectors = 4 * 6 * (self.x.len + self.y.len) as u64;
        let cache = [&self.cache, &self.cache_t]
            .iter()
            .map(|c| c.as_ref().map_or(0, |c| 4 * c.len() as u64))
            .sum::<u64>();
        clouds + vectors + cache
    }
}

/// The GPU engine's state.
struct GpuBackend<'c> {
    solver: GpuSinkhorn<'c>,
}

impl Backend for GpuBackend<'_> {
    async fn prepare_scale(&mut self, scale: CostScale) -> Result<f32, OtError> {
        let divisor = match scale {
            CostScale::None => 1.0,
            CostScale::MaxCost => {
                let max = self.solver.max_cost().await?;
                if max <= 0.0 || !max.is_finite() {
                    return Err(OtError::DegenerateCost);
                }
                max
            }
        };
        self.solver.set_inv_scale(1.0 / divisor);
        Ok(divisor)
    }

    async fn iterate(&mut self, eps: f32, iterations: usize) -> Result<[f32; 3], OtError> {
        Ok(self.solver.iterate(eps, iterations).await?)
    }

    async fn potentials(&mut self) -> Result<(Vec<f32>, Vec<f32>), OtError> {
        Ok(self.solver.potentials().await?)
    }

    fn dispatches(&self) -> u64 {
        self.solver.dispatches
    }

    fn working_bytes(&self) -> u64 {
        self.solver.device_bytes()
    }
}

async fn gpu_solver<'c>(ctx: &'c GpuContext, p: &Prepared) -> Result<GpuSinkhorn<'c>, OtError> {
    let clouds = GpuCloudPair {
        xs: &p.xs,
        ys: &p.ys,
        n: p.n,
        m: p.m,
        dim: p.spec.dim,
        squared: p.spec.squared,
        spatial: p.spec.spatial,
        lambda: p.spec.lambda,
    };
    Ok(GpuSinkhorn::new(ctx, &clouds, &p.log_a, &p.log_b).await?)
}

/// Solves the entropic OT problem with the chosen engine.
///
/// `progress(iteration, error)` is called at every convergence check (every
/// `opts.check_every` iterations, and at the end of each ε stage), e.g. to drive a progress
/// bar or to yield to a browser's event loop. Not converging within `max_iterations` is not
/// an error: check [`SinkhornResult::converged`].
///
/// Errors: shapes, non-finite inputs, invalid weights or options, all-zero cost with
/// [`CostScale::MaxCost`], and GPU failures.
pub async fn sinkhorn(
    problem: &SinkhornProblem<'_>,
    opts: &SinkhornOptions,
    engine: SinkhornEngine<'_>,
    mut progress: impl FnMut(usize, f32),
) -> Result<SinkhornResult, OtError> {
    let prepared = Prepared::new(problem, opts)?;
    match engine {
        SinkhornEngine::Reference => {
            let mut backend = CpuBackend::new(prepared, opts);
            drive(&mut backend, opts, &mut progress).await
        }
        SinkhornEngine::Gpu(ctx) => {
            let mut backend = GpuBackend {
                solver: gpu_solver(ctx, &prepared).await?,
            };
            drive(&mut backend, opts, &mut progress).await
        }
    }
}

/// The plain-Rust log-domain Sinkhorn (blocking): the numerical definition the GPU engine is
/// tested against. Same semantics as [`sinkhorn`] with [`SinkhornEngine::Reference`].
pub fn sinkhorn_log_domain_reference(
    problem: &SinkhornProblem<'_>,
    opts: &SinkhornOptions,
    progress: impl FnMut(usize, f32),
) -> Result<SinkhornResult, OtError> {
    block_on_ready(sinkhorn(problem, opts, SinkhornEngine::Reference, progress))
}

/// Runs a future that never waits (the CPU engine's) to completion.
pub(crate) fn block_on_ready<T>(fut: impl Future<Output = T>) -> T {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::hint::spin_loop();
    }
}

/// Hard assignment of each source point to its most likely target under the plan of
/// `result`: `target[i] = argmax_j P_ij` and `confidence[i] = max_j P_ij / Σ_j P_ij`, computed
/// on the fly (one pass over all pairs, the `n × m` plan is never stored).
///
/// `problem` and `opts` (cost and scale) must be those `result` was solved with.
pub async fn assign(
    problem: &SinkhornProblem<'_>,
    opts: &SinkhornOptions,
    result: &SinkhornResult,
    engine: SinkhornEngine<'_>,
) -> Result<Assignment, OtError> {
    let prepared = Prepared::new(problem, opts)?;
    check_result(&prepared, result)?;
    match engine {
        SinkhornEngine::Reference => {
            let mut backend = CpuBackend::new(prepared, opts);
            backend.set_inv_scale(1.0 / result.cost_scale);
            Ok(backend.assign(&result.g, result.epsilon))
        }
        SinkhornEngine::Gpu(ctx) => {
            let mut solver = gpu_solver(ctx, &prepared).await?;
            solver.set_inv_scale(1.0 / result.cost_scale);
            solver.set_potentials(&result.f, &result.g);
            let (target, confidence) = solver.assign(result.epsilon).await?;
            Ok(Assignment { target, confidence })
        }
    }
}

fn check_result(p: &Prepared, r: &SinkhornResult) -> Result<(), OtError> {
    check_shape(|| format!("result f [n={}]", p.n), r.f.len(), p.n)?;
    check_shape(|| format!("result g [m={}]", p.m), r.g.len(), p.m)?;
    check_finite(|| "result f".into(), &r.f)?;
    check_finite(|| "result g".into(), &r.g)?;
    if !(r.cost_scale.is_finite() && r.cost_scale > 0.0 && r.epsilon > 0.0) {
        return Err(OtError::InvalidOption {
            name: "result",
            reason: "cost_scale and epsilon must be finite and > 0".into(),
        });
    }
    Ok(())
}

/// The dense plan `P` `[n, m]` in f64 (for tests and small problems; refuses more than
/// 2²⁶ entries). Costs are computed in f64 from the f32 inputs.
pub fn dense_plan(
    problem: &SinkhornProblem<'_>,
    opts: &SinkhornOptions,
    result: &SinkhornResult,
) -> Result<Vec<f64>, OtError> {
    let p = Prepared::new(problem, opts)?;
    check_result(&p, result)?;
    let entries = p.n as u64 * p.m as u64;
    if entries > 1 << 26 {
        return Err(OtError::TooLarge {
            what: format!("dense plan [{}, {}]", p.n, p.m),
            bytes: 8 * entries,
        });
    }
    let s = p.spec;
    let eps = result.epsilon as f64;
    let mut plan = Vec::with_capacity(p.n * p.m);
    for (i, xi) in p.xs.chunks_exact(s.stride).enumerate() {
        for (j, yj) in p.ys.chunks_exact(s.stride).enumerate() {
            let sq: f64 = xi[..s.dim]
                .iter()
                .zip(&yj[..s.dim])
                .map(|(&u, &v)| (u as f64 - v as f64).powi(2))
                .sum();
            let mut c = if s.squared { sq } else { sq.sqrt() };
            if s.spatial {
                let dx = xi[s.dim] as f64 - yj[s.dim] as f64;
                let dy = xi[s.dim + 1] as f64 - yj[s.dim + 1] as f64;
                c += s.lambda as f64 * (dx * dx + dy * dy).sqrt();
            }
            c /= result.cost_scale as f64;
            plan.push(((result.f[i] as f64 + result.g[j] as f64 - c) / eps).exp());
        }
    }
    Ok(plan)
}
