// Fragment (not a kernel): reductions over the 4 consecutive invocations 4⌊tid/4⌋ .. +3,
// with two `subgroupShuffleXor` butterflies (masks 1 and 2) and no workgroup memory or
// barrier. Assumes what every WebGPU implementation does for compute: subgroups are
// contiguous, aligned runs of local_invocation_index of at least 4 invocations (the context
// turns subgroups off when the adapter's minimum subgroup size is below 4), so the 4 lanes
// of a group are lanes 4j .. 4j+3 of one subgroup. Must be called in uniform control flow.
// Sum order (v0 + v1) + (v2 + v3) — the same value in all four lanes (addition commutes),
// but not the workgroup fragment's ((v0 + v1) + v2) + v3: sums may differ in the last bit.
// Substituted for the REDUCE4 placeholder by `src/gpu/reduce4.rs`; `tid` is unused here.

fn sum4(v: f32, tid: u32) -> f32 {
    let a = v + subgroupShuffleXor(v, 1u);
    return a + subgroupShuffleXor(a, 2u);
}

fn max4(v: f32, tid: u32) -> f32 {
    let a = max(v, subgroupShuffleXor(v, 1u));
    return max(a, subgroupShuffleXor(a, 2u));
}
