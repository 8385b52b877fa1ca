//! `cellsymphony export`: fp32 model file → int8.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use cellsymphony::engine::EngineModel;


#[derive(Args)]
pub(crate) struct ExportArgs {
    /// fp32 model file.
    #[arg(long, default_value = "runs/gene_only/model.safetensors")]
    pub(crate) model: PathBuf,
    /// int8 output file.
    #[arg(long, default_value = "runs/gene_only/model.int8.safetensors")]
    pub(crate) out: PathBuf,
}

pub(crate) fn cmd_export(a: ExportArgs) -> Result<()> {
    let model = EngineModel::load(&a.model)?;
    let q = model.quantize_int8();
    q.save_atomic(&a.out)?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!(
        "wrote {} ({} bytes; fp32 file {} bytes)",
        a.out.display(),
        size(&a.out),
        size(&a.model)
    );
    Ok(())
}
