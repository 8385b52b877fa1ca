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
use crate::quant;

/// The `format_version` this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Key of the JSON entry in the safetensors `__metadata__` map.
pub const METADATA_KEY: &str = "cellsymphony";
/// Architecture name of the gene-only classifier.
pub const ARCHITECTURE_GENE_ONLY: &str = "gene_only";
/// Architecture name of the spatial classifier (gene tokens + a sinusoidal centroid token).
pub const ARCHITECTURE_SPATIAL: &str = "spatial";
/// Architecture name of the dual-modality classifier (gene tokens + a ViT morphology token).
pub const ARCHITECTURE_DUAL_MODALITY: &str = "dual_modality";
/// Architecture name of the multi-input classifier (gene, morphology and centroid tokens with a
/// learned additive attention bias).
pub const ARCHITECTURE_MULTI_INPUT: &str = "multi_input";
/// The only normalisation kind: `x = ln(1 + counts * target_sum / max(total, 1))`.
pub const NORMALISATION_LOG1P_CP10K: &str = "log1p_cp10k";

/// Hyperparameters of a transformer classifier (gene-only unless `spatial` / `morphology` /
/// `attention_bias` are set).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    /// Number of input genes `G` (columns of the counts matrix).
    pub n_genes: usize,
    /// Number of output classes `C`.
    pub n_classes: usize,
    /// Model width `D` (default 64).
    pub d_model: usize,
    /// Attention heads `H` (default 4); must divide `d_model`.
    pub n_heads: usize,
    /// Feed-forward width `F` (default 128).
    pub d_ff: usize,
    /// Encoder layers `L` (default 6).
    pub n_layers: usize,
    /// Tokens `T` the gene embedding produces per cell (default 4).
    pub gene_tokens: usize,
    /// LayerNorm epsilon (default 1e-5).
    pub layer_norm_eps: f64,
    /// CellSymphony's spatial classifier: one extra token from a sinusoidal encoding of the
    /// cell centroid (absent for the gene-only classifier). The model input is then
    /// `[normalised genes (G), spatial features (4·n_frequencies)]` per cell, built by
    /// [`crate::engine::model_input`], and the encoder sees `gene_tokens + 1` tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spatial: Option<SpatialTokenConfig>,
    /// CellSymphony's morphology token (dual-modality and multi-input classifiers): a ViT over
    /// a nucleus-centred DAPI patch whose centre tokens are pooled (absent otherwise). The
    /// host passes the patches `[cells, S, S]` next to the model input; the engines run the
    /// ViT and append the pooled `[cells, width]` features to the model input, so the token
    /// projection is part of the `gene_embedding` block matrix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub morphology: Option<MorphologyTokenConfig>,
    /// A learned additive attention bias `[n_heads, n_tokens, n_tokens]` shared by every
    /// encoder layer (the multi-input classifier's relative positional bias, expanded from
    /// its bucket table at export).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attention_bias: bool,
}

/// The morphology token's ViT (MEB): `image_size`² px patches cut into `vit_patch`² px ViT
/// patches (a `grid × grid` token grid), `n_layers` pre-norm blocks of width `width`, a
/// LayerNorm, and the mean of the `k_nearest` tokens nearest the patch centre.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MorphologyTokenConfig {
    /// Patch side `S` in pixels (a multiple of `vit_patch`).
    pub image_size: usize,
    /// ViT patch side `p` in pixels.
    pub vit_patch: usize,
    /// ViT token width `W`.
    pub width: usize,
    /// ViT attention heads (divides `width`).
    pub n_heads: usize,
    /// ViT feed-forward width.
    pub d_ff: usize,
    /// ViT blocks (up to the feature layer).
    pub n_layers: usize,
    /// Tokens nearest the patch centre averaged into the cell's morphology features.
    pub k_nearest: usize,
    /// Pixel size the patches were cut at in training (µm per pixel); patches given to the
    /// engines must use the same.
    pub um_per_px: f64,
}

impl MorphologyTokenConfig {
    /// Tokens per side of the ViT grid, `S / p`.
    pub fn grid(&self) -> usize {
        self.image_size / self.vit_patch.max(1)
    }

    /// ViT tokens per cell, `grid²`.
    pub fn n_vit_tokens(&self) -> usize {
        self.grid() * self.grid()
    }

    /// Width of one unfolded ViT patch row: `p²` pixels then a one-hot token position
    /// (`grid²`), so the learned position embedding is part of the patch-embedding matmul.
    pub fn patch_row_width(&self) -> usize {
        self.vit_patch * self.vit_patch + self.n_vit_tokens()
    }

    /// Pixels per cell, `S²`.
    pub fn pixels(&self) -> usize {
        self.image_size * self.image_size
    }
}

/// Indices (row-major) of the `k` tokens of a `grid × grid` token grid whose centres are
/// nearest the image centre; ties broken by index. Shared by the burn ViT and the engines.
pub fn centre_token_indices(grid: usize, k: usize) -> Vec<usize> {
    let c = grid as f64 / 2.0;
    let mut idx: Vec<(f64, usize)> = (0..grid * grid)
        .map(|t| {
            let (r, q) = ((t / grid) as f64 + 0.5, (t % grid) as f64 + 0.5);
            ((r - c).powi(2) + (q - c).powi(2), t)
        })
        .collect();
    idx.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    idx.into_iter().take(k).map(|(_, t)| t).collect()
}

/// The sinusoidal centroid encoding of the spatial classifier: per axis, `sin` and `cos` of
/// `ω_i · coordinate_µm` for `n_frequencies` wavelengths geometric from `min_wavelength_um`
/// to `max_wavelength_um` (feature order: x-sin, x-cos, y-sin, y-cos, each over `i`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpatialTokenConfig {
    /// Frequencies per axis `F` (the encoding has `4F` features).
    pub n_frequencies: usize,
    /// Shortest wavelength, µm.
    pub min_wavelength_um: f64,
    /// Longest wavelength, µm.
    pub max_wavelength_um: f64,
}

impl Default for ClassifierConfig {
    /// The default hyperparameters with `n_genes = n_classes = 0` (set those before use).
    fn default() -> Self {
        Self {
            n_genes: 0,
            n_classes: 0,
            d_model: 64,
            n_heads: 4,
            d_ff: 128,
            n_layers: 6,
            gene_tokens: 4,
            layer_norm_eps: 1e-5,
            spatial: None,
            morphology: None,
            attention_bias: false,
        }
    }
}

impl ClassifierConfig {
    /// Default hyperparameters for a panel of `n_genes` genes and `n_classes` classes.
    pub fn new(n_genes: usize, n_classes: usize) -> Self {
        Self {
            n_genes,
            n_classes,
            ..Self::default()
        }
    }

    /// Values per cell the host passes as model input ([`crate::engine::model_input`]):
    /// `n_genes`, plus `4 · n_frequencies` spatial features when the model has a centroid
    /// token. (Patches for a morphology token are passed separately.)
    pub fn n_inputs(&self) -> usize {
        self.n_genes + self.spatial.as_ref().map_or(0, |s| 4 * s.n_frequencies)
    }

    /// Input width of the token matmul `gene_embedding`: [`n_inputs`](Self::n_inputs) plus
    /// the ViT width `W` of a morphology token (its pooled features are appended per cell).
    pub fn n_embedding_inputs(&self) -> usize {
        self.n_inputs() + self.morphology.as_ref().map_or(0, |m| m.width)
    }

    /// Tokens per cell, in order: `gene_tokens` gene tokens, the morphology token (if any),
    /// the centroid token (if any).
    pub fn n_tokens(&self) -> usize {
        self.gene_tokens + usize::from(self.morphology.is_some()) + usize::from(self.spatial.is_some())
    }

    /// The architecture name these options describe: gene-only, spatial (centroid token),
    /// dual-modality (morphology token) or multi-input (both, plus the attention bias).
    /// Errors for other combinations.
    pub fn architecture(&self) -> Result<&'static str, ModelFileError> {
        match (self.morphology.is_some(), self.spatial.is_some(), self.attention_bias) {
            (false, false, false) => Ok(ARCHITECTURE_GENE_ONLY),
            (false, true, false) => Ok(ARCHITECTURE_SPATIAL),
            (true, false, false) => Ok(ARCHITECTURE_DUAL_MODALITY),
            (true, true, true) => Ok(ARCHITECTURE_MULTI_INPUT),
            (m, s, b) => Err(ModelFileError::InvalidConfig {
                reason: format!(
                    "config has morphology: {m}, spatial: {s}, attention_bias: {b}; supported are \
                     gene-only (none), spatial (spatial), dual-modality (morphology) and \
                     multi-input (all three)"
                ),
            }),
        }
    }

    /// Size of one attention head, `d_model / n_heads`.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads.max(1)
    }

    /// Checks that all sizes are positive, `n_heads` divides `d_model` and eps is positive.
    pub fn validate(&self) -> Result<(), ModelFileError> {
        let sizes = [
            ("n_genes", self.n_genes),
            ("n_classes", self.n_classes),
            ("d_model", self.d_model),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
            ("n_layers", self.n_layers),
            ("gene_tokens", self.gene_tokens),
        ];
        for (name, v) in sizes {
            if v == 0 {
                return Err(ModelFileError::InvalidConfig {
                    reason: format!("config.{name} is 0; it must be positive"),
                });
            }
            // Keeps every index computation (and the GPU's u32 indices) far from overflow.
            if v > 1 << 24 {
                return Err(ModelFileError::InvalidConfig {
                    reason: format!("config.{name} = {v} is implausibly large"),
                });
            }
        }
        if let Some(sp) = &self.spatial {
            let ok = (1..=1024).contains(&sp.n_frequencies)
                && sp.min_wavelength_um.is_finite()
                && sp.max_wavelength_um.is_finite()
                && sp.min_wavelength_um > 0.0
                && sp.min_wavelength_um <= sp.max_wavelength_um;
            if !ok {
                return Err(ModelFileError::InvalidConfig {
                    reason: format!(
                        "config.spatial {sp:?}: need 1..=1024 frequencies and finite wavelengths \
                         0 < min <= max"
                    ),
                });
            }
        }
        if let Some(m) = &self.morphology {
            let sizes = [
                ("image_size", m.image_size),
                ("vit_patch", m.vit_patch),
                ("width", m.width),
                ("n_heads", m.n_heads),
                ("d_ff", m.d_ff),
                ("n_layers", m.n_layers),
                ("k_nearest", m.k_nearest),
            ];
            for (name, v) in sizes {
                if v == 0 || v > 1 << 16 {
                    return Err(ModelFileError::InvalidConfig {
                        reason: format!("config.morphology.{name} = {v}; it must be in 1..=65536"),
                    });
                }
            }
            let problem = if !m.image_size.is_multiple_of(m.vit_patch) {
                Some(format!("image_size {} is not a multiple of vit_patch {}", m.image_size, m.vit_patch))
            } else if !m.width.is_multiple_of(m.n_heads) {
                Some(format!("width {} is not divisible by n_heads {}", m.width, m.n_heads))
            } else if m.k_nearest > m.n_vit_tokens() {
                Some(format!("k_nearest {} exceeds the {} ViT tokens", m.k_nearest, m.n_vit_tokens()))
            } else if m.n_vit_tokens() > 4096 {
                Some(format!("{} ViT tokens per cell is more than the engines support (4096)", m.n_vit_tokens()))
            } else if !(m.um_per_px.is_finite() && m.um_per_px > 0.0) {
                Some(format!("um_per_px {} must be finite and > 0", m.um_per_px))
            } else {
                None
            };
            if let Some(p) = problem {
                return Err(ModelFileError::InvalidConfig { reason: format!("config.morphology: {p}") });
            }
        }
        self.architecture()?;
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(ModelFileError::InvalidConfig {
                reason: format!(
                    "d_model {} is not divisible by n_heads {}",
                    self.d_model, self.n_heads
                ),
            });
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(ModelFileError::InvalidConfig {
                reason: format!(
                    "layer_norm_eps {} must be finite and > 0",
                    self.layer_norm_eps
                ),
            });
        }
        Ok(())
    }
}

/// Input normalisation recorded in the model (only `log1p_cp10k` exists).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalisation {
    /// Normalisation kind; `"log1p_cp10k"`.
    pub kind: String,
    /// Library-size target (10 000 for cp10k).
    pub target_sum: f64,
}

impl Default for Normalisation {
    fn default() -> Self {
        Self {
            kind: NORMALISATION_LOG1P_CP10K.to_string(),
            target_sum: 1e4,
        }
    }
}

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
    /// Free-form training information (kept verbatim).
    #[serde(default)]
    pub training: serde_json::Value,
}

impl ModelMeta {
    /// Metadata for a new f32 model with default normalisation and empty training info.
    pub fn new(config: ClassifierConfig, genes: Vec<String>, classes: Vec<String>) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            architecture: config.architecture().unwrap_or(ARCHITECTURE_GENE_ONLY).to_string(),
            config,
            genes,
            classes,
            normalisation: Normalisation::default(),
            quantization: Quantization::None,
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
        if version != FORMAT_VERSION as u64 {
            return Err(ModelFileError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let meta: ModelMeta =
            serde_json::from_value(value).map_err(|e| ModelFileError::InvalidMetadata {
                reason: e.to_string(),
            })?;
        meta.validate()?;
        Ok(meta)
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
        if self.format_version != FORMAT_VERSION {
            return Err(ModelFileError::UnsupportedVersion {
                found: self.format_version as u64,
                supported: FORMAT_VERSION,
            });
        }
        let known = [
            ARCHITECTURE_GENE_ONLY,
            ARCHITECTURE_SPATIAL,
            ARCHITECTURE_DUAL_MODALITY,
            ARCHITECTURE_MULTI_INPUT,
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
        if self.normalisation.kind != NORMALISATION_LOG1P_CP10K {
            return Err(ModelFileError::InvalidConfig {
                reason: format!(
                    "normalisation kind {:?} is not supported (supported: \"log1p_cp10k\")",
                    self.normalisation.kind
                ),
            });
        }
        if !(self.normalisation.target_sum.is_finite() && self.normalisation.target_sum > 0.0) {
            return Err(ModelFileError::InvalidConfig {
                reason: format!(
                    "normalisation target_sum {} must be finite and > 0",
                    self.normalisation.target_sum
                ),
            });
        }
        for (what, names, n) in [
            ("genes", &self.genes, self.config.n_genes),
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

/// Weight matrix of a [`Linear`] layer, `[out, in]` row-major.
#[derive(Clone, Debug, PartialEq)]
pub enum LinearWeight {
    /// Full-precision weights `[out * in]`.
    F32(Vec<f32>),
    /// Int8 weights `q` `[out * in]` with per-output-row scales `scale` `[out]`; `w = q * scale`.
    Int8 {
        /// Quantised values in `[-127, 127]`.
        q: Vec<i8>,
        /// Per-output-channel scales.
        scale: Vec<f32>,
    },
}

/// A fully connected layer `y = x · Wᵀ + bias` mapping `[n, in_dim]` to `[n, out_dim]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// Output features.
    pub out_dim: usize,
    /// Input features.
    pub in_dim: usize,
    /// Weights `[out_dim, in_dim]`.
    pub weight: LinearWeight,
    /// Bias `[out_dim]`.
    pub bias: Vec<f32>,
}

impl Linear {
    /// Whether the weights are int8.
    pub fn is_int8(&self) -> bool {
        matches!(self.weight, LinearWeight::Int8 { .. })
    }

    /// The weights as f32 `[out, in]` (dequantised if int8).
    pub fn weight_f32(&self) -> Cow<'_, [f32]> {
        match &self.weight {
            LinearWeight::F32(w) => Cow::Borrowed(w),
            LinearWeight::Int8 { q, scale } => {
                Cow::Owned(quant::dequantize(q, scale, self.out_dim, self.in_dim))
            }
        }
    }

    /// An int8 copy (per-output-channel symmetric); int8 layers are returned unchanged.
    pub fn quantized(&self) -> Linear {
        match &self.weight {
            LinearWeight::F32(w) => {
                let (q, scale) =
                    quant::quantize_per_channel_symmetric(w, self.out_dim, self.in_dim);
                Linear {
                    weight: LinearWeight::Int8 { q, scale },
                    ..self.clone()
                }
            }
            LinearWeight::Int8 { .. } => self.clone(),
        }
    }

    /// Stacks the output rows of layers with the same `in_dim` and weight kind, e.g. q, k, v
    /// into one `[3D, D]` layer. Returns `None` if the parts disagree or `parts` is empty.
    /// Exact for int8 because scales are per output row.
    pub fn concat_rows(parts: &[&Linear]) -> Option<Linear> {
        let first = parts.first()?;
        if parts
            .iter()
            .any(|p| p.in_dim != first.in_dim || p.is_int8() != first.is_int8())
        {
            return None;
        }
        let out_dim = parts.iter().map(|p| p.out_dim).sum();
        let bias = parts.iter().flat_map(|p| p.bias.iter().copied()).collect();
        let weight = if first.is_int8() {
            let mut q = Vec::new();
            let mut scale = Vec::new();
            for p in parts {
                if let LinearWeight::Int8 { q: pq, scale: ps } = &p.weight {
                    q.extend_from_slice(pq);
                    scale.extend_from_slice(ps);
                }
            }
            LinearWeight::Int8 { q, scale }
        } else {
            LinearWeight::F32(
                parts
                    .iter()
                    .flat_map(|p| p.weight_f32().into_owned())
                    .collect(),
            )
        };
        Some(Linear {
            out_dim,
            in_dim: first.in_dim,
            weight,
            bias,
        })
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
    f(linear("gene_embedding".into(), t * d, c.n_embedding_inputs()));
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

/// Reads and checks tensors by name, remembering which ones were used.
struct TensorReader<'a> {
    st: SafeTensors<'a>,
    used: HashSet<String>,
}

impl<'a> TensorReader<'a> {
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

    fn f32(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelFileError> {
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
        Ok(values)
    }

    fn linear(
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

    fn layer_norm(&mut self, prefix: &str, d: usize) -> Result<LayerNormWeights, ModelFileError> {
        Ok(LayerNormWeights {
            gamma: self.f32(&format!("{prefix}.gamma"), &[d])?,
            beta: self.f32(&format!("{prefix}.beta"), &[d])?,
        })
    }

    fn encoder_layer(
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
        let st = SafeTensors::deserialize(bytes)?;
        let (_, header) = SafeTensors::read_metadata(bytes)?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .ok_or(ModelFileError::MissingMetadata)?;
        let meta = ModelMeta::from_json(json)?;
        let c = meta.config.clone();
        let quant = meta.quantization;
        let mut r = TensorReader {
            st,
            used: HashSet::new(),
        };

        let (d, t, ff) = (c.d_model, c.n_tokens(), c.d_ff);
        let gene_embedding = r.linear("gene_embedding", t * d, c.n_embedding_inputs(), quant)?;
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

        let mut names = r.st.names();
        names.sort_unstable();
        if let Some(extra) = names.into_iter().find(|n| !r.used.contains(*n)) {
            return Err(ModelFileError::UnexpectedTensor {
                name: extra.to_string(),
                quantization: quant.as_str().to_string(),
            });
        }
        let weights = ClassifierWeights {
            gene_embedding,
            token_type,
            attention_bias,
            morphology,
            layers,
            final_norm,
            head,
        };
        Self::new(meta, weights)
    }

    /// Serialises the model (tensors plus metadata) to safetensors bytes; validates first, so
    /// whatever this writes [`from_safetensors_bytes`](Self::from_safetensors_bytes) reads.
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>, ModelFileError> {
        self.validate()?;
        let mut tensors: Vec<(String, OwnedTensor)> = Vec::new();
        let push_f32 = |tensors: &mut Vec<(String, OwnedTensor)>,
                        name: String,
                        shape: Vec<usize>,
                        v: &[f32]| {
            let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            tensors.push((
                name,
                OwnedTensor {
                    dtype: Dtype::F32,
                    shape,
                    data,
                },
            ));
        };
        let mut specs = Vec::new();
        for_each_param(&self.meta.config, &mut |s| specs.push(s));
        for (spec, param) in specs.into_iter().zip(self.weights.param_refs()) {
            match (spec, param) {
                (ParamSpec::Vector { name, shape }, ParamRef::Vector(v)) => {
                    push_f32(&mut tensors, name, shape, v)
                }
                (
                    ParamSpec::Linear {
                        prefix,
                        out,
                        in_dim,
                    },
                    ParamRef::Linear(lin),
                ) => {
                    match &lin.weight {
                        LinearWeight::F32(w) => push_f32(
                            &mut tensors,
                            format!("{prefix}.weight"),
                            vec![out, in_dim],
                            w,
                        ),
                        LinearWeight::Int8 { q, scale } => {
                            let data = q.iter().map(|&b| b as u8).collect();
                            tensors.push((
                                format!("{prefix}.weight_q"),
                                OwnedTensor {
                                    dtype: Dtype::I8,
                                    shape: vec![out, in_dim],
                                    data,
                                },
                            ));
                            push_f32(
                                &mut tensors,
                                format!("{prefix}.weight_scale"),
                                vec![out],
                                scale,
                            );
                        }
                    }
                    push_f32(&mut tensors, format!("{prefix}.bias"), vec![out], &lin.bias);
                }
                _ => {
                    unreachable!("for_each_param and param_refs list parameters in the same order")
                }
            }
        }
        let metadata = HashMap::from([(METADATA_KEY.to_string(), self.meta.to_json()?)]);
        let bytes =
            safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))?;
        Ok(bytes)
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
        let weights = ClassifierWeights {
            gene_embedding,
            token_type,
            attention_bias,
            morphology,
            layers,
            final_norm,
            head,
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
