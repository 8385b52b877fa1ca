// Multi-head self-attention over the T tokens of each cell (no mask).
//
//   qkv: [n_cells * T, 3D]  (row = one token; columns 0..D = q, D..2D = k, 2D..3D = v)
//   out: [n_cells * T, D]   (heads concatenated: head j occupies columns j*HD..(j+1)*HD)
//   bias: [H, T, T]         additive score bias shared by all cells (zeros for none; the
//                           multi-input classifier's relative positional bias)
//
// One invocation per (cell, head, query token i): scores s_l = (q_i · k_l) * SCALE over the
// head's slice, with SCALE = 1/sqrt(HD), plus bias[head, i, l]; softmax over l computed online (running maximum
// subtracted before every exp, so no overflow), out_i = Σ_l softmax(s)_l v_l.
// Invocation index = cell * (H * T) + head * T + i. The dispatch may be 2-D when the
// invocation count needs more than 65535 workgroups; the flat index is rebuilt below.
//
// Placeholders: {{WG}} {{TOKENS}} {{D_MODEL}} {{N_HEADS}} {{HEAD_DIM}} {{SCALE}}.

struct Params {
    n_cells: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;

const WG: u32 = {{WG}}u;
const T: u32 = {{TOKENS}}u;
const D: u32 = {{D_MODEL}}u;
const H: u32 = {{N_HEADS}}u;
const HD: u32 = {{HEAD_DIM}}u;
const SCALE: f32 = {{SCALE}};
const NEG_BIG: f32 = -3.0e38;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * (nwg.x * WG) + gid.x;
    if (idx >= p.n_cells * H * T) {
        return;
    }
    let i = idx % T;
    let head = (idx / T) % H;
    let cell = idx / (T * H);
    let row_stride = 3u * D;
    let q_base = (cell * T + i) * row_stride + head * HD;
    let bias_base = (head * T + i) * T;

    var q: array<f32, HD>;
    var acc: array<f32, HD>;
    for (var e = 0u; e < HD; e++) {
        q[e] = qkv[q_base + e];
        acc[e] = 0.0;
    }

    var m = NEG_BIG; // running maximum of the scores
    var s = 0.0;     // running Σ exp(score - m)
    for (var l = 0u; l < T; l++) {
        let k_base = (cell * T + l) * row_stride + D + head * HD;
        let v_base = k_base + D;
        var dot = 0.0;
        for (var e = 0u; e < HD; e++) {
            dot = fma(q[e], qkv[k_base + e], dot);
        }
        let score = dot * SCALE + bias[bias_base + l];
        let m_new = max(m, score);
        let correction = exp(m - m_new);
        let w = exp(score - m_new);
        s = s * correction + w;
        for (var e = 0u; e < HD; e++) {
            acc[e] = acc[e] * correction + w * qkv[v_base + e];
        }
        m = m_new;
    }

    let inv = 1.0 / s;
    let o_base = (cell * T + i) * D + head * HD;
    for (var e = 0u; e < HD; e++) {
        out[o_base + e] = acc[e] * inv;
    }
}
