//! A seeded random SPATIA cell-level engine model (no burn): [`random_spatia_cell`].

use cellsymphony::engine::spatia::SPATIA_FORMAT_VERSION;
use cellsymphony::engine::spec::SpatiaSpec;
use cellsymphony::engine::{
    CrossBlockWeights, EncoderLayerWeights, LayerNormWeights, Linear, LinearWeight, Quantization, SpatiaCellMeta, SpatiaCellModel,
    SpatiaCellWeights, SpatiaQueries, VitWeights,
};
use cellsymphony::util::rng::SplitMix64;

fn linear(rng: &mut SplitMix64, out: usize, in_dim: usize) -> Linear {
    let a = 1.0 / (in_dim as f32).sqrt();
    Linear { out_dim: out, in_dim, weight: LinearWeight::F32(rng.uniform_vec(out * in_dim, -a, a)), bias: rng.uniform_vec(out, -0.1, 0.1) }
}

fn norm(rng: &mut SplitMix64, d: usize) -> LayerNormWeights {
    LayerNormWeights { gamma: rng.uniform_vec(d, 0.8, 1.2), beta: rng.uniform_vec(d, -0.1, 0.1) }
}

fn layer(rng: &mut SplitMix64, d: usize, f: usize) -> EncoderLayerWeights {
    EncoderLayerWeights {
        norm1: norm(rng, d),
        q: linear(rng, d, d),
        k: linear(rng, d, d),
        v: linear(rng, d, d),
        o: linear(rng, d, d),
        norm2: norm(rng, d),
        fc1: linear(rng, f, d),
        fc2: linear(rng, d, f),
    }
}

/// A seeded random f32 cell-level model of `spec` (classes `c0…`; a type head when
/// `spec.levels` is `cell`; learned query tokens in `±1` when `spec.images` is false): weights uniform in `±1/sqrt(in)`, biases `±0.1`, LayerNorm scales
/// in `[0.8, 1.2]`. `quantize_int8()` gives its int8 twin.
pub fn random_spatia_cell(spec: SpatiaSpec, seed: u64) -> SpatiaCellModel {
    let mut rng = SplitMix64::new(seed);
    let (d, ci) = (spec.d_model, spec.cell_image.clone());
    let weights = SpatiaCellWeights {
        gene_embedding: linear(&mut rng, spec.gene_tokens * d, spec.n_genes),
        queries: if spec.images {
            SpatiaQueries::Vit {
                vit: VitWeights {
                    patch_embedding: linear(&mut rng, ci.width, ci.patch_row_width()),
                    layers: (0..ci.n_layers).map(|_| layer(&mut rng, ci.width, ci.d_ff)).collect(),
                    norm: norm(&mut rng, ci.width),
                },
                projection: linear(&mut rng, d, ci.width),
            }
        } else {
            SpatiaQueries::Learned { n: spec.cell_query_tokens, tokens: rng.uniform_vec(spec.cell_query_tokens * d, -1.0, 1.0) }
        },
        cross: CrossBlockWeights {
            norm_q: norm(&mut rng, d),
            norm_kv: norm(&mut rng, d),
            q: linear(&mut rng, d, d),
            k: linear(&mut rng, d, d),
            v: linear(&mut rng, d, d),
            o: linear(&mut rng, d, d),
            norm_ff: norm(&mut rng, d),
            fc1: linear(&mut rng, spec.d_ff, d),
            fc2: linear(&mut rng, d, spec.d_ff),
        },
        norm: norm(&mut rng, d),
        type_head: (!spec.levels.has_niche()).then(|| linear(&mut rng, spec.n_classes, d)),
    };
    let meta = SpatiaCellMeta {
        format_version: SPATIA_FORMAT_VERSION,
        classes: super::names("c", spec.n_classes),
        spec,
        quantization: Quantization::None,
    };
    SpatiaCellModel::new(meta, weights).expect("a random SPATIA cell model is valid")
}
