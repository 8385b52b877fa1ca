//! WebGPU compute: a [`GpuContext`] with a registry of compiled WGSL kernels and one launcher
//! per kernel. The plain-Rust references the kernels are tested against live beside the CPU
//! engine (`engine::ops`); the whole classifier on the GPU is `engine::GpuClassifier`, built
//! on the `pub(crate)` upload and dispatch helpers here. Nothing here knows about model files.
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
//! | kernel | launcher | reference (`engine::ops`) |
//! |---|---|---|
//! | `matmul_int8.wgsl` (+ fused GELU, residual; int8 or, `F32_WEIGHTS = 1`, f32 weights) | [`matmul_int8`] | `matmul_int8_reference` |
//! | `matmul_int8.wgsl` with its LayerNorm prologue | [`layernorm_matmul_int8`] | `layernorm_matmul_int8_reference` |
//! | `matmul_dot4.wgsl` (int8 activations, `dot4I8Packed`; optional, [`GpuContext::supports_int8_dot`]) | [`matmul_dot4()`](fn@matmul_dot4) | `matmul_dot4_reference` |
//! | `attention_out.wgsl` (attention + output projection + residual) | [`attention_out()`](fn@attention_out) | `attention_out_reference` |
//! | fast paths (optional, [`GpuContext::fast_paths`]): `matmul_int8.wgsl` with f16 input/output storage (`shader-f16`) or subgroup LayerNorm statistics (`kernels/reduce4_subgroup.wgsl`); `matmul_dot4.wgsl` with subgroup reductions; `attention_out.wgsl` with subgroup score dots (`kernels/head_dot_subgroup.wgsl`) | [`matmul_int8_fast`], [`matmul_dot4_with`], [`attention_out_with`] | `matmul_int8_f16_reference` and the references above |
//! | `attention.wgsl` (+ additive score bias) | [`attention()`](fn@attention), [`attention_biased`] | `attention_reference`, `attention_biased_reference` |
//! | `cross_attention.wgsl` (queries from one buffer, keys/values from another; online softmax) | [`cross_attention()`](fn@cross_attention) | `cross_attention_reference` |
//! | `layernorm.wgsl` | [`layernorm()`](fn@layernorm) | `layernorm_reference` |
//! | `film_layernorm.wgsl` (LayerNorm then FiLM `· (1 + γ) + β`) | [`film_layernorm()`](fn@film_layernorm) | `film_layernorm_reference` |
//! | `conv2d_s2.wgsl` (3×3, stride 2, pad 1, + GELU / sigmoid) | [`conv2d_s2()`](fn@conv2d_s2) | `conv2d_s2_reference` |
//! | `conv_transpose2d_s2.wgsl` (4×4 transposed, stride 2, pad 1, gather form, + GELU / sigmoid) | [`conv_transpose2d_s2()`](fn@conv_transpose2d_s2) | `conv_transpose2d_s2_reference` |
//! | `mean_pool.wgsl` | [`mean_pool()`](fn@mean_pool) | `mean_pool_reference` |
//! | `sparse_rows.wgsl` (CSR matrix times dense rows, + bias: SPATIA's gathers and niche means) | [`sparse_rows()`](fn@sparse_rows) | `sparse_rows_reference` |
//! | `token_gather_mean.wgsl` (ViT centre tokens) | [`token_gather_mean()`](fn@token_gather_mean) | `token_gather_mean_reference` |
//! | `sinkhorn_lse.wgsl`, `sinkhorn_reduce.wgsl` | `ot::sinkhorn` (GPU engine) | `ot::sinkhorn_log_domain_reference` |
//!
//! All launchers are `async`: results come back through `map_async` and a oneshot channel.
//! Natively the device is driven with `Device::poll`; tests block with `pollster`.

pub mod attention;
pub mod attention_out;
pub mod conv2d_s2;
pub mod conv_transpose2d_s2;
pub mod cross_attention;
pub mod flash_attention;
pub mod gene_token_embedding;
mod context;
mod error;
mod fixed_kernels;
pub mod film_layernorm;
pub mod layernorm;
pub mod matmul;
pub mod matmul_dot4;
pub mod mean_pool;
mod reduce4;
pub mod sparse_rows;
pub(crate) mod sinkhorn;
pub mod token_gather_mean;

pub use attention::{attention, attention_biased};
pub use attention_out::{attention_out, attention_out_with};
pub use conv2d_s2::{conv2d_s2, ConvEpilogue};
pub use conv_transpose2d_s2::conv_transpose2d_s2;
pub use cross_attention::cross_attention;
pub use flash_attention::flash_attention;
pub use gene_token_embedding::gene_token_embedding;
pub(crate) use context::{check_len, Dispatch, MAX_WORKGROUPS_PER_DIM};
pub use context::{GpuContext, GpuOptions};
pub use error::GpuError;
pub use film_layernorm::film_layernorm;
pub use layernorm::layernorm;
pub use matmul::{layernorm_matmul_int8, matmul_int8, matmul_int8_fast, Activation};
pub use matmul_dot4::{matmul_dot4, matmul_dot4_with};
pub use mean_pool::mean_pool;
pub use sparse_rows::sparse_rows;
pub use token_gather_mean::token_gather_mean;
