//! 8-bit RGB → the network's f32 input: `(u8 − 127) / 128`, NCHW.
//!
//! TF EfficientNet-Lite's MEAN_RGB = 127 and STDDEV_RGB = 128, not ImageNet mean/std
//! (which moves the reference logits by up to 1.2). Exact in f32.

use candle_core::{Device, Tensor};
use image::RgbImage;

/// The normalisation applied to every input byte.
#[inline]
pub fn normalise_u8(v: u8) -> f32 {
    (f32::from(v) - 127.0) / 128.0
}

/// Stack same-sized RGB images into a `[N, 3, H, W]` f32 tensor.
pub fn input_tensor(images: &[&RgbImage], device: &Device) -> crate::Result<Tensor> {
    let Some(first) = images.first() else {
        return Err(crate::Error::Model("no images to stack".into()));
    };
    let (width, height) = first.dimensions();
    let plane = (width * height) as usize;
    let mut data = vec![0f32; images.len() * 3 * plane];
    for (n, image) in images.iter().enumerate() {
        if image.dimensions() != (width, height) {
            return Err(crate::Error::Model("images in one batch must share a size".into()));
        }
        let out = &mut data[n * 3 * plane..(n + 1) * 3 * plane];
        for (i, px) in image.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = normalise_u8(px[c]);
            }
        }
    }
    Ok(Tensor::from_vec(data, (images.len(), 3, height as usize, width as usize), device)?)
}
