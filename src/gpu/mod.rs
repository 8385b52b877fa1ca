//! WebGPU inference: a [`GpuContext`] with a cache of compiled WGSL kernels, one launcher
//! per kernel beside its plain-Rust `*_reference`, and the chunked [`GpuClassifier`].
//!
//! Kernels register themselves: each launcher file declares its WGSL (`include_str!`) and
//! constants as a `Kernel`, and the context compiles and caches pipelines by key (kernel
//! name + constants, as web-rwkv does); the context holds no list of kernels. Adding a kernel
//! touches only its `.wgsl` file and its launcher.
//!
//! Kernels live in `kernels/*.wgsl` (one op per file) and are specialised only by replacing
//! `{{NAME}}` placeholder tokens with constants (tile/workgroup sizes, activation and
//! residual flags, attention dims). Everything targets the WebGPU default limits, so the same
//! code runs natively (Vulkan, e.g. lavapipe) and in browsers (wasm32 + WebGPU).
//!
//! | kernel | launcher | reference |
//! |---|---|---|
//! | `matmul_int8.wgsl` (+ fused GELU, residual) | [`matmul_int8`] | [`matmul_int8_reference`] |
//! | `attention.wgsl` (+ additive score bias) | [`attention()`](fn@attention), [`attention_biased`] | [`attention_reference`], [`attention_biased_reference`] |
//! | `layernorm.wgsl` | [`layernorm()`](fn@layernorm) | [`layernorm_reference`] |
//! | `mean_pool.wgsl` | [`mean_pool()`](fn@mean_pool) | [`mean_pool_reference`] |
//! | `token_gather_mean.wgsl` (ViT centre tokens) | [`token_gather_mean()`](fn@token_gather_mean) | [`token_gather_mean_reference`] |
//! | `sinkhorn_lse.wgsl`, `sinkhorn_reduce.wgsl` | [`crate::ot::sinkhorn`] (GPU engine) | [`crate::ot::sinkhorn_log_domain_reference`] |
//!
//! All launchers and [`GpuClassifier::logits`] are `async`: results come back through
//! `map_async` and a oneshot channel. Natively the device is driven with `Device::poll`;
//! tests block with `pollster`.

pub mod attention;
mod classifier;
mod context;
mod error;
mod fixed_kernels;
pub mod layernorm;
pub mod matmul;
pub mod mean_pool;
pub(crate) mod sinkhorn;
pub mod token_gather_mean;

pub use attention::{attention, attention_biased, attention_biased_reference, attention_reference};
pub use classifier::{GpuClassifier, DEFAULT_CHUNK_CELLS};
pub use context::GpuContext;
pub use error::GpuError;
pub use layernorm::{layernorm, layernorm_reference};
pub use matmul::{erf_approx, gelu_reference, matmul_int8, matmul_int8_reference, Activation};
pub use mean_pool::{mean_pool, mean_pool_reference};
pub use token_gather_mean::{token_gather_mean, token_gather_mean_reference};
