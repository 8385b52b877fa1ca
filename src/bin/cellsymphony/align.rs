//! `cellsymphony align`: contrastive alignment of expression and morphology.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use cellsymphony::train;

use crate::common::*;

#[derive(Args)]
pub(crate) struct AlignArgs {
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Output folder (figures, clusters.csv, summary.md, model.safetensors).
    #[arg(long, default_value = "runs/align")]
    pub(crate) out: PathBuf,
    /// Training epochs.
    #[arg(long, default_value_t = 30)]
    pub(crate) epochs: usize,
    /// Cells per batch (InfoNCE negatives).
    #[arg(long, default_value_t = 128)]
    pub(crate) batch_size: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub(crate) lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.01)]
    pub(crate) weight_decay: f64,
    /// InfoNCE temperature.
    #[arg(long, default_value_t = 0.1)]
    pub(crate) temperature: f64,
    /// Width of the shared space.
    #[arg(long, default_value_t = 128)]
    pub(crate) projection_dim: usize,
    /// k-means clusters of the morphology projections.
    #[arg(long, default_value_t = 8)]
    pub(crate) clusters: usize,
    /// Seed of split, batches, initialisation, k-means and UMAP.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    #[command(flatten)]
    pub(crate) patch: PatchFlags,
    /// ViT token width (also the morphology embedding width).
    #[arg(long, default_value_t = 64)]
    pub(crate) d_model: usize,
    /// Also write the alignment layer (alignment.json) into this web-demo data folder.
    #[arg(long)]
    pub(crate) www: Option<PathBuf>,
}

pub(crate) fn cmd_align(a: AlignArgs) -> Result<()> {
    use cellsymphony::model::{ContrastiveAlignerConfig, MorphologyEncoderConfig};
    use cellsymphony::train::contrastive::{
        analyse_alignment, train_alignment, write_alignment_outputs, AlignOptions, PairedInputs,
    };
    type Ad = burn::backend::Autodiff<burn::backend::NdArray>;
    let t0 = Instant::now();
    let crop = a.data.prepare()?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let patches = train::benchmark::crop_patches(&crop, a.patch.patch_px, a.patch.patch_um_per_px)?;
    let n = crop.table.n_cells();
    let g = crop.table.n_genes();
    let inputs = PairedInputs {
        n_cells: n,
        genes: &crop.x_norm,
        d_gene: g,
        morph: &patches,
        d_morph: a.patch.patch_px * a.patch.patch_px,
    };
    let morphology = MorphologyEncoderConfig::new()
        .with_image_size(a.patch.patch_px)
        .with_vit_patch(a.patch.vit_patch)
        .with_width(a.d_model)
        .with_d_model(a.d_model);
    morphology
        .check()
        .map_err(|e| anyhow::anyhow!("morphology encoder options: {e}"))?;
    let config = ContrastiveAlignerConfig::new(g)
        .with_morphology(Some(morphology))
        .with_d_projection(a.projection_dim)
        .with_temperature(a.temperature);
    let options = AlignOptions {
        epochs: a.epochs,
        batch_size: a.batch_size,
        learning_rate: a.lr,
        weight_decay: a.weight_decay,
        held_out_fraction: 0.2,
        seed: a.seed,
    };
    println!(
        "contrastive alignment: {n} cells, genes {g} → {d}, {p}×{p} px DAPI patches at {u} µm/px → {d}; \
         {e} epochs, batch {b}, τ = {tau}",
        d = a.projection_dim,
        p = a.patch.patch_px,
        u = a.patch.patch_um_per_px,
        e = a.epochs,
        b = a.batch_size,
        tau = a.temperature
    );
    println!("| epoch | train loss | held-out loss | gene→patch top-1 | top-5 | s |\n|---:|---:|---:|---:|---:|---:|");
    let device = Default::default();
    let trained = train_alignment::<Ad>(&config, &inputs, &options, &device, |e| {
        println!(
            "| {} | {:.4} | {:.4} | {:.3} | {:.3} | {:.1} |",
            e.epoch, e.train_loss, e.held_out_loss, e.top1, e.top5, e.seconds
        );
    })?;
    let h = trained.held_out.len().max(1) as f64;
    println!("(chance: top-1 {:.3}, top-5 {:.3} over {} held-out cells)", 1.0 / h, 5.0 / h, trained.held_out.len());

    let types: Vec<Option<u32>> = crop.labels.clone();
    let analysis = analyse_alignment(&trained.z_morph, trained.dim, a.clusters, &types, &crop.class_names, a.seed)?;
    let table = write_alignment_outputs::<burn::backend::NdArray>(&a.out, a.www.as_deref(), &crop, &types, &trained, &analysis, &config, a.epochs)?;
    println!("\nk-means clusters of morphology projections vs reference labels: ARI {:.3}\n{table}", analysis.ari);
    if let Some(www) = &a.www {
        println!("wrote the alignment layer to {}", www.join("alignment.json").display());
    }
    println!("wrote {} in {:.1} s", a.out.display(), t0.elapsed().as_secs_f64());
    Ok(())
}
