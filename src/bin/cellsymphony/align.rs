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
    /// Share of the cells held out before training; every reported number, table and figure
    /// is computed on these cells only (the projections are fitted on the others).
    #[arg(long, default_value_t = 0.2)]
    pub(crate) held_out_fraction: f64,
    /// Neighbours of the kNN label agreement on the held-out cells.
    #[arg(long, default_value_t = 10)]
    pub(crate) knn: usize,
    /// Precomputed gene embedding [cells, d] (.npy or .safetensors, e.g. scGPT) for the gene side
    /// instead of the log-normalised counts.
    #[arg(long)]
    pub(crate) gene_embedding: Option<PathBuf>,
    /// Cell ids of --gene-embedding's rows: .npy (strings or integers), .csv/.tsv with a `cell_id`
    /// column, or text with one id per line. Without it: ids stored in a .safetensors file
    /// (`__metadata__["cell_ids"]` or tensor `cell_ids`), else rows in the cell table's order.
    #[arg(long)]
    pub(crate) gene_embedding_ids: Option<PathBuf>,
    /// Precomputed image embedding [cells, d] (.npy or .safetensors, e.g. UNI2) instead of the
    /// patch ViT.
    #[arg(long)]
    pub(crate) morph_embedding: Option<PathBuf>,
    /// Cell ids of --morph-embedding's rows (as --gene-embedding-ids).
    #[arg(long)]
    pub(crate) morph_embedding_ids: Option<PathBuf>,
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
    use cellsymphony::model::{ContrastiveAlignerConfig, MorphologyEncoderConfig, SharedSpaceConfig};
    use cellsymphony::train::contrastive::{
        evaluate_held_out, train_alignment, write_alignment_outputs, AlignOptions, PairedInputs,
    };
    type Ad = burn::backend::Autodiff<burn::backend::NdArray>;
    let t0 = Instant::now();
    let crop = a.data.prepare()?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let n = crop.table.n_cells();
    let read = |p: &std::path::Path, ids: Option<&std::path::Path>| {
        train::embeddings::read_embeddings_for_cells(p, None, ids, &crop.table.cell_ids)
    };
    let gene_emb = a.gene_embedding.as_deref().map(|p| read(p, a.gene_embedding_ids.as_deref())).transpose()?;
    let morph_emb = a.morph_embedding.as_deref().map(|p| read(p, a.morph_embedding_ids.as_deref())).transpose()?;
    let (genes, d_gene, gene_source) = match &gene_emb {
        Some(e) => (e.values.clone(), e.dim, format!("gene embedding {} ({} wide)", a.gene_embedding.as_ref().map_or(String::new(), |p| p.display().to_string()), e.dim)),
        None => (crop.x_norm.clone(), crop.table.n_genes(), format!("log-normalised counts of {} genes", crop.table.n_genes())),
    };
    let (morph, d_morph, morph_source, morphology) = match &morph_emb {
        Some(e) => (
            e.values.clone(),
            e.dim,
            format!("image embedding {} ({} wide)", a.morph_embedding.as_ref().map_or(String::new(), |p| p.display().to_string()), e.dim),
            None,
        ),
        None => {
            let patches = train::benchmark::crop_patches(&crop, a.patch.patch_px, a.patch.patch_um_per_px)?;
            let morphology = MorphologyEncoderConfig::new()
                .with_image_size(a.patch.patch_px)
                .with_vit_patch(a.patch.vit_patch)
                .with_width(a.d_model)
                .with_d_model(a.d_model);
            morphology
                .check()
                .map_err(|e| anyhow::anyhow!("morphology encoder options: {e}"))?;
            (
                patches,
                a.patch.patch_px * a.patch.patch_px,
                format!("{p}×{p} px DAPI patches at {u} µm/px (patch ViT)", p = a.patch.patch_px, u = a.patch.patch_um_per_px),
                Some(morphology),
            )
        }
    };
    let inputs = PairedInputs { n_cells: n, genes: &genes, d_gene, morph: &morph, d_morph };
    let config = ContrastiveAlignerConfig::new(d_gene)
        .with_morphology(morphology)
        .with_d_morph_input(d_morph)
        .with_space(SharedSpaceConfig::new().with_d_projection(a.projection_dim).with_temperature(a.temperature));
    let options = AlignOptions {
        epochs: a.epochs,
        batch_size: a.batch_size,
        learning_rate: a.lr,
        weight_decay: a.weight_decay,
        held_out_fraction: a.held_out_fraction,
        seed: a.seed,
    };
    println!(
        "contrastive alignment: {n} cells, {gene_source} → {d}, {morph_source} → {d}; \
         {e} epochs, batch {b}, τ = {tau}; projections fitted on {fit:.0} % of the cells, evaluated on the \
         held-out {held:.0} % only",
        d = a.projection_dim,
        fit = 100.0 * (1.0 - a.held_out_fraction),
        held = 100.0 * a.held_out_fraction,
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
    let eval = evaluate_held_out(&trained, &inputs, &types, &crop.class_names, a.clusters, a.knn, a.seed)?;
    let summary = write_alignment_outputs::<burn::backend::NdArray>(
        &a.out,
        a.www.as_deref(),
        &crop,
        &types,
        &trained,
        &eval,
        &config,
        a.epochs,
        &morph_source,
    )?;
    println!("\n{summary}");
    if let Some(www) = &a.www {
        println!("wrote the alignment layer to {}", www.join("alignment.json").display());
    }
    println!("wrote {} in {:.1} s", a.out.display(), t0.elapsed().as_secs_f64());
    Ok(())
}
