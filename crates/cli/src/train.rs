//! `skinlens train`: the command line of the trainer (`skinlens_train::train`), and its progress bar.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use skinlens_train::data::augment::AugmentConfig;
use skinlens_train::data::dataset::DataArgs;
use skinlens_train::data::mix::MixConfig;
use skinlens_train::data::split::SplitPlan;
use skinlens_train::train::device::DeviceKind;
use skinlens_train::train::loss::LossConfig;
use skinlens_train::train::optimizer::AdamWConfig;
use skinlens_train::train::run_state::TrainConfig;
use skinlens_train::train::{EpochProgress, Session};

/// The lesion-grouped split (`train` and `fit-familiarity`): the same seed and fractions draw
/// the same lesions into each part.
#[derive(clap::Args, Debug)]
pub struct SplitArgs {
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 0.16)]
    pub val_fraction: f64,
    #[arg(long, default_value_t = 0.20)]
    pub test_fraction: f64,
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Run folder: configuration, split, checkpoints, history, plots.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Continue the run in --out from its last checkpoint (its saved configuration wins).
    #[arg(long)]
    pub resume: bool,
    /// ImageNet EfficientNet-Lite weights of --arch, raw keys (e.g. ../shared/reference/effnet_lite0.safetensors).
    #[arg(long, value_name = "SAFETENSORS")]
    pub base: Option<PathBuf>,
    /// Backbone: lite0, lite1 or lite2 (the block tables checked against reference weights).
    #[arg(long, default_value = "lite0", value_parser = ["lite0", "lite1", "lite2"])]
    pub arch: String,
    /// Training (and validation) input size in pixels.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Peak learning rate (AdamW), reached after the warm-up, then cosine to zero.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 1.0)]
    pub warmup_epochs: f64,
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// The backbone's learning rate as a fraction of the classifier's (1: one rate for all).
    #[arg(long, default_value_t = 1.0, value_name = "F")]
    pub backbone_lr_scale: f64,
    #[arg(long, default_value_t = 0.1)]
    pub label_smoothing: f32,
    /// Dropout before the classifier.
    #[arg(long, default_value_t = 0.2)]
    pub dropout: f32,
    /// Oversampling strength: class c is drawn ∝ n_c^(1 − r); 0 natural mix, 1 balanced.
    #[arg(long, default_value_t = 0.5)]
    pub over_rate: f64,
    /// Weight the cross-entropy by inverse class frequency.
    #[arg(long)]
    pub class_weighted: bool,
    /// Focal loss with this γ instead of plain cross-entropy.
    #[arg(long, value_name = "GAMMA")]
    pub focal_gamma: Option<f32>,
    /// Stop after this many epochs without a better validation balanced accuracy.
    #[arg(long, default_value_t = 6)]
    pub patience: usize,
    #[command(flatten)]
    pub split: SplitArgs,
    /// Seed of the initialisation, sampling order and augmentation (default: --seed). A second
    /// training seed on the same split gives another ensemble member to choose on validation.
    #[arg(long, value_name = "SEED")]
    pub train_seed: Option<u64>,
    /// Cross-validation: validate on fold F of --folds (the test part stays fixed).
    #[arg(long, value_name = "F")]
    pub fold: Option<usize>,
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Train only the classifier (the backbone stays at its ImageNet weights).
    #[arg(long)]
    pub freeze_backbone: bool,
    /// Smallest random-resized-crop area (fraction of the square).
    #[arg(long, default_value_t = 0.5)]
    pub min_crop_area: f32,
    /// Saturation jitter: factor drawn from [1 − S, 1 + S] (0: off).
    #[arg(long, default_value_t = 0.0, value_name = "S")]
    pub saturation: f32,
    /// Random erasing: probability of blanking one rectangle (2–25 % of the view) per image.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub erase_prob: f32,
    /// Mixup with Beta(α, α) mixing weights (0: off).
    #[arg(long, default_value_t = 0.0, value_name = "ALPHA")]
    pub mixup: f32,
    /// CutMix with Beta(α, α) box shares (0: off); with --mixup too, each batch picks one.
    #[arg(long, default_value_t = 0.0, value_name = "ALPHA")]
    pub cutmix: f32,
    /// Validate, and save as best, a moving average of the weights with this decay (e.g. 0.998).
    #[arg(long, value_name = "DECAY")]
    pub ema: Option<f64>,
    /// Also save `last.*` mid-epoch when this many minutes passed since the last save.
    #[arg(long, default_value_t = 10.0)]
    pub checkpoint_minutes: f64,
    /// Stop (resumably) after this many epochs in this invocation.
    #[arg(long, value_name = "N")]
    pub stop_after: Option<usize>,
    /// Measure training throughput for this many steps (after one warm-up step), then exit.
    #[arg(long, value_name = "STEPS")]
    pub bench: Option<usize>,
    /// Where to train: the CPU, or the first CUDA GPU (a build with the `cuda` feature).
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
}

impl TrainArgs {
    /// The run configuration these options give (a resumed run keeps its saved one).
    fn config(&self) -> TrainConfig {
        TrainConfig {
            data: self.data.clone(),
            size: self.size,
            batch: self.batch,
            epochs: self.epochs,
            lr: self.lr,
            warmup_epochs: self.warmup_epochs,
            optimizer: AdamWConfig { weight_decay: self.weight_decay, backbone_lr_scale: self.backbone_lr_scale, ..Default::default() },
            loss: LossConfig { label_smoothing: self.label_smoothing, class_weights: None, focal_gamma: self.focal_gamma },
            class_weighted: self.class_weighted,
            dropout: self.dropout,
            over_rate: self.over_rate,
            patience: self.patience,
            seed: self.train_seed.unwrap_or(self.split.seed),
            split: SplitPlan {
                seed: self.split.seed,
                val_fraction: self.split.val_fraction,
                test_fraction: self.split.test_fraction,
                fold: self.fold.map(|f| (f, self.folds)),
            },
            freeze_backbone: self.freeze_backbone,
            augment: AugmentConfig { min_crop_area: self.min_crop_area, saturation: self.saturation, erase_probability: self.erase_prob, ..Default::default() },
            checkpoint_minutes: self.checkpoint_minutes,
            base: self.base.clone(),
            arch: format!("efficientnet-{}", self.arch),
            ema: self.ema,
            mix: MixConfig { mixup_alpha: self.mixup, cutmix_alpha: self.cutmix },
        }
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    let session = Session { config: args.config(), out: args.out, resume: args.resume, device: args.device, stop_after: args.stop_after, bench: args.bench };
    skinlens_train::train::run(session, &mut EpochBar::new())
}

/// An epoch's batches as a progress bar on a terminal, else as a line every 25 batches (logs).
struct EpochBar {
    interactive: bool,
    bar: ProgressBar,
    /// Epoch (1-based) and epochs, batches per epoch.
    epoch: (usize, usize),
    steps: usize,
}

impl EpochBar {
    fn new() -> Self {
        Self { interactive: std::io::stderr().is_terminal(), bar: ProgressBar::hidden(), epoch: (0, 0), steps: 0 }
    }
}

impl EpochProgress for EpochBar {
    fn start(&mut self, epoch: usize, epochs: usize, steps: usize, done: usize) {
        self.bar = ProgressBar::new(steps as u64).with_style(
            ProgressStyle::with_template("epoch {prefix} {bar:30} {pos}/{len} batches  {per_sec}  ETA {eta}  {msg}").expect("valid template"),
        );
        self.bar.set_prefix(format!("{}/{}", epoch + 1, epochs));
        self.bar.set_position(done as u64);
        self.epoch = (epoch + 1, epochs);
        self.steps = steps;
    }

    fn batch(&mut self, done: usize, message: &str, images_per_second: f64) {
        self.bar.set_message(message.to_string());
        self.bar.inc(1);
        if !self.interactive && done.is_multiple_of(25) {
            eprintln!("epoch {}/{} batch {done}/{} {message} {images_per_second:.1} img/s", self.epoch.0, self.epoch.1, self.steps);
        }
    }

    fn suspend(&mut self, save: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        self.bar.suspend(save)
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}
