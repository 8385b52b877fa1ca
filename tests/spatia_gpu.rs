//! SPATIA's cell level on WebGPU (`engine::GpuSpatiaCell`) against the CPU engine
//! (`engine::SpatiaCellModel::forward`), on seeded random models (`common::spatia_cell`) and inputs.
//!
//! Tolerance: `z_cell` and the logits within `1e-4 · max(1, max |cpu|)` absolute (the same
//! arithmetic in f32, summed in another order by the kernels; measured values are printed),
//! and the same class for every cell. Int8 models are compared with the CPU's int8 forward
//! (both multiply f32 activations by the int8 weights and scale per output row).
//!
//! `kernels/sparse_rows.wgsl` (the gathers and niche means between SPATIA's levels) against
//! `engine::ops::sparse_rows_reference` on seeded random CSR matrices: within `1e-6 · max(1,
//! max |ref|)` (same order of additions; only fused multiply-adds may differ).
//!
//! GPU tests need an adapter (lavapipe works); without one they fail unless
//! `CELLSYMPHONY_ALLOW_NO_GPU=1` (then they print SKIPPED), see `common::gpu_or_skip`.
#![cfg(all(feature = "native-io", not(target_arch = "wasm32")))]

mod common;

use cellsymphony::engine::cpu::argmax_rows;
use cellsymphony::engine::ops::sparse_rows_reference;
use cellsymphony::gpu::sparse_rows;
use cellsymphony::engine::spec::{SpatiaLevels, SpatiaSpec};
use cellsymphony::engine::{GpuSpatiaCell, SpatiaCellModel, SpatiaCellOutput};
use cellsymphony::util::rng::SplitMix64;
use common::spatia_cell::random_spatia_cell;
use common::{gpu_or_skip, max_abs_diff};

/// Seeded inputs: genes `[n, G]` in `[0, 3)`, patches `[n, S, S]` in `[0, 1)`.
fn inputs(spec: &SpatiaSpec, n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = SplitMix64::new(seed);
    let s = spec.cell_image.image_size;
    (rng.uniform_vec(n * spec.n_genes, 0.0, 3.0), rng.uniform_vec(n * s * s, 0.0, 1.0))
}

/// Asserts `gpu` within `1e-4 · max(1, max |cpu|)` of `cpu` (z_cell and logits) and the same
/// class per cell; returns the largest relative error.
fn assert_matches(what: &str, gpu: &SpatiaCellOutput, cpu: &SpatiaCellOutput, n_classes: usize) -> f32 {
    let mut worst = 0f32;
    let mut pairs = vec![("z_cell", &gpu.z_cell, &cpu.z_cell)];
    match (&gpu.logits, &cpu.logits) {
        (Some(g), Some(c)) => pairs.push(("logits", g, c)),
        (None, None) => {}
        _ => panic!("{what}: one engine returned logits, the other not"),
    }
    for (name, g, c) in pairs {
        assert!(g.iter().all(|v| v.is_finite()), "{what}: non-finite GPU {name}");
        let scale = c.iter().fold(1f32, |m, v| m.max(v.abs()));
        let err = max_abs_diff(g, c);
        eprintln!("{what}: {name} max |Δ| {err:.2e} (max |cpu| {scale:.2}, tolerance {:.2e})", 1e-4 * scale);
        assert!(err <= 1e-4 * scale, "{what}: {name} max |Δ| {err} > {}", 1e-4 * scale);
        worst = worst.max(err / scale);
    }
    if let (Some(g), Some(c)) = (&gpu.logits, &cpu.logits) {
        let (cg, cc) = (argmax_rows(g, n_classes), argmax_rows(c, n_classes));
        let same = cg.iter().zip(&cc).filter(|(a, b)| a == b).count();
        eprintln!("{what}: same class {same}/{}", cc.len());
        assert_eq!(cg, cc, "{what}: classes differ");
    }
    worst
}

fn run(ctx: &std::sync::Arc<cellsymphony::gpu::GpuContext>, model: &SpatiaCellModel, genes: &[f32], patches: &[f32], n: usize, chunk: Option<usize>) -> SpatiaCellOutput {
    let mut gpu = GpuSpatiaCell::new(ctx.clone(), model).unwrap();
    if let Some(c) = chunk {
        assert_eq!(gpu.set_chunk_cells(c), c);
    }
    pollster::block_on(gpu.forward(genes, patches, n)).unwrap()
}

/// The default (small) cell-level model, f32 and int8, in one chunk and in chunks of 16 (the
/// last one partial); a tissue-level model's cell level (no head); bad inputs give the CPU's
/// errors word for word.
#[test]
fn gpu_spatia_cell_matches_cpu_engine() {
    let Some(ctx) = gpu_or_skip("gpu_spatia_cell_matches_cpu_engine") else { return };
    let (g, c, n) = (23, 5, 37);
    for levels in [SpatiaLevels::Cell, SpatiaLevels::Tissue] {
        let spec = SpatiaSpec::small(g, c, levels);
        let (genes, patches) = inputs(&spec, n, 0x5A7A);
        let f32_model = random_spatia_cell(spec.clone(), 0x5A7A_0001);
        for model in [f32_model.clone(), f32_model.quantize_int8()] {
            let kind = format!("{} {}", levels.name(), model.meta.quantization.as_str());
            let cpu = model.forward(&genes, &patches, n).unwrap();
            let one = run(&ctx, &model, &genes, &patches, n, None);
            assert_matches(&format!("small {kind}, one chunk"), &one, &cpu, c);
            let chunked = run(&ctx, &model, &genes, &patches, n, Some(16));
            assert_matches(&format!("small {kind}, chunks of 16"), &chunked, &cpu, c);
            assert_eq!(levels == SpatiaLevels::Cell, one.logits.is_some());
        }
        let gpu = GpuSpatiaCell::new(ctx.clone(), &f32_model).unwrap();
        let empty = pollster::block_on(gpu.forward(&[], &[], 0)).unwrap();
        assert!(empty.z_cell.is_empty());
        for (gs, ps) in [(&genes[1..], &patches[..]), (&genes[..], &patches[..patches.len() - 1])] {
            let want = f32_model.forward(gs, ps, n).unwrap_err().to_string();
            let got = pollster::block_on(gpu.forward(gs, ps, n)).unwrap_err().to_string();
            assert_eq!(got, want, "bad inputs: the GPU's error is the CPU's");
        }
    }
}

/// A wider configuration: `SpatiaSpec::large`'s cell level (D 256, 8 heads, 16 gene tokens,
/// 64 px patches in 64 ViT tokens of width 256, 4 blocks), and a small model with 96 gene
/// tokens of head dim 64 (long key sequences in the cross kernel), f32 and int8.
#[test]
fn gpu_spatia_cell_matches_cpu_engine_wide() {
    let Some(ctx) = gpu_or_skip("gpu_spatia_cell_matches_cpu_engine_wide") else { return };
    let (g, c, n) = (40, 7, 6);
    let large = SpatiaSpec::large(g, c, SpatiaLevels::Cell);
    let long = SpatiaSpec { gene_tokens: 96, n_heads: 1, ..SpatiaSpec::small(g, c, SpatiaLevels::Cell) };
    for (name, spec) in [("large", large), ("96 gene tokens, head dim 64", long)] {
        let (genes, patches) = inputs(&spec, n, 0xB16);
        let f32_model = random_spatia_cell(spec, 0xB16_0001);
        for model in [f32_model.clone(), f32_model.quantize_int8()] {
            let kind = format!("{name} {}", model.meta.quantization.as_str());
            let cpu = model.forward(&genes, &patches, n).unwrap();
            let gpu = run(&ctx, &model, &genes, &patches, n, Some(4));
            assert_matches(&kind, &gpu, &cpu, c);
        }
    }
}

/// Seeded CSR rows over `x_rows` rows: 0–5 entries per row (some rows empty), weights ±1.
fn random_csr(rng: &mut SplitMix64, rows: usize, x_rows: usize) -> (Vec<u32>, Vec<u32>, Vec<f32>) {
    let mut offsets = vec![0u32];
    let (mut cols, mut weights) = (Vec::new(), Vec::new());
    for _ in 0..rows {
        let k = (rng.uniform(0.0, 6.0) as usize).min(5);
        for _ in 0..k {
            cols.push((rng.uniform(0.0, x_rows as f32) as usize).min(x_rows - 1) as u32);
            weights.push(rng.uniform(-1.0, 1.0));
        }
        offsets.push(cols.len() as u32);
    }
    (offsets, cols, weights)
}

#[test]
fn sparse_rows_kernel_matches_reference() {
    let Some(ctx) = gpu_or_skip("sparse_rows_kernel_matches_reference") else { return };
    let mut rng = SplitMix64::new(0x5A125E);
    // (rows, x rows, dim): small, one per niche of a region, and 4.5M outputs (a 2-D dispatch).
    for (rows, x_rows, dim, with_bias) in [(7, 3, 5, false), (16, 40, 64, true), (70_000, 300, 64, true), (33, 1, 1, false)] {
        let (offsets, cols, weights) = random_csr(&mut rng, rows, x_rows);
        let x = rng.uniform_vec(x_rows * dim, -2.0, 2.0);
        let bias = with_bias.then(|| rng.uniform_vec(rows * dim, -1.0, 1.0));
        let gpu = pollster::block_on(sparse_rows(&ctx, &offsets, &cols, &weights, &x, x_rows, dim, bias.as_deref())).unwrap();
        let reference = sparse_rows_reference(&offsets, &cols, &weights, &x, dim, bias.as_deref());
        let scale = reference.iter().fold(1f32, |m, v| m.max(v.abs()));
        let err = max_abs_diff(&gpu, &reference);
        eprintln!("sparse_rows {rows} x {dim} over {x_rows} rows (bias: {with_bias}): max |Δ| {err:.2e} (max |ref| {scale:.2})");
        assert!(err <= 1e-6 * scale, "sparse_rows {rows}x{dim}: {err}");
    }
    // Malformed matrices and mis-sized inputs are errors, not panics.
    let x = [1.0f32; 6];
    assert!(pollster::block_on(sparse_rows(&ctx, &[0, 2], &[0, 3], &[1.0, 1.0], &x, 3, 2, None)).is_err(), "column outside x");
    assert!(pollster::block_on(sparse_rows(&ctx, &[0, 2, 1], &[0, 1], &[1.0, 1.0], &x, 3, 2, None)).is_err(), "decreasing offsets");
    assert!(pollster::block_on(sparse_rows(&ctx, &[0, 1], &[0], &[1.0], &x[1..], 3, 2, None)).is_err(), "x too short");
    assert!(pollster::block_on(sparse_rows(&ctx, &[0, 1], &[0], &[1.0], &x, 3, 2, Some(&[1.0]))).is_err(), "bias too short");
}

/// Every output of one region (z_cell, z, logits, z_niche, z_tissue, composition) on the GPU
/// within `1e-4 · max(1, max |cpu|)` of the CPU engine's, present on one iff on the other,
/// finite; classes equal.
#[cfg(feature = "train")]
fn assert_region_outputs_match(what: &str, cpu: cellsymphony::engine::SpatiaRegionOutput, gpu: cellsymphony::engine::SpatiaRegionOutput, c: usize) {
    use cellsymphony::engine::SpatiaRegionOutput;
    let fields = |o: SpatiaRegionOutput| [("z_cell", Some(o.z_cell)), ("z", Some(o.z)), ("logits", Some(o.logits)), ("z_niche", o.z_niche), ("z_tissue", o.z_tissue), ("composition", o.composition)];
    let (cpu_logits, gpu_logits) = (cpu.logits.clone(), gpu.logits.clone());
    for ((name, want), (_, got)) in fields(cpu).into_iter().zip(fields(gpu)) {
        assert_eq!(want.is_some(), got.is_some(), "{what}: {name} present on the CPU iff on the GPU");
        let (Some(want), Some(got)) = (want, got) else { continue };
        assert!(got.iter().all(|v| v.is_finite()), "{what}: non-finite GPU {name}");
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        let err = max_abs_diff(&got, &want);
        eprintln!("{what}: {name} max |Δ| {err:.2e} (max |cpu| {scale:.2})");
        assert!(err <= 1e-4 * scale, "{what}: {name} max |Δ| {err}");
    }
    assert_eq!(argmax_rows(&gpu_logits, c), argmax_rows(&cpu_logits, c), "{what}: classes differ");
}

/// SPATIA's whole hierarchy on WebGPU (`engine::GpuSpatia`) vs the CPU engine
/// (`SpatiaCpu::forward_region`) on a seeded random model per level (burn-initialised, as the
/// engine parity tests build them) and a region with 8 of 16 slots filled: every output
/// (z_cell, z, logits, z_niche, z_tissue, composition) within `1e-4 · max(1, max |cpu|)`,
/// classes equal, f32 and int8; bad inputs give the CPU's errors word for word.
#[cfg(feature = "train")]
#[test]
fn gpu_spatia_hierarchy_matches_cpu_engine() {
    use cellsymphony::engine::GpuSpatia;
    use common::spatia::{random_model, RandomRegion};
    let Some(ctx) = gpu_or_skip("gpu_spatia_hierarchy_matches_cpu_engine") else { return };
    let _burn_rng = common::burn_rng_lock();
    let (g, c) = (23, 5);
    for (i, levels) in SpatiaLevels::ALL.into_iter().enumerate() {
        let spec = SpatiaSpec::small(g, c, levels);
        let engine = random_model(&spec, 21 + i as u64).to_engine(&spec, common::names("type ", c), None).unwrap();
        let region = RandomRegion::new(&spec, 37, &[0, 1, 2, 5, 6, 9, 10, 15], 0x6A + i as u64);
        for model in [engine.clone(), engine.quantize_int8()] {
            let what = format!("--levels {} {}", levels.name(), model.meta.quantization.as_str());
            let cpu = model.prepare().unwrap().forward_region(&region.input()).unwrap();
            let gpu_model = GpuSpatia::new(ctx.clone(), &model).unwrap();
            let gpu = pollster::block_on(gpu_model.forward_region(&region.input())).unwrap();
            assert_region_outputs_match(&what, cpu, gpu, c);
            // Bad inputs: the CPU's errors.
            let cpu_engine = model.prepare().unwrap();
            let mut x = region.input();
            x.genes = &region.genes[1..];
            let want = cpu_engine.forward_region(&x).unwrap_err().to_string();
            assert_eq!(pollster::block_on(gpu_model.forward_region(&x)).unwrap_err().to_string(), want);
            if levels.has_niche() {
                let bad: Vec<usize> = region.cell_niche.iter().map(|_| 8).collect();
                let mut x = region.input();
                x.cell_niche = &bad;
                let want = cpu_engine.forward_region(&x).unwrap_err().to_string();
                assert_eq!(pollster::block_on(gpu_model.forward_region(&x)).unwrap_err().to_string(), want);
            }
        }
    }
}

/// A slide of two random regions through the shared slide plan (`SpatiaSlidePlan`): the CPU
/// engine's `forward_slide` gives each cell exactly its region's `forward_region` logits (the
/// plan's gather and scatter), and `GpuSpatia::forward_slide` matches it within
/// `1e-4 · max(1, max |cpu|)` with the same classes and the same nearest stored niche centroid
/// on every niche; a niche index past the slide is the same error on both.
#[cfg(feature = "train")]
#[test]
fn gpu_spatia_forward_slide_matches_cpu_engine() {
    use cellsymphony::engine::{GpuSpatia, NicheCentroids, SpatiaSlideInput};
    use common::spatia::{random_model, RandomRegion};
    let Some(ctx) = gpu_or_skip("gpu_spatia_forward_slide_matches_cpu_engine") else { return };
    let _burn_rng = common::burn_rng_lock();
    let (g, c) = (19, 4);
    let spec = SpatiaSpec::small(g, c, SpatiaLevels::Tissue);
    let mut rng = SplitMix64::new(0x51DE);
    let centroids = NicheCentroids { k: 3, dim: spec.d_model, centroids: rng.uniform_vec(3 * spec.d_model, -1.0, 1.0) };
    let engine = random_model(&spec, 77).to_engine(&spec, common::names("type ", c), Some(centroids)).unwrap();
    let (a, b) = (RandomRegion::new(&spec, 29, &[0, 3, 5, 12], 0x5A), RandomRegion::new(&spec, 17, &[1, 2, 6], 0x5B));
    let ka = a.niche_slot.len();
    let cat = |x: &[f32], y: &[f32]| [x, y].concat();
    let cell_niche: Vec<usize> = a.cell_niche.iter().copied().chain(b.cell_niche.iter().map(|&k| k + ka)).collect();
    let niche_slot: Vec<usize> = a.niche_slot.iter().chain(&b.niche_slot).copied().collect();
    // Region ids need not be contiguous or ordered: b's niches are region 7, a's region 2.
    let niche_region: Vec<usize> = (0..ka).map(|_| 2).chain(b.niche_slot.iter().map(|_| 7)).collect();
    let (genes, patches, tiles) = (cat(&a.genes, &b.genes), cat(&a.patches, &b.patches), cat(&a.niche_images, &b.niche_images));
    let slide = SpatiaSlideInput { genes: &genes, patches: &patches, niche_images: &tiles, cell_niche: &cell_niche, niche_slot: &niche_slot, niche_region: &niche_region };
    for model in [engine.clone(), engine.quantize_int8()] {
        let what = model.meta.quantization.as_str();
        let cpu_engine = model.prepare().unwrap();
        let cpu = cpu_engine.forward_slide(&slide).unwrap();
        let (ra, rb) = (cpu_engine.forward_region(&a.input()).unwrap(), cpu_engine.forward_region(&b.input()).unwrap());
        assert_eq!(cpu.logits, [ra.logits, rb.logits].concat(), "{what}: the plan's scatter puts each region's logits on its cells");
        let gpu_model = GpuSpatia::new(ctx.clone(), &model).unwrap();
        let gpu = pollster::block_on(gpu_model.forward_slide(&slide)).unwrap();
        for (name, got, want) in [("logits", &gpu.logits, &cpu.logits), ("z_niche", &gpu.z_niche, &cpu.z_niche), ("composition", &gpu.composition, &cpu.composition)] {
            let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
            let err = max_abs_diff(got, want);
            eprintln!("slide {what}: {name} max |Δ| {err:.2e}");
            assert!(err <= 1e-4 * scale, "slide {what}: {name} max |Δ| {err}");
        }
        assert_eq!(argmax_rows(&gpu.logits, c), argmax_rows(&cpu.logits, c), "slide {what}: classes");
        assert!(cpu.niche_clusters.iter().all(|k| k.is_some()), "slide {what}: every niche gets a stored centroid");
        assert_eq!(gpu.niche_clusters, cpu.niche_clusters, "slide {what}: niche clusters");
        let bad: Vec<usize> = cell_niche.iter().map(|_| niche_slot.len()).collect();
        let x = SpatiaSlideInput { cell_niche: &bad, ..slide };
        let want = cpu_engine.forward_slide(&x).unwrap_err().to_string();
        assert!(want.contains("cellNiche[0]"), "{want}");
        assert_eq!(pollster::block_on(gpu_model.forward_slide(&x)).unwrap_err().to_string(), want);
    }
}

/// The image-free model (`SpatiaSpec::without_images`: learned query tokens written into the
/// residual stream instead of the ViTs) on WebGPU vs the CPU engine: the cell level (random
/// engine weights, f32 and int8, one chunk and chunks of 16) and the whole hierarchy on every
/// level (burn-initialised), every output within `1e-4 · max(1, max |cpu|)`, classes equal.
#[cfg(feature = "train")]
#[test]
fn gpu_spatia_image_free_matches_cpu_engine() {
    use cellsymphony::engine::GpuSpatia;
    use common::spatia::{random_model, RandomRegion};
    let Some(ctx) = gpu_or_skip("gpu_spatia_image_free_matches_cpu_engine") else { return };
    let _burn_rng = common::burn_rng_lock();
    let (g, c, n) = (9, 5, 37);
    // Cell level.
    for levels in [SpatiaLevels::Cell, SpatiaLevels::Tissue] {
        let spec = SpatiaSpec::small(g, c, levels).without_images();
        let genes = SplitMix64::new(0x1F).uniform_vec(n * g, 0.0, 3.0);
        let f32_model = random_spatia_cell(spec.clone(), 0x1F_0001);
        for model in [f32_model.clone(), f32_model.quantize_int8()] {
            let kind = format!("image-free {} {}", levels.name(), model.meta.quantization.as_str());
            let cpu = model.forward(&genes, &[], n).unwrap();
            assert_matches(&format!("{kind}, one chunk"), &run(&ctx, &model, &genes, &[], n, None), &cpu, c);
            assert_matches(&format!("{kind}, chunks of 16"), &run(&ctx, &model, &genes, &[], n, Some(16)), &cpu, c);
        }
        let gpu = GpuSpatiaCell::new(ctx.clone(), &f32_model).unwrap();
        let patches = vec![0.5f32; n];
        let want = f32_model.forward(&genes, &patches, n).unwrap_err().to_string();
        assert_eq!(pollster::block_on(gpu.forward(&genes, &patches, n)).unwrap_err().to_string(), want, "patches given to an image-free model");
    }
    // Whole hierarchy.
    for (i, levels) in SpatiaLevels::ALL.into_iter().enumerate() {
        let spec = SpatiaSpec::small(g, c, levels).without_images();
        let engine = random_model(&spec, 41 + i as u64).to_engine(&spec, common::names("type ", c), None).unwrap();
        let region = RandomRegion::new(&spec, 37, &[0, 1, 2, 5, 6, 9, 10, 15], 0x7A + i as u64);
        for model in [engine.clone(), engine.quantize_int8()] {
            let what = format!("image-free --levels {} {}", levels.name(), model.meta.quantization.as_str());
            let cpu = model.prepare().unwrap().forward_region(&region.input()).unwrap();
            let gpu = pollster::block_on(GpuSpatia::new(ctx.clone(), &model).unwrap().forward_region(&region.input())).unwrap();
            assert_region_outputs_match(&what, cpu, gpu, c);
        }
    }
}
