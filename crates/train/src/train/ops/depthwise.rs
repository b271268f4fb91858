//! Trainable depthwise k×k convolution with TF 'SAME' padding on channels-last tensors.
//!
//! candle's `conv2d(groups = C)` runs one convolution per channel, forward and backward, which
//! made a training step minutes long. On the CPU this op runs three direct kernels per image
//! ([`super::depthwise_kernel`]: forward, input gradient, weight gradient) on vectors of
//! channels, and adds the images' weight gradients in a fixed order, so training is
//! reproducible.
//! [`depthwise_portable`] is the same layer as plain candle ops, for other devices and as the
//! reference the tests check the kernels against.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;
use skinlens_core::nn::{same_output, same_padding};

use super::depthwise_kernel as kernel;
use super::par_filled;

/// Geometry of one depthwise layer: input `[N, H, W, C]`, weight `[C, k·k]`.
#[derive(Debug, Clone, Copy)]
pub struct DepthwiseGeometry {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub kernel: usize,
    pub stride: usize,
}

impl DepthwiseGeometry {
    pub fn output(&self) -> (usize, usize) {
        (same_output(self.height, self.stride), same_output(self.width, self.stride))
    }

    pub(super) fn pad_top_left(&self) -> (usize, usize) {
        (same_padding(self.height, self.kernel, self.stride).0, same_padding(self.width, self.kernel, self.stride).0)
    }

    /// `[C, k·k]` → `[k·k, C]`, so the inner loop over channels is contiguous in both operands.
    fn taps_major(&self, weight: &[f32]) -> Vec<f32> {
        let kk = self.kernel * self.kernel;
        let mut out = vec![0f32; kk * self.channels];
        for c in 0..self.channels {
            for t in 0..kk {
                out[t * self.channels + c] = weight[c * kk + t];
            }
        }
        out
    }
}

/// Borrow a contiguous f32 CPU tensor's data and run `f` on it.
pub fn with_cpu_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        candle_core::bail!("expected an f32 CPU tensor");
    };
    let (start, end) = layout.contiguous_offsets().expect("made contiguous above");
    f(&data[start..end])
}

fn cpu_slice<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("depthwise {what} must be f32");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("depthwise {what} must be contiguous");
    };
    Ok(&data[start..end])
}

impl DepthwiseGeometry {
    /// `[N, H, W, C]` → `[N, oh, ow, C]`, images in parallel.
    pub fn forward_cpu(&self, input: &[f32], weight: &[f32], batch: usize) -> Vec<f32> {
        let (oh, ow) = self.output();
        let taps = self.taps_major(weight);
        let image = self.height * self.width * self.channels;
        par_filled(batch * oh * ow * self.channels, oh * ow * self.channels, |n, out| kernel::forward(self, &input[n * image..(n + 1) * image], &taps, out))
    }

    /// Gradient with respect to `[N, H, W, C]`, images in parallel.
    pub fn grad_input_cpu(&self, grad_out: &[f32], weight: &[f32], batch: usize) -> Vec<f32> {
        let (oh, ow) = self.output();
        let taps = self.taps_major(weight);
        let image = oh * ow * self.channels;
        par_filled(batch * self.height * self.width * self.channels, self.height * self.width * self.channels, |n, gin| {
            kernel::grad_input(self, &grad_out[n * image..(n + 1) * image], &taps, gin)
        })
    }

    /// `[C, k·k]` weight gradient: one partial per image, added in image order, so the sum
    /// does not depend on the thread schedule (training is reproducible).
    pub fn grad_weight_cpu(&self, grad_out: &[f32], input: &[f32], batch: usize) -> Vec<f32> {
        let c = self.channels;
        let kk = self.kernel * self.kernel;
        let (oh, ow) = self.output();
        let partials: Vec<Vec<f32>> = grad_out
            .par_chunks(oh * ow * c)
            .zip(input.par_chunks(self.height * self.width * c))
            .map(|(gout, inp)| {
                let mut partial = vec![0f32; kk * c];
                kernel::grad_weight(self, gout, inp, &mut partial);
                partial
            })
            .collect();
        debug_assert_eq!(partials.len(), batch);
        let mut taps_major = vec![0f32; kk * c];
        for p in &partials {
            for (a, &b) in taps_major.iter_mut().zip(p) {
                *a += b;
            }
        }
        let mut out = vec![0f32; c * kk];
        for t in 0..kk {
            for ch in 0..c {
                out[ch * kk + t] = taps_major[t * c + ch];
            }
        }
        out
    }
}

/// The CPU op: `(input [N, H, W, C], weight [C, k·k]) → [N, oh, ow, C]`.
#[derive(Debug, Clone, Copy)]
pub struct DepthwiseOp(pub DepthwiseGeometry);

impl CustomOp2 for DepthwiseOp {
    fn name(&self) -> &'static str {
        "depthwise-nhwc-train"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let (n, h, w, c) = l1.shape().dims4()?;
        if (h, w, c) != (g.height, g.width, g.channels) || l2.shape().dims() != [c, g.kernel * g.kernel] {
            candle_core::bail!("depthwise op: input {:?} / weight {:?} do not match {g:?}", l1.shape(), l2.shape());
        }
        let out = g.forward_cpu(cpu_slice(s1, l1, "input")?, cpu_slice(s2, l2, "weight")?, n);
        let (oh, ow) = g.output();
        Ok((CpuStorage::F32(out), Shape::from((n, oh, ow, c))))
    }

    fn bwd(&self, input: &Tensor, weight: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.0;
        let n = input.dim(0)?;
        let grad_in = with_cpu_f32(grad, |gout| with_cpu_f32(weight, |w| Ok(g.grad_input_cpu(gout, w, n))))?;
        let grad_w = with_cpu_f32(grad, |gout| with_cpu_f32(input, |x| Ok(g.grad_weight_cpu(gout, x, n))))?;
        Ok((
            Some(Tensor::from_vec(grad_in, input.shape(), input.device())?),
            Some(Tensor::from_vec(grad_w, weight.shape(), weight.device())?),
        ))
    }
}

/// Depthwise convolution of `x [N, H, W, C]` with `weight [C, k·k]` on any device: the sum over
/// the k² taps of a shifted (and, for stride 2, subsampled) view times that tap's weights.
pub fn depthwise_portable(x: &Tensor, weight: &Tensor, g: DepthwiseGeometry) -> Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    let (oh, ow) = g.output();
    let (k, s) = (g.kernel, g.stride);
    let (top, bottom) = same_padding(h, k, s);
    let (left, right) = same_padding(w, k, s);
    // Extra zeros at the bottom/right so every tap's window is `s·o` long (reshaped, then subsampled).
    let padded = x
        .pad_with_zeros(1, top, bottom + s)?
        .pad_with_zeros(2, left, right + s)?;
    let mut sum: Option<Tensor> = None;
    for ky in 0..k {
        let rows = padded.narrow(1, ky, oh * s)?;
        let rows = if s == 1 { rows } else { rows.reshape((n, oh, s, w + left + right + s, c))?.narrow(2, 0, 1)?.squeeze(2)? };
        for kx in 0..k {
            let cols = rows.narrow(2, kx, ow * s)?;
            let cols = if s == 1 { cols } else { cols.reshape((n, oh, ow, s, c))?.narrow(3, 0, 1)?.squeeze(3)? };
            let tap = weight.narrow(1, ky * k + kx, 1)?.reshape((1, 1, 1, c))?;
            let term = cols.broadcast_mul(&tap)?;
            sum = Some(match sum {
                Some(acc) => (acc + term)?,
                None => term,
            });
        }
    }
    sum.expect("kernel has at least one tap")
        .contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn kernels_match_the_portable_op_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        for &(h, w, c, k, s) in &[(7, 5, 3, 3, 1), (8, 9, 4, 3, 2), (6, 6, 5, 5, 2), (11, 4, 2, 5, 1), (1, 1, 1, 3, 2), (13, 21, 37, 5, 2), (12, 18, 20, 3, 1)] {
            let g = DepthwiseGeometry { height: h, width: w, channels: c, kernel: k, stride: s };
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, h, w, c), &dev)?)?;
            let wt = Var::from_tensor(&Tensor::randn(0f32, 1.0, (c, k * k), &dev)?)?;
            let probe = Tensor::randn(0f32, 1.0, (2, g.output().0, g.output().1, c), &dev)?;
            let fast = x.as_tensor().apply_op2(wt.as_tensor(), DepthwiseOp(g))?;
            let slow = depthwise_portable(x.as_tensor(), wt.as_tensor(), g)?;
            let max = |a: &Tensor, b: &Tensor| -> Result<f32> { (a - b)?.abs()?.max_all()?.to_scalar::<f32>() };
            assert!(max(&fast, &slow)? < 1e-5, "forward {g:?}");
            let gf = (fast * &probe)?.sum_all()?.backward()?;
            let gs = (slow * &probe)?.sum_all()?.backward()?;
            assert!(max(gf.get(&x).unwrap(), gs.get(&x).unwrap())? < 1e-4, "grad input {g:?}");
            assert!(max(gf.get(&wt).unwrap(), gs.get(&wt).unwrap())? < 1e-4, "grad weight {g:?}");
        }
        Ok(())
    }
}
