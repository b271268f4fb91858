//! The network's layers as GPU kernels, one per file, each beside the WGSL it dispatches.
//!
//! Every layer is built once at load: it uploads its weights, allocates its output buffer,
//! binds both to its kernel and keeps the resulting [`Dispatch`](crate::Dispatch) for replay.
//! Activations are f32, NCHW with N = 1, i.e. `[C, H·W]` row-major.

use candle_core::Tensor;
use skinlens_core::nn::Activation;

use crate::dispatch::{tensor_values, word};
use crate::{Dispatch, GpuContext, Result};

pub mod conv2d;
pub mod depthwise;
pub mod global_avg_pool;
pub mod linear;
pub mod pointwise;
pub mod residual_add;
pub mod softmax;

pub use conv2d::Conv2dSame;
pub use depthwise::DepthwiseConv2d;
pub use global_avg_pool::GlobalAvgPool;
pub use linear::Linear;
pub use pointwise::PointwiseConv;
pub use residual_add::ResidualAdd;
pub use softmax::Softmax;

/// `[C, H, W]` of one image's feature map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl FeatureShape {
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        Self { channels, height, width }
    }

    pub fn pixels(&self) -> usize {
        self.height * self.width
    }

    pub fn len(&self) -> usize {
        self.channels * self.pixels()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The compute pipelines, compiled once per device and shared by every layer that uses them.
#[derive(Debug, Clone)]
pub struct Kernels {
    pub(crate) conv2d: BySize,
    pub(crate) depthwise: BySize,
    pub(crate) pointwise: wgpu::ComputePipeline,
    pub(crate) residual_add: wgpu::ComputePipeline,
    pub(crate) global_avg_pool: wgpu::ComputePipeline,
    pub(crate) linear: wgpu::ComputePipeline,
    pub(crate) softmax: wgpu::ComputePipeline,
}

impl Kernels {
    /// Compile every kernel. Errors surface through the caller's error scope
    /// (see [`GpuEngine::new`](crate::GpuEngine::new)).
    pub fn new(ctx: &GpuContext) -> Self {
        let device = &ctx.device;
        Self {
            conv2d: BySize::new(device, wgpu::include_wgsl!("conv2d.wgsl")),
            depthwise: BySize::new(device, wgpu::include_wgsl!("depthwise.wgsl")),
            pointwise: compile(device, wgpu::include_wgsl!("pointwise.wgsl")),
            residual_add: compile(device, wgpu::include_wgsl!("residual_add.wgsl")),
            global_avg_pool: compile(device, wgpu::include_wgsl!("global_avg_pool.wgsl")),
            linear: compile(device, wgpu::include_wgsl!("linear.wgsl")),
            softmax: compile(device, wgpu::include_wgsl!("softmax.wgsl")),
        }
    }
}

fn compile(device: &wgpu::Device, source: wgpu::ShaderModuleDescriptor<'_>) -> wgpu::ComputePipeline {
    let label = source.label;
    let module = device.create_shader_module(source);
    pipeline(device, label, &module, &[])
}

fn pipeline(
    device: &wgpu::Device,
    label: Option<&str>,
    module: &wgpu::ShaderModule,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label,
        // Derived from the shader: each kernel's bindings are exactly its buffers in order.
        layout: None,
        module,
        entry_point: Some("main"),
        compilation_options: wgpu::PipelineCompilationOptions { constants, ..Default::default() },
        cache: None,
    })
}

/// A convolution kernel specialised by its pipeline constant `KERNEL` for the sizes
/// EfficientNet-Lite uses (3 and 5: fixed loop bounds unroll), plus a generic pipeline that
/// reads the size from its parameters for any other.
#[derive(Debug, Clone)]
pub(crate) struct BySize {
    specialised: Vec<(usize, wgpu::ComputePipeline)>,
    generic: wgpu::ComputePipeline,
}

impl BySize {
    const SIZES: [usize; 2] = [3, 5];

    fn new(device: &wgpu::Device, source: wgpu::ShaderModuleDescriptor<'_>) -> Self {
        let label = source.label;
        let module = device.create_shader_module(source);
        Self {
            specialised: Self::SIZES
                .iter()
                .map(|&k| (k, pipeline(device, label, &module, &[("KERNEL", k as f64)])))
                .collect(),
            generic: pipeline(device, label, &module, &[]),
        }
    }

    pub(crate) fn for_kernel(&self, kernel: usize) -> &wgpu::ComputePipeline {
        self.specialised.iter().find(|(k, _)| *k == kernel).map_or(&self.generic, |(_, p)| p)
    }
}

/// A convolution kernel's parameters: `sizes` as the kernel's `Params` lists them, then its
/// ReLU6 flag.
pub(crate) fn conv_params(label: &str, sizes: &[usize], activation: Activation) -> Result<Vec<u32>> {
    let mut words = sizes.iter().map(|&size| word(label, size)).collect::<Result<Vec<u32>>>()?;
    words.push(u32::from(activation == Activation::Relu6));
    Ok(words)
}

/// A layer with weights and a bias, whose kernel binds parameters, input, weight, bias and
/// output to bindings 0–4 (the convolutions and the classifier).
pub(crate) struct WeightedDispatch<'a> {
    pub(crate) label: &'a str,
    pub(crate) pipeline: &'a wgpu::ComputePipeline,
    pub(crate) params: &'a [u32],
    pub(crate) input: &'a wgpu::Buffer,
    pub(crate) weight: &'a Tensor,
    pub(crate) bias: &'a Tensor,
    pub(crate) output_len: usize,
    pub(crate) groups: [u32; 3],
}

impl WeightedDispatch<'_> {
    /// Upload the parameters, weight and bias, allocate the output and bind them all; returns
    /// the output buffer and the dispatch that fills it.
    pub(crate) fn build(self, ctx: &GpuContext) -> Result<(wgpu::Buffer, Dispatch)> {
        let label = self.label;
        let output = ctx.activation(label, self.output_len);
        let buffers = [
            &ctx.params(label, self.params),
            self.input,
            &ctx.storage(label, &tensor_values(label, self.weight)?),
            &ctx.storage(label, &tensor_values(label, self.bias)?),
            &output,
        ];
        let dispatch = Dispatch::new(ctx, label, self.pipeline, &buffers, self.groups);
        Ok((output, dispatch))
    }
}
