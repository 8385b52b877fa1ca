//! `cellsymphony flow train|sample`: morphology generation by conditional contrastive flow
//! matching on OT pairs (flags here, everything else in `train::flow`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use cellsymphony::model::flow::FlowSpec;
use cellsymphony::train::embeddings::{npy_f32_bytes, read_embeddings_for_cells, Embeddings};
use cellsymphony::train::flow::{self, FlowConfig, FlowPair, Solver};

use crate::common::*;

type Ad = burn::backend::Autodiff<burn::backend::NdArray>;
type Cpu = burn::backend::NdArray;

#[derive(Args)]
pub(crate) struct FlowArgs {
    #[command(subcommand)]
    command: FlowCommand,
}

#[derive(Subcommand)]
enum FlowCommand {
    /// Pair control → target cells (OT, same lineage, spatial term on), train the patch
    /// autoencoder and the flows on the training pairs, evaluate on held-out pairs: writes
    /// model.safetensors + flow.json, metrics.md/json, grid.png, split.csv, pairs.csv, loss.csv.
    Train(TrainFlowArgs),
    /// Generate target morphology for the held-out pairs (or all) of a trained flow: writes
    /// generated.npy ([pairs, S²]), samples.csv and grid.png.
    Sample(SampleArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum SolverArg {
    Euler,
    Heun,
}

impl From<SolverArg> for Solver {
    fn from(s: SolverArg) -> Self {
        match s {
            SolverArg::Euler => Solver::Euler,
            SolverArg::Heun => Solver::Heun,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum SampleEngine {
    Burn,
    Cpu,
    /// The burn-free sampler on WebGPU (`engine::GpuFlowSampler`; lavapipe works).
    Wgpu,
}

#[derive(Args, Clone)]
struct CellEmbeddingFlags {
    /// The control cells' embedding (.npy / .safetensors, one row per cell, e.g. SPATIA's
    /// z_cell.npy from `spatia embed`); default the expression-PCA coordinates.
    #[arg(long)]
    cell_embedding: Option<PathBuf>,
    /// Cell ids of the embedding's rows (see `train --gene-embedding-ids`); default by position.
    #[arg(long)]
    cell_embedding_ids: Option<PathBuf>,
}

impl CellEmbeddingFlags {
    fn read(&self, cell_ids: &[String]) -> Result<Option<Embeddings>> {
        match &self.cell_embedding {
            Some(p) => Ok(Some(read_embeddings_for_cells(p, None, self.cell_embedding_ids.as_deref(), cell_ids)?)),
            None => Ok(None),
        }
    }
}

#[derive(Args)]
struct TrainFlowArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    embedding: CellEmbeddingFlags,
    /// Control state.
    #[arg(long, default_value = "Epithelial")]
    control: String,
    /// Target state.
    #[arg(long, default_value = "Malignant")]
    target: String,
    /// Spatial proximity term of the pairing, λ · distance (cost units per µm).
    #[arg(long, default_value_t = 0.02)]
    spatial_lambda: f32,
    /// Pair by expression only (no spatial term).
    #[arg(long)]
    no_spatial: bool,
    /// Patch side in pixels (a multiple of 8).
    #[arg(long, default_value_t = 32)]
    patch_px: usize,
    /// Patch resolution, µm per pixel.
    #[arg(long, default_value_t = 0.5)]
    um_per_px: f32,
    /// Autoencoder epochs.
    #[arg(long, default_value_t = 12)]
    ae_epochs: usize,
    /// Flow optimisation steps (each flow).
    #[arg(long, default_value_t = 1500)]
    flow_steps: usize,
    /// Weight ρ ∈ [0, 1) of the contrastive term.
    #[arg(long, default_value_t = 0.05)]
    rho: f32,
    /// Sampler steps.
    #[arg(long, default_value_t = 20)]
    sample_steps: usize,
    /// Sampler.
    #[arg(long, value_enum, default_value = "heun")]
    solver: SolverArg,
    /// Held-out share of the pairs.
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// Spatial block side (µm) of the pair split.
    #[arg(long, default_value_t = 100.0)]
    block_um: f64,
    /// Share of training pairs corrupted for the robustness row (0 skips it).
    #[arg(long, default_value_t = 0.15)]
    corrupt_fraction: f64,
    /// Train only the main flow (no unconditional / ρ = 0 / corrupted baselines).
    #[arg(long)]
    no_baselines: bool,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output folder (also receives flow_checkpoint.bin after every autoencoder epoch and
    /// every tenth of each flow's steps).
    #[arg(long, default_value = "runs/flow")]
    out: PathBuf,
    /// Continue from --out's flow_checkpoint.bin (same data and flags); the result equals an
    /// uninterrupted run's.
    #[arg(long)]
    resume: bool,
}

#[derive(Args)]
struct SampleArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    embedding: CellEmbeddingFlags,
    /// Folder written by `flow train`.
    #[arg(long, default_value = "runs/flow")]
    model: PathBuf,
    /// Sampler steps (default: as trained).
    #[arg(long)]
    steps: Option<usize>,
    /// Sampler (default: as trained).
    #[arg(long, value_enum)]
    solver: Option<SolverArg>,
    /// Every pair of split.csv, not only the held-out ones.
    #[arg(long)]
    all: bool,
    /// Sampler: burn (as trained), the burn-free CPU engine (`engine::flow`, what the
    /// browser runs) or the same sampler on WebGPU (`wgpu`: `engine::GpuFlowSampler`, f32
    /// weights; matches `cpu` within 1e-4).
    #[arg(long, value_enum, default_value = "burn")]
    engine: SampleEngine,
    /// Output folder.
    #[arg(long, default_value = "runs/flow/samples")]
    out: PathBuf,
    /// Also write a web-demo folder for the viewer's "predict target morphology" (and the
    /// browser test): model.safetensors, flow.json, every cell's patch (patches.f32,
    /// [cells, S²]), the cell embedding when the flow was trained on one (cell_embedding.f32,
    /// [cells, Z]), and these samples as the native reference (reference.json,
    /// reference_latents.f32 [pairs, L], reference_patches.f32 [pairs, S²]).
    #[arg(long)]
    www: Option<PathBuf>,
}

fn log(line: String) {
    eprintln!("{line}");
}

fn rows(v: &[f32], w: usize, idx: impl Iterator<Item = usize>) -> Vec<f32> {
    idx.flat_map(|i| v[i * w..(i + 1) * w].iter().copied()).collect()
}

pub(crate) fn cmd_flow(a: FlowArgs) -> Result<()> {
    let device = Default::default();
    match a.command {
        FlowCommand::Train(a) => {
            let crop = a.data.prepare()?;
            let emb = a.embedding.read(&crop.table.cell_ids)?;
            let lambda = (!a.no_spatial).then_some(a.spatial_lambda);
            let (data, expression_pca, records) = flow::crop_flow_data(&crop, &a.control, &a.target, lambda, a.patch_px, a.um_per_px, emb.as_ref(), &mut log)
                .with_context(|| format!("pairing {} → {}", a.control, a.target))?;
            let config = FlowConfig {
                ae_epochs: a.ae_epochs,
                flow_steps: a.flow_steps,
                rho: a.rho,
                sample_steps: a.sample_steps,
                solver: a.solver.into(),
                test_fraction: a.test_fraction,
                block_um: a.block_um,
                corrupt_fraction: a.corrupt_fraction,
                baselines: !a.no_baselines,
                seed: a.seed,
                ..Default::default()
            };
            let t = std::time::Instant::now();
            let checkpoint = flow::FlowCheckpoint { dir: Some(a.out.clone()), resume: a.resume, stop_after: None };
            let run = flow::run_flow::<Ad>(&data, FlowSpec::small(1, data.cell_dim), &config, &checkpoint, &device, &mut log)?;
            let mut header = run.header.clone();
            header.sampling.cell_embedding = a.embedding.cell_embedding.as_ref().map_or("expression PCA (50 components of the paired states)".to_string(), |p| p.display().to_string());
            header.sampling.expression_pca = expression_pca;
            header.sampling.um_per_px = a.um_per_px;
            header.sampling.genes = crop.table.genes.clone();
            header.sampling.normalisation = Some(crop.normalisation.clone());
            header.pairing = serde_json::json!({ "control": a.control, "target": a.target, "spatial_lambda": lambda });
            std::fs::create_dir_all(&a.out)?;
            flow::save::<Cpu>(&a.out, &header, &run.model)?;
            let md = flow::metrics_markdown(&run.metrics, run.test.len(), run.reconstruction)
                + &format!(
                    "\nPairs: {} {} → {} (OT on expression PCA, spatial λ {:?} per µm), {} training / {} held out; ρ = {}, {:?} with {} steps, seed {}; cell embedding: {}; {:.0} s in all.\n",
                    data.pairs.len(), a.control, a.target, lambda, run.train.len(), run.test.len(), config.rho, config.solver, config.sample_steps, config.seed, header.sampling.cell_embedding, t.elapsed().as_secs_f64()
                );
            print!("{md}");
            write_file(&a.out.join("metrics.md"), md.as_bytes())?;
            write_file(&a.out.join("metrics.json"), serde_json::to_string_pretty(&header.metrics)?.as_bytes())?;
            cellsymphony::ot::write_pairs_csv(&a.out.join("pairs.csv"), &records)?;
            let mut split = String::from("ctrl_id,tgt_id,split\n");
            for (i, p) in data.pairs.iter().enumerate() {
                let which = if run.test.contains(&i) { "test" } else if run.train.contains(&i) { "train" } else { "unused" };
                split += &format!("{},{},{which}\n", crop.table.cell_ids[p.ctrl], crop.table.cell_ids[p.tgt]);
            }
            write_file(&a.out.join("split.csv"), split.as_bytes())?;
            let mut loss = String::from("stage,step,flow_matching,total\n");
            for (e, l) in run.ae_history.iter().enumerate() {
                loss += &format!("autoencoder,{},{l:.6},{l:.6}\n", e + 1);
            }
            for h in &run.flow_history {
                loss += &format!("flow,{},{:.6},{:.6}\n", h.step, h.flow_matching, h.total);
            }
            write_file(&a.out.join("loss.csv"), loss.as_bytes())?;
            let s2 = data.patch_px * data.patch_px;
            let ctrl = rows(&data.patches, s2, run.test.iter().map(|&i| data.pairs[i].ctrl));
            let real = rows(&data.patches, s2, run.test.iter().map(|&i| data.pairs[i].tgt));
            flow::grid_png(&a.out.join("grid.png"), data.patch_px, &ctrl, &run.generated, &real, 8, 3)?;
            println!("flow model, metrics.md and grid.png written to {}", a.out.display());
        }
        FlowCommand::Sample(a) => {
            let (header, model) = flow::load::<Cpu>(&a.model, &device)?;
            let crop = a.data.prepare()?;
            let emb = a.embedding.read(&crop.table.cell_ids)?;
            if emb.is_none() && header.sampling.expression_pca.is_none() {
                bail!("{}: the flow was trained with the cell embedding {}; pass it with --cell-embedding", a.model.display(), header.sampling.cell_embedding);
            }
            let index: std::collections::HashMap<&str, usize> = crop.table.cell_ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
            let split_path = a.model.join("split.csv");
            let text = std::fs::read_to_string(&split_path).with_context(|| format!("reading {}", split_path.display()))?;
            let mut pairs = Vec::new();
            for (n, line) in text.lines().enumerate().skip(1) {
                let f: Vec<&str> = line.split(',').collect();
                let [c, t, which] = f[..] else { bail!("{} line {}: expected ctrl_id,tgt_id,split", split_path.display(), n + 1) };
                if !(a.all || which == "test") {
                    continue;
                }
                match (index.get(c), index.get(t)) {
                    (Some(&ctrl), Some(&tgt)) => pairs.push(FlowPair { ctrl, tgt, token: 0 }),
                    _ => bail!("{} line {}: cell {c} or {t} is not in these cells; sample with the data the flow was trained on", split_path.display(), n + 1),
                }
            }
            let data = flow::crop_cells_data(&crop, header.sampling.spec.patch_px, header.sampling.um_per_px, emb.as_ref(), header.sampling.expression_pca.as_ref(), pairs.clone(), header.sampling.transitions.clone())?;
            let mut config = header.config.clone();
            if let Some(s) = a.steps {
                config.sample_steps = s;
            }
            if let Some(s) = a.solver {
                config.solver = s.into();
            }
            let s2 = data.patch_px * data.patch_px;
            let (latents, generated) = match a.engine {
                SampleEngine::Burn => flow::sample_latents_with(&model, &header, &data, &pairs, &config, &device)?,
                SampleEngine::Cpu | SampleEngine::Wgpu => {
                    let path = a.model.join("model.safetensors");
                    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                    let sampler = cellsymphony::engine::flow::FlowSampler::from_safetensors(&bytes).with_context(|| path.display().to_string())?;
                    let (tokens, dg, cell) = flow::pair_condition(&header, &data, &pairs)?;
                    let ctrl = rows(&data.patches, s2, pairs.iter().map(|p| p.ctrl));
                    let cond = cellsymphony::engine::flow::FlowCondition { tokens: &tokens, dg: &dg, cell: &cell };
                    let sample = if matches!(a.engine, SampleEngine::Wgpu) {
                        let ctx = gpu_context()?;
                        log(format!("flow sample: WebGPU adapter {}", ctx.adapter_summary()));
                        let gpu = cellsymphony::engine::GpuFlowSampler::new(ctx, &sampler).with_context(|| format!("uploading {} to the GPU", path.display()))?;
                        pollster::block_on(gpu.sample(&ctrl, &cond, &header.sampling.latent_mean, header.sampling.latent_scale, config.sample_steps, config.solver))?
                    } else {
                        sampler.sample(&ctrl, &cond, &header.sampling.latent_mean, header.sampling.latent_scale, config.sample_steps, config.solver)?
                    };
                    (sample.latents, sample.patches)
                }
            };
            std::fs::create_dir_all(&a.out)?;
            write_file(&a.out.join("generated.npy"), &npy_f32_bytes(&generated, pairs.len(), s2))?;
            let mut csv = String::from("row,ctrl_id,tgt_id\n");
            for (r, p) in pairs.iter().enumerate() {
                csv += &format!("{r},{},{}\n", crop.table.cell_ids[p.ctrl], crop.table.cell_ids[p.tgt]);
            }
            write_file(&a.out.join("samples.csv"), csv.as_bytes())?;
            let ctrl = rows(&data.patches, s2, pairs.iter().map(|p| p.ctrl));
            let real = rows(&data.patches, s2, pairs.iter().map(|p| p.tgt));
            flow::grid_png(&a.out.join("grid.png"), data.patch_px, &ctrl, &generated, &real, 8, 3)?;
            println!("{} generated patches ({:?}, {} steps) written to {}", pairs.len(), config.solver, config.sample_steps, a.out.display());
            if let Some(www) = &a.www {
                let engine = match a.engine {
                    SampleEngine::Burn => "burn",
                    SampleEngine::Cpu => "cpu",
                    SampleEngine::Wgpu => "wgpu",
                };
                let reference = serde_json::json!({
                    "engine": engine,
                    "steps": config.sample_steps,
                    "solver": config.solver,
                    "patch_px": data.patch_px,
                    "latent": header.sampling.spec.latent,
                    "cell_dim": data.cell_dim,
                    "cell_ids": crop.table.cell_ids,
                    "cell_embedding": emb.is_some(),
                    "pairs": pairs.iter().map(|p| serde_json::json!({"ctrl_id": crop.table.cell_ids[p.ctrl], "tgt_id": crop.table.cell_ids[p.tgt], "token": p.token})).collect::<Vec<_>>(),
                });
                for f in ["model.safetensors", "flow.json"] {
                    let bytes = std::fs::read(a.model.join(f)).with_context(|| format!("reading {}", a.model.join(f).display()))?;
                    write_file(&www.join(f), bytes)?;
                }
                let f32_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
                write_file(&www.join("patches.f32"), f32_bytes(&data.patches))?;
                if emb.is_some() {
                    write_file(&www.join("cell_embedding.f32"), f32_bytes(&data.cell_emb))?;
                }
                write_file(&www.join("reference_latents.f32"), f32_bytes(&latents))?;
                write_file(&www.join("reference_patches.f32"), f32_bytes(&generated))?;
                write_file(&www.join("reference.json"), serde_json::to_string(&reference)?)?;
                println!("web-demo flow folder written to {} ({} cells' patches, {} reference samples)", www.display(), data.n_cells(), pairs.len());
            }
        }
    }
    Ok(())
}
