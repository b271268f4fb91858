//! Decode any supported image into 8-bit RGB, the way a person expects to see it:
//! EXIF orientation applied, transparency composited onto a fixed background, grayscale,
//! 16-bit and CMYK converted. Refuses decompression bombs before allocating their pixels.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, RgbImage};

use crate::{Error, Result};

/// Transparent pixels are composited onto black: dermoscopy images already have black
/// vignetted corners, so a cut-out lesion looks like the images the model was trained on.
pub const ALPHA_BACKGROUND: [u8; 3] = [0, 0, 0];

/// Bounds checked against the header before any pixel buffer is allocated.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Longest accepted side in pixels.
    pub max_side: u32,
    /// Largest accepted area in megapixels (a 6000×4000 camera photo is 24).
    pub max_megapixels: u32,
    /// Upper bound on what the decoder may allocate, in bytes.
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_side: 20_000, max_megapixels: 64, max_alloc: 1 << 30 }
    }
}

/// Decode `bytes` (JPEG, PNG, WebP, BMP, GIF first frame, TIFF) into upright 8-bit RGB.
pub fn decode_rgb8(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(Error::EmptyInput);
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Decode(e.to_string()))?;
    if reader.format().is_none() {
        return Err(Error::UnsupportedFormat("unrecognised file signature".into()));
    }
    let mut decoder = reader.into_decoder().map_err(map_image_error)?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, limits)?;
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(limits.max_side);
    image_limits.max_image_height = Some(limits.max_side);
    image_limits.max_alloc = Some(limits.max_alloc);
    decoder.set_limits(image_limits).map_err(map_image_error)?;
    // A broken EXIF block should not cost the user their result: fall back to no rotation.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(map_image_error)?;
    image.apply_orientation(orientation);
    Ok(to_rgb8(image))
}

fn check_size(width: u32, height: u32, limits: &DecodeLimits) -> Result<()> {
    let too_large = Error::TooLarge {
        width,
        height,
        limit: limits.max_side,
        max_megapixels: limits.max_megapixels,
    };
    if width == 0 || height == 0 {
        return Err(Error::Decode(format!("the image declares a size of {width}×{height}")));
    }
    if width > limits.max_side || height > limits.max_side {
        return Err(too_large);
    }
    if u64::from(width) * u64::from(height) > u64::from(limits.max_megapixels) * 1_000_000 {
        return Err(too_large);
    }
    Ok(())
}

fn map_image_error(error: ImageError) -> Error {
    match error {
        ImageError::Unsupported(e) => Error::UnsupportedFormat(e.to_string()),
        ImageError::Limits(e) => Error::Decode(format!("decoder limit reached: {e}")),
        other => Error::Decode(other.to_string()),
    }
}

/// Any colour type → 8-bit RGB; transparency is composited onto [`ALPHA_BACKGROUND`].
fn to_rgb8(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    let (width, height) = rgba.dimensions();
    let mut rgb = RgbImage::new(width, height);
    for (out, px) in rgb.pixels_mut().zip(rgba.pixels()) {
        let alpha = u32::from(px[3]);
        for c in 0..3 {
            let blended = u32::from(px[c]) * alpha + u32::from(ALPHA_BACKGROUND[c]) * (255 - alpha);
            out[c] = ((blended + 127) / 255) as u8;
        }
    }
    rgb
}
