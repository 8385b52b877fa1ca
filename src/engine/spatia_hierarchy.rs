//! SPATIA's whole hierarchy (issue 14) in the burn-free engine: the cell level of
//! [`super::spatia`], the niche level, the tissue transformer, the fusion and both heads, run
//! one tissue region at a time (the inputs of burn's `model::spatia::RegionInputs`).
//!
//! With `N` cells, `K` niches of the region, `D = spec.d_model`, `C` classes, nucleus patches
//! `S × S` (`spec.cell_image`), niche tiles `S' × S'` (`spec.niche_image`, `g'²` ViT tokens),
//! region side `R = spec.region_niches`:
//!
//! ```text
//! cell    z_cell [N, D]        = the cell level ([`super::spatia`]) of genes [N, G], patches [N, S, S]
//! niche   m      [K, D]        = mean of z_cell over each niche's cells (0 for a niche without cells)
//!         t      [K·g'², D]    = niche.vit.projection(niche ViT tokens of the tiles [K, S', S'])
//!         t     += CrossBlock_niche(Q = t, K = V = m_k)       (one key per niche: the softmax is 1)
//!         z_niche [K, D]       = niche.norm(mean over the g'² tokens of t)
//! tissue  h      [R², D]       = z_niche placed in its slot (zeros elsewhere) + PE2D(slot)
//!         h      = tissue layers (pre-norm encoder layers, keys of empty slots biased by
//!                  [`TISSUE_MASKED_SCORE`]) → tissue.final_norm
//!         z_tissue [K, D]      = h at each niche's slot
//! fusion  ctx    [N, 1 or 2, D] = [z_niche, z_tissue] of the cell's niche (z_tissue: tissue level only)
//!         z      [N, D]        = fusion_norm(CrossBlock_fusion(Q = z_cell, K = V = ctx))
//! heads   logits [N, C]        = type_head(z) ;  composition [K, C] = composition_head(z_niche)
//! ```
//! `CrossBlock(x, c) = x + o(Attn(q(LN_q x), k(LN_kv c), v(LN_kv c))); x + fc2(GELU(fc1(LN_ff x)))`.
//! A `--levels cell` model has no context: `z = z_cell`, `logits = type_head(z_cell)` (the cell
//! level's own head).
//!
//! Without images (`spec.images == false`) `t` is the `spec.niche_query_tokens` learned tokens
//! repeated for every niche (stored as the f32 tensor `niche.queries` `[Tn, D]`), and the cell
//! level's queries are its learned tokens ([`super::spatia`]); patches and tiles are empty.
//!
//! Every op is the engine's: the packed GEMM ([`super::gemm`], int8 weights with f32
//! activations), [`super::spatia::vit_tokens`], [`super::spatia::cross_block`] (online-softmax
//! cross attention), the pre-norm encoder layer of [`super::cpu`] with an attention bias.
//!
//! File (format version [`SPATIA_HIERARCHY_FORMAT_VERSION`], metadata key
//! [`SPATIA_HIERARCHY_METADATA_KEY`] holding [`SpatiaHierarchyMeta`] as JSON): the cell level's
//! tensors under the names of [`super::spatia`] (`type_head` only for `--levels cell`), then for
//! the niche/tissue levels `niche.vit.{patch_embedding, layers.{i}.*, norm, projection}`,
//! `niche.cross.*`, `niche.norm`, `tissue.layers.{i}.*`, `tissue.final_norm` (tissue level),
//! `fusion.*`, `fusion_norm`, `type_head` `[C, D]`, `composition_head` `[C, D]`; linears f32 or
//! int8 per output channel as in [`super::format`]. [`SpatiaHierarchyModel::from_safetensors_bytes`]
//! also reads version-1 cell-level files ([`super::SpatiaCellModel`]) of `--levels cell` models.

use serde::{Deserialize, Serialize};

use super::cpu::{fuse_qkv, run_encoder_layer_biased, PackedLayer};
use super::error::{EngineError, ModelFileError};
use super::format::{EncoderLayerWeights, LayerNormWeights, Quantization, TensorReader, TensorWriter};
use super::gemm::{gemm, PackedLinear};
use super::ops::{layernorm_reference, mean_pool_reference};
use super::spatia::{cell_pixels, cell_z, cross_block, niche_pixels, query_tokens, read_cell_tensors, read_cross, read_queries, write_cell_tensors, write_cross, write_queries, CrossBlockWeights, PackedCell, PackedCross, PackedVit, SpatiaCellWeights, SpatiaCellModel, SpatiaQueries, SPATIA_METADATA_KEY};
use super::spec::{grid_positional_encoding, SpatiaLevels, SpatiaSpec};
use crate::gpu::Activation;
use crate::quant::Linear;

/// Key of the JSON entry in the safetensors `__metadata__` map of a SPATIA hierarchy file.
pub const SPATIA_HIERARCHY_METADATA_KEY: &str = "cellsymphony_spatia";
/// Version of the hierarchy file layout (version 1 is the cell-level file of
/// [`super::spatia`], still read for `--levels cell` models).
pub const SPATIA_HIERARCHY_FORMAT_VERSION: u32 = 2;
/// Additive attention score of the tissue transformer's empty slots as keys (burn's
/// `model::spatia::MASKED_SCORE`: large negative, finite so a fully masked row stays finite).
pub const TISSUE_MASKED_SCORE: f32 = -1.0e4;

/// k-means centroids of `z_niche` (from `cellsymphony spatia embed`): another engine assigns
/// each niche to its nearest centroid, reproducing the niche map without re-running k-means.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NicheCentroids {
    /// Clusters `k`.
    pub k: usize,
    /// Width `D` (= `spec.d_model`).
    pub dim: usize,
    /// `[k, D]` row-major.
    pub centroids: Vec<f32>,
}

impl NicheCentroids {
    /// Checks `k ≥ 1`, `dim == d` and the length and finiteness of the centroids.
    pub fn validate(&self, d: usize) -> Result<(), ModelFileError> {
        if self.k == 0 || self.dim != d || self.centroids.len() != self.k * self.dim || !self.centroids.iter().all(|v| v.is_finite()) {
            return Err(ModelFileError::InvalidConfig {
                reason: format!(
                    "niche_centroids: k = {}, dim = {} (spec.d_model {d}), {} finite values expected, {} stored; re-run `spatia embed` and export again",
                    self.k,
                    self.dim,
                    self.k * self.dim,
                    self.centroids.len()
                ),
            });
        }
        Ok(())
    }

    /// Cluster of each row of `z` `[rows, D]`: the nearest centroid by squared Euclidean
    /// distance (ties to the lower index; the assignment step of k-means).
    pub fn assign(&self, z: &[f32]) -> Vec<u32> {
        z.chunks_exact(self.dim)
            .map(|row| {
                let mut best = (0u32, f32::INFINITY);
                for (c, cen) in self.centroids.chunks_exact(self.dim).enumerate() {
                    let d2: f32 = row.iter().zip(cen).map(|(a, b)| (a - b) * (a - b)).sum();
                    if d2 < best.1 {
                        best = (c as u32, d2);
                    }
                }
                best.0
            })
            .collect()
    }
}

/// Everything in the [`SPATIA_HIERARCHY_METADATA_KEY`] entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpatiaHierarchyMeta {
    /// [`SPATIA_HIERARCHY_FORMAT_VERSION`].
    pub format_version: u32,
    /// The architecture.
    pub spec: SpatiaSpec,
    /// Class names, `spec.n_classes` of them.
    pub classes: Vec<String>,
    /// Weight storage.
    pub quantization: Quantization,
    /// Niche clusters (models with the niche level; optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub niche_centroids: Option<NicheCentroids>,
}

/// The niche level: `spec.niche_image` ViT over the niche tiles, its tokens attending to the
/// mean `z_cell` of the niche.
#[derive(Clone, Debug, PartialEq)]
pub struct NicheLevelWeights {
    /// The queries: the niche-tile ViT (position table folded into the patch embedding, width
    /// `W'`) and its projection `[D, W']`, or `niche_query_tokens` learned tokens (image-free).
    pub queries: SpatiaQueries,
    /// Niche tokens attend to the mean cell embedding.
    pub cross: CrossBlockWeights,
    /// LayerNorm of the pooled `z_niche` `[D]`.
    pub norm: LayerNormWeights,
}

/// The tissue transformer: `spec.tissue_layers` pre-norm encoder layers (width `D`, `d_ff`,
/// `n_heads`) and a final LayerNorm.
#[derive(Clone, Debug, PartialEq)]
pub struct TissueLevelWeights {
    /// Encoder layers.
    pub layers: Vec<EncoderLayerWeights>,
    /// Final LayerNorm `[D]`.
    pub final_norm: LayerNormWeights,
}

/// The levels above the cell level (models fine-tuned with `--levels niche|tissue`).
#[derive(Clone, Debug, PartialEq)]
pub struct SpatiaContextWeights {
    /// Niche level.
    pub niche: NicheLevelWeights,
    /// Tissue transformer (`--levels tissue` only).
    pub tissue: Option<TissueLevelWeights>,
    /// `z_cell` attends to `[z_niche, z_tissue]`.
    pub fusion: CrossBlockWeights,
    /// LayerNorm of the fused embedding `[D]`.
    pub fusion_norm: LayerNormWeights,
    /// Cell-type head `[C, D]` on the fused `z`.
    pub type_head: Linear,
    /// Niche-composition head `[C, D]` on `z_niche`.
    pub composition_head: Linear,
}

impl SpatiaContextWeights {
    fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let n = &mut self.niche;
        let mut v = n.queries.linears_mut();
        let c = &mut n.cross;
        v.extend([&mut c.q, &mut c.k, &mut c.v, &mut c.o, &mut c.fc1, &mut c.fc2]);
        if let Some(t) = &mut self.tissue {
            for l in &mut t.layers {
                v.extend([&mut l.q, &mut l.k, &mut l.v, &mut l.o, &mut l.fc1, &mut l.fc2]);
            }
        }
        let f = &mut self.fusion;
        v.extend([&mut f.q, &mut f.k, &mut f.v, &mut f.o, &mut f.fc1, &mut f.fc2]);
        v.extend([&mut self.type_head, &mut self.composition_head]);
        v
    }
}

/// SPATIA's whole hierarchy: metadata and weights, checked against each other.
#[derive(Clone, Debug, PartialEq)]
pub struct SpatiaHierarchyModel {
    /// Metadata.
    pub meta: SpatiaHierarchyMeta,
    /// The cell level (its `type_head` only for `--levels cell`).
    pub cell: SpatiaCellWeights,
    /// The niche/tissue levels, fusion and heads (`None` for `--levels cell`).
    pub context: Option<SpatiaContextWeights>,
}

/// One tissue region's inputs (burn's `RegionInputs`, as flat slices).
#[derive(Clone, Copy, Debug)]
pub struct SpatiaRegionInput<'a> {
    /// Normalised expression `[N, G]`.
    pub genes: &'a [f32],
    /// Nucleus patches `[N, S, S]` in `[0, 1]`.
    pub patches: &'a [f32],
    /// Niche tiles `[K, S', S']` in `[0, 1]` (block means of the DAPI tile; empty for a
    /// `--levels cell` model).
    pub niche_images: &'a [f32],
    /// Local niche (`< K`) of each cell, `[N]` (ignored by a `--levels cell` model).
    pub cell_niche: &'a [usize],
    /// Region slot (`row · R + col`, `< R²`, distinct) of each niche, `[K]`.
    pub niche_slot: &'a [usize],
}

/// What the forward pass over one region yields.
#[derive(Clone, Debug, PartialEq)]
pub struct SpatiaRegionOutput {
    /// `[N, D]`.
    pub z_cell: Vec<f32>,
    /// Fused `[N, D]` (`z_cell` for a `--levels cell` model).
    pub z: Vec<f32>,
    /// Cell-type logits `[N, C]`.
    pub logits: Vec<f32>,
    /// `[K, D]` (niche level).
    pub z_niche: Option<Vec<f32>>,
    /// `[K, D]` (tissue level).
    pub z_tissue: Option<Vec<f32>>,
    /// Niche-composition logits `[K, C]` (niche level).
    pub composition: Option<Vec<f32>>,
}

fn invalid(reason: String) -> ModelFileError {
    ModelFileError::InvalidConfig { reason }
}

fn check_shape(name: &str, l: &Linear, out: usize, in_dim: usize) -> Result<(), ModelFileError> {
    if (l.out_dim, l.in_dim) == (out, in_dim) && l.bias.len() == out {
        Ok(())
    } else {
        Err(ModelFileError::WrongShape { name: name.to_string(), expected: vec![out, in_dim], found: vec![l.out_dim, l.in_dim] })
    }
}

fn check_cross(p: &str, c: &CrossBlockWeights, d: usize, ff: usize) -> Result<(), ModelFileError> {
    for (n, l) in [("q", &c.q), ("k", &c.k), ("v", &c.v), ("o", &c.o)] {
        check_shape(&format!("{p}.attn.{n}"), l, d, d)?;
    }
    check_shape(&format!("{p}.ffn.fc1"), &c.fc1, ff, d)?;
    check_shape(&format!("{p}.ffn.fc2"), &c.fc2, d, ff)
}

fn check_layer(p: &str, l: &EncoderLayerWeights, d: usize, ff: usize) -> Result<(), ModelFileError> {
    for (n, x) in [("q", &l.q), ("k", &l.k), ("v", &l.v), ("o", &l.o)] {
        check_shape(&format!("{p}.attn.{n}"), x, d, d)?;
    }
    check_shape(&format!("{p}.ffn.fc1"), &l.fc1, ff, d)?;
    check_shape(&format!("{p}.ffn.fc2"), &l.fc2, d, ff)
}

/// Checks one region's niche inputs against `spec` for `n` cells (every engine's words) and
/// returns which niche sits in each of the region's `side²` slots (`None`: empty slot).
///
/// Errors with [`EngineError::InputShape`] for mis-sized tiles or cell niches and
/// [`EngineError::InvalidConfig`] for a niche index `≥ K`, a slot `≥ R²` or a repeated slot.
pub(crate) fn region_slots(spec: &SpatiaSpec, x: &SpatiaRegionInput<'_>, n: usize) -> Result<Vec<Option<usize>>, EngineError> {
    let k = x.niche_slot.len();
    let side = spec.region_niches;
    let px = niche_pixels(spec);
    if x.niche_images.len() != k * px {
        let t = if spec.images { spec.niche_image.image_size } else { 0 };
        return Err(EngineError::InputShape { what: format!("SPATIA niche tiles [niches={k}, {t}, {t}] (images: {})", spec.images), expected: k * px, found: x.niche_images.len() });
    }
    if x.cell_niche.len() != n {
        return Err(EngineError::InputShape { what: format!("SPATIA cell niches [cells={n}]"), expected: n, found: x.cell_niche.len() });
    }
    let bad = |reason: String| EngineError::InvalidConfig { reason };
    if let Some(v) = x.cell_niche.iter().find(|&&v| v >= k) {
        return Err(bad(format!("cellNiche holds {v} but the region has {k} niches")));
    }
    let mut slot_niche = vec![None; side * side];
    for (i, &sl) in x.niche_slot.iter().enumerate() {
        if sl >= side * side || slot_niche[sl].is_some() {
            return Err(bad(format!("niche {i}: slot {sl} is outside the {side}×{side} region or taken by another niche")));
        }
        slot_niche[sl] = Some(i);
    }
    Ok(slot_niche)
}

impl SpatiaHierarchyModel {
    /// Builds a model after checking the weights against the metadata.
    pub fn new(meta: SpatiaHierarchyMeta, cell: SpatiaCellWeights, context: Option<SpatiaContextWeights>) -> Result<Self, ModelFileError> {
        let model = Self { meta, cell, context };
        model.validate()?;
        Ok(model)
    }

    /// Checks the version, spec, classes, which levels are stored, every linear's shape and
    /// storage kind, and the niche centroids.
    pub fn validate(&self) -> Result<(), ModelFileError> {
        let m = &self.meta;
        if m.format_version != SPATIA_HIERARCHY_FORMAT_VERSION {
            return Err(invalid(format!(
                "SPATIA hierarchy file version {} is not supported (this build reads {SPATIA_HIERARCHY_FORMAT_VERSION}); re-export it with `cellsymphony spatia export`",
                m.format_version
            )));
        }
        let s = &m.spec;
        // The cell level (shapes, head presence, storage kind) as its own model checks it.
        let cell_meta = super::SpatiaCellMeta { format_version: super::spatia::SPATIA_FORMAT_VERSION, spec: s.clone(), classes: m.classes.clone(), quantization: m.quantization };
        SpatiaCellModel { meta: cell_meta, weights: self.cell.clone() }.validate()?;
        let (d, ff) = (s.d_model, s.d_ff);
        match (&self.context, s.levels) {
            (None, SpatiaLevels::Cell) => {}
            (Some(c), levels) if levels.has_niche() => {
                if c.tissue.is_some() != levels.has_tissue() {
                    return Err(invalid(format!("spec.levels = {} but the tissue transformer is {}", levels.name(), if c.tissue.is_some() { "stored" } else { "missing" })));
                }
                c.niche.queries.validate("niche.", s.images, &s.niche_image, s.niche_query_tokens, d)?;
                check_cross("niche.cross", &c.niche.cross, d, ff)?;
                if let Some(t) = &c.tissue {
                    if t.layers.len() != s.tissue_layers {
                        return Err(invalid(format!("spec.tissue_layers is {} but {} tissue layers are stored", s.tissue_layers, t.layers.len())));
                    }
                    for (i, l) in t.layers.iter().enumerate() {
                        check_layer(&format!("tissue.layers.{i}"), l, d, ff)?;
                    }
                }
                check_cross("fusion", &c.fusion, d, ff)?;
                check_shape("type_head", &c.type_head, s.n_classes, d)?;
                check_shape("composition_head", &c.composition_head, s.n_classes, d)?;
                let want_int8 = m.quantization == Quantization::Int8PerChannelSymmetric;
                let mut c = c.clone();
                if let Some((i, l)) = c.linears_mut().into_iter().enumerate().find(|(_, l)| l.is_int8() != want_int8) {
                    return Err(invalid(format!("context linear layer {i} is {} but meta.quantization is {}", if l.is_int8() { "int8" } else { "f32" }, m.quantization.as_str())));
                }
            }
            (c, levels) => {
                return Err(invalid(format!(
                    "spec.levels = {} but the niche/tissue levels are {}",
                    levels.name(),
                    if c.is_some() { "stored" } else { "missing (a cell-level-only file of a niche/tissue model: re-export it with `cellsymphony spatia export`)" }
                )))
            }
        }
        if let Some(nc) = &m.niche_centroids {
            if !s.levels.has_niche() {
                return Err(invalid("niche_centroids are stored but the model has no niche level".into()));
            }
            nc.validate(d)?;
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
        for l in model.cell.linears_mut() {
            *l = l.quantized();
        }
        if let Some(c) = &mut model.context {
            for l in c.linears_mut() {
                *l = l.quantized();
            }
        }
        model.meta.quantization = Quantization::Int8PerChannelSymmetric;
        model
    }

    /// Serialises the model (validated first).
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>, ModelFileError> {
        self.validate()?;
        let mut t = TensorWriter::default();
        write_cell_tensors(&mut t, &self.cell);
        if let Some(c) = &self.context {
            write_queries(&mut t, "niche.", &c.niche.queries);
            write_cross(&mut t, "niche.cross", &c.niche.cross);
            t.layer_norm("niche.norm", &c.niche.norm);
            if let Some(tl) = &c.tissue {
                for (i, l) in tl.layers.iter().enumerate() {
                    t.encoder_layer(&format!("tissue.layers.{i}"), l);
                }
                t.layer_norm("tissue.final_norm", &tl.final_norm);
            }
            write_cross(&mut t, "fusion", &c.fusion);
            t.layer_norm("fusion_norm", &c.fusion_norm);
            t.linear("type_head", &c.type_head);
            t.linear("composition_head", &c.composition_head);
        }
        let json = serde_json::to_string(&self.meta).map_err(|e| invalid(format!("metadata does not serialise: {e}")))?;
        t.finish(SPATIA_HIERARCHY_METADATA_KEY, json)
    }

    /// Parses and validates a SPATIA hierarchy file held in memory, or a version-1 cell-level
    /// file of a `--levels cell` model (never panics on malformed bytes; tensors the metadata
    /// does not explain are errors).
    pub fn from_safetensors_bytes(bytes: &[u8]) -> Result<Self, ModelFileError> {
        let (mut r, json) = match TensorReader::open(bytes, SPATIA_HIERARCHY_METADATA_KEY) {
            Ok(x) => x,
            Err(ModelFileError::MissingMetadata) => {
                // A version-1 cell-level file?
                return match TensorReader::open(bytes, SPATIA_METADATA_KEY) {
                    Ok(_) => {
                        let cell = SpatiaCellModel::from_safetensors_bytes(bytes)?;
                        if cell.meta.spec.levels != SpatiaLevels::Cell {
                            return Err(invalid(format!(
                                "this is the cell level only of a --levels {} model (a version-1 file without the niche/tissue levels); re-export it with `cellsymphony spatia export` to get the whole hierarchy",
                                cell.meta.spec.levels.name()
                            )));
                        }
                        let meta = SpatiaHierarchyMeta { format_version: SPATIA_HIERARCHY_FORMAT_VERSION, spec: cell.meta.spec, classes: cell.meta.classes, quantization: cell.meta.quantization, niche_centroids: None };
                        Self::new(meta, cell.weights, None)
                    }
                    Err(ModelFileError::MissingMetadata) => Err(invalid(format!(
                        "not a SPATIA model file: its metadata has neither \"{SPATIA_HIERARCHY_METADATA_KEY}\" nor \"{SPATIA_METADATA_KEY}\"; export one with `cellsymphony spatia export`"
                    ))),
                    Err(e) => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let meta: SpatiaHierarchyMeta = serde_json::from_str(&json).map_err(|e| invalid(format!("{SPATIA_HIERARCHY_METADATA_KEY} metadata is not a SPATIA hierarchy header ({e}); export it with `cellsymphony spatia export`")))?;
        if meta.format_version != SPATIA_HIERARCHY_FORMAT_VERSION {
            return Err(invalid(format!("SPATIA hierarchy file version {} is not supported (this build reads {SPATIA_HIERARCHY_FORMAT_VERSION})", meta.format_version)));
        }
        meta.spec.validate()?;
        let (s, q) = (&meta.spec, meta.quantization);
        let (d, ff) = (s.d_model, s.d_ff);
        let cell = read_cell_tensors(&mut r, s, q, s.levels == SpatiaLevels::Cell)?;
        let context = if s.levels.has_niche() {
            let queries = read_queries(&mut r, "niche.", s, &s.niche_image, s.niche_query_tokens, q)?;
            let niche = NicheLevelWeights { queries, cross: read_cross(&mut r, "niche.cross", d, ff, q)?, norm: r.layer_norm("niche.norm", d)? };
            let tissue = if s.levels.has_tissue() {
                Some(TissueLevelWeights {
                    layers: (0..s.tissue_layers).map(|i| r.encoder_layer(&format!("tissue.layers.{i}"), d, ff, q)).collect::<Result<_, _>>()?,
                    final_norm: r.layer_norm("tissue.final_norm", d)?,
                })
            } else {
                None
            };
            Some(SpatiaContextWeights {
                niche,
                tissue,
                fusion: read_cross(&mut r, "fusion", d, ff, q)?,
                fusion_norm: r.layer_norm("fusion_norm", d)?,
                type_head: r.linear("type_head", s.n_classes, d, q)?,
                composition_head: r.linear("composition_head", s.n_classes, d, q)?,
            })
        } else {
            None
        };
        r.check_all_used(q)?;
        Self::new(meta, cell, context)
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

    /// The weights packed for the CPU GEMM, once per model ([`SpatiaCpu::forward_region`]).
    pub fn prepare(&self) -> Result<SpatiaCpu<'_>, EngineError> {
        let cell = PackedCell::new(&self.cell)?;
        let context = match &self.context {
            None => None,
            Some(c) => {
                let layer = |l: &EncoderLayerWeights| PackedLayer::new(l, &fuse_qkv(l), PackedLinear::new);
                Some(PackedContext {
                    niche_vit: PackedVit::for_queries(&c.niche.queries),
                    niche_cross: PackedCross::new(&c.niche.cross, "niche cross block")?,
                    tissue: c.tissue.as_ref().map(|t| t.layers.iter().map(layer).collect()).unwrap_or_default(),
                    fusion: PackedCross::new(&c.fusion, "fusion block")?,
                    type_head: PackedLinear::new(&c.type_head),
                    composition_head: PackedLinear::new(&c.composition_head),
                })
            }
        };
        Ok(SpatiaCpu { model: self, cell, context })
    }
}

struct PackedContext {
    niche_vit: Option<PackedVit>,
    niche_cross: PackedCross,
    tissue: Vec<PackedLayer>,
    fusion: PackedCross,
    type_head: PackedLinear,
    composition_head: PackedLinear,
}

/// A [`SpatiaHierarchyModel`] with its linears packed for the CPU GEMM.
pub struct SpatiaCpu<'a> {
    model: &'a SpatiaHierarchyModel,
    cell: PackedCell,
    context: Option<PackedContext>,
}

impl SpatiaCpu<'_> {
    /// The model.
    pub fn model(&self) -> &SpatiaHierarchyModel {
        self.model
    }

    /// One region's forward pass (the module docs give the computation).
    ///
    /// Errors with [`EngineError::InputShape`] for mis-sized inputs and
    /// [`EngineError::InvalidConfig`] for a niche index `≥ K`, a slot `≥ R²` or a repeated slot.
    pub fn forward_region(&self, x: &SpatiaRegionInput<'_>) -> Result<SpatiaRegionOutput, EngineError> {
        let m = self.model;
        let s = &m.meta.spec;
        let (d, eps) = (s.d_model, s.layer_norm_eps as f32);
        let n = x.genes.len() / s.n_genes.max(1);
        let z_cell = cell_z(s, &m.cell, &self.cell, x.genes, x.patches, n)?;
        let (Some(c), Some(p)) = (&m.context, &self.context) else {
            let head = self.cell.type_head.as_ref().ok_or_else(|| invalid("the cell-level model has no type head".into()))?;
            let logits = gemm(&z_cell, n, head, Activation::None, None);
            return Ok(SpatiaRegionOutput { z: z_cell.clone(), z_cell, logits, z_niche: None, z_tissue: None, composition: None });
        };
        // Inputs of the niche level.
        let slot_niche = region_slots(s, x, n)?;
        let k = x.niche_slot.len();
        let (side, ni) = (s.region_niches, &s.niche_image);
        // Mean z_cell per niche.
        let mut counts = vec![0usize; k];
        let mut mean = vec![0.0f32; k * d];
        for (ci, &nk) in x.cell_niche.iter().enumerate() {
            counts[nk] += 1;
            for (a, b) in mean[nk * d..(nk + 1) * d].iter_mut().zip(&z_cell[ci * d..(ci + 1) * d]) {
                *a += b;
            }
        }
        for (row, &cnt) in mean.chunks_exact_mut(d).zip(&counts) {
            if cnt > 0 {
                let inv = 1.0 / cnt as f32;
                row.iter_mut().for_each(|v| *v *= inv);
            }
        }
        // Niche level.
        let g2 = s.niche_queries();
        let mut t = query_tokens(&c.niche.queries, p.niche_vit.as_ref(), x.niche_images, k, ni, eps)?;
        cross_block(&mut t, &mean, k, g2, 1, d, s.n_heads, eps, &c.niche.cross, &p.niche_cross);
        let z_niche = layernorm_reference(&mean_pool_reference(&t, k, g2, d), k, d, &c.niche.norm, eps);
        // Tissue level.
        let z_tissue = c.tissue.as_ref().map(|tw| {
            let s2 = side * side;
            let mut h = grid_positional_encoding(side, d);
            for (sl, nk) in slot_niche.iter().enumerate() {
                if let Some(nk) = nk {
                    for (a, b) in h[sl * d..(sl + 1) * d].iter_mut().zip(&z_niche[nk * d..(nk + 1) * d]) {
                        *a += b;
                    }
                }
            }
            let mut bias = vec![0.0f32; s.n_heads * s2 * s2];
            for row in bias.chunks_exact_mut(s2) {
                for (key, b) in row.iter_mut().enumerate() {
                    if slot_niche[key].is_none() {
                        *b = TISSUE_MASKED_SCORE;
                    }
                }
            }
            for (layer, packed) in tw.layers.iter().zip(&p.tissue) {
                run_encoder_layer_biased(&mut h, 1, s2, d, s.n_heads, eps, layer, packed, &bias);
            }
            let h = layernorm_reference(&h, s2, d, &tw.final_norm, eps);
            let mut z = Vec::with_capacity(k * d);
            for &sl in x.niche_slot {
                z.extend_from_slice(&h[sl * d..(sl + 1) * d]);
            }
            z
        });
        // Fusion: z_cell attends to its niche's [z_niche, z_tissue].
        let tk = if z_tissue.is_some() { 2 } else { 1 };
        let mut ctx = Vec::with_capacity(n * tk * d);
        for &nk in x.cell_niche {
            ctx.extend_from_slice(&z_niche[nk * d..(nk + 1) * d]);
            if let Some(zt) = &z_tissue {
                ctx.extend_from_slice(&zt[nk * d..(nk + 1) * d]);
            }
        }
        let mut h = z_cell.clone();
        cross_block(&mut h, &ctx, n, 1, tk, d, s.n_heads, eps, &c.fusion, &p.fusion);
        let z = layernorm_reference(&h, n, d, &c.fusion_norm, eps);
        let logits = gemm(&z, n, &p.type_head, Activation::None, None);
        let composition = gemm(&z_niche, k, &p.composition_head, Activation::None, None);
        Ok(SpatiaRegionOutput { z_cell, z, logits, z_niche: Some(z_niche), z_tissue, composition: Some(composition) })
    }
}

/// Cells and niches of several tissue regions in one flat layout (the browser's
/// `classifyWithContext` inputs and `spatia classify --www`'s bundle).
#[derive(Clone, Copy, Debug)]
pub struct SpatiaSlideInput<'a> {
    /// Normalised expression `[N, G]`.
    pub genes: &'a [f32],
    /// Nucleus patches `[N, S, S]`.
    pub patches: &'a [f32],
    /// Niche tiles `[K, S', S']` (empty for a `--levels cell` model).
    pub niche_images: &'a [f32],
    /// Niche (`< K`) of each cell, `[N]`.
    pub cell_niche: &'a [usize],
    /// Slot of each niche in its region, `[K]` (empty for a `--levels cell` model).
    pub niche_slot: &'a [usize],
    /// Region of each niche, `[K]` (any ids; niches of one id form one region).
    pub niche_region: &'a [usize],
}

/// What [`SpatiaCpu::forward_slide`] yields.
#[derive(Clone, Debug, PartialEq)]
pub struct SpatiaSlideOutput {
    /// Cell-type logits `[N, C]`.
    pub logits: Vec<f32>,
    /// `z_niche` `[K, D]` (empty without the niche level; zeros for niches of regions
    /// without cells).
    pub z_niche: Vec<f32>,
    /// Niche-composition logits `[K, C]` (empty without the niche level).
    pub composition: Vec<f32>,
    /// Nearest stored centroid of each niche's `z_niche`, `[K]` (`None` without centroids or
    /// the niche level, or for niches of regions without cells).
    pub niche_clusters: Vec<Option<u32>>,
}

/// The regions of a flat slide layout ([`SpatiaSlideInput`]), checked: niches grouped by
/// `niche_region` (ascending id), cells by their niche's region. Every engine runs the same plan
/// ([`SpatiaCpu::forward_slide`], `GpuSpatia::forward_slide`): [`Self::region`] gives region
/// `i`'s inputs, [`Self::scatter`] puts its outputs back in slide order.
pub struct SpatiaSlidePlan<'m, 'a> {
    meta: &'m SpatiaHierarchyMeta,
    x: &'a SpatiaSlideInput<'a>,
    /// `(cells, niches)` of each region with at least one cell, slide indices ascending.
    regions: Vec<(Vec<usize>, Vec<usize>)>,
    /// Local index of every niche inside its region, `[K]`.
    local: Vec<usize>,
}

/// One region's inputs, gathered from the slide (see [`SpatiaSlidePlan::region`]).
pub struct SpatiaSlideRegion {
    genes: Vec<f32>,
    patches: Vec<f32>,
    tiles: Vec<f32>,
    cell_niche: Vec<usize>,
    slots: Vec<usize>,
}

impl SpatiaSlideRegion {
    /// The region as [`SpatiaCpu::forward_region`] (or the GPU engine's) reads it.
    pub fn input(&self) -> SpatiaRegionInput<'_> {
        SpatiaRegionInput { genes: &self.genes, patches: &self.patches, niche_images: &self.tiles, cell_niche: &self.cell_niche, niche_slot: &self.slots }
    }
}

impl<'m, 'a> SpatiaSlidePlan<'m, 'a> {
    /// Checks `x` against the model's spec (in `meta`) and groups it by region.
    ///
    /// Errors: mis-sized inputs, a niche index `≥ K`.
    pub fn new(meta: &'m SpatiaHierarchyMeta, x: &'a SpatiaSlideInput<'a>) -> Result<Self, EngineError> {
        let s = &meta.spec;
        let has_niche = s.levels.has_niche();
        let (g, px, npx) = (s.n_genes, cell_pixels(s), niche_pixels(s));
        let n = x.cell_niche.len();
        let k = x.niche_region.len();
        if x.genes.len() != n * g {
            return Err(EngineError::InputShape { what: format!("SPATIA genes [cells={n}, genes={g}]"), expected: n * g, found: x.genes.len() });
        }
        if x.patches.len() != n * px {
            return Err(EngineError::InputShape { what: format!("SPATIA patches [cells={n}, {px} px]"), expected: n * px, found: x.patches.len() });
        }
        if has_niche && (x.niche_slot.len() != k || x.niche_images.len() != k * npx) {
            return Err(EngineError::InputShape { what: format!("SPATIA niche slots [{k}] and tiles [{k}, {npx} px]"), expected: k * (npx + 1), found: x.niche_slot.len() + x.niche_images.len() });
        }
        if let Some((i, &v)) = x.cell_niche.iter().enumerate().find(|(_, &v)| v >= k) {
            return Err(invalid(format!("cellNiche[{i}] = {v} but there are {k} niches")));
        }
        let mut regions: std::collections::BTreeMap<usize, (Vec<usize>, Vec<usize>)> = std::collections::BTreeMap::new();
        for (nk, &r) in x.niche_region.iter().enumerate() {
            regions.entry(r).or_default().1.push(nk);
        }
        for (c, &nk) in x.cell_niche.iter().enumerate() {
            if let Some(r) = regions.get_mut(&x.niche_region[nk]) {
                r.0.push(c);
            }
        }
        let regions: Vec<_> = regions.into_values().filter(|(cells, _)| !cells.is_empty()).collect();
        let mut local = vec![0usize; k];
        for (_, niches) in &regions {
            for (i, &nk) in niches.iter().enumerate() {
                local[nk] = i;
            }
        }
        Ok(Self { meta, x, regions, local })
    }

    /// Regions with at least one cell.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Whether no region has a cell.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Cells of region `i` (slide indices).
    pub fn region_cells(&self, i: usize) -> usize {
        self.regions[i].0.len()
    }

    /// Region `i`'s inputs (`i < len()`).
    pub fn region(&self, i: usize) -> SpatiaSlideRegion {
        let s = &self.meta.spec;
        let has_niche = s.levels.has_niche();
        let (g, px, npx) = (s.n_genes, cell_pixels(s), niche_pixels(s));
        let (cells, niches) = &self.regions[i];
        let x = self.x;
        let rows = |v: &[f32], w: usize, idx: &[usize]| -> Vec<f32> { idx.iter().flat_map(|&i| v[i * w..(i + 1) * w].iter().copied()).collect() };
        SpatiaSlideRegion {
            genes: rows(x.genes, g, cells),
            patches: rows(x.patches, px, cells),
            tiles: if has_niche { rows(x.niche_images, npx, niches) } else { vec![] },
            cell_niche: cells.iter().map(|&ci| self.local[x.cell_niche[ci]]).collect(),
            slots: if has_niche { niches.iter().map(|&nk| x.niche_slot[nk]).collect() } else { vec![] },
        }
    }

    /// The empty slide output (zeros; `None` clusters).
    pub fn output(&self) -> SpatiaSlideOutput {
        let s = &self.meta.spec;
        let has_niche = s.levels.has_niche();
        let (n, k, c, d) = (self.x.cell_niche.len(), self.x.niche_region.len(), s.n_classes, s.d_model);
        SpatiaSlideOutput {
            logits: vec![0.0; n * c],
            z_niche: vec![0.0; if has_niche { k * d } else { 0 }],
            composition: vec![0.0; if has_niche { k * c } else { 0 }],
            niche_clusters: vec![None; k],
        }
    }

    /// Region `i`'s outputs into `out` (cells' logits; niches' `z_niche`, composition and
    /// nearest stored centroid).
    pub fn scatter(&self, i: usize, r: &SpatiaRegionOutput, out: &mut SpatiaSlideOutput) {
        let s = &self.meta.spec;
        let (c, d) = (s.n_classes, s.d_model);
        let (cells, niches) = &self.regions[i];
        for (i, &ci) in cells.iter().enumerate() {
            out.logits[ci * c..(ci + 1) * c].copy_from_slice(&r.logits[i * c..(i + 1) * c]);
        }
        if let (Some(comp), Some(zn)) = (&r.composition, &r.z_niche) {
            let clusters = self.meta.niche_centroids.as_ref().map(|cen| cen.assign(zn));
            for (i, &nk) in niches.iter().enumerate() {
                out.composition[nk * c..(nk + 1) * c].copy_from_slice(&comp[i * c..(i + 1) * c]);
                out.z_niche[nk * d..(nk + 1) * d].copy_from_slice(&zn[i * d..(i + 1) * d]);
                out.niche_clusters[nk] = clusters.as_ref().map(|cl| cl[i]);
            }
        }
    }
}

impl SpatiaCpu<'_> {
    /// [`Self::forward_region`] over every region of a flat layout ([`SpatiaSlidePlan`]),
    /// outputs scattered back.
    ///
    /// Errors: mis-sized inputs, a niche index `≥ K`, and the region forward's errors.
    pub fn forward_slide(&self, x: &SpatiaSlideInput<'_>) -> Result<SpatiaSlideOutput, EngineError> {
        let plan = SpatiaSlidePlan::new(&self.model.meta, x)?;
        let mut out = plan.output();
        for i in 0..plan.len() {
            let r = self.forward_region(&plan.region(i).input())?;
            plan.scatter(i, &r, &mut out);
        }
        Ok(out)
    }
}
