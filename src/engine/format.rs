//! Model file format: safetensors tensors plus one JSON metadata entry.
//!
//! This is the contract between the trainer's exporter and the inference engine.
//!
//! # Tensors
//! Linear weights are stored `[out, in]` row-major (PyTorch layout); all tensors are `F32`
//! unless quantised. With `T = gene_tokens`, `D = d_model`, `F = d_ff`, `G = n_genes`,
//! `C = n_classes`:
//!
//! | name | shape |
//! |---|---|
//! | `gene_embedding.weight`, `gene_embedding.bias` | `[T*D, G]`, `[T*D]` |
//! | `token_type` | `[T, D]` |
//! | `layers.{i}.norm1.gamma`, `.beta` | `[D]` |
//! | `layers.{i}.attn.{q,k,v,o}.weight`, `.bias` | `[D, D]`, `[D]` |
//! | `layers.{i}.norm2.gamma`, `.beta` | `[D]` |
//! | `layers.{i}.ffn.fc1.weight`, `.bias` | `[F, D]`, `[F]` |
//! | `layers.{i}.ffn.fc2.weight`, `.bias` | `[D, F]`, `[D]` |
//! | `final_norm.gamma`, `.beta` | `[D]` |
//! | `head.weight`, `head.bias` | `[C, D]`, `[C]` |
//! | `linear_path.weight`, `.bias` | `[C, n_inputs]`, `[C]` (only with `config.linear_path`: added to the head's logits) |
//!
//! Here `T = n_tokens()` (gene tokens, then a morphology token, then a centroid token, as the
//! config has them) and the token matmul reads `n_embedding_inputs()` values per cell: the
//! genes, the sinusoid features of a centroid token (`4F`), then the pooled ViT features
//! (`W`). Multimodal architectures add:
//!
//! | name | shape | when |
//! |---|---|---|
//! | `attention_bias` | `[H, T, T]` | multi-input: added to every layer's attention scores |
//! | `morphology.patch_embedding.weight`, `.bias` | `[W, p² + g²]`, `[W]` | morphology token: pixels then one-hot position (`g = S/p`) |
//! | `morphology.layers.{i}.…` | as `layers.{i}` with width `W`, feed-forward `Fv` | morphology token |
//! | `morphology.norm.gamma`, `.beta` | `[W]` | morphology token |
//!
//! In the int8 variant every `X.weight` is replaced by `X.weight_q` (`I8`, `[out, in]`) and
//! `X.weight_scale` (`F32`, `[out]`), symmetric per output channel (see [`crate::quant`]).
//!
//! # Metadata
//! `__metadata__["cellsymphony"]` holds the JSON form of [`ModelMeta`]:
//! `{"format_version":1,"architecture":"gene_only","config":{..},"genes":[..],"classes":[..],
//! "normalisation":{"kind":"log1p_cp10k","target_sum":10000.0},
//! "quantization":"none"|"int8_per_channel_symmetric","training":{..}}`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use safetensors::{Dtype, SafeTensors, View};
use serde::{Deserialize, Serialize};

use super::error::ModelFileError;
use crate::util::rng::SplitMix64;
pub use super::spec::{
    centre_token_indices, Architecture, ClassifierConfig, GeneEncoderKind, GeneSelection, GeneTokenPanel,
    DEFAULT_MAX_GENE_TOKENS, MAX_GENE_TOKENS, MorphologyTokenConfig, SpatialTokenConfig,
    TokenSources, ARCHITECTURE_DUAL_MODALITY, ARCHITECTURE_GENE_ONLY, ARCHITECTURE_MULTI_INPUT,
    ARCHITECTURE_IMAGE_ONLY, ARCHITECTURE_SPATIAL,
};
pub use crate::quant::{Linear, LinearWeight};
pub use super::normalisation::{
    Normalisation, Standardisation, Transform, NORMALISATION_ARCSINH, NORMALISATION_AS_STORED,
    NORMALISATION_LOG1P_CP10K,
};

/// Largest magnitude a stored f32 parameter may have. Trained weights, biases, LayerNorm
/// parameters and int8 scales are orders of magnitude below this; a flipped exponent bit is
/// not (e.g. a scale of 3.4e35).
pub const MAX_PARAMETER_MAGNITUDE: f32 = 1e6;
/// Metadata key of the content checksum: CRC-32 (hex) over every tensor's name and bytes in
/// name order, written at export and verified at load (files without it load unchecked).
pub const CHECKSUM_KEY: &str = "cellsymphony_crc32";

/// CRC-32 over `(name, bytes)` pairs in name order (the caller sorts).
fn content_checksum<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut h = crc32fast::Hasher::new();
    for (name, data) in tensors {
        h.update(name.as_bytes());
        h.update(&(data.len() as u64).to_le_bytes());
        h.update(data);
    }
    format!("{:08x}", h.finalize())
}

/// The newest `format_version` this build reads and writes: 1 (summary gene tokens) and 2
/// (adds `config.gene_token_panel`) are read; a file is written with the version its config
/// needs ([`ClassifierConfig::format_version`]).
pub const FORMAT_VERSION: u32 = 2;
/// Key of the JSON entry in the safetensors `__metadata__` map.
pub const METADATA_KEY: &str = "cellsymphony";
/// Weight storage of a model file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Quantization {
    /// All tensors `F32`.
    #[serde(rename = "none")]
    None,
    /// Linear weights int8 with per-output-channel symmetric `F32` scales.
    #[serde(rename = "int8_per_channel_symmetric")]
    Int8PerChannelSymmetric,
}

impl Quantization {
    /// The metadata string (`"none"` or `"int8_per_channel_symmetric"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Quantization::None => "none",
            Quantization::Int8PerChannelSymmetric => "int8_per_channel_symmetric",
        }
    }
}

/// Everything in the `cellsymphony` metadata entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// File format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Architecture name ([`ARCHITECTURE_GENE_ONLY`]).
    pub architecture: String,
    /// Hyperparameters.
    pub config: ClassifierConfig,
    /// Gene names `[G]`, in the column order the model expects.
    pub genes: Vec<String>,
    /// Class names `[C]`, in logit order.
    pub classes: Vec<String>,
    /// Input normalisation.
    pub normalisation: Normalisation,
    /// Weight storage.
    pub quantization: Quantization,
    /// Protein channels read beside the genes (models trained with `--protein`): the model
    /// input is `[genes (G), proteins (P)]` and `config.n_genes = G + P` (see
    /// [`super::ProteinChannels`]). Absent for gene-only inputs and in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proteins: Option<super::ProteinChannels>,
    /// Free-form training information (kept verbatim).
    #[serde(default)]
    pub training: serde_json::Value,
}

impl ModelMeta {
    /// Metadata for a new f32 model with default normalisation and empty training info.
    pub fn new(config: ClassifierConfig, genes: Vec<String>, classes: Vec<String>) -> Self {
        Self {
            format_version: config.format_version(),
            architecture: config.architecture().unwrap_or(ARCHITECTURE_GENE_ONLY).to_string(),
            config,
            genes,
            classes,
            normalisation: Normalisation::default(),
            quantization: Quantization::None,
            proteins: None,
            training: serde_json::Value::Object(Default::default()),
        }
    }

    /// Parses the metadata JSON, checking `format_version` before the rest of the schema,
    /// then [`validate`](Self::validate)s it.
    pub fn from_json(json: &str) -> Result<Self, ModelFileError> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| ModelFileError::InvalidMetadata {
                reason: e.to_string(),
            })?;
        let version =
            value
                .get("format_version")
                .ok_or_else(|| ModelFileError::InvalidMetadata {
                    reason: "missing field `format_version`".to_string(),
                })?;
        let version = version
            .as_u64()
            .ok_or_else(|| ModelFileError::InvalidMetadata {
                reason: format!("`format_version` must be an unsigned integer, found {version}"),
            })?;
        if !(1..=FORMAT_VERSION as u64).contains(&version) {
            return Err(ModelFileError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        // The normalisation first, so its errors keep their type (field and value) rather
        // than becoming serde's message.
        if let Some(n) = value.get("normalisation") {
            let json: super::normalisation::NormalisationJson = serde_json::from_value(n.clone()).map_err(|e| {
                ModelFileError::InvalidMetadata { reason: format!("normalisation: {e}") }
            })?;
            Normalisation::try_from(json)?;
        }
        let meta: ModelMeta =
            serde_json::from_value(value).map_err(|e| ModelFileError::InvalidMetadata {
                reason: e.to_string(),
            })?;
        meta.validate()?;
        Ok(meta)
    }

    /// Genes `G` of the model input (`config.n_genes` less the protein markers read beside
    /// them).
    pub fn n_rna_genes(&self) -> usize {
        self.config.n_genes - self.proteins.as_ref().map_or(0, |p| p.len())
    }

    /// The metadata as compact JSON.
    pub fn to_json(&self) -> Result<String, ModelFileError> {
        serde_json::to_string(self).map_err(|e| ModelFileError::InvalidMetadata {
            reason: e.to_string(),
        })
    }

    /// Checks version, architecture, config, normalisation, and that the gene/class lists
    /// match the config and have no duplicates.
    pub fn validate(&self) -> Result<(), ModelFileError> {
        if !(1..=FORMAT_VERSION).contains(&self.format_version) {
            return Err(ModelFileError::UnsupportedVersion {
                found: self.format_version as u64,
                supported: FORMAT_VERSION,
            });
        }
        if self.format_version < self.config.format_version() {
            return Err(ModelFileError::InvalidMetadata {
                reason: format!(
                    "format_version = {} but config.gene_token_panel needs format_version {}; re-export the model",
                    self.format_version,
                    self.config.format_version()
                ),
            });
        }
        let known = [
            ARCHITECTURE_GENE_ONLY,
            ARCHITECTURE_SPATIAL,
            ARCHITECTURE_DUAL_MODALITY,
            ARCHITECTURE_MULTI_INPUT,
            ARCHITECTURE_IMAGE_ONLY,
        ];
        if !known.contains(&self.architecture.as_str()) {
            return Err(ModelFileError::UnsupportedArchitecture {
                found: self.architecture.clone(),
            });
        }
        let expected = self.config.architecture()?;
        if self.architecture != expected {
            return Err(ModelFileError::InvalidMetadata {
                reason: format!(
                    "architecture is {:?} but the config has {} centroid token, {} morphology \
                     token and {} attention bias, which is {expected:?}; re-export the model",
                    self.architecture,
                    if self.config.spatial.is_some() { "a" } else { "no" },
                    if self.config.morphology.is_some() { "a" } else { "no" },
                    if self.config.attention_bias { "an" } else { "no" },
                ),
            });
        }
        self.config.validate()?;
        self.config.check_engine_inputs()?;
        let n_markers = match &self.proteins {
            Some(p) => {
                p.validate()?;
                if p.len() >= self.config.n_genes {
                    return Err(ModelFileError::InvalidConfig {
                        reason: format!(
                            "{} protein markers but config.n_genes = {}; n_genes counts the genes plus the markers",
                            p.len(),
                            self.config.n_genes
                        ),
                    });
                }
                p.len()
            }
            None => 0,
        };
        self.normalisation.validate(Some(self.n_rna_genes()))?;
        for (what, names, n) in [
            ("genes", &self.genes, self.config.n_genes - n_markers),
            ("classes", &self.classes, self.config.n_classes),
        ] {
            if names.len() != n {
                return Err(ModelFileError::InvalidConfig {
                    reason: format!("metadata lists {} {what} but config says {n}", names.len()),
                });
            }
            let mut seen = HashSet::with_capacity(names.len());
            if let Some(dup) = names.iter().find(|name| !seen.insert(name.as_str())) {
                return Err(ModelFileError::InvalidConfig {
                    reason: format!("{what} list contains {dup:?} twice"),
                });
            }
        }
        Ok(())
    }
}

/// LayerNorm affine parameters `[D]`.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNormWeights {
    /// Scale `[D]`.
    pub gamma: Vec<f32>,
    /// Shift `[D]`.
    pub beta: Vec<f32>,
}

/// One pre-norm encoder layer.
#[derive(Clone, Debug, PartialEq)]
pub struct EncoderLayerWeights {
    /// LayerNorm before attention.
    pub norm1: LayerNormWeights,
    /// Query projection `D → D`.
    pub q: Linear,
    /// Key projection `D → D`.
    pub k: Linear,
    /// Value projection `D → D`.
    pub v: Linear,
    /// Output projection `D → D`.
    pub o: Linear,
    /// LayerNorm before the feed-forward block.
    pub norm2: LayerNormWeights,
    /// Feed-forward expansion `D → F` (followed by GELU).
    pub fc1: Linear,
    /// Feed-forward projection `F → D`.
    pub fc2: Linear,
}

/// All weights of a transformer classifier (gene-only, spatial, dual-modality, multi-input).
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifierWeights {
    /// The token matmul `[T*D, n_embedding_inputs]`: output row `t` of a cell is elements
    /// `t*D..(t+1)*D`. For multimodal models a block matrix: gene-token rows read the genes,
    /// the morphology row the pooled ViT features, the centroid row the sinusoid features.
    pub gene_embedding: Linear,
    /// Per-token type embedding `[T, D]`, added after the token matmul (gene token types plus
    /// the modality embeddings).
    pub token_type: Vec<f32>,
    /// Additive attention bias `[H, T, T]` of every encoder layer (multi-input only).
    pub attention_bias: Option<Vec<f32>>,
    /// The morphology token's ViT (dual-modality and multi-input only).
    pub morphology: Option<VitWeights>,
    /// `L` encoder layers.
    pub layers: Vec<EncoderLayerWeights>,
    /// LayerNorm applied to every token before pooling.
    pub final_norm: LayerNormWeights,
    /// Classifier `D → C`.
    pub head: Linear,
    /// The linear ("wide") path `[C, n_inputs]` on the model input, added to the head's
    /// logits (`config.linear_path` only).
    pub linear_path: Option<Linear>,
}

/// The morphology ViT (see [`MorphologyTokenConfig`]): with `P = p² + grid²`, `W = width`,
/// `Fv = d_ff`.
#[derive(Clone, Debug, PartialEq)]
pub struct VitWeights {
    /// Patch embedding `[W, P]`: columns `0..p²` are the stride-p convolution over a ViT patch's
    /// pixels (row-major), columns `p²..P` the learned position embedding (transposed), read
    /// through a one-hot token position appended to each unfolded patch.
    pub patch_embedding: Linear,
    /// Pre-norm blocks of width `W` (feed-forward `Fv`).
    pub layers: Vec<EncoderLayerWeights>,
    /// LayerNorm on the tokens before the centre tokens are averaged `[W]`.
    pub norm: LayerNormWeights,
}

/// A loaded model: metadata plus weights, validated against each other.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineModel {
    /// Metadata (config, genes, classes, ...).
    pub meta: ModelMeta,
    /// Weights.
    pub weights: ClassifierWeights,
}

/// Name, dtype and shape of one tensor in a model file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// Tensor name, e.g. `layers.0.attn.q.weight_q`.
    pub name: String,
    /// `"F32"` or `"I8"`.
    pub dtype: &'static str,
    /// Shape.
    pub shape: Vec<usize>,
}

/// The complete list of tensors a file for `config` and `quantization` must contain.
pub fn expected_tensors(config: &ClassifierConfig, quantization: Quantization) -> Vec<TensorSpec> {
    let mut specs = Vec::new();
    let mut vector =
        |name: String, shape: Vec<usize>, dtype| specs.push(TensorSpec { name, dtype, shape });
    for_each_param(config, &mut |p| match p {
        ParamSpec::Vector { name, shape } => vector(name, shape, "F32"),
        ParamSpec::Linear {
            prefix,
            out,
            in_dim,
        } => {
            match quantization {
                Quantization::None => vector(format!("{prefix}.weight"), vec![out, in_dim], "F32"),
                Quantization::Int8PerChannelSymmetric => {
                    vector(format!("{prefix}.weight_q"), vec![out, in_dim], "I8");
                    vector(format!("{prefix}.weight_scale"), vec![out], "F32");
                }
            }
            vector(format!("{prefix}.bias"), vec![out], "F32");
        }
    });
    specs
}

/// A parameter of the architecture, as implied by the config.
enum ParamSpec {
    Vector {
        name: String,
        shape: Vec<usize>,
    },
    Linear {
        prefix: String,
        out: usize,
        in_dim: usize,
    },
}

/// Visits every parameter of the architecture in file order (the single source of the names).
fn for_each_param(c: &ClassifierConfig, f: &mut dyn FnMut(ParamSpec)) {
    let (d, t, ff) = (c.d_model, c.n_tokens(), c.d_ff);
    let vector = |name: String, shape: Vec<usize>| ParamSpec::Vector { name, shape };
    let linear = |prefix: String, out, in_dim| ParamSpec::Linear {
        prefix,
        out,
        in_dim,
    };
    f(linear("gene_embedding".into(), t * d, c.token_embedding_inputs()));
    f(vector("token_type".into(), vec![t, d]));
    if c.attention_bias {
        f(vector("attention_bias".into(), vec![c.n_heads, t, t]));
    }
    if let Some(m) = &c.morphology {
        f(linear("morphology.patch_embedding".into(), m.width, m.patch_row_width()));
        for i in 0..m.n_layers {
            layer_params(&format!("morphology.layers.{i}"), m.width, m.d_ff, f);
        }
        f(vector("morphology.norm.gamma".into(), vec![m.width]));
        f(vector("morphology.norm.beta".into(), vec![m.width]));
    }
    for i in 0..c.n_layers {
        layer_params(&format!("layers.{i}"), d, ff, f);
    }
    f(vector("final_norm.gamma".into(), vec![d]));
    f(vector("final_norm.beta".into(), vec![d]));
    f(linear("head".into(), c.n_classes, d));
    if c.linear_path {
        f(linear("linear_path".into(), c.n_classes, c.n_inputs()));
    }
}

/// The parameters of one encoder layer of width `d` and feed-forward width `ff`.
fn layer_params(p: &str, d: usize, ff: usize, f: &mut dyn FnMut(ParamSpec)) {
    let vector = |name: String| ParamSpec::Vector { name, shape: vec![d] };
    let linear = |prefix: String, out, in_dim| ParamSpec::Linear { prefix, out, in_dim };
    f(vector(format!("{p}.norm1.gamma")));
    f(vector(format!("{p}.norm1.beta")));
    for proj in ["q", "k", "v", "o"] {
        f(linear(format!("{p}.attn.{proj}"), d, d));
    }
    f(vector(format!("{p}.norm2.gamma")));
    f(vector(format!("{p}.norm2.beta")));
    f(linear(format!("{p}.ffn.fc1"), ff, d));
    f(linear(format!("{p}.ffn.fc2"), d, ff));
}

/// A reference to a parameter of a built model, in the order of [`for_each_param`].
enum ParamRef<'a> {
    Vector(&'a [f32]),
    Linear(&'a Linear),
}

impl EncoderLayerWeights {
    /// The layer's parameters in file order (see `layer_params`).
    fn param_refs<'a>(&'a self, v: &mut Vec<ParamRef<'a>>) {
        v.extend([ParamRef::Vector(&self.norm1.gamma), ParamRef::Vector(&self.norm1.beta)]);
        v.extend([&self.q, &self.k, &self.v, &self.o].map(ParamRef::Linear));
        v.extend([ParamRef::Vector(&self.norm2.gamma), ParamRef::Vector(&self.norm2.beta)]);
        v.extend([&self.fc1, &self.fc2].map(ParamRef::Linear));
    }

    fn linears_mut(&mut self) -> [&mut Linear; 6] {
        [&mut self.q, &mut self.k, &mut self.v, &mut self.o, &mut self.fc1, &mut self.fc2]
    }
}

impl ClassifierWeights {
    /// Every parameter in file order (matches [`for_each_param`] when the optional parts and
    /// layer counts agree with the config; `validate` checks that first).
    fn param_refs(&self) -> Vec<ParamRef<'_>> {
        let mut v = vec![
            ParamRef::Linear(&self.gene_embedding),
            ParamRef::Vector(&self.token_type),
        ];
        if let Some(b) = &self.attention_bias {
            v.push(ParamRef::Vector(b));
        }
        if let Some(m) = &self.morphology {
            v.push(ParamRef::Linear(&m.patch_embedding));
            for l in &m.layers {
                l.param_refs(&mut v);
            }
            v.extend([ParamRef::Vector(&m.norm.gamma), ParamRef::Vector(&m.norm.beta)]);
        }
        for l in &self.layers {
            l.param_refs(&mut v);
        }
        v.extend([
            ParamRef::Vector(&self.final_norm.gamma),
            ParamRef::Vector(&self.final_norm.beta),
        ]);
        v.push(ParamRef::Linear(&self.head));
        v.extend(self.linear_path.as_ref().map(ParamRef::Linear));
        v
    }

    /// Every linear layer, mutable (for quantisation).
    fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut v = vec![&mut self.gene_embedding];
        if let Some(m) = &mut self.morphology {
            v.push(&mut m.patch_embedding);
            for l in &mut m.layers {
                v.extend(l.linears_mut());
            }
        }
        for l in &mut self.layers {
            v.extend(l.linears_mut());
        }
        v.push(&mut self.head);
        v.extend(self.linear_path.as_mut());
        v
    }
}

/// An owned tensor for serialisation.
struct OwnedTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &OwnedTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Collects named tensors and serialises them with a JSON metadata entry and the content
/// checksum (tensors sorted by name).
#[derive(Default)]
pub(super) struct TensorWriter {
    tensors: Vec<(String, OwnedTensor)>,
}

impl TensorWriter {
    /// An `F32` tensor.
    pub(super) fn f32(&mut self, name: String, shape: Vec<usize>, v: &[f32]) {
        let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.tensors.push((name, OwnedTensor { dtype: Dtype::F32, shape, data }));
    }

    /// `{prefix}.weight` `[out, in]` (f32) or `{prefix}.weight_q` (int8) + `.weight_scale`
    /// `[out]`, then `{prefix}.bias` `[out]`.
    pub(super) fn linear(&mut self, prefix: &str, lin: &Linear) {
        let shape = vec![lin.out_dim, lin.in_dim];
        match &lin.weight {
            LinearWeight::F32(w) => self.f32(format!("{prefix}.weight"), shape, w),
            LinearWeight::Int8 { q, scale } => {
                let data = q.iter().map(|&b| b as u8).collect();
                self.tensors.push((format!("{prefix}.weight_q"), OwnedTensor { dtype: Dtype::I8, shape, data }));
                self.f32(format!("{prefix}.weight_scale"), vec![lin.out_dim], scale);
            }
        }
        self.f32(format!("{prefix}.bias"), vec![lin.out_dim], &lin.bias);
    }

    /// `{prefix}.gamma` and `{prefix}.beta` `[D]`.
    pub(super) fn layer_norm(&mut self, prefix: &str, n: &LayerNormWeights) {
        self.f32(format!("{prefix}.gamma"), vec![n.gamma.len()], &n.gamma);
        self.f32(format!("{prefix}.beta"), vec![n.beta.len()], &n.beta);
    }

    /// One encoder layer under the names [`TensorReader::encoder_layer`] reads.
    pub(super) fn encoder_layer(&mut self, p: &str, l: &EncoderLayerWeights) {
        self.layer_norm(&format!("{p}.norm1"), &l.norm1);
        for (name, lin) in [("attn.q", &l.q), ("attn.k", &l.k), ("attn.v", &l.v), ("attn.o", &l.o)] {
            self.linear(&format!("{p}.{name}"), lin);
        }
        self.layer_norm(&format!("{p}.norm2"), &l.norm2);
        self.linear(&format!("{p}.ffn.fc1"), &l.fc1);
        self.linear(&format!("{p}.ffn.fc2"), &l.fc2);
    }

    /// Safetensors bytes with metadata `{key: json, CHECKSUM_KEY: crc}`.
    pub(super) fn finish(mut self, key: &str, json: String) -> Result<Vec<u8>, ModelFileError> {
        self.tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let checksum = content_checksum(self.tensors.iter().map(|(n, t)| (n.as_str(), t.data.as_slice())));
        let metadata = HashMap::from([(key.to_string(), json), (CHECKSUM_KEY.to_string(), checksum)]);
        Ok(safetensors::serialize(self.tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))?)
    }
}

/// Reads and checks tensors by name, remembering which ones were used.
pub(super) struct TensorReader<'a> {
    st: SafeTensors<'a>,
    used: HashSet<String>,
}

impl<'a> TensorReader<'a> {
    /// Parses `bytes`, returns the reader and the JSON metadata entry `key`, after checking
    /// the content checksum when the file stores one.
    pub(super) fn open(bytes: &'a [u8], key: &str) -> Result<(Self, String), ModelFileError> {
        let st = SafeTensors::deserialize(bytes)?;
        let (_, header) = SafeTensors::read_metadata(bytes)?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(key))
            .ok_or(ModelFileError::MissingMetadata)?
            .clone();
        if let Some(stored) = header.metadata().as_ref().and_then(|m| m.get(CHECKSUM_KEY)) {
            let mut names = st.names();
            names.sort_unstable();
            let views: Vec<(&str, safetensors::tensor::TensorView<'_>)> =
                names.iter().filter_map(|n| st.tensor(n).ok().map(|t| (*n as &str, t))).collect();
            let computed = content_checksum(views.iter().map(|(n, t)| (*n, t.data())));
            if &computed != stored {
                return Err(ModelFileError::ChecksumMismatch { stored: stored.clone(), computed });
            }
        }
        Ok((TensorReader { st, used: HashSet::new() }, json))
    }

    /// Errors on the first tensor (by name) that no read used.
    pub(super) fn check_all_used(&self, quant: Quantization) -> Result<(), ModelFileError> {
        let mut names = self.st.names();
        names.sort_unstable();
        if let Some(extra) = names.into_iter().find(|n| !self.used.contains(*n)) {
            return Err(ModelFileError::UnexpectedTensor {
                name: extra.to_string(),
                quantization: quant.as_str().to_string(),
            });
        }
        Ok(())
    }

    fn view(
        &mut self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        hint: impl FnOnce(&Self) -> String,
    ) -> Result<&'a [u8], ModelFileError> {
        let view = match self.st.tensor(name) {
            Ok(v) => v,
            Err(_) => {
                return Err(ModelFileError::MissingTensor {
                    name: name.to_string(),
                    expected: format!("{dtype} {shape:?}"),
                    hint: hint(self),
                })
            }
        };
        if view.dtype() != dtype {
            return Err(ModelFileError::WrongDtype {
                name: name.to_string(),
                expected: dtype.to_string(),
                found: view.dtype().to_string(),
            });
        }
        if view.shape() != shape {
            return Err(ModelFileError::WrongShape {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        self.used.insert(name.to_string());
        Ok(view.data())
    }

    pub(super) fn f32(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelFileError> {
        self.f32_hinted(name, shape, |_| String::new())
    }

    fn f32_hinted(
        &mut self,
        name: &str,
        shape: &[usize],
        hint: impl FnOnce(&Self) -> String,
    ) -> Result<Vec<f32>, ModelFileError> {
        let bytes = self.view(name, Dtype::F32, shape, hint)?;
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(ModelFileError::NonFinite {
                name: name.to_string(),
                index,
            });
        }
        if let Some(index) = values.iter().position(|v| v.abs() > MAX_PARAMETER_MAGNITUDE) {
            return Err(ModelFileError::ImplausibleValue {
                name: name.to_string(),
                index,
                value: values[index],
                limit: MAX_PARAMETER_MAGNITUDE,
            });
        }
        Ok(values)
    }

    pub(super) fn linear(
        &mut self,
        prefix: &str,
        out: usize,
        in_dim: usize,
        quant: Quantization,
    ) -> Result<Linear, ModelFileError> {
        let (name, alt) = match quant {
            Quantization::None => (format!("{prefix}.weight"), format!("{prefix}.weight_q")),
            Quantization::Int8PerChannelSymmetric => {
                (format!("{prefix}.weight_q"), format!("{prefix}.weight"))
            }
        };
        let hint = |r: &Self| {
            if r.st.tensor(&alt).is_ok() {
                format!(" but `{alt}` is present: metadata `quantization` = \"{}\" disagrees with the tensors", quant.as_str())
            } else {
                String::new()
            }
        };
        let weight = match quant {
            Quantization::None => {
                LinearWeight::F32(self.f32_hinted(&name, &[out, in_dim], hint)?)
            }
            Quantization::Int8PerChannelSymmetric => {
                let bytes = self.view(&name, Dtype::I8, &[out, in_dim], hint)?;
                let q = bytes.iter().map(|&b| b as i8).collect();
                let scale = self.f32(&format!("{prefix}.weight_scale"), &[out])?;
                LinearWeight::Int8 { q, scale }
            }
        };
        let bias = self.f32(&format!("{prefix}.bias"), &[out])?;
        Ok(Linear {
            out_dim: out,
            in_dim,
            weight,
            bias,
        })
    }

    pub(super) fn layer_norm(&mut self, prefix: &str, d: usize) -> Result<LayerNormWeights, ModelFileError> {
        Ok(LayerNormWeights {
            gamma: self.f32(&format!("{prefix}.gamma"), &[d])?,
            beta: self.f32(&format!("{prefix}.beta"), &[d])?,
        })
    }

    pub(super) fn encoder_layer(
        &mut self,
        p: &str,
        d: usize,
        ff: usize,
        quant: Quantization,
    ) -> Result<EncoderLayerWeights, ModelFileError> {
        Ok(EncoderLayerWeights {
            norm1: self.layer_norm(&format!("{p}.norm1"), d)?,
            q: self.linear(&format!("{p}.attn.q"), d, d, quant)?,
            k: self.linear(&format!("{p}.attn.k"), d, d, quant)?,
            v: self.linear(&format!("{p}.attn.v"), d, d, quant)?,
            o: self.linear(&format!("{p}.attn.o"), d, d, quant)?,
            norm2: self.layer_norm(&format!("{p}.norm2"), d)?,
            fc1: self.linear(&format!("{p}.ffn.fc1"), ff, d, quant)?,
            fc2: self.linear(&format!("{p}.ffn.fc2"), d, ff, quant)?,
        })
    }
}

impl EngineModel {
    /// Builds a model after checking the weights against the metadata.
    pub fn new(meta: ModelMeta, weights: ClassifierWeights) -> Result<Self, ModelFileError> {
        let model = Self { meta, weights };
        model.validate()?;
        Ok(model)
    }

    /// Whether the weights are int8 (`meta.quantization` is `int8_per_channel_symmetric`).
    pub fn is_int8(&self) -> bool {
        self.meta.quantization == Quantization::Int8PerChannelSymmetric
    }

    /// The model's hyperparameters.
    pub fn config(&self) -> &ClassifierConfig {
        &self.meta.config
    }

    /// Checks metadata, the number of layers, every tensor's length and shape, and that every
    /// linear layer's weight kind matches `meta.quantization`. Errors name the tensor.
    pub fn validate(&self) -> Result<(), ModelFileError> {
        self.meta.validate()?;
        let c = &self.meta.config;
        if self.weights.layers.len() != c.n_layers {
            return Err(ModelFileError::Inconsistent {
                reason: format!(
                    "weights have {} encoder layers but config.n_layers = {}",
                    self.weights.layers.len(),
                    c.n_layers
                ),
            });
        }
        let present = |what: &str, has: bool, wants: bool| {
            if has == wants {
                Ok(())
            } else {
                Err(ModelFileError::Inconsistent {
                    reason: format!(
                        "weights {} {what} but the config {} one",
                        if has { "have" } else { "lack" },
                        if wants { "needs" } else { "has no" }
                    ),
                })
            }
        };
        present("an attention bias", self.weights.attention_bias.is_some(), c.attention_bias)?;
        present("a morphology ViT", self.weights.morphology.is_some(), c.morphology.is_some())?;
        present("a linear path", self.weights.linear_path.is_some(), c.linear_path)?;
        if let (Some(m), Some(mc)) = (&self.weights.morphology, &c.morphology) {
            if m.layers.len() != mc.n_layers {
                return Err(ModelFileError::Inconsistent {
                    reason: format!(
                        "the morphology ViT has {} blocks but config.morphology.n_layers = {}",
                        m.layers.len(),
                        mc.n_layers
                    ),
                });
            }
        }
        let quant = self.meta.quantization;
        let refs = self.weights.param_refs();
        let mut specs = Vec::new();
        for_each_param(c, &mut |s| specs.push(s));
        for (spec, param) in specs.iter().zip(&refs) {
            match (spec, param) {
                (ParamSpec::Vector { name, shape }, ParamRef::Vector(data)) => {
                    let n: usize = shape.iter().product();
                    if data.len() != n {
                        return Err(ModelFileError::WrongShape {
                            name: name.clone(),
                            expected: shape.clone(),
                            found: vec![data.len()],
                        });
                    }
                }
                (
                    ParamSpec::Linear {
                        prefix,
                        out,
                        in_dim,
                    },
                    ParamRef::Linear(lin),
                ) => {
                    check_linear(prefix, lin, *out, *in_dim, quant)?;
                }
                _ => {
                    unreachable!("for_each_param and param_refs list parameters in the same order")
                }
            }
        }
        Ok(())
    }

    /// Parses and validates a model file held in memory.
    ///
    /// Checks the metadata (present, parsable, supported version and architecture, consistent
    /// config and gene/class lists) and every tensor's presence, dtype, shape and finiteness;
    /// rejects tensors the config does not explain. Never panics on malformed bytes.
    pub fn from_safetensors_bytes(bytes: &[u8]) -> Result<Self, ModelFileError> {
        let (mut r, json) = TensorReader::open(bytes, METADATA_KEY)?;
        let meta = ModelMeta::from_json(&json)?;
        let c = meta.config.clone();
        let quant = meta.quantization;

        let (d, t, ff) = (c.d_model, c.n_tokens(), c.d_ff);
        let gene_embedding = r.linear("gene_embedding", t * d, c.token_embedding_inputs(), quant)?;
        let token_type = r.f32("token_type", &[t, d])?;
        let attention_bias = if c.attention_bias {
            Some(r.f32("attention_bias", &[c.n_heads, t, t])?)
        } else {
            None
        };
        let morphology = match &c.morphology {
            Some(m) => Some(VitWeights {
                patch_embedding: r.linear("morphology.patch_embedding", m.width, m.patch_row_width(), quant)?,
                layers: (0..m.n_layers)
                    .map(|i| r.encoder_layer(&format!("morphology.layers.{i}"), m.width, m.d_ff, quant))
                    .collect::<Result<_, _>>()?,
                norm: r.layer_norm("morphology.norm", m.width)?,
            }),
            None => None,
        };
        let layers = (0..c.n_layers)
            .map(|i| r.encoder_layer(&format!("layers.{i}"), d, ff, quant))
            .collect::<Result<Vec<_>, _>>()?;
        let final_norm = r.layer_norm("final_norm", d)?;
        let head = r.linear("head", c.n_classes, d, quant)?;
        let linear_path = if c.linear_path {
            Some(r.linear("linear_path", c.n_classes, c.n_inputs(), quant)?)
        } else {
            None
        };

        r.check_all_used(quant)?;
        let weights = ClassifierWeights {
            gene_embedding,
            token_type,
            attention_bias,
            morphology,
            layers,
            final_norm,
            head,
            linear_path,
        };
        Self::new(meta, weights)
    }

    /// Serialises the model (tensors plus metadata) to safetensors bytes; validates first, so
    /// whatever this writes [`from_safetensors_bytes`](Self::from_safetensors_bytes) reads.
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>, ModelFileError> {
        self.validate()?;
        let mut w = TensorWriter::default();
        let mut specs = Vec::new();
        for_each_param(&self.meta.config, &mut |s| specs.push(s));
        for (spec, param) in specs.into_iter().zip(self.weights.param_refs()) {
            match (spec, param) {
                (ParamSpec::Vector { name, shape }, ParamRef::Vector(v)) => w.f32(name, shape, v),
                (ParamSpec::Linear { prefix, .. }, ParamRef::Linear(lin)) => w.linear(&prefix, lin),
                _ => {
                    unreachable!("for_each_param and param_refs list parameters in the same order")
                }
            }
        }
        w.finish(METADATA_KEY, self.meta.to_json()?)
    }

    /// A copy with every linear weight quantised to int8 (per output channel, symmetric) and
    /// `meta.quantization` set; an int8 model is returned unchanged.
    pub fn quantize_int8(&self) -> EngineModel {
        let mut model = self.clone();
        for lin in model.weights.linears_mut() {
            *lin = lin.quantized();
        }
        model.meta.quantization = Quantization::Int8PerChannelSymmetric;
        model
    }

    /// Reads and validates a model file; errors carry the path.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self, ModelFileError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ModelFileError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_safetensors_bytes(&bytes).map_err(|e| e.in_file(path))
    }

    /// Writes the model atomically: to a temporary file in the same directory, fsync, then
    /// rename over `path` (readers never see a partial file).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save_atomic(&self, path: impl AsRef<std::path::Path>) -> Result<(), ModelFileError> {
        let bytes = self.to_safetensors_bytes()?;
        crate::util::write_atomic(path.as_ref(), &bytes).map_err(|e| ModelFileError::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        })
    }

    /// A random f32 model (seeded, deterministic) for tests and benchmarks.
    ///
    /// Linear weights are uniform in `±1/sqrt(in)` (PyTorch's default bound), biases and
    /// `token_type` uniform in `±0.1`, LayerNorm `gamma` in `1 ± 0.2` and `beta` in `±0.1`.
    ///
    /// # Panics
    /// If `genes`/`classes` lengths disagree with `config` or the config is invalid.
    #[doc(hidden)]
    pub fn random_for_tests(
        config: ClassifierConfig,
        genes: Vec<String>,
        classes: Vec<String>,
        seed: u64,
    ) -> EngineModel {
        let mut rng = SplitMix64::new(seed);
        let meta = ModelMeta::new(config.clone(), genes, classes);
        let c = &config;
        let (d, t, ff) = (c.d_model, c.n_tokens(), c.d_ff);
        let gene_embedding = random_linear(&mut rng, t * d, c.n_embedding_inputs());
        let token_type = rng.uniform_vec(t * d, -0.1, 0.1);
        let attention_bias = c.attention_bias.then(|| rng.uniform_vec(c.n_heads * t * t, -1.0, 1.0));
        let morphology = c.morphology.as_ref().map(|m| VitWeights {
            patch_embedding: random_linear(&mut rng, m.width, m.patch_row_width()),
            layers: (0..m.n_layers).map(|_| random_layer(&mut rng, m.width, m.d_ff)).collect(),
            norm: random_norm(&mut rng, m.width),
        });
        let layers = (0..c.n_layers).map(|_| random_layer(&mut rng, d, ff)).collect();
        let final_norm = random_norm(&mut rng, d);
        let head = random_linear(&mut rng, c.n_classes, d);
        let linear_path = c.linear_path.then(|| random_linear(&mut rng, c.n_classes, c.n_inputs()));
        let weights = ClassifierWeights {
            gene_embedding,
            token_type,
            attention_bias,
            morphology,
            layers,
            final_norm,
            head,
            linear_path,
        };
        EngineModel::new(meta, weights)
            .expect("random_for_tests: genes/classes must match the config")
    }
}

/// A random linear layer: weights uniform in `±1/sqrt(in)`, bias in `±0.1`.
fn random_linear(rng: &mut SplitMix64, out: usize, in_dim: usize) -> Linear {
    let bound = 1.0 / (in_dim as f32).sqrt();
    Linear {
        out_dim: out,
        in_dim,
        weight: LinearWeight::F32(rng.uniform_vec(out * in_dim, -bound, bound)),
        bias: rng.uniform_vec(out, -0.1, 0.1),
    }
}

/// Random LayerNorm weights: `gamma` in `1 ± 0.2`, `beta` in `±0.1`.
fn random_norm(rng: &mut SplitMix64, d: usize) -> LayerNormWeights {
    LayerNormWeights {
        gamma: rng.uniform_vec(d, 0.8, 1.2),
        beta: rng.uniform_vec(d, -0.1, 0.1),
    }
}

fn random_layer(rng: &mut SplitMix64, d: usize, ff: usize) -> EncoderLayerWeights {
    EncoderLayerWeights {
        q: random_linear(rng, d, d),
        k: random_linear(rng, d, d),
        v: random_linear(rng, d, d),
        o: random_linear(rng, d, d),
        fc1: random_linear(rng, ff, d),
        fc2: random_linear(rng, d, ff),
        norm1: random_norm(rng, d),
        norm2: random_norm(rng, d),
    }
}

/// Checks one linear layer against its expected shape and the model's quantisation.
fn check_linear(
    prefix: &str,
    lin: &Linear,
    out: usize,
    in_dim: usize,
    quant: Quantization,
) -> Result<(), ModelFileError> {
    let (wname, expected_dtype) = match quant {
        Quantization::None => (format!("{prefix}.weight"), "F32"),
        Quantization::Int8PerChannelSymmetric => (format!("{prefix}.weight_q"), "I8"),
    };
    if lin.out_dim != out || lin.in_dim != in_dim {
        return Err(ModelFileError::WrongShape {
            name: wname,
            expected: vec![out, in_dim],
            found: vec![lin.out_dim, lin.in_dim],
        });
    }
    let (found_dtype, n_weight) = match &lin.weight {
        LinearWeight::F32(w) => ("F32", w.len()),
        LinearWeight::Int8 { q, scale } => {
            if scale.len() != out {
                return Err(ModelFileError::WrongShape {
                    name: format!("{prefix}.weight_scale"),
                    expected: vec![out],
                    found: vec![scale.len()],
                });
            }
            ("I8", q.len())
        }
    };
    if found_dtype != expected_dtype {
        return Err(ModelFileError::WrongDtype {
            name: wname,
            expected: expected_dtype.to_string(),
            found: found_dtype.to_string(),
        });
    }
    if n_weight != out * in_dim {
        return Err(ModelFileError::WrongShape {
            name: wname,
            expected: vec![out, in_dim],
            found: vec![n_weight],
        });
    }
    if lin.bias.len() != out {
        return Err(ModelFileError::WrongShape {
            name: format!("{prefix}.bias"),
            expected: vec![out],
            found: vec![lin.bias.len()],
        });
    }
    Ok(())
}

#[cfg(test)]
mod normalisation_tests {
    use super::*;

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn log1p_cp10k_on_a_hand_computed_example() {
        // Cell totals 4 and 0 (an empty cell stays 0: the total is clamped to 1).
        let x = Normalisation::log1p_cp10k().apply(&[1.0, 3.0, 0.0, 0.0], 2, &[]).unwrap();
        close(&x, &[2501f32.ln(), 7501f32.ln(), 0.0, 0.0]);
        let e = Normalisation::log1p_cp10k().apply(&[1.0, -1.0], 2, &names("g", 2)).unwrap_err();
        assert!(matches!(&e, ModelFileError::InvalidCount { cell: 0, gene, .. } if gene == "g1"), "{e}");
    }

    #[test]
    fn as_stored_and_arcsinh_on_hand_computed_examples() {
        let v = [-1.5, 0.0, 2.0, 7.25];
        close(&Normalisation::as_stored().apply(&v, 2, &[]).unwrap(), &v);
        // asinh(v / 5) = ln(v/5 + sqrt((v/5)² + 1)).
        let want: Vec<f32> = [-0.3f64, 0.0, 0.4, 1.45].iter().map(|u| (u + (u * u + 1.0).sqrt()).ln() as f32).collect();
        close(&Normalisation::arcsinh(5.0).apply(&v, 2, &[]).unwrap(), &want);
        let e = Normalisation::as_stored().apply(&[f32::NAN, 1.0], 2, &[]).unwrap_err();
        assert!(matches!(e, ModelFileError::InvalidCount { cell: 0, .. }), "{e}");
    }

    #[test]
    fn standardisation_follows_the_transform() {
        let n = Normalisation::as_stored().with_standardisation(vec![1.0, -2.0], vec![2.0, 0.5]);
        // Gene 0: (x − 1) / 2; gene 1: (x + 2) / 0.5.
        close(&n.apply(&[3.0, -1.0, 1.0, -2.0], 2, &[]).unwrap(), &[1.0, 2.0, 0.0, 0.0]);
        let wrong_len = Normalisation::as_stored().with_standardisation(vec![0.0; 3], vec![1.0; 3]);
        assert!(matches!(wrong_len.apply(&[1.0, 2.0], 2, &[]), Err(ModelFileError::InvalidNormalisation { .. })));
    }

    #[test]
    fn fitted_standardisation_centres_and_scales_the_training_values() {
        // Gene 0: 1, 3 → mean 2, std 1; gene 1 is constant → std 1.
        let n = Normalisation::as_stored().fit_standardisation(&[1.0, 5.0, 3.0, 5.0], 2).unwrap();
        let s = n.standardisation.as_ref().unwrap();
        close(&s.mean, &[2.0, 5.0]);
        close(&s.std, &[1.0, 1.0]);
        close(&n.apply(&[1.0, 5.0, 3.0, 5.0], 2, &[]).unwrap(), &[-1.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn old_style_json_still_loads() {
        let json = r#"{"kind":"log1p_cp10k","target_sum":10000.0}"#;
        let n: Normalisation = serde_json::from_str(json).unwrap();
        assert_eq!(n, Normalisation::log1p_cp10k());
        assert_eq!(serde_json::to_string(&n).unwrap(), json);
        let meta = ModelMeta::new(ClassifierConfig::new(2, 2), names("g", 2), names("c", 2));
        let mut v = serde_json::to_value(&meta).unwrap();
        v["normalisation"] = serde_json::from_str(json).unwrap();
        assert_eq!(ModelMeta::from_json(&v.to_string()).unwrap().normalisation, Normalisation::log1p_cp10k());
    }

    #[test]
    fn invalid_normalisation_names_the_field_and_value() {
        let meta = ModelMeta::new(ClassifierConfig::new(2, 2), names("g", 2), names("c", 2));
        let load = |n: serde_json::Value| {
            let mut v = serde_json::to_value(&meta).unwrap();
            v["normalisation"] = n;
            ModelMeta::from_json(&v.to_string()).unwrap_err()
        };
        let field_of = |e: ModelFileError| match e {
            ModelFileError::InvalidNormalisation { field, value, .. } => (field, value),
            other => panic!("expected InvalidNormalisation, got {other}"),
        };
        let cases = [
            (serde_json::json!({"kind": "zscore"}), "normalisation.kind", "\"zscore\""),
            (serde_json::json!({"kind": "log1p_cp10k"}), "normalisation.target_sum", "missing"),
            (serde_json::json!({"kind": "arcsinh", "cofactor": -5.0}), "normalisation.cofactor", "-5"),
            (serde_json::json!({"kind": "as_stored", "mean": [0.0, 0.0]}), "normalisation.std", "missing"),
            (serde_json::json!({"kind": "as_stored", "mean": [0.0, 0.0], "std": [1.0, 0.0]}), "normalisation.std[1]", "0"),
            (serde_json::json!({"kind": "as_stored", "mean": [0.0], "std": [1.0]}), "normalisation.mean", "1 values"),
        ];
        for (json, field, value) in cases {
            assert_eq!(field_of(load(json.clone())), (field.to_string(), value.to_string()), "{json}");
        }
    }

    #[test]
    fn as_stored_with_standardisation_round_trips_through_safetensors() {
        let config = ClassifierConfig { n_layers: 1, d_model: 8, n_heads: 2, d_ff: 16, gene_tokens: 2, ..ClassifierConfig::new(3, 2) };
        let mut model = EngineModel::random_for_tests(config, names("g", 3), names("c", 2), 5);
        model.meta.normalisation = Normalisation::as_stored().with_standardisation(vec![0.5, -1.0, 2.0], vec![1.0, 0.25, 3.0]);
        let bytes = model.to_safetensors_bytes().unwrap();
        let back = EngineModel::from_safetensors_bytes(&bytes).unwrap();
        assert_eq!(back.meta.normalisation, model.meta.normalisation);
        assert_eq!(back, model);
        let json = back.meta.to_json().unwrap();
        assert!(json.contains(r#""normalisation":{"kind":"as_stored","mean":[0.5,-1.0,2.0],"std":[1.0,0.25,3.0]}"#), "{json}");
        // A standardisation of the wrong length is refused when the model is built.
        model.meta.normalisation = Normalisation::arcsinh(5.0).with_standardisation(vec![0.0; 2], vec![1.0; 2]);
        assert!(matches!(model.to_safetensors_bytes(), Err(ModelFileError::InvalidNormalisation { .. })));
    }
}
