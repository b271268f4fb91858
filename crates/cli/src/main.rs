//! `skinlens`: classify dermoscopy images, and train, evaluate and export the model behind it.
//!
//! The command line only: each command parses its arguments here, prints, and calls the core
//! (`skinlens_core`) or the trainer (`skinlens_train`).

mod ensemble;
mod evaluate;
mod export;
mod fit_familiarity;
mod inputs;
mod model_file;
mod predict;
mod train;
mod version;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "skinlens", version = version::VERSION_TEXT.as_str(), about = "Skin-lesion classifier (HAM10000 / ISIC 2018 Task 3). Not a diagnosis: see a clinician.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify images (files or folders) and print each one's classes by probability.
    Predict(predict::PredictArgs),
    /// Fine-tune EfficientNet-Lite0 on HAM10000 (lesion-grouped split, resumable).
    Train(train::TrainArgs),
    /// ISIC 2018 metrics of a model or ensemble on a run's lesion-grouped split or labelled images.
    Evaluate(evaluate::EvaluateArgs),
    /// Fold, calibrate and test a run's checkpoint; write models/skinlens.safetensors and its card.
    Export(export::ExportArgs),
    /// Fit the page's "does this look like dermoscopy?" check on a model's features; store it in the model.
    FitFamiliarity(fit_familiarity::FitFamiliarityArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Predict(args) => predict::run(args),
        Command::Train(args) => train::run(args).map(|()| ExitCode::SUCCESS),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Export(args) => export::run(args),
        Command::FitFamiliarity(args) => fit_familiarity::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
