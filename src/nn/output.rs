//! A layer's output buffer, allocated without zeroing.
//!
//! Every CPU kernel here writes each output value exactly once, so zeroing the buffer first
//! only doubled the memory traffic: `memset` was 11 % of a native Lite0 forward pass at
//! 224 px (perf, one thread). Kernels write into `MaybeUninit<f32>` and the layer takes the
//! values once all are written.

use std::mem::MaybeUninit;

/// `len` values to be written by a kernel.
pub fn uninit(len: usize) -> Box<[MaybeUninit<f32>]> {
    Box::new_uninit_slice(len)
}

/// The written buffer as plain values.
///
/// # Safety
/// Every element of `buffer` has been written.
pub unsafe fn assume_init(buffer: Box<[MaybeUninit<f32>]>) -> Vec<f32> {
    // SAFETY: the caller guarantees every element is initialised.
    unsafe { buffer.assume_init() }.into_vec()
}
