//! `cellsymphony image-only`: the image-only (CUCA-style) classifier on spatial-block folds,
//! with gene-based peers, ablations and per-niche abundance correlation.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use cellsymphony::engine::ClassifierConfig;
use cellsymphony::model::MorphologyEncoderConfig;
use cellsymphony::train::image_only::{run_image_only, ImageOnlyOptions, ImageOnlyRunOptions, LossWeights, PatchStain};
use cellsymphony::train::{ClassWeighting, Recipe};

use crate::common::*;

#[derive(Args)]
pub(crate) struct ImageOnlyArgs {
    #[command(flatten)]
    pub(crate) data: DataArgs,
    #[command(flatten)]
    pub(crate) patch: PatchFlags,
    /// Output folder (summary.md, per_class.{csv,md}, predictions.csv, model.safetensors, image_only.json).
    #[arg(long, default_value = "runs/image_only")]
    pub(crate) out: PathBuf,
    /// Spatial-block folds (each labelled cell tested once); 1 = one split holding out --test-fraction.
    #[arg(long, default_value_t = 5)]
    pub(crate) folds: usize,
    /// Held-out share of a single split (--folds 1).
    #[arg(long, default_value_t = 0.2)]
    pub(crate) test_fraction: f64,
    /// Share of each fold's training cells (whole blocks) used to pick the kept epoch.
    #[arg(long, default_value_t = 0.15)]
    pub(crate) val_fraction: f64,
    /// Spatial block side in µm.
    #[arg(long, default_value_t = 100.0)]
    pub(crate) block_um: f64,
    /// Training epochs of the image-only model.
    #[arg(long, default_value_t = 30)]
    pub(crate) epochs: usize,
    /// Cells per batch (also the InfoNCE negatives).
    #[arg(long, default_value_t = 64)]
    pub(crate) batch_size: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub(crate) lr: f64,
    /// Weight of the cross-entropy on the reference labels.
    #[arg(long, default_value_t = LossWeights::JOINT.ce)]
    pub(crate) w_ce: f64,
    /// Weight of the bidirectional InfoNCE to the expression encoder.
    #[arg(long, default_value_t = LossWeights::JOINT.info_nce)]
    pub(crate) w_info_nce: f64,
    /// Weight of the distillation of the expression embedding (cosine distance).
    #[arg(long, default_value_t = LossWeights::JOINT.distill)]
    pub(crate) w_distill: f64,
    /// ViT token width (and feature width).
    #[arg(long, default_value_t = 64)]
    pub(crate) d_model: usize,
    /// Epochs of the gene-only transformer peer (default recipe otherwise); 0 skips it.
    #[arg(long, default_value_t = 20)]
    pub(crate) gene_transformer_epochs: usize,
    /// Niche side in µm of our niche grid (54 µm = the 256 px niches at 0.2125 µm/px).
    #[arg(long, default_value_t = 54.0)]
    pub(crate) niche_um: f64,
    /// Niches with fewer held-out cells are left out of the abundance correlation.
    #[arg(long, default_value_t = 5)]
    pub(crate) min_niche_cells: usize,
    /// Image the patches are cut from: `dapi`, or `he` (the bundle's `*he_image.ome.tif`
    /// through `*he_imagealignment.csv`, as haematoxylin concentration).
    #[arg(long, value_enum, default_value_t = StainArg::Dapi)]
    pub(crate) stain: StainArg,
    /// Patch preset: `paper` = CUCA's 224 px at 0.5 µm/px (112 µm field) with 16 px ViT
    /// patches (196 tokens); replaces --patch-px, --patch-um-per-px and --vit-patch.
    #[arg(long, value_enum, conflicts_with_all = ["patch_px", "patch_um_per_px", "vit_patch"])]
    pub(crate) scale: Option<PatchScale>,
    /// Seed of folds, initialisation and batches.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
}

/// `--stain`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StainArg {
    /// The DAPI morphology image.
    Dapi,
    /// The bundle's H&E image through its alignment matrix.
    He,
}

/// `--scale` presets.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PatchScale {
    /// CUCA's 224 px at 0.5 µm/px, ViT patch 16 px.
    Paper,
}

pub(crate) fn cmd_image_only(mut a: ImageOnlyArgs) -> Result<()> {
    if a.scale == Some(PatchScale::Paper) {
        (a.patch.patch_px, a.patch.patch_um_per_px, a.patch.vit_patch) = (224, 0.5, 16);
    }
    type Ad = burn::backend::Autodiff<burn::backend::NdArray>;
    let t0 = Instant::now();
    let crop = a.data.prepare()?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let morphology = MorphologyEncoderConfig::new()
        .with_image_size(a.patch.patch_px)
        .with_vit_patch(a.patch.vit_patch)
        .with_width(a.d_model)
        .with_d_model(a.d_model);
    let mut gene_config = Recipe::Default.config(a.seed);
    gene_config.epochs = a.gene_transformer_epochs;
    let opts = ImageOnlyRunOptions {
        out: a.out.clone(),
        folds: a.folds,
        test_fraction: a.test_fraction,
        val_fraction: a.val_fraction,
        block_um: a.block_um,
        seed: a.seed,
        morphology,
        um_per_px: a.patch.patch_um_per_px,
        stain: match a.stain {
            StainArg::Dapi => PatchStain::Dapi,
            StainArg::He => PatchStain::He,
        },
        train: ImageOnlyOptions {
            epochs: a.epochs,
            batch_size: a.batch_size,
            learning_rate: a.lr,
            weight_decay: 0.01,
            weights: LossWeights { ce: a.w_ce, info_nce: a.w_info_nce, distill: a.w_distill },
            class_weighting: ClassWeighting::SqrtBalanced,
            seed: a.seed,
        },
        gene_transformer: (a.gene_transformer_epochs > 0).then(|| (ClassifierConfig::default(), gene_config)),
        logistic: Default::default(),
        niche_um: a.niche_um,
        min_niche_cells: a.min_niche_cells,
    };
    let device = Default::default();
    let report = run_image_only::<Ad>(&crop, &opts, &device, |line| println!("{line}"))?;
    println!("\n{}", report.markdown);
    println!("wrote {} in {:.1} s", a.out.display(), t0.elapsed().as_secs_f64());
    Ok(())
}
