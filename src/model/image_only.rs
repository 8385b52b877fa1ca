//! The image-only (CUCA-style) classifier: cell types from the nucleus-centred DAPI patch alone.
//!
//! ```text
//! patch [batch, S, S] --Classifier (spec Architecture::ImageOnly)--> logits [batch, classes]
//!     = ViT → pooled centre tokens → projection → token [batch, 1, d_model]
//!       → n_layers encoder layers (default 0) → final norm → head
//! token --morph_projection--> z_image [batch, d_projection] (unit norm; training only)
//! genes [batch, G] --gene_projection--> z_gene [batch, d_projection] (unit norm; training only)
//! ```
//!
//! The inference part is the shared [`Classifier`] built from the image-only spec (the
//! morphology token alone), so it exports to fp32 / int8 engine files through
//! [`crate::model::convert`] like every classifier and runs on the CPU and WGSL engines.
//! Training ([`crate::train::image_only`]) aligns `z_image` to `z_gene` by bidirectional
//! InfoNCE (as [`super::ContrastiveAligner`]), distils the expression embedding into the image
//! branch (cosine distance to the stop-gradient `z_gene`) and fits the head by cross-entropy on
//! the gene-derived reference labels, jointly. At inference only the classifier runs:
//! [`ImageOnlyModel::forward`] reads patches and nothing else.

use burn::prelude::*;

use super::classifier::{CellBatch, Classifier, ClassifierOptions};
use super::contrastive::{info_nce_loss, l2_normalise, ProjectionNet, SharedSpaceConfig};
use super::encoders::MorphologyEncoderConfig;
use crate::engine::{Architecture, ClassifierConfig, TokenSources};

/// Configuration of an [`ImageOnlyModel`].
#[derive(Config, Debug)]
pub struct ImageOnlyConfig {
    /// The patch ViT (its `d_model` is the token width the head reads; its dropout and
    /// LayerNorm epsilon are the classifier's).
    pub morphology: MorphologyEncoderConfig,
    /// Output classes.
    pub n_classes: usize,
    /// Genes of the expression encoder's input (log-normalised counts; training only).
    pub n_genes: usize,
    /// The aligned space (as the contrastive aligner's) and the InfoNCE temperature.
    #[config(default = "SharedSpaceConfig::new()")]
    pub space: SharedSpaceConfig,
    /// Encoder layers over the single morphology token (0: the head reads the final-normed
    /// token).
    #[config(default = 0)]
    pub n_layers: usize,
    /// Pixel size the patches are cut at, µm/px (recorded in the spec and model files).
    #[config(default = 0.75)]
    pub um_per_px: f64,
}

impl ImageOnlyConfig {
    /// The classifier's architecture spec ([`Architecture::ImageOnly`]): width `d_model`,
    /// the ViT's heads and feed-forward width for any encoder layers.
    pub fn spec(&self) -> ClassifierConfig {
        let m = &self.morphology;
        let base = ClassifierConfig {
            d_model: m.d_model,
            n_heads: if m.n_heads > 0 && m.d_model.is_multiple_of(m.n_heads) { m.n_heads } else { 1 },
            d_ff: m.d_ff,
            n_layers: self.n_layers,
            layer_norm_eps: m.layer_norm_eps,
            ..ClassifierConfig::new(0, self.n_classes)
        };
        let sources = TokenSources { morphology: m.to_spec(self.um_per_px), ..Default::default() };
        base.for_architecture(Architecture::ImageOnly, &sources)
    }

    /// Why this configuration cannot be built, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        self.morphology.check()?;
        self.spec().validate().map_err(|e| e.to_string())?;
        if self.n_classes < 2 || self.n_genes == 0 {
            return Err(format!(
                "image-only model needs ≥ 2 classes (got {}) and ≥ 1 gene (got {})",
                self.n_classes, self.n_genes
            ));
        }
        self.space.check().map_err(|e| format!("image-only model: {e}"))
    }

    /// Build the model on `device`; a configuration [`Self::check`] rejects is returned as
    /// its message.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<ImageOnlyModel<B>, String> {
        self.check()?;
        let classifier = ClassifierOptions::new(self.spec())
            .with_dropout(self.morphology.dropout)
            .init(device)
            .map_err(|e| e.to_string())?;
        Ok(ImageOnlyModel {
            classifier,
            morph_projection: self.space.projection(self.morphology.d_model, device),
            gene_projection: self.space.projection(self.n_genes, device),
            temperature: self.space.temperature,
        })
    }
}

/// The image-only classifier and its training-time expression encoder (see the module docs).
#[derive(Module, Debug)]
pub struct ImageOnlyModel<B: Backend> {
    /// The inference model: the shared classifier with the image-only spec (ViT + head).
    pub classifier: Classifier<B>,
    /// Morphology token → shared space (training only).
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

/// A batch holding only patches `[batch, S, S]`.
fn patch_batch<B: Backend>(patches: Tensor<B, 3>) -> CellBatch<B> {
    CellBatch { genes: None, gene_embedding: None, patches: Some(patches), morph_embedding: None, centroids_um: None }
}

impl<B: Backend> ImageOnlyModel<B> {
    /// The morphology token `[batch, 1, d_model]` of patches `[batch, S, S]`.
    fn token(&self, patches: Tensor<B, 3>) -> Tensor<B, 3> {
        self.classifier
            .morphology
            .as_ref()
            .expect("an image-only classifier has a morphology token by construction")
            .forward(&patch_batch(patches))
    }

    /// The morphology token `[batch, d_model]` of patches `[batch, S, S]` (what the
    /// projection into the shared space reads).
    pub fn features(&self, patches: Tensor<B, 3>) -> Tensor<B, 2> {
        let token = self.token(patches);
        let [b, _, d] = token.dims();
        token.reshape([b, d])
    }

    /// Logits `[batch, classes]` from patches `[batch, S, S]` (intensities in `[0, 1]`): the
    /// classifier only.
    pub fn forward(&self, patches: Tensor<B, 3>) -> Tensor<B, 2> {
        self.classifier.forward(&patch_batch(patches))
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
        let token = self.token(patches);
        let [b, _, d] = token.dims();
        let logits = self.classifier.core.forward(token.clone(), None);
        let features = token.reshape([b, d]);
        let [_, c] = logits.dims();
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
