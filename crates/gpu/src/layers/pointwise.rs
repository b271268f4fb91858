//! 1×1 convolution as a tiled matrix multiply `[C_out, C_in] × [C_in, H·W]`, folded bias and
//! activation (expansion, projection and head convolutions).

use candle_core::Tensor;
use skinlens_core::nn::Activation;

use super::{relu6_flag, FeatureShape, Kernels};
use crate::dispatch::{grid_dimension, tensor_values, word};
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
        let params = [c_out, input_shape.channels, input_shape.pixels()]
            .iter()
            .map(|&v| word(label, v))
            .chain([Ok(relu6_flag(activation))])
            .collect::<Result<Vec<u32>>>()?;

        let output = ctx.activation(label, output_shape.len());
        let buffers = [
            &ctx.params(label, &params),
            input,
            &ctx.storage(label, &tensor_values(label, weight)?),
            &ctx.storage(label, &tensor_values(label, bias)?),
            &output,
        ];
        let groups = [
            grid_dimension(ctx, label, input_shape.pixels().div_ceil(TILE))?,
            grid_dimension(ctx, label, c_out.div_ceil(TILE))?,
            1,
        ];
        let dispatch = Dispatch::new(ctx, label, &kernels.pointwise, &buffers, groups);
        Ok(Self { output, output_shape, dispatch })
    }

    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }
}
