//! EfficientNet-Lite for inference on candle's CPU device (native and wasm32 SIMD).

use candle_core::{Result, Tensor};

use super::workers::in_worker;
use super::{FoldedNetwork, MbConv, ModelConfig, STEM_STRIDE};
use crate::nn::{Activation, Conv2dSame, PointwiseConv};

/// stem → 16 MBConv → head 1×1 → global average pool → linear.
#[derive(Debug, Clone)]
pub struct EfficientNetLite {
    config: ModelConfig,
    stem: Conv2dSame,
    blocks: Vec<MbConv>,
    head: PointwiseConv,
    /// `[classes, head_channels]`, used as-is for the class-activation map.
    fc_weight: Tensor,
    fc_bias: Tensor,
}

/// Every intermediate activation of one forward pass (for parity tests and debugging).
#[derive(Debug)]
pub struct Trace {
    pub stem: Tensor,
    pub blocks: Vec<Tensor>,
    /// After the head's ReLU6, `[N, 1280, 7, 7]` at 224 input.
    pub head: Tensor,
    pub pooled: Tensor,
    pub logits: Tensor,
}

impl EfficientNetLite {
    pub fn new(net: &FoldedNetwork) -> Result<Self> {
        Ok(Self {
            config: net.config.clone(),
            stem: Conv2dSame::new(net.stem.weight.clone(), &net.stem.bias, STEM_STRIDE, Activation::Relu6)?,
            blocks: net.blocks.iter().map(MbConv::new).collect::<Result<_>>()?,
            head: PointwiseConv::new(&net.head.weight, &net.head.bias, Activation::Relu6)?,
            fc_weight: net.fc_weight.clone(),
            fc_bias: net.fc_bias.clone(),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// `[N, 3, H, W]` normalised input → head features `[N, C_head, h, w]`.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        // The whole pass runs on one of rayon's workers, with the others polling for its
        // layers' tasks (see `workers`): handed over layer by layer, or to sleeping workers,
        // each layer would wait for thread wake-ups about as long as a 7×7 layer's arithmetic.
        in_worker(|| {
            let mut h = self.stem.forward(x)?;
            for block in &self.blocks {
                h = block.forward(&h)?;
            }
            self.head.forward(&h)
        })
    }

    /// Head features → logits `[N, classes]` (global average pool, then the linear layer).
    pub fn classify_features(&self, features: &Tensor) -> Result<Tensor> {
        let pooled = features.mean((2, 3))?;
        pooled.matmul(&self.fc_weight.t()?)?.broadcast_add(&self.fc_bias)
    }

    /// `[N, 3, H, W]` → logits `[N, classes]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.classify_features(&self.features(x)?)
    }

    /// A forward pass that keeps every intermediate activation.
    pub fn forward_trace(&self, x: &Tensor) -> Result<Trace> {
        let stem = self.stem.forward(x)?;
        let mut blocks = Vec::with_capacity(self.blocks.len());
        let mut h = stem.clone();
        for block in &self.blocks {
            h = block.forward(&h)?;
            blocks.push(h.clone());
        }
        let head = self.head.forward(&h)?;
        let pooled = head.mean((2, 3))?;
        let logits = pooled.matmul(&self.fc_weight.t()?)?.broadcast_add(&self.fc_bias)?;
        Ok(Trace { stem, blocks, head, pooled, logits })
    }

    /// Class-activation map of `class` for one image's head features `[1, C, h, w]`:
    /// the linear layer's weights applied at every position, `[h, w]`. Because the network
    /// ends in global average pooling, the mean of this map plus the bias is the class logit.
    pub fn class_activation_map(&self, features: &Tensor, class: usize) -> Result<Tensor> {
        let (_, c, h, w) = features.dims4()?;
        let weights = self.fc_weight.get(class)?.reshape((1, c))?;
        weights.matmul(&features.reshape((c, h * w))?)?.reshape((h, w))
    }
}
