//! The GPU context (instance, adapter, device, queue), the pipeline cache keyed by kernel
//! name + constants (kernels declare themselves: [`Kernel`]), and the small
//! helpers every launcher uses (buffers, bind groups, dispatch sizes, async readback).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use super::error::GpuError;

/// Workgroups per dimension allowed by the WebGPU default limits.
pub(crate) const MAX_WORKGROUPS_PER_DIM: u32 = 65_535;

/// Identifies one compiled pipeline, like web-rwkv's `PipelineKey`: the kernel's name plus
/// the constants substituted into its template, in the order the launcher gives them. Equal
/// keys share one pipeline in [`GpuContext`]'s cache.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct KernelKey {
    /// The kernel file's stem under `kernels/`, e.g. `"matmul_int8"`.
    pub name: &'static str,
    /// `(PLACEHOLDER, value)` pairs: each `{{PLACEHOLDER}}` of the template becomes `value`.
    pub constants: Vec<(&'static str, String)>,
}

/// A WGSL kernel as a launcher declares it: its template (`include_str!` of
/// `kernels/<name>.wgsl`) and the constants that specialise it. The context knows no kernel
/// in advance; it compiles whatever [`Kernel`] a launcher asks for, once per [`KernelKey`].
#[derive(Clone, Debug)]
pub(crate) struct Kernel {
    /// Name and constants: what the compiled pipeline is cached under.
    pub key: KernelKey,
    template: &'static str,
}

impl Kernel {
    /// The kernel `name` with WGSL `template`, no constants yet.
    pub(crate) fn new(name: &'static str, template: &'static str) -> Self {
        Self {
            key: KernelKey {
                name,
                constants: Vec::new(),
            },
            template,
        }
    }

    /// Adds the substitution `{{placeholder}}` → `value`.
    pub(crate) fn constant(mut self, placeholder: &'static str, value: impl ToString) -> Self {
        self.key.constants.push((placeholder, value.to_string()));
        self
    }

    /// `name(A=1, B=2)` for pipeline labels and errors; generated multi-line code
    /// snippets (as Sinkhorn substitutes) are left out of the label (not of the key).
    pub(crate) fn label(&self) -> String {
        let shown: Vec<String> = self
            .key
            .constants
            .iter()
            .filter(|(_, v)| !v.contains('\n'))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if shown.is_empty() {
            self.key.name.to_string()
        } else {
            format!("{}({})", self.key.name, shown.join(", "))
        }
    }

    /// The WGSL source: the template with every constant substituted.
    pub(crate) fn source(&self) -> String {
        specialise(self.template, &self.key.constants)
    }
}

/// Replaces each `{{NAME}}` placeholder of a kernel template with its value.
fn specialise(template: &str, values: &[(&str, String)]) -> String {
    let mut src = template.to_string();
    for (name, value) in values {
        src = src.replace(&format!("{{{{{name}}}}}"), value);
    }
    src
}

/// Which optional device features a [`GpuContext`] may turn on (the fast paths). Each is
/// requested only where the adapter has it, never required; what is on is recorded in the
/// context ([`GpuContext::fast_paths`]). [`GpuOptions::default`] allows both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuOptions {
    /// Request `shader-f16` (WGSL `enable f16;`): lets a classifier keep its feed-forward
    /// hidden activations as f16 ([`crate::engine::GpuClassifier::set_f16_hidden`]).
    pub f16: bool,
    /// Request subgroups: the matmul LayerNorm prologue, the int8-activation row amax and
    /// the attention scores reduce with `subgroupShuffleXor` instead of workgroup memory.
    pub subgroups: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self { f16: true, subgroups: true }
    }
}

impl GpuOptions {
    /// No optional feature: the portable kernels only (the CLI's `--no-gpu-fast-paths`).
    pub fn portable() -> Self {
        Self { f16: false, subgroups: false }
    }
}

/// Smallest subgroup the subgroup kernels assume: they reduce over groups of 4 consecutive
/// invocations with `subgroupShuffleXor(v, 1)` and `(v, 2)`, so every subgroup must hold
/// whole, aligned groups of 4 (every adapter reports ≥ 4; lavapipe 8, SwiftShader 4,
/// NVIDIA 32, AMD 32–64).
pub(crate) const MIN_SUBGROUP_SIZE: u32 = 4;

/// The WGSL directive a subgroup kernel starts with on this target: browsers require
/// `enable subgroups;`, while naga 30 (native) rejects it as an unimplemented extension and
/// takes the capability from the device's `SUBGROUP` feature instead.
pub(crate) fn subgroups_enable_directive() -> &'static str {
    if cfg!(target_arch = "wasm32") {
        "enable subgroups;"
    } else {
        ""
    }
}

/// A WebGPU device plus the compiled kernels, created once and shared (`Arc`) by
/// classifiers and launchers.
///
/// Limits: the device is opened with exactly the WebGPU default limits
/// (`wgpu::Limits::defaults()`: 128 MiB per storage binding, 256 MiB per buffer, 8 storage
/// buffers per stage, 16 KiB workgroup memory, 256 invocations per workgroup, 65535
/// workgroups per dimension), so whatever runs here also runs in a browser. Lavapipe
/// (Mesa's software Vulkan) and every WebGPU-capable GPU provide them;
/// `Limits::downlevel_defaults()` would not do, as the matmul kernel binds 5 storage
/// buffers (downlevel allows 4).
///
/// Errors: wgpu validation/device errors that happen outside an error scope are captured
/// (not panicked on) and returned as [`GpuError::Device`] by the next launcher or
/// classifier call on this context.
pub struct GpuContext {
    /// The wgpu instance.
    pub instance: wgpu::Instance,
    /// The adapter the device was opened on.
    pub adapter: wgpu::Adapter,
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    pipelines: Mutex<HashMap<KernelKey, wgpu::ComputePipeline>>,
    first_error: Arc<Mutex<Option<String>>>,
    /// Whether `dot4I8Packed` kernels can run (`Ok`), else why not; detected once when the
    /// context is built ([`GpuContext::supports_int8_dot`]).
    pub(crate) int8_dot: Result<(), String>,
    /// Whether f16 kernels (`enable f16;`) run (`Ok`), else why not; decided once when the
    /// context is built from [`GpuOptions`] and the adapter's features.
    pub(crate) f16: Result<(), String>,
    /// Whether subgroup kernels run (`Ok`), else why not (as `f16`).
    pub(crate) subgroups: Result<(), String>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.adapter_summary())
            .finish_non_exhaustive()
    }
}

impl GpuContext {
    /// Opens the best available adapter (high-performance preference; primary backends,
    /// i.e. Vulkan/Metal/DX12/browser WebGPU, unless the `WGPU_BACKEND` environment variable
    /// says otherwise natively) and creates the device with the WebGPU default limits; no
    /// kernel is compiled yet ([`GpuContext::new`] adds the fixed ones).
    ///
    /// Errors: [`GpuError::NoAdapter`] when no adapter exists (e.g. no Vulkan driver),
    /// [`GpuError::LimitsUnsupported`], [`GpuError::RequestDevice`].
    pub(crate) async fn open_device(options: GpuOptions) -> Result<GpuContext, GpuError> {
        // Primary backends only (Vulkan, Metal, DX12, browser WebGPU): wgpu's OpenGL backend
        // cannot provide the WebGPU default compute limits. WGPU_BACKEND overrides this
        // natively.
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends = wgpu::Backends::PRIMARY.with_env();
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter {
                reason: e.to_string(),
            })?;
        let summary = summarise(&adapter.get_info());

        let required = wgpu::Limits::defaults();
        let mut shortfalls = Vec::new();
        required.check_limits_with_fail_fn(&adapter.limits(), false, |name, want, have| {
            shortfalls.push(format!("{name}: need {want}, adapter has {have}"));
        });
        if !shortfalls.is_empty() {
            return Err(GpuError::LimitsUnsupported {
                adapter: summary,
                reason: shortfalls.join("; "),
            });
        }
        // Optional features: requested where the adapter has them and the caller allows them.
        let have = adapter.features();
        let info = adapter.get_info();
        let f16 = if !options.f16 {
            Err("turned off by the caller (GpuOptions::f16 = false)".to_string())
        } else if !have.contains(wgpu::Features::SHADER_F16) {
            Err("the adapter lacks shader-f16".to_string())
        } else {
            Ok(())
        };
        let subgroups = if !options.subgroups {
            Err("turned off by the caller (GpuOptions::subgroups = false)".to_string())
        } else if cfg!(target_arch = "wasm32") {
            // wgpu 30's WebGPU backend maps no browser feature to Features::SUBGROUP
            // (gfx-rs/wgpu#5555), so the browser's `subgroups` cannot be requested.
            Err("wgpu 30's WebGPU backend cannot request the browser's subgroups feature".to_string())
        } else if !have.contains(wgpu::Features::SUBGROUP) {
            Err("the adapter lacks subgroups".to_string())
        } else if info.subgroup_min_size < MIN_SUBGROUP_SIZE {
            Err(format!(
                "subgroup size {} < {MIN_SUBGROUP_SIZE} (the kernels reduce over 4 lanes)",
                info.subgroup_min_size
            ))
        } else {
            Ok(())
        };
        let mut required_features = wgpu::Features::empty();
        if f16.is_ok() {
            required_features |= wgpu::Features::SHADER_F16;
        }
        if subgroups.is_ok() {
            required_features |= wgpu::Features::SUBGROUP;
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("cellsymphony"),
                required_features,
                required_limits: required,
                memory_hints: wgpu::MemoryHints::Performance,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::RequestDevice {
                adapter: summary.clone(),
                reason: e.to_string(),
            })?;

        let first_error = Arc::new(Mutex::new(None::<String>));
        let sink = Arc::clone(&first_error);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut slot) = sink.lock() {
                slot.get_or_insert_with(|| e.to_string());
            }
        }));

        // `dot4I8Packed` is a WGSL language extension: natively naga always implements it
        // (SPIR-V `OpSDot` where the driver has shaderIntegerDotProduct, a bit-extract
        // polyfill otherwise); in a browser, `navigator.gpu.wgslLanguageFeatures` says.
        let int8_dot = if instance
            .wgsl_language_features()
            .contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct)
        {
            Ok(())
        } else {
            Err("the WGSL language extension packed_4x8_integer_dot_product is not available".to_string())
        };

        Ok(GpuContext {
            instance,
            adapter,
            device,
            queue,
            pipelines: Mutex::new(HashMap::new()),
            first_error,
            int8_dot,
            f16,
            subgroups,
        })
    }

    /// [`GpuContext::pipeline`] inside a validation error scope, so that a compile error of
    /// `kernel` is returned here as [`GpuError::Shader`] naming the kernel (rather than as a
    /// [`GpuError::Device`] on a later call).
    pub(crate) async fn compile_checked(
        &self,
        kernel: &Kernel,
    ) -> Result<wgpu::ComputePipeline, GpuError> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = self.pipeline(kernel)?;
        if let Some(e) = scope.pop().await {
            return Err(GpuError::Shader {
                kernel: kernel.label(),
                reason: e.to_string(),
            });
        }
        Ok(pipeline)
    }

    /// One line describing the adapter: name, backend, device type, driver, and whether it
    /// is a software (CPU) implementation such as lavapipe/llvmpipe.
    pub fn adapter_summary(&self) -> String {
        summarise(&self.adapter.get_info())
    }

    /// Whether int8-activation kernels (`matmul_dot4.wgsl`, WGSL `dot4I8Packed` from the
    /// language extension `packed_4x8_integer_dot_product`) run on this context: the
    /// extension is available and the kernels compiled when the context was built.
    pub fn supports_int8_dot(&self) -> bool {
        self.int8_dot.is_ok()
    }

    /// `"available"`, or why the int8-activation kernels are off on this context.
    pub fn int8_dot_status(&self) -> &str {
        match &self.int8_dot {
            Ok(()) => "available",
            Err(reason) => reason,
        }
    }

    /// `Ok` when [`GpuContext::supports_int8_dot`], else [`GpuError::Unsupported`].
    pub(crate) fn require_int8_dot(&self) -> Result<(), GpuError> {
        self.int8_dot.clone().map_err(|reason| GpuError::Unsupported {
            feature: "int8 activations (WGSL dot4I8Packed)".into(),
            adapter: self.adapter_summary(),
            reason,
        })
    }

    /// Whether f16 kernels run on this context (`shader-f16` requested and granted).
    pub fn supports_f16(&self) -> bool {
        self.f16.is_ok()
    }

    /// Whether subgroup kernels run on this context (subgroups requested and granted, with
    /// subgroups of at least 4 invocations).
    pub fn supports_subgroups(&self) -> bool {
        self.subgroups.is_ok()
    }

    /// One line saying which fast paths are on and why the others are off, e.g.
    /// `shader-f16: on; subgroups: on (size 8..8); dot4I8Packed: available`.
    pub fn fast_paths(&self) -> String {
        let info = self.adapter.get_info();
        let f16 = match &self.f16 {
            Ok(()) => "on".to_string(),
            Err(r) => format!("off ({r})"),
        };
        let sg = match &self.subgroups {
            Ok(()) => format!("on (size {}..{})", info.subgroup_min_size, info.subgroup_max_size),
            Err(r) => format!("off ({r})"),
        };
        format!("shader-f16: {f16}; subgroups: {sg}; dot4I8Packed: {}", self.int8_dot_status())
    }

    /// `Ok` when [`GpuContext::supports_f16`], else [`GpuError::Unsupported`].
    pub(crate) fn require_f16(&self) -> Result<(), GpuError> {
        self.f16.clone().map_err(|reason| GpuError::Unsupported {
            feature: "f16 activations (shader-f16)".into(),
            adapter: self.adapter_summary(),
            reason,
        })
    }

    /// `Ok` when [`GpuContext::supports_subgroups`], else [`GpuError::Unsupported`].
    pub(crate) fn require_subgroups(&self) -> Result<(), GpuError> {
        self.subgroups.clone().map_err(|reason| GpuError::Unsupported {
            feature: "subgroup reductions".into(),
            adapter: self.adapter_summary(),
            reason,
        })
    }

    /// Whether the adapter is a software rasteriser running on the CPU.
    pub fn is_software(&self) -> bool {
        self.adapter.get_info().device_type == wgpu::DeviceType::Cpu
    }

    /// The device's limits (the WebGPU defaults).
    pub fn limits(&self) -> wgpu::Limits {
        self.device.limits()
    }

    /// Largest buffer a kernel may bind as storage, in bytes.
    pub(crate) fn max_binding_bytes(&self) -> u64 {
        let l = self.device.limits();
        l.max_storage_buffer_binding_size.min(l.max_buffer_size)
    }

    /// The pipeline of `kernel`, compiled on first use and cached under its [`KernelKey`] for
    /// the context's lifetime.
    pub(crate) fn pipeline(&self, kernel: &Kernel) -> Result<wgpu::ComputePipeline, GpuError> {
        let mut cache = self.pipelines.lock().map_err(|_| GpuError::Device {
            message: "kernel registry lock poisoned".into(),
        })?;
        if let Some(p) = cache.get(&kernel.key) {
            return Ok(p.clone());
        }
        let label = kernel.label();
        let source = kernel.source();
        if let Some(pos) = source.find("{{") {
            let end = source[pos..]
                .find("}}")
                .map_or(source.len(), |e| pos + e + 2);
            return Err(GpuError::Shader {
                kernel: label,
                reason: format!("unsubstituted placeholder {}", &source[pos..end]),
            });
        }
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(Cow::Owned(source)),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        cache.insert(kernel.key.clone(), pipeline.clone());
        Ok(pipeline)
    }

    /// Returns (and clears) the first wgpu error captured since the last call.
    pub(crate) fn take_error(&self) -> Result<(), GpuError> {
        let message = self
            .first_error
            .lock()
            .ok()
            .and_then(|mut slot| slot.take());
        match message {
            Some(message) => Err(GpuError::Device { message }),
            None => Ok(()),
        }
    }

    /// A storage buffer initialised with `data` (at least 4 bytes, zero-padded if empty).
    pub(crate) fn storage_init(&self, label: &str, data: &[u8]) -> Result<wgpu::Buffer, GpuError> {
        self.check_binding(label, data.len() as u64)?;
        let padded;
        let contents = if data.is_empty() {
            padded = [0u8; 4];
            &padded[..]
        } else {
            data
        };
        Ok(self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
            }))
    }

    /// An uninitialised (zeroed) storage buffer of `len_f32` floats (at least one).
    pub(crate) fn storage_zeroed(
        &self,
        label: &str,
        len_f32: usize,
    ) -> Result<wgpu::Buffer, GpuError> {
        let bytes = (len_f32.max(1) * 4) as u64;
        self.check_binding(label, bytes)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        }))
    }

    /// A 16-byte uniform buffer holding four `u32` words (kernel `Params` structs).
    pub(crate) fn uniform(&self, label: &str, words: [u32; 4]) -> wgpu::Buffer {
        self.uniform_words(label, &words)
    }

    /// A uniform buffer holding `words` (a multiple of four `u32` words: WGSL uniform
    /// structs are 16-byte aligned).
    pub(crate) fn uniform_words(&self, label: &str, words: &[u32]) -> wgpu::Buffer {
        debug_assert!(words.len().is_multiple_of(4) && !words.is_empty());
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(words),
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    /// A buffer the CPU can map for reading, of `len_f32` floats.
    pub(crate) fn readback_buffer(&self, label: &str, len_f32: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (len_f32.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    fn check_binding(&self, what: &str, bytes: u64) -> Result<(), GpuError> {
        let limit = self.max_binding_bytes();
        if bytes > limit {
            return Err(GpuError::TooLarge {
                what: what.to_string(),
                bytes,
                limit,
            });
        }
        Ok(())
    }

    /// Binds `buffers` to bindings 0, 1, 2, ... of group 0 of `pipeline`.
    pub(crate) fn bind(
        &self,
        pipeline: &wgpu::ComputePipeline,
        label: &str,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    }

    /// Maps `staging` (already the target of a copy in `submission`), waits for it without
    /// blocking on wasm (native: drives the device with `poll`), and returns its first `len`
    /// floats. Also reports any captured wgpu error.
    pub(crate) async fn map_read(
        &self,
        staging: &wgpu::Buffer,
        len: usize,
        submission: wgpu::SubmissionIndex,
    ) -> Result<Vec<f32>, GpuError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let bytes = (len * 4) as u64;
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, ..bytes, move |result| {
            // The receiver only disappears if the caller's future was dropped.
            let _ = tx.send(result);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(submission),
                timeout: None,
            })
            .map_err(|e| GpuError::Readback {
                reason: format!("waiting for the GPU failed: {e}"),
            })?;
        #[cfg(target_arch = "wasm32")]
        let _ = submission; // the browser drives mapping callbacks itself
        let mapped = rx.await.map_err(|_| GpuError::Readback {
            reason: "the mapping callback was dropped (device lost?)".into(),
        })?;
        if let Err(e) = mapped {
            self.take_error()?;
            return Err(GpuError::Readback {
                reason: e.to_string(),
            });
        }
        let out = {
            let view = staging
                .get_mapped_range(..bytes)
                .map_err(|e| GpuError::Readback {
                    reason: format!("mapped range unavailable: {e}"),
                })?;
            view.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        staging.unmap();
        self.take_error()?;
        Ok(out)
    }

    /// Records `dispatches` in one compute pass, copies the first `len` floats of `output` to
    /// a fresh readback buffer, submits, and reads them back.
    pub(crate) async fn run_and_read(
        &self,
        label: &str,
        dispatches: &[Dispatch],
        output: &wgpu::Buffer,
        len: usize,
    ) -> Result<Vec<f32>, GpuError> {
        self.take_error()?;
        let staging = self.readback_buffer(label, len);
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: None,
            });
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        if len > 0 {
            encoder.copy_buffer_to_buffer(output, 0, &staging, 0, (len * 4) as u64);
        }
        let submission = self.queue.submit([encoder.finish()]);
        self.map_read(&staging, len, submission).await
    }
}

fn summarise(info: &wgpu::AdapterInfo) -> String {
    let kind = if info.device_type == wgpu::DeviceType::Cpu {
        "software/CPU adapter"
    } else {
        "hardware adapter"
    };
    let driver = match (info.driver.is_empty(), info.driver_info.is_empty()) {
        (true, _) => String::new(),
        (false, true) => format!(", driver {}", info.driver),
        (false, false) => format!(", driver {} {}", info.driver, info.driver_info),
    };
    format!(
        "{} ({:?}, {:?}{driver}; {kind})",
        info.name, info.backend, info.device_type
    )
}

/// One kernel launch: pipeline, bound resources and workgroup counts.
pub(crate) struct Dispatch {
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
}

impl Dispatch {
    pub(crate) fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.workgroups[0], self.workgroups[1], self.workgroups[2]);
    }
}

/// Workgroup counts for `total` workgroups of a 1-D problem, folded into two dimensions when
/// `total` exceeds the per-dimension limit (kernels rebuild the flat index as
/// `wid.y * num_workgroups.x + wid.x` and bounds-check it).
pub(crate) fn fold_workgroups(total: usize, what: &str) -> Result<[u32; 3], GpuError> {
    let max = MAX_WORKGROUPS_PER_DIM as usize;
    let total = total.max(1);
    if total <= max {
        return Ok([total as u32, 1, 1]);
    }
    let y = total.div_ceil(max);
    if y > max {
        return Err(GpuError::DispatchTooLarge {
            what: what.to_string(),
            workgroups: total as u64,
            limit: (max * max) as u64,
        });
    }
    Ok([max as u32, y as u32, 1])
}

/// Checks that a slice has `expected` values.
pub(crate) fn check_len(
    what: impl FnOnce() -> String,
    found: usize,
    expected: usize,
) -> Result<(), GpuError> {
    if found != expected {
        return Err(GpuError::InputShape {
            what: what(),
            expected,
            found,
        });
    }
    Ok(())
}
