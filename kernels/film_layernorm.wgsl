// LayerNorm followed by a FiLM modulation (feature-wise affine from a conditioning vector):
//
//   y[r, j] = LN(h)[r, j] · (1 + gb[r, j]) + gb[r, H + j]
//   LN(h)[r, j] = (h[r, j] - mean_r) / sqrt(var_r + eps) · gamma[j] + beta[j]
//
//   h, y: [rows, H]; gb: [rows, 2H] (scale part, then shift part); gamma, beta: [H]
//
// Biased variance, two passes, as layernorm.wgsl. One workgroup of WG invocations per row;
// each invocation strides over the row and partial sums are reduced in workgroup memory.
// The dispatch may be 2-D when rows exceed 65535; the row index is rebuilt from the
// workgroup id.
//
// Placeholders: {{WG}} (a power of two).

struct Params {
    rows: u32,
    dim: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> h: array<f32>;
@group(0) @binding(2) var<storage, read> gb: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

const WG: u32 = {{WG}}u;

var<workgroup> red: array<f32, WG>;

// Sum of `red[0..WG]` left in red[0]; every invocation must call it (uniform control flow).
fn reduce_sum(lid: u32) {
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            red[lid] = red[lid] + red[lid + stride];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= p.rows) {
        return; // uniform across the workgroup
    }
    let base = row * p.dim;
    let gbase = row * 2u * p.dim;

    var partial = 0.0;
    for (var j = lid; j < p.dim; j += WG) {
        partial += h[base + j];
    }
    red[lid] = partial;
    workgroupBarrier();
    reduce_sum(lid);
    let mean = red[0] / f32(p.dim);
    workgroupBarrier(); // everyone has read red[0] before it is overwritten

    var partial_sq = 0.0;
    for (var j = lid; j < p.dim; j += WG) {
        let d = h[base + j] - mean;
        partial_sq += d * d;
    }
    red[lid] = partial_sq;
    workgroupBarrier();
    reduce_sum(lid);
    let inv_std = 1.0 / sqrt(red[0] / f32(p.dim) + p.eps);

    for (var j = lid; j < p.dim; j += WG) {
        let n = (h[base + j] - mean) * inv_std * gamma[j] + beta[j];
        y[base + j] = n * (gb[gbase + j] + 1.0) + gb[gbase + p.dim + j];
    }
}
