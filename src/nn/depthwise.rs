//! Depthwise k×k convolution (one filter per channel) with TF 'SAME' padding, fused bias and
//! activation, as a direct CPU kernel.
//!
//! candle's `conv2d` with `groups = C` runs one convolution per channel and concatenates the
//! results (up to 1,152 per layer here). This kernel walks each channel plane once instead:
//! one padded copy, then every output is a sum over the taps of contiguous shifted runs
//! ([`super::tap_sum`]: AVX2 + FMA when the CPU has it, SIMD128 on wasm).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::tap_sum::tap_sum;
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
    /// tap reads ONE contiguous run covering the whole output plane at the phase's row pitch, so
    /// the plane is a single [`tap_sum`] over `oh · pitch` outputs; the few columns past `ow` are
    /// scratch and dropped when the result is copied out through the activation. Long
    /// contiguous runs vectorise even for 7×7 planes, where a row-by-row loop would run 7
    /// elements at a time.
    fn plane(&self, c: usize, input: &[f32], h: usize, w: usize, output: &mut [f32], scratch: &mut Scratch) {
        let (k, s) = (self.kernel, self.stride);
        let (oh, ow) = (same_output(h, s), same_output(w, s));
        let (top, bottom) = same_padding(h, k, s);
        let (left, right) = same_padding(w, k, s);
        let (phase_h, pitch) = ((h + top + bottom).div_ceil(s), (w + left + right).div_ceil(s));
        // Slack so the last tap's run may read past the final row.
        let phase_len = phase_h * pitch + k;
        let Scratch { phases, acc, starts } = scratch;
        phases.resize(s * s * phase_len, 0.0);
        for (index, phase) in phases.chunks_exact_mut(phase_len).enumerate() {
            let (row_phase, col_phase) = (index / s, index % s);
            let (rows, slack) = phase.split_at_mut(phase_h * pitch);
            slack.fill(0.0);
            // Columns j of this phase hold padded column j·s + col_phase; these are the
            // ones inside the image.
            let first = left.saturating_sub(col_phase).div_ceil(s);
            let end = (left + w).saturating_sub(col_phase).div_ceil(s).min(pitch);
            for (j, row) in rows.chunks_exact_mut(pitch).enumerate() {
                let py = j * s + row_phase;
                if py < top || py >= top + h || first >= end {
                    row.fill(0.0);
                    continue;
                }
                let source = &input[(py - top) * w..(py - top + 1) * w];
                row[..first].fill(0.0);
                row[end..].fill(0.0);
                let x0 = first * s + col_phase - left;
                if s == 1 {
                    row[first..end].copy_from_slice(&source[x0..x0 + end - first]);
                } else {
                    for (d, &v) in row[first..end].iter_mut().zip(source[x0..].iter().step_by(s)) {
                        *d = v;
                    }
                }
            }
        }
        starts.clear();
        starts.extend((0..k * k).map(|t| {
            let (ky, kx) = (t / k, t % k);
            ((ky % s) * s + kx % s) * phase_len + (ky / s) * pitch + kx / s
        }));
        acc.resize(oh * pitch, 0.0);
        tap_sum(acc, phases, starts, &self.weight[c * k * k..(c + 1) * k * k], self.bias[c]);
        for (out_row, acc_row) in output.chunks_exact_mut(ow).zip(acc.chunks_exact(pitch)) {
            for (o, &a) in out_row.iter_mut().zip(acc_row) {
                *o = self.activation.apply_scalar(a);
            }
        }
    }
}

/// Outputs below which a group of planes is not split further between threads.
const MIN_OUTPUTS_PER_TASK: usize = 4096;

/// Per-thread buffers reused across channel planes.
#[derive(Default)]
struct Scratch {
    phases: Vec<f32>,
    acc: Vec<f32>,
    /// Offset of each tap's run in `phases`.
    starts: Vec<usize>,
}

impl CustomOp1 for DepthwiseConv2d {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-same"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (input, (n, c, h, w)) = nchw_f32(storage, layout, self.channels, self.name())?;
        let (oh, ow) = (same_output(h, self.stride), same_output(w, self.stride));
        let mut output = vec![0f32; n * c * oh * ow];
        // Small planes (7×7 has 49 outputs) are handed to threads in groups, so a task is
        // worth more than rayon's cost of sending it.
        let planes_per_task = MIN_OUTPUTS_PER_TASK.div_ceil(oh * ow);
        output
            .par_chunks_mut(oh * ow)
            .zip(input.par_chunks(h * w))
            .enumerate()
            .with_min_len(planes_per_task)
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
