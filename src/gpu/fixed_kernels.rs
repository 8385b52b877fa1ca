//! [`GpuContext::new`]: the device plus the kernels every classifier runs (the matmul
//! variants, layernorm, mean_pool, and the int8-activation matmuls where the adapter
//! supports them), compiled up front so that a compile error is reported at
//! start-up with the kernel's name. Attention is specialised per model shape and compiled by
//! [`crate::gpu::GpuClassifier::new`] or on first use.
//!
//! This sits above the launchers (it asks each for its kernels) and above the context (which
//! knows no kernel), so the context ↔ launcher imports stay one-way.

use super::context::{GpuContext, GpuOptions};
use super::error::GpuError;
use super::{layernorm, matmul, matmul_dot4, mean_pool};

impl GpuContext {
    /// Opens the best available adapter (high-performance preference; primary backends,
    /// i.e. Vulkan/Metal/DX12/browser WebGPU, unless the `WGPU_BACKEND` environment variable
    /// says otherwise natively), creates the device with the WebGPU default limits and
    /// compiles the fixed kernels (matmul variants, layernorm, mean_pool; attention is
    /// compiled per model shape by [`crate::gpu::GpuClassifier::new`] or on first use).
    ///
    /// The optional features (`shader-f16`, subgroups) are requested where the adapter has
    /// them ([`GpuOptions::default`]); [`GpuContext::with_options`] can turn them off.
    ///
    /// Errors: [`GpuError::NoAdapter`] when no adapter exists (e.g. no Vulkan driver),
    /// [`GpuError::LimitsUnsupported`], [`GpuError::RequestDevice`], [`GpuError::Shader`].
    pub async fn new() -> Result<GpuContext, GpuError> {
        GpuContext::with_options(GpuOptions::default()).await
    }

    /// [`GpuContext::new`] with the optional features `options` allows (each still only
    /// where the adapter has it). A fast path whose kernels fail to compile is turned off
    /// (the reason is kept for [`GpuContext::fast_paths`]) instead of failing the context.
    ///
    /// Errors: as [`GpuContext::new`].
    pub async fn with_options(options: GpuOptions) -> Result<GpuContext, GpuError> {
        let mut ctx = GpuContext::open_device(options).await?;
        let mut fixed = vec![layernorm::kernel(), mean_pool::kernel()];
        fixed.extend(matmul::all_kernels());
        for kernel in &fixed {
            ctx.compile_checked(kernel).await?;
        }
        // Optional int8-activation kernels: a compile failure turns the fast path off (the
        // reason is kept for `int8_dot_status`) instead of failing the context.
        if ctx.int8_dot.is_ok() {
            for kernel in &matmul_dot4::layer_kernels(false) {
                if let Err(e) = ctx.compile_checked(kernel).await {
                    ctx.int8_dot = Err(e.to_string());
                    break;
                }
            }
        }
        if ctx.f16.is_ok() {
            for kernel in &matmul::f16_kernels() {
                if let Err(e) = ctx.compile_checked(kernel).await {
                    ctx.f16 = Err(e.to_string());
                    break;
                }
            }
        }
        if ctx.subgroups.is_ok() {
            let mut kernels = matmul::subgroup_kernels(ctx.f16.is_ok());
            if ctx.int8_dot.is_ok() {
                kernels.extend(matmul_dot4::layer_kernels(true));
            }
            for kernel in &kernels {
                if let Err(e) = ctx.compile_checked(kernel).await {
                    ctx.subgroups = Err(e.to_string());
                    break;
                }
            }
        }
        Ok(ctx)
    }
}
