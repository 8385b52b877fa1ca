//! Reference reader and SingleR labels on the real BIDCell Xenium breast crop, and the
//! labelling's input errors.
#![cfg(feature = "native-io")]

mod common;

use std::sync::OnceLock;

use common::crop_files;
use cellsymphony::analysis::{
    annotate_singler, spearman, AnalysisError, Annotation, SingleROptions,
};
use cellsymphony::data::{
    log_normalise, read_reference_csv, read_transcripts_csv, CellTable, Reference,
    TranscriptOptions,
};

struct Loaded {
    table: CellTable,
    log: Vec<f32>,
    reference: Reference,
    annotation: Annotation,
}

fn loaded() -> &'static Loaded {
    static L: OnceLock<Loaded> = OnceLock::new();
    L.get_or_init(|| {
        let d = crop_files();
        let table = read_transcripts_csv(&d.transcripts, &TranscriptOptions::default()).unwrap();
        let reference = read_reference_csv(&d.reference).unwrap();
        let log = table.log_normalised(100.0);
        let annotation =
            annotate_singler(&table.genes, &log, &reference, &SingleROptions::default()).unwrap();
        Loaded {
            table,
            log,
            reference,
            annotation,
        }
    })
}

const IMMUNE: [&str; 9] = [
    "B",
    "CD4Tconv/Treg",
    "CD8T/CD8Tex",
    "DC",
    "Mast",
    "Mono/Macro",
    "NK",
    "Neutrophils",
    "Plasma",
];

#[test]
fn reference_is_63_profiles_of_313_genes_and_15_labels() {
    let r = &loaded().reference;
    assert_eq!((r.n_profiles(), r.n_genes()), (63, 313));
    assert_eq!(r.profiles.len(), 63 * 313);
    assert!(r.profiles.iter().all(|&v| v >= 0.0 && v.is_finite()));
    let names = r.label_names();
    assert_eq!(names.len(), 15);
    for expected in [
        "Malignant",
        "Epithelial",
        "Fibroblasts",
        "Endothelial",
        "Mono/Macro",
        "Plasma",
        "SMC",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected}");
    }
    assert_eq!(r.labels.iter().filter(|l| *l == "Malignant").count(), 6);
    // Same gene panel as the transcripts.
    let mut genes = r.genes.clone();
    genes.sort();
    assert_eq!(genes, loaded().table.genes);
}

#[test]
fn spearman_matches_hand_computed_ties() {
    // x = [2, 4, 4, 1, 4] -> ranks [2, 4, 4, 1, 4]; y = [1, 2, 3, 4, 5] -> ranks [1..5].
    // Centred: x [-1, 1, 1, -2, 1], y [-2, -1, 0, 1, 2];
    // sum xy = 2 - 1 + 0 - 2 + 2 = 1, sum x^2 = 8, sum y^2 = 10, r = 1 / sqrt(80).
    let r = spearman(&[2.0, 4.0, 4.0, 1.0, 4.0], &[1.0, 2.0, 3.0, 4.0, 5.0]);
    assert!((r - 1.0 / 80f32.sqrt()).abs() < 1e-6, "{r}");
    // Both sides tied: ranks x [1.5, 1.5, 3, 4], y [1, 2.5, 2.5, 4]; centred
    // x [-1, -1, 0.5, 1.5], y [-1.5, 0, 0, 1.5]; r = 3.75 / sqrt(4.5 * 4.5).
    let r = spearman(&[0.0, 0.0, 1.0, 7.0], &[3.0, 5.0, 5.0, 9.0]);
    assert!((r - 3.75 / 4.5).abs() < 1e-6, "{r}");
}

#[test]
fn singler_labels_are_sane() {
    let Loaded {
        table,
        log,
        annotation: ann,
        ..
    } = loaded();
    let summary = ann.summary();
    println!("{summary}");
    assert_eq!(ann.n_cells(), 1_135);
    assert_eq!((ann.n_common_genes, ann.label_names.len()), (313, 15));
    assert_eq!(ann.scores.len(), 1_135 * 15);

    let confident = |name: &str| summary.per_label.iter().find(|e| e.0 == name).unwrap().1;
    // A tumour crop: epithelial/malignant cells dominate, with stroma, vessels and immune cells.
    assert!(confident("Epithelial") + confident("Malignant") > 300);
    for name in ["Fibroblasts", "Endothelial", "Mono/Macro", "Plasma"] {
        assert!(confident(name) >= 20, "{name}: {}", confident(name));
    }
    assert!(IMMUNE.iter().map(|n| confident(n)).sum::<usize>() > 150);
    // Ambiguity stays a minority.
    assert!(
        summary.ambiguous < ann.n_cells() / 2,
        "{}",
        summary.ambiguous
    );

    // Marker expression: mean log-expression in the label's confident cells over the mean in
    // all other confident cells.
    let g = table.n_genes();
    let ratio = |labels: &[&str], gene: &str| {
        let j = table.gene_index(gene).unwrap();
        let (mut inside, mut n_in, mut outside, mut n_out) = (0.0, 0, 0.0, 0);
        for (i, l) in ann.labels.iter().enumerate() {
            let Some(l) = l else { continue };
            if labels.contains(&l.as_str()) {
                inside += log[i * g + j];
                n_in += 1;
            } else {
                outside += log[i * g + j];
                n_out += 1;
            }
        }
        (inside / n_in as f32) / (outside / n_out as f32)
    };
    let checks: [(&[&str], &str, f32); 10] = [
        (&["Epithelial", "Malignant"], "EPCAM", 4.0),
        (&["Epithelial", "Malignant"], "KRT8", 2.0),
        (&IMMUNE, "PTPRC", 4.0),
        (&["Endothelial"], "PECAM1", 4.0),
        (&["Endothelial"], "VWF", 4.0),
        (&["Fibroblasts"], "LUM", 3.0),
        (&["CD4Tconv/Treg", "CD8T/CD8Tex"], "CD3E", 4.0),
        (&["Mono/Macro"], "CD68", 3.0),
        (&["Plasma"], "MZB1", 4.0),
        (&["B"], "MS4A1", 4.0),
    ];
    for (labels, gene, min_ratio) in checks {
        let r = ratio(labels, gene);
        println!("{gene} in {labels:?}: {r:.1}x");
        assert!(r > min_ratio, "{gene} in {labels:?}: {r}");
    }
}

#[test]
fn pruning_and_margin_are_both_reported() {
    let ann = &loaded().annotation;
    let n = ann.n_cells();
    assert_eq!(
        (
            ann.delta.len(),
            ann.delta_median.len(),
            ann.pruned.len(),
            ann.low_margin.len()
        ),
        (n, n, n, n)
    );
    for i in 0..n {
        assert!(ann.delta[i] >= 0.0);
        assert_eq!(
            ann.low_margin[i],
            ann.delta[i] < SingleROptions::default().min_margin
        );
        assert_eq!(ann.labels[i].is_none(), ann.low_margin[i] || ann.pruned[i]);
        assert_ne!(ann.best[i], ann.next_best[i]);
        // delta_median is the best initial score minus the median initial score.
        let row = &ann.scores[i * 15..(i + 1) * 15];
        let b = ann
            .label_names
            .iter()
            .position(|l| *l == ann.best[i])
            .unwrap();
        let mut sorted = row.to_vec();
        sorted.sort_by(f32::total_cmp);
        assert!((ann.delta_median[i] - (row[b] - sorted[7])).abs() < 1e-6);
    }
    let s = ann.summary();
    assert!(s.pruned > 0 && s.pruned < n / 10, "{}", s.pruned);
    assert!(s.low_margin > 0);
}

/// The default `min_margin` separates reproducible labels from coin flips: re-annotating after
/// keeping each transcript with probability 1/2 changes far fewer confident labels.
#[test]
fn confident_labels_survive_thinning() {
    let Loaded {
        table,
        annotation: ann,
        reference,
        ..
    } = loaded();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut coin = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state & 1 == 1
    };
    let thinned: Vec<f32> = table
        .counts
        .iter()
        .map(|&c| (0..c as u32).filter(|_| coin()).count() as f32)
        .collect();
    let log = log_normalise(&thinned, table.n_genes(), 100.0);
    let again =
        annotate_singler(&table.genes, &log, reference, &SingleROptions::default()).unwrap();
    let stable = |sel: &dyn Fn(usize) -> bool| {
        let idx: Vec<usize> = (0..ann.n_cells()).filter(|&i| sel(i)).collect();
        idx.iter()
            .filter(|&&i| again.best[i] == ann.best[i])
            .count() as f32
            / idx.len() as f32
    };
    let confident = stable(&|i| !ann.low_margin[i]);
    let low = stable(&|i| ann.low_margin[i]);
    println!("label kept after thinning: {confident:.2} above min_margin, {low:.2} below");
    assert!(confident > 0.8, "{confident}");
    assert!(low < confident - 0.15, "{low} vs {confident}");
}

#[test]
fn fine_tuning_can_be_disabled() {
    let Loaded {
        table,
        log,
        reference,
        annotation,
    } = loaded();
    let opts = SingleROptions {
        fine_tune: false,
        ..Default::default()
    };
    let plain = annotate_singler(&table.genes, log, reference, &opts).unwrap();
    // Initial scores do not depend on fine-tuning; most best labels agree.
    assert_eq!(plain.scores, annotation.scores);
    let agree = (0..plain.n_cells())
        .filter(|&i| plain.best[i] == annotation.best[i])
        .count();
    assert!(agree > plain.n_cells() * 8 / 10, "{agree}");
}

#[test]
fn singler_input_errors() {
    let reference = Reference {
        genes: (0..5).map(|i| format!("G{i}")).collect(),
        profiles: vec![1.0, 0.0, 0.0, 2.0, 1.0, 0.0, 1.0, 2.0, 0.0, 0.0],
        labels: vec!["X".into(), "Y".into()],
    };
    let genes = vec!["G0".to_string(), "OTHER".into()];
    let err =
        annotate_singler(&genes, &[1.0, 2.0], &reference, &SingleROptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            AnalysisError::TooFewCommonGenes {
                n_common: 1,
                required: 100,
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("G1, G2, G3, G4"), "{msg}");

    let genes: Vec<String> = reference.genes.clone();
    let opts = SingleROptions {
        min_common_genes: 5,
        ..Default::default()
    };
    let err = annotate_singler(&genes, &[0.0; 7], &reference, &opts).unwrap_err();
    assert!(matches!(err, AnalysisError::Shape { .. }), "{err}");
    let one_label = Reference {
        labels: vec!["X".into(), "X".into()],
        ..reference.clone()
    };
    assert!(matches!(
        annotate_singler(&genes, &[0.0; 5], &one_label, &opts),
        Err(AnalysisError::InvalidParameter { .. })
    ));
    let bad_q = SingleROptions {
        quantile: 1.5,
        ..opts
    };
    assert!(matches!(
        annotate_singler(&genes, &[0.0; 5], &reference, &bad_q),
        Err(AnalysisError::InvalidParameter { .. })
    ));
}
