//! The GPU for WGSL tests: [`gpu_or_skip`].

use std::sync::Arc;

use cellsymphony::gpu::{GpuContext, GpuError};

/// `CELLSYMPHONY_ALLOW_NO_GPU=1`: a machine without any adapter skips GPU tests (loudly).
pub const ALLOW_NO_GPU: &str = "CELLSYMPHONY_ALLOW_NO_GPU";
/// `CELLSYMPHONY_REQUIRE_GPU=1` (set by `scripts/test.sh`): no adapter always fails, whatever
/// `CELLSYMPHONY_ALLOW_NO_GPU` says.
pub const REQUIRE_GPU: &str = "CELLSYMPHONY_REQUIRE_GPU";

fn env_is_1(name: &str) -> bool {
    std::env::var(name).as_deref() == Ok("1")
}

/// Opens the GPU (lavapipe counts) and prints its adapter, or:
/// - without an adapter: panics, unless `CELLSYMPHONY_ALLOW_NO_GPU=1` (and not
///   `CELLSYMPHONY_REQUIRE_GPU=1`), in which case it prints
///   `SKIPPED: no GPU adapter: <reason> (<test>)` to stderr and returns `None`: the caller
///   returns (or leaves out its GPU part);
/// - any other failure (device, limits): always panics.
///
/// ```ignore
/// let Some(ctx) = common::gpu_or_skip("my_test") else { return };
/// ```
pub fn gpu_or_skip(test: &str) -> Option<Arc<GpuContext>> {
    match pollster::block_on(GpuContext::new()) {
        Ok(ctx) => {
            eprintln!("{test}: adapter {}", ctx.adapter_summary());
            Some(Arc::new(ctx))
        }
        Err(e @ GpuError::NoAdapter { .. }) => {
            if env_is_1(REQUIRE_GPU) {
                panic!("{test}: {e}\n({REQUIRE_GPU}=1: GPU tests must run here; scripts/setup.sh installs lavapipe, mesa-vulkan-drivers)");
            }
            if env_is_1(ALLOW_NO_GPU) {
                eprintln!("SKIPPED: no GPU adapter: {e} ({test})");
                return None;
            }
            panic!("{test}: {e}\n(scripts/setup.sh installs lavapipe, mesa-vulkan-drivers; set {ALLOW_NO_GPU}=1 to skip GPU tests on a machine without any adapter)");
        }
        Err(e) => panic!("{test}: GPU context creation failed: {e}"),
    }
}

/// Tests skipped in this process because the adapter lacks an optional feature.
static FEATURE_SKIPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `Some(ctx)` when `has` (the context has the optional feature `feature`); otherwise prints
/// `SKIPPED: adapter lacks <feature>: <reason> (<test>; n feature skips so far)` to stderr,
/// counts it, and returns `None` — loudly, never a silent pass. lavapipe has every optional
/// feature these tests use (shader-f16, subgroups ≥ 4), so on the test machine nothing skips.
pub fn with_feature(test: &str, ctx: Arc<GpuContext>, feature: &str, has: bool) -> Option<Arc<GpuContext>> {
    if has {
        return Some(ctx);
    }
    let n = FEATURE_SKIPS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    eprintln!(
        "SKIPPED: adapter lacks {feature}: {} on {} ({test}; {n} feature skip(s) so far)",
        ctx.fast_paths(),
        ctx.adapter_summary()
    );
    None
}
