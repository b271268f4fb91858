//! `skinlens fit-familiarity`: fit the page's "does this look like dermoscopy?" check on a model's
//! features and store it in the model (`skinlens_train::familiarity` does the work; its module
//! docs say how).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use skinlens_train::data::dataset::DataArgs;
use skinlens_train::familiarity::FitOptions;

use crate::train::SplitArgs;

#[derive(clap::Args, Debug)]
pub struct FitFamiliarityArgs {
    /// The model to fit the check for; it is written back with the check inside (see --out).
    #[arg(long, default_value = "models/skinlens.safetensors")]
    pub model: PathBuf,
    /// Where to write the model with the check. Default: --model itself.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A training run folder: use its saved split. Without it the split is drawn from --data
    /// exactly as `train --seed SEED` draws it (same fractions, same lesions).
    #[arg(long, value_name = "DIR")]
    pub run: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub split: SplitArgs,
    /// Fit on at most this many training images (seeded choice; 0 = all).
    #[arg(long, default_value_t = 0)]
    pub max_train: usize,
    /// Principal directions kept with their own variance (stored as f16: 2.5 KB each).
    #[arg(long, default_value_t = 384)]
    pub components: usize,
    /// Largest share of validation images the threshold may flag.
    #[arg(long, default_value_t = 0.02)]
    pub false_alarms: f64,
    /// Folders of images that are not dermoscopy (photos, screenshots…): report how many are
    /// flagged. Repeatable; nothing is fitted on them.
    #[arg(long = "outliers", value_name = "DIR")]
    pub outliers: Vec<PathBuf>,
    /// Add the measured rates to this model card (JSON, key `familiarity`).
    #[arg(long, value_name = "JSON")]
    pub card: Option<PathBuf>,
    /// Write the full report (rates, per-image outlier scores) as JSON here.
    #[arg(long, value_name = "JSON")]
    pub report: Option<PathBuf>,
    /// Images per forward pass (each worker thread runs passes of its own).
    #[arg(long, default_value_t = skinlens_train::evaluate::IMAGES_PER_PASS)]
    pub batch: usize,
    /// Also write every pooled feature vector used (little-endian f32, 1 file per set) here,
    /// for studying other detectors.
    #[arg(long, value_name = "DIR", hide = true)]
    pub dump_features: Option<PathBuf>,
}

pub fn run(args: FitFamiliarityArgs) -> Result<ExitCode> {
    let options = FitOptions {
        model: args.model,
        out: args.out,
        run: args.run,
        data: args.data,
        seed: args.split.seed,
        val_fraction: args.split.val_fraction,
        test_fraction: args.split.test_fraction,
        max_train: args.max_train,
        components: args.components,
        false_alarms: args.false_alarms,
        outliers: args.outliers,
        card: args.card,
        report: args.report,
        batch: args.batch,
        dump_features: args.dump_features,
    };
    skinlens_train::familiarity::run(&options)?;
    Ok(ExitCode::SUCCESS)
}
