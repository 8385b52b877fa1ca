//! The one architecture spec shared by burn ([`crate::model::Classifier`]) and the engines
//! (CPU and WGSL): which token sources a classifier has, its width, depth and heads.
//!
//! A classifier is `tokens → N pre-norm encoder layers (+ optional additive attention bias)
//! → mean pool → linear head`. Its tokens come from the sources the spec names, in this order:
//!
//! | source | spec field | tokens | engines |
//! |---|---|---|---|
//! | normalised counts (GEB) | always (unless `gene_embedding_dim` or `gene_token_panel`) | `gene_tokens` | yes |
//! | one token per gene (identity + value embedding) | `gene_token_panel` | one per listed gene | yes |
//! | precomputed gene embedding | `gene_embedding_dim` | `gene_tokens` | no (burn only) |
//! | morphology ViT over a nucleus patch (MEB) | `morphology` | 1 | yes |
//! | precomputed image embedding (e.g. UNI2) | `morph_embedding_dim` | 1 | no (burn only) |
//! | sinusoidal centroid | `spatial` | 1 | yes |
//! | relative positional attention bias | `attention_bias` | — | yes |
//!
//! The image-only (CUCA-style) classifier is the morphology ViT alone: `n_genes = 0`,
//! `gene_tokens = 0`, one morphology token, usually `n_layers = 0`, so the head reads the
//! final-normed projection of the pooled ViT feature.
//!
//! The four CellSymphony classifiers (and the image-only one) are [`Architecture`]s of this one spec; adding an
//! architecture means one variant here, one token source in the burn module, one in the
//! engines (and a kernel if it needs one).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::ModelFileError;

/// Architecture name of the gene-only classifier.
pub const ARCHITECTURE_GENE_ONLY: &str = "gene_only";
/// Architecture name of the spatial classifier (gene tokens + a sinusoidal centroid token).
pub const ARCHITECTURE_SPATIAL: &str = "spatial";
/// Architecture name of the dual-modality classifier (gene tokens + a ViT morphology token).
pub const ARCHITECTURE_DUAL_MODALITY: &str = "dual_modality";
/// Architecture name of the multi-input classifier (gene, morphology and centroid tokens with a
/// learned additive attention bias).
pub const ARCHITECTURE_MULTI_INPUT: &str = "multi_input";
/// Architecture name of the image-only (CUCA-style) classifier: the morphology token alone.
pub const ARCHITECTURE_IMAGE_ONLY: &str = "image_only";

/// The four CellSymphony classifiers: named combinations of the spec's token sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// Gene tokens only.
    GeneOnly,
    /// Gene tokens + a sinusoidal centroid token.
    Spatial,
    /// Gene tokens + a morphology token.
    DualModality,
    /// Gene, morphology and centroid tokens with a learned relative attention bias.
    MultiInput,
    /// The morphology token alone (no genes, no centroid): cell types from the nucleus
    /// patch (`cellsymphony image-only`). Not in [`Architecture::ALL`] (the gene-based
    /// benchmark's table); trained by [`crate::train::image_only`].
    ImageOnly,
}

impl Architecture {
    /// All four, in table order.
    pub const ALL: [Architecture; 4] = [
        Architecture::GeneOnly,
        Architecture::Spatial,
        Architecture::DualModality,
        Architecture::MultiInput,
    ];

    /// The name in model files and on disk (`gene_only`, `spatial`, `dual_modality`,
    /// `multi_input`).
    pub fn name(self) -> &'static str {
        match self {
            Architecture::GeneOnly => ARCHITECTURE_GENE_ONLY,
            Architecture::Spatial => ARCHITECTURE_SPATIAL,
            Architecture::DualModality => ARCHITECTURE_DUAL_MODALITY,
            Architecture::MultiInput => ARCHITECTURE_MULTI_INPUT,
            Architecture::ImageOnly => ARCHITECTURE_IMAGE_ONLY,
        }
    }

    /// Table title (`Gene-only`, …).
    pub fn title(self) -> &'static str {
        match self {
            Architecture::GeneOnly => "Gene-only",
            Architecture::Spatial => "Spatial",
            Architecture::DualModality => "Dual-modality",
            Architecture::MultiInput => "Multi-input",
            Architecture::ImageOnly => "Image-only",
        }
    }

    /// Whether the classifier has a morphology token.
    pub fn has_morphology(self) -> bool {
        matches!(self, Architecture::DualModality | Architecture::MultiInput | Architecture::ImageOnly)
    }

    /// Whether the classifier reads genes (every architecture but the image-only one).
    pub fn has_genes(self) -> bool {
        self != Architecture::ImageOnly
    }

    /// Whether the classifier has a centroid token.
    pub fn has_centroid(self) -> bool {
        matches!(self, Architecture::Spatial | Architecture::MultiInput)
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Architecture {
    type Err = String;
    /// Accepts the file name (`dual_modality`) or the CLI spelling (`dual-modality`).
    fn from_str(s: &str) -> Result<Self, String> {
        let key = s.trim().to_ascii_lowercase().replace('-', "_");
        Architecture::ALL
            .into_iter()
            .chain([Architecture::ImageOnly])
            .find(|a| a.name() == key)
            .ok_or_else(|| {
                format!(
                    "unknown model {s:?}; choose one of gene-only, spatial, dual-modality, multi-input, image-only"
                )
            })
    }
}


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
    /// Burn only: the gene tokens read a precomputed per-cell gene embedding of this width
    /// (e.g. scGPT) instead of normalised counts. The engines reject such files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gene_embedding_dim: Option<usize>,
    /// Burn only: the morphology token reads a precomputed image embedding of this width
    /// (e.g. UNI2, 1536) instead of running the patch ViT (`morphology` is then absent). The
    /// engines reject such files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub morph_embedding_dim: Option<usize>,
    /// Gene tokens (FT-Transformer style) instead of the summary tokens: one token per listed
    /// gene, `x[gene] · value[token] + identity[token]` (learned `[T, D]` tables), so attention
    /// runs over genes; `gene_tokens` then equals the number of listed genes. Absent: the
    /// summary encoder (GEB). Gene-only architecture; model files holding it are
    /// `format_version` 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gene_token_panel: Option<GeneTokenPanel>,
    /// A linear ("wide") path beside the transformer: logits = head(encoder) + `linear_path`
    /// · x, where x is the model input `[n_inputs]` (normalised, standardised genes; a
    /// centroid model's sinusoid columns get zero weights), weight `[C, n_inputs]`,
    /// zero-initialised so training starts from the transformer alone. Reads counts (not
    /// `gene_embedding_dim`). Absent in older model files: no linear path.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub linear_path: bool,
}

/// Most gene tokens a model may have (keeps attention and the GPU's workgroup counts in
/// bounds; the default cap is [`DEFAULT_MAX_GENE_TOKENS`]).
pub const MAX_GENE_TOKENS: usize = 4096;
/// Default cap on gene tokens: panels up to this size use every gene.
pub const DEFAULT_MAX_GENE_TOKENS: usize = 512;

/// How the genes of a gene-token model were chosen from the panel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeneSelection {
    /// Every gene of the panel (the panel fits under the cap).
    All,
    /// The genes of largest variance of the normalised expression over the training cells.
    HighlyVariable,
    /// The genes of largest mean normalised expression over the training cells.
    TopExpressed,
}

impl GeneSelection {
    /// The name in model files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            GeneSelection::All => "all",
            GeneSelection::HighlyVariable => "highly_variable",
            GeneSelection::TopExpressed => "top_expressed",
        }
    }
}

impl FromStr for GeneSelection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "all" => Ok(GeneSelection::All),
            "highly_variable" | "hvg" => Ok(GeneSelection::HighlyVariable),
            "top_expressed" => Ok(GeneSelection::TopExpressed),
            _ => Err(format!("unknown gene selection {s:?}; choose highly-variable or top-expressed")),
        }
    }
}

/// The genes a gene-token model reads, one token each, in token order (recorded in the model
/// file so inference uses the genes training chose).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneTokenPanel {
    /// How they were chosen.
    pub selection: GeneSelection,
    /// Indices into the model's gene list (`genes`), strictly increasing.
    pub genes: Vec<usize>,
}

/// Which gene encoder a classifier uses (the CLI's `--gene-encoder`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GeneEncoderKind {
    /// `gene_tokens` summary tokens from one matmul over all genes (GEB, the paper's).
    #[default]
    Summary,
    /// One token per gene ([`GeneTokenPanel`]).
    Tokens,
}

impl GeneEncoderKind {
    /// `summary` or `tokens`.
    pub fn name(self) -> &'static str {
        match self {
            GeneEncoderKind::Summary => "summary",
            GeneEncoderKind::Tokens => "tokens",
        }
    }
}

impl FromStr for GeneEncoderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "summary" => Ok(GeneEncoderKind::Summary),
            "tokens" | "gene_tokens" | "gene-tokens" => Ok(GeneEncoderKind::Tokens),
            _ => Err(format!("unknown gene encoder {s:?}; choose summary or tokens")),
        }
    }
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
            gene_embedding_dim: None,
            morph_embedding_dim: None,
            gene_token_panel: None,
            linear_path: false,
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

    /// Input width of the `gene_embedding` weight as stored: 1 for a gene-token model (row
    /// block `t` is token `t`'s value vector, its bias the identity embedding), otherwise
    /// [`n_embedding_inputs`](Self::n_embedding_inputs).
    pub fn token_embedding_inputs(&self) -> usize {
        if self.gene_token_panel.is_some() {
            1
        } else {
            self.n_embedding_inputs()
        }
    }

    /// The model-file `format_version` this config needs: 2 with gene tokens, else 1 (so
    /// summary-token files stay readable by older builds).
    pub fn format_version(&self) -> u32 {
        if self.gene_token_panel.is_some() {
            2
        } else {
            1
        }
    }

    /// This config with one token per gene of `genes` (indices into the panel, strictly
    /// increasing) chosen by `selection`.
    pub fn with_gene_token_panel(mut self, selection: GeneSelection, genes: Vec<usize>) -> Self {
        self.gene_tokens = genes.len();
        self.gene_token_panel = Some(GeneTokenPanel { selection, genes });
        self
    }

    /// Tokens per cell, in order: `gene_tokens` gene tokens, the morphology token (if any),
    /// the centroid token (if any).
    pub fn n_tokens(&self) -> usize {
        self.gene_tokens + usize::from(self.has_morphology_token()) + usize::from(self.spatial.is_some())
    }

    /// Whether this is the image-only classifier's spec (no gene tokens; [`Self::kind`] checks
    /// the rest).
    pub fn is_image_only(&self) -> bool {
        self.gene_tokens == 0
    }

    /// Whether the classifier has a morphology token (patch ViT or precomputed image embedding).
    pub fn has_morphology_token(&self) -> bool {
        self.morphology.is_some() || self.morph_embedding_dim.is_some()
    }

    /// The architecture these options describe: gene-only, spatial (centroid token),
    /// dual-modality (morphology token) or multi-input (both, plus the attention bias).
    /// Errors for other combinations.
    pub fn kind(&self) -> Result<Architecture, ModelFileError> {
        if self.is_image_only() {
            return match (self.morphology.is_some(), self.spatial.is_some(), self.attention_bias, self.n_genes, self.linear_path) {
                (true, false, false, 0, false) => Ok(Architecture::ImageOnly),
                (m, s, b, g, l) => Err(ModelFileError::InvalidConfig {
                    reason: format!(
                        "config has gene_tokens = 0 (image-only) but morphology ViT: {m}, spatial: {s}, \
                         attention_bias: {b}, n_genes: {g}, linear_path: {l}; an image-only model has \
                         the patch ViT only (no genes, centroid, bias or linear path)"
                    ),
                }),
            };
        }
        match (self.has_morphology_token(), self.spatial.is_some(), self.attention_bias) {
            (false, false, false) => Ok(Architecture::GeneOnly),
            (false, true, false) => Ok(Architecture::Spatial),
            (true, false, false) => Ok(Architecture::DualModality),
            (true, true, true) => Ok(Architecture::MultiInput),
            (m, s, b) => Err(ModelFileError::InvalidConfig {
                reason: format!(
                    "config has morphology: {m}, spatial: {s}, attention_bias: {b}; supported are \
                     gene-only (none), spatial (spatial), dual-modality (morphology) and \
                     multi-input (all three)"
                ),
            }),
        }
    }

    /// The architecture's file name ([`Architecture::name`]).
    pub fn architecture(&self) -> Result<&'static str, ModelFileError> {
        self.kind().map(Architecture::name)
    }

    /// This config's width, depth, heads and gene tokens with the token sources `arch` reads,
    /// taken from `sources` (a morphology token is the patch ViT unless
    /// `sources.morph_embedding_dim` is set; a precomputed gene embedding applies to the
    /// multimodal architectures only, as CellSymphony's foundation-model variants do).
    pub fn for_architecture(mut self, arch: Architecture, sources: &TokenSources) -> Self {
        let multimodal = arch != Architecture::GeneOnly;
        if !arch.has_genes() {
            self.n_genes = 0;
            self.gene_tokens = 0;
            self.linear_path = false;
            self.gene_token_panel = None;
        }
        self.spatial = arch.has_centroid().then(|| sources.spatial.clone());
        self.morph_embedding_dim = if arch.has_morphology() { sources.morph_embedding_dim } else { None };
        self.morphology = (arch.has_morphology() && self.morph_embedding_dim.is_none())
            .then(|| sources.morphology.clone());
        self.attention_bias = arch == Architecture::MultiInput;
        self.gene_embedding_dim = if multimodal && arch.has_genes() { sources.gene_embedding_dim } else { None };
        self
    }

    /// Errors unless the engines (CPU, WGSL) can run this spec: they read counts and patches,
    /// not precomputed embeddings.
    pub fn check_engine_inputs(&self) -> Result<(), ModelFileError> {
        let problem = match (self.gene_embedding_dim, self.morph_embedding_dim) {
            (Some(d), _) => format!("a precomputed gene embedding ({d}-d)"),
            (None, Some(d)) => format!("a precomputed image embedding ({d}-d)"),
            (None, None) => return Ok(()),
        };
        Err(ModelFileError::InvalidConfig {
            reason: format!(
                "the engines run models that read counts (and patches); this one reads {problem}, \
                 so it runs in burn only (train it without --gene-embedding / --morph-embedding \
                 for the engines)"
            ),
        })
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
        // The image-only classifier has no genes and may have no encoder layers.
        let may_be_zero = |name: &str| self.is_image_only() && matches!(name, "n_genes" | "gene_tokens" | "n_layers");
        for (name, v) in sizes {
            if v == 0 && !may_be_zero(name) {
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
        if self.morphology.is_some() && self.morph_embedding_dim.is_some() {
            return Err(ModelFileError::InvalidConfig {
                reason: "config has both a morphology ViT and morph_embedding_dim; the morphology \
                         token reads one or the other"
                    .into(),
            });
        }
        for (name, dim) in [("gene_embedding_dim", self.gene_embedding_dim), ("morph_embedding_dim", self.morph_embedding_dim)] {
            if let Some(d) = dim.filter(|d| *d == 0 || *d > 1 << 20) {
                return Err(ModelFileError::InvalidConfig {
                    reason: format!("config.{name} = {d}; it must be in 1..=1048576"),
                });
            }
        }
        self.kind()?;
        if self.linear_path && self.gene_embedding_dim.is_some() {
            return Err(ModelFileError::InvalidConfig {
                reason: "config.linear_path reads the normalised genes but the model reads a \
                         precomputed gene embedding (gene_embedding_dim); drop one of them"
                    .into(),
            });
        }
        if let Some(p) = &self.gene_token_panel {
            self.validate_gene_token_panel(p)?;
        }
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


impl ClassifierConfig {
    /// Checks a gene-token panel: non-empty, at most [`MAX_GENE_TOKENS`], indices strictly
    /// increasing and inside the panel, `gene_tokens` equal to its length, gene-only
    /// architecture reading counts.
    fn validate_gene_token_panel(&self, p: &GeneTokenPanel) -> Result<(), ModelFileError> {
        let bad = |reason: String| Err(ModelFileError::InvalidConfig { reason: format!("config.gene_token_panel: {reason}") });
        let n = p.genes.len();
        if n == 0 || n > MAX_GENE_TOKENS {
            return bad(format!("{n} genes; it must list 1..={MAX_GENE_TOKENS} (choose a smaller --max-gene-tokens)"));
        }
        if self.gene_tokens != n {
            return bad(format!("lists {n} genes but config.gene_tokens = {}; they must be equal", self.gene_tokens));
        }
        if let Some(i) = p.genes.iter().position(|&g| g >= self.n_genes) {
            return bad(format!("genes[{i}] = {} is outside the panel of n_genes = {}", p.genes[i], self.n_genes));
        }
        if let Some(i) = p.genes.windows(2).position(|w| w[0] >= w[1]) {
            return bad(format!(
                "genes[{}] = {} is not above genes[{i}] = {}; the indices must be strictly increasing",
                i + 1,
                p.genes[i + 1],
                p.genes[i]
            ));
        }
        if self.spatial.is_some() || self.has_morphology_token() || self.attention_bias || self.gene_embedding_dim.is_some() {
            return bad("gene tokens are supported for the gene-only classifier reading counts; train the other architectures with --gene-encoder summary".into());
        }
        Ok(())
    }
}

/// The token-source options [`ClassifierConfig::for_architecture`] picks from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct TokenSources {
    /// The patch ViT of a morphology token.
    pub morphology: MorphologyTokenConfig,
    /// The sinusoid of a centroid token.
    pub spatial: SpatialTokenConfig,
    /// Width of a precomputed gene embedding replacing the counts (multimodal models).
    pub gene_embedding_dim: Option<usize>,
    /// Width of a precomputed image embedding replacing the patch ViT.
    pub morph_embedding_dim: Option<usize>,
}

impl Default for MorphologyTokenConfig {
    /// 32 × 32 px patches at 0.75 µm/px, 8 px ViT patches (a 4 × 4 grid), width 64, 4 heads,
    /// feed-forward 128, 2 blocks, the 4 centre tokens pooled.
    fn default() -> Self {
        Self {
            image_size: 32,
            vit_patch: 8,
            width: 64,
            n_heads: 4,
            d_ff: 128,
            n_layers: 2,
            k_nearest: 4,
            um_per_px: 0.75,
        }
    }
}

impl Default for SpatialTokenConfig {
    /// 16 frequencies per axis, wavelengths 8 µm (a nucleus) to 8 mm (a section).
    fn default() -> Self {
        Self {
            n_frequencies: 16,
            min_wavelength_um: 8.0,
            max_wavelength_um: 8000.0,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SPATIA's multi-scale model (issue 14). Kept in this one block so the engines can follow.
// ---------------------------------------------------------------------------------------------

/// Which levels of SPATIA's hierarchy a model has (the ablation's rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpatiaLevels {
    /// Cell level only: `z = z_cell`.
    Cell,
    /// Cell + niche: `z_cell` attends to `[z_niche]`.
    Niche,
    /// Cell + niche + tissue: `z_cell` attends to `[z_niche, z_tissue]`.
    Tissue,
}

impl SpatiaLevels {
    /// All three, in ablation order.
    pub const ALL: [SpatiaLevels; 3] = [SpatiaLevels::Cell, SpatiaLevels::Niche, SpatiaLevels::Tissue];

    /// `cell`, `niche`, `tissue`.
    pub fn name(self) -> &'static str {
        match self {
            SpatiaLevels::Cell => "cell",
            SpatiaLevels::Niche => "niche",
            SpatiaLevels::Tissue => "tissue",
        }
    }

    /// Whether the model has a niche encoder.
    pub fn has_niche(self) -> bool {
        !matches!(self, SpatiaLevels::Cell)
    }

    /// Whether the model has a tissue transformer.
    pub fn has_tissue(self) -> bool {
        matches!(self, SpatiaLevels::Tissue)
    }

    /// Context tokens the fused cell embedding attends to (0, 1 or 2).
    pub fn context_tokens(self) -> usize {
        usize::from(self.has_niche()) + usize::from(self.has_tissue())
    }
}

impl FromStr for SpatiaLevels {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SpatiaLevels::ALL
            .into_iter()
            .find(|l| l.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("unknown SPATIA levels {s:?}; choose cell, niche or tissue"))
    }
}

/// The architecture of SPATIA's multi-scale model (`crate::model::spatia`).
///
/// ```text
/// cell:   ViT(nucleus patch [S, S]) → image tokens [g², D] ; GEB(genes [G]) → gene tokens [T, D]
///         z_cell = LN(mean(CrossBlock(Q = image tokens, K = V = gene tokens)))          [D]
/// niche:  ViT'(niche tile, downsampled to [S', S']) → niche tokens [g'², D]
///         z_niche = LN(mean(CrossBlock(Q = niche tokens, K = V = [mean of its cells' z_cell])))
/// tissue: TransformerEncoder(z_niche + PE2D(slot) over the region's side² slots, absent masked)
///         → z_tissue per niche                                                        [D]
/// fusion: z = LN(CrossBlock(Q = z_cell, K = V = [z_niche, z_tissue]))                 [D]
/// heads:  cell type Linear(D → C) on z ; niche composition Linear(D → C) on z_niche
/// ```
/// `CrossBlock(x, c) = x + Attn(LN(x), LN(c)); x + FFN(LN(x))` (pre-norm, multi-head).
///
/// Without images (`images: false`) the two ViTs are learned tokens:
/// ```text
/// cell:   z_cell  = LN(mean(CrossBlock(Q = learned [Tq, D] (every cell), K = V = gene tokens)))
/// niche:  z_niche = LN(mean(CrossBlock(Q = learned [Tn, D] (every niche), K = V = [mean z_cell])))
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpatiaSpec {
    /// Input genes `G`.
    pub n_genes: usize,
    /// Cell classes `C`.
    pub n_classes: usize,
    /// Shared width `D`.
    pub d_model: usize,
    /// Attention heads (divide `d_model`).
    pub n_heads: usize,
    /// Feed-forward width of every block.
    pub d_ff: usize,
    /// Gene tokens `T` (the summary gene encoder, keys and values of the cell level).
    pub gene_tokens: usize,
    /// The nucleus-patch ViT (`k_nearest` unused: every image token is a query).
    pub cell_image: MorphologyTokenConfig,
    /// The niche ViT over the niche tile downsampled to `image_size` px
    /// (`um_per_px` = DAPI µm/px × `niche_tile_px / image_size`).
    pub niche_image: MorphologyTokenConfig,
    /// Niche side in DAPI pixels (SPATIA: 256).
    pub niche_tile_px: usize,
    /// DAPI resolution the niche tiles are cut at, µm/px (Xenium's native 0.2125).
    pub niche_dapi_um_per_px: f64,
    /// Tissue-region side in niches (SPATIA: 4).
    pub region_niches: usize,
    /// Layers of the tissue transformer.
    pub tissue_layers: usize,
    /// Which levels exist.
    pub levels: SpatiaLevels,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Whether the model reads images (nucleus patches and niche tiles; default true, omitted
    /// from files when true). Without images (`false`: labelled spatial sets with centroids
    /// only, e.g. imaging panels in an h5ad) the ViT queries are replaced by learned tokens:
    /// the cell level's `cell_query_tokens` tokens `[Tq, D]` (the same for every cell)
    /// cross-attend to the gene tokens, the niche level's `niche_query_tokens` tokens
    /// `[Tn, D]` to the niche's mean `z_cell`; `cell_image`/`niche_image` are then unused
    /// (`niche_tile_px × niche_dapi_um_per_px` still gives the niche side in µm).
    #[serde(default = "spatia_images_default", skip_serializing_if = "is_true")]
    pub images: bool,
    /// Learned query tokens `Tq` of the image-free cell level (0 with images).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cell_query_tokens: usize,
    /// Learned query tokens `Tn` of the image-free niche level (0 with images).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub niche_query_tokens: usize,
}

fn spatia_images_default() -> bool {
    true
}

fn is_true(v: &bool) -> bool {
    *v
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl SpatiaSpec {
    /// The CPU default (trains on 2 cores in minutes on the crop): D 64, 4 heads, FFN 128,
    /// 8 gene tokens, 32 px nucleus patches at 0.75 µm/px in 8 px ViT patches (16 tokens,
    /// 1 block), 256 px niches at 0.2125 µm/px downsampled to 32 px (16 tokens, 1 block),
    /// 4 × 4 regions, 1 tissue layer.
    pub fn small(n_genes: usize, n_classes: usize, levels: SpatiaLevels) -> Self {
        let vit = |image_size: usize, um_per_px: f64| MorphologyTokenConfig {
            image_size,
            vit_patch: 8,
            width: 64,
            n_heads: 4,
            d_ff: 128,
            n_layers: 1,
            k_nearest: 4,
            um_per_px,
        };
        Self {
            n_genes,
            n_classes,
            d_model: 64,
            n_heads: 4,
            d_ff: 128,
            gene_tokens: 8,
            cell_image: vit(32, 0.75),
            niche_image: vit(32, 0.2125 * 8.0),
            niche_tile_px: 256,
            niche_dapi_um_per_px: 0.2125,
            region_niches: 4,
            tissue_layers: 1,
            levels,
            layer_norm_eps: 1e-5,
            images: true,
            cell_query_tokens: 0,
            niche_query_tokens: 0,
        }
    }

    /// This spec without images: 4 learned cell query tokens and 4 learned niche query tokens
    /// replace the two ViTs (`cell_image`/`niche_image` are kept but unused; the niche side in
    /// µm stays `niche_tile_px × niche_dapi_um_per_px`).
    pub fn without_images(self) -> Self {
        Self { images: false, cell_query_tokens: 4, niche_query_tokens: 4, ..self }
    }

    /// Queries of the cell level per cell: ViT tokens `g²` with images, else `Tq`.
    pub fn cell_queries(&self) -> usize {
        if self.images { self.cell_image.n_vit_tokens() } else { self.cell_query_tokens }
    }

    /// Queries of the niche level per niche: niche ViT tokens `g'²` with images, else `Tn`.
    pub fn niche_queries(&self) -> usize {
        if self.images { self.niche_image.n_vit_tokens() } else { self.niche_query_tokens }
    }

    /// Niche side in µm (`niche_tile_px × niche_dapi_um_per_px`).
    pub fn niche_side_um(&self) -> f64 {
        self.niche_tile_px as f64 * self.niche_dapi_um_per_px
    }

    /// The GPU-scale option (our choice, not the paper's exact sizes): D 256, 8 heads, FFN 1024,
    /// 16 gene tokens, 64 px nucleus patches at 0.5 µm/px in 8 px ViT patches (64 tokens,
    /// 4 blocks, width 256), niches downsampled to 128 px (16 px patches, 64 tokens, 4 blocks),
    /// 2 tissue layers.
    pub fn large(n_genes: usize, n_classes: usize, levels: SpatiaLevels) -> Self {
        let vit = |image_size: usize, vit_patch: usize, um_per_px: f64| MorphologyTokenConfig {
            image_size,
            vit_patch,
            width: 256,
            n_heads: 8,
            d_ff: 1024,
            n_layers: 4,
            k_nearest: 4,
            um_per_px,
        };
        Self {
            d_model: 256,
            n_heads: 8,
            d_ff: 1024,
            gene_tokens: 16,
            cell_image: vit(64, 8, 0.5),
            niche_image: vit(128, 16, 0.2125 * 2.0),
            tissue_layers: 2,
            ..Self::small(n_genes, n_classes, levels)
        }
    }

    /// Why this spec cannot be built, naming the field.
    pub fn validate(&self) -> Result<(), ModelFileError> {
        let bad = |reason: String| Err(ModelFileError::InvalidConfig { reason });
        for (name, v) in [
            ("n_genes", self.n_genes),
            ("n_classes", self.n_classes),
            ("d_model", self.d_model),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
            ("gene_tokens", self.gene_tokens),
            ("niche_tile_px", self.niche_tile_px),
            ("region_niches", self.region_niches),
            ("tissue_layers", self.tissue_layers),
        ] {
            if v == 0 {
                return bad(format!("spatia.{name} must be at least 1"));
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) || !self.d_model.is_multiple_of(4) {
            return bad(format!(
                "spatia.d_model {} must be a multiple of 4 (2-D positional encoding) and of n_heads {}",
                self.d_model, self.n_heads
            ));
        }
        for (name, v) in [("cell_image", &self.cell_image), ("niche_image", &self.niche_image)] {
            if v.vit_patch == 0 || v.image_size == 0 || !v.image_size.is_multiple_of(v.vit_patch) {
                return bad(format!("spatia.{name}.image_size {} must be a positive multiple of vit_patch {}", v.image_size, v.vit_patch));
            }
            if v.n_heads == 0 || !v.width.is_multiple_of(v.n_heads) || v.n_layers == 0 {
                return bad(format!("spatia.{name}: width {} must be divisible by n_heads {} and n_layers ≥ 1", v.width, v.n_heads));
            }
        }
        if !self.niche_tile_px.is_multiple_of(self.niche_image.image_size) {
            return bad(format!(
                "spatia.niche_tile_px {} must be a multiple of niche_image.image_size {} (integer downsampling)",
                self.niche_tile_px, self.niche_image.image_size
            ));
        }
        if !(self.niche_dapi_um_per_px > 0.0 && self.niche_dapi_um_per_px.is_finite()) {
            return bad(format!("spatia.niche_dapi_um_per_px {} must be positive", self.niche_dapi_um_per_px));
        }
        if self.images {
            if self.cell_query_tokens != 0 || self.niche_query_tokens != 0 {
                return bad(format!(
                    "spatia.cell_query_tokens {} / niche_query_tokens {} are for images = false only (with images the ViT tokens are the queries); set them to 0",
                    self.cell_query_tokens, self.niche_query_tokens
                ));
            }
        } else {
            for (name, v) in [("cell_query_tokens", self.cell_query_tokens), ("niche_query_tokens", self.niche_query_tokens)] {
                if v == 0 {
                    return bad(format!("spatia.{name} must be at least 1 when images = false (the learned queries replace the ViT)"));
                }
            }
        }
        Ok(())
    }
}

/// Fixed 2-D sinusoidal encoding of the `side × side` slots of a tissue region, `[side², d]`
/// row-major (slot `r · side + c`): for `i < d/4`, `ω_i = 10000^(−i/(d/4))`, features
/// `[sin(c ω_i), cos(c ω_i), sin(r ω_i), cos(r ω_i)]` in blocks of `d/4`. `d` must be a
/// multiple of 4.
pub fn grid_positional_encoding(side: usize, d: usize) -> Vec<f32> {
    let q = d / 4;
    let mut out = vec![0.0f32; side * side * d];
    for r in 0..side {
        for c in 0..side {
            let row = &mut out[(r * side + c) * d..(r * side + c + 1) * d];
            for i in 0..q {
                let w = 10000f64.powf(-(i as f64) / q.max(1) as f64);
                row[i] = (c as f64 * w).sin() as f32;
                row[q + i] = (c as f64 * w).cos() as f32;
                row[2 * q + i] = (r as f64 * w).sin() as f32;
                row[3 * q + i] = (r as f64 * w).cos() as f32;
            }
        }
    }
    out
}
