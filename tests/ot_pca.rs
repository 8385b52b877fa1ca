//! `ot::pca` against numpy's SVD (f64, through python3).
//!
//! Tolerances (both sides see the same f32 inputs; ours stores results in f32):
//! - components, up to one sign per component: max abs difference ≤ 1e-4 (unit vectors);
//! - explained variance: relative ≤ 1e-5; ratio: absolute ≤ 1e-6;
//! - coordinates, up to the same sign: max abs ≤ 1e-4 · max |coordinate|.
//!
//! Components are only compared where the eigenvalue gap to both neighbours is at least
//! 1e-6 of the largest eigenvalue (otherwise the basis of a near-degenerate eigenspace is
//! arbitrary); the test asserts that this excludes no more than 2 of the 50.

#![cfg(all(feature = "native-io", not(target_arch = "wasm32")))]

mod common;

use cellsymphony::engine::normalise_log1p_cp10k;
use cellsymphony::util::rng::SplitMix64;
use cellsymphony::ot::{pca, OtError, Pca, PcaOptions};
use common::ot::{pot_available, run_reference};
use common::Scratch;

fn compare_with_numpy(test: &str, x: &[f32], cells: usize, genes: usize, d: usize) {
    if !pot_available(test) {
        return;
    }
    let t = std::time::Instant::now();
    let (model, coords) = pca(x, cells, genes, &PcaOptions { n_components: d }).unwrap();
    eprintln!(
        "{test}: PCA of [{cells}, {genes}] to {d} in {:?}",
        t.elapsed()
    );
    let dir = Scratch::new(test);
    dir.write_f32("x.f32", x);
    dir.write_json(
        "meta.json",
        &serde_json::json!({"cells": cells, "genes": genes, "d": d}),
    );
    run_reference("numpy_pca.py", dir.path());
    let comps = dir.read_f64("components.f64");
    let var = dir.read_f64("variance.f64");
    let ratio = dir.read_f64("ratio.f64");
    let np_coords = dir.read_f64("coords.f64");

    let top = var[0];
    let mut skipped = 0;
    let mut worst_comp = 0f64;
    let mut worst_coord = 0f64;
    let max_coord = np_coords.iter().fold(0f64, |m, v| m.max(v.abs()));
    for k in 0..d {
        let rel = ((model.explained_variance[k] as f64) - var[k]).abs() / var[k].max(1e-12);
        assert!(
            rel <= 1e-5,
            "{test}: variance {k}: ours {} numpy {} (rel {rel:e})",
            model.explained_variance[k],
            var[k]
        );
        assert!((model.explained_variance_ratio[k] as f64 - ratio[k]).abs() <= 1e-6);
        let gap_prev = if k == 0 {
            f64::INFINITY
        } else {
            var[k - 1] - var[k]
        };
        let gap_next = if k + 1 < var.len() {
            var[k] - var[k + 1]
        } else {
            f64::INFINITY
        };
        if gap_prev.min(gap_next) < 1e-6 * top {
            skipped += 1;
            continue;
        }
        let ours = &model.components[k * genes..(k + 1) * genes];
        let theirs = &comps[k * genes..(k + 1) * genes];
        let dot: f64 = ours.iter().zip(theirs).map(|(&a, &b)| a as f64 * b).sum();
        let sign = dot.signum();
        let err = ours
            .iter()
            .zip(theirs)
            .map(|(&a, &b)| (a as f64 - sign * b).abs())
            .fold(0f64, f64::max);
        worst_comp = worst_comp.max(err);
        for c in 0..cells {
            let e = (coords[c * d + k] as f64 - sign * np_coords[c * d + k]).abs();
            worst_coord = worst_coord.max(e);
        }
    }
    eprintln!(
        "{test}: max component error {worst_comp:.2e}, max coordinate error {worst_coord:.2e} \
         (max |coord| {max_coord:.2}), {skipped} near-degenerate components skipped"
    );
    assert!(skipped <= 2, "{test}: {skipped} near-degenerate components");
    assert!(worst_comp <= 1e-4, "{test}: component error {worst_comp:e}");
    assert!(
        worst_coord <= 1e-4 * max_coord,
        "{test}: coordinate error {worst_coord:e}"
    );
}

#[test]
fn pca_matches_numpy_on_seeded_counts() {
    let (cells, genes) = (700, 120);
    let mut rng = SplitMix64::new(7);
    // Low-rank structure (a few programs) plus sparse counts.
    let counts = rng.counts(cells, genes, 0.6, 12);
    let mut structured = counts.clone();
    for c in 0..cells {
        let program = c % 4;
        for g in (program * 10)..(program * 10 + 10) {
            structured[c * genes + g] += 5.0;
        }
    }
    let x = normalise_log1p_cp10k(&structured, genes, 1e4);
    compare_with_numpy("pca_matches_numpy_on_seeded_counts", &x, cells, genes, 50);
}

#[test]
fn pca_matches_numpy_on_xenium_crop() {
    let crop = common::ot::xenium_crop();
    compare_with_numpy(
        "pca_matches_numpy_on_xenium_crop",
        &crop.expr,
        crop.cells,
        crop.genes.len(),
        50,
    );
}

#[test]
fn pca_is_deterministic_and_orthonormal() {
    let (cells, genes) = (300, 40);
    let x = SplitMix64::new(3).uniform_vec(cells * genes, 0.0, 3.0);
    let a = Pca::fit(&x, cells, genes, &PcaOptions { n_components: 10 }).unwrap();
    let b = Pca::fit(&x, cells, genes, &PcaOptions { n_components: 10 }).unwrap();
    assert_eq!(a, b);
    for i in 0..10 {
        for j in 0..10 {
            let dot: f32 = (0..genes)
                .map(|g| a.components[i * genes + g] * a.components[j * genes + g])
                .sum();
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((dot - want).abs() < 1e-5, "components {i},{j}: {dot}");
        }
        // Sign convention: the largest-magnitude loading is positive.
        let row = &a.components[i * genes..(i + 1) * genes];
        let pivot = row
            .iter()
            .fold(0f32, |b, &v| if v.abs() > b.abs() { v } else { b });
        assert!(pivot > 0.0);
    }
    for w in a.explained_variance.windows(2) {
        assert!(w[0] >= w[1]);
    }
}

#[test]
fn pca_rejects_bad_input() {
    let x = vec![1.0f32; 20];
    let opts = PcaOptions { n_components: 2 };
    assert!(matches!(pca(&x, 5, 3, &opts), Err(OtError::Shape { .. })));
    assert!(matches!(
        pca(&x, 1, 20, &opts),
        Err(OtError::InvalidOption { .. })
    ));
    assert!(matches!(pca(&[], 0, 0, &opts), Err(OtError::Empty { .. })));
    assert!(matches!(
        pca(&x, 5, 4, &PcaOptions { n_components: 5 }),
        Err(OtError::InvalidOption {
            name: "n_components",
            ..
        })
    ));
    let mut bad = x.clone();
    bad[7] = f32::NAN;
    let err = pca(&bad, 5, 4, &opts).unwrap_err();
    assert!(matches!(err, OtError::NonFinite { index: 7, .. }), "{err}");
    // A constant matrix has zero variance but is valid.
    let (m, coords) = pca(&x, 5, 4, &opts).unwrap();
    assert!(m.explained_variance.iter().all(|&v| v.abs() < 1e-6));
    assert!(coords.iter().all(|&v| v.abs() < 1e-6));
}
