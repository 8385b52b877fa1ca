// One log-domain Sinkhorn half-step over point clouds, without ever materialising the cost.
//
// For every row point r_i (one invocation each) and all column points c_j, with the cost
//   C_ij = inv_scale * (base(r_i, c_j) + lambda * |s_i - s_j|),
//   base = |r_i - c_j|_2 (SQUARED = 0) or |r_i - c_j|_2^2 (SQUARED = 1) over the first DIM
//   coordinates, s = the 2 spatial coordinates that follow them when SPATIAL = 1,
// it streams the column points through workgroup memory in tiles of TILE points and keeps an
// online, max-subtracted log-sum-exp (like flash attention) of
//   v_ij = (h_j - C_ij) / eps            (mode 0 and 2)
//   v_ij = C_ij                          (mode 1: only the running maximum is used)
// and then writes, for row i:
//   mode 0 (potential update): out_pot = eps * (logw_i - LSE_j v_ij)         (new potential)
//                              out_aux = w_i * |exp((old_i - out_pot_i) / eps) - 1|
//                              (= |row sum of the plan with the OLD potential - w_i|)
//   mode 1 (max cost):         out_pot = max_j C_ij,  out_aux = 0
//   mode 2 (assignment):       out_pot = max_j P_ij / sum_j P_ij = 1 / sum_j exp(v_ij - max v),
//                              out_aux = bitcast<f32>(argmax_j v_ij) (first maximum)
//
//   pts_row: [rows, S4] vec4; pts_col: [cols, S4] vec4 (coordinates zero-padded to a multiple of
//   4, then one more vec4 (x, y, 0, 0) in µm when SPATIAL = 1); h: [cols]; logw, old: [rows];
//   out_pot, out_aux: [rows]
//
// WG invocations per workgroup, one row each; the dispatch may be folded into 2-D when there
// are more than 65535 workgroups (the row block is rebuilt from the workgroup id).
// Workgroup memory: TILE * (4 * S4 + 1) floats (≤ 16 KiB, the WebGPU default limit).
//
// The row point is held in D4 (+1) named vec4 registers and the distance loop is unrolled by
// the host (LOAD_ROW, DISTANCE and SPATIAL_DISTANCE are generated statement lists), so no
// private array is indexed dynamically (software rasterisers such as lavapipe turn that into
// gathers).
//
// Placeholders (double braces): WG, TILE, S4, SQUARED, SPATIAL, LOAD_ROW, DISTANCE,
// SPATIAL_DISTANCE.

struct Params {
    rows: u32,
    cols: u32,
    mode: u32,
    _pad: u32,
    inv_eps: f32,
    eps: f32,
    inv_scale: f32,
    lambda: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> pts_row: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> pts_col: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> h: array<f32>;
@group(0) @binding(4) var<storage, read> logw: array<f32>;
@group(0) @binding(5) var<storage, read> old: array<f32>;
@group(0) @binding(6) var<storage, read_write> out_pot: array<f32>;
@group(0) @binding(7) var<storage, read_write> out_aux: array<f32>;

const WG: u32 = {{WG}}u;
const TILE: u32 = {{TILE}}u;
const S4: u32 = {{S4}}u;
const SQUARED: u32 = {{SQUARED}}u;
const SPATIAL: u32 = {{SPATIAL}}u;
// Stands in for -infinity (WGSL has no infinity literals); every real v is far above it.
const NEG_BIG: f32 = -1.0e30;

var<workgroup> tile_pts: array<vec4<f32>, TILE * S4>;
var<workgroup> tile_h: array<f32, TILE>;

// exp(x) - 1 without cancellation for small |x|.
fn expm1_small(x: f32) -> f32 {
    if (abs(x) < 1.0e-2) {
        return x * (1.0 + x * (0.5 + x * (0.16666667 + x * 0.041666668)));
    }
    return exp(x) - 1.0;
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let block = wid.y * nwg.x + wid.x;
    if (block * WG >= p.rows) {
        return; // the whole workgroup is past the end: uniform
    }
    let row = block * WG + lid;
    let in_range = row < p.rows;

    // Out-of-range invocations read row 0 (never written back) so loads stay in bounds.
    let rbase = select(0u, row, in_range) * S4;
{{LOAD_ROW}}

    var mx = NEG_BIG;
    var s = 0.0;
    var arg = 0u;
    for (var j0 = 0u; j0 < p.cols; j0 += TILE) {
        let len = min(TILE, p.cols - j0);
        // Cooperative load of the next tile of column points and potentials.
        for (var idx = lid; idx < len * S4; idx += WG) {
            tile_pts[idx] = pts_col[j0 * S4 + idx];
        }
        for (var t = lid; t < len; t += WG) {
            tile_h[t] = h[j0 + t];
        }
        workgroupBarrier();
        for (var t = 0u; t < len; t++) {
            let base = t * S4;
            var acc = 0.0;
{{DISTANCE}}
            var c = acc;
            if (SQUARED == 0u) {
                c = sqrt(acc);
            }
            if (SPATIAL == 1u) {
{{SPATIAL_DISTANCE}}
            }
            c *= p.inv_scale;
            var v = c;
            if (p.mode != 1u) {
                v = (tile_h[t] - c) * p.inv_eps;
            }
            // Online log-sum-exp with one exp per pair, branch-free.
            let e = exp(-abs(v - mx));
            let above = v > mx;
            s = select(s + e, fma(s, e, 1.0), above);
            arg = select(arg, j0 + t, above);
            mx = max(mx, v);
        }
        workgroupBarrier(); // everyone is done with the tile before it is overwritten
    }

    if (!in_range) {
        return;
    }
    if (p.mode == 0u) {
        let lw = logw[row];
        let new_pot = p.eps * (lw - (mx + log(s)));
        out_pot[row] = new_pot;
        // Row sum of the plan with the old potential, relative to the marginal, minus one;
        // clamped so that the first iterations (far from the marginal) stay finite.
        let delta = min((old[row] - new_pot) * p.inv_eps, 80.0);
        out_aux[row] = exp(lw) * abs(expm1_small(delta));
    } else if (p.mode == 1u) {
        out_pot[row] = mx;
        out_aux[row] = 0.0;
    } else {
        out_pot[row] = 1.0 / s;
        out_aux[row] = bitcast<f32>(arg);
    }
}
