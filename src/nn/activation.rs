//! The one non-linearity of EfficientNet-Lite: ReLU6 (Lite drops Swish for quantisation).

use candle_core::{Result, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Projection convolutions and the residual add are linear.
    Identity,
    /// `clamp(x, 0, 6)`.
    Relu6,
}

impl Activation {
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Identity => Ok(x.clone()),
            Activation::Relu6 => x.clamp(0f32, 6f32),
        }
    }

    #[inline]
    pub fn apply_scalar(self, v: f32) -> f32 {
        match self {
            Activation::Identity => v,
            Activation::Relu6 => v.clamp(0.0, 6.0),
        }
    }
}
