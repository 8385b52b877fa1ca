// Mean over a chosen subset of each cell's tokens, written into a strided output:
//   out[c * out_stride + out_offset + d] = (1/K) Σ_k x[c, idx[k], d]
//
//   x: [n_cells, T, D]; idx: [K] token indices (< T); out: rows of out_stride floats, of
//   which columns out_offset..out_offset+D are written and the others left untouched.
//
// The morphology ViT's cell token: the mean of the K tokens nearest the patch centre, written
// straight into the columns of the model input that the token matmul reads.
// One invocation per (cell, d); the dispatch may be 2-D for large inputs.
//
// Placeholders: {{WG}} {{TOKENS}} {{DIM}}.

struct Params {
    n_cells: u32,
    k: u32,
    out_stride: u32,
    out_offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const WG: u32 = {{WG}}u;
const T: u32 = {{TOKENS}}u;
const D: u32 = {{DIM}}u;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * (nwg.x * WG) + gid.x;
    if (i >= p.n_cells * D) {
        return;
    }
    let cell = i / D;
    let d = i % D;
    var sum = 0.0;
    for (var k = 0u; k < p.k; k++) {
        sum += x[(cell * T + idx[k]) * D + d];
    }
    out[cell * p.out_stride + p.out_offset + d] = sum / f32(p.k);
}
