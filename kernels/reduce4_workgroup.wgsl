// Fragment (not a kernel): reductions over the 4 consecutive invocations 4⌊tid/4⌋ .. +3 of a
// 256-invocation workgroup, through the including kernel's workgroup array `red`
// (`array<f32, 256>`). Every invocation of the workgroup must call them (they hold
// barriers); all four get the result. Sum order ((v0 + v1) + v2) + v3, as the plain-Rust
// references. Substituted for the REDUCE4 placeholder when the context has no subgroups
// (`src/gpu/reduce4.rs`); `reduce4_subgroup.wgsl` is the other choice.

fn sum4(v: f32, tid: u32) -> f32 {
    red[tid] = v;
    workgroupBarrier();
    let b = tid & ~3u;
    let r = ((red[b] + red[b + 1u]) + red[b + 2u]) + red[b + 3u];
    workgroupBarrier();
    return r;
}

fn max4(v: f32, tid: u32) -> f32 {
    red[tid] = v;
    workgroupBarrier();
    let b = tid & ~3u;
    let r = max(max(red[b], red[b + 1u]), max(red[b + 2u], red[b + 3u]));
    workgroupBarrier();
    return r;
}
