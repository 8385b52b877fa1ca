{{ENABLES}}
// Int8-weight (or f32-weight, F32_WEIGHTS = 1) matrix multiply with an optional LayerNorm
// prologue and a fused epilogue.
//
//   Y[n, out] = act(LN?(X)[n, in] · dequant(Wq)ᵀ + bias)  (+ Y_old[n, out] if RESIDUAL)
//
// LayerNorm prologue (NORM = 1): each row of X is normalised over its `in_dim` values
// (biased variance, two passes, eps from Params) and scaled by gamma / shifted by beta
// `[in_dim]` while it is staged, so a pre-norm transformer needs no separate LayerNorm
// dispatch. The row statistics of the tile's TILE_M rows are computed first, 4 invocations
// per row (strided partial sums, reduced in workgroup memory). With NORM = 0 the gamma/beta
// bindings are bound to any buffer and never read.
//
// Weights: int8 values packed four per u32 along the input dimension (little endian: value
// 4j+b of a row is byte b of word j), rows padded with zeros to `in_words * 4` inputs, plus
// one f32 scale per output row (symmetric per-channel quantisation). The kernel accumulates
// Σ_k x[k] * q[o,k] in f32 and applies `scale[o]` once in the epilogue.
// With F32_WEIGHTS = 1 each word is instead one f32 weight (its bit pattern), rows
// `[out_dim, in_dim]` unpadded (`in_words = in_dim`), and `scale[o]` is 1.0 for a plain f32
// layer or any per-row factor the caller folds in (e.g. an ODE step size).
//
// Residual: the output buffer is read_write; with RESIDUAL = 1 each output element adds the
// value already stored there (e.g. the transformer's residual stream, updated in place).
//
// Tiling: a 16x16 workgroup computes a TILE_M x TILE_N output tile (4x4 values per thread,
// strided by 16 so that shared-memory reads and global writes are contiguous; hence
// TILE_M = TILE_N = 64), staging TILE_M x TILE_K inputs and TILE_K x TILE_N dequantised
// weights in workgroup memory (8 KiB for TILE_K = 16).
// Dispatch: (ceil(out / TILE_N), ceil(n / TILE_M), 1).
//
// Fast paths (src/gpu/matmul.rs `MatmulFast`): X_ELEM / Y_ELEM = f16 stores the input /
// output activations as f16 (`enable f16;`; values converted to f32 on load, products and
// sums stay f32), halving the traffic of the feed-forward hidden `[n, F]` that fc1 writes
// and fc2 reads; REDUCE4 = the subgroup fragment reduces the prologue's row statistics with
// `subgroupShuffleXor` instead of workgroup memory (kernels/reduce4_*.wgsl).
//
// Placeholders substituted by the Rust launcher: {{ENABLES}} {{TILE_M}} {{TILE_N}} {{TILE_K}}
// {{ACT}} {{RESIDUAL}} {{NORM}} {{F32_WEIGHTS}} {{X_ELEM}} {{Y_ELEM}} {{SUBGROUPS}} and the fragment REDUCE4.

struct Params {
    n: u32,        // rows of X and Y
    in_dim: u32,   // columns of X (unpadded)
    in_words: u32, // u32 words per weight row (= padded in_dim / 4)
    out_dim: u32,  // columns of Y
    eps: f32,      // LayerNorm epsilon (NORM = 1)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<{{X_ELEM}}>;  // [n, in_dim]
@group(0) @binding(2) var<storage, read> wq: array<u32>;        // [out_dim, in_words]
@group(0) @binding(3) var<storage, read> scale: array<f32>;     // [out_dim]
@group(0) @binding(4) var<storage, read> bias: array<f32>;      // [out_dim]
@group(0) @binding(5) var<storage, read_write> y: array<{{Y_ELEM}}>; // [n, out_dim]
@group(0) @binding(6) var<storage, read> gamma: array<f32>;     // [in_dim] (NORM = 1)
@group(0) @binding(7) var<storage, read> beta: array<f32>;      // [in_dim] (NORM = 1)

const TILE_M: u32 = {{TILE_M}}u;
const TILE_N: u32 = {{TILE_N}}u;
const TILE_K: u32 = {{TILE_K}}u;  // multiple of 4
const ACT: u32 = {{ACT}}u;        // 0 = identity, 1 = GELU (erf form)
const RESIDUAL: u32 = {{RESIDUAL}}u;
const NORM: u32 = {{NORM}}u;      // 1 = LayerNorm prologue on X
const F32_WEIGHTS: u32 = {{F32_WEIGHTS}}u; // 1 = one f32 weight per word (bitcast)
const SUBGROUPS: u32 = {{SUBGROUPS}}u; // 1 = sum4 below is the subgroup fragment
const THREADS: u32 = 256u;        // 16 x 16
const WORDS_K: u32 = TILE_K / 4u;

var<workgroup> xs: array<f32, TILE_M * TILE_K>; // [TILE_M][TILE_K]
// [TILE_K][TILE_N], int8 values as f32; k-major so that the 16 invocations of a row read
// 16 consecutive words (no bank conflicts).
var<workgroup> ws: array<f32, TILE_K * TILE_N>;
// LayerNorm prologue: partial sums (4 per row; unused by the subgroup fragment), then each
// row's mean and 1/std.
var<workgroup> red: array<f32, THREADS>;
var<workgroup> row_mean: array<f32, TILE_M>;
var<workgroup> row_inv: array<f32, TILE_M>;

// erf(x) by Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7. Mirrored by `erf_approx` in
// src/gpu/matmul.rs.
fn erf_approx(v: f32) -> f32 {
    let a = abs(v);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t;
    let r = 1.0 - poly * exp(-a * a);
    return select(-r, r, v >= 0.0);
}

fn gelu(v: f32) -> f32 {
    return 0.5 * v * (1.0 + erf_approx(v * 0.70710678118654752));
}

{{REDUCE4}}

// Sign-extends byte `b` (0..3) of `word`.
fn unpack_i8(word: u32, b: u32) -> f32 {
    return f32(bitcast<i32>(word << (24u - 8u * b)) >> 24u);
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wid.y * TILE_M;
    let col0 = wid.x * TILE_N;
    let tid = lid.y * 16u + lid.x;

    // acc[i][j] = output (row lid.y + 16i, column lid.x + 16j); vec4 over j.
    var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));

    if (NORM == 1u) {
        // Row statistics: invocation tid sums columns tid%4, tid%4 + 4, ... of tile row tid/4;
        // sum4 combines the 4 partials (every invocation calls it: uniform control flow).
        let sr = tid / 4u;
        let sl = tid % 4u;
        let srow = row0 + sr;
        let dim = f32(p.in_dim);
        var part = 0.0;
        if (srow < p.n) {
            for (var k = sl; k < p.in_dim; k += 4u) {
                part += f32(x[srow * p.in_dim + k]);
            }
        }
        let mean = sum4(part, tid) / dim;
        var part_sq = 0.0;
        if (srow < p.n) {
            for (var k = sl; k < p.in_dim; k += 4u) {
                let dv = f32(x[srow * p.in_dim + k]) - mean;
                part_sq += dv * dv;
            }
        }
        let var_ = sum4(part_sq, tid) / dim;
        if (sl == 0u) {
            row_mean[sr] = mean;
            row_inv[sr] = 1.0 / sqrt(var_ + p.eps);
        }
        workgroupBarrier();
    }

    // Words of a weight row per K tile: 4 int8 values per word, or one f32.
    let words_per_tile = select(WORDS_K, TILE_K, F32_WEIGHTS == 1u);
    let n_k_tiles = (p.in_words + words_per_tile - 1u) / words_per_tile;
    for (var kt = 0u; kt < n_k_tiles; kt++) {
        let k0 = kt * TILE_K;
        // Stage X: TILE_M * TILE_K values, THREADS at a time (zeros outside the matrix).
        for (var e = tid; e < TILE_M * TILE_K; e += THREADS) {
            let r = row0 + e / TILE_K;
            let k = k0 + e % TILE_K;
            var v = 0.0;
            if (r < p.n && k < p.in_dim) {
                v = f32(x[r * p.in_dim + k]);
                if (NORM == 1u) {
                    let tr = e / TILE_K;
                    v = (v - row_mean[tr]) * row_inv[tr] * gamma[k] + beta[k];
                }
            }
            xs[e] = v;
        }
        if (F32_WEIGHTS == 1u) {
            // Stage W: TILE_N rows x TILE_K f32 words (zeros outside the matrix).
            for (var e = tid; e < TILE_N * TILE_K; e += THREADS) {
                let c = e % TILE_N;
                let kk = e / TILE_N;
                let col = col0 + c;
                let k = k0 + kk;
                var wv = 0.0;
                if (col < p.out_dim && k < p.in_words) {
                    wv = bitcast<f32>(wq[col * p.in_words + k]);
                }
                ws[kk * TILE_N + c] = wv;
            }
        } else {
            // Stage W: TILE_N rows x WORDS_K words, unpacked to 4 values each.
            for (var e = tid; e < TILE_N * WORDS_K; e += THREADS) {
                let c = e % TILE_N;
                let kw = e / TILE_N;
                let col = col0 + c;
                let word_k = kt * WORDS_K + kw;
                var word = 0u;
                if (col < p.out_dim && word_k < p.in_words) {
                    word = wq[col * p.in_words + word_k];
                }
                for (var b = 0u; b < 4u; b++) {
                    ws[(kw * 4u + b) * TILE_N + c] = unpack_i8(word, b);
                }
            }
        }
        workgroupBarrier();

        for (var kk = 0u; kk < TILE_K; kk++) {
            let wb = kk * TILE_N + lid.x;
            let w = vec4<f32>(ws[wb], ws[wb + 16u], ws[wb + 32u], ws[wb + 48u]);
            for (var i = 0u; i < 4u; i++) {
                acc[i] = fma(vec4<f32>(xs[(lid.y + 16u * i) * TILE_K + kk]), w, acc[i]);
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let r = row0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let c = col0 + lid.x + 16u * j;
            if (r < p.n && c < p.out_dim) {
                var v = acc[i][j] * scale[c] + bias[c];
                if (ACT == 1u) {
                    v = gelu(v);
                }
                let idx = r * p.out_dim + c;
                if (RESIDUAL == 1u) {
                    v = v + f32(y[idx]);
                }
                y[idx] = {{Y_ELEM}}(v);
            }
        }
    }
}
