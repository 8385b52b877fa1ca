//! The image-only (CUCA-style) classifier: cell types from the nucleus-centred DAPI patch alone.
//!
//! ```text
//! patch [batch, S, S] --MorphologyEncoder (ViT)--> features [batch, d_model] --head--> logits [batch, classes]
//!                                             \--morph_projection--> z_image [batch, d_projection] (unit norm)
//! genes [batch, G] --gene_projection--> z_gene [batch, d_projection] (unit norm; training only)
//! ```
//!
//! Training ([`crate::train::image_only`]) aligns `z_image` to `z_gene` by bidirectional
//! InfoNCE (as [`super::ContrastiveAligner`]), distils the expression embedding into the image
//! branch (cosine distance to the stop-gradient `z_gene`) and fits the head by cross-entropy on
//! the gene-derived reference labels, jointly. At inference only the image branch (ViT +
//! head) runs: [`ImageOnlyModel::forward`] reads patches and nothing else.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::contrastive::{info_nce_loss, l2_normalise, ProjectionNet, ProjectionNetConfig};
use super::encoders::{MorphologyEncoder, MorphologyEncoderConfig};

/// Configuration of an [`ImageOnlyModel`].
#[derive(Config, Debug)]
pub struct ImageOnlyConfig {
    /// The patch ViT (its `d_model` is the feature width the head reads).
    pub morphology: MorphologyEncoderConfig,
    /// Output classes.
    pub n_classes: usize,
    /// Genes of the expression encoder's input (log-normalised counts).
    pub n_genes: usize,
    /// Width of the shared (aligned) space.
    #[config(default = 128)]
    pub d_projection: usize,
    /// Hidden width of both projection nets.
    #[config(default = 256)]
    pub d_hidden: usize,
    /// InfoNCE temperature τ.
    #[config(default = 0.1)]
    pub temperature: f64,
}

impl ImageOnlyConfig {
    /// Why this configuration cannot be built, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        self.morphology.check()?;
        if self.n_classes < 2 || self.n_genes == 0 || self.d_projection == 0 || self.d_hidden == 0 {
            return Err(format!(
                "image-only model needs ≥ 2 classes (got {}), ≥ 1 gene (got {}) and positive projection \
                 widths (got {} and {})",
                self.n_classes, self.n_genes, self.d_projection, self.d_hidden
            ));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(format!("InfoNCE temperature {} must be finite and > 0", self.temperature));
        }
        Ok(())
    }

    /// Build the model on `device`; a configuration [`Self::check`] rejects is returned as
    /// its message.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<ImageOnlyModel<B>, String> {
        self.check()?;
        let proj = |d_input| {
            ProjectionNetConfig::new(d_input)
                .with_d_hidden(self.d_hidden)
                .with_d_output(self.d_projection)
                .init(device)
        };
        Ok(ImageOnlyModel {
            vit: self.morphology.init(device),
            head: LinearConfig::new(self.morphology.d_model, self.n_classes).init(device),
            morph_projection: proj(self.morphology.d_model),
            gene_projection: proj(self.n_genes),
            temperature: self.temperature,
        })
    }
}

/// The image-only classifier and its training-time expression encoder (see the module docs).
#[derive(Module, Debug)]
pub struct ImageOnlyModel<B: Backend> {
    /// The patch ViT (MEB).
    pub vit: MorphologyEncoder<B>,
    /// Classification head `[d_model → classes]`.
    pub head: Linear<B>,
    /// Image features → shared space (training only).
    pub morph_projection: ProjectionNet<B>,
    /// Expression → shared space (training only; the teacher of the distillation).
    pub gene_projection: ProjectionNet<B>,
    /// InfoNCE temperature.
    pub temperature: f64,
}

/// The three training losses of one batch (each a 1-element tensor).
#[derive(Debug, Clone)]
pub struct ImageOnlyLosses<B: Backend> {
    /// Cross-entropy of the head against the reference labels (class-weighted by the caller).
    pub ce: Tensor<B, 1>,
    /// Bidirectional InfoNCE between image and expression projections.
    pub info_nce: Tensor<B, 1>,
    /// Distillation: mean cosine distance `1 − ⟨z_image, sg(z_gene)⟩`.
    pub distill: Tensor<B, 1>,
}

impl<B: Backend> ImageOnlyModel<B> {
    /// Pooled ViT features `[batch, d_model]` of patches `[batch, S, S]`.
    pub fn features(&self, patches: Tensor<B, 3>) -> Tensor<B, 2> {
        let token = self.vit.forward(patches);
        let [b, _, d] = token.dims();
        token.reshape([b, d])
    }

    /// Logits `[batch, classes]` from patches `[batch, S, S]` (intensities in `[0, 1]`): the
    /// image branch only.
    pub fn forward(&self, patches: Tensor<B, 3>) -> Tensor<B, 2> {
        self.head.forward(self.features(patches))
    }

    /// Logits `[batch, classes]` and the losses of a training batch: `patches [batch, S, S]`,
    /// `genes [batch, G]`, `labels [batch]`, per-class loss weights `[classes]` (`None` =
    /// uniform). InfoNCE needs at least 2 cells.
    pub fn losses(
        &self,
        patches: Tensor<B, 3>,
        genes: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
        class_weights: Option<Tensor<B, 1>>,
    ) -> (Tensor<B, 2>, ImageOnlyLosses<B>) {
        let features = self.features(patches);
        let logits = self.head.forward(features.clone());
        let [b, c] = logits.dims();
        let log_p = burn::tensor::activation::log_softmax(logits.clone(), 1);
        let one_hot = labels.clone().one_hot::<2>(c).float();
        let per_cell = -(log_p * one_hot).sum_dim(1).reshape([b]);
        let ce = match class_weights {
            Some(w) => {
                let wc = w.select(0, labels);
                (per_cell * wc.clone()).sum() / wc.sum()
            }
            None => per_cell.mean(),
        };
        let z_image = l2_normalise(self.morph_projection.forward(features));
        let z_gene = l2_normalise(self.gene_projection.forward(genes));
        let info_nce = info_nce_loss(z_gene.clone(), z_image.clone(), self.temperature);
        let distill = (z_image * z_gene.detach()).sum_dim(1).mean().neg().add_scalar(1.0);
        (logits, ImageOnlyLosses { ce, info_nce, distill: distill.reshape([1]) })
    }
}
