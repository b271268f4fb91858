//! Validation through the core's inference network: the trainer folds its BatchNorm exactly as
//! `export` does and runs the same CPU model `predict` and the page run, on the same framing.

use anyhow::Result;
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use skinlens_core::{EfficientNetLite, FoldedNetwork};

use crate::data::augment::evaluation_view;
use crate::evaluate::{in_passes, IMAGES_PER_PASS};

/// Normalised HWC evaluation views of `images` at `size`, computed once per run.
pub struct EvalSet {
    pub size: usize,
    pub views: Vec<Vec<f32>>,
    pub labels: Vec<usize>,
    pub image_ids: Vec<String>,
}

impl EvalSet {
    pub fn new(images: &[&image::RgbImage], labels: Vec<usize>, image_ids: Vec<String>, size: usize) -> Self {
        let views = images.par_iter().map(|img| evaluation_view(img, size)).collect();
        Self { size, views, labels, image_ids }
    }
}

/// `[N, 3, S, S]` from normalised HWC views.
pub fn nchw(views: &[&Vec<f32>], size: usize) -> Result<Tensor> {
    let data: Vec<f32> = views.iter().flat_map(|v| v.iter().copied()).collect();
    Ok(Tensor::from_vec(data, (views.len(), size, size, 3), &Device::Cpu)?.permute((0, 3, 1, 2))?.contiguous()?)
}

/// Logits `[N][classes]` of the folded network on every view, with optional flip TTA
/// (mean of the logits' softmax is left to the caller: this returns raw logits per flip).
pub fn logits(net: &FoldedNetwork, set: &EvalSet, batch: usize, flips: &[&[usize]]) -> Result<Vec<Vec<Vec<f32>>>> {
    let model = EfficientNetLite::new(net)?;
    flips
        .iter()
        .map(|dims| {
            in_passes(&set.views, batch, |chunk| {
                let refs: Vec<&Vec<f32>> = chunk.iter().collect();
                let x = nchw(&refs, set.size)?;
                let x = if dims.is_empty() { x } else { x.flip(dims)? };
                Ok(model.forward(&x)?.to_vec2::<f32>()?)
            })
        })
        .collect()
}

/// Softmax of `logits / temperature`.
pub fn softmax(logits: &[f32], temperature: f32) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|l| ((l - max) / temperature).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Probabilities of the folded network (no TTA, temperature 1).
pub fn probabilities(net: &FoldedNetwork, set: &EvalSet) -> Result<Vec<Vec<f32>>> {
    Ok(logits(net, set, IMAGES_PER_PASS, &[&[]])?.remove(0).iter().map(|l| softmax(l, 1.0)).collect())
}
