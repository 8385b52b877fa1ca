//! The flow-matching morphology generator on WebGPU (issue 16): [`GpuFlowSampler`] runs
//! [`FlowSampler::sample`] with the model's f32 weights on the GPU kernels of
//! [`crate::gpu`] (`matmul_int8.wgsl` with `F32_WEIGHTS = 1`, `conv2d_s2.wgsl`,
//! `conv_transpose2d_s2.wgsl`, `film_layernorm.wgsl`), natively (Vulkan, e.g. lavapipe) and
//! in a browser. The CPU sampler is the reference: `tests/kernels.rs` holds the two within
//! `1e-4 · max(1, max|ref|)` on latents and `1e-4` on patches.
//!
//! Plan per chunk of pairs (one command buffer, one readback of latents ‖ patches):
//! - host, once per call: input validation (shared with the CPU sampler), `e_pert` `[n, P]`
//!   (token gather + two small matmuls) and the layer-normed control embedding `[n, Z]`,
//!   written per chunk into one `[e ‖ cell]` buffer `[c, P + Z]`; for every time `t` the
//!   integrator visits, the time part of `net.cond` folded into a bias,
//!   `b_t = b + W_time · temb(t)` `[hidden]`, so `cond = GELU([e ‖ cell] · W_ecᵀ + b_t)` is one
//!   matmul per velocity;
//! - encode: 3 × `conv2d_s2` (+ GELU), then `to_latent` with the normalisation folded into
//!   its row scale `1/scale` and bias `(b − mean)/scale`, giving the normalised latents `x`;
//! - per velocity: `input`, `cond`, per FiLM block `film`, `film_layernorm`, `fc1` + GELU,
//!   `fc2` + residual, then `out` accumulated straight into the state: the out matmul's
//!   residual add with row scale `h` and bias `h·b` is `x += h · v` (Euler); Heun copies `x`
//!   to the midpoint buffer, adds `h · v1` there and `h/2 · v1` into `x`, then `h/2 · v2`;
//! - decode: `from_latent` + GELU straight from `x` (de-normalisation folded in: row scale
//!   `scale`, bias `W · mean + b`), 3 × `conv_transpose2d_s2` (GELU, GELU, sigmoid).
//!   Latents are de-normalised on the host from the read-back `x`, as the CPU does.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::flow::{FlowCondition, FlowSample, FlowSampler, FlowSolver, LN_EPS};
use super::ops::layernorm_reference;
use super::{EngineError, Linear, LinearWeight};
use crate::gpu::conv2d_s2::{conv2d_s2_dispatch, ConvEpilogue, GpuConv};
use crate::gpu::conv_transpose2d_s2::conv_transpose2d_s2_dispatch;
use crate::gpu::film_layernorm::film_layernorm_dispatch;
use crate::gpu::layernorm::GpuLayerNorm;
use crate::gpu::matmul::{matmul_dispatch, Activation, GpuLinear};
use crate::gpu::{Dispatch, GpuContext, GpuError};

/// Default pairs per chunk (one command buffer and one readback each).
pub const DEFAULT_FLOW_CHUNK_PAIRS: usize = 1024;

/// A FiLM block's layers on the GPU.
struct GpuFilmBlock {
    norm: GpuLayerNorm,
    film: GpuLinear,
    fc1: GpuLinear,
    fc2: GpuLinear,
}

/// One step of a command buffer: a kernel launch or a buffer copy (Heun's midpoint here;
/// SPATIA's level outputs in [`super::spatia_gpu`]) of `bytes` from the start of `from` to
/// `to_offset` in `to`.
pub(super) enum Op {
    Run(Dispatch),
    Copy { from: wgpu::Buffer, to: wgpu::Buffer, to_offset: u64, bytes: u64 },
}

/// A chunk's work buffers, sized for `cap` pairs.
struct ChunkBuffers {
    patches: wgpu::Buffer,
    /// Encoder activations after each convolution.
    enc: Vec<wgpu::Buffer>,
    /// Normalised latents (the ODE state) and Heun's midpoint `[c, L]`.
    x: wgpu::Buffer,
    mid: wgpu::Buffer,
    /// `[e_pert ‖ cell]` `[c, P + Z]`.
    ec: wgpu::Buffer,
    cond: wgpu::Buffer,
    /// Hidden stream `[c, H]`, FiLM scale ‖ shift `[c, 2H]`, modulated `[c, H]`, MLP `[c, F]`.
    hidden: wgpu::Buffer,
    gb: wgpu::Buffer,
    modulated: wgpu::Buffer,
    ff: wgpu::Buffer,
    /// `from_latent` output, then each transposed convolution's output (the last: patches).
    dec: Vec<wgpu::Buffer>,
    readback: wgpu::Buffer,
}

/// The per-call layers whose row scale / bias depend on `latent_mean`, `latent_scale`, the
/// step size and the evaluation times.
struct CallLayers {
    to_latent: GpuLinear,
    from_latent: GpuLinear,
    /// `out` with row scale `h` and bias `h·b` (Euler's update, Heun's midpoint).
    out_h: GpuLinear,
    /// `out` with row scale `h/2` and bias `h/2·b` (Heun's update).
    out_half: GpuLinear,
    /// `cond` restricted to `[e ‖ cell]`, one bias `b_t` per evaluation time (by `t`'s bits).
    cond_at: BTreeMap<u32, GpuLinear>,
}

/// [`FlowSampler`] on the GPU: the weights (f32) uploaded once, pairs processed in chunks.
pub struct GpuFlowSampler {
    ctx: Arc<GpuContext>,
    /// The CPU sampler: sizes, validation, the host-side conditioning and the time embedding.
    cpu: FlowSampler,
    enc: Vec<GpuConv>,
    to_latent: GpuLinear,
    from_latent: GpuLinear,
    dec: Vec<GpuConv>,
    input: GpuLinear,
    /// `net.cond`'s `[e ‖ cell]` columns `[hidden, P + Z]` (the time columns are folded into
    /// per-evaluation biases).
    cond_ec: GpuLinear,
    blocks: Vec<GpuFilmBlock>,
    out: GpuLinear,
    chunk_pairs: usize,
    max_chunk_pairs: usize,
}

fn upload_conv(ctx: &GpuContext, c: &super::flow::Conv, k: usize, name: &str) -> Result<GpuConv, GpuError> {
    GpuConv::upload(ctx, &c.weight, &c.bias, c.c_in, c.c_out, k, name)
}

/// `w` with f32 weights (dequantised if int8), for the `F32_WEIGHTS` matmul.
fn as_f32(w: &Linear) -> Linear {
    match &w.weight {
        LinearWeight::F32(_) => w.clone(),
        LinearWeight::Int8 { .. } => Linear { weight: LinearWeight::F32(w.weight_f32().into_owned()), ..w.clone() },
    }
}

fn upload_f32(ctx: &GpuContext, w: &Linear, name: &str) -> Result<GpuLinear, GpuError> {
    GpuLinear::upload(ctx, &as_f32(w), name)
}

impl GpuFlowSampler {
    /// Uploads a FlowSampler's weights (f32) once.
    ///
    /// Errors: a layer too large for one storage binding ([`GpuError::TooLarge`] in
    /// [`EngineError::Gpu`]), a model whose single pair needs more than one binding.
    #[allow(clippy::result_large_err)] // EngineError, as every engine entry point returns
    pub fn new(ctx: Arc<GpuContext>, sampler: &FlowSampler) -> Result<Self, EngineError> {
        ctx.take_error()?;
        let s = sampler.sizes;
        let gpu = &*ctx;
        let enc = sampler.enc.iter().enumerate().map(|(i, c)| upload_conv(gpu, c, 3, &format!("ae.enc.{i}"))).collect::<Result<Vec<_>, _>>()?;
        let dec = sampler.dec.iter().enumerate().map(|(i, c)| upload_conv(gpu, c, 4, &format!("ae.dec.{i}"))).collect::<Result<Vec<_>, _>>()?;
        let cond = &sampler.cond;
        let (t_dim, ec_dim) = (s.time_dim, cond.in_dim - s.time_dim);
        let wc = cond.weight_f32();
        let ec_weight: Vec<f32> = (0..cond.out_dim).flat_map(|o| wc[o * cond.in_dim + t_dim..(o + 1) * cond.in_dim].iter().copied()).collect();
        let cond_ec = Linear { out_dim: cond.out_dim, in_dim: ec_dim, weight: LinearWeight::F32(ec_weight), bias: cond.bias.clone() };
        let blocks = sampler
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let p = format!("net.blocks.{i}");
                Ok(GpuFilmBlock {
                    norm: GpuLayerNorm::upload(gpu, &b.norm.gamma, &b.norm.beta, &format!("{p}.norm"))?,
                    film: upload_f32(gpu, &b.film, &format!("{p}.film"))?,
                    fc1: upload_f32(gpu, &b.fc1, &format!("{p}.fc1"))?,
                    fc2: upload_f32(gpu, &b.fc2, &format!("{p}.fc2"))?,
                })
            })
            .collect::<Result<Vec<_>, GpuError>>()?;
        let max_chunk_pairs = max_chunk_pairs(sampler, gpu.max_binding_bytes())?;
        let this = Self {
            to_latent: upload_f32(gpu, &sampler.to_latent, "ae.to_latent")?,
            from_latent: upload_f32(gpu, &sampler.from_latent, "ae.from_latent")?,
            input: upload_f32(gpu, &sampler.input, "net.input")?,
            cond_ec: upload_f32(gpu, &cond_ec, "net.cond (e ‖ cell columns)")?,
            out: upload_f32(gpu, &sampler.out, "net.out")?,
            enc,
            dec,
            blocks,
            cpu: sampler.clone(),
            chunk_pairs: DEFAULT_FLOW_CHUNK_PAIRS.min(max_chunk_pairs),
            max_chunk_pairs,
            ctx,
        };
        this.ctx.take_error()?;
        Ok(this)
    }

    /// Pairs per chunk (one command buffer and one readback each).
    pub fn chunk_pairs(&self) -> usize {
        self.chunk_pairs
    }

    /// The largest chunk whose buffers fit the device's storage-binding limit.
    pub fn max_chunk_pairs(&self) -> usize {
        self.max_chunk_pairs
    }

    /// Sets the pairs per chunk, clamped to `1..=max_chunk_pairs()`; returns the value used.
    pub fn set_chunk_pairs(&mut self, pairs: usize) -> usize {
        self.chunk_pairs = pairs.clamp(1, self.max_chunk_pairs);
        self.chunk_pairs
    }

    /// Kernel launches per velocity evaluation: `input`, `cond`, 4 per FiLM block (`film`,
    /// `film_layernorm`, `fc1`, `fc2`) and `out` (Heun's first velocity of a step launches
    /// `out` twice: midpoint and update).
    pub fn dispatches_per_velocity(&self) -> usize {
        3 + 4 * self.blocks.len()
    }

    /// Same contract and validation as FlowSampler::sample; pairs processed in chunks
    /// (e.g. 1024 pairs: one command buffer per chunk, one readback of latents + patches).
    ///
    /// Generates the target morphology of `n` control patches `[n, S²]`: encode, normalise
    /// by `latent_mean` `[L]` / `latent_scale`, integrate `steps` steps of `solver` from
    /// `t = 0` to 1 under `cond`, de-normalise, decode → latents `[n, L]` and patches
    /// `[n, S²]`. Bad inputs give the CPU sampler's [`EngineError`]s.
    ///
    /// Never blocks on wasm32; natively it drives the device with `poll` while waiting.
    pub async fn sample(&self, control_patches: &[f32], cond: &FlowCondition<'_>, latent_mean: &[f32], latent_scale: f32, steps: usize, solver: FlowSolver) -> Result<FlowSample, EngineError> {
        let sizes = self.cpu.sizes;
        let n = self.cpu.check_sample_inputs(control_patches, cond, latent_mean, latent_scale, steps)?;
        let (s2, l, z) = (sizes.patch_px * sizes.patch_px, sizes.latent, sizes.cell_dim);
        if n == 0 {
            return Ok(FlowSample { latents: Vec::new(), patches: Vec::new() });
        }
        self.ctx.take_error()?;
        // Host side, once: e_pert, the layer-normed cell embedding, [e ‖ cell] rows.
        let e = self.cpu.pert(cond, n);
        let cell = layernorm_reference(cond.cell, n, z, &self.cpu.cell_norm, LN_EPS);
        let p = sizes.pert_dim;
        let ec: Vec<f32> = (0..n).flat_map(|i| e[i * p..(i + 1) * p].iter().chain(&cell[i * z..(i + 1) * z]).copied().collect::<Vec<_>>()).collect();
        let h = 1.0 / steps as f32;
        let layers = self.call_layers(latent_mean, latent_scale, steps, h, solver)?;
        let cap = n.min(self.chunk_pairs);
        let bufs = self.chunk_buffers(cap)?;
        let mut latents = vec![0f32; n * l];
        let mut patches = vec![0f32; n * s2];
        let ec_w = p + z;
        // Every full chunk records the same launches; only a last, shorter one needs its own.
        let full_plan = self.plan(&bufs, &layers, cap, steps, h, solver)?;
        for start in (0..n).step_by(cap) {
            let c = cap.min(n - start);
            let ctx = &*self.ctx;
            ctx.queue.write_buffer(&bufs.patches, 0, bytemuck::cast_slice(&control_patches[start * s2..(start + c) * s2]));
            ctx.queue.write_buffer(&bufs.ec, 0, bytemuck::cast_slice(&ec[start * ec_w..(start + c) * ec_w]));
            let partial_plan;
            let ops = if c == cap {
                &full_plan
            } else {
                partial_plan = self.plan(&bufs, &layers, c, steps, h, solver)?;
                &partial_plan
            };
            let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("flow chunk") });
            record(&mut encoder, ops);
            let out_patches = bufs.dec.last().unwrap_or(&bufs.x);
            encoder.copy_buffer_to_buffer(&bufs.x, 0, &bufs.readback, 0, (c * l * 4) as u64);
            encoder.copy_buffer_to_buffer(out_patches, 0, &bufs.readback, (c * l * 4) as u64, (c * s2 * 4) as u64);
            let submission = ctx.queue.submit([encoder.finish()]);
            let values = ctx.map_read(&bufs.readback, c * (l + s2), submission).await?;
            let (xs, ps) = values.split_at(c * l);
            for (i, (dst, v)) in latents[start * l..(start + c) * l].iter_mut().zip(xs).enumerate() {
                *dst = v * latent_scale + latent_mean[i % l];
            }
            patches[start * s2..(start + c) * s2].copy_from_slice(ps);
        }
        self.ctx.take_error()?;
        Ok(FlowSample { latents, patches })
    }

    /// The layers with per-call row scales and biases (see the module doc).
    fn call_layers(&self, latent_mean: &[f32], latent_scale: f32, steps: usize, h: f32, solver: FlowSolver) -> Result<CallLayers, GpuError> {
        let ctx = &*self.ctx;
        let with = |base: &GpuLinear, scale: f32, bias: &[f32], what: &str| -> Result<GpuLinear, GpuError> {
            let mut w = base.clone();
            w.scale = ctx.storage_init(&format!("{} scale ({what})", base.name), bytemuck::cast_slice(&vec![scale; base.out_dim]))?;
            w.bias = ctx.storage_init(&format!("{} bias ({what})", base.name), bytemuck::cast_slice(bias))?;
            Ok(w)
        };
        let cpu = &self.cpu;
        // to_latent: x = (W·a + b − mean) / scale = (W·a) · (1/scale) + (b − mean) / scale.
        let tl = &cpu.to_latent;
        let tl_bias: Vec<f32> = tl.bias.iter().zip(latent_mean).map(|(b, m)| (b - m) / latent_scale).collect();
        let to_latent = with(&self.to_latent, 1.0 / latent_scale, &tl_bias, "normalised")?;
        // from_latent(x · scale + mean) = (W·x) · scale + (W·mean + b).
        let fl = &cpu.from_latent;
        let flw = fl.weight_f32();
        let fl_bias: Vec<f32> = (0..fl.out_dim).map(|o| flw[o * fl.in_dim..(o + 1) * fl.in_dim].iter().zip(latent_mean).map(|(w, m)| w * m).sum::<f32>() + fl.bias[o]).collect();
        let from_latent = with(&self.from_latent, latent_scale, &fl_bias, "de-normalising")?;
        let ob = &cpu.out.bias;
        let out_h = with(&self.out, h, &ob.iter().map(|b| b * h).collect::<Vec<_>>(), "step h")?;
        let out_half = with(&self.out, h / 2.0, &ob.iter().map(|b| b * (h / 2.0)).collect::<Vec<_>>(), "step h/2")?;
        // cond's time columns folded into one bias per evaluation time.
        let cond = &cpu.cond;
        let wc = cond.weight_f32();
        let t_dim = cpu.sizes.time_dim;
        let mut cond_at = BTreeMap::new();
        for t in evaluation_times(steps, h, solver) {
            if cond_at.contains_key(&t.to_bits()) {
                continue;
            }
            let temb = cpu.time_embedding(t);
            let bias: Vec<f32> = (0..cond.out_dim).map(|o| temb.iter().zip(&wc[o * cond.in_dim..o * cond.in_dim + t_dim]).map(|(a, w)| a * w).sum::<f32>() + cond.bias[o]).collect();
            cond_at.insert(t.to_bits(), with(&self.cond_ec, 1.0, &bias, &format!("t = {t}"))?);
        }
        Ok(CallLayers { to_latent, from_latent, out_h, out_half, cond_at })
    }

    /// Work buffers for chunks of up to `cap` pairs.
    fn chunk_buffers(&self, cap: usize) -> Result<ChunkBuffers, GpuError> {
        let ctx = &*self.ctx;
        let s = self.cpu.sizes;
        let mut side = s.patch_px;
        let mut enc = Vec::new();
        for (i, c) in self.enc.iter().enumerate() {
            side /= 2;
            enc.push(ctx.storage_zeroed(&format!("flow encoder activations {i}"), cap * c.c_out * side * side)?);
        }
        let mut dec = vec![ctx.storage_zeroed("flow from_latent", cap * self.from_latent.out_dim)?];
        let mut side = s.patch_px / 8;
        for (i, c) in self.dec.iter().enumerate() {
            side *= 2;
            dec.push(ctx.storage_zeroed(&format!("flow decoder activations {i}"), cap * c.c_out * side * side)?);
        }
        let ff = self.blocks.iter().map(|b| b.fc1.out_dim).max().unwrap_or(1);
        Ok(ChunkBuffers {
            patches: ctx.storage_zeroed("flow control patches", cap * s.patch_px * s.patch_px)?,
            enc,
            x: ctx.storage_zeroed("flow latents x", cap * s.latent)?,
            mid: ctx.storage_zeroed("flow Heun midpoint", cap * s.latent)?,
            ec: ctx.storage_zeroed("flow [e_pert ‖ cell]", cap * (s.pert_dim + s.cell_dim))?,
            cond: ctx.storage_zeroed("flow cond", cap * s.hidden)?,
            hidden: ctx.storage_zeroed("flow hidden", cap * s.hidden)?,
            gb: ctx.storage_zeroed("flow FiLM scale ‖ shift", cap * 2 * s.hidden)?,
            modulated: ctx.storage_zeroed("flow FiLM output", cap * s.hidden)?,
            ff: ctx.storage_zeroed("flow MLP hidden", cap * ff)?,
            dec,
            readback: ctx.readback_buffer("flow latents ‖ patches", cap * (s.latent + s.patch_px * s.patch_px)),
        })
    }

    /// The velocity network at state `x` `[c, L]` and time `t`, its `out` layer added into
    /// each `(target, out layer)` of `updates` (`target += scale · (W·h + b)`).
    #[allow(clippy::too_many_arguments)]
    fn velocity_ops(&self, b: &ChunkBuffers, layers: &CallLayers, c: usize, x: &wgpu::Buffer, t: f32, updates: &[(&wgpu::Buffer, &GpuLinear)], ops: &mut Vec<Op>) -> Result<(), GpuError> {
        let ctx = &*self.ctx;
        let cond = layers.cond_at.get(&t.to_bits()).ok_or_else(|| GpuError::Device { message: format!("flow sampler: no cond bias prepared for t = {t} (a bug; please report it)") })?;
        ops.push(Op::Run(matmul_dispatch(ctx, x, c, &self.input, &b.hidden, Activation::None, false)?));
        ops.push(Op::Run(matmul_dispatch(ctx, &b.ec, c, cond, &b.cond, Activation::Gelu, false)?));
        for blk in &self.blocks {
            ops.push(Op::Run(matmul_dispatch(ctx, &b.cond, c, &blk.film, &b.gb, Activation::None, false)?));
            ops.push(Op::Run(film_layernorm_dispatch(ctx, &b.hidden, &b.gb, c, &blk.norm, &b.modulated, LN_EPS)?));
            ops.push(Op::Run(matmul_dispatch(ctx, &b.modulated, c, &blk.fc1, &b.ff, Activation::Gelu, false)?));
            ops.push(Op::Run(matmul_dispatch(ctx, &b.ff, c, &blk.fc2, &b.hidden, Activation::None, true)?));
        }
        for (target, out) in updates {
            ops.push(Op::Run(matmul_dispatch(ctx, &b.hidden, c, out, target, Activation::None, true)?));
        }
        Ok(())
    }

    /// Every launch and copy of one chunk of `c` pairs.
    fn plan(&self, b: &ChunkBuffers, layers: &CallLayers, c: usize, steps: usize, h: f32, solver: FlowSolver) -> Result<Vec<Op>, GpuError> {
        let ctx = &*self.ctx;
        let s = self.cpu.sizes;
        let mut ops = Vec::new();
        // Encode.
        let (mut input, mut side) = (&b.patches, s.patch_px);
        for (conv, out) in self.enc.iter().zip(&b.enc) {
            ops.push(Op::Run(conv2d_s2_dispatch(ctx, input, c, side, conv, out, ConvEpilogue::Gelu)?));
            (input, side) = (out, side / 2);
        }
        ops.push(Op::Run(matmul_dispatch(ctx, input, c, &layers.to_latent, &b.x, Activation::None, false)?));
        // Integrate (times as FlowSampler::sample computes them).
        let latent_bytes = (c * s.latent * 4) as u64;
        for step in 0..steps {
            let t = step as f32 * h;
            match solver {
                FlowSolver::Euler => self.velocity_ops(b, layers, c, &b.x, t, &[(&b.x, &layers.out_h)], &mut ops)?,
                FlowSolver::Heun => {
                    ops.push(Op::Copy { from: b.x.clone(), to: b.mid.clone(), to_offset: 0, bytes: latent_bytes });
                    // The midpoint first: the second update changes x, which v1 read.
                    self.velocity_ops(b, layers, c, &b.x, t, &[(&b.mid, &layers.out_h), (&b.x, &layers.out_half)], &mut ops)?;
                    self.velocity_ops(b, layers, c, &b.mid, t + h, &[(&b.x, &layers.out_half)], &mut ops)?;
                }
            }
        }
        // Decode.
        ops.push(Op::Run(matmul_dispatch(ctx, &b.x, c, &layers.from_latent, &b.dec[0], Activation::Gelu, false)?));
        let mut side = s.patch_px / 8;
        for (i, conv) in self.dec.iter().enumerate() {
            let epilogue = if i + 1 < self.dec.len() { ConvEpilogue::Gelu } else { ConvEpilogue::Sigmoid };
            ops.push(Op::Run(conv_transpose2d_s2_dispatch(ctx, &b.dec[i], c, side, conv, &b.dec[i + 1], epilogue)?));
            side *= 2;
        }
        Ok(ops)
    }
}

/// The times at which [`FlowSampler::sample`] evaluates the velocity, computed as it does.
fn evaluation_times(steps: usize, h: f32, solver: FlowSolver) -> Vec<f32> {
    (0..steps)
        .flat_map(|step| {
            let t = step as f32 * h;
            match solver {
                FlowSolver::Euler => vec![t],
                FlowSolver::Heun => vec![t, t + h],
            }
        })
        .collect()
}

/// Records `ops` into `encoder`: runs of launches in one compute pass each, copies between.
pub(super) fn record(encoder: &mut wgpu::CommandEncoder, ops: &[Op]) {
    let mut i = 0;
    while i < ops.len() {
        match &ops[i] {
            Op::Copy { from, to, to_offset, bytes } => {
                encoder.copy_buffer_to_buffer(from, 0, to, *to_offset, *bytes);
                i += 1;
            }
            Op::Run(_) => {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("flow"), timestamp_writes: None });
                while let Some(Op::Run(d)) = ops.get(i) {
                    d.record(&mut pass);
                    i += 1;
                }
            }
        }
    }
}

/// The largest chunk for which every per-chunk buffer fits `max_binding` bytes (at most
/// [`DEFAULT_FLOW_CHUNK_PAIRS`] × 64 pairs, so u32 indices stay far from overflow).
fn max_chunk_pairs(sampler: &FlowSampler, max_binding: u64) -> Result<usize, GpuError> {
    let s = sampler.sizes;
    let mut per_pair = vec![("patches [S²]", s.patch_px * s.patch_px), ("hidden [2H]", 2 * s.hidden), ("from_latent", sampler.from_latent.out_dim)];
    let mut side = s.patch_px;
    for c in &sampler.enc {
        side /= 2;
        per_pair.push(("encoder activations", c.c_out * side * side));
    }
    let mut side = s.patch_px / 8;
    for c in &sampler.dec {
        side *= 2;
        per_pair.push(("decoder activations", c.c_out * side * side));
    }
    for b in &sampler.blocks {
        per_pair.push(("MLP hidden", b.fc1.out_dim));
    }
    let (what, widest) = per_pair.into_iter().max_by_key(|(_, v)| *v).unwrap_or(("patches [S²]", 1));
    let bytes = (widest.max(1) * 4) as u64;
    let pairs = (max_binding / bytes) as usize;
    if pairs == 0 {
        return Err(GpuError::TooLarge { what: format!("flow sampler {what} of one pair"), bytes, limit: max_binding });
    }
    Ok(pairs.min(DEFAULT_FLOW_CHUNK_PAIRS * 64))
}
