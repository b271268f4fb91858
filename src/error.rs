//! One error type for the core, with messages a user can act on.

/// Everything that can go wrong between bytes and probabilities.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the file is empty (0 bytes)")]
    EmptyInput,
    #[error("not a supported image ({0}); supported: JPEG, PNG, WebP, BMP, GIF, TIFF")]
    UnsupportedFormat(String),
    #[error("the image could not be decoded: {0}")]
    Decode(String),
    #[error("the image is {width}×{height} pixels, over the limit of {limit} pixels per side (or {max_megapixels} megapixels in all); refusing it to protect memory")]
    TooLarge { width: u32, height: u32, limit: u32, max_megapixels: u32 },
    #[error("weights: tensor `{name}` is missing (expected shape {expected:?})")]
    MissingTensor { name: String, expected: Vec<usize> },
    #[error("weights: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape { name: String, found: Vec<usize>, expected: Vec<usize> },
    #[error("weights: {0}")]
    Weights(String),
    #[error("model: {0}")]
    Model(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
