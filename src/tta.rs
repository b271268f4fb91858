//! Test-time augmentation: the model answers for the image and for its mirror images, and the
//! answers are averaged. A dermoscopy image has no canonical orientation (training drew random
//! flips and rotations), so each mirrored view is as valid an input as the original; averaging
//! them lowers the variance of the answer. Whether a model uses it is chosen on validation by
//! `skinlens export` and stored in the model file, so every front end applies the same rule.

use candle_core::Tensor;

use crate::Result;

/// The views a model is run on, as stored under `skinlens.tta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TestTimeAugmentation {
    /// The image alone.
    #[default]
    None,
    /// The image, its left-right and top-bottom mirrors, and both (a 180° turn).
    Flips,
}

/// NCHW dimensions to flip for each view of [`TestTimeAugmentation::Flips`]; the first view is
/// the image itself (its features feed the activation map).
const FLIP_DIMS: [&[usize]; 4] = [&[], &[3], &[2], &[2, 3]];

impl TestTimeAugmentation {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "none" => Some(Self::None),
            "flips" => Some(Self::Flips),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Flips => "flips",
        }
    }

    /// How many passes of the network one image costs.
    pub fn view_count(self) -> usize {
        match self {
            Self::None => 1,
            Self::Flips => FLIP_DIMS.len(),
        }
    }

    /// The views of an NCHW input, the input itself first.
    pub fn views(self, input: &Tensor) -> Result<Vec<Tensor>> {
        FLIP_DIMS[..self.view_count()]
            .iter()
            .map(|dims| Ok(if dims.is_empty() { input.clone() } else { input.flip(dims)? }))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn views_are_the_input_then_its_mirrors() -> Result<()> {
        // [1, 1, 2, 2] = [[a, b], [c, d]]
        let x = Tensor::new(&[[[[1f32, 2.], [3., 4.]]]], &Device::Cpu)?;
        let flat = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).unwrap();
        let views = TestTimeAugmentation::Flips.views(&x)?;
        let got: Vec<Vec<f32>> = views.iter().map(flat).collect();
        assert_eq!(got, vec![vec![1., 2., 3., 4.], vec![2., 1., 4., 3.], vec![3., 4., 1., 2.], vec![4., 3., 2., 1.]]);
        assert_eq!(TestTimeAugmentation::None.views(&x)?.len(), 1);
        for t in [TestTimeAugmentation::None, TestTimeAugmentation::Flips] {
            assert_eq!(TestTimeAugmentation::parse(t.as_str()), Some(t));
        }
        assert_eq!(TestTimeAugmentation::parse("rotations"), None);
        Ok(())
    }
}
