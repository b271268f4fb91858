//! The MBConv residual connection: adds the block's input to its projection, in place.

use super::Kernels;
use crate::dispatch::{linear_grid, word};
use crate::{Dispatch, GpuContext, Result};

#[derive(Debug, Clone)]
pub struct ResidualAdd {
    dispatch: Dispatch,
}

impl ResidualAdd {
    /// `output[i] += skip[i]` for the first `len` values.
    pub fn new(
        ctx: &GpuContext,
        kernels: &Kernels,
        label: &str,
        skip: &wgpu::Buffer,
        output: &wgpu::Buffer,
        len: usize,
    ) -> Result<Self> {
        let params = ctx.params(label, &[word(label, len)?]);
        let groups = linear_grid(ctx, label, len)?;
        let dispatch = Dispatch::new(ctx, label, &kernels.residual_add, &[&params, skip, output], groups);
        Ok(Self { dispatch })
    }

    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }
}
