//! The error type of the GPU layer.

/// Everything that can go wrong when setting up or using the GPU engine.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No adapter (GPU or software rasteriser) is available.
    #[error("no WebGPU/Vulkan adapter found ({reason}): install a GPU driver, or Mesa's software Vulkan (lavapipe: `apt install mesa-vulkan-drivers`); in a browser, use one with WebGPU enabled (recent Chrome/Edge, Firefox 141+, Safari 26+)")]
    NoAdapter {
        /// wgpu's description.
        reason: String,
    },

    /// The adapter cannot provide the WebGPU default limits the engine is written for.
    #[error("adapter {adapter} does not support the WebGPU default limits ({reason}); choose another adapter (e.g. WGPU_BACKEND=vulkan) or update the driver")]
    LimitsUnsupported {
        /// Adapter summary.
        adapter: String,
        /// Which limits fall short.
        reason: String,
    },

    /// Opening the device failed.
    #[error("could not open a device on adapter {adapter}: {reason}")]
    RequestDevice {
        /// Adapter summary.
        adapter: String,
        /// wgpu's description.
        reason: String,
    },

    /// A WGSL kernel failed to compile or to build a pipeline.
    #[error("WGSL kernel `{kernel}` failed to build: {reason} (a bug in cellsymphony or the driver; please report it with the adapter summary)")]
    Shader {
        /// Kernel label.
        kernel: String,
        /// Compiler/validation message.
        reason: String,
    },

    /// An optional GPU capability was asked for on a context that does not have it.
    #[error("{feature} is not available on adapter {adapter}: {reason}; use the default path (e.g. GpuClassifier::set_int8_activations(false)) or another adapter")]
    Unsupported {
        /// The capability.
        feature: String,
        /// Adapter summary.
        adapter: String,
        /// Why it is unavailable.
        reason: String,
    },

    /// wgpu reported a validation, out-of-memory or device-lost error.
    #[error("GPU error: {message}")]
    Device {
        /// wgpu's description of the first error since the last check.
        message: String,
    },

    /// Mapping a result buffer for reading failed.
    #[error("reading results back from the GPU failed: {reason}")]
    Readback {
        /// What failed.
        reason: String,
    },

    /// An input slice has the wrong length.
    #[error("{what}: expected {expected} values, found {found}")]
    InputShape {
        /// Which input, with its expected shape.
        what: String,
        /// Expected number of values.
        expected: usize,
        /// Number found.
        found: usize,
    },

    /// A layer has f32 weights where a kernel reads packed int8 only (`matmul_dot4.wgsl`,
    /// `attention_out.wgsl`; `matmul_int8.wgsl` takes both).
    #[error("layer `{name}` has f32 weights but this kernel reads int8 only: quantise the model first (EngineModel::quantize_int8)")]
    NotQuantized {
        /// Layer name.
        name: String,
    },

    /// One buffer would exceed the device's storage-binding limit.
    #[error("{what} needs {bytes} bytes in one buffer, more than the device's storage-binding limit of {limit} bytes; use a smaller gene panel or model")]
    TooLarge {
        /// What the buffer holds.
        what: String,
        /// Bytes needed.
        bytes: u64,
        /// Device limit.
        limit: u64,
    },

    /// A launch would need more workgroups than WebGPU allows (65535 per dimension).
    #[error("{what} needs {workgroups} workgroups, more than the {limit} one dispatch allows; split the input into smaller batches")]
    DispatchTooLarge {
        /// The launch.
        what: String,
        /// Workgroups needed.
        workgroups: u64,
        /// Most workgroups allowed.
        limit: u64,
    },
    /// A launch would run more loop iterations per shader invocation than llvmpipe (lavapipe)
    /// allows before it silently cuts every loop short (Mesa's `LP_MAX_TGSI_LOOP_ITERATIONS`).
    #[error("{kernel} needs {iterations} loop iterations per shader invocation, more than the {limit} llvmpipe (lavapipe) runs before it cuts every loop short (the result would be wrong); use fewer tokens, the CPU engine or a hardware adapter")]
    LoopBudget {
        /// The kernel and its shape.
        kernel: String,
        /// Iterations one invocation would run.
        iterations: u64,
        /// llvmpipe's budget.
        limit: u64,
    },
    /// An input that has the right size but not the right content (e.g. a malformed sparse
    /// matrix).
    #[error("{what}: {reason}")]
    InvalidInput {
        /// Which input.
        what: String,
        /// What is wrong and what to do.
        reason: String,
    },
}
