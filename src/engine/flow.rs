//! The flow-matching morphology generator without burn (issue 16): the patch autoencoder, the
//! perturbation encoder and the FiLM velocity network of `model::flow`, as plain-Rust
//! forwards on the CPU (they build for wasm32), loaded from the `model.safetensors` that
//! `cellsymphony flow train` writes. Sizes are read from the tensors' shapes.
//!
//! Sampling ([`FlowSampler::sample`]): encode the control patches `[n, S²]` → latents
//! `[n, L]`, normalise `(ℓ − mean) / scale`, integrate `dℓ/dt = v(ℓ, t | e_pert, z_ctrl)` from
//! `t = 0` to 1 (Euler or Heun), de-normalise and decode → patches `[n, S²]` in `(0, 1)`. The
//! same arithmetic as burn's modules (GELU by [`gelu_reference`](super::ops::gelu_reference)'s erf approximation, within
//! 1e-6 of the exact form); `tests/spatia.rs` checks parity with burn on a trained model.

use serde::{Deserialize, Serialize};

use super::ops::{conv2d_s2_reference, conv_transpose2d_s2_reference, film_layernorm_reference, layernorm_reference, matmul_int8_reference};
use super::{EngineError, LayerNormWeights, Linear, LinearWeight};
use crate::gpu::{Activation, ConvEpilogue};

/// burn's LayerNorm epsilon.
pub(crate) const LN_EPS: f32 = 1e-5;

/// ODE solver of the sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlowSolver {
    /// Forward Euler (one velocity per step).
    Euler,
    /// Heun's method (two velocities per step, second order).
    Heun,
}

/// Sizes of the autoencoder, the perturbation encoder and the velocity network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowSpec {
    /// Patch side `S` in pixels (a multiple of 8).
    pub patch_px: usize,
    /// Channels of the first convolution (`2×` in the next two).
    pub channels: usize,
    /// Latent width `L`.
    pub latent: usize,
    /// Hidden width of the velocity network.
    pub hidden: usize,
    /// Residual FiLM blocks.
    pub blocks: usize,
    /// Width of `e_pert` (and of the transition-token embedding).
    pub pert_dim: usize,
    /// PCA components of Δg fed to the perturbation encoder.
    pub dg_components: usize,
    /// Transition tokens (ordered state pairs, e.g. Epithelial → Malignant).
    pub n_transitions: usize,
    /// Width of the control cell's embedding `z_ctrl`.
    pub cell_dim: usize,
    /// Width of the sinusoidal time embedding (even).
    pub time_dim: usize,
}

impl FlowSpec {
    /// The CPU default: 32-px patches, 16/32/32 channels, latent 32, hidden 128, 3 blocks,
    /// e_pert 32, 16 Δg components, 16-d time embedding.
    pub fn small(n_transitions: usize, cell_dim: usize) -> Self {
        Self { patch_px: 32, channels: 16, latent: 32, hidden: 128, blocks: 3, pert_dim: 32, dg_components: 16, n_transitions, cell_dim, time_dim: 16 }
    }

    /// A reason the spec cannot be built, if any.
    pub fn check(&self) -> Result<(), String> {
        if self.patch_px < 8 || self.patch_px % 8 != 0 {
            return Err(format!("patch_px {} must be a positive multiple of 8", self.patch_px));
        }
        if self.time_dim % 2 != 0 || self.time_dim == 0 {
            return Err(format!("time_dim {} must be even and > 0", self.time_dim));
        }
        for (name, v) in [("channels", self.channels), ("latent", self.latent), ("hidden", self.hidden), ("pert_dim", self.pert_dim), ("n_transitions", self.n_transitions), ("cell_dim", self.cell_dim)] {
            if v == 0 {
                return Err(format!("{name} must be > 0"));
            }
        }
        Ok(())
    }
}

/// A 3×3 stride-2 convolution (padding 1) or a 4×4 stride-2 transposed one (padding 1);
/// computed by [`conv2d_s2_reference`] / [`conv_transpose2d_s2_reference`] (the CPU engine is
/// the GPU kernels' reference).
#[derive(Debug, Clone)]
pub(crate) struct Conv {
    /// burn's layout: `[out, in, k, k]` (convolution) or `[in, out, k, k]` (transposed).
    pub(crate) weight: Vec<f32>,
    pub(crate) bias: Vec<f32>,
    pub(crate) c_in: usize,
    pub(crate) c_out: usize,
}

impl Conv {
    /// `[n, c_in, side, side]` → `[n, c_out, side / 2, side / 2]`, then `epilogue`.
    fn forward(&self, x: &[f32], n: usize, side: usize, epilogue: ConvEpilogue) -> Vec<f32> {
        conv2d_s2_reference(x, n, self.c_in, side, &self.weight, &self.bias, self.c_out, epilogue)
    }

    /// Transposed: `[n, c_in, side, side]` → `[n, c_out, 2 side, 2 side]`, then `epilogue`.
    fn forward_transposed(&self, x: &[f32], n: usize, side: usize, epilogue: ConvEpilogue) -> Vec<f32> {
        conv_transpose2d_s2_reference(x, n, self.c_in, side, &self.weight, &self.bias, self.c_out, epilogue)
    }
}

/// A residual FiLM block: `h += fc2(GELU(fc1(LN(h) · (1 + γ) + β)))`, `γ ‖ β = film(cond)`.
#[derive(Debug, Clone)]
pub(crate) struct FilmBlock {
    pub(crate) norm: LayerNormWeights,
    pub(crate) film: Linear,
    pub(crate) fc1: Linear,
    pub(crate) fc2: Linear,
}

/// A trained flow model (autoencoder + perturbation encoder + velocity network), burn-free.
///
/// Fields are `pub(crate)` for the GPU sampler ([`super::GpuFlowSampler`]), which uploads them.
#[derive(Debug, Clone)]
pub struct FlowSampler {
    pub(crate) sizes: FlowSpec,
    /// Encoder convolutions (3×3, stride 2), each followed by GELU.
    pub(crate) enc: Vec<Conv>,
    pub(crate) to_latent: Linear,
    /// Followed by GELU.
    pub(crate) from_latent: Linear,
    /// Decoder transposed convolutions (4×4, stride 2): GELU between, sigmoid after the last.
    pub(crate) dec: Vec<Conv>,
    /// Transition-token embedding `[n_transitions, P]`.
    pub(crate) token: Vec<f32>,
    pub(crate) pert_fc1: Linear,
    pub(crate) pert_fc2: Linear,
    pub(crate) input: Linear,
    pub(crate) cell_norm: LayerNormWeights,
    /// `[time ‖ e_pert ‖ cell] → hidden`, followed by GELU.
    pub(crate) cond: Linear,
    pub(crate) blocks: Vec<FilmBlock>,
    pub(crate) out: Linear,
}

/// The conditioning of `n` pairs.
#[derive(Debug, Clone, Copy)]
pub struct FlowCondition<'a> {
    /// Transition token per pair `[n]`.
    pub tokens: &'a [u32],
    /// Scaled Δg PCA coordinates `[n, K]` (as `train::flow` computes them).
    pub dg: &'a [f32],
    /// The control cell's embedding `[n, Z]`.
    pub cell: &'a [f32],
}

/// Generated latents and patches of [`FlowSampler::sample`].
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSample {
    /// De-normalised latents `[n, L]`.
    pub latents: Vec<f32>,
    /// Decoded patches `[n, S²]` in `(0, 1)`.
    pub patches: Vec<f32>,
}

struct Tensors<'a>(safetensors::SafeTensors<'a>);

impl Tensors<'_> {
    fn get(&self, name: &str, rank: usize) -> Result<(Vec<usize>, Vec<f32>), EngineError> {
        let view = self.0.tensor(name).map_err(|_| EngineError::MissingTensor { name: name.to_string(), expected: format!("F32, rank {rank}"), hint: " (a flow model written by `cellsymphony flow train`)".to_string() })?;
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(EngineError::WrongDtype { name: name.to_string(), found: format!("{:?}", view.dtype()), expected: "F32".to_string() });
        }
        if view.shape().len() != rank {
            return Err(EngineError::WrongShape { name: name.to_string(), found: view.shape().to_vec(), expected: vec![0; rank] });
        }
        let values: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(EngineError::NonFinite { name: name.to_string(), index });
        }
        Ok((view.shape().to_vec(), values))
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, EngineError> {
        let (shape, v) = self.get(name, 1)?;
        if shape != [len] {
            return Err(EngineError::WrongShape { name: name.to_string(), found: shape, expected: vec![len] });
        }
        Ok(v)
    }

    /// A burn Linear (`weight [in, out]`, `bias [out]`) as the engine's `[out, in]` layer;
    /// `in_dim` is checked when given.
    fn linear(&self, prefix: &str, in_dim: Option<usize>) -> Result<Linear, EngineError> {
        let name = format!("{prefix}.weight");
        let (shape, w) = self.get(&name, 2)?;
        let (i, o) = (shape[0], shape[1]);
        if in_dim.is_some_and(|d| d != i) {
            return Err(EngineError::WrongShape { name, found: shape, expected: vec![in_dim.unwrap_or(i), o] });
        }
        let mut t = vec![0f32; i * o];
        for r in 0..i {
            for c in 0..o {
                t[c * i + r] = w[r * o + c];
            }
        }
        Ok(Linear { out_dim: o, in_dim: i, weight: LinearWeight::F32(t), bias: self.vector(&format!("{prefix}.bias"), o)? })
    }

    fn conv(&self, prefix: &str, transposed: bool, c_in: usize, k: usize) -> Result<Conv, EngineError> {
        let name = format!("{prefix}.weight");
        let (shape, weight) = self.get(&name, 4)?;
        let (a, b) = (shape[0], shape[1]);
        let (wi, wo) = if transposed { (a, b) } else { (b, a) };
        if wi != c_in || shape[2] != k || shape[3] != k {
            let expected = if transposed { vec![c_in, wo, k, k] } else { vec![wo, c_in, k, k] };
            return Err(EngineError::WrongShape { name, found: shape, expected });
        }
        Ok(Conv { weight, bias: self.vector(&format!("{prefix}.bias"), wo)?, c_in, c_out: wo })
    }

    fn layernorm(&self, prefix: &str, dim: usize) -> Result<LayerNormWeights, EngineError> {
        Ok(LayerNormWeights { gamma: self.vector(&format!("{prefix}.gamma"), dim)?, beta: self.vector(&format!("{prefix}.beta"), dim)? })
    }
}

fn check_len(what: &str, v: &[f32], want: usize) -> Result<(), EngineError> {
    if v.len() != want {
        return Err(EngineError::InputShape { what: what.to_string(), expected: want, found: v.len() });
    }
    Ok(())
}

impl FlowSampler {
    /// Reads a flow model (`model.safetensors` of `cellsymphony flow train`); every size comes
    /// from the tensors' shapes and must agree between them.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self, EngineError> {
        let file = safetensors::SafeTensors::deserialize(bytes).map_err(|e| EngineError::Safetensors { reason: e.to_string() })?;
        let t = Tensors(file);
        let mut enc = Vec::new();
        let mut c_in = 1;
        for i in 0..3 {
            let conv = t.conv(&format!("ae.enc.{i}"), false, c_in, 3)?;
            c_in = conv.c_out;
            enc.push(conv);
        }
        let inner_c = c_in;
        let to_latent = t.linear("ae.to_latent", None)?;
        let s8 = ((to_latent.in_dim / inner_c.max(1)) as f64).sqrt().round() as usize;
        if s8 == 0 || s8 * s8 * inner_c != to_latent.in_dim {
            return Err(EngineError::Inconsistent { reason: format!("ae.to_latent reads {} features, not {inner_c} channels of a square map", to_latent.in_dim) });
        }
        let latent = to_latent.out_dim;
        let from_latent = t.linear("ae.from_latent", Some(latent))?;
        let mut dec = Vec::new();
        let mut c_in = inner_c;
        for i in 0..3 {
            let conv = t.conv(&format!("ae.dec.{i}"), true, c_in, 4)?;
            c_in = conv.c_out;
            dec.push(conv);
        }
        if c_in != 1 || from_latent.out_dim != to_latent.in_dim {
            return Err(EngineError::Inconsistent { reason: format!("the decoder ends in {c_in} channels and starts from {} features; expected 1 and {}", from_latent.out_dim, to_latent.in_dim) });
        }
        let (tshape, token) = t.get("net.pert.token.weight", 2)?;
        let (n_transitions, pert_dim) = (tshape[0], tshape[1]);
        let pert_fc1 = t.linear("net.pert.fc1", None)?;
        let dg_components = pert_fc1.in_dim.checked_sub(pert_dim).ok_or_else(|| EngineError::Inconsistent { reason: format!("net.pert.fc1 reads {} features, fewer than e_pert's {pert_dim}", pert_fc1.in_dim) })?;
        let pert_fc2 = t.linear("net.pert.fc2", Some(pert_fc1.out_dim))?;
        let input = t.linear("net.input", Some(latent))?;
        let hidden = input.out_dim;
        let (cshape, _) = t.get("net.cell_norm.gamma", 1)?;
        let cell_dim = cshape[0];
        let cell_norm = t.layernorm("net.cell_norm", cell_dim)?;
        let cond = t.linear("net.cond", None)?;
        let time_dim = cond.in_dim.checked_sub(pert_dim + cell_dim).filter(|d| *d > 0 && d % 2 == 0 && cond.out_dim == hidden).ok_or_else(|| EngineError::Inconsistent {
            reason: format!("net.cond maps {} → {}; expected an even time width + {pert_dim} + {cell_dim} → {hidden}", cond.in_dim, cond.out_dim),
        })?;
        let mut blocks = Vec::new();
        while t.0.tensor(&format!("net.blocks.{}.film.weight", blocks.len())).is_ok() {
            let p = format!("net.blocks.{}", blocks.len());
            let block = FilmBlock {
                norm: t.layernorm(&format!("{p}.norm"), hidden)?,
                film: t.linear(&format!("{p}.film"), Some(hidden))?,
                fc1: t.linear(&format!("{p}.fc1"), Some(hidden))?,
                fc2: t.linear(&format!("{p}.fc2"), None)?,
            };
            if block.film.out_dim != 2 * hidden || block.fc2.in_dim != block.fc1.out_dim || block.fc2.out_dim != hidden {
                return Err(EngineError::Inconsistent { reason: format!("{p}: FiLM / MLP widths do not match the hidden width {hidden}") });
            }
            blocks.push(block);
        }
        let out = t.linear("net.out", Some(hidden))?;
        if out.out_dim != latent || pert_fc2.out_dim != pert_dim {
            return Err(EngineError::Inconsistent { reason: format!("net.out gives {} (latent {latent}), net.pert.fc2 gives {} (e_pert {pert_dim})", out.out_dim, pert_fc2.out_dim) });
        }
        let sizes = FlowSpec { patch_px: s8 * 8, channels: enc[0].c_out, latent, hidden, blocks: blocks.len(), pert_dim, dg_components, n_transitions, cell_dim, time_dim };
        Ok(Self { sizes, enc, to_latent, from_latent, dec, token, pert_fc1, pert_fc2, input, cell_norm, cond, blocks, out })
    }

    /// The model's sizes.
    pub fn sizes(&self) -> FlowSpec {
        self.sizes
    }

    /// Latents `[n, L]` of patches `[n, S²]` (values in `[0, 1]`).
    pub fn encode(&self, patches: &[f32]) -> Result<Vec<f32>, EngineError> {
        let s = self.sizes.patch_px;
        if patches.len() % (s * s) != 0 {
            return Err(EngineError::InputShape { what: format!("patches [n, {s}²]"), expected: patches.len().div_ceil(s * s) * s * s, found: patches.len() });
        }
        let n = patches.len() / (s * s);
        let (mut h, mut side) = (patches.to_vec(), s);
        for conv in &self.enc {
            h = conv.forward(&h, n, side, ConvEpilogue::Gelu);
            side /= 2;
        }
        Ok(matmul_int8_reference(&h, n, &self.to_latent, Activation::None, None))
    }

    /// Patches `[n, S²]` in `(0, 1)` of latents `[n, L]`.
    pub fn decode(&self, latents: &[f32]) -> Result<Vec<f32>, EngineError> {
        let l = self.sizes.latent;
        if latents.len() % l != 0 {
            return Err(EngineError::InputShape { what: format!("latents [n, {l}]"), expected: latents.len().div_ceil(l) * l, found: latents.len() });
        }
        let n = latents.len() / l;
        let mut h = matmul_int8_reference(latents, n, &self.from_latent, Activation::Gelu, None);
        let mut side = self.sizes.patch_px / 8;
        for (i, conv) in self.dec.iter().enumerate() {
            let epilogue = if i + 1 < self.dec.len() { ConvEpilogue::Gelu } else { ConvEpilogue::Sigmoid };
            h = conv.forward_transposed(&h, n, side, epilogue);
            side *= 2;
        }
        Ok(h)
    }

    /// `e_pert` `[n, P]` of the conditioning (checked by [`Self::check_sample_inputs`]).
    pub(crate) fn pert(&self, c: &FlowCondition<'_>, n: usize) -> Vec<f32> {
        let (p, k) = (self.sizes.pert_dim, self.sizes.dg_components);
        let x: Vec<f32> = (0..n).flat_map(|i| {
            let tok = c.tokens[i] as usize;
            self.token[tok * p..(tok + 1) * p].iter().chain(&c.dg[i * k..(i + 1) * k]).copied()
        }).collect();
        let h = matmul_int8_reference(&x, n, &self.pert_fc1, Activation::Gelu, None);
        matmul_int8_reference(&h, n, &self.pert_fc2, Activation::None, None)
    }

    /// Velocity `[n, L]` at normalised latents `x` `[n, L]` and time `t`, given `e_pert`
    /// `[n, P]` and the layer-normed control embedding `[n, Z]`.
    fn velocity(&self, x: &[f32], t: f32, e: &[f32], cell: &[f32], n: usize) -> Vec<f32> {
        let (p, z) = (self.sizes.pert_dim, self.sizes.cell_dim);
        let temb = self.time_embedding(t);
        let row: Vec<f32> = (0..n).flat_map(|i| temb.iter().copied().chain(e[i * p..(i + 1) * p].iter().copied()).chain(cell[i * z..(i + 1) * z].iter().copied()).collect::<Vec<f32>>()).collect();
        let cond = matmul_int8_reference(&row, n, &self.cond, Activation::Gelu, None);
        let hd = self.sizes.hidden;
        let mut h = matmul_int8_reference(x, n, &self.input, Activation::None, None);
        for b in &self.blocks {
            let gb = matmul_int8_reference(&cond, n, &b.film, Activation::None, None);
            let y = film_layernorm_reference(&h, &gb, n, hd, &b.norm, LN_EPS);
            let y = matmul_int8_reference(&y, n, &b.fc1, Activation::Gelu, None);
            h = matmul_int8_reference(&y, n, &b.fc2, Activation::None, Some(&h));
        }
        matmul_int8_reference(&h, n, &self.out, Activation::None, None)
    }

    /// The sinusoidal time embedding `[sin(t·f_k) ‖ cos(t·f_k)]` `[time_dim]`,
    /// `f_k = 1000^(k / (time_dim/2))`.
    pub(crate) fn time_embedding(&self, t: f32) -> Vec<f32> {
        let half = self.sizes.time_dim / 2;
        let arg: Vec<f32> = (0..half).map(|k| t * 1000f32.powf(k as f32 / half.max(1) as f32)).collect();
        arg.iter().map(|a| a.sin()).chain(arg.iter().map(|a| a.cos())).collect()
    }

    /// Checks [`Self::sample`]'s inputs (lengths, token range, scale, steps, finiteness);
    /// returns the number of pairs `n`. Shared by the CPU and GPU samplers, so both give the
    /// same [`EngineError`] for the same bad input.
    #[allow(clippy::result_large_err)] // EngineError, as Self::sample returns
    pub(crate) fn check_sample_inputs(&self, control_patches: &[f32], cond: &FlowCondition<'_>, latent_mean: &[f32], latent_scale: f32, steps: usize) -> Result<usize, EngineError> {
        let FlowSpec { patch_px: s, latent: l, dg_components: k, cell_dim: z, n_transitions, .. } = self.sizes;
        let n = cond.tokens.len();
        check_len("control patches [n, S²]", control_patches, n * s * s)?;
        check_len("Δg PCA coordinates [n, K]", cond.dg, n * k)?;
        check_len("cell embedding [n, Z]", cond.cell, n * z)?;
        check_len("latent mean [L]", latent_mean, l)?;
        if let Some(&bad) = cond.tokens.iter().find(|&&t| t as usize >= n_transitions) {
            return Err(EngineError::FlowInput { reason: format!("transition token {bad} is not below the model's {n_transitions} transitions; pass token indices of flow.json's transitions") });
        }
        if !(latent_scale.is_finite() && latent_scale > 0.0) || steps == 0 {
            return Err(EngineError::FlowInput { reason: format!("latent scale {latent_scale} must be positive and finite and steps {steps} at least 1; pass flow.json's latent_scale") });
        }
        if let Some(index) = control_patches.iter().chain(cond.dg).chain(cond.cell).position(|v| !v.is_finite()) {
            return Err(EngineError::FlowInput { reason: format!("non-finite value at flat index {index} of the patches ‖ Δg ‖ cell embedding; clean the inputs") });
        }
        Ok(n)
    }

    /// Generates the target morphology of `n` control patches `[n, S²]`: encode, normalise by
    /// `latent_mean` `[L]` / `latent_scale`, integrate `steps` steps of `solver` from `t = 0`
    /// to 1 under `cond`, de-normalise, decode.
    pub fn sample(&self, control_patches: &[f32], cond: &FlowCondition<'_>, latent_mean: &[f32], latent_scale: f32, steps: usize, solver: FlowSolver) -> Result<FlowSample, EngineError> {
        let FlowSpec { latent: l, cell_dim: z, .. } = self.sizes;
        let n = self.check_sample_inputs(control_patches, cond, latent_mean, latent_scale, steps)?;
        let raw = self.encode(control_patches)?;
        let mut x: Vec<f32> = raw.iter().enumerate().map(|(i, v)| (v - latent_mean[i % l]) / latent_scale).collect();
        let e = self.pert(cond, n);
        let cell = layernorm_reference(cond.cell, n, z, &self.cell_norm, LN_EPS);
        let h = 1.0 / steps as f32;
        for step in 0..steps {
            let t = step as f32 * h;
            let v1 = self.velocity(&x, t, &e, &cell, n);
            x = match solver {
                FlowSolver::Euler => x.iter().zip(&v1).map(|(a, v)| a + v * h).collect(),
                FlowSolver::Heun => {
                    let mid: Vec<f32> = x.iter().zip(&v1).map(|(a, v)| a + v * h).collect();
                    let v2 = self.velocity(&mid, t + h, &e, &cell, n);
                    x.iter().zip(v1.iter().zip(&v2)).map(|(a, (p, q))| a + (p + q) * (h / 2.0)).collect()
                }
            };
        }
        let latents: Vec<f32> = x.iter().enumerate().map(|(i, v)| v * latent_scale + latent_mean[i % l]).collect();
        let patches = self.decode(&latents)?;
        Ok(FlowSample { latents, patches })
    }
}
