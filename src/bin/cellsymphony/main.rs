//! `cellsymphony` command-line tool: one module per subcommand, each parsing its flags and
//! calling the library.

mod align;
mod benchmark;
mod classify;
mod common;
mod eval;
mod export;
mod flow;
mod image_only;
mod infer;
mod inspect;
mod label;
mod nuclei;
mod pair;
mod pipeline;
mod spatia;
mod train;

use clap::{Parser, Subcommand};

use align::{cmd_align, AlignArgs};
use benchmark::{cmd_benchmark, BenchmarkArgs};
use classify::{cmd_classify, ClassifyArgs};
use eval::{cmd_eval, EvalArgs};
use export::{cmd_export, ExportArgs};
use flow::{cmd_flow, FlowArgs};
use image_only::{cmd_image_only, ImageOnlyArgs};
use inspect::{cmd_inspect, InspectArgs};
use label::{cmd_label, LabelArgs};
use nuclei::{cmd_detect_nuclei, DetectNucleiArgs};
use pair::{cmd_pair, PairArgs};
use pipeline::{cmd_pipeline, PipelineArgs};
use spatia::{cmd_spatia, SpatiaArgs};
use train::{cmd_train, TrainArgs};

#[derive(Parser)]
#[command(name = "cellsymphony", version, about = "Multimodal single-cell classification for spatial transcriptomics (native training, int8 WGSL inference).")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Label the crop's cells against the reference (SingleR-style) and print the label counts.
    Label(LabelArgs),
    /// Train the gene-only classifier; writes fp32 and int8 safetensors.
    Train(TrainArgs),
    /// Per-class precision/recall/F1 of a model on its held-out 20% of cells.
    Eval(EvalArgs),
    /// Convert an fp32 model file to int8 (per-output-channel symmetric).
    Export(ExportArgs),
    /// Classify every cell with the int8 engine (WGSL on GPU, or CPU) and write predictions.
    Classify(ClassifyArgs),
    /// The main job: label → train → eval → export → classify → report + web demo bundle.
    Pipeline(PipelineArgs),
    /// Pair control and target cell states by entropic OT (PCA + log-domain Sinkhorn) and
    /// write the pairs and the Δg signature.
    Pair(PairArgs),
    /// Train all four classifiers (gene-only, spatial, dual-modality, multi-input) and a
    /// logistic-regression baseline on one stratified split; write per-class tables (CSV +
    /// Markdown), confusion-matrix PNGs, the models and summary.md.
    Benchmark(BenchmarkArgs),
    /// Contrastive alignment of expression and morphology (two projection nets to 128-d,
    /// bidirectional InfoNCE), then k-means clusters of the morphology projections, UMAP,
    /// cell-type enrichment and figures (PNGs; a layer for the web demo with --www).
    Align(AlignArgs),
    /// Show what a Xenium output folder holds and which file provides each part.
    Inspect(InspectArgs),
    /// Find nucleus centroids in a DAPI image (LoG maxima at the nucleus scale, in tiles),
    /// write them as CSV, and score them against the bundle's nuclei when it has them.
    DetectNuclei(DetectNucleiArgs),
    /// SPATIA's multi-scale model (cell cross-attention, niche and tissue levels, fusion):
    /// masked-reconstruction pre-training, fine-tuning, embeddings and the level ablation.
    Spatia(SpatiaArgs),
    /// Morphology generation (SPATIA's third part): conditional contrastive flow matching from
    /// control to target nuclei on OT pairs; `flow train` (metrics, grid, checkpoint) and
    /// `flow sample`.
    Flow(FlowArgs),
    /// Image-only (CUCA-style) cell types from nucleus-centred DAPI patches: the ViT trained with
    /// CE + InfoNCE to an expression encoder + distillation, on spatial-block folds beside
    /// gene-based peers and ablations; per-class tables, niche abundance r, predictions.csv.
    ImageOnly(ImageOnlyArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Label(a) => cmd_label(a),
        Command::Train(a) => cmd_train(a).map(|_| ()),
        Command::Eval(a) => cmd_eval(a),
        Command::Export(a) => cmd_export(a),
        Command::Classify(a) => cmd_classify(a).map(|_| ()),
        Command::Pipeline(a) => cmd_pipeline(a),
        Command::Pair(a) => cmd_pair(a),
        Command::Benchmark(a) => cmd_benchmark(a),
        Command::Align(a) => cmd_align(a),
        Command::Inspect(a) => cmd_inspect(a),
        Command::DetectNuclei(a) => cmd_detect_nuclei(a),
        Command::Spatia(a) => cmd_spatia(a),
        Command::Flow(a) => cmd_flow(a),
        Command::ImageOnly(a) => cmd_image_only(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
