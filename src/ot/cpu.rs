//! The plain-Rust Sinkhorn engine: the same half-steps as `kernels/sinkhorn_lse.wgsl`, on
//! CPU threads.
//!
//! Two paths:
//! - **cached** (when `C` `[n, m]` fits [`super::SinkhornOptions::cpu_cost_cache_bytes`]):
//!   costs are computed once; the f half-step reads rows of `C`, the g half-step reads column
//!   blocks of the same `C` (no `Cᵀ`). Each log-sum-exp is a single pass shifted by the LSE
//!   implied by the previous potential (`logw − old/ε`), which changes little between
//!   iterations; if the shifted sum leaves `[e⁻⁶⁰, e⁶⁰]` (first iterations, ε changes) that
//!   row/column is redone with a max-subtracted two-pass LSE. Same accuracy, half the passes.
//! - **streamed**: costs are recomputed in tiles of `RB` rows × `TC` columns from
//!   column-major copies of the clouds (so the inner loops vectorise), with an online
//!   max-subtracted LSE per tile, like the WGSL kernel.
//!
//! `exp` is a branch-free polynomial so that loops vectorise. On x86-64 the hot loops are
//! compiled a second time for AVX2+FMA and picked at run time.

/// Rows per cost tile.
const RB: usize = 4;
/// Columns per cost tile.
const TC: usize = 256;
/// Stands in for −∞ (matches the kernel's `NEG_BIG`).
pub(crate) const NEG_BIG: f32 = -1.0e30;
/// Below this many pairs a pass runs on one thread (spawning would cost more than it saves).
const MIN_PAIRS_PER_THREAD: usize = 1 << 17;

/// What one pass computes per row (the kernel's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Online LSE of `(h_j − C_ij)/ε`.
    Lse,
    /// Running maximum of `C_ij` (unscaled).
    MaxCost,
    /// LSE plus the first argmax.
    Argmax,
}

/// Online per-row state: running max, sum of `exp(v − max)`, argmax.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowState {
    pub max: f32,
    pub sum: f32,
    pub arg: u32,
}

impl Default for RowState {
    fn default() -> Self {
        RowState {
            max: NEG_BIG,
            sum: 0.0,
            arg: 0,
        }
    }
}

/// Cost `C_ij = inv_scale · (base(x_i, y_j) + λ·|s_i − s_j|)` on augmented points.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CostSpec {
    pub dim: usize,
    pub stride: usize,
    pub squared: bool,
    pub spatial: bool,
    pub lambda: f32,
    pub inv_scale: f32,
}

/// One side of a pass: its points row-major `[len, stride]` and column-major `[stride, len]`.
pub(crate) struct Cloud {
    pub rows: Vec<f32>,
    pub cols: Vec<f32>,
    pub len: usize,
}

impl Cloud {
    pub(crate) fn new(rows: Vec<f32>, len: usize, stride: usize) -> Cloud {
        let mut cols = vec![0f32; rows.len()];
        for (i, p) in rows.chunks_exact(stride.max(1)).enumerate() {
            for (k, &v) in p.iter().enumerate() {
                cols[k * len + i] = v;
            }
        }
        Cloud { rows, cols, len }
    }
}

/// Inputs of one pass: row points against column points.
pub(crate) struct Pass<'a> {
    pub spec: CostSpec,
    pub rows: &'a Cloud,
    pub cols: &'a Cloud,
    /// Precomputed scaled costs `[rows, cols]`, if cached.
    pub cache: Option<&'a [f32]>,
    /// Column potentials `[cols]` (ignored for [`Mode::MaxCost`]).
    pub h: &'a [f32],
    pub inv_eps: f32,
    pub mode: Mode,
}

/// Number of worker threads to use: rayon's pool size (1 on wasm32, which has no threads).
pub(crate) fn default_threads() -> usize {
    crate::util::parallel::worker_count()
}

/// Splits `out` (one item per row, `per_row` values each) into `threads` contiguous chunks
/// (row counts a multiple of the row block `RB`) and calls `work(first_row, chunk)` on each, on
/// rayon's pool.
pub(crate) fn parallel_rows<T: Send>(
    out: &mut [T],
    per_row: usize,
    threads: usize,
    pairs: usize,
    work: impl Fn(usize, &mut [T]) + Sync,
) {
    let rows = out.len() / per_row.max(1);
    let threads = threads
        .clamp(1, (pairs / MIN_PAIRS_PER_THREAD).max(1))
        .min(rows.max(1));
    // One chunk (threads == 1) is one call on the whole of `out`.
    let chunk_rows = rows.div_ceil(threads).next_multiple_of(RB);
    crate::util::parallel::for_each_row_chunk(out, per_row, chunk_rows, work);
}

/// Runs a pass over all rows: `states[i]` for row `i`.
pub(crate) fn run_pass(pass: &Pass<'_>, states: &mut [RowState], threads: usize) {
    let pairs = pass.rows.len * pass.cols.len;
    parallel_rows(states, 1, threads, pairs, |r0, chunk| {
        pass_rows(pass, r0, chunk)
    });
}

/// Fills `out` `[rows, cols]` with the scaled costs of rows `r0..` (a cache block).
pub(crate) fn cost_rows(
    spec: &CostSpec,
    rows: &Cloud,
    cols: &Cloud,
    out: &mut [f32],
    threads: usize,
) {
    let nc = cols.len;
    let pairs = rows.len * nc;
    parallel_rows(out, nc, threads, pairs, |r0, chunk| {
        with_simd(|| {
            let mut tile = vec![0f32; RB * TC];
            let nr = chunk.len() / nc.max(1);
            for b0 in (0..nr).step_by(RB) {
                let rb = RB.min(nr - b0);
                for j0 in (0..nc).step_by(TC) {
                    let tc = TC.min(nc - j0);
                    fill_costs(spec, rows, cols, r0 + b0, rb, j0, tc, &mut tile);
                    for rr in 0..rb {
                        chunk[(b0 + rr) * nc + j0..][..tc].copy_from_slice(&tile[rr * TC..][..tc]);
                    }
                }
            }
        })
    });
}

fn pass_rows(pass: &Pass<'_>, r0: usize, states: &mut [RowState]) {
    with_simd(|| pass_rows_impl(pass, r0, states));
}

#[inline(always)]
fn pass_rows_impl(pass: &Pass<'_>, r0: usize, states: &mut [RowState]) {
    let nc = pass.cols.len;
    let mut tile = vec![0f32; RB * TC];
    for b0 in (0..states.len()).step_by(RB) {
        let rb = RB.min(states.len() - b0);
        let st = &mut states[b0..b0 + rb];
        st.fill(RowState::default());
        for j0 in (0..nc).step_by(TC) {
            let tc = TC.min(nc - j0);
            match pass.cache {
                Some(cache) => {
                    for rr in 0..rb {
                        let row = r0 + b0 + rr;
                        tile[rr * TC..][..tc].copy_from_slice(&cache[row * nc + j0..][..tc]);
                    }
                }
                None => fill_costs(
                    &pass.spec,
                    pass.rows,
                    pass.cols,
                    r0 + b0,
                    rb,
                    j0,
                    tc,
                    &mut tile,
                ),
            }
            for (rr, s) in st.iter_mut().enumerate() {
                update_state(pass, s, &mut tile[rr * TC..][..tc], j0);
            }
        }
    }
}

/// Costs of rows `row0..row0+rb` against columns `j0..j0+tc` into `tile` (`[RB, TC]`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fill_costs(
    spec: &CostSpec,
    rows: &Cloud,
    cols: &Cloud,
    row0: usize,
    rb: usize,
    j0: usize,
    tc: usize,
    tile: &mut [f32],
) {
    let (stride, nc) = (spec.stride, cols.len);
    for rr in 0..rb {
        tile[rr * TC..][..tc].fill(0.0);
    }
    for k in 0..spec.dim {
        let yk = &cols.cols[k * nc + j0..][..tc];
        for rr in 0..rb {
            let xk = rows.rows[(row0 + rr) * stride + k];
            let acc = &mut tile[rr * TC..][..tc];
            for (a, &y) in acc.iter_mut().zip(yk) {
                let d = xk - y;
                *a += d * d;
            }
        }
    }
    let ys = spec.spatial.then(|| {
        (
            &cols.cols[spec.dim * nc + j0..][..tc],
            &cols.cols[(spec.dim + 1) * nc + j0..][..tc],
        )
    });
    for rr in 0..rb {
        let acc = &mut tile[rr * TC..][..tc];
        if !spec.squared {
            for a in acc.iter_mut() {
                *a = a.sqrt();
            }
        }
        if let Some((sx, sy)) = ys {
            let px = rows.rows[(row0 + rr) * stride + spec.dim];
            let py = rows.rows[(row0 + rr) * stride + spec.dim + 1];
            for ((a, &qx), &qy) in acc.iter_mut().zip(sx).zip(sy) {
                let (dx, dy) = (px - qx, py - qy);
                *a += spec.lambda * (dx * dx + dy * dy).sqrt();
            }
        }
        if spec.inv_scale != 1.0 {
            for a in acc.iter_mut() {
                *a *= spec.inv_scale;
            }
        }
    }
}

/// Folds one tile row of costs into a row's online state (`vals` is overwritten).
#[inline(always)]
fn update_state(pass: &Pass<'_>, st: &mut RowState, vals: &mut [f32], j0: usize) {
    if pass.mode == Mode::MaxCost {
        let tmax = max_of(vals);
        if tmax > st.max {
            st.max = tmax;
        }
        return;
    }
    let h = &pass.h[j0..j0 + vals.len()];
    let inv_eps = pass.inv_eps;
    for (v, &hj) in vals.iter_mut().zip(h) {
        *v = (hj - *v) * inv_eps;
    }
    let tmax = max_of(vals);
    if tmax > st.max {
        if pass.mode == Mode::Argmax {
            let at = vals.iter().position(|&v| v == tmax).unwrap_or(0);
            st.arg = (j0 + at) as u32;
        }
        st.sum *= (st.max - tmax).exp();
        st.max = tmax;
    }
    st.sum += sum_exp(vals, st.max);
}

#[inline(always)]
fn max_of(v: &[f32]) -> f32 {
    let mut acc = [NEG_BIG; 16];
    let chunks = v.chunks_exact(16);
    let rem = chunks.remainder();
    for ch in chunks {
        for l in 0..16 {
            acc[l] = if ch[l] > acc[l] { ch[l] } else { acc[l] };
        }
    }
    let mut m = NEG_BIG;
    for &x in acc.iter().chain(rem) {
        m = if x > m { x } else { m };
    }
    m
}

#[inline(always)]
fn sum_exp(v: &[f32], max: f32) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = v.chunks_exact(16);
    let rem = chunks.remainder();
    for ch in chunks {
        for l in 0..16 {
            acc[l] += fast_exp(ch[l] - max);
        }
    }
    let mut s: f32 = acc.iter().sum();
    for &x in rem {
        s += fast_exp(x - max);
    }
    s
}

/// Log-sum-exp of each row `i` of `(h_j − C_ij)·inv_eps` over a cached `C` `[rows, cols]`,
/// shifted by `shift[i]` (see the module docs). Returns `[rows]`.
pub(crate) fn lse_cached_rows(
    c: &[f32],
    cols: usize,
    h: &[f32],
    shift: &[f32],
    inv_eps: f32,
    threads: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; shift.len()];
    parallel_rows(&mut out, 1, threads, c.len(), |r0, chunk| {
        with_simd(|| {
            for (k, o) in chunk.iter_mut().enumerate() {
                let i = r0 + k;
                let row = &c[i * cols..(i + 1) * cols];
                *o = lse_row_shifted(row, h, shift[i], inv_eps)
                    .unwrap_or_else(|| lse_row_two_pass(row, h, inv_eps));
            }
        })
    });
    out
}

/// Log-sum-exp of each column `j` of `(h_i − C_ij)·inv_eps` over a cached `C` `[rows, cols]`,
/// shifted by `shift[j]`. Returns `[cols]`.
pub(crate) fn lse_cached_cols(
    c: &[f32],
    cols: usize,
    h: &[f32],
    shift: &[f32],
    inv_eps: f32,
    threads: usize,
) -> Vec<f32> {
    const CB: usize = 1024; // columns per block (accumulators stay in L1)
    const RCHUNK: usize = 256; // rows summed in f32 before adding into f64
    let rows = h.len();
    let mut out = vec![0f32; cols];
    parallel_rows(&mut out, 1, threads, c.len(), |j0, chunk| {
        with_simd(|| {
            let mut acc32 = [0f32; CB];
            let mut acc64 = [0f64; CB];
            for (b, block) in chunk.chunks_mut(CB).enumerate() {
                let jb = j0 + b * CB;
                let w = block.len();
                let sh = &shift[jb..jb + w];
                acc64[..w].fill(0.0);
                for i0 in (0..rows).step_by(RCHUNK) {
                    acc32[..w].fill(0.0);
                    let i1 = (i0 + RCHUNK).min(rows);
                    let mut i = i0;
                    // Four rows at a time: one load/store of the accumulators per four terms.
                    while i + 4 <= i1 {
                        let r = |k: usize| &c[(i + k) * cols + jb..(i + k) * cols + jb + w];
                        let (c0, c1, c2, c3) = (r(0), r(1), r(2), r(3));
                        let (h0, h1, h2, h3) = (h[i], h[i + 1], h[i + 2], h[i + 3]);
                        let (acc, sh) = (&mut acc32[..w], &sh[..w]);
                        for j in 0..w {
                            let s = sh[j];
                            acc[j] += (fast_exp((h0 - c0[j]) * inv_eps - s)
                                + fast_exp((h1 - c1[j]) * inv_eps - s))
                                + (fast_exp((h2 - c2[j]) * inv_eps - s)
                                    + fast_exp((h3 - c3[j]) * inv_eps - s));
                        }
                        i += 4;
                    }
                    for i in i..i1 {
                        let hi = h[i];
                        let crow = &c[i * cols + jb..i * cols + jb + w];
                        for ((a, &cij), &s) in acc32[..w].iter_mut().zip(crow).zip(sh) {
                            *a += fast_exp((hi - cij) * inv_eps - s);
                        }
                    }
                    for (a64, &a) in acc64[..w].iter_mut().zip(&acc32[..w]) {
                        *a64 += a as f64;
                    }
                }
                for (k, o) in block.iter_mut().enumerate() {
                    let sum = acc64[k];
                    *o = if (SHIFT_MIN..=SHIFT_MAX).contains(&sum) {
                        sh[k] + sum.ln() as f32
                    } else {
                        let j = jb + k;
                        let col = (0..rows).map(|i| (h[i] - c[i * cols + j]) * inv_eps);
                        lse_two_pass_iter(col)
                    };
                }
            }
        })
    });
    out
}

/// `Cᵀ` `[cols, rows]` of `c` `[rows, cols]` (blocked, on `threads` threads).
pub(crate) fn transpose(c: &[f32], rows: usize, cols: usize, threads: usize) -> Vec<f32> {
    const B: usize = 64;
    let mut t = vec![0f32; c.len()];
    parallel_rows(&mut t, rows, threads, c.len(), |j0, chunk| {
        let nj = chunk.len() / rows.max(1);
        for jb in (0..nj).step_by(B) {
            for ib in (0..rows).step_by(B) {
                for j in jb..(jb + B).min(nj) {
                    for i in ib..(ib + B).min(rows) {
                        chunk[j * rows + i] = c[i * cols + j0 + j];
                    }
                }
            }
        }
    });
    t
}

/// Valid range of a shifted sum: `[e⁻⁶⁰, e⁶⁰]`.
const SHIFT_MIN: f64 = 8.756_510_762_696_52e-27;
const SHIFT_MAX: f64 = 1.142_007_389_815_684e26;

#[inline(always)]
fn lse_row_shifted(row: &[f32], h: &[f32], shift: f32, inv_eps: f32) -> Option<f32> {
    let mut acc = [0f32; 16];
    let (rc, hc) = (row.chunks_exact(16), h.chunks_exact(16));
    let (rr, hr) = (rc.remainder(), hc.remainder());
    for (cs, hs) in rc.zip(hc) {
        for l in 0..16 {
            acc[l] += fast_exp((hs[l] - cs[l]) * inv_eps - shift);
        }
    }
    let mut sum: f64 = acc.iter().map(|&a| a as f64).sum();
    for (&cij, &hj) in rr.iter().zip(hr) {
        sum += fast_exp((hj - cij) * inv_eps - shift) as f64;
    }
    (SHIFT_MIN..=SHIFT_MAX)
        .contains(&sum)
        .then(|| shift + sum.ln() as f32)
}

fn lse_row_two_pass(row: &[f32], h: &[f32], inv_eps: f32) -> f32 {
    lse_two_pass_iter(row.iter().zip(h).map(|(&cij, &hj)| (hj - cij) * inv_eps))
}

fn lse_two_pass_iter(values: impl Iterator<Item = f32> + Clone) -> f32 {
    let max = values.clone().fold(NEG_BIG, f32::max);
    let sum: f64 = values.map(|v| (v - max).exp() as f64).sum();
    max + sum.ln() as f32
}

/// Runs `f` (inlined) compiled for AVX2+FMA when the CPU has them, so that the loops
/// inside vectorise 8 lanes wide. (An AVX-512 tier measured no faster on this workload.)
#[inline(always)]
fn with_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports every feature `avx2` is compiled for.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// `exp(x)` for `x ≤ 0` in f32 (relative error ≲ 2e-7; `x < −87` gives ≈1e-38 instead of
/// a denormal or 0), branch-free so that it vectorises.
#[inline(always)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = if x < -87.0 { -87.0 } else { x };
    let x = if x > 88.0 { 88.0 } else { x };
    let shifted = x * LOG2E + MAGIC;
    let n = shifted - MAGIC;
    let ni = (shifted.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((ni + 127) << 23) as u32)
}

/// `exp(x) − 1` without cancellation for small `|x|` (matches the kernel's `expm1_small`).
pub(crate) fn expm1_small(x: f32) -> f32 {
    if x.abs() < 1.0e-2 {
        x * (1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0))))
    } else {
        x.exp() - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 87.0 * i as f32 / 200_000.0;
            let want = (x as f64).exp();
            let got = fast_exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        assert!(fast_exp(-1.0e30) >= 0.0 && fast_exp(-1.0e30) < 1e-37);
    }
}
