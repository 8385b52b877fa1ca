//! SPATIA at slide scale (issue 14, evaluation "Scale"): the niche grid built and the whole
//! hierarchy run natively on `N` synthetic cells, with the time and resident memory of each
//! stage.
//!
//! The synthetic slide tiles the crop: its whole niches (the padded right/bottom edge niches are
//! left out) are repeated on a `A × B` grid of copies, every copy shifted by a whole number of
//! niches, so each synthetic cell has a source cell of the crop with the same expression, the
//! same nucleus patch and the same niche tile, and the DAPI image of the synthetic slide is the
//! crop's image repeated (never materialised: patches and tiles are read from the source cells
//! and niches). Cells are taken copy by copy until `N` are placed.
//!
//! Stages:
//! 1. **niches**: [`NicheGrid::build_from_rows`] over all `N` centroids, summing every niche's
//!    gene vectors (each synthetic cell's counts row read from its source cell, so the dense
//!    `[N, G]` counts, `4·N·G` bytes, are never materialised), then the tissue regions
//!    ([`region_assignment`]).
//! 2. **hierarchy**: every region through the CPU engine ([`SpatiaCpu::forward_region`]),
//!    regions in parallel (rayon), one region's inputs in memory per worker; the class of every
//!    cell and the niche cluster of every niche (when the file stores centroids) are counted,
//!    and each cell's class is compared with its source cell's class on the crop (context at
//!    the seams between copies differs from the crop's, so the agreement is a sanity check,
//!    not parity).

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::dataset::PreparedCrop;
use super::spatia::{embed_engine, region_assignment, SpatiaData};
use super::TrainError;
use crate::data::{self, NicheGrid, NicheOptions};
use crate::engine::{SpatiaHierarchyModel, SpatiaRegionInput};
use crate::util::argmax_rows;
use crate::util::memory::rss_and_peak_bytes;

/// What [`run_scale`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    /// Synthetic cells placed.
    pub cells: usize,
    /// Crop cells in whole niches (one copy's cells).
    pub cells_per_copy: usize,
    /// Copies `[columns, rows]` of the crop's whole-niche block.
    pub copies: [usize; 2],
    /// Synthetic slide size in DAPI pixels `[width, height]` (at the model's niche resolution).
    pub slide_px: [usize; 2],
    /// Niches of the grid, and those with cells.
    pub niches: usize,
    /// Non-empty niches.
    pub niches_with_cells: usize,
    /// Tissue regions with cells.
    pub regions: usize,
    /// Cells in a region (classified).
    pub cells_classified: usize,
    /// Seconds to synthesise the centroids (and each cell's source cell).
    pub synth_seconds: f64,
    /// Seconds of [`NicheGrid::build`] + [`region_assignment`].
    pub niche_seconds: f64,
    /// Seconds to run the hierarchy over every region.
    pub hierarchy_seconds: f64,
    /// Cells per second of the hierarchy stage.
    pub cells_per_second: f64,
    /// Worker threads of the hierarchy stage.
    pub threads: usize,
    /// Bytes a dense counts matrix `[N, G]` would take (the niche stage reads each synthetic
    /// cell's counts from its source cell instead, [`NicheGrid::build_from_rows`]).
    pub counts_bytes: u64,
    /// Resident memory (VmRSS) after the niche stage; `None` off Linux.
    pub rss_after_niches_bytes: Option<u64>,
    /// Peak resident memory (VmHWM) after the niche stage.
    pub peak_after_niches_bytes: Option<u64>,
    /// Peak resident memory (VmHWM) at the end.
    pub peak_bytes: Option<u64>,
    /// Predicted cells per class, `[C]`.
    pub class_counts: Vec<usize>,
    /// Niches per stored niche cluster, `[k]` (empty without stored centroids).
    pub niche_cluster_counts: Vec<usize>,
    /// Classified cells whose class equals their source cell's class on the crop.
    pub same_class_as_crop: usize,
}

impl ScaleReport {
    /// Markdown table of the stages.
    pub fn markdown(&self) -> String {
        let mib = |b: Option<u64>| b.map_or("–".to_string(), |b| format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64));
        let mut s = format!(
            "SPATIA hierarchy on {} synthetic cells ({}×{} copies of the crop's {} cells in whole niches; slide {}×{} px), CPU engine, {} threads\n\n",
            self.cells, self.copies[0], self.copies[1], self.cells_per_copy, self.slide_px[0], self.slide_px[1], self.threads
        );
        s += "| stage | seconds | result | memory |\n|---|---:|---|---|\n";
        s += &format!("| synthesise centroids | {:.2} | {} cells (dense counts would be {:.0} MiB; rows are read from the source cells) | – |\n", self.synth_seconds, self.cells, self.counts_bytes as f64 / (1u64 << 20) as f64);
        s += &format!(
            "| niche grid (gene sums) + regions | {:.2} | {} niches ({} with cells), {} regions | peak {} (RSS after: {}) |\n",
            self.niche_seconds,
            self.niches,
            self.niches_with_cells,
            self.regions,
            mib(self.peak_after_niches_bytes),
            mib(self.rss_after_niches_bytes)
        );
        s += &format!(
            "| hierarchy (cell → niche → tissue → fusion) | {:.2} | {} cells, {:.0} cells/s | peak {} |\n",
            self.hierarchy_seconds,
            self.cells_classified,
            self.cells_per_second,
            mib(self.peak_bytes)
        );
        s += &format!(
            "\nSame class as the source cell on the crop: {} of {} ({:.2} %; context differs at the seams between copies).\n",
            self.same_class_as_crop,
            self.cells_classified,
            100.0 * self.same_class_as_crop as f64 / self.cells_classified.max(1) as f64
        );
        s
    }
}

/// Builds the synthetic `cells`-cell slide from `crop` / `data` (the crop's cells, patches, niche
/// tiles and grid for `model`'s spec) and runs both stages (module docs). `progress` gets a line
/// about every 10 % of the regions.
///
/// Errors: `cells == 0`, a crop with no whole niche holding cells, a model whose spec differs
/// from `data`'s, the engine's errors.
pub fn run_scale(model: &SpatiaHierarchyModel, crop: &PreparedCrop, data: &SpatiaData, cells: usize, progress: &mut (dyn FnMut(String) + Send)) -> Result<ScaleReport, TrainError> {
    let spec = &model.meta.spec;
    if cells == 0 {
        return Err(TrainError::Options("--cells must be at least 1".into()));
    }
    // An image-free model's data has no patches and no tiles (sides 0).
    let (patch_side, niche_side) = if spec.images { (spec.cell_image.image_size, spec.niche_image.image_size) } else { (0, 0) };
    if spec.n_genes != data.n_genes || patch_side != data.patch_px || niche_side != data.niche_px {
        return Err(TrainError::Options(format!(
            "the model's spec (genes {}, patch {} px, niche tile {} px) differs from the data built for it (genes {}, patch {} px, niche tile {} px)",
            spec.n_genes, patch_side, niche_side, data.n_genes, data.patch_px, data.niche_px
        )));
    }
    let cpu = model.prepare()?;
    let (g, c, d) = (data.n_genes, spec.n_classes, spec.d_model);

    // The crop's classes: what each synthetic cell is compared with.
    let crop_classes = argmax_rows(&embed_engine(&cpu, data)?.logits, c);

    // One copy: the crop's cells in whole niches.
    let tile = data.grid.tile_px;
    let [cols_full, rows_full] = [data.grid.image_size[0] / tile, data.grid.image_size[1] / tile];
    let source: Vec<u32> = (0..data.n_cells())
        .filter(|&i| data.grid.niche_of_cell[i].is_some_and(|n| {
            let niche = &data.grid.niches[n as usize];
            niche.niche_col < cols_full && niche.niche_row < rows_full
        }))
        .map(|i| i as u32)
        .collect();
    if source.is_empty() {
        return Err(TrainError::Options(format!("the crop has no cells in a whole {tile} px niche: nothing to tile")));
    }
    let n_copies = cells.div_ceil(source.len());
    let a = (n_copies as f64).sqrt().ceil() as usize;
    let b = n_copies.div_ceil(a);
    let period_px = [cols_full * tile, rows_full * tile];
    let frame = data.dapi_frame;
    let upp = frame.um_per_px;

    // Stage 0: centroids and each synthetic cell's source cell.
    let t = Instant::now();
    let mut centroids = Vec::with_capacity(cells);
    let mut src_of = Vec::with_capacity(cells);
    'copies: for k in 0..n_copies {
        let shift = [(k % a * period_px[0]) as f32 * upp, (k / a * period_px[1]) as f32 * upp];
        for &s in &source {
            if centroids.len() == cells {
                break 'copies;
            }
            let p = crop.table.centroids_um[s as usize];
            centroids.push([p[0] + shift[0], p[1] + shift[1]]);
            src_of.push(s);
        }
    }
    let synth_seconds = t.elapsed().as_secs_f64();
    let counts_bytes = (cells * g * 4) as u64;
    progress(format!("synthesised {cells} cells ({a}×{b} copies of {} cells) in {synth_seconds:.2} s", source.len()));

    // Stage 1: niche grid and regions.
    let t = Instant::now();
    let slide_px = [a * period_px[0], b * period_px[1]];
    let opts = NicheOptions { tile_px: tile, edge: data::EdgePolicy::Pad, region_niches: spec.region_niches };
    let counts = &crop.table.counts;
    let grid = NicheGrid::build_from_rows(&centroids, |cell| &counts[src_of[cell] as usize * g..(src_of[cell] as usize + 1) * g], g, &frame, slide_px, &opts)?;
    drop(centroids);
    let regions = region_assignment(&grid, spec.region_niches)?;
    let niche_seconds = t.elapsed().as_secs_f64();
    let after_niches = rss_and_peak_bytes();
    let niches_with_cells = grid.niches.iter().filter(|n| !n.cells.is_empty()).count();
    progress(format!("niche grid: {} niches ({niches_with_cells} with cells), {} regions in {niche_seconds:.2} s", grid.niches.len(), regions.len()));

    // Stage 2: the hierarchy, region by region. Synthetic niche (col, row) has the crop's niche
    // (col mod cols_full, row mod rows_full) as its tile.
    let source_niche = |n: usize| {
        let niche = &grid.niches[n];
        data.grid.index(niche.niche_col % cols_full, niche.niche_row % rows_full).unwrap_or(0)
    };
    let (px, npx) = (data.patch_px * data.patch_px, data.niche_px * data.niche_px);
    let centroids_k = model.meta.niche_centroids.as_ref();
    let started = Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let progress = std::sync::Mutex::new(progress);
    let step = regions.len().div_ceil(10).max(1);
    #[derive(Default)]
    struct Tally {
        classes: Vec<usize>,
        clusters: Vec<usize>,
        same: usize,
        cells: usize,
    }
    let tally = regions
        .par_iter()
        .map(|rc| -> Result<Tally, TrainError> {
            let mut genes = Vec::with_capacity(rc.cells.len() * g);
            let mut patches = Vec::with_capacity(rc.cells.len() * px);
            for &cell in &rc.cells {
                let s = src_of[cell] as usize;
                genes.extend_from_slice(&data.x[s * g..(s + 1) * g]);
                patches.extend_from_slice(&data.patches[s * px..(s + 1) * px]);
            }
            let mut tiles = Vec::with_capacity(rc.niches.len() * npx);
            for &n in &rc.niches {
                let s = source_niche(n);
                tiles.extend_from_slice(&data.niche_images[s * npx..(s + 1) * npx]);
            }
            let input = SpatiaRegionInput { genes: &genes, patches: &patches, niche_images: &tiles, cell_niche: &rc.cell_niche, niche_slot: &rc.slots };
            let out = cpu.forward_region(&input)?;
            let mut t = Tally { classes: vec![0; c], clusters: vec![0; centroids_k.map_or(0, |k| k.k)], ..Default::default() };
            for (&cell, &class) in rc.cells.iter().zip(&argmax_rows(&out.logits, c)) {
                t.classes[class as usize] += 1;
                t.same += usize::from(crop_classes[src_of[cell] as usize] == class);
                t.cells += 1;
            }
            if let (Some(k), Some(zn)) = (centroids_k, &out.z_niche) {
                for cl in k.assign(&zn[..rc.niches.len() * d]) {
                    t.clusters[cl as usize] += 1;
                }
            }
            let finished = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if finished % step == 0 || finished == regions.len() {
                if let Ok(mut p) = progress.lock() {
                    (*p)(format!("hierarchy: {finished} of {} regions, {:.1} s", regions.len(), started.elapsed().as_secs_f64()));
                }
            }
            Ok(t)
        })
        .try_reduce(Tally::default, |mut x, y| {
            if x.classes.is_empty() {
                return Ok(y);
            }
            if !y.classes.is_empty() {
                x.classes.iter_mut().zip(&y.classes).for_each(|(a, b)| *a += b);
                x.clusters.iter_mut().zip(&y.clusters).for_each(|(a, b)| *a += b);
                x.same += y.same;
                x.cells += y.cells;
            }
            Ok(x)
        })?;
    let hierarchy_seconds = started.elapsed().as_secs_f64();
    let end = rss_and_peak_bytes();
    Ok(ScaleReport {
        cells,
        cells_per_copy: source.len(),
        copies: [a, b],
        slide_px,
        niches: grid.niches.len(),
        niches_with_cells,
        regions: regions.len(),
        cells_classified: tally.cells,
        synth_seconds,
        niche_seconds,
        hierarchy_seconds,
        cells_per_second: tally.cells as f64 / hierarchy_seconds.max(1e-9),
        threads: rayon::current_num_threads(),
        counts_bytes,
        rss_after_niches_bytes: after_niches.map(|m| m.0),
        peak_after_niches_bytes: after_niches.map(|m| m.1),
        peak_bytes: end.map(|m| m.1),
        class_counts: if tally.classes.is_empty() { vec![0; c] } else { tally.classes },
        niche_cluster_counts: tally.clusters,
        same_class_as_crop: tally.same,
    })
}
