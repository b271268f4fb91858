//! Inference layers, one concept per file, in the manner of candle-nn.
//!
//! All of them take BatchNorm already folded into their weights and bias: a folded layer is
//! `activation(conv(x) + bias)`.

pub mod activation;
pub mod batch_norm;
pub mod conv;
pub mod depthwise;
pub mod padding;
pub mod pointwise;

pub use activation::Activation;
pub use batch_norm::{BatchNormParams, BN_EPS};
pub use conv::Conv2dSame;
pub use depthwise::DepthwiseConv2d;
pub use padding::{same_output, same_padding};
pub use pointwise::PointwiseConv;
