//! A dense convolution with TF 'SAME' padding, bias and activation (the stem).

use candle_core::{Result, Tensor};

use super::{same_padding, Activation};

#[derive(Debug, Clone)]
pub struct Conv2dSame {
    /// `[C_out, C_in, k, k]`, BatchNorm folded in.
    weight: Tensor,
    /// `[1, C_out, 1, 1]`.
    bias: Tensor,
    stride: usize,
    activation: Activation,
}

impl Conv2dSame {
    pub fn new(weight: Tensor, bias: &Tensor, stride: usize, activation: Activation) -> Result<Self> {
        let c_out = weight.dim(0)?;
        Ok(Self { weight, bias: bias.reshape((1, c_out, 1, 1))?, stride, activation })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let k = self.weight.dim(2)?;
        let (top, bottom) = same_padding(h, k, self.stride);
        let (left, right) = same_padding(w, k, self.stride);
        let padded = x.pad_with_zeros(2, top, bottom)?.pad_with_zeros(3, left, right)?;
        let y = padded.conv2d(&self.weight, 0, self.stride, 1, 1)?.broadcast_add(&self.bias)?;
        self.activation.apply(&y)
    }
}
