//! Analysis toolkit: k-means, UMAP, enrichment, quality metrics and PNG figures.
//!
//! Planted truths are synthetic (Gaussian clusters); real-data checks use the BIDCell Xenium
//! breast crop (`scripts/fetch_data.sh`) and fail when it is missing. Reference numbers come
//! from scipy / scikit-learn / umap-learn, with the producing Python line beside each.
#![cfg(feature = "native-io")]

mod common;

use std::sync::OnceLock;
use std::time::Instant;

use cellsymphony::analysis::{
    adjusted_rand_index, annotate_singler, benjamini_hochberg, cluster_enrichment, fit_ab, hypergeometric_sf, kmeans,
    knn_exact, knn_label_agreement, ln_gamma, silhouette_score, trustworthiness, umap,
    AnalysisError, KMeansOptions, SingleROptions, Umap, UmapOptions,
};
use common::{crop_cells, crop_dapi, crop_files, scratch, Scratch};
use cellsymphony::data::{
    read_reference_csv, XENIUM_CROP_FRAME,
};
use cellsymphony::util::rng::SplitMix64;
use cellsymphony::plot::{
    category_color, heatmap_png, scatter_png, spatial_map_png, text_height, text_width, viridis,
    Canvas, Figure, Rgb,
};

/// `clusters × per` points in `d` dimensions around centres uniform in `[-spread, spread]^d`,
/// unit-variance noise; returns (points `[n, d]`, true labels).
fn planted(clusters: usize, per: usize, d: usize, spread: f32, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = SplitMix64::new(seed);
    let centres: Vec<f32> = rng.uniform_vec(clusters * d, -spread, spread);
    let mut x = Vec::with_capacity(clusters * per * d);
    let mut labels = Vec::with_capacity(clusters * per);
    // Interleave clusters so that order carries no information.
    for i in 0..per {
        for c in 0..clusters {
            let _ = i;
            for j in 0..d {
                x.push(centres[c * d + j] + rng.normal());
            }
            labels.push(c as u32);
        }
    }
    (x, labels)
}

/// Removes a test's output folder unless `CELLSYMPHONY_KEEP_PLOTS` is set (then prints it).
fn keep_or_remove(dir: Scratch) {
    if std::env::var_os("CELLSYMPHONY_KEEP_PLOTS").is_some() {
        println!("figures kept in {}", dir.keep().display());
    }
}

/// Decodes an 8-bit RGB PNG: (width, height, bytes).
fn read_png_rgb(path: &std::path::Path) -> (usize, usize, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, buf)
}

fn pixel(bytes: &[u8], width: usize, p: [f32; 2]) -> Rgb {
    let (c, r) = (p[0].round() as usize, p[1].round() as usize);
    let i = (r * width + c) * 3;
    Rgb(bytes[i], bytes[i + 1], bytes[i + 2])
}

fn colour_distance(a: Rgb, b: Rgb) -> i32 {
    (i32::from(a.0) - i32::from(b.0)).abs()
        + (i32::from(a.1) - i32::from(b.1)).abs()
        + (i32::from(a.2) - i32::from(b.2)).abs()
}

// ---------------------------------------------------------------- k-means and ARI

#[test]
fn adjusted_rand_index_matches_sklearn() {
    // sklearn 1.9.1: adjusted_rand_score([0,0,1,2],[0,0,1,1]) = 0.5714285714285714
    let v = adjusted_rand_index(&[0, 0, 1, 2], &[0, 0, 1, 1]).unwrap();
    assert!((v - 0.5714285714285714).abs() < 1e-12, "{v}");
    // adjusted_rand_score([0,0,0,1,1,1],[0,0,1,1,2,2]) = 0.24242424242424243
    let v = adjusted_rand_index(&[0, 0, 0, 1, 1, 1], &[0, 0, 1, 1, 2, 2]).unwrap();
    assert!((v - 0.24242424242424243).abs() < 1e-12, "{v}");
    // adjusted_rand_score([0,1,2,0,1,2,0,1,2],[0,0,0,1,1,1,2,2,2]) = -0.3333333333333333
    let v =
        adjusted_rand_index(&[0, 1, 2, 0, 1, 2, 0, 1, 2], &[0, 0, 0, 1, 1, 1, 2, 2, 2]).unwrap();
    assert!((v + 1.0 / 3.0).abs() < 1e-12, "{v}");
    // Renaming clusters does not matter.
    assert_eq!(
        adjusted_rand_index(&[0, 0, 1, 1], &[7, 7, 3, 3]).unwrap(),
        1.0
    );
    assert!(matches!(
        adjusted_rand_index(&[0, 1], &[0]),
        Err(AnalysisError::Shape {
            expected: 2,
            found: 1,
            ..
        })
    ));
}

#[test]
fn kmeans_recovers_planted_gaussian_clusters() {
    let (k, per, d) = (6, 150, 10);
    let (x, truth) = planted(k, per, d, 6.0, 11);
    let n = k * per;
    let t = Instant::now();
    let fit = kmeans(
        &x,
        n,
        d,
        &KMeansOptions {
            seed: 3,
            ..KMeansOptions::new(k)
        },
    )
    .unwrap();
    let ari = adjusted_rand_index(&fit.labels, &truth).unwrap();
    println!(
        "k-means: n={n} d={d} k={k}: ARI {ari:.4}, inertia {:.1}, {} iterations, {:.1} ms",
        fit.inertia,
        fit.iterations,
        t.elapsed().as_secs_f64() * 1e3
    );
    assert!(ari >= 0.95, "ARI {ari}");
    assert!(fit.converged);
    assert_eq!(fit.centroids.len(), k * d);
    // Inertia is the sum of squared distances to the returned centroids; with unit noise in
    // 10-d it is about n * d.
    let mut inertia = 0f64;
    for i in 0..n {
        let c = fit.labels[i] as usize;
        for j in 0..d {
            inertia += f64::from(x[i * d + j] - fit.centroids[c * d + j]).powi(2);
        }
    }
    assert!(
        (inertia - fit.inertia).abs() < 1e-3 * inertia,
        "{inertia} vs {}",
        fit.inertia
    );
    assert!(fit.inertia < 1.2 * (n * d) as f64, "{}", fit.inertia);
    // Deterministic, and prediction agrees with the fitted labels.
    let again = kmeans(
        &x,
        n,
        d,
        &KMeansOptions {
            seed: 3,
            ..KMeansOptions::new(k)
        },
    )
    .unwrap();
    assert_eq!(again.labels, fit.labels);
    assert_eq!(fit.predict(&x, n).unwrap(), fit.labels);
    // More restarts never give a worse optimum than one.
    let one = kmeans(
        &x,
        n,
        d,
        &KMeansOptions {
            restarts: 1,
            seed: 3,
            ..KMeansOptions::new(k)
        },
    )
    .unwrap();
    assert!(fit.inertia <= one.inertia + 1e-6);
}

#[test]
fn kmeans_rejects_bad_input_with_typed_errors() {
    let x = vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
    let err = kmeans(&x, 3, 2, &KMeansOptions::new(0)).unwrap_err();
    assert!(
        matches!(err, AnalysisError::InvalidParameter { name: "k", .. }),
        "{err}"
    );
    let err = kmeans(&x, 3, 2, &KMeansOptions::new(4)).unwrap_err();
    assert!(err.to_string().contains("`k` = 4 (n = 3 points)"), "{err}");
    let mut nan = x.clone();
    nan[3] = f32::NAN;
    let err = kmeans(&nan, 3, 2, &KMeansOptions::new(2)).unwrap_err();
    assert!(
        matches!(
            err,
            AnalysisError::NonFinite {
                row: 1,
                column: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("NaN"), "{err}");
    let err = kmeans(&x, 4, 2, &KMeansOptions::new(2)).unwrap_err();
    assert!(
        matches!(
            err,
            AnalysisError::Shape {
                expected: 8,
                found: 6,
                ..
            }
        ),
        "{err}"
    );
    // k = n puts every point in its own cluster with zero inertia.
    let fit = kmeans(&x, 3, 2, &KMeansOptions::new(3)).unwrap();
    assert_eq!(fit.inertia, 0.0);
}

// ---------------------------------------------------------------- metrics

#[test]
fn trustworthiness_matches_sklearn() {
    // Python (sklearn 1.9.1):
    //   i=np.arange(60)[:,None]; j=np.arange(5)[None,:]
    //   X=np.sin(0.37*i*(j+1)+0.11*j).astype(np.float32)
    //   L=np.stack([X[:,0]+0.3*np.cos(np.arange(60)), X[:,1]],1).astype(np.float32)
    //   trustworthiness(X, L, n_neighbors=k) for k = 1, 5, 10
    let (n, d) = (60, 5);
    let mut x = vec![0f32; n * d];
    for i in 0..n {
        for j in 0..d {
            x[i * d + j] = (0.37 * i as f64 * (j + 1) as f64 + 0.11 * j as f64).sin() as f32;
        }
    }
    let low: Vec<f32> = (0..n)
        .flat_map(|i| {
            [
                (f64::from(x[i * d]) + 0.3 * (i as f64).cos()) as f32,
                x[i * d + 1],
            ]
        })
        .collect();
    for (k, expected) in [
        (1, 0.9051724137931034),
        (5, 0.808974358974359),
        (10, 0.7823595505617977),
    ] {
        let t = trustworthiness(&x, d, &low, 2, k).unwrap();
        assert!(
            (t - expected).abs() < 1e-12,
            "k={k}: {t} vs sklearn {expected}"
        );
    }
    // The identity embedding is perfectly trustworthy.
    assert!((trustworthiness(&x, d, &x, d, 10).unwrap() - 1.0).abs() < 1e-12);
    assert!(matches!(
        trustworthiness(&x, d, &low, 2, 30),
        Err(AnalysisError::InvalidParameter { name: "k", .. })
    ));
}

#[test]
fn knn_is_exact_and_sorted() {
    let (x, _) = planted(3, 40, 7, 3.0, 5);
    let (n, d, k) = (120, 7, 8);
    let g = knn_exact(&x, n, d, k).unwrap();
    for i in 0..n {
        let mut all: Vec<(f32, usize)> = (0..n)
            .filter(|&j| j != i)
            .map(|j| {
                let s: f32 = (0..d).map(|c| (x[i * d + c] - x[j * d + c]).powi(2)).sum();
                (s.sqrt(), j)
            })
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let want: Vec<u32> = all[..k].iter().map(|&(_, j)| j as u32).collect();
        assert_eq!(&g.indices[i * k..(i + 1) * k], &want[..], "row {i}");
        for (a, &(b, _)) in g.distances[i * k..(i + 1) * k].iter().zip(&all[..k]) {
            assert!((a - b).abs() <= 1e-4 * b.max(1.0), "row {i}: {a} vs {b}");
        }
    }
}

// ---------------------------------------------------------------- UMAP

#[test]
fn umap_curve_parameters_match_umap_learn() {
    // umap-learn 0.5.12: umap.umap_.find_ab_params(spread, min_dist)
    for (spread, min_dist, a, b) in [
        (1.0, 0.1, 1.5769434602697652, 0.8950608778515733),
        (1.0, 0.5, 0.5830300203414425, 1.3341669924314914),
        (2.0, 0.3, 0.3794946886311041, 0.9488152194414622),
        (1.0, 0.0, 1.93280839734315, 0.7904949732233831),
    ] {
        let (fa, fb) = fit_ab(spread, min_dist).unwrap();
        assert!(
            (fa - a).abs() < 1e-4 * a && (fb - b).abs() < 1e-4 * b,
            "spread {spread} min_dist {min_dist}: ({fa}, {fb}) vs ({a}, {b})"
        );
    }
    assert!(fit_ab(1.0, 1.5).is_err());
    assert!(fit_ab(0.0, 0.0).is_err());
}

#[test]
fn umap_separates_planted_clusters_in_50d() {
    let (k, per, d) = (6, 150, 50);
    let (x, truth) = planted(k, per, d, 1.5, 21);
    let n = k * per;
    let t = Instant::now();
    let fit = umap(&x, n, d, &UmapOptions::default()).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let emb = &fit.embedding;
    assert_eq!(emb.len(), n * 2);
    let trust = trustworthiness(&x, d, emb, 2, 10).unwrap();
    let agree = knn_label_agreement(emb, n, 2, &truth, 10).unwrap();
    let sil = silhouette_score(emb, n, 2, &truth, k).unwrap();
    let agree_input = knn_label_agreement(&x, n, d, &truth, 10).unwrap();
    println!(
        "UMAP planted: n={n} d={d}: {secs:.2} s ({} epochs, {} edges), trustworthiness@10 {trust:.4}, \
         2-D kNN label agreement {agree:.4} (input {agree_input:.4}), silhouette {sil:.3}",
        fit.n_epochs, fit.n_edges
    );
    assert!(trust >= 0.9, "trustworthiness {trust}");
    assert!(agree >= 0.9, "kNN label agreement {agree}");
    assert!(sil >= 0.5, "silhouette {sil}");
    // Deterministic for a seed; a different seed gives a different layout.
    let again = umap(&x, n, d, &UmapOptions::default()).unwrap();
    assert_eq!(again.embedding, fit.embedding);
    let other = umap(
        &x,
        n,
        d,
        &UmapOptions {
            seed: 9,
            ..UmapOptions::default()
        },
    )
    .unwrap();
    assert_ne!(other.embedding, fit.embedding);
}

#[test]
fn umap_rejects_bad_options() {
    let x = vec![0.5f32; 20];
    let err = umap(
        &x,
        10,
        2,
        &UmapOptions {
            n_neighbors: 11,
            ..UmapOptions::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("n_neighbors"), "{err}");
    let err = umap(
        &x,
        10,
        2,
        &UmapOptions {
            n_neighbors: 5,
            min_dist: 2.0,
            ..UmapOptions::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("min_dist"), "{err}");
    let mut bad = x.clone();
    bad[7] = f32::INFINITY;
    assert!(matches!(
        umap(
            &bad,
            10,
            2,
            &UmapOptions {
                n_neighbors: 5,
                ..UmapOptions::default()
            }
        ),
        Err(AnalysisError::NonFinite {
            row: 3,
            column: 1,
            ..
        })
    ));
}

/// Trustworthiness (k = 15) our UMAP must reach on the log-normalised crop.
const CROP_TRUSTWORTHINESS_MIN: f64 = 0.85;

/// The crop's log-normalised expression `[cells, genes]` (`ln(1 + cp10k)`).
fn crop_log() -> &'static [f32] {
    static X: OnceLock<Vec<f32>> = OnceLock::new();
    X.get_or_init(|| crop_cells().log_normalised(1e4))
}

/// Default UMAP of [`crop_log`] and the seconds it took.
fn crop_umap() -> &'static (Umap, f64) {
    static U: OnceLock<(Umap, f64)> = OnceLock::new();
    U.get_or_init(|| {
        let t = crop_cells();
        let start = Instant::now();
        let fit = umap(
            crop_log(),
            t.n_cells(),
            t.n_genes(),
            &UmapOptions::default(),
        )
        .unwrap();
        (fit, start.elapsed().as_secs_f64())
    })
}

#[test]
fn umap_on_real_crop_is_trustworthy() {
    let t = crop_cells();
    let (n, d) = (t.n_cells(), t.n_genes());
    assert_eq!(n, 1135);
    let x = crop_log();
    let (fit, secs) = crop_umap();
    let k = 15;
    let trust = trustworthiness(x, d, &fit.embedding, 2, k).unwrap();
    println!(
        "UMAP crop: {n} cells x {d} genes (log1p cp10k): {secs:.2} s, {} epochs, {} edges, \
         trustworthiness@{k} {trust:.4} (threshold {CROP_TRUSTWORTHINESS_MIN})",
        fit.n_epochs, fit.n_edges
    );
    assert!(trust >= CROP_TRUSTWORTHINESS_MIN, "trustworthiness {trust}");

    // Optional: umap-learn on the same matrix (not installed by setup.sh: it pulls numba).
    let python = std::env::var("CELLSYMPHONY_UMAP_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = scratch("umap-compare");
    let (data_path, ours_path) = (dir.join("x.f32"), dir.join("ours.f32"));
    let le = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(&data_path, le(x)).unwrap();
    std::fs::write(&ours_path, le(&fit.embedding)).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/umap_compare.py");
    let out = std::process::Command::new(&python)
        .args([
            script,
            data_path.to_str().unwrap(),
            &n.to_string(),
            &d.to_string(),
        ])
        .arg(ours_path.to_str().unwrap())
        .arg(k.to_string())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let v: serde_json::Value = serde_json::from_slice(o.stdout.trim_ascii())
                .unwrap_or_else(|e| {
                    panic!(
                        "bad JSON from {script}: {e}: {}",
                        String::from_utf8_lossy(&o.stdout)
                    )
                });
            let theirs = v["trust_umap_learn"].as_f64().unwrap();
            let ours_sklearn = v["trust_ours_sklearn"].as_f64().unwrap();
            println!(
                "umap-learn {}: trustworthiness@{k} {theirs:.4} ({:.2} s incl. numba JIT); \
                 sklearn on our layout {ours_sklearn:.4}",
                v["umap_learn_version"],
                v["seconds_umap_learn"].as_f64().unwrap_or(f64::NAN)
            );
            // Same definition; sklearn ranks by its own (float64-accumulated) distances, so
            // near-ties may order differently from our f32 ones.
            assert!(
                (ours_sklearn - trust).abs() < 1e-5,
                "{ours_sklearn} vs {trust}"
            );
            assert!(
                trust >= theirs - 0.02,
                "ours {trust} vs umap-learn {theirs}"
            );
        }
        Ok(o) => println!(
            "note: umap-learn comparison skipped ({python} {script} exited {}: {}); \
             set CELLSYMPHONY_UMAP_PYTHON to an interpreter with umap-learn to run it",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => println!("note: umap-learn comparison skipped: cannot run {python}: {e}"),
    }
}

// ---------------------------------------------------------------- enrichment

#[test]
fn hypergeometric_tail_matches_scipy() {
    // Each value: scipy 1.17.1, `scipy.stats.hypergeom.sf(k, M, n, N)` with (k, M, n, N) as
    // listed, e.g. hypergeom.sf(4, 50, 10, 12) = 0.0460249264258388.
    for ((k, m, s, draws), expected) in [
        ((4, 50, 10, 12), 0.0460249264258388),
        ((0, 20, 5, 5), 0.8063080495356038),
        ((9, 1135, 60, 40), 1.9579693464329674e-05),
        ((29, 1135, 60, 40), 6.7094968629846635e-34),
        ((99, 100000, 5000, 1000), 6.445793363039516e-11),
        ((2, 10, 3, 4), 0.03333333333333333),
        ((10, 1135, 200, 50), 0.25360011221037937),
        // successes + draws > population: the support starts above 0.
        ((7, 12, 9, 8), 0.01818181818181818),
    ] {
        let p = hypergeometric_sf(k, m, s, draws);
        assert!(
            (p - expected).abs() <= 1e-9 * expected,
            "sf({k}, {m}, {s}, {draws}) = {p:e}, scipy {expected:e}"
        );
    }
    // Support edges: P(X > max) = 0, P(X > min - 1) = 1.
    assert_eq!(hypergeometric_sf(3, 10, 3, 4), 0.0);
    assert_eq!(hypergeometric_sf(0, 10, 8, 4), 1.0);
    // ln Γ against exact factorials: Γ(11) = 10! = 3628800.
    assert!((ln_gamma(11.0) - 3628800f64.ln()).abs() < 1e-12);
    assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
}

#[test]
fn cluster_enrichment_counts_and_tests() {
    // 50 cells: cluster 0 holds 12 cells, 5 of type 0 (of 10 type-0 cells in total).
    let mut clusters = Vec::new();
    let mut types = Vec::new();
    let mut push = |c: u32, t: u32, times: usize| {
        for _ in 0..times {
            clusters.push(c);
            types.push(t);
        }
    };
    push(0, 0, 5);
    push(0, 1, 7);
    push(1, 0, 5);
    push(1, 1, 30);
    push(1, 2, 3);
    let e = cluster_enrichment(&clusters, 3, &types, 3).unwrap();
    assert_eq!(e.counts, vec![5, 7, 0, 5, 30, 3, 0, 0, 0]);
    assert_eq!(e.cluster_sizes, vec![12, 38, 0]);
    assert_eq!(e.type_totals, vec![10, 37, 3]);
    assert!((e.fraction[0] - 5.0 / 12.0).abs() < 1e-12);
    // Expected 12 * 10 / 50 = 2.4 → enrichment 5 / 2.4.
    assert!((e.expected[0] - 2.4).abs() < 1e-12);
    assert!((e.enrichment[0] - 5.0 / 2.4).abs() < 1e-12);
    // P(X >= 5) = hypergeom.sf(4, 50, 10, 12) = 0.0460249264258388 (scipy 1.17.1).
    assert!((e.p_value[0] - 0.0460249264258388).abs() < 1e-12);
    // Zero observed: P(X >= 0) = 1; empty cluster: p 1, enrichment 0.
    assert_eq!(e.p_value[2], 1.0);
    assert_eq!((e.p_value[6], e.enrichment[6]), (1.0, 0.0));
    assert!(e.q_value.iter().zip(&e.p_value).all(|(q, p)| q >= p));
    let err = cluster_enrichment(&[0, 1], 2, &[0, 5], 3).unwrap_err();
    assert!(
        matches!(
            err,
            AnalysisError::LabelOutOfRange {
                what: "types",
                index: 1,
                label: 5,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn benjamini_hochberg_by_hand() {
    // Sorted p 0.01, 0.03, 0.04, 0.2 (m = 4): p·m/rank = 0.04, 0.06, 0.0533, 0.2, then the
    // running minimum from the top.
    let q = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.2]);
    let want = [0.04, 0.16 / 3.0, 0.16 / 3.0, 0.2];
    for (a, b) in q.iter().zip(want) {
        assert!((a - b).abs() < 1e-12, "{q:?}");
    }
}

/// k-means clusters of the crop's expression against SingleR cell types (sc_breast
/// reference): expression clusters must be enriched for types. Also writes the UMAP coloured
/// by cluster and the enrichment heatmap (kept with `CELLSYMPHONY_KEEP_PLOTS=1`).
#[test]
fn crop_clusters_are_enriched_for_singler_types() {
    let t = crop_cells();
    let (n, d) = (t.n_cells(), t.n_genes());
    let reference = read_reference_csv(&crop_files().reference).unwrap();
    let annotation = annotate_singler(
        &t.genes,
        &t.log_normalised(100.0),
        &reference,
        &SingleROptions::default(),
    )
    .unwrap();
    let type_names = annotation.label_names.clone();
    let types: Vec<u32> = annotation
        .best
        .iter()
        .map(|b| type_names.iter().position(|n| n == b).unwrap() as u32)
        .collect();
    let k = 8;
    let clusters = kmeans(crop_log(), n, d, &KMeansOptions::new(k)).unwrap();
    let e = cluster_enrichment(&clusters.labels, k, &types, type_names.len()).unwrap();
    assert_eq!(e.counts.iter().sum::<u64>(), n as u64);
    let ari = adjusted_rand_index(&clusters.labels, &types).unwrap();
    let mut enriched = 0;
    for c in 0..k {
        let row = c * e.n_types..(c + 1) * e.n_types;
        let best = row
            .clone()
            .max_by(|&a, &b| e.enrichment[a].total_cmp(&e.enrichment[b]))
            .unwrap();
        println!(
            "cluster {c} ({} cells): top type {} x{:.2} ({} cells, q {:.2e})",
            e.cluster_sizes[c],
            type_names[best - row.start],
            e.enrichment[best],
            e.counts[best],
            e.q_value[best]
        );
        enriched += usize::from(e.enrichment[best] >= 2.0 && e.q_value[best] < 1e-3);
    }
    println!(
        "k-means (k={k}) vs SingleR best labels: ARI {ari:.3}; {enriched}/{k} clusters enriched"
    );
    assert!(
        enriched >= k / 2,
        "{enriched} of {k} clusters enriched for a type"
    );
    assert!(ari > 0.1, "ARI {ari}");

    let dir = scratch("crop");
    let cluster_names: Vec<String> = (0..k).map(|c| format!("cluster {c}")).collect();
    let (fit, _) = crop_umap();
    scatter_png(
        &dir.join("umap.png"),
        &fit.embedding,
        &clusters.labels,
        &cluster_names,
        "UMAP of the crop, k-means clusters",
    )
    .unwrap();
    scatter_png(
        &dir.join("umap_types.png"),
        &fit.embedding,
        &types,
        &type_names,
        "UMAP of the crop, SingleR types",
    )
    .unwrap();
    let log2: Vec<f64> = e
        .enrichment
        .iter()
        .map(|&v| (v.max(1.0 / 16.0)).log2())
        .collect();
    heatmap_png(
        &dir.join("enrichment.png"),
        &log2,
        &cluster_names,
        &type_names,
        "log2 enrichment",
        true,
    )
    .unwrap();
    for f in ["umap.png", "umap_types.png", "enrichment.png"] {
        let (w, h, _) = read_png_rgb(&dir.join(f));
        assert!(w > 100 && h > 100, "{f}: {w}x{h}");
    }
    keep_or_remove(dir);
}

// ---------------------------------------------------------------- plots

#[test]
fn font_renders_text_of_the_expected_width() {
    assert_eq!(text_width("Hello", 1), 29);
    assert_eq!(text_width("Hello", 2), 58);
    assert_eq!(text_width("", 3), 0);
    for (text, scale, rows) in [("Hello", 1, 7), ("Hy", 1, 8), ("Hello", 3, 21)] {
        let mut c = Canvas::new(100, 40, Rgb::WHITE);
        let w = c.text(5, 5, text, Rgb::BLACK, scale);
        assert_eq!(w, text_width(text, scale));
        let ink: Vec<(usize, usize)> = (0..c.height)
            .flat_map(|r| (0..c.width).map(move |col| (col, r)))
            .filter(|&(col, r)| c.get(col, r) == Some(Rgb::BLACK))
            .collect();
        let (c0, c1) = (
            ink.iter().map(|p| p.0).min().unwrap(),
            ink.iter().map(|p| p.0).max().unwrap(),
        );
        let (r0, r1) = (
            ink.iter().map(|p| p.1).min().unwrap(),
            ink.iter().map(|p| p.1).max().unwrap(),
        );
        assert_eq!((c0, r0), (5, 5), "{text} at scale {scale}");
        assert_eq!(c1 - c0 + 1, w, "{text} at scale {scale}: ink width");
        assert_eq!(r1 - r0 + 1, rows, "{text} at scale {scale}: ink height");
        assert!(rows <= text_height(scale));
    }
}

#[test]
fn scatter_png_draws_every_point_and_a_legend() {
    // Four unit-variance blobs on a circle of radius 20, one far point stretching the axis.
    let (k, per) = (4, 60);
    let mut rng = SplitMix64::new(2);
    let mut xy = Vec::new();
    let mut labels = Vec::new();
    for i in 0..k * per {
        let c = i % k;
        let angle = std::f32::consts::TAU * c as f32 / k as f32;
        xy.push(20.0 * angle.cos() + rng.normal());
        xy.push(20.0 * angle.sin() + rng.normal());
        labels.push(c as u32);
    }
    xy[1] = 60.0;
    let names: Vec<String> = (0..k).map(|c| format!("cluster {c}")).collect();
    let dir = scratch("scatter");
    let path = dir.join("umap.png");
    let fig = scatter_png(&path, &xy, &labels, &names, "UMAP of planted clusters").unwrap();
    let (w, h, bytes) = read_png_rgb(&path);
    assert_eq!((w, h), (fig.canvas.width, fig.canvas.height));
    assert_eq!(bytes, fig.canvas.pixels);
    assert!(w > 640 && h > 640, "{w}x{h}");
    // The pixel under each dot is closest to its cluster's colour among the palette + white.
    let mut right = 0;
    for (p, &l) in fig.points_px.iter().zip(&labels) {
        let got = pixel(&bytes, w, *p);
        let own = colour_distance(got, category_color(l as usize));
        let others = (0..k)
            .filter(|&c| c != l as usize)
            .map(|c| colour_distance(got, category_color(c)))
            .chain([colour_distance(got, Rgb::WHITE)])
            .min()
            .unwrap();
        right += usize::from(own < others);
    }
    assert!(
        right as f64 >= 0.97 * labels.len() as f64,
        "{right} / {}",
        labels.len()
    );
    // No temporary file is left behind.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("umap.png")]);
    let gone = dir.join("x.png");
    keep_or_remove(dir);
    assert!(scatter_png(&gone, &xy, &labels, &names[..3], "t").is_err());
}

#[test]
fn spatial_map_png_puts_clusters_over_the_dapi_image() {
    let t = crop_cells();
    let img = crop_dapi();
    let (n, d) = (t.n_cells(), t.n_genes());
    let x = t.log_normalised(1e4);
    let k = 8;
    let fit = kmeans(&x, n, d, &KMeansOptions::new(k)).unwrap();
    let names: Vec<String> = (0..k).map(|c| format!("k-means {c}")).collect();
    let dir = scratch("spatial");
    let path = dir.join("spatial.png");
    let fig = spatial_map_png(
        &path,
        img,
        &XENIUM_CROP_FRAME,
        &t.centroids_um,
        &fit.labels,
        &names,
        "k-means clusters on DAPI",
    )
    .unwrap();
    let (w, h, bytes) = read_png_rgb(&path);
    assert_eq!((w, h), (fig.canvas.width, fig.canvas.height));
    // 2400 x 1800 px image, factor 3 → 800 x 600 background plus margins and legend.
    assert!(w >= 800 + 20 && h >= 600 + 20, "{w}x{h}");
    let drawn: Vec<_> = fig
        .points_px
        .iter()
        .zip(&fit.labels)
        .filter(|(p, _)| !p[0].is_nan())
        .collect();
    assert!(
        drawn.len() >= n * 99 / 100,
        "{} of {n} cells on the image",
        drawn.len()
    );
    // Dots are coloured (the DAPI background is grey), in their cluster's colour.
    let coloured = drawn
        .iter()
        .filter(|(p, &l)| {
            let c = pixel(&bytes, w, **p);
            let grey = c.0 == c.1 && c.1 == c.2;
            !grey && colour_distance(c, category_color(l as usize)) < 120
        })
        .count();
    assert!(
        coloured as f64 >= 0.95 * drawn.len() as f64,
        "{coloured} / {}",
        drawn.len()
    );
    // The DAPI image shows through away from the dots: grey pixels with contrast.
    let greys: Vec<u8> = bytes
        .chunks_exact(3)
        .filter(|c| c[0] == c[1] && c[1] == c[2] && c[0] != 255)
        .map(|c| c[0])
        .collect();
    assert!(greys.len() > 800 * 600 / 3, "{} grey pixels", greys.len());
    let (lo, hi) = (greys.iter().min().unwrap(), greys.iter().max().unwrap());
    assert!(hi - lo > 150, "DAPI range {lo}..{hi}");
    keep_or_remove(dir);
}

#[test]
fn heatmap_png_colours_cells_by_value_and_annotates() {
    let rows: Vec<String> = (0..3).map(|r| format!("cluster {r}")).collect();
    let cols: Vec<String> = ["B cell", "T cell", "Tumour", "Stroma"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let m: Vec<f64> = vec![
        0.0,
        1.0,
        2.0,
        3.0,
        4.0,
        5.0,
        6.0,
        7.0,
        8.0,
        9.0,
        10.0,
        f64::NAN,
    ];
    let dir = scratch("heatmap");
    let plain = heatmap_png(
        &dir.join("plain.png"),
        &m,
        &rows,
        &cols,
        "enrichment",
        false,
    )
    .unwrap();
    let (w, _, bytes) = read_png_rgb(&dir.join("plain.png"));
    for (i, p) in plain.points_px.iter().enumerate() {
        let want = if m[i].is_nan() {
            Rgb::GREY
        } else {
            viridis((m[i] / 10.0) as f32)
        };
        assert_eq!(pixel(&bytes, w, *p), want, "cell {i}");
    }
    let annotated = heatmap_png(
        &dir.join("values.png"),
        &m,
        &rows,
        &cols,
        "enrichment",
        true,
    )
    .unwrap();
    let (w2, h2, bytes2) = read_png_rgb(&dir.join("values.png"));
    assert_eq!((w2, h2), (annotated.canvas.width, annotated.canvas.height));
    // Each annotated cell has text ink (black on light cells, white on dark) near its centre.
    for (i, p) in annotated.points_px.iter().enumerate() {
        let ink_pixels = (-4i32..=4)
            .flat_map(|dy| (-6i32..=6).map(move |dx| (dx, dy)))
            .filter(|&(dx, dy)| {
                let c = pixel(&bytes2, w2, [p[0] + dx as f32, p[1] + dy as f32]);
                c == Rgb::BLACK || c == Rgb::WHITE
            })
            .count();
        assert!(ink_pixels >= 3, "cell {i}: {ink_pixels} text pixels");
    }
    assert!(heatmap_png(&dir.join("bad.png"), &m[..11], &rows, &cols, "t", false).is_err());
    keep_or_remove(dir);
}

/// Issue 17, point 6: every text box of `fig` lies inside the canvas, no font pixel was
/// clipped, and no two text boxes overlap; `must_show` strings are drawn (possibly shortened).
fn assert_text_layout(what: &str, fig: &Figure) {
    let c = &fig.canvas;
    assert_eq!(c.text_pixels_clipped, 0, "{what}: font pixels outside the {}x{} canvas", c.width, c.height);
    assert!(!c.text_boxes.is_empty(), "{what}: no text recorded");
    for b in &c.text_boxes {
        assert!(b.inside(c.width, c.height), "{what}: {b:?} leaves the {}x{} canvas", c.width, c.height);
    }
    for (i, a) in c.text_boxes.iter().enumerate() {
        for b in &c.text_boxes[i + 1..] {
            assert!(!a.overlaps(b), "{what}: {a:?} overlaps {b:?}");
        }
    }
}

#[test]
fn plots_keep_long_titles_and_class_names_inside_without_overlap() {
    use cellsymphony::data::{GrayImage16, ImageFrame};
    use cellsymphony::plot::{render_heatmap, render_scatter, render_spatial_map};
    let names: Vec<String> = [
        "B",
        "CD4+ T cells, conventional and regulatory (CD4Tconv/Treg)",
        "Myofibroblasts",
        "Malignant epithelial cells of the invasive ductal carcinoma region",
        "Mono/Macro",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let long_title = "Gene-only transformer, held-out cells (n=134) of the Xenium FFPE human breast crop - rows: true class, columns: predicted class, value: fraction of the row's cells";
    let k = names.len();
    let mut rng = SplitMix64::new(7);
    let (xy, labels): (Vec<f32>, Vec<u32>) = {
        let mut xy = Vec::new();
        let mut l = Vec::new();
        for i in 0..200 {
            xy.extend([rng.normal() * 5.0 + (i % k) as f32 * 10.0, rng.normal() * 1e3]);
            l.push((i % k) as u32);
        }
        (xy, l)
    };
    let dir = scratch("plots-layout");
    let scatter = render_scatter(&xy, &labels, &names, long_title).unwrap();
    assert_text_layout("scatter", &scatter);
    // Long names are shortened with an ellipsis, short ones kept.
    let texts: Vec<&str> = scatter.canvas.text_boxes.iter().map(|b| b.text.as_str()).collect();
    assert!(texts.contains(&"Myofibroblasts") && texts.iter().any(|t| t.starts_with("Malignant") && t.ends_with("...")), "{texts:?}");
    // The title wraps instead of widening the figure: more than one title line.
    assert!(texts.iter().filter(|t| long_title.contains(**t) && t.len() > 10).count() >= 2, "{texts:?}");

    let (w, h) = (300, 200);
    let image = GrayImage16 { width: w, height: h, pixels: (0..w * h).map(|i| (i % 997) as u16 * 50).collect() };
    let frame = ImageFrame { origin_um: [0.0, 0.0], um_per_px: 0.5 };
    let centroids: Vec<[f32; 2]> = (0..50).map(|i| [(i * 3) as f32, (i * 2) as f32]).collect();
    let spatial_labels: Vec<u32> = (0..50).map(|i| (i % k) as u32).collect();
    let spatial = render_spatial_map(&image, &frame, &centroids, &spatial_labels, &names, long_title).unwrap();
    assert_text_layout("spatial", &spatial);

    let confusion: Vec<f64> = (0..k * k).map(|i| if i % (k + 1) == 0 { 0.8 } else { 0.05 }).collect();
    let rows: Vec<String> = names.iter().map(|n| format!("{n} (n=123)")).collect();
    for (what, title, annotate) in [("confusion", long_title, true), ("heatmap, short title", "t", false)] {
        let fig = render_heatmap(&confusion, &rows, &names, title, annotate).unwrap();
        assert_text_layout(what, &fig);
        assert!(fig.canvas.width <= 1200, "{what}: {} px wide", fig.canvas.width);
    }
    // One class: the colour bar still has room for both of its labels.
    let one = render_heatmap(&[1.0, 0.0], &names[..1], &names[..2], long_title, true).unwrap();
    assert_text_layout("1x2 heatmap", &one);
    if std::env::var_os("CELLSYMPHONY_KEEP_PLOTS").is_some() {
        scatter.canvas.write_png(&dir.join("scatter_long_names.png")).unwrap();
        spatial.canvas.write_png(&dir.join("spatial_long_names.png")).unwrap();
        let fig = render_heatmap(&confusion, &rows, &names, long_title, true).unwrap();
        fig.canvas.write_png(&dir.join("confusion_long_names.png")).unwrap();
    }
    keep_or_remove(dir);
}
