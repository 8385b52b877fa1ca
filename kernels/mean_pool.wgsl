// Mean over tokens: out[c, d] = (1/T) Σ_t x[c, t, d].
//
//   x: [n_cells, T, dim]; out: [n_cells, dim]
//
// One invocation per output element; the dispatch may be 2-D for large inputs.
//
// Placeholders: {{WG}}.

struct Params {
    n_cells: u32,
    tokens: u32,
    dim: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = {{WG}}u;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * (nwg.x * WG) + gid.x;
    if (idx >= p.n_cells * p.dim) {
        return;
    }
    let cell = idx / p.dim;
    let d = idx % p.dim;
    var sum = 0.0;
    for (var t = 0u; t < p.tokens; t++) {
        sum += x[(cell * p.tokens + t) * p.dim + d];
    }
    out[idx] = sum / f32(p.tokens);
}
