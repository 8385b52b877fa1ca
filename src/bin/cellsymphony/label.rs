//! `cellsymphony label`: reference labels of every cell.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::common::*;

#[derive(Args)]
pub(crate) struct LabelArgs {
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Write `cell_id,label,best,delta` CSV here.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

pub(crate) fn cmd_label(a: LabelArgs) -> Result<()> {
    let crop = a.data.prepare()?;
    if let Some(out) = a.out {
        let mut s = String::from("cell_id,label,best,delta\n");
        for i in 0..crop.table.n_cells() {
            let label = crop.labels[i].map(|c| crop.class_names[c as usize].as_str()).unwrap_or("");
            s += &format!("{},{},{},{:.4}\n", crop.table.cell_ids[i], label, crop.annotation.best[i], crop.annotation.delta[i]);
        }
        write_file(&out, s)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}
