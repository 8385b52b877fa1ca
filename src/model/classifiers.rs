//! CellSymphony's multimodal classifiers, and the [`CellClassifier`] trait all four share.
//!
//! Every classifier projects its inputs to tokens of one shared width `d_model`, runs the
//! N-layer pre-norm encoder ([`super::encoder`]), mean-pools the tokens and applies a linear head:
//!
//! | classifier | tokens |
//! |---|---|
//! | [`super::GeneOnlyClassifier`] | gene tokens |
//! | [`SpatialClassifier`] | gene tokens + one sinusoidal centroid token, each + a modality token |
//! | [`DualModalityClassifier`] | gene tokens + one morphology token, each + a modality token |
//! | [`MultiInputClassifier`] | gene + morphology + spatial tokens, modality tokens, and a learned relative attention bias |
//!
//! Gene tokens come from log-normalised counts ([`GeneEncoder`]) or, when `gene_embedding_dim`
//! is set, from a precomputed per-cell embedding ([`EmbeddingEncoder`]); the morphology token
//! from the patch ViT ([`MorphologyEncoder`]) or, when `morph_embedding_dim` is set, from a
//! precomputed image embedding (e.g. UNI2, 1536-d).

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::encoder::{EncoderLayerConfig, TransformerEncoder, TransformerEncoderConfig};
use super::encoders::{
    token_table, EmbeddingEncoder, EmbeddingEncoderConfig, GeneEncoder, GeneEncoderConfig,
    MorphologyEncoder, MorphologyEncoderConfig, SpatialEncoder, SpatialEncoderConfig,
};
use super::GeneOnlyClassifier;

/// One batch of model inputs; only the fields a model's [`ModelInputs`] names need be set.
#[derive(Debug, Clone)]
pub struct CellBatch<B: Backend> {
    /// log1p-cp10k expression `[batch, genes]`.
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

/// A classifier of cells from a [`CellBatch`].
pub trait CellClassifier<B: Backend> {
    /// Logits `[batch, classes]`. Panics when an input named by [`Self::inputs`] is missing
    /// from `batch` (the trainer checks this before it starts).
    fn forward_batch(&self, batch: &CellBatch<B>) -> Tensor<B, 2>;
    /// The inputs [`Self::forward_batch`] reads.
    fn inputs(&self) -> ModelInputs;
}

impl<B: Backend> CellClassifier<B> for GeneOnlyClassifier<B> {
    fn forward_batch(&self, batch: &CellBatch<B>) -> Tensor<B, 2> {
        self.forward(
            batch
                .genes
                .clone()
                .expect("gene-only classifier needs `genes`"),
        )
    }
    fn inputs(&self) -> ModelInputs {
        ModelInputs {
            genes: Some(self.gene_embedding.weight.dims()[0]),
            ..Default::default()
        }
    }
}

/// Gene tokens from counts or from a precomputed embedding (exactly one is set).
#[derive(Module, Debug)]
pub struct GeneSource<B: Backend> {
    /// GEB over normalised counts.
    pub counts: Option<GeneEncoder<B>>,
    /// Encoder of a precomputed gene embedding.
    pub embedding: Option<EmbeddingEncoder<B>>,
}

impl<B: Backend> GeneSource<B> {
    fn init(
        n_genes: usize,
        embedding_dim: Option<usize>,
        tokens: usize,
        d_model: usize,
        eps: f64,
        device: &B::Device,
    ) -> Self {
        match embedding_dim {
            Some(dim) => Self {
                counts: None,
                embedding: Some(
                    EmbeddingEncoderConfig::new(dim, d_model)
                        .with_tokens(tokens)
                        .with_layer_norm_eps(eps)
                        .init(device),
                ),
            },
            None => Self {
                counts: Some(
                    GeneEncoderConfig::new(n_genes, d_model)
                        .with_tokens(tokens)
                        .init(device),
                ),
                embedding: None,
            },
        }
    }
    /// `[batch, tokens, d_model]`.
    pub fn forward(&self, batch: &CellBatch<B>) -> Tensor<B, 3> {
        match (&self.counts, &self.embedding) {
            (Some(enc), _) => enc.forward(batch.genes.clone().expect("model needs `genes`")),
            (None, Some(enc)) => enc.forward(
                batch
                    .gene_embedding
                    .clone()
                    .expect("model needs `gene_embedding`"),
            ),
            (None, None) => unreachable!("GeneSource has one encoder by construction"),
        }
    }
    fn inputs(&self, inputs: &mut ModelInputs) {
        match (&self.counts, &self.embedding) {
            (_, Some(e)) => inputs.gene_embedding = Some(e.norm.gamma.dims()[0]),
            (Some(c), None) => inputs.genes = Some(c.embedding.weight.dims()[0]),
            (None, None) => {}
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
    fn init(
        vit: &MorphologyEncoderConfig,
        embedding_dim: Option<usize>,
        d_model: usize,
        eps: f64,
        device: &B::Device,
    ) -> Self {
        match embedding_dim {
            Some(dim) => Self {
                vit: None,
                embedding: Some(
                    EmbeddingEncoderConfig::new(dim, d_model)
                        .with_layer_norm_eps(eps)
                        .init(device),
                ),
            },
            None => Self {
                vit: Some(vit.clone().with_d_model(d_model).init(device)),
                embedding: None,
            },
        }
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
    fn inputs(&self, inputs: &mut ModelInputs) {
        match (&self.vit, &self.embedding) {
            (Some(v), _) => inputs.patches = Some(v.image_size),
            (None, Some(e)) => inputs.morph_embedding = Some(e.norm.gamma.dims()[0]),
            (None, None) => {}
        }
    }
}

/// Encoder + mean pool + head, shared by the classifiers here.
#[derive(Module, Debug)]
pub struct PooledHead<B: Backend> {
    /// The N-layer encoder.
    pub encoder: TransformerEncoder<B>,
    /// Head `[d_model → classes]`.
    pub head: Linear<B>,
}

impl<B: Backend> PooledHead<B> {
    #[allow(clippy::too_many_arguments)]
    fn init(
        d_model: usize,
        n_heads: usize,
        d_ff: usize,
        n_layers: usize,
        n_classes: usize,
        dropout: f64,
        eps: f64,
        device: &B::Device,
    ) -> Self {
        let layer = EncoderLayerConfig::new(d_model, n_heads, d_ff)
            .with_dropout(dropout)
            .with_layer_norm_eps(eps);
        Self {
            encoder: TransformerEncoderConfig::new(layer)
                .with_n_layers(n_layers)
                .init(device),
            head: LinearConfig::new(d_model, n_classes).init(device),
        }
    }
    /// `tokens: [batch, n, d_model]`, optional bias `[batch, heads, n, n]` → logits.
    pub fn forward(&self, tokens: Tensor<B, 3>, bias: Option<Tensor<B, 4>>) -> Tensor<B, 2> {
        let [batch, _, d] = tokens.dims();
        let h = self.encoder.forward(tokens, bias);
        self.head.forward(h.mean_dim(1).reshape([batch, d]))
    }
}

/// Configuration of [`SpatialClassifier`].
#[derive(Config, Debug)]
pub struct SpatialClassifierConfig {
    /// Genes in the panel.
    pub n_genes: usize,
    /// Output classes.
    pub n_classes: usize,
    /// Shared token width.
    #[config(default = 64)]
    pub d_model: usize,
    /// Attention heads.
    #[config(default = 4)]
    pub n_heads: usize,
    /// Feed-forward width.
    #[config(default = 128)]
    pub d_ff: usize,
    /// Encoder layers.
    #[config(default = 6)]
    pub n_layers: usize,
    /// Gene tokens.
    #[config(default = 4)]
    pub gene_tokens: usize,
    /// Use a precomputed gene embedding of this width instead of counts.
    #[config(default = "None")]
    pub gene_embedding_dim: Option<usize>,
    /// Sinusoid frequencies per axis.
    #[config(default = 16)]
    pub n_frequencies: usize,
    /// Dropout while training.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// LayerNorm epsilon.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

impl SpatialClassifierConfig {
    /// Build on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> SpatialClassifier<B> {
        SpatialClassifier {
            genes: GeneSource::init(
                self.n_genes,
                self.gene_embedding_dim,
                self.gene_tokens,
                self.d_model,
                self.layer_norm_eps,
                device,
            ),
            spatial: SpatialEncoderConfig::new(self.d_model)
                .with_n_frequencies(self.n_frequencies)
                .init(device),
            modality: token_table(2, self.d_model, device),
            core: PooledHead::init(
                self.d_model,
                self.n_heads,
                self.d_ff,
                self.n_layers,
                self.n_classes,
                self.dropout,
                self.layer_norm_eps,
                device,
            ),
        }
    }
}

/// Gene tokens + one spatial (sinusoidal centroid) token.
#[derive(Module, Debug)]
pub struct SpatialClassifier<B: Backend> {
    /// Gene tokens.
    pub genes: GeneSource<B>,
    /// Centroid token.
    pub spatial: SpatialEncoder<B>,
    /// Modality embeddings `[2, d_model]`: gene, spatial.
    pub modality: Param<Tensor<B, 2>>,
    /// Encoder + pool + head.
    pub core: PooledHead<B>,
}

/// Row `i` of a `[rows, d]` table as `[1, 1, d]`.
fn table_row<B: Backend>(table: &Param<Tensor<B, 2>>, i: usize) -> Tensor<B, 3> {
    let [_, d] = table.dims();
    table.val().slice([i..i + 1, 0..d]).unsqueeze_dim::<3>(0)
}

impl<B: Backend> CellClassifier<B> for SpatialClassifier<B> {
    fn forward_batch(&self, batch: &CellBatch<B>) -> Tensor<B, 2> {
        let g = self.genes.forward(batch) + table_row(&self.modality, 0);
        let s = self.spatial.forward(
            batch
                .centroids_um
                .clone()
                .expect("spatial classifier needs `centroids_um`"),
        ) + table_row(&self.modality, 1);
        self.core.forward(Tensor::cat(vec![g, s], 1), None)
    }
    fn inputs(&self) -> ModelInputs {
        let mut i = ModelInputs {
            centroids: true,
            ..Default::default()
        };
        self.genes.inputs(&mut i);
        i
    }
}

/// Configuration of [`DualModalityClassifier`].
#[derive(Config, Debug)]
pub struct DualModalityClassifierConfig {
    /// Genes in the panel.
    pub n_genes: usize,
    /// Output classes.
    pub n_classes: usize,
    /// Morphology ViT (its `d_model` is overridden by this config's).
    pub morphology: MorphologyEncoderConfig,
    /// Shared token width.
    #[config(default = 64)]
    pub d_model: usize,
    /// Attention heads.
    #[config(default = 4)]
    pub n_heads: usize,
    /// Feed-forward width.
    #[config(default = 128)]
    pub d_ff: usize,
    /// Encoder layers.
    #[config(default = 6)]
    pub n_layers: usize,
    /// Gene tokens.
    #[config(default = 4)]
    pub gene_tokens: usize,
    /// Use a precomputed gene embedding of this width instead of counts.
    #[config(default = "None")]
    pub gene_embedding_dim: Option<usize>,
    /// Use a precomputed image embedding of this width instead of the patch ViT.
    #[config(default = "None")]
    pub morph_embedding_dim: Option<usize>,
    /// Dropout while training.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// LayerNorm epsilon.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

impl DualModalityClassifierConfig {
    /// Build on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> DualModalityClassifier<B> {
        DualModalityClassifier {
            genes: GeneSource::init(
                self.n_genes,
                self.gene_embedding_dim,
                self.gene_tokens,
                self.d_model,
                self.layer_norm_eps,
                device,
            ),
            morphology: MorphologySource::init(
                &self.morphology,
                self.morph_embedding_dim,
                self.d_model,
                self.layer_norm_eps,
                device,
            ),
            modality: token_table(2, self.d_model, device),
            core: PooledHead::init(
                self.d_model,
                self.n_heads,
                self.d_ff,
                self.n_layers,
                self.n_classes,
                self.dropout,
                self.layer_norm_eps,
                device,
            ),
        }
    }
}

/// Gene tokens + one morphology token, each summed with a learned modality token.
#[derive(Module, Debug)]
pub struct DualModalityClassifier<B: Backend> {
    /// Gene tokens.
    pub genes: GeneSource<B>,
    /// Morphology token.
    pub morphology: MorphologySource<B>,
    /// Modality embeddings `[2, d_model]`: gene, morphology.
    pub modality: Param<Tensor<B, 2>>,
    /// Encoder + pool + head.
    pub core: PooledHead<B>,
}

impl<B: Backend> CellClassifier<B> for DualModalityClassifier<B> {
    fn forward_batch(&self, batch: &CellBatch<B>) -> Tensor<B, 2> {
        let g = self.genes.forward(batch) + table_row(&self.modality, 0);
        let m = self.morphology.forward(batch) + table_row(&self.modality, 1);
        self.core.forward(Tensor::cat(vec![g, m], 1), None)
    }
    fn inputs(&self) -> ModelInputs {
        let mut i = ModelInputs::default();
        self.genes.inputs(&mut i);
        self.morphology.inputs(&mut i);
        i
    }
}

/// Configuration of [`MultiInputClassifier`].
#[derive(Config, Debug)]
pub struct MultiInputClassifierConfig {
    /// Genes in the panel.
    pub n_genes: usize,
    /// Output classes.
    pub n_classes: usize,
    /// Morphology ViT (its `d_model` is overridden by this config's).
    pub morphology: MorphologyEncoderConfig,
    /// Shared token width.
    #[config(default = 64)]
    pub d_model: usize,
    /// Attention heads.
    #[config(default = 4)]
    pub n_heads: usize,
    /// Feed-forward width.
    #[config(default = 128)]
    pub d_ff: usize,
    /// Encoder layers.
    #[config(default = 6)]
    pub n_layers: usize,
    /// Gene tokens.
    #[config(default = 4)]
    pub gene_tokens: usize,
    /// Use a precomputed gene embedding of this width instead of counts.
    #[config(default = "None")]
    pub gene_embedding_dim: Option<usize>,
    /// Use a precomputed image embedding of this width instead of the patch ViT.
    #[config(default = "None")]
    pub morph_embedding_dim: Option<usize>,
    /// Sinusoid frequencies per axis.
    #[config(default = 16)]
    pub n_frequencies: usize,
    /// Dropout while training.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// LayerNorm epsilon.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

/// Token types of the multi-input sequence.
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

impl MultiInputClassifierConfig {
    /// Build on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> MultiInputClassifier<B> {
        MultiInputClassifier {
            genes: GeneSource::init(
                self.n_genes,
                self.gene_embedding_dim,
                self.gene_tokens,
                self.d_model,
                self.layer_norm_eps,
                device,
            ),
            morphology: MorphologySource::init(
                &self.morphology,
                self.morph_embedding_dim,
                self.d_model,
                self.layer_norm_eps,
                device,
            ),
            spatial: SpatialEncoderConfig::new(self.d_model)
                .with_n_frequencies(self.n_frequencies)
                .init(device),
            modality: token_table(TOKEN_TYPES, self.d_model, device),
            relative_bias: Param::from_tensor(Tensor::zeros(
                [relative_bias_buckets(self.gene_tokens), self.n_heads],
                device,
            )),
            core: PooledHead::init(
                self.d_model,
                self.n_heads,
                self.d_ff,
                self.n_layers,
                self.n_classes,
                self.dropout,
                self.layer_norm_eps,
                device,
            ),
            gene_tokens: self.gene_tokens.max(1),
            n_heads: self.n_heads,
        }
    }
}

/// Gene, morphology and spatial tokens with modality embeddings and a learned per-head
/// relative attention bias (see [`relative_bias_index`]) added to the attention logits of every
/// encoder layer.
#[derive(Module, Debug)]
pub struct MultiInputClassifier<B: Backend> {
    /// Gene tokens.
    pub genes: GeneSource<B>,
    /// Morphology token.
    pub morphology: MorphologySource<B>,
    /// Centroid token.
    pub spatial: SpatialEncoder<B>,
    /// Modality embeddings `[3, d_model]`: gene, morphology, spatial.
    pub modality: Param<Tensor<B, 2>>,
    /// Relative attention bias table `[buckets, heads]` (zero-initialised).
    pub relative_bias: Param<Tensor<B, 2>>,
    /// Encoder + pool + head.
    pub core: PooledHead<B>,
    /// Gene tokens `T`.
    pub gene_tokens: usize,
    /// Attention heads.
    pub n_heads: usize,
}

impl<B: Backend> MultiInputClassifier<B> {
    /// The additive attention bias `[heads, n, n]` for the `n = T + 2` tokens.
    pub fn attention_bias(&self) -> Tensor<B, 3> {
        let idx = relative_bias_index(self.gene_tokens);
        let n = self.gene_tokens + 2;
        let device = self.relative_bias.device();
        let idx: Vec<i64> = idx.into_iter().map(|i| i as i64).collect();
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [n * n]), &device);
        self.relative_bias
            .val()
            .select(0, idx)
            .swap_dims(0, 1)
            .reshape([self.n_heads, n, n])
    }
}

impl<B: Backend> CellClassifier<B> for MultiInputClassifier<B> {
    fn forward_batch(&self, batch: &CellBatch<B>) -> Tensor<B, 2> {
        let g = self.genes.forward(batch) + table_row(&self.modality, 0);
        let m = self.morphology.forward(batch) + table_row(&self.modality, 1);
        let s = self.spatial.forward(
            batch
                .centroids_um
                .clone()
                .expect("multi-input classifier needs `centroids_um`"),
        ) + table_row(&self.modality, 2);
        let tokens = Tensor::cat(vec![g, m, s], 1);
        let [b, n, _] = tokens.dims();
        let bias = self
            .attention_bias()
            .unsqueeze_dim::<4>(0)
            .expand([b, self.n_heads, n, n]);
        self.core.forward(tokens, Some(bias))
    }
    fn inputs(&self) -> ModelInputs {
        let mut i = ModelInputs {
            centroids: true,
            ..Default::default()
        };
        self.genes.inputs(&mut i);
        self.morphology.inputs(&mut i);
        i
    }
}
