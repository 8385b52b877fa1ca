//! SPATIA's multi-scale model (issue 14) as burn modules, built from
//! [`crate::engine::spec::SpatiaSpec`] (the spec documents the exact computation).
//!
//! - [`CellEncoder`]: nucleus-patch ViT tokens (queries) cross-attending to gene tokens (keys
//!   and values), mean-pooled to `z_cell`; with the masked-reconstruction decoders (genes from
//!   `z_cell`, pixels of each ViT patch from its token, MAE-style).
//! - [`NicheEncoder`]: niche-tile ViT tokens cross-attending to the mean `z_cell` of the
//!   niche's cells → `z_niche`. With one key the softmax is 1, so this block adds a learned
//!   projection of the mean cell embedding to every niche token before the FFN and pooling.
//! - tissue: a [`TransformerEncoder`] over a region's `side²` niche slots plus a fixed 2-D
//!   sinusoidal encoding ([`grid_positional_encoding`]), absent slots masked → `z_tissue`.
//! - fusion: `z_cell` cross-attends to `[z_niche, z_tissue]`; heads for cell type (on the fused
//!   `z`) and niche composition (on `z_niche`).
//!
//! Without images (`spec.images == false`) the two ViTs are replaced by learned query tokens
//! ([`LearnedQueries`]): `cell_query_tokens` tokens `[Tq, D]` (the same for every cell) attend
//! to the gene tokens, `niche_query_tokens` tokens `[Tn, D]` to the niche's mean `z_cell`; no
//! pixel decoder exists (pre-training reconstructs masked genes only) and the patches and
//! niche tiles of [`RegionInputs`] are ignored (empty `[n, 0, 0]` tensors).
//!
//! One forward pass is one tissue region ([`RegionInputs`]): all cells of its niches, so the
//! niche means and the tissue transformer see the whole region.

use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, softmax};

use super::encoder::{EncoderLayerConfig, TransformerEncoder, TransformerEncoderConfig};
use super::encoders::{GeneEncoder, GeneEncoderConfig, MorphologyEncoder, MorphologyEncoderConfig};
use crate::engine::spec::{grid_positional_encoding, SpatiaSpec};
use crate::engine::spatia::SPATIA_FORMAT_VERSION;
use crate::engine::{
    CrossBlockWeights, ModelFileError, MorphologyTokenConfig, NicheCentroids, SpatiaQueries, NicheLevelWeights, Quantization, SpatiaCellMeta, SpatiaCellModel, SpatiaCellWeights,
    SpatiaContextWeights, SpatiaHierarchyMeta, SpatiaHierarchyModel, TissueLevelWeights, SPATIA_HIERARCHY_FORMAT_VERSION,
};

/// Additive score for masked keys (large negative, finite so a fully masked row stays finite;
/// the engine's constant, so both run the same mask).
pub const MASKED_SCORE: f32 = crate::engine::spatia_hierarchy::TISSUE_MASKED_SCORE;

/// Multi-head attention of queries `[b, nq, d]` over a separate key/value set `[b, nk, d]`.
#[derive(Module, Debug)]
pub struct CrossAttention<B: Backend> {
    /// Query projection `[d → d]`.
    pub q: Linear<B>,
    /// Key projection `[d → d]`.
    pub k: Linear<B>,
    /// Value projection `[d → d]`.
    pub v: Linear<B>,
    /// Output projection `[d → d]`.
    pub o: Linear<B>,
    /// Heads.
    pub n_heads: usize,
}

impl<B: Backend> CrossAttention<B> {
    /// `x: [b, nq, d]`, `ctx: [b, nk, d]` → `[b, nq, d]`.
    pub fn forward(&self, x: Tensor<B, 3>, ctx: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, nq, d] = x.dims();
        let [_, nk, _] = ctx.dims();
        let h = self.n_heads;
        let hd = d / h;
        let q = self.q.forward(x).reshape([b, nq, h, hd]).swap_dims(1, 2);
        let k = self.k.forward(ctx.clone()).reshape([b, nk, h, hd]).swap_dims(1, 2);
        let v = self.v.forward(ctx).reshape([b, nk, h, hd]).swap_dims(1, 2);
        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((hd as f64).sqrt());
        let out = softmax(scores, 3).matmul(v).swap_dims(1, 2).reshape([b, nq, d]);
        self.o.forward(out)
    }
}

/// Pre-norm cross-attention block: `x = x + Attn(LN(x), LN(ctx)); x = x + FFN(LN(x))`.
#[derive(Module, Debug)]
pub struct CrossBlock<B: Backend> {
    /// LayerNorm of the queries.
    pub norm_q: LayerNorm<B>,
    /// LayerNorm of the keys/values.
    pub norm_kv: LayerNorm<B>,
    /// Attention.
    pub attn: CrossAttention<B>,
    /// LayerNorm before the FFN.
    pub norm_ff: LayerNorm<B>,
    /// FFN expansion `[d → d_ff]`.
    pub fc1: Linear<B>,
    /// FFN projection `[d_ff → d]`.
    pub fc2: Linear<B>,
    /// Residual dropout (training only).
    pub dropout: Dropout,
}

fn norm<B: Backend>(d: usize, eps: f64, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(d).with_epsilon(eps).init(device)
}

fn cross_block<B: Backend>(spec: &SpatiaSpec, dropout: f64, device: &B::Device) -> CrossBlock<B> {
    let d = spec.d_model;
    let lin = |i, o| LinearConfig::new(i, o).init(device);
    CrossBlock {
        norm_q: norm(d, spec.layer_norm_eps, device),
        norm_kv: norm(d, spec.layer_norm_eps, device),
        attn: CrossAttention { q: lin(d, d), k: lin(d, d), v: lin(d, d), o: lin(d, d), n_heads: spec.n_heads },
        norm_ff: norm(d, spec.layer_norm_eps, device),
        fc1: lin(d, spec.d_ff),
        fc2: lin(spec.d_ff, d),
        dropout: DropoutConfig::new(dropout).init(),
    }
}

impl<B: Backend> CrossBlock<B> {
    /// `x: [b, nq, d]`, `ctx: [b, nk, d]` → `[b, nq, d]`.
    pub fn forward(&self, x: Tensor<B, 3>, ctx: Tensor<B, 3>) -> Tensor<B, 3> {
        let a = self.attn.forward(self.norm_q.forward(x.clone()), self.norm_kv.forward(ctx));
        let x = x + self.dropout.forward(a);
        let f = self.fc2.forward(gelu(self.fc1.forward(self.norm_ff.forward(x.clone()))));
        x + self.dropout.forward(f)
    }
}

/// Learned query tokens `[T, D]` (the image-free SPATIA's replacement of a ViT), broadcast to
/// every item.
#[derive(Module, Debug)]
pub struct LearnedQueries<B: Backend> {
    /// `[T, D]`.
    pub tokens: Param<Tensor<B, 2>>,
}

impl<B: Backend> LearnedQueries<B> {
    /// `T` tokens of width `d`, normal with sd 0.02 (the cross block's LayerNorm rescales them).
    pub fn init(t: usize, d: usize, device: &B::Device) -> Self {
        Self { tokens: burn::nn::Initializer::Normal { mean: 0.0, std: 0.02 }.init([t, d], device) }
    }

    /// `[b, T, D]`: the tokens repeated for `b` items.
    pub fn forward(&self, b: usize) -> Tensor<B, 3> {
        let [t, d] = self.tokens.dims();
        self.tokens.val().unsqueeze_dim::<3>(0).expand([b, t, d])
    }
}

fn vit<B: Backend>(m: &MorphologyTokenConfig, spec: &SpatiaSpec, dropout: f64, device: &B::Device) -> MorphologyEncoder<B> {
    MorphologyEncoderConfig::from_spec(m, spec.d_model, dropout, spec.layer_norm_eps).init(device)
}

/// `[b, d]` mean over the tokens of `[b, n, d]`.
fn pool<B: Backend>(h: Tensor<B, 3>) -> Tensor<B, 2> {
    let [b, _, d] = h.dims();
    h.mean_dim(1).reshape([b, d])
}

/// The cell level and its pre-training decoders.
#[derive(Module, Debug)]
pub struct CellEncoder<B: Backend> {
    /// Gene tokens `[b, T, D]` from normalised expression.
    pub genes: GeneEncoder<B>,
    /// Nucleus-patch ViT (its `projection` maps every token to `D`; with images).
    pub vit: Option<MorphologyEncoder<B>>,
    /// Learned query tokens `[Tq, D]` (without images).
    pub queries: Option<LearnedQueries<B>>,
    /// Image tokens (or learned queries) attend to gene tokens.
    pub cross: CrossBlock<B>,
    /// LayerNorm of the pooled `z_cell`.
    pub norm: LayerNorm<B>,
    /// Masked-gene decoder `[D → G]` on `z_cell`.
    pub gene_decoder: Linear<B>,
    /// Pixel decoder, hidden layer `[D → d_ff]` per image token (with images).
    pub pixel_hidden: Option<Linear<B>>,
    /// Pixel decoder, output `[d_ff → p²]` per image token (with images).
    pub pixel_out: Option<Linear<B>>,
}

impl<B: Backend> CellEncoder<B> {
    /// Build from the spec.
    pub fn init(spec: &SpatiaSpec, dropout: f64, device: &B::Device) -> Self {
        let p = spec.cell_image.vit_patch;
        let im = spec.images;
        Self {
            genes: GeneEncoderConfig::new(spec.n_genes, spec.d_model).with_tokens(spec.gene_tokens).init(device),
            vit: im.then(|| vit(&spec.cell_image, spec, dropout, device)),
            queries: (!im).then(|| LearnedQueries::init(spec.cell_query_tokens, spec.d_model, device)),
            cross: cross_block(spec, dropout, device),
            norm: norm(spec.d_model, spec.layer_norm_eps, device),
            gene_decoder: LinearConfig::new(spec.d_model, spec.n_genes).init(device),
            pixel_hidden: im.then(|| LinearConfig::new(spec.d_model, spec.d_ff).init(device)),
            pixel_out: im.then(|| LinearConfig::new(spec.d_ff, p * p).init(device)),
        }
    }

    /// Fused query tokens `[b, g², D]` (image tokens) or `[b, Tq, D]` (learned queries) of
    /// `genes: [b, G]`, `patches: [b, S, S]` (ignored without images).
    pub fn tokens(&self, genes: Tensor<B, 2>, patches: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, _] = genes.dims();
        let q = match (&self.vit, &self.queries) {
            (Some(vit), _) => vit.projection.forward(vit.tokens(patches)),
            (None, Some(q)) => q.forward(b),
            (None, None) => unreachable!("CellEncoder::init builds a ViT or learned queries"),
        };
        self.cross.forward(q, self.genes.forward(genes))
    }

    /// `z_cell: [b, D]`.
    pub fn forward(&self, genes: Tensor<B, 2>, patches: Tensor<B, 3>) -> Tensor<B, 2> {
        self.norm.forward(pool(self.tokens(genes, patches)))
    }

    /// [`Module::load_record`] without drawing from the backend RNG: burn's
    /// `Option<Module>::load_record` first counts the parameters, which initialises lazy
    /// parameters from the (seeded, process-global) RNG and so shifts every later
    /// initialisation of a seeded run. The optional parts are loaded one by one instead, so
    /// fine-tuning from a pre-trained cell level draws what it drew before they were optional.
    pub fn load_record_keeping_rng(self, r: CellEncoderRecord<B>) -> Self {
        fn opt<B: Backend, M: Module<B>>(m: Option<M>, r: Option<M::Record>) -> Option<M> {
            match (m, r) {
                (Some(m), Some(r)) => Some(m.load_record(r)),
                (m, _) => m,
            }
        }
        Self {
            genes: self.genes.load_record(r.genes),
            vit: opt(self.vit, r.vit),
            queries: opt(self.queries, r.queries),
            cross: self.cross.load_record(r.cross),
            norm: self.norm.load_record(r.norm),
            gene_decoder: self.gene_decoder.load_record(r.gene_decoder),
            pixel_hidden: opt(self.pixel_hidden, r.pixel_hidden),
            pixel_out: opt(self.pixel_out, r.pixel_out),
        }
    }

    /// Masked reconstruction from masked inputs: predicted genes `[b, G]` (from `z_cell`) and,
    /// with images, predicted pixels `[b, g², p²]` of every ViT patch (from its fused token;
    /// row-major pixels, the layout of [`MorphologyEncoder::unfold`]).
    pub fn reconstruct(&self, genes: Tensor<B, 2>, patches: Tensor<B, 3>) -> (Tensor<B, 2>, Option<Tensor<B, 3>>) {
        let h = self.tokens(genes, patches);
        let z = self.norm.forward(pool(h.clone()));
        let pixels = match (&self.pixel_hidden, &self.pixel_out) {
            (Some(hidden), Some(out)) => Some(out.forward(gelu(hidden.forward(h)))),
            _ => None,
        };
        (self.gene_decoder.forward(z), pixels)
    }
}

/// The niche level.
#[derive(Module, Debug)]
pub struct NicheEncoder<B: Backend> {
    /// Niche-tile ViT (with images).
    pub vit: Option<MorphologyEncoder<B>>,
    /// Learned query tokens `[Tn, D]` (without images).
    pub queries: Option<LearnedQueries<B>>,
    /// Niche tokens attend to the mean cell embedding.
    pub cross: CrossBlock<B>,
    /// LayerNorm of the pooled `z_niche`.
    pub norm: LayerNorm<B>,
}

impl<B: Backend> NicheEncoder<B> {
    /// `images: [n, S', S']` (ignored without images), `cell_mean: [n, D]` → `z_niche: [n, D]`.
    pub fn forward(&self, images: Tensor<B, 3>, cell_mean: Tensor<B, 2>) -> Tensor<B, 2> {
        let [n, _] = cell_mean.dims();
        let t = match (&self.vit, &self.queries) {
            (Some(vit), _) => vit.projection.forward(vit.tokens(images)),
            (None, Some(q)) => q.forward(n),
            (None, None) => unreachable!("SpatiaModel::init builds a niche ViT or learned queries"),
        };
        self.norm.forward(pool(self.cross.forward(t, cell_mean.unsqueeze_dim::<3>(1))))
    }
}

/// One tissue region's inputs: its cells (every cell of its non-empty niches) and niches.
#[derive(Debug, Clone)]
pub struct RegionInputs<B: Backend> {
    /// Normalised expression `[cells, G]`.
    pub genes: Tensor<B, 2>,
    /// Nucleus patches `[cells, S, S]` in `[0, 1]` (`[cells, 0, 0]` without images).
    pub patches: Tensor<B, 3>,
    /// Niche tiles `[niches, S', S']` in `[0, 1]` (`[niches, 0, 0]` without images).
    pub niche_images: Tensor<B, 3>,
    /// Local niche (row of `niche_images`) of each cell, `[cells]`.
    pub cell_niche: Vec<usize>,
    /// Region slot (`row · side + col`) of each niche, `[niches]`, distinct.
    pub niche_slot: Vec<usize>,
}

/// What a forward pass over one region yields.
#[derive(Debug, Clone)]
pub struct SpatiaOutput<B: Backend> {
    /// `[cells, D]`.
    pub z_cell: Tensor<B, 2>,
    /// `[niches, D]` (niche level only).
    pub z_niche: Option<Tensor<B, 2>>,
    /// `[niches, D]` (tissue level only).
    pub z_tissue: Option<Tensor<B, 2>>,
    /// Fused cell embedding `[cells, D]` (`z_cell` without context levels).
    pub z: Tensor<B, 2>,
    /// Cell-type logits `[cells, C]`.
    pub logits: Tensor<B, 2>,
    /// Niche-composition logits `[niches, C]` (niche level only).
    pub composition: Option<Tensor<B, 2>>,
}

/// SPATIA's model (see the module docs and [`SpatiaSpec`]).
#[derive(Module, Debug)]
pub struct SpatiaModel<B: Backend> {
    /// Cell level (+ pre-training decoders).
    pub cell: CellEncoder<B>,
    /// Niche level.
    pub niche: Option<NicheEncoder<B>>,
    /// Tissue transformer.
    pub tissue: Option<TransformerEncoder<B>>,
    /// Fusion of `z_cell` with its context tokens.
    pub fusion: Option<CrossBlock<B>>,
    /// LayerNorm of the fused embedding.
    pub fusion_norm: Option<LayerNorm<B>>,
    /// Cell-type head `[D → C]`.
    pub type_head: Linear<B>,
    /// Niche-composition head `[D → C]`.
    pub composition_head: Option<Linear<B>>,
    /// Attention heads (for the tissue mask).
    pub n_heads: usize,
    /// Region side in niches.
    pub region_side: usize,
}

impl<B: Backend> SpatiaModel<B> {
    /// Build from `spec` with fresh weights; errors (naming the field) for an invalid spec or
    /// dropout.
    pub fn init(spec: &SpatiaSpec, dropout: f64, device: &B::Device) -> Result<Self, ModelFileError> {
        spec.validate()?;
        if !(0.0..1.0).contains(&dropout) {
            return Err(ModelFileError::InvalidConfig { reason: format!("dropout {dropout} must be in [0, 1)") });
        }
        let levels = spec.levels;
        let d = spec.d_model;
        let niche = levels.has_niche().then(|| NicheEncoder {
            vit: spec.images.then(|| vit(&spec.niche_image, spec, dropout, device)),
            queries: (!spec.images).then(|| LearnedQueries::init(spec.niche_query_tokens, d, device)),
            cross: cross_block(spec, dropout, device),
            norm: norm(d, spec.layer_norm_eps, device),
        });
        let tissue = levels.has_tissue().then(|| {
            let layer = EncoderLayerConfig::new(d, spec.n_heads, spec.d_ff)
                .with_dropout(dropout)
                .with_layer_norm_eps(spec.layer_norm_eps);
            TransformerEncoderConfig::new(layer).with_n_layers(spec.tissue_layers).init(device)
        });
        Ok(Self {
            cell: CellEncoder::init(spec, dropout, device),
            niche,
            tissue,
            fusion: levels.has_niche().then(|| cross_block(spec, dropout, device)),
            fusion_norm: levels.has_niche().then(|| norm(d, spec.layer_norm_eps, device)),
            type_head: LinearConfig::new(d, spec.n_classes).init(device),
            composition_head: levels.has_niche().then(|| LinearConfig::new(d, spec.n_classes).init(device)),
            n_heads: spec.n_heads,
            region_side: spec.region_niches,
        })
    }

    /// One region's forward pass.
    pub fn forward(&self, x: &RegionInputs<B>) -> SpatiaOutput<B> {
        let device = x.genes.device();
        let z_cell = self.cell.forward(x.genes.clone(), x.patches.clone());
        let [n_cells, d] = z_cell.dims();
        let n_niches = x.niche_slot.len();
        let (mut z_niche, mut z_tissue, mut composition) = (None, None, None);
        let mut z = z_cell.clone();
        if let (Some(niche), Some(fusion), Some(fusion_norm)) = (&self.niche, &self.fusion, &self.fusion_norm) {
            // Mean of each niche's cells: [niches, cells] averaging matrix × z_cell.
            let mut counts = vec![0usize; n_niches];
            for &k in &x.cell_niche {
                counts[k] += 1;
            }
            let mut avg = vec![0f32; n_niches * n_cells];
            for (c, &k) in x.cell_niche.iter().enumerate() {
                avg[k * n_cells + c] = 1.0 / counts[k] as f32;
            }
            let avg = Tensor::<B, 2>::from_data(TensorData::new(avg, [n_niches, n_cells]), &device);
            let zn = niche.forward(x.niche_images.clone(), avg.matmul(z_cell.clone()));
            let idx: Vec<i64> = x.cell_niche.iter().map(|&k| k as i64).collect();
            let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [n_cells]), &device);
            let mut ctx = vec![zn.clone().select(0, idx.clone()).unsqueeze_dim::<3>(1)];
            if let Some(tissue) = &self.tissue {
                let zt = self.tissue_forward(tissue, zn.clone(), &x.niche_slot);
                ctx.push(zt.clone().select(0, idx).unsqueeze_dim::<3>(1));
                z_tissue = Some(zt);
            }
            let fused = fusion.forward(z_cell.clone().unsqueeze_dim::<3>(1), Tensor::cat(ctx, 1));
            z = fusion_norm.forward(fused.reshape([n_cells, d]));
            composition = self.composition_head.as_ref().map(|h| h.forward(zn.clone()));
            z_niche = Some(zn);
        }
        let logits = self.type_head.forward(z.clone());
        SpatiaOutput { z_cell, z_niche, z_tissue, z, logits, composition }
    }

    /// `z_niche: [niches, D]` placed in the region's `side²` slots (+ the 2-D encoding), the
    /// transformer with absent slots masked as keys, read back per niche → `[niches, D]`.
    fn tissue_forward(&self, tissue: &TransformerEncoder<B>, z_niche: Tensor<B, 2>, slots: &[usize]) -> Tensor<B, 2> {
        let device = z_niche.device();
        let [n, d] = z_niche.dims();
        let s2 = self.region_side * self.region_side;
        let mut place = vec![0f32; s2 * n];
        let mut present = vec![false; s2];
        for (k, &s) in slots.iter().enumerate() {
            place[s * n + k] = 1.0;
            present[s] = true;
        }
        let place = Tensor::<B, 2>::from_data(TensorData::new(place, [s2, n]), &device);
        let pe = grid_positional_encoding(self.region_side, d);
        let pe = Tensor::<B, 2>::from_data(TensorData::new(pe, [s2, d]), &device);
        let h = (place.clone().matmul(z_niche) + pe).unsqueeze_dim::<3>(0);
        let mut bias = vec![0f32; s2 * s2];
        for q in 0..s2 {
            for k in 0..s2 {
                if !present[k] {
                    bias[q * s2 + k] = MASKED_SCORE;
                }
            }
        }
        let bias = Tensor::<B, 2>::from_data(TensorData::new(bias, [s2, s2]), &device)
            .unsqueeze_dim::<3>(0)
            .unsqueeze_dim::<4>(0)
            .expand([1, self.n_heads, s2, s2]);
        let out = tissue.forward(h, Some(bias)).reshape([s2, d]);
        place.transpose().matmul(out)
    }
}

impl<B: Backend> SpatiaModel<B> {
    /// The cell level (and, for a `--levels cell` model, its cell-type head) as the burn-free
    /// engine's [`SpatiaCellModel`] (f32; `quantize_int8` for int8), with `spec` the model's
    /// spec and `classes` its class names. The gene encoder's token-type table is folded into
    /// its bias and the ViT's position table into its patch embedding.
    ///
    /// Errors: `classes` not matching `spec.n_classes`, a ViT that differs from
    /// `spec.cell_image`.
    pub fn cell_level_to_engine(&self, spec: &SpatiaSpec, classes: Vec<String>) -> Result<SpatiaCellModel, ModelFileError> {
        use super::convert::{linear_out, norm_out};
        let cell = &self.cell;
        let mut gene_embedding = linear_out(&cell.genes.embedding);
        let token_type: Vec<f32> = cell.genes.token_type.val().into_data().convert::<f32>().into_vec::<f32>().map_err(|e| ModelFileError::InvalidConfig { reason: format!("token_type: {e:?}") })?;
        for (b, t) in gene_embedding.bias.iter_mut().zip(&token_type) {
            *b += t;
        }
        let meta = SpatiaCellMeta { format_version: SPATIA_FORMAT_VERSION, spec: spec.clone(), classes, quantization: Quantization::None };
        let weights = SpatiaCellWeights {
            gene_embedding,
            queries: queries_out(cell.vit.as_ref(), cell.queries.as_ref(), &spec.cell_image, "cell")?,
            cross: cross_out(&cell.cross),
            norm: norm_out(&cell.norm),
            type_head: (spec.levels == crate::engine::spec::SpatiaLevels::Cell).then(|| linear_out(&self.type_head)),
        };
        SpatiaCellModel::new(meta, weights)
    }

    /// The whole hierarchy as the burn-free engine's [`SpatiaHierarchyModel`] (f32;
    /// `quantize_int8` for int8): the cell level as [`Self::cell_level_to_engine`] gives it and,
    /// for a niche/tissue model, the niche ViT (position table folded into its patch
    /// embedding), its cross block and norm, the tissue layers and final norm, the fusion block
    /// and norm and both heads. `niche_centroids`: k-means centroids of `z_niche` to store.
    ///
    /// Errors: as [`Self::cell_level_to_engine`]; a niche ViT that differs from
    /// `spec.niche_image`; modules that do not match `spec.levels`; invalid centroids.
    pub fn to_engine(&self, spec: &SpatiaSpec, classes: Vec<String>, niche_centroids: Option<NicheCentroids>) -> Result<SpatiaHierarchyModel, ModelFileError> {
        use super::convert::{layer_out, linear_out, norm_out};
        let cell = self.cell_level_to_engine(spec, classes)?;
        let context = match (&self.niche, &self.fusion, &self.fusion_norm, &self.composition_head) {
            (Some(niche), Some(fusion), Some(fusion_norm), Some(comp)) => Some(SpatiaContextWeights {
                niche: NicheLevelWeights {
                    queries: queries_out(niche.vit.as_ref(), niche.queries.as_ref(), &spec.niche_image, "niche")?,
                    cross: cross_out(&niche.cross),
                    norm: norm_out(&niche.norm),
                },
                tissue: self.tissue.as_ref().map(|t| TissueLevelWeights { layers: t.layers.iter().map(layer_out).collect(), final_norm: norm_out(&t.final_norm) }),
                fusion: cross_out(fusion),
                fusion_norm: norm_out(fusion_norm),
                type_head: linear_out(&self.type_head),
                composition_head: linear_out(comp),
            }),
            _ => None,
        };
        let meta = SpatiaHierarchyMeta {
            format_version: SPATIA_HIERARCHY_FORMAT_VERSION,
            spec: spec.clone(),
            classes: cell.meta.classes,
            quantization: Quantization::None,
            niche_centroids,
        };
        SpatiaHierarchyModel::new(meta, cell.weights, context)
    }
}

/// A level's queries in engine form: the ViT (position table folded) and its projection, or
/// the learned tokens.
fn queries_out<B: Backend>(vit: Option<&MorphologyEncoder<B>>, learned: Option<&LearnedQueries<B>>, cfg: &MorphologyTokenConfig, level: &str) -> Result<SpatiaQueries, ModelFileError> {
    use super::convert::{linear_out, vit_out};
    match (vit, learned) {
        (Some(v), _) => Ok(SpatiaQueries::Vit { vit: vit_out(v, cfg)?, projection: linear_out(&v.projection) }),
        (None, Some(q)) => {
            let [n, _] = q.tokens.dims();
            let tokens = q.tokens.val().into_data().convert::<f32>().into_vec::<f32>().map_err(|e| ModelFileError::InvalidConfig { reason: format!("{level} queries: {e:?}") })?;
            Ok(SpatiaQueries::Learned { n, tokens })
        }
        (None, None) => Err(ModelFileError::InvalidConfig { reason: format!("the {level} level has neither a ViT nor learned queries") }),
    }
}

/// A burn cross block in engine form.
fn cross_out<B: Backend>(x: &CrossBlock<B>) -> CrossBlockWeights {
    use super::convert::{linear_out, norm_out};
    CrossBlockWeights {
        norm_q: norm_out(&x.norm_q),
        norm_kv: norm_out(&x.norm_kv),
        q: linear_out(&x.attn.q),
        k: linear_out(&x.attn.k),
        v: linear_out(&x.attn.v),
        o: linear_out(&x.attn.o),
        norm_ff: norm_out(&x.norm_ff),
        fc1: linear_out(&x.fc1),
        fc2: linear_out(&x.fc2),
    }
}
