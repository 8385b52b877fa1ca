// One log-domain Sinkhorn half-step over point clouds, without ever materialising the cost.
//
// For every row point r_i (one invocation each) and all column points c_j, with the cost
//   C_ij = inv_scale * (base(r_i, c_j) + lambda * |s_i - s_j|),
//   base = |r_i - c_j|_2 (SQUARED = 0) or |r_i - c_j|_2^2 (SQUARED = 1) over the first DIM
//   coordinates, s = the 2 spatial coordinates that follow them (spatial penalty only),
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
//   4, then one more vec4 (x, y, 0, 0) in µm with a spatial penalty); h: [cols]; logw, old: [rows];
//   out_pot, out_aux: [rows]
//
// WG invocations per workgroup, ROWS rows each (register blocking: every tile value loaded
// from workgroup memory serves ROWS rows); the dispatch may be folded into 2-D when there are
// more than 65535 workgroups (the row block is rebuilt from the workgroup id).
// Workgroup memory: TILE * (4 * S4 + 1) floats (≤ 16 KiB, the WebGPU default limit).
//
// The row points are held in named vec4 registers and the distance loop is unrolled by the
// host (LOAD_ROWS, PAIRS and FINISH are generated statement lists), so no private array is
// indexed dynamically (software rasterisers such as lavapipe turn that into gathers).
//
// Placeholders (double braces): WG, ROWS, TILE, S4, SQUARED, LOAD_ROWS, PAIRS, FINISH.

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
const ROWS: u32 = {{ROWS}}u;
const SQUARED: u32 = {{SQUARED}}u;
// Stands in for -infinity (WGSL has no infinity literals); every real v is far above it.
const NEG_BIG: f32 = -1.0e30;

var<workgroup> tile_pts: array<vec4<f32>, TILE * S4>;
var<workgroup> tile_h: array<f32, TILE>;

// Online log-sum-exp state of one row.
struct Lse {
    mx: f32,
    s: f32,
    arg: u32,
}

// exp(x) - 1 without cancellation for small |x|.
fn expm1_small(x: f32) -> f32 {
    if (abs(x) < 1.0e-2) {
        return x * (1.0 + x * (0.5 + x * (0.16666667 + x * 0.041666668)));
    }
    return exp(x) - 1.0;
}

// Folds the pair (row, column j) with squared expression distance `sq` and spatial distance
// `dist_um` into the row's state: one exp per pair, branch-free.
fn fold(st: ptr<function, Lse>, sq: f32, dist_um: f32, h_j: f32, j: u32) {
    var c = sq;
    if (SQUARED == 0u) {
        c = sqrt(sq);
    }
    c = (c + p.lambda * dist_um) * p.inv_scale;
    var v = c;
    if (p.mode != 1u) {
        v = (h_j - c) * p.inv_eps;
    }
    let e = exp(-abs(v - (*st).mx));
    let above = v > (*st).mx;
    (*st).s = select((*st).s + e, fma((*st).s, e, 1.0), above);
    (*st).arg = select((*st).arg, j, above);
    (*st).mx = max((*st).mx, v);
}

// Writes the outputs of one row (see the header for each mode).
fn finish(row: u32, st: Lse) {
    if (row >= p.rows) {
        return;
    }
    if (p.mode == 0u) {
        let lw = logw[row];
        let new_pot = p.eps * (lw - (st.mx + log(st.s)));
        out_pot[row] = new_pot;
        // Row sum of the plan with the old potential, relative to the marginal, minus one;
        // clamped so that the first iterations (far from the marginal) stay finite.
        let delta = min((old[row] - new_pot) * p.inv_eps, 80.0);
        out_aux[row] = exp(lw) * abs(expm1_small(delta));
    } else if (p.mode == 1u) {
        out_pot[row] = st.mx;
        out_aux[row] = 0.0;
    } else {
        out_pot[row] = 1.0 / st.s;
        out_aux[row] = bitcast<f32>(st.arg);
    }
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let block = wid.y * nwg.x + wid.x;
    if (block * WG * ROWS >= p.rows) {
        return; // the whole workgroup is past the end: uniform
    }
    // Invocation `lid` owns rows first + r * WG, r < ROWS. Out-of-range rows read row 0
    // (never written back) so loads stay in bounds.
    let first = block * WG * ROWS + lid;
{{LOAD_ROWS}}

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
            let h_t = tile_h[t];
{{PAIRS}}
        }
        workgroupBarrier(); // everyone is done with the tile before it is overwritten
    }
{{FINISH}}
}
