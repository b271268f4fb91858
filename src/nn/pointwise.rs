//! 1×1 convolution as one matrix multiply per image, `[C_out, C_in] × [C_in, H·W]`, with the
//! bias, activation and (for the MBConv skip connection) a residual fused.
//!
//! candle's generic conv2d goes through im2col (a pure copy for a 1×1 kernel), and a matmul
//! followed by `broadcast_add` and `clamp` walks the output three times. Here the product starts
//! from the bias and the epilogue is applied as each tile is stored ([`super::pointwise_kernel`],
//! AVX-512) or, through the `gemm` crate, in the same buffer right after.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

use super::pointwise_kernel::{self, Epilogue, PackedWeight};
use super::{nchw_f32, output, Activation};

#[derive(Debug, Clone)]
pub struct PointwiseConv {
    /// `[C_out, C_in]` row-major, BatchNorm folded in.
    weight: Vec<f32>,
    /// The same weights packed for the AVX-512 kernel, where the CPU has it.
    packed: Option<PackedWeight>,
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
        let weight: Vec<f32> = weight.flatten_all()?.to_vec1()?;
        let packed = pointwise_kernel::available().then(|| PackedWeight::new(&weight, c_out, c_in));
        Ok(Self { weight, packed, bias: bias.to_vec1()?, c_out, c_in, activation })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.apply_op1_no_bwd(self)
    }

    /// `activation(conv(x) + residual)`, the residual added in the same pass (the MBConv skip
    /// connection; its projection is linear, so this equals `conv(x) + residual`).
    pub fn forward_with_residual(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        x.apply_op2_no_bwd(residual, &WithResidual(self))
    }

    /// One output `[N, C_out, H, W]` from the contiguous NCHW input (and residual of that shape).
    fn run(&self, input: &[f32], (n, _, h, w): (usize, usize, usize, usize), residual: Option<&[f32]>) -> (CpuStorage, Shape) {
        let hw = h * w;
        let mut output = output::uninit(n * self.c_out * hw);
        let threads = candle_core::utils::get_num_threads();
        let relu6 = self.activation == Activation::Relu6;
        for (image, (x, y)) in input.chunks_exact(self.c_in * hw).zip(output.chunks_exact_mut(self.c_out * hw)).enumerate() {
            let residual = residual.map(|r| &r[image * self.c_out * hw..(image + 1) * self.c_out * hw]);
            if let Some(packed) = &self.packed {
                let epilogue = Epilogue { bias: &self.bias, residual, relu6 };
                if pointwise_kernel::pointwise(y, x, hw, packed, epilogue, threads).is_some() {
                    continue;
                }
            }
            let y = self.gemm(x, y, hw, threads);
            if let Some(residual) = residual {
                y.iter_mut().zip(residual).for_each(|(v, r)| *v += r);
            }
            if relu6 {
                y.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0));
            }
        }
        // SAFETY: each image's output was written in full, by the kernel or by `gemm`.
        let output = unsafe { output::assume_init(output) };
        (CpuStorage::F32(output), Shape::from((n, self.c_out, h, w)))
    }

    /// `y = bias + weight × x` through the `gemm` crate (its own AVX2/FMA or SIMD128 kernel);
    /// `y` is written in full and returned as values.
    fn gemm<'y>(&self, x: &[f32], y: &'y mut [MaybeUninit<f32>], hw: usize, threads: usize) -> &'y mut [f32] {
        let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
        for (row, &b) in y.chunks_exact_mut(hw).zip(&self.bias) {
            row.fill(MaybeUninit::new(b));
        }
        // SAFETY: every element was written just above.
        let y = unsafe { &mut *(y as *mut [MaybeUninit<f32>] as *mut [f32]) };
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
        y
    }
}

impl CustomOp1 for PointwiseConv {
    fn name(&self) -> &'static str {
        "pointwise-conv-bias-act"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (input, dims) = nchw_f32(storage, layout, self.c_in, self.name())?;
        Ok(self.run(input, dims, None))
    }
}

/// The layer with a residual added before the activation (see `forward_with_residual`).
struct WithResidual<'a>(&'a PointwiseConv);

impl CustomOp2 for WithResidual<'_> {
    fn name(&self) -> &'static str {
        "pointwise-conv-bias-residual-act"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (input, dims) = nchw_f32(s1, l1, self.0.c_in, self.name())?;
        let (residual, residual_dims) = nchw_f32(s2, l2, self.0.c_out, self.name())?;
        if residual_dims != (dims.0, self.0.c_out, dims.2, dims.3) {
            candle_core::bail!("{}: residual {residual_dims:?} does not match the output", self.name());
        }
        Ok(self.0.run(input, dims, Some(residual)))
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
                let plain = plain.reshape((n, cout, h, w))?;
                let diff = (fused - act.apply(&plain)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(diff < 1e-4, "{diff}");
                let residual = Tensor::randn(0f32, 1.0, (n, cout, h, w), &dev)?;
                let fused = PointwiseConv::new(&weight, &bias, act)?.forward_with_residual(&x, &residual)?;
                let diff = (fused - act.apply(&(plain.clone() + residual)?)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(diff < 1e-4, "with residual: {diff}");
            }
        }
        Ok(())
    }
}
