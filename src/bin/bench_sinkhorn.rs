//! Sinkhorn benchmark: POT `ot.bregman.sinkhorn_log` (NumPy, via python3) vs our CPU
//! reference engine vs our WGSL kernels (native wgpu; lavapipe on a machine without a GPU).
//!
//! ```text
//! bench_sinkhorn [--sizes 500,5000,20000] [--dim 50] [--eps 0.05] [--tol 1e-6]
//!                [--pot-max-n 5000] [--gpu-full-max-n 1000] [--gpu-sample-iters 10]
//!                [--no-pot] [--no-gpu] [--threads 0]
//! ```
//!
//! Inputs: n = m seeded points in `dim` dimensions around 10 shared cluster centres (a stand-in
//! for cell states in PCA space), Euclidean cost divided by its maximum, uniform weights.
//! Every engine uses POT's stopping rule: L2 norm of the column-marginal error ≤ `tol`,
//! checked every 10 iterations, at most 1000 iterations.
//!
//! Timing: POT is timed around `sinkhorn_log` only (the cost matrix is given); ours include
//! the max-cost pass, the cost cache (CPU) and uploads/readbacks (GPU). Memory: POT's peak RSS
//! of the python process (and the cost matrix size); ours, the engine's working buffers.
//! POT above `--pot-max-n` and full GPU solves above `--gpu-full-max-n` are skipped (with the
//! reason); for the latter, `--gpu-sample-iters` iterations (fewer for large n, at least 2)
//! are timed, including setup, and the total is extrapolated to the reference's iteration
//! count (marked `~`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cellsymphony::util::rng::SplitMix64;
use cellsymphony::gpu::GpuContext;
use cellsymphony::ot::{sinkhorn, ErrorNorm, SinkhornEngine, SinkhornOptions, SinkhornProblem};

struct Args {
    sizes: Vec<usize>,
    dim: usize,
    eps: f32,
    tol: f32,
    pot_max_n: usize,
    gpu_full_max_n: usize,
    gpu_sample_iters: usize,
    pot: bool,
    gpu: bool,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        sizes: vec![500, 5000, 20000],
        dim: 50,
        eps: 0.05,
        tol: 1e-6,
        pot_max_n: 5000,
        gpu_full_max_n: 1000,
        gpu_sample_iters: 10,
        pot: true,
        gpu: true,
        threads: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |s: String| s.parse::<f64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--sizes" => {
                a.sizes = value()?
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|e| format!("--sizes: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--dim" => a.dim = num(value()?)? as usize,
            "--eps" => a.eps = num(value()?)? as f32,
            "--tol" => a.tol = num(value()?)? as f32,
            "--pot-max-n" => a.pot_max_n = num(value()?)? as usize,
            "--gpu-full-max-n" => a.gpu_full_max_n = num(value()?)? as usize,
            "--gpu-sample-iters" => a.gpu_sample_iters = num(value()?)?.max(1.0) as usize,
            "--threads" => a.threads = num(value()?)? as usize,
            "--no-pot" => a.pot = false,
            "--no-gpu" => a.gpu = false,
            "-h" | "--help" => {
                println!(
                    "{}",
                    include_str!("bench_sinkhorn.rs")
                        .lines()
                        .take(9)
                        .skip(4)
                        .map(|l| l.trim_start_matches("//! "))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    Ok(a)
}

struct Row {
    n: usize,
    engine: &'static str,
    seconds: Option<f64>,
    extrapolated: bool,
    iterations: String,
    error: String,
    memory: String,
    dispatches: String,
    note: String,
}

fn points(seed: u64, n: usize, d: usize, centres: &[f32], shift: f32) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(n * d);
    for _ in 0..n {
        let c = rng.below(10) as usize;
        for j in 0..d {
            out.push(centres[c * d + j] + rng.normal() + shift);
        }
    }
    out
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

fn run_pot(
    dir: &Path,
    x: &[f32],
    y: &[f32],
    n: usize,
    d: usize,
    a: &Args,
) -> Result<serde_json::Value, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let write = |name: &str, v: &[f32]| {
        let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
        std::fs::write(dir.join(name), bytes).map_err(|e| e.to_string())
    };
    write("x.f32", x)?;
    write("y.f32", y)?;
    let meta = serde_json::json!({
        "n": n, "m": n, "d": d, "eps": a.eps, "cost": "euclidean", "scale": "max",
        "stop_thr": a.tol, "max_iter": 1000, "method": "sinkhorn_log", "write_plan": false,
    });
    std::fs::write(dir.join("meta.json"), meta.to_string()).map_err(|e| e.to_string())?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/pot_sinkhorn.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(dir)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("")
            .to_string());
    }
    let text = std::fs::read_to_string(dir.join("result.json")).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("bench_sinkhorn: {e}");
        std::process::exit(2)
    });
    let d = args.dim;
    let opts = SinkhornOptions {
        epsilon: args.eps,
        tolerance: args.tol,
        error_norm: ErrorNorm::L2,
        check_every: 10,
        max_iterations: 1000,
        threads: args.threads,
        ..SinkhornOptions::default()
    };
    let ctx = if args.gpu {
        match pollster::block_on(GpuContext::new()) {
            Ok(c) => {
                eprintln!("GPU: {}", c.adapter_summary());
                Some(c)
            }
            Err(e) => {
                eprintln!("GPU unavailable, skipping the WGSL engine: {e}");
                None
            }
        }
    } else {
        None
    };
    let scratch: PathBuf =
        std::env::temp_dir().join(format!("bench_sinkhorn-{}", std::process::id()));
    let mut rows = Vec::new();
    // (n, seconds per iteration, peak RSS / cost-matrix bytes) of the largest POT run.
    let mut pot_measured: Option<(usize, f64, f64)> = None;
    let mut centres_rng = SplitMix64::new(99);
    let centres: Vec<f32> = (0..10 * d).map(|_| 1.5 * centres_rng.normal()).collect();
    for &n in &args.sizes {
        let x = points(1 + n as u64, n, d, &centres, 0.0);
        let y = points(2 + n as u64, n, d, &centres, 0.3);
        let problem = SinkhornProblem::new(&x, n, &y, n, d);

        // POT.
        let mut pot_seconds = None;
        if !args.pot {
            rows.push(skip(n, "POT sinkhorn_log", "--no-pot"));
        } else if n > args.pot_max_n {
            let m_gib = 8.0 * (n * n) as f64 / (1u64 << 30) as f64;
            let why = match pot_measured {
                Some((n0, per_iter, rss_over_m)) => {
                    let f = (n as f64 / n0 as f64).powi(2);
                    format!(
                        "skipped (n > --pot-max-n): M alone is {m_gib:.1} GiB f64; scaling the n = {n0} \
                         run gives a peak RSS ≈ {:.0} GiB and ≈ {:.0} s/iteration",
                        rss_over_m * m_gib,
                        per_iter * f
                    )
                }
                None => format!("skipped (n > --pot-max-n): M alone is {m_gib:.1} GiB f64"),
            };
            rows.push(skip(n, "POT sinkhorn_log", &why));
        } else {
            eprintln!("n = {n}: POT ...");
            match run_pot(&scratch.join(format!("pot{n}")), &x, &y, n, d, &args) {
                Ok(r) => {
                    let s = r["seconds"].as_f64().unwrap_or(f64::NAN);
                    pot_seconds = Some(s);
                    let iters = r["niter"].as_f64().unwrap_or(1.0).max(1.0);
                    let rss = r["peak_rss_bytes"].as_f64().unwrap_or(0.0);
                    let m_bytes = r["matrix_bytes"].as_f64().unwrap_or(1.0).max(1.0);
                    pot_measured = Some((n, s / iters, rss / m_bytes));
                    rows.push(Row {
                        n,
                        engine: "POT sinkhorn_log",
                        seconds: Some(s),
                        extrapolated: false,
                        iterations: r["niter"].to_string(),
                        error: format!("{:.1e}", r["err"].as_f64().unwrap_or(f64::NAN)),
                        memory: format!(
                            "{} RSS (M: {})",
                            mib(r["peak_rss_bytes"].as_f64().unwrap_or(0.0)),
                            mib(r["matrix_bytes"].as_f64().unwrap_or(0.0))
                        ),
                        dispatches: "-".into(),
                        note: String::new(),
                    });
                }
                Err(e) => rows.push(skip(n, "POT sinkhorn_log", &format!("failed: {e}"))),
            }
        }

        // Reference.
        eprintln!("n = {n}: reference ...");
        let t = Instant::now();
        let r = pollster::block_on(sinkhorn(
            &problem,
            &opts,
            SinkhornEngine::Reference,
            |_, _| {},
        ));
        let ref_secs = t.elapsed().as_secs_f64();
        let ref_iters = r.as_ref().map(|r| r.iterations).unwrap_or(0);
        rows.push(match r {
            Ok(r) => Row {
                n,
                engine: "ours: CPU reference",
                seconds: Some(ref_secs),
                extrapolated: false,
                iterations: r.iterations.to_string(),
                error: format!("{:.1e}", r.error),
                memory: mib(r.working_bytes as f64),
                dispatches: "-".into(),
                note: speedup(pot_seconds, ref_secs),
            },
            Err(e) => skip(n, "ours: CPU reference", &format!("failed: {e}")),
        });

        // GPU.
        let Some(ctx) = ctx.as_ref() else {
            rows.push(skip(n, "ours: WGSL", "no GPU adapter / --no-gpu"));
            continue;
        };
        eprintln!("n = {n}: WGSL ...");
        let full = n <= args.gpu_full_max_n;
        // Sampled runs: at most --gpu-sample-iters, fewer for large n (≈ 2.5e8 pairs per
        // half-step budget, at least 2 iterations).
        let sample = args
            .gpu_sample_iters
            .min((2.5e8 / (n as f64 * n as f64)) as usize)
            .max(2);
        let gpu_opts = if full {
            opts.clone()
        } else {
            SinkhornOptions {
                max_iterations: sample,
                check_every: sample,
                ..opts.clone()
            }
        };
        let t = Instant::now();
        let r = pollster::block_on(sinkhorn(
            &problem,
            &gpu_opts,
            SinkhornEngine::Gpu(ctx),
            |_, _| {},
        ));
        let secs = t.elapsed().as_secs_f64();
        rows.push(match r {
            Ok(r) => {
                let total = if full {
                    secs
                } else {
                    secs / r.iterations as f64 * ref_iters.max(1) as f64
                };
                Row {
                    n,
                    engine: "ours: WGSL (native wgpu)",
                    seconds: Some(total),
                    extrapolated: !full,
                    iterations: if full {
                        r.iterations.to_string()
                    } else {
                        format!("{} timed", r.iterations)
                    },
                    error: if full {
                        format!("{:.1e}", r.error)
                    } else {
                        "-".into()
                    },
                    memory: mib(r.working_bytes as f64),
                    // Excluding the two one-off launches (max-cost pass, first g half-step).
                    // Excluding the two one-off launches (max-cost pass, first g half-step).
                    dispatches: format!("{:.2}", (r.dispatches as f64 - 2.0) / r.iterations as f64),
                    note: speedup(pot_seconds, total),
                }
            }
            Err(e) => skip(n, "ours: WGSL (native wgpu)", &format!("failed: {e}")),
        });
    }
    let _ = std::fs::remove_dir_all(&scratch);

    println!(
        "\nSinkhorn, n = m, d = {d}, ε = {} (cost / max cost), stop: L2 column-marginal error ≤ {:e} (checked every 10 it)",
        args.eps, args.tol
    );
    if let Some(c) = ctx.as_ref() {
        println!("GPU adapter: {}", c.adapter_summary());
    }
    println!(
        "CPU threads: {}\n",
        cellsymphony::util::parallel::worker_count()
    );
    println!(
        "| n = m | engine | time (s) | iterations | final err | memory | dispatches/it (steady) | note |"
    );
    println!("|---:|---|---:|---:|---:|---|---:|---|");
    for r in rows {
        let time = match r.seconds {
            Some(s) if r.extrapolated => format!("~{s:.2}"),
            Some(s) => format!("{s:.3}"),
            None => "-".into(),
        };
        println!(
            "| {} | {} | {time} | {} | {} | {} | {} | {} |",
            r.n, r.engine, r.iterations, r.error, r.memory, r.dispatches, r.note
        );
    }
}

fn speedup(pot: Option<f64>, ours: f64) -> String {
    pot.map_or(String::new(), |p| format!("{:.1}× POT", p / ours))
}

fn skip(n: usize, engine: &'static str, why: &str) -> Row {
    Row {
        n,
        engine,
        seconds: None,
        extrapolated: false,
        iterations: "-".into(),
        error: "-".into(),
        memory: "-".into(),
        dispatches: "-".into(),
        note: why.to_string(),
    }
}
