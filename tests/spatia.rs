//! SPATIA: the regions the model reads agree with `data::niches`, and `cellsymphony spatia
//! pretrain → finetune → embed` on one tissue region of the crop succeeds and writes
//! embeddings of the shapes of the cells and niches, niche clusters (k by silhouette), their
//! cell-type enrichment and the niche map; the cell level in the CPU engine matches burn.
//! Morphology generation (issue 16): a tiny flow on a synthetic fixture learns (its loss
//! falls), is deterministic for a seed, and its checkpoint reloads to the same samples.

mod common;

use std::path::Path;
use std::process::Command;

use cellsymphony::data::{self, ImageFrame, NicheGrid, NicheOptions};
use cellsymphony::train::embeddings::parse_npy;
use cellsymphony::train::spatia::region_assignment;
use cellsymphony::util::rng::SplitMix64;

fn spatia(args: &[&str], data: &Path, out: &Path) {
    let res = Command::new(env!("CARGO_BIN_EXE_cellsymphony"))
        .arg("spatia")
        .args(args)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .output()
        .expect("binary runs");
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "spatia {args:?} failed: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn npy(path: &Path) -> (usize, usize, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let e = parse_npy(path, &bytes).unwrap();
    (e.rows, e.dim, e.values)
}

#[test]
fn pretrain_finetune_embed_on_one_region() {
    let data = common::data::data_dir();
    let dir = common::scratch("spatia");
    let (pre, model, emb) = (dir.join("pre"), dir.join("model"), dir.join("embed"));
    let one = ["--max-regions", "1"];
    spatia(&[&["pretrain", "--epochs", "1"][..], &one].concat(), &data, &pre);
    let loss = std::fs::read_to_string(pre.join("pretrain_loss.csv")).unwrap();
    assert_eq!(loss.lines().count(), 2, "{loss}");
    let pre_s = pre.display().to_string();
    spatia(&[&["finetune", "--epochs", "1", "--split", "random", "--pretrained", &pre_s][..], &one].concat(), &data, &model);
    assert!(model.join("spatia_model.bin").exists() && model.join("spatia_model.json").exists());
    let model_s = model.display().to_string();
    // `embed` takes the model folder with --model and writes to --out.
    let res = Command::new(env!("CARGO_BIN_EXE_cellsymphony"))
        .args(["spatia", "embed", "--model", &model_s, "--max-regions", "1", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&emb)
        .output()
        .expect("binary runs");
    assert!(res.status.success(), "embed failed: {}", String::from_utf8_lossy(&res.stderr));

    let cells = std::fs::read_to_string(emb.join("cells.csv")).unwrap();
    let n_cells = cells.lines().count() - 1;
    let in_region = cells.lines().skip(1).filter(|l| !l.ends_with(",,")).count();
    let niches = std::fs::read_to_string(emb.join("niches.csv")).unwrap();
    let n_niches = niches.lines().count() - 1;
    assert!(in_region > 0 && in_region < n_cells, "one region holds some but not all cells: {in_region} of {n_cells}");
    let (rows, d, z_cell) = npy(&emb.join("z_cell.npy"));
    assert_eq!((rows, d), (n_cells, 64));
    let nonzero_rows = z_cell.chunks(d).filter(|r| r.iter().any(|v| *v != 0.0)).count();
    assert_eq!(nonzero_rows, in_region, "exactly the cells of the region are embedded");
    assert!(z_cell.iter().all(|v| v.is_finite()));
    for name in ["z_niche.npy", "z_tissue.npy"] {
        let (rows, d, v) = npy(&emb.join(name));
        assert_eq!((rows, d), (n_niches, 64), "{name}");
        assert!(v.iter().any(|x| *x != 0.0) && v.iter().all(|x| x.is_finite()), "{name}");
    }

    // Niche clusters: exactly the embedded niches get a cluster, k in 3..=8 is the best
    // silhouette, and the enrichment counts every labelled cell of a clustered niche once.
    let (_, d, z_niche) = npy(&emb.join("z_niche.npy"));
    let embedded: Vec<bool> = z_niche.chunks(d).map(|r| r.iter().any(|v| *v != 0.0)).collect();
    let clusters = std::fs::read_to_string(emb.join("niche_clusters.csv")).unwrap();
    assert_eq!(clusters.lines().next(), Some("niche,col,row,cells,cluster"));
    let assigned: Vec<Option<usize>> = clusters.lines().skip(1).map(|l| l.rsplit(',').next().unwrap().parse().ok()).collect();
    assert_eq!(assigned.len(), n_niches);
    assert_eq!(assigned.iter().map(Option::is_some).collect::<Vec<_>>(), embedded, "clustered niches = embedded niches");
    let sil = std::fs::read_to_string(emb.join("niche_silhouette.csv")).unwrap();
    let scores: Vec<(usize, f64)> = sil.lines().skip(1).map(|l| {
        let (k, s) = l.split_once(',').unwrap();
        (k.parse().unwrap(), s.parse().unwrap())
    }).collect();
    let k = assigned.iter().flatten().max().unwrap() + 1;
    let best = scores.iter().copied().fold((0, f64::NEG_INFINITY), |b, (k, s)| if s > b.1 { (k, s) } else { b });
    assert!((3..=8).contains(&k) && scores.first().map(|s| s.0) == Some(3), "k {k}, scores {scores:?}");
    assert_eq!(k, best.0, "k is the best silhouette of {scores:?}");
    let enrichment = std::fs::read_to_string(emb.join("niche_enrichment.csv")).unwrap();
    let rows: Vec<Vec<&str>> = enrichment.lines().skip(1).map(|l| l.split(',').collect()).collect();
    let classes = rows.len() / best.0;
    assert_eq!(rows.len(), best.0 * classes, "one row per (cluster, type)");
    let observed: u64 = rows.iter().map(|r| r[2].parse::<u64>().unwrap()).sum();
    let expected: f64 = rows.iter().map(|r| r[3].parse::<f64>().unwrap()).sum();
    assert!(observed > 0 && (expected - observed as f64).abs() < 1e-2 * observed as f64, "observed {observed}, expected {expected}");
    assert!(rows.iter().all(|r| (0.0..=1.0).contains(&r[6].parse::<f64>().unwrap())), "p-values in [0, 1]");
    let md = std::fs::read_to_string(emb.join("niche_enrichment.md")).unwrap();
    assert!(md.contains("| cluster | niches |") && md.contains("by the best mean silhouette"), "{md}");
    let png = std::fs::read(emb.join("niche_map.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 1000);
}

/// SPATIA's cell level in the burn-free CPU engine matches burn on seeded random inputs:
/// exported to safetensors and read back, `z_cell` and the cell-type logits agree within
/// `1e-5 · max(1, max |burn|)` (fp32), an int8 export within `5e-2 · max(1, max |burn|)`; a
/// tissue-level model exports `z_cell` only (its head reads the fused embedding).
#[test]
fn cpu_engine_cell_level_matches_burn() {
    let _burn_rng = common::burn_rng_lock();
    use burn::prelude::*;
    use cellsymphony::engine::spec::{SpatiaLevels, SpatiaSpec};
    use cellsymphony::engine::SpatiaCellModel;
    use cellsymphony::model::spatia::SpatiaModel;
    type Cpu = burn::backend::NdArray;
    let device = Default::default();
    let (g, c, n) = (23, 5, 11);
    let classes: Vec<String> = (0..c).map(|i| format!("type {i}")).collect();
    let mut rng = SplitMix64::new(0x5AA7);
    let rel = |got: &[f32], want: &[f32]| {
        assert_eq!(got.len(), want.len());
        assert!(got.iter().all(|v| v.is_finite()));
        common::max_abs_diff(got, want) / want.iter().fold(1f32, |m, v| m.max(v.abs()))
    };
    let to_vec = |t: Tensor<Cpu, 2>| t.into_data().convert::<f32>().into_vec::<f32>().unwrap();
    for levels in [SpatiaLevels::Cell, SpatiaLevels::Tissue] {
        let spec = SpatiaSpec::small(g, c, levels);
        let s = spec.cell_image.image_size;
        let genes = rng.uniform_vec(n * g, 0.0, 3.0);
        let patches = rng.uniform_vec(n * s * s, 0.0, 1.0);
        let model = SpatiaModel::<Cpu>::init(&spec, 0.0, &device).unwrap();
        let z = model.cell.forward(
            Tensor::from_data(TensorData::new(genes.clone(), [n, g]), &device),
            Tensor::from_data(TensorData::new(patches.clone(), [n, s, s]), &device),
        );
        let logits = to_vec(model.type_head.forward(z.clone()));
        let z = to_vec(z);
        let engine = model.cell_level_to_engine(&spec, classes.clone()).unwrap();
        let fp32 = SpatiaCellModel::from_safetensors_bytes(&engine.to_safetensors_bytes().unwrap()).unwrap();
        assert_eq!(fp32, engine, "safetensors round trip");
        let out = fp32.forward(&genes, &patches, n).unwrap();
        let e = rel(&out.z_cell, &z);
        eprintln!("SPATIA cell level ({}) CPU engine vs burn: z_cell relative error {e:.2e}", levels.name());
        assert!(e <= 1e-5, "z_cell {e}");
        let int8 = SpatiaCellModel::from_safetensors_bytes(&engine.quantize_int8().to_safetensors_bytes().unwrap()).unwrap();
        assert!(int8.is_int8());
        let out8 = int8.forward(&genes, &patches, n).unwrap();
        let e8 = rel(&out8.z_cell, &z);
        eprintln!("  int8: z_cell relative error {e8:.2e}");
        assert!(e8 <= 5e-2, "int8 z_cell {e8}");
        match levels {
            SpatiaLevels::Cell => {
                let (l32, l8) = (out.logits.unwrap(), out8.logits.unwrap());
                let (e, e8) = (rel(&l32, &logits), rel(&l8, &logits));
                eprintln!("  logits relative error fp32 {e:.2e}, int8 {e8:.2e}");
                assert!(e <= 1e-5 && e8 <= 5e-2, "logits fp32 {e}, int8 {e8}");
            }
            _ => assert!(out.logits.is_none() && engine.weights.type_head.is_none()),
        }
        // Bad inputs and files are errors, not panics.
        assert!(fp32.forward(&genes[1..], &patches, n).is_err());
        assert!(fp32.forward(&genes, &patches[..s], n).is_err());
        let mut bytes = engine.to_safetensors_bytes().unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        assert!(SpatiaCellModel::from_safetensors_bytes(&bytes).is_err(), "a corrupted tensor fails the checksum");
        assert!(SpatiaCellModel::from_safetensors_bytes(&bytes[..bytes.len() / 2]).is_err());
    }
}

/// The regions the model reads agree with `data::niches`: every assigned cell sits in its
/// grid niche, in the slot of that niche's grid position, in the region that holds it.
#[test]
fn region_assignment_matches_the_niche_grid() {
    let mut rng = SplitMix64::new(7);
    let n = 400;
    let centroids: Vec<[f32; 2]> = (0..n).map(|_| [rng.uniform(-5.0, 230.0), rng.uniform(-5.0, 170.0)]).collect();
    let counts = vec![1.0f32; n * 2];
    let frame = ImageFrame::from_corner([0.0, 0.0], 1.0);
    let opts = NicheOptions { tile_px: 20, edge: data::EdgePolicy::Pad, region_niches: 3 };
    let grid = NicheGrid::build(&centroids, &counts, 2, &frame, [210, 150], &opts).unwrap();
    let regions = grid.tissue_regions(3).unwrap();
    let rc = region_assignment(&grid, 3).unwrap();
    let mut seen = vec![0usize; n];
    for r in &rc {
        let region = &regions[r.region];
        for (k, &cell) in r.cells.iter().enumerate() {
            seen[cell] += 1;
            let niche = r.niches[r.cell_niche[k]];
            assert_eq!(grid.niche_of_cell[cell], Some(niche as u32), "cell {cell}");
            let slot = r.slots[r.cell_niche[k]];
            assert_eq!(region.niches[slot], Some(niche));
            let nc = &grid.niches[niche];
            assert_eq!((nc.niche_col / 3, nc.niche_row / 3), (region.region_col, region.region_row));
            assert_eq!(slot, (nc.niche_row % 3) * 3 + nc.niche_col % 3);
        }
    }
    for (cell, &s) in seen.iter().enumerate() {
        let expected = usize::from(grid.niche_of_cell[cell].is_some());
        assert_eq!(s, expected, "cell {cell} appears {s} times");
    }
    assert!(!grid.unassigned.is_empty(), "the test should include cells outside the image");
    assert!(rc.len() > 1);
}

/// A synthetic fixture: 24 control cells with small dim nuclei paired with 24 target cells
/// with large bright ones (8-px patches), on a 6 × 8 grid of 60 µm.
fn flow_fixture() -> cellsymphony::train::flow::FlowData {
    use cellsymphony::train::flow::{FlowData, FlowPair};
    let (s, n, g, z) = (8usize, 48usize, 6usize, 4usize);
    let mut rng = SplitMix64::new(11);
    let mut patches = Vec::with_capacity(n * s * s);
    let mut x = Vec::with_capacity(n * g);
    for c in 0..n {
        let target = c >= n / 2;
        let (radius, level) = if target { (3.0 + rng.uniform(0.0, 0.5), 0.9) } else { (1.5 + rng.uniform(0.0, 0.5), 0.5) };
        for k in 0..s * s {
            let (r, col) = ((k / s) as f32 - 3.5, (k % s) as f32 - 3.5);
            patches.push(if r * r + col * col <= radius * radius { level } else { 0.05 } + rng.uniform(0.0, 0.05));
        }
        for j in 0..g {
            x.push(if target && j < 3 { 2.0 } else { 0.5 } + rng.uniform(0.0, 0.3));
        }
    }
    let cell_emb = rng.uniform_vec(n * z, -1.0, 1.0);
    let positions_um = (0..n).map(|c| [((c % 24) % 6) as f32 * 60.0 + 5.0, ((c % 24) / 6) as f32 * 60.0 + 5.0]).collect();
    let pairs = (0..n / 2).map(|c| FlowPair { ctrl: c, tgt: n / 2 + c, token: 0 }).collect();
    FlowData { patch_px: s, patches, n_genes: g, x, cell_dim: z, cell_emb, positions_um, pairs, transitions: vec!["A → B".into()] }
}

#[test]
fn tiny_flow_learns_is_deterministic_and_reloads() {
    let _burn_rng = common::burn_rng_lock();
    use cellsymphony::model::flow::FlowSpec;
    use cellsymphony::train::flow::{self, FlowConfig};
    type Ad = burn::backend::Autodiff<burn::backend::NdArray>;
    type Cpu = burn::backend::NdArray;
    let data = flow_fixture();
    let spec = FlowSpec { channels: 4, latent: 8, hidden: 32, blocks: 2, pert_dim: 8, time_dim: 8, ..FlowSpec::small(1, 4) };
    let config = FlowConfig { ae_epochs: 4, flow_steps: 80, batch: 8, sample_steps: 4, test_fraction: 0.25, block_um: 100.0, baselines: false, dg_components: 3, ..Default::default() };
    let device = Default::default();
    let run = |seed: u64| flow::run_flow::<Ad>(&data, spec, &FlowConfig { seed, ..config.clone() }, &Default::default(), &device, &mut |_| {}).unwrap();
    let a = run(3);
    let (first, last) = (a.flow_history.first().unwrap().flow_matching, a.flow_history.last().unwrap().flow_matching);
    assert!(last < 0.8 * first, "flow-matching loss falls: {first} → {last}");
    assert!(a.ae_history.last().unwrap() < a.ae_history.first().unwrap(), "{:?}", a.ae_history);
    assert!(!a.test.is_empty() && a.generated.len() == a.test.len() * 64);
    assert!(a.generated.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
    // The main flow, identity and nearest-target rows, each with 9 morphology / texture features.
    assert_eq!(a.metrics.len(), 3);
    assert!(a.metrics.iter().all(|m| m.ks.len() == 9 && m.fid.is_finite() && m.kid.is_finite()));
    let b = run(3);
    assert_eq!(a.generated, b.generated, "same seed, same samples");
    assert_eq!((a.train.clone(), a.test.clone()), (b.train.clone(), b.test.clone()));

    let dir = common::scratch("flow");
    flow::save::<Cpu>(dir.path(), &a.header, &a.model).unwrap();
    let (header, model) = flow::load::<Cpu>(dir.path(), &device).unwrap();
    let pairs: Vec<_> = a.test.iter().map(|&i| data.pairs[i]).collect();
    let again = flow::sample_with(&model, &header, &data, &pairs, &header.config, &device).unwrap();
    let diff = common::max_abs_diff(&again, &a.generated);
    assert!(diff < 1e-5, "reloaded checkpoint samples within 1e-5 of the trained model's: {diff}");
    let wrong = flow::FlowData { cell_dim: 5, cell_emb: vec![0.0; 48 * 5], ..data.clone() };
    assert!(flow::sample_with(&model, &header, &wrong, &pairs, &header.config, &device).is_err());

    // The burn-free sampler (engine::flow) on the saved file: same inputs, same steps → the
    // same latents and patches as burn's sampler within 1e-4 (f32, different summation order).
    use cellsymphony::engine::flow::{FlowCondition, FlowSampler};
    let sampler = FlowSampler::from_safetensors(&std::fs::read(dir.path().join("model.safetensors")).unwrap()).unwrap();
    let sz = sampler.sizes();
    assert_eq!((sz.patch_px, sz.channels, sz.latent, sz.hidden, sz.blocks, sz.pert_dim, sz.cell_dim, sz.time_dim), (8, 4, 8, 32, 2, 8, 4, 8));
    assert_eq!(sz.dg_components, header.sampling.spec.dg_components);
    let (tokens, dg, cell) = flow::pair_condition(&header, &data, &pairs).unwrap();
    let ctrl: Vec<f32> = pairs.iter().flat_map(|p| data.patches[p.ctrl * 64..(p.ctrl + 1) * 64].to_vec()).collect();
    let cond = FlowCondition { tokens: &tokens, dg: &dg, cell: &cell };
    for solver in [flow::Solver::Heun, flow::Solver::Euler] {
        let config = flow::FlowConfig { solver, sample_steps: 6, ..header.config.clone() };
        let (lat, img) = flow::sample_latents_with(&model, &header, &data, &pairs, &config, &device).unwrap();
        let out = sampler.sample(&ctrl, &cond, &header.sampling.latent_mean, header.sampling.latent_scale, 6, solver).unwrap();
        let (dl, di) = (common::max_abs_diff(&out.latents, &lat), common::max_abs_diff(&out.patches, &img));
        eprintln!("engine vs burn flow sampling ({solver:?}, 6 steps): latents max |Δ| {dl:.2e}, patches max |Δ| {di:.2e}");
        assert!(dl < 1e-4 && di < 1e-4, "{solver:?}: latents {dl}, patches {di}");
    }
    let bad = FlowCondition { tokens: &vec![1; tokens.len()], ..cond };
    assert!(matches!(sampler.sample(&ctrl, &bad, &header.sampling.latent_mean, header.sampling.latent_scale, 6, flow::Solver::Euler), Err(cellsymphony::engine::EngineError::FlowInput { .. })));
    assert!(FlowSampler::from_safetensors(b"not a model").is_err());
}

#[test]
fn flow_resumed_after_interruptions_equals_an_uninterrupted_run() {
    let _burn_rng = common::burn_rng_lock();
    use cellsymphony::model::flow::FlowSpec;
    use cellsymphony::train::flow::{self, FlowCheckpoint, FlowConfig};
    use cellsymphony::train::TrainError;
    type Ad = burn::backend::Autodiff<burn::backend::NdArray>;
    type Cpu = burn::backend::NdArray;
    let data = flow_fixture();
    let spec = FlowSpec { channels: 4, latent: 8, hidden: 16, blocks: 1, pert_dim: 8, time_dim: 8, ..FlowSpec::small(1, 4) };
    // All four flows (main, ρ = 0, unconditional, corrupted) so that resuming skips finished rows.
    let config = FlowConfig { ae_epochs: 4, flow_steps: 40, batch: 8, sample_steps: 3, test_fraction: 0.25, block_um: 100.0, dg_components: 3, seed: 5, ..Default::default() };
    let device = Default::default();
    let whole = flow::run_flow::<Ad>(&data, spec, &config, &FlowCheckpoint::default(), &device, &mut |_| {}).unwrap();
    // Checkpoints: 4 autoencoder epochs, then per flow 9 windows of 4 steps + 1 finished row.
    // Stop mid-autoencoder (2), mid main flow (4 + 3), after the main flow and inside the
    // second (4 + 10 + 2), then finish.
    let dir = common::scratch("flow-resume");
    let mut written = 0;
    for stop in [2, 7, 16] {
        let ck = FlowCheckpoint { dir: Some(dir.path().to_path_buf()), resume: written > 0, stop_after: Some(stop - written) };
        match flow::run_flow::<Ad>(&data, spec, &config, &ck, &device, &mut |_| {}) {
            Err(TrainError::Interrupted { written: w, .. }) => assert_eq!(w, stop - written),
            other => panic!("expected an interruption after checkpoint {stop}, got {:?}", other.err()),
        }
        written = stop;
    }
    let ck = FlowCheckpoint { dir: Some(dir.path().to_path_buf()), resume: true, stop_after: None };
    let resumed = flow::run_flow::<Ad>(&data, spec, &config, &ck, &device, &mut |_| {}).unwrap();
    assert_eq!(resumed.ae_history, whole.ae_history);
    assert_eq!(format!("{:?}", resumed.flow_history), format!("{:?}", whole.flow_history));
    assert_eq!(resumed.generated, whole.generated, "bit-identical samples after resuming");
    assert_eq!(serde_json::to_value(&resumed.metrics).unwrap(), serde_json::to_value(&whole.metrics).unwrap());
    let (a, b) = (common::scratch("flow-whole"), common::scratch("flow-resumed"));
    flow::save::<Cpu>(a.path(), &whole.header, &whole.model).unwrap();
    flow::save::<Cpu>(b.path(), &resumed.header, &resumed.model).unwrap();
    let bytes = |d: &std::path::Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(bytes(a.path()) == bytes(b.path()), "identical weights");
    // A checkpoint of other settings is refused with a typed error.
    let other = FlowConfig { flow_steps: 50, ..config.clone() };
    let err = flow::run_flow::<Ad>(&data, spec, &other, &ck, &device, &mut |_| {}).err();
    assert!(matches!(err, Some(TrainError::Checkpoint { .. })), "{err:?}");
    // So is a damaged one (one flipped byte), before anything is decoded.
    let file = dir.path().join(flow::FLOW_CHECKPOINT_FILE);
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&file, bytes).unwrap();
    let err = flow::run_flow::<Ad>(&data, spec, &config, &ck, &device, &mut |_| {}).err();
    assert!(matches!(&err, Some(TrainError::Checkpoint { problem, .. }) if problem.contains("checksum")), "{err:?}");
}

mod generative_metrics {
    //! KS / W1 / FID / KID and nucleus features on known inputs.
    use cellsymphony::analysis::generative::*;
    use cellsymphony::util::rng::SplitMix64;

    fn normal_rows(rng: &mut SplitMix64, n: usize, d: usize, shift: f32) -> Vec<f32> {
        (0..n * d).map(|_| rng.normal() + shift).collect()
    }

    #[test]
    fn identical_sets_are_at_distance_zero_and_shifted_sets_are_not() {
        let mut rng = SplitMix64::new(7);
        let a: Vec<f64> = (0..200).map(|_| rng.normal() as f64).collect();
        assert_eq!(ks_statistic(&a, &a), 0.0);
        assert!(wasserstein_1d(&a, &a).abs() < 1e-12);
        let b: Vec<f64> = a.iter().map(|x| x + 0.5).collect();
        assert!(ks_statistic(&a, &b) > 0.1);
        // W1 of a pure shift is the shift.
        assert!((wasserstein_1d(&a, &b) - 0.5).abs() < 1e-9, "{}", wasserstein_1d(&a, &b));
        // Disjoint ranges: KS = 1.
        let c: Vec<f64> = a.iter().map(|x| x + 100.0).collect();
        assert_eq!(ks_statistic(&a, &c), 1.0);

        let d = 4;
        let x = normal_rows(&mut rng, 300, d, 0.0);
        assert!(frechet_distance(&x, &x, d).unwrap() < 1e-6);
        let y: Vec<f32> = x.iter().map(|v| v + 1.0).collect();
        // A pure mean shift of 1 in each of d dimensions: FID = d (tolerance 1e-6 relative).
        let f = frechet_distance(&x, &y, d).unwrap();
        assert!((f - d as f64).abs() < 1e-6 * d as f64, "{f}");
        let z = normal_rows(&mut rng, 300, d, 1.0);
        assert!(frechet_distance(&x, &z, d).unwrap() > 1.0);
        let kid_same = kernel_distance(&x, &x, d).unwrap();
        let kid_shift = kernel_distance(&x, &z, d).unwrap();
        assert!(kid_same.abs() < 0.1 && kid_shift > 0.5, "KID same {kid_same}, shifted {kid_shift}");
        assert!(matches!(frechet_distance(&x[..d], &x, d), Err(cellsymphony::analysis::AnalysisError::InvalidParameter { .. })));
        assert!(matches!(kernel_distance(&x[..d + 1], &x, d), Err(cellsymphony::analysis::AnalysisError::Shape { .. })));
    }

    #[test]
    fn nucleus_features_of_a_drawn_disc_and_ellipse() {
        let side = 32;
        let draw = |ra: f64, rb: f64| -> Vec<f32> {
            (0..side * side)
                .map(|k| {
                    let (r, c) = ((k / side) as f64 - 15.5, (k % side) as f64 - 15.5);
                    if (r / ra).powi(2) + (c / rb).powi(2) <= 1.0 { 0.8 } else { 0.1 }
                })
                .collect()
        };
        let disc = nucleus_features(&draw(8.0, 8.0), side).unwrap();
        assert!((disc.area - std::f64::consts::PI * 64.0).abs() < 12.0, "{disc:?}");
        assert!(disc.eccentricity < 0.2 && disc.solidity > 0.85, "{disc:?}");
        assert!((disc.mean_intensity - 0.8).abs() < 1e-6 && disc.std_intensity < 1e-6, "{disc:?}");
        assert!(disc.perimeter > 2.0 * std::f64::consts::PI * 8.0 * 0.9, "{disc:?}");
        let ellipse = nucleus_features(&draw(10.0, 4.0), side).unwrap();
        // √(1 − (4/10)²) ≈ 0.92.
        assert!((ellipse.eccentricity - 0.917).abs() < 0.05, "{ellipse:?}");
        // Texture: a flat disc has GLCM contrast 0 and homogeneity 1; a checkered one (levels
        // 0.7 / 0.95 alternate, two GLCM levels apart) has contrast 4 inside and a larger gradient.
        assert!(disc.glcm_contrast == 0.0 && disc.glcm_homogeneity == 1.0, "{disc:?}");
        let checkered: Vec<f32> = draw(8.0, 8.0).iter().enumerate().map(|(k, &v)| if v > 0.5 && (k / side + k % side) % 2 == 0 { 0.95 } else if v > 0.5 { 0.7 } else { v }).collect();
        let rough = nucleus_features(&checkered, side).unwrap();
        assert!((rough.glcm_contrast - 4.0).abs() < 1e-9 && (rough.glcm_homogeneity - 1.0 / 3.0).abs() < 1e-9, "{rough:?}");
        assert!(rough.gradient_mean > 2.0 * disc.gradient_mean, "{rough:?} vs {disc:?}");
        let blank = nucleus_features(&vec![0.3; side * side], side).unwrap();
        assert_eq!(blank, NucleusFeatures::default());
        assert!(nucleus_features(&[0.0; 10], side).is_err());
    }
}

/// The image-free spec (`images: false`): an imaged spec's JSON is unchanged (no new keys) and
/// an old JSON without them reads as imaged; the image-free one round-trips; validation names
/// the field for missing learned queries and for learned queries on an imaged model.
#[test]
fn image_free_spec_round_trips_and_validates() {
    use cellsymphony::engine::spec::{SpatiaLevels, SpatiaSpec};
    let imaged = SpatiaSpec::small(9, 4, SpatiaLevels::Tissue);
    let json = serde_json::to_string(&imaged).unwrap();
    assert!(!json.contains("images") && !json.contains("query_tokens"), "{json}");
    let back: SpatiaSpec = serde_json::from_str(&json).unwrap();
    assert!(back.images && back == imaged);
    let free = imaged.clone().without_images();
    assert!(!free.images && free.cell_query_tokens == 4 && free.niche_query_tokens == 4);
    free.validate().unwrap();
    let json = serde_json::to_string(&free).unwrap();
    assert!(json.contains("\"images\":false"), "{json}");
    assert_eq!(serde_json::from_str::<SpatiaSpec>(&json).unwrap(), free);
    assert_eq!(free.cell_queries(), 4);
    assert_eq!(imaged.cell_queries(), imaged.cell_image.n_vit_tokens());
    assert!((free.niche_side_um() - 54.4).abs() < 1e-9);
    let e = SpatiaSpec { cell_query_tokens: 0, ..free.clone() }.validate().unwrap_err().to_string();
    assert!(e.contains("spatia.cell_query_tokens") && e.contains("images = false"), "{e}");
    let e = SpatiaSpec { niche_query_tokens: 0, ..free.clone() }.validate().unwrap_err().to_string();
    assert!(e.contains("spatia.niche_query_tokens"), "{e}");
    let e = SpatiaSpec { cell_query_tokens: 4, ..imaged.clone() }.validate().unwrap_err().to_string();
    assert!(e.contains("cell_query_tokens") && e.contains("images = false only"), "{e}");
}

/// burn's image-free model: no ViT and no pixel decoder, learned queries `[4, D]`; one
/// region's outputs have the documented shapes on every level; reconstruction returns genes
/// only.
#[test]
fn image_free_burn_forward_shapes() {
    use cellsymphony::engine::spec::{SpatiaLevels, SpatiaSpec};
    use common::spatia::{random_model, RandomRegion};
    let _burn_rng = common::burn_rng_lock();
    let (g, c, n) = (9, 4, 23);
    let slots = [0, 3, 5, 12, 15];
    for levels in SpatiaLevels::ALL {
        let spec = SpatiaSpec::small(g, c, levels).without_images();
        let d = spec.d_model;
        let model = random_model(&spec, 7);
        assert!(model.cell.vit.is_none() && model.cell.pixel_hidden.is_none() && model.cell.pixel_out.is_none());
        assert_eq!(model.cell.queries.as_ref().unwrap().tokens.dims(), [4, d]);
        let device = Default::default();
        let region = RandomRegion::new(&spec, n, &slots, 3);
        let x = region.burn::<common::spatia::Cpu>(&spec, &device);
        assert_eq!(x.patches.dims(), [n, 0, 0]);
        let out = model.forward(&x);
        assert_eq!(out.z_cell.dims(), [n, d]);
        assert_eq!(out.z.dims(), [n, d]);
        assert_eq!(out.logits.dims(), [n, c]);
        assert_eq!(out.z_niche.as_ref().map(|t| t.dims()), levels.has_niche().then_some([slots.len(), d]));
        assert_eq!(out.z_tissue.as_ref().map(|t| t.dims()), levels.has_tissue().then_some([slots.len(), d]));
        assert_eq!(out.composition.as_ref().map(|t| t.dims()), levels.has_niche().then_some([slots.len(), c]));
        assert!(common::spatia::values(out.logits).iter().all(|v| v.is_finite()));
        if levels.has_niche() {
            assert!(model.niche.as_ref().unwrap().vit.is_none());
            // Different niches' cells give different z_niche (the learned queries attend to them).
            let zn = common::spatia::values(out.z_niche.unwrap());
            assert!(zn[..d].iter().zip(&zn[d..2 * d]).any(|(a, b)| (a - b).abs() > 1e-6));
        }
        let (genes, pixels) = model.cell.reconstruct(x.genes.clone(), x.patches.clone());
        assert_eq!(genes.dims(), [n, g]);
        assert!(pixels.is_none());
    }
}

/// `spatia pretrain → finetune → embed → export → classify` on two tissue regions of scimap's
/// 33-plex panel (`--h5ad`, image-free chosen automatically): every step succeeds, the
/// pre-training log has no pixel loss, the exported file runs on the CPU engine with the same
/// classes as burn's embed, `--images on` with `--h5ad` is refused, and a model folder of the
/// old record layout is refused with a reason (not a panic).
#[test]
fn image_free_pipeline_on_scimap_33plex() {
    let h5ad = common::data::scimap_33plex();
    let h = h5ad.display().to_string();
    let dir = common::scratch("spatia_free");
    let run = |args: &[&str]| {
        let res = Command::new(env!("CARGO_BIN_EXE_cellsymphony")).arg("spatia").args(args).output().expect("binary runs");
        (res.status.success(), String::from_utf8_lossy(&res.stdout).to_string(), String::from_utf8_lossy(&res.stderr).to_string())
    };
    let (pre, model, emb, cls) = (dir.join("pre"), dir.join("model"), dir.join("embed"), dir.join("classify"));
    let (pre_s, model_s, emb_s, cls_s) = (pre.display().to_string(), model.display().to_string(), emb.display().to_string(), cls.display().to_string());
    let data = ["--h5ad", &h, "--normalisation", "arcsinh:5", "--max-regions", "2"];
    let (ok, _, err) = run(&[&["pretrain", "--epochs", "2", "--out", &pre_s][..], &data].concat());
    assert!(ok && !err.contains("panicked"), "{err}");
    assert!(err.contains("image-free") && err.contains("(no images)"), "{err}");
    let loss = std::fs::read_to_string(pre.join("pretrain_loss.csv")).unwrap();
    assert_eq!(loss.lines().count(), 3, "{loss}");
    let (ok, out, err) = run(&[&["finetune", "--epochs", "1", "--split", "random", "--pretrained", &pre_s, "--out", &model_s][..], &data].concat());
    assert!(ok, "{err}");
    assert!(out.contains("test macro-F1"), "{out}");
    let header = std::fs::read_to_string(model.join("spatia_model.json")).unwrap();
    assert!(header.contains("\"images\": false"), "{header}");
    let (ok, _, err) = run(&["embed", "--model", &model_s, "--h5ad", &h, "--normalisation", "arcsinh:5", "--max-regions", "2", "--out", &emb_s]);
    assert!(ok, "{err}");
    let (rows, dim, _) = npy(&emb.join("z_cell.npy"));
    let cells = std::fs::read_to_string(emb.join("cells.csv")).unwrap().lines().count() - 1;
    assert!(rows == cells && rows > 3000 && dim == 64, "z_cell [{rows}, {dim}] for {cells} cells");
    let file = dir.join("spatia.safetensors");
    let file_s = file.display().to_string();
    let (ok, _, err) = run(&["export", "--model", &model_s, "--out", &file_s]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["classify", "--model", &file_s, "--h5ad", &h, "--normalisation", "arcsinh:5", "--max-regions", "2", "--engine", "cpu", "--out", &cls_s]);
    assert!(ok, "{err}");
    let (a, b) = (std::fs::read_to_string(emb.join("cells.csv")).unwrap(), std::fs::read_to_string(cls.join("cells.csv")).unwrap());
    let predicted = a.lines().skip(1).filter(|l| !l.ends_with(",,")).count();
    assert!(predicted > 0, "no cell of the two regions was predicted");
    assert_eq!(a, b, "the CPU engine's classes are burn's");
    let (ok, _, err) = run(&["finetune", "--images", "on", "--h5ad", &h, "--epochs", "1", "--out", &model_s]);
    assert!(!ok && err.contains("--images on") && !err.contains("panicked"), "{err}");
    // A header of the old record layout (no record_version) is refused with a reason.
    let mut header: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(model.join("spatia_model.json")).unwrap()).unwrap();
    assert_eq!(header["record_version"], 2);
    header.as_object_mut().unwrap().remove("record_version");
    std::fs::write(model.join("spatia_model.json"), header.to_string()).unwrap();
    let (ok, _, err) = run(&["export", "--model", &model_s, "--out", &file_s]);
    assert!(!ok && err.contains("record_version 1") && !err.contains("panicked"), "{err}");
}
