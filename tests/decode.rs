//! Every supported format decodes to the upright 8-bit RGB a person would see, and bad bytes
//! give a clear error instead of a panic or an allocation the size of a bomb.

use std::io::Cursor;

use image::{DynamicImage, ImageBuffer, ImageEncoder, ImageFormat, Luma, Rgb, RgbImage, Rgba};
use skinlens_core::preprocess::{decode_rgb8, prepare, DecodeLimits};
use skinlens_core::Error;

/// A 6×4 image whose every pixel is distinct, so orientation mistakes show.
fn pattern() -> RgbImage {
    RgbImage::from_fn(6, 4, |x, y| Rgb([x as u8 * 40, y as u8 * 60, 200 - x as u8 * 10 - y as u8]))
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).expect("encode");
    bytes.into_inner()
}

fn decode(bytes: &[u8]) -> skinlens_core::Result<RgbImage> {
    decode_rgb8(bytes, &DecodeLimits::default())
}

#[test]
fn lossless_formats_round_trip_exactly() {
    let image = DynamicImage::ImageRgb8(pattern());
    for format in [ImageFormat::Png, ImageFormat::Bmp, ImageFormat::Tiff, ImageFormat::WebP] {
        let decoded = decode(&encode(&image, format)).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(decoded, pattern(), "{format:?}");
    }
}

#[test]
fn jpeg_and_gif_decode_close_to_the_original() {
    // Smooth content so JPEG's and GIF's losses stay small.
    let smooth = RgbImage::from_fn(32, 24, |x, y| Rgb([x as u8 * 4, y as u8 * 5, 100]));
    for format in [ImageFormat::Jpeg, ImageFormat::Gif] {
        let decoded = decode(&encode(&DynamicImage::ImageRgb8(smooth.clone()), format)).unwrap();
        assert_eq!(decoded.dimensions(), (32, 24));
        let mean_err: f64 = decoded.as_raw().iter().zip(smooth.as_raw()).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>()
            / smooth.as_raw().len() as f64;
        assert!(mean_err < 6.0, "{format:?}: mean error {mean_err}");
    }
}

#[test]
fn grayscale_and_16_bit_become_8_bit_rgb() {
    let gray = ImageBuffer::from_fn(3, 2, |x, y| Luma([(x * 50 + y * 20) as u8]));
    let decoded = decode(&encode(&DynamicImage::ImageLuma8(gray.clone()), ImageFormat::Png)).unwrap();
    for (rgb, g) in decoded.pixels().zip(gray.pixels()) {
        assert_eq!(rgb.0, [g[0]; 3]);
    }
    let deep = ImageBuffer::from_fn(3, 2, |x, _| Rgb([x as u16 * 30000, 65535, 0u16]));
    let decoded = decode(&encode(&DynamicImage::ImageRgb16(deep), ImageFormat::Png)).unwrap();
    assert_eq!(decoded.get_pixel(1, 0).0, [117, 255, 0]); // 30000 / 257 = 116.7 → 117
}

#[test]
fn alpha_is_composited_onto_black() {
    let rgba = ImageBuffer::from_fn(2, 1, |x, _| Rgba([200, 100, 50, if x == 0 { 255 } else { 0 }]));
    let decoded = decode(&encode(&DynamicImage::ImageRgba8(rgba), ImageFormat::Png)).unwrap();
    assert_eq!(decoded.get_pixel(0, 0).0, [200, 100, 50]);
    assert_eq!(decoded.get_pixel(1, 0).0, [0, 0, 0]);
    let half = ImageBuffer::from_pixel(1, 1, Rgba([200u8, 100, 50, 128]));
    let decoded = decode(&encode(&DynamicImage::ImageRgba8(half), ImageFormat::Png)).unwrap();
    assert_eq!(decoded.get_pixel(0, 0).0, [100, 50, 25]);
}

/// Minimal little-endian TIFF/EXIF block holding only the Orientation tag.
fn exif_orientation(value: u16) -> Vec<u8> {
    let mut exif = b"II*\0\x08\0\0\0".to_vec();
    exif.extend_from_slice(&1u16.to_le_bytes()); // one entry
    exif.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    exif.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    exif.extend_from_slice(&1u32.to_le_bytes()); // count
    exif.extend_from_slice(&value.to_le_bytes());
    exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // value padding + next IFD offset
    exif
}

#[test]
fn exif_orientation_is_applied() {
    let image = RgbImage::from_fn(64, 32, |x, _| if x < 32 { Rgb([250, 0, 0]) } else { Rgb([0, 0, 250]) });
    let mut bytes = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
    encoder.set_exif_metadata(exif_orientation(6)).unwrap(); // 6 = rotate 90° clockwise to display
    encoder.write_image(image.as_raw(), 64, 32, image::ExtendedColorType::Rgb8).unwrap();
    let decoded = decode(&bytes).unwrap();
    assert_eq!(decoded.dimensions(), (32, 64), "portrait after rotation");
    assert!(decoded.get_pixel(16, 8)[0] > 200, "red (the left half) is on top after a clockwise turn");
    assert!(decoded.get_pixel(16, 56)[2] > 200, "blue at the bottom");
}

#[test]
fn bad_bytes_give_clear_errors() {
    let jpeg = encode(&DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, Rgb([9, 9, 9]))), ImageFormat::Jpeg);
    assert!(matches!(decode(&[]), Err(Error::EmptyInput)));
    assert!(matches!(decode(b"hello, this is plain text"), Err(Error::UnsupportedFormat(_))));
    assert!(matches!(decode(b"<svg xmlns='http://www.w3.org/2000/svg'/>"), Err(Error::UnsupportedFormat(_))));
    let truncated = decode(&jpeg[..jpeg.len() / 3]);
    assert!(truncated.is_err(), "a JPEG cut to a third must not decode");
    let mut corrupt = jpeg[..4].to_vec();
    corrupt.extend((0..2000u32).map(|i| (i * 7919 % 251) as u8));
    assert!(decode(&corrupt).is_err());
    for result in [decode(&[]), decode(b"hello"), truncated] {
        let message = result.unwrap_err().to_string();
        assert!(message.len() > 10, "message too terse: {message}");
    }
}

/// A valid PNG declaring `width`×`height`, with a few bytes of pixel data: what a bomb looks like.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
    let idat = b"IDAT\x78\x9c\x63\x00\x00\x00\x01\x00\x01";
    png.extend_from_slice(&((idat.len() - 4) as u32).to_be_bytes());
    png.extend_from_slice(idat);
    png.extend_from_slice(&crc32fast::hash(idat).to_be_bytes());
    png
}

#[test]
fn decompression_bombs_are_refused_before_allocation() {
    for (w, h) in [(100_000, 100_000), (20_000, 20_000), (1, 4_000_000)] {
        match decode(&png_header_only(w, h)) {
            Err(Error::TooLarge { width, height, .. }) => assert_eq!((width, height), (w, h)),
            other => panic!("{w}×{h}: expected TooLarge, got {other:?}"),
        }
    }
}

#[test]
fn tiny_and_huge_images_are_framed() {
    let one = encode(&DynamicImage::ImageRgb8(RgbImage::from_pixel(1, 1, Rgb([1, 2, 3]))), ImageFormat::Png);
    let prepared = prepare(&one, 224).unwrap();
    assert!(prepared.model_view.pixels().all(|p| p.0 == [1, 2, 3]));

    // A 6000×4000 camera photo: the centred 4000×4000 square, resized.
    let photo = RgbImage::from_fn(6000, 4000, |x, _| if (1000..5000).contains(&x) { Rgb([0, 200, 0]) } else { Rgb([200, 0, 0]) });
    let png = encode(&DynamicImage::ImageRgb8(photo), ImageFormat::Png);
    let prepared = prepare(&png, 224).unwrap();
    assert_eq!((prepared.original_width, prepared.original_height), (6000, 4000));
    assert!(prepared.model_view.pixels().all(|p| p.0 == [0, 200, 0]), "only the centre square is kept");
}
