//! SPATIA fixtures shared by the engine parity tests: a seeded random region (cells' genes and
//! nucleus patches, niche tiles, each cell's niche, each niche's slot) in the engine's flat
//! form and as burn's `RegionInputs`, a seeded random burn model, and the relative error.

use burn::prelude::*;
use cellsymphony::engine::spec::SpatiaSpec;
use cellsymphony::engine::SpatiaRegionInput;
use cellsymphony::model::spatia::{RegionInputs, SpatiaModel};
use cellsymphony::util::rng::SplitMix64;

/// burn's CPU backend of these tests.
pub type Cpu = burn::backend::NdArray;

/// One random tissue region.
pub struct RandomRegion {
    /// Cells `N`.
    pub n_cells: usize,
    /// `[N, G]` in `[0, 3)`.
    pub genes: Vec<f32>,
    /// `[N, S, S]` in `[0, 1)`.
    pub patches: Vec<f32>,
    /// `[K, S', S']` in `[0, 1)`.
    pub niche_images: Vec<f32>,
    /// `[N]`, `< K`.
    pub cell_niche: Vec<usize>,
    /// `[K]`, distinct, `< R²`.
    pub niche_slot: Vec<usize>,
}

impl RandomRegion {
    /// `n_cells` cells over the niches in `slots` (cells drawn uniformly among the niches, so
    /// a niche may hold none), random genes, patches and tiles (no patches or tiles for an
    /// image-free spec).
    pub fn new(spec: &SpatiaSpec, n_cells: usize, slots: &[usize], seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let (s, sn) = image_sides(spec);
        let k = slots.len();
        Self {
            n_cells,
            genes: rng.uniform_vec(n_cells * spec.n_genes, 0.0, 3.0),
            patches: rng.uniform_vec(n_cells * s * s, 0.0, 1.0),
            niche_images: rng.uniform_vec(k * sn * sn, 0.0, 1.0),
            cell_niche: (0..n_cells).map(|_| rng.below(k as u64) as usize).collect(),
            niche_slot: slots.to_vec(),
        }
    }

    /// The engine's view.
    pub fn input(&self) -> SpatiaRegionInput<'_> {
        SpatiaRegionInput { genes: &self.genes, patches: &self.patches, niche_images: &self.niche_images, cell_niche: &self.cell_niche, niche_slot: &self.niche_slot }
    }

    /// burn's view.
    pub fn burn<B: Backend>(&self, spec: &SpatiaSpec, device: &B::Device) -> RegionInputs<B> {
        let ((s, sn), n, k) = (image_sides(spec), self.n_cells, self.niche_slot.len());
        RegionInputs {
            genes: Tensor::from_data(TensorData::new(self.genes.clone(), [n, spec.n_genes]), device),
            patches: Tensor::from_data(TensorData::new(self.patches.clone(), [n, s, s]), device),
            niche_images: Tensor::from_data(TensorData::new(self.niche_images.clone(), [k, sn, sn]), device),
            cell_niche: self.cell_niche.clone(),
            niche_slot: self.niche_slot.clone(),
        }
    }
}

/// Sides of the nucleus patches and niche tiles `spec` reads (0 and 0 without images).
pub fn image_sides(spec: &SpatiaSpec) -> (usize, usize) {
    if spec.images {
        (spec.cell_image.image_size, spec.niche_image.image_size)
    } else {
        (0, 0)
    }
}

/// A burn model of `spec` with weights from seed `seed` (hold [`super::burn_rng_lock`]).
pub fn random_model(spec: &SpatiaSpec, seed: u64) -> SpatiaModel<Cpu> {
    let device = Default::default();
    Cpu::seed(&device, seed);
    SpatiaModel::<Cpu>::init(spec, 0.0, &device).expect("valid spec")
}

/// A burn tensor's values.
pub fn values<const D: usize>(t: Tensor<Cpu, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec::<f32>().expect("f32 tensor")
}

/// `max |got − want| / max(1, max |want|)`, after checking lengths and finiteness.
pub fn relative_error(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    assert!(got.iter().all(|v| v.is_finite()), "non-finite engine output");
    super::max_abs_diff(got, want) / want.iter().fold(1f32, |m, v| m.max(v.abs()))
}
