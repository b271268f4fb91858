//! Colour constancy (Shades of Gray): scale each channel so that the image's illuminant estimate
//! becomes grey, against colour casts that differ between cameras and clinics. Optional, declared
//! per member in the model file (`skinlens.colour_constancy`), applied to the u8 centre square
//! before the resize, the same way by every front end and by the trainer.
//!
//! Illuminant of channel c: the Minkowski p-mean `e_c = (mean x^p)^(1/p)`. Gains
//! `g_c = ‖e‖₂ / (√3 · e_c)` make the three p-means equal to `‖e‖₂ / √3` (a grey of the same
//! brightness); each value becomes `round(x · g_c)`, clamped to 255. Only IEEE-exact operations
//! (integer sums, + − × ÷ and √, a fixed Newton iteration for the p-th root) are used, so native
//! and wasm builds produce the same bytes.

use image::RgbImage;

/// What a member declares under `skinlens.colour_constancy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColourConstancy {
    /// The image as decoded.
    #[default]
    None,
    /// Shades of Gray with Minkowski norm `p` (the ISIC 2019 winner used p = 6).
    ShadesOfGray { p: u32 },
}

/// Largest accepted norm: `255^p` summed over a 64-megapixel image must fit in a `u128`.
const MAX_P: u32 = 8;

impl ColourConstancy {
    /// `none` or `shades_of_gray:P` (P in 1..=8).
    pub fn parse(value: &str) -> Option<Self> {
        match value.split_once(':') {
            None if value == "none" => Some(Self::None),
            Some(("shades_of_gray", p)) => p.parse().ok().filter(|p| (1..=MAX_P).contains(p)).map(|p| Self::ShadesOfGray { p }),
            _ => None,
        }
    }

    pub fn as_string(self) -> String {
        match self {
            Self::None => "none".into(),
            Self::ShadesOfGray { p } => format!("shades_of_gray:{p}"),
        }
    }

    pub fn is_none(self) -> bool {
        self == Self::None
    }

    /// Apply in place (a no-op for `None`).
    pub fn apply(self, image: &mut RgbImage) {
        if let Self::ShadesOfGray { p } = self {
            let gains = shades_of_gray_gains(image, p);
            for px in image.pixels_mut() {
                for c in 0..3 {
                    px[c] = (f64::from(px[c]) * gains[c] + 0.5).floor().min(255.0) as u8;
                }
            }
        }
    }
}

/// Per-channel gains of Shades of Gray with norm `p`. A channel that is zero everywhere keeps
/// gain 1 (any gain leaves it zero); an empty image has gains 1.
pub fn shades_of_gray_gains(image: &RgbImage, p: u32) -> [f64; 3] {
    let pixels = u128::from(image.width()) * u128::from(image.height());
    if pixels == 0 {
        return [1.0; 3];
    }
    let mut sums = [0u128; 3];
    for px in image.pixels() {
        for c in 0..3 {
            sums[c] += u128::from(px[c]).pow(p);
        }
    }
    let illuminant = sums.map(|s| root(s as f64 / pixels as f64, p));
    let norm = illuminant.iter().map(|e| e * e).sum::<f64>().sqrt();
    illuminant.map(|e| if e > 0.0 { norm / (3f64.sqrt() * e) } else { 1.0 })
}

/// `m^(1/p)` for `0 ≤ m ≤ 255^p` by Newton's method from above (monotone, so it stops when a
/// step no longer decreases), using only correctly rounded operations.
fn root(m: f64, p: u32) -> f64 {
    if m <= 0.0 || p == 1 {
        return m.max(0.0);
    }
    let n = f64::from(p);
    let mut y = 256.0f64;
    for _ in 0..200 {
        let next = ((n - 1.0) * y + m / y.powi(p as i32 - 1)) / n;
        if next >= y {
            break;
        }
        y = next;
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn parse_and_print() {
        assert_eq!(ColourConstancy::parse("none"), Some(ColourConstancy::None));
        assert_eq!(ColourConstancy::parse("shades_of_gray:6"), Some(ColourConstancy::ShadesOfGray { p: 6 }));
        for bad in ["", "shades_of_gray", "shades_of_gray:0", "shades_of_gray:9", "grey_world", "shades_of_gray:x"] {
            assert_eq!(ColourConstancy::parse(bad), None, "{bad}");
        }
        assert_eq!(ColourConstancy::ShadesOfGray { p: 6 }.as_string(), "shades_of_gray:6");
    }

    #[test]
    fn root_is_exact_on_powers() {
        for p in 1..=8 {
            for v in [0u32, 1, 2, 3, 17, 64, 200, 255] {
                let m = f64::from(v).powi(p as i32);
                assert!((root(m, p) - f64::from(v)).abs() < 1e-9, "p {p} v {v}: {}", root(m, p));
            }
        }
    }

    /// Worked by hand. Two pixels, (64, 32, 16) and (0, 32, 16), p = 6:
    /// e_R = (64⁶ / 2)^(1/6) = 64 / 2^(1/6) = 57.018 (2^(1/6) = 1.122462), e_G = 32, e_B = 16;
    /// ‖e‖ = √(57.018² + 32² + 16²) = √(3251.02 + 1024 + 256) = √4531.02 = 67.313;
    /// ‖e‖/√3 = 38.863, so g_R = 38.863 / 57.018 = 0.68160, g_G = 38.863 / 32 = 1.21447,
    /// g_B = 38.863 / 16 = 2.42894.
    /// Pixel 1: 64 · 0.68160 = 43.62 → 44, 32 · 1.21447 = 38.86 → 39, 16 · 2.42894 = 38.86 → 39.
    /// Pixel 2: 0 → 0, 39, 39.
    #[test]
    fn shades_of_gray_matches_the_hand_computed_example() {
        let mut image = RgbImage::from_fn(2, 1, |x, _| if x == 0 { Rgb([64, 32, 16]) } else { Rgb([0, 32, 16]) });
        let gains = shades_of_gray_gains(&image, 6);
        for (got, want) in gains.iter().zip([0.68160, 1.21447, 2.42894]) {
            assert!((got - want).abs() < 5e-5, "gains {gains:?}");
        }
        ColourConstancy::ShadesOfGray { p: 6 }.apply(&mut image);
        assert_eq!(image.get_pixel(0, 0).0, [44, 39, 39]);
        assert_eq!(image.get_pixel(1, 0).0, [0, 39, 39]);
    }

    #[test]
    fn uniform_colour_becomes_grey_and_none_is_a_no_op() {
        // A uniform (64, 32, 16) image: e = (64, 32, 16), grey level √((64² + 32² + 16²) / 3) = √1792 = 42.33 → 42.
        let original = RgbImage::from_pixel(3, 3, Rgb([64, 32, 16]));
        let mut image = original.clone();
        ColourConstancy::ShadesOfGray { p: 6 }.apply(&mut image);
        assert!(image.pixels().all(|p| p.0 == [42, 42, 42]), "{:?}", image.get_pixel(0, 0));
        let mut untouched = original.clone();
        ColourConstancy::None.apply(&mut untouched);
        assert_eq!(untouched, original);
        // Black stays black (all gains 1), and bright values clamp at 255.
        let mut black = RgbImage::from_pixel(2, 2, Rgb([0, 0, 0]));
        ColourConstancy::ShadesOfGray { p: 6 }.apply(&mut black);
        assert!(black.pixels().all(|p| p.0 == [0, 0, 0]));
        // 63 pixels (255, 255, 0) and one (255, 255, 40): e_B = (40⁶ / 64)^(1/6) = 20, grey level
        // √((2 · 255² + 20²) / 3) = 208.52, g_B = 10.43: 40 → 417, clamped to 255.
        let mut saturated = RgbImage::from_fn(8, 8, |x, y| Rgb([255, 255, if (x, y) == (7, 7) { 40 } else { 0 }]));
        ColourConstancy::ShadesOfGray { p: 6 }.apply(&mut saturated);
        assert_eq!(saturated.get_pixel(7, 7).0, [209, 209, 255], "blue is raised past 255 and clamped");
    }
}
