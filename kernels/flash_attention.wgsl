// Multi-head self-attention over the T tokens of each cell as flash attention does it: keys
// and values are streamed through workgroup memory one tile of KT keys at a time, and each
// query keeps an online softmax (running max m, running denominator l, unnormalised output
// acc), so no T×T score matrix is ever written to global memory (or held anywhere: a query
// holds one tile of KT scores).
//
//   qkv: [n_cells * T, 3D]  (row = one token; columns 0..D = q, D..2D = k, 2D..3D = v)
//   out: [n_cells * T, D]   (heads concatenated: head j occupies columns j*HD..(j+1)*HD)
//
// One workgroup per (cell, head, block of WG queries); invocation i of the block owns query
// block * WG + i. Per key tile (all invocations load it together, then barrier):
//   s_j = (q · k_j) * SCALE,  m' = max(m, max_j s_j),  c = exp(m - m'),
//   l = l * c + Σ_j exp(s_j - m'),  acc = acc * c + Σ_j exp(s_j - m') v_j,  m = m'
// and finally out = acc / l. Same order of operations as engine::ops::flash_attention_reference
// (q · k summed element by element, in order).
//
// A query's q and acc live in HV = ceil(HD / 4) vec4 registers; every loop over the head
// dimension is unrolled by the launcher into the LOAD_Q, DOT, RESCALE, UPDATE and STORE
// placeholder blocks (constant indices only), so an invocation's only loops run over key
// tiles and the keys of a tile: lavapipe (llvmpipe) cuts an invocation's loops short after
// 65535 iterations in total (see src/gpu/flash_attention.rs).
//
// Workgroup memory: 2 * KT * HV vec4 (KT * HV <= 512, i.e. <= 16 KiB, WebGPU's default
// limit). Workgroup index = cell * (H * QB) + head * QB + block with QB = ceil(T / WG); the
// dispatch may be 2-D when that needs more than 65535 workgroups (rebuilt below).
//
// Placeholders: {{WG}} {{TOKENS}} {{D_MODEL}} {{N_HEADS}} {{HEAD_DIM}} {{HEAD_VEC4}}
// {{KEY_TILE}} {{SCALE}} and the unrolled blocks LOAD_Q, DOT,
// RESCALE, UPDATE, STORE.

struct Params {
    n_cells: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = {{WG}}u;
const T: u32 = {{TOKENS}}u;
const D: u32 = {{D_MODEL}}u;
const H: u32 = {{N_HEADS}}u;
const HD: u32 = {{HEAD_DIM}}u;
const HV: u32 = {{HEAD_VEC4}}u;
const KT: u32 = {{KEY_TILE}}u;
const SCALE: f32 = {{SCALE}};
const QB: u32 = (T + WG - 1u) / WG;

var<workgroup> k_tile: array<vec4<f32>, KT * HV>;
var<workgroup> v_tile: array<vec4<f32>, KT * HV>;

// Elements e..e+3 of a head whose element e is qkv[src]; lanes at or past HD are zero (and
// read nothing outside the head).
fn load4(src: u32, e: u32) -> vec4<f32> {
    let last = src + (HD - 1u - e);
    return vec4<f32>(
        qkv[src],
        select(0.0, qkv[min(src + 1u, last)], e + 1u < HD),
        select(0.0, qkv[min(src + 2u, last)], e + 2u < HD),
        select(0.0, qkv[min(src + 3u, last)], e + 3u < HD),
    );
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    // Workgroup-uniform: the whole workgroup returns or none of it does (barriers below).
    let w = wid.y * nwg.x + wid.x;
    if (w >= p.n_cells * H * QB) {
        return;
    }
    let block = w % QB;
    let head = (w / QB) % H;
    let cell = w / (QB * H);
    let row_stride = 3u * D;
    let i = block * WG + lid;
    let valid = i < T;
    let cell_base = cell * T * row_stride;
    let q_base = cell_base + min(i, T - 1u) * row_stride + head * HD;

    var q: array<vec4<f32>, HV>;
    var acc: array<vec4<f32>, HV>; // zero-initialised
    var s: array<f32, KT>;
{{LOAD_Q}}
    var m = -3.0e38; // running maximum of the scores (finite, so m - m' is never inf - inf)
    var l = 0.0;     // running Σ exp(score - m)
    var first = true;

    for (var k0 = 0u; k0 < T; k0 += KT) {
        let kn = min(KT, T - k0);
        workgroupBarrier();
        // One vec4 of one key (and its value) per step; lanes past the head are zero.
        for (var x = lid; x < kn * HV; x += WG) {
            let j = x / HV;
            let e = (x % HV) * 4u;
            let r = cell_base + (k0 + j) * row_stride + head * HD + e;
            k_tile[x] = load4(r + D, e);
            v_tile[x] = load4(r + 2u * D, e);
        }
        workgroupBarrier();
        var tile_max = -3.0e38;
        for (var j = 0u; j < kn; j++) {
            let kb = j * HV;
            var dot = 0.0;
{{DOT}}
            s[j] = dot * SCALE;
            tile_max = max(tile_max, s[j]);
        }
        let m_new = max(m, tile_max);
        let c = select(exp(m - m_new), 0.0, first);
        first = false;
        l = l * c;
{{RESCALE}}
        for (var j = 0u; j < kn; j++) {
            let kb = j * HV;
            let pj = exp(s[j] - m_new);
            l += pj;
{{UPDATE}}
        }
        m = m_new;
    }

    if (valid) {
        let inv = 1.0 / l;
        let o_base = (cell * T + i) * D + head * HD;
{{STORE}}
    }
}
