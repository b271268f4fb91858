//! The fully connected classifier: `y = W·x + b`.

use candle_core::Tensor;

use super::{Kernels, WeightedDispatch};
use crate::dispatch::{grid_dimension, word};
use crate::{Dispatch, GpuContext, GpuError, Result};

#[derive(Debug, Clone)]
pub struct Linear {
    /// `[out_features]`.
    pub output: wgpu::Buffer,
    pub out_features: usize,
    dispatch: Dispatch,
}

impl Linear {
    /// `weight` is `[out_features, in_features]`, `bias` `[out_features]`.
    pub fn new(
        ctx: &GpuContext,
        kernels: &Kernels,
        label: &str,
        weight: &Tensor,
        bias: &Tensor,
        input: &wgpu::Buffer,
        in_features: usize,
    ) -> Result<Self> {
        let (out_features, weight_in) = weight.dims2().map_err(|e| GpuError::Weights(format!("{label}: {e}")))?;
        if weight_in != in_features || bias.elem_count() != out_features {
            return Err(GpuError::Weights(format!(
                "{label}: weight {:?} / bias {:?} do not map {in_features} features",
                weight.dims(),
                bias.dims()
            )));
        }
        let (output, dispatch) = WeightedDispatch {
            label,
            pipeline: &kernels.linear,
            params: &[word(label, out_features)?, word(label, in_features)?],
            input,
            weight,
            bias,
            output_len: out_features,
            // One workgroup per output feature.
            groups: [grid_dimension(ctx, label, out_features)?, 1, 1],
        }
        .build(ctx)?;
        Ok(Self { output, out_features, dispatch })
    }

    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }
}
