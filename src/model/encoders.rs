//! Input encoders: each turns one modality of a cell into tokens of the shared width `d_model`.
//!
//! - [`GeneEncoder`] (GEB): log-normalised counts `[batch, genes]` → `[batch, tokens, d_model]`.
//! - [`EmbeddingEncoder`]: a precomputed per-cell embedding `[batch, dim]` (e.g. a foundation
//!   model's gene or UNI2 image embedding, read with [`crate::train::embeddings`]) →
//!   `[batch, tokens, d_model]`.
//! - [`MorphologyEncoder`] (MEB): a small ViT over a nucleus-centred DAPI patch
//!   `[batch, size, size]` → one cell token `[batch, 1, d_model]`, the mean of the `k`
//!   intermediate-layer patch tokens nearest the patch centre (the nucleus).
//! - [`SpatialEncoder`]: the centroid in µm `[batch, 2]` → a sinusoidal encoding → one token
//!   `[batch, 1, d_model]`.
//!
//! All weights are plain `Linear` / `LayerNorm` / embedding tables. The ViT's patch embedding is
//! an unfold (`[batch, size, size]` → `[batch, grid², patch²]`, row-major patches in row-major
//! pixel order) followed by one `Linear(patch² → width)`, i.e. exactly a stride-`patch`
//! convolution written as a matrix product that an int8 matmul engine can run.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

use super::encoder::{EncoderLayer, EncoderLayerConfig};

/// A learned `[tokens, d_model]` table, initialised `N(0, 0.02)`.
pub(crate) fn token_table<B: Backend>(
    tokens: usize,
    d_model: usize,
    device: &B::Device,
) -> Param<Tensor<B, 2>> {
    Param::from_tensor(Tensor::random(
        [tokens, d_model],
        Distribution::Normal(0.0, 0.02),
        device,
    ))
}

/// Configuration of [`GeneEncoder`].
#[derive(Config, Debug)]
pub struct GeneEncoderConfig {
    /// Genes in the panel (input width).
    pub n_genes: usize,
    /// Token width.
    pub d_model: usize,
    /// Tokens the gene embedding is split into (1 = the paper's single gene token).
    #[config(default = 4)]
    pub tokens: usize,
}

impl GeneEncoderConfig {
    /// Build the encoder on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> GeneEncoder<B> {
        GeneEncoder {
            embedding: LinearConfig::new(self.n_genes, self.tokens * self.d_model).init(device),
            token_type: token_table(self.tokens, self.d_model, device),
            tokens: self.tokens,
            d_model: self.d_model,
        }
    }
}

/// Gene expression encoder (GEB): `Linear(genes → tokens·d_model)`, reshaped, plus a learned
/// token-type embedding. The gene-token source of [`super::Classifier`].
#[derive(Module, Debug)]
pub struct GeneEncoder<B: Backend> {
    /// Projection `[genes → tokens·d_model]`.
    pub embedding: Linear<B>,
    /// Token-type embedding `[tokens, d_model]`.
    pub token_type: Param<Tensor<B, 2>>,
    /// Tokens produced.
    pub tokens: usize,
    /// Token width.
    pub d_model: usize,
}

impl<B: Backend> GeneEncoder<B> {
    /// `x: [batch, genes]` (log1p-cp10k) → `[batch, tokens, d_model]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 3> {
        let [batch, _] = x.dims();
        self.embedding
            .forward(x)
            .reshape([batch, self.tokens, self.d_model])
            + self.token_type.val().unsqueeze_dim::<3>(0)
    }
}

/// Gene-token encoder (FT-Transformer style): one token per chosen gene,
/// `x[gene_t] · value[t] + identity[t]` with learned `[T, d_model]` tables, so attention runs
/// over genes. The gene-token source of [`super::Classifier`] when the spec has a
/// `gene_token_panel`.
#[derive(Module, Debug)]
pub struct GeneTokenEncoder<B: Backend> {
    /// Value vector per token `[T, d_model]` (scaled by the gene's normalised expression).
    pub value: Param<Tensor<B, 2>>,
    /// Identity embedding per token `[T, d_model]`.
    pub identity: Param<Tensor<B, 2>>,
    /// Input columns read, one per token `[T]`.
    pub genes: Vec<usize>,
}

impl<B: Backend> GeneTokenEncoder<B> {
    /// Tables for the tokens of `genes`, uniform in `±1/sqrt(d_model)` (FT-Transformer's
    /// initialisation).
    pub fn new(genes: &[usize], d_model: usize, device: &B::Device) -> Self {
        let bound = 1.0 / (d_model as f64).sqrt();
        let table = || Param::from_tensor(Tensor::random([genes.len(), d_model], Distribution::Uniform(-bound, bound), device));
        Self { value: table(), identity: table(), genes: genes.to_vec() }
    }

    /// `x: [batch, genes]` → `[batch, T, d_model]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 3> {
        let device = x.device();
        let t = self.genes.len();
        let idx: Vec<i64> = self.genes.iter().map(|&g| g as i64).collect();
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [t]), &device);
        let v = x.select(1, idx).unsqueeze_dim::<3>(2); // [batch, T, 1]
        v * self.value.val().unsqueeze_dim::<3>(0) + self.identity.val().unsqueeze_dim::<3>(0)
    }
}

/// Configuration of [`EmbeddingEncoder`].
#[derive(Config, Debug)]
pub struct EmbeddingEncoderConfig {
    /// Width of the precomputed embedding (e.g. 1536 for UNI2).
    pub dim: usize,
    /// Token width.
    pub d_model: usize,
    /// Tokens produced.
    #[config(default = 1)]
    pub tokens: usize,
    /// LayerNorm epsilon of the input normalisation.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

impl EmbeddingEncoderConfig {
    /// Build the encoder on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> EmbeddingEncoder<B> {
        EmbeddingEncoder {
            norm: LayerNormConfig::new(self.dim)
                .with_epsilon(self.layer_norm_eps)
                .init(device),
            projection: LinearConfig::new(self.dim, self.tokens * self.d_model).init(device),
            token_type: token_table(self.tokens, self.d_model, device),
            tokens: self.tokens,
            d_model: self.d_model,
        }
    }
}

/// Precomputed-embedding encoder: `LayerNorm(dim)` (embeddings from other models come at any
/// scale), `Linear(dim → tokens·d_model)`, reshaped, plus a token-type embedding.
#[derive(Module, Debug)]
pub struct EmbeddingEncoder<B: Backend> {
    /// Input normalisation over `dim`.
    pub norm: LayerNorm<B>,
    /// Projection `[dim → tokens·d_model]`.
    pub projection: Linear<B>,
    /// Token-type embedding `[tokens, d_model]`.
    pub token_type: Param<Tensor<B, 2>>,
    /// Tokens produced.
    pub tokens: usize,
    /// Token width.
    pub d_model: usize,
}

impl<B: Backend> EmbeddingEncoder<B> {
    /// `e: [batch, dim]` → `[batch, tokens, d_model]`.
    pub fn forward(&self, e: Tensor<B, 2>) -> Tensor<B, 3> {
        let [batch, _] = e.dims();
        self.projection
            .forward(self.norm.forward(e))
            .reshape([batch, self.tokens, self.d_model])
            + self.token_type.val().unsqueeze_dim::<3>(0)
    }
}

/// Configuration of [`MorphologyEncoder`].
///
/// Default: 32 × 32 px patches (at the classifier's chosen µm/px) cut into 8 × 8 px ViT
/// patches → a 4 × 4 token grid, width 64, 2 blocks, cell token from block 2 as the mean of the
/// 4 tokens nearest the centre (the central 2 × 2 tokens).
#[derive(Config, Debug)]
pub struct MorphologyEncoderConfig {
    /// Side of the input patch in pixels; must be a multiple of `vit_patch`.
    #[config(default = 32)]
    pub image_size: usize,
    /// Side of one ViT patch in pixels.
    #[config(default = 8)]
    pub vit_patch: usize,
    /// ViT token width.
    #[config(default = 64)]
    pub width: usize,
    /// ViT attention heads.
    #[config(default = 4)]
    pub n_heads: usize,
    /// ViT feed-forward width.
    #[config(default = 128)]
    pub d_ff: usize,
    /// ViT blocks up to the feature layer: tokens are read after this many blocks (blocks past
    /// the feature layer would not change the cell token, so none are built).
    #[config(default = 2)]
    pub feature_layer: usize,
    /// Patch tokens nearest the patch centre averaged into the cell token.
    #[config(default = 4)]
    pub k_nearest: usize,
    /// Output token width (the classifier's shared `d_model`).
    #[config(default = 64)]
    pub d_model: usize,
    /// Dropout while training.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// LayerNorm epsilon.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

impl MorphologyEncoderConfig {
    /// The ViT a spec's morphology token describes, projecting to `d_model`.
    pub fn from_spec(
        m: &crate::engine::MorphologyTokenConfig,
        d_model: usize,
        dropout: f64,
        layer_norm_eps: f64,
    ) -> Self {
        Self {
            image_size: m.image_size,
            vit_patch: m.vit_patch,
            width: m.width,
            n_heads: m.n_heads,
            d_ff: m.d_ff,
            feature_layer: m.n_layers,
            k_nearest: m.k_nearest,
            d_model,
            dropout,
            layer_norm_eps,
        }
    }

    /// The spec's description of this ViT trained on patches cut at `um_per_px`.
    pub fn to_spec(&self, um_per_px: f64) -> crate::engine::MorphologyTokenConfig {
        crate::engine::MorphologyTokenConfig {
            image_size: self.image_size,
            vit_patch: self.vit_patch,
            width: self.width,
            n_heads: self.n_heads,
            d_ff: self.d_ff,
            n_layers: self.feature_layer,
            k_nearest: self.k_nearest,
            um_per_px,
        }
    }

    /// Tokens per side of the ViT grid.
    pub fn grid(&self) -> usize {
        self.image_size / self.vit_patch.max(1)
    }

    /// Why this configuration cannot be built, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.vit_patch == 0 || self.image_size == 0 || !self.image_size.is_multiple_of(self.vit_patch) {
            return Err(format!(
                "morphology patch size {} px must be a positive multiple of the ViT patch size {} px",
                self.image_size, self.vit_patch
            ));
        }
        if self.n_heads == 0 || !self.width.is_multiple_of(self.n_heads) {
            return Err(format!(
                "ViT width {} must be divisible by its heads {}",
                self.width, self.n_heads
            ));
        }
        let n = self.grid() * self.grid();
        if self.k_nearest == 0 || self.k_nearest > n {
            return Err(format!(
                "k_nearest {} must be in 1..={n} (the ViT's token count)",
                self.k_nearest
            ));
        }
        if self.feature_layer == 0 {
            return Err("the ViT feature layer must be at least 1".into());
        }
        Ok(())
    }

    /// Build the encoder on `device`. Panics on a configuration [`Self::check`] rejects.
    pub fn init<B: Backend>(&self, device: &B::Device) -> MorphologyEncoder<B> {
        if let Err(e) = self.check() {
            panic!("{e}");
        }
        let grid = self.grid();
        let layer = EncoderLayerConfig::new(self.width, self.n_heads, self.d_ff)
            .with_dropout(self.dropout)
            .with_layer_norm_eps(self.layer_norm_eps);
        MorphologyEncoder {
            patch_embedding: LinearConfig::new(self.vit_patch * self.vit_patch, self.width)
                .init(device),
            position: token_table(grid * grid, self.width, device),
            blocks: (0..self.feature_layer)
                .map(|_| layer.init(device))
                .collect(),
            norm: LayerNormConfig::new(self.width)
                .with_epsilon(self.layer_norm_eps)
                .init(device),
            projection: LinearConfig::new(self.width, self.d_model).init(device),
            image_size: self.image_size,
            vit_patch: self.vit_patch,
            k_nearest: self.k_nearest,
        }
    }
}

pub use crate::engine::centre_token_indices;

/// Morphology encoder (MEB): a small ViT over a nucleus-centred patch.
///
/// ```text
/// patch [batch, S, S] --unfold--> [batch, g², p²] --Linear--> + position [g², width]
/// --feature_layer pre-norm blocks--> LayerNorm --> mean of the k tokens nearest the centre
/// --Linear(width → d_model)--> [batch, 1, d_model]
/// ```
#[derive(Module, Debug)]
pub struct MorphologyEncoder<B: Backend> {
    /// Patch embedding `[p² → width]` (a stride-p convolution as unfold + matmul).
    pub patch_embedding: Linear<B>,
    /// Learned positional embedding `[g², width]`.
    pub position: Param<Tensor<B, 2>>,
    /// Transformer blocks up to the feature layer.
    pub blocks: Vec<EncoderLayer<B>>,
    /// LayerNorm on the feature-layer tokens.
    pub norm: LayerNorm<B>,
    /// Projection of the pooled cell token `[width → d_model]`.
    pub projection: Linear<B>,
    /// Input side `S` in pixels.
    pub image_size: usize,
    /// ViT patch side `p` in pixels.
    pub vit_patch: usize,
    /// Centre tokens pooled.
    pub k_nearest: usize,
}

impl<B: Backend> MorphologyEncoder<B> {
    /// Unfold `[batch, S, S]` into `[batch, g², p²]` (token `r·g + c` holds pixels
    /// `[r·p .. r·p+p) × [c·p .. c·p+p)` row-major).
    pub fn unfold(&self, patches: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, _, _] = patches.dims();
        let p = self.vit_patch;
        let g = self.image_size / p;
        patches
            .reshape([batch, g, p, g, p])
            .permute([0, 1, 3, 2, 4])
            .reshape([batch, g * g, p * p])
    }

    /// All feature-layer tokens `[batch, g², width]` (after the LayerNorm).
    pub fn tokens(&self, patches: Tensor<B, 3>) -> Tensor<B, 3> {
        let mut h = self.patch_embedding.forward(self.unfold(patches))
            + self.position.val().unsqueeze_dim::<3>(0);
        for block in &self.blocks {
            h = block.forward(h, None);
        }
        self.norm.forward(h)
    }

    /// `patches: [batch, S, S]` (intensities in `[0, 1]`) → cell token `[batch, 1, d_model]`.
    pub fn forward(&self, patches: Tensor<B, 3>) -> Tensor<B, 3> {
        let device = patches.device();
        let h = self.tokens(patches);
        let g = self.image_size / self.vit_patch;
        let idx: Vec<i64> = centre_token_indices(g, self.k_nearest)
            .into_iter()
            .map(|i| i as i64)
            .collect();
        let n = idx.len();
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [n]), &device);
        let pooled = h.select(1, idx).mean_dim(1);
        self.projection.forward(pooled)
    }
}

/// Configuration of [`SpatialEncoder`].
#[derive(Config, Debug)]
pub struct SpatialEncoderConfig {
    /// Token width.
    pub d_model: usize,
    /// Frequencies per axis (the encoding has `4 · n_frequencies` features: sin and cos of x
    /// and y).
    #[config(default = 16)]
    pub n_frequencies: usize,
    /// Shortest wavelength in µm (about a nucleus).
    #[config(default = 8.0)]
    pub min_wavelength_um: f64,
    /// Longest wavelength in µm (about a tissue section).
    #[config(default = 8000.0)]
    pub max_wavelength_um: f64,
}

impl SpatialEncoderConfig {
    /// Build the encoder on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> SpatialEncoder<B> {
        let n = self.n_frequencies.max(1);
        SpatialEncoder {
            projection: LinearConfig::new(4 * n, self.d_model).init(device),
            n_frequencies: n,
            min_wavelength_um: self.min_wavelength_um,
            max_wavelength_um: self.max_wavelength_um,
            d_model: self.d_model,
        }
    }
}

pub use crate::engine::sinusoid_frequencies;

/// Spatial encoder: `[sin(ω x), cos(ω x), sin(ω y), cos(ω y)]` over fixed frequencies ω, then
/// `Linear(4F → d_model)` → one token.
#[derive(Module, Debug)]
pub struct SpatialEncoder<B: Backend> {
    /// Projection `[4F → d_model]`.
    pub projection: Linear<B>,
    /// Frequencies per axis `F` (fixed, see [`sinusoid_frequencies`]).
    pub n_frequencies: usize,
    /// Shortest wavelength in µm.
    pub min_wavelength_um: f64,
    /// Longest wavelength in µm.
    pub max_wavelength_um: f64,
    /// Token width.
    pub d_model: usize,
}

impl<B: Backend> SpatialEncoder<B> {
    /// The sinusoidal features `[batch, 4F]` of centroids `[batch, 2]` (µm).
    pub fn features(&self, centroids_um: Tensor<B, 2>) -> Tensor<B, 2> {
        let [batch, _] = centroids_um.dims();
        let f = self.n_frequencies;
        let w = sinusoid_frequencies(f, self.min_wavelength_um, self.max_wavelength_um);
        let w = Tensor::<B, 1>::from_data(TensorData::new(w, [f]), &centroids_um.device());
        let angles = centroids_um.unsqueeze_dim::<3>(2) * w.reshape([1, 1, f]);
        Tensor::cat(vec![angles.clone().sin(), angles.cos()], 2).reshape([batch, 4 * f])
    }

    /// `centroids_um: [batch, 2]` → `[batch, 1, d_model]`.
    pub fn forward(&self, centroids_um: Tensor<B, 2>) -> Tensor<B, 3> {
        let [batch, _] = centroids_um.dims();
        self.projection
            .forward(self.features(centroids_um))
            .reshape([batch, 1, self.d_model])
    }
}
