//! `skinlens evaluate`: ISIC 2018 Task 3 metrics of one model or a weighted ensemble (with
//! optional flip TTA) on a run's lesion-grouped split, or on any labelled set of images
//! (`skinlens_train::evaluate` does the work).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use skinlens_train::data::dataset::DataArgs;
use skinlens_train::evaluate::{assess, ensemble_probabilities, load_labelled, print_summary, run_part, write_isic_csvs};

use crate::ensemble::{Ensemble, TtaChoice};

#[derive(clap::Args, Debug)]
pub struct EvaluateArgs {
    /// Model file; repeat as PATH:WEIGHT for a weighted ensemble. Default: the shipped model.
    #[arg(long = "model", value_name = "PATH[:WEIGHT]")]
    pub models: Vec<String>,
    /// Test-time views: `model` (what the model file declares), `flips` (the image and its
    /// three mirror images, 4 passes), `none`; e.g. `--tta=none`. A bare `--tta` means flips.
    #[arg(long, value_enum, default_value_t = TtaChoice::Model, num_args = 0..=1, require_equals = true, default_missing_value = "flips")]
    pub tta: TtaChoice,
    /// A training run folder: evaluate on its split (split.json) with its data options.
    #[arg(long, value_name = "DIR")]
    pub run: Option<PathBuf>,
    /// Which part of the run's split: test, val, train (without --run: every labelled image).
    #[arg(long, default_value = "test")]
    pub part: String,
    #[command(flatten)]
    pub data: DataArgs,
    /// Write the full report as JSON here.
    #[arg(long, value_name = "JSON")]
    pub report: Option<PathBuf>,
    /// Draw the confusion matrix as PNG here.
    #[arg(long, value_name = "PNG")]
    pub confusion: Option<PathBuf>,
    /// Write the predictions as an ISIC 2018 submission CSV here…
    #[arg(long, value_name = "CSV")]
    pub predictions: Option<PathBuf>,
    /// …and the matching one-hot ground truth here (for the official scorer).
    #[arg(long, value_name = "CSV")]
    pub ground_truth_out: Option<PathBuf>,
    /// Bootstrap rounds for the 95 % confidence intervals (0: none).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Images per forward pass (each worker thread runs passes of its own).
    #[arg(long, default_value_t = skinlens_train::evaluate::IMAGES_PER_PASS)]
    pub batch: usize,
}

pub fn run(args: EvaluateArgs) -> Result<ExitCode> {
    let ensemble = Ensemble::load(&args.models, args.tta)?;
    let classes = ensemble.classes.clone();
    let explicit_data = args.data.data.is_some() || args.data.metadata.is_some() || args.data.ground_truth.is_some();
    let (records, data) = match &args.run {
        Some(run) => {
            let (records, run_data) = run_part(run, &args.part, &classes)?;
            (records, if explicit_data { args.data.clone() } else { run_data })
        }
        None => {
            let (records, _) = args.data.records(&classes, 0)?;
            (records, args.data.clone())
        }
    };
    let loaded = load_labelled(&records, &data.roots(), |rgb| ensemble.prepare_decoded(rgb))?;
    for line in loaded.skips.summary() {
        eprintln!("skipped {line}");
    }
    let probabilities = ensemble_probabilities(&ensemble.classifier, &loaded.images, args.batch)?;
    let part = if args.run.is_some() { args.part.clone() } else { "all labelled images".into() };
    let evaluation = assess(probabilities, &loaded.records, &classes, args.bootstrap, ensemble.description.clone(), &part, &loaded.skips);
    print_summary(&evaluation);
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&evaluation)?).with_context(|| format!("{}: cannot write the report", path.display()))?;
    }
    if let Some(path) = &args.confusion {
        let title = format!("{} ({} images) — balanced accuracy {:.3}", part, evaluation.images, evaluation.metrics.balanced_accuracy);
        skinlens_train::plots::confusion_matrix(&evaluation.metrics.confusion, &classes, &title, path)?;
    }
    write_isic_csvs(&loaded.records, &evaluation.probabilities, &classes, args.predictions.as_deref(), args.ground_truth_out.as_deref())?;
    if ensemble.untrained {
        eprintln!("warning: a model in this evaluation has an UNTRAINED head");
    }
    Ok(ExitCode::SUCCESS)
}
