//! CellSymphony's classifiers as ONE burn module built from the shared architecture spec
//! ([`ClassifierConfig`], in [`crate::engine::spec`]).
//!
//! Every classifier projects its inputs to tokens of one shared width `d_model`, runs the
//! N-layer pre-norm encoder ([`super::encoder`]), mean-pools the tokens and applies a linear
//! head. The spec says which token sources exist; each is an `Option` part here:
//!
//! | part | spec | tokens |
//! |---|---|---|
//! | [`GeneSource`] | always: counts ([`GeneEncoder`]), one token per gene (`gene_token_panel`, [`GeneTokenEncoder`]) or `gene_embedding_dim` ([`EmbeddingEncoder`]) | `gene_tokens` |
//! | [`MorphologySource`] | `morphology` (patch ViT, [`MorphologyEncoder`]) or `morph_embedding_dim` | 1 |
//! | `spatial` ([`SpatialEncoder`]) | `spatial` | 1 |
//! | `modality` `[modalities, d_model]` | any token besides genes | added per modality |
//! | `relative_bias` `[buckets, heads]` | `attention_bias` | added to every layer's scores |
//! | `linear_path` `[genes → classes]` | `linear_path` | none: its logits are added to the head's |
//!
//! Token order is genes, morphology, centroid — the engines' order. The gene-only
//! architecture has no modality table, so it computes exactly the paper's unimodal model.
//! Parameters are created in the order genes, morphology, spatial, modality, bias, encoder,
//! head, so a seed gives the same initial weights as the four separate modules did before.

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::encoder::{EncoderLayerConfig, TransformerEncoder, TransformerEncoderConfig};
use super::encoders::{
    token_table, EmbeddingEncoder, EmbeddingEncoderConfig, GeneEncoder, GeneEncoderConfig, GeneTokenEncoder,
    MorphologyEncoder, MorphologyEncoderConfig, SpatialEncoder, SpatialEncoderConfig,
};
use crate::engine::{ClassifierConfig, ModelFileError};

/// One batch of model inputs; only the fields a model's [`ModelInputs`] names need be set.
#[derive(Debug, Clone)]
pub struct CellBatch<B: Backend> {
    /// Normalised expression `[batch, genes]` (the transform the model file records).
    pub genes: Option<Tensor<B, 2>>,
    /// Precomputed gene embedding `[batch, dim]`.
    pub gene_embedding: Option<Tensor<B, 2>>,
    /// Nucleus-centred DAPI patches `[batch, size, size]`, intensities in `[0, 1]`.
    pub patches: Option<Tensor<B, 3>>,
    /// Precomputed image embedding `[batch, dim]`.
    pub morph_embedding: Option<Tensor<B, 2>>,
    /// Cell centroids `[batch, 2]` in slide µm.
    pub centroids_um: Option<Tensor<B, 2>>,
}

impl<B: Backend> CellBatch<B> {
    /// A batch with only gene expression `[batch, genes]`.
    pub fn genes(x: Tensor<B, 2>) -> Self {
        Self {
            genes: Some(x),
            gene_embedding: None,
            patches: None,
            morph_embedding: None,
            centroids_um: None,
        }
    }
}

/// Which inputs a classifier reads (the trainer checks they are present before training).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelInputs {
    /// Normalised counts over this many genes.
    pub genes: Option<usize>,
    /// Precomputed gene embedding of this width.
    pub gene_embedding: Option<usize>,
    /// Patches of this side in pixels.
    pub patches: Option<usize>,
    /// Precomputed image embedding of this width.
    pub morph_embedding: Option<usize>,
    /// Centroids.
    pub centroids: bool,
}

impl ModelInputs {
    /// What a classifier with this spec reads.
    pub fn of(spec: &ClassifierConfig) -> Self {
        Self {
            genes: (spec.gene_embedding_dim.is_none() && !spec.is_image_only()).then_some(spec.n_genes),
            gene_embedding: spec.gene_embedding_dim,
            patches: spec.morphology.as_ref().map(|m| m.image_size),
            morph_embedding: spec.morph_embedding_dim,
            centroids: spec.spatial.is_some(),
        }
    }
}

/// Gene tokens from counts (summary tokens or one token per gene) or from a precomputed
/// embedding (exactly one is set).
#[derive(Module, Debug)]
pub struct GeneSource<B: Backend> {
    /// GEB over normalised counts.
    pub counts: Option<GeneEncoder<B>>,
    /// Encoder of a precomputed gene embedding.
    pub embedding: Option<EmbeddingEncoder<B>>,
    /// One token per gene (`spec.gene_token_panel`).
    pub tokens: Option<GeneTokenEncoder<B>>,
}

impl<B: Backend> GeneSource<B> {
    fn init(spec: &ClassifierConfig, device: &B::Device) -> Self {
        if spec.is_image_only() {
            return Self { counts: None, embedding: None, tokens: None };
        }
        if let Some(p) = &spec.gene_token_panel {
            return Self { counts: None, embedding: None, tokens: Some(GeneTokenEncoder::new(&p.genes, spec.d_model, device)) };
        }
        match spec.gene_embedding_dim {
            Some(dim) => Self {
                counts: None,
                tokens: None,
                embedding: Some(
                    EmbeddingEncoderConfig::new(dim, spec.d_model)
                        .with_tokens(spec.gene_tokens)
                        .with_layer_norm_eps(spec.layer_norm_eps)
                        .init(device),
                ),
            },
            None => Self {
                counts: Some(
                    GeneEncoderConfig::new(spec.n_genes, spec.d_model)
                        .with_tokens(spec.gene_tokens)
                        .init(device),
                ),
                embedding: None,
                tokens: None,
            },
        }
    }

    /// `[batch, gene_tokens, d_model]`; `None` for the image-only classifier (no gene
    /// encoder).
    pub fn forward(&self, batch: &CellBatch<B>) -> Option<Tensor<B, 3>> {
        if let Some(enc) = &self.tokens {
            return Some(enc.forward(batch.genes.clone().expect("model needs `genes`")));
        }
        match (&self.counts, &self.embedding) {
            (Some(enc), _) => Some(enc.forward(batch.genes.clone().expect("model needs `genes`"))),
            (None, Some(enc)) => Some(enc.forward(
                batch
                    .gene_embedding
                    .clone()
                    .expect("model needs `gene_embedding`"),
            )),
            (None, None) => None,
        }
    }
}

/// The morphology token from the patch ViT or from a precomputed image embedding (exactly one
/// is set).
#[derive(Module, Debug)]
pub struct MorphologySource<B: Backend> {
    /// ViT over patches.
    pub vit: Option<MorphologyEncoder<B>>,
    /// Encoder of a precomputed image embedding.
    pub embedding: Option<EmbeddingEncoder<B>>,
}

impl<B: Backend> MorphologySource<B> {
    fn init(spec: &ClassifierConfig, dropout: f64, device: &B::Device) -> Option<Self> {
        if let Some(dim) = spec.morph_embedding_dim {
            return Some(Self {
                vit: None,
                embedding: Some(
                    EmbeddingEncoderConfig::new(dim, spec.d_model)
                        .with_layer_norm_eps(spec.layer_norm_eps)
                        .init(device),
                ),
            });
        }
        spec.morphology.as_ref().map(|m| Self {
            vit: Some(MorphologyEncoderConfig::from_spec(m, spec.d_model, dropout, spec.layer_norm_eps).init(device)),
            embedding: None,
        })
    }

    /// `[batch, 1, d_model]`.
    pub fn forward(&self, batch: &CellBatch<B>) -> Tensor<B, 3> {
        match (&self.vit, &self.embedding) {
            (Some(vit), _) => vit.forward(batch.patches.clone().expect("model needs `patches`")),
            (None, Some(enc)) => enc.forward(
                batch
                    .morph_embedding
                    .clone()
                    .expect("model needs `morph_embedding`"),
            ),
            (None, None) => unreachable!("MorphologySource has one encoder by construction"),
        }
    }
}

/// Encoder + mean pool + head.
#[derive(Module, Debug)]
pub struct PooledHead<B: Backend> {
    /// The N-layer encoder.
    pub encoder: TransformerEncoder<B>,
    /// Head `[d_model → classes]`.
    pub head: Linear<B>,
}

impl<B: Backend> PooledHead<B> {
    fn init(spec: &ClassifierConfig, dropout: f64, device: &B::Device) -> Self {
        let layer = EncoderLayerConfig::new(spec.d_model, spec.n_heads, spec.d_ff)
            .with_dropout(dropout)
            .with_layer_norm_eps(spec.layer_norm_eps);
        Self {
            encoder: TransformerEncoderConfig::new(layer)
                .with_n_layers(spec.n_layers)
                .init(device),
            head: LinearConfig::new(spec.d_model, spec.n_classes).init(device),
        }
    }

    /// `tokens: [batch, n, d_model]`, optional bias `[batch, heads, n, n]` → logits
    /// `[batch, classes]`.
    pub fn forward(&self, tokens: Tensor<B, 3>, bias: Option<Tensor<B, 4>>) -> Tensor<B, 2> {
        let [batch, _, d] = tokens.dims();
        let h = self.encoder.forward(tokens, bias);
        self.head.forward(h.mean_dim(1).reshape([batch, d]))
    }
}

/// Token types of the relative-bias buckets: gene, morphology, spatial.
pub const TOKEN_TYPES: usize = 3;

/// Relative-bias bucket of every (query, key) token pair of the multi-input sequence
/// `[gene_0 .. gene_{T−1}, morphology, spatial]`, row-major `[n, n]` with `n = T + 2`.
///
/// Token `i` has a type `t_i` (0 gene, 1 morphology, 2 spatial) and a position `p_i` within its
/// type; the pair's bucket is `(t_q · 3 + t_k) · (2T − 1) + (p_k − p_q + T − 1)`, so gene↔gene
/// pairs are indexed by their relative offset and cross-modality pairs by their type pair.
/// The bias table has [`relative_bias_buckets`]`(T)` rows.
pub fn relative_bias_index(gene_tokens: usize) -> Vec<usize> {
    let t = gene_tokens.max(1);
    let types: Vec<(usize, usize)> = (0..t).map(|p| (0, p)).chain([(1, 0), (2, 0)]).collect();
    let offsets = 2 * t - 1;
    let mut idx = Vec::with_capacity(types.len() * types.len());
    for &(tq, pq) in &types {
        for &(tk, pk) in &types {
            idx.push((tq * TOKEN_TYPES + tk) * offsets + (pk + t - 1 - pq));
        }
    }
    idx
}

/// Rows of the relative-bias table for `gene_tokens` gene tokens: `9 · (2T − 1)`.
pub fn relative_bias_buckets(gene_tokens: usize) -> usize {
    TOKEN_TYPES * TOKEN_TYPES * (2 * gene_tokens.max(1) - 1)
}

/// Row `i` of a `[rows, d]` table as `[1, 1, d]`.
fn table_row<B: Backend>(table: &Param<Tensor<B, 2>>, i: usize) -> Tensor<B, 3> {
    let [_, d] = table.dims();
    table.val().slice([i..i + 1, 0..d]).unsqueeze_dim::<3>(0)
}

/// Every CellSymphony classifier (see the module docs): the spec's token sources, modality
/// embeddings, an optional relative attention bias, and the shared encoder + pool + head.
#[derive(Module, Debug)]
pub struct Classifier<B: Backend> {
    /// Gene tokens.
    pub genes: GeneSource<B>,
    /// Morphology token.
    pub morphology: Option<MorphologySource<B>>,
    /// Centroid token.
    pub spatial: Option<SpatialEncoder<B>>,
    /// Modality embeddings `[modalities, d_model]` (gene, then morphology, then spatial, as
    /// present); absent for the gene-only architecture.
    pub modality: Option<Param<Tensor<B, 2>>>,
    /// Relative attention bias table `[buckets, heads]` (zero-initialised).
    pub relative_bias: Option<Param<Tensor<B, 2>>>,
    /// Encoder + pool + head.
    pub core: PooledHead<B>,
    /// The linear ("wide") path `[genes → classes]` on the normalised genes, added to the
    /// head's logits (`spec.linear_path`; zero-initialised).
    pub linear_path: Option<Linear<B>>,
    /// The architecture spec the module was built from (not a parameter).
    pub spec: ClassifierConfig,
}

/// How to build a [`Classifier`]: the architecture spec plus the training-only dropout.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassifierOptions {
    /// The architecture (shared with the engines and stored in model files).
    pub spec: ClassifierConfig,
    /// Dropout on attention probabilities and residual branches while training.
    pub dropout: f64,
}

impl ClassifierOptions {
    /// `spec` with dropout 0.1.
    pub fn new(spec: ClassifierConfig) -> Self {
        Self { spec, dropout: 0.1 }
    }

    /// The same with another dropout.
    pub fn with_dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }

    /// Build the classifier on `device` with freshly initialised weights. Errors (naming the
    /// field) when the spec is invalid.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Classifier<B>, ModelFileError> {
        let spec = &self.spec;
        spec.validate()?;
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelFileError::InvalidConfig {
                reason: format!("dropout {} must be in [0, 1)", self.dropout),
            });
        }
        let genes = GeneSource::init(spec, device);
        let morphology = MorphologySource::init(spec, self.dropout, device);
        let spatial = spec.spatial.as_ref().map(|s| {
            SpatialEncoderConfig::new(spec.d_model)
                .with_n_frequencies(s.n_frequencies)
                .with_min_wavelength_um(s.min_wavelength_um)
                .with_max_wavelength_um(s.max_wavelength_um)
                .init(device)
        });
        let modalities = usize::from(!spec.is_image_only()) + usize::from(morphology.is_some()) + usize::from(spatial.is_some());
        let modality = (modalities > 1).then(|| token_table(modalities, spec.d_model, device));
        let relative_bias = spec.attention_bias.then(|| {
            Param::from_tensor(Tensor::zeros(
                [relative_bias_buckets(spec.gene_tokens), spec.n_heads],
                device,
            ))
        });
        Ok(Classifier {
            genes,
            morphology,
            spatial,
            modality,
            relative_bias,
            core: PooledHead::init(spec, self.dropout, device),
            linear_path: spec.linear_path.then(|| {
                LinearConfig::new(spec.n_genes, spec.n_classes)
                    .with_initializer(burn::nn::Initializer::Zeros)
                    .init(device)
            }),
            spec: spec.clone(),
        })
    }
}

impl<B: Backend> Classifier<B> {
    /// The inputs [`Self::forward`] reads.
    pub fn inputs(&self) -> ModelInputs {
        ModelInputs::of(&self.spec)
    }

    /// The additive attention bias `[heads, n, n]` for the `n` tokens, if the model has one.
    pub fn attention_bias(&self) -> Option<Tensor<B, 3>> {
        let table = self.relative_bias.as_ref()?;
        let t = self.spec.gene_tokens;
        let n = self.spec.n_tokens();
        let idx: Vec<i64> = relative_bias_index(t).into_iter().map(|i| i as i64).collect();
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [n * n]), &table.device());
        Some(
            table
                .val()
                .select(0, idx)
                .swap_dims(0, 1)
                .reshape([self.spec.n_heads, n, n]),
        )
    }

    /// Logits `[batch, classes]`. Panics when an input named by [`Self::inputs`] is missing
    /// from `batch` (the trainer and [`crate::model`]'s callers check this first).
    pub fn forward(&self, batch: &CellBatch<B>) -> Tensor<B, 2> {
        let mut modality_row = 0;
        let mut with_modality = |tokens: Tensor<B, 3>| match &self.modality {
            Some(table) => {
                let t = tokens + table_row(table, modality_row);
                modality_row += 1;
                t
            }
            None => tokens,
        };
        let mut parts: Vec<Tensor<B, 3>> = self.genes.forward(batch).map(&mut with_modality).into_iter().collect();
        if let Some(m) = &self.morphology {
            parts.push(with_modality(m.forward(batch)));
        }
        if let Some(s) = &self.spatial {
            let centroids = batch
                .centroids_um
                .clone()
                .expect("model needs `centroids_um`");
            parts.push(with_modality(s.forward(centroids)));
        }
        let tokens = if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Tensor::cat(parts, 1)
        };
        let bias = self.attention_bias().map(|bias| {
            let [b, n, _] = tokens.dims();
            bias.unsqueeze_dim::<4>(0).expand([b, self.spec.n_heads, n, n])
        });
        let logits = self.core.forward(tokens, bias);
        match &self.linear_path {
            Some(wide) => logits + wide.forward(batch.genes.clone().expect("model needs `genes`")),
            None => logits,
        }
    }
}
