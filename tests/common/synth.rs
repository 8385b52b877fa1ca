//! Small seeded synthetic fixtures and comparisons several suites share.

use std::io::Write;

use cellsymphony::engine::{ClassifierConfig, EngineModel};

/// `["<prefix>0", "<prefix>1", …]`: gene or class names of a synthetic model.
pub fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// A seeded random engine model (fp32) of `config`, genes `G0…`, classes `c0…`.
pub fn random_model(config: ClassifierConfig, seed: u64) -> EngineModel {
    let (genes, classes) = (names("G", config.n_genes), names("c", config.n_classes));
    EngineModel::random_for_tests(config, genes, classes, seed)
}

/// `bytes` gzipped (fast level).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// max |a − b| over equal-length slices (panics on a length mismatch).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
