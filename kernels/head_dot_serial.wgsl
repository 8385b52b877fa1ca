// Fragment (not a kernel) of attention_out.wgsl, substituted for its HEAD_DOT placeholder when
// the context has no subgroups: q · k over the head's HD columns, each of the 4 invocations
// of a row computing the whole dot product (fma in column order).

fn head_dot(k_base: u32, asub: u32) -> f32 {
    var dot = 0.0;
    for (var e = 0u; e < HD; e++) {
        dot = fma(q[e], qkv[k_base + e], dot);
    }
    return dot;
}
