//! Bytes → the model's input, shared by the CLI, the trainer and the browser.
//!
//! `decode` (any supported format, EXIF orientation, alpha, bit depth → 8-bit RGB)
//! → `square` (largest centred square) → `resize` (exact integer bilinear)
//! → `tensor` (`(u8 − 127) / 128`, NCHW).

pub mod decode;
pub mod resize;
pub mod square;
pub mod tensor;

pub use decode::{decode_rgb8, DecodeLimits};
pub use resize::resize_bilinear_u8;
pub use square::centre_square;
pub use tensor::{input_tensor, normalise_u8};

use image::RgbImage;

/// An image ready for the model, plus what a UI wants to show about it.
#[derive(Debug, Clone)]
pub struct PreparedImage {
    /// Size of the decoded image after EXIF orientation.
    pub original_width: u32,
    pub original_height: u32,
    /// The largest centred square, resized to the model's input: exactly what the model sees.
    pub model_view: RgbImage,
}

/// Decode `bytes` and produce the `size`×`size` view the model sees.
pub fn prepare(bytes: &[u8], size: u32) -> crate::Result<PreparedImage> {
    let rgb = decode_rgb8(bytes, &DecodeLimits::default())?;
    Ok(prepare_decoded(&rgb, size))
}

/// Square-crop and resize an already decoded image.
pub fn prepare_decoded(rgb: &RgbImage, size: u32) -> PreparedImage {
    let square = centre_square(rgb);
    PreparedImage {
        original_width: rgb.width(),
        original_height: rgb.height(),
        model_view: resize_bilinear_u8(&square, size, size),
    }
}
