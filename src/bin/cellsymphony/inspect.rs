//! `cellsymphony inspect`: what a Xenium output folder holds.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use cellsymphony::data;


#[derive(Args)]
pub(crate) struct InspectArgs {
    /// The Xenium output folder.
    pub(crate) dir: PathBuf,
    /// Also read the matrix and report its size.
    #[arg(long)]
    pub(crate) read: bool,
}

pub(crate) fn cmd_inspect(a: InspectArgs) -> Result<()> {
    let bundle = data::XeniumBundle::open(&a.dir)?;
    print!("{}", bundle.describe());
    if a.read {
        let t = Instant::now();
        let table = bundle.read_cells(&data::TranscriptOptions::default())?;
        let nnz = table.counts.iter().filter(|&&v| v != 0.0).count();
        let placed = table.centroids_um.iter().filter(|c| c[0].is_finite()).count();
        let nuclei = table.nucleus_centroids_um.iter().filter(|c| c.is_some()).count();
        println!(
            "  read:        {} cells × {} genes, {nnz} non-zero counts, {placed} with centroids, \
             {nuclei} with nucleus centroids ({:.2} s)",
            table.n_cells(),
            table.n_genes(),
            t.elapsed().as_secs_f64()
        );
        match bundle.read_protein()? {
            Some(p) => println!(
                "  protein:     {} markers ({}), {} cells, stored values divided by {} ({:?})",
                p.n_markers(),
                p.markers.join(", "),
                p.n_cells(),
                p.scaling_factor,
                p.scaling_source
            ),
            None => println!("  protein:     none (no \"Protein Expression\" features)"),
        }
    }
    Ok(())
}
