//! Depthwise k×k convolution (one filter per channel) with TF 'SAME' padding, fused bias and
//! activation, as a direct CPU kernel.
//!
//! candle's `conv2d` with `groups = C` runs one convolution per channel and concatenates the
//! results (up to 1,152 per layer here). This kernel walks each channel plane once instead:
//! one padded copy ([`super::phases`]), then every output is a sum over the taps of contiguous
//! shifted runs ([`super::tap_sum`]: AVX-512 or AVX2 + FMA when the CPU has it, SIMD128 on wasm).

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::tap_sum::tap_sum;
use super::phases::PhaseLayout;
use super::{nchw_f32, output, same_padding, Activation};

#[derive(Debug, Clone)]
pub struct DepthwiseConv2d {
    /// `[C, k, k]` flattened, BatchNorm folded in.
    weight: Vec<f32>,
    bias: Vec<f32>,
    channels: usize,
    kernel: usize,
    stride: usize,
    activation: Activation,
}

impl DepthwiseConv2d {
    /// `weight` is `[C, 1, k, k]` (PyTorch layout), `bias` is `[C]`.
    pub fn new(weight: &Tensor, bias: &Tensor, stride: usize, activation: Activation) -> Result<Self> {
        let (channels, one, kernel, kernel_w) = weight.dims4()?;
        if one != 1 || kernel != kernel_w {
            candle_core::bail!("depthwise weight must be [C, 1, k, k], got {:?}", weight.dims());
        }
        Ok(Self {
            weight: weight.flatten_all()?.to_vec1()?,
            bias: bias.to_vec1()?,
            channels,
            kernel,
            stride,
            activation,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.apply_op1_no_bwd(self)
    }

    /// One channel plane: `input` is `h × w`, `output` is `oh × ow`; laid out by
    /// [`PhaseLayout`], the whole plane is one [`tap_sum`] (activation included).
    fn plane(&self, c: usize, input: &[f32], layout: &PhaseLayout, starts: &[usize], output: &mut [MaybeUninit<f32>], scratch: &mut Scratch) {
        let k = self.kernel;
        layout.copy_interior(input, &mut scratch.phases);
        let relu6 = self.activation == Activation::Relu6;
        tap_sum(&mut scratch.run, &scratch.phases, starts, &self.weight[c * k * k..(c + 1) * k * k], self.bias[c], relu6);
        layout.copy_out(&scratch.run, output);
    }
}

/// Outputs below which a group of planes is not split further between threads.
const MIN_OUTPUTS_PER_TASK: usize = 4096;

/// Per-thread buffers reused across the channel planes of one layer.
struct Scratch {
    /// One laid-out plane; its border stays zero from plane to plane.
    phases: Vec<f32>,
    run: Vec<f32>,
}

impl Scratch {
    fn new(layout: &PhaseLayout) -> Self {
        Self { phases: vec![0.0; layout.len()], run: vec![0.0; layout.run_len()] }
    }
}

impl CustomOp1 for DepthwiseConv2d {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-same"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (input, (n, c, h, w)) = nchw_f32(storage, layout, self.channels, self.name())?;
        let layout = PhaseLayout::new(h, w, self.kernel, self.stride);
        let (oh, ow) = layout.output();
        let mut output = output::uninit(n * c * oh * ow);
        // Small planes (7×7 has 49 outputs) are handed to threads in groups, so a task is
        // worth more than rayon's cost of sending it.
        let planes_per_task = MIN_OUTPUTS_PER_TASK.div_ceil(oh * ow);
        // Every plane of the layer has the same layout, so the taps' offsets are computed once.
        let starts: Vec<usize> = layout.tap_starts().collect();
        if candle_core::utils::get_num_threads() == 1 {
            // On one thread, rayon would only add a hand-over to its worker per layer.
            let mut scratch = Scratch::new(&layout);
            for (plane, (out, inp)) in output.chunks_exact_mut(oh * ow).zip(input.chunks_exact(h * w)).enumerate() {
                self.plane(plane % c, inp, &layout, &starts, out, &mut scratch);
            }
        } else {
            output
                .par_chunks_mut(oh * ow)
                .zip(input.par_chunks(h * w))
                .enumerate()
                .with_min_len(planes_per_task)
                .for_each_init(|| Scratch::new(&layout), |scratch, (plane, (out, inp))| self.plane(plane % c, inp, &layout, &starts, out, scratch));
        }
        // SAFETY: every plane was written by `plane` (its `copy_out` writes the whole plane).
        let output = unsafe { output::assume_init(output) };
        Ok((CpuStorage::F32(output), Shape::from((n, c, oh, ow))))
    }
}

/// The same layer through candle's grouped `conv2d`: the baseline the kernel above replaces,
/// kept for the parity test and the benchmark.
pub fn depthwise_grouped_reference(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stride: usize,
    activation: Activation,
) -> Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    let k = weight.dim(2)?;
    let (top, bottom) = same_padding(h, k, stride);
    let (left, right) = same_padding(w, k, stride);
    let padded = x.pad_with_zeros(2, top, bottom)?.pad_with_zeros(3, left, right)?;
    let y = padded.conv2d(weight, 0, stride, 1, c)?.broadcast_add(&bias.reshape((1, c, 1, 1))?)?;
    activation.apply(&y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_grouped_conv_on_odd_shapes() -> Result<()> {
        let dev = Device::Cpu;
        for &(c, h, w, k, s) in &[(3, 7, 5, 3, 1), (4, 8, 9, 3, 2), (5, 6, 6, 5, 2), (2, 11, 4, 5, 1), (1, 1, 1, 3, 2)] {
            let x = Tensor::randn(0f32, 1.0, (2, c, h, w), &dev)?;
            let weight = Tensor::randn(0f32, 1.0, (c, 1, k, k), &dev)?;
            let bias = Tensor::randn(0f32, 1.0, c, &dev)?;
            for act in [Activation::Identity, Activation::Relu6] {
                let fast = DepthwiseConv2d::new(&weight, &bias, s, act)?.forward(&x)?;
                let slow = depthwise_grouped_reference(&x, &weight, &bias, s, act)?;
                assert_eq!(fast.dims(), slow.dims());
                let diff = (fast - slow)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(diff < 1e-5, "c{c} h{h} w{w} k{k} s{s}: {diff}");
            }
        }
        Ok(())
    }
}
