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

/// A `.npy` (version 1) of 1-D unicode strings (`<U{max chars}`, UTF-32LE), as
/// `np.save(path, np.array(ids))` writes it.
pub fn npy_unicode(ids: &[&str]) -> Vec<u8> {
    let width = ids.iter().map(|s| s.chars().count()).max().unwrap_or(1).max(1);
    let mut header = format!("{{'descr': '<U{width}', 'fortran_order': False, 'shape': ({},), }}", ids.len());
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for s in ids {
        let mut chars: Vec<u32> = s.chars().map(|c| c as u32).collect();
        chars.resize(width, 0);
        for c in chars {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }
    out
}

/// Seeded points around `k` well-separated centres: `(x [n, d], label per row)`, labels
/// cycling `0, 1, …, k-1` (so every class has `n / k` rows).
pub fn planted_clusters(n: usize, d: usize, k: usize, spread: f32, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = cellsymphony::util::rng::SplitMix64::new(seed);
    let centres: Vec<f32> = (0..k * d).map(|_| 4.0 * (rng.next_f32() - 0.5)).collect();
    let mut x = Vec::with_capacity(n * d);
    let labels: Vec<u32> = (0..n).map(|i| (i % k) as u32).collect();
    for &l in &labels {
        for j in 0..d {
            x.push(centres[l as usize * d + j] + spread * (rng.next_f32() - 0.5));
        }
    }
    (x, labels)
}
