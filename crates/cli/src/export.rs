//! `skinlens export`: one or more runs' checkpoints → the shipped model and its card
//! (`skinlens_train::export` does the work; its module docs say how).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use skinlens_train::export::ExportOptions;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The training run folder (config, split, history) of the first member.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Checkpoint to export. Default: the run's best.safetensors.
    #[arg(long, value_name = "SAFETENSORS")]
    pub checkpoint: Option<PathBuf>,
    #[arg(long, default_value = "models/skinlens.safetensors")]
    pub out: PathBuf,
    #[arg(long, default_value = "models/skinlens.card.json")]
    pub card: PathBuf,
    /// Storage type: f32, f16, int8 (the 1×1 weights of at least 32,768 values in runs of ≤ 32
    /// inputs with f32 scales, the rest f16; about 0.6 of f16), or auto: for each member, the
    /// smallest whose copy of it loses at most 0.005 validation balanced accuracy and 0.002
    /// macro AUC against f32.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// Input size each member runs at: `train` (the size it was trained at), `auto` (the best on
    /// validation among --size-factors × its training size), or a number of pixels.
    #[arg(long, default_value = "train")]
    pub size: String,
    /// Multiples of the training size that `--size auto` tries (FixRes: networks trained on
    /// random-resized crops often do better a little larger at test time).
    #[arg(long, value_delimiter = ',', default_value = "1.0,1.17,1.33")]
    pub size_factors: Vec<f64>,
    /// Model version written into the card.
    #[arg(long, default_value = "1.0.0")]
    pub version: String,
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Decision rule: subtract τ·log(prior) from the logits, the prior being the class mix the
    /// network was trained on (after oversampling). `auto` picks τ on validation balanced
    /// accuracy from 0, 0.25, …, 2; a number fixes it; 0 leaves the network as trained.
    #[arg(long, default_value = "auto")]
    pub prior_correction: String,
    /// Another member: a training run folder (its best.safetensors), a checkpoint inside one, or
    /// an exported model file with its card beside it (`NAME.safetensors` + `NAME.card.json`),
    /// whose networks join as exported. Repeatable. Every member must share the first run's
    /// validation and test split.
    #[arg(long, value_name = "RUN_OR_CHECKPOINT")]
    pub ensemble_with: Vec<PathBuf>,
    /// Member weights: `auto` (the best validation balanced accuracy on a 0.1 grid; a member
    /// may get 0 and be left out), `equal`, or one number per member (normalised).
    #[arg(long, default_value = "auto")]
    pub weights: String,
    /// At most this many members get a weight above 0 (`auto` then searches only such mixes):
    /// the page downloads every member, and its budget is 25 MB.
    #[arg(long, value_name = "N")]
    pub max_members: Option<usize>,
    /// The members with a weight above 0 take at most this many megabytes (10^6 bytes), each in
    /// its own storage (`auto` then searches only such mixes). The page's budget is 25 MB for
    /// everything it downloads; its code and wasm take about 2.6 MB of that.
    #[arg(long, value_name = "MB")]
    pub max_mb: Option<f64>,
    /// Test-time views written into the model: `auto` (flips when they raise validation
    /// balanced accuracy), `flips` or `none`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "flips", "none"])]
    pub tta: String,
    /// Write candidate N (numbered from 1 as the export prints them: --run, the other runs, then
    /// the networks of exported files) first if it ships. The page's preview, heat map and
    /// "not a dermoscopy image" check read the first member.
    #[arg(long, value_name = "N")]
    pub lead: Option<usize>,
}

pub fn run(args: ExportArgs) -> Result<ExitCode> {
    let options = ExportOptions {
        run: args.run,
        checkpoint: args.checkpoint,
        out: args.out,
        card: args.card,
        dtype: args.dtype,
        size: args.size,
        size_factors: args.size_factors,
        version: args.version,
        bootstrap: args.bootstrap,
        prior_correction: args.prior_correction,
        ensemble_with: args.ensemble_with,
        weights: args.weights,
        max_members: args.max_members,
        max_bytes: args.max_mb.map(|mb| (mb * 1e6) as usize),
        tta: args.tta,
        lead: args.lead,
    };
    skinlens_train::export::run(&options)?;
    Ok(ExitCode::SUCCESS)
}
