//! The whole network on the GPU: every layer built once at load, replayed for each image.

use std::sync::atomic::{AtomicBool, Ordering};

use skinlens_core::model::{FoldedNetwork, STEM_STRIDE};
use skinlens_core::nn::Activation;

use crate::context::ErrorScopes;
use crate::layers::{
    Conv2dSame, DepthwiseConv2d, FeatureShape, GlobalAvgPool, Kernels, Linear, PointwiseConv, ResidualAdd, Softmax,
};
use crate::readback::read_mapped;
use crate::{Dispatch, GpuContext, GpuError, Result};

/// One image's result.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuOutput {
    pub logits: Vec<f32>,
    /// `softmax(logits / temperature)`, in the model's class order.
    pub probabilities: Vec<f32>,
}

/// Every intermediate activation of one image (tests and debugging), in the CPU
/// [`Trace`](skinlens_core::model::Trace)'s order and layout.
#[derive(Debug, Clone)]
pub struct GpuTrace {
    pub stem: Vec<f32>,
    pub blocks: Vec<Vec<f32>>,
    pub head: Vec<f32>,
    pub pooled: Vec<f32>,
    pub logits: Vec<f32>,
    pub probabilities: Vec<f32>,
}

/// A buffer worth reading back in a trace, with its length.
#[derive(Debug, Clone)]
struct Tap {
    buffer: wgpu::Buffer,
    len: usize,
}

/// EfficientNet-Lite as a fixed list of GPU dispatches over buffers allocated at load.
#[derive(Debug)]
pub struct GpuEngine {
    ctx: GpuContext,
    input_size: usize,
    input: wgpu::Buffer,
    dispatches: Vec<Dispatch>,
    classes: usize,
    logits: wgpu::Buffer,
    probabilities: wgpu::Buffer,
    /// Logits, probabilities [, head features], mapped once per image.
    staging: wgpu::Buffer,
    stem: Tap,
    blocks: Vec<Tap>,
    head: Tap,
    head_shape: FeatureShape,
    pooled: Tap,
    /// Set while an image is in flight: the staging buffer can be mapped only once at a time.
    busy: AtomicBool,
}

impl GpuEngine {
    /// Open the default adapter and load `net` onto it.
    pub async fn new(net: &FoldedNetwork) -> Result<Self> {
        Self::with_context(GpuContext::new().await?, net).await
    }

    /// Upload the weights, compile the kernels and record every dispatch, once.
    pub async fn with_context(ctx: GpuContext, net: &FoldedNetwork) -> Result<Self> {
        let scopes = ErrorScopes::push(&ctx.device);
        let built = Self::build(ctx, net);
        // Pop the scopes even when building failed on the host side, so they never leak.
        let gpu_result = scopes.pop().await;
        let engine = built?;
        gpu_result.map_err(GpuError::Load)?;
        engine.ctx.check_healthy()?;
        Ok(engine)
    }

    fn build(ctx: GpuContext, net: &FoldedNetwork) -> Result<Self> {
        let kernels = Kernels::new(&ctx);
        let size = net.config.input_size;
        let input_shape = FeatureShape::new(3, size, size);
        let input = ctx.activation("input", input_shape.len());
        let mut dispatches = Vec::new();

        let stem = Conv2dSame::new(
            &ctx, &kernels, "stem", &net.stem.weight, &net.stem.bias, STEM_STRIDE, Activation::Relu6, &input, input_shape,
        )?;
        dispatches.push(stem.dispatch().clone());
        let stem_tap = Tap { buffer: stem.output.clone(), len: stem.output_shape.len() };

        let (mut x, mut shape) = (stem.output.clone(), stem.output_shape);
        let mut blocks = Vec::with_capacity(net.blocks.len());
        for (i, block) in net.blocks.iter().enumerate() {
            let (expanded, expanded_shape) = match &block.expand {
                Some(expand) => {
                    let label = format!("block{i}.expand");
                    let layer = PointwiseConv::new(
                        &ctx, &kernels, &label, &expand.weight, &expand.bias, Activation::Relu6, &x, shape,
                    )?;
                    dispatches.push(layer.dispatch().clone());
                    (layer.output, layer.output_shape)
                }
                None => (x.clone(), shape),
            };
            let dw = &block.depthwise;
            let depthwise = DepthwiseConv2d::new(
                &ctx,
                &kernels,
                &format!("block{i}.depthwise"),
                &dw.weight,
                &dw.bias,
                block.spec.stride,
                Activation::Relu6,
                &expanded,
                expanded_shape,
            )?;
            dispatches.push(depthwise.dispatch().clone());
            let project = PointwiseConv::new(
                &ctx,
                &kernels,
                &format!("block{i}.project"),
                &block.project.weight,
                &block.project.bias,
                Activation::Identity,
                &depthwise.output,
                depthwise.output_shape,
            )?;
            dispatches.push(project.dispatch().clone());
            if block.spec.has_residual() {
                if project.output_shape != shape {
                    return Err(GpuError::Weights(format!("block{i}: residual of {shape:?} onto {:?}", project.output_shape)));
                }
                let add = ResidualAdd::new(&ctx, &kernels, &format!("block{i}.residual"), &x, &project.output, shape.len())?;
                dispatches.push(add.dispatch().clone());
            }
            x = project.output;
            shape = project.output_shape;
            blocks.push(Tap { buffer: x.clone(), len: shape.len() });
        }

        let head = PointwiseConv::new(
            &ctx, &kernels, "head", &net.head.weight, &net.head.bias, Activation::Relu6, &x, shape,
        )?;
        dispatches.push(head.dispatch().clone());
        let pool = GlobalAvgPool::new(&ctx, &kernels, "pool", &head.output, head.output_shape)?;
        dispatches.push(pool.dispatch().clone());
        let fc = Linear::new(&ctx, &kernels, "fc", &net.fc_weight, &net.fc_bias, &pool.output, head.output_shape.channels)?;
        dispatches.push(fc.dispatch().clone());
        let classes = fc.out_features;
        let softmax = Softmax::new(&ctx, &kernels, "softmax", &fc.output, classes, net.metadata.temperature)?;
        dispatches.push(softmax.dispatch().clone());

        // Logits, probabilities and, when asked for, the head's features.
        let staging = ctx.staging("result", 2 * classes + head.output_shape.len());
        Ok(Self {
            input_size: size,
            input,
            dispatches,
            classes,
            logits: fc.output,
            probabilities: softmax.output,
            staging,
            stem: stem_tap,
            blocks,
            head: Tap { buffer: head.output, len: head.output_shape.len() },
            head_shape: head.output_shape,
            pooled: Tap { buffer: pool.output, len: head.output_shape.channels },
            busy: AtomicBool::new(false),
            ctx,
        })
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Values per input image: `3 × S × S`.
    pub fn input_len(&self) -> usize {
        3 * self.input_size * self.input_size
    }

    pub fn input_size(&self) -> usize {
        self.input_size
    }

    pub fn num_classes(&self) -> usize {
        self.classes
    }

    /// Every kernel launch of one image, in order (for profiling; see examples/gpu_profile.rs).
    pub fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }

    /// Upload one image's input without running anything (for profiling single dispatches).
    pub fn write_input(&self, input: &[f32]) -> Result<()> {
        if input.len() != self.input_len() {
            return Err(GpuError::InputLength { found: input.len(), expected: self.input_len(), size: self.input_size });
        }
        self.ctx.write(&self.input, input);
        Ok(())
    }

    /// How many kernel launches one image takes.
    pub fn num_dispatches(&self) -> usize {
        self.dispatches.len()
    }

    /// Normalised NCHW input (`(u8 − 127) / 128`, `[1, 3, S, S]` flattened) → logits and
    /// probabilities.
    pub async fn classify(&self, input: &[f32]) -> Result<GpuOutput> {
        Ok(self.classify_inner(input, false).await?.0)
    }

    /// [`classify`](Self::classify), plus the head's feature map (`[C, h, w]` flattened, see
    /// [`head_shape`](Self::head_shape)) for the class-activation map, read back in the same
    /// mapping.
    pub async fn classify_with_features(&self, input: &[f32]) -> Result<(GpuOutput, Vec<f32>)> {
        self.classify_inner(input, true).await
    }

    async fn classify_inner(&self, input: &[f32], with_features: bool) -> Result<(GpuOutput, Vec<f32>)> {
        let _busy = self.claim()?;
        self.forward(input).await?;
        let ctx = &self.ctx;
        let n = self.classes;
        let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("result") });
        let bytes = (n * 4) as wgpu::BufferAddress;
        encoder.copy_buffer_to_buffer(&self.logits, 0, &self.staging, 0, bytes);
        encoder.copy_buffer_to_buffer(&self.probabilities, 0, &self.staging, bytes, bytes);
        let mut len = 2 * n;
        if with_features {
            let feature_bytes = (self.head.len * 4) as wgpu::BufferAddress;
            encoder.copy_buffer_to_buffer(&self.head.buffer, 0, &self.staging, 2 * bytes, feature_bytes);
            len += self.head.len;
        }
        ctx.queue.submit([encoder.finish()]);
        let mut values = read_mapped(&ctx.device, &self.staging, len).await?;
        ctx.check_healthy()?;
        let features = values.split_off(2 * n);
        let probabilities = values.split_off(n);
        Ok((GpuOutput { logits: values, probabilities }, features))
    }

    /// `[C, h, w]` of the head's feature map (1280 × 7 × 7 at 224 input).
    pub fn head_shape(&self) -> FeatureShape {
        self.head_shape
    }

    /// Logits only.
    pub async fn logits(&self, input: &[f32]) -> Result<Vec<f32>> {
        Ok(self.classify(input).await?.logits)
    }

    /// Run one image and read back every intermediate activation.
    pub async fn trace(&self, input: &[f32]) -> Result<GpuTrace> {
        let _busy = self.claim()?;
        self.forward(input).await?;
        let ctx = &self.ctx;
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for tap in &self.blocks {
            blocks.push(ctx.read(&tap.buffer, tap.len).await?);
        }
        Ok(GpuTrace {
            stem: ctx.read(&self.stem.buffer, self.stem.len).await?,
            blocks,
            head: ctx.read(&self.head.buffer, self.head.len).await?,
            pooled: ctx.read(&self.pooled.buffer, self.pooled.len).await?,
            logits: ctx.read(&self.logits, self.classes).await?,
            probabilities: ctx.read(&self.probabilities, self.classes).await?,
        })
    }

    /// Upload `input` and submit every dispatch.
    async fn forward(&self, input: &[f32]) -> Result<()> {
        if input.len() != self.input_len() {
            return Err(GpuError::InputLength { found: input.len(), expected: self.input_len(), size: self.input_size });
        }
        self.ctx.check_healthy()?;
        self.ctx.write(&self.input, input);
        let dispatches: Vec<&Dispatch> = self.dispatches.iter().collect();
        self.ctx.run(&dispatches).await
    }

    fn claim(&self) -> Result<BusyGuard<'_>> {
        if self.busy.swap(true, Ordering::Acquire) {
            return Err(GpuError::Busy);
        }
        Ok(BusyGuard(&self.busy))
    }
}

/// Clears the busy flag however the image ends (result, error or a dropped future).
struct BusyGuard<'a>(&'a AtomicBool);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A deterministic input for the start-up self-check: smooth colour gradients with a few
/// sharp edges, every value a normalised byte `(u8 − 127) / 128` as real images give.
/// Returned flattened NCHW, `[1, 3, size, size]`.
pub fn self_check_input(size: usize) -> Vec<f32> {
    let mut values = Vec::with_capacity(3 * size * size);
    for channel in 0..3 {
        for y in 0..size {
            for x in 0..size {
                let gradient = (x * (channel + 1) + y * (3 - channel)) * 255 / (4 * size.max(1));
                let stripe = if (x / 16 + y / 16 + channel) % 3 == 0 { 60 } else { 0 };
                let byte = ((gradient + stripe) % 256) as u8;
                values.push(skinlens_core::preprocess::normalise_u8(byte));
            }
        }
    }
    values
}
