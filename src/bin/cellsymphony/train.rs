//! `cellsymphony train`: the gene-only classifier through the one training loop (checkpoints, resume).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use cellsymphony::engine::{ClassifierConfig, EngineModel};
use cellsymphony::model::ClassifierOptions;
use cellsymphony::train::{self, export::export_fp32_and_int8, export::model_meta, stratified_split, CellInputs, CheckpointOptions, EpochStats, LabelledSplit, PreparedCrop, TrainProgress};

use crate::common::*;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub(crate) enum TrainBackend {
    /// burn ndarray on the CPU.
    Ndarray,
    /// burn wgpu (needs `--features wgpu-backend`).
    Wgpu,
    /// burn CUDA (needs `--features cuda` and an NVIDIA GPU).
    Cuda,
}

#[derive(Args, Clone)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Output folder for model.safetensors, model.int8.safetensors and checkpoint.bin.
    #[arg(long, default_value = "runs/gene_only")]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    pub(crate) training: TrainingFlags,
    /// Continue from <DIR>/checkpoint.bin (an earlier --out) up to --epochs.
    #[arg(long)]
    pub(crate) resume: Option<PathBuf>,
    /// burn backend.
    #[arg(long, value_enum, default_value_t = TrainBackend::Ndarray)]
    pub(crate) backend: TrainBackend,
    /// Feed the bundle's protein channels (XOA ≥ 4 "Protein Expression" features, needs
    /// --bundle) into the classifier beside the genes: `asinh(v / cofactor)` standardised on
    /// the training cells, appended to the gene input (README: "Protein channels as model input").
    #[arg(long)]
    pub(crate) protein: bool,
    /// The arcsinh cofactor of --protein.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) protein_cofactor: f64,
}

pub(crate) struct BarProgress {
    pub(crate) bar: ProgressBar,
    pub(crate) epochs: usize,
}

impl TrainProgress for BarProgress {
    fn batch(&mut self, epoch: usize, batch: usize, n_batches: usize, loss: f64) {
        if batch == 1 {
            self.bar.set_length(n_batches as u64);
            self.bar.set_position(0);
        }
        self.bar.set_message(format!("epoch {epoch}/{} loss {loss:.4}", self.epochs));
        self.bar.inc(1);
    }
    fn epoch(&mut self, s: &EpochStats) {
        let line = epoch_line(s, self.epochs);
        // The bar is hidden when stdout is not a terminal (CI, logs): print plainly then.
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

/// One line per epoch: train loss, learning rate, validation macro-F1 / accuracy.
pub(crate) fn epoch_line(s: &EpochStats, epochs: usize) -> String {
    let val = match (s.val_macro_f1, s.val_accuracy) {
        (Some(f), Some(a)) => format!("val macro-F1 {f:.3}  val accuracy {a:.3}"),
        _ => "no validation set".to_string(),
    };
    format!("epoch {:>3}/{epochs}  train loss {:.4}  lr {:.2e}  {val}  ({:.1} s)", s.epoch, s.train_loss, s.lr, s.seconds)
}

/// What training produced.
pub(crate) struct Trained {
    pub(crate) crop: PreparedCrop,
    pub(crate) test_idx: Vec<usize>,
    pub(crate) fp32: EngineModel,
    pub(crate) files: train::export::ExportedFiles,
    pub(crate) history: Vec<EpochStats>,
    pub(crate) best_epoch: usize,
    pub(crate) config: train::TrainConfig,
    pub(crate) train_seconds: f64,
}

pub(crate) fn cmd_train(a: TrainArgs) -> Result<Trained> {
    match a.backend {
        TrainBackend::Ndarray => {
            train_on::<burn::backend::Autodiff<burn::backend::NdArray>>(&a, &Default::default())
        }
        #[cfg(feature = "wgpu-backend")]
        TrainBackend::Wgpu => {
            train_on::<burn::backend::Autodiff<burn::backend::Wgpu>>(&a, &Default::default())
        }
        #[cfg(feature = "cuda")]
        TrainBackend::Cuda => {
            cuda_driver_present()?;
            train_on::<burn::backend::Autodiff<burn::backend::Cuda>>(&a, &Default::default())
        }
        #[allow(unreachable_patterns)]
        other => Err(anyhow::anyhow!(
            "backend {other:?} is not compiled in: rebuild with `--features {}`",
            if other == TrainBackend::Wgpu { "wgpu-backend" } else { "cuda" }
        )),
    }
}

/// burn's CUDA backend panics on a worker thread when the NVIDIA driver library is missing;
/// look for it first so the user gets an error that says what to do.
#[cfg(feature = "cuda")]
pub(crate) fn cuda_driver_present() -> Result<()> {
    let in_ld_cache = std::process::Command::new("ldconfig")
        .arg("-p")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("libcuda.so"))
        .unwrap_or(false);
    let in_ld_path = std::env::var("LD_LIBRARY_PATH").unwrap_or_default().split(':').any(|dir| {
        std::fs::read_dir(dir).map_or(false, |entries| {
            entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("libcuda.so"))
        })
    });
    if in_ld_cache || in_ld_path {
        Ok(())
    } else {
        anyhow::bail!("--backend cuda: no NVIDIA driver library (libcuda.so) found in the linker cache or LD_LIBRARY_PATH; install the NVIDIA driver, or train with --backend ndarray")
    }
}

pub(crate) fn train_on<B: AutodiffBackend>(a: &TrainArgs, device: &B::Device) -> Result<Trained> {
    if a.protein && a.data.bundle.is_none() {
        anyhow::bail!("--protein reads the protein channels of a Xenium In Situ Gene and Protein bundle: pass --bundle <DIR> (the example crop has no proteins)");
    }
    let crop = a.data.prepare_with(&train::LabelOptions { proteins: a.protein, ..a.data.options() })?;
    let t = &a.training;
    let labels: Vec<u32> = crop.labels.iter().map(|l| l.unwrap_or(0)).collect();
    let (fit_idx, test_idx) = stratified_split(&crop.labels, t.test_fraction, t.seed);
    let n_classes = crop.class_names.len();
    if fit_idx.len() < 20 || n_classes < 2 {
        return Err(train::TrainError::TooFewCells { found: fit_idx.len() + test_idx.len(), classes: n_classes, needed: 25 }.into());
    }
    // Validation cells come from the training cells only (the test cells choose nothing).
    let (train_idx, val_idx) = train::carve_validation(&fit_idx, &crop.labels, train::SplitKind::Random, None, 1.0, t.val_fraction, t.seed)
        .map_err(train::TrainError::Options)?;
    // The model input: normalised genes, then (--protein) the standardised protein channels
    // fitted on the training cells.
    let (x_in, proteins) = if a.protein {
        let (x, p) = train::dataset::with_protein_channels(&crop, &train_idx, a.protein_cofactor)?;
        println!("protein channels as model input: {} markers ({}), asinh(v / {}) standardised on the training cells", p.len(), p.markers.join(", "), p.cofactor);
        (std::borrow::Cow::Owned(x), Some(p))
    } else {
        (std::borrow::Cow::Borrowed(crop.x_norm.as_slice()), None)
    };
    let g = crop.table.n_genes() + proteins.as_ref().map_or(0, |p| p.len());
    let encoder = match t.gene_encoders().as_slice() {
        [one] => *one,
        _ => anyhow::bail!("train takes one --gene-encoder (summary or tokens); benchmark compares several"),
    };
    // Gene tokens: the genes are chosen from the training cells (never validation or test).
    let spec = encoder.apply(ClassifierConfig { n_genes: g, n_classes, ..t.architecture() }, &x_in, g, &train_idx);
    let options = ClassifierOptions::new(spec).with_dropout(t.dropout);
    options.spec.validate()?;
    let config = t.train_config();
    println!(
        "training gene-only transformer ({} layers, d_model {}, {}) on {} cells, validation {}, test {} ({} classes), backend {:?}",
        t.layers, t.d_model, encoder.label(t.gene_tokens), train_idx.len(), val_idx.len(), test_idx.len(), n_classes, a.backend
    );
    println!("recipe {}: {}", t.recipe.name(), serde_json::to_string(&config).unwrap_or_default());
    let inputs = CellInputs::genes(&x_in, g);
    let split = LabelledSplit { labels: &labels, n_classes, train: &train_idx, val: &val_idx, test: &test_idx };
    let checkpoint = CheckpointOptions { dir: Some(a.out.clone()), resume: a.resume.clone() };
    let bar = ProgressBar::new(1).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} batches  {msg}").expect("valid template"),
    );
    let mut progress = BarProgress { bar, epochs: config.budget_epochs(train_idx.len()) };
    let started = Instant::now();
    let trained = train::train_classifier::<B>(&options, &config, &inputs, &split, &crop.class_names, &checkpoint, device, &mut progress)?;
    progress.bar.finish_and_clear();
    let train_seconds = started.elapsed().as_secs_f64();
    let history = trained.history;
    let training = serde_json::json!({
        "labels_from": "SingleR-style Spearman correlation to bidcell sc_breast.csv reference (no expert labels)",
        "backend": format!("{:?}", a.backend),
        "recipe": t.recipe.name(),
        "train_config": config,
        "dropout": t.dropout,
        "split": {"kind": "stratified", "test_fraction": t.test_fraction, "val_fraction": t.val_fraction, "val_from": "training cells only", "seed": t.seed},
        "test_cell_ids": test_idx.iter().map(|&i| crop.table.cell_ids[i].clone()).collect::<Vec<_>>(),
        "label_summary": crop.summary,
        "history": history,
        "best_epoch": trained.best_epoch,
        "stopped_early": trained.stopped_early,
        "train_seconds": train_seconds,
        "kept": history.iter().find(|h| h.epoch == trained.best_epoch),
        "test_macro_f1": trained.report.macro_f1,
    });
    let model = trained.model.valid();
    let mut meta = model_meta(&model, &crop.table.genes, &crop.class_names, crop.normalisation.clone(), training);
    meta.proteins = proteins;
    let (fp32, files) = export_fp32_and_int8(&model, meta, &a.out)?;
    println!(
        "trained in {:.1} s; kept epoch {} (best validation macro-F1{}); test macro-F1 {:.3}; wrote {} and {}",
        train_seconds,
        trained.best_epoch,
        if trained.stopped_early { ", stopped early" } else { "" },
        trained.report.macro_f1,
        files.fp32.display(),
        files.int8.display()
    );
    Ok(Trained { crop, test_idx, fp32, files, history, best_epoch: trained.best_epoch, config, train_seconds })
}
