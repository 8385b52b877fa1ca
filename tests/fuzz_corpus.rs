//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) and crashes found by fuzzing
//! (`fuzz/regressions/<target>/`) through the fuzz entry points: the short fuzz smoke that
//! runs in CI. The long runs (`scripts/fuzz.sh`, ≥ 10 minutes per target) stay out of CI.
//!
//! `CELLSYMPHONY_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_corpus` rewrites the seed files
//! from the real BIDCell crop (small: a few cells, a few dozen lines).
#![cfg(feature = "native-io")]

mod common;

use std::path::{Path, PathBuf};

use common::{crop_cells, crop_files, gzip, scratch};
use cellsymphony::data::{
    write_mex_dir, CellTable,
};
use cellsymphony::engine::{ClassifierConfig, EngineModel};
use cellsymphony::fuzz_targets::{self, FILE_SEPARATOR};

const TARGETS: [(&str, fn(&[u8])); 5] = [
    ("parquet_files", fuzz_targets::parquet_files),
    ("model_file", fuzz_targets::model_file),
    ("mex_folder", fuzz_targets::mex_folder),
    ("csv_tables", fuzz_targets::csv_tables),
    ("hdf5_files", fuzz_targets::hdf5_files),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn head_lines(path: &Path, n: usize) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    for line in text.lines().take(n) {
        out.push_str(line);
        out.push('\n');
    }
    out.into_bytes()
}

/// The crafted model-loader seeds (issue 13): a tiny int8 model with a valid content checksum,
/// the same file with one flipped bit (wrong checksum), and one with an implausible
/// `head.weight_scale` (3.4e35) under a recomputed, valid checksum — so the fuzzer starts from
/// inputs that reach each of the loader's checks. A few KB each.
fn crafted_model_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use safetensors::{tensor::TensorView, SafeTensors};
    let config = ClassifierConfig { n_layers: 1, d_model: 8, n_heads: 2, d_ff: 16, gene_tokens: 2, ..ClassifierConfig::new(12, 3) };
    let model = EngineModel::random_for_tests(config, common::names("G", 12), common::names("class", 3), 13).quantize_int8();
    let ok = model.to_safetensors_bytes().unwrap();
    let mut wrong = ok.clone();
    *wrong.last_mut().unwrap() ^= 1;
    let st = SafeTensors::deserialize(&ok).unwrap();
    let (_, header) = SafeTensors::read_metadata(&ok).unwrap();
    let mut metadata = header.metadata().clone().unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> =
        st.tensors().into_iter().map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec())).collect();
    owned.sort_by(|a, b| a.0.cmp(&b.0));
    let scale = owned.iter_mut().find(|(n, ..)| n == "head.weight_scale").unwrap();
    scale.3[..4].copy_from_slice(&3.4e35f32.to_le_bytes());
    // The exporter's checksum (CRC-32 over name, length, bytes in name order), recomputed.
    let mut h = crc32fast::Hasher::new();
    for (name, _, _, data) in &owned {
        h.update(name.as_bytes());
        h.update(&(data.len() as u64).to_le_bytes());
        h.update(data);
    }
    metadata.insert(cellsymphony::engine::CHECKSUM_KEY.into(), format!("{:08x}", h.finalize()));
    let views: Vec<(String, TensorView<'_>)> =
        owned.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let implausible = safetensors::serialize(views, Some(metadata)).unwrap();
    vec![
        ("checksum_ok_int8.safetensors", ok),
        ("checksum_wrong_int8.safetensors", wrong),
        ("implausible_scale_int8.safetensors", implausible),
    ]
}

fn write_model_seeds() {
    let dir = fuzz_dir().join("corpus").join("model_file");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in crafted_model_seeds() {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// The committed crafted seeds reach the loader's checks: the checksummed file loads, the
/// flipped bit is a checksum mismatch, the implausible scale (under a valid checksum) is an
/// implausible value naming the tensor; and the fuzz entry point survives each.
#[test]
fn crafted_model_seeds_give_their_typed_errors() {
    use cellsymphony::engine::ModelFileError;
    if std::env::var_os("CELLSYMPHONY_WRITE_FUZZ_SEEDS").is_some() {
        write_model_seeds();
    }
    let dir = fuzz_dir().join("corpus").join("model_file");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("fuzz/corpus/model_file/{name}: {e}; regenerate the seeds (module docs)"));
    let ok = read("checksum_ok_int8.safetensors");
    assert!(ok.len() < 16 << 10, "seeds stay small");
    let model = EngineModel::from_safetensors_bytes(&ok).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&ok).unwrap();
    assert!(header.metadata().as_ref().unwrap().contains_key(cellsymphony::engine::CHECKSUM_KEY));
    assert_eq!(model.meta.genes.len(), 12);
    let err = EngineModel::from_safetensors_bytes(&read("checksum_wrong_int8.safetensors")).unwrap_err();
    assert!(matches!(err, ModelFileError::ChecksumMismatch { .. }), "{err}");
    let err = EngineModel::from_safetensors_bytes(&read("implausible_scale_int8.safetensors")).unwrap_err();
    assert!(matches!(err, ModelFileError::ImplausibleValue { ref name, .. } if name == "head.weight_scale"), "{err}");
    for name in ["checksum_ok_int8.safetensors", "checksum_wrong_int8.safetensors", "implausible_scale_int8.safetensors"] {
        fuzz_targets::model_file(&read(name));
    }
}

fn write_seeds() {
    write_model_seeds();
    let data = crop_files();
    let crop = crop_cells();
    let corpus = fuzz_dir().join("corpus");

    // Model files: a tiny random model, f32 and int8.
    let dir = corpus.join("model_file");
    std::fs::create_dir_all(&dir).unwrap();
    let genes: Vec<String> = crop.genes[..12].to_vec();
    let mut cfg = ClassifierConfig::new(genes.len(), 3);
    cfg.d_model = 8;
    cfg.n_heads = 2;
    cfg.d_ff = 16;
    cfg.n_layers = 1;
    cfg.gene_tokens = 2;
    let classes = vec!["B".into(), "Epithelial".into(), "Malignant".into()];
    let model = EngineModel::random_for_tests(cfg, genes, classes, 7);
    std::fs::write(
        dir.join("tiny_f32.safetensors"),
        model.to_safetensors_bytes().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("tiny_int8.safetensors"),
        model.quantize_int8().to_safetensors_bytes().unwrap(),
    )
    .unwrap();
    // A tiny multi-input model: morphology ViT, centroid token and attention bias.
    let mut cfg = model.meta.config.clone();
    cfg.spatial = Some(cellsymphony::engine::SpatialTokenConfig {
        n_frequencies: 2,
        min_wavelength_um: 8.0,
        max_wavelength_um: 800.0,
    });
    cfg.morphology = Some(cellsymphony::engine::MorphologyTokenConfig {
        image_size: 8,
        vit_patch: 4,
        width: 4,
        n_heads: 2,
        d_ff: 8,
        n_layers: 1,
        k_nearest: 2,
        um_per_px: 0.75,
    });
    cfg.attention_bias = true;
    let multi = EngineModel::random_for_tests(cfg, model.meta.genes.clone(), model.meta.classes.clone(), 8);
    std::fs::write(
        dir.join("tiny_multi_input_int8.safetensors"),
        multi.quantize_int8().to_safetensors_bytes().unwrap(),
    )
    .unwrap();

    // MEX: the first 6 real cells, plain and gzipped, packed into one input.
    let dir = corpus.join("mex_folder");
    std::fs::create_dir_all(&dir).unwrap();
    let n = 6;
    let g = crop.n_genes();
    let small = CellTable {
        cell_ids: crop.cell_ids[..n].to_vec(),
        genes: crop.genes.clone(),
        counts: crop.counts[..n * g].to_vec(),
        centroids_um: crop.centroids_um[..n].to_vec(),
        nucleus_centroids_um: crop.nucleus_centroids_um[..n].to_vec(),
    };
    let tmp = scratch("seeds");
    write_mex_dir(&small, &tmp, false).unwrap();
    let pack = |parts: [Vec<u8>; 3]| {
        let mut out = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(FILE_SEPARATOR);
            }
            out.extend_from_slice(p);
        }
        out
    };
    let files =
        ["features.tsv", "barcodes.tsv", "matrix.mtx"].map(|f| std::fs::read(tmp.join(f)).unwrap());
    std::fs::write(dir.join("six_cells.mex"), pack(files.clone())).unwrap();
    std::fs::write(dir.join("six_cells_gz.mex"), pack(files.map(|f| gzip(&f)))).unwrap();

    // CSV: heads of the real transcripts and reference tables.
    let dir = corpus.join("csv_tables");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("transcripts_head.csv"),
        head_lines(&data.transcripts, 40),
    )
    .unwrap();
    std::fs::write(
        dir.join("reference_head.csv"),
        head_lines(&data.reference, 4),
    )
    .unwrap();
    // HDF5: predictions of 3 cells as .h5ad (our writer), and a 10x matrix of 3 cells (h5py).
    let dir_h5 = corpus.join("hdf5_files");
    std::fs::create_dir_all(&dir_h5).unwrap();
    let script = r#"
import h5py, numpy as np, sys
with h5py.File(sys.argv[1], "w") as f:
    m = f.create_group("matrix")
    m["barcodes"] = np.array([b"aaaabaep-1", b"aaaabaeq-1", b"aaaabaer-1"])
    m["data"] = np.array([3, 1, 2, 5], dtype=np.int32)
    m["indices"] = np.array([0, 2, 1, 3], dtype=np.int64)
    m["indptr"] = np.array([0, 2, 3, 4], dtype=np.int64)
    m["shape"] = np.array([4, 3], dtype=np.int32)
    ft = m.create_group("features")
    ft["id"] = np.array([b"ACTA2", b"EPCAM", b"KRT5", b"NegControlProbe_00042"])
    ft["name"] = ft["id"][:]
    ft["feature_type"] = np.array([b"Gene Expression"] * 3 + [b"Negative Control Probe"])
    ft["genome"] = np.array([b"Unknown"] * 4)
s = h5py.string_dtype()
def enc(o, t, v):
    o.attrs["encoding-type"] = t
    o.attrs["encoding-version"] = v
with h5py.File(sys.argv[2], "w") as f:
    enc(f, "anndata", "0.1.0")
    f["X"] = np.array([[0, 1.5, 2], [3, 0, 0]], dtype=np.float32)
    enc(f["X"], "array", "0.2.0")
    for name, index in [("obs", ["aaaabaep-1", "aaaabaeq-1"]), ("var", ["ACTA2", "EPCAM", "KRT5"])]:
        g = f.create_group(name)
        enc(g, "dataframe", "0.2.0")
        g.attrs["_index"] = "_index"
        g.attrs.create("column-order", ["label"] if name == "obs" else [], dtype=s)
        g.create_dataset("_index", data=np.array(index, dtype=object), dtype=s)
        enc(g["_index"], "string-array", "0.2.0")
    c = f["obs"].create_group("label")
    enc(c, "categorical", "0.2.0")
    c.attrs["ordered"] = False
    c["codes"] = np.array([1, 0], dtype=np.int8)
    c.create_dataset("categories", data=np.array(["B", "Malignant"], dtype=object), dtype=s)
    o = f.create_group("obsm")
    enc(o, "dict", "0.1.0")
    o["spatial"] = np.array([[1100.5, 230.25], [1101.0, 231.0]])
"#;
    // Parquet: the first 30 transcripts (snappy, as XOA writes) and 3 cells, by pyarrow.
    let dir_pq = corpus.join("parquet_files");
    std::fs::create_dir_all(&dir_pq).unwrap();
    let pq_script = r#"
import sys, pyarrow as pa, pyarrow.csv as pacsv, pyarrow.parquet as pq
t = pacsv.read_csv(sys.argv[1]).slice(0, 30)
pq.write_table(t, sys.argv[2], compression="snappy")
c = pa.table({"cell_id": ["aaaabaep-1", "aaaabaeq-1", "aaaabaer-1"], "x_centroid": [1100.5, 1101.0, 1102.0],
              "y_centroid": [230.25, 231.0, 240.5], "transcript_counts": pa.array([12, 7, 9], pa.uint32())})
pq.write_table(c, sys.argv[3], compression="zstd")
"#;
    let ok = std::process::Command::new("python3")
        .args(["-c", pq_script])
        .arg(&data.transcripts)
        .arg(dir_pq.join("transcripts_head.parquet"))
        .arg(dir_pq.join("cells.parquet"))
        .status()
        .unwrap();
    assert!(ok.success(), "python3 with pyarrow is needed to write the parquet seeds");
    let ok = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir_h5.join("tiny_10x.h5"))
        .arg(dir_h5.join("tiny.h5ad"))
        .status()
        .unwrap();
    assert!(ok.success(), "python3 with h5py is needed to write the 10x seed");
    std::fs::write(
        dir.join("cells.csv"),
        b"cell_id,x_centroid,y_centroid,transcript_counts,cell_area\n\
          aaaabaep-1,1100.5,230.25,12,40.1\naaaabaeq-1,1101.0,231.0,7,35.0\n",
    )
    .unwrap();
}

fn replay(dir: &Path, f: fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths.into_iter().filter(|p| p.is_file()) {
        let bytes = std::fs::read(&p).unwrap();
        let r = std::panic::catch_unwind(|| f(&bytes));
        assert!(r.is_ok(), "{} panicked", p.display());
        n += 1;
    }
    n
}

#[test]
fn committed_corpora_and_regressions_do_not_crash() {
    if std::env::var_os("CELLSYMPHONY_WRITE_FUZZ_SEEDS").is_some() {
        write_seeds();
    }
    for (name, f) in TARGETS {
        let seeds = replay(&fuzz_dir().join("corpus").join(name), f);
        assert!(
            seeds >= 2,
            "fuzz/corpus/{name} has {seeds} seeds; regenerate them (see module docs)"
        );
        let regressions = replay(&fuzz_dir().join("regressions").join(name), f);
        eprintln!("{name}: {seeds} seeds, {regressions} regression inputs replayed");
    }
}

/// Seeded byte mutations of every seed (bit flips, truncations, splices): a short,
/// deterministic fuzz smoke that needs no nightly toolchain.
#[test]
fn mutated_seeds_do_not_crash() {
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for (name, f) in TARGETS {
        let dir = fuzz_dir().join("corpus").join(name);
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok())
            .map(|e| std::fs::read(e.path()).unwrap())
            .collect();
        seeds.sort();
        let mut runs = 0;
        for seed in &seeds {
            for _ in 0..150 {
                let mut b = seed.clone();
                match next() % 4 {
                    0 => {
                        for _ in 0..1 + next() % 8 {
                            if !b.is_empty() {
                                let i = (next() % b.len() as u64) as usize;
                                b[i] ^= 1 << (next() % 8);
                            }
                        }
                    }
                    1 => b.truncate((next() % (b.len() as u64 + 1)) as usize),
                    2 => {
                        if !b.is_empty() {
                            let i = (next() % b.len() as u64) as usize;
                            let digit = b"0123456789-.e,\t\n "[(next() % 17) as usize];
                            b[i] = digit;
                        }
                    }
                    _ => {
                        let other = &seeds[(next() % seeds.len() as u64) as usize];
                        let cut = (next() % (b.len() as u64 + 1)) as usize;
                        let from = (next() % (other.len() as u64 + 1)) as usize;
                        b.truncate(cut);
                        b.extend_from_slice(&other[from..]);
                    }
                }
                let r = std::panic::catch_unwind(|| f(&b));
                if r.is_err() {
                    let out = std::env::temp_dir().join(format!("cellsymphony-crash-{name}"));
                    std::fs::write(&out, &b).unwrap();
                    panic!(
                        "{name}: a mutated seed panicked; input saved to {}",
                        out.display()
                    );
                }
                runs += 1;
            }
        }
        eprintln!("{name}: {runs} mutated inputs");
    }
}
