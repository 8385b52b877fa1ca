//! `cellsymphony benchmark`: the four classifiers and the baseline on one split.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use cellsymphony::engine::{self, Architecture};
use cellsymphony::train::benchmark::{RunLabel, SplitChoice};
use cellsymphony::train::peers::Peer;
use cellsymphony::train::{self, EpochStats, Recipe, TrainProgress};

use crate::common::*;

#[derive(Args)]
pub(crate) struct BenchmarkArgs {
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Benchmark on an AnnData .h5ad with expert labels instead of the Xenium crop (gene-only
    /// model + baseline), e.g. scanpy's pbmc68k_reduced (see scripts/fetch_data.sh).
    #[arg(long)]
    pub(crate) h5ad: Option<PathBuf>,
    /// obs column of --h5ad holding the expert labels.
    #[arg(long, default_value = "bulk_labels")]
    pub(crate) label_key: String,
    /// How X of --h5ad becomes the model input (recorded in the model files): as_stored,
    /// log1p_cp10k (counts), or arcsinh:COFACTOR (protein intensities, e.g. arcsinh:5).
    #[arg(long, default_value = "as_stored", value_parser = parse_normalisation)]
    pub(crate) normalisation: engine::Normalisation,
    /// Standardise the transformers' gene input per gene, (x − mean) / sd, with the statistics
    /// of each fold's training cells (recorded in the model files; every engine applies it):
    /// auto = on for as_stored and arcsinh:* input, off for log1p_cp10k counts (and the Xenium
    /// crop); `--standardise` alone = on. See README "Per-gene standardisation (`--standardise`)".
    #[arg(long, value_name = "auto|on|off", default_value = "auto", num_args = 0..=1, default_missing_value = "on", value_parser = parse_standardise)]
    pub(crate) standardise: train::benchmark::Standardise,
    /// Output folder (tables, PNGs, models, checkpoints, summary.md).
    #[arg(long, default_value = "runs/benchmark")]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    pub(crate) training: TrainingFlags,
    #[command(flatten)]
    pub(crate) patch: PatchFlags,
    /// ViT width.
    #[arg(long, default_value_t = 64)]
    pub(crate) vit_width: usize,
    /// ViT block whose tokens form the cell embedding (blocks after it are not built).
    #[arg(long, default_value_t = 2)]
    pub(crate) vit_feature_layer: usize,
    /// Tokens nearest the patch centre averaged into the cell embedding.
    #[arg(long, default_value_t = 4)]
    pub(crate) k_nearest: usize,
    /// Classifiers to train, comma-separated: gene-only, spatial, dual-modality, multi-input
    /// (default all four).
    #[arg(long, value_delimiter = ',', value_parser = parse_architecture)]
    pub(crate) models: Vec<Architecture>,
    /// Logistic-regression inverse L2 strength C.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) logreg_c: f64,
    /// Logistic-regression gradient iterations.
    #[arg(long, default_value_t = 500)]
    pub(crate) logreg_iterations: usize,
    /// Precomputed gene embedding [cells, d] (.npy or .safetensors) for the multimodal models.
    #[arg(long)]
    pub(crate) gene_embedding: Option<PathBuf>,
    /// Precomputed image embedding [cells, d] (.npy or .safetensors, e.g. UNI2) replacing the patch ViT.
    #[arg(long)]
    pub(crate) morph_embedding: Option<PathBuf>,
    /// Cell ids of --gene-embedding's rows: .npy (strings or integers), .csv/.tsv with a `cell_id`
    /// column, or text with one id per line. Without it: ids stored in a .safetensors file
    /// (`__metadata__["cell_ids"]` or tensor `cell_ids`), else rows in the cell table's order.
    #[arg(long)]
    pub(crate) gene_embedding_ids: Option<PathBuf>,
    /// Cell ids of --morph-embedding's rows (as --gene-embedding-ids).
    #[arg(long)]
    pub(crate) morph_embedding_ids: Option<PathBuf>,
    /// Resume each run from the checkpoints of an earlier --out (<DIR>/<model>/checkpoint.bin,
    /// <DIR>/<model>/runs/<split>-<recipe>-fold<k>/checkpoint.bin) and train up to --epochs.
    #[arg(long)]
    pub(crate) resume: Option<PathBuf>,
    /// Python peers run on the identical folds beside our LogReg, comma-separated: logreg,
    /// mlp, hgb, celltypist (scikit-learn and CellTypist, pinned by scripts/setup.sh), all, or
    /// none.
    #[arg(long, value_delimiter = ',', default_value = "all", value_parser = parse_peer)]
    pub(crate) peers: Vec<PeerChoice>,
    /// Folds: 1 = one split holding out --test-fraction; K ≥ 2 = stratified (or spatial-block)
    /// K-fold cross-validation, reported as mean ± sd over folds.
    #[arg(long, default_value_t = 1)]
    pub(crate) folds: usize,
    /// Split: auto (random for gene-only, spatial-blocks for models reading centroids or
    /// images; gene-only and the baselines then run on both), random, spatial-blocks or both.
    #[arg(long, default_value = "auto", value_parser = parse_split)]
    pub(crate) split: SplitChoice,
    /// Side of the spatial grid blocks in µm.
    #[arg(long, default_value_t = cellsymphony::train::benchmark::DEFAULT_BLOCK_UM)]
    pub(crate) block_um: f64,
    /// Recipes to run side by side, comma-separated (e.g. default,paper); default: --recipe.
    /// `NAME+tune` runs recipe NAME with the `--tune` search, beside untuned recipes (e.g.
    /// default,default+tune,paper).
    #[arg(long, value_delimiter = ',', value_parser = parse_recipe_run)]
    pub(crate) recipes: Vec<(Recipe, bool)>,
    /// Before each model × fold × recipe, search on the fold's validation cells (carved from its
    /// training cells; the test cells are never seen): peak lr ∈ {lr, lr/3, 3·lr}, then class
    /// weighting ∈ {none, sqrt-balanced}, then label smoothing ∈ {0, 0.1}, coordinate-wise (5
    /// short runs of half the epochs for the default recipe); then train the chosen settings.
    #[arg(long)]
    pub(crate) tune: bool,
}

/// `default`, `paper`, or either with `+tune`.
fn parse_recipe_run(s: &str) -> std::result::Result<(Recipe, bool), String> {
    match s.strip_suffix(train::tune::TUNE_SUFFIX) {
        Some(r) => Ok((parse_recipe(r)?, true)),
        None => Ok((parse_recipe(s)?, false)),
    }
}

fn parse_split(s: &str) -> std::result::Result<SplitChoice, String> {
    s.parse()
}

pub(crate) struct EpochLines {
    pub(crate) tag: String,
    pub(crate) epochs: usize,
}

impl TrainProgress for EpochLines {
    fn epoch(&mut self, s: &EpochStats) {
        println!("[{}] {}", self.tag, crate::train::epoch_line(s, self.epochs));
    }
}

pub(crate) fn cmd_benchmark(a: BenchmarkArgs) -> Result<()> {
    use cellsymphony::train::benchmark::{run_benchmark, BenchmarkOptions};
    let opts = BenchmarkOptions {
        data_dir: a.data.dir(),
        labels: a.data.options(),
        out: a.out.clone(),
        recipes: if a.recipes.is_empty() { vec![(a.training.recipe, false)] } else { a.recipes.clone() }
            .into_iter()
            .map(|(r, tuned)| (format!("{}{}", r.name(), if tuned { train::tune::TUNE_SUFFIX } else { "" }), a.training.config_for(r)))
            .collect(),
        test_fraction: a.training.test_fraction,
        folds: a.folds.max(1),
        split: a.split,
        block_um: a.block_um,
        val_fraction: a.training.val_fraction,
        seed: a.training.seed,
        tune: a.tune,
        architecture: a.training.architecture(),
        sources: engine::TokenSources {
            morphology: engine::MorphologyTokenConfig {
                image_size: a.patch.patch_px,
                vit_patch: a.patch.vit_patch,
                width: a.vit_width,
                n_layers: a.vit_feature_layer,
                k_nearest: a.k_nearest,
                um_per_px: a.patch.patch_um_per_px as f64,
                ..Default::default()
            },
            ..Default::default()
        },
        dropout: a.training.dropout,
        models: if a.models.is_empty() { Architecture::ALL.to_vec() } else { a.models.clone() },
        gene_encoders: a.training.gene_encoders(),
        logistic: train::logistic::LogisticOptions {
            c: a.logreg_c,
            iterations: a.logreg_iterations,
            class_weighted: false,
        },
        gene_embedding: a.gene_embedding,
        morph_embedding: a.morph_embedding,
        gene_embedding_ids: a.gene_embedding_ids,
        morph_embedding_ids: a.morph_embedding_ids,
        resume: a.resume,
        h5ad: a.h5ad,
        label_key: a.label_key,
        h5ad_normalisation: a.normalisation,
        peers: peer_list(&a.peers),
        bundle: a.data.bundle.clone(),
        reference: a.data.reference.clone(),
        standardise: a.standardise,
    };
    let t = Instant::now();
    let device = Default::default();
    let mut factory = |l: &RunLabel| -> Box<dyn TrainProgress> {
        let tag = format!("{} {} {} fold {}/{}{}", l.model.name(), l.split.name(), l.recipe, l.fold + 1, l.n_folds, if l.trial { " tune" } else { "" });
        if !l.trial {
            println!("training {} ({}, recipe {}, fold {}/{}) ...", l.model.title(), l.split.name(), l.recipe, l.fold + 1, l.n_folds);
        }
        Box::new(EpochLines { tag, epochs: l.epochs })
    };
    let result = run_benchmark::<burn::backend::Autodiff<burn::backend::NdArray>>(
        &opts,
        &device,
        &mut factory,
    )
    .with_context(|| format!("benchmark on {}", opts.data_dir.display()))?;
    println!(
        "\n{} fold(s); fold 0: test cells {} (train + validation {}); total {:.1} s",
        result.n_folds,
        result.n_test,
        result.n_train,
        t.elapsed().as_secs_f64()
    );
    println!("\n| Model | split | recipe | macro-F1 mean ± sd | accuracy mean ± sd | pooled weighted-F1 | mean epoch (s) | train (s) |\n|---|---|---|---:|---:|---:|---:|---:|");
    for r in &result.results {
        let ((f1, f1_sd), (acc, acc_sd)) = r.fold_stats();
        println!(
            "| {} | {} | {} | {:.3} ± {:.3} | {:.3} ± {:.3} | {:.3} | {} | {:.1} |",
            r.title,
            r.split.name(),
            r.recipe.as_deref().unwrap_or("–"),
            f1, f1_sd, acc, acc_sd,
            r.report.weighted_f1,
            // Baselines have no epochs.
            if r.recipe.is_some() { format!("{:.2}", r.mean_epoch_seconds) } else { "–".into() },
            r.train_seconds
        );
    }
    println!("\n{}", result.markdown);
    println!(
        "wrote {} (summary.md, per_class.csv, confusion_*.png, models)",
        opts.out.display()
    );
    Ok(())
}

/// `as_stored`, `log1p_cp10k` (target sum 1e4) or `arcsinh:COFACTOR` (COFACTOR > 0).
/// One `--peers` entry.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PeerChoice {
    One(Peer),
    All,
    None,
}

fn parse_peer(s: &str) -> std::result::Result<PeerChoice, String> {
    match s {
        "all" => Ok(PeerChoice::All),
        "none" => Ok(PeerChoice::None),
        _ => Peer::ALL.iter().find(|p| p.key() == s).map(|&p| PeerChoice::One(p)).ok_or_else(|| {
            format!("unknown peer `{s}`: expected all, none or a comma-separated list of {}",
                Peer::ALL.iter().map(|p| p.key()).collect::<Vec<_>>().join(", "))
        }),
    }
}

/// The peers named by `--peers` (`none` anywhere wins; `all` expands to every peer).
fn peer_list(choices: &[PeerChoice]) -> Vec<Peer> {
    if choices.iter().any(|c| matches!(c, PeerChoice::None)) {
        return Vec::new();
    }
    let mut out: Vec<Peer> = Vec::new();
    for c in choices {
        let add: &[Peer] = match c {
            PeerChoice::All => &Peer::ALL,
            PeerChoice::One(p) => std::slice::from_ref(p),
            PeerChoice::None => &[],
        };
        for p in add {
            if !out.contains(p) {
                out.push(*p);
            }
        }
    }
    out
}

fn parse_standardise(s: &str) -> std::result::Result<train::benchmark::Standardise, String> {
    use train::benchmark::Standardise;
    match s {
        "auto" => Ok(Standardise::Auto),
        "on" => Ok(Standardise::On),
        "off" => Ok(Standardise::Off),
        _ => Err(format!("`{s}`: use auto (by the input's normalisation), on or off")),
    }
}

fn parse_normalisation(s: &str) -> std::result::Result<engine::Normalisation, String> {
    match s.split_once(':') {
        None if s == "as_stored" => Ok(engine::Normalisation::as_stored()),
        None if s == "log1p_cp10k" => Ok(engine::Normalisation::log1p_with_target_sum(1e4)),
        Some(("arcsinh", c)) => match c.parse::<f64>() {
            Ok(c) if c.is_finite() && c > 0.0 => Ok(engine::Normalisation::arcsinh(c)),
            _ => Err(format!("arcsinh cofactor `{c}` must be a number > 0, e.g. arcsinh:5")),
        },
        _ => Err(format!("`{s}`: use as_stored, log1p_cp10k or arcsinh:COFACTOR (e.g. arcsinh:5)")),
    }
}
