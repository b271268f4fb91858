//! 1×1 convolution as one matrix multiply per image, `[C_out, C_in] × [C_in, H·W]`, with the
//! bias and activation fused.
//!
//! candle's generic conv2d goes through im2col (a pure copy for a 1×1 kernel), and a matmul
//! followed by `broadcast_add` and `clamp` walks the output three times. Here the output starts
//! as the bias, gemm accumulates into it, and ReLU6 is applied in the same buffer.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::{nchw_f32, Activation};

#[derive(Debug, Clone)]
pub struct PointwiseConv {
    /// `[C_out, C_in]` row-major, BatchNorm folded in.
    weight: Vec<f32>,
    bias: Vec<f32>,
    c_out: usize,
    c_in: usize,
    activation: Activation,
}

impl PointwiseConv {
    /// `weight` is `[C_out, C_in, 1, 1]` or `[C_out, C_in]`; `bias` is `[C_out]`.
    pub fn new(weight: &Tensor, bias: &Tensor, activation: Activation) -> Result<Self> {
        let (c_out, c_in) = (weight.dim(0)?, weight.dim(1)?);
        if weight.elem_count() != c_out * c_in {
            candle_core::bail!("pointwise weight must be [C_out, C_in, 1, 1], got {:?}", weight.dims());
        }
        Ok(Self { weight: weight.flatten_all()?.to_vec1()?, bias: bias.to_vec1()?, c_out, c_in, activation })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.apply_op1_no_bwd(self)
    }
}

impl CustomOp1 for PointwiseConv {
    fn name(&self) -> &'static str {
        "pointwise-conv-bias-act"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (input, (n, _, h, w)) = nchw_f32(storage, layout, self.c_in, self.name())?;
        let hw = h * w;
        let mut output = vec![0f32; n * self.c_out * hw];
        let threads = candle_core::utils::get_num_threads();
        let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
        for (x, y) in input.chunks_exact(self.c_in * hw).zip(output.chunks_exact_mut(self.c_out * hw)) {
            for (row, &b) in y.chunks_exact_mut(hw).zip(&self.bias) {
                row.fill(b);
            }
            // SAFETY: y is c_out × hw, weight c_out × c_in, x c_in × hw, all row-major and
            // in bounds; dst = 1·dst + 1·(weight × x).
            unsafe {
                gemm::gemm(
                    self.c_out, hw, self.c_in,
                    y.as_mut_ptr(), 1, hw as isize,
                    true,
                    self.weight.as_ptr(), 1, self.c_in as isize,
                    x.as_ptr(), 1, hw as isize,
                    1.0, 1.0,
                    false, false, false,
                    parallelism,
                );
            }
            if self.activation == Activation::Relu6 {
                y.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0));
            }
        }
        Ok((CpuStorage::F32(output), Shape::from((n, self.c_out, h, w))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_matmul_plus_bias() -> Result<()> {
        let dev = Device::Cpu;
        for &(n, cin, cout, h, w) in &[(1, 3, 5, 7, 7), (2, 16, 8, 5, 3), (1, 64, 33, 1, 1)] {
            let x = Tensor::randn(0f32, 1.0, (n, cin, h, w), &dev)?;
            let weight = Tensor::randn(0f32, 1.0, (cout, cin, 1, 1), &dev)?;
            let bias = Tensor::randn(0f32, 1.0, cout, &dev)?;
            for act in [Activation::Identity, Activation::Relu6] {
                let fused = PointwiseConv::new(&weight, &bias, act)?.forward(&x)?;
                let plain = weight
                    .reshape((1, cout, cin))?
                    .broadcast_matmul(&x.reshape((n, cin, h * w))?)?
                    .broadcast_add(&bias.reshape((1, cout, 1))?)?;
                let plain = act.apply(&plain)?.reshape((n, cout, h, w))?;
                let diff = (fused - plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(diff < 1e-4, "{diff}");
            }
        }
        Ok(())
    }
}
