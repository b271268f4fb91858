//! The training loss: cross-entropy with label smoothing, optional per-class weights, optional
//! focal modulation (1 − p_y)^γ.

use anyhow::Result;
use candle_core::{Tensor, D};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LossConfig {
    pub label_smoothing: f32,
    /// Weight of each class (`None`: all 1).
    pub class_weights: Option<Vec<f32>>,
    /// Focal loss exponent γ (`None`: plain cross-entropy).
    pub focal_gamma: Option<f32>,
}

/// Mean loss over the batch (weighted mean when classes are weighted).
pub fn loss(logits: &Tensor, labels: &[usize], config: &LossConfig) -> Result<Tensor> {
    let (n, k) = logits.dims2()?;
    let device = logits.device();
    let eps = config.label_smoothing;
    let mut target = vec![eps / k as f32; n * k];
    for (i, &y) in labels.iter().enumerate() {
        target[i * k + y] += 1.0 - eps;
    }
    let target = Tensor::from_vec(target, (n, k), device)?;
    let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let mut per_sample = (target * &log_p)?.sum(D::Minus1)?.neg()?;
    if let Some(gamma) = config.focal_gamma {
        let index = Tensor::from_vec(labels.iter().map(|&y| y as u32).collect::<Vec<_>>(), (n, 1), device)?;
        let p_true = log_p.gather(&index, 1)?.squeeze(1)?.exp()?;
        let modulation = (1.0 - p_true)?.clamp(0f32, 1f32)?.powf(f64::from(gamma))?;
        per_sample = (per_sample * modulation)?;
    }
    let weights: Vec<f32> = match &config.class_weights {
        Some(w) => labels.iter().map(|&y| w[y]).collect(),
        None => vec![1.0; n],
    };
    let total: f32 = weights.iter().sum();
    let weights = Tensor::from_vec(weights, n, device)?;
    Ok(((per_sample * weights)?.sum_all()? / f64::from(total))?)
}

/// Class weights ∝ 1/n_c, normalised so the training images' mean weight is 1.
pub fn inverse_frequency_weights(counts: &[usize]) -> Vec<f32> {
    let total: usize = counts.iter().sum();
    let raw: Vec<f32> = counts.iter().map(|&c| if c == 0 { 0.0 } else { 1.0 / c as f32 }).collect();
    let mean: f32 = counts.iter().zip(&raw).map(|(&c, w)| c as f32 * w).sum::<f32>() / total as f32;
    raw.iter().map(|w| w / mean).collect()
}
