//! Fitting the out-of-distribution check the page runs on every image (see
//! `skinlens_core::familiarity`) and storing it in the model file (`skinlens fit-familiarity`).
//!
//! 1. Pooled head features of the training part of the lesion-grouped split (the model's first
//!    network, first view: what the page computes).
//! 2. After a square root (the features are ReLU6 outputs, skewed; their roots are closer to
//!    Gaussian), the mean and the top principal directions of the covariance (nalgebra's
//!    symmetric eigen-decomposition); the other directions share one variance.
//! 3. Threshold: the validation score that at most `--false-alarms` of validation images exceed.
//! 4. Report the false-alarm rate on the test part and, with `--outliers DIR`, the share of
//!    non-dermoscopy images flagged, per folder.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use safetensors::SafeTensors;
use serde_json::json;
use skinlens_core::familiarity::{keys, pooled_features, transform, FamiliarityCheck};
use skinlens_core::model::storage::StoredTensor;
use skinlens_core::preprocess::{decode_rgb8, input_tensor, prepare_decoded_as, DecodeLimits, InputSpec, PreparedImage};
use skinlens_core::{Classifier, HAM10000_CLASSES};

use crate::data::dataset::DataArgs;
use crate::data::images::locate;
use crate::data::records::Record;
use crate::data::split::{split, SplitPlan};
use crate::evaluate::{in_passes, load_labelled, run_part};

/// What `run` does (`skinlens fit-familiarity`'s options: see its `--help` for each one's meaning).
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// The model to fit the check for.
    pub model: PathBuf,
    /// Where to write the model with the check; `None`: `model` itself.
    pub out: Option<PathBuf>,
    /// A training run folder whose saved split is used; `None`: drawn from `data` as `train` draws it.
    pub run: Option<PathBuf>,
    pub data: DataArgs,
    pub seed: u64,
    pub val_fraction: f64,
    pub test_fraction: f64,
    /// Fit on at most this many training images (seeded choice; 0 = all).
    pub max_train: usize,
    /// Principal directions kept with their own variance.
    pub components: usize,
    /// Largest share of validation images the threshold may flag.
    pub false_alarms: f64,
    /// Folders of images that are not dermoscopy: how many are flagged is reported.
    pub outliers: Vec<PathBuf>,
    /// A model card to add the measured rates to (key `familiarity`).
    pub card: Option<PathBuf>,
    /// Where to write the full report (JSON).
    pub report: Option<PathBuf>,
    pub batch: usize,
    /// Where to write every pooled feature vector used (little-endian f32, 1 file per set).
    pub dump_features: Option<PathBuf>,
}

fn dump(dir: Option<&Path>, name: &str, features: &[Vec<f32>]) -> Result<()> {
    let Some(dir) = dir else { return Ok(()) };
    std::fs::create_dir_all(dir)?;
    let bytes: Vec<u8> = features.iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(dir.join(format!("{name}.f32")), bytes).with_context(|| format!("{}: cannot write", dir.display()))
}

/// Fit the check for `options.model` and write the model with it (see the module docs).
pub fn run(options: &FitOptions) -> Result<()> {
    let bytes = std::fs::read(&options.model).with_context(|| format!("{}: cannot read the model", options.model.display()))?;
    let classifier = Classifier::from_safetensors(&bytes).with_context(|| format!("{}: not a usable model", options.model.display()))?;
    // The first member's own view (its size and colour constancy): its features are the ones checked.
    let spec = classifier.members()[0].input_spec();
    let classes = classifier.metadata().classes.clone();
    let SplitRecords { train, val, test, roots } = split_records(options, &classes)?;
    let train = subsample(train, options.max_train, options.seed);
    eprintln!("lesion-grouped split: fitting on {} training images, threshold on {} validation, measuring on {} test", train.len(), val.len(), test.len());

    let features_of = |records: &[Record], part: &str| -> Result<Vec<Vec<f32>>> {
        let started = std::time::Instant::now();
        let images = load_labelled(records, &roots, |rgb| prepare_decoded_as(rgb, spec))?;
        ensure!(images.skips.summary().is_empty(), "{part}: some images could not be used: {}", images.skips.summary().join("; "));
        let features = pooled_batches(&classifier, &images.images, options.batch)?;
        eprintln!("{part}: {} images in {:.0} s", features.len(), started.elapsed().as_secs_f64());
        Ok(features)
    };
    let dump_dir = options.dump_features.as_deref();
    let train_features = features_of(&train, "train")?;
    dump(dump_dir, "train", &train_features)?;
    let mut check = fit(&train_features, options.components)?;

    let val_features = features_of(&val, "val")?;
    dump(dump_dir, "val", &val_features)?;
    let val_scores = scores(&check, &val_features)?;
    check.threshold = threshold_for(&val_scores, options.false_alarms);
    let test_features = features_of(&test, "test")?;
    dump(dump_dir, "test", &test_features)?;
    let test_scores = scores(&check, &test_features)?;
    let rate = |s: &[f32]| s.iter().filter(|&&x| x > check.threshold).count() as f64 / s.len().max(1) as f64;
    let (val_rate, test_rate) = (rate(&val_scores), rate(&test_scores));
    let test_flagged = test_scores.iter().filter(|&&x| x > check.threshold).count();
    eprintln!("threshold {:.3}: false alarms on validation {:.2} % ({} images), on test {:.2} % ({test_flagged} of {})", check.threshold, val_rate * 100.0, val_scores.len(), test_rate * 100.0, test_scores.len());

    let mut outlier_report = BTreeMap::new();
    for dir in &options.outliers {
        let (names, images) = load_folder(dir, spec)?;
        let folder_features = pooled_batches(&classifier, &images, options.batch)?;
        dump(dump_dir, &format!("outliers-{}", dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()), &folder_features)?;
        let folder_scores = scores(&check, &folder_features)?;
        let flagged = folder_scores.iter().filter(|&&x| x > check.threshold).count();
        eprintln!("{}: {flagged} of {} flagged ({:.1} %)", dir.display(), names.len(), 100.0 * flagged as f64 / names.len() as f64);
        let per_image: BTreeMap<_, _> = names.iter().cloned().zip(folder_scores.iter().copied()).collect();
        outlier_report.insert(dir.display().to_string(), json!({"images": names.len(), "flagged": flagged, "scores": per_image}));
    }
    let outliers_total: usize = outlier_report.values().map(|v| v["images"].as_u64().unwrap_or(0) as usize).sum();
    let outliers_flagged: usize = outlier_report.values().map(|v| v["flagged"].as_u64().unwrap_or(0) as usize).sum();

    check.summary = format!(
        "low-rank Mahalanobis distance on the pooled features ({} directions), fitted on {} training images of the lesion-grouped split; threshold {:.3} flags {:.1} % of validation and {:.1} % of test images{}",
        check.components(),
        train.len(),
        check.threshold,
        val_rate * 100.0,
        test_rate * 100.0,
        if outliers_total > 0 { format!(", and {outliers_flagged} of {outliers_total} non-dermoscopy images") } else { String::new() }
    );
    let out = options.out.clone().unwrap_or_else(|| options.model.clone());
    let written = with_check(&bytes, &check)?;
    // The check must read back from the bytes written, and the model must still load from them.
    ensure!(FamiliarityCheck::from_safetensors(&written)?.is_some(), "internal error: the check did not read back");
    Classifier::from_safetensors(&written).context("internal error: the model no longer loads with the check")?;
    std::fs::write(&out, &written).with_context(|| format!("{}: cannot write the model", out.display()))?;
    eprintln!("wrote {} ({} bytes; the check adds {} values)", out.display(), written.len(), check.dim() * (check.components() + 1) + check.components());

    let summary = json!({
        "method": "low-rank (probabilistic PCA) Mahalanobis distance on the square roots of the pooled head features, per dimension",
        "components": check.components(),
        "fitted_on": format!("{} training images of the lesion-grouped split", train.len()),
        "threshold": check.threshold,
        "false_alarm_rate": {"validation": val_rate, "test": test_rate, "test_images": test_scores.len(), "test_flagged": test_flagged},
        "detection_rate_non_dermoscopy": if outliers_total > 0 { json!({"images": outliers_total, "flagged": outliers_flagged, "rate": outliers_flagged as f64 / outliers_total as f64}) } else { json!(null) },
    });
    if let Some(card_path) = &options.card {
        let text = std::fs::read_to_string(card_path).with_context(|| format!("{}: cannot read the card", card_path.display()))?;
        let mut card: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", card_path.display()))?;
        let Some(object) = card.as_object_mut() else { bail!("{}: the card is not a JSON object", card_path.display()) };
        object.insert("familiarity".into(), summary.clone());
        std::fs::write(card_path, serde_json::to_string_pretty(&card)? + "\n").with_context(|| format!("{}: cannot write the card", card_path.display()))?;
    }
    if let Some(report) = &options.report {
        let full = json!({"summary": summary, "outliers": outlier_report, "test_scores": test_scores, "validation_scores": val_scores});
        std::fs::write(report, serde_json::to_string_pretty(&full)?).with_context(|| format!("{}: cannot write the report", report.display()))?;
    }
    Ok(())
}

/// Train, validation and test records, and the image roots.
struct SplitRecords {
    train: Vec<Record>,
    val: Vec<Record>,
    test: Vec<Record>,
    roots: Vec<PathBuf>,
}

fn split_records(options: &FitOptions, classes: &[String]) -> Result<SplitRecords> {
    if let Some(run) = &options.run {
        let (train, data) = run_part(run, "train", classes)?;
        let (val, _) = run_part(run, "val", classes)?;
        let (test, _) = run_part(run, "test", classes)?;
        return Ok(SplitRecords { train, val, test, roots: data.roots() });
    }
    ensure!(options.data.data.is_some() || options.data.ground_truth.is_some(), "give --run DIR or --data DIR (e.g. ../shared/data/ham10000)");
    ensure!(classes.iter().map(String::as_str).eq(HAM10000_CLASSES.iter().copied()), "the model's classes {classes:?} are not HAM10000's; use --run");
    let (records, _) = options.data.records(classes, options.seed)?;
    let roots = options.data.roots();
    // As `train`: images that cannot be found are left out before the split is drawn.
    let records: Vec<Record> = records.into_iter().filter(|r| locate(&roots, &r.image_id).is_some()).collect();
    let plan = SplitPlan { seed: options.seed, val_fraction: options.val_fraction, test_fraction: options.test_fraction, fold: None };
    let parts = split(&records, classes, &plan)?;
    Ok(SplitRecords { train: parts.train, val: parts.val, test: parts.test, roots })
}

fn subsample(mut records: Vec<Record>, limit: usize, seed: u64) -> Vec<Record> {
    if limit > 0 && records.len() > limit {
        records.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        records.truncate(limit);
    }
    records
}

/// Pooled head features of the first network, first view, in passes of `batch` images spread
/// over the worker threads.
fn pooled_batches(classifier: &Classifier, images: &[PreparedImage], batch: usize) -> Result<Vec<Vec<f32>>> {
    in_passes(images, batch, |chunk| {
        let views: Vec<_> = chunk.iter().map(|p| &p.model_view).collect();
        let features = classifier.model().features(&input_tensor(&views, &Device::Cpu)?)?;
        (0..chunk.len()).map(|i| Ok(pooled_features(&features.narrow(0, i, 1)?)?)).collect()
    })
}

fn scores(check: &FamiliarityCheck, features: &[Vec<f32>]) -> Result<Vec<f32>> {
    Ok(features.iter().map(|f| check.score(f)).collect::<skinlens_core::Result<Vec<_>>>()?)
}

/// The smallest threshold that at most `rate` of `scores` exceed.
fn threshold_for(scores: &[f32], rate: f64) -> f32 {
    let mut sorted = scores.to_vec();
    sorted.sort_by(f32::total_cmp);
    let allowed = (rate * sorted.len() as f64).floor() as usize;
    sorted[sorted.len() - 1 - allowed.min(sorted.len() - 1)]
}

/// Mean, top `k` principal directions and variances, and the mean residual variance, of the
/// transformed features (see `skinlens_core::familiarity::transform`).
fn fit(features: &[Vec<f32>], k: usize) -> Result<FamiliarityCheck> {
    let n = features.len();
    let d = features.first().map_or(0, Vec::len);
    ensure!(n > k + 1 && d > k, "{n} training images of {d} features cannot fit {k} directions");
    let transformed: Vec<Vec<f32>> = features.iter().map(|f| transform(f)).collect();
    let mut mean = vec![0f64; d];
    for f in &transformed {
        mean.iter_mut().zip(f).for_each(|(m, x)| *m += f64::from(*x) / n as f64);
    }
    let centred: Vec<f32> = transformed.iter().flat_map(|f| f.iter().zip(&mean).map(|(x, m)| (f64::from(*x) - m) as f32)).collect();
    let x = Tensor::from_vec(centred, (n, d), &Device::Cpu)?;
    let covariance = (x.t()?.matmul(&x)? / (n - 1) as f64)?.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let eigen = nalgebra::DMatrix::from_row_slice(d, d, &covariance).symmetric_eigen();
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
    let total_variance: f64 = eigen.eigenvalues.iter().sum();
    let explained: f64 = order[..k].iter().map(|&i| eigen.eigenvalues[i]).sum();
    let residual_variance = ((total_variance - explained) / (d - k) as f64).max(1e-12) as f32;
    // Directions are stored in f16 (half the size); round them now, so that the threshold is
    // chosen with exactly the directions the page will use.
    let directions: Vec<f32> =
        order[..k].iter().flat_map(|&i| eigen.eigenvectors.column(i).iter().map(|&v| half::f16::from_f64(v).to_f32()).collect::<Vec<_>>()).collect();
    Ok(FamiliarityCheck {
        mean: mean.iter().map(|&m| m as f32).collect(),
        directions,
        variances: order[..k].iter().map(|&i| (eigen.eigenvalues[i] as f32).max(residual_variance * 1e-3)).collect(),
        residual_variance,
        threshold: f32::INFINITY,
        summary: String::new(),
    })
}

/// Every decodable image of a folder (sorted by name), framed as the model sees it.
fn load_folder(dir: &Path, spec: InputSpec) -> Result<(Vec<String>, Vec<PreparedImage>)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list the folder", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let loaded: Vec<(String, Option<PreparedImage>)> = paths
        .par_iter()
        .map(|path| {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let prepared = std::fs::read(path)
                .ok()
                .and_then(|bytes| decode_rgb8(&bytes, &DecodeLimits::default()).ok())
                .map(|rgb| prepare_decoded_as(&rgb, spec));
            (name, prepared)
        })
        .collect();
    let mut names = Vec::new();
    let mut images = Vec::new();
    for (name, prepared) in loaded {
        match prepared {
            Some(image) => {
                names.push(name);
                images.push(image);
            }
            None => eprintln!("{}: {name} is not a readable image; left out", dir.display()),
        }
    }
    ensure!(!images.is_empty(), "{}: no readable images", dir.display());
    Ok((names, images))
}

/// The model file's bytes with `check` stored in them (replacing any earlier one); every other
/// tensor and metadata entry is kept as it was, dtype included.
fn with_check(model: &[u8], check: &FamiliarityCheck) -> Result<Vec<u8>> {
    let (_, header) = SafeTensors::read_metadata(model).context("the model is not a safetensors file")?;
    let mut metadata: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
    let file = SafeTensors::deserialize(model).context("the model is not a safetensors file")?;
    let ours: HashSet<&str> = [keys::MEAN, keys::DIRECTIONS, keys::VARIANCES].into_iter().collect();
    // Copied byte for byte: int8 weights have no candle type to pass through.
    let mut tensors: Vec<(String, StoredTensor)> = Vec::new();
    for (name, view) in file.tensors() {
        if !ours.contains(name.as_str()) {
            tensors.push((name, StoredTensor::from_view(&view)));
        }
    }
    let (extra, entries) = check.to_entries()?;
    for (name, tensor) in extra {
        tensors.push((name, StoredTensor::from_tensor(&tensor)?));
    }
    metadata.retain(|key, _| !key.starts_with("skinlens.familiarity."));
    metadata.extend(entries);
    Ok(safetensors::serialize(tensors, Some(metadata))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_finds_the_spread_and_scores_the_training_data_near_one() -> Result<()> {
        // 400 points in 6 dimensions, spread 3 along the first axis, 1 elsewhere (after the sqrt
        // transform the check applies, so the raw values are squares).
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut normal = || (0..12).map(|_| rand::Rng::random_range(&mut rng, -0.5f64..0.5)).sum::<f64>();
        let points: Vec<Vec<f32>> = (0..400)
            .map(|_| (0..6).map(|j| (10.0 + normal() * if j == 0 { 3.0 } else { 1.0 }).powi(2) as f32).collect())
            .collect();
        let check = fit(&points, 1)?;
        assert!(check.directions[0].abs() > 0.99, "first direction {:?}", &check.directions[..6]);
        assert!((check.variances[0] - 9.0).abs() < 1.5 && (check.residual_variance - 1.0).abs() < 0.2, "{:?} {}", check.variances, check.residual_variance);
        let mean_score = points.iter().map(|p| check.score(p).unwrap()).sum::<f32>() / points.len() as f32;
        assert!((mean_score - 1.0).abs() < 0.1, "mean training score {mean_score}");
        Ok(())
    }

    #[test]
    fn the_check_is_added_without_touching_int8_weights() -> Result<()> {
        use safetensors::tensor::TensorView;
        let weight = TensorView::new(safetensors::Dtype::I8, vec![2, 3], &[1, 255, 127, 129, 0, 7])?;
        let scale = Tensor::new(&[0.5f32, 0.25], &Device::Cpu)?;
        let model = safetensors::serialize(
            [("w".to_string(), StoredTensor::from_view(&weight)), ("w_scale".to_string(), StoredTensor::from_tensor(&scale)?)],
            Some(HashMap::from([("skinlens.arch".to_string(), "x".to_string())])),
        )?;
        let points: Vec<Vec<f32>> = (0..50).map(|i| (0..6).map(|j| ((i * 7 + j * 3) % 11) as f32).collect()).collect();
        let check = FamiliarityCheck { threshold: 2.0, ..fit(&points, 1)? };
        let written = with_check(&model, &check)?;
        let file = SafeTensors::deserialize(&written)?;
        let again = file.tensor("w")?;
        assert_eq!((again.dtype(), again.data()), (safetensors::Dtype::I8, weight.data()));
        assert_eq!(file.tensor("w_scale")?.data(), SafeTensors::deserialize(&model)?.tensor("w_scale")?.data());
        assert!(FamiliarityCheck::from_safetensors(&written)?.is_some());
        Ok(())
    }

    #[test]
    fn threshold_flags_at_most_the_rate() {
        let scores: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        let t = threshold_for(&scores, 0.02);
        assert_eq!(scores.iter().filter(|&&s| s > t).count(), 2);
    }
}
