//! SPATIA's cell level (issue 14) in the burn-free engine: the nucleus-patch ViT's tokens
//! cross-attend to the gene tokens, mean-pooled and normalised to `z_cell`, and (for a model
//! fine-tuned with `--levels cell`) the cell-type head, from a safetensors file of its own.
//!
//! ```text
//! gene tokens  g = reshape(gene_embedding(x), [T, D])            (token type in the bias)
//! image tokens v = vit.norm(ViT blocks(patch_embedding(unfold(patch) ‖ one-hot position)))
//!              i = vit.projection(v)                                           [g², D]
//! cross block  i += o(Attn(q(LN_q(i)), k(LN_kv(g)), v(LN_kv(g))));  i += fc2(GELU(fc1(LN_ff(i))))
//! z_cell       = norm(mean over the g² tokens of i)                            [D]
//! logits       = type_head(z_cell)                                             [C]
//! ```
//!
//! Without images (`spec.images == false`) the image tokens are `spec.cell_query_tokens`
//! learned tokens `[Tq, D]`, the same for every cell (stored as the f32 tensor `queries`;
//! never quantised), and `patches` is empty.
//!
//! The niche and tissue levels, the fusion and the heads are in [`super::spatia_hierarchy`]
//! (which reuses this file's cell level, ViT, cross block and tensor naming); a version-1 file of
//! a model fine-tuned with them holds the cell level only (no head: it reads the fused
//! embedding).
//!
//! File: tensors `gene_embedding`, `vit.patch_embedding`, `vit.layers.{i}.*`, `vit.norm`,
//! `vit.projection`, `cross.norm_q`, `cross.norm_kv`, `cross.attn.{q,k,v,o}`, `cross.norm_ff`,
//! `cross.ffn.{fc1,fc2}`, `norm`, and `type_head` (cell-level models), named and stored as in
//! [`super::format`] (linears `[out, in]`, f32 or int8 per output channel); metadata key
//! [`SPATIA_METADATA_KEY`] holds [`SpatiaCellMeta`] as JSON, plus the content checksum.

use serde::{Deserialize, Serialize};

use super::cpu::{fuse_qkv, run_encoder_layer, PackedLayer};
use super::error::{EngineError, ModelFileError};
use super::format::{EncoderLayerWeights, LayerNormWeights, Quantization, TensorReader, TensorWriter, VitWeights};
use super::spec::MorphologyTokenConfig;
use super::gemm::{gemm, PackedLinear};
use super::ops::{cross_attention_cell, layernorm_reference, mean_pool_reference};
use super::preprocess::vit_patch_rows;
use super::spec::{SpatiaLevels, SpatiaSpec};
use crate::gpu::Activation;
use crate::quant::Linear;

/// Key of the JSON entry in the safetensors `__metadata__` map of a SPATIA cell-level file.
pub const SPATIA_METADATA_KEY: &str = "cellsymphony_spatia_cell";
/// Version of the SPATIA cell-level file layout.
pub const SPATIA_FORMAT_VERSION: u32 = 1;
/// Cells per block of the CPU forward.
const BLOCK_CELLS: usize = 256;

/// Everything in the [`SPATIA_METADATA_KEY`] entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpatiaCellMeta {
    /// [`SPATIA_FORMAT_VERSION`].
    pub format_version: u32,
    /// The architecture (only its cell-level fields and `levels` are read here).
    pub spec: SpatiaSpec,
    /// Class names, `spec.n_classes` of them.
    pub classes: Vec<String>,
    /// Weight storage.
    pub quantization: Quantization,
}

/// The cell level's cross-attention block.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossBlockWeights {
    /// LayerNorm of the queries (image tokens) `[D]`.
    pub norm_q: LayerNormWeights,
    /// LayerNorm of the keys/values (gene tokens) `[D]`.
    pub norm_kv: LayerNormWeights,
    /// Query projection `[D, D]`.
    pub q: Linear,
    /// Key projection `[D, D]`.
    pub k: Linear,
    /// Value projection `[D, D]`.
    pub v: Linear,
    /// Output projection `[D, D]`.
    pub o: Linear,
    /// LayerNorm before the feed-forward block `[D]`.
    pub norm_ff: LayerNormWeights,
    /// Feed-forward expansion `[F, D]` (then GELU).
    pub fc1: Linear,
    /// Feed-forward projection `[D, F]`.
    pub fc2: Linear,
}

/// Where a SPATIA level's queries come from.
#[derive(Clone, Debug, PartialEq)]
pub enum SpatiaQueries {
    /// A ViT over the level's images (position table folded into the patch embedding) and the
    /// projection of every ViT token to `D` (`[D, W]`).
    Vit {
        /// The ViT.
        vit: VitWeights,
        /// Projection `[D, W]`.
        projection: Linear,
    },
    /// Learned tokens `[T, D]` row-major (image-free models), the same for every item.
    Learned {
        /// `T`.
        n: usize,
        /// `[T, D]`.
        tokens: Vec<f32>,
    },
}

impl SpatiaQueries {
    pub(crate) fn linears(&self) -> Vec<&Linear> {
        match self {
            SpatiaQueries::Vit { vit, projection } => {
                let mut v = vec![&vit.patch_embedding, projection];
                for l in &vit.layers {
                    v.extend([&l.q, &l.k, &l.v, &l.o, &l.fc1, &l.fc2]);
                }
                v
            }
            SpatiaQueries::Learned { .. } => vec![],
        }
    }

    pub(crate) fn linears_mut(&mut self) -> Vec<&mut Linear> {
        match self {
            SpatiaQueries::Vit { vit, projection } => {
                let mut v = vec![&mut vit.patch_embedding, projection];
                for l in &mut vit.layers {
                    v.extend([&mut l.q, &mut l.k, &mut l.v, &mut l.o, &mut l.fc1, &mut l.fc2]);
                }
                v
            }
            SpatiaQueries::Learned { .. } => vec![],
        }
    }

    /// Checks the queries against the level's config: a ViT of `m` projecting to `d` when
    /// `images`, else `t` finite learned tokens of width `d`; `p` prefixes the tensor names.
    pub(crate) fn validate(&self, p: &str, images: bool, m: &MorphologyTokenConfig, t: usize, d: usize) -> Result<(), ModelFileError> {
        match (self, images) {
            (SpatiaQueries::Vit { vit, projection }, true) => {
                check_linear(&format!("{p}vit.patch_embedding"), &vit.patch_embedding, m.width, m.patch_row_width())?;
                if vit.layers.len() != m.n_layers {
                    return Err(invalid(format!("spec: {p}ViT has n_layers {} but {} ViT layers are stored", m.n_layers, vit.layers.len())));
                }
                for (i, l) in vit.layers.iter().enumerate() {
                    for (n, x) in [("q", &l.q), ("k", &l.k), ("v", &l.v), ("o", &l.o)] {
                        check_linear(&format!("{p}vit.layers.{i}.attn.{n}"), x, m.width, m.width)?;
                    }
                    check_linear(&format!("{p}vit.layers.{i}.ffn.fc1"), &l.fc1, m.d_ff, m.width)?;
                    check_linear(&format!("{p}vit.layers.{i}.ffn.fc2"), &l.fc2, m.width, m.d_ff)?;
                }
                check_linear(&format!("{p}vit.projection"), projection, d, m.width)
            }
            (SpatiaQueries::Learned { n, tokens }, false) => {
                if *n != t || tokens.len() != t * d {
                    return Err(ModelFileError::WrongShape { name: format!("{p}queries"), expected: vec![t, d], found: vec![*n, tokens.len() / d.max(1)] });
                }
                if !tokens.iter().all(|v| v.is_finite()) {
                    return Err(invalid(format!("{p}queries hold non-finite values; re-export the model")));
                }
                Ok(())
            }
            (_, images) => Err(invalid(format!(
                "spec.images is {images} but the {p}queries are {}; re-export the model with `cellsymphony spatia export`",
                if images { "learned tokens (an image-free model)" } else { "a ViT (a model with images)" }
            ))),
        }
    }
}

fn check_linear(name: &str, l: &Linear, out: usize, in_dim: usize) -> Result<(), ModelFileError> {
    if (l.out_dim, l.in_dim) == (out, in_dim) && l.bias.len() == out {
        Ok(())
    } else {
        Err(ModelFileError::WrongShape { name: name.to_string(), expected: vec![out, in_dim], found: vec![l.out_dim, l.in_dim] })
    }
}

/// All weights of SPATIA's cell level.
#[derive(Clone, Debug, PartialEq)]
pub struct SpatiaCellWeights {
    /// Gene tokens `[T·D, G]`, the token-type table folded into the bias.
    pub gene_embedding: Linear,
    /// The queries: the nucleus-patch ViT (position table folded into the patch embedding, as
    /// the classifiers' morphology token stores it) and its projection `[D, W]`, or
    /// `cell_query_tokens` learned tokens (image-free models).
    pub queries: SpatiaQueries,
    /// Image tokens (or learned queries) attend to gene tokens.
    pub cross: CrossBlockWeights,
    /// LayerNorm of the pooled `z_cell` `[D]`.
    pub norm: LayerNormWeights,
    /// Cell-type head `[C, D]` on `z_cell` (models fine-tuned with `--levels cell` only).
    pub type_head: Option<Linear>,
}

impl SpatiaCellWeights {
    pub(crate) fn linears(&self) -> Vec<&Linear> {
        let mut v = vec![&self.gene_embedding];
        v.extend(self.queries.linears());
        let c = &self.cross;
        v.extend([&c.q, &c.k, &c.v, &c.o, &c.fc1, &c.fc2]);
        v.extend(self.type_head.as_ref());
        v
    }

    pub(crate) fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut v = vec![&mut self.gene_embedding];
        v.extend(self.queries.linears_mut());
        let c = &mut self.cross;
        v.extend([&mut c.q, &mut c.k, &mut c.v, &mut c.o, &mut c.fc1, &mut c.fc2]);
        v.extend(self.type_head.as_mut());
        v
    }
}

/// A SPATIA cell-level model: metadata and weights, checked against each other.
#[derive(Clone, Debug, PartialEq)]
pub struct SpatiaCellModel {
    /// Metadata.
    pub meta: SpatiaCellMeta,
    /// Weights.
    pub weights: SpatiaCellWeights,
}

/// What the CPU forward of the cell level yields.
#[derive(Clone, Debug, PartialEq)]
pub struct SpatiaCellOutput {
    /// `z_cell` `[cells, D]`.
    pub z_cell: Vec<f32>,
    /// Cell-type logits `[cells, C]` (cell-level models only).
    pub logits: Option<Vec<f32>>,
}

fn invalid(reason: String) -> ModelFileError {
    ModelFileError::InvalidConfig { reason }
}

impl SpatiaCellModel {
    /// Builds a model after checking the weights against the metadata.
    pub fn new(meta: SpatiaCellMeta, weights: SpatiaCellWeights) -> Result<Self, ModelFileError> {
        let model = Self { meta, weights };
        model.validate()?;
        Ok(model)
    }

    /// Checks the spec, the class list, the head's presence and every tensor's shape and
    /// storage kind.
    pub fn validate(&self) -> Result<(), ModelFileError> {
        let m = &self.meta;
        if m.format_version != SPATIA_FORMAT_VERSION {
            return Err(invalid(format!(
                "SPATIA cell file version {} is not supported (this build reads {SPATIA_FORMAT_VERSION}); re-export it with `cellsymphony spatia export`",
                m.format_version
            )));
        }
        m.spec.validate()?;
        if m.classes.len() != m.spec.n_classes {
            return Err(invalid(format!("meta.classes has {} names but spec.n_classes is {}", m.classes.len(), m.spec.n_classes)));
        }
        let has_head = self.weights.type_head.is_some();
        if has_head != (m.spec.levels == SpatiaLevels::Cell) {
            return Err(invalid(format!(
                "a type_head is stored only for --levels cell (spec.levels = {}, type_head present: {has_head})",
                m.spec.levels.name()
            )));
        }
        let want_int8 = m.quantization == Quantization::Int8PerChannelSymmetric;
        for (i, l) in self.weights.linears().into_iter().enumerate() {
            if l.is_int8() != want_int8 {
                return Err(invalid(format!("linear layer {i} is {} but meta.quantization is {}", if l.is_int8() { "int8" } else { "f32" }, m.quantization.as_str())));
            }
        }
        // Shapes: re-reading the tensors checks them; here the in-memory form is compared.
        let s = &m.spec;
        let (d, t, ci) = (s.d_model, s.gene_tokens, &s.cell_image);
        let shape = |name: &str, l: &Linear, out: usize, in_dim: usize| {
            if (l.out_dim, l.in_dim) == (out, in_dim) && l.bias.len() == out {
                Ok(())
            } else {
                Err(ModelFileError::WrongShape { name: name.to_string(), expected: vec![out, in_dim], found: vec![l.out_dim, l.in_dim] })
            }
        };
        let w = &self.weights;
        shape("gene_embedding", &w.gene_embedding, t * d, s.n_genes)?;
        w.queries.validate("", s.images, ci, s.cell_query_tokens, d)?;
        shape("cross.attn.q", &w.cross.q, d, d)?;
        shape("cross.attn.k", &w.cross.k, d, d)?;
        shape("cross.attn.v", &w.cross.v, d, d)?;
        shape("cross.attn.o", &w.cross.o, d, d)?;
        shape("cross.ffn.fc1", &w.cross.fc1, s.d_ff, d)?;
        shape("cross.ffn.fc2", &w.cross.fc2, d, s.d_ff)?;
        if let Some(h) = &w.type_head {
            shape("type_head", h, s.n_classes, d)?;
        }
        Ok(())
    }

    /// Whether the linear weights are int8.
    pub fn is_int8(&self) -> bool {
        self.meta.quantization == Quantization::Int8PerChannelSymmetric
    }

    /// A copy with every linear weight quantised to int8 (per output channel, symmetric).
    pub fn quantize_int8(&self) -> Self {
        let mut model = self.clone();
        for l in model.weights.linears_mut() {
            *l = l.quantized();
        }
        model.meta.quantization = Quantization::Int8PerChannelSymmetric;
        model
    }

    /// Serialises the model (validated first).
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>, ModelFileError> {
        self.validate()?;
        let mut t = TensorWriter::default();
        write_cell_tensors(&mut t, &self.weights);
        let json = serde_json::to_string(&self.meta).map_err(|e| invalid(format!("metadata does not serialise: {e}")))?;
        t.finish(SPATIA_METADATA_KEY, json)
    }

    /// Parses and validates a SPATIA cell-level file held in memory (never panics on
    /// malformed bytes; tensors the metadata does not explain are errors).
    pub fn from_safetensors_bytes(bytes: &[u8]) -> Result<Self, ModelFileError> {
        let (mut r, json) = TensorReader::open(bytes, SPATIA_METADATA_KEY)?;
        let meta: SpatiaCellMeta = serde_json::from_str(&json).map_err(|e| invalid(format!("{SPATIA_METADATA_KEY} metadata is not a SPATIA cell-level header ({e}); export it with `cellsymphony spatia export`")))?;
        meta.spec.validate()?;
        let q = meta.quantization;
        let weights = read_cell_tensors(&mut r, &meta.spec, q, meta.spec.levels == SpatiaLevels::Cell)?;
        r.check_all_used(q)?;
        Self::new(meta, weights)
    }

    /// Reads and validates a file; errors carry the path.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self, ModelFileError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ModelFileError::Io { action: "read", path: path.to_path_buf(), source })?;
        Self::from_safetensors_bytes(&bytes).map_err(|e| e.in_file(path))
    }

    /// Writes the file atomically.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save_atomic(&self, path: impl AsRef<std::path::Path>) -> Result<(), ModelFileError> {
        let bytes = self.to_safetensors_bytes()?;
        crate::util::write_atomic(path.as_ref(), &bytes).map_err(|e| ModelFileError::Io { action: e.action, path: e.path, source: e.source })
    }

    /// `z_cell` (and logits) of `n` cells: `genes` `[n, G]` normalised as in training,
    /// `patches` `[n, S, S]` in `[0, 1]`. Linear layers run through the packed GEMM of
    /// [`super::gemm`] (int8 weights: f32 activations), attention through
    /// [`super::ops::cross_attention_reference`]'s online softmax.
    ///
    /// Errors with [`EngineError::InputShape`] for mis-sized inputs.
    pub fn forward(&self, genes: &[f32], patches: &[f32], n: usize) -> Result<SpatiaCellOutput, EngineError> {
        let packed = PackedCell::new(&self.weights)?;
        let z_cell = cell_z(&self.meta.spec, &self.weights, &packed, genes, patches, n)?;
        let logits = packed.type_head.as_ref().map(|h| gemm(&z_cell, n, h, Activation::None, None));
        Ok(SpatiaCellOutput { z_cell, logits })
    }
}

/// Writes a cross block under `{p}.norm_q`, `{p}.norm_kv`, `{p}.attn.{q,k,v,o}`,
/// `{p}.norm_ff`, `{p}.ffn.{fc1,fc2}`.
pub(super) fn write_cross(t: &mut TensorWriter, p: &str, c: &CrossBlockWeights) {
    t.layer_norm(&format!("{p}.norm_q"), &c.norm_q);
    t.layer_norm(&format!("{p}.norm_kv"), &c.norm_kv);
    for (name, l) in [("q", &c.q), ("k", &c.k), ("v", &c.v), ("o", &c.o)] {
        t.linear(&format!("{p}.attn.{name}"), l);
    }
    t.layer_norm(&format!("{p}.norm_ff"), &c.norm_ff);
    t.linear(&format!("{p}.ffn.fc1"), &c.fc1);
    t.linear(&format!("{p}.ffn.fc2"), &c.fc2);
}

/// Reads the cross block [`write_cross`] writes (width `d`, feed-forward `ff`).
pub(super) fn read_cross(r: &mut TensorReader<'_>, p: &str, d: usize, ff: usize, q: Quantization) -> Result<CrossBlockWeights, ModelFileError> {
    Ok(CrossBlockWeights {
        norm_q: r.layer_norm(&format!("{p}.norm_q"), d)?,
        norm_kv: r.layer_norm(&format!("{p}.norm_kv"), d)?,
        q: r.linear(&format!("{p}.attn.q"), d, d, q)?,
        k: r.linear(&format!("{p}.attn.k"), d, d, q)?,
        v: r.linear(&format!("{p}.attn.v"), d, d, q)?,
        o: r.linear(&format!("{p}.attn.o"), d, d, q)?,
        norm_ff: r.layer_norm(&format!("{p}.norm_ff"), d)?,
        fc1: r.linear(&format!("{p}.ffn.fc1"), ff, d, q)?,
        fc2: r.linear(&format!("{p}.ffn.fc2"), d, ff, q)?,
    })
}

/// Writes a ViT under `{p}.patch_embedding`, `{p}.layers.{i}.*`, `{p}.norm` and its
/// projection under `{p}.projection`.
pub(super) fn write_vit(t: &mut TensorWriter, p: &str, vit: &VitWeights, projection: &Linear) {
    t.linear(&format!("{p}.patch_embedding"), &vit.patch_embedding);
    for (i, l) in vit.layers.iter().enumerate() {
        t.encoder_layer(&format!("{p}.layers.{i}"), l);
    }
    t.layer_norm(&format!("{p}.norm"), &vit.norm);
    t.linear(&format!("{p}.projection"), projection);
}

/// Reads the ViT and projection [`write_vit`] writes (`m` its config, projection to `d`).
pub(super) fn read_vit(r: &mut TensorReader<'_>, p: &str, m: &MorphologyTokenConfig, d: usize, q: Quantization) -> Result<(VitWeights, Linear), ModelFileError> {
    let vit = VitWeights {
        patch_embedding: r.linear(&format!("{p}.patch_embedding"), m.width, m.patch_row_width(), q)?,
        layers: (0..m.n_layers).map(|i| r.encoder_layer(&format!("{p}.layers.{i}"), m.width, m.d_ff, q)).collect::<Result<_, _>>()?,
        norm: r.layer_norm(&format!("{p}.norm"), m.width)?,
    };
    let projection = r.linear(&format!("{p}.projection"), d, m.width, q)?;
    Ok((vit, projection))
}

/// Writes a level's queries: the ViT under `{p}vit.*` or the learned tokens as `{p}queries`
/// (f32 `[T, D]`).
pub(super) fn write_queries(t: &mut TensorWriter, p: &str, q: &SpatiaQueries) {
    match q {
        SpatiaQueries::Vit { vit, projection } => write_vit(t, &format!("{p}vit"), vit, projection),
        SpatiaQueries::Learned { n, tokens } => t.f32(format!("{p}queries"), vec![*n, tokens.len() / (*n).max(1)], tokens),
    }
}

/// Reads the queries [`write_queries`] writes for `s` (`m`: the level's image config, `tq`
/// its learned-token count).
pub(super) fn read_queries(r: &mut TensorReader<'_>, p: &str, s: &SpatiaSpec, m: &MorphologyTokenConfig, tq: usize, q: Quantization) -> Result<SpatiaQueries, ModelFileError> {
    if s.images {
        let (vit, projection) = read_vit(r, &format!("{p}vit"), m, s.d_model, q)?;
        Ok(SpatiaQueries::Vit { vit, projection })
    } else {
        Ok(SpatiaQueries::Learned { n: tq, tokens: r.f32(&format!("{p}queries"), &[tq, s.d_model])? })
    }
}

/// Writes the cell level's tensors (the names in the module docs).
pub(super) fn write_cell_tensors(t: &mut TensorWriter, w: &SpatiaCellWeights) {
    t.linear("gene_embedding", &w.gene_embedding);
    write_queries(t, "", &w.queries);
    write_cross(t, "cross", &w.cross);
    t.layer_norm("norm", &w.norm);
    if let Some(h) = &w.type_head {
        t.linear("type_head", h);
    }
}

/// Reads the cell level's tensors (`with_head`: the cell-level type head too).
pub(super) fn read_cell_tensors(r: &mut TensorReader<'_>, s: &SpatiaSpec, q: Quantization, with_head: bool) -> Result<SpatiaCellWeights, ModelFileError> {
    let d = s.d_model;
    let queries = read_queries(r, "", s, &s.cell_image, s.cell_query_tokens, q)?;
    Ok(SpatiaCellWeights {
        gene_embedding: r.linear("gene_embedding", s.gene_tokens * d, s.n_genes, q)?,
        queries,
        cross: read_cross(r, "cross", d, s.d_ff, q)?,
        norm: r.layer_norm("norm", d)?,
        type_head: if with_head { Some(r.linear("type_head", s.n_classes, d, q)?) } else { None },
    })
}

/// Pixels per cell the cell level reads: `S²` with images, 0 without.
pub(crate) fn cell_pixels(s: &SpatiaSpec) -> usize {
    if s.images { s.cell_image.pixels() } else { 0 }
}

/// Pixels per niche the niche level reads: `S'²` with images, 0 without.
pub(crate) fn niche_pixels(s: &SpatiaSpec) -> usize {
    if s.images { s.niche_image.pixels() } else { 0 }
}

/// `z_cell` `[n, D]` of `n` cells (blocks of [`BLOCK_CELLS`]): `genes` `[n, G]`, `patches`
/// `[n, S, S]` (empty without images); errors with [`EngineError::InputShape`] for mis-sized
/// inputs.
pub(crate) fn cell_z(s: &SpatiaSpec, w: &SpatiaCellWeights, packed: &PackedCell, genes: &[f32], patches: &[f32], n: usize) -> Result<Vec<f32>, EngineError> {
    let px = cell_pixels(s);
    if genes.len() != n * s.n_genes {
        return Err(EngineError::InputShape { what: format!("SPATIA genes [cells={n}, genes={}]", s.n_genes), expected: n * s.n_genes, found: genes.len() });
    }
    if patches.len() != n * px {
        let side = if s.images { s.cell_image.image_size } else { 0 };
        return Err(EngineError::InputShape { what: format!("SPATIA patches [cells={n}, {side}, {side}] (images: {})", s.images), expected: n * px, found: patches.len() });
    }
    let mut z_cell = Vec::with_capacity(n * s.d_model);
    for start in (0..n).step_by(BLOCK_CELLS) {
        let b = BLOCK_CELLS.min(n - start);
        z_cell.extend(cell_block(s, w, packed, &genes[start * s.n_genes..(start + b) * s.n_genes], &patches[start * px..(start + b) * px], b)?);
    }
    Ok(z_cell)
}

/// `z_cell` `[b, D]` of one block.
fn cell_block(s: &SpatiaSpec, w: &SpatiaCellWeights, p: &PackedCell, genes: &[f32], patches: &[f32], b: usize) -> Result<Vec<f32>, EngineError> {
    let (d, t, ci) = (s.d_model, s.gene_tokens, &s.cell_image);
    let eps = s.layer_norm_eps as f32;
    let g2 = s.cell_queries();
    // Gene tokens [b·T, D] (the [b, T·D] output read row-major).
    let gene_tokens = gemm(genes, b, &p.gene_embedding, Activation::None, None);
    // Image tokens [b·g², D] (or the learned queries [b·Tq, D]).
    let mut h = query_tokens(&w.queries, p.vit.as_ref(), patches, b, ci, eps)?;
    // Cross block: queries from the image tokens, keys/values from the gene tokens.
    cross_block(&mut h, &gene_tokens, b, g2, t, d, s.n_heads, eps, &w.cross, &p.cross);
    let pooled = mean_pool_reference(&h, b, g2, d);
    Ok(layernorm_reference(&pooled, b, d, &w.norm, eps))
}

/// The queries of `n` items `[n·T, D]`: the projected ViT tokens of their images (`packed`
/// must be the ViT's packing) or the learned tokens repeated `n` times (images ignored).
/// Errors when a ViT comes without its packing (weights and packing of different models).
pub(crate) fn query_tokens(q: &SpatiaQueries, packed: Option<&PackedVit>, images: &[f32], n: usize, m: &MorphologyTokenConfig, eps: f32) -> Result<Vec<f32>, EngineError> {
    match (q, packed) {
        (SpatiaQueries::Vit { vit, .. }, Some(p)) => Ok(vit_tokens(vit, p, images, n, m, eps)),
        (SpatiaQueries::Learned { tokens, .. }, _) => Ok(tokens.repeat(n)),
        (SpatiaQueries::Vit { .. }, None) => Err(EngineError::InvalidConfig { reason: "SPATIA: a ViT's weights were given without their packing; prepare the model again".into() }),
    }
}

/// Projected ViT tokens `[n·g², D]` of `n` images `[n, S, S]` (`m` their config):
/// `projection(norm(ViT blocks(patch_embedding(unfold(image) ‖ one-hot position))))`.
pub(crate) fn vit_tokens(vit: &VitWeights, p: &PackedVit, images: &[f32], n: usize, m: &MorphologyTokenConfig, eps: f32) -> Vec<f32> {
    let g2 = m.n_vit_tokens();
    let rows = vit_patch_rows(images, n, m);
    let mut vh = gemm(&rows, n * g2, &p.patch_embedding, Activation::None, None);
    for (layer, packed) in vit.layers.iter().zip(&p.layers) {
        run_encoder_layer(&mut vh, n, g2, m.width, m.n_heads, eps, layer, packed);
    }
    let va = layernorm_reference(&vh, n * g2, m.width, &vit.norm, eps);
    gemm(&va, n * g2, &p.projection, Activation::None, None)
}

/// SPATIA's pre-norm cross block in place on the queries `h` `[n·tq, D]` with the context
/// `ctx` `[n·tk, D]` (each of the `n` items attends over its own `tk` context rows):
/// `h += o(Attn(q(LN_q(h)), k(LN_kv(ctx)), v(LN_kv(ctx))))`, then
/// `h += fc2(GELU(fc1(LN_ff(h))))`. Attention is [`cross_attention_cell`]'s online softmax,
/// split over the cores by item.
#[allow(clippy::too_many_arguments)]
pub(crate) fn cross_block(h: &mut Vec<f32>, ctx: &[f32], n: usize, tq: usize, tk: usize, d: usize, heads: usize, eps: f32, w: &CrossBlockWeights, p: &PackedCross) {
    let a = layernorm_reference(h, n * tq, d, &w.norm_q, eps);
    let q = gemm(&a, n * tq, &p.q, Activation::None, None);
    let g = layernorm_reference(ctx, n * tk, d, &w.norm_kv, eps);
    let kv = gemm(&g, n * tk, &p.kv, Activation::None, None);
    let mut att = vec![0.0f32; n * tq * d];
    crate::util::parallel::for_each_row_chunk(&mut att, tq * d, n.div_ceil(4 * crate::util::parallel::worker_count()).max(1), |first, chunk| {
        for (i, o) in chunk.chunks_exact_mut(tq * d).enumerate() {
            let item = first + i;
            cross_attention_cell(&q[item * tq * d..(item + 1) * tq * d], &kv[item * tk * 2 * d..(item + 1) * tk * 2 * d], o, tk, d, heads);
        }
    });
    *h = gemm(&att, n * tq, &p.o, Activation::None, Some(h));
    let a = layernorm_reference(h, n * tq, d, &w.norm_ff, eps);
    let f = gemm(&a, n * tq, &p.fc1, Activation::Gelu, None);
    *h = gemm(&f, n * tq, &p.fc2, Activation::None, Some(h));
}

/// A cross block's linears packed for the GEMM (k and v fused into `[2D, D]`).
#[derive(Clone, Debug)]
pub(crate) struct PackedCross {
    q: PackedLinear,
    kv: PackedLinear,
    o: PackedLinear,
    fc1: PackedLinear,
    fc2: PackedLinear,
}

impl PackedCross {
    /// Errors when k and v differ in input width or weight kind (a validated file always
    /// packs); `what` names the block in the message.
    pub(crate) fn new(c: &CrossBlockWeights, what: &str) -> Result<Self, EngineError> {
        let kv = Linear::concat_rows(&[&c.k, &c.v]).ok_or_else(|| EngineError::InvalidConfig {
            reason: format!("SPATIA {what}: k and v differ in input width or weight kind; re-export the model"),
        })?;
        Ok(Self { q: PackedLinear::new(&c.q), kv: PackedLinear::new(&kv), o: PackedLinear::new(&c.o), fc1: PackedLinear::new(&c.fc1), fc2: PackedLinear::new(&c.fc2) })
    }
}

/// A ViT with its projection packed for the GEMM (q/k/v fused per layer).
#[derive(Clone, Debug)]
pub(crate) struct PackedVit {
    patch_embedding: PackedLinear,
    layers: Vec<PackedLayer>,
    projection: PackedLinear,
}

impl PackedVit {
    pub(crate) fn new(vit: &VitWeights, projection: &Linear) -> Self {
        let layer = |l: &EncoderLayerWeights| PackedLayer::new(l, &fuse_qkv(l), PackedLinear::new);
        Self { patch_embedding: PackedLinear::new(&vit.patch_embedding), layers: vit.layers.iter().map(layer).collect(), projection: PackedLinear::new(projection) }
    }

    /// The ViT of `q` packed (`None` for learned queries).
    pub(crate) fn for_queries(q: &SpatiaQueries) -> Option<Self> {
        match q {
            SpatiaQueries::Vit { vit, projection } => Some(Self::new(vit, projection)),
            SpatiaQueries::Learned { .. } => None,
        }
    }
}

/// The cell level's linears packed for the GEMM.
#[derive(Clone, Debug)]
pub(crate) struct PackedCell {
    gene_embedding: PackedLinear,
    vit: Option<PackedVit>,
    cross: PackedCross,
    pub(crate) type_head: Option<PackedLinear>,
}

impl PackedCell {
    /// Errors when the cross block's k and v differ in input width or weight kind (a file
    /// [`SpatiaCellModel::validate`] accepts always packs).
    pub(crate) fn new(w: &SpatiaCellWeights) -> Result<Self, EngineError> {
        Ok(Self {
            gene_embedding: PackedLinear::new(&w.gene_embedding),
            vit: PackedVit::for_queries(&w.queries),
            cross: PackedCross::new(&w.cross, "cell cross block")?,
            type_head: w.type_head.as_ref().map(PackedLinear::new),
        })
    }
}
