//! The 4-invocation reductions the matmul prologues share (`sum4`, `max4`), as a WGSL
//! fragment substituted for `{{REDUCE4}}`: through workgroup memory
//! (`kernels/reduce4_workgroup.wgsl`, the default numerics) or with `subgroupShuffleXor`
//! (`kernels/reduce4_subgroup.wgsl`, where [`super::GpuContext::supports_subgroups`]), plus
//! the enable directives a kernel needs for its fast paths (`{{ENABLES}}`).

use super::context::{subgroups_enable_directive, Kernel};

const WORKGROUP: &str = include_str!("../../kernels/reduce4_workgroup.wgsl");
const SUBGROUP: &str = include_str!("../../kernels/reduce4_subgroup.wgsl");

/// Substitutes `{{REDUCE4}}` (the subgroup fragment when `subgroups`, else the workgroup
/// one) and the `SUBGROUPS` flag.
pub(crate) fn with_reduce4(k: Kernel, subgroups: bool) -> Kernel {
    k.constant("SUBGROUPS", u32::from(subgroups))
        .constant("REDUCE4", if subgroups { SUBGROUP } else { WORKGROUP })
}

/// The enable directives for a kernel using f16 (`enable f16;`, valid natively and in
/// browsers) and/or subgroups (`enable subgroups;` in browsers only: naga 30 rejects it).
pub(crate) fn enables(f16: bool, subgroups: bool) -> String {
    let mut s = String::new();
    if f16 {
        s.push_str("enable f16;");
    }
    if subgroups {
        s.push_str(subgroups_enable_directive());
    }
    s
}
