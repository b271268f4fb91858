//! How familiar an image looks to the network: an out-of-distribution check on the pooled head
//! features (the 1280 numbers the classifier's linear layer reads).
//!
//! The features are ReLU6 outputs, non-negative and skewed; their square roots are modelled.
//! The training images' (rooted) features are modelled as a Gaussian with a low-rank covariance
//! (probabilistic PCA): the top `k` principal directions with their own variances, plus one
//! shared variance for everything outside them. The score is the Mahalanobis distance under
//! that model, divided by the feature dimension:
//!
//! `score = (Σ_i (v_iᵀ(x − μ))² / λ_i + ‖r‖² / σ²) / d`, with `r` the part of `x − μ` outside
//! the `k` directions. About 1 for a typical training image; large for an image unlike them.
//!
//! `skinlens fit-familiarity` fits it on the training part of the lesion-grouped split,
//! chooses the threshold on validation, and stores it as extra tensors and metadata in the
//! model file (keys in [`keys`]); loaders that do not know them ignore them.

use std::collections::HashMap;

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use safetensors::SafeTensors;

use crate::{Error, Result};

/// Named tensors and metadata entries, as a model file stores them.
pub type ModelFileEntries = (Vec<(String, Tensor)>, HashMap<String, String>);

/// Tensor and metadata names inside the model file.
pub mod keys {
    /// `[d]` mean of the training features.
    pub const MEAN: &str = "skinlens.familiarity.mean";
    /// `[k, d]` orthonormal principal directions, largest variance first (stored in f16).
    pub const DIRECTIONS: &str = "skinlens.familiarity.directions";
    /// `[k]` variance along each direction.
    pub const VARIANCES: &str = "skinlens.familiarity.variances";
    /// Metadata: the mean variance outside the `k` directions.
    pub const RESIDUAL_VARIANCE: &str = "skinlens.familiarity.residual_variance";
    /// Metadata: scores above this are flagged.
    pub const THRESHOLD: &str = "skinlens.familiarity.threshold";
    /// Metadata: what it was fitted on and how it measured (free text for the model card).
    pub const SUMMARY: &str = "skinlens.familiarity.summary";
}

/// The fitted check; see the module documentation.
#[derive(Debug, Clone)]
pub struct FamiliarityCheck {
    pub mean: Vec<f32>,
    /// Row-major `[k, d]`.
    pub directions: Vec<f32>,
    pub variances: Vec<f32>,
    pub residual_variance: f32,
    pub threshold: f32,
    pub summary: String,
}

/// One image's verdict.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Familiarity {
    pub score: f32,
    pub threshold: f32,
    /// `score > threshold`: the image does not look like the training data.
    pub unusual: bool,
}

impl FamiliarityCheck {
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    pub fn components(&self) -> usize {
        self.variances.len()
    }

    /// The check stored in a model file, `None` when the file has none.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Option<Self>> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| Error::Weights(format!("not a safetensors file: {e}")))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let file = SafeTensors::deserialize(bytes).map_err(|e| Error::Weights(format!("not a safetensors file: {e}")))?;
        if file.tensor(keys::MEAN).is_err() {
            return Ok(None);
        }
        let read = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
            let view = file.tensor(name).map_err(|_| Error::Weights(format!("familiarity check: tensor `{name}` is missing")))?;
            let tensor = view.load(&Device::Cpu)?.to_dtype(DType::F32)?;
            Ok((tensor.dims().to_vec(), tensor.flatten_all()?.to_vec1()?))
        };
        let number = |name: &str| -> Result<f32> {
            metadata
                .get(name)
                .and_then(|v| v.parse::<f32>().ok())
                .filter(|v| v.is_finite())
                .ok_or_else(|| Error::Weights(format!("familiarity check: metadata `{name}` is missing or not a number")))
        };
        let (mean_shape, mean) = read(keys::MEAN)?;
        let (directions_shape, directions) = read(keys::DIRECTIONS)?;
        let (variances_shape, variances) = read(keys::VARIANCES)?;
        let d = mean.len();
        let k = variances.len();
        if mean_shape != [d] || variances_shape != [k] || directions_shape != [k, d] {
            return Err(Error::Weights(format!(
                "familiarity check: shapes mean {mean_shape:?}, directions {directions_shape:?}, variances {variances_shape:?} do not fit together"
            )));
        }
        let check = Self {
            mean,
            directions,
            variances,
            residual_variance: number(keys::RESIDUAL_VARIANCE)?,
            threshold: number(keys::THRESHOLD)?,
            summary: metadata.get(keys::SUMMARY).cloned().unwrap_or_default(),
        };
        // NaN and infinity are refused too.
        let positive = |v: f32| v.is_finite() && v > 0.0;
        if !positive(check.residual_variance) || !check.variances.iter().all(|&v| positive(v)) {
            return Err(Error::Weights("familiarity check: variances must be positive".into()));
        }
        Ok(Some(check))
    }

    /// The tensors and metadata entries to store in a model file.
    pub fn to_entries(&self) -> Result<ModelFileEntries> {
        let (k, d) = (self.components(), self.dim());
        let tensors = vec![
            (keys::MEAN.to_string(), Tensor::from_slice(&self.mean, d, &Device::Cpu)?),
            (keys::DIRECTIONS.to_string(), Tensor::from_slice(&self.directions, (k, d), &Device::Cpu)?.to_dtype(DType::F16)?),
            (keys::VARIANCES.to_string(), Tensor::from_slice(&self.variances, k, &Device::Cpu)?),
        ];
        let metadata = HashMap::from([
            (keys::RESIDUAL_VARIANCE.to_string(), self.residual_variance.to_string()),
            (keys::THRESHOLD.to_string(), self.threshold.to_string()),
            (keys::SUMMARY.to_string(), self.summary.clone()),
        ]);
        Ok((tensors, metadata))
    }

    /// The score of one image's pooled features (length `d`).
    pub fn score(&self, pooled: &[f32]) -> Result<f32> {
        if pooled.len() != self.dim() {
            return Err(Error::Model(format!(
                "familiarity check: the network gives {} features, the check was fitted on {}",
                pooled.len(),
                self.dim()
            )));
        }
        let centred: Vec<f64> = transform(pooled).iter().zip(&self.mean).map(|(x, m)| f64::from(x - m)).collect();
        let total: f64 = centred.iter().map(|c| c * c).sum();
        let mut explained = 0.0;
        let mut inside = 0.0;
        for (direction, variance) in self.directions.chunks_exact(self.dim()).zip(&self.variances) {
            let projection: f64 = direction.iter().zip(&centred).map(|(v, c)| f64::from(*v) * c).sum();
            explained += projection * projection;
            inside += projection * projection / f64::from(*variance);
        }
        let residual = (total - explained).max(0.0);
        Ok(((inside + residual / f64::from(self.residual_variance)) / self.dim() as f64) as f32)
    }

    pub fn check(&self, pooled: &[f32]) -> Result<Familiarity> {
        let score = self.score(pooled)?;
        Ok(Familiarity { score, threshold: self.threshold, unusual: score > self.threshold })
    }
}

/// What the check models: the square root of each pooled feature (negative values, which ReLU6
/// outputs cannot have, count as 0).
pub fn transform(pooled: &[f32]) -> Vec<f32> {
    pooled.iter().map(|x| x.max(0.0).sqrt()).collect()
}

/// Head features `[1, C, h, w]` → the `C` pooled values the linear layer reads.
pub fn pooled_features(features: &Tensor) -> Result<Vec<f32>> {
    Ok(features.mean((2, 3))?.flatten_all()?.to_vec1()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> FamiliarityCheck {
        // d = 3, one direction along x with variance 4; residual variance 1.
        FamiliarityCheck {
            mean: vec![1.0, 0.0, 0.0],
            directions: vec![1.0, 0.0, 0.0],
            variances: vec![4.0],
            residual_variance: 1.0,
            threshold: 2.0,
            summary: String::new(),
        }
    }

    #[test]
    fn score_is_the_low_rank_mahalanobis_distance_per_dimension() -> Result<()> {
        // The check works on square roots, so these features are squares of the points meant.
        let check = toy();
        assert_eq!(check.score(&[1.0, 0.0, 0.0])?, 0.0);
        // 2 along the principal direction: 2²/4 = 1; 1 off it: 1²/1 = 1; total 2 over 3 dims.
        assert!((check.score(&[9.0, 1.0, 0.0])? - 2.0 / 3.0).abs() < 1e-6);
        let far = check.check(&[1.0, 9.0, 0.0])?;
        assert!(far.unusual && (far.score - 3.0).abs() < 1e-6);
        assert!(check.score(&[1.0, 0.0]).is_err(), "a wrong feature count is an error");
        Ok(())
    }

    #[test]
    fn round_trips_through_safetensors_and_a_file_without_it_has_none() -> Result<()> {
        let check = toy();
        let (tensors, metadata) = check.to_entries()?;
        let bytes = safetensors::serialize(tensors, Some(metadata)).map_err(|e| Error::Weights(e.to_string()))?;
        let back = FamiliarityCheck::from_safetensors(&bytes)?.expect("stored");
        assert_eq!(back.mean, check.mean);
        assert_eq!(back.threshold, check.threshold);
        let empty = safetensors::serialize(vec![("x".to_string(), Tensor::zeros(1, DType::F32, &Device::Cpu)?)], None)
            .map_err(|e| Error::Weights(e.to_string()))?;
        assert!(FamiliarityCheck::from_safetensors(&empty)?.is_none());
        Ok(())
    }
}
