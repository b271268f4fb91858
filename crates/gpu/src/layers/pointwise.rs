//! 1×1 convolution as a tiled matrix multiply `[C_out, C_in] × [C_in, H·W]`, folded bias and
//! activation (expansion, projection and head convolutions).

use candle_core::Tensor;
use skinlens_core::nn::Activation;

use super::{conv_params, FeatureShape, Kernels, WeightedDispatch};
use crate::dispatch::grid_dimension;
use crate::{Dispatch, GpuContext, GpuError, Result};

/// Output rows and columns per workgroup (`TILE` in pointwise.wgsl).
const TILE: usize = 64;

#[derive(Debug, Clone)]
pub struct PointwiseConv {
    pub output: wgpu::Buffer,
    pub output_shape: FeatureShape,
    dispatch: Dispatch,
}

impl PointwiseConv {
    /// `weight` is `[C_out, C_in, 1, 1]` or `[C_out, C_in]`, `bias` `[C_out]`, BatchNorm folded in.
    // Each argument is one fact about the layer (device, kernels, name, weights, geometry,
    // input); bundling them into a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &GpuContext,
        kernels: &Kernels,
        label: &str,
        weight: &Tensor,
        bias: &Tensor,
        activation: Activation,
        input: &wgpu::Buffer,
        input_shape: FeatureShape,
    ) -> Result<Self> {
        let dims = weight.dims();
        let square_kernel = dims.len() == 2 || (dims.len() == 4 && dims[2] == 1 && dims[3] == 1);
        if !square_kernel || dims[1] != input_shape.channels || bias.elem_count() != dims[0] {
            return Err(GpuError::Weights(format!(
                "{label}: weight {dims:?} / bias {:?} are not a 1×1 convolution of {} channels",
                bias.dims(),
                input_shape.channels
            )));
        }
        let c_out = dims[0];
        let output_shape = FeatureShape::new(c_out, input_shape.height, input_shape.width);
        let sizes = [c_out, input_shape.channels, input_shape.pixels()];
        let (output, dispatch) = WeightedDispatch {
            label,
            pipeline: &kernels.pointwise,
            params: &conv_params(label, &sizes, activation)?,
            input,
            weight,
            bias,
            output_len: output_shape.len(),
            // One workgroup per TILE×TILE block of the [C_out, H·W] output.
            groups: [
                grid_dimension(ctx, label, input_shape.pixels().div_ceil(TILE))?,
                grid_dimension(ctx, label, c_out.div_ceil(TILE))?,
                1,
            ],
        }
        .build(ctx)?;
        Ok(Self { output, output_shape, dispatch })
    }

    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }
}
