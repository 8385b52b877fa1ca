// Rows as sparse weighted sums of the rows of another matrix (a CSR matrix times a dense one),
// plus an optional dense bias:
//
//   out[r, d] = Σ_{j = offsets[r]}^{offsets[r+1]-1} weights[j] * x[cols[j], d]  (+ bias[r, d])
//
//   offsets: [rows + 1] (u32), cols / weights: [nnz], x: [x_rows, dim], bias: [rows, dim]
//   (read only when HAS_BIAS = 1), out: [rows, dim]
//
// SPATIA's glue between levels on the GPU: the mean z_cell of each niche (weights 1/count),
// niche embeddings placed in their tissue slots plus the 2-D positional encoding (bias), and
// each niche's (or cell's) rows gathered back (weight 1). Terms are added in order j = offsets[r]
// .. offsets[r+1], starting from 0, then the bias, as engine::ops::sparse_rows_reference does.
// A row without entries is the bias (or 0).
//
// One invocation per output element; the dispatch may be 2-D for large outputs.
//
// Placeholders: {{WG}} {{HAS_BIAS}}.

struct Params {
    rows: u32,
    dim: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> offsets: array<u32>;
@group(0) @binding(2) var<storage, read> cols: array<u32>;
@group(0) @binding(3) var<storage, read> weights: array<f32>;
@group(0) @binding(4) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

const WG: u32 = {{WG}}u;
const HAS_BIAS: u32 = {{HAS_BIAS}}u;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * (nwg.x * WG) + gid.x;
    if (idx >= p.rows * p.dim) {
        return;
    }
    let r = idx / p.dim;
    let d = idx % p.dim;
    var sum = 0.0;
    for (var j = offsets[r]; j < offsets[r + 1u]; j++) {
        sum += weights[j] * x[cols[j] * p.dim + d];
    }
    if (HAS_BIAS == 1u) {
        sum += bias[idx];
    }
    out[idx] = sum;
}
