//! The `cellsymphony` binary: help on every subcommand, and clear errors (not panics) for a
//! corrupt model file and a missing data folder.

mod common;

use std::process::Command;

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cellsymphony"))
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["label", "train", "eval", "export", "classify", "pipeline", "benchmark", "align", "inspect", "pair", "spatia", "image-only"] {
        let out = cli().args([sub, "--help"]).output().expect("binary runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{sub} --help failed");
        assert!(text.contains("Usage: cellsymphony"), "{sub} --help printed: {text}");
    }
    // `train` resumes from a checkpoint; `benchmark` resumes each model and picks the models.
    for (sub, flags) in [("train", &["--resume", "--out"][..]), ("benchmark", &["--resume", "--models"][..])] {
        let out = cli().args([sub, "--help"]).output().expect("binary runs");
        let text = String::from_utf8_lossy(&out.stdout);
        for flag in flags {
            assert!(text.contains(flag), "{sub} --help lacks {flag}: {text}");
        }
    }
}

#[test]
fn an_unknown_model_name_is_refused_listing_the_four() {
    // Both spellings of an architecture parse; anything else is a usage error naming the choices
    // before any data is read.
    let out = cli()
        .args(["benchmark", "--models", "gene-only,triple", "--data", "/nonexistent/cellsymphony-data"])
        .output()
        .expect("binary runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("triple") && err.contains("dual-modality") && err.contains("multi-input"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn truncated_model_file_is_a_clear_error() {
    let dir = common::scratch("cli-model");
    let path = dir.join("broken.safetensors");
    std::fs::write(&path, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    let out = cli()
        .args(["export", "--model"])
        .arg(&path)
        .arg("--out")
        .arg(dir.join("out.safetensors"))
        .output()
        .expect("binary runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("broken.safetensors"), "error should name the file: {err}");
    assert!(!err.contains("panicked"), "must not panic: {err}");
    assert!(!dir.join("out.safetensors").exists(), "no output may be written on error");
}

#[test]
fn missing_data_folder_says_how_to_fetch_it() {
    let out = cli()
        .args(["label", "--data", "/nonexistent/cellsymphony-data"])
        .output()
        .expect("binary runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("fetch_data.sh"), "error should say how to get the data: {err}");
}

#[test]
fn pair_writes_pairs_and_signature_and_refuses_bad_states() {
    let out_dir = common::scratch("pair");
    let out = cli()
        .args(["pair", "--control", "Epithelial", "--target", "Malignant", "--engine", "cpu", "--out"])
        .arg(out_dir.as_os_str())
        .output()
        .expect("binary runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pair failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("converged"), "{text}");
    let pairs = std::fs::read_to_string(out_dir.join("pairs.csv")).expect("pairs.csv");
    assert!(pairs.starts_with("ctrl_id,tgt_id,state_a,state_b,cell_type,spatial_distance_um,match_score"));
    assert!(pairs.lines().count() > 50, "one pair per control cell");
    assert!(std::fs::read_to_string(out_dir.join("signature.csv")).expect("signature.csv").contains(",up,"));

    // Different lineages are refused, as are states with fewer than θ_min cells.
    for (control, target, expect) in [("Epithelial", "Fibroblasts", "lineage"), ("CD4Tconv/Treg", "CD8T/CD8Tex", "50")] {
        let out = cli().args(["pair", "--control", control, "--target", target, "--engine", "cpu", "--out"]).arg(out_dir.as_os_str()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{control}→{target}: {err}");
        assert!(err.contains(expect), "{control}→{target}: {err}");
    }

    // The same state on both sides, and a transport that cannot converge: errors, nothing
    // written; with --allow-unconverged the pairs are written flagged.
    let out = cli().args(["pair", "--control", "Malignant", "--target", "Malignant", "--engine", "cpu", "--out"]).arg(out_dir.as_os_str()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("both `Malignant`"), "{err}");
    let stuck = common::scratch("pair-stuck");
    let args = ["pair", "--control", "Epithelial", "--target", "Malignant", "--engine", "cpu", "--epsilon", "1e-6", "--max-iterations", "5", "--out"];
    let out = cli().args(args).arg(stuck.as_os_str()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("did not converge") && err.contains("--allow-unconverged"), "{err}");
    assert!(!stuck.join("pairs.csv").exists(), "no pairs may be written for an unconverged transport");
    let out = cli().args(args).arg(stuck.as_os_str()).arg("--allow-unconverged").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let flagged = std::fs::read_to_string(stuck.join("pairs.csv")).unwrap();
    assert!(flagged.lines().skip(1).all(|l| l.ends_with(",false")), "{}", &flagged[..200.min(flagged.len())]);
}

#[test]
fn inspect_reads_the_crop_and_rejects_an_unknown_folder() {
    let data = common::crop_files();
    let crop = data.transcripts.parent().unwrap();
    let out = cli().args(["inspect", "--read"]).arg(crop).output().expect("binary runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("aggregated from transcripts_small.csv"), "{text}");
    assert!(text.contains("1135 cells × 313 genes"), "{text}");

    let dir = common::scratch("cli-inspect");
    std::fs::write(dir.join("notes.txt"), "x").unwrap();
    let out = cli().arg("inspect").arg(dir.as_os_str()).output().expect("binary runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("notes.txt") && err.contains("cell_feature_matrix.h5"), "{err}");
}

#[test]
fn benchmark_on_pbmc68k_reduced_uses_the_expert_labels() {
    let pbmc = common::scanpy_files();
    let out = common::scratch("pbmc");
    let run = cli()
        .args(["benchmark", "--peers", "none", "--models", "gene-only", "--epochs", "2", "--layers", "1", "--h5ad"])
        .arg(&pbmc.pbmc68k_reduced)
        .arg("--out")
        .arg(out.as_os_str())
        .output()
        .expect("binary runs");
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(text.contains("CD19+ B") && text.contains("LogReg"), "{text}");
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("obs['bulk_labels']"), "{summary}");
    // Spatial models need positions the file does not have: a clear error, no panic.
    let bad = cli()
        .args(["benchmark", "--peers", "none", "--models", "spatial", "--epochs", "1", "--h5ad"])
        .arg(&pbmc.pbmc68k_reduced)
        .arg("--out")
        .arg(out.as_os_str())
        .output()
        .expect("binary runs");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{err}");
    assert!(err.contains("gene-only") && !err.contains("panicked"), "{err}");
}

/// `benchmark --folds 2`: both recipes on identical folds beside LogReg, mean ± sd rows, pooled
/// per-class table, fold lists whose test sets partition the labelled cells; a spatial model
/// runs on spatial blocks, with LogReg on the same folds.
#[test]
fn benchmark_folds_report_mean_and_sd_per_model_and_recipe() {
    let pbmc = common::scanpy_files();
    let out = common::scratch("folds");
    // The python peers on the identical folds (skipped loudly only where python may be missing).
    let peers = common::python_or_skip("benchmark --peers", "sklearn,celltypist", "bash scripts/setup.sh installs them");
    let run = cli()
        .args(["benchmark", "--peers", if peers { "logreg,celltypist" } else { "none" }])
        .args(["--models", "gene-only", "--folds", "2", "--recipes", "default,paper", "--epochs", "2", "--layers", "1", "--h5ad"])
        .arg(&pbmc.pbmc68k_reduced)
        .arg("--out")
        .arg(out.as_os_str())
        .output()
        .expect("binary runs");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("val macro-F1") && stdout.contains("fold 2/2"), "{stdout}");
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    let row = |title: &str, recipe: &str| {
        summary
            .lines()
            .find(|l| l.starts_with(&format!("| {title}")) && l.contains(&format!("| {recipe} |")))
            .unwrap_or_else(|| panic!("no {title} / {recipe} row in\n{summary}"))
            .to_string()
    };
    let titles: &[(&str, &str)] = if peers {
        &[("LogReg", "–"), ("sklearn LogReg", "–"), ("CellTypist", "–"), ("Gene-only", "default"), ("Gene-only", "paper")]
    } else {
        &[("LogReg", "–"), ("Gene-only", "default"), ("Gene-only", "paper")]
    };
    for &(title, recipe) in titles {
        let r = row(title, recipe);
        assert!(r.contains("| random |") && r.contains("| 2 |"), "{r}");
        assert_eq!(r.matches(" ± ").count(), 2, "macro-F1 and accuracy mean ± sd: {r}");
    }
    assert!(out.join("per_class.md").exists() && out.join("confusion_gene_only_paper.png").exists());
    let folds: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("folds_random.json")).unwrap()).unwrap();
    let folds = folds.as_array().unwrap();
    assert_eq!(folds.len(), 2);
    let mut tested: Vec<String> = folds.iter().flat_map(|f| f["test"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string())).collect();
    let n = tested.len();
    tested.sort();
    tested.dedup();
    assert_eq!(tested.len(), n, "a cell is tested in two folds");
    for f in folds {
        let test: std::collections::HashSet<&str> = f["test"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(f["val"].as_array().unwrap().iter().all(|v| !test.contains(v.as_str().unwrap())), "validation cell in the test set");
        assert!(!f["val"].as_array().unwrap().is_empty());
    }

    // A model that reads centroids: spatial blocks, LogReg on the same folds.
    let out = common::scratch("folds-spatial");
    let run = cli()
        .args(["benchmark", "--peers", "none", "--models", "spatial", "--folds", "2", "--epochs", "1", "--layers", "1", "--d-model", "16", "--out"])
        .arg(out.as_os_str())
        .output()
        .expect("binary runs");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    for title in ["LogReg", "Spatial"] {
        let r = summary.lines().find(|l| l.starts_with(&format!("| {title}"))).unwrap_or_else(|| panic!("{title}: {summary}"));
        assert!(r.contains("| spatial-blocks |") && r.contains(" ± "), "{r}");
    }
    assert!(out.join("spatial").join("engine").join("model.int8.safetensors").exists(), "fold-0 engine export");
}

/// Predicted class column of a `classify --out` CSV.
fn predicted(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().skip(1).map(|l| l.split(',').nth(3).unwrap_or_default().to_string()).collect()
}

/// The input contract on data that is not counts: pbmc68k_reduced's `X` is scaled (negative
/// values), so a model trained on it must be fed `X` as stored. The exported file records
/// `as_stored`; burn, the CPU engine and the WGSL engine then classify the same `X` with the
/// same classes, and the held-out evaluation through the file equals the benchmark's own.
#[test]
fn a_model_trained_on_scaled_x_is_fed_x_as_stored_by_every_engine() {
    let pbmc = common::scanpy_files();
    let out = common::scratch("scaled");
    // `--standardise off`: the as-stored contract itself (`auto` would standardise this input;
    // that path is checked by `standardise_fits_on_the_training_cells_and_the_file_applies_it`).
    gene_only_benchmark(&pbmc.pbmc68k_reduced, &out, &["--epochs", "3", "--layers", "1", "--lr", "1e-3", "--standardise", "off"]);
    let engine_dir = out.join("gene_only").join("engine");
    let (fp32, int8) = (engine_dir.join("model.safetensors"), engine_dir.join("model.int8.safetensors"));
    let meta = cellsymphony::engine::EngineModel::load(&fp32).expect("fp32 file loads").meta;
    assert_eq!(meta.normalisation, cellsymphony::engine::Normalisation::as_stored(), "the file must record X as stored");

    // Held-out evaluation through the file (burn, fp32) = the benchmark's held-out report.
    assert_file_reproduces_held_out_macro_f1(&out, &pbmc.pbmc68k_reduced, &fp32);

    // Every cell through every engine.
    let classify = |model: &std::path::Path, engine: &str| -> Vec<String> {
        let path = out.join(format!("pred_{engine}_{}.csv", model.file_stem().unwrap().to_string_lossy()));
        let run = cli()
            .args(["classify", "--engine", engine, "--anndata"])
            .arg(&pbmc.pbmc68k_reduced)
            .arg("--model")
            .arg(model)
            .arg("--out")
            .arg(&path)
            .output()
            .expect("binary runs");
        assert!(run.status.success(), "{engine}: {}", String::from_utf8_lossy(&run.stderr));
        predicted(&path)
    };
    let burn = classify(&fp32, "burn");
    let cpu = classify(&fp32, "cpu");
    assert_eq!(burn.len(), 700, "pbmc68k_reduced has 700 cells");
    assert_eq!(burn, cpu, "burn and the CPU engine classify X differently");
    let cpu8 = classify(&int8, "cpu");
    let gpu8 = classify(&int8, "gpu");
    assert_eq!(cpu8, gpu8, "the CPU and WGSL engines classify X differently");
    let same = burn.iter().zip(&cpu8).filter(|(a, b)| a == b).count();
    assert!(same as f64 >= 0.99 * burn.len() as f64, "fp32 vs int8: {same}/{} same class", burn.len());
}

/// `benchmark --peers none --models gene-only FLAGS --h5ad H5AD --out OUT`, which must succeed.
fn gene_only_benchmark(h5ad: &std::path::Path, out: &std::path::Path, flags: &[&str]) {
    let run = cli()
        .args(["benchmark", "--peers", "none", "--models", "gene-only"])
        .args(flags)
        .arg("--h5ad")
        .arg(h5ad)
        .arg("--out")
        .arg(out)
        .output()
        .expect("binary runs");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
}

/// `eval --engine burn` of the benchmark's exported fp32 file on `h5ad` gives the held-out
/// (test-cell) macro-F1 the benchmark in `out` reported for the gene-only model.
fn assert_file_reproduces_held_out_macro_f1(out: &std::path::Path, h5ad: &std::path::Path, fp32: &std::path::Path) {
    let csv = out.join("eval_burn.csv");
    let eval = cli()
        .args(["eval", "--engine", "burn", "--anndata"])
        .arg(h5ad)
        .arg("--model")
        .arg(fp32)
        .arg("--csv")
        .arg(&csv)
        .output()
        .expect("binary runs");
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let line = std::fs::read_to_string(&csv).unwrap().lines().find(|l| l.starts_with("macro_avg")).expect("macro row").to_string();
    let evaluated: f64 = line.split(',').nth(3).unwrap().parse().unwrap();
    let bench: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("benchmark.json")).unwrap()).unwrap();
    let trained = bench["result"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "gene_only")
        .map(|r| r["report"]["macro_f1"].as_f64().unwrap())
        .unwrap();
    assert!((evaluated - trained).abs() < 1e-4, "held-out macro-F1 through the file {evaluated} vs at training {trained}");
}

/// `benchmark --standardise`: the exported file records a per-gene standardisation whose means
/// are those of the exported fold's training cells only (not of all cells), and evaluation
/// through the file, which applies it, reproduces the benchmark's held-out macro-F1.
#[test]
fn standardise_fits_on_the_training_cells_and_the_file_applies_it() {
    let pbmc = common::scanpy_files();
    let out = common::scratch("standardise");
    gene_only_benchmark(&pbmc.pbmc68k_reduced, &out, &["--epochs", "2", "--layers", "1", "--standardise"]);
    assert!(std::fs::read_to_string(out.join("summary.md")).unwrap().contains("--standardise"));
    let fp32 = out.join("gene_only").join("engine").join("model.safetensors");
    let meta = cellsymphony::engine::EngineModel::load(&fp32).expect("fp32 file loads").meta;
    let sd = meta.normalisation.standardisation.expect("the file must record the standardisation");

    let crop = cellsymphony::train::dataset::prepare_h5ad(&pbmc.pbmc68k_reduced, "bulk_labels", &Default::default()).unwrap();
    let g = crop.table.n_genes();
    let folds: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("folds_random.json")).unwrap()).unwrap();
    let train: Vec<usize> = folds[0]["train"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| crop.table.cell_ids.iter().position(|c| c == id.as_str().unwrap()).expect("fold ids are cell ids"))
        .collect();
    let mean_over = |rows: &mut dyn Iterator<Item = usize>, n: usize| -> Vec<f64> {
        let mut m = vec![0.0f64; g];
        for i in rows {
            for (a, &v) in m.iter_mut().zip(&crop.x_norm[i * g..(i + 1) * g]) {
                *a += v as f64 / n as f64;
            }
        }
        m
    };
    let train_mean = mean_over(&mut train.iter().copied(), train.len());
    let all_mean = mean_over(&mut (0..crop.table.n_cells()), crop.table.n_cells());
    let gap = |m: &[f64]| m.iter().zip(&sd.mean).map(|(a, &b)| (a - b as f64).abs()).fold(0.0, f64::max);
    assert_eq!(sd.mean.len(), g);
    assert!(gap(&train_mean) < 1e-4, "means differ from the training cells' by {}", gap(&train_mean));
    assert!(gap(&all_mean) > 1e-3, "the means look fitted on all cells, test cells included");
    assert_file_reproduces_held_out_macro_f1(&out, &pbmc.pbmc68k_reduced, &fp32);
}

/// Training flags that used to do nothing silently now stop before any epoch runs.
#[test]
fn resume_and_output_mistakes_stop_before_training() {
    let scratch = common::scratch("cli-resume");
    let missing = scratch.join("no-such-run");
    let run = cli()
        .args(["benchmark", "--peers", "none", "--models", "gene-only", "--epochs", "1", "--layers", "1", "--resume"])
        .arg(&missing)
        .arg("--out")
        .arg(scratch.join("out"))
        .output()
        .expect("binary runs");
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("no-such-run") && err.contains("--resume"), "{err}");
    assert!(!String::from_utf8_lossy(&run.stdout).contains("epoch"), "no epoch may run");

    let run = cli()
        .args(["train", "--epochs", "1", "--layers", "1", "--resume"])
        .arg(&missing)
        .arg("--out")
        .arg(scratch.join("train"))
        .output()
        .expect("binary runs");
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("no-such-run"), "{err}");

    // An output folder that cannot be written fails before training, naming it.
    let blocked = scratch.join("a-file");
    std::fs::write(&blocked, "x").unwrap();
    let run = cli()
        .args(["train", "--epochs", "1", "--layers", "1", "--out"])
        .arg(blocked.join("model"))
        .output()
        .expect("binary runs");
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("a-file"), "{err}");
    assert!(!String::from_utf8_lossy(&run.stdout).contains("epoch "), "no epoch may run");
}

/// A Xenium-style bundle (MEX matrix + cells.csv.gz) of the crop's first `n` cells, with
/// every count set to zero when `zero`, and a small random model file over `model_genes`.
fn zero_bundle_and_model(name: &str, n: usize, model_genes: Vec<String>, zero: bool) -> (common::Scratch, std::path::PathBuf, std::path::PathBuf) {
    use cellsymphony::data::{write_cells_csv, write_mex_dir, CellTable};
    use cellsymphony::engine::{ClassifierConfig, EngineModel};
    let crop = common::crop_cells();
    let g = crop.n_genes();
    let table = CellTable {
        cell_ids: crop.cell_ids[..n].to_vec(),
        genes: crop.genes.clone(),
        counts: if zero { vec![0.0; n * g] } else { crop.counts[..n * g].to_vec() },
        centroids_um: crop.centroids_um[..n].to_vec(),
        nucleus_centroids_um: crop.nucleus_centroids_um[..n].to_vec(),
    };
    let dir = common::scratch(name);
    let bundle = dir.join("bundle");
    write_mex_dir(&table, &bundle.join("cell_feature_matrix"), false).unwrap();
    write_cells_csv(&table, &bundle.join("cells.csv.gz"), true).unwrap();
    let config = ClassifierConfig { n_layers: 1, d_model: 16, n_heads: 2, d_ff: 32, ..ClassifierConfig::new(model_genes.len(), 4) };
    let model = EngineModel::random_for_tests(config, model_genes, common::names("class", 4), 5);
    let path = dir.join("model.safetensors");
    model.save_atomic(&path).unwrap();
    (dir, bundle, path)
}

/// `cellsymphony classify --engine cpu` of a Xenium `bundle` with `model`, predictions to `out`.
fn classify_bundle_on_cpu(bundle: &std::path::Path, model: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    cli()
        .args(["classify", "--engine", "cpu", "--data"])
        .arg(common::data_dir())
        .arg("--bundle")
        .arg(bundle)
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(out)
        .output()
        .expect("binary runs")
}

/// Issue 13, point 2: a bundle whose counts are all zero is classified with no class for any
/// cell ("unclassified: no counts", empty confidence), exit 0 with a warning giving the count.
#[test]
fn classify_leaves_cells_without_counts_unclassified() {
    let n = 40;
    let (dir, bundle, model) = zero_bundle_and_model("cli-zero", n, common::crop_cells().genes.clone(), true);
    let out_csv = dir.join("pred.csv");
    let run = classify_bundle_on_cpu(&bundle, &model, &out_csv);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    assert!(err.contains(&format!("warning: {n} of {n} cells have no counts")), "{err}");
    let csv = std::fs::read_to_string(&out_csv).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), n);
    for row in rows {
        let cols: Vec<&str> = row.split(',').collect();
        assert_eq!((cols[3], cols[4]), ("unclassified: no counts", ""), "{row}");
    }
}

/// Issue 13, point 7: a panel sharing no genes with the model is blamed on the data vs the
/// model (both named, with genes of each), before the cells are labelled against the reference.
#[test]
fn classify_blames_a_panel_model_mismatch_on_both_files() {
    let (_dir, bundle, model) = zero_bundle_and_model("cli-panel", 20, common::names("NOTAGENE", 12), true);
    let run = classify_bundle_on_cpu(&bundle, &model, &bundle.join("pred.csv"));
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    let first_gene = &common::crop_cells().genes[0];
    for part in [&bundle.display().to_string(), &model.display().to_string(), "shares 0 of the 12 genes", "NOTAGENE0", first_gene.as_str()] {
        assert!(err.contains(part), "error lacks {part:?}: {err}");
    }
    assert!(!err.contains("reference"), "the reference is not the problem: {err}");
    assert!(!bundle.join("pred.csv").exists());
}

/// Issue 17, point 3: `classify --xenium-explorer` writes Xenium Explorer's cell-groups CSV
/// (`cell_id,group`, the bundle's ids in the predictions' order, one group per class) and the
/// confidence-thresholded grouping beside it; both agree with predictions.csv. The threshold is
/// the median confidence of a first run, so both sides of it are populated.
#[test]
fn classify_writes_xenium_explorer_cell_groups() {
    let n = 60;
    let (dir, bundle, model) = zero_bundle_and_model("cli-xe", n, common::crop_cells().genes.clone(), false);
    let out_csv = dir.join("pred.csv");
    let read_pred = || -> Vec<Vec<String>> {
        let mut r = csv::Reader::from_path(&out_csv).unwrap();
        r.records().map(|row| row.unwrap().iter().map(str::to_string).collect()).collect()
    };
    let first = classify_bundle_on_cpu(&bundle, &model, &out_csv);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let mut conf: Vec<f32> = read_pred().iter().map(|r| r[4].parse().unwrap()).collect();
    conf.sort_by(f32::total_cmp);
    let t = format!("{:.3}", conf[n / 2]);
    let groups = dir.join("explorer").join("groups.csv");
    let run = cli()
        .args(["classify", "--engine", "cpu", "--data"])
        .arg(common::data_dir())
        .args(["--bundle".as_ref(), bundle.as_os_str(), "--model".as_ref(), model.as_os_str(), "--out".as_ref(), out_csv.as_os_str()])
        .args(["--xenium-explorer".as_ref(), groups.as_os_str(), "--xenium-explorer-min-confidence".as_ref(), t.as_ref()])
        .output()
        .expect("binary runs");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let rows = |p: &std::path::Path| -> Vec<Vec<String>> {
        let mut r = csv::Reader::from_path(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>(), ["cell_id", "group"], "{}", p.display());
        r.records().map(|row| row.unwrap().iter().map(str::to_string).collect()).collect()
    };
    let pred = read_pred();
    let by_class = rows(&groups);
    let confident = rows(&dir.join("explorer").join("groups_confident.csv"));
    let ids: Vec<&str> = pred.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids, common::crop_cells().cell_ids[..n].iter().map(String::as_str).collect::<Vec<_>>(), "predictions keep the bundle's ids");
    for file in [&by_class, &confident] {
        assert_eq!(file.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), ids, "ids as the bundle writes them, in order");
    }
    let count = |v: Vec<&str>| v.into_iter().fold(std::collections::BTreeMap::<String, usize>::new(), |mut m, g| {
        *m.entry(g.to_string()).or_default() += 1;
        m
    });
    assert_eq!(count(by_class.iter().map(|r| r[1].as_str()).collect()), count(pred.iter().map(|r| r[3].as_str()).collect()));
    // Per cell: the class when confident, else the low-confidence group (the CSV rounds the
    // confidence to 4 decimals, so cells within 1e-4 of the threshold are not judged).
    let (t, low) = (t.parse::<f32>().unwrap(), format!("low confidence (< {})", t.parse::<f32>().unwrap()));
    let mut n_low = 0;
    for (p, g) in pred.iter().zip(&confident) {
        let c: f32 = p[4].parse().unwrap();
        if (c - t).abs() > 1e-4 {
            assert_eq!(g[1], if c >= t { p[3].as_str() } else { low.as_str() }, "{p:?}");
        }
        n_low += usize::from(g[1] == low);
    }
    assert!(n_low > 0 && n_low < n, "the median splits the cells: {n_low} of {n} low");
}

/// Issue 15, point 4 natively: `detect-nuclei --image TIFF --model` classifies every detected
/// nucleus of a bare image (no transcripts) with an image-only model — the same classes with
/// the CPU engine and burn on the fp32 file — and refuses a gene model before reading the image,
/// naming what to use instead.
#[test]
fn detect_nuclei_classifies_a_bare_tiff_with_an_image_only_model_only() {
    use cellsymphony::engine::{Architecture, ClassifierConfig, EngineModel, MorphologyTokenConfig, TokenSources};
    let dir = common::scratch("cli-image-only");
    let morphology = MorphologyTokenConfig { image_size: 16, vit_patch: 4, width: 16, n_heads: 2, d_ff: 32, n_layers: 1, k_nearest: 4, um_per_px: 0.75 };
    let config = ClassifierConfig { d_model: 16, n_heads: 2, d_ff: 32, n_layers: 0, ..ClassifierConfig::new(0, 3) }
        .for_architecture(Architecture::ImageOnly, &TokenSources { morphology, ..TokenSources::default() });
    let model = common::random_model(config, 9);
    assert_eq!(model.meta.architecture, "image_only");
    let path = dir.join("image_only.safetensors");
    model.save_atomic(&path).unwrap();
    let tiff = common::crop_files().morphology;
    let run = |model: &std::path::Path, engine: &str, out: &str| {
        cli()
            .args(["detect-nuclei", "--um-per-px", "0.2125", "--engine", engine, "--image"])
            .arg(&tiff)
            .arg("--model")
            .arg(model)
            .arg("--out")
            .arg(dir.join("nuclei.csv"))
            .arg("--predictions")
            .arg(dir.join(out))
            .output()
            .expect("binary runs")
    };
    let mut classes = Vec::new();
    for engine in ["cpu", "burn"] {
        let out = run(&path, engine, &format!("{engine}.csv"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{engine}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("classified") && text.contains("nuclei"), "{text}");
        classes.push(predicted(&dir.join(format!("{engine}.csv"))));
    }
    let nuclei = std::fs::read_to_string(dir.join("nuclei.csv")).unwrap().lines().count() - 1;
    assert!(nuclei > 500, "{nuclei} nuclei detected on the crop");
    assert_eq!(classes[0].len(), nuclei, "one prediction per detected nucleus");
    assert!(classes[0].iter().all(|c| ["c0", "c1", "c2"].contains(&c.as_str())), "{:?}", &classes[0][..5]);
    assert_eq!(classes[0], classes[1], "CPU engine and burn give the same classes");
    // A gene model has nothing to read in a bare image: a clear error, no output.
    let gene = common::random_model(ClassifierConfig { n_layers: 1, d_model: 16, n_heads: 2, d_ff: 32, ..ClassifierConfig::new(5, 3) }, 3);
    let gene_path = dir.join("gene_only.safetensors");
    EngineModel::save_atomic(&gene, &gene_path).unwrap();
    let out = run(&gene_path, "cpu", "gene.csv");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("gene_only") && err.contains("image-only") && err.contains("no transcripts"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!dir.join("gene.csv").exists());
}

/// `--standardise auto` (the default) resolves by the input's kind without training anything:
/// on for values not derived from counts (`as_stored`, `arcsinh:*`), off for `log1p_cp10k`
/// counts (the crop's input, so its figures hold); `on` / `off` override it; the flag parses
/// `auto|on|off`, alone means `on`, and anything else is a clap error naming the choices.
#[test]
fn standardise_auto_resolves_by_normalisation_kind() {
    use cellsymphony::engine::Normalisation;
    use cellsymphony::train::benchmark::{BenchmarkOptions, Standardise};
    assert_eq!(BenchmarkOptions::default().standardise, Standardise::Auto);
    for (norm, auto) in [
        (Normalisation::log1p_cp10k(), false),
        (Normalisation::log1p_with_target_sum(1e6), false),
        (Normalisation::as_stored(), true),
        (Normalisation::arcsinh(5.0), true),
        (Normalisation::arcsinh(150.0), true),
    ] {
        let d = Standardise::Auto.resolve(&norm);
        assert_eq!(d.on, auto, "auto on {}", norm.kind());
        assert!(d.rule.contains("auto") && d.rule.contains(norm.kind()), "rule names the flag and kind: {}", d.rule);
        // A normalisation already carrying a standardisation resolves by its transform.
        assert_eq!(Standardise::Auto.resolve(&norm.clone().with_standardisation(vec![0.0], vec![1.0])).on, auto);
        assert!(Standardise::On.resolve(&norm).on);
        assert!(!Standardise::Off.resolve(&norm).on);
    }
    let help = cli().args(["benchmark", "--help"]).output().expect("binary runs");
    assert!(String::from_utf8_lossy(&help.stdout).contains("auto|on|off"));
    let bad = cli().args(["benchmark", "--standardise", "maybe"]).output().expect("binary runs");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("maybe") && err.contains("auto") && err.contains("off"), "{err}");
}

/// `--tune`'s search on one real fold plan (stratified 5 folds of 300 synthetic labels): every
/// index a trial sees is a training-side index of the fold (train or validation, never test;
/// the split handed to the trainer has no test cells), the validation scores the trainer
/// returns decide, and the chosen setting is the argmax of the recorded trials. The trainer is
/// a scripted stand-in (no burn), so the test checks the search's index handling and choice.
#[test]
fn tune_search_sees_only_training_cells_and_keeps_the_argmax() {
    use cellsymphony::train::tune::{tune_on_training_cells, TuneTrial};
    use cellsymphony::train::{make_folds, ClassWeighting, FoldPlan, Recipe, SplitKind};
    use std::collections::HashSet;
    let labels: Vec<u32> = (0..300u32).map(|i| (i * 7 + i / 13) % 4).collect();
    let opt: Vec<Option<u32>> = labels.iter().map(|&l| Some(l)).collect();
    let plan = FoldPlan { kind: SplitKind::Random, k: 5, test_fraction: 0.2, val_fraction: 0.15, block_um: 100.0, centroids: None, seed: 7 };
    let folds = make_folds(&opt, &plan).expect("folds");
    let base = Recipe::Default.config(42);
    // Scripted validation scores: 3e-3 wins the lr stage, `none` the weighting stage, and the
    // other smoothing (0) loses, so the choice is (3e-3, none, 0.1).
    let score = |lr: f64, w: ClassWeighting, ls: f32| {
        let mut s = 0.5;
        if (lr - 3e-3).abs() < 1e-12 {
            s += 0.2;
        } else if (lr - 1e-3 / 3.0).abs() < 1e-12 {
            s += 0.1;
        }
        if w == ClassWeighting::None {
            s += 0.05;
        }
        if ls == 0.0 {
            s -= 0.3;
        }
        s
    };
    for fold in &folds {
        let test: HashSet<usize> = fold.test.iter().copied().collect();
        let training_side: HashSet<usize> = fold.train.iter().chain(&fold.val).copied().collect();
        let mut touched: HashSet<usize> = HashSet::new();
        let mut budgets = Vec::new();
        let (chosen, trials) = tune_on_training_cells(&base, &labels, 4, &fold.train, &fold.val, &mut |c, split| {
            assert!(split.test.is_empty(), "a tune trial was given test cells");
            touched.extend(split.train.iter().chain(split.val).chain(split.test));
            budgets.push((c.epochs, c.patience));
            Ok((score(c.learning_rate, c.class_weighting, c.label_smoothing), 3))
        })
        .expect("search runs");
        assert!(touched.is_disjoint(&test), "the search touched test cells");
        assert_eq!(touched, training_side, "the search should use the fold's training and validation cells");
        assert_eq!(trials.len(), 5, "default recipe: 3 lr + 1 weighting + 1 smoothing");
        assert!(budgets.iter().all(|&b| b == (20, Some(5))), "short runs: {budgets:?}");
        let best = trials.iter().map(|t| t.val_macro_f1).fold(f64::MIN, f64::max);
        let picked: Vec<&TuneTrial> = trials.iter().filter(|t| t.chosen).collect();
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].val_macro_f1, best, "chosen is not the argmax: {trials:?}");
        assert_eq!((chosen.learning_rate, chosen.class_weighting, chosen.label_smoothing), (3e-3, ClassWeighting::None, 0.1));
        assert_eq!((chosen.epochs, chosen.patience), (base.epochs, base.patience), "the full run keeps the recipe's budget");
    }
    // Ties keep the recipe's own settings; no validation cells is an error naming the flag.
    let f = &folds[0];
    let (tied, _) = tune_on_training_cells(&base, &labels, 4, &f.train, &f.val, &mut |_, _| Ok((0.7, 1))).unwrap();
    assert_eq!((tied.learning_rate, tied.class_weighting, tied.label_smoothing), (base.learning_rate, base.class_weighting, base.label_smoothing));
    let err = tune_on_training_cells(&base, &labels, 4, &f.train, &[], &mut |_, _| Ok((0.7, 1))).unwrap_err().to_string();
    assert!(err.contains("--val-fraction"), "{err}");
}

/// `benchmark --recipes default,default+tune`: the tuned row sits beside the untuned one on the
/// same folds; summary.md says `--tune` was on and lists the choice per fold; benchmark.json's
/// trials per fold have exactly one chosen, the best validation score; stderr shows the search.
#[test]
fn tune_flag_round_trips_into_summary_and_json() {
    let pbmc = common::scanpy_files();
    let out = common::scratch("tune");
    let run = cli()
        .args(["benchmark", "--peers", "none", "--models", "gene-only", "--folds", "2", "--recipes", "default,default+tune"])
        .args(["--epochs", "2", "--layers", "1", "--d-model", "16", "--h5ad"])
        .arg(&pbmc.pbmc68k_reduced)
        .arg("--out")
        .arg(out.as_os_str())
        .output()
        .expect("binary runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("tune gene_only default+tune fold 2/2 trial 5: lr") && stderr.contains("chose lr"), "{stderr}");
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("Recipe **default+tune**") && summary.contains("**`--tune` on**"), "{summary}");
    assert!(summary.lines().any(|l| l.starts_with("| Gene-only") && l.contains("| default+tune |") && l.contains(" ± ")), "{summary}");
    assert!(summary.lines().any(|l| l.starts_with("| Gene-only") && l.contains("| default |")), "untuned row beside it: {summary}");
    let choices: Vec<&str> = summary.lines().skip_while(|l| !l.contains("`--tune` choices")).filter(|l| l.starts_with("| Gene-only")).collect();
    assert_eq!(choices.len(), 2, "one choice row per fold: {summary}");
    let bench: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("benchmark.json")).unwrap()).unwrap();
    let rows = bench["result"]["results"].as_array().unwrap();
    let tuned = rows.iter().find(|r| r["recipe"] == "default+tune").expect("tuned row in benchmark.json");
    let untuned = rows.iter().find(|r| r["recipe"] == "default").expect("untuned row");
    assert!(untuned["folds"].as_array().unwrap().iter().all(|f| f["tune"].as_array().unwrap().is_empty()));
    for f in tuned["folds"].as_array().unwrap() {
        let trials = f["tune"].as_array().unwrap();
        assert_eq!(trials.len(), 5);
        let best = trials.iter().map(|t| t["val_macro_f1"].as_f64().unwrap()).fold(f64::MIN, f64::max);
        let chosen: Vec<_> = trials.iter().filter(|t| t["chosen"] == true).collect();
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0]["val_macro_f1"].as_f64().unwrap(), best);
        // The trained config is the chosen setting.
        assert_eq!(f["config"]["learning_rate"], chosen[0]["learning_rate"]);
        assert_eq!(f["config"]["class_weighting"], chosen[0]["class_weighting"]);
    }
}
