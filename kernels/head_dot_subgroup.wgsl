// Fragment (not a kernel) of attention_out.wgsl, substituted for its HEAD_DOT placeholder when
// the context has subgroups: each of the 4 invocations of a row takes the head-dim columns
// e ≡ asub (mod 4) (fma in column order), and two `subgroupShuffleXor` butterflies (masks
// 1 and 2) add the 4 partial dots, (d0 + d1) + (d2 + d3), the same value in all four lanes.
// A quarter of the serial fragment's multiply-adds per invocation; sums differ from it in
// rounding only. Assumes subgroups are contiguous, aligned runs of ≥ 4 invocations
// (kernels/reduce4_subgroup.wgsl says why that holds); called in uniform control flow.

fn head_dot(k_base: u32, asub: u32) -> f32 {
    var dot = 0.0;
    for (var j = 0u; j < HD_SUB; j++) {
        let e = asub + 4u * j;
        if (e < HD) {
            dot = fma(q[e], qkv[k_base + e], dot);
        }
    }
    let a = dot + subgroupShuffleXor(dot, 1u);
    return a + subgroupShuffleXor(a, 2u);
}
