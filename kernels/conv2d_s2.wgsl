// 3x3 convolution, stride 2, padding 1, with bias and a fused epilogue:
//
//   y[b, co, oy, ox] = epi(bias[co] + Σ_ci Σ_ky Σ_kx x[b, ci, 2oy + ky - 1, 2ox + kx - 1]
//                                                   · w[co, ci, ky, kx])
//
//   x: [n, c_in, side, side]; y: [n, c_out, side/2, side/2] (side even);
//   w: [c_out, c_in, 3, 3] (burn's Conv2d layout); bias: [c_out].
//   Taps outside the input (padding) contribute nothing.
//
// One invocation per output value (flat index over [n, c_out, side/2, side/2]), WG per
// workgroup; the dispatch may be 2-D when the workgroups exceed 65535 (flat workgroup index
// = wid.y * num_workgroups.x + wid.x, bounds-checked). Summation order: ci, ky, kx ascending,
// as engine::ops::conv2d_s2_reference.
//
// Placeholders: {{WG}}, {{EPILOGUE}} (0 = identity, 1 = GELU (erf form, as matmul_int8.wgsl),
// 2 = sigmoid).

struct Params {
    n: u32,
    c_in: u32,
    c_out: u32,
    side: u32, // input side
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const WG: u32 = {{WG}}u;
const EPILOGUE: u32 = {{EPILOGUE}}u;

// erf(x) by Abramowitz & Stegun 7.1.26, as matmul_int8.wgsl (engine::ops::erf_approx).
fn erf_approx(v: f32) -> f32 {
    let a = abs(v);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t;
    let r = 1.0 - poly * exp(-a * a);
    return select(-r, r, v >= 0.0);
}

fn epilogue(v: f32) -> f32 {
    if (EPILOGUE == 1u) {
        return 0.5 * v * (1.0 + erf_approx(v * 0.70710678118654752));
    }
    if (EPILOGUE == 2u) {
        return 1.0 / (1.0 + exp(-v));
    }
    return v;
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let o_side = p.side / 2u;
    let total = p.n * p.c_out * o_side * o_side;
    let idx = (wid.y * nwg.x + wid.x) * WG + lid;
    if (idx >= total) {
        return;
    }
    let ox = idx % o_side;
    let oy = (idx / o_side) % o_side;
    let co = (idx / (o_side * o_side)) % p.c_out;
    let b = idx / (o_side * o_side * p.c_out);
    let side = i32(p.side);
    var acc = bias[co];
    for (var ci = 0u; ci < p.c_in; ci++) {
        let xbase = (b * p.c_in + ci) * p.side * p.side;
        let wbase = (co * p.c_in + ci) * 9u;
        for (var ky = 0u; ky < 3u; ky++) {
            let iy = i32(oy * 2u + ky) - 1;
            if (iy < 0 || iy >= side) {
                continue;
            }
            for (var kx = 0u; kx < 3u; kx++) {
                let ix = i32(ox * 2u + kx) - 1;
                if (ix < 0 || ix >= side) {
                    continue;
                }
                acc += x[xbase + u32(iy) * p.side + u32(ix)] * w[wbase + ky * 3u + kx];
            }
        }
    }
    y[idx] = epilogue(acc);
}
