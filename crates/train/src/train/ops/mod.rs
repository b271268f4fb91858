//! The trainer's layers that candle has no fast CPU form of, each with its backward pass.

pub mod batch_norm;
pub mod depthwise;
