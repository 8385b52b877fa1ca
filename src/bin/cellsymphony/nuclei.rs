//! `cellsymphony detect-nuclei`: nucleus centroids from a DAPI image, scored against the
//! bundle's own nuclei when it has them; with `--model`, every detected nucleus classified by
//! an image-only model (patches cut around the detected centroids; no transcripts read).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use cellsymphony::analysis::nuclei::{
    detect_nuclei, detect_nuclei_with_histogram, haematoxylin, histogram_scale, level_histogram_progress, match_centroids, watershed_nuclei, NucleusOptions, TiffLevelImage, NucleusImage, model_patches_in,
    DEFAULT_NUCLEUS_DIAMETER_UM,
};
use cellsymphony::data::{self, default_data_dir, ImageFrame, PyramidTiff};

use cellsymphony::engine::{softmax_max, EngineModel};
use cellsymphony::train::argmax_rows;

use crate::common::{write_file, Engine};
use crate::infer::{engine_logits, CellData};

/// Stain of the image nuclei are detected in.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Stain {
    /// Fluorescent nuclear stain (bright nuclei).
    Dapi,
    /// Brightfield haematoxylin & eosin.
    He,
}

#[derive(Args)]
pub(crate) struct DetectNucleiArgs {
    /// A Xenium output folder (its DAPI image; its nuclei, when present, score the detection);
    /// default the example crop ($CELLSYMPHONY_DATA).
    #[arg(long, conflicts_with = "image")]
    pub(crate) bundle: Option<PathBuf>,
    /// A DAPI TIFF / OME-TIFF to read instead of a bundle (first plane; no scoring); with
    /// `--stain he`, an 8-bit RGB H&E TIFF.
    #[arg(long)]
    pub(crate) image: Option<PathBuf>,
    /// Stain of --image: `dapi` (fluorescent nuclei) or `he` (brightfield H&E: colour
    /// deconvolution to the haematoxylin channel first).
    #[arg(long, value_enum, default_value_t = Stain::Dapi)]
    pub(crate) stain: Stain,
    /// Also grow nucleus masks by marker-controlled watershed: adds `area_px, area_um2,
    /// mask_x_px, mask_y_px` (the mask centroid) to the CSV.
    #[arg(long)]
    pub(crate) watershed: bool,
    /// With --watershed: write the label image `[height, width]` u32 (0 background, i + 1 =
    /// row i of the CSV) to this .npy file.
    #[arg(long, requires = "watershed")]
    pub(crate) labels_out: Option<PathBuf>,
    /// Pixel size of --image in µm (overrides the OME-XML; required for plain TIFFs).
    #[arg(long)]
    pub(crate) um_per_px: Option<f32>,
    /// Read the pyramid level closest to (not coarser than) this pixel size, µm; default full
    /// resolution. 0.5 keeps whole slides small while resolving nuclei.
    #[arg(long)]
    pub(crate) target_um_per_px: Option<f32>,
    /// Output CSV: nucleus_id, x_um, y_um, x_px, y_px, response, intensity.
    #[arg(long, default_value = "runs/nuclei/nuclei.csv")]
    pub(crate) out: PathBuf,
    /// Expected nucleus diameter in µm (sets the LoG scale).
    #[arg(long, default_value_t = DEFAULT_NUCLEUS_DIAMETER_UM)]
    pub(crate) diameter_um: f32,
    /// Minimum distance between nuclei in µm; default half the diameter.
    #[arg(long)]
    pub(crate) min_distance_um: Option<f32>,
    /// Factor on the Otsu intensity threshold (lower finds dimmer nuclei).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) threshold_scale: f32,
    /// Tile side in pixels (bounds working memory; results do not depend on it).
    #[arg(long, default_value_t = 512)]
    pub(crate) tile_px: usize,
    /// Decode the whole image level before detecting (default for --image: stream it tile by
    /// tile from the file, decoding only the strips/tiles each tile + halo touches; bounded
    /// memory, identical output; with --model the patches are cut window by window too).
    /// Watershed and --stain he decode the whole level.
    #[arg(long)]
    pub(crate) no_stream: bool,
    /// Matching distance for precision/recall against the bundle's nuclei, µm.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) match_um: f32,
    /// An image-only model file (`cellsymphony image-only`'s model.safetensors or
    /// model.int8.safetensors): classify every detected nucleus from its patch alone.
    #[arg(long)]
    pub(crate) model: Option<PathBuf>,
    /// Engine of --model.
    #[arg(long, value_enum, default_value_t = Engine::Cpu)]
    pub(crate) engine: Engine,
    /// Predictions CSV of --model: cell_id (= nucleus_id), x_um, y_um, predicted, confidence.
    #[arg(long, default_value = "runs/nuclei/predictions.csv")]
    pub(crate) predictions: PathBuf,
}

pub(crate) fn cmd_detect_nuclei(a: DetectNucleiArgs) -> Result<()> {
    let t0 = Instant::now();
    // A model that cannot read a bare image is refused before the image is read.
    let model = match &a.model {
        Some(path) => {
            let model = EngineModel::load(path)?;
            let source = a.image.as_ref().map_or_else(|| "the bundle's DAPI image".to_string(), |p| p.display().to_string());
            model.require_image_only(&source).with_context(|| format!("--model {}", path.display()))?;
            Some(model)
        }
        None => None,
    };
    let (image, frame, reference) = match &a.image {
        Some(path) => {
            let mut tiff = PyramidTiff::open(path)?;
            if let Some(um) = a.um_per_px {
                tiff = tiff.with_um_per_px(um);
            }
            let Some(base_um) = tiff.um_per_px() else {
                bail!("{}: no pixel size in the file (no OME PhysicalSizeX); pass --um-per-px", path.display());
            };
            let level = match a.target_um_per_px {
                Some(t) => tiff.level_for(t)?,
                None => 0,
            };
            // Masks need the whole level; detection and --model's patches stream.
            if a.stain == Stain::Dapi && !a.watershed && !a.no_stream {
                return detect_streaming(&a, &tiff, base_um, level, model.as_ref(), t0);
            }
            let (image, downsample) = match a.stain {
                Stain::Dapi => {
                    let read = tiff.read_gray(0, level)?;
                    (read.image, read.downsample)
                }
                Stain::He => {
                    let read = tiff.read_rgb(level)?;
                    (haematoxylin(&read.image), read.downsample)
                }
            };
            let frame = data::morphology::level_frame(&ImageFrame::from_corner([0.0, 0.0], base_um), downsample);
            (image, frame, None)
        }
        None => {
            if a.stain == Stain::He {
                bail!("--stain he reads an RGB H&E TIFF: pass it with --image (and --um-per-px for a plain TIFF)");
            }
            let dir = match &a.bundle {
                Some(dir) => dir.clone(),
                None => {
                    let crop = data::BidcellData::locate(&default_data_dir())?;
                    crop.transcripts.parent().map(PathBuf::from).unwrap_or_default()
                }
            };
            let bundle = data::XeniumBundle::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
            let (image, frame) = bundle.read_dapi(a.target_um_per_px)?;
            let cells = bundle.read_cells(&data::TranscriptOptions::default())?;
            let nuclei: Vec<[f32; 2]> = cells.nucleus_centroids_um.iter().flatten().copied().collect();
            (image, frame, (!nuclei.is_empty()).then_some(nuclei))
        }
    };
    let read_s = t0.elapsed().as_secs_f64();
    let opts = NucleusOptions {
        diameter_um: a.diameter_um,
        min_distance_um: a.min_distance_um,
        threshold_scale: a.threshold_scale,
        tile_px: a.tile_px,
    };
    let t1 = Instant::now();
    let det = detect_nuclei(&image, frame.um_per_px, &opts)?;
    let masks = if a.watershed { Some(watershed_nuclei(&image, &det, frame.um_per_px, a.diameter_um)?) } else { None };
    let detect_s = t1.elapsed().as_secs_f64();
    let mut csv = String::from("nucleus_id,x_um,y_um,x_px,y_px,response,intensity");
    csv.push_str(if masks.is_some() { ",area_px,area_um2,mask_x_px,mask_y_px\n" } else { "\n" });
    let mut centroids_um = Vec::with_capacity(det.nuclei.len());
    for (i, n) in det.nuclei.iter().enumerate() {
        let um = frame.px_to_um(n.px);
        centroids_um.push(um);
        write!(csv, "{i},{:.4},{:.4},{:.4},{:.4},{:.3},{:.2}", um[0], um[1], n.px[0], n.px[1], n.response, n.intensity)?;
        if let Some(m) = &masks {
            let [mx, my] = m.centroid_px[i];
            let area = m.area_px[i];
            write!(csv, ",{area},{:.4},{mx:.4},{my:.4}", area as f32 * frame.um_per_px * frame.um_per_px)?;
        }
        csv.push('\n');
    }
    if let (Some(path), Some(m)) = (&a.labels_out, &masks) {
        use npyz::WriterBuilder as _;
        let mut npy = Vec::with_capacity(m.labels.len() * 4 + 128);
        let mut w = npyz::WriteOptions::new().default_dtype().shape(&[m.height as u64, m.width as u64]).writer(&mut npy).begin_nd()?;
        w.extend(m.labels.iter().copied())?;
        w.finish()?;
        write_file(path, npy)?;
    }
    if let Some(parent) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    write_file(&a.out, csv)?;
    println!(
        "{} nuclei in a {}×{} px image at {} µm/px (σ = {:.2} px, threshold {:.1}, {} tiles, {:.1} MB per tile) \
         → {}; read {read_s:.2} s, detect {detect_s:.2} s",
        det.nuclei.len(),
        image.width,
        image.height,
        frame.um_per_px,
        det.sigma_px,
        det.threshold,
        det.n_tiles,
        det.tile_bytes as f64 / 1e6,
        a.out.display()
    );
    match reference {
        Some(reference) => {
            let r = match_centroids(&centroids_um, &reference, a.match_um)?;
            println!(
                "vs the bundle's {} nucleus centroids within {} µm: {} matched, precision {:.3}, recall {:.3}, F1 {:.3}, mean distance {:.2} µm",
                r.n_reference, a.match_um, r.n_matched, r.precision, r.recall, r.f1, r.mean_distance
            );
        }
        None => println!("no reference nuclei (no bundle, or the bundle has no nucleus centroids): not scored"),
    }
    if let Some(model) = &model {
        let scale = data::IntensityScale::global(&image);
        classify_nuclei(model, a.engine, &image, &frame, &scale, a.tile_px, &centroids_um, &a.predictions)?;
    }
    Ok(())
}

/// Classifies every nucleus with the image-only `model` on `engine` from its patch at the
/// model's size and µm/px, cut from `image` (a decoded level or one read window by window,
/// [`model_patches_in`]) with the level's stretch `scale`, in chunks of [`NUCLEI_PER_CHUNK`]
/// so a whole slide's patches are never held at once, and writes the predictions CSV (cell
/// ids = nucleus ids).
#[allow(clippy::too_many_arguments)]
fn classify_nuclei(
    model: &EngineModel,
    engine: Engine,
    image: &dyn NucleusImage,
    frame: &ImageFrame,
    scale: &data::IntensityScale,
    tile_px: usize,
    centroids_um: &[[f32; 2]],
    out: &std::path::Path,
) -> Result<()> {
    let m = model.meta.config.morphology.as_ref().context("an image-only model has a morphology ViT")?;
    let n = centroids_um.len();
    let k = model.meta.classes.len();
    let t = Instant::now();
    let mut classes = Vec::with_capacity(n);
    let mut confidence = Vec::with_capacity(n);
    let mut engine_name = String::new();
    for (c, chunk) in centroids_um.chunks(NUCLEI_PER_CHUNK).enumerate() {
        let patches = model_patches_in(image, frame, chunk, m.image_size, m.um_per_px as f32, scale, tile_px)?;
        let (logits, name) = classify_patches(model, engine, &patches, chunk.len(), m.image_size)?;
        classes.extend(argmax_rows(&logits, k));
        confidence.extend(logits.chunks_exact(k).map(softmax_max));
        engine_name = name;
        if n > NUCLEI_PER_CHUNK {
            eprintln!("classified {} of {n} nuclei ({:.1} s)", (c * NUCLEI_PER_CHUNK + chunk.len()), t.elapsed().as_secs_f64());
        }
    }
    let predictions = data::Predictions {
        cell_ids: (0..n).map(|i| i.to_string()).collect(),
        predicted: classes.iter().map(|&c| model.meta.classes[c as usize].clone()).collect(),
        confidence,
        centroids_um: Some(centroids_um.to_vec()),
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    data::write_predictions_csv(out, &predictions)?;
    println!(
        "classified {n} nuclei from {}×{} px patches at {} µm/px with {engine_name} in {:.2} s → {}",
        m.image_size,
        m.image_size,
        m.um_per_px,
        t.elapsed().as_secs_f64(),
        out.display()
    );
    crate::classify::print_prediction_counts(model, &classes);
    Ok(())
}

/// Nuclei classified per chunk by `detect-nuclei --model`: 8,192 patches of 32 × 32 px are
/// 32 MiB of f32, held about three times (cut, prepared, engine input) while a chunk runs.
const NUCLEI_PER_CHUNK: usize = 8_192;

/// Logits `[n, classes]` of `n` patches (`[n, size, size]`) and the engine's name.
fn classify_patches(model: &EngineModel, engine: Engine, patches: &[f32], n: usize, size: usize) -> Result<(Vec<f32>, String)> {
    let input = data::CellInput {
        counts: data::CountsInput::Dense { values: &[], n_cells: n, n_genes: 0 },
        genes: &[],
        centroids_um: None,
        patches: Some(data::PatchInput { pixels: patches, size }),
        proteins: None,
    };
    let cells = model.prepare(input)?.into_owned();
    let all: Vec<usize> = (0..n).collect();
    let (logits, engine_name) = engine_logits(model, &CellData { cells, centroids: Vec::new() }, &all, engine)?;
    Ok((logits, engine_name.to_string()))
}

/// `detect-nuclei --image` on a grayscale level without decoding it whole: tiles (+ halo) are
/// read window by window from the file ([`TiffLevelImage`]); same CSV as the whole-level path.
fn detect_streaming(a: &DetectNucleiArgs, tiff: &PyramidTiff, base_um: f32, level: usize, model: Option<&EngineModel>, t0: Instant) -> Result<()> {
    let info = tiff.levels().get(level).copied().context("the chosen level is missing")?;
    let frame = data::morphology::level_frame(&ImageFrame::from_corner([0.0, 0.0], base_um), info.downsample);
    let opts = NucleusOptions {
        diameter_um: a.diameter_um,
        min_distance_um: a.min_distance_um,
        threshold_scale: a.threshold_scale,
        tile_px: a.tile_px,
    };
    let image = TiffLevelImage::new(tiff, 0, level)?;
    // Whole slides take minutes: report each pass about every 10 %.
    let mut last = (0usize, "");
    let mut progress = |phase: &'static str, done: usize, total: usize| {
        if total >= 64 && (phase != last.1 || done * 10 / total > last.0 * 10 / total || done == total) {
            eprintln!("{phase}: {done}/{total} tiles ({:.1} s)", t0.elapsed().as_secs_f64());
            last = (done, phase);
        }
    };
    // One histogram pass for both the Otsu threshold and --model's patch stretch.
    let hist = level_histogram_progress(&image, a.tile_px, &mut |done, total| progress("histogram", done, total))?;
    let det = detect_nuclei_with_histogram(&image, frame.um_per_px, &opts, Some(&hist), &mut progress)?;
    let mut csv = String::from("nucleus_id,x_um,y_um,x_px,y_px,response,intensity\n");
    let mut centroids_um = Vec::with_capacity(det.nuclei.len());
    for (i, n) in det.nuclei.iter().enumerate() {
        let um = frame.px_to_um(n.px);
        centroids_um.push(um);
        writeln!(csv, "{i},{:.4},{:.4},{:.4},{:.4},{:.3},{:.2}", um[0], um[1], n.px[0], n.px[1], n.response, n.intensity)?;
    }
    write_file(&a.out, csv)?;
    println!(
        "{} nuclei in a {}×{} px level at {} µm/px, streamed in {} tiles of {} px + {} px halo \
         ({:.1} MB of f32 buffers per tile and worker; the level is never decoded whole) → {}; {:.2} s",
        det.nuclei.len(),
        info.width,
        info.height,
        frame.um_per_px,
        det.n_tiles,
        a.tile_px,
        det.halo_px,
        det.tile_bytes as f64 / 1e6,
        a.out.display(),
        t0.elapsed().as_secs_f64()
    );
    if let Some(model) = model {
        // The level's stretch from the streamed histogram: the patches equal the decoded level's.
        let scale = histogram_scale(&hist);
        classify_nuclei(model, a.engine, &image, &frame, &scale, a.tile_px, &centroids_um, &a.predictions)?;
    }
    Ok(())
}
