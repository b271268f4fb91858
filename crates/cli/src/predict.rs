//! `skinlens predict`: stream images through the model and report each one's classes.
//!
//! Images are read, decoded and classified a few at a time, so a folder of thousands never sits
//! in memory: each worker thread takes its own images through decode and a pass of their own
//! (one image per pass by default: its activations stay in cache). A bad file is reported
//! (naming it and the reason) and skipped; the exit code says whether any failed.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use skinlens_core::labels::{isic2018_permutation, ISIC2018_COLUMNS};
use skinlens_core::{Classifier, PreparedViews};
use skinlens_train::evaluate::IMAGES_PER_PASS;

use crate::ensemble::{Ensemble, TtaChoice};
use crate::inputs;

#[derive(clap::Args)]
pub struct PredictArgs {
    /// Model file (safetensors, one network or several members); repeat as PATH:WEIGHT for a
    /// weighted ensemble of files. Default: the model shipped in models/.
    #[arg(long = "model", value_name = "PATH[:WEIGHT]")]
    models: Vec<String>,
    /// Also write an ISIC 2018 Task 3 submission CSV (image,MEL,NV,BCC,AKIEC,BKL,DF,VASC).
    #[arg(long, value_name = "OUT")]
    csv: Option<PathBuf>,
    /// Print one JSON object per image (JSON Lines) instead of text.
    #[arg(long)]
    json: bool,
    /// Test-time views: `model` (what the model file declares), `flips` (the image and its
    /// three mirror images, 4 passes), `none`; e.g. `--tta=none`. A bare `--tta` means flips.
    #[arg(long, value_enum, default_value_t = TtaChoice::Model, num_args = 0..=1, require_equals = true, default_missing_value = "flips")]
    tta: TtaChoice,
    /// Images per forward pass (each worker thread runs passes of its own; one keeps a pass's
    /// activations in cache).
    #[arg(long, default_value_t = IMAGES_PER_PASS as u16, value_parser = clap::value_parser!(u16).range(1..=256))]
    batch: u16,
    /// Image files and/or folders (searched recursively for images).
    #[arg(required = true, value_name = "FILES_OR_FOLDERS")]
    inputs: Vec<PathBuf>,
}

/// Where each image's answer goes.
struct Sinks {
    json: bool,
    csv: Option<(csv::Writer<BufWriter<File>>, [usize; 7])>,
}

pub fn run(args: PredictArgs) -> Result<ExitCode> {
    // Every image allocates and frees the same activation buffers; keeping them mapped saves
    // the page faults and zeroing of a fresh mmap per layer.
    skinlens_train::train::allocator::keep_freed_memory();
    let ensemble = Ensemble::load(&args.models, args.tta)?;
    if ensemble.untrained {
        eprintln!("warning: this model's classification head is UNTRAINED (demo only): its probabilities mean nothing");
    }
    let mut sinks = Sinks { json: args.json, csv: None };
    if let Some(path) = &args.csv {
        let permutation = isic2018_permutation(&ensemble.classes)
            .context("--csv needs a model with the seven HAM10000 classes")?;
        let file = File::create(path).with_context(|| format!("{}: cannot create the CSV", path.display()))?;
        let mut writer = csv::Writer::from_writer(BufWriter::new(file));
        writer.write_record(std::iter::once("image").chain(ISIC2018_COLUMNS))?;
        sinks.csv = Some((writer, permutation));
    }

    let inputs::Inputs { paths, skipped } = inputs::expand(&args.inputs);
    let progress = ProgressBar::new(paths.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images  {per_sec}  ETA {eta}")
            .expect("valid template"),
    );
    let mut failures = 0usize;
    let batch = usize::from(args.batch);
    // A few passes per thread between reports, so the threads stay busy and the output keeps
    // the input order.
    let chunk_len = batch * rayon::current_num_threads() * 4;
    for chunk in paths.chunks(chunk_len) {
        let answers: Vec<Vec<Answer>> =
            chunk.par_chunks(batch).map(|images| classify(images, &ensemble)).collect::<Result<_>>()?;
        for (path, outcome) in answers.iter().flatten() {
            match outcome {
                Ok(p) => progress.suspend(|| report(&mut sinks, &ensemble.classes, path, p))?,
                Err(reason) => {
                    failures += 1;
                    progress.suspend(|| report_failure(&sinks, path, reason));
                }
            }
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    if let Some((mut writer, _)) = sinks.csv.take() {
        writer.flush().context("writing the CSV")?;
    }
    let total = paths.len();
    if !args.json {
        eprintln!("{} of {total} images classified with {}. Not a diagnosis: see a clinician.", total - failures, ensemble.description);
    }
    if let Some(line) = inputs::skipped_summary(&skipped) {
        eprintln!("{line}");
    }
    if failures > 0 {
        eprintln!("{failures} of {total} files failed (see the errors above)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// One image's probabilities, or why it could not be read.
type Answer = (PathBuf, Result<Vec<f32>, String>);

/// Decode `images` and classify the readable ones in one pass. An error of the model itself
/// ends the run.
fn classify(images: &[inputs::Entry], ensemble: &Ensemble) -> Result<Vec<Answer>> {
    let prepared: Vec<(PathBuf, Result<PreparedViews, String>)> = images
        .iter()
        .map(|entry| match entry {
            Ok(path) => (path.clone(), prepare(path, &ensemble.classifier)),
            Err((path, reason)) => (path.clone(), Err(reason.clone())),
        })
        .collect();
    let good: Vec<&PreparedViews> = prepared.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
    let mut probabilities = if good.is_empty() { Vec::new() } else { ensemble.probabilities(&good)? }.into_iter();
    Ok(prepared
        .into_iter()
        .map(|(path, outcome)| {
            let answer = outcome.map(|_| probabilities.next().expect("one row per decoded image"));
            (path, answer)
        })
        .collect())
}

fn prepare(path: &Path, classifier: &Classifier) -> Result<PreparedViews, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    classifier.prepare(&bytes).map_err(|e| e.to_string())
}

fn image_id(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn report(sinks: &mut Sinks, classes: &[String], path: &Path, probabilities: &[f32]) -> Result<()> {
    let mut ranked: Vec<(&String, f32)> = classes.iter().zip(probabilities.iter().copied()).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    if sinks.json {
        let by_class: serde_json::Map<String, serde_json::Value> =
            classes.iter().zip(probabilities).map(|(c, p)| (c.clone(), serde_json::json!(p))).collect();
        let line = serde_json::json!({
            "file": path.display().to_string(),
            "image": image_id(path),
            "probabilities": by_class,
            "top": ranked[0].0,
        });
        println!("{line}");
    } else {
        let text: Vec<String> = ranked.iter().map(|(c, p)| format!("{c} {p:.3}")).collect();
        println!("{}  {}", path.display(), text.join("  "));
    }
    if let Some((writer, permutation)) = &mut sinks.csv {
        let row = permutation.iter().map(|&i| format!("{}", probabilities[i]));
        writer.write_record(std::iter::once(image_id(path)).chain(row))?;
    }
    Ok(())
}

fn report_failure(sinks: &Sinks, path: &Path, reason: &str) {
    eprintln!("error: {}: {reason}", path.display());
    if sinks.json {
        println!("{}", serde_json::json!({"file": path.display().to_string(), "error": reason}));
    }
}
