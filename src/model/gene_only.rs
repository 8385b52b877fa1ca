//! CellSymphony's unimodal classifier: gene expression only.
//!
//! ```text
//! counts [batch, genes] --log1p(cp10k)--> x [batch, genes]
//! gene embedding (GEB):  Linear(genes → gene_tokens·d_model), reshaped to [batch, gene_tokens, d_model]
//!                        + learned token-type embedding [gene_tokens, d_model]
//! 6-layer pre-norm transformer encoder → mean pool over tokens → Linear head → logits [batch, classes]
//! ```
//! The paper projects one gene embedding into one token; `gene_tokens = 1` is exactly that.
//! With more tokens (default 4) the projection is split into several "gene-program" tokens so
//! attention has something to mix; the choice is recorded in the model file's metadata.

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::encoder::{EncoderLayerConfig, TransformerEncoder, TransformerEncoderConfig};
use crate::engine::ClassifierConfig;

/// Configuration of [`GeneOnlyClassifier`].
#[derive(Config, Debug)]
pub struct GeneOnlyClassifierConfig {
    /// Genes in the panel (input width).
    pub n_genes: usize,
    /// Output classes.
    pub n_classes: usize,
    /// Shared token width.
    #[config(default = 64)]
    pub d_model: usize,
    /// Attention heads.
    #[config(default = 4)]
    pub n_heads: usize,
    /// Feed-forward hidden width.
    #[config(default = 128)]
    pub d_ff: usize,
    /// Encoder layers (the paper uses 6).
    #[config(default = 6)]
    pub n_layers: usize,
    /// Tokens the gene embedding is split into (1 = the paper's single gene token).
    #[config(default = 4)]
    pub gene_tokens: usize,
    /// Dropout used while training.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// LayerNorm epsilon.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

impl GeneOnlyClassifierConfig {
    /// The architecture part of the config, as stored in model files.
    pub fn to_engine_config(&self) -> ClassifierConfig {
        ClassifierConfig {
            n_genes: self.n_genes,
            n_classes: self.n_classes,
            d_model: self.d_model,
            n_heads: self.n_heads,
            d_ff: self.d_ff,
            n_layers: self.n_layers,
            gene_tokens: self.gene_tokens,
            layer_norm_eps: self.layer_norm_eps,
            spatial: None,
            morphology: None,
            attention_bias: false,
        }
    }

    /// Rebuild a config from a model file's architecture block (dropout as given).
    pub fn from_engine_config(c: &ClassifierConfig, dropout: f64) -> Self {
        Self {
            n_genes: c.n_genes,
            n_classes: c.n_classes,
            d_model: c.d_model,
            n_heads: c.n_heads,
            d_ff: c.d_ff,
            n_layers: c.n_layers,
            gene_tokens: c.gene_tokens,
            dropout,
            layer_norm_eps: c.layer_norm_eps,
        }
    }

    /// Build the classifier on `device` with freshly initialised weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> GeneOnlyClassifier<B> {
        let layer = EncoderLayerConfig::new(self.d_model, self.n_heads, self.d_ff)
            .with_dropout(self.dropout)
            .with_layer_norm_eps(self.layer_norm_eps);
        GeneOnlyClassifier {
            gene_embedding: LinearConfig::new(self.n_genes, self.gene_tokens * self.d_model)
                .init(device),
            token_type: Param::from_tensor(Tensor::random(
                [self.gene_tokens, self.d_model],
                burn::tensor::Distribution::Normal(0.0, 0.02),
                device,
            )),
            encoder: TransformerEncoderConfig::new(layer)
                .with_n_layers(self.n_layers)
                .init(device),
            head: LinearConfig::new(self.d_model, self.n_classes).init(device),
            gene_tokens: self.gene_tokens,
            d_model: self.d_model,
        }
    }
}

/// Gene-only transformer classifier (see the module docs).
#[derive(Module, Debug)]
pub struct GeneOnlyClassifier<B: Backend> {
    /// Gene expression embedding `[genes → gene_tokens·d_model]`.
    pub gene_embedding: Linear<B>,
    /// Learned token-type embedding `[gene_tokens, d_model]`.
    pub token_type: Param<Tensor<B, 2>>,
    /// The transformer encoder.
    pub encoder: TransformerEncoder<B>,
    /// Classification head `[d_model → classes]`.
    pub head: Linear<B>,
    /// Tokens produced by the gene embedding.
    pub gene_tokens: usize,
    /// Token width.
    pub d_model: usize,
}

impl<B: Backend> GeneOnlyClassifier<B> {
    /// `x: [batch, genes]` (already log1p-cp10k normalised) → logits `[batch, classes]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let [batch, _] = x.dims();
        let tokens = self
            .gene_embedding
            .forward(x)
            .reshape([batch, self.gene_tokens, self.d_model])
            + self.token_type.val().unsqueeze_dim::<3>(0);
        let h = self.encoder.forward(tokens, None);
        let pooled = h.mean_dim(1).reshape([batch, self.d_model]);
        self.head.forward(pooled)
    }
}
