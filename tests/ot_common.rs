//! Helpers shared by the `tests/ot_*.rs` suites (included with `#[path]`; no tests here).
//!
//! - [`gpu`]: opens the GPU or fails (skips loudly with `CELLSYMPHONY_ALLOW_NO_GPU=1`).
//! - [`python`]: runs a script of `tests/python/` on a directory of raw arrays; fails with
//!   install instructions when python3/numpy/POT are missing (skips loudly with
//!   `CELLSYMPHONY_ALLOW_NO_PYTHON=1`).
//! - seeded clustered point clouds and the Xenium crop's normalised cells.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use cellsymphony::data::{read_transcripts_csv, BidcellData, TranscriptOptions};
use cellsymphony::engine::normalise_log1p_cp10k;
use cellsymphony::util::rng::SplitMix64;
use cellsymphony::gpu::{GpuContext, GpuError};

/// Opens the GPU, or fails the test, or (with CELLSYMPHONY_ALLOW_NO_GPU=1) skips it loudly.
pub fn gpu(test: &str) -> Option<GpuContext> {
    match pollster::block_on(GpuContext::new()) {
        Ok(ctx) => {
            eprintln!("{test}: adapter {}", ctx.adapter_summary());
            Some(ctx)
        }
        Err(e @ GpuError::NoAdapter { .. }) => {
            if std::env::var("CELLSYMPHONY_ALLOW_NO_GPU").as_deref() == Ok("1") {
                eprintln!("SKIPPED (no GPU adapter): {test}");
                None
            } else {
                panic!("{test}: {e}\n(set CELLSYMPHONY_ALLOW_NO_GPU=1 to skip GPU tests on a machine without any adapter)");
            }
        }
        Err(e) => panic!("{test}: GPU context creation failed: {e}"),
    }
}

/// A fresh scratch directory for one test.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("cellsymphony-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write_f32(&self, name: &str, data: &[f32]) {
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(self.0.join(name), bytes).unwrap();
    }

    pub fn write_json(&self, name: &str, value: &serde_json::Value) {
        std::fs::write(self.0.join(name), value.to_string()).unwrap();
    }

    pub fn read_f64(&self, name: &str) -> Vec<f64> {
        let bytes = std::fs::read(self.0.join(name))
            .unwrap_or_else(|e| panic!("read {}: {e}", self.0.join(name).display()));
        bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    pub fn read_json(&self, name: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.0.join(name)).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const PY_HELP: &str = "python3 with numpy and POT is needed: `pip install pot==0.9.7.post1` \
(pulls numpy and scipy); set CELLSYMPHONY_ALLOW_NO_PYTHON=1 to skip these comparisons";

/// Whether python3 with numpy and POT can be used; fails (or skips loudly) otherwise.
pub fn python_available(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import numpy, ot"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return true;
    }
    if std::env::var("CELLSYMPHONY_ALLOW_NO_PYTHON").as_deref() == Ok("1") {
        eprintln!("SKIPPED (no python3 + numpy + POT): {test}");
        false
    } else {
        panic!("{test}: {PY_HELP}");
    }
}

/// Runs `tests/python/<script> <dir>`; panics with its stderr on failure.
pub fn run_python(script: &str, dir: &Path) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("python")
        .join(script);
    let out = Command::new("python3")
        .arg(&path)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}; {PY_HELP}", path.display()));
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `n` points in `d` dimensions drawn around `k` shared cluster centres (spread `spread`),
/// plus `shift` on every coordinate: a stand-in for cell states in PCA space.
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
    let data = BidcellData::from_default_dir().unwrap_or_else(|e| panic!("{e}"));
    let table = read_transcripts_csv(&data.transcripts, &TranscriptOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
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
