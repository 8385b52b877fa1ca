//! Entry points of the fuzz targets (`fuzz/`, cargo fuzz) and of the corpus-replay test
//! (`tests/fuzz_corpus.rs`, run in CI).
//!
//! Each function feeds arbitrary bytes to one reader and returns normally whatever the bytes
//! are: a typed error is a correct outcome, a panic (or abort, or unbounded allocation) is a
//! bug. File-based readers get the bytes written to a per-thread scratch directory (in
//! `/dev/shm` when it exists), so the real code path, `.gz` detection included, is exercised.

use std::path::{Path, PathBuf};

use crate::data;
use crate::engine::EngineModel;

/// Separator between the files packed into one fuzz input (see [`mex_folder`]).
pub const FILE_SEPARATOR: &[u8] = b"\n%%CELLSYMPHONY-NEXT-FILE%%\n";

fn scratch_dir() -> PathBuf {
    let root = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = root.join(format!(
        "cellsymphony-fuzz-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Writes `bytes` as `dir/name`, adding `.gz` when they are gzip data; returns the path.
fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = if is_gzip(bytes) {
        dir.join(format!("{name}.gz"))
    } else {
        dir.join(name)
    };
    let _ = std::fs::write(&path, bytes);
    path
}

fn split_files(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts = Vec::with_capacity(n);
    let mut rest = data;
    while parts.len() + 1 < n {
        match rest
            .windows(FILE_SEPARATOR.len())
            .position(|w| w == FILE_SEPARATOR)
        {
            Some(at) => {
                parts.push(&rest[..at]);
                rest = &rest[at + FILE_SEPARATOR.len()..];
            }
            None => break,
        }
    }
    parts.push(rest);
    while parts.len() < n {
        parts.push(&[]);
    }
    parts
}

/// Model file loader: [`EngineModel::from_safetensors_bytes`]; a model that loads is also run
/// on two cells by the CPU engine (small models only; with patches when it has a morphology
/// token) and must give finite-or-not logits of the announced shape without panicking.
pub fn model_file(data: &[u8]) {
    if let Ok(model) = EngineModel::from_safetensors_bytes(data) {
        let cfg = model.config().clone();
        let params = cfg
            .n_embedding_inputs()
            .saturating_mul(cfg.d_model)
            .saturating_mul(cfg.n_tokens().max(1));
        let vit_work = cfg.morphology.as_ref().map_or(0, |m| {
            m.n_vit_tokens()
                .saturating_mul(m.patch_row_width().max(m.width).max(m.d_ff))
                .saturating_mul(m.width)
                .saturating_mul(m.n_layers)
        });
        if params <= 1 << 20 && vit_work <= 1 << 22 && cfg.n_layers <= 8 {
            let x = vec![0.5f32; 2 * cfg.n_inputs()];
            let patches = cfg.morphology.as_ref().map(|m| vec![0.25f32; 2 * m.pixels()]);
            let logits = crate::engine::cpu::forward_logits_with_patches(&model, &x, patches.as_deref(), 2)
                .expect("the CPU forward reads input of the model's own shape");
            assert_eq!(logits.len(), 2 * cfg.n_classes);
        }
        // Whatever loads must also save and load back.
        if let Ok(bytes) = model.to_safetensors_bytes() {
            assert!(EngineModel::from_safetensors_bytes(&bytes).is_ok());
        }
    }
}

/// MEX folder reader: the input is `features.tsv`, `barcodes.tsv` and `matrix.mtx` joined by
/// [`FILE_SEPARATOR`] (each may be gzip data). Both the CSR and the dense readers run; when
/// both succeed they must agree.
pub fn mex_folder(data: &[u8]) {
    let dir = scratch_dir().join("mex");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    let parts = split_files(data, 3);
    put(&dir, "features.tsv", parts[0]);
    put(&dir, "barcodes.tsv", parts[1]);
    put(&dir, "matrix.mtx", parts[2]);
    let sparse = data::read_mex_dir_csr(&dir);
    if let Ok(m) = &sparse {
        assert!(m.counts.validate("fuzz").is_ok());
        // Bounded: the dense reader allocates cells × genes.
        if m.cell_ids.len().saturating_mul(m.genes.len()) <= 1 << 22 {
            let dense = data::read_mex_dir(&dir).expect("dense reader fails where CSR succeeded");
            assert_eq!(dense.counts, m.counts.to_dense());
        }
    }
}

/// CSV readers: the same bytes as a transcripts file (`transcripts.csv`), a `cells.csv` and a
/// reference table.
pub fn csv_tables(data: &[u8]) {
    let dir = scratch_dir().join("csv");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    let t = put(&dir, "transcripts.csv", data);
    if let Ok(table) = data::read_transcripts_csv(&t, &data::TranscriptOptions::default()) {
        assert_eq!(table.counts.len(), table.n_cells() * table.n_genes());
    }
    let c = put(&dir, "cells.csv", data);
    let _ = data::read_cells_csv(&c);
    let r = put(&dir, "reference.csv", data);
    let _ = data::read_reference_csv(&r);
    let _ = data::parse_manifest(
        &String::from_utf8_lossy(data),
        &dir.join("experiment.xenium"),
    );
}

/// HDF5 readers: the bytes as a 10x `cell_feature_matrix.h5` and as an AnnData `.h5ad`.
/// A matrix that reads must be consistent with its own shape.
pub fn hdf5_files(data: &[u8]) {
    let dir = scratch_dir().join("hdf5");
    let _ = std::fs::create_dir_all(&dir);
    let path = put(&dir, "cell_feature_matrix.h5", data);
    if let Ok(t) = data::read_10x_h5(&path) {
        assert_eq!(t.counts.len(), t.n_cells() * t.n_genes());
    }
    let path = put(&dir, "input.h5ad", data);
    if let Ok(a) = data::read_h5ad(&path) {
        if a.n_obs().saturating_mul(a.n_vars()) <= 1 << 22 {
            let _ = a.dense_x();
        }
        let _ = a.spatial();
    }
}

/// Parquet readers: the bytes as `transcripts.parquet` and `cells.parquet`.
pub fn parquet_files(data: &[u8]) {
    let dir = scratch_dir().join("parquet");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("transcripts.parquet");
    let _ = std::fs::write(&path, data);
    if let Ok(t) = data::read_transcripts_parquet(&path, &data::TranscriptOptions::default()) {
        assert_eq!(t.xy_um.len(), t.gene_index.len());
        assert_eq!(t.cell_index.len(), t.gene_index.len());
    }
    let path = dir.join("cells.parquet");
    let _ = std::fs::write(&path, data);
    let _ = data::read_cells_parquet(&path);
}
