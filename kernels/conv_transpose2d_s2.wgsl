// 4x4 transposed convolution, stride 2, padding 1, with bias and a fused epilogue, in gather
// form (one invocation per output value, no atomics):
//
//   y[b, co, oy, ox] = epi(bias[co] + Σ_ci Σ_{iy, ky: oy = 2iy + ky - 1} Σ_{ix, kx: ox = 2ix + kx - 1}
//                                        x[b, ci, iy, ix] · w[ci, co, ky, kx])
//
//   x: [n, c_in, side, side]; y: [n, c_out, 2side, 2side];
//   w: [c_in, c_out, 4, 4] (burn's ConvTranspose2d layout); bias: [c_out].
//
// For an output row oy, the taps with ky ≡ oy + 1 (mod 2) contribute: ky0 = (oy + 1) % 2 with
// iy = (oy + 1 - ky0) / 2, and ky0 + 2 with iy - 1 (each when 0 <= iy < side); the same along
// x. Summation order: ci, then iy, then ix ascending, which is the order in which the scatter
// form of engine::ops::conv_transpose2d_s2_reference adds into one output.
//
// The dispatch may be 2-D when the workgroups exceed 65535 (flat workgroup index
// = wid.y * num_workgroups.x + wid.x, bounds-checked).
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
    let o_side = p.side * 2u;
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
    // Taps: (iy_hi, ky0) and (iy_hi - 1, ky0 + 2); likewise along x.
    let ky0 = (oy + 1u) % 2u;
    let iy_hi = i32((oy + 1u - ky0) / 2u);
    let kx0 = (ox + 1u) % 2u;
    let ix_hi = i32((ox + 1u - kx0) / 2u);
    var acc = bias[co];
    for (var ci = 0u; ci < p.c_in; ci++) {
        let xbase = (b * p.c_in + ci) * p.side * p.side;
        let wbase = (ci * p.c_out + co) * 16u;
        for (var a = 0u; a < 2u; a++) {
            let iy = iy_hi - 1 + i32(a);      // ascending iy
            let ky = ky0 + 2u - 2u * a;
            if (iy < 0 || iy >= side) {
                continue;
            }
            for (var c = 0u; c < 2u; c++) {
                let ix = ix_hi - 1 + i32(c);
                let kx = kx0 + 2u - 2u * c;
                if (ix < 0 || ix >= side) {
                    continue;
                }
                acc += x[xbase + u32(iy) * p.side + u32(ix)] * w[wbase + ky * 4u + kx];
            }
        }
    }
    y[idx] = epilogue(acc);
}
