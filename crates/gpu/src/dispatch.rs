//! One recorded kernel launch: pipeline, bound buffers and workgroup count, all fixed at load.

use crate::{GpuContext, GpuError, Result};

/// A kernel with its buffers bound, ready to be replayed for every image.
#[derive(Debug, Clone)]
pub struct Dispatch {
    label: String,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
}

impl Dispatch {
    /// Bind `buffers` to bindings 0, 1, 2, … of group 0, in order.
    pub(crate) fn new(
        ctx: &GpuContext,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Self {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(binding, buffer)| wgpu::BindGroupEntry { binding: binding as u32, resource: buffer.as_entire_binding() })
            .collect();
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Self { label: label.to_string(), pipeline: pipeline.clone(), bind_group, groups }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.groups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// Threads per group of the kernels with one invocation per value (`@workgroup_size(64)` in
/// conv2d, depthwise and residual_add .wgsl).
const LINEAR_WORKGROUP_SIZE: usize = 64;

/// Workgroups for `invocations` threads of such a kernel. Past the per-dimension limit the
/// groups wrap into a second dimension; the kernels rebuild the linear index from
/// `num_workgroups`.
pub(crate) fn linear_grid(ctx: &GpuContext, label: &str, invocations: usize) -> Result<[u32; 3]> {
    let limit = ctx.device.limits().max_compute_workgroups_per_dimension as usize;
    let groups = invocations.div_ceil(LINEAR_WORKGROUP_SIZE).max(1);
    let x = groups.min(limit);
    let y = groups.div_ceil(x);
    if y > limit {
        return Err(GpuError::Limits(format!("{label}: {invocations} invocations need more than {limit}² workgroups")));
    }
    Ok([x as u32, y as u32, 1])
}

/// Checks one dimension of a grid whose kernel maps workgroups to fixed rows or channels.
pub(crate) fn grid_dimension(ctx: &GpuContext, label: &str, groups: usize) -> Result<u32> {
    let limit = ctx.device.limits().max_compute_workgroups_per_dimension as usize;
    if groups > limit {
        return Err(GpuError::Limits(format!("{label}: {groups} workgroups in one dimension, the device allows {limit}")));
    }
    Ok(groups.max(1) as u32)
}

/// A tensor's values as f32, for upload.
pub(crate) fn tensor_values(label: &str, tensor: &candle_core::Tensor) -> Result<Vec<f32>> {
    tensor
        .flatten_all()
        .and_then(|t| t.to_dtype(candle_core::DType::F32))
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| GpuError::Weights(format!("{label}: {e}")))
}

/// Converts a size that the WGSL side reads as `u32`.
pub(crate) fn word(label: &str, value: usize) -> Result<u32> {
    u32::try_from(value).map_err(|_| GpuError::Limits(format!("{label}: {value} does not fit in 32 bits")))
}
