//! Cells/s of each of CellSymphony's four classifiers, in one run, on the real crop's cells:
//! burn fp32 (ndarray CPU, the named peer) for all four, and our int8 engines (plain-Rust CPU
//! and WGSL through wgpu: a real GPU where there is one, lavapipe otherwise) for all four
//! (dual-modality and multi-input run the morphology ViT over each cell's patch). Throughput
//! does not depend on the weights, so the models are freshly initialised (seeded) at the
//! benchmark defaults (6 layers, d_model 64; ViT 32 px patches, patch 8, width 64, 2 blocks).
//!
//! `bench_models [--cells 4096] [--reps 3] [--layers 6]`

use std::sync::Arc;

use clap::Parser;

use cellsymphony::data::{CellInput, CountsInput, PatchInput};
use cellsymphony::engine::{Architecture, Classifier, ClassifierConfig, EngineModel, TokenSources};
use cellsymphony::gpu::GpuContext;
use cellsymphony::model::ClassifierOptions;
use cellsymphony::train::{predict_cells, CellInputs, Rows};
use cellsymphony::train::dataset::{prepare_crop, LabelOptions};

#[derive(Parser)]
#[command(about = "Cells/s per classifier: burn fp32 vs our CPU and WGSL int8 engines, on the real crop")]
struct Args {
    /// Cells per measurement (the crop's cells are repeated to reach it).
    #[arg(long, default_value_t = 4096)]
    cells: usize,
    /// Timed repetitions after one warm-up; the median is reported.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Encoder layers.
    #[arg(long, default_value_t = 6)]
    layers: usize,
}

#[path = "shared/timing.rs"]
mod timing;
use timing::time;

type B = burn::backend::NdArray;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    let crop = prepare_crop(&cellsymphony::data::default_data_dir(), &LabelOptions::default())?;
    let (n_crop, g, k) = (crop.table.n_cells(), crop.table.n_genes(), crop.class_names.len());
    let n = a.cells.max(1);
    let rep = |v: &[f32], w: usize| -> Vec<f32> {
        (0..n).flat_map(|i| v[(i % n_crop) * w..(i % n_crop + 1) * w].iter().copied()).collect()
    };
    let x = rep(&crop.x_norm, g);
    let counts = rep(&crop.table.counts, g);
    let centroids_crop: Vec<f32> = crop.table.centroids_um.iter().flat_map(|c| [c[0], c[1]]).collect();
    let centroids = rep(&centroids_crop, 2);
    let sources = TokenSources::default();
    let side = sources.morphology.image_size;
    let patches_crop = cellsymphony::train::benchmark::crop_patches(&crop, side, sources.morphology.um_per_px as f32)?;
    let patches = rep(&patches_crop, side * side);
    let inputs = CellInputs {
        n_cells: n,
        genes: Some(Rows { data: &x, cols: g }),
        gene_embedding: None,
        patches: Some(Rows { data: &patches, cols: side * side }),
        morph_embedding: None,
        centroids_um: Some(Rows { data: &centroids, cols: 2 }),
    };
    let idx: Vec<usize> = (0..n).collect();
    let device = Default::default();
    let base = ClassifierConfig { n_layers: a.layers, ..ClassifierConfig::new(g, k) };
    println!(
        "{n} cells (the crop's {n_crop} repeated), {g} genes, {k} classes; {} layers, d_model 64; \
         patches {side}×{side} px, ViT patch 8",
        a.layers
    );

    let gpu = pollster::block_on(GpuContext::new()).map(Arc::new);
    match &gpu {
        Ok(ctx) => println!("WGSL adapter: {}", ctx.adapter_summary()),
        Err(e) => println!("WGSL engine: SKIPPED (no adapter: {e})"),
    }
    let mut rows: Vec<(String, String, f64)> = Vec::new();
    let engines = |name: &str, model: EngineModel, rows: &mut Vec<(String, String, f64)>| -> Result<(), Box<dyn std::error::Error>> {
        let int8 = model.quantize_int8();
        let input = CellInput {
            counts: CountsInput::Dense { values: &counts, n_cells: n, n_genes: g },
            genes: &crop.table.genes,
            centroids_um: Some(&centroids),
            patches: int8.config().morphology.as_ref().map(|_| PatchInput { pixels: &patches, size: side }),
            proteins: None,
        };
        let cpu = Classifier::cpu(int8.clone())?;
        let cells = cpu.prepare(input)?;
        pollster::block_on(cpu.logits(&cells))?; // surfaces an engine error before timing
        let s = time(a.reps, || {
            let _ = pollster::block_on(cpu.logits(&cells));
        });
        rows.push((name.into(), "cellsymphony CPU engine, int8".into(), s));
        if let Ok(ctx) = &gpu {
            let clf = Classifier::gpu(int8, Arc::clone(ctx))?;
            pollster::block_on(clf.logits(&cells))?; // surfaces an engine error before timing
            let s = time(a.reps, || {
                let _ = pollster::block_on(clf.logits(&cells));
            });
            let adapter = ctx.adapter_summary();
            let short = adapter.split(" (").next().unwrap_or(&adapter).to_string();
            rows.push((name.into(), format!("cellsymphony WGSL engine, int8 ({short})"), s));
        }
        Ok(())
    };

    for arch in Architecture::ALL {
        let name = arch.title().to_lowercase();
        let m = ClassifierOptions::new(base.clone().for_architecture(arch, &sources)).init::<B>(&device)?;
        let s = time(a.reps, || {
            predict_cells(&m, &inputs, &idx, 1024, &device);
        });
        rows.push((name.clone(), "burn fp32, ndarray CPU (peer)".into(), s));
        let meta = cellsymphony::train::export::model_meta(
            &m,
            &crop.table.genes,
            &crop.class_names,
            crop.normalisation.clone(),
            serde_json::json!({}),
        );
        engines(&name, cellsymphony::model::convert::to_engine_model(&m, meta)?, &mut rows)?;
    }
    println!("\n| model | engine | median s | cells/s | vs burn fp32 |\n|---|---|---:|---:|---:|");
    for (model, name, s) in &rows {
        let peer = rows
            .iter()
            .find(|(m, e, _)| m == model && e.starts_with("burn"))
            .map_or(*s, |r| r.2);
        println!("| {model} | {name} | {s:.3} | {:.0} | {:.2}× |", n as f64 / s, peer / s);
    }
    Ok(())
}
