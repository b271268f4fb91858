//! Bytes → the model's input, shared by the CLI, the trainer and the browser.
//!
//! `decode` (any supported format, EXIF orientation, alpha, bit depth → 8-bit RGB)
//! → `square` (largest centred square) → [`colour`] (optional colour constancy, per member)
//! → `resize` (exact integer bilinear) → `tensor` (`(u8 − 127) / 128`, NCHW).

pub mod colour;
pub mod decode;
pub mod resize;
pub mod square;
pub mod tensor;

pub use colour::ColourConstancy;
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
    prepare_decoded_as(rgb, InputSpec { size, colour: ColourConstancy::None })
}

/// How one member of a model wants its input: the size it runs at and its colour constancy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputSpec {
    pub size: u32,
    pub colour: ColourConstancy,
}

/// Square-crop, apply the colour constancy to the square, resize: the view `spec` asks for.
pub fn prepare_decoded_as(rgb: &RgbImage, spec: InputSpec) -> PreparedImage {
    let mut square = centre_square(rgb);
    spec.colour.apply(&mut square);
    PreparedImage {
        original_width: rgb.width(),
        original_height: rgb.height(),
        model_view: resize_bilinear_u8(&square, spec.size, spec.size),
    }
}
