//! Depthwise k×k convolution (one filter per channel) with TF 'SAME' padding, fused bias and
//! activation, as a direct CPU kernel.
//!
//! candle's `conv2d` with `groups = C` runs one convolution per channel and concatenates the
//! results (up to 1,152 per layer here). This kernel walks each channel plane once instead:
//! for every output row and kernel tap it adds `w · input_row` over the valid output columns,
//! a contiguous multiply-add that the compiler vectorises (SIMD128 on wasm) for stride 1.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{nchw_f32, same_output, same_padding, Activation};

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

    /// One channel plane: `input` is `h × w`, `output` is `oh × ow`.
    ///
    /// The plane is copied once into a zero-padded scratch buffer (TF 'SAME' borders), split
    /// into `s × s` phases (even/odd rows × even/odd columns for stride 2). In that layout every
    /// tap is ONE contiguous multiply-add over the whole output plane, computed at the phase's
    /// row pitch; the few columns past `ow` are scratch and dropped when the result is copied
    /// out. Long contiguous loops vectorise (SIMD128 on wasm) even for 7×7 planes, where a
    /// row-by-row loop would run 7 elements at a time.
    fn plane(&self, c: usize, input: &[f32], h: usize, w: usize, output: &mut [f32], scratch: &mut Scratch) {
        let (k, s) = (self.kernel, self.stride);
        let (oh, ow) = (same_output(h, s), same_output(w, s));
        let (top, bottom) = same_padding(h, k, s);
        let (left, right) = same_padding(w, k, s);
        let (phase_h, pitch) = ((h + top + bottom).div_ceil(s), (w + left + right).div_ceil(s));
        // Slack so the last tap's run may read past the final row.
        let phase_len = phase_h * pitch + k;
        let Scratch { phases, acc } = scratch;
        phases.clear();
        phases.resize(s * s * phase_len, 0.0);
        for y in 0..h {
            let py = y + top;
            for (x, &v) in input[y * w..(y + 1) * w].iter().enumerate() {
                let px = x + left;
                phases[((py % s) * s + px % s) * phase_len + (py / s) * pitch + px / s] = v;
            }
        }
        let run = oh * pitch;
        acc.clear();
        acc.resize(run, self.bias[c]);
        let taps = &self.weight[c * k * k..(c + 1) * k * k];
        for ky in 0..k {
            for kx in 0..k {
                let tap = taps[ky * k + kx];
                let start = ((ky % s) * s + kx % s) * phase_len + (ky / s) * pitch + kx / s;
                for (a, &v) in acc.iter_mut().zip(&phases[start..start + run]) {
                    *a += tap * v;
                }
            }
        }
        for (out_row, acc_row) in output.chunks_exact_mut(ow).zip(acc.chunks_exact(pitch)) {
            for (o, &a) in out_row.iter_mut().zip(acc_row) {
                *o = self.activation.apply_scalar(a);
            }
        }
    }
}

/// Per-thread buffers reused across channel planes.
#[derive(Default)]
struct Scratch {
    phases: Vec<f32>,
    acc: Vec<f32>,
}

impl CustomOp1 for DepthwiseConv2d {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-same"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (input, (n, c, h, w)) = nchw_f32(storage, layout, self.channels, self.name())?;
        let (oh, ow) = (same_output(h, self.stride), same_output(w, self.stride));
        let mut output = vec![0f32; n * c * oh * ow];
        output
            .par_chunks_mut(oh * ow)
            .zip(input.par_chunks(h * w))
            .enumerate()
            .for_each_init(Scratch::default, |scratch, (plane, (out, inp))| self.plane(plane % c, inp, h, w, out, scratch));
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
