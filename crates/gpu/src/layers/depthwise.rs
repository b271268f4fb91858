//! Depthwise k×k convolution, stride 1 or 2, TF 'SAME' padding, folded bias and activation.

use candle_core::Tensor;
use skinlens_core::nn::{same_output, same_padding, Activation};

use super::{conv_params, FeatureShape, Kernels, WeightedDispatch};
use crate::dispatch::linear_grid;
use crate::{Dispatch, GpuContext, GpuError, Result};

#[derive(Debug, Clone)]
pub struct DepthwiseConv2d {
    pub output: wgpu::Buffer,
    pub output_shape: FeatureShape,
    dispatch: Dispatch,
}

impl DepthwiseConv2d {
    /// `weight` is `[C, 1, k, k]` and `bias` `[C]`, BatchNorm folded in.
    // Each argument is one fact about the layer (device, kernels, name, weights, geometry,
    // input); bundling them into a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &GpuContext,
        kernels: &Kernels,
        label: &str,
        weight: &Tensor,
        bias: &Tensor,
        stride: usize,
        activation: Activation,
        input: &wgpu::Buffer,
        input_shape: FeatureShape,
    ) -> Result<Self> {
        let (channels, one, k, k_w) = weight.dims4().map_err(|e| GpuError::Weights(format!("{label}: {e}")))?;
        if one != 1 || k != k_w || channels != input_shape.channels || bias.elem_count() != channels {
            return Err(GpuError::Weights(format!(
                "{label}: weight {:?} / bias {:?} are not a depthwise filter for {} channels",
                weight.dims(),
                bias.dims(),
                input_shape.channels
            )));
        }
        let FeatureShape { height: h, width: w, .. } = input_shape;
        let output_shape = FeatureShape::new(channels, same_output(h, stride), same_output(w, stride));
        let (pad_top, _) = same_padding(h, k, stride);
        let (pad_left, _) = same_padding(w, k, stride);
        let sizes = [channels, h, w, output_shape.height, output_shape.width, k, stride, pad_top, pad_left];
        let (output, dispatch) = WeightedDispatch {
            label,
            pipeline: kernels.depthwise.for_kernel(k),
            params: &conv_params(label, &sizes, activation)?,
            input,
            weight,
            bias,
            output_len: output_shape.len(),
            groups: linear_grid(ctx, label, output_shape.len())?,
        }
        .build(ctx)?;
        Ok(Self { output, output_shape, dispatch })
    }

    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }
}
