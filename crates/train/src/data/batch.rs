//! Normalised HWC images → the stem's im2col `[N·oh·ow, 27]`, so the first convolution of the
//! trainable network is a matrix multiply (the input needs no gradient, so this is data work).

use skinlens_core::nn::{same_output, same_padding};

/// Columns ordered `(channel, ky, kx)` to match a `[32, 3, 3, 3]` stem weight reshaped to `[32, 27]`.
pub fn stem_columns(image: &[f32], size: usize, out: &mut [f32]) {
    let o = same_output(size, 2);
    let (top, _) = same_padding(size, 3, 2);
    debug_assert_eq!(out.len(), o * o * 27);
    for oy in 0..o {
        for ox in 0..o {
            let row = &mut out[(oy * o + ox) * 27..(oy * o + ox + 1) * 27];
            for ky in 0..3 {
                for kx in 0..3 {
                    let iy = (oy * 2 + ky) as isize - top as isize;
                    let ix = (ox * 2 + kx) as isize - top as isize;
                    let inside = iy >= 0 && ix >= 0 && (iy as usize) < size && (ix as usize) < size;
                    for c in 0..3 {
                        row[c * 9 + ky * 3 + kx] = if inside { image[(iy as usize * size + ix as usize) * 3 + c] } else { 0.0 };
                    }
                }
            }
        }
    }
}

/// Rows of the im2col of one image of `size`×`size`.
pub fn rows_per_image(size: usize) -> usize {
    let o = same_output(size, 2);
    o * o
}
