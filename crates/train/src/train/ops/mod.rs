//! The trainer's layers that candle has no fast CPU form of, each with its backward pass.

pub mod batch_norm;
pub mod depthwise;
mod depthwise_kernel;

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// A new buffer of `len` floats, filled in parallel chunks of `chunk` by `fill`, which must write
/// every element of the chunk it is given. Skips the zero-fill `vec![0.0; len]` would do: these
/// buffers are tens of MB and written once, so the memset was a whole extra pass over memory.
pub(crate) fn par_filled(len: usize, chunk: usize, fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len].par_chunks_mut(chunk).enumerate().for_each(|(i, part)| fill(i, part));
    // SAFETY: the chunks cover all `len` slots and `fill` writes each slot of its chunk (batch
    // norm zips exact-size row iterators over it; the depthwise kernels write every value).
    unsafe { out.set_len(len) };
    out
}

