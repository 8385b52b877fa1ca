//! The CPU engine's GEMM: `y = act(x·Wᵀ·scale + b) (+ residual)` for `x` `[n, in]` over many
//! cells' tokens at once, on weights packed once per model.
//!
//! [`PackedLinear`] holds a linear layer's weights as f32 in panels of [`NR`] outputs
//! (`[out/NR][in][NR]`, zero-padded): int8 weights are stored as their integer values (exact
//! in f32) with the per-row scale applied in the epilogue, exactly like
//! [`super::ops::matmul_int8_reference`] (`acc = Σ_k x·q`, `y = acc·scale + b`); f32 weights
//! get scale 1. A register-tiled micro-kernel computes an `MR × NR` tile of accumulators with
//! one running sum per output over `k = 0..in` in order, so:
//! - the portable kernel and the wasm SIMD128 kernel (separate multiply and add) give the
//!   reference's results bit for bit (same products, same order);
//! - the x86-64 AVX2+FMA kernel (chosen at run time by `is_x86_feature_detected!`) fuses each
//!   multiply-add, a rounding difference of at most ~1 ulp per step (relative ≤ 1e-6 on the
//!   dot products of these models; the tests hold it to 1e-5 relative to `Σ|x·w|`);
//! - the wasm relaxed-SIMD build (cargo feature `relaxed-simd`, a third package build) uses
//!   `f32x4.relaxed_madd`, fused where the CPU has FMA (then the same sums as the AVX2+FMA
//!   kernel), separate otherwise; the browser test holds it to 1e-3 per logit of the SIMD128
//!   build.
//!
//! The epilogue (scale, bias, GELU, residual) runs on the tile while it is in registers/L1.
//! Natively the rows are split over rayon's pool ([`crate::util::parallel`]); on wasm32 it is
//! one thread.

use super::format::{Linear, LinearWeight};
use crate::gpu::Activation;
use crate::util::parallel::{for_each_row_chunk, worker_count};
#[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
use super::ops::madd_f32x4;


/// Outputs per packed panel (columns of a micro-tile): two AVX 8-lane registers natively,
/// two SIMD128 4-lane registers on wasm32.
#[cfg(not(target_arch = "wasm32"))]
pub const NR: usize = 16;
/// Outputs per packed panel (columns of a micro-tile).
#[cfg(target_arch = "wasm32")]
pub const NR: usize = 8;
/// Rows of a micro-tile (4 × NR accumulators: 8 vector registers on both targets).
pub const MR: usize = 4;
/// Rows per cache block: the block of `x` (`ROW_BLOCK × in` f32) stays in L1/L2 while every
/// panel of the weights passes over it.
pub(super) const ROW_BLOCK: usize = 64;

/// A linear layer `[out, in]` packed for [`gemm`], per-output `scale` and `bias`
/// `[out.div_ceil(NR)·NR]` (padding: weight 0, scale 1, bias 0), and the weights either as
/// f32 panels `[out.div_ceil(NR)][in][NR]` ([`PackedLinear::new`]) or, for an int8 layer in
/// W8A8 mode ([`PackedLinear::new_w8a8`]), as i8 panels `[out.div_ceil(NR)][in.div_ceil(2)][NR][2]`
/// (pairs of inputs per output, the operand layout of `i32x4.dot_i16x8` / `vpmaddwd`; see
/// [`super::gemm_i8`]).
#[derive(Clone, Debug)]
pub struct PackedLinear {
    /// Outputs.
    pub out_dim: usize,
    /// Inputs.
    pub in_dim: usize,
    pub(super) panels: Panels,
    /// Per panel, its NR outputs' scales (padding 1): one bounds check per micro-tile, and
    /// fixed-length lanes that vectorise in the epilogue.
    pub(super) scale: Vec<[f32; NR]>,
    /// Per panel, its NR outputs' biases (padding 0).
    pub(super) bias: Vec<[f32; NR]>,
}

/// The packed weight values of a [`PackedLinear`].
#[derive(Clone, Debug)]
pub(super) enum Panels {
    /// `[out/NR][in][NR]` f32 (int8 weights as their integer values).
    F32(Vec<f32>),
    /// `[out/NR][in.div_ceil(2)][NR][2]` i8 (W8A8: activations quantised per row).
    I8(Vec<i8>),
}

impl PackedLinear {
    /// Packs `w` (int8: integer values plus scale; f32: values with scale 1) as f32 panels:
    /// the GEMM multiplies f32 activations by the int8 values (bit-exact with
    /// [`super::ops::matmul_int8_reference`] on the portable and SIMD128 kernels).
    pub fn new(w: &Linear) -> Self {
        let (out_dim, in_dim) = (w.out_dim, w.in_dim);
        let mut panels = vec![0.0f32; out_dim.div_ceil(NR) * in_dim * NR];
        let value: Box<dyn Fn(usize) -> f32 + '_> = match &w.weight {
            LinearWeight::F32(wf) => Box::new(move |i| wf[i]),
            LinearWeight::Int8 { q, .. } => Box::new(move |i| f32::from(q[i])),
        };
        for o in 0..out_dim {
            let (p, j) = (o / NR, o % NR);
            for k in 0..in_dim {
                panels[(p * in_dim + k) * NR + j] = value(o * in_dim + k);
            }
        }
        Self::with_panels(w, Panels::F32(panels))
    }

    /// Packs an int8 `w` for the W8A8 GEMM (i8 weights × per-row int8 activations → i32,
    /// [`super::gemm_i8`]); an f32 `w` is packed as by [`PackedLinear::new`].
    pub fn new_w8a8(w: &Linear) -> Self {
        let LinearWeight::Int8 { q, .. } = &w.weight else {
            return Self::new(w);
        };
        let (out_dim, in_dim) = (w.out_dim, w.in_dim);
        let k_pairs = in_dim.div_ceil(2);
        let mut panels = vec![0i8; out_dim.div_ceil(NR) * k_pairs * NR * 2];
        for o in 0..out_dim {
            let (p, j) = (o / NR, o % NR);
            for k in 0..in_dim {
                panels[((p * k_pairs + k / 2) * NR + j) * 2 + k % 2] = q[o * in_dim + k];
            }
        }
        Self::with_panels(w, Panels::I8(panels))
    }

    fn with_panels(w: &Linear, panels: Panels) -> Self {
        let n_panels = w.out_dim.div_ceil(NR);
        let mut scale = vec![[1.0f32; NR]; n_panels];
        let mut bias = vec![[0.0f32; NR]; n_panels];
        for o in 0..w.out_dim {
            bias[o / NR][o % NR] = w.bias[o];
            if let LinearWeight::Int8 { scale: s, .. } = &w.weight {
                scale[o / NR][o % NR] = s[o];
            }
        }
        Self { out_dim: w.out_dim, in_dim: w.in_dim, panels, scale, bias }
    }

    /// Whether this layer runs the W8A8 integer GEMM ([`PackedLinear::new_w8a8`] of an int8
    /// layer).
    pub fn is_w8a8(&self) -> bool {
        matches!(self.panels, Panels::I8(_))
    }

    fn panel(&self, p: usize) -> &[f32] {
        let Panels::F32(panels) = &self.panels else { unreachable!("f32 panel of a W8A8 layer") };
        &panels[p * self.in_dim * NR..(p + 1) * self.in_dim * NR]
    }
}

/// Which micro-kernel [`gemm_with`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Plain Rust, separate multiply and add (bit-exact with the reference).
    Portable,
    /// x86-64 AVX2 + FMA (fused multiply-add).
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    /// wasm32 SIMD128: separate multiply and add, bit-exact with the reference; in the
    /// relaxed-SIMD build (cargo feature `relaxed-simd`) `f32x4.relaxed_madd`, fused where the
    /// CPU has FMA (the AVX2+FMA kernel's numerics and tolerance).
    #[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
    Simd128,
}

impl Kernel {
    /// The fastest kernel this machine supports (checked once natively).
    pub fn best() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            use std::sync::OnceLock;
            static BEST: OnceLock<Kernel> = OnceLock::new();
            *BEST.get_or_init(|| {
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    Kernel::Avx2Fma
                } else {
                    Kernel::Portable
                }
            })
        }
        #[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
        {
            Kernel::Simd128
        }
        #[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))))]
        {
            Kernel::Portable
        }
    }

    /// Every kernel this machine can run (for the tests).
    pub fn available() -> Vec<Kernel> {
        let mut v = vec![Kernel::Portable];
        if Kernel::best() != Kernel::Portable {
            v.push(Kernel::best());
        }
        v
    }
}

/// `y = act(x·Wᵀ·scale + b) (+ residual)` for `x` `[n, in]` → `[n, out]` with the best
/// kernel ([`Kernel::best`]).
///
/// # Panics
/// If `x` is not `[n, in]` or `residual` is not `[n, out]`.
pub fn gemm(x: &[f32], n: usize, w: &PackedLinear, act: Activation, residual: Option<&[f32]>) -> Vec<f32> {
    gemm_with(Kernel::best(), x, n, w, act, residual)
}

/// Panics unless `x` is `[n, w.in_dim]` and `residual` (if any) is `[n, w.out_dim]`.
fn assert_gemm_shapes(x: &[f32], n: usize, w: &PackedLinear, residual: Option<&[f32]>) {
    let (in_dim, out_dim) = (w.in_dim, w.out_dim);
    assert_eq!(x.len(), n * in_dim, "gemm: x is not [n={n}, in={in_dim}]");
    if let Some(r) = residual {
        assert_eq!(r.len(), n * out_dim, "gemm: residual is not [n={n}, out={out_dim}]");
    }
}

/// [`gemm`] with a chosen kernel (the caller checks it is available: [`Kernel::available`]).
pub fn gemm_with(
    kernel: Kernel,
    x: &[f32],
    n: usize,
    w: &PackedLinear,
    act: Activation,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let (in_dim, out_dim) = (w.in_dim, w.out_dim);
    assert_gemm_shapes(x, n, w, residual);
    let mut y = vec![0.0f32; n * out_dim];
    if n == 0 || out_dim == 0 {
        return y;
    }
    let rows_per_chunk = rows_per_chunk(n, in_dim, out_dim);
    let w8a8 = w.is_w8a8();
    for_each_row_chunk(&mut y, out_dim, rows_per_chunk, |r0, yc| {
        let nr = yc.len() / out_dim;
        let xc = &x[r0 * in_dim..(r0 + nr) * in_dim];
        let rc = residual.map(|res| &res[r0 * out_dim..(r0 + nr) * out_dim]);
        if w8a8 {
            return super::gemm_i8::gemm_i8_rows_dispatch(kernel, xc, nr, w, act, rc, yc);
        }
        // Safe to call on wasm32: the SIMD128 build only instantiates where the engine
        // validated SIMD (js/wasm.js), so these instructions never meet an engine without it.
        #[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
        if kernel == Kernel::Simd128 {
            return gemm_rows_simd128(xc, nr, w, act, rc, yc);
        }
        gemm_rows(kernel, xc, nr, w, act, rc, yc);
    });
    y
}

/// [`gemm`] for an `x` `[n, in]` made mostly of exact zeros (the model input of sparse
/// counts: log1p keeps zeros zero): with at least half of `x` zero, each row's non-zero
/// inputs are gathered and only their weights are read (cost ∝ non-zeros, not `in`); else, or
/// for a W8A8 layer, it is [`gemm`].
///
/// Bit-identical to [`gemm`] with the same kernel: the kept products are summed in the same
/// order from the same `+0` start, and a skipped term `0·w` (finite `w`: validated models) is
/// `±0`, which leaves a sum unchanged (a round-to-nearest sum is never `−0` from a `+0` start),
/// also under a fused multiply-add.
///
/// # Panics
/// As [`gemm`].
pub fn gemm_sparse_input(x: &[f32], n: usize, w: &PackedLinear, act: Activation, residual: Option<&[f32]>) -> Vec<f32> {
    gemm_sparse_input_with(Kernel::best(), x, n, w, act, residual)
}

/// [`gemm_sparse_input`] with a chosen kernel ([`Kernel::available`]).
pub fn gemm_sparse_input_with(
    kernel: Kernel,
    x: &[f32],
    n: usize,
    w: &PackedLinear,
    act: Activation,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let zeros = x.iter().filter(|v| **v == 0.0).count();
    if w.is_w8a8() || 2 * zeros < x.len() || w.in_dim == 0 {
        return gemm_with(kernel, x, n, w, act, residual);
    }
    let (in_dim, out_dim) = (w.in_dim, w.out_dim);
    assert_gemm_shapes(x, n, w, residual);
    let mut y = vec![0.0f32; n * out_dim];
    if n == 0 || out_dim == 0 {
        return y;
    }
    let rows_per_chunk = rows_per_chunk(n, in_dim - zeros / n.max(1), out_dim);
    for_each_row_chunk(&mut y, out_dim, rows_per_chunk, |r0, yc| {
        let nr = yc.len() / out_dim;
        let xc = &x[r0 * in_dim..(r0 + nr) * in_dim];
        let rc = residual.map(|res| &res[r0 * out_dim..(r0 + nr) * out_dim]);
        match kernel {
            // SAFETY: `Kernel::Avx2Fma` is only handed out after avx2 and fma were detected.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma => unsafe { sparse_rows_avx2_fma(xc, nr, w, act, rc, yc) },
            #[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
            Kernel::Simd128 => sparse_rows_simd128(xc, nr, w, act, rc, yc),
            Kernel::Portable => sparse_rows(xc, nr, w, act, rc, yc, sparse_panel::<false>),
        }
    });
    y
}

/// [`sparse_rows`] with fused multiply-adds (as the AVX2+FMA dense kernel).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sparse_rows_avx2_fma(x: &[f32], n: usize, w: &PackedLinear, act: Activation, residual: Option<&[f32]>, y: &mut [f32]) {
    sparse_rows(x, n, w, act, residual, y, sparse_panel::<true>);
}

/// [`sparse_rows`] compiled with SIMD128: `acc + x_k·w[k]` as [`madd_f32x4`] (separate
/// multiply and add as the dense kernel; fused in the relaxed-SIMD build, as the dense kernel).
#[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
#[target_feature(enable = "simd128")]
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
fn sparse_rows_simd128(x: &[f32], n: usize, w: &PackedLinear, act: Activation, residual: Option<&[f32]>, y: &mut [f32]) {
    use core::arch::wasm32::*;
    sparse_rows(x, n, w, act, residual, y, |nz, panel| {
        let (mut a0, mut a1) = (f32x4_splat(0.0), f32x4_splat(0.0));
        for &(off, v) in nz {
            let wk = &panel[off..off + NR];
            // SAFETY: `wk` holds NR = 8 f32 (two unaligned 16-byte loads).
            let (w0, w1) = unsafe { (v128_load(wk.as_ptr() as *const v128), v128_load(wk.as_ptr().add(4) as *const v128)) };
            let xv = f32x4_splat(v);
            a0 = madd_f32x4(xv, w0, a0);
            a1 = madd_f32x4(xv, w1, a1);
        }
        let mut acc = [0.0f32; NR];
        // SAFETY: `acc` holds NR = 8 f32.
        unsafe {
            v128_store(acc.as_mut_ptr() as *mut v128, a0);
            v128_store(acc.as_mut_ptr().add(4) as *mut v128, a1);
        }
        acc
    });
}

/// One panel's sums over one row's non-zero inputs `nz` (`(k·NR, x_k)`): `acc_j = Σ x_k ·
/// panel[k·NR + j]` in order from +0, fused when `FMA`.
#[inline(always)]
fn sparse_panel<const FMA: bool>(nz: &[(usize, f32)], panel: &[f32]) -> [f32; NR] {
    let mut acc = [0.0f32; NR];
    for &(off, v) in nz {
        let wk = &panel[off..off + NR];
        for (a, wj) in acc.iter_mut().zip(wk) {
            *a = if FMA { v.mul_add(*wj, *a) } else { *a + v * wj };
        }
    }
    acc
}

/// The serial sparse-input GEMM over rows `x` `[n, in]` into `y` `[n, out]`: first every row's
/// non-zero inputs `(k, x_k)` in order (compressed rows), then per panel of NR outputs and per
/// row the sums `panel_sums(row's non-zeros, panel)` and the shared epilogue. Panels
/// outermost: one panel (`in·NR` values, ~10 KiB for 313 genes) stays in L1 while every row
/// passes over it, where row-outer order streamed the whole layer from L2 for each row.
#[inline(always)]
fn sparse_rows(
    x: &[f32],
    n: usize,
    w: &PackedLinear,
    act: Activation,
    residual: Option<&[f32]>,
    y: &mut [f32],
    panel_sums: impl Fn(&[(usize, f32)], &[f32]) -> [f32; NR],
) {
    let (in_dim, out_dim) = (w.in_dim, w.out_dim);
    // (offset k·NR into a panel, x_k) of each row's non-zero inputs; row r's are nz[starts[r]..starts[r + 1]].
    let mut nz: Vec<(usize, f32)> = Vec::with_capacity(n * in_dim / 2 + 1);
    let mut starts = Vec::with_capacity(n + 1);
    starts.push(0);
    for r in 0..n {
        nz.extend(x[r * in_dim..(r + 1) * in_dim].iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(k, v)| (k * NR, *v)));
        starts.push(nz.len());
    }
    for p in 0..out_dim.div_ceil(NR) {
        let panel = w.panel(p);
        let o0 = p * NR;
        for (r, bounds) in starts.windows(2).enumerate() {
            let acc = panel_sums(&nz[bounds[0]..bounds[1]], panel);
            let (sc, bi) = (&w.scale[p], &w.bias[p]);
            epilogue(y, out_dim, r, 1, o0, NR.min(out_dim - o0), act, residual, |_, j| acc[j] * sc[j] + bi[j]);
        }
    }
}

/// Rows per parallel chunk of a GEMM of `x` `[n, in]` → `[n, out]`: about four chunks per
/// worker (whole row blocks where possible), or all rows at once on one worker or a small
/// product.
fn rows_per_chunk(n: usize, in_dim: usize, out_dim: usize) -> usize {
    let threads = worker_count();
    if threads > 1 && n * out_dim * in_dim.max(1) > 1 << 17 {
        let c = n.div_ceil(threads * 4);
        if c >= ROW_BLOCK { c.div_ceil(ROW_BLOCK) * ROW_BLOCK } else { c.div_ceil(MR) * MR }
    } else {
        n
    }
}

/// The GEMM epilogue of one micro-tile: for rows `i < rows` and columns `j < cols` of the tile
/// at row `r`, output column `o0`, `y = act(pre(i, j)) (+ residual)` where `pre` is the
/// pre-activation (`acc·scale + b`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn epilogue(
    y: &mut [f32],
    out_dim: usize,
    r: usize,
    rows: usize,
    o0: usize,
    cols: usize,
    act: Activation,
    residual: Option<&[f32]>,
    pre: impl Fn(usize, usize) -> f32,
) {
    // Whole NR-wide rows first (fixed length: vectorises), then GELU, residual and store.
    for i in 0..rows {
        let row = (r + i) * out_dim + o0;
        let mut v = [0.0f32; NR];
        for (j, vj) in v.iter_mut().enumerate() {
            *vj = pre(i, j);
        }
        if act == Activation::Gelu {
            // All NR lanes (padding lanes are discarded below).
            gelu_lanes(&mut v);
        }
        if cols == NR {
            // A whole tile row: fixed-length stores. A variable-length `copy_from_slice`
            // becomes wasm `memory.copy`, which V8 runs as a call into the runtime (measured:
            // 6 % of a classify in `memmove`, for 32-byte copies).
            // (Slices of the constant length NR: no bounds check per lane.)
            let yr = &mut y[row..row + NR];
            match residual {
                Some(res) => {
                    let rr = &res[row..row + NR];
                    for j in 0..NR {
                        yr[j] = v[j] + rr[j];
                    }
                }
                None => yr.copy_from_slice(&v),
            }
            continue;
        }
        let yr = &mut y[row..row + cols];
        match residual {
            Some(res) => yr.iter_mut().zip(&v).zip(&res[row..row + cols]).for_each(|((yo, vj), rj)| *yo = vj + rj),
            None => yr.iter_mut().zip(&v).for_each(|(yo, vj)| *yo = *vj),
        }
    }
}

/// [`super::ops::gelu_reference`] on each of the NR values (branch-free, inlined `exp_approx`).
#[inline(always)]
fn gelu_lanes(v: &mut [f32; NR]) {
    #[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
    {
        use core::arch::wasm32::{v128, v128_load, v128_store};
        for c in v.chunks_exact_mut(4) {
            // SAFETY: `c` holds 4 f32 (16 bytes; unaligned v128 loads and stores are allowed).
            // The SIMD128 build only runs where the engine validated SIMD (js/wasm.js).
            unsafe { v128_store(c.as_mut_ptr() as *mut v128, super::ops::gelu_f32x4(v128_load(c.as_ptr() as *const v128))) };
        }
    }
    #[cfg(not(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128"))))]
    v.iter_mut().for_each(|vj| *vj = super::ops::gelu_reference(*vj));
}

/// [`gemm_rows`] compiled with SIMD128 enabled (the epilogue and tail copies vectorise too).
#[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
#[target_feature(enable = "simd128")]
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
fn gemm_rows_simd128(x: &[f32], n: usize, w: &PackedLinear, act: Activation, residual: Option<&[f32]>, y: &mut [f32]) {
    gemm_rows(Kernel::Simd128, x, n, w, act, residual, y);
}

/// The serial GEMM over rows `x` `[n, in]` into `y` `[n, out]`.
#[inline(always)]
fn gemm_rows(
    kernel: Kernel,
    x: &[f32],
    n: usize,
    w: &PackedLinear,
    act: Activation,
    residual: Option<&[f32]>,
    y: &mut [f32],
) {
    let (in_dim, out_dim) = (w.in_dim, w.out_dim);
    let n_panels = out_dim.div_ceil(NR);
    // Rows of the last, partial micro-tile are copied into a zero-padded tile of MR rows.
    let mut tail = vec![0.0f32; MR * in_dim];
    let mut acc = [[0.0f32; NR]; MR];
    let mut b0 = 0;
    while b0 < n {
        let b1 = (b0 + ROW_BLOCK).min(n);
        for p in 0..n_panels {
            let panel = w.panel(p);
            let o0 = p * NR;
            let cols = NR.min(out_dim - o0);
            let mut r = b0;
            while r < b1 {
                let rows = MR.min(b1 - r);
                let xt: &[f32] = if rows == MR {
                    &x[r * in_dim..(r + MR) * in_dim]
                } else {
                    tail[..rows * in_dim].copy_from_slice(&x[r * in_dim..(r + rows) * in_dim]);
                    tail[rows * in_dim..].fill(0.0);
                    &tail
                };
                micro_kernel(kernel, xt, in_dim, panel, &mut acc);
                // Epilogue: the reference's `acc·scale + b`, then GELU, then the residual.
                let (sc, bi) = (&w.scale[p], &w.bias[p]);
                epilogue(y, out_dim, r, rows, o0, cols, act, residual, |i, j| acc[i][j] * sc[j] + bi[j]);
                r += rows;
            }
        }
        b0 = b1;
    }
}

/// `acc[i][j] = Σ_k x[i·k_len + k] · panel[k·NR + j]`, summed over `k` in order.
#[inline(always)]
fn micro_kernel(kernel: Kernel, x: &[f32], k_len: usize, panel: &[f32], acc: &mut [[f32; NR]; MR]) {
    debug_assert!(x.len() >= MR * k_len && panel.len() >= k_len * NR);
    match kernel {
        Kernel::Portable => micro_portable(x, k_len, panel, acc),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::Avx2Fma` is only handed out by `Kernel::best` after
        // `is_x86_feature_detected!` confirmed avx2 and fma; the slices are long enough
        // (asserted above and by construction in `gemm_rows`).
        Kernel::Avx2Fma => unsafe { micro_avx2_fma(x, k_len, panel, acc) },
        #[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
        // Only in the SIMD128 build (cargo feature `simd128`), which the package loads only
        // where `WebAssembly.validate` accepted a SIMD module (js/wasm.js).
        Kernel::Simd128 => micro_simd128(x, k_len, panel, acc),
    }
}

fn micro_portable(x: &[f32], k_len: usize, panel: &[f32], acc: &mut [[f32; NR]; MR]) {
    let mut a = [[0.0f32; NR]; MR];
    for (k, wk) in panel.chunks_exact(NR).take(k_len).enumerate() {
        for (i, ai) in a.iter_mut().enumerate() {
            let xv = x[i * k_len + k];
            for (aij, &wj) in ai.iter_mut().zip(wk) {
                *aij += xv * wj;
            }
        }
    }
    *acc = a;
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_avx2_fma(x: &[f32], k_len: usize, panel: &[f32], acc: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    assert!(x.len() >= MR * k_len && panel.len() >= k_len * NR);
    let xp = x.as_ptr();
    let wp = panel.as_ptr();
    let mut c00 = _mm256_setzero_ps();
    let mut c01 = _mm256_setzero_ps();
    let mut c10 = _mm256_setzero_ps();
    let mut c11 = _mm256_setzero_ps();
    let mut c20 = _mm256_setzero_ps();
    let mut c21 = _mm256_setzero_ps();
    let mut c30 = _mm256_setzero_ps();
    let mut c31 = _mm256_setzero_ps();
    for k in 0..k_len {
        // SAFETY: k < k_len; the panel holds k_len·NR values and x holds MR·k_len (asserted).
        let w0 = _mm256_loadu_ps(wp.add(k * NR));
        let w1 = _mm256_loadu_ps(wp.add(k * NR + 8));
        let x0 = _mm256_broadcast_ss(&*xp.add(k));
        c00 = _mm256_fmadd_ps(x0, w0, c00);
        c01 = _mm256_fmadd_ps(x0, w1, c01);
        let x1 = _mm256_broadcast_ss(&*xp.add(k_len + k));
        c10 = _mm256_fmadd_ps(x1, w0, c10);
        c11 = _mm256_fmadd_ps(x1, w1, c11);
        let x2 = _mm256_broadcast_ss(&*xp.add(2 * k_len + k));
        c20 = _mm256_fmadd_ps(x2, w0, c20);
        c21 = _mm256_fmadd_ps(x2, w1, c21);
        let x3 = _mm256_broadcast_ss(&*xp.add(3 * k_len + k));
        c30 = _mm256_fmadd_ps(x3, w0, c30);
        c31 = _mm256_fmadd_ps(x3, w1, c31);
    }
    for (row, (lo, hi)) in acc.iter_mut().zip([(c00, c01), (c10, c11), (c20, c21), (c30, c31)]) {
        _mm256_storeu_ps(row.as_mut_ptr(), lo);
        _mm256_storeu_ps(row.as_mut_ptr().add(8), hi);
    }
}

#[cfg(all(target_arch = "wasm32", any(target_feature = "simd128", feature = "simd128")))]
#[target_feature(enable = "simd128")]
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
fn micro_simd128(x: &[f32], k_len: usize, panel: &[f32], acc: &mut [[f32; NR]; MR]) {
    use core::arch::wasm32::*;
    assert!(x.len() >= MR * k_len && panel.len() >= k_len * NR);
    let (xp, wp) = (x.as_ptr(), panel.as_ptr());
    let z = f32x4_splat(0.0);
    let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21, mut c30, mut c31) = (z, z, z, z, z, z, z, z);
    for k in 0..k_len {
        // SAFETY: k < k_len, so k·NR + 8 ≤ the panel's k_len·NR values and i·k_len + k <
        // MR·k_len ≤ x.len() (asserted); v128_load reads 16 unaligned bytes.
        unsafe {
            let w = wp.add(k * NR);
            let (w0, w1) = (v128_load(w as *const v128), v128_load(w.add(4) as *const v128));
            let x0 = f32x4_splat(*xp.add(k));
            c00 = madd_f32x4(x0, w0, c00);
            c01 = madd_f32x4(x0, w1, c01);
            let x1 = f32x4_splat(*xp.add(k_len + k));
            c10 = madd_f32x4(x1, w0, c10);
            c11 = madd_f32x4(x1, w1, c11);
            let x2 = f32x4_splat(*xp.add(2 * k_len + k));
            c20 = madd_f32x4(x2, w0, c20);
            c21 = madd_f32x4(x2, w1, c21);
            let x3 = f32x4_splat(*xp.add(3 * k_len + k));
            c30 = madd_f32x4(x3, w0, c30);
            c31 = madd_f32x4(x3, w1, c31);
        }
    }
    for (row, (lo, hi)) in acc.iter_mut().zip([(c00, c01), (c10, c11), (c20, c21), (c30, c31)]) {
        // SAFETY: a row holds NR = 8 f32: two 16-byte stores.
        unsafe {
            v128_store(row.as_mut_ptr() as *mut v128, lo);
            v128_store(row.as_mut_ptr().add(4) as *mut v128, hi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::matmul_int8_reference;
    use crate::util::rng::SplitMix64;

    #[test]
    fn sparse_input_gemm_is_bit_identical_to_the_dense_gemm() {
        let mut rng = SplitMix64::new(31);
        for &(n, i, o) in &[(37usize, 313usize, 256usize), (5, 64, 20), (1, 3, 1)] {
            // ~80 % exact zeros (as log1p of sparse counts), negative and positive values.
            let x: Vec<f32> = rng.uniform_vec(n * i, -1.0, 4.0).into_iter().map(|v| if v < 3.0 { 0.0 } else { v - 3.5 }).collect();
            let res = rng.uniform_vec(n * o, -1.0, 1.0);
            let f32w = Linear { out_dim: o, in_dim: i, weight: LinearWeight::F32(rng.uniform_vec(o * i, -0.5, 0.5)), bias: rng.uniform_vec(o, -0.1, 0.1) };
            for w in [f32w.clone(), f32w.quantized()] {
                let packed = PackedLinear::new(&w);
                for kernel in Kernel::available() {
                    for (act, r) in [(Activation::None, None), (Activation::Gelu, Some(res.as_slice()))] {
                        let dense = gemm_with(kernel, &x, n, &packed, act, r);
                        let sparse = gemm_sparse_input_with(kernel, &x, n, &packed, act, r);
                        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&sparse), bits(&dense), "{kernel:?} n={n} in={i} out={o} {act:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn gemm_matches_the_reference_on_every_kernel() {
        let mut rng = SplitMix64::new(29);
        for &(n, i, o) in &[(37usize, 313usize, 50usize), (600, 64, 192), (3, 5, 2), (130, 64, 16), (1, 0, 3)] {
            let x = rng.uniform_vec(n * i, -2.0, 2.0);
            let res = rng.uniform_vec(n * o, -1.0, 1.0);
            let f32w = Linear { out_dim: o, in_dim: i, weight: LinearWeight::F32(rng.uniform_vec(o * i, -0.5, 0.5)), bias: rng.uniform_vec(o, -0.1, 0.1) };
            for w in [f32w.clone(), f32w.quantized()] {
                let packed = PackedLinear::new(&w);
                let wabs = w.weight_f32();
                for kernel in Kernel::available() {
                    for (act, r) in [(Activation::None, None), (Activation::Gelu, Some(res.as_slice()))] {
                        let fast = gemm_with(kernel, &x, n, &packed, act, r);
                        let slow = matmul_int8_reference(&x, n, &w, act, r);
                        for (idx, (a, b)) in fast.iter().zip(&slow).enumerate() {
                            if kernel == Kernel::Portable {
                                // Same products in the same order: bit for bit.
                                assert_eq!(a.to_bits(), b.to_bits(), "{kernel:?} n={n} in={i} out={o} at {idx}: {a} vs {b}");
                            } else {
                                // Fused multiply-add: ≤ 1e-5 relative to Σ|x·w| (+ 1e-6 absolute for the epilogue).
                                let (row, col) = (idx / o, idx % o);
                                let mag: f32 = (0..i).map(|k| (x[row * i + k] * wabs[col * i + k]).abs()).sum();
                                assert!((a - b).abs() <= 1e-5 * mag + 1e-6, "{kernel:?} n={n} in={i} out={o} at {idx}: {a} vs {b}");
                            }
                        }
                    }
                }
            }
        }
    }
}
