//! The skinlens trainer: everything behind `skinlens train`, `evaluate`, `export` and
//! `fit-familiarity` except the command line itself (`crates/cli` parses the arguments, draws the
//! progress bars and calls in here).
//!
//! - [`data`]: labelled images (HAM10000 metadata, ISIC 2018 ground truth), lesion-grouped
//!   splits, preloaded images, augmentation, epoch sampling and batches.
//! - [`train`]: the trainable network (BatchNorm in training mode, hand-written backward
//!   kernels), loss, AdamW, weight averaging, resumable run folders and the training loop.
//! - [`metrics`]: the ISIC 2018 scorer's metrics, calibration, lesion bootstrap intervals.
//! - [`evaluate`]: labelled images through a classifier, scored with intervals; ISIC CSVs.
//! - [`export`]: checkpoints → the calibrated model file and its card.
//! - [`familiarity`]: fitting the model file's "does this look like dermoscopy?" check.
//! - [`plots`]: training curves and confusion matrices as PNG.

pub mod data;
pub mod evaluate;
pub mod export;
pub mod familiarity;
pub mod metrics;
pub mod plots;
pub mod train;
