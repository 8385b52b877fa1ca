{{ENABLES}}
// Multi-head self-attention fused with its int8 output projection and the residual add:
//
//   Y[n, out] += attention(qkv)[n, D] · dequant(Wq)ᵀ + bias      (n = cells * T rows)
//
// qkv: [cells * T, 3D] (q | k | v per token row); score bias: [H, T, T] shared by all cells
// (zeros for none); Wq: int8 [out, D] packed four per u32 along D (rows padded to in_words
// words), one f32 scale per output row; Y: [n, out] read_write (the residual stream).
//
// The attention part is `attention.wgsl`'s arithmetic: per (row, head) the scores
// (q · k_l) * SCALE + bias[head, i, l], online softmax (running maximum subtracted before
// every exp), out = Σ_l p_l v_l. The projection part is `matmul_int8.wgsl`'s: a 16x16
// workgroup computes a TILE_M x TILE_N output tile (4x4 values per invocation, strided by
// 16), accumulating Σ_k a[k] * q[o, k] in f32 in k order and applying scale, bias and the
// residual once in the epilogue.
//
// Per head: the tile's TILE_M rows of the head's attention output [TILE_M, HD] are computed
// into workgroup memory (4 invocations per row; each computes the row's scores and the
// head-dim columns e ≡ invocation mod 4), then the head's HD columns of Wq are staged KS at
// a time and multiplied in. Workgroup memory: (TILE_M * HD + KS * TILE_N) * 4 bytes
// (HD ≤ 48 keeps it within WebGPU's 16 KiB). Each column tile recomputes the attention of its
// rows (one tile when out ≤ 64).
// Dispatch: (ceil(out / TILE_N), ceil(n / TILE_M), 1).
//
// Rows past the end (tile rows ≥ n) compute the last row's attention (clamped) so that
// every invocation runs the same loops: the subgroup fragment shuffles in uniform control
// flow; those rows are never written.
// The scores' dot products are the HEAD_DOT fragment: kernels/head_dot_serial.wgsl (each
// invocation computes the whole q · k) or, with subgroups, kernels/head_dot_subgroup.wgsl
// (a quarter each, combined by subgroup shuffles).
//
// Placeholders: {{ENABLES}} {{TOKENS}} {{D_MODEL}} {{N_HEADS}} {{HEAD_DIM}} {{HEAD_SUB}} {{SCALE}}
// and the fragment HEAD_DOT.

struct Params {
    n: u32,        // rows (cells * T)
    in_words: u32, // u32 words per weight row (= padded D / 4)
    out_dim: u32,  // columns of Y
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;      // [n, 3D]
@group(0) @binding(2) var<storage, read> sbias: array<f32>;    // [H, T, T]
@group(0) @binding(3) var<storage, read> wq: array<u32>;       // [out, in_words]
@group(0) @binding(4) var<storage, read> scale: array<f32>;    // [out]
@group(0) @binding(5) var<storage, read> bias: array<f32>;     // [out]
@group(0) @binding(6) var<storage, read_write> y: array<f32>;  // [n, out]

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const KS: u32 = 16u;              // head-dim columns of Wq staged per step
const T: u32 = {{TOKENS}}u;
const D: u32 = {{D_MODEL}}u;
const H: u32 = {{N_HEADS}}u;
const HD: u32 = {{HEAD_DIM}}u;
const HD_SUB: u32 = {{HEAD_SUB}}u; // ceil(HD / 4): head-dim columns per invocation
const SCALE: f32 = {{SCALE}};
const NEG_BIG: f32 = -3.0e38;

var<workgroup> att: array<f32, TILE_M * HD>; // [TILE_M][HD], one head
var<workgroup> ws: array<f32, KS * TILE_N>;  // [KS][TILE_N], int8 values as f32
var<private> q: array<f32, HD>;               // the row's query, one head

{{HEAD_DOT}}

// Sign-extends byte `b` (0..3) of `word`.
fn unpack_i8(word: u32, b: u32) -> f32 {
    return f32(bitcast<i32>(word << (24u - 8u * b)) >> 24u);
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wid.y * TILE_M;
    let col0 = wid.x * TILE_N;
    let tid = lid.y * 16u + lid.x;
    // Attention mapping: tile row ar, head-dim columns asub, asub + 4, ...
    let ar = tid / 4u;
    let asub = tid % 4u;
    let arow = row0 + ar;

    var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));

    for (var head = 0u; head < H; head++) {
        var o: array<f32, HD_SUB>;
        for (var j = 0u; j < HD_SUB; j++) {
            o[j] = 0.0;
        }
        // Rows past the end repeat the last row (never written; see above).
        let crow = min(arow, max(p.n, 1u) - 1u);
        let cell = crow / T;
        let i = crow % T;
        let q_base = crow * 3u * D + head * HD;
        let bias_base = (head * T + i) * T;
        for (var e = 0u; e < HD; e++) {
            q[e] = qkv[q_base + e];
        }
        var m = NEG_BIG;
        var s = 0.0;
        for (var l = 0u; l < T; l++) {
            let k_base = (cell * T + l) * 3u * D + D + head * HD;
            let v_base = k_base + D;
            let dot = head_dot(k_base, asub);
            let score = dot * SCALE + sbias[bias_base + l];
            let m_new = max(m, score);
            let correction = exp(m - m_new);
            let w = exp(score - m_new);
            s = s * correction + w;
            for (var j = 0u; j < HD_SUB; j++) {
                let e = asub + 4u * j;
                if (e < HD) {
                    o[j] = o[j] * correction + w * qkv[v_base + e];
                }
            }
            m = m_new;
        }
        let inv = 1.0 / s;
        for (var j = 0u; j < HD_SUB; j++) {
            o[j] = o[j] * inv;
        }
        for (var j = 0u; j < HD_SUB; j++) {
            let e = asub + 4u * j;
            if (e < HD) {
                att[ar * HD + e] = o[j];
            }
        }
        workgroupBarrier();

        for (var k0 = 0u; k0 < HD; k0 += KS) {
            // Stage Wq[col0.., head*HD + k0 ..+KS] (zeros outside the matrix / the head).
            for (var e = tid; e < KS * TILE_N; e += 256u) {
                let kk = e / TILE_N;
                let c = e % TILE_N;
                let col = col0 + c;
                let k = head * HD + k0 + kk;
                var v = 0.0;
                if (col < p.out_dim && k0 + kk < HD) {
                    v = unpack_i8(wq[col * p.in_words + k / 4u], k % 4u);
                }
                ws[kk * TILE_N + c] = v;
            }
            workgroupBarrier();
            let kn = min(KS, HD - k0);
            for (var kk = 0u; kk < kn; kk++) {
                let wb = kk * TILE_N + lid.x;
                let w = vec4<f32>(ws[wb], ws[wb + 16u], ws[wb + 32u], ws[wb + 48u]);
                for (var i = 0u; i < 4u; i++) {
                    acc[i] = fma(vec4<f32>(att[(lid.y + 16u * i) * HD + k0 + kk]), w, acc[i]);
                }
            }
            workgroupBarrier();
        }
    }

    for (var i = 0u; i < 4u; i++) {
        let r = row0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let c = col0 + lid.x + 16u * j;
            if (r < p.n && c < p.out_dim) {
                let idx = r * p.out_dim + c;
                y[idx] = acc[i][j] * scale[c] + bias[c] + y[idx];
            }
        }
    }
}
