//! Pre-norm transformer encoder.
//!
//! Per layer, on tokens `h: [batch, tokens, d_model]`:
//! ```text
//! a = LayerNorm1(h);  h = h + O(MultiHeadSelfAttention(Q(a), K(a), V(a)))
//! a = LayerNorm2(h);  h = h + FC2(GELU(FC1(a)))
//! ```
//! and a final LayerNorm after the last layer. The browser engine (`crate::gpu`) and the CPU
//! reference (`crate::engine::cpu`) compute exactly this; parity tests hold them together.

use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, softmax};

/// Multi-head self-attention with separate Q, K, V and output projections.
#[derive(Module, Debug)]
pub struct MultiHeadSelfAttention<B: Backend> {
    /// Query projection `[d_model → d_model]`.
    pub q: Linear<B>,
    /// Key projection `[d_model → d_model]`.
    pub k: Linear<B>,
    /// Value projection `[d_model → d_model]`.
    pub v: Linear<B>,
    /// Output projection `[d_model → d_model]`.
    pub o: Linear<B>,
    /// Attention-probability dropout (training only).
    pub dropout: Dropout,
    /// Number of heads; `d_model` must be divisible by it.
    pub n_heads: usize,
}

impl<B: Backend> MultiHeadSelfAttention<B> {
    /// `x: [batch, tokens, d_model]`, optional additive `bias: [batch, heads, tokens, tokens]`
    /// → `[batch, tokens, d_model]`.
    pub fn forward(&self, x: Tensor<B, 3>, bias: Option<Tensor<B, 4>>) -> Tensor<B, 3> {
        let [batch, tokens, d_model] = x.dims();
        let heads = self.n_heads;
        let head_dim = d_model / heads;
        let split = |t: Tensor<B, 3>| t.reshape([batch, tokens, heads, head_dim]).swap_dims(1, 2);
        let q = split(self.q.forward(x.clone()));
        let k = split(self.k.forward(x.clone()));
        let v = split(self.v.forward(x));
        let mut scores = q.matmul(k.swap_dims(2, 3)).div_scalar((head_dim as f64).sqrt());
        if let Some(bias) = bias {
            scores = scores + bias;
        }
        let probs = self.dropout.forward(softmax(scores, 3));
        let out = probs.matmul(v).swap_dims(1, 2).reshape([batch, tokens, d_model]);
        self.o.forward(out)
    }
}

/// Configuration of one pre-norm encoder layer.
#[derive(Config, Debug)]
pub struct EncoderLayerConfig {
    /// Token width.
    pub d_model: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// Hidden width of the feed-forward block.
    pub d_ff: usize,
    /// Dropout on attention probabilities and residual branches.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// LayerNorm epsilon.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

impl EncoderLayerConfig {
    /// Build the layer on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> EncoderLayer<B> {
        assert!(
            self.d_model % self.n_heads == 0,
            "d_model ({}) must be divisible by n_heads ({})",
            self.d_model,
            self.n_heads
        );
        let lin = |i, o| LinearConfig::new(i, o).init(device);
        let norm = || LayerNormConfig::new(self.d_model).with_epsilon(self.layer_norm_eps).init(device);
        EncoderLayer {
            norm1: norm(),
            attn: MultiHeadSelfAttention {
                q: lin(self.d_model, self.d_model),
                k: lin(self.d_model, self.d_model),
                v: lin(self.d_model, self.d_model),
                o: lin(self.d_model, self.d_model),
                dropout: DropoutConfig::new(self.dropout).init(),
                n_heads: self.n_heads,
            },
            norm2: norm(),
            fc1: lin(self.d_model, self.d_ff),
            fc2: lin(self.d_ff, self.d_model),
            dropout: DropoutConfig::new(self.dropout).init(),
        }
    }
}

/// One pre-norm encoder layer (see the module docs for the exact computation).
#[derive(Module, Debug)]
pub struct EncoderLayer<B: Backend> {
    /// LayerNorm before attention.
    pub norm1: LayerNorm<B>,
    /// Self-attention block.
    pub attn: MultiHeadSelfAttention<B>,
    /// LayerNorm before the feed-forward block.
    pub norm2: LayerNorm<B>,
    /// Feed-forward expansion `[d_model → d_ff]`.
    pub fc1: Linear<B>,
    /// Feed-forward projection `[d_ff → d_model]`.
    pub fc2: Linear<B>,
    /// Residual-branch dropout (training only).
    pub dropout: Dropout,
}

impl<B: Backend> EncoderLayer<B> {
    /// `h: [batch, tokens, d_model]` → `[batch, tokens, d_model]`.
    pub fn forward(&self, h: Tensor<B, 3>, bias: Option<Tensor<B, 4>>) -> Tensor<B, 3> {
        let a = self.attn.forward(self.norm1.forward(h.clone()), bias);
        let h = h + self.dropout.forward(a);
        let f = self.fc2.forward(gelu(self.fc1.forward(self.norm2.forward(h.clone()))));
        h + self.dropout.forward(f)
    }
}

/// Configuration of a stack of encoder layers with a final LayerNorm.
#[derive(Config, Debug)]
pub struct TransformerEncoderConfig {
    /// Layer configuration shared by all layers.
    pub layer: EncoderLayerConfig,
    /// Number of layers (CellSymphony uses 6).
    #[config(default = 6)]
    pub n_layers: usize,
}

impl TransformerEncoderConfig {
    /// Build the encoder on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> TransformerEncoder<B> {
        TransformerEncoder {
            layers: (0..self.n_layers).map(|_| self.layer.init(device)).collect(),
            final_norm: LayerNormConfig::new(self.layer.d_model)
                .with_epsilon(self.layer.layer_norm_eps)
                .init(device),
        }
    }
}

/// A stack of pre-norm encoder layers followed by a final LayerNorm.
#[derive(Module, Debug)]
pub struct TransformerEncoder<B: Backend> {
    /// The layers, applied in order.
    pub layers: Vec<EncoderLayer<B>>,
    /// LayerNorm applied to every token after the last layer.
    pub final_norm: LayerNorm<B>,
}

impl<B: Backend> TransformerEncoder<B> {
    /// `h: [batch, tokens, d_model]` → `[batch, tokens, d_model]`.
    pub fn forward(&self, mut h: Tensor<B, 3>, bias: Option<Tensor<B, 4>>) -> Tensor<B, 3> {
        for layer in &self.layers {
            h = layer.forward(h, bias.clone());
        }
        self.final_norm.forward(h)
    }
}
