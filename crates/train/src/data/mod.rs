//! Training data: labels (HAM10000 metadata, ISIC 2018 ground truth), lesion-grouped splits,
//! preloaded images, augmentation, epoch sampling and batches.

pub mod augment;
pub mod batch;
pub mod dataset;
pub mod images;
pub mod mix;
pub mod records;
pub mod sampler;
pub mod split;
