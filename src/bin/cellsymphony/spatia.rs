//! `cellsymphony spatia pretrain|finetune|embed|export|ablation`: SPATIA's multi-scale model
//! (flags here, everything else in `train::spatia`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use cellsymphony::engine::spec::{SpatiaLevels, SpatiaSpec};
use cellsymphony::train::spatia::{self, FinetuneConfig, PretrainConfig, SpatiaData, SpatiaHeader};
use cellsymphony::train::{make_folds, FoldPlan, PreparedCrop, SplitKind};

use crate::common::*;

type Ad = burn::backend::Autodiff<burn::backend::NdArray>;
type Cpu = burn::backend::NdArray;

#[derive(Args)]
pub(crate) struct SpatiaArgs {
    #[command(subcommand)]
    command: SpatiaCommand,
}

#[derive(Subcommand)]
enum SpatiaCommand {
    /// Masked-reconstruction pre-training of the cell level on every cell (no labels):
    /// writes spatia_pretrain.{json,bin} and pretrain_loss.csv.
    Pretrain(PretrainArgs),
    /// Fine-tune on the labelled cells of one split (validation for the epoch, test reported
    /// once): writes spatia_model.{json,bin} and finetune_history.csv.
    Finetune(FinetuneArgs),
    /// Write z_cell / z / z_niche / z_tissue (.npy) with cells.csv and niches.csv; with the
    /// niche level also niche clusters (k by silhouette), their cell-type enrichment and
    /// niche_map.png.
    Embed(EmbedArgs),
    /// Export the whole hierarchy (cell level, and for --levels niche|tissue the niche and
    /// tissue levels, fusion and heads) as a safetensors file the burn-free engine runs
    /// (`engine::SpatiaHierarchyModel`), with the niche clusters' centroids if given.
    Export(ExportArgs),
    /// Classify every cell in a tissue region with the burn-free engine (the exported file):
    /// writes cells.csv (cell_id,niche,predicted), the .npy embeddings of `embed` and, when the
    /// file stores niche centroids, niche_clusters.csv (nearest centroid of each z_niche).
    Classify(ClassifyArgs),
    /// The level ablation on K spatially blocked folds with our LogReg on the same folds:
    /// writes ablation.md and ablation.json.
    Ablation(AblationArgs),
    /// Slide scale: the niche grid and the whole hierarchy (CPU engine) on N synthetic cells
    /// (the crop's whole niches tiled), with time and memory per stage: writes scale.md and
    /// scale.json.
    Scale(ScaleArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Scale {
    /// The CPU default (see README: SPATIA).
    Small,
    /// The GPU-scale configuration.
    Large,
}

/// `--images auto|on|off`.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Images {
    /// On for the Xenium crop or a bundle (DAPI patches and niche tiles), off for --h5ad.
    Auto,
    /// The imaged model (not possible with --h5ad: it has no image).
    On,
    /// The image-free model: learned query tokens replace both ViTs.
    Off,
}

/// Labelled spatial sets without images (an AnnData with `obsm['spatial']`).
#[derive(Args, Clone)]
struct H5adFlags {
    /// Read cells, labels and centroids (`obsm['spatial']`) from this AnnData .h5ad instead of
    /// the Xenium crop; the image-free SPATIA is then chosen automatically (no image exists:
    /// learned query tokens replace both ViTs, pre-training reconstructs masked genes only).
    #[arg(long)]
    h5ad: Option<PathBuf>,
    /// obs column of --h5ad holding the expert labels.
    #[arg(long, default_value = "cell_type")]
    label_key: String,
    /// How X of --h5ad becomes the model input: as_stored, log1p_cp10k or arcsinh:COFACTOR
    /// (e.g. arcsinh:5 for imaging intensities).
    #[arg(long, default_value = "as_stored", value_parser = parse_normalisation)]
    normalisation: cellsymphony::engine::Normalisation,
    /// Standardise every gene/marker of --h5ad over all cells (mean 0, sd 1; label-free)
    /// after the normalisation: on or off.
    #[arg(long, default_value = "on", value_parser = parse_on_off)]
    standardise: bool,
    /// Micrometres per unit of the h5ad's `obsm['spatial']` (scimap's centroids are image
    /// pixels; default 1: the units are taken as µm). Niches (`niche_tile_px ×
    /// niche_dapi_um_per_px` = 54.4 µm), tissue regions and spatial blocks are sized in µm.
    #[arg(long, default_value_t = 1.0)]
    um_per_px: f32,
}

fn parse_on_off(s: &str) -> std::result::Result<bool, String> {
    match s {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("`{s}`: use on or off")),
    }
}

fn parse_normalisation(s: &str) -> std::result::Result<cellsymphony::engine::Normalisation, String> {
    use cellsymphony::engine::Normalisation;
    match s.split_once(':') {
        None if s == "as_stored" => Ok(Normalisation::as_stored()),
        None if s == "log1p_cp10k" => Ok(Normalisation::log1p_with_target_sum(1e4)),
        Some(("arcsinh", c)) => match c.parse::<f64>() {
            Ok(c) if c.is_finite() && c > 0.0 => Ok(Normalisation::arcsinh(c)),
            _ => Err(format!("arcsinh cofactor `{c}` must be a number > 0, e.g. arcsinh:5")),
        },
        _ => Err(format!("`{s}`: use as_stored, log1p_cp10k or arcsinh:COFACTOR (e.g. arcsinh:5)")),
    }
}

impl H5adFlags {
    /// The cells: the h5ad (normalised, standardised, centroids in µm) or the crop/bundle.
    fn prepare(&self, data: &DataArgs) -> Result<PreparedCrop> {
        let Some(path) = &self.h5ad else { return data.prepare() };
        if !(self.um_per_px.is_finite() && self.um_per_px > 0.0) {
            bail!("--um-per-px {} must be a positive number", self.um_per_px);
        }
        let mut crop = cellsymphony::train::dataset::prepare_h5ad_with(path, &self.label_key, &data.options(), &self.normalisation)
            .with_context(|| format!("reading {}", path.display()))?;
        if self.standardise {
            let g = crop.table.n_genes();
            spatia::standardise_genes(&mut crop.x_norm, g);
        }
        spatia::scale_centroids(&mut crop, self.um_per_px);
        eprintln!(
            "{}: {} cells, {} genes/markers, {} classes; centroids × {} µm per unit",
            path.display(),
            crop.table.n_cells(),
            crop.table.n_genes(),
            crop.class_names.len(),
            self.um_per_px
        );
        Ok(crop)
    }
}

#[derive(Args, Clone)]
struct ModelFlags {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    h5ad: H5adFlags,
    /// Images: auto (on for the crop/bundle, off for --h5ad), on, or off (the image-free
    /// model: learned query tokens instead of the ViTs).
    #[arg(long, value_enum, default_value = "auto")]
    images: Images,
    /// Model size.
    #[arg(long, value_enum, default_value = "small")]
    scale: Scale,
    /// Hierarchy levels: cell, niche or tissue (cell + niche + tissue).
    #[arg(long, default_value = "tissue")]
    levels: SpatiaLevels,
    /// Use only the first N tissue regions with cells (a quick subset).
    #[arg(long)]
    max_regions: Option<usize>,
    /// Tissue-region side in niches (SPATIA: 4, i.e. 4×4 niches), or `slide`: one region over
    /// the whole slide's niche grid when it fits (at most 32×32 niches).
    #[arg(long, default_value = "4", value_parser = parse_region_side)]
    region_niches: RegionSide,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// `--region-niches`: a side in niches, or the whole slide.
#[derive(Clone, Copy, Debug)]
enum RegionSide {
    Niches(usize),
    Slide,
}

/// The most niches per side of one tissue region for `--region-niches slide` (the tissue
/// transformer attends over side² slots).
const MAX_SLIDE_REGION_SIDE: usize = 32;

fn parse_region_side(v: &str) -> Result<RegionSide, String> {
    match v {
        "slide" => Ok(RegionSide::Slide),
        _ => match v.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(RegionSide::Niches(n)),
            _ => Err(format!("`{v}`: give a region side of at least 1 niche (SPATIA: 4) or `slide`")),
        },
    }
}

impl ModelFlags {
    fn prepare(&self) -> Result<(PreparedCrop, SpatiaSpec, SpatiaData)> {
        let images = match (self.images, self.h5ad.h5ad.is_some()) {
            (Images::On, true) => bail!("--images on: an --h5ad set has no images; use --images auto or off (the image-free model)"),
            (Images::Auto, h5ad) => !h5ad,
            (i, _) => i == Images::On,
        };
        let crop = self.h5ad.prepare(&self.data)?;
        let (g, c) = (crop.table.n_genes(), crop.class_names.len());
        let spec = match self.scale {
            Scale::Small => SpatiaSpec::small(g, c, self.levels),
            Scale::Large => SpatiaSpec::large(g, c, self.levels),
        };
        let mut spec = if images { spec } else { spec.without_images() };
        if let RegionSide::Niches(side) = self.region_niches {
            spec.region_niches = side;
        }
        let mut data = SpatiaData::build(&crop, &spec, self.max_regions).context("building SPATIA niches and regions")?;
        if let RegionSide::Slide = self.region_niches {
            // One region over the whole niche grid: the grid does not depend on the region side,
            // so the data is rebuilt once with the side it needs.
            let side = data.grid.n_cols.max(data.grid.n_rows);
            if side > MAX_SLIDE_REGION_SIDE {
                bail!(
                    "--region-niches slide: the slide's niche grid is {}×{} niches, more than one tissue transformer takes ({MAX_SLIDE_REGION_SIDE}×{MAX_SLIDE_REGION_SIDE}); give a region side such as 4",
                    data.grid.n_cols,
                    data.grid.n_rows
                );
            }
            spec.region_niches = side;
            data = SpatiaData::build(&crop, &spec, self.max_regions).context("building SPATIA niches and regions")?;
        }
        eprintln!(
            "SPATIA data ({}): {} niches of {} px ({:.1} µm), {} regions of {}×{} niches with cells, {} of {} cells in a region",
            if spec.images { "with images" } else { "image-free" },
            data.grid.niches.len(),
            spec.niche_tile_px,
            spec.niche_side_um(),
            data.regions.len(),
            spec.region_niches,
            spec.region_niches,
            data.assigned.iter().filter(|&&a| a).count(),
            data.n_cells()
        );
        Ok((crop, spec, data))
    }
}

fn log(line: String) {
    eprintln!("{line}");
}

#[derive(Args)]
struct PretrainArgs {
    #[command(flatten)]
    model: ModelFlags,
    /// Output folder.
    #[arg(long, default_value = "runs/spatia")]
    out: PathBuf,
    /// Epochs.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Share of genes masked.
    #[arg(long, default_value_t = 0.25)]
    gene_mask: f64,
    /// Share of ViT patches masked.
    #[arg(long, default_value_t = 0.5)]
    image_mask: f64,
}

#[derive(Args, Clone)]
struct SplitFlags {
    /// random or spatial-blocks.
    #[arg(long, default_value = "spatial-blocks")]
    split: SplitKind,
    /// Spatial block side in µm.
    #[arg(long, default_value_t = 100.0)]
    block_um: f64,
    /// Held-out share of the single split.
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// Share of the training cells used for validation.
    #[arg(long, default_value_t = 0.15)]
    val_fraction: f64,
    /// Fine-tuning epochs (at most; early stop after --patience epochs without a better
    /// validation macro-F1).
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Early-stopping patience in epochs.
    #[arg(long, default_value_t = 8)]
    patience: usize,
}

impl SplitFlags {
    fn plan<'a>(&self, k: usize, crop: &'a PreparedCrop, seed: u64) -> FoldPlan<'a> {
        FoldPlan {
            kind: self.split,
            k,
            test_fraction: self.test_fraction,
            val_fraction: self.val_fraction,
            block_um: self.block_um,
            centroids: Some(&crop.table.centroids_um),
            seed,
        }
    }
}

#[derive(Args)]
struct FinetuneArgs {
    #[command(flatten)]
    model: ModelFlags,
    #[command(flatten)]
    split: SplitFlags,
    /// Folder of `spatia pretrain` to start the cell level from.
    #[arg(long)]
    pretrained: Option<PathBuf>,
    /// Output folder.
    #[arg(long, default_value = "runs/spatia")]
    out: PathBuf,
}

#[derive(Args)]
struct EmbedArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    h5ad: H5adFlags,
    /// Folder holding spatia_model.{json,bin}.
    #[arg(long, default_value = "runs/spatia")]
    model: PathBuf,
    /// Use only the first N tissue regions with cells.
    #[arg(long)]
    max_regions: Option<usize>,
    /// Output folder.
    #[arg(long, default_value = "runs/spatia/embed")]
    out: PathBuf,
    /// Seed of the niche k-means.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Args)]
struct ExportArgs {
    /// Folder holding spatia_model.{json,bin}.
    #[arg(long, default_value = "runs/spatia")]
    model: PathBuf,
    /// Output file.
    #[arg(long, default_value = "runs/spatia/spatia.safetensors")]
    out: PathBuf,
    /// Quantise the linear weights to int8 (per output channel, symmetric).
    #[arg(long)]
    int8: bool,
    /// niche_centroids.json written by `spatia embed` (stored in the file's metadata, so the
    /// engine assigns niche clusters without re-running k-means).
    #[arg(long)]
    niche_centroids: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Engine {
    /// The burn-free CPU engine.
    Cpu,
    /// The WGSL engine (wgpu: Vulkan/Metal/DX12, or software Vulkan), one command buffer per
    /// tissue region; honours `--no-gpu-fast-paths` style defaults (SPATIA uses the portable
    /// kernels).
    Wgpu,
}

#[derive(Args)]
struct ClassifyArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    h5ad: H5adFlags,
    /// File written by `spatia export`.
    #[arg(long)]
    model: PathBuf,
    /// Engine.
    #[arg(long, value_enum, default_value = "cpu")]
    engine: Engine,
    /// Use only the first N tissue regions with cells.
    #[arg(long)]
    max_regions: Option<usize>,
    /// Output folder.
    #[arg(long, default_value = "runs/spatia/classify")]
    out: PathBuf,
    /// Also write the browser check's bundle here (the model file, every region's inputs and
    /// the native predictions and niche clusters; `train::spatia::write_www_bundle`).
    #[arg(long)]
    www: Option<PathBuf>,
}

#[derive(Args)]
struct AblationArgs {
    #[command(flatten)]
    model: ModelFlags,
    #[command(flatten)]
    split: SplitFlags,
    /// Folds.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Pre-training epochs.
    #[arg(long, default_value_t = 10)]
    pretrain_epochs: usize,
    /// Output folder.
    #[arg(long, default_value = "runs/spatia")]
    out: PathBuf,
}

#[derive(Args)]
struct ScaleArgs {
    #[command(flatten)]
    data: DataArgs,
    /// File written by `spatia export` (int8 or f32).
    #[arg(long)]
    model: PathBuf,
    /// Synthetic cells.
    #[arg(long, default_value_t = 1_000_000)]
    cells: usize,
    /// Output folder.
    #[arg(long, default_value = "runs/spatia/scale")]
    out: PathBuf,
}

pub(crate) fn cmd_spatia(a: SpatiaArgs) -> Result<()> {
    let device = Default::default();
    match a.command {
        SpatiaCommand::Pretrain(a) => {
            let (_, spec, data) = a.model.prepare()?;
            let config = PretrainConfig { epochs: a.epochs, gene_mask: a.gene_mask, image_mask: a.image_mask, seed: a.model.seed, ..Default::default() };
            let pre = spatia::pretrain::<Ad>(&data, &spec, &config, &device, &mut log)?;
            let mut csv = String::from("epoch,gene_mse,pixel_mse,seconds\n");
            for e in &pre.history {
                csv += &format!("{},{:.6},{:.6},{:.2}\n", e.epoch, e.gene_loss, e.image_loss, e.seconds);
            }
            let training = serde_json::json!({ "pretrain": config, "history": pre.history });
            spatia::save::<Cpu, _>(&a.out, "spatia_pretrain", &SpatiaHeader::new(spec, vec![], training), &pre.cell)?;
            write_file(&a.out.join("pretrain_loss.csv"), csv.as_bytes())?;
            println!("pre-trained cell level written to {}", a.out.display());
        }
        SpatiaCommand::Finetune(a) => {
            let (crop, spec, data) = a.model.prepare()?;
            let pre = match &a.pretrained {
                Some(dir) => Some(spatia::load_pretrained::<Cpu>(dir, &spec, &device)?),
                None => None,
            };
            let labels: Vec<Option<u32>> = crop.labels.iter().zip(&data.assigned).map(|(l, &x)| if x { *l } else { None }).collect();
            let folds = make_folds(&labels, &a.split.plan(1, &crop, a.model.seed)).map_err(anyhow::Error::msg)?;
            let Some(fold) = folds.first() else { bail!("no fold could be made from the labelled cells") };
            let mut config = FinetuneConfig::new(a.split.epochs, a.model.seed);
            config.train.patience = Some(a.split.patience.max(1));
            let ft = spatia::finetune::<Ad>(&data, &labels, &crop.class_names, fold, &spec, &config, pre.as_ref(), &device, &mut log)?;
            println!(
                "SPATIA ({}) test macro-F1 {:.3} on {} test cells ({} split), best epoch {}",
                spec.levels.name(), ft.report.macro_f1, ft.test_cells.len(), a.split.split.name(), ft.best_epoch
            );
            let mut csv = String::from("epoch,loss,val_macro_f1,seconds\n");
            for e in &ft.history {
                csv += &format!("{},{:.6},{},{:.2}\n", e.epoch, e.loss, e.val_macro_f1.map_or(String::new(), |v| format!("{v:.4}")), e.seconds);
            }
            let training = serde_json::json!({
                "finetune": config, "history": ft.history, "best_epoch": ft.best_epoch,
                "split": a.split.split.name(), "test_cells": ft.test_cells.len(), "test_macro_f1": ft.report.macro_f1,
                "pretrained": a.pretrained.as_ref().map(|p| p.display().to_string()),
            });
            spatia::save::<Cpu, _>(&a.out, "spatia_model", &SpatiaHeader::new(spec, crop.class_names.clone(), training), &ft.model)?;
            write_file(&a.out.join("finetune_history.csv"), csv.as_bytes())?;
            println!("model written to {}", a.out.display());
        }
        SpatiaCommand::Embed(a) => {
            let (header, model) = spatia::load_model::<Cpu>(&a.model, &device)?;
            let crop = a.h5ad.prepare(&a.data)?;
            if crop.class_names != header.class_names {
                bail!("{}: the model was trained on classes {:?} but these cells are labelled {:?}; embed the data it was trained on", a.model.display(), header.class_names, crop.class_names);
            }
            let data = SpatiaData::build(&crop, &header.spec, a.max_regions)?;
            let e = spatia::embed(&model, &data, header.spec.n_classes, header.spec.d_model, &device);
            spatia::write_embeddings(&a.out, &e, &data, &crop.table.cell_ids, &header.class_names)?;
            println!("embeddings of {} cells and {} niches written to {}", data.n_cells(), data.grid.niches.len(), a.out.display());
            if header.spec.levels.has_niche() {
                let nc = spatia::niche_clusters(&e, &data, &crop.labels, &header.class_names, a.seed).context("clustering the niches")?;
                spatia::write_niche_clusters(&a.out, &nc, &data)?;
                print!("{}", nc.markdown());
                println!("niche clusters, enrichment and niche_map.png written to {}", a.out.display());
            } else {
                println!("no niche clusters: the model has no niche level (--levels {})", header.spec.levels.name());
            }
        }
        SpatiaCommand::Export(a) => {
            let (header, model) = spatia::load_model::<Cpu>(&a.model, &device)?;
            let centroids = match &a.niche_centroids {
                Some(p) => {
                    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                    Some(serde_json::from_str(&text).with_context(|| format!("{}: not a niche_centroids.json of `spatia embed`", p.display()))?)
                }
                None => None,
            };
            let mut engine = model.to_engine(&header.spec, header.class_names.clone(), centroids)?;
            if a.int8 {
                engine = engine.quantize_int8();
            }
            engine.save_atomic(&a.out)?;
            println!(
                "SPATIA model (--levels {}, {}{}) written to {}",
                header.spec.levels.name(),
                engine.meta.quantization.as_str(),
                engine.meta.niche_centroids.as_ref().map_or(String::new(), |c| format!(", {} niche centroids", c.k)),
                a.out.display()
            );
        }
        SpatiaCommand::Scale(a) => {
            let model = cellsymphony::engine::SpatiaHierarchyModel::load(&a.model)?;
            let crop = a.data.prepare()?;
            if crop.table.genes.len() != model.meta.spec.n_genes {
                bail!("{}: the model reads {} genes but the cells have {}; use the data it was trained on", a.model.display(), model.meta.spec.n_genes, crop.table.genes.len());
            }
            let data = SpatiaData::build(&crop, &model.meta.spec, None)?;
            let report = cellsymphony::train::spatia_scale::run_scale(&model, &crop, &data, a.cells, &mut log)?;
            let md = report.markdown();
            print!("{md}");
            write_file(&a.out.join("scale.md"), md.as_bytes())?;
            write_file(&a.out.join("scale.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
            println!("wrote {}", a.out.display());
        }
        SpatiaCommand::Classify(a) => {
            let model = cellsymphony::engine::SpatiaHierarchyModel::load(&a.model)?;
            let crop = a.h5ad.prepare(&a.data)?;
            if crop.class_names != model.meta.classes {
                bail!("{}: the model was trained on classes {:?} but these cells are labelled {:?}; classify the data it was trained on", a.model.display(), model.meta.classes, crop.class_names);
            }
            let data = SpatiaData::build(&crop, &model.meta.spec, a.max_regions)?;
            let t = std::time::Instant::now();
            let (e, engine_name) = match a.engine {
                Engine::Cpu => {
                    let cpu = model.prepare()?;
                    (spatia::embed_engine(&cpu, &data)?, "cpu".to_string())
                }
                Engine::Wgpu => {
                    let ctx = crate::common::gpu_context()?;
                    let name = format!("wgpu: {}", ctx.adapter_summary());
                    let gpu = cellsymphony::engine::GpuSpatia::new(ctx, &model).with_context(|| format!("uploading {} to the GPU", a.model.display()))?;
                    (spatia::embed_regions(&model.meta.spec, &data, |input| pollster::block_on(gpu.forward_region(input)))?, name)
                }
            };
            let secs = t.elapsed().as_secs_f64();
            spatia::write_embeddings(&a.out, &e, &data, &crop.table.cell_ids, &model.meta.classes)?;
            let cells = data.assigned.iter().filter(|&&x| x).count();
            println!(
                "SPATIA engine ({engine_name}, {}): {cells} cells in {} regions classified in {secs:.2} s; cells.csv and embeddings written to {}",
                model.meta.quantization.as_str(),
                data.regions.len(),
                a.out.display()
            );
            let clusters = match &model.meta.niche_centroids {
                Some(c) => {
                    let clusters = spatia::assign_niche_clusters(&e, &data, c);
                    spatia::write_niche_cluster_csv(&a.out, &data, &clusters)?;
                    println!("niche clusters ({} centroids) of {} niches written to niche_clusters.csv", c.k, clusters.iter().flatten().count());
                    Some(clusters)
                }
                None => {
                    println!("no niche clusters: the file stores no niche centroids (export with --niche-centroids)");
                    None
                }
            };
            if let Some(www) = &a.www {
                let bytes = std::fs::read(&a.model).with_context(|| format!("reading {}", a.model.display()))?;
                spatia::write_www_bundle(www, &bytes, &data, &e, clusters.as_deref(), &crop.table.cell_ids, &model.meta.classes)?;
                println!("browser bundle written to {}", www.display());
            }
        }
        SpatiaCommand::Ablation(a) => {
            let (crop, spec, data) = a.model.prepare()?;
            let mut config = FinetuneConfig::new(a.split.epochs, a.model.seed);
            config.train.patience = Some(a.split.patience.max(1));
            let pre = PretrainConfig { epochs: a.pretrain_epochs, seed: a.model.seed, ..Default::default() };
            let t = std::time::Instant::now();
            let plan = a.split.plan(a.folds, &crop, a.model.seed);
            let (rows, test) = spatia::run_ablation::<Ad>(&crop, &data, &spec, &config, &pre, &plan, &device, &mut log)?;
            let mut md = spatia::ablation_markdown(&rows, &test);
            md += &format!("\nSplit {} ({} µm blocks), seed {}, {} epochs at most (patience {}), pre-training {} epochs, {}; total {:.0} s.\n",
                a.split.split.name(), a.split.block_um, a.model.seed, a.split.epochs, a.split.patience, a.pretrain_epochs,
                if spec.images { "with images".to_string() } else { format!("image-free ({} cell / {} niche query tokens)", spec.cell_query_tokens, spec.niche_query_tokens) },
                t.elapsed().as_secs_f64());
            print!("{md}");
            std::fs::create_dir_all(&a.out)?;
            write_file(&a.out.join("ablation.md"), md.as_bytes())?;
            write_file(&a.out.join("ablation.json"), serde_json::to_string_pretty(&serde_json::json!({ "rows": rows, "test_cells": test, "spec": spec }))?.as_bytes())?;
        }
    }
    Ok(())
}
