//! `cellsymphony eval`: per-class P/R/F1 of a model file on its held-out cells.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use cellsymphony::engine::EngineModel;

use crate::infer::evaluate;

use crate::common::*;

#[derive(Args)]
pub(crate) struct EvalArgs {
    #[command(flatten)]
    pub(crate) data: DataArgs,
    #[command(flatten)]
    pub(crate) anndata: AnnDataArgs,
    /// Model file (fp32 runs through burn; int8 through the chosen engine).
    #[arg(long, default_value = "runs/gene_only/model.safetensors")]
    pub(crate) model: PathBuf,
    /// Engine for the evaluation.
    #[arg(long, value_enum, default_value_t = Engine::Burn)]
    pub(crate) engine: Engine,
    /// Write the per-class table as CSV here.
    #[arg(long)]
    pub(crate) csv: Option<PathBuf>,
}

pub(crate) fn cmd_eval(a: EvalArgs) -> Result<()> {
    let model = EngineModel::load(&a.model)?;
    let crop = a.anndata.prepare_or(&a.data)?;
    let (report, engine_name) = evaluate(&model, &a.model, &crop, a.engine)?;
    println!("Held-out evaluation of {} with {engine_name}:\n{}", a.model.display(), report.to_table());
    if let Some(csv) = a.csv {
        write_file(&csv, report.to_csv())?;
        println!("wrote {}", csv.display());
    }
    Ok(())
}
