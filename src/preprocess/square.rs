//! The largest centred square: the framing the model is trained and evaluated on.

use image::{imageops, RgbImage};

/// Crop `s = min(H, W)` at `y0 = (H − s) / 2`, `x0 = (W − s) / 2` (integer division).
pub fn centre_square(image: &RgbImage) -> RgbImage {
    let (width, height) = image.dimensions();
    let side = width.min(height);
    imageops::crop_imm(image, (width - side) / 2, (height - side) / 2, side, side).to_image()
}
