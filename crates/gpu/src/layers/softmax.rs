//! Calibrated probabilities: `softmax(logits / temperature)`.

use super::Kernels;
use crate::dispatch::word;
use crate::{Dispatch, GpuContext, GpuError, Result};

#[derive(Debug, Clone)]
pub struct Softmax {
    /// `[classes]`.
    pub output: wgpu::Buffer,
    dispatch: Dispatch,
}

impl Softmax {
    pub fn new(
        ctx: &GpuContext,
        kernels: &Kernels,
        label: &str,
        logits: &wgpu::Buffer,
        classes: usize,
        temperature: f32,
    ) -> Result<Self> {
        if classes == 0 || !(temperature.is_finite() && temperature > 0.0) {
            return Err(GpuError::Weights(format!(
                "{label}: softmax needs at least one class and a positive temperature (got {classes}, {temperature})"
            )));
        }
        let params = ctx.params(label, &[word(label, classes)?, temperature.to_bits()]);
        let output = ctx.activation(label, classes);
        // A single workgroup: the class vector is short.
        let dispatch = Dispatch::new(ctx, label, &kernels.softmax, &[&params, logits, &output], [1, 1, 1]);
        Ok(Self { output, dispatch })
    }

    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }
}
