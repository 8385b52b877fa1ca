//! Contrastive alignment evaluated on held-out cells only, the image-only (CUCA-style) classifier
//! on a synthetic slide whose label is visible in the patch, and imported embeddings matched to
//! cells by cell id (`.npy` / `.csv` / text ids files, ids stored in safetensors).

mod common;

use std::path::Path;

use burn::backend::{Autodiff, NdArray};

use cellsymphony::model::{ContrastiveAlignerConfig, SharedSpaceConfig};
use cellsymphony::train::contrastive::{evaluate_held_out, train_alignment, AlignOptions, PairedInputs};
use cellsymphony::train::embeddings::{npy_f32_bytes, read_embeddings_for_cells, read_row_ids};
use cellsymphony::train::TrainError;

use common::synth::{npy_unicode, planted_clusters};

type AB = Autodiff<NdArray<f32>>;

/// 150 cells of 3 planted types; the gene side (8-d) and a precomputed "morphology" side
/// (12-d) both carry the type. Returns `(genes, morph, labels)`.
fn paired_cells() -> (Vec<f32>, Vec<f32>, Vec<u32>) {
    let (genes, labels) = planted_clusters(150, 8, 3, 1.0, 7);
    let (morph, labels_m) = planted_clusters(150, 12, 3, 1.0, 8);
    assert_eq!(labels, labels_m);
    (genes, morph, labels)
}

#[test]
fn alignment_metrics_use_held_out_cells_only() {
    let (genes, morph, labels) = paired_cells();
    let n = labels.len();
    let inputs = PairedInputs { n_cells: n, genes: &genes, d_gene: 8, morph: &morph, d_morph: 12 };
    let config = ContrastiveAlignerConfig::new(8).with_d_morph_input(12).with_space(SharedSpaceConfig::new().with_d_projection(16).with_d_hidden(32));
    let options = AlignOptions { epochs: 3, batch_size: 16, held_out_fraction: 0.3, ..AlignOptions::default() };
    let trained = train_alignment::<AB>(&config, &inputs, &options, &Default::default(), |_| {}).unwrap();

    // The split: 45 held out, 105 fitted, disjoint, covering every cell.
    assert_eq!(trained.held_out.len(), 45);
    assert_eq!(trained.fit_cells.len(), 105);
    let mut all: Vec<usize> = trained.held_out.iter().chain(&trained.fit_cells).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>());

    let types: Vec<Option<u32>> = labels.iter().map(|&l| Some(l)).collect();
    let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let eval = evaluate_held_out(&trained, &inputs, &types, &names, 3, 5, 1).unwrap();
    let mut held = trained.held_out.clone();
    held.sort_unstable();
    assert_eq!(eval.cells, held, "the evaluated cells are exactly the held-out ones");
    assert_eq!(eval.n_fit_cells, 105);
    assert_eq!(eval.analysis.clusters.len(), 45, "k-means runs on held-out cells only");
    assert_eq!(eval.analysis.umap.len(), 2 * 45, "UMAP lays out held-out cells only");
    let enriched: u64 = eval.analysis.enrichment.cluster_sizes.iter().sum();
    assert_eq!(enriched, 45, "enrichment counts held-out cells only");
    assert_eq!(eval.n_labelled, 45);
    // Planted types: the raw inputs (the peers) keep them far above chance (1/3).
    assert!((eval.chance_agreement - 1.0 / 3.0).abs() < 0.02, "{}", eval.chance_agreement);
    let names_of: Vec<&str> = eval.scores.iter().map(|s| s.representation.as_str()).collect();
    assert_eq!(names_of, ["morphology projection", "gene projection", "morphology input (peer)", "gene input (peer)"]);
    for s in &eval.scores[2..] {
        assert!(s.knn_label_agreement > 0.9, "{} agreement {}", s.representation, s.knn_label_agreement);
        assert!(s.kmeans_ari > 0.8, "{} ARI {}", s.representation, s.kmeans_ari);
    }
    assert!((0.0..=1.0).contains(&eval.top1) && eval.top5 >= eval.top1);

    // Nothing about the fit cells enters the evaluation: scrambling their labels (and
    // unlabelling some) leaves every number unchanged ...
    let mut scrambled = types.clone();
    for (j, &i) in trained.fit_cells.iter().enumerate() {
        scrambled[i] = if j % 4 == 0 { None } else { Some(((labels[i] + 1) % 3) as u32) };
    }
    let again = evaluate_held_out(&trained, &inputs, &scrambled, &names, 3, 5, 1).unwrap();
    assert_eq!(again.analysis.clusters, eval.analysis.clusters);
    assert_eq!(again.analysis.ari, eval.analysis.ari);
    for (a, b) in again.scores.iter().zip(&eval.scores) {
        assert_eq!((a.knn_label_agreement, a.kmeans_ari), (b.knn_label_agreement, b.kmeans_ari));
    }
    // ... while changing a held-out cell's label does change it.
    let mut one = types.clone();
    for &i in trained.held_out.iter().take(10) {
        one[i] = Some((labels[i] + 1) % 3);
    }
    let moved = evaluate_held_out(&trained, &inputs, &one, &names, 3, 5, 1).unwrap();
    assert!(moved.scores[3].knn_label_agreement < eval.scores[3].knn_label_agreement);

    // Too few held-out cells for the clusters asked for: a typed error that says what to do.
    let err = evaluate_held_out(&trained, &inputs, &types, &names, 60, 5, 1).unwrap_err();
    assert!(matches!(err, TrainError::Options(_)) && err.to_string().contains("held-out fraction"), "{err}");
}

/// Embedding rows for cells `c0…c9` written in a shuffled order with two extra cells; value of
/// row for cell `ci` = `[i, 10 i]`.
fn shuffled_rows() -> (Vec<String>, Vec<&'static str>, Vec<f32>) {
    let cells: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let order = ["c3", "x1", "c0", "c9", "c1", "c2", "c8", "c4", "c7", "x2", "c6", "c5"];
    let mut values = Vec::new();
    for id in order {
        let v: f32 = id[1..].parse::<f32>().unwrap() + if id.starts_with('x') { 100.0 } else { 0.0 };
        values.extend([v, 10.0 * v]);
    }
    (cells, order.to_vec(), values)
}

fn expected_in_table_order() -> Vec<f32> {
    (0..10).flat_map(|i| [i as f32, 10.0 * i as f32]).collect()
}

#[test]
fn embeddings_are_matched_to_cells_by_id_from_every_ids_source() {
    let dir = common::scratch("emb-ids");
    let (cells, order, values) = shuffled_rows();
    let npy = dir.write("e.npy", npy_f32_bytes(&values, order.len(), 2));

    // .npy unicode ids, text ids, CSV `cell_id` column.
    let ids_npy = dir.write("ids.npy", npy_unicode(&order));
    let ids_txt = dir.write("ids.txt", order.join("\n") + "\n");
    let csv: String = std::iter::once("barcode,cell_id".to_string())
        .chain(order.iter().enumerate().map(|(r, id)| format!("b{r},{id}")))
        .collect::<Vec<_>>()
        .join("\n");
    let ids_csv = dir.write("ids.csv", csv);
    for ids in [&ids_npy, &ids_txt, &ids_csv] {
        assert_eq!(read_row_ids(ids).unwrap(), order, "{}", ids.display());
        let e = read_embeddings_for_cells(&npy, None, Some(ids), &cells).unwrap();
        assert_eq!((e.rows, e.dim), (10, 2));
        assert_eq!(e.values, expected_in_table_order(), "{}", ids.display());
    }

    // safetensors: string ids in __metadata__["cell_ids"]; integer ids in a `cell_ids` tensor.
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let meta = std::collections::HashMap::from([("cell_ids".to_string(), serde_json::to_string(&order).unwrap())]);
    let st = safetensors::serialize(
        vec![("embedding", TensorView::new(Dtype::F32, vec![12, 2], &bytes).unwrap())],
        Some(meta),
    )
    .unwrap();
    let st = dir.write("meta.safetensors", st);
    let e = read_embeddings_for_cells(&st, None, None, &cells).unwrap();
    assert_eq!(e.values, expected_in_table_order());

    let int_ids: Vec<i64> = order.iter().map(|id| id[1..].parse::<i64>().unwrap() + if id.starts_with('x') { 100 } else { 0 }).collect();
    let id_bytes: Vec<u8> = int_ids.iter().flat_map(|v| v.to_le_bytes()).collect();
    let st2 = safetensors::serialize(
        vec![
            ("embedding", TensorView::new(Dtype::F32, vec![12, 2], &bytes).unwrap()),
            ("cell_ids", TensorView::new(Dtype::I64, vec![12], &id_bytes).unwrap()),
        ],
        None,
    )
    .unwrap();
    let st2 = dir.write("ints.safetensors", st2);
    let numeric: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let e = read_embeddings_for_cells(&st2, None, None, &numeric).unwrap();
    assert_eq!(e.values, expected_in_table_order(), "the `cell_ids` tensor is ids, not the embedding");

    // Without ids anywhere: positional, and the row count must match.
    let plain = dir.write("plain.npy", npy_f32_bytes(&expected_in_table_order(), 10, 2));
    assert_eq!(read_embeddings_for_cells(&plain, None, None, &cells).unwrap().values, expected_in_table_order());
    let err = read_embeddings_for_cells(&npy, None, None, &cells).unwrap_err().to_string();
    assert!(err.contains("e.npy") && err.contains("12 rows") && err.contains("ids file"), "{err}");
}

#[test]
fn unmatched_duplicated_or_miscounted_ids_are_typed_errors_naming_the_file() {
    let dir = common::scratch("emb-ids-bad");
    let (_, order, values) = shuffled_rows();
    let npy = dir.write("e.npy", npy_f32_bytes(&values, order.len(), 2));
    let ids = dir.write("ids.txt", order.join("\n"));

    // 7 cells of the table have no row: count, first five ids, both files.
    let cells: Vec<String> = (0..10).map(|i| format!("c{i}")).chain((0..7).map(|i| format!("new{i}"))).collect();
    let err = read_embeddings_for_cells(&npy, None, Some(&ids), &cells).unwrap_err();
    match &err {
        TrainError::UnmatchedEmbeddingIds { path, missing, n_cells, first, .. } => {
            assert!(path.ends_with("e.npy"));
            assert_eq!((*missing, *n_cells), (7, 17));
            assert_eq!(first, "\"new0\", \"new1\", \"new2\", \"new3\", \"new4\", …");
        }
        other => panic!("expected UnmatchedEmbeddingIds, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("e.npy") && msg.contains("ids.txt") && msg.contains("7 of 17 cells"), "{msg}");

    // A duplicated id names both rows; an ids file with another length names both counts.
    let mut dup = order.clone();
    dup[5] = "c3";
    let dup_ids = dir.write("dup.txt", dup.join("\n"));
    let cells10: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let msg = read_embeddings_for_cells(&npy, None, Some(&dup_ids), &cells10).unwrap_err().to_string();
    assert!(msg.contains("\"c3\"") && msg.contains("rows 0 and 5"), "{msg}");
    let short = dir.write("short.txt", order[..11].join("\n"));
    let msg = read_embeddings_for_cells(&npy, None, Some(&short), &cells10).unwrap_err().to_string();
    assert!(msg.contains("12 rows") && msg.contains("11 ids") && msg.contains("short.txt"), "{msg}");

    // A CSV without a `cell_id` column says which columns it has.
    let csv = dir.write("ids.csv", "a,b\n1,2\n");
    let msg = read_row_ids(&csv).unwrap_err().to_string();
    assert!(msg.contains("ids.csv") && msg.contains("cell_id") && msg.contains("a, b"), "{msg}");
    // A float .npy is not an ids file.
    let f = dir.write("floats.npy", npy_f32_bytes(&[1.0, 2.0], 2, 1));
    let msg = read_row_ids(&f).unwrap_err().to_string();
    assert!(msg.contains("floats.npy"), "{msg}");
    let _ = Path::new("");
}

/// `n` cells of 3 classes whose 16 × 16 px patch shows the class (0: a bright centre disc,
/// 1: a ring, 2: a vertical bar) under seeded noise, with a planted 8-gene expression that
/// carries the class too. Returns `(patches [n, 256], genes [n, 8], labels)`.
fn labelled_patches(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
    let (genes, labels) = planted_clusters(n, 8, 3, 1.0, seed);
    let mut rng = cellsymphony::util::rng::SplitMix64::new(seed ^ 0x9A7C);
    let mut patches = Vec::with_capacity(n * 256);
    for &l in &labels {
        let (dx, dy) = (rng.next_f32() - 0.5, rng.next_f32() - 0.5);
        for y in 0..16 {
            for x in 0..16 {
                let r = ((x as f32 - 7.5 - dx).powi(2) + (y as f32 - 7.5 - dy).powi(2)).sqrt();
                let signal = match l {
                    0 => (r < 3.5) as u8 as f32,
                    1 => ((4.0..6.5).contains(&r)) as u8 as f32,
                    _ => ((x as f32 - 7.5 - dx).abs() < 1.5) as u8 as f32,
                };
                patches.push(0.1 + 0.7 * signal + 0.2 * rng.next_f32());
            }
        }
    }
    (patches, genes, labels)
}

#[test]
fn image_only_model_learns_a_label_visible_in_the_image_and_beats_chance_on_held_out_cells() {
    use cellsymphony::model::{ImageOnlyConfig, MorphologyEncoderConfig};
    use cellsymphony::train::image_only::{
        image_only_logits, niche_abundance_correlation, pearson, train_image_only, ImageOnlyInputs, ImageOnlyOptions,
    };
    let n = 240;
    let (patches, genes, labels) = labelled_patches(n, 11);
    let data = ImageOnlyInputs { n_cells: n, patches: &patches, side: 16, genes: &genes, n_genes: 8, labels: &labels, n_classes: 3 };
    let vit = MorphologyEncoderConfig::new()
        .with_image_size(16)
        .with_vit_patch(4)
        .with_width(16)
        .with_n_heads(2)
        .with_d_ff(32)
        .with_feature_layer(1)
        .with_d_model(16)
        .with_dropout(0.0);
    let config = ImageOnlyConfig::new(vit, 3, 8).with_space(SharedSpaceConfig::new().with_d_projection(16).with_d_hidden(32));
    let (train, rest): (Vec<usize>, Vec<usize>) = (0..n).partition(|i| i % 2 == 0);
    let (val, test): (Vec<usize>, Vec<usize>) = rest.into_iter().partition(|i| i % 4 == 1);
    let options = ImageOnlyOptions { epochs: 6, batch_size: 24, learning_rate: 3e-3, ..ImageOnlyOptions::default() };
    let mut epochs = 0;
    let trained = train_image_only::<AB>(&config, &data, &train, &val, &options, &Default::default(), |e| {
        epochs += 1;
        assert!(e.ce.is_finite() && e.info_nce.is_finite() && (0.0..=2.0).contains(&e.distill), "{e:?}");
    })
    .unwrap();
    assert_eq!((epochs, trained.history.len()), (6, 6));
    assert!((1..=6).contains(&trained.best_epoch));
    let best_val = trained.history[trained.best_epoch - 1].val_macro_f1;
    assert!(trained.history.iter().all(|e| e.val_macro_f1 <= best_val), "the kept epoch is the best validation epoch");

    // Held-out cells (never trained on nor selected on), patches only: far above chance (1/3).
    let logits = image_only_logits(&trained.model, &data, &test, &Default::default());
    let pred = cellsymphony::train::argmax_rows(&logits, 3);
    let correct = test.iter().zip(&pred).filter(|(&i, &p)| labels[i] == p).count();
    let accuracy = correct as f64 / test.len() as f64;
    assert!(accuracy > 0.6, "held-out accuracy {accuracy} (chance 0.33)");

    // Inference reads patches only: garbling the genes changes no logit.
    let noise = vec![7.0f32; genes.len()];
    let garbled = ImageOnlyInputs { genes: &noise, ..data };
    assert_eq!(image_only_logits(&trained.model, &garbled, &test, &Default::default()), logits);

    // Niche abundance: exact predictions correlate perfectly; a typed error on bad options.
    let niche: Vec<Option<u32>> = (0..n).map(|i| Some((i / 20) as u32)).collect();
    let truth: Vec<u32> = test.iter().map(|&i| labels[i]).collect();
    let mixed: Vec<u32> = test.iter().map(|&i| if i < 120 { 0 } else { labels[i] }).collect();
    let exact = niche_abundance_correlation(&niche, &test, &truth, &truth, 3, 3);
    assert!(exact.per_type.iter().all(|r| r.is_none_or(|r| (r - 1.0).abs() < 1e-9)), "{exact:?}");
    let off = niche_abundance_correlation(&niche, &test, &mixed, &truth, 3, 3);
    assert!(off.mean.unwrap() < exact.mean.unwrap_or(1.0));
    assert_eq!(pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.5]).map(|r| r > 0.99), Some(true));
    assert_eq!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None, "a constant series has no correlation");
    let bad = ImageOnlyOptions { batch_size: 1, ..options };
    let err = train_image_only::<AB>(&config, &data, &train, &val, &bad, &Default::default(), |_| {}).unwrap_err();
    assert!(matches!(err, TrainError::Options(_)) && err.to_string().contains("batch size"), "{err}");
}
