//! SPATIA: the regions the model reads agree with `data::niches`, and `cellsymphony spatia
//! pretrain → finetune → embed` on one tissue region of the crop succeeds and writes
//! embeddings of the shapes of the cells and niches.

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
