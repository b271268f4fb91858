//! Global average pooling: `[C, H, W]` → `[C]`.

use super::{FeatureShape, Kernels};
use crate::dispatch::{grid_dimension, word};
use crate::{Dispatch, GpuContext, Result};

#[derive(Debug, Clone)]
pub struct GlobalAvgPool {
    /// `[C]`.
    pub output: wgpu::Buffer,
    dispatch: Dispatch,
}

impl GlobalAvgPool {
    pub fn new(ctx: &GpuContext, kernels: &Kernels, label: &str, input: &wgpu::Buffer, input_shape: FeatureShape) -> Result<Self> {
        let params = ctx.params(label, &[word(label, input_shape.channels)?, word(label, input_shape.pixels())?]);
        let output = ctx.activation(label, input_shape.channels);
        // One workgroup per channel.
        let groups = [grid_dimension(ctx, label, input_shape.channels)?, 1, 1];
        let dispatch = Dispatch::new(ctx, label, &kernels.global_avg_pool, &[&params, input, &output], groups);
        Ok(Self { output, dispatch })
    }

    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }
}
