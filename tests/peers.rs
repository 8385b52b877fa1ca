//! The python peers (scikit-learn LogReg / MLP / HistGB, CellTypist) on a small real set:
//! scanpy's pbmc68k_reduced (700 cells, expert `bulk_labels`, its 100 most variable genes),
//! 2 stratified folds, beside our own logistic regression on the same folds.
//!
//! Needs the data (`scripts/fetch_data.sh`) and python3 with scikit-learn 1.7.2 and celltypist
//! 1.7.1 (`scripts/setup.sh`); without them the test FAILS with the install line, or prints
//! SKIPPED with CELLSYMPHONY_ALLOW_NO_PYTHON=1.

mod common;

use cellsymphony::train::dataset::prepare_h5ad;
use cellsymphony::train::logistic::{LogisticOptions, LogisticRegression};
use cellsymphony::train::peers::{run_python_peers_with, Peer, PeerError, PeerFold, PeerInput};
use cellsymphony::train::{argmax_rows, ClassificationReport, LabelOptions};
use cellsymphony::util::rng::SplitMix64;

const HELP: &str = "python3 -m pip install \"scikit-learn==1.7.2\" \"celltypist==1.7.1\" (scripts/setup.sh)";

/// `k` stratified folds over the labelled cells (each class dealt round-robin after a seeded
/// shuffle).
fn stratified_folds(labels: &[Option<u32>], k: usize, seed: u64) -> Vec<PeerFold> {
    let n_classes = labels.iter().flatten().map(|&c| c as usize + 1).max().unwrap_or(0);
    let mut rng = SplitMix64::new(seed);
    let mut fold_of = vec![usize::MAX; labels.len()];
    for c in 0..n_classes as u32 {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == Some(c)).collect();
        rng.shuffle(&mut idx);
        for (j, i) in idx.into_iter().enumerate() {
            fold_of[i] = j % k;
        }
    }
    (0..k)
        .map(|f| PeerFold {
            train: (0..labels.len()).filter(|&i| fold_of[i] != usize::MAX && fold_of[i] != f).collect(),
            test: (0..labels.len()).filter(|&i| fold_of[i] == f).collect(),
        })
        .collect()
}

#[test]
fn python_peers_beat_chance_on_pbmc68k_folds_beside_our_logreg() {
    if !common::python_or_skip("python_peers_beat_chance_on_pbmc68k_folds", "numpy, sklearn, celltypist", HELP) {
        return;
    }
    let path = common::scanpy_files().pbmc68k_reduced;
    let data = prepare_h5ad(&path, "bulk_labels", &LabelOptions::default()).expect("pbmc68k_reduced");
    // The 100 genes of highest variance keep gradient boosting fast (~seconds per fold).
    let all = data.table.n_genes();
    let n = data.labels.len();
    let mut var: Vec<(f64, usize)> = (0..all)
        .map(|j| {
            let col = (0..n).map(|i| data.x_norm[i * all + j] as f64);
            let mean = col.clone().sum::<f64>() / n as f64;
            (col.map(|v| (v - mean).powi(2)).sum::<f64>(), j)
        })
        .collect();
    var.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let genes: Vec<usize> = var[..100].iter().map(|&(_, j)| j).collect();
    let x: Vec<f32> = (0..n).flat_map(|i| genes.iter().map(move |&j| (i, j))).map(|(i, j)| data.x_norm[i * all + j]).collect();
    let g = genes.len();
    let k = data.class_names.len();
    let labels: Vec<u32> = data.labels.iter().map(|l| l.unwrap_or(0)).collect();
    let folds = stratified_folds(&data.labels, 2, 7);
    let input = PeerInput {
        x: &x,
        n_features: g,
        counts_log1p_cp10k: None, // X is scaled, not counts: CellTypist runs on it as is
        labels: &labels,
        class_names: &data.class_names,
        folds: &folds,
        seed: 7,
    };
    let work = common::scratch("peers_pbmc");
    let t = std::time::Instant::now();
    let results = run_python_peers_with("python3", Some(1), &input, &Peer::ALL, work.path()).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("python peers: {:.1} s", t.elapsed().as_secs_f64());
    assert_eq!(results.len(), Peer::ALL.len() * folds.len());
    let chance = 1.0 / k as f64;
    let macro_f1 = |fold: &PeerFold, pred: &[u32]| {
        let truth: Vec<u32> = fold.test.iter().map(|&i| labels[i]).collect();
        ClassificationReport::new(&truth, pred, &data.class_names).macro_f1
    };
    let ours: f64 = folds
        .iter()
        .map(|f| {
            let lr = LogisticRegression::fit(&x, g, &labels, k, &f.train, &LogisticOptions::default());
            macro_f1(f, &argmax_rows(&lr.logits(&x, &f.test), k))
        })
        .sum::<f64>()
        / folds.len() as f64;
    eprintln!("our LogReg: mean macro-F1 {ours:.3} (chance {chance:.3})");
    for peer in Peer::ALL {
        let mut mean = 0.0;
        for r in results.iter().filter(|r| r.peer == peer) {
            let fold = &folds[r.fold];
            assert_eq!(r.test_predictions.len(), fold.test.len(), "{peer:?} fold {}", r.fold);
            assert!(r.test_predictions.iter().all(|&p| (p as usize) < k), "{peer:?}: class out of range");
            assert!(r.fit_seconds >= 0.0);
            mean += macro_f1(fold, &r.test_predictions) / folds.len() as f64;
        }
        eprintln!("{}: mean macro-F1 {mean:.3}", peer.title());
        assert!(mean > 0.4 && mean > 3.0 * chance, "{peer:?}: macro-F1 {mean:.3}, chance {chance:.3}");
    }
    let celltypist = results.iter().find(|r| r.peer == Peer::CellTypist).unwrap();
    assert!(celltypist.note.contains("check_expression=False"), "{}", celltypist.note);
    // Same seed, same folds: scikit-learn's peers are deterministic.
    let again = run_python_peers_with("python3", Some(1), &input, &[Peer::SklearnLogReg], &work.path().join("again")).unwrap();
    for (a, b) in again.iter().zip(results.iter().filter(|r| r.peer == Peer::SklearnLogReg)) {
        assert_eq!(a.test_predictions, b.test_predictions, "fold {}", a.fold);
    }
}

#[test]
fn a_missing_python_module_is_named_with_its_pip_line() {
    if !common::python_or_skip("a_missing_python_module_is_named", "json", "install python3") {
        return;
    }
    // `python3 -S` skips site-packages, so numpy cannot be imported.
    let work = common::scratch("peers_missing");
    let wrapper = work.path().join("python-no-site");
    std::fs::write(&wrapper, "#!/bin/sh\nexec python3 -S \"$@\"\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let names = vec!["a".to_string(), "b".to_string()];
    let folds = vec![PeerFold { train: vec![0, 1], test: vec![2, 3] }];
    let input = PeerInput {
        x: &[0.0, 1.0, 0.5, 0.2],
        n_features: 1,
        counts_log1p_cp10k: None,
        labels: &[0, 1, 0, 1],
        class_names: &names,
        folds: &folds,
        seed: 0,
    };
    let err = run_python_peers_with(wrapper.to_str().unwrap(), None, &input, &[Peer::SklearnMlp], &work.path().join("w")).unwrap_err();
    match &err {
        PeerError::MissingModule { module, pip } => {
            assert_eq!(module, "numpy");
            assert!(pip.starts_with("python3 -m pip install"), "{pip}");
        }
        other => panic!("expected MissingModule, got {other}"),
    }
    assert!(err.to_string().contains("pip install"), "{err}");
}
