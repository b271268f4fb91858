//! The inverted-residual block of EfficientNet-Lite (no squeeze-excitation, ReLU6).

use candle_core::{Result, Tensor};

use super::FoldedBlock;
use crate::nn::{Activation, DepthwiseConv2d, PointwiseConv};

/// `[expand 1×1 + ReLU6] → depthwise k×k + ReLU6 → project 1×1 (linear) [+ x]`.
#[derive(Debug, Clone)]
pub struct MbConv {
    expand: Option<PointwiseConv>,
    depthwise: DepthwiseConv2d,
    project: PointwiseConv,
    residual: bool,
}

impl MbConv {
    pub fn new(block: &FoldedBlock) -> Result<Self> {
        let expand = block
            .expand
            .as_ref()
            .map(|e| PointwiseConv::new(&e.weight, &e.bias, Activation::Relu6))
            .transpose()?;
        let dw = &block.depthwise;
        Ok(Self {
            expand,
            depthwise: DepthwiseConv2d::new(&dw.weight, &dw.bias, block.spec.stride, Activation::Relu6)?,
            project: PointwiseConv::new(&block.project.weight, &block.project.bias, Activation::Identity)?,
            residual: block.spec.has_residual(),
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = match &self.expand {
            Some(expand) => expand.forward(x)?,
            None => x.clone(),
        };
        let h = self.depthwise.forward(&h)?;
        // The projection is linear and there is no activation after the residual add, so the
        // add is fused into the projection's output pass.
        if self.residual {
            self.project.forward_with_residual(&h, x)
        } else {
            self.project.forward(&h)
        }
    }
}
