//! SPATIA's whole hierarchy in the burn-free CPU engine (`engine::SpatiaHierarchyModel`)
//! against burn's `SpatiaModel::forward`: on a seeded random model and region (every level,
//! an empty niche, a half-empty region), on tissue regions of the crop, and through the CLI
//! (`spatia export` → `spatia classify --engine cpu` against `spatia embed` on the whole crop).
//! fp32: every output within `1e-4 · max(1, max |burn|)`; int8: within `5e-2 · max(1, max
//! |burn|)` and classes following fp32 (flips only on near ties,
//! `common::quant::assert_int8_follows_fp32`).

mod common;

use std::path::Path;
use std::process::Command;

use common::spatia::{random_model, relative_error, values, Cpu, RandomRegion};

use cellsymphony::engine::spec::{SpatiaLevels, SpatiaSpec};
use cellsymphony::engine::{NicheCentroids, SpatiaCellModel, SpatiaHierarchyModel};
use cellsymphony::model::spatia::SpatiaModel;

const F32_TOLERANCE: f32 = 1e-4;
const INT8_TOLERANCE: f32 = 5e-2;

fn classes(c: usize) -> Vec<String> {
    (0..c).map(|i| format!("type {i}")).collect()
}

/// Engine (fp32 and int8) vs burn on one region: returns the worst fp32 and int8 relative
/// errors over every output.
fn compare(model: &SpatiaModel<Cpu>, engine: &SpatiaHierarchyModel, region: &RandomRegion, what: &str) -> (f32, f32) {
    let spec = &engine.meta.spec;
    let device = Default::default();
    let want = model.forward(&region.burn::<Cpu>(spec, &device));
    let burn: Vec<(&str, Option<Vec<f32>>)> = vec![
        ("z_cell", Some(values(want.z_cell))),
        ("z", Some(values(want.z))),
        ("logits", Some(values(want.logits))),
        ("z_niche", want.z_niche.map(values)),
        ("z_tissue", want.z_tissue.map(values)),
        ("composition", want.composition.map(values)),
    ];
    let mut worst = (0f32, 0f32);
    let int8 = SpatiaHierarchyModel::from_safetensors_bytes(&engine.quantize_int8().to_safetensors_bytes().unwrap()).unwrap();
    assert!(int8.is_int8());
    let mut logits = (vec![], vec![], vec![]);
    for (m, is_int8) in [(engine, false), (&int8, true)] {
        let out = m.prepare().unwrap().forward_region(&region.input()).unwrap();
        let got = [Some(out.z_cell), Some(out.z), Some(out.logits.clone()), out.z_niche, out.z_tissue, out.composition];
        for ((name, want), got) in burn.iter().zip(got) {
            assert_eq!(want.is_some(), got.is_some(), "{what}: {name} present in burn iff in the engine");
            let (Some(want), Some(got)) = (want, got) else { continue };
            let e = relative_error(&got, want);
            eprintln!("{what} {}: {name} relative error {e:.2e}", if is_int8 { "int8" } else { "fp32" });
            if is_int8 {
                assert!(e <= INT8_TOLERANCE, "{what} int8 {name}: {e}");
                worst.1 = worst.1.max(e);
            } else {
                assert!(e <= F32_TOLERANCE, "{what} fp32 {name}: {e}");
                worst.0 = worst.0.max(e);
            }
        }
        if is_int8 {
            logits.2 = out.logits;
        } else {
            logits.1 = out.logits;
        }
    }
    logits.0 = burn[2].1.clone().unwrap();
    let c = spec.n_classes;
    common::quant::assert_int8_follows_fp32(&format!("{what} int8 vs burn"), &logits.0, &logits.2, c, 1.0, 0.8);
    common::quant::assert_int8_follows_fp32(&format!("{what} fp32 vs burn"), &logits.0, &logits.1, c, 1e-3, 0.99);
    worst
}

/// Every level on a seeded random model and a region with 8 of its 16 slots filled (one niche
/// may hold no cell): fp32 ≤ 1e-4, int8 ≤ 5e-2 relative; the file round-trips; a version-1
/// cell-level file still loads (cell level) or is refused with a reason (niche/tissue); bad
/// inputs and corrupt files are errors.
#[test]
fn hierarchy_matches_burn_on_a_random_region() {
    let _burn_rng = common::burn_rng_lock();
    let (g, c) = (23, 5);
    for (i, levels) in SpatiaLevels::ALL.into_iter().enumerate() {
        let spec = SpatiaSpec::small(g, c, levels);
        let model = random_model(&spec, 11 + i as u64);
        let centroids = levels.has_niche().then(|| NicheCentroids { k: 3, dim: spec.d_model, centroids: vec![0.25; 3 * spec.d_model] });
        let engine = model.to_engine(&spec, classes(c), centroids).unwrap();
        let bytes = engine.to_safetensors_bytes().unwrap();
        let read = SpatiaHierarchyModel::from_safetensors_bytes(&bytes).unwrap();
        assert_eq!(read, engine, "safetensors round trip");
        let region = RandomRegion::new(&spec, 37, &[0, 1, 2, 5, 6, 9, 10, 15], 0x5A + i as u64);
        let (e32, e8) = compare(&model, &read, &region, levels.name());
        eprintln!("SPATIA --levels {}: worst relative error fp32 {e32:.2e}, int8 {e8:.2e}", levels.name());

        // Version-1 cell-level files.
        let v1 = model.cell_level_to_engine(&spec, classes(c)).unwrap().to_safetensors_bytes().unwrap();
        match levels {
            SpatiaLevels::Cell => {
                let m = SpatiaHierarchyModel::from_safetensors_bytes(&v1).unwrap();
                assert!(m.context.is_none());
                let out = m.prepare().unwrap().forward_region(&region.input()).unwrap();
                let cell = SpatiaCellModel::from_safetensors_bytes(&v1).unwrap().forward(&region.genes, &region.patches, region.n_cells).unwrap();
                assert_eq!(Some(out.logits), cell.logits);
            }
            _ => {
                let e = SpatiaHierarchyModel::from_safetensors_bytes(&v1).unwrap_err().to_string();
                assert!(e.contains("re-export"), "{e}");
            }
        }

        // Bad inputs are errors, not panics.
        let cpu = read.prepare().unwrap();
        let mut x = region.input();
        x.genes = &region.genes[1..];
        assert!(cpu.forward_region(&x).is_err());
        if levels.has_niche() {
            let mut x = region.input();
            x.niche_images = &region.niche_images[1..];
            assert!(cpu.forward_region(&x).is_err());
            let bad_niche: Vec<usize> = region.cell_niche.iter().map(|_| 8).collect();
            let mut x = region.input();
            x.cell_niche = &bad_niche;
            assert!(cpu.forward_region(&x).is_err(), "niche index out of range");
            let dup = [0, 0, 2, 5, 6, 9, 10, 15];
            let mut x = region.input();
            x.niche_slot = &dup;
            assert!(cpu.forward_region(&x).is_err(), "repeated slot");
        }
        let mut corrupt = bytes.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x55;
        assert!(SpatiaHierarchyModel::from_safetensors_bytes(&corrupt).is_err(), "checksum");
        assert!(SpatiaHierarchyModel::from_safetensors_bytes(&bytes[..bytes.len() / 2]).is_err());
    }
}

/// A region whose niches fill every slot and one with a single niche (the tissue mask's
/// extremes) on the tissue level.
#[test]
fn tissue_mask_extremes_match_burn() {
    let _burn_rng = common::burn_rng_lock();
    let spec = SpatiaSpec::small(17, 4, SpatiaLevels::Tissue);
    let model = random_model(&spec, 99);
    let engine = model.to_engine(&spec, classes(4), None).unwrap();
    let all: Vec<usize> = (0..16).collect();
    for (slots, what) in [(&all[..], "all 16 slots"), (&[7][..], "one slot")] {
        let region = RandomRegion::new(&spec, 29, slots, 3);
        compare(&model, &engine, &region, what);
    }
}

/// Tissue regions of the crop on a seeded random tissue-level model: the engine's
/// `embed_engine` against burn's `embed` (every cell and niche of the first 3 regions).
#[test]
fn hierarchy_matches_burn_on_crop_regions() {
    use cellsymphony::train::dataset::{prepare_crop, LabelOptions};
    use cellsymphony::train::spatia::{embed, embed_engine, SpatiaData};
    let _burn_rng = common::burn_rng_lock();
    let crop = prepare_crop(&common::data_dir(), &LabelOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let spec = SpatiaSpec::small(crop.table.n_genes(), crop.class_names.len(), SpatiaLevels::Tissue);
    let data = SpatiaData::build(&crop, &spec, Some(3)).unwrap();
    let model = random_model(&spec, 7);
    let device = Default::default();
    let want = embed(&model, &data, spec.n_classes, spec.d_model, &device);
    let engine = model.to_engine(&spec, crop.class_names.clone(), None).unwrap();
    let cells = data.assigned.iter().filter(|&&a| a).count();
    for (m, name, tol) in [(engine.clone(), "fp32", F32_TOLERANCE), (engine.quantize_int8(), "int8", INT8_TOLERANCE)] {
        let t = std::time::Instant::now();
        let got = embed_engine(&m.prepare().unwrap(), &data).unwrap();
        eprintln!("crop, {} regions, {cells} cells, {name}: engine {:.2} s", data.regions.len(), t.elapsed().as_secs_f64());
        for (what, g, w) in [("z_cell", &got.z_cell, &want.z_cell), ("z", &got.z, &want.z), ("logits", &got.logits, &want.logits), ("z_niche", &got.z_niche, &want.z_niche), ("z_tissue", &got.z_tissue, &want.z_tissue)] {
            let e = relative_error(g, w);
            eprintln!("  crop {name} {what}: relative error {e:.2e}");
            assert!(e <= tol, "crop {name} {what}: {e}");
        }
        let (floor, bound) = if name == "fp32" { (0.99, 1e-3) } else { (0.8, 1.0) };
        let rows: Vec<usize> = (0..data.n_cells()).filter(|&i| data.assigned[i]).collect();
        let pick = |l: &[f32]| -> Vec<f32> { rows.iter().flat_map(|&i| l[i * spec.n_classes..(i + 1) * spec.n_classes].iter().copied()).collect() };
        common::quant::assert_int8_follows_fp32(&format!("crop {name} vs burn"), &pick(&want.logits), &pick(&got.logits), spec.n_classes, bound, floor);
    }
}

fn cli(args: &[&str], data: &Path) -> String {
    let res = Command::new(env!("CARGO_BIN_EXE_cellsymphony")).args(args).arg("--data").arg(data).output().expect("binary runs");
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{args:?} failed: {err}");
    assert!(!err.contains("panicked"), "{err}");
    String::from_utf8_lossy(&res.stdout).into_owned()
}

/// `cells.csv` `predicted` and `niche_clusters.csv` `cluster` columns.
fn columns(dir: &Path) -> (Vec<String>, Vec<String>) {
    let cells = std::fs::read_to_string(dir.join("cells.csv")).unwrap();
    let niches = std::fs::read_to_string(dir.join("niche_clusters.csv")).unwrap();
    let last = |text: &str| -> Vec<String> { text.lines().skip(1).map(|l| l.rsplit(',').next().unwrap().to_string()).collect() };
    (last(&cells), last(&niches))
}

/// `spatia finetune` (1 epoch on one region) → `spatia embed` on the whole crop →
/// `spatia export --niche-centroids` (fp32 and int8) → `spatia classify --engine cpu` on the
/// whole crop: the fp32 engine predicts burn's class for every cell and puts every niche in
/// embed's k-means cluster; int8 keeps most classes.
#[test]
fn classify_matches_embed_on_the_whole_crop() {
    let data = common::data::data_dir();
    let dir = common::scratch("spatia_classify");
    let (model, emb) = (dir.join("model"), dir.join("embed"));
    let s = |p: &Path| p.display().to_string();
    cli(&["spatia", "finetune", "--epochs", "1", "--split", "random", "--max-regions", "1", "--out", &s(&model)], &data);
    cli(&["spatia", "embed", "--model", &s(&model), "--out", &s(&emb)], &data);
    let (burn_cells, burn_niches) = columns(&emb);
    let centroids = s(&emb.join("niche_centroids.json"));
    for (int8, name) in [(false, "fp32"), (true, "int8")] {
        let file = dir.join(format!("spatia_{name}.safetensors"));
        let (model_s, out_s) = (s(&model), s(&file));
        let mut export = vec!["spatia", "export", "--model", &model_s];
        export.extend(["--out", &out_s, "--niche-centroids", &centroids]);
        if int8 {
            export.push("--int8");
        }
        let res = Command::new(env!("CARGO_BIN_EXE_cellsymphony")).args(&export).output().expect("binary runs");
        assert!(res.status.success(), "export: {}", String::from_utf8_lossy(&res.stderr));
        let out = dir.join(format!("classify_{name}"));
        let www = dir.join(format!("www_{name}"));
        let (out_dir, www_s) = (s(&out), s(&www));
        let stdout = cli(&["spatia", "classify", "--model", &out_s, "--engine", "cpu", "--out", &out_dir, "--www", &www_s], &data);
        check_www_bundle(&www);
        eprintln!("{stdout}");
        let (cells, niches) = columns(&out);
        assert_eq!(cells.len(), burn_cells.len());
        let predicted = burn_cells.iter().filter(|c| !c.is_empty()).count();
        let same = cells.iter().zip(&burn_cells).filter(|(a, b)| a == b).count() - (burn_cells.len() - predicted);
        let same_niche = niches.iter().zip(&burn_niches).filter(|(a, b)| a == b).count();
        eprintln!("classify {name}: same class as burn embed on {same}/{predicted} cells, same niche cluster on {same_niche}/{} niches", niches.len());
        assert!(predicted > 1000, "the whole crop is classified: {predicted}");
        assert!(niches.iter().zip(&burn_niches).all(|(a, b)| a.is_empty() == b.is_empty()), "the same niches are clustered");
        // The WGSL engine (`--engine wgpu`) on the same file: the CPU engine's class on every
        // cell and cluster on every niche (its parity figures are in tests/spatia_gpu.rs).
        if int8 && common::gpu_or_skip("spatia classify --engine wgpu").is_some() {
            let gpu_out = dir.join("classify_int8_wgpu");
            let stdout = cli(&["spatia", "classify", "--model", &out_s, "--engine", "wgpu", "--out", &s(&gpu_out)], &data);
            eprintln!("{stdout}");
            assert!(stdout.contains("SPATIA engine (wgpu"), "{stdout}");
            let (gpu_cells, gpu_niches) = columns(&gpu_out);
            let same_gpu = gpu_cells.iter().zip(&cells).filter(|(a, b)| a == b).count();
            assert_eq!(same_gpu, cells.len(), "wgpu = cpu engine on every cell");
            assert_eq!(gpu_niches, niches, "wgpu = cpu engine on every niche cluster");
        }
        if int8 {
            check_scale(&file, &dir.join("scale"), &data);
        }
        if int8 {
            assert!(same as f64 >= 0.9 * predicted as f64, "int8: {same}/{predicted}");
        } else {
            assert_eq!(same, predicted, "fp32 engine = burn on every cell");
            assert_eq!(same_niche, niches.len(), "fp32 engine = k-means niche clusters");
        }
    }
}

/// `spatia scale` on 5,000 synthetic cells (the crop's whole niches tiled): every synthetic cell
/// lies in a region and is classified; the tally covers every cell once; most cells keep their
/// source cell's class (only the seams between copies change context); the stages' memory is
/// reported on Linux; a zero cell count is a clear error.
fn check_scale(model: &Path, out: &Path, data: &Path) {
    let s = |p: &Path| p.display().to_string();
    let stdout = cli(&["spatia", "scale", "--model", &s(model), "--cells", "5000", "--out", &s(out)], data);
    eprintln!("{stdout}");
    assert!(stdout.contains("| niche grid (gene sums) + regions |") && stdout.contains("cells/s"), "{stdout}");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("scale.json")).unwrap()).unwrap();
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("scale.json {k}: {}", r[k]));
    assert_eq!(n("cells"), 5000);
    assert_eq!(n("cells_classified"), 5000, "every synthetic cell lies in a whole niche of a region");
    assert_eq!(r["class_counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum::<u64>(), 5000);
    assert_eq!(r["niche_cluster_counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum::<u64>(), n("niches_with_cells"), "one stored cluster per non-empty niche");
    let copies = r["copies"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).product::<u64>();
    assert!(copies >= 5000u64.div_ceil(n("cells_per_copy")), "copies {copies}");
    assert!(n("same_class_as_crop") >= 2500, "source-cell class kept on most cells: {}", n("same_class_as_crop"));
    #[cfg(target_os = "linux")]
    assert!(n("peak_bytes") > 0 && n("peak_bytes") >= n("peak_after_niches_bytes"), "peak RSS reported and monotone");
    let res = Command::new(env!("CARGO_BIN_EXE_cellsymphony")).args(["spatia", "scale", "--model", &s(model), "--cells", "0", "--out", &s(out)]).arg("--data").arg(data).output().unwrap();
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success() && err.contains("--cells") && !err.contains("panicked"), "{err}");
}

/// The `--www` bundle read back as the browser reads it (one flat layout, regions by
/// `niche_region`) through `SpatiaCpu::forward_slide` (the code `classifyWithContext` runs):
/// the same classes and niche clusters as the native `spatia classify` that wrote it.
fn check_www_bundle(dir: &Path) {
    let f32s = |f: &str| -> Vec<f32> { std::fs::read(dir.join(f)).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect() };
    let usizes = |f: &str| -> Vec<usize> { std::fs::read(dir.join(f)).unwrap().chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize).collect() };
    let reference: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
    let model = SpatiaHierarchyModel::load(dir.join("spatia.safetensors")).unwrap();
    let (genes, patches, tiles) = (f32s("genes.f32"), f32s("patches.f32"), f32s("niche_tiles.f32"));
    let (cell_niche, niche_slot, niche_region) = (usizes("cell_niche.u32"), usizes("niche_slot.u32"), usizes("niche_region.u32"));
    let input = cellsymphony::engine::SpatiaSlideInput { genes: &genes, patches: &patches, niche_images: &tiles, cell_niche: &cell_niche, niche_slot: &niche_slot, niche_region: &niche_region };
    let t = std::time::Instant::now();
    let out = model.prepare().unwrap().forward_slide(&input).unwrap();
    let c = model.meta.spec.n_classes;
    let classes: Vec<u64> = out.logits.chunks(c).map(|r| r.iter().enumerate().fold(0, |b, (j, &v)| if v > r[b] { j } else { b }) as u64).collect();
    let want: Vec<u64> = reference["classes"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    let clusters: Vec<i64> = out.niche_clusters.iter().map(|c| c.map_or(-1, i64::from)).collect();
    let want_clusters: Vec<i64> = reference["niche_clusters"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    eprintln!("www bundle: {} cells, {} niches through forward_slide in {:.2} s", classes.len(), clusters.len(), t.elapsed().as_secs_f64());
    assert_eq!(classes.len(), reference["n_cells"].as_u64().unwrap() as usize);
    assert_eq!(classes, want, "forward_slide classes = native classify");
    assert!(want_clusters.iter().all(|&c| c >= 0), "every niche of a region is clustered");
    assert_eq!(clusters, want_clusters, "forward_slide niche clusters = native classify");
    let mut bad = cell_niche.clone();
    bad[0] = niche_region.len();
    assert!(model.prepare().unwrap().forward_slide(&cellsymphony::engine::SpatiaSlideInput { cell_niche: &bad, ..input }).is_err());
}

/// The image-free hierarchy (`SpatiaSpec::without_images`: learned query tokens instead of
/// both ViTs, no patches or tiles) against burn on every level, with the tolerances above
/// (fp32 ≤ 1e-4, int8 ≤ 5e-2 relative, classes following fp32); the file round-trips with the
/// learned tokens stored as f32 tensors; patches given to it, and a spec that disagrees with
/// the stored queries, are errors naming what is wrong.
#[test]
fn image_free_hierarchy_matches_burn() {
    use cellsymphony::engine::SpatiaQueries;
    let _burn_rng = common::burn_rng_lock();
    let (g, c) = (9, 5);
    for (i, levels) in SpatiaLevels::ALL.into_iter().enumerate() {
        let spec = SpatiaSpec::small(g, c, levels).without_images();
        let model = random_model(&spec, 31 + i as u64);
        let engine = model.to_engine(&spec, classes(c), None).unwrap();
        assert!(matches!(&engine.cell.queries, SpatiaQueries::Learned { n: 4, tokens } if tokens.len() == 4 * spec.d_model));
        if let Some(ctx) = &engine.context {
            assert!(matches!(&ctx.niche.queries, SpatiaQueries::Learned { n: 4, .. }));
        }
        let bytes = engine.to_safetensors_bytes().unwrap();
        let read = SpatiaHierarchyModel::from_safetensors_bytes(&bytes).unwrap();
        assert_eq!(read, engine, "safetensors round trip");
        // Its int8 twin keeps the learned tokens in f32.
        assert_eq!(read.quantize_int8().cell.queries, engine.cell.queries);
        let region = RandomRegion::new(&spec, 37, &[0, 1, 2, 5, 6, 9, 10, 15], 0x77 + i as u64);
        assert!(region.patches.is_empty() && region.niche_images.is_empty());
        let (e32, e8) = compare(&model, &read, &region, &format!("image-free {}", levels.name()));
        eprintln!("image-free SPATIA --levels {}: worst relative error fp32 {e32:.2e}, int8 {e8:.2e}", levels.name());

        // Patches given to an image-free model are an input error.
        let patches = vec![0.5f32; region.n_cells * 32 * 32];
        let mut x = region.input();
        x.patches = &patches;
        let e = read.prepare().unwrap().forward_region(&x).unwrap_err().to_string();
        assert!(e.contains("patches") && e.contains("images: false"), "{e}");
        // A spec saying "images" over stored learned queries is refused, naming the queries.
        let mut bad = engine.clone();
        bad.meta.spec = SpatiaSpec::small(g, c, levels);
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("queries") && e.contains("images"), "{e}");
        // Too few stored tokens for the spec.
        let mut bad = engine.clone();
        bad.meta.spec.cell_query_tokens = 5;
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("queries"), "{e}");
    }
}

/// `--region-niches slide`: one tissue region over the crop's whole niche grid (10×8 niches →
/// a 10×10 region): fine-tuning reads it as one region, and the exported file classifies every
/// cell of the crop on the CPU engine and on WebGPU with the same classes; a zero side is
/// refused naming the flag.
#[test]
fn tissue_level_over_the_whole_slide() {
    let data = common::data::data_dir();
    let dir = common::scratch("spatia_slide_region");
    let s = |p: &Path| p.display().to_string();
    let model = dir.join("model");
    let res = Command::new(env!("CARGO_BIN_EXE_cellsymphony"))
        .args(["spatia", "finetune", "--epochs", "1", "--split", "random", "--region-niches", "slide", "--out", &s(&model), "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{err}");
    assert!(err.contains("1 regions of 10×10 niches"), "{err}");
    let file = dir.join("spatia.safetensors");
    let res = Command::new(env!("CARGO_BIN_EXE_cellsymphony")).args(["spatia", "export", "--model", &s(&model), "--out", &s(&file)]).output().unwrap();
    assert!(res.status.success(), "export: {}", String::from_utf8_lossy(&res.stderr));
    let out = dir.join("classify");
    let stdout = cli(&["spatia", "classify", "--model", &s(&file), "--engine", "cpu", "--out", &s(&out)], &data);
    assert!(stdout.contains("in 1 regions"), "{stdout}");
    let cells = std::fs::read_to_string(out.join("cells.csv")).unwrap();
    let predicted: Vec<&str> = cells.lines().skip(1).map(|l| l.rsplit(',').next().unwrap()).collect();
    assert!(predicted.iter().filter(|p| !p.is_empty()).count() > 1000, "the whole crop is classified");
    if common::gpu_or_skip("tissue_level_over_the_whole_slide --engine wgpu").is_some() {
        let gpu_out = dir.join("classify_wgpu");
        cli(&["spatia", "classify", "--model", &s(&file), "--engine", "wgpu", "--out", &s(&gpu_out)], &data);
        assert_eq!(std::fs::read_to_string(gpu_out.join("cells.csv")).unwrap(), cells, "wgpu = cpu on every cell of the 10×10 region");
    }
    let res = Command::new(env!("CARGO_BIN_EXE_cellsymphony")).args(["spatia", "finetune", "--region-niches", "0", "--out", &s(&model)]).output().unwrap();
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success() && err.contains("--region-niches") && err.contains("at least 1 niche"), "{err}");
}
