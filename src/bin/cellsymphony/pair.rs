//! `cellsymphony pair`: OT pairing of two cell states and their Δg signature.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::ProgressBar;


use crate::common::*;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub(crate) enum OtEngine {
    /// Plain Rust on CPU threads.
    Cpu,
    /// WGSL kernels through wgpu (lavapipe without a GPU).
    Gpu,
}

#[derive(Args)]
pub(crate) struct PairArgs {
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Write the pairs even when Sinkhorn does not converge (flagged `converged=false` in
    /// pairs.csv); by default that is an error.
    #[arg(long)]
    pub(crate) allow_unconverged: bool,
    /// Control state: a reference label of the cells (e.g. Epithelial).
    #[arg(long)]
    pub(crate) control: String,
    /// Target state (e.g. Malignant).
    #[arg(long)]
    pub(crate) target: String,
    /// Lineage of both states; default from the breast-atlas lineage map (states of different
    /// lineages are refused, as in SPATIA).
    #[arg(long)]
    pub(crate) lineage: Option<String>,
    /// PCA components.
    #[arg(long, default_value_t = 50)]
    pub(crate) pca: usize,
    /// Entropic regularisation ε (relative to the largest cost).
    #[arg(long, default_value_t = 0.05)]
    pub(crate) epsilon: f32,
    /// Squared Euclidean cost instead of Euclidean.
    #[arg(long)]
    pub(crate) squared: bool,
    /// Anneal ε from 1 down to --epsilon (faster for small ε).
    #[arg(long)]
    pub(crate) epsilon_scaling: bool,
    /// Marginal-error tolerance (L1).
    #[arg(long, default_value_t = 1e-5)]
    pub(crate) tolerance: f32,
    /// Iteration cap.
    #[arg(long, default_value_t = 1000)]
    pub(crate) max_iterations: usize,
    /// θ_min: minimum cells per state.
    #[arg(long, default_value_t = 50)]
    pub(crate) min_cells: usize,
    /// Add λ·distance(µm) to the cost (cost units per µm).
    #[arg(long)]
    pub(crate) spatial_lambda: Option<f32>,
    /// Engine.
    #[arg(long, value_enum, default_value_t = OtEngine::Gpu)]
    pub(crate) engine: OtEngine,
    /// Output folder for pairs.csv and signature.csv.
    #[arg(long, default_value = "runs/pairing")]
    pub(crate) out: PathBuf,
    /// Genes listed up and down in signature.csv.
    #[arg(long, default_value_t = 20)]
    pub(crate) top: usize,
}

pub(crate) fn cmd_pair(a: PairArgs) -> Result<()> {
    use cellsymphony::ot;
    if a.control == a.target {
        anyhow::bail!("--control and --target are both `{}`: pair two different states", a.control);
    }
    let crop = a.data.prepare()?;
    let g = crop.table.n_genes();
    for state in [&a.control, &a.target] {
        if !crop.annotation.labels.iter().any(|l| l.as_deref() == Some(state.as_str())) {
            let mut names: Vec<String> = crop.annotation.summary().to_string().lines().map(str::to_string).collect();
            names.truncate(30);
            anyhow::bail!("no confidently labelled cells of state `{state}`; the labels are:\n{}", names.join("\n"));
        }
    }
    let t = Instant::now();
    let table = &crop.table;
    let states = ot::state_pca(&crop.x_norm, g, &crop.annotation.labels, &table.cell_ids, &table.centroids_um, &a.control, &a.target, a.pca, a.lineage.as_deref())?;
    let pca_seconds = t.elapsed().as_secs_f64();
    let (pca, d) = (&states.pca, states.dim());
    let (ci, ti, lin_c) = (&states.control, &states.target, &states.lineages[0]);
    let (control, target) = states.state_cells();
    let rows = |idx: &[usize]| -> Vec<f32> { idx.iter().flat_map(|&i| crop.x_norm[i * g..(i + 1) * g].iter().copied()).collect() };
    let (xc, xt) = (rows(ci), rows(ti));
    let opts = ot::PairingOptions {
        sinkhorn: ot::SinkhornOptions {
            epsilon: a.epsilon,
            cost: if a.squared { ot::GroundCost::SquaredEuclidean } else { ot::GroundCost::Euclidean },
            tolerance: a.tolerance,
            max_iterations: a.max_iterations,
            epsilon_scaling: a.epsilon_scaling.then(ot::EpsilonScaling::default),
            ..Default::default()
        },
        min_cells_per_state: a.min_cells,
        spatial_lambda: a.spatial_lambda,
        allow_unconverged: a.allow_unconverged,
    };
    println!(
        "pairing {} {} cells → {} {} cells (lineage {lin_c}); PCA {g} genes → {d} components ({:.1}% variance) in {pca_seconds:.2} s",
        ci.len(), a.control, ti.len(), a.target,
        100.0 * pca.explained_variance_ratio.iter().sum::<f32>()
    );
    let ctx = match a.engine {
        OtEngine::Gpu => Some(gpu_context().map_err(|e| anyhow::anyhow!("{e:#} (use --engine cpu without a GPU)"))?),
        OtEngine::Cpu => None,
    };
    let engine = match &ctx {
        Some(ctx) => ot::SinkhornEngine::Gpu(ctx),
        None => ot::SinkhornEngine::Reference,
    };
    let bar = ProgressBar::new_spinner();
    let t = Instant::now();
    let pairing = pollster::block_on(ot::pair_states(&control, &target, d, &opts, engine, |it, err| {
        bar.set_message(format!("Sinkhorn iteration {it}, marginal error {err:.2e}"));
        bar.tick();
    }))?;
    bar.finish_and_clear();
    let s = &pairing.sinkhorn;
    println!(
        "Sinkhorn ({}): {} iterations, marginal error {:.2e} ({}), {:.3} s, {} dispatches",
        ctx.as_ref().map_or("CPU".to_string(), |c| format!("WGSL on {}", c.adapter_summary())),
        s.iterations, s.error, if s.converged { "converged" } else { "NOT converged: raise --max-iterations or use --epsilon-scaling" },
        t.elapsed().as_secs_f64(), s.dispatches
    );
    let sig = ot::signature(&xc, ci.len(), &xt, ti.len(), &crop.table.genes, &pairing.pairs)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    ot::write_pairs_csv(&a.out.join("pairs.csv"), &pairing.records)?;
    sig.write_csv(&a.out.join("signature.csv"), a.top)?;
    let mean_score = pairing.records.iter().map(|r| r.match_score).sum::<f32>() / pairing.records.len() as f32;
    let distinct: std::collections::HashSet<u32> = pairing.pairs.iter().map(|p| p.1).collect();
    println!("{} pairs, {} distinct targets, mean match score {mean_score:.3}", pairing.records.len(), distinct.len());
    let fmt = |v: Vec<ot::GeneDelta>| v.iter().map(|x| format!("{} {:+.2}", x.gene, x.delta)).collect::<Vec<_>>().join(", ");
    println!("Δg up in {}: {}", a.target, fmt(sig.top_up(10)));
    println!("Δg down in {}: {}", a.target, fmt(sig.top_down(10)));
    println!("wrote {} and {}", a.out.join("pairs.csv").display(), a.out.join("signature.csv").display());
    Ok(())
}
