//! Depthwise k×k convolution (one filter per channel) with TF 'SAME' padding, fused bias and
//! activation, as a direct CPU kernel.
//!
//! candle's `conv2d` with `groups = C` runs one convolution per channel and concatenates the
//! results (up to 1,152 per layer here). This kernel walks each channel plane once instead:
//! for every output row and kernel tap it adds `w · input_row` over the valid output columns,
//! a contiguous multiply-add that the compiler vectorises (SIMD128 on wasm) for stride 1.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{same_output, same_padding, Activation};

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
    fn plane(&self, c: usize, input: &[f32], h: usize, w: usize, output: &mut [f32]) {
        let (k, s) = (self.kernel, self.stride);
        let (oh, ow) = (same_output(h, s), same_output(w, s));
        let (top, _) = same_padding(h, k, s);
        let (left, _) = same_padding(w, k, s);
        let taps = &self.weight[c * k * k..(c + 1) * k * k];
        // Output columns [lo, hi) whose input column `ox·s + kx − left` is inside the image.
        let col_range = |kx: usize| {
            let lo = left.saturating_sub(kx).div_ceil(s);
            let hi = ((w + left).saturating_sub(kx)).div_ceil(s).min(ow);
            (lo, hi.max(lo))
        };
        let ranges: Vec<(usize, usize)> = (0..k).map(col_range).collect();
        for oy in 0..oh {
            let out_row = &mut output[oy * ow..(oy + 1) * ow];
            out_row.fill(self.bias[c]);
            for ky in 0..k {
                let iy = (oy * s + ky) as isize - top as isize;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                let in_row = &input[iy as usize * w..(iy as usize + 1) * w];
                for (kx, &(lo, hi)) in ranges.iter().enumerate() {
                    let tap = taps[ky * k + kx];
                    let start = lo * s + kx - left;
                    if s == 1 {
                        let src = &in_row[start..start + (hi - lo)];
                        for (o, &v) in out_row[lo..hi].iter_mut().zip(src) {
                            *o += tap * v;
                        }
                    } else {
                        for (j, o) in out_row[lo..hi].iter_mut().enumerate() {
                            *o += tap * in_row[start + j * s];
                        }
                    }
                }
            }
            if self.activation != Activation::Identity {
                for o in out_row.iter_mut() {
                    *o = self.activation.apply_scalar(*o);
                }
            }
        }
    }
}

impl CustomOp1 for DepthwiseConv2d {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-same"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        if c != self.channels {
            candle_core::bail!("depthwise conv expects {} channels, got {c}", self.channels);
        }
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("depthwise conv runs on f32");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("depthwise conv needs a contiguous input");
        };
        let input = &data[start..end];
        let (oh, ow) = (same_output(h, self.stride), same_output(w, self.stride));
        let mut output = vec![0f32; n * c * oh * ow];
        output
            .par_chunks_mut(oh * ow)
            .zip(input.par_chunks(h * w))
            .enumerate()
            .for_each(|(plane, (out, inp))| self.plane(plane % c, inp, h, w, out));
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
