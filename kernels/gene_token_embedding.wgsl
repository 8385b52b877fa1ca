// The tokens of a gene-token model: token t of cell c is gene genes[t]'s normalised value
// times the token's value vector, plus its identity embedding (token type folded in):
//
//   out[(c * T + t) * D + j] = (x[c * N_IN + genes[t]] * q[t * D + j]) * scale[t * D + j] + bias[t * D + j]
//
//   x: [n_cells, N_IN] model input; genes: [T] u32 columns of x;
//   w: [3, T * D]: the value vectors (int8 values as f32, exact), their per-row scales, and
//   the biases; out: [n_cells * T, D]. The same arithmetic as a one-input int8 matmul
//   (engine::ops::gene_token_embedding_reference).
// One invocation per output value; the dispatch may be 2-D for large inputs.
//
// Placeholders: {{WG}} {{TOKENS}} {{D_MODEL}} {{N_INPUTS}}.

struct Params {
    n_cells: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> genes: array<u32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WG: u32 = {{WG}}u;
const T: u32 = {{TOKENS}}u;
const D: u32 = {{D_MODEL}}u;
const N_IN: u32 = {{N_INPUTS}}u;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * (nwg.x * WG) + gid.x;
    if (i >= p.n_cells * T * D) {
        return;
    }
    let cell = i / (T * D);
    let r = i % (T * D);
    let t = r / D;
    let v = x[cell * N_IN + genes[t]];
    let acc = v * w[r];
    out[i] = acc * w[T * D + r] + w[2u * T * D + r];
}
