//! Fixtures of the optimal-transport suites (`tests/ot_*.rs`): the POT/numpy reference,
//! seeded clustered point clouds and the Xenium crop's normalised cells.

use std::path::Path;

use cellsymphony::engine::normalise_log1p_cp10k;
use cellsymphony::util::rng::SplitMix64;

use super::{crop_cells, python_or_skip, run_python};

const PY_HELP: &str = "python3 with numpy and POT is needed: `pip install pot==0.9.7.post1` \
(pulls numpy and scipy; scripts/setup.sh installs it)";

/// Whether python3 with numpy and POT can be used; fails (or skips loudly) otherwise.
pub fn pot_available(test: &str) -> bool {
    python_or_skip(test, "numpy, ot", PY_HELP)
}

/// Runs `tests/python/<script> <dir>`; panics with its stderr on failure.
pub fn run_reference(script: &str, dir: &Path) {
    run_python(script, &[dir], PY_HELP);
}

/// `n` points in `d` dimensions drawn around `k` shared cluster centres, plus `shift` on
/// every coordinate: a stand-in for cell states in PCA space.
pub fn clustered(
    rng: &mut SplitMix64,
    centres: &[f32],
    k: usize,
    n: usize,
    d: usize,
    shift: f32,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * d);
    for _ in 0..n {
        let c = rng.below(k as u64) as usize;
        for j in 0..d {
            out.push(centres[c * d + j] + rng.normal() + shift);
        }
    }
    out
}

/// Cluster centres `[k, d]` with standard deviation `spread`.
pub fn centres(rng: &mut SplitMix64, k: usize, d: usize, spread: f32) -> Vec<f32> {
    (0..k * d).map(|_| spread * rng.normal()).collect()
}

/// The Xenium crop: log1p-CP10k expression `[cells, genes]`, gene names, cell ids, centroids.
pub struct Crop {
    pub expr: Vec<f32>,
    pub cells: usize,
    pub genes: Vec<String>,
    pub ids: Vec<String>,
    pub centroids: Vec<[f32; 2]>,
}

pub fn xenium_crop() -> Crop {
    let table = crop_cells();
    let genes = table.n_genes();
    Crop {
        expr: normalise_log1p_cp10k(&table.counts, genes, 1e4),
        cells: table.n_cells(),
        genes: table.genes.clone(),
        ids: table.cell_ids.clone(),
        centroids: table.centroids_um.clone(),
    }
}

/// Rows `idx` of a row-major `[_, d]` matrix.
pub fn take_rows<T: Clone>(data: &[T], d: usize, idx: &[usize]) -> Vec<T> {
    idx.iter()
        .flat_map(|&i| data[i * d..(i + 1) * d].iter().cloned())
        .collect()
}

/// A seeded random split of `0..n` into two halves.
pub fn random_halves(n: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = SplitMix64::new(seed);
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        idx.swap(i, j);
    }
    let b = idx.split_off(n / 2);
    (idx, b)
}
