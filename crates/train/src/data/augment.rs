//! On-the-fly augmentation from the preloaded u8 squares, deterministic under a seed.
//!
//! Geometry (random resized crop, rotation, flips) is one affine map from output pixels to
//! source coordinates, sampled bilinearly with mirror edges, so each image is resampled once.
//! Colour (brightness, contrast, hue; saturation when asked) is a per-image linear map in RGB.
//! Random erasing (when asked) blanks one rectangle to the normalised mean (0).
//! Dermoscopy has no up or down, so any rotation and both flips are fair.
//! Options added later draw their random numbers after all the earlier ones and only when
//! enabled, so a run with their defaults sees exactly the images it saw before they existed.

use image::RgbImage;
use rand::Rng;

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct AugmentConfig {
    /// Smallest crop area as a fraction of the square (random resized crop).
    pub min_crop_area: f32,
    /// Any angle in [0, 2π) when true; else only multiples of 90°.
    pub free_rotation: bool,
    /// Brightness factor drawn from [1 − b, 1 + b].
    pub brightness: f32,
    /// Contrast factor drawn from [1 − c, 1 + c].
    pub contrast: f32,
    /// Hue shift drawn from [−h, h] of the colour circle.
    pub hue: f32,
    /// Saturation factor drawn from [1 − s, 1 + s] (0: off).
    #[serde(default)]
    pub saturation: f32,
    /// Probability of random erasing: one rectangle of 2–25 % of the view, aspect 0.3–3.3,
    /// set to the normalised mean (0: off).
    #[serde(default)]
    pub erase_probability: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self { min_crop_area: 0.5, free_rotation: true, brightness: 0.2, contrast: 0.2, hue: 0.1, saturation: 0.0, erase_probability: 0.0 }
    }
}

/// A rectangle of a `size`×`size` view: left, top, width, height in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

/// A random rectangle of `area` (fraction of the view) and `aspect` (w/h), clipped to the view.
pub fn random_rect(size: usize, area: f32, aspect: f32, rng: &mut impl Rng) -> Rect {
    let side = size as f32;
    let w = ((side * side * area * aspect).sqrt().round() as usize).clamp(1, size);
    let h = ((side * side * area / aspect).sqrt().round() as usize).clamp(1, size);
    let x = rng.random_range(0..=size - w);
    let y = rng.random_range(0..=size - h);
    Rect { x, y, w, h }
}

/// Set every channel of `rect` in an HWC view to `value`.
pub fn fill_rect(view: &mut [f32], size: usize, rect: Rect, value: f32) {
    for row in rect.y..rect.y + rect.h {
        view[(row * size + rect.x) * 3..(row * size + rect.x + rect.w) * 3].fill(value);
    }
}

/// Mirror an out-of-range coordinate back into `[0, n − 1]`.
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let m = i.rem_euclid(period);
    (if m >= n { period - m } else { m }) as usize
}

/// RGB → RGB matrix that rotates hue by `turns` of the circle (in YIQ, leaving Y alone).
fn hue_matrix(turns: f32) -> [[f32; 3]; 3] {
    let (s, c) = (turns * std::f32::consts::TAU).sin_cos();
    const TO_YIQ: [[f32; 3]; 3] = [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]];
    const TO_RGB: [[f32; 3]; 3] = [[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]];
    let rot = [[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]];
    let mul = |a: [[f32; 3]; 3], b: [[f32; 3]; 3]| {
        let mut o = [[0f32; 3]; 3];
        for i in 0..3 {
            for j in 0..3 {
                o[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
            }
        }
        o
    };
    mul(TO_RGB, mul(rot, TO_YIQ))
}

/// One augmented `size`×`size` view of `src`, as normalised f32 HWC (`(v − 127) / 128`).
pub fn augment(src: &RgbImage, size: usize, config: &AugmentConfig, rng: &mut impl Rng) -> Vec<f32> {
    let side = src.width().min(src.height()) as f32;
    // Random resized crop: area fraction and aspect ratio (log-uniform in [3/4, 4/3]).
    let area = rng.random_range(config.min_crop_area.min(1.0)..=1.0);
    let aspect = rng.random_range((0.75f32).ln()..=(4.0f32 / 3.0).ln()).exp();
    let crop_w = (side * (area * aspect).sqrt()).min(side);
    let crop_h = (side * (area / aspect).sqrt()).min(side);
    let cx = rng.random_range(crop_w / 2.0..=side - crop_w / 2.0);
    let cy = rng.random_range(crop_h / 2.0..=side - crop_h / 2.0);
    let angle = if config.free_rotation {
        rng.random_range(0.0..std::f32::consts::TAU)
    } else {
        rng.random_range(0..4) as f32 * std::f32::consts::FRAC_PI_2
    };
    let flip_x = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
    let flip_y = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
    let brightness = 1.0 + rng.random_range(-config.brightness..=config.brightness);
    let contrast = 1.0 + rng.random_range(-config.contrast..=config.contrast);
    let hue = hue_matrix(rng.random_range(-config.hue..=config.hue));
    let saturation = if config.saturation > 0.0 { 1.0 + rng.random_range(-config.saturation..=config.saturation) } else { 1.0 };

    let (sin, cos) = angle.sin_cos();
    let (w, h) = (src.width() as usize, src.height() as usize);
    let pixels = src.as_raw();
    let mut out = vec![0f32; size * size * 3];
    for v in 0..size {
        for u in 0..size {
            // Output pixel centre in [−0.5, 0.5]², flipped, scaled to the crop, rotated, placed.
            let x = ((u as f32 + 0.5) / size as f32 - 0.5) * crop_w * flip_x;
            let y = ((v as f32 + 0.5) / size as f32 - 0.5) * crop_h * flip_y;
            let sx = cx + x * cos - y * sin - 0.5;
            let sy = cy + x * sin + y * cos - 0.5;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            let (xa, xb, ya, yb) = (reflect(x0, w), reflect(x0 + 1, w), reflect(y0, h), reflect(y0 + 1, h));
            let o = &mut out[(v * size + u) * 3..(v * size + u) * 3 + 3];
            for c in 0..3 {
                let p = |xx: usize, yy: usize| f32::from(pixels[(yy * w + xx) * 3 + c]);
                o[c] = (1.0 - fy) * ((1.0 - fx) * p(xa, ya) + fx * p(xb, ya)) + fy * ((1.0 - fx) * p(xa, yb) + fx * p(xb, yb));
            }
        }
    }
    // Colour: hue rotation, brightness, saturation around each pixel's grey, then contrast
    // around the image's mean grey.
    let mut grey_sum = 0f32;
    for px in out.chunks_exact_mut(3) {
        let rgb = [px[0], px[1], px[2]];
        for c in 0..3 {
            px[c] = brightness * (hue[c][0] * rgb[0] + hue[c][1] * rgb[1] + hue[c][2] * rgb[2]);
        }
        let pixel_grey = 0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2];
        if saturation != 1.0 {
            for v in px.iter_mut() {
                *v = pixel_grey + saturation * (*v - pixel_grey);
            }
        }
        grey_sum += pixel_grey;
    }
    let grey = grey_sum / (size * size) as f32;
    for v in &mut out {
        let value = (contrast * (*v - grey) + grey).clamp(0.0, 255.0);
        *v = (value - 127.0) / 128.0;
    }
    if config.erase_probability > 0.0 && rng.random::<f32>() < config.erase_probability {
        let area = rng.random_range(0.02f32..=0.25);
        let aspect = rng.random_range((0.3f32).ln()..=(1.0f32 / 0.3).ln()).exp();
        fill_rect(&mut out, size, random_rect(size, area, aspect, rng), 0.0);
    }
    out
}

/// The evaluation view: exactly what `predict` and the page feed the model (centre square,
/// integer bilinear resize), as normalised f32 HWC.
pub fn evaluation_view(src: &RgbImage, size: usize) -> Vec<f32> {
    let resized = skinlens_core::preprocess::resize_bilinear_u8(src, size as u32, size as u32);
    resized.as_raw().iter().map(|&v| skinlens_core::preprocess::normalise_u8(v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn same_seed_same_image_and_identity_colour_is_exact() {
        let src = RgbImage::from_fn(40, 40, |x, y| image::Rgb([(x * 6) as u8, (y * 6) as u8, 90]));
        let a = augment(&src, 16, &AugmentConfig::default(), &mut ChaCha8Rng::seed_from_u64(3));
        let b = augment(&src, 16, &AugmentConfig::default(), &mut ChaCha8Rng::seed_from_u64(3));
        let c = augment(&src, 16, &AugmentConfig::default(), &mut ChaCha8Rng::seed_from_u64(4));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let m = hue_matrix(0.0);
        for (i, row) in m.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert!((v - f32::from(u8::from(i == j))).abs() < 2e-3, "{m:?}");
            }
        }
        assert_eq!(reflect(-1, 5), 1);
        assert_eq!(reflect(5, 5), 3);
    }

    #[test]
    fn new_options_off_leave_the_views_unchanged_and_on_change_them() {
        // Mid-range colours, so no channel reaches the 0/255 clamp after the colour jitter.
        let src = RgbImage::from_fn(40, 40, |x, y| image::Rgb([(70 + x * 2) as u8, (70 + y * 2) as u8, 110]));
        let base = AugmentConfig::default();
        let plain = augment(&src, 16, &base, &mut ChaCha8Rng::seed_from_u64(3));
        let saturated = augment(&src, 16, &AugmentConfig { saturation: 0.5, ..base }, &mut ChaCha8Rng::seed_from_u64(3));
        assert_ne!(plain, saturated);
        // Saturation keeps each pixel's grey (up to the contrast clamp, which this image avoids).
        let grey = |v: &[f32]| v.chunks_exact(3).map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]).collect::<Vec<_>>();
        for (a, b) in grey(&plain).iter().zip(grey(&saturated)) {
            assert!((a - b).abs() < 0.02, "grey {a} vs {b}");
        }
        let erased = augment(&src, 16, &AugmentConfig { erase_probability: 1.0, ..base }, &mut ChaCha8Rng::seed_from_u64(3));
        let changed: Vec<usize> = (0..plain.len()).filter(|&i| plain[i] != erased[i]).collect();
        assert!(!changed.is_empty() && changed.iter().all(|&i| erased[i] == 0.0), "erasing sets a rectangle to 0");
        assert!(changed.len() <= 16 * 16 * 3 / 3, "at most a quarter of the view (plus rounding)");
    }

    #[test]
    fn random_rect_stays_inside_and_has_the_asked_area() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for _ in 0..200 {
            let r = random_rect(50, 0.2, 1.5, &mut rng);
            assert!(r.x + r.w <= 50 && r.y + r.h <= 50);
            let area = (r.w * r.h) as f32 / 2500.0;
            assert!((area - 0.2).abs() < 0.03, "{r:?}");
        }
    }
}
