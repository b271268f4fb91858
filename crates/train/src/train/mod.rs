//! The trainer behind `skinlens train`: fine-tune EfficientNet-Lite on HAM10000 (or an ISIC 2018
//! ground truth).
//!
//! A run lives in one folder (`--out`): its configuration, the lesion-grouped split it drew,
//! checkpoints (`last.*` every epoch and every `--checkpoint-minutes`, `best.safetensors` at the
//! best validation balanced accuracy), the per-epoch history and its curves. `--resume` picks up
//! from `last.*` and continues exactly as an uninterrupted run would (every random draw is keyed
//! by seed, epoch and batch, not by how many draws came before).

pub mod allocator;
pub mod backprop;
#[cfg(test)]
mod backprop_test;
pub mod device;
pub mod ema;
pub mod loss;
pub mod network;
pub mod ops;
pub mod optimizer;
#[cfg(test)]
mod portable_path_test;
pub mod run_state;
pub mod validate;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use skinlens_core::labels::HAM10000_CLASSES;
use skinlens_core::ModelConfig;

use crate::data::augment::augment;
use crate::data::batch::{rows_per_image, stem_columns};
use crate::data::images::preload;
use crate::data::mix::{mix_batch, Mixing};
use crate::data::records::{class_counts, Skips};
use crate::data::sampler::epoch_order;
use crate::data::split::{split, Split};
use crate::metrics::classification::evaluate;
use ema::Ema;
use loss::{inverse_frequency_weights, LossConfig};
use device::{DeviceKind, StepPath};
use network::TrainableNetwork;
use optimizer::{learning_rate, AdamW};
use run_state::{EpochRecord, RunFiles, RunState, TrainConfig};
use validate::EvalSet;

/// Largest square side kept in memory per image (the 224 crops stay as they are).
pub const STORE_SIDE: u32 = 224;

/// A 64-bit mix of several keys (SplitMix64 steps), for per-sample seeds.
pub fn mix(keys: &[u64]) -> u64 {
    let mut z = 0x9E37_79B9_7F4A_7C15u64;
    for &k in keys {
        z = z.wrapping_add(k).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

/// Everything a run needs in memory: split, training images, validation views.
pub struct Prepared {
    pub classes: Vec<String>,
    pub split: Split,
    pub train_images: Vec<image::RgbImage>,
    pub train_labels: Vec<usize>,
    pub val: EvalSet,
    pub skips: Skips,
}

pub fn prepare(config: &TrainConfig) -> Result<Prepared> {
    let classes: Vec<String> = HAM10000_CLASSES.iter().map(|c| c.to_string()).collect();
    let (records, mut skips) = config.data.records(&classes, config.seed)?;
    // Find the images first, so a missing file is a counted skip rather than a hole in a split.
    let roots = config.data.roots();
    let (records, mut images) = preload(&records, &roots, STORE_SIDE, config.data.colour(), &mut skips)?;
    let split = split(&records, &classes, &config.split)?;
    let index: HashMap<&str, usize> = records.iter().enumerate().map(|(i, r)| (r.image_id.as_str(), i)).collect();
    let mut take = |part: &[crate::data::records::Record]| -> Vec<image::RgbImage> {
        part.iter().map(|r| std::mem::replace(&mut images[index[r.image_id.as_str()]], image::RgbImage::new(1, 1))).collect()
    };
    let train_images = take(&split.train);
    let val_images = take(&split.val);
    let train_labels = split.train.iter().map(|r| r.label).collect();
    let val_refs: Vec<&image::RgbImage> = val_images.iter().collect();
    let val = EvalSet::new(&val_refs, split.val.iter().map(|r| r.label).collect(), split.val.iter().map(|r| r.image_id.clone()).collect(), config.size);
    Ok(Prepared { classes, split, train_images, train_labels, val, skips })
}

/// One batch's stem input, labels and mixing (if any), every random draw keyed by
/// (seed, epoch, batch, slot), the batch's mixing by (seed, epoch, batch, 0x313).
fn make_batch(p: &Prepared, config: &TrainConfig, indices: &[usize], epoch: usize, batch_no: usize, device: &Device) -> Result<(Tensor, Vec<usize>, Option<Mixing>)> {
    let size = config.size;
    let rows = rows_per_image(size);
    let mut views: Vec<Vec<f32>> = indices
        .par_iter()
        .enumerate()
        .map(|(slot, &i)| {
            let mut rng = ChaCha8Rng::seed_from_u64(mix(&[config.seed, epoch as u64, batch_no as u64, slot as u64]));
            augment(&p.train_images[i], size, &config.augment, &mut rng)
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(mix(&[config.seed, epoch as u64, batch_no as u64, 0x313]));
    let mixing = mix_batch(&mut views, size, &config.mix, &mut rng);
    let mut columns = vec![0f32; indices.len() * rows * 27];
    columns.par_chunks_mut(rows * 27).zip(views.par_iter()).for_each(|(out, view)| stem_columns(view, size, out));
    let labels = indices.iter().map(|&i| p.train_labels[i]).collect();
    Ok((Tensor::from_vec(columns, (indices.len() * rows, 27), device)?, labels, mixing))
}

fn dropout_mask(config: &TrainConfig, n: usize, width: usize, epoch: usize, batch_no: usize, device: &Device) -> Result<Option<Tensor>> {
    if config.dropout <= 0.0 {
        return Ok(None);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(mix(&[config.seed, epoch as u64, batch_no as u64, 0xD0]));
    let keep = 1.0 - config.dropout;
    let mask: Vec<f32> = (0..n * width).map(|_| if rng.random::<f32>() < keep { 1.0 / keep } else { 0.0 }).collect();
    Ok(Some(Tensor::from_vec(mask, (n, width), device)?))
}

/// Forward, loss and gradients of one batch: the hand-written backward pass on the CPU,
/// candle's autograd elsewhere (see `device::StepPath`). Returns the loss, the logits and the
/// gradients by name.
pub fn training_step(
    net: &mut TrainableNetwork,
    x: &Tensor,
    labels: &[usize],
    size: usize,
    mask: Option<&Tensor>,
    loss_config: &LossConfig,
) -> Result<(f32, Tensor, HashMap<String, Tensor>)> {
    training_step_with(net, x, labels.len(), size, mask, |logits| loss::loss(logits, labels, loss_config))
}

/// `training_step` with any loss of the logits (e.g. the mixed loss of a mixup batch).
pub fn training_step_with(
    net: &mut TrainableNetwork,
    x: &Tensor,
    n: usize,
    size: usize,
    mask: Option<&Tensor>,
    loss_of: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<(f32, Tensor, HashMap<String, Tensor>)> {
    if net.path == StepPath::Fused {
        return net.forward_backward(x, n, size, mask, loss_of);
    }
    let logits = net.forward_train(x, n, size, mask)?;
    let loss = loss_of(&logits)?;
    let grads = net.grads_by_name(&loss.backward()?);
    Ok((loss.to_scalar::<f32>()?, logits.detach(), grads))
}

/// A batch's training step: plain, or λ·L(labels) + (1 − λ)·L(partners' labels) when mixed.
fn batch_step(net: &mut TrainableNetwork, x: &Tensor, labels: &[usize], mixing: Option<&Mixing>, size: usize, mask: Option<&Tensor>, loss_config: &LossConfig) -> Result<(f32, Tensor, HashMap<String, Tensor>)> {
    let Some(m) = mixing else { return training_step(net, x, labels, size, mask, loss_config) };
    let partners: Vec<usize> = m.partners.iter().map(|&s| labels[s]).collect();
    let lambda = f64::from(m.lambda);
    training_step_with(net, x, labels.len(), size, mask, |logits| {
        let own = loss::loss(logits, labels, loss_config)?;
        let other = loss::loss(logits, &partners, loss_config)?;
        Ok(((own * lambda)? + (other * (1.0 - lambda))?)?)
    })
}

/// One invocation of the trainer (`skinlens train`): which run, on what, for how long.
#[derive(Debug, Clone)]
pub struct Session {
    /// Run folder: configuration, split, checkpoints, history, plots.
    pub out: PathBuf,
    /// Continue the run in `out` from its last checkpoint (its saved configuration wins over `config`).
    pub resume: bool,
    /// A new run's configuration.
    pub config: TrainConfig,
    pub device: DeviceKind,
    /// Stop (resumably) after this many epochs in this invocation.
    pub stop_after: Option<usize>,
    /// Measure training throughput for this many steps (after one warm-up step), then return.
    pub bench: Option<usize>,
}

/// How the training loop shows its progress through an epoch's batches (the command line draws
/// a progress bar). Everything else the loop reports is a line on stderr.
pub trait EpochProgress {
    /// Epoch `epoch` (0-based) of `epochs` starts: `steps` batches, the first `done` of them
    /// already done (a run resumed mid-epoch).
    fn start(&mut self, epoch: usize, epochs: usize, steps: usize, done: usize);
    /// One more batch done, the `done`th of the epoch; `message` holds the running loss, accuracy and
    /// learning rate, `images_per_second` the rate since this invocation's part of the epoch began.
    fn batch(&mut self, done: usize, message: &str, images_per_second: f64);
    /// Run `save` (a mid-epoch checkpoint) with the display out of its way.
    fn suspend(&mut self, save: &mut dyn FnMut() -> Result<()>) -> Result<()>;
    /// The epoch's batches are done (validation follows).
    fn finish(&mut self);
}

/// Train (or resume, or benchmark) the run of `session`, reporting each epoch's batches to `progress`.
pub fn run(session: Session, progress: &mut dyn EpochProgress) -> Result<()> {
    allocator::keep_freed_memory();
    // First, so a missing GPU stops the command before any data is read.
    let device = device::open(session.device)?;
    let files = RunFiles::new(&session.out);
    let (config, mut state, resumed_from) = if session.resume {
        let config = files.read_config()?;
        let state = files.read_state()?;
        (config, state, true)
    } else {
        if files.state.exists() && session.bench.is_none() {
            bail!("{}: a run already exists here; use --resume to continue it or choose another --out", session.out.display());
        }
        (session.config, RunState::default(), false)
    };
    let started = Instant::now();
    eprintln!("loading images…");
    let prepared = prepare(&config)?;
    for line in prepared.skips.summary() {
        eprintln!("skipped {line}");
    }
    let k = prepared.classes.len();
    let counts = class_counts(&prepared.split.train, k);
    eprintln!(
        "split (lesion-grouped, seed {}): train {} / val {} / test {} images; train per class {:?}; loaded in {:.0} s",
        config.split.seed,
        prepared.split.train.len(),
        prepared.split.val.len(),
        prepared.split.test.len(),
        counts,
        started.elapsed().as_secs_f64()
    );
    let mut loss_config = config.loss.clone();
    if config.class_weighted {
        loss_config.class_weights = Some(inverse_frequency_weights(&counts));
    }

    let model_config = ModelConfig::from_name(&config.arch).with_context(|| format!("unknown architecture {}", config.arch))?;
    let mut net = if resumed_from {
        let tensors = candle_core::safetensors::load(&files.last, &Device::Cpu).with_context(|| format!("{}: cannot read the checkpoint", files.last.display()))?;
        TrainableNetwork::from_tensors(&tensors, model_config, prepared.classes.clone(), &device)?
    } else {
        let base = config.base.as_ref().context("--base: the ImageNet EfficientNet-Lite0 weights to start from")?;
        let tensors = candle_core::safetensors::load(base, &Device::Cpu).with_context(|| format!("{}: cannot read the base weights", base.display()))?;
        TrainableNetwork::from_base(&tensors, model_config, prepared.classes.clone(), config.seed, &device).with_context(|| format!("{}: not {} weights", base.display(), config.arch))?
    };
    let mut ema = match config.ema {
        Some(decay) if resumed_from => {
            let bytes = std::fs::read(&files.last_ema).with_context(|| format!("{}: cannot read the weights' average", files.last_ema.display()))?;
            Some(Ema::load(&bytes, &net, decay).with_context(|| format!("{}: not this run's average", files.last_ema.display()))?)
        }
        Some(decay) => Some(Ema::new(&net, decay)?),
        None => None,
    };
    let trainable: Vec<(String, candle_core::Var)> = net.trainable_names(config.freeze_backbone).into_iter().map(|n| (n.clone(), net.params[&n].clone())).collect();
    let mut optimizer = AdamW::new(trainable, config.optimizer)?;
    if resumed_from {
        let tensors = candle_core::safetensors::load(&files.last_optimizer, &Device::Cpu).with_context(|| format!("{}: cannot read the optimiser state", files.last_optimizer.display()))?;
        optimizer.load_state(&tensors, state.step)?;
        eprintln!("resuming at epoch {} batch {} (step {})", state.epoch + 1, state.batch, state.step);
    } else if session.bench.is_none() {
        files.create(&config, &prepared.split, &prepared.skips)?;
    } else {
        std::fs::create_dir_all(&session.out).with_context(|| format!("{}: cannot create the run folder", session.out.display()))?;
    }
    files.check_split(&prepared.split).ok();

    let steps_per_epoch = prepared.train_labels.len() / config.batch;
    anyhow::ensure!(steps_per_epoch > 0, "the training split ({} images) is smaller than one batch of {}", prepared.train_labels.len(), config.batch);
    let total_steps = (steps_per_epoch * config.epochs) as u64;
    let warmup_steps = ((config.warmup_epochs * steps_per_epoch as f64) as u64).max(1);

    if let Some(steps) = session.bench {
        return bench(&mut net, &prepared, &config, &mut optimizer, steps, &device);
    }

    let mut last_save = Instant::now();
    let mut epochs_this_session = 0;
    while state.epoch < config.epochs && !state.stopped_early {
        let epoch = state.epoch;
        let epoch_started = Instant::now();
        let order = epoch_order(&prepared.train_labels, k, config.over_rate, config.seed, epoch);
        progress.start(epoch, config.epochs, steps_per_epoch, state.batch);
        let first_batch = state.batch;
        for b in first_batch..steps_per_epoch {
            let indices = &order[b * config.batch..(b + 1) * config.batch];
            let (x, labels, mixing) = make_batch(&prepared, &config, indices, epoch, b, &device)?;
            let mask = dropout_mask(&config, indices.len(), net.config.head_channels, epoch, b, &device)?;
            let (loss, logits, grads) = batch_step(&mut net, &x, &labels, mixing.as_ref(), config.size, mask.as_ref(), &loss_config)?;
            let lr = learning_rate(state.step, warmup_steps, total_steps, config.lr);
            optimizer.step(&grads, lr)?;
            state.step += 1;
            if let Some(ema) = ema.as_mut() {
                ema.update(&net, state.step)?;
            }
            let predicted = logits.argmax(1)?.to_vec1::<u32>()?;
            state.partial.loss_sum += f64::from(loss) * indices.len() as f64;
            state.partial.correct += predicted.iter().zip(&labels).filter(|(p, y)| **p as usize == **y).count();
            state.partial.seen += indices.len();
            state.batch = b + 1;
            let message = format!("loss {:.3} acc {:.3} lr {:.2e}", state.partial.loss_sum / state.partial.seen as f64, state.partial.correct as f64 / state.partial.seen as f64, lr);
            let rate = (b + 1 - first_batch) as f64 * config.batch as f64 / epoch_started.elapsed().as_secs_f64();
            progress.batch(b + 1, &message, rate);
            if last_save.elapsed().as_secs_f64() > config.checkpoint_minutes * 60.0 && b + 1 < steps_per_epoch {
                state.elapsed_s += last_save.elapsed().as_secs_f64();
                last_save = Instant::now();
                progress.suspend(&mut || files.save_last(&net, &optimizer, ema.as_ref(), &state, config.size))?;
            }
        }
        progress.finish();
        let train_seconds = epoch_started.elapsed().as_secs_f64();
        // Validation through the folded network (the weights' average with --ema): exactly what
        // export ships.
        let averaged = ema.as_ref().map(|e| e.network(&net)).transpose()?;
        let shipped = averaged.as_ref().unwrap_or(&net);
        let folded = shipped.folded(config.size)?;
        let probabilities = validate::probabilities(&folded, &prepared.val)?;
        let report = evaluate(&probabilities, &prepared.val.labels, &prepared.classes);
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: state.partial.loss_sum / state.partial.seen.max(1) as f64,
            train_accuracy: state.partial.correct as f64 / state.partial.seen.max(1) as f64,
            val_loss: report.log_loss,
            val_balanced_accuracy: report.balanced_accuracy,
            val_macro_auc: report.macro_auc,
            val_recall: report.per_class.iter().map(|c| c.recall).collect(),
            learning_rate: learning_rate(state.step.saturating_sub(1), warmup_steps, total_steps, config.lr),
            train_seconds,
            images_per_second: (steps_per_epoch - first_batch) as f64 * config.batch as f64 / train_seconds,
            epoch_seconds: epoch_started.elapsed().as_secs_f64(),
        };
        eprintln!(
            "epoch {}/{}: train loss {:.4} acc {:.3} | val loss {:.4} balanced acc {:.4} macro AUC {:.4} | {:.0} s, {:.1} img/s",
            record.epoch, config.epochs, record.train_loss, record.train_accuracy, record.val_loss, record.val_balanced_accuracy, record.val_macro_auc, record.epoch_seconds, record.images_per_second
        );
        let improved = state.best_epoch == 0 || record.val_balanced_accuracy > state.best_balanced_accuracy;
        state.history.push(record);
        state.epoch += 1;
        state.batch = 0;
        state.partial = Default::default();
        if improved {
            state.best_epoch = epoch + 1;
            state.best_balanced_accuracy = report.balanced_accuracy;
            state.epochs_without_improvement = 0;
            files.save_best(shipped, config.size, &prepared.val, &probabilities, epoch + 1)?;
        } else {
            state.epochs_without_improvement += 1;
            if state.epochs_without_improvement >= config.patience {
                eprintln!("no better validation balanced accuracy for {} epochs: stopping early", config.patience);
                state.stopped_early = true;
            }
        }
        state.elapsed_s += last_save.elapsed().as_secs_f64();
        last_save = Instant::now();
        files.save_last(&net, &optimizer, ema.as_ref(), &state, config.size)?;
        if let Err(e) = crate::plots::training_curves(&state.history, &files.dir) {
            eprintln!("warning: could not draw the training curves: {e:#}");
        }
        epochs_this_session += 1;
        if session.stop_after.is_some_and(|n| epochs_this_session >= n) {
            break;
        }
    }
    eprintln!(
        "best validation balanced accuracy {:.4} at epoch {} → {}; training time so far {:.1} min",
        state.best_balanced_accuracy,
        state.best_epoch,
        files.best.display(),
        state.elapsed_s / 60.0
    );
    Ok(())
}

/// Training throughput in images per second (the first step is a warm-up and not timed).
fn bench(net: &mut TrainableNetwork, p: &Prepared, config: &TrainConfig, optimizer: &mut AdamW, steps: usize, device: &Device) -> Result<()> {
    let order = epoch_order(&p.train_labels, p.classes.len(), config.over_rate, config.seed, 0);
    let loss_config = config.loss.clone();
    let mut timer = Instant::now();
    for b in 0..=steps {
        if b == 1 {
            timer = Instant::now();
        }
        let indices = &order[b * config.batch..(b + 1) * config.batch];
        let (x, labels, mixing) = make_batch(p, config, indices, 0, b, device)?;
        let mask = dropout_mask(config, indices.len(), net.config.head_channels, 0, b, device)?;
        let t0 = Instant::now();
        let (loss, _, grads) = batch_step(net, &x, &labels, mixing.as_ref(), config.size, mask.as_ref(), &loss_config)?;
        let t1 = Instant::now();
        optimizer.step(&grads, config.lr)?;
        eprintln!("step {b}: loss {loss:.4}  forward+backward {:.2} s, update {:.2} s", (t1 - t0).as_secs_f64(), t1.elapsed().as_secs_f64());
    }
    let seconds = timer.elapsed().as_secs_f64();
    for (what, t) in backprop::PROFILE.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        eprintln!("{what:>28}: {:.3} s per step", t / (steps + 1) as f64);
    }
    println!(
        "{{\"size\": {}, \"batch\": {}, \"steps\": {steps}, \"seconds_per_step\": {:.3}, \"images_per_second\": {:.2}, \"threads\": {}}}",
        config.size,
        config.batch,
        seconds / steps as f64,
        (steps * config.batch) as f64 / seconds,
        rayon::current_num_threads()
    );
    Ok(())
}
