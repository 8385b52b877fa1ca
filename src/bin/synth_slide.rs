//! A synthetic whole-slide Xenium bundle of N cells, resampled from the real BIDCell crop.
//!
//! ```text
//! synth_slide --cells 1000000 --out DIR [--seed 7] [--data BIDCELL_DIR]
//! ```
//!
//! Writes an XOA 2-style folder that [`cellsymphony::data::XeniumBundle`] reads:
//! * `cell_feature_matrix.h5`: 10x HDF5 (`data` int32 / `indices` int64 in gzip chunks of
//!   65,536 values), the crop's 313 genes plus three negative-control features (one count in
//!   every 7th cell) that readers must drop;
//! * `cells.csv.gz`: `cell_id, x_centroid, y_centroid, transcript_counts, cell_area,
//!   nucleus_area`.
//!
//! Every cell copies the counts of a crop cell drawn with a seeded PRNG (real sparsity and
//! expression). Positions: the crop (its centroids' bounding box, ~510 × 380 µm) is tiled
//! over a square grid large enough for N cells, one tile per 1,135 cells; a cell of tile t
//! sits at its drawn crop cell's centroid, shifted to tile t and jittered by up to ±4 µm.
//! Cell ids are Xenium-style (`aaaaaaaa-1`, …, 8 letters a–p), in index order (which is
//! also their canonical order). Files are written under a temporary name and renamed.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use cellsymphony::data::{read_transcripts_csv, write_10x_h5, BidcellData, CsrCounts, TranscriptOptions};
use cellsymphony::util::rng::SplitMix64;

/// Control features appended after the genes (dropped by every reader).
const CONTROLS: [&str; 3] = ["NegControlProbe_00042", "NegControlCodeword_0500", "BLANK_0006"];
/// Their 10x feature types.
const CONTROL_TYPES: [&str; 3] = ["Negative Control Probe", "Negative Control Codeword", "Blank Codeword"];
/// Every this many cells get one control count.
const CONTROLS_EVERY: usize = 7;
/// Half-width of the uniform centroid jitter, µm.
const JITTER_UM: f32 = 4.0;

struct Args {
    cells: usize,
    out: PathBuf,
    seed: u64,
    data: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut cells = None;
    let mut out = None;
    let mut seed = 7u64;
    let mut data = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--cells" => {
                let v = value("--cells")?;
                let n: usize = v.parse().map_err(|e| format!("--cells {v}: {e}"))?;
                if n == 0 || n > 100_000_000 {
                    return Err(format!("--cells {n}: give 1 to 100,000,000 cells"));
                }
                cells = Some(n);
            }
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--seed" => {
                let v = value("--seed")?;
                seed = v.parse().map_err(|e| format!("--seed {v}: {e}"))?;
            }
            "--data" => data = Some(PathBuf::from(value("--data")?)),
            "-h" | "--help" => {
                println!("synth_slide --cells N --out DIR [--seed S] [--data BIDCELL_DIR]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (see --help)")),
        }
    }
    Ok(Args {
        cells: cells.ok_or("--cells N is required")?,
        out: out.ok_or("--out DIR is required")?,
        seed,
        data,
    })
}

/// Xenium-style cell id of index `i`: 8 letters a–p (base 16, most significant first) + `-1`.
fn cell_id(i: usize) -> String {
    let mut id = [b'a'; 8];
    let mut v = i;
    for k in (0..8).rev() {
        id[k] = b'a' + (v % 16) as u8;
        v /= 16;
    }
    format!("{}-1", std::str::from_utf8(&id).unwrap_or("aaaaaaaa"))
}

fn run(a: &Args) -> Result<(), String> {
    let t = Instant::now();
    let files = match &a.data {
        Some(d) => BidcellData::locate(d),
        None => BidcellData::from_default_dir(),
    }
    .map_err(|e| e.to_string())?;
    let crop = read_transcripts_csv(&files.transcripts, &TranscriptOptions::default()).map_err(|e| e.to_string())?;
    let (n_crop, n_genes) = (crop.n_cells(), crop.n_genes());
    let (mut lo, mut hi) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
    for c in &crop.centroids_um {
        for d in 0..2 {
            lo[d] = lo[d].min(c[d]);
            hi[d] = hi[d].max(c[d]);
        }
    }
    let tile = [hi[0] - lo[0] + 2.0 * JITTER_UM, hi[1] - lo[1] + 2.0 * JITTER_UM];
    let tiles = a.cells.div_ceil(n_crop);
    let grid = (tiles as f64).sqrt().ceil() as usize;
    eprintln!(
        "synth_slide: {} cells from {n_crop} crop cells × {n_genes} genes; {tiles} tiles of {:.0} × {:.0} µm on a {grid}-column grid",
        a.cells, tile[0], tile[1]
    );
    let crop_rows: Vec<(Vec<u32>, Vec<f32>)> = (0..n_crop)
        .map(|i| {
            let row = crop.row(i);
            let idx: Vec<u32> = (0..n_genes as u32).filter(|&g| row[g as usize] != 0.0).collect();
            let val = idx.iter().map(|&g| row[g as usize]).collect();
            (idx, val)
        })
        .collect();

    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let cells_tmp = a.out.join(".cells.csv.gz.partial");
    let file = std::fs::File::create(&cells_tmp).map_err(|e| format!("{}: {e}", cells_tmp.display()))?;
    let mut cells_csv =
        flate2::write::GzEncoder::new(std::io::BufWriter::with_capacity(1 << 20, file), flate2::Compression::fast());
    let io = |e: std::io::Error| format!("{}: {e}", cells_tmp.display());
    writeln!(cells_csv, "cell_id,x_centroid,y_centroid,transcript_counts,cell_area,nucleus_area").map_err(io)?;

    let mut rng = SplitMix64::new(a.seed);
    let mut counts = CsrCounts { n_genes: n_genes + CONTROLS.len(), indptr: Vec::with_capacity(a.cells + 1), ..Default::default() };
    counts.indptr.push(0);
    let mut ids = Vec::with_capacity(a.cells);
    let step = (a.cells / 10).max(1);
    for i in 0..a.cells {
        let d = rng.below(n_crop as u64) as usize;
        let (idx, val) = &crop_rows[d];
        counts.indices.extend_from_slice(idx);
        counts.data.extend_from_slice(val);
        if i % CONTROLS_EVERY == 0 {
            counts.indices.push((n_genes + i % CONTROLS.len()) as u32);
            counts.data.push(1.0);
        }
        counts.indptr.push(counts.indices.len() as u64);
        let t_i = i / n_crop;
        let (tx, ty) = ((t_i % grid) as f32 * tile[0], (t_i / grid) as f32 * tile[1]);
        let [cx, cy] = crop.centroids_um[d];
        let x = cx - lo[0] + JITTER_UM + tx + rng.uniform(-JITTER_UM, JITTER_UM);
        let y = cy - lo[1] + JITTER_UM + ty + rng.uniform(-JITTER_UM, JITTER_UM);
        let id = cell_id(i);
        let total: f32 = val.iter().sum();
        let area = 40.0 + 80.0 * rng.next_f32();
        writeln!(cells_csv, "{id},{x:.4},{y:.4},{total},{area:.2},{:.2}", area * 0.4).map_err(io)?;
        ids.push(id);
        if (i + 1) % step == 0 {
            eprintln!("  drew {} / {} cells ({:.1} s)", i + 1, a.cells, t.elapsed().as_secs_f64());
        }
    }
    cells_csv.finish().map_err(io)?.flush().map_err(io)?;

    let mut features: Vec<String> = crop.genes.clone();
    let mut types = vec!["Gene Expression".to_string(); n_genes];
    for (c, ty) in CONTROLS.iter().zip(CONTROL_TYPES) {
        features.push(c.to_string());
        types.push(ty.to_string());
    }
    eprintln!("  writing cell_feature_matrix.h5 ({} stored values) …", counts.nnz());
    write_10x_h5(&a.out.join("cell_feature_matrix.h5"), &ids, &features, &types, &counts).map_err(|e| e.to_string())?;
    std::fs::rename(&cells_tmp, a.out.join("cells.csv.gz")).map_err(|e| format!("{}: {e}", cells_tmp.display()))?;
    println!(
        "wrote {} ({} cells, {} genes + {} controls, {} stored values) in {:.1} s",
        a.out.display(),
        a.cells,
        n_genes,
        CONTROLS.len(),
        counts.nnz(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
