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
    EncoderLayerWeights, EngineModel, GeneOnlyWeights, LayerNormWeights, Linear as LinearW,
    LinearWeight, ModelFileError, ModelMeta,
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
    let weights = GeneOnlyWeights {
        gene_embedding: linear_out(&model.gene_embedding),
        token_type: to_vec(model.token_type.val()),
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
    let c = meta.config.clone();
    let unsupported = |reason: String| ModelFileError::InvalidConfig { reason };
    let sp = c
        .spatial
        .clone()
        .ok_or_else(|| unsupported("meta.config.spatial is not set for a spatial classifier".into()))?;
    let genes = model.genes.counts.as_ref().ok_or_else(|| {
        unsupported(
            "the engines run count-input models; this spatial classifier reads a precomputed \
             gene embedding"
                .into(),
        )
    })?;
    if model.spatial.n_frequencies != sp.n_frequencies
        || model.spatial.min_wavelength_um != sp.min_wavelength_um
        || model.spatial.max_wavelength_um != sp.max_wavelength_um
    {
        return Err(unsupported(format!(
            "meta.config.spatial {sp:?} differs from the model's sinusoid ({} frequencies, \
             {}–{} µm)",
            model.spatial.n_frequencies, model.spatial.min_wavelength_um, model.spatial.max_wavelength_um
        )));
    }
    let (t, d, g, f) = (c.gene_tokens, c.d_model, c.n_genes, 4 * sp.n_frequencies);
    let gene = linear_out(&genes.embedding);
    let spat = linear_out(&model.spatial.projection);
    if gene.out_dim != t * d || gene.in_dim != g || spat.out_dim != d || spat.in_dim != f {
        return Err(unsupported(format!(
            "shapes: gene embedding [{}, {}] (expected [{}, {g}]), spatial projection [{}, {}] \
             (expected [{d}, {f}])",
            gene.out_dim,
            gene.in_dim,
            t * d,
            spat.out_dim,
            spat.in_dim
        )));
    }
    let (wg, ws) = (dense_weight(&gene), dense_weight(&spat));
    let n_in = g + f;
    let mut w = vec![0f32; (t + 1) * d * n_in];
    for r in 0..t * d {
        w[r * n_in..r * n_in + g].copy_from_slice(&wg[r * g..(r + 1) * g]);
    }
    for r in 0..d {
        let row = (t * d + r) * n_in;
        w[row + g..row + n_in].copy_from_slice(&ws[r * f..(r + 1) * f]);
    }
    let mut bias = gene.bias.clone();
    bias.extend_from_slice(&spat.bias);
    let modality = to_vec(model.modality.val());
    let mut token_type = to_vec(genes.token_type.val());
    for k in 0..t {
        for j in 0..d {
            token_type[k * d + j] += modality[j];
        }
    }
    token_type.extend_from_slice(&modality[d..2 * d]);
    let weights = GeneOnlyWeights {
        gene_embedding: LinearW {
            out_dim: (t + 1) * d,
            in_dim: n_in,
            weight: LinearWeight::F32(w),
            bias,
        },
        token_type,
        layers: model.core.encoder.layers.iter().map(layer_out).collect(),
        final_norm: norm_out(&model.core.encoder.final_norm),
        head: linear_out(&model.core.head),
    };
    EngineModel::new(meta, weights)
}
