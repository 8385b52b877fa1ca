//! `cellsymphony pipeline`: the main job (label → train → eval on three engines → parity → classify → report + web bundle).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use cellsymphony::engine::EngineModel;
use cellsymphony::train::{self, argmax_rows};

use crate::classify::{classify_crop, predictions_table, print_prediction_counts, write_predictions};
use crate::infer::{engine_logits, evaluate, model_inputs};
use crate::train::{cmd_train, TrainArgs};

use crate::common::*;

#[derive(Args)]
pub(crate) struct PipelineArgs {
    #[command(flatten)]
    pub(crate) train: TrainArgs,
    /// Web-demo bundle folder.
    #[arg(long, default_value = "www/data")]
    pub(crate) www: PathBuf,
    /// Also write Xenium Explorer cell groups of all cells (as `classify --xenium-explorer`,
    /// threshold 0.5 for the `_confident` grouping).
    #[arg(long)]
    pub(crate) xenium_explorer: Option<PathBuf>,
}

/// Share of rows with the same argmax, and the largest absolute logit difference.
pub(crate) fn parity(a: &[f32], b: &[f32], k: usize) -> (f64, f32) {
    let (pa, pb) = (argmax_rows(a, k), argmax_rows(b, k));
    let same = pa.iter().zip(&pb).filter(|(x, y)| x == y).count() as f64 / pa.len().max(1) as f64;
    let err = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    (same, err)
}

pub(crate) fn cmd_pipeline(a: PipelineArgs) -> Result<()> {
    let t_all = Instant::now();
    let trained = cmd_train(a.train.clone())?;
    let crop = &trained.crop;
    let int8 = EngineModel::load(&trained.files.int8)?;
    let mut report = String::new();
    report += "# cellsymphony report: gene-only classifier on the Xenium breast crop\n\n";
    report += "Labels come from SingleR-style Spearman correlation to the bidcell `sc_breast.csv` reference; the crop has no expert labels.\n\n";
    report += &format!("## Labels\n\ncells read {}, low counts excluded {}, ambiguous excluded {}\n\n| class | cells |\n|---|---|\n", crop.summary.cells, crop.summary.low_counts, crop.summary.ambiguous);
    for (n, c) in &crop.summary.class_counts {
        report += &format!("| {n} | {c} |\n");
    }
    for (n, c) in &crop.summary.rare_classes {
        report += &format!("| {n} (excluded, rare) | {c} |\n");
    }
    report += "\n";
    report += &train::report::morphology_section(&a.train.data.dir(), crop, &a.train.out)?;
    let c = &trained.config;
    report += &format!("## Training\n\nrecipe {}: up to {} epochs, peak lr {}, {:?} schedule with {} warmup, batch {}, weight decay {}, class weights {}, label smoothing {}, patience {:?}, seed {}; {:.1} s on burn {:?}. Kept epoch {} (best macro-F1 on the validation cells, which are {} of the training cells; the test cells choose nothing).\n\n| epoch | train loss | lr | val macro-F1 | val accuracy |\n|---|---|---|---|---|\n",
        a.train.training.recipe.name(), c.epochs, c.learning_rate, c.schedule, c.warmup_fraction, c.batch_size, c.weight_decay, c.class_weighting, c.label_smoothing, c.patience, c.seed, trained.train_seconds, a.train.backend, trained.best_epoch, a.train.training.val_fraction);
    let opt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
    for s in &trained.history {
        report += &format!("| {} | {:.4} | {:.2e} | {} | {} |\n", s.epoch, s.train_loss, s.lr, opt(s.val_macro_f1), opt(s.val_accuracy));
    }
    let mut engines = vec![(Engine::Burn, &trained.fp32, &trained.files.fp32), (Engine::Cpu, &int8, &trained.files.int8), (Engine::Gpu, &int8, &trained.files.int8)];
    let mut gpu_ok = true;
    report += "\n## Held-out evaluation (20%)\n\n";
    let mut reports = Vec::new();
    for (engine, model, path) in engines.drain(..) {
        match evaluate(model, path, crop, engine) {
            Ok((r, name)) => {
                println!("Held-out evaluation with {name}:\n{}", r.to_table());
                report += &format!("### {name}\n\n```\n{}```\n\n", r.to_table());
                reports.push((engine, r));
            }
            Err(e) if engine == Engine::Gpu => {
                gpu_ok = false;
                eprintln!("warning: GPU engine unavailable ({e}); using the CPU engine for the web bundle");
                report += &format!("### WGSL engine\n\nnot run: {e}\n\n");
            }
            Err(e) => return Err(e),
        }
    }
    if let Some((_, r)) = reports.first() {
        write_file(&a.train.out.join("eval_fp32.csv"), r.to_csv())?;
    }
    // Parity: fp32 burn vs the int8 engines on cells the model never saw: the labelled
    // held-out 20%, and all cells not used for training (held-out + excluded cells).
    let k = int8.meta.classes.len();
    let data = model_inputs(&int8, crop)?;
    let test_set: std::collections::HashSet<usize> = trained.test_idx.iter().copied().collect();
    let unseen: Vec<usize> = (0..crop.table.n_cells())
        .filter(|i| crop.labels[*i].is_none() || test_set.contains(i))
        .collect();
    report += "## Parity: fp32 burn model vs int8 engines\n\n| cells | comparison | same class | max abs logit error |\n|---|---|---|---|\n";
    for (set_name, idx) in [("labelled held-out", &trained.test_idx), ("all not used in training", &unseen)] {
        let (l_fp32, _) = engine_logits(&trained.fp32, &data, idx, Engine::Burn)?;
        let (l_cpu, _) = engine_logits(&int8, &data, idx, Engine::Cpu)?;
        let mut rows = vec![("burn fp32 vs int8 CPU engine", parity(&l_fp32, &l_cpu, k))];
        if gpu_ok {
            let (l_gpu, _) = engine_logits(&int8, &data, idx, Engine::Gpu)?;
            rows.push(("burn fp32 vs int8 WGSL engine", parity(&l_fp32, &l_gpu, k)));
            rows.push(("int8 CPU vs int8 WGSL engine", parity(&l_cpu, &l_gpu, k)));
        }
        for (name, (same, err)) in rows {
            println!("parity on {} {set_name} cells: {name}: same class {:.2}%, max |logit error| {err:.5}", idx.len(), 100.0 * same);
            report += &format!("| {} {set_name} | {name} | {:.2}% | {err:.5} |\n", idx.len(), 100.0 * same);
        }
    }
    let native = classify_crop(&int8, crop, if gpu_ok { Engine::Gpu } else { Engine::Cpu }, None)?;
    report += &format!("\n## Classification of all {} cells\n\n{}: {:.3} s ({:.0} cells/s)\n\n", crop.table.n_cells(), native.engine_name, native.seconds, crop.table.n_cells() as f64 / native.seconds);
    let pred_path = a.train.out.join("predictions.csv");
    write_predictions(&pred_path, &int8, crop, &native)?;
    print_prediction_counts(&int8, &native.pred);
    if let Some(path) = &a.xenium_explorer {
        let p = predictions_table(&int8, crop, &native);
        let written = cellsymphony::data::write_xenium_explorer_groups(path, &p, cellsymphony::data::XENIUM_EXPLORER_MIN_CONFIDENCE)?;
        println!("wrote Xenium Explorer cell groups {} and {}", written[0].display(), written[1].display());
    }
    train::www::write_www_bundle(&a.www, &a.train.data.dir(), &trained.files.int8, &int8, crop, &native.pred, &native.engine_name)?;
    println!("wrote web-demo bundle to {}", a.www.display());
    // The page shows the bundle model's held-out evaluation: the int8 CPU engine's, the same
    // int8 model file the page loads.
    if let Some((_, r)) = reports.iter().find(|(e, _)| *e == Engine::Cpu) {
        let on = format!("{} labelled held-out cells (20%), never seen in training or model selection", r.n_cells);
        train::www::write_www_evaluation(&a.www, r, &on, "int8 CPU engine")?;
    }
    report += &format!("Files: `{}`, `{}`, `{}`, web bundle `{}`.\n\nOpen the demo: `scripts/build_wasm.sh && python3 -m http.server -d . 8000`, then http://127.0.0.1:8000/www/ in a browser with WebGPU (Chrome/Edge; Firefox Nightly).\n\nTotal pipeline time {:.1} s.\n",
        trained.files.fp32.display(), trained.files.int8.display(), pred_path.display(), a.www.display(), t_all.elapsed().as_secs_f64());
    let report_path = a.train.out.join("report.md");
    write_file(&report_path, &report)?;
    println!("wrote {} (total {:.1} s)", report_path.display(), t_all.elapsed().as_secs_f64());
    Ok(())
}
