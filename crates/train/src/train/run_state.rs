//! A run folder on disk: configuration, split, progress and checkpoints, written atomically
//! (temporary file, then rename) so a run killed at any moment can be resumed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::ema::Ema;
use super::loss::LossConfig;
use super::network::TrainableNetwork;
use super::optimizer::{AdamW, AdamWConfig};
use super::validate::EvalSet;
use crate::data::augment::AugmentConfig;
use crate::data::mix::MixConfig;
use crate::data::dataset::DataArgs;
use crate::data::records::Skips;
use crate::data::split::{Split, SplitPlan};

/// Everything that determines a run (saved as `config.json`; `--resume` reads it back).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    pub data: DataArgs,
    pub size: usize,
    pub batch: usize,
    pub epochs: usize,
    pub lr: f64,
    pub warmup_epochs: f64,
    pub optimizer: AdamWConfig,
    pub loss: LossConfig,
    pub class_weighted: bool,
    pub dropout: f32,
    pub over_rate: f64,
    pub patience: usize,
    pub seed: u64,
    pub split: SplitPlan,
    pub freeze_backbone: bool,
    pub augment: AugmentConfig,
    pub checkpoint_minutes: f64,
    pub base: Option<PathBuf>,
    pub arch: String,
    /// Decay of the weights' moving average that is validated and saved as best (None: off).
    #[serde(default)]
    pub ema: Option<f64>,
    #[serde(default)]
    pub mix: MixConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_balanced_accuracy: f64,
    pub val_macro_auc: f64,
    pub val_recall: Vec<f64>,
    pub learning_rate: f64,
    pub train_seconds: f64,
    pub images_per_second: f64,
    pub epoch_seconds: f64,
}

/// Running sums of the epoch in progress (kept across a mid-epoch resume).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartialEpoch {
    pub loss_sum: f64,
    pub correct: usize,
    pub seen: usize,
}

/// Progress (`state.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    /// Next epoch to run (0-based) and next batch within it.
    pub epoch: usize,
    pub batch: usize,
    pub step: u64,
    pub partial: PartialEpoch,
    pub best_epoch: usize,
    pub best_balanced_accuracy: f64,
    pub epochs_without_improvement: usize,
    pub stopped_early: bool,
    /// Training wall time over all sessions, seconds.
    pub elapsed_s: f64,
    pub history: Vec<EpochRecord>,
}

/// The image ids of each part of the split (`split.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedSplit {
    pub plan: SplitPlan,
    pub train: Vec<String>,
    pub val: Vec<String>,
    pub test: Vec<String>,
    pub skipped: Vec<String>,
}

/// Validation predictions saved with the best checkpoint (`best.val.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPredictions {
    pub epoch: usize,
    pub size: usize,
    pub classes: Vec<String>,
    pub image_ids: Vec<String>,
    pub labels: Vec<usize>,
    pub probabilities: Vec<Vec<f32>>,
}

pub struct RunFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub split: PathBuf,
    pub state: PathBuf,
    pub last: PathBuf,
    pub last_optimizer: PathBuf,
    /// The weights' moving average at the last checkpoint (runs with `--ema`).
    pub last_ema: PathBuf,
    pub best: PathBuf,
    pub best_predictions: PathBuf,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot replace", path.display()))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a valid run file", path.display()))
}

impl RunFiles {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            config: dir.join("config.json"),
            split: dir.join("split.json"),
            state: dir.join("state.json"),
            last: dir.join("last.safetensors"),
            last_optimizer: dir.join("last.optimizer.safetensors"),
            last_ema: dir.join("last.ema.safetensors"),
            best: dir.join("best.safetensors"),
            best_predictions: dir.join("best.val.json"),
        }
    }

    pub fn read_config(&self) -> Result<TrainConfig> {
        read_json(&self.config)
    }
    pub fn read_state(&self) -> Result<RunState> {
        read_json(&self.state)
    }
    pub fn read_split(&self) -> Result<SavedSplit> {
        read_json(&self.split)
    }

    pub fn create(&self, config: &TrainConfig, split: &Split, skips: &Skips) -> Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("{}: cannot create the run folder", self.dir.display()))?;
        write_atomic(&self.config, &serde_json::to_vec_pretty(config)?)?;
        let ids = |p: &[crate::data::records::Record]| p.iter().map(|r| r.image_id.clone()).collect();
        let saved = SavedSplit { plan: config.split, train: ids(&split.train), val: ids(&split.val), test: ids(&split.test), skipped: skips.summary() };
        write_atomic(&self.split, &serde_json::to_vec_pretty(&saved)?)
    }

    /// On resume: the data must still split the same way.
    pub fn check_split(&self, split: &Split) -> Result<()> {
        let saved = self.read_split()?;
        let ids = |p: &[crate::data::records::Record]| p.iter().map(|r| r.image_id.clone()).collect::<Vec<_>>();
        ensure!(saved.train == ids(&split.train) && saved.val == ids(&split.val) && saved.test == ids(&split.test), "{}: the data no longer splits as when this run started", self.split.display());
        Ok(())
    }

    pub fn save_last(&self, net: &TrainableNetwork, optimizer: &AdamW, ema: Option<&Ema>, state: &RunState, size: usize) -> Result<()> {
        let extra = HashMap::from([("skinlens.epoch".to_string(), state.epoch.to_string())]);
        write_atomic(&self.last, &net.to_safetensors(size, &extra)?)?;
        write_atomic(&self.last_optimizer, &safetensors::serialize(optimizer.state_tensors()?, None)?)?;
        if let Some(ema) = ema {
            write_atomic(&self.last_ema, &ema.to_safetensors(net)?)?;
        }
        write_atomic(&self.state, &serde_json::to_vec_pretty(state)?)
    }

    pub fn save_best(&self, net: &TrainableNetwork, size: usize, val: &EvalSet, probabilities: &[Vec<f32>], epoch: usize) -> Result<()> {
        let extra = HashMap::from([("skinlens.epoch".to_string(), epoch.to_string())]);
        write_atomic(&self.best, &net.to_safetensors(size, &extra)?)?;
        let saved = SavedPredictions {
            epoch,
            size,
            classes: net.classes.clone(),
            image_ids: val.image_ids.clone(),
            labels: val.labels.clone(),
            probabilities: probabilities.to_vec(),
        };
        write_atomic(&self.best_predictions, &serde_json::to_vec(&saved)?)
    }
}

