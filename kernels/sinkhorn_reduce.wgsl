// Marginal-error reduction for the Sinkhorn convergence check: over err[0..len],
//   out[0] = sum err, out[1] = sum err^2, out[2] = max err   (L1, squared L2, L-infinity).
//
//   err: [len]; out: [4] (out[3] is left 0)
//
// A single workgroup of WG invocations strides over the input (it runs once every few
// iterations, so one workgroup is enough even for 100k entries).
//
// Placeholders: {{WG}} (a power of two).

struct Params {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> err: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = {{WG}}u;

var<workgroup> red_sum: array<f32, WG>;
var<workgroup> red_sq: array<f32, WG>;
var<workgroup> red_max: array<f32, WG>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    var sq = 0.0;
    var mx = 0.0;
    for (var i = lid; i < p.len; i += WG) {
        let e = err[i];
        s += e;
        sq = fma(e, e, sq);
        mx = max(mx, e);
    }
    red_sum[lid] = s;
    red_sq[lid] = sq;
    red_max[lid] = mx;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            red_sum[lid] = red_sum[lid] + red_sum[lid + stride];
            red_sq[lid] = red_sq[lid] + red_sq[lid + stride];
            red_max[lid] = max(red_max[lid], red_max[lid + stride]);
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[0] = red_sum[0];
        out[1] = red_sq[0];
        out[2] = red_max[0];
        out[3] = 0.0;
    }
}
