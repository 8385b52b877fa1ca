//! CellSymphony's contrastive alignment of expression and morphology.
//!
//! Two projection networks map each cell's gene expression and its nucleus-centred patch to
//! the same 128-d unit sphere; a bidirectional InfoNCE loss pulls a cell's two projections
//! together and pushes apart those of other cells in the batch (CLIP-style). The paper
//! projects frozen foundation-model embeddings (scGPT, UNI); here the morphology side is our
//! patch ViT ([`MorphologyEncoder`]) trained end to end with its projection, and the gene side
//! an MLP over log-normalised counts — or, when precomputed embeddings are given, MLPs over
//! those.

use burn::nn::{Gelu, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use super::encoders::{MorphologyEncoder, MorphologyEncoderConfig};

/// Configuration of a [`ProjectionNet`]: `Linear → GELU → Linear → LayerNorm`.
#[derive(Config, Debug)]
pub struct ProjectionNetConfig {
    /// Input width.
    pub d_input: usize,
    /// Hidden width.
    #[config(default = 256)]
    pub d_hidden: usize,
    /// Output width (the shared space).
    #[config(default = 128)]
    pub d_output: usize,
}

impl ProjectionNetConfig {
    /// Builds the network on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ProjectionNet<B> {
        ProjectionNet {
            fc1: LinearConfig::new(self.d_input, self.d_hidden).init(device),
            act: Gelu::new(),
            fc2: LinearConfig::new(self.d_hidden, self.d_output).init(device),
            norm: LayerNormConfig::new(self.d_output).init(device),
        }
    }
}

/// A two-layer projection head `[batch, d_input] → [batch, d_output]`.
#[derive(Module, Debug)]
pub struct ProjectionNet<B: Backend> {
    /// First layer `[d_input → d_hidden]`.
    pub fc1: Linear<B>,
    /// Activation.
    pub act: Gelu,
    /// Second layer `[d_hidden → d_output]`.
    pub fc2: Linear<B>,
    /// Output normalisation.
    pub norm: LayerNorm<B>,
}

impl<B: Backend> ProjectionNet<B> {
    /// `[batch, d_input] → [batch, d_output]` (not yet unit-normalised).
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.norm
            .forward(self.fc2.forward(self.act.forward(self.fc1.forward(x))))
    }
}

/// The shared (aligned) space of two [`ProjectionNet`]s and its InfoNCE temperature: one
/// struct for the contrastive aligner and the image-only model.
#[derive(Config, Debug)]
pub struct SharedSpaceConfig {
    /// Shared space width.
    #[config(default = 128)]
    pub d_projection: usize,
    /// Hidden width of both projection nets.
    #[config(default = 256)]
    pub d_hidden: usize,
    /// InfoNCE temperature τ (logits are cosine similarities / τ).
    #[config(default = 0.1)]
    pub temperature: f64,
}

impl SharedSpaceConfig {
    /// A projection net `[batch, d_input] → [batch, d_projection]` into this space.
    pub fn projection<B: Backend>(&self, d_input: usize, device: &B::Device) -> ProjectionNet<B> {
        ProjectionNetConfig::new(d_input)
            .with_d_hidden(self.d_hidden)
            .with_d_output(self.d_projection)
            .init(device)
    }

    /// Why this space cannot be built, if it cannot: zero widths or a temperature that is not
    /// finite and positive.
    pub fn check(&self) -> Result<(), String> {
        if self.d_projection == 0 || self.d_hidden == 0 {
            return Err(format!("projection widths must be positive (got {} and {})", self.d_projection, self.d_hidden));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(format!("InfoNCE temperature {} must be finite and > 0", self.temperature));
        }
        Ok(())
    }
}

/// Configuration of a [`ContrastiveAligner`].
#[derive(Config, Debug)]
pub struct ContrastiveAlignerConfig {
    /// Gene-side input width: genes of the panel (log-normalised counts) or the width of a
    /// precomputed gene embedding.
    pub d_gene_input: usize,
    /// The patch ViT; `None` when the morphology side is a precomputed embedding.
    pub morphology: Option<MorphologyEncoderConfig>,
    /// Width of a precomputed morphology embedding (used when `morphology` is `None`).
    #[config(default = 0)]
    pub d_morph_input: usize,
    /// The shared space and temperature.
    #[config(default = "SharedSpaceConfig::new()")]
    pub space: SharedSpaceConfig,
}

impl ContrastiveAlignerConfig {
    /// Builds the aligner on `device`.
    ///
    /// # Panics
    /// If neither `morphology` nor a non-zero `d_morph_input` is given.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ContrastiveAligner<B> {
        let (morphology, d_morph) = match &self.morphology {
            Some(m) => (Some(m.init(device)), m.d_model),
            None => {
                assert!(self.d_morph_input > 0, "a morphology encoder or d_morph_input is required");
                (None, self.d_morph_input)
            }
        };
        ContrastiveAligner {
            gene_projection: self.space.projection(self.d_gene_input, device),
            morphology,
            morph_projection: self.space.projection(d_morph, device),
            temperature: self.space.temperature,
        }
    }
}

/// Gene and morphology projection networks into one shared space.
#[derive(Module, Debug)]
pub struct ContrastiveAligner<B: Backend> {
    /// Expression → shared space.
    pub gene_projection: ProjectionNet<B>,
    /// The patch ViT (`None` for precomputed morphology embeddings).
    pub morphology: Option<MorphologyEncoder<B>>,
    /// Morphology embedding → shared space.
    pub morph_projection: ProjectionNet<B>,
    /// InfoNCE temperature.
    pub temperature: f64,
}

/// Rows scaled to unit L2 norm.
pub(crate) fn l2_normalise<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-6);
    x / norm
}

impl<B: Backend> ContrastiveAligner<B> {
    /// Unit-norm gene projections `[batch, d_projection]` of gene inputs `[batch, d_gene_input]`.
    pub fn embed_genes(&self, genes: Tensor<B, 2>) -> Tensor<B, 2> {
        l2_normalise(self.gene_projection.forward(genes))
    }

    /// Unit-norm morphology projections `[batch, d_projection]`: `input` is patches
    /// `[batch, S, S]` flattened to `[batch, S·S]` when the aligner has a ViT, else a
    /// precomputed embedding `[batch, d_morph_input]`.
    pub fn embed_morphology(&self, input: Tensor<B, 2>) -> Tensor<B, 2> {
        let features = match &self.morphology {
            Some(vit) => {
                let [batch, pixels] = input.dims();
                let side = vit.image_size;
                debug_assert_eq!(pixels, side * side);
                let token = vit.forward(input.reshape([batch, side, side]));
                let [b, _, d] = token.dims();
                token.reshape([b, d])
            }
            None => input,
        };
        l2_normalise(self.morph_projection.forward(features))
    }

    /// Bidirectional InfoNCE of paired projections `[batch, d]`: the mean of the
    /// gene→morphology and morphology→gene cross-entropies over similarity logits / τ, where
    /// row `i` of each matches row `i` of the other.
    pub fn info_nce(&self, z_gene: Tensor<B, 2>, z_morph: Tensor<B, 2>) -> Tensor<B, 1> {
        info_nce_loss(z_gene, z_morph, self.temperature)
    }
}

/// Bidirectional InfoNCE loss (see [`ContrastiveAligner::info_nce`]); returns a 1-element
/// tensor.
pub fn info_nce_loss<B: Backend>(
    z_a: Tensor<B, 2>,
    z_b: Tensor<B, 2>,
    temperature: f64,
) -> Tensor<B, 1> {
    let [n, _] = z_a.dims();
    let logits = z_a.matmul(z_b.transpose()) / temperature;
    let eye = Tensor::<B, 2>::eye(n, &logits.device());
    let a_to_b = -(log_softmax(logits.clone(), 1) * eye.clone()).sum() / n as f64;
    let b_to_a = -(log_softmax(logits, 0) * eye).sum() / n as f64;
    (a_to_b + b_to_a) / 2.0
}
