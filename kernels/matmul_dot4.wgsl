{{ENABLES}}
// Int8-weight x int8-activation matrix multiply with `dot4I8Packed` (WGSL language extension
// `packed_4x8_integer_dot_product`), an optional LayerNorm prologue and a fused epilogue.
//
//   Y[n, out] = act(f32(Σ_k qx[r,k]·qw[o,k]) · (sx[r] · sw[o]) + bias)  (+ Y_old if RESIDUAL)
//
// Row quantisation of the activations (mirrored by `quant::quantize_row_i8`): for each row r
// of X (after the LayerNorm when NORM = 1), amax = max_k |x[r,k]|; if amax == 0 then sx = 1
// and every q = 0, else sx = amax / 127 and q = clamp(round(x · (127 / amax)), -127, 127)
// (WGSL `round` rounds half to even). The integer sums are exact (|Σ| ≤ 127² · in < 2³¹).
//
// Prologue: 4 invocations per tile row compute, with strided partial sums reduced in
// workgroup memory, (NORM = 1) the row's mean and 1/std (biased variance, two passes, eps
// from Params), then the amax of the row as it will be staged (normalised, scaled by gamma,
// shifted by beta). Staging then quantises and packs each row's values four per u32, so the
// tile's inner loop is one `dot4I8Packed` per 4 inputs per output.
//
// Weights: int8 packed four per u32 along the input dimension (little endian, rows padded
// with zeros to `in_words * 4`), one f32 scale per output row, exactly as matmul_int8.wgsl.
//
// Tiling: a 16x16 workgroup computes a TILE_M x TILE_N output tile (4x4 per invocation,
// strided by 16), staging TILE_M x WORDS_K packed input words and WORDS_K x TILE_N weight
// words in workgroup memory. Dispatch: (ceil(out / TILE_N), ceil(n / TILE_M), 1).
//
// Subgroup fast path: REDUCE4 = the subgroup fragment (kernels/reduce4_*.wgsl) combines the
// 4 partial sums / maxima of a row with `subgroupShuffleXor` instead of workgroup memory
// (the amax is exact either way; the mean and variance may differ in the last bit).
//
// Placeholders substituted by the Rust launcher: {{ENABLES}} {{TILE_M}} {{TILE_N}} {{TILE_K}}
// {{ACT}} {{RESIDUAL}} {{NORM}} {{SUBGROUPS}} and the fragment REDUCE4.

requires packed_4x8_integer_dot_product;

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
@group(0) @binding(1) var<storage, read> x: array<f32>;         // [n, in_dim]
@group(0) @binding(2) var<storage, read> wq: array<u32>;        // [out_dim, in_words]
@group(0) @binding(3) var<storage, read> scale: array<f32>;     // [out_dim]
@group(0) @binding(4) var<storage, read> bias: array<f32>;      // [out_dim]
@group(0) @binding(5) var<storage, read_write> y: array<f32>;   // [n, out_dim]
@group(0) @binding(6) var<storage, read> gamma: array<f32>;     // [in_dim] (NORM = 1)
@group(0) @binding(7) var<storage, read> beta: array<f32>;      // [in_dim] (NORM = 1)

const TILE_M: u32 = {{TILE_M}}u;
const TILE_N: u32 = {{TILE_N}}u;
const TILE_K: u32 = {{TILE_K}}u;  // multiple of 4
const ACT: u32 = {{ACT}}u;        // 0 = identity, 1 = GELU (erf form)
const RESIDUAL: u32 = {{RESIDUAL}}u;
const NORM: u32 = {{NORM}}u;      // 1 = LayerNorm prologue on X
const SUBGROUPS: u32 = {{SUBGROUPS}}u; // 1 = sum4/max4 are the subgroup fragment
const THREADS: u32 = 256u;        // 16 x 16
const WORDS_K: u32 = TILE_K / 4u;

// [TILE_M][WORDS_K] quantised inputs, four per word.
var<workgroup> xs: array<u32, TILE_M * WORDS_K>;
// [WORDS_K][TILE_N] packed weights; k-major so the 16 invocations of a row read 16
// consecutive words.
var<workgroup> ws: array<u32, WORDS_K * TILE_N>;
// Prologue partial results (4 per row), then per row: mean, 1/std, 127/amax, amax/127.
var<workgroup> red: array<f32, THREADS>;
var<workgroup> row_mean: array<f32, TILE_M>;
var<workgroup> row_inv: array<f32, TILE_M>;
var<workgroup> row_qinv: array<f32, TILE_M>;
var<workgroup> row_scale: array<f32, TILE_M>;

// erf(x) by Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7 (as in matmul_int8.wgsl).
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

// Input value (tile row tr = global row r, column k < in_dim) as the matmul sees it: the
// LayerNorm output when NORM = 1. Used by both the amax pass and the staging, so the two
// see the same value.
fn staged(r: u32, tr: u32, k: u32) -> f32 {
    var v = x[r * p.in_dim + k];
    if (NORM == 1u) {
        v = (v - row_mean[tr]) * row_inv[tr] * gamma[k] + beta[k];
    }
    return v;
}

{{REDUCE4}}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wid.y * TILE_M;
    let col0 = wid.x * TILE_N;
    let tid = lid.y * 16u + lid.x;

    // Prologue: invocation tid handles columns tid%4, tid%4 + 4, ... of tile row tid/4.
    let sr = tid / 4u;
    let sl = tid % 4u;
    let srow = row0 + sr;
    let live = srow < p.n;
    if (NORM == 1u) {
        let dim = f32(p.in_dim);
        var part = 0.0;
        if (live) {
            for (var k = sl; k < p.in_dim; k += 4u) {
                part += x[srow * p.in_dim + k];
            }
        }
        let mean = sum4(part, tid) / dim;
        var part_sq = 0.0;
        if (live) {
            for (var k = sl; k < p.in_dim; k += 4u) {
                let dv = x[srow * p.in_dim + k] - mean;
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
    var part_max = 0.0;
    if (live) {
        for (var k = sl; k < p.in_dim; k += 4u) {
            part_max = max(part_max, abs(staged(srow, sr, k)));
        }
    }
    let amax = max4(part_max, tid);
    if (sl == 0u) {
        if (amax > 0.0) {
            row_qinv[sr] = 127.0 / amax;
            row_scale[sr] = amax / 127.0;
        } else {
            row_qinv[sr] = 0.0;
            row_scale[sr] = 1.0;
        }
    }
    workgroupBarrier();

    // acc[i][j] = integer sum of output (row lid.y + 16i, column lid.x + 16j).
    var acc = array<vec4<i32>, 4>(vec4<i32>(0), vec4<i32>(0), vec4<i32>(0), vec4<i32>(0));

    let n_k_tiles = (p.in_words + WORDS_K - 1u) / WORDS_K;
    for (var kt = 0u; kt < n_k_tiles; kt++) {
        // Stage X: TILE_M x WORDS_K words, each 4 quantised inputs (zeros outside X).
        for (var e = tid; e < TILE_M * WORDS_K; e += THREADS) {
            let tr = e / WORDS_K;
            let r = row0 + tr;
            let k4 = (kt * WORDS_K + e % WORDS_K) * 4u;
            var word = 0u;
            if (r < p.n) {
                let qinv = row_qinv[tr];
                for (var b = 0u; b < 4u; b++) {
                    let k = k4 + b;
                    if (k < p.in_dim) {
                        let q = i32(clamp(round(staged(r, tr, k) * qinv), -127.0, 127.0));
                        word |= (bitcast<u32>(q) & 0xFFu) << (8u * b);
                    }
                }
            }
            xs[e] = word;
        }
        // Stage W: TILE_N rows x WORDS_K words, as packed.
        for (var e = tid; e < TILE_N * WORDS_K; e += THREADS) {
            let c = e % TILE_N;
            let kw = e / TILE_N;
            let col = col0 + c;
            let word_k = kt * WORDS_K + kw;
            var word = 0u;
            if (col < p.out_dim && word_k < p.in_words) {
                word = wq[col * p.in_words + word_k];
            }
            ws[kw * TILE_N + c] = word;
        }
        workgroupBarrier();

        for (var kw = 0u; kw < WORDS_K; kw++) {
            let wb = kw * TILE_N + lid.x;
            let w0 = ws[wb];
            let w1 = ws[wb + 16u];
            let w2 = ws[wb + 32u];
            let w3 = ws[wb + 48u];
            for (var i = 0u; i < 4u; i++) {
                let xw = xs[(lid.y + 16u * i) * WORDS_K + kw];
                acc[i] += vec4<i32>(dot4I8Packed(xw, w0), dot4I8Packed(xw, w1), dot4I8Packed(xw, w2), dot4I8Packed(xw, w3));
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let tr = lid.y + 16u * i;
        let r = row0 + tr;
        for (var j = 0u; j < 4u; j++) {
            let c = col0 + lid.x + 16u * j;
            if (r < p.n && c < p.out_dim) {
                var v = f32(acc[i][j]) * (row_scale[tr] * scale[c]) + bias[c];
                if (ACT == 1u) {
                    v = gelu(v);
                }
                let idx = r * p.out_dim + c;
                if (RESIDUAL == 1u) {
                    v = v + y[idx];
                }
                y[idx] = v;
            }
        }
    }
}
