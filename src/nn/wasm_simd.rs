//! What the wasm32 SIMD128 kernels (`pointwise_kernel`, `tap_sum`) share.

use core::arch::wasm32::v128;
#[cfg(not(target_feature = "relaxed-simd"))]
use core::arch::wasm32::{f32x4_add, f32x4_mul};
#[cfg(target_feature = "relaxed-simd")]
use core::arch::wasm32::f32x4_relaxed_madd;

/// `a · b + c`: one fused multiply-add where the module is built with relaxed SIMD (the engine
/// may still round twice), else multiply then add.
#[inline(always)]
pub(crate) fn madd(a: v128, b: v128, c: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        f32x4_relaxed_madd(a, b, c)
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        f32x4_add(f32x4_mul(a, b), c)
    }
}
