//! `ot::sinkhorn` (CPU reference engine) against POT 0.9.7 (`ot.bregman.sinkhorn_log`, and
//! `ot.bregman.sinkhorn_knopp` where it converges) on the same inputs, through python3.
//!
//! POT runs in f64 on `M = dist(X, Y) [/ M.max()]` built from the same f32 inputs, to
//! `stopThr = 1e-10`; ours runs in f32 to its tolerance (1e-6 L1 here, or the default 1e-5).
//! POT 0.9.7.post1 (`pip install pot==0.9.7.post1`).
//!
//! Tolerances (plans have total mass 1; measured errors are ~1e-6, see the test output):
//! - plan: max |P − P_pot| ≤ 1e-4 · max P_pot, and Σ |P − P_pot| ≤ 1e-4;
//! - potentials, after removing the gauge (f + c, g − c): max abs ≤ 1e-5 · (1 + max|f|);
//! - marginals: rows within 1e-5 (L1; exact after the f update up to f32 rounding), columns
//!   within 1.5 × the solver tolerance + 2e-6;
//! - ε-scaling vs plain: Σ |P_scaled − P_plain| ≤ 1e-4.

#![cfg(all(feature = "native-io", not(target_arch = "wasm32")))]

mod common;

use cellsymphony::util::rng::SplitMix64;
use cellsymphony::ot::{
    dense_plan, pca, sinkhorn_log_domain_reference, CostScale, EpsilonScaling, ErrorNorm,
    GroundCost, OtError, PcaOptions, SinkhornOptions, SinkhornProblem, SinkhornResult,
    SpatialPenalty,
};
use common::ot::{pot_available, run_reference};
use common::Scratch;

struct Pot {
    plan: Vec<f64>,
    f: Vec<f64>,
    g: Vec<f64>,
    niter: u64,
    cost_scale: f64,
}

fn run_pot(test: &str, p: &SinkhornProblem<'_>, o: &SinkhornOptions, method: &str) -> Pot {
    let dir = Scratch::new(test);
    dir.write_f32("x.f32", p.x);
    dir.write_f32("y.f32", p.y);
    if let (Some(a), Some(b)) = (p.a, p.b) {
        dir.write_f32("a.f32", a);
        dir.write_f32("b.f32", b);
    }
    if let Some(s) = p.spatial {
        dir.write_f32("xs.f32", s.x_um.as_flattened());
        dir.write_f32("ys.f32", s.y_um.as_flattened());
    }
    dir.write_json(
        "meta.json",
        &serde_json::json!({
            "n": p.n, "m": p.m, "d": p.dim, "eps": o.epsilon,
            "cost": match o.cost { GroundCost::Euclidean => "euclidean", GroundCost::SquaredEuclidean => "sqeuclidean" },
            "scale": match o.scale { CostScale::MaxCost => "max", CostScale::None => "none" },
            "stop_thr": 1e-10, "max_iter": 20000, "method": method,
            "weights": p.a.is_some(),
            "spatial_lambda": p.spatial.map(|s| s.lambda),
            "write_plan": true,
        }),
    );
    run_reference("pot_sinkhorn.py", dir.path());
    let r = dir.read_json("result.json");
    assert_eq!(
        r["finite"], true,
        "{test}: POT produced non-finite potentials"
    );
    Pot {
        plan: dir.read_f64("plan.f64"),
        f: dir.read_f64("f.f64"),
        g: dir.read_f64("g.f64"),
        niter: r["niter"].as_u64().unwrap(),
        cost_scale: r["cost_scale"].as_f64().unwrap(),
    }
}

/// Compares our solution with POT's; returns (plan max rel, plan L1, potential err).
fn compare(
    test: &str,
    p: &SinkhornProblem<'_>,
    o: &SinkhornOptions,
    ours: &SinkhornResult,
    pot: &Pot,
) -> (f64, f64, f64) {
    assert!(ours.converged, "{test}: ours did not converge ({ours:?})");
    let plan = dense_plan(p, o, ours).unwrap();
    let max_pot = pot.plan.iter().fold(0f64, |m, &v| m.max(v));
    let (mut max_diff, mut l1) = (0f64, 0f64);
    for (a, b) in plan.iter().zip(&pot.plan) {
        max_diff = max_diff.max((a - b).abs());
        l1 += (a - b).abs();
    }
    let c: f64 = pot
        .f
        .iter()
        .zip(&ours.f)
        .map(|(&t, &s)| t - s as f64)
        .sum::<f64>()
        / p.n as f64;
    let mut pot_err = 0f64;
    for (&s, &t) in ours.f.iter().zip(&pot.f) {
        pot_err = pot_err.max((s as f64 + c - t).abs());
    }
    for (&s, &t) in ours.g.iter().zip(&pot.g) {
        pot_err = pot_err.max((s as f64 - c - t).abs());
    }
    let scale_err = (ours.cost_scale as f64 - pot.cost_scale).abs() / pot.cost_scale;
    eprintln!(
        "{test}: ours {} it (err {:.2e}), POT {} it; plan max|ΔP|/max P = {:.2e}, Σ|ΔP| = {:.2e}, \
         potentials {:.2e}, cost scale rel {:.1e}",
        ours.iterations,
        ours.error,
        pot.niter,
        max_diff / max_pot,
        l1,
        pot_err,
        scale_err
    );
    assert!(
        scale_err < 1e-5,
        "{test}: cost scale {} vs {}",
        ours.cost_scale,
        pot.cost_scale
    );
    (max_diff / max_pot, l1, pot_err)
}

fn assert_matches(
    test: &str,
    p: &SinkhornProblem<'_>,
    o: &SinkhornOptions,
    method: &str,
) -> SinkhornResult {
    let ours = sinkhorn_log_domain_reference(p, o, |_, _| {}).unwrap();
    if !pot_available(test) {
        return ours;
    }
    let pot = run_pot(test, p, o, method);
    let (rel, l1, pot_err) = compare(test, p, o, &ours, &pot);
    assert!(rel <= 1e-4, "{test}: plan max rel error {rel:e}");
    assert!(l1 <= 1e-4, "{test}: plan L1 error {l1:e}");
    let max_f = ours.f.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    assert!(
        pot_err <= 1e-5 * (1.0 + max_f),
        "{test}: potential error {pot_err:e}"
    );
    check_marginals(test, p, o, &ours);
    ours
}

/// Rows of the plan sum to a (exactly, up to f32), columns to b within the tolerance.
fn check_marginals(test: &str, p: &SinkhornProblem<'_>, o: &SinkhornOptions, r: &SinkhornResult) {
    let plan = dense_plan(p, o, r).unwrap();
    let a = p.a.map_or(vec![1.0 / p.n as f64; p.n], |w| {
        let s: f64 = w.iter().map(|&v| v as f64).sum();
        w.iter().map(|&v| v as f64 / s).collect()
    });
    let b = p.b.map_or(vec![1.0 / p.m as f64; p.m], |w| {
        let s: f64 = w.iter().map(|&v| v as f64).sum();
        w.iter().map(|&v| v as f64 / s).collect()
    });
    let rows: f64 = (0..p.n)
        .map(|i| (plan[i * p.m..(i + 1) * p.m].iter().sum::<f64>() - a[i]).abs())
        .sum();
    let cols: f64 = (0..p.m)
        .map(|j| ((0..p.n).map(|i| plan[i * p.m + j]).sum::<f64>() - b[j]).abs())
        .sum();
    eprintln!("{test}: marginal L1 errors: rows {rows:.2e}, columns {cols:.2e}");
    assert!(rows <= 1e-5, "{test}: row marginal error {rows:e}");
    assert!(
        cols <= 1.5 * o.tolerance as f64 + 2e-6,
        "{test}: column marginal error {cols:e}"
    );
}

fn clouds(seed: u64, n: usize, m: usize, d: usize, spread: f32) -> (Vec<f32>, Vec<f32>) {
    let mut rng = SplitMix64::new(seed);
    let c = common::ot::centres(&mut rng, 8, d, spread);
    let x = common::ot::clustered(&mut rng, &c, 8, n, d, 0.0);
    let y = common::ot::clustered(&mut rng, &c, 8, m, d, 0.3);
    (x, y)
}

fn tight() -> SinkhornOptions {
    SinkhornOptions {
        tolerance: 1e-6,
        max_iterations: 5000,
        ..SinkhornOptions::default()
    }
}

#[test]
fn matches_pot_sinkhorn_log_euclidean_max_scaled() {
    let (n, m, d) = (400, 333, 50);
    let (x, y) = clouds(1, n, m, d, 1.5);
    let p = SinkhornProblem::new(&x, n, &y, m, d);
    assert_matches("pot_log_euclidean_max", &p, &tight(), "sinkhorn_log");
}

#[test]
fn matches_pot_sinkhorn_log_default_options() {
    let (n, m, d) = (300, 310, 50);
    let (x, y) = clouds(2, n, m, d, 1.0);
    let p = SinkhornProblem::new(&x, n, &y, m, d);
    assert_matches(
        "pot_log_default",
        &p,
        &SinkhornOptions::default(),
        "sinkhorn_log",
    );
}

#[test]
fn matches_pot_sinkhorn_knopp_where_it_converges() {
    // Larger ε so the plain (non-log) Sinkhorn does not underflow.
    let (n, m, d) = (250, 200, 20);
    let (x, y) = clouds(3, n, m, d, 1.0);
    let p = SinkhornProblem::new(&x, n, &y, m, d);
    let o = SinkhornOptions {
        epsilon: 0.1,
        ..tight()
    };
    assert_matches("pot_knopp", &p, &o, "sinkhorn");
}

#[test]
fn matches_pot_squared_euclidean_raw_cost_and_weights() {
    let (n, m, d) = (200, 150, 10);
    let (mut x, mut y) = clouds(4, n, m, d, 1.0);
    // Raw squared distances of order 1–10 with ε = 0.5.
    for v in x.iter_mut().chain(y.iter_mut()) {
        *v *= 0.3;
    }
    let mut rng = SplitMix64::new(40);
    let a = rng.uniform_vec(n, 0.5, 2.0);
    let b = rng.uniform_vec(m, 0.5, 2.0);
    let p = SinkhornProblem {
        a: Some(&a),
        b: Some(&b),
        ..SinkhornProblem::new(&x, n, &y, m, d)
    };
    let o = SinkhornOptions {
        epsilon: 0.5,
        cost: GroundCost::SquaredEuclidean,
        scale: CostScale::None,
        ..tight()
    };
    assert_matches("pot_sq_raw_weights", &p, &o, "sinkhorn_log");
}

#[test]
fn matches_pot_with_spatial_penalty() {
    let (n, m, d) = (220, 180, 30);
    let (x, y) = clouds(5, n, m, d, 1.0);
    let mut rng = SplitMix64::new(50);
    let xs: Vec<[f32; 2]> = (0..n)
        .map(|_| [rng.uniform(0.0, 500.0), rng.uniform(0.0, 500.0)])
        .collect();
    let ys: Vec<[f32; 2]> = (0..m)
        .map(|_| [rng.uniform(0.0, 500.0), rng.uniform(0.0, 500.0)])
        .collect();
    let p = SinkhornProblem {
        spatial: Some(SpatialPenalty {
            x_um: &xs,
            y_um: &ys,
            lambda: 0.02,
        }),
        ..SinkhornProblem::new(&x, n, &y, m, d)
    };
    assert_matches("pot_spatial", &p, &tight(), "sinkhorn_log");
}

#[test]
fn matches_pot_on_xenium_crop_pca() {
    let crop = common::ot::xenium_crop();
    let genes = crop.genes.len();
    let (_, coords) = pca(&crop.expr, crop.cells, genes, &PcaOptions::default()).unwrap();
    let (ia, ib) = common::ot::random_halves(crop.cells, 11);
    let x = common::ot::take_rows(&coords, 50, &ia);
    let y = common::ot::take_rows(&coords, 50, &ib);
    let p = SinkhornProblem::new(&x, ia.len(), &y, ib.len(), 50);
    let r = assert_matches("pot_xenium", &p, &tight(), "sinkhorn_log");
    eprintln!(
        "pot_xenium: {} × {} cells, cost scale {}",
        ia.len(),
        ib.len(),
        r.cost_scale
    );
}

#[test]
fn epsilon_scaling_gives_the_same_plan() {
    let (n, m, d) = (300, 280, 50);
    let (x, y) = clouds(6, n, m, d, 2.0);
    let p = SinkhornProblem::new(&x, n, &y, m, d);
    let plain = sinkhorn_log_domain_reference(&p, &tight(), |_, _| {}).unwrap();
    let o = SinkhornOptions {
        epsilon_scaling: Some(EpsilonScaling::default()),
        ..tight()
    };
    let mut calls = Vec::new();
    let scaled = sinkhorn_log_domain_reference(&p, &o, |it, err| calls.push((it, err))).unwrap();
    assert!(plain.converged && scaled.converged);
    let (pa, pb) = (
        dense_plan(&p, &tight(), &plain).unwrap(),
        dense_plan(&p, &o, &scaled).unwrap(),
    );
    let l1: f64 = pa.iter().zip(&pb).map(|(a, b)| (a - b).abs()).sum();
    eprintln!(
        "epsilon_scaling: plain {} it, scaled {} it ({} checks), Σ|ΔP| = {l1:.2e}",
        plain.iterations,
        scaled.iterations,
        calls.len()
    );
    assert!(l1 <= 1e-4, "Σ|ΔP| = {l1:e}");
    assert!(
        calls.windows(2).all(|w| w[0].0 < w[1].0),
        "progress iterations increase"
    );
    check_marginals("epsilon_scaling", &p, &o, &scaled);
}

#[test]
fn error_norms_and_iteration_cap() {
    let (n, m, d) = (120, 100, 8);
    let (x, y) = clouds(7, n, m, d, 2.0);
    let p = SinkhornProblem::new(&x, n, &y, m, d);
    for norm in [ErrorNorm::L1, ErrorNorm::L2, ErrorNorm::LInf] {
        let o = SinkhornOptions {
            error_norm: norm,
            ..tight()
        };
        let r = sinkhorn_log_domain_reference(&p, &o, |_, _| {}).unwrap();
        assert!(r.converged && r.error <= 1e-6, "{norm:?}: {r:?}");
    }
    let o = SinkhornOptions {
        max_iterations: 7,
        check_every: 5,
        ..tight()
    };
    let mut seen = Vec::new();
    let r = sinkhorn_log_domain_reference(&p, &o, |it, _| seen.push(it)).unwrap();
    assert_eq!(r.iterations, 7);
    assert_eq!(seen, vec![5, 7]);
    assert!(!r.converged);
}

#[test]
fn rejects_bad_input_with_typed_errors() {
    let x = vec![0.5f32; 12];
    let y = vec![1.5f32; 9];
    let o = SinkhornOptions::default();
    let run = |p: &SinkhornProblem<'_>, o: &SinkhornOptions| {
        sinkhorn_log_domain_reference(p, o, |_, _| {})
    };
    assert!(matches!(
        run(&SinkhornProblem::new(&x, 4, &y, 4, 3), &o),
        Err(OtError::Shape { .. })
    ));
    assert!(matches!(
        run(&SinkhornProblem::new(&x, 0, &y, 3, 3), &o),
        Err(OtError::Empty { .. })
    ));
    let mut nan = x.clone();
    nan[5] = f32::NAN;
    assert!(matches!(
        run(&SinkhornProblem::new(&nan, 4, &y, 3, 3), &o),
        Err(OtError::NonFinite { index: 5, .. })
    ));
    let zero_w = [1.0, 0.0, 1.0, 1.0];
    let p = SinkhornProblem {
        a: Some(&zero_w),
        ..SinkhornProblem::new(&x, 4, &y, 3, 3)
    };
    assert!(matches!(
        run(&p, &o),
        Err(OtError::Marginal { what: "a", .. })
    ));
    for bad in [
        SinkhornOptions {
            epsilon: 0.0,
            ..o.clone()
        },
        SinkhornOptions {
            epsilon: f32::NAN,
            ..o.clone()
        },
        SinkhornOptions {
            tolerance: -1.0,
            ..o.clone()
        },
        SinkhornOptions {
            max_iterations: 0,
            ..o.clone()
        },
        SinkhornOptions {
            check_every: 0,
            ..o.clone()
        },
        SinkhornOptions {
            epsilon_scaling: Some(EpsilonScaling {
                factor: 1.5,
                ..EpsilonScaling::default()
            }),
            ..o.clone()
        },
    ] {
        assert!(matches!(
            run(&SinkhornProblem::new(&x, 4, &y, 3, 3), &bad),
            Err(OtError::InvalidOption { .. })
        ));
    }
    // All points identical: the max cost is zero.
    let same = vec![1.0f32; 9];
    let err = run(&SinkhornProblem::new(&same, 3, &same, 3, 3), &o).unwrap_err();
    assert!(matches!(err, OtError::DegenerateCost), "{err}");
    // ... but fine without scaling: the uniform plan.
    let o_raw = SinkhornOptions {
        scale: CostScale::None,
        ..o
    };
    let r = run(&SinkhornProblem::new(&same, 3, &same, 3, 3), &o_raw).unwrap();
    let plan = dense_plan(&SinkhornProblem::new(&same, 3, &same, 3, 3), &o_raw, &r).unwrap();
    assert!(
        plan.iter().all(|&v| (v - 1.0 / 9.0).abs() < 1e-6),
        "{plan:?}"
    );
}

#[test]
fn cached_and_streamed_costs_agree() {
    // The CPU engine's three paths: C and Cᵀ cached, C only (column-blocked g half-step), and
    // costs recomputed in tiles; single- and multi-threaded.
    let (n, m, d) = (500, 450, 50);
    let (x, y) = clouds(8, n, m, d, 1.5);
    let p = SinkhornProblem::new(&x, n, &y, m, d);
    let both = sinkhorn_log_domain_reference(&p, &tight(), |_, _| {}).unwrap();
    for (budget, threads) in [
        (4 * (n * m) as u64, 0),
        (4 * (n * m) as u64, 1),
        (0, 1),
        (0, 3),
    ] {
        let o = SinkhornOptions {
            cpu_cost_cache_bytes: budget,
            threads,
            ..tight()
        };
        let r = sinkhorn_log_domain_reference(&p, &o, |_, _| {}).unwrap();
        assert_eq!(
            both.iterations, r.iterations,
            "budget {budget}, threads {threads}"
        );
        let df = both
            .f
            .iter()
            .zip(&r.f)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let dg = both
            .g
            .iter()
            .zip(&r.g)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!("budget {budget}, threads {threads}: max|Δf| {df:.1e}, max|Δg| {dg:.1e}");
        assert!(
            df < 1e-6 && dg < 1e-6,
            "budget {budget}, threads {threads}: {df} {dg}"
        );
    }
}
