//! Conversion between the burn [`GeneOnlyClassifier`] and the burn-free
//! [`EngineModel`](crate::engine::EngineModel) stored in safetensors.
//!
//! burn's `Linear` keeps its weight as `[d_input, d_output]`; model files store PyTorch-style
//! `[out, in]`, so weights are transposed on the way out and back in. Int8 files are
//! dequantised when loaded into burn.

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;

use super::encoder::EncoderLayer;
use super::gene_only::{GeneOnlyClassifier, GeneOnlyClassifierConfig};
use crate::engine::{
    ClassifierWeights, EncoderLayerWeights, EngineModel, LayerNormWeights, Linear as LinearW,
    LinearWeight, ModelFileError, ModelMeta, MorphologyTokenConfig, VitWeights,
};

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 tensor data converts to Vec<f32>")
}

fn linear_out<B: Backend>(l: &Linear<B>) -> LinearW {
    let [d_in, d_out] = l.weight.val().dims();
    LinearW {
        out_dim: d_out,
        in_dim: d_in,
        weight: LinearWeight::F32(to_vec(l.weight.val().transpose())),
        bias: l
            .bias
            .as_ref()
            .map(|b| to_vec(b.val()))
            .unwrap_or_else(|| vec![0.0; d_out]),
    }
}

fn norm_out<B: Backend>(n: &LayerNorm<B>) -> LayerNormWeights {
    let gamma = to_vec(n.gamma.val());
    let beta = n
        .beta
        .as_ref()
        .map(|b| to_vec(b.val()))
        .unwrap_or_else(|| vec![0.0; gamma.len()]);
    LayerNormWeights { gamma, beta }
}

/// Dense `[out, in]` f32 weights of a stored linear layer (int8 is dequantised).
fn dense_weight(l: &LinearW) -> Vec<f32> {
    match &l.weight {
        LinearWeight::F32(w) => w.clone(),
        LinearWeight::Int8 { q, scale } => q
            .iter()
            .enumerate()
            .map(|(i, &v)| v as f32 * scale[i / l.in_dim])
            .collect(),
    }
}

fn linear_in<B: Backend>(target: &mut Linear<B>, l: &LinearW, device: &B::Device) {
    let w = dense_weight(l);
    // [out, in] → burn's [in, out]
    let mut t = vec![0.0f32; w.len()];
    for o in 0..l.out_dim {
        for i in 0..l.in_dim {
            t[i * l.out_dim + o] = w[o * l.in_dim + i];
        }
    }
    target.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(t, [l.in_dim, l.out_dim]),
        device,
    ));
    target.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(l.bias.clone(), [l.out_dim]),
        device,
    )));
}

fn norm_in<B: Backend>(target: &mut LayerNorm<B>, n: &LayerNormWeights, device: &B::Device) {
    let d = n.gamma.len();
    target.gamma = Param::from_tensor(Tensor::from_data(TensorData::new(n.gamma.clone(), [d]), device));
    target.beta = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(n.beta.clone(), [d]),
        device,
    )));
}

fn layer_out<B: Backend>(l: &EncoderLayer<B>) -> EncoderLayerWeights {
    EncoderLayerWeights {
        norm1: norm_out(&l.norm1),
        q: linear_out(&l.attn.q),
        k: linear_out(&l.attn.k),
        v: linear_out(&l.attn.v),
        o: linear_out(&l.attn.o),
        norm2: norm_out(&l.norm2),
        fc1: linear_out(&l.fc1),
        fc2: linear_out(&l.fc2),
    }
}

/// Extract fp32 weights of a trained model into an [`EngineModel`] with the given metadata
/// (`meta.config` must describe `model`).
/// Fails when `meta` does not describe the module (shapes are checked tensor by tensor).
pub fn to_engine_model<B: Backend>(
    model: &GeneOnlyClassifier<B>,
    meta: ModelMeta,
) -> Result<EngineModel, ModelFileError> {
    let weights = ClassifierWeights {
        gene_embedding: linear_out(&model.gene_embedding),
        token_type: to_vec(model.token_type.val()),
        attention_bias: None,
        morphology: None,
        layers: model.encoder.layers.iter().map(layer_out).collect(),
        final_norm: norm_out(&model.encoder.final_norm),
        head: linear_out(&model.head),
    };
    EngineModel::new(meta, weights)
}

/// Build a burn model holding the weights of `model` (int8 weights are dequantised).
/// `dropout` only matters if the result is trained further.
pub fn from_engine_model<B: Backend>(
    model: &EngineModel,
    dropout: f64,
    device: &B::Device,
) -> GeneOnlyClassifier<B> {
    let config = GeneOnlyClassifierConfig::from_engine_config(&model.meta.config, dropout);
    let mut m = config.init::<B>(device);
    let w = &model.weights;
    linear_in(&mut m.gene_embedding, &w.gene_embedding, device);
    m.token_type = Param::from_tensor(Tensor::from_data(
        TensorData::new(w.token_type.clone(), [config.gene_tokens, config.d_model]),
        device,
    ));
    for (layer, lw) in m.encoder.layers.iter_mut().zip(&w.layers) {
        norm_in(&mut layer.norm1, &lw.norm1, device);
        linear_in(&mut layer.attn.q, &lw.q, device);
        linear_in(&mut layer.attn.k, &lw.k, device);
        linear_in(&mut layer.attn.v, &lw.v, device);
        linear_in(&mut layer.attn.o, &lw.o, device);
        norm_in(&mut layer.norm2, &lw.norm2, device);
        linear_in(&mut layer.fc1, &lw.fc1, device);
        linear_in(&mut layer.fc2, &lw.fc2, device);
    }
    norm_in(&mut m.encoder.final_norm, &w.final_norm, device);
    linear_in(&mut m.head, &w.head, device);
    m
}

/// Extract a trained [`SpatialClassifier`](super::SpatialClassifier) (count input) into an
/// [`EngineModel`] that the CPU and WGSL engines run unchanged.
///
/// The centroid token is folded into the gene-token matmul: the engine's input per cell is
/// `[genes (G), spatial features (4F)]` ([`crate::engine::model_input`]) and
/// `gene_embedding` is the block matrix `[[W_gene, 0], [0, W_spatial]]` of shape
/// `[(T+1)·D, G+4F]`; `token_type` row `t < T` is the gene token-type row plus the gene
/// modality row, row `T` the spatial modality row. `meta.config.spatial` must describe the
/// model's sinusoid (`meta` from [`crate::engine::ModelMeta::new`] with that config).
/// Fails for models reading a precomputed gene embedding (the engines take counts).
pub fn spatial_to_engine_model<B: Backend>(
    model: &super::SpatialClassifier<B>,
    meta: ModelMeta,
) -> Result<EngineModel, ModelFileError> {
    multimodal_to_engine_model(
        TokenParts {
            genes: &model.genes,
            morphology: None,
            spatial: Some(&model.spatial),
            modality: to_vec(model.modality.val()),
            attention_bias: None,
            core: &model.core,
        },
        meta,
    )
}

/// Extract a trained [`DualModalityClassifier`](super::DualModalityClassifier) (count input,
/// patch ViT) into an [`EngineModel`]: the ViT is stored as [`VitWeights`] (its position
/// embedding folded into the patch-embedding matmul), and the morphology token's projection
/// becomes the block of `gene_embedding` that reads the pooled ViT features, so the token
/// matmul is `[(T+1)·D, G+W]`. `meta.config.morphology` must describe the ViT.
/// Fails for models reading precomputed embeddings.
pub fn dual_to_engine_model<B: Backend>(
    model: &super::DualModalityClassifier<B>,
    meta: ModelMeta,
) -> Result<EngineModel, ModelFileError> {
    multimodal_to_engine_model(
        TokenParts {
            genes: &model.genes,
            morphology: Some(&model.morphology),
            spatial: None,
            modality: to_vec(model.modality.val()),
            attention_bias: None,
            core: &model.core,
        },
        meta,
    )
}

/// Extract a trained [`MultiInputClassifier`](super::MultiInputClassifier) (count input,
/// patch ViT) into an [`EngineModel`]: gene, morphology and centroid tokens as in
/// [`dual_to_engine_model`] and [`spatial_to_engine_model`] (token matmul
/// `[(T+2)·D, G+4F+W]`), and the relative positional bias table expanded to the attention
/// bias `[H, T+2, T+2]` every layer adds to its scores.
pub fn multi_to_engine_model<B: Backend>(
    model: &super::MultiInputClassifier<B>,
    meta: ModelMeta,
) -> Result<EngineModel, ModelFileError> {
    multimodal_to_engine_model(
        TokenParts {
            genes: &model.genes,
            morphology: Some(&model.morphology),
            spatial: Some(&model.spatial),
            modality: to_vec(model.modality.val()),
            attention_bias: Some(to_vec(model.attention_bias())),
            core: &model.core,
        },
        meta,
    )
}

/// The modules of a multimodal classifier that the engine format folds together.
struct TokenParts<'a, B: Backend> {
    genes: &'a super::classifiers::GeneSource<B>,
    morphology: Option<&'a super::classifiers::MorphologySource<B>>,
    spatial: Option<&'a super::SpatialEncoder<B>>,
    /// Modality rows `[modalities, D]`: gene, then morphology (if any), then spatial (if any).
    modality: Vec<f32>,
    /// `[H, n, n]`.
    attention_bias: Option<Vec<f32>>,
    core: &'a super::classifiers::PooledHead<B>,
}

/// The ViT of a morphology encoder in engine form, checked against `m`.
fn vit_out<B: Backend>(
    vit: &super::MorphologyEncoder<B>,
    m: &MorphologyTokenConfig,
) -> Result<VitWeights, ModelFileError> {
    let pe = linear_out(&vit.patch_embedding);
    let (heads, ff) = vit
        .blocks
        .first()
        .map(|b| (b.attn.n_heads, b.fc1.weight.dims()[1]))
        .unwrap_or((0, 0));
    let found = (vit.image_size, vit.vit_patch, vit.k_nearest, pe.out_dim, heads, ff, vit.blocks.len());
    let wanted = (m.image_size, m.vit_patch, m.k_nearest, m.width, m.n_heads, m.d_ff, m.n_layers);
    if found != wanted || pe.in_dim != m.vit_patch * m.vit_patch {
        return Err(ModelFileError::InvalidConfig {
            reason: format!(
                "meta.config.morphology {m:?} differs from the model's ViT (image_size, vit_patch, \
                 k_nearest, width, heads, d_ff, blocks) = {found:?}"
            ),
        });
    }
    let (w, p2, g2) = (m.width, m.vit_patch * m.vit_patch, m.n_vit_tokens());
    let position = to_vec(vit.position.val()); // [g², W]
    let dense = dense_weight(&pe); // [W, p²]
    let cols = m.patch_row_width();
    let mut weight = vec![0f32; w * cols];
    for o in 0..w {
        weight[o * cols..o * cols + p2].copy_from_slice(&dense[o * p2..(o + 1) * p2]);
        for t in 0..g2 {
            weight[o * cols + p2 + t] = position[t * w + o];
        }
    }
    Ok(VitWeights {
        patch_embedding: LinearW { out_dim: w, in_dim: cols, weight: LinearWeight::F32(weight), bias: pe.bias },
        layers: vit.blocks.iter().map(layer_out).collect(),
        norm: norm_out(&vit.norm),
    })
}

/// Folds gene, morphology and centroid tokens into one block token matmul (see the public
/// wrappers) and builds the [`EngineModel`].
fn multimodal_to_engine_model<B: Backend>(
    p: TokenParts<'_, B>,
    meta: ModelMeta,
) -> Result<EngineModel, ModelFileError> {
    let c = meta.config.clone();
    let unsupported = |reason: String| ModelFileError::InvalidConfig { reason };
    let genes = p.genes.counts.as_ref().ok_or_else(|| {
        unsupported(
            "the engines run count-input models; this classifier reads a precomputed gene \
             embedding"
                .into(),
        )
    })?;
    if p.spatial.is_some() != c.spatial.is_some() || p.morphology.is_some() != c.morphology.is_some() {
        return Err(unsupported(format!(
            "meta.config (spatial {}, morphology {}) does not describe the model (spatial {}, \
             morphology {})",
            c.spatial.is_some(),
            c.morphology.is_some(),
            p.spatial.is_some(),
            p.morphology.is_some()
        )));
    }
    let (t, d, g) = (c.gene_tokens, c.d_model, c.n_genes);
    let f = c.spatial.as_ref().map_or(0, |s| 4 * s.n_frequencies);
    let n_in = c.n_embedding_inputs();
    let gene = linear_out(&genes.embedding);
    if gene.out_dim != t * d || gene.in_dim != g {
        return Err(unsupported(format!(
            "gene embedding [{}, {}], expected [{}, {g}]",
            gene.out_dim,
            gene.in_dim,
            t * d
        )));
    }
    // Token blocks: (rows' first column, in-width, weight [D or T·D, in], bias).
    let mut blocks = vec![(0usize, g, dense_weight(&gene), gene.bias.clone())];
    let mut modality_rows = vec![0usize];
    let mut next_modality = 1;
    let morphology = match (p.morphology, &c.morphology) {
        (Some(src), Some(m)) => {
            let vit = src.vit.as_ref().ok_or_else(|| {
                unsupported(
                    "the engines run the patch ViT; this classifier reads a precomputed image \
                     embedding"
                        .into(),
                )
            })?;
            let proj = linear_out(&vit.projection);
            if proj.out_dim != d || proj.in_dim != m.width {
                return Err(unsupported(format!(
                    "morphology projection [{}, {}], expected [{d}, {}]",
                    proj.out_dim, proj.in_dim, m.width
                )));
            }
            blocks.push((g + f, m.width, dense_weight(&proj), proj.bias.clone()));
            modality_rows.push(next_modality);
            next_modality += 1;
            Some(vit_out(vit, m)?)
        }
        _ => None,
    };
    if let (Some(enc), Some(sp)) = (p.spatial, &c.spatial) {
        if enc.n_frequencies != sp.n_frequencies
            || enc.min_wavelength_um != sp.min_wavelength_um
            || enc.max_wavelength_um != sp.max_wavelength_um
        {
            return Err(unsupported(format!(
                "meta.config.spatial {sp:?} differs from the model's sinusoid ({} frequencies, \
                 {}–{} µm)",
                enc.n_frequencies, enc.min_wavelength_um, enc.max_wavelength_um
            )));
        }
        let spat = linear_out(&enc.projection);
        if spat.out_dim != d || spat.in_dim != f {
            return Err(unsupported(format!(
                "spatial projection [{}, {}], expected [{d}, {f}]",
                spat.out_dim, spat.in_dim
            )));
        }
        blocks.push((g, f, dense_weight(&spat), spat.bias.clone()));
        modality_rows.push(next_modality);
    }
    let n_tok = c.n_tokens();
    let mut w = vec![0f32; n_tok * d * n_in];
    let mut bias = Vec::with_capacity(n_tok * d);
    let mut row = 0;
    for (col, width, wb, bb) in &blocks {
        for r in 0..bb.len() {
            let dst = (row + r) * n_in + col;
            w[dst..dst + width].copy_from_slice(&wb[r * width..(r + 1) * width]);
        }
        bias.extend_from_slice(bb);
        row += bb.len();
    }
    if p.modality.len() != modality_rows.len() * d {
        return Err(unsupported(format!(
            "modality table has {} values, expected [{}, {d}]",
            p.modality.len(),
            modality_rows.len()
        )));
    }
    let modality = |i: usize| &p.modality[i * d..(i + 1) * d];
    let mut token_type = to_vec(genes.token_type.val());
    for k in 0..t {
        for (j, m) in modality(0).iter().enumerate() {
            token_type[k * d + j] += m;
        }
    }
    for &i in &modality_rows[1..] {
        token_type.extend_from_slice(modality(i));
    }
    let weights = ClassifierWeights {
        gene_embedding: LinearW { out_dim: n_tok * d, in_dim: n_in, weight: LinearWeight::F32(w), bias },
        token_type,
        attention_bias: p.attention_bias,
        morphology,
        layers: p.core.encoder.layers.iter().map(layer_out).collect(),
        final_norm: norm_out(&p.core.encoder.final_norm),
        head: linear_out(&p.core.head),
    };
    EngineModel::new(meta, weights)
}
