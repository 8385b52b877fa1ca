//! Transcript reader on the real BIDCell Xenium breast crop (`scripts/fetch_data.sh`).
#![cfg(feature = "native-io")]

mod common;

use std::time::Instant;

use common::{crop_cells, crop_files, crop_nuclei, crop_transcripts};
use cellsymphony::data::{
    read_tiff_gray16, read_transcripts, read_transcripts_csv, DataError,
    TranscriptOptions, XENIUM_CROP_FRAME,
};

#[test]
fn counts_match_the_file() {
    let t = crop_transcripts();
    // 186,146 rows, all with qv >= 20 and no control feature; 2,773 have cell_id -1.
    assert_eq!(t.n_transcripts(), 186_146);
    assert_eq!(t.n_assigned(), 183_373);
    let table = crop_cells();
    // 1,136 distinct cell_id values in the file, one of which is -1 (unassigned).
    assert_eq!(table.n_cells(), 1_135);
    assert_eq!(table.n_genes(), 313);
    assert_eq!(table.counts.len(), 1_135 * 313);
    assert_eq!(table.counts.iter().sum::<f32>(), 183_373.0);
    assert!(table.totals().iter().all(|&n| n >= 1.0));
}

#[test]
fn unassigned_dropped_and_order_deterministic() {
    let table = crop_cells();
    assert!(!table.cell_ids.iter().any(|id| id == "-1"));
    let ids: Vec<i64> = table.cell_ids.iter().map(|s| s.parse().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "cell ids sorted numerically"
    );
    assert_eq!((ids[0], ids[ids.len() - 1]), (43_516, 47_444));
    assert!(table.genes.windows(2).all(|w| w[0] < w[1]), "genes sorted");
    for gene in ["EPCAM", "PTPRC", "PECAM1", "VWF", "KRT8", "LUM"] {
        assert!(table.gene_index(gene).is_some(), "{gene} in panel");
    }
    // Re-reading through the one-call API gives the same table.
    let again = read_transcripts_csv(&crop_files().transcripts, &TranscriptOptions::default()).unwrap();
    assert_eq!(&again, table);
}

#[test]
fn centroids_fall_inside_the_image() {
    let table = crop_cells();
    let image = read_tiff_gray16(&crop_files().morphology).unwrap();
    // The transcript crop starts at 1062.0 / 212.0 µm, half a micron before the image edge
    // (1062.5 / 212.5 µm): a few tiny edge cells have centroids in that strip, nothing else
    // falls outside.
    let outside = |centroids: &[[f32; 2]]| -> usize {
        let off: Vec<[f32; 2]> = centroids
            .iter()
            .copied()
            .filter(|&c| !XENIUM_CROP_FRAME.contains(&image, c))
            .collect();
        for [x, y] in &off {
            assert!(
                *x >= 1062.0 && *y >= 212.0 && (*x < 1062.5 || *y < 212.5),
                "{x}, {y}"
            );
        }
        off.len()
    };
    assert_eq!(outside(&table.centroids_um), 4);
    let nuclei = crop_nuclei();
    // 49 cells have fewer than 3 nucleus-overlapping transcripts.
    assert_eq!(nuclei.len(), 1_086);
    assert!(outside(&nuclei) <= 4);
    // A nucleus centroid lies close to its cell centroid (cells are ~10-20 µm across).
    for (c, n) in table.centroids_um.iter().zip(&table.nucleus_centroids_um) {
        if let Some(n) = n {
            assert!(((c[0] - n[0]).powi(2) + (c[1] - n[1]).powi(2)).sqrt() < 15.0);
        }
    }
}

#[test]
fn quality_filter_applies() {
    let strict =
        read_transcripts(&crop_files().transcripts, &TranscriptOptions { min_qv: 30.0 }).unwrap();
    assert_eq!(strict.n_transcripts(), 149_758);
    assert_eq!(strict.n_assigned(), 147_535);
    let none = read_transcripts_csv(&crop_files().transcripts, &TranscriptOptions { min_qv: 1000.0 });
    assert!(matches!(none, Err(DataError::Empty { .. })), "{none:?}");
}

#[test]
fn reading_is_fast() {
    let start = Instant::now();
    let table = read_transcripts_csv(&crop_files().transcripts, &TranscriptOptions::default()).unwrap();
    let elapsed = start.elapsed();
    println!(
        "read 14 MB transcripts into {} cells in {elapsed:?}",
        table.n_cells()
    );
    // About 0.1 s in release on one core; generous bound for shared or debug builds.
    assert!(elapsed.as_secs_f32() < 5.0, "{elapsed:?}");
}
