//! Whole-slide classification (issue 12, point 4): the `synth_slide` generator writes a
//! Xenium bundle (`cell_feature_matrix.h5` + `cells.csv.gz`) of resampled crop cells that our
//! readers read back, the windowed HDF5 reader gives the same matrix as the whole-file one,
//! and `classify --stream` gives the same classes as the in-memory `classify`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cellsymphony::data::{TenxH5Cells, TranscriptOptions, XeniumBundle};
use cellsymphony::engine::{ClassifierConfig, EngineModel};

const CELLS: usize = 5000;

/// A 5,000-cell synthetic bundle, written once per test binary.
fn bundle() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = common::fixture_dir("synth-slide-5000");
        let run = Command::new(env!("CARGO_BIN_EXE_synth_slide"))
            .args(["--cells", &CELLS.to_string(), "--seed", "11", "--data"])
            .arg(common::data_dir())
            .arg("--out")
            .arg(&dir)
            .output()
            .expect("synth_slide runs");
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        dir
    })
    .clone()
}

fn classify(bundle: &Path, model: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cellsymphony"))
        .args(["classify", "--engine", "cpu", "--data"])
        .arg(common::data_dir())
        .arg("--bundle")
        .arg(bundle)
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("binary runs")
}

/// `cell_id → (predicted, confidence)` of a predictions CSV.
fn predictions(path: &Path) -> Vec<(String, String, String)> {
    let csv = std::fs::read_to_string(path).unwrap();
    csv.lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[0].to_string(), c[3].to_string(), c[4].to_string())
        })
        .collect()
}

#[test]
fn synthetic_slide_reads_back_with_real_cells_tiled_over_the_area() {
    let dir = bundle();
    let b = XeniumBundle::open(&dir).unwrap();
    assert!(matches!(b.matrix, cellsymphony::data::MatrixSource::Hdf5(_)), "{}", b.describe());
    let table = b.read_cells(&TranscriptOptions::default()).unwrap();
    let crop = common::crop_cells();
    assert_eq!((table.n_cells(), table.genes.clone()), (CELLS, crop.genes.clone()), "controls dropped, crop panel kept");
    // Every cell is one of the crop's cells (same counts over the panel).
    let crop_rows: std::collections::HashSet<Vec<u32>> =
        (0..crop.n_cells()).map(|i| crop.row(i).iter().map(|v| v.to_bits()).collect()).collect();
    for i in 0..CELLS {
        let row: Vec<u32> = table.row(i).iter().map(|v| v.to_bits()).collect();
        assert!(crop_rows.contains(&row), "cell {} is not a resampled crop cell", table.cell_ids[i]);
    }
    // Cell i lies in tile i / 1135 of a ceil(sqrt(tiles))-column grid, each tile the crop's
    // centroid box plus the ±4 µm jitter on each side.
    let (mut lo, mut hi) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
    for c in &crop.centroids_um {
        for d in 0..2 {
            lo[d] = lo[d].min(c[d]);
            hi[d] = hi[d].max(c[d]);
        }
    }
    let tile = [hi[0] - lo[0] + 8.0, hi[1] - lo[1] + 8.0];
    let tiles = CELLS.div_ceil(crop.n_cells());
    let grid = (tiles as f64).sqrt().ceil() as usize;
    let mut seen_tiles = std::collections::HashSet::new();
    for (i, &[x, y]) in table.centroids_um.iter().enumerate() {
        let t = i / crop.n_cells();
        let (tx, ty) = ((t % grid) as f32 * tile[0], (t / grid) as f32 * tile[1]);
        assert!(x >= tx - 1e-3 && x <= tx + tile[0] + 1e-3 && y >= ty - 1e-3 && y <= ty + tile[1] + 1e-3, "cell {i} at ({x}, {y}) outside tile {t}");
        seen_tiles.insert(t);
    }
    assert_eq!(seen_tiles.len(), tiles);

    // The windowed reader, in odd-sized blocks, gives the same matrix in the same order.
    let h5 = TenxH5Cells::open(&dir.join("cell_feature_matrix.h5")).unwrap();
    assert_eq!((h5.n_cells(), h5.genes()), (CELLS, &table.genes[..]));
    assert_eq!(h5.cell_ids(), &table.cell_ids[..]);
    let mut start = 0;
    while start < CELLS {
        let end = (start + 777).min(CELLS);
        let block = h5.read_cells(start..end).unwrap();
        let dense = block.dense_rows(0..end - start);
        for (j, row) in dense.chunks(table.n_genes()).enumerate() {
            assert_eq!(row, table.row(h5.canonical_row(start + j)), "cell {}", start + j);
        }
        start = end;
    }
    assert!(h5.read_cells(CELLS - 1..CELLS + 1).is_err(), "a block past the end is an error");
}

#[test]
fn streamed_classify_matches_the_in_memory_classify() {
    let dir = bundle();
    let scratch = common::scratch("slide-classify");
    let genes = common::crop_cells().genes.clone();
    let config = ClassifierConfig { n_layers: 1, d_model: 16, n_heads: 2, d_ff: 32, ..ClassifierConfig::new(genes.len(), 5) };
    let model = scratch.join("model.safetensors");
    EngineModel::random_for_tests(config, genes, common::names("class", 5), 3).save_atomic(&model).unwrap();

    let streamed = scratch.join("streamed.csv");
    let run = classify(&dir, &model, &streamed, &["--stream", "--block-cells", "1500"]);
    let (out, err) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "{err}");
    assert!(out.contains(&format!("classified {CELLS} cells")) && out.contains("streamed in blocks of 1500"), "{out}");
    assert!(out.contains("peak RSS") && out.contains("MiB (VmHWM)"), "{out}");
    // Progress: plain lines when stderr is not a terminal, the last one at 100 %.
    assert!(err.contains(&format!("classified {CELLS} / {CELLS} cells")), "{err}");
    assert!(err.contains(&format!("classified 3000 / {CELLS} cells")), "{err}");

    let in_memory = scratch.join("in_memory.csv");
    let run = classify(&dir, &model, &in_memory, &[]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (s, m) = (predictions(&streamed), predictions(&in_memory));
    assert_eq!(s.len(), CELLS);
    assert_eq!(s, m, "same cells, classes and confidences in the same order");
    let classes: std::collections::HashSet<&str> = s.iter().map(|r| r.1.as_str()).collect();
    assert!(classes.len() > 1, "a random model still spreads {CELLS} real cells over classes: {classes:?}");
}

#[test]
fn streamed_classify_refuses_what_it_cannot_stream() {
    let dir = bundle();
    let scratch = common::scratch("slide-refuse");
    let genes = common::crop_cells().genes.clone();
    let config = ClassifierConfig { n_layers: 1, d_model: 16, n_heads: 2, d_ff: 32, ..ClassifierConfig::new(genes.len(), 3) };
    let model = scratch.join("model.safetensors");
    EngineModel::random_for_tests(config, genes, common::names("class", 3), 4).save_atomic(&model).unwrap();
    // The crop folder has transcripts only: nothing to stream.
    let crop_dir = common::crop_files().transcripts.parent().unwrap().to_path_buf();
    for (bundle, extra, expect) in [
        (crop_dir.as_path(), vec!["--stream"], "run classify without --stream"),
        (dir.as_path(), vec!["--stream", "--www", "w"], "--www is not available with --stream"),
        (dir.as_path(), vec!["--stream", "--block-cells", "0"], "--block-cells must be at least 1"),
    ] {
        let out = scratch.join("p.csv");
        let run = classify(bundle, &model, &out, &extra);
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{err}");
        assert!(err.contains(expect), "{extra:?}: {err}");
        assert!(!out.exists());
    }
}

/// A MEX bundle (the crop's cells) streams too: the matrix is read once as CSR, then run in
/// blocks; same predictions as the in-memory path.
#[test]
fn streamed_classify_of_a_mex_bundle_matches_the_in_memory_classify() {
    use cellsymphony::data::{write_cells_csv, write_mex_dir};
    let scratch = common::scratch("slide-mex");
    let crop = common::crop_cells();
    let bundle = scratch.join("bundle");
    write_mex_dir(crop, &bundle.join("cell_feature_matrix"), true).unwrap();
    write_cells_csv(crop, &bundle.join("cells.csv.gz"), true).unwrap();
    let genes = crop.genes.clone();
    let config = ClassifierConfig { n_layers: 1, d_model: 16, n_heads: 2, d_ff: 32, ..ClassifierConfig::new(genes.len(), 4) };
    let model = scratch.join("model.safetensors");
    EngineModel::random_for_tests(config, genes, common::names("class", 4), 9).save_atomic(&model).unwrap();
    let (streamed, in_memory) = (scratch.join("s.csv"), scratch.join("m.csv"));
    let run = classify(&bundle, &model, &streamed, &["--stream", "--block-cells", "300"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let run = classify(&bundle, &model, &in_memory, &[]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let s = predictions(&streamed);
    assert_eq!(s.len(), crop.n_cells());
    assert_eq!(s, predictions(&in_memory));
}

/// `write_10x_h5` → both readers: repeated `(gene, cell)` entries are summed, control features
/// dropped, cells in canonical (numeric) order although the file lists them out of order, and
/// a negative count is an error naming the dataset and entry.
#[test]
fn windowed_and_whole_file_h5_readers_agree_on_a_hand_made_matrix() {
    use cellsymphony::data::{read_10x_h5, write_10x_h5, CsrCounts};
    let scratch = common::scratch("slide-h5");
    let path = scratch.join("m.h5");
    let barcodes: Vec<String> = ["30", "4", "100"].iter().map(|s| s.to_string()).collect();
    let features: Vec<String> = ["GeneB", "NegControlProbe_1", "GeneA"].iter().map(|s| s.to_string()).collect();
    let types: Vec<String> =
        ["Gene Expression", "Negative Control Probe", "Gene Expression"].iter().map(|s| s.to_string()).collect();
    // Cell "30": GeneB 2 + 3 (repeated), control 1; cell "4": GeneA 5; cell "100": nothing.
    let counts = CsrCounts { n_genes: 3, indptr: vec![0, 3, 4, 4], indices: vec![0, 1, 0, 2], data: vec![2.0, 1.0, 3.0, 5.0] };
    write_10x_h5(&path, &barcodes, &features, &types, &counts).unwrap();
    let whole = read_10x_h5(&path).unwrap();
    assert_eq!(whole.cell_ids, ["4", "30", "100"]);
    assert_eq!(whole.genes, ["GeneA", "GeneB"]);
    assert_eq!(whole.counts, [5.0, 0.0, 0.0, 5.0, 0.0, 0.0]);
    let h5 = TenxH5Cells::open(&path).unwrap();
    assert_eq!((h5.cell_ids(), h5.genes(), h5.nnz()), (&whole.cell_ids[..], &whole.genes[..], 4));
    for (start, end) in [(0, 3), (0, 1), (1, 3), (2, 3)] {
        let block = h5.read_cells(start..end).unwrap();
        for (j, row) in block.dense_rows(0..end - start).chunks(2).enumerate() {
            assert_eq!(row, whole.row(h5.canonical_row(start + j)), "block {start}..{end}, cell {}", start + j);
        }
    }
    let bad = CsrCounts { data: vec![2.0, 1.0, -3.0, 5.0], ..counts };
    write_10x_h5(&path, &barcodes, &features, &types, &bad).unwrap();
    let err = TenxH5Cells::open(&path).unwrap().read_cells(0..3).unwrap_err().to_string();
    assert!(err.contains("matrix/data") && err.contains("entry 2 = -3"), "{err}");
}
