//! Benchmark of the inference engines on the real crop's cells, in one run:
//! burn fp32 (ndarray, the named peer) vs our plain-Rust CPU engine (int8 file with f32 or int8 (W8A8)
//! activations, fp32 file) vs our WGSL engine
//! (int8, wgpu: a real GPU where there is one, lavapipe otherwise). Prints a table.
//!
//! `bench_engine --model runs/gene_only/model.int8.safetensors --fp32 runs/gene_only/model.safetensors`

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;

use cellsymphony::data::{self, default_data_dir, CellInput, CountsInput, TranscriptOptions};
use cellsymphony::engine::cpu::argmax_rows;
use cellsymphony::engine::{Backend, Classifier, EngineModel, GpuClassifier, Int8Gemm};
use cellsymphony::gpu::{GpuContext, GpuOptions};
use cellsymphony::model::convert::from_engine_model;
use cellsymphony::train::{predict_cells, CellInputs};

#[derive(Parser)]
#[command(about = "Cells/s of burn fp32, the CPU engine (int8, fp32) and the WGSL int8 engine on the real crop")]
struct Args {
    /// int8 model file.
    #[arg(long, default_value = "runs/gene_only/model.int8.safetensors")]
    model: PathBuf,
    /// fp32 model file (for the burn peer).
    #[arg(long, default_value = "runs/gene_only/model.safetensors")]
    fp32: PathBuf,
    /// Data folder (default $CELLSYMPHONY_DATA/bidcell-1.0.3).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Cells per measurement (the crop's cells are repeated to reach it).
    #[arg(long, default_value_t = 8192)]
    cells: usize,
    /// Timed repetitions (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Skip the WGSL engine (on a software adapter it takes minutes).
    #[arg(long)]
    no_gpu: bool,
    /// Only the WGSL engine (skip burn and the CPU engine; the last column is then relative
    /// to the first WGSL row).
    #[arg(long)]
    only_gpu: bool,
    /// Open the GPU without its optional features (shader-f16, subgroups): only the
    /// portable kernels are measured.
    #[arg(long)]
    no_gpu_fast_paths: bool,
}

#[path = "shared/timing.rs"]
mod timing;
use timing::time;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    let int8 = EngineModel::load(&a.model)?;
    let fp32 = EngineModel::load(&a.fp32)?;
    let dir = a.data.clone().unwrap_or_else(default_data_dir);
    let table = data::read_transcripts_csv(&data::BidcellData::locate(&dir)?.transcripts, &TranscriptOptions::default())?;
    let cpu = Classifier::cpu(int8.clone())?;
    let counts = CountsInput::Dense { values: &table.counts, n_cells: table.n_cells(), n_genes: table.genes.len() };
    let crop = cpu.prepare(CellInput { counts, genes: &table.genes, centroids_um: None, patches: None, proteins: None })?;
    let g = int8.meta.config.n_genes;
    let n_crop = table.n_cells();
    let n = a.cells;
    let repeated: Vec<usize> = (0..n).map(|i| i % n_crop).collect();
    let cells = crop.select(&repeated)?;
    println!("model: {} layers, d_model {}, {} gene tokens, {} genes, {} classes; {} cells (the crop's {} cells repeated)",
        int8.meta.config.n_layers, int8.meta.config.d_model, int8.meta.config.gene_tokens, g, int8.meta.classes.len(), n, n_crop);

    let mut rows: Vec<(String, f64)> = Vec::new();
    if !a.only_gpu {
        type B = burn::backend::NdArray;
        let device = Default::default();
        let m = from_engine_model::<B>(&fp32, 0.0, &device)?;
        let idx: Vec<usize> = (0..n).collect();
        let inputs = CellInputs::genes(&cells.x, g);
        let s = time(a.reps, || { predict_cells(&m, &inputs, &idx, 1024, &device); });
        rows.push(("burn fp32, ndarray CPU (peer)".into(), s));
    }
    if !a.only_gpu {
        pollster::block_on(cpu.logits(&cells))?; // surfaces an engine error before timing
        let s = time(a.reps, || { let _ = pollster::block_on(cpu.logits(&cells)); });
        rows.push(("cellsymphony CPU engine, int8".into(), s));
        let w8a8 = Classifier::cpu_with(int8.clone(), Int8Gemm::W8A8)?;
        let w8a8_logits = pollster::block_on(w8a8.logits(&cells))?; // surfaces an engine error before timing
        let s = time(a.reps, || { let _ = pollster::block_on(w8a8.logits(&cells)); });
        rows.push(("cellsymphony CPU engine, int8 W8A8 (int8 activations)".into(), s));
        let cpu32 = Classifier::cpu(fp32.clone())?;
        let fp32_logits = pollster::block_on(cpu32.logits(&cells))?; // surfaces an engine error before timing
        let s = time(a.reps, || { let _ = pollster::block_on(cpu32.logits(&cells)); });
        rows.push(("cellsymphony CPU engine, fp32".into(), s));
        let k = int8.meta.classes.len();
        let same = argmax_rows(&w8a8_logits, k).iter().zip(argmax_rows(&fp32_logits, k)).filter(|(a, b)| **a == *b).count();
        println!("CPU W8A8 vs CPU fp32 file: same class on {same}/{n} cells");
    }
    let options = if a.no_gpu_fast_paths { GpuOptions::portable() } else { GpuOptions::default() };
    match if a.no_gpu { Err("--no-gpu".to_string()) } else { pollster::block_on(GpuContext::with_options(options)).map_err(|e| e.to_string()) } {
        Ok(ctx) => {
            let name = ctx.adapter_summary();
            let f = ctx.adapter.features();
            println!(
                "adapter features: shader-f16 {}, subgroups {} (size {}..{}); fast paths on this context: {}",
                f.contains(wgpu::Features::SHADER_F16),
                f.contains(wgpu::Features::SUBGROUP),
                ctx.adapter.get_info().subgroup_min_size,
                ctx.adapter.get_info().subgroup_max_size,
                ctx.fast_paths()
            );
            let ctx = Arc::new(ctx);
            let clf = Classifier::gpu(int8.clone(), ctx.clone())?;
            if let Backend::Gpu(g) = clf.backend() {
                println!("WGSL engine (default: subgroups {}, f16 hidden {}): {} compute dispatches per encoder layer",
                    g.subgroups(), g.f16_hidden(), g.dispatches_per_layer()?);
            }
            // The portable path (no optional feature) is the baseline every fast path is
            // compared with; then each path on its own and combined, where the context has it.
            let mut g = GpuClassifier::new(ctx.clone(), &int8)?;
            let k = int8.meta.classes.len();
            let mut portable: Option<Vec<f32>> = None;
            // (label, subgroups, f16 hidden, int8 activations)
            let paths = [
                ("portable kernels", false, false, false),
                ("subgroups", true, false, false),
                ("f16 hidden", false, true, false),
                ("subgroups + f16 hidden", true, true, false),
                ("int8 activations (dot4I8Packed)", false, false, true),
                ("int8 activations + subgroups", true, false, true),
            ];
            for (label, sg, f16, dot4) in paths {
                let on = (g.set_subgroups(sg), g.set_f16_hidden(f16), g.set_int8_activations(dot4));
                if on != (sg, f16, dot4) {
                    println!("WGSL {label}: SKIPPED (not on this context: {})", ctx.fast_paths());
                    continue;
                }
                let logits = pollster::block_on(g.logits(&cells.x, n))?; // surfaces an engine error before timing
                let dispatches = g.dispatches_per_layer()?;
                match &portable {
                    None => {
                        println!("WGSL {label}: {dispatches} compute dispatches per encoder layer");
                        portable = Some(logits);
                    }
                    Some(base) => {
                        let (a0, a1) = (argmax_rows(base, k), argmax_rows(&logits, k));
                        let same = a0.iter().zip(&a1).filter(|(x, y)| x == y).count();
                        let dmax = base.iter().zip(&logits).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
                        println!("WGSL {label}: {dispatches} compute dispatches per encoder layer; vs portable: same class on {same}/{n} cells, max |Δlogit| {dmax:.4}");
                    }
                }
                let s = time(a.reps, || { let _ = pollster::block_on(g.logits(&cells.x, n)); });
                rows.push((format!("cellsymphony WGSL engine, int8, {label} ({name})"), s));
            }
        }
        Err(e) => println!("WGSL engine: SKIPPED ({e})"),
    }
    let peer = rows.first().map_or(1.0, |r| r.1);
    let load = std::fs::read_to_string("/proc/loadavg").map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_else(|_| "n/a".into());
    println!("\nthreads: {} (rayon pool; RAYON_NUM_THREADS sets it), cores: {}, load average after: {load}",
        rayon::current_num_threads(), std::thread::available_parallelism().map_or(0, |n| n.get()));
    let versus = if a.only_gpu { "speed vs first row" } else { "speed vs burn fp32" };
    println!("\n| engine | cells | median s | cells/s | {versus} |\n|---|---|---|---|---|");
    for (name, s) in &rows {
        println!("| {name} | {n} | {s:.3} | {:.0} | {:.2}× |", n as f64 / s, peer / s);
    }
    Ok(())
}
