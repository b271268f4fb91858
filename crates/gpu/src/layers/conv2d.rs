//! Dense k×k convolution with TF 'SAME' padding, folded bias and activation (the stem).

use candle_core::Tensor;
use skinlens_core::nn::{same_output, same_padding, Activation};

use super::{conv_params, FeatureShape, Kernels, WeightedDispatch};
use crate::dispatch::linear_grid;
use crate::{Dispatch, GpuContext, GpuError, Result};

#[derive(Debug, Clone)]
pub struct Conv2dSame {
    pub output: wgpu::Buffer,
    pub output_shape: FeatureShape,
    dispatch: Dispatch,
}

impl Conv2dSame {
    /// `weight` is `[C_out, C_in, k, k]` and `bias` `[C_out]`, BatchNorm folded in.
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
        let (c_out, c_in, k, k_w) = weight.dims4().map_err(|e| GpuError::Weights(format!("{label}: {e}")))?;
        if c_in != input_shape.channels || k != k_w || bias.elem_count() != c_out {
            return Err(GpuError::Weights(format!(
                "{label}: weight {:?} / bias {:?} do not fit a {}-channel input",
                weight.dims(),
                bias.dims(),
                input_shape.channels
            )));
        }
        let FeatureShape { height: h, width: w, .. } = input_shape;
        let output_shape = FeatureShape::new(c_out, same_output(h, stride), same_output(w, stride));
        let (pad_top, _) = same_padding(h, k, stride);
        let (pad_left, _) = same_padding(w, k, stride);
        let sizes = [c_in, h, w, c_out, output_shape.height, output_shape.width, k, stride, pad_top, pad_left];
        let (output, dispatch) = WeightedDispatch {
            label,
            pipeline: kernels.conv2d.for_kernel(k),
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
