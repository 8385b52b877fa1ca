//! Morphology generation by conditional flow matching (issue 16, native only): a small
//! convolutional autoencoder of nucleus-centred DAPI patches (latent `ℓ`), the
//! pseudo-perturbation encoder `e_pert = MLP(transition token ‖ PCA(Δg))` and the velocity
//! network `v(ℓ_t, t | e_pert, z_ctrl)` (an MLP of residual blocks with FiLM / adaptive
//! layer-norm conditioning), built from [`FlowSpec`]. Training and sampling live in
//! [`crate::train::flow`].

use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{gelu, sigmoid};

/// The flow model's sizes: one spec shared by burn and the engine ([`crate::engine::flow`]).
pub use crate::engine::flow::FlowSpec;


/// Convolutional autoencoder of `[n, S, S]` patches in `[0, 1]`: three stride-2 3×3
/// convolutions (GELU) and a linear map to the latent `[n, L]`; the decoder mirrors it with
/// stride-2 4×4 transposed convolutions and a sigmoid.
#[derive(Module, Debug)]
pub struct PatchAutoencoder<B: Backend> {
    enc: Vec<Conv2d<B>>,
    to_latent: Linear<B>,
    from_latent: Linear<B>,
    dec: Vec<ConvTranspose2d<B>>,
    /// Channels of the innermost feature map.
    inner_channels: usize,
    /// Side of the innermost feature map (`S / 8`).
    inner_px: usize,
}

impl<B: Backend> PatchAutoencoder<B> {
    /// A freshly initialised autoencoder.
    pub fn init(spec: &FlowSpec, device: &B::Device) -> Self {
        let (c, s8) = (spec.channels, spec.patch_px / 8);
        let chans = [1, c, 2 * c, 2 * c];
        let enc = (0..3)
            .map(|i| Conv2dConfig::new([chans[i], chans[i + 1]], [3, 3]).with_stride([2, 2]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device))
            .collect();
        let dec = (0..3)
            .rev()
            .map(|i| ConvTranspose2dConfig::new([chans[i + 1], chans[i]], [4, 4]).with_stride([2, 2]).with_padding([1, 1]).init(device))
            .collect();
        let flat = 2 * c * s8 * s8;
        Self {
            enc,
            to_latent: LinearConfig::new(flat, spec.latent).init(device),
            from_latent: LinearConfig::new(spec.latent, flat).init(device),
            dec,
            inner_channels: 2 * c,
            inner_px: s8,
        }
    }

    /// Latents `[n, L]` of patches `[n, S, S]`.
    pub fn encode(&self, patches: Tensor<B, 3>) -> Tensor<B, 2> {
        let [n, s, _] = patches.dims();
        let mut h = patches.reshape([n, 1, s, s]);
        for conv in &self.enc {
            h = gelu(conv.forward(h));
        }
        self.to_latent.forward(h.reshape([n as i32, -1]))
    }

    /// Patches `[n, S, S]` in `(0, 1)` of latents `[n, L]`.
    pub fn decode(&self, latent: Tensor<B, 2>) -> Tensor<B, 3> {
        let n = latent.dims()[0];
        let mut h = gelu(self.from_latent.forward(latent)).reshape([n, self.inner_channels, self.inner_px, self.inner_px]);
        let last = self.dec.len() - 1;
        for (i, conv) in self.dec.iter().enumerate() {
            h = conv.forward(h);
            if i < last {
                h = gelu(h);
            }
        }
        let s = self.inner_px * 8;
        sigmoid(h).reshape([n, s, s])
    }
}

/// `e_pert = W₂ · GELU(W₁ · [token embedding ‖ PCA(Δg)])`, `[n, P]`.
#[derive(Module, Debug)]
pub struct PertEncoder<B: Backend> {
    token: Embedding<B>,
    fc1: Linear<B>,
    fc2: Linear<B>,
}

impl<B: Backend> PertEncoder<B> {
    fn init(spec: &FlowSpec, device: &B::Device) -> Self {
        Self {
            token: EmbeddingConfig::new(spec.n_transitions, spec.pert_dim).init(device),
            fc1: LinearConfig::new(spec.pert_dim + spec.dg_components, spec.pert_dim).init(device),
            fc2: LinearConfig::new(spec.pert_dim, spec.pert_dim).init(device),
        }
    }

    /// `e_pert` `[n, P]` of transition tokens `[n]` and Δg PCA coordinates `[n, K]`.
    pub fn forward(&self, tokens: Tensor<B, 1, Int>, dg: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = tokens.dims()[0];
        let tok = self.token.forward(tokens.reshape([n, 1])).reshape([n as i32, -1]);
        self.fc2.forward(gelu(self.fc1.forward(Tensor::cat(vec![tok, dg], 1))))
    }
}

/// A residual block with FiLM (adaptive layer-norm) conditioning:
/// `h + W₂ · GELU(W₁ · ((1 + γ) ⊙ LN(h) + β))`, `[γ, β] = W_c · c`.
#[derive(Module, Debug)]
pub struct FilmBlock<B: Backend> {
    norm: LayerNorm<B>,
    film: Linear<B>,
    fc1: Linear<B>,
    fc2: Linear<B>,
}

impl<B: Backend> FilmBlock<B> {
    fn init(hidden: usize, device: &B::Device) -> Self {
        Self {
            norm: LayerNormConfig::new(hidden).init(device),
            film: LinearConfig::new(hidden, 2 * hidden).with_initializer(burn::nn::Initializer::Zeros).init(device),
            fc1: LinearConfig::new(hidden, 2 * hidden).init(device),
            fc2: LinearConfig::new(2 * hidden, hidden).init(device),
        }
    }

    fn forward(&self, h: Tensor<B, 2>, cond: Tensor<B, 2>) -> Tensor<B, 2> {
        let gb = self.film.forward(cond).chunk(2, 1);
        let (gamma, beta) = (gb[0].clone(), gb[1].clone());
        let x = self.norm.forward(h.clone()) * (gamma + 1.0) + beta;
        h + self.fc2.forward(gelu(self.fc1.forward(x)))
    }
}

/// The perturbation encoder and the velocity network `v(ℓ_t, t | e_pert, z_ctrl)`.
#[derive(Module, Debug)]
pub struct VelocityNet<B: Backend> {
    /// `e_pert` from the transition token and Δg.
    pub pert: PertEncoder<B>,
    input: Linear<B>,
    cell_norm: LayerNorm<B>,
    cond: Linear<B>,
    blocks: Vec<FilmBlock<B>>,
    out: Linear<B>,
    /// Width of the time embedding.
    time_dim: usize,
    /// Whether `e_pert` is used (false: the unconditional flow, `e_pert = 0`).
    pub conditional: bool,
}

/// The conditioning inputs of a batch of pairs.
#[derive(Debug, Clone)]
pub struct FlowCondition<B: Backend> {
    /// Transition token of each pair `[n]`.
    pub tokens: Tensor<B, 1, Int>,
    /// PCA coordinates of the pair's Δg `[n, K]`.
    pub dg: Tensor<B, 2>,
    /// The control cell's embedding `[n, Z]`.
    pub cell: Tensor<B, 2>,
}

impl<B: Backend> VelocityNet<B> {
    /// A freshly initialised network (`conditional = false`: `e_pert` is replaced by zeros).
    pub fn init(spec: &FlowSpec, conditional: bool, device: &B::Device) -> Self {
        let h = spec.hidden;
        Self {
            pert: PertEncoder::init(spec, device),
            input: LinearConfig::new(spec.latent, h).init(device),
            cell_norm: LayerNormConfig::new(spec.cell_dim).init(device),
            cond: LinearConfig::new(spec.time_dim + spec.pert_dim + spec.cell_dim, h).init(device),
            blocks: (0..spec.blocks).map(|_| FilmBlock::init(h, device)).collect(),
            out: LinearConfig::new(h, spec.latent).init(device),
            time_dim: spec.time_dim,
            conditional,
        }
    }

    /// Sinusoidal embedding `[n, T]` of times `[n, 1]` in `[0, 1]`.
    fn time_embedding(&self, t: Tensor<B, 2>) -> Tensor<B, 2> {
        let half = self.time_dim / 2;
        let freqs: Vec<f32> = (0..half).map(|k| (1000f32).powf(k as f32 / half.max(1) as f32)).collect();
        let freqs = Tensor::<B, 2>::from_data(TensorData::new(freqs, [1, half]), &t.device());
        let arg = t * freqs;
        Tensor::cat(vec![arg.clone().sin(), arg.cos()], 1)
    }

    /// Velocity `[n, L]` at latents `x_t` `[n, L]` and times `t` `[n, 1]`.
    pub fn forward(&self, x_t: Tensor<B, 2>, t: Tensor<B, 2>, c: &FlowCondition<B>) -> Tensor<B, 2> {
        let e = self.pert.forward(c.tokens.clone(), c.dg.clone());
        let e = if self.conditional { e } else { e.zeros_like() };
        let cond = gelu(self.cond.forward(Tensor::cat(vec![self.time_embedding(t), e, self.cell_norm.forward(c.cell.clone())], 1)));
        let mut h = self.input.forward(x_t);
        for b in &self.blocks {
            h = b.forward(h, cond.clone());
        }
        self.out.forward(h)
    }
}
