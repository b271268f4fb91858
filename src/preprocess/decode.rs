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
    match reader.format() {
        None => return Err(Error::UnsupportedFormat("unrecognised file signature".into())),
        // The JPEG decoder fills a truncated image with grey instead of failing; a cut-off
        // download must not be classified as if it were whole.
        Some(image::ImageFormat::Jpeg) if !jpeg_is_complete(bytes) => {
            return Err(Error::Decode("the JPEG is truncated (no end-of-image marker)".into()))
        }
        Some(_) => {}
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

/// Walk the JPEG marker structure to its end-of-image marker. Segments are skipped by their
/// length (so an EXIF thumbnail's own markers don't count); entropy-coded data is scanned for
/// the next marker. Bytes after the end-of-image marker are allowed (some cameras append data).
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    const EOI: u8 = 0xD9;
    const SOS: u8 = 0xDA;
    let mut i = 2; // after SOI
    while i + 1 < bytes.len() {
        if bytes[i] != 0xFF {
            return false;
        }
        let marker = bytes[i + 1];
        match marker {
            EOI => return true,
            0xFF => i += 1, // fill byte
            0x01 | 0xD0..=0xD7 => i += 2, // markers without a length
            _ => {
                let Some(len) = bytes.get(i + 2..i + 4).map(|b| usize::from(b[0]) << 8 | usize::from(b[1])) else {
                    return false;
                };
                i += 2 + len;
                if marker == SOS {
                    // Entropy-coded data: stuffed 0xFF00 and restart markers belong to it.
                    let inside_scan = |i: usize| bytes[i] != 0xFF || matches!(bytes[i + 1], 0x00 | 0xD0..=0xD7);
                    while i + 1 < bytes.len() && inside_scan(i) {
                        i += 1;
                    }
                }
            }
        }
    }
    false
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
