//! A dense convolution with TF 'SAME' padding, bias and activation (the stem), as a direct CPU
//! kernel.
//!
//! The stem has three input channels, so im2col (27 copies of the image) followed by a matrix
//! product, a bias pass and a clamp pass cost more than the arithmetic. Here each input plane
//! is laid out once ([`PhaseLayout`]) and every output channel is one [`tap_sum`] over all
//! `C_in · k · k` taps of the laid-out planes, with the bias and ReLU6 applied as it is stored.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::phases::PhaseLayout;
use super::tap_sum::tap_sum;
use super::{nchw_f32, output, same_padding, Activation};

#[derive(Debug, Clone)]
pub struct Conv2dSame {
    /// `[C_out, C_in · k · k]`, BatchNorm folded in.
    weight: Vec<f32>,
    bias: Vec<f32>,
    c_out: usize,
    c_in: usize,
    kernel: usize,
    stride: usize,
    activation: Activation,
}

impl Conv2dSame {
    /// `weight` is `[C_out, C_in, k, k]`, `bias` `[C_out]`.
    pub fn new(weight: Tensor, bias: &Tensor, stride: usize, activation: Activation) -> Result<Self> {
        let (c_out, c_in, kernel, kernel_w) = weight.dims4()?;
        if kernel != kernel_w {
            candle_core::bail!("convolution weight must be square, got {:?}", weight.dims());
        }
        Ok(Self { weight: weight.flatten_all()?.to_vec1()?, bias: bias.to_vec1()?, c_out, c_in, kernel, stride, activation })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.apply_op1_no_bwd(self)
    }
}

impl CustomOp1 for Conv2dSame {
    fn name(&self) -> &'static str {
        "conv2d-same-bias-act"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (input, (n, _, h, w)) = nchw_f32(storage, layout, self.c_in, self.name())?;
        let planes = PhaseLayout::new(h, w, self.kernel, self.stride);
        let (oh, ow) = planes.output();
        let (plane_len, taps) = (planes.len(), self.c_in * self.kernel * self.kernel);
        // Tap (ci, ky, kx) reads laid-out plane ci: the weight's own order.
        let starts: Vec<usize> = (0..self.c_in).flat_map(|ci| planes.tap_starts().map(move |t| ci * plane_len + t)).collect();
        let relu6 = self.activation == Activation::Relu6;
        let mut output = output::uninit(n * self.c_out * oh * ow);
        let mut laid_out = vec![0f32; self.c_in * plane_len];
        for (image, out) in input.chunks_exact(self.c_in * h * w).zip(output.chunks_exact_mut(self.c_out * oh * ow)) {
            laid_out.par_chunks_mut(plane_len).zip(image.par_chunks(h * w)).for_each(|(dst, src)| planes.fill(src, dst));
            out.par_chunks_mut(oh * ow).enumerate().for_each_init(
                || vec![0f32; planes.run_len()],
                |run, (o, plane)| {
                    tap_sum(run, &laid_out, &starts, &self.weight[o * taps..(o + 1) * taps], self.bias[o], relu6);
                    planes.copy_out(run, plane);
                },
            );
        }
        // SAFETY: every output plane was written by `copy_out` above.
        let output = unsafe { output::assume_init(output) };
        Ok((CpuStorage::F32(output), Shape::from((n, self.c_out, oh, ow))))
    }
}

/// The same layer through candle's `conv2d`: the baseline the kernel above replaces, kept
/// for its test.
pub fn conv2d_same_reference(x: &Tensor, weight: &Tensor, bias: &Tensor, stride: usize, activation: Activation) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let k = weight.dim(2)?;
    let (top, bottom) = same_padding(h, k, stride);
    let (left, right) = same_padding(w, k, stride);
    let padded = x.pad_with_zeros(2, top, bottom)?.pad_with_zeros(3, left, right)?;
    let y = padded.conv2d(weight, 0, stride, 1, 1)?.broadcast_add(&bias.reshape((1, weight.dim(0)?, 1, 1))?)?;
    activation.apply(&y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_candle_conv2d_on_odd_shapes() -> Result<()> {
        let dev = Device::Cpu;
        for &(n, c_in, c_out, h, w, k, s) in
            &[(1, 3, 32, 17, 13, 3, 2), (2, 3, 5, 8, 9, 3, 1), (1, 2, 4, 6, 7, 5, 2), (1, 1, 1, 1, 1, 3, 2), (1, 3, 8, 224, 224, 3, 2)]
        {
            let x = Tensor::randn(0f32, 1.0, (n, c_in, h, w), &dev)?;
            let weight = Tensor::randn(0f32, 1.0, (c_out, c_in, k, k), &dev)?;
            let bias = Tensor::randn(0f32, 1.0, c_out, &dev)?;
            for act in [Activation::Identity, Activation::Relu6] {
                let fast = Conv2dSame::new(weight.clone(), &bias, s, act)?.forward(&x)?;
                let slow = conv2d_same_reference(&x, &weight, &bias, s, act)?;
                assert_eq!(fast.dims(), slow.dims());
                let diff = (fast - slow)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(diff < 1e-4, "n{n} ci{c_in} co{c_out} h{h} w{w} k{k} s{s}: {diff}");
            }
        }
        Ok(())
    }
}
