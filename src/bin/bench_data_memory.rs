//! Memory benchmark of the MEX reader on a synthetic 1M-cell Xenium matrix.
//!
//! ```text
//! bench_data_memory [--cells 1000000] [--dir DIR] [--no-peer] [--regenerate]
//! ```
//!
//! The synthetic matrix resamples real cells: each of the `--cells` barcodes copies the counts
//! of a cell of the BIDCell Xenium crop drawn with a seeded PRNG (313 genes, real sparsity),
//! plus a few negative-control probe features that the reader must drop. It is written once
//! as a gzipped MEX folder (`matrix.mtx.gz`, `features.tsv.gz`, `barcodes.tsv.gz`) under
//! `--dir` (default `$CARGO_TARGET_DIR/bench-data/mex-<cells>` or the system temp dir).
//!
//! Each reader runs in a fresh child process that reports its peak resident memory above its
//! own start-up baseline (`VmHWM − VmRSS` before reading, from `/proc/self/status`):
//! * ours: [`cellsymphony::data::read_mex_dir_csr`] (CSR, two passes over the gzip);
//! * ours, dense: [`cellsymphony::data::read_mex_dir`] (the `[cells, genes]` f32 matrix);
//! * the peer: `scipy.io.mmread` + `tocsr()` in python3 (what `scanpy.read_10x_mtx` does),
//!   baseline taken after `import scipy`.
//!
//! "Matrix" in the ratio column is the CSR size: `nnz × (4 + 4) + (cells + 1) × 8` bytes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cellsymphony::data::{
    read_mex_dir, read_mex_dir_csr, read_transcripts_csv, BidcellData, TranscriptOptions,
};
use cellsymphony::util::rng::SplitMix64;

struct Args {
    cells: usize,
    dir: Option<PathBuf>,
    peer: bool,
    dense: bool,
    regenerate: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        cells: 1_000_000,
        dir: None,
        peer: true,
        dense: true,
        regenerate: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--cells" => {
                let v = it.next().ok_or("--cells needs a value")?;
                a.cells = v.parse().map_err(|e| format!("--cells {v}: {e}"))?;
                if a.cells == 0 {
                    return Err("--cells must be at least 1".into());
                }
            }
            "--dir" => a.dir = Some(PathBuf::from(it.next().ok_or("--dir needs a value")?)),
            "--no-peer" => a.peer = false,
            "--no-dense" => a.dense = false,
            "--regenerate" => a.regenerate = true,
            "-h" | "--help" => {
                println!("bench_data_memory [--cells N] [--dir DIR] [--no-peer] [--no-dense] [--regenerate]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (see --help)")),
        }
    }
    Ok(a)
}

/// `VmRSS` and `VmHWM` of this process in bytes (0 where the system reports none).
fn rss_and_peak() -> (u64, u64) {
    cellsymphony::util::memory::rss_and_peak_bytes().unwrap_or((0, 0))
}

/// Child mode: read `dir` with one reader and print `secs peak_bytes matrix_bytes nnz cells genes`.
fn child(kind: &str, dir: &Path) -> Result<(), String> {
    let (base, _) = rss_and_peak();
    let t = Instant::now();
    let (matrix_bytes, nnz, cells, genes) = match kind {
        "csr" => {
            let m = read_mex_dir_csr(dir).map_err(|e| e.to_string())?;
            (
                m.counts.heap_bytes(),
                m.counts.nnz(),
                m.cell_ids.len(),
                m.genes.len(),
            )
        }
        "dense" => {
            let m = read_mex_dir(dir).map_err(|e| e.to_string())?;
            let nnz = m.counts.iter().filter(|&&v| v != 0.0).count();
            (m.counts.len() * 4, nnz, m.n_cells(), m.n_genes())
        }
        other => return Err(format!("unknown reader {other}")),
    };
    let secs = t.elapsed().as_secs_f64();
    let (_, peak) = rss_and_peak();
    println!(
        "{secs} {} {matrix_bytes} {nnz} {cells} {genes}",
        peak.saturating_sub(base)
    );
    Ok(())
}

const CONTROLS: [&str; 3] = [
    "NegControlProbe_00042",
    "NegControlCodeword_0500",
    "BLANK_0006",
];

fn generate(dir: &Path, cells: usize) -> Result<(), String> {
    let data = BidcellData::from_default_dir().map_err(|e| e.to_string())?;
    let crop = read_transcripts_csv(&data.transcripts, &TranscriptOptions::default())
        .map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = dir.join("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    let gz = |name: &str| -> Result<_, String> {
        let f = std::fs::File::create(tmp.join(name)).map_err(|e| e.to_string())?;
        Ok(flate2::write::GzEncoder::new(
            std::io::BufWriter::with_capacity(1 << 20, f),
            flate2::Compression::fast(),
        ))
    };
    let io = |e: std::io::Error| e.to_string();
    let mut f = gz("features.tsv.gz")?;
    for g in &crop.genes {
        writeln!(f, "{g}\t{g}\tGene Expression").map_err(io)?;
    }
    for c in CONTROLS {
        writeln!(f, "{c}\t{c}\tNegative Control Probe").map_err(io)?;
    }
    f.finish().map_err(io)?;
    // Xenium-style ids: 8 letters a–p then "-1", in index order.
    let mut b = gz("barcodes.tsv.gz")?;
    for i in 0..cells {
        let mut id = [b'a'; 8];
        let mut v = i;
        for k in (0..8).rev() {
            id[k] = b'a' + (v % 16) as u8;
            v /= 16;
        }
        b.write_all(&id).map_err(io)?;
        b.write_all(b"-1\n").map_err(io)?;
    }
    b.finish().map_err(io)?;
    // Rows are drawn first so that the entry count is known for the size line.
    let n_genes = crop.n_genes();
    let row_nnz: Vec<usize> = (0..crop.n_cells())
        .map(|i| crop.row(i).iter().filter(|&&v| v != 0.0).count())
        .collect();
    let mut rng = SplitMix64::new(20_261_121);
    let draws: Vec<u32> = (0..cells)
        .map(|_| (rng.next_u64() % crop.n_cells() as u64) as u32)
        .collect();
    let controls_every = 7usize;
    let nnz: usize =
        draws.iter().map(|&d| row_nnz[d as usize]).sum::<usize>() + cells.div_ceil(controls_every);
    let mut m = gz("matrix.mtx.gz")?;
    writeln!(m, "%%MatrixMarket matrix coordinate integer general").map_err(io)?;
    writeln!(
        m,
        "% synthetic: real BIDCell crop cells resampled by bench_data_memory"
    )
    .map_err(io)?;
    writeln!(m, "{} {cells} {nnz}", n_genes + CONTROLS.len()).map_err(io)?;
    let mut line = String::with_capacity(64);
    for (c, &d) in draws.iter().enumerate() {
        use std::fmt::Write as _;
        for (g, &v) in crop.row(d as usize).iter().enumerate() {
            if v != 0.0 {
                line.clear();
                let _ = writeln!(line, "{} {} {}", g + 1, c + 1, v as u32);
                m.write_all(line.as_bytes()).map_err(io)?;
            }
        }
        if c % controls_every == 0 {
            writeln!(m, "{} {} 1", n_genes + 1 + c % CONTROLS.len(), c + 1).map_err(io)?;
        }
    }
    m.finish().map_err(io)?;
    for name in ["features.tsv.gz", "barcodes.tsv.gz", "matrix.mtx.gz"] {
        std::fs::rename(tmp.join(name), dir.join(name)).map_err(io)?;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

struct Row {
    reader: &'static str,
    secs: f64,
    peak: u64,
    note: String,
}

fn run_child(kind: &str, dir: &Path) -> Result<(f64, u64, u64, u64, u64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args(["--child", kind])
        .arg(dir)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{kind} reader failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    if v.len() != 6 {
        return Err(format!("unexpected child output `{text}`"));
    }
    Ok((v[0], v[1] as u64, v[2] as u64, v[3] as u64, v[4] as u64))
}

const PEER: &str = r#"
import resource, sys, time, os
import scipy.io, scipy.sparse
def rss():
    with open('/proc/self/status') as f:
        for l in f:
            if l.startswith('VmRSS:'): return int(l.split()[1]) * 1024
base = rss()
t = time.perf_counter()
m = scipy.io.mmread(os.path.join(sys.argv[1], 'matrix.mtx.gz')).T.tocsr()
secs = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(secs, peak - base, m.nnz)
"#;

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--child") {
        if let Err(e) = argv
            .get(2)
            .zip(argv.get(3))
            .ok_or_else(|| "usage: --child KIND DIR".to_string())
            .and_then(|(k, d)| child(k, Path::new(d)))
        {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        return;
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(std::env::temp_dir, PathBuf::from)
            .join("bench-data")
            .join(format!("mex-{}", args.cells))
    });
    let ready = ["features.tsv.gz", "barcodes.tsv.gz", "matrix.mtx.gz"]
        .iter()
        .all(|f| dir.join(f).is_file());
    if args.regenerate || !ready {
        eprintln!(
            "generating a synthetic {}-cell MEX folder in {} (once; resampled real cells)…",
            args.cells,
            dir.display()
        );
        let t = Instant::now();
        if let Err(e) = generate(&dir, args.cells) {
            eprintln!("error: cannot generate the synthetic matrix: {e}");
            std::process::exit(1);
        }
        eprintln!("  generated in {:.1} s", t.elapsed().as_secs_f64());
    }
    let file_bytes = std::fs::metadata(dir.join("matrix.mtx.gz")).map_or(0, |m| m.len());

    let mut rows = Vec::new();
    let (secs, peak, matrix, nnz, cells) = match run_child("csr", &dir) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    rows.push(Row {
        reader: "cellsymphony read_mex_dir_csr",
        secs,
        peak,
        note: format!("{nnz} non-zeros"),
    });
    if args.dense {
        match run_child("dense", &dir) {
            Ok((s, p, dense_bytes, _, _)) => rows.push(Row {
                reader: "cellsymphony read_mex_dir (dense)",
                secs: s,
                peak: p,
                note: format!("dense [cells, genes] f32 = {}", gib(dense_bytes)),
            }),
            Err(e) => eprintln!("dense reader: {e}"),
        }
    }
    if args.peer {
        let out = Command::new("python3")
            .args(["-c", PEER])
            .arg(&dir)
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let t = String::from_utf8_lossy(&o.stdout);
                let v: Vec<f64> = t
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                if v.len() == 3 {
                    rows.push(Row {
                        reader: "peer: scipy.io.mmread + tocsr (python3)",
                        secs: v[0],
                        peak: v[1] as u64,
                        note: format!("{} stored values (controls kept)", v[2] as u64),
                    });
                }
            }
            Ok(o) => eprintln!(
                "peer skipped: python3/scipy failed: {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ),
            Err(e) => eprintln!("peer skipped: cannot run python3: {e}"),
        }
    }

    println!(
        "\nMEX read, {cells} cells, matrix.mtx.gz {:.0} MiB; matrix (CSR) = {}",
        file_bytes as f64 / (1u64 << 20) as f64,
        gib(matrix)
    );
    println!("| reader | time | peak RSS above baseline | peak / matrix | note |");
    println!("|---|---:|---:|---:|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} s | {} | {:.2}× | {} |",
            r.reader,
            r.secs,
            gib(r.peak),
            r.peak as f64 / matrix.max(1) as f64,
            r.note
        );
    }
    let ratio = rows[0].peak as f64 / matrix.max(1) as f64;
    println!(
        "\ntarget: our CSR reader holds at most ~2× the matrix: {} ({ratio:.2}×)",
        if ratio <= 2.0 { "met" } else { "NOT met" }
    );
}
