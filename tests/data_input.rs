//! Validation of in-memory cell inputs (the browser API's typed arrays) on the real BIDCell
//! Xenium breast crop (`scripts/fetch_data.sh`): dense and CSR forms of the crop agree, and
//! every kind of bad input is an error naming the array, element and value.
#![cfg(feature = "native-io")]

mod common;


use common::crop_cells;
use cellsymphony::data::{
    CellInput, CountsInput, DataError, PatchInput,
};
use cellsymphony::util::rng::SplitMix64;

/// The crop as CSR, each row's entries in a seeded random order (CSR need not be sorted).
struct Csr {
    indptr: Vec<u32>,
    indices: Vec<u32>,
    data: Vec<f32>,
}

fn crop_csr() -> Csr {
    let t = crop_cells();
    let mut rng = SplitMix64::new(7);
    let mut csr = Csr {
        indptr: vec![0],
        indices: Vec::new(),
        data: Vec::new(),
    };
    for c in 0..t.n_cells() {
        let mut row: Vec<(u32, f32)> = t
            .row(c)
            .iter()
            .enumerate()
            .filter(|(_, &v)| v != 0.0)
            .map(|(j, &v)| (j as u32, v))
            .collect();
        rng.shuffle(&mut row);
        csr.indices.extend(row.iter().map(|e| e.0));
        csr.data.extend(row.iter().map(|e| e.1));
        csr.indptr.push(csr.data.len() as u32);
    }
    csr
}

fn dense<'a>(values: &'a [f32], genes: &'a [String]) -> CellInput<'a> {
    CellInput {
        counts: CountsInput::Dense {
            values,
            n_cells: values.len() / genes.len().max(1),
            n_genes: genes.len(),
        },
        genes,
        centroids_um: None,
        patches: None,
        proteins: None,
    }
}

fn csr<'a>(c: &'a Csr, n_cells: usize, genes: &'a [String]) -> CellInput<'a> {
    CellInput {
        counts: CountsInput::Csr {
            indptr: &c.indptr,
            indices: &c.indices,
            data: &c.data,
            n_cells,
            n_genes: genes.len(),
        },
        genes,
        centroids_um: None,
        patches: None,
        proteins: None,
    }
}

/// The error message of an input that must fail validation.
fn message(input: CellInput<'_>) -> String {
    match input.validate() {
        Ok(_) => panic!("bad input was accepted: {input:?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_contains(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "{msg:?} does not contain {p:?}");
    }
}

#[test]
fn dense_and_csr_forms_of_the_crop_agree() {
    let t = crop_cells();
    let c = crop_csr();
    let nnz = c.data.len();
    println!(
        "crop: {} cells × {} genes, {nnz} non-zero counts ({:.1}%)",
        t.n_cells(),
        t.n_genes(),
        100.0 * nnz as f64 / t.counts.len() as f64
    );
    assert!(nnz > 10_000 && nnz < t.counts.len() / 2, "{nnz}");
    let centroids: Vec<f32> = t.centroids_um.iter().flatten().copied().collect();
    let mut input = dense(&t.counts, &t.genes);
    input.centroids_um = Some(&centroids);
    let d = input.validate().unwrap();
    assert_eq!(d.n_cells(), 1135);
    assert_eq!(d.to_dense(), t.counts);
    assert_eq!(d.centroids_um().unwrap(), t.centroids_um);
    let s = csr(&c, t.n_cells(), &t.genes).validate().unwrap();
    assert_eq!(s.to_dense(), t.counts);

    // A panel in another order, as a subset of the input genes.
    let panel: Vec<String> = t.genes.iter().rev().step_by(3).cloned().collect();
    let want: Vec<f32> = (0..t.n_cells())
        .flat_map(|cell| {
            panel
                .iter()
                .map(move |g| t.row(cell)[t.gene_index(g).unwrap()])
        })
        .collect();
    assert_eq!(d.align_to_panel(&panel).unwrap(), want);
    assert_eq!(s.align_to_panel(&panel).unwrap(), want);
}

#[test]
fn bad_dense_counts_name_the_element() {
    let t = crop_cells();
    let g = t.n_genes();
    for (value, shown) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf"), (-1.0, "-1")] {
        let mut counts = t.counts.clone();
        counts[3 * g + 17] = value;
        let msg = message(dense(&counts, &t.genes));
        let field = format!(
            "counts[{}] (cell 3, gene {:?}) is {shown}",
            3 * g + 17,
            t.genes[17]
        );
        assert_contains(&msg, &[&field, "finite count >= 0"]);
    }
    let msg = message(CellInput {
        counts: CountsInput::Dense {
            values: &t.counts[1..],
            n_cells: t.n_cells(),
            n_genes: g,
        },
        ..dense(&t.counts, &t.genes)
    });
    assert_contains(
        &msg,
        &[
            "counts has length 355254",
            "n_cells × n_genes = 1135 × 313 = 355255",
        ],
    );
    // Gene names: count, duplicates, empty names, none at all.
    let short = &t.genes[..g - 1];
    let msg = message(CellInput {
        genes: short,
        ..dense(&t.counts, &t.genes)
    });
    assert_contains(&msg, &["genes has length 312", "n_genes = 313"]);
    let mut dup = t.genes.clone();
    dup[200] = dup[5].clone();
    let e = dense(&t.counts, &dup).validate().unwrap_err();
    assert!(
        matches!(
            e,
            DataError::DuplicateGene {
                first: 5,
                second: 200,
                ..
            }
        ),
        "{e:?}"
    );
    assert_contains(
        &e.to_string(),
        &[&format!("{:?}", t.genes[5]), "columns 5 and 200"],
    );
    let mut blank = t.genes.clone();
    blank[9] = " ".into();
    assert_contains(&message(dense(&t.counts, &blank)), &["genes[9] is \" \""]);
    let msg = message(dense(&[], &[]));
    assert_contains(&msg, &["`n_genes` = 0"]);
    let msg = message(CellInput {
        counts: CountsInput::Dense {
            values: &[],
            n_cells: usize::MAX / 2,
            n_genes: g,
        },
        ..dense(&t.counts, &t.genes)
    });
    assert_contains(&msg, &["`n_cells`", "overflows"]);
}

#[test]
fn bad_csr_structure_names_the_array() {
    let t = crop_cells();
    let n = t.n_cells();
    let good = crop_csr();
    let edit = |f: &dyn Fn(&mut Csr)| {
        let mut c = Csr {
            indptr: good.indptr.clone(),
            indices: good.indices.clone(),
            data: good.data.clone(),
        };
        f(&mut c);
        c
    };
    // indptr of the wrong length.
    let c = edit(&|c| {
        c.indptr.pop();
    });
    assert_contains(
        &message(csr(&c, n, &t.genes)),
        &["indptr has length 1135", "expected n_cells + 1 = 1136"],
    );
    let c = edit(&|c| c.indptr[0] = 1);
    assert_contains(
        &message(csr(&c, n, &t.genes)),
        &["indptr[0] is 1", "start at 0"],
    );
    let c = edit(&|c| c.indptr[10] = c.indptr[9] - 1);
    let msg = message(csr(&c, n, &t.genes));
    assert_contains(&msg, &["indptr[10] (end of cell 9) is", "non-decreasing"]);
    let c = edit(&|c| {
        c.data.pop();
        c.indices.pop();
    });
    assert_contains(
        &message(csr(&c, n, &t.genes)),
        &["indptr[1135] (the last offset)", "length of data"],
    );
    let c = edit(&|c| {
        c.indices.pop();
    });
    assert_contains(&message(csr(&c, n, &t.genes)), &["indices has length"]);
    // Columns: out of range, repeated within a cell.
    let start = good.indptr[4] as usize;
    let c = edit(&|c| c.indices[start + 1] = 313);
    let msg = message(csr(&c, n, &t.genes));
    assert_contains(
        &msg,
        &[
            &format!("indices[{}] (cell 4) is 313", start + 1),
            "below n_genes = 313",
        ],
    );
    let c = edit(&|c| c.indices[start + 1] = c.indices[start]);
    let msg = message(csr(&c, n, &t.genes));
    let j = good.indices[start] as usize;
    assert_contains(
        &msg,
        &[
            &format!(
                "indices[{}] (cell 4) is {j} (gene {:?}",
                start + 1,
                t.genes[j]
            ),
            &format!("already stored at indices[{start}]"),
        ],
    );
    // Values.
    for (value, shown) in [(f32::NAN, "NaN"), (f32::NEG_INFINITY, "-inf"), (-2.0, "-2")] {
        let c = edit(&|c| c.data[start + 2] = value);
        let j = good.indices[start + 2] as usize;
        let msg = message(csr(&c, n, &t.genes));
        let field = format!(
            "data[{}] (cell 4, gene {:?}) is {shown}",
            start + 2,
            t.genes[j]
        );
        assert_contains(&msg, &[&field]);
    }
    // Zero cells is a valid (empty) input.
    let empty = Csr {
        indptr: vec![0],
        indices: vec![],
        data: vec![],
    };
    let v = csr(&empty, 0, &t.genes).validate().unwrap();
    assert!(v.to_dense().is_empty());
}

#[test]
fn bad_centroids_and_patches_name_the_element() {
    let t = crop_cells();
    let centroids: Vec<f32> = t.centroids_um.iter().flatten().copied().collect();
    let with = |c: &'static [f32]| CellInput {
        centroids_um: Some(c),
        ..dense(&t.counts, &t.genes)
    };
    let short: &'static [f32] = centroids[..2268].to_vec().leak();
    assert_contains(
        &message(with(short)),
        &["centroids has length 2268", "2 × n_cells = 2270"],
    );
    let mut nan = centroids.clone();
    nan[2 * 7 + 1] = f32::NAN;
    assert_contains(
        &message(with(nan.leak())),
        &["centroids[15] (cell 7, y) is NaN"],
    );

    let n = t.n_cells();
    let pixels = vec![0.5f32; n * 4 * 4];
    let with_patches = |pixels: &'static [f32], size: usize| CellInput {
        patches: Some(PatchInput { pixels, size }),
        ..dense(&t.counts, &t.genes)
    };
    assert!(with_patches(pixels.clone().leak(), 4).validate().is_ok());
    assert_contains(
        &message(with_patches(pixels.clone().leak(), 0)),
        &["`patch_size` = 0"],
    );
    assert_contains(
        &message(with_patches(pixels.clone().leak(), 5)),
        &["patches has length 18160", "1135 × 5²"],
    );
    let mut bright = pixels.clone();
    bright[16 * 2 + 4 * 3 + 1] = 1.5;
    assert_contains(
        &message(with_patches(bright.leak(), 4)),
        &["patches[45] (cell 2, row 3, col 1) is 1.5", "[0, 1]"],
    );
}

#[test]
fn panel_mismatch_names_every_missing_gene() {
    let t = crop_cells();
    let v = dense(&t.counts, &t.genes).validate().unwrap();
    let mut panel = t.genes.clone();
    let extra: Vec<String> = (0..12).map(|i| format!("NOT_MEASURED_{i}")).collect();
    panel.splice(100..100, extra.iter().cloned());
    let e = v.align_to_panel(&panel).unwrap_err();
    match &e {
        DataError::MissingGenes {
            n_missing,
            n_panel,
            missing,
        } => {
            assert_eq!((*n_missing, *n_panel), (12, 325));
            assert_eq!(missing, &extra);
        }
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert_contains(
        &msg,
        &[
            "12 genes of the model's panel (325 genes) are missing from the input: NOT_MEASURED_0, NOT_MEASURED_1",
            "NOT_MEASURED_11",
            "zeros if they were not measured",
        ],
    );
    // Long lists are abbreviated in the message but complete in the error.
    let panel: Vec<String> = (0..40).map(|i| format!("G{i}")).collect();
    let e = v.align_to_panel(&panel).unwrap_err();
    assert_contains(&e.to_string(), &["40 genes", "G19, ... and 20 more"]);
    // Case matters: gene symbols are matched exactly.
    let lower: Vec<String> = vec![t.genes[0].to_lowercase()];
    assert!(v.align_to_panel(&lower).is_err());
}
