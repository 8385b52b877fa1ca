//! Conversion between the burn [`Classifier`] and the burn-free
//! [`EngineModel`](crate::engine::EngineModel) stored in safetensors — one export and one
//! import for every architecture.
//!
//! burn's `Linear` keeps its weight as `[d_input, d_output]`; model files store PyTorch-style
//! `[out, in]`, so weights are transposed on the way out and back in. Int8 files are
//! dequantised when loaded into burn.
//!
//! The engines run one token matmul per cell: its input is `[genes (G) | centroid sinusoid
//! (4F) | pooled ViT features (W)]` and its weight `gene_embedding` the block matrix whose
//! row blocks are the gene tokens `[T·D, G]`, the morphology token `[D, W]` and the centroid
//! token `[D, 4F]` (token order genes, morphology, centroid). `token_type` rows are the gene
//! token-type rows plus the gene modality row, then the other modality rows; the relative
//! bias table is expanded to `attention_bias [H, n, n]`; the ViT's position table is folded
//! into its patch-embedding matmul (one-hot position columns). Import undoes each step.

use std::ops::Range;

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;

use super::classifier::{relative_bias_buckets, relative_bias_index, Classifier, ClassifierOptions};
use super::encoder::EncoderLayer;
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

pub(crate) fn linear_out<B: Backend>(l: &Linear<B>) -> LinearW {
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

pub(crate) fn norm_out<B: Backend>(n: &LayerNorm<B>) -> LayerNormWeights {
    let gamma = to_vec(n.gamma.val());
    let beta = n
        .beta
        .as_ref()
        .map(|b| to_vec(b.val()))
        .unwrap_or_else(|| vec![0.0; gamma.len()]);
    LayerNormWeights { gamma, beta }
}

fn linear_in<B: Backend>(target: &mut Linear<B>, l: &LinearW, device: &B::Device) {
    let w = l.weight_f32();
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

pub(crate) fn layer_out<B: Backend>(l: &EncoderLayer<B>) -> EncoderLayerWeights {
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

/// The ViT of a morphology encoder in engine form, checked against `m`.
pub(crate) fn vit_out<B: Backend>(
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
    let dense = pe.weight_f32().into_owned(); // [W, p²]
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


fn invalid(reason: String) -> ModelFileError {
    ModelFileError::InvalidConfig { reason }
}

/// Column ranges of the token matmul's input blocks for a spec: genes, centroid sinusoid,
/// pooled ViT features.
struct InputColumns {
    genes: Range<usize>,
    spatial: Range<usize>,
    morphology: Range<usize>,
}

impl InputColumns {
    fn of(c: &crate::engine::ClassifierConfig) -> Self {
        let g = c.n_genes;
        let f = c.spatial.as_ref().map_or(0, |s| 4 * s.n_frequencies);
        let w = c.morphology.as_ref().map_or(0, |m| m.width);
        Self { genes: 0..g, spatial: g..g + f, morphology: g + f..g + f + w }
    }
}

/// Extract the weights of a trained [`Classifier`] into an [`EngineModel`] with the given
/// metadata; `meta.config` must be the model's spec. Fails (naming the reason) for specs the
/// engines cannot run (precomputed embeddings).
pub fn to_engine_model<B: Backend>(
    model: &Classifier<B>,
    meta: ModelMeta,
) -> Result<EngineModel, ModelFileError> {
    let c = meta.config.clone();
    if c != model.spec {
        return Err(invalid(format!(
            "meta.config {c:?} is not the model's spec {:?}; build the metadata from model.spec",
            model.spec
        )));
    }
    c.check_engine_inputs()?;
    if let Some(enc) = &model.genes.tokens {
        return gene_token_model_out(model, enc, meta);
    }
    if c.is_image_only() {
        return image_only_model_out(model, meta);
    }
    let genes = model
        .genes
        .counts
        .as_ref()
        .ok_or_else(|| invalid("the model reads a precomputed gene embedding".into()))?;
    let (t, d) = (c.gene_tokens, c.d_model);
    let cols = InputColumns::of(&c);
    let n_in = c.n_embedding_inputs();
    let n_tok = c.n_tokens();
    // Row blocks in token order: (columns, dense weight [rows, cols.len()], bias [rows]).
    let gene = linear_out(&genes.embedding);
    let mut blocks = vec![(cols.genes.clone(), gene.weight_f32().into_owned(), gene.bias.clone())];
    let mut morphology = None;
    if let (Some(src), Some(m)) = (&model.morphology, &c.morphology) {
        let vit = src
            .vit
            .as_ref()
            .ok_or_else(|| invalid("the model reads a precomputed image embedding".into()))?;
        let proj = linear_out(&vit.projection);
        blocks.push((cols.morphology.clone(), proj.weight_f32().into_owned(), proj.bias.clone()));
        morphology = Some(vit_out(vit, m)?);
    }
    if let Some(enc) = &model.spatial {
        let spat = linear_out(&enc.projection);
        blocks.push((cols.spatial.clone(), spat.weight_f32().into_owned(), spat.bias.clone()));
    }
    let mut w = vec![0f32; n_tok * d * n_in];
    let mut bias = Vec::with_capacity(n_tok * d);
    let mut row = 0;
    for (range, wb, bb) in &blocks {
        let width = range.len();
        if wb.len() != bb.len() * width {
            return Err(invalid(format!(
                "token block at columns {range:?} has {} weights for {} rows",
                wb.len(),
                bb.len()
            )));
        }
        for r in 0..bb.len() {
            let dst = (row + r) * n_in + range.start;
            w[dst..dst + width].copy_from_slice(&wb[r * width..(r + 1) * width]);
        }
        bias.extend_from_slice(bb);
        row += bb.len();
    }
    let mut token_type = to_vec(genes.token_type.val());
    if let Some(table) = &model.modality {
        let modality = to_vec(table.val());
        for k in 0..t {
            for j in 0..d {
                token_type[k * d + j] += modality[j];
            }
        }
        token_type.extend_from_slice(&modality[d..]);
    }
    let weights = ClassifierWeights {
        gene_embedding: LinearW { out_dim: n_tok * d, in_dim: n_in, weight: LinearWeight::F32(w), bias },
        token_type,
        attention_bias: model.attention_bias().map(to_vec),
        morphology,
        layers: model.core.encoder.layers.iter().map(layer_out).collect(),
        final_norm: norm_out(&model.core.encoder.final_norm),
        head: linear_out(&model.core.head),
        linear_path: linear_path_out(model),
    };
    EngineModel::new(meta, weights)
}

/// The engine form of a gene-token model: `gene_embedding` `[T·D, 1]` = the value vectors,
/// bias zero, `token_type` = the identity embeddings.
fn gene_token_model_out<B: Backend>(
    model: &Classifier<B>,
    enc: &super::GeneTokenEncoder<B>,
    meta: ModelMeta,
) -> Result<EngineModel, ModelFileError> {
    let value = to_vec(enc.value.val());
    let n = value.len();
    let weights = ClassifierWeights {
        gene_embedding: LinearW { out_dim: n, in_dim: 1, weight: LinearWeight::F32(value), bias: vec![0.0; n] },
        token_type: to_vec(enc.identity.val()),
        attention_bias: None,
        morphology: None,
        layers: model.core.encoder.layers.iter().map(layer_out).collect(),
        final_norm: norm_out(&model.core.encoder.final_norm),
        head: linear_out(&model.core.head),
        linear_path: linear_path_out(model),
    };
    EngineModel::new(meta, weights)
}

/// The engine form of an image-only model: `gene_embedding` `[D, W]` = the ViT's projection
/// of the pooled centre tokens, `token_type` `[1, D]` zero (one modality, no table).
fn image_only_model_out<B: Backend>(model: &Classifier<B>, meta: ModelMeta) -> Result<EngineModel, ModelFileError> {
    let m = meta.config.morphology.clone().ok_or_else(|| invalid("an image-only spec without a morphology ViT".into()))?;
    let vit = model
        .morphology
        .as_ref()
        .and_then(|src| src.vit.as_ref())
        .ok_or_else(|| invalid("the image-only model has no patch ViT".into()))?;
    let weights = ClassifierWeights {
        gene_embedding: linear_out(&vit.projection),
        token_type: vec![0.0; meta.config.d_model],
        attention_bias: None,
        morphology: Some(vit_out(vit, &m)?),
        layers: model.core.encoder.layers.iter().map(layer_out).collect(),
        final_norm: norm_out(&model.core.encoder.final_norm),
        head: linear_out(&model.core.head),
        linear_path: None,
    };
    EngineModel::new(meta, weights)
}

/// The engine form of the linear path: burn's `[G → C]` as `[C, n_inputs]`, zero weights on
/// a centroid model's sinusoid columns.
fn linear_path_out<B: Backend>(model: &Classifier<B>) -> Option<LinearW> {
    model.linear_path.as_ref().map(|l| linear_out(l).zero_padded_inputs(model.spec.n_inputs()))
}

/// Loads the file's linear path `[C, n_inputs]` into burn's `[G → C]`; errors if a column past
/// the genes is non-zero (the exporter writes zeros there).
fn linear_path_in<B: Backend>(
    m: &mut Classifier<B>,
    w: &ClassifierWeights,
    c: &crate::engine::ClassifierConfig,
    device: &B::Device,
) -> Result<(), ModelFileError> {
    let (Some(target), Some(lp)) = (m.linear_path.as_mut(), &w.linear_path) else {
        return Ok(());
    };
    let (n_in, g) = (c.n_inputs(), c.n_genes);
    let dense = lp.weight_f32();
    if let Some(k) = (0..dense.len()).find(|&k| k % n_in >= g && dense[k] != 0.0) {
        return Err(ModelFileError::Inconsistent {
            reason: format!(
                "linear_path.weight[{}, {}] is non-zero past the {g} genes; only files written by \
                 cellsymphony's exporter load into burn",
                k / n_in,
                k % n_in
            ),
        });
    }
    linear_in(target, &block(&dense, n_in, 0..c.n_classes, 0..g, &lp.bias), device);
    Ok(())
}

/// Rows `rows` and columns `cols` of a dense `[out, n_in]` weight as a linear layer.
fn block(dense: &[f32], n_in: usize, rows: Range<usize>, cols: Range<usize>, bias: &[f32]) -> LinearW {
    let mut w = Vec::with_capacity(rows.len() * cols.len());
    for r in rows.clone() {
        w.extend_from_slice(&dense[r * n_in + cols.start..r * n_in + cols.end]);
    }
    LinearW {
        out_dim: rows.len(),
        in_dim: cols.len(),
        weight: LinearWeight::F32(w),
        bias: bias[rows].to_vec(),
    }
}

fn param2<B: Backend>(values: Vec<f32>, shape: [usize; 2], device: &B::Device) -> Param<Tensor<B, 2>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
}

/// Build a burn [`Classifier`] holding the weights of an engine model file (int8 weights are
/// dequantised) — every architecture. `dropout` only matters if the result is trained further.
/// Fails when the file's token matmul is not the block matrix the exporter writes.
pub fn from_engine_model<B: Backend>(
    file: &EngineModel,
    dropout: f64,
    device: &B::Device,
) -> Result<Classifier<B>, ModelFileError> {
    let c = file.meta.config.clone();
    let mut m = ClassifierOptions::new(c.clone()).with_dropout(dropout).init::<B>(device)?;
    let w = &file.weights;
    let (t, d) = (c.gene_tokens, c.d_model);
    if let Some(enc) = m.genes.tokens.as_mut() {
        // Value vectors with the (exported-zero) bias folded into the identity embedding.
        let value = w.gene_embedding.weight_f32().into_owned();
        let identity: Vec<f32> = w.token_type.iter().zip(&w.gene_embedding.bias).map(|(a, b)| a + b).collect();
        enc.value = param2(value, [t, d], device);
        enc.identity = param2(identity, [t, d], device);
        for (layer, lw) in m.core.encoder.layers.iter_mut().zip(&w.layers) {
            layer_in(layer, lw, device);
        }
        norm_in(&mut m.core.encoder.final_norm, &w.final_norm, device);
        linear_in(&mut m.core.head, &w.head, device);
        linear_path_in(&mut m, w, &c, device)?;
        return Ok(m);
    }
    if c.is_image_only() {
        // The projection of the pooled ViT feature, token type folded into its bias.
        let (src, mc, vw) = match (m.morphology.as_mut(), &c.morphology, &w.morphology) {
            (Some(src), Some(mc), Some(vw)) => (src, mc, vw),
            _ => return Err(invalid("an image-only file without a morphology ViT".into())),
        };
        let vit = src.vit.as_mut().ok_or_else(|| invalid("no patch ViT".into()))?;
        let mut projection = w.gene_embedding.clone();
        for (b, t) in projection.bias.iter_mut().zip(&w.token_type) {
            *b += t;
        }
        linear_in(&mut vit.projection, &projection, device);
        vit_in(vit, vw, mc, device);
        for (layer, lw) in m.core.encoder.layers.iter_mut().zip(&w.layers) {
            layer_in(layer, lw, device);
        }
        norm_in(&mut m.core.encoder.final_norm, &w.final_norm, device);
        linear_in(&mut m.core.head, &w.head, device);
        return Ok(m);
    }
    let cols = InputColumns::of(&c);
    let n_in = c.n_embedding_inputs();
    let dense = w.gene_embedding.weight_f32().into_owned();
    // Row blocks in token order, checked to be zero outside their columns.
    let mut row_blocks = vec![(0..t * d, cols.genes.clone())];
    if c.morphology.is_some() {
        row_blocks.push((t * d..(t + 1) * d, cols.morphology.clone()));
    }
    if c.spatial.is_some() {
        let start = row_blocks.last().map_or(0, |b| b.0.end);
        row_blocks.push((start..start + d, cols.spatial.clone()));
    }
    for (rows, cs) in &row_blocks {
        for r in rows.clone() {
            if let Some(col) = (0..n_in).find(|&k| !cs.contains(&k) && dense[r * n_in + k] != 0.0) {
                return Err(ModelFileError::Inconsistent {
                    reason: format!(
                        "gene_embedding.weight[{r}, {col}] is non-zero outside its token's input \
                         block; only files written by cellsymphony's exporter load into burn"
                    ),
                });
            }
        }
    }
    let bias = &w.gene_embedding.bias;
    let genes = m.genes.counts.as_mut().ok_or_else(|| invalid("no count gene source".into()))?;
    linear_in(&mut genes.embedding, &block(&dense, n_in, row_blocks[0].0.clone(), row_blocks[0].1.clone(), bias), device);
    genes.token_type = param2(w.token_type[..t * d].to_vec(), [t, d], device);
    let mut next = 1;
    if let (Some(src), Some(mc), Some(vw)) = (m.morphology.as_mut(), &c.morphology, &w.morphology) {
        let vit = src.vit.as_mut().ok_or_else(|| invalid("no patch ViT".into()))?;
        let (rows, cs) = row_blocks[next].clone();
        linear_in(&mut vit.projection, &block(&dense, n_in, rows, cs, bias), device);
        vit_in(vit, vw, mc, device);
        next += 1;
    }
    if let Some(enc) = m.spatial.as_mut() {
        let (rows, cs) = row_blocks[next].clone();
        linear_in(&mut enc.projection, &block(&dense, n_in, rows, cs, bias), device);
    }
    if let Some(table) = m.modality.as_mut() {
        // The gene modality row is already in the gene token-type rows.
        let mut rows = vec![0f32; d];
        rows.extend_from_slice(&w.token_type[t * d..]);
        let n = rows.len() / d;
        *table = param2(rows, [n, d], device);
    }
    if let (Some(table), Some(expanded)) = (m.relative_bias.as_mut(), &w.attention_bias) {
        let (h, n) = (c.n_heads, c.n_tokens());
        let mut values = vec![0f32; relative_bias_buckets(t) * h];
        for (pair, &bucket) in relative_bias_index(t).iter().enumerate() {
            for head in 0..h {
                values[bucket * h + head] = expanded[head * n * n + pair];
            }
        }
        *table = param2(values, [relative_bias_buckets(t), h], device);
    }
    for (layer, lw) in m.core.encoder.layers.iter_mut().zip(&w.layers) {
        layer_in(layer, lw, device);
    }
    norm_in(&mut m.core.encoder.final_norm, &w.final_norm, device);
    linear_in(&mut m.core.head, &w.head, device);
    linear_path_in(&mut m, w, &c, device)?;
    Ok(m)
}

fn layer_in<B: Backend>(layer: &mut EncoderLayer<B>, lw: &EncoderLayerWeights, device: &B::Device) {
    norm_in(&mut layer.norm1, &lw.norm1, device);
    linear_in(&mut layer.attn.q, &lw.q, device);
    linear_in(&mut layer.attn.k, &lw.k, device);
    linear_in(&mut layer.attn.v, &lw.v, device);
    linear_in(&mut layer.attn.o, &lw.o, device);
    norm_in(&mut layer.norm2, &lw.norm2, device);
    linear_in(&mut layer.fc1, &lw.fc1, device);
    linear_in(&mut layer.fc2, &lw.fc2, device);
}

/// The ViT from its engine form: the patch-embedding matmul `[W, p² + g²]` splits into the
/// pixel weights `[W, p²]` and the position table `[g², W]`.
fn vit_in<B: Backend>(
    vit: &mut super::MorphologyEncoder<B>,
    vw: &VitWeights,
    m: &MorphologyTokenConfig,
    device: &B::Device,
) {
    let (width, p2, g2) = (m.width, m.vit_patch * m.vit_patch, m.n_vit_tokens());
    let cols = m.patch_row_width();
    let dense = vw.patch_embedding.weight_f32().into_owned();
    let pixels = block(&dense, cols, 0..width, 0..p2, &vw.patch_embedding.bias);
    linear_in(&mut vit.patch_embedding, &pixels, device);
    let mut position = vec![0f32; g2 * width];
    for o in 0..width {
        for tok in 0..g2 {
            position[tok * width + o] = dense[o * cols + p2 + tok];
        }
    }
    vit.position = param2(position, [g2, width], device);
    for (layer, lw) in vit.blocks.iter_mut().zip(&vw.layers) {
        layer_in(layer, lw, device);
    }
    norm_in(&mut vit.norm, &vw.norm, device);
}
