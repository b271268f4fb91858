//! The EfficientNet-Lite block table. Lite0 is what ships; Lite1–4 are a multiplier away.

use crate::nn::same_output;

/// The stem convolution's stride (3×3, every EfficientNet-Lite).
pub const STEM_STRIDE: usize = 2;

/// One MBConv block: `[expand 1×1] → depthwise k×k (stride s) → project 1×1 [+ residual]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockSpec {
    pub kernel: usize,
    pub stride: usize,
    pub expand_ratio: usize,
    pub in_channels: usize,
    pub out_channels: usize,
}

impl BlockSpec {
    pub fn mid_channels(&self) -> usize {
        self.in_channels * self.expand_ratio
    }
    pub fn has_expand(&self) -> bool {
        self.expand_ratio != 1
    }
    pub fn has_residual(&self) -> bool {
        self.stride == 1 && self.in_channels == self.out_channels
    }
}

/// A whole network's shape.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    pub name: String,
    pub input_size: usize,
    pub stem_channels: usize,
    pub head_channels: usize,
    pub blocks: Vec<BlockSpec>,
}

/// TF's stage strings for EfficientNet-B0 / Lite0: (repeats, kernel, stride, expand, in, out).
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// Channels scaled by `width` and rounded to a multiple of 8, never below 90 % (TF's rule).
fn round_filters(channels: usize, width: f64) -> usize {
    if width == 1.0 {
        return channels;
    }
    let scaled = channels as f64 * width;
    let rounded = (((scaled + 4.0) / 8.0).floor() as usize * 8).max(8);
    if (rounded as f64) < 0.9 * scaled {
        rounded + 8
    } else {
        rounded
    }
}

impl ModelConfig {
    /// EfficientNet-Lite`variant` (0–4). Lite keeps stem (32) and head (1280) fixed and does not
    /// repeat the first and last stages. Lite0–2 are checked against reference weights
    /// (tests/parity.rs, tests/lite_variants.rs).
    pub fn lite(variant: u8) -> Option<Self> {
        let (width, depth, input_size) = match variant {
            0 => (1.0, 1.0, 224),
            1 => (1.0, 1.1, 240),
            2 => (1.1, 1.2, 260),
            3 => (1.2, 1.4, 280),
            4 => (1.4, 1.8, 300),
            _ => return None,
        };
        let mut blocks = Vec::new();
        for (stage, &(repeats, kernel, stride, expand, cin, cout)) in STAGES.iter().enumerate() {
            let fixed = stage == 0 || stage == STAGES.len() - 1;
            let repeats = if fixed { repeats } else { (depth * repeats as f64).ceil() as usize };
            let (cin, cout) = (round_filters(cin, width), round_filters(cout, width));
            for r in 0..repeats {
                blocks.push(BlockSpec {
                    kernel,
                    stride: if r == 0 { stride } else { 1 },
                    expand_ratio: expand,
                    in_channels: if r == 0 { cin } else { cout },
                    out_channels: cout,
                });
            }
        }
        Some(Self {
            name: format!("efficientnet-lite{variant}"),
            input_size,
            stem_channels: 32,
            head_channels: 1280,
            blocks,
        })
    }

    pub fn lite0() -> Self {
        Self::lite(0).expect("variant 0 exists")
    }

    /// Parse a name such as `efficientnet-lite0`.
    pub fn from_name(name: &str) -> Option<Self> {
        let variant = name.strip_prefix("efficientnet-lite")?.parse().ok()?;
        Self::lite(variant)
    }

    /// Multiply-adds of one pass at `input_size` px: every convolution (stem, blocks, head) at
    /// its output size under TF 'SAME' padding; the classifier, BatchNorm and activations are
    /// left out. The page deals an image's passes to its workers by this cost.
    pub fn multiply_adds(&self, input_size: usize) -> u64 {
        let square = |side: usize| (side * side) as u64;
        let mut side = same_output(input_size, STEM_STRIDE);
        let mut total = square(side) * (3 * 3 * 3 * self.stem_channels) as u64;
        for block in &self.blocks {
            let mid = block.mid_channels() as u64;
            if block.has_expand() {
                total += square(side) * block.in_channels as u64 * mid;
            }
            side = same_output(side, block.stride);
            total += square(side) * mid * (block.kernel * block.kernel + block.out_channels) as u64;
        }
        let last = self.blocks.last().map_or(self.stem_channels, |b| b.out_channels);
        total + square(side) * (last * self.head_channels) as u64
    }

    /// Spatial size of the head's feature map (7 for 224 input: five stride-2 stages).
    pub fn feature_size(&self, input_size: usize) -> usize {
        self.blocks.iter().fold(same_output(input_size, STEM_STRIDE), |side, block| same_output(side, block.stride))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lite0_matches_the_reference_table() {
        let c = ModelConfig::lite0();
        assert_eq!(c.blocks.len(), 16);
        let strided: Vec<usize> = c.blocks.iter().enumerate().filter(|(_, b)| b.stride == 2).map(|(i, _)| i).collect();
        assert_eq!(strided, [1, 3, 5, 11]);
        assert_eq!(c.blocks[8], BlockSpec { kernel: 5, stride: 1, expand_ratio: 6, in_channels: 80, out_channels: 112 });
        assert_eq!(c.blocks[15].mid_channels(), 1152);
        let residual: Vec<usize> = c.blocks.iter().enumerate().filter(|(_, b)| b.has_residual()).map(|(i, _)| i).collect();
        assert_eq!(residual, [2, 4, 6, 7, 9, 10, 12, 13, 14]);
        assert_eq!(c.feature_size(224), 7);
    }

    #[test]
    fn multiply_adds_agree_with_googles_published_counts() {
        // Google's EfficientNet-Lite table (MACs at each variant's own size), which also counts
        // the 1,000-class classifier and rounds its own way: ours must be a few percent under.
        for (variant, published) in [(0, 407e6), (1, 631e6), (2, 899e6), (3, 1.44e9), (4, 2.64e9)] {
            let c = ModelConfig::lite(variant).unwrap();
            let ratio = c.multiply_adds(c.input_size) as f64 / published;
            assert!((0.93..1.0).contains(&ratio), "Lite{variant}: {} vs {published} published", c.multiply_adds(c.input_size));
        }
        // Cost grows with the pixels: twice the side, about four times the work.
        let c = ModelConfig::lite0();
        let ratio = c.multiply_adds(448) as f64 / c.multiply_adds(224) as f64;
        assert!((3.9..4.1).contains(&ratio), "{ratio}");
    }
}
