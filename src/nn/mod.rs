//! Inference layers, one concept per file, in the manner of candle-nn.
//!
//! All of them take BatchNorm already folded into their weights and bias: a folded layer is
//! `activation(conv(x) + bias)`.

pub mod activation;
pub mod batch_norm;
pub mod conv;
pub mod depthwise;
mod output;
pub mod padding;
pub mod phases;
pub mod pointwise;
pub mod pointwise_kernel;
pub mod tap_sum;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm_simd;

pub use activation::Activation;
pub use batch_norm::{BatchNormParams, BN_EPS};
pub use conv::Conv2dSame;
pub use depthwise::DepthwiseConv2d;
pub use padding::{same_output, same_padding};
pub use pointwise::PointwiseConv;

use candle_core::{CpuStorage, Layout, Result};

/// `(N, C, H, W)`.
type Nchw = (usize, usize, usize, usize);

/// The contiguous f32 data and NCHW dims a CPU kernel reads, checking its channel count.
fn nchw_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    channels: usize,
    op: &str,
) -> Result<(&'a [f32], Nchw)> {
    let dims = layout.shape().dims4()?;
    if dims.1 != channels {
        candle_core::bail!("{op} expects {channels} channels, got {}", dims.1);
    }
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op} runs on f32");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op} needs a contiguous input");
    };
    Ok((&data[start..end], dims))
}
