//! `cellsymphony spatia pretrain → finetune → embed` on one tissue region of the crop: each
//! step succeeds and the embeddings have the shapes of the cells and niches.

mod common;

use std::path::Path;
use std::process::Command;

use cellsymphony::train::embeddings::parse_npy;

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
