//! Morphology generation by conditional contrastive flow matching on OT pairs (issue 16,
//! first native slice; the modules are in [`crate::model::flow`]).
//!
//! 1. **Pairs** ([`crop_flow_data`]): control and target cells of one lineage paired by
//!    entropic OT on expression PCA ([`crate::ot::pair_states`], CPU), with the spatial
//!    proximity term `λ · distance_µm` on by default.
//! 2. **Split by pair, spatially** ([`split_pairs`]): blocks of `block_um` µm (by the control
//!    cell's centroid) are held out until `test_fraction` of the pairs are; training pairs
//!    that share a cell with a held-out pair are dropped.
//! 3. **Latent space**: a convolutional patch autoencoder trained (MSE) on every cell except
//!    the held-out pairs' cells; reconstruction MSE / PSNR reported on those held-out cells.
//! 4. **Flow**: `e_pert = MLP(token ‖ PCA(Δg))` (PCA fitted on training pairs), velocity
//!    network with FiLM on `(t, e_pert, z_ctrl)`, loss on the bridge
//!    `ℓ_t = (1 − t) ℓ_ctrl + t ℓ_tgt`: `‖v − (ℓ_tgt − ℓ_ctrl)‖² − ρ ‖v − (ℓ'_tgt − ℓ'_ctrl)‖²`
//!    with the negative `'` another pair of the batch (contrastive flow matching; ρ ∈ [0, 1)).
//! 5. **Sampling**: Euler or Heun from `ℓ_ctrl`, decoded.
//! 5b. **Resume** ([`FlowCheckpoint`]): one atomic checkpoint file after every autoencoder
//!    epoch and every tenth of each flow's steps (weights, AdamW state, RNG states, loss
//!    history, finished rows); a resumed run continues bit for bit.
//! 6. **Metrics** on held-out pairs against their real targets ([`evaluate`]): FID / KID on
//!    the autoencoder's encoder features (our own image encoder, not Inception), latent and
//!    pixel MSE to the paired target, and KS / W1 per nucleus morphology feature; baselines
//!    in the same table (identity, nearest real target in expression, unconditional flow,
//!    ρ = 0, corrupted pairs).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Record, Recorder};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ElementConversion;
use serde::{Deserialize, Serialize};

use super::dataset::PreparedCrop;
use super::embeddings::Embeddings;
use super::spatia::SpatiaData;
use super::TrainError;
use crate::analysis::generative::{frechet_distance, kernel_distance, ks_statistic, nucleus_features, wasserstein_1d, NUCLEUS_FEATURES};
use crate::model::flow::{FlowCondition, FlowSpec, PatchAutoencoder, VelocityNet};
use crate::ot::{self, Pca, PcaOptions};
use crate::util::rng::SplitMix64;

/// One OT pair as the flow reads it (cell indices into [`FlowData`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowPair {
    /// Control cell.
    pub ctrl: usize,
    /// Matched target cell.
    pub tgt: usize,
    /// Transition token (index into [`FlowData::transitions`]).
    pub token: u32,
}

/// Everything the flow reads, per cell, and the pairs.
#[derive(Debug, Clone)]
pub struct FlowData {
    /// Patch side `S`.
    pub patch_px: usize,
    /// Nucleus-centred patches `[cells, S²]` in `[0, 1]`.
    pub patches: Vec<f32>,
    /// Genes `G`.
    pub n_genes: usize,
    /// Normalised expression `[cells, G]`.
    pub x: Vec<f32>,
    /// Width `Z` of the cell embedding.
    pub cell_dim: usize,
    /// The cell embedding `z` `[cells, Z]` (the control's is the condition).
    pub cell_emb: Vec<f32>,
    /// Centroids in µm `[cells]`.
    pub positions_um: Vec<[f32; 2]>,
    /// Pairs.
    pub pairs: Vec<FlowPair>,
    /// Transition names (`control → target`), one per token.
    pub transitions: Vec<String>,
}

impl FlowData {
    /// Cells.
    pub fn n_cells(&self) -> usize {
        self.positions_um.len()
    }

    fn check(&self) -> Result<(), TrainError> {
        let n = self.n_cells();
        let s2 = self.patch_px * self.patch_px;
        for (what, len, want) in [("patches", self.patches.len(), n * s2), ("expression", self.x.len(), n * self.n_genes), ("cell embedding", self.cell_emb.len(), n * self.cell_dim)] {
            if len != want {
                return Err(TrainError::MissingInput { input: "flow data", detail: format!("{what} has {len} values, expected {want} for {n} cells") });
            }
        }
        if let Some(p) = self.pairs.iter().find(|p| p.ctrl >= n || p.tgt >= n || p.token as usize >= self.transitions.len()) {
            return Err(TrainError::Options(format!("pair {p:?} refers to a cell or transition that does not exist ({n} cells, {} transitions)", self.transitions.len())));
        }
        Ok(())
    }
}

/// ODE solver of the sampler (shared with the burn-free sampler).
pub use crate::engine::flow::FlowSolver as Solver;

/// Training, sampling and evaluation settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowConfig {
    /// Autoencoder epochs.
    pub ae_epochs: usize,
    /// Autoencoder learning rate (AdamW).
    pub ae_lr: f64,
    /// Flow optimisation steps.
    pub flow_steps: usize,
    /// Flow learning rate (AdamW).
    pub flow_lr: f64,
    /// Batch size (both).
    pub batch: usize,
    /// Weight ρ ∈ [0, 1) of the contrastive term.
    pub rho: f32,
    /// Sampler steps.
    pub sample_steps: usize,
    /// Sampler.
    pub solver: Solver,
    /// Held-out share of the pairs.
    pub test_fraction: f64,
    /// Spatial block side (µm) of the pair split.
    pub block_um: f64,
    /// Share of training pairs whose target is swapped for the robustness row (0 skips it).
    pub corrupt_fraction: f64,
    /// Train the baselines (unconditional flow, ρ = 0, corrupted pairs) too.
    pub baselines: bool,
    /// Δg PCA components (at most).
    pub dg_components: usize,
    /// Seed.
    pub seed: u64,
}

impl Default for FlowConfig {
    /// The CPU default: autoencoder 12 epochs at lr 2e-3, flow 1500 steps at lr 1e-3, batch
    /// 64, ρ = 0.05, Heun with 20 steps, 20 % of pairs held out in 100 µm blocks, 15 %
    /// corrupted pairs for the robustness row, 16 Δg components.
    fn default() -> Self {
        Self {
            ae_epochs: 12,
            ae_lr: 2e-3,
            flow_steps: 1500,
            flow_lr: 1e-3,
            batch: 64,
            rho: 0.05,
            sample_steps: 20,
            solver: Solver::Heun,
            test_fraction: 0.2,
            block_um: 100.0,
            corrupt_fraction: 0.15,
            baselines: true,
            dg_components: 16,
            seed: 42,
        }
    }
}

impl FlowConfig {
    fn check(&self) -> Result<(), TrainError> {
        if !(0.0..1.0).contains(&self.rho) {
            return Err(TrainError::Options(format!("rho {} must be in [0, 1) (the contrastive term is subtracted; ρ ≥ 1 makes the loss unbounded)", self.rho)));
        }
        if !(0.0..1.0).contains(&self.test_fraction) || self.test_fraction == 0.0 {
            return Err(TrainError::Options(format!("test fraction {} must be in (0, 1)", self.test_fraction)));
        }
        if !(0.0..0.5).contains(&self.corrupt_fraction) {
            return Err(TrainError::Options(format!("corrupt fraction {} must be in [0, 0.5)", self.corrupt_fraction)));
        }
        if self.batch < 2 || self.sample_steps == 0 || self.dg_components == 0 {
            return Err(TrainError::Options("batch must be ≥ 2, sample steps and Δg components ≥ 1".into()));
        }
        Ok(())
    }
}

/// The autoencoder and the velocity network of one trained flow (the checkpoint).
#[derive(Module, Debug)]
pub struct FlowModel<B: Backend> {
    /// Patch autoencoder.
    pub ae: PatchAutoencoder<B>,
    /// Velocity network (with its perturbation encoder).
    pub net: VelocityNet<B>,
}

/// Everything besides the weights that sampling needs (`flow.json`): the conditioning fields
/// every reader shares ([`ot::FlowConditioning`], flattened into the file), the training
/// config, the pairing and the metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowHeader {
    /// Sizes, latent normalisation, the Δg / expression PCAs, genes (what sampling reads).
    #[serde(flatten)]
    pub sampling: ot::FlowConditioning,
    /// Settings it was trained with.
    pub config: FlowConfig,
    /// Control and target states, and the spatial λ of the pairing.
    pub pairing: serde_json::Value,
    /// Metrics of the training run.
    pub metrics: serde_json::Value,
}

/// Where [`run_flow`] writes its checkpoint and whether it resumes from it.
#[derive(Debug, Clone, Default)]
pub struct FlowCheckpoint {
    /// Folder receiving [`FLOW_CHECKPOINT_FILE`] (atomically) after every autoencoder epoch,
    /// every tenth of each flow's steps and every finished flow; `None` writes nothing.
    pub dir: Option<PathBuf>,
    /// Continue from the checkpoint in `dir` when there is one (a fresh start otherwise).
    pub resume: bool,
    /// Stop with [`TrainError::Interrupted`] right after writing this many checkpoints (tests,
    /// time-boxed runs).
    pub stop_after: Option<usize>,
}

/// File name of the flow checkpoint inside [`FlowCheckpoint::dir`].
pub const FLOW_CHECKPOINT_FILE: &str = "flow_checkpoint.bin";

const CHECKPOINT_PARTS: [&str; 7] = ["progress (bincode)", "autoencoder record", "autoencoder optimizer record", "flow record", "flow optimizer record", "main flow record", "crc32 of the parts"];

/// crc32 of the checkpoint's parts (checked before decoding, whose bincode reader panics on
/// corrupt bytes).
fn parts_crc(parts: &[&[u8]]) -> [u8; 4] {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().to_le_bytes()
}
const AE: usize = 0;
const AE_OPTIM: usize = 1;
const NET: usize = 2;
const NET_OPTIM: usize = 3;
const MAIN: usize = 4;

/// Progress of a flow run (the checkpoint's first part, bincode so that every float comes
/// back bit for bit).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct FlowProgress {
    /// Settings, sizes and a checksum of the pairs the run started with, as JSON (compared on
    /// resume).
    run: String,
    /// Autoencoder epochs done, their losses, and the shuffling state after them.
    ae_epochs: usize,
    ae_history: Vec<f64>,
    ae_rng: u64,
    ae_order: Vec<usize>,
    /// Flow variants finished (main flow first) and their metrics rows.
    variants: usize,
    metrics: Vec<MethodMetrics>,
    main_history: Vec<FlowLoss>,
    /// Steps done in the current variant, its sampling state and loss windows.
    flow_steps: usize,
    flow_rng: u64,
    flow_history: Vec<FlowLoss>,
}

/// Keeps the progress and records of a run and writes them as one file.
struct Checkpointer<'a> {
    opts: &'a FlowCheckpoint,
    progress: FlowProgress,
    /// Records (burn bincode, full precision) in the order of `CHECKPOINT_PARTS[1..]`.
    parts: [Vec<u8>; 5],
    written: usize,
}

impl<'a> Checkpointer<'a> {
    /// A fresh checkpointer, or the checkpoint of `opts.dir` when resuming (refused when it was
    /// written for other settings or data).
    fn start(opts: &'a FlowCheckpoint, run: String) -> Result<Self, TrainError> {
        let mut ck = Self { opts, progress: FlowProgress { run, ..Default::default() }, parts: Default::default(), written: 0 };
        let Some(dir) = &opts.dir else { return Ok(ck) };
        super::trainer::check_writable(dir)?;
        let path = dir.join(FLOW_CHECKPOINT_FILE);
        if !opts.resume || !path.exists() {
            return Ok(ck);
        }
        let bad = |problem: String| TrainError::Checkpoint { path: path.display().to_string(), problem };
        let mut parts = super::trainer::read_parts(&path, &CHECKPOINT_PARTS)?;
        let stored = parts.pop().unwrap_or_default();
        if stored != parts_crc(&parts.iter().map(Vec::as_slice).collect::<Vec<_>>()) {
            return Err(bad("its checksum does not match (a damaged or partial copy); delete it to start afresh".into()));
        }
        let progress: FlowProgress = Recorder::<burn::backend::NdArray>::load_item(&BinBytesRecorder::<FullPrecisionSettings>::default(), &mut parts[0])
            .map_err(|e| bad(format!("progress does not decode ({e}); delete it to start afresh")))?;
        if progress.run != ck.progress.run {
            return Err(bad(format!("was written for the run {} but this run is {}; resume with the same data and settings, or delete the checkpoint", progress.run, ck.progress.run)));
        }
        ck.progress = progress;
        for (slot, part) in ck.parts.iter_mut().zip(parts.drain(1..)) {
            *slot = part;
        }
        Ok(ck)
    }

    fn record<B: Backend, R: Record<B>>(record: R) -> Result<Vec<u8>, TrainError> {
        Recorder::<B>::record(&BinBytesRecorder::<FullPrecisionSettings>::default(), record, ()).map_err(|e| TrainError::Checkpoint { path: "(in memory)".into(), problem: e.to_string() })
    }

    /// The record in part `k`.
    fn load<B: Backend, R: Record<B>>(&self, k: usize, device: &B::Device) -> Result<R, TrainError> {
        let path = self.opts.dir.as_deref().unwrap_or(Path::new(".")).join(FLOW_CHECKPOINT_FILE);
        Recorder::<B>::load(&BinBytesRecorder::<FullPrecisionSettings>::default(), self.parts[k].clone(), device)
            .map_err(|e| TrainError::Checkpoint { path: path.display().to_string(), problem: format!("the {} does not load ({e}); delete the checkpoint to start afresh", CHECKPOINT_PARTS[k + 1]) })
    }

    /// Whether a checkpoint is written at all (records are only serialised then).
    fn active(&self) -> bool {
        self.opts.dir.is_some()
    }

    /// Writes the checkpoint; stops the run when `stop_after` checkpoints are written.
    fn save(&mut self) -> Result<(), TrainError> {
        let Some(dir) = &self.opts.dir else { return Ok(()) };
        let path = dir.join(FLOW_CHECKPOINT_FILE);
        let progress = Recorder::<burn::backend::NdArray>::save_item(&BinBytesRecorder::<FullPrecisionSettings>::default(), self.progress.clone(), ())
            .map_err(|e| TrainError::Checkpoint { path: path.display().to_string(), problem: e.to_string() })?;
        let mut parts: Vec<&[u8]> = vec![&progress];
        parts.extend(self.parts.iter().map(Vec::as_slice));
        let crc = parts_crc(&parts);
        parts.push(&crc);
        super::trainer::write_parts(&path, &parts)?;
        self.written += 1;
        if self.opts.stop_after == Some(self.written) {
            return Err(TrainError::Interrupted { path: path.display().to_string(), written: self.written });
        }
        Ok(())
    }
}

/// Holds out whole spatial blocks of pairs (by the control's centroid, blocks of `block_um`
/// µm drawn in a seeded order) until `test_fraction` of the pairs are held out; training
/// pairs that share a control or target cell with a held-out pair are dropped. Returns
/// `(train, test)` pair indices.
pub fn split_pairs(data: &FlowData, test_fraction: f64, block_um: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>), TrainError> {
    let n = data.pairs.len();
    if n < 4 {
        return Err(TrainError::Options(format!("only {n} pairs; need at least 4 to hold some out")));
    }
    let key = |p: &FlowPair| {
        let [x, y] = data.positions_um[p.ctrl];
        ((x as f64 / block_um).floor() as i64, (y as f64 / block_um).floor() as i64)
    };
    let mut blocks: Vec<(i64, i64)> = data.pairs.iter().map(key).collect();
    blocks.sort_unstable();
    blocks.dedup();
    SplitMix64::new(seed ^ 0xF10E).shuffle(&mut blocks);
    let want = ((n as f64 * test_fraction).round() as usize).clamp(2, n - 2);
    let mut held = std::collections::HashSet::new();
    let mut count = 0;
    for b in blocks {
        if count >= want {
            break;
        }
        count += data.pairs.iter().filter(|p| key(p) == b).count();
        held.insert(b);
    }
    let test: Vec<usize> = (0..n).filter(|&i| held.contains(&key(&data.pairs[i]))).collect();
    let used: std::collections::HashSet<usize> = test.iter().flat_map(|&i| [data.pairs[i].ctrl, data.pairs[i].tgt]).collect();
    let train: Vec<usize> = (0..n).filter(|&i| !held.contains(&key(&data.pairs[i])) && !used.contains(&data.pairs[i].ctrl) && !used.contains(&data.pairs[i].tgt)).collect();
    if train.len() < 2 || test.len() < 2 {
        return Err(TrainError::Options(format!("the spatial split left {} training and {} held-out pairs; use smaller --block-um or more pairs", train.len(), test.len())));
    }
    Ok((train, test))
}

fn tensor2<B: Backend>(v: Vec<f32>, rows: usize, cols: usize, device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(v, [rows, cols]), device)
}

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec::<f32>().unwrap_or_default()
}

/// Trains the autoencoder on patches of `cells` (MSE, AdamW), checkpointing after every epoch
/// and continuing after the checkpoint's epochs; returns it and the mean loss per epoch.
fn train_autoencoder<B: AutodiffBackend>(
    data: &FlowData,
    cells: &[usize],
    spec: &FlowSpec,
    config: &FlowConfig,
    device: &B::Device,
    ck: &mut Checkpointer,
    log: &mut dyn FnMut(String),
) -> Result<(PatchAutoencoder<B::InnerBackend>, Vec<f64>), TrainError> {
    B::seed(device, config.seed);
    let mut ae = PatchAutoencoder::<B>::init(spec, device);
    let mut optim = AdamWConfig::new().with_weight_decay(1e-4).init::<B, PatchAutoencoder<B>>();
    let mut rng = SplitMix64::new(config.seed ^ 0xAE);
    let (s, mut order, mut history) = (data.patch_px, cells.to_vec(), Vec::new());
    let done = ck.progress.ae_epochs;
    if done > 0 {
        ae = ae.load_record(ck.load::<B, _>(AE, device)?);
        if done < config.ae_epochs {
            optim = optim.load_record(ck.load::<B, _>(AE_OPTIM, device)?);
        }
        (rng, order, history) = (SplitMix64::new(ck.progress.ae_rng), ck.progress.ae_order.clone(), ck.progress.ae_history.clone());
        log(format!("autoencoder: resumed after epoch {done}"));
    }
    for epoch in done + 1..=config.ae_epochs {
        rng.shuffle(&mut order);
        let (mut sum, mut steps) = (0.0, 0usize);
        for chunk in order.chunks(config.batch) {
            let x = SpatiaData::rows::<B>(&data.patches, s * s, chunk, device).reshape([chunk.len(), s, s]);
            let err = ae.decode(ae.encode(x.clone())) - x;
            let loss = (err.clone() * err).mean();
            sum += loss.clone().into_scalar().elem::<f64>();
            steps += 1;
            let grads = GradientsParams::from_grads(loss.backward(), &ae);
            ae = optim.step(config.ae_lr, ae, grads);
        }
        history.push(sum / steps.max(1) as f64);
        if epoch == 1 || epoch % 10 == 0 || epoch == config.ae_epochs {
            log(format!("autoencoder epoch {epoch}/{}: pixel MSE {:.5}", config.ae_epochs, history[epoch - 1]));
        }
        if ck.active() {
            let last = epoch == config.ae_epochs;
            ck.parts[AE] = Checkpointer::record::<B, _>(ae.clone().into_record())?;
            // The optimizer state is only needed to continue this stage.
            ck.parts[AE_OPTIM] = if last { Vec::new() } else { Checkpointer::record::<B, _>(optim.to_record())? };
            ck.progress.ae_epochs = epoch;
            (ck.progress.ae_history, ck.progress.ae_rng, ck.progress.ae_order) = (history.clone(), rng.state(), order.clone());
            ck.save()?;
        }
    }
    Ok((ae.valid(), history))
}

/// Latents `[cells, L]` of patches `[cells, S²]`.
pub fn encode_patches<B: Backend>(ae: &PatchAutoencoder<B>, patches: &[f32], s: usize, device: &B::Device) -> Vec<f32> {
    let n = patches.len() / (s * s);
    let mut out = Vec::new();
    for start in (0..n).step_by(256) {
        let idx: Vec<usize> = (start..(start + 256).min(n)).collect();
        let x = SpatiaData::rows::<B>(patches, s * s, &idx, device).reshape([idx.len(), s, s]);
        out.extend(to_vec(ae.encode(x)));
    }
    out
}

/// Patches `[n, S²]` of latents `[n, L]`.
pub fn decode_latents<B: Backend>(ae: &PatchAutoencoder<B>, latents: &[f32], l: usize, device: &B::Device) -> Vec<f32> {
    let n = latents.len() / l;
    if n == 0 {
        return Vec::new();
    }
    to_vec(ae.decode(tensor2::<B>(latents.to_vec(), n, l, device)))
}

/// The flow's inputs per pair: normalised control and target latents, scaled Δg PCA
/// coordinates, tokens and control embeddings (all `[pairs, ·]`).
struct PairInputs {
    l: usize,
    k: usize,
    z: usize,
    ctrl: Vec<f32>,
    tgt: Vec<f32>,
    dg: Vec<f32>,
    tokens: Vec<i64>,
    cell: Vec<f32>,
}

impl PairInputs {
    fn rows(v: &[f32], w: usize, idx: &[usize]) -> Vec<f32> {
        idx.iter().flat_map(|&i| v[i * w..(i + 1) * w].iter().copied()).collect()
    }

    fn condition<B: Backend>(&self, idx: &[usize], device: &B::Device) -> FlowCondition<B> {
        let n = idx.len();
        FlowCondition {
            tokens: Tensor::from_data(TensorData::new(idx.iter().map(|&i| self.tokens[i]).collect::<Vec<i64>>(), [n]), device),
            dg: tensor2(Self::rows(&self.dg, self.k, idx), n, self.k, device),
            cell: tensor2(Self::rows(&self.cell, self.z, idx), n, self.z, device),
        }
    }
}

/// One logged window of flow training: step, mean flow-matching term, mean total loss.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct FlowLoss {
    /// Last step of the window.
    pub step: usize,
    /// Mean `‖v − u‖²` (per latent dimension).
    pub flow_matching: f64,
    /// Mean total loss (flow matching − ρ · contrastive).
    pub total: f64,
}

/// Trains a velocity network on the pairs `train` (targets `targets[i]` for `train[i]`'s
/// target latent row, so corrupted targets can be passed), checkpointing every loss window
/// and continuing after the checkpoint's steps.
#[allow(clippy::too_many_arguments)]
fn train_velocity<B: AutodiffBackend>(
    inputs: &PairInputs,
    train: &[usize],
    targets: &[usize],
    spec: &FlowSpec,
    conditional: bool,
    rho: f32,
    config: &FlowConfig,
    device: &B::Device,
    ck: &mut Checkpointer,
) -> Result<(VelocityNet<B::InnerBackend>, Vec<FlowLoss>), TrainError> {
    B::seed(device, config.seed ^ 0xF1);
    let mut net = VelocityNet::<B>::init(spec, conditional, device);
    let mut optim = AdamWConfig::new().with_weight_decay(1e-4).init::<B, VelocityNet<B>>();
    let mut rng = SplitMix64::new(config.seed ^ 0xF10);
    let (l, b) = (inputs.l, config.batch.min(train.len()).max(2));
    let window = (config.flow_steps / 10).max(1);
    let (mut fm_sum, mut tot_sum, mut history) = (0.0, 0.0, Vec::new());
    let done = ck.progress.flow_steps;
    if done > 0 {
        net = net.load_record(ck.load::<B, _>(NET, device)?);
        optim = optim.load_record(ck.load::<B, _>(NET_OPTIM, device)?);
        (rng, history) = (SplitMix64::new(ck.progress.flow_rng), ck.progress.flow_history.clone());
    }
    for step in done + 1..=config.flow_steps {
        let pick: Vec<usize> = (0..b).map(|_| rng.below(train.len() as u64) as usize).collect();
        let pairs: Vec<usize> = pick.iter().map(|&i| train[i]).collect();
        let tgt_rows: Vec<usize> = pick.iter().map(|&i| targets[i]).collect();
        let x0 = tensor2::<B>(PairInputs::rows(&inputs.ctrl, l, &pairs), b, l, device);
        let x1 = tensor2::<B>(PairInputs::rows(&inputs.tgt, l, &tgt_rows), b, l, device);
        let t = tensor2::<B>((0..b).map(|_| rng.next_f32()).collect(), b, 1, device);
        let xt = x0.clone() * (t.clone().neg() + 1.0) + x1.clone() * t.clone();
        let u = x1 - x0;
        let v = net.forward(xt, t, &inputs.condition(&pairs, device));
        let e = v.clone() - u.clone();
        let fm = (e.clone() * e).mean();
        let loss = if rho > 0.0 {
            // The negative of pair i is pair i + 1 of the batch (another pair).
            let u_neg = Tensor::cat(vec![u.clone().slice([1..b, 0..l]), u.slice([0..1, 0..l])], 0);
            let en = v - u_neg;
            fm.clone() - (en.clone() * en).mean() * rho
        } else {
            fm.clone()
        };
        fm_sum += fm.into_scalar().elem::<f64>();
        tot_sum += loss.clone().into_scalar().elem::<f64>();
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = optim.step(config.flow_lr, net, grads);
        if step % window == 0 || step == config.flow_steps {
            let w = (step - 1) % window + 1;
            history.push(FlowLoss { step, flow_matching: fm_sum / w as f64, total: tot_sum / w as f64 });
            (fm_sum, tot_sum) = (0.0, 0.0);
            // Checkpoints fall on window ends (the sums are empty there); the last step's is
            // written by the caller with the finished row.
            if ck.active() && step < config.flow_steps {
                ck.parts[NET] = Checkpointer::record::<B, _>(net.clone().into_record())?;
                ck.parts[NET_OPTIM] = Checkpointer::record::<B, _>(optim.to_record())?;
                (ck.progress.flow_steps, ck.progress.flow_rng, ck.progress.flow_history) = (step, rng.state(), history.clone());
                ck.save()?;
            }
        }
    }
    Ok((net.valid(), history))
}

/// Integrates `dℓ/dt = v(ℓ, t | c)` from `start` `[n, L]` at `t = 0` to `t = 1` in `steps`
/// steps.
pub fn integrate<B: Backend>(net: &VelocityNet<B>, start: Tensor<B, 2>, cond: &FlowCondition<B>, steps: usize, solver: Solver) -> Tensor<B, 2> {
    let n = start.dims()[0];
    let device = start.device();
    let h = 1.0 / steps.max(1) as f32;
    let time = |t: f32| Tensor::<B, 2>::full([n, 1], t, &device);
    let mut x = start;
    for k in 0..steps.max(1) {
        let t = k as f32 * h;
        let v1 = net.forward(x.clone(), time(t), cond);
        x = match solver {
            Solver::Euler => x + v1 * h,
            Solver::Heun => {
                let v2 = net.forward(x.clone() + v1.clone() * h, time(t + h), cond);
                x + (v1 + v2) * (h / 2.0)
            }
        };
    }
    x
}

/// Generated raw latents `[pairs, L]` for pairs `idx`.
fn sample_pairs<B: Backend>(net: &VelocityNet<B>, inputs: &PairInputs, idx: &[usize], norm: (&[f32], f32), config: &FlowConfig, device: &B::Device) -> Vec<f32> {
    let (l, n) = (inputs.l, idx.len());
    let start = tensor2::<B>(PairInputs::rows(&inputs.ctrl, l, idx), n, l, device);
    let out = to_vec(integrate(net, start, &inputs.condition(idx, device), config.sample_steps, config.solver));
    denormalise(&out, norm)
}

fn denormalise(v: &[f32], (mean, scale): (&[f32], f32)) -> Vec<f32> {
    v.iter().enumerate().map(|(k, x)| x * scale + mean[k % mean.len()]).collect()
}

/// The metrics of one method on the held-out pairs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodMetrics {
    /// Method.
    pub name: String,
    /// Fréchet distance on the encoder's features (vs the real held-out targets).
    pub fid: f64,
    /// Kernel distance (unbiased MMD², cubic kernel) on the same features.
    pub kid: f64,
    /// Mean squared error of the encoder features to the paired real target.
    pub latent_mse: f64,
    /// Mean squared pixel error to the paired real target.
    pub pixel_mse: f64,
    /// KS statistic per morphology feature ([`NUCLEUS_FEATURES`]).
    pub ks: Vec<f64>,
    /// 1-D Wasserstein distance per morphology feature.
    pub w1: Vec<f64>,
}

fn morphology(patches: &[f32], s: usize) -> Result<Vec<[f64; NUCLEUS_FEATURES.len()]>, TrainError> {
    patches.chunks(s * s).map(|p| nucleus_features(p, s).map(|f| f.values()).map_err(|e| TrainError::Analysis(e.to_string()))).collect()
}

/// Metrics of generated (or retrieved) patches `images` `[n, S²]` against the real paired
/// targets `real` `[n, S²]`; features from `ae`'s encoder.
pub fn evaluate<B: Backend>(name: &str, ae: &PatchAutoencoder<B>, images: &[f32], real: &[f32], s: usize, device: &B::Device) -> Result<MethodMetrics, TrainError> {
    let l = ae_latent_dim(ae, s, device);
    let (fa, fb) = (encode_patches(ae, images, s, device), encode_patches(ae, real, s, device));
    let an = |e: crate::analysis::AnalysisError| TrainError::Analysis(e.to_string());
    let mse = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.len().max(1) as f64;
    let (ma, mb) = (morphology(images, s)?, morphology(real, s)?);
    let col = |m: &[[f64; NUCLEUS_FEATURES.len()]], j: usize| m.iter().map(|r| r[j]).collect::<Vec<f64>>();
    Ok(MethodMetrics {
        name: name.to_string(),
        fid: frechet_distance(&fa, &fb, l).map_err(an)?,
        kid: kernel_distance(&fa, &fb, l).map_err(an)?,
        latent_mse: mse(&fa, &fb),
        pixel_mse: mse(images, real),
        ks: (0..NUCLEUS_FEATURES.len()).map(|j| ks_statistic(&col(&ma, j), &col(&mb, j))).collect(),
        w1: (0..NUCLEUS_FEATURES.len()).map(|j| wasserstein_1d(&col(&ma, j), &col(&mb, j))).collect(),
    })
}

fn ae_latent_dim<B: Backend>(ae: &PatchAutoencoder<B>, s: usize, device: &B::Device) -> usize {
    ae.encode(Tensor::zeros([1, s, s], device)).dims()[1]
}

/// A trained flow and its evaluation on the held-out pairs.
pub struct FlowRun<B: Backend> {
    /// The autoencoder and the main velocity network (conditional, ρ from the config).
    pub model: FlowModel<B>,
    /// Sizes, normalisation and PCA (fill `cell_embedding`, `pairing` before saving).
    pub header: FlowHeader,
    /// Training pair indices.
    pub train: Vec<usize>,
    /// Held-out pair indices.
    pub test: Vec<usize>,
    /// Autoencoder loss per epoch.
    pub ae_history: Vec<f64>,
    /// Main flow's loss windows.
    pub flow_history: Vec<FlowLoss>,
    /// Reconstruction MSE and PSNR (dB, peak 1) on the held-out pairs' cells.
    pub reconstruction: (f64, f64),
    /// The metrics table (main flow first, then the baselines).
    pub metrics: Vec<MethodMetrics>,
    /// Generated patches of the main flow for the held-out pairs `[test, S²]`.
    pub generated: Vec<f32>,
}

/// Splits the pairs, trains the autoencoder and the flows, samples the held-out pairs and
/// evaluates every method. `template` gives the sizes; its `patch_px`, `cell_dim`,
/// `n_transitions` and `dg_components` are taken from the data. With `checkpoint.dir` it
/// writes a checkpoint after every autoencoder epoch and flow loss window; with
/// `checkpoint.resume` it continues from one (refused if settings, sizes or pairs differ),
/// giving the same weights, losses and metrics as an uninterrupted run.
pub fn run_flow<B: AutodiffBackend>(
    data: &FlowData,
    template: FlowSpec,
    config: &FlowConfig,
    checkpoint: &FlowCheckpoint,
    device: &B::Device,
    log: &mut dyn FnMut(String),
) -> Result<FlowRun<B::InnerBackend>, TrainError> {
    config.check()?;
    data.check()?;
    let mut crc = crc32fast::Hasher::new();
    for p in &data.pairs {
        for v in [p.ctrl as u64, p.tgt as u64, p.token as u64] {
            crc.update(&v.to_le_bytes());
        }
    }
    let run_id = serde_json::json!({ "config": config, "spec": template, "cells": data.n_cells(), "pairs": data.pairs.len(), "pairs_crc32": crc.finalize() }).to_string();
    let mut ck = Checkpointer::start(checkpoint, run_id)?;
    let (train, test) = split_pairs(data, config.test_fraction, config.block_um, config.seed)?;
    log(format!("{} pairs: {} training, {} held out ({} µm blocks)", data.pairs.len(), train.len(), test.len(), config.block_um));
    let g = data.n_genes;
    let dg_of = |idx: &[usize]| -> Vec<f32> {
        idx.iter().flat_map(|&i| {
            let p = data.pairs[i];
            (0..g).map(move |k| data.x[p.tgt * g + k] - data.x[p.ctrl * g + k])
        }).collect()
    };
    let k = config.dg_components.min(g).min(train.len() - 1);
    let dg_pca = Pca::fit(&dg_of(&train), train.len(), g, &PcaOptions { n_components: k })?;
    let dg_scale = (dg_pca.explained_variance.iter().sum::<f32>() / k as f32).sqrt().max(1e-6);
    let all: Vec<usize> = (0..data.pairs.len()).collect();
    let dg: Vec<f32> = dg_pca.transform(&dg_of(&all), all.len())?.into_iter().map(|v| v / dg_scale).collect();
    let spec = FlowSpec { patch_px: data.patch_px, cell_dim: data.cell_dim, n_transitions: data.transitions.len(), dg_components: k, ..template };
    spec.check().map_err(TrainError::Options)?;

    let held_cells: std::collections::HashSet<usize> = test.iter().flat_map(|&i| [data.pairs[i].ctrl, data.pairs[i].tgt]).collect();
    let ae_cells: Vec<usize> = (0..data.n_cells()).filter(|c| !held_cells.contains(c)).collect();
    let t0 = Instant::now();
    let (ae, ae_history) = train_autoencoder::<B>(data, &ae_cells, &spec, config, device, &mut ck, log)?;
    let inner = device;
    let s = data.patch_px;
    let held: Vec<usize> = { let mut v: Vec<usize> = held_cells.into_iter().collect(); v.sort_unstable(); v };
    let held_px = PairInputs::rows(&data.patches, s * s, &held);
    let recon = decode_latents(&ae, &encode_patches(&ae, &held_px, s, inner), spec.latent, inner);
    let mse = recon.iter().zip(&held_px).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / held_px.len().max(1) as f64;
    let psnr = -10.0 * mse.max(1e-12).log10();
    log(format!("autoencoder: {} training cells, held-out reconstruction MSE {mse:.5}, PSNR {psnr:.2} dB ({:.1} s)", ae_cells.len(), t0.elapsed().as_secs_f64()));

    let latents = encode_patches(&ae, &data.patches, s, inner);
    let l = spec.latent;
    let train_cells: Vec<usize> = ae_cells.clone();
    let mut latent_mean = vec![0f32; l];
    for &c in &train_cells {
        for j in 0..l {
            latent_mean[j] += latents[c * l + j] / train_cells.len() as f32;
        }
    }
    let var = train_cells.iter().flat_map(|&c| (0..l).map(move |j| (c, j))).map(|(c, j)| (latents[c * l + j] - latent_mean[j]).powi(2)).sum::<f32>() / (train_cells.len() * l) as f32;
    let latent_scale = var.sqrt().max(1e-6);
    let norm: Vec<f32> = latents.iter().enumerate().map(|(i, v)| (v - latent_mean[i % l]) / latent_scale).collect();
    let pair_rows = |f: fn(&FlowPair) -> usize| -> Vec<usize> { data.pairs.iter().map(f).collect() };
    let (ctrl_cells, tgt_cells) = (pair_rows(|p| p.ctrl), pair_rows(|p| p.tgt));
    let inputs = PairInputs {
        l,
        k,
        z: data.cell_dim,
        ctrl: PairInputs::rows(&norm, l, &ctrl_cells),
        tgt: PairInputs::rows(&norm, l, &tgt_cells),
        dg,
        tokens: data.pairs.iter().map(|p| p.token as i64).collect(),
        cell: PairInputs::rows(&data.cell_emb, data.cell_dim, &ctrl_cells),
    };
    let ln = (latent_mean.as_slice(), latent_scale);

    let mut variants: Vec<(&str, bool, f32, f64)> = vec![("flow (ours)", true, config.rho, 0.0)];
    if config.baselines {
        variants.push(("flow, ρ = 0", true, 0.0, 0.0));
        variants.push(("unconditional flow (no e_pert)", false, config.rho, 0.0));
        if config.corrupt_fraction > 0.0 {
            variants.push(("flow, corrupted pairs", true, config.rho, config.corrupt_fraction));
        }
    }
    let real = PairInputs::rows(&data.patches, s * s, &test.iter().map(|&i| data.pairs[i].tgt).collect::<Vec<_>>());
    let mut metrics = Vec::new();
    let (mut main_net, mut flow_history, mut generated) = (None, Vec::new(), Vec::new());
    for (v, (name, conditional, rho, corrupt)) in variants.into_iter().enumerate() {
        let t = Instant::now();
        if v < ck.progress.variants {
            // Finished before the run was interrupted: its row, and the main flow's weights.
            if v == 0 {
                let net = VelocityNet::<B::InnerBackend>::init(&spec, true, inner).load_record(ck.load::<B::InnerBackend, _>(MAIN, inner)?);
                generated = decode_latents(&ae, &sample_pairs(&net, &inputs, &test, ln, config, inner), l, inner);
                (main_net, flow_history) = (Some(net), ck.progress.main_history.clone());
            }
            log(format!("{name}: from the checkpoint"));
            metrics.push(ck.progress.metrics[v].clone());
            continue;
        }
        let mut targets = train.clone();
        if corrupt > 0.0 {
            let mut rng = SplitMix64::new(config.seed ^ 0xC0);
            let n_bad = (train.len() as f64 * corrupt).round() as usize;
            let mut order: Vec<usize> = (0..train.len()).collect();
            rng.shuffle(&mut order);
            for &i in &order[..n_bad] {
                targets[i] = train[rng.below(train.len() as u64) as usize];
            }
        }
        let (net, hist) = train_velocity::<B>(&inputs, &train, &targets, &spec, conditional, rho, config, device, &mut ck)?;
        let lat = sample_pairs(&net, &inputs, &test, ln, config, inner);
        let images = decode_latents(&ae, &lat, l, inner);
        let m = evaluate(name, &ae, &images, &real, s, inner)?;
        log(format!("{name}: FID {:.3}, KID {:.4}, latent MSE {:.4} ({:.1} s; flow-matching loss {:.4} → {:.4})", m.fid, m.kid, m.latent_mse, t.elapsed().as_secs_f64(),
            hist.first().map_or(f64::NAN, |h| h.flow_matching), hist.last().map_or(f64::NAN, |h| h.flow_matching)));
        if ck.active() {
            if v == 0 {
                ck.parts[MAIN] = Checkpointer::record::<B::InnerBackend, _>(net.clone().into_record())?;
                ck.progress.main_history = hist.clone();
            }
            (ck.parts[NET], ck.parts[NET_OPTIM]) = (Vec::new(), Vec::new());
            ck.progress.metrics.push(m.clone());
            (ck.progress.variants, ck.progress.flow_steps, ck.progress.flow_history) = (v + 1, 0, Vec::new());
            ck.save()?;
        }
        metrics.push(m);
        if main_net.is_none() {
            main_net = Some(net);
            flow_history = hist;
            generated = images;
        }
    }
    let ctrl_px = PairInputs::rows(&data.patches, s * s, &test.iter().map(|&i| data.pairs[i].ctrl).collect::<Vec<_>>());
    metrics.push(evaluate("identity (control image)", &ae, &ctrl_px, &real, s, inner)?);
    // Nearest real target in expression: the training pairs' target cell nearest (Euclidean,
    // normalised expression) to the held-out pair's target expression.
    let pool: Vec<usize> = { let mut v: Vec<usize> = train.iter().map(|&i| data.pairs[i].tgt).collect(); v.sort_unstable(); v.dedup(); v };
    let nearest: Vec<usize> = test.iter().map(|&i| {
        let q = &data.x[data.pairs[i].tgt * g..(data.pairs[i].tgt + 1) * g];
        pool.iter().copied().min_by(|&a, &b| {
            let d = |c: usize| data.x[c * g..(c + 1) * g].iter().zip(q).map(|(x, y)| (x - y) * (x - y)).sum::<f32>();
            d(a).total_cmp(&d(b))
        }).ok_or_else(|| TrainError::Options("no training pairs left for the nearest-target baseline; use smaller --block-um or more pairs".into()))
    }).collect::<Result<_, _>>()?;
    metrics.push(evaluate("nearest real target in expression", &ae, &PairInputs::rows(&data.patches, s * s, &nearest), &real, s, inner)?);
    let header = FlowHeader {
        sampling: ot::FlowConditioning {
            spec,
            transitions: data.transitions.clone(),
            latent_mean,
            latent_scale,
            dg_pca,
            dg_scale,
            cell_embedding: String::new(),
            expression_pca: None,
            um_per_px: 0.0,
            genes: Vec::new(),
            normalisation: None,
        },
        config: config.clone(),
        pairing: serde_json::Value::Null,
        metrics: serde_json::json!({ "reconstruction_mse": mse, "reconstruction_psnr_db": psnr, "methods": metrics }),
    };
    let net = main_net.ok_or_else(|| TrainError::Options("no flow variant was trained".into()))?;
    Ok(FlowRun { model: FlowModel { ae, net }, header, train, test, ae_history, flow_history, reconstruction: (mse, psnr), metrics, generated })
}

/// Samples generated patches `[pairs, S²]` for `pairs` of `data` with a loaded model.
pub fn sample_with<B: Backend>(model: &FlowModel<B>, header: &FlowHeader, data: &FlowData, pairs: &[FlowPair], config: &FlowConfig, device: &B::Device) -> Result<Vec<f32>, TrainError> {
    Ok(sample_latents_with(model, header, data, pairs, config, device)?.1)
}

/// The conditioning of `pairs` as both samplers read it: transition tokens `[n]`, scaled Δg
/// PCA coordinates `[n, K]` and control embeddings `[n, Z]`; checks `data` against the model.
pub fn pair_condition(header: &FlowHeader, data: &FlowData, pairs: &[FlowPair]) -> Result<(Vec<u32>, Vec<f32>, Vec<f32>), TrainError> {
    data.check()?;
    let (s, g) = (data.patch_px, data.n_genes);
    if s != header.sampling.spec.patch_px || data.cell_dim != header.sampling.spec.cell_dim || g != header.sampling.dg_pca.n_genes {
        return Err(TrainError::Options(format!(
            "the data (patches {s} px, cell embedding {}, {g} genes) does not match the model (patches {} px, cell embedding {}, {} genes); sample with the inputs it was trained on",
            data.cell_dim, header.sampling.spec.patch_px, header.sampling.spec.cell_dim, header.sampling.dg_pca.n_genes)));
    }
    if let Some(p) = pairs.iter().find(|p| p.ctrl >= data.n_cells() || p.tgt >= data.n_cells() || p.token as usize >= header.sampling.spec.n_transitions) {
        return Err(TrainError::Options(format!("pair {p:?} refers to a cell or transition that does not exist ({} cells, {} transitions)", data.n_cells(), header.sampling.spec.n_transitions)));
    }
    let dg_raw: Vec<f32> = pairs.iter().flat_map(|p| (0..g).map(move |k| data.x[p.tgt * g + k] - data.x[p.ctrl * g + k])).collect();
    let dg = header.sampling.dg_pca.transform(&dg_raw, pairs.len())?.into_iter().map(|v| v / header.sampling.dg_scale).collect();
    let ctrl: Vec<usize> = pairs.iter().map(|p| p.ctrl).collect();
    Ok((pairs.iter().map(|p| p.token).collect(), dg, PairInputs::rows(&data.cell_emb, data.cell_dim, &ctrl)))
}

/// Generated latents `[pairs, L]` and patches `[pairs, S²]` for `pairs` of `data` with a
/// loaded model (burn).
pub fn sample_latents_with<B: Backend>(model: &FlowModel<B>, header: &FlowHeader, data: &FlowData, pairs: &[FlowPair], config: &FlowConfig, device: &B::Device) -> Result<(Vec<f32>, Vec<f32>), TrainError> {
    let (tokens, dg, cell) = pair_condition(header, data, pairs)?;
    let (s, l) = (data.patch_px, header.sampling.spec.latent);
    let ctrl: Vec<usize> = pairs.iter().map(|p| p.ctrl).collect();
    let latents = encode_patches(&model.ae, &PairInputs::rows(&data.patches, s * s, &ctrl), s, device);
    let norm: Vec<f32> = latents.iter().enumerate().map(|(i, v)| (v - header.sampling.latent_mean[i % l]) / header.sampling.latent_scale).collect();
    let inputs = PairInputs { l, k: header.sampling.spec.dg_components, z: data.cell_dim, ctrl: norm, tgt: Vec::new(), dg, tokens: tokens.into_iter().map(i64::from).collect(), cell };
    let idx: Vec<usize> = (0..pairs.len()).collect();
    let lat = sample_pairs(&model.net, &inputs, &idx, (&header.sampling.latent_mean, header.sampling.latent_scale), config, device);
    let images = decode_latents(&model.ae, &lat, l, device);
    Ok((lat, images))
}

/// Pairs `control` → `target` cells of `crop` (same lineage, entropic OT on a 50-component
/// expression PCA of both states, CPU Sinkhorn, spatial term `spatial_lambda` per µm) and
/// gathers the flow's inputs: patches of `patch_px` at `um_per_px`, expression, and the cell
/// embedding (`cell_embedding` rows per cell, or the expression-PCA coordinates, whose PCA is
/// returned).
pub fn crop_flow_data(
    crop: &PreparedCrop,
    control: &str,
    target: &str,
    spatial_lambda: Option<f32>,
    patch_px: usize,
    um_per_px: f32,
    cell_embedding: Option<&Embeddings>,
    log: &mut dyn FnMut(String),
) -> Result<(FlowData, Option<Pca>, Vec<ot::PairRecord>), TrainError> {
    let t = &crop.table;
    let states = ot::state_pca(&crop.x_norm, t.n_genes(), &crop.annotation.labels, &t.cell_ids, &t.centroids_um, control, target, ot::DEFAULT_PCA_COMPONENTS, None)?;
    let (cs, ts) = states.state_cells();
    let (ci, ti, d, lin_c) = (&states.control, &states.target, states.dim(), &states.lineages[0]);
    let opts = ot::PairingOptions { spatial_lambda, ..Default::default() };
    let pairing = pollster::block_on(ot::pair_states(&cs, &ts, d, &opts, ot::SinkhornEngine::Reference, |_, _| {}))?;
    let mean_um = pairing.records.iter().filter_map(|r| r.spatial_distance_um).sum::<f32>() / pairing.records.len().max(1) as f32;
    let distinct = pairing.pairs.iter().map(|p| p.1).collect::<std::collections::HashSet<_>>().len();
    log(format!("{} pairs {control} → {target} ({distinct} distinct targets; lineage {lin_c}), spatial λ {spatial_lambda:?} per µm, mean pair distance {mean_um:.1} µm", pairing.pairs.len()));
    let pairs = pairing.pairs.iter().map(|&(a, b)| FlowPair { ctrl: ci[a as usize], tgt: ti[b as usize], token: 0 }).collect();
    let expression_pca = cell_embedding.is_none().then(|| states.pca.clone());
    let data = crop_cells_data(crop, patch_px, um_per_px, cell_embedding, expression_pca.as_ref(), pairs, vec![format!("{control} → {target}")])?;
    Ok((data, expression_pca, pairing.records))
}

/// The flow's per-cell inputs of every cell of `crop` (patches of `patch_px` at `um_per_px`,
/// expression, and the cell embedding: `cell_embedding` rows, else the coordinates of
/// `expression_pca`) with `pairs`.
pub fn crop_cells_data(
    crop: &PreparedCrop,
    patch_px: usize,
    um_per_px: f32,
    cell_embedding: Option<&Embeddings>,
    expression_pca: Option<&Pca>,
    pairs: Vec<FlowPair>,
    transitions: Vec<String>,
) -> Result<FlowData, TrainError> {
    let n = crop.table.n_cells();
    let (cell_dim, cell_emb) = match (cell_embedding, expression_pca) {
        (Some(e), _) => (e.dim, e.values.clone()),
        (None, Some(p)) => (p.n_components, p.transform(&crop.x_norm, n)?),
        (None, None) => return Err(TrainError::MissingInput { input: "cell embedding", detail: "neither an embedding file nor an expression PCA was given".into() }),
    };
    Ok(FlowData {
        patch_px,
        patches: super::benchmark::crop_patches(crop, patch_px, um_per_px)?,
        n_genes: crop.table.n_genes(),
        x: crop.x_norm.clone(),
        cell_dim,
        cell_emb,
        positions_um: crop.table.centroids_um.clone(),
        pairs,
        transitions,
    })
}

/// The metrics table as Markdown: FID / KID / MSEs / mean KS, then KS and W1 per morphology
/// feature, every row on the same held-out pairs.
pub fn metrics_markdown(metrics: &[MethodMetrics], n_test: usize, reconstruction: (f64, f64)) -> String {
    let mut md = format!(
        "# Morphology generation: held-out pairs\n\n{n_test} held-out pairs (split by pair in spatial blocks). Peers measured in the same run: identity (the control image), nearest real target in expression, unconditional flow, ρ = 0, corrupted pairs. FID / KID on the features of our own patch encoder (the autoencoder's encoder; no Inception weights here), against the real paired targets; latent / pixel MSE to the paired target. Autoencoder reconstruction on the held-out pairs' cells: MSE {:.5}, PSNR {:.2} dB.\n\n| method | FID | KID | latent MSE | pixel MSE | mean KS |\n|---|---|---|---|---|---|\n",
        reconstruction.0, reconstruction.1
    );
    for m in metrics {
        let ks = m.ks.iter().sum::<f64>() / m.ks.len().max(1) as f64;
        md += &format!("| {} | {:.3} | {:.4} | {:.4} | {:.5} | {:.3} |\n", m.name, m.fid, m.kid, m.latent_mse, m.pixel_mse, ks);
    }
    md += "\nMorphology of the centre nucleus (Otsu threshold, component nearest the centre) and its texture (mean gradient magnitude; GLCM contrast / homogeneity at 8 grey levels): KS statistic / 1-D Wasserstein distance (feature units: pixels, intensity in [0, 1]) vs the real targets.\n\n| method |";
    for f in NUCLEUS_FEATURES {
        md += &format!(" {f} |");
    }
    md += "\n|---|";
    md += &"---|".repeat(NUCLEUS_FEATURES.len());
    md += "\n";
    for m in metrics {
        md += &format!("| {} |", m.name);
        for (k, w) in m.ks.iter().zip(&m.w1) {
            md += &format!(" {k:.3} / {w:.3} |");
        }
        md += "\n";
    }
    md
}

/// A PNG grid: one row per pair (at most `rows`), columns control | generated | real target,
/// each patch enlarged `zoom`×.
pub fn grid_png(path: &Path, s: usize, control: &[f32], generated: &[f32], real: &[f32], rows: usize, zoom: usize) -> Result<(), TrainError> {
    use crate::plot::canvas::{Canvas, Rgb};
    let n = (control.len() / (s * s)).min(rows);
    let (cell, pad, top) = (s * zoom, 4usize, 14usize);
    let mut canvas = Canvas::new(3 * (cell + pad) + pad, top + n * (cell + pad) + pad, Rgb(255, 255, 255));
    for (c, title) in ["control", "generated", "real target"].iter().enumerate() {
        canvas.text((pad + c * (cell + pad)) as isize, 3, title, Rgb(0, 0, 0), 1);
    }
    for r in 0..n {
        for (c, src) in [control, generated, real].iter().enumerate() {
            let p = &src[r * s * s..(r + 1) * s * s];
            let gray: Vec<u8> = (0..cell * cell).map(|k| (p[(k / cell / zoom) * s + (k % cell) / zoom].clamp(0.0, 1.0) * 255.0).round() as u8).collect();
            canvas.draw_gray((pad + c * (cell + pad)) as isize, (top + r * (cell + pad)) as isize, cell, cell, &gray).map_err(|e| TrainError::Analysis(e.to_string()))?;
        }
    }
    canvas.write_png(path).map_err(|e| TrainError::Analysis(e.to_string()))
}

/// Writes `model.safetensors` (the autoencoder and velocity network) and `flow.json` (the
/// header) into `dir`, both atomically.
pub fn save<B: Backend>(dir: &Path, header: &FlowHeader, model: &FlowModel<B>) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|source| TrainError::Io { path: dir.display().to_string(), source })?;
    let meta = std::collections::HashMap::from([("format".to_string(), "cellsymphony-flow-1".to_string())]);
    super::export::save_named_safetensors::<B, _>(model, meta, &dir.join("model.safetensors"))?;
    let json = serde_json::to_vec_pretty(header).map_err(|e| TrainError::Options(e.to_string()))?;
    Ok(crate::util::write_atomic(&dir.join("flow.json"), &json)?)
}

/// Reads what [`save`] wrote.
pub fn load<B: Backend>(dir: &Path, device: &B::Device) -> Result<(FlowHeader, FlowModel<B>), TrainError> {
    let hp = dir.join("flow.json");
    let bytes = std::fs::read(&hp).map_err(|source| TrainError::Io { path: hp.display().to_string(), source })?;
    let header: FlowHeader = serde_json::from_slice(&bytes).map_err(|e| TrainError::Checkpoint { path: hp.display().to_string(), problem: format!("not a flow header ({e}); point --model at the output folder of `flow train`") })?;
    header.sampling.spec.check().map_err(|e| TrainError::Checkpoint { path: hp.display().to_string(), problem: e })?;
    let model = FlowModel { ae: PatchAutoencoder::init(&header.sampling.spec, device), net: VelocityNet::init(&header.sampling.spec, true, device) };
    let model = super::export::load_named_safetensors(model, &dir.join("model.safetensors"))?;
    Ok((header, model))
}
