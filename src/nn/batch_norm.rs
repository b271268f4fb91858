//! BatchNorm in its inference form, and folding it into the preceding convolution.

use candle_core::{Result, Tensor};

/// TF's BatchNorm epsilon. 130 channels of the ImageNet weights have `running_var == 0`
/// exactly, so the eps is load-bearing; PyTorch's default 1e-5 flips the reference top-1.
pub const BN_EPS: f64 = 1e-3;

/// The four tensors of one BatchNorm layer, each `[C]`.
#[derive(Debug, Clone)]
pub struct BatchNormParams {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
}

impl BatchNormParams {
    /// Per-channel `scale = weight / sqrt(var + eps)` and `shift = bias − mean · scale`.
    pub fn scale_shift(&self) -> Result<(Tensor, Tensor)> {
        let scale = self.weight.div(&(self.running_var.affine(1.0, BN_EPS)?.sqrt()?))?;
        let shift = self.bias.sub(&self.running_mean.mul(&scale)?)?;
        Ok((scale, shift))
    }

    /// Fold into a bias-free convolution weight `[C_out, …]`: `w' = w · scale[c_out]`, `b' = shift`.
    pub fn fold_into(&self, conv_weight: &Tensor) -> Result<(Tensor, Tensor)> {
        let (scale, shift) = self.scale_shift()?;
        let c_out = scale.dim(0)?;
        let mut shape = vec![c_out];
        shape.resize(conv_weight.rank(), 1);
        let weight = conv_weight.broadcast_mul(&scale.reshape(shape)?)?;
        Ok((weight, shift))
    }
}
