//! Evaluation (`skinlens evaluate`, `export`): ISIC 2018 Task 3 metrics of a classifier (one model
//! or a weighted ensemble, with its test-time views) on a run's lesion-grouped split, or on any
//! labelled set of images.
//!
//! Images go through exactly what `predict` and the page do (decode, centre square, integer
//! bilinear resize to the model's input size). Confidence intervals resample lesions.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::Serialize;
use skinlens_core::labels::{isic2018_permutation, ISIC2018_COLUMNS};
use image::RgbImage;
use skinlens_core::preprocess::{decode_rgb8, DecodeLimits};
use skinlens_core::{Classifier, PreparedViews};

use crate::data::dataset::DataArgs;
use crate::data::images::locate;
use crate::data::records::{Record, Skips};
use crate::metrics::bootstrap::{lesion_bootstrap, Interval};
use crate::metrics::calibration::expected_calibration_error;
use crate::metrics::classification::{evaluate as score, Report};
use crate::train::run_state::RunFiles;

/// Labelled images ready for a model (`T`: one network's view or every member's), with what
/// could not be used.
pub struct LabelledImages<T = PreparedViews> {
    pub records: Vec<Record>,
    pub images: Vec<T>,
    pub skips: Skips,
}

/// Decode every record's image and frame it with `prepare`, as `predict` does.
pub fn load_labelled<T: Send>(records: &[Record], roots: &[PathBuf], prepare: impl Fn(&RgbImage) -> T + Sync) -> Result<LabelledImages<T>> {
    let loaded: Vec<Result<T, (String, String)>> = records
        .par_iter()
        .map(|r| {
            let path = locate(roots, &r.image_id).ok_or_else(|| ("image file not found".to_string(), r.image_id.clone()))?;
            let bytes = std::fs::read(&path).map_err(|e| (format!("cannot read ({e})"), path.display().to_string()))?;
            let rgb = decode_rgb8(&bytes, &DecodeLimits::default()).map_err(|e| (format!("cannot decode ({e})"), path.display().to_string()))?;
            Ok(prepare(&rgb))
        })
        .collect();
    let mut out = LabelledImages { records: Vec::new(), images: Vec::new(), skips: Skips::default() };
    for (r, l) in records.iter().zip(loaded) {
        match l {
            Ok(image) => {
                out.records.push(r.clone());
                out.images.push(image);
            }
            Err((reason, what)) => out.skips.add(reason, what),
        }
    }
    if out.records.is_empty() {
        bail!("none of the {} images could be loaded from {}", records.len(), roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    Ok(out)
}

/// The records of one part of a run's saved split (with the run's data options).
pub fn run_part(run: &Path, part: &str, classes: &[String]) -> Result<(Vec<Record>, DataArgs)> {
    let files = RunFiles::new(run);
    let config = files.read_config()?;
    let split = files.read_split()?;
    let ids: HashSet<&str> = match part {
        "test" => split.test.iter().map(String::as_str).collect(),
        "val" | "validation" => split.val.iter().map(String::as_str).collect(),
        "train" => split.train.iter().map(String::as_str).collect(),
        other => bail!("--part {other}: choose test, val or train"),
    };
    let (records, _) = config.data.records(classes, config.seed)?;
    let chosen: Vec<Record> = records.into_iter().filter(|r| ids.contains(r.image_id.as_str())).collect();
    if chosen.len() != ids.len() {
        bail!("{}: {} images of the {part} split are no longer in the data ({} found)", files.split.display(), ids.len(), chosen.len());
    }
    Ok((chosen, config.data))
}

#[derive(Debug, Clone, Serialize)]
pub struct Intervals {
    pub balanced_accuracy: Interval,
    pub macro_auc: Interval,
    pub accuracy: Interval,
    pub recall: BTreeMap<String, Interval>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub models: String,
    pub part: String,
    pub images: usize,
    pub lesions: usize,
    pub skipped: Vec<String>,
    pub metrics: Report,
    /// 95 % percentile bootstrap over lesions.
    pub confidence_intervals: Option<Intervals>,
    pub bootstrap_rounds: usize,
    pub expected_calibration_error: f64,
    #[serde(skip)]
    pub probabilities: Vec<Vec<f32>>,
}

/// The probabilities `classifier` answers for `images` (every member, every view), `batch` at a time.
pub fn ensemble_probabilities(classifier: &Classifier, images: &[PreparedViews], batch: usize) -> Result<Vec<Vec<f32>>> {
    in_passes(images, batch, |chunk| {
        let refs: Vec<&PreparedViews> = chunk.iter().collect();
        Ok(classifier.classify(&refs)?.into_iter().map(|c| c.probabilities).collect())
    })
}

/// Images per forward pass when scoring a set: one keeps a pass's activations in cache
/// (`skinlens predict` over 300 images: 2.8 s on one thread, 3.4 s with 8 per pass).
pub const IMAGES_PER_PASS: usize = 1;

/// `pass` over `items` in passes of `batch`, the passes spread over rayon's workers (each one
/// a thread's own, rather than every layer of one pass split between threads); the answers
/// in input order.
pub fn in_passes<I: Sync, T: Send>(items: &[I], batch: usize, pass: impl Fn(&[I]) -> Result<Vec<T>> + Sync) -> Result<Vec<T>> {
    let answers: Vec<Vec<T>> = items.par_chunks(batch.max(1)).map(&pass).collect::<Result<_>>()?;
    Ok(answers.into_iter().flatten().collect())
}

/// Metrics, lesion-bootstrap intervals and calibration error of `probabilities`.
pub fn assess(probabilities: Vec<Vec<f32>>, records: &[Record], classes: &[String], rounds: usize, models: String, part: &str, skips: &Skips) -> Evaluation {
    let labels: Vec<usize> = records.iter().map(|r| r.label).collect();
    let metrics = score(&probabilities, &labels, classes);
    let lesions: Vec<String> = records.iter().map(|r| r.lesion_id.clone()).collect();
    let confidence_intervals = (rounds > 0).then(|| {
        let intervals = lesion_bootstrap(&lesions, rounds, 2018, |idx| {
            let p: Vec<Vec<f32>> = idx.iter().map(|&i| probabilities[i].clone()).collect();
            let y: Vec<usize> = idx.iter().map(|&i| labels[i]).collect();
            let r = score(&p, &y, classes);
            let mut v = vec![r.balanced_accuracy, r.macro_auc, r.accuracy];
            v.extend(r.per_class.iter().map(|c| c.recall));
            v
        });
        Intervals {
            balanced_accuracy: intervals[0],
            macro_auc: intervals[1],
            accuracy: intervals[2],
            recall: classes.iter().cloned().zip(intervals[3..].iter().copied()).collect(),
        }
    });
    Evaluation {
        models,
        part: part.to_string(),
        images: records.len(),
        lesions: lesions.iter().collect::<HashSet<_>>().len(),
        skipped: skips.summary(),
        expected_calibration_error: expected_calibration_error(&probabilities, &labels, 15),
        metrics,
        confidence_intervals,
        bootstrap_rounds: rounds,
        probabilities,
    }
}

/// A human-readable summary (stderr).
pub fn print_summary(e: &Evaluation) {
    let m = &e.metrics;
    let ci = |i: Option<&Interval>| i.map(|i| format!(" [{:.3}, {:.3}]", i.low, i.high)).unwrap_or_default();
    let cis = e.confidence_intervals.as_ref();
    eprintln!("{} — {} images ({} lesions), {}", e.part, e.images, e.lesions, e.models);
    eprintln!("  balanced multiclass accuracy {:.4}{}", m.balanced_accuracy, ci(cis.map(|c| &c.balanced_accuracy)));
    eprintln!("  macro ROC AUC {:.4}{}   accuracy {:.4}{}   MCC {:.4}   mean AP {:.4}   ECE {:.4}", m.macro_auc, ci(cis.map(|c| &c.macro_auc)), m.accuracy, ci(cis.map(|c| &c.accuracy)), m.mcc, m.mean_average_precision, e.expected_calibration_error);
    eprintln!("  {:<6} {:>7} {:>8} {:>17} {:>9} | {:>6} {:>6} {:>6} {:>6} | {:>6} {:>6}", "class", "support", "recall", "95% CI", "precision", "sens.", "spec.", "PPV", "F1", "AUC", "AP");
    for c in &m.per_class {
        let interval = cis.and_then(|x| x.recall.get(&c.class)).map(|i| format!("[{:.3}, {:.3}]", i.low, i.high)).unwrap_or_default();
        eprintln!(
            "  {:<6} {:>7} {:>8.4} {:>17} {:>9.4} | {:>6.3} {:>6.3} {:>6.3} {:>6.3} | {:>6.4} {:>6.3}",
            c.class, c.support, c.recall, interval, c.argmax_precision, c.sensitivity, c.specificity, c.precision, c.f1, c.auc, c.average_precision
        );
    }
    eprintln!("  (recall, precision: argmax prediction; sens./spec./PPV/F1: probability > 0.5, as the official scorer)");
}

/// ISIC 2018 submission CSV (and optionally the ground truth) in the official column order.
pub fn write_isic_csvs(records: &[Record], probabilities: &[Vec<f32>], classes: &[String], predictions: Option<&Path>, truth: Option<&Path>) -> Result<()> {
    let perm = isic2018_permutation(classes).context("ISIC CSVs need the seven HAM10000 classes")?;
    let write = |path: &Path, rows: &mut dyn Iterator<Item = (String, Vec<String>)>| -> Result<()> {
        let mut w = csv::Writer::from_path(path).with_context(|| format!("{}: cannot create", path.display()))?;
        w.write_record(std::iter::once("image").chain(ISIC2018_COLUMNS))?;
        for (id, values) in rows {
            w.write_record(std::iter::once(id).chain(values))?;
        }
        w.flush().with_context(|| format!("{}: cannot write", path.display()))
    };
    if let Some(path) = predictions {
        write(path, &mut records.iter().zip(probabilities).map(|(r, p)| (r.image_id.clone(), perm.iter().map(|&i| format!("{}", p[i])).collect())))?;
    }
    if let Some(path) = truth {
        write(path, &mut records.iter().map(|r| (r.image_id.clone(), perm.iter().map(|&i| if i == r.label { "1.0".into() } else { "0.0".into() }).collect())))?;
    }
    Ok(())
}
