//! The network's layers as GPU kernels, one per file, each beside the WGSL it dispatches.
//!
//! Every layer is built once at load: it uploads its weights, allocates its output buffer,
//! binds both to its kernel and keeps the resulting [`Dispatch`](crate::Dispatch) for replay.
//! Activations are f32, NCHW with N = 1, i.e. `[C, H·W]` row-major.

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
    pub fn new(ctx: &crate::GpuContext) -> Self {
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

/// The WGSL side's flag for [`Activation`](skinlens_core::nn::Activation).
pub(crate) fn relu6_flag(activation: skinlens_core::nn::Activation) -> u32 {
    u32::from(activation == skinlens_core::nn::Activation::Relu6)
}
