//! Python peers on the identical folds: scikit-learn `LogisticRegression`, `MLPClassifier`,
//! `HistGradientBoostingClassifier` and CellTypist, run by `scripts/peers.py` (embedded in the
//! library and written into the work folder, so it runs from any directory).
//!
//! [`run_python_peers`] writes the model input `x: [cells, features]` (and, for CellTypist,
//! log1p-CP10k expression `[cells, genes]` when the data are counts) as `.npy`, the labels and
//! folds as JSON, runs `python3 peers.py <work_dir>` (progress: one stderr line per peer and
//! fold) and reads each fold's test predictions back. Every peer selects its model on the
//! training cells of the fold only (early stopping on a validation split carved from them, or
//! fixed hyper-parameters); all are seeded. Nothing is downloaded: CellTypist is trained from
//! scratch with `celltypist.train`. Set `CELLSYMPHONY_PYTHON` to use another interpreter.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// The peers script, written into the work folder by [`run_python_peers`].
pub const PEERS_SCRIPT: &str = include_str!("../../scripts/peers.py");

/// Environment variable naming the python interpreter (default `python3`).
pub const PYTHON_ENV: &str = "CELLSYMPHONY_PYTHON";

/// One fold: cell indices (rows of [`PeerInput::x`]) to fit on and to predict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerFold {
    /// Training cells (the peer's own validation split, if any, is carved from these).
    pub train: Vec<usize>,
    /// Held-out cells to predict.
    pub test: Vec<usize>,
}

/// What the peers see.
#[derive(Debug, Clone, Copy)]
pub struct PeerInput<'a> {
    /// Model input `[cells, n_features]`, row-major: exactly what our models see.
    pub x: &'a [f32],
    /// Features per cell.
    pub n_features: usize,
    /// log1p-CP10k expression `[cells, genes]` for CellTypist when the data are counts; `None`
    /// makes CellTypist train on `x` with `check_expression=False` (noted in its results).
    pub counts_log1p_cp10k: Option<&'a [f32]>,
    /// Class index per cell `[cells]` (`< class_names.len()`); only cells named in the folds
    /// are used.
    pub labels: &'a [u32],
    /// Class names.
    pub class_names: &'a [String],
    /// Folds.
    pub folds: &'a [PeerFold],
    /// Seed of every peer's randomness (weight init, validation splits, shuffling).
    pub seed: u64,
}

/// A python peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Peer {
    /// `StandardScaler` + `LogisticRegression(C=1)` (multinomial, lbfgs): the same model as
    /// [`super::logistic`].
    SklearnLogReg,
    /// `StandardScaler` + `MLPClassifier((256, 128), alpha 1e-3, Adam lr 1e-3, batch 128)`,
    /// early stopping on 10 % of the training cells (patience 10, at most 200 epochs).
    SklearnMlp,
    /// `HistGradientBoostingClassifier(lr 0.1, ≤ 300 iterations, 31 leaves)`, early stopping
    /// on 10 % of the training cells (patience 10).
    HistGradientBoosting,
    /// CellTypist 1.7.1 `celltypist.train` (logistic regression, C = 1, its own scaling) on
    /// log1p-CP10k expression, `celltypist.annotate` (best match, no majority voting).
    CellTypist,
}

impl Peer {
    /// All four, in table order.
    pub const ALL: [Peer; 4] = [
        Peer::SklearnLogReg,
        Peer::SklearnMlp,
        Peer::HistGradientBoosting,
        Peer::CellTypist,
    ];

    /// The script's and the file system's name.
    pub fn key(self) -> &'static str {
        match self {
            Peer::SklearnLogReg => "logreg",
            Peer::SklearnMlp => "mlp",
            Peer::HistGradientBoosting => "hgb",
            Peer::CellTypist => "celltypist",
        }
    }

    /// Table title.
    pub fn title(self) -> &'static str {
        match self {
            Peer::SklearnLogReg => "sklearn LogReg",
            Peer::SklearnMlp => "sklearn MLP",
            Peer::HistGradientBoosting => "sklearn HistGB",
            Peer::CellTypist => "CellTypist",
        }
    }
}

/// One peer's predictions on one fold.
#[derive(Debug, Clone, Serialize)]
pub struct PeerFoldResult {
    /// The peer.
    pub peer: Peer,
    /// Fold index (into [`PeerInput::folds`]).
    pub fold: usize,
    /// Predicted class per test cell, in the order of the fold's `test`.
    pub test_predictions: Vec<u32>,
    /// Wall-clock seconds to fit and predict.
    pub fit_seconds: f64,
    /// What the peer was given when it differs from the default (e.g. CellTypist without
    /// counts); empty otherwise.
    pub note: String,
}

/// Errors of [`run_python_peers`].
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The python interpreter does not start.
    #[error("cannot run `{python}` for the python peers: {source}; install python3 (or set {PYTHON_ENV} to an interpreter) and run scripts/setup.sh")]
    NoPython {
        /// The interpreter tried.
        python: String,
        /// Why it did not start.
        source: std::io::Error,
    },
    /// A python module a peer needs is missing.
    #[error("python module `{module}` is missing for the python peers; install it with `{pip}` (scripts/setup.sh pins it)")]
    MissingModule {
        /// The module (`sklearn`, `celltypist`, `numpy`).
        module: String,
        /// The exact install command.
        pip: String,
    },
    /// The inputs are inconsistent.
    #[error("python peers input `{field}`: {problem}")]
    Input {
        /// The offending field of [`PeerInput`].
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The script failed.
    #[error("python peers script failed ({status}); its stderr above says why; inputs are in {work_dir}")]
    Script {
        /// Exit status.
        status: String,
        /// The work folder with the inputs.
        work_dir: PathBuf,
    },
    /// A result file is missing or malformed.
    #[error("python peers result {path}: {problem}")]
    Output {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Writing an input or reading a result failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PeerError + '_ {
    move |source| PeerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `[rows, cols]` f32 values as a version-1 `.npy` file.
fn write_npy_f32(path: &Path, values: &[f32], rows: usize, cols: usize) -> Result<(), PeerError> {
    std::fs::write(path, super::embeddings::npy_f32_bytes(values, rows, cols)).map_err(io_err(path))
}

fn check_input(input: &PeerInput<'_>) -> Result<usize, PeerError> {
    let bad = |field, problem: String| Err(PeerError::Input { field, problem });
    let n = input.labels.len();
    if input.n_features == 0 || input.x.len() != n * input.n_features {
        return bad(
            "x",
            format!(
                "has {} values; expected cells ({n}) × n_features ({})",
                input.x.len(),
                input.n_features
            ),
        );
    }
    if let Some(c) = input.counts_log1p_cp10k {
        if n == 0 || c.is_empty() || c.len() % n != 0 {
            return bad("counts_log1p_cp10k", format!("has {} values, not a multiple of {n} cells", c.len()));
        }
    }
    if let Some((i, &l)) = input
        .labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= input.class_names.len())
    {
        return bad(
            "labels",
            format!("cell {i} has class {l} but there are {} class names", input.class_names.len()),
        );
    }
    if input.folds.is_empty() {
        return bad("folds", "no folds given".into());
    }
    for (k, f) in input.folds.iter().enumerate() {
        if f.train.is_empty() || f.test.is_empty() {
            return bad("folds", format!("fold {k} has {} training and {} test cells; both must be non-empty", f.train.len(), f.test.len()));
        }
        if let Some(&i) = f.train.iter().chain(&f.test).find(|&&i| i >= n) {
            return bad("folds", format!("fold {k} names cell {i} but there are {n} cells"));
        }
    }
    Ok(n)
}

/// Run `peers` on every fold of `input` with python (`$CELLSYMPHONY_PYTHON` or `python3`),
/// using `work_dir` (created if needed) for the exchanged files. Results come fold-major per
/// peer: `peers[0]` fold 0, 1, …, then `peers[1]`, …
pub fn run_python_peers(
    input: &PeerInput<'_>,
    peers: &[Peer],
    work_dir: &Path,
) -> Result<Vec<PeerFoldResult>, PeerError> {
    let python = std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".into());
    run_python_peers_with(&python, None, input, peers, work_dir)
}

/// [`run_python_peers`] with the interpreter `python` (a command on `PATH` or a path) and, when
/// `threads` is given, `OMP_NUM_THREADS` / `OPENBLAS_NUM_THREADS` / `MKL_NUM_THREADS` set to it
/// (gradient boosting and BLAS otherwise use every core, which oversubscribes a shared machine).
pub fn run_python_peers_with(
    python: &str,
    threads: Option<usize>,
    input: &PeerInput<'_>,
    peers: &[Peer],
    work_dir: &Path,
) -> Result<Vec<PeerFoldResult>, PeerError> {
    let n = check_input(input)?;
    if peers.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(work_dir).map_err(io_err(work_dir))?;
    let results_dir = work_dir.join("results");
    if results_dir.exists() {
        std::fs::remove_dir_all(&results_dir).map_err(io_err(&results_dir))?;
    }
    let _ = std::fs::remove_file(work_dir.join("error.json"));
    write_npy_f32(&work_dir.join("x.npy"), input.x, n, input.n_features)?;
    if let Some(c) = input.counts_log1p_cp10k {
        write_npy_f32(&work_dir.join("counts.npy"), c, n, c.len() / n)?;
    }
    let spec = serde_json::json!({
        "peers": peers.iter().map(|p| p.key()).collect::<Vec<_>>(),
        "labels": input.labels,
        "class_names": input.class_names,
        "folds": input.folds,
        // Python's seeds must fit in 32 bits (numpy's RandomState).
        "seed": input.seed % (1u64 << 32),
        "has_counts": input.counts_log1p_cp10k.is_some(),
    });
    let spec_path = work_dir.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).map_err(io_err(&spec_path))?;
    let script = work_dir.join("peers.py");
    std::fs::write(&script, PEERS_SCRIPT).map_err(io_err(&script))?;

    let mut command = Command::new(python);
    if let Some(t) = threads {
        for var in ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"] {
            command.env(var, t.max(1).to_string());
        }
    }
    let status = command
        .arg(&script)
        .arg(work_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|source| PeerError::NoPython {
            python: python.to_string(),
            source,
        })?;
    if !status.success() {
        let err_path = work_dir.join("error.json");
        if let Ok(text) = std::fs::read_to_string(&err_path) {
            #[derive(Deserialize)]
            struct Missing {
                module: String,
                pip: String,
            }
            if let Ok(m) = serde_json::from_str::<Missing>(&text) {
                return Err(PeerError::MissingModule {
                    module: m.module,
                    pip: m.pip,
                });
            }
        }
        return Err(PeerError::Script {
            status: status.to_string(),
            work_dir: work_dir.to_path_buf(),
        });
    }

    #[derive(Deserialize)]
    struct FoldFile {
        predictions: Vec<i64>,
        fit_seconds: f64,
        #[serde(default)]
        note: String,
    }
    let mut out = Vec::with_capacity(peers.len() * input.folds.len());
    for &peer in peers {
        for (k, fold) in input.folds.iter().enumerate() {
            let path = results_dir.join(format!("{}_fold{k}.json", peer.key()));
            let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
            let f: FoldFile = serde_json::from_str(&text).map_err(|e| PeerError::Output {
                path: path.clone(),
                problem: e.to_string(),
            })?;
            if f.predictions.len() != fold.test.len() {
                return Err(PeerError::Output {
                    path,
                    problem: format!(
                        "{} predictions for {} test cells",
                        f.predictions.len(),
                        fold.test.len()
                    ),
                });
            }
            let k_classes = input.class_names.len() as i64;
            if let Some(&p) = f.predictions.iter().find(|&&p| p < 0 || p >= k_classes) {
                return Err(PeerError::Output {
                    path,
                    problem: format!("predicted class {p} is outside 0..{k_classes}"),
                });
            }
            out.push(PeerFoldResult {
                peer,
                fold: k,
                test_predictions: f.predictions.iter().map(|&p| p as u32).collect(),
                fit_seconds: f.fit_seconds,
                note: f.note,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inconsistent_inputs_are_refused_before_python_runs() {
        let names = vec!["a".to_string(), "b".to_string()];
        let folds = vec![PeerFold {
            train: vec![0, 1],
            test: vec![2],
        }];
        let x = vec![0.0f32; 6];
        let ok = PeerInput {
            x: &x,
            n_features: 2,
            counts_log1p_cp10k: None,
            labels: &[0, 1, 0],
            class_names: &names,
            folds: &folds,
            seed: 1,
        };
        assert_eq!(check_input(&ok).unwrap(), 3);
        let e = check_input(&PeerInput { n_features: 3, ..ok }).unwrap_err();
        assert!(matches!(e, PeerError::Input { field: "x", .. }), "{e}");
        let e = check_input(&PeerInput { labels: &[0, 2, 0], ..ok }).unwrap_err();
        assert!(e.to_string().contains("class 2"), "{e}");
        let bad = vec![PeerFold {
            train: vec![0],
            test: vec![5],
        }];
        let e = check_input(&PeerInput { folds: &bad, ..ok }).unwrap_err();
        assert!(e.to_string().contains("cell 5"), "{e}");
        let e = check_input(&PeerInput {
            counts_log1p_cp10k: Some(&[1.0; 4]),
            ..ok
        })
        .unwrap_err();
        assert!(matches!(e, PeerError::Input { field: "counts_log1p_cp10k", .. }), "{e}");
    }

    #[test]
    fn npy_header_is_aligned_and_readable_by_the_embedding_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let v: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        write_npy_f32(&path, &v, 3, 4).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let e = super::super::embeddings::parse_npy(&path, &bytes).unwrap();
        assert_eq!((e.rows, e.dim), (3, 4));
        assert_eq!(e.values, v);
    }
}
