//! 1×1 convolution as one matrix multiply per image: `[C_out, C_in] × [C_in, H·W]`.
//!
//! candle's generic conv2d goes through im2col, which for a 1×1 kernel is a pure copy.

use candle_core::{Result, Tensor};

use super::Activation;

#[derive(Debug, Clone)]
pub struct PointwiseConv {
    /// `[1, C_out, C_in]`, BatchNorm folded in.
    weight: Tensor,
    /// `[1, C_out, 1]`.
    bias: Tensor,
    activation: Activation,
}

impl PointwiseConv {
    /// `weight` is `[C_out, C_in, 1, 1]` or `[C_out, C_in]`; `bias` is `[C_out]`.
    pub fn new(weight: &Tensor, bias: &Tensor, activation: Activation) -> Result<Self> {
        let (c_out, c_in) = (weight.dim(0)?, weight.dim(1)?);
        Ok(Self {
            weight: weight.reshape((1, c_out, c_in))?.contiguous()?,
            bias: bias.reshape((1, c_out, 1))?,
            activation,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c_in, h, w) = x.dims4()?;
        let c_out = self.weight.dim(1)?;
        let y = self
            .weight
            .broadcast_matmul(&x.reshape((n, c_in, h * w))?)?
            .broadcast_add(&self.bias)?;
        self.activation.apply(&y)?.reshape((n, c_out, h, w))
    }
}
