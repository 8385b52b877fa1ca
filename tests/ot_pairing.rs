//! `ot::pairing` (QC, records, CSV) and `ot::signature`, on seeded data and on the Xenium
//! crop (two random halves of the cells in a shared 50-d PCA).
//!
//! Tolerances: GPU and CPU engines must give the same matched target for ≥ 99 % of control
//! cells (the rest are near-ties of the plan row), and match scores within 1e-3;
//! signature values within 1e-6 of a direct f64 computation.

#![cfg(all(feature = "native-io", not(target_arch = "wasm32")))]

mod common;

use cellsymphony::util::rng::SplitMix64;
use cellsymphony::ot::{
    pair_states, pairs_csv, pca, signature, OtError, PairingOptions, PcaOptions, SinkhornEngine,
    StateCells,
};
use pollster::block_on;

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn qc_rejects_small_states_and_mixed_lineages() {
    let d = 4;
    let mut rng = SplitMix64::new(1);
    let (a_ids, b_ids) = (ids("a", 60), ids("b", 49));
    let a = rng.uniform_vec(60 * d, 0.0, 1.0);
    let b = rng.uniform_vec(49 * d, 0.0, 1.0);
    let ctrl = StateCells {
        state: "normal",
        lineage: "Epithelial",
        ids: &a_ids,
        coords: &a,
        positions_um: None,
    };
    let tgt = StateCells {
        state: "tumour",
        lineage: "Epithelial",
        ids: &b_ids,
        coords: &b,
        positions_um: None,
    };
    let opts = PairingOptions::default();
    let err = block_on(pair_states(
        &ctrl,
        &tgt,
        d,
        &opts,
        SinkhornEngine::Reference,
        |_, _| {},
    ))
    .unwrap_err();
    assert!(
        matches!(
            err,
            OtError::TooFewCells {
                found: 49,
                min: 50,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("tumour"));

    let other = StateCells {
        lineage: "Immune",
        ..ctrl
    };
    let err = block_on(pair_states(
        &ctrl,
        &other,
        d,
        &opts,
        SinkhornEngine::Reference,
        |_, _| {},
    ))
    .unwrap_err();
    assert!(matches!(err, OtError::LineageMismatch { .. }), "{err}");

    let relaxed = PairingOptions {
        min_cells_per_state: 10,
        spatial_lambda: Some(0.1),
        ..opts
    };
    let err = block_on(pair_states(
        &ctrl,
        &tgt,
        d,
        &relaxed,
        SinkhornEngine::Reference,
        |_, _| {},
    ))
    .unwrap_err();
    assert!(
        matches!(
            err,
            OtError::InvalidOption {
                name: "spatial_lambda",
                ..
            }
        ),
        "{err}"
    );

    let bad = StateCells {
        coords: &a[..10],
        ..ctrl
    };
    let err = block_on(pair_states(
        &bad,
        &tgt,
        d,
        &relaxed,
        SinkhornEngine::Reference,
        |_, _| {},
    ))
    .unwrap_err();
    assert!(matches!(err, OtError::Shape { .. }), "{err}");
}

#[test]
fn pairs_xenium_halves_on_cpu_and_gpu() {
    let crop = common::ot::xenium_crop();
    let genes = crop.genes.len();
    let (_, coords) = pca(&crop.expr, crop.cells, genes, &PcaOptions::default()).unwrap();
    let (ia, ib) = common::ot::random_halves(crop.cells, 5);
    let (xa, xb) = (
        common::ot::take_rows(&coords, 50, &ia),
        common::ot::take_rows(&coords, 50, &ib),
    );
    let (ida, idb) = (
        common::ot::take_rows(&crop.ids, 1, &ia),
        common::ot::take_rows(&crop.ids, 1, &ib),
    );
    let (pa, pb) = (
        common::ot::take_rows(&crop.centroids, 1, &ia),
        common::ot::take_rows(&crop.centroids, 1, &ib),
    );
    let ctrl = StateCells {
        state: "half_a",
        lineage: "all",
        ids: &ida,
        coords: &xa,
        positions_um: Some(&pa),
    };
    let tgt = StateCells {
        state: "half_b",
        lineage: "all",
        ids: &idb,
        coords: &xb,
        positions_um: Some(&pb),
    };
    let opts = PairingOptions {
        spatial_lambda: Some(0.01),
        ..PairingOptions::default()
    };
    let mut checks = 0;
    let cpu = block_on(pair_states(
        &ctrl,
        &tgt,
        50,
        &opts,
        SinkhornEngine::Reference,
        |_, _| checks += 1,
    ))
    .unwrap();
    assert!(cpu.sinkhorn.converged && checks > 0);
    assert_eq!(cpu.records.len(), ia.len());
    for (r, &(i, j)) in cpu.records.iter().zip(&cpu.pairs) {
        assert_eq!(r.ctrl_id, ida[i as usize]);
        assert_eq!(r.tgt_id, idb[j as usize]);
        assert!(r.match_score > 0.0 && r.match_score <= 1.0 + 1e-6, "{r:?}");
        let dist = r.spatial_distance_um.unwrap();
        let (p, q) = (pa[i as usize], pb[j as usize]);
        assert!((dist - ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt()).abs() < 1e-3);
        assert_eq!(
            (r.state_a.as_str(), r.state_b.as_str(), r.cell_type.as_str()),
            ("half_a", "half_b", "all")
        );
    }
    let csv = pairs_csv(&cpu.records);
    assert!(csv
        .starts_with("ctrl_id,tgt_id,state_a,state_b,cell_type,spatial_distance_um,match_score,converged\n"));
    assert_eq!(csv.lines().count(), ia.len() + 1);
    let mean_dist: f32 = cpu
        .records
        .iter()
        .map(|r| r.spatial_distance_um.unwrap())
        .sum::<f32>()
        / ia.len() as f32;
    let mean_score: f32 = cpu.records.iter().map(|r| r.match_score).sum::<f32>() / ia.len() as f32;
    eprintln!(
        "xenium pairing: {} × {} cells, {} iterations, mean match score {mean_score:.3}, mean distance {mean_dist:.1} µm",
        ia.len(), ib.len(), cpu.sinkhorn.iterations
    );

    let Some(ctx) = common::gpu_or_skip("pairs_xenium_halves_on_cpu_and_gpu") else {
        return;
    };
    let gpu = block_on(pair_states(
        &ctrl,
        &tgt,
        50,
        &opts,
        SinkhornEngine::Gpu(&ctx),
        |_, _| {},
    ))
    .unwrap();
    let same = cpu
        .pairs
        .iter()
        .zip(&gpu.pairs)
        .filter(|(a, b)| a == b)
        .count();
    let score_err = cpu
        .records
        .iter()
        .zip(&gpu.records)
        .map(|(a, b)| (a.match_score - b.match_score).abs())
        .fold(0f32, f32::max);
    eprintln!(
        "xenium pairing: GPU agrees on {same}/{} pairs, max score difference {score_err:.2e}",
        ia.len()
    );
    assert!(same as f64 >= 0.99 * ia.len() as f64);
    assert!(score_err < 1e-3);
}

#[test]
fn signature_is_the_mean_paired_difference() {
    let genes: Vec<String> = ["A", "B", "C", "D"].iter().map(|s| s.to_string()).collect();
    let ctrl = [1.0, 2.0, 3.0, 4.0, /**/ 0.0, 0.0, 1.0, 1.0];
    let tgt = [
        2.0, 2.0, 0.0, 4.0, /**/ 5.0, 1.0, 1.0, 0.5, /**/ 1.0, 1.0, 1.0, 1.0,
    ];
    let pairs = [(0u32, 1u32), (1, 0), (1, 2)];
    let s = signature(&ctrl, 2, &tgt, 3, &genes, &pairs).unwrap();
    // Differences: (4,-1,-2,-3.5), (2,2,-1,3), (1,1,0,0) → mean (7/3, 2/3, -1, -1/6).
    let want = [7.0 / 3.0, 2.0 / 3.0, -1.0, -1.0 / 6.0];
    for (g, w) in s.delta.iter().zip(want) {
        assert!((g - w as f32).abs() < 1e-6, "{:?}", s.delta);
    }
    let up: Vec<_> = s.top_up(5).into_iter().map(|g| g.gene).collect();
    let down: Vec<_> = s.top_down(1).into_iter().map(|g| g.gene).collect();
    assert_eq!(up, ["A", "B"]);
    assert_eq!(down, ["C"]);
    let csv = s.to_csv(1);
    assert_eq!(
        csv.lines().collect::<Vec<_>>(),
        [
            "gene,delta,direction,rank",
            "A,2.3333333,up,1",
            "C,-1,down,1"
        ]
    );

    assert!(matches!(
        signature(&ctrl, 2, &tgt, 3, &genes, &[]),
        Err(OtError::Empty { .. })
    ));
    assert!(matches!(
        signature(&ctrl, 2, &tgt, 3, &genes, &[(2, 0)]),
        Err(OtError::InvalidOption { .. })
    ));
    assert!(matches!(
        signature(&ctrl[..7], 2, &tgt, 3, &genes, &pairs),
        Err(OtError::Shape { .. })
    ));
}

/// Issue 13, point 3: an unconverged transport is an error by default and flagged when
/// allowed; groups sharing cells are refused instead of pairing cells with themselves.
#[test]
fn unconverged_transport_and_overlapping_groups_are_not_written_silently() {
    let d = 4;
    let mut rng = SplitMix64::new(9);
    let (a_ids, b_ids) = (ids("a", 60), ids("b", 60));
    let (a, b) = (rng.uniform_vec(60 * d, 0.0, 1.0), rng.uniform_vec(60 * d, 0.0, 1.0));
    let state = |name, ids, coords| StateCells { state: name, lineage: "x", ids, coords, positions_um: None };
    let (ctrl, tgt) = (state("a", &a_ids, &a), state("b", &b_ids, &b));
    let mut opts = PairingOptions::default();
    opts.sinkhorn.epsilon = 1e-6;
    opts.sinkhorn.max_iterations = 5;
    let err = block_on(pair_states(&ctrl, &tgt, d, &opts, SinkhornEngine::Reference, |_, _| {})).unwrap_err();
    assert!(matches!(err, OtError::NotConverged { iterations: 5, .. }), "{err}");
    assert!(err.to_string().contains("--allow-unconverged"), "{err}");
    opts.allow_unconverged = true;
    let flagged = block_on(pair_states(&ctrl, &tgt, d, &opts, SinkhornEngine::Reference, |_, _| {})).unwrap();
    assert!(!flagged.sinkhorn.converged);
    assert!(flagged.records.iter().all(|r| !r.converged));
    assert!(pairs_csv(&flagged.records).lines().nth(1).unwrap().ends_with(",false"));

    // The same cells on both sides (the same label, or overlapping lassos).
    let mixed: Vec<String> = b_ids.iter().take(59).cloned().chain([a_ids[3].clone()]).collect();
    let overlap = state("b", &mixed, &b);
    let err = block_on(pair_states(&ctrl, &overlap, d, &PairingOptions::default(), SinkhornEngine::Reference, |_, _| {})).unwrap_err();
    assert!(matches!(err, OtError::OverlappingStates { shared: 1, .. }), "{err}");
    assert!(err.to_string().contains("a3"), "{err}");
}

/// A `flow.json` over `genes` genes (the sampling fields `train::flow::FlowHeader` writes, plus
/// fields the burn-free reader ignores), with PCAs fitted on seeded counts.
fn flow_json(genes: &[String], expression_pca: bool) -> (String, cellsymphony::ot::Pca, Option<cellsymphony::ot::Pca>) {
    use cellsymphony::engine::flow::FlowSpec;
    let g = genes.len();
    let mut rng = SplitMix64::new(9);
    let x = rng.uniform_vec(40 * g, 0.0, 3.0);
    let dg_pca = cellsymphony::ot::Pca::fit(&x, 40, g, &PcaOptions { n_components: 4 }).unwrap();
    let expr = cellsymphony::ot::Pca::fit(&x, 40, g, &PcaOptions { n_components: 6 }).unwrap();
    let mut spec = FlowSpec::small(1, 6);
    spec.dg_components = 4;
    let json = serde_json::json!({
        "spec": spec,
        "config": { "sample_steps": 7, "solver": "Euler", "ae_epochs": 3 },
        "transitions": ["Epithelial → Malignant"],
        "latent_mean": vec![0.5f32; spec.latent],
        "latent_scale": 2.0,
        "dg_pca": dg_pca,
        "dg_scale": 1.5,
        "cell_embedding": if expression_pca { "expression PCA" } else { "z_cell.npy" },
        "expression_pca": if expression_pca { Some(&expr) } else { None },
        "um_per_px": 0.5,
        "genes": genes,
        "pairing": {}, "metrics": {},
    });
    (json.to_string(), dg_pca, expression_pca.then_some(expr))
}

/// log1p CP10k of one row, as the crop's normalisation.
fn log1p_cp10k(row: &[f32]) -> Vec<f32> {
    let total: f32 = row.iter().sum();
    row.iter().map(|v| (v * 1e4 / total.max(1.0)).ln_1p()).collect()
}

#[test]
fn flow_conditioning_maps_genes_by_name_and_matches_the_training_formula() {
    use cellsymphony::ot::FlowFile;
    let genes = ids("G", 12);
    let (text, dg_pca, expr) = flow_json(&genes, true);
    let flow_file = FlowFile::from_json(&text).unwrap();
    let file = &flow_file.conditioning;
    assert_eq!((flow_file.config.sample_steps, file.n_genes(), file.needs_cell_embedding()), (7, 12, false));
    let n = 5;
    let mut rng = SplitMix64::new(3);
    let ctrl: Vec<f32> = rng.uniform_vec(n * 12, 0.0, 9.0).into_iter().map(f32::round).collect();
    let tgt: Vec<f32> = rng.uniform_vec(n * 12, 0.0, 9.0).into_iter().map(f32::round).collect();
    let c = file.condition(&ctrl, &tgt, n, &genes, 0, None).unwrap();
    // The training formula: PCA of (x_tgt − x_ctrl) / dg_scale; embedding = PCA of x_ctrl.
    let xc: Vec<f32> = ctrl.chunks(12).flat_map(log1p_cp10k).collect();
    let xt: Vec<f32> = tgt.chunks(12).flat_map(log1p_cp10k).collect();
    let dg: Vec<f32> = xt.iter().zip(&xc).map(|(t, c)| t - c).collect();
    let want: Vec<f32> = dg_pca.transform(&dg, n).unwrap().into_iter().map(|v| v / 1.5).collect();
    let err = want.iter().zip(&c.dg).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(err < 1e-5, "Δg coordinates differ by {err}");
    assert_eq!(c.cell, expr.unwrap().transform(&xc, n).unwrap());
    assert_eq!(c.tokens, vec![0; n]);
    // Columns in another order (plus an extra gene) give the same conditions.
    let mut order: Vec<usize> = (0..12).rev().collect();
    order.insert(4, usize::MAX);
    let names: Vec<String> = order.iter().map(|&i| if i == usize::MAX { "EXTRA".into() } else { genes[i].clone() }).collect();
    let permute = |m: &[f32]| -> Vec<f32> { (0..n).flat_map(|r| order.iter().map(move |&i| if i == usize::MAX { 7.0 } else { m[r * 12 + i] })).collect() };
    let p = file.condition(&permute(&ctrl), &permute(&tgt), n, &names, 0, None).unwrap();
    let err = p.dg.iter().zip(&c.dg).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(err < 1e-5, "permuted columns change Δg by {err}");
    // Errors name what to fix.
    let msg = |r: Result<cellsymphony::ot::PairConditions, OtError>| r.unwrap_err().to_string();
    let missing = msg(file.condition(&ctrl[..n * 11], &tgt[..n * 11], n, &genes[..11], 0, None));
    assert!(missing.contains("G11") && missing.contains("not among"), "{missing}");
    let token = msg(file.condition(&ctrl, &tgt, n, &genes, 1, None));
    assert!(token.contains("token 1") && token.contains("Epithelial → Malignant"), "{token}");
    let short = msg(file.condition(&ctrl, &tgt[1..], n, &genes, 0, None));
    assert!(short.contains("target counts"), "{short}");
    let emb = msg(file.condition(&ctrl, &tgt, n, &genes, 0, Some(&[0.0; 3])));
    assert!(emb.contains("cell embedding"), "{emb}");
}

#[test]
fn flow_conditioning_rejects_inconsistent_files_and_missing_embeddings() {
    use cellsymphony::ot::FlowFile;
    let genes = ids("G", 10);
    let (text, _, _) = flow_json(&genes, false);
    let file = FlowFile::from_json(&text).unwrap().conditioning;
    assert!(file.needs_cell_embedding());
    let ctrl = vec![1.0; 20];
    let e = file.condition(&ctrl, &ctrl, 2, &genes, 0, None).unwrap_err().to_string();
    assert!(e.contains("z_cell.npy") && e.contains("[n, 6]"), "{e}");
    let ok = file.condition(&ctrl, &ctrl, 2, &genes, 0, Some(&[0.5; 12])).unwrap();
    assert_eq!(ok.cell, vec![0.5; 12]);
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["latent_mean"] = serde_json::json!([0.0, 1.0]);
    let e = FlowFile::from_json(&v.to_string()).unwrap_err().to_string();
    assert!(e.contains("latent_mean") && e.contains("2 values"), "{e}");
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["genes"] = serde_json::json!(["A"]);
    let e = FlowFile::from_json(&v.to_string()).unwrap_err().to_string();
    assert!(e.contains("genes") && e.contains("1 genes"), "{e}");
    let e = FlowFile::from_json("{\"spec\": 3}").unwrap_err().to_string();
    assert!(e.contains("flow.json"), "{e}");
}
